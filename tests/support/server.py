"""A real `regswitch serve` subprocess on loopback, free ports, a temp SQLite db.

The server is started as

    python -m regswitch serve --sip udp:127.0.0.1:0 --sip tcp:127.0.0.1:0
        [--sip tls:127.0.0.1:0 --tls-cert F --tls-key F]
        --api 127.0.0.1:0 --db sqlite:///<dir>/rs.db --ready-file <dir>/ready.json ...

and writes the ready file once every listener is bound:

    {"sip": [{"transport": "udp", "host": "127.0.0.1", "port": N}, ...],
     "api": "http://127.0.0.1:N", "pid": N}

We poll for that file with a deadline; if the process exits first, the error
carries the tail of its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from .tls import TlsFiles

DEFAULT_COMMAND = (sys.executable, "-m", "regswitch", "serve")
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# Environment variables that would make a test server depend on the
# developer's shell rather than on the test.
_STRIPPED_ENV_PREFIXES = ("REGSWITCH_",)


class ServerError(RuntimeError):
    pass


def log_tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "<no log>"
    return data[-limit:].decode("utf-8", "replace")


class RunningServer:
    """One `regswitch serve` process. Start with `start()` (or the fixtures)."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        host: str = "127.0.0.1",
        db: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.tls_files = tls
        self.extra_args = list(extra_args)
        self.env_overrides = dict(env or {})
        # The command is replaceable only so the harness itself can be tried
        # against a stand-in; tests use the real `python -m regswitch serve`.
        self.command = list(command or DEFAULT_COMMAND)
        self.ready_timeout = ready_timeout
        self.db_path = workdir / "rs.db"
        self.host = host  # the SIP listeners' address (a cluster test gives each node its own)
        self._db = db  # another storage URL than the temp SQLite file (PostgreSQL)
        self.ready_path = workdir / "ready.json"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.starts = 0
        self.stopped = False  # stop() was called: an exit since then is expected
        self.log_path = workdir / "server.log"
        self._log: IO[bytes] | None = None
        self._api: httpx.Client | None = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def db_url(self) -> str:
        return self._db or f"sqlite:///{self.db_path}"

    def argv(self) -> list[str]:
        host = self.host
        args = [*self.command, "--sip", f"udp:{host}:0", "--sip", f"tcp:{host}:0"]
        if self.tls_files is not None:
            args += [
                "--sip",
                f"tls:{host}:0",
                "--tls-cert",
                str(self.tls_files.cert),
                "--tls-key",
                str(self.tls_files.key),
            ]
        args += [
            "--api",
            "127.0.0.1:0",
            "--db",
            self.db_url,
            "--ready-file",
            str(self.ready_path),
            *self.extra_args,
        ]
        return args

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
        env["PYTHONUNBUFFERED"] = "1"
        # Plain tracebacks in the log file (typer/rich draw boxes otherwise).
        env["_TYPER_STANDARD_TRACEBACK"] = "1"
        env["NO_COLOR"] = "1"
        env.update(self.env_overrides)
        return env

    def start(self) -> RunningServer:
        if self.alive:
            raise ServerError("already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)
        self.ready = {}
        self.stopped = False
        # One log per start, so a restart's output is not mixed with the first.
        name = "server.log" if self.starts == 0 else f"server-{self.starts}.log"
        self.log_path = self.workdir / name
        self.starts += 1
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.workdir,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stopped = True  # a failed start is reported by start(), not again later
            self._terminate()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(
                    f"regswitch serve exited with {code} before it was ready\n"
                    f"argv: {self.argv()}\n--- log tail ---\n{log_tail(self.log_path)}"
                )
            ready = self._read_ready()
            if ready is not None:
                self.ready = ready
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"regswitch serve wrote no ready file within {self.ready_timeout} s\n"
                    f"argv: {self.argv()}\n--- log tail ---\n{log_tail(self.log_path)}"
                )
            time.sleep(0.02)  # polling a file: there is no event to wait on

    def _read_ready(self) -> dict[str, Any] | None:
        try:
            text = self.ready_path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None  # written but not complete yet
        if not isinstance(data, dict) or "sip" not in data or "api" not in data:
            return None
        return data

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM our process (by PID), wait, then SIGKILL. Returns its exit code."""
        self.stopped = True
        if self._api is not None:
            self._api.close()
            self._api = None
        return self._terminate(timeout)

    def _terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        proc = self.proc
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> int | None:
        """SIGKILL: an unclean stop (for restart-recovery tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        return self.stop()

    def restart(self, *, clean: bool = True) -> RunningServer:
        """Stop (SIGTERM, or SIGKILL with clean=False) and start again: same db, new ports."""
        if clean:
            self.stop()
        else:
            self.kill()
        return self.start()

    def __enter__(self) -> RunningServer:
        return self.start() if not self.alive else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------

    def listener(self, transport: str) -> tuple[str, int]:
        for entry in self.ready.get("sip", ()):
            if str(entry.get("transport", "")).lower() == transport:
                return str(entry["host"]), int(entry["port"])
        raise KeyError(f"server has no {transport} listener: {self.ready.get('sip')}")

    @property
    def udp(self) -> tuple[str, int]:
        return self.listener("udp")

    @property
    def tcp(self) -> tuple[str, int]:
        return self.listener("tcp")

    @property
    def tls(self) -> tuple[str, int]:
        """The TLS listener (start with `tls=TlsFiles`); its files are `.tls_files`."""
        return self.listener("tls")

    def target(self, transport: str = "udp") -> str:
        """`host:port` as SIPp wants it."""
        host, port = self.listener(transport)
        return f"{host}:{port}"

    def uri(self, transport: str = "udp", user: str | None = None) -> str:
        host, port = self.listener(transport)
        who = f"{user}@" if user else ""
        param = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{who}{host}:{port}{param}"

    @property
    def api_url(self) -> str:
        return str(self.ready["api"])

    @property
    def api(self) -> httpx.Client:
        """An httpx client on the API (base_url set); closed by stop()."""
        if self._api is None:
            self._api = httpx.Client(base_url=self.api_url, timeout=10.0)
        return self._api

    def log(self) -> str:
        return log_tail(self.log_path, 1_000_000)

    def __repr__(self) -> str:
        sip, api = self.ready.get("sip"), self.ready.get("api")
        return f"<RunningServer pid={self.pid} sip={sip} api={api}>"
