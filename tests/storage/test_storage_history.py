"""Time-bounded event queries and top accounts (an account's history, the
dashboard), on every backend."""

from __future__ import annotations

import pytest
from storage_builders import make_event

from regswitch.storage.base import EventFilter, Storage

pytestmark = pytest.mark.timeout(20)


async def test_since_until_sources_and_no_account(store: Storage) -> None:
    add = store.events.add
    a = add(make_event("registered", account="alice@x", time=100.0, source="udp:10.0.0.1:5060"))
    b = add(make_event("flood-blocked", account=None, time=150.0, source="10.0.0.1"))
    c = add(make_event("param-changed", account=None, time=200.0, source="api"))
    d = add(make_event("registered", account="alice@x", time=250.0, source="udp:10.0.0.2:5060"))
    e = add(make_event("flood-blocked", account=None, time=300.0, source="10.0.0.9"))
    await store.events.flush()
    q = store.events.query
    assert await q(EventFilter(since=150.0)) == [e, d, c, b]
    assert await q(EventFilter(until=250.0)) == [c, b, a]
    assert await q(EventFilter(since=150.0, until=250.0)) == [c, b]
    assert await q(EventFilter(account="alice@x", since=101.0)) == [d]
    assert await q(EventFilter(since=400.0)) == []
    assert await q(EventFilter(until=50.0)) == []
    assert await q(EventFilter(no_account=True, since=120.0, until=260.0)) == [c, b]


async def test_top_accounts(store: Storage) -> None:
    for time, account in [(10, "a@x"), (20, "b@x"), (30, "b@x"), (40, "c@x"), (50, "a@x")]:
        store.events.add(make_event("replaced", account=account, time=float(time)))
    store.events.add(make_event("rejected", account="c@x", time=60.0))
    store.events.add(make_event("replaced", account=None, time=60.0))
    await store.events.flush()
    top = store.events.top_accounts
    assert await top("replaced", 0.0, 10) == [("a@x", 2), ("b@x", 2), ("c@x", 1)]
    assert await top("replaced", 25.0, 10) == [("a@x", 1), ("b@x", 1), ("c@x", 1)]
    assert await top("replaced", 0.0, 1) == [("a@x", 2)]
    assert await top("replaced", 100.0, 10) == []
