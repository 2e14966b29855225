"""The B2BUA (docs/behaviour.md §4): calls between registered endpoints, relayed leg to leg.

INVITE from an account -> A-leg (our UAS dialog) and one B-leg (our UAC
dialog) per current binding of the callee, forked in parallel; the first 2xx
wins and the other forks are cancelled. Bodies pass through as bytes.
Ending calls — normal, failed, kicked, hung up — goes through `end_call`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from regswitch.calls.call import Call, Leg, binding_at, end_reason_for, reason_header, source_of
from regswitch.calls.guard import DialogGuard
from regswitch.calls.states import (
    ACTIVE_LEG,
    PENDING_LEG,
    CallInput,
    LegAction,
    LegInput,
    LegState,
    call_step,
    leg_step,
)
from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.ids import new_id
from regswitch.registrar.accounts import Accounts
from regswitch.registrar.bindings import Binding
from regswitch.registrar.upkeep import RESTORING_RETRY
from regswitch.sip import events as sipev
from regswitch.sip.dialog import Dialog
from regswitch.sip.flow import Flow
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.uri import URI
from regswitch.storage.base import CdrStore
from regswitch.transport.endpoint import (
    Endpoint,
    IncomingRequest,
    our_contact,
    required_extensions,
)

log = logging.getLogger("regswitch.calls")

ACK_WAIT = 32.0  # 64*T1: how long a 2xx waits for its ACK
# headers an in-dialog request means nothing without, carried to the other leg
_RELAYED_HEADERS: dict[str, tuple[str, ...]] = {
    "INFO": ("Info-Package",),
    "NOTIFY": ("Event", "Subscription-State"),
    "REFER": ("Refer-To", "Referred-By"),  # a blind transfer: a new INVITE to Refer-To
}


class Callers(Protocol):
    """What the call layer asks of the registrar: who calls (authenticated, the
    request answered when refused), which account a URI names, where it is registered."""

    @property
    def accounts(self) -> Accounts: ...

    def authenticate_caller(self, stx: IncomingRequest) -> str | None: ...

    def aor_of(self, uri: URI) -> str | None: ...

    def list(self, account: str) -> list[Binding]: ...

    def restored(self, aor: str) -> bool: ...

    def restore_accounts(self, aors: Iterable[str], then: Callable[[bool], None]) -> None: ...


class B2BUA:
    def __init__(
        self,
        endpoint: Endpoint,
        registrar: Callers,
        events: EventBus,
        cdrs: CdrStore,
        clock: Callable[[], float],
        *,
        advertised_host: str | None = None,
        no_answer_timeout: float = 60.0,
        max_call_duration: float = 7200.0,
        require_registration: Callable[[], bool] = lambda: False,
        route: Callable[[Binding], tuple[Flow, str] | None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.registrar = registrar
        self.events = events
        self.cdrs = cdrs
        self.clock = clock
        self.loop = endpoint.loop
        self.advertised_host = advertised_host
        self.no_answer_timeout = no_answer_timeout
        self.max_call_duration = max_call_duration
        # CALLS_REQUIRE_REGISTRATION, read per INVITE (a live parameter)
        self.require_registration = require_registration
        # a cluster's way to a binding held by another node: (flow, first Route)
        self.route = route
        self.calls: dict[str, Call] = {}
        self._by_invite_tx: dict[str, Call] = {}  # A-leg INVITE server tx -> call
        # (Call-ID, our tag) -> the call and leg; the guard checks the rest
        self._dialogs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.guard = DialogGuard(self._dialogs, registrar)
        self._by_binding: dict[str, set[str]] = {}  # binding id -> call ids
        # INVITEs waiting for their caller's and callee's stored bindings (a
        # restart's restore): A-leg tx id -> the INVITE and its caller
        self._restoring: dict[str, tuple[IncomingRequest, str]] = {}
        self.ended_by_reason: Counter[str] = Counter()
        self.started = 0

    def install(self) -> None:
        endpoint = self.endpoint
        endpoint.route("INVITE", self.on_invite)
        endpoint.self_checked.add("INVITE")  # Require and Max-Forwards: see on_invite
        for method in ("BYE", "UPDATE", "INFO", "MESSAGE", "NOTIFY", "REFER", "PRACK"):
            endpoint.route(method, self.on_in_dialog)
        endpoint.on_ack(self.on_ack)
        endpoint.on_cancel(self.on_cancel)
        endpoint.on_stray_response(self.on_stray_response)

    # --- new calls ------------------------------------------------------------------
    def on_invite(self, stx: IncomingRequest) -> None:
        request = stx.request
        if request.to.tag is not None:
            self.on_in_dialog(stx)
            return
        caller = self.registrar.authenticate_caller(stx)
        if caller is None:
            return  # answered (401/407/403) by the registrar
        callee_aor = self.registrar.aor_of(request.ruri)
        parties: tuple[str, ...] = (caller,)
        if callee_aor is not None and self.registrar.accounts.get(callee_aor) is not None:
            parties = (caller, callee_aor)  # any other callee is refused (404), never read
        if all(self.registrar.restored(aor) for aor in parties):
            self._route(stx, caller)
            return
        # A restart is still restoring: "not registered" is not known until both
        # parties' stored bindings are back. Read those two first (the 100 Trying
        # has gone; a CANCEL meanwhile is answered in on_cancel).
        self._restoring[stx.tx_id] = (stx, caller)

        def then(restored: bool) -> None:
            if self._restoring.pop(stx.tx_id, None) is None:
                return  # cancelled meanwhile
            if restored:
                self._route(stx, caller)
                return
            stx.respond(503, "Restoring Registrations", {"Retry-After": RESTORING_RETRY})
            self._rejected_cdr(stx, caller, callee_aor or request.ruri.aor, 503, "rejected")

        self.registrar.restore_accounts(parties, then)

    def _route(self, stx: IncomingRequest, caller: str) -> None:
        """An authenticated caller's new INVITE, on a location that holds both
        parties' bindings: refused, or forked to the callee's bindings."""
        request = stx.request
        callee_aor = self.registrar.aor_of(request.ruri)
        a_contact = _contact_uri(request)
        caller_binding = self._caller_binding(caller, stx.flow, a_contact)
        if caller_binding is None and not self._may_call_unregistered(caller, stx.flow):
            stx.respond(403, "Not registered")
            self._rejected_cdr(stx, caller, callee_aor or request.ruri.aor, 403, "rejected")
            return
        # RFC 3261 §8.2.2.3: we support no extension a caller could require
        # (100rel, timer, ...); the legs would silently break it otherwise
        required = required_extensions(request, frozenset())
        if required:
            stx.respond(420, "Bad Extension", {"Unsupported": ", ".join(required)})
            self._rejected_cdr(stx, caller, callee_aor or request.ruri.aor, 420, "rejected")
            return
        if request.max_forwards == 0:
            # a loop through B2BUAs (each leg is a new request) ends here, as at a proxy
            stx.respond(483, "Too Many Hops")
            self._rejected_cdr(stx, caller, callee_aor or request.ruri.aor, 483, "rejected")
            return
        if callee_aor is None or self.registrar.accounts.get(callee_aor) is None:
            stx.respond(404, "Not Found")
            self._rejected_cdr(stx, caller, callee_aor or request.ruri.aor, 404, "rejected")
            return
        bindings = self.registrar.list(callee_aor)
        if not bindings:
            stx.respond(480, "Temporarily Unavailable")
            self._rejected_cdr(stx, caller, callee_aor, 480, "not-registered")
            return
        stx.to_tag = new_id()
        a_dialog = Dialog.as_uas(request, stx.to_tag, self._our_contact(stx.flow))
        a_leg = Leg(
            "a", a_dialog, stx.flow, a_contact, invite_cseq=request.cseq.seq, state=LegState.EARLY
        )
        a_leg.peers.add(source_of(stx.flow))
        call = Call(
            id=new_id(),
            caller=caller,
            callee=callee_aor,
            a=a_leg,
            stx=stx,
            start=self.clock(),
            caller_binding_id=caller_binding,
            invite_body=request.body,
            content_type=request.content_type,
        )
        self.calls[call.id] = call
        self.started += 1
        self._by_invite_tx[stx.tx_id] = call
        self._dialogs[(a_dialog.call_id, a_dialog.local_tag)] = (call, a_leg)
        if call.caller_binding_id:
            self._by_binding.setdefault(call.caller_binding_id, set()).add(call.id)
        max_forwards = max(0, (request.max_forwards or 70) - 1)
        for number, binding in enumerate(bindings, 1):
            self._fork(call, binding, number, request, max_forwards)
        call.timers.append(self.loop.call_later(self.no_answer_timeout, self._no_answer, call))
        self.events.emit(
            ev.CallStarted(
                account=caller,
                source=a_leg.source,
                call=call.id,
                callee=callee_aor,
                forks=len(call.forks),
            )
        )

    def _fork(
        self, call: Call, binding: Binding, number: int, request: Request, max_forwards: int
    ) -> None:
        flow = binding.flow
        routes = binding.path
        hop = self.route(binding) if self.route is not None else None
        if hop is not None:  # through the node holding the binding's flow (cluster/relay.py)
            flow, first = hop
            routes = (first, *routes)
        tag = new_id()
        headers = Headers()
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", str(max_forwards))
        display = request.from_.display
        caller_uri = f"sip:{call.caller}"
        headers.add("From", f"{display + ' ' if display else ''}<{caller_uri}>;tag={tag}")
        headers.add("To", f"<sip:{call.callee}>")
        headers.add("Call-ID", new_id() + new_id())
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._our_contact(flow))
        headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO")
        if call.content_type and call.invite_body:
            headers.add("Content-Type", call.content_type)
        invite = Request("INVITE", binding.contact, headers, call.invite_body)
        dialog = Dialog.as_uac(invite, tag, self._our_contact(flow))
        leg = Leg(f"b{number}", dialog, flow, binding.contact, binding_id=binding.id)
        if hop is not None:
            leg.party_source = binding.source
        leg.peers.add(source_of(flow))
        leg.peers.add((binding.transport, binding.source_ip, binding.source_port))
        call.forks.append(leg)
        self._dialogs[(dialog.call_id, tag)] = (call, leg)
        self._by_binding.setdefault(binding.id, set()).add(call.id)
        leg.invite_tx = self.endpoint.send_request(
            invite, flow, lambda event: self._fork_event(call, leg, event)
        )

    def _caller_binding(self, caller: str, flow: Flow, contact: str | None) -> str | None:
        """The caller's binding this INVITE came from, if it is registered: the one
        registered from its source. When registration is not required, a binding
        with its Contact will do (a Contact is only the caller's claim)."""
        bindings = self.registrar.list(caller)
        return binding_at(bindings, flow, None if self.require_registration() else contact)

    def _may_call_unregistered(self, caller: str, flow: Flow) -> bool:
        """CALLS_REQUIRE_REGISTRATION: a caller that holds no binding at its source
        may call only from the account's allowed networks (a PBX, a trunk)."""
        if not self.require_registration():
            return True
        entry = self.registrar.accounts.get(caller)
        return entry is not None and bool(entry.networks) and entry.allows(flow.remote[0])

    # --- B-leg responses -----------------------------------------------------------
    def _fork_event(self, call: Call, leg: Leg, event: sipev.Event) -> None:
        if isinstance(event, sipev.TransactionTimedOut):
            self._fork_failed(call, leg, 408, "Request Timeout")
            return
        if not isinstance(event, sipev.ResponseReceived):
            return
        response = event.response
        # matched on our branch, which only the device saw: where it answers from is its own
        leg.peers.add(source_of(event.flow))
        status = response.status
        if status < 200:
            if status == 100 or leg.state not in PENDING_LEG:
                return
            if response.to.tag:
                leg.dialog.update_from_response(response)
                self._leg_input(leg, LegInput.PROVISIONAL)
            if not call.answered and not call.ended:
                self._relay_response(call.stx, response)
            return
        if status < 300:
            self._fork_answered(call, leg, response)
            return
        self._fork_failed(call, leg, status, response.reason)

    def _fork_answered(self, call: Call, leg: Leg, response: Response) -> None:
        if leg.dialog.confirmed:
            self._another_2xx(leg, response)
            return
        leg.dialog.update_from_response(response)
        self._leg_input(leg, LegInput.ANSWERED)
        if call.ended or call.b is not None:
            # too late (cancelled, failed, or another fork won): take it and hang it up
            self._ack(leg)
            self._bye(leg)
            return
        call.b = leg
        call.state = call_step(call.state, CallInput.ANSWER)
        call.answer = self.clock()
        call.final_code = 200
        for other in call.active_forks():
            self.cancel_fork(other)
        call.cancel_timers()
        call.timers.append(self.loop.call_later(self.max_call_duration, self._max_duration, call))
        call.timers.append(self.loop.call_later(ACK_WAIT, self._ack_timeout, call))
        self._leg_input(call.a, LegInput.ANSWERED)
        self._relay_response(call.stx, response)
        self._by_invite_tx.pop(call.stx.tx_id, None)
        self.events.emit(
            ev.CallAnswered(
                account=call.caller,
                source=call.a.source,
                call=call.id,
                callee=call.callee,
                callee_contact=leg.contact,
            )
        )

    def _another_2xx(self, leg: Leg, response: Response) -> None:
        """A 2xx after the one that confirmed `leg`'s dialog."""
        if response.to.tag != leg.dialog.remote_tag:
            # a second dialog from one INVITE (forked beyond the binding): ACK and end it
            self._end_extra_dialog(leg, response)
        elif leg.ack is not None:
            # a retransmission: our ACK was lost; the same ACK again (answer included).
            # Before the caller's ACK there is nothing to send: the caller's own 2xx
            # is being retransmitted by the core meanwhile.
            self.endpoint.send_stateless(leg.ack, leg.flow)

    def _end_extra_dialog(self, leg: Leg, response: Response) -> None:
        other = leg.dialog.for_response(response)
        self.endpoint.send_stateless(other.ack(response.cseq.seq), leg.flow)
        self.endpoint.send_request(other.request("BYE"), leg.flow, _ignore)

    def _fork_failed(self, call: Call, leg: Leg, status: int, reason: str) -> None:
        if leg.state not in PENDING_LEG:
            return
        self._leg_input(leg, LegInput.REJECTED)
        if call.ended or call.answered:
            return
        if call.best_failure is None or _better_failure(status, call.best_failure[0]):
            call.best_failure = (status, reason)
        if status >= 600:
            for other in call.active_forks():
                self.cancel_fork(other)
        if call.active_forks():
            return
        code, phrase = call.best_failure
        call.stx.respond(code, phrase)
        self.end_call(call, end_reason_for(code), "callee", code)

    def _relay_response(self, stx: IncomingRequest, response: Response) -> None:
        """Send `response`'s status, reason and body on the other leg's transaction."""
        out = stx.response(response.status, response.reason, response.body)
        content_type = response.content_type
        if content_type and response.body:
            out.headers.add("Content-Type", content_type)
        if response.status < 300 and response.cseq.method in ("INVITE", "UPDATE"):
            out.headers.add("Contact", self._our_contact(stx.flow))
        for name in ("Allow", "Supported", "Require", "Retry-After", "Warning"):
            value = response.headers.get(name)
            if value:
                out.headers.add(name, value)
        stx.send(out)

    # --- ACK, CANCEL, in-dialog -----------------------------------------------------
    def on_ack(self, event: sipev.AckReceived) -> None:
        request = event.request
        found = self.guard.dialog_of(request)
        if found is None:
            return
        call, leg = found
        if not self.guard.ack_from_party(leg, event.flow):
            return
        cseq = request.cseq.seq
        if leg is call.a and cseq == leg.invite_cseq:
            if call.b is not None and not call.b.acked:
                self._ack(call.b, request.body, request.content_type)
            return
        relayed = leg.relayed_invites.pop(cseq, None)
        if relayed is not None:
            other, other_cseq = relayed
            ack = other.dialog.ack(other_cseq, request.body, request.content_type)
            other.reinvite_ack = (other_cseq, ack)
            self.endpoint.send_stateless(ack, other.flow)

    def on_cancel(self, event: sipev.CancelReceived) -> None:
        waiting = self._restoring.pop(event.tx_id, None)
        if waiting is not None:  # not routed yet: nothing to cancel but the INVITE
            stx, caller = waiting
            stx.respond(487, "Request Terminated")
            callee = self.registrar.aor_of(stx.request.ruri) or stx.request.ruri.aor
            self._rejected_cdr(stx, caller, callee, 487, "cancelled")
            return
        call = self._by_invite_tx.pop(event.tx_id, None)
        if call is None or call.ended or call.answered:
            return
        for leg in call.active_forks():
            self.cancel_fork(leg)
        call.stx.respond(487, "Request Terminated")
        self.end_call(call, "cancelled", "caller", 487)

    def on_in_dialog(self, stx: IncomingRequest) -> None:
        request = stx.request
        found = self.guard.dialog_of(request)
        if found is None:
            stx.respond(481, "Call/Transaction Does Not Exist")
            return
        call, leg = found
        if not self.guard.admit(call, leg, stx):
            return
        if not leg.dialog.accepts_remote_cseq(request.cseq.seq):
            stx.respond(500, "CSeq Out of Order")
            return
        method = request.method
        if method == "BYE":
            stx.respond(200)
            self._bye_from(call, leg)
            return
        other = self._other(call, leg)
        if other is None or call.ended or other.state not in ACTIVE_LEG:
            stx.respond(481, "Call/Transaction Does Not Exist")
            return
        if request.max_forwards == 0:
            stx.respond(483, "Too Many Hops")  # relayed as a new request: a loop ends here
            return
        if method in ("INVITE", "UPDATE"):
            leg.dialog.update_target(request)
        out = other.dialog.request(method, request.body, request.content_type)
        for name in _RELAYED_HEADERS.get(method, ()):
            value = request.headers.get(name)
            if value:
                out.headers.add(name, value)
        other_cseq = out.cseq.seq
        answered = False

        def relay(event: sipev.Event) -> None:
            nonlocal answered
            if isinstance(event, sipev.TransactionTimedOut):
                stx.respond(408, "Request Timeout")
                return
            if not isinstance(event, sipev.ResponseReceived):
                return
            response = event.response
            if method == "INVITE" and 200 <= response.status < 300:
                if answered:
                    # retransmitted: our ACK was lost (re-send it), or the caller's
                    # ACK is still to come (the core retransmits our 2xx meanwhile)
                    acked = other.reinvite_ack
                    if acked is not None and acked[0] == other_cseq:
                        self.endpoint.send_stateless(acked[1], other.flow)
                    return
                answered = True
                other.dialog.update_from_response(response)
                leg.relayed_invites[request.cseq.seq] = (other, other_cseq)
            self._relay_response(stx, response)

        self.endpoint.send_request(out, other.flow, relay)

    def on_stray_response(self, event: sipev.StrayResponseReceived) -> None:
        """A 2xx retransmission whose transaction is gone: ACK it again (RFC 6026)."""
        response = event.response
        found = self._dialogs.get((response.call_id, response.from_.tag or ""))
        if found is None:
            return
        call, leg = found
        if not leg.knows(event.flow):
            return  # not from the device: nothing to ACK or hang up
        seq = response.cseq.seq
        if leg is not call.a and seq == leg.invite_cseq:
            if leg.dialog.confirmed:
                self._another_2xx(leg, response)
            else:  # a 2xx after the fork's INVITE failed (e.g. 487): ACK and end it
                self._end_extra_dialog(leg, response)
        elif leg.reinvite_ack is not None and leg.reinvite_ack[0] == seq:
            self.endpoint.send_stateless(leg.reinvite_ack[1], leg.flow)

    def _bye_from(self, call: Call, leg: Leg) -> None:
        if call.ended:
            return
        self._leg_input(leg, LegInput.BYE_RECEIVED)
        if leg is not call.a and leg is not call.b:
            return  # a losing fork that answered too late: its dialog alone ends
        if leg is call.a:
            if call.answered and call.b is not None:
                self._bye(call.b)
            else:
                for fork in call.active_forks():
                    self.cancel_fork(fork)
                call.stx.respond(487, "Request Terminated")
            self.end_call(
                call,
                "normal" if call.answered else "cancelled",
                "caller",
                200 if call.answered else 487,
            )
        else:
            self._bye(call.a)
            self.end_call(call, "normal", "callee", 200)

    # --- timers ---------------------------------------------------------------------
    def _no_answer(self, call: Call) -> None:
        if call.ended or call.answered:
            return
        for leg in call.active_forks():
            self.cancel_fork(leg)
        call.stx.respond(408, "Request Timeout")
        self.end_call(call, "no-answer", "system", 408)

    def _max_duration(self, call: Call) -> None:
        if call.answered and not call.ended:
            self.hang_up(call, "timeout")

    def _ack_timeout(self, call: Call) -> None:
        if call.answered and not call.ended and call.b is not None and not call.b.acked:
            log.warning("call %s: the caller never ACKed the 200; ending it", call.id)
            self._ack(call.b)
            self.hang_up(call, "error")

    # --- ending ---------------------------------------------------------------------
    def hang_up(
        self, call: Call, reason: str, direction: str = "system", why: str | None = None
    ) -> None:
        """End a call from our side: BYE both parties if answered, else cancel it.
        `why` is told to the parties: a Reason header (RFC 3326) on the BYEs and
        CANCELs, the reason phrase of the 487."""
        if call.ended:
            return
        header = reason_header(why) if why else None
        if call.answered:
            self._bye(call.a, header)
            if call.b is not None:
                if not call.b.acked:
                    self._ack(call.b)
                self._bye(call.b, header)
            self.end_call(call, reason, direction, call.final_code or 200)
            return
        for leg in call.active_forks():
            self.cancel_fork(leg, header)
        call.stx.respond(487, why or "Request Terminated")
        self.end_call(call, reason, direction, 487)

    def end_call(self, call: Call, reason: str, direction: str, code: int) -> None:
        """Record the end once: state, indexes, CDR, event."""
        if call.ended:
            return
        call.state = call_step(call.state, CallInput.END)
        call.end = self.clock()
        call.end_reason = reason
        call.end_direction = direction
        if call.final_code is None or not call.answer:
            call.final_code = code
        call.cancel_timers()
        self.calls.pop(call.id, None)
        self._by_invite_tx.pop(call.stx.tx_id, None)
        for binding_id in call.binding_ids():
            ids = self._by_binding.get(binding_id)
            if ids is not None:
                ids.discard(call.id)
                if not ids:
                    del self._by_binding[binding_id]
        # keep dialogs a little longer so late BYE/ACK retransmissions still match
        keys = [(leg.dialog.call_id, leg.dialog.local_tag) for leg in call.legs()]
        self.loop.call_later(ACK_WAIT, self._forget_dialogs, keys)
        self.ended_by_reason[reason] += 1
        self.cdrs.add(call.cdr())
        self.events.emit(
            ev.CallEnded(
                account=call.caller,
                source=call.a.source,
                call=call.id,
                callee=call.callee,
                reason=reason,
                direction=direction,
                code=call.final_code,
                duration=round((call.end - call.answer) if call.answer else 0.0, 3),
            )
        )

    def _forget_dialogs(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            found = self._dialogs.get(key)
            if found is not None and found[0].ended:
                del self._dialogs[key]

    def calls_of(self, binding_id: str) -> list[Call]:
        return [self.calls[c] for c in self._by_binding.get(binding_id, ()) if c in self.calls]

    # --- sending helpers ------------------------------------------------------------
    def _ack(self, leg: Leg, body: bytes = b"", content_type: str | None = None) -> None:
        leg.acked = True
        leg.ack = leg.dialog.ack(leg.invite_cseq, body, content_type)
        self.endpoint.send_stateless(leg.ack, leg.flow)

    def _bye(self, leg: Leg, reason: str | None = None) -> None:
        self._leg_input(leg, LegInput.HANG_UP, reason)

    def cancel_fork(self, leg: Leg, reason: str | None = None) -> None:
        """Give up an unanswered fork (CANCEL toward its device); `reason` is a
        Reason header value (RFC 3326)."""
        self._leg_input(leg, LegInput.CANCEL, reason)

    def _leg_input(self, leg: Leg, given: LegInput, reason: str | None = None) -> None:
        """The one place a leg's state changes: the table's next state, then its action."""
        action, leg.state = leg_step(leg.state, given)
        if action is LegAction.SEND_CANCEL:
            if leg.invite_tx is not None:
                self.endpoint.send_cancel(leg.invite_tx, reason)
        elif action is LegAction.SEND_BYE:
            bye = leg.dialog.request("BYE")
            if reason:
                bye.headers.add("Reason", reason)
            self.endpoint.send_request(bye, leg.flow, _ignore)

    def _other(self, call: Call, leg: Leg) -> Leg | None:
        if leg is not call.a:
            return call.a
        if call.b is not None:
            return call.b
        # the caller's UPDATE/INFO while ringing: to the early dialog, if it is the only one
        early = [fork for fork in call.active_forks() if fork.dialog.remote_tag is not None]
        return early[0] if len(early) == 1 else None

    def _our_contact(self, flow: Flow) -> str:
        return our_contact(flow, self.advertised_host)

    def _rejected_cdr(
        self, stx: IncomingRequest, caller: str, callee: str, code: int, reason: str
    ) -> None:
        from regswitch.storage.base import CdrRecord

        now = self.clock()
        flow = stx.flow
        self.cdrs.add(
            CdrRecord(
                id=new_id(),
                caller=caller,
                callee=callee,
                caller_contact=_contact_uri(stx.request),
                caller_source=f"{flow.transport}:{flow.remote[0]}:{flow.remote[1]}",
                a_call_id=stx.request.call_id,
                start=now,
                end=now,
                final_code=code,
                end_reason=reason,
                end_direction="system",
            )
        )
        self.ended_by_reason[reason] += 1
        self.events.emit(
            ev.CallEnded(
                account=caller,
                source=f"{flow.remote[0]}",
                call=None,
                callee=callee,
                reason=reason,
                direction="system",
                code=code,
                duration=0.0,
            )
        )

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [call.view(now) for call in sorted(self.calls.values(), key=lambda c: c.start)]


def _ignore(_: sipev.Event) -> None:
    pass


def _contact_uri(message: Request) -> str | None:
    contacts = message.contacts
    return contacts[0].uri_text if contacts else None


def _better_failure(status: int, current: int) -> bool:
    """RFC 3261 §16.7 flavour: 6xx beats all, then the lowest class (4xx over 5xx);
    within a class a 408 (a fork that did not answer) says the least, else the lower code."""
    return _failure_rank(status) < _failure_rank(current)


def _failure_rank(status: int) -> tuple[int, int, bool, int]:
    return (status < 600, status // 100, status == 408, status)
