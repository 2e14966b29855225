"""The storage contract, run on every backend (sqlite file, sqlite :memory:, memory,
postgresql)."""

from __future__ import annotations

import asyncio

import pytest
from storage_builders import Backend, make_account, make_binding, make_cdr, make_event

from regswitch.storage.base import (
    BindingOp,
    CdrFilter,
    Domain,
    EventFilter,
    Storage,
    StorageClosedError,
)

pytestmark = pytest.mark.timeout(20)


# --------------------------------------------------------------------------- domains


async def test_domains_put_list_delete_and_survive_reopen(backend: Backend) -> None:
    store = backend.make()
    async with store:
        await store.domains.put(Domain(name="Example.ORG", created_at=1.5))
        await store.domains.put(Domain(name="a.example", created_at=2.0))
        await store.domains.put(Domain(name="example.org", created_at=3.0))  # replaces
        assert await store.domains.list_all() == [
            Domain(name="a.example", created_at=2.0),
            Domain(name="example.org", created_at=3.0),
        ]
        assert await store.domains.delete("A.example") is True
        assert await store.domains.delete("a.example") is False
    if not backend.durable:
        return
    async with backend.make() as again:
        assert await again.domains.list_all() == [Domain(name="example.org", created_at=3.0)]


# --------------------------------------------------------------------------- accounts


async def test_account_put_get_list_delete(store: Storage) -> None:
    alice = make_account("alice", allowed_networks=("10.0.0.0/8", "192.0.2.0/24"))
    bob = make_account("bob", max_contacts=3, register_replace="off", enabled=False)
    await store.accounts.put(alice)
    await store.accounts.put(bob)

    assert await store.accounts.get("alice@example.com") == alice
    assert await store.accounts.get("bob@example.com") == bob
    assert await store.accounts.get("carol@example.com") is None
    assert await store.accounts.list_all() == [alice, bob]

    assert await store.accounts.delete("alice@example.com") is True
    assert await store.accounts.delete("alice@example.com") is False
    assert await store.accounts.list_all() == [bob]


async def test_account_update_replaces_every_field(store: Storage) -> None:
    await store.accounts.put(make_account("alice"))
    changed = make_account(
        "alice",
        ha1_md5="a" * 32,
        ha1_sha256="b" * 64,
        allowed_networks=("2001:db8::/32",),
        max_contacts=2,
        register_replace="on",
        replace_keep_calls="off",
        enabled=False,
        updated_at=1_800_000_000.0,
    )
    await store.accounts.put(changed)
    assert await store.accounts.list_all() == [changed]


async def test_account_domain_is_case_insensitive_user_is_not(store: Storage) -> None:
    acct = make_account("Alice", domain="Example.COM")
    assert acct.aor == "Alice@example.com"
    await store.accounts.put(acct)
    assert await store.accounts.get("Alice@EXAMPLE.com") == acct
    assert await store.accounts.get("alice@example.com") is None
    assert await store.accounts.delete("Alice@EXAMPLE.COM") is True


async def test_account_put_many(store: Storage) -> None:
    accounts = [make_account(f"u{i:03d}") for i in range(200)]
    await store.accounts.put_many(accounts)
    await store.accounts.put_many([])
    assert await store.accounts.list_all() == accounts


@pytest.mark.durable
async def test_accounts_survive_reopen(backend: Backend, store: Storage) -> None:
    acct = make_account("alice", allowed_networks=("10.0.0.0/8",))
    await store.accounts.put(acct)
    store = await backend.reopen(store)
    try:
        assert await store.accounts.list_all() == [acct]
    finally:
        await store.close()


# --------------------------------------------------------------------------- params


async def test_params_set_load_overwrite(store: Storage) -> None:
    assert await store.params.load() == {}
    await store.params.set("SS_ENDPOINT_REGISTER_REPLACE", "On")
    await store.params.set("SS_ENDPOINT_EXPIRE", "3600")
    await store.params.set("SS_ENDPOINT_REGISTER_REPLACE", "Off")
    assert await store.params.load() == {
        "SS_ENDPOINT_REGISTER_REPLACE": "Off",
        "SS_ENDPOINT_EXPIRE": "3600",
    }


