"""More cases of the pure registration decision (registrar/policy.py), found
while testing against a real server; helpers from test_policy.py's style."""

from __future__ import annotations

from regswitch.registrar.bindings import Binding
from regswitch.registrar.policy import ContactRequest, Policy, RegisterRequest, decide
from support.builders import make_binding

NOW = 1_000_000.0
OFF = Policy(replace=False, keep_calls=False, max_contacts=1, if_unreachable=False)


def binding(
    contact: str, *, call_id: str, cseq: int = 1, instance: str | None = None, bid: str = "b1"
) -> Binding:
    return make_binding(
        id=bid,
        contact=contact,
        call_id=call_id,
        cseq=cseq,
        instance=instance,
        expires_at=NOW + 100,
        registered_at=NOW - 100,
        refreshed_at=NOW - 100,
    )


def request(call_id: str, cseq: int) -> RegisterRequest:
    return RegisterRequest(
        aor="alice@example.com",
        call_id=call_id,
        cseq=cseq,
        transport="udp",
        source_ip="192.0.2.9",
        source_port=40000,
        local_ip="127.0.0.1",
        local_port=5060,
        conn_id=0,
        user_agent=None,
        path=(),
        now=NOW,
    )


def contact(uri: str, instance: str | None = None) -> ContactRequest:
    return ContactRequest(uri=uri, key=uri, expires=300, instance=instance)


def test_refresh_that_first_carries_an_instance_is_still_a_refresh() -> None:
    old = binding("sip:a@10.0.0.1:5060", call_id="c1", cseq=5)
    d = decide([old], request("c1", 6), [contact("sip:a@192.0.2.9:40000", "<urn:uuid:1>")], OFF)
    assert d.outcome == "ok", d
    assert d.changes[0].binding is old and d.changes[0].kind == "refresh"
    assert not d.removals


def test_refresh_that_first_carries_an_instance_still_checks_cseq() -> None:
    old = binding("sip:a@10.0.0.1:5060", call_id="c1", cseq=5)
    d = decide([old], request("c1", 5), [contact("sip:a@192.0.2.9:40000", "<urn:uuid:1>")], OFF)
    assert d.outcome == "error" and d.status == 500


def test_same_call_id_with_another_declared_instance_is_another_device() -> None:
    old = binding("sip:a@10.0.0.1:5060", call_id="c1", instance="<urn:uuid:1>")
    d = decide([old], request("c1", 6), [contact("sip:a@192.0.2.9:40000", "<urn:uuid:2>")], OFF)
    assert d.outcome == "reject" and d.conflict == [old]
