"""PjsuaPhone: a PJSIP (pjsua2) phone in a subprocess, driven from tests.

    phone = PjsuaPhone(tmp_path / "alice").start()
    phone.register(registrar=f"sip:{host}:{port}", user="alice", domain="example.com",
                   password="pw")
    event = phone.wait_reg(timeout=10)      # {"event": "reg_state", "code": 200, ...}
    phone.stop()

The agent (pjsua_agent.py) speaks JSON lines; see its docstring for commands
and events. Events are kept in order; `wait_event` returns the first one not
yet returned that matches, waiting on a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

AGENT = Path(__file__).with_name("pjsua_agent.py")
Event = dict[str, Any]


class PjsuaError(RuntimeError):
    pass


class PjsuaPhone:
    def __init__(
        self,
        workdir: Path,
        *,
        log_level: int = 3,
        start_timeout: float = 15.0,
        bind: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.bind = bind
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.log_path = workdir / "pjsua.log"
        self.proc: subprocess.Popen[str] | None = None
        self.events: list[Event] = []
        self.udp_port = 0
        self.tcp_port = 0
        self._consumed: set[int] = set()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> PjsuaPhone:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(AGENT), "--log-level", str(self.log_level), "--bind", self.bind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            cwd=self.workdir,
        )
        self._reader = threading.Thread(target=self._read, name="pjsua-events", daemon=True)
        self._reader.start()
        ready = self.wait_event(lambda e: e["event"] == "ready", self.start_timeout)
        self.udp_port = int(ready["udp_port"])
        self.tcp_port = int(ready["tcp_port"])
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "garbage", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.events.append({"event": "exited"})
            self._cond.notify_all()

    def send(self, cmd: str, **fields: Any) -> int:
        """Send a command; returns its id (its "ok"/"error" reply carries it)."""
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise PjsuaError(f"pjsua agent not running\n{self.log_tail()}")
        ident = next(self._ids)
        self.proc.stdin.write(json.dumps({"cmd": cmd, "id": ident, **fields}) + "\n")
        self.proc.stdin.flush()
        return ident

    def command(self, cmd: str, timeout: float = 10.0, **fields: Any) -> Event:
        """Send a command and wait for its reply; raises on an "error" reply."""
        ident = self.send(cmd, **fields)
        reply = self.wait_event(
            lambda e: e.get("id") == ident and e["event"] in ("ok", "error"), timeout
        )
        if reply["event"] == "error":
            raise PjsuaError(f"{cmd} failed: {reply.get('message')}")
        return reply

    def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        """The first not-yet-returned event matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, event in enumerate(self.events):
                    if i not in self._consumed and predicate(event):
                        self._consumed.add(i)
                        return event
                if self.events and self.events[-1]["event"] == "exited":
                    raise PjsuaError(
                        f"pjsua agent exited\nevents: {self.events}\n{self.log_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no matching pjsua event within {timeout} s; events: {self.events}\n"
                        f"{self.log_tail()}"
                    )
                self._cond.wait(left)

    # -- conveniences --------------------------------------------------------------

    def register(
        self,
        registrar: str,
        user: str,
        domain: str,
        password: str | None = None,
        transport: str = "udp",
        acc: str = "default",
        **extra: Any,
    ) -> Event:
        return self.command(
            "register",
            registrar=registrar,
            user=user,
            domain=domain,
            password=password,
            transport=transport,
            acc=acc,
            **extra,
        )

    def wait_reg(self, timeout: float = 10.0, acc: str = "default") -> Event:
        """The next final registration outcome of account `acc`."""
        return self.wait_event(
            lambda e: e["event"] == "reg_state" and e.get("acc") == acc and e["code"] >= 200,
            timeout,
        )

    def call(self, uri: str, acc: str = "default") -> int:
        return int(self.command("call", uri=uri, acc=acc)["call"])

    def answer(self, call: int, code: int = 200) -> None:
        self.command("answer", call=call, code=code)

    def hangup(self, call: int, code: int | None = None) -> None:
        fields: dict[str, Any] = {"call": call}
        if code is not None:
            fields["code"] = code
        self.command("hangup", **fields)

    def wait_call_state(self, state: str, timeout: float = 10.0, call: int | None = None) -> Event:
        return self.wait_event(
            lambda e: (
                e["event"] == "call_state"
                and e["state"] == state
                and (call is None or e["call"] == call)
            ),
            timeout,
        )

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return "--- pjsua log ---\n" + self.log_path.read_bytes()[-limit:].decode(
                "utf-8", "replace"
            )
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0, unregister: bool = False) -> int | None:
        """`quit` (unregistering first only if asked: that costs pjsua ~1 s),
        then terminate/kill our process if it lingers."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                self.send("quit", unregister=unregister)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def __enter__(self) -> PjsuaPhone:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
