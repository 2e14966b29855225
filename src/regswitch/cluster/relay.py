"""Requests leave through the flow the phone opened: a B-leg to a binding of
another node goes through that node.

A phone behind NAT, or on a TCP/TLS connection, can be reached only through
the pinhole or the connection it opened to the node that received its
REGISTER. So a node placing a call to a binding of another node (the
binding's `node`) sends the B-leg INVITE to that node's relay address (a
private UDP listener every node opens, named in the node registry) with

    Route: <sip:RELAY-OF-A;lr;rsr-b=BINDING-ID>

and node A, finding that Route is its own, forwards the request over the
binding's flow, as a record-routing stateless proxy (RFC 3261 §16.11):

- it pushes a Via whose branch is a hash of the incoming one (a
  retransmission, the CANCEL and the ACK of a failure get the same branch,
  as the phone needs), stamping the sender's Via with received/rport;
- on the dialog-creating INVITE it adds two Record-Routes, one facing the
  phone (its public listener, `rsr-p`) and one facing the calling node (its
  relay address, `rsr-b`), so every later request of the dialog, from either
  side, passes through it again and leaves on the right side;
- responses whose top Via is its own go to the next Via: the calling node's
  relay address, or the phone's flow.

The calling node stays the only B2BUA of the call: its dialogs, timers,
kicks and the CDR are where they were. Node A keeps no state (its binding
table says where the phone is). Only requests a node may relay are relayed:
toward a binding it holds, from another node's relay address; toward another
node's relay address, from the very source (or connection) of that binding.
Everything else naming a relay Route is dropped.

The internal hop is UDP, node to node (LAN or loopback).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable

from regswitch.registrar.bindings import Binding, Location
from regswitch.sip.errors import ParseError
from regswitch.sip.flow import Flow
from regswitch.sip.headers import Via, parse_name_addr, parse_via
from regswitch.sip.message import Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise
from regswitch.transport.endpoint import Sender

log = logging.getLogger("regswitch.cluster.relay")

MARK = b"rsr-"  # in every relay Route, Record-Route and Via branch: the cheap test
BRANCH = "z9hG4bK-rsr-"
Address = tuple[str, int]
DataHandler = Callable[[bytes, Flow], None]


class Relay:
    def __init__(
        self,
        *,
        node: str,
        location: Location,
        sender: Sender,
        relays: Callable[[], dict[str, Address]],
    ) -> None:
        self.node = node
        self.location = location
        self.sender = sender
        self.relays = relays  # node id -> relay address, of the live nodes
        self.address: Address | None = None  # ours, once its listener is open
        # signs the flows we record in Routes and Vias (only we read them back)
        self._key = secrets.token_bytes(32)
        self._public: set[Address] = set()
        self.relayed = 0
        self.refused = 0

    def listening(self, relay: Address, public: list[Address]) -> None:
        """Our relay listener and the SIP listeners phones use (they are in our Routes)."""
        self.address = relay
        self._public = set(public)

    # --- the calling node ---------------------------------------------------------
    def route(self, binding: Binding) -> tuple[Flow, str] | None:
        """The B2BUA's way to a binding of another node: (flow to that node's
        relay, the Route to put first); None for our own bindings, or when the
        binding's node is not known alive (then the binding's own flow, which
        reaches a phone that is not behind NAT)."""
        if self.address is None or not binding.node or binding.node == self.node:
            return None
        target = self.relays().get(binding.node)
        if target is None:
            return None
        route = f"<sip:{_host(target[0])}:{target[1]};lr;rsr-b={binding.id}>"
        return Flow("udp", target, self.address), route

    # --- the node holding the flow --------------------------------------------------
    def wrap(self, inner: DataHandler) -> DataHandler:
        """A transport data handler that relays what is ours to relay, and
        passes everything else to `inner` (the endpoint)."""

        def on_data(data: bytes, flow: Flow) -> None:
            if MARK in data and self.handle(data, flow):
                return
            inner(data, flow)

        return on_data

    def handle(self, data: bytes, flow: Flow) -> bool:
        """Relay `data` if it is a relayed message for us; True if it was ours
        (relayed or dropped), False to let the endpoint have it."""
        try:
            message = parse_message(data)
            if isinstance(message, Request):
                return self._request(message, flow)
            return self._response(message)
        except ParseError:
            return False  # the endpoint answers malformed messages

    def _ours(self, value: str) -> dict[str, str | None] | None:
        """The URI parameters of a Route naming one of our addresses with a relay mark."""
        try:
            uri = parse_name_addr(value).uri
        except ParseError:
            return None
        if not any(name.startswith("rsr-") for name in uri.params):
            return None
        at = (uri.host.strip("[]"), uri.port or 5060)
        if at != self.address and at not in self._public:
            return None
        return uri.params

    def _request(self, request: Request, flow: Flow) -> bool:
        headers = request.headers
        routes = headers.values("route")
        popped: dict[str, str | None] = {}
        first: dict[str, str | None] | None = None
        while routes:
            params = self._ours(routes[0])
            if params is None:
                break
            first = first or params
            popped.update((k, v) for k, v in params.items() if k.startswith("rsr-"))
            routes.pop(0)
        if first is None:
            return False
        binding_id = str(popped.get("rsr-b") or popped.get("rsr-p") or "")
        recorded = self._recorded(str(popped.get("rsr-f") or ""), str(popped.get("rsr-m") or ""))
        phone: Flow | None  # the phone's side of this hop
        if "rsr-b" in first:
            # from another node toward the phone: only from a live node's relay address
            if flow.remote not in self.relays().values():
                return self._refuse(request, flow, 403, "Not a cluster node")
            if request.to.tag is not None and recorded is not None:
                phone = recorded  # in a dialog: the flow it was set up over
            else:
                binding = self.location.get(binding_id)
                if binding is None or binding.node != self.node:
                    return self._refuse(request, flow, 480, "Temporarily Unavailable")
                phone = binding.flow
            out = phone
        else:
            # from the phone of the dialog, to the node the dialog lives on
            if recorded is None or not _same_party(recorded, flow) or self.address is None:
                return self._refuse(request, flow, 403, "Forbidden")
            target = request.ruri
            to = (target.host.strip("[]"), target.port or 5060)
            if to not in self.relays().values():
                return self._refuse(request, flow, 404, "Not Found")
            phone = recorded
            out = Flow("udp", to, self.address)
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return self._refuse(request, flow, 483, "Too Many Hops")
        headers.set("Max-Forwards", str((max_forwards if max_forwards is not None else 70) - 1))
        headers.remove("route")
        for route in routes:
            headers.add("Route", route)
        vias = headers.values("via")
        top = parse_via(vias[0])
        _stamp(top, flow)
        vias[0] = str(top)
        headers.remove("via")
        for value in [self._via(top, out, phone), *vias]:
            headers.add("Via", value)
        if "rsr-b" in first and request.method == "INVITE" and request.to.tag is None:
            # both sides of the dialog come back through here, each to its own side
            facing_phone, facing_node = self._record_routes(phone, binding_id)
            headers.insert_first("Record-Route", facing_node)
            headers.insert_first("Record-Route", facing_phone)
        self.relayed += 1
        self.sender.send(serialise(request), out)
        return True

    def _record_routes(self, phone: Flow, binding_id: str) -> tuple[str, str]:
        """Our Record-Route facing the phone, and the one facing the calling node."""
        assert self.address is not None
        mark = f"rsr-f={self._sign(phone)}"
        relay = f"{_host(self.address[0])}:{self.address[1]}"
        local = phone.local
        param = "" if phone.transport == "udp" else f";transport={phone.transport}"
        return (
            f"<sip:{_host(local[0])}:{local[1]}{param};lr;rsr-p={binding_id};{mark}>",
            f"<sip:{relay};lr;rsr-b={binding_id};{mark}>",
        )

    def _via(self, incoming: Via, out: Flow, phone: Flow) -> str:
        """Our Via for a request leaving on `out`: the branch a hash of the
        incoming one, so whatever repeats that branch gets ours again; and the
        phone's side of the hop, signed, for the responses that go back there."""
        digest = hashlib.blake2b(
            f"{incoming.branch}|{incoming.sent_by}".encode(), digest_size=10
        ).hexdigest()
        host, port = out.local
        mark = self._sign(phone)
        return (
            f"SIP/2.0/{out.via_transport} {_host(host)}:{port};branch={BRANCH}{digest};rsr-f={mark}"
        )

    def _sign(self, flow: Flow) -> str:
        """`flow` as a parameter value, then `;rsr-m=` and our MAC of it: we
        trust a recorded flow only if we recorded it."""
        text = f"{flow.transport} {flow.local[0]} {flow.local[1]} {flow.remote[0]} "
        text += f"{flow.remote[1]} {flow.conn_id}"
        encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return f"{encoded};rsr-m={self._mac(encoded)}"

    def _mac(self, encoded: str) -> str:
        return hashlib.blake2b(encoded.encode(), key=self._key, digest_size=12).hexdigest()

    def _recorded(self, encoded: str, mac: str) -> Flow | None:
        if not encoded or not hmac.compare_digest(mac, self._mac(encoded)):
            return None
        try:
            text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            transport, local_ip, local_port, ip, port, conn_id = text.split(" ")
            return Flow(transport, (ip, int(port)), (local_ip, int(local_port)), int(conn_id))
        except ValueError:
            return None

    def _response(self, response: Response) -> bool:
        vias = response.headers.values("via")
        if not vias:
            return False
        top = parse_via(vias[0])
        branch = top.branch or ""
        if not branch.startswith(BRANCH) or (top.host.strip("[]"), top.port or 5060) not in (
            {self.address} | self._public
        ):
            return False
        rest = vias[1:]
        if not rest:
            return True
        nxt = parse_via(rest[0])
        to = (str(nxt.params.get("received") or nxt.host).strip("[]"),
              int(nxt.params.get("rport") or nxt.port or 5060))  # fmt: skip
        phone = self._recorded(
            str(top.params.get("rsr-f") or ""), str(top.params.get("rsr-m") or "")
        )
        if to in self.relays().values() and self.address is not None:
            out = Flow("udp", to, self.address)
            status = response.status
            if (
                phone is not None
                and 100 < status < 300
                and response.cseq.method == "INVITE"
                and "record-route" not in response.headers
            ):
                # a UAS that does not copy the Record-Route (RFC 3261 §12.1.1 says it
                # must): the calling node's requests still need to come through here
                for value in self._record_routes(phone, "-"):
                    response.headers.add("Record-Route", value)
        else:
            if phone is None:
                return True  # not a flow we recorded: nowhere to send it
            out = phone
        response.headers.remove("via")
        for value in rest:
            response.headers.add("Via", value)
        self.relayed += 1
        self.sender.send(serialise(response), out)
        return True

    def _refuse(self, request: Request, flow: Flow, status: int, reason: str) -> bool:
        self.refused += 1
        log.debug("relay refused %s from %s: %d %s", request.method, flow.remote, status, reason)
        if request.method != "ACK":
            self.sender.send(serialise(response_for(request, status, reason)), flow)
        return True

    @property
    def stats(self) -> dict[str, float]:
        return {"relayed": self.relayed, "relay_refused": self.refused}


def _same_party(recorded: Flow, flow: Flow) -> bool:
    """Did `flow` come from the party of `recorded` (its address, or its connection)?"""
    if recorded.transport != flow.transport:
        return False
    if flow.transport != "udp" and recorded.conn_id and flow.conn_id == recorded.conn_id:
        return True
    return recorded.remote == flow.remote


def _stamp(via: Via, flow: Flow) -> None:
    """RFC 3261 §18.2.1 / RFC 3581: where the request really came from."""
    if via.host.strip("[]") != flow.remote[0]:
        via.params["received"] = flow.remote[0]
    if "rport" in via.params:
        via.params["rport"] = str(flow.remote[1])


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
