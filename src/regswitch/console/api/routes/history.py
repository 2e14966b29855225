"""/api/accounts/{user@domain}/history (an account's timeline) and
/api/events/{id} (the one event a timeline entry links to)."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import APIRouter, Query

from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.console.api.routes.calls import _time
from regswitch.console.api.routes.events import event_view
from regswitch.console.history import MAX_EVENTS, PAGE, read_history
from regswitch.storage.base import EventFilter, normalise_aor

router = APIRouter(tags=["history"])

DEFAULT_SPAN = 86400.0
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def when(value: str | None, name: str, now: float) -> float | None:
    """Epoch seconds, ISO 8601, or a time ago: `90s`, `30m`, `2h`, `7d`, `1w`."""
    if value is not None:
        ago = _AGO.match(value.strip().lower())
        if ago:
            return now - float(ago.group(1)) * _UNIT[ago.group(2)]
    found = _time(value, name)
    if found is not None and not math.isfinite(found):
        raise ApiError(400, f"{name} must be a finite time")
    return found


@router.get("/api/accounts/{aor}/history")
async def account_history(
    aor: str,
    switch: SwitchDep,
    since: str | None = Query(None, description="epoch, ISO 8601 or ago (2h); default until-24h"),
    until: str | None = Query(None, description="epoch, ISO 8601 or ago; default now"),
    limit: int = Query(
        PAGE, ge=1, le=MAX_EVENTS, description="the account's events per page (newest first)"
    ),
) -> dict[str, Any]:
    """One timeline of the account, newest first: registrations, refresh runs, kicks,
    rejections, flood blocks, flapping, calls and CDRs, parameter and account changes.
    With more than `limit` events in the window, the newest page: `truncated` is true
    and the next page is `until=<next_until>`."""
    account = normalise_aor(aor)
    if "@" not in account:
        raise ApiError(400, f"account must be user@domain, not {aor!r}")
    now = switch.clock()
    end = when(until, "until", now)
    end = now + 1.0 if end is None else end
    start = when(since, "since", now)
    start = end - DEFAULT_SPAN if start is None else start
    if start >= end:
        raise ApiError(400, "since must be before until")
    history = await read_history(switch.storage, account, start, end, limit)
    if not history["entries"] and switch.accounts.get(account) is None:
        raise ApiError(404, f"no account {account} and nothing about it in that time")
    return history


@router.get("/api/events/{event_id:int}", tags=["events"])
async def get_event(event_id: int, switch: SwitchDep) -> dict[str, Any]:
    await switch.storage.events.flush()
    found = await switch.storage.events.query(
        EventFilter(after_id=event_id - 1, before_id=event_id + 1, limit=1)
    )
    if not found:
        raise ApiError(404, f"no event {event_id}")
    return event_view(found[0])
