"""A node's copy of the location (cluster/location.py) against a real Redis:
changes from the stream apply in the order of the account's version, whatever
order their notices reach the stream in; a decision made on a copy that was
behind is refused and brings the copy up to date; a nonce count is claimed
once, whichever node commits it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from regswitch.cluster.location import ClusterLocation
from regswitch.cluster.protection import NonceClaims
from regswitch.registrar.bindings import Location
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.storage.base import COMMITTED, CONFLICT, REPLAYED, BindingOp
from regswitch.storage.redis_location import CHANGES, RedisLocation, encode
from storage.test_storage_redis import record

AOR = "alice@example.com"


@asynccontextmanager
async def stores(url: str, count: int) -> AsyncIterator[list[RedisLocation]]:
    """`count` connections to the shared location, as many nodes have."""
    opened = [RedisLocation(url) for _ in range(count)]
    try:
        for store in opened:
            await store.open()
        yield opened
    finally:
        for store in opened:
            await store.close()


def copy_on(store: RedisLocation, node: str) -> ClusterLocation:
    return ClusterLocation(store, Location(), ExpiryQueue(), node, NonceClaims(300))


async def test_a_late_notice_of_an_older_change_does_not_undo_a_newer_one(
    shared_url: str,
) -> None:
    async with stores(shared_url, 2) as (writer, store):
        copy = copy_on(store, "n2")
        await copy.load()
        copy.start()
        try:
            older = await writer.commit_retrying(AOR, [BindingOp.upsert(record("b1"))])
            newer = await writer.commit_retrying(
                AOR, [BindingOp.upsert(replace(record("b1"), cseq=2))]
            )
            assert older is not None and newer is not None and older.change < newer.change
            await writer.flush()
            # another node's append of the older change, late: after the newer one
            writer.notify(older, "[" + ",".join(encode(r) for r in older.records) + "]")
            await writer.flush()
            [(last, _)] = await writer.client.xrevrange(CHANGES, count=1)
            async with asyncio.timeout(10):
                while copy._position != last:  # the copy has read every notice
                    await asyncio.sleep(0.01)
            binding = copy.location.get("b1")
            assert binding is not None and binding.cseq == 2
        finally:
            await copy.stop()


async def test_a_decision_on_a_copy_that_was_behind_is_refused_and_the_copy_caught_up(
    shared_url: str,
) -> None:
    """The registrar decides on the node's copy; a commit on a copy that missed
    another node's change writes nothing and leaves the copy as the location
    is, so the decision made again commits."""
    async with stores(shared_url, 2) as (writer, store):
        copy = copy_on(store, "n2")
        await copy.load()  # not following the stream: the copy misses what comes next
        assert await writer.commit_retrying(AOR, [BindingOp.upsert(record("b1"))]) is not None
        turn = copy.turn(AOR)
        try:
            assert await turn.commit([BindingOp.upsert(record("b2", node="n2"))]) == CONFLICT
            assert [b.id for b in copy.location.of(AOR)] == ["b1"]
            assert await turn.commit([BindingOp.upsert(record("b2", node="n2"))]) == COMMITTED
        finally:
            turn.close()
        assert sorted(r.id for r in await writer.load_account(AOR)) == ["b1", "b2"]


async def test_a_nonce_count_used_through_one_node_is_refused_through_another(
    shared_url: str,
) -> None:
    async with stores(shared_url, 2) as (one, two):
        first, second = copy_on(one, "n1"), copy_on(two, "n2")
        for copy, expected in ((first, COMMITTED), (second, REPLAYED)):
            turn = copy.turn(AOR, ("nonce-1", 1))
            try:
                assert await turn.commit([BindingOp.upsert(record(copy.node))]) == expected
            finally:
                turn.close()
        assert [r.id for r in await one.load_account(AOR)] == ["n1"]  # the replay wrote nothing
        assert (first.nonces.refused, second.nonces.refused) == (0, 1)
