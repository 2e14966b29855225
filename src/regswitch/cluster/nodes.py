"""The node registry: who is in the cluster, their heartbeats, and the calls each holds.

    rs:nodes            hash    node id -> JSON (started, heartbeat, pid, SIP listeners, API,
                                event id slot, bindings and calls it holds)
    rs:calls:<node>:<started>  hash  call id -> JSON (the call's view; what a CDR needs),
                                one per life of a node (a restarted node starts a new one)
    rs:slot:<n>         string  node id holding event id slot n (expires unless renewed)

A node writes its entry every HEARTBEAT seconds; one whose heartbeat is
older than `timeout` (cluster_node_timeout) counts as down. The calls hash
lets any node find the node holding a call (a console hang-up through
another node's API) and answers "calls per node".

Event ids: every node writes events to the one database, each numbering
them itself (the number is known the moment the event exists). A slot per
live node, claimed here, keeps those numbers apart (storage/shared_sql.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from regswitch.storage.base import StorageError
from regswitch.storage.redis_location import RedisLocation

log = logging.getLogger("regswitch.cluster")

NODES = "rs:nodes"
CALLS_PREFIX = "rs:calls:"
SLOT_PREFIX = "rs:slot:"
DOWN_PREFIX = "rs:down:"  # rs:down:<node>:<started>: which survivor handles that death
SLOTS = 1024
HEARTBEAT = 1.0
#: A slot outlives its node's last heartbeat by this much (s): longer than a
#: node is ever declared down for, so a slot is never reused while its node lives.
SLOT_TTL = 120
#: A dead node's entry leaves the registry this long (s) after its last heartbeat.
FORGET_AFTER = 3600.0

#: told of a node found dead, by the one survivor that claimed it: (its last entry)
OnDown = Callable[[dict[str, Any]], Awaitable[None]]


class Nodes:
    def __init__(
        self,
        redis: RedisLocation,
        node: str,
        clock: Callable[[], float],
        info: Callable[[], dict[str, Any]],
        timeout: float = 10.0,
        on_down: OnDown | None = None,
    ) -> None:
        self.redis = redis
        self.on_down = on_down
        self.node = node
        self.clock = clock
        self.info = info  # this node's entry, fresh at every heartbeat
        self.timeout = timeout
        self.started = clock()
        self.slot = -1
        self.relays: dict[str, tuple[str, int]] = {}  # live nodes' relay addresses
        self._entries: dict[str, str] = {}  # the registry as last read
        self.previous: dict[str, Any] | None = None  # see join()
        self._beater: asyncio.Task[None] | None = None
        # call registry writes, in order, drained by one task (a pipeline per turn)
        self._writes: list[tuple[str, str, str | None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @property
    def calls_key(self) -> str:
        return calls_key(self.node, self.started)

    async def join(self) -> int:
        """Claim an event id slot and announce this node; returns the slot. An
        earlier life of this node id, whose death nobody handled yet (a quick
        restart), is left in `previous` for this node to handle."""
        client = self.redis.client
        before = await self.redis.call(client.hget(NODES, self.node))
        self.previous = json.loads(before) if before else None
        first = zlib.crc32(self.node.encode()) % SLOTS
        for step in range(SLOTS):
            slot = (first + step) % SLOTS
            key = f"{SLOT_PREFIX}{slot}"
            if await self.redis.call(client.set(key, self.node, nx=True, ex=SLOT_TTL)):
                self.slot = slot
                break
            if await self.redis.call(client.get(key)) == self.node:  # ours, from before
                self.slot = slot
                break
        else:
            raise StorageError("no free event id slot: more than 1024 nodes in the cluster")
        await self.beat()
        return self.slot

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._beater = loop.create_task(self._beat_forever(), name="heartbeat")
        self._writer = loop.create_task(self._write_forever(), name="call-registry")

    async def leave(self) -> None:
        """A clean stop: out of the registry at once (nobody waits for a timeout)."""
        for task in (self._beater, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._beater = self._writer = None
        client = self.redis.client
        with contextlib.suppress(StorageError):
            await self.redis.call(client.hdel(NODES, self.node))
            await self.redis.call(client.delete(self.calls_key))
            await self.redis.call(client.delete(f"{SLOT_PREFIX}{self.slot}"))

    async def beat(self) -> None:
        entry = {
            **self.info(),
            "node": self.node,
            "started": self.started,
            "heartbeat": self.clock(),
            "pid": os.getpid(),
            "slot": self.slot,
        }
        client = self.redis.client
        pipe = client.pipeline(transaction=False)
        pipe.hset(NODES, self.node, json.dumps(entry))
        pipe.set(f"{SLOT_PREFIX}{self.slot}", self.node, ex=SLOT_TTL)
        pipe.hgetall(NODES)
        *_, entries = await self.redis.call(pipe.execute())
        self.relays = self._relays(entries)
        self._entries = entries

    def _relays(self, entries: dict[str, str]) -> dict[str, tuple[str, int]]:
        now = self.clock()
        relays: dict[str, tuple[str, int]] = {}
        for text in entries.values():
            entry = json.loads(text)
            relay = entry.get("relay")
            if relay and now - float(entry.get("heartbeat", 0)) < self.timeout:
                relays[str(entry["node"])] = (str(relay[0]), int(relay[1]))
        return relays

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.beat()
                await self._watch_others()
            except StorageError:
                await self.redis.wait_up()  # no heartbeat without Redis; back when it is

    async def _watch_others(self) -> None:
        """A node silent for `timeout` seconds is dead: the first survivor to
        claim that death (one key per node life) handles it, exactly once."""
        now = self.clock()
        client = self.redis.client
        for text in self._entries.values():
            entry = json.loads(text)
            node = str(entry["node"])
            age = now - float(entry.get("heartbeat", 0))
            if node == self.node or age < self.timeout:
                continue
            if age > FORGET_AFTER:
                await self.redis.call(client.hdel(NODES, node))
                continue
            claim = f"{DOWN_PREFIX}{node}:{entry.get('started')}"
            if not await self.redis.call(client.set(claim, self.node, nx=True, ex=86400)):
                continue  # another survivor has it (or had it)
            log.error("node %s is down (no heartbeat for %.1f s)", node, age)
            if self.on_down is not None:
                await self.on_down(entry)

    async def nodes(self) -> list[dict[str, Any]]:
        """Every registered node, with `alive` and the heartbeat's `age` (s)."""
        entries = await self.redis.call(self.redis.client.hgetall(NODES))
        self.relays = self._relays(entries)
        now = self.clock()
        out = []
        for text in entries.values():
            entry = json.loads(text)
            entry["age"] = round(now - float(entry.get("heartbeat", 0)), 3)
            entry["alive"] = entry["age"] < self.timeout
            out.append(entry)
        return sorted(out, key=lambda e: str(e["node"]))

    # --- the calls each node holds ------------------------------------------------
    def call_changed(self, call_id: str, view: dict[str, Any] | None) -> None:
        """Record a call of this node (None: it ended); written in order, soon."""
        self._writes.append((self.calls_key, call_id, None if view is None else json.dumps(view)))
        self._wake.set()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            writes, self._writes = self._writes, []
            pipe = self.redis.client.pipeline(transaction=False)
            for key, call_id, value in writes:
                if value is None:
                    pipe.hdel(key, call_id)
                else:
                    pipe.hset(key, call_id, value)
            try:
                await self.redis.call(pipe.execute())
            except StorageError as exc:
                log.warning("call registry not updated (%d writes): %s", len(writes), exc)

    async def calls(self, entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The calls of the node life `entry` (a registry entry) lists."""
        key = calls_key(str(entry["node"]), float(entry["started"]))
        entries = await self.redis.call(self.redis.client.hgetall(key))
        return {call_id: json.loads(text) for call_id, text in entries.items()}

    async def holder(self, call_id: str) -> dict[str, Any] | None:
        """The entry of the live node holding call `call_id`, if any."""
        for entry in await self.nodes():
            if not entry["alive"]:
                continue
            key = calls_key(str(entry["node"]), float(entry["started"]))
            if await self.redis.call(self.redis.client.hexists(key, call_id)):
                return entry
        return None


def calls_key(node: str, started: float) -> str:
    return f"{CALLS_PREFIX}{node}:{started!r}"
