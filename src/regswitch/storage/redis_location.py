"""The location of a cluster in Redis: every node's bindings, one decision per account.

Keys (the URL's database number separates clusters sharing one Redis):

    rs:loc:{alice@example.com}   hash    binding id -> JSON record (the account's bindings),
                                         and `#v`: the account's version (below)
    rs:loc-changes               stream  one entry per batch of one node's commits: for each,
                                         the account, its version and its new bindings

The `{user@domain}` hash tag puts everything about one account in one slot
(its nonce claims too, cluster/protection.py), and every script touches one
account's keys only, so the location works on
one Redis server and on a Redis Cluster alike (`redis+cluster://` URLs).

A decision about one account is committed with one script (`COMMIT`) that
rewrites the account's hash only if its version is still the one the decision
was made on -- else nothing is written, and the reply carries what the hash
holds now, for the caller to decide again on; nothing is ever written from a
stale view. The same script first claims the REGISTER's nonce count, if any
(`commit`, its key in the account's slot), so a registration makes one
command: the registrar decides on its node's copy of the account
(cluster/location.py). Writes that are no REGISTER's (an expiry, a console
delete) read the account first (`watch`, one round trip) and commit the same
way. The version is `ms-seq` like a stream id, made by the script from the
Redis clock and strictly rising per account (a clock that steps back only
bumps `seq`); it stays in the hash while the account has no bindings, and goes
only with the key, KEY_GRACE seconds after the last binding's expiry, so a
version once read is never seen again on that key (no ABA).

Reads and commits go through `run`: whatever every task asks of Redis in one
loop turn goes in one pipeline (on one server, over a connection of the
node's own: storage/resp.py), so under load one round trip carries the
commits of every REGISTER received in a turn. Each commit is still its own
script, conditional on its own account's version: sharing a pipeline changes
the cost, not the decision.

The change is appended after the commit, by the committing node's notice
writer, not in the same script: in Redis Cluster the stream lives in another
slot. What a node committed while its previous entry was being written goes in
one entry (one XADD, and one entry for the others to read, instead of one per
commit). A change carries the account's whole state and version, so the other
nodes' copies (cluster/location.py) order changes by the account's version, not
by stream position: two nodes' appends may interleave in any order, a stale one
is skipped. A notice that cannot be written (Redis unreachable) waits and is
written once Redis answers. A node that dies between its commit and the append
leaves the others' copies of that account behind until its next change (any
node's), their next resynchronisation, or their next commit to it (refused,
with the account as it is); a decision made on a stale copy is never written.

Redis unreachable: every call raises StorageUnavailableError at once and
`problem` says why until a background ping succeeds again (the REGISTER path
reads `problem` and answers 503 meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from regswitch.storage import resp
from regswitch.storage.base import (
    COMMITTED,
    CONFLICT,
    REPLAYED,
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
#: Stream entries (each one loop turn's changes of one node) read at most at once.
CHANGES_READ = 1000
#: Stream entries (batches of changes) kept, approximately: a node further behind resynchronises.
CHANGES_KEPT = 100_000
#: An account's hash outlives its last binding's expiry by this much (s), so an
#: account nobody expires (every node down) still leaves Redis in the end.
KEY_GRACE = 300
#: Commits retried on conflict by `apply` / `expire` before giving up.
MAX_ATTEMPTS = 50
#: Seconds `close` waits for this node's change notices still to be written.
FLUSH_TIMEOUT = 2.0

CHANGES = "rs:loc-changes"
VERSION = "#v"  # the version's field in an account's hash (binding ids are never this)
_ACCOUNT_PREFIX = "rs:loc:{"
_RECORD_FIELDS = tuple(f.name for f in fields(BindingRecord))
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SCHEMES = {"redis", "rediss", "unix"} | _CLUSTER_SCHEMES.keys()

#: KEYS[1] the account's hash; KEYS[2], if given, a nonce's claim key (rs:nc:{account}:nonce,
#: the account's slot). ARGV: the version the decision was made on ('' for none); PEXPIREAT ms,
#: or '' to confirm the version only, writing nothing; the nonce count to claim and its key's
#: time to live ('' '' without KEYS[2]); then binding id / record pairs (the account's whole
#: new state). Replies {0}: the nonce count was used already, nothing done; {1, version}:
#: written (or confirmed); {2, the account's hash}: the account changed since, nothing
#: written (a count given is claimed: the caller decides again on what the hash holds).
COMMIT = """
if KEYS[2] then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tonumber(ARGV[3]) <= used then return {0} end
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
end
local seen = redis.call('HGET', KEYS[1], '#v') or ''
if seen ~= ARGV[1] then return {2, redis.call('HGETALL', KEYS[1])} end
if ARGV[2] == '' then return {1, seen} end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local version = string.format('%d-0', ms)
local dash = string.find(seen, '-', 1, true)
if dash then
  local last = tonumber(string.sub(seen, 1, dash - 1))
  if last >= ms then
    version = string.format('%d-%d', last, tonumber(string.sub(seen, dash + 1)) + 1)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '#v', version, unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return {1, version}
