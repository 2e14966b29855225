"""bytes -> Request | Response in one pass over the header block (RFC 3261 §7, §25).

Checked eagerly: the start line, the mandatory headers and the typed views
every layer reads (CSeq, top Via, From, To). Everything else (Contact, other
Vias, Expires, URIs, Authorization...) is parsed when read, and a typed
accessor of a malformed header raises ParseError then.

The fast path handles a CRLF message without folded lines; folding, bare-LF
line ends and a blank line hiding before the first CRLF CRLF send it down the
exact path, which gives the same result for anything the fast path accepts.
"""

from __future__ import annotations

import re

from regswitch.sip.errors import ParseError
from regswitch.sip.headers import (
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_list,
)
from regswitch.sip.message import (
    CANONICAL_NAMES,
    COMPACT_FORMS,
    KNOWN_NAMES,
    Headers,
    Request,
    Response,
)

UDP_MAX_MESSAGE = 65535
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_CRLF_START = (b"\r", b"\n")


class _Refold(Exception):
    """A continuation line: unfold and index again."""


class _Reframe(Exception):
    """An empty line inside what the fast path took for the header block."""


def split_head(data: bytes) -> tuple[bytes, int]:
    """The header block and the offset of the body: the head ends at the first
    empty line (CRLF CRLF; bare LF tolerated). A datagram without an empty
    line is all head and has no body."""
    m = _BLANK_LINE.search(data)
    if m is None:
        return data.rstrip(b"\r\n"), len(data)
    return data[: m.start()], m.end()


def parse_message(
    data: bytes, *, max_size: int = UDP_MAX_MESSAGE, stream: bool = False
) -> Request | Response:
    """Parse one whole message. Raises ParseError and nothing else.

    A body longer than Content-Length is cut to it (the rest of a datagram is
    ignored); a shorter one is an error. Without Content-Length a datagram's
    body runs to its end; `stream` (the framer already cut the message by
    Content-Length) makes a missing Content-Length an empty body.
    """
    if len(data) > max_size:
        raise ParseError("message too large", 513)
    if data[:1] in _CRLF_START:
        data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore CRLFs before the start line
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body_at = data[:end], end + 4
    else:
        head, body_at = split_head(data)
    try:
        message, content_length = _parse_head(head.decode("latin-1"))
    except _Reframe:
        head, body_at = split_head(data)
        try:
            message, content_length = _parse_head(head.decode("latin-1"))
        except _Reframe:  # cannot happen after split_head; never leak it
            raise ParseError("empty line inside the header block") from None
    if content_length is None:
        if not stream and body_at < len(data):
            message.body = data[body_at:]
    elif content_length:
        if content_length > len(data) - body_at:
            raise ParseError("body shorter than Content-Length")
        message.body = data[body_at : body_at + content_length]
    return message


def _parse_head(head: str) -> tuple[Request | Response, int | None]:
    if "\x00" in head:
        _check_nul(head)
    lines = head.split("\n")
    start = lines[0]
    if start[-1:] == "\r":
        start = start[:-1]
    message = _start_line(start)
    headers = message.headers
    try:
        _index_lines(lines, headers)
    except _Refold:
        headers._index.clear()
        try:
            _index_lines(_unfold(lines), headers)
        except _Refold:  # cannot happen after _unfold; never leak it
            raise ParseError("bad continuation line") from None
    index = headers._index

    lengths = index.pop("content-length", None)
    content_length = None
    if lengths is not None:
        value = lengths[0]
        if len(lengths) == 1 and value.isdigit() and value.isascii() and len(value) <= 9:
            content_length = int(value)
        else:
            content_length = _content_length(lengths)
    try:
        call_id, cseq, from_, to, vias = (
            index["call-id"],
            index["cseq"],
            index["from"],
            index["to"],
            index["via"],
        )
    except KeyError as exc:
        raise ParseError(f"missing {CANONICAL_NAMES[exc.args[0]]} header") from None
    if len(call_id) + len(cseq) + len(from_) + len(to) != 4:
        raise ParseError("repeated single-valued header (Call-ID, CSeq, From or To)")
    if not call_id[0]:
        raise ParseError("empty Call-ID")
    # What transaction matching and dialogs read: a message that parses has
    # these valid, so no layer above meets a ParseError for them.
    message._cseq = parsed_cseq = parse_cseq(cseq[0])
    if isinstance(message, Request) and parsed_cseq.method != message.method:
        raise ParseError("CSeq method does not match the request method")
    via = vias[0]
    if "," in via:
        values = split_list(via)
        if not values:
            raise ParseError("empty Via header")
        via = values[0]
    message._top_via = parse_via(via)
    message._from = parse_name_addr(from_[0])
    message._to = parse_name_addr(to[0])
    return message, content_length


