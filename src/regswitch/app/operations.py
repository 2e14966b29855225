"""What the operator console may do to the running switch, in its own words:
the registrations, the calls, the holds and flags, the dashboard's counters.

The API routes use this and the switch's stores (accounts, domains,
parameters, events), never the registrar, the B2BUA or the location behind
it: those can change shape without the API noticing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from regswitch.calls.b2bua import B2BUA
from regswitch.cluster.node import ClusterNode
from regswitch.common.domain_events import REJECTED, REPLACED
from regswitch.common.events import EventBus
from regswitch.protection.flood import FloodGuard
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.service import Registrar
from regswitch.transport.endpoint import Endpoint


class Operations:
    def __init__(
        self,
        *,
        registrar: Registrar,
        location: Location,
        b2bua: B2BUA,
        flood: FloodGuard,
        endpoint: Endpoint,
        events: EventBus,
        clock: Callable[[], float],
        cluster: ClusterNode | None,
        node_id: str,
    ) -> None:
        self._registrar = registrar
        self._location = location
        self._b2bua = b2bua
        self._flood = flood
        self._endpoint = endpoint
        self._events = events
        self.clock = clock
        self._cluster = cluster
        self._node_id = node_id

    # --- registrations ---------------------------------------------------------------
    def registrations(self, account: str | None = None, ip: str | None = None) -> list[Binding]:
        """Live bindings, of one account or from one address if given."""
        return self._registrar.list(account, ip)

    def registration(self, binding_id: str) -> Binding | None:
        return self._location.get(binding_id)

    async def delete_registration(
        self, binding_id: str, kick: bool, block: float = 0
    ) -> dict[str, Any] | None:
        """Remove it (ending its calls with `kick`; refusing the device for
        `block` seconds); None when there is no such registration."""
        return await self._registrar.upkeep.delete(binding_id, kick, block)

    # --- calls -----------------------------------------------------------------------
    def calls(self) -> list[dict[str, Any]]:
        return self._b2bua.snapshot()

    async def hang_up(self, call_id: str) -> str | None:
        """End a call in progress (BYE both, or CANCEL), on whichever node of a
        cluster holds it; the node that held it, None if none does."""
        if self._cluster is not None:
            return await self._cluster.hang_up(call_id)
        call = self._b2bua.calls.get(call_id)
        if call is None:
            return None
        self._b2bua.hang_up(call, "admin-hangup")
        return self._node_id

    # --- holds and flags -------------------------------------------------------------
    def tombstones(self, account: str | None) -> list[dict[str, Any]]:
        now = self.clock()
        return [s.view(now) for s in self._registrar.guard.tombstones.of(account, now)]

    def lift_holds(self, account: str) -> dict[str, Any]:
        """Let the account's replaced and blocked devices register again and
        end its flapping or ping-pong hold."""
        guard, flapping, now = self._registrar.guard, self._registrar.flapping, self.clock()
        lifted = guard.tombstones.lift(account)
        held = flapping.held(account, now) or guard.pingpong.held(account, now)
        flapping.release(account)
        guard.pingpong.release(account)
        return {"account": account, "lifted": lifted, "hold_released": held}

    def sharing_suspects(self) -> list[dict[str, Any]]:
        return self._registrar.guard.sharing.flagged(self.clock())

    def unlock_sharing(self, account: str) -> bool:
        return self._registrar.guard.sharing.unlock(account)

    # --- the dashboard ---------------------------------------------------------------
    def counters(self) -> dict[str, float]:
        """What the dashboard samples: gauges now, counters since start."""
        return {
            "bindings": len(self._location),
            "calls": len(self._b2bua.calls),
            "registers": self._endpoint.stats.requests_by_method.get("REGISTER", 0),
            "kicks": self._events.counts[REPLACED],
            "rejections": self._events.counts[REJECTED],
            "flood_blocks": self._flood.blocks,
        }
