"""Kick wars, pure parts: tombstones (registrar/tombstones.py), the ping-pong
detector (protection/pingpong.py), same address = same device (policy), and
the kicked device's MESSAGE text (registrar/kick_notice.py)."""

from __future__ import annotations

import pytest

from regswitch.common.params import ParamError, Params
from regswitch.protection.pingpong import PingPongDetector, device_of
from regswitch.registrar.kick_notice import DEFAULT_TEXT, render, template_error
from regswitch.registrar.policy import ContactRequest, Policy, RegisterRequest, decide
from regswitch.registrar.tombstones import Tombstones, refusal_text
from support.builders import make_binding

AOR = "alice@example.com"
NOW = 1_000_000.0


def _replaced(stones: Tombstones, keep_for: float = 0.0, **fields: object) -> None:
    old = make_binding(call_id="old-call", expires_at=NOW + 300, **fields)
    stones.replaced(
        old,
        NOW,
        keep_for,
        by_contact="sip:alice@203.0.113.7:5060",
        by_source="udp:203.0.113.7:5060",
        by_agent="Yealink T54W",
        by_binding="b2",
    )


def test_a_refresh_of_a_replaced_registration_is_refused_until_its_old_expiry() -> None:
    stones = Tombstones()
    _replaced(stones)
    stone = stones.refusing(AOR, "old-call", set(), "10.0.0.1", None, NOW + 10)
    assert stone is not None and stone.kind == "replaced" and stone.by_binding == "b2"
    text = refusal_text(stone, NOW + 10)
    assert "203.0.113.7" in text and "Yealink T54W" in text and "old-call" in text
    # a fresh registration of the same device (new Call-ID: a restart) is a newcomer
    assert stones.refusing(AOR, "new-call", set(), "10.0.0.1", None, NOW + 10) is None
    # another account is not concerned
    assert stones.refusing("bob@example.com", "old-call", set(), "10.0.0.1", None, NOW) is None
    # the old registration would have expired: the tombstone is gone
    assert stones.refusing(AOR, "old-call", set(), "10.0.0.1", None, NOW + 300) is None
    assert len(stones) == 0


def test_a_tombstone_lasts_at_least_the_refuse_time() -> None:
    stones = Tombstones()
    _replaced(stones, keep_for=3600)
    assert stones.refusing(AOR, "old-call", set(), "10.0.0.1", None, NOW + 3599) is not None
    assert stones.refusing(AOR, "old-call", set(), "10.0.0.1", None, NOW + 3600) is None


def test_a_block_refuses_the_device_even_with_a_fresh_call_id() -> None:
    stones = Tombstones()
    phone = make_binding(call_id="c1", source_ip="10.0.0.9", user_agent="Grandstream")
    stones.blocked(phone, NOW, 600)
    assert stones.refusing(AOR, "c-new", set(), "10.0.0.9", "Grandstream", NOW + 1) is not None
    assert stones.refusing(AOR, "c-new", set(), "10.0.0.9", "Zoiper", NOW + 1) is None
    assert stones.refusing(AOR, "c-new", set(), "10.0.0.8", "Grandstream", NOW + 1) is None
    assert stones.refusing(AOR, "c-new", set(), "10.0.0.9", "Grandstream", NOW + 600) is None

    with_instance = make_binding(call_id="c2", instance="<urn:uuid:1>", source_ip="10.0.0.9")
    stones.blocked(with_instance, NOW, 600)
    assert stones.refusing(AOR, "c3", {"<urn:uuid:1>"}, "192.0.2.1", None, NOW) is not None
    assert stones.refusing(AOR, "c3", {"<urn:uuid:2>"}, "10.0.0.9", None, NOW) is None
    assert stones.lift(AOR) == 1  # the first block ended (pruned at NOW + 600)
    assert stones.refusing(AOR, "c1", set(), "10.0.0.9", "Grandstream", NOW) is None


