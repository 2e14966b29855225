"""Property tests: whatever bytes arrive, the parser and every typed accessor
raise ParseError or nothing; and what parses serialises and parses back equal."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regswitch.sip.digest import Credentials, verify
from regswitch.sip.errors import ParseError
from regswitch.sip.headers import parse_auth
from regswitch.sip.message import Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import error_response_for_raw, response_for, serialise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sip"
SEEDS = [p.read_bytes() for p in sorted(FIXTURES.glob("**/*.sip"))]

# bytes that matter to the grammar (and to latin-1 text: 0x85 and 0xA0 are
# whitespace to str.strip(), 0xB2 is isdigit())
SPECIAL = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n ",
    b"\r\n\r\n",
    b"\n\n",
    b'"',
    b"\\",
    b"<",
    b">",
    b",",
    b";",
    b":",
    b"=",
    b"@",
    b"?",
    b"[",
    b"]",
    b"%",
    b"%4",
    b" ",
    b"\t",
    b"\x00",
    b"\x85",
    b"\xa0",
    b"\xb2",
    b"\xff",
    b"\xe2\x80\xa8",
    b"*",
    b"0",
    b"99999999999",
    b";tag=",
    b"<sip:",
    b"sips:",
    b"tel:",
    b"[::1]",
    b"Contact: *\r\n",
    b"l: 5\r\n",
    b"v: SIP/2.0/UDP h\r\n",
]
# REGSWITCH_FUZZ_EXAMPLES=20000 for a long local run; the suite default stays quick
SETTINGS = settings(
    max_examples=int(os.environ.get("REGSWITCH_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _try(read: Callable[[], object]) -> None:
    with contextlib.suppress(ParseError):
        read()


def read_everything(m: Request | Response) -> None:
    """Every typed view; each may raise ParseError, nothing else."""
    for read in (
        lambda: m.top_via.branch,
        lambda: [(str(v), v.branch) for v in m.vias],
        lambda: (str(m.from_), m.from_.tag, m.from_.display_name),
        lambda: (str(m.to), m.to.tag),
        lambda: m.from_.uri.aor,
        lambda: m.to.uri.aor,
        lambda: m.cseq,
        lambda: m.call_id,
        lambda: m.expires,
        lambda: m.max_forwards,
        lambda: m.contact_is_star,
        lambda: m.contacts,
    ):
        _try(read)
    try:
        contacts = m.contacts
    except ParseError:
        contacts = []
    for c in contacts:
        _try(lambda c=c: str(c.uri))  # type: ignore[misc]
        _try(lambda c=c: (c.expires, c.q, c.instance, c.reg_id))  # type: ignore[misc]
    if isinstance(m, Request):
        request = m
        _try(lambda: str(request.ruri))
        _try(lambda: serialise(response_for(request, 200, to_tag="t")))
    for value in m.headers.get_all("authorization") + m.headers.get_all("proxy-authorization"):
        _try(lambda v=value: parse_auth(v))  # type: ignore[misc]
        _try(lambda v=value: verify(Credentials.parse(v), "00", "REGISTER"))  # type: ignore[misc]


def assert_round_trip(m: Request | Response) -> None:
    data = serialise(m)
    again = parse_message(data)
    assert type(again) is type(m)
    if isinstance(m, Request):
        assert isinstance(again, Request)
        assert (again.method, again.uri) == (m.method, m.uri)
    else:
        assert isinstance(again, Response)
        assert (again.status, again.reason) == (m.status, m.reason)
    assert again.headers == m.headers
    assert list(again.headers) == list(m.headers)
    assert again.body == m.body
    assert serialise(again) == data


def exercise(data: bytes) -> None:
    try:
        m = parse_message(data)
    except ParseError as exc:
        assert 400 <= exc.status_hint < 600
        error_response_for_raw(data, exc)
        return
    read_everything(m)
    assert_round_trip(m)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "duplicate", "insert", "delete", "replace"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
        elif op == "truncate":
            data = data[:at]
        elif op == "duplicate":
            lines = data.split(b"\r\n")
            if len(lines) > 2:
                line = lines[draw(st.integers(1, len(lines) - 1))]
                lines.insert(draw(st.integers(1, len(lines) - 1)), line)
                data = b"\r\n".join(lines)
        elif op == "insert":
            data = data[:at] + draw(st.sampled_from(SPECIAL)) + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 12)) :]
        else:
            junk = draw(st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=4))
            data = data[:at] + b"".join(junk) + data[at + draw(st.integers(0, 12)) :]
    return data


@SETTINGS
@given(st.binary(max_size=1500))
def test_random_bytes(data: bytes) -> None:
    exercise(data)


@SETTINGS
@given(st.sampled_from(SEEDS), st.binary(max_size=64))
def test_random_bytes_after_a_start_line(seed: bytes, junk: bytes) -> None:
    exercise(seed.split(b"\r\n", 1)[0] + b"\r\n" + junk)


@SETTINGS
@given(mutated())
def test_mutated_messages(data: bytes) -> None:
    exercise(data)


@SETTINGS
@given(
    st.sampled_from(SEEDS),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40),
)
def test_random_header_values(seed: bytes, text: str) -> None:
    """A random value (any latin-1 text) for each header of a valid message in turn."""
    head, sep, body = seed.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i in range(1, len(lines)):
        name, colon, _ = lines[i].partition(b":")
        if colon:
            changed = [*lines[:i], name + b": " + text.encode("latin-1"), *lines[i + 1 :]]
            exercise(b"\r\n".join(changed) + sep + body)


def test_seeds_round_trip() -> None:
    for data in SEEDS:
        exercise(data)


# --- fast paths agree with the exact ones ---------------------------------------------

# fragments that hit the edges of the fast-path patterns
TOKEN = st.sampled_from(["a", "tag", "branch", "Tag", "+sip.instance", "reg-id", "x!y", "B"])
VALUE = st.sampled_from(
    [
        "1",
        "z9hG4bK-1",
        "abc",
        "[::1]",
        "2001:db8::1",
        '"q"',
        '"a;b"',
        '"a,b"',
        '""',
        '"<u:1>"',
        '"a\\"b"',
        "a b",
        "a,b",
        "",
        " 1",
        "1 ",
        "<x>",
        "\u00e9",
        '"x',
        "%41",
    ]
)
SEP = st.sampled_from([";", " ;", "; ", ";;", " ; "])


@st.composite
def param_text(draw: st.DrawFn) -> str:
    out = ""
    for _ in range(draw(st.integers(0, 4))):
        out += draw(SEP) + draw(TOKEN)
        if draw(st.booleans()):
            out += draw(st.sampled_from(["=", " = ", "= "])) + draw(VALUE)
    return out


def outcome(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except ParseError:
        return ParseError


@SETTINGS
@given(
    st.sampled_from(
        ["", '"Alice" ', "Bob ", '"a \\"q\\"" ', "tok1 tok2", '"x"', "caller", '" <" ', "a,b "]
    ),
    st.sampled_from(
        ["sip:a@b", "sip:1001@192.0.2.1:5060", "sip:a@b;lr", " sip:a@b", "sip:a b", "tel:+1"]
    ),
    param_text(),
)
def test_name_addr_fast_equals_exact(display: str, uri: str, params: str) -> None:
    from regswitch.sip.headers import _parse_name_addr_exact, parse_name_addr

    value = f"{display}<{uri}>{params}"
    assert outcome(lambda: parse_name_addr(value)) == outcome(lambda: _parse_name_addr_exact(value))


@SETTINGS
@given(
    st.sampled_from(["UDP", "tcp", "TLS", "WS"]),
    st.sampled_from(["192.0.2.1", "h.example.com", "[2001:db8::1]", "-h", "h_1", "[::1", "h!"]),
    st.sampled_from(["", ":5060", ":0", ":65536", ":99999", ":", ":5x"]),
    param_text(),
)
def test_via_fast_equals_exact(transport: str, host: str, port: str, params: str) -> None:
    from regswitch.sip.headers import _parse_via_exact, parse_via

    value = f"SIP/2.0/{transport} {host}{port}{params}"
    assert outcome(lambda: parse_via(value)) == outcome(lambda: _parse_via_exact(value))


@SETTINGS
@given(
    st.sampled_from(["", "alice@", "a:pw@", "a%41@", "a;b@", ":@", "a b@", "\u00e9@", "+1-2@"]),
    st.sampled_from(["example.com", "192.0.2.1", "[2001:db8::1]", "-x", "x-", "a..b", ".a", "_s"]),
    st.sampled_from(["", ":5060", ":0", ":65536", ":"]),
    st.sampled_from(
        ["", ";lr", ";transport=TCP", ";a=b;c", ";;", ";", ";a=", ";%41=1", ";a=b?x=y"]
    ),
)
def test_uri_fast_equals_exact(user: str, host: str, port: str, params: str) -> None:
    from regswitch.sip.uri import _parse_sip, parse_uri

    text = f"sip:{user}{host}{port}{params}"
    assert outcome(lambda: parse_uri(text)) == outcome(lambda: _parse_sip(text, "sip", text[4:]))


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["username", "Realm", "nonce", "uri", "x-odd", "qop", "nc", "bad name"]
            ),
            st.sampled_from(
                [
                    '"v"',
                    '"a, b"',
                    '""',
                    "MD5",
                    "auth",
                    "00000001",
                    "SHA-256",
                    "a b",
                    '"x',
                    "tok/en",
                    "",
                    '"a"b',
                ]
            ),
            st.sampled_from(["=", " = ", "="]),
        ),
        max_size=6,
    ),
    st.sampled_from([", ", ",", " , ", ",, ", " ,"]),
)
def test_auth_fast_equals_exact(items: list[tuple[str, str, str]], sep: str) -> None:
    from regswitch.sip.headers import _auth_params_exact, _auth_params_fast

    rest = sep.join(f"{name}{eq}{value}" for name, value, eq in items)
    fast = _auth_params_fast(rest)
    if fast is not None:
        assert fast == outcome(lambda: _auth_params_exact(rest.strip(" \t")))


# --- no input makes the parser quadratic ---------------------------------------------

PATHOLOGICAL = {
    "list of unbalanced quotes": lambda n: 'Contact: "' + ",a" * n,
    "list of unclosed <": lambda n: "Contact: <" + ",a" * n,
    "params after an open quote": lambda n: 'Contact: <sip:a@b> ;a="' + ";a" * n,
    "escaped credentials": lambda n: "Authorization: Digest " + 'a="b\\"", ' * n,
    "empty credentials": lambda n: "Authorization: Digest " + "," * n,
    "folded lines": lambda n: "Subject: a" + "\r\n b" * n,
    "contacts": lambda n: "Contact: " + "<sip:a@b>," * n,
    "headers": lambda n: "X-A: b\r\n" * n,
}


def _cpu_seconds(line: str) -> float:
    data = (
        "REGISTER sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
        f"{line}\r\nContent-Length: 0\r\n\r\n"
    ).encode("latin-1")
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        exercise(data)
        best = min(best, time.process_time() - start)
    return best


def test_pathological_inputs_are_linear() -> None:
    """8x the input must cost far less than 64x the time (what quadratic gives)."""
    for name, make in PATHOLOGICAL.items():
        small = max(_cpu_seconds(make(1000)), 1e-4)
        large = _cpu_seconds(make(8000))
        assert large / small < 30, f"{name}: {small:.4f}s -> {large:.4f}s"
