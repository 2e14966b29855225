"""UDP listener: one DatagramProtocol per bound socket.

The hot path is `datagram_received`: count, size check, cached Flow lookup,
handler call. No allocation per datagram beyond what asyncio already does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from regswitch.transport.base import (
    DataHandler,
    Flow,
    ListenerInfo,
    ThrottledLog,
    TransportLimits,
    TransportStats,
)

log = logging.getLogger("regswitch.transport.udp")

Address = tuple[str, int]
_CRLF_START = (b"\r", b"\n")


def set_socket_buffers(sock: socket.socket, size: int) -> tuple[int, int]:
    """Ask for `size`-byte receive and send buffers; returns what the kernel gave.

    Linux caps SO_RCVBUF at net.core.rmem_max; SO_*BUFFORCE bypasses the cap
    when the process has CAP_NET_ADMIN, so try it first. Best effort: small
    buffers cost datagram loss under bursts, not correctness.
    """
    for force, plain in (
        (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
        (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF),
    ):
        done = False
        if force is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
                done = True
            except OSError:
                pass
        if not done:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError as exc:
                log.debug("cannot set socket buffer option %s: %s", plain, exc)
    rcv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    snd = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    return rcv, snd


class UdpProtocol(asyncio.DatagramProtocol):
    """Delivers datagrams to the handler with a Flow per remote address."""

    def __init__(
        self,
        handler: DataHandler,
        limits: TransportLimits,
        stats: TransportStats,
    ) -> None:
        self._handler = handler
        self._max = limits.max_message_udp
        self._cache_size = limits.udp_flow_cache
        self._stats = stats
        self._flows: dict[tuple[object, ...], Flow] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._paused = False
        self._out: list[tuple[bytes, Address]] = []  # see send()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._errors = ThrottledLog(log)
        self.local: Address = ("", 0)

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Neither loop's datagram transport subclasses asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._loop = asyncio.get_running_loop()
        name = transport.get_extra_info("sockname")
        self.local = (name[0], name[1])

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        stats = self._stats
        stats.datagrams_in += 1
        stats.udp_bytes_in += len(data)
        if len(data) > self._max:
            stats.udp_oversize_dropped += 1
            return
        if data[:1] in _CRLF_START and not data.strip(b"\r\n"):
            # a NAT keepalive (linphone, pjsip send CRLF CRLF): not a message,
            # not a parse error, and nothing to answer over UDP
            stats.udp_keepalives += 1
            return
        flow = self._flows.get(addr)
        if flow is None:
            flow = self._new_flow(addr)
        try:
            self._handler(data, flow)
        except Exception:
            stats.handler_errors += 1
            self._errors.exception("UDP handler failed for a datagram from %s", flow.remote)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends after a sendto: the peer is gone,
        # which the transaction layer learns from its own timeouts.
        self._stats.udp_errors += 1
        log.debug("UDP error on %s: %s", self.local, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if exc is not None:
            log.warning("UDP listener %s lost: %s", self.local, exc)

    def pause_writing(self) -> None:
        # The kernel send buffer is full and asyncio started queueing: drop
        # instead of buffering without bound (UDP loss is SIP's normal case).
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    # API

    def _new_flow(self, addr: tuple[object, ...]) -> Flow:
        flows = self._flows
        if len(flows) >= self._cache_size:
            del flows[next(iter(flows))]  # FIFO eviction; dicts keep insertion order
        host, port = addr[0], addr[1]
        assert isinstance(host, str) and isinstance(port, int)
        flow = Flow("udp", (host, port), self.local)
        flows[addr] = flow
        return flow

    def flow_for(self, remote: Address) -> Flow:
        """The (cached) flow from this listener to `remote`."""
        return self._flows.get(remote) or self._new_flow(remote)

    def send(self, data: bytes, remote: Address) -> bool:
        """Queue `data` for `remote`; False if the listener cannot send now.

        Datagrams go out together once the loop has handled what it read in
        this turn (up to 32 datagrams per wake-up with uvloop). A `sendto`
        that wakes a peer asleep in its poll pays for that wake-up, a costly
        one in a VM; back to back, only the first does. Under the REGISTER
        benchmark this cut the CPU per registration by about 12 % and raised
        the best rate from 6,000 to 8,000/s (README, "Benchmarks"), for well
        under a millisecond of added latency.
        """
        transport = self._transport
        if transport is None or self._paused:
            self._stats.udp_send_dropped += 1
            return False
        out = self._out
        out.append((data, remote))
        if len(out) == 1 and self._loop is not None:
            self._loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Send what is queued now (a send error drops that datagram only)."""
        out, self._out = self._out, []
        transport = self._transport
        stats = self._stats
        for data, remote in out:
            if transport is None or self._paused:
                stats.udp_send_dropped += 1
                continue
            try:
                transport.sendto(data, remote)
            except (OSError, ValueError, RuntimeError) as exc:
                stats.udp_send_dropped += 1
                log.debug("UDP sendto %s failed: %s", remote, exc)
                continue
            stats.datagrams_out += 1
            stats.udp_bytes_out += len(data)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self.flush()  # e.g. the BYEs of calls ended by a shutdown
            self._transport.close()


async def open_udp(
    host: str,
    port: int,
    handler: DataHandler,
    limits: TransportLimits,
    stats: TransportStats,
) -> tuple[UdpProtocol, ListenerInfo]:
    """Bind a UDP socket with large buffers and start receiving on it."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        if family == socket.AF_INET6:
            # Keep v4 and v6 listeners separate so remote addresses are never
            # v4-mapped (::ffff:a.b.c.d) and flows compare cleanly.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        rcv, snd = set_socket_buffers(sock, limits.socket_buffer)
        if limits.reuse_port and port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.setblocking(False)
        _, protocol = await loop.create_datagram_endpoint(
            lambda: UdpProtocol(handler, limits, stats), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    if rcv < limits.socket_buffer:
        log.info(
            "UDP %s: receive buffer %d bytes (asked %d; raise net.core.rmem_max)",
            protocol.local,
            rcv,
            limits.socket_buffer,
        )
    log.debug("UDP %s buffers rcv=%d snd=%d", protocol.local, rcv, snd)
    return protocol, ListenerInfo("udp", protocol.local[0], protocol.local[1])
