"""baresip, a real phone we did not write, set up as README's "A first phone"
says: the account in `regswitch.local` (which no DNS resolves) and the switch
as outbound proxy. It registers, and its INVITE to bob@regswitch.local
reaches the switch (a 480 CDR: bob is not registered) instead of failing on
DNS."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from support import require_tool
from support.server import RunningServer
from support.sipp import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DOMAIN = "regswitch.local"


def test_baresip_registers_and_calls_through_the_outbound_proxy(
    server: RunningServer, tmp_path: Path
) -> None:
    baresip = require_tool("baresip", "Debian package baresip-core; `make system`")
    api = server.api
    # baresip answers an MD5 challenge only (README: AUTH_ALGORITHMS MD5)
    api.put("/api/parameters/AUTH_ALGORITHMS", json={"value": "MD5"}).raise_for_status()
    for user in ("alice", "bob"):
        api.post(
            "/api/accounts", json={"user": user, "domain": DOMAIN, "password": f"{user}-secret"}
        ).raise_for_status()
    host, port = server.udp
    folder = tmp_path / "baresip"
    folder.mkdir()
    # the README's accounts line, with this server's address as the proxy
    (folder / "accounts").write_text(
        f"<sip:alice@{DOMAIN};transport=udp>;auth_pass=alice-secret;"
        f'outbound="sip:{host}:{port};transport=udp";regint=600\n'
    )
    (folder / "config").write_text(
        f"sip_listen\t127.0.0.1:{free_port()}\n"
        "module_path\t/usr/lib/baresip/modules\n"
        "module_app\taccount.so\n"
        "module_app\tmenu.so\n"
    )
    started = time.time()
    run = subprocess.run(
        [baresip, "-f", str(folder), "-e", f"/dial sip:bob@{DOMAIN}", "-t", "5"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )
    output = run.stdout + run.stderr
    assert f"alice@{DOMAIN}: {{0/UDP/v4}} 200 OK" in output, output[-2000:]
    registered = api.get("/api/events", params={"type": "registered"}).json()
    assert [e["account"] for e in registered] == [f"alice@{DOMAIN}"]
    assert "baresip" in (registered[0]["details"].get("user_agent") or "")
    cdrs = api.get("/api/cdrs", params={"account": f"alice@{DOMAIN}"}).json()
    assert [(c["callee"], c["final_code"], c["end_reason"]) for c in cdrs] == [
        (f"bob@{DOMAIN}", 480, "not-registered")
    ]
    assert cdrs[0]["start"] >= started - 1
