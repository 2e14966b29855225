"""Request | Response -> bytes, and responses built from requests (RFC 3261 §8.2.6)."""

from __future__ import annotations

from regswitch.sip.errors import ParseError
from regswitch.sip.message import CANONICAL_NAMES, Headers, Request, Response
from regswitch.sip.parse import split_head

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "Unknown")


# "Name: " for every canonical name: one concatenation per header line.
_PREFIXES = {key: name + ": " for key, name in CANONICAL_NAMES.items()}


def serialise(message: Request | Response) -> bytes:
    """The message on the wire: canonical header names (unknown ones as they
    were spelled), Content-Length computed from the body.

    Header text is latin-1 carrying raw bytes (see message.py); a value holding
    characters beyond latin-1 (real Unicode an application put there) goes
    out as UTF-8.
    """
    if isinstance(message, Request):
        lines = [f"{message.method} {message.uri} {message.version}"]
    else:
        lines = [f"{message.version} {message.status} {message.reason}"]
    prefixes = _PREFIXES
    names = message.headers._names
    index = message.headers._index
    if "content-length" in index:  # set by hand: the body decides
        index = {k: v for k, v in index.items() if k != "content-length"}
    for key, values in index.items():
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = names.get(key, key) + ": "
        if len(values) == 1:
            lines.append(prefix + values[0])
        else:
            for value in values:
                lines.append(prefix + value)
    body = message.body
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    text = "\r\n".join(lines)
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = b"\r\n".join(_encode_line(line) for line in lines)
    return data + body if body else data


def _encode_line(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8", "replace")


def response_for(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
) -> Response:
    """A response carrying the request's Via, From, To (+ `to_tag` when the To
    has none and status > 100), Call-ID and CSeq (RFC 3261 §8.2.6.2), the
    Timestamp on 100 and the Record-Route on 101-299 (§12.1.1)."""
    src = request.headers._index
    to = src["to"][0]
    if to_tag is not None and status > 100 and (request._to or request.to).tag is None:
        to = f"{to};tag={to_tag}"
    index = {
        "via": src["via"][:],
        "from": src["from"][:1],
        "to": [to],
        "call-id": src["call-id"][:1],
        "cseq": src["cseq"][:1],
    }
    if status == 100:
        if "timestamp" in src:
            index["timestamp"] = src["timestamp"][:1]
    elif status < 300 and "record-route" in src:
        index["record-route"] = src["record-route"][:]
    headers = Headers.__new__(Headers)
    headers._index = index
    headers._names = {}
    headers.changes = 0
    return Response(status, reason or reason_phrase(status), headers, body)


_ECHO_FOR_ERRORS = ("via", "from", "to", "call-id", "cseq")


def error_response_for_raw(
    data: bytes, error: ParseError, server: str | None = None
) -> bytes | None:
    """Best-effort response to a request that failed to parse.

    Echoes whatever Via/From/To/Call-ID/CSeq lines can be found; returns None
    when the data is a response, or has no Via to answer along.
    """
    head_bytes, _ = split_head(data.lstrip(b"\r\n"))
    head = head_bytes.decode("latin-1")
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    if not lines or lines[0].startswith("SIP/"):
        return None
    found: dict[str, list[str]] = {}
    compact = {"v": "via", "f": "from", "t": "to", "i": "call-id"}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        key = compact.get(key, key)
        value = value.strip(" \t\r")
        if colon and key in _ECHO_FOR_ERRORS and "\r" not in value and "\n" not in value:
            found.setdefault(key, []).append(value)
    if "via" not in found:
        return None
    status = error.status_hint if 400 <= error.status_hint < 700 else 400
    reason = _phrase_safe(error.reason)
    out = [f"SIP/2.0 {status} {reason}"]
    names = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}
    for key in _ECHO_FOR_ERRORS:
        for value in found.get(key, ()):
            out.append(f"{names[key]}: {value}")
    if server:
        out.append(f"Server: {server}")
    out.append("Content-Length: 0\r\n\r\n")
    return "\r\n".join(out).encode("latin-1", "replace")


def _phrase_safe(reason: str) -> str:
    """A reason phrase on one line, printable, bounded."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in reason)
    return cleaned[:120] or "Bad Request"
