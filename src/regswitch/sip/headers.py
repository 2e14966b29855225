"""Typed views of the headers the switch reads: Via, name-addr (From/To/Contact),
CSeq and the digest credentials. Everything else stays a raw string.

Each parser has a fast path for what phones actually send (str methods, no
regex scan over the whole value) and an exact path for the rest; both apply
the RFC 3261 §25 grammar, and anything neither accepts raises ParseError.
Whitespace is only ever SP and HTAB: header text is latin-1, where str.strip()
and str.split() would also eat bytes 0x85 and 0xA0 of UTF-8 characters.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from regswitch.sip.errors import ParseError
from regswitch.sip.uri import URI, parse_uri, split_host_port

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1).
LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
        "path",
        "service-route",
        "accept-contact",
        "reject-contact",
        "security-client",
        "security-server",
        "security-verify",
        "p-associated-uri",
    }
)

WS = " \t"
_TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_token = re.compile(rf"[{_TOKEN_CHARS}]+\Z").match
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_quoted = re.compile(rf"{_QUOTED}\Z", re.S).match
# display-name = *(token LWS) / quoted-string; bytes >= 0x80 are tolerated in
# unquoted names (UTF-8 names that phones forget to quote)
_display_tokens = re.compile(
    rf"[{_TOKEN_CHARS}\x80-\xff]+(?:[ \t]+[{_TOKEN_CHARS}\x80-\xff]+)*\Z"
).match
# gen-value = token / host / quoted-string (host brings '[', ']' and ':')
_gen_value = re.compile(rf"[{_TOKEN_CHARS}\[\]:]+\Z").match

# Fast paths: one match validates a whole common-case value against a subset of
# the grammar (no LWS, no escapes outside quotes); anything else takes the
# exact path, so both agree on everything the fast path accepts.
_GEN = rf"[{_TOKEN_CHARS}\[\]:]+"
_PARAMS = rf"(?:;[{_TOKEN_CHARS}]+(?:=(?:{_GEN}|{_QUOTED}))?)*"
_param_item = re.compile(rf";([{_TOKEN_CHARS}]+)(?:=({_GEN}|{_QUOTED}))?", re.S).findall
_HOST = r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_.])?|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]"
_via_fast = re.compile(
    rf"SIP/2\.0/([A-Za-z]+) ({_HOST})(?::([0-9]{{1,5}}))?((?:;[{_TOKEN_CHARS}]+(?:={_GEN})?)*)\Z"
).match
_DISPLAY_TOKEN = rf"[{_TOKEN_CHARS}\x80-\xff]+"
_name_addr_fast = re.compile(
    rf"(?:({_QUOTED})[ \t]*|({_DISPLAY_TOKEN}(?:[ \t]+{_DISPLAY_TOKEN})*)[ \t]*)?"
    rf'<([^<>\s"]+)>({_PARAMS})\Z',
    re.S,
).match
# Parameter names phones send, already lower-case and valid tokens.
_KNOWN_PARAMS = frozenset(
    {
        "tag",
        "branch",
        "rport",
        "received",
        "expires",
        "transport",
        "lr",
        "q",
        "reg-id",
        "+sip.instance",
        "ob",
        "maddr",
        "user",
        "methods",
        "line",
        "rinstance",
        "alias",
        "ttl",
        "comp",
        "gr",
        "pub-gruu",
        "temp-gruu",
        "+sip.ice",
        "audio",
        "video",
    }
)


def _fast_params(text: str) -> dict[str, str | None]:
    """Params from text already matched by _PARAMS (so it starts with ';')."""
    if text.find(";", 1) < 0 and '"' not in text:  # one parameter: ;tag=...
        name, eq, value = text[1:].partition("=")
        return {name if name in _KNOWN_PARAMS else name.lower(): value if eq else None}
    params: dict[str, str | None] = {}
    known = _KNOWN_PARAMS
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        if '"' in value and (value[-1] != '"' or len(value) < 2 or value[0] != '"'):
            return _fast_params_quoted(text)  # a ';' inside a quoted value
        params[name if name in known else name.lower()] = value if eq else None
    return params


def _fast_params_quoted(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for name, value in _param_item(text):
        params[name if name in _KNOWN_PARAMS else name.lower()] = value or None
    return params


def is_token(text: str) -> bool:
    return (text.isalnum() and text.isascii()) or _token(text) is not None


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are not inside quotes or <...>."""
    if "," not in value:
        value = value.strip(WS)
        return [value] if value else []
    parts = value.split(",")
    if '"' not in value and "<" not in value:
        return [p for p in (part.strip(WS) for part in parts) if p]
    if "\\" not in value:
        # Re-join the pieces a comma inside quotes or <...> cut apart; an item
        # is whole when its quotes pair up and it closes every '<' it opens.
        # Running counts keep this linear whatever the input.
        out: list[str] = []
        first = 0
        quotes = opens = 0
        for i, part in enumerate(parts):
            quotes += part.count('"')
            opens += part.count("<") - part.count(">")
            if quotes % 2 == 0 and opens == 0:
                item = (part if first == i else ",".join(parts[first : i + 1])).strip(WS)
                if item:
                    out.append(item)
                first = i + 1
                quotes = opens = 0
        if first == len(parts):
            return out
    return _split_list_exact(value)


