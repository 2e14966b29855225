"""Retention: events and CDRs older than EVENT_RETENTION_DAYS /
CDR_RETENTION_DAYS (live parameters) are deleted, on every backend.

A round deletes at most `batch` rows per statement and pauses between
statements, so a large backlog (the first run after lowering a retention, or
a year of CDRs) is worked off over many short steps instead of one long
transaction that would hold up binding commits and the event loop. A round
stops after `max_batches` per table; the next round continues.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from regswitch.common.params import Params
from regswitch.common.periodic import Periodic
from regswitch.storage.base import CdrStore, EventStore, StorageUnavailableError

log = logging.getLogger("regswitch.retention")

DAY = 86400.0


class Retention:
    def __init__(
        self,
        events: EventStore,
        cdrs: CdrStore,
        params: Params,
        clock: Callable[[], float],
        *,
        interval: float = 60.0,
        batch: int = 1000,
        pause: float = 0.05,
        max_batches: int = 100,
    ) -> None:
        self.events = events
        self.cdrs = cdrs
        self.params = params
        self.clock = clock
        self.batch = batch
        self.pause = pause
        self.max_batches = max_batches
        self.pruned: Counter[str] = Counter()  # "events" / "cdrs": rows deleted so far
        self._periodic = Periodic(interval, self.run_once, "retention")

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> dict[str, int]:
        """One round over both tables; returns the rows deleted per table."""
        now = self.clock()
        done: dict[str, int] = {}
        tables: tuple[tuple[str, EventStore | CdrStore, str], ...] = (
            ("events", self.events, "EVENT_RETENTION_DAYS"),
            ("cdrs", self.cdrs, "CDR_RETENTION_DAYS"),
        )
        for name, store, param in tables:
            before = now - float(self.params.values[param]) * DAY
            total = 0
            try:
                for _ in range(self.max_batches):
                    deleted = await store.prune(before, self.batch)
                    total += deleted
                    if deleted < self.batch:
                        break
                    await asyncio.sleep(self.pause)  # let REGISTERs and calls run
            except StorageUnavailableError as exc:
                log.info("retention of %s skipped this round: %s", name, exc)
            done[name] = total
            self.pruned[name] += total
        if any(done.values()):
            log.info("retention deleted %d events and %d CDRs", done["events"], done["cdrs"])
        return done
