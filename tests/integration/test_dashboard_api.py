"""/api/dashboard and the `stats` frames of the event stream against a real server."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from support.register_helpers import create_account
from support.server import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_dashboard_and_stats_frames(server: RunningServer) -> None:
    create_account(server, "alice", password="pw")
    data = server.api.get("/api/dashboard").json()
    assert data["interval"] == 5 and data["span"] == 3600
    assert data["top_kicked"] == []
    assert isinstance(data["samples"], list)
    refused = server.api.get("/api/dashboard", params={"top": 0})
    assert refused.status_code == 422 and "error" in refused.json()

    frames: list[tuple[str, dict[str, object]]] = []
    deadline = time.monotonic() + 20
    with httpx.stream("GET", f"{server.api_url}/api/events/stream", params={"stats": "true"},
                      timeout=20) as response:  # fmt: skip
        name = "message"
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                frames.append((name, json.loads(line[6:])))
                name = "message"
            if any(n == "stats" for n, _ in frames) or time.monotonic() > deadline:
                break
    stats = [d for n, d in frames if n == "stats"]
    assert stats, frames
    assert set(stats[0]) == {"time", "bindings", "calls", "registers_per_s", "kicks",
                             "rejections", "flood_blocks"}  # fmt: skip
