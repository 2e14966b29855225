"""/api/domains: the served SIP domains (live: a REGISTER to a domain added
here is served at once)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter

from regswitch.app.switch import Switch
from regswitch.common.domain_events import DomainChanged
from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.console.api.schemas import DomainCreate
from regswitch.registrar.domains import DomainError, domain_view

router = APIRouter(prefix="/api/domains", tags=["domains"])


def accounts_by_domain(switch: Switch) -> Counter[str]:
    return Counter(a.domain for a in switch.accounts.list())


@router.get("")
async def list_domains(switch: SwitchDep) -> list[dict[str, Any]]:
    counts = accounts_by_domain(switch)
    return [domain_view(d, counts[d.name]) for d in switch.domains.list()]


@router.post("", status_code=201)
async def create_domain(body: DomainCreate, switch: SwitchDep) -> dict[str, Any]:
    try:
        domain = await switch.domains.add(body.domain)
    except DomainError as exc:
        raise ApiError(exc.status, str(exc)) from None
    switch.events.emit(DomainChanged(source="api", action="created", domain=domain.name))
    return domain_view(domain, 0)


@router.delete("/{name}")
async def delete_domain(name: str, switch: SwitchDep) -> dict[str, Any]:
    try:
        domain = await switch.domains.remove(name, accounts_by_domain(switch)[name.lower()])
    except DomainError as exc:
        raise ApiError(exc.status, str(exc)) from None
    switch.events.emit(DomainChanged(source="api", action="deleted", domain=domain.name))
    return {"deleted": domain.name}
