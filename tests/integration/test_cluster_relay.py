"""Requests leave through the flow the phone opened: a call placed through
node 2 to a phone registered through node 1 reaches it through node 1 --
from node 1's address to a phone behind NAT (UDP), over the phone's own
connection (TCP) -- and the whole dialog stays on that path: answer, ACK,
BYE either way, and a kick."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cluster_helpers import Cluster

from calls.harness import DOMAIN, Api, unique, user
from support import wait_until
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

OFFER = b"v=0\r\no=a 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
ANSWER = b"v=0\r\no=b 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"


@pytest.fixture
def cluster(server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str) -> Cluster:
    return Cluster(server_factory, pg_url, redis_url)


def setup_call(
    cluster: Cluster, transport: str, ua: Callable[..., UA]
) -> tuple[RunningServer, RunningServer, Api, str, str, UA, UA]:
    n1, n2 = cluster.add(), cluster.add()
    api1, api2 = Api(n1), Api(n2)
    for node in (n1, n2):  # each knows the other's relay address (the registry)
        wait_until(
            lambda n=node: all(e.get("relay") for e in n.api.get("/api/cluster").json()["nodes"]),
            10, "the relay addresses in the registry",
        )  # fmt: skip
    alice, bob = api1.account(unique("alice")), api1.account(unique("bob"))
    wait_until(lambda: api2.http.get(f"/api/accounts/{bob}").status_code == 200, 10)
    callee = ua(transport, n1.listener(transport), user=user(alice))
    # UDP: a Contact on a private address elsewhere than the source -- behind
    # NAT, reachable only at the address it sends from, through node 1's pinhole
    contact = None if transport == "tcp" else f"<sip:{user(alice)}@192.168.1.50:5060>"
    assert callee.register(user(alice), DOMAIN, contact=contact).status == 200
    [binding] = wait_until(lambda: api2.registrations(alice), 10, "alice on node 2")
    assert binding["node"] == "n1" and binding["nat"] is (transport == "udp")
    caller = ua("udp", n2.udp, user=user(bob))
    return n1, n2, api2, alice, bob, caller, callee


def answered_call(
    n1: RunningServer, api2: Api, alice: str, bob: str, caller: UA, callee: UA
) -> tuple[Any, Any, Any, Any]:
    tx = caller.invite(
        f"sip:{user(alice)}@{DOMAIN}", body=OFFER, headers={"From": f"<sip:{bob}>;tag=bob1"}
    )
    invite = callee.expect_request("INVITE")
    # it came from node 1, the node the phone registered through
    assert callee.source_of(invite) == n1.listener(callee.transport)
    assert invite.body == OFFER
    assert len(invite.headers.values("record-route")) == 2  # node 1 stays on the path
    ok = callee.respond(invite, 200, body=ANSWER)
    answer = caller.wait_response(tx)
    assert answer.status == 200 and answer.body == ANSWER
    caller.ack(answer)
    assert callee.expect_request("ACK").call_id == invite.call_id  # through node 1 too
    api2.wait_call(bob, "answered")
    return invite, ok, answer, tx


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_call_through_the_node_holding_the_callee_flow(
    cluster: Cluster, transport: str, ua: Callable[..., UA]
) -> None:
    n1, _n2, api2, alice, bob, caller, callee = setup_call(cluster, transport, ua)
    invite, ok, _answer, _ = answered_call(n1, api2, alice, bob, caller, callee)
    # the callee hangs up: its BYE follows the route set, through node 1, to node 2
    dialog = callee.dialog_from_request(invite, ok)
    assert callee.request("BYE", dialog=dialog).status == 200
    bye = caller.expect_request("BYE")
    caller.respond(bye, 200)
    [cdr] = api2.wait_cdrs(bob)
    assert (cdr["end_reason"], cdr["end_direction"]) == ("normal", "callee")
    # INVITE, its 200, the ACK, the callee's BYE and its 200: all through node 1
    assert cluster.metric(n1, "regswitch_storage", stat="relayed") == 5


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kick_of_a_relayed_call_reaches_the_phone_through_its_flow(
    cluster: Cluster, transport: str, ua: Callable[..., UA]
) -> None:
    n1, n2, api2, alice, bob, caller, callee = setup_call(cluster, transport, ua)
    answered_call(n1, api2, alice, bob, caller, callee)
    # a new device of alice through node 2: the call (on node 2) is kicked, and
    # its BYE to the old phone leaves through node 1, over the old phone's flow
    # (an address-only account: the switch checks the new device's return path first)
    other = ua("udp", n2.udp, user=user(alice), auto_respond={"OPTIONS": 200})
    assert other.register(user(alice), DOMAIN).status == 200
    bye = callee.expect_request("BYE")
    assert callee.source_of(bye) == n1.listener(transport)
    callee.respond(bye, 200)
    caller_bye = caller.expect_request("BYE")
    caller.respond(caller_bye, 200)
    [cdr] = api2.wait_cdrs(bob)
    assert cdr["end_reason"] == "registration-replaced"


def test_a_relay_route_from_elsewhere_is_refused(cluster: Cluster, ua: Callable[..., UA]) -> None:
    """Node 1 relays only for cluster nodes and for the phone of the binding."""
    n1, _n2, api2, alice, _bob, _caller, callee = setup_call(cluster, "udp", ua)
    [binding] = api2.registrations(alice)
    relay = n1.api.get("/api/cluster").json()
    entry = next(n for n in relay["nodes"] if n["node"] == "n1")
    host, port = entry["relay"]
    stranger = ua("udp", (host, port))
    response = stranger.request(
        "OPTIONS", f"sip:{user(alice)}@192.168.1.50:5060",
        {"Route": f"<sip:{host}:{port};lr;rsr-b={binding['id']}>"},
    )  # fmt: skip
    assert response.status == 403
    callee.assert_no_request("OPTIONS", within=0.5)


def test_the_unreachable_probe_goes_through_the_node_holding_the_flow(
    cluster: Cluster, ua: Callable[..., UA]
) -> None:
    """Replace Off with REGISTER_REPLACE_IF_UNREACHABLE: node 2 probes a device
    registered (behind NAT) through node 1 -- through node 1. It answers: the
    newcomer is refused; it is gone: the newcomer takes over."""
    n1, n2 = cluster.add(), cluster.add()
    r = n1.api.put("/api/parameters/SS_ENDPOINT_REGISTER_REPLACE", json={"value": "Off"})
    assert r.status_code == 200
    r = n1.api.put("/api/parameters/REGISTER_REPLACE_IF_UNREACHABLE", json={"value": "On"})
    assert r.status_code == 200
    api1, api2 = Api(n1), Api(n2)
    alice = api1.account(unique("alice"))
    for node in (n1, n2):
        wait_until(
            lambda n=node: all(e.get("relay") for e in n.api.get("/api/cluster").json()["nodes"])
            and n.api.get("/api/parameters/REGISTER_REPLACE_IF_UNREACHABLE").json()["value"]
            == "On",
            10, "relays and parameters everywhere",
        )  # fmt: skip
    old = ua("udp", n1.udp, user=user(alice), auto_respond={"OPTIONS": 200})
    contact = f"<sip:{user(alice)}@192.168.1.50:5060>"  # behind NAT
    assert old.register(user(alice), DOMAIN, contact=contact).status == 200
    wait_until(lambda: api2.registrations(alice), 10, "alice on node 2")
    new = ua("udp", n2.udp, user=user(alice), auto_respond={"OPTIONS": 200})
    assert new.register(user(alice), DOMAIN).status == 403  # the old one answered
    probes = [t for t in old.trace if t[1] == "in" and t[3].startswith(b"OPTIONS")]
    assert probes and probes[-1][2] == n1.udp  # the probe came through node 1
    old.close()  # the old device is gone
    assert new.register(user(alice), DOMAIN, call_id="again", timeout=10).status == 200
