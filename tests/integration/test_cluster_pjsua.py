"""Real PJSIP (pjsua2) phones on TCP through different cluster nodes: a call
between them (the B-leg reaches the callee over the connection it opened to
its own node), a kick decided on the caller's node, and the kicked phone
registering again through the other node and taking a call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cluster_helpers import DOMAIN, PASSWORD, Cluster

from support import wait_until
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.pjsua, pytest.mark.timeout(120)]


@pytest.fixture
def cluster(server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str) -> Cluster:
    return Cluster(server_factory, pg_url, redis_url)


def on_tcp(phone: Any, node: RunningServer, user: str, acc: str = "default") -> None:
    host, port = node.tcp
    phone.register(
        f"sip:{host}:{port};transport=tcp", user, DOMAIN, PASSWORD, transport="tcp",
        expires=300, acc=acc, proxy=f"sip:{host}:{port};transport=tcp;lr",
    )  # fmt: skip
    assert phone.wait_reg(timeout=10, acc=acc)["code"] == 200


def test_pjsua_phones_on_tcp_through_two_nodes(
    cluster: Cluster, pjsua: Callable[..., Any], ua: Callable[..., UA]
) -> None:
    n1, n2 = cluster.add(), cluster.add()
    alice_aor, bob_aor = cluster.account("alice"), cluster.account("bob")
    alice, bob = pjsua("alice"), pjsua("bob")
    on_tcp(alice, n1, "alice")
    on_tcp(bob, n2, "bob")
    for aor, node in ((alice_aor, "n1"), (bob_aor, "n2")):
        wait_until(
            lambda a=aor, n=node: [b["node"] for b in cluster.registrations(n1, a)] == [n]
            and [b["node"] for b in cluster.registrations(n2, a)] == [n],
            10, f"{aor} on both nodes",
        )  # fmt: skip

    # alice calls bob through node 1; node 1 reaches bob through node 2, over bob's connection
    a_call = alice.call(f"sip:bob@{DOMAIN}")
    incoming = bob.wait_event(lambda e: e["event"] == "incoming_call", timeout=10)
    b_call = int(incoming["call"])
    bob.answer(b_call, 200)
    alice.wait_call_state("CONFIRMED", call=a_call)
    bob.wait_call_state("CONFIRMED", call=b_call)
    # through node 2 (bob listens on TCP too: a direct connection would also have worked)
    assert cluster.metric(n2, "regswitch_storage", stat="relayed") >= 3  # INVITE, 200, ACK

    # a new device takes bob's account through node 1: the call (on node 1) is kicked,
    # and its BYE reaches bob through node 2
    newcomer = ua("udp", n1.udp, user="bob")
    assert newcomer.register("bob", DOMAIN, password=PASSWORD).status == 200
    why = 'SIP;cause=480;text="Registration replaced"'
    for phone, call in ((bob, b_call), (alice, a_call)):
        ended = phone.wait_call_state("DISCONNECTED", call=call)
        assert (ended["code"], ended["sip_reason"]) == (200, why), ended
    cdrs = wait_until(  # written behind by node 1, read through node 2
        lambda: n2.api.get("/api/cdrs", params={"account": alice_aor}).json(), 10, "the CDR"
    )
    assert [c["end_reason"] for c in cdrs] == ["registration-replaced"]

    # the newcomer leaves; bob registers again, through node 1 this time, and takes a call
    assert newcomer.register("bob", DOMAIN, password=PASSWORD, expires=0).status == 200
    on_tcp(bob, n1, "bob", acc="again")
    wait_until(
        lambda: [b["node"] for b in cluster.registrations(n2, bob_aor)] == ["n1"],
        10, "bob's new binding everywhere",
    )  # fmt: skip
    a_call = alice.call(f"sip:bob@{DOMAIN}")
    incoming = bob.wait_event(lambda e: e["event"] == "incoming_call", timeout=10)
    bob.answer(int(incoming["call"]), 200)
    alice.wait_call_state("CONFIRMED", call=a_call)
