"""Per-source flood protection (SPEC §5): REGISTER rate and auth failures.

Counting is in fixed windows per source IP; a source over a limit is blocked
for a while, its requests dropped and counted. Trusted networks are exempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from regswitch.networks import IPNetwork, in_networks


@dataclass(slots=True)
class _Window:
    start: float
    requests: int = 0
    auth_failures: int = 0


@dataclass(slots=True)
class FloodLimits:
    requests: int = 200
    auth_failures: int = 20
    window: float = 10.0
    block: float = 300.0


@dataclass
class FloodGuard:
    trusted: tuple[IPNetwork, ...] = ()
    limits: FloodLimits = field(default_factory=FloodLimits)
    _windows: dict[str, _Window] = field(default_factory=dict)
    _blocked: dict[str, float] = field(default_factory=dict)
    _trusted_cache: dict[str, bool] = field(default_factory=dict)
    dropped: int = 0
    blocks: int = 0

    def _is_trusted(self, ip: str) -> bool:
        known = self._trusted_cache.get(ip)
        if known is None:
            if len(self._trusted_cache) > 100_000:
                self._trusted_cache.clear()
            known = self._trusted_cache[ip] = in_networks(ip, self.trusted)
        return known

    def blocked(self, ip: str, now: float) -> bool:
        """Is `ip` blocked now? (counts the drop)."""
        until = self._blocked.get(ip)
        if until is None:
            return False
        if now >= until:
            del self._blocked[ip]
            return False
        self.dropped += 1
        return True

    def is_blocked(self, ip: str, clock: Callable[[], float]) -> bool:
        """`blocked`, reading the clock only for a source that was blocked."""
        return ip in self._blocked and self.blocked(ip, clock())

    def register(self, ip: str, now: float) -> str | None:
        """Count a REGISTER from `ip`; returns a reason if it just got blocked."""
        if self._is_trusted(ip):
            return None
        window = self._window(ip, now)
        window.requests += 1
        if window.requests > self.limits.requests:
            return self._block(
                ip, now, f"more than {self.limits.requests} REGISTERs in {self.limits.window:g} s"
            )
        return None

    def auth_failed(self, ip: str, now: float) -> str | None:
        if self._is_trusted(ip):
            return None
        window = self._window(ip, now)
        window.auth_failures += 1
        if window.auth_failures > self.limits.auth_failures:
            return self._block(
                ip,
                now,
                f"more than {self.limits.auth_failures} failed authentications"
                f" in {self.limits.window:g} s",
            )
        return None

    def _window(self, ip: str, now: float) -> _Window:
        window = self._windows.get(ip)
        if window is None or now - window.start >= self.limits.window:
            if len(self._windows) > 200_000:
                self._prune(now)
            window = self._windows[ip] = _Window(now)
        return window

    def _prune(self, now: float) -> None:
        old = [ip for ip, w in self._windows.items() if now - w.start >= self.limits.window]
        for ip in old:
            del self._windows[ip]

    def _block(self, ip: str, now: float, reason: str) -> str:
        self._blocked[ip] = now + self.limits.block
        self._windows.pop(ip, None)
        self.blocks += 1
        return reason

    def unblock(self, ip: str) -> bool:
        return self._blocked.pop(ip, None) is not None

    def blocked_sources(self, now: float) -> dict[str, float]:
        return {ip: until - now for ip, until in self._blocked.items() if until > now}
