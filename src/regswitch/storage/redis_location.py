"""The location of a cluster in Redis: every node's bindings, one decision per account.

Keys (the URL's database number separates clusters sharing one Redis):

    rs:loc:{alice@example.com}   hash    binding id -> JSON record (the account's bindings)
    rs:loc-changes               stream  one entry per commit: the account and its new bindings

The `{user@domain}` hash tag puts everything about one account in one slot,
so a transaction over an account is legal in Redis Cluster too.

A decision about one account (`watch`): WATCH the account's hash, read it,
decide, then MULTI / rewrite the hash / XADD the change / EXEC. EXEC fails
when another node changed the hash in between, and the caller decides again
on what is there now; nothing is ever written from a stale read. The change
entry is written in the same transaction as the bindings, so every node's
copy (cluster/replica.py) hears of every commit, in commit order; its stream
id orders commits location-wide. (That XADD makes the transaction span a
second slot: with Redis Cluster the notice would have to be a second step.
Only a single Redis, or a primary with replicas, is supported for now.)

Redis unreachable: every call raises StorageUnavailableError at once and
`problem` says why until a background ping succeeds again (the REGISTER path
reads `problem` and answers 503 meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, fields
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from regswitch.storage.base import (
    AccountState,
    BindingOp,
    BindingRecord,
    StorageError,
    StorageUnavailableError,
)

log = logging.getLogger("regswitch.storage.redis")

#: Seconds to wait for a connection and for a command: a hung Redis counts as down after this.
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
#: How long a blocking read of the change stream waits (ms); well under COMMAND_TIMEOUT.
BLOCK_MS = 1000
#: Stream entries kept (approximately): a node further behind than this resynchronises.
CHANGES_KEPT = 100_000
#: An account's hash outlives its last binding's expiry by this much (s), so an
#: account nobody expires (every node down) still leaves Redis in the end.
KEY_GRACE = 300
#: Commits retried on conflict by `apply` / `expire` before giving up.
MAX_ATTEMPTS = 50

CHANGES = "rs:loc-changes"
_ACCOUNT_PREFIX = "rs:loc:{"
_RECORD_FIELDS = tuple(f.name for f in fields(BindingRecord))


def account_key(aor: str) -> str:
    return f"{_ACCOUNT_PREFIX}{aor}}}"


def aor_of_key(key: str) -> str:
    return key[len(_ACCOUNT_PREFIX) : -1]


def check_url(url: str) -> str:
    """`url` if it names a Redis server (redis://HOST:PORT/N, rediss://, unix://);
    ValueError naming what is wrong. Connects to nothing."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError as exc:
        raise ValueError(f"cluster URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"cluster URL {url!r}: expected redis://HOST:PORT/N (or rediss://, unix://)"
        )
    if scheme != "unix" and not parts.hostname:
        raise ValueError(f"cluster URL {url!r} names no host: expected redis://HOST:PORT/N")
    db = parts.path.lstrip("/")
    if scheme != "unix" and db and not db.isdigit():
        raise ValueError(f"cluster URL {url!r}: the database must be a number, not {db!r}")
    return url


def where(url: str) -> str:
    """The server, without a password (for messages)."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        return f"unix:{parts.path}"
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def encode(record: BindingRecord) -> str:
    return json.dumps(asdict(record), separators=(",", ":"))


def decode(text: str) -> BindingRecord:
    data = json.loads(text)
    values = {name: data[name] for name in _RECORD_FIELDS if name in data}
    values["path"] = tuple(values.get("path") or ())
    return BindingRecord(**values)


def stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _unavailable(exc: BaseException) -> bool:
    return isinstance(
        exc, RedisConnectionError | RedisTimeoutError | OSError | asyncio.TimeoutError
    )


class _Watch:
    """One account's watched snapshot (see AccountWatch in storage/base.py)."""

    def __init__(self, owner: RedisLocation, pipe: Any, aor: str, records: list[BindingRecord]):
        self._owner = owner
        self._pipe = pipe
        self._aor = aor
        self._records = records

    @property
    def records(self) -> list[BindingRecord]:
        return list(self._records)

    async def commit(self, ops: Sequence[BindingOp]) -> AccountState | None:
        state = {r.id: r for r in self._records}
        for op in ops:
            if op.kind == "upsert":
                assert op.record is not None
                if op.record.aor != self._aor:
                    raise ValueError(f"op for {op.record.aor} in a commit of {self._aor}")
                state[op.binding_id] = op.record
            else:
                state.pop(op.binding_id, None)
        records = tuple(state.values())
        key = account_key(self._aor)
        pipe = self._pipe
        pipe.multi()
        pipe.delete(key)
        if records:
            pipe.hset(key, mapping={r.id: encode(r) for r in records})
            last = max(r.expires_at for r in records)
            pipe.pexpireat(key, int((last + KEY_GRACE) * 1000))
        pipe.xadd(
            CHANGES,
            {"aor": self._aor, "records": "[" + ",".join(encode(r) for r in records) + "]"},
            maxlen=CHANGES_KEPT,
            approximate=True,
        )
        try:
            result = await self._owner.call(pipe.execute())
        except WatchError:
            self._owner.conflicts += 1
            return None
        self._owner.commits += 1
        self._records = list(records)
        return AccountState(self._aor, records, stream_id(str(result[-1])))


class RedisLocation:
    """The shared location (storage.base.SharedBindingStore) on one Redis."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        self.where = where(url)
        self._client: aioredis.Redis | None = None
        self._problem: str | None = None
        self._probe: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self.conflicts = 0  # commits refused because another node came first
        self.commits = 0
        self.outages = 0

    # -- lifecycle

    async def open(self) -> None:
        """Connect and check the server answers; StorageError with one line otherwise."""
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
        )
        try:
            await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT + 1)
            info = await client.info("server")
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.aclose()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(f"cannot reach Redis at {self.where}: {reason}") from None
        version = str(info.get("redis_version", "0"))
        if int(version.split(".")[0] or 0) < 6:
            await client.aclose()
            raise StorageError(f"Redis at {self.where} is version {version}; 6 or later needed")
        self._client = client
        self._up.set()

    async def wait_up(self) -> None:
        """Until Redis answers again (returns at once while it does)."""
        await self._up.wait()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise StorageError("the Redis location is not open")
        return self._client

    @property
    def problem(self) -> str | None:
        return self._problem

    async def call(self, awaitable: Any) -> Any:
        """Await a Redis command; an unreachable server marks the location down."""
        if self._problem is not None:
            awaitable.close()
            raise StorageUnavailableError(self._problem)
        try:
            return await awaitable
        except (WatchError, StorageError):
            raise
        except Exception as exc:
            if _unavailable(exc):
                self._down(exc)
                raise StorageUnavailableError(self._problem or "Redis unavailable") from exc
            if isinstance(exc, RedisError):
                raise StorageError(f"Redis at {self.where}: {exc}") from exc
            raise

    def _down(self, exc: BaseException) -> None:
        if self._problem is None:
            self.outages += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._problem = f"Redis at {self.where} unreachable: {reason}"
            self._up.clear()
            log.error("%s", self._problem)
            self._probe = asyncio.get_running_loop().create_task(self._wait_up())

    async def _wait_up(self) -> None:
        """Ping until Redis answers, then clear the problem (nothing else
        tries while it is set: the REGISTER path refuses with 503 first)."""
        while True:
            await asyncio.sleep(0.5)
            try:
                await asyncio.wait_for(self.client.ping(), CONNECT_TIMEOUT)
            except Exception:
                continue
            log.warning("Redis at %s reachable again", self.where)
            self._problem = None
            self._probe = None
            self._up.set()
            return

    # -- reads

    async def read(self, aor: str) -> list[BindingRecord]:
        values = await self.call(self.client.hgetall(account_key(aor)))
        return [decode(v) for v in values.values()]

    async def load(self) -> list[BindingRecord]:
        """Every binding of every account (a node's start, a resynchronisation)."""
        _, states = await self.snapshot()
        return [r for state in states for r in state.records]

    async def snapshot(self) -> tuple[str, list[AccountState]]:
        """The change stream's last id, then every account: a copy built from
        this and then the changes after that id misses nothing."""
        client = self.client
        last = await self.call(client.xrevrange(CHANGES, count=1))
        position = str(last[0][0]) if last else "0-0"
        keys: list[str] = []
        cursor: int = 0
        while True:
            cursor, batch = await self.call(
                client.scan(cursor, match=_ACCOUNT_PREFIX + "*", count=1000)
            )
            keys.extend(batch)
            if not cursor:
                break
        states: list[AccountState] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.hgetall(key)
            results = await self.call(pipe.execute())
            for key, values in zip(chunk, results, strict=True):
                if values:
                    records = tuple(decode(v) for v in values.values())
                    states.append(AccountState(aor_of_key(key), records))
        return position, states

    async def changes(self, after: str, block_ms: int = BLOCK_MS) -> list[tuple[str, AccountState]]:
        """Commits after stream id `after`, waiting up to `block_ms` for the first."""
        reply = await self.call(self.client.xread({CHANGES: after}, count=1000, block=block_ms))
        out: list[tuple[str, AccountState]] = []
        for _stream, entries in reply or ():
            for entry_id, data in entries:
                records = tuple(decode(json.dumps(item)) for item in json.loads(data["records"]))
                out.append(
                    (str(entry_id), AccountState(data["aor"], records, stream_id(str(entry_id))))
                )
        return out

    # -- one account, optimistically

    @asynccontextmanager
    async def watch(self, aor: str) -> AsyncIterator[_Watch]:
        if self._problem is not None:
            raise StorageUnavailableError(self._problem)
        pipe = self.client.pipeline(transaction=True)
        try:
            key = account_key(aor)
            await self.call(pipe.watch(key))
            values = await self.call(pipe.hgetall(key))
            watch = _Watch(self, pipe, aor, [decode(v) for v in values.values()])
            yield watch
        finally:
            with contextlib.suppress(Exception):
                await pipe.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def commit_retrying(self, aor: str, ops: Sequence[BindingOp]) -> AccountState | None:
        """`ops` applied to whatever the account holds now (a blind write, e.g.
        a console delete), retried on conflict; None if it kept conflicting."""
        for _ in range(MAX_ATTEMPTS):
            async with self.watch(aor) as watch:
                state = await watch.commit(ops)
            if state is not None:
                return state
        return None

    async def expire(self, aor: str, binding_id: str, now: float) -> bool:
        for _ in range(MAX_ATTEMPTS):
            async with self.watch(aor) as watch:
                record = next((r for r in watch.records if r.id == binding_id), None)
                if record is None or record.expires_at > now:
                    return False  # expired by another node, or refreshed meanwhile
                state = await watch.commit([BindingOp.delete(binding_id)])
            if state is not None:
                return True
        return False

    # -- BindingStore

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        by_account: dict[str, list[BindingOp]] = {}
        known: dict[str, str] = {}
        for op in ops:
            if op.record is not None:
                known[op.binding_id] = op.record.aor
            elif op.aor is not None:
                known[op.binding_id] = op.aor
        missing = [op.binding_id for op in ops if op.binding_id not in known]
        if missing:
            known.update(await self._find(missing))
        for op in ops:
            aor = known.get(op.binding_id)
            if aor is not None:  # a delete of a binding no account holds: nothing to do
                by_account.setdefault(aor, []).append(op)
        for aor, account_ops in by_account.items():
            if await self.commit_retrying(aor, account_ops) is None:
                raise StorageError(f"{aor}: the location kept changing; the write was not made")

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        return asyncio.ensure_future(self.apply(ops))

    async def _find(self, binding_ids: list[str]) -> dict[str, str]:
        """binding id -> account, for deletes that name only the binding (a
        scan of the whole location: callers that know the account say so)."""
        wanted = set(binding_ids)
        found: dict[str, str] = {}
        for record in await self.load():
            if record.id in wanted:
                found[record.id] = record.aor
        return found

    @property
    def stats(self) -> dict[str, float]:
        return {
            "redis_up": 0 if self._problem else 1,
            "redis_outages": self.outages,
            "location_commits": self.commits,
            "location_conflicts": self.conflicts,
        }
