"""PostgreSQL connections: the URL, the pool, and what an error means.

Errors fall in two kinds. "Unavailable" ones (refused or lost connection, the
server shutting down or starting, a timeout) say nothing about the data:
the backend marks itself down, answers `StorageUnavailableError` at once and
reconnects in the background. Every other error is about one statement and
fails only the job that ran it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg

from regswitch.storage.base import StorageError, StorageUnavailableError

#: Seconds to wait for a connection, and for any statement (a hung server
#: counts as down after this).
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
#: Connections: the binding writer, the event/CDR writer, and readers.
POOL_MIN = 2
POOL_MAX = 6


@dataclass(frozen=True, slots=True)
class PgTarget:
    """A checked `postgresql://USER:PASSWORD@HOST:PORT/DBNAME[?host=/socket/dir]` URL."""

    url: str
    user: str
    host: str
    port: int
    database: str

    @property
    def where(self) -> str:
        """The server and database, without the password (for messages)."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> PgTarget:
    """Check the URL's shape; raises ValueError naming what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"PostgreSQL URL is malformed: {exc}") from None
    if parts.scheme.lower() not in ("postgres", "postgresql"):
        raise ValueError(f"PostgreSQL URL must start with postgresql://, not {parts.scheme}://")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError(
            "PostgreSQL URL names no database: expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    host = parts.hostname or options.get("host", "")
    if not host:
        raise ValueError(
            "PostgreSQL URL names no host: expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    user = unquote(parts.username or "") or "postgres"
    if "port" in options:
        if not options["port"].isdigit():
            raise ValueError(f"PostgreSQL URL: port must be a number, not {options['port']!r}")
        port = int(options["port"])
    return PgTarget(url=url, user=user, host=host, port=port or 5432, database=database)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the server cannot be used right now (not a bad statement)."""
    return isinstance(
        exc,
        OSError
        | asyncio.TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError  # a connection cut in the middle of an operation
        | asyncpg.exceptions.OperatorInterventionError  # shutting down, starting up
        | asyncpg.exceptions.InsufficientResourcesError  # too many connections, disk full
        | StorageUnavailableError,
    )


def explain(exc: BaseException, target: PgTarget) -> str:
    """One line for an operator: what failed, where, and the server's words."""
    where = target.where
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"PostgreSQL {where}: login refused for user {target.user!r} ({exc})"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"PostgreSQL {where}: database {target.database!r} does not exist"
    if isinstance(exc, asyncio.TimeoutError):
        return f"cannot reach PostgreSQL at {target.host}:{target.port}: timed out"
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"cannot reach PostgreSQL at {target.host}:{target.port}: {reason}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"PostgreSQL {where}: {text}"


def wrap(exc: BaseException, target: PgTarget) -> StorageError:
    """The StorageError for `exc` (unavailable ones as StorageUnavailableError)."""
    if isinstance(exc, StorageError):
        return exc
    cls = StorageUnavailableError if is_unavailable(exc) else StorageError
    err = cls(explain(exc, target))
    err.__cause__ = exc
    return err


async def connect(target: PgTarget) -> asyncpg.Connection:
    """One connection outside the pool (migrations, `regswitch db`)."""
    conn: asyncpg.Connection = await asyncpg.connect(
        target.url, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT * 12
    )
    return conn


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


async def create_pool(target: PgTarget) -> asyncpg.Pool:
    pool: Any = await asyncpg.create_pool(
        target.url,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        # statements are few and fixed: prepared once per connection
        statement_cache_size=64,
        # no session state is ever set (no SET, LISTEN, session locks): skip
        # the reset round trip asyncpg makes on every release
        reset=_no_reset,
    )
    return pool
