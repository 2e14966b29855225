"""Run SIPp (Debian package sip-tester) as a subprocess, bounded and traced.

    result = run_sipp(sipp_scenario("options"), server.target("udp"), calls=10)
    result.check(10)                      # 10 successful, 0 failed, exit 0

    uas = start_sipp(scenario_xml_text)   # background role, listening on uas.port
    ...
    uas.wait(10).check(1)

Every run happens in its own directory with `-trace_stat` (CSV, last row
parsed into `.stats`), `-trace_msg` and `-trace_err`; SIPp's screen goes to a
file. A run is bounded three ways: `-m calls`, `-timeout <s>s
-timeout_error`, and a hard kill if SIPp outlives that.

Transports: u1 (UDP), t1 (TCP). l1 (TLS) only with a SIPp built with OpenSSL:
Debian's sip-tester 3.6.1 is built without it (`sipp -v` reports
"v3.6.1-SCTP-PCAP-RTPSTREAM"), so `run_sipp(..., transport="l1")` raises
SippUnsupported there; `sipp_supports_tls()` tells.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tls import TlsFiles

KILL_GRACE = 15.0
TRANSPORTS = ("u1", "un", "t1", "tn", "l1", "ln")


class SippError(RuntimeError):
    pass


class SippUnsupported(SippError):
    pass


def sipp_binary() -> str:
    """$SIPP if set (e.g. a TLS-capable build), else `sipp` on PATH."""
    path = os.environ.get("SIPP") or shutil.which("sipp")
    if not path:
        raise FileNotFoundError("sipp not found (Debian package sip-tester)")
    return path


@functools.cache
def sipp_version() -> str:
    proc = subprocess.run(
        [sipp_binary(), "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        if "SIPp v" in line:
            return line.strip()
    return ""


def sipp_supports_tls() -> bool:
    # TLS builds announce it in the version string ("v3.6.1-TLS-SCTP-PCAP-RTPSTREAM").
    return "TLS" in sipp_version().upper()


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""


def parse_stats(path: Path) -> dict[str, str]:
    """The last row of a -trace_stat CSV (';'-separated, header first)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


