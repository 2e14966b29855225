"""The pure registration decision (docs/behaviour.md §3.1–3.5), without sockets or loop."""

from __future__ import annotations

import itertools
from typing import Any

from regswitch.registrar.bindings import Binding
from regswitch.registrar.policy import (
    ContactRequest,
    Policy,
    RegisterRequest,
    decide,
    needs_return_path,
)
from support.builders import make_binding

NOW = 1_000_000.0
_ids = itertools.count(1)

ON = Policy(replace=True, keep_calls=False, max_contacts=1, if_unreachable=True)
OFF = Policy(replace=False, keep_calls=False, max_contacts=1, if_unreachable=True)


def binding(
    contact: str = "sip:a@10.0.0.1:5060",
    *,
    ip: str = "10.0.0.1",
    port: int = 5060,
    registered_at: float = NOW - 100,
    expires_at: float = NOW + 100,
    **fields: Any,
) -> Binding:
    return make_binding(
        id=f"b{next(_ids)}",
        contact=contact,
        source_ip=ip,
        source_port=port,
        registered_at=registered_at,
        refreshed_at=registered_at,
        expires_at=expires_at,
        **fields,
    )


def request(
    *, call_id: str = "c2", cseq: int = 1, ip: str = "10.0.0.2", port: int = 5060
) -> RegisterRequest:
    return RegisterRequest(
        aor="alice@example.com",
        call_id=call_id,
        cseq=cseq,
        transport="udp",
        source_ip=ip,
        source_port=port,
        local_ip="127.0.0.1",
        local_port=5060,
        conn_id=0,
        user_agent=None,
        path=(),
        now=NOW,
    )


def contact(
    uri: str = "sip:a@10.0.0.2:5060",
    expires: int = 3600,
    instance: str | None = None,
    reg_id: str | None = None,
) -> ContactRequest:
    return ContactRequest(uri=uri, key=uri, expires=expires, instance=instance, reg_id=reg_id)


def test_first_registration_is_new() -> None:
    d = decide([], request(), [contact()], ON)
    assert d.outcome == "ok"
    assert [c.kind for c in d.changes] == ["new"]
    assert d.changes[0].values["expires_at"] == NOW + 3600
    assert not d.removals


def test_refresh_same_call_id_updates_in_place() -> None:
    old = binding(call_id="c2", cseq=5)
    d = decide(
        [old], request(call_id="c2", cseq=6, ip="10.9.9.9"), [contact("sip:a@10.9.9.9:5060")], OFF
    )
    assert d.outcome == "ok"
    assert d.changes[0].binding is old and d.changes[0].kind == "refresh"
    assert d.changes[0].values["source_ip"] == "10.9.9.9"  # NAT rebinding follows
    assert not d.removals


def test_refresh_with_old_cseq_is_500_and_changes_nothing() -> None:
    old = binding(call_id="c2", cseq=5)
    d = decide([old], request(call_id="c2", cseq=5), [contact()], ON)
    assert d.outcome == "error" and d.status == 500
    assert not d.changes and not d.removals


def test_same_instance_is_same_device_under_off() -> None:
    old = binding(instance="<urn:uuid:1>", ip="10.0.0.1")
    d = decide(
        [old], request(ip="192.0.2.7"), [contact("sip:a@192.0.2.7", instance="<urn:uuid:1>")], OFF
    )
    assert d.outcome == "ok"
    assert d.changes[0].binding is old and d.changes[0].kind == "same-device"
    assert not d.removals


def test_same_contact_same_ip_is_same_device() -> None:
    old = binding("sip:a@10.0.0.2:5060", ip="10.0.0.2", port=5060)
    d = decide([old], request(ip="10.0.0.2", port=40000), [contact("sip:a@10.0.0.2:5060")], OFF)
    assert d.outcome == "ok" and d.changes[0].binding is old and d.changes[0].kind == "same-device"


def test_other_reg_id_of_same_instance_is_a_flow_not_a_device() -> None:
    old = binding(instance="<urn:uuid:1>", reg_id="1")
    d = decide([old], request(), [contact(instance="<urn:uuid:1>", reg_id="2")], OFF)
    assert d.outcome == "ok"
    assert [c.kind for c in d.changes] == ["new-flow"]
    assert not d.removals


def test_new_device_under_on_replaces_and_kicks_the_old() -> None:
    old = binding()
    d = decide([old], request(), [contact()], ON)
    assert d.outcome == "ok"
    assert [c.kind for c in d.changes] == ["new"]
    assert len(d.removals) == 1
    removal = d.removals[0]
    assert removal.binding is old and removal.why == "replaced" and removal.kick
    assert removal.replaced_by == "sip:a@10.0.0.2:5060"


