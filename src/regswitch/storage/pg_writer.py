"""The PostgreSQL writers: group commit for write-through jobs, a bounded
queue for write-behind rows. Both are tasks on the event loop (asyncpg is
asynchronous: no thread is needed).

- Write-through (bindings, accounts, params): jobs queued while a transaction
  is in flight go together into the next one, so under load one commit
  serves every REGISTER that arrived meanwhile. A job's future is settled
  only after COMMIT returned. A failed statement fails its own job (the batch
  is retried job by job, each in a savepoint); a lost server fails the whole
  batch with StorageUnavailableError (nothing acknowledged: callers answer 503).
- Write-behind (events, CDRs): rows wait in a bounded deque; up to
  `BEHIND_PER_TX` go per transaction. While the database is down they stay
  queued (writes are idempotent upserts, so a batch whose COMMIT was lost is
  simply written again); what does not fit is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence, Sized
from typing import Any, Protocol

import asyncpg

from regswitch.storage.base import (
    BindingOp,
    CdrRecord,
    EventRecord,
    StorageError,
    StorageUnavailableError,
)
from regswitch.storage.pg_conn import is_unavailable
from regswitch.storage.pg_schema import (
    BINDING_APPLY,
    BINDING_DELETE,
    BINDING_UPSERT,
    CDR_INSERT,
    EVENT_INSERT,
    binding_apply_args,
    binding_row,
    rows_of,
)
from regswitch.storage.shared_sql import cdr_row, event_row

log = logging.getLogger(__name__)

Fn = Callable[[asyncpg.Connection], Awaitable[Any]]

#: Write-behind rows per transaction (bounds how long one holds a connection).
BEHIND_PER_TX = 2000
#: Seconds the write-behind waits once woken, so that one statement carries
#: the rows of many loop turns: a statement's round trip costs the server and
#: the database more than its rows do. Rows written behind are not waited on.
BEHIND_LINGER = 0.005


class Job:
    """A write-through unit: binding ops or a statement function, and its future."""

    __slots__ = ("fn", "fut", "ops")

    def __init__(
        self, fut: asyncio.Future[Any], ops: Sequence[BindingOp] | None = None, fn: Fn | None = None
    ) -> None:
        self.fut = fut
        self.ops = ops
        self.fn = fn

    def size(self) -> int:
        return len(self.ops) if self.ops is not None else 1


class Link(Protocol):
    """What the writers need from the storage: the pool, the up/down state."""

    @property
    def pool(self) -> asyncpg.Pool | None: ...

    def mark_down(self, exc: BaseException) -> None: ...

    def unavailable(self) -> StorageUnavailableError: ...

    async def wait_up(self) -> None: ...

    def wrap(self, exc: BaseException) -> StorageError: ...


async def _run_ops(conn: asyncpg.Connection, ops: Sequence[BindingOp]) -> None:
    """Consecutive ops of one kind go in one executemany (pipelined)."""
    kind = ""
    rows: list[tuple[Any, ...]] = []
    for op in ops:
        if op.kind != kind and rows:
            await conn.executemany(BINDING_UPSERT if kind == "upsert" else BINDING_DELETE, rows)
            rows = []
        kind = op.kind
        if op.kind == "upsert":
            assert op.record is not None
            rows.append(binding_row(op.record))
        else:
            rows.append((op.binding_id,))
    if rows:
        await conn.executemany(BINDING_UPSERT if kind == "upsert" else BINDING_DELETE, rows)


async def _run_job(conn: asyncpg.Connection, job: Job) -> Any:
    if job.ops is not None:
        await _run_ops(conn, job.ops)
        return None
    assert job.fn is not None
    return await job.fn(conn)


class _WriterTask:
    """A task on the loop that writes what is queued, woken when work arrives."""

    name = "pg-writer"

    def __init__(self, link: Link) -> None:
        self._link = link
        self._queue: Sized = ()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.write_errors = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._main(), name=self.name)

    async def _main(self) -> None:
        raise NotImplementedError


class ThroughWriter(_WriterTask):
    """Group commit of write-through jobs (see the module docstring)."""

    name = "pg-through"

    def __init__(self, link: Link) -> None:
        super().__init__(link)
        self._queue: list[Job] = []
        self.ops_committed = 0
        self.last_batch = 0
        self.max_batch = 0
        self.commit_seconds = 0.0

    def submit(self, job: Job) -> None:
        self._queue.append(job)
        self._wake.set()

    async def stop(self) -> None:
        """Commit what is queued, then end."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _main(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            jobs, self._queue = self._queue, []
            if jobs:
                try:
                    await self._commit(jobs)
                except BaseException as exc:  # a bug: never leave a caller waiting
                    log.exception("PostgreSQL writer failed")
                    self._fail(jobs, StorageError(f"PostgreSQL writer failed: {exc!r}"))
                    if not isinstance(exc, Exception):
                        raise
            if self._stopping and not self._queue:
                return

    def _fail(self, jobs: list[Job], err: BaseException) -> None:
        for job in jobs:
            if not job.fut.done():
                job.fut.set_exception(err)

    async def _commit(self, jobs: list[Job]) -> None:
        link = self._link
        pool = link.pool
        if pool is None:
            self._fail(jobs, link.unavailable())
            return
        t0 = time.perf_counter()
        results: list[Any] = []
        try:
            if all(job.ops is not None for job in jobs):
                # the common case (REGISTERs only): one statement, one round trip
                await pool.execute(
                    BINDING_APPLY, *binding_apply_args(op for job in jobs for op in job.ops or ())
                )
                results = [None] * len(jobs)
            else:
                async with pool.acquire() as conn, conn.transaction():
                    results = [await _run_job(conn, job) for job in jobs]
        except Exception as exc:
            if is_unavailable(exc):
                # COMMIT may or may not have landed: the caller is told it did
                # not (a 503 for a stored binding is safe; the reverse is not)
                link.mark_down(exc)
                self.write_errors += len(jobs)
                self._fail(jobs, link.wrap(exc))
                return
            log.warning("PostgreSQL group commit failed; retrying its jobs one by one: %s", exc)
            await self._one_by_one(jobs)
            return
        finally:
            self.commit_seconds += time.perf_counter() - t0
        ops = sum(job.size() for job in jobs)
        self.commits += 1
        self.ops_committed += ops
        self.last_batch = ops
        self.max_batch = max(self.max_batch, ops)
        for job, result in zip(jobs, results, strict=True):
            if not job.fut.done():  # the awaiting task may have been cancelled
                job.fut.set_result(result)

    async def _one_by_one(self, jobs: list[Job]) -> None:
        """One transaction, a savepoint per job: a failing job fails alone."""
        link = self._link
        assert link.pool is not None
        outcome: list[tuple[Job, Any, BaseException | None]] = []
        try:
            async with link.pool.acquire() as conn, conn.transaction():
                for job in jobs:
                    try:
                        async with conn.transaction():
                            outcome.append((job, await _run_job(conn, job), None))
                    except Exception as exc:
                        if is_unavailable(exc):
                            raise
                        outcome.append((job, None, link.wrap(exc)))
                        self.write_errors += 1
        except Exception as exc:
            if is_unavailable(exc):
                link.mark_down(exc)
            self.write_errors += len(jobs)
            self._fail(jobs, link.wrap(exc))
            return
        self.commits += 1
        self.ops_committed += sum(job.size() for job, _, err in outcome if err is None)
        for job, result, err in outcome:
            if job.fut.done():
                continue
            if err is None:
                job.fut.set_result(result)
            else:
                job.fut.set_exception(err)


