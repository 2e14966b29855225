"""All listeners and connections behind one `send(data, flow)`.

The endpoint gives the manager a DataHandler for incoming bytes and calls
`send` for outgoing ones; it never touches sockets. Works on the stdlib loop
and on uvloop (the server installs uvloop's policy when available).
"""

from __future__ import annotations

import logging
import ssl

from regswitch.transport.base import (
    DataHandler,
    Flow,
    ListenerInfo,
    ListenSpec,
    TransportLimits,
    TransportStats,
)
from regswitch.transport.stream import Address, ClosedHandler, StreamHub
from regswitch.transport.udp import UdpProtocol, open_udp

log = logging.getLogger("regswitch.transport")


class TransportManager:
    """Owns UDP listeners and the TCP/TLS hub; routes `send` by flow.

    `ssl_context` is the TLS server context (`server_ssl_context(cert, key)`);
    `client_ssl_context` is used for outgoing TLS (default: no verification).
    `on_connection_closed(flow)` is called when an open TCP/TLS connection
    ends, e.g. to mark RFC 5626 flows of registrations as failed.
    """

    def __init__(
        self,
        handler: DataHandler,
        limits: TransportLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        client_ssl_context: ssl.SSLContext | None = None,
        on_connection_closed: ClosedHandler | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits or TransportLimits()
        self.stats = TransportStats()
        self._ssl = ssl_context
        self._client_ssl = client_ssl_context
        self._on_closed = on_connection_closed
        self._udp: list[UdpProtocol] = []
        self._udp_by_local: dict[Address, UdpProtocol] = {}
        self._hub: StreamHub | None = None
        self._listeners: list[ListenerInfo] = []
        self._closed = False

    @property
    def listeners(self) -> list[ListenerInfo]:
        """Bound listeners in the order they were opened."""
        return list(self._listeners)

    def _stream_hub(self) -> StreamHub:
        # Created on first use, inside the running loop it will belong to.
        if self._hub is None:
            self._hub = StreamHub(
                self.handler,
                self.limits,
                self.stats,
                server_ssl=self._ssl,
                client_ssl=self._client_ssl,
                on_closed=self._on_closed,
            )
        return self._hub

    async def listen(self, spec: ListenSpec | str) -> tuple[str, int]:
        """Bind a listener; returns the bound (host, port) (port 0 = ephemeral)."""
        if self._closed:
            raise RuntimeError("TransportManager is closed")
        if isinstance(spec, str):
            spec = ListenSpec.parse(spec)
        if spec.transport == "udp":
            protocol, info = await open_udp(
                spec.host, spec.port, self.handler, self.limits, self.stats
            )
            self._udp.append(protocol)
            self._udp_by_local.setdefault(protocol.local, protocol)
        else:
            info = await self._stream_hub().listen(spec.transport, spec.host, spec.port)
        self._listeners.append(info)
        log.info("listening on %s", info)
        return info.host, info.port

    def send(self, data: bytes, flow: Flow) -> bool:
        """Send one message on `flow`; False if it cannot go out.

        UDP: from the listener bound to flow.local (else the first UDP
        listener of the right address family) to flow.remote. TCP/TLS: on
        connection flow.conn_id if still open, else on any open connection to
        flow.remote, else on a new outgoing connection (data queued until it
        opens; failure is counted in stats.connect_failures).
        """
        if flow.transport == "udp":
            udp = self._udp_by_local.get(flow.local) or self._udp_for(flow.remote[0])
            if udp is None:
                self.stats.send_failures += 1
                return False
            return udp.send(data, flow.remote)
        ok = self._send_stream(data, flow)
        if not ok:
            self.stats.send_failures += 1
        return ok

    def _send_stream(self, data: bytes, flow: Flow) -> bool:
        if flow.transport not in ("tcp", "tls") or self._closed:
            return False
        hub = self._stream_hub()
        conn = hub.get(flow.conn_id) if flow.conn_id else None
        if conn is None or conn.kind != flow.transport or not conn.is_usable:
            conn = hub.find(flow.transport, flow.remote)
        if conn is None:
            if flow.transport == "tls" and self._client_ssl is None and self._ssl is None:
                log.debug("outgoing TLS without any TLS configuration; using an unverified context")
            try:
                conn_id = hub.connect(flow.remote, flow.transport)
            except (OSError, ValueError) as exc:
                log.debug("cannot connect to %s: %s", flow.remote, exc)
                return False
            conn = hub.get(conn_id)
            if conn is None:
                return False
        return conn.write(data)

    def _udp_for(self, remote_host: str) -> UdpProtocol | None:
        v6 = ":" in remote_host
        for udp in self._udp:
            if (":" in udp.local[0]) == v6 and udp.is_open:
                return udp
        return None

    def connect(self, remote: Address, transport: str) -> int:
        """Open an outgoing TCP/TLS connection now; returns its conn_id.

        Sends to Flow(transport, remote, ..., conn_id) queue until it opens.
        Raises ConnectionRefusedError at the connection limit.
        """
        return self._stream_hub().connect(remote, transport)

    def is_open(self, conn_id: int) -> bool:
        conn = self._hub.get(conn_id) if self._hub else None
        return conn is not None and conn.is_usable

    def bytes_received(self, conn_id: int) -> int | None:
        """Bytes read so far on a TCP/TLS connection; None if it is not open.

        A CRLF pong is swallowed by the framer but counts here: to probe a
        flow, note this, send b"\\r\\n\\r\\n" and wait for it to grow.
        (A counter, not a timestamp: uvloop's clock ticks in milliseconds.)
        """
        conn = self._hub.get(conn_id) if self._hub else None
        return conn.bytes_received if conn is not None and conn.is_usable else None

    def close_connection(self, conn_id: int) -> bool:
        """Close one TCP/TLS connection (e.g. a kicked binding's flow)."""
        return self._hub.close_connection(conn_id) if self._hub else False

    def udp_flow(self, remote: Address, local: Address | None = None) -> Flow | None:
        """A UDP flow to `remote`, from `local` or the first suitable listener."""
        udp = (self._udp_by_local.get(local) if local else None) or self._udp_for(remote[0])
        return udp.flow_for(remote) if udp else None

    @property
    def connection_count(self) -> int:
        return self._hub.connection_count if self._hub else 0

    async def close(self) -> None:
        """Stop listening, drop all connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        for udp in self._udp:
            udp.close()
        if self._hub is not None:
            await self._hub.close()
        self._udp.clear()
        self._udp_by_local.clear()
