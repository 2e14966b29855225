"""/api/registrations: list (filter by account or source IP), delete with or without
kick, optionally blocking the device for a while."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from regswitch.console.api.deps import OperationsDep
from regswitch.console.api.errors import ApiError
from regswitch.storage.base import normalise_aor

router = APIRouter(prefix="/api/registrations", tags=["registrations"])


@router.get("")
async def list_registrations(
    ops: OperationsDep,
    response: Response,
    account: str | None = None,
    ip: str | None = None,
    limit: int | None = Query(None, ge=1, le=100_000, description="page size (all when absent)"),
    offset: int = Query(0, ge=0),
) -> list[dict[str, Any]]:
    """Current registrations ordered by account, then age; `X-Total-Count`
    gives the number before paging."""
    now = ops.clock()
    items = ops.registrations(normalise_aor(account) if account else None, ip)
    items.sort(key=lambda b: (b.aor, b.registered_at))
    response.headers["X-Total-Count"] = str(len(items))
    page = items[offset : offset + limit] if limit is not None else items[offset:]
    return [b.view(now) for b in page]


@router.get("/{binding_id}")
async def get_registration(binding_id: str, ops: OperationsDep) -> dict[str, Any]:
    binding = ops.registration(binding_id)
    if binding is None:
        raise ApiError(404, f"no registration {binding_id}")
    return binding.view(ops.clock())


@router.delete("/{binding_id}")
async def delete_registration(
    binding_id: str,
    ops: OperationsDep,
    kick: bool = False,
    block: int = Query(
        0, ge=0, le=604800, description="also refuse this device for so many seconds"
    ),
) -> dict[str, Any]:
    result = await ops.delete_registration(binding_id, kick, block)
    if result is None:
        raise ApiError(404, f"no registration {binding_id}")
    return result
