"""/api/parameters: read all, read one, set live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.common.params import ParamError
from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.console.api.schemas import ParameterValue

router = APIRouter(prefix="/api/parameters", tags=["parameters"])


@router.get("")
async def list_parameters(switch: SwitchDep) -> list[dict[str, Any]]:
    return switch.params.describe()


def _one(switch: Any, name: str) -> dict[str, Any]:
    for item in switch.params.describe():
        if item["name"] == name.strip().upper():
            return dict(item)
    raise ApiError(404, f"no parameter {name}")


@router.get("/{name}")
async def get_parameter(name: str, switch: SwitchDep) -> dict[str, Any]:
    return _one(switch, name)


@router.put("/{name}")
async def set_parameter(name: str, body: ParameterValue, switch: SwitchDep) -> dict[str, Any]:
    _one(switch, name)
    try:
        change = await switch.set_param(name, body.value)
    except ParamError as exc:
        raise ApiError(400, str(exc)) from None
    item = _one(switch, name)
    item["old"] = change["old"]
    return item
