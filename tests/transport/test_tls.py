"""TLS listener and outgoing TLS with a self-signed certificate made by openssl."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest
from transport_helpers import WAIT, CertFiles, MakeHarness, sip_message, wait_until

from regswitch.transport import Flow, TransportLimits, client_ssl_context, server_ssl_context


async def test_tls_listener_roundtrip(make_harness: MakeHarness, cert_files: CertFiles) -> None:
    server_ctx = server_ssl_context(str(cert_files.cert), str(cert_files.key))
    h = await make_harness(ssl_context=server_ctx)
    addr = await h.manager.listen("tls:127.0.0.1:0")
    assert str(h.manager.listeners[0]) == f"tls:127.0.0.1:{addr[1]}"
    h.collector.react = lambda data, flow: h.manager.send(b"echo:" + data, flow)

    # A verifying client: the certificate names 127.0.0.1 and is its own CA.
    client_ctx = client_ssl_context(verify=True, cafile=str(cert_files.cert))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(*addr, ssl=client_ctx, server_hostname="127.0.0.1"), WAIT
    )
    m = sip_message(b"secret")
    writer.write(m[:30])
    await writer.drain()
    writer.write(m[30:] + b"\r\n\r\n")
    data, flow = await h.collector.get()
    assert data == m
    assert flow.transport == "tls" and flow.via_transport == "TLS" and flow.conn_id > 0
    assert await asyncio.wait_for(reader.readexactly(5 + len(m)), WAIT) == b"echo:" + m
    assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"  # pong
    writer.close()


async def test_outgoing_tls_between_two_managers(
    make_harness: MakeHarness, cert_files: CertFiles
) -> None:
    server_ctx = server_ssl_context(str(cert_files.cert), str(cert_files.key))
    device = await make_harness(ssl_context=server_ctx)
    dev_addr = await device.manager.listen("tls:127.0.0.1:0")
    device.collector.react = lambda data, flow: device.manager.send(b"ack:" + data, flow)

    switch = await make_harness()  # no TLS configuration: default unverified client
    assert switch.manager.send(sip_message(b"hello"), Flow("tls", dev_addr, ("", 0), 0))
    data, flow = await device.collector.get()
    assert data == sip_message(b"hello") and flow.transport == "tls"
    # The device's reply comes back on the switch's outgoing connection.
    reply, back = await switch.collector.get()
    assert reply == b"ack:" + sip_message(b"hello")  # the framer does not judge start lines
    assert back.transport == "tls" and back.remote == dev_addr
    assert switch.manager.stats.connections_outgoing == 1


async def test_outgoing_tls_verification_failure_is_counted(
    make_harness: MakeHarness, cert_files: CertFiles
) -> None:
    server_ctx = server_ssl_context(str(cert_files.cert), str(cert_files.key))
    device = await make_harness(ssl_context=server_ctx)
    dev_addr = await device.manager.listen("tls:127.0.0.1:0")
    strict = client_ssl_context(verify=True)  # system CAs: the self-signed cert fails
    switch = await make_harness(client_ssl_context=strict)
    assert switch.manager.send(sip_message(), Flow("tls", dev_addr, ("", 0), 0))
    await wait_until(lambda: switch.manager.stats.connect_failures == 1)
    assert device.collector.queue.empty()


async def test_tls_listener_needs_a_context(make_harness: MakeHarness) -> None:
    h = await make_harness()
    with pytest.raises(ValueError, match="ssl_context"):
        await h.manager.listen("tls:127.0.0.1:0")


async def test_plaintext_to_tls_port_is_dropped(
    make_harness: MakeHarness, cert_files: CertFiles
) -> None:
    server_ctx = server_ssl_context(str(cert_files.cert), str(cert_files.key))
    h = await make_harness(TransportLimits(tls_handshake_timeout=2), ssl_context=server_ctx)
    addr = await h.manager.listen("tls:127.0.0.1:0")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), WAIT)
    writer.write(sip_message())
    with contextlib.suppress(ConnectionResetError):
        await asyncio.wait_for(reader.read(), WAIT)
    assert h.collector.queue.empty()
    assert h.manager.connection_count == 0
    writer.close()


def test_contexts() -> None:
    ctx = client_ssl_context()
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    strict = client_ssl_context(verify=True)
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
