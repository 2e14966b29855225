"""What a stranger who learnt a dialog's identity can make the B2BUA do (nothing), and
what the party itself still can from a new address (with its credentials); the
stateless INVITE challenge; CALLS_REQUIRE_REGISTRATION. Socket-free: the real
transaction layer and B2BUA with a fake loop, transport and registrar
(tests/calls/fakes.py; a `Proxy-Authorization: ok <aor>` stands in for valid digest
credentials there)."""

from __future__ import annotations

import pytest

from calls.fakes import ALICE, ANSWER, BOB1, OFFER, FakeSwitch
from regswitch.sip.message import Request, Response

pytestmark = pytest.mark.timeout(10)

STRANGER = ("192.0.2.66", 5060)  # outside the accounts' networks, no credentials
MOVED = ("198.51.100.7", 40000)  # alice after a NAT rebinding: outside too, but she has them


def a_dialog(invite: Request, ok: Response) -> dict[str, str]:
    """The A-leg's full identity as the caller uses it."""
    return {"call_id": invite.call_id, "from_": invite.headers.get("from") or "",
            "to": ok.headers.get("to") or ""}


def test_our_tag_without_the_callers_tag_is_481() -> None:
    """Call-ID and our To-tag are not the dialog: the From tag must match too."""
    sw = FakeSwitch()
    a_invite, _, ok = sw.answered_call()
    sw.clear()
    sw.in_dialog("BYE", ALICE, call_id=a_invite.call_id, from_="<sip:alice@example.com>;tag=guess",
                 to=ok.headers.get("to") or "", cseq=11)
    assert sw.take(ALICE, 481)
    assert sw.count(BOB1, "BYE") == 0 and sw.only_call().answered


def test_stranger_bye_is_challenged_and_ends_nothing() -> None:
    sw = FakeSwitch()
    a_invite, _, ok = sw.answered_call()
    sw.clear()
    live = sw.tx.server_transactions
    sw.in_dialog("BYE", STRANGER, cseq=11, **a_dialog(a_invite, ok))
    assert sw.take(STRANGER, 407)
    assert sw.count(BOB1, "BYE") == 0 and sw.only_call().answered
    assert sw.tx.server_transactions == live  # the challenge kept nothing
    assert sw.b2bua.guard.refused == 1
    # the caller's own BYE, from where she called, still works (the CSeq was not used up)
    sw.in_dialog("BYE", ALICE, cseq=11, **a_dialog(a_invite, ok))
    assert sw.take(ALICE, 200) and sw.take(BOB1, "BYE")


def test_stranger_reinvite_does_not_repoint_the_leg() -> None:
    sw = FakeSwitch()
    a_invite, b_invite, ok = sw.answered_call()
    sw.clear()
    sw.in_dialog("INVITE", STRANGER, cseq=11, body=OFFER, **a_dialog(a_invite, ok))
    assert sw.take(STRANGER, 407)
    assert sw.count(BOB1, "INVITE") == 0
    sw.loop.advance(40)  # stateless: not retransmitted until Timer H
    assert sw.count(STRANGER, 407) == 0, sw.describe(STRANGER)
    # the callee hangs up: the BYE still goes to the caller, not to the stranger
    sw.in_dialog("BYE", BOB1, call_id=b_invite.call_id,
                 from_=(b_invite.headers.get("to") or "") + ";tag=btag",
                 to=b_invite.headers.get("from") or "", cseq=5)
    assert sw.take(ALICE, "BYE")
    assert sw.count(STRANGER, "BYE") == 0


def test_stranger_with_other_credentials_is_403() -> None:
    """Bob's credentials do not open alice's leg."""
    sw = FakeSwitch()
    a_invite, _, ok = sw.answered_call()
    sw.clear()
    sw.in_dialog("BYE", STRANGER, cseq=11, extra={"Proxy-Authorization": "ok bob@example.com"},
                 call_id=a_invite.call_id, from_="<sip:bob@example.com>;tag=" + (
                     a_invite.from_.tag or ""), to=ok.headers.get("to") or "")
    assert sw.take(STRANGER, 403)
    assert sw.only_call().answered


def test_party_moved_authenticates_and_the_leg_follows() -> None:
    """A NAT rebinding: alice's re-INVITE from a new address is challenged, she answers,
    and the leg follows her there (the relayed 200 and later requests go to MOVED)."""
    sw = FakeSwitch()
    a_invite, b_invite, ok = sw.answered_call()
    sw.clear()
    sw.in_dialog("INVITE", MOVED, cseq=11, body=OFFER, **a_dialog(a_invite, ok))
    assert sw.take(MOVED, 407) and sw.count(BOB1, "INVITE") == 0
    sw.in_dialog("INVITE", MOVED, cseq=12, body=OFFER,
                 extra={"Proxy-Authorization": "ok alice@example.com"}, **a_dialog(a_invite, ok))
    re_b = sw.take(BOB1, "INVITE")
    sw.reply(re_b, 200, BOB1, body=ANSWER)
    assert sw.take(MOVED, 200).cseq.seq == 12
    sw.in_dialog("BYE", BOB1, call_id=b_invite.call_id,
                 from_=(b_invite.headers.get("to") or "") + ";tag=btag",
                 to=b_invite.headers.get("from") or "", cseq=5)
    assert sw.take(MOVED, "BYE")
    # from then on, both addresses are hers: no second challenge
    assert sw.count(ALICE, 407) == 0


