"""The location's lean pipeline (storage/resp.py) against a real redis-server:
replies as redis-py gives them, errors in their place, round trips in
order, and a server that dies or goes silent failing every waiter at once."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from regswitch.storage.base import BindingOp, StorageUnavailableError
from regswitch.storage.redis_location import RedisLocation
from regswitch.storage.resp import Connection, Link, Pipeline
from storage.test_storage_redis import record
from support.redis import RedisServer, _require_redis, cli


def settings(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {"host": parts.hostname, "port": parts.port, "db": int(parts.path.strip("/") or 0)}


@asynccontextmanager
async def connected(url: str, timeout: float = 5.0) -> AsyncIterator[Connection]:
    connection = await Connection.open(settings(url), timeout, 2.0)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own, to stop."""
    _require_redis()
    server = RedisServer.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


async def test_replies_come_as_redis_py_gives_them(redis_url: str) -> None:
    async with connected(redis_url) as connection:
        pipe = Pipeline()
        pipe.command("SET", "k", "välue")
        pipe.command("GET", "k")
        pipe.command("INCR", "n")
        pipe.command("HSET", "h", "a", 1, "b", 2.5)
        pipe.hgetall("h")
        pipe.command("GET", "missing")
        pipe.command("EVAL", "return {1, {'x', 'y'}}", 0)
        assert await connection.execute(pipe) == [
            "OK", "välue", 1, 2, {"a": "1", "b": "2.5"}, None, [1, ["x", "y"]],
        ]  # fmt: skip


async def test_an_error_reply_takes_its_place_and_spoils_nothing_else(redis_url: str) -> None:
    async with connected(redis_url) as connection:
        pipe = Pipeline()
        pipe.command("SET", "k", "v")
        pipe.evalsha("0" * 40, 0)
        pipe.command("INCR", "k")  # not an integer
        pipe.command("GET", "k")
        ok, noscript, wrong, value = await connection.execute(pipe)
        assert ok == "OK" and value == "v"
        assert isinstance(noscript, NoScriptError)
        assert isinstance(wrong, ResponseError) and not isinstance(wrong, NoScriptError)
        assert connection.broken is None  # an error reply is no broken connection


async def test_a_stream_entry_is_added_and_the_stream_trimmed_as_redis_py_does(
    redis_url: str,
) -> None:
    async with connected(redis_url) as connection:
        pipe = Pipeline()
        for n in range(3):
            pipe.xadd("s", {"node": "n1", "changes": f"[{n}]"})
        pipe.xadd("s", {"node": "n1", "changes": "[3]"}, maxlen=2, approximate=False)
        ids = await connection.execute(pipe)
        assert all(isinstance(i, str) and "-" in i for i in ids)
        assert cli(redis_url, "XLEN", "s") == "2"  # trimmed exactly, as asked
        entries = cli(redis_url, "XRANGE", "s", "-", "+").split()
        assert entries == [ids[2], "node", "n1", "changes", "[2]", ids[3], "node", "n1",
                           "changes", "[3]"]  # fmt: skip


