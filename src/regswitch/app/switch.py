"""The running switch: every service, built once and shared by SIP and the console."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterable
from typing import Any

from regswitch.app.keepalive import Keepalive
from regswitch.app.operations import Operations
from regswitch.app.retention import Retention
from regswitch.calls.b2bua import B2BUA
from regswitch.calls.teardown import Teardown
from regswitch.cluster.location import ClusterLocation
from regswitch.cluster.node import ClusterNode
from regswitch.cluster.protection import NonceClaims, SharedProtection
from regswitch.cluster.relay import Relay
from regswitch.common import domain_events as ev
from regswitch.common.config import Settings
from regswitch.common.events import EventBus
from regswitch.common.ids import new_id
from regswitch.common.metrics import Snapshot
from regswitch.common.networks import parse_networks
from regswitch.common.params import ParamError, Params
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard, FloodLimits
from regswitch.registrar.accounts import Accounts
from regswitch.registrar.auth import Authenticator
from regswitch.registrar.bindings import Location
from regswitch.registrar.domains import Domains
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.kick_notice import KickNotice
from regswitch.registrar.kicker import KickerSlot
from regswitch.registrar.reg_events import RegEvents
from regswitch.registrar.service import Registrar
from regswitch.storage.base import BindingStore, SlottedEventStore
from regswitch.storage.caps import CappedCdrs
from regswitch.storage.factory import open_storage
from regswitch.storage.redis_location import RedisLocation
from regswitch.transport.endpoint import Endpoint
from regswitch.transport.hep import HepCapture
from regswitch.transport.manager import TransportManager


class Switch:
    def __init__(
        self,
        settings: Settings,
        endpoint: Endpoint,
        transports: TransportManager,
        *,
        hep: HepCapture | None = None,
        shared: RedisLocation | None = None,
    ) -> None:
        self.settings = settings
        self.hep = hep
        self.endpoint = endpoint
        self.transports = transports
        self.listeners: list[dict[str, Any]] = []
        self.api_url: str | None = None  # set when the API listens
        self.clock = time.time
        self.started_at = self.clock()
        self.loop = asyncio.get_running_loop()
        self.storage = open_storage(settings.db)
        self.params = Params()
        self.events = EventBus(self.storage.events, self.clock)
        self.accounts = Accounts(self.storage.accounts, self.clock, shared=shared is not None)
        self.domains = Domains(self.storage.domains, self.clock, settings.domains)
        self.location = Location()
        expiry = ExpiryQueue()
        # a cluster node: bindings live in the shared location (Redis), this
        # node holds a copy; the database keeps everything else
        self.cluster_location = (
            ClusterLocation(
                shared,
                self.location,
                expiry,
                settings.node_id,
                NonceClaims(settings.nonce_lifetime),
            )
            if shared
            else None
        )
        bindings: BindingStore = self.cluster_location or self.storage.bindings
        secret = settings.secret.encode() if settings.secret else secrets.token_bytes(32)
        # nonce ages on the authenticator's monotonic clock, not self.clock: a
        # wall-clock step neither revives an expired nonce nor expires a fresh one
        self.auth = Authenticator(
            hashlib.sha256(secret).digest(),
            new_id,
            # a cluster's nodes check each other's nonces: on the clock they share
            clock=time.time if shared else time.monotonic,
            nonce_lifetime=settings.nonce_lifetime,
        )
        self.flood = FloodGuard(trusted=parse_networks(settings.trusted_networks))
        self.flapping = FlapDetector()
        # a cluster node relays B-legs through the node holding the callee's flow
        self.relay = (
            Relay(
                node=settings.node_id,
                location=self.location,
                sender=transports,
                relays=lambda: self.cluster.nodes.relays if self.cluster else {},
            )
            if shared
            else None
        )
        if self.relay is not None:
            transports.handler = self.relay.wrap(transports.handler)
        self.keepalive = Keepalive(
            endpoint,
            self.location,
            self.params,
            self.events,
            self.clock,
            settings.default_domain,
            # in a cluster only the node holding a binding's flow can reach it
            node=settings.node_id if shared else None,
            route=self.relay.route if self.relay else None,
        )
        # filled in by serve_hosts, before the listeners open
        self.own_hosts: set[str] = set()
        kicker = KickerSlot()  # bound to the call layer below: it is built on the registrar
        self.registrar = Registrar(
            accounts=self.accounts,
            location=self.location,
            store=bindings,
            params=self.params,
            events=self.events,
            auth=self.auth,
            flood=self.flood,
            flapping=self.flapping,
            clock=self.clock,
            new_id=new_id,
            domains=settings.domains,
            own_hosts=self.own_hosts,
            kicker=kicker,
            prober=self.keepalive.probe,
            confirmer=self.keepalive.reaches,
            node=settings.node_id,
            storage_problem=self._bindings_problem,
            shared=self.cluster_location,
            expiry=expiry,
        )
        self.registrar.domains = self.domains.names  # live: added and removed from the console
        self.b2bua = B2BUA(
            endpoint,
            self.registrar,
            self.events,
            CappedCdrs(self.storage.cdrs),
            self.clock,
            advertised_host=settings.advertised_host,
            no_answer_timeout=settings.no_answer_timeout,
            max_call_duration=settings.max_call_duration,
            require_registration=lambda: bool(self.params.values["CALLS_REQUIRE_REGISTRATION"]),
            route=self.relay.route if self.relay else None,
        )
        self.retention = Retention(self.storage.events, self.storage.cdrs, self.params, self.clock)
        self.teardown = Teardown(self.b2bua)
        self.cluster: ClusterNode | None = None
        self.protection: SharedProtection | None = None
        if self.cluster_location is not None:
            self.cluster = ClusterNode(
                location=self.cluster_location,
                node=settings.node_id,
                teardown=self.teardown,
                b2bua=self.b2bua,
                params=self.params,
                accounts=self.accounts,
                domains=self.domains,
                events=self.events,
                clock=self.clock,
                info=self._node_info,
                timeout=settings.cluster_node_timeout,
            )
            self.protection = SharedProtection(
                redis=self.cluster_location.store,
                bus=self.cluster.bus,
                auth=self.auth,
                flood=self.flood,
                flapping=self.flapping,
                events=self.events,
                clock=self.clock,
            )
        # a kick ends the binding's calls on every node of a cluster
        kicker.bind(self.cluster.kick if self.cluster else self.teardown.kick)
        self.registrar.guard.notice = KickNotice(endpoint, settings.default_domain, self.clock)
        self.reg_events = RegEvents(
            endpoint=endpoint,
            registrar=self.registrar,
            params=self.params,
            events=self.events,
            clock=self.clock,
            advertised_host=settings.advertised_host,
        )
        self.operations = Operations(
            registrar=self.registrar, location=self.location, b2bua=self.b2bua, flood=self.flood,
            endpoint=endpoint, events=self.events, clock=self.clock, cluster=self.cluster,
            node_id=settings.node_id,
        )  # fmt: skip
        self._param_lock = asyncio.Lock()
        self.loop_lag = 0.0
        self._lag_task: asyncio.Task[None] | None = None
        self._restore_task: asyncio.Task[int] | None = None
        self._write_errors_seen = 0
        self._closing = False

    def _node_info(self) -> dict[str, Any]:
        """This node's entry in the cluster registry, besides its heartbeat; its
        counts since start (`cluster status` shows every node's)."""
        relay = self.relay.address if self.relay else None
        counts = {"flood_blocks": self.flood.blocks}  # decided here (adopted ones not counted)
        if self.cluster_location is not None:
            location = self.cluster_location
            counts |= {
                "nonce_claims_refused": location.nonces.refused,
                "location_resyncs": location.resyncs,
                "location_conflicts": location.store.conflicts,
            }
        return {"sip": self.listeners, "api": self.api_url, "relay": relay, "counts": counts}

    async def listen_relay(self) -> None:
        """A cluster node's private UDP listener for B-legs other nodes relay
        through it (cluster/relay.py), on the address of its first SIP listener."""
        if self.relay is None:
            return
        host = self.settings.advertised_host or str(self.listeners[0]["host"])
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        address = await self.transports.listen(f"udp:{host}:0")
        self.relay.listening(address, [(str(i["host"]), int(i["port"])) for i in self.listeners])
        if self.cluster is not None:
            await self.cluster.nodes.beat()  # the other nodes learn the address now

    async def cluster_status(self) -> dict[str, Any]:
        """Nodes, heartbeats, bindings and calls per node (one node when not a cluster)."""
        if self.cluster is not None:
            return await self.cluster.status()
        now = self.clock()
        return {
            "node": self.settings.node_id,
            "cluster": None,
            "healthy": True,
            "bindings": len(self.location),
            "nodes": [
                {
                    **self._node_info(),
                    "node": self.settings.node_id,
                    "started": self.started_at,
                    "heartbeat": now,
                    "age": 0.0,
                    "alive": True,
                    "bindings": len(self.location),
                    "calls": len(self.b2bua.calls),
                }
            ],
        }

    def _bindings_problem(self) -> str | None:
        """Why bindings cannot be written now (then a REGISTER gets 503)."""
        if self.cluster_location is not None:
            return self.cluster_location.problem
        return self.storage.problem

    async def open(self) -> None:
        slot = -1
        if self.cluster is not None:
            await self.cluster.location.store.open()  # unreachable: one line, exit 2
            slot = await self.cluster.join()  # before reading what the bus may change
            if self.protection is not None:
                await self.protection.open()
        await self.storage.open()
        if self.cluster is not None and isinstance(self.storage.events, SlottedEventStore):
            self.storage.events.use_slot(slot, self.clock)  # the nodes share one event log
        stored = await self.storage.params.load()
        self.params.load(self._configured_params() | stored)  # a live change wins
        self._apply_params()
        self.params.on_change(lambda name, old, new: self._apply_params())
        await self.domains.load()
        await self.accounts.load()
        if self.cluster is None:
            # SIP is answered while the bindings come back: with a million
            # stored, restoring them takes longer than a phone waits
            self._restore_task = self.registrar.upkeep.restore_in_background()
        else:
            # the cluster's copy follows the shared location from this snapshot
            await self.registrar.upkeep.restore()
        if self.cluster is not None:
            self.cluster.location.start()
            self.cluster.start()
            if self.protection is not None:
                self.protection.start()
        self.endpoint.gate = lambda ip: self.flood.is_blocked(ip, self.clock)
        self.endpoint.route("REGISTER", self.registrar.handle)
        self.b2bua.install()
        self.reg_events.install()
        self.registrar.upkeep.start()
        self.keepalive.start()
        self.retention.start()
        self._lag_task = asyncio.get_running_loop().create_task(self._watch_loop_lag())

    def _configured_params(self) -> dict[str, str]:
        """Parameters given in the configuration (a starting value each)."""
        configured = {
            "EVENT_RETENTION_DAYS": self.settings.event_retention_days,
            "CDR_RETENTION_DAYS": self.settings.cdr_retention_days,
        }
        return {name: str(value) for name, value in configured.items() if value is not None}

    def set_listeners(self, listening: list[dict[str, Any]]) -> None:
        self.listeners = listening
        self.serve_hosts(str(item["host"]) for item in listening)

    def serve_hosts(self, listen_hosts: Iterable[str]) -> None:
        """Take requests to these hosts (and the advertised one) as ours. Called
        with the configured hosts before the first listener opens, so that no
        request arriving meanwhile is refused as for a domain not served."""
        hosts = {host.lower() for host in listen_hosts}
        if self.settings.advertised_host:
            hosts.add(self.settings.advertised_host.lower())
        if any(h in ("0.0.0.0", "::") for h in hosts):
            hosts.add("*")  # any address of ours: accept IP literals as the default domain
        hosts.add("localhost")
        self.own_hosts.update(hosts)

    def _apply_params(self) -> None:
        values = self.params.values
        self.flood.limits = FloodLimits(
            unauthenticated=values["REGISTER_FLOOD_LIMIT"],
            auth_failures=values["AUTH_FAIL_LIMIT"],
            authenticated=values["REGISTER_AUTHENTICATED_LIMIT"],
            window=float(values["REGISTER_FLOOD_WINDOW"]),
            block=float(values["FLOOD_BLOCK_TIME"]),
            ipv6_prefix=values["FLOOD_IPV6_PREFIX"],
        )
        self.auth.algorithms = tuple(values["AUTH_ALGORITHMS"].split(","))
        self.flapping.limit = values["REGISTER_FLAP_LIMIT"]
        self.flapping.window = float(values["REGISTER_FLAP_WINDOW"])
        self.flapping.hold = float(values["REGISTER_FLAP_HOLD"])
        if self.hep is not None:
            self.hep.enabled = values["HEP_CAPTURE"]
        pingpong = self.registrar.guard.pingpong
        pingpong.limit = values["REGISTER_PINGPONG_LIMIT"]
        pingpong.window = float(values["REGISTER_PINGPONG_WINDOW"])
        pingpong.hold = float(values["REGISTER_PINGPONG_HOLD"])
        sharing = self.registrar.guard.sharing
        sharing.max_sources = values["SHARING_MAX_SOURCES"]
        sharing.window = float(values["SHARING_WINDOW"])
        sharing.max_kicks = values["SHARING_MAX_KICKS"]
        sharing.action = values["SHARING_ACTION"]
        sharing.lock_time = float(values["SHARING_LOCK_TIME"])
        sharing.v4_prefix = values["SHARING_V4_PREFIX"]
        sharing.v6_prefix = values["SHARING_V6_PREFIX"]

    async def set_param(self, name: str, raw: object, who: str = "api") -> dict[str, Any]:
        """Validate, store, apply live, and record the change (old -> new)."""
        async with self._param_lock:
            spec, value = self.params.validate(name, raw)
            old = self.params.get(spec.name)
            if old != value:
                await self.storage.params.set(spec.name, value)
                self.params.apply(spec.name, value)
                self.events.emit(ev.ParamChanged(source=who, name=spec.name, old=old, new=value))
            return {"name": spec.name, "value": value, "old": old}

    def _storage_ok(self) -> bool:
        """Write errors happened; healthy again once no new ones appear between checks."""
        errors = int(self.storage.stats.get("write_errors", 0))
        fresh = errors > self._write_errors_seen
        self._write_errors_seen = errors
        return not fresh

    async def close(self) -> None:
        self._closing = True
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self._restore_task is not None:
            self._restore_task.cancel()
        for call in list(self.b2bua.calls.values()):
            self.b2bua.hang_up(call, "admin-hangup")
        self.reg_events.close()
        await self.reg_events.stop()
        await self.keepalive.stop()
        await self.retention.stop()
        await self.registrar.upkeep.stop()
        if self.protection is not None:
            await self.protection.stop()
        if self.cluster is not None:
            await self.cluster.stop()
            await self.cluster.location.stop()
        self.endpoint.close()
        await self.transports.close()
        if self.hep is not None:
            self.hep.close()
        await self.storage.close()
        if self.cluster_location is not None:
            await self.cluster_location.store.close()

    # --- observability ------------------------------------------------------------
    async def _watch_loop_lag(self) -> None:
        """Measure how late a short sleep wakes up: the event loop's lag."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.5)
            self.loop_lag = max(0.0, loop.time() - start - 0.5)

    def metrics_snapshot(self) -> Snapshot:
        tx = self.endpoint.tx.stats
        stats = self.endpoint.stats
        notice = self.registrar.guard.notice
        flagged = self.registrar.guard.sharing.flagged(self.clock())
        return Snapshot(
            bindings=len(self.location),
            accounts=len(self.accounts),
            register_results=dict(self.registrar.results),
            kicks=self.teardown.kicks,
            calls_ended_by_kick=self.teardown.calls_ended,
            calls_active=len(self.b2bua.calls),
            calls_started=self.b2bua.started,
            cdrs_by_reason=dict(self.b2bua.ended_by_reason),
            transactions=tx.transactions_created,
            retransmissions=tx.retransmissions_sent,
            retransmissions_absorbed=tx.retransmissions_absorbed,
            server_transactions_live=self.endpoint.tx.server_transactions,
            client_transactions_live=self.endpoint.tx.client_transactions,
            parse_errors={
                "request": tx.parse_errors_requests,
                "response": tx.parse_errors_responses,
            },
            requests_by_method=dict(stats.requests_by_method),
            responses_by_status=dict(stats.responses_sent),
            flood_blocks=self.flood.blocks,
            flood_dropped=self.flood.dropped,
            flood_blocked_sources=len(self.flood.blocked_sources(self.clock())),
            events_by_type=dict(self.events.counts),
            events_suppressed=dict(self.events.suppressed),
            event_stream_clients=self.events.subscriber_count,
            event_stream_clients_dropped=self.events.subscribers_dropped,
            keepalives_sent=self.keepalive.sent,
            keepalive_replies=self.keepalive.replies,
            keepalives_received={
                "udp": self.transports.stats.udp_keepalives,
                "stream": self.transports.stats.keepalive_pings,
            },
            unreachable_bindings=sum(1 for b in self.location if not b.reachable),
            storage={
                **self.storage.stats,
                **(self.cluster.location.stats | self.cluster.stats if self.cluster else {}),
                **(self.relay.stats if self.relay else {}),
                "events_pruned": self.retention.pruned["events"],
                "cdrs_pruned": self.retention.pruned["cdrs"],
            },
            transport=self.transports.stats.snapshot(),
            loop_lag_seconds=self.loop_lag,
            hep_sent=self.hep.sent if self.hep else 0,
            hep_dropped=self.hep.dropped if self.hep else 0,
            kick_messages=dict(notice.results) if notice else {},
            reg_subscriptions=len(self.reg_events),
            reg_event_results=dict(self.reg_events.results),
            sharing_suspected_accounts=len(flagged),
            sharing_locked_accounts=sum(1 for f in flagged if f["locked_until"]),
        )

    def health(self) -> dict[str, Any]:
        storage = dict(self.storage.stats)
        problem = self.storage.problem
        cluster_problem = self.cluster_location.problem if self.cluster_location else None
        checks = {
            "sip_transports": bool(self.listeners) and not self._closing,
            "storage": problem is None
            and (storage.get("write_errors", 0) == 0 or self._storage_ok()),
            "event_loop": self.loop_lag < 1.0,
            "bindings": self.registrar.upkeep.restore_failed is None,
        }
        if self.cluster_location is not None:  # a single node has no cluster to check
            checks["cluster"] = cluster_problem is None
        reasons = {
            "sip_transports": "no SIP listener" if self.listeners else "not listening yet",
            "storage": problem or "storage write errors since the last check",
            "cluster": cluster_problem or "",
            "event_loop": f"event loop lagging {self.loop_lag:.1f} s",
            "bindings": self.registrar.upkeep.restore_failed or "",
        }
        return {
            "status": "ok" if all(checks.values()) else "degraded",
            "checks": checks,
            "reasons": {name: reasons[name] for name, ok in checks.items() if not ok},
            "storage": {
                "backend": self.settings.db.partition(":")[0],
                "write_behind_depth": storage.get("write_behind_depth", 0),
                "events_dropped": storage.get("events_dropped", 0),
                "cdrs_dropped": storage.get("cdrs_dropped", 0),
            },
            "loop_lag_ms": round(self.loop_lag * 1000, 1),
            "sip": self.listeners,
            "domains": sorted(self.domains.names),
            "node": self.settings.node_id,
            "uptime": round(self.clock() - self.started_at, 1),
            "registrations": len(self.location),
            "restoring_registrations": self.registrar.upkeep.restoring,
            "accounts": len(self.accounts),
            "calls": len(self.b2bua.calls),
        }


__all__ = ["ParamError", "Switch"]
