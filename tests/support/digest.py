"""Client-side HTTP digest for SIP (RFC 2617, RFC 7616, RFC 8760), for tests.

Written from the RFCs with hashlib and deliberately independent of
regswitch's own digest code, so a test that authenticates against the server
checks that code instead of agreeing with it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from regswitch.sip.message import Response

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data).hexdigest(),
}


def split_auth_params(text: str) -> dict[str, str]:
    """`a="x, y", b=z` -> {"a": "x, y", "b": "z"}: names lower-cased, quotes removed."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"auth parameter without '=': {text[i:]!r}")
        name = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise ValueError(f"unterminated quoted string in {text!r}")
            i += 1
            value = "".join(chars)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        params[name] = value
    return params


@dataclass(frozen=True)
class Challenge:
    """One WWW-Authenticate / Proxy-Authenticate value."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    header: str = "WWW-Authenticate"

    @classmethod
    def parse(cls, value: str, header: str = "WWW-Authenticate") -> Challenge:
        scheme, _, rest = value.strip().partition(" ")
        return cls(scheme, split_auth_params(rest), header)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def nonce(self) -> str:
        return self.params.get("nonce", "")

    @property
    def opaque(self) -> str | None:
        return self.params.get("opaque")

    @property
    def algorithm(self) -> str:
        """As offered; RFC 2617: absent means MD5."""
        return self.params.get("algorithm", "MD5")

    @property
    def qops(self) -> list[str]:
        return [q.strip() for q in self.params.get("qop", "").split(",") if q.strip()]

    @property
    def stale(self) -> bool:
        return self.params.get("stale", "").lower() == "true"

    @property
    def authorization_header(self) -> str:
        """Where the answer goes: Authorization or Proxy-Authorization."""
        if self.header.lower() == "proxy-authenticate":
            return "Proxy-Authorization"
        return "Authorization"


def challenges_in(response: Response) -> list[Challenge]:
    """Every digest challenge of a 401 (WWW-) or 407 (Proxy-Authenticate) response."""
    name = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
    out = []
    for value in response.headers.get_all(name):
        challenge = Challenge.parse(value, name)
        if challenge.scheme.lower() == "digest":
            out.append(challenge)
    return out


def _hash_for(algorithm: str) -> tuple[Callable[[bytes], str], bool]:
    upper = algorithm.upper()
    sess = upper.endswith("-SESS")
    base = upper[:-5] if sess else upper
    if base not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return _HASHES[base], sess


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    hash_, _ = _hash_for(algorithm)
    return hash_(f"{username}:{realm}:{password}".encode())


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str = "00000001",
    cnonce: str = "",
    qop: str | None = "auth",
) -> str:
    """The `response=` value (RFC 7616 §3.4.1; without qop, RFC 2069 style)."""
    hash_, sess = _hash_for(algorithm)
    a1 = hash_(f"{username}:{realm}:{password}".encode())
    if sess:
        a1 = hash_(f"{a1}:{nonce}:{cnonce}".encode())
    a2 = hash_(f"{method}:{uri}".encode())
    if qop:
        return hash_(f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}".encode())
    return hash_(f"{a1}:{nonce}:{a2}".encode())


def new_cnonce() -> str:
    return secrets.token_hex(8)


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    algorithm: str | None = None,
    response: str | None = None,
) -> str:
    """An Authorization header value answering `challenge`.

    `algorithm` and `response` can be forced (to send a deliberately wrong
    answer); qop=auth is used when the challenge offers it.
    """
    algorithm = algorithm or challenge.algorithm
    qop = "auth" if "auth" in challenge.qops else None
    cnonce = cnonce if cnonce is not None else new_cnonce()
    nc_text = f"{nc:08x}"
    if response is None:
        response = digest_response(
            algorithm=algorithm,
            username=username,
            realm=challenge.realm,
            password=password,
            method=method,
            uri=uri,
            nonce=challenge.nonce,
            nc=nc_text,
            cnonce=cnonce,
            qop=qop,
        )
    parts = [
        f'username="{username}"',
        f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f'cnonce="{cnonce}"', f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)
