"""Binding write throughput of the SQLite backend (a measurement, not a test).

    .venv/bin/python tests/storage/bench_bindings.py [--ops 40000] [--workers 1000]
        [--synchronous NORMAL|FULL] [--no-uvloop]

Two shapes, each op a separate `apply([one upsert])` awaited by its caller
(what the registrar does per REGISTER):

- burst:   `gather()` of --ops applies at once;
- workers: --workers coroutines each awaiting one apply after another, like
           that many REGISTERs in flight.

Prints upserts/s, commits, ops per commit and p50/p99 apply latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from storage_builders import make_binding

from regswitch.storage.base import BindingOp, BindingRecord
from regswitch.storage.sqlite import SqliteStorage


def records(n: int) -> list[BindingRecord]:
    # Realistic rows: ~10k AORs refreshed repeatedly, distinct Call-IDs and instances.
    return [
        make_binding(
            f"bind-{i % 10_000:05d}",
            aor=f"user{i % 10_000:05d}@example.com",
            cseq=i,
            instance=f"<urn:uuid:{i % 10_000:08d}-0000-1000-8000-000a95a0e128>",
            user_agent="Yealink SIP-T46S 66.86.0.15",
        )
        for i in range(n)
    ]


async def timed_apply(s: SqliteStorage, rec: BindingRecord, lat: list[float]) -> None:
    t0 = time.perf_counter()
    await s.bindings.apply([BindingOp.upsert(rec)])
    lat.append(time.perf_counter() - t0)


async def burst(s: SqliteStorage, recs: list[BindingRecord]) -> tuple[float, list[float]]:
    lat: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(timed_apply(s, r, lat) for r in recs))
    return time.perf_counter() - t0, lat


async def workers(
    s: SqliteStorage, recs: list[BindingRecord], n_workers: int
) -> tuple[float, list[float]]:
    lat: list[float] = []
    it = iter(recs)

    async def worker() -> None:
        for rec in it:
            await timed_apply(s, rec, lat)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(n_workers)))
    return time.perf_counter() - t0, lat


def report(name: str, n: int, elapsed: float, lat: list[float], before: dict, after: dict) -> None:
    commits = after["commits"] - before["commits"]
    ops = after["ops_committed"] - before["ops_committed"]
    q = statistics.quantiles(lat, n=100)
    print(
        f"{name:8s} {n:6d} upserts in {elapsed:6.3f}s = {n / elapsed:8.0f}/s | "
        f"{commits} commits, {ops / max(commits, 1):6.1f} ops/commit | "
        f"latency p50 {q[49] * 1000:6.1f} ms p99 {q[98] * 1000:6.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = SqliteStorage(Path(tmp) / "bench.db", synchronous=args.synchronous)
        await s.open()
        await burst(s, records(2000))  # warm up: statement cache, file growth
        recs = records(args.ops)
        for name in ("burst", "workers"):
            before = dict(s.stats)
            if name == "burst":
                elapsed, lat = await burst(s, recs)
            else:
                elapsed, lat = await workers(s, recs, args.workers)
            report(name, len(recs), elapsed, lat, before, dict(s.stats))
        await s.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=40_000)
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--synchronous", default="NORMAL")
    ap.add_argument("--no-uvloop", action="store_true")
    ns = ap.parse_args()
    print(f"python {sys.version.split()[0]}, synchronous={ns.synchronous}, "
          f"loop={'asyncio' if ns.no_uvloop else 'uvloop'}")  # fmt: skip
    if ns.no_uvloop:
        asyncio.run(main(ns))
    else:
        import uvloop

        uvloop.run(main(ns))
