"""The plan of a decision (registrar/plan.py): pure values, nothing applied."""

from __future__ import annotations

import itertools

from test_policy import NOW, OFF, ON, binding, contact, request

from regswitch.common import domain_events as ev
from regswitch.registrar.plan import plan
from regswitch.registrar.policy import decide


def ids() -> itertools.count[int]:
    return itertools.count(1)


def new_id_from(counter: itertools.count[int]) -> str:
    return f"new{next(counter)}"


def test_a_new_binding_gets_its_id_its_write_and_its_event() -> None:
    counter = ids()
    effects = plan(decide([], request(), [contact()], ON), request(), lambda: new_id_from(counter))
    [created] = effects.created
    assert created.id == "new1" and created.registered_at == NOW
    assert created.contact == "sip:a@10.0.0.2:5060" and created.expires_at == NOW + 3600
    [op] = effects.ops
    assert op.kind == "upsert" and op.record == created.to_record()
    [event] = effects.events
    assert isinstance(event, ev.Registered)
    assert (event.binding, event.kind, event.expires) == ("new1", "new", 3600)
    assert effects.kinds == ["new"] and not effects.updates and not effects.removals


def test_a_refresh_is_planned_without_touching_the_binding() -> None:
    old = binding("sip:a@10.0.0.1:5060", call_id="c1", cseq=1)
    req = request(call_id="c1", cseq=2, ip="10.0.0.9")
    effects = plan(decide([old], req, [contact("sip:a@10.0.0.1:5060")], ON), req, lambda: "unused")
    assert old.cseq == 1 and old.source_ip == "10.0.0.1"  # the shell applies, not the plan
    [(target, values)] = effects.updates
    assert target is old and values["cseq"] == 2
    [op] = effects.ops
    assert op.record is not None and op.record.id == old.id
    assert (op.record.cseq, op.record.source_ip, op.record.registered_at) == (
        2, "10.0.0.9", old.registered_at,
    )  # fmt: skip
    [event] = effects.events
    assert isinstance(event, ev.Refreshed) and not isinstance(event, ev.SameDevice)
    assert event.old_source == "udp:10.0.0.1:5060" and event.source == "udp:10.0.0.9:5060"
    assert not effects.created


def test_a_replacement_deletes_the_old_binding_and_leaves_its_event_to_the_kick() -> None:
    old = binding()
    effects = plan(decide([old], request(), [contact()], ON), request(), lambda: "n1")
    [(removal, notice)] = effects.removals
    assert removal.binding is old and removal.why == "replaced" and removal.kick
    assert notice is None  # its event names the calls the kick ends: the registrar's
    assert [(op.kind, op.binding_id) for op in effects.ops] == [
        ("upsert", "n1"),
        ("delete", old.id),
    ]


def test_an_unregister_carries_its_event() -> None:
    old = binding("sip:a@10.0.0.2:5060", ip="10.0.0.2")
    effects = plan(
        decide([old], request(), [contact("sip:a@10.0.0.2:5060", expires=0)], OFF),
        request(), lambda: "unused",
    )  # fmt: skip
    [(removal, notice)] = effects.removals
    assert removal.binding is old
    assert isinstance(notice, ev.Unregistered) and notice.binding == old.id
    assert not notice.wildcard
    assert [op.kind for op in effects.ops] == ["delete"] and effects.kinds == []


def test_a_query_plans_nothing() -> None:
    old = binding()
    effects = plan(decide([old], request(), [], ON), request(), lambda: "unused")
    assert not (effects.ops or effects.events or effects.created or effects.updates)
    assert not effects.removals and effects.kinds == []


def test_a_wildcard_unregister_removes_every_binding() -> None:
    bindings = [binding(), binding("sip:a@10.0.0.3:5060", ip="10.0.0.3")]
    effects = plan(decide(bindings, request(), None, ON), request(), lambda: "unused")
    assert [op.binding_id for op in effects.ops] == [b.id for b in bindings]
    assert all(notice is not None and notice.wildcard for _, notice in effects.removals)
