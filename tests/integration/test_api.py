"""The admin API against a real server: accounts, parameters, registrations,
events, errors as {"error": ...}, OpenAPI, health, and the token rule."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from support.server import RunningServer

DOMAIN = "regswitch.local"


def test_openapi_and_health(server: RunningServer) -> None:
    spec = server.api.get("/openapi.json").json()
    for path in (
        "/api/accounts",
        "/api/parameters/{name}",
        "/api/registrations/{binding_id}",
        "/api/events",
        "/api/events/stream",
        "/api/calls",
        "/api/cdrs",
        "/metrics",
        "/healthz",
    ):
        assert path in spec["paths"], path
    health = server.api.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["checks"] == {
        "sip_transports": True,
        "storage": True,
        "event_loop": True,
        "bindings": True,
    }
    assert health["restoring_registrations"] is False


def test_account_crud_never_exposes_hashes(server: RunningServer) -> None:
    api = server.api
    created = api.post(
        "/api/accounts",
        json={
            "user": "alice",
            "domain": DOMAIN,
            "password": "s3cret",
            "max_contacts": 2,
            "register_replace": "off",
            "allowed_networks": ["10.0.0.0/8"],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["aor"] == f"alice@{DOMAIN}" and body["max_contacts"] == 2
    assert body["register_replace"] == "off" and body["allowed_networks"] == ["10.0.0.0/8"]
    assert "s3cret" not in created.text and "ha1" not in created.text
    assert (
        api.post(
            "/api/accounts", json={"user": "alice", "domain": DOMAIN, "password": "x"}
        ).status_code
        == 409
    )

    patched = api.patch(
        f"/api/accounts/alice@{DOMAIN}", json={"replace_keep_calls": "on", "allowed_networks": []}
    )
    assert patched.status_code == 200
    assert patched.json()["replace_keep_calls"] == "on" and patched.json()["allowed_networks"] == []
    listed = api.get("/api/accounts").json()
    assert [a["aor"] for a in listed] == [f"alice@{DOMAIN}"]
    assert api.get(f"/api/accounts/alice@{DOMAIN}").json()["registrations"] == []
    assert api.delete(f"/api/accounts/alice@{DOMAIN}").status_code == 200
    assert api.get(f"/api/accounts/alice@{DOMAIN}").status_code == 404
    types = [
        e["details"].get("action")
        for e in api.get("/api/events", params={"type": "account-changed"}).json()
    ]
    assert types == ["deleted", "updated", "created"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"user": "bob", "domain": DOMAIN}, 422, "password or allowed_networks"),
        (
            {"user": "bob", "domain": DOMAIN, "password": "x", "max_contacts": 0},
            422,
            "max_contacts",
        ),
        (
            {"user": "bob", "domain": DOMAIN, "password": "x", "register_replace": "maybe"},
            422,
            "register_replace",
        ),
        (
            {
                "user": "bob",
                "domain": DOMAIN,
                "password": "x",
                "allowed_networks": ["10.0.0.300/8"],
            },
            422,
            "bad network",
        ),
        ({"user": "bob", "domain": DOMAIN, "password": "x", "colour": "red"}, 422, "colour"),
        ({"user": "b o b", "domain": DOMAIN, "password": "x"}, 422, "user"),
    ],
)
def test_bad_account_input_is_refused_and_changes_nothing(
    server: RunningServer, body: dict[str, object], status: int, fragment: str
) -> None:
    response = server.api.post("/api/accounts", json=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]
    assert server.api.get("/api/accounts").json() == []


def test_bulk_import_is_all_or_nothing(server: RunningServer) -> None:
    api = server.api
    good = [{"user": f"u{i}", "domain": DOMAIN, "password": f"p{i}"} for i in range(50)]
    bad = [*good, {"user": "u7", "domain": DOMAIN, "password": "dup"}]
    refused = api.post("/api/accounts/import", json={"accounts": bad})
    assert refused.status_code == 409 and "u7@" in refused.json()["error"]
    assert api.get("/api/accounts").json() == []
    done = api.post("/api/accounts/import", json={"accounts": good})
    assert done.json() == {"created": 50, "updated": 0}
    assert len(api.get("/api/accounts").json()) == 50


def test_parameters_validate_and_record_changes(server: RunningServer) -> None:
    api = server.api
    names = {p["name"] for p in api.get("/api/parameters").json()}
    assert {
        "SS_ENDPOINT_REGISTER_REPLACE",
        "SS_ENDPOINT_EXPIRE",
        "SS_ENDPOINT_MIN_EXPIRE",
        "REGISTER_REPLACE_KEEP_CALLS",
        "SS_SIP_NAT_KEEP_ALIVE",
        "SS_SIP_NAT_KEEP_ALIVE_PERIOD",
        "SS_SIP_NAT_KEEP_ALIVE_MESSAGE",
        "REGISTER_REPLACE_REJECT_CODE",
        "REGISTER_REPLACE_IF_UNREACHABLE",
        "REGISTER_FLAP_LIMIT",
        "REGISTER_FLAP_WINDOW",
        "REGISTER_FLAP_HOLD",
    } <= names

    for value, expected in (("off", "Off"), ("TRUE", "On"), ("0", "Off"), (True, "On")):
        response = api.put("/api/parameters/SS_ENDPOINT_REGISTER_REPLACE", json={"value": value})
        assert response.status_code == 200 and response.json()["value"] == expected

    for name, value in (
        ("SS_ENDPOINT_REGISTER_REPLACE", "sometimes"),
        ("SS_ENDPOINT_EXPIRE", "abc"),
        ("REGISTER_REPLACE_REJECT_CODE", "404"),
        ("SS_ENDPOINT_MIN_EXPIRE", "99999"),
    ):
        before = api.get(f"/api/parameters/{name}").json()["value"]
        response = api.put(f"/api/parameters/{name}", json={"value": value})
        assert response.status_code == 400 and response.json()["error"]
        assert api.get(f"/api/parameters/{name}").json()["value"] == before
    assert api.put("/api/parameters/NO_SUCH", json={"value": 1}).status_code == 404

    assert (
        api.put("/api/parameters/SS_ENDPOINT_EXPIRE", json={"value": 1800}).json()["old"] == "3600"
    )
    change = api.get("/api/events", params={"type": "param-changed", "limit": 1}).json()[0]
    assert change["details"] == {"name": "SS_ENDPOINT_EXPIRE", "old": "3600", "new": "1800"}


def test_parameters_survive_restart(server: RunningServer) -> None:
    server.api.put("/api/parameters/REGISTER_REPLACE_REJECT_CODE", json={"value": "486"})
    server.restart()
    assert server.api.get("/api/parameters/REGISTER_REPLACE_REJECT_CODE").json()["value"] == "486"


def test_unknown_registration_and_call_are_404(server: RunningServer) -> None:
    for method, path in (
        ("GET", "/api/registrations/nope"),
        ("DELETE", "/api/registrations/nope"),
        ("DELETE", "/api/calls/nope"),
    ):
        response = server.api.request(method, path)
        assert response.status_code == 404 and "nope" in response.json()["error"]
    assert server.api.get("/api/events", params={"limit": 0}).status_code == 422
    assert server.api.get("/api/cdrs", params={"reason": "bogus"}).status_code == 400


def test_token_is_required_when_configured(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--api-token", "t0ken")
    url = server.api_url
    assert httpx.get(f"{url}/healthz").status_code == 200  # health stays open for probes
    refused = httpx.get(f"{url}/api/accounts")
    assert refused.status_code == 401 and refused.json()["error"]
    assert (
        httpx.get(f"{url}/api/accounts", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    assert (
        httpx.get(f"{url}/api/accounts", headers={"Authorization": "Bearer t0ken"}).status_code
        == 200
    )


def test_non_loopback_api_without_token_refuses_to_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "regswitch",
            "serve",
            "--api",
            "0.0.0.0:0",
            "--sip",
            "udp:127.0.0.1:0",
            "--db",
            f"sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "requires api_token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_events_filter_by_several_types(server: RunningServer) -> None:
    api = server.api
    api.post("/api/accounts", json={"user": "a", "domain": DOMAIN, "password": "p"})
    api.put("/api/parameters/SS_ENDPOINT_EXPIRE", json={"value": 1200})
    both = api.get("/api/events", params={"type": "param-changed,account-changed"}).json()
    assert [e["type"] for e in both] == ["param-changed", "account-changed"]
    repeated = api.get(
        "/api/events", params=[("type", "param-changed"), ("type", "expired")]
    ).json()
    assert [e["type"] for e in repeated] == ["param-changed"]


def test_clearing_the_password_makes_an_ip_only_account(server: RunningServer) -> None:
    api = server.api
    api.post("/api/accounts", json={"user": "t", "domain": DOMAIN, "password": "p"})
    refused = api.patch(f"/api/accounts/t@{DOMAIN}", json={"password": None})
    assert refused.status_code == 422  # no networks: it would have no way to authenticate
    cleared = api.patch(
        f"/api/accounts/t@{DOMAIN}", json={"password": None, "allowed_networks": ["10.0.0.0/8"]}
    )
    assert cleared.status_code == 200 and cleared.json()["has_password"] is False


def test_health_names_the_served_domains(server: RunningServer) -> None:
    assert server.api.get("/healthz").json()["domains"] == [DOMAIN]


def test_registrations_page_with_total_count(server: RunningServer) -> None:
    import socket

    server.api.post(
        "/api/accounts/import",
        json={
            "accounts": [
                {"user": f"u{i}", "domain": DOMAIN, "allowed_networks": ["127.0.0.0/8"]}
                for i in range(5)
            ]
        },
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    for i in range(5):
        sock.sendto(
            (
                f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKp{i}\r\n"
                f"From: <sip:u{i}@{DOMAIN}>;tag={i}\r\nTo: <sip:u{i}@{DOMAIN}>\r\n"
                f"Call-ID: page{i}\r\nCSeq: 1 REGISTER\r\n"
                f"Contact: <sip:u{i}@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
            ).encode(),
            server.udp,
        )
        assert sock.recv(65535).startswith(b"SIP/2.0 200")
    sock.close()
    everything = server.api.get("/api/registrations")
    assert everything.headers["X-Total-Count"] == "5" and len(everything.json()) == 5
    page = server.api.get("/api/registrations", params={"limit": 2, "offset": 3})
    assert [r["account"] for r in page.json()] == [f"u3@{DOMAIN}", f"u4@{DOMAIN}"]
    assert page.headers["X-Total-Count"] == "5"
    assert server.api.get("/api/registrations", params={"limit": 0}).status_code == 422
