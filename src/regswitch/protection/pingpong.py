"""Ping-pong: two devices replacing each other on one account over hours.

The flapping limit (docs/behaviour.md §5) counts replacements in a short
window; phones that refresh every 300 s or more, or users who restart a
phone each time it is signed out, never reach it. This counts replacements
between the *same two devices* over a long window; more than `limit` of them
holds the account, as flapping does: further replacements are refused and
whichever device holds the account keeps it.

A device is its `+sip.instance`, or else its source IP with its user agent
(its port changes with every restart behind NAT). Two identical phones
behind one NAT address look like one device and are not counted.

Pure: every step takes `now`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


def device_of(instance: str | None, source_ip: str, user_agent: str | None) -> str:
    if instance:
        return f"instance:{instance}"
    return f"ip:{source_ip}|ua:{user_agent or ''}"


@dataclass
class PingPongDetector:
    limit: int = 4
    window: float = 7200.0
    hold: float = 3600.0
    _replaces: dict[tuple[str, str, str], deque[float]] = field(default_factory=dict)
    _held: dict[str, tuple[float, tuple[str, str]]] = field(default_factory=dict)

    def replaced(self, aor: str, old_device: str, new_device: str, now: float) -> bool:
        """Record that `new_device` replaced `old_device`; True when the pair has
        just exceeded the limit (the account is then held)."""
        if old_device == new_device:
            return False
        first, second = sorted((old_device, new_device))
        key = (aor, first, second)
        times = self._replaces.get(key)
        if times is None:
            if len(self._replaces) > 100_000:
                self._prune(now)
            times = self._replaces[key] = deque()
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) <= self.limit:
            return False
        times.clear()
        del self._replaces[key]
        if self.hold > 0:
            self._held[aor] = (now + self.hold, (first, second))
        return True

    def held(self, aor: str, now: float) -> bool:
        entry = self._held.get(aor)
        if entry is None:
            return False
        if now >= entry[0]:
            del self._held[aor]
            return False
        return True

    def held_until(self, aor: str) -> float | None:
        entry = self._held.get(aor)
        return entry[0] if entry else None

    def devices(self, aor: str) -> tuple[str, str] | None:
        entry = self._held.get(aor)
        return entry[1] if entry else None

    def release(self, aor: str) -> None:
        self._held.pop(aor, None)
        for key in [k for k in self._replaces if k[0] == aor]:
            del self._replaces[key]

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._replaces.items() if not t or now - t[-1] > self.window]:
            del self._replaces[key]
