"""Transport vocabulary: flows, listen addresses, limits, counters.

Transports move bytes and know addresses; they know nothing of SIP beyond
stream framing. Everything above talks to them through a `DataHandler`
(bytes in) and `TransportManager.send` (bytes out).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from regswitch.sip.flow import Flow

__all__ = [
    "STREAM_TRANSPORTS",
    "TRANSPORTS",
    "DataHandler",
    "Flow",
    "ListenSpec",
    "ListenerInfo",
    "TransportLimits",
    "TransportStats",
    "format_hostport",
]

TRANSPORTS = ("udp", "tcp", "tls")
STREAM_TRANSPORTS = ("tcp", "tls")

DataHandler = Callable[[bytes, Flow], None]
"""Called with each datagram / framed stream message and the flow it came on.

It runs on the event loop and must not block; exceptions are caught, logged
and counted by the transport.
"""

_USAGE = "expected TRANSPORT:HOST:PORT, e.g. udp:127.0.0.1:5060, tcp:0.0.0.0:5060, udp:[::1]:5060"


def format_hostport(host: str, port: int) -> str:
    """`host:port`, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """Where to listen: transport ("udp", "tcp", "tls"), host, port (0 = any free)."""

    transport: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {self.transport!r}: use one of {TRANSPORTS}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range 0-65535")
        if not self.host:
            raise ValueError("empty host")

    @classmethod
    def parse(cls, text: str) -> ListenSpec:
        """Parse `udp:127.0.0.1:5060`, `tls:[::1]:5061`, `tcp:localhost:5060`."""
        raw = text.strip()
        transport, sep, rest = raw.partition(":")
        if not sep or not rest:
            raise ValueError(f"bad listen address {text!r}: {_USAGE}")
        transport = transport.lower()
        if transport not in TRANSPORTS:
            raise ValueError(
                f"bad listen address {text!r}: unknown transport {transport!r} "
                f"(use udp, tcp or tls)"
            )
        if rest.startswith("["):
            host, bracket, port_part = rest[1:].partition("]")
            if not bracket or not port_part.startswith(":"):
                raise ValueError(f"bad listen address {text!r}: {_USAGE}")
            port_text = port_part[1:]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(
                    f"bad listen address {text!r}: {host!r} is not an IPv6 address"
                ) from None
        else:
            host, sep, port_text = rest.rpartition(":")
            if not sep:
                raise ValueError(f"bad listen address {text!r}: missing port; {_USAGE}")
            if ":" in host:
                raise ValueError(
                    f"bad listen address {text!r}: put IPv6 addresses in brackets, "
                    f"e.g. {transport}:[::1]:5060"
                )
        if not host or any(c.isspace() for c in host):
            raise ValueError(f"bad listen address {text!r}: bad host; {_USAGE}")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"bad listen address {text!r}: port must be 0-65535")
        return cls(transport, host, int(port_text))

    def __str__(self) -> str:
        return f"{self.transport}:{format_hostport(self.host, self.port)}"


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """A bound listener, as the server prints it."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{format_hostport(self.host, self.port)}"


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds that keep a bad peer from exhausting memory or descriptors.

    Per connection, a framer holds at most max_message_stream + one read and
    a slow reader at most write_buffer_high; max_connections of each would be
    10,000 x (64 kB + 1 MB). So the total over all connections is bounded too:
    above half of max_stream_buffered the idle and half-sent connections go
    early (pressure_idle_timeout, pressure_message_timeout); above all of it,
    the connections holding the most bytes are closed until 3/4 remain.
    """

    max_message_udp: int = 65535
    max_message_stream: int = 65536
    # SO_REUSEPORT on the listeners: worker processes of one host share the ports,
    # the kernel spreading flows over them (one phone's packets to one worker)
    reuse_port: bool = False
    tcp_idle_timeout: float = 600.0
    # A started stream message must be complete within this (slow trickle).
    message_timeout: float = 30.0
    max_connections: int = 10000
    max_connections_per_ip: int = 100
    socket_buffer: int = 4 * 1024 * 1024
    # A peer whose unread output passes this is closed (it is not reading).
    write_buffer_high: int = 1024 * 1024
    # Read + write bytes buffered over all TCP/TLS connections.
    max_stream_buffered: int = 64 * 1024 * 1024
    # Above RFC 5626's recommended TCP keepalive interval (95-120 s), so a
    # phone that keeps its flow alive is not taken for idle.
    pressure_idle_timeout: float = 150.0
    pressure_message_timeout: float = 5.0
    connect_timeout: float = 5.0
    tls_handshake_timeout: float = 10.0
    # UDP keeps one Flow per source address; FIFO-evicted beyond this.
    udp_flow_cache: int = 100_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool) and value <= 0:  # a switch (reuse_port) may be off
                raise ValueError(f"TransportLimits.{f.name} must be positive")


@dataclass(slots=True)
class TransportStats:
    """Counters shared by all listeners and connections of one manager."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    udp_bytes_in: int = 0
    udp_bytes_out: int = 0
    udp_oversize_dropped: int = 0
    udp_send_dropped: int = 0
    udp_errors: int = 0
    stream_messages_in: int = 0
    stream_bytes_in: int = 0
    stream_bytes_out: int = 0
    keepalive_pings: int = 0  # RFC 5626 double-CRLF pings on streams (answered CRLF)
    udp_keepalives: int = 0  # datagrams of nothing but CR/LF (phones' NAT keepalives)
    connections_open: int = 0
    connections_accepted: int = 0
    connections_outgoing: int = 0
    connections_refused: int = 0
    connections_closed: int = 0
    connect_failures: int = 0
    idle_closed: int = 0
    message_timeouts: int = 0
    slow_reader_closed: int = 0
    stream_buffered_bytes: int = 0  # now, over all TCP/TLS connections
    stream_buffered_peak: int = 0
    pressure_closed: int = 0  # closed early or shed to keep stream_buffered in bounds
    framing_errors: int = 0
    send_failures: int = 0
    handler_errors: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class ThrottledLog:
    """Log at most `burst` records per `window` seconds, then count silently.

    A peer that makes the handler raise on every packet must not flood the log.
    """

    __slots__ = ("_burst", "_count", "_logger", "_start", "_suppressed", "_window")

    def __init__(self, logger: logging.Logger, burst: int = 10, window: float = 60.0) -> None:
        self._logger = logger
        self._burst = burst
        self._window = window
        self._start = 0.0
        self._count = 0
        self._suppressed = 0

    def exception(self, msg: str, *args: object) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True)

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._start >= self._window:
            if self._suppressed:
                self._logger.warning("%d similar messages not logged", self._suppressed)
            self._start, self._count, self._suppressed = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._logger.log(level, msg, *args, exc_info=exc_info)
        else:
            self._suppressed += 1
