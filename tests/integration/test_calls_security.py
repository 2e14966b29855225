"""Attacks on calls against a real `regswitch serve` (docs/behaviour.md §4, §10): a
stranger on another loopback address (127.0.0.66) who learnt a call's identity (Call-ID,
tags, the INVITE's branch) tries to end it, redirect it, cancel it or answer its
late offer; an unknown caller's INVITE is answered once, not retransmitted, and
counted as flood volume; an unregistered device cannot place calls as the account
(CALLS_REQUIRE_REGISTRATION) and the kick tells the phones why (RFC 3326 Reason).

After each attack a legitimate request follows on the same path: the next request
the party receives must be that one, so "nothing was relayed" is checked without
waiting for silence."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calls.harness import DOMAIN, Api, unique, user
from regswitch.sip.serialise import serialise
from support import wait_until
from support.server import RunningServer
from support.ua import UA, Dialog, new_branch, new_call_id, new_tag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STRANGER_HOST = "127.0.0.66"
PASSWORD = "s3cret-pw"


def sdp(host: str, port: int) -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n").encode()


OFFER = sdp("127.0.0.1", 4000)
ANSWER = sdp("127.0.0.1", 5000)
EVIL = sdp(STRANGER_HOST, 6666)  # the stranger's media address


@dataclasses.dataclass
class Setup:
    api: Api
    alice: str
    bob: str
    caller: UA
    callee: UA
    stranger: UA
    uri: str  # bob's AOR as a URI


@dataclasses.dataclass
class Answered:
    a_dialog: Dialog  # the caller's view of the A-leg
    b_dialog: Dialog  # the callee's view of the B-leg
    invite: Any  # the INVITE the callee received


@pytest.fixture
def setup(server: RunningServer, ua: Callable[..., UA]) -> Setup:
    """alice and bob, password accounts (no allowed networks), each registered from its
    own socket on 127.0.0.1; a stranger on 127.0.0.66 with no credentials."""
    api = Api(server)
    alice = api.account(unique("alice"), allowed_networks=[], password=PASSWORD)
    bob = api.account(unique("bob"), allowed_networks=[], password=PASSWORD)
    caller = ua("udp", server.udp, user=user(alice))
    callee = ua("udp", server.udp, user=user(bob))
    assert caller.register(user(alice), DOMAIN, password=PASSWORD).status == 200
    assert callee.register(user(bob), DOMAIN, password=PASSWORD).status == 200
    stranger = ua("udp", server.udp, local_host=STRANGER_HOST, user="mallory")
    return Setup(api, alice, bob, caller, callee, stranger, f"sip:{user(bob)}@{DOMAIN}")


def authorized_invite(s: Setup, body: bytes = OFFER) -> Any:
    """The caller's INVITE through the 407; returns its client transaction."""
    headers = {"From": f"<sip:{s.alice}>;tag={new_tag()}", "Call-ID": new_call_id(),
               "CSeq": "1 INVITE"}
    tx = s.caller.invite(s.uri, body=body, headers=headers)
    challenge = s.caller.wait_response(tx)
    assert challenge.status == 407, challenge
    chosen = s.caller.choose_challenge(challenge)
    assert chosen is not None
    name, value = s.caller.authorization(chosen, "INVITE", s.uri, user(s.alice), PASSWORD)
    return s.caller.invite(s.uri, body=body, headers={**headers, "CSeq": "2 INVITE", name: value})


def answer_call(s: Setup) -> Answered:
    tx = authorized_invite(s)
    invite = s.callee.expect_request("INVITE")
    ok = s.callee.respond(invite, 200, body=ANSWER)
    answer = s.caller.wait_response(tx)
    assert answer.status == 200, answer
    s.caller.ack(answer)
    assert s.callee.expect_request("ACK").body == b""
    s.api.wait_call(s.alice, "answered")
    return Answered(s.caller.dialog_from_response(answer), s.callee.dialog_from_request(invite, ok),
                    invite)


def copy(dialog: Dialog) -> Dialog:
    return dataclasses.replace(dialog, route_set=list(dialog.route_set))


