"""SQLite-only behaviour: migrations, WAL, group commit, write-behind, crash safety."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from storage_builders import make_account, make_binding, make_cdr, make_event

from regswitch.storage import sqlite as sqlite_module
from regswitch.storage.base import (
    BindingOp,
    CdrFilter,
    EventFilter,
    StorageClosedError,
    StorageError,
)
from regswitch.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.timeout(30)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "regswitch.db"


# --------------------------------------------------------------------------- schema


async def test_migrations_recorded_once_and_wal_enabled(db: Path) -> None:
    for _ in range(2):  # the second open must not re-apply 001
        async with SqliteStorage(db):
            pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version, name FROM schema_version").fetchall() == [
            (1, "initial"),
            (2, "binding_nat"),
            (3, "domains"),
            (4, "events_time"),
        ]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_version_1_database_is_migrated_and_keeps_its_bindings(db: Path) -> None:
    from regswitch.storage.sqlite_schema import migrations

    first = migrations()[0][2]
    with sqlite3.connect(db) as conn:  # a database written by the first release
        conn.executescript(first)
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)"
        )
        conn.execute("INSERT INTO schema_version VALUES (1, 'initial', 0)")
        conn.execute(
            "INSERT INTO bindings (id, aor, contact, transport, source_ip, source_port, "
            "local_ip, local_port, conn_id, call_id, cseq, expires_at, registered_at, "
            "refreshed_at) VALUES ('b1', 'a@d', 'sip:a@1.2.3.4', 'udp', '1.2.3.4', 5060, "
            "'127.0.0.1', 5060, 0, 'c', 1, 9e9, 1, 1)"
        )
    async with SqliteStorage(db) as s:
        (record,) = await s.bindings.load()
        assert record.id == "b1" and record.nat is True  # unknown before 002: assume NAT


async def test_newer_schema_refused(db: Path) -> None:
    async with SqliteStorage(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
    s = SqliteStorage(db)
    with pytest.raises(StorageError, match="newer than this regswitch"):
        await s.open()
    with pytest.raises(StorageClosedError):
        await s.params.load()


async def test_unopenable_path_raises_storage_error(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path / "missing-dir" / "x.db")
    with pytest.raises(StorageError, match="cannot open"):
        await s.open()


async def test_load_reads_in_pages_each_its_own_read(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LOAD_PAGE", 3)
    async with SqliteStorage(db) as s:
        await s.bindings.apply([BindingOp.upsert(make_binding(f"b{i}")) for i in range(7)])
        pages: list[int] = []
        read = s.bindings.read

        async def counted(fn: Callable[[sqlite3.Connection], object]) -> object:
            pages.append(1)
            return await read(fn)

        monkeypatch.setattr(s.bindings, "read", counted)
        assert sorted(b.id for b in await s.bindings.load()) == sorted(f"b{i}" for i in range(7))
        assert len(pages) == 4  # 3 + 3 + 1, then an empty page


# --------------------------------------------------------------------------- group commit


async def test_many_concurrent_applies_are_group_committed(db: Path) -> None:
    n = 2000
    async with SqliteStorage(db) as s:
        await asyncio.gather(
            *(s.bindings.apply([BindingOp.upsert(make_binding(f"b{i}"))]) for i in range(n))
        )
        stats = s.stats
        assert {b.id for b in await s.bindings.load()} == {f"b{i}" for i in range(n)}
    # Batching happened: far fewer commits than calls (each call waited for its batch).
    assert stats["ops_committed"] >= n
    assert stats["commits"] < n / 2
    assert stats["max_batch_ops"] > 1


async def test_group_commit_is_adaptive(db: Path) -> None:
    """A write to an idle writer is handed over in the same loop turn's end, not
    after a lingering delay; writes that come while a batch of ours is being
    committed wait for it and then go together as the next batch."""
    async with SqliteStorage(db) as s:
        before = s.stats["commits"]
        first = s.bindings.submit([BindingOp.upsert(make_binding("first"))])
        await asyncio.sleep(0)  # one loop turn: handed over, nothing scheduled for later
        assert s.bindings._handoff is None and s.bindings._in_flight
        later = [s.bindings.submit([BindingOp.upsert(make_binding(f"l{i}"))]) for i in range(5)]
        assert s.bindings._handoff is None  # held back while the first batch commits
        await first
        await asyncio.gather(*later)
        stats = s.stats
        assert stats["commits"] - before == 2  # the first alone, then the five together
        assert stats["last_batch_ops"] == 5 and not s.bindings._in_flight


async def test_concurrent_ops_on_one_binding_keep_call_order(db: Path) -> None:
    async with SqliteStorage(db) as s:
        ops: list[BindingOp] = []
        for i in range(300):
            ops.append(BindingOp.upsert(make_binding(f"k{i % 7}", cseq=i)))
            if i % 5 == 0:
                ops.append(BindingOp.delete(f"k{i % 7}"))
        await asyncio.gather(*(s.bindings.apply([op]) for op in ops))

        expected: dict[str, int] = {}
        for op in ops:
            if op.kind == "upsert":
                assert op.record is not None
                expected[op.binding_id] = op.record.cseq
            else:
                expected.pop(op.binding_id, None)
        assert {b.id: b.cseq for b in await s.bindings.load()} == expected


async def test_a_bad_job_fails_alone(db: Path) -> None:
    async with SqliteStorage(db) as s:
        bad = make_binding("bad", path=(object(),))  # not JSON-serialisable
        good = [s.bindings.apply([BindingOp.upsert(make_binding(f"g{i}"))]) for i in range(50)]
        results = await asyncio.gather(
            *good[:25], s.bindings.apply([BindingOp.upsert(bad)]), *good[25:],
            return_exceptions=True,
        )  # fmt: skip
        assert isinstance(results[25], TypeError)
        assert [r for i, r in enumerate(results) if i != 25] == [None] * 50
        assert {b.id for b in await s.bindings.load()} == {f"g{i}" for i in range(50)}
        assert s.stats["write_errors"] == 1


async def test_apply_is_visible_to_reads_once_it_returns(db: Path) -> None:
    async with SqliteStorage(db) as s:
        for i in range(20):
            await s.bindings.apply([BindingOp.upsert(make_binding("b", cseq=i))])
            [b] = await s.bindings.load()
            assert b.cseq == i


async def test_cancelled_apply_is_still_committed(db: Path) -> None:
    async with SqliteStorage(db) as s:
        task = asyncio.create_task(s.bindings.apply([BindingOp.upsert(make_binding("c"))]))
        await asyncio.sleep(0)  # let it queue the job
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with SqliteStorage(db) as s:
        assert [b.id for b in await s.bindings.load()] == ["c"]


# --------------------------------------------------------------------------- write-behind


async def test_close_flushes_write_behind(db: Path) -> None:
    async with SqliteStorage(db) as s:
        added = [s.events.add(make_event(details={"i": i})) for i in range(12_000)]
        for i in range(700):
            s.cdrs.add(make_cdr(f"c{i}", start=float(i)))
        # No flush(): close() must write all of it (more than one write-behind batch).
    async with SqliteStorage(db) as s:
        got = await s.events.query(EventFilter(limit=20_000))
        assert [e.id for e in got] == [e.id for e in reversed(added)]
        cdrs = await s.cdrs.query(CdrFilter(limit=1000))
        assert len(cdrs) == 700 and cdrs[0].id == "c699"


async def test_write_behind_drops_when_full_and_counts(db: Path) -> None:
    s = SqliteStorage(db, max_pending=10, busy_timeout=20.0)
    await s.open()
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer now waits for the lock
        first = s.events.add(make_event())
        await wait_until(lambda: s.stats["write_behind_depth"] == 0)  # writer holds it
        for _ in range(10):
            s.events.add(make_event())
        assert s.stats["write_behind_depth"] == 10
        t0 = time.perf_counter()
        dropped = [s.events.add(make_event("dropped")) for _ in range(3)]
        s.cdrs.add(make_cdr())
        assert time.perf_counter() - t0 < 0.1  # never blocks the caller
        assert s.stats["events_dropped"] == 3 and s.stats["cdrs_dropped"] == 1
        assert dropped[0].id > first.id  # still numbered for the live stream
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await s.events.flush()
    assert len(await s.events.query(EventFilter(limit=100))) == 11
    assert await s.events.query(EventFilter(type="dropped")) == []
    await s.close()


async def test_event_backlog_does_not_delay_binding_commits(db: Path) -> None:
    async with SqliteStorage(db, max_pending=200_000, busy_timeout=20.0) as s:
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # hold the writer while the backlog builds
            s.events.add(make_event())
            await wait_until(lambda: s.stats["write_behind_depth"] == 0)
            for _ in range(60_000):
                s.events.add(make_event())
            apply = asyncio.create_task(s.bindings.apply([BindingOp.upsert(make_binding("b"))]))
            await asyncio.sleep(0)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # The binding rides in the next transaction with one write-behind slice,
        # not after the whole backlog.
        await apply
        assert s.stats["write_behind_depth"] > 30_000
        await s.events.flush()
        assert s.stats["write_behind_depth"] == 0


# --------------------------------------------------------------------------- crash


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from storage_builders import make_binding
    from regswitch.storage.base import BindingOp
    from regswitch.storage.sqlite import SqliteStorage

    async def main() -> None:
        s = SqliteStorage(sys.argv[1])
        await s.open()
        async def one(i: int) -> None:
            await s.bindings.apply([BindingOp.upsert(make_binding(f"b{i}"))])
            print(i, flush=True)  # only after the commit was acknowledged
        i = 0
        while True:
            await asyncio.gather(*(one(i + k) for k in range(20)))
            i += 20

    asyncio.run(main())
    """
)


