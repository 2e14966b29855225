#!/usr/bin/env python3
"""CDR queries over a big PostgreSQL table (a benchmark, not a test).

Fills the cdrs table with 1,000,000 CDRs (COPY; 400 days of calls, about 5 %
ended by `registration-replaced`), starts `regswitch serve --db
postgresql://…` on it and times the API's filters, above all

    GET /api/cdrs?reason=registration-replaced&since=<7 days ago>

(goal: under 100 ms, served from the cdrs_reason index). A temporary
PostgreSQL is started (tests/support/postgres.py) unless `--pg-url` names an
empty database.

    .venv/bin/python bench/cdrs.py [--rows 1000000] [--queries 30] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from typing import Any

import httpx
from common import ROOT, Regswitch

REASONS = [
    ("normal", 70),
    ("registration-replaced", 5),
    ("busy", 6),
    ("no-answer", 6),
    ("cancelled", 5),
    ("not-registered", 3),
    ("rejected", 2),
    ("timeout", 1),
    ("error", 1),
    ("registration-deleted", 1),
]
DAY = 86400.0


def _rows(count: int, now: float, accounts: int) -> list[tuple[Any, ...]]:
    rng = random.Random(9)
    names = [r for r, _ in REASONS]
    weights = [w for _, w in REASONS]
    reasons = rng.choices(names, weights, k=count)
    rows = []
    for i in range(count):
        start = now - rng.random() * 400 * DAY
        caller = f"user{rng.randrange(accounts):05d}@regswitch.local"
        callee = f"user{rng.randrange(accounts):05d}@regswitch.local"
        answered = reasons[i] in ("normal", "registration-replaced", "registration-deleted")
        answer = start + 2.0 if answered else None
        end = start + (2.0 + rng.random() * 300 if answered else 5.0)
        rows.append(
            (
                f"cdr{i:08d}", caller, callee, None, None, None, None, f"a-{i}", f"b-{i}",
                start, answer, end, int(end - answer) if answer else 0,
                200 if answered else 486, reasons[i],
                "system" if reasons[i].startswith("registration") else "caller",
            )
        )  # fmt: skip
    return rows


async def fill(url: str, count: int, now: float) -> float:
    """Migrate (by opening the storage), COPY the rows in, ANALYZE; returns seconds."""
    import asyncpg

    from regswitch.storage.pg import PostgresStorage
    from regswitch.storage.pg_schema import CDR_COLS

    async with PostgresStorage(url):
        pass
    t0 = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        columns = [c.strip() for c in CDR_COLS.split(",")]
        chunk = 100_000
        for offset in range(0, count, chunk):
            rows = _rows(min(chunk, count - offset), now, 10_000)
            rows = [(f"cdr{offset + i:08d}", *r[1:]) for i, r in enumerate(rows)]
            await conn.copy_records_to_table("cdrs", records=rows, columns=columns)
        await conn.execute("ANALYZE cdrs")
    finally:
        await conn.close()
    return time.perf_counter() - t0


def time_queries(api: str, queries: dict[str, dict[str, Any]], repeat: int) -> None:
    with httpx.Client(base_url=api, timeout=30) as client:
        for name, params in queries.items():
            client.get("/api/cdrs", params=params).raise_for_status()  # warm the cache
            times, found = [], 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                response = client.get("/api/cdrs", params=params)
                times.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
                found = len(response.json())
            times.sort()
            p95 = times[max(0, int(len(times) * 0.95) - 1)]
            print(
                f"  {name:<42} median {statistics.median(times):6.1f} ms  p95 {p95:6.1f} ms  "
                f"({found} CDRs)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--pg-url", help="an existing, empty PostgreSQL database")
    a = parser.parse_args()
    cluster = None
    url = a.pg_url
    if url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from support.postgres import PgCluster

        cluster = PgCluster.start()
        url = cluster.new_database()
    try:
        now = time.time()
        seconds = asyncio.run(fill(url, a.rows, now))
        print(f"filled {a.rows} CDRs in {seconds:.1f} s", flush=True)
        server = Regswitch(port=0, db=url)
        try:
            week = str(now - 7 * DAY)
            time_queries(
                server.api,
                {
                    "reason=registration-replaced&since=7d": {
                        "reason": "registration-replaced",
                        "since": week,
                    },
                    "reason=registration-replaced&since=7d&limit=1000": {
                        "reason": "registration-replaced",
                        "since": week,
                        "limit": 1000,
                    },
                    "account=user00042 (caller or callee)": {
                        "account": "user00042@regswitch.local"
                    },
                    "since=7d": {"since": week},
                    "(no filter)": {},
                },
                a.queries,
            )
        finally:
            server.stop()
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