"""

#: a nonce count to claim with a commit: its key (in the account's slot), the count, the
#: key's time to live (s)
Claim = tuple[str, int, int]

#: queues commands on a pipeline (see RedisLocation.run)
Queue = Callable[[Any], None]


def account_key(aor: str) -> str:
    return f"{_ACCOUNT_PREFIX}{aor}}}"


def aor_of_key(key: str) -> str:
    return key[len(_ACCOUNT_PREFIX) : -1]


def is_cluster(url: str) -> bool:
    """Whether `url` names a Redis Cluster (redis+cluster://HOST:PORT)."""
    return urlsplit(url).scheme.lower() in _CLUSTER_SCHEMES


def check_url(url: str) -> str:
    """`url` if it names a Redis server (redis://HOST:PORT/N, rediss://, unix://) or a
    Redis Cluster (redis+cluster://HOST:PORT, rediss+cluster://: any one of its
    nodes); ValueError naming what is wrong. Connects to nothing."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError as exc:
        raise ValueError(f"cluster URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"cluster URL {url!r}: expected redis://HOST:PORT/N (or rediss://, unix://,"
            " redis+cluster://HOST:PORT)"
        )
    if scheme != "unix" and not parts.hostname:
        raise ValueError(f"cluster URL {url!r} names no host: expected redis://HOST:PORT/N")
    db = parts.path.lstrip("/")
    if scheme != "unix" and db and not db.isdigit():
        raise ValueError(f"cluster URL {url!r}: the database must be a number, not {db!r}")
    if scheme in _CLUSTER_SCHEMES and db not in ("", "0"):
        raise ValueError(f"cluster URL {url!r}: a Redis Cluster has database 0 only")
    return url


def where(url: str) -> str:
    """The server, without a password (for messages)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "unix":
        return f"unix:{parts.path}"
    if scheme in _CLUSTER_SCHEMES:
        return f"cluster {parts.hostname}:{parts.port or 6379}"
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


#: json.dumps with separators builds an encoder per call, in Python: one, made once
_compact = json.JSONEncoder(separators=(",", ":")).encode


def encode(record: BindingRecord) -> str:
    # not dataclasses.asdict: it deep-copies every field, a tenth of a commit's CPU
    return _compact({name: getattr(record, name) for name in _RECORD_FIELDS})


def decode(text: str) -> BindingRecord:
    return record_of(json.loads(text))


def record_of(data: dict[str, Any]) -> BindingRecord:
    """A record from its JSON object, decoded already (a change entry's)."""
    values = {name: data[name] for name in _RECORD_FIELDS if name in data}
    values["path"] = tuple(values.get("path") or ())
    return BindingRecord(**values)


def decode_account(values: dict[str, str]) -> tuple[str, list[BindingRecord]]:
    """An account's hash as read: its version ('' for none) and its bindings."""
    return values.get(VERSION, ""), [decode(v) for k, v in values.items() if k != VERSION]


def stream_id(text: str) -> tuple[int, int]:
    """`ms-seq` (a stream id, an account's version) as a pair that orders them; (0, 0) for ''."""
    ms, _, seq = text.partition("-")
    return int(ms or 0), int(seq or 0)


def version_text(change: tuple[int, int]) -> str:
    """An account's version as the location writes it; '' for (0, 0), an account never committed."""
    return f"{change[0]}-{change[1]}" if change != (0, 0) else ""


def _unavailable(exc: BaseException) -> bool:
    # a Redis Cluster says so in words of its own: no node reachable, a slot
    # without a master, CLUSTERDOWN (not RedisErrors, some of them)
    return isinstance(
        exc,
        RedisConnectionError
        | RedisTimeoutError
        | OSError
        | asyncio.TimeoutError
        | RedisClusterUnreachableError
        | SlotNotCoveredError
        | ClusterDownError,
    )


class _Watch:
    """One account as read, and its conditional commit (AccountWatch in storage/base.py)."""

    def __init__(
        self, owner: RedisLocation, aor: str, version: str, records: list[BindingRecord]
    ) -> None:
        self._owner = owner
        self._aor = aor
        self._version = version
        self._records = records

    @property
    def records(self) -> list[BindingRecord]:
        return list(self._records)

    @property
    def change(self) -> tuple[int, int]:
        """The version read (or last committed through this watch), ordered."""
        return stream_id(self._version)

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
        outcome, written = await self._owner.commit(self._aor, self._version, records)
        if outcome != COMMITTED:
            return None
        self._version = version_text(written.change)
        self._records = list(records)
        return written


class _Reading:
    """`async with location.watch(aor) as watch`: the read on entry; nothing
    is held in Redis, so nothing to release on exit."""

    def __init__(self, owner: RedisLocation, aor: str) -> None:
        self._owner = owner
        self._aor = aor

    async def __aenter__(self) -> _Watch:
        return await self._owner.read(self._aor)

    async def __aexit__(self, *exc: object) -> None:
        return None


#: seconds a stop waits for a task reading Redis to end once cancelled
STOP_WAIT = 2.0


def asked_to_stop() -> bool:
    """Whether the running task was cancelled, even if the cancellation was
    swallowed on the way (see stop_reader): a reading loop checks it each turn."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop_reader(task: asyncio.Task[None]) -> None:
    """Cancel a task that reads Redis (a stream follower) and wait for it, at
    most STOP_WAIT: redis-py can swallow a cancellation in mid-read and go on
    reading. Such a task ends when its client is closed next (`call` then
    raises CancelledError, since the task was asked to stop), or at its loop's
    next turn (`asked_to_stop`)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_WAIT)
    if not done:
        log.warning("%s did not stop at once; it ends when Redis is closed", task.get_name())
    elif not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


