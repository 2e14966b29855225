"""Stream framer: cut a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3).

Sans-IO: bytes in, whole messages out. A message is its header block up to
the blank line plus Content-Length bytes of body; on a stream a missing
Content-Length means an empty body. Between messages the framer also sees the
RFC 5626 §3.5.1 keepalives: a double CRLF is a ping (reported as
`KEEPALIVE_PING` so the transport answers a single CRLF pong) and a lone CRLF
is a pong (or RFC 3261 §7.5 padding before a start line) and is skipped.

Memory is bounded: the framer never holds more than `max_message` bytes plus
one read; a peer that exceeds that gets `FramingError` and loses the stream.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

from regswitch.sip.errors import ParseError

_CRLF2: Final = b"\r\n\r\n"
_LF2: Final = b"\n\n"
_NAME_LONG: Final = b"\ncontent-length"
_NAME_SHORT: Final = b"\nl"
_MAX_DIGITS: Final = 9
_CONTENT_LENGTH: Final = re.compile(rb"\n(?:content-length|l)[ \t]*:([^\r\n]*)", re.IGNORECASE)

_BOUNDARY: Final = 0  # between messages: only CRLFs seen so far
_HEAD: Final = 1  # a start line began at buffer offset 0; no blank line yet
_BODY: Final = 2  # header block complete; waiting for `_end` bytes


class FramingError(ParseError):
    """The stream cannot be framed; the connection must be closed.

    A ParseError so that "the core raises only ParseError" holds; the
    `status_hint` says what limit was hit (513 for size, 400 otherwise), but
    no response can be sent since the message boundary is lost.
    """


class KeepalivePing:
    """Marker: the peer sent an RFC 5626 double-CRLF ping; answer CRLF."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEPALIVE_PING"


KEEPALIVE_PING: Final = KeepalivePing()

Frame: TypeAlias = bytes | KeepalivePing


