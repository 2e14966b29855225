"""The transaction layer (RFC 3261 §17, RFC 6026, RFC 3581), sans-IO.

Bytes and `now` go in through `receive`/`handle_timers`; frozen events come
out of `events()`, `(bytes, flow)` pairs out of `outgoing()`, and the one
deadline to wake up at out of `next_timer()` — the aioquic shape. What the
state machines do is data in transaction.py; this module matches messages to
transactions, runs the actions and keeps the timers.

Transaction ids are the matching keys (`"<branch> <sent-by> <method>"` for
servers, `"<branch> <method>"` for clients): one dict serves both matching
and `respond()`, which matters with ~600k lingering server transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import cast

from regswitch.sip.errors import LocalProtocolError, ParseError
from regswitch.sip.events import (
    AckReceived,
    CancelReceived,
    Event,
    MalformedReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionTimedOut,
)
from regswitch.sip.flow import Flow
from regswitch.sip.headers import Via, split_list
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise
from regswitch.sip.timers import TimerQueue, Timers
from regswitch.sip.transaction import (
    Action,
    ClientTransaction,
    Input,
    InviteClientTransaction,
    InviteServerTransaction,
    ServerTransaction,
    State,
    Transaction,
    response_input,
)

MAGIC_COOKIE = "z9hG4bK"
_PARSE_BUGS = (ValueError, IndexError, UnicodeError)  # lazy accessors on hostile input

# Actions are typed precisely; the tables decide which one gets what.
ActionFn = Callable[..., None]


@dataclass(slots=True)
class TxStats:
    """Counters for metrics; plain ints, read them whenever."""

    created_server_invite: int = 0
    created_server_non_invite: int = 0
    created_client_invite: int = 0
    created_client_non_invite: int = 0
    retransmissions_sent: int = 0  # requests (A/E), responses (G, re-answers), ACKs
    retransmissions_absorbed: int = 0  # duplicate requests, responses and ACKs
    parse_errors_requests: int = 0
    parse_errors_responses: int = 0
    stray_responses: int = 0  # responses matching no client transaction
    merged_requests: int = 0  # answered 482 (§8.2.2.2)
    unmatched_cancels: int = 0  # answered 481
    foreign_requests: int = 0  # CANCEL (481) or ACK (dropped) not from its INVITE's source
    timeouts: int = 0  # TransactionTimedOut emitted

    @property
    def transactions_created(self) -> dict[str, int]:
        return {
            "server_invite": self.created_server_invite,
            "server_non_invite": self.created_server_non_invite,
            "client_invite": self.created_client_invite,
            "client_non_invite": self.created_client_non_invite,
        }


class TransactionLayer:
    def __init__(
        self,
        *,
        id_factory: Callable[[], str],
        timers: Timers = Timers(),  # noqa: B008 - frozen, shared safely
        server_header: str | None = None,
        max_udp_message: int = 65535,
        max_stream_message: int = 65536,
    ) -> None:
        self._new_id = id_factory
        self.timers = timers
        self.server_header = server_header
        self.max_udp_message = max_udp_message
        self.max_stream_message = max_stream_message
        self.stats = TxStats()
        self._server: dict[str, ServerTransaction] = {}
        self._client: dict[str, ClientTransaction] = {}
        # §8.2.2.2: "<From> <Call-ID> <CSeq>" of requests without a To tag ->
        # server tx key; INVITEs until terminated, others until answered.
        self._merge: dict[str, str] = {}
        # "<Call-ID> <CSeq number>" -> INVITE server tx in Accepted: the ACK of a
        # 2xx has a branch of its own, so it is matched like a dialog request.
        self._accepted: dict[str, InviteServerTransaction] = {}
        self._queue: TimerQueue[Transaction] = TimerQueue()
        self._events: list[Event] = []
        self._out: list[tuple[bytes, Flow]] = []
        # INVITEs whose 100 Trying waits for `outgoing()`: dropped if the TU has
        # answered by then (a stateless challenge goes out alone)
        self._trying: list[tuple[ServerTransaction, bytes]] = []
        t = timers
        self._t_long = 64 * t.t1  # B, F, H, J, L, M
        self._actions: dict[Action, ActionFn] = {
            Action.SEND: self._a_send,
            Action.SEND_FINAL: self._a_send_final,
            Action.SEND_ACCEPT: self._a_send_accept,
            Action.RESEND_LAST: self._a_resend_last,
            Action.RETRANSMIT_RESPONSE: self._a_retransmit_response,
            Action.CONFIRM: self._a_confirm,
            Action.ACK_2XX: self._a_ack_2xx,
            Action.DELIVER: self._a_deliver,
            Action.DELIVER_PROCEED: self._a_deliver_proceed,
            Action.DELIVER_ACCEPT: self._a_deliver_accept,
            Action.DELIVER_ACK: self._a_deliver_ack,
            Action.DELIVER_COMPLETE: self._a_deliver_complete,
            Action.RESEND_ACK: self._a_resend_ack,
            Action.RETRANSMIT_REQUEST: self._a_retransmit_request,
            Action.TIME_OUT: self._a_time_out,
            Action.TERMINATE: self._a_terminate,
            Action.TERMINATE_ACCEPTED: self._a_terminate_accepted,
        }

    # ------------------------------------------------------------------ queues

    def events(self) -> list[Event]:
        """Drain the events produced so far, in order."""
        events = self._events
        self._events = []
        return events

    def outgoing(self) -> list[tuple[bytes, Flow]]:
        """Drain the datagrams/stream writes to send, in order."""
        if self._trying:
            self._flush_trying()
        out = self._out
        self._out = []
        return out

    def next_timer(self) -> float | None:
        """When `handle_timers` must next be called (None: no timer running)."""
        return self._queue.next_deadline()

    def handle_timers(self, now: float) -> None:
        actions = self._actions
        retx_due, out_due = self._queue.pop_due(now)
        for inp, due in ((Input.TIMER_RETX, retx_due), (Input.TIMER_OUT, out_due)):
            for tx in due:
                # an earlier action in this round may have ended it: no entry
                entry = tx.table.get((tx.state, inp))
                if entry is not None:
                    tx.state = entry[1]
                    actions[entry[0]](tx, None, None, now)

    @property
    def server_transactions(self) -> int:
        return len(self._server)

    @property
    def client_transactions(self) -> int:
        return len(self._client)

    # ----------------------------------------------------------------- receive

    def receive(self, data: bytes, flow: Flow, now: float) -> None:
        """One whole message from `flow`. Never raises for what the peer sent."""
        reliable = flow.reliable
        try:
            message = parse_message(
                data,
                max_size=self.max_stream_message if reliable else self.max_udp_message,
                stream=reliable,
            )
            if type(message) is Request:
                self._on_request(message, flow, now)
            else:
                self._on_response(cast(Response, message), flow, now)
        except ParseError as exc:
            self._malformed(data, flow, exc)
        except _PARSE_BUGS as exc:
            self._malformed(data, flow, ParseError(f"unparsable message ({exc})"))

    def _malformed(self, data: bytes, flow: Flow, error: ParseError) -> None:
        if data.lstrip(b"\r\n")[:4] == b"SIP/":
            self.stats.parse_errors_responses += 1
        else:
            self.stats.parse_errors_requests += 1
        self._events.append(MalformedReceived(data, flow, error))

    def _on_request(self, request: Request, flow: Flow, now: float) -> None:
        # Everything read from the message is read first: a lazy header that
        # fails to parse raises before any state has changed.
        via = request.top_via
        method = request.method
        branch = via.params.get("branch")
        matched = "INVITE" if method == "ACK" else method
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            key = f"{branch} {via.host}:{via.port} {matched}"
        else:
            key = self._base_2543(request, via) + matched

        tx = self._server.get(key)
        if method == "ACK":
            self._on_ack(tx, request, flow, now)
            return
        if tx is not None:  # a retransmission (§17.2.3)
            self.stats.retransmissions_absorbed += 1
            entry = tx.table.get((tx.state, Input.REQUEST))
            if entry is not None:
                tx.state = entry[1]
                self._actions[entry[0]](tx, request, flow, now)
            return

        # To is parsed now, not when the core builds a response later: a bad one
        # must fail here, before any state changed. The TU reads it anyway
        # (the registrar's AOR, the callee), and it is cached.
        merge_key = None
        if request.to.tag is None and method != "CANCEL":
            # §8.2.2.2 compares the From tag; the whole From value stands in
            # for it (proxies never rewrite From) and costs no parsing.
            merge_key = (
                f"{request.headers.get('from')}\n{request.call_id}\n{request.cseq.seq}{method}"
            )

        resp_flow = self._response_flow(via, flow)
        if "rport" in via.params or via.host != flow.remote[0]:  # else nothing to stamp
            self._stamp_via(request, via, flow)
        if method == "CANCEL":
            self._on_cancel(request, key, key[: -len("CANCEL")] + "INVITE", resp_flow, flow, now)
            return
        invite = method == "INVITE"
        new: ServerTransaction
        if invite:
            new = InviteServerTransaction(key, resp_flow, State.PROCEEDING)
            new.origin = flow
            self.stats.created_server_invite += 1
        else:
            new = ServerTransaction(key, resp_flow, State.TRYING)
            self.stats.created_server_non_invite += 1
        self._server[key] = new
        if merge_key is not None:
            other = self._merge.get(merge_key)
            if other is not None and other in self._server:
                self.stats.merged_requests += 1  # §8.2.2.2: answer 482, tell nobody
                self._respond_tx(new, self._core_response(request, 482), now)
                return
            self._merge[merge_key] = key
            new.merge_key = merge_key
        if invite:  # §17.2.1: the core answers 100 at once, not after 200 ms
            response = response_for(request, 100)
            self._add_server(response)
            data = serialise(response)
            new.last = data
            self._trying.append((new, data))
        self._events.append(RequestReceived(key, request, flow))

    def _flush_trying(self) -> None:
        """Send the 100 Trying of each new INVITE the TU has not answered yet.
        Its answer, given at once, makes the 100 pointless: an INVITE
        challenged or refused on the spot gets one datagram back, not two."""
        due = [
            (data, tx.flow)
            for tx, data in self._trying
            if tx.last is data and tx.state is State.PROCEEDING and tx.flow is not None
        ]
        self._trying.clear()
        self._out[:0] = due  # ahead of what the TU sent meanwhile (a fork's INVITE)

    @staticmethod
    def _base_2543(request: Request, via: Via) -> str:
        """§17.2.3 matching for a branch without the magic cookie: Request-URI,
        From tag, Call-ID, CSeq number and top Via (the To tag is left out so
        the ACK, which carries ours, matches its INVITE)."""
        return f"2543 {request.uri} {request.from_.tag} {request.call_id} {request.cseq.seq} {via} "

    def _on_ack(
        self, tx: ServerTransaction | None, request: Request, flow: Flow, now: float
    ) -> None:
        if tx is None or tx.state is State.TERMINATED:
            # The ACK of a 2xx carries a branch of its own: find the Accepted
            # INVITE by Call-ID + CSeq to stop retransmitting the 2xx.
            accepted = self._accepted.get(f"{request.call_id} {request.cseq.seq}")
            if accepted is not None and (
                accepted.to_tag is None or accepted.to_tag == request.to.tag
            ):
                tx = accepted
            else:
                self._events.append(AckReceived(request, flow))
                return
        if not _from_origin(cast(InviteServerTransaction, tx), flow):
            # anyone who saw the branch or the Call-ID could otherwise stop our
            # retransmissions (and, through the TU, complete the call)
            self.stats.foreign_requests += 1
            return
        entry = tx.table.get((tx.state, Input.ACK))
        if entry is None:  # a retransmitted ACK in Confirmed, or junk
            self.stats.retransmissions_absorbed += 1
            return
        tx.state = entry[1]
        self._actions[entry[0]](tx, request, flow, now)

    def _on_cancel(
        self,
        request: Request,
        key: str,
        invite_key: str,
        resp_flow: Flow,
        flow: Flow,
        now: float,
    ) -> None:
        """§9.2: the core answers the CANCEL itself (200, or 481 if it matches
        no INVITE); the TU only hears of a CANCEL that can still do something.

        Only INVITEs are looked for: cancelling a non-INVITE is pointless
        (§9.1) and gets 481.

        A CANCEL is accepted only from where its INVITE came (transport and
        source address): the branch travels in clear, and whoever reuses it
        must not stop someone else's call. Such a CANCEL is answered 481
        without a transaction, so that it cannot stand in for the caller's own
        CANCEL when that arrives with the same key.
        """
        invite = self._server.get(invite_key)
        if invite is not None and not _from_origin(cast(InviteServerTransaction, invite), flow):
            self.stats.foreign_requests += 1
            self._out.append((serialise(self._core_response(request, 481)), resp_flow))
            return
        new = ServerTransaction(key, resp_flow, State.TRYING)
        self.stats.created_server_non_invite += 1
        self._server[key] = new
        if invite is None or invite.state is State.TERMINATED:
            self.stats.unmatched_cancels += 1
            self._respond_tx(new, self._core_response(request, 481), now)
            return
        to_tag = cast(InviteServerTransaction, invite).to_tag
        self._respond_tx(new, self._core_response(request, 200, to_tag), now)
        if invite.state is State.PROCEEDING:
            self._events.append(CancelReceived(invite.key, request, flow))

    def _core_response(self, request: Request, status: int, to_tag: str | None = None) -> Response:
        response = response_for(request, status, to_tag=to_tag or self._new_id())
        self._add_server(response)
        return response

    def _add_server(self, response: Response) -> None:
        if self.server_header is not None and "server" not in response.headers:
            response.headers.add("Server", self.server_header)

    # ----------------------------------------------------- RFC 3581 / §18.2

    @staticmethod
    def _response_flow(via: Via, flow: Flow) -> Flow:
        """Where responses to this request go (§18.2.2, RFC 3581 §4).

        Stream: back on the same connection. UDP: to the source IP (which is
        what `received` will say whenever the sent-by host differs from it),
        at the source port if `rport` was asked for, else at the sent-by port.
        `maddr` is ignored: answering to an address the sender names is a
        reflection vector.
        """
        if flow.reliable or "rport" in via.params:
            return flow
        port = via.port or 5060
        remote = flow.remote
        if port == remote[1]:
            return flow
        return Flow(flow.transport, (remote[0], port), flow.local, flow.conn_id)

    @staticmethod
    def _stamp_via(request: Request, via: Via, flow: Flow) -> None:
        """Add `received` (§18.2.1) and fill an empty `rport` (RFC 3581) in the
        top Via, so every response built from the request carries them."""
        params = via.params
        ip, port = flow.remote
        host = via.host
        if host[:1] == "[":
            host = host[1:-1]
        if "rport" in params:
            if params["rport"] is None:
                params["rport"] = str(port)
            params["received"] = ip  # RFC 3581: even when equal to sent-by
        elif host != ip:
            params["received"] = ip
        else:
            return
        _replace_top_via(request, via)

    # -------------------------------------------------------------- responses

    def _on_response(self, response: Response, flow: Flow, now: float) -> None:
        branch = response.top_via.params.get("branch")
        method = response.cseq.method
        tx = self._client.get(f"{branch} {method}") if branch else None
        if tx is None:
            self.stats.stray_responses += 1
            if method == "INVITE" and 200 <= response.status < 300:
                self._events.append(StrayResponseReceived(response, flow))
            return
        entry = tx.table.get((tx.state, response_input(response.status)))
        if entry is None:
            self.stats.retransmissions_absorbed += 1
            if tx.invite and tx.state is State.COMPLETED and 200 <= response.status < 300:
                # a fork's 2xx after another's failure: only the TU can ACK + BYE it
                self._events.append(StrayResponseReceived(response, flow))
            return
        tx.state = entry[1]
        self._actions[entry[0]](tx, response, flow, now)

    # ----------------------------------------------------------- TU commands

    def respond(self, tx_id: str, response: Response, now: float, *, forget: bool = False) -> None:
        """Send `response` through server transaction `tx_id`.

        `forget` ends the transaction with its final response instead of
        keeping it for Timer J, or for an INVITE's non-2xx final, instead of
        retransmitting it until Timer H: the response is sent once and a
        retransmitted request is a new request, answered again. That is what
        a stateless challenge wants: no state, and no datagrams multiplied,
        for requests that may never come back (the ACK of a forgotten INVITE
        response matches nothing and is dropped by the TU). A 2xx to an
        INVITE is never forgotten.
        """
        tx = self._server.get(tx_id)
        if tx is None or tx.state is State.TERMINATED:
            raise LocalProtocolError(f"no server transaction {tx_id!r}")
        self._respond_tx(tx, response, now)
        if forget and (response.status >= 300 or (response.status >= 200 and not tx.invite)):
            self._a_terminate(tx, None, None, now)

    def _respond_tx(self, tx: ServerTransaction, response: Response, now: float) -> None:
        entry = tx.table.get((tx.state, response_input(response.status)))
        if entry is None:
            raise LocalProtocolError(
                f"cannot send {response.status} in state {tx.state.name} of {tx.key!r}"
            )
        self._add_server(response)
        tx.state = entry[1]
        self._actions[entry[0]](tx, response, None, now)

    def send_request(self, request: Request, flow: Flow, now: float) -> str:
        """Start a client transaction; returns its tx_id.

        Adds a Via (`;branch=z9hG4bK<id>;rport`) if there is none, or a branch
        to a top Via without one.
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("an ACK is not a transaction: use send_stateless")
        branch = self._ensure_branch(request, flow)
        key = f"{branch} {method}"
        if key in self._client:
            raise LocalProtocolError(f"a client transaction {key!r} exists already")
        data = serialise(request)
        if not flow.reliable and len(data) > self.max_udp_message:
            raise LocalProtocolError(f"{len(data)} bytes is too large for UDP")
        tx: ClientTransaction
        if method == "INVITE":
            tx = InviteClientTransaction(key, request, data, flow, State.CALLING)
            self.stats.created_client_invite += 1
        else:
            tx = ClientTransaction(key, data, flow, State.TRYING)
            self.stats.created_client_non_invite += 1
        self._client[key] = tx
        self._out.append((data, flow))
        queue = self._queue
        if not flow.reliable:
            tx.interval = self.timers.t1
            queue.arm_retx(tx, now, tx.interval)  # Timer A / E
        queue.arm_out(tx, now, self._t_long)  # Timer B / F
        return key

    def send_cancel(self, invite_tx_id: str, now: float, reason: str | None = None) -> str | None:
        """CANCEL the INVITE client transaction `invite_tx_id` (§9.1).

        Returns the CANCEL's tx_id, or None when the INVITE is gone or has its
        final response. Before any provisional response the CANCEL is held
        back and sent when one arrives; if a final response comes first it is
        never sent and its tx_id sees no events. `reason` is a Reason header
        value (RFC 3326), e.g. 'SIP;cause=200;text="Call completed elsewhere"'.
        Asking twice returns the same tx_id.
        """
        tx = self._client.get(invite_tx_id)
        if tx is None:
            return None
        if not isinstance(tx, InviteClientTransaction):
            raise LocalProtocolError(f"{invite_tx_id!r} is not an INVITE client transaction")
        if tx.cancel is not None:
            return tx.cancel
        if tx.state is not State.CALLING and tx.state is not State.PROCEEDING:
            return None
        tx.cancel = tx.key[: -len("INVITE")] + "CANCEL"
        tx.cancel_reason = reason
        if tx.state is State.PROCEEDING:
            self._cancel_now(tx, now)
        else:
            tx.cancel_pending = True
        return tx.cancel

    def _cancel_now(self, tx: InviteClientTransaction, now: float) -> None:
        invite = tx.request
        src = invite.headers
        headers = Headers()
        headers.add("Via", src.values("via")[0])
        headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            headers.add(name, src.get(name) or "")
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        for route in src.get_all("route"):
            headers.add("Route", route)
        if tx.cancel_reason:
            headers.add("Reason", tx.cancel_reason)
        self.send_request(Request("CANCEL", invite.uri, headers), tx.flow, now)
        # §9.1: no final response 64*T1 after the CANCEL: give the INVITE up.
        self._queue.arm_out(tx, now, self._t_long)

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        """Send outside any transaction: the ACK of a 2xx, a 2xx the dialog
        re-sends, a keepalive OPTIONS nobody waits for. A request gets a Via
        or a branch as in `send_request`."""
        if isinstance(message, Request):
            self._ensure_branch(message, flow)
        self._out.append((serialise(message), flow))

    def _ensure_branch(self, request: Request, flow: Flow) -> str:
        if "via" not in request.headers:
            branch = MAGIC_COOKIE + self._new_id()
            host, port = flow.local
            if ":" in host:
                host = f"[{host}]"
            request.headers.insert_first(
                "Via", f"SIP/2.0/{flow.via_transport} {host}:{port};branch={branch};rport"
            )
            return branch
        via = request.top_via
        existing = via.params.get("branch")
        if existing:
            return existing
        branch = MAGIC_COOKIE + self._new_id()
        via.params["branch"] = branch
        _replace_top_via(request, via)
        return branch

    # --------------------------------------------------------------- actions
    # Each runs after the transaction moved to the table's next state, called
    # as (tx, message, flow, now): the message is the TU's response, or the
    # request/response that came in with its flow; None for timers. The tables
    # guarantee which kind of transaction and message each one gets.

    def _a_send(self, tx: ServerTransaction, msg: Response, flow: None, now: float) -> None:
        data = serialise(msg)
        tx.last = data
        dest = tx.flow
        assert dest is not None  # only Completed non-INVITE drops it
        self._out.append((data, dest))
        if tx.invite and msg.status > 100:
            itx = cast(InviteServerTransaction, tx)
            if itx.to_tag is None:
                # a To the peer mangled costs only the tag reuse in the 200 to CANCEL
                with suppress(ParseError):
                    itx.to_tag = msg.to.tag

    def _a_send_final(self, tx: ServerTransaction, msg: Response, flow: None, now: float) -> None:
        self._a_send(tx, msg, flow, now)
        reliable = tx.flow.reliable  # type: ignore[union-attr]  # set until here
        if tx.invite:
            if not reliable:
                itx = cast(InviteServerTransaction, tx)
                itx.interval = self.timers.t1
                self._queue.arm_retx(itx, now, itx.interval)  # Timer G
            self._queue.arm_out(tx, now, self._t_long)  # Timer H
            return
        if tx.merge_key is not None:
            self._forget_merge(tx)
        if reliable:  # Timer J is zero
            self._a_terminate(tx, None, None, now)
        else:
            tx.flow = None  # a retransmitted request brings its own
            self._queue.arm_out(tx, now, self._t_long)  # Timer J

    def _a_send_accept(
        self, tx: InviteServerTransaction, msg: Response, flow: None, now: float
    ) -> None:
        self._a_send(tx, msg, flow, now)
        ack_key = f"{msg.call_id} {msg.cseq.seq}"
        tx.ack_key = ack_key
        self._accepted[ack_key] = tx
        if not tx.flow.reliable:  # type: ignore[union-attr]
            tx.interval = self.timers.t1
            self._queue.arm_retx(tx, now, tx.interval)  # Timer G for the 2xx
        self._queue.arm_out(tx, now, self._t_long)  # Timer L

    def _a_resend_last(self, tx: ServerTransaction, msg: Request, flow: Flow, now: float) -> None:
        if tx.last is None:
            return
        dest = tx.flow
        if dest is None:
            dest = self._response_flow(msg.top_via, flow)
        self.stats.retransmissions_sent += 1
        self._out.append((tx.last, dest))

    def _a_retransmit_response(
        self, tx: InviteServerTransaction, msg: None, flow: None, now: float
    ) -> None:
        assert tx.last is not None and tx.flow is not None
        self.stats.retransmissions_sent += 1
        self._out.append((tx.last, tx.flow))
        tx.interval = min(2 * tx.interval, self.timers.t2)
        self._queue.arm_retx(tx, now, tx.interval)

    def _a_confirm(self, tx: InviteServerTransaction, msg: Request, flow: Flow, now: float) -> None:
        self.stats.retransmissions_absorbed += 1  # the ACK stays in the core
        tx.t_retx = -1.0  # stop G
        if tx.flow is None or tx.flow.reliable:  # Timer I is zero
            self._a_terminate(tx, None, None, now)
        else:
            self._queue.arm_out(tx, now, self.timers.t4)  # Timer I (replaces H)

    def _a_ack_2xx(self, tx: InviteServerTransaction, msg: Request, flow: Flow, now: float) -> None:
        tx.t_retx = -1.0  # stop retransmitting the 2xx
        tx.acked = True
        self._events.append(AckReceived(msg, flow))

    def _a_deliver(self, tx: ClientTransaction, msg: Response, flow: Flow, now: float) -> None:
        self._events.append(ResponseReceived(tx.key, msg, flow))

    def _a_deliver_proceed(
        self, tx: ClientTransaction, msg: Response, flow: Flow, now: float
    ) -> None:
        self._events.append(ResponseReceived(tx.key, msg, flow))
        if tx.invite:
            itx = cast(InviteClientTransaction, tx)
            itx.t_retx = -1.0  # stop A
            itx.t_out = -1.0  # B only runs in Calling
            if itx.cancel_pending:
                itx.cancel_pending = False
                self._cancel_now(itx, now)
        # non-INVITE: E keeps running, at T2 from its next firing on

    def _a_deliver_accept(
        self, tx: InviteClientTransaction, msg: Response, flow: Flow, now: float
    ) -> None:
        tx.t_retx = -1.0
        tx.cancel_pending = False
        self._queue.arm_out(tx, now, self._t_long)  # Timer M
        self._events.append(ResponseReceived(tx.key, msg, flow))

    def _a_deliver_ack(
        self, tx: InviteClientTransaction, msg: Response, flow: Flow, now: float
    ) -> None:
        tx.t_retx = -1.0
        tx.cancel_pending = False
        ack = self._build_ack(tx, msg)
        tx.ack = ack
        self._out.append((ack, tx.flow))
        self._events.append(ResponseReceived(tx.key, msg, flow))
        if tx.flow.reliable:  # Timer D is zero
            self._a_terminate(tx, None, None, now)
        else:
            self._queue.arm_out(tx, now, self.timers.d)  # Timer D

    def _a_deliver_complete(
        self, tx: ClientTransaction, msg: Response, flow: Flow, now: float
    ) -> None:
        tx.t_retx = -1.0
        self._events.append(ResponseReceived(tx.key, msg, flow))
        if tx.flow.reliable:  # Timer K is zero
            self._a_terminate(tx, None, None, now)
        else:
            self._queue.arm_out(tx, now, self.timers.t4)  # Timer K

    def _a_resend_ack(
        self, tx: InviteClientTransaction, msg: Response, flow: Flow, now: float
    ) -> None:
        self.stats.retransmissions_absorbed += 1
        if tx.ack is not None:
            self.stats.retransmissions_sent += 1
            self._out.append((tx.ack, tx.flow))

    def _a_retransmit_request(
        self, tx: ClientTransaction, msg: None, flow: None, now: float
    ) -> None:
        self.stats.retransmissions_sent += 1
        self._out.append((tx.data, tx.flow))
        if tx.invite:
            tx.interval *= 2  # Timer A doubles without a cap; B ends it
        elif tx.state is State.PROCEEDING:
            tx.interval = self.timers.t2
        else:
            tx.interval = min(2 * tx.interval, self.timers.t2)
        self._queue.arm_retx(tx, now, tx.interval)

    def _a_time_out(self, tx: Transaction, msg: None, flow: None, now: float) -> None:
        self.stats.timeouts += 1
        self._events.append(TransactionTimedOut(tx.key, tx.client))
        self._a_terminate(tx, None, None, now)

    def _a_terminate(self, tx: Transaction, msg: None, flow: None, now: float) -> None:
        tx.state = State.TERMINATED
        tx.t_out = tx.t_retx = -1.0
        if tx.client:
            self._client.pop(tx.key, None)
            return
        stx = cast(ServerTransaction, tx)
        self._server.pop(stx.key, None)  # nothing else can hold its key meanwhile
        if stx.merge_key is not None:
            self._forget_merge(stx)
        if stx.invite:
            itx = cast(InviteServerTransaction, stx)
            if itx.ack_key is not None and self._accepted.get(itx.ack_key) is itx:
                del self._accepted[itx.ack_key]

    def _a_terminate_accepted(
        self, tx: InviteServerTransaction, msg: None, flow: None, now: float
    ) -> None:
        if not tx.acked:
            # §13.3.1.4: 64*T1 of 2xx retransmissions without an ACK: the TU
            # should end the session.
            self._a_time_out(tx, None, None, now)
        else:
            self._a_terminate(tx, None, None, now)

    def _forget_merge(self, stx: ServerTransaction) -> None:
        merge_key = cast(str, stx.merge_key)
        if self._merge.get(merge_key) == stx.key:
            del self._merge[merge_key]
        stx.merge_key = None

    @staticmethod
    def _build_ack(tx: InviteClientTransaction, response: Response) -> bytes:
        """§17.1.1.3: the ACK of a non-2xx final, part of the INVITE transaction."""
        invite = tx.request
        src = invite.headers
        headers = Headers()
        headers.add("Via", src.values("via")[0])
        headers.add("Max-Forwards", "70")
        headers.add("From", src.get("from") or "")
        headers.add("To", response.headers.get("to") or "")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", f"{invite.cseq.seq} ACK")
        for route in src.get_all("route"):
            headers.add("Route", route)
        return serialise(Request("ACK", invite.uri, headers))


def _from_origin(tx: InviteServerTransaction, flow: Flow) -> bool:
    """Did `flow` come from where INVITE `tx` came from (transport, address, port)?"""
    origin = tx.origin
    return origin is None or (
        origin.transport == flow.transport and origin.remote == flow.remote
    )


def _replace_top_via(message: Request, via: Via) -> None:
    """Rewrite the first Via value from `via` (the message's cached top Via,
    already changed in place), keeping the rest of the Via list as it was."""
    headers = message.headers
    lines = headers.get_all("via")
    first = lines[0]
    if "," in first:
        rest = split_list(first)[1:]
        lines[0] = ", ".join([str(via), *rest])
    else:
        lines[0] = str(via)
    headers.remove("via")
    for line in reversed(lines):
        headers.insert_first("Via", line)


__all__ = ["MAGIC_COOKIE", "TransactionLayer", "TxStats"]
