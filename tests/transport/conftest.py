"""Fixtures for transport tests: real sockets on 127.0.0.1, both event loops.

Every async test here runs twice, on the stdlib loop and on uvloop (when
installed), because the server runs on uvloop but must not depend on it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from transport_helpers import WAIT, CertFiles, Collector, Harness, MakeHarness, UdpClient

from regswitch.transport import TransportLimits, TransportManager

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    """make_harness(limits=..., ssl_context=..., **kw) -> Harness; all closed at teardown."""
    made: list[TransportManager] = []

    async def make(limits: TransportLimits | None = None, **kwargs: Any) -> Harness:
        collector = Collector()
        manager = TransportManager(collector, limits, **kwargs)
        made.append(manager)
        return Harness(collector, manager)

    yield make
    for manager in made:
        await asyncio.wait_for(manager.close(), WAIT)


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A self-signed EC certificate for 127.0.0.1 made with `openssl req`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    cmd = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    return CertFiles(cert, key)


@pytest.fixture
async def udp_client() -> AsyncIterator[UdpClient]:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
    yield client
    assert client.transport is not None
    client.transport.close()
