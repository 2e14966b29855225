"""A B2BUA on the real transaction layer and endpoint, with a fake loop (manual clock,
timers run by `advance`), a fake transport that records what is sent, a fake registrar
(accounts, bindings) and in-memory CDRs and events. No sockets, no event loop.

    sw = FakeSwitch()
    sw.account("alice"); sw.bind("bob", BOB1)
    a = sw.invite(ALICE, "bob")            # the caller's INVITE goes in
    inv = sw.take(BOB1, "INVITE")          # what the switch sent toward bob's device
    sw.reply(inv, 200, BOB1, to_tag="b1")  # the device answers
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from regswitch.calls.b2bua import B2BUA
from regswitch.calls.teardown import Teardown
from regswitch.common.domain_events import DomainEvent, details_of
from regswitch.registrar.bindings import Binding
from regswitch.sip.flow import Flow
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise
from regswitch.sip.txlayer import TransactionLayer
from regswitch.sip.uri import URI
from regswitch.storage.base import CdrRecord
from regswitch.transport.endpoint import Endpoint

DOMAIN = "example.com"
SWITCH = ("10.0.0.100", 5060)
ALICE = ("10.0.0.1", 5061)
BOB1 = ("10.0.0.2", 5062)
BOB2 = ("10.0.0.3", 5063)
OFFER = (
    b"v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)
ANSWER = (
    b"v=0\r\no=bob 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    b"m=audio 5000 RTP/AVP 0\r\n"
)


def flow(peer: tuple[str, int]) -> Flow:
    return Flow("udp", peer, SWITCH)


class Handle:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time(), call_at(), call_later(); `advance(seconds)` runs what falls due, in order."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._heap: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> Handle:
        handle = Handle(when, callback, args)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Handle:
        return self.call_at(self.now + delay, callback, *args)

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, handle = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self.now = max(self.now, when)
            handle.callback(*handle.args)
        self.now = target

    def pending(self) -> int:
        return sum(1 for _, _, h in self._heap if not h.cancelled)


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[Request | Response, Flow]] = []

    def send(self, data: bytes, flow: Flow) -> bool:
        self.sent.append((parse_message(data), flow))
        return True


class FakeEvents:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: DomainEvent) -> None:
        self.emitted.append((event.TYPE, details_of(event)))


class FakeCdrs:
    def __init__(self) -> None:
        self.records: list[CdrRecord] = []

    def add(self, record: CdrRecord) -> None:
        self.records.append(record)


@dataclass
class FakeEntry:
    """An account as the B2BUA sees it: its allowed networks."""

    networks: tuple[str, ...] = ()

    def allows(self, ip: str) -> bool:
        return any(ipaddress.ip_address(ip) in ipaddress.ip_network(n) for n in self.networks)


class FakeRegistrar:
    """What the B2BUA asks of the registrar: callers by From, accounts, bindings.

    A caller is authenticated by its account's allowed networks, or by a
    `Proxy-Authorization: ok <aor>` header standing in for valid digest
    credentials; anyone else gets a stateless 407."""

    def __init__(self) -> None:
        self.accounts: dict[str, FakeEntry] = {}
        self.bindings: dict[str, list[Binding]] = {}
        # a restart's restore: the accounts whose stored bindings are not back
        # yet, and the reads asked for them, answered by finish_restore
        self.unrestored: set[str] = set()
        self.restore_reads: list[tuple[tuple[str, ...], Callable[[bool], None]]] = []

    def aor_of(self, uri: URI) -> str | None:
        if uri.user and uri.host == DOMAIN:
            return f"{uri.user}@{uri.host}"
        return None

    def authenticate_caller(self, stx: Any) -> str | None:
        aor = self.aor_of(stx.request.from_.uri)
        entry = self.accounts.get(aor) if aor else None
        if aor is None or entry is None:
            stx.respond(403, "Forbidden")
            return None
        if entry.allows(stx.flow.remote[0]):
            return aor
        if stx.request.headers.get("proxy-authorization") == f"ok {aor}":
            return aor
        stx.send(stx.response(407), forget=True)
        return None

    def list(self, aor: str) -> list[Binding]:
        return list(self.bindings.get(aor, []))

    def restored(self, aor: str) -> bool:
        return aor not in self.unrestored

    def restore_accounts(self, aors: Iterable[str], then: Callable[[bool], None]) -> None:
        self.restore_reads.append((tuple(aors), then))

    def finish_restore(self, *, ok: bool = True) -> None:
        """The reads asked for so far end (or fail): their accounts are back."""
        reads, self.restore_reads = self.restore_reads, []
        for aors, then in reads:
            if ok:
                self.unrestored.difference_update(aors)
            then(ok)


@dataclass
class UacCall:
    """The caller's side of one INVITE, as the test drives it."""

    request: Request
    responses: list[Response] = field(default_factory=list)


