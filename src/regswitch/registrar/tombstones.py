"""Tombstones: what the registrar remembers of a binding it took away (docs/behaviour.md §10).

A kicked phone is not told (a REGISTER has no way to say "you were replaced"
later), so at its next refresh it comes back with the Call-ID of the binding
it lost. Without memory that refresh is a newcomer and kicks the phone that
replaced it, which kicks back at its own refresh: a kick war. A tombstone
keeps the kicked registration's identity (Call-ID, `+sip.instance`, source,
user agent) and who replaced it, so that refresh is refused with an
explanation instead. A *fresh* registration (a new Call-ID: the user
restarted the phone) is not a refresh and is a normal newcomer.

An operator's "delete and block" leaves a tombstone of kind `blocked`: it
refuses the device itself for a while, a fresh registration included (same
Call-ID, same instance, or, for a device that declares none, the same source
IP and user agent).

Pure: every step takes `now`; the service does the I/O.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from typing import Literal

from regswitch.registrar.bindings import Binding

Kind = Literal["replaced", "blocked"]

# a phone refused over and over must not grow memory without bound
MAX_PER_ACCOUNT = 16


@dataclass(slots=True)
class Tombstone:
    aor: str
    kind: Kind
    binding_id: str
    call_id: str
    instance: str | None
    source: str
    source_ip: str
    user_agent: str | None
    contact: str
    at: float  # when it was replaced or blocked
    until: float  # refusals end here
    by_contact: str | None = None  # for `replaced`: the newcomer
    by_source: str | None = None
    by_agent: str | None = None
    by_binding: str | None = None
    refusals: int = 0

    def matches(
        self, call_id: str, instances: set[str], source_ip: str, user_agent: str | None
    ) -> bool:
        """Is this REGISTER the remembered registration (or, blocked, the device)?"""
        if call_id == self.call_id:
            return True
        if self.kind != "blocked":
            return False
        if self.instance:
            return self.instance in instances
        return not instances and source_ip == self.source_ip and user_agent == self.user_agent

    def view(self, now: float) -> dict[str, object]:
        return {
            "account": self.aor,
            "kind": self.kind,
            "binding": self.binding_id,
            "call_id": self.call_id,
            "instance": self.instance,
            "source": self.source,
            "user_agent": self.user_agent,
            "contact": self.contact,
            "at": self.at,
            "until": self.until,
            "remaining": max(0, int(self.until - now + 0.5)),
            "by_contact": self.by_contact,
            "by_source": self.by_source,
            "by_agent": self.by_agent,
            "by_binding": self.by_binding,
            "refusals": self.refusals,
        }


def refusal_text(stone: Tombstone, now: float) -> str:
    """The Warning text of a refusal: what happened, by what, and when."""
    when = email.utils.formatdate(stone.at, usegmt=True)
    if stone.kind == "blocked":
        until = email.utils.formatdate(stone.until, usegmt=True)
        return (
            f"{stone.aor}: this device was removed and blocked by the operator at {when} "
            f"until {until}"
        )
    agent = f" ({stone.by_agent})" if stone.by_agent else ""
    return (
        f"{stone.aor} was registered by another device at {when}: {stone.by_contact} from "
        f"{stone.by_source}{agent}; this registration (Call-ID {stone.call_id}) was replaced "
        f"and is closed. Registering anew takes the account back."
    )


def _stone(binding: Binding, kind: Kind, now: float, until: float) -> Tombstone:
    return Tombstone(
        aor=binding.aor,
        kind=kind,
        binding_id=binding.id,
        call_id=binding.call_id,
        instance=binding.instance,
        source=binding.source,
        source_ip=binding.source_ip,
        user_agent=binding.user_agent,
        contact=binding.contact,
        at=now,
        until=until,
    )


class Tombstones:
    """Tombstones per account; expired ones are dropped as they are met."""

    def __init__(self) -> None:
        self._by_aor: dict[str, list[Tombstone]] = {}

    def replaced(
        self,
        old: Binding,
        now: float,
        keep_for: float,
        *,
        by_contact: str | None,
        by_source: str,
        by_agent: str | None,
        by_binding: str | None,
    ) -> Tombstone:
        """Remember a replaced binding until its old expiry, and at least `keep_for`
        seconds: a phone refused once may retry later with the same Call-ID."""
        stone = _stone(old, "replaced", now, max(old.expires_at, now + keep_for))
        stone.by_contact = by_contact
        stone.by_source = by_source
        stone.by_agent = by_agent
        stone.by_binding = by_binding
        self._add(stone)
        return stone

    def blocked(self, binding: Binding, now: float, seconds: float) -> Tombstone:
        stone = _stone(binding, "blocked", now, now + seconds)
        self._add(stone)
        return stone

    def _add(self, stone: Tombstone) -> None:
        stones = self._by_aor.setdefault(stone.aor, [])
        stones[:] = [s for s in stones if s.call_id != stone.call_id or s.kind != stone.kind]
        stones.append(stone)
        if len(stones) > MAX_PER_ACCOUNT:
            del stones[0]

    def refusing(
        self,
        aor: str,
        call_id: str,
        instances: set[str],
        source_ip: str,
        user_agent: str | None,
        now: float,
    ) -> Tombstone | None:
        """The tombstone that refuses this REGISTER, if any (a block first)."""
        stones = self._by_aor.get(aor)
        if not stones:
            return None
        live = [s for s in stones if s.until > now]
        if len(live) != len(stones):
            if live:
                self._by_aor[aor] = stones = live
            else:
                del self._by_aor[aor]
                return None
        found: Tombstone | None = None
        for stone in stones:
            if stone.matches(call_id, instances, source_ip, user_agent):
                if stone.kind == "blocked":
                    return stone
                found = found or stone
        return found

    def lift(self, aor: str) -> int:
        """An operator clears an account's tombstones; returns how many."""
        return len(self._by_aor.pop(aor, []))

    def of(self, aor: str | None, now: float) -> list[Tombstone]:
        items = self._by_aor.get(aor, []) if aor else [s for v in self._by_aor.values() for s in v]
        return [s for s in items if s.until > now]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_aor.values())