async def test_a_stream_is_read_as_redis_py_reads_it(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    async with connected(redis_url) as connection:
        try:
            first = await client.xadd("s", {"node": "n1", "changes": "[1]"})
            await client.xadd("s", {"node": "n2", "changes": "[2]"})
            pipe = Pipeline()
            pipe.xread({"s": "0-0"}, count=10, block=100)
            pipe.xread({"s": first}, count=10, block=100)
            assert await connection.execute(pipe) == [
                await client.xread({"s": "0-0"}, count=10, block=100),
                await client.xread({"s": first}, count=10, block=100),
            ]
            pipe = Pipeline()  # nothing after the last: the wait ends empty
            pipe.xread({"s": "$"}, count=10, block=50)
            assert await connection.execute(pipe) == [None]
        finally:
            await client.aclose()


async def test_a_waiting_stream_read_gets_the_entry_added_meanwhile(redis_url: str) -> None:
    async with connected(redis_url) as reading, connected(redis_url) as writing:
        pipe = Pipeline()
        pipe.xread({"s": "$"}, count=10, block=5000)
        waiting = reading.execute(pipe)
        add = Pipeline()
        add.xadd("s", {"node": "n1", "changes": "[1]"})
        async with asyncio.timeout(2):  # well within the read's 5 s
            (entry_id,) = await writing.execute(add)
            (reply,) = await waiting
        assert reply == [["s", [(entry_id, {"node": "n1", "changes": "[1]"})]]]


async def test_round_trips_in_flight_together_each_get_their_own_replies(
    redis_url: str,
) -> None:
    async with connected(redis_url) as connection:
        pipes = []
        for n in range(200):
            pipe = Pipeline()
            for m in range(n % 5 + 1):
                pipe.command("ECHO", f"{n}-{m}")
            pipes.append(pipe)
        replies = await asyncio.gather(*(connection.execute(p) for p in pipes))
        assert replies == [[f"{n}-{m}" for m in range(n % 5 + 1)] for n in range(200)]


async def test_the_database_of_the_url_is_the_one_written(redis_url: str) -> None:
    async with connected(redis_url) as connection:
        pipe = Pipeline()
        pipe.command("SET", "where", "here")
        await connection.execute(pipe)
        assert cli(redis_url, "GET", "where") == "here"


async def test_a_server_that_dies_fails_every_waiter_at_once(own_redis: RedisServer) -> None:
    async with connected(own_redis.url()) as connection:
        blocked = Pipeline()
        blocked.command("BLPOP", "nothing", 30)  # no answer until the list gets an item
        behind = Pipeline()
        behind.command("PING")
        first, second = connection.execute(blocked), connection.execute(behind)
        own_redis.stop()
        async with asyncio.timeout(5):
            for waiting in (first, second):
                with pytest.raises(RedisConnectionError):
                    await waiting
        assert connection.broken is not None
        with pytest.raises(RedisConnectionError):  # and what comes after, at once
            await connection.execute(behind)


async def test_a_silent_server_times_the_round_trip_out(redis_url: str) -> None:
    async with connected(redis_url, timeout=0.2) as connection:
        blocked = Pipeline()
        blocked.command("BLPOP", "nothing", 30)
        async with asyncio.timeout(5):
            with pytest.raises(RedisTimeoutError):
                await connection.execute(blocked)
        assert isinstance(connection.broken, RedisTimeoutError)


async def test_the_location_connects_again_once_redis_is_back(own_redis: RedisServer) -> None:
    location = RedisLocation(own_redis.url())
    await location.open()
    try:
        assert await location.commit_retrying("alice@example.com", [BindingOp.upsert(record("b1"))])
        own_redis.stop()
        with pytest.raises(StorageUnavailableError):
            await location.commit_retrying("alice@example.com", [BindingOp.upsert(record("b2"))])
        own_redis.start_again()  # empty: no persistence
        async with asyncio.timeout(10):
            await location.wait_up()
        state = await location.commit_retrying(
            "alice@example.com", [BindingOp.upsert(record("b3"))]
        )
        assert state is not None and [r.id for r in state.records] == ["b3"]
    finally:
        await location.close()


async def test_a_link_connects_once_for_many_and_again_after_a_break(
    own_redis: RedisServer,
) -> None:
    def ping() -> Pipeline:
        pipe = Pipeline()
        pipe.command("PING")
        return pipe

    link = Link(settings(own_redis.url()), 5.0, 2.0)
    try:
        replies = await asyncio.gather(*(link.execute(ping()) for _ in range(20)))
        assert replies == [["PONG"]] * 20
        # the link's connection and redis-cli's own
        assert len(cli(own_redis.url(), "CLIENT", "LIST").splitlines()) == 2
        own_redis.stop()
        with pytest.raises(RedisConnectionError):
            await link.execute(ping())
        own_redis.start_again()
        assert await link.execute(ping()) == ["PONG"]
    finally:
        link.close()


def test_it_runs_on_uvloop_as_the_server_does(redis_url: str) -> None:
    """The server's loop is uvloop, whose transports are not asyncio's classes."""

    async def main() -> list[Any]:
        async with connected(redis_url) as connection:
            pipe = Pipeline()
            pipe.command("PING")
            return await connection.execute(pipe)

    assert uvloop.run(main()) == ["PONG"]
