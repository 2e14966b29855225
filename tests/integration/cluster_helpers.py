"""Several `regswitch serve` nodes of one cluster on loopback: one real
PostgreSQL database and one real Redis database shared, each node on its own
address (127.0.0.11, .12, ...) with its own node id."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from support import wait_until
from support.server import RunningServer

DOMAIN = "regswitch.local"
PASSWORD = "secret-pw"


class Cluster:
    def __init__(self, start: Callable[..., RunningServer], db: str, redis: str) -> None:
        self._start = start
        self.db = db
        self.redis = redis
        self.nodes: list[RunningServer] = []

    def add(
        self, *extra: str, number: int | None = None, env: dict[str, str] | None = None
    ) -> RunningServer:
        number = number or len(self.nodes) + 1
        node = self._start(
            "--cluster", self.redis, "--node-id", f"n{number}", "--domain", DOMAIN, *extra,
            name=f"n{number}", host=f"127.0.0.{10 + number}", db=self.db, env=env,
        )  # fmt: skip
        self.nodes.append(node)
        self.settle()
        return node

    def settle(self) -> None:
        """Every node knows every node's relay address (B-legs to another node's
        bindings go through it): asking a node for the cluster status makes it
        read the registry, which it otherwise does once a heartbeat."""
        count = len(self.nodes)
        for node in self.nodes:
            wait_until(
                lambda n=node: (lambda e: len(e) == count and all(x.get("relay") for x in e))(
                    n.api.get("/api/cluster").json()["nodes"]
                ),
                10, f"the relay addresses known to {node!r}",
            )  # fmt: skip

    def account(self, user: str, **fields: Any) -> str:
        body: dict[str, Any] = {"user": user, "domain": DOMAIN, "password": PASSWORD}
        body.update(fields)
        r = self.nodes[0].api.post("/api/accounts", json=body)
        assert r.status_code == 201, r.text
        aor = f"{user}@{DOMAIN}"
        # every node learns of it (the bus); wait until each knows it
        for node in self.nodes:
            wait_until(
                lambda n=node: n.api.get(f"/api/accounts/{aor}").status_code == 200,
                10,
                f"{aor} known on {node!r}",
            )
        return aor

    def registrations(self, node: RunningServer, aor: str) -> list[dict[str, Any]]:
        r = node.api.get("/api/registrations", params={"account": aor})
        assert r.status_code == 200, r.text
        return list(r.json())

    def metric(self, node: RunningServer, name: str, **labels: str) -> float:
        text = node.api.get("/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head == name or (want and head.startswith(name + "{") and want in head):
                total += float(value)
        return total


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    ).stdout.strip()
