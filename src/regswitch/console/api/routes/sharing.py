"""/api/sharing: accounts suspected of credential sharing (the console's badge),
and unlocking one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.console.api.deps import OperationsDep
from regswitch.console.api.errors import ApiError
from regswitch.storage.base import normalise_aor

router = APIRouter(prefix="/api/sharing", tags=["accounts"])


@router.get("")
async def list_suspected(ops: OperationsDep) -> list[dict[str, Any]]:
    """Accounts suspected within the last SHARING_WINDOW, or locked now."""
    return ops.sharing_suspects()


@router.delete("/{account}")
async def unlock(account: str, ops: OperationsDep) -> dict[str, Any]:
    """Unlock the account and forget its suspicion (counting starts afresh)."""
    aor = normalise_aor(account)
    if not ops.unlock_sharing(aor):
        raise ApiError(404, f"{aor} is neither suspected nor locked")
    return {"account": aor, "unlocked": True}
