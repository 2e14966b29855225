"""Header inspection (RFC 3261 §8.2.2) in the endpoint, before any handler:
416 for an unknown Request-URI scheme, 400 for a bad Max-Forwards, 420 with
Unsupported for an unsupported Require, whatever the method."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from calls.fakes import FakeLoop
from regswitch.sip.flow import Flow
from regswitch.sip.txlayer import TransactionLayer
from regswitch.transport.endpoint import Endpoint, IncomingRequest

pytestmark = pytest.mark.timeout(10)

RFC4475 = Path(__file__).parent / "fixtures" / "sip" / "rfc4475"
PEER = ("192.0.2.9", 5060)


class RawSender:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, flow: Flow) -> bool:
        self.sent.append(data)
        return True


def endpoint() -> tuple[Endpoint, RawSender, list[str]]:
    ids = itertools.count(1)
    sender = RawSender()
    ep = Endpoint(
        TransactionLayer(id_factory=lambda: f"id{next(ids)}"),
        sender,
        id_factory=lambda: f"tag{next(ids)}",
        loop=FakeLoop(),  # type: ignore[arg-type]
    )
    handled: list[str] = []

    def handler(stx: IncomingRequest) -> None:
        handled.append(stx.request.method)
        stx.respond(200)

    for method in ("REGISTER", "BYE", "MESSAGE"):
        ep.route(method, handler)
    return ep, sender, handled


def answer(data: bytes) -> tuple[int, bytes]:
    ep, sender, _ = endpoint()
    ep.on_data(data, Flow("udp", PEER, ("192.0.2.1", 5060)))
    (reply,) = sender.sent
    return int(reply.split(b" ", 2)[1]), reply


def request(method: str, *extra: str, uri: str = "sip:bob@example.com") -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch=z9hG4bK-{method}-{len(extra)}",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:bob@example.com>",
        "Call-ID: inspect@192.0.2.9",
        f"CSeq: 1 {method}",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("valid/unkscm", 416),  # RFC 4475 §3.3.1
        ("valid/novelsc", 416),  # §3.3.2
        ("valid/unksm2", 416),  # §3.3.3: To of an unknown scheme, read by the registrar
        ("valid/bext01", 420),  # §3.3.5
        ("invalid/x-nulhdr", 400),
        ("invalid/x-mfneg", 400),
        ("valid/zeromf", 200),  # §3.3.6: OPTIONS to us with Max-Forwards 0 is ours to answer
    ],
)
def test_rfc4475_application_layer_answers(fixture: str, status: int) -> None:
    data = (RFC4475 / f"{fixture}.sip").read_bytes()
    if fixture == "valid/unksm2":
        ep, sender, _ = endpoint()

        def registrar(stx: IncomingRequest) -> None:
            _ = stx.request.to.uri  # what the registrar reads first
            stx.respond(401)

        ep.route("REGISTER", registrar)
        ep.on_data(data, Flow("udp", PEER, ("192.0.2.1", 5060)))
        (reply,) = sender.sent
        got = int(reply.split(b" ", 2)[1])
    else:
        got, reply = answer(data)
    assert got == status, reply[:200]
    if status == 420:
        assert b"\r\nUnsupported: nothingsupportsthis, nothingsupportsthiseither\r\n" in reply


@pytest.mark.parametrize("method", ["OPTIONS", "REGISTER", "BYE", "MESSAGE"])
def test_unsupported_require_is_420_before_the_handler(method: str) -> None:
    ep, sender, handled = endpoint()
    ep.on_data(request(method, "Require: newfeature1, path"), Flow("udp", PEER, PEER))
    (reply,) = sender.sent
    assert reply.startswith(b"SIP/2.0 420 ")
    assert b"\r\nUnsupported: newfeature1\r\n" in reply  # path is one we support
    assert handled == []


def test_supported_require_reaches_the_handler() -> None:
    ep, sender, handled = endpoint()
    ep.on_data(request("REGISTER", "Require: path, Outbound"), Flow("udp", PEER, PEER))
    assert handled == ["REGISTER"] and sender.sent[0].startswith(b"SIP/2.0 200 ")


@pytest.mark.parametrize("value", ["-1", "abc", "256", "1 2"])
def test_bad_max_forwards_is_400_for_every_method(value: str) -> None:
    for method in ("OPTIONS", "REGISTER"):
        ep, sender, handled = endpoint()
        ep.on_data(request(method, f"Max-Forwards: {value}"), Flow("udp", PEER, PEER))
        assert sender.sent[0].startswith(b"SIP/2.0 400 "), sender.sent[0][:80]
        assert handled == []


@pytest.mark.parametrize("uri", ["mailto:bob@example.com", "http://example.com/", "urn:x:y"])
def test_unknown_request_uri_scheme_is_416_for_every_method(uri: str) -> None:
    for method in ("OPTIONS", "REGISTER", "MESSAGE"):
        ep, sender, handled = endpoint()
        ep.on_data(request(method, uri=uri), Flow("udp", PEER, PEER))
        assert sender.sent[0].startswith(b"SIP/2.0 416 Unsupported URI Scheme\r\n")
        assert handled == []


def test_require_with_a_non_token_is_400_not_echoed() -> None:
    ep, sender, handled = endpoint()
    ep.on_data(request("OPTIONS", "Require: good, <sip:x@y>"), Flow("udp", PEER, PEER))
    (reply,) = sender.sent
    assert reply.startswith(b"SIP/2.0 400 ") and b"Unsupported" not in reply
    assert handled == []
