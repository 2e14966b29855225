"""A lean pipeline to one Redis server: the REGISTER path's round trips and
the change notices' appends (RedisLocation.run), and, on a connection of its
own, the reads of the change stream.

redis-py's pipeline does per command what a node's hot path cannot afford
at thousands of REGISTERs a second: a pool checkout, its own packing, a
timeout per reply read and its own parsing steps. This connection writes the
commands of a round trip as one buffer it encodes itself, reads the replies
with hiredis (redis-py's parser in C) as they arrive, and hands each waiting
round trip its replies, in the order sent (Redis answers in order). One timer
a round trip, not one a reply.

Error replies come back in the reply list, as exceptions (redis-py's
`raise_on_error=False`): `NoScriptError` for NOSCRIPT, `ResponseError` for the
rest. A broken, closed or silent connection fails every waiting round trip
with redis-py's ConnectionError or TimeoutError (the location then says Redis
is down); a `Link` connects again for the next round trip.

A Redis Cluster needs slot routing and redirections: redis-py's cluster
pipeline does that, and the location uses it there (storage/redis_location.py).
So do TLS connections (rediss://).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: turns a command's raw reply into what redis-py would return (None: as it is)
Convert = Callable[[Any], Any] | None


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """HGETALL's flat reply as redis-py gives it: a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _entries(reply: Any) -> Any:
    """XREAD's reply as redis-py gives it: [[stream, [(id, {field: value})]]], or None."""
    if reply is None:
        return None
    return [
        [stream, [(entry_id, _pairs(fields)) for entry_id, fields in entries]]
        for stream, entries in reply
    ]


def _encode(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):
        raise TypeError("a bool is no Redis argument")  # as redis-py refuses it
    if isinstance(arg, int | float):
        return repr(arg).encode()
    raise TypeError(f"a {type(arg).__name__} is no Redis argument")


def _error(reply: ResponseError) -> ResponseError:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else reply


class Pipeline:
    """The commands of one round trip (the subset of redis-py's pipeline the
    location queues: `RedisLocation.run`)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.converts: list[Convert] = []

    def __len__(self) -> int:
        return len(self.converts)

    def command(self, *args: Any, convert: Convert = None) -> None:
        chunks = self.chunks
        chunks.append(b"*%d\r\n" % len(args))
        for arg in args:
            data = _encode(arg)
            chunks.append(b"$%d\r\n" % len(data))
            chunks.append(data)
            chunks.append(b"\r\n")
        self.converts.append(convert)

    def hgetall(self, key: str) -> None:
        self.command("HGETALL", key, convert=_pairs)

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> None:
        self.command("EVALSHA", sha, numkeys, *args)

    def xread(self, streams: dict[str, str], count: int, block: int) -> None:
        """Read entries after each stream's id, waiting up to `block` ms for one:
        the connection carries nothing else meanwhile (give it one of its own)."""
        self.command(
            "XREAD", "COUNT", count, "BLOCK", block, "STREAMS", *streams, *streams.values(),
            convert=_entries,
        )  # fmt: skip

    def xadd(
        self, name: str, fields: dict[str, str], maxlen: int | None = None, approximate: bool = True
    ) -> None:
        trim: tuple[Any, ...] = ()
        if maxlen is not None:
            trim = ("MAXLEN", "~" if approximate else "=", maxlen)
        self.command("XADD", name, *trim, "*", *(x for pair in fields.items() for x in pair))


class _Waiter:
    __slots__ = ("converts", "future", "replies")

    def __init__(self, converts: list[Convert], future: asyncio.Future[list[Any]]) -> None:
        self.converts = converts
        self.future = future
        self.replies: list[Any] = []


class Connection(asyncio.Protocol):
    """One connection; `execute` a Pipeline, any number in flight."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8")
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.broken: Exception | None = None  # why it can carry nothing more

    @classmethod
    async def open(
        cls, kwargs: dict[str, Any], timeout: float, connect_timeout: float
    ) -> Connection:
        """Connect as redis-py's connection `kwargs` say (host and port, or a
        unix `path`; username, password, db). Raises redis-py's ConnectionError."""
        loop = asyncio.get_running_loop()
        connection = cls(timeout)
        try:
            async with asyncio.timeout(connect_timeout):
                if kwargs.get("path"):
                    await loop.create_unix_connection(lambda: connection, kwargs["path"])
                else:
                    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
                    await loop.create_connection(lambda: connection, host, port)
                setup = Pipeline()
                if kwargs.get("password"):
                    if kwargs.get("username"):
                        setup.command("AUTH", kwargs["username"], kwargs["password"])
                    else:
                        setup.command("AUTH", kwargs["password"])
                if kwargs.get("db"):
                    setup.command("SELECT", kwargs["db"])
                if len(setup):
                    for reply in await connection.execute(setup):
                        if isinstance(reply, Exception):
                            raise RedisConnectionError(f"Redis refused the connection: {reply}")
        except (OSError, TimeoutError) as exc:
            connection.close()
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def execute(self, pipe: Pipeline) -> asyncio.Future[list[Any]]:
        """Send `pipe`; its replies, converted, with error replies as exceptions."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.broken is not None or self._transport is None:
            future.set_exception(self.broken or RedisConnectionError("not connected to Redis"))
            return future
        if not len(pipe):
            future.set_result([])
            return future
        self._waiting.append(_Waiter(pipe.converts, future))
        self._transport.write(b"".join(pipe.chunks))
        if self._timer is None:
            self._arm()
        return future

    def close(self) -> None:
        self._fail(RedisConnectionError("the connection to Redis was closed"))

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclasses, but write alike
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(RedisConnectionError(f"Redis closed the connection: {exc or 'EOF'}"))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            reply = reader.gets()
        except hiredis.ProtocolError as exc:
            self._fail(RedisConnectionError(f"Redis sent garbage: {exc}"))
            return
        waiting = self._waiting
        answered = False
        while reply is not False:
            if not waiting:
                self._fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            waiter = waiting[0]
            convert = waiter.converts[len(waiter.replies)]
            if isinstance(reply, ResponseError):
                reply = _error(reply)
            elif convert is not None:
                reply = convert(reply)
            waiter.replies.append(reply)
            if len(waiter.replies) == len(waiter.converts):
                waiting.popleft()
                if not waiter.future.done():  # else its caller gave up: replies dropped
                    waiter.future.set_result(waiter.replies)
                answered = True
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisConnectionError(f"Redis sent garbage: {exc}"))
                return
        if answered:
            self._arm()  # the next round trip's time starts now: one timer per read, not per reply

    # -- failure

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(RedisTimeoutError(f"Redis did not answer within {self._timeout:g} s"))

    def _fail(self, exc: Exception) -> None:
        if self.broken is None:
            self.broken = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.future.done():
                waiter.future.set_exception(self.broken)
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()


class Link:
    """A connection opened on first use, and again on the first use after it
    broke: one opening, however many round trips wait for it."""

    def __init__(self, settings: dict[str, Any], timeout: float, connect_timeout: float) -> None:
        self._settings = settings  # redis-py's connection kwargs (Connection.open)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._connection: Connection | None = None
        self._opening = asyncio.Lock()

    async def execute(self, pipe: Pipeline) -> list[Any]:
        connection = self._connection
        if connection is None or connection.broken is not None:
            async with self._opening:
                connection = self._connection
                if connection is None or connection.broken is not None:
                    self._connection = connection = await Connection.open(
                        self._settings, self._timeout, self._connect_timeout
                    )
        return await connection.execute(pipe)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
