"""The call and leg state tables: every (state, input) pair either does what the
table promises or is refused."""

from __future__ import annotations

import itertools

import pytest

from regswitch.calls.states import (
    ACTIVE_LEG,
    CALL_TABLE,
    LEG_TABLE,
    PENDING_LEG,
    CallInput,
    CallState,
    IllegalTransition,
    LegAction,
    LegInput,
    LegState,
    call_step,
    leg_step,
)

S, In, A = LegState, LegInput, LegAction

# What the B2BUA relies on, written out independently of the table.
EXPECTED_LEG = {
    (S.TRYING, In.PROVISIONAL): (A.NONE, S.EARLY),
    (S.EARLY, In.PROVISIONAL): (A.NONE, S.EARLY),
    (S.TRYING, In.ANSWERED): (A.NONE, S.CONFIRMED),
    (S.EARLY, In.ANSWERED): (A.NONE, S.CONFIRMED),
    (S.FAILED, In.ANSWERED): (A.NONE, S.CONFIRMED),
    (S.ENDED, In.ANSWERED): (A.NONE, S.CONFIRMED),
    (S.TRYING, In.REJECTED): (A.NONE, S.FAILED),
    (S.EARLY, In.REJECTED): (A.NONE, S.FAILED),
    (S.TRYING, In.CANCEL): (A.SEND_CANCEL, S.FAILED),
    (S.EARLY, In.CANCEL): (A.SEND_CANCEL, S.FAILED),
    (S.CONFIRMED, In.HANG_UP): (A.SEND_BYE, S.ENDED),
    (S.TRYING, In.BYE_RECEIVED): (A.NONE, S.ENDED),
    (S.EARLY, In.BYE_RECEIVED): (A.NONE, S.ENDED),
    (S.CONFIRMED, In.BYE_RECEIVED): (A.NONE, S.ENDED),
    (S.FAILED, In.BYE_RECEIVED): (A.NONE, S.ENDED),
    (S.ENDED, In.BYE_RECEIVED): (A.NONE, S.ENDED),
}


@pytest.mark.parametrize("state,given", list(itertools.product(LegState, LegInput)))
def test_every_leg_pair_is_defined_or_refused(state: LegState, given: LegInput) -> None:
    expected = EXPECTED_LEG.get((state, given))
    if expected is None:
        with pytest.raises(IllegalTransition, match=state.value):
            leg_step(state, given)
    else:
        assert leg_step(state, given) == expected


def test_the_leg_table_is_exactly_the_expected_one() -> None:
    assert LEG_TABLE == EXPECTED_LEG


def test_only_pending_legs_can_be_cancelled_and_only_confirmed_ones_hung_up() -> None:
    cancellable = {s for s in LegState if (s, In.CANCEL) in LEG_TABLE}
    assert cancellable == PENDING_LEG
    assert {s for s in LegState if (s, In.HANG_UP) in LEG_TABLE} == {S.CONFIRMED}
    assert PENDING_LEG | {S.CONFIRMED} == ACTIVE_LEG


@pytest.mark.parametrize("state,given", list(itertools.product(CallState, CallInput)))
def test_every_call_pair_is_defined_or_refused(state: CallState, given: CallInput) -> None:
    expected = {
        (CallState.SETUP, CallInput.ANSWER): CallState.ANSWERED,
        (CallState.SETUP, CallInput.END): CallState.ENDED,
        (CallState.ANSWERED, CallInput.END): CallState.ENDED,
    }.get((state, given))
    if expected is None:
        with pytest.raises(IllegalTransition):
            call_step(state, given)
    else:
        assert call_step(state, given) is expected
    assert CALL_TABLE.get((state, given)) is expected


def test_an_ended_call_is_never_answered_nor_ended_twice() -> None:
    with pytest.raises(IllegalTransition):
        call_step(CallState.ENDED, CallInput.END)
    with pytest.raises(IllegalTransition):
        call_step(CallState.ANSWERED, CallInput.ANSWER)


def test_states_keep_the_strings_the_api_shows() -> None:
    assert [s.value for s in LegState] == ["trying", "early", "confirmed", "failed", "ended"]
    assert [s.value for s in CallState] == ["setup", "answered", "ended"]
    assert f"{CallState.ANSWERED}" == "answered"
