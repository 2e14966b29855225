"""An account's history over the API and the CLI, against a real server: a
device registers and refreshes, a second one kicks it, a third is refused with
replace Off, a parameter changes; the timeline tells it all, newest first, and
every entry's link leads to its event."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from support.register_helpers import DOMAIN, Device, create_account, set_param
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def register(device: Device, password: str, nc: int, agent: str) -> int:
    if device.challenge is None:
        device.fetch_challenge()
    req = device.request(authz=device.authz(password, nc))
    req.headers.set("User-Agent", agent)
    return device.wait(device.send(req)).status


def history(server: RunningServer, aor: str, **params: Any) -> dict[str, Any]:
    response = server.api.get(f"/api/accounts/{aor}/history", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_timeline_of_registrations_refreshes_a_kick_a_rejection_and_a_parameter(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    aor = f"alice@{DOMAIN}"
    create_account(server, "alice", password="pw")
    first = Device(ua("udp", server.udp), "alice")
    assert register(first, "pw", 1, "Phone-A/1.0") == 200
    for nc in (2, 3, 4):
        assert register(first, "pw", nc, "Phone-A/1.0") == 200  # refreshes
    # (it answers the probe a refused newcomer triggers: it is alive)
    second = Device(ua("udp", server.udp, auto_respond={"OPTIONS": 200}), "alice")
    assert register(second, "pw", 1, "Phone-B/2.0") == 200  # kicks the first
    set_param(server, "SS_ENDPOINT_REGISTER_REPLACE", "Off")
    third = Device(ua("udp", server.udp), "alice")
    assert register(third, "pw", 1, "Phone-C/3.0") == 403
    create_account(server, "bob", password="pw")  # another account: not in alice's history

    entries = history(server, aor)["entries"]
    kinds = [e["kind"] for e in entries]
    assert kinds == ["rejection", "parameter", "kick", "registration", "refreshes",
                     "registration", "account"]  # fmt: skip
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)

    rejection, parameter, kick, registered_b, refreshes, registered_a, _ = entries
    first_src = f"udp:127.0.0.1:{first.ua.local[1]}"
    second_src = f"udp:127.0.0.1:{second.ua.local[1]}"
    third_src = f"udp:127.0.0.1:{third.ua.local[1]}"
    assert second_src in registered_b["summary"] and "Phone-B/2.0" in registered_b["summary"]
    assert refreshes["count"] == 3 and refreshes["end_time"] > refreshes["time"]
    assert "refreshed 3 times" in refreshes["summary"]
    assert first_src in registered_a["summary"] and "Phone-A/1.0" in registered_a["summary"]
    # who replaced whom, from where, with which User-Agent, and which calls ended
    assert kick["summary"].startswith(f"kicked {first.contact} at {first_src} (Phone-A/1.0)")
    assert f"replaced by {second.contact} from {second_src} (Phone-B/2.0)" in kick["summary"]
    assert kick["summary"].endswith("no call ended")
    # what the refused device was told
    assert rejection["source"] == third_src
    assert "told 403 Registration Replace Disabled, Retry-After" in rejection["summary"]
    assert f"already registered from {second.contact}" in rejection["summary"]
    assert parameter["summary"] == "parameter SS_ENDPOINT_REGISTER_REPLACE: On -> Off (by api)"

    for entry in entries:
        linked = server.api.get("/" + entry["link"])
        assert linked.status_code == 200
        assert linked.json()["id"] == entry["event_id"]
    assert server.api.get("/api/events/999999").status_code == 404

    # a window that holds only the kick and what came after it
    later = history(server, aor, since=str(kick["time"]))["entries"]
    assert [e["kind"] for e in later] == ["rejection", "parameter", "kick"]
    assert history(server, aor, since="1h", until=str(time.time() - 1800))["entries"] == []


def test_bad_history_requests_are_4xx(server: RunningServer) -> None:
    create_account(server, "carol", password="pw")
    api = server.api
    base = f"/api/accounts/carol@{DOMAIN}/history"
    assert api.get(base, params={"since": "yesterday"}).status_code == 400
    assert api.get(base, params={"since": "1h", "until": "2h"}).json() == {
        "error": "since must be before until"
    }
    assert api.get(base, params={"until": "nan"}).status_code == 400
    assert api.get(f"/api/accounts/nobody@{DOMAIN}/history").status_code == 404
    assert api.get("/api/accounts/no-domain/history").status_code == 400


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regswitch", "--api", server.api_url, *args],
        capture_output=True, text=True, timeout=30, env={"NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip


def test_cli_account_history(server: RunningServer, ua: Callable[..., UA]) -> None:
    create_account(server, "dave", password="pw")
    device = Device(ua("udp", server.udp), "dave")
    # a User-Agent with console markup: printed as sent, not interpreted
    assert register(device, "pw", 1, "Phone-D/4.0 [red]x[/red]") == 200
    out = cli(server, "account", "history", f"dave@{DOMAIN}", "--since", "2h", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [e["kind"] for e in data["entries"]] == ["registration", "account"]
    table = cli(server, "account", "history", f"dave@{DOMAIN}")
    assert table.returncode == 0, table.stderr
    assert "registered" in table.stdout and "Phone-D/4.0 [red]x[/red]" in table.stdout
    bad = cli(server, "account", "history", f"dave@{DOMAIN}", "--since", "soon")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: 400: since must be") and bad.stderr.count("\n") == 1
