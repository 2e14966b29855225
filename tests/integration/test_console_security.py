"""The admin API and console against a real server, tried as an attacker would:
DNS rebinding (a foreign Host), a local user without the token, secrets read
from `ps`, plain HTTP when TLS is configured, and the console's CSP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_cli import cli

from support.register_helpers import sipp_register
from support.server import RunningServer
from support.sipp import SippRunner
from support.tls import TlsFiles

pytestmark = pytest.mark.timeout(90)

DOMAIN = "regswitch.local"


def raw_get(server: RunningServer, path: str, host: str, token: str | None = None) -> int:
    """The status of a GET sent with exactly this Host header (as a browser on a
    rebound name sends it); httpx is not used since it sets Host from the URL."""
    address = httpx.URL(server.api_url)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    with socket.create_connection((address.host, address.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


def test_dns_rebinding_a_foreign_host_is_refused_on_loopback(server: RunningServer) -> None:
    port = httpx.URL(server.api_url).port
    for path in ("/api/accounts", "/api/parameters", "/", "/metrics", "/healthz"):
        assert raw_get(server, path, f"evil.example:{port}") == 421, path
        assert raw_get(server, path, "evil.example") == 421, path
    # the ways an operator reaches a loopback API still work
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert raw_get(server, "/api/accounts", host) == 200, host
    refused = server.api.get("/api/accounts", headers={"Host": "attacker.test"})
    assert refused.status_code == 421 and "api_allowed_hosts" in refused.json()["error"]


def test_api_allowed_hosts_adds_names(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--api-allowed-host", "Console.Example")
    assert raw_get(server, "/api/accounts", "console.example:443") == 200
    assert raw_get(server, "/api/accounts", "evil.example") == 421


def test_the_token_is_required_from_loopback_too_and_host_comes_first(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server = server_factory("--api-token", "t0ken")
    port = httpx.URL(server.api_url).port
    host = f"127.0.0.1:{port}"
    assert raw_get(server, "/api/accounts", host) == 401  # a local user without the token
    assert raw_get(server, "/api/accounts", host, token="t0ken") == 200
    assert raw_get(server, "/api/accounts", "evil.example", token="t0ken") == 421


def test_the_token_comes_from_a_file_or_the_environment_not_argv(
    server_factory, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("from-a-file\n")
    by_file = server_factory("--api-token-file", str(secret_file))
    by_env = server_factory(env={"REGSWITCH_API_TOKEN": "from-the-env"})
    for server, token in ((by_file, "from-a-file"), (by_env, "from-the-env")):
        assert server.api.get("/api/accounts").status_code == 401
        ok = server.api.get("/api/accounts", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline  # what `ps` shows


def test_the_cli_reads_the_token_from_a_file(
    server_factory, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    server = server_factory("--api-token", "t0ken")
    token_file = tmp_path / "token"
    token_file.write_text("t0ken\n")
    assert cli(server, "account", "list").returncode == 1
    listed = cli(server, "--token-file", str(token_file), "account", "list")
    assert listed.returncode == 0, listed.stderr
    missing = cli(server, "--token-file", str(tmp_path / "nope"), "account", "list")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("way", ["file", "env", "stdin"])
def test_account_passwords_without_argv(
    way: str, server: RunningServer, sipp: SippRunner, tmp_path: Path
) -> None:
    secret = f"s3cret-{way}"
    args = ["account", "add", f"alice@{DOMAIN}"]
    env: dict[str, str] = {}
    stdin = None
    if way == "file":
        (tmp_path / "pw").write_text(secret + "\n")
        args += ["--password-file", str(tmp_path / "pw")]
    elif way == "env":
        env["ALICE_PW"] = secret
        args += ["--password-env", "ALICE_PW"]
    else:
        args += ["--password", "-"]
        stdin = secret + "\n"
    environment = {**os.environ, "NO_COLOR": "1", **env}
    added = subprocess.run(
        [sys.executable, "-m", "regswitch", "--api", server.api_url, *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=environment,
    )
    assert added.returncode == 0, added.stderr
    # the password took: a device that knows it registers (401 -> 200)
    assert sipp_register(sipp, server, "alice", secret).statuses[-1] == 200


def test_two_sources_for_one_secret_is_a_one_line_error(server: RunningServer) -> None:
    both = cli(server, "account", "add", f"bob@{DOMAIN}", "--password", "x",
               "--password-env", "HOME")
    assert both.returncode == 2
    assert both.stderr.strip().splitlines() == [
        "error: give password one way only (value, file or environment variable)"
    ]


def test_serve_help_says_how_to_keep_secrets_out_of_ps() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "regswitch", "serve", "--help"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    ).stdout
    assert "--api-token-file" in out and "REGSWITCH_API_TOKEN" in out and "ps" in out


def test_the_api_over_tls(server_factory, tls_cert: TlsFiles) -> None:  # type: ignore[no-untyped-def]
    server = server_factory("--api-tls-cert", str(tls_cert.cert), "--api-tls-key",
                            str(tls_cert.key))
    assert server.api_url.startswith("https://")
    with httpx.Client(verify=tls_cert.client_context()) as client:
        assert client.get(f"{server.api_url}/api/accounts").status_code == 200
    plain = server.api_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/api/accounts", timeout=5)


def test_a_bad_api_certificate_is_a_one_line_start_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "regswitch", "serve", "--api", "127.0.0.1:0",
         "--sip", "udp:127.0.0.1:0", "--db", f"sqlite:///{tmp_path}/x.db",
         "--api-tls-cert", str(tmp_path / "missing.crt"),
         "--api-tls-key", str(tmp_path / "missing.key")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "api_tls_cert" in result.stderr


def test_the_console_has_a_content_security_policy(server: RunningServer) -> None:
    for path in ("/", "/console/js/main.js", "/console/app.css"):
        response = server.api.get(path)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
