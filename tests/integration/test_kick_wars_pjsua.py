"""Kick wars with real PJSIP (pjsua2) phones against a real `regswitch serve`
(README "Kick wars"): two phones that keep refreshing on one account settle
with one holder; a kicked phone's refresh is refused with an explanation; a
restarted phone is still a newcomer; ping-pong holds the account; delete and
block; and the MESSAGE that tells the kicked phone why (REGISTER_REPLACE_NOTIFY_OLD)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from support import wait_until
from support.register_helpers import DOMAIN, create_account, events, only, registrations, set_params
from support.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.pjsua, pytest.mark.timeout(90)]

UA = "regswitch-tests-pjsua2"


def _register(phone: Any, server: RunningServer, expires: int = 300) -> dict[str, Any]:
    host, port = server.udp
    phone.register(f"sip:{host}:{port}", "alice", DOMAIN, "pw-alice", expires=expires)
    return dict(phone.wait_reg(timeout=10))


def _port_of(contact: str) -> int:
    return int(contact.split(":")[-1].split(";")[0].rstrip(">"))


def _holder(server: RunningServer) -> int:
    return _port_of(only(registrations(server, "alice"))["contact"])


def _tombstones(server: RunningServer) -> list[dict[str, Any]]:
    response = server.api.get("/api/tombstones", params={"account": f"alice@{DOMAIN}"})
    assert response.status_code == 200, response.text
    return list(response.json())


def test_two_phones_refreshing_settle_with_one_holder_and_one_set_of_events(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    set_params(server, SS_ENDPOINT_MIN_EXPIRE=5)
    first, second = pjsua("first"), pjsua("second")
    # pjsua refreshes 5 s before expiry: every 3 s with Expires 8
    assert _register(first, server, expires=8)["code"] == 200
    assert _register(second, server, expires=8)["code"] == 200
    assert _holder(server) == second.udp_port

    # the first phone does not know it was replaced: its refresh (same Call-ID)
    # is refused with what happened, instead of kicking the second back
    refused = first.wait_reg(timeout=10)
    assert refused["code"] == 403 and refused["reason"] == "Registration Replaced", refused
    warning = refused["warning"] or ""
    assert f"127.0.0.1:{second.udp_port}" in warning and UA in warning, warning

    # pjsua does not retry a 403 (final: RFC 3261 §21.4.4); the first phone stays out
    # several refresh cycles of the second phone: it keeps the account
    for _ in range(3):
        assert second.wait_reg(timeout=10)["code"] == 200
    assert _holder(server) == second.udp_port
    assert len(events(server, "replaced", "alice")) == 1
    rejected = only(events(server, "rejected", "alice"))["details"]
    assert rejected["reason"] == "Registration Replaced" and rejected["tombstone"] == "replaced"
    assert len(events(server, "registered", "alice")) == 2
    stone = only(_tombstones(server))
    assert stone["kind"] == "replaced" and stone["refusals"] == 1
    assert stone["by_binding"] == only(registrations(server, "alice"))["id"]

    # the first phone restarted (a fresh registration, new Call-ID) is a newcomer
    restarted = pjsua("first-restarted")
    assert _register(restarted, server, expires=8)["code"] == 200
    assert _holder(server) == restarted.udp_port
    assert len(events(server, "replaced", "alice")) == 2
    # and now the second phone's refresh is the one refused
    assert second.wait_reg(timeout=10)["code"] == 403
    assert _holder(server) == restarted.udp_port


def test_ping_pong_between_two_devices_holds_the_account(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    set_params(server, REGISTER_PINGPONG_LIMIT=2, REGISTER_PINGPONG_HOLD=600)
    desk, soft = pjsua("desk", bind="127.0.0.2"), pjsua("soft", bind="127.0.0.3")
    assert _register(desk, server)["code"] == 200
    # each "register" makes a new pjsua account: a fresh Call-ID, as a restart does
    assert _register(soft, server)["code"] == 200  # replace 1
    assert _register(desk, server)["code"] == 200  # replace 2
    assert _register(soft, server)["code"] == 200  # replace 3: more than 2, held
    flap = only(events(server, "flapping", "alice"))["details"]
    assert flap["kind"] == "ping-pong" and flap["held_until"] is not None
    refused = _register(desk, server)
    assert refused["code"] == 403 and refused["reason"] == "Registration Flapping", refused
    assert only(registrations(server, "alice"))["source_ip"] == "127.0.0.3"

    # an operator ends the hold: the desk phone may take the account back
    lifted = server.api.delete("/api/tombstones", params={"account": f"alice@{DOMAIN}"})
    assert lifted.status_code == 200 and lifted.json()["hold_released"] is True
    assert _register(desk, server)["code"] == 200
    assert only(registrations(server, "alice"))["source_ip"] == "127.0.0.2"


def test_delete_and_block_refuses_the_device_for_a_while(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    stolen, mine = pjsua("stolen", bind="127.0.0.2"), pjsua("mine", bind="127.0.0.3")
    assert _register(stolen, server)["code"] == 200
    binding = only(registrations(server, "alice"))
    response = server.api.delete(
        f"/api/registrations/{binding['id']}", params={"kick": "true", "block": 600}
    )
    assert response.status_code == 200 and response.json()["blocked_until"] is not None
    deleted = only(events(server, "deleted", "alice"))["details"]
    assert deleted["blocked_until"] == response.json()["blocked_until"]

    # its registrations are refused, fresh ones included (pjsua makes a new
    # Call-ID after a failure): the same device by IP and user agent
    stolen.command("reregister")
    refused = stolen.wait_reg(timeout=10)
    assert refused["code"] == 403 and refused["reason"] == "Device Blocked", refused
    assert "blocked by the operator" in (refused["warning"] or "")
    assert _register(stolen, server)["code"] == 403
    assert not registrations(server, "alice")
    # another device of the account is not
    assert _register(mine, server)["code"] == 200
    bad = server.api.delete(f"/api/registrations/{binding['id']}", params={"block": -1})
    assert bad.status_code in (404, 422)


def test_the_kicked_phone_reads_why_before_its_call_ends(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    create_account(server, "bob", "pw-bob")
    set_params(server, REGISTER_REPLACE_NOTIFY_OLD="MESSAGE")
    host, port = server.udp
    old, new, bob = pjsua("old"), pjsua("new", bind="127.0.0.2"), pjsua("bob")
    old.register(
        f"sip:{host}:{port}", "alice", DOMAIN, "pw-alice", proxy=f"sip:{host}:{port};lr"
    )
    assert old.wait_reg()["code"] == 200
    bob.register(f"sip:{host}:{port}", "bob", DOMAIN, "pw-bob")
    assert bob.wait_reg()["code"] == 200
    old.call(f"sip:bob@{DOMAIN}")
    incoming = bob.wait_event(lambda e: e["event"] == "incoming_call")
    bob.answer(incoming["call"])
    old.wait_call_state("CONFIRMED")

    before = time.monotonic()
    assert _register(new, server)["code"] == 200
    message = old.wait_event(lambda e: e["event"] == "instant_message")
    assert message["content_type"].startswith("text/plain")
    assert message["body"].startswith(
        f"Signed out: alice@{DOMAIN} registered from 127.0.0.2 ({UA}) at "
    ), message
    old.wait_call_state("DISCONNECTED")
    kinds = [e["event"] for e in old.events]
    disconnected = next(
        i for i, e in enumerate(old.events)
        if e["event"] == "call_state" and e["state"] == "DISCONNECTED"
    )
    assert kinds.index("instant_message") < disconnected  # told first, then kicked
    assert time.monotonic() - before < 10


def test_a_message_nobody_answers_does_not_delay_the_kick(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    create_account(server, "alice", "pw-alice")
    set_params(
        server,
        REGISTER_REPLACE_NOTIFY_OLD="MESSAGE",
        REGISTER_REPLACE_NOTIFY_TEXT="You were replaced by {new_source} at {datetime}",
    )
    gone, new = pjsua("gone"), pjsua("new")
    assert _register(gone, server)["code"] == 200
    gone.stop(unregister=False)  # its MESSAGE will get no answer
    started = time.monotonic()
    assert _register(new, server)["code"] == 200
    assert time.monotonic() - started < 3  # not the 32 s of a MESSAGE timing out
    assert _holder(server) == new.udp_port
    wait_until(lambda: events(server, "replaced", "alice"), 5, "the replace event")
