"""SIP requests and responses: raw header lines, typed views parsed on first use.

Header values are `str` decoded as latin-1, so any byte sequence (UTF-8 display
names included) round-trips unchanged; `value.encode("latin-1").decode()`
gives the text. A value an application sets with characters beyond latin-1
goes out as UTF-8. Content-Length is never stored as a header: the
serialiser writes it from the body.

Typed views (top_via, from_, to, cseq, contacts, ruri) are parsed once and
cached; CSeq, the top Via, From and To are parsed by parse_message itself, so
they never raise on a parsed message. The others raise ParseError when the
header is malformed. Values added by hand must not hold CR or LF
(LocalProtocolError).
"""

from __future__ import annotations

from collections.abc import Iterator

from regswitch.sip.errors import LocalProtocolError, ParseError
from regswitch.sip.headers import (
    LIST_HEADERS,
    Contact,
    CSeq,
    NameAddr,
    Via,
    parse_contact,
    parse_cseq,
    parse_delta_seconds,
    parse_int,
    parse_name_addr,
    parse_via,
    split_list,
)
from regswitch.sip.uri import URI, parse_uri

COMPACT_FORMS = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "n": "identity-info",
}

CANONICAL_NAMES = {
    name.lower(): name
    for name in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Expires",
        "Min-Expires",
        "Content-Type",
        "Content-Length",
        "Content-Encoding",
        "User-Agent",
        "Server",
        "Allow",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Route",
        "Record-Route",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Authentication-Info",
        "Date",
        "Retry-After",
        "Warning",
        "Subject",
        "Event",
        "Allow-Events",
        "Refer-To",
        "Referred-By",
        "Session-Expires",
        "Min-SE",
        "Path",
        "Service-Route",
        "Timestamp",
        "Organization",
        "Priority",
        "Reason",
        "Call-Info",
        "Alert-Info",
        "Error-Info",
        "In-Reply-To",
        "MIME-Version",
        "Reply-To",
        "P-Asserted-Identity",
        "Privacy",
        "RSeq",
        "RAck",
        "Identity",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Identity-Info",
        "Content-Disposition",
        "Content-Language",
        "Flow-Timer",
    )
}


# Header names as phones spell them -> lookup key: skips lower-casing and the
# compact-form lookup for the common case (parse.py relies on it too).
KNOWN_NAMES: dict[str, str] = {
    spelled: key
    for key, canonical in CANONICAL_NAMES.items()
    for spelled in (canonical, key, canonical.upper(), canonical.title())
}
KNOWN_NAMES.update(COMPACT_FORMS)
KNOWN_NAMES.update({c.upper(): key for c, key in COMPACT_FORMS.items()})
KNOWN_NAMES.update(
    {"Call-Id": "call-id", "Cseq": "cseq", "CSEQ": "cseq", "Www-Authenticate": "www-authenticate"}
)


def header_key(name: str) -> str:
    """Lookup key of a header name: lower-case, compact form expanded."""
    key = KNOWN_NAMES.get(name)
    if key is not None:
        return key
    key = name.lower()
    if len(key) == 1:
        return COMPACT_FORMS.get(key, key)
    return key


def _check_value(value: str) -> None:
    # A CR or LF in a value would let it forge header lines on the wire.
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"line break in header value {value[:40]!r}")


