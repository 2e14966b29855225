"""Transaction state machines (RFC 3261 §17 with RFC 6026) as data.

Each of the four kinds of transaction has one table mapping (state, input) to
(action, next state), in the style of h2's stream table: the layer looks up
the pair, runs the named action and moves to the next state. A pair missing
from a table means the input is not allowed there: from the TU that is a
LocalProtocolError; from the network or a timer it is absorbed.

The transactions themselves are small `__slots__` objects holding only what
their actions need; the layer (txlayer.py) owns matching, timers and I/O.
"""

from __future__ import annotations

from enum import IntEnum

from regswitch.sip.flow import Flow
from regswitch.sip.message import Request


class State(IntEnum):
    CALLING = 1  # client INVITE before any response
    TRYING = 2  # non-INVITE before any response
    PROCEEDING = 3
    COMPLETED = 4
    CONFIRMED = 5  # server INVITE: ACK for a non-2xx final received
    ACCEPTED = 6  # RFC 6026: 2xx sent/received, lingering
    TERMINATED = 7


class Input(IntEnum):
    # from the network (server: requests; client: responses)
    REQUEST = 1  # a retransmission of the request that created the server tx
    ACK = 2
    PROVISIONAL = 3  # 1xx (client: received; server: from the TU)
    SUCCESS = 4  # 2xx
    FAILURE = 5  # 300-699
    # timers
    TIMER_RETX = 6  # A, E or G
    TIMER_OUT = 7  # the one timeout/wait timer running: B, D, F, H, I, J, K, L or M


class Action(IntEnum):
    # server side
    SEND = 1  # pass the TU's response to the transport, remember it
    SEND_FINAL = 2  # ... and start the Completed timers (G+H or J)
    SEND_ACCEPT = 3  # ... 2xx to INVITE: start G (UDP) and L, RFC 6026
    RESEND_LAST = 4  # a retransmitted request: send the last response again
    RETRANSMIT_RESPONSE = 5  # Timer G
    CONFIRM = 6  # ACK for a non-2xx: stop G/H, start I
    ACK_2XX = 7  # ACK for a 2xx in Accepted: stop G, AckReceived
    # client side
    DELIVER = 8  # ResponseReceived
    DELIVER_PROCEED = 9  # ... first 1xx: INVITE stops A and B, sends a deferred CANCEL
    DELIVER_ACCEPT = 10  # ... first 2xx to INVITE: stop A/B, start M
    DELIVER_ACK = 11  # ... non-2xx final to INVITE: send the ACK, start D
    DELIVER_COMPLETE = 12  # ... final to non-INVITE: stop E/F, start K
    RESEND_ACK = 13  # a retransmitted non-2xx final in Completed
    RETRANSMIT_REQUEST = 14  # Timer A or E
    # both
    TIME_OUT = 15  # B, F, H: TransactionTimedOut
    TERMINATE = 16  # D, I, J, K, M: forget the transaction
    TERMINATE_ACCEPTED = 17  # L: forget it; TransactionTimedOut if the 2xx got no ACK


S, I, A = State, Input, Action  # noqa: E741 - short names keep the tables readable
Table = dict[tuple[State, Input], tuple[Action, State]]

# RFC 3261 Figure 5 + RFC 6026 Figure 5 (client INVITE).
CLIENT_INVITE: Table = {
    (S.CALLING, I.TIMER_RETX): (A.RETRANSMIT_REQUEST, S.CALLING),  # Timer A
    (S.CALLING, I.TIMER_OUT): (A.TIME_OUT, S.TERMINATED),  # Timer B
    (S.CALLING, I.PROVISIONAL): (A.DELIVER_PROCEED, S.PROCEEDING),
    (S.CALLING, I.SUCCESS): (A.DELIVER_ACCEPT, S.ACCEPTED),
    (S.CALLING, I.FAILURE): (A.DELIVER_ACK, S.COMPLETED),
    (S.PROCEEDING, I.PROVISIONAL): (A.DELIVER, S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): (A.DELIVER_ACCEPT, S.ACCEPTED),
    (S.PROCEEDING, I.FAILURE): (A.DELIVER_ACK, S.COMPLETED),
    # armed only once a CANCEL went out (RFC 3261 §9.1: give up 64*T1 later)
    (S.PROCEEDING, I.TIMER_OUT): (A.TIME_OUT, S.TERMINATED),
    (S.COMPLETED, I.FAILURE): (A.RESEND_ACK, S.COMPLETED),
    (S.COMPLETED, I.TIMER_OUT): (A.TERMINATE, S.TERMINATED),  # Timer D
    (S.ACCEPTED, I.SUCCESS): (A.DELIVER, S.ACCEPTED),  # 2xx retransmissions, other forks
    (S.ACCEPTED, I.TIMER_OUT): (A.TERMINATE, S.TERMINATED),  # Timer M
}

