"""Domain events: recorded, counted, and fanned out live to subscribers.

A subscriber (the SSE stream) has a bounded queue; one that cannot keep up
is dropped, so a slow console never slows SIP.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from regswitch.storage.base import EventRecord, NewEvent

log = logging.getLogger("regswitch.events")

# Event types (the `type` of an EventRecord).
REGISTERED = "registered"
REFRESHED = "refreshed"
SAME_DEVICE = "same-device"
UNREGISTERED = "unregistered"
EXPIRED = "expired"
REPLACED = "replaced"  # a kick (or a keep-calls replace): old -> new contact
REJECTED = "rejected"  # replace Off (or flapping hold) refused a new device
AUTH_FAILED = "auth-failed"
PARAM_CHANGED = "param-changed"
FLOOD_BLOCKED = "flood-blocked"
FLAPPING = "flapping"
REACHABILITY = "reachability"
DELETED = "deleted"  # a registration removed from the console
CREDENTIAL_SHARING = "credential-sharing-suspected"
ACCOUNT_CHANGED = "account-changed"
CALL_STARTED = "call-started"
CALL_ANSWERED = "call-answered"
CALL_ENDED = "call-ended"


class EventSink(Protocol):
    def add(self, event: NewEvent) -> EventRecord: ...


class Subscriber:
    """A live listener: its queue, its filter, and whether it was dropped."""

    def __init__(self, types: frozenset[str] | None, account: str | None, size: int) -> None:
        self.types = types
        self.account = account
        self.queue: asyncio.Queue[EventRecord | None] = asyncio.Queue(size)
        self.dropped = False

    def wants(self, record: EventRecord) -> bool:
        if self.types is not None and record.type not in self.types:
            return False
        return self.account is None or record.account == self.account


class EventBus:
    def __init__(self, sink: EventSink, clock: Callable[[], float], backlog: int = 2000) -> None:
        self._sink = sink
        self._clock = clock
        self.counts: Counter[str] = Counter()
        self._backlog: deque[EventRecord] = deque(maxlen=backlog)
        self._subscribers: set[Subscriber] = set()
        self.subscribers_dropped = 0
        # told of every event, synchronously (the reg event package); a failing
        # listener is logged and never stops the emit
        self.listeners: list[Callable[[EventRecord], None]] = []

    def emit(
        self,
        type: str,
        *,
        account: str | None = None,
        source: str | None = None,
        **details: Any,
    ) -> EventRecord:
        record = self._sink.add(
            NewEvent(time=self._clock(), type=type, account=account, source=source, details=details)
        )
        self.counts[type] += 1
        self._backlog.append(record)
        if self._subscribers:
            self._fan_out(record)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:
                log.exception("event listener failed on %s", type)
        return record

    def _fan_out(self, record: EventRecord) -> None:
        for sub in list(self._subscribers):
            if not sub.wants(record):
                continue
            try:
                sub.queue.put_nowait(record)
            except asyncio.QueueFull:
                self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        self._subscribers.discard(sub)
        self.subscribers_dropped += 1
        # make room for the end marker so the reader wakes up and leaves
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)
        log.warning("event stream client dropped: it did not keep up")

    def subscribe(
        self,
        types: Iterable[str] | None = None,
        account: str | None = None,
        last_id: int | None = None,
        queue_size: int = 1000,
    ) -> Subscriber:
        """A new live subscriber; with `last_id`, first what it missed (bounded backlog)."""
        sub = Subscriber(frozenset(types) if types else None, account, queue_size)
        if last_id is not None:
            for record in self._backlog:
                if record.id > last_id and sub.wants(record):
                    if sub.queue.full():
                        break
                    sub.queue.put_nowait(record)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def recent(self) -> list[EventRecord]:
        return list(self._backlog)
