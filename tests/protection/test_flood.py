"""Per-source flood protection (protection/flood.py), with a fake clock."""

from __future__ import annotations

import time

import pytest

from regswitch.common.networks import parse_networks
from regswitch.protection.flood import UNANSWERED_REPORT, FloodGuard, FloodLimits

IP = "198.51.100.7"
ALICE = "alice@example.com"


def guard(max_sources: int = 200_000, **limits: float) -> FloodGuard:
    return FloodGuard(
        trusted=parse_networks(["127.0.0.0/8"]),
        limits=FloodLimits(**limits),  # type: ignore[arg-type]
        max_sources=max_sources,
    )


def test_unauthenticated_volume_over_the_limit_blocks_the_source() -> None:
    g = guard(unauthenticated=3, window=10, block=60)
    assert [g.unauthenticated(IP, 0.0) for _ in range(3)] == [None, None, None]
    notice = g.unauthenticated(IP, 1.0)
    assert notice is not None and notice.kind == "source-blocked" and notice.source == IP
    assert "more than 3 unauthenticated requests in 10 s" in notice.reason
    assert g.blocks == 1
    assert g.blocked(IP, 2.0) and g.blocked(IP, 60.9)
    assert g.dropped == 2
    assert not g.blocked(IP, 61.0)  # block over
    assert g.unauthenticated(IP, 61.0) is None  # and counting starts afresh


def test_windows_are_per_source_and_roll_over() -> None:
    g = guard(unauthenticated=2, window=10)
    assert g.unauthenticated(IP, 0.0) is None and g.unauthenticated(IP, 1.0) is None
    assert g.unauthenticated("198.51.100.8", 1.0) is None  # another source has its own count
    assert g.unauthenticated(IP, 10.0) is None  # a new window
    assert g.unauthenticated(IP, 10.5) is None
    assert g.unauthenticated(IP, 11.0) is not None


def test_answered_challenges_are_taken_back() -> None:
    # an office behind one address: every phone is challenged, then answers
    g = guard(unauthenticated=10, authenticated=10_000, window=10)
    for i in range(500):
        account = f"u{i}@example.com"
        assert g.challenged(IP, account, i * 0.01) is None
        assert g.authenticated(IP, account, i * 0.01, answered=True) is None
    # refreshes reuse their nonce: authenticated, no challenge
    for i in range(500):
        assert g.authenticated(IP, f"u{i}@example.com", 6.0, answered=False) is None
    assert not g.blocked(IP, 6.0)


def test_authenticated_volume_has_its_own_higher_ceiling() -> None:
    g = guard(unauthenticated=1, authenticated=3, window=10, block=5)
    for _ in range(3):
        assert g.authenticated(IP, ALICE, 0.0, answered=False) is None
    notice = g.authenticated(IP, ALICE, 0.0, answered=False)
    assert notice is not None and "more than 3 authenticated requests" in notice.reason
    assert g.blocked(IP, 1.0)


def test_failed_credentials_block_the_account_from_that_source_only() -> None:
    g = guard(unauthenticated=100, auth_failures=2, window=10, block=5)
    assert g.failed(IP, ALICE, 0.0) is None and g.failed(IP, ALICE, 0.1) is None
    notice = g.failed(IP, ALICE, 0.2)
    assert notice is not None and notice.kind == "account-blocked" and notice.account == ALICE
    assert "more than 2 failed authentications of alice@example.com" in notice.reason
    assert g.account_blocked(IP, ALICE, 1.0)
    assert not g.blocked(IP, 1.0)  # the source itself is still served
    assert not g.account_blocked(IP, "bob@example.com", 1.0)
    assert not g.account_blocked("198.51.100.8", ALICE, 1.0)
    assert not g.account_blocked(IP, ALICE, 5.2)  # block over


def test_failed_credentials_count_toward_the_source_volume() -> None:
    g = guard(unauthenticated=5, auth_failures=100, window=10)
    notices = [g.failed(IP, f"u{i}@example.com", 0.0) for i in range(6)]
    assert notices[:5] == [None] * 5
    assert notices[5] is not None and notices[5].kind == "source-blocked"


def test_unanswered_challenges_are_reported_once_an_hour() -> None:
    g = guard(window=10)
    # a phone that gives up after each challenge and retries every minute
    notices = [g.challenged(IP, ALICE, t * 60.0) for t in range(UNANSWERED_REPORT + 3)]
    reports = [n for n in notices if n is not None]
    assert len(reports) == 1 and reports[0].kind == "unanswered" and reports[0].account == ALICE
    assert reports[0].reason == f"{UNANSWERED_REPORT} challenges unanswered since 120 s"
    assert g.challenged(IP, ALICE, 3600.0) is None  # an hour on: counting again
    # an answer resets the count
    g.authenticated(IP, ALICE, 3601.0, answered=True)
    assert all(g.challenged(IP, ALICE, 3602.0) is None for _ in range(UNANSWERED_REPORT - 1))


