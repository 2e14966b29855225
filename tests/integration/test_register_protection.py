"""Protection and reachability against a real `regswitch serve`: REGISTER
floods and authentication-failure floods (docs/behaviour.md §5), flapping (§5), NAT
keepalives and reachability (§6), and the §3.4 takeover of a binding that
keepalives already marked unreachable."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from support import wait_until
from support.register_helpers import (
    DOMAIN,
    UNTRUSTED_LOOPBACK,
    Device,
    create_account,
    events,
    only,
    registrations,
    set_params,
    sipp_register,
)
from support.server import RunningServer
from support.sipp import SippRunner, free_port
from support.ua import UA, SipTimeout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]



def _metric(server: RunningServer, name: str) -> float:
    for line in server.api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


@pytest.mark.sipp
def test_register_flood_blocks_the_source(
    server_factory: Callable[..., RunningServer], sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    server = server_factory(env=UNTRUSTED_LOOPBACK)
    create_account(server, "alice", "pw")
    set_params(server, REGISTER_FLOOD_LIMIT=5, REGISTER_FLOOD_WINDOW=60, FLOOD_BLOCK_TIME=4)
    run = sipp_register(
        sipp,
        server,
        "alice",
        None,
        scenario="register_unauthenticated",
        calls=10,
        rate=50,
        check=False,
    )
    # the first five are answered (401); from the sixth on the source is blocked
    # and its requests are dropped unanswered
    assert run.result.successful == 5 and run.result.failed == 5, run.result.describe()
    blocked = only(events(server, "flood-blocked"))
    assert blocked["source"] == "127.0.0.1"
    assert "more than 5 unauthenticated requests" in blocked["details"]["reason"]

    # any REGISTER from that IP is dropped now, credentials or not
    phone = ua("udp", server.udp)
    with pytest.raises(SipTimeout):
        phone.register("alice", DOMAIN, password="pw", timeout=1.0)
    assert not registrations(server, "alice")
    assert _metric(server, "regswitch_flood_dropped_total") >= 5
    assert _metric(server, "regswitch_flood_blocked_sources") == 1

    # FLOOD_BLOCK_TIME later the source is served again
    blocked_at = blocked["time"]
    wait_until(lambda: _try_register(phone), 8, "the block to end")
    assert time.time() - blocked_at >= 4
    assert only(registrations(server, "alice"))["contact"] == phone.contact_uri("alice")


def _try_register(phone: UA) -> bool:
    try:
        return phone.register("alice", DOMAIN, password="pw", timeout=0.5).status == 200
    except SipTimeout:
        return False


@pytest.mark.sipp
def test_authentication_failures_block_the_account_from_the_source(
    server_factory: Callable[..., RunningServer], sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    server = server_factory(env=UNTRUSTED_LOOPBACK)
    create_account(server, "alice", "pw")
    set_params(server, AUTH_FAIL_LIMIT=3)
    create_account(server, "bob", "pw")
    run = sipp_register(sipp, server, "alice", "guess", scenario="register_auth_rejected", calls=4)
    assert run.statuses == [401, 403] * 4
    blocked = only(events(server, "flood-blocked"))
    assert "more than 3 failed authentications of alice@" in blocked["details"]["reason"]
    assert blocked["account"] == f"alice@{DOMAIN}"
    assert len(events(server, "auth-failed")) == 4

    # alice is blocked from that source: a new nonce is not even verified
    phone = ua("udp", server.udp)
    assert phone.register("alice", DOMAIN, password="pw", timeout=2).status == 403
    # the source is not: another account registers from it
    assert phone.register("bob", DOMAIN, password="pw", timeout=2).status == 200


def test_trusted_source_is_never_blocked(server: RunningServer, ua: Callable[..., UA]) -> None:
    # default trusted networks include loopback
    create_account(server, "alice", "pw")
    set_params(server, REGISTER_FLOOD_LIMIT=2, AUTH_FAIL_LIMIT=1)
    phone = ua("udp", server.udp)
    for _ in range(3):
        assert phone.register("alice", DOMAIN, password="wrong", timeout=2).status == 403
    assert phone.register("alice", DOMAIN, password="pw", timeout=2).status == 200
    assert not events(server, "flood-blocked")


@pytest.mark.sipp
def test_flapping_holds_further_replacements(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw")
    set_params(server, REGISTER_FLAP_LIMIT=2, REGISTER_FLAP_WINDOW=60, REGISTER_FLAP_HOLD=300)
    sipp_register(sipp, server, "alice", "pw")
    sipp_register(sipp, server, "alice", "pw")  # replacement 1
    sipp_register(sipp, server, "alice", "pw")  # replacement 2
    assert not events(server, "flapping")
    holder_port = free_port()
    holder = sipp_register(sipp, server, "alice", "pw", contact_port=holder_port)  # 3 > 2
    flapping = only(events(server, "flapping", "alice"))["details"]
    assert flapping["limit"] == 2 and flapping["window"] == 60
    assert flapping["held_until"] - time.time() > 290

    refused = sipp_register(sipp, server, "alice", "pw", scenario="register_replace_rejected")
    assert (refused.final.status, refused.final.reason) == (403, "Registration Flapping")
    assert 290 <= int(refused.final.headers.get("Retry-After") or 0) <= 300
    assert only(registrations(server, "alice"))["contact"] == holder.contact
    assert only(events(server, "rejected", "alice"))["details"]["flapping"] is True

    # the holder itself keeps working: the same device re-registering is no replacement
    again = sipp_register(sipp, server, "alice", "pw", contact_port=holder_port)
    assert again.final.status == 200
    assert only(registrations(server, "alice"))["source"] == again.source


@pytest.mark.sipp
@pytest.mark.slow
def test_nat_keepalives_mark_reachability_and_unreachable_binding_can_be_taken_over(
    server: RunningServer, sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    """~21 s: three keepalive periods of 5 s (the minimum) must pass unanswered."""
    for user in ("alice", "carol", "bob"):
        create_account(server, user, "pw")
    set_params(server, SS_SIP_NAT_KEEP_ALIVE_PERIOD=5, SS_ENDPOINT_REGISTER_REPLACE="Off")
    # alice and carol: behind NAT (the contact is a private address, not the source)
    alice = Device(ua("udp", server.udp), "alice", contact="sip:alice@192.0.2.10:5060")
    carol = Device(ua("udp", server.udp), "carol", contact="sip:carol@192.0.2.11:5060")
    bob = Device(ua("udp", server.udp), "bob")  # contact = source: no NAT, no keepalives
    for device in (alice, carol, bob):
        assert device.register("pw", expires=600).status == 200
    before = {b["account"]: b for b in registrations(server)}

    # three keepalives (OPTIONS to the source address) go unanswered...
    for n in range(3):
        for device in (alice, carol):
            options = device.ua.expect_request("OPTIONS", timeout=8)
            assert options.uri == device.contact, n
    # ...and the binding is marked unreachable
    wait_until(
        lambda: not only(registrations(server, "alice"))["reachable"],
        8,
        "alice to be marked unreachable",
    )
    wait_until(
        lambda: not only(registrations(server, "carol"))["reachable"],
        2,
        "carol to be marked unreachable",
    )

    # a reply marks it reachable again
    fourth = alice.ua.expect_request("OPTIONS", timeout=3)
    alice.ua.respond(fourth, 200)
    wait_until(
        lambda: only(registrations(server, "alice"))["reachable"], 3, "alice to be reachable again"
    )
    changes = [e["details"]["reachable"] for e in events(server, "reachability", "alice")]
    assert changes == [False, True]

    # carol is known unreachable: under Off a new device takes over at once (docs/behaviour.md §3.4)
    started = time.monotonic()
    new = sipp_register(sipp, server, "carol", "pw")
    assert new.final.status == 200 and time.monotonic() - started < 1.5
    assert only(registrations(server, "carol"))["contact"] == new.contact
    assert only(events(server, "replaced", "carol"))["details"]["policy"] == "off-unreachable"

    # keepalives never changed a registration, and only NAT'd bindings got them
    after = only(registrations(server, "alice"))
    for key in ("id", "contact", "source", "cseq", "expires_at", "refreshed_at"):
        assert after[key] == before["alice@regswitch.local"][key], key
    assert bob.ua.pending_requests() == []
    assert not [e for e in events(server) if e["type"] in ("refreshed", "expired")]
