"""Protection state shared by cluster nodes (real processes, real Redis and
PostgreSQL): nonces good on every node and once only, blocks decided by one
node applied by all, replacements counted toward flapping by all."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cluster_helpers import DOMAIN, PASSWORD, Cluster

from regswitch.sip.parse import parse_message
from support import wait_until
from support.register_helpers import UNTRUSTED_LOOPBACK
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def cluster(server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str) -> Cluster:
    return Cluster(server_factory, pg_url, redis_url)


def last_authorization(phone: UA) -> str:
    """The Authorization of the last REGISTER the phone sent."""
    for _time, direction, _addr, data in reversed(phone.trace):
        if direction == "out" and data.startswith(b"REGISTER"):
            value = parse_message(data).headers.get("authorization")
            if value:
                return value
    raise AssertionError("no authorized REGISTER sent")


def test_a_nonce_from_one_node_works_once_on_another(cluster: Cluster) -> None:
    n1, n2 = cluster.add(), cluster.add()
    cluster.account("hank")
    phone = UA("udp", n1.udp)
    try:
        # node 1 issues the nonce (nc 1 answers its challenge: a query, nothing changes)
        assert phone.register("hank", DOMAIN, PASSWORD, contact="").status == 200
        phone.server = n2.udp
        # node 2 takes it (nc 2) without a challenge of its own
        response = phone.register("hank", DOMAIN, PASSWORD, preauth=True)
        assert response.status == 200
        replay = last_authorization(phone)
        # the same credentials again -- a new request, as a replaying attacker sends
        # it -- on node 1, whose own table never saw nc 2: refused as a replay
        for node in (n1, n2):
            phone.server = node.udp
            again = phone.request(
                "REGISTER",
                f"sip:{DOMAIN}",
                {
                    "From": f"<sip:hank@{DOMAIN}>;tag=replay",
                    "To": f"<sip:hank@{DOMAIN}>",
                    "Contact": f"<{phone.contact_uri('hank')}>",
                    "Authorization": replay,
                },
            )
            assert again.status == 401, (node, again.status)
            assert "stale=true" in (again.headers.get("www-authenticate") or "").lower()
        # node 1 learnt it from Redis (node 2 from its own table): its count, in its
        # registry entry, reaches every node with its next heartbeat

        def refused() -> dict[str, int]:
            nodes = n2.api.get("/api/cluster").json()["nodes"]
            return {n["node"]: n["counts"]["nonce_claims_refused"] for n in nodes}

        wait_until(lambda: refused() == {"n1": 1, "n2": 0}, 10, "n1's refused claim published")
    finally:
        phone.close()


def test_a_block_decided_by_one_node_holds_on_the_other(cluster: Cluster) -> None:
    n1 = cluster.add(env=UNTRUSTED_LOOPBACK)
    n2 = cluster.add(env=UNTRUSTED_LOOPBACK)
    aor = cluster.account("ivy")
    assert n1.api.put("/api/parameters/AUTH_FAIL_LIMIT", json={"value": 2}).status_code == 200
    phone = UA("udp", n1.udp)
    try:
        for _ in range(3):  # the third failure blocks ivy from this source on node 1
            assert phone.register("ivy", DOMAIN, "wrong", call_id=None).status == 403
        wait_until(
            lambda: n2.api.get("/api/events", params={"type": "flood-blocked"}).json(),
            10, "the block evented",
        )  # fmt: skip
        # node 2 has seen no failure itself; it holds the block all the same
        phone.server = n2.udp
        wait_until(
            lambda: phone.register("ivy", DOMAIN, PASSWORD, call_id="fresh").status == 403,
            10, "the right password refused on node 2 too while blocked",
        )  # fmt: skip
        blocks = n2.api.get("/api/events", params={"type": "flood-blocked"}).json()
        assert len(blocks) == 1 and blocks[0]["account"] == aor  # evented once, by node 1
    finally:
        phone.close()


def test_replacements_through_two_nodes_count_toward_flapping(cluster: Cluster) -> None:
    n1, n2 = cluster.add(), cluster.add()
    cluster.account("jack")
    r = n1.api.put("/api/parameters/REGISTER_FLAP_LIMIT", json={"value": 3})
    assert r.status_code == 200
    wait_until(lambda: n2.api.get("/api/parameters/REGISTER_FLAP_LIMIT").json()["value"] == "3", 10)
    phones = [UA("udp", n1.udp), UA("udp", n2.udp)]  # two devices, one per node
    nodes = [n1, n2]
    try:
        statuses = []
        for turn in range(6):
            device = turn % 2
            received = cluster.metric(nodes[1 - device], "regswitch_storage", stat="bus_received")
            statuses.append(phones[device].register("jack", DOMAIN, PASSWORD).status)
            if turn and statuses[-1] == 200:  # the other node heard of the replacement
                other = nodes[1 - device]
                wait_until(
                    lambda o=other, r=received: cluster.metric(
                        o, "regswitch_storage", stat="bus_received"
                    ) > r,
                    10, "the other node heard of it",
                )  # fmt: skip
        # four replacements (two decided by each node) exceed the limit of three:
        # the fifth attempt is held, wherever it arrives
        assert statuses[:5] == [200, 200, 200, 200, 200], statuses
        assert statuses[5] == 403, statuses
        flapping = n1.api.get("/api/events", params={"type": "flapping"}).json()
        assert len(flapping) == 1
    finally:
        for phone in phones:
            phone.close()
