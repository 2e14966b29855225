"""The one bridge between the sans-IO core, the transports and the app.

Feeds bytes and `loop.time()` into the transaction layer, flushes what it
wants to send, keeps one timer armed at `next_timer()`, and dispatches its
events to the app's handlers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from regswitch.sip import events as sipev
from regswitch.sip.errors import LocalProtocolError, ParseError
from regswitch.sip.flow import Flow
from regswitch.sip.headers import is_token
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.serialise import _phrase_safe, error_response_for_raw, response_for
from regswitch.sip.txlayer import TransactionLayer

log = logging.getLogger("regswitch.endpoint")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, SUBSCRIBE"
ACCEPT = "application/sdp"
SUPPORTED = "path, outbound, gruu"
# what a request may Require of us (RFC 3261 §8.2.2.3): what we advertise
SUPPORTED_EXTENSIONS = frozenset(t.strip() for t in SUPPORTED.split(","))
URI_SCHEMES = ("sip", "sips", "tel")


def required_extensions(request: Request, supported: frozenset[str]) -> list[str]:
    """The option tags of the request's Require headers that are not in
    `supported`, sorted and lower-cased (empty: nothing unsupported).
    ParseError (400) for a tag that is not a token: only tokens are echoed
    back in Unsupported."""
    if "require" not in request.headers:
        return []
    tags = {
        tag
        for line in request.headers.get_all("require")
        for tag in (t.strip().lower() for t in line.split(","))
        if tag
    }
    for tag in tags:
        if not is_token(tag):
            raise ParseError(f"bad option tag in Require {tag[:40]!r}")
    return sorted(tags - supported)


def out_of_dialog(
    method: str, uri: str, from_uri: str, to_uri: str, *, tag: str, call_id: str, agent: str
) -> Request:
    """A request of ours outside any dialog (keepalive OPTIONS, the kicked
    device's MESSAGE): CSeq 1, the caller's fresh tag and Call-ID."""
    headers = Headers()
    headers.add("Max-Forwards", "70")
    headers.add("From", f"<{from_uri}>;tag={tag}")
    headers.add("To", f"<{to_uri}>")
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"1 {method}")
    headers.add("User-Agent", agent)
    return Request(method, uri, headers)


def our_contact(flow: Flow, advertised_host: str | None) -> str:
    """Our Contact for a dialog on `flow`: the advertised host, else the
    address the flow reached us on."""
    host = advertised_host or flow.local[0]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    transport = "" if flow.transport == "udp" else f";transport={flow.transport}"
    return f"<sip:{host}:{flow.local[1]}{transport}>"


class Sender(Protocol):
    def send(self, data: bytes, flow: Flow) -> bool: ...


class IncomingRequest:
    """A received request and the means to answer it (once finally)."""

    def __init__(self, endpoint: Endpoint, tx_id: str, request: Request, flow: Flow) -> None:
        self.endpoint = endpoint
        self.tx_id = tx_id
        self.request = request
        self.flow = flow
        self.to_tag: str | None = None

    def response(
        self, status: int, reason: str | None = None, body: bytes = b"", *, stateless: bool = False
    ) -> Response:
        """A response to fill in; the To tag is fixed per transaction. One to
        be sent statelessly (`send(forget=True)`) gets a tag derived from the
        transaction, the same for every retransmission of the request (RFC
        3261 §8.2.7: no state remembers a random one)."""
        if self.to_tag is None and status > 100:
            endpoint = self.endpoint
            self.to_tag = endpoint.stateless_tag(self.tx_id) if stateless else endpoint.new_tag()
        response = response_for(self.request, status, reason, to_tag=self.to_tag, body=body)
        response.headers.add("Server", self.endpoint.server_header)
        return response

    def respond(
        self,
        status: int,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        *,
        forget: bool = False,
    ) -> None:
        response = self.response(status, reason, body, stateless=forget)
        if headers:
            for name, value in headers.items():
                response.headers.add(name, value)
        self.send(response, forget=forget)

    def send(self, response: Response, *, forget: bool = False) -> None:
        """Send it; `forget` keeps no transaction state after a final
        non-INVITE response (see TransactionLayer.respond)."""
        self.endpoint.respond(self.tx_id, response, forget=forget)


RequestHandler = Callable[[IncomingRequest], None]


@dataclass
class EndpointStats:
    requests_by_method: dict[str, int] = field(default_factory=dict)
    responses_sent: dict[int, int] = field(default_factory=dict)
    malformed_requests: int = 0
    malformed_responses: int = 0
    handler_errors: int = 0
    send_failures: int = 0
    gated: int = 0  # messages dropped by the gate (blocked sources)


class Endpoint:
    def __init__(
        self,
        txlayer: TransactionLayer,
        sender: Sender,
        *,
        id_factory: Callable[[], str],
        server_header: str = "regswitch",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.tx = txlayer
        self.sender = sender
        self.new_tag = id_factory
        self._tag_key = os.urandom(16)
        self.server_header = server_header
        self.loop = loop or asyncio.get_event_loop()
        self.stats = EndpointStats()
        self._handlers: dict[str, RequestHandler] = {"OPTIONS": self._options}
        self._ack_handler: Callable[[sipev.AckReceived], None] | None = None
        self._cancel_handler: Callable[[sipev.CancelReceived], None] | None = None
        self._response_handlers: dict[str, Callable[[sipev.Event], None]] = {}
        self._stray_handler: Callable[[sipev.StrayResponseReceived], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._accepted: set[str] = set()  # INVITE client txs that got a 2xx
        # drops a source's messages before the core sees them (flood blocks)
        self.gate: Callable[[str], bool] | None = None
        # methods whose handler inspects Require itself (the B2BUA: after
        # authentication, so the refusal gets a CDR)
        self.self_checked: set[str] = set()

    # --- wiring -----------------------------------------------------------------
    def route(self, method: str, handler: RequestHandler) -> None:
        self._handlers[method.upper()] = handler

    def on_ack(self, handler: Callable[[sipev.AckReceived], None]) -> None:
        self._ack_handler = handler

    def on_cancel(self, handler: Callable[[sipev.CancelReceived], None]) -> None:
        self._cancel_handler = handler

    def on_stray_response(self, handler: Callable[[sipev.StrayResponseReceived], None]) -> None:
        self._stray_handler = handler

    # --- input --------------------------------------------------------------------
    def on_data(self, data: bytes, flow: Flow) -> None:
        """Transport callback: one datagram or one framed stream message."""
        gate = self.gate
        if gate is not None and gate(flow.remote[0]):
            self.stats.gated += 1
            return
        try:
            self.tx.receive(data, flow, self.loop.time())
        except Exception:  # the core must not raise; if it does, keep serving
            log.exception("transaction layer failed on input from %s", flow.remote)
        self.pump()

    # --- output -------------------------------------------------------------------
    def respond(self, tx_id: str, response: Response, *, forget: bool = False) -> None:
        counts = self.stats.responses_sent
        counts[response.status] = counts.get(response.status, 0) + 1
        try:
            self.tx.respond(tx_id, response, self.loop.time(), forget=forget)
        except LocalProtocolError as exc:
            log.debug("response to a finished transaction dropped: %s", exc)
        self.pump()

    def send_request(
        self, request: Request, flow: Flow, on_event: Callable[[sipev.Event], None]
    ) -> str:
        """Start a client transaction; `on_event` gets its ResponseReceived /
        TransactionTimedOut events."""
        tx_id = self.tx.send_request(request, flow, self.loop.time())
        self._response_handlers[tx_id] = on_event
        self.pump()
        return tx_id

    def send_cancel(self, invite_tx_id: str, reason: str | None = None) -> None:
        self.tx.send_cancel(invite_tx_id, self.loop.time(), reason)
        self.pump()

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        self.tx.send_stateless(message, flow)
        self.pump()

    def send_raw(self, data: bytes, flow: Flow) -> bool:
        return self.sender.send(data, flow)

    def forget(self, tx_id: str) -> None:
        """The app no longer wants events of client transaction `tx_id`."""
        self._response_handlers.pop(tx_id, None)

    def _forget_accepted(self, tx_id: str) -> None:
        self._accepted.discard(tx_id)
        self._response_handlers.pop(tx_id, None)

    def pump(self) -> None:
        """Dispatch events, flush outgoing data, re-arm the timer."""
        tx = self.tx
        while True:
            events = tx.events()
            if not events:
                break
            for event in events:
                self._dispatch(event)
        send = self.sender.send
        for data, flow in tx.outgoing():
            if not send(data, flow):
                self.stats.send_failures += 1
        self._arm()

    def _arm(self) -> None:
        deadline = self.tx.next_timer()
        if deadline is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.tx.handle_timers(self.loop.time())
        except Exception:
            log.exception("timer handling failed")
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- dispatch -----------------------------------------------------------------
    def _dispatch(self, event: sipev.Event) -> None:
        try:
            if isinstance(event, sipev.RequestReceived):
                self._request(event)
            elif isinstance(event, sipev.ResponseReceived):
                handler = self._response_handlers.get(event.tx_id)
                if handler is not None:
                    status = event.response.status
                    if status >= 200:
                        if status < 300 and event.response.cseq.method == "INVITE":
                            # 2xx retransmissions reach the handler until Timer M ends the tx
                            if event.tx_id not in self._accepted:
                                self._accepted.add(event.tx_id)
                                self.loop.call_later(
                                    self.tx.timers.m, self._forget_accepted, event.tx_id
                                )
                        else:
                            del self._response_handlers[event.tx_id]
                    handler(event)
            elif isinstance(event, sipev.TransactionTimedOut):
                # A server transaction's timeout (no ACK for our final answer)
                # needs nothing here: the core has ended it and counted it.
                if event.client:
                    handler = self._response_handlers.pop(event.tx_id, None)
                    if handler is not None:
                        handler(event)
            elif isinstance(event, sipev.AckReceived):
                if self._ack_handler is not None:
                    self._ack_handler(event)
            elif isinstance(event, sipev.CancelReceived):
                if self._cancel_handler is not None:
                    self._cancel_handler(event)
            elif isinstance(event, sipev.StrayResponseReceived):
                if self._stray_handler is not None:
                    self._stray_handler(event)
            elif isinstance(event, sipev.MalformedReceived):
                self._malformed(event)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("handler failed on %s", type(event).__name__)

    def _request(self, event: sipev.RequestReceived) -> None:
        request = event.request
        counts = self.stats.requests_by_method
        counts[request.method] = counts.get(request.method, 0) + 1
        stx = IncomingRequest(self, event.tx_id, request, event.flow)
        handler = self._handlers.get(request.method)
        if handler is None:
            stx.respond(501, None, {"Allow": ALLOW})
            return
        try:
            if not self._inspect(stx):
                return
            handler(stx)
        except ParseError as exc:
            # a header read lazily by the handler turned out malformed
            status = exc.status_hint if 400 <= exc.status_hint < 600 else 400
            stx.respond(status, _phrase_safe(exc.reason))
        except Exception:
            # answer, or the server transaction would wait in Trying forever
            self.stats.handler_errors += 1
            log.exception("%s handler failed", request.method)
            stx.respond(500, "Server Internal Error")

    def _inspect(self, stx: IncomingRequest) -> bool:
        """RFC 3261 §8.2.2 inspection, the same for every method and before
        any handler, so a refused request costs no account lookup: the
        Request-URI scheme (416); the Request-URI, every Via, Contact and
        Max-Forwards parse (else ParseError: 400); Require (420, except for
        the methods in `self_checked`). False: answered."""
        request = stx.request
        uri = request.uri
        if not uri.startswith("sip:"):
            scheme = uri.partition(":")[0].lower()
            if scheme not in URI_SCHEMES:
                stx.respond(416, "Unsupported URI Scheme")
                return False
        headers = request.headers
        # read for the ParseError alone (one name per type: mypyc types each name)
        _ruri = request.ruri
        via_lines = headers.get_all("via")
        if len(via_lines) > 1 or "," in via_lines[0]:  # the top one is parsed already
            _vias = request.vias
        if "contact" in headers:
            _contacts = request.contacts
        if "max-forwards" in headers:
            _max_forwards = request.max_forwards
        if request.method in self.self_checked:
            return True
        unsupported = required_extensions(request, SUPPORTED_EXTENSIONS)
        if unsupported:
            stx.respond(420, "Bad Extension", {"Unsupported": ", ".join(unsupported)})
            return False
        return True

    def _malformed(self, event: sipev.MalformedReceived) -> None:
        reply = error_response_for_raw(event.data, event.error, self.server_header)
        if reply is None:
            if event.data.startswith(b"SIP/"):
                self.stats.malformed_responses += 1
            else:
                self.stats.malformed_requests += 1
            return
        self.stats.malformed_requests += 1
        self.sender.send(reply, event.flow)

    def stateless_tag(self, tx_id: str) -> str:
        """A To tag for a response sent without transaction state: the same for
        each retransmission of one request, unpredictable to anyone else."""
        return hashlib.blake2b(tx_id.encode(), key=self._tag_key, digest_size=8).hexdigest()

    def _options(self, stx: IncomingRequest) -> None:
        # Answered without keeping the transaction for Timer J (RFC 3261 §8.2.7,
        # a stateless UAS): an OPTIONS changes nothing, so a retransmission is
        # simply answered again, and a keepalive flood leaves no state behind.
        stx.respond(
            200,
            None,
            {"Allow": ALLOW, "Accept": ACCEPT, "Supported": SUPPORTED, "Accept-Language": "en"},
            forget=True,
        )
