"""Domains as data against a real server: created and removed through the API
and the CLI, evented, live for REGISTER (no restart), seeded from --domain,
and guarding accounts (no account in an unserved domain; no domain removed
while it has accounts)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from integration.test_cli import cli
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def names(server: RunningServer) -> list[str]:
    return [d["name"] for d in server.api.get("/api/domains").json()]


def test_configured_domains_are_seeded_and_kept(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory("--domain", "one.example", "--domain", "Two.Example")
    assert names(server) == ["one.example", "two.example"]
    server.api.post("/api/domains", json={"domain": "three.example"}).raise_for_status()
    server.restart()
    assert names(server) == ["one.example", "three.example", "two.example"]
    assert server.api.get("/healthz").json()["domains"] == names(server)
    refused = server.api.delete("/api/domains/one.example")
    assert refused.status_code == 409 and "--domain" in refused.json()["error"]


def test_account_in_an_unserved_domain_is_refused_naming_the_fix(server: RunningServer) -> None:
    body = {"user": "alice", "domain": "example.org", "password": "pw"}
    refused = server.api.post("/api/accounts", json=body)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "example.org is not served" in error
    assert "regswitch domain add example.org" in error and '"create_domain": true' in error
    assert server.api.get("/api/accounts").json() == []

    bulk = server.api.post("/api/accounts/import", json={"accounts": [body]})
    assert bulk.status_code == 422 and "example.org" in bulk.json()["error"]

    created = server.api.post("/api/accounts", json={**body, "create_domain": True})
    assert created.status_code == 201, created.text
    assert "example.org" in names(server)
    imported = server.api.post(
        "/api/accounts/import",
        json={
            "accounts": [
                {"user": "bob", "domain": "bulk.example", "password": "pw"},
                body | {"user": "al2"},
            ],
            "create_domain": True,
        },
    )
    assert imported.status_code == 200 and imported.json() == {"created": 2, "updated": 0}
    assert names(server) == ["bulk.example", "example.org", "regswitch.local"]
    events = server.api.get("/api/events", params={"type": "domain-changed"}).json()
    assert [(e["details"]["action"], e["details"]["domain"]) for e in events] == [
        ("created", "bulk.example"),
        ("created", "example.org"),
    ]


def test_register_to_a_domain_added_live(server: RunningServer, ua: Callable[..., UA]) -> None:
    phone = ua("udp", server.udp)
    assert phone.register("carol", "example.net", "pw").status == 403  # not served yet
    added = server.api.post("/api/domains", json={"domain": "Example.NET"})
    assert added.status_code == 201 and added.json()["name"] == "example.net"
    server.api.post(
        "/api/accounts", json={"user": "carol", "domain": "example.net", "password": "pw"}
    ).raise_for_status()
    assert phone.register("carol", "example.net", "pw", call_id="fresh-call").status == 200

    # removing it: refused with the count while the account is there, then live too
    refused = server.api.delete("/api/domains/example.net")
    assert refused.status_code == 409
    assert refused.json()["error"] == "domain example.net still has 1 account; delete them first"
    server.api.delete("/api/accounts/carol@example.net").raise_for_status()
    assert server.api.delete("/api/domains/example.net").json() == {"deleted": "example.net"}
    assert phone.register("carol", "example.net", "pw", call_id="after").status == 403
    kinds = [
        e["details"]["action"]
        for e in server.api.get("/api/events", params={"type": "domain-changed"}).json()
    ]
    assert kinds == ["deleted", "created"]


def test_domain_api_errors(server: RunningServer) -> None:
    api = server.api
    assert api.post("/api/domains", json={"domain": "a b"}).status_code == 422
    assert api.post("/api/domains", json={}).status_code == 422
    api.post("/api/domains", json={"domain": "dup.example"}).raise_for_status()
    again = api.post("/api/domains", json={"domain": "DUP.example"})
    assert again.status_code == 409 and "already served" in again.json()["error"]
    missing = api.delete("/api/domains/nowhere.example")
    assert missing.status_code == 404 and missing.json()["error"] == "no domain nowhere.example"


def test_domain_commands(server: RunningServer) -> None:
    added = cli(server, "domain", "add", "cli.example")
    assert added.returncode == 0, added.stderr
    listed = json.loads(cli(server, "domain", "list", "--json").stdout)
    assert any(d["name"] == "cli.example" and d["accounts"] == 0 for d in listed)
    account = cli(server, "account", "add", "dave@cli.example", "--password", "pw")
    assert account.returncode == 0, account.stderr
    busy = cli(server, "domain", "remove", "cli.example")
    assert busy.returncode == 1
    assert (
        busy.stderr.strip()
        == "error: 409: domain cli.example still has 1 account; delete them first"
    )
    other = cli(server, "account", "add", "erin@new.example", "--password", "pw")
    assert other.returncode == 1 and "regswitch domain add new.example" in other.stderr
    created = cli(
        server, "account", "add", "erin@new.example", "--password", "pw", "--create-domain"
    )
    assert created.returncode == 0, created.stderr
    assert cli(server, "account", "del", "dave@cli.example").returncode == 0
    assert cli(server, "domain", "remove", "cli.example").returncode == 0
    assert "cli.example" not in names(server)
