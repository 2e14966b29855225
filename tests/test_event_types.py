"""Every event type the switch emits is one the API's `type` filter accepts."""

from __future__ import annotations

from regswitch.common import events


def test_every_event_type_is_filterable() -> None:
    declared = {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and name != "EVENT_TYPES"
    }
    assert declared == events.EVENT_TYPES