class FakeSwitch:
    def __init__(self, **b2bua_args: Any) -> None:
        self.loop = FakeLoop()
        self.sender = FakeSender()
        ids = itertools.count(1)
        self.tx = TransactionLayer(id_factory=lambda: f"id{next(ids)}")
        self.endpoint = Endpoint(
            self.tx,
            self.sender,
            id_factory=lambda: f"tag{next(ids)}",
            loop=self.loop,  # type: ignore[arg-type]
        )
        self.registrar = FakeRegistrar()
        self.events = FakeEvents()
        self.cdrs = FakeCdrs()
        self.b2bua = B2BUA(
            self.endpoint,
            self.registrar,
            self.events,
            self.cdrs,  # type: ignore[arg-type]
            self.loop.time,
            **b2bua_args,
        )
        self.b2bua.install()
        self.teardown = Teardown(self.b2bua)
        self._n = itertools.count(1)

    # --- set-up -----------------------------------------------------------------------
    def account(self, user: str, networks: tuple[str, ...] = ("10.0.0.0/24",)) -> str:
        """An account, by default authenticated by the network of ALICE, BOB1, BOB2."""
        aor = f"{user}@{DOMAIN}"
        self.registrar.accounts.setdefault(aor, FakeEntry(networks))
        return aor

    def bind(self, user: str, peer: tuple[str, int]) -> Binding:
        aor = self.account(user)
        n = next(self._n)
        binding = Binding(
            id=f"b{n}",
            aor=aor,
            contact=f"sip:{user}@{peer[0]}:{peer[1]}",
            transport="udp",
            source_ip=peer[0],
            source_port=peer[1],
            local_ip=SWITCH[0],
            local_port=SWITCH[1],
            conn_id=0,
            call_id=f"reg{n}",
            cseq=1,
            expires_at=self.loop.now + 3600,
            instance=None,
            reg_id=None,
            user_agent=None,
            path=(),
            registered_at=0.0,
            refreshed_at=0.0,
        )
        self.registrar.bindings.setdefault(aor, []).append(binding)
        return binding

    def unbind(self, binding: Binding) -> None:
        self.registrar.bindings[binding.aor].remove(binding)

    # --- input --------------------------------------------------------------------------
    def receive(self, message: Request | Response, peer: tuple[str, int]) -> None:
        self.endpoint.on_data(serialise(message), flow(peer))

    def invite(
        self,
        peer: tuple[str, int],
        callee: str,
        *,
        caller: str = "alice",
        body: bytes = OFFER,
        max_forwards: int = 70,
        extra: dict[str, str] | None = None,
        contact: str | None = None,
    ) -> Request:
        n = next(self._n)
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {peer[0]}:{peer[1]};branch=z9hG4bKa{n}")
        h.add("Max-Forwards", str(max_forwards))
        h.add("From", f"<sip:{caller}@{DOMAIN}>;tag=atag{n}")
        h.add("To", f"<sip:{callee}@{DOMAIN}>")
        h.add("Call-ID", f"acall{n}@{peer[0]}")
        h.add("CSeq", "10 INVITE")
        h.add("Contact", contact or f"<sip:{caller}@{peer[0]}:{peer[1]}>")
        if body:
            h.add("Content-Type", "application/sdp")
        for name, value in (extra or {}).items():
            h.add(name, value)
        request = Request("INVITE", f"sip:{callee}@{DOMAIN}", h, body)
        self.receive(request, peer)
        return request

    def reply(
        self,
        request: Request,
        status: int,
        peer: tuple[str, int],
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        contact: str | None = None,
    ) -> Response:
        """A device's response to a request the switch sent it."""
        response = response_for(request, status, to_tag=to_tag, body=body)
        if request.method == "INVITE" and 100 < status < 300:
            response.headers.add("Contact", contact or f"<sip:dev@{peer[0]}:{peer[1]}>")
        if body:
            response.headers.add("Content-Type", "application/sdp")
        self.receive(response, peer)
        return response

    def in_dialog(
        self,
        method: str,
        peer: tuple[str, int],
        *,
        call_id: str,
        from_: str,
        to: str,
        cseq: int,
        uri: str = "sip:10.0.0.100:5060",
        body: bytes = b"",
        extra: dict[str, str] | None = None,
        max_forwards: int = 70,
        contact: str | None = None,
    ) -> Request:
        n = next(self._n)
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {peer[0]}:{peer[1]};branch=z9hG4bKd{n}")
        h.add("Max-Forwards", str(max_forwards))
        h.add("From", from_)
        h.add("To", to)
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} {method}")
        if method == "INVITE":
            h.add("Contact", f"<sip:dev@{peer[0]}:{peer[1]}>")
        if body:
            h.add("Content-Type", "application/sdp")
        for name, value in (extra or {}).items():
            h.add(name, value)
        request = Request(method, uri, h, body)
        self.receive(request, peer)
        return request

    # --- output ---------------------------------------------------------------------------
    def sent_to(self, peer: tuple[str, int]) -> list[Request | Response]:
        return [m for m, f in self.sender.sent if f.remote == peer]

    def take(self, peer: tuple[str, int], what: str | int) -> Any:
        """The first unconsumed message to `peer` that is a request `what` or a response
        with status `what`; fails if there is none."""
        for i, (message, f) in enumerate(self.sender.sent):
            if f.remote != peer:
                continue
            if (isinstance(message, Request) and message.method == what) or (
                isinstance(message, Response) and message.status == what
            ):
                del self.sender.sent[i]
                return message
        raise AssertionError(f"nothing {what!r} sent to {peer}; sent: {self.describe(peer)}")

    def count(self, peer: tuple[str, int], what: str | int, method: str | None = None) -> int:
        """How many distinct messages (retransmissions not counted) of `what` went to `peer`;
        for responses, `method` narrows by CSeq method."""
        seen = set()
        for m in self.sent_to(peer):
            if isinstance(m, Request) and m.method == what:
                seen.add((m.top_via.branch, m.method))
            elif isinstance(m, Response) and m.status == what and method in (None, m.cseq.method):
                seen.add((m.top_via.branch, m.cseq.method))
        return len(seen)

    def describe(self, peer: tuple[str, int]) -> list[str]:
        return [
            m.method if isinstance(m, Request) else f"{m.status} {m.cseq.method}"
            for m in self.sent_to(peer)
        ]

    def clear(self) -> None:
        self.sender.sent.clear()

    # --- the A-leg as a caller sees it --------------------------------------------------
    def ack_2xx(
        self, invite: Request, ok: Response, peer: tuple[str, int], body: bytes = b""
    ) -> Request:
        n = next(self._n)
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {peer[0]}:{peer[1]};branch=z9hG4bKack{n}")
        h.add("Max-Forwards", "70")
        h.add("From", invite.headers.get("from") or "")
        h.add("To", ok.headers.get("to") or "")
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq.seq} ACK")
        if body:
            h.add("Content-Type", "application/sdp")
        ack = Request("ACK", ok.contacts[0].uri_text, h, body)
        self.receive(ack, peer)
        return ack

    def cancel(self, invite: Request, peer: tuple[str, int]) -> None:
        h = Headers()
        h.add("Via", invite.headers.get_all("via")[0])
        h.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            h.add(name, invite.headers.get(name) or "")
        h.add("CSeq", f"{invite.cseq.seq} CANCEL")
        self.receive(Request("CANCEL", invite.uri, h), peer)

    def answered_call(
        self, *, forks: tuple[tuple[str, int], ...] = (BOB1,)
    ) -> tuple[Request, Request, Response]:
        """alice -> bob answered by the first fork and ACKed: (A INVITE, B INVITE, A 200)."""
        self.account("alice")
        for peer in forks:
            self.bind("bob", peer)
        a_invite = self.invite(ALICE, "bob")
        b_invite = self.take(forks[0], "INVITE")
        self.reply(b_invite, 200, forks[0], to_tag="btag", body=ANSWER)
        ok = self.take(ALICE, 200)
        self.ack_2xx(a_invite, ok, ALICE)
        return a_invite, b_invite, ok

    def only_call(self) -> Any:
        calls = list(self.b2bua.calls.values())
        assert len(calls) == 1, calls
        return calls[0]
