#!/usr/bin/env python3
"""CPU cost per REGISTER (401 + 200 with digest) and per OPTIONS through the whole
switch stack in one process, without sockets: endpoint, transaction layer,
registrar, SQLite write-through. A profiling aid, not a test.

    .venv-run/bin/python bench/inproc.py [--n 20000] [--profile] [--hep]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import os
import pstats
import re
import socket
import tempfile
import time

from regswitch.common.config import Settings
from regswitch.server import build, install_uvloop, tune_gc
from regswitch.sip.flow import Flow
from regswitch.transport.hep import CapturingSender, HepCapture

DB = "sqlite:///TMP/b.db"
NONCE = re.compile(rb'nonce="([^"]+)"')


class Capture:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def send(self, data: bytes, flow: Flow) -> bool:
        self.out.append(data)
        return True


def register(user: str, port: int, cseq: int, auth: str = "", call: int = 0) -> bytes:
    return (
        f"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{user}-{call}-{cseq}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag={cseq}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\nCall-ID: {call}-{user}-{port}@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{port}>\r\n{auth}Expires: 3600\r\n"
        f"User-Agent: regswitch-bench\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def authorization(user: str, nonce: str) -> str:
    realm, uri, nc, cnonce = "regswitch.local", "sip:127.0.0.1:5060", "00000001", "abc"
    ha1 = hashlib.md5(f"{user}:{realm}:pw-{user}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="{user}",realm="{realm}",uri="{uri}",nonce="{nonce}",'
        f'response="{resp}",algorithm=MD5,qop=auth,nc={nc},cnonce="{cnonce}"\r\n'
    )


async def main(n: int, profile: bool, hep: bool = False) -> None:
    tmp = tempfile.mkdtemp()
    settings = Settings(sip=["udp:127.0.0.1:5060"], db=DB.replace("TMP", tmp), api="127.0.0.1:0")
    switch = await build(settings)
    capture = Capture()
    switch.endpoint.sender = capture
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if hep:  # every message also copied to a HEP collector that never reads
        sink.bind(("127.0.0.1", 0))
        tap = HepCapture(sink.getsockname(), loop=asyncio.get_running_loop())
        switch.endpoint.sender = CapturingSender(capture, tap)
    switch.transports.send = capture.send  # type: ignore[method-assign]
    switch.set_listeners([{"transport": "udp", "host": "127.0.0.1", "port": 5060}])
    users = [f"user{i:05d}" for i in range(1, 10001)]
    await switch.accounts.import_many(
        [
            {
                "user": u,
                "domain": "regswitch.local",
                "password": f"pw-{u}",
                "allowed_networks": ["127.0.0.0/8"],
            }
            for u in users
        ]
    )
    flow_cache: dict[int, Flow] = {}

    def flow(port: int) -> Flow:
        f = flow_cache.get(port)
        if f is None:
            f = flow_cache[port] = Flow("udp", ("127.0.0.1", port), ("127.0.0.1", 5060))
        return f

    on_data = tap.tap_handler(switch.endpoint.on_data) if hep else switch.endpoint.on_data
    batch = 500
    prof = cProfile.Profile() if profile else None
    t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
    if prof:
        prof.enable()
    done = 0
    round_ = 0
    while done < n:
        round_ += 1
        # as SIPp's register_digest: one port, a new Call-ID per registration,
        # so each user's binding is updated as the same device
        items = [(users[(done + k) % len(users)], 5071) for k in range(batch)]
        for user, port in items:
            on_data(register(user, port, 1, call=round_), flow(port))
        challenges = capture.out
        capture.out = []
        for (user, port), reply in zip(items, challenges, strict=True):
            nonce = NONCE.search(reply).group(1).decode()  # type: ignore[union-attr]
            credentials = authorization(user, nonce)
            on_data(register(user, port, 2, credentials, call=round_), flow(port))
        while len(capture.out) < batch:
            await asyncio.sleep(0)
        assert all(r.startswith(b"SIP/2.0 200") for r in capture.out), capture.out[0][:200]
        capture.out = []
        done += batch
    if prof:
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    main_cpu = time.thread_time() - m0
    print(
        f"REGISTER digest{' + HEP' if hep else ''}: {n} full registrations, "
        f"{cpu / n * 1e6:.1f} us CPU each "
        f"(main thread {main_cpu / n * 1e6:.1f} us) "
        f"({cpu / n / 2 * 1e6:.1f} us per transaction), wall {n / wall:.0f}/s"
    )

    options = (
        b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-o%d\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
        b"Call-ID: o%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    c0 = time.process_time()
    for i in range(n):
        on_data(options % (i, i), flow(5071))
    cpu = time.process_time() - c0
    print(f"OPTIONS: {cpu / n * 1e6:.1f} us CPU each")
    await switch.close()
    sink.close()
    if prof:
        stats = pstats.Stats(prof).sort_stats("tottime")
        stats.print_stats(30)
        if os.environ.get("INPROC_CALLERS"):
            stats.print_callers(os.environ["INPROC_CALLERS"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--db", default=DB, help="storage URL; TMP is a temp dir")
    parser.add_argument("--hep", action="store_true", help="copy every message to HEP too")
    args = parser.parse_args()
    install_uvloop()
    tune_gc()
    DB = args.db
    asyncio.run(main(args.n, args.profile, args.hep))
