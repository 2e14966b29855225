"""A node killed (-9) with a call up: a survivor closes the call's CDR with
`node-failure` and records `node-down`, once; the dead node's phones work
again once they re-register through another node; a node restarted before
anyone noticed handles its own earlier life."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cluster_helpers import Cluster

from calls.harness import DOMAIN, Api, unique, user
from support import wait_until
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = {"REGSWITCH_CLUSTER_NODE_TIMEOUT": "2"}


@pytest.fixture
def cluster(server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str) -> Cluster:
    return Cluster(server_factory, pg_url, redis_url)


def call_up(caller: UA, callee: UA, bob: str, alice: str) -> Any:
    tx = caller.invite(
        f"sip:{user(alice)}@{DOMAIN}", body=b"v=0\r\n", headers={"From": f"<sip:{bob}>;tag=b1"}
    )
    invite = callee.expect_request("INVITE")
    callee.respond(invite, 200, body=b"v=0\r\n")
    answer = caller.wait_response(tx)
    assert answer.status == 200
    caller.ack(answer)
    callee.expect_request("ACK")
    return answer


def test_a_killed_node_calls_are_closed_by_a_survivor(
    cluster: Cluster, ua: Callable[..., UA]
) -> None:
    n1, n2 = cluster.add(env=FAST), cluster.add(env=FAST)
    api1, api2 = Api(n1), Api(n2)
    alice, bob = api1.account(unique("alice")), api1.account(unique("bob"))
    for node in (n1, n2):
        wait_until(
            lambda n=node: all(e.get("relay") for e in n.api.get("/api/cluster").json()["nodes"])
            and n.api.get(f"/api/accounts/{bob}").status_code == 200,
            10, "relays and accounts everywhere",
        )  # fmt: skip
    callee = ua("udp", n2.udp, user=user(alice))
    assert callee.register(user(alice), DOMAIN).status == 200
    caller = ua("udp", n1.udp, user=user(bob))
    assert caller.register(user(bob), DOMAIN).status == 200
    call_up(caller, callee, bob, alice)
    [call] = api1.calls()
    wait_until(
        lambda: {n["node"]: n["calls"] for n in api2.get("/api/cluster")["nodes"]}.get("n1") == 1,
        10, "the call in the registry",
    )  # fmt: skip

    n1.kill()  # SIGKILL: no goodbye, no BYE, no CDR from n1

    [cdr] = api2.wait_cdrs(bob, timeout=15)
    assert (cdr["id"], cdr["end_reason"], cdr["end_direction"]) == (
        call["id"], "node-failure", "system",
    )  # fmt: skip
    assert cdr["answer"] is not None and cdr["end"] >= cdr["answer"]
    # recorded once the dead node's call list is gone from Redis, after its CDRs
    [down] = wait_until(lambda: api2.get("/api/events", type="node-down"), 10, "node-down")
    assert down["details"]["node"] == "n1" and down["details"]["calls_closed"] == [call["id"]]
    status = {n["node"]: n for n in api2.get("/api/cluster")["nodes"]}
    assert status["n1"]["alive"] is False and status["n2"]["alive"] is True
    # bob's binding stays (n1's); through n2 he registers again and calls again
    caller.server = n2.udp
    assert caller.register(user(bob), DOMAIN).status == 200
    wait_until(lambda: [b["node"] for b in api2.registrations(bob)] == ["n2"], 10, "bob on n2")
    call_up(caller, callee, bob, alice)
    api2.wait_call(bob, "answered")


def test_a_node_restarted_quickly_closes_its_own_earlier_calls(
    cluster: Cluster, ua: Callable[..., UA]
) -> None:
    """Killed and back before the others' timeout (10 s): the node itself
    closes the calls of its earlier life, once."""
    n1, n2 = cluster.add(), cluster.add()
    api1, api2 = Api(n1), Api(n2)
    alice, bob = api1.account(unique("alice")), api1.account(unique("bob"))
    wait_until(lambda: api2.http.get(f"/api/accounts/{bob}").status_code == 200, 10)
    callee = ua("udp", n1.udp, user=user(alice))
    assert callee.register(user(alice), DOMAIN).status == 200
    caller = ua("udp", n1.udp, user=user(bob))
    call_up(caller, callee, bob, alice)
    [call] = api1.calls()
    wait_until(
        lambda: {n["node"]: n["calls"] for n in api2.get("/api/cluster")["nodes"]}.get("n1") == 1,
        10, "the call in the registry",
    )  # fmt: skip
    n1.restart(clean=False)  # SIGKILL, then the same node id again at once
    [cdr] = api2.wait_cdrs(bob, timeout=15)
    assert (cdr["id"], cdr["end_reason"]) == (call["id"], "node-failure")
    # recorded once the dead node's call list is gone from Redis, after its CDRs
    [down] = wait_until(lambda: api2.get("/api/events", type="node-down"), 10, "node-down")
    assert down["details"]["by"] == "n1"
