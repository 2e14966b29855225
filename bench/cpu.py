#!/usr/bin/env python3
"""Server CPU per request at a fixed rate both servers sustain: regswitch vs
Kamailio 1 child, same pinning, 3 interleaved repetitions.

Where SIPp is the limit (OPTIONS: both servers answer 40,000/s while SIPp
itself is near a core), a rate says nothing about the server; the CPU time it
spends per request at a rate well below the limit does. The server's CPU is
read from /proc/PID/stat before and after each step (user + system, all its
threads: for regswitch that includes the SQLite writer).

    .venv-run/bin/python bench/cpu.py [--reps 3] [--options-rate 15000]
                                      [--calls-rate 1000] [--json out.json]

Calls are INVITE/180/200/ACK/BYE from a SIPp UAC through regswitch's B2BUA
(or Kamailio's stateful proxy) to a registered SIPp UAS; the figure is per call.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from common import compare, save_json
from sweep import Sweep


def per_request_us(summary: dict[str, Any]) -> float | None:
    """CPU µs the server spent per request in the (single, fixed-rate) step,
    or None when the step did not pass: a failed step's CPU is not comparable."""
    step = summary["steps"][0]
    if not step["passed"] or step["server_cpu"] is None:
        return None
    return step["server_cpu"] / 100 * step["wall"] / step["ok"] * 1e6


def measure(scenario: str, rate: int, duration: float, reps: int) -> dict[str, Any]:
    sweep = Sweep(scenario, rates=[rate], duration=duration)
    result = compare(sweep, "none", reps)
    medians: dict[str, float | None] = {}
    for server in ("kamailio", "regswitch"):
        figures = [x for x in map(per_request_us, result[server]) if x is not None]
        medians[server] = round(statistics.median(figures), 1) if figures else None
    kam, rs = medians["kamailio"], medians["regswitch"]
    ratio = round(rs / kam, 2) if kam and rs else None
    print(
        f"{scenario} at {rate}/s: regswitch {rs} µs CPU per request vs Kamailio 1 child {kam} µs"
        f" -> {ratio}x (medians of {reps} interleaved reps; lower is better)",
        flush=True,
    )
    return {"scenario": scenario, "rate": rate, "regswitch_us": rs, "kamailio_us": kam,
            "ratio": ratio, "runs": result}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--options-rate", type=int, default=15_000)
    parser.add_argument("--calls-rate", type=int, default=1_000)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--json", help="write the result here")
    a = parser.parse_args()
    results = [
        measure("options", a.options_rate, a.duration, a.reps),
        measure("call", a.calls_rate, a.duration, a.reps),
    ]
    save_json(a.json, results)


if __name__ == "__main__":
    main()
