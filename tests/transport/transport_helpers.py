"""Helpers shared by the transport tests (imported as a top-level module:
pytest puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from regswitch.transport import Flow, TransportManager

WAIT = 5.0  # seconds: generous deadline for anything that should be instant


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a condition with a deadline (for effects with no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


class Collector:
    """A DataHandler that records what arrives; optionally reacts to it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Flow]] = asyncio.Queue()
        self.react: Callable[[bytes, Flow], None] | None = None

    def __call__(self, data: bytes, flow: Flow) -> None:
        self.queue.put_nowait((data, flow))
        if self.react is not None:
            self.react(data, flow)

    async def get(self, timeout: float = WAIT) -> tuple[bytes, Flow]:
        return await asyncio.wait_for(self.queue.get(), timeout)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def sip_message(body: bytes = b"", call_id: str = "c1", method: str = "OPTIONS") -> bytes:
    head = (
        f"{method} sip:a@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-1\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class UdpClient(asyncio.DatagramProtocol):
    """A UDP peer for tests: send, and await what comes back."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        name = self.transport.get_extra_info("sockname")
        return (name[0], name[1])

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def get(self, timeout: float = WAIT) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.queue.get(), timeout)


@dataclass
class Harness:
    collector: Collector
    manager: TransportManager


MakeHarness = Callable[..., Awaitable[Harness]]
