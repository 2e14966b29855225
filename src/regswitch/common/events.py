"""The domain event bus: events (common/domain_events.py) recorded, counted,
and fanned out live to subscribers.

A subscriber (the SSE stream) has a bounded queue; one that cannot keep up
is dropped, so a slow console never slows SIP.

What is stored is bounded too: strings are cut to size (storage/caps.py), and
failure events that any packet can cause, one per packet, are written only
up to a rate per source; the rest are counted (`suppressed`, in /metrics)
and the next one written from that source says how many it stands for.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from regswitch.common.domain_events import AUTH_FAILED, DomainEvent, details_of, source_host
from regswitch.storage.base import EventRecord, NewEvent
from regswitch.storage.caps import capped_event

log = logging.getLogger("regswitch.events")

# Failures that unauthenticated packets cause, one event per packet.
RATE_LIMITED = frozenset({AUTH_FAILED})


@dataclass(frozen=True, slots=True)
class FailureEventLimit:
    """Failure events written per fixed window: per source host, and in all."""

    per_source: int = 10
    total: int = 600
    window: float = 60.0
    # sources whose suppressed count is remembered until their next event
    max_sources: int = 10_000


class FailureEventLimiter:
    """Which failure events to write. Fixed windows, so the state is reset in
    O(1) when a window ends rather than scanned; the tables are bounded."""

    def __init__(self, limit: FailureEventLimit) -> None:
        self.limit = limit
        self._window_end = float("-inf")
        self._written: dict[str, int] = {}  # source -> events written this window
        self._total = 0
        self._held: dict[str, int] = {}  # source -> suppressed since its last written event

    def admit(self, key: str, now: float) -> int | None:
        """None to suppress; else how many from `key` were suppressed before it."""
        limit = self.limit
        if now >= self._window_end:
            self._window_end = now + limit.window
            self._written.clear()
            self._total = 0
        written = self._written.get(key, 0)
        if written >= limit.per_source or self._total >= limit.total:
            held = self._held
            if key in held or len(held) < limit.max_sources:
                held[key] = held.get(key, 0) + 1
            return None
        self._written[key] = written + 1
        self._total += 1
        return self._held.pop(key, 0)


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
    def __init__(
        self,
        sink: EventSink,
        clock: Callable[[], float],
        backlog: int = 2000,
        failure_limit: FailureEventLimit | None = None,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self.counts: Counter[str] = Counter()  # events written, by type
        self.suppressed: Counter[str] = Counter()  # rate-limited away, by type
        self._failures = FailureEventLimiter(failure_limit or FailureEventLimit())
        self._backlog: deque[EventRecord] = deque(maxlen=backlog)
        self._subscribers: set[Subscriber] = set()
        self.subscribers_dropped = 0
        # told of every event, synchronously (the reg event package); a failing
        # listener is logged and never stops the emit
        self.listeners: list[Callable[[EventRecord], None]] = []

    def emit(self, domain_event: DomainEvent) -> EventRecord | None:
        """Record an event; None when it was a rate-limited failure (counted only)."""
        now = self._clock()
        type = domain_event.TYPE
        source = domain_event.source
        details = details_of(domain_event)
        if type in RATE_LIMITED:
            held = self._failures.admit(source_host(source), now)
            if held is None:
                self.suppressed[type] += 1
                return None
            if held:
                details["suppressed"] = held
        event = NewEvent(time=now, type=type, account=domain_event.account, source=source,
                         details=details)  # fmt: skip
        record = self._sink.add(capped_event(event))
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
