"""KickerSlot: the Registrar's kicker, bound once the call layer exists."""

from __future__ import annotations

import pytest

from regswitch.registrar.bindings import Binding
from regswitch.registrar.kicker import KickerSlot


def _binding() -> Binding:
    return Binding(
        id="b1", aor="alice@example.com", contact="sip:alice@10.0.0.1:5060", transport="udp",
        source_ip="10.0.0.1", source_port=5060, local_ip="10.0.0.9", local_port=5060,
        conn_id=0, call_id="reg1", cseq=1, expires_at=3600.0, instance=None,
        reg_id=None, user_agent=None, path=(), registered_at=0.0, refreshed_at=0.0,
    )  # fmt: skip


def test_a_kick_reaches_the_bound_call_layer() -> None:
    slot = KickerSlot()
    kicked: list[tuple[str, str]] = []

    def kick(binding: Binding, reason: str) -> list[str]:
        kicked.append((binding.id, reason))
        return ["c1"]

    slot.bind(kick)
    assert slot(_binding(), "registration-replaced") == ["c1"]
    assert kicked == [("b1", "registration-replaced")]


def test_a_kick_before_binding_is_a_wiring_error_not_a_silent_no_op() -> None:
    with pytest.raises(RuntimeError):
        KickerSlot()(_binding(), "registration-deleted")


def test_binding_twice_is_refused() -> None:
    slot = KickerSlot()
    slot.bind(lambda b, reason: [])
    with pytest.raises(RuntimeError):
        slot.bind(lambda b, reason: [])
