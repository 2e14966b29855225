"""The dashboard's last hour: a sample of the switch's counters every few
seconds, kept in memory (a ring of one hour), read by the console at load and
pushed to it live on the event stream.

A sample holds gauges as they are (bindings, calls up) and counters as the
amount since the previous sample (kicks, rejections, flood blocks) or as a
rate (REGISTERs per second). Nothing is stored: after a restart the charts
start empty, which the console shows as such.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from regswitch.common.periodic import Periodic

INTERVAL = 5.0
SPAN = 3600.0

#: counter name -> how a sample shows it
COUNTERS = {"registers": "registers_per_s", "kicks": "kicks", "rejections": "rejections",
            "flood_blocks": "flood_blocks"}  # fmt: skip
GAUGES = ("bindings", "calls")


class Sampler:
    def __init__(
        self,
        read: Callable[[], Mapping[str, float]],
        clock: Callable[[], float],
        interval: float = INTERVAL,
        span: float = SPAN,
    ) -> None:
        self.read = read
        self.clock = clock
        self.interval = interval
        self.samples: deque[dict[str, Any]] = deque(maxlen=max(1, int(span / interval)))
        self.seq = 0  # grows with every sample: the stream sends each once
        self._last: tuple[float, Mapping[str, float]] | None = None
        self._periodic = Periodic(interval, self.sample, "dashboard-sampler")

    def start(self) -> None:
        self._last = (self.clock(), self.read())
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def sample(self) -> dict[str, Any]:
        now, values = self.clock(), self.read()
        then, before = self._last or (now, values)
        self._last = (now, values)
        elapsed = max(now - then, 1e-9)
        point: dict[str, Any] = {"time": round(now, 3)}
        for name in GAUGES:
            point[name] = values.get(name, 0)
        for name, shown in COUNTERS.items():
            delta = max(0.0, values.get(name, 0) - before.get(name, 0))
            point[shown] = round(delta / elapsed, 2) if shown.endswith("_per_s") else int(delta)
        self.samples.append(point)
        self.seq += 1
        return point

    def latest(self) -> dict[str, Any] | None:
        return self.samples[-1] if self.samples else None
