"""The registration replace policy against a real `regswitch serve` (docs/behaviour.md §3.1-3.4):
refresh, NAT rebinding, same device, replace On/Off, reject codes, keep-calls,
per-account overrides, max_contacts, live parameter changes, racing REGISTERs
and the §3.4 probe of an old device.

SIPp plays the devices wherever a device only needs to REGISTER; the Python
UA plays those that must stay around (to answer or ignore an OPTIONS probe)
or send two REGISTERs back to back. SIPp devices exit after registering, so
an old SIPp device would fail a §3.4 probe: Off tests that are not about §3.4
turn REGISTER_REPLACE_IF_UNREACHABLE off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from support.register_helpers import (
    Device,
    create_account,
    events,
    only,
    registrations,
    set_params,
    sipp_register,
    sipp_register_start,
    update_account,
)
from support.server import RunningServer
from support.sipp import SippRunner, free_port
from support.ua import UA, ClientTransaction

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REJECT_REASON = "Registration Replace Disabled"


def _off(server: RunningServer) -> None:
    """Replace Off, and no §3.4 exception (old SIPp devices are gone, not silent)."""
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off", REGISTER_REPLACE_IF_UNREACHABLE="Off")


def _contacts(user: str, server: RunningServer) -> list[str]:
    return [b["contact"] for b in registrations(server, user)]


# -- 3.1 refresh -----------------------------------------------------------------------


@pytest.mark.sipp
def test_refresh_then_cseq_not_higher_is_500(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw")
    run = sipp_register(sipp, server, "alice", "pw", scenario="register_refresh", expires=300)
    assert run.statuses == [401, 200, 200, 500]

    binding = only(registrations(server, "alice"))
    assert binding["cseq"] == 3  # the refresh counted, the repeat did not
    assert binding["expires_in"] <= 300  # the repeat asked for 999: nothing changed
    assert binding["contact"] == run.contact
    assert [e["type"] for e in events(server, user="alice") if e["type"] != "account-changed"] == [
        "registered",
        "refreshed",
    ]


@pytest.mark.sipp
def test_nat_rebinding_same_call_id_updates_the_source(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    _off(server)  # a refresh is never a conflict, not even under Off
    behind_nat = free_port()  # the phone's private contact port, not where it sends from
    first = sipp_register(
        sipp, server, "alice", "pw", call_id="rebind-1@nat", base_cseq=1, contact_port=behind_nat
    )
    moved = sipp_register(
        sipp, server, "alice", "pw", call_id="rebind-1@nat", base_cseq=10, contact_port=behind_nat
    )
    assert moved.final.status == 200
    assert moved.port != first.port

    binding = only(registrations(server, "alice"))
    assert binding["source"] == moved.source and binding["cseq"] == 11
    assert binding["contact"] == first.contact
    refreshed = only(events(server, "refreshed", "alice"))
    assert refreshed["details"]["old_source"] == first.source
    assert refreshed["source"] == moved.source
    assert not events(server, "replaced") and not events(server, "rejected")


# -- 3.2 same device --------------------------------------------------------------------


@pytest.mark.sipp
def test_same_instance_is_the_same_device_under_off(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    _off(server)
    instance = ';+sip.instance="<urn:uuid:00000000-0000-4000-8000-00000000a11c>"'
    before = sipp_register(sipp, server, "alice", "pw", contact_params=instance)
    after = sipp_register(sipp, server, "alice", "pw", contact_params=instance)  # new IP:port
    assert after.final.status == 200
    binding = only(registrations(server, "alice"))
    assert binding["contact"] == after.contact and binding["source"] == after.source
    assert binding["instance"] == "<urn:uuid:00000000-0000-4000-8000-00000000a11c>"
    same = only(events(server, "same-device", "alice"))
    assert same["details"]["old_contact"] == before.contact
    assert not events(server, "replaced") and not events(server, "rejected")


@pytest.mark.sipp
def test_same_contact_from_same_ip_is_the_same_device_under_off(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    _off(server)
    contact_port = free_port()
    before = sipp_register(sipp, server, "alice", "pw", contact_port=contact_port)
    after = sipp_register(sipp, server, "alice", "pw", contact_port=contact_port)
    assert after.final.status == 200 and after.port != before.port
    binding = only(registrations(server, "alice"))
    assert binding["contact"] == before.contact and binding["source"] == after.source
    assert only(events(server, "same-device", "alice"))["details"]["old_source"] == before.source
    assert not events(server, "replaced") and not events(server, "rejected")


# -- 3.3 a different device -----------------------------------------------------------------


@pytest.mark.sipp
def test_on_new_device_replaces_the_old_and_kicks_it(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    old = sipp_register(sipp, server, "alice", "pw")
    new = sipp_register(sipp, server, "alice", "pw")
    assert new.final.status == 200
    assert [c.uri_text for c in new.final.contacts] == [new.contact]
    assert _contacts("alice", server) == [new.contact]

    replaced = only(events(server, "replaced", "alice"))["details"]
    assert replaced["old_contact"] == old.contact and replaced["old_source"] == old.source
    assert replaced["new_contact"] == new.contact and replaced["new_source"] == new.source
    assert replaced["kicked"] is True and replaced["keep_calls"] is False
    assert replaced["calls_ended"] == []


@pytest.mark.sipp
def test_off_rejects_a_new_device_with_each_reject_code(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    _off(server)
    old = sipp_register(sipp, server, "alice", "pw", expires=300)
    for code in ("403", "486", "503"):
        set_params(server, REGISTER_REPLACE_REJECT_CODE=code)
        new = sipp_register(sipp, server, "alice", "pw", scenario="register_replace_rejected")
        reply = new.final
        assert (reply.status, reply.reason) == (int(code), REJECT_REASON)
        warning = reply.headers.get("Warning") or ""
        assert warning.startswith("399 ") and "alice@regswitch.local" in warning
        assert old.contact in warning  # who holds the account
        assert 280 <= int(reply.headers.get("Retry-After") or 0) <= 300  # until it expires

    # the old binding is untouched
    binding = only(registrations(server, "alice"))
    assert binding["contact"] == old.contact and binding["source"] == old.source
    rejected = events(server, "rejected", "alice")
    assert [e["details"]["status"] for e in rejected] == [403, 486, 503]
    assert all(e["details"]["old_contact"] == old.contact for e in rejected)
    assert not events(server, "replaced")


@pytest.mark.sipp
def test_keep_calls_replaces_without_kick(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw")
    set_params(server, REGISTER_REPLACE_KEEP_CALLS="On")
    sipp_register(sipp, server, "alice", "pw")
    new = sipp_register(sipp, server, "alice", "pw")
    assert _contacts("alice", server) == [new.contact]
    replaced = only(events(server, "replaced", "alice"))["details"]
    assert replaced["keep_calls"] is True and replaced["kicked"] is False


@pytest.mark.sipp
def test_per_account_overrides_beat_the_system_parameters(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "on", "pw", register_replace="on", replace_keep_calls="on")
    create_account(server, "off", "pw", register_replace="off")
    create_account(server, "plain", "pw")
    set_params(server, REGISTER_REPLACE_IF_UNREACHABLE="Off")

    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")
    sipp_register(sipp, server, "on", "pw")
    new = sipp_register(sipp, server, "on", "pw")
    assert _contacts("on", server) == [new.contact]
    replaced = only(events(server, "replaced", "on"))["details"]
    assert replaced["keep_calls"] is True  # the account's replace_keep_calls too

    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="On")
    old = sipp_register(sipp, server, "off", "pw")
    refused = sipp_register(sipp, server, "off", "pw", scenario="register_replace_rejected")
    assert (refused.final.status, refused.final.reason) == (403, REJECT_REASON)
    assert _contacts("off", server) == [old.contact]

    # and back to inherit: the system's On applies again
    update_account(server, "off", register_replace="inherit")
    taken = sipp_register(sipp, server, "off", "pw")
    assert _contacts("off", server) == [taken.contact]


@pytest.mark.sipp
def test_max_contacts_two_third_device_replaces_the_oldest(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw", max_contacts=2)
    first = sipp_register(sipp, server, "alice", "pw")
    second = sipp_register(sipp, server, "alice", "pw")
    assert sorted(_contacts("alice", server)) == sorted([first.contact, second.contact])
    assert not events(server, "replaced")

    third = sipp_register(sipp, server, "alice", "pw")
    assert sorted(c.uri_text for c in third.final.contacts) == sorted(
        [second.contact, third.contact]
    )
    assert sorted(_contacts("alice", server)) == sorted([second.contact, third.contact])
    replaced = only(events(server, "replaced", "alice"))["details"]
    assert replaced["old_contact"] == first.contact and replaced["new_contact"] == third.contact


@pytest.mark.sipp
def test_replace_switch_flipped_live_between_two_registers(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    old = sipp_register(sipp, server, "alice", "pw")
    _off(server)
    refused = sipp_register(sipp, server, "alice", "pw", scenario="register_replace_rejected")
    assert refused.final.status == 403
    assert _contacts("alice", server) == [old.contact]

    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="On")
    new = sipp_register(sipp, server, "alice", "pw")
    assert new.final.status == 200
    assert _contacts("alice", server) == [new.contact]
    changes = [
        (e["details"]["name"], e["details"]["old"], e["details"]["new"])
        for e in events(server, "param-changed")
    ]
    assert ("SS_ENDPOINT_REGISTER_REPLACE", "On", "Off") in changes
    assert ("SS_ENDPOINT_REGISTER_REPLACE", "Off", "On") in changes


# -- racing REGISTERs (docs/behaviour.md §3 step 6) ------------------------------------


@pytest.mark.parametrize("replace", ["On", "Off"])
def test_racing_registers_leave_one_binding(
    server: RunningServer, ua: Callable[..., UA], replace: str
) -> None:
    create_account(server, "alice", "pw")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE=replace, REGISTER_REPLACE_IF_UNREACHABLE="Off")
    devices = [Device(ua("udp", server.udp), "alice") for _ in range(4)]
    for device in devices:
        device.fetch_challenge()
    requests = [d.request(authz=d.authz("pw")) for d in devices]
    # back to back, no waiting in between
    txs: list[ClientTransaction] = [d.send(r) for d, r in zip(devices, requests, strict=True)]
    statuses = [d.wait(tx).status for d, tx in zip(devices, txs, strict=True)]

    bindings = registrations(server, "alice")
    assert len(bindings) == 1, bindings
    if replace == "On":
        assert statuses == [200] * 4
        assert len(events(server, "replaced", "alice")) == 3
    else:
        assert sorted(statuses) == [200, 403, 403, 403]
        winner = devices[statuses.index(200)]
        assert bindings[0]["contact"] == winner.contact
        assert len(events(server, "rejected", "alice")) == 3


# -- 3.4 Off, but the old device is gone ---------------------------------------------------


@pytest.mark.sipp
def test_off_silent_old_device_is_replaced_after_the_probe(
    server: RunningServer, sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    create_account(server, "bob", "pw")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")  # REPLACE_IF_UNREACHABLE On: default
    old = Device(ua("udp", server.udp), "alice")  # answers nothing
    assert old.register("pw").status == 200

    started = time.monotonic()
    new = sipp_register_start(sipp, server, "alice", "pw")
    probe = old.ua.expect_request("OPTIONS", timeout=5)  # the §3.4 probe reached the old device
    assert probe.uri == old.contact
    # while alice's REGISTER waits on the probe, other traffic flows
    other = ua("udp", server.udp)
    assert other.request("OPTIONS", timeout=1).status == 200
    assert other.register("bob", "regswitch.local", password="pw", timeout=1).status == 200
    assert new.process.running  # alice's REGISTER is still waiting for its answer

    result = new.finish()
    elapsed = time.monotonic() - started
    assert result.final.status == 200
    assert elapsed >= 1.8  # answered after the 2 s probe, not before
    assert _contacts("alice", server) == [result.contact]
    replaced = only(events(server, "replaced", "alice"))["details"]
    assert replaced["old_contact"] == old.contact and replaced["policy"] == "off-unreachable"
    assert replaced["kicked"] is True


@pytest.mark.sipp
def test_off_old_device_answering_the_probe_keeps_the_account(
    server: RunningServer, sipp: SippRunner, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")
    old = Device(ua("udp", server.udp, auto_respond={"OPTIONS": 200}), "alice")
    assert old.register("pw").status == 200

    started = time.monotonic()
    new = sipp_register(sipp, server, "alice", "pw", scenario="register_replace_rejected")
    assert time.monotonic() - started < 1.9  # the answer ends the 2 s probe early
    assert (new.final.status, new.final.reason) == (403, REJECT_REASON)
    probe = old.ua.expect_request("OPTIONS", timeout=1)
    assert probe.uri == old.contact
    binding = only(registrations(server, "alice"))
    assert binding["contact"] == old.contact and binding["reachable"] is True
    assert not events(server, "replaced")
