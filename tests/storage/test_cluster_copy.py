"""A node's copy of the location (cluster/location.py) following the change
stream of a real Redis: changes apply in the order of the account's version,
whatever order their notices reach the stream in."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from regswitch.cluster.location import ClusterLocation
from regswitch.cluster.protection import NonceClaims
from regswitch.registrar.bindings import Location
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.storage.base import COMMITTED, CONFLICT, REPLAYED, BindingOp
from regswitch.storage.redis_location import CHANGES, RedisLocation, encode
from storage.test_storage_redis import record

AOR = "alice@example.com"


async def test_a_late_notice_of_an_older_change_does_not_undo_a_newer_one(
    shared_url: str,
) -> None:
    writer, store = RedisLocation(shared_url), RedisLocation(shared_url)
    await writer.open()
    await store.open()
    copy = ClusterLocation(store, Location(), ExpiryQueue(), "n2", NonceClaims(300))
    await copy.load()
    copy.start()
    try:
        older = await writer.commit_retrying(AOR, [BindingOp.upsert(record("b1"))])
        newer = await writer.commit_retrying(AOR, [BindingOp.upsert(replace(record("b1"), cseq=2))])
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
        await store.close()
        await writer.close()


async def test_a_decision_on_a_copy_that_was_behind_is_refused_and_the_copy_caught_up(
    shared_url: str,
) -> None:
    """The registrar decides on the node's copy; a commit on a copy that missed
    another node's change writes nothing and leaves the copy as the location
    is, so the decision made again commits."""
    writer, store = RedisLocation(shared_url), RedisLocation(shared_url)
    await writer.open()
    await store.open()
    copy = ClusterLocation(store, Location(), ExpiryQueue(), "n2", NonceClaims(300))
    await copy.load()  # not following the stream: the copy misses what comes next
    try:
        assert await writer.commit_retrying(AOR, [BindingOp.upsert(record("b1"))]) is not None
        turn = copy.turn(AOR)
        try:
            assert await turn.commit([BindingOp.upsert(record("b2", node="n2"))]) == CONFLICT
            assert [b.id for b in copy.location.of(AOR)] == ["b1"]
            assert await turn.commit([BindingOp.upsert(record("b2", node="n2"))]) == COMMITTED
        finally:
            turn.close()
        assert sorted(r.id for r in await writer.load_account(AOR)) == ["b1", "b2"]
    finally:
        await store.close()
        await writer.close()


async def test_a_nonce_count_used_through_one_node_is_refused_through_another(
    shared_url: str,
) -> None:
    one, two = RedisLocation(shared_url), RedisLocation(shared_url)
    await one.open()
    await two.open()
    first = ClusterLocation(one, Location(), ExpiryQueue(), "n1", NonceClaims(300))
    second = ClusterLocation(two, Location(), ExpiryQueue(), "n2", NonceClaims(300))
    try:
        for copy, expected in ((first, COMMITTED), (second, REPLAYED)):
            turn = copy.turn(AOR, ("nonce-1", 1))
            try:
                assert await turn.commit([BindingOp.upsert(record(copy.node))]) == expected
            finally:
                turn.close()
        assert [r.id for r in await one.load_account(AOR)] == ["n1"]  # the replay wrote nothing
        assert (first.nonces.refused, second.nonces.refused) == (0, 1)
    finally:
        await one.close()
        await two.close()
