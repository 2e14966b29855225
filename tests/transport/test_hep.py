"""HEPv3 encoding, checked with the test's own decoder (tests/support/hep.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from regswitch.sip.flow import Flow
from regswitch.transport.hep import (
    MAX_BACKLOG,
    CapturingSender,
    HepCapture,
    call_id_of,
    encode_hep3,
    parse_target,
)
from support.hep import HepCollector, decode

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK77\r\n"
    b"i: abc-123@10.0.0.7\r\n"
    b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
)


def test_ipv4_udp_packet_has_every_chunk_with_its_length() -> None:
    data = encode_hep3(
        REGISTER,
        transport="udp",
        src=("10.0.0.7", 5062),
        dst=("192.0.2.1", 5060),
        timestamp=1700000000.123456,
        capture_id=2001,
        password=b"secret",
        correlation=call_id_of(REGISTER),
    )
    packet = decode(data)
    assert packet.types == [1, 2, 3, 4, 7, 8, 11, 12, 14, 9, 10, 17, 15]
    assert packet["family"] == 2
    assert packet["ip_proto"] == 17
    assert (packet["src_ip"], packet["src_port"]) == ("10.0.0.7", 5062)
    assert (packet["dst_ip"], packet["dst_port"]) == ("192.0.2.1", 5060)
    assert packet["ts_sec"] == 1700000000
    assert abs(packet["ts_usec"] - 123456) <= 1
    assert packet["proto_type"] == 1
    assert packet["capture_id"] == 2001
    assert packet["auth_key"] == b"secret"
    assert packet["correlation_id"] == b"abc-123@10.0.0.7"  # compact form i: found
    assert packet.payload == REGISTER


def test_ipv6_tcp_and_tls_packets() -> None:
    for transport in ("tcp", "tls"):
        packet = decode(
            encode_hep3(
                REGISTER, transport=transport, src=("::1", 5061), dst=("2001:db8::5", 40000),
                timestamp=1.5, capture_id=0,
            )
        )  # fmt: skip
        assert packet["family"] == 10
        assert packet["ip_proto"] == 6
        assert packet["src_ip"] == "::1" and packet["dst_ip"] == "2001:db8::5"
        assert "auth_key" not in packet.chunks


def test_call_id_long_form_and_none() -> None:
    assert call_id_of(b"OPTIONS sip:x SIP/2.0\r\nCall-ID:  zz9 \r\n\r\n") == b"zz9"
    assert call_id_of(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n") == b""


@pytest.mark.parametrize(
    "bad", ["tcp:127.0.0.1:9060", "udp:127.0.0.1", "udp::9060", "x", "udp:h:0"]
)
def test_bad_targets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="HEP address"):
        parse_target(bad)


async def test_capture_copies_sent_and_received_and_obeys_the_switch() -> None:
    collector = HepCollector()
    capture = HepCapture(("127.0.0.1", collector.port), capture_id=7,
                         loop=asyncio.get_running_loop())  # fmt: skip
    try:
        flow = Flow("udp", ("127.0.0.9", 5070), ("127.0.0.1", 5060))
        got: list[bytes] = []
        capture.tap_handler(lambda data, f: got.append(data))(REGISTER, flow)

        class Inner:
            def send(self, data: bytes, flow: Flow) -> bool:
                return True

        CapturingSender(Inner(), capture).send(b"SIP/2.0 200 OK\r\nCall-ID: c1\r\n\r\n", flow)
        capture.tap_handler(lambda data, f: None)(b"\r\n\r\n", flow)  # keepalive: not SIP
        # a source the endpoint drops unread (flood-blocked): handed on, not copied
        blocked: list[bytes] = []
        capture.tap_handler(lambda data, f: blocked.append(data), lambda ip: ip == "127.0.0.9")(
            REGISTER, flow
        )
        assert blocked == [REGISTER]
        capture.enabled = False
        capture.tap_handler(lambda data, f: None)(REGISTER, flow)
        await asyncio.sleep(0)  # the queued packets go out after this loop turn
        packets = collector.wait_for(lambda p: len(p) >= 2, 5)
        assert got == [REGISTER]
        received, sent = packets
        assert (received["src_ip"], received["src_port"]) == ("127.0.0.9", 5070)
        assert (sent["src_ip"], sent["dst_port"]) == ("127.0.0.1", 5070)
        assert sent["correlation_id"] == b"c1" and sent["capture_id"] == 7
    finally:
        capture.close()  # joins the sender thread: its counters are final
        collector.close()
    assert capture.sent == 2 and capture.dropped == 0
    assert len(collector.packets) == 2 and not collector.errors


async def test_a_full_socket_drops_and_counts_instead_of_blocking() -> None:
    """What the kernel refuses (EAGAIN: the send buffer is full) is dropped, the
    rest of that turn's queue with it; nothing waits and nothing raises."""

    class FullAfter:
        def __init__(self, room: int) -> None:
            self.room = room

        def send(self, packet: bytes) -> int:
            if self.room == 0:
                raise BlockingIOError
            self.room -= 1
            return len(packet)

        def close(self) -> None:
            pass

    capture = HepCapture(("127.0.0.1", 9), loop=asyncio.get_running_loop())
    capture._sock.close()
    capture._sock = FullAfter(3)  # type: ignore[assignment]
    flow = Flow("udp", ("127.0.0.9", 5070), ("127.0.0.1", 5060))
    tap = capture.tap_handler(lambda data, f: None)
    for _ in range(10):
        tap(REGISTER, flow)
    capture.close()  # hands over the queue, then joins the sender thread
    assert (capture.sent, capture.dropped) == (3, 7)


async def test_a_sender_far_behind_drops_whole_turns_and_counts_them() -> None:
    """The loop never waits for the sender thread: past MAX_BACKLOG unsent
    packets a turn's batch is dropped at hand-off and counted."""
    release = threading.Event()

    class Stalled:
        def send(self, packet: bytes) -> int:
            release.wait(10)
            return len(packet)

        def close(self) -> None:
            pass

    capture = HepCapture(("127.0.0.1", 9), loop=asyncio.get_running_loop())
    capture._sock.close()
    capture._sock = Stalled()  # type: ignore[assignment]
    flow = Flow("udp", ("127.0.0.9", 5070), ("127.0.0.1", 5060))
    tap = capture.tap_handler(lambda data, f: None)
    for _ in range(MAX_BACKLOG):
        tap(REGISTER, flow)
    capture.flush()  # the backlog is now full: the sender is stuck on its first send
    tap(REGISTER, flow)
    capture.flush()
    assert capture.dropped == 1
    release.set()
    capture.close()
    assert (capture.sent, capture.dropped) == (MAX_BACKLOG, 1)
