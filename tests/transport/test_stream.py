"""TCP connections over real sockets: framing, keepalives, limits, idle close."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from transport_helpers import WAIT, Harness, MakeHarness, sip_message, wait_until

from regswitch.transport import Flow, TransportLimits


async def tcp_listen(
    make_harness: MakeHarness, **limits: object
) -> tuple[Harness, tuple[str, int]]:
    h = await make_harness(TransportLimits(**limits))  # type: ignore[arg-type]
    addr = await h.manager.listen("tcp:127.0.0.1:0")
    return h, addr


async def open_client(addr: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(*addr), WAIT)


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionResetError:
        return b""


async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Round-trip a keepalive: proves the server accepted and serves us."""
    writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"


async def test_partial_and_pipelined_messages(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)
    _reader, writer = await open_client(addr)
    m1, m2, m3 = sip_message(b"body-1", "a"), sip_message(b"", "b"), sip_message(b"333", "c")
    writer.write(m1[:17])
    await writer.drain()
    writer.write(m1[17:] + m2 + m3[:40])
    await writer.drain()
    writer.write(m3[40:])
    got = [await h.collector.get() for _ in range(3)]
    assert [data for data, _ in got] == [m1, m2, m3]
    flows = {flow for _, flow in got}
    assert len(flows) == 1
    flow = flows.pop()
    local = writer.get_extra_info("sockname")
    assert flow.transport == "tcp" and flow.conn_id > 0 and flow.reliable
    assert flow.remote == (local[0], local[1]) and flow.local == addr
    assert h.manager.stats.stream_messages_in == 3
    writer.close()


async def test_reply_on_the_same_connection(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)
    h.collector.react = lambda data, flow: h.manager.send(b"echo:" + data, flow)
    reader, writer = await open_client(addr)
    m = sip_message(b"hi")
    writer.write(m)
    assert await asyncio.wait_for(reader.readexactly(5 + len(m)), WAIT) == b"echo:" + m
    writer.close()


async def test_ping_gets_pong_and_pong_is_ignored(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)
    reader, writer = await open_client(addr)
    await ping(reader, writer)
    writer.write(b"\r\n" + sip_message())  # a pong then a message: only the message
    assert (await h.collector.get())[0] == sip_message()
    assert h.manager.stats.keepalive_pings == 1
    writer.close()


async def test_pong_to_our_ping_counts_as_received(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)
    reader, writer = await open_client(addr)
    writer.write(sip_message())
    _, flow = await h.collector.get()
    before = h.manager.bytes_received(flow.conn_id)
    assert before == len(sip_message())
    assert h.manager.send(b"\r\n\r\n", flow)  # our keepalive ping
    assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"\r\n\r\n"
    writer.write(b"\r\n")  # the device's pong
    await wait_until(lambda: h.manager.bytes_received(flow.conn_id) == before + 2)
    assert h.collector.queue.empty() and h.manager.stats.keepalive_pings == 0
    writer.close()
    await wait_until(lambda: h.manager.bytes_received(flow.conn_id) is None)


async def test_idle_connection_closed(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, tcp_idle_timeout=0.3)
    reader, writer = await open_client(addr)
    await ping(reader, writer)
    assert await read_eof(reader) == b""
    await wait_until(lambda: h.manager.connection_count == 0)
    assert h.manager.stats.idle_closed == 1
    assert h.manager.stats.connections_closed == 1
    writer.close()


async def test_traffic_keeps_connection_alive(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, tcp_idle_timeout=0.6)
    reader, writer = await open_client(addr)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 1.5:  # 2.5 idle periods, kept alive by pings
        await ping(reader, writer)
        await asyncio.sleep(0.05)
    assert h.manager.stats.idle_closed == 0
    assert await read_eof(reader) == b""
    assert h.manager.stats.idle_closed == 1
    writer.close()


async def test_stalled_half_message_closed_at_idle_timeout(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, tcp_idle_timeout=0.3)
    reader, writer = await open_client(addr)
    writer.write(sip_message(b"x" * 100)[:60])
    assert await read_eof(reader) == b""
    await wait_until(lambda: h.manager.connection_count == 0)
    assert h.collector.queue.empty()
    assert h.manager.stats.idle_closed == 1
    writer.close()


