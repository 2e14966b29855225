"""/api/dashboard: the last hour of the dashboard's charts and the accounts
kicked most (the console then follows `stats` frames on the event stream)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from regswitch.common.domain_events import REPLACED
from regswitch.console.api.deps import SwitchDep
from regswitch.console.sampler import SPAN, Sampler

router = APIRouter(tags=["dashboard"])


@router.get("/api/dashboard")
async def dashboard(
    request: Request, switch: SwitchDep, top: int = Query(10, ge=1, le=100)
) -> dict[str, Any]:
    sampler: Sampler = request.app.state.sampler
    now = switch.clock()
    await switch.storage.events.flush()
    kicked = await switch.storage.events.top_accounts(REPLACED, now - SPAN, top)
    return {
        "time": now,
        "interval": sampler.interval,
        "span": SPAN,
        "samples": list(sampler.samples),
        "top_kicked": [{"account": a, "kicks": n} for a, n in kicked],
    }
