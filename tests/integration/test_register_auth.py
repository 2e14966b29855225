"""REGISTER authentication against a real `regswitch serve` (docs/behaviour.md §3 steps 3 to 4):
digest MD5 (SIPp) and SHA-256 (Python UA; SIPp 3.6.1 only does MD5), wrong
password, replayed nonce counts, expired nonces, IP authentication, To/user
mismatch, and that nothing failing authentication ever evicts a registration."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from support import wait_until
from support.digest import Challenge, challenges_in
from support.register_helpers import (
    DOMAIN,
    Device,
    create_account,
    events,
    only,
    refusal_reason,
    registrations,
    set_param,
    sipp_register,
)
from support.server import RunningServer
from support.sipp import SippRunner
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

sipp_test = pytest.mark.sipp


def _algorithms(resp: object) -> list[str]:
    return [c.algorithm for c in challenges_in(resp)]  # type: ignore[arg-type]


@sipp_test
def test_sipp_md5_challenge_then_200(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw-alice")
    run = sipp_register(sipp, server, "alice", "pw-alice", expires=300)

    assert run.statuses == [401, 200]
    challenge, ok = run.responses
    # MD5 alone by default (AUTH_ALGORITHMS): libre-based phones answer no double offer
    assert _algorithms(challenge) == ["MD5"]
    assert len({c.nonce for c in challenges_in(challenge)}) == 1
    assert all(c.realm == DOMAIN and "auth" in c.qops for c in challenges_in(challenge))
    assert [c.uri_text for c in ok.contacts] == [run.contact]
    assert ok.contacts[0].expires == 300
    assert ok.headers.get("Date", "").endswith("GMT")

    binding = only(registrations(server, "alice"), "registration")
    assert binding["contact"] == run.contact
    assert binding["source"] == run.source
    assert 295 <= binding["expires_in"] <= 300
    registered = only(events(server, "registered", "alice"), "registered event")
    assert registered["details"]["contact"] == run.contact


@sipp_test
def test_sipp_md5_over_tcp(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw-alice")
    run = sipp_register(sipp, server, "alice", "pw-alice", transport="tcp")
    assert run.statuses == [401, 200]
    binding = only(registrations(server, "alice"))
    assert binding["transport"] == "tcp" and binding["contact"] == run.contact


def test_sha256_challenge_then_200(server: RunningServer, ua: Callable[..., UA]) -> None:
    create_account(server, "alice", "pw-alice")
    set_param(server, "AUTH_ALGORITHMS", "MD5,SHA-256")  # the opt-in
    phone = ua("udp", server.udp)
    resp = phone.register("alice", DOMAIN, password="pw-alice", expires=300, algorithm="SHA-256")
    assert resp.status == 200, resp
    sent = [data for _, direction, _, data in phone.trace if direction == "out"]
    assert b"algorithm=SHA-256" in sent[-1]
    assert only(registrations(server, "alice"))["contact"] == phone.contact_uri("alice")


def test_challenges_follow_auth_algorithms(server: RunningServer, ua: Callable[..., UA]) -> None:
    create_account(server, "alice", "pw-alice")
    device = Device(ua("udp", server.udp), "alice")
    device.fetch_challenge()
    set_param(server, "AUTH_ALGORITHMS", "SHA-256,MD5")
    first = device.wait(device.send(device.request(contact="", expires=None)))
    assert _algorithms(first) == ["SHA-256", "MD5"]
    set_param(server, "AUTH_ALGORITHMS", "SHA-256")
    only_sha = device.wait(device.send(device.request(contact="", expires=None)))
    assert _algorithms(only_sha) == ["SHA-256"]
    # an MD5 answer to an offer without MD5 is not accepted
    offered = challenges_in(only_sha)[0].params
    device.challenge = Challenge("Digest", {**offered, "algorithm": "MD5"})
    refused = device.wait(device.send(device.request(authz=device.authz("pw-alice"))))
    assert refused.status == 401
    assert not registrations(server, "alice")


@sipp_test
def test_wrong_password_is_403_and_changes_nothing(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw-alice")
    run = sipp_register(
        sipp, server, "alice", "not-the-password", scenario="register_auth_rejected"
    )
    assert run.statuses == [401, 403]
    assert not registrations(server, "alice")
    failed = only(events(server, "auth-failed", "alice"), "auth-failed event")
    assert "wrong password" in failed["details"]["reason"]


def test_replayed_nonce_count_is_refused(server: RunningServer, ua: Callable[..., UA]) -> None:
    create_account(server, "alice", "pw-alice")
    device = Device(ua("udp", server.udp), "alice")
    device.fetch_challenge()
    authz = device.authz("pw-alice", nc=1)
    assert device.wait(device.send(device.request(authz=authz))).status == 200
    accepted_cseq = device.cseq

    # the very same Authorization on a new request (what an eavesdropper replays)
    replay = device.wait(device.send(device.request(authz=authz, expires=600)))
    assert replay.status != 200
    assert replay.status == 401 and challenges_in(replay)[0].stale
    # a fresh cnonce does not make an old nc new
    again = device.wait(device.send(device.request(authz=device.authz("pw-alice", nc=1))))
    assert again.status == 401
    binding = only(registrations(server, "alice"))
    assert binding["cseq"] == accepted_cseq and binding["expires_in"] <= 300

    # the next nc of the same nonce is fine
    next_nc = device.request(authz=device.authz("pw-alice", nc=2))
    assert device.wait(device.send(next_nc)).status == 200


def test_expired_nonce_gets_a_stale_challenge(
    server_factory: Callable[..., RunningServer], ua: Callable[..., UA]
) -> None:
    server = server_factory(env={"REGSWITCH_NONCE_LIFETIME": "1"})
    create_account(server, "alice", "pw-alice")
    device = Device(ua("udp", server.udp), "alice")
    device.fetch_challenge()
    nc = 0

    def refresh() -> object:
        nonlocal nc
        nc += 1
        resp = device.wait(device.send(device.request(authz=device.authz("pw-alice", nc=nc))))
        assert resp.status in (200, 401), resp
        return resp if resp.status == 401 else None

    stale = wait_until(refresh, 5, "the nonce to expire")
    challenge = challenges_in(stale)[0]  # type: ignore[arg-type]
    assert challenge.stale and device.challenge is not None
    assert challenge.nonce != device.challenge.nonce
    device.challenge = challenge
    assert device.wait(device.send(device.request(authz=device.authz("pw-alice")))).status == 200


@sipp_test
def test_ip_authentication_refuses_a_source_outside_the_networks(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw-alice", allowed_networks=["192.0.2.0/24"])
    # challenged like any account (an immediate 403 would tell that alice
    # exists), and the right password does not help
    run = sipp_register(sipp, server, "alice", "pw-alice", scenario="register_auth_rejected")
    assert run.statuses == [401, 403]
    assert "Authentication failed" in (run.final.headers.get("Warning") or "")
    assert "outside the account's allowed networks" in refusal_reason(server, "alice")


def test_ip_only_account_registers_without_digest(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "gw", None, allowed_networks=["127.0.0.0/8"])
    phone = ua("udp", server.udp)
    resp = phone.register("gw", DOMAIN, expires=300)
    assert resp.status == 200
    assert only(registrations(server, "gw"))["contact"] == phone.contact_uri("gw")


@sipp_test
def test_credentials_of_another_user_are_403(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw-alice")
    create_account(server, "bob", "pw-bob")
    # To: alice, authenticated (correctly) as bob
    run = sipp_register(
        sipp, server, "alice", "pw-bob", auth_user="bob", scenario="register_auth_rejected"
    )
    assert run.statuses == [401, 403]
    assert not registrations(server, "alice") and not registrations(server, "bob")
    failed = only(events(server, "auth-failed", "alice"))
    assert "another user" in failed["details"]["reason"]


@sipp_test
def test_unauthenticated_register_never_evicts(
    server: RunningServer, sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw-alice")
    create_account(server, "bob", "pw-bob")
    holder = sipp_register(sipp, server, "alice", "pw-alice")
    assert holder.final.status == 200
    # replace On (default): only an authenticated REGISTER could take over
    sipp_register(sipp, server, "alice", None, scenario="register_unauthenticated")
    sipp_register(sipp, server, "alice", "wrong", scenario="register_auth_rejected")
    sipp_register(
        sipp, server, "alice", "pw-bob", auth_user="bob", scenario="register_auth_rejected"
    )
    # a replayed Authorization (of bob's own registration) carrying alice's AOR
    device = Device(ua("udp", server.udp), "alice")
    device.challenge = Device(device.ua, "nobody").fetch_challenge()
    resp = device.wait(device.send(device.request(authz=device.authz("pw-bob", user="bob"))))
    assert resp.status == 403

    binding = only(registrations(server, "alice"))
    assert binding["contact"] == holder.contact and binding["source"] == holder.source
    assert not events(server, "replaced") and not events(server, "rejected")
    assert len(events(server, "auth-failed", "alice")) == 3