def _check_nul(head: str) -> None:
    """A NUL octet is allowed in the header block only as a quoted-pair
    (backslash NUL, RFC 3261 §25.1; RFC 4475 intmeth); anywhere else it
    would truncate the value in any C peer the header is relayed to."""
    at = head.find("\x00")
    while at >= 0:
        if at == 0 or head[at - 1] != "\\":
            raise ParseError("NUL byte in the header block")
        at = head.find("\x00", at + 1)


def _content_length(values: list[str]) -> int:
    value = values[0]
    if not (value.isdigit() and value.isascii()) or len(value) > 9:
        raise ParseError(f"bad Content-Length {value[:20]!r}")
    length = int(value)
    for other in values[1:]:  # repeated: fine if they all agree
        if not (other.isdigit() and other.isascii()) or len(other) > 9:
            raise ParseError(f"bad Content-Length {other[:20]!r}")
        if int(other) != length:
            raise ParseError("conflicting Content-Length headers")
    return length


def _start_line(start: str) -> Request | Response:
    if "\r" in start:
        raise ParseError("bare CR in start line")
    if start[:4] == "SIP/":
        parts = start.split(" ", 2)
        version = parts[0]
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            raise ParseError(f"unsupported version {version[:20]!r}", 505)
        code = parts[1] if len(parts) > 1 else ""
        if len(code) != 3 or not (code.isdigit() and code.isascii()):
            raise ParseError(f"bad status code {code[:10]!r}")
        status = int(code)
        if not 100 <= status <= 699:
            raise ParseError(f"bad status code {code!r}")
        return Response(status, parts[2] if len(parts) == 3 else "", Headers())
    parts = start.split(" ")
    if len(parts) != 3:
        if not start:
            raise ParseError("empty start line")
        raise ParseError("bad request line")
    method, uri, version = parts
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if version[:4].upper() == "SIP/":
            raise ParseError(f"unsupported version {version[:20]!r}", 505)
        raise ParseError("bad request line")
    if not is_token(method):
        raise ParseError(f"bad method {method[:20]!r}")
    if ":" not in uri or "<" in uri or ">" in uri or "\t" in uri:
        raise ParseError(f"bad Request-URI {uri[:80]!r}")
    return Request(method, uri, Headers())


def _index_lines(lines: list[str], headers: Headers) -> None:
    """Header lines (lines[0] is the start line) -> headers._index.

    Lines may end in the CR of CRLF; values are stripped of SP, HTAB and it.
    """
    index = headers._index
    known = KNOWN_NAMES
    it = iter(lines)
    next(it)
    for line in it:
        name, colon, value = line.partition(":")
        key = known.get(name)
        if key is None:
            key = _other_name(name, colon, line, headers)
        value = value.strip(" \t\r")
        if "\r" in value:
            raise ParseError("bare CR in header value")
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)


def _other_name(name: str, colon: str, line: str, headers: Headers) -> str:
    """Key of a header name outside the known table; validates the name."""
    first = line[:1]
    if first == " " or first == "\t":
        raise _Refold
    if not line:
        raise _Reframe
    if line == "\r":
        raise ParseError("bare CR in the header block")
    name = name.rstrip(" \t")
    if not colon or not is_token(name):
        raise ParseError(f"bad header line {line[:60]!r}")
    key = name.lower()
    if len(key) == 1:
        key = COMPACT_FORMS.get(key, key)
    headers._remember(key, name)
    return key


def _unfold(lines: list[str]) -> list[str]:
    """Lines with each continuation (leading SP/HTAB) joined to the line before
    by one SP (RFC 3261 §7.3.1). Pieces are collected and joined once, so a
    header folded ten thousand times costs no more than a long one."""
    out = [lines[0]]
    pieces: list[str] = []  # of the last line of `out`, when it has continuations
    for line in lines[1:]:
        if not line:
            raise _Reframe  # an empty line: the header block ended before
        first = line[:1]
        if first == " " or first == "\t":
            if len(out) == 1:
                raise ParseError("continuation line before the first header")
            rest = line.strip(" \t\r")
            if rest:
                if not pieces:
                    pieces.append(out[-1].rstrip("\r").rstrip(" \t"))
                pieces.append(rest)
        else:
            if pieces:
                out[-1] = " ".join(pieces)
                pieces = []
            out.append(line)
    if pieces:
        out[-1] = " ".join(pieces)
    return out