def caller_info_comes_next(s: Setup, call: Answered, server: RunningServer) -> None:
    """The caller sends an INFO in its dialog: it must be the next request the callee
    receives (so nothing the stranger sent before was relayed), and is answered."""
    tx = s.caller.send_request(s.caller.build_request("INFO", dialog=call.a_dialog), server.udp)
    got = s.callee.expect_request()
    assert got.method == "INFO", got
    s.callee.respond(got, 200)
    assert s.caller.wait_response(tx).status == 200


def test_stranger_bye_does_not_end_the_call(setup: Setup, server: RunningServer) -> None:
    s = setup
    call = answer_call(s)
    # knowing Call-ID and our To-tag is not enough: the From tag is part of the dialog
    guessed = copy(call.a_dialog)
    guessed.local = f"<sip:{s.alice}>;tag=guessed"
    assert s.stranger.request("BYE", dialog=guessed, dest=server.udp).status == 481
    # the full dialog id from another address: the party's credentials are asked for
    reply = s.stranger.request("BYE", dialog=copy(call.a_dialog), dest=server.udp)
    assert reply.status == 407, reply
    # the same against the callee's leg
    reply = s.stranger.request("BYE", dialog=copy(call.b_dialog), dest=server.udp)
    assert reply.status == 407, reply

    # nothing reached the other side: the next request the callee sees is the caller's INFO
    caller_info_comes_next(s, call, server)
    assert s.api.call_of(s.alice, "answered") is not None

    # the parties themselves still hang up from where they are
    assert s.caller.request("BYE", dialog=call.a_dialog).status == 200
    bye = s.callee.expect_request("BYE")
    s.callee.respond(bye, 200)
    s.api.wait_no_calls()


def test_stranger_over_tcp_is_challenged_too(
    setup: Setup, server: RunningServer, ua: Callable[..., UA]
) -> None:
    """Another transport is another source: a BYE on a TCP connection of its own."""
    s = setup
    call = answer_call(s)
    stranger = ua("tcp", server.tcp, local_host=STRANGER_HOST, user="mallory")
    assert stranger.request("BYE", dialog=copy(call.a_dialog)).status == 407
    caller_info_comes_next(s, call, server)


def test_stranger_reinvite_does_not_redirect_the_call(setup: Setup, server: RunningServer) -> None:
    s = setup
    call = answer_call(s)
    hijack = s.stranger.build_request("INVITE", dialog=copy(call.a_dialog), body=EVIL,
                                      headers={"Content-Type": "application/sdp"})
    reply = s.stranger.wait_response(s.stranger.send_request(hijack, server.udp))
    assert reply.status == 407, reply
    # the stranger gets exactly one 407: stateless, not retransmitted until Timer H
    # (the test UA ACKs it, as a phone would; the ACK matches nothing and is dropped)

    # the callee never saw the stranger's offer, and its BYE still goes to the caller
    caller_info_comes_next(s, call, server)
    assert s.callee.request("BYE", dialog=call.b_dialog, dest=server.udp).status == 200
    bye = s.caller.expect_request("BYE")
    s.caller.respond(bye, 200)
    s.stranger.assert_no_request("BYE", within=0.3)


