"""Who is asking: IP authentication and digest (RFC 3261 §22, RFC 7616/8760).

Nonces are HMAC-signed and stateless; the only state is the highest `nc`
seen per nonce, so a replayed Authorization is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from regswitch.sip import digest
from regswitch.sip.errors import ParseError
from regswitch.sip.message import Request
from regswitch.storage.base import Account

DEFAULT_ALGORITHMS = ("MD5", "SHA-256")


class AuthResult:
    __slots__ = ("outcome", "reason", "stale", "username")

    def __init__(
        self,
        outcome: Literal["ok", "challenge", "forbidden"],
        reason: str = "",
        stale: bool = False,
        username: str | None = None,
    ) -> None:
        self.outcome = outcome
        self.reason = reason
        self.stale = stale
        self.username = username


OK = AuthResult("ok")


class NonceCounter:
    """Highest nc per nonce; forgets nonces older than their lifetime."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._seen: dict[str, tuple[int, float]] = {}
        self._checks = 0

    def accept(self, nonce: str, nc: int, now: float) -> bool:
        """True if `nc` is higher than any seen for `nonce` (and remember it)."""
        previous = self._seen.get(nonce)
        if previous is not None and nc <= previous[0]:
            return False
        self._seen[nonce] = (nc, previous[1] if previous else now)
        self._checks += 1
        if self._checks >= 1024:
            self._checks = 0
            self._purge(now)
        return True

    def _purge(self, now: float) -> None:
        """Drop expired nonces from the front: the dict keeps first-seen order,
        so this costs what it removes, not a scan of every live nonce."""
        horizon = now - self.lifetime - 1
        seen = self._seen
        while seen:
            nonce = next(iter(seen))
            if seen[nonce][1] >= horizon:
                break
            del seen[nonce]

    def __len__(self) -> int:
        return len(self._seen)


class Authenticator:
    def __init__(
        self,
        secret: bytes,
        salt: Callable[[], str],
        clock: Callable[[], float],
        nonce_lifetime: float = 300.0,
    ) -> None:
        self._signer = digest.NonceSigner(secret, nonce_lifetime)
        self._salt = salt
        self._clock = clock
        self._nc = NonceCounter(nonce_lifetime)
        # the order challenges are offered in (AUTH_ALGORITHMS)
        self.algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
        self._templates: dict[tuple[str, bool, tuple[str, ...]], list[tuple[str, ...]]] = {}

    def challenges(self, realm: str, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, one per algorithm, sharing one nonce."""
        nonce = self._signer.make(self._clock(), self._salt())
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
        self, request: Request, account: Account, header: str = "authorization"
    ) -> AuthResult:
        """Digest check of `request` for `account` (realm = the account's domain)."""
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
            if candidate.realm == account.domain:
                creds = candidate
                break
        if creds is None:
            return AuthResult("challenge")
        if creds.username != account.user:
            return AuthResult(
                "forbidden", "credentials are for another user", username=creds.username
            )
        algorithm = creds.algorithm.upper()
        if algorithm not in self.algorithms:
            # only what AUTH_ALGORITHMS offers: an operator who drops MD5 means it
            return AuthResult("challenge")
        ha1 = account.ha1_md5 if algorithm == "MD5" else account.ha1_sha256
        if not ha1 or not digest.verify(creds, ha1, request.method):
            return AuthResult("forbidden", "wrong password", username=creds.username)
        now = self._clock()
        state = self._signer.check(creds.nonce, now)
        if state != "ok":
            # The password is right but the nonce is expired, or not ours: signed
            # before a restart (a new key), which phones that reuse their last
            # nonce send next. A stale challenge lets them retry silently; a 403
            # would make them stop registering.
            reason = "nonce expired" if state == "stale" else "unknown nonce"
            return AuthResult("challenge", reason, stale=True, username=creds.username)
        nc = int(creds.nc, 16) if creds.nc else 1
        if not self._nc.accept(creds.nonce, nc, now):
            return AuthResult(
                "challenge", "replayed nonce count", stale=True, username=creds.username
            )
        return AuthResult("ok", username=creds.username)
