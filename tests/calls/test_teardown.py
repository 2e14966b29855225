"""The kick (docs/behaviour.md §3.3) on the real transaction layer with a fake
loop and transport."""

from __future__ import annotations

import pytest

from calls.fakes import ALICE, ANSWER, BOB1, BOB2, FakeSwitch

pytestmark = pytest.mark.timeout(10)
REPLACED = "registration-replaced"
WHY_REPLACED = 'SIP;cause=480;text="Registration replaced"'  # RFC 3326


def test_answered_call_kicked_by_the_callee_binding_bye_both() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    bob = sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 200, BOB1, to_tag="btag", body=ANSWER)
    ok = sw.take(ALICE, 200)
    sw.ack_2xx(a_invite, ok, ALICE)
    call = sw.only_call()

    assert sw.teardown.kick(bob, REPLACED) == [call.id]
    a_bye, b_bye = sw.take(ALICE, "BYE"), sw.take(BOB1, "BYE")
    assert a_bye.headers.get("reason") == b_bye.headers.get("reason") == WHY_REPLACED
    assert (a_bye.call_id, a_bye.to.tag) == (a_invite.call_id, a_invite.from_.tag)
    assert (b_bye.call_id, b_bye.to.tag) == (b_invite.call_id, "btag")
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.final_code) == (REPLACED, "system", 200)
    assert cdr.answer is not None
    assert sw.teardown.kick(bob, REPLACED) == []  # nothing left
    assert (sw.teardown.kicks, sw.teardown.calls_ended) == (2, 1)


def test_kick_before_the_caller_acked_still_acks_and_byes_the_callee() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    bob = sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob")
    sw.reply(sw.take(BOB1, "INVITE"), 200, BOB1, to_tag="btag", body=ANSWER)
    assert len(sw.teardown.kick(bob, REPLACED)) == 1
    assert sw.take(BOB1, "ACK") and sw.take(BOB1, "BYE")
    assert sw.take(ALICE, "BYE")


def test_ringing_call_kicked_cancel_to_device_480_to_caller() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    bob = sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 180, BOB1, to_tag="r")
    call = sw.only_call()

    assert sw.teardown.kick(bob, REPLACED) == [call.id]
    cancel = sw.take(BOB1, "CANCEL")
    assert cancel.call_id == b_invite.call_id and cancel.headers.get("reason") == WHY_REPLACED
    assert sw.take(ALICE, 480).reason == "Registration replaced"
    sw.reply(b_invite, 487, BOB1, to_tag="r")  # the device's answer changes nothing
    assert sw.count(ALICE, 487) == 0
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.final_code) == (REPLACED, "system", 480)
    assert cdr.answer is None and cdr.b_call_id == b_invite.call_id


def test_kick_before_any_provisional_cancels_once_one_arrives() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    bob = sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    assert len(sw.teardown.kick(bob, REPLACED)) == 1
    assert sw.take(ALICE, 480)
    assert sw.count(BOB1, "CANCEL") == 0  # RFC 3261 §9.1: not before a provisional
    sw.reply(b_invite, 180, BOB1, to_tag="r")
    assert sw.take(BOB1, "CANCEL")
    assert sw.count(ALICE, 180) == 0  # the call is over for the caller


def test_kick_one_of_two_ringing_forks_the_other_goes_on() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    bob1 = sw.bind("bob", BOB1)
    sw.bind("bob", BOB2)
    a_invite = sw.invite(ALICE, "bob")
    b1, b2 = sw.take(BOB1, "INVITE"), sw.take(BOB2, "INVITE")
    sw.reply(b1, 180, BOB1, to_tag="r1")
    sw.reply(b2, 180, BOB2, to_tag="r2")

    assert sw.teardown.kick(bob1, REPLACED) == []  # the call is not ended
    assert sw.take(BOB1, "CANCEL")
    assert sw.count(ALICE, 480) == 0
    sw.reply(b2, 200, BOB2, to_tag="r2", body=ANSWER)
    ok = sw.take(ALICE, 200)
    sw.ack_2xx(a_invite, ok, ALICE)
    assert sw.take(BOB2, "ACK")
    assert sw.only_call().answered
    assert sw.count(BOB2, "CANCEL") == 0


def test_outgoing_unanswered_call_kicked_cancel_to_callee_487_to_device() -> None:
    sw = FakeSwitch()
    alice = sw.bind("alice", ALICE)  # the caller is registered from where it calls
    sw.bind("bob", BOB1)
    sw.bind("bob", BOB2)
    sw.invite(ALICE, "bob")
    b1, b2 = sw.take(BOB1, "INVITE"), sw.take(BOB2, "INVITE")
    sw.reply(b1, 180, BOB1, to_tag="r1")
    sw.reply(b2, 183, BOB2, to_tag="r2")
    call = sw.only_call()
    assert call.caller_binding_id == alice.id

    assert sw.teardown.kick(alice, REPLACED) == [call.id]
    for peer in (BOB1, BOB2):
        assert sw.take(peer, "CANCEL").headers.get("reason") == WHY_REPLACED
    assert sw.take(ALICE, 487).reason == "Registration replaced"
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.final_code) == (REPLACED, "system", 487)


def test_answered_call_kicked_by_the_caller_binding() -> None:
    sw = FakeSwitch()
    alice = sw.bind("alice", ALICE)
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    sw.reply(sw.take(BOB1, "INVITE"), 200, BOB1, to_tag="btag", body=ANSWER)
    sw.ack_2xx(a_invite, sw.take(ALICE, 200), ALICE)
    assert len(sw.teardown.kick(alice, "registration-deleted")) == 1
    deleted = 'SIP;cause=480;text="Registration deleted"'
    assert sw.take(ALICE, "BYE").headers.get("reason") == deleted
    assert sw.take(BOB1, "BYE").headers.get("reason") == deleted
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction) == ("registration-deleted", "system")


def test_kicking_a_losing_fork_leaves_the_answered_call() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    bob2 = sw.bind("bob", BOB2)
    a_invite = sw.invite(ALICE, "bob")
    b1, b2 = sw.take(BOB1, "INVITE"), sw.take(BOB2, "INVITE")
    sw.reply(b2, 180, BOB2, to_tag="r2")
    sw.reply(b1, 200, BOB1, to_tag="btag", body=ANSWER)
    sw.ack_2xx(a_invite, sw.take(ALICE, 200), ALICE)
    assert sw.take(BOB2, "CANCEL")
    assert sw.teardown.kick(bob2, REPLACED) == []
    assert sw.count(ALICE, "BYE") == 0 and sw.count(BOB1, "BYE") == 0
    assert sw.only_call().answered