class BehindWriter(_WriterTask):
    """The bounded write-behind queue of events and CDRs and its writer task."""

    name = "pg-behind"

    def __init__(self, link: Link, max_pending: int) -> None:
        super().__init__(link)
        self.max_pending = max_pending
        # EventRecord | CdrRecord rows, or a future settled when reached (flush)
        self._queue: deque[object] = deque()
        self.rows_committed = 0

    def offer(self, row: EventRecord | CdrRecord) -> bool:
        """Queue a row; False (dropped) when the queue is full."""
        if len(self._queue) >= self.max_pending:
            return False
        self._queue.append(row)
        self._wake.set()
        return True

    def marker(self) -> asyncio.Future[None]:
        """A future settled once everything queued before it is written."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        self._wake.set()
        return fut

    async def stop(self, timeout: float) -> None:
        """Write what is queued (for at most `timeout` s), then end; rows
        still queued then are lost and counted as write errors."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        lost = [x for x in self._queue if not isinstance(x, asyncio.Future)]
        self.write_errors += len(lost)
        for item in self._queue:
            if isinstance(item, asyncio.Future) and not item.done():
                item.set_exception(self._link.unavailable())
        self._queue.clear()

    async def _main(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                if not self._stopping:
                    await asyncio.sleep(BEHIND_LINGER)
                continue
            batch: list[object] = []
            while self._queue and len(batch) < BEHIND_PER_TX:
                batch.append(self._queue.popleft())
            if not await self._write(batch):
                self._queue.extendleft(reversed(batch))  # keep the order; retry when up
                await self._link.wait_up()

    async def _write(self, batch: list[object]) -> bool:
        """Write one batch; False when the database is unavailable (retry)."""
        events = [event_row(x) for x in batch if isinstance(x, EventRecord)]
        cdrs = [cdr_row(x) for x in batch if isinstance(x, CdrRecord)]
        pool = self._link.pool
        if events or cdrs:
            if pool is None:
                return False
            try:
                if not cdrs:  # one statement: atomic alone, no BEGIN and COMMIT round trips
                    await pool.execute(EVENT_INSERT, *rows_of(events))
                elif not events:
                    await pool.execute(CDR_INSERT, *rows_of(cdrs))
                else:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute(EVENT_INSERT, *rows_of(events))
                        await conn.execute(CDR_INSERT, *rows_of(cdrs))
            except Exception as exc:
                if is_unavailable(exc):
                    self._link.mark_down(exc)
                    return False
                log.warning("PostgreSQL: event/CDR batch failed; writing its rows one by one: %s",
                            exc)  # fmt: skip
                if not await self._row_by_row(pool, events, cdrs):
                    return False
            else:
                self.commits += 1
                self.rows_committed += len(events) + len(cdrs)
        for item in batch:
            if isinstance(item, asyncio.Future) and not item.done():
                item.set_result(None)
        return True

    async def _row_by_row(
        self, pool: asyncpg.Pool, events: list[tuple[Any, ...]], cdrs: list[tuple[Any, ...]]
    ) -> bool:
        """Each row in its own statement: a bad row (a bug) is dropped and
        counted alone. False when the database went away meanwhile (the batch is
        queued again; rows already written are written again, harmlessly)."""
        rows = [(EVENT_INSERT, r) for r in events] + [(CDR_INSERT, r) for r in cdrs]
        for sql, row in rows:
            try:
                await pool.execute(sql, *rows_of([row]))
            except Exception as exc:
                if is_unavailable(exc):
                    self._link.mark_down(exc)
                    return False
                log.error("PostgreSQL: dropped a row that could not be written: %s", exc)
                self.write_errors += 1
            else:
                self.rows_committed += 1
        self.commits += 1
        return True
