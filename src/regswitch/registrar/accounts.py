"""Accounts in memory, written through to storage; validation for the console."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from regswitch.common.networks import IPNetwork, in_networks, parse_networks
from regswitch.sip import digest
from regswitch.storage.base import (
    POLICY_VALUES,
    Account,
    AccountStore,
    normalise_aor,
    shared,
    shared_tuple,
)

_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9\-.\[\]:]+\Z")
EDITABLE = frozenset(
    {
        "password",
        "allowed_networks",
        "max_contacts",
        "register_replace",
        "replace_keep_calls",
        "enabled",
    }
)


class AccountError(ValueError):
    """Refused account input; nothing changed. `status` is the HTTP status to use."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Networks:
    """An allowed-networks list parsed once, with the answers to "is this
    source allowed?" remembered (the same phones ask at every REGISTER). One
    object per distinct list (networks_of): the accounts of one office or
    trunk share it, and its answers."""

    __slots__ = ("_allowed", "networks")

    def __init__(self, texts: tuple[str, ...]) -> None:
        self.networks: tuple[IPNetwork, ...] = parse_networks(texts)
        self._allowed: dict[str, bool] = {}

    def allows(self, ip: str) -> bool:
        allowed = self._allowed
        known = allowed.get(ip)
        if known is None:
            if len(allowed) > 1024:
                allowed.clear()
            known = allowed[ip] = in_networks(ip, self.networks)
        return known


_NETWORKS: dict[tuple[str, ...], Networks] = {}
NETWORKS_REMEMBERED = 4096  # distinct lists; beyond, a later list is parsed on its own


def networks_of(texts: tuple[str, ...]) -> Networks | None:
    if not texts:
        return None
    known = _NETWORKS.get(texts)
    if known is None:
        if len(_NETWORKS) >= NETWORKS_REMEMBERED:
            _NETWORKS.clear()
        known = _NETWORKS[texts] = Networks(texts)
    return known


class AccountEntry:
    """An account and its allowed networks (shared with every account that
    lists the same ones). A switch holds one per account."""

    __slots__ = ("_networks", "account", "aor")

    def __init__(self, account: Account) -> None:
        self.account = account
        # the account's key, one string: every binding and protection table of
        # the account keys on it rather than on a copy parsed from its REGISTERs
        self.aor = account.aor
        self._networks = networks_of(account.allowed_networks)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        networks = self._networks
        return networks.networks if networks is not None else ()

    def allows(self, ip: str) -> bool:
        networks = self._networks
        return networks is not None and networks.allows(ip)


# How long a storage read that found no account is trusted (shared storage):
# a stranger guessing names costs one read per name in that time, and the
# flood guard counts his failed credentials.
MISS_MEMORY = 5.0
MISS_LIMIT = 10_000


