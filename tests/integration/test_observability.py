"""/metrics after known traffic, the live event stream (SSE) with Last-Event-ID
resume, and a stalled SSE client that must not slow REGISTER handling."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import require_tool, wait_until
from support.server import RunningServer
from support.sipp import SippRunner

DOMAIN = "regswitch.local"
REGISTER_NOAUTH = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register_noauth">
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:[field0]@[remote_ip]>;tag=[call_number]
To: <sip:[field0]@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Expires: 3600
Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="5000"/>
</scenario>
"""


def metrics(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = server.api.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sse_events(
    url: str, headers: dict[str, str] | None = None
) -> tuple[queue.Queue[dict[str, str]], threading.Event]:
    """Read an SSE stream on a thread; each event is {"id", "event", "data"}."""
    frames: queue.Queue[dict[str, str]] = queue.Queue()
    stop = threading.Event()
    connected = threading.Event()

    def reader() -> None:
        try:
            with httpx.stream(
                "GET", url, headers=headers or {}, timeout=httpx.Timeout(30, read=30)
            ) as response:
                frame: dict[str, str] = {}
                for line in response.iter_lines():
                    connected.set()  # the server sends "retry:" first, once subscribed
                    if stop.is_set():
                        return
                    if not line:
                        if "data" in frame:
                            frames.put(frame)
                        frame = {}
                        continue
                    if line.startswith(":"):
                        continue
                    key, _, value = line.partition(": ")
                    frame[key] = value
        except httpx.HTTPError:
            return  # the server went away at the end of the test

    threading.Thread(target=reader, daemon=True).start()
    assert connected.wait(5), "the event stream did not start"
    return frames, stop


def next_event(
    frames: queue.Queue[dict[str, str]], type_: str, timeout: float = 5.0
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {type_} event within {timeout} s")
        frame = frames.get(timeout=remaining)
        if frame.get("event") == type_:
            return frame


@pytest.fixture
def alice(server: RunningServer) -> Iterator[str]:
    server.api.post("/api/accounts", json={"user": "alice", "domain": DOMAIN, "password": "pw"})
    yield f"alice@{DOMAIN}"


def test_metrics_count_known_traffic(server: RunningServer, ua, alice: str) -> None:  # type: ignore[no-untyped-def]
    phone = ua(server=server.udp)
    assert phone.register("alice", DOMAIN, "pw").status == 200
    assert phone.register("alice", DOMAIN, "wrong", call_id="other-device").status == 403
    assert phone.request("OPTIONS").status == 200
    m = metrics(server)
    assert m[("regswitch_bindings", ())] == 1
    assert m[("regswitch_register_total", (("result", "ok"),))] == 1
    assert m[("regswitch_register_total", (("result", "auth-fail"),))] == 1
    assert m[("regswitch_register_total", (("result", "challenge"),))] == 2
    assert m[("regswitch_sip_requests_total", (("method", "REGISTER"),))] == 4
    assert m[("regswitch_sip_requests_total", (("method", "OPTIONS"),))] >= 1
    assert m[("regswitch_sip_responses_total", (("status", "403"),))] == 1
    assert m[("regswitch_events_total", (("type", "auth-failed"),))] == 1
    assert m[("regswitch_calls_active", ())] == 0

    host, port = phone.local
    phone.send_raw(
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKbad1\r\n"
        f"From: <sip:alice@{DOMAIN}>;tag=1\r\nTo: <sip:alice@{DOMAIN}>\r\nCall-ID: bad1\r\n"
        "CSeq: 1 REGISTER\r\nContent-Length: lots\r\n\r\n".encode()
    )
    assert phone.recv_response().status == 400
    assert metrics(server)[("regswitch_parse_errors_total", (("kind", "request"),))] == 1


def test_metrics_text_is_valid_exposition(server: RunningServer, tmp_path: Path) -> None:
    text = server.api.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} >= {
        "regswitch_bindings",
        "regswitch_register",
        "regswitch_kicks",
    }
    promtool = require_tool("promtool", "Debian package prometheus; `make system`")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_event_stream_live_and_resume_with_last_event_id(
    server: RunningServer, ua, alice: str
) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.api_url}/api/events/stream?account={alice}"
    frames, stop = sse_events(url)
    phone = ua(server=server.udp)
    assert phone.register("alice", DOMAIN, "pw").status == 200
    registered = next_event(frames, "registered")
    first_id = int(registered["id"])
    assert json.loads(registered["data"])["account"] == alice
    stop.set()

    # while nobody listens: a refresh and an unregister
    assert phone.register("alice", DOMAIN, "pw").status == 200
    assert phone.register("alice", DOMAIN, "pw", expires=0).status == 200

    resumed, stop2 = sse_events(url, {"Last-Event-ID": str(first_id)})
    refreshed = next_event(resumed, "refreshed")
    unregistered = next_event(resumed, "unregistered")
    assert first_id < int(refreshed["id"]) < int(unregistered["id"])
    stop2.set()


def test_event_stream_filters_by_type(server: RunningServer, ua, alice: str) -> None:  # type: ignore[no-untyped-def]
    frames, stop = sse_events(f"{server.api_url}/api/events/stream?type=auth-failed")
    phone = ua(server=server.udp)
    assert phone.register("alice", DOMAIN, "pw").status == 200
    assert phone.register("alice", DOMAIN, "bad", call_id="x").status == 403
    frame = frames.get(timeout=5)
    assert frame["event"] == "auth-failed"
    stop.set()


def test_stalled_stream_client_does_not_slow_registrations(
    server: RunningServer, sipp: SippRunner, tmp_path: Path
) -> None:
    # The API's send buffer (256 KiB, doubled by Linux) and the subscriber's
    # queue (1000 events) fill well within this many events; then it is dropped.
    users = 4000
    server.api.post(
        "/api/accounts/import",
        json={
            "accounts": [
                {"user": f"user{i:05d}", "domain": DOMAIN, "allowed_networks": ["127.0.0.0/8"]}
                for i in range(1, users + 1)
            ]
        },
    )
    # a client that subscribes and then never reads
    host, port = server.api_url.split("//")[1].rsplit(":", 1)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    stalled.connect((host, int(port)))
    stalled.sendall(f"GET /api/events/stream HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    wait_until(
        lambda: metrics(server)[("regswitch_event_stream_clients", ())] >= 1,
        5,
        "the stalled client to subscribe",
    )

    csv = tmp_path / "users.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"user{i:05d};\n" for i in range(1, users + 1)))
    scenario = tmp_path / "register_noauth.xml"
    scenario.write_text(REGISTER_NOAUTH)
    result = sipp.run(scenario, server.target("udp"), calls=users, rate=2000, inf=csv, timeout=60)
    assert result.successful == users, result
    assert result.failed == 0
    m = metrics(server)
    assert m[("regswitch_bindings", ())] == users
    assert m[("regswitch_event_stream_clients_dropped_total", ())] >= 1
    assert m[("regswitch_event_stream_clients", ())] == 0
    stalled.close()
