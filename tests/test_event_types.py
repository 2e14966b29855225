"""The event schema (common/domain_events.py): every event type has its class,
the API's `type` filter accepts each, and `details_of` makes the details the
API and the console read."""

from __future__ import annotations

import dataclasses

import pytest

from regswitch.common import domain_events as ev


def test_every_event_type_has_one_class_and_is_filterable() -> None:
    declared = {
        value for name, value in vars(ev).items() if name.isupper() and isinstance(value, str)
    }
    assert declared == ev.EVENT_TYPES == {cls.TYPE for cls in ev.EVENT_CLASSES}
    assert len({cls.__name__ for cls in ev.EVENT_CLASSES}) == len(ev.EVENT_CLASSES)


def test_events_are_frozen() -> None:
    event = ev.Expired(account="a@b", source="udp:192.0.2.1:5060", contact="sip:a@x", binding="b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.contact = "sip:other@x"  # type: ignore[misc]


def test_details_of_gives_the_fields_and_leaves_out_unset_optional_ones() -> None:
    still = ev.Refreshed(account="a@b", source="s", contact="sip:a@x", binding="b1", expires=60)
    assert ev.details_of(still) == {"contact": "sip:a@x", "binding": "b1", "expires": 60}
    moved = ev.SameDevice(
        account="a@b", source="s", contact="sip:a@y", binding="b1", expires=60,
        old_contact="sip:a@x", old_source="udp:192.0.2.1:5060",
    )  # fmt: skip
    assert moved.TYPE == ev.SAME_DEVICE
    assert ev.details_of(moved) == {
        "contact": "sip:a@y", "binding": "b1", "expires": 60,
        "old_contact": "sip:a@x", "old_source": "udp:192.0.2.1:5060",
    }  # fmt: skip
    # a required field is always there, None included ("unknown")
    ended = ev.CallEnded(
        account="a@b", source="192.0.2.1", call=None, callee="c@b", reason="r",
        direction="system", code=None, duration=0.0,
    )  # fmt: skip
    assert ev.details_of(ended)["call"] is None and ev.details_of(ended)["code"] is None
