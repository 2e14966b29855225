#!/usr/bin/env python3
"""REGISTER benchmarks: regswitch (SQLite write-through) vs Kamailio 1 child.

Full registrations per second with digest (401 + 200) against Kamailio with
passwords in its in-memory htable, and OPTIONS, each as 3 interleaved
repetitions; prints the ratios of the medians.

    .venv-run/bin/python bench/register.py [--reps 3] [--json out.json]

With `--db postgresql`: REGISTER with digest through PostgreSQL against the
SQLite figure of the same run (interleaved repetitions, same pinning; no
Kamailio). A temporary PostgreSQL is started (tests/support/postgres.py)
unless `--pg-url postgresql://USER:PASSWORD@HOST:PORT/DBNAME` names one (its
bindings and accounts tables are reused: give an empty database).

    .venv-run/bin/python bench/register.py --db postgresql [--reps 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from common import Regswitch, compare, print_step, save_json
from sweep import Sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(label: str, db: str | None, duration: str, start: str) -> dict[str, Any]:
    server = Regswitch(port=_free_port(), db=db)
    try:
        server.provision()
        sweep = Sweep(
            "register_digest", start=int(start), factor=2, bisect=3, duration=float(duration)
        )
        step = run_sweep(server.target, sweep, [server.pid], label, log=lambda _: None)
    finally:
        server.stop()
    print_step(step)
    return step


def postgresql_vs_sqlite(
    reps: int, duration: str, start: str, pg_url: str | None
) -> dict[str, Any]:
    cluster = None
    if pg_url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from support.postgres import PgCluster

        cluster = PgCluster.start()
    try:
        sqlite: list[dict[str, Any]] = []
        pg: list[dict[str, Any]] = []
        for rep in range(1, reps + 1):
            sqlite.append(_measure(f"sqlite rep{rep}", None, duration, start))
            url = pg_url or cluster.new_database()  # type: ignore[union-attr]
            pg.append(_measure(f"postgresql rep{rep}", url, duration, start))
    finally:
        if cluster is not None:
            cluster.stop()
    sqlite_rate = statistics.median(s["best_rate"] or 0 for s in sqlite)
    pg_rate = statistics.median(s["best_rate"] or 0 for s in pg)
    ratio = round(pg_rate / sqlite_rate, 3) if sqlite_rate else None
    print(
        f"register_digest: PostgreSQL {pg_rate:.0f}/s vs SQLite {sqlite_rate:.0f}/s -> ratio "
        f"{ratio} (medians of {reps} interleaved reps)",
        flush=True,
    )
    return {
        "scenario": "register_digest",
        "sqlite_median": sqlite_rate,
        "postgresql_median": pg_rate,
        "ratio": ratio,
        "sqlite": sqlite,
        "postgresql": pg,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-options", action="store_true")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", help="an existing, empty PostgreSQL database (--db postgresql)")
    parser.add_argument("--duration", default="3", help="seconds of traffic per sweep step")
    parser.add_argument("--start", default="2000", help="first REGISTER rate of the sweep (/s)")
    parser.add_argument("--json", help="write the results here")
    a = parser.parse_args()
    if a.db == "postgresql":
        results = [postgresql_vs_sqlite(a.reps, a.duration, a.start, a.pg_url)]
    else:
        results = [
            compare(
                Sweep("register_digest", start=int(a.start), factor=2, bisect=3,
                      duration=float(a.duration)),
                "htable",
                a.reps,
            )
        ]
        if not a.skip_options:
            results.append(
                compare(
                    Sweep("options", start=8000, factor=2, bisect=2, duration=2), "none", a.reps
                )
            )
        for r in results:
            print(
                f"{r['scenario']}: ratio {r['ratio']} (regswitch {r['regswitch_median']}/s, "
                f"Kamailio {r['kamailio_median']}/s)"
            )
    save_json(a.json, results)
