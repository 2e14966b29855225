"""The cluster bus: kicks, hang-ups and configuration changes to the nodes that must act.

One Redis stream (`rs:bus`); every node reads all of it from where it last
read, with a blocking XREAD, and acts on what is addressed to it or to every
node ("*"). Handlers are idempotent (a kick of a binding whose calls are
gone ends nothing; a changed account is read again from the database).

Delivery: at least once to every node that is alive, in publication order.
A stream entry stays (the last STREAM_KEPT of them) whether or not anyone
read it, so a node whose Redis connection drops for a moment reads what it
missed when it is back -- a kick published meanwhile still ends its calls.
Redis pub/sub would drop those messages silently. A node that starts (or
restarts) reads from the end as it was just before it loaded accounts and
parameters from the database: older messages concern calls it does not have
and settings it has just read. A message to a dead node is not kept for it:
its calls went with it (README "Cluster", node failure).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from regswitch.storage.base import StorageError, StorageUnavailableError
from regswitch.storage.redis_location import RedisLocation, asked_to_stop, stop_reader

log = logging.getLogger("regswitch.cluster")

STREAM = "rs:bus"
STREAM_KEPT = 10_000
BLOCK_MS = 1000

Handler = Callable[[str, dict[str, Any]], None]  # (sending node, payload)


class Bus:
    def __init__(self, redis: RedisLocation, node: str) -> None:
        self.redis = redis
        self.node = node
        self.handlers: dict[str, Handler] = {}
        self._position = "$"
        self._reader: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.received = 0
        self.sent = 0
        self.send_failures = 0

    async def mark(self) -> None:
        """Remember the stream's end now: reading starts there (call before
        loading what the messages would change)."""
        last = await self.redis.call(self.redis.client.xrevrange(STREAM, count=1))
        self._position = str(last[0][0]) if last else "0-0"

    def on(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    async def send(self, kind: str, to: str = "*", **payload: Any) -> None:
        """Publish now; raises StorageUnavailableError while Redis is down."""
        fields: dict[Any, Any] = {
            "from": self.node,
            "to": to,
            "kind": kind,
            "data": json.dumps(payload),
        }
        await self.redis.call(
            self.redis.client.xadd(STREAM, fields, maxlen=STREAM_KEPT, approximate=True)
        )
        self.sent += 1

    def post(self, kind: str, to: str = "*", **payload: Any) -> None:
        """Publish without waiting (the hot path); a failure is logged and counted."""
        task = asyncio.get_running_loop().create_task(self._post(kind, to, payload))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, kind: str, to: str, payload: dict[str, Any]) -> None:
        try:
            await self.send(kind, to, **payload)
        except StorageError as exc:
            self.send_failures += 1
            log.error("cluster bus: %s to %s not sent: %s", kind, to, exc)

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="bus")

    async def stop(self) -> None:
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=2.0)
        reader, self._reader = self._reader, None
        if reader is not None:
            await stop_reader(reader)

    async def _read(self) -> None:
        client = self.redis.client
        while not asked_to_stop():
            try:
                reply = await self.redis.call(
                    client.xread({STREAM: self._position}, count=500, block=BLOCK_MS)
                )
            except StorageUnavailableError:
                await self.redis.wait_up()  # then read on from where we were
                continue
            except StorageError:
                log.exception("cluster bus: reading failed")
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._position = str(entry_id)
                    self._dispatch(fields)

    def _dispatch(self, fields: dict[str, str]) -> None:
        sender = fields.get("from", "")
        if sender == self.node or fields.get("to") not in ("*", self.node):
            return
        handler = self.handlers.get(fields.get("kind", ""))
        if handler is None:
            return
        self.received += 1
        try:
            handler(sender, json.loads(fields.get("data") or "{}"))
        except Exception:
            log.exception("cluster bus: handling %s from %s failed", fields.get("kind"), sender)

    @property
    def stats(self) -> dict[str, float]:
        return {
            "bus_sent": self.sent,
            "bus_received": self.received,
            "bus_send_failures": self.send_failures,
        }