class Headers:
    """Header values by lookup key, each key's values in wire order.

    The relative order of different header names carries no meaning (RFC 3261
    §7.3.1), so one dict holds it all; `_names` remembers how unknown names
    were spelled, as they go out the way they came in. `changes` counts the
    edits made through the methods below, so that a Message can tell that its
    cached typed views (top Via, CSeq, From, To, Contact) no longer match.
    """

    __slots__ = ("_index", "_names", "changes")

    def __init__(self) -> None:
        self._index: dict[str, list[str]] = {}
        self._names: dict[str, str] = {}
        self.changes = 0

    def _remember(self, key: str, name: str) -> None:
        if key not in CANONICAL_NAMES:
            self._names.setdefault(key, name)

    def add(self, name: str, value: str) -> None:
        if "\r" in value or "\n" in value:
            _check_value(value)
        key = KNOWN_NAMES.get(name) or header_key(name)
        self.changes += 1
        values = self._index.get(key)
        if values is None:
            self._index[key] = [value]
            if key not in CANONICAL_NAMES:
                self._names.setdefault(key, name)
        else:
            values.append(value)

    def insert_first(self, name: str, value: str) -> None:
        """Put `value` before the other values of `name`; a new name goes first."""
        _check_value(value)
        key = header_key(name)
        self.changes += 1
        values = self._index.get(key)
        if values is not None:
            values.insert(0, value)
            return
        self._index = {key: [value], **self._index}
        self._remember(key, name)

    def set(self, name: str, value: str) -> None:
        _check_value(value)
        key = header_key(name)
        self.changes += 1
        if key not in self._index:
            self._remember(key, name)
        self._index[key] = [value]

    def remove(self, name: str) -> None:
        self.changes += 1
        self._index.pop(header_key(name), None)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index.get(KNOWN_NAMES.get(name) or header_key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every line of `name`, unsplit."""
        return list(self._index.get(header_key(name), ()))

    def values(self, name: str) -> list[str]:
        """Every value of `name`, comma-separated lists split (list headers only)."""
        key = header_key(name)
        lines = self._index.get(key, ())
        if key not in LIST_HEADERS:
            return list(lines)
        out: list[str] = []
        for line in lines:
            out.extend(split_list(line))
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        names = self._names
        for key, values in self._index.items():
            name = CANONICAL_NAMES.get(key) or names.get(key, key)
            for value in values:
                yield name, value

    def __len__(self) -> int:
        return sum(len(v) for v in self._index.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._index == other._index

    def copy(self) -> Headers:
        other = Headers()
        other._index = {k: list(v) for k, v in self._index.items()}
        other._names = dict(self._names)
        return other

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


class Message:
    """What requests and responses share: headers, body and typed views.

    A typed view is parsed on first use and cached; an edit of the headers
    after that (Headers.changes moved on) drops every cached view, so a view
    never disagrees with the headers that go out.
    """

    __slots__ = ("_contacts", "_cseq", "_from", "_seen", "_to", "_top_via", "body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._top_via: Via | None = None
        self._cseq: CSeq | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._contacts: list[Contact] | None = None
        self._seen = 0  # the headers' `changes` the cached views were parsed at

    def _invalidate(self) -> None:
        self._top_via = None
        self._cseq = None
        self._from = None
        self._to = None
        self._contacts = None
        self._seen = self.headers.changes

    def _required(self, key: str) -> str:
        values = self.headers._index.get(key)
        if not values:
            raise ParseError(f"missing {CANONICAL_NAMES.get(key, key)} header")
        return values[0]

    @property
    def call_id(self) -> str:
        values = self.headers._index.get("call-id")
        return values[0] if values else self._required("call-id")

    @property
    def cseq(self) -> CSeq:
        if self._seen != self.headers.changes:
            self._invalidate()
        if self._cseq is None:
            self._cseq = parse_cseq(self._required("cseq"))
        return self._cseq

    @property
    def top_via(self) -> Via:
        if self._seen != self.headers.changes:
            self._invalidate()
        if self._top_via is None:
            line = self._required("via")
            if "," in line:
                values = split_list(line)
                if not values:
                    raise ParseError("empty Via header")
                line = values[0]
            self._top_via = parse_via(line)
        return self._top_via

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.values("via")]

    @property
    def from_(self) -> NameAddr:
        if self._seen != self.headers.changes:
            self._invalidate()
        if self._from is None:
            self._from = parse_name_addr(self._required("from"))
        return self._from

    @property
    def to(self) -> NameAddr:
        if self._seen != self.headers.changes:
            self._invalidate()
        if self._to is None:
            self._to = parse_name_addr(self._required("to"))
        return self._to

    @property
    def contact_is_star(self) -> bool:
        values = self.headers._index.get("contact")
        return values is not None and len(values) > 0 and values[0].strip(" \t") == "*"

    @property
    def contacts(self) -> list[Contact]:
        """Parsed Contact values; `Contact: *` is not a contact (see contact_is_star)."""
        if self._seen != self.headers.changes:
            self._invalidate()
        if self._contacts is None:
            lines = self.headers._index.get("contact")
            if lines is None:
                self._contacts = []
                return self._contacts
            if len(lines) == 1 and "," not in lines[0] and lines[0] not in ("*", ""):
                self._contacts = [parse_contact(lines[0])]  # the usual single contact
                return self._contacts
            values = self.headers.values("contact")
            if any(v == "*" for v in values):
                if len(values) != 1:
                    raise ParseError("Contact: * must be the only contact")
                self._contacts = []
            else:
                self._contacts = [parse_contact(v) for v in values]
        return self._contacts

    @property
    def expires(self) -> int | None:
        values = self.headers._index.get("expires")
        return None if values is None else parse_delta_seconds(values[0], "Expires")

    @property
    def max_forwards(self) -> int | None:
        values = self.headers._index.get("max-forwards")
        return None if values is None else parse_int(values[0], "Max-Forwards", 255)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


class Request(Message):
    __slots__ = ("_ruri", "method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        # Message.__init__ inlined: one per parsed message, it shows in profiles
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._top_via = self._cseq = self._from = self._to = self._contacts = None
        self._seen = 0
        self.method = method
        self.uri = uri
        self.version = version
        self._ruri: URI | None = None

    @property
    def ruri(self) -> URI:
        """The parsed Request-URI; ParseError if malformed (416: unknown scheme)."""
        if self._ruri is None:
            ruri = parse_uri(self.uri)
            if ruri.headers is not None:
                # RFC 3261 §19.1.1: headers are not allowed in a Request-URI
                raise ParseError("Request-URI with headers")
            self._ruri = ruri
        return self._ruri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._top_via = self._cseq = self._from = self._to = self._contacts = None
        self._seen = 0
        self.status = status
        self.reason = reason
        self.version = version

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
