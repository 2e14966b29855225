"""/api/cluster: the nodes of the cluster, their heartbeats, bindings and calls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.storage.base import StorageError

router = APIRouter(tags=["cluster"])


@router.get("/api/cluster")
async def cluster_status(switch: SwitchDep) -> dict[str, Any]:
    """Every node (`alive` once its heartbeat is older than cluster_node_timeout
    is false), with the bindings and calls it holds. Not a cluster: this node alone."""
    try:
        return await switch.cluster_status()
    except StorageError as exc:
        raise ApiError(503, str(exc)) from None
