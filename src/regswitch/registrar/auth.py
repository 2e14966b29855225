"""Who is asking: IP authentication and digest (RFC 3261 §22, RFC 7616/8760).

Nonces are signed and stateless; the only state is the highest `nc` seen
per nonce, so a replayed Authorization is refused. Three things keep that
table sufficient:

- nonces are timed by a monotonic clock (a wall-clock step neither revives
  nor expires them) and signed under a key that includes a per-process
  epoch, so a nonce from before a restart, whose `nc` history is gone, is
  stale: no authorised request is ever accepted twice, with or without a
  configured `secret`. A cluster that wants nonces valid on every node
  shares the epoch and gives `Authenticator` a shared `ReplayGuard`.
- nonces are bound to the client's address (see digest.NonceSigner), so a
  blind spoofer can neither replay one nor fake failed credentials;
- the nonce is checked before the password, and an unknown account is
  checked like a known one, so the answers tell nothing about which
  accounts exist.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Literal, Protocol

from regswitch.sip import digest
from regswitch.sip.errors import ParseError
from regswitch.sip.message import Request
from regswitch.sip.uri import parse_uri
from regswitch.storage.base import Account

# MD5 only: several phones (libre-based ones such as baresip) answer no
# challenge at all when offered two; SHA-256 is an opt-in (AUTH_ALGORITHMS)
DEFAULT_ALGORITHMS = ("MD5",)
# hashed for unknown accounts, so that they cost what known ones do
_NO_HA1 = "0" * 32


class AuthResult:
    __slots__ = ("answered", "nonce", "outcome", "reason", "stale", "username")

    def __init__(
        self,
        outcome: Literal["ok", "challenge", "forbidden"],
        reason: str = "",
        stale: bool = False,
        username: str | None = None,
        answered: bool = False,
        nonce: tuple[str, int] | None = None,
    ) -> None:
        self.outcome = outcome
        self.reason = reason
        self.stale = stale
        self.username = username
        self.answered = answered
        # "ok": the nonce and count accepted (a cluster claims them cluster-wide)
        self.nonce = nonce


OK = AuthResult("ok")
# the reason of a refusal while the account is blocked from the source
BLOCKED = "account blocked from this source after failed authentications"


class ReplayGuard(Protocol):
    def accept(self, nonce: str, nc: int, now: float) -> bool: ...

    def seen(self, nonce: str) -> bool: ...


class NonceCounter:
    """Highest nc per nonce; forgets nonces older than their lifetime.

    Two generations of a lifetime each (plus a second's margin): a nonce is
    entered in the current one; when that has run its time it becomes the
    previous one, and the previous one is dropped whole. A dropped nonce was
    first accepted more than a lifetime ago, so it was issued before that and
    its signature has expired: it can never be accepted again. Each nonce
    costs its dict entry and nothing more (no time, no tuple)."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}
        self._since: float | None = None  # when the current generation began

    def accept(self, nonce: str, nc: int, now: float) -> bool:
        """True if `nc` is higher than any seen for `nonce` (and remember it)."""
        self._age(now)
        table = self._current
        previous = table.get(nonce)
        if previous is None:
            previous = self._previous.get(nonce)
            if previous is not None:
                table = self._previous
        if previous is not None and nc <= previous:
            return False
        table[nonce] = nc
        return True

    def seen(self, nonce: str) -> bool:
        """Has a request with `nonce` been accepted (its sender knew the password)?"""
        return nonce in self._current or nonce in self._previous

    def _age(self, now: float) -> None:
        span = self.lifetime + 1
        since = self._since
        if since is None:
            self._since = now
        elif now - since > span:
            self._previous = self._current if now - since <= 2 * span else {}
            self._current = {}
            self._since = now

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


class Authenticator:
    def __init__(
        self,
        secret: bytes,
        salt: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
        nonce_lifetime: float = 300.0,
        *,
        epoch: bytes | None = None,
        replay: ReplayGuard | None = None,
    ) -> None:
        """`clock` must be monotonic (nonce ages); `epoch` names this process's
        nonces (random unless given: only a cluster sharing `replay` shares it)."""
        self.epoch = epoch if epoch is not None else secrets.token_bytes(16)
        self._lifetime = nonce_lifetime
        self._shared: tuple[bytes, bytes] | None = None  # a cluster's key (share())
        key = hashlib.blake2b(secret, key=self.epoch or b"-").digest()
        self._signer = digest.NonceSigner(key, nonce_lifetime)
        self._salt = salt
        self._clock = clock
        self._nc: ReplayGuard = replay if replay is not None else NonceCounter(nonce_lifetime)
        # the order challenges are offered in (AUTH_ALGORITHMS)
        self.algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
        self._templates: dict[tuple[str, bool, tuple[str, ...]], list[tuple[str, ...]]] = {}

    def share(self, secret: bytes, epoch: bytes) -> None:
        """Sign and check nonces with the key every node of a cluster shares
        (read from the cluster at start, and again if it ever changes there)."""
        if (secret, epoch) != self._shared:
            self._shared = (secret, epoch)
            self.epoch = epoch
            key = hashlib.blake2b(secret, key=epoch or b"-").digest()
            self._signer = digest.NonceSigner(key, self._lifetime)

    def challenges(self, realm: str, stale: bool = False, source: str = "") -> list[str]:
        """WWW-Authenticate values, one per algorithm, sharing one nonce bound to `source`."""
        nonce = self._signer.make(self._clock(), self._salt(), source)
        key = (realm, stale, self.algorithms)
        templates = self._templates.get(key)
        if templates is None:
            # one challenge per REGISTER: build each text once, fill in the nonce
            marker = "\x00"
            templates = [
                tuple(digest.challenge(realm, marker, alg, stale=stale).split(marker))
                for alg in self.algorithms
            ]
            if len(self._templates) > 1024:
                self._templates.clear()
            self._templates[key] = templates
        return [head + nonce + tail for head, tail in templates]

    def check(
        self,
        request: Request,
        account: Account | None,
        header: str = "authorization",
        *,
        source: str = "",
        realm: str = "",
        refuse: str = "",
        known_nonce_only: bool = False,
    ) -> AuthResult:
        """Digest check of `request` for `account` (realm = the account's
        domain), its nonce bound to `source`. With `refuse` (an unknown
        account, or one that may not be used from here) every step runs as
        for a known account, the last one fails with that reason. With
        `known_nonce_only` (the account is blocked from this source) only a
        nonce that already authenticated a request is verified: the device
        that registered keeps refreshing, a guesser gets no more answers."""
        if account is not None:
            realm = account.domain
        values = request.headers.get_all(header)
        if not values:
            return AuthResult("challenge")
        creds = None
        for value in values:
            if value.lstrip()[:7].lower() != "digest ":
                continue  # another scheme (Basic...): not for us, challenge instead
            try:
                candidate = digest.Credentials.parse(value)
            except ParseError as exc:
                return AuthResult("forbidden", f"malformed credentials: {exc.reason}")
            if candidate.realm == realm:
                creds = candidate
                break
        if creds is None:
            return AuthResult("challenge")
        algorithm = creds.algorithm.upper()
        if algorithm not in self.algorithms:
            # only what AUTH_ALGORITHMS offers: an operator who drops MD5 means it
            return AuthResult("challenge")
        # the nonce first: the password is only worth checking against a nonce
        # we issued to this source, and the answer to a guess with a bad nonce
        # must not depend on the account
        now = self._clock()
        state = self._signer.check(creds.nonce, now, source)
        if state != "ok":
            # Expired, or not ours: signed before a restart (another epoch),
            # for another address, or forged. A stale challenge lets a phone
            # that reuses its last nonce retry silently; a 403 would make it
            # stop registering.
            reason = "nonce expired" if state == "stale" else "unknown nonce"
            return AuthResult("challenge", reason, stale=True, username=creds.username)
        if not _same_uri(creds.uri, request.uri):
            # RFC 7616 §3.4.6: credentials lifted from another request
            return AuthResult(
                "forbidden",
                f"digest uri {creds.uri[:100]!r} is not the Request-URI",
                username=creds.username,
            )
        if known_nonce_only and not self._nc.seen(creds.nonce):
            return AuthResult("forbidden", BLOCKED, username=creds.username)
        if account is None or refuse:
            digest.verify(creds, _NO_HA1, request.method)  # the same work, no answer
            return AuthResult("forbidden", refuse or "unknown account", username=creds.username)
        if creds.username != account.user:
            return AuthResult(
                "forbidden", "credentials are for another user", username=creds.username
            )
        ha1 = account.ha1_md5 if algorithm == "MD5" else account.ha1_sha256
        if not ha1 or not digest.verify(creds, ha1, request.method):
            return AuthResult("forbidden", "wrong password", username=creds.username)
        nc = creds.nc_value
        if not self._nc.accept(creds.nonce, nc, now):
            return AuthResult(
                "challenge", "replayed nonce count", stale=True, username=creds.username
            )
        return AuthResult(
            "ok", username=creds.username, answered=nc == 1, nonce=(creds.nonce, nc)
        )


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    """Does the digest `uri` name the Request-URI? Spelled the same, or equal in
    scheme, user, host and port (phones differ in parameters and case)."""
    if digest_uri == request_uri:
        return True
    try:
        a, b = parse_uri(digest_uri), parse_uri(request_uri)
    except ParseError:
        return False
    return (
        a.scheme == b.scheme
        and a.user == b.user
        and a.host.lower() == b.host.lower()
        and (a.port or _default_port(a.scheme)) == (b.port or _default_port(b.scheme))
    )


def _default_port(scheme: str) -> int:
    return 5061 if scheme == "sips" else 5060
