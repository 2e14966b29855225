"""SQLite backend: one writer thread with group commit, one reader thread.

Why this shape:

- sqlite3 calls block, so none runs on the event loop. Every write goes to
  one dedicated writer thread (one connection: SQLite allows one writer at a
  time anyway). The writer takes *everything* queued, runs it in one
  transaction and commits once (group commit), then wakes the waiting
  coroutines with a single `call_soon_threadsafe` per batch. Under load the
  cost of a commit is shared by every REGISTER that arrived meanwhile.
- Write-through jobs (bindings, accounts, params) and write-behind rows
  (events, CDRs) sit in two queues: the writer empties the first in every
  transaction but takes at most `_BEHIND_PER_TX` rows of the second, so a
  backlog of events never delays a REGISTER's commit by much.
- WAL + synchronous=NORMAL: a commit is in the WAL (OS page cache) when it
  returns, so a killed *process* loses nothing that was acknowledged; only
  a power loss/OS crash may lose the last commits (use `synchronous="FULL"`
  to pay one fsync per group commit instead).
- Reads run on a separate reader thread and connection (WAL lets it read
  while the writer writes). An in-memory database cannot be shared by two
  connections, so for ":memory:" reads go through the writer thread.
- If one job of a batch fails, the batch is rolled back and each job is
  retried in its own transaction, so a bad job fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar

from regswitch.storage.base import (
    Account,
    BindingOp,
    BindingRecord,
    CdrFilter,
    CdrRecord,
    Domain,
    EventFilter,
    EventRecord,
    NewEvent,
    StorageClosedError,
    StorageError,
    normalise_aor,
)
from regswitch.storage.shared_sql import (
    EventNumbering,
    cdr_from_row,
    cdr_query,
    event_query,
    events_from_rows,
    top_accounts_query,
)
from regswitch.storage.sqlite_schema import (
    ACCOUNT_COLS,
    ACCOUNT_UPSERT,
    BINDING_COLS,
    account_from_row,
    account_row,
    binding_from_row,
)
from regswitch.storage.sqlite_writer import Job, Writer, wrap_error

log = logging.getLogger(__name__)

T = TypeVar("T")
_Fn = Callable[[sqlite3.Connection], Any]

# How long events and CDRs wait on the loop to be handed to the writer together.
BEHIND_LINGER = 0.05
#: The writer's page cache (KiB) and WAL size (pages) between checkpoints.
WRITER_CACHE_KIB = 65536
#: The reader's page cache (KiB): an account's history is thousands of rows
#: scattered over the events table; with SQLite's default 2 MiB nearly each one
#: is a page miss (10,000 rows of 10 million events: 40 ms to fetch, 27 with it).
READER_CACHE_KIB = 65536
WAL_CHECKPOINT_PAGES = 10000


# --------------------------------------------------------------------------- stores


class _Backend:
    """What the stores share: state checks, submitting writes, running reads."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    def check(self) -> Writer:
        return self._s._check_open()

    async def write(self, fn: _Fn) -> Any:
        writer = self.check()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        writer.submit(Job(fut, fn=fn))
        return await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._s._read(fn)


class SqliteAccountStore(_Backend):
    async def list_all(self) -> list[Account]:
        sql = f"SELECT {ACCOUNT_COLS} FROM accounts ORDER BY aor"
        # Rows become records on the reader thread, not on the event loop.
        return await self.read(lambda c: [account_from_row(r) for r in c.execute(sql)])

    async def get(self, aor: str) -> Account | None:
        key = normalise_aor(aor)
        row = await self.read(
            lambda c: c.execute(
                f"SELECT {ACCOUNT_COLS} FROM accounts WHERE aor = ?", (key,)
            ).fetchone()
        )
        return account_from_row(row) if row is not None else None

    async def put(self, account: Account) -> None:
        row = account_row(account)
        await self.write(lambda c: c.execute(ACCOUNT_UPSERT, row))

    async def put_many(self, accounts: Sequence[Account]) -> None:
        rows = [account_row(a) for a in accounts]
        if rows:
            await self.write(lambda c: c.executemany(ACCOUNT_UPSERT, rows))

    async def delete(self, aor: str) -> bool:
        key = normalise_aor(aor)
        deleted: bool = await self.write(
            lambda c: c.execute("DELETE FROM accounts WHERE aor = ?", (key,)).rowcount > 0
        )
        return deleted


