"""An HEPv3 decoder written from the protocol description, independent of
regswitch.transport.hep, and a UDP collector that gathers decoded packets.

HEPv3: "HEP3", total length (uint16, network order), then chunks of
vendor id (uint16), type id (uint16), length (uint16, counting these 6
bytes) and value. Generic chunks (vendor 0): 1 IP family (uint8: 2 IPv4,
10 IPv6), 2 IP protocol (uint8), 3/4 IPv4 source/destination (4 bytes),
5/6 IPv6 source/destination (16 bytes), 7/8 source/destination port
(uint16), 9 timestamp seconds (uint32), 10 timestamp microseconds (uint32),
11 protocol type (uint8, 1 = SIP), 12 capture agent id (uint32),
14 authentication key, 15 payload, 17 correlation id.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# Fixed value lengths of the generic chunks with a numeric or address value.
FIXED_LENGTHS = {1: 1, 2: 1, 3: 4, 4: 4, 5: 16, 6: 16, 7: 2, 8: 2, 9: 4, 10: 4, 11: 1, 12: 4}
NAMES = {
    1: "family", 2: "ip_proto", 3: "src_ip", 4: "dst_ip", 5: "src_ip", 6: "dst_ip",
    7: "src_port", 8: "dst_port", 9: "ts_sec", 10: "ts_usec", 11: "proto_type",
    12: "capture_id", 14: "auth_key", 15: "payload", 17: "correlation_id",
}  # fmt: skip


class HepFormatError(ValueError):
    pass


@dataclass
class HepPacket:
    chunks: dict[str, Any] = field(default_factory=dict)
    types: list[int] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.chunks[key]

    @property
    def payload(self) -> bytes:
        value: bytes = self.chunks["payload"]
        return value

    @property
    def first_line(self) -> str:
        return self.payload.split(b"\r\n", 1)[0].decode()


def decode(data: bytes) -> HepPacket:
    if len(data) < 6 or data[:4] != b"HEP3":
        raise HepFormatError("no HEP3 magic")
    (total,) = struct.unpack("!H", data[4:6])
    if total != len(data):
        raise HepFormatError(f"total length {total} != datagram length {len(data)}")
    packet = HepPacket()
    offset = 6
    while offset < total:
        if total - offset < 6:
            raise HepFormatError("truncated chunk header")
        vendor, type_id, length = struct.unpack("!HHH", data[offset : offset + 6])
        if length < 6 or offset + length > total:
            raise HepFormatError(f"chunk {type_id} has bad length {length}")
        value = data[offset + 6 : offset + length]
        offset += length
        if vendor != 0:
            continue
        if type_id in FIXED_LENGTHS and len(value) != FIXED_LENGTHS[type_id]:
            raise HepFormatError(f"chunk {type_id} value is {len(value)} bytes")
        packet.types.append(type_id)
        name = NAMES.get(type_id, f"chunk{type_id}")
        if type_id in (3, 4, 5, 6):
            packet.chunks[name] = str(ipaddress.ip_address(value))
        elif type_id in FIXED_LENGTHS:
            packet.chunks[name] = int.from_bytes(value, "big")
        else:
            packet.chunks[name] = value
    return packet


class HepCollector:
    """A UDP socket on 127.0.0.1 that decodes every datagram (a thread reads it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.packets: list[HepPacket] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"udp:127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                try:
                    self.packets.append(decode(data))
                except HepFormatError as exc:
                    self.errors.append(str(exc))

    def snapshot(self) -> list[HepPacket]:
        with self._lock:
            return list(self.packets)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[HepPacket]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            packets = self.snapshot()
            if predicate(packets):
                return packets
            time.sleep(0.05)
        raise AssertionError(
            f"HEP packets never matched; got {[p.first_line for p in self.snapshot()]}"
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
