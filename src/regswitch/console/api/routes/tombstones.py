"""/api/tombstones: replaced and blocked registrations the registrar still refuses,
and lifting them (with the account's flapping and ping-pong holds)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.console.api.deps import OperationsDep
from regswitch.storage.base import normalise_aor

router = APIRouter(prefix="/api/tombstones", tags=["registrations"])


@router.get("")
async def list_tombstones(ops: OperationsDep, account: str | None = None) -> list[dict[str, Any]]:
    """Replaced registrations whose refresh is refused, and blocked devices."""
    return ops.tombstones(normalise_aor(account) if account else None)


@router.delete("")
async def lift_tombstones(account: str, ops: OperationsDep) -> dict[str, Any]:
    """Let the account's replaced and blocked devices register again, and end
    its flapping or ping-pong hold."""
    return ops.lift_holds(normalise_aor(account))
