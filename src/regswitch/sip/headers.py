"""Typed views of the headers the switch reads: Via, name-addr (From/To/Contact),
CSeq and the digest credentials. Everything else stays a raw string."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from regswitch.sip.errors import ParseError
from regswitch.sip.uri import URI, parse_uri, split_host_port

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1).
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "in-reply-to", "path", "service-route",
    }
)


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are not inside quotes or <...>."""
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(",") if part.strip()]
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if in_quotes:
        raise ParseError("unterminated quoted string")
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=b;c;d="x;y"` -> {"a": "b", "c": None, "d": '"x;y"'}; names lower-cased."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    if '"' not in text:
        for item in text.split(";"):
            item = item.strip()
            if item:
                name, eq, value = item.partition("=")
                params[name.strip().lower()] = value.strip() if eq else None
        return params
    for item in _split_outside_quotes(text, ";"):
        item = item.strip()
        if item:
            name, eq, value = item.partition("=")
            params[name.strip().lower()] = value.strip() if eq else None
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    start = 0
    in_quotes = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == sep:
            out.append(text[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise ParseError("unterminated quoted string")
    out.append(text[start:])
    return out


def unquote(value: str) -> str:
    """Strip the quotes of a quoted-string and resolve its escapes."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out = []
        i = 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        return "".join(out)
    return value


def format_params(params: dict[str, str | None]) -> str:
    return "".join(";" + k if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


_VIA = re.compile(r"SIP/2\.0/([A-Za-z]+)[ \t]+(\[[0-9A-Fa-f:.]+\]|[^\s;:\[\]]+)(?::(\d{1,5}))?[ \t]*(?:;(.*))?\Z", re.S)


def parse_via(value: str) -> Via:
    """One Via value (already split from its list); LWS around '/' and ':' allowed."""
    m = _VIA.match(value)
    if m is not None:
        transport, host, port_text, param_text = m.groups()
        port = int(port_text) if port_text else None
        if port is not None and not 0 < port < 65536:
            raise ParseError(f"bad port in Via {value[:80]!r}")
        return Via(transport.upper(), host, port, parse_params(param_text) if param_text else {})
    head, _, param_text = value.partition(";")
    parts = head.split("/", 2)
    if len(parts) != 3:
        raise ParseError(f"bad Via {value[:80]!r}")
    tail = parts[2].split(None, 1)
    if len(tail) != 2:
        raise ParseError(f"bad Via {value[:80]!r}")
    name, version = parts[0].strip(), parts[1].strip()
    if not name or not version:
        raise ParseError(f"bad Via {value[:80]!r}")
    host, port = split_host_port("".join(tail[1].split()), value)
    return Via(tail[0].upper(), host, port, parse_params(param_text), f"{name.upper()}/{version}")


@dataclass(slots=True)
class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec (its `;params` are header params)."""

    uri_text: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    _uri: URI | None = None

    @property
    def uri(self) -> URI:
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri_text}>{format_params(self.params)}"


_NAME_ADDR = re.compile(r'[ \t]*((?:"(?:[^"\\]|\\.)*"|[^<"])*?)[ \t]*<([^<>]*)>[ \t]*(.*)\Z', re.S)


def parse_name_addr(value: str) -> NameAddr:
    m = _NAME_ADDR.match(value)
    if m is not None:
        display, uri_text, param_text = m.groups()
        uri_text = uri_text.strip()
        if not uri_text:
            raise ParseError("empty URI in name-addr")
        if param_text and param_text[0] != ";":
            raise ParseError(f"junk after name-addr {value[:80]!r}")
        return NameAddr(uri_text, display or None, parse_params(param_text[1:]) if param_text else {})
    value = value.strip()
    if not value:
        raise ParseError("empty name-addr")
    if "<" in value or ">" in value or value.startswith('"'):
        raise ParseError(f"bad name-addr {value[:80]!r}")
    # addr-spec: parameters after the first ';' belong to the header, not the URI
    uri_text, _, param_text = value.partition(";")
    uri_text = uri_text.strip()
    if " " in uri_text or "," in uri_text or not uri_text:
        raise ParseError(f"bad addr-spec {value[:80]!r}")
    return NameAddr(uri_text, None, parse_params(param_text))


@dataclass(slots=True)
class Contact(NameAddr):
    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ParseError(f"bad Contact expires {value[:20]!r}") from None

    @property
    def instance(self) -> str | None:
        value = self.params.get("+sip.instance")
        return unquote(value) if value else None

    @property
    def reg_id(self) -> str | None:
        return self.params.get("reg-id")

    @property
    def q(self) -> float | None:
        value = self.params.get("q")
        try:
            return None if value is None else float(value)
        except ValueError:
            raise ParseError(f"bad Contact q {value[:20]!r}") from None


def parse_contact(value: str) -> Contact:
    na = parse_name_addr(value)
    return Contact(na.uri_text, na.display, na.params)


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise ParseError(f"bad CSeq {value[:40]!r}")
    seq = int(parts[0])
    if seq >= 2**31:
        raise ParseError("CSeq number too large")
    return CSeq(seq, parts[1])


_AUTH_PARAM = re.compile(r'\s*([!-~]+?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|\Z)')
_ESCAPE = re.compile(r"\\(.)")


def parse_auth(value: str) -> tuple[str, dict[str, str]]:
    """`Digest username="u", realm="r", ...` -> ("digest", {"username": "u", ...}).

    Parameter names are lower-cased; quoted values unquoted.
    """
    scheme, sep, rest = value.strip().partition(" ")
    if not sep or not scheme:
        raise ParseError("bad credentials")
    params = _auth_params_simple(rest)
    if params is None:
        params = _auth_params_exact(rest.strip())
    return scheme.lower(), params


def _auth_params_simple(rest: str) -> dict[str, str] | None:
    """The common case: no commas, quotes or escapes inside values. None if unsure."""
    if "\\" in rest:
        return None
    params: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, value = item.partition("=")
        value = value.strip()
        if value[:1] == '"':
            if len(value) < 2 or value[-1] != '"' or value.count('"') != 2:
                return None
            value = value[1:-1]
        elif not eq or '"' in value:
            return None
        params[name.strip().lower()] = value
    return params


def _auth_params_exact(rest: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    end = len(rest)
    while pos < end:
        m = _AUTH_PARAM.match(rest, pos)
        if m is None:
            raise ParseError(f"bad credentials parameter near {rest[pos:pos + 40]!r}")
        quoted = m.group(2)
        if quoted is None:
            params[m.group(1).lower()] = m.group(3)
        else:
            params[m.group(1).lower()] = _ESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
    return params


def parse_int(value: str, what: str, maximum: int = 2**32 - 1) -> int:
    value = value.strip()
    if not value.isdigit() or len(value) > 10 or int(value) > maximum:
        raise ParseError(f"bad {what} {value[:20]!r}")
    return int(value)
