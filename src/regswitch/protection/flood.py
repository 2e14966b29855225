"""Per-source flood protection (docs/behaviour.md §5).

A flood guard should stop volume that costs the switch and earns nothing,
and spare an office of phones behind one public address. Three measures,
counted in fixed windows:

- **unauthenticated volume per source**: requests refused before
  authentication, challenges sent, failed credentials; a challenge later
  answered with valid credentials is taken back. Over `unauthenticated`:
  the whole source is blocked (its packets dropped at the gate). This is
  the strong measure, and the only one a blind UDP spoofer can trip.
- **authenticated volume per source**: requests that passed authentication,
  under a much higher ceiling (`authenticated`), then the source is blocked.
- **failed credentials per (source, account)**: over `auth_failures` that
  account is blocked from that source for `block` seconds: no new nonce of
  it is verified there (guessing stops), while a device that already
  authenticated with its nonce keeps refreshing, and the source's other
  accounts are served as before.

A source is an IPv4 address or an IPv6 prefix (/64 by default: one host
holds a whole /64 and rotating through it must not evade the guard).
Every table is bounded and pruned a few entries at a time from its oldest
end (the dicts keep insertion order, which is window or block order), so a
new source never costs a scan. Trusted networks are exempt.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from regswitch.common.networks import IPNetwork, in_networks

# unanswered challenges of one account from one source, within an hour,
# before an event says so (once per hour)
UNANSWERED_REPORT = 3
UNANSWERED_HORIZON = 3600.0
# entries examined at the old end of a table per insertion: the pruning keeps
# pace with the insertions without ever scanning the table
_PRUNE_STEP = 2
_MAX_PAIRS = 200_000


@dataclass(slots=True)
class FloodLimits:
    unauthenticated: int = 200
    auth_failures: int = 20
    authenticated: int = 5000
    window: float = 10.0
    block: float = 300.0
    ipv6_prefix: int = 64


@dataclass(slots=True)
class Notice:
    """Something the operator should see: a block, or challenges nobody answers."""

    kind: Literal["source-blocked", "account-blocked", "unanswered"]
    source: str
    reason: str
    account: str | None = None


@dataclass(slots=True)
class _Window:
    start: float
    unauthenticated: int = 0
    authenticated: int = 0


@dataclass(slots=True)
class _Pair:
    start: float
    failures: int = 0
    challenges: int = 0
    reported: bool = False


@dataclass
class FloodGuard:
    trusted: tuple[IPNetwork, ...] = ()
    limits: FloodLimits = field(default_factory=FloodLimits)
    max_sources: int = 200_000
    _windows: dict[str, _Window] = field(default_factory=dict)
    # keyed by _pair_key(source, account)
    _pairs: dict[str, _Pair] = field(default_factory=dict)  # failures per window
    _unanswered: dict[str, _Pair] = field(default_factory=dict)  # challenges per hour
    _blocked: dict[str, float] = field(default_factory=dict)
    _pair_blocked: dict[str, float] = field(default_factory=dict)
    _trusted_cache: dict[str, bool] = field(default_factory=dict)
    _keys: dict[str, tuple[int, str]] = field(default_factory=dict)
    dropped: int = 0
    blocks: int = 0

    # --- sources ------------------------------------------------------------------
    def key(self, ip: str) -> str:
        """The source an address counts as: itself (IPv4), or its IPv6 prefix."""
        if ":" not in ip:
            return ip
        prefix = self.limits.ipv6_prefix
        keys = self._keys
        known = keys.get(ip)
        if known is None or known[0] != prefix:  # FLOOD_IPV6_PREFIX may change live
            if len(keys) > 100_000:
                keys.clear()
            known = keys[ip] = (prefix, _ipv6_key(ip, prefix))
        return known[1]

    def _is_trusted(self, ip: str) -> bool:
        if not self.trusted:
            return False
        known = self._trusted_cache.get(ip)
        if known is None:
            if len(self._trusted_cache) > 100_000:
                self._trusted_cache.clear()
            known = self._trusted_cache[ip] = in_networks(ip, self.trusted)
        return known

    # --- blocks -------------------------------------------------------------------
    def blocked(self, ip: str, now: float) -> bool:
        """Is the source of `ip` blocked now? (counts the drop)."""
        if not self._blocked:
            return False
        source = self.key(ip)
        until = self._blocked.get(source)
        if until is None:
            return False
        if now >= until:
            del self._blocked[source]
            return False
        self.dropped += 1
        return True

    def is_blocked(self, ip: str, clock: Callable[[], float]) -> bool:
        """`blocked`, reading the clock only when some source is blocked (the gate)."""
        return bool(self._blocked) and self.blocked(ip, clock())

    def account_blocked(self, ip: str, account: str, now: float) -> bool:
        """Is `account` refused from this source for failed credentials?"""
        if not self._pair_blocked:
            return False
        pair = _pair_key(self.key(ip), account)
        until = self._pair_blocked.get(pair)
        if until is None:
            return False
        if now >= until:
            del self._pair_blocked[pair]
            return False
        return True

    # --- counting -----------------------------------------------------------------
    def unauthenticated(self, ip: str, now: float) -> Notice | None:
        """Count one request without valid credentials from `ip` (any method:
        the call side counts its unauthenticated INVITEs here too)."""
        if self._is_trusted(ip):
            return None
        source = self.key(ip)
        window = self._window(source, now)
        window.unauthenticated += 1
        if window.unauthenticated > self.limits.unauthenticated:
            return self._block(
                source,
                now,
                f"more than {self.limits.unauthenticated} unauthenticated requests"
                f" in {self.limits.window:g} s",
            )
        return None

    def challenged(self, ip: str, account: str, now: float) -> Notice | None:
        """A challenge was sent for `account`: unauthenticated volume until
        answered, and a trace once a few go unanswered (a phone that cannot
        answer the algorithm offered leaves something for the operator)."""
        notice = self.unauthenticated(ip, now)
        if notice is not None:
            return notice
        # counted for trusted sources too (the trace is not a limit), and over
        # an hour: a phone that gives up after one challenge retries rarely
        source = self.key(ip)
        pair = _entry(self._unanswered, _pair_key(source, account), now, UNANSWERED_HORIZON)
        pair.challenges += 1
        if pair.challenges >= UNANSWERED_REPORT and not pair.reported:
            pair.reported = True
            return Notice(
                "unanswered",
                source,
                f"{pair.challenges} challenges unanswered since {now - pair.start:.0f} s",
                account,
            )
        return None

    def failed(self, ip: str, account: str, now: float) -> Notice | None:
        """Count failed credentials for `account` from `ip`."""
        source = self.key(ip)
        key = _pair_key(source, account)
        if self._unanswered:
            self._unanswered.pop(key, None)  # credentials came: the challenge was answered
        notice = self.unauthenticated(ip, now)
        if notice is not None or self._is_trusted(ip):
            return notice
        pair = _entry(self._pairs, key, now, self.limits.window)
        pair.failures += 1
        if pair.failures <= self.limits.auth_failures:
            return None
        del self._pairs[key]
        blocked = self._pair_blocked
        _prune_until(blocked, now, len(blocked) >= self.max_sources)
        blocked[key] = now + self.limits.block
        self.blocks += 1
        return Notice(
            "account-blocked",
            source,
            f"more than {self.limits.auth_failures} failed authentications of {account}"
            f" in {self.limits.window:g} s",
            account,
        )

    def authenticated(self, ip: str, account: str, now: float, answered: bool) -> Notice | None:
        """Count a request that passed authentication. `answered`: it answered
        a fresh challenge, which is taken back from the unauthenticated count."""
        source = self.key(ip)
        if self._unanswered:
            self._unanswered.pop(_pair_key(source, account), None)
        if self._is_trusted(ip):
            return None
        window = self._window(source, now)
        if answered and window.unauthenticated > 0:
            window.unauthenticated -= 1
        window.authenticated += 1
        if window.authenticated > self.limits.authenticated:
            return self._block(
                source,
                now,
                f"more than {self.limits.authenticated} authenticated requests"
                f" in {self.limits.window:g} s",
            )
        return None

    # --- tables -------------------------------------------------------------------
    def _window(self, source: str, now: float) -> _Window:
        windows = self._windows
        window = windows.get(source)
        if window is not None and now - window.start < self.limits.window:
            return window
        if window is not None:
            del windows[source]  # re-inserted at the young end: the order stays by start
        _prune_windows(windows, now - self.limits.window, len(windows) >= self.max_sources)
        window = windows[source] = _Window(now)
        return window

    def _block(self, source: str, now: float, reason: str) -> Notice:
        blocked = self._blocked
        blocked.pop(source, None)
        _prune_until(blocked, now, len(blocked) >= self.max_sources)
        blocked[source] = now + self.limits.block
        self._windows.pop(source, None)
        self.blocks += 1
        return Notice("source-blocked", source, reason)

    def adopt(self, source: str, until: float, account: str | None = None) -> None:
        """A block another cluster node decided: `source` (as `key()` gives it)
        is blocked here too until `until`, or only `account` from it."""
        if account is None:
            self._blocked.pop(source, None)  # re-inserted at the young end
            self._blocked[source] = until
            self._windows.pop(source, None)
        else:
            self._pair_blocked[_pair_key(source, account)] = until

    def unblock(self, ip: str) -> bool:
        return self._blocked.pop(self.key(ip), None) is not None

    def blocked_sources(self, now: float) -> dict[str, float]:
        return {ip: until - now for ip, until in self._blocked.items() if until > now}

    def __len__(self) -> int:
        """Entries held in all tables (each bounded)."""
        return (
            len(self._windows)
            + len(self._pairs)
            + len(self._unanswered)
            + len(self._blocked)
            + len(self._pair_blocked)
        )


def _entry(table: dict[str, _Pair], key: str, now: float, horizon: float) -> _Pair:
    """The entry of `key` in a per-(source, account) table, new once `horizon`
    has passed since it started; the table bounded like the windows."""
    pair = table.get(key)
    if pair is not None and now - pair.start < horizon:
        return pair
    if pair is not None:
        del table[key]
    _prune_windows(table, now - horizon, len(table) >= _MAX_PAIRS)
    pair = table[key] = _Pair(now)
    return pair


def _pair_key(source: str, account: str) -> str:
    return f"{source} {account}"  # a source has no space


_Started = TypeVar("_Started", _Window, _Pair)


def _prune_windows(table: dict[str, _Started], horizon: float, full: bool) -> None:
    """Drop windows that started before `horizon` from the old end, a few at a
    time; when the table is full, the oldest goes whatever its age."""
    for _ in range(_PRUNE_STEP):
        if not table:
            return
        oldest = next(iter(table))
        if table[oldest].start >= horizon and not full:
            return
        del table[oldest]
        full = False


def _prune_until(table: dict[str, float], now: float, full: bool) -> None:
    """The same for a table of block end times (inserted in end-time order
    while the block time stays the same)."""
    for _ in range(_PRUNE_STEP):
        if not table:
            return
        oldest = next(iter(table))
        if table[oldest] > now and not full:
            return
        del table[oldest]
        full = False


def _ipv6_key(ip: str, prefix: int) -> str:
    try:
        address = ipaddress.IPv6Address(ip.strip("[]").partition("%")[0])
    except ValueError:
        return ip
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    if prefix >= 128:
        return str(address)
    shift = 128 - prefix
    network = ipaddress.IPv6Address((int(address) >> shift) << shift)
    return f"{network}/{prefix}"
