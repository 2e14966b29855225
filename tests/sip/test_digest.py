"""Digest authentication maths (RFC 2617, RFC 7616, RFC 8760; RFC 3261 §22)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from regswitch.sip import digest
from regswitch.sip.digest import Credentials, NonceSigner, challenge, expected_response, ha1, verify
from regswitch.sip.errors import ParseError
from regswitch.sip.headers import parse_auth
from regswitch.sip.message import Request
from regswitch.sip.parse import parse_message

PHONES = Path(__file__).resolve().parents[1] / "fixtures" / "sip" / "phones"
PHONE_PASSWORD = "s3cret!"

# RFC 2617 §3.5
RFC2617 = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
# RFC 7616 §3.9.1 (the same request answered with SHA-256 and with MD5)
RFC7616 = (
    'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    'algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="{response}", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC7616_MD5 = "8ca523f5e9506fed4657c9700eebdbec"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- HA1 and known vectors -----------------------------------------------------


def test_ha1_known_values() -> None:
    assert (
        ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == "939e7578ed9e3c518a452acee763bce9"
    )
    assert ha1("Mufasa", "http-auth@example.org", "Circle of Life", "SHA-256") == sha256(
        "Mufasa:http-auth@example.org:Circle of Life"
    )
    assert ha1("u", "r", "p", "md5") == md5("u:r:p")  # algorithm names ignore case
    assert ha1("u", "r", "p", "SHA-256-sess") == sha256("u:r:p")  # the stored base HA1


def test_ha1_unicode_is_utf8() -> None:
    assert ha1("J\u00fcrgen", "r\u00e9alm", "p\u00e4ss") == md5("J\u00fcrgen:r\u00e9alm:p\u00e4ss")


def test_ha1_unknown_algorithm() -> None:
    with pytest.raises(ValueError):
        ha1("u", "r", "p", "SHA-1")


def test_rfc2617_vector() -> None:
    creds = Credentials.parse(RFC2617)
    assert creds == Credentials(
        scheme="Digest",
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        algorithm="MD5",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert expected_response(key, "GET", "/dir/index.html", creds) == creds.response
    assert verify(creds, key, "GET")
    assert not verify(creds, key, "POST")
    assert not verify(creds, ha1("Mufasa", "testrealm@host.com", "circle of life"), "GET")


@pytest.mark.parametrize(("alg", "response"), [("SHA-256", RFC7616_SHA256), ("MD5", RFC7616_MD5)])
def test_rfc7616_vectors(alg: str, response: str) -> None:
    creds = Credentials.parse(RFC7616.format(alg=alg, response=response))
    assert creds.algorithm == alg and creds.nc_value == 1
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", alg)
    assert verify(creds, key, "GET")
    assert not verify(creds, ha1("Mufasa", "http-auth@example.org", "Circle of Life", alg), "HEAD")


def test_response_case_and_tampering() -> None:
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    upper = Credentials.parse(
        RFC2617.replace("6629fae49393a05397450978507c4ef1", "6629FAE49393A05397450978507C4EF1")
    )
    assert verify(upper, key, "GET")
    for bad in ("6629fae49393a05397450978507c4ef0", "", "6629fae4", "\u00e9" * 32):
        creds = Credentials.parse(RFC2617.replace("6629fae49393a05397450978507c4ef1", bad))
        assert not verify(creds, key, "GET")


def test_sess_and_auth_int_and_no_qop() -> None:
    key = sha256("bob:biloxi.example.com:zanzibar")
    sess_a1 = sha256(f"{key}:n1:c1")
    a2 = sha256("REGISTER:sip:biloxi.example.com")
    response = sha256(f"{sess_a1}:n1:00000002:c1:auth:{a2}")
    creds = Credentials.parse(
        'Digest username="bob", realm="biloxi.example.com", nonce="n1", '
        'uri="sip:biloxi.example.com", '
        f'response="{response}", algorithm=SHA-256-sess, qop=auth, nc=00000002, cnonce="c1"'
    )
    assert verify(creds, key, "REGISTER") and creds.nc_value == 2

    body = b"v=0\r\n"
    a2 = md5(f"INVITE:sip:bob@b:{hashlib.md5(body).hexdigest()}")
    key = md5("bob:b:pw")
    response = md5(f"{key}:n:00000001:c:auth-int:{a2}")
    creds = Credentials.parse(
        f'Digest username="bob", realm="b", nonce="n", uri="sip:bob@b", response="{response}", '
        'qop=auth-int, nc=00000001, cnonce="c"'
    )
    assert verify(creds, key, "INVITE", body) and not verify(creds, key, "INVITE", b"v=1\r\n")

    response = md5(f"{key}:n:{md5('REGISTER:sip:b')}")  # RFC 2069 style, as SIPp sends
    creds = Credentials.parse(
        f'Digest username="bob",realm="b",nonce="n",uri="sip:b",response="{response}"'
    )
    assert creds.qop is None and creds.nc is None and creds.nc_value == 1
    assert verify(creds, key, "REGISTER")


def test_unknown_algorithm_never_verifies() -> None:
    creds = Credentials.parse(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="x", algorithm=SHA-1'
    )
    assert creds.algorithm == "SHA-1"
    assert not verify(creds, "00", "REGISTER")
    with pytest.raises(ValueError):
        expected_response("00", "REGISTER", "sip:r", creds)


def test_algorithms_listed() -> None:
    assert {"MD5", "SHA-256", "MD5-sess", "SHA-256-sess"} <= set(digest.ALGORITHMS)
    assert digest.supported("sha-256") and not digest.supported("SHA-1")


# --- real phones' REGISTERs ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    sorted(p.stem for p in PHONES.glob("*.sip") if b"Authorization" in p.read_bytes()),
)
def test_phone_registers_verify(name: str) -> None:
    m = parse_message((PHONES / f"{name}.sip").read_bytes())
    assert isinstance(m, Request)
    creds = Credentials.parse(m.headers.get("authorization") or "")
    key = ha1(creds.username, creds.realm, PHONE_PASSWORD, creds.algorithm)
    assert verify(creds, key, m.method)
    assert not verify(creds, ha1(creds.username, creds.realm, "wrong", creds.algorithm), m.method)


def test_sipp_style_header() -> None:
    value = (
        'Digest username="sipp",realm="127.0.0.1",uri="sip:127.0.0.1:5060",'
        'nonce="AAAAAGWBx5SAbmkO3rGmY0GA-2l0dbv5",response="{r}",algorithm=MD5'
    )
    key = ha1("sipp", "127.0.0.1", "sipp")
    r = md5(f"{key}:AAAAAGWBx5SAbmkO3rGmY0GA-2l0dbv5:{md5('REGISTER:sip:127.0.0.1:5060')}")
    assert verify(Credentials.parse(value.format(r=r)), key, "REGISTER")


def test_utf8_username_from_the_wire() -> None:
    user = "J\u00fcrgen"
    key = ha1(user, "example.com", "pw")
    a2 = md5("REGISTER:sip:example.com")
    response = md5(f"{key}:n:00000001:c:auth:{a2}")
    wire = (
        (
            f'Digest username="{user}", realm="example.com", nonce="n", uri="sip:example.com", '
            f'response="{response}", qop=auth, nc=00000001, cnonce="c"'
        )
        .encode()
        .decode("latin-1")
    )  # header text as parse_message gives it
    creds = Credentials.parse(wire)
    assert creds.username == user
    assert verify(creds, key, "REGISTER")


# --- Credentials.parse errors ------------------------------------------------------


BASE = 'username="u", realm="r", nonce="n", uri="sip:r", response="abc"'


@pytest.mark.parametrize("missing", ["username", "realm", "nonce", "uri", "response"])
def test_missing_mandatory(missing: str) -> None:
    params = ", ".join(p for p in BASE.split(", ") if not p.startswith(missing + "="))
    with pytest.raises(ParseError):
        Credentials.parse(f"Digest {params}")


@pytest.mark.parametrize("nc", ["0000001", "000000001", "0000000g", "", '"00000001"x', "-0000001"])
def test_bad_nc(nc: str) -> None:
    with pytest.raises(ParseError):
        Credentials.parse(f'Digest {BASE}, qop=auth, cnonce="c", nc={nc}')


def test_quoted_nc_and_qop_accepted() -> None:
    creds = Credentials.parse(f'Digest {BASE}, qop="AUTH", cnonce="c", nc="0000000A"')
    assert creds.qop == "auth" and creds.nc == "0000000A" and creds.nc_value == 10


@pytest.mark.parametrize(
    "extra",
    [
        'qop=auth-conf, nc=00000001, cnonce="c"',
        'qop=bogus, nc=00000001, cnonce="c"',
        "qop=auth",
        'qop=auth, cnonce="c"',
    ],
)
def test_bad_qop(extra: str) -> None:
    with pytest.raises(ParseError):
        Credentials.parse(f"Digest {BASE}, {extra}")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        "Basic dXNlcjpwYXNz",
        "NoOneKnowsThisScheme opaque-data=here",
        f'Digest {BASE}, x="open',
        'Digest username="u" realm="r"',
    ],
)
def test_garbled_or_other_scheme(value: str) -> None:
    with pytest.raises(ParseError):
        Credentials.parse(value)


def test_credentials_is_frozen_with_slots() -> None:
    creds = Credentials.parse(f"Digest {BASE}")
    assert creds.algorithm == "MD5" and creds.qop is None and creds.opaque is None
    with pytest.raises(AttributeError):
        creds.username = "x"  # type: ignore[misc]
    assert not hasattr(creds, "__dict__")


# --- nonces -----------------------------------------------------------------------


def test_nonce_round_trip() -> None:
    signer = NonceSigner(b"k" * 32, lifetime=300.0)
    nonce = signer.make(1000.0, "salt-1")
    assert signer.check(nonce, 1000.0) == "ok"
    assert signer.check(nonce, 1299.9) == "ok"
    assert signer.check(nonce, 1300.5) == "stale"
    assert signer.check(nonce, 990.0) == "stale"  # from the future: the clock restarted
    assert signer.issued_at(nonce) == 1000.0
    assert nonce == signer.make(1000.0, "salt-1")
    assert nonce != signer.make(1000.0, "salt-2") != signer.make(1000.001, "salt-1")
    assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_nonce_fits_a_quoted_string_and_a_challenge() -> None:
    signer = NonceSigner(b"secret")
    nonce = signer.make(12.5, "\u00e9t\u00e9")
    scheme, params = parse_auth(challenge("sip.example.com", nonce, "MD5"))
    assert scheme == "digest" and params["nonce"] == nonce
    assert signer.check(nonce, 13.0) == "ok"


def test_forged_nonces_are_bad() -> None:
    signer = NonceSigner(b"k" * 32)
    other = NonceSigner(b"j" * 32)
    nonce = signer.make(1000.0, "s")
    issued, salt, tag = nonce.split("-")
    assert int(issued, 16) == 1_000_000 and salt == "s" and len(tag) == 32
    cases = [
        f"{int(issued, 16) + 1:x}-{salt}-{tag}",  # moved the issue time
        f"{issued}-t-{tag}",
        other.make(1000.0, "s"),
        nonce[:-2],
        nonce + "A",
        nonce + "=",
        nonce + "!",
        "!" + nonce,
        nonce.replace(nonce[5], "*"),
        "",
        "-",
        "AAAA",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "\u00e9" * 40,
        "A" * 600,
    ]
    for bad in cases:
        assert signer.check(bad, 1000.0) == "bad", bad


def test_a_nonce_has_one_spelling() -> None:
    """The nc table is keyed by the nonce text: another spelling of the same
    time, salt and tag must not pass as a fresh nonce."""
    signer = NonceSigner(b"k" * 32)
    nonce = signer.make(1000.0, "ab")
    issued, salt, tag = nonce.split("-")
    for twin in (f"{issued}-{salt}-{tag.upper()}", f"0{issued}-{salt}-{tag}"):
        assert twin != nonce
        assert signer.check(twin, 1000.0) == "bad", twin


def test_unsafe_salt_goes_in_as_hex() -> None:
    signer = NonceSigner(b"k" * 32)
    nonce = signer.make(1000.0, "a-b\"c")
    assert nonce.split("-")[1] == b'a-b"c'.hex()
    assert signer.check(nonce, 1000.0) == "ok"


def test_signer_arguments() -> None:
    with pytest.raises(ValueError):
        NonceSigner(b"")
    with pytest.raises(ValueError):
        NonceSigner(b"k", lifetime=0)


# --- challenges -----------------------------------------------------------------


def test_challenge_format() -> None:
    assert challenge("sip.example.com", "abc", "SHA-256") == (
        'Digest realm="sip.example.com", nonce="abc", algorithm=SHA-256, qop="auth"'
    )
    value = challenge('we "quote" \\ it', "n", "MD5", opaque="o p", stale=True)
    assert value.endswith(', opaque="o p", stale=true')
    scheme, params = parse_auth(value)
    assert scheme == "digest"
    assert params == {
        "realm": 'we "quote" \\ it',
        "nonce": "n",
        "algorithm": "MD5",
        "qop": "auth",
        "opaque": "o p",
        "stale": "true",
    }
    with pytest.raises(ValueError):
        challenge("r", "n", "SHA-1")


def test_full_exchange() -> None:
    """Challenge -> client answer (computed here with hashlib) -> verify."""
    signer = NonceSigner(b"server key")
    nonce = signer.make(50.0, "0001")
    _, offer = parse_auth(challenge("sip.example.com", nonce, "SHA-256"))
    key = sha256("1001:sip.example.com:pw")
    a2 = sha256("REGISTER:sip:sip.example.com")
    response = sha256(f"{key}:{offer['nonce']}:00000001:cafe:auth:{a2}")
    creds = Credentials.parse(
        f'Digest username="1001", realm="{offer["realm"]}", nonce="{offer["nonce"]}", '
        f'uri="sip:sip.example.com", response="{response}", algorithm={offer["algorithm"]}, '
        'qop=auth, nc=00000001, cnonce="cafe"'
    )
    assert signer.check(creds.nonce, 60.0) == "ok"
    assert verify(creds, ha1("1001", "sip.example.com", "pw", "SHA-256"), "REGISTER")
