"""Attacks on registrations against a real `regswitch serve` (README "Security
model: registrations"): what a packet without the account's credentials can
make the registrar do. A UA bound to 127.0.0.66 plays the stranger; one that
never answers what it receives stands for a blind spoofer, who sends from an
address it cannot receive at.

Each test performs the attack and passes only with the defence in place."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from support.digest import authorization, challenges_in
from support.register_helpers import (
    DOMAIN,
    UNTRUSTED_LOOPBACK,
    Device,
    create_account,
    events,
    only,
    refusal_reason,
    registrations,
    set_params,
    update_account,
)
from support.server import RunningServer
from support.ua import UA, SipTimeout, new_branch, new_call_id, new_tag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

STRANGER = "127.0.0.66"


# -- item 4: an address-only account is not evicted by a forged packet ----------------------


def _ip_only_device(server: RunningServer, ua: Callable[..., UA]) -> Device:
    create_account(server, "gw", None, allowed_networks=["127.0.0.0/8"])
    # a real device answers OPTIONS
    device = Device(ua("udp", server.udp, auto_respond={"OPTIONS": 200}), "gw")
    assert device.wait(device.send(device.request())).status == 200
    return device


@pytest.mark.parametrize("attack", ["wildcard", "unregister", "replace"])
def test_forged_udp_register_cannot_evict_an_address_only_account(
    server: RunningServer, ua: Callable[..., UA], attack: str
) -> None:
    device = _ip_only_device(server, ua)
    # the stranger sends from inside the account's network and never answers
    stranger = Device(ua("udp", server.udp, local_host=STRANGER), "gw")
    if attack == "wildcard":
        forged = stranger.request(contact="*", expires=0)
    elif attack == "unregister":
        forged = stranger.request(contact=device.contact, expires=0)
    else:
        forged = stranger.request()  # a new device: replace On would kick the old one
    resp = stranger.wait(stranger.send(forged), timeout=10)
    assert resp.status == 403, resp
    # the check was an OPTIONS to the claimed source, which only a party
    # receiving there could have answered
    assert (
        stranger.ua.expect_request("OPTIONS", timeout=1).uri
        == f"sip:{STRANGER}:{stranger.ua.local[1]}"
    )

    binding = only(registrations(server, "gw"))
    assert binding["contact"] == device.contact
    assert not events(server, "unregistered") and not events(server, "replaced")
    failed = only(events(server, "auth-failed", "gw"))
    assert "return path not confirmed" in failed["details"]["reason"]


def test_address_only_account_refresh_is_cheap_and_a_real_move_is_confirmed(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    device = _ip_only_device(server, ua)
    # a refresh of the same binding from the same address: no check
    assert device.wait(device.send(device.request())).status == 200
    device.ua.assert_no_request("OPTIONS", within=0.3)

    # the device restarts on another port: it answers the check and takes over
    moved = Device(ua("udp", server.udp, auto_respond={"OPTIONS": 200}), "gw")
    assert moved.wait(moved.send(moved.request()), timeout=10).status == 200
    assert moved.ua.expect_request("OPTIONS", timeout=1)
    assert only(registrations(server, "gw"))["contact"] == moved.contact
    assert only(events(server, "replaced", "gw"))["details"]["new_contact"] == moved.contact

    # and it may unregister itself
    assert moved.wait(moved.send(moved.request(contact="*", expires=0)), timeout=10).status == 200
    assert not registrations(server, "gw")


def test_a_refresh_is_not_held_up_by_a_forged_packet_under_check(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    device = _ip_only_device(server, ua)
    stranger = Device(ua("udp", server.udp, local_host=STRANGER), "gw")
    forged = stranger.send(stranger.request(contact="*", expires=0))
    stranger.ua.expect_request("OPTIONS", timeout=2)  # the check is running
    started = time.monotonic()
    assert device.wait(device.send(device.request()), timeout=5).status == 200
    assert time.monotonic() - started < 1.5  # not queued behind the 2 s check
    assert stranger.wait(forged, timeout=10).status == 403


def test_address_only_account_may_change_over_tcp_only(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    device = _ip_only_device(server, ua)
    set_params(server, REGISTER_IP_AUTH_UDP_CHANGES="Refuse")
    stranger = Device(ua("udp", server.udp, local_host=STRANGER), "gw")
    forged = stranger.wait(stranger.send(stranger.request(contact="*", expires=0)))
    assert forged.status == 403
    stranger.ua.assert_no_request("OPTIONS", within=0.3)  # refused at once, no check
    # a refresh over UDP still passes; a move to another device only over TCP
    assert device.wait(device.send(device.request())).status == 200
    moved = Device(ua("udp", server.udp, auto_respond={"OPTIONS": 200}), "gw")
    assert moved.wait(moved.send(moved.request())).status == 403
    assert only(registrations(server, "gw"))["contact"] == device.contact
    reasons = [e["details"]["reason"] for e in events(server, "auth-failed", "gw")]
    assert len(reasons) == 2 and all("over TCP or TLS only" in r for r in reasons), reasons
    over_tcp = Device(ua("tcp", server.tcp), "gw")
    assert over_tcp.wait(over_tcp.send(over_tcp.request())).status == 200
    assert only(registrations(server, "gw"))["contact"] == over_tcp.contact


# -- item 5: a captured REGISTER is never accepted twice, even across a restart ---------------


def test_captured_register_is_refused_after_a_restart(
    server_factory: Callable[..., RunningServer], ua: Callable[..., UA]
) -> None:
    # a configured secret: nonces of the old process still carry a valid tag
    server = server_factory(env={"REGSWITCH_SECRET": "a-configured-secret"})
    create_account(server, "alice", "pw")
    device = Device(ua("udp", server.udp), "alice")
    device.fetch_challenge()
    captured = device.request(authz=device.authz("pw"), expires=600)
    assert device.wait(device.send(captured)).status == 200
    # the device unregisters (so no stored binding's CSeq stands in the way)
    bye = device.request(contact="*", expires=0, authz=device.authz("pw", nc=2))
    assert device.wait(device.send(bye)).status == 200

    # the process restarts: its transactions and nc table are gone; an
    # eavesdropper replays the captured REGISTER from the same address
    server.restart()
    replayer = ua("udp", server.udp)
    replayed = replayer.wait_response(replayer.send_request(captured, server.udp), 5)
    assert replayed.status == 401, replayed
    assert challenges_in(replayed)[0].stale  # a stale challenge, silent for a real phone
    assert not registrations(server, "alice")
    assert len(events(server, "registered", "alice")) == 1


# -- item 6: the digest uri must name the Request-URI ----------------------------------------------


def test_credentials_for_another_uri_are_refused(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    device = Device(ua("udp", server.udp), "alice")
    challenge = device.fetch_challenge()
    # the response is right, but for a request to another URI
    lifted = authorization(
        challenge, method="REGISTER", uri="sip:elsewhere.example", username="alice", password="pw"
    )
    resp = device.wait(device.send(device.request(authz=(challenge.authorization_header, lifted))))
    assert resp.status == 403
    assert "is not the Request-URI" in refusal_reason(server, "alice")


# -- item 7: contacts of one REGISTER ------------------------------------------------------------


def test_one_register_cannot_bring_more_contacts_than_max_contacts(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw", max_contacts=1)
    device = Device(ua("udp", server.udp), "alice")
    device.fetch_challenge()
    port = device.ua.local[1]
    extra = [("Contact", f"<sip:alice@127.0.0.1:{port + i}>") for i in (1, 2)]
    req = device.request(authz=device.authz("pw"), extra=extra)
    resp = device.wait(device.send(req))
    assert (resp.status, resp.reason) == (403, "Too Many Contacts")
    assert "3 contacts in one REGISTER; the account allows 1" in (resp.headers.get("Warning") or "")
    assert not registrations(server, "alice")

    # within the limit it passes
    update_account(server, "alice", max_contacts=3)
    ok = device.wait(device.send(device.request(authz=device.authz("pw", nc=2), extra=extra)))
    assert ok.status == 200 and len(registrations(server, "alice")) == 3


def test_contact_at_a_third_party_address_is_refused(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw", max_contacts=5)
    device = Device(ua("udp", server.udp), "alice")
    device.fetch_challenge()
    # not behind NAT (Via = source), so INVITEs and keepalives would go to this
    # public address of somebody else
    victim = "sip:alice@100.64.0.9:5060"
    resp = device.wait(device.send(device.request(authz=device.authz("pw"), contact=victim)))
    assert (resp.status, resp.reason) == (403, "Contact Not At Source")
    assert not registrations(server, "alice")

    set_params(server, REGISTER_THIRD_PARTY_CONTACTS="On")  # registration on behalf of others
    again = device.request(authz=device.authz("pw", nc=2), contact=victim)
    assert device.wait(device.send(again)).status == 200
    assert only(registrations(server, "alice"))["contact"] == victim


# -- item 8: forged failures lock out neither the source nor the account's device ------------------


def test_failed_credentials_block_the_account_from_the_source_not_the_office(
    server_factory: Callable[..., RunningServer], ua: Callable[..., UA]
) -> None:
    server = server_factory(env=UNTRUSTED_LOOPBACK)
    for user in ("alice", "bob"):
        create_account(server, user, f"pw-{user}")
    set_params(server, AUTH_FAIL_LIMIT=3)
    phone = Device(ua("udp", server.udp), "alice")
    assert phone.register("pw-alice").status == 200

    # a blind spoofer sends wrong credentials with the victim's address as
    # source; it cannot read challenges sent there, so it brings a nonce
    # obtained from its own address: a stale challenge, no failure
    spoofer_nonce = Device(ua("udp", server.udp, local_host=STRANGER), "alice").fetch_challenge()
    spoofed = Device(ua("udp", server.udp), "alice", challenge=spoofer_nonce)
    for nc in range(1, 26):
        resp = spoofed.wait(spoofed.send(spoofed.request(authz=spoofed.authz("guess", nc=nc))))
        assert resp.status == 401 and challenges_in(resp)[0].stale
    assert not events(server, "auth-failed")

    # a guesser behind the same address (it can read its challenges)
    guesser = Device(ua("udp", server.udp), "alice")
    guesser.fetch_challenge()
    answers = [
        guesser.wait(guesser.send(guesser.request(authz=guesser.authz(f"guess{n}", nc=n)))).status
        for n in range(1, 8)
    ]
    assert answers == [403] * 7
    blocked = only(events(server, "flood-blocked"))
    assert blocked["source"] == "127.0.0.1" and blocked["account"] == f"alice@{DOMAIN}"
    # now even the right password on a new nonce is not verified: guessing is over
    guesser.fetch_challenge()
    assert (
        guesser.wait(guesser.send(guesser.request(authz=guesser.authz("pw-alice")))).status == 403
    )

    # the source is not blocked: bob, in the same office, registers
    bob = Device(ua("udp", server.udp), "bob")
    assert bob.register("pw-bob", timeout=3).status == 200
    # and alice's phone, which authenticated before, keeps refreshing
    assert phone.register("pw-alice", nc=2, timeout=3).status == 200


# -- items 9 and 12.3: flood limits that spare an office ------------------------------------------


def _blast(server: RunningServer, count: int, seconds: float) -> tuple[float, int]:
    """Unauthenticated REGISTERs from the stranger, each a new transaction:
    (when the first was sent, how many were sent), at most `count` within `seconds`."""
    host, port = server.udp
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((STRANGER, 0))
    local = sock.getsockname()
    head = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={{branch}};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:flood{{n}}@{DOMAIN}>;tag={new_tag()}\r\n"
        f"To: <sip:flood{{n}}@{DOMAIN}>\r\n"
        "Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
        f"Contact: <sip:flood@{local[0]}:{local[1]}>\r\nContent-Length: 0\r\n\r\n"
    )
    packets = [
        head.format(branch=new_branch(), n=n % 50, call_id=new_call_id()).encode()
        for n in range(count)
    ]
    started = time.time()
    deadline = time.monotonic() + seconds
    sent = 0
    try:
        for data in packets:
            sock.sendto(data, (host, port))
            sent += 1
            if time.monotonic() > deadline:
                break
    finally:
        sock.close()
    return started, sent


def test_an_office_behind_one_address_registers_while_a_flood_is_blocked(
    server_factory: Callable[..., RunningServer], ua: Callable[..., UA]
) -> None:
    server = server_factory(env=UNTRUSTED_LOOPBACK)  # and default parameters
    users = [f"office{i:03d}" for i in range(500)]
    imported = server.api.post(
        "/api/accounts/import",
        json={"accounts": [{"user": u, "domain": DOMAIN, "password": "pw"} for u in users]},
    )
    assert imported.status_code < 300, imported.text

    office = ua("udp", server.udp)  # the office's one public address
    phones = [Device(office, u) for u in users]
    flood: dict[str, tuple[float, int]] = {}
    flooder = threading.Thread(target=lambda: flood.update(blast=_blast(server, 20_000, 2.0)))

    failures: list[str] = []
    started = time.monotonic()
    for i, phone in enumerate(phones):  # all re-register after the router restarts
        if i == 100:
            flooder.start()
        try:
            status = phone.register("pw", timeout=5).status
        except SipTimeout:
            status = 0
        if status != 200:
            failures.append(f"{phone.user}: {status}")
    elapsed = time.monotonic() - started
    flooder.join(10)
    assert not failures, failures[:10]
    assert elapsed < 10, f"the registrations took {elapsed:.1f} s: not one window"

    # then every phone refreshes (on its nonce, as phones do)
    for phone in phones:
        try:
            status = phone.register("pw", nc=2, timeout=5).status
        except SipTimeout:
            status = 0
        if status != 200:
            failures.append(f"{phone.user} refresh: {status}")
    assert not failures, failures[:10]
    assert len(registrations(server)) == 500

    # the flood was blocked within a second of its start
    first_sent, sent = flood["blast"]
    blocked = only(events(server, "flood-blocked"))
    assert blocked["source"] == STRANGER
    assert "unauthenticated requests" in blocked["details"]["reason"]
    assert blocked["time"] - first_sent < 1.0, (blocked["time"] - first_sent, sent)


# -- item 10: the answers do not tell which accounts exist --------------------------------------


def test_failures_get_one_answer_whatever_the_reason(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw-alice")
    create_account(server, "carol", "pw-carol", enabled=False)
    create_account(server, "dave", "pw-dave", allowed_networks=["192.0.2.0/24"])
    phone = ua("udp", server.udp)
    answers = {}
    for user, password in [
        ("alice", "wrong"),  # wrong password
        ("nobody", "pw"),  # unknown account
        ("carol", "pw-carol"),  # disabled account
        ("dave", "pw-dave"),  # right password, outside the allowed networks
    ]:
        device = Device(phone, user)
        challenge = device.fetch_challenge()  # everyone is challenged alike
        assert challenge.realm == DOMAIN
        resp = device.wait(device.send(device.request(authz=device.authz(password))))
        answers[user] = (resp.status, resp.reason, resp.headers.get("Warning", "").split(" ", 2)[2])
    assert len(set(answers.values())) == 1, answers
    assert answers["alice"] == (403, "Forbidden", '"Authentication failed"')

    # the events keep the precise reason for the operator
    reasons = {
        e["account"].split("@")[0]: e["details"]["reason"] for e in events(server, "auth-failed")
    }
    assert reasons["alice"] == "wrong password"
    assert reasons["nobody"] == reasons["carol"] == "unknown or disabled account"
    assert "outside the account's allowed networks" in reasons["dave"]


def test_the_nonce_is_checked_before_the_password(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw-alice")
    phone = ua("udp", server.udp)
    for user in ("alice", "nobody"):
        device = Device(phone, user)
        forged = device.fetch_challenge()
        forged.params["nonce"] = forged.nonce[:-4] + "0000"  # not one of ours
        resp = device.wait(
            device.send(device.request(authz=device.authz("guess", challenge=forged)))
        )
        assert resp.status == 401 and challenges_in(resp)[0].stale
    assert not events(server, "auth-failed")


# -- issue 12: a phone that never answers the challenge leaves a trace -------------------------


def test_unanswered_challenges_leave_an_event(server: RunningServer, ua: Callable[..., UA]) -> None:
    create_account(server, "alice", "pw")
    device = Device(ua("udp", server.udp), "alice")
    for _ in range(4):  # a phone that cannot answer the challenge keeps asking
        resp = device.wait(device.send(device.request()))
        assert resp.status == 401
    event = only(events(server, "auth-failed", "alice"))
    assert "3 challenges unanswered" in event["details"]["reason"]
    assert "AUTH_ALGORITHMS" in event["details"]["reason"]
    assert event["source"] == "127.0.0.1"


def test_answered_invite_challenges_leave_no_trace(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw-alice")
    caller = ua("udp", server.udp, user="alice")
    # registered first: CALLS_REQUIRE_REGISTRATION (On) refuses an unregistered caller
    assert caller.register("alice", DOMAIN, password="pw-alice").status == 200
    uri = f"sip:nobody@{DOMAIN}"
    for n in range(4):  # four calls, each challenged with a 407 and answered
        headers = {"From": f"<sip:alice@{DOMAIN}>;tag=t{n}", "Call-ID": f"c{n}@t"}
        challenge = caller.wait_response(
            caller.invite(uri, headers={**headers, "CSeq": "1 INVITE"})
        )
        assert challenge.status == 407
        chosen = caller.choose_challenge(challenge)
        assert chosen is not None
        authz = caller.authorization(chosen, "INVITE", uri, "alice", "pw-alice")
        final = caller.wait_response(
            caller.invite(uri, headers={**headers, "CSeq": "2 INVITE", authz[0]: authz[1]})
        )
        assert final.status not in (401, 403, 407), final
    assert not events(server, "auth-failed")