def test_tombstones_per_account_are_bounded() -> None:
    stones = Tombstones()
    for i in range(100):
        stones.blocked(make_binding(call_id=f"c{i}"), NOW, 600)
    assert len(stones) == 16
    assert stones.refusing(AOR, "c99", set(), "x", None, NOW) is not None
    assert stones.refusing(AOR, "c0", set(), "x", None, NOW) is None


def test_ping_pong_between_the_same_two_devices_holds_the_account() -> None:
    pp = PingPongDetector(limit=3, window=7200, hold=3600)
    a, b, c = (device_of(None, ip, "UA") for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    t = NOW
    assert not pp.replaced(AOR, a, b, t)
    assert not pp.replaced(AOR, b, a, t + 1800)
    assert not pp.replaced(AOR, a, c, t + 1900)  # another pair: counted apart
    assert not pp.replaced(AOR, a, b, t + 3600)
    assert pp.replaced(AOR, b, a, t + 5400)  # the 4th between a and b within 2 h
    assert pp.held(AOR, t + 5401) and pp.held_until(AOR) == t + 5400 + 3600
    assert pp.devices(AOR) == tuple(sorted((a, b)))
    assert not pp.held(AOR, t + 9000)


def test_ping_pong_outside_the_window_and_one_device_do_not_count() -> None:
    pp = PingPongDetector(limit=1, window=100, hold=10)
    a, b = device_of("<urn:uuid:a>", "10.0.0.1", None), device_of(None, "10.0.0.1", None)
    assert a != b
    assert not pp.replaced(AOR, a, a, NOW)
    assert not pp.replaced(AOR, a, b, NOW)
    assert not pp.replaced(AOR, b, a, NOW + 101)
    assert pp.replaced(AOR, a, b, NOW + 150)
    pp.release(AOR)
    assert not pp.held(AOR, NOW + 151)


def _register(ip: str, port: int, contact: str, call_id: str = "fresh") -> RegisterRequest:
    return RegisterRequest(
        aor=AOR, call_id=call_id, cseq=1, transport="udp", source_ip=ip, source_port=port,
        local_ip="127.0.0.1", local_port=5060, conn_id=0, user_agent=None, path=(), now=NOW,
    )


@pytest.mark.parametrize("replace", [True, False])
def test_a_phone_restarted_on_the_same_address_is_the_same_device(replace: bool) -> None:
    old = make_binding(contact="sip:1234@10.0.0.1:5060", expires_at=NOW + 100)
    req = _register("10.0.0.1", 5060, "sip:5678@10.0.0.1:5060")
    contact = ContactRequest("sip:5678@10.0.0.1:5060", "sip:5678@10.0.0.1:5060", 300)
    policy = Policy(replace=replace, keep_calls=False, max_contacts=1, if_unreachable=True)
    decision = decide([old], req, [contact], policy)
    assert decision.outcome == "ok" and not decision.removals
    assert decision.changes[0].binding is old and decision.changes[0].kind == "same-device"
    # another port of the same host is another process: a conflict as before
    other = decide([old], _register("10.0.0.1", 5062, "x"), [contact], policy)
    assert other.removals if replace else other.outcome == "probe"


def test_the_message_text_template() -> None:
    old = make_binding(source_ip="10.0.0.1")
    text = render(DEFAULT_TEXT, AOR, old, "udp:203.0.113.7:5060", "sip:x", "Yealink T54W", 0.0)
    assert text == f"Signed out: {AOR} registered from 203.0.113.7 (Yealink T54W) at 00:00 UTC"
    assert template_error("{account} {new_source} {datetime}") is None
    assert "unknown placeholder {password}" in (template_error("{password}") or "")
    assert template_error("{account") is not None
    params = Params()
    with pytest.raises(ParamError, match="unknown placeholder"):
        params.validate("REGISTER_REPLACE_NOTIFY_TEXT", "you were kicked by {nobody}")
    params.validate("REGISTER_REPLACE_NOTIFY_TEXT", "Signed out by {new_agent}")