class SqliteDomainStore(_Backend):
    async def list_all(self) -> list[Domain]:
        rows = await self.read(
            lambda c: c.execute("SELECT name, created_at FROM domains ORDER BY name").fetchall()
        )
        return [Domain(name=name, created_at=created) for name, created in rows]

    async def put(self, domain: Domain) -> None:
        row = (domain.name, domain.created_at)
        sql = "INSERT OR REPLACE INTO domains (name, created_at) VALUES (?, ?)"
        await self.write(lambda c: c.execute(sql, row))

    async def delete(self, name: str) -> bool:
        key = name.lower()
        deleted: bool = await self.write(
            lambda c: c.execute("DELETE FROM domains WHERE name = ?", (key,)).rowcount > 0
        )
        return deleted


class SqliteParamStore(_Backend):
    async def load(self) -> dict[str, str]:
        rows = await self.read(lambda c: c.execute("SELECT name, value FROM params").fetchall())
        return dict(rows)

    async def set(self, name: str, value: str) -> None:
        row = (name, value, time.time())
        await self.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO params (name, value, updated_at) VALUES (?, ?, ?)", row
            )
        )


#: bindings read per page by `load` (a restart's bulk read)
LOAD_PAGE = 20_000


class SqliteBindingStore(_Backend):
    """Adaptive group commit of binding writes. A REGISTER is answered after its
    commit, so no write waits for company: when no batch of ours is being
    committed, what this loop turn queued goes to the writer at the end of the
    turn. While one is, later writes gather on the loop and go together the
    moment it commits: one batch in flight, the next one growing with the load.
    (Waking the writer thread once per REGISTER would make it fight the loop
    for the GIL and commit one row at a time.)"""

    def __init__(self, storage: SqliteStorage) -> None:
        super().__init__(storage)
        self._queued: list[Job] = []
        self._handoff: asyncio.Handle | None = None
        self._in_flight = False  # a batch handed over and not yet settled

    async def load(self) -> list[BindingRecord]:
        # In pages, each its own read: a restart restoring a million lets one
        # account's read (load_account, a REGISTER meanwhile) in between. Rows
        # changed between pages are those of accounts the restore skips.
        sql = f"SELECT {BINDING_COLS} FROM bindings WHERE id > ? ORDER BY id LIMIT {LOAD_PAGE}"

        def page(c: sqlite3.Connection, *, after: str) -> tuple[str, list[BindingRecord]]:
            records = [binding_from_row(r) for r in c.execute(sql, (after,))]
            if not records:
                # the end: the pages of a bulk read are no use to the reader's
                # later queries (an account's history), so their cache is given back
                c.execute("PRAGMA shrink_memory")
            return (records[-1].id if records else after), records

        records: list[BindingRecord] = []
        after = ""
        while True:
            after, more = await self.read(partial(page, after=after))
            if not more:
                return records
            records += more

    async def load_account(self, aor: str) -> list[BindingRecord]:
        sql = f"SELECT {BINDING_COLS} FROM bindings WHERE aor = ?"
        return await self.read(lambda c: [binding_from_row(r) for r in c.execute(sql, (aor,))])

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        if ops:
            await self.submit(ops)

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        loop = self._s.running_loop()
        if loop is None:
            raise RuntimeError("SqliteBindingStore.submit needs a running event loop")
        fut: asyncio.Future[None] = loop.create_future()
        if not ops:
            fut.set_result(None)
            return fut
        self.check()
        self._queued.append(Job(fut, ops=tuple(ops)))
        if self._handoff is None and not self._in_flight:
            self._handoff = loop.call_soon(self.hand_off)
        return fut

    def hand_off(self) -> None:
        """Pass what is queued to the writer as one batch (each job keeps its
        own future, so a failing job still fails alone)."""
        self._handoff = None
        jobs, self._queued = self._queued, []
        if not jobs:
            return
        try:
            self.check().submit_many(jobs)
        except StorageError as exc:
            for job in jobs:
                if not job.fut.done():  # type: ignore[union-attr]
                    job.fut.set_exception(exc)  # type: ignore[union-attr]
            return
        # the writer settles a batch's futures together, the last one with the rest
        self._in_flight = True
        jobs[-1].fut.add_done_callback(self._settled)  # type: ignore[union-attr]

    def _settled(self, _: object) -> None:
        self._in_flight = False
        if self._queued:
            self.hand_off()


