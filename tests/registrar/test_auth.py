"""Digest authentication of the registrar (registrar/auth.py): the nc replay
table and Authenticator.check, without sockets or loop. Credentials are made
with tests/support/digest.py, which is independent of the server's code."""

from __future__ import annotations

import time

import pytest

from regswitch.common.networks import in_networks, parse_networks
from regswitch.registrar.auth import BLOCKED, Authenticator, NonceCounter
from regswitch.sip import digest
from regswitch.sip.message import Headers, Request
from regswitch.storage.base import Account
from support.digest import Challenge, authorization

REALM = "regswitch.local"
URI = f"sip:{REALM}"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def account(user: str = "alice", password: str = "pw") -> Account:
    return Account(
        user=user,
        domain=REALM,
        created_at=0.0,
        updated_at=0.0,
        ha1_md5=digest.ha1(user, REALM, password, "MD5"),
        ha1_sha256=digest.ha1(user, REALM, password, "SHA-256"),
    )


def authenticator(
    clock: Clock, key: bytes = b"k" * 32, lifetime: float = 300.0, epoch: bytes = b"boot-1"
) -> Authenticator:
    auth = Authenticator(key, lambda: "salt", clock, lifetime, epoch=epoch)
    auth.algorithms = ("MD5", "SHA-256")
    return auth


def challenge_of(auth: Authenticator, algorithm: str = "MD5", source: str = "") -> Challenge:
    for value in auth.challenges(REALM, source=source):
        ch = Challenge.parse(value)
        if ch.algorithm == algorithm:
            return ch
    raise AssertionError(f"no {algorithm} challenge")


def register(authz: str | None = None) -> Request:
    headers = Headers()
    headers.add("Call-ID", "c1")
    headers.add("CSeq", "2 REGISTER")
    if authz is not None:
        headers.add("Authorization", authz)
    return Request("REGISTER", URI, headers)


def answer(
    ch: Challenge, password: str = "pw", user: str = "alice", nc: int = 1, uri: str = URI
) -> Request:
    return register(
        authorization(ch, method="REGISTER", uri=uri, username=user, password=password, nc=nc)
    )


# -- NonceCounter -------------------------------------------------------------------------


def test_nonce_counter_accepts_only_increasing_nc() -> None:
    counter = NonceCounter(lifetime=300)
    assert counter.accept("n1", 1, 0.0)
    assert not counter.accept("n1", 1, 1.0)  # replay
    assert counter.accept("n1", 3, 2.0)  # gaps are fine (lost requests)
    assert not counter.accept("n1", 2, 3.0)  # but never back
    assert counter.accept("n2", 1, 3.0)  # per nonce


def test_nonce_counter_forgets_nonces_past_their_lifetime() -> None:
    counter = NonceCounter(lifetime=10)
    counter.accept("old", 1, 0.0)
    for i in range(1100):  # purges run every 1024 checks
        counter.accept(f"new{i}", 1, 100.0)
    assert len(counter) == 1100  # "old" is gone, the fresh ones stay


# -- Authenticator ---------------------------------------------------------------------------


def test_challenges_share_one_nonce_in_algorithm_order() -> None:
    auth = authenticator(Clock())
    auth.algorithms = ("SHA-256", "MD5")
    chs = [Challenge.parse(v) for v in auth.challenges(REALM)]
    assert [c.algorithm for c in chs] == ["SHA-256", "MD5"]
    assert len({c.nonce for c in chs}) == 1
    assert all(c.realm == REALM and c.qops == ["auth"] and not c.stale for c in chs)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_right_password_is_ok(algorithm: str) -> None:
    auth = authenticator(Clock())
    result = auth.check(answer(challenge_of(auth, algorithm)), account())
    assert result.outcome == "ok" and result.username == "alice"


def test_no_credentials_is_a_challenge() -> None:
    assert authenticator(Clock()).check(register(), account()).outcome == "challenge"


def test_wrong_password_is_forbidden() -> None:
    auth = authenticator(Clock())
    result = auth.check(answer(challenge_of(auth), password="nope"), account())
    assert result.outcome == "forbidden" and result.reason == "wrong password"


def test_credentials_of_another_user_are_forbidden() -> None:
    auth = authenticator(Clock())
    result = auth.check(answer(challenge_of(auth), user="bob"), account("alice"))
    assert result.outcome == "forbidden" and "another user" in result.reason


def test_replayed_nc_gets_a_stale_challenge_and_the_next_nc_passes() -> None:
    auth = authenticator(Clock())
    ch = challenge_of(auth)
    request = answer(ch, nc=1)
    assert auth.check(request, account()).outcome == "ok"
    replay = auth.check(request, account())
    assert (replay.outcome, replay.stale) == ("challenge", True)
    assert auth.check(answer(ch, nc=2), account()).outcome == "ok"


def test_expired_nonce_gets_a_stale_challenge_whatever_the_password() -> None:
    clock = Clock()
    auth = authenticator(clock, lifetime=30)
    ch = challenge_of(auth)
    clock.now += 31
    result = auth.check(answer(ch), account())
    assert (result.outcome, result.stale, result.reason) == ("challenge", True, "nonce expired")
    # the nonce is checked before the password: a guess on a dead nonce is not a failure
    wrong = auth.check(answer(ch, password="x", nc=2), account())
    assert (wrong.outcome, wrong.stale) == ("challenge", True)


