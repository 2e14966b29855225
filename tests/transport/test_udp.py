"""UDP listener over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from transport_helpers import MakeHarness, UdpClient, sip_message

from regswitch.transport import Flow, ListenSpec, TransportLimits
from regswitch.transport.udp import set_socket_buffers


async def test_roundtrip_with_echo_handler(
    make_harness: MakeHarness, udp_client: UdpClient
) -> None:
    h = await make_harness()
    host, port = await h.manager.listen(ListenSpec.parse("udp:127.0.0.1:0"))
    assert host == "127.0.0.1" and port > 0
    h.collector.react = lambda data, flow: h.manager.send(b"echo:" + data, flow)

    udp_client.send(b"hello", (host, port))
    data, flow = await h.collector.get()
    assert data == b"hello"
    assert flow == Flow("udp", udp_client.address, (host, port), 0)
    reply, source = await udp_client.get()
    assert reply == b"echo:hello" and source == (host, port)

    stats = h.manager.stats
    assert (stats.datagrams_in, stats.datagrams_out) == (1, 1)
    assert stats.udp_bytes_in == 5 and stats.udp_bytes_out == 10
    assert [str(i) for i in h.manager.listeners] == [f"udp:127.0.0.1:{port}"]


async def test_flow_is_cached_per_remote(make_harness: MakeHarness, udp_client: UdpClient) -> None:
    h = await make_harness()
    addr = await h.manager.listen("udp:127.0.0.1:0")
    udp_client.send(b"one", addr)
    udp_client.send(b"two", addr)
    (_, f1), (_, f2) = await h.collector.get(), await h.collector.get()
    assert f1 is f2


async def test_oversize_datagram_dropped_and_counted(
    make_harness: MakeHarness, udp_client: UdpClient
) -> None:
    h = await make_harness(TransportLimits(max_message_udp=1000))
    addr = await h.manager.listen("udp:127.0.0.1:0")
    udp_client.send(b"x" * 1001, addr)
    udp_client.send(b"small", addr)
    data, _ = await h.collector.get()
    assert data == b"small"
    assert h.manager.stats.udp_oversize_dropped == 1
    assert h.collector.queue.empty()


async def test_handler_exception_does_not_stop_the_listener(
    make_harness: MakeHarness, udp_client: UdpClient
) -> None:
    h = await make_harness()
    addr = await h.manager.listen("udp:127.0.0.1:0")

    def react(data: bytes, flow: Flow) -> None:
        if data == b"boom":
            raise RuntimeError("handler bug")

    h.collector.react = react
    udp_client.send(b"boom", addr)
    udp_client.send(sip_message(), addr)
    assert (await h.collector.get())[0] == b"boom"
    assert (await h.collector.get())[0] == sip_message()
    assert h.manager.stats.handler_errors == 1


async def test_send_picks_listener_by_local_then_first(
    make_harness: MakeHarness, udp_client: UdpClient
) -> None:
    h = await make_harness()
    a = await h.manager.listen("udp:127.0.0.1:0")
    b = await h.manager.listen("udp:127.0.0.1:0")
    assert h.manager.send(b"from-b", Flow("udp", udp_client.address, b))
    assert await udp_client.get() == (b"from-b", b)
    # unknown local address: the first UDP listener of the family sends
    assert h.manager.send(b"fallback", Flow("udp", udp_client.address, ("10.9.9.9", 1)))
    assert await udp_client.get() == (b"fallback", a)
    flow = h.manager.udp_flow(udp_client.address)
    assert flow is not None and flow.local == a


async def test_send_without_udp_listener_fails(make_harness: MakeHarness) -> None:
    h = await make_harness()
    assert not h.manager.send(b"x", Flow("udp", ("127.0.0.1", 9), ("127.0.0.1", 5060)))
    assert h.manager.stats.send_failures == 1


async def test_ipv6_loopback(make_harness: MakeHarness) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    h = await make_harness()
    try:
        host, port = await h.manager.listen("udp:[::1]:0")
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(UdpClient, local_addr=("::1", 0))
    try:
        h.collector.react = lambda data, flow: h.manager.send(data, flow)
        client.send(b"v6", (host, port))
        _, flow = await h.collector.get()
        assert flow.remote[0] == "::1" and flow.local == ("::1", port)
        assert (await client.get())[0] == b"v6"
    finally:
        assert client.transport is not None
        client.transport.close()


def test_socket_buffers_best_effort() -> None:
    size = 4 * 1024 * 1024
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        rcv, snd = set_socket_buffers(sock, size)
    try:
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except OSError:
        rmem_max = 0
    # Linux reports twice what it grants; without CAP_NET_ADMIN it caps at rmem_max.
    assert rcv >= min(size, rmem_max) and snd > 0


async def test_close_stops_delivery(make_harness: MakeHarness, udp_client: UdpClient) -> None:
    h = await make_harness()
    addr = await h.manager.listen("udp:127.0.0.1:0")
    await h.manager.close()
    assert not h.manager.send(b"x", Flow("udp", udp_client.address, addr))
    with pytest.raises(RuntimeError):
        await h.manager.listen("udp:127.0.0.1:0")


async def test_sends_of_one_loop_turn_go_out_together_in_order(
    make_harness: MakeHarness, udp_client: UdpClient
) -> None:
    h = await make_harness()
    addr = await h.manager.listen("udp:127.0.0.1:0")
    flow = Flow("udp", udp_client.address, addr)
    for n in range(3):
        assert h.manager.send(b"reply-%d" % n, flow)
    # queued until the loop has handled this turn's input (see UdpProtocol.send)
    assert h.manager.stats.datagrams_out == 0
    assert [(await udp_client.get())[0] for _ in range(3)] == [b"reply-0", b"reply-1", b"reply-2"]
    assert h.manager.stats.datagrams_out == 3


async def test_a_failing_datagram_does_not_hold_back_the_rest(
    make_harness: MakeHarness, udp_client: UdpClient
) -> None:
    h = await make_harness()
    addr = await h.manager.listen("udp:127.0.0.1:0")
    assert h.manager.send(b"x", Flow("udp", ("::1", 5060), addr))  # v6 on a v4 socket
    assert h.manager.send(b"after", Flow("udp", udp_client.address, addr))
    assert await udp_client.get() == (b"after", addr)
    stats = h.manager.stats
    # uvloop refuses it in sendto; asyncio's transport reports it to error_received
    assert stats.udp_send_dropped + stats.udp_errors == 1


async def test_close_sends_what_is_queued(make_harness: MakeHarness, udp_client: UdpClient) -> None:
    h = await make_harness()
    addr = await h.manager.listen("udp:127.0.0.1:0")
    assert h.manager.send(b"last words", Flow("udp", udp_client.address, addr))
    await h.manager.close()
    assert await udp_client.get() == (b"last words", addr)
