"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, format, compare."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from regswitch.sip.errors import ParseError

_HOST_BAD = re.compile(r'[\s<>"@;?,]')
_USER_BAD = re.compile(r'[\s<>"]')


@dataclass(slots=True)
class URI:
    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = "tel:" + self.host
        else:
            out = self.scheme + ":"
            if self.user is not None:
                out += self.user
                if self.password is not None:
                    out += ":" + self.password
                out += "@"
            out += self.host
            if self.port is not None:
                out += ":" + str(self.port)
        for name, value in self.params.items():
            out += ";" + name if value is None else f";{name}={value}"
        if self.headers:
            out += "?" + self.headers
        return out

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        """The address-of-record form: `sip:user@host`, host lower-cased."""
        user = "" if self.user is None else unquote(self.user) + "@"
        return f"{'sip' if self.scheme == 'sips' else self.scheme}:{user}{self.host.lower()}"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def with_params(self, **params: str | None) -> URI:
        merged = dict(self.params)
        merged.update(params)
        return URI(self.scheme, self.user, self.host, self.port, merged, self.headers, self.password)

    def equivalent(self, other: URI) -> bool:
        """RFC 3261 §19.1.4 comparison (the parts a registrar and dialogs need)."""
        if self.scheme != other.scheme or self.host.lower() != other.host.lower():
            return False
        if _unescape(self.user) != _unescape(other.user) or self.password != other.password:
            return False
        if self.port != other.port:
            return False
        for name in ("user", "ttl", "method", "maddr", "transport"):
            mine, theirs = self.params.get(name), other.params.get(name)
            if (mine is None) != (theirs is None):
                return False
            if mine is not None and theirs is not None and mine.lower() != theirs.lower():
                return False
        for name, value in self.params.items():
            if name in other.params:
                theirs = other.params[name]
                if (value or "").lower() != (theirs or "").lower():
                    return False
        return True


def _unescape(user: str | None) -> str | None:
    return None if user is None else unquote(user)


_SIP_URI = re.compile(
    r'(?:([^@\s<>"]+)@)?(\[[0-9A-Fa-f:.]+\]|[^\[\];?:\s<>"@,]+)(?::(\d{1,5}))?(;[^?\s<>"]*)?(?:\?([^\s<>"]*))?\Z'
)


def parse_uri(text: str) -> URI:
    """Parse `sip:`, `sips:` or `tel:`; raise ParseError for anything else."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.strip().lower()
    if not colon or not rest:
        raise ParseError(f"bad URI {text[:80]!r}")
    if scheme == "sip" or scheme == "sips":
        m = _SIP_URI.match(rest)
        if m is None:
            raise ParseError(f"bad SIP URI {text[:80]!r}")
        userinfo, host, port_text, param_text, headers = m.groups()
        user = password = None
        if userinfo is not None:
            user, has_pw, pw = userinfo.partition(":")
            password = pw if has_pw else None
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ParseError(f"bad port in {text[:80]!r}")
        params = parse_uri_params(param_text[1:]) if param_text else {}
        return URI(scheme, user, host, port, params, headers, password)
    if scheme == "tel":
        number, _, param_text = rest.partition(";")
        if not number or _HOST_BAD.search(number):
            raise ParseError(f"bad tel URI {text[:80]!r}")
        return URI("tel", None, number, None, parse_uri_params(param_text))
    raise ParseError(f"unsupported URI scheme {scheme[:20]!r}", 416)


def split_host_port(hostport: str, context: str = "") -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ParseError(f"bad IPv6 reference in {context[:80]!r}")
        host, tail = hostport[: end + 1], hostport[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ParseError(f"bad host in {context[:80]!r}")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_raw = hostport.partition(":")
        port_text = port_text_raw if colon else None
    if not host or _HOST_BAD.search(host):
        raise ParseError(f"bad host in {context[:80]!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ParseError(f"bad port in {context[:80]!r}")
    return host, int(port_text)


def parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text.split(";"):
        if not item:
            continue
        name, eq, value = item.partition("=")
        params[name.strip().lower()] = value.strip() if eq else None
    return params