@pytest.mark.parametrize("same_secret", [True, False])
def test_nonce_of_a_previous_process_gets_a_stale_challenge(same_secret: bool) -> None:
    # a restart: a new epoch, and a new key unless `secret` is configured; the
    # replay table is gone, so a nonce of the old process must not pass
    clock = Clock()
    before = authenticator(clock, key=b"a" * 32, epoch=b"boot-1")
    after = authenticator(clock, key=b"a" * 32 if same_secret else b"b" * 32, epoch=b"boot-2")
    ch = challenge_of(before)
    captured = answer(ch)
    assert before.check(captured, account()).outcome == "ok"
    result = after.check(captured, account())
    assert (result.outcome, result.stale) == ("challenge", True)
    assert after.check(answer(ch, password="x"), account()).outcome == "challenge"


def test_nonce_works_only_from_the_source_it_was_issued_to() -> None:
    auth = authenticator(Clock())
    ch = challenge_of(auth, source="192.0.2.7")
    elsewhere = auth.check(answer(ch, password="x"), account(), source="198.51.100.9")
    assert (elsewhere.outcome, elsewhere.reason) == ("challenge", "unknown nonce")
    assert auth.check(answer(ch), account(), source="192.0.2.7").outcome == "ok"


@pytest.mark.parametrize(
    ("uri", "outcome"),
    [
        (URI, "ok"),
        ("sip:REGSWITCH.local:5060;transport=udp", "ok"),  # the same URI, spelled otherwise
        ("sip:other.example", "forbidden"),
        ("sip:bob@regswitch.local", "forbidden"),
        ("not a uri", "forbidden"),
    ],
)
def test_digest_uri_must_name_the_request_uri(uri: str, outcome: str) -> None:
    auth = authenticator(Clock())
    result = auth.check(answer(challenge_of(auth), uri=uri), account())
    assert result.outcome == outcome, result.reason
    if outcome == "forbidden":
        assert "Request-URI" in result.reason


def test_unknown_account_is_checked_like_a_known_one() -> None:
    auth = authenticator(Clock())
    ch = challenge_of(auth)
    # a bad nonce: the same stale challenge as for a known account
    other = authenticator(Clock(), epoch=b"boot-2")
    stale = auth.check(answer(challenge_of(other)), None, realm=REALM, refuse="unknown account")
    assert (stale.outcome, stale.stale) == ("challenge", True)
    # a good nonce: refused with the precise reason (kept for the event only)
    refused = auth.check(answer(ch), None, realm=REALM, refuse="unknown or disabled account")
    assert (refused.outcome, refused.reason) == ("forbidden", "unknown or disabled account")
    assert auth.check(register(), None, realm=REALM, refuse="x").outcome == "challenge"


def test_answering_a_fresh_challenge_is_marked() -> None:
    auth = authenticator(Clock())
    ch = challenge_of(auth)
    assert auth.check(answer(ch, nc=1), account()).answered
    assert not auth.check(answer(ch, nc=2), account()).answered


def test_md5_alone_is_offered_by_default() -> None:
    auth = Authenticator(b"k", lambda: "salt", Clock())
    assert [Challenge.parse(v).algorithm for v in auth.challenges(REALM)] == ["MD5"]


def test_only_offered_algorithms_are_accepted() -> None:
    auth = authenticator(Clock())
    ch = challenge_of(auth, "MD5")
    auth.algorithms = ("SHA-256",)  # MD5 switched off after the challenge went out
    assert auth.check(answer(ch), account()).outcome == "challenge"


def test_credentials_for_another_realm_are_ignored() -> None:
    auth = authenticator(Clock())
    ch = challenge_of(auth)
    other = Challenge(ch.scheme, {**ch.params, "realm": "elsewhere"})
    assert auth.check(answer(other), account()).outcome == "challenge"


def test_malformed_credentials_are_forbidden() -> None:
    result = authenticator(Clock()).check(register('Digest username="alice"'), account())
    assert result.outcome == "forbidden" and "malformed" in result.reason


# -- IP networks --------------------------------------------------------------------------------


def test_networks() -> None:
    nets = parse_networks(["192.0.2.0/24", " 2001:db8::/32 "])
    assert in_networks("192.0.2.9", nets) and in_networks("2001:db8::1", nets)
    assert not in_networks("127.0.0.1", nets) and not in_networks("not-an-ip", nets)
    with pytest.raises(ValueError, match="bad network"):
        parse_networks(["300.0.0.0/8"])


def test_a_blocked_account_verifies_only_nonces_that_already_authenticated() -> None:
    clock = Clock()
    auth = authenticator(clock)
    registered = challenge_of(auth)
    assert auth.check(answer(registered), account()).outcome == "ok"
    clock.now += 1  # another nonce
    fresh = challenge_of(auth)
    # a new nonce is not verified, even with the right password: guessing stops
    refused = auth.check(answer(fresh), account(), known_nonce_only=True)
    assert (refused.outcome, refused.reason) == ("forbidden", BLOCKED)
    # the device that registered keeps refreshing on its nonce
    assert auth.check(answer(registered, nc=2), account(), known_nonce_only=True).outcome == "ok"


def test_nonce_ages_ignore_wall_clock_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # the switch builds its Authenticator with the default clock
    auth = Authenticator(b"k" * 32, lambda: "salt", nonce_lifetime=30)
    ch = challenge_of(auth)
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 86400)  # a day ahead: nothing expires
    assert auth.check(answer(ch), account()).outcome == "ok"
    monkeypatch.setattr(time, "time", lambda: wall() - 86400)  # a day back: nothing revives
    assert auth.check(answer(ch, nc=2), account()).outcome == "ok"