def _split_list_exact(value: str) -> list[str]:
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
            part = value[start:i].strip(WS)
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if in_quotes:
        raise ParseError("unterminated quoted string")
    if in_angle:
        raise ParseError("unterminated <")
    part = value[start:].strip(WS)
    if part:
        parts.append(part)
    return parts


def _split_params(text: str) -> list[str]:
    """`a=1;b="x;y"` -> ['a=1', 'b="x;y"']: split on ';' outside quoted strings."""
    parts = text.split(";")
    if '"' not in text:
        return parts
    if "\\" in text:
        return _split_params_exact(text)
    out: list[str] = []
    first = 0
    quotes = 0
    for i, part in enumerate(parts):  # re-join what a ';' inside quotes cut apart
        quotes += part.count('"')
        if quotes % 2 == 0:
            out.append(part if first == i else ";".join(parts[first : i + 1]))
            first = i + 1
            quotes = 0
    if first != len(parts):
        raise ParseError("unterminated quoted string")
    return out


def _split_params_exact(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    start = 0
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == '"':
            m = _quoted_prefix(text, pos)
            if m is None:
                raise ParseError("unterminated quoted string")
            pos = m
            continue
        if c == ";":
            out.append(text[start:pos])
            start = pos + 1
        pos += 1
    out.append(text[start:])
    return out


_QUOTED_PREFIX = re.compile(_QUOTED, re.S)


def _quoted_prefix(text: str, pos: int) -> int | None:
    """End offset of the quoted-string starting at text[pos], or None."""
    m = _QUOTED_PREFIX.match(text, pos)
    return None if m is None else m.end()


def parse_params(text: str) -> dict[str, str | None]:
    """`a=b;c;d="x;y"` (the text after the first ';') ->
    {"a": "b", "c": None, "d": '"x;y"'}. Names are lower-cased; quoted values
    keep their quotes (`unquote` them); LWS around ';' and '=' is allowed."""
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in _split_params(text):
        eq = item.find("=")
        if eq < 0:
            name = item.strip(WS)
            value = None
        else:
            name = item[:eq].strip(WS)
            value = item[eq + 1 :].strip(WS)
            if not (value.isalnum() and value.isascii()):
                if value[:1] == '"':
                    if _quoted(value) is None:
                        raise ParseError(f"bad quoted parameter value {value[:40]!r}")
                elif _gen_value(value) is None:
                    raise ParseError(f"bad parameter value {value[:40]!r}")
        if name in _KNOWN_PARAMS:
            params[name] = value
            continue
        if not (name.isalnum() and name.isascii()) and _token(name) is None:
            raise ParseError(f"bad parameter {item[:40]!r}")
        params[name.lower()] = value
    return params


def _params_after_semi(text: str) -> dict[str, str | None]:
    """parse_params for the text after a ';' that was there: empty is an error."""
    if not text.strip(WS):
        raise ParseError("empty parameter")
    return parse_params(text)


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


def quote(text: str) -> str:
    """`text` as a quoted-string (escaping '\\' and '"')."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_params(params: dict[str, str | None]) -> str:
    return "".join(";" + k if v is None else f";{k}={v}" for k, v in params.items())


# --- Via -----------------------------------------------------------------


class Via:
    __slots__ = ("host", "params", "port", "protocol", "transport")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.protocol = protocol

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    def _key(self) -> tuple[object, ...]:
        return (self.transport, self.host, self.port, self.params, self.protocol)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __repr__(self) -> str:
        return (
            f"Via(transport={self.transport!r}, host={self.host!r}, port={self.port!r}, "
            f"params={self.params!r}, protocol={self.protocol!r})"
        )


# sent-protocol with LWS around the slashes, sent-by with LWS around ':'
_VIA = re.compile(
    rf"[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+(\[[^\]]*\]|[^\s;:]+)(?:[ \t]*:[ \t]*([^\s;]*))?[ \t]*(?:;(.*))?\Z",
    re.S,
)


def parse_via(value: str) -> Via:
    """One Via value (already split from its list)."""
    m = _via_fast(value)
    if m is not None:
        transport, host, port_text, param_text = m.groups()
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ParseError(f"bad port in Via {value[:80]!r}")
        params = _fast_params(param_text) if param_text else {}
        return Via(transport.upper(), host, port, params)
    return _parse_via_exact(value)


def _parse_via_exact(value: str) -> Via:
    m = _VIA.match(value)
    if m is None:
        raise ParseError(f"bad Via {value[:80]!r}")
    name, version, transport, host, port_text, param_text = m.groups()
    hostport = host if port_text is None else f"{host}:{port_text}"
    host, port = split_host_port(hostport, value)
    params = _params_after_semi(param_text) if param_text is not None else {}
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


# --- name-addr / addr-spec -------------------------------------------------


class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec (its `;params` are header params)."""

    __slots__ = ("_uri", "display", "params", "uri_text")

    def __init__(
        self,
        uri_text: str,
        display: str | None = None,
        params: dict[str, str | None] | None = None,
        _uri: URI | None = None,
    ) -> None:
        self.uri_text = uri_text
        self.display = display
        self.params = {} if params is None else params
        self._uri = _uri

    @property
    def uri(self) -> URI:
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def display_name(self) -> str | None:
        """The display name without quotes and escapes."""
        return None if self.display is None else unquote(self.display)

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri_text}>{format_params(self.params)}"

    # `_uri` is a cache of `uri_text` parsed: not part of the value
    def _key(self) -> tuple[object, ...]:
        return (self.uri_text, self.display, self.params)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(uri_text={self.uri_text!r}, display={self.display!r}, "
            f"params={self.params!r})"
        )


