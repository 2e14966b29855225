"""The operator web console: static files served by the admin API server.

No build step and nothing fetched from the internet (operators' consoles
often have none): `static/` holds index.html, one CSS file and hand-written
ES modules that talk to the JSON API like any other client.

The page itself is not behind the API token (it holds no data); the API
calls it makes are, and the page asks the operator for the token on a 401.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"

# The console shows strings from the network (contacts, User-Agents, event
# details). Should one ever reach the DOM as markup, the policy keeps it from
# running: scripts and styles only from our own files, no inline code, no
# plugins, no framing (clickjacking), requests only to this API.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
# The console changes with the server; make browsers revalidate rather than
# run yesterday's JavaScript against today's API.
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _RevalidatedFiles(StaticFiles):
    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_HEADERS)
        return response


def mount_web(app: FastAPI) -> None:
    """Serve the console at `/` and its assets under `/console/`."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def console_index() -> FileResponse:
        return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=_HEADERS)

    @app.get("/console", include_in_schema=False)
    async def console_redirect() -> RedirectResponse:
        return RedirectResponse("/")

    app.mount("/console", _RevalidatedFiles(directory=STATIC_DIR), name="console")
