"""HTTP digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760): HA1, stateless
signed nonces, challenges and credential checks.

Pure maths: the caller passes `now` and the nonce salt in (the core never
reads the clock or randomness) and keeps the `nc` replay table itself.

Text from the wire is latin-1 `str` carrying the raw bytes (see message.py);
`Credentials.parse` turns it back into real text (UTF-8, undecodable bytes
kept as surrogates), and hashing encodes it the same way, so the digest is
computed over exactly the octets the client sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from regswitch.sip.errors import ParseError
from regswitch.sip.headers import parse_auth


def _sha512_256() -> Callable[[bytes], str] | None:
    try:
        hashlib.new("sha512_256", b"")
    except ValueError:  # OpenSSL without SHA-512/256
        return None
    return lambda data: hashlib.new("sha512_256", data).hexdigest()


_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
_sha512 = _sha512_256()
if _sha512 is not None:
    _HASHES["SHA-512-256"] = _sha512

# Every algorithm name verify() understands, session variants included.
ALGORITHMS = tuple(_HASHES) + tuple(f"{name}-sess" for name in _HASHES)
QOPS = ("auth", "auth-int")
_NC = re.compile(r"[0-9A-Fa-f]{8}\Z")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _hasher(algorithm: str) -> tuple[Callable[[bytes], str], bool] | None:
    """(hex hash function, is a -sess variant) or None if unknown."""
    name = algorithm.upper()
    session = name.endswith("-SESS")
    if session:
        name = name[:-5]
    func = _HASHES.get(name)
    return None if func is None else (func, session)


def supported(algorithm: str) -> bool:
    return _hasher(algorithm) is not None


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password) as hex: what an account stores instead of the
    password. For a -sess algorithm this is still the base HA1 (the session
    one needs the nonce and cnonce; `expected_response` derives it)."""
    found = _hasher(algorithm)
    if found is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return found[0](_encode(f"{username}:{realm}:{password}"))


class NonceSigner:
    """Stateless nonces: issue time, salt and a keyed BLAKE2b tag over both
    (BLAKE2's keyed mode is a MAC, RFC 7693 §2.9, and five times cheaper than
    HMAC-SHA256 in CPython: it runs for every REGISTER).

    The nonce is `<issue time in ms, hex>-<salt>-<tag, 32 hex digits>`, the
    tag taken over the exact text before it and over `bind`, a text the
    nonce is bound to without carrying it (the caller passes the client's
    address: a nonce works only from where its challenge was sent, so a
    blind spoofer cannot present one). Only the key holder can make a valid
    nonce, and each has one spelling only (the caller's nc table is keyed
    by it). Anyone can read the time. A salt with characters outside
    [A-Za-z0-9_] goes in as the hex of its UTF-8.
    """

    TAG_SIZE = 16
    # A nonce from the "future" (the monotonic clock restarted with the process)
    # is treated as stale, not forged, so the phone re-authenticates silently.
    FUTURE_SLACK = 5.0

    def __init__(self, key: bytes, lifetime: float = 300.0) -> None:
        if not key:
            raise ValueError("NonceSigner needs a non-empty key")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        # BLAKE2b takes keys of up to 64 bytes; longer ones are hashed down.
        key = key if len(key) <= 64 else hashlib.blake2b(key).digest()
        # keyed once: a copy skips hashing the key block again for every nonce
        self._keyed = hashlib.blake2b(key=key, digest_size=self.TAG_SIZE)
        self.lifetime = lifetime

    def _tag(self, payload: str, bind: str) -> str:
        mac = self._keyed.copy()
        mac.update(payload.encode("ascii"))
        if bind:
            # the separator cannot occur in a payload (hex, dashes, [A-Za-z0-9_])
            mac.update(b"\x00" + _encode(bind))
        return mac.hexdigest()

    def make(self, now: float, salt: str, bind: str = "") -> str:
        if _salt_safe(salt) is None:
            salt = _encode(salt).hex()
        payload = f"{round(now * 1000):x}-{salt}"
        return f"{payload}-{self._tag(payload, bind)}"

    def issued_at(self, nonce: str, bind: str = "") -> float | None:
        """The issue time of a nonce well signed for `bind`, else None."""
        if len(nonce) > 512 or not nonce.isascii():
            return None
        payload, dash, tag = nonce.rpartition("-")
        if not dash or len(tag) != 2 * self.TAG_SIZE:
            return None
        if not hmac.compare_digest(tag, self._tag(payload, bind)):
            return None
        # signed by us, so written by make(): the time is plain hex
        return int(payload.partition("-")[0], 16) / 1000.0

    def check(self, nonce: str, now: float, bind: str = "") -> Literal["ok", "stale", "bad"]:
        """Return "ok", "stale" (ours, but older than the lifetime) or "bad"
        (forged, garbled, or made for another `bind`). The tag is compared in
        constant time."""
        issued = self.issued_at(nonce, bind)
        if issued is None:
            return "bad"
        age = now - issued
        if age > self.lifetime or age < -self.FUTURE_SLACK:
            return "stale"
        return "ok"


