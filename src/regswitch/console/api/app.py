"""The admin HTTP API (FastAPI): JSON, errors as {"error": ...}, Host checked, bearer token
when configured (guard.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from regswitch import __version__
from regswitch.app.switch import Switch
from regswitch.common.metrics import build_registry
from regswitch.console.api.errors import install_error_handlers
from regswitch.console.api.guard import install_guard
from regswitch.console.api.routes import (
    accounts,
    calls,
    cluster,
    dashboard,
    domains,
    events,
    history,
    parameters,
    registrations,
    sharing,
    stream,
    tombstones,
)
from regswitch.console.sampler import Sampler
from regswitch.console.web import mount_web


def create_app(switch: Switch) -> FastAPI:
    app = FastAPI(
        title="regswitch admin API",
        version=__version__,
        description="Registrations, accounts, parameters, events, calls and CDRs of a node.",
    )
    app.state.switch = switch
    app.state.metrics = build_registry(switch.metrics_snapshot)
    install_error_handlers(app)
    install_guard(app, switch.settings)
    app.state.sampler = Sampler(switch.operations.counters, switch.clock)
    app.state.sampler.start()  # ends with the server's loop

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return switch.health()

    for module in (
        stream, accounts, domains, parameters, registrations, events, calls, tombstones, sharing,
        cluster,
    ):
        app.include_router(module.router)
    app.include_router(history.router)
    app.include_router(dashboard.router)
    mount_web(app)  # the operator console (static files) at /
    return app