_NAME_ADDR = re.compile(rf'[ \t]*((?:{_QUOTED}|[^<"])*?)[ \t]*<([^<>]*)>[ \t]*(.*)\Z', re.S)


def _name_addr_parts(value: str) -> tuple[str | None, str, str]:
    """(display or None, uri text, text after '>') of a value holding '<'."""
    lt = value.find("<")
    q = value.find('"')
    if q < 0 or q > lt:
        display = value[:lt].strip(WS)
        if display and not display.isalnum() and _display_tokens(display) is None:
            raise ParseError(f"bad display name {display[:40]!r}")
    else:
        # a quoted display name: the '<' that counts is the first after it
        close = value.find('"', q + 1)
        if "\\" in value[q:close] or close < 0:
            return _name_addr_exact(value)
        lt = value.find("<", close)
        if lt < 0 or value[:q].strip(WS) or value[close + 1 : lt].strip(WS):
            raise ParseError(f"bad name-addr {value[:80]!r}")
        display = value[q : close + 1]
    gt = value.find(">", lt)
    if gt < 0:
        raise ParseError(f"unterminated <...> in {value[:80]!r}")
    return display or None, value[lt + 1 : gt], value[gt + 1 :]


def _name_addr_exact(value: str) -> tuple[str | None, str, str]:
    m = _NAME_ADDR.match(value)
    if m is None:
        raise ParseError(f"bad name-addr {value[:80]!r}")
    display, uri_text, tail = m.groups()
    if display and _quoted(display) is None:
        raise ParseError(f"bad display name {display[:40]!r}")
    return display or None, uri_text, tail


def parse_name_addr(value: str) -> NameAddr:
    m = _name_addr_fast(value)
    if m is not None:
        quoted, tokens, uri_text, param_text = m.groups()
        return NameAddr(uri_text, quoted or tokens, _fast_params(param_text) if param_text else {})
    return _parse_name_addr_exact(value)


