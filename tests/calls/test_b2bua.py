"""B2BUA behaviour on the real transaction layer with a fake loop and transport:
relaying, forks and their races, timers, retransmitted 2xx, re-INVITE, cleanup."""

from __future__ import annotations

import pytest

from calls.fakes import ALICE, ANSWER, BOB1, BOB2, DOMAIN, OFFER, FakeSwitch
from regswitch.sip.message import Headers, Request

pytestmark = pytest.mark.timeout(10)


def test_answered_call_caller_hangs_up() -> None:
    sw = FakeSwitch()
    a_invite, b_invite, ok = sw.answered_call()
    assert ok.body == ANSWER and b_invite.body == OFFER
    b_ack = sw.take(BOB1, "ACK")
    assert (b_ack.to.tag, b_ack.call_id) == ("btag", b_invite.call_id)
    sw.in_dialog("BYE", ALICE, call_id=a_invite.call_id, from_=a_invite.headers.get("from") or "",
                 to=ok.headers.get("to") or "", cseq=11)
    assert sw.take(ALICE, 200).cseq.method == "BYE"
    bye = sw.take(BOB1, "BYE")
    assert (bye.to.tag, bye.from_.tag) == ("btag", b_invite.from_.tag)
    sw.reply(bye, 200, BOB1)
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.final_code) == ("normal", "caller", 200)
    assert not sw.b2bua.calls


def test_everything_forgotten_after_the_call() -> None:
    """No response handler, dialog or timer outlives a call by more than 64*T1."""
    sw = FakeSwitch()
    a_invite, b_invite, ok = sw.answered_call()
    # a re-INVITE from the caller, answered, so its relay is a 2xx'd INVITE too
    reinvite = sw.in_dialog("INVITE", ALICE, call_id=a_invite.call_id,
                            from_=a_invite.headers.get("from") or "", to=ok.headers.get("to") or "",
                            cseq=11, body=OFFER)
    re_b = sw.take(BOB1, "INVITE")
    sw.reply(re_b, 200, BOB1, body=ANSWER)
    sw.ack_2xx(reinvite, sw.take(ALICE, 200), ALICE)
    sw.in_dialog("BYE", BOB1, call_id=b_invite.call_id,
                 from_=(b_invite.headers.get("to") or "") + ";tag=btag",
                 to=b_invite.headers.get("from") or "", cseq=5)
    bye = sw.take(ALICE, "BYE")
    sw.reply(bye, 200, ALICE)
    sw.loop.advance(60)
    assert sw.endpoint._response_handlers == {}
    assert sw.b2bua._dialogs == {}
    assert sw.b2bua._by_binding == {} and sw.b2bua._by_invite_tx == {}
    assert sw.loop.pending() == 0 or sw.tx.next_timer() is None


def test_late_fork_2xx_is_acked_and_byed_once() -> None:
    sw = FakeSwitch()
    sw.answered_call(forks=(BOB1, BOB2))
    b2_invite = sw.take(BOB2, "INVITE")
    assert sw.count(BOB2, "CANCEL") == 0  # held: no provisional from BOB2 yet
    late = sw.reply(b2_invite, 200, BOB2, to_tag="late", body=ANSWER)
    assert sw.take(BOB2, "ACK").to.tag == "late"
    assert sw.take(BOB2, "BYE").to.tag == "late"
    sw.receive(late, BOB2)  # BOB2 retransmits its 200: our ACK got lost
    assert sw.take(BOB2, "ACK").to.tag == "late"
    assert sw.count(BOB2, "BYE") == 0, sw.describe(BOB2)
    assert sw.only_call().answered


def test_bye_from_a_losing_fork_does_not_end_the_call() -> None:
    sw = FakeSwitch()
    sw.answered_call(forks=(BOB1, BOB2))
    b2_invite = sw.take(BOB2, "INVITE")
    sw.reply(b2_invite, 200, BOB2, to_tag="late")
    sw.clear()
    # the losing device hangs up its own (already doomed) dialog
    sw.in_dialog("BYE", BOB2, call_id=b2_invite.call_id,
                 from_=(b2_invite.headers.get("to") or "") + ";tag=late",
                 to=b2_invite.headers.get("from") or "", cseq=1)
    assert sw.take(BOB2, 200).cseq.method == "BYE"
    assert sw.count(ALICE, "BYE") == 0 and sw.count(BOB1, "BYE") == 0
    assert sw.only_call().answered


