"""Calls across cluster nodes, with SIPp as the phones: the kick reaches the
node that holds the call, wherever the REGISTER that replaced it arrived."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cluster_helpers import Cluster

from calls.harness import Api, Devices, check_cdr, source, unique, user
from support import wait_until
from support.server import RunningServer
from support.sipp import SippProcess, SippRunner

pytestmark = [pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(120)]


@pytest.fixture
def cluster(server_factory: Callable[..., RunningServer], pg_url: str, redis_url: str) -> Cluster:
    return Cluster(server_factory, pg_url, redis_url)


@pytest.fixture
def either_cluster(
    server_factory: Callable[..., RunningServer], pg_url: str, shared_url: str
) -> Cluster:
    """Nodes sharing one Redis server, then a Redis Cluster."""
    return Cluster(server_factory, pg_url, shared_url)


def test_kick_through_a_third_node_ends_the_call_on_the_node_holding_it(
    either_cluster: Cluster, sipp: SippRunner
) -> None:
    """alice registers via node 1; bob calls her via node 2 (the call's dialogs
    live there), answered; a new device of alice registers via node 3: BYE to
    both parties from node 2, CDR registration-replaced, one binding left."""
    cluster = either_cluster
    n1, n2, n3 = cluster.add(), cluster.add(), cluster.add()
    api1, api2, api3 = Api(n1), Api(n2), Api(n3)
    alice = api1.account(unique("alice"))
    bob = api1.account(unique("bob"))
    for api in (api2, api3):  # the account reached every node
        wait_until(lambda a=api: a.http.get(f"/api/accounts/{alice}").status_code == 200, 10)
        wait_until(lambda a=api: a.http.get(f"/api/accounts/{bob}").status_code == 200, 10)
    via1, via2, via3 = Devices(sipp, n1), Devices(sipp, n2), Devices(sipp, n3)

    old_port = via1.register(user(alice))
    wait_until(lambda: api2.registrations(alice), 10, "alice's binding on node 2")
    callee = via1.device("call_uas_answer", old_port)
    caller = via2.caller("call_uac_wait_bye", user(bob), user(alice))
    call = api2.wait_call(bob, "answered")
    assert call["callee_source"] == source(old_port)
    # the registry lists the call under node 2
    status = api3.get("/api/cluster")
    assert {n["node"]: n["calls"] for n in status["nodes"]} == {"n1": 0, "n2": 1, "n3": 0}

    new_port = via3.register(user(alice))  # replace On: the old device is kicked
    a = caller.wait().check(1)  # BYE reached both parties
    b = callee.wait().check(1)
    [cdr] = api2.wait_cdrs(bob)
    assert cdr["id"] == call["id"]
    check_cdr(
        cdr, caller=bob, callee=alice, reason="registration-replaced", direction="system",
        code=200, answered=True, caller_port=caller.port, callee_port=old_port, a_leg=a, b_leg=b,
    )  # fmt: skip
    for api in (api1, api2, api3):
        bindings = wait_until(
            lambda a=api: (lambda r: r if len(r) == 1 and r[0]["node"] == "n3" else None)(
                a.registrations(alice)
            ),
            10, "only node 3's binding",
        )  # fmt: skip
        assert bindings[0]["source_port"] == new_port
    api2.wait_no_calls()
    # the replace was decided on node 3, the call ended on node 2: both are in the one log
    [replaced] = api1.events("replaced", alice)
    assert replaced["details"]["old_source"] == source(old_port)
    assert replaced["source"] == source(new_port)
    ended = api1.events("call-ended", bob)
    assert [e["details"]["reason"] for e in ended] == ["registration-replaced"]


class TwoNodes:
    """Nodes 1 and 2, accounts alice and bob known to both, SIPp devices on each."""

    def __init__(self, cluster: Cluster, sipp: SippRunner) -> None:
        self.n1, self.n2 = cluster.add(), cluster.add()
        self.api1, self.api2 = Api(self.n1), Api(self.n2)
        self.alice = self.api1.account(unique("alice"))
        self.bob = self.api1.account(unique("bob"))
        wait_until(lambda: self.api2.http.get(f"/api/accounts/{self.bob}").status_code == 200, 10)
        self.via1, self.via2 = Devices(sipp, self.n1), Devices(sipp, self.n2)

    def call_held_by_node_2(self) -> tuple[SippProcess, SippProcess]:
        """alice registered through node 1, bob calling her through node 2: answered.
        Returns (callee, caller) scenarios, waiting for their BYE."""
        port = self.via1.register(user(self.alice))
        wait_until(lambda: self.api2.registrations(self.alice), 10, "alice on node 2")
        callee = self.via1.device("call_uas_answer", port)
        caller = self.via2.caller("call_uac_wait_bye", user(self.bob), user(self.alice))
        self.api2.wait_call(self.bob, "answered")
        return callee, caller


def test_kick_reaches_the_other_node_quickly(cluster: Cluster, sipp: SippRunner) -> None:
    """Node 2, holding the call, ends it within 50 ms of node 1's decision to
    replace the binding (the `replaced` event, written just before node 1's
    200) -- both times on this machine's clock."""
    two = TwoNodes(cluster, sipp)
    callee, caller = two.call_held_by_node_2()
    two.via1.register(user(two.alice))  # through node 1; the call is on node 2
    caller.wait().check(1)
    callee.wait().check(1)
    [cdr] = two.api2.wait_cdrs(two.bob)
    assert cdr["end_reason"] == "registration-replaced"
    [replaced] = two.api1.events("replaced", two.alice)
    assert 0 <= cdr["end"] - replaced["time"] < 0.05, (cdr["end"], replaced["time"])