def _parse_name_addr_exact(value: str) -> NameAddr:
    if "<" in value:
        display, uri_text, tail = _name_addr_parts(value)
        if not uri_text or uri_text.strip(WS) != uri_text or "<" in uri_text:
            raise ParseError(f"bad URI in name-addr {value[:80]!r}")
        tail = tail.lstrip(WS)
        if not tail:
            return NameAddr(uri_text, display)
        if tail[0] != ";":
            raise ParseError(f"junk after name-addr {value[:80]!r}")
        return NameAddr(uri_text, display, _params_after_semi(tail[1:]))
    # addr-spec: no display name, and a URI holding ';', '?' or ',' would have
    # needed <> (RFC 3261 §20.10), so the first ';' starts the header params
    semi = value.find(";")
    uri_text = (value if semi < 0 else value[:semi]).strip(WS)
    if not uri_text or '"' in value or ">" in value:
        raise ParseError(f"bad addr-spec {value[:80]!r}")
    for c in " \t,?":
        if c in uri_text:
            raise ParseError(f"bad addr-spec {value[:80]!r}")
    return NameAddr(uri_text, None, _params_after_semi(value[semi + 1 :]) if semi >= 0 else {})


class Contact(NameAddr):
    __slots__ = ()

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        return None if value is None else parse_delta_seconds(value, "Contact expires")

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
        if value is None:
            return None
        try:
            q = float(value)
        except ValueError:
            raise ParseError(f"bad Contact q {value[:20]!r}") from None
        if not 0.0 <= q <= 1.0:
            raise ParseError(f"bad Contact q {value[:20]!r}")
        return q


def parse_contact(value: str) -> Contact:
    m = _name_addr_fast(value)
    if m is not None:
        quoted, tokens, uri_text, param_text = m.groups()
        return Contact(uri_text, quoted or tokens, _fast_params(param_text) if param_text else {})
    na = _parse_name_addr_exact(value)
    return Contact(na.uri_text, na.display, na.params)


# --- CSeq ----------------------------------------------------------------


