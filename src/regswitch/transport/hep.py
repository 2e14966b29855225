"""HEP capture: a copy of every SIP message received and sent, as HEPv3 over UDP.

Homer, sngrep and heplify-server take HEP (the Homer Encapsulation Protocol,
version 3) from Kamailio, OpenSIPS, FreeSWITCH and Asterisk alike; this is the
same feed from regswitch. A HEPv3 packet is the 4 bytes "HEP3", its total
length (uint16, network order) and a run of chunks, each a vendor id (0 for
the generic chunks), a type id and a length that counts its own 6-byte
header, then the value.

The copy must never slow or block the SIP path. The event loop only builds
the packets (the chunks that are the same for every message of a flow are
built once) and, once per loop turn, hands that turn's packets to a sender
thread: the send syscall, about 5 µs per datagram through the loopback stack
alone, runs beside the loop (the GIL is released while the kernel works), not
in it. The socket is non-blocking; a packet that does not fit in its buffer is
dropped and counted, never retried, and so is a turn's batch that finds the
sender too far behind (MAX_BACKLOG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable

from regswitch.transport.base import DataHandler, Flow

log = logging.getLogger("regswitch.hep")

# Generic chunk type ids (vendor 0x0000) of HEPv3.
IP_FAMILY = 0x0001
IP_PROTO = 0x0002
IPV4_SRC = 0x0003
IPV4_DST = 0x0004
IPV6_SRC = 0x0005
IPV6_DST = 0x0006
SRC_PORT = 0x0007
DST_PORT = 0x0008
TIME_SEC = 0x0009
TIME_USEC = 0x000A
PROTO_TYPE = 0x000B
CAPTURE_ID = 0x000C
AUTH_KEY = 0x000E
PAYLOAD = 0x000F
CORRELATION_ID = 0x0011

PROTO_TYPE_SIP = 1
# HEP has no TLS protocol number: collectors show TLS as TCP (Kamailio's
# siptrace does the same); the payload is the decrypted SIP either way.
_IP_PROTO = {"udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP, "tls": socket.IPPROTO_TCP}

_U8 = struct.Struct("!HHHB")
_U16 = struct.Struct("!HHHH")
_U32 = struct.Struct("!HHHI")
_HEAD = struct.Struct("!HHH")
_MAGIC = struct.Struct("!4sH")
_TIME = struct.Struct("!HHHIHHHI")
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)

# A SIP message is at most 64 KiB; with the chunks a packet must stay a datagram.
MAX_PACKET = 65507
# Packets handed to the sender thread and not yet sent, at most: a collector
# slower than the switch costs copies, never memory without bound.
MAX_BACKLOG = 20_000


def _chunk(type_id: int, value: bytes) -> bytes:
    return _HEAD.pack(0, type_id, 6 + len(value)) + value


def call_id_of(message: bytes) -> bytes:
    """The Call-ID header's value (long or compact form), or b"" if none."""
    head_end = message.find(b"\r\n\r\n")
    if head_end < 0:
        head_end = len(message)
    at = message.find(b"\r\nCall-ID: ", 0, head_end)  # the usual spelling: no regex
    if at >= 0:
        end = message.find(b"\r\n", at + 11)
        return message[at + 11 : end if 0 <= end <= head_end else head_end].strip()
    found = _CALL_ID.search(message, 0, head_end)
    return found.group(1).strip() if found else b""


