"""Which Host headers the admin API answers (the DNS rebinding defence)."""

from __future__ import annotations

import pytest

from regswitch.console.api.guard import HostPolicy, host_of

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("Console.Example.:443", "console.example"),
        ("localhost", "localhost"),
    ],
)
def test_host_of(header: str, host: str) -> None:
    assert host_of(header) == host


def test_a_loopback_api_answers_loopback_names_only() -> None:
    policy = HostPolicy("127.0.0.1", [])
    for ok in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "LOCALHOST"):
        assert policy.allows(ok), ok
    for bad in ("evil.example", "evil.example:8080", "10.0.0.1", "127.0.0.1.evil.example"):
        assert not policy.allows(bad), bad


def test_a_wildcard_api_answers_any_address_but_only_named_names() -> None:
    policy = HostPolicy("0.0.0.0", ["switch.example"])
    assert policy.allows("192.0.2.10:8080") and policy.allows("[2001:db8::1]:8080")
    assert policy.allows("switch.example:8080")
    assert not policy.allows("evil.example:8080")


def test_an_api_on_one_address_answers_that_address() -> None:
    policy = HostPolicy("192.0.2.5", [])
    assert policy.allows("192.0.2.5:8080")
    assert not policy.allows("192.0.2.6:8080") and not policy.allows("localhost")


def test_star_turns_the_check_off() -> None:
    assert HostPolicy("127.0.0.1", ["*"]).allows("anything.example")
