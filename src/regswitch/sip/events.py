"""What the transaction layer reports to its user (drained with `events()`)."""

from __future__ import annotations

from dataclasses import dataclass

from regswitch.sip.errors import ParseError
from regswitch.sip.flow import Flow
from regswitch.sip.message import Request, Response


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new server transaction; answer it with `respond(tx_id, ...)`.

    Never an ACK or a CANCEL: those have events of their own.
    """

    tx_id: str
    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK outside any transaction: the ACK of a 2xx (RFC 3261 §17.1.1.3)."""

    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched the INVITE server transaction `tx_id`.

    The core has already answered the CANCEL with 200; whether the INVITE gets
    487 is the user's decision (RFC 3261 §9.2).
    """

    tx_id: str
    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for client transaction `tx_id` (provisional or final; with
    RFC 6026, 2xx retransmissions to an INVITE are delivered too)."""

    tx_id: str
    response: Response
    flow: Flow


@dataclass(frozen=True, slots=True)
class StrayResponseReceived:
    """A 2xx to an INVITE whose transaction is gone (or which already took a
    non-2xx final from another fork): the dialog must ACK it (and BYE it if it
    is unwanted)."""

    response: Response
    flow: Flow


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Client: no final response (Timer B/F, or 64*T1 after our CANCEL) — treat
    as 408. Server INVITE: no ACK for a non-2xx final (Timer H), or none for a
    2xx the core retransmitted until Timer L (RFC 3261 §13.3.1.4: end the
    session)."""

    tx_id: str
    client: bool


@dataclass(frozen=True, slots=True)
class MalformedReceived:
    """Bytes that did not parse; the endpoint answers a request with
    `serialise.error_response_for_raw` and counts a response."""

    data: bytes
    flow: Flow
    error: ParseError


Event = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | StrayResponseReceived
    | TransactionTimedOut
    | MalformedReceived
)
