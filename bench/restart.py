#!/usr/bin/env python3
"""Restart at scale: `regswitch serve` on a SQLite database holding N accounts
and N live bindings (default 1,000,000), timed from the process start to its
first answered REGISTER, with the RSS once it answers.

The database is written directly (the schema by regswitch's own migrations,
the rows by bulk inserts), as a switch that ran for a while would leave it.

    .venv-run/bin/python bench/restart.py [--n 1000000]

Also times a full registration right after the first answer (its account's
bindings are brought back ahead of the rest), the end of the restore
(`restoring_registrations` false in /healthz), and reads the RSS again then:
the memory goal is read on that figure.

Goal (issue: performance): answering REGISTERs within 10 s of start, the
whole process under 1.5 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import save_json
from latency import answer, request, status_of
from memory import rss_mib
from sweep import password, pinned, server_cpus, user_name

from regswitch.storage.sqlite import SqliteStorage

PORT = 5076
DOMAIN = "regswitch.local"
CHUNK = 50_000


def build(db: Path, n: int) -> None:
    asyncio.run(_migrate(db))
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for first in range(1, n + 1, CHUNK):
            users = [user_name(i) for i in range(first, min(n, first + CHUNK - 1) + 1)]
            conn.executemany(
                "INSERT INTO accounts (aor, username, domain, ha1_md5, ha1_sha256, "
                "allowed_networks, created_at, updated_at) VALUES (?, ?, ?, ?, '', '[]', ?, ?)",
                [
                    (f"{u}@{DOMAIN}", u, DOMAIN,
                     hashlib.md5(f"{u}:{DOMAIN}:{password(u)}".encode()).hexdigest(), now, now)
                    for u in users
                ],
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO bindings (id, aor, contact, transport, source_ip, source_port, "
                "local_ip, local_port, conn_id, call_id, cseq, expires_at, user_agent, "
                "registered_at, refreshed_at, nat) VALUES "
                "(?, ?, ?, 'udp', ?, 5060, '127.0.0.1', ?, 0, ?, 1, ?, 'Phone/1.0', ?, ?, 0)",
                [
                    (f"b{i:012x}", f"{u}@{DOMAIN}", f"sip:{u}@{_ip(i)}:5060", _ip(i), PORT,
                     f"c{i}@{_ip(i)}", now + 3600, now, now)
                    for i, u in enumerate(users, first)
                ],
            )  # fmt: skip
            conn.commit()


async def _migrate(db: Path) -> None:
    async with SqliteStorage(db):
        pass


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def first_answer(deadline: float) -> float:
    """Send a REGISTER every 20 ms until one is challenged (looked at, not
    refused as busy); when it was. Each try is a new transaction (its own
    Call-ID and branch): a retransmission would only get the first answer
    again, whatever it was, for the transaction's lifetime (32 s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.02)
    target = f"127.0.0.1:{PORT}"
    tries = 0
    try:
        while time.monotonic() < deadline:
            tries += 1
            probe = request(target, user_name(1), 1, f"restart-probe-{tries}")
            sock.sendto(probe, ("127.0.0.1", PORT))
            try:
                while True:  # answers to earlier tries may still be queued
                    if status_of(sock.recv(65535)) == 401:
                        return time.monotonic()
            except TimeoutError:
                continue
    finally:
        sock.close()
    raise SystemExit("no answer before the deadline")


def registered() -> tuple[float, int]:
    """A full registration (401, then credentials): when it was answered, and how."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 5079))
    sock.settimeout(5)
    target, peer, user = f"127.0.0.1:{PORT}", ("127.0.0.1", PORT), user_name(2)
    try:
        sock.sendto(request(target, user, 1, "restart-full"), peer)
        creds = answer(sock.recv(65535), user, f"sip:{target}")
        sock.sendto(request(target, user, 2, "restart-full", creds), peer)
        status = status_of(sock.recv(65535))
        return time.monotonic(), status
    finally:
        sock.close()


def restore_ended(api: str, deadline: float) -> float:
    """When /healthz stops saying the bindings are being restored."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/healthz", timeout=5) as response:
                health = json.loads(response.read())
        except urllib.error.HTTPError as degraded:  # a lagging loop, say: still an answer
            health = json.loads(degraded.read())
        if not health["restoring_registrations"]:
            return time.monotonic()
        time.sleep(0.1)
    raise SystemExit("still restoring at the deadline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the result here")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rsbench-restart-") as tmp:
        db = Path(tmp) / "rs.db"
        t = time.monotonic()
        build(db, a.n)
        print(f"database: {a.n:,} accounts and bindings written in {time.monotonic() - t:.0f} s")
        ready = Path(tmp) / "ready.json"
        argv = [
            sys.executable, "-m", "regswitch", "serve", "--sip", f"udp:127.0.0.1:{PORT}",
            "--api", "127.0.0.1:0", "--db", f"sqlite:///{db}", "--domain", DOMAIN,
            "--ready-file", str(ready), "--log-level", "warning",
        ]  # fmt: skip
        with open(Path(tmp) / "server.log", "wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(pinned(server_cpus(), argv), stdout=log, stderr=log)
            try:
                answered = first_answer(started + 120)
                info = json.loads(ready.read_text())
                rss = rss_mib(info["pid"])
                accepted, status = registered()
                restored = restore_ended(info["api"], started + 300)
                rss_restored = rss_mib(info["pid"])
            finally:
                proc.terminate()
                proc.wait(30)
    print(
        f"restart with {a.n:,} bindings: first REGISTER answered {answered - started:.1f} s "
        f"after start (goal <= 10 s), RSS then {rss:.0f} MiB; a full registration answered "
        f"{status} {accepted - started:.1f} s after start; every binding restored "
        f"{restored - started:.1f} s after start, RSS then {rss_restored:.0f} MiB "
        f"(goal < 1,536)"
    )
    save_json(a.json, {"bindings": a.n, "first_answer_s": answered - started, "rss_mib": rss,
                       "registered_s": accepted - started, "full_registration": status,
                       "restored_s": restored - started,
                       "rss_restored_mib": rss_restored})  # fmt: skip


if __name__ == "__main__":
    main()