def test_legitimate_reinvite_and_a_moved_caller(
    setup: Setup, server: RunningServer, ua: Callable[..., UA]
) -> None:
    """The party's own re-INVITE is relayed as before; from a new address (a NAT
    rebinding) it is challenged, and once answered with the account's credentials the
    leg follows the party there."""
    s = setup
    call = answer_call(s)
    tx = s.caller.send_request(
        s.caller.build_request("INVITE", dialog=call.a_dialog, body=OFFER,
                               headers={"Content-Type": "application/sdp"}), server.udp)
    reinvite = s.callee.expect_request("INVITE")
    assert reinvite.body == OFFER
    s.callee.respond(reinvite, 200, body=ANSWER)
    ok = s.caller.wait_response(tx)
    assert ok.status == 200 and ok.body == ANSWER
    s.caller.ack(ok)
    s.callee.expect_request("ACK")

    moved = ua("udp", server.udp, user=user(s.alice))  # same host, new port
    dialog = copy(call.a_dialog)
    dialog.local_seq += 10
    first = moved.request("INVITE", dialog=dialog, body=OFFER, dest=server.udp,
                          headers={"Content-Type": "application/sdp"})
    assert first.status == 407, first
    chosen = moved.choose_challenge(first)
    assert chosen is not None
    name, value = moved.authorization(chosen, "INVITE", dialog.remote_target, user(s.alice),
                                      PASSWORD)
    tx = moved.send_request(
        moved.build_request("INVITE", dialog=dialog, body=OFFER,
                            headers={"Content-Type": "application/sdp", name: value}),
        server.udp)
    reinvite = s.callee.expect_request("INVITE")
    s.callee.respond(reinvite, 200, body=ANSWER)
    ok = moved.wait_response(tx)
    assert ok.status == 200
    moved.ack(ok)
    s.callee.expect_request("ACK")
    # the callee hangs up: the BYE goes where the caller moved to
    assert s.callee.request("BYE", dialog=call.b_dialog, dest=server.udp).status == 200
    bye = moved.expect_request("BYE")
    moved.respond(bye, 200)


def test_stranger_cancel_with_the_callers_branch(setup: Setup, server: RunningServer) -> None:
    s = setup
    tx = authorized_invite(s)
    invite = s.callee.expect_request("INVITE")
    s.callee.respond(invite, 180)
    wait_until(lambda: tx.provisionals and any(r.status == 180 for r in tx.provisionals), 5,
               "the caller hears ringing")
    # the stranger copies the INVITE's Via (branch and sent-by) into its CANCEL
    original = tx.request
    cancel = s.stranger.build_request(
        "CANCEL", uri=original.uri,
        headers={"Via": original.headers.get_all("Via")[0],
                 "From": original.headers.get("From") or "", "To": original.headers.get("To") or "",
                 "Call-ID": original.call_id, "CSeq": f"{original.cseq.seq} CANCEL"})
    s.stranger.send_raw(serialise(cancel))
    reply = s.stranger.recv_response()
    assert (reply.status, reply.cseq.method) == (481, "CANCEL"), reply
    # the call goes on: the callee answers and the caller gets the 200
    s.callee.respond(invite, 200, body=ANSWER)
    ok = s.caller.wait_response(tx)
    assert ok.status == 200, ok
    s.caller.ack(ok)
    assert s.callee.expect_request().method == "ACK"
    s.api.wait_call(s.alice, "answered")


def test_stranger_ack_with_a_late_offer_answer_is_dropped(
    setup: Setup, server: RunningServer
) -> None:
    s = setup
    tx = authorized_invite(s, body=b"")
    invite = s.callee.expect_request("INVITE")
    assert invite.body == b""
    s.callee.respond(invite, 200, body=OFFER)  # the offer is in the 200
    ok = s.caller.wait_response(tx)
    assert ok.status == 200 and ok.body == OFFER
    dialog = s.caller.dialog_from_response(ok)
    forged = s.stranger.build_request("ACK", dialog=copy(dialog), cseq=ok.cseq.seq, body=EVIL,
                                      headers={"Content-Type": "application/sdp"})
    s.stranger.send_raw(serialise(forged))
    s.caller.ack(ok, headers={"Content-Type": "application/sdp"}, body=ANSWER)
    ack = s.callee.expect_request("ACK")
    assert ack.body == ANSWER, ack.body
    s.callee.assert_no_request("ACK", within=0.5)


@pytest.fixture
def raw_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((STRANGER_HOST, 0))
    yield sock
    sock.close()


