"""A real Redis server for the cluster tests, never a mock.

`RedisServer.start()` runs Debian's `redis-server` on a free loopback port,
without persistence (`--save '' --appendonly no`), in a temporary directory,
and waits (with a deadline) until it answers PING. It is stopped by its PID.

    server = RedisServer.start()
    url = server.new_database()    # redis://127.0.0.1:PORT/N, flushed
    server.stop(); server.start_again()   # Redis down, then back on the same port
    server.down(); server.up()           # the same; on a RedisCluster, every master

    cluster = RedisCluster.start()   # three masters, --cluster-enabled, slots spread
    url = cluster.new_database()       # redis+cluster://127.0.0.1:PORT, every master flushed

Fixtures: `redis_server` (one per session) and `redis_url` (a flushed database
per test; 16 databases are used in turn); `redis_cluster` (one per session)
and `redis_cluster_url` (the cluster, flushed, per test: a cluster has one
database); `shared_redis`: the server, then the cluster, for outage tests.
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
from urllib.parse import urlsplit

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
    def __init__(self, root: Path, port: int, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.port = port
        self.extra = extra  # more redis-server options (a cluster node's)
        self.log = root / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # every test gets a database of its own, never one a server of an earlier
        # test (a node still shutting down, a restarted worker) may yet write to
        self._databases = itertools.count()

    @classmethod
    def start(cls, extra: tuple[str, ...] = ()) -> RedisServer:
        server = cls(Path(tempfile.mkdtemp(prefix="regswitch-redis-")), _free_port(), extra)
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
                "--databases", str(DATABASES), *self.extra,
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

    def down(self) -> None:
        """Redis unreachable: stopped until `up` (the outage tests'; same as `stop`)."""
        self.stop()

    def up(self) -> None:
        """Back on the same port, empty (no persistence), if `down`."""
        if self.proc is None:
            self.start_again()

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


class RedisCluster:
    """A Redis Cluster of three masters (no replicas) on loopback, made with
    `redis-cli --cluster create`; each master is a RedisServer."""

    SIZE = 3

    def __init__(self, servers: list[RedisServer]) -> None:
        self.servers = servers

    @classmethod
    def start(cls) -> RedisCluster:
        servers: list[RedisServer] = []
        cluster = cls(servers)
        try:
            for _ in range(cls.SIZE):
                # the cluster bus on a free port of its own (not PORT + 10000)
                options = ("--cluster-enabled", "yes", "--cluster-port", str(_free_port()))
                servers.append(RedisServer.start(options))
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{s.port}" for s in servers),
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            cluster._wait_ok()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not all("cluster_state:ok" in s.command("CLUSTER", "INFO") for s in self.servers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster was not ok within {START_TIMEOUT} s")
            time.sleep(0.05)  # polling the cluster's state: there is no event to wait on

    def down(self) -> None:
        """Every master stopped (the whole cluster unreachable) until `up`."""
        for server in self.servers:
            server.stop()

    def up(self) -> None:
        """Every stopped master started again, empty, and the cluster ok again (each
        master keeps its nodes.conf: the same cluster, the same slots)."""
        for server in self.servers:
            server.up()
        self._wait_ok()

    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def new_database(self) -> str:
        """The cluster, every master flushed (a cluster has database 0 only)."""
        for server in self.servers:
            server.command("FLUSHALL")
        return self.url()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)


def _require_redis() -> None:
    """Skip without redis-server and redis-cli, or fail under CI=true."""
    from support import _missing

    if not Path(REDIS_SERVER).exists() or shutil.which("redis-cli") is None:
        _missing("redis-server", "Debian package redis-server; `make system`")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One real Redis Cluster for the session. Missing: skip, or fail under CI=true."""
    _require_redis()
    cluster = RedisCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The URL of the session's Redis Cluster, flushed."""
    return redis_cluster.new_database()


@pytest.fixture(params=["redis", "redis-cluster"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A flushed location on one Redis server, then on a Redis Cluster (the
    test runs once on each)."""
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(params=["redis", "redis-cluster"])
def shared_redis(request: pytest.FixtureRequest) -> Iterator[RedisServer | RedisCluster]:
    """One Redis server, then a Redis Cluster (the test runs once on each), for
    tests that stop it (`down`, `up`); `new_database` gives a flushed location."""
    _require_redis()
    name = "redis_server" if request.param == "redis" else "redis_cluster"
    redis: RedisServer | RedisCluster = request.getfixturevalue(name)
    yield redis
    redis.up()  # the session's: up for the next test even if this one failed


def cli(url: str, *args: str) -> str:
    """redis-cli against the server or cluster of a URL these fixtures made."""
    parts = urlsplit(url)
    where = ["-p", str(parts.port)]
    if parts.scheme == "redis+cluster":
        where.append("-c")  # follow the key's slot to its master
    else:
        where += ["-n", parts.path.lstrip("/") or "0"]
    proc = subprocess.run(
        ["redis-cli", *where, *args], capture_output=True, text=True, timeout=10, check=True
    )
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis for the session. Missing: skip, or fail under CI=true."""
    _require_redis()
    server = RedisServer.start()
    yield server
    server.stop()
    with contextlib.suppress(OSError):
        shutil.rmtree(server.root)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a flushed database on the session's Redis."""
    return redis_server.new_database()
