"""CRLF keepalives from phones (RFC 5626 §3.5.1; linphone and pjsip send them
over UDP too) against a real server: not parse errors, counted on their own
metric, and a double-CRLF ping on a stream is answered with one CRLF."""

from __future__ import annotations

import socket
import time

import pytest

from integration.test_observability import metrics
from support.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARSE_ERRORS = ("regswitch_parse_errors_total", (("kind", "request"),))


def keepalives(server: RunningServer, transport: str) -> float:
    return metrics(server).get(
        ("regswitch_keepalives_received_total", (("transport", transport),)), 0.0
    )


def wait_for(check, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_crlf_keepalives_are_counted_not_parse_errors(server: RunningServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for ping in (b"\r\n\r\n", b"\r\n", b"\n\n\n\n") * 5:
            udp.sendto(ping, server.udp)
        assert wait_for(lambda: keepalives(server, "udp") == 15)
        udp.settimeout(0.3)
        with pytest.raises(TimeoutError):
            udp.recv(100)  # nothing to answer over UDP

    with socket.create_connection(server.tcp, timeout=5) as tcp:
        for _ in range(3):
            tcp.sendall(b"\r\n\r\n")
            assert tcp.recv(10) == b"\r\n"  # the pong
        assert wait_for(lambda: keepalives(server, "stream") == 3)

    assert metrics(server).get(PARSE_ERRORS, 0.0) == 0
