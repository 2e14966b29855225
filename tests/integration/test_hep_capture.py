"""HEP capture against a real server: every SIP message in and out, on UDP and
TCP, reaches a collector as HEPv3 (decoded by the test's own decoder), the live
switch HEP_CAPTURE stops it, /metrics counts it, and Debian's sngrep, listening
for HEP, records the REGISTER / 401 / 200 of a SIPp registration."""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import require_tool
from support.hep import HepCollector, HepPacket
from support.register_helpers import create_account, set_param, sipp_register
from support.server import RunningServer
from support.sipp import SippRunner, free_port
from support.tls import TlsFiles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def collector() -> Iterator[HepCollector]:
    c = HepCollector()
    yield c
    c.close()


def lines(packets: list[HepPacket]) -> list[str]:
    return [p.first_line for p in packets]


def test_sipp_registration_over_udp_and_options_over_tcp_are_captured(
    server_factory: Callable[..., RunningServer],
    collector: HepCollector,
    sipp: SippRunner,
    ua: Callable[..., object],
) -> None:
    server = server_factory("--hep", collector.url, env={"REGSWITCH_HEP_ID": "2042"})
    create_account(server, "alice", password="pw")
    run = sipp_register(sipp, server, "alice", "pw")
    assert run.statuses == [401, 200]

    packets = collector.wait_for(
        lambda p: sum(x.first_line.startswith("SIP/2.0 200") for x in p) >= 1
    )
    register_in = [p for p in packets if p.first_line.startswith("REGISTER ")]
    assert len(register_in) == 2
    host, port = server.udp
    for p in register_in:
        assert (p["dst_ip"], p["dst_port"]) == (host, port)
        assert (p["src_ip"], p["src_port"]) == ("127.0.0.1", run.port)
        assert p["ip_proto"] == 17 and p["family"] == 2 and p["proto_type"] == 1
        assert p["capture_id"] == 2042
        call_id = [ln for ln in p.payload.split(b"\r\n") if ln.lower().startswith(b"call-id:")]
        assert p["correlation_id"] == call_id[0].split(b":", 1)[1].strip()
        assert abs(p["ts_sec"] + p["ts_usec"] / 1e6 - time.time()) < 30
    replies = [p for p in packets if p.first_line.startswith("SIP/2.0 ")]
    assert [r.first_line.split()[1] for r in replies] == ["401", "200"]
    assert all(
        (r["src_ip"], r["src_port"], r["dst_port"]) == (host, port, run.port) for r in replies
    )

    phone = ua("tcp", server.tcp)
    assert phone.request("OPTIONS").status == 200  # type: ignore[attr-defined]
    tcp = collector.wait_for(lambda p: sum(x["ip_proto"] == 6 for x in p) >= 2)
    assert sorted(ln.split()[0] for ln in lines([p for p in tcp if p["ip_proto"] == 6])) == [
        "OPTIONS", "SIP/2.0"]  # fmt: skip

    metrics = server.api.get("/metrics").text
    assert "regswitch_hep_packets_total 6.0" in metrics
    assert "regswitch_hep_dropped_total 0.0" in metrics

    # Off: nothing more is copied, SIP goes on.
    set_param(server, "HEP_CAPTURE", "Off")
    before = len(collector.snapshot())
    assert phone.request("OPTIONS").status == 200  # type: ignore[attr-defined]
    set_param(server, "HEP_CAPTURE", "On")
    assert phone.request("OPTIONS", headers={"Subject": "after"}).status == 200  # type: ignore[attr-defined]
    after = collector.wait_for(lambda p: len(p) >= before + 2)
    assert len(after) == before + 2
    assert b"Subject: after" in after[before].payload
    assert not collector.errors


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("tcp:127.0.0.1:9060", "expected udp:HOST:PORT"),
        ("udp:no-such-host.invalid:9060", "cannot resolve no-such-host.invalid"),
    ],
)
def test_bad_hep_address_is_one_line_exit_2(tmp_path: Path, address: str, why: str) -> None:
    out = subprocess.run(
        [*RunningServer(tmp_path).command, "--hep", address],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: hep: bad HEP address {address!r}: {why}"
    )


def pcap_payloads(path: Path) -> list[bytes]:
    """UDP payloads of a classic pcap file (Ethernet, Linux cooked or raw IPv4 links)."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_header = {1: 14, 113: 16, 101: 0, 228: 0, 276: 20}[linktype]
    out, offset = [], 24
    while offset + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[offset + 8 : offset + 12])[0]
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        ip = frame[link_header:]
        if ip and ip[0] >> 4 == 4:
            ihl = (ip[0] & 0x0F) * 4
            out.append(ip[ihl + 8 :])  # after the UDP header
        elif ip and ip[0] >> 4 == 6:
            out.append(ip[40 + 8 :])
    return out


@pytest.mark.sipp
def test_sngrep_listening_for_hep_shows_the_registration(
    server_factory: Callable[..., RunningServer], sipp: SippRunner, tmp_path: Path
) -> None:
    sngrep = require_tool("sngrep", "Debian package sngrep; `make system`")
    port = free_port()
    pcap = tmp_path / "hep.pcap"
    # -N: no interface, -q: quiet, -L: HEP listener only (no device capture), -O: pcap
    proc = subprocess.Popen(
        [sngrep, "-N", "-q", "-L", f"udp:127.0.0.1:{port}", "-O", str(pcap)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not pcap.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # sngrep writes the pcap header once it listens
        assert pcap.exists(), "sngrep did not start"
        server = server_factory("--hep", f"udp:127.0.0.1:{port}")
        create_account(server, "bob", password="pw")
        assert sipp_register(sipp, server, "bob", "pw").statuses == [401, 200]

        def seen() -> list[str]:
            return [p.split(b"\r\n", 1)[0].decode(errors="replace") for p in pcap_payloads(pcap)]

        deadline = time.monotonic() + 15
        while sum(ln.startswith("SIP/2.0 200") for ln in seen()) < 1:
            assert time.monotonic() < deadline, f"sngrep recorded {seen()}"
            time.sleep(0.1)  # sngrep flushes its pcap as packets arrive
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    firsts = seen()
    assert [ln.split()[0] if ln.startswith("REGISTER") else ln.split()[1] for ln in firsts] == [
        "REGISTER", "401", "REGISTER", "200"]  # fmt: skip
    assert all("sip:" in ln or ln.startswith("SIP/2.0") for ln in firsts)


def test_tls_messages_are_copied_decrypted_as_tcp(
    server_factory: Callable[..., RunningServer],
    collector: HepCollector,
    ua: Callable[..., object],
    tls_cert: TlsFiles,
) -> None:
    server = server_factory("--hep", collector.url, tls=tls_cert)
    phone = ua("tls", server.tls, tls_context=tls_cert.client_context())
    assert phone.request("OPTIONS", headers={"Subject": "over TLS"}).status == 200  # type: ignore[attr-defined]
    packets = collector.wait_for(lambda p: len(p) >= 2)
    request, reply = packets
    assert b"Subject: over TLS" in request.payload  # the SIP bytes, not TLS records
    assert request["ip_proto"] == reply["ip_proto"] == 6
    assert request["dst_port"] == server.tls[1] and reply["src_port"] == server.tls[1]
    assert reply.first_line == "SIP/2.0 200 OK"
