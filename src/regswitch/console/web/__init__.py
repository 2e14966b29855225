"""The operator web console: static files served by the admin API server.

No build step and nothing fetched from the internet (operators' consoles
often have none): `static/` holds index.html, one CSS file and hand-written
ES modules that talk to the JSON API like any other client.

The page itself is not behind the API token (it holds no data); the API
calls it makes are, and the page asks the operator for the token on a 401.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"

# The console changes with the server; make browsers revalidate rather than
# run yesterday's JavaScript against today's API.
_NO_CACHE = {"Cache-Control": "no-cache"}


class _RevalidatedFiles(StaticFiles):
    def file_response(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update(_NO_CACHE)
        return response


def mount_web(app: FastAPI) -> None:
    """Serve the console at `/` and its assets under `/console/`."""

    @app.get("/", include_in_schema=False)
    async def console_index() -> FileResponse:
        return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=_NO_CACHE)

    @app.get("/console", include_in_schema=False)
    async def console_redirect() -> RedirectResponse:
        return RedirectResponse("/")

    app.mount("/console", _RevalidatedFiles(directory=STATIC_DIR), name="console")