def test_max_forwards_zero_is_483() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob", max_forwards=0)
    assert sw.take(ALICE, 483)
    assert sw.count(BOB1, "INVITE") == 0
    [cdr] = sw.cdrs.records
    assert (cdr.final_code, cdr.end_reason) == (483, "rejected")


def test_invite_while_restoring_routes_once_both_parties_are_back() -> None:
    """A restart still restoring its bindings cannot tell "not registered" from
    "not restored yet": it reads the caller's and the callee's stored bindings
    first, and only then routes (or refuses) the INVITE."""
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.registrar.unrestored = {"bob@" + DOMAIN}
    sw.invite(ALICE, "bob")
    [(aors, _)] = sw.registrar.restore_reads
    assert set(aors) == {"alice@" + DOMAIN, "bob@" + DOMAIN}
    assert sw.count(BOB1, "INVITE") == 0  # nothing routed on a partial location
    sw.registrar.finish_restore()
    assert sw.take(BOB1, "INVITE")
    assert sw.only_call().callee == "bob@" + DOMAIN


def test_invite_whose_restore_read_fails_is_503_retry_after() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.registrar.unrestored = {"bob@" + DOMAIN}
    sw.invite(ALICE, "bob")
    sw.registrar.finish_restore(ok=False)
    assert sw.take(ALICE, 503).headers.get("retry-after") == "5"
    assert sw.count(BOB1, "INVITE") == 0
    [cdr] = sw.cdrs.records
    assert (cdr.final_code, cdr.end_reason) == (503, "rejected")


def test_invite_cancelled_while_its_parties_are_restored_is_never_routed() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.registrar.unrestored = {"bob@" + DOMAIN}
    a_invite = sw.invite(ALICE, "bob")
    sw.cancel(a_invite, ALICE)
    assert sw.take(ALICE, 487)
    sw.registrar.finish_restore()
    assert sw.count(BOB1, "INVITE") == 0 and not sw.b2bua.calls
    [cdr] = sw.cdrs.records
    assert (cdr.final_code, cdr.end_reason) == (487, "cancelled")


def test_invite_to_no_account_while_restoring_reads_only_the_caller() -> None:
    """An authenticated caller cannot make the switch read arbitrary names."""
    sw = FakeSwitch()
    sw.account("alice")
    sw.registrar.unrestored = {"alice@" + DOMAIN}
    sw.invite(ALICE, "nobody")
    [(aors, _)] = sw.registrar.restore_reads
    assert aors == ("alice@" + DOMAIN,)
    sw.registrar.finish_restore()
    assert sw.take(ALICE, 404)


def test_a_stranger_invite_while_restoring_reads_nothing() -> None:
    """Unauthenticated, an INVITE is challenged before any account is read."""
    sw = FakeSwitch()
    sw.account("alice", networks=())
    sw.bind("bob", BOB1)
    sw.registrar.unrestored = {"alice@" + DOMAIN, "bob@" + DOMAIN}
    sw.invite(ALICE, "bob")
    assert sw.take(ALICE, 407)
    assert sw.registrar.restore_reads == []


def test_max_forwards_decremented() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob", max_forwards=7)
    assert sw.take(BOB1, "INVITE").max_forwards == 6


def test_reinvite_2xx_retransmission_is_reacked() -> None:
    sw = FakeSwitch()
    a_invite, _, ok = sw.answered_call()
    sw.clear()
    reinvite = sw.in_dialog("INVITE", ALICE, call_id=a_invite.call_id,
                            from_=a_invite.headers.get("from") or "", to=ok.headers.get("to") or "",
                            cseq=11, body=OFFER)
    re_b = sw.take(BOB1, "INVITE")
    assert re_b.body == OFFER and re_b.cseq.seq == 2
    re_b_ok = sw.reply(re_b, 200, BOB1, to_tag="btag", body=ANSWER)
    re_ok = sw.take(ALICE, 200)
    assert re_ok.body == ANSWER and re_ok.cseq.seq == 11
    sw.ack_2xx(reinvite, re_ok, ALICE)
    first = sw.take(BOB1, "ACK")
    assert first.cseq.seq == 2
    sw.receive(re_b_ok, BOB1)  # BOB1 did not get our ACK: it retransmits its 200
    again = sw.take(BOB1, "ACK")
    assert again.cseq.seq == 2 and again.to.tag == "btag"


