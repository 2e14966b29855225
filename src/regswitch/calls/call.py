"""A call: the A-leg toward the caller, B-legs (forks) toward the callee's bindings.

Each leg is its own dialog with its own Call-ID, tags and CSeq space; the
B2BUA relays call-control between them.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from regswitch.calls.states import ACTIVE_LEG, PENDING_LEG, CallState, LegState
from regswitch.registrar.bindings import Binding
from regswitch.sip.dialog import Dialog
from regswitch.sip.errors import ParseError
from regswitch.sip.flow import Flow
from regswitch.sip.message import Request
from regswitch.sip.uri import parse_uri
from regswitch.storage.base import CdrRecord
from regswitch.transport.endpoint import IncomingRequest

Source = tuple[str, str, int]  # (transport, address, port) a request came from


def source_of(flow: Flow) -> Source:
    return (flow.transport, flow.remote[0], flow.remote[1])


@dataclass(slots=True)
class Leg:
    name: str  # "a" or "b1", "b2", ...
    dialog: Dialog
    flow: Flow
    contact: str | None
    binding_id: str | None = None
    invite_tx: str | None = None  # B: our INVITE client transaction
    state: LegState = LegState.TRYING  # changed only through calls/states.py's table
    invite_cseq: int = 1
    acked: bool = False  # B: the 2xx of the initial INVITE was ACKed
    ack: Request | None = None  # B: that ACK, sent again when the 2xx is retransmitted
    # the ACK we relayed for the last re-INVITE we sent on this leg: (its CSeq, the ACK)
    reinvite_ack: tuple[int, Request] | None = None
    # in-dialog INVITEs relayed from this leg, by their CSeq here: (other leg, its CSeq)
    relayed_invites: dict[int, tuple[Leg, int]] = field(default_factory=dict)
    # where the party is known to send from: the INVITE's source (A), the binding's
    # source and address and where its responses came from (B), and any source it
    # authenticated from later. In-dialog requests from elsewhere must authenticate.
    peers: set[Source] = field(default_factory=set)
    # the party's own source when the leg goes through another cluster node
    # (`flow` then leads to that node): what CDRs and the console show
    party_source: str | None = None

    @property
    def source(self) -> str:
        if self.party_source is not None:
            return self.party_source
        return f"{self.flow.transport}:{self.flow.remote[0]}:{self.flow.remote[1]}"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_LEG

    def knows(self, flow: Flow) -> bool:
        """Did `flow` come from where this leg's party is known to send from (its
        peers), or from the address of its remote target?"""
        source = source_of(flow)
        return source in self.peers or source == target_source(
            self.dialog.remote_target, flow.transport
        )


@dataclass(slots=True)
class Call:
    id: str
    caller: str
    callee: str
    a: Leg
    stx: IncomingRequest  # the caller's INVITE, until it has a final response
    start: float
    caller_binding_id: str | None = None
    forks: list[Leg] = field(default_factory=list)
    b: Leg | None = None  # the fork that answered
    state: CallState = CallState.SETUP  # changed only through calls/states.py's table
    answer: float | None = None
    end: float | None = None
    final_code: int | None = None
    end_reason: str | None = None
    end_direction: str | None = None
    invite_body: bytes = b""
    content_type: str | None = None
    best_failure: tuple[int, str] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.state is CallState.ANSWERED

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def active_forks(self) -> list[Leg]:
        return [leg for leg in self.forks if leg.state in PENDING_LEG]

    def legs(self) -> list[Leg]:
        return [self.a, *self.forks]

    def account_of(self, leg: Leg) -> str:
        """The account whose credentials the party of `leg` holds."""
        return self.caller if leg is self.a else self.callee

    def binding_ids(self) -> set[str]:
        ids = {leg.binding_id for leg in self.forks if leg.binding_id}
        if self.caller_binding_id:
            ids.add(self.caller_binding_id)
        return ids

    def cancel_timers(self) -> None:
        for handle in self.timers:
            handle.cancel()
        self.timers.clear()

    def cdr(self) -> CdrRecord:
        callee_leg = self.b or (self.forks[0] if self.forks else None)
        end = self.end if self.end is not None else self.start
        billable = 0
        if self.answer is not None:
            billable = max(0, math.ceil(end - self.answer - 1e-6))
        return CdrRecord(
            id=self.id,
            caller=self.caller,
            callee=self.callee,
            caller_contact=self.a.contact,
            callee_contact=callee_leg.contact if callee_leg else None,
            caller_source=self.a.source,
            callee_source=callee_leg.source if callee_leg else None,
            a_call_id=self.a.dialog.call_id,
            b_call_id=callee_leg.dialog.call_id if callee_leg else None,
            start=self.start,
            answer=self.answer,
            end=end,
            billable_seconds=billable,
            final_code=self.final_code or 0,
            end_reason=self.end_reason or "error",
            end_direction=self.end_direction or "system",
        )

    def view(self, now: float) -> dict[str, Any]:
        callee_leg = self.b or (self.forks[0] if self.forks else None)
        return {
            "id": self.id,
            "caller": self.caller,
            "callee": self.callee,
            "state": self.state,
            "start": self.start,
            "answer": self.answer,
            "duration": round(now - (self.answer or self.start), 1),
            "caller_source": self.a.source,
            "caller_contact": self.a.contact,
            "callee_contact": callee_leg.contact if callee_leg else None,
            "callee_source": callee_leg.source if callee_leg else None,
            "a_call_id": self.a.dialog.call_id,
            "b_call_id": callee_leg.dialog.call_id if callee_leg else None,
            "forks": len(self.forks),
            "bindings": sorted(self.binding_ids()),
            # None: placed by a device of the caller that is not registered
            "caller_binding": self.caller_binding_id,
        }


def target_source(target: str, transport: str) -> Source | None:
    """Where a remote target URI says the party is, as a source on `transport`."""
    try:
        uri = parse_uri(target)
    except ParseError:
        return None
    port = uri.port or (5061 if uri.scheme == "sips" or transport == "tls" else 5060)
    return (transport, uri.host.strip("[]"), port)


def binding_at(bindings: list[Binding], flow: Flow, contact: str | None) -> str | None:
    """The id of the binding registered from `flow`'s source or, given a `contact`,
    failing that the one with that Contact."""
    for b in bindings:
        if (b.source_ip, b.source_port, b.transport) == (*flow.remote, flow.transport):
            return b.id
    for b in bindings:
        if contact is not None and b.contact == contact:
            return b.id
    return None


def reason_header(text: str, cause: int = 480) -> str:
    """An RFC 3326 Reason value: why our BYE or CANCEL ends the call."""
    return f'SIP;cause={cause};text="{text}"'


def end_reason_for(status: int) -> str:
    """CDR end reason of a call that failed with `status` from the callee side."""
    if status in (486, 600):
        return "busy"
    if status == 408:
        return "no-answer"
    if status == 487:
        return "cancelled"
    return "rejected"
