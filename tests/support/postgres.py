"""A real PostgreSQL server for the tests (and benchmarks), never a mock.

`PgCluster.start()` runs Debian's `initdb` into a fresh temporary directory
as the unprivileged `postgres` user (PostgreSQL refuses to run as root),
then `pg_ctl start` on a free loopback port with its Unix socket in that
directory. Clients log in over TCP with a password (scram-sha-256), as an
operator's regswitch would; the harness itself uses the socket (trust).

    cluster = PgCluster.start()
    url = cluster.new_database()   # postgresql://postgres:...@127.0.0.1:PORT/t_1
    cluster.restart()              # pg_ctl restart -m fast
    cluster.stop()

The fixtures: `pg_cluster` (one per session, stopped at its end) and
`pg_url` (a fresh empty database per test).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "regswitch-test-pw"
SUPERUSER = "postgres"
START_TIMEOUT = 30


def find_bindir() -> Path | None:
    """Debian's /usr/lib/postgresql/<major>/bin (newest), else initdb on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.socket_dir = root
        self.log = root / "postgres.log"
        self.port = port
        self._names = itertools.count(1)
        self._as_user = self._runas()

    @staticmethod
    def _runas() -> list[str]:
        """PostgreSQL will not run as root: as root, run it as `postgres`."""
        if os.geteuid() != 0:
            return []
        return ["runuser", "-u", SUPERUSER, "--"]

    @classmethod
    def start(cls, bindir: Path | None = None) -> PgCluster:
        bindir = bindir or find_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL (initdb) not found; `make system` installs it")
        root = Path(tempfile.mkdtemp(prefix="regswitch-pg-"))
        cluster = cls(bindir, root, _free_port())
        try:
            cluster._init()
            cluster._ctl("start")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, *argv: str, timeout: float = START_TIMEOUT) -> None:
        proc = subprocess.run(
            [*self._as_user, *argv], capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"{self.log_tail()}"
            )

    def _init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_user:
            try:
                user = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, PostgreSQL needs the system user {SUPERUSER!r} "
                    "(the Debian package postgresql creates it; `make system`)"
                ) from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--pwfile", str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--locale=C",
            "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                # A test server on a shared machine: small, and no fsync (a
                # killed regswitch never loses what PostgreSQL committed; only
                # an OS crash would need it).
                "fsync = off\n"
                "full_page_writes = off\n"
                "shared_buffers = 32MB\n"
                "max_connections = 200\n"
            )

    def _ctl(self, action: str, *extra: str) -> None:
        self._run(
            str(self.bindir / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", str(START_TIMEOUT), *extra,
        )  # fmt: skip

    # -- for tests -----------------------------------------------------------

    def url(self, database: str, password: str = PASSWORD, host: str = "127.0.0.1") -> str:
        return f"postgresql://{SUPERUSER}:{password}@{host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        proc = subprocess.run(
            [
                str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER,
                "-d", database, "-c", sql,
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        name = f"t_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: sessions are cut, the server comes back."""
        self._ctl("restart", "-m", "fast")

    def pause(self) -> None:
        """Stop the server (fast) until `resume()`."""
        self._ctl("stop", "-m", "fast")

    def resume(self) -> None:
        self._ctl("start")

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One real PostgreSQL for the session. Missing: skip, or fail under CI=true."""
    from support import _missing

    if find_bindir() is None:
        _missing("PostgreSQL (initdb)", "Debian package postgresql; `make system`")
    cluster = PgCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return pg_cluster.new_database()
