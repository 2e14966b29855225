"""A registration's life against a real `regswitch serve`: expires (423 with
Min-Expires, clamping), query, unregister, wildcard, expiry (docs/behaviour.md §3 steps 5
and 7, §3.5), surviving restarts (§8), and parameter validation (§2)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from support import wait_until
from support.digest import challenges_in
from support.register_helpers import (
    Device,
    create_account,
    events,
    get_param,
    only,
    registrations,
    set_params,
    sipp_register,
)
from support.server import RunningServer
from support.sipp import SippRunner
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


# -- expires -----------------------------------------------------------------------------


@pytest.mark.sipp
def test_interval_too_brief_is_423_with_min_expires(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    run = sipp_register(
        sipp, server, "alice", "pw", expires=30, scenario="register_interval_too_brief"
    )
    assert run.statuses == [401, 423]
    assert run.final.headers.get("Min-Expires") == "60"  # SS_ENDPOINT_MIN_EXPIRE default

    set_params(server, SS_ENDPOINT_MIN_EXPIRE=120)  # live
    run = sipp_register(
        sipp, server, "alice", "pw", expires=90, scenario="register_interval_too_brief"
    )
    assert run.final.headers.get("Min-Expires") == "120"
    assert not registrations(server, "alice")
    assert not events(server, "registered")


@pytest.mark.sipp
def test_long_interval_is_clamped_to_ss_endpoint_expire(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    set_params(server, SS_ENDPOINT_EXPIRE=600)
    run = sipp_register(sipp, server, "alice", "pw", expires=7200)
    contact = only(run.final.contacts)
    assert contact.uri_text == run.contact and contact.expires == 600
    assert 595 <= only(registrations(server, "alice"))["expires_in"] <= 600


# -- query, unregister, wildcard ---------------------------------------------------------


@pytest.mark.sipp
def test_query_lists_and_expires_zero_unregisters(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw")
    run = sipp_register(sipp, server, "alice", "pw", scenario="register_unregister")
    assert run.statuses == [401, 200, 200, 200]
    _, registered, query, unregistered = run.responses
    assert [c.uri_text for c in registered.contacts] == [run.contact]
    assert [c.uri_text for c in query.contacts] == [run.contact]  # the query lists it
    assert unregistered.contacts == []
    assert not registrations(server, "alice")
    kinds = [e["type"] for e in events(server, user="alice") if e["type"] != "account-changed"]
    assert kinds == ["registered", "unregistered"]  # the query changed nothing
    assert only(events(server, "unregistered"))["details"]["wildcard"] is False


def test_query_changes_nothing(server: RunningServer, ua: Callable[..., UA]) -> None:
    create_account(server, "alice", "pw")
    device = Device(ua("udp", server.udp), "alice")
    assert device.register("pw", expires=300).status == 200
    before = only(registrations(server, "alice"))
    query = device.wait(
        device.send(device.request(contact="", expires=600, authz=device.authz("pw", nc=2)))
    )
    assert query.status == 200
    assert [c.uri_text for c in query.contacts] == [device.contact]
    after = only(registrations(server, "alice"))
    for key in ("id", "contact", "source", "cseq", "expires_at", "refreshed_at"):
        assert after[key] == before[key], key


@pytest.mark.sipp
def test_wildcard_removes_every_binding(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw", max_contacts=3)
    sipp_register(sipp, server, "alice", "pw")
    sipp_register(sipp, server, "alice", "pw")
    assert len(registrations(server, "alice")) == 2
    run = sipp_register(sipp, server, "alice", "pw", scenario="register_wildcard")
    assert run.statuses == [401, 200] and run.final.contacts == []
    assert not registrations(server, "alice")
    removed = events(server, "unregistered", "alice")
    assert len(removed) == 2 and all(e["details"]["wildcard"] for e in removed)
    assert not events(server, "replaced")


# -- expiry ------------------------------------------------------------------------------


@pytest.mark.sipp
def test_bindings_expire_within_a_second(
    server: RunningServer, sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    create_account(server, "bob", "pw")
    set_params(server, SS_ENDPOINT_MIN_EXPIRE=1)
    # bob: a long registration refreshed down to 2 s (its first expiry was far away)
    bob = Device(ua("udp", server.udp), "bob")
    assert bob.register("pw", expires=300).status == 200
    assert bob.wait(bob.send(bob.request(expires=2, authz=bob.authz("pw", nc=2)))).status == 200
    # alice: 2 s from the start
    run = sipp_register(sipp, server, "alice", "pw", expires=2)
    assert only(run.final.contacts).expires == 2
    due = {b["account"]: b["expires_at"] for b in registrations(server)}
    assert set(due) == {"alice@regswitch.local", "bob@regswitch.local"}

    wait_until(lambda: not registrations(server), 5, "both bindings to expire")
    expired = {
        e["account"]: e
        for e in wait_until(
            lambda: events(server, "expired") if len(events(server, "expired")) == 2 else None,
            2,
            "two expired events",
        )
    }
    for account, expires_at in due.items():
        late = expired[account]["time"] - expires_at
        assert 0 <= late <= 1.0, (account, late)
    assert not events(server, "replaced") and not events(server, "unregistered")


# -- restart -------------------------------------------------------------------------------


@pytest.mark.sipp
def test_bindings_and_parameters_survive_restarts(
    server: RunningServer, sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    create_account(server, "bob", "pw")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")
    sipp_register(sipp, server, "alice", "pw", expires=600)
    bob = Device(ua("udp", server.udp), "bob")
    assert bob.register("pw", expires=600).status == 200
    before = {b["id"]: b for b in registrations(server)}
    assert len(before) == 2

    for clean in (True, False):  # SIGTERM, then SIGKILL
        server.restart(clean=clean)
        after = {b["id"]: b for b in registrations(server)}
        assert after.keys() == before.keys(), f"clean={clean}"
        for key, old in before.items():
            for field in ("account", "contact", "source", "call_id", "cseq", "expires_at"):
                assert after[key][field] == old[field], (clean, field)
        assert get_param(server, "SS_ENDPOINT_REGISTER_REPLACE") == "Off"

    # bob refreshes reusing his last nonce, as many phones do: it was signed by
    # the previous process, so he gets a stale challenge, not a 403
    bob.dest = server.udp
    stale = bob.wait(bob.send(bob.request(expires=600, authz=bob.authz("pw", nc=2))))
    assert stale.status == 401 and challenges_in(stale)[0].stale
    bob.challenge = challenges_in(stale)[0]
    assert bob.wait(bob.send(bob.request(expires=600, authz=bob.authz("pw")))).status == 200
    refreshed = [b for b in registrations(server, "bob")]
    assert len(refreshed) == 1 and refreshed[0]["id"] in before
    assert not events(server, "auth-failed")


# -- parameters ----------------------------------------------------------------------------


BAD_VALUES = [
    ("SS_ENDPOINT_EXPIRE", "abc"),
    ("SS_ENDPOINT_EXPIRE", 0),
    ("SS_ENDPOINT_EXPIRE", 1.5),
    ("SS_ENDPOINT_MIN_EXPIRE", 7200),  # above SS_ENDPOINT_EXPIRE (3600)
    ("SS_ENDPOINT_REGISTER_REPLACE", "maybe"),
    ("REGISTER_REPLACE_REJECT_CODE", 404),
    ("SS_SIP_NAT_KEEP_ALIVE_PERIOD", 1),
    ("AUTH_ALGORITHMS", "SHA-1"),
    ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", ""),
    ("REGISTER_FLAP_LIMIT", None),
]


def test_bad_parameter_values_are_400_and_change_nothing(server: RunningServer) -> None:
    before = {p["name"]: p["value"] for p in server.api.get("/api/parameters").json()}
    for name, value in BAD_VALUES:
        resp = server.api.put(f"/api/parameters/{name}", json={"value": value})
        assert resp.status_code == 400, (name, value, resp.text)
        body = resp.json()
        assert set(body) == {"error"} and name in body["error"], (name, value, body)
    after = {p["name"]: p["value"] for p in server.api.get("/api/parameters").json()}
    assert after == before
    assert not events(server, "param-changed")


def test_good_parameter_change_is_recorded_with_old_and_new(server: RunningServer) -> None:
    resp = server.api.put("/api/parameters/ss_endpoint_register_replace", json={"value": "off"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == "Off" and resp.json()["old"] == "On"
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")  # the same again: no change
    set_params(server, SS_ENDPOINT_EXPIRE=1800)
    changes = [e["details"] for e in events(server, "param-changed")]
    assert [(c["name"], c["old"], c["new"]) for c in changes] == [
        ("SS_ENDPOINT_REGISTER_REPLACE", "On", "Off"),
        ("SS_ENDPOINT_EXPIRE", "3600", "1800"),
    ]
    assert server.api.put("/api/parameters/NO_SUCH_PARAM", json={"value": 1}).status_code == 404


def test_parameter_takes_effect_on_the_next_request(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    device = Device(ua("udp", server.udp), "alice")
    assert device.register("pw", expires=90).status == 200
    set_params(server, SS_ENDPOINT_MIN_EXPIRE=120)
    started = time.monotonic()
    brief = device.wait(device.send(device.request(expires=90, authz=device.authz("pw", nc=2))))
    assert brief.status == 423 and brief.headers.get("Min-Expires") == "120"
    assert time.monotonic() - started < 1.0
