"""Per-source flood protection (protection/flood.py), with a fake clock."""

from __future__ import annotations

from regswitch.networks import parse_networks
from regswitch.protection.flood import FloodGuard, FloodLimits

IP = "198.51.100.7"


def guard(**limits: float) -> FloodGuard:
    return FloodGuard(trusted=parse_networks(["127.0.0.0/8"]), limits=FloodLimits(**limits))  # type: ignore[arg-type]


def test_more_than_the_limit_in_a_window_blocks_for_the_block_time() -> None:
    g = guard(requests=3, window=10, block=60)
    assert [g.register(IP, 0.0) for _ in range(3)] == [None, None, None]
    reason = g.register(IP, 1.0)
    assert reason is not None and "more than 3 REGISTERs in 10 s" in reason
    assert g.blocks == 1
    assert g.blocked(IP, 2.0) and g.blocked(IP, 60.9)
    assert g.dropped == 2
    assert not g.blocked(IP, 61.0)  # block over
    assert g.register(IP, 61.0) is None  # and counting starts afresh


def test_windows_are_per_source_and_roll_over() -> None:
    g = guard(requests=2, window=10)
    assert g.register(IP, 0.0) is None and g.register(IP, 1.0) is None
    assert g.register("198.51.100.8", 1.0) is None  # another source has its own count
    assert g.register(IP, 10.0) is None  # a new window
    assert g.register(IP, 10.5) is None
    assert g.register(IP, 11.0) is not None


def test_auth_failures_block_separately() -> None:
    g = guard(requests=100, auth_failures=2, window=10, block=5)
    assert g.auth_failed(IP, 0.0) is None and g.auth_failed(IP, 0.1) is None
    reason = g.auth_failed(IP, 0.2)
    assert reason is not None and "failed authentications" in reason
    assert g.blocked(IP, 1.0)
    assert g.blocked_sources(1.0) == {IP: 4.2}


def test_trusted_networks_are_exempt() -> None:
    g = guard(requests=1, auth_failures=1)
    for _ in range(5):
        assert g.register("127.0.0.1", 0.0) is None
        assert g.auth_failed("127.0.0.1", 0.0) is None
    assert not g.blocked("127.0.0.1", 0.0)


def test_unblock() -> None:
    g = guard(requests=1)
    g.register(IP, 0.0)
    assert g.register(IP, 0.0) is not None
    assert g.unblock(IP) and not g.blocked(IP, 1.0) and not g.unblock(IP)