@dataclass
class SippResult:
    returncode: int | None
    stats: dict[str, str]
    workdir: Path
    cmd: list[str]
    stdout_path: Path
    messages_path: Path
    errors_path: Path
    stderr_tail: str = ""
    timed_out: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def stat(self, name: str) -> int:
        """An integer counter, e.g. stat("SuccessfulCall(C)"); 0 when absent."""
        value = self.stats.get(name, "")
        try:
            return int(float(value))
        except ValueError:
            return 0

    @property
    def successful(self) -> int:
        return self.stat("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.stat("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self.stat("Retransmissions(C)")

    @property
    def stdout_tail(self) -> str:
        return _tail(self.stdout_path)

    def describe(self) -> str:
        killed = " (killed: outlived its timeout)" if self.timed_out else ""
        return (
            f"sipp exit {self.returncode}{killed}"
            f", successful={self.successful} failed={self.failed}"
            f" retrans={self.retransmissions}\ncmd: {' '.join(self.cmd)}\nworkdir: {self.workdir}"
            f"\n--- errors ---\n{_tail(self.errors_path)}"
            f"\n--- stderr ---\n{self.stderr_tail}"
            f"\n--- screen ---\n{_tail(self.stdout_path, 1500)}"
            f"\n--- messages (tail) ---\n{_tail(self.messages_path, 3000)}"
        )

    def check(self, calls: int | None = None) -> SippResult:
        """Assert a clean run: exit 0, nothing failed, `calls` successful."""
        ok = self.returncode == 0 and self.failed == 0 and not self.timed_out
        if calls is not None:
            ok = ok and self.successful == calls
        if not ok:
            raise AssertionError(f"SIPp run not clean (expected {calls} calls)\n{self.describe()}")
        return self


_HANDED_OUT: list[int] = []  # recent answers, not given twice in a row


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP right now (SIPp binds both for UAS roles).

    Never one of the last ports handed out: two SIPp devices started one
    after the other must not share a port (and so a contact), or a test of
    "a second device" would quietly test "the same device again"."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            if port in _HANDED_OUT:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                _HANDED_OUT.append(port)
                del _HANDED_OUT[:-256]
                return port
    raise SippError("no free port")


def _port_bound(host: str, port: int, transport: str) -> bool:
    kind = socket.SOCK_DGRAM if transport.startswith("u") else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


class SippProcess:
    """A running SIPp (see start_sipp)."""

    def __init__(
        self,
        cmd: list[str],
        workdir: Path,
        port: int,
        timeout: float,
        host: str,
        transport: str,
    ) -> None:
        self.cmd = cmd
        self.workdir = workdir
        self.port = port
        self.host = host
        self.transport = transport
        self.timeout = timeout
        self.stdout_path = workdir / "sipp.screen"
        self.stderr_path = workdir / "sipp.stderr"
        self.messages_path = workdir / "messages.log"
        self.errors_path = workdir / "errors.log"
        self.stats_path = workdir / "stats.csv"
        self.started = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self._result: SippResult | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_listening(self, timeout: float = 5.0) -> bool:
        """True once SIPp holds its port; False if it exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if _port_bound(self.host, self.port, self.transport):
                return True
            time.sleep(0.02)  # nothing to wait on but the port itself
        raise SippError(f"sipp did not bind {self.address} within {timeout} s\n{self.cmd}")

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish (killing it if it outlives `timeout`)."""
        if self._result is not None:
            return self._result
        limit = timeout if timeout is not None else self.timeout + KILL_GRACE
        timed_out = False
        try:
            self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill()
        return self._finish(timed_out)

    def stop(self, grace: float = 5.0) -> SippResult:
        """Soft exit (SIGUSR1, like pressing 'q'), then SIGKILL; returns the result."""
        if self._result is not None:
            return self._result
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._kill()
        return self._finish(False)

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def _finish(self, timed_out: bool) -> SippResult:
        self._result = SippResult(
            returncode=self.proc.returncode,
            stats=parse_stats(self.stats_path),
            workdir=self.workdir,
            cmd=self.cmd,
            stdout_path=self.stdout_path,
            messages_path=self.messages_path,
            errors_path=self.errors_path,
            stderr_tail=_tail(self.stderr_path),
            timed_out=timed_out,
        )
        return self._result


def _scenario_args(scenario: Path | str, workdir: Path) -> list[str]:
    if isinstance(scenario, str) and scenario.startswith("sn:"):
        return ["-sn", scenario[3:]]  # a built-in scenario: "sn:uac", "sn:uas"
    if isinstance(scenario, str) and scenario.lstrip().startswith("<"):
        path = workdir / "scenario.xml"
        path.write_text(scenario, encoding="iso-8859-1")
        return ["-sf", str(path)]
    path = Path(scenario)
    if not path.is_file():
        raise FileNotFoundError(path)
    return ["-sf", str(path.resolve())]


def build_command(
    scenario: Path | str,
    target: str | None,
    *,
    workdir: Path,
    transport: str = "u1",
    inf: Path | str | None = None,
    extra: Sequence[str] = (),
    calls: int | None = 1,
    timeout: float = 20,
    local_host: str = "127.0.0.1",
    local_port: int = 0,
    keys: Mapping[str, str | int] | None = None,
    rate: float | None = None,
    rate_period_ms: int | None = None,
    tls: TlsFiles | None = None,
    trace_msg: bool = True,
) -> list[str]:
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown SIPp transport {transport!r}")
    if transport.startswith("l") and not sipp_supports_tls():
        raise SippUnsupported(
            f"this SIPp ({sipp_version() or 'unknown version'}) was built without TLS;"
            " set SIPP= to a TLS-capable build"
        )
    cmd = [sipp_binary()]
    if target:
        cmd.append(target)
    cmd += _scenario_args(scenario, workdir)
    cmd += ["-t", transport, "-i", local_host]
    if local_port:
        cmd += ["-p", str(local_port)]
    if calls is not None:
        cmd += ["-m", str(calls)]
    cmd += [
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        str(workdir / "stats.csv"),
        "-trace_err",
        "-error_file",
        str(workdir / "errors.log"),
    ]
    if trace_msg:
        cmd += ["-trace_msg", "-message_file", str(workdir / "messages.log")]
    if rate is not None:
        cmd += ["-r", str(rate)]
    if rate_period_ms is not None:
        cmd += ["-rp", str(rate_period_ms)]
    if inf is not None:
        cmd += ["-inf", str(inf)]
    for name, value in (keys or {}).items():
        cmd += ["-key", name, str(value)]
    if tls is not None:
        cmd += ["-tls_cert", str(tls.cert), "-tls_key", str(tls.key)]
    cmd += list(extra)
    return cmd


def _workdir(workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="sipp-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def run_sipp(
    scenario: Path | str,
    target: str,
    *,
    transport: str = "u1",
    inf: Path | str | None = None,
    extra: Sequence[str] = (),
    calls: int = 1,
    timeout: float = 20,
    local_port: int = 0,
    keys: Mapping[str, str | int] | None = None,
    rate: float | None = None,
    rate_period_ms: int | None = None,
    tls: TlsFiles | None = None,
    trace_msg: bool = True,
    workdir: Path | None = None,
    local_host: str = "127.0.0.1",
) -> SippResult:
    """Run a SIPp client role to completion against `target` ("host:port").

    `scenario`: a Path, XML text, or "sn:NAME" for a built-in scenario.
    """
    workdir = _workdir(workdir)
    cmd = build_command(
        scenario,
        target,
        workdir=workdir,
        transport=transport,
        inf=inf,
        extra=extra,
        calls=calls,
        timeout=timeout,
        local_port=local_port,
        keys=keys,
        rate=rate,
        rate_period_ms=rate_period_ms,
        tls=tls,
        trace_msg=trace_msg,
        local_host=local_host,
    )
    proc = SippProcess(cmd, workdir, local_port, timeout, local_host, transport)
    return proc.wait()


def start_sipp(
    scenario: Path | str,
    target: str | None = None,
    *,
    transport: str = "u1",
    inf: Path | str | None = None,
    extra: Sequence[str] = (),
    calls: int | None = 1,
    timeout: float = 30,
    local_port: int = 0,
    keys: Mapping[str, str | int] | None = None,
    rate: float | None = None,
    tls: TlsFiles | None = None,
    trace_msg: bool = True,
    workdir: Path | None = None,
    wait_listening: bool = True,
    local_host: str = "127.0.0.1",
) -> SippProcess:
    """Start SIPp in the background (typically a UAS) on a known port.

    The port is chosen free (unless `local_port` is given) and, with
    `wait_listening`, this returns once SIPp holds it, retrying on a port race.
    """
    workdir = _workdir(workdir)
    last_error = ""
    for attempt in range(3):
        port = local_port or free_port()
        attempt_dir = workdir if attempt == 0 else workdir / f"retry{attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        cmd = build_command(
            scenario,
            target,
            workdir=attempt_dir,
            transport=transport,
            inf=inf,
            extra=extra,
            calls=calls,
            timeout=timeout,
            local_port=port,
            keys=keys,
            rate=rate,
            tls=tls,
            trace_msg=trace_msg,
            local_host=local_host,
        )
        proc = SippProcess(cmd, attempt_dir, port, timeout, local_host, transport)
        if not wait_listening or proc.wait_listening():
            return proc
        result = proc.wait(5)
        last_error = result.describe()
        if local_port:
            break
    raise SippError(f"sipp failed to start\n{last_error}")


class SippRunner:
    """What the `sipp` fixture gives a test: `run`/`start` with a fresh work
    directory per call under the test's tmp_path; `stop_all` at teardown."""

    def __init__(self, binary: str, tmp_path: Path) -> None:
        self.binary = binary
        self.tmp_path = tmp_path
        self.processes: list[SippProcess] = []
        self._runs = 0

    def _dir(self, kind: str) -> Path:
        self._runs += 1
        return self.tmp_path / f"sipp-{kind}{self._runs}"

    def run(self, scenario: Path | str, target: str, **kw: Any) -> SippResult:
        kw.setdefault("workdir", self._dir("run"))
        return run_sipp(scenario, target, **kw)

    def start(self, scenario: Path | str, target: str | None = None, **kw: Any) -> SippProcess:
        kw.setdefault("workdir", self._dir("bg"))
        proc = start_sipp(scenario, target, **kw)
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.stop()
