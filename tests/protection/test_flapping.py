"""Flapping detection (protection/flapping.py), with a fake clock."""

from __future__ import annotations

from regswitch.protection.flapping import FlapDetector

AOR = "alice@regswitch.local"


def test_more_than_limit_replacements_in_the_window_is_flapping_and_holds() -> None:
    f = FlapDetector(limit=2, window=60, hold=300)
    assert not f.replaced(AOR, 0.0)
    assert not f.replaced(AOR, 1.0)
    assert f.replaced(AOR, 2.0)  # the third within 60 s
    assert f.held(AOR, 3.0) and f.held_until(AOR) == 302.0
    assert not f.held("bob@regswitch.local", 3.0)
    assert not f.held(AOR, 302.0)  # the hold ends
    assert f.held_until(AOR) is None


def test_replacements_outside_the_window_do_not_add_up() -> None:
    f = FlapDetector(limit=2, window=60, hold=300)
    assert not f.replaced(AOR, 0.0)
    assert not f.replaced(AOR, 50.0)
    assert not f.replaced(AOR, 100.0)  # the first one has left the window
    assert f.replaced(AOR, 105.0)


def test_after_a_hold_counting_starts_afresh() -> None:
    f = FlapDetector(limit=1, window=60, hold=10)
    f.replaced(AOR, 0.0)
    assert f.replaced(AOR, 1.0)
    assert not f.held(AOR, 11.0)
    assert not f.replaced(AOR, 12.0)  # one replacement is within the limit again
    assert f.replaced(AOR, 13.0)


def test_without_a_hold_flapping_is_still_reported() -> None:
    # REGISTER_FLAP_HOLD 0: nothing is refused, but the operator still hears of it
    f = FlapDetector(limit=1, window=60, hold=0)
    f.replaced(AOR, 0.0)
    assert f.replaced(AOR, 1.0)
    assert not f.held(AOR, 1.0) and f.held_until(AOR) is None
    assert not f.replaced(AOR, 2.0)  # reported once per burst, not on every replacement


def test_release() -> None:
    f = FlapDetector(limit=1, window=60, hold=100)
    f.replaced(AOR, 0.0)
    f.replaced(AOR, 0.0)
    f.release(AOR)
    assert not f.held(AOR, 1.0)