def test_late_offer_ack_body_relayed_and_resent() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob", body=b"")
    b_invite = sw.take(BOB1, "INVITE")
    assert b_invite.body == b""
    b_ok = sw.reply(b_invite, 200, BOB1, to_tag="btag", body=OFFER)
    ok = sw.take(ALICE, 200)
    sw.ack_2xx(a_invite, ok, ALICE, body=ANSWER)
    assert sw.take(BOB1, "ACK").body == ANSWER
    sw.receive(b_ok, BOB1)
    assert sw.take(BOB1, "ACK").body == ANSWER  # the same ACK, answer included


def test_2xx_with_another_tag_than_the_180_sets_the_dialog() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 180, BOB1, to_tag="early")
    sw.reply(b_invite, 200, BOB1, to_tag="final", body=ANSWER)
    ok = sw.take(ALICE, 200)
    sw.ack_2xx(a_invite, ok, ALICE)
    assert sw.take(BOB1, "ACK").to.tag == "final"
    sw.in_dialog("BYE", ALICE, call_id=a_invite.call_id, from_=a_invite.headers.get("from") or "",
                 to=ok.headers.get("to") or "", cseq=11)
    assert sw.take(BOB1, "BYE").to.tag == "final"


def test_second_2xx_with_another_tag_is_acked_and_byed() -> None:
    """A device behind the binding forked: a second dialog from the same INVITE (§13.2.2.4)."""
    sw = FakeSwitch()
    a_invite, b_invite, ok = sw.answered_call()
    sw.take(BOB1, "ACK")
    sw.reply(b_invite, 200, BOB1, to_tag="other", body=ANSWER)
    assert sw.take(BOB1, "ACK").to.tag == "other"
    assert sw.take(BOB1, "BYE").to.tag == "other"
    assert sw.only_call().answered
    sw.in_dialog("BYE", ALICE, call_id=a_invite.call_id, from_=a_invite.headers.get("from") or "",
                 to=ok.headers.get("to") or "", cseq=11)
    assert sw.take(BOB1, "BYE").to.tag == "btag"


def test_no_answer_timer_cancels_and_answers_408() -> None:
    sw = FakeSwitch(no_answer_timeout=5.0)
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 180, BOB1, to_tag="r")
    sw.loop.advance(4.9)
    assert sw.count(BOB1, "CANCEL") == 0
    sw.loop.advance(0.2)
    sw.take(BOB1, "CANCEL")
    assert sw.take(ALICE, 408)
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.final_code) == ("no-answer", "system", 408)


def test_max_call_duration() -> None:
    sw = FakeSwitch(max_call_duration=60.0)
    sw.answered_call()
    sw.loop.advance(59.0)
    assert sw.count(ALICE, "BYE") == 0
    sw.loop.advance(1.5)
    sw.take(ALICE, "BYE")
    sw.take(BOB1, "BYE")
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.billable_seconds) == ("timeout", "system", 60)


def test_caller_never_acks() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 200, BOB1, to_tag="btag", body=ANSWER)
    sw.loop.advance(40)
    assert sw.count(BOB1, "ACK") == 1 and sw.count(BOB1, "BYE") == 1
    assert sw.count(ALICE, "BYE") == 1
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction) == ("error", "system")


def test_cancel_crossing_a_2xx() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 180, BOB1, to_tag="btag")
    sw.cancel(a_invite, ALICE)
    assert sw.take(ALICE, 487)
    sw.take(BOB1, "CANCEL")
    sw.reply(b_invite, 200, BOB1, to_tag="btag", body=ANSWER)  # crossed our CANCEL
    assert sw.take(BOB1, "ACK") and sw.take(BOB1, "BYE")
    assert sw.count(ALICE, 200, "INVITE") == 0
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction, cdr.final_code) == ("cancelled", "caller", 487)


def test_6xx_from_one_fork_cancels_the_others() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.bind("bob", BOB2)
    sw.invite(ALICE, "bob")
    b1, b2 = sw.take(BOB1, "INVITE"), sw.take(BOB2, "INVITE")
    sw.reply(b2, 180, BOB2, to_tag="r2")
    sw.reply(b1, 603, BOB1, to_tag="r1")
    sw.take(BOB2, "CANCEL")
    assert sw.take(ALICE, 603)
    [cdr] = sw.cdrs.records
    assert cdr.final_code == 603 and cdr.end_direction == "callee"


