"""/api/calls (in progress, hang up) and /api/cdrs (filter, CSV export)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from regswitch.console.api.deps import OperationsDep, SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.storage.base import END_REASONS, CdrFilter, CdrRecord, StorageError, normalise_aor

router = APIRouter(tags=["calls"])

CDR_FIELDS = [
    "id",
    "caller",
    "callee",
    "caller_contact",
    "callee_contact",
    "caller_source",
    "callee_source",
    "a_call_id",
    "b_call_id",
    "start",
    "answer",
    "end",
    "billable_seconds",
    "final_code",
    "end_reason",
    "end_direction",
]


@router.get("/api/calls")
async def list_calls(ops: OperationsDep) -> list[dict[str, Any]]:
    return ops.calls()


@router.delete("/api/calls/{call_id}")
async def hang_up(call_id: str, ops: OperationsDep) -> dict[str, Any]:
    """Hang up a call in progress; in a cluster, whichever node holds it."""
    try:
        node = await ops.hang_up(call_id)
    except StorageError as exc:
        raise ApiError(503, str(exc)) from None
    if node is None:
        raise ApiError(404, f"no call {call_id} in progress")
    return {"id": call_id, "ended": True, "reason": "admin-hangup", "node": node}


def _time(value: str | None, name: str) -> float | None:
    """Epoch seconds or ISO 8601."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, f"{name} must be epoch seconds or ISO 8601, not {value!r}") from None


@router.get("/api/cdrs", response_model=None)
async def list_cdrs(
    switch: SwitchDep,
    account: str | None = None,
    reason: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = Query(100, ge=1, le=100_000),
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Any:
    if reason is not None and reason not in END_REASONS:
        raise ApiError(400, f"unknown reason {reason!r}; one of {', '.join(sorted(END_REASONS))}")
    await switch.storage.cdrs.flush()
    records = await switch.storage.cdrs.query(
        CdrFilter(
            account=normalise_aor(account) if account else None,
            reason=reason,
            since=_time(since, "since"),
            until=_time(until, "until"),
            limit=limit,
        )
    )
    if format == "csv":
        return Response(
            _csv(records),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'},
        )
    return [asdict(r) for r in records]


def _csv(records: list[CdrRecord]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CDR_FIELDS)
    writer.writeheader()
    for record in records:
        writer.writerow({k: v for k, v in asdict(record).items() if k in CDR_FIELDS})
    return out.getvalue()