def test_trusted_networks_are_exempt() -> None:
    g = guard(unauthenticated=1, auth_failures=1, authenticated=1)
    for _ in range(5):
        assert g.unauthenticated("127.0.0.1", 0.0) is None
        assert g.failed("127.0.0.1", ALICE, 0.0) is None
        assert g.authenticated("127.0.0.1", ALICE, 0.0, answered=False) is None
    assert not g.blocked("127.0.0.1", 0.0)
    assert not g.account_blocked("127.0.0.1", ALICE, 0.0)
    # the trace of unanswered challenges is no limit: trusted sources get it too
    notices = [g.challenged("127.0.0.1", ALICE, 0.0) for _ in range(UNANSWERED_REPORT)]
    assert notices[-1] is not None and notices[-1].kind == "unanswered"


def test_unblock() -> None:
    g = guard(unauthenticated=1)
    g.unauthenticated(IP, 0.0)
    assert g.unauthenticated(IP, 0.0) is not None
    assert g.unblock(IP) and not g.blocked(IP, 1.0) and not g.unblock(IP)


# -- IPv6 and table bounds -------------------------------------------------------------------


def test_ipv6_sources_are_counted_per_prefix() -> None:
    g = guard(unauthenticated=10, window=10, block=60)
    # rotating through one /64 is one source
    notices = [g.unauthenticated(f"2001:db8:1:2::{i:x}", 0.0) for i in range(11)]
    assert notices[-1] is not None and notices[-1].source == "2001:db8:1:2::/64"
    assert g.blocked("2001:db8:1:2:ffff::1", 1.0)
    assert not g.blocked("2001:db8:1:3::1", 1.0)  # the next /64 is another source


@pytest.mark.parametrize(
    ("prefix", "ip", "key"),
    [
        (64, "2001:DB8:0:1:2:3:4:5", "2001:db8:0:1::/64"),
        (48, "2001:db8:7:1::9", "2001:db8:7::/48"),
        (128, "2001:db8::9", "2001:db8::9"),
        (64, "::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: the IPv4 address
        (64, "fe80::1%eth0", "fe80::/64"),
        (64, "192.0.2.1", "192.0.2.1"),
    ],
)
def test_source_key(prefix: int, ip: str, key: str) -> None:
    assert guard(ipv6_prefix=prefix).key(ip) == key


def test_tables_stay_bounded_and_old_windows_are_pruned_as_sources_come() -> None:
    g = guard(max_sources=1000, unauthenticated=10, window=10)
    for i in range(5000):
        g.unauthenticated(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
    assert len(g._windows) <= 1000
    # a later wave: the stale windows go a few per new source, without a scan
    for i in range(1000):
        g.unauthenticated(f"11.0.{i >> 8}.{i & 255}", 20.0)
    assert len(g._windows) <= 1000
    assert all(w.start == 20.0 for w in g._windows.values())


def test_a_new_source_costs_no_scan_of_a_large_table() -> None:
    g = FloodGuard(limits=FloodLimits(window=10), max_sources=50_000)
    for i in range(60_000):
        g.unauthenticated(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
    assert len(g._windows) == 50_000
    start = time.perf_counter()
    for i in range(2000):  # still within the window: nothing is stale
        g.unauthenticated(f"11.0.{i >> 8}.{i & 255}", 5.0)
    per_source = (time.perf_counter() - start) / 2000
    # the old guard scanned every window here (~9 ms each at 200k sources)
    assert per_source < 0.0005, f"{per_source * 1e6:.0f} µs per new source"


def test_failed_credentials_answer_the_challenge_for_the_trace() -> None:
    g = guard()
    for source in (IP, "127.0.0.1"):  # trusted or not
        notices = []
        for _ in range(UNANSWERED_REPORT):
            notices.append(g.challenged(source, ALICE, 0.0))
            notices.append(g.failed(source, ALICE, 0.0))
        assert not any(n is not None and n.kind == "unanswered" for n in notices)


def test_a_new_ipv6_prefix_applies_at_once() -> None:
    g = guard(ipv6_prefix=64)
    assert g.key("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    g.limits = FloodLimits(ipv6_prefix=48)
    assert g.key("2001:db8:1:2::9") == "2001:db8:1::/48"