class Accounts:
    def __init__(
        self, store: AccountStore, clock: Callable[[], float], *, shared: bool = False
    ) -> None:
        self._store = store
        self._clock = clock
        self._by_aor: dict[str, AccountEntry] = {}
        # a cluster node: another node may have created an account an instant
        # before its phone's REGISTER reaches this one, ahead of the bus's news
        self._shared = shared
        self._missing: dict[str, float] = {}  # aor -> when storage last lacked it

    async def load(self) -> None:
        for account in await self._store.list_all():
            self._hold(account)

    async def refresh(self, aor: str | None = None) -> None:
        """Read one account (None: every account) again from storage: another
        cluster node changed it there."""
        if aor is None:
            entries = [AccountEntry(a) for a in await self._store.list_all()]
            fresh = {e.aor: e for e in entries}
            self._by_aor.clear()
            self._by_aor.update(fresh)
            return
        key = normalise_aor(aor)
        self._missing.pop(key, None)
        account = await self._store.get(key)
        if account is None:
            self._by_aor.pop(key, None)
        else:
            self._hold(account)

    def get(self, aor: str) -> AccountEntry | None:
        return self._by_aor.get(aor)

    def key(self, aor: str) -> str:
        """The account's own string for `aor` (the text itself if no such account)."""
        entry = self._by_aor.get(aor)
        return entry.aor if entry is not None else aor

    def unheard(self, aor: str, now: float) -> bool:
        """Whether shared storage may hold `aor` though this node has not heard
        of it yet (not read there in the last MISS_MEMORY seconds)."""
        if not self._shared or aor in self._by_aor:
            return False
        lacked = self._missing.get(aor)
        return lacked is None or now - lacked >= MISS_MEMORY

    async def read_unheard(self, aor: str, now: float) -> None:
        """Read `aor` from storage (after `unheard`); marked first, so that
        requests arriving during the read do not read it again."""
        if len(self._missing) >= MISS_LIMIT:
            self._missing.clear()
        self._missing[aor] = now
        account = await self._store.get(aor)
        if account is not None and aor not in self._by_aor:
            self._missing.pop(aor, None)
            self._hold(account)

    def list(self) -> list[Account]:
        return sorted((e.account for e in self._by_aor.values()), key=lambda a: a.aor)

    def __len__(self) -> int:
        return len(self._by_aor)

    def build(self, data: dict[str, Any], existing: Account | None = None) -> Account:
        """Validate input (a create body or a patch) into an Account."""
        unknown = set(data) - EDITABLE - {"user", "domain"}
        if unknown:
            raise AccountError(f"unknown field(s): {', '.join(sorted(unknown))}", 422)
        now = self._clock()
        if existing is None:
            user = str(data.get("user") or "").strip()
            # one string per domain, however many accounts it holds
            domain = shared(str(data.get("domain") or "").strip().lower())
            if not _USER.match(user):
                raise AccountError("user must be a non-empty SIP user part", 422)
            if not _DOMAIN.match(domain):
                raise AccountError("domain must be a host name or address", 422)
            password = data.get("password")
            networks = data.get("allowed_networks") or []
            if not password and not networks:
                raise AccountError("an account needs a password or allowed_networks", 422)
            base = Account(
                user=user, domain=domain, ha1_md5="", ha1_sha256="", created_at=now, updated_at=now
            )
        else:
            if ("user" in data and data["user"] != existing.user) or (
                "domain" in data and str(data["domain"]).lower() != existing.domain
            ):
                raise AccountError("user and domain cannot change; create a new account", 422)
            base = replace(existing, updated_at=now)
        changes: dict[str, Any] = {}
        if data.get("password") is not None:
            password = data["password"]
            if not isinstance(password, str) or not password or len(password) > 128:
                raise AccountError("password must be 1-128 characters", 422)
            changes["ha1_md5"] = digest.ha1(base.user, base.domain, password, "MD5")
            changes["ha1_sha256"] = digest.ha1(base.user, base.domain, password, "SHA-256")
        elif "password" in data and existing is not None:
            # null clears it: the account becomes IP-only (checked below: needs networks)
            changes["ha1_md5"] = changes["ha1_sha256"] = ""
        if "allowed_networks" in data:
            nets = data["allowed_networks"] or []
            if isinstance(nets, str):
                nets = [n for n in nets.split(",") if n.strip()]
            if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
                raise AccountError("allowed_networks must be a list of CIDR strings", 422)
            try:
                parsed = parse_networks(nets)
            except ValueError as exc:
                raise AccountError(str(exc), 422) from None
            changes["allowed_networks"] = shared_tuple(tuple(str(n) for n in parsed))
        if "max_contacts" in data:
            value = data["max_contacts"]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
                raise AccountError("max_contacts must be an integer from 1 to 100", 422)
            changes["max_contacts"] = value
        for name in ("register_replace", "replace_keep_calls"):
            if name in data:
                value = str(data[name]).strip().lower()
                if value not in POLICY_VALUES:
                    raise AccountError(f"{name} must be inherit, on or off", 422)
                changes[name] = value
        if "enabled" in data:
            if not isinstance(data["enabled"], bool):
                raise AccountError("enabled must be true or false", 422)
            changes["enabled"] = data["enabled"]
        account = replace(base, **changes)
        if not account.ha1_md5 and not account.allowed_networks:
            raise AccountError("an account needs a password or allowed_networks", 422)
        return account

    async def create(self, data: dict[str, Any]) -> Account:
        account = self.build(data)
        if account.aor in self._by_aor:
            raise AccountError(f"account {account.aor} already exists", 409)
        await self._save(account)
        return account

    async def update(self, aor: str, patch: dict[str, Any]) -> Account:
        entry = self._by_aor.get(normalise_aor(aor))
        if entry is None:
            raise AccountError(f"no account {aor}", 404)
        account = self.build(patch, entry.account)
        await self._save(account)
        return account

    async def delete(self, aor: str) -> Account:
        key = normalise_aor(aor)
        entry = self._by_aor.get(key)
        if entry is None:
            raise AccountError(f"no account {aor}", 404)
        await self._store.delete(key)
        del self._by_aor[key]
        return entry.account

    async def import_many(
        self, items: builtins.list[dict[str, Any]], replace_existing: bool = False
    ) -> dict[str, int]:
        """Bulk import: all validated first; nothing is written if any item is bad."""
        accounts: list[Account] = []
        seen: set[str] = set()
        for number, item in enumerate(items, 1):
            try:
                existing = None
                if replace_existing:
                    entry = self._by_aor.get(
                        normalise_aor(f"{item.get('user', '')}@{item.get('domain', '')}")
                    )
                    existing = entry.account if entry else None
                if existing is not None:
                    patch = {k: v for k, v in item.items() if k not in ("user", "domain")}
                    account = self.build(patch, existing)
                else:
                    account = self.build(item)
            except AccountError as exc:
                raise AccountError(f"item {number}: {exc}", exc.status) from None
            if account.aor in seen or (account.aor in self._by_aor and not replace_existing):
                raise AccountError(f"item {number}: account {account.aor} already exists", 409)
            seen.add(account.aor)
            accounts.append(account)
        created = sum(1 for a in accounts if a.aor not in self._by_aor)
        # one transaction, and no task per account (each left garbage behind)
        await self._store.put_many(accounts)
        for account in accounts:
            self._missing.pop(account.aor, None)
            self._hold(account)
        return {"created": created, "updated": len(accounts) - created}

    async def _save(self, account: Account) -> None:
        await self._store.put(account)
        self._missing.pop(account.aor, None)
        self._hold(account)

    def _hold(self, account: Account) -> None:
        entry = AccountEntry(account)
        self._by_aor[entry.aor] = entry


def account_view(account: Account) -> dict[str, Any]:
    """The console's view: everything but the hashes."""
    return {
        "user": account.user,
        "domain": account.domain,
        "aor": account.aor,
        "allowed_networks": list(account.allowed_networks),
        "max_contacts": account.max_contacts,
        "register_replace": account.register_replace,
        "replace_keep_calls": account.replace_keep_calls,
        "enabled": account.enabled,
        "has_password": bool(account.ha1_md5),
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }
