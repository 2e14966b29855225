#!/usr/bin/env python3
"""HEP capture's cost: REGISTER with digest (401 + 200) with HEP_CAPTURE On and
Off, interleaved, on one `regswitch serve` (SQLite write-through on) copying
every message to a HEP collector. Goal: On >= 0.9x Off.

The collector is a UDP socket this script binds and never reads: what the
switch pays (encoding, the non-blocking sends) is measured, not a collector's
CPU, which on this 2-core machine would compete with the switch. Its full
receive buffer drops datagrams on the collector's side, as a slow Homer would.

    .venv/bin/python bench/hep.py [--reps 3] [--duration 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import urllib.request

from common import Regswitch, print_step, save_json
from sweep import Sweep, run_sweep

PORT = 5078


def set_capture(server: Regswitch, value: str) -> None:
    server.call("PUT", "/api/parameters/HEP_CAPTURE", {"value": value})


def hep_counters(server: Regswitch) -> dict[str, float]:
    with urllib.request.urlopen(server.api + "/metrics", timeout=30) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("regswitch_hep_packets_total", "regswitch_hep_dropped_total")):
            name, value = line.split()
            out[name] = float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--start", type=int, default=2000)
    parser.add_argument("--json", help="write the results here")
    a = parser.parse_args()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    server = Regswitch(PORT, extra_env={"REGSWITCH_HEP": f"udp:127.0.0.1:{sink.getsockname()[1]}"})
    sweep = Sweep("register_digest", start=a.start, factor=2, bisect=3, duration=a.duration)
    steps: dict[str, list[dict[str, object]]] = {"Off": [], "On": []}
    try:
        server.provision()
        for rep in range(1, a.reps + 1):
            for value in ("Off", "On"):
                set_capture(server, value)
                step = run_sweep(
                    server.target, sweep, [server.pid], f"HEP {value} rep{rep}", log=lambda _: None
                )
                print_step(step)
                steps[value].append(step)
        counters = hep_counters(server)
    finally:
        server.stop()
        sink.close()
    off = statistics.median(float(s["best_rate"] or 0) for s in steps["Off"])  # type: ignore[arg-type]
    on = statistics.median(float(s["best_rate"] or 0) for s in steps["On"])  # type: ignore[arg-type]
    ratio = round(on / off, 3) if off else None
    print(
        f"register_digest: HEP On {on:.0f}/s vs Off {off:.0f}/s -> ratio {ratio} (medians of "
        f"{a.reps} interleaved reps; goal >= 0.9); HEP packets sent {counters}"
    )
    save_json(a.json, {"on": on, "off": off, "ratio": ratio, "steps": steps, **counters})


if __name__ == "__main__":
    main()
