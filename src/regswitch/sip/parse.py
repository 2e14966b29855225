"""bytes -> Request | Response in one pass over the header block (RFC 3261 §7, §25).

Only what transaction matching needs is checked eagerly (start line, the
mandatory headers, the top Via, CSeq); everything else is parsed when read.
"""

from __future__ import annotations

import re

from regswitch.sip.errors import ParseError
from regswitch.sip.message import COMPACT_FORMS, CANONICAL_NAMES, Headers, Request, Response

UDP_MAX_MESSAGE = 65535
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
# Header names as phones spell them -> (lookup key, canonical name): skips
# validation and lower-casing for the common case.
_KNOWN_NAMES = {
    spelled: key
    for key, canonical in CANONICAL_NAMES.items()
    for spelled in (canonical, key, canonical.upper(), canonical.title())
}
_KNOWN_NAMES.update(COMPACT_FORMS)
_KNOWN_NAMES.update({c.upper(): key for c, key in COMPACT_FORMS.items()})
_REQUIRED = ("via", "from", "to", "call-id", "cseq")


_token = _TOKEN.match


def split_head(data: bytes) -> tuple[bytes, int]:
    """The header block and the offset of the body (RFC 3261 wants CRLF CRLF;
    a bare LF LF is tolerated, and a datagram without a blank line has no body)."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], end + 4
    end = data.find(b"\n\n")
    if end >= 0:
        return data[:end], end + 2
    return data.rstrip(b"\r\n"), len(data)


def parse_message(data: bytes, *, max_size: int = UDP_MAX_MESSAGE, stream: bool = False) -> Request | Response:
    """Parse one whole message. Raises ParseError and nothing else.

    `stream`: the framer already cut the message by Content-Length, so a
    missing Content-Length just means an empty body.
    """
    if len(data) > max_size:
        raise ParseError("message too large", 513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore CRLFs before the start line
    head_bytes, body_at = split_head(data)
    head = head_bytes.decode("latin-1")
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    folded = "\n " in head or "\n\t" in head
    start = lines[0]
    if not start:
        raise ParseError("empty start line")

    message: Request | Response
    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != "SIP/2.0":
            raise ParseError(f"unsupported version {version[:20]!r}", 505)
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise ParseError(f"bad status code {code[:10]!r}")
        message = Response(int(code), reason.strip(), Headers(), b"", "SIP/2.0")
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise ParseError("bad request line")
        method, uri, version = parts
        if not _token(method):
            raise ParseError(f"bad method {method[:20]!r}")
        if version.upper() != "SIP/2.0":
            if version.upper().startswith("SIP/"):
                raise ParseError(f"unsupported version {version[:20]!r}", 505)
            raise ParseError("bad request line")
        if ":" not in uri or "<" in uri or ">" in uri:
            raise ParseError(f"bad Request-URI {uri[:80]!r}")
        message = Request(method, uri, Headers(), b"", "SIP/2.0")

    index = message.headers._index
    content_length: int | None = None
    known_names = _KNOWN_NAMES
    for line in lines[1:] if not folded else _unfold(lines):
        name, colon, value = line.partition(":")
        known = known_names.get(name)
        if known is not None:
            key = known
        else:
            key = _header_key(name, message.headers, line)
        value = value.strip()
        if key == "content-length":
            if not value.isdigit() or len(value) > 9:
                raise ParseError(f"bad Content-Length {value[:20]!r}")
            if content_length is not None and content_length != int(value):
                raise ParseError("conflicting Content-Length headers")
            content_length = int(value)
        elif key in index:
            index[key].append(value)
        else:
            index[key] = [value]

    for key in _REQUIRED:
        if key not in index:
            raise ParseError(f"missing {CANONICAL_NAMES[key]} header")
    if len(index["call-id"]) > 1 or len(index["cseq"]) > 1 or len(index["from"]) > 1 or len(index["to"]) > 1:
        raise ParseError("repeated single-valued header")
    if not index["call-id"][0]:
        raise ParseError("empty Call-ID")
    cseq = message.cseq
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise ParseError("CSeq method does not match the request method")
        _ = message.top_via

    rest = len(data) - body_at
    if content_length is None:
        message.body = b"" if stream else data[body_at:]
    elif content_length > rest:
        raise ParseError("body shorter than Content-Length")
    elif content_length:
        message.body = data[body_at : body_at + content_length]
    return message


def _header_key(name: str, headers: Headers, line: str) -> str:
    """Key of a header name outside the known table; validates the name."""
    if not name or name == line:
        raise ParseError(f"bad header line {line[:60]!r}")
    name = name.rstrip()
    if not _token(name):
        raise ParseError(f"bad header name {name[:40]!r}")
    key = name.lower()
    if len(key) == 1:
        key = COMPACT_FORMS.get(key, key)
    headers._remember(key, name)
    return key


def _unfold(lines: list[str]) -> list[str]:
    """Header lines after the start line with folded continuations joined."""
    out: list[str] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            if not out:
                raise ParseError("continuation line before the first header")
            out[-1] = out[-1] + " " + line.strip()
        else:
            out.append(line)
    return out
