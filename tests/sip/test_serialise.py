"""message -> bytes, responses built from requests, and raw error replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from regswitch.sip.errors import ParseError
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import error_response_for_raw, reason_phrase, response_for, serialise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sip"

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"Record-Route: <sip:proxy.atlanta.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Timestamp: 54\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def invite() -> Request:
    m = parse_message(INVITE)
    assert isinstance(m, Request)
    return m


def same(a: Request | Response, b: Request | Response) -> None:
    assert type(a) is type(b)
    if isinstance(a, Request) and isinstance(b, Request):
        assert (a.method, a.uri, a.version) == (b.method, b.uri, b.version)
    if isinstance(a, Response) and isinstance(b, Response):
        assert (a.status, a.reason, a.version) == (b.status, b.reason, b.version)
    assert a.headers == b.headers
    assert list(a.headers) == list(b.headers)
    assert a.body == b.body


def test_serialise_request_exact() -> None:
    h = Headers()
    h.add("v", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1")
    h.add("f", "<sip:a@example.com>;tag=1")
    h.add("t", "<sip:b@example.com>")
    h.add("i", "cid")
    h.add("CSEQ", "1 OPTIONS")
    h.add("X-Odd-Name", "kept")
    h.add("x-odd-name", "second")
    h.add("Content-Length", "99")  # ignored: computed from the body
    assert serialise(Request("OPTIONS", "sip:b@example.com", h, b"hello")) == (
        b"OPTIONS sip:b@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:a@example.com>;tag=1\r\n"
        b"To: <sip:b@example.com>\r\n"
        b"Call-ID: cid\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"X-Odd-Name: kept\r\n"
        b"X-Odd-Name: second\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"hello"
    )


def test_serialise_content_length_from_body() -> None:
    h = Headers()
    h.add("Call-ID", "x")
    assert (
        serialise(Response(200, "OK", h))
        == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
    )
    body = b"\x00\xff binary \r\n\r\n"
    data = serialise(Response(200, "OK", h, body))
    assert data == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 14\r\n\r\n" + body


def test_parsed_content_length_not_duplicated() -> None:
    data = serialise(invite())
    assert data.count(b"Content-Length") == 1 and data.endswith(b"Content-Length: 4\r\n\r\nv=0\n")


def test_unicode_values_go_out_as_utf8() -> None:
    h = Headers()
    h.add("Warning", '399 regswitch "d\u00e9j\u00e0 \u2013 registered"')
    data = serialise(Response(403, "Forbidden", h))
    assert '"d\u00e9j\u00e0 \u2013 registered"'.encode() in data
    # latin-1 text (raw bytes from the wire) goes out byte for byte
    h = Headers()
    h.add("Subject", "caf\xc3\xa9")
    assert b"Subject: caf\xc3\xa9\r\n" in serialise(Response(200, "OK", h))


@pytest.mark.parametrize(
    "path",
    sorted((FIXTURES / "rfc4475" / "valid").glob("*.sip"))
    + sorted((FIXTURES / "phones").glob("*.sip")),
    ids=lambda p: p.stem,
)
def test_round_trip_fixtures(path: Path) -> None:
    first = parse_message(path.read_bytes())
    data = serialise(first)
    second = parse_message(data)
    same(first, second)
    assert serialise(second) == data


def test_response_for_copies_the_right_headers() -> None:
    req = invite()
    resp = response_for(req, 180, to_tag="b0b")
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("via") == req.headers.get_all("via")
    assert resp.headers.get("from") == req.headers.get("from")
    assert resp.headers.get("to") == "Bob <sip:bob@biloxi.example.com>;tag=b0b"
    assert resp.to.tag == "b0b"
    assert resp.call_id == "a84b4c76e66710" and resp.cseq == req.cseq
    assert resp.headers.get_all("record-route") == ["<sip:proxy.atlanta.example.com;lr>"]
    assert "contact" not in resp.headers and "max-forwards" not in resp.headers
    assert "timestamp" not in resp.headers
    # the response can be parsed back
    same(resp, parse_message(serialise(resp)))


def test_response_for_100_and_errors() -> None:
    req = invite()
    trying = response_for(req, 100, to_tag="never")
    assert trying.to.tag is None  # no tag on 100
    assert trying.headers.get("timestamp") == "54"
    assert "record-route" not in trying.headers
    busy = response_for(req, 486, to_tag="t")
    assert busy.reason == "Busy Here" and busy.to.tag == "t" and "record-route" not in busy.headers
    custom = response_for(req, 403, "Registration Replace Disabled")
    assert custom.reason == "Registration Replace Disabled" and custom.to.tag is None


def test_response_for_keeps_existing_to_tag() -> None:
    data = INVITE.replace(
        b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:bob@biloxi.example.com>;tag=old"
    )
    req = parse_message(data)
    assert isinstance(req, Request)
    assert response_for(req, 200, to_tag="new").to.tag == "old"


def test_response_for_does_not_share_lists() -> None:
    req = invite()
    resp = response_for(req, 200, body=b"v=0\r\n")
    resp.headers.insert_first("Via", "SIP/2.0/UDP x;branch=z9hG4bKx")
    resp.headers.add("Contact", "<sip:b@192.0.2.2>")
    assert len(req.headers.get_all("via")) == 2 and resp.body == b"v=0\r\n"


def test_reason_phrase() -> None:
    assert reason_phrase(200) == "OK" and reason_phrase(423) == "Interval Too Brief"
    assert reason_phrase(299) == "OK" and reason_phrase(499) == "Bad Request"
    assert reason_phrase(999) == "Unknown"


def test_error_response_for_raw_echoes() -> None:
    data = (
        b"INVITE sip:b@example.com SIP/7.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2\r\n"
        b"f: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\ni: cid\r\nCSeq: 1 INVITE\r\n"
        b"Evil: x\r\n\r\n"
    )
    with pytest.raises(ParseError) as info:
        parse_message(data)
    out = error_response_for_raw(data, info.value, server="regswitch")
    assert out is not None
    resp = parse_message(out)
    assert isinstance(resp, Response) and resp.status == 505
    assert [v.host for v in resp.vias] == ["192.0.2.1", "192.0.2.2"]
    assert (
        resp.call_id == "cid"
        and resp.from_.tag == "1"
        and resp.headers.get("server") == "regswitch"
    )
    assert "evil" not in resp.headers


def test_error_response_for_raw_none_cases() -> None:
    err = ParseError("bad")
    assert error_response_for_raw(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", err) is None
    assert error_response_for_raw(b"INVITE sip:x SIP/2.0\r\nFrom: x\r\n\r\n", err) is None
    assert error_response_for_raw(b"", err) is None


def test_error_response_reason_is_sanitised() -> None:
    out = error_response_for_raw(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
        ParseError("bad \r\nInjected: yes \x00" + "x" * 300),
    )
    assert out is not None
    start = out.split(b"\r\n", 1)[0]
    assert start.startswith(b"SIP/2.0 400 bad ??Injected: yes ?") and len(start) < 140
    assert b"\r\nInjected" not in out


def test_error_response_drops_values_with_line_breaks() -> None:
    out = error_response_for_raw(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Call-ID: a\rInjected: 1\r\n\r\n",
        ParseError("bad"),
    )
    assert out is not None and b"Injected" not in out
