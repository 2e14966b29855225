"""/api/tombstones: replaced and blocked registrations the registrar still refuses,
and lifting them (with the account's flapping and ping-pong holds)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.console.api.deps import SwitchDep
from regswitch.storage.base import normalise_aor

router = APIRouter(prefix="/api/tombstones", tags=["registrations"])


@router.get("")
async def list_tombstones(switch: SwitchDep, account: str | None = None) -> list[dict[str, Any]]:
    """Replaced registrations whose refresh is refused, and blocked devices."""
    now = switch.clock()
    aor = normalise_aor(account) if account else None
    return [s.view(now) for s in switch.registrar.guard.tombstones.of(aor, now)]


@router.delete("")
async def lift_tombstones(account: str, switch: SwitchDep) -> dict[str, Any]:
    """Let the account's replaced and blocked devices register again, and end
    its flapping or ping-pong hold."""
    aor = normalise_aor(account)
    registrar, guard, now = switch.registrar, switch.registrar.guard, switch.clock()
    lifted = guard.tombstones.lift(aor)
    held = registrar.flapping.held(aor, now) or guard.pingpong.held(aor, now)
    registrar.flapping.release(aor)
    guard.pingpong.release(aor)
    return {"account": aor, "lifted": lifted, "hold_released": held}
