"""Flapping (docs/behaviour.md §5): two devices fighting over one account.

More than `limit` replacements of an account within `window` seconds puts it
on hold for `hold` seconds, during which further replacements are refused so
the current holder keeps working.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class FlapDetector:
    limit: int = 5
    window: float = 60.0
    hold: float = 300.0
    _replaces: dict[str, deque[float]] = field(default_factory=dict)
    _held_until: dict[str, float] = field(default_factory=dict)

    def held(self, aor: str, now: float) -> bool:
        until = self._held_until.get(aor)
        if until is None:
            return False
        if now >= until:
            del self._held_until[aor]
            return False
        return True

    def held_until(self, aor: str) -> float | None:
        return self._held_until.get(aor)

    def replaced(self, aor: str, now: float) -> bool:
        """Record a replacement; True if the account has just started flapping."""
        times = self._replaces.get(aor)
        if times is None:
            times = self._replaces[aor] = deque()
        times.append(now)
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) > self.limit:
            # evented even without a hold (REGISTER_FLAP_HOLD 0): then nothing is
            # refused, but the operator still learns that two devices fight
            if self.hold > 0:
                self._held_until[aor] = now + self.hold
            times.clear()
            return True
        if not times:
            del self._replaces[aor]
        return False

    def release(self, aor: str) -> None:
        self._held_until.pop(aor, None)
        self._replaces.pop(aor, None)
