"""Retention on every backend: events and CDRs older than their live
parameter go, in batches, and a backlog is worked off over several rounds."""

from __future__ import annotations

import pytest
from storage_builders import make_cdr, make_event

from regswitch.app.retention import DAY, Retention
from regswitch.common.params import Params
from regswitch.storage.base import CdrFilter, EventFilter, Storage

pytestmark = pytest.mark.timeout(30)

NOW = 1_800_000_000.0


async def test_old_events_and_cdrs_go_recent_ones_stay(store: Storage) -> None:
    params = Params()
    params.apply("EVENT_RETENTION_DAYS", "30")
    params.apply("CDR_RETENTION_DAYS", "400")
    old_events = [store.events.add(make_event(time=NOW - 31 * DAY + i)) for i in range(25)]
    kept_event = store.events.add(make_event(time=NOW - 29 * DAY))
    for i in range(12):
        store.cdrs.add(make_cdr(f"old{i}", start=NOW - 401 * DAY + i))
    store.cdrs.add(make_cdr("kept", start=NOW - 399 * DAY))
    await store.events.flush()
    retention = Retention(
        store.events, store.cdrs, params, lambda: NOW, batch=10, pause=0, max_batches=2
    )

    # two batches of 10 per round: the backlog takes two rounds
    assert await retention.run_once() == {"events": 20, "cdrs": 12}
    assert await retention.run_once() == {"events": 5, "cdrs": 0}
    assert await retention.run_once() == {"events": 0, "cdrs": 0}
    assert retention.pruned == {"events": 25, "cdrs": 12}
    assert await store.events.query(EventFilter()) == [kept_event]
    assert [c.id for c in await store.cdrs.query(CdrFilter())] == ["kept"]
    assert len(old_events) == 25


async def test_a_live_change_applies_at_the_next_round(store: Storage) -> None:
    params = Params()
    store.events.add(make_event(time=NOW - 10 * DAY))
    await store.events.flush()
    retention = Retention(store.events, store.cdrs, params, lambda: NOW, pause=0)
    assert (await retention.run_once())["events"] == 0  # default 30 days keeps it
    params.apply("EVENT_RETENTION_DAYS", "7")
    assert (await retention.run_once())["events"] == 1