def test_killed_process_loses_no_acknowledged_binding(db: Path) -> None:
    here = str(Path(__file__).parent)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), here],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: set[str] = set()
    try:
        assert child.stdout is not None
        while len(acked) < 500:
            line = child.stdout.readline()
            assert line, f"child exited early: {child.stderr.read() if child.stderr else ''}"
            acked.add(f"b{int(line)}")
        os.kill(child.pid, signal.SIGKILL)  # no close(), no atexit: a crash
        out, _ = child.communicate(timeout=10)
        acked.update(f"b{int(x)}" for x in out.split())
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM bindings")}
    assert acked <= stored, f"lost {len(acked - stored)} acknowledged bindings"


async def test_restart_after_crash_loads_bindings_and_continues_event_ids(db: Path) -> None:
    s = SqliteStorage(db)
    await s.open()
    await s.bindings.apply([BindingOp.upsert(make_binding("b1"))])
    ev = s.events.add(make_event())
    await s.events.flush()
    # Simulate a crash: abandon the instance without close(); a new one opens the file.
    async with SqliteStorage(db) as s2:
        assert [b.id for b in await s2.bindings.load()] == ["b1"]
        assert s2.events.add(make_event()).id > ev.id
    await s.close()


async def test_a_dead_writer_fails_waiters_instead_of_hanging(db: Path) -> None:
    class Boom(BaseException):
        """Escapes the per-batch `except Exception`: simulates a writer bug."""

    def explode(conn: sqlite3.Connection) -> None:
        raise Boom

    s = SqliteStorage(db)
    await s.open()
    with pytest.raises(StorageError, match="writer failed"):
        await s.params.write(explode)
    with pytest.raises(StorageError):
        await s.bindings.apply([BindingOp.upsert(make_binding())])
    s.events.add(make_event())  # dropped, never raises
    assert s.stats["events_dropped"] == 1
    await s.close()  # returns: nothing left to flush


