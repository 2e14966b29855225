"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parse, format, compare.

`parse_uri` takes the common shapes (`sip:user@host:port;params`) with
str methods and checks each part against the RFC 3261 grammar with
module-level patterns; anything unusual goes through the same checks, so the
fast path never accepts what the grammar refuses.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from regswitch.sip.errors import ParseError

# RFC 3261 §25.1: unreserved = alphanum / mark; escaped = "%" HEXDIG HEXDIG
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_user_ok = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+\Z").match
_password_ok = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*\Z").match
# hostname = *( domainlabel "." ) toplabel [ "." ]; "_" is tolerated (seen in the wild)
_hostname_ok = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?\Z").match
_ipv6_ok = re.compile(r"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]\Z").match
_paramchar_ok = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+\Z").match
_headers_ok = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$=&]|{_ESCAPED})*\Z").match
_scheme_ok = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z").match
_tel_ok = re.compile(r"\+?[0-9A-Fa-f*#\-.()pPwW]+\Z").match
# The common shape (user@host:port;params, no escapes, no headers) in one
# match; a subset of what _parse_sip accepts, which handles everything else.
_PARAMCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]"
_sip_fast = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?"
    r"([A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\])"
    rf"(?::([0-9]{{1,5}}))?((?:;{_PARAMCHAR}+(?:={_PARAMCHAR}+)?)*)\Z"
).match


class URI:
    __slots__ = ("headers", "host", "params", "password", "port", "scheme", "user")

    # The records of the hot path (this one, Via, NameAddr, the registrar's
    # requests and decisions) are plain slotted classes, not dataclasses:
    # mypyc compiles a written __init__, while the one @dataclass generates at
    # import stays interpreted, four times the cost, paid for every URI, Via
    # and name-addr parsed.
    def __init__(
        self,
        scheme: str,
        user: str | None,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
        password: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = headers
        self.password = password

    def _key(self) -> tuple[object, ...]:
        fields = (self.scheme, self.user, self.host, self.port, self.params, self.headers)
        return (*fields, self.password)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __repr__(self) -> str:
        return (
            f"URI(scheme={self.scheme!r}, user={self.user!r}, host={self.host!r}, "
            f"port={self.port!r}, params={self.params!r}, headers={self.headers!r}, "
            f"password={self.password!r})"
        )

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
        return URI(
            self.scheme, self.user, self.host, self.port, merged, self.headers, self.password
        )

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
                mine_text = unquote(value or "")
                their_text = unquote(other.params[name] or "")
                if mine_text.lower() != their_text.lower():
                    return False
        return True


def _unescape(text: str | None) -> str | None:
    if text is None or "%" not in text:
        return text
    return unquote(text)


def parse_uri(text: str) -> URI:
    """Parse `sip:`, `sips:` or `tel:`; ParseError (status 416) for another
    scheme, ParseError (400) for a malformed URI."""
    colon = text.find(":")
    if colon <= 0:
        raise ParseError(f"bad URI {text[:80]!r}")
    scheme = text[:colon].lower()
    if scheme == "sip" or scheme == "sips":
        m = _sip_fast(text, colon + 1)
        if m is not None:
            user, host, port_text, param_text = m.groups()
            port = None
            if port_text is not None:
                port = int(port_text)
                if not 0 < port < 65536:
                    raise ParseError(f"bad port in {text[:80]!r}")
            params: dict[str, str | None] = {}
            if param_text:
                for item in param_text[1:].split(";"):
                    name, eq, value = item.partition("=")
                    params[name.lower()] = value if eq else None
            return URI(scheme, user, host, port, params)
        return _parse_sip(text, scheme, text[colon + 1 :])
    if scheme == "tel":
        number, _, param_text = text[colon + 1 :].partition(";")
        if not _tel_ok(number):
            raise ParseError(f"bad tel URI {text[:80]!r}")
        return URI(
            "tel", None, number, None, parse_uri_params(param_text, text) if param_text else {}
        )
    if _scheme_ok(scheme) is None:
        raise ParseError(f"bad URI {text[:80]!r}")
    raise ParseError(f"unsupported URI scheme {scheme[:20]!r}", 416)


def _parse_sip(text: str, scheme: str, rest: str) -> URI:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        # '@' is allowed nowhere else in a SIP URI, so the first one ends userinfo
        userinfo, rest = rest[:at], rest[at + 1 :]
        colon = userinfo.find(":")
        if colon >= 0:
            user, password = userinfo[:colon], userinfo[colon + 1 :]
            if _password_ok(password) is None:
                raise ParseError(f"bad password in URI {text[:80]!r}")
        else:
            user = userinfo
        if not (user.isalnum() and user.isascii()) and _user_ok(user) is None:
            raise ParseError(f"bad user in URI {text[:80]!r}")
    headers = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1 :]
        rest = rest[:q]
        if _headers_ok(headers) is None:
            raise ParseError(f"bad headers in URI {text[:80]!r}")
    semi = rest.find(";")
    if semi >= 0:
        host, port = split_host_port(rest[:semi], text)
        if semi == len(rest) - 1:
            raise ParseError(f"empty URI parameter in {text[:80]!r}")
        params = parse_uri_params(rest[semi + 1 :], text)
    else:
        host, port = split_host_port(rest, text)
        params = {}
    return URI(scheme, user, host, port, params, headers, password)


def host_ok(host: str) -> bool:
    """hostname, IPv4 address or [IPv6] reference (RFC 3261 §25.1)."""
    if host.isascii() and host.replace(".", "").isalnum():
        return True  # the usual dotted names and IPv4 addresses
    if host[:1] == "[":
        return _ipv6_ok(host) is not None
    return _hostname_ok(host) is not None


def split_host_port(hostport: str, context: str = "") -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host, port)."""
    if hostport[:1] == "[":
        end = hostport.find("]")
        if end < 0:
            raise ParseError(f"bad IPv6 reference in {context[:80]!r}")
        host, tail = hostport[: end + 1], hostport[end + 1 :]
        if tail and tail[0] != ":":
            raise ParseError(f"bad host in {context[:80]!r}")
        port_text = tail[1:] if tail else None
    else:
        colon = hostport.find(":")
        if colon >= 0:
            host, port_text = hostport[:colon], hostport[colon + 1 :]
        else:
            host, port_text = hostport, None
    if not host or not host_ok(host):
        raise ParseError(f"bad host in {context[:80]!r}")
    if port_text is None:
        return host, None
    if not (port_text.isdigit() and port_text.isascii()) or len(port_text) > 5:
        raise ParseError(f"bad port in {context[:80]!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ParseError(f"bad port in {context[:80]!r}")
    return host, port


def parse_uri_params(text: str, context: str = "") -> dict[str, str | None]:
    """`transport=tcp;lr` (after the first ';') -> {"transport": "tcp", "lr": None}.

    Names are lower-cased; values stay as written (escapes included).
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text.split(";"):
        eq = item.find("=")
        if eq < 0:
            name, value = item, None
        else:
            name, value = item[:eq], item[eq + 1 :]
            if not (value.isalnum() and value.isascii()) and _paramchar_ok(value) is None:
                raise ParseError(f"bad URI parameter in {context[:80]!r}")
        if not (name.isalnum() and name.isascii()) and _paramchar_ok(name) is None:
            raise ParseError(f"bad URI parameter in {context[:80]!r}")
        params[name.lower()] = value
    return params
