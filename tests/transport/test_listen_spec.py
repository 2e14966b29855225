"""ListenSpec parsing and TransportLimits validation (no sockets)."""

from __future__ import annotations

import pytest

from regswitch.transport.base import ListenSpec, TransportLimits, TransportStats, format_hostport


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp:127.0.0.1:5060", ListenSpec("udp", "127.0.0.1", 5060)),
        ("TCP:0.0.0.0:5060", ListenSpec("tcp", "0.0.0.0", 5060)),
        ("tls:[::1]:5061", ListenSpec("tls", "::1", 5061)),
        ("udp:[::]:0", ListenSpec("udp", "::", 0)),
        ("tcp:localhost:5070", ListenSpec("tcp", "localhost", 5070)),
        (" udp:10.1.2.3:65535 ", ListenSpec("udp", "10.1.2.3", 65535)),
    ],
)
def test_parse(text: str, expected: ListenSpec) -> None:
    assert ListenSpec.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1:5060", "unknown transport"),
        ("sctp:127.0.0.1:5060", "unknown transport"),
        ("udp:127.0.0.1", "missing port"),
        ("udp:127.0.0.1:", "port must be"),
        ("udp:127.0.0.1:70000", "port must be"),
        ("udp:127.0.0.1:-1", "port must be"),
        ("udp:127.0.0.1:abc", "port must be"),
        ("udp::::1:5060", "brackets"),
        ("udp:[::1:5060", "expected TRANSPORT:HOST:PORT"),
        ("udp:[::1]5060", "expected TRANSPORT:HOST:PORT"),
        ("udp:[nothost]:5060", "not an IPv6 address"),
        ("udp::5060", "bad host"),
        ("udp", "expected TRANSPORT:HOST:PORT"),
        ("", "expected TRANSPORT:HOST:PORT"),
    ],
)
def test_parse_errors_are_clear(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="bad listen address") as info:
        ListenSpec.parse(text)
    assert fragment in str(info.value)


def test_str_round_trips() -> None:
    for text in ("udp:127.0.0.1:5060", "tls:[::1]:5061", "tcp:localhost:0"):
        assert str(ListenSpec.parse(text)) == text
    assert format_hostport("::1", 5) == "[::1]:5"


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError):
        ListenSpec("ws", "127.0.0.1", 80)
    with pytest.raises(ValueError):
        ListenSpec("udp", "127.0.0.1", 65536)


def test_limits_defaults_and_validation() -> None:
    limits = TransportLimits()
    assert limits.max_message_udp == 65535
    assert limits.max_message_stream == 65536
    assert limits.tcp_idle_timeout == 600
    assert limits.max_connections == 10000
    assert limits.max_connections_per_ip == 100
    assert limits.socket_buffer == 4 * 1024 * 1024
    assert TransportLimits(tcp_idle_timeout=30).tcp_idle_timeout == 30
    with pytest.raises(ValueError, match="max_connections_per_ip"):
        TransportLimits(max_connections_per_ip=0)


def test_stats_snapshot() -> None:
    stats = TransportStats()
    stats.datagrams_in += 2
    snap = stats.snapshot()
    assert snap["datagrams_in"] == 2 and snap["framing_errors"] == 0
