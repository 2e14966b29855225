"""Credential-sharing detection (protection/sharing.py), with a fake clock."""

from __future__ import annotations

from regswitch.protection.sharing import SharingDetector, network_of

AOR = "alice@example.com"


def _from(d: SharingDetector, ip: str, now: float, instance: str | None = None) -> object:
    return d.registered(AOR, "udp", ip, 5060, instance, f"UA {ip}", now)


def test_networks_are_prefixes() -> None:
    assert network_of("203.0.113.7") == "203.0.113.0/24"
    assert network_of("203.0.113.7", v4_prefix=32) == "203.0.113.7/32"
    assert network_of("2001:db8:1:2ff:3::1") == "2001:db8:1:200::/56"
    assert network_of("not-an-ip") == "not-an-ip"


def test_more_sources_than_allowed_in_the_window_is_one_suspicion() -> None:
    d = SharingDetector(max_sources=2, window=3600)
    assert _from(d, "198.51.100.1", 0) is None
    assert _from(d, "198.51.100.2", 10) is None  # the same /24: one network
    assert _from(d, "203.0.113.5", 20) is None
    suspicion = _from(d, "192.0.2.9", 30)
    assert suspicion is not None
    assert suspicion.why == "sources" and len(suspicion.networks) == 3  # type: ignore[attr-defined]
    assert suspicion.locked_until is None  # type: ignore[attr-defined]
    assert "UA 192.0.2.9" in suspicion.user_agents  # type: ignore[attr-defined]
    assert _from(d, "233.252.0.1", 40) is None  # same episode: no second event
    assert [f["account"] for f in d.flagged(50)] == [AOR]
    assert d.flagged(3631) == []  # a whole window later the flag is gone


def test_sources_outside_the_window_do_not_add_up() -> None:
    d = SharingDetector(max_sources=1, window=100)
    assert _from(d, "198.51.100.1", 0) is None
    assert _from(d, "203.0.113.1", 101) is None
    assert _from(d, "192.0.2.1", 150) is not None


def test_instances_count_like_sources() -> None:
    d = SharingDetector(max_sources=2)
    for i in range(2):
        assert _from(d, "198.51.100.1", i, f"<urn:uuid:{i}>") is None
    suspicion = _from(d, "198.51.100.1", 3, "<urn:uuid:9>")
    assert suspicion is not None and suspicion.why == "instances"  # type: ignore[attr-defined]


def test_kicks_and_the_lock() -> None:
    d = SharingDetector(max_kicks=2, window=600, action="lock", lock_time=300)
    assert d.kicked(AOR, 0) is None and d.kicked(AOR, 1) is None
    suspicion = d.kicked(AOR, 2)
    assert suspicion is not None and suspicion.why == "kicks" and suspicion.kicks == 3
    assert d.locked_until(AOR, 3) == 302
    assert d.locked_until(AOR, 302) is None  # the lock ends by itself
    d.kicked(AOR, 303)
    assert d.unlock(AOR) and not d.unlock(AOR)
    assert d.flagged(304) == []


def test_an_account_quiet_for_a_window_is_forgotten() -> None:
    d = SharingDetector(window=100)
    for n in range(10):
        d.registered(f"u{n}@example.com", "udp", "198.51.100.1", 5060, None, None, n)
        d.kicked(f"u{n}@example.com", n)
    assert len(d) == 20
    for n in range(10):  # a window later, each new registration forgets old ones
        d.registered(f"v{n}@example.com", "udp", "198.51.100.1", 5060, None, None, 200 + n)
        d.kicked(f"v{n}@example.com", 200 + n)
    assert len(d) == 20  # only the v accounts: nothing to remember of the u ones
