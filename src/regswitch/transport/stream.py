"""TCP and TLS connections: framing, limits, idle close, outgoing connects.

One `StreamConnection` (an asyncio.Protocol: cheaper than StreamReader) per
socket, each with its own StreamFramer. `StreamHub` owns the listeners and
the connection table and enforces the limits in TransportLimits, including
the bound on bytes buffered over all connections (see `StreamHub._relieve`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Callable
from typing import cast

from regswitch.sip.framing import KEEPALIVE_PING, FramingError, StreamFramer
from regswitch.transport.base import (
    DataHandler,
    Flow,
    ListenerInfo,
    ThrottledLog,
    TransportLimits,
    TransportStats,
)

log = logging.getLogger("regswitch.transport.stream")

Address = tuple[str, int]
ClosedHandler = Callable[[Flow], None]

_CONNECTING = 0
_OPEN = 1
_CLOSED = 2
_PONG = b"\r\n"


def server_ssl_context(
    certfile: str, keyfile: str | None = None, *, cafile: str | None = None
) -> ssl.SSLContext:
    """TLS server context from a PEM certificate (chain) and key.

    With `cafile`, clients may present certificates signed by it (not
    required: SIP phones rarely have one).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if cafile:
        ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(*, verify: bool = False, cafile: str | None = None) -> ssl.SSLContext:
    """TLS client context for outgoing connections (e.g. to a TLS-registered phone).

    `verify=False` by default because phones are reached by IP address with
    self-signed or no certificates (Kamailio's default too); set `verify=True`
    (with `cafile` or the system store) for trunks with real certificates.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outgoing."""

    def __init__(self, hub: StreamHub, kind: str, remote: Address | None = None) -> None:
        self.hub = hub
        self.kind = kind
        self.outgoing = remote is not None
        self.remote: Address | None = remote
        self.conn_id = 0
        self.flow: Flow | None = None
        self.state = _CONNECTING
        self.last_activity = hub.loop.time()  # last read or write: idle timeout
        self.bytes_received = 0  # keepalive pongs, swallowed by the framer, show here
        self._framer = StreamFramer(hub.limits.max_message_stream)
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # when _timer fires
        self._partial_since = 0.0  # loop time a partial message began; 0 = none
        self._admitted_ip: str | None = None
        self._held = 0  # buffered bytes as last counted in hub.buffered
        self._shed = False  # closed for buffer pressure: no longer counted

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        transport = cast(asyncio.Transport, transport)
        hub = self.hub
        peer = transport.get_extra_info("peername")
        name = transport.get_extra_info("sockname")
        if not peer or not name or self.state != _CONNECTING:
            # no addresses, or an outgoing connection given up while connecting
            transport.abort()
            return
        remote = (peer[0], peer[1])
        if not self.outgoing:
            if not hub._admit(self, remote[0]):
                transport.abort()
                return
            self.remote = remote
        self._transport = transport
        self.flow = Flow(self.kind, remote, (name[0], name[1]), self.conn_id)
        self.state = _OPEN
        transport.set_write_buffer_limits(high=hub.limits.write_buffer_high)
        hub._opened(self)
        self.last_activity = now = hub.loop.time()
        self._arm(now + hub.limits.tcp_idle_timeout)
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self.write(data)

    def data_received(self, data: bytes) -> None:
        hub = self.hub
        stats = hub.stats
        self.last_activity = now = hub.loop.time()
        self.bytes_received += len(data)
        stats.stream_bytes_in += len(data)
        framer = self._framer
        try:
            frames = framer.feed(data)
        except FramingError as exc:
            stats.framing_errors += 1
            hub.notices.log(
                logging.INFO, "closing %s peer %s: %s", self.kind, self.remote, exc.reason
            )
            self.abort()
            return
        if framer.buffered != self._held:
            hub._account(self)
        if framer.idle:
            self._partial_since = 0.0
        elif not self._partial_since:
            # A message started: it must complete within message_timeout,
            # however slowly the peer trickles bytes (slowloris).
            self._partial_since = now
            due = now + hub.limits.message_timeout
            if due < self._deadline:
                self._arm(due)
        flow = self.flow
        assert flow is not None
        handler = hub.handler
        transport = self._transport
        for frame in frames:
            if transport is None or transport.is_closing():
                break  # the handler closed us
            if frame is KEEPALIVE_PING:
                stats.keepalive_pings += 1
                self.write(_PONG)
                continue
            assert isinstance(frame, bytes)
            stats.stream_messages_in += 1
            try:
                handler(frame, flow)
            except Exception:
                stats.handler_errors += 1
                hub.errors.exception("stream handler failed for a message from %s", flow.remote)

    def eof_received(self) -> bool | None:
        return None  # close our side too: SIP does not use half-closed streams

    def pause_writing(self) -> None:
        # More than write_buffer_high bytes the peer has not read: it is stuck
        # or hostile, and buffering more would be unbounded.
        self.hub.stats.slow_reader_closed += 1
        self.hub.notices.log(
            logging.INFO, "closing %s connection to %s: peer is not reading", self.kind, self.remote
        )
        self.abort()

    def resume_writing(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self.state == _OPEN
        self.state = _CLOSED
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if was_open:
            self.hub._closed(self)

    # API

    @property
    def is_usable(self) -> bool:
        """Open, or still connecting (writes are queued)."""
        return self.state == _OPEN or (self.state == _CONNECTING and self.outgoing)

    def write(self, data: bytes) -> bool:
        if self.state == _OPEN:
            transport = self._transport
            if transport is None or transport.is_closing():
                return False
            transport.write(data)
            hub = self.hub
            hub.stats.stream_bytes_out += len(data)
            self.last_activity = hub.loop.time()
            if self._held or transport.get_write_buffer_size():  # else nothing is held
                hub._account(self)
            return True
        if self.state == _CONNECTING and self.outgoing:
            if self._pending_size + len(data) > self.hub.limits.write_buffer_high:
                return False
            self._pending.append(data)
            self._pending_size += len(data)
            self.hub._account(self)
            return True
        return False

    def buffered(self) -> int:
        """Bytes held for this connection now: a partial message, unsent output."""
        transport = self._transport
        unsent = transport.get_write_buffer_size() if transport is not None else self._pending_size
        return self._framer.buffered + unsent

    def close(self) -> None:
        """Close after flushing what is buffered (abort if nothing can flush)."""
        transport = self._transport
        if transport is None:
            self._fail_pending()
        elif transport.get_write_buffer_size():
            # close() would wait for a flush that a stuck peer never allows
            transport.abort()
        else:
            transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        else:
            self._fail_pending()

    def _fail_pending(self) -> None:
        """An outgoing connection that never opened: forget it."""
        if self.state == _CONNECTING:
            self.state = _CLOSED
            self._pending.clear()
            self._pending_size = 0
            self.hub._forget(self)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = self.hub.loop.call_at(deadline, self._check_timeouts)

    def _check_timeouts(self) -> None:
        # Re-armed lazily: traffic only stamps last_activity, so a busy
        # connection costs one timer per timeout period, not one per read.
        self._timer = None
        if self.state != _OPEN:
            return
        if self._held:
            self.hub._account(self)  # output drained since the last write shows here
        limits = self.hub.limits
        now = self.hub.loop.time()
        idle_due = self.last_activity + limits.tcp_idle_timeout
        if self._partial_since:
            partial_due = self._partial_since + limits.message_timeout
            if partial_due <= now + 0.001:
                self.hub.stats.message_timeouts += 1
                log.debug("closing %s peer %s: message incomplete", self.kind, self.remote)
                self.abort()
                return
            idle_due = min(idle_due, partial_due)
        if idle_due > now + 0.001:
            self._arm(idle_due)
            return
        self.hub.stats.idle_closed += 1
        log.debug("closing idle %s connection %s", self.kind, self.remote)
        self.close()


class StreamHub:
    """Listeners and the connection table for TCP and TLS."""

    def __init__(
        self,
        handler: DataHandler,
        limits: TransportLimits,
        stats: TransportStats,
        *,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        on_closed: ClosedHandler | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.stats = stats
        self.loop = asyncio.get_running_loop()
        self.errors = ThrottledLog(log)  # handler exceptions
        self.notices = ThrottledLog(log)  # per-peer closes: a flood must not flood the log
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._on_closed = on_closed
        self._ids = itertools.count(1)
        self._conns: dict[int, StreamConnection] = {}
        self._per_ip: dict[str, int] = {}
        self._by_remote: dict[tuple[str, Address], int] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self.buffered = 0  # sum of the connections' _held
        self._next_recount = 0.0
        self._next_sweep = 0.0
        self._pressure_timer: asyncio.TimerHandle | None = None

    # listeners

    async def listen(self, kind: str, host: str, port: int) -> ListenerInfo:
        if kind == "tls" and self._server_ssl is None:
            raise ValueError("a TLS listener needs an ssl_context (certificate and key)")
        ssl_ctx = self._server_ssl if kind == "tls" else None
        server = await self.loop.create_server(
            lambda: StreamConnection(self, kind),
            host,
            port,
            ssl=ssl_ctx,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if ssl_ctx else None,
            reuse_address=True,
            reuse_port=self.limits.reuse_port and bool(port),
            backlog=1024,
        )
        self._servers.append(server)
        name = server.sockets[0].getsockname()
        return ListenerInfo(kind, name[0], name[1])

    # connections

    def get(self, conn_id: int) -> StreamConnection | None:
        return self._conns.get(conn_id)

    def find(self, kind: str, remote: Address) -> StreamConnection | None:
        """A usable connection of `kind` to `remote`, inbound or outgoing."""
        conn_id = self._by_remote.get((kind, remote))
        conn = self._conns.get(conn_id) if conn_id else None
        return conn if conn is not None and conn.is_usable else None

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def connect(self, remote: Address, kind: str) -> int:
        """Start an outgoing connection; returns its conn_id at once.

        Writes to it are queued (up to write_buffer_high) until it opens; if
        it fails they are dropped and counted in connect_failures.
        """
        if kind not in ("tcp", "tls"):
            raise ValueError(f"cannot connect over {kind!r}")
        if self._closing:
            raise ConnectionRefusedError("transports are closing")
        if len(self._conns) >= self.limits.max_connections:
            self.stats.connections_refused += 1
            raise ConnectionRefusedError("connection limit reached")
        conn = StreamConnection(self, kind, remote)
        conn.conn_id = next(self._ids)
        self._conns[conn.conn_id] = conn
        self._by_remote[(kind, remote)] = conn.conn_id
        task = self.loop.create_task(self._connect(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn.conn_id

    async def _connect(self, conn: StreamConnection) -> None:
        assert conn.remote is not None
        host, port = conn.remote
        ssl_ctx: ssl.SSLContext | None = None
        if conn.kind == "tls":
            if self._client_ssl is None:
                self._client_ssl = client_ssl_context()
            ssl_ctx = self._client_ssl
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=ssl_ctx,
                    server_hostname=host if ssl_ctx else None,
                    ssl_handshake_timeout=self.limits.tls_handshake_timeout if ssl_ctx else None,
                ),
                self.limits.connect_timeout,
            )
        except asyncio.CancelledError:
            conn._fail_pending()
            raise
        except Exception as exc:
            self.stats.connect_failures += 1
            self.notices.log(
                logging.INFO, "%s connect to %s failed: %r", conn.kind, conn.remote, exc
            )
            conn._fail_pending()

    def close_connection(self, conn_id: int) -> bool:
        conn = self._conns.get(conn_id)
        if conn is None:
            return False
        conn.close()
        return True

    # bookkeeping called by StreamConnection

    def _admit(self, conn: StreamConnection, ip: str) -> bool:
        limits = self.limits
        if self._closing:
            return False
        if len(self._conns) >= limits.max_connections:
            self.stats.connections_refused += 1
            log.debug("refused %s connection from %s: total limit", conn.kind, ip)
            return False
        count = self._per_ip.get(ip, 0)
        if count >= limits.max_connections_per_ip:
            self.stats.connections_refused += 1
            log.debug("refused %s connection from %s: per-IP limit", conn.kind, ip)
            return False
        self._per_ip[ip] = count + 1
        conn._admitted_ip = ip
        conn.conn_id = next(self._ids)
        self._conns[conn.conn_id] = conn
        return True

    def _opened(self, conn: StreamConnection) -> None:
        assert conn.remote is not None
        self._by_remote[(conn.kind, conn.remote)] = conn.conn_id
        self.stats.connections_open += 1
        if conn.outgoing:
            self.stats.connections_outgoing += 1
        else:
            self.stats.connections_accepted += 1

    def _closed(self, conn: StreamConnection) -> None:
        self.stats.connections_open -= 1
        self.stats.connections_closed += 1
        self._forget(conn)
        if self._on_closed is not None and conn.flow is not None:
            try:
                self._on_closed(conn.flow)
            except Exception:
                self.errors.exception("connection-closed callback failed for %s", conn.flow)

    # buffered bytes over all connections

    def _account(self, conn: StreamConnection) -> None:
        """Count `conn`'s buffered bytes anew; relieve the pressure if too many."""
        if conn._shed:
            return
        held = conn.buffered()
        total = self.buffered + held - conn._held
        conn._held = held
        self._set_total(total)
        if total > self.limits.max_stream_buffered // 2:
            self._relieve()

    def _set_total(self, total: int) -> None:
        self.buffered = total
        stats = self.stats
        stats.stream_buffered_bytes = total
        if total > stats.stream_buffered_peak:
            stats.stream_buffered_peak = total

    def _release(self, conn: StreamConnection) -> None:
        self._set_total(self.buffered - conn._held)
        conn._held = 0

    def _relieve(self, recount: bool = False) -> None:
        """Above half the bound, close connections idle for pressure_idle_timeout
        or with a message incomplete for pressure_message_timeout (once a
        second); above the bound, close the connections holding the most bytes
        (a slowloris sender or a peer not reading) until 3/4 remain."""
        limits = self.limits
        now = self.loop.time()
        if recount or (self.buffered > limits.max_stream_buffered and now >= self._next_recount):
            # Output drains without telling us, so a count may be stale-high:
            # count again before shedding anyone (at most every 0.1 s, the
            # table may hold 10,000 connections).
            self._next_recount = now + 0.1
            self._set_total(sum(self._recount(c) for c in list(self._conns.values())))
        soft = limits.max_stream_buffered // 2
        if self.buffered > soft and now >= self._next_sweep:
            self._next_sweep = now + 1.0
            for conn in list(self._conns.values()):
                if conn.state != _OPEN or conn._shed:
                    continue
                idle = conn.last_activity + limits.pressure_idle_timeout <= now
                partial = conn._partial_since
                slow = bool(partial) and partial + limits.pressure_message_timeout <= now
                if idle or slow:
                    self._shed(conn, "idle" if idle else "message incomplete")
        if self.buffered > limits.max_stream_buffered:
            target = limits.max_stream_buffered * 3 // 4
            holders = sorted(
                (c for c in self._conns.values() if c._held and not c._shed),
                key=lambda c: c._held,
                reverse=True,
            )
            for conn in holders:
                if self.buffered <= target:
                    break
                self._shed(conn, f"holds {conn._held} bytes")
        if self.buffered > soft and self._pressure_timer is None and not self._closing:
            # no traffic may come to call us again: look once more in a second
            self._pressure_timer = self.loop.call_later(1.0, self._pressure_tick)

    def _recount(self, conn: StreamConnection) -> int:
        if not conn._shed:
            conn._held = conn.buffered()
        return conn._held

    def _pressure_tick(self) -> None:
        self._pressure_timer = None
        self._relieve(recount=True)

    def _shed(self, conn: StreamConnection, why: str) -> None:
        self.stats.pressure_closed += 1
        self.notices.log(
            logging.INFO,
            "closing %s connection %s: stream buffers near their bound (%s)",
            conn.kind,
            conn.remote,
            why,
        )
        self._release(conn)
        conn._shed = True
        conn.abort()

    def _forget(self, conn: StreamConnection) -> None:
        self._release(conn)
        if self._conns.get(conn.conn_id) is conn:
            del self._conns[conn.conn_id]
        key = (conn.kind, conn.remote) if conn.remote is not None else None
        if key is not None and self._by_remote.get(key) == conn.conn_id:
            del self._by_remote[key]
        ip = conn._admitted_ip
        if ip is not None:
            conn._admitted_ip = None
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)

    async def close(self) -> None:
        self._closing = True
        if self._pressure_timer is not None:
            self._pressure_timer.cancel()
            self._pressure_timer = None
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns.values()):
            conn.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        # Let aborted transports deliver connection_lost before we return.
        for _ in range(3):
            if not self._conns:
                break
            await asyncio.sleep(0)
