"""/api/registrations: list (filter by account or source IP), delete with or without kick."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.storage.base import normalise_aor

router = APIRouter(prefix="/api/registrations", tags=["registrations"])


@router.get("")
async def list_registrations(
    switch: SwitchDep, account: str | None = None, ip: str | None = None
) -> list[dict[str, Any]]:
    now = switch.clock()
    items = switch.registrar.list(normalise_aor(account) if account else None, ip)
    return [b.view(now) for b in sorted(items, key=lambda b: (b.aor, b.registered_at))]


@router.get("/{binding_id}")
async def get_registration(binding_id: str, switch: SwitchDep) -> dict[str, Any]:
    binding = switch.location.get(binding_id)
    if binding is None:
        raise ApiError(404, f"no registration {binding_id}")
    return binding.view(switch.clock())


@router.delete("/{binding_id}")
async def delete_registration(
    binding_id: str, switch: SwitchDep, kick: bool = False
) -> dict[str, Any]:
    result = await switch.registrar.delete(binding_id, kick)
    if result is None:
        raise ApiError(404, f"no registration {binding_id}")
    return result
