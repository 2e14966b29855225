"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966)."""

from __future__ import annotations

import pytest

from regswitch.sip.errors import ParseError
from regswitch.sip.uri import URI, host_ok, parse_uri, parse_uri_params, split_host_port


def test_plain_sip_uri() -> None:
    uri = parse_uri("sip:alice@atlanta.example.com")
    assert uri == URI("sip", "alice", "atlanta.example.com")
    assert uri.port is None and uri.params == {} and uri.headers is None and uri.password is None


def test_every_part() -> None:
    uri = parse_uri(
        "sips:alice:secretword@gateway.example.com:5061;transport=tcp;lr?subject=project"
    )
    assert uri.scheme == "sips"
    assert (uri.user, uri.password) == ("alice", "secretword")
    assert (uri.host, uri.port) == ("gateway.example.com", 5061)
    assert uri.params == {"transport": "tcp", "lr": None}
    assert uri.headers == "subject=project"
    assert (
        str(uri)
        == "sips:alice:secretword@gateway.example.com:5061;transport=tcp;lr?subject=project"
    )


def test_scheme_is_case_insensitive() -> None:
    assert parse_uri("SIP:bob@example.com").scheme == "sip"
    assert parse_uri("Sips:bob@example.com").scheme == "sips"


def test_no_user() -> None:
    uri = parse_uri("sip:registrar.example.com;transport=udp")
    assert uri.user is None and uri.host == "registrar.example.com" and uri.transport == "udp"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:alice@[2001:db8::1]:5060", "[2001:db8::1]", 5060),
        ("sip:alice@[2001:db8::1]", "[2001:db8::1]", None),
        ("sip:[::1]:5070;transport=tcp", "[::1]", 5070),
        ("sip:alice@[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", None),
        ("sip:alice@192.0.2.4:5080", "192.0.2.4", 5080),
        ("sip:alice@host-1.example.com.", "host-1.example.com.", None),
        ("sip:alice@under_score.example", "under_score.example", None),
    ],
)
def test_hosts(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert (uri.host, uri.port) == (host, port)
    assert uri.host_port == host if port is None else f"{host}:{port}"


def test_ipv6_str_round_trip() -> None:
    assert str(parse_uri("sip:alice@[2001:db8::1]:5060;transport=udp")) == (
        "sip:alice@[2001:db8::1]:5060;transport=udp"
    )


def test_user_with_reserved_characters() -> None:
    # RFC 4475 3.1.1.9: ';' in the user part is user-unreserved
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com" and uri.params == {}


def test_telephone_subscriber_user() -> None:
    uri = parse_uri("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert uri.user == "+1-212-555-1212" and uri.password == "1234"
    assert uri.params == {"user": "phone"}


def test_escaped_user_and_aor() -> None:
    uri = parse_uri("sip:%75se%72@Example.COM:5060;transport=tcp")
    assert uri.user == "%75se%72"
    assert uri.aor == "sip:user@example.com"


def test_aor_of_sips_and_userless() -> None:
    assert parse_uri("sips:bob@Biloxi.example.com").aor == "sip:bob@biloxi.example.com"
    assert parse_uri("sip:biloxi.example.com").aor == "sip:biloxi.example.com"


def test_params_names_lower_cased_values_kept() -> None:
    uri = parse_uri("sip:a@b;Transport=TCP;MADDR=239.255.255.1;Lr;x=Mixed%41")
    assert uri.params == {"transport": "TCP", "maddr": "239.255.255.1", "lr": None, "x": "Mixed%41"}
    assert uri.transport == "tcp"


def test_with_params_copies() -> None:
    uri = parse_uri("sip:a@b;transport=udp")
    other = uri.with_params(transport="tcp", ob=None)
    assert uri.params == {"transport": "udp"}
    assert str(other) == "sip:a@b;transport=tcp;ob"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.scheme == "tel" and uri.host == "+1-201-555-0123"
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    assert parse_uri("tel:7042;phone-context=+1555").host == "7042"


@pytest.mark.parametrize(
    "text",
    [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "http://www.example.com",
        "isbn:2983792873",
        "name:John_Smith",
        "soap.beep://192.0.2.103:3002",
    ],
)
def test_unknown_scheme_is_416(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 416


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        ":alice@example.com",
        "alice@example.com",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "sip:alice smith@example.com",
        "sip:al<ice@example.com",
        'sip:"alice"@example.com',
        "sip:alice@example.com:0",
        "sip:alice@example.com:65536",
        "sip:alice@example.com:50x",
        "sip:alice@example.com:",
        "sip:alice@example.com:123456",
        "sip:alice@example.com:\u00b2",  # a superscript two is isdigit() but no port
        "sip:alice@[2001:db8::1",
        "sip:alice@[2001:db8::1]x",
        "sip:alice@[]",
        "sip:alice@-bad.example",
        "sip:alice@exa\u00e9mple.com",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;",
        "sip:alice@example.com;a b",
        "sip:alice@example.com;a=",
        "sip:alice@example.com?a=<b>",
        "sip:al%ice@example.com",
        "sip:alice:pass:word@example.com",
        "tel:",
        "tel:12 34",
        "1sip:alice@example.com",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status_hint in (400, 416)


def test_split_host_port() -> None:
    assert split_host_port("example.com") == ("example.com", None)
    assert split_host_port("example.com:5060") == ("example.com", 5060)
    assert split_host_port("[2001:db8::1]:5061") == ("[2001:db8::1]", 5061)
    with pytest.raises(ParseError):
        split_host_port("")
    with pytest.raises(ParseError):
        split_host_port("[::1]:")


def test_host_ok() -> None:
    assert host_ok("example.com") and host_ok("192.0.2.1") and host_ok("[::1]")
    assert not host_ok("exa mple") and not host_ok("a,b") and not host_ok("[zz]")


def test_parse_uri_params_empty() -> None:
    assert parse_uri_params("") == {}


def test_equivalent_rfc3261_examples() -> None:
    # RFC 3261 §19.1.4 equivalent pairs
    pairs = [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
    ]
    for a, b in pairs:
        assert parse_uri(a).equivalent(parse_uri(b)), (a, b)
    different = [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ]
    for a, b in different:
        assert not parse_uri(a).equivalent(parse_uri(b)), (a, b)
