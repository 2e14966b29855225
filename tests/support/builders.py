"""Test data builders shared by unit tests."""

from __future__ import annotations

from typing import Any

from regswitch.registrar.bindings import Binding

_BINDING_DEFAULTS: dict[str, Any] = {
    "id": "b1",
    "aor": "alice@example.com",
    "contact": "sip:alice@10.0.0.1:5060",
    "transport": "udp",
    "source_ip": "10.0.0.1",
    "source_port": 5060,
    "local_ip": "127.0.0.1",
    "local_port": 5060,
    "conn_id": 0,
    "call_id": "c1",
    "cseq": 1,
    "expires_at": 9e9,
    "instance": None,
    "reg_id": None,
    "user_agent": None,
    "path": (),
    "registered_at": 1.0,
    "refreshed_at": 1.0,
}


def make_binding(**fields: Any) -> Binding:
    """A Binding with sensible defaults; name only what the test is about."""
    values = {**_BINDING_DEFAULTS, **fields}
    values.setdefault("contact_key", values["contact"])
    return Binding(**values)
