"""PostgreSQL backend (asyncpg, no ORM): the system of record for operators
who bill from CDRs, run several switch processes or keep a standby.

Same stores and answers as the SQLite backend (storage/sqlite.py); the
writers are in pg_writer.py, statements and migrations in pg_schema.py,
connections and error kinds in pg_conn.py.

Up and down: the first "unavailable" error (pg_conn.is_unavailable) marks
the backend down. While down, write-through calls and reads fail at once
with StorageUnavailableError (the registrar answers 503 before touching its
state, the API 503), events and CDRs stay queued. A probe task reconnects
every RECONNECT_INTERVAL; the first successful `SELECT 1` marks it up again
and wakes the write-behind writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self, TypeVar

import asyncpg

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
    StorageUnavailableError,
    normalise_aor,
)
from regswitch.storage.pg_conn import PgTarget, connect, create_pool, is_unavailable, parse_url
from regswitch.storage.pg_conn import wrap as wrap_error
from regswitch.storage.pg_schema import (
    ACCOUNT_COLS,
    ACCOUNT_UPSERT,
    BINDING_COLS,
    DOMAIN_UPSERT,
    PARAM_UPSERT,
    account_from_row,
    account_row,
    binding_from_row,
    migrate,
)
from regswitch.storage.pg_writer import BehindWriter, Fn, Job, ThroughWriter
from regswitch.storage.shared_sql import (
    EventNumbering,
    cdr_from_row,
    cdr_query,
    event_query,
    events_from_rows,
    numbered,
    top_accounts_query,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between reconnection attempts while the database is down.
RECONNECT_INTERVAL = 0.25
#: How long close() keeps trying to write queued events and CDRs.
CLOSE_TIMEOUT = 5.0


class _Backend:
    """What the stores share: submitting writes, running reads."""

    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    async def write(self, fn: Fn) -> Any:
        fut = self._s.submit_job(fn=fn)
        return await fut

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._s.fetch(sql, *args)

    async def fetch_shared(self, query: tuple[str, list[Any]]) -> list[Any]:
        """Run a query of shared_sql (written with `?` placeholders)."""
        sql, args = query
        return await self._s.fetch(numbered(sql), *args)


class PgAccountStore(_Backend):
    async def list_all(self) -> list[Account]:
        rows = await self.fetch(f'SELECT {ACCOUNT_COLS} FROM accounts ORDER BY aor COLLATE "C"')
        return [account_from_row(r) for r in rows]

    async def get(self, aor: str) -> Account | None:
        rows = await self.fetch(
            f"SELECT {ACCOUNT_COLS} FROM accounts WHERE aor = $1", normalise_aor(aor)
        )
        return account_from_row(rows[0]) if rows else None

    async def put(self, account: Account) -> None:
        row = account_row(account)
        await self.write(lambda c: c.execute(ACCOUNT_UPSERT, *row))

    async def put_many(self, accounts: Sequence[Account]) -> None:
        rows = [account_row(a) for a in accounts]
        if rows:
            await self.write(lambda c: c.executemany(ACCOUNT_UPSERT, rows))

    async def delete(self, aor: str) -> bool:
        key = normalise_aor(aor)

        async def run(c: asyncpg.Connection) -> bool:
            status = await c.execute("DELETE FROM accounts WHERE aor = $1", key)
            return bool(status != "DELETE 0")

        deleted: bool = await self.write(run)
        return deleted


class PgDomainStore(_Backend):
    async def list_all(self) -> list[Domain]:
        rows = await self.fetch("SELECT name, created_at FROM domains ORDER BY name")
        return [Domain(name=r[0], created_at=r[1]) for r in rows]

    async def put(self, domain: Domain) -> None:
        row = (domain.name, domain.created_at)
        await self.write(lambda c: c.execute(DOMAIN_UPSERT, *row))

    async def delete(self, name: str) -> bool:
        key = name.lower()

        async def run(c: asyncpg.Connection) -> bool:
            status = await c.execute("DELETE FROM domains WHERE name = $1", key)
            return bool(status != "DELETE 0")

        deleted: bool = await self.write(run)
        return deleted


class PgParamStore(_Backend):
    async def load(self) -> dict[str, str]:
        return {r[0]: r[1] for r in await self.fetch("SELECT name, value FROM params")}

    async def set(self, name: str, value: str) -> None:
        row = (name, value, time.time())
        await self.write(lambda c: c.execute(PARAM_UPSERT, *row))


class PgBindingStore(_Backend):
    async def load(self) -> list[BindingRecord]:
        return [
            binding_from_row(r) for r in await self.fetch(f"SELECT {BINDING_COLS} FROM bindings")
        ]

    async def load_account(self, aor: str) -> list[BindingRecord]:
        sql = f"SELECT {BINDING_COLS} FROM bindings WHERE aor = $1"
        return [binding_from_row(r) for r in await self.fetch(sql, aor)]

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        if ops:
            await self.submit(ops)

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        if not ops:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut
        return self._s.submit_job(ops=tuple(ops))


class PgEventStore(_Backend, EventNumbering):
    def __init__(self, storage: PostgresStorage) -> None:
        _Backend.__init__(self, storage)
        EventNumbering.__init__(self)

    def add(self, event: NewEvent) -> EventRecord:
        return self.number(event, self._s.queue_behind)

    async def query(self, flt: EventFilter) -> list[EventRecord]:
        return events_from_rows(await self.fetch_shared(event_query(flt)))

    async def top_accounts(self, type: str, since: float, limit: int) -> list[tuple[str, int]]:
        rows = await self.fetch_shared(top_accounts_query(type, since, limit))
        return [(r[0], r[1]) for r in rows]

    async def flush(self) -> None:
        await self._s.flush_behind()

    async def prune(self, before: float, limit: int) -> int:
        return await self._s.prune(
            "DELETE FROM events WHERE id IN "
            "(SELECT id FROM events WHERE time < $1 ORDER BY time LIMIT $2)",
            before,
            limit,
        )


class PgCdrStore(_Backend):
    def __init__(self, storage: PostgresStorage) -> None:
        super().__init__(storage)
        self.dropped = 0

    def add(self, cdr: CdrRecord) -> None:
        if not self._s.queue_behind(cdr):
            self.dropped += 1

    async def query(self, flt: CdrFilter) -> list[CdrRecord]:
        return [cdr_from_row(r) for r in await self.fetch_shared(cdr_query(flt, "seq"))]

    async def flush(self) -> None:
        await self._s.flush_behind()

    async def prune(self, before: float, limit: int) -> int:
        return await self._s.prune(
            "DELETE FROM cdrs WHERE id IN "
            "(SELECT id FROM cdrs WHERE start_time < $1 ORDER BY start_time LIMIT $2)",
            before,
            limit,
        )


# --------------------------------------------------------------------------- storage


class PostgresStorage:
    """`Storage` in a PostgreSQL database; `url` is postgresql://USER:PASSWORD@HOST:PORT/DB.

    `max_pending` bounds the write-behind queue (events + CDRs).
    """

    def __init__(self, url: str, *, max_pending: int = 50_000) -> None:
        self.target: PgTarget = parse_url(url)
        self.pool: asyncpg.Pool | None = None
        self._state = "closed"  # closed -> open -> closing -> closed
        self._down: str | None = None  # why, while the database is unreachable
        self._up = asyncio.Event()
        self._probe: asyncio.Task[None] | None = None
        self.outages = 0
        self.through = ThroughWriter(self)
        self.behind = BehindWriter(self, max_pending)
        self.accounts = PgAccountStore(self)
        self.params = PgParamStore(self)
        self.domains = PgDomainStore(self)
        self.bindings = PgBindingStore(self)
        self.events = PgEventStore(self)
        self.cdrs = PgCdrStore(self)

    @property
    def problem(self) -> str | None:
        if self._state == "open" and self._down is not None:
            return self._down
        return None

    @property
    def stats(self) -> Mapping[str, float]:
        t, b = self.through, self.behind
        commits = t.commits + b.commits
        ops = t.ops_committed + b.rows_committed
        return {
            "write_behind_depth": b.depth,
            "write_through_depth": t.depth,
            "write_behind_capacity": b.max_pending,
            "events_dropped": self.events.dropped,
            "cdrs_dropped": self.cdrs.dropped,
            "commits": commits,
            "ops_committed": ops,
            "ops_per_commit": ops / commits if commits else 0.0,
            "last_batch_ops": t.last_batch,
            "max_batch_ops": t.max_batch,
            "write_errors": t.write_errors + b.write_errors,
            "commit_seconds_total": t.commit_seconds,
            "database_up": 0 if self._down is not None else 1,
            "database_outages": self.outages,
        }

    # -- lifecycle

    async def open(self) -> None:
        """Connect, migrate, start the writers. Raises StorageError with one
        line naming the problem (unreachable, login refused, no database...)."""
        if self._state != "closed":
            return
        try:
            conn = await connect(self.target)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self.pool = await create_pool(self.target)
            last = await self.pool.fetchval("SELECT COALESCE(MAX(id), 0) FROM events")
        except StorageError:
            await self._close_pool()
            raise
        except Exception as exc:  # refused, unreachable, bad option: one line, not a traceback
            await self._close_pool()
            raise wrap_error(exc, self.target) from exc
        self.events.start_ids_after(int(last))
        self._down = None
        self._up.set()
        self.through = ThroughWriter(self)
        self.behind = BehindWriter(self, self.behind.max_pending)
        self.through.start()
        self.behind.start()
        self._state = "open"

    async def close(self) -> None:
        """Commit queued writes (events and CDRs for up to CLOSE_TIMEOUT s), then disconnect."""
        if self._state != "open":
            return
        self._state = "closing"
        await self.through.stop()
        await self.behind.stop(CLOSE_TIMEOUT)
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        await self._close_pool()
        self._state = "closed"

    async def _close_pool(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 2.0)
            except Exception:  # a dead server: do not wait for polite goodbyes
                pool.terminate()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- up and down (the writers' Link)

    def mark_down(self, exc: BaseException) -> None:
        if self._down is not None or self._state == "closed":
            return
        self._down = f"database unavailable: {self.wrap(exc)}"
        self.outages += 1
        self._up.clear()
        log.warning("PostgreSQL %s is unavailable (%s); reconnecting", self.target.where, exc)
        self._probe = asyncio.get_running_loop().create_task(self._reconnect(), name="pg-probe")

    async def _reconnect(self) -> None:
        if self.pool is not None:
            await self.pool.expire_connections()  # their sockets are likely dead
        while self._down is not None:
            await asyncio.sleep(RECONNECT_INTERVAL)
            pool = self.pool
            if pool is None:
                return
            try:
                await pool.fetchval("SELECT 1")
            except Exception as exc:
                if not is_unavailable(exc):
                    log.warning("PostgreSQL probe failed: %s", exc)
                continue
            log.warning("PostgreSQL %s is back", self.target.where)
            self._down = None
            self._up.set()

    def unavailable(self) -> StorageUnavailableError:
        return StorageUnavailableError(self._down or f"PostgreSQL {self.target.where} is not open")

    async def wait_up(self) -> None:
        await self._up.wait()

    def wrap(self, exc: BaseException) -> StorageError:
        return wrap_error(exc, self.target)

    # -- what the stores use

    def _check_open(self) -> None:
        if self._state != "open":
            raise StorageClosedError(f"PostgreSQL storage {self.target.where} is not open")

    def submit_job(
        self, ops: Sequence[BindingOp] | None = None, fn: Fn | None = None
    ) -> asyncio.Future[Any]:
        self._check_open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._down is not None:
            fut.set_exception(self.unavailable())
        else:
            self.through.submit(Job(fut, ops=ops, fn=fn))
        return fut

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self._check_open()
        pool = self.pool
        assert pool is not None
        if self._down is not None:
            raise self.unavailable()  # at once: the probe finds out when it is back
        try:
            rows: list[Any] = await pool.fetch(sql, *args)
        except Exception as exc:
            if is_unavailable(exc):
                self.mark_down(exc)
            raise self.wrap(exc) from exc
        return rows

    async def prune(self, sql: str, before: float, limit: int) -> int:
        """Run one retention DELETE on its own connection: never inside the
        group commit, so REGISTERs do not wait for it."""
        self._check_open()
        if self._down is not None or self.pool is None:
            raise self.unavailable()
        try:
            status: str = await self.pool.execute(sql, before, limit)
        except Exception as exc:
            if is_unavailable(exc):
                self.mark_down(exc)
            raise self.wrap(exc) from exc
        return int(status.rpartition(" ")[2])

    def queue_behind(self, row: EventRecord | CdrRecord) -> bool:
        if self._state != "open":
            return False
        return self.behind.offer(row)

    async def flush_behind(self) -> None:
        """Wait for the queued events and CDRs; while the database is down,
        fail at once (an API read answers 503) rather than wait for its return."""
        self._check_open()
        if self._down is not None:
            raise self.unavailable()
        await self.behind.marker()
