#!/usr/bin/env python3
"""An account's history on a large store: builds an SQLite store of N events
(default 10 million) in which one account has 10,000, then times the history
read (the API's own `read_history`: the account's events, flood blocks of its
addresses, parameter changes and CDRs, merged into a timeline): its newest
page, all of it at once, and its last day.

    .venv-run/bin/python bench/history.py [--events 10000000] [--account-events 10000]
                                      [--db /tmp/history-bench.db] [--keep]

Goal: <= 100 ms. The store is built once and
kept with --keep (building 10 million rows takes minutes); a later run with
the same --db and sizes reuses it.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import time
from pathlib import Path

try:  # the installed build (the compiled wheel under `make bench`), else the tree
    import regswitch  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from regswitch.console.history import MAX_EVENTS, PAGE, read_history
from regswitch.storage.sqlite import SqliteStorage

TARGET = "alice@bench.example"
BASE = 1_750_000_000.0
SPAN = 30 * 86400.0  # the events cover 30 days
# Event i at BASE + SPAN * i / n: ids grow with time, as the switch writes them.
# Every stride-th event (the first `targets` of them) is the target account's;
# every sys-th a parameter change or a flood block; the rest are other accounts'
# (80 % refreshes, then registrations, calls, kicks, rejections, expiries). The
# target's devices change every 400 of its events (refreshes of one device are
# one binding, as on a real switch).
INSERT_SQL = """
WITH RECURSIVE seq(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM seq WHERE i < :last),
rows AS (
  SELECT i, :base + :span * i / :n AS t, abs(random()) % 100 AS r,
    CASE WHEN i % :stride = 0 AND i / :stride <= :targets THEN :target
         WHEN i % :sys = 0 THEN NULL
         ELSE printf('user%06d@bench.example', abs(random()) % 200000) END AS account,
    printf('10.%d.%d.%d', (i >> 16) & 255, (i >> 8) & 255, i & 255) AS ip
  FROM seq
)
INSERT INTO events (id, time, type, account, source, details)
SELECT i, t,
  CASE WHEN account IS NULL THEN (CASE i % 2 WHEN 1 THEN 'param-changed' ELSE 'flood-blocked' END)
       WHEN r < 80 THEN 'refreshed' WHEN r < 88 THEN 'registered'
       WHEN r < 92 THEN 'call-started' WHEN r < 96 THEN 'call-ended'
       WHEN r = 96 THEN 'replaced' WHEN r = 97 THEN 'rejected'
       WHEN r = 98 THEN 'unregistered' ELSE 'expired' END,
  account,
  CASE WHEN account IS NULL THEN (CASE i % 2 WHEN 1 THEN 'api' ELSE ip END)
       ELSE 'udp:' || ip || ':5060' END,
  CASE WHEN account IS NULL THEN '{"name":"X","old":"1","new":"2","seconds":300}'
       WHEN account = :target THEN json_object('contact', 'sip:alice@' || ip || ':5060',
                        'binding', 'alice-device-' || (i / :stride / 400), 'expires', 3600)
       ELSE json_object('contact', 'sip:u@' || ip || ':5060', 'binding', 'b' || (i % 50000),
                        'expires', 3600) END
FROM rows
"""


def build(path: Path, n: int, target_events: int) -> None:
    path.unlink(missing_ok=True)

    async def migrate() -> None:
        async with SqliteStorage(path):
            pass

    asyncio.run(migrate())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:  # rows first, indexes after: much faster than both at once
        conn.execute(f"DROP INDEX {name}")
    stride = n // target_events
    system_stride = n // 400  # parameter changes and flood blocks, system-wide
    started = time.perf_counter()
    # rows made by SQLite itself (a recursive counter), in chunks to show progress
    for first in range(1, n + 1, 1_000_000):
        last = min(n, first + 999_999)
        conn.execute(INSERT_SQL, {"first": first, "last": last, "n": n, "base": BASE,
                                  "span": SPAN, "stride": stride, "targets": target_events,
                                  "sys": system_stride, "target": TARGET})  # fmt: skip
        print(f"\r  {last:,} events", end="", flush=True)
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.close()
    print(f"\r  built {n:,} events in {time.perf_counter() - started:.0f} s")


async def measure(path: Path, reps: int) -> dict[str, float]:
    async with SqliteStorage(path) as storage:
        page: list[float] = []
        whole: list[float] = []
        day: list[float] = []
        found = 0
        for _ in range(reps):
            t0 = time.perf_counter()
            await read_history(storage, TARGET, BASE, BASE + SPAN + 1)
            page.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            history = await read_history(storage, TARGET, BASE, BASE + SPAN + 1, MAX_EVENTS)
            whole.append(time.perf_counter() - t0)
            found = len(history["entries"])
            t0 = time.perf_counter()
            await read_history(storage, TARGET, BASE + SPAN - 86400, BASE + SPAN + 1)
            day.append(time.perf_counter() - t0)
    ms = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
    return {"entries": found, "page": ms(page), "whole": ms(whole), "day": ms(day)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--account-events", type=int, default=10_000)
    parser.add_argument("--db", default="/tmp/regswitch-history-bench.db")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the store for the next run")
    a = parser.parse_args()
    path = Path(a.db)
    stamp = path.with_suffix(".size")
    wanted = f"{a.events}/{a.account_events}"
    if not (path.exists() and stamp.exists() and stamp.read_text() == wanted):
        print(f"building {a.events:,} events ({a.account_events:,} of {TARGET}) in {path}")
        build(path, a.events, a.account_events)
        stamp.write_text(wanted)
    result = asyncio.run(measure(path, a.reps))
    print(
        f"history of {TARGET} ({a.account_events:,} events among {a.events:,}), medians of "
        f"{a.reps}: newest page ({PAGE} events, what the console and API show first) "
        f"{result['page']} ms; all {a.account_events:,} events in one read ({result['entries']:,}"
        f" entries) {result['whole']} ms; last day only {result['day']} ms"
    )
    if not a.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
