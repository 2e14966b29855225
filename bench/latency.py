#!/usr/bin/env python3
"""Latency of a full digest REGISTER at light load with many bindings, timed by
the client in microseconds, regswitch next to Kamailio (1 child, htable).

For each server: start it pinned (the server's CPUs, as bench/sweep.py pins
them), give it `--bindings` registrations with SIPp (register_digest), then
register `--rate` new phones a second for `--seconds` from a client pinned to
the other CPU: REGISTER, 401, REGISTER with credentials, 200. One phone at a
time, so no request waits behind another of ours and the server is idle in
between: what is measured is the time one REGISTER costs, not a queue.

regswitch answers the 200 after its SQLite commit (write-through: the
registration survives a crash); Kamailio keeps its location in memory only
(usrloc db_mode 0).

    .venv-run/bin/python bench/latency.py [--bindings 100000] [--rate 200] [--seconds 10]

Goal (issue: performance): regswitch's full REGISTER p99 <= 1 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Regswitch, save_json
from sweep import (
    KAMAILIO_PORT,
    Sweep,
    kamailio,
    password,
    run_step,
    sipp_cpus,
    user_name,
    write_users_csv,
)

CLIENT_PORT = 5079
FILL_RATE = 1500
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]+))')


def request(target: str, user: str, cseq: int, call_id: str, auth: str = "") -> bytes:
    host, port = target.split(":")
    return (
        f"REGISTER sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{CLIENT_PORT};rport;branch=z9hG4bK-{call_id}-{cseq}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@{host}>;tag={cseq}\r\n"
        f"To: <sip:{user}@{host}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{CLIENT_PORT}>\r\n{auth}Expires: 3600\r\n"
        f"User-Agent: regswitch-latency\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def answer(challenge: bytes, user: str, uri: str) -> str:
    """Authorization for the MD5 challenge of a 401 (qop=auth when offered)."""
    for line in challenge.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() != "www-authenticate":
            continue
        params = {m[1].lower(): m[2] or m[3] or "" for m in _PARAM.finditer(value)}
        if params.get("algorithm", "MD5").upper() != "MD5":
            continue
        realm, nonce = params["realm"], params["nonce"]
        ha1 = md5(f"{user}:{realm}:{password(user)}")
        ha2 = md5(f"REGISTER:{uri}")
        head = f'Digest username="{user}",realm="{realm}",nonce="{nonce}",uri="{uri}"'
        if "auth" in params.get("qop", "").split(","):
            cnonce, nc = "0a4f113b", "00000001"
            response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            return f'Authorization: {head},response="{response}",algorithm=MD5,qop=auth,nc={nc},cnonce="{cnonce}"\r\n'  # noqa: E501
        return f'Authorization: {head},response="{md5(f"{ha1}:{nonce}:{ha2}")}",algorithm=MD5\r\n'
    raise SystemExit(f"no MD5 challenge in: {challenge[:300]!r}")


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def measure(target: str, first_user: int, count: int, rate: float) -> tuple[list[int], list[int]]:
    """Register users first_user.. one at a time, `rate` a second: (full, answer)
    latencies in µs (first REGISTER to 200; credentials to 200)."""
    host, port = target.split(":")
    uri = f"sip:{host}:{port}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", CLIENT_PORT))
    sock.settimeout(2.0)
    peer = (host, int(port))
    full: list[int] = []
    second: list[int] = []
    clock = time.perf_counter_ns
    start = time.monotonic()
    try:
        for k in range(count):
            wait = start + k / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            user = user_name(first_user + k)
            call_id = f"lat-{k}-{user}"
            t0 = clock()
            sock.sendto(request(target, user, 1, call_id), peer)
            challenge = sock.recv(65535)
            if status_of(challenge) != 401:
                raise SystemExit(f"{user}: expected 401, got {challenge[:200]!r}")
            credentials = answer(challenge, user, uri)
            t1 = clock()
            sock.sendto(request(target, user, 2, call_id, credentials), peer)
            final = sock.recv(65535)
            t2 = clock()
            if status_of(final) != 200:
                raise SystemExit(f"{user}: expected 200, got {final[:200]!r}")
            full.append((t2 - t0) // 1000)
            second.append((t2 - t1) // 1000)
    finally:
        sock.close()
    return full, second


def percentiles(values: list[int]) -> dict[str, float]:
    """p50, p90, p99, max and mean in ms of latencies in µs."""
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1] / 1000,
            "mean": statistics.fmean(ordered) / 1000}  # fmt: skip


def shown(ms: dict[str, float]) -> str:
    return (
        f"p50 {ms['p50']:.3f} ms, p90 {ms['p90']:.3f} ms, p99 {ms['p99']:.3f} ms, "
        f"max {ms['max']:.3f} ms (mean {ms['mean']:.3f})"
    )


def fill_and_measure(
    name: str, target: str, pids: list[int], users: Path, workdir: Path, a: argparse.Namespace
) -> dict[str, Any]:
    fill = run_step(
        target, Sweep("register_digest", duration=a.bindings / FILL_RATE), FILL_RATE,
        users, workdir, pids,
    )  # fmt: skip
    time.sleep(2)  # the fill's writes settle
    full, second = measure(target, a.bindings + 1, int(a.rate * a.seconds), a.rate)
    print(f"{name}: {fill.ok:,} bindings by SIPp, then {len(full):,} phones at {a.rate}/s")
    result: dict[str, Any] = {
        "bindings": fill.ok, "phones": len(full),
        "full_ms": percentiles(full), "answer_ms": percentiles(second),
    }  # fmt: skip
    print(f"  full REGISTER (401 + 200): {shown(result['full_ms'])}")
    print(f"  answer to the challenge:   {shown(result['answer_ms'])}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200.0, help="registrations/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-kamailio", action="store_true")
    parser.add_argument("--db", help="regswitch's storage URL (default: SQLite in a temp dir)")
    parser.add_argument("--json", help="write the result here")
    a = parser.parse_args()
    client_cpu = sipp_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {int(client_cpu)})  # the client where SIPp runs
    total = a.bindings + int(a.rate * a.seconds)
    with tempfile.TemporaryDirectory(prefix="rsbench-lat-") as tmp:
        workdir = Path(tmp) / "sipp"
        workdir.mkdir()
        users = write_users_csv(Path(tmp) / "users.csv", a.bindings)
        results: dict[str, Any] = {"rate": a.rate}
        server = Regswitch(db=a.db)
        try:
            server.provision(total)
            results["regswitch"] = fill_and_measure(
                "regswitch", server.target, [server.pid], users, workdir, a
            )
        finally:
            server.stop()
        if not a.no_kamailio:
            with kamailio(1, "htable", Path(tmp), users=total) as proc:
                results["kamailio"] = fill_and_measure(
                    "Kamailio (1 child, htable)", f"127.0.0.1:{KAMAILIO_PORT}", [proc.pid],
                    users, workdir, a,
                )  # fmt: skip
    save_json(a.json, results)


if __name__ == "__main__":
    main()
