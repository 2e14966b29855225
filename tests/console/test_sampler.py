"""The dashboard sampler: gauges as read, counters as amounts or rates since
the previous sample, an hour kept."""

from __future__ import annotations

from regswitch.console.sampler import Sampler


def test_samples_gauges_counts_and_rates() -> None:
    now = [100.0]
    values = {"bindings": 3, "calls": 1, "registers": 40, "kicks": 2, "rejections": 0,
              "flood_blocks": 0}  # fmt: skip
    sampler = Sampler(lambda: dict(values), lambda: now[0], interval=5, span=15)
    sampler._last = (now[0], dict(values))  # what start() records
    now[0] = 105.0
    values.update(bindings=5, registers=90, kicks=4, rejections=1)
    point = sampler.sample()
    assert point == {"time": 105.0, "bindings": 5, "calls": 1, "registers_per_s": 10.0,
                     "kicks": 2, "rejections": 1, "flood_blocks": 0}  # fmt: skip
    assert sampler.seq == 1 and sampler.latest() == point
    for t in (110.0, 115.0, 120.0):
        now[0] = t
        sampler.sample()
    assert [p["time"] for p in sampler.samples] == [110.0, 115.0, 120.0]  # span / interval kept
    assert sampler.samples[-1]["kicks"] == 0 and sampler.samples[-1]["registers_per_s"] == 0.0
