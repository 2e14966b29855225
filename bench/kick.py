#!/usr/bin/env python3
"""Kick latency: from the new device's REGISTER to both BYEs, over N kicks.

Per round: the callee account's current device answers a call from the
caller; the other device then registers (replace On) and we time until the
BYE reaches the caller and the old device. Roles swap every round. Timed on
the client side over loopback, so it includes two datagram hops and the
OPTIONS with which the switch confirms an address-only account's new source
before a replace over UDP (the new device answers it, as a phone does).

    .venv-run/bin/python bench/kick.py [--kicks 1000]
"""

from __future__ import annotations

import argparse
import re
import select
import socket
import statistics
import time

from common import Regswitch, save_json

DOMAIN = "regswitch.local"
TO_TAG = re.compile(rb"^(?:To|t):.*?;tag=([^;\r\n]+)", re.M | re.I)
CALL_ID = re.compile(rb"^(?:Call-ID|i):\s*([^\r\n]+)", re.M | re.I)
CONTACT = re.compile(rb"^(?:Contact|m):.*?<([^>]+)>", re.M | re.I)


class Peer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def send(self, data: str, to: tuple[str, int]) -> None:
        self.sock.sendto(data.encode(), to)

    def recv(self, timeout: float = 5.0) -> tuple[bytes, tuple[str, int]]:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise SystemExit(f"{self.name}: nothing received within {timeout} s")
        data, addr = self.sock.recvfrom(65535)
        return data, addr

    def recv_until(self, start: bytes, timeout: float = 5.0) -> tuple[bytes, tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while True:
            data, addr = self.recv(max(0.01, deadline - time.monotonic()))
            if data.startswith(start):
                return data, addr


def via(peer: Peer, branch: str) -> str:
    return f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch=z9hG4bK{branch};rport\r\n"


def register(peer: Peer, server: tuple[str, int], n: int, user: str = "callee") -> str:
    return (f"REGISTER sip:{DOMAIN} SIP/2.0\r\n{via(peer, f'r{n}{peer.name}')}Max-Forwards: 70\r\n"
            f"From: <sip:{user}@{DOMAIN}>;tag=r{n}\r\nTo: <sip:{user}@{DOMAIN}>\r\n"
            f"Call-ID: reg-{peer.name}-{n}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@127.0.0.1:{peer.port}>\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n")


def reply(request: bytes, status: str, to_tag: str, peer: Peer, body: str = "") -> str:
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")[1:]
    keep = [ln for ln in lines if ln.split(":", 1)[0].lower() in ("via", "from", "call-id", "cseq")]
    to = next(ln for ln in lines if ln.lower().startswith("to:"))
    if ";tag=" not in to:
        to += f";tag={to_tag}"
    extra = f"Contact: <sip:callee@127.0.0.1:{peer.port}>\r\n" if status.startswith("200") else ""
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (f"SIP/2.0 {status}\r\n" + "\r\n".join(keep) + f"\r\n{to}\r\n{extra}{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


def main(kicks: int, json_path: str | None) -> None:
    server = Regswitch()
    try:
        server.call("POST", "/api/accounts/import", {"accounts": [
            {"user": "caller", "domain": DOMAIN, "allowed_networks": ["127.0.0.0/8"]},
            {"user": "callee", "domain": DOMAIN, "allowed_networks": ["127.0.0.0/8"]},
        ]})
        # two devices trading one account on purpose: no flapping hold here
        server.call("PUT", "/api/parameters/REGISTER_FLAP_HOLD", {"value": 0})
        target = ("127.0.0.1", int(server.target.rsplit(":", 1)[1]))
        caller, old, new = Peer("a"), Peer("x"), Peer("y")
        sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               "m=audio 4000 RTP/AVP 0\r\n")
        # calls need a registered caller (CALLS_REQUIRE_REGISTRATION)
        caller.send(register(caller, target, 0, "caller"), target)
        caller.recv_until(b"SIP/2.0 200")
        old.send(register(old, target, 0), target)
        old.recv_until(b"SIP/2.0 200")
        latencies: list[float] = []
        for n in range(1, kicks + 1):
            invite = (f"INVITE sip:callee@{DOMAIN} SIP/2.0\r\n{via(caller, f'i{n}')}"
                      f"Max-Forwards: 70\r\nFrom: <sip:caller@{DOMAIN}>;tag=c{n}\r\n"
                      f"To: <sip:callee@{DOMAIN}>\r\nCall-ID: call-{n}\r\nCSeq: 1 INVITE\r\n"
                      f"Contact: <sip:caller@127.0.0.1:{caller.port}>\r\n"
                      f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
            caller.send(invite, target)
            b_invite, addr = old.recv_until(b"INVITE ")
            old.send(reply(b_invite, "200 OK", f"x{n}", old, sdp), addr)
            ok, _ = caller.recv_until(b"SIP/2.0 200")
            to_tag = TO_TAG.search(ok).group(1).decode()  # type: ignore[union-attr]
            contact = CONTACT.search(ok).group(1).decode()  # type: ignore[union-attr]
            caller.send(f"ACK {contact} SIP/2.0\r\n{via(caller, f'a{n}')}Max-Forwards: 70\r\n"
                        f"From: <sip:caller@{DOMAIN}>;tag=c{n}\r\n"
                        f"To: <sip:callee@{DOMAIN}>;tag={to_tag}\r\n"
                        f"Call-ID: call-{n}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", target)
            old.recv_until(b"ACK ")

            t0 = time.perf_counter()
            new.send(register(new, target, n), target)
            # an address-only account's replace over UDP is confirmed with an OPTIONS to
            # the new source first (REGISTER_IP_AUTH_UDP_CHANGES Confirm): a phone answers it
            probe, addr = new.recv_until(b"OPTIONS ")
            new.send(reply(probe, "200 OK", f"p{n}", new), addr)
            bye_a, addr_a = caller.recv_until(b"BYE ")
            t_a = time.perf_counter()
            bye_x, addr_x = old.recv_until(b"BYE ")
            t_x = time.perf_counter()
            latencies.append(max(t_a, t_x) - t0)
            caller.send(reply(bye_a, "200 OK", "", caller), addr_a)
            old.send(reply(bye_x, "200 OK", "", old), addr_x)
            new.recv_until(b"SIP/2.0 200")
            old, new = new, old
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(f"kick latency over {kicks} kicks: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"max {latencies[-1] * 1000:.2f} ms (REGISTER sent -> both BYEs received)")
        save_json(json_path, {"kicks": kicks, "p50_ms": p50, "p99_ms": p99,
                              "max_ms": latencies[-1] * 1000})  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kicks", type=int, default=1000)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    main(args.kicks, args.json)
