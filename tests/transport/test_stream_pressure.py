"""The bound on bytes buffered over all TCP connections (max_stream_buffered):
many slow senders or non-reading peers are closed, biggest first, before the
total passes it; under pressure idle and half-sent connections go early."""

from __future__ import annotations

import asyncio
import socket

import pytest
from transport_helpers import WAIT, Harness, MakeHarness, sip_message, wait_until

from regswitch.transport import TransportLimits

pytestmark = pytest.mark.timeout(60)

PARTIAL = 30_000  # a header block that never ends: held by the framer


async def listen(make_harness: MakeHarness, **limits: object) -> tuple[Harness, tuple[str, int]]:
    h = await make_harness(TransportLimits(**limits))  # type: ignore[arg-type]
    return h, await h.manager.listen("tcp:127.0.0.1:0")


def partial_message() -> bytes:
    head = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nX-Pad: "
    return head + b"p" * (PARTIAL - len(head))


async def slow_senders(
    addr: tuple[str, int], count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    clients = []
    for _ in range(count):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), WAIT)
        writer.write(partial_message())
        await writer.drain()
        clients.append((reader, writer))
    return clients


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.01) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_many_slow_senders_stay_within_the_bound(make_harness: MakeHarness) -> None:
    bound = 256 * 1024
    h, addr = await listen(make_harness, max_stream_buffered=bound, pressure_idle_timeout=60,
                           pressure_message_timeout=60)
    clients = await slow_senders(addr, 20)  # 600 kB of partial messages without the bound
    stats = h.manager.stats
    await wait_until(lambda: stats.stream_messages_in == 0 and stats.pressure_closed >= 1)
    await wait_until(lambda: h.manager.connection_count <= bound // PARTIAL)
    open_clients = [c for c in clients if not await closed_by_server(c[0])]
    assert len(open_clients) * PARTIAL <= bound
    assert stats.stream_buffered_bytes <= bound
    assert stats.stream_buffered_peak <= bound + PARTIAL  # at most one read over
    assert stats.message_timeouts == 0 and stats.idle_closed == 0
    # a well-behaved client is still served
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), WAIT)
    writer.write(sip_message())
    data, _ = await h.collector.get()
    assert data.startswith(b"OPTIONS")
    for _, w in [*clients, (reader, writer)]:
        w.close()
    await wait_until(lambda: h.manager.connection_count == 0)
    assert stats.stream_buffered_bytes == 0


async def test_under_pressure_half_sent_and_idle_connections_go_early(
    make_harness: MakeHarness,
) -> None:
    # two partial messages (60 kB) pass half the bound but not the bound
    h, addr = await listen(make_harness, max_stream_buffered=100_000, message_timeout=30,
                           tcp_idle_timeout=60, pressure_idle_timeout=0.5,
                           pressure_message_timeout=0.5)
    idle_reader, idle_writer = await asyncio.wait_for(asyncio.open_connection(*addr), WAIT)
    clients = await slow_senders(addr, 2)
    stats = h.manager.stats
    await wait_until(lambda: h.manager.connection_count == 0, timeout=10)
    assert stats.pressure_closed == 3 and stats.message_timeouts == 0
    assert stats.stream_buffered_bytes == 0
    for _, w in [*clients, (idle_reader, idle_writer)]:
        w.close()


async def test_without_pressure_a_half_sent_message_waits_for_message_timeout(
    make_harness: MakeHarness,
) -> None:
    h, addr = await listen(make_harness, max_stream_buffered=1_000_000, message_timeout=1.5,
                           pressure_message_timeout=0.1)
    ((_reader, writer),) = await slow_senders(addr, 1)
    await asyncio.sleep(0.8)  # past pressure_message_timeout, before message_timeout
    assert h.manager.connection_count == 1 and h.manager.stats.pressure_closed == 0
    await wait_until(lambda: h.manager.connection_count == 0)
    assert h.manager.stats.message_timeouts == 1
    writer.close()


async def test_peers_that_do_not_read_are_shed_before_the_bound(
    make_harness: MakeHarness,
) -> None:
    bound = 2 * 1024 * 1024
    # per connection, 8 MB would be allowed: only the total bound stops them
    h, addr = await listen(make_harness, max_stream_buffered=bound,
                           write_buffer_high=8 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    socks = []
    flows = []
    for i in range(3):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, addr), WAIT)
        sock.send(sip_message(call_id=f"c{i}"))
        _, flow = await h.collector.get()
        socks.append(sock)
        flows.append(flow)
    stats = h.manager.stats
    chunk = b"z" * 65536
    try:
        for sent in range(1000):  # bounded: 64 MB at most
            if all(not h.manager.is_open(f.conn_id) for f in flows[:2]):
                break
            for flow in flows:
                h.manager.send(chunk, flow)
            if sent % 8 == 0:
                await asyncio.sleep(0)  # let the loop flush what the kernel takes
            assert stats.stream_buffered_bytes <= bound + len(chunk)
        assert stats.pressure_closed >= 1 and stats.slow_reader_closed == 0
        assert stats.stream_buffered_peak <= bound + len(chunk)
    finally:
        for sock in socks:
            sock.close()
    await wait_until(lambda: h.manager.connection_count == 0)
    assert stats.stream_buffered_bytes == 0
