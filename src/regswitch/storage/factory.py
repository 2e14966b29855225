"""Pick a storage backend from a URL (the server's `storage` setting).

    sqlite:///regswitch.db           relative path (to the working directory)
    sqlite:////var/lib/regswitch.db  absolute path (four slashes, as SQLAlchemy)
    sqlite:///:memory:               SQLite in memory (tests)
    sqlite:///x.db?synchronous=FULL  fsync every group commit (power-loss safe)
    memory://                        pure-Python in-memory backend (app tests)
    postgresql://USER:PASSWORD@HOST:PORT/DBNAME   PostgreSQL (also postgres://);
                                     a Unix socket: ...@/DBNAME?host=/run/postgresql

Backends are imported only when chosen, so the app's import graph holds
`storage.base` alone and an optional driver (asyncpg, redis) is needed only
when its URL is used.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from regswitch.storage.base import Storage

_SUPPORTED = (
    "sqlite:///<path>, sqlite:///:memory:, postgresql://USER:PASSWORD@HOST:PORT/DBNAME or memory://"
)


def check_url(url: str) -> str:
    """`url` if a backend can be built from it; ValueError naming the problem.
    Builds nothing and imports no driver (settings validation runs this)."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("postgres", "postgresql"):
        from regswitch.storage.pg_conn import parse_url

        parse_url(url)
        return url
    open_storage(url)
    return url


def open_storage(url: str) -> Storage:
    """Build (not yet open) the backend for `url`; `await storage.open()` next.

    Raises ValueError with the reason for an unsupported or malformed URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"storage URL {url!r} has no scheme; expected {_SUPPORTED}")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest:
            raise ValueError(f"storage URL {url!r}: memory:// takes no path or options")
        from regswitch.storage.memory import MemoryStorage

        return MemoryStorage()
    if scheme == "sqlite":
        return _sqlite(url, rest)
    if scheme in ("postgres", "postgresql"):
        from regswitch.storage.pg import PostgresStorage

        return PostgresStorage(url)
    if scheme == "redis":
        raise ValueError(f"storage URL {url!r}: the {scheme} backend is not available yet")
    raise ValueError(f"storage URL {url!r}: unknown scheme {scheme!r}; expected {_SUPPORTED}")


def _sqlite(url: str, rest: str) -> Storage:
    if not rest.startswith("/"):
        raise ValueError(
            f"storage URL {url!r}: SQLite URLs have no host; use sqlite:///relative.db "
            "or sqlite:////absolute/path.db"
        )
    path, _, query = rest[1:].partition("?")
    if not path:
        raise ValueError(f"storage URL {url!r}: the SQLite database path is empty")
    options = {"synchronous": "NORMAL"}
    if query and any("=" not in part for part in query.split("&")):
        raise ValueError(
            f"storage URL {url!r}: options are name=value pairs, e.g. synchronous=FULL"
        )
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "synchronous":
            raise ValueError(f"storage URL {url!r}: unknown option {key!r} (known: synchronous)")
        if value.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"storage URL {url!r}: synchronous must be NORMAL or FULL")
        options[key] = value.upper()
    from regswitch.storage.sqlite import SqliteStorage

    return SqliteStorage(path, synchronous=options["synchronous"])