def test_best_failure_of_forks() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    sw.bind("bob", BOB2)
    sw.invite(ALICE, "bob")
    b1, b2 = sw.take(BOB1, "INVITE"), sw.take(BOB2, "INVITE")
    sw.reply(b1, 408, BOB1, to_tag="r1")
    sw.reply(b2, 486, BOB2, to_tag="r2")
    assert sw.take(ALICE, 486)  # busy says more than a timeout
    [cdr] = sw.cdrs.records
    assert cdr.end_reason == "busy"


def test_in_dialog_request_for_unknown_dialog_481() -> None:
    sw = FakeSwitch()
    sw.in_dialog("BYE", ALICE, call_id="nope", from_="<sip:alice@example.com>;tag=x",
                 to="<sip:bob@example.com>;tag=y", cseq=2)
    assert sw.take(ALICE, 481)


def test_caller_bye_while_ringing_cancels() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 180, BOB1, to_tag="r")
    ringing = sw.take(ALICE, 180)
    sw.in_dialog("BYE", ALICE, call_id=a_invite.call_id, from_=a_invite.headers.get("from") or "",
                 to=ringing.headers.get("to") or "", cseq=11)
    sw.take(BOB1, "CANCEL")
    assert sw.take(ALICE, 487)
    [cdr] = sw.cdrs.records
    assert (cdr.end_reason, cdr.end_direction) == ("cancelled", "caller")


def test_refer_carried_with_refer_to() -> None:
    """A blind transfer: the REFER reaches the other party with its Refer-To."""
    sw = FakeSwitch()
    a_invite, b_invite, ok = sw.answered_call()
    sw.clear()
    sw.in_dialog("REFER", BOB1, call_id=b_invite.call_id,
                 from_=(b_invite.headers.get("to") or "") + ";tag=btag",
                 to=b_invite.headers.get("from") or "", cseq=8,
                 extra={"Refer-To": "<sip:carol@example.com>",
                        "Referred-By": "<sip:bob@example.com>"})
    out = sw.take(ALICE, "REFER")
    assert out.headers.get("refer-to") == "<sip:carol@example.com>"
    assert out.headers.get("referred-by") == "<sip:bob@example.com>"
    assert (out.call_id, out.to.tag) == (a_invite.call_id, a_invite.from_.tag)
    assert out.from_.tag == ok.to.tag


def test_required_extension_is_420() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bKreq")
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:alice@example.com>;tag=r1")
    h.add("To", "<sip:bob@example.com>")
    h.add("Call-ID", "req@x")
    h.add("CSeq", "1 INVITE")
    h.add("Require", "100rel, Timer")
    sw.receive(Request("INVITE", "sip:bob@example.com", h), ALICE)
    reply = sw.take(ALICE, 420)
    assert reply.headers.get("unsupported") == "100rel, timer"
    assert sw.count(BOB1, "INVITE") == 0
    assert sw.cdrs.records[0].final_code == 420


def test_update_from_the_caller_while_ringing_reaches_the_early_dialog() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    b_invite = sw.take(BOB1, "INVITE")
    sw.reply(b_invite, 183, BOB1, to_tag="early", body=ANSWER)
    ringing = sw.take(ALICE, 183)
    assert ringing.body == ANSWER
    sw.in_dialog("UPDATE", ALICE, call_id=a_invite.call_id,
                 from_=a_invite.headers.get("from") or "", to=ringing.headers.get("to") or "",
                 cseq=11, body=OFFER)
    update = sw.take(BOB1, "UPDATE")
    assert (update.call_id, update.to.tag, update.body) == (b_invite.call_id, "early", OFFER)
    sw.reply(update, 200, BOB1, body=ANSWER)
    ok = sw.take(ALICE, 200)
    assert ok.cseq.method == "UPDATE" and ok.body == ANSWER


def test_in_dialog_request_with_max_forwards_0_is_483_not_relayed() -> None:
    sw = FakeSwitch()
    a_invite, _, ok = sw.answered_call()
    sw.take(BOB1, "ACK")
    sw.in_dialog("INFO", ALICE, call_id=a_invite.call_id, from_=a_invite.headers.get("from") or "",
                 to=ok.headers.get("to") or "", cseq=11, max_forwards=0)
    assert sw.take(ALICE, 483).cseq.method == "INFO"
    assert sw.count(BOB1, "INFO") == 0
    # the BYE is ours to answer, not relayed as the same request: 0 hops left is fine
    sw.in_dialog("BYE", ALICE, call_id=a_invite.call_id, from_=a_invite.headers.get("from") or "",
                 to=ok.headers.get("to") or "", cseq=12, max_forwards=0)
    assert sw.take(ALICE, 200).cseq.method == "BYE"
