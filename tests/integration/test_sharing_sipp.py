"""The credential-sharing detector against a real `regswitch serve`, with SIPp
devices on several loopback addresses (one "network" each with
SHARING_V4_PREFIX 32): one event, the lock that spares the holder, the badge's
API, the metric and the CLI unlock."""

from __future__ import annotations

import json

import pytest
from test_cli import cli

from support import wait_until
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

pytestmark = [pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(120)]


def _device(sipp: SippRunner, server: RunningServer, host: str, **kw: object) -> int:
    run = sipp_register(
        sipp, server, "alice", "pw", local_host=host, check=False,
        scenario=str(kw.pop("scenario", "register_digest")), **kw,  # type: ignore[arg-type]
    )
    return run.final.status


def test_an_account_used_from_too_many_networks_is_locked_but_its_holder_stays(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    set_params(
        server,
        SHARING_V4_PREFIX=32,
        SHARING_MAX_SOURCES=2,
        SHARING_ACTION="lock",
        SHARING_LOCK_TIME=600,
        SS_ENDPOINT_MIN_EXPIRE=1,
    )
    holder_port = free_port()
    assert _device(sipp, server, "127.0.0.2") == 200
    assert _device(
        sipp, server, "127.0.0.3", call_id="holder", base_cseq=1, local_port=holder_port
    ) == 200  # replaces .2: it is the holder now
    refused = sipp_register(
        sipp, server, "alice", "pw", local_host="127.0.0.4",
        scenario="register_kicked_refused",
    ).final  # a third network: suspected, locked, refused
    assert (refused.status, refused.reason) == (403, "Account Locked")
    assert "credential sharing" in (refused.headers.get("Warning") or "")
    assert 590 <= int(refused.headers.get("Retry-After") or 0) <= 600

    suspected = only(events(server, "credential-sharing-suspected", "alice"))["details"]
    assert suspected["why"] == "sources" and suspected["locked_until"]
    assert suspected["networks"] == ["127.0.0.2/32", "127.0.0.3/32", "127.0.0.4/32"]
    assert suspected["user_agents"] == ["sipp-regswitch-tests"]
    # the holder is not punished: its refresh passes, and it keeps the account
    assert _device(
        sipp, server, "127.0.0.3", call_id="holder", base_cseq=10, local_port=holder_port
    ) == 200
    assert only(registrations(server, "alice"))["source_ip"] == "127.0.0.3"
    # even after an outage let its registration expire, the holder comes back
    assert _device(
        sipp, server, "127.0.0.3", call_id="holder", base_cseq=20, local_port=holder_port,
        expires=2,
    ) == 200
    wait_until(lambda: not registrations(server, "alice"), 10, "the holder's binding to expire")
    assert _device(
        sipp, server, "127.0.0.3", call_id="holder", base_cseq=30, local_port=holder_port
    ) == 200
    # anyone else, the first device too, is refused while locked; one event in all
    assert _device(sipp, server, "127.0.0.2", scenario="register_kicked_refused") == 403
    assert len(events(server, "credential-sharing-suspected", "alice")) == 1

    flagged = only(server.api.get("/api/sharing").json())
    assert flagged["account"] == f"alice@{DOMAIN}" and flagged["locked_until"]
    metrics = server.api.get("/metrics").text
    assert "regswitch_sharing_locked_accounts 1.0" in metrics
    assert 'regswitch_events_total{type="credential-sharing-suspected"} 1.0' in metrics

    unlocked = cli(server, "--json", "account", "unlock", f"alice@{DOMAIN}")
    assert unlocked.returncode == 0 and json.loads(unlocked.stdout)["unlocked"] is True
    assert cli(server, "account", "unlock", f"alice@{DOMAIN}").returncode != 0  # not locked
    assert server.api.get("/api/sharing").json() == []
    assert _device(sipp, server, "127.0.0.4") == 200


def test_with_action_none_it_only_tells(server: RunningServer, sipp: SippRunner) -> None:
    create_account(server, "alice", "pw")
    set_params(server, SHARING_V4_PREFIX=32, SHARING_MAX_SOURCES=2)
    for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
        assert _device(sipp, server, host) == 200
    suspected = only(events(server, "credential-sharing-suspected", "alice"))["details"]
    assert suspected["locked_until"] is None and len(suspected["networks"]) == 3
    assert only(registrations(server, "alice"))["source_ip"] == "127.0.0.5"
    table = cli(server, "account", "sharing")
    assert f"alice@{DOMAIN}" in table.stdout


def test_wrong_passwords_from_many_networks_neither_suspect_nor_lock(
    server: RunningServer, sipp: SippRunner
) -> None:
    """Nothing unauthenticated counts: a stranger guessing from many addresses
    cannot get the account locked against its owner."""
    create_account(server, "alice", "pw")
    set_params(
        server, SHARING_V4_PREFIX=32, SHARING_MAX_SOURCES=1, SHARING_ACTION="lock",
        AUTH_FAIL_LIMIT=1000,
    )
    assert _device(sipp, server, "127.0.0.2") == 200
    for host in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        guess = sipp_register(
            sipp, server, "alice", "guess", local_host=host, scenario="register_auth_rejected"
        )
        assert guess.final.status == 403
    assert not events(server, "credential-sharing-suspected")
    assert server.api.get("/api/sharing").json() == []
    assert only(registrations(server, "alice"))["source_ip"] == "127.0.0.2"
