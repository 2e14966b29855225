"""What a new operator hits first with the CLI and the API: --json on either
side of the subcommand, one-line usage errors, identifiers never truncated in
tables, validated event types, and malformed JSON answered in words."""

from __future__ import annotations

import json

import httpx
import pytest

from integration.test_cli import cli
from support.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_json_before_or_after_the_subcommand(server: RunningServer) -> None:
    before = cli(server, "--json", "param", "get", "SS_ENDPOINT_EXPIRE")
    after = cli(server, "param", "get", "SS_ENDPOINT_EXPIRE", "--json")
    middle = cli(server, "param", "--json", "get", "SS_ENDPOINT_EXPIRE")
    for result in (before, after, middle):
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["value"] == "3600"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("account", "add"), "Missing argument"),
        (("account", "add", "a@b", "--bogus"), "No such option: --bogus"),
        (("nope",), "No such command 'nope'"),
        (("account", "add", "a@b", "--max-contacts", "0"), "--max-contacts"),
    ],
)
def test_usage_errors_are_one_line(server: RunningServer, args: tuple[str, ...], says: str) -> None:
    result = cli(server, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    line = result.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: ") and says in line, result.stderr
    assert "╭" not in result.stderr and "│" not in result.stderr


def test_tables_never_truncate_identifiers(server: RunningServer) -> None:
    long_aor = "a-rather-long-user-name-0123456789@customer-domain-with-a-long-name.example"
    domain = long_aor.partition("@")[2]
    server.api.post("/api/domains", json={"domain": domain}).raise_for_status()
    server.api.post(
        "/api/accounts",
        json={
            "user": long_aor.partition("@")[0],
            "domain": domain,
            "password": "pw",
            "allowed_networks": ["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"],
        },
    ).raise_for_status()
    listed = cli(server, "account", "list", env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    assert long_aor in listed.stdout and "…" not in listed.stdout


def test_unknown_event_type_is_refused_like_an_unknown_cdr_reason(server: RunningServer) -> None:
    events = cli(server, "events", "--type", "nope")
    cdrs = cli(server, "cdr", "list", "--reason", "bogus")
    assert (events.returncode, cdrs.returncode) == (1, 1)
    assert events.stderr.startswith("error: 400: unknown event type 'nope'; one of ")
    assert "registered" in events.stderr and events.stderr.strip().count("\n") == 0
    assert cli(server, "events", "--type", "registered").returncode == 0
    stream = server.api.get("/api/events/stream", params={"type": "nope"})
    assert stream.status_code == 400


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"user": "x", ', "the request body is not valid JSON"),
        (b"not json", "the request body is not valid JSON"),
        (b"", "a JSON body is required"),
    ],
)
def test_malformed_json_is_answered_in_words(server: RunningServer, body: bytes, says: str) -> None:
    response = httpx.post(
        f"{server.api_url}/api/accounts",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(says) and "0: JSON decode error" not in error
