"""open_storage(url): which backend, and clear errors for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from regswitch.storage.factory import open_storage
from regswitch.storage.memory import MemoryStorage
from regswitch.storage.pg import PostgresStorage
from regswitch.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.timeout(10)


def test_memory_url() -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)


def test_sqlite_relative_and_absolute_paths() -> None:
    rel = open_storage("sqlite:///var/regswitch.db")
    assert isinstance(rel, SqliteStorage)
    assert rel.path == "var/regswitch.db"
    absolute = open_storage("sqlite:////var/lib/regswitch.db")
    assert isinstance(absolute, SqliteStorage)
    assert absolute.path == "/var/lib/regswitch.db"


def test_postgresql_urls() -> None:
    for url in (
        "postgresql://regswitch:secret@db.example.com:5433/regswitch",
        "postgres://regswitch:secret@db.example.com/regswitch",
        "postgresql://regswitch@/regswitch?host=/run/postgresql&port=5433",
    ):
        s = open_storage(url)
        assert isinstance(s, PostgresStorage)
        assert "secret" not in s.target.where  # messages never show the password
    assert open_storage("postgres://u:p@h/db").target.port == 5432  # type: ignore[attr-defined]


def test_sqlite_memory_url() -> None:
    s = open_storage("sqlite:///:memory:")
    assert isinstance(s, SqliteStorage) and s.in_memory


def test_sqlite_synchronous_option() -> None:
    s = open_storage("SQLITE:///x.db?synchronous=full")
    assert isinstance(s, SqliteStorage)
    assert s.path == "x.db"


async def test_tmp_path_url_opens(tmp_path: Path) -> None:
    db = tmp_path / "sub.db"
    async with open_storage(f"sqlite:///{db}") as s:
        await s.params.set("A", "1")
    assert db.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "no scheme"),
        ("regswitch.db", "no scheme"),
        ("/tmp/regswitch.db", "no scheme"),
        ("mysql://host/db", "unknown scheme 'mysql'"),
        ("postgresql://localhost", "names no database"),
        ("postgresql://u:p@localhost:notaport/db", "malformed"),
        ("postgres://u:p@/db", "names no host"),
        ("postgresql://u:p@h/db?port=x", "port must be a number"),
        ("redis://localhost:6379/0", "not available yet"),
        ("memory://something", "takes no path"),
        ("sqlite://host/regswitch.db", "no host"),
        ("sqlite:///", "path is empty"),
        ("sqlite:///x.db?synchronous=OFF", "NORMAL or FULL"),
        ("sqlite:///x.db?journal=wal", "unknown option 'journal'"),
        ("sqlite:///x.db?synchronous", "name=value"),
    ],
)
def test_bad_urls_raise_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_storage(url)