@pytest.mark.durable
async def test_params_survive_reopen(backend: Backend, store: Storage) -> None:
    await store.params.set("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "HELLO")
    store = await backend.reopen(store)
    try:
        assert await store.params.load() == {"SS_SIP_NAT_KEEP_ALIVE_MESSAGE": "HELLO"}
    finally:
        await store.close()


# --------------------------------------------------------------------------- bindings


async def test_binding_upsert_load_round_trips_every_field(store: Storage) -> None:
    full = make_binding(
        "b1",
        transport="tls",
        conn_id=42,
        instance="<urn:uuid:00000000-0000-1000-8000-000a95a0e128>",
        reg_id="1",
        user_agent="Yealink SIP-T46S 66.86.0.15",
        path=("<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"),
        reachable=False,
        node="node-a",
        expires_at=1_700_003_600.25,
    )
    sparse = make_binding("b2", aor="bob@example.com")
    await store.bindings.apply([BindingOp.upsert(full), BindingOp.upsert(sparse)])
    loaded = sorted(await store.bindings.load(), key=lambda b: b.id)
    assert loaded == [full, sparse]
    assert loaded[0].path == full.path  # a tuple again, not a list


async def test_one_accounts_bindings_load_alone(store: Storage) -> None:
    mine = [make_binding("b1"), make_binding("b2", expires_at=1.0)]  # expired ones too
    await store.bindings.apply(
        [BindingOp.upsert(b) for b in [*mine, make_binding("b3", aor="bob@example.com")]]
    )
    loaded = sorted(await store.bindings.load_account(mine[0].aor), key=lambda b: b.id)
    assert loaded == mine
    assert await store.bindings.load_account("nobody@example.com") == []


async def test_binding_update_and_delete(store: Storage) -> None:
    b = make_binding("b1", cseq=1)
    await store.bindings.apply([BindingOp.upsert(b)])
    refreshed = make_binding("b1", cseq=2, source_port=40001, expires_at=1_700_007_200.0)
    await store.bindings.apply([BindingOp.upsert(refreshed)])
    assert await store.bindings.load() == [refreshed]

    await store.bindings.apply([BindingOp.delete("b1"), BindingOp.delete("never-there")])
    assert await store.bindings.load() == []
    await store.bindings.apply([])  # a no-op, not an error


async def test_binding_ops_apply_in_order(store: Storage) -> None:
    await store.bindings.apply(
        [
            BindingOp.upsert(make_binding("gone")),
            BindingOp.upsert(make_binding("kept", cseq=1)),
            BindingOp.delete("gone"),
            BindingOp.upsert(make_binding("kept", cseq=7)),
            BindingOp.delete("again"),
            BindingOp.upsert(make_binding("again")),
        ]
    )
    loaded = {b.id: b for b in await store.bindings.load()}
    assert set(loaded) == {"kept", "again"}
    assert loaded["kept"].cseq == 7


@pytest.mark.durable
async def test_bindings_survive_reopen_expired_included(backend: Backend, store: Storage) -> None:
    live = make_binding("live", expires_at=4_000_000_000.0)
    expired = make_binding("expired", expires_at=1.0)
    await store.bindings.apply([BindingOp.upsert(live), BindingOp.upsert(expired)])
    store = await backend.reopen(store)
    try:
        # The store returns both; dropping expired ones is the app's decision.
        assert sorted(await store.bindings.load(), key=lambda b: b.id) == [expired, live]
    finally:
        await store.close()


async def test_concurrent_applies_all_land(store: Storage) -> None:
    await asyncio.gather(
        *(store.bindings.apply([BindingOp.upsert(make_binding(f"b{i}"))]) for i in range(300))
    )
    assert {b.id for b in await store.bindings.load()} == {f"b{i}" for i in range(300)}


# --------------------------------------------------------------------------- events


async def test_event_ids_increase_and_query_newest_first(store: Storage) -> None:
    added = [
        store.events.add(make_event("registration-replaced", details={"n": i})) for i in range(5)
    ]
    ids = [e.id for e in added]
    assert ids == sorted(ids) and len(set(ids)) == 5
    await store.events.flush()
    got = await store.events.query(EventFilter())
    assert got == list(reversed(added))
    assert got[0].details == {"n": 4}


async def test_event_filters(store: Storage) -> None:
    a = store.events.add(make_event("registration-replaced", account="alice@example.com"))
    b = store.events.add(make_event("register-rejected", account="alice@example.com"))
    c = store.events.add(make_event("registration-replaced", account="bob@example.com"))
    d = store.events.add(make_event("param-changed", account=None, source="console"))
    e = store.events.add(make_event("registration-replaced", account="alice@example.com"))
    await store.events.flush()

    q = store.events.query
    assert await q(EventFilter(type="registration-replaced")) == [e, c, a]
    assert await q(EventFilter(account="alice@example.com")) == [e, b, a]
    assert await q(EventFilter(type="registration-replaced", account="alice@example.com")) == [
        e,
        a,
    ]
    assert await q(EventFilter(after_id=b.id)) == [e, d, c]
    assert await q(EventFilter(before_id=d.id)) == [c, b, a]
    assert await q(EventFilter(after_id=a.id, before_id=e.id)) == [d, c, b]
    assert await q(EventFilter(limit=2)) == [e, d]
    assert await q(EventFilter(before_id=d.id, limit=1)) == [c]
    assert await q(EventFilter(limit=0)) == []
    assert await q(EventFilter(type="nothing")) == []


async def test_event_details_round_trip_json(store: Storage) -> None:
    details = {
        "old_contact": "sip:a@192.0.2.1",
        "calls_ended": 2,
        "kept": False,
        "ratio": 0.5,
        "none": None,
        "nested": {"list": [1, "two", None]},
        "unicode": "Zürich ☎",
    }
    ev = store.events.add(
        make_event("registration-replaced", source="udp:1.2.3.4:5060", details=details)
    )
    await store.events.flush()
    [got] = await store.events.query(EventFilter())
    assert got == ev
    assert got.details == details


@pytest.mark.durable
async def test_event_ids_keep_increasing_across_reopen(backend: Backend, store: Storage) -> None:
    first = [store.events.add(make_event()) for _ in range(3)]
    store = await backend.reopen(store)  # close() flushes the write-behind queue
    try:
        later = store.events.add(make_event("after-restart"))
        assert later.id > first[-1].id
        await store.events.flush()
        assert [e.id for e in await store.events.query(EventFilter())] == [
            later.id,
            *(e.id for e in reversed(first)),
        ]
    finally:
        await store.close()


# --------------------------------------------------------------------------- CDRs


async def test_cdr_add_query_newest_first(store: Storage) -> None:
    old = make_cdr("c1", start=100.0, answer=None, end=110.0, billable_seconds=0)
    new = make_cdr("c2", start=300.0, answer=301.0, end=320.0, billable_seconds=19)
    mid = make_cdr("c3", start=200.0)
    for cdr in (old, new, mid):
        store.cdrs.add(cdr)
    await store.cdrs.flush()
    assert await store.cdrs.query(CdrFilter()) == [new, mid, old]
    assert await store.cdrs.query(CdrFilter(limit=1)) == [new]


async def test_cdr_filters(store: Storage) -> None:
    a = make_cdr("a", caller="alice@x", callee="bob@x", start=100.0, end_reason="normal")
    b = make_cdr(
        "b",
        caller="bob@x",
        callee="carol@x",
        start=200.0,
        end_reason="registration-replaced",
        end_direction="system",
    )
    c = make_cdr(
        "c",
        caller="carol@x",
        callee="alice@x",
        start=300.0,
        answer=None,
        end_reason="not-registered",
        callee_contact=None,
        callee_source=None,
        b_call_id=None,
        final_code=480,
        end_direction="system",
    )
    for cdr in (a, b, c):
        store.cdrs.add(cdr)
    await store.cdrs.flush()

    q = store.cdrs.query
    assert await q(CdrFilter(account="alice@x")) == [c, a]  # caller or callee
    assert await q(CdrFilter(account="bob@x")) == [b, a]
    assert await q(CdrFilter(reason="registration-replaced")) == [b]
    assert await q(CdrFilter(since=200.0)) == [c, b]  # inclusive
    assert await q(CdrFilter(until=300.0)) == [b, a]  # exclusive
    assert await q(CdrFilter(since=150.0, until=250.0)) == [b]
    assert await q(CdrFilter(account="alice@x", reason="normal")) == [a]
    assert await q(CdrFilter(account="nobody@x")) == []


async def test_cdr_same_id_replaces(store: Storage) -> None:
    store.cdrs.add(make_cdr("c1", final_code=180, end_reason="error"))
    store.cdrs.add(make_cdr("c1", final_code=200))
    await store.cdrs.flush()
    [got] = await store.cdrs.query(CdrFilter())
    assert got.final_code == 200


@pytest.mark.durable
async def test_cdrs_survive_reopen(backend: Backend, store: Storage) -> None:
    cdr = make_cdr("c1")
    store.cdrs.add(cdr)
    store = await backend.reopen(store)  # no explicit flush: close() writes it
    try:
        assert await store.cdrs.query(CdrFilter()) == [cdr]
    finally:
        await store.close()


# --------------------------------------------------------------------------- retention


async def test_event_prune_deletes_oldest_in_batches(store: Storage) -> None:
    old = [store.events.add(make_event(time=1000.0 + i)) for i in range(5)]
    new = [store.events.add(make_event(time=5000.0 + i)) for i in range(3)]
    await store.events.flush()
    assert await store.events.prune(before=5000.0, limit=2) == 2
    assert await store.events.query(EventFilter()) == list(reversed(old[2:] + new))
    assert await store.events.prune(before=5000.0, limit=100) == 3
    assert await store.events.prune(before=5000.0, limit=100) == 0
    assert await store.events.query(EventFilter()) == list(reversed(new))


async def test_cdr_prune_deletes_by_start_in_batches(store: Storage) -> None:
    cdrs = [make_cdr(f"c{i}", start=float(t)) for i, t in enumerate((300, 100, 900, 200, 800))]
    for cdr in cdrs:
        store.cdrs.add(cdr)
    await store.cdrs.flush()
    assert await store.cdrs.prune(before=500.0, limit=2) == 2  # the two oldest: 100, 200
    assert [c.start for c in await store.cdrs.query(CdrFilter())] == [900.0, 800.0, 300.0]
    assert await store.cdrs.prune(before=500.0, limit=10) == 1
    assert [c.start for c in await store.cdrs.query(CdrFilter())] == [900.0, 800.0]


async def test_healthy_storage_reports_no_problem(store: Storage) -> None:
    await store.bindings.apply([BindingOp.upsert(make_binding())])
    assert store.problem is None


# --------------------------------------------------------------------------- lifecycle


async def test_closed_storage_refuses_writes_and_counts_dropped_adds(store: Storage) -> None:
    await store.close()
    with pytest.raises(StorageClosedError):
        await store.bindings.apply([BindingOp.upsert(make_binding())])
    with pytest.raises(StorageClosedError):
        await store.accounts.get("alice@example.com")
    with pytest.raises(StorageClosedError):
        await store.params.set("X", "1")
    ev = store.events.add(make_event())  # never raises, still numbered
    assert isinstance(ev.id, int)
    store.cdrs.add(make_cdr())
    assert store.stats["events_dropped"] == 1
    assert store.stats["cdrs_dropped"] == 1
    await store.close()  # idempotent
    await store.open()  # and the fixture's close() works again


async def test_stats_keys(store: Storage) -> None:
    await store.bindings.apply([BindingOp.upsert(make_binding())])
    stats = store.stats
    for key in (
        "write_behind_depth",
        "events_dropped",
        "cdrs_dropped",
        "commits",
        "ops_committed",
        "ops_per_commit",
        "write_errors",
    ):
        assert key in stats
    assert stats["commits"] >= 1
    assert stats["ops_committed"] >= 1


async def test_async_context_manager(backend: Backend) -> None:
    async with backend.make() as s:
        await s.params.set("A", "1")
        assert await s.params.load() == {"A": "1"}
    with pytest.raises(StorageClosedError):
        await s.params.load()