_salt_safe = re.compile(r"[A-Za-z0-9_]*\Z").match


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(
    realm: str,
    nonce: str,
    algorithm: str,
    *,
    opaque: str | None = None,
    stale: bool = False,
) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value offering qop=auth."""
    if _hasher(algorithm) is None:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    out = f'Digest realm={_quote(realm)}, nonce={_quote(nonce)}, algorithm={algorithm}, qop="auth"'
    if opaque is not None:
        out += f", opaque={_quote(opaque)}"
    if stale:
        out += ", stale=true"
    return out


def _text(wire: str) -> str:
    """latin-1 wire text -> real text (UTF-8; stray bytes kept as surrogates)."""
    if wire.isascii():
        return wire
    return wire.encode("latin-1").decode("utf-8", "surrogateescape")


_MANDATORY = ("username", "realm", "nonce", "uri", "response")


@dataclass(frozen=True, slots=True)
class Credentials:
    """One Authorization / Proxy-Authorization header value (digest scheme)."""

    scheme: str
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, header_value: str) -> Credentials:
        """Parse a header value as it came off the wire. Raises ParseError on a
        non-digest scheme, a missing mandatory parameter, an unknown qop or an
        nc that is not 8 hex digits."""
        scheme, params = parse_auth(header_value)
        if scheme != "digest":
            raise ParseError(f"unsupported authorization scheme {scheme[:20]!r}")
        for name in _MANDATORY:
            if name not in params:
                raise ParseError(f"digest credentials without {name}")
        qop = params.get("qop")
        nc = params.get("nc")
        cnonce = params.get("cnonce")
        if qop is not None:
            qop = qop.lower()
            if qop not in QOPS:
                raise ParseError(f"unknown qop {qop[:20]!r}")
            if nc is None or cnonce is None:
                raise ParseError("qop without nc and cnonce")
        if nc is not None and _NC.match(nc) is None:
            raise ParseError(f"bad nc {nc[:20]!r}")
        opaque = params.get("opaque")
        return cls(
            scheme="Digest",
            username=_text(params["username"]),
            realm=_text(params["realm"]),
            nonce=_text(params["nonce"]),
            uri=_text(params["uri"]),
            response=_text(params["response"]),
            algorithm=_text(params.get("algorithm") or "MD5"),
            qop=qop,
            nc=nc,
            cnonce=None if cnonce is None else _text(cnonce),
            opaque=None if opaque is None else _text(opaque),
        )

    @property
    def nc_value(self) -> int:
        """The nonce count as a number (1 when the client sent none)."""
        return int(self.nc, 16) if self.nc else 1


# H(method:uri) for qop=auth: phones re-register to the same Request-URI, so
# a bounded memo saves one hash per REGISTER (pure: keyed by every input).
_HA2_MEMO: dict[tuple[Callable[[bytes], str], str, str], str] = {}
_HA2_MEMO_SIZE = 4096


def _ha2(h: Callable[[bytes], str], method: str, uri: str) -> str:
    key = (h, method, uri)
    a2 = _HA2_MEMO.get(key)
    if a2 is None:
        if len(_HA2_MEMO) >= _HA2_MEMO_SIZE:
            _HA2_MEMO.clear()
        a2 = _HA2_MEMO[key] = h(_encode(f"{method}:{uri}"))
    return a2


def expected_response(
    ha1_hex: str, method: str, uri: str, creds: Credentials, body: bytes = b""
) -> str:
    """The `response` a client knowing the password sends (RFC 7616 §3.4.1).

    `ha1_hex` is the stored base HA1 for creds.algorithm's hash; `body` is
    only used by qop=auth-int. Raises ValueError for an unknown algorithm.
    """
    found = _hasher(creds.algorithm)
    if found is None:
        raise ValueError(f"unsupported digest algorithm {creds.algorithm!r}")
    h, session = found
    a1 = ha1_hex.lower()
    if session:
        a1 = h(_encode(f"{a1}:{creds.nonce}:{creds.cnonce or ''}"))
    if creds.qop == "auth-int":
        a2 = h(_encode(f"{method}:{uri}:") + h(body).encode("ascii"))
    else:
        a2 = _ha2(h, method, uri)
    if creds.qop:
        return h(_encode(f"{a1}:{creds.nonce}:{creds.nc}:{creds.cnonce}:{creds.qop}:{a2}"))
    return h(_encode(f"{a1}:{creds.nonce}:{a2}"))


def verify(creds: Credentials, ha1_hex: str, method: str, body: bytes = b"") -> bool:
    """Does `creds.response` prove knowledge of the password behind `ha1_hex`?
    Constant-time compare; False for an unknown algorithm."""
    if _hasher(creds.algorithm) is None:
        return False
    expected = expected_response(ha1_hex, method, creds.uri, creds, body)
    return hmac.compare_digest(expected.encode("ascii"), _encode(creds.response.lower()))
