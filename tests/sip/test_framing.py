"""StreamFramer: Content-Length framing and RFC 5626 keepalives, no sockets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regswitch.sip.errors import ParseError
from regswitch.sip.framing import KEEPALIVE_PING, FramingError, StreamFramer


def msg(body: bytes = b"", *, length: int | None = None, extra: str = "") -> bytes:
    cl = len(body) if length is None else length
    head = (
        "OPTIONS sip:a@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
        "Call-ID: c1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        f"Content-Length: {cl}\r\n\r\n"
    )
    return head.encode() + body


def no_cl(body: bytes = b"") -> bytes:
    return b"OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n" + body


def feed_bytewise(framer: StreamFramer, data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    return out


def test_whole_message_in_one_read() -> None:
    m = msg(b"v=0\r\n")
    assert StreamFramer().feed(m) == [m]


def test_partial_header_then_rest() -> None:
    f = StreamFramer()
    m = msg(b"hello")
    assert f.feed(m[:30]) == []
    assert f.buffered == 30
    assert f.feed(m[30:]) == [m]
    assert f.buffered == 0 and f.idle


def test_blank_line_split_across_reads() -> None:
    m = msg()
    for cut in range(len(m) - 4, len(m)):
        f = StreamFramer()
        assert f.feed(m[:cut]) == []
        assert f.feed(m[cut:]) == [m]


def test_body_split_across_reads() -> None:
    body = b"x" * 1000
    m = msg(body)
    f = StreamFramer()
    head_len = len(m) - len(body)
    assert f.feed(m[: head_len + 10]) == []
    assert f.feed(m[head_len + 10 : head_len + 500]) == []
    assert f.feed(m[head_len + 500 :]) == [m]


def test_byte_at_a_time() -> None:
    m1, m2 = msg(b"abc"), msg(b"")
    assert feed_bytewise(StreamFramer(), m1 + m2) == [m1, m2]


def test_pipelined_messages_and_tail() -> None:
    m1, m2, m3 = msg(b"one"), msg(b""), msg(b"three!")
    f = StreamFramer()
    assert f.feed(m1 + m2 + m3[:20]) == [m1, m2]
    assert f.feed(m3[20:] + m1) == [m3, m1]


def test_missing_content_length_means_empty_body() -> None:
    f = StreamFramer()
    m = no_cl()
    assert f.feed(m + m) == [m, m]


def test_compact_and_case_insensitive_content_length() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\nl  : 4\r\n\r\n"
    assert StreamFramer().feed(head + b"body" + head + b"body") == [head + b"body"] * 2
    head2 = b"MESSAGE sip:a@b SIP/2.0\r\nCONTENT-LENGTH:3\r\n\r\n"
    assert StreamFramer().feed(head2 + b"abc") == [head2 + b"abc"]


def test_header_starting_with_l_is_not_content_length() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nLocation-Info: 7\r\nLx: 9\r\nContent-Length: 2\r\n\r\n"
    assert StreamFramer().feed(head + b"ok") == [head + b"ok"]


def test_folded_content_length() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length:\r\n  2\r\n\r\n"
    assert StreamFramer().feed(head + b"ok") == [head + b"ok"]


def test_bare_lf_header_block_tolerated() -> None:
    m = b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 2\n\nok"
    assert StreamFramer().feed(m) == [m]


def test_bare_lf_message_pipelined_with_crlf_message() -> None:
    lf = b"OPTIONS sip:a@b SIP/2.0\nContent-Length: 0\n\n"
    crlf = msg(b"\r\n\r\n")
    assert StreamFramer().feed(lf + crlf + lf) == [lf, crlf, lf]
    assert feed_bytewise(StreamFramer(), lf + crlf) == [lf, crlf]


def test_stray_cr_before_start_line_skipped() -> None:
    m = msg()
    assert StreamFramer().feed(b"\r" + m) == [m]
    f = StreamFramer()
    assert f.feed(b"\r") == []
    assert f.feed(m) == [m]


def test_double_crlf_is_a_ping() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == [KEEPALIVE_PING]
    assert f.buffered == 0


def test_ping_split_across_reads() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n") == []
    assert f.feed(b"\r\n") == [KEEPALIVE_PING]
    f = StreamFramer()
    assert feed_bytewise(f, b"\r\n\r\n") == [KEEPALIVE_PING]


def test_lone_crlf_pong_is_ignored() -> None:
    f = StreamFramer()
    m = msg()
    assert f.feed(b"\r\n") == []  # held: could be half a ping
    assert f.feed(m) == [m]
    assert f.feed(b"\r\n" + m) == [m]


def test_pings_between_messages_and_coalesced() -> None:
    m = msg(b"x")
    f = StreamFramer()
    assert f.feed(m + b"\r\n\r\n" + m) == [m, KEEPALIVE_PING, m]
    assert f.feed(b"\r\n\r\n" * 50) == [KEEPALIVE_PING]


def test_leading_crlf_before_message_skipped() -> None:
    m = msg()
    assert StreamFramer().feed(b"\r\n" + m) == [m]
    assert StreamFramer().feed(b"\n\n\n" + m) == [m]


def test_body_bytes_looking_like_crlf_are_body() -> None:
    body = b"\r\n\r\n\r\n"
    m = msg(body)
    assert StreamFramer().feed(m + m) == [m, m]


def test_oversize_header_raises_with_bounded_buffer() -> None:
    f = StreamFramer(max_message=1024)
    f.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(FramingError) as info:
        for _ in range(100):
            f.feed(b"X-Junk: " + b"a" * 100 + b"\r\n")
            assert f.buffered <= 1024 + 110
    assert info.value.status_hint == 513
    assert f.buffered == 0
    # the framer stays failed; the connection is to be closed
    with pytest.raises(FramingError):
        f.feed(msg())


def test_huge_single_read_without_blank_line() -> None:
    f = StreamFramer(max_message=4096)
    with pytest.raises(FramingError):
        f.feed(b"A" * 10000)


def test_content_length_too_large() -> None:
    f = StreamFramer(max_message=2048)
    with pytest.raises(FramingError, match="exceeds"):
        f.feed(msg(length=5000))


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "1234567890", "", "0x10"])
def test_bad_content_length(value: str) -> None:
    m = f"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: {value}\r\n\r\n".encode()
    with pytest.raises(FramingError, match="Content-Length"):
        StreamFramer().feed(m)


def test_conflicting_content_lengths() -> None:
    m = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab"
    with pytest.raises(FramingError, match="conflicting"):
        StreamFramer().feed(m)
    same = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nab"
    assert StreamFramer().feed(same) == [same]


def test_framing_error_is_a_parse_error() -> None:
    assert issubclass(FramingError, ParseError)


def test_message_at_exact_limit_passes() -> None:
    body_len = 2000 - len(msg(b"x" * 1000)) + 1000
    m = msg(b"y" * body_len)
    assert len(m) == 2000
    assert StreamFramer(max_message=2000).feed(m) == [m]
    with pytest.raises(FramingError):
        StreamFramer(max_message=1999).feed(m)


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
    pings=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_any_split_yields_the_same_messages(
    bodies: list[bytes], cuts: list[int], pings: list[bool]
) -> None:
    stream = b""
    expected: list[object] = []
    for body, ping in zip(bodies, pings, strict=False):
        if ping:
            stream += b"\r\n\r\n"
            if not expected or expected[-1] is not KEEPALIVE_PING:
                expected.append(KEEPALIVE_PING)
        m = msg(body)
        stream += m
        expected.append(m)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    f = StreamFramer()
    got: list[object] = []
    for a, b in itertools.pairwise(points):
        got += f.feed(stream[a:b])
    # Splits may separate pings that one read would coalesce; compare messages
    # and that every expected ping shows up at least once in order.
    assert [g for g in got if g is not KEEPALIVE_PING] == [
        e for e in expected if e is not KEEPALIVE_PING
    ]
    assert got.count(KEEPALIVE_PING) >= expected.count(KEEPALIVE_PING)
    assert f.buffered == 0 and f.idle


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_garbage_raises_only_framing_error_and_stays_bounded(chunks: list[bytes]) -> None:
    f = StreamFramer(max_message=512)
    for chunk in chunks:
        try:
            out = f.feed(chunk)
        except FramingError:
            return
        assert all(isinstance(o, bytes) or o is KEEPALIVE_PING for o in out)
        assert f.buffered <= 512 + len(chunk)
