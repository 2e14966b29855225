"""Keepalive scheduling without sockets: a fake endpoint records what is sent."""

from __future__ import annotations

from typing import Any

from regswitch.app.keepalive import Keepalive
from regswitch.common.events import EventBus
from regswitch.common.params import Params
from regswitch.registrar.bindings import Binding, Location
from regswitch.storage.base import EventRecord, NewEvent
from support.builders import make_binding


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.n = 0

    def add(self, event: NewEvent) -> EventRecord:
        self.n += 1
        return EventRecord.from_new(self.n, event)


class FakeEndpoint:
    server_header = "test"

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.handlers: list[Any] = []
        self.raw: list[bytes] = []

    def send_request(self, request: Any, flow: Any, on_event: Any) -> str:
        self.requests.append((request, flow))
        self.handlers.append(on_event)
        return "tx"

    def send_raw(self, data: bytes, flow: Any) -> bool:
        self.raw.append(data)
        return True


def binding(binding_id: str, contact: str, source_port: int) -> Binding:
    return make_binding(
        id=binding_id, aor="a@d", contact=contact, source_ip="127.0.0.1", source_port=source_port
    )


def setup() -> tuple[Keepalive, FakeEndpoint, Location, Params, Clock]:
    clock, params, location, endpoint = Clock(), Params(), Location(), FakeEndpoint()
    keepalive = Keepalive(endpoint, location, params, EventBus(Sink(), clock), clock, "d")  # type: ignore[arg-type]
    return keepalive, endpoint, location, params, clock


def test_only_nat_bindings_get_keepalives_one_period_after_registering() -> None:
    keepalive, endpoint, location, params, clock = setup()
    location.add(binding("nat", "sip:a@192.168.1.5:5060", 40000))  # source differs from contact
    location.add(binding("open", "sip:a@127.0.0.1:5062", 5062))
    assert keepalive.tick() == 0
    clock.now += params["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
    assert keepalive.tick() == 1
    ((request, flow),) = endpoint.requests
    assert request.method == "OPTIONS" and request.uri == "sip:a@192.168.1.5:5060"
    assert flow.remote == ("127.0.0.1", 40000)  # to the NAT's address, not the contact


def test_keepalives_to_every_binding_when_configured() -> None:
    keepalive, _, location, params, clock = setup()
    params.apply("NAT_KEEP_ALIVE_ALL", "On")
    location.add(binding("open", "sip:a@127.0.0.1:5062", 5062))
    clock.now += params["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
    assert keepalive.tick() == 1


def test_raw_text_keepalive_and_removed_bindings_are_forgotten() -> None:
    keepalive, endpoint, location, params, clock = setup()
    params.apply("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "HELLO")
    b = binding("nat", "sip:a@192.168.1.5:5060", 40000)
    location.add(b)
    clock.now += params["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
    assert keepalive.tick() == 1 and endpoint.raw == [b"HELLO"]
    location.remove(b)
    clock.now += params["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
    assert keepalive.tick() == 0
    assert keepalive.scheduled == 0  # nothing left scheduled


def test_keepalive_switch_off_sends_nothing() -> None:
    keepalive, endpoint, location, params, clock = setup()
    params.apply("SS_SIP_NAT_KEEP_ALIVE", "Off")
    location.add(binding("nat", "sip:a@192.168.1.5:5060", 40000))
    clock.now += 3 * params["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
    assert keepalive.tick() == 0 and not endpoint.requests


def test_an_options_answered_404_or_481_means_the_user_agent_is_gone() -> None:
    """docs/behaviour.md §10: whoever answers 404/481 at the old address is not
    the registration's user agent (a phone restarted there)."""
    from regswitch.sip import events as sipev
    from regswitch.sip.flow import Flow
    from regswitch.sip.message import Response

    keepalive, endpoint, _, _, _ = setup()
    flow = Flow("udp", ("127.0.0.1", 5062), ("127.0.0.1", 5060))
    answers: list[bool] = []
    for status in (200, 404, 481, 486, 503):
        keepalive.send_options(binding("b", "sip:a@127.0.0.1:5062", 5062), answers.append)
        endpoint.handlers[-1](sipev.ResponseReceived("tx", Response(status, "x"), flow))
    assert answers == [True, False, False, True, True]


def test_a_binding_added_again_is_kept_alive_once() -> None:
    keepalive, endpoint, location, params, clock = setup()
    params.apply("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "HELLO")
    period = params["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
    b = binding("nat", "sip:a@192.168.1.5:5060", 40000)
    location.add(b)
    location.remove(b)
    location.add(b)  # while its first keepalive is still ahead: one schedule
    clock.now += period
    assert keepalive.tick() == 1
    location.remove(b)
    clock.now += period
    assert keepalive.tick() == 0  # gone when it came due
    location.add(b)  # back later: scheduled anew
    clock.now += period
    assert keepalive.tick() == 1 and endpoint.raw == [b"HELLO", b"HELLO"]