async def test_trickled_message_closed_at_message_timeout(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, tcp_idle_timeout=60, message_timeout=0.3)
    reader, writer = await open_client(addr)

    async def trickle() -> None:
        # One byte per 50 ms keeps the connection busy but never ends a message.
        for byte in sip_message(b"x" * 500):
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(trickle())
    try:
        assert await read_eof(reader) == b""
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
    await wait_until(lambda: h.manager.connection_count == 0)
    assert h.manager.stats.message_timeouts == 1 and h.manager.stats.idle_closed == 0
    assert h.collector.queue.empty()
    writer.close()


async def test_whole_messages_do_not_trip_message_timeout(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, tcp_idle_timeout=60, message_timeout=0.5)
    reader, writer = await open_client(addr)
    m = sip_message(b"abc")
    writer.write(m[:10])  # a partial message, completed in time
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(m[10:])
    assert (await h.collector.get())[0] == m
    # the connection outlives several message timeouts while idle between messages
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 1.2:
        await ping(reader, writer)
        await asyncio.sleep(0.05)
    assert h.manager.stats.message_timeouts == 0
    writer.close()


async def test_huge_header_rejected(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, max_message_stream=4096)
    reader, writer = await open_client(addr)
    writer.write(b"INVITE sip:a@b SIP/2.0\r\n")
    junk = b"X-Junk: " + b"j" * 1000 + b"\r\n"
    try:
        for _ in range(64):  # 64 KiB: far past the 4 KiB limit
            writer.write(junk)
            await writer.drain()
    except ConnectionError:
        pass  # the server may already have closed
    assert await read_eof(reader) == b""
    await wait_until(lambda: h.manager.connection_count == 0)
    assert h.manager.stats.framing_errors == 1
    assert h.collector.queue.empty()
    writer.close()


async def test_bad_content_length_closes(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)
    reader, writer = await open_client(addr)
    writer.write(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: lots\r\n\r\n")
    assert await read_eof(reader) == b""
    await wait_until(lambda: h.manager.stats.framing_errors == 1)
    writer.close()


async def test_handler_exception_keeps_connection(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)

    def react(data: bytes, flow: Flow) -> None:
        if b"boom" in data:
            raise RuntimeError("handler bug")

    h.collector.react = react
    reader, writer = await open_client(addr)
    writer.write(sip_message(b"boom") + sip_message(b"fine"))
    assert b"boom" in (await h.collector.get())[0]
    assert b"fine" in (await h.collector.get())[0]
    await ping(reader, writer)
    assert h.manager.stats.handler_errors == 1
    writer.close()


async def test_per_ip_limit_refuses_extra_connection(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, max_connections_per_ip=2)
    clients = [await open_client(addr) for _ in range(2)]
    for reader, writer in clients:
        await ping(reader, writer)
    reader3, writer3 = await open_client(addr)  # the kernel accepts; we close it
    assert await read_eof(reader3) == b""
    assert h.manager.stats.connections_refused == 1
    assert h.manager.connection_count == 2
    # the first two still work; when one leaves, a new one is admitted
    clients[0][1].close()
    await wait_until(lambda: h.manager.connection_count == 1)
    reader4, writer4 = await open_client(addr)
    await ping(reader4, writer4)
    for w in (clients[1][1], writer3, writer4):
        w.close()


async def test_total_limit_refuses_extra_connection(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, max_connections=1)
    reader, writer = await open_client(addr)
    await ping(reader, writer)
    reader2, writer2 = await open_client(addr)
    assert await read_eof(reader2) == b""
    assert h.manager.stats.connections_refused == 1
    await ping(reader, writer)
    writer.close()
    writer2.close()


async def test_peer_that_does_not_read_is_closed(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness, write_buffer_high=64 * 1024)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, addr), WAIT)
    try:
        sock.send(sip_message())
        _, flow = await h.collector.get()
        chunk = b"z" * 65536
        sent = 0
        # Kernel buffers absorb a few MB; then our buffer passes the mark.
        while h.manager.send(chunk, flow):
            sent += 1
            assert sent < 2000, "never detected the stuck reader"
            if sent % 16 == 0:
                await asyncio.sleep(0)  # let the loop try to flush
        assert h.manager.stats.slow_reader_closed == 1
        await wait_until(lambda: h.manager.connection_count == 0)
    finally:
        sock.close()


