"""Cluster nodes (`serve --cluster redis://... --db postgresql://...`) as real
processes on loopback, sharing one real PostgreSQL and one real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cluster_helpers import DOMAIN, PASSWORD, Cluster

from support import wait_until
from support.redis import RedisCluster, RedisServer, cli
from support.server import RunningServer
from support.ua import UA

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str) -> Cluster:
    return Cluster(server_factory, pg_url, redis_url)


@pytest.fixture
def either_cluster(
    server_factory: Callable[..., RunningServer], pg_url: str, shared_url: str
) -> Cluster:
    """Nodes sharing one Redis server, then a Redis Cluster."""
    return Cluster(server_factory, pg_url, shared_url)


def test_unreachable_redis_at_start_is_one_line_and_exit_2(pg_url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "regswitch", "serve", "--sip", "udp:127.0.0.1:0",
         "--api", "127.0.0.1:0", "--db", pg_url, "--cluster", f"redis://127.0.0.1:{port}/0",
         "--node-id", "n1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"Redis at 127.0.0.1:{port}/0" in lines[0], proc.stderr


def test_cluster_refuses_sqlite_and_workers_need_a_cluster(tmp_path: Any) -> None:
    base = [sys.executable, "-m", "regswitch", "serve", "--api", "127.0.0.1:0"]
    for extra, words in (
        (
            ["--cluster", "redis://127.0.0.1:1/0", "--db", f"sqlite:///{tmp_path}/x.db"],
            "postgresql",
        ),
        (["--workers", "2", "--db", f"sqlite:///{tmp_path}/x.db"], "--cluster"),
    ):
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_a_registration_through_one_node_is_seen_by_the_other(cluster: Cluster) -> None:
    n1 = cluster.add()
    aor = cluster.account("alice")
    n2 = cluster.add()
    phone = UA("udp", n1.udp, local_host="127.0.0.1")
    try:
        assert phone.register("alice", DOMAIN, PASSWORD).status == 200
        seen = wait_until(lambda: cluster.registrations(n2, aor), 10, "alice on n2")
        assert seen[0]["node"] == "n1"
        health = n2.api.get("/healthz").json()
        assert health["checks"]["cluster"] is True
        # unregistering through n1 removes it on n2 too
        assert phone.register("alice", DOMAIN, PASSWORD, expires=0).status == 200
        wait_until(lambda: not cluster.registrations(n2, aor), 10, "alice gone on n2")
    finally:
        phone.close()


def test_expiry_is_one_event_cluster_wide(cluster: Cluster) -> None:
    n1 = cluster.add()
    aor = cluster.account("carol")
    n2 = cluster.add()
    for node in (n1, n2):  # the shortest registrations the nodes grant
        r = node.api.put("/api/parameters/SS_ENDPOINT_MIN_EXPIRE", json={"value": 1})
        assert r.status_code == 200, r.text
    phone = UA("udp", n1.udp)
    try:
        assert phone.register("carol", DOMAIN, PASSWORD, expires=1).status == 200
        wait_until(lambda: cluster.registrations(n2, aor), 10, "carol on n2")
        # each node held the binding until one of them expired it; both copies are gone
        # once the removal reached them: from then on nobody else can expire it
        wait_until(
            lambda: all(cluster.metric(n, "regswitch_bindings") == 0 for n in (n1, n2)),
            10,
            "carol expired and gone from both nodes",
        )
        total = sum(
            cluster.metric(n, "regswitch_register_total", result="expired") for n in (n1, n2)
        )
        assert total == 1
    finally:
        phone.close()


@pytest.mark.slow
def test_two_devices_at_the_same_instant_through_two_nodes(either_cluster: Cluster) -> None:
    """max_contacts 1, replace On: two devices of one account register at the
    same instant, one through each node. Every round leaves exactly one
    binding and at most one kick (the later one replaces the earlier)."""
    cluster = either_cluster
    n1 = cluster.add()
    aor = cluster.account("dave", max_contacts=1)
    # a hundred replacements in a row are what flapping protection stops:
    # not what is tested here
    for name in ("REGISTER_FLAP_LIMIT", "REGISTER_PINGPONG_LIMIT"):
        assert n1.api.put(f"/api/parameters/{name}", json={"value": 10000}).status_code == 200
    n2 = cluster.add()
    rounds = 100
    for number in range(rounds):
        phones = [UA("udp", n.udp) for n in (n1, n2)]
        try:
            for phone in phones:  # a query: gets the nonce, changes nothing
                assert phone.register("dave", DOMAIN, PASSWORD, contact="").status == 200
            answers = at_once(
                [
                    lambda p=p: p.register("dave", DOMAIN, PASSWORD, preauth=True).status
                    for p in phones
                ]
            )
            assert answers == [200, 200], (number, answers)
            for node in (n1, n2):
                bindings = wait_until(
                    lambda n=node: (lambda b: b if len(b) == 1 else None)(
                        cluster.registrations(n, aor)
                    ),
                    10,
                    f"one binding on {node!r} in round {number}",
                )
                assert len(bindings) == 1
            stored = cli(cluster.redis, "HKEYS", f"rs:loc:{{{aor}}}").split()
            assert len([k for k in stored if k != "#v"]) == 1, (number, stored)
        finally:
            for phone in phones:
                phone.register("dave", DOMAIN, PASSWORD, expires=0)
                phone.close()
        wait_until(lambda: not cluster.registrations(n1, aor), 10, "dave unregistered")
    kicks = sum(cluster.metric(n, "regswitch_register_total", result="replaced") for n in (n1, n2))
    # each round: the second device replaced the first (exactly one kick) --
    # or, had both committed at once, two bindings: which the checks above exclude
    assert kicks == rounds
    # and the nodes did race: some commits found the account changed and decided again
    conflicts = sum(
        cluster.metric(n, "regswitch_storage", stat="location_conflicts") for n in (n1, n2)
    )
    assert conflicts > 0


def at_once(actions: list[Callable[[], int]]) -> list[int]:
    """Run `actions` in threads released together by a barrier; their results."""
    barrier = threading.Barrier(len(actions))
    results: list[int] = [0] * len(actions)

    def run(index: int) -> None:
        barrier.wait(5)
        results[index] = actions[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_cluster_status_cli_and_api(cluster: Cluster) -> None:
    n1, n2 = cluster.add(), cluster.add()
    aor = cluster.account("erin")
    phone = UA("udp", n2.udp)
    try:
        assert phone.register("erin", DOMAIN, PASSWORD).status == 200
        wait_until(lambda: cluster.registrations(n1, aor), 10, "erin on n1")
        proc = subprocess.run(
            [sys.executable, "-m", "regswitch", "--api", n1.api_url, "--json", "cluster",
             "status"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        assert status["node"] == "n1" and status["healthy"] is True
        nodes = {n["node"]: n for n in status["nodes"]}
        assert set(nodes) == {"n1", "n2"}
        assert all(n["alive"] and n["age"] < 5 for n in nodes.values())
        assert (nodes["n1"]["bindings"], nodes["n2"]["bindings"]) == (0, 1)
        assert nodes["n2"]["sip"] == n2.ready["sip"] and nodes["n2"]["api"] == n2.api_url
        table = subprocess.run(
            [sys.executable, "-m", "regswitch", "--api", n2.api_url, "cluster", "status"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert table.returncode == 0 and "n1" in table.stdout and "n2" in table.stdout
        # a node that stops cleanly leaves the registry at once
        n1.stop()
        wait_until(
            lambda: [n["node"] for n in n2.api.get("/api/cluster").json()["nodes"]] == ["n2"],
            10, "n1 gone from the registry",
        )  # fmt: skip
    finally:
        phone.close()


def test_one_process_reports_itself(server: RunningServer) -> None:
    status = server.api.get("/api/cluster").json()
    assert status["cluster"] is None
    assert [n["node"] for n in status["nodes"]] == ["node1"]


def test_event_ids_of_two_nodes_never_collide(cluster: Cluster) -> None:
    """Both nodes write events to the one database, numbering them themselves."""
    n1, n2 = cluster.add(), cluster.add()
    aor = cluster.account("frank", max_contacts=5)
    phones = [UA("udp", n.udp) for n in (n1, n2, n1, n2)]
    try:
        for phone in phones:
            assert phone.register("frank", DOMAIN, PASSWORD).status == 200
        events = wait_until(
            lambda: (lambda e: e if len(e) == 4 else None)(
                n1.api.get("/api/events", params={"type": "registered", "account": aor}).json()
            ),
            10, "four registered events",
        )  # fmt: skip
        ids = [e["id"] for e in events]
        assert len(set(ids)) == 4 and all(i < 2**53 for i in ids)
    finally:
        for phone in phones:
            phone.close()


def test_redis_down_means_503_then_service_resumes(
    server_factory: Callable[..., RunningServer],
    pg_url: str,
    shared_redis: RedisServer | RedisCluster,
) -> None:
    """One Redis server, then a Redis Cluster with every master down."""
    cluster = Cluster(server_factory, pg_url, shared_redis.new_database())
    n1 = cluster.add()
    cluster.account("gina")
    phone = UA("udp", n1.udp)
    try:
        assert phone.register("gina", DOMAIN, PASSWORD).status == 200
        shared_redis.down()
        try:
            response = phone.register("gina", DOMAIN, PASSWORD)
            assert response.status == 503 and response.headers.get("retry-after")
            health = n1.api.get("/healthz").json()
            assert health["status"] == "degraded" and health["checks"]["cluster"] is False
        finally:
            shared_redis.up()  # empty: no persistence
        # back by itself: the phone registers again (its binding went with Redis)
        wait_until(
            lambda: phone.register("gina", DOMAIN, PASSWORD).status == 200, 15, "a 200 again"
        )
        wait_until(lambda: n1.api.get("/healthz").json()["status"] == "ok", 10, "healthy")
    finally:
        phone.close()
