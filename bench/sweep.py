#!/usr/bin/env python3
"""SIPp rate sweeps against a SIP server: the driver of the benchmarks (not tests).

A step at rate R sends N = R x duration SIPp calls (`sipp -r R -m N`, bounded in
wall-clock time). It passes when every call succeeded, retransmissions stayed
within 0.1 % of N (UDP loss means overload) and the achieved rate reached 95 %
of R. The sweep multiplies the rate until a step fails, then bisects between
the last pass and that failure. The result is the best passing step: its
rate, response times (SIPp measures whole milliseconds) and the CPU of SIPp
and of the server (100 = one core) during it.

    bench/sweep.py --target 127.0.0.1:5075 --server-pid PID --scenario register_digest
    bench/sweep.py --kamailio 1 --kam-auth htable --scenario register_digest

Scenarios (bench/scenarios/): `options`, `register_noauth`, `register_digest`
(one call = 401 + 200, a full registration) and `call` (INVITE/180/200/ACK/BYE
toward a SIPp UAS registered as `uas`). The users are user00001..user10000 with
password pw-<user>. SIPp uses UDP port 5071, the UAS 5072, Kamailio 5070.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
KAMAILIO_CFG = HERE / "kamailio.cfg"
KAMAILIO_PORT = 5070
SIPP_PORT = 5071
UAS_PORT = 5072
USERS = 10_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KAMAILIO_AUTH = ("none", "htable", "derived", "db")
SCENARIO_NAMES = ("options", "register_noauth", "register_digest", "call")


def user_name(number: int) -> str:
    return f"user{number:05d}"


def password(user: str) -> str:
    return f"pw-{user}"


# --- CPU placement and accounting ----------------------------------------------------
def sipp_cpus() -> str | None:
    """SIPp on the last CPU, the server on the others (None: one CPU, no pinning)."""
    count = os.cpu_count() or 1
    return str(count - 1) if count > 1 else None


def server_cpus() -> str | None:
    count = os.cpu_count() or 1
    if count == 1:
        return None
    return "0" if count == 2 else f"0-{count - 2}"


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus and shutil.which("taskset") else argv


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, from /proc/PID/stat."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores, less idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Kamailio forks its workers)."""
    found, todo = [pid], [pid]
    while todo:
        parent = todo.pop()
        try:
            text = Path(f"/proc/{parent}/task/{parent}/children").read_text()
        except OSError:
            continue
        children = [int(c) for c in text.split()]
        found += children
        todo += children
    return found


# --- users ---------------------------------------------------------------------------
def write_users_csv(path: Path, count: int = USERS) -> Path:
    """SIPp's injection file: field0 the user, field1 a ready [authentication] keyword
    (SIPp 3.6 does not expand [fieldN] inside [authentication ...]), field2 the password."""
    lines = ["SEQUENTIAL"]
    for number in range(1, count + 1):
        user = user_name(number)
        lines.append(
            f"{user};[authentication username={user} password={password(user)}];{password(user)}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def write_kamailio_users(path: Path, count: int = USERS, realm: str = "127.0.0.1") -> Path:
    """The same users for Kamailio in SQLite: `htable` (passwords loaded into memory)
    and `subscriber` (auth_db, with HA1)."""
    path.unlink(missing_ok=True)
    users = [user_name(n) for n in range(1, count + 1)]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            """
            CREATE TABLE version (table_name VARCHAR(32) NOT NULL,
                table_version INTEGER DEFAULT 0 NOT NULL);
            INSERT INTO version VALUES ('htable', 2), ('subscriber', 7);
            CREATE TABLE htable (id INTEGER PRIMARY KEY AUTOINCREMENT,
                key_name VARCHAR(64) NOT NULL DEFAULT '', key_type INTEGER NOT NULL DEFAULT 0,
                value_type INTEGER NOT NULL DEFAULT 0,
                key_value VARCHAR(128) NOT NULL DEFAULT '', expires INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE subscriber (id INTEGER PRIMARY KEY AUTOINCREMENT,
                username VARCHAR(64) NOT NULL DEFAULT '', domain VARCHAR(64) NOT NULL DEFAULT '',
                password VARCHAR(64) NOT NULL DEFAULT '', ha1 VARCHAR(128) NOT NULL DEFAULT '',
                ha1b VARCHAR(128) NOT NULL DEFAULT '');
            CREATE UNIQUE INDEX account_idx ON subscriber (username, domain);
            """
        )
        db.executemany(
            "INSERT INTO htable (key_name, key_value) VALUES (?, ?)",
            [(u, password(u)) for u in users],
        )
        db.executemany(
            "INSERT INTO subscriber (username, domain, password, ha1) VALUES (?, ?, ?, ?)",
            [(u, realm, password(u), md5_hex(f"{u}:{realm}:{password(u)}")) for u in users],
        )
        db.commit()
    return path