class SqliteEventStore(_Backend, EventNumbering):
    def __init__(self, storage: SqliteStorage) -> None:
        _Backend.__init__(self, storage)
        EventNumbering.__init__(self)

    def add(self, event: NewEvent) -> EventRecord:
        return self.number(event, self._s._queue_behind)

    async def query(self, flt: EventFilter) -> list[EventRecord]:
        sql, args = event_query(flt)
        return await self.read(lambda c: events_from_rows(c.execute(sql, args).fetchall()))

    async def top_accounts(self, type: str, since: float, limit: int) -> list[tuple[str, int]]:
        sql, args = top_accounts_query(type, since, limit)
        return await self.read(lambda c: [(r[0], r[1]) for r in c.execute(sql, args)])

    async def flush(self) -> None:
        await self._s._flush_behind()

    async def prune(self, before: float, limit: int) -> int:
        # ids increase with time, so the oldest rows are found from the start
        # of the primary key without an index on time
        sql = (
            "DELETE FROM events WHERE id IN "
            "(SELECT id FROM events WHERE time < ? ORDER BY id LIMIT ?)"
        )
        deleted: int = await self.write(lambda c: c.execute(sql, (before, limit)).rowcount)
        return deleted


class SqliteCdrStore(_Backend):
    def __init__(self, storage: SqliteStorage) -> None:
        super().__init__(storage)
        self.dropped = 0

    def add(self, cdr: CdrRecord) -> None:
        if not self._s._queue_behind(cdr):
            self.dropped += 1

    async def query(self, flt: CdrFilter) -> list[CdrRecord]:
        sql, args = cdr_query(flt, "rowid")
        return await self.read(lambda c: [cdr_from_row(r) for r in c.execute(sql, args)])

    async def flush(self) -> None:
        await self._s._flush_behind()

    async def prune(self, before: float, limit: int) -> int:
        sql = (
            "DELETE FROM cdrs WHERE rowid IN "
            "(SELECT rowid FROM cdrs WHERE start_time < ? ORDER BY start_time LIMIT ?)"
        )
        deleted: int = await self.write(lambda c: c.execute(sql, (before, limit)).rowcount)
        return deleted


# --------------------------------------------------------------------------- storage


