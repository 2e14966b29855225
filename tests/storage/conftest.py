"""Fixtures for the storage tests: every contract test runs on each backend
(PostgreSQL: a real server started for the session, see support/postgres.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from storage_builders import Backend

from regswitch.storage.base import Storage
from regswitch.storage.memory import MemoryStorage
from regswitch.storage.pg import PostgresStorage
from regswitch.storage.sqlite import SqliteStorage


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `durable` test does not apply to a backend that forgets on close:
    it is not generated for it (deselected), rather than skipped."""
    keep, drop = [], []
    for item in items:
        spec = getattr(item, "callspec", None)
        forgets = spec is not None and spec.params.get("backend") in NOT_DURABLE
        (drop if forgets and item.get_closest_marker("durable") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


#: Backends whose data does not survive a close and reopen.
NOT_DURABLE = frozenset({"sqlite-memory"})


@pytest.fixture(params=["sqlite", "sqlite-memory", "memory", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")  # a real server, a fresh database
        return Backend("postgresql", True, lambda: PostgresStorage(url))
    if request.param == "sqlite":
        db = tmp_path / "regswitch.db"
        return Backend("sqlite", True, lambda: SqliteStorage(db))
    if request.param == "sqlite-memory":
        return Backend("sqlite-memory", False, lambda: SqliteStorage(":memory:"))
    mem = MemoryStorage()  # the data lives in the instance: "reopen" reuses it
    return Backend("memory", True, lambda: mem)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Storage]:
    s = backend.make()
    await s.open()
    yield s
    await s.close()
