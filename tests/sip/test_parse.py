"""bytes -> message (RFC 3261 §7, §19, §20, §25), RFC 4475 torture messages and
real phones' REGISTERs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from regswitch.sip.errors import LocalProtocolError, ParseError
from regswitch.sip.headers import parse_auth
from regswitch.sip.message import Headers, Message, Request, Response
from regswitch.sip.parse import parse_message, split_head

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sip"
RFC4475 = FIXTURES / "rfc4475"
PHONES = FIXTURES / "phones"


def msg(*lines: str, body: bytes = b"", crlf: str = "\r\n") -> bytes:
    return (crlf.join(lines) + crlf + crlf).encode("latin-1") + body


BASE = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc",
    "From: <sip:alice@example.com>;tag=1",
    "To: <sip:bob@example.com>",
    "Call-ID: c1@192.0.2.1",
)


def request(*extra: str, method: str = "OPTIONS", body: bytes = b"") -> Request:
    m = parse_message(
        msg(f"{method} sip:bob@example.com SIP/2.0", *BASE, f"CSeq: 1 {method}", *extra, body=body)
    )
    assert isinstance(m, Request)
    return m


def load(path: Path) -> bytes:
    return path.read_bytes()


# --- start line -------------------------------------------------------------------


def test_request_line() -> None:
    m = request("Max-Forwards: 70")
    assert (m.method, m.uri, m.version) == ("OPTIONS", "sip:bob@example.com", "SIP/2.0")
    assert m.ruri.user == "bob" and m.ruri.host == "example.com"
    assert m.max_forwards == 70


def test_response_line() -> None:
    m = parse_message(msg("SIP/2.0 180 Ringing", *BASE, "CSeq: 1 INVITE"))
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (180, "Ringing")
    m = parse_message(msg("SIP/2.0 404", *BASE, "CSeq: 1 INVITE"))  # no reason phrase at all
    assert isinstance(m, Response) and (m.status, m.reason) == (404, "")


@pytest.mark.parametrize(
    "start",
    [
        "OPTIONS sip:bob@example.com SIP/3.0",
        "OPTIONS sip:bob@example.com SIP/1.0",
        "SIP/7.0 200 OK",
    ],
)
def test_wrong_version_is_505(start: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(msg(start, *BASE, "CSeq: 1 OPTIONS"))
    assert info.value.status_hint == 505


def test_version_case_insensitive() -> None:
    assert isinstance(
        parse_message(msg("OPTIONS sip:b@example.com sip/2.0", *BASE, "CSeq: 1 OPTIONS")), Request
    )


@pytest.mark.parametrize(
    "start",
    [
        "",
        "OPTIONS",
        "OPTIONS sip:bob@example.com",
        "OPTIONS sip:bob@example.com HTTP/1.1",
        "OPTIONS  sip:bob@example.com SIP/2.0",
        "OPTIONS sip:bob@example.com SIP/2.0 ",
        "OPTIONS <sip:bob@example.com> SIP/2.0",
        "OPTIONS bob SIP/2.0",
        "OPT:IONS sip:bob@example.com SIP/2.0",
        "OPTIONS\tsip:bob@example.com\tSIP/2.0",
        "SIP/2.0 20 OK",
        "SIP/2.0 2000 OK",
        "SIP/2.0 099 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 abc OK",
        "SIP/2.0 \u00b200 OK",
        "SIP/2.0",
    ],
)
def test_bad_start_line(start: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(msg(start, *BASE, "CSeq: 1 OPTIONS"))
    assert info.value.status_hint == 400


def test_leading_crlfs_ignored() -> None:
    m = parse_message(
        b"\r\n\r\n" + msg("OPTIONS sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS")
    )
    assert isinstance(m, Request)


# --- header names ------------------------------------------------------------------


def test_header_names_case_insensitive() -> None:
    m = parse_message(
        msg(
            "OPTIONS sip:b@example.com SIP/2.0",
            "vIA: SIP/2.0/UDP h;branch=z9hG4bK1",
            "FROM: <sip:a@example.com>;tag=1",
            "to: <sip:b@example.com>",
            "CALL-id: x",
            "cseq: 1 OPTIONS",
            "max-FORWARDS: 5",
            "X-Custom-Thing: yes",
        )
    )
    assert m.top_via.branch == "z9hG4bK1" and m.call_id == "x" and m.max_forwards == 5
    assert m.headers.get("x-custom-thing") == "yes" == m.headers.get("X-CUSTOM-THING")
    assert ("X-Custom-Thing", "yes") in list(m.headers)  # unknown names keep their spelling
    assert ("Call-ID", "x") in list(m.headers)  # known names go out canonical


@pytest.mark.parametrize(
    ("compact", "full", "value"),
    [
        ("v", "Via", "SIP/2.0/UDP h2;branch=z9hG4bK2"),
        ("f", "From", "<sip:a@example.com>;tag=9"),
        ("t", "To", "<sip:b@example.com>"),
        ("i", "Call-ID", "compact@h"),
        ("m", "Contact", "<sip:a@192.0.2.9>"),
        ("l", "Content-Length", "0"),
        ("c", "Content-Type", "application/sdp"),
        ("k", "Supported", "path, outbound"),
        ("s", "Subject", "hello"),
        ("e", "Content-Encoding", "gzip"),
        ("o", "Event", "reg"),
        ("u", "Allow-Events", "presence"),
        ("r", "Refer-To", "<sip:c@example.com>"),
        ("b", "Referred-By", "<sip:a@example.com>"),
        ("x", "Session-Expires", "1800"),
        ("y", "Identity", '"abc"'),
        ("a", "Accept-Contact", "*;audio"),
        ("j", "Reject-Contact", "*;video"),
        ("d", "Request-Disposition", "proxy"),
        ("n", "Identity-Info", "<https://example.com/cert>"),
    ],
)
def test_compact_forms(compact: str, full: str, value: str) -> None:
    base = {"via": BASE[0], "from": BASE[1], "to": BASE[2], "call-id": BASE[3]}
    base[full.lower()] = f"{compact}: {value}"
    lines = [line for key, line in base.items()]
    if full.lower() not in base or full.lower() not in ("via", "from", "to", "call-id"):
        lines.append(f"{compact.upper()}: {value}" if compact in "lx" else f"{compact}: {value}")
    m = parse_message(msg("OPTIONS sip:b@example.com SIP/2.0", *lines, "CSeq: 1 OPTIONS"))
    if full == "Content-Length":
        assert full not in m.headers and m.body == b""
        return
    assert m.headers.get(full) == value
    assert m.headers.get(compact) == value
    assert (full, value) in list(m.headers)


def test_header_name_with_space_before_colon() -> None:
    m = request("Max-Forwards   : 7", "Subject\t: hi")
    assert m.max_forwards == 7 and m.headers.get("subject") == "hi"


@pytest.mark.parametrize(
    "line",
    ["No colon here", ": value", "Bad Name: x", "Bad(Name): x", "Na\u00efve: x", "Bad\x00: x"],
)
def test_bad_header_lines(line: str) -> None:
    with pytest.raises(ParseError):
        request(line)


def test_empty_value_allowed() -> None:
    m = request("Subject:", "Organization:   ")
    assert m.headers.get("subject") == "" and m.headers.get("organization") == ""


# --- multi-value headers -------------------------------------------------------------


def test_via_list_and_lines_in_order() -> None:
    m = parse_message(
        msg(
            "OPTIONS sip:b@example.com SIP/2.0",
            "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bK1, "
            "SIP/2.0/TCP second.example.com;branch=z9hG4bK2",
            "v: SIP/2.0/TLS third.example.com;branch=z9hG4bK3",
            *BASE[1:],
            "CSeq: 1 OPTIONS",
        )
    )
    assert [v.host for v in m.vias] == [
        "first.example.com",
        "second.example.com",
        "third.example.com",
    ]
    assert m.top_via.host == "first.example.com" and m.top_via.branch == "z9hG4bK1"
    assert len(m.headers.get_all("via")) == 2  # lines, not split
    assert len(m.headers.values("via")) == 3


@pytest.mark.parametrize("name", ["Route", "Record-Route", "Path", "Service-Route"])
def test_route_lists(name: str) -> None:
    m = request(
        f'{name}: <sip:p1.example.com;lr>, "Proxy, Two" <sip:p2.example.com;lr>',
        f"{name}: <sip:p3;lr>",
    )
    assert m.headers.values(name) == [
        "<sip:p1.example.com;lr>",
        '"Proxy, Two" <sip:p2.example.com;lr>',
        "<sip:p3;lr>",
    ]


@pytest.mark.parametrize("name", ["Allow", "Supported", "Require", "Accept", "Allow-Events"])
def test_token_lists(name: str) -> None:
    m = request(f"{name}: a, b,c", f"{name}: d")
    assert m.headers.values(name) == ["a", "b", "c", "d"]


def test_non_list_headers_not_split() -> None:
    m = request(
        "Subject: one, two",
        "User-Agent: Foo/1.0 (a, b)",
        'Authorization: Digest realm="a, b", nonce="n"',
    )
    assert m.headers.values("subject") == ["one, two"]
    assert m.headers.values("user-agent") == ["Foo/1.0 (a, b)"]
    assert parse_auth(m.headers.get("authorization") or "")[1]["realm"] == "a, b"


def test_contacts_list_with_quotes_and_brackets() -> None:
    m = request(
        'Contact: "Smith, J" <sip:j@192.0.2.5;transport=tcp>;expires=60, '
        "<sip:k@[2001:db8::5]:5070>;q=0.5",
        'm: <sip:p@10.0.0.45>;methods="INVITE, ACK, BYE";+sip.instance="<urn:uuid:1>"',
    )
    contacts = m.contacts
    assert [c.uri.host for c in contacts] == ["192.0.2.5", "[2001:db8::5]", "10.0.0.45"]
    assert contacts[0].display_name == "Smith, J" and contacts[0].expires == 60
    assert contacts[1].uri.port == 5070 and contacts[1].q == 0.5
    assert (
        contacts[2].params["methods"] == '"INVITE, ACK, BYE"'
        and contacts[2].instance == "<urn:uuid:1>"
    )


def test_typed_views_follow_edits_of_the_headers() -> None:
    m = request("Contact: <sip:alice@192.0.2.1>")
    assert (m.top_via.host, m.cseq.seq, m.from_.tag, m.to.tag) == ("192.0.2.1", 1, "1", None)
    assert m.contacts[0].uri_text == "sip:alice@192.0.2.1"
    m.headers.insert_first("Via", "SIP/2.0/TCP 198.51.100.7;branch=z9hG4bKnew")
    m.headers.set("CSeq", "7 OPTIONS")
    m.headers.set("To", "<sip:bob@example.com>;tag=b")
    m.headers.remove("From")
    m.headers.add("Contact", "<sip:alice@203.0.113.9>")
    assert (m.top_via.host, m.top_via.transport, m.cseq.seq, m.to.tag) == (
        "198.51.100.7",
        "TCP",
        7,
        "b",
    )
    assert [c.uri_text for c in m.contacts] == ["sip:alice@192.0.2.1", "sip:alice@203.0.113.9"]
    with pytest.raises(ParseError, match="missing From"):
        _ = m.from_


def test_contact_star() -> None:
    m = request("Contact: *", "Expires: 0", method="REGISTER")
    assert m.contact_is_star and m.contacts == [] and m.expires == 0
    m = request("Contact:  * ", method="REGISTER")
    assert m.contact_is_star
    m = request(method="REGISTER")
    assert not m.contact_is_star and m.contacts == []


def test_contact_star_with_others_raises_when_read() -> None:
    m = request("Contact: *, <sip:a@b>", method="REGISTER")
    with pytest.raises(ParseError):
        _ = m.contacts


# --- folding, quoting, escapes -------------------------------------------------------


def test_folded_lines() -> None:
    m = parse_message(
        b"OPTIONS sip:b@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP\r\n   192.0.2.1\r\n\t;branch=z9hG4bK9\r\n"
        b"From: <sip:a@example.com>\r\n ;tag=77\r\n"
        b"To:\r\n <sip:b@example.com>\r\n"
        b"Call-ID: fold@h\r\n"
        b"CSeq: 3\r\n OPTIONS\r\n"
        b"Subject: first part\r\n second part\r\n"
        b"Content-Length:\r\n 0\r\n\r\n"
    )
    assert m.top_via.host == "192.0.2.1" and m.top_via.branch == "z9hG4bK9"
    assert m.from_.tag == "77" and m.to.uri.user == "b"
    assert m.cseq.seq == 3 and m.headers.get("subject") == "first part second part"


def test_continuation_before_first_header() -> None:
    with pytest.raises(ParseError):
        parse_message(
            b"OPTIONS sip:b@example.com SIP/2.0\r\n folded: x\r\n" + msg(*BASE, "CSeq: 1 OPTIONS")
        )


def test_quoted_display_with_escapes() -> None:
    m = parse_message(
        msg(
            "OPTIONS sip:b@example.com SIP/2.0",
            BASE[0],
            'From: "Say \\"hi\\" \\\\ <sip:fake@x>" <sip:a@example.com>;tag=1',
            *BASE[2:],
            "CSeq: 1 OPTIONS",
        )
    )
    assert m.from_.display_name == 'Say "hi" \\ <sip:fake@x>' and m.from_.uri.user == "a"


def test_ipv6_everywhere() -> None:
    m = parse_message(
        msg(
            "REGISTER sip:[2001:db8::10] SIP/2.0",
            "Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6;received=[2001:db8::99]",
            "From: <sip:alice@[2001:db8::10]>;tag=6",
            "To: <sip:alice@[2001:db8::10]>",
            "Call-ID: v6",
            "CSeq: 1 REGISTER",
            "Contact: <sip:alice@[2001:db8::1]:5060;transport=udp>",
        )
    )
    assert isinstance(m, Request)
    assert m.ruri.host == "[2001:db8::10]" and m.ruri.port is None
    assert (m.top_via.host, m.top_via.port) == ("[2001:db8::1]", 5060)
    assert (m.contacts[0].uri.host, m.contacts[0].uri.port) == ("[2001:db8::1]", 5060)


def test_utf8_survives_as_latin1_text() -> None:
    name = "J\u00fcrgen \u5927".encode()
    data = msg("OPTIONS sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS").replace(
        b"From: <", b'From: "' + name + b'" <'
    )
    m = parse_message(data)
    assert m.from_.display_name is not None
    assert m.from_.display_name.encode("latin-1").decode("utf-8") == "J\u00fcrgen \u5927"


# --- line ends ------------------------------------------------------------------------


def test_bare_lf_message() -> None:
    m = parse_message(msg("OPTIONS sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS", crlf="\n"))
    assert isinstance(m, Request) and m.call_id == "c1@192.0.2.1" and m.body == b""


def test_bare_lf_with_body_containing_crlf_crlf() -> None:
    body = b"part one\r\n\r\npart two"
    data = msg(
        "MESSAGE sip:b@example.com SIP/2.0",
        *BASE,
        "CSeq: 1 MESSAGE",
        f"Content-Length: {len(body)}",
        crlf="\n",
        body=body,
    )
    m = parse_message(data)
    assert m.body == body and m.headers.get("via") == BASE[0][5:]


def test_bare_cr_in_header_rejected() -> None:
    with pytest.raises(ParseError):
        request("Subject: evil\rInjected: yes")


def test_split_head() -> None:
    assert split_head(b"A\r\nB\r\n\r\nbody") == (b"A\r\nB", 8)
    assert split_head(b"A\nB\n\nbody") == (b"A\nB", 5)
    assert split_head(b"A\nB\r\n\r\nbody") == (b"A\nB", 7)
    assert split_head(b"A\r\nB\r\n") == (b"A\r\nB", 6)


# --- bodies -----------------------------------------------------------------------


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


def test_body_by_content_length() -> None:
    m = request(
        f"Content-Length: {len(SDP)}", "Content-Type: application/sdp", method="INVITE", body=SDP
    )
    assert m.body == SDP and m.content_type == "application/sdp"
    assert "content-length" not in m.headers  # written from the body on the way out


def test_longer_datagram_truncated_to_content_length() -> None:
    m = request(
        f"Content-Length: {len(SDP)}", method="INVITE", body=SDP + b"garbage after the body"
    )
    assert m.body == SDP


def test_shorter_body_is_an_error() -> None:
    with pytest.raises(ParseError):
        request(f"Content-Length: {len(SDP) + 1}", method="INVITE", body=SDP)
    with pytest.raises(ParseError):
        parse_message(
            msg("INVITE sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 INVITE", "Content-Length: 5")[
                :-4
            ]
        )


def test_no_content_length() -> None:
    data = msg("INVITE sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 INVITE", body=SDP)
    assert parse_message(data).body == SDP  # a datagram: the body runs to its end
    assert parse_message(data, stream=True).body == b""  # the framer cut it: no body


def test_stream_with_content_length() -> None:
    data = msg(
        "INVITE sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 INVITE", f"l: {len(SDP)}", body=SDP
    )
    assert parse_message(data, stream=True).body == SDP


def test_binary_body_untouched() -> None:
    body = bytes(range(256)) * 3
    m = request(f"Content-Length: {len(body)}", method="MESSAGE", body=body)
    assert m.body == body


@pytest.mark.parametrize("value", ["-1", "abc", "1 2", "\u00b2", "9999999999", ""])
def test_bad_content_length(value: str) -> None:
    with pytest.raises(ParseError):
        request(f"Content-Length: {value}")


def test_repeated_content_length() -> None:
    assert request("Content-Length: 0", "l: 0").body == b""
    assert request("Content-Length: 05", "l: 5", body=b"hello").body == b"hello"
    with pytest.raises(ParseError):
        request("Content-Length: 10", "l: 1", body=b"0123456789")
    with pytest.raises(ParseError):
        request("Content-Length: 1", "l: x", body=b"0")
    with pytest.raises(ParseError):
        request("Content-Length: 0", "Content-Length: 1", body=b"x")


def test_message_without_empty_line() -> None:
    data = "\r\n".join(("OPTIONS sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS")).encode()
    m = parse_message(data)
    assert m.call_id == "c1@192.0.2.1" and m.body == b""


# --- limits and mandatory headers ---------------------------------------------------------


def test_too_large_is_513() -> None:
    data = msg("OPTIONS sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS")
    with pytest.raises(ParseError) as info:
        parse_message(data + b"x" * 70000)
    assert info.value.status_hint == 513
    with pytest.raises(ParseError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert info.value.status_hint == 513
    assert parse_message(data, max_size=len(data)).call_id == "c1@192.0.2.1"


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header(missing: str) -> None:
    lines = [line for line in (*BASE, "CSeq: 1 OPTIONS") if not line.startswith(missing + ":")]
    with pytest.raises(ParseError) as info:
        parse_message(msg("OPTIONS sip:b@example.com SIP/2.0", *lines))
    assert missing in info.value.reason


@pytest.mark.parametrize(
    "repeated", ["From: <sip:x@y>;tag=2", "To: <sip:x@y>", "Call-ID: other", "CSeq: 2 OPTIONS"]
)
def test_repeated_single_header(repeated: str) -> None:
    with pytest.raises(ParseError):
        request(repeated)


def test_empty_call_id() -> None:
    with pytest.raises(ParseError):
        parse_message(
            msg("OPTIONS sip:b@example.com SIP/2.0", *BASE[:3], "Call-ID:", "CSeq: 1 OPTIONS")
        )


def test_cseq_method_must_match() -> None:
    with pytest.raises(ParseError):
        parse_message(msg("OPTIONS sip:b@example.com SIP/2.0", *BASE, "CSeq: 1 INVITE"))


@pytest.mark.parametrize(
    ("replace", "by"),
    [
        ("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc", "Via: SIP/2.0/UDP 192.0.2.1:99999"),
        (
            "From: <sip:alice@example.com>;tag=1",
            'From: "unterminated <sip:alice@example.com>;tag=1',
        ),
        ("To: <sip:bob@example.com>", "To: < sip:bob@example.com >"),
    ],
)
def test_eagerly_checked_headers(replace: str, by: str) -> None:
    lines = [by if line == replace else line for line in BASE]
    for start, cseq in (
        ("OPTIONS sip:b@example.com SIP/2.0", "CSeq: 1 OPTIONS"),
        ("SIP/2.0 200 OK", "CSeq: 1 X"),
    ):
        with pytest.raises(ParseError):
            parse_message(msg(start, *lines, cseq))


def test_response_that_cannot_be_parsed() -> None:
    for data in (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
        b"SIP/2.0 200 OK\r\n" + msg(*BASE, "CSeq: banana"),
        b"SIP/2.0 OK\r\n" + msg(*BASE, "CSeq: 1 INVITE"),
        b"SIP/2.0 200 OK",
        b"",
        b"\r\n\r\n",
    ):
        with pytest.raises(ParseError):
            parse_message(data)


# --- lazily parsed headers raise when read ----------------------------------------


@pytest.mark.parametrize(
    ("line", "read"),
    [
        ("Max-Forwards: 300", lambda m: m.max_forwards),
        ("Max-Forwards: -1", lambda m: m.max_forwards),
        ("Expires: soon", lambda m: m.expires),
        ("Contact: <sip:a@b", lambda m: m.contacts),
        ("Contact: <sip:a@b>;expires=x", lambda m: m.contacts[0].expires),
        ("Contact: <sip:a@exa mple.com>", lambda m: m.contacts[0].uri),
        ("Contact: <http://example.com>", lambda m: m.contacts[0].uri),
        ("Via: SIP/2.0/UDP bad host", lambda m: m.vias),
    ],
)
def test_lazy_header_raises_when_read(line: str, read: Callable[[Message], object]) -> None:
    m = request(line)
    with pytest.raises(ParseError):
        read(m)


def test_lazy_request_uri() -> None:
    m = parse_message(msg("OPTIONS sip:bob@exa%mple.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS"))
    assert isinstance(m, Request)
    with pytest.raises(ParseError):
        _ = m.ruri
    m = parse_message(msg("OPTIONS mailto:bob@example.com SIP/2.0", *BASE, "CSeq: 1 OPTIONS"))
    assert isinstance(m, Request)
    with pytest.raises(ParseError) as info:
        _ = m.ruri
    assert info.value.status_hint == 416


# --- Headers API ------------------------------------------------------------------


def test_headers_api() -> None:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP a;branch=z9hG4bK1")
    h.add("v", "SIP/2.0/UDP b;branch=z9hG4bK2")
    h.insert_first("Via", "SIP/2.0/UDP c;branch=z9hG4bK0")
    h.add("X-Thing", "1")
    h.set("Max-Forwards", "70")
    h.set("max-forwards", "69")
    assert h.get("VIA") == "SIP/2.0/UDP c;branch=z9hG4bK0"
    assert h.get_all("via") == [
        "SIP/2.0/UDP c;branch=z9hG4bK0",
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
    ]
    assert h.get("missing") is None and h.get("missing", "d") == "d" and h.get_all("missing") == []
    assert "x-thing" in h and "Max-Forwards" in h and "nope" not in h and 3 not in h
    assert list(h) == [
        ("Via", "SIP/2.0/UDP c;branch=z9hG4bK0"),
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
        ("Via", "SIP/2.0/UDP b;branch=z9hG4bK2"),
        ("X-Thing", "1"),
        ("Max-Forwards", "69"),
    ]
    assert len(h) == 5
    copy = h.copy()
    copy.remove("via")
    assert "via" in h and "via" not in copy and copy != h
    h.insert_first("Record-Route", "<sip:p;lr>")
    assert next(iter(h)) == ("Record-Route", "<sip:p;lr>")
    assert h._index["record-route"] == ["<sip:p;lr>"]


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
def test_headers_refuse_line_breaks(value: str) -> None:
    h = Headers()
    for op in (h.add, h.set, h.insert_first):
        with pytest.raises(LocalProtocolError):
            op("Subject", value)


def test_typed_views_are_cached() -> None:
    m = request("Contact: <sip:a@192.0.2.4>")
    assert m.top_via is m.top_via and m.from_ is m.from_ and m.to is m.to
    assert m.cseq is m.cseq and m.contacts is m.contacts


# --- RFC 4475 torture messages ---------------------------------------------------


VALID = sorted(p.stem for p in (RFC4475 / "valid").glob("*.sip"))
INVALID = sorted(p.stem for p in (RFC4475 / "invalid").glob("*.sip"))


def test_fixture_sets_complete() -> None:
    assert len(VALID) == 28 and len(INVALID) == 23


def read_everything(m: Request | Response) -> None:
    """Every typed accessor: a valid message must survive them all (URIs with
    an unknown scheme aside, which raise 416 by design)."""
    _ = (m.top_via, m.vias, m.from_, m.to, m.cseq, m.contacts, m.expires, m.max_forwards, m.call_id)
    for c in m.contacts:
        _ = (c.expires, c.q, c.instance)


@pytest.mark.parametrize("name", VALID)
def test_rfc4475_valid(name: str) -> None:
    m = parse_message(load(RFC4475 / "valid" / f"{name}.sip"))
    read_everything(m)


@pytest.mark.parametrize("name", INVALID)
def test_rfc4475_invalid(name: str) -> None:
    data = load(RFC4475 / "invalid" / f"{name}.sip")
    try:
        m = parse_message(data)
    except ParseError as exc:
        assert exc.status_hint == (505 if name == "badvers" else 400), exc.reason
        return
    # lazily parsed parts: the fault shows when they are read
    reads: dict[str, Callable[[Request | Response], object]] = {
        "regbadct": lambda m: m.contacts,
        "escruri": lambda m: m.ruri if isinstance(m, Request) else None,
        "x-mfneg": lambda m: m.max_forwards,
    }
    assert name in reads, f"{name} parsed without error"
    with pytest.raises(ParseError):
        reads[name](m)


def test_nul_only_as_a_quoted_pair() -> None:
    with pytest.raises(ParseError, match="NUL"):
        parse_message(load(RFC4475 / "invalid" / "x-nulhdr.sip"))
    for line in ("Subject: \x00", "X-Odd: a\x00", "Max-Forwards: 7\x000"):
        with pytest.raises(ParseError, match="NUL"):
            request(line)
    assert request('Subject: "quoted \\\x00 pair"').headers.get("subject") == (
        '"quoted \\\x00 pair"'
    )


def test_wsinv() -> None:
    m = parse_message(load(RFC4475 / "valid" / "wsinv.sip"))
    assert isinstance(m, Request)
    assert m.method == "INVITE" and m.ruri.params == {"unknownparam": None}
    assert m.to.uri.user == "vivekg" and m.to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.max_forwards == 68 and m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert (
        m.headers.get("route") == "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    )
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert (
        contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
        and contact.q == 0.33
    )
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


def test_intmeth() -> None:
    m = parse_message(load(RFC4475 / "valid" / "intmeth.sip"))
    assert isinstance(m, Request)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~" == m.cseq.method
    assert m.ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    value = m.headers.get("extensionHeader-!.%*+_`'~")
    assert (
        value is not None and value.encode("latin-1").decode("utf-8") == "\ufeff\u5927\u505c\u96fb"
    )


def test_escapes() -> None:
    m = parse_message(load(RFC4475 / "valid" / "esc01.sip"))
    assert isinstance(m, Request)
    assert m.ruri.user == "sips%3Auser%40example.com" and m.ruri.host == "example.net"
    assert m.to.uri.aor == "sip:user@example.com"
    assert m.contacts[0].uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    m = parse_message(load(RFC4475 / "valid" / "esc02.sip"))
    assert isinstance(m, Request) and m.method == "RE%47IST%45R"
    # "C%6Fntact" is another header, not Contact
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    m = parse_message(load(RFC4475 / "valid" / "escnull.sip"))
    assert [c.uri.user for c in m.contacts] == ["%00", "%00%00"]


def test_longreq() -> None:
    m = parse_message(load(RFC4475 / "valid" / "longreq.sip"))
    vias = m.vias
    assert (
        len(vias) == 34
        and vias[0].host == "sip33.example.com"
        and vias[-1].host == "host.example.com"
    )
    assert m.to.uri.port == 6000 and len(m.to.uri.params) == 3
    assert m.from_.tag is not None and len(m.from_.tag) > 140


def test_dblreq_keeps_only_the_first() -> None:
    m = parse_message(load(RFC4475 / "valid" / "dblreq.sip"))
    assert isinstance(m, Request) and m.method == "REGISTER" and m.body == b""


def test_semiuri_transports_mpart_unreason_noreason() -> None:
    m = parse_message(load(RFC4475 / "valid" / "semiuri.sip"))
    assert len(m.headers.values("accept")) == 6
    m = parse_message(load(RFC4475 / "valid" / "transports.sip"))
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    m = parse_message(load(RFC4475 / "valid" / "mpart01.sip"))
    assert (
        len(m.body) == int(m.headers._index.get("content-length", ["0"])[0] or 0)
        or len(m.body) == 727
    )
    m = parse_message(load(RFC4475 / "valid" / "unreason.sip"))
    assert isinstance(m, Response) and m.status == 200
    assert (
        m.reason.encode("latin-1")
        .decode("utf-8")
        .endswith("\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    )
    m = parse_message(load(RFC4475 / "valid" / "noreason.sip"))
    assert isinstance(m, Response) and (m.status, m.reason) == (100, "")


def test_application_layer_cases() -> None:
    for name in ("unkscm", "novelsc"):
        m = parse_message(load(RFC4475 / "valid" / f"{name}.sip"))
        assert isinstance(m, Request)
        with pytest.raises(ParseError) as info:
            _ = m.ruri
        assert info.value.status_hint == 416
    m = parse_message(load(RFC4475 / "valid" / "unksm2.sip"))
    with pytest.raises(ParseError):
        _ = m.to.uri
    with pytest.raises(ParseError):
        _ = m.from_.uri
    with pytest.raises(ParseError):
        _ = m.contacts[0].uri
    m = parse_message(load(RFC4475 / "valid" / "regaut01.sip"))
    assert parse_auth(m.headers.get("authorization") or "")[0] == "nooneknowsthisscheme"
    m = parse_message(load(RFC4475 / "valid" / "cparam01.sip"))
    assert m.contacts[0].params == {"unknownparam": None} and m.contacts[0].uri.params == {}
    m = parse_message(load(RFC4475 / "valid" / "cparam02.sip"))
    assert m.contacts[0].params == {} and m.contacts[0].uri.params == {"unknownparam": None}
    m = parse_message(load(RFC4475 / "valid" / "regescrt.sip"))
    assert m.contacts[0].uri.headers == "Route=%3Csip:sip.example.com%3E"
    m = parse_message(load(RFC4475 / "valid" / "zeromf.sip"))
    assert m.max_forwards == 0
    m = parse_message(load(RFC4475 / "valid" / "inv2543.sip"))
    assert m.top_via.branch is None and m.max_forwards is None and m.body.startswith(b"v=0")
    m = parse_message(load(RFC4475 / "valid" / "bcast.sip"))
    assert isinstance(m, Response) and m.vias[1].host == "255.255.255.255"
    m = parse_message(load(RFC4475 / "valid" / "badbranch.sip"))
    assert m.top_via.branch == "z9hG4bK"


# --- real phones -------------------------------------------------------------------


PHONE_EXPECT = {
    # file: (To AOR, first contact's host, port, +sip.instance, reg-id, expires, User-Agent start)
    "yealink_t46s": (
        "sip:1001@sip.example.com",
        "192.168.1.23",
        5060,
        "<urn:uuid:00000000-0000-1000-8000-00156522b2a7>",
        "1",
        3600,
        "Yealink",
    ),
    "polycom_vvx410": (
        "sip:1002@example.com",
        "10.0.0.45",
        None,
        "<urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3>",
        "1",
        3600,
        "PolycomVVX",
    ),
    "linphone_5": (
        "sip:alice@sip.linphone.example",
        "192.168.1.50",
        43210,
        "<urn:uuid:1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809>",
        "1",
        600,
        "Linphone",
    ),
    "zoiper_5": ("sip:2001@pbx.example.net", "203.0.113.7", 52716, None, None, 60, "Z 5"),
    "microsip_3": (
        "sip:3003@sip.example.com",
        "192.168.1.77",
        62841,
        "<urn:uuid:9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4>",
        "1",
        300,
        "MicroSIP",
    ),
    "grandstream_gxp2170": (
        "sip:4004@sip.example.com",
        "192.168.1.88",
        5062,
        "<urn:uuid:00000000-0000-1000-8000-000b82a1b2c3>",
        "1",
        3600,
        "Grandstream",
    ),
    "edge_proxy_path": (
        "sip:carol@sip.example.com",
        "192.168.1.101",
        49152,
        "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>",
        "2",
        1800,
        None,
    ),
    "ipv6_tcp_compact": (
        "sip:1005@[2001:db8::10]",
        "[2001:db8::23]",
        5060,
        None,
        None,
        120,
        "Yealink",
    ),
    "sipp_register": ("sip:sipp@127.0.0.1", "127.0.0.1", 5061, None, None, 3600, None),
}


def test_phone_fixtures_complete() -> None:
    names = {p.stem for p in PHONES.glob("*.sip")}
    assert names == set(PHONE_EXPECT) | {"unregister_star"}


@pytest.mark.parametrize("name", sorted(PHONE_EXPECT))
def test_phone_register(name: str) -> None:
    aor, host, port, instance, reg_id, expires, agent = PHONE_EXPECT[name]
    m = parse_message(load(PHONES / f"{name}.sip"))
    assert isinstance(m, Request) and m.method == "REGISTER" and m.cseq.method == "REGISTER"
    read_everything(m)
    assert m.ruri.scheme == "sip"
    assert m.to.uri.aor == aor and m.from_.uri.aor == aor and m.from_.tag
    assert m.top_via.branch and m.top_via.branch.startswith("z9hG4bK")
    contact = m.contacts[0]
    assert (contact.uri.host, contact.uri.port) == (host, port)
    assert contact.instance == instance and contact.reg_id == reg_id
    assert (contact.expires if contact.expires is not None else m.expires) == expires
    if agent is not None:
        assert (m.headers.get("user-agent") or "").startswith(agent)
    auth = m.headers.get("authorization")
    if auth is not None:
        scheme, params = parse_auth(auth)
        assert scheme == "digest" and params["username"] == aor[4:].split("@")[0]
        assert params["nonce"] and params["response"] and params["uri"].startswith("sip:")


def test_phone_outbound_details() -> None:
    m = parse_message(load(PHONES / "edge_proxy_path.sip"))
    assert m.headers.values("path") == ["<sip:lsk1m2n3@edge.example.com;lr;ob>"]
    assert "outbound" in m.headers.values("supported")
    assert m.vias[1].params == {
        "received": "203.0.113.50",
        "rport": "61044",
        "branch": "z9hG4bKnashds7",
    }
    assert m.contacts[0].uri.params == {"transport": "tcp", "ob": None}
    m = parse_message(load(PHONES / "polycom_vvx410.sip"))
    assert len(m.contacts) == 1 and m.contacts[0].uri.params == {"line": "bdd2ad96b4a0e17"}
    m = parse_message(load(PHONES / "ipv6_tcp_compact.sip"))
    assert [(c.uri.port, c.expires, c.q) for c in m.contacts] == [
        (5060, 120, None),
        (5070, 60, 0.5),
    ]
    assert m.headers.values("supported") == ["path"]
    m = parse_message(load(PHONES / "unregister_star.sip"))
    assert m.contact_is_star and m.expires == 0
