"""Delete and block, tombstones and unblock through the CLI (README "Why was I
signed out?"), with a SIPp device."""

from __future__ import annotations

import json

import pytest
from test_cli import cli

from support.register_helpers import DOMAIN, create_account, only, registrations, sipp_register
from support.server import RunningServer
from support.sipp import SippRunner, free_port

pytestmark = [pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(90)]


def test_delete_and_block_then_unblock_through_the_cli(
    server: RunningServer, sipp: SippRunner
) -> None:
    create_account(server, "alice", "pw")
    sipp_register(sipp, server, "alice", "pw")
    binding = only(registrations(server, "alice"))

    bad = cli(server, "reg", "delete", binding["id"], "--block", "-5")
    assert bad.returncode == 2 and "--block" in bad.stderr
    deleted = cli(server, "--json", "reg", "delete", binding["id"], "--kick", "--block", "600")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["blocked_until"] is not None

    # the same device (same IP and user agent) from a new port, new Call-ID: refused
    refused = sipp_register(
        sipp, server, "alice", "pw", scenario="register_kicked_refused", local_port=free_port()
    ).final
    assert (refused.status, refused.reason) == (403, "Device Blocked")
    assert 590 <= int(refused.headers.get("Retry-After") or 0) <= 600

    listed = cli(server, "--json", "reg", "tombstones", "--account", f"alice@{DOMAIN}")
    stone = only(json.loads(listed.stdout))
    assert stone["kind"] == "blocked" and stone["refusals"] == 1
    table = cli(server, "reg", "tombstones")
    assert "blocked" in table.stdout

    lifted = cli(server, "--json", "reg", "unblock", f"alice@{DOMAIN}")
    assert json.loads(lifted.stdout)["lifted"] == 1
    assert sipp_register(sipp, server, "alice", "pw").final.status == 200
