"""The registrar on the real transaction layer and endpoint, without sockets:
REGISTERs go in as bytes, what the switch sends is recorded, storage is the
in-memory backend, kicks are recorded instead of ending calls. The asyncio
loop is the test's own (the binding store answers through futures).

    reg = await RegistrarHarness.start()
    await reg.account("alice", "pw")
    final = await reg.register("alice", "pw", DEVICE1)     # 401, then 200
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

from regswitch.common.events import EventBus
from regswitch.common.params import Params
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard
from regswitch.registrar.accounts import Accounts
from regswitch.registrar.auth import Authenticator
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.service import Registrar
from regswitch.sip.flow import Flow
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import serialise
from regswitch.sip.txlayer import TransactionLayer
from regswitch.storage.memory import MemoryStorage
from regswitch.transport.endpoint import Endpoint
from support.digest import authorization, challenges_in

DOMAIN = "example.com"
SWITCH = ("10.0.0.100", 5060)
DEVICE1 = ("10.0.0.1", 5061)
DEVICE2 = ("10.0.0.2", 5062)


class Sent:
    def __init__(self) -> None:
        self.out: list[tuple[Request | Response, Flow]] = []

    def send(self, data: bytes, flow: Flow) -> bool:
        self.out.append((parse_message(data), flow))
        return True


class RegistrarHarness:
    def __init__(self, storage: MemoryStorage, *, shared_accounts: bool = False) -> None:
        self.now = 1_000_000.0
        self.storage = storage
        self.sent = Sent()
        ids = itertools.count(1)
        self.tx = TransactionLayer(id_factory=lambda: f"id{next(ids)}")
        self.endpoint = Endpoint(self.tx, self.sent, id_factory=lambda: f"tag{next(ids)}")
        self.params = Params()
        self.events = EventBus(storage.events, self.clock)
        self.accounts = Accounts(storage.accounts, self.clock, shared=shared_accounts)
        self.location = Location()
        self.kicks: list[tuple[str, str]] = []  # (binding id, reason)
        self.registrar = Registrar(
            accounts=self.accounts,
            location=self.location,
            store=storage.bindings,
            params=self.params,
            events=self.events,
            auth=Authenticator(b"k" * 32, lambda: f"salt{next(ids)}", self.clock),
            flood=FloodGuard(),
            flapping=FlapDetector(),
            clock=self.clock,
            new_id=lambda: f"b{next(ids)}",
            domains=[DOMAIN],
            own_hosts={SWITCH[0]},
            kicker=self._kick,
            prober=self._probe,
            confirmer=self._confirm,
        )
        self.endpoint.route("REGISTER", self.registrar.handle)
        self._cseq = Counter[str]()

    @classmethod
    async def start(cls, *, shared_accounts: bool = False) -> RegistrarHarness:
        """`shared_accounts`: as a cluster node, whose storage other nodes write."""
        storage = MemoryStorage()
        await storage.open()
        return cls(storage, shared_accounts=shared_accounts)

    async def close(self) -> None:
        await self.storage.close()

    def clock(self) -> float:
        return self.now

    def _kick(self, binding: Binding, reason: str) -> list[str]:
        self.kicks.append((binding.id, reason))
        return []

    async def _probe(self, binding: Binding, timeout: float) -> bool:
        return True  # the old device answers: it is alive

    async def _confirm(self, flow: Flow, uri: str, timeout: float) -> bool:
        return True

    # --- set-up -------------------------------------------------------------------------
    async def account(self, user: str, password: str, **fields: Any) -> str:
        await self.accounts.create({"user": user, "domain": DOMAIN, "password": password, **fields})
        return f"{user}@{DOMAIN}"

    def set(self, name: str, value: str) -> None:
        self.params.apply(name, self.params.validate(name, value)[1])

    # --- driving ------------------------------------------------------------------------
    def request(
        self, user: str, peer: tuple[str, int], *, call_id: str | None = None,
        expires: int = 3600, extra: dict[str, str] | None = None, contact: str | None = None,
    ) -> Request:  # fmt: skip
        key = call_id or f"reg-{user}-{peer[0]}-{peer[1]}"
        self._cseq[key] += 1
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {peer[0]}:{peer[1]};rport;branch=z9hG4bK{key}{self._cseq[key]}")
        h.add("Max-Forwards", "70")
        h.add("From", f"<sip:{user}@{DOMAIN}>;tag=f{self._cseq[key]}")
        h.add("To", f"<sip:{user}@{DOMAIN}>")
        h.add("Call-ID", key)
        h.add("CSeq", f"{self._cseq[key]} REGISTER")
        h.add("Contact", contact or f"<sip:{user}@{peer[0]}:{peer[1]}>")
        h.add("Expires", str(expires))
        for name, value in (extra or {}).items():
            h.add(name, value)
        return Request("REGISTER", f"sip:{DOMAIN}", h, b"")

    async def send(self, request: Request, peer: tuple[str, int]) -> Response:
        """Feed `request` in; the final response the switch sent back to `peer`."""
        before = len(self.sent.out)
        self.endpoint.on_data(serialise(request), Flow("udp", peer, SWITCH))
        for _ in range(100):  # the binding store answers through the loop
            finals = [
                m for m, f in self.sent.out[before:]
                if isinstance(m, Response) and m.status >= 200 and f.remote == peer
            ]  # fmt: skip
            if finals:
                return finals[-1]
            await asyncio.sleep(0)
        raise AssertionError(f"no final response to {request.method} from {peer}")

    async def register(
        self, user: str, password: str, peer: tuple[str, int], **kwargs: Any
    ) -> Response:
        """A full registration: the challenge, then the answer to it."""
        first = await self.send(self.request(user, peer, **kwargs), peer)
        if first.status != 401:
            return first
        challenge = challenges_in(first)[0]
        value = authorization(
            challenge, method="REGISTER", uri=f"sip:{DOMAIN}", username=user,
            password=password, nc=1,
        )  # fmt: skip
        extra = {**kwargs.pop("extra", {}), challenge.authorization_header: value}
        return await self.send(self.request(user, peer, extra=extra, **kwargs), peer)

    def events_of(self, type: str) -> list[dict[str, Any]]:
        return [r.details for r in self.events.recent() if r.type == type]
