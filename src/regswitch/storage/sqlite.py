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
import itertools
import json
import logging
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, Self, TypeVar

from regswitch.storage.base import (
    Account,
    BindingOp,
    BindingRecord,
    CdrFilter,
    CdrRecord,
    EventFilter,
    EventRecord,
    NewEvent,
    StorageClosedError,
    StorageError,
    normalise_aor,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_Fn = Callable[[sqlite3.Connection], Any]

#: Write-behind rows per transaction (bounds the commit latency they add).
_BEHIND_PER_TX = 5000
_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

# --------------------------------------------------------------------------- rows

_BINDING_COLS = (
    "id, aor, contact, transport, source_ip, source_port, local_ip, local_port, conn_id, "
    "call_id, cseq, expires_at, instance, reg_id, user_agent, path, registered_at, "
    "refreshed_at, reachable, node, nat"
)
_BINDING_UPSERT = (
    f"INSERT INTO bindings ({_BINDING_COLS}) VALUES ({', '.join('?' * 21)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _BINDING_COLS.split(",")[1:])
)
# How long events and CDRs wait on the loop to be handed to the writer together.
BEHIND_LINGER = 0.05
# How long binding writes wait on the loop to be handed over together (a
# REGISTER is answered after its commit, so this is added to its latency).
BINDING_LINGER = 0.002
_BINDING_DELETE = "DELETE FROM bindings WHERE id = ?"

_ACCOUNT_COLS = (
    "aor, username, domain, ha1_md5, ha1_sha256, allowed_networks, max_contacts, "
    "register_replace, replace_keep_calls, enabled, created_at, updated_at"
)
_ACCOUNT_UPSERT = (
    f"INSERT OR REPLACE INTO accounts ({_ACCOUNT_COLS}) VALUES ({', '.join('?' * 12)})"
)

_EVENT_INSERT = (
    "INSERT OR REPLACE INTO events (id, time, type, account, source, details) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

_CDR_COLS = (
    "id, caller, callee, caller_contact, callee_contact, caller_source, callee_source, "
    "a_call_id, b_call_id, start_time, answer_time, end_time, billable_seconds, final_code, "
    "end_reason, end_direction"
)
_CDR_INSERT = f"INSERT OR REPLACE INTO cdrs ({_CDR_COLS}) VALUES ({', '.join('?' * 16)})"


def _binding_row(r: BindingRecord) -> tuple[Any, ...]:
    return (
        r.id, r.aor, r.contact, r.transport, r.source_ip, r.source_port, r.local_ip,
        r.local_port, r.conn_id, r.call_id, r.cseq, r.expires_at, r.instance, r.reg_id,
        r.user_agent, json.dumps(list(r.path)) if r.path else "[]", r.registered_at,
        r.refreshed_at, 1 if r.reachable else 0, r.node, 1 if r.nat else 0,
    )  # fmt: skip


def _binding_from_row(row: Sequence[Any]) -> BindingRecord:
    return BindingRecord(
        id=row[0], aor=row[1], contact=row[2], transport=row[3], source_ip=row[4],
        source_port=row[5], local_ip=row[6], local_port=row[7], conn_id=row[8],
        call_id=row[9], cseq=row[10], expires_at=row[11], instance=row[12], reg_id=row[13],
        user_agent=row[14], path=tuple(json.loads(row[15])) if row[15] != "[]" else (),
        registered_at=row[16], refreshed_at=row[17], reachable=bool(row[18]), node=row[19],
        nat=bool(row[20]),
    )  # fmt: skip


def _account_row(a: Account) -> tuple[Any, ...]:
    return (
        a.aor, a.user, a.domain, a.ha1_md5, a.ha1_sha256, json.dumps(list(a.allowed_networks)),
        a.max_contacts, a.register_replace, a.replace_keep_calls, 1 if a.enabled else 0,
        a.created_at, a.updated_at,
    )  # fmt: skip


def _account_from_row(row: Sequence[Any]) -> Account:
    return Account(
        user=row[1], domain=row[2], ha1_md5=row[3], ha1_sha256=row[4],
        allowed_networks=tuple(json.loads(row[5])), max_contacts=row[6],
        register_replace=row[7], replace_keep_calls=row[8], enabled=bool(row[9]),
        created_at=row[10], updated_at=row[11],
    )  # fmt: skip


# One encoder for every event row: json.dumps with options builds a new one per call.
_encode_details = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _event_row(e: EventRecord) -> tuple[Any, ...]:
    details = _encode_details(e.details) if e.details else "{}"
    return (e.id, e.time, e.type, e.account, e.source, details)


def _event_from_row(row: Sequence[Any]) -> EventRecord:
    return EventRecord(
        id=row[0], time=row[1], type=row[2], account=row[3], source=row[4],
        details=json.loads(row[5]),
    )  # fmt: skip


def _cdr_row(c: CdrRecord) -> tuple[Any, ...]:
    return (
        c.id, c.caller, c.callee, c.caller_contact, c.callee_contact, c.caller_source,
        c.callee_source, c.a_call_id, c.b_call_id, c.start, c.answer, c.end,
        c.billable_seconds, c.final_code, c.end_reason, c.end_direction,
    )  # fmt: skip


def _cdr_from_row(row: Sequence[Any]) -> CdrRecord:
    return CdrRecord(
        id=row[0], caller=row[1], callee=row[2], caller_contact=row[3], callee_contact=row[4],
        caller_source=row[5], callee_source=row[6], a_call_id=row[7], b_call_id=row[8],
        start=row[9], answer=row[10], end=row[11], billable_seconds=row[12],
        final_code=row[13], end_reason=row[14], end_direction=row[15],
    )  # fmt: skip


# --------------------------------------------------------------------------- migrations


def _migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    folder = resources.files("regswitch.storage").joinpath("schema", "sqlite")
    found = []
    for entry in folder.iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StorageError(f"SQLite migrations must be numbered 001, 002, ...: {versions}")
    return found


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (executescript would commit midway)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf
            buf = ""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one transaction per migration; return the version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    migrations = _migrations()
    latest = migrations[-1][0] if migrations else 0
    for version, name, sql in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated.
            (current,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            ).fetchone()
            if current > latest:
                raise StorageError(
                    f"database schema version {current} is newer than this regswitch "
                    f"supports ({latest}); upgrade regswitch"
                )
            if version > current:
                for stmt in _statements(sql):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return latest


# --------------------------------------------------------------------------- writer


class _Job:
    """A write-through unit: binding ops or a function, plus the future to settle."""

    __slots__ = ("error", "fn", "fut", "ops", "result")

    def __init__(
        self,
        fut: asyncio.Future[Any] | None,
        ops: Sequence[BindingOp] | None = None,
        fn: _Fn | None = None,
    ) -> None:
        self.fut = fut
        self.ops = ops
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def size(self) -> int:
        return len(self.ops) if self.ops is not None else 1


def _settle(jobs: list[_Job]) -> None:
    """Runs on the loop: hand each job's outcome to its awaiting coroutine."""
    for job in jobs:
        fut = job.fut
        if fut is None or fut.done():
            continue  # a flush marker, or the awaiting task was cancelled
        if job.error is not None:
            fut.set_exception(job.error)
        else:
            fut.set_result(job.result)


def _wrap(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        err = StorageError(f"SQLite: {exc}")
        err.__cause__ = exc
        return err
    return exc  # a programming error (bad record): keep its own type


class _BindingWriter:
    """Coalesces consecutive binding ops of one batch into executemany calls."""

    __slots__ = ("conn", "kind", "rows")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.kind = ""
        self.rows: list[tuple[Any, ...]] = []

    def add(self, op: BindingOp) -> None:
        if op.kind != self.kind:
            self.flush()
            self.kind = op.kind
        if op.kind == "upsert":
            assert op.record is not None
            self.rows.append(_binding_row(op.record))
        else:
            self.rows.append((op.binding_id,))

    def flush(self) -> None:
        if self.rows:
            sql = _BINDING_UPSERT if self.kind == "upsert" else _BINDING_DELETE
            self.conn.executemany(sql, self.rows)
            self.rows = []


class _Writer:
    """The writer thread and its two queues (see the module docstring)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], max_pending: int) -> None:
        self._connect = connect
        self.max_pending = max_pending
        self._cond = threading.Condition(threading.Lock())
        self._through: deque[_Job] = deque()
        # EventRecord | CdrRecord rows, or a _Job flush marker.
        self._behind: deque[object] = deque()
        self._stopping = False
        self._dead = False  # the thread has exited: nothing queued now would be run
        self._thread: threading.Thread | None = None
        self.broken: BaseException | None = None
        self.commits = 0
        self.ops_committed = 0
        self.last_batch = 0
        self.max_batch = 0
        self.write_errors = 0
        self.commit_seconds = 0.0

    # -- producer side (event loop thread)

    def submit(self, job: _Job) -> None:
        self.submit_many((job,))

    def submit_many(self, jobs: Sequence[_Job]) -> None:
        """Queue write-through jobs: one lock round and one wake-up for all."""
        with self._cond:
            if self._dead:
                raise self._dead_error()
            self._through.extend(jobs)
            self._cond.notify()

    def submit_behind_many(self, items: Sequence[object]) -> int:
        """Queue write-behind rows in one lock round; returns how many did not
        fit (dropped)."""
        with self._cond:
            if self._dead:
                return len(items)
            room = max(0, self.max_pending - len(self._behind))
            self._behind.extend(items[:room])
            self._cond.notify()
            return max(0, len(items) - room)

    def submit_behind(self, item: object, force: bool = False) -> bool:
        """Queue a write-behind row; False (not queued) when the queue is full
        or the writer is gone. `force` (flush markers) ignores the bound."""
        with self._cond:
            if self._dead:
                if force:
                    raise self._dead_error()
                return False
            if not force and len(self._behind) >= self.max_pending:
                return False
            self._behind.append(item)
            self._cond.notify()
            return True

    @property
    def dead(self) -> bool:
        return self._dead

    @property
    def through_depth(self) -> int:
        return len(self._through)

    @property
    def behind_depth(self) -> int:
        return len(self._behind)

    def start(self, opened: Callable[[BaseException | None], None]) -> None:
        self._thread = threading.Thread(
            target=self._main, args=(opened,), name="regswitch-sqlite-writer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- writer thread

    def _main(self, opened: Callable[[BaseException | None], None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            migrate(conn)
        except BaseException as exc:  # report it to open() instead of dying silently
            if conn is not None:
                conn.close()
            self._dead = True
            opened(exc)
            return
        opened(None)
        batch: tuple[list[_Job], list[object]] = ([], [])
        try:
            while True:
                through, behind, stop = self._take()
                batch = (through, behind)
                if through or behind:
                    self._write(conn, through, behind)
                batch = ([], [])
                if stop:
                    break
        except BaseException as exc:  # a bug: never leave coroutines waiting forever
            log.exception("SQLite writer failed; storage is now unusable")
            self.broken = exc
            self._fail_pending()  # first: marks the writer dead before anyone wakes
            err = self._dead_error()
            jobs = [*batch[0], *(x for x in batch[1] if isinstance(x, _Job))]
            for job in jobs:
                job.error = err
            self._resolve(jobs, [])
        finally:
            conn.close()
            self._fail_pending()

    def _take(self) -> tuple[list[_Job], list[object], bool]:
        with self._cond:
            while not self._through and not self._behind and not self._stopping:
                self._cond.wait()
            through = list(self._through)
            self._through.clear()
            n = min(len(self._behind), _BEHIND_PER_TX)
            behind = [self._behind.popleft() for _ in range(n)]
            stop = self._stopping and not self._through and not self._behind
        return through, behind, stop

    def _write(self, conn: sqlite3.Connection, through: list[_Job], behind: list[object]) -> None:
        t0 = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            bw = _BindingWriter(conn)
            for job in through:
                if job.ops is not None:
                    for op in job.ops:
                        bw.add(op)
                elif job.fn is not None:
                    bw.flush()
                    job.result = job.fn(conn)
            bw.flush()
            self._write_behind(conn, behind)
            conn.execute("COMMIT")
        except Exception:
            log.warning("SQLite group commit failed; retrying its jobs one by one", exc_info=True)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._write_one_by_one(conn, through, behind)
        else:
            rows = sum(1 for x in behind if not isinstance(x, _Job))
            ops = sum(j.size() for j in through) + rows
            self.commits += 1
            self.ops_committed += ops
            self.last_batch = ops
            self.max_batch = max(self.max_batch, ops)
        self.commit_seconds += time.perf_counter() - t0
        self._resolve(through, behind)

    def _write_behind(self, conn: sqlite3.Connection, behind: list[object]) -> None:
        events = [_event_row(x) for x in behind if isinstance(x, EventRecord)]
        cdrs = [_cdr_row(x) for x in behind if isinstance(x, CdrRecord)]
        if events:
            conn.executemany(_EVENT_INSERT, events)
        if cdrs:
            conn.executemany(_CDR_INSERT, cdrs)

    def _write_one_by_one(
        self, conn: sqlite3.Connection, through: list[_Job], behind: list[object]
    ) -> None:
        """The slow path after a failed group commit: one transaction again, but a
        savepoint per job, so a failing job is rolled back alone and reported to
        its own caller only. If even the commit fails, every job gets that error."""
        done: list[_Job] = []
        rows = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in through:
                conn.execute("SAVEPOINT job")
                try:
                    if job.ops is not None:
                        bw = _BindingWriter(conn)
                        for op in job.ops:
                            bw.add(op)
                        bw.flush()
                    elif job.fn is not None:
                        job.result = job.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    job.error = _wrap(exc)
                    self.write_errors += 1
                else:
                    done.append(job)
                conn.execute("RELEASE job")
            for item in behind:
                if isinstance(item, _Job):
                    continue
                conn.execute("SAVEPOINT row")
                try:
                    self._write_behind(conn, [item])
                    rows += 1
                except Exception:
                    conn.execute("ROLLBACK TO row")
                    log.exception("SQLite: dropped a write-behind row that could not be written")
                    self.write_errors += 1
                conn.execute("RELEASE row")
            conn.execute("COMMIT")
        except Exception as exc:  # the database itself is failing (I/O, full, locked)
            log.exception("SQLite commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = _wrap(exc)
            for job in through:
                if job.error is None:  # done, or never reached: nothing was committed
                    job.error = err
                    self.write_errors += 1
            self.write_errors += rows
            return
        self.commits += 1
        self.ops_committed += sum(j.size() for j in done) + rows

    def _resolve(self, through: list[_Job], behind: list[object]) -> None:
        """Settle the batch's futures with one thread-safe call per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in itertools.chain(through, (x for x in behind if isinstance(x, _Job))):
            if job.fut is not None:
                by_loop.setdefault(job.fut.get_loop(), []).append(job)
        for loop, jobs in by_loop.items():
            # RuntimeError: that loop is closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, jobs)

    def _dead_error(self) -> StorageError:
        if self.broken is not None:
            return StorageError(f"SQLite writer failed: {self.broken!r}")
        return StorageClosedError("SQLite writer stopped")

    def _fail_pending(self) -> None:
        with self._cond:
            self._dead = True  # under the lock: no submit can slip in after the drain
            through = list(self._through)
            self._through.clear()
            behind = [x for x in self._behind if isinstance(x, _Job)]
            self.write_errors += len(self._behind) - len(behind)  # rows lost with the writer
            self._behind.clear()
        err = self._dead_error()
        for job in through + behind:
            job.error = err
        self._resolve(through + behind, [])


# --------------------------------------------------------------------------- stores


class _Backend:
    """What the stores share: state checks, submitting writes, running reads."""

    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    def check(self) -> _Writer:
        return self._s._check_open()

    async def write(self, fn: _Fn) -> Any:
        writer = self.check()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        writer.submit(_Job(fut, fn=fn))
        return await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._s._read(fn)


class SqliteAccountStore(_Backend):
    async def list_all(self) -> list[Account]:
        sql = f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY aor"
        # Rows become records on the reader thread, not on the event loop.
        return await self.read(lambda c: [_account_from_row(r) for r in c.execute(sql)])

    async def get(self, aor: str) -> Account | None:
        key = normalise_aor(aor)
        row = await self.read(
            lambda c: c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE aor = ?", (key,)
            ).fetchone()
        )
        return _account_from_row(row) if row is not None else None

    async def put(self, account: Account) -> None:
        row = _account_row(account)
        await self.write(lambda c: c.execute(_ACCOUNT_UPSERT, row))

    async def put_many(self, accounts: Sequence[Account]) -> None:
        rows = [_account_row(a) for a in accounts]
        if rows:
            await self.write(lambda c: c.executemany(_ACCOUNT_UPSERT, rows))

    async def delete(self, aor: str) -> bool:
        key = normalise_aor(aor)
        deleted: bool = await self.write(
            lambda c: c.execute("DELETE FROM accounts WHERE aor = ?", (key,)).rowcount > 0
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


class SqliteBindingStore(_Backend):
    """Binding writes from one turn of the event loop are handed to the writer
    together: waking the writer thread once per REGISTER would make it fight
    the loop for the GIL and commit one row at a time."""

    def __init__(self, storage: SqliteStorage) -> None:
        super().__init__(storage)
        self._queued: list[_Job] = []
        self._handoff: asyncio.Handle | None = None

    async def load(self) -> list[BindingRecord]:
        sql = f"SELECT {_BINDING_COLS} FROM bindings"
        return await self.read(lambda c: [_binding_from_row(r) for r in c.execute(sql)])

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        if ops:
            await self.submit(ops)

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not ops:
            fut.set_result(None)
            return fut
        self.check()
        self._queued.append(_Job(fut, ops=tuple(ops)))
        if self._handoff is None:
            self._handoff = loop.call_later(BINDING_LINGER, self.hand_off)
        return fut

    def hand_off(self) -> None:
        """Pass what this loop turn queued to the writer (each job keeps its
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


class SqliteEventStore(_Backend):
    def __init__(self, storage: SqliteStorage) -> None:
        super().__init__(storage)
        self._ids = itertools.count(1)
        self.dropped = 0

    def start_ids_after(self, last_id: int) -> None:
        self._ids = itertools.count(last_id + 1)

    def add(self, event: NewEvent) -> EventRecord:
        record = EventRecord.from_new(next(self._ids), event)
        if not self._s._queue_behind(record):
            self.dropped += 1
        return record

    async def query(self, flt: EventFilter) -> list[EventRecord]:
        where: list[str] = []
        args: list[Any] = []
        if flt.type is not None:
            where.append("type = ?")
            args.append(flt.type)
        if flt.types:
            where.append(f"type IN ({', '.join('?' for _ in flt.types)})")
            args.extend(flt.types)
        if flt.account is not None:
            where.append("account = ?")
            args.append(flt.account)
        if flt.after_id is not None:
            where.append("id > ?")
            args.append(flt.after_id)
        if flt.before_id is not None:
            where.append("id < ?")
            args.append(flt.before_id)
        sql = "SELECT id, time, type, account, source, details FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(flt.limit)
        return await self.read(lambda c: [_event_from_row(r) for r in c.execute(sql, args)])

    async def flush(self) -> None:
        await self._s._flush_behind()


class SqliteCdrStore(_Backend):
    def __init__(self, storage: SqliteStorage) -> None:
        super().__init__(storage)
        self.dropped = 0

    def add(self, cdr: CdrRecord) -> None:
        if not self._s._queue_behind(cdr):
            self.dropped += 1

    async def query(self, flt: CdrFilter) -> list[CdrRecord]:
        where: list[str] = []
        args: list[Any] = []
        if flt.account is not None:
            where.append("(caller = ? OR callee = ?)")
            args += [flt.account, flt.account]
        if flt.reason is not None:
            where.append("end_reason = ?")
            args.append(flt.reason)
        if flt.since is not None:
            where.append("start_time >= ?")
            args.append(flt.since)
        if flt.until is not None:
            where.append("start_time < ?")
            args.append(flt.until)
        sql = f"SELECT {_CDR_COLS} FROM cdrs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, rowid DESC LIMIT ?"
        args.append(flt.limit)
        return await self.read(lambda c: [_cdr_from_row(r) for r in c.execute(sql, args)])

    async def flush(self) -> None:
        await self._s._flush_behind()


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
        self._writer: _Writer | None = None
        self._state = "closed"  # closed -> open -> closing -> closed
        self._reader: ThreadPoolExecutor | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._accounts = SqliteAccountStore(self)
        self._params = SqliteParamStore(self)
        self._bindings = SqliteBindingStore(self)
        self._events = SqliteEventStore(self)
        self._cdrs = SqliteCdrStore(self)
        self._behind_buf: list[object] = []
        self._behind_handle: asyncio.TimerHandle | None = None

    @property
    def accounts(self) -> SqliteAccountStore:
        return self._accounts

    @property
    def params(self) -> SqliteParamStore:
        return self._params

    @property
    def bindings(self) -> SqliteBindingStore:
        return self._bindings

    @property
    def events(self) -> SqliteEventStore:
        return self._events

    @property
    def cdrs(self) -> SqliteCdrStore:
        return self._cdrs

    @property
    def stats(self) -> Mapping[str, float]:
        w = self._writer
        commits = w.commits if w else 0
        ops = w.ops_committed if w else 0
        return {
            "write_behind_depth": (w.behind_depth if w else 0) + len(self._behind_buf),
            "write_through_depth": w.through_depth if w else 0,
            "write_behind_capacity": self._max_pending,
            "events_dropped": self._events.dropped,
            "cdrs_dropped": self._cdrs.dropped,
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

        writer = _Writer(self._connect_writer, self._max_pending)
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
            self._events.start_ids_after(last)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Write everything queued, then stop the threads. Idempotent."""
        if self._state != "open":
            return
        self._bindings.hand_off()  # what this loop turn queued goes first
        self._hand_off_behind()
        self._state = "closing"
        writer = self._writer
        assert writer is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        # The marker is settled after everything queued before it committed.
        with contextlib.suppress(StorageError):  # the writer died: nothing more to write
            writer.submit_behind(_Job(done), force=True)
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

    def _check_open(self) -> _Writer:
        writer = self._writer
        if self._state != "open" or writer is None:
            raise StorageClosedError(f"SQLite storage {self.path} is not open")
        if writer.broken is not None:
            raise StorageError(f"SQLite writer failed: {writer.broken!r}")
        return writer

    def _writer_if_open(self) -> _Writer | None:
        return self._writer if self._state == "open" else None

    def _queue_behind(self, item: EventRecord | CdrRecord) -> bool:
        """Buffer a write-behind row on the loop for up to BEHIND_LINGER s, so
        the writer thread wakes once per batch rather than once per event (a
        wake-up per event makes it fight the loop for the GIL and commit rows
        one by one). False when it cannot be queued (closed or full)."""
        writer = self._writer_if_open()
        if writer is None or writer.dead:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: hand it over at once
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
            self._events.dropped += sum(1 for x in lost if isinstance(x, EventRecord))
            self._cdrs.dropped += sum(1 for x in lost if isinstance(x, CdrRecord))

    async def _flush_behind(self) -> None:
        self._hand_off_behind()
        writer = self._check_open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        writer.submit_behind(_Job(fut), force=True)
        await fut

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._check_open()
        loop = asyncio.get_running_loop()
        if self._reader is None:
            # ":memory:": the writer's connection is the only view of the data.
            fut: asyncio.Future[T] = loop.create_future()
            writer.submit(_Job(fut, fn=fn))
            return await fut

        def run() -> T:
            if self._reader_conn is None:
                self._reader_conn = self._connect_reader()
            try:
                return fn(self._reader_conn)
            except sqlite3.Error as exc:
                raise _wrap(exc) from exc

        return await loop.run_in_executor(self._reader, run)

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if not self.in_memory:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"cannot switch {self.path} to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _close_reader_conn(self) -> None:
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None


def _open_error(path: str, exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlite3.Error):
        err = StorageError(f"cannot open SQLite database {path}: {exc}")
        err.__cause__ = exc
        return err
    return exc
