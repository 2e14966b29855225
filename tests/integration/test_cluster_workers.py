"""`serve --workers N`: worker processes of one host sharing the SIP and API
ports (SO_REUSEPORT), each a node of the cluster; the parent restarts a dead one."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from cluster_helpers import DOMAIN, PASSWORD

from support import wait_until
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def workers(
    server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str
) -> RunningServer:
    return server_factory(
        "--workers", "2", "--cluster", redis_url, "--node-id", "w", "--domain", DOMAIN,
        db=pg_url, host="127.0.0.21",
    )  # fmt: skip


def nodes(server: RunningServer) -> dict[str, dict[str, Any]]:
    status = server.api.get("/api/cluster").json()
    return {n["node"]: n for n in status["nodes"]}


def phones_on_both_workers(server: RunningServer, user: str) -> list[UA]:
    """Phones registering `user` from new ports until both workers hold one
    (the kernel spreads sources over the workers by a hash of the addresses)."""
    phones: list[UA] = []
    seen: set[str] = set()
    while seen != {"w/1", "w/2"}:
        assert len(phones) < 64, seen
        phone = UA("udp", server.udp)
        phones.append(phone)
        assert phone.register(user, DOMAIN, PASSWORD).status == 200
        bindings = server.api.get("/api/registrations", params={"account": f"{user}@{DOMAIN}"})
        seen = {b["node"] for b in bindings.json()}
    return phones


def test_two_workers_share_the_ports_and_restart(workers: RunningServer) -> None:
    wait_until(lambda: len(nodes(workers)) == 2, 10, "both workers in the registry")
    before = nodes(workers)
    assert all(n["alive"] for n in before.values())
    # one SIP address and one API for both
    assert before["w/1"]["sip"] == before["w/2"]["sip"] == workers.ready["sip"]
    r = workers.api.post(
        "/api/accounts",
        json={"user": "kim", "domain": DOMAIN, "password": PASSWORD, "max_contacts": 64},
    )
    assert r.status_code == 201, r.text
    wait_until(
        lambda: all(
            workers.api.get(f"/api/accounts/kim@{DOMAIN}").status_code == 200 for _ in range(6)
        ),
        10, "the account on whichever worker answers",
    )  # fmt: skip
    phones = phones_on_both_workers(workers, "kim")
    try:
        # a worker killed is started again and rejoins under its node id
        victim = before["w/1"]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (lambda n: n.get("w/1", {}).get("pid") not in (None, victim)
                     and n["w/1"]["alive"])(nodes(workers)),
            30, "worker 1 back with a new pid",
        )  # fmt: skip
        assert workers.alive  # the parent lives on
        # and the phones keep working: every refresh is answered, by its worker
        for phone in phones:
            wait_until(lambda p=phone: p.register("kim", DOMAIN, PASSWORD).status == 200, 10)
    finally:
        for phone in phones:
            phone.close()
