"""A pure "lossy loop": two TransactionLayers wired back to back with a fake
clock, dropping or duplicating the packets a test chooses (pjsip's loop
transport, without the I/O). Plus small builders of SIP test messages.

    loop = LossyLoop(a, b, drop=drop_nth("a", 0))
    loop.on_b = lambda loop, event: ...  # the UAS's TU
    tx = a.send_request(request, loop.flow_from("a"), loop.now)
    loop.run(40.0)
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from regswitch.sip.events import Event
from regswitch.sip.flow import Flow
from regswitch.sip.message import Headers, Request
from regswitch.sip.txlayer import TransactionLayer


def counter_ids(prefix: str = "id") -> Callable[[], str]:
    """A deterministic id factory: prefix1, prefix2, ..."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


@dataclass
class Packet:
    src: str  # "a" or "b"
    index: int  # how many packets `src` sent before this one
    data: bytes
    flow: Flow  # as the sender gave it
    time: float
    dropped: bool = False
    duplicated: bool = False

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def is_response(self) -> bool:
        return self.data.startswith(b"SIP/")


Rule = Callable[[Packet], bool]


def drop_nth(src: str, *indexes: int) -> Rule:
    """Drop the packets `src` sends with these 0-based indexes."""
    wanted = set(indexes)
    return lambda p: p.src == src and p.index in wanted


class first_matching:
    """Match the first `count` packets from `src` whose first line starts with
    `prefix` (e.g. b"SIP/2.0 200", b"INVITE ")."""

    def __init__(self, src: str, prefix: str, count: int = 1) -> None:
        self.src = src
        self.prefix = prefix
        self.left = count

    def __call__(self, packet: Packet) -> bool:
        if self.left and packet.src == self.src and packet.first_line.startswith(self.prefix):
            self.left -= 1
            return True
        return False


Handler = Callable[["LossyLoop", Event], None]


@dataclass
class Side:
    name: str
    layer: TransactionLayer
    addr: tuple[str, int]
    events: list[Event] = field(default_factory=list)
    sent: int = 0


class LossyLoop:
    """Two layers, one fake clock. Delivery takes `latency` seconds; packets
    the `drop` rule picks vanish, those `duplicate` picks arrive twice."""

    def __init__(
        self,
        a: TransactionLayer,
        b: TransactionLayer,
        *,
        transport: str = "udp",
        a_addr: tuple[str, int] = ("192.0.2.1", 5060),
        b_addr: tuple[str, int] = ("192.0.2.2", 5060),
        drop: Rule | None = None,
        duplicate: Rule | None = None,
        latency: float = 0.0,
        start: float = 1000.0,
    ) -> None:
        self.a = Side("a", a, a_addr)
        self.b = Side("b", b, b_addr)
        self.transport = transport
        self.drop = drop
        self.duplicate = duplicate
        self.latency = latency
        self.now = start
        self.packets: list[Packet] = []
        self.unroutable: list[Packet] = []
        self.on_a: Handler | None = None
        self.on_b: Handler | None = None
        self._in_flight: list[tuple[float, int, str, bytes, Flow]] = []
        self._seq = itertools.count()

    def side(self, name: str) -> Side:
        return self.a if name == "a" else self.b

    def other(self, name: str) -> Side:
        return self.b if name == "a" else self.a

    def flow_from(self, name: str) -> Flow:
        """The flow `name` sends on to reach the other side."""
        me, peer = self.side(name), self.other(name)
        return Flow(self.transport, peer.addr, me.addr, 0 if self.transport == "udp" else 1)

    # --------------------------------------------------------------- moving

    def _collect(self) -> bool:
        """Take both layers' outgoing into flight; True if there was any."""
        moved = False
        for me in (self.a, self.b):
            for data, flow in me.layer.outgoing():
                moved = True
                packet = Packet(me.name, me.sent, data, flow, self.now)
                me.sent += 1
                self.packets.append(packet)
                peer = self.other(me.name)
                if flow.remote != peer.addr:
                    self.unroutable.append(packet)
                    continue
                if self.drop is not None and self.drop(packet):
                    packet.dropped = True
                    continue
                copies = 1
                if self.duplicate is not None and self.duplicate(packet):
                    packet.duplicated = True
                    copies = 2
                arrival_flow = Flow(flow.transport, flow.local, flow.remote, flow.conn_id)
                for _ in range(copies):
                    heapq.heappush(
                        self._in_flight,
                        (self.now + self.latency, next(self._seq), peer.name, data, arrival_flow),
                    )
        return moved

    def _dispatch(self) -> bool:
        """Hand both layers' events to the test's handlers; True if any."""
        any_event = False
        for me, handler in ((self.a, self.on_a), (self.b, self.on_b)):
            for event in me.layer.events():
                any_event = True
                me.events.append(event)
                if handler is not None:
                    handler(self, event)
        return any_event

    def pump(self) -> None:
        """Deliver everything due by `now` until both sides are quiet."""
        for _ in range(10_000):
            moved = self._collect()
            delivered = False
            while self._in_flight and self._in_flight[0][0] <= self.now:
                _, _, dst, data, flow = heapq.heappop(self._in_flight)
                self.side(dst).layer.receive(data, flow, self.now)
                delivered = True
            if not (moved or delivered or self._dispatch()):
                return
        raise AssertionError("the loop does not settle")

    def next_deadline(self) -> float | None:
        times = [t for t in (self.a.layer.next_timer(), self.b.layer.next_timer()) if t is not None]
        if self._in_flight:
            times.append(self._in_flight[0][0])
        return min(times) if times else None

    def run(self, duration: float) -> None:
        """Advance the clock by `duration`, firing timers and deliveries in order."""
        end = self.now + duration
        self.pump()
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.a.layer.handle_timers(self.now)
            self.b.layer.handle_timers(self.now)
            self.pump()
        self.now = end

    def sent_lines(self, name: str) -> list[str]:
        """First lines of what `name` sent, dropped ones included."""
        return [p.first_line for p in self.packets if p.src == name]


# ------------------------------------------------------------------ builders


def sip_request(
    method: str,
    *,
    uri: str = "sip:bob@example.com",
    via: str | None = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtest1",
    from_: str = "<sip:alice@example.com>;tag=ftag1",
    to: str = "<sip:bob@example.com>",
    call_id: str = "call-1@example.com",
    cseq: int = 1,
    cseq_method: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> Request:
    headers = Headers()
    if via is not None:
        headers.add("Via", via)
    headers.add("Max-Forwards", "70")
    headers.add("From", from_)
    headers.add("To", to)
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} {cseq_method or method}")
    for name, value in extra:
        headers.add(name, value)
    return Request(method, uri, headers, body)


def sip_request_bytes(method: str, **kwargs: object) -> bytes:
    from regswitch.sip.serialise import serialise

    return serialise(sip_request(method, **kwargs))  # type: ignore[arg-type]
