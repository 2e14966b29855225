"""Calls between real PJSIP (pjsua2) phones with digest accounts, against a real
`regswitch serve`: the stateless 407 to INVITE, in-dialog requests (re-INVITE, BYE)
from the parties accepted, CALLS_REQUIRE_REGISTRATION refusing a phone that is no
longer registered, and a kick ending the call with an RFC 3326 Reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calls.harness import Api
from support import wait_until
from support.pjsua import PjsuaError
from support.register_helpers import DOMAIN, create_account
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.pjsua, pytest.mark.timeout(90)]


def registered(pjsua: Callable[..., Any], server: RunningServer, name: str) -> Any:
    create_account(server, name, f"pw-{name}")
    phone = pjsua(name)
    host, port = server.udp
    phone.register(f"sip:{host}:{port}", name, DOMAIN, f"pw-{name}", expires=300,
                   proxy=f"sip:{host}:{port};lr")  # calls to @regswitch.local go to the switch
    assert phone.wait_reg(timeout=10)["code"] == 200
    return phone


def connect(alice: Any, bob: Any) -> tuple[int, int]:
    """alice calls bob (through the 407) and bob answers: (alice's call, bob's call)."""
    a_call = alice.call(f"sip:bob@{DOMAIN}")
    incoming = bob.wait_event(lambda e: e["event"] == "incoming_call", timeout=10)
    b_call = int(incoming["call"])
    bob.answer(b_call, 200)
    alice.wait_call_state("CONFIRMED", call=a_call)
    bob.wait_call_state("CONFIRMED", call=b_call)
    return a_call, b_call


def reinvite_ok(phone: Any, call: int) -> None:
    """A re-INVITE from `phone`, answered 200. PJSIP refuses to start one while the
    call's previous INVITE transaction is open, and the peer may answer 491 while its
    own is still closing (glare): then it is tried again, as RFC 3261 §14.1 says."""

    def started() -> bool:
        try:
            phone.command("reinvite", call=call)
        except PjsuaError:
            return False
        return True

    codes = []
    for _ in range(3):
        wait_until(started, 10, "PJSIP to accept a re-INVITE", interval=0.2)
        done = phone.wait_event(
            lambda e: e["event"] == "tsx" and e["method"] == "INVITE" and e["role"] == "uac"
            and e["call"] == call and e["code"] >= 200,
            timeout=10,
        )
        codes.append(done["code"])
        if done["code"] != 491:
            break
    assert codes[-1] == 200, codes


def test_pjsua_call_reinvites_and_hangs_up(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    alice, bob = registered(pjsua, server, "alice"), registered(pjsua, server, "bob")
    a_call, b_call = connect(alice, bob)
    api = Api(server)
    [call] = api.calls()
    assert call["state"] == "answered" and len(call["bindings"]) == 2  # tied to both phones
    # re-INVITEs from either party, from where it is, are relayed and answered
    reinvite_ok(alice, a_call)
    reinvite_ok(bob, b_call)
    bob.hangup(b_call)
    ended = alice.wait_call_state("DISCONNECTED", call=a_call)
    assert ended["code"] == 200, ended
    api.wait_no_calls()


def test_pjsua_unregistered_phone_cannot_call(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    alice, _ = registered(pjsua, server, "alice"), registered(pjsua, server, "bob")
    alice.command("unregister")
    alice.wait_reg(timeout=10)
    a_call = alice.call(f"sip:bob@{DOMAIN}")
    refused = alice.wait_call_state("DISCONNECTED", call=a_call)
    assert (refused["code"], refused["reason"]) == (403, "Not registered"), refused


def test_pjsua_call_kicked_with_a_reason(
    server: RunningServer, pjsua: Callable[..., Any], ua: Callable[..., UA]
) -> None:
    alice, bob = registered(pjsua, server, "alice"), registered(pjsua, server, "bob")
    a_call, b_call = connect(alice, bob)
    # another device takes bob's account over (replace On): bob's call is kicked
    newcomer = ua("udp", server.udp, user="bob")
    assert newcomer.register("bob", DOMAIN, password="pw-bob").status == 200
    kicked = bob.wait_call_state("DISCONNECTED", call=b_call)
    other = alice.wait_call_state("DISCONNECTED", call=a_call)
    why = 'SIP;cause=480;text="Registration replaced"'
    for ended in (kicked, other):
        assert (ended["code"], ended["sip_reason"]) == (200, why), ended


def test_pjsua_caller_registration_deleted_ends_its_call(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    """The call is tied to the caller's registration (the console counts it on that
    row); deleting that registration with kick ends the call, and says why."""
    alice, bob = registered(pjsua, server, "alice"), registered(pjsua, server, "bob")
    a_call, b_call = connect(alice, bob)
    api = Api(server)
    [binding] = api.registrations(f"alice@{DOMAIN}")
    [call] = api.calls()
    assert binding["id"] in call["bindings"]
    deleted = server.api.delete(f"/api/registrations/{binding['id']}", params={"kick": "true"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["calls_ended"] == [call["id"]]
    why = 'SIP;cause=480;text="Registration deleted"'
    for phone, ended_call in ((alice, a_call), (bob, b_call)):
        ended = phone.wait_call_state("DISCONNECTED", call=ended_call)
        assert ended["sip_reason"] == why, ended
    api.wait_no_calls()
