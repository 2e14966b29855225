"""Typed header views (RFC 3261 §7.3, §20, §25): lists, params, Via, name-addr,
Contact, CSeq and credentials."""

from __future__ import annotations

import pytest

from regswitch.sip.errors import ParseError
from regswitch.sip.headers import (
    Contact,
    CSeq,
    NameAddr,
    Via,
    format_params,
    is_token,
    parse_auth,
    parse_contact,
    parse_cseq,
    parse_int,
    parse_name_addr,
    parse_params,
    parse_via,
    quote,
    split_list,
    unquote,
)

# --- lists -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("INVITE, ACK,BYE ,  CANCEL", ["INVITE", "ACK", "BYE", "CANCEL"]),
        ("single", ["single"]),
        ("  ", []),
        ("a,,b, ,", ["a", "b"]),
        ('"Smith, John" <sip:j@x>, <sip:k@y>', ['"Smith, John" <sip:j@x>', "<sip:k@y>"]),
        ("<sip:a@x;x=1,2>;q=0.5, <sip:b@y>", ["<sip:a@x;x=1,2>;q=0.5", "<sip:b@y>"]),
        (
            '<sip:p@10.0.0.45>;methods="INVITE, ACK, BYE";+sip.instance="<urn:uuid:1>"',
            ['<sip:p@10.0.0.45>;methods="INVITE, ACK, BYE";+sip.instance="<urn:uuid:1>"'],
        ),
        (r'"a \"b, c\" d" <sip:x@y>, <sip:z@w>', [r'"a \"b, c\" d" <sip:x@y>', "<sip:z@w>"]),
        ('"a<b, c" <sip:x@y>, <sip:z@w>', ['"a<b, c" <sip:x@y>', "<sip:z@w>"]),
        (
            "SIP/2.0/UDP a.example;branch=1, SIP/2.0/TCP b.example;branch=2",
            ["SIP/2.0/UDP a.example;branch=1", "SIP/2.0/TCP b.example;branch=2"],
        ),
    ],
)
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


@pytest.mark.parametrize(
    "value", ['"unterminated, <sip:a@b>', r'"a\", <sip:x>', "<sip:a@b, sip:c@d"]
)
def test_split_list_unbalanced(value: str) -> None:
    with pytest.raises(ParseError):
        split_list(value)


def test_split_list_junk_fails_as_name_addr() -> None:
    (item,) = split_list("<sip:a@b, <sip:c@d>")
    with pytest.raises(ParseError):
        parse_contact(item)


def test_split_list_keeps_utf8_bytes() -> None:
    # latin-1 text of UTF-8 "Å" is "\xc3\x85": \x85 is no whitespace for SIP
    value = '"\xc3\x85sa" <sip:a@b>, <sip:c@d>'
    assert split_list(value) == ['"\xc3\x85sa" <sip:a@b>', "<sip:c@d>"]


# --- params ----------------------------------------------------------------------


def test_params_basic() -> None:
    assert parse_params("branch=z9hG4bK776;rport;Received=192.0.2.1") == {
        "branch": "z9hG4bK776",
        "rport": None,
        "received": "192.0.2.1",
    }


def test_params_lws_and_quotes() -> None:
    params = parse_params('  tag    = 1918181833n ; q = 0.33 ; d="x;y" ; e="a\\"b;c"')
    assert params == {"tag": "1918181833n", "q": "0.33", "d": '"x;y"', "e": '"a\\"b;c"'}
    assert unquote(params["e"] or "") == 'a"b;c'


def test_params_host_values() -> None:
    assert parse_params("received=[2001:db8::9];maddr=2001:db8::1") == {
        "received": "[2001:db8::9]",
        "maddr": "2001:db8::1",
    }


@pytest.mark.parametrize(
    "text",
    [
        ";",
        "a;;b",
        "a;",
        "=x",
        "a b=1",
        "a=b c",
        'a="x',
        'a="x"y',
        "a=<b>",
        "a=b,c",
        "a=",
        'a="\\"',
        "na\u00efve=1",
    ],
)
def test_params_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_params(text)


def test_params_empty_and_format() -> None:
    assert parse_params("") == {}
    assert format_params({"a": "1", "b": None}) == ";a=1;b"


