"""Credential sharing: one account used from too many places (README
"Credential-sharing detector").

The most common cause of a kick war is a leaked password: the account
registers from more distinct source networks (IPv4 /24, IPv6 /56 by default)
or more distinct `+sip.instance` values than one customer has, or is kicked
over and over. Within `window` seconds, more than `max_sources` networks or
instances, or more than `max_kicks` kicks, raise one suspicion per episode
(a new one only after a whole window without). With `action` "lock" the
account is locked for `lock_time` seconds: new registrations are refused,
while the device that holds the account keeps its binding (its refreshes pass)
so the legitimate user is not the one punished. An operator unlocks early.

Only authenticated REGISTERs that create a binding are observed (a refresh of
a live binding is the same registration). Pure: every step takes `now`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

NETWORKS_REMEMBERED = 65_536
SIGHTINGS_SHOWN = 64  # per account: enough to show; the distinct counts stay right below
# accounts examined at the old end of a table per insertion (as in flood.py):
# an account not seen for a whole window goes back to holding nothing
_PRUNE_STEP = 2


def network_of(ip: str, v4_prefix: int = 24, v6_prefix: int = 56) -> str:
    """The source network an address counts as (one office, one ISP customer)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = v4_prefix if address.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Sighting:
    """One new registration of an account, linked to the account's sighting
    before it (newest first): most accounts are seen once per window, and a
    chain costs them no container."""

    __slots__ = ("at", "earlier", "instance", "network", "source_ip", "source_port",
                 "transport", "user_agent")  # fmt: skip

    def __init__(
        self,
        at: float,
        network: str,
        instance: str | None,
        user_agent: str | None,
        transport: str,
        source_ip: str,
        source_port: int,
        earlier: Sighting | None,
    ) -> None:
        self.at = at
        self.network = network
        self.instance = instance
        self.user_agent = user_agent
        # the request's own strings, shared: no "transport:ip:port" kept per sighting
        self.transport = transport
        self.source_ip = source_ip
        self.source_port = source_port
        self.earlier = earlier

    @property
    def source(self) -> str:
        return f"{self.transport}:{self.source_ip}:{self.source_port}"


def _chain(newest: Sighting | None) -> Iterator[Sighting]:
    s = newest
    while s is not None:
        yield s
        s = s.earlier


@dataclass(slots=True)
class Suspicion:
    """What the `credential-sharing-suspected` event reports."""

    aor: str
    at: float
    why: str  # "sources" | "instances" | "kicks"
    networks: list[str]
    instances: list[str]
    sources: list[str]
    user_agents: list[str]
    kicks: int
    locked_until: float | None

    def details(self) -> dict[str, object]:
        return {
            "why": self.why,
            "networks": self.networks,
            "instances": self.instances,
            "sources": self.sources,
            "user_agents": self.user_agents,
            "kicks": self.kicks,
            "locked_until": self.locked_until,
        }