# RFC 3261 Figure 6 (client non-INVITE).
CLIENT_NON_INVITE: Table = {
    (S.TRYING, I.TIMER_RETX): (A.RETRANSMIT_REQUEST, S.TRYING),  # Timer E
    (S.TRYING, I.TIMER_OUT): (A.TIME_OUT, S.TERMINATED),  # Timer F
    (S.TRYING, I.PROVISIONAL): (A.DELIVER_PROCEED, S.PROCEEDING),
    (S.TRYING, I.SUCCESS): (A.DELIVER_COMPLETE, S.COMPLETED),
    (S.TRYING, I.FAILURE): (A.DELIVER_COMPLETE, S.COMPLETED),
    (S.PROCEEDING, I.TIMER_RETX): (A.RETRANSMIT_REQUEST, S.PROCEEDING),  # Timer E at T2
    (S.PROCEEDING, I.TIMER_OUT): (A.TIME_OUT, S.TERMINATED),  # Timer F
    (S.PROCEEDING, I.PROVISIONAL): (A.DELIVER, S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): (A.DELIVER_COMPLETE, S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): (A.DELIVER_COMPLETE, S.COMPLETED),
    (S.COMPLETED, I.TIMER_OUT): (A.TERMINATE, S.TERMINATED),  # Timer K
}

# RFC 3261 Figure 7 + RFC 6026 Figure 7 (server INVITE). It starts in
# Proceeding: the core sends 100 Trying at once.
SERVER_INVITE: Table = {
    (S.PROCEEDING, I.REQUEST): (A.RESEND_LAST, S.PROCEEDING),
    (S.PROCEEDING, I.PROVISIONAL): (A.SEND, S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): (A.SEND_ACCEPT, S.ACCEPTED),
    (S.PROCEEDING, I.FAILURE): (A.SEND_FINAL, S.COMPLETED),
    (S.COMPLETED, I.REQUEST): (A.RESEND_LAST, S.COMPLETED),
    (S.COMPLETED, I.TIMER_RETX): (A.RETRANSMIT_RESPONSE, S.COMPLETED),  # Timer G
    (S.COMPLETED, I.TIMER_OUT): (A.TIME_OUT, S.TERMINATED),  # Timer H
    (S.COMPLETED, I.ACK): (A.CONFIRM, S.CONFIRMED),
    (S.CONFIRMED, I.TIMER_OUT): (A.TERMINATE, S.TERMINATED),  # Timer I
    # RFC 6026: INVITE retransmissions are absorbed in Accepted; the 2xx is
    # retransmitted on Timer G (the UAS core's job, RFC 3261 §13.3.1.4, done
    # here) until its ACK, which goes to the TU.
    (S.ACCEPTED, I.SUCCESS): (A.SEND, S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_RETX): (A.RETRANSMIT_RESPONSE, S.ACCEPTED),  # Timer G
    (S.ACCEPTED, I.ACK): (A.ACK_2XX, S.ACCEPTED),
    (S.ACCEPTED, I.TIMER_OUT): (A.TERMINATE_ACCEPTED, S.TERMINATED),  # Timer L
}