def test_quote_unquote() -> None:
    assert unquote('"plain"') == "plain"
    assert unquote('"J Rosenberg \\\\\\""') == 'J Rosenberg \\"'
    assert unquote("token") == "token"
    assert quote('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert unquote(quote('say "hi" \\o/')) == 'say "hi" \\o/'


def test_is_token() -> None:
    assert is_token("INVITE") and is_token("!interesting-Method0123456789_*+`.%indeed'~")
    assert (
        not is_token("") and not is_token("a b") and not is_token("a:b") and not is_token("\u00e9")
    )


# --- Via -------------------------------------------------------------------------


def test_via_common() -> None:
    via = parse_via("SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK1491280923;rport")
    assert via == Via("UDP", "192.168.1.23", 5060, {"branch": "z9hG4bK1491280923", "rport": None})
    assert via.branch == "z9hG4bK1491280923"
    assert via.sent_by == "192.168.1.23:5060"
    assert str(via) == "SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK1491280923;rport"


def test_via_no_port_no_params_lower_transport() -> None:
    via = parse_via("SIP/2.0/tcp host.example.com")
    assert (via.transport, via.host, via.port, via.params, via.branch) == (
        "TCP",
        "host.example.com",
        None,
        {},
        None,
    )


def test_via_ipv6() -> None:
    via = parse_via("SIP/2.0/TCP [2001:db8::23]:5060;branch=z9hG4bK8;received=[2001:db8::99]")
    assert (via.host, via.port) == ("[2001:db8::23]", 5060)
    assert via.params["received"] == "[2001:db8::99]"


def test_via_with_lws_everywhere() -> None:
    # RFC 4475 3.1.1.1 after unfolding
    via = parse_via("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "192.168.255.111",
        None,
    )
    assert via.branch == "z9hG4bK30239"
    via = parse_via("SIP/2.0/UDP host.example.com : 5070 ;received=192.0.2.1")
    assert (via.host, via.port, via.params) == ("host.example.com", 5070, {"received": "192.0.2.1"})


@pytest.mark.parametrize("transport", ["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "UNKNOWN"])
def test_via_transports(transport: str) -> None:
    assert parse_via(f"SIP/2.0/{transport} t.example.com;branch=z9hG4bKx").transport == transport


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 192.0.2.1",
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP 192.0.2.15;",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP a b",
        "SIP/2.0/UDP <host>",
        "SIP/2.0/UDP host;branch=a b",
        "HTTP/1.1 host",
        "SIP/2.0/U@P host",
    ],
)
def test_via_malformed(value: str) -> None:
    with pytest.raises(ParseError):
        parse_via(value)


# --- name-addr ----------------------------------------------------------------------


def test_name_addr_quoted_display() -> None:
    na = parse_name_addr('"Alice" <sip:1001@sip.example.com>;tag=1702923912')
    assert na == NameAddr("sip:1001@sip.example.com", '"Alice"', {"tag": "1702923912"})
    assert na.tag == "1702923912" and na.display_name == "Alice"
    assert na.uri.user == "1001"
    assert str(na) == '"Alice" <sip:1001@sip.example.com>;tag=1702923912'


def test_name_addr_display_escapes_and_brackets() -> None:
    na = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert na.display_name == 'J Rosenberg \\"'
    assert na.tag == "98asjd8"
    na = parse_name_addr('"Mr <Smith>, Jr" <sip:s@example.com>')
    assert na.display_name == "Mr <Smith>, Jr" and na.uri_text == "sip:s@example.com"


def test_name_addr_token_display() -> None:
    assert parse_name_addr("caller<sip:caller@example.com>;tag=323").display == "caller"
    na = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")
    assert na.display == "token1~` token2'+_ token3*%!.-"
    # UTF-8 bytes in an unquoted name are tolerated
    assert parse_name_addr("J\xc3\xbcrgen <sip:j@example.com>").display == "J\xc3\xbcrgen"


def test_name_addr_without_display() -> None:
    na = parse_name_addr('<sip:a@b;transport=tcp;lr>;tag=x;+sip.instance="<urn:uuid:1>"')
    assert na.display is None
    assert na.uri.params == {"transport": "tcp", "lr": None}  # URI params
    assert na.params == {"tag": "x", "+sip.instance": '"<urn:uuid:1>"'}  # header params


def test_addr_spec_params_are_header_params() -> None:
    # RFC 3261 §20.10: without <>, everything after ';' belongs to the header
    na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam;tag=5")
    assert na.uri_text == "sip:+19725552222@gw1.example.net"
    assert na.uri.params == {}
    assert na.params == {"unknownparam": None, "tag": "5"}
    # inside <> the same text is a URI parameter
    na = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert na.uri.params == {"unknownparam": None} and na.params == {}


def test_addr_spec_with_lws_before_params() -> None:
    na = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert na.uri_text == "sip:vivekg@chair-dnrc.example.com" and na.tag == "1918181833n"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        '"Mr. J. User <sip:j.user@example.com>',  # unterminated quote
        '"Watson, Thomas" < sip:t.watson@example.org >',  # spaces inside <>
        "Watson, Thomas <sip:t.watson@example.org>",  # comma in a token display
        "<sip:a@b",
        "<>",
        "<sip:a@b> junk",
        "<sip:a@b>;tag=1, <sip:c@d>",
        "<sip:a<b@c>",
        '"x" junk <sip:a@b>',
        'junk "x" <sip:a@b>',
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # addr-spec with '?'
        "sip:a@b, sip:c@d",
        "sip:a b@c",
        "sip:a@b;tag",  # fine as a param...
    ][:-1],
)
def test_name_addr_malformed(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(value)


def test_uri_parsed_lazily() -> None:
    na = parse_name_addr("<isbn:2983792873>;tag=1")
    assert na.tag == "1"
    with pytest.raises(ParseError) as info:
        _ = na.uri
    assert info.value.status_hint == 416


# --- Contact --------------------------------------------------------------------------


def test_contact_registrar_params() -> None:
    c = parse_contact(
        '<sip:1001@192.168.1.23:5060;ob>;reg-id=1;+sip.instance="<urn:uuid:0000-1>";expires=600;q=0.7'
    )
    assert isinstance(c, Contact)
    assert c.expires == 600 and c.reg_id == "1" and c.instance == "<urn:uuid:0000-1>" and c.q == 0.7
    assert c.uri.params == {"ob": None}


def test_contact_defaults() -> None:
    c = parse_contact("sip:a@b")
    assert c.expires is None and c.instance is None and c.reg_id is None and c.q is None


@pytest.mark.parametrize(
    "param",
    [
        "expires=abc",
        "expires=-1",
        "q=high",
        "q=1.5",
    ],
)
def test_contact_bad_values_raise_when_read(param: str) -> None:
    # (an expires beyond 2**32-1 is not bad: it reads as 2**32-1, see below)
    c = parse_contact(f"<sip:a@b>;{param}")
    with pytest.raises(ParseError):
        _ = c.expires if param.startswith("expires") else c.q


@pytest.mark.parametrize("huge", ["4294967296", "280297596632815", "9" * 40])
def test_huge_expires_reads_as_the_largest_delta_seconds(huge: str) -> None:
    # RFC 3261 §20.19 / RFC 4475 §3.1.2.19: treat it as 2**32-1, the registrar clamps it
    assert parse_contact(f"<sip:a@b>;expires={huge}").expires == 2**32 - 1


# --- CSeq --------------------------------------------------------------------------


def test_cseq() -> None:
    assert parse_cseq("2 REGISTER") == CSeq(2, "REGISTER")
    assert parse_cseq("0009 INVITE") == CSeq(9, "INVITE")
    assert parse_cseq("  3\t  OPTIONS ") == CSeq(3, "OPTIONS")
    assert str(CSeq(4, "BYE")) == "4 BYE"
    assert parse_cseq("2147483647 ACK").seq == 2**31 - 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "REGISTER",
        "2",
        "123",
        "x REGISTER",
        "-1 INVITE",
        "2147483648 INVITE",
        "36893488147419103232 REGISTER",
        "1 IN VITE",
        "1 INV:ITE",
        "\u00b2 INVITE",
        "1,INVITE",
    ],
)
def test_cseq_malformed(value: str) -> None:
    with pytest.raises(ParseError):
        parse_cseq(value)


