"""Kick wars with SIPp devices against a real `regswitch serve` (README "Kick
wars"): a kicked device that keeps refreshing its old registration (same
Call-ID) is refused each time and never kicks back; a device restarted on the
same address is the same device; an old address answering 404 is gone."""

from __future__ import annotations

import time

import pytest

from support import sipp_scenario
from support.register_helpers import (
    DOMAIN,
    create_account,
    events,
    only,
    registrations,
    set_params,
    sipp_register,
)
from support.server import RunningServer
from support.sipp import SippRunner, free_port

pytestmark = [pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(90)]


def _contacts(server: RunningServer) -> list[str]:
    return [b["contact"] for b in registrations(server, "alice")]


def test_a_kicked_device_refreshing_its_call_id_is_refused_and_never_kicks_back(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    port = free_port()
    old = sipp_register(sipp, server, "alice", "pw", call_id="kw-old", base_cseq=1, local_port=port)
    new = sipp_register(sipp, server, "alice", "pw")
    assert _contacts(server) == [new.contact]

    for cseq in (10, 20, 30):  # a hardware phone retrying the same registration
        refused = sipp_register(
            sipp, server, "alice", "pw", scenario="register_kicked_refused",
            call_id="kw-old", base_cseq=cseq, local_port=port,
        ).final
        assert (refused.status, refused.reason) == (403, "Registration Replaced")
        warning = refused.headers.get("Warning") or ""
        assert new.contact in warning and new.source in warning and "kw-old" in warning
        assert "sipp-regswitch-tests" in warning  # the newcomer's user agent
        assert _contacts(server) == [new.contact]

    rejected = only(events(server, "rejected", "alice"))["details"]  # one, not three
    assert rejected["tombstone"] == "replaced" and rejected["replaced_by"] == only(
        registrations(server, "alice")
    )["id"]
    assert len(events(server, "replaced", "alice")) == 1
    stones = server.api.get("/api/tombstones", params={"account": f"alice@{DOMAIN}"}).json()
    assert only(stones)["refusals"] == 3 and only(stones)["call_id"] == "kw-old"

    # a fresh registration of the same device (new Call-ID: restarted) is a newcomer
    again = sipp_register(sipp, server, "alice", "pw", local_port=port)
    assert _contacts(server) == [again.contact] == [old.contact]


def test_a_device_restarted_on_the_same_address_is_the_same_device_under_off(
    server: RunningServer, sipp: SippRunner
) -> None:
    """The same transport, IP and port with a new Contact and Call-ID: only one
    process holds that port, so it is the device itself (no probe, no refusal),
    even though the new process would answer the probe."""
    create_account(server, "alice", "pw")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")
    port = free_port()
    sipp_register(sipp, server, "alice", "pw", local_port=port)
    started = time.monotonic()
    restarted = sipp_register(
        sipp, server, "alice", "pw", local_port=port, contact_port=free_port(),
        auto_answer=True,
    )
    assert restarted.final.status == 200
    assert time.monotonic() - started < 2  # not probed
    assert _contacts(server) == [restarted.contact]
    assert only(events(server, "same-device", "alice"))["details"]["old_contact"]
    assert not events(server, "rejected", "alice")
    assert not events(server, "replaced", "alice")


def test_an_old_address_answering_404_is_gone_under_off(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    set_params(server, SS_ENDPOINT_REGISTER_REPLACE="Off")  # IF_UNREACHABLE stays On
    port = free_port()
    old = sipp_register(sipp, server, "alice", "pw", local_port=port)
    # another program now holds the old registration's port and answers 404
    stranger = sipp.start(sipp_scenario("options_uas_gone"), None, local_port=port)
    new = sipp_register(sipp, server, "alice", "pw")
    assert new.final.status == 200
    assert _contacts(server) == [new.contact]
    replaced = only(events(server, "replaced", "alice"))["details"]
    assert replaced["old_contact"] == old.contact and replaced["policy"] == "off-unreachable"
    assert stranger.wait(10).returncode == 0  # it was asked, and answered 404
