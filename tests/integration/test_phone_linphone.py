"""linphone (linphonec 5.1, Debian linphone-cli), a real phone we did not write,
set up with README's "A first phone" [proxy_0]/[auth_info_0] sections: the
account in `regswitch.local` (which no DNS resolves), `reg_proxy` and
`reg_route` naming the switch. It registers, and its INVITE to
bob@regswitch.local goes through the route to the switch (a 480 CDR: bob is not
registered) instead of failing on DNS.

linphonec is driven through linphonecsh, which starts it in pipe mode (plain
linphonec reading a pipe only runs its SIP stack between commands)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import require_tool
from support.register_helpers import DOMAIN, create_account
from support.server import RunningServer
from support.sipp import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DEADLINE = 20.0


def readme_linphonerc(host: str, port: int, sip_port: int) -> str:
    """README's sections with this server's address, plus where the phone itself
    listens (UDP only, IPv4: the test runs on loopback)."""
    return (
        "[sip]\n"
        f"sip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nuse_ipv6=0\n"
        "[proxy_0]\n"
        f'reg_identity="Alice" <sip:alice@{DOMAIN}>\n'
        f"reg_proxy=<sip:{host}:{port};transport=udp>\n"
        f"reg_route=<sip:{host}:{port};transport=udp;lr>\n"
        "reg_expires=600\nreg_sendregister=1\n"
        "[auth_info_0]\n"
        f"username=alice\npasswd=alice-secret\nrealm={DOMAIN}\ndomain={DOMAIN}\n"
    )


@pytest.fixture
def linphonecsh(tmp_path: Path) -> Iterator[Any]:
    """Runs `linphonecsh ARGS` with a HOME of its own; ends the linphonec it started."""
    tool = require_tool("linphonecsh", "Debian package linphone-cli; `make system`")
    home = tmp_path / "home"
    (home / ".local" / "share" / "linphone").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [tool, *args], env=env, capture_output=True, text=True, timeout=15, check=False
        )
        return done.stdout + done.stderr

    yield run
    run("exit")
    # the daemon linphonecsh forked, found by our own config file's path
    found = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "linphonerc")], capture_output=True, text=True
    )
    for pid in found.stdout.split():
        os.kill(int(pid), signal.SIGKILL)


def wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {DEADLINE} s")


def test_linphone_registers_and_calls_through_the_route(
    server: RunningServer, tmp_path: Path, linphonecsh: Any
) -> None:
    api = server.api
    for user in ("alice", "bob"):
        create_account(server, user, password=f"{user}-secret")
    host, port = server.udp
    rc = tmp_path / "linphonerc"
    rc.write_text(readme_linphonerc(host, port, free_port()))

    linphonecsh("init", "-c", str(rc), "-d", "0")
    registered = wait_for(
        lambda: api.get("/api/events", params={"type": "registered"}).json(), "registration"
    )
    assert [e["account"] for e in registered] == [f"alice@{DOMAIN}"]
    assert "Linphone" in (registered[0]["details"].get("user_agent") or "")

    started = time.time()
    linphonecsh("generic", f"call sip:bob@{DOMAIN}")
    cdrs = wait_for(
        lambda: api.get("/api/cdrs", params={"account": f"alice@{DOMAIN}"}).json(), "CDR"
    )
    assert [(c["callee"], c["final_code"], c["end_reason"]) for c in cdrs] == [
        (f"bob@{DOMAIN}", 480, "not-registered")
    ]
    assert cdrs[0]["start"] >= started - 1