class CSeq(NamedTuple):
    """Sequence number and method. A tuple: built by every parse, it must be cheap."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_CSEQ = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+([{_TOKEN_CHARS}]+)[ \t]*\Z")


def parse_cseq(value: str) -> CSeq:
    sp = value.find(" ")
    number, method = value[:sp], value[sp + 1 :]
    if sp <= 0 or not (
        number.isdigit() and number.isascii() and len(number) <= 10 and is_token(method)
    ):
        m = _CSEQ.match(value)
        if m is None:
            raise ParseError(f"bad CSeq {value[:40]!r}")
        number, method = m.groups()
    seq = int(number)
    if seq >= 2**31:
        raise ParseError("CSeq number too large")
    return CSeq(seq, method)


# --- credentials / challenges ---------------------------------------------

# exact credentials: an unquoted value should be a token; '/', ':', '=' and the
# like are tolerated (unquoted base64 opaque values are seen), separators not
_AUTH_PARAM = re.compile(
    rf'[ \t,]*([{_TOKEN_CHARS}]+)[ \t]*=[ \t]*(?:({_QUOTED})|([^\s,";\\]+))[ \t]*(?:,|\Z)', re.S
)


# auth-param names as clients spell them -> key: after the comma's space
# (unquoted values), and with the '=' and separator before a quoted value
_AUTH_NAMES: dict[str, str] = {}
_AUTH_FIRST: dict[str, str] = {}
_AUTH_NEXT: dict[str, str] = {}
for _name in (
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "qop",
    "nc",
    "opaque",
    "stale",
    "domain",
    "userhash",
    "charset",
):
    for _spelled in (_name, _name.capitalize(), _name.upper()):
        _AUTH_NAMES[_spelled] = _AUTH_NAMES[" " + _spelled] = _name
        _AUTH_FIRST[_spelled + "="] = _name
        _AUTH_NEXT[", " + _spelled + "="] = _AUTH_NEXT["," + _spelled + "="] = _name
_AUTH_TOKENS = frozenset(
    {
        "MD5",
        "SHA-256",
        "SHA-512-256",
        "MD5-sess",
        "SHA-256-sess",
        "SHA-512-256-sess",
        "auth",
        "auth-int",
        "true",
        "false",
        "md5",
        "sha-256",
    }
)


def parse_auth(value: str) -> tuple[str, dict[str, str]]:
    """`Digest username="u", realm="r", ...` -> ("digest", {"username": "u", ...}).

    Parameter names are lower-cased; quoted values unquoted.
    """
    value = value.strip(WS)
    scheme, _, rest = value.partition(" ")
    if "\t" in scheme:
        scheme, _, more = scheme.partition("\t")
        rest = more + " " + rest
    if not is_token(scheme):
        raise ParseError(f"bad credentials scheme {scheme[:20]!r}")
    params = _auth_params_fast(rest) if "\\" not in rest else None
    if params is None:
        params = _auth_params_exact(rest.strip(WS))
    return scheme.lower(), params


def _auth_params_fast(rest: str) -> dict[str, str] | None:
    """Credentials the way clients write them: no escapes, no LWS around '='
    and no junk. Splitting on '"' first leaves the quoted values whole (commas
    inside them included). None: take the exact path, which decides."""
    params: dict[str, str] = {}
    if not rest:
        return params
    segments = rest.split('"')
    last = len(segments) - 1
    if last % 2:
        return None  # an odd number of quotes
    names = _AUTH_FIRST
    for i in range(0, last, 2):
        # segments[i] lies outside quotes and ends with the name of the
        # quoted value segments[i + 1]
        key = names.get(segments[i])
        if key is None:
            key = _auth_unquoted(segments[i], params, i > 0, True)
            if key is None:
                return None
        params[key] = segments[i + 1]
        names = _AUTH_NEXT
    tail = segments[last]
    if tail and _auth_unquoted(tail, params, last > 0, False) is None:
        return None
    return params


def _auth_unquoted(text: str, params: dict[str, str], after_quote: bool, named: bool) -> str | None:
    """Unquoted `a=b` items of `text` into params. `after_quote`: text follows
    a closing quote, so it must open with a comma; `named`: text ends with the
    `name=` of a quoted value, whose key is returned. None when unsure."""
    parts = text.split(",")
    if after_quote:
        if parts[0].strip(WS):
            return None  # junk after a closing quote
        del parts[0]
    key = ""
    if named:
        if not parts:
            return None
        name, eq, gap = parts.pop().partition("=")
        key = _AUTH_NAMES.get(name) or ""
        if not key:
            name = name.strip(WS)
            if not is_token(name):
                return None
            key = name.lower()
        if not eq or gap.strip(WS):
            return None
    for part in parts:
        name, eq, value = part.partition("=")
        found = _AUTH_NAMES.get(name)
        if found is None:
            if not eq:
                if part.strip(WS):
                    return None
                continue  # an empty list element
            name = name.strip(WS)
            if not is_token(name):
                return None
            found = name.lower()
        if not (value.isalnum() or value in _AUTH_TOKENS):
            return None
        params[found] = value
    return key


_auth_trailer = re.compile(r"[ \t,]*\Z").match


def _auth_params_exact(rest: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    end = len(rest)
    while pos < end:
        if _auth_trailer(rest, pos):
            break  # trailing empty list elements
        m = _AUTH_PARAM.match(rest, pos)
        if m is None:
            raise ParseError(f"bad credentials parameter near {rest[pos : pos + 40]!r}")
        quoted = m.group(2)
        params[m.group(1).lower()] = m.group(3) if quoted is None else unquote(quoted)
        pos = m.end()
    return params


# --- numbers ---------------------------------------------------------------


def parse_delta_seconds(value: str, what: str) -> int:
    """delta-seconds (Expires): RFC 3261 §20.19 treats any larger number as
    2**32-1 rather than an error (RFC 4475 §3.1.2.19 sends one)."""
    text = value.strip(WS)
    if text.isdigit() and text.isascii():
        return min(int(text[:12]), 2**32 - 1)
    raise ParseError(f"bad {what} {text[:20]!r}")


def parse_int(value: str, what: str, maximum: int = 2**32 - 1) -> int:
    """A header number (delta-seconds, Max-Forwards...): ASCII digits, <= maximum."""
    if value.isdigit() and value.isascii() and len(value) <= 10:
        number = int(value)
        if number <= maximum:
            return number
    value = value.strip(WS)
    if not (value.isdigit() and value.isascii()) or len(value) > 10 or int(value) > maximum:
        raise ParseError(f"bad {what} {value[:20]!r}")
    return int(value)
