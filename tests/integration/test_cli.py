"""The CLI over the API: human tables, --json, one-line errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.server import RunningServer

DOMAIN = "regswitch.local"


def cli(
    server_or_url: RunningServer | str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.api_url
    environment = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    environment.pop("REGSWITCH_API", None)
    return subprocess.run(
        [sys.executable, "-m", "regswitch", "--api", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


def test_account_lifecycle_through_the_cli(server: RunningServer) -> None:
    added = cli(
        server,
        "account",
        "add",
        f"alice@{DOMAIN}",
        "--password",
        "pw",
        "--max-contacts",
        "2",
        "--replace",
        "off",
    )
    assert added.returncode == 0, added.stderr
    assert f"alice@{DOMAIN}" in added.stdout
    listed = cli(server, "--json", "account", "list")
    assert json.loads(listed.stdout)[0]["register_replace"] == "off"
    changed = cli(
        server, "--json", "account", "set", f"alice@{DOMAIN}", "--keep-calls", "on", "--disabled"
    )
    assert json.loads(changed.stdout)["enabled"] is False
    shown = cli(server, "--json", "account", "show", f"alice@{DOMAIN}")
    assert json.loads(shown.stdout)["replace_keep_calls"] == "on"
    assert cli(server, "account", "del", f"alice@{DOMAIN}").returncode == 0
    assert json.loads(cli(server, "--json", "account", "list").stdout) == []


def test_import_csv(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("# user,domain,password\nu1,regswitch.local,p1\nu2,regswitch.local,p2\n")
    result = cli(server, "--json", "account", "import", str(path))
    assert json.loads(result.stdout) == {"created": 2, "updated": 0}


def test_params_through_the_cli(server: RunningServer) -> None:
    assert cli(server, "param", "set", "SS_ENDPOINT_REGISTER_REPLACE", "off").returncode == 0
    got = cli(server, "--json", "param", "get", "SS_ENDPOINT_REGISTER_REPLACE")
    assert json.loads(got.stdout)["value"] == "Off"
    table = cli(server, "param", "list")
    assert "SS_ENDPOINT_REGISTER_REPLACE" in table.stdout and "Off" in table.stdout
    events = json.loads(cli(server, "--json", "events", "--type", "param-changed").stdout)
    assert events[0]["details"]["new"] == "Off"


def test_errors_are_one_line_with_exit_codes(server: RunningServer, tmp_path: Path) -> None:
    bad_value = cli(server, "param", "set", "SS_ENDPOINT_EXPIRE", "lots")
    assert bad_value.returncode == 1
    assert bad_value.stderr.strip().count("\n") == 0 and "integer" in bad_value.stderr

    bad_aor = cli(server, "account", "add", "no-at-sign")
    assert bad_aor.returncode == 2 and bad_aor.stderr.startswith("error: bad account")

    bad_override = cli(
        server, "account", "add", f"x@{DOMAIN}", "--password", "p", "--replace", "sometimes"
    )
    assert bad_override.returncode == 2

    nothing = cli(server, "account", "set", f"x@{DOMAIN}")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr

    missing = cli(server, "reg", "delete", "nope")
    assert missing.returncode == 1 and "404" in missing.stderr

    unreadable = cli(server, "account", "import", str(tmp_path / "absent.csv"))
    assert unreadable.returncode == 2 and unreadable.stderr.count("\n") == 1

    down = cli("http://127.0.0.1:9", "account", "list")
    assert down.returncode == 1 and "cannot reach the API" in down.stderr

    usage = cli(server, "account", "add")  # missing argument: click's usage error
    assert usage.returncode == 2


def test_api_url_from_environment(server: RunningServer) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "regswitch", "--json", "param", "get", "SS_ENDPOINT_EXPIRE"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REGSWITCH_API": server.api_url},
    )
    assert result.returncode == 0 and json.loads(result.stdout)["value"] == "3600"
