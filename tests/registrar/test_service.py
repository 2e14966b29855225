"""Small pure helpers of the REGISTER service (registrar/service.py)."""

from __future__ import annotations

import pytest

from regswitch.registrar.service import _warn_agent, contact_key
from regswitch.sip.uri import parse_uri


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:alice@EXAMPLE.com:5060", "sip:alice@example.com:5060"),  # host case
        ("sip:%61lice@example.com", "sip:alice@example.com"),  # escaped user
        ("sip:alice@example.com;transport=TCP", "sip:alice@example.com;transport=tcp"),
        ("sip:alice@example.com;ob", "sip:alice@example.com"),  # other params ignored
    ],
)
def test_contact_key_equal(a: str, b: str) -> None:
    assert contact_key(parse_uri(a)) == contact_key(parse_uri(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:Alice@example.com", "sip:alice@example.com"),  # user is case-sensitive
        ("sip:alice@example.com:5060", "sip:alice@example.com:5070"),
        ("sip:alice@example.com", "sip:alice@example.com;transport=tcp"),
        ("sip:alice@example.com", "sips:alice@example.com"),
    ],
)
def test_contact_key_differs(a: str, b: str) -> None:
    assert contact_key(parse_uri(a)) != contact_key(parse_uri(b))


def test_warn_agent_is_a_hostport() -> None:
    assert _warn_agent("192.0.2.1", "example.com") == "192.0.2.1"
    assert _warn_agent("2001:db8::1", "example.com") == "[2001:db8::1]"
    assert _warn_agent("0.0.0.0", "example.com") == "example.com"
    assert _warn_agent("::", "example.com") == "example.com"
