"""Every start-up failure of `regswitch serve`: one line on stderr naming the
address or value, exit code 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tls import TlsFiles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "regswitch", "serve", "--log-level", "warning"]
    if not any(a == "--db" for a in args):
        argv += ["--db", f"sqlite:///{tmp_path}/rs.db"]
    if not any(a == "--api" for a in args):
        argv += ["--api", "127.0.0.1:0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSWITCH_")}
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=60, env={**env, "NO_COLOR": "1"}
    )


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    text = result.stderr.strip()
    assert text.count("\n") == 0 and text.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "Value error," not in text
    return text


@pytest.fixture
def taken_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_udp_port_in_use(tmp_path: Path, taken_udp: int) -> None:
    text = one_line_exit_2(serve(tmp_path, "--sip", f"udp:127.0.0.1:{taken_udp}"))
    assert text == f"error: cannot listen on udp:127.0.0.1:{taken_udp}: address already in use"


def test_tcp_port_in_use(tmp_path: Path, taken_tcp: int) -> None:
    text = one_line_exit_2(serve(tmp_path, "--sip", f"tcp:127.0.0.1:{taken_tcp}"))
    assert text == f"error: cannot listen on tcp:127.0.0.1:{taken_tcp}: address already in use"


def test_tls_port_in_use(tmp_path: Path, taken_tcp: int, tls_cert: TlsFiles) -> None:
    text = one_line_exit_2(
        serve(
            tmp_path,
            "--sip",
            "udp:127.0.0.1:0",
            "--sip",
            f"tls:127.0.0.1:{taken_tcp}",
            "--tls-cert",
            str(tls_cert.cert),
            "--tls-key",
            str(tls_cert.key),
        )
    )
    assert f"tls:127.0.0.1:{taken_tcp}: address already in use" in text


def test_api_port_in_use(tmp_path: Path, taken_tcp: int) -> None:
    text = one_line_exit_2(
        serve(tmp_path, "--sip", "udp:127.0.0.1:0", "--api", f"127.0.0.1:{taken_tcp}")
    )
    assert text == f"error: cannot listen on API 127.0.0.1:{taken_tcp}: address already in use"


@pytest.mark.parametrize(
    ("sip", "says"),
    [
        ("udp:127.0.0.1:99999", "'udp:127.0.0.1:99999'"),
        ("sctp:127.0.0.1:5060", "unknown transport 'sctp'"),
        ("127.0.0.1", "'127.0.0.1'"),
    ],
)
def test_bad_sip_value(tmp_path: Path, sip: str, says: str) -> None:
    text = one_line_exit_2(serve(tmp_path, "--sip", sip))
    assert text.startswith("error: sip: bad listen address") and says in text


def test_validation_messages_have_no_pydantic_prefix(tmp_path: Path) -> None:
    text = one_line_exit_2(serve(tmp_path, "--sip", "udp:127.0.0.1:0", "--log-format", "xml"))
    assert text == "error: log_format: log_format must be text or json"


def test_missing_db_directory_is_refused_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    text = one_line_exit_2(serve(tmp_path, "--sip", "udp:127.0.0.1:0", "--db", f"sqlite:///{db}"))
    assert f"directory {db.parent} does not exist" in text
    assert not db.parent.parent.exists()


def test_bad_tls_files(tmp_path: Path) -> None:
    text = one_line_exit_2(
        serve(
            tmp_path,
            "--sip",
            "tls:127.0.0.1:0",
            "--tls-cert",
            str(tmp_path / "none.pem"),
            "--tls-key",
            str(tmp_path / "none.key"),
        )
    )
    assert "cannot load the TLS certificate" in text and "no such file" in text


def test_ready_hint_is_a_command_that_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from regswitch.server import command_hint

    script = tmp_path / "venv" / "bin" / "regswitch"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(script), "serve"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert command_hint() == str(script)  # not on PATH: the path it was started by
    monkeypatch.setenv("PATH", str(script.parent))
    assert command_hint() == "regswitch"  # PATH finds this very one
    monkeypatch.setattr(sys, "argv", ["/somewhere/regswitch/__main__.py", "serve"])
    assert command_hint() == f"{sys.executable} -m regswitch"


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    text = one_line_exit_2(serve(tmp_path, "--config", str(missing)))
    assert text == f"error: cannot read config file {missing}: No such file or directory"
    broken = tmp_path / "broken.toml"
    broken.write_text("sip = [\n")
    text = one_line_exit_2(serve(tmp_path, "--config", str(broken)))
    assert text.startswith(f"error: config file {broken}: ")