# --- credentials ----------------------------------------------------------------


def test_parse_auth_digest() -> None:
    scheme, params = parse_auth(
        'Digest username="1001", realm="sip.example.com", nonce="abc", uri="sip:sip.example.com", '
        'response="4c8d", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001'
    )
    assert scheme == "digest"
    assert params == {
        "username": "1001",
        "realm": "sip.example.com",
        "nonce": "abc",
        "uri": "sip:sip.example.com",
        "response": "4c8d",
        "algorithm": "MD5",
        "cnonce": "0a4f113b",
        "qop": "auth",
        "nc": "00000001",
    }


def test_parse_auth_tight_commas_and_case() -> None:
    scheme, params = parse_auth(
        'DIGEST USERNAME="2001",Realm="r",uri="sip:x;transport=UDP",nc=00000001'
    )
    assert scheme == "digest"
    assert params == {
        "username": "2001",
        "realm": "r",
        "uri": "sip:x;transport=UDP",
        "nc": "00000001",
    }


def test_parse_auth_quoted_commas_escapes_and_tabs() -> None:
    _, params = parse_auth('Digest\trealm="a, b", qop="auth,auth-int" , username="say \\"hi\\""')
    assert params == {"realm": "a, b", "qop": "auth,auth-int", "username": 'say "hi"'}
    _, params = parse_auth('Digest realm="x",, nonce="y",')
    assert params == {"realm": "x", "nonce": "y"}


def test_parse_auth_other_scheme() -> None:
    assert parse_auth("NoOneKnowsThisScheme opaque-data=here") == (
        "nooneknowsthisscheme",
        {"opaque-data": "here"},
    )
    assert parse_auth("Basic") == ("basic", {})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest realm",
        'Digest realm="x',
        'Digest realm="x" y',
        "Digest realm=a b",
        'Di"gest realm="x"',
        'Digest realm=="x"',
        "Digest =x",
        'Digest realm="x\\',
        "Digest a=b;c",
    ],
)
def test_parse_auth_malformed(value: str) -> None:
    with pytest.raises(ParseError):
        parse_auth(value)


def test_parse_int() -> None:
    assert parse_int(" 3600 ", "Expires") == 3600
    assert parse_int("0068", "Max-Forwards", 255) == 68
    for bad in ("", "-1", "1.5", "abc", "\u00b2", "300", "99999999999"):
        with pytest.raises(ParseError):
            parse_int(bad, "x", 255)