def _address(host: str) -> tuple[int, bytes]:
    """(family, packed) of an IP literal; 0.0.0.0 for anything else (a name)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return socket.AF_INET, b"\0\0\0\0"
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), ip.packed


def encode_hep3(
    payload: bytes,
    *,
    transport: str,
    src: tuple[str, int],
    dst: tuple[str, int],
    timestamp: float,
    capture_id: int,
    password: bytes = b"",
    correlation: bytes = b"",
) -> bytes:
    """One HEPv3 packet carrying `payload` (SIP) sent from `src` to `dst`."""
    head = _route_chunks(transport, src, dst) + _agent_chunks(capture_id, password)
    return _packet(head, timestamp, correlation, payload)


def _packet(head: bytes, timestamp: float, correlation: bytes, payload: bytes) -> bytes:
    """The packet around `head` (the chunks that do not change per message)."""
    seconds = int(timestamp)
    micros = int((timestamp - seconds) * 1_000_000)
    size = 6 + len(head) + 20 + 6 + len(payload)
    if correlation:
        size += 6 + len(correlation)
        return b"".join((
            _MAGIC.pack(b"HEP3", size), head,
            _TIME.pack(0, TIME_SEC, 10, seconds & 0xFFFFFFFF, 0, TIME_USEC, 10, micros),
            _HEAD.pack(0, CORRELATION_ID, 6 + len(correlation)), correlation,
            _HEAD.pack(0, PAYLOAD, 6 + len(payload)), payload,
        ))  # fmt: skip
    return b"".join((
        _MAGIC.pack(b"HEP3", size), head,
        _TIME.pack(0, TIME_SEC, 10, seconds & 0xFFFFFFFF, 0, TIME_USEC, 10, micros),
        _HEAD.pack(0, PAYLOAD, 6 + len(payload)), payload,
    ))  # fmt: skip


def _route_chunks(transport: str, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """Family, protocol, addresses and ports: the same for every message of a
    flow (HepCapture builds them once per flow: parsing addresses is costly)."""
    family, src_ip = _address(src[0])
    dst_family, dst_ip = _address(dst[0])
    if dst_family != family:  # a v4-mapped peer on a v6 socket: say v6 for both
        family = socket.AF_INET6
        src_ip = _as_v6(src_ip)
        dst_ip = _as_v6(dst_ip)
    v6 = family == socket.AF_INET6
    return b"".join(
        (
            _U8.pack(0, IP_FAMILY, 7, 10 if v6 else 2),
            _U8.pack(0, IP_PROTO, 7, _IP_PROTO.get(transport, socket.IPPROTO_UDP)),
            _chunk(IPV6_SRC if v6 else IPV4_SRC, src_ip),
            _chunk(IPV6_DST if v6 else IPV4_DST, dst_ip),
            _U16.pack(0, SRC_PORT, 8, src[1] & 0xFFFF),
            _U16.pack(0, DST_PORT, 8, dst[1] & 0xFFFF),
        )
    )


def _agent_chunks(capture_id: int, password: bytes) -> bytes:
    chunks = _U8.pack(0, PROTO_TYPE, 7, PROTO_TYPE_SIP) + _U32.pack(
        0, CAPTURE_ID, 10, capture_id & 0xFFFFFFFF
    )
    return chunks + _chunk(AUTH_KEY, password) if password else chunks


def _as_v6(packed: bytes) -> bytes:
    return packed if len(packed) == 16 else b"\0" * 10 + b"\xff\xff" + packed


def parse_target(text: str) -> tuple[str, int]:
    """`udp:HOST:PORT` (HOST may be [v6]) -> (host, port); ValueError otherwise."""
    scheme, sep, rest = text.strip().partition(":")
    if not sep or scheme.lower() != "udp":
        raise ValueError(f"bad HEP address {text!r}: expected udp:HOST:PORT")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"bad HEP address {text!r}: expected udp:HOST:PORT")
    return host, int(port)


def resolve_target(text: str) -> tuple[int, tuple[str, int]]:
    """`udp:HOST:PORT` -> (address family, socket address); ValueError when bad
    or when HOST does not resolve (so a wrong setting stops the start, in one line)."""
    host, port = parse_target(text)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ValueError(f"bad HEP address {text!r}: cannot resolve {host}: {exc}") from None
    family, _, _, _, address = infos[0]
    return family, (str(address[0]), int(address[1]))


class HepCapture:
    """Copies messages to a HEP collector; `enabled` is the live switch
    (parameter HEP_CAPTURE). `sent` / `dropped` count packets.

    Each counter is written by one thread only (the loop: handed, dropped at
    hand-off; the sender: sent, dropped by the socket), so no lock is needed."""

    SOCKET_BUFFER = 4 * 1024 * 1024

    def __init__(
        self,
        target: tuple[str, int],
        *,
        capture_id: int = 0,
        password: str = "",
        clock: Callable[[], float] = time.time,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.target = target
        self.capture_id = capture_id
        self.password = password.encode()
        self.clock = clock
        self.loop = loop
        self.enabled = True
        self._handed = 0  # packets given to the sender (loop thread)
        self._refused = 0  # dropped before the sender: too large, backlog full (loop)
        self._sent = 0  # (sender thread)
        self._lost = 0  # refused by the socket (sender thread)
        self._outbox: deque[list[bytes] | None] = deque()  # None: stop
        self._wake = threading.Event()
        self._queue: list[bytes] = []
        self._flush_scheduled = False
        self._agent = _agent_chunks(capture_id, self.password)
        # (transport, source, destination) -> the chunks that are the same for each message
        self._heads: dict[tuple[str, tuple[str, int], tuple[str, int]], bytes] = {}
        family, address = resolve_target(f"udp:[{target[0]}]:{target[1]}")
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        with contextlib.suppress(OSError):  # above the system's maximum: that applies
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SOCKET_BUFFER)
        self._sock.connect(address)
        self._sender = threading.Thread(target=self._send_loop, name="hep-sender", daemon=True)
        self._sender.start()

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def dropped(self) -> int:
        return self._refused + self._lost

    # --- taps -------------------------------------------------------------------
    def sent_on(self, data: bytes, flow: Flow) -> None:
        if self.enabled:
            self._capture(data, flow.transport, flow.local, flow.remote)

    def tap_handler(
        self, handler: DataHandler, dropped: Callable[[str], bool] | None = None
    ) -> DataHandler:
        """`handler` with every message copied first, except those `dropped(ip)`
        says the handler will drop unread (a flood-blocked source's: copying a
        flood would cost the switch more than dropping it)."""

        def tapped(data: bytes, flow: Flow) -> None:
            if self.enabled and not (dropped is not None and dropped(flow.remote[0])):
                self._capture(data, flow.transport, flow.remote, flow.local)
            handler(data, flow)

        return tapped

    def _capture(
        self, data: bytes, transport: str, src: tuple[str, int], dst: tuple[str, int]
    ) -> None:
        if len(data) <= 4 and not data.strip():  # CRLF keepalives are not SIP messages
            return
        key = (transport, src, dst)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= 10_000:
                self._heads.clear()  # many peers: start over rather than grow
            head = self._heads[key] = _route_chunks(transport, src, dst) + self._agent
        packet = _packet(head, self.clock(), call_id_of(data), data)
        if len(packet) > MAX_PACKET:
            self._refused += 1
            return
        self._queue.append(packet)
        if not self._flush_scheduled:
            loop = self.loop
            if loop is None:
                self.flush()
                return
            self._flush_scheduled = True
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand what this loop turn queued to the sender thread."""
        self._flush_scheduled = False
        packets, self._queue = self._queue, []
        if not packets:
            return
        if self._handed - self._sent - self._lost + len(packets) > MAX_BACKLOG:
            self._refused += len(packets)
            return
        self._handed += len(packets)
        self._outbox.append(packets)
        self._wake.set()

    def _send_loop(self) -> None:
        """The sender thread: sends batches until close() hands it None."""
        outbox = self._outbox
        while True:
            self._wake.wait()
            self._wake.clear()
            while outbox:
                packets = outbox.popleft()
                if packets is None:
                    return
                self._send_batch(packets)

    def _send_batch(self, packets: list[bytes]) -> None:
        send = self._sock.send
        for number, packet in enumerate(packets):
            try:
                send(packet)
            except BlockingIOError:
                self._lost += len(packets) - number  # the buffer is full: the rest too
                return
            except OSError:
                # e.g. ECONNREFUSED from an earlier packet's ICMP: nobody listens
                self._lost += 1
                continue
            self._sent += 1

    def close(self) -> None:
        """Send what is queued, stop the sender thread, close the socket."""
        self.flush()
        self._outbox.append(None)
        self._wake.set()
        self._sender.join(timeout=5)
        self._sock.close()


class CapturingSender:
    """A sender (see endpoint.Sender) that copies what it sends to HEP."""

    def __init__(self, inner: object, capture: HepCapture) -> None:
        self._send: Callable[[bytes, Flow], bool] = inner.send  # type: ignore[attr-defined]
        self._capture = capture

    def send(self, data: bytes, flow: Flow) -> bool:
        ok = self._send(data, flow)
        if ok:
            self._capture.sent_on(data, flow)
        return ok