# --- servers this driver starts --------------------------------------------------------
def answers_options(host: str, port: int, timeout: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        stamp = time.time_ns()
        probe = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-ready{stamp}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:ready@127.0.0.1>;tag=r\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: ready-{stamp}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            sock.sendto(probe.encode(), (host, port))
            return sock.recvfrom(65535)[0].startswith(b"SIP/2.0 ")
        except OSError:
            return False


@contextlib.contextmanager
def started(argv: list[str], log: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, ready once it answers OPTIONS on `port`; stopped (by its own
    PID) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 15
            while not answers_options("127.0.0.1", port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{argv[0]} did not start; see {log}")
                time.sleep(0.2)
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kamailio(
    children: int, auth: str, workdir: Path, cpus: str | None = "server", users: int = USERS
) -> contextlib.AbstractContextManager[Any]:
    """Kamailio on udp:127.0.0.1:5070 with bench/kamailio.cfg and this auth mode,
    pinned to the server's CPUs (`cpus` "server") or as given (None: unpinned),
    knowing the first `users` bench users."""
    if shutil.which("kamailio") is None:
        raise SystemExit("no kamailio (Debian: apt-get install kamailio kamailio-sqlite-modules)")
    users_db = write_kamailio_users(workdir / "users.db", users)
    defines = ["-A", f"CHILDREN={children}", "-A", f'USERS_DB="sqlite://{users_db}"']
    defines += {
        "none": ["-A", "AUTH_NONE"],
        "derived": ["-A", "AUTH_DERIVED"],
        "db": ["-A", "AUTH_DB"],
        "htable": [],
    }[auth]
    # private memory: 16 MB is plenty, but loading more users into htable needs more
    pkg = "16" if users <= USERS else str(16 + users // 2000)
    argv = ["kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E", "-m", "512", "-M", pkg, *defines]
    where = server_cpus() if cpus == "server" else cpus
    return started(pinned(where, argv), workdir / "kamailio.log", KAMAILIO_PORT)


@contextlib.contextmanager
def call_target(target: str, workdir: Path) -> Iterator[None]:
    """For the `call` scenario: a SIPp UAS on UAS_PORT, registered at `target` as `uas`."""
    argv = [
        "sipp",
        "-sf",
        str(SCENARIOS / "uas_call.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(UAS_PORT),
        "-nostdin",
        "-timeout",
        "600s",
        "-buff_size",
        str(4 << 20),
    ]
    uas = subprocess.Popen(
        pinned(sipp_cpus(), argv),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # SIPp binds its port
        subprocess.run(
            [
                "sipp",
                target,
                "-sf",
                str(SCENARIOS / "register_contact.xml"),
                "-s",
                "uas",
                "-key",
                "uas_port",
                str(UAS_PORT),
                "-i",
                "127.0.0.1",
                "-p",
                str(SIPP_PORT),
                "-m",
                "1",
                "-nostdin",
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=15,
            check=True,
        )
        yield
    finally:
        uas.terminate()
        uas.wait(10)


# --- the sweep -------------------------------------------------------------------------
@dataclass
class Sweep:
    """How to sweep: geometric from `start` (or the explicit `rates`), then bisect."""

    scenario: str
    start: int = 1000
    factor: float = 2.0
    bisect: int = 2
    duration: float = 4.0
    max_rate: int = 200_000
    settle: float = 1.0
    pause_ms: int = 0  # call: between ACK and BYE
    rates: list[int] = field(default_factory=list)
    # SIPp's UDP sockets: "u1" one for every call (every phone behind one address
    # and port), "un" one per call (a phone each, as real traffic: the kernel
    # spreads flows over the worker processes of `serve --workers`)
    transport: str = "u1"


@dataclass
class Step:
    rate: int
    calls: int
    exit_code: int
    wall: float
    ok: int
    failed: int
    retransmissions: int
    achieved: float
    p50_ms: float | None
    p99_ms: float | None
    sipp_cpu: float
    server_cpu: float | None
    machine_cpu: float
    passed: bool


def sipp_stats(workdir: Path, calls: int, wall: float) -> tuple[int, int, int, float]:
    """(successful, failed, retransmissions, seconds of sending) from SIPp's -trace_stat."""
    try:
        lines = (workdir / "stat.csv").read_text().strip().splitlines()
        header, last = lines[0].split(";"), lines[-1].split(";")

        def value(name: str) -> str:
            return last[header.index(name)]

        parts = [float(p) for p in value("ElapsedTime(C)").split(":")]  # HH:MM:SS[:ms:us]
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
        if len(parts) > 3:
            seconds += parts[3] / 1000
        return (
            int(value("SuccessfulCall(C)")),
            int(value("FailedCall(C)")),
            int(value("Retransmissions(C)")),
            seconds,
        )
    except (OSError, ValueError, IndexError):
        return 0, calls, 0, wall


def response_times(workdir: Path) -> list[float]:
    """Every response time SIPp logged (-trace_rtt), in ms, sorted."""
    times: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            if line.count(";") == 2:
                times.append(float(line.split(";")[1]))
    return sorted(times)


def run_step(
    target: str, sweep: Sweep, rate: int, users: Path, workdir: Path, server_pids: list[int]
) -> Step:
    calls = max(1, int(rate * sweep.duration))
    scenario = "uac_call" if sweep.scenario == "call" else sweep.scenario
    argv = [
        "sipp",
        target,
        "-sf",
        str(SCENARIOS / f"{scenario}.xml"),
        "-inf",
        str(users),
        "-i",
        "127.0.0.1",
        "-p",
        str(SIPP_PORT),
        "-t",
        sweep.transport,
        # the Contact's port: the same for every call of a user, whatever socket
        # sends it (register_digest: one device per user, refreshing)
        "-key",
        "contact_port",
        str(SIPP_PORT),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(workdir / "stat.csv"),
        "-fd",
        "60",
        "-trace_rtt",
        "-rtt_freq",
        "200",
        "-max_recv_loops",
        "10000",
        "-max_sched_loops",
        "10000",
        "-buff_size",
        str(4 << 20),
        "-l",
        str(max(1000, rate * 4)),
    ]
    if sweep.transport == "un":
        # one socket per call, up to this many open (then calls share them)
        argv += ["-max_socket", "10000"]
    if sweep.scenario == "call":
        argv += ["-s", "uas", "-d", str(sweep.pause_ms)]
    for old in workdir.iterdir():
        if old.is_file():
            old.unlink()
    server_before, machine_before = process_cpu_seconds(server_pids), machine_busy_seconds()
    started_at = time.monotonic()
    proc = subprocess.Popen(
        pinned(sipp_cpus(), argv), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    bound = sweep.duration * 3 + 20
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            exit_code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() - started_at > bound:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            exit_code = -9
            break
        time.sleep(0.05)
    proc.returncode = exit_code  # reaped here, not by Popen
    wall = time.monotonic() - started_at
    server = process_cpu_seconds(server_pids) - server_before
    machine = machine_busy_seconds() - machine_before
    ok, failed, retransmissions, seconds = sipp_stats(workdir, calls, wall)
    times = response_times(workdir)
    achieved = round(ok / max(seconds, calls / rate), 1)
    return Step(
        rate=rate,
        calls=calls,
        exit_code=exit_code,
        wall=round(wall, 2),
        ok=ok,
        failed=failed,
        retransmissions=retransmissions,
        achieved=achieved,
        p50_ms=times[len(times) // 2] if times else None,
        p99_ms=times[int(len(times) * 0.99)] if times else None,
        sipp_cpu=round(100 * (usage.ru_utime + usage.ru_stime) / wall, 1),
        server_cpu=round(100 * server / wall, 1) if server_pids else None,
        machine_cpu=round(100 * machine / wall, 1),
        passed=(
            exit_code == 0
            and failed == 0
            and ok == calls
            and retransmissions <= calls * 0.001
            and achieved >= 0.95 * rate
        ),
    )


def run_sweep(
    target: str,
    sweep: Sweep,
    server_pids: list[int],
    label: str,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sweep `target`; returns the summary (best passing step, first failure, every step)."""
    if shutil.which("sipp") is None:
        raise SystemExit("no sipp (Debian: apt-get install sip-tester)")
    with tempfile.TemporaryDirectory(prefix="rsbench-") as tmp:
        workdir = Path(tmp) / "sipp"
        workdir.mkdir()
        users = write_users_csv(Path(tmp) / "users.csv")
        callee = call_target(target, Path(tmp)) if sweep.scenario == "call" else None
        with callee or contextlib.nullcontext():
            steps = _steps(target, sweep, users, workdir, server_pids, log)
    passed = [s for s in steps if s.passed]
    best = max(passed, key=lambda s: s.rate) if passed else None
    return {
        "label": label,
        "scenario": sweep.scenario,
        "target": target,
        "best_rate": best.rate if best else None,
        "p50_ms": best.p50_ms if best else None,
        "p99_ms": best.p99_ms if best else None,
        "sipp_cpu": best.sipp_cpu if best else None,
        "server_cpu": best.server_cpu if best else None,
        "machine_cpu": best.machine_cpu if best else None,
        "first_fail": next((asdict(s) for s in steps if not s.passed), None),
        "steps": [asdict(s) for s in steps],
        "time": time.strftime("%FT%T"),
    }


def _steps(
    target: str,
    sweep: Sweep,
    users: Path,
    workdir: Path,
    server_pids: list[int],
    log: Callable[[str], None],
) -> list[Step]:
    steps: list[Step] = []

    def step(rate: int) -> Step:
        result = run_step(target, sweep, rate, users, workdir, server_pids)
        steps.append(result)
        log(json.dumps(asdict(result)))
        time.sleep(sweep.settle)
        return result

    explicit = list(sweep.rates)
    rate = explicit.pop(0) if explicit else sweep.start
    best: Step | None = None
    failure: Step | None = None
    while rate <= sweep.max_rate:
        result = step(rate)
        if not result.passed:
            failure = result
            break
        best = result
        if sweep.rates:
            if not explicit:
                break
            rate = explicit.pop(0)
        else:
            rate = int(rate * sweep.factor)
    if best is not None and failure is not None and not sweep.rates:
        low, high = best.rate, failure.rate
        for _ in range(sweep.bisect):
            middle = (low + high) // 2
            if middle <= low or high - low < low * 0.05:
                break
            if step(middle).passed:
                low = middle
            else:
                high = middle
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="host:port of a server already running")
    where.add_argument("--kamailio", type=int, metavar="CHILDREN", help="start Kamailio (5070)")
    parser.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="with --target: PID(s) whose CPU to measure",
    )
    parser.add_argument(
        "--kam-auth",
        choices=KAMAILIO_AUTH,
        help="Kamailio's REGISTER authentication (default: none for the call "
        "scenario, htable otherwise)",
    )
    parser.add_argument("--scenario", required=True, choices=SCENARIO_NAMES)
    parser.add_argument("--rates", help="comma-separated rates instead of a sweep")
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of traffic per step")
    parser.add_argument("--pause-ms", type=int, default=0, help="call: pause between ACK and BYE")
    parser.add_argument("--label", default="")
    parser.add_argument("--json", help="append the summary as one JSON line to this file")
    a = parser.parse_args()
    sweep = Sweep(
        a.scenario,
        a.start,
        a.factor,
        a.bisect,
        a.duration,
        pause_ms=a.pause_ms,
        rates=[int(r) for r in a.rates.split(",")] if a.rates else [],
    )
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(f"signal {signum}"))
    if a.kamailio:
        auth = a.kam_auth or ("none" if a.scenario in ("call", "register_noauth") else "htable")
        with (
            tempfile.TemporaryDirectory(prefix="rsbench-kamailio-") as tmp,
            kamailio(a.kamailio, auth, Path(tmp)) as proc,
        ):
            label = a.label or f"kamailio {a.kamailio} child(ren), auth {auth}"
            summary = run_sweep(f"127.0.0.1:{KAMAILIO_PORT}", sweep, process_tree(proc.pid), label)
    else:
        summary = run_sweep(a.target, sweep, a.server_pid, a.label or a.target)
    print("SUMMARY " + json.dumps({k: v for k, v in summary.items() if k != "steps"}))
    if a.json:
        with open(a.json, "a") as out:
            out.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
