"""Shared plumbing of the regswitch-vs-Kamailio benchmarks (not tests).

Starts `regswitch serve` pinned as bench/sweep.py pins Kamailio (the server
on CPU 0, SIPp on the last CPU), provisions the bench users, and runs the
same sweep against both, interleaved.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sweep import (
    USERS,
    Sweep,
    kamailio,
    password,
    pinned,
    process_tree,
    run_sweep,
    server_cpus,
    user_name,
)

PORT = 5075


class Regswitch:
    """A `regswitch serve` on udp:127.0.0.1:PORT with SQLite write-through on
    (or the storage URL `db`, e.g. postgresql://...)."""

    def __init__(
        self,
        port: int = PORT,
        extra_env: dict[str, str] | None = None,
        db: str | None = None,
        extra_args: list[str] | None = None,
        cpus: str | None = "server",
    ) -> None:
        """`extra_args` go to `regswitch serve`; `cpus` pins it (default: the
        server's CPUs, as Kamailio's; None: unpinned)."""
        self.dir = Path(tempfile.mkdtemp(prefix="rsbench-"))
        ready = self.dir / "ready.json"
        argv = [
            sys.executable,
            "-m",
            "regswitch",
            "serve",
            "--sip",
            f"udp:127.0.0.1:{port}",
            "--api",
            "127.0.0.1:0",
            "--db",
            db or f"sqlite:///{self.dir}/rs.db",
            "--ready-file",
            str(ready),
            "--log-level",
            "warning",
            *(extra_args or []),
        ]
        argv = pinned(server_cpus() if cpus == "server" else cpus, argv)
        env = {**os.environ, **(extra_env or {})}
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.time() + 20
        while not ready.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"regswitch did not start; see {self.dir}/server.log")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        self.api = info["api"]
        self.pid = info["pid"]
        self.target = f"127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def provision(self, users: int = USERS) -> None:
        """The bench users (sweep.py's, password pw-<user>) and the UAS account, all
        allowed from loopback (IP authentication for SIPp's unauthenticated INVITEs)."""
        accounts = [
            {
                "user": user_name(i),
                "domain": "regswitch.local",
                "password": password(user_name(i)),
                "allowed_networks": ["127.0.0.0/8"],
            }
            for i in range(1, users + 1)
        ]
        accounts.append(
            {"user": "uas", "domain": "regswitch.local", "allowed_networks": ["127.0.0.0/8"]}
        )
        for first in range(0, len(accounts), 10_000):  # request bodies of a sane size
            chunk = accounts[first : first + 10_000]
            self.call("POST", "/api/accounts/import", {"accounts": chunk})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def compare(
    sweep: Sweep,
    kamailio_auth: str,
    reps: int = 3,
    regswitch_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Interleaved repetitions of Kamailio (1 child) and regswitch; medians and the ratio."""
    kam: list[dict[str, Any]] = []
    rs: list[dict[str, Any]] = []
    for rep in range(1, reps + 1):
        with (
            tempfile.TemporaryDirectory(prefix="rsbench-kamailio-") as tmp,
            kamailio(1, kamailio_auth, Path(tmp)) as proc,
        ):
            kam.append(
                run_sweep(
                    "127.0.0.1:5070",
                    sweep,
                    process_tree(proc.pid),
                    f"kamailio rep{rep}",
                    log=lambda _: None,
                )
            )
        print_step(kam[-1])
        server = Regswitch(extra_env=regswitch_env)
        try:
            server.provision()
            rs.append(
                run_sweep(
                    server.target, sweep, [server.pid], f"regswitch rep{rep}", log=lambda _: None
                )
            )
        finally:
            server.stop()
        print_step(rs[-1])
    kam_rate = statistics.median(s["best_rate"] or 0 for s in kam)
    rs_rate = statistics.median(s["best_rate"] or 0 for s in rs)
    scenario = sweep.scenario
    result = {
        "scenario": scenario,
        "kamailio_median": kam_rate,
        "regswitch_median": rs_rate,
        "ratio": round(rs_rate / kam_rate, 3) if kam_rate else None,
        "kamailio": kam,
        "regswitch": rs,
    }
    print(
        f"{scenario}: regswitch {rs_rate:.0f}/s vs Kamailio 1 child {kam_rate:.0f}/s -> ratio "
        f"{result['ratio']} (medians of {reps} interleaved reps)",
        flush=True,
    )
    return result


def print_step(summary: dict[str, Any]) -> None:
    print(
        f"  {summary['label']:<18} best {summary['best_rate']}/s  p50 {summary['p50_ms']} ms  "
        f"p99 {summary['p99_ms']} ms  sipp_cpu {summary['sipp_cpu']}%  "
        f"server_cpu {summary['server_cpu']}%",
        flush=True,
    )


def save_json(path: str | None, result: Any) -> None:
    """Write a benchmark's result where `--json` says (bench/results.py reads it)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
