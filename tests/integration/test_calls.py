"""Calls through a real `regswitch serve` (docs/behaviour.md §4), SIPp as caller and callee devices:
answered and hung up either way, busy, no answer, CANCEL, not registered, unknown, re-INVITE,
forking, maximum duration. Each checks the CDR from GET /api/cdrs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from calls.harness import Api, Devices, check_cdr, unique, user
from support.server import RunningServer
from support.sipp import SippRunner

ServerFactory = Callable[..., RunningServer]
pytestmark = [pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(60)]


def test_answered_call_hung_up_by_caller(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_hangup", user(alice), user(bob), pause_ms=300)
    a = caller.wait().check(1)
    b = callee.wait().check(1)  # got the caller's offer unchanged, then the BYE
    [cdr] = api.wait_cdrs(alice)
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
        min_seconds=0.25,
    )
    assert api.cdrs(bob) == [cdr]  # the callee's account finds the same record
    api.wait_no_calls()


def test_answered_call_hung_up_by_callee(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_hangup", bob_port, pause_ms=300)
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob))
    b = callee.wait().check(1)
    a = caller.wait().check(1)  # the callee's BYE reached the caller
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="normal",
        direction="callee",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
        min_seconds=0.25,
    )


def test_busy_callee_486_reaches_the_caller(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_reject", bob_port, code=486)
    caller = devs.caller("call_uac_fail", user(alice), user(bob), code=486)
    a = caller.wait().check(1)
    b = callee.wait().check(1)  # and the switch ACKed the 486
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="busy",
        direction="callee",
        code=486,
        answered=False,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )


def test_decline_603_is_rejected(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_reject", bob_port, code=603)
    caller = devs.caller("call_uac_fail", user(alice), user(bob), code=603)
    caller.wait().check(1)
    callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    assert (cdr["final_code"], cdr["end_direction"]) == (603, "callee"), cdr
    assert cdr["end_reason"] in ("busy", "rejected"), cdr


def test_caller_cancel_487(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_ring", bob_port)  # gets the CANCEL, answers 487
    caller = devs.caller("call_uac_cancel", user(alice), user(bob))
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="cancelled",
        direction="caller",
        code=487,
        answered=False,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )


def test_callee_not_registered_480(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    caller = devs.caller("call_uac_fail", user(alice), user(bob), code=480)
    a = caller.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="not-registered",
        direction="system",
        code=480,
        answered=False,
        caller_port=caller.port,
        a_leg=a,
    )
    assert cdr["callee_contact"] is None and cdr["callee_source"] is None
    assert cdr["b_call_id"] is None


def test_unknown_callee_404(api: Api, devs: Devices) -> None:
    alice = api.account(unique("alice"))
    ghost = unique("ghost")
    caller = devs.caller("call_uac_fail", user(alice), ghost, code=404)
    a = caller.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=f"{ghost}@regswitch.local",
        reason="rejected",
        direction="system",
        code=404,
        answered=False,
        caller_port=caller.port,
        a_leg=a,
    )
    assert cdr["b_call_id"] is None


def test_reinvite_carried_both_ways(api: Api, devs: Devices) -> None:
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_reinvite", bob_port)  # checks the new offer arrives
    caller = devs.caller("call_uac_reinvite", user(alice), user(bob))  # checks the new answer
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
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


def test_fork_to_two_devices_first_answer_wins_other_cancelled(api: Api, devs: Devices) -> None:
    alice = api.account(unique("alice"))
    bob = api.account(unique("bob"), max_contacts=2)
    port1 = devs.register(user(bob))
    port2 = devs.register(user(bob))
    assert {r["source_port"] for r in api.registrations(bob)} == {port1, port2}
    winner = devs.device("call_uas_answer", port1, pause_ms=400)  # rings, then answers
    loser = devs.device("call_uas_ring", port2)  # rings until CANCELled
    caller = devs.caller("call_uac_hangup", user(alice), user(bob), pause_ms=200)
    a = caller.wait().check(1)
    w = winner.wait().check(1)
    loser.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="normal",
        direction="caller",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=port1,
        a_leg=a,
        b_leg=w,
    )


def test_no_answer_timeout_408(server_factory: ServerFactory, sipp: SippRunner) -> None:
    server = server_factory(env={"REGSWITCH_NO_ANSWER_TIMEOUT": "1"})
    api, devs = Api(server), Devices(sipp, server)
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_ring", bob_port)  # the switch CANCELs it after 1 s
    caller = devs.caller("call_uac_fail", user(alice), user(bob), code=408)
    a = caller.wait().check(1)
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="no-answer",
        direction="system",
        code=408,
        answered=False,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
    )
    assert cdr["end"] - cdr["start"] >= 0.95, cdr


def test_max_call_duration_ends_the_call(server_factory: ServerFactory, sipp: SippRunner) -> None:
    server = server_factory(env={"REGSWITCH_MAX_CALL_DURATION": "1"})
    api, devs = Api(server), Devices(sipp, server)
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_wait_bye", user(alice), user(bob))
    a = caller.wait().check(1)  # BYE to both parties
    b = callee.wait().check(1)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="timeout",
        direction="system",
        code=200,
        answered=True,
        caller_port=caller.port,
        callee_port=bob_port,
        a_leg=a,
        b_leg=b,
        min_seconds=0.95,
    )
    assert cdr["end"] - cdr["answer"] < 3, cdr
