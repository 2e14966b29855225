"""What only the PostgreSQL backend has: migrations under an advisory lock,
refusing a newer schema, clear errors at open, and surviving the server
going away (a real PostgreSQL, stopped and started by the test)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from storage_builders import make_binding, make_cdr, make_event

from regswitch.storage.base import (
    BindingOp,
    CdrFilter,
    EventFilter,
    StorageError,
    StorageUnavailableError,
)
from regswitch.storage.pg import PostgresStorage
from regswitch.storage.pg_schema import migrations
from support.postgres import PgCluster

pytestmark = pytest.mark.timeout(90)


async def _versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        await conn.close()


async def test_open_migrates_once_even_when_two_nodes_start_together(pg_url: str) -> None:
    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    await asyncio.gather(a.open(), b.open())  # the advisory lock serialises them
    try:
        await a.bindings.apply([BindingOp.upsert(make_binding("b1"))])
        assert [r.id for r in await b.bindings.load()] == ["b1"]
    finally:
        await asyncio.gather(a.close(), b.close())
    assert await _versions(pg_url) == [v for v, _, _ in migrations()]


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    async with PostgresStorage(pg_url):
        pass
    conn = await asyncpg.connect(pg_url)
    await conn.execute("INSERT INTO schema_version VALUES (999, 'from_the_future', 0)")
    await conn.close()
    with pytest.raises(StorageError, match="schema version 999 is newer than this regswitch"):
        await PostgresStorage(pg_url).open()


async def test_open_errors_are_one_clear_line(pg_cluster: PgCluster) -> None:
    cases = [
        (pg_cluster.url("postgres", password="wrong"), "login refused for user 'postgres'"),
        (pg_cluster.url("no_such_db"), "database 'no_such_db' does not exist"),
        ("postgresql://u:p@127.0.0.1:1/db", "cannot reach PostgreSQL at 127.0.0.1:1"),
    ]
    for url, message in cases:
        storage = PostgresStorage(url)
        with pytest.raises(StorageError, match=message) as caught:
            await storage.open()
        text = str(caught.value)
        assert "\n" not in text and "wrong" not in text  # no password in messages
        assert storage.problem is None  # never opened: nothing to report as degraded


async def test_database_down_fails_fast_then_resumes_by_itself(
    pg_cluster: PgCluster, pg_url: str
) -> None:
    storage = PostgresStorage(pg_url)
    await storage.open()
    try:
        await storage.bindings.apply([BindingOp.upsert(make_binding("before"))])
        pg_cluster.pause()
        try:
            # the first write finds out; it is refused, not hung and not lied about
            with pytest.raises(StorageUnavailableError):
                await asyncio.wait_for(
                    storage.bindings.apply([BindingOp.upsert(make_binding("during"))]), 10
                )
            assert storage.problem is not None and "unavailable" in storage.problem
            start = time.monotonic()
            with pytest.raises(StorageUnavailableError):
                await storage.bindings.apply([BindingOp.upsert(make_binding("during2"))])
            assert time.monotonic() - start < 0.5  # refused at once while down
            queued = storage.events.add(make_event("while-down"))
            storage.cdrs.add(make_cdr("while-down"))
            assert storage.stats["database_up"] == 0
        finally:
            pg_cluster.resume()
        back = time.monotonic()
        while storage.problem is not None:
            assert time.monotonic() - back < 2.0, "service did not resume within 2 s"
            await asyncio.sleep(0.02)
        await storage.bindings.apply([BindingOp.upsert(make_binding("after"))])
        await asyncio.wait_for(storage.events.flush(), 10)
        assert {b.id for b in await storage.bindings.load()} == {"before", "after"}
        # events and CDRs queued while it was down are written, not dropped
        assert [e.id for e in await storage.events.query(EventFilter())] == [queued.id]
        assert [c.id for c in await storage.cdrs.query(CdrFilter())] == ["while-down"]
        assert storage.stats["events_dropped"] == 0
        assert storage.stats["database_outages"] == 1
    finally:
        await storage.close()


async def test_restart_under_write_load_loses_no_acknowledged_binding(
    pg_cluster: PgCluster, pg_url: str
) -> None:
    storage = PostgresStorage(pg_url)
    await storage.open()
    acked: set[str] = set()
    refused = 0
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        nonlocal refused
        i = 0
        while not stop.is_set() and i < 5000:
            bid = f"w{n}-{i}"
            i += 1
            try:
                await storage.bindings.apply([BindingOp.upsert(make_binding(bid))])
            except StorageUnavailableError:
                refused += 1
                await asyncio.sleep(0.01)
            else:
                acked.add(bid)

    try:
        tasks = [asyncio.create_task(writer(n)) for n in range(8)]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(pg_cluster.restart)
        back = time.monotonic()
        while storage.problem is not None and time.monotonic() - back < 2.0:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
        assert storage.problem is None
        stored = {b.id for b in await storage.bindings.load()}
        assert acked <= stored, f"{len(acked - stored)} acknowledged bindings lost"
        assert refused > 0  # the restart was noticed
    finally:
        await storage.close()


async def test_a_batch_is_one_statement_that_keeps_the_last_write_of_a_row(pg_url: str) -> None:
    """Events and CDRs go in one statement per batch (arrays, unnested): a CDR
    written again before its batch left (a call's record replaced) is stored
    once, as last written."""
    storage = PostgresStorage(pg_url)
    await storage.open()
    try:
        added = [storage.events.add(make_event("registered", source=f"udp:{n}")) for n in range(50)]
        storage.cdrs.add(make_cdr("c1", end_reason="normal"))
        storage.cdrs.add(make_cdr("c1", end_reason="registration-replaced"))
        await asyncio.wait_for(storage.events.flush(), 10)
        stored = await storage.events.query(EventFilter(limit=100))
        assert sorted(e.id for e in stored) == sorted(e.id for e in added)
        [cdr] = await storage.cdrs.query(CdrFilter())
        assert cdr.end_reason == "registration-replaced"
    finally:
        await storage.close()


async def test_a_flood_of_events_is_bounded_by_the_queue_and_the_rest_written(
    pg_url: str,
) -> None:
    """Rows written behind wait a little to share a statement; a flood (rejected
    REGISTERs from strangers make events) still fills at most `max_pending`
    rows: the rest are dropped and counted, never held."""
    storage = PostgresStorage(pg_url, max_pending=100)
    await storage.open()
    try:
        # one loop turn: the writer has not taken any of them yet
        added = [storage.events.add(make_event("rejected", source=f"udp:{n}")) for n in range(150)]
        assert storage.stats["events_dropped"] == 50
        await asyncio.wait_for(storage.events.flush(), 10)
        stored = await storage.events.query(EventFilter(limit=200))
        assert sorted(e.id for e in stored) == sorted(e.id for e in added[:100])
    finally:
        await storage.close()


async def test_a_row_the_database_refuses_is_dropped_alone(pg_url: str) -> None:
    storage = PostgresStorage(pg_url)
    await storage.open()
    try:
        storage.cdrs.add(make_cdr("good-1"))
        storage.cdrs.add(make_cdr("bad", billable_seconds=2**40))  # beyond the INTEGER column
        storage.cdrs.add(make_cdr("good-2"))
        await asyncio.wait_for(storage.events.flush(), 10)
        assert sorted(c.id for c in await storage.cdrs.query(CdrFilter())) == ["good-1", "good-2"]
        assert storage.stats["write_errors"] == 1
    finally:
        await storage.close()
