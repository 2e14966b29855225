"""The states of a call and of its legs, and the one table each that says how
they change (as sip/transaction.py does for transactions).

The B2BUA and the kick (teardown.py) never assign a state: they give a leg or
a call an input, and `leg_step` / `call_step` return what to do and the next
state. An input the table does not list for a state is a bug in the caller,
raised as `IllegalTransition` rather than silently changing the state.

The states are str enums: their values are what the API, the console and the
CDRs have always shown ("answered", "ended", ...).
"""

from __future__ import annotations

from enum import Enum, StrEnum


class LegState(StrEnum):
    TRYING = "trying"  # B: INVITE sent, no dialog yet
    EARLY = "early"  # an early dialog (B: a 1xx with a To tag; A: the caller's INVITE)
    CONFIRMED = "confirmed"  # answered (2xx)
    FAILED = "failed"  # never answered: rejected, timed out or cancelled
    ENDED = "ended"  # a confirmed dialog that a BYE ended


class LegInput(Enum):
    PROVISIONAL = "provisional"  # a 1xx with a To tag
    ANSWERED = "answered"  # a 2xx for the INVITE (B), or ours sent to the caller (A)
    REJECTED = "rejected"  # a final failure response or a timeout
    CANCEL = "cancel"  # we give up an unanswered fork (another answered, hang-up, kick)
    HANG_UP = "hang-up"  # we end the dialog
    BYE_RECEIVED = "bye-received"  # the party ended it


class LegAction(Enum):
    NONE = "none"
    SEND_CANCEL = "send-cancel"  # CANCEL the leg's INVITE
    SEND_BYE = "send-bye"  # BYE in the leg's dialog


class CallState(StrEnum):
    SETUP = "setup"
    ANSWERED = "answered"
    ENDED = "ended"


class CallInput(Enum):
    ANSWER = "answer"  # a fork answered and won
    END = "end"  # hung up, cancelled, failed, timed out, kicked


class IllegalTransition(RuntimeError):
    """An input the table has no entry for in that state."""


_T, _E, _C, _F, _X = (
    LegState.TRYING, LegState.EARLY, LegState.CONFIRMED, LegState.FAILED, LegState.ENDED,
)  # fmt: skip
_NONE, _CANCEL, _BYE = LegAction.NONE, LegAction.SEND_CANCEL, LegAction.SEND_BYE

#: (state, input) -> (action, next state)
LEG_TABLE: dict[tuple[LegState, LegInput], tuple[LegAction, LegState]] = {
    (_T, LegInput.PROVISIONAL): (_NONE, _E),
    (_E, LegInput.PROVISIONAL): (_NONE, _E),
    (_T, LegInput.ANSWERED): (_NONE, _C),
    (_E, LegInput.ANSWERED): (_NONE, _C),
    # a 2xx that crossed our CANCEL (or came after the device's own BYE): the
    # dialog exists all the same, and the B2BUA ACKs it and ends it with a BYE
    (_F, LegInput.ANSWERED): (_NONE, _C),
    (_X, LegInput.ANSWERED): (_NONE, _C),
    (_T, LegInput.REJECTED): (_NONE, _F),
    (_E, LegInput.REJECTED): (_NONE, _F),
    (_T, LegInput.CANCEL): (_CANCEL, _F),
    (_E, LegInput.CANCEL): (_CANCEL, _F),
    (_C, LegInput.HANG_UP): (_BYE, _X),
    # a BYE from the party: in its dialog, or (the caller, before the answer)
    # one that gives the call up; one for a dialog we already ended or gave up
    # ends it all the same
    (_T, LegInput.BYE_RECEIVED): (_NONE, _X),
    (_E, LegInput.BYE_RECEIVED): (_NONE, _X),
    (_C, LegInput.BYE_RECEIVED): (_NONE, _X),
    (_F, LegInput.BYE_RECEIVED): (_NONE, _X),
    (_X, LegInput.BYE_RECEIVED): (_NONE, _X),
}

#: (state, input) -> next state
CALL_TABLE: dict[tuple[CallState, CallInput], CallState] = {
    (CallState.SETUP, CallInput.ANSWER): CallState.ANSWERED,
    (CallState.SETUP, CallInput.END): CallState.ENDED,
    (CallState.ANSWERED, CallInput.END): CallState.ENDED,
}

#: a leg that can still be answered, or is (a call's live legs)
ACTIVE_LEG = frozenset({_T, _E, _C})
#: a fork not yet answered nor given up
PENDING_LEG = frozenset({_T, _E})


def leg_step(state: LegState, given: LegInput) -> tuple[LegAction, LegState]:
    found = LEG_TABLE.get((state, given))
    if found is None:
        raise IllegalTransition(f"leg in state {state.value}: no transition for {given.value}")
    return found


def call_step(state: CallState, given: CallInput) -> CallState:
    found = CALL_TABLE.get((state, given))
    if found is None:
        raise IllegalTransition(f"call in state {state.value}: no transition for {given.value}")
    return found
