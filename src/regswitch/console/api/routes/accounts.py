"""/api/accounts: create, read, update, delete, bulk import."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regswitch.app.switch import Switch
from regswitch.common.domain_events import AccountChanged, DomainChanged
from regswitch.console.api.deps import SwitchDep
from regswitch.console.api.errors import ApiError
from regswitch.console.api.schemas import AccountCreate, AccountImport, AccountPatch, patch_dict
from regswitch.registrar.accounts import AccountError, account_view
from regswitch.storage.base import normalise_aor

router = APIRouter(prefix="/api/accounts", tags=["accounts"])


def _fail(exc: AccountError) -> ApiError:
    return ApiError(exc.status, str(exc))


def unserved_domains(switch: Switch, domains: list[str], create: bool) -> list[str]:
    """The domains to create after the accounts are stored; 422 naming the
    fix when some are not served and the client did not ask to create them
    (an account nobody can register with is a mistake, not a success)."""
    missing = switch.domains.unserved(d.strip() for d in domains)
    if missing and not create:
        first = missing[0]
        raise ApiError(
            422,
            f"domain {first} is not served: add it first (regswitch domain add {first}, "
            'or POST /api/domains), or send "create_domain": true',
        )
    return missing


async def serve_domains(switch: Switch, names: list[str]) -> None:
    for name in names:
        domain = await switch.domains.add(name)
        switch.events.emit(DomainChanged(source="api", action="created", domain=domain.name))


@router.get("")
async def list_accounts(switch: SwitchDep) -> list[dict[str, Any]]:
    return [account_view(a) for a in switch.accounts.list()]


@router.post("", status_code=201)
async def create_account(body: AccountCreate, switch: SwitchDep) -> dict[str, Any]:
    missing = unserved_domains(switch, [body.domain], body.create_domain)
    try:
        account = await switch.accounts.create(body.model_dump(exclude={"create_domain"}))
    except AccountError as exc:
        raise _fail(exc) from None
    await serve_domains(switch, missing)
    switch.events.emit(AccountChanged(account=account.aor, source="api", action="created"))
    return account_view(account)


@router.post("/import")
async def import_accounts(body: AccountImport, switch: SwitchDep) -> dict[str, int]:
    missing = unserved_domains(switch, [a.domain for a in body.accounts], body.create_domain)
    try:
        result = await switch.accounts.import_many(
            [a.model_dump(exclude={"create_domain"}) for a in body.accounts],
            body.replace_existing,
        )
    except AccountError as exc:
        raise _fail(exc) from None
    await serve_domains(switch, missing)
    switch.events.emit(AccountChanged(source="api", action="imported",
                       created=result["created"], updated=result["updated"]))  # fmt: skip
    return result


@router.get("/{aor}")
async def get_account(aor: str, switch: SwitchDep) -> dict[str, Any]:
    entry = switch.accounts.get(normalise_aor(aor))
    if entry is None:
        raise ApiError(404, f"no account {aor}")
    view = account_view(entry.account)
    view["registrations"] = [
        b.view(switch.clock()) for b in switch.operations.registrations(entry.account.aor)
    ]
    return view


@router.patch("/{aor}")
async def update_account(aor: str, body: AccountPatch, switch: SwitchDep) -> dict[str, Any]:
    patch = patch_dict(body)
    if not patch:
        raise ApiError(400, "nothing to change")
    try:
        account = await switch.accounts.update(aor, patch)
    except AccountError as exc:
        raise _fail(exc) from None
    switch.events.emit(
        AccountChanged(
            account=account.aor,
            source="api",
            action="updated",
            fields=sorted(k for k in patch if k != "password")
            + (["password"] if "password" in patch else []),
        )
    )
    return account_view(account)


@router.delete("/{aor}")
async def delete_account(aor: str, switch: SwitchDep) -> dict[str, Any]:
    try:
        account = await switch.accounts.delete(aor)
    except AccountError as exc:
        raise _fail(exc) from None
    switch.events.emit(AccountChanged(account=account.aor, source="api", action="deleted"))
    return {"deleted": account.aor}