# RFC 3261 Figure 8 (server non-INVITE).
SERVER_NON_INVITE: Table = {
    (S.TRYING, I.PROVISIONAL): (A.SEND, S.PROCEEDING),
    (S.TRYING, I.SUCCESS): (A.SEND_FINAL, S.COMPLETED),
    (S.TRYING, I.FAILURE): (A.SEND_FINAL, S.COMPLETED),
    (S.PROCEEDING, I.REQUEST): (A.RESEND_LAST, S.PROCEEDING),
    (S.PROCEEDING, I.PROVISIONAL): (A.SEND, S.PROCEEDING),
    (S.PROCEEDING, I.SUCCESS): (A.SEND_FINAL, S.COMPLETED),
    (S.PROCEEDING, I.FAILURE): (A.SEND_FINAL, S.COMPLETED),
    (S.COMPLETED, I.REQUEST): (A.RESEND_LAST, S.COMPLETED),
    (S.COMPLETED, I.TIMER_OUT): (A.TERMINATE, S.TERMINATED),  # Timer J
}

# Inputs the TU gives (respond/send); missing pairs for them are its mistakes.
TU_INPUTS = frozenset({I.PROVISIONAL, I.SUCCESS, I.FAILURE})


def response_input(status: int) -> Input:
    if status < 200:
        return I.PROVISIONAL
    return I.SUCCESS if status < 300 else I.FAILURE


class ServerTransaction:
    """A non-INVITE server transaction, and the base of the INVITE one.

    Kept tiny because ~600k of them linger in Completed for Timer J: once the
    final response is out, `flow` is dropped (a retransmitted request brings a
    new one) and only the key, the response bytes and the deadline remain.
    """

    __slots__ = ("flow", "key", "last", "merge_key", "state", "t_out", "t_retx")
    table = SERVER_NON_INVITE
    invite = False
    client = False

    def __init__(self, key: str, flow: Flow | None, state: State) -> None:
        self.key = key  # the matching key; doubles as tx_id
        self.state = state
        self.flow = flow  # where responses go (RFC 3261 §18.2.2)
        self.last: bytes | None = None  # last response sent
        self.merge_key: str | None = None  # entry in the merged-request index
        self.t_out = -1.0
        self.t_retx = -1.0


class InviteServerTransaction(ServerTransaction):
    __slots__ = ("ack_key", "acked", "interval", "origin", "to_tag")
    table = SERVER_INVITE
    invite = True

    def __init__(self, key: str, flow: Flow | None, state: State) -> None:
        super().__init__(key, flow, state)
        self.origin: Flow | None = None  # where the INVITE came from: its CANCEL and ACK must too
        self.interval = 0.0  # current Timer G interval
        self.to_tag: str | None = None  # ours, reused in the 200 to a CANCEL
        self.ack_key: str | None = None  # Accepted: entry in the 2xx-ACK index
        self.acked = False  # Accepted: the 2xx was ACKed


class ClientTransaction:
    """A non-INVITE client transaction, and the base of the INVITE one: the
    request bytes are all a retransmission needs."""

    __slots__ = ("data", "flow", "interval", "key", "state", "t_out", "t_retx")
    table = CLIENT_NON_INVITE
    invite = False
    client = True

    def __init__(self, key: str, data: bytes, flow: Flow, state: State) -> None:
        self.key = key  # "<branch> <method>"; doubles as tx_id
        self.data = data
        self.flow = flow
        self.state = state
        self.interval = 0.0  # current Timer A/E interval
        self.t_out = -1.0
        self.t_retx = -1.0


class InviteClientTransaction(ClientTransaction):
    """Keeps the request: its ACK (non-2xx) and its CANCEL are built from it."""

    __slots__ = ("ack", "cancel", "cancel_pending", "cancel_reason", "request")
    table = CLIENT_INVITE
    invite = True

    def __init__(self, key: str, request: Request, data: bytes, flow: Flow, state: State) -> None:
        super().__init__(key, data, flow, state)
        self.request = request
        self.ack: bytes | None = None  # our ACK for a non-2xx final
        self.cancel: str | None = None  # tx_id of our CANCEL once asked for
        self.cancel_pending = False  # asked before any 1xx: deferred (§9.1)
        self.cancel_reason: str | None = None


Transaction = ServerTransaction | ClientTransaction