class SqliteStorage:
    """`Storage` in one SQLite file (or ":memory:").

    `synchronous` is "NORMAL" (default: durable against process crashes) or
    "FULL" (also against power loss, one fsync per group commit).
    `max_pending` bounds the write-behind queue (events + CDRs).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        max_pending: int = 50_000,
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = str(path)
        self.in_memory = self.path == ":memory:"
        self._synchronous = synchronous.upper()
        self._max_pending = max_pending
        self._busy_ms = int(busy_timeout * 1000)
        self._writer: Writer | None = None
        # the loop open() ran on, and its thread (see running_loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._state = "closed"  # closed -> open -> closing -> closed
        self._reader: ThreadPoolExecutor | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self.accounts = SqliteAccountStore(self)
        self.params = SqliteParamStore(self)
        self.domains = SqliteDomainStore(self)
        self.bindings = SqliteBindingStore(self)
        self.events = SqliteEventStore(self)
        self.cdrs = SqliteCdrStore(self)
        self._behind_buf: list[object] = []
        self._behind_handle: asyncio.TimerHandle | None = None

    @property
    def problem(self) -> str | None:
        w = self._writer
        if self._state == "open" and w is not None and w.broken is not None:
            return f"SQLite writer failed: {w.broken!r}"
        return None

    @property
    def stats(self) -> Mapping[str, float]:
        w = self._writer
        commits = w.commits if w else 0
        ops = w.ops_committed if w else 0
        return {
            "write_behind_depth": (w.behind_depth if w else 0) + len(self._behind_buf),
            "write_through_depth": w.through_depth if w else 0,
            "write_behind_capacity": self._max_pending,
            "events_dropped": self.events.dropped,
            "cdrs_dropped": self.cdrs.dropped,
            "commits": commits,
            "ops_committed": ops,
            "ops_per_commit": ops / commits if commits else 0.0,
            "last_batch_ops": w.last_batch if w else 0,
            "max_batch_ops": w.max_batch if w else 0,
            "write_errors": w.write_errors if w else 0,
            "commit_seconds_total": w.commit_seconds if w else 0.0,
        }

    # -- lifecycle

    async def open(self) -> None:
        if self._state != "closed":
            return
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        opened: asyncio.Future[None] = loop.create_future()

        def report(exc: BaseException | None) -> None:
            def done() -> None:
                if opened.done():
                    return
                if exc is None:
                    opened.set_result(None)
                else:
                    opened.set_exception(_open_error(self.path, exc))

            loop.call_soon_threadsafe(done)

        writer = Writer(self._connect_writer, self._max_pending)
        writer.start(report)
        await opened
        self._writer = writer
        if not self.in_memory:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="regswitch-sqlite-reader")
        self._state = "open"
        try:
            (last,) = await self._read(
                lambda c: c.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            )
            self.events.start_ids_after(last)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Write everything queued, then stop the threads. Idempotent."""
        if self._state != "open":
            return
        self.bindings.hand_off()  # what this loop turn queued goes first
        self._hand_off_behind()
        self._state = "closing"
        writer = self._writer
        assert writer is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        # The marker is settled after everything queued before it committed.
        with contextlib.suppress(StorageError):  # the writer died: nothing more to write
            writer.submit_behind(Job(done), force=True)
            await done
        writer.stop()
        await asyncio.to_thread(writer.join, 10.0)
        if self._reader is not None:
            reader = self._reader
            await loop.run_in_executor(reader, self._close_reader_conn)
            reader.shutdown(wait=False)
            self._reader = None
        self._writer = None
        self._state = "closed"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals used by the stores

    def _check_open(self) -> Writer:
        writer = self._writer
        if self._state != "open" or writer is None:
            raise StorageClosedError(f"SQLite storage {self.path} is not open")
        if writer.broken is not None:
            raise StorageError(f"SQLite writer failed: {writer.broken!r}")
        return writer

    def _writer_if_open(self) -> Writer | None:
        return self._writer if self._state == "open" else None

    def running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop, None off any loop. The one storage was opened on
        is recognised without asyncio.get_running_loop(), which makes a
        getpid() system call: this runs twice per REGISTER."""
        loop = self._loop
        if loop is not None and threading.get_ident() == self._loop_thread and loop.is_running():
            return loop
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _queue_behind(self, item: EventRecord | CdrRecord) -> bool:
        """Buffer a write-behind row on the loop for up to BEHIND_LINGER s, so
        the writer thread wakes once per batch rather than once per event (a
        wake-up per event makes it fight the loop for the GIL and commit rows
        one by one). False when it cannot be queued (closed or full)."""
        writer = self._writer_if_open()
        if writer is None or writer.dead:
            return False
        loop = self.running_loop()
        if loop is None:  # not on a loop: hand it over at once
            return writer.submit_behind(item)
        if len(self._behind_buf) + writer.behind_depth >= writer.max_pending:
            return False
        self._behind_buf.append(item)
        if self._behind_handle is None:
            self._behind_handle = loop.call_later(BEHIND_LINGER, self._hand_off_behind)
        return True

    def _hand_off_behind(self) -> None:
        if self._behind_handle is not None:
            self._behind_handle.cancel()
            self._behind_handle = None
        items, self._behind_buf = self._behind_buf, []
        writer = self._writer
        if items and writer is not None:
            lost = items[len(items) - writer.submit_behind_many(items) :]
            self.events.dropped += sum(1 for x in lost if isinstance(x, EventRecord))
            self.cdrs.dropped += sum(1 for x in lost if isinstance(x, CdrRecord))

    async def _flush_behind(self) -> None:
        self._hand_off_behind()
        writer = self._check_open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        writer.submit_behind(Job(fut), force=True)
        await fut

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._check_open()
        loop = asyncio.get_running_loop()
        if self._reader is None:
            # ":memory:": the writer's connection is the only view of the data.
            fut: asyncio.Future[T] = loop.create_future()
            writer.submit(Job(fut, fn=fn))
            return await fut

        def run() -> T:
            if self._reader_conn is None:
                self._reader_conn = self._connect_reader()
            try:
                return fn(self._reader_conn)
            except sqlite3.Error as exc:
                raise wrap_error(exc) from exc

        return await loop.run_in_executor(self._reader, run)

    def _connect_writer(self) -> sqlite3.Connection:
        if not self.in_memory:
            make_private(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if not self.in_memory:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"cannot switch {self.path} to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        # Each group commit dirties a few random binding and index pages: keep
        # them cached, and checkpoint the WAL in bigger, rarer steps (about a
        # third of the writer's CPU under a registration storm).
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        return conn

    def _close_reader_conn(self) -> None:
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None


PRIVATE_MODE = 0o600
# SQLite creates these next to the database with the database file's mode.
_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private(path: str) -> None:
    """Create the database file owner-only, and take group/other access away
    from an existing one (and its WAL files): it holds HA1 hashes, which are
    as good as passwords to anyone who can read them."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, PRIVATE_MODE)  # umask can only narrow it
    except OSError as exc:
        raise StorageError(f"cannot open SQLite database {path}: {exc.strerror}") from exc
    os.close(fd)
    for name in (path, *(path + side for side in _SIDE_FILES)):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(name, mode & 0o700)
            log.warning("%s was readable by others (mode %o); now %o", name, mode, mode & 0o700)


def _open_error(path: str, exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.Error):
        err = StorageError(f"cannot open SQLite database {path}: {exc}")
        err.__cause__ = exc
        return err
    return exc