def raw_invite(sock: socket.socket, caller: str, callee: str) -> bytes:
    host, port = sock.getsockname()
    return (
        f"INVITE sip:{callee} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}>;tag={new_tag()}\r\n"
        f"To: <sip:{callee}>\r\n"
        f"Call-ID: {new_call_id(host)}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:x@{host}:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def receive(sock: socket.socket, timeout: float) -> bytes | None:
    """The next datagram, or None if none arrives within `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(65535)
    except TimeoutError:
        return None


def status(data: bytes | None) -> str | None:
    return data.split(b" ", 2)[1].decode() if data else None


def test_unknown_callers_invite_is_answered_once(
    setup: Setup, server: RunningServer, raw_socket: socket.socket
) -> None:
    """One INVITE without credentials, never ACKed: one datagram back, the 407 (no
    100 Trying before it, no retransmissions: Timer G would resend it at 0.5 s and
    1.5 s). It is no bigger than a few times the INVITE."""
    s = setup
    invite = raw_invite(raw_socket, s.alice, s.bob)
    raw_socket.sendto(invite, server.udp)
    challenge = receive(raw_socket, 5.0)
    assert challenge is not None and status(challenge) == "407", challenge
    assert len(challenge) < 4 * len(invite), (len(challenge), len(invite))
    assert receive(raw_socket, 2.0) is None  # nothing more


def test_unauthenticated_invites_count_as_flood(
    server_factory: Callable[..., RunningServer], raw_socket: socket.socket
) -> None:
    server = server_factory(env={"REGSWITCH_TRUSTED_NETWORKS": "192.0.2.0/24"})
    api = Api(server)
    alice = api.account(unique("alice"), allowed_networks=[], password=PASSWORD)
    bob = api.account(unique("bob"), allowed_networks=[], password=PASSWORD)
    api.set_param("REGISTER_FLOOD_LIMIT", 5)
    api.set_param("REGISTER_FLOOD_WINDOW", 60)
    statuses = []
    for _ in range(6):
        raw_socket.sendto(raw_invite(raw_socket, alice, bob), server.udp)
        statuses.append(status(receive(raw_socket, 5.0)))
    # five challenges, the sixth trips the block (503, sent once) ...
    assert statuses == ["407"] * 5 + ["503"], statuses
    # ... and from then on the source is dropped unanswered
    raw_socket.sendto(raw_invite(raw_socket, alice, bob), server.udp)
    assert receive(raw_socket, 1.0) is None
    [blocked] = api.get("/api/events", type="flood-blocked")
    assert blocked["source"] == STRANGER_HOST


def test_unregistered_device_cannot_call_and_kick_tells_why(
    setup: Setup, server: RunningServer, ua: Callable[..., UA]
) -> None:
    """CALLS_REQUIRE_REGISTRATION (On): a device with the password but no registration
    gets 403 Not registered; a registered caller's call is tied to its binding (the
    console counts it there), and a new registration of the account kicks it with a
    Reason the phones can show."""
    s = setup
    loose = ua("udp", server.udp, user=user(s.alice))  # knows the password, not registered
    headers = {"From": f"<sip:{s.alice}>;tag={new_tag()}", "Call-ID": new_call_id(),
               "CSeq": "1 INVITE"}
    challenge = loose.wait_response(loose.invite(s.uri, body=OFFER, headers=headers))
    chosen = loose.choose_challenge(challenge)
    assert chosen is not None
    name, value = loose.authorization(chosen, "INVITE", s.uri, user(s.alice), PASSWORD)
    refused = loose.wait_response(
        loose.invite(s.uri, body=OFFER, headers={**headers, "CSeq": "2 INVITE", name: value}))
    assert (refused.status, refused.reason) == (403, "Not registered")

    call = answer_call(s)
    [binding] = s.api.registrations(s.alice)
    [active] = s.api.calls()
    assert binding["id"] in active["bindings"]

    # a new device registers alice (replace On): her call is kicked, with a reason
    newcomer = ua("udp", server.udp, user=user(s.alice))
    assert newcomer.register(user(s.alice), DOMAIN, password=PASSWORD).status == 200
    why = 'SIP;cause=480;text="Registration replaced"'
    bye = s.caller.expect_request("BYE")
    assert bye.headers.get("reason") == why, bye
    s.caller.respond(bye, 200)
    bye = s.callee.expect_request("BYE")
    assert bye.headers.get("reason") == why and bye.call_id == call.invite.call_id
    s.callee.respond(bye, 200)
    s.api.wait_no_calls()
