"""`serve --workers N`: worker processes of one host sharing the SIP and API
ports (SO_REUSEPORT), each a node of the cluster; the parent restarts a dead one."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import httpx
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
    """The registry, as whichever worker answers says it ({} while the worker
    the API connection went to is being restarted: the next call reconnects)."""
    try:
        status = server.api.get("/api/cluster").json()
    except httpx.HTTPError:
        server.api.close()
        server._api = None
        return {}
    return {n["node"]: n for n in status["nodes"]}


def relays_known(server: RunningServer) -> None:
    """Every worker knows every worker's relay address: once the registry lists
    them all, each worker's next heartbeat (which reads the registry back) is proof."""
    listed = wait_until(
        lambda: (lambda n: n if len(n) == 2 and all(e.get("relay") for e in n.values()) else None)(
            nodes(server)
        ),
        10, "both workers with their relay addresses",
    )  # fmt: skip
    since = max(float(e["heartbeat"]) for e in listed.values())
    wait_until(
        lambda: (lambda n: len(n) == 2 and all(float(e["heartbeat"]) > since for e in n.values()))(
            nodes(server)
        ),
        10, "a heartbeat of each worker since",
    )  # fmt: skip


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


def phone_on(server: RunningServer, worker: str, user: str, **kw: Any) -> UA:
    """A phone (address-only account) whose packets the kernel gives to `worker`
    (it answers OPTIONS: unregistering an address-only account checks the return path)."""
    for _ in range(64):
        phone = UA("udp", server.udp, user=user, auto_respond={"OPTIONS": 200}, **kw)
        assert phone.register(user, DOMAIN).status == 200
        # the worker answering the API may hear of the binding a moment later
        [binding] = wait_until(
            lambda p=phone: [
                b for b in server.api.get(
                    "/api/registrations", params={"account": f"{user}@{DOMAIN}"}
                ).json() if b["source_port"] == p.local[1]
            ],
            10, "the new binding",
        )  # fmt: skip
        if binding["node"] == worker:
            return phone
        assert phone.register(user, DOMAIN, expires=0).status == 200
        phone.close()
    raise AssertionError(f"no source landed on {worker}")


def test_calls_and_kicks_between_phones_on_different_workers(workers: RunningServer) -> None:
    relays_known(workers)
    for name in ("lee", "mo"):
        body = {"user": name, "domain": DOMAIN, "allowed_networks": ["127.0.0.0/8"]}
        assert workers.api.post("/api/accounts", json=body).status_code == 201
    wait_until(lambda: len({n["node"] for n in nodes(workers).values()}) == 2, 10)
    callee = phone_on(workers, "w/1", "lee")
    caller = phone_on(workers, "w/2", "mo")
    new_device: UA | None = None
    try:
        tx = caller.invite(
            f"sip:lee@{DOMAIN}", body=b"v=0\r\n", headers={"From": f"<sip:mo@{DOMAIN}>;tag=m1"}
        )
        invite = callee.expect_request("INVITE")
        assert callee.source_of(invite) == workers.udp  # the one shared address
        callee.respond(invite, 200, body=b"v=0\r\n")
        answer = caller.wait_response(tx)
        assert answer.status == 200
        caller.ack(answer)
        callee.expect_request("ACK")
        # lee's new device, on whichever worker: the call (held by worker 2) is kicked
        new_device = UA("udp", workers.udp, user="lee", auto_respond={"OPTIONS": 200})
        assert new_device.register("lee", DOMAIN).status == 200
        bye = callee.expect_request("BYE")
        callee.respond(bye, 200)
        caller.respond(caller.expect_request("BYE"), 200)
        cdrs = wait_until(
            lambda: workers.api.get("/api/cdrs", params={"account": f"mo@{DOMAIN}"}).json(),
            10, "the CDR",
        )  # fmt: skip
        assert cdrs[0]["end_reason"] == "registration-replaced"
    finally:
        for phone in (callee, caller, new_device):
            if phone is not None:
                phone.close()
