"""The kick (docs/behaviour.md §3.3) and the other ways the switch ends calls, through a real
`regswitch serve` with SIPp as caller, callee device and the new device:

- replace On: an answered call gets BYE to both parties; a call ringing toward
  the kicked device gets CANCEL toward it and 480 toward the caller; an
  unanswered call the kicked device placed gets CANCEL toward the callee and
  487 toward the device. CDR registration-replaced/system; the `replaced`
  event lists the calls ended;
- replace Off: the new device is refused, the call goes on;
- keep calls: the binding is replaced, the call goes on and ends normally;
- console delete with and without kick; admin hang-up.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.harness import Api, Devices, check_cdr, contact, source, unique, user, wait_trace

pytestmark = [pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(60)]


def only_event(api: Api, type: str, aor: str) -> dict[str, Any]:
    found = api.events(type, aor)
    assert len(found) == 1, found
    details: dict[str, Any] = found[0]["details"]
    return details


def test_answered_call_kicked_by_new_callee_device(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    old_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", old_port)
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob))
    call = api.wait_call(alice, "answered")
    assert call["callee_source"] == source(old_port)

    new_port = devs.register(user(bob))  # replace On (default): the old device is kicked
    a = caller.wait().check(1)  # BYE reached both parties
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    assert cdr["id"] == call["id"]
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="registration-replaced",
        direction="system",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=old_port,
        a_leg=a,
        b_leg=b,
    )
    event = only_event(api, "replaced", bob)
    assert event["calls_ended"] == [call["id"]]
    assert event["kicked"] is True
    assert (event["old_contact"], event["old_source"]) == (
        contact(user(bob), old_port),
        source(old_port),
    )
    assert event["new_source"] == source(new_port)
    assert [r["source_port"] for r in api.registrations(bob)] == [new_port]
    api.wait_no_calls()

    # later INVITEs go to the new device
    device = devs.device("call_uas_reject", new_port, code=486)
    caller2 = devs.caller("call_uac_fail", user(alice), user(bob), code=486)
    caller2.wait().check(1)
    device.wait().check(1)
    second = api.wait_cdrs(alice, 2)[0]
    assert (second["end_reason"], second["callee_source"]) == ("busy", source(new_port))


def test_answered_call_kicked_by_new_caller_device(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    alice_port = devs.register(user(alice))  # the caller is a registered device too
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob), port=alice_port)
    call = api.wait_call(alice, "answered")

    devs.register(user(alice))  # a new device takes alice's account: her call ends
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="registration-replaced",
        direction="system",
        code=200,
        answered=True,
        caller_port=alice_port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )
    assert only_event(api, "replaced", alice)["calls_ended"] == [call["id"]]


def test_ringing_call_kicked_cancel_to_device_480_to_caller(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    old_port = devs.register(user(bob))
    callee = devs.device("call_uas_ring", old_port)  # rings until CANCELled
    caller = devs.caller("call_uac_fail", user(alice), user(bob), code=480)
    wait_trace(caller, "SIP/2.0 180")
    call = api.wait_call(alice, "setup")

    devs.register(user(bob))
    b = callee.wait().check(1)  # CANCEL -> 200, 487 -> ACK
    a = caller.wait().check(1)  # 480
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="registration-replaced",
        direction="system",
        code=480,
        answered=False,
        caller_port=caller.port,
        callee_port=old_port,
        a_leg=a,
        b_leg=b,
    )
    assert only_event(api, "replaced", bob)["calls_ended"] == [call["id"]]


def test_outgoing_unanswered_call_kicked_cancel_to_callee_487_to_device(
    api: Api, devs: Devices
) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    alice_port = devs.register(user(alice))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_ring", bob_port)
    caller = devs.caller("call_uac_fail", user(alice), user(bob), code=487, port=alice_port)
    wait_trace(caller, "SIP/2.0 180")
    call = api.wait_call(alice, "setup")

    devs.register(user(alice))  # alice's own binding replaced while her call rings
    b = callee.wait().check(1)  # CANCEL toward the callee
    a = caller.wait().check(1)  # 487 toward the device
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="registration-replaced",
        direction="system",
        code=487,
        answered=False,
        caller_port=alice_port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )
    assert only_event(api, "replaced", alice)["calls_ended"] == [call["id"]]


def test_replace_off_new_device_refused_call_goes_on(api: Api, devs: Devices) -> None:
    api.set_param("SS_ENDPOINT_REGISTER_REPLACE", "Off")
    # a SIPp device in a call scenario does not answer OPTIONS: without this the
    # §3.4 probe would find it "gone" and let the new device take over
    api.set_param("REGISTER_REPLACE_IF_UNREACHABLE", "Off")
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    old_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", old_port)
    # the caller hangs up after 2 s: time for the refused REGISTER in between
    caller = devs.caller("call_uac_hangup", user(alice), user(bob), pause_ms=2000)
    call = api.wait_call(alice, "answered")

    devs.register(user(bob), code=403)  # Registration Replace Disabled
    assert api.call_of(alice, "answered") is not None, "the call must go on"
    assert [r["source_port"] for r in api.registrations(bob)] == [old_port]
    a = caller.wait().check(1)  # the caller's BYE went end to end
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    assert cdr["id"] == call["id"]
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="normal",
        direction="caller",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=old_port,
        a_leg=a,
        b_leg=b,
        min_seconds=1.9,
    )
    assert api.events("replaced", bob) == []
    assert only_event(api, "rejected", bob)["old_source"] == source(old_port)


def test_replace_off_but_old_device_silent_is_kicked(api: Api, devs: Devices) -> None:
    """docs/behaviour.md §3.4: under Off, a binding that does not answer the OPTIONS probe (2 s) is
    taken over, and its calls are kicked like under On."""
    api.set_param("SS_ENDPOINT_REGISTER_REPLACE", "Off")
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    old_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", old_port)  # ignores the probe
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob))
    call = api.wait_call(alice, "answered")

    new_port = devs.register(user(bob))  # answered after the unanswered probe
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="registration-replaced",
        direction="system",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=old_port,
        a_leg=a,
        b_leg=b,
    )
    event = only_event(api, "replaced", bob)
    assert (event["calls_ended"], event["policy"]) == ([call["id"]], "off-unreachable")
    assert [r["source_port"] for r in api.registrations(bob)] == [new_port]


def test_replace_keep_calls_binding_replaced_call_ends_normally(api: Api, devs: Devices) -> None:
    api.set_param("REGISTER_REPLACE_KEEP_CALLS", "On")
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    old_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", old_port)
    caller = devs.caller("call_uac_hangup", user(alice), user(bob), pause_ms=2000)
    call = api.wait_call(alice, "answered")

    new_port = devs.register(user(bob))  # accepted, replaces the binding, no BYE
    assert [r["source_port"] for r in api.registrations(bob)] == [new_port]
    assert api.call_of(alice, "answered") is not None, "the call must go on"
    event = only_event(api, "replaced", bob)
    assert (event["keep_calls"], event["kicked"], event["calls_ended"]) == (True, False, [])

    a = caller.wait().check(1)  # the BYE reached the old device through its own target
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    assert cdr["id"] == call["id"]
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="normal",
        direction="caller",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=old_port,
        a_leg=a,
        b_leg=b,
        min_seconds=1.9,
    )


def test_console_delete_with_kick(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    [binding] = api.registrations(bob)
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob))
    call = api.wait_call(alice, "answered")

    r = api.http.delete(f"/api/registrations/{binding['id']}", params={"kick": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["calls_ended"] == [call["id"]]
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="registration-deleted",
        direction="system",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )
    event = only_event(api, "deleted", bob)
    assert (event["kicked"], event["calls_ended"]) == (True, [call["id"]])
    assert api.registrations(bob) == []


def test_console_delete_without_kick(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    [binding] = api.registrations(bob)
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_hangup", user(alice), user(bob), pause_ms=2000)
    call = api.wait_call(alice, "answered")

    r = api.http.delete(f"/api/registrations/{binding['id']}", params={"kick": "false"})
    assert r.status_code == 200, r.text
    assert r.json()["calls_ended"] == []
    assert api.registrations(bob) == []
    assert api.call_of(alice, "answered") is not None, "the call must go on"
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    assert cdr["id"] == call["id"]
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="normal",
        direction="caller",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )
    assert only_event(api, "deleted", bob)["kicked"] is False


def test_admin_hangup(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob))
    call = api.wait_call(alice, "answered")

    r = api.http.delete(f"/api/calls/{call['id']}")
    assert r.status_code == 200, r.text
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="admin-hangup",
        direction="system",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )
    assert api.http.delete(f"/api/calls/{call['id']}").status_code == 404
    api.wait_no_calls()