def test_keep_calls_replaces_without_kick() -> None:
    old = binding()
    policy = Policy(replace=True, keep_calls=True, max_contacts=1, if_unreachable=True)
    d = decide([old], request(), [contact()], policy)
    assert d.removals[0].why == "replaced" and not d.removals[0].kick


def test_new_device_under_off_probes_a_reachable_old_binding() -> None:
    old = binding()
    d = decide([old], request(), [contact()], OFF)
    assert d.outcome == "probe" and d.probe == [old]
    assert not d.changes or d.outcome == "probe"


def test_off_rejects_when_the_probe_was_answered() -> None:
    old = binding()
    d = decide([old], request(), [contact()], OFF, probed={old.id: True})
    assert d.outcome == "reject" and d.conflict == [old]


def test_off_accepts_and_kicks_when_the_probe_went_unanswered() -> None:
    old = binding()
    d = decide([old], request(), [contact()], OFF, probed={old.id: False})
    assert d.outcome == "ok" and d.removals[0].binding is old and d.removals[0].kick


def test_off_accepts_when_already_unreachable_without_probe() -> None:
    old = binding(reachable=False)
    d = decide([old], request(), [contact()], OFF)
    assert d.outcome == "ok" and d.removals[0].binding is old


def test_off_without_unreachable_exception_rejects_at_once() -> None:
    old = binding(reachable=False)
    policy = Policy(replace=False, keep_calls=False, max_contacts=1, if_unreachable=False)
    assert decide([old], request(), [contact()], policy).outcome == "reject"


def test_max_contacts_two_keeps_two_and_third_replaces_the_oldest() -> None:
    oldest = binding("sip:a@10.0.0.1", call_id="x1", registered_at=NOW - 300)
    newer = binding("sip:a@10.0.0.3", call_id="x3", ip="10.0.0.3", registered_at=NOW - 200)
    policy = Policy(replace=True, keep_calls=False, max_contacts=2, if_unreachable=True)
    assert decide([oldest], request(), [contact()], policy).removals == []
    d = decide([oldest, newer], request(), [contact()], policy)
    assert [r.binding for r in d.removals] == [oldest]


def test_expired_bindings_are_no_conflict() -> None:
    stale = binding(expires_at=NOW - 1)
    d = decide([stale], request(), [contact()], OFF)
    assert d.outcome == "ok" and not d.removals


def test_flapping_hold_rejects_replacement() -> None:
    old = binding()
    policy = Policy(
        replace=True, keep_calls=False, max_contacts=1, if_unreachable=True, flap_held=True
    )
    d = decide([old], request(), [contact()], policy)
    assert d.outcome == "reject" and d.flapping


def test_unregister_removes_matching_contact_without_kick() -> None:
    old = binding("sip:a@10.0.0.2:5060")
    d = decide([old], request(), [contact("sip:a@10.0.0.2:5060", expires=0)], ON)
    assert d.outcome == "ok" and d.removals[0].why == "unregistered" and not d.removals[0].kick
    assert not d.changes


def test_wildcard_removes_all_without_kick() -> None:
    a, b = binding(call_id="x"), binding("sip:a@10.0.0.5", call_id="y")
    d = decide([a, b], request(), None, ON)
    assert {r.binding.id for r in d.removals} == {a.id, b.id}
    assert all(r.why == "wildcard" and not r.kick for r in d.removals)


def test_query_changes_nothing() -> None:
    old = binding()
    d = decide([old], request(), [], ON)
    assert d.outcome == "ok" and not d.changes and not d.removals


# -- what needs a return-path check for an address-only account (needs_return_path) ------------


def test_refresh_in_place_from_the_same_address_needs_no_return_path() -> None:
    old = binding("sip:a@10.0.0.2:5060", ip="10.0.0.2", call_id="c2", cseq=1)
    req = request(call_id="c2", cseq=2)
    assert not needs_return_path(decide([old], req, [contact()], ON), req)
    # a new binding that evicts nobody neither
    req = request()
    assert not needs_return_path(decide([], req, [contact()], ON), req)


def test_anything_taken_from_a_device_needs_a_return_path() -> None:
    old = binding("sip:a@10.0.0.1:5060", ip="10.0.0.1", call_id="c1")
    for req, contacts in [
        (request(), None),  # Contact: *
        (request(), [contact("sip:a@10.0.0.1:5060", expires=0)]),  # unregister
        (request(), [contact()]),  # a new device replaces it
        (request(call_id="c1", cseq=2), [contact()]),  # the same registration, moved
    ]:
        decision = decide([old], req, contacts, ON)
        assert decision.outcome == "ok"
        assert needs_return_path(decision, req), contacts