class StreamFramer:
    """Incremental framer for one connection.

    `feed(data)` returns the complete messages (as `bytes`) and keepalive
    pings (`KEEPALIVE_PING`) in arrival order; consecutive pings within one
    read are reported once, so a peer streaming CRLFs gets at most one pong
    per read. After a FramingError the framer stays failed.
    """

    __slots__ = ("_buf", "_end", "_error", "_max", "_scan", "_state")

    def __init__(self, max_message: int = 65536) -> None:
        if max_message < 16:
            raise ValueError("max_message must be at least 16 bytes")
        self._max = max_message
        self._buf = bytearray()
        self._state = _BOUNDARY
        self._scan = 0  # in _HEAD: where the blank-line search resumes
        self._end = 0  # in _BODY: offset just past the message
        self._error: FramingError | None = None

    @property
    def max_message(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """True between messages (nothing but possibly a partial CRLF held)."""
        return self._state == _BOUNDARY

    def feed(self, data: bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except FramingError as exc:
            self._error = exc
            self._buf = bytearray()
            raise

    def _feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        # Fast path: nothing held, so frame straight out of `data` and only
        # copy what is left over at the end.
        buf: bytes | bytearray
        held = self._buf
        if held:
            held += data
            buf = held
        else:
            buf = data
        n = len(buf)
        pos = 0
        state = self._state
        end = self._end
        while pos < n:
            if state == _BOUNDARY:
                c = buf[pos]
                if c == 13 or c == 10:
                    if buf.startswith(_CRLF2, pos):
                        if not out or out[-1] is not KEEPALIVE_PING:
                            out.append(KEEPALIVE_PING)
                        pos += 4
                    elif buf.startswith(b"\r\n", pos):
                        # A lone CRLF is a pong, unless it is the first half
                        # of a ping split across reads: wait to find out.
                        if pos + 2 == n or (pos + 3 == n and buf[pos + 2] == 13):
                            break
                        pos += 2
                    elif c == 13 and pos + 1 == n:
                        break  # maybe the start of a CRLF
                    else:
                        pos += 1  # stray CR or LF before a start line
                    continue
                state = _HEAD
                self._scan = pos
            if state == _HEAD:
                head_end, body_at = self._find_blank_line(buf, pos)
                if head_end < 0:
                    if n - pos > self._max:
                        raise FramingError(
                            f"header block exceeds {self._max} bytes without a blank line", 513
                        )
                    self._scan = max(pos, n - 3)
                    break
                end = body_at + _content_length(buf, pos, head_end)
                if end - pos > self._max:
                    raise FramingError(f"message of {end - pos} bytes exceeds {self._max}", 513)
                state = _BODY
            if end > n:
                break
            out.append(bytes(buf[pos:end]))
            pos = end
            state = _BOUNDARY
        self._state = state
        if pos == n:
            if held:
                held.clear()
            self._scan = self._end = 0
            return out
        if pos:
            if buf is held:
                del held[:pos]
            else:
                self._buf = bytearray(buf[pos:])
        elif buf is not held:
            self._buf = bytearray(buf)
        self._scan = max(0, self._scan - pos)
        self._end = end - pos
        return out

    def _find_blank_line(self, buf: bytes | bytearray, pos: int) -> tuple[int, int]:
        """(end of the header block, start of the body) or (-1, -1).

        RFC 3261 wants CRLF CRLF; a message whose start line ends in a bare
        LF may end its header block with LF LF (tolerated as parse.py does).
        Deciding by the start line keeps this to one scan per message.
        """
        eol = buf.find(b"\n", pos)
        if eol < 0:
            return -1, -1
        if buf[eol - 1] == 13:
            end = buf.find(_CRLF2, max(self._scan, eol - 1))
            return (end, end + 4) if end >= 0 else (-1, -1)
        end = buf.find(_LF2, max(self._scan, eol))
        return (end, end + 2) if end >= 0 else (-1, -1)


def _content_length(buf: bytes | bytearray, start: int, end: int) -> int:
    """Content-Length of the header block buf[start:end] (0 when absent, as
    on any stream).

    One regex pass over the block (long and compact `l` names, any case)
    instead of splitting every header line: this runs once per message.
    """
    values: list[bytes] = _CONTENT_LENGTH.findall(buf, start, end)
    if not values:
        return 0
    found: int | None = None
    for raw in values:
        value = raw.strip()
        if not value:  # folded onto the next line (RFC 3261 §7.3.1): rare
            return _content_length_folded(bytes(buf[start:end]))
        if not value.isdigit() or len(value) > _MAX_DIGITS:
            raise FramingError(f"bad Content-Length {value[:20]!r}")
        length = int(value)
        if found is not None and found != length:
            raise FramingError("conflicting Content-Length headers")
        found = length
    return found or 0


def _content_length_folded(head: bytes) -> int:
    """Slow path of _content_length that unfolds continuation lines."""
    low = head.lower()
    found: int | None = None
    for name in (_NAME_LONG, _NAME_SHORT):
        i = low.find(name)
        while i >= 0:
            value = _header_value(head, i + len(name))
            if value is not None:
                if not value.isdigit() or len(value) > _MAX_DIGITS:
                    raise FramingError(f"bad Content-Length {value[:20]!r}")
                length = int(value)
                if found is not None and found != length:
                    raise FramingError("conflicting Content-Length headers")
                found = length
            i = low.find(name, i + 1)
    return found or 0


def _header_value(head: bytes, after_name: int) -> bytes | None:
    """The value of the header whose name ends at `after_name`, or None if
    the name continues (e.g. `\\nlocation:` when looking for `\\nl`)."""
    n = len(head)
    i = after_name
    while i < n and head[i] in (32, 9):
        i += 1
    if i >= n or head[i] != 58:  # ':'
        return None
    eol = head.find(b"\n", i)
    if eol < 0:
        return head[i + 1 :].strip()
    value = head[i + 1 : eol].strip()
    # RFC 3261 §7.3.1 line folding: continuation lines start with SP/HTAB.
    while eol + 1 < n and head[eol + 1] in (32, 9):
        nxt = head.find(b"\n", eol + 1)
        stop = n if nxt < 0 else nxt
        value = (value + b" " + head[eol + 1 : stop].strip()).strip()
        if nxt < 0:
            break
        eol = nxt
    return value
