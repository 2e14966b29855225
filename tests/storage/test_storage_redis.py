"""The Redis location (storage/redis_location.py) on a real redis-server and
on a real Redis Cluster of three masters: optimistic commits per account,
exactly-once expiry, the change stream, and an unreachable server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from regswitch.storage.base import (
    COMMITTED,
    CONFLICT,
    REPLAYED,
    AccountState,
    BindingOp,
    BindingRecord,
    SharedBindingStore,
    StorageError,
    StorageUnavailableError,
)
from regswitch.storage.redis_location import (
    RedisLocation,
    account_key,
    check_url,
    decode,
    encode,
    version_text,
)
from support.redis import RedisCluster, RedisServer, cli


def now() -> float:
    """The wall clock: a stored account's key expires on it (after its last binding),
    so a record must be current when it is written, not when the module was imported."""
    return time.time()


def record(
    binding_id: str, aor: str = "alice@example.com", expires_at: float | None = None, **kw: object
) -> BindingRecord:
    values: dict[str, object] = dict(
        id=binding_id,
        aor=aor,
        contact=f"sip:{binding_id}@192.0.2.1:5060",
        transport="udp",
        source_ip="192.0.2.1",
        source_port=5060,
        local_ip="127.0.0.1",
        local_port=5060,
        conn_id=0,
        call_id=f"call-{binding_id}",
        cseq=1,
        expires_at=now() + 60 if expires_at is None else expires_at,
        instance=None,
        reg_id=None,
        user_agent="test",
        path=("<sip:p1>",),
        registered_at=now(),
        refreshed_at=now(),
        node="n1",
    )
    values.update(kw)
    return BindingRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
async def location(shared_url: str) -> AsyncIterator[RedisLocation]:
    loc = RedisLocation(shared_url)
    await loc.open()
    yield loc
    await loc.close()


def test_records_round_trip() -> None:
    r = record("b1", instance="<urn:uuid:1>", reg_id="1", nat=False, reachable=False)
    assert decode(encode(r)) == r


def test_url_checks() -> None:
    assert check_url("redis://127.0.0.1:6379/0")
    assert check_url("redis+cluster://127.0.0.1:7000")
    for bad in ("http://x", "redis://", "redis://h:1/x", "redis+cluster://h:7000/3"):
        with pytest.raises(ValueError):
            check_url(bad)


async def test_is_a_shared_binding_store(location: RedisLocation) -> None:
    assert isinstance(location, SharedBindingStore)


async def test_keys_of_one_account_share_a_hash_tag() -> None:
    assert account_key("alice@example.com") == "rs:loc:{alice@example.com}"


async def test_watch_commit_and_read(location: RedisLocation) -> None:
    written = record("b1")
    async with location.watch("alice@example.com") as watch:
        assert watch.records == []
        state = await watch.commit([BindingOp.upsert(written)])
    assert state is not None and [r.id for r in state.records] == ["b1"]
    assert await location.load_account("alice@example.com") == [written]
    assert [r.id for r in await location.load()] == ["b1"]


async def test_a_commit_after_someone_else_changed_the_account_is_refused(
    location: RedisLocation, shared_url: str
) -> None:
    other = RedisLocation(shared_url)
    await other.open()
    try:
        async with location.watch("alice@example.com") as first:
            async with other.watch("alice@example.com") as second:
                assert await second.commit([BindingOp.upsert(record("b2"))]) is not None
            # the first decided on an empty account: its write must not happen
            assert await first.commit([BindingOp.upsert(record("b1"))]) is None
        assert [r.id for r in await location.load_account("alice@example.com")] == ["b2"]
        assert location.conflicts == 1
    finally:
        await other.close()


async def test_an_account_emptied_and_filled_again_meanwhile_still_refuses_the_commit(
    location: RedisLocation, shared_url: str
) -> None:
    """The version survives the account's last binding (no ABA): a decision
    made on an empty account is refused after another node added a binding
    and removed it again, though the account looks as it was read."""
    other = RedisLocation(shared_url)
    await other.open()
    try:
        async with location.watch("alice@example.com") as first:
            assert first.records == []
            await other.apply([BindingOp.upsert(record("b2"))])
            await other.apply([BindingOp.delete("b2")])
            assert await location.load_account("alice@example.com") == []
            assert await first.commit([BindingOp.upsert(record("b1"))]) is None
        async with location.watch("alice@example.com") as again:
            state = await again.commit([BindingOp.upsert(record("b1"))])
        assert state is not None and state.change > first.change
    finally:
        await other.close()


async def test_a_commit_on_a_copy_that_was_behind_returns_the_account_as_it_is(
    location: RedisLocation,
) -> None:
    """A node decides on its copy and commits on the copy's version: a copy
    that missed a change is refused, and the refusal carries what is there."""
    aor = "alice@example.com"
    outcome, first = await location.commit(aor, "", (record("b1"),))
    assert outcome == COMMITTED and first.change > (0, 0)
    outcome, now = await location.commit(aor, "", (record("b2"),))  # decided on "no account"
    assert outcome == CONFLICT
    assert [r.id for r in now.records] == ["b1"] and now.change == first.change
    outcome, second = await location.commit(aor, version_text(now.change), (record("b2"),))
    assert outcome == COMMITTED and second.change > first.change
    assert [r.id for r in await location.load_account(aor)] == ["b2"]


async def test_a_commit_with_nothing_to_write_only_confirms_the_version(
    location: RedisLocation,
) -> None:
    aor = "alice@example.com"
    _, written = await location.commit(aor, "", (record("b1"),))
    version = version_text(written.change)
    outcome, confirmed = await location.commit(aor, version, None)
    assert outcome == COMMITTED and confirmed.change == written.change
    outcome, _ = await location.commit(aor, "", None)
    assert outcome == CONFLICT
    assert [r.id for r in await location.load_account(aor)] == ["b1"]
    assert location.commits == 1


async def test_a_nonce_count_is_claimed_once_whatever_the_commit_came_to(
    location: RedisLocation, shared_url: str
) -> None:
    """The claim goes first in the commit's script: a count used once, even by
    a commit refused for a stale copy, refuses every later commit carrying it,
    on any node, and such a commit writes nothing."""
    other = RedisLocation(shared_url)
    await other.open()
    aor = "alice@example.com"
    claim = (f"rs:nc:{{{aor}}}:n1", 1, 60)
    try:
        outcome, _ = await location.commit(aor, "stale", (record("b1"),), claim)
        assert outcome == CONFLICT  # refused, but the count is spent
        outcome, _ = await other.commit(aor, "", (record("b2"),), claim)
        assert outcome == REPLAYED
        assert await location.load_account(aor) == []
        outcome, _ = await other.commit(aor, "", (record("b2"),), (claim[0], 2, 60))
        assert outcome == COMMITTED  # a higher count of the same nonce is fresh
    finally:
        await other.close()


async def test_a_commit_works_after_redis_forgot_the_script(redis_server: RedisServer) -> None:
    location = RedisLocation(redis_server.new_database())
    await location.open()
    try:
        redis_server.command("SCRIPT", "FLUSH")  # as a restart or a failover does
        await location.apply([BindingOp.upsert(record("b1"))])
        assert [r.id for r in await location.load_account("alice@example.com")] == ["b1"]
    finally:
        await location.close()


async def test_commits_in_one_turn_after_redis_forgot_the_script(
    redis_server: RedisServer,
) -> None:
    """Commits sent together, every one refused NOSCRIPT: the script is loaded
    again and each commits once."""
    location = RedisLocation(redis_server.new_database())
    await location.open()
    try:
        redis_server.command("SCRIPT", "FLUSH")
        aors = [f"u{i}@example.com" for i in range(5)]
        await asyncio.gather(
            *(
                location.apply([BindingOp.upsert(record(f"b{i}", aor))])
                for i, aor in enumerate(aors)
            )
        )
        for i, aor in enumerate(aors):
            assert [r.id for r in await location.load_account(aor)] == [f"b{i}"]
        assert location.commits == 5 and location.conflicts == 0
    finally:
        await location.close()


async def test_the_round_trips_of_one_turn_share_a_pipeline(
    location: RedisLocation, shared_url: str
) -> None:
    """Reads asked for in one loop turn go in one round trip, and so do the
    commits that follow; each caller gets its own replies, and its own error."""
    aors = [f"u{i}@example.com" for i in range(20)]
    await location.apply([BindingOp.upsert(record("old", aors[0]))])
    cli(shared_url, "SET", "not-a-hash", "x")
    before = location.round_trips

    async def read_and_commit(aor: str) -> tuple[list[str], bool]:
        async with location.watch(aor) as watch:
            seen = [r.id for r in watch.records]
            state = await watch.commit([BindingOp.upsert(record(f"new-{aor}", aor))])
        return seen, state is not None

    async def wrong() -> None:
        await location.run(lambda pipe: pipe.hgetall("not-a-hash"))

    *results, error = await asyncio.gather(
        *(read_and_commit(aor) for aor in aors), wrong(), return_exceptions=True
    )
    assert isinstance(error, StorageError) and "WRONGTYPE" in str(error)
    assert results[0] == (["old"], True)
    assert all(result == ([], True) for result in results[1:])
    assert location.round_trips - before == 2  # the reads (and the wrong one), the commits
    assert location.problem is None


async def test_racing_writers_each_see_the_other(location: RedisLocation, shared_url: str) -> None:
    """Many writers each add one binding under "at most one": read, decide,
    commit, retry on conflict. Exactly one binding is left, whoever wins."""
    nodes = [RedisLocation(shared_url) for _ in range(4)]
    for node in nodes:
        await node.open()
    kicks = 0

    async def register(node: RedisLocation, name: str) -> None:
        nonlocal kicks
        while True:
            async with node.watch("bob@example.com") as watch:
                old = watch.records
                ops = [BindingOp.delete(r.id) for r in old]
                ops.append(BindingOp.upsert(record(name, aor="bob@example.com")))
                if await watch.commit(ops) is not None:
                    kicks += len(old)
                    return

    try:
        await asyncio.gather(*(register(n, f"d{i}") for i, n in enumerate(nodes)))
        left = await location.load_account("bob@example.com")
        assert len(left) == 1
        assert kicks == len(nodes) - 1  # every later writer replaced exactly one
    finally:
        for node in nodes:
            await node.close()


async def test_expiry_happens_once(location: RedisLocation, shared_url: str) -> None:
    at = now()
    await location.apply([BindingOp.upsert(record("b1", expires_at=at - 1))])
    others = [RedisLocation(shared_url) for _ in range(3)]
    for other in others:
        await other.open()
    try:
        results = await asyncio.gather(
            *(o.expire("alice@example.com", "b1", at) for o in [location, *others])
        )
        assert sorted(results) == [False, False, False, True]
        assert await location.load_account("alice@example.com") == []
    finally:
        for other in others:
            await other.close()


async def test_a_refreshed_binding_is_not_expired(location: RedisLocation) -> None:
    at = now()
    await location.apply([BindingOp.upsert(record("b1", expires_at=at + 30))])
    seen: list[AccountState] = []
    assert not await location.expire("alice@example.com", "b1", at, seen.append)
    assert len(await location.load_account("alice@example.com")) == 1
    # what was read goes to the caller's copy, which had it due: it catches up
    [state] = seen
    assert [r.expires_at for r in state.records] == [at + 30] and state.change > (0, 0)


async def test_apply_finds_the_account_of_a_delete(location: RedisLocation) -> None:
    await location.apply([BindingOp.upsert(record("b1")), BindingOp.upsert(record("b2"))])
    await location.apply([BindingOp.delete("b1"), BindingOp.delete("nothing")])
    assert [r.id for r in await location.load_account("alice@example.com")] == ["b2"]


async def test_changes_come_in_commit_order(location: RedisLocation) -> None:
    position, states = await location.snapshot()
    assert states == []
    await location.apply([BindingOp.upsert(record("b1"))])
    await location.apply([BindingOp.upsert(replace(record("b1"), cseq=2))])
    await location.apply([BindingOp.delete("b1")])
    await location.flush()  # the notices follow the commits
    changes = await location.changes(position, block_ms=100)
    assert [[r.cseq for r in state.records] for _, state in changes] == [[1], [2], []]
    ids = [state.change for _, state in changes]
    assert ids == sorted(ids) and len(set(ids)) == 3
    # a new snapshot starts after them
    position, states = await location.snapshot()
    assert states == [] and await location.changes(position, block_ms=10) == []


async def test_a_waiting_read_of_the_changes_holds_up_no_commit(location: RedisLocation) -> None:
    position, _ = await location.snapshot()
    reading = asyncio.ensure_future(location.changes(position, block_ms=5000))
    async with asyncio.timeout(2):  # well within the read's 5 s
        await location.apply([BindingOp.upsert(record("b1"))])
        await location.flush()
        changes = await reading
    assert [[r.id for r in state.records] for _, state in changes] == [["b1"]]


async def test_unreachable_at_open_is_one_line() -> None:
    with socket_closed() as port:
        loc = RedisLocation(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(StorageError) as err:
            await loc.open()
    text = str(err.value)
    assert "\n" not in text and f"Redis at 127.0.0.1:{port}/0" in text


async def test_down_then_back(shared_redis: RedisServer | RedisCluster) -> None:
    """Redis stops (one server; every master of a Redis Cluster): calls fail at
    once as unavailable and `problem` says so; it comes back: the location
    clears the problem by itself."""
    loc = RedisLocation(shared_redis.new_database())
    await loc.open()
    try:
        shared_redis.down()
        with pytest.raises(StorageUnavailableError):
            await loc.load_account("alice@example.com")
        assert loc.problem is not None and "unreachable" in loc.problem
        with pytest.raises(StorageUnavailableError):
            async with loc.watch("alice@example.com"):
                pass
        shared_redis.up()
        async with asyncio.timeout(10):
            while loc.problem is not None:
                await asyncio.sleep(0.05)
        assert await loc.load_account("alice@example.com") == []
    finally:
        shared_redis.up()
        await loc.close()


class socket_closed:
    """A loopback port nobody listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass
