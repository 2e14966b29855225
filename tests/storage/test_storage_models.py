"""Records and filters of storage/base.py: normalisation and validation."""

from __future__ import annotations

import pytest
from storage_builders import make_account, make_binding, make_cdr

from regswitch.storage.base import (
    AccountStore,
    BindingOp,
    BindingStore,
    CdrFilter,
    CdrStore,
    EventFilter,
    EventRecord,
    EventStore,
    NewEvent,
    ParamStore,
    Storage,
    normalise_aor,
)
from regswitch.storage.memory import MemoryStorage
from regswitch.storage.sqlite import SqliteStorage

pytestmark = pytest.mark.timeout(10)


def test_account_key_lowercases_domain_only() -> None:
    acct = make_account("Bob", domain="SIP.Example.NET")
    assert acct.domain == "sip.example.net"
    assert acct.aor == "Bob@sip.example.net"


@pytest.mark.parametrize(
    "kw",
    [
        {"register_replace": "yes"},
        {"replace_keep_calls": "On"},  # values are lower-case; params use On/Off
        {"max_contacts": 0},
        {"user": ""},
        {"domain": ""},
    ],
)
def test_account_rejects_bad_values(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_account(**kw)  # type: ignore[arg-type]


def test_account_is_immutable() -> None:
    acct = make_account()
    with pytest.raises(AttributeError):
        acct.enabled = False  # type: ignore[misc]


def test_normalise_aor() -> None:
    assert normalise_aor("Alice@Example.COM") == "Alice@example.com"
    assert normalise_aor("a@b@C.org") == "a@b@c.org"
    assert normalise_aor("no-at-sign") == "no-at-sign"


def test_binding_op_constructors_and_validation() -> None:
    rec = make_binding("b9")
    up = BindingOp.upsert(rec)
    assert (up.kind, up.record, up.binding_id) == ("upsert", rec, "b9")
    down = BindingOp.delete("b9")
    assert (down.kind, down.record, down.binding_id) == ("delete", None, "b9")
    with pytest.raises(ValueError):
        BindingOp("upsert", None, "b9")
    with pytest.raises(ValueError):
        BindingOp("upsert", rec, "other-id")
    with pytest.raises(ValueError):
        BindingOp("delete", rec, "b9")
    with pytest.raises(ValueError):
        BindingOp("merge", rec, "b9")  # type: ignore[arg-type]


def test_cdr_validates_reason_and_direction() -> None:
    make_cdr(end_reason="registration-deleted", end_direction="system")
    with pytest.raises(ValueError):
        make_cdr(end_reason="kicked")
    with pytest.raises(ValueError):
        make_cdr(end_direction="both")


def test_event_record_from_new() -> None:
    new = NewEvent(time=5.0, type="flood-blocked", source="203.0.113.9", details={"n": 1})
    rec = EventRecord.from_new(7, new)
    assert (rec.id, rec.time, rec.type, rec.account, rec.source, rec.details) == (
        7,
        5.0,
        "flood-blocked",
        None,
        "203.0.113.9",
        {"n": 1},
    )


def test_filters_reject_negative_limit() -> None:
    with pytest.raises(ValueError):
        EventFilter(limit=-1)
    with pytest.raises(ValueError):
        CdrFilter(limit=-1)


@pytest.mark.parametrize("storage", [MemoryStorage(), SqliteStorage(":memory:")])
def test_backends_satisfy_the_protocols(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert isinstance(storage.accounts, AccountStore)
    assert isinstance(storage.params, ParamStore)
    assert isinstance(storage.bindings, BindingStore)
    assert isinstance(storage.events, EventStore)
    assert isinstance(storage.cdrs, CdrStore)
