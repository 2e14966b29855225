#!/usr/bin/env python3
"""Memory of the whole server process with N accounts and N bindings: a real
`regswitch serve` (SQLite write-through on), accounts provisioned through the
API, bindings made by SIPp's full digest registrations (401 + 200), RSS read
from /proc after each step.

    .venv-run/bin/python bench/memory.py [--n 100000] [--rate 4000]

Prints RSS at start, per 1,000 accounts, per 1,000 bindings, and in all.
Goal (issue: performance): 100,000 accounts + 100,000 bindings in <= 150 MB.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

from common import Regswitch, save_json
from sweep import Sweep, run_step, write_users_csv


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {pid}")


def settled_rss(pid: int, seconds: float = 2.0) -> float:
    """RSS once the writer has caught up (it no longer moves by more than 1 MiB)."""
    last = rss_mib(pid)
    deadline = time.monotonic() + seconds * 5
    while time.monotonic() < deadline:
        time.sleep(seconds / 4)
        now = rss_mib(pid)
        if abs(now - last) < 1:
            return now
        last = now
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=4000, help="registrations/s")
    parser.add_argument("--json", help="write the result here")
    a = parser.parse_args()
    gc.collect()
    server = Regswitch(port=5074)
    try:
        start = settled_rss(server.pid)
        server.provision(a.n)
        accounts = settled_rss(server.pid)
        with tempfile.TemporaryDirectory(prefix="rsbench-mem-") as tmp:
            workdir = Path(tmp) / "sipp"
            workdir.mkdir()
            users = write_users_csv(Path(tmp) / "users.csv", a.n)
            sweep = Sweep("register_digest", duration=a.n / a.rate)
            step = run_step(server.target, sweep, a.rate, users, workdir, [server.pid])
        bindings = settled_rss(server.pid)
        count = len(server.call("GET", "/api/registrations"))
    finally:
        server.stop()
    per_account = (accounts - start) / a.n * 1000
    per_binding = (bindings - accounts) / max(count, 1) * 1000
    print(f"registrations: {step.ok:,} of {step.calls:,} ok, {count:,} bindings live")
    print(
        f"RSS: start {start:.1f} MiB; with {a.n:,} accounts {accounts:.1f} MiB "
        f"({per_account:.2f} MiB per 1k accounts); with {count:,} bindings {bindings:.1f} MiB "
        f"({per_binding:.2f} MiB per 1k bindings); whole process {bindings:.1f} MiB"
    )
    save_json(a.json, {
        "accounts": a.n, "bindings": count, "registrations_ok": step.ok,
        "start_mib": start, "accounts_mib": accounts, "whole_mib": bindings,
        "per_1k_accounts_mib": per_account, "per_1k_bindings_mib": per_binding,
    })  # fmt: skip


if __name__ == "__main__":
    main()
