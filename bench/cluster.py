#!/usr/bin/env python3
"""The cluster's cost and its scaling, side by side in one run (not tests).

1. REGISTER with digest, full registrations/s: one node with `--cluster`
   (PostgreSQL + Redis) against one embedded process (SQLite), same pinning as
   bench/register.py. Goal: >= 0.7.
2. `--workers 2` against `--workers 1` (both `--cluster`), next to Kamailio
   with 2 and 1 children, all unpinned on this 2-core machine (SIPp takes what
   is left). Goal: regswitch >= 1.4x; the two scalings are reported. SIPp
   sends each call from a socket of its own (`--flows un`, a phone each): the
   kernel gives each flow to one worker and it stays there (its transactions
   and connections live in that worker), so traffic from one socket (`u1`,
   every phone behind one address and port) reaches one worker only. Kamailio's
   children read one shared socket and take either.
   Each server is then measured at a fixed rate below every best (`--fixed`,
   2,500/s): its CPU per registration. On two cores that SIPp, Redis and
   PostgreSQL share, the best rates measure the machine as much as the
   server; `2 x c1 / c2` (c1, c2: the CPU per registration of one worker and
   of two) is what two workers give against one on cores of their own.

A temporary PostgreSQL (tests/support/postgres.py) and redis-server
(tests/support/redis.py) are started and stopped by the script.

    .venv-run/bin/python bench/cluster.py [--reps 1] [--duration 3] [--start 1000] [--only 1]
        [--flows un] [--fixed 2500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Regswitch, print_step
from sweep import Sweep, kamailio, process_tree, run_sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.postgres import PgCluster
from support.redis import RedisServer


def sweep_of(a: argparse.Namespace, transport: str = "u1") -> Sweep:
    return Sweep(
        "register_digest", start=a.start, factor=2, bisect=3, duration=a.duration,
        transport=transport,
    )  # fmt: skip


#: one measurement: the best rate, and the server's CPU per registration (ms) at
#: the fixed rate (None: not asked, or the server did not keep up)
Result = tuple[float, float | None]


def regswitch_rate(label: str, sweep: Sweep, fixed: Sweep | None = None, **server: Any) -> Result:
    node = Regswitch(**server)
    try:
        node.provision()
        # the process and its workers (--workers N forks them)
        return measure(label, node.target, process_tree(node.pid), sweep, fixed)
    finally:
        node.stop()


def kamailio_rate(label: str, sweep: Sweep, children: int, fixed: Sweep | None = None) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="rsbench-kamailio-") as tmp,
        kamailio(children, "htable", Path(tmp), cpus=None) as proc,
    ):
        return measure(label, "127.0.0.1:5070", process_tree(proc.pid), sweep, fixed)


def measure(label: str, target: str, pids: list[int], sweep: Sweep, fixed: Sweep | None) -> Result:
    """The sweep's best rate; then, if asked, the CPU per registration at a fixed
    rate below every server's best: where SIPp, Redis and PostgreSQL share the
    cores the workers need, the best rate measures the machine as much as the
    server, and CPU per request at one rate measures the server alone."""
    step = run_sweep(target, sweep, pids, label, log=lambda _: None)
    print_step(step)
    print_cpu(step)
    cpu = None
    if fixed is not None:
        (at,) = run_sweep(target, fixed, pids, label, log=lambda _: None)["steps"]
        if at["passed"] and at["server_cpu"] is not None:
            cpu = at["server_cpu"] * 10 / at["rate"]
        said = f"{cpu:.3f} ms per registration" if cpu is not None else "did not keep up"
        print(f"  {'':<18} at a fixed {at['rate']}/s: server CPU {said}", flush=True)
    return float(step["best_rate"] or 0), cpu


def print_cpu(step: dict[str, Any]) -> None:
    """Server CPU per full registration at the best rate, and the load average."""
    rate, cpu = step["best_rate"], step["server_cpu"]
    if rate and cpu is not None:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"  {'':<18} server CPU {cpu * 10 / rate:.3f} ms per registration; load {load}")


def median_of(reps: int, measure: Callable[[int], Result]) -> Result:
    results = [measure(rep) for rep in range(1, reps + 1)]
    cpus = [cpu for _, cpu in results if cpu is not None]
    return (
        statistics.median(rate for rate, _ in results),
        statistics.median(cpus) if cpus else None,
    )


def capacity(one: float | None, two: float | None) -> str:
    """Two workers against one if each had a core of its own: 2 x c1 / c2, where
    c1, c2 are the servers' CPU per registration at the fixed rate."""
    if one is None or two is None:
        return "n/a"
    return f"{2 * one / two:.2f}x ({one:.3f} -> {two:.3f} ms per registration)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--only", type=int, choices=(1, 2), help="run only part 1 or part 2")
    parser.add_argument(
        "--fixed", type=int, default=2500,
        help="part 2: the rate at which CPU per registration is measured (0: not measured)",
    )  # fmt: skip
    parser.add_argument(
        "--flows", choices=("un", "u1"), default="un",
        help="part 2: SIPp's sockets, one per call (un) or one for all (u1)",
    )  # fmt: skip
    a = parser.parse_args()
    sweep = sweep_of(a)
    pg, redis = PgCluster.start(), RedisServer.start()
    try:

        def cluster_args(node: str, workers: int = 1) -> dict[str, Any]:
            return {
                "db": pg.new_database(),
                "extra_args": ["--cluster", redis.new_database(), "--node-id", node,
                               "--workers", str(workers)],
            }  # fmt: skip

        if a.only != 2:
            embedded, _ = median_of(a.reps, lambda rep: regswitch_rate(f"embedded rep{rep}", sweep))
            cluster, _ = median_of(a.reps, lambda rep: regswitch_rate(
                f"--cluster rep{rep}", sweep, **cluster_args(f"c{rep}")))  # fmt: skip
            ratio = cluster / embedded if embedded else 0.0
            print(
                f"register_digest: one node --cluster {cluster:.0f}/s vs embedded "
                f"{embedded:.0f}/s -> {ratio:.2f} (goal >= 0.7)"
            )
        if a.only == 1:
            return
        sweep = sweep_of(a, a.flows)
        fixed = (
            Sweep("register_digest", rates=[a.fixed], duration=a.duration, transport=a.flows)
            if a.fixed
            else None
        )
        one, cpu1 = median_of(a.reps, lambda rep: regswitch_rate(
            f"--workers 1 rep{rep}", sweep, fixed, cpus=None,
            **cluster_args(f"w1-{rep}")))  # fmt: skip
        two, cpu2 = median_of(a.reps, lambda rep: regswitch_rate(
            f"--workers 2 rep{rep}", sweep, fixed, cpus=None,
            **cluster_args(f"w2-{rep}", 2)))  # fmt: skip
        kam1, kcpu1 = median_of(
            a.reps, lambda rep: kamailio_rate(f"kamailio 1 rep{rep}", sweep, 1, fixed)
        )
        kam2, kcpu2 = median_of(
            a.reps, lambda rep: kamailio_rate(f"kamailio 2 rep{rep}", sweep, 2, fixed)
        )
    finally:
        pg.stop()
        redis.stop()
    scale = two / one if one else 0.0
    kam_scale = kam2 / kam1 if kam1 else 0.0
    print(
        f"--workers 2 {two:.0f}/s vs --workers 1 {one:.0f}/s -> {scale:.2f}x (goal >= 1.4); "
        f"Kamailio 2 children {kam2:.0f}/s vs 1 {kam1:.0f}/s -> {kam_scale:.2f}x; "
        f"regswitch's scaling / Kamailio's {scale / kam_scale if kam_scale else 0:.2f}"
    )
    if fixed is not None:
        print(
            f"at a fixed {a.fixed}/s, two workers against one on cores of their own: "
            f"regswitch {capacity(cpu1, cpu2)}; Kamailio {capacity(kcpu1, kcpu2)}"
        )


if __name__ == "__main__":
    main()
