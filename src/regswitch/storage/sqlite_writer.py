"""The SQLite writer thread: two queues (write-through jobs, write-behind
rows), group commit, and settling the waiting futures on their loop.
See storage/sqlite.py for why it is shaped this way."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from regswitch.storage.base import (
    BindingOp,
    CdrRecord,
    EventRecord,
    StorageClosedError,
    StorageError,
)
from regswitch.storage.shared_sql import cdr_row, event_row
from regswitch.storage.sqlite_schema import (
    BINDING_DELETE,
    BINDING_UPSERT,
    CDR_INSERT,
    EVENT_INSERT,
    binding_row,
    migrate,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_Fn = Callable[[sqlite3.Connection], Any]

#: Write-behind rows per transaction (bounds the commit latency they add).
_BEHIND_PER_TX = 5000


# --------------------------------------------------------------------------- writer


class Job:
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


def _settle(jobs: list[Job]) -> None:
    """Runs on the loop: hand each job's outcome to its awaiting coroutine."""
    for job in jobs:
        fut = job.fut
        if fut is None or fut.done():
            continue  # a flush marker, or the awaiting task was cancelled
        if job.error is not None:
            fut.set_exception(job.error)
        else:
            fut.set_result(job.result)


def wrap_error(exc: Exception) -> Exception:
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
            self.rows.append(binding_row(op.record))
        else:
            self.rows.append((op.binding_id,))

    def flush(self) -> None:
        if self.rows:
            sql = BINDING_UPSERT if self.kind == "upsert" else BINDING_DELETE
            self.conn.executemany(sql, self.rows)
            self.rows = []


class Writer:
    """The writer thread and its two queues (see the module docstring)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], max_pending: int) -> None:
        self._connect = connect
        self.max_pending = max_pending
        self._cond = threading.Condition(threading.Lock())
        self._through: deque[Job] = deque()
        # EventRecord | CdrRecord rows, or a Job flush marker.
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

    def submit(self, job: Job) -> None:
        self.submit_many((job,))

    def submit_many(self, jobs: Sequence[Job]) -> None:
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
        batch: tuple[list[Job], list[object]] = ([], [])
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
            jobs = [*batch[0], *(x for x in batch[1] if isinstance(x, Job))]
            for job in jobs:
                job.error = err
            self._resolve(jobs, [])
        finally:
            conn.close()
            self._fail_pending()

    def _take(self) -> tuple[list[Job], list[object], bool]:
        with self._cond:
            while not self._through and not self._behind and not self._stopping:
                self._cond.wait()
            through = list(self._through)
            self._through.clear()
            n = min(len(self._behind), _BEHIND_PER_TX)
            behind = [self._behind.popleft() for _ in range(n)]
            stop = self._stopping and not self._through and not self._behind
        return through, behind, stop

    def _write(self, conn: sqlite3.Connection, through: list[Job], behind: list[object]) -> None:
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
            rows = sum(1 for x in behind if not isinstance(x, Job))
            ops = sum(j.size() for j in through) + rows
            self.commits += 1
            self.ops_committed += ops
            self.last_batch = ops
            self.max_batch = max(self.max_batch, ops)
        self.commit_seconds += time.perf_counter() - t0
        self._resolve(through, behind)

    def _write_behind(self, conn: sqlite3.Connection, behind: list[object]) -> None:
        events = [event_row(x) for x in behind if isinstance(x, EventRecord)]
        cdrs = [cdr_row(x) for x in behind if isinstance(x, CdrRecord)]
        if events:
            conn.executemany(EVENT_INSERT, events)
        if cdrs:
            conn.executemany(CDR_INSERT, cdrs)

    def _write_one_by_one(
        self, conn: sqlite3.Connection, through: list[Job], behind: list[object]
    ) -> None:
        """The slow path after a failed group commit: one transaction again, but a
        savepoint per job, so a failing job is rolled back alone and reported to
        its own caller only. If even the commit fails, every job gets that error."""
        done: list[Job] = []
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
                    job.error = wrap_error(exc)
                    self.write_errors += 1
                else:
                    done.append(job)
                conn.execute("RELEASE job")
            for item in behind:
                if isinstance(item, Job):
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
            err = wrap_error(exc)
            for job in through:
                if job.error is None:  # done, or never reached: nothing was committed
                    job.error = err
                    self.write_errors += 1
            self.write_errors += rows
            return
        self.commits += 1
        self.ops_committed += sum(j.size() for j in done) + rows

    def _resolve(self, through: list[Job], behind: list[object]) -> None:
        """Settle the batch's futures with one thread-safe call per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job in itertools.chain(through, (x for x in behind if isinstance(x, Job))):
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
            behind = [x for x in self._behind if isinstance(x, Job)]
            self.write_errors += len(self._behind) - len(behind)  # rows lost with the writer
            self._behind.clear()
        err = self._dead_error()
        for job in through + behind:
            job.error = err
        self._resolve(through + behind, [])
