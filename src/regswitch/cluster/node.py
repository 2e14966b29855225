"""This node's part in the cluster: what it tells the others and what it does when told.

- A kick (a REGISTER replaced a binding, or the console deleted it with
  kick) ends the binding's calls here and is sent to every node: a call's
  dialogs live on the node that set it up, which need not be the node that
  decided the replace.
- A console hang-up of a call held by another node goes to that node.
- A parameter, account or domain changed through this node's API is stored
  in the database here and announced; the other nodes apply the parameter
  at once and read the account or domains again from the database.
- Calls started and ended here are listed in the node registry.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from regswitch.calls.b2bua import B2BUA
from regswitch.calls.teardown import Teardown
from regswitch.cluster.bus import Bus
from regswitch.cluster.location import ClusterLocation
from regswitch.cluster.nodes import DOWN_PREFIX, Nodes, calls_key
from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.params import ParamError, Params
from regswitch.registrar.accounts import Accounts
from regswitch.registrar.bindings import Binding
from regswitch.registrar.domains import Domains
from regswitch.storage.base import CdrRecord, EventRecord, StorageError

log = logging.getLogger("regswitch.cluster")

#: How long a hang-up sent to another node may take to show in the registry (s).
HANGUP_WAIT = 3.0


class ClusterNode:
    def __init__(
        self,
        *,
        location: ClusterLocation,
        node: str,
        teardown: Teardown,
        b2bua: B2BUA,
        params: Params,
        accounts: Accounts,
        domains: Domains,
        events: EventBus,
        clock: Callable[[], float],
        info: Callable[[], dict[str, Any]],
        timeout: float = 10.0,
    ) -> None:
        self.location = location
        self.redis = location.store
        self.node = node
        self.teardown = teardown
        self.b2bua = b2bua
        self.params = params
        self.accounts = accounts
        self.domains = domains
        self.events = events
        self.clock = clock
        self._info = info
        self.bus = Bus(self.redis, node)
        self.nodes = Nodes(self.redis, node, clock, self.entry, timeout, self._node_down)
        self._tasks: set[asyncio.Task[None]] = set()
        bus = self.bus
        bus.on("kick", self._on_kick)
        bus.on("hangup", self._on_hangup)
        bus.on("param", self._on_param)
        bus.on("account", self._on_account)
        bus.on("domains", self._on_domains)
        events.listeners.append(self._on_event)

    # --- lifecycle ----------------------------------------------------------------
    async def join(self) -> int:
        """Before the database is read: what changes after this point reaches us."""
        await self.bus.mark()
        return await self.nodes.join()

    def start(self) -> None:
        self.bus.start()
        self.nodes.start()
        previous = self.nodes.previous
        if previous is not None and previous.get("started") != self.nodes.started:
            self._spawn(self._earlier_life(previous))

    async def _earlier_life(self, entry: dict[str, Any]) -> None:
        """This node id restarted before the others declared its last life dead:
        that death is this node's to handle, unless a survivor claimed it."""
        claim = f"{DOWN_PREFIX}{entry['node']}:{entry.get('started')}"
        if await self.redis.call(self.redis.client.set(claim, self.node, nx=True, ex=86400)):
            await self._node_down(entry)

    async def stop(self) -> None:
        await self.bus.stop()
        await self.nodes.leave()
        for task in list(self._tasks):
            task.cancel()

    def entry(self) -> dict[str, Any]:
        """This node's registry entry (each heartbeat)."""
        return {
            **self._info(),
            "bindings": sum(1 for b in self.location.location if b.node == self.node),
            "calls": len(self.b2bua.calls),
        }

    # --- kicks --------------------------------------------------------------------
    def kick(self, binding: Binding, reason: str) -> list[str]:
        """The registrar's kicker: end the binding's calls here and on every node."""
        ended = self.teardown.kick(binding, reason)
        self.bus.post("kick", binding=binding.id, reason=reason, account=binding.aor)
        return ended

    def _on_kick(self, sender: str, data: dict[str, Any]) -> None:
        ended = self.teardown.end_calls(str(data["binding"]), str(data["reason"]))
        if ended:
            log.info(
                "kick from %s ended %d call(s) of %s here", sender, len(ended), data.get("account")
            )

    # --- console hang-ups -----------------------------------------------------------
    async def hang_up(self, call_id: str) -> str | None:
        """End call `call_id` wherever it is; the node that held it, None if none did."""
        call = self.b2bua.calls.get(call_id)
        if call is not None:
            self.b2bua.hang_up(call, "admin-hangup")
            return self.node
        entry = await self.nodes.holder(call_id)
        if entry is None:
            return None
        holder = str(entry["node"])
        await self.bus.send("hangup", to=holder, call=call_id)
        deadline = self.clock() + HANGUP_WAIT
        while self.clock() < deadline:
            if call_id not in await self.nodes.calls(entry):
                return holder
            await asyncio.sleep(0.02)  # the registry is polled: the bus carries no replies
        raise StorageError(f"node {holder} did not end call {call_id} within {HANGUP_WAIT} s")

    def _on_hangup(self, sender: str, data: dict[str, Any]) -> None:
        call = self.b2bua.calls.get(str(data["call"]))
        if call is not None:
            self.b2bua.hang_up(call, "admin-hangup")

    # --- configuration changes ------------------------------------------------------
    def _on_param(self, sender: str, data: dict[str, Any]) -> None:
        """Another node stored a new value: apply it live (stored and evented there)."""
        name, value = str(data["name"]), str(data["value"])
        try:
            self.params.validate(name, value)
        except (ParamError, KeyError):
            log.warning("parameter %s=%r from %s refused here", name, value, sender)
            return
        self.params.apply(name, value)

    def _on_account(self, sender: str, data: dict[str, Any]) -> None:
        account = data.get("account")
        self._spawn(self.accounts.refresh(str(account) if account else None))

    def _on_domains(self, sender: str, data: dict[str, Any]) -> None:
        self._spawn(self.domains.load())

    def _on_event(self, record: EventRecord) -> None:
        """What this node did that the others must hear of, seen as it is evented."""
        kind = record.type
        details = record.details
        if kind == ev.CALL_STARTED or kind == ev.CALL_ANSWERED:
            call = self.b2bua.calls.get(str(details.get("call")))
            if call is not None:
                self.nodes.call_changed(call.id, call.view(self.clock()))
        elif kind == ev.CALL_ENDED:
            if details.get("call"):
                self.nodes.call_changed(str(details["call"]), None)
        elif kind == ev.PARAM_CHANGED:
            self.bus.post("param", name=details["name"], value=details["new"])
        elif kind == ev.ACCOUNT_CHANGED:
            self.bus.post("account", account=record.account)
        elif kind == ev.DOMAIN_CHANGED:
            self.bus.post("domains")

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._quietly(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(work: Any) -> None:
        try:
            await work
        except Exception:
            log.exception("applying a change from another node failed")

    # --- node failure -------------------------------------------------------------
    async def _node_down(self, entry: dict[str, Any]) -> None:
        """A node died (this node claimed it): close the CDRs of the calls it
        held, ended at its last heartbeat with `node-failure`, and record it.
        Its bindings stay: its phones are reachable again once they re-register."""
        node = str(entry["node"])
        last = float(entry.get("heartbeat", 0))
        calls = await self.nodes.calls(entry)
        for call_id, view in calls.items():
            self.b2bua.cdrs.add(_failed_cdr(call_id, view, last))
            answer = view.get("answer")
            self.events.emit(
                ev.CallEnded(
                    account=view.get("caller"),
                    source=view.get("caller_source"),
                    call=call_id,
                    callee=str(view.get("callee")),
                    reason="node-failure",
                    direction="system",
                    code=200 if answer else None,
                    duration=round(max(0.0, last - answer), 3) if answer else 0.0,
                )
            )
        await self.redis.call(self.redis.client.delete(calls_key(node, float(entry["started"]))))
        self.events.emit(
            ev.NodeDown(
                source=node,
                node=node,
                last_heartbeat=last,
                calls_closed=sorted(calls),
                by=self.node,
            )
        )

    # --- status -------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """Nodes with their heartbeats, and the bindings and calls each holds."""
        nodes = await self.nodes.nodes()
        bindings: dict[str, int] = {}
        for binding in self.location.location:
            bindings[binding.node] = bindings.get(binding.node, 0) + 1
        for entry in nodes:
            name = str(entry["node"])
            entry["bindings"] = bindings.get(name, 0)
            entry["calls"] = len(await self.nodes.calls(entry)) if entry["alive"] else 0
        return {
            "node": self.node,
            "cluster": self.redis.where,
            "healthy": self.redis.problem is None,
            "nodes": nodes,
            "bindings": len(self.location.location),
        }

    @property
    def stats(self) -> dict[str, float]:
        return self.bus.stats


def _failed_cdr(call_id: str, view: dict[str, Any], end: float) -> CdrRecord:
    """The CDR of a call its node died with, from the registry's view of it."""
    answer = view.get("answer")
    start = float(view["start"])
    # when the node died is not known: no earlier than its last heartbeat, nor
    # than the last thing it recorded of the call
    end = max(end, start, answer or start)
    return CdrRecord(
        id=call_id,
        caller=str(view["caller"]),
        callee=str(view["callee"]),
        caller_contact=view.get("caller_contact"),
        callee_contact=view.get("callee_contact"),
        caller_source=view.get("caller_source"),
        callee_source=view.get("callee_source"),
        a_call_id=str(view.get("a_call_id") or ""),
        b_call_id=view.get("b_call_id"),
        start=start,
        answer=answer,
        end=end,
        billable_seconds=max(0, math.ceil(end - answer - 1e-6)) if answer else 0,
        final_code=200 if answer else 0,
        end_reason="node-failure",
        end_direction="system",
    )
