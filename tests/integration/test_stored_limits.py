"""What a stranger's packets can make the server store, against a real server:
a REGISTER with a 64 kB To-user stores a capped row; a stream of bad
credentials from one source writes a bounded number of event rows and is
counted in /metrics."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable

import pytest

from support import wait_until
from support.register_helpers import DOMAIN, create_account, events
from support.server import RunningServer
from support.ua import UA

pytestmark = pytest.mark.timeout(90)

CAP = 256  # storage/caps.py MAX_NAME


def _longest_stored_account(server: RunningServer) -> int:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT max(length(account)) FROM events").fetchone()
    return int(row[0] or 0)


def test_a_64_kb_to_user_is_stored_capped(server: RunningServer, ua: Callable[..., UA]) -> None:
    stranger = ua("udp", server.udp, local_host="127.0.0.66")
    # the user name stands in From, To and the credentials' username: 3 x 20 kB
    # is about all a datagram can carry. Unknown accounts are challenged like
    # known ones (no enumeration), so the stranger answers the 401 with a guess.
    user = "x" * 20000
    response = stranger.register(user, DOMAIN, password="guess", contact="<sip:x@127.0.0.66>")
    assert response.status == 403  # credentials for an account that does not exist
    (failed,) = wait_until(lambda: events(server, "auth-failed"), 10, "the auth-failed event")
    assert len(failed["account"]) <= CAP and failed["account"].startswith("xxxx")
    server.api.get("/api/events", params={"limit": 1})
    assert 0 < wait_until(lambda: _longest_stored_account(server), 10, "the row") <= CAP


def test_a_64_kb_user_agent_of_a_subscriber_is_stored_capped(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    phone = ua("udp", server.udp)
    response = phone.register(
        "alice", DOMAIN, password="pw", extra_headers={"User-Agent": "U" * 60000}
    )
    assert response.status == 200
    (registered,) = wait_until(lambda: events(server, "registered"), 10, "the event")
    assert len(registered["details"]["user_agent"]) <= 512


def test_bad_credentials_from_one_source_write_a_bounded_number_of_rows(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    create_account(server, "alice", "pw")
    stranger = ua("udp", server.udp, local_host="127.0.0.66")
    for _ in range(30):
        assert stranger.register("alice", DOMAIN, password="wrong", timeout=5).status == 403
    other = ua("udp", server.udp, local_host="127.0.0.67")
    assert other.register("alice", DOMAIN, password="wrong", timeout=5).status == 403

    written = events(server, "auth-failed")
    assert [e["source"].split(":")[1] for e in written].count("127.0.0.66") == 10
    assert [e["source"].split(":")[1] for e in written].count("127.0.0.67") == 1
    metrics = server.api.get("/metrics").text
    assert 'regswitch_events_suppressed_total{type="auth-failed"} 20.0' in metrics
    # still refused every time, and the right password still works
    assert ua("udp", server.udp).register("alice", DOMAIN, password="pw").status == 200


def _transport_stat(server: RunningServer, stat: str) -> float:
    for line in server.api.get("/metrics").text.splitlines():
        if line.startswith(f'regswitch_transport{{stat="{stat}"}} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no transport stat {stat}")


def test_many_slow_tcp_clients_stay_within_the_byte_bound(
    server_factory: Callable[..., RunningServer], ua: Callable[..., UA]
) -> None:
    bound = 1024 * 1024
    server = server_factory(env={"REGSWITCH_MAX_STREAM_BUFFERED": str(bound)})
    partial = b"REGISTER sip:x SIP/2.0\r\nX-Pad: " + b"p" * 60_000  # never ends
    clients = []
    try:
        for _ in range(40):  # 2.4 MB of half-sent messages, 30 s message timeout
            sock = socket.create_connection(server.tcp, timeout=5)
            sock.sendall(partial)
            clients.append(sock)

        def still_open() -> list[socket.socket]:
            alive = []
            for sock in clients:
                sock.settimeout(0.01)
                try:
                    if sock.recv(1) == b"":
                        continue
                except TimeoutError:
                    alive.append(sock)
                except OSError:
                    continue
            return alive

        # closed by the bound, not by the 30 s message timeout
        alive = wait_until(
            lambda: (a := still_open()) and len(a) * len(partial) <= bound and a, 10,
            "the server to close connections beyond the bound",
        )
        assert len(alive) >= 5  # the bound sheds down to 3/4, not everything
        assert _transport_stat(server, "stream_buffered_peak") <= bound + 256 * 1024
        assert _transport_stat(server, "pressure_closed") >= 40 - len(alive)
        assert _transport_stat(server, "message_timeouts") == 0
        # a subscriber on TCP is still served
        create_account(server, "alice", "pw")
        phone = ua("tcp", server.tcp)
        assert phone.register("alice", DOMAIN, password="pw").status == 200
    finally:
        for sock in clients:
            sock.close()
