"""Every RFC 4475 request fixture sent over UDP to a real `regswitch serve`,
and the answer it gets: 400 for the invalid ones (505 for a wrong version),
and for the valid ones what RFC 3261 §8.2 asks of a UAS that serves
`regswitch.local` and has no accounts (416 for an unknown scheme, 420 for an
unsupported Require, 403 for a stranger, 501 for an unknown method...)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from support import sipp_scenario
from support.server import RunningServer
from support.sipp import SippRunner

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RFC4475 = Path(__file__).parent.parent / "fixtures" / "sip" / "rfc4475"

EXPECTED: dict[str, int] = {
    "invalid/badvers": 505,
    "valid/badbranch": 200,
    "valid/baddate": 403,  # an INVITE from an unknown caller
    "valid/bext01": 420,  # §3.3.5: Require: nothingSupportsThis (an OPTIONS)
    "valid/cparam01": 403,  # REGISTERs to example.com: a domain not served
    "valid/cparam02": 403,
    "valid/dblreq": 403,
    "valid/esc01": 403,
    "valid/esc02": 501,
    "valid/escnull": 403,
    "valid/intmeth": 501,
    "valid/inv2543": 403,
    "valid/invut": 403,
    "valid/longreq": 403,
    "valid/lwsdisp": 200,
    "valid/mpart01": 481,  # carries a To tag: a dialog we do not know
    "valid/novelsc": 416,  # §3.3.2
    "valid/regaut01": 403,
    "valid/regescrt": 403,
    "valid/sdp01": 403,
    "valid/semiuri": 200,
    "valid/transports": 200,
    "valid/unkscm": 416,  # §3.3.1
    "valid/unksm2": 416,  # §3.3.3
    "valid/wsinv": 481,
    "valid/zeromf": 200,  # §3.3.6: an OPTIONS to us; nothing forwarded
}


def requests() -> list[str]:
    names = []
    for path in sorted(RFC4475.glob("*/*.sip")):
        if not path.read_bytes().lstrip(b"\r\n").startswith(b"SIP/"):
            names.append(f"{path.parent.name}/{path.stem}")
    return names


def expected(name: str) -> int:
    return EXPECTED.get(name, 400 if name.startswith("invalid/") else 0)


def ask(sock: socket.socket, target: tuple[str, int], name: str) -> str:
    """Send the fixture with our own Via on top; the first line of its final answer."""
    data = (RFC4475 / f"{name}.sip").read_bytes()
    host, port = sock.getsockname()
    branch = f"z9hG4bK-rfc4475-{name.replace('/', '-')}"
    cut = data.index(b"\n") + 1
    data = (
        data[:cut]
        + f"Via: SIP/2.0/UDP {host}:{port};rport;branch={branch}\r\n".encode()
        + data[cut:]
    )
    sock.sendto(data, target)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            break
        if branch.encode() in reply and not reply.startswith(b"SIP/2.0 1"):
            return reply.split(b"\r\n", 1)[0].decode("latin-1")
    return "(no answer)"


def test_every_request_fixture_gets_its_answer(server: RunningServer) -> None:
    names = requests()
    assert set(EXPECTED) <= set(names)
    assert all(expected(n) for n in names), [n for n in names if not expected(n)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        got = {name: ask(sock, server.udp, name) for name in names}
    wrong = {
        name: line
        for name, line in got.items()
        if not line.startswith(f"SIP/2.0 {expected(name)} ")
    }
    assert not wrong, wrong
    assert got["valid/bext01"] == "SIP/2.0 420 Bad Extension"
    assert got["valid/unkscm"] == "SIP/2.0 416 Unsupported URI Scheme"


@pytest.mark.sipp
def test_sipp_sees_416_420_and_400(server: RunningServer, sipp: SippRunner) -> None:
    result = sipp.run(sipp_scenario("options_refused"), server.target("udp"), calls=2)
    result.check(2)