@dataclass
class SharingDetector:
    max_sources: int = 3
    window: float = 3600.0
    max_kicks: int = 5
    action: str = "none"  # none | lock
    lock_time: float = 3600.0
    v4_prefix: int = 24
    v6_prefix: int = 56
    # per account, its newest sighting / its kick times, oldest first; both
    # tables in the order of each account's latest entry, so the accounts
    # whose window has passed are at the old end and pruned from there
    _seen: dict[str, Sighting] = field(default_factory=dict)
    _kicks: dict[str, list[float]] = field(default_factory=dict)
    _suspected: dict[str, Suspicion] = field(default_factory=dict)
    _locked: dict[str, float] = field(default_factory=dict)
    # source address -> its network under `_prefixes`: parsing the address with
    # ipaddress on every REGISTER cost a twentieth of the registrar's CPU
    _networks: dict[str, str] = field(default_factory=dict)
    _prefixes: tuple[int, int] = (0, 0)

    def network(self, ip: str) -> str:
        """`network_of(ip)` under the current prefixes, remembered."""
        prefixes = (self.v4_prefix, self.v6_prefix)
        networks = self._networks
        if prefixes != self._prefixes or len(networks) >= NETWORKS_REMEMBERED:
            networks.clear()  # the operator changed a prefix, or too many sources
            self._prefixes = prefixes
        network = networks.get(ip)
        if network is None:
            network = networks[ip] = network_of(ip, prefixes[0], prefixes[1])
        return network

    def registered(
        self,
        aor: str,
        transport: str,
        source_ip: str,
        source_port: int,
        instance: str | None,
        user_agent: str | None,
        now: float,
    ) -> Suspicion | None:
        """A new registration of `aor`; a new Suspicion when it tips the account over."""
        seen = self._seen
        earlier = seen.pop(aor, None)
        _prune(seen, now - self.window, _newest_sighting)
        newest = seen[aor] = Sighting(
            now, self.network(source_ip), instance, user_agent, transport, source_ip,
            source_port, earlier,
        )  # fmt: skip
        networks: set[str] = set()
        instances: set[str] = set()
        for kept, s in enumerate(_chain(newest), 1):
            earlier = s.earlier
            if earlier is not None and (kept == SIGHTINGS_SHOWN or now - earlier.at > self.window):
                s.earlier = None  # more than is shown, or older than the window
            networks.add(s.network)
            if s.instance:
                instances.add(s.instance)
        if len(networks) > self.max_sources:
            return self._suspect(aor, "sources", now)
        if len(instances) > self.max_sources:
            return self._suspect(aor, "instances", now)
        return None

    def kicked(self, aor: str, now: float) -> Suspicion | None:
        table = self._kicks
        kicks = table.pop(aor, None)
        _prune(table, now - self.window, _newest_kick)
        kicks = table[aor] = [t for t in kicks or () if now - t <= self.window]
        kicks.append(now)
        if len(kicks) > self.max_kicks:
            return self._suspect(aor, "kicks", now)
        return None

    def _suspect(self, aor: str, why: str, now: float) -> Suspicion | None:
        previous = self._suspected.get(aor)
        if previous is not None and now - previous.at <= self.window:
            return None  # one event per episode
        seen = list(_chain(self._seen.get(aor)))
        seen.reverse()  # oldest first, as they came
        locked_until = None
        if self.action == "lock" and self.lock_time > 0:
            locked_until = self._locked[aor] = now + self.lock_time
        suspicion = Suspicion(
            aor=aor,
            at=now,
            why=why,
            networks=sorted({s.network for s in seen}),
            instances=sorted({s.instance for s in seen if s.instance}),
            sources=[s.source for s in seen],
            user_agents=sorted({s.user_agent or "" for s in seen}),
            kicks=len(self._kicks.get(aor, ())),
            locked_until=locked_until,
        )
        self._suspected[aor] = suspicion
        return suspicion

    def locked_until(self, aor: str, now: float) -> float | None:
        until = self._locked.get(aor)
        if until is None:
            return None
        if now >= until:
            del self._locked[aor]
            return None
        return until

    def unlock(self, aor: str) -> bool:
        """An operator clears the account: lock, suspicion and counts."""
        known = aor in self._locked or aor in self._suspected
        self._locked.pop(aor, None)
        self._suspected.pop(aor, None)
        self._seen.pop(aor, None)
        self._kicks.pop(aor, None)
        return known

    def __len__(self) -> int:
        """Accounts whose sightings or kicks are remembered."""
        return len(self._seen) + len(self._kicks)

    def flagged(self, now: float) -> list[dict[str, object]]:
        """Accounts suspected within the last window, or locked: the console's badges."""
        out = []
        for aor, s in list(self._suspected.items()):
            locked = self.locked_until(aor, now)
            if now - s.at > self.window and locked is None:
                del self._suspected[aor]
                continue
            out.append({"account": aor, "suspected_at": s.at, **s.details(),
                        "locked_until": locked})
        return out


_Entry = TypeVar("_Entry", Sighting, list[float])


def _newest_sighting(s: Sighting) -> float:
    return s.at


def _newest_kick(kicks: list[float]) -> float:
    return kicks[-1]


def _prune(table: dict[str, _Entry], horizon: float, newest: Callable[[_Entry], float]) -> None:
    """Forget a few accounts at the old end whose latest entry is older than
    `horizon`: whatever they held has left the window."""
    for _ in range(_PRUNE_STEP):
        if not table:
            return
        oldest = next(iter(table))
        if newest(table[oldest]) >= horizon:
            return
        del table[oldest]
