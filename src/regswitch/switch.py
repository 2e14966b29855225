"""The running switch: every service, built once and shared by SIP and the console."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Any

from regswitch import events as ev
from regswitch.calls.b2bua import B2BUA
from regswitch.calls.teardown import Teardown
from regswitch.config import Settings
from regswitch.endpoint import Endpoint
from regswitch.events import EventBus
from regswitch.keepalive import Keepalive
from regswitch.params import ParamError, Params
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard, FloodLimits
from regswitch.registrar.accounts import Accounts
from regswitch.registrar.auth import Authenticator, parse_networks
from regswitch.registrar.bindings import Location
from regswitch.registrar.service import Registrar
from regswitch.storage.factory import open_storage
from regswitch.transport.manager import TransportManager


class Switch:
    def __init__(self, settings: Settings, endpoint: Endpoint, transports: TransportManager) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.transports = transports
        self.listeners: list[dict[str, Any]] = []
        self.clock = time.time
        self.started_at = self.clock()
        self.loop = asyncio.get_running_loop()
        self.storage = open_storage(settings.db)
        self.params = Params()
        self.events = EventBus(self.storage.events, self.clock)
        self.accounts = Accounts(self.storage.accounts, self.clock)
        self.location = Location()
        secret = settings.secret.encode() if settings.secret else secrets.token_bytes(32)
        self.auth = Authenticator(
            hashlib.sha256(secret).digest(), lambda: secrets.token_hex(6), self.clock, settings.nonce_lifetime
        )
        self.flood = FloodGuard(trusted=parse_networks(settings.trusted_networks))
        self.flapping = FlapDetector()
        self.registrar = Registrar(
            accounts=self.accounts,
            location=self.location,
            store=self.storage.bindings,
            params=self.params,
            events=self.events,
            auth=self.auth,
            flood=self.flood,
            flapping=self.flapping,
            clock=self.clock,
            new_id=lambda: secrets.token_hex(8),
            domains=settings.domains,
            own_hosts=set(),
            node=settings.node_id,
        )
        self.keepalive = Keepalive(
            endpoint, self.location, self.params, self.events, self.clock, settings.default_domain
        )
        self.registrar.prober = self.keepalive.probe
        self.b2bua = B2BUA(
            endpoint, self.registrar, self.events, self.storage.cdrs, self.clock,
            advertised_host=settings.advertised_host,
            no_answer_timeout=settings.no_answer_timeout,
            max_call_duration=settings.max_call_duration,
        )
        self.teardown = Teardown(self.b2bua)
        self.registrar.kicker = self.teardown.kick
        self._param_lock = asyncio.Lock()

    async def open(self) -> None:
        await self.storage.open()
        self.params.load(await self.storage.params.load())
        self._apply_protection_params()
        self.params.on_change(lambda name, old, new: self._apply_protection_params())
        await self.accounts.load()
        await self.registrar.restore()
        self.endpoint.route("REGISTER", self.registrar.handle)
        self.b2bua.install()
        self.registrar.start()
        self.keepalive.start()

    def set_listeners(self, listening: list[dict[str, Any]]) -> None:
        self.listeners = listening
        hosts = {str(item["host"]).lower() for item in listening}
        if self.settings.advertised_host:
            hosts.add(self.settings.advertised_host.lower())
        if any(h in ("0.0.0.0", "::") for h in hosts):
            hosts.add("*")  # any address of ours: accept IP literals as the default domain
        hosts.add("localhost")
        self.registrar.own_hosts.update(hosts)

    def _apply_protection_params(self) -> None:
        values = self.params.values
        self.flood.limits = FloodLimits(
            requests=values["REGISTER_FLOOD_LIMIT"],
            auth_failures=values["AUTH_FAIL_LIMIT"],
            window=float(values["REGISTER_FLOOD_WINDOW"]),
            block=float(values["FLOOD_BLOCK_TIME"]),
        )
        self.flapping.limit = values["REGISTER_FLAP_LIMIT"]
        self.flapping.window = float(values["REGISTER_FLAP_WINDOW"])
        self.flapping.hold = float(values["REGISTER_FLAP_HOLD"])

    async def set_param(self, name: str, raw: object, who: str = "api") -> dict[str, Any]:
        """Validate, store, apply live, and record the change (old -> new)."""
        async with self._param_lock:
            spec, value = self.params.validate(name, raw)
            old = self.params.get(spec.name)
            if old != value:
                await self.storage.params.set(spec.name, value)
                self.params.apply(spec.name, value)
                self.events.emit(ev.PARAM_CHANGED, source=who, name=spec.name, old=old, new=value)
            return {"name": spec.name, "value": value, "old": old}

    async def close(self) -> None:
        for call in list(self.b2bua.calls.values()):
            self.b2bua.hang_up(call, "admin-hangup")
        await self.keepalive.stop()
        await self.registrar.stop()
        self.endpoint.close()
        await self.transports.close()
        await self.storage.close()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "sip": self.listeners,
            "uptime": round(self.clock() - self.started_at, 1),
            "registrations": len(self.location),
            "accounts": len(self.accounts),
            "calls": len(self.b2bua.calls),
        }


__all__ = ["ParamError", "Switch"]
