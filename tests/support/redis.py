"""A real Redis server for the cluster tests, never a mock.

`RedisServer.start()` runs Debian's `redis-server` on a free loopback port,
without persistence (`--save '' --appendonly no`), in a temporary directory,
and waits (with a deadline) until it answers PING. It is stopped by its PID.

    server = RedisServer.start()
    url = server.new_database()    # redis://127.0.0.1:PORT/N, flushed
    server.stop(); server.start_again()   # Redis down, then back on the same port

Fixtures: `redis_server` (one per session) and `redis_url` (a flushed database
per test; 16 databases are used in turn).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT = 10.0
DATABASES = 1024  # enough for one per test of a session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    """One PING over a plain socket (the harness needs no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.log = root / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # every test gets a database of its own, never one a server of an earlier
        # test (a node still shutting down, a restarted worker) may yet write to
        self._databases = itertools.count()

    @classmethod
    def start(cls) -> RedisServer:
        server = cls(Path(tempfile.mkdtemp(prefix="regswitch-redis-")), _free_port())
        try:
            server.start_again()
        except BaseException:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)
            raise
        return server

    def start_again(self) -> None:
        """Start (or restart after `stop`) on the same port, empty."""
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.root),
                "--logfile", str(self.log), "--protected-mode", "no",
                "--databases", str(DATABASES),
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s")
            time.sleep(0.02)  # polling a port: there is no event to wait on

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        db = next(self._databases)
        if db >= DATABASES:
            raise RuntimeError(f"more than {DATABASES} Redis databases in one session")
        self.command("-n", str(db), "FLUSHDB")
        return self.url(db)

    def command(self, *args: str) -> str:
        """redis-cli against this server (the harness's own admin path)."""
        proc = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return proc.stdout.strip()

    def stop(self) -> None:
        """SIGTERM our redis-server (by PID) and wait; SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis for the session. Missing: skip, or fail under CI=true."""
    from support import _missing

    if not Path(REDIS_SERVER).exists() or shutil.which("redis-cli") is None:
        _missing("redis-server", "Debian package redis-server; `make system`")
    server = RedisServer.start()
    yield server
    server.stop()
    with contextlib.suppress(OSError):
        shutil.rmtree(server.root)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a flushed database on the session's Redis."""
    return redis_server.new_database()
