"""/api/events: the recorded event log, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from regswitch.common.domain_events import EVENT_TYPES
from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.storage.base import EventFilter, EventRecord, normalise_aor

router = APIRouter(prefix="/api/events", tags=["events"])


def event_view(record: EventRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "time": record.time,
        "type": record.type,
        "account": record.account,
        "source": record.source,
        "details": record.details,
    }


def check_types(types: tuple[str, ...] | list[str]) -> None:
    """An unknown type is a mistake (a filter that can never match), not an empty list."""
    unknown = sorted(set(types) - EVENT_TYPES)
    if unknown:
        raise ApiError(
            400,
            f"unknown event type {', '.join(map(repr, unknown))}; "
            f"one of {', '.join(sorted(EVENT_TYPES))}",
        )


@router.get("")
async def list_events(
    switch: SwitchDep,
    type: list[str] | None = Query(None, description="event type(s); repeat or comma-separate"),
    account: str | None = None,
    limit: int = Query(100, ge=1, le=10_000),
    before_id: int | None = Query(None, ge=1),
) -> list[dict[str, Any]]:
    types = tuple(t.strip() for item in (type or []) for t in item.split(",") if t.strip())
    check_types(types)
    await switch.storage.events.flush()
    records = await switch.storage.events.query(
        EventFilter(
            types=types,
            account=normalise_aor(account) if account else None,
            limit=limit,
            before_id=before_id,
        )
    )
    return [event_view(r) for r in records]


@router.get("/counts")
async def event_counts(switch: SwitchDep) -> dict[str, int]:
    return dict(switch.events.counts)