async def test_outgoing_connect_and_reuse(make_harness: MakeHarness) -> None:
    h = await make_harness()
    await h.manager.listen("tcp:127.0.0.1:0")
    received: asyncio.Queue[bytes] = asyncio.Queue()
    peers: list[asyncio.StreamWriter] = []

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        m = sip_message(b"to-device")
        received.put_nowait(await reader.readexactly(len(m)))
        writer.write(sip_message(b"reply", "r"))
        received.put_nowait(await reader.readexactly(len(m)))

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    try:
        dev = server.sockets[0].getsockname()[:2]
        # A registration's flow whose connection is gone (conn_id 999 unknown).
        stale = Flow("tcp", dev, ("127.0.0.1", 5060), 999)
        assert h.manager.send(sip_message(b"to-device"), stale)
        assert await asyncio.wait_for(received.get(), WAIT) == sip_message(b"to-device")
        data, flow = await h.collector.get()
        assert data == sip_message(b"reply", "r")
        assert flow.transport == "tcp" and flow.remote == dev and flow.conn_id not in (0, 999)
        assert h.manager.is_open(flow.conn_id)
        # The stale flow again: reuses the new connection, no second connect.
        assert h.manager.send(sip_message(b"to-device"), stale)
        assert await asyncio.wait_for(received.get(), WAIT) == sip_message(b"to-device")
        assert len(peers) == 1
        assert h.manager.stats.connections_outgoing == 1
        assert h.manager.close_connection(flow.conn_id)
        await wait_until(lambda: not h.manager.is_open(flow.conn_id))
    finally:
        server.close()
        for w in peers:
            w.close()
        await server.wait_closed()


async def test_explicit_connect_queues_until_open(make_harness: MakeHarness) -> None:
    h = await make_harness()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.readexactly(len(sip_message())))
        writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    try:
        dev = server.sockets[0].getsockname()[:2]
        conn_id = h.manager.connect(dev, "tcp")
        assert conn_id > 0 and h.manager.is_open(conn_id)  # connecting counts as usable
        assert h.manager.send(sip_message(), Flow("tcp", dev, ("", 0), conn_id))
        assert await asyncio.wait_for(got.get(), WAIT) == sip_message()
    finally:
        server.close()
        await server.wait_closed()


async def test_connect_given_up_before_it_opens(make_harness: MakeHarness) -> None:
    h = await make_harness()
    eofs: asyncio.Queue[bytes] = asyncio.Queue()

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            eofs.put_nowait(await reader.read())
        except ConnectionError:
            eofs.put_nowait(b"")  # a reset is a close too
        writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    try:
        dev = server.sockets[0].getsockname()[:2]
        conn_id = h.manager.connect(dev, "tcp")
        assert h.manager.close_connection(conn_id)  # before the loop ran the connect
        assert not h.manager.is_open(conn_id) and h.manager.connection_count == 0
        assert await asyncio.wait_for(eofs.get(), WAIT) == b""  # opened, then dropped
        assert h.manager.stats.connections_open == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_outgoing_connect_failure_is_counted(make_harness: MakeHarness) -> None:
    h = await make_harness()
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[:2]
    assert h.manager.send(b"queued", Flow("tcp", dead, ("127.0.0.1", 5060), 0))
    await wait_until(lambda: h.manager.stats.connect_failures == 1)
    assert h.manager.connection_count == 0


async def test_on_connection_closed_callback(make_harness: MakeHarness) -> None:
    closed: list[Flow] = []
    h = await make_harness(on_connection_closed=closed.append)
    addr = await h.manager.listen("tcp:127.0.0.1:0")
    _reader, writer = await open_client(addr)
    writer.write(sip_message())
    _, flow = await h.collector.get()
    writer.close()
    await wait_until(lambda: closed == [flow])
    assert h.manager.stats.connections_open == 0


async def test_close_drops_connections(make_harness: MakeHarness) -> None:
    h, addr = await tcp_listen(make_harness)
    reader, writer = await open_client(addr)
    await ping(reader, writer)
    await asyncio.wait_for(h.manager.close(), WAIT)
    assert await read_eof(reader) == b""
    assert h.manager.connection_count == 0
    writer.close()