async def test_locked_database_fails_apply_instead_of_acknowledging(db: Path) -> None:
    async with SqliteStorage(db, busy_timeout=0.05) as s:
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StorageError, match="locked"):
                await s.bindings.apply([BindingOp.upsert(make_binding("b1"))])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await s.bindings.apply([BindingOp.upsert(make_binding("b2"))])  # recovered
        assert [b.id for b in await s.bindings.load()] == ["b2"]
        assert s.stats["write_errors"] >= 1


# --------------------------------------------------------------------------- file mode


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_a_new_database_and_its_wal_files_are_owner_only(db: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which left the file 0644 before
    try:
        async with SqliteStorage(db) as storage:
            await storage.accounts.put(make_account())
            side = [Path(f"{db}-wal"), Path(f"{db}-shm")]
            assert all(p.exists() for p in side)
            assert [_mode(p) for p in (db, *side)] == [0o600, 0o600, 0o600]
    finally:
        os.umask(old)


async def test_an_existing_world_readable_database_is_made_private(db: Path) -> None:
    async with SqliteStorage(db):
        pass
    db.chmod(0o644)
    Path(f"{db}-wal").write_bytes(b"")
    Path(f"{db}-wal").chmod(0o644)
    async with SqliteStorage(db):
        assert _mode(db) == 0o600
        assert _mode(Path(f"{db}-wal")) == 0o600
