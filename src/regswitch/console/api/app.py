"""The admin HTTP API (FastAPI): JSON, errors as {"error": ...}, bearer token when configured."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from regswitch import __version__
from regswitch.console.api.errors import error_response, install_error_handlers
from regswitch.console.api.routes import (
    accounts,
    calls,
    events,
    parameters,
    registrations,
    sharing,
    stream,
    tombstones,
)
from regswitch.console.web import mount_web
from regswitch.metrics import build_registry
from regswitch.switch import Switch

OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})


def create_app(switch: Switch) -> FastAPI:
    app = FastAPI(
        title="regswitch admin API",
        version=__version__,
        description="Registrations, accounts, parameters, events, calls and CDRs of a node.",
    )
    app.state.switch = switch
    app.state.metrics = build_registry(switch.metrics_snapshot)
    install_error_handlers(app)
    token = switch.settings.api_token

    if token:
        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def require_token(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            path = request.url.path
            if path in OPEN_PATHS or not (path.startswith("/api") or path == "/metrics"):
                return await call_next(request)
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return error_response(
                    401, "missing or wrong API token", {"WWW-Authenticate": "Bearer"}
                )
            return await call_next(request)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return switch.health()

    for module in (
        stream, accounts, parameters, registrations, events, calls, tombstones, sharing
    ):
        app.include_router(module.router)
    mount_web(app)  # the operator console (static files) at /
    return app