def test_callee_leg_needs_the_callees_tag_and_source() -> None:
    sw = FakeSwitch()
    _, b_invite, _ = sw.answered_call()
    sw.clear()
    b_ids = {"call_id": b_invite.call_id, "to": b_invite.headers.get("from") or ""}
    sw.in_dialog("BYE", BOB1, cseq=5, from_=(b_invite.headers.get("to") or "") + ";tag=nope",
                 **b_ids)
    assert sw.take(BOB1, 481)
    sw.in_dialog("BYE", STRANGER, cseq=6, from_=(b_invite.headers.get("to") or "") + ";tag=btag",
                 **b_ids)
    assert sw.take(STRANGER, 407)
    assert sw.count(ALICE, "BYE") == 0 and sw.only_call().answered


def test_stranger_ack_with_late_offer_answer_is_dropped() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob", body=b"")
    sw.reply(sw.take(BOB1, "INVITE"), 200, BOB1, to_tag="btag", body=OFFER)
    ok = sw.take(ALICE, 200)
    sw.ack_2xx(a_invite, ok, STRANGER, body=b"v=0\r\nc=IN IP4 192.0.2.66\r\n")
    assert sw.count(BOB1, "ACK") == 0
    sw.ack_2xx(a_invite, ok, ALICE, body=ANSWER)
    assert sw.take(BOB1, "ACK").body == ANSWER


def test_stranger_cancel_with_the_callers_branch_stops_nothing() -> None:
    sw = FakeSwitch()
    sw.account("alice")
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob")
    sw.reply(sw.take(BOB1, "INVITE"), 180, BOB1, to_tag="r")
    sw.cancel(a_invite, STRANGER)
    # the copied Via has no rport: the answer goes to the stranger's address, Via's port
    assert sw.take((STRANGER[0], ALICE[1]), 481)
    assert sw.count(BOB1, "CANCEL") == 0 and sw.count(ALICE, 487) == 0
    assert not sw.only_call().ended
    sw.cancel(a_invite, ALICE)  # the caller's own CANCEL, with the same branch
    assert sw.take(ALICE, 200).cseq.method == "CANCEL"
    assert sw.take(BOB1, "CANCEL") and sw.take(ALICE, 487)


def test_invite_challenge_is_sent_once_and_keeps_no_state() -> None:
    sw = FakeSwitch()
    sw.account("alice", networks=())
    sw.bind("bob", BOB1)
    sw.invite(STRANGER, "bob")
    # one datagram: answered at once, the INVITE needs no 100 Trying
    assert [m.status for m in sw.sent_to(STRANGER)] == [407]  # type: ignore[union-attr]
    assert sw.tx.server_transactions == 0
    sw.loop.advance(40)
    assert len(sw.sent_to(STRANGER)) == 1 and sw.count(BOB1, "INVITE") == 0


# --- CALLS_REQUIRE_REGISTRATION ---------------------------------------------------------


def required() -> FakeSwitch:
    return FakeSwitch(require_registration=lambda: True)


CREDS = {"Proxy-Authorization": "ok alice@example.com"}


def test_unregistered_caller_is_403_not_registered() -> None:
    sw = required()
    sw.account("alice", networks=())
    sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob", extra=CREDS)
    reply = sw.take(ALICE, 403)
    assert reply.reason == "Not registered"
    assert sw.count(BOB1, "INVITE") == 0
    [cdr] = sw.cdrs.records
    assert (cdr.final_code, cdr.end_reason) == (403, "rejected")


def test_a_contact_claim_is_not_a_registration() -> None:
    """Registered from ALICE; an INVITE from elsewhere naming her Contact is refused."""
    sw = required()
    sw.account("alice", networks=())
    alice = sw.bind("alice", ALICE)
    sw.bind("bob", BOB1)
    sw.invite(MOVED, "bob", extra=CREDS, contact=f"<{alice.contact}>")
    assert sw.take(MOVED, 403).reason == "Not registered"
    assert sw.count(BOB1, "INVITE") == 0


def test_registered_caller_is_tied_to_its_binding_and_kicked_with_it() -> None:
    sw = required()
    sw.account("alice", networks=())
    alice = sw.bind("alice", ALICE)
    sw.bind("bob", BOB1)
    a_invite = sw.invite(ALICE, "bob", extra=CREDS)
    sw.reply(sw.take(BOB1, "INVITE"), 200, BOB1, to_tag="btag", body=ANSWER)
    sw.ack_2xx(a_invite, sw.take(ALICE, 200), ALICE)
    call = sw.only_call()
    assert call.caller_binding_id == alice.id and alice.id in call.view(0)["bindings"]
    assert sw.teardown.kick(alice, "registration-replaced") == [call.id]
    reason = 'SIP;cause=480;text="Registration replaced"'
    assert sw.take(ALICE, "BYE").headers.get("reason") == reason
    assert sw.take(BOB1, "BYE").headers.get("reason") == reason


def test_allowed_network_may_call_without_registering() -> None:
    sw = required()
    sw.account("alice")  # 10.0.0.0/24: a PBX on its own network
    sw.bind("bob", BOB1)
    sw.invite(ALICE, "bob")
    assert sw.take(BOB1, "INVITE")
    assert sw.only_call().caller_binding_id is None


def test_off_lets_any_authenticated_source_call() -> None:
    sw = FakeSwitch(require_registration=lambda: False)
    sw.account("alice", networks=())
    sw.bind("bob", BOB1)
    sw.invite(MOVED, "bob", extra=CREDS)
    assert sw.take(BOB1, "INVITE")