def test_console_delete_with_kick_and_hangup_through_another_node(
    cluster: Cluster, sipp: SippRunner
) -> None:
    two = TwoNodes(cluster, sipp)
    api1, api2, alice, bob = two.api1, two.api2, two.alice, two.bob

    # a console delete with kick on node 1 ends a call held by node 2
    callee, caller = two.call_held_by_node_2()
    [binding] = api1.registrations(alice)
    r = api1.http.delete(f"/api/registrations/{binding['id']}", params={"kick": "true"})
    assert r.status_code == 200, r.text
    caller.wait().check(1)
    callee.wait().check(1)
    [cdr] = api2.wait_cdrs(bob)
    assert cdr["end_reason"] == "registration-deleted"
    wait_until(lambda: not api2.registrations(alice), 10, "the binding gone on node 2")

    # DELETE /api/calls/{id} on node 1 hangs up a call held by node 2
    callee, caller = two.call_held_by_node_2()
    [call] = api2.calls()
    r = api1.http.delete(f"/api/calls/{call['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["node"] == "n2"
    caller.wait().check(1)
    callee.wait().check(1)
    cdrs = api2.wait_cdrs(bob, 2)
    assert cdrs[0]["end_reason"] == "admin-hangup"
    assert api1.http.delete("/api/calls/nosuchcall").status_code == 404


def test_parameter_changed_through_one_node_applies_on_the_other(cluster: Cluster) -> None:
    n1, n2 = cluster.add(), cluster.add()
    r = n1.api.put("/api/parameters/SS_ENDPOINT_REGISTER_REPLACE", json={"value": "Off"})
    assert r.status_code == 200, r.text
    wait_until(
        lambda: n2.api.get("/api/parameters/SS_ENDPOINT_REGISTER_REPLACE").json()["value"]
        == "Off",
        10, "the new value on node 2",
    )  # fmt: skip
    # stored and evented once, by the node that changed it (events are written
    # behind: the value can reach node 2 before the event reaches the database)
    wait_until(
        lambda: n2.api.get("/api/events", params={"type": "param-changed"}).json(),
        10, "the event, through node 2",
    )  # fmt: skip
    events = n2.api.get("/api/events", params={"type": "param-changed"}).json()
    assert len(events) == 1 and events[0]["details"]["new"] == "Off"
