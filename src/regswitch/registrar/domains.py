"""The served SIP domains, as data: in memory (the registrar reads the live
set at every REGISTER), written through to storage, seeded from the
configuration (`--domain`) at every start."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable

from regswitch.registrar.accounts import _DOMAIN as DOMAIN_NAME
from regswitch.storage.base import Domain, DomainStore


class DomainError(ValueError):
    """Refused domain change; nothing changed. `status` is the HTTP status to use."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Domains:
    def __init__(
        self, store: DomainStore, clock: Callable[[], float], configured: Iterable[str]
    ) -> None:
        self._store = store
        self._clock = clock
        self.configured = tuple(d.lower() for d in configured)
        # The registrar holds this very set: it is changed in place, never replaced.
        self.names: set[str] = set(self.configured)
        self._by_name: dict[str, Domain] = {}

    async def load(self) -> None:
        """Stored domains plus the configured ones (stored if new)."""
        for domain in await self._store.list_all():
            self._by_name[domain.name] = domain
        for name in self.configured:
            if name not in self._by_name:
                domain = Domain(name=name, created_at=self._clock())
                await self._store.put(domain)
                self._by_name[name] = domain
        self.names.clear()
        self.names.update(self._by_name)

    def list(self) -> builtins.list[Domain]:
        return sorted(self._by_name.values(), key=lambda d: d.name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.names

    @staticmethod
    def normalise(name: str) -> str:
        value = name.strip().lower()
        if not value or len(value) > 253 or not DOMAIN_NAME.match(value):
            raise DomainError(f"bad domain {name!r}: expected a host name or address", 422)
        return value

    async def add(self, name: str) -> Domain:
        key = self.normalise(name)
        if key in self._by_name:
            raise DomainError(f"domain {key} is already served", 409)
        domain = Domain(name=key, created_at=self._clock())
        await self._store.put(domain)
        self._by_name[key] = domain
        self.names.add(key)
        return domain

    async def remove(self, name: str, accounts: int) -> Domain:
        """Stop serving `name`; refused while `accounts` accounts live in it."""
        key = name.strip().lower()
        domain = self._by_name.get(key)
        if domain is None:
            raise DomainError(f"no domain {name}", 404)
        if accounts:
            raise DomainError(
                f"domain {key} still has {accounts} account{'s' if accounts != 1 else ''}; "
                "delete them first",
                409,
            )
        if key in self.configured:
            raise DomainError(
                f"domain {key} is configured (--domain); remove it from the configuration "
                "and restart",
                409,
            )
        await self._store.delete(key)
        del self._by_name[key]
        self.names.discard(key)
        return domain

    def unserved(self, names: Iterable[str]) -> builtins.list[str]:
        """Those of `names` that are not served, sorted, each once."""
        return sorted({n.lower() for n in names} - self.names)


def domain_view(domain: Domain, accounts: int) -> dict[str, object]:
    return {"name": domain.name, "created_at": domain.created_at, "accounts": accounts}