class RedisLocation:
    """The shared location (storage.base.SharedBindingStore) on one Redis or a Redis Cluster."""

    def __init__(self, url: str, clock: Callable[[], float] | None = None) -> None:
        self.url = check_url(url)
        self.where = where(url)
        self.cluster = is_cluster(url)
        self.clock = clock or time.time
        self.node = ""  # set by a cluster node: marks its change notices (see `changes`)
        self._client: aioredis.Redis | RedisCluster | None = None
        self._problem: str | None = None
        self._probe: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._scripts: dict[str, str] = {}  # sha -> text, loaded on open and after a NOSCRIPT
        self.commit_sha = self.script(COMMIT)
        self._notices: list[tuple[AccountState, str]] = []
        self._writer: asyncio.Task[None] | None = None
        # the round trips' own connection (storage/resp.py), with redis-py's
        # connection settings; None on a Redis Cluster or over TLS: redis-py's pipeline
        self._lean: resp.Link | None = None
        self._reading: resp.Link | None = None  # the change stream's (`changes`)
        self._round: list[tuple[Queue, asyncio.Future[list[Any]]]] = []  # `run`s of this turn
        self._rounds: set[asyncio.Task[None]] = set()  # their round trips in flight
        self.conflicts = 0  # commits refused because another node came first
        self.commits = 0
        self.round_trips = 0  # pipelines sent by `run` (each serving one loop turn's calls)
        self.outages = 0
        self.notices_lost = 0

    # -- lifecycle

    async def open(self) -> None:
        """Connect and check the server answers; StorageError with one line otherwise."""
        if self._client is not None:
            return
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": COMMAND_TIMEOUT,
        }
        client: aioredis.Redis | RedisCluster
        try:
            if self.cluster:
                scheme, rest = self.url.split("://", 1)
                seed = f"{_CLUSTER_SCHEMES[scheme.lower()]}://{rest}"
                client = RedisCluster.from_url(seed, **options)
            else:
                client = aioredis.Redis.from_url(self.url, **options)
        except (RedisError, ValueError) as exc:
            raise StorageError(f"cannot reach Redis at {self.where}: {exc}") from None
        try:
            await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT + 1)
            info = await client.execute_command("INFO", "server")
            self._client = client
            await self._load_scripts()
        except Exception as exc:
            self._client = None
            with contextlib.suppress(Exception):
                await client.aclose()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(f"cannot reach Redis at {self.where}: {reason}") from None
        if self.cluster and isinstance(info, dict) and "redis_version" not in info:
            info = next(iter(info.values()), {})  # one answer per node: any will do
        version = str(info.get("redis_version", "0"))
        if int(version.split(".")[0] or 0) < 6:
            self._client = None
            await client.aclose()
            raise StorageError(f"Redis at {self.where} is version {version}; 6 or later needed")
        if isinstance(client, aioredis.Redis):
            pool = client.connection_pool
            if not issubclass(pool.connection_class, SSLConnection):
                settings = dict(pool.connection_kwargs)
                self._lean = resp.Link(settings, COMMAND_TIMEOUT, CONNECT_TIMEOUT)
                # a blocking read holds its connection, up to BLOCK_MS
                self._reading = resp.Link(
                    settings, BLOCK_MS / 1000 + COMMAND_TIMEOUT, CONNECT_TIMEOUT
                )
        self._up.set()

    async def wait_up(self) -> None:
        """Until Redis answers again (returns at once while it does)."""
        await self._up.wait()

    async def close(self) -> None:
        if self._problem is None:  # this node's last notices, if Redis takes them
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.flush(), FLUSH_TIMEOUT)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        for link in (self._lean, self._reading):
            if link is not None:
                link.close()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    @property
    def client(self) -> Any:
        """The redis-py client: `redis.asyncio.Redis`, or `RedisCluster` for a
        Redis Cluster (the commands used here behave alike on both)."""
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
        except (StorageError, NoScriptError):
            raise
        except Exception as exc:
            if asked_to_stop():
                # redis-py can turn a cancellation in mid-read into a connection
                # error; the task asked to stop must stop (a node's stop would
                # wait for ever on a reader that read on), and Redis is not down
                raise asyncio.CancelledError from exc
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> StorageError:
        if _unavailable(exc):
            self._down(exc)
            return StorageUnavailableError(self._problem or "Redis unavailable")
        if isinstance(exc, RedisError):
            return StorageError(f"Redis at {self.where}: {exc}")
        raise exc

    def script(self, text: str) -> str:
        """Register a Lua script (loaded at `open`, and again when Redis forgot
        it); its SHA1 for EVALSHA."""
        sha = hashlib.sha1(text.encode()).hexdigest()
        self._scripts[sha] = text
        return sha

    async def _load_scripts(self) -> None:
        for text in self._scripts.values():
            await self.client.script_load(text)  # on a Redis Cluster: every primary

    async def run(self, queue: Queue) -> list[Any]:
        """The replies to the commands `queue` puts on a pipeline, in one round
        trip shared with every other `run` of this loop turn (not a transaction;
        on a Redis Cluster one pipeline per node, in parallel). Under load the
        REGISTERs read in one turn make one round trip for their commits instead
        of one each. On one Redis server the pipeline is this node's own
        (storage/resp.py: redis-py's cost per command was most of a clustered
        registration's CPU); on a Redis Cluster or over TLS, redis-py's. Queue
        reads and scripts only (`hgetall`, `evalsha`), and the change notices'
        `xadd`: a script Redis does not know (it restarted, a replica took
        over) is loaded and that caller's commands sent again, since its
        NOSCRIPT changed nothing."""
        if self._problem is not None:
            raise StorageUnavailableError(self._problem)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._round.append((queue, future))
        if len(self._round) == 1:
            loop.call_soon(self._send_round)
        return await future

    def _send_round(self) -> None:
        batch, self._round = self._round, []
        task = asyncio.get_running_loop().create_task(self._round_trip(batch), name="redis-round")
        self._rounds.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._rounds.discard)

    async def _round_trip(self, batch: list[tuple[Queue, asyncio.Future[list[Any]]]]) -> None:
        """One pipeline for `batch`; each caller gets its own replies, or its own error."""
        self.round_trips += 1
        try:
            for attempt in range(2):
                pipe: Any = (
                    resp.Pipeline()
                    if self._lean is not None
                    else self.client.pipeline(transaction=False)
                )
                sizes: list[int] = []
                for queue, _ in batch:
                    before = len(pipe)
                    queue(pipe)
                    sizes.append(len(pipe) - before)
                replies: list[Any] = await self.call(self._execute(pipe))
                again: list[tuple[Queue, asyncio.Future[list[Any]]]] = []
                start = 0
                for (queue, future), size in zip(batch, sizes, strict=True):
                    mine, start = replies[start : start + size], start + size
                    if future.done():
                        continue  # its caller was cancelled
                    if not attempt and any(isinstance(r, NoScriptError) for r in mine):
                        again.append((queue, future))
                        continue
                    error = next((r for r in mine if isinstance(r, Exception)), None)
                    if error is None:
                        future.set_result(mine)
                    else:
                        future.set_exception(self._reply_error(error))
                if not again:
                    return
                await self.call(self._load_scripts())
                batch = again
            raise StorageError(f"Redis at {self.where} refuses to keep the location's scripts")
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else StorageError(
                        f"Redis at {self.where}: the round trip was stopped"))  # fmt: skip
            if not isinstance(exc, Exception):
                raise

    async def _execute(self, pipe: Any) -> list[Any]:
        """The replies to `pipe`, error replies among them as exceptions."""
        if self._lean is None:
            return list(await pipe.execute(raise_on_error=False))
        return await self._lean.execute(pipe)

    def _reply_error(self, reply: Exception) -> Exception:
        """What a caller gets for an error reply of its own (StorageError, or the error)."""
        try:
            return self._failure(reply)
        except Exception as exc:
            return exc

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

    # -- change notices (see the module docstring)

    def notify(self, state: AccountState, records: str) -> None:
        """Append `state` (committed here; `records`: its bindings as JSON) to the
        change stream, soon and in order: what commits while a batch is written
        goes in the next batch."""
        self._notices.append((state, records))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_notices(), name="location-notices"
            )

    async def flush(self) -> None:
        """Until every change committed here so far is in the change stream."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def _write_notices(self) -> None:
        while self._notices:
            batch, self._notices = self._notices, []
            # [[account, version, [record, ...]], ...]: the records are JSON already
            changes = ",".join(
                f'[{json.dumps(state.aor)},"{state.change[0]}-{state.change[1]}",{records}]'
                for state, records in batch
            )
            fields = {"node": self.node, "changes": f"[{changes}]"}

            # on `run`'s round trip (the turn's commits may share it): never
            # sent again, since its own reply is no NOSCRIPT
            def append(pipe: Any, fields: dict[str, str] = fields) -> None:
                pipe.xadd(CHANGES, fields, maxlen=CHANGES_KEPT, approximate=True)

            try:
                await self.run(append)
            except StorageUnavailableError:
                self._notices[:0] = batch  # written once Redis answers again
                await self.wait_up()
            except StorageError as exc:
                # the accounts' next changes (or the nodes' resyncs) carry them instead
                self.notices_lost += len(batch)
                log.error("%d change notice(s) not written: %s", len(batch), exc)

    # -- reads

    async def load_account(self, aor: str) -> list[BindingRecord]:
        values = await self.call(self.client.hgetall(account_key(aor)))
        return decode_account(values)[1]

    async def load(self) -> list[BindingRecord]:
        """Every binding of every account (a node's start, a resynchronisation)."""
        _, states = await self.snapshot()
        return [r for state in states for r in state.records]

    async def snapshot(self) -> tuple[str, list[AccountState]]:
        """The change stream's last id, then every account with its version: a
        copy built from this and then the changes after that id misses nothing
        (a commit's notice is appended after the commit)."""
        client = self.client
        last = await self.call(client.xrevrange(CHANGES, count=1))
        position = str(last[0][0]) if last else "0-0"
        keys: list[str] = await self.call(self._keys())
        states: list[AccountState] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]

            def read(pipe: Any, chunk: list[str] = chunk) -> None:
                for key in chunk:
                    pipe.hgetall(key)

            results = await self.run(read)
            for key, values in zip(chunk, results, strict=True):
                version, records = decode_account(values)
                if records:
                    states.append(AccountState(aor_of_key(key), tuple(records), stream_id(version)))
        return position, states

    async def _keys(self) -> list[str]:
        """Every account's key (SCAN; on a Redis Cluster, every primary's)."""
        return [k async for k in self.client.scan_iter(match=_ACCOUNT_PREFIX + "*", count=1000)]

    async def changes(
        self, after: str, block_ms: int = BLOCK_MS
    ) -> list[tuple[str, AccountState | None]]:
        """Commits after stream id `after` (each with the id of its entry, in
        order), waiting up to `block_ms` for the first; an entry of this node's
        own (`node`) comes as one None, undecoded: it applied them."""
        reply = await self.call(self._read_changes(after, block_ms))
        out: list[tuple[str, AccountState | None]] = []
        for _stream, entries in reply or ():
            for entry_id, data in entries:
                entry = str(entry_id)
                if self.node and data.get("node") == self.node:
                    out.append((entry, None))
                    continue
                for aor, version, records in json.loads(data["changes"]):
                    state = AccountState(
                        aor, tuple(record_of(r) for r in records), stream_id(version)
                    )
                    out.append((entry, state))
        return out

    async def _read_changes(self, after: str, block_ms: int) -> Any:
        """XREAD of the change stream, as redis-py returns it. On one server it
        goes over a lean connection (storage/resp.py) of its own, since a
        blocking read holds its connection: under load the follower reads a few
        hundred times a second, and redis-py's work per read was a tenth of a
        second worker's CPU."""
        if self._reading is None:
            return await self.client.xread({CHANGES: after}, count=CHANGES_READ, block=block_ms)
        pipe = resp.Pipeline()
        pipe.xread({CHANGES: after}, count=CHANGES_READ, block=min(block_ms, BLOCK_MS))
        (reply,) = await self._reading.execute(pipe)
        if isinstance(reply, Exception):
            raise reply
        return reply

    # -- one account, optimistically

    def watch(self, aor: str) -> _Reading:
        """Read `aor` in one round trip; the watch's commit applies only if
        nobody changed the account since."""
        return _Reading(self, aor)

    async def read(self, aor: str) -> _Watch:
        """`aor` as it is now, and its conditional commit (`watch`)."""
        key = account_key(aor)
        (values,) = await self.run(lambda pipe: pipe.hgetall(key))
        version, records = decode_account(values)
        return _Watch(self, aor, version, records)

    async def commit(
        self,
        aor: str,
        version: str,
        records: tuple[BindingRecord, ...] | None,
        claim: Claim | None = None,
    ) -> tuple[str, AccountState]:
        """Make `records` the account's whole state if its version is still
        `version` (records None: write nothing, only confirm the version), in one
        script that first claims `claim`'s nonce count if given. COMMITTED and
        the state written (or confirmed: then with no records); CONFLICT and the
        account as it is now (the claim, if any, was made); REPLAYED (the count
        was used: nothing done) and the state unknown."""
        key = account_key(aor)
        keys = [key] if claim is None else [key, claim[0]]
        args: list[Any] = [version, ""]
        if records is not None:
            last = max((r.expires_at for r in records), default=self.clock())
            args[1] = int((last + KEY_GRACE) * 1000)
        args += ("", "") if claim is None else (claim[1], claim[2])
        encoded = [] if records is None else [encode(r) for r in records]
        for r, text in zip(records or (), encoded, strict=True):
            args += (r.id, text)
        sha = self.commit_sha
        (reply,) = await self.run(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args))
        if reply[0] == 0:
            return REPLAYED, AccountState(aor, ())
        if reply[0] == 2:
            self.conflicts += 1
            flat = reply[1]
            now, current = decode_account(dict(zip(flat[::2], flat[1::2], strict=True)))
            return CONFLICT, AccountState(aor, tuple(current), stream_id(now))
        written = AccountState(aor, records or (), stream_id(str(reply[1])))
        if records is not None:
            self.commits += 1
            self.notify(written, "[" + ",".join(encoded) + "]")
        return COMMITTED, written

    async def commit_retrying(self, aor: str, ops: Sequence[BindingOp]) -> AccountState | None:
        """`ops` applied to whatever the account holds now (a blind write, e.g.
        a console delete), retried on conflict; None if it kept conflicting."""
        for _ in range(MAX_ATTEMPTS):
            async with self.watch(aor) as watch:
                state = await watch.commit(ops)
            if state is not None:
                return state
        return None

    async def expire(
        self,
        aor: str,
        binding_id: str,
        now: float,
        seen: Callable[[AccountState], None] | None = None,
    ) -> bool:
        """Remove the binding if it is still there and due; True when this call
        did. `seen` gets the account as this call left it, or as read when it
        removed nothing (a copy that missed a change catches up here)."""
        for _ in range(MAX_ATTEMPTS):
            async with self.watch(aor) as watch:
                record = next((r for r in watch.records if r.id == binding_id), None)
                if record is None or record.expires_at > now:
                    if seen is not None:
                        seen(AccountState(aor, tuple(watch.records), watch.change))
                    return False  # expired by another node, or refreshed meanwhile
                state = await watch.commit([BindingOp.delete(binding_id)])
            if state is not None:
                if seen is not None:
                    seen(state)
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
            "location_round_trips": self.round_trips,
            "location_conflicts": self.conflicts,
            "location_notices_lost": self.notices_lost,
        }
