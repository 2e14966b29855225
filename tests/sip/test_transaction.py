"""Transaction state machines and timers: every timer A-M fires, retransmission
schedules (T1 doubling, capped at T2 where the RFC caps it), nothing
retransmitted on reliable flows. Pure: a fake clock, no sockets, no loop."""

from __future__ import annotations

import pytest
from loop import counter_ids, sip_request, sip_request_bytes

from regswitch.sip.errors import LocalProtocolError
from regswitch.sip.events import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionTimedOut,
)
from regswitch.sip.flow import Flow
from regswitch.sip.message import Request
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise
from regswitch.sip.timers import TimerQueue, Timers
from regswitch.sip.transaction import (
    CLIENT_INVITE,
    CLIENT_NON_INVITE,
    SERVER_INVITE,
    SERVER_NON_INVITE,
    TU_INPUTS,
    Input,
    State,
)
from regswitch.sip.txlayer import TransactionLayer

PEER = ("192.0.2.1", 5060)
ME = ("192.0.2.10", 5060)
UDP_IN = Flow("udp", PEER, ME)  # requests arrive on it
TCP_IN = Flow("tcp", PEER, ME, 7)
UDP_OUT = Flow("udp", PEER, ME)  # we send requests on it
TCP_OUT = Flow("tcp", PEER, ME, 9)


def make_layer(**kwargs: object) -> TransactionLayer:
    return TransactionLayer(id_factory=counter_ids("x"), **kwargs)  # type: ignore[arg-type]


def drive(layer: TransactionLayer, end: float) -> list[tuple[float, bytes]]:
    """Fire timers up to `end`; what went out, with when."""
    out: list[tuple[float, bytes]] = []
    while (deadline := layer.next_timer()) is not None and deadline <= end:
        layer.handle_timers(deadline)
        out.extend((deadline, data) for data, _ in layer.outgoing())
    return out


def times(sent: list[tuple[float, bytes]]) -> list[float]:
    return [t for t, _ in sent]


def one_event(layer: TransactionLayer) -> object:
    events = layer.events()
    assert len(events) == 1, events
    return events[0]


def sent_request(layer: TransactionLayer) -> Request:
    out = layer.outgoing()
    assert len(out) == 1
    message = parse_message(out[0][0])
    assert isinstance(message, Request)
    return message


def answer(request: Request, status: int, tag: str | None = "uas1") -> bytes:
    return serialise(response_for(request, status, to_tag=tag))


# ------------------------------------------------------------------ tables


@pytest.mark.parametrize(
    "table", [CLIENT_INVITE, CLIENT_NON_INVITE, SERVER_INVITE, SERVER_NON_INVITE]
)
def test_tables_never_leave_terminated(table: dict[tuple[State, Input], object]) -> None:
    assert all(state is not State.TERMINATED for state, _ in table)


def test_client_tables_take_no_tu_input_timers_and_server_tables_take_tu_input() -> None:
    for table in (CLIENT_INVITE, CLIENT_NON_INVITE):
        assert not any(inp is Input.REQUEST or inp is Input.ACK for _, inp in table)
    for table in (SERVER_INVITE, SERVER_NON_INVITE):
        assert {inp for _, inp in table} >= TU_INPUTS


def test_timer_values_default_and_derived() -> None:
    t = Timers()
    assert (t.t1, t.t2, t.t4, t.d) == (0.5, 4.0, 5.0, 32.0)
    assert t.a == t.e == t.g == 0.5
    assert t.b == t.f == t.h == t.j == t.l == t.m == 32.0
    assert t.i == t.k == 5.0
    fast = Timers(t1=0.1, t2=0.4, t4=0.5)
    assert fast.b == pytest.approx(6.4) and fast.k == 0.5
    with pytest.raises(ValueError):
        Timers(t1=5.0, t2=4.0)


class _Tx:
    def __init__(self) -> None:
        self.t_out = -1.0
        self.t_retx = -1.0


def test_timer_queue_lazy_cancel_and_order() -> None:
    q = TimerQueue()
    a, b, c = _Tx(), _Tx(), _Tx()
    q.arm_out(a, 0.0, 32.0)
    q.arm_out(b, 1.0, 5.0)
    q.arm_retx(c, 0.0, 0.5)
    assert q.next_deadline() == 0.5
    c.t_retx = -1.0  # cancelled: its entry is stale
    assert q.next_deadline() == 6.0
    q.arm_out(a, 2.0, 32.0)  # re-armed: the old 32.0 entry is stale
    assert q.pop_due(33.0) == ([], [b])
    assert q.pop_due(34.0) == ([], [a])
    assert q.next_deadline() is None and len(q) == 0


def test_timer_queue_cached_deadline_follows_arms_and_cancels() -> None:
    q = TimerQueue()
    a, b = _Tx(), _Tx()
    assert q.next_deadline() is None
    q.arm_out(a, 0.0, 32.0)
    assert q.next_deadline() == 32.0
    q.arm_retx(b, 1.0, 0.5)  # an earlier one lowers it
    assert q.next_deadline() == 1.5
    q.arm_retx(b, 1.0, 1.0)  # re-armed later: the cached head went stale
    assert q.next_deadline() == 2.0
    b.t_retx = -1.0
    assert q.next_deadline() == 32.0
    assert q.pop_due(32.0) == ([], [a]) and q.next_deadline() is None


# ---------------------------------------------------- server non-INVITE (J)


def test_server_non_invite_timer_j_and_absorbed_retransmissions() -> None:
    layer = make_layer()
    data = sip_request_bytes("OPTIONS")
    layer.receive(data, UDP_IN, 0.0)
    event = one_event(layer)
    assert isinstance(event, RequestReceived)
    layer.receive(data, UDP_IN, 0.3)  # before any response: absorbed, silent
    assert layer.events() == [] and layer.outgoing() == []
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 1.0)
    [(first, flow)] = layer.outgoing()
    assert flow == UDP_IN
    assert layer.next_timer() == 33.0  # Timer J = 64*T1
    layer.receive(data, UDP_IN, 20.0)  # Completed: the same response again
    assert layer.outgoing() == [(first, UDP_IN)] and layer.events() == []
    assert layer.stats.retransmissions_absorbed == 2
    assert layer.stats.retransmissions_sent == 1
    assert drive(layer, 40.0) == [] and layer.server_transactions == 0
    layer.receive(data, UDP_IN, 41.0)  # after J it is a new request
    assert isinstance(one_event(layer), RequestReceived)


def test_server_non_invite_provisional_then_retransmission_gets_it() -> None:
    layer = make_layer()
    data = sip_request_bytes("MESSAGE")
    layer.receive(data, UDP_IN, 0.0)
    event = one_event(layer)
    assert isinstance(event, RequestReceived)
    layer.respond(event.tx_id, response_for(event.request, 180), 0.1)
    [(provisional, _)] = layer.outgoing()
    layer.receive(data, UDP_IN, 0.5)
    assert layer.outgoing() == [(provisional, UDP_IN)]
    layer.respond(event.tx_id, response_for(event.request, 202, to_tag="t"), 0.6)
    assert parse_message(layer.outgoing()[0][0]).status == 202  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError):
        layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.7)


def test_server_non_invite_reliable_has_zero_timer_j() -> None:
    layer = make_layer()
    layer.receive(sip_request_bytes("OPTIONS"), TCP_IN, 0.0)
    event = one_event(layer)
    assert isinstance(event, RequestReceived)
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    assert layer.outgoing()[0][1] == TCP_IN  # same connection
    assert layer.server_transactions == 0 and layer.next_timer() is None


def test_respond_to_unknown_transaction_raises() -> None:
    layer = make_layer()
    request = sip_request("OPTIONS")
    with pytest.raises(LocalProtocolError):
        layer.respond("nope", response_for(request, 200), 0.0)


# ------------------------------------------------------ server INVITE (G H I L)


def _invite_server(layer: TransactionLayer, flow: Flow = UDP_IN) -> RequestReceived:
    layer.receive(sip_request_bytes("INVITE"), flow, 0.0)
    event = one_event(layer)
    assert isinstance(event, RequestReceived)
    [(trying, _)] = layer.outgoing()
    assert parse_message(trying).status == 100  # type: ignore[union-attr]
    return event


def test_server_invite_timer_g_schedule_and_timer_h() -> None:
    layer = make_layer()
    event = _invite_server(layer)
    layer.respond(event.tx_id, response_for(event.request, 486, to_tag="t"), 0.0)
    [(final, _)] = layer.outgoing()
    sent = drive(layer, 40.0)
    # G: T1 doubling, capped at T2 = 4; H = 64*T1 ends it
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(data == final for _, data in sent)
    assert layer.events() == [TransactionTimedOut(event.tx_id, client=False)]
    assert layer.server_transactions == 0


def test_server_invite_ack_for_non_2xx_absorbed_then_timer_i() -> None:
    layer = make_layer()
    event = _invite_server(layer)
    layer.respond(event.tx_id, response_for(event.request, 486, to_tag="t"), 0.0)
    layer.outgoing()
    assert times(drive(layer, 2.0)) == [0.5, 1.5]
    ack = sip_request_bytes("ACK", to="<sip:bob@example.com>;tag=t")
    layer.receive(ack, UDP_IN, 2.0)  # Confirmed: G and H stop, I runs
    assert layer.events() == [] and layer.outgoing() == []
    assert layer.next_timer() == 7.0  # Timer I = T4
    layer.receive(ack, UDP_IN, 3.0)  # a retransmitted ACK is absorbed too
    assert layer.events() == []
    assert drive(layer, 100.0) == [] and layer.events() == []
    assert layer.server_transactions == 0


def test_server_invite_reliable_no_g_and_zero_timer_i() -> None:
    layer = make_layer()
    event = _invite_server(layer, TCP_IN)
    layer.respond(event.tx_id, response_for(event.request, 486, to_tag="t"), 0.0)
    layer.outgoing()
    assert layer.next_timer() == 32.0  # only H
    layer.receive(sip_request_bytes("ACK", to="<sip:bob@example.com>;tag=t"), TCP_IN, 1.0)
    assert layer.server_transactions == 0 and layer.next_timer() is None


def test_server_invite_2xx_retransmitted_until_ack_then_timer_l() -> None:
    layer = make_layer()
    event = _invite_server(layer)
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    [(ok, _)] = layer.outgoing()
    sent = drive(layer, 4.0)
    assert times(sent) == [0.5, 1.5, 3.5] and all(d == ok for _, d in sent)
    layer.receive(sip_request_bytes("INVITE"), UDP_IN, 3.6)  # absorbed (RFC 6026)
    assert layer.outgoing() == [] and layer.events() == []
    # the ACK of a 2xx has a branch of its own: it still stops the 2xx
    ack = sip_request_bytes(
        "ACK",
        via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack1",
        to="<sip:bob@example.com>;tag=t",
    )
    layer.receive(ack, UDP_IN, 4.0)
    event_ack = one_event(layer)
    assert isinstance(event_ack, AckReceived) and event_ack.request.method == "ACK"
    assert drive(layer, 31.9) == []
    layer.receive(sip_request_bytes("INVITE"), UDP_IN, 31.9)  # still absorbed
    assert layer.events() == []
    assert drive(layer, 40.0) == [] and layer.events() == []  # L: quietly gone
    assert layer.server_transactions == 0


def test_server_invite_2xx_never_acked_times_out_at_timer_l() -> None:
    layer = make_layer()
    event = _invite_server(layer)
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    layer.outgoing()
    sent = drive(layer, 40.0)
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert layer.events() == [TransactionTimedOut(event.tx_id, client=False)]


def test_server_invite_2xx_over_tcp_not_retransmitted() -> None:
    layer = make_layer()
    event = _invite_server(layer, TCP_IN)
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    layer.outgoing()
    assert layer.next_timer() == 32.0  # L only
    assert drive(layer, 31.0) == []


def test_server_invite_retransmission_gets_100_again() -> None:
    layer = make_layer()
    _invite_server(layer)
    layer.receive(sip_request_bytes("INVITE"), UDP_IN, 0.5)
    [(again, _)] = layer.outgoing()
    assert parse_message(again).status == 100  # type: ignore[union-attr]
    assert layer.events() == []


# ------------------------------------------------------ client non-INVITE (E F K)


def test_client_non_invite_timer_e_schedule_and_timer_f() -> None:
    layer = make_layer()
    tx = layer.send_request(sip_request("OPTIONS", via=None), UDP_OUT, 0.0)
    request = sent_request(layer)
    assert request.top_via.branch is not None
    sent = drive(layer, 40.0)
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert layer.events() == [TransactionTimedOut(tx, client=True)]
    assert layer.stats.retransmissions_sent == 10 and layer.client_transactions == 0


def test_client_non_invite_proceeding_retransmits_at_t2() -> None:
    layer = make_layer()
    tx = layer.send_request(sip_request("REGISTER", via=None), UDP_OUT, 0.0)
    request = sent_request(layer)
    assert times(drive(layer, 1.0)) == [0.5]
    layer.receive(answer(request, 100, None), UDP_OUT, 1.2)
    assert isinstance(one_event(layer), ResponseReceived)
    sent = drive(layer, 14.0)
    assert times(sent) == [1.5, 5.5, 9.5, 13.5]  # E at T2 once Proceeding
    layer.receive(answer(request, 200), UDP_OUT, 14.0)
    event = one_event(layer)
    assert isinstance(event, ResponseReceived) and event.tx_id == tx
    assert layer.next_timer() == 19.0  # Timer K = T4
    layer.receive(answer(request, 200), UDP_OUT, 15.0)  # absorbed
    assert layer.events() == []
    assert drive(layer, 30.0) == [] and layer.client_transactions == 0


def test_client_non_invite_reliable_no_retransmissions_timer_f_still_runs() -> None:
    layer = make_layer()
    tx = layer.send_request(sip_request("OPTIONS", via=None), TCP_OUT, 0.0)
    request = sent_request(layer)
    assert request.top_via.transport == "TCP"
    assert drive(layer, 40.0) == []
    assert layer.events() == [TransactionTimedOut(tx, client=True)]


def test_client_non_invite_reliable_zero_timer_k() -> None:
    layer = make_layer()
    layer.send_request(sip_request("OPTIONS", via=None), TCP_OUT, 0.0)
    request = sent_request(layer)
    layer.receive(answer(request, 200), TCP_OUT, 0.1)
    assert isinstance(one_event(layer), ResponseReceived)
    assert layer.client_transactions == 0 and layer.next_timer() is None


# ------------------------------------------------------ client INVITE (A B D M)


def test_client_invite_timer_a_doubles_uncapped_and_timer_b() -> None:
    layer = make_layer()
    tx = layer.send_request(sip_request("INVITE", via=None), UDP_OUT, 0.0)
    sent_request(layer)
    sent = drive(layer, 40.0)
    assert times(sent) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert layer.events() == [TransactionTimedOut(tx, client=True)]


def test_client_invite_provisional_stops_a_and_b() -> None:
    layer = make_layer()
    tx = layer.send_request(sip_request("INVITE", via=None), UDP_OUT, 0.0)
    request = sent_request(layer)
    layer.receive(answer(request, 180), UDP_OUT, 0.2)
    event = one_event(layer)
    assert isinstance(event, ResponseReceived)
    assert (event.tx_id, event.response.status, event.flow) == (tx, 180, UDP_OUT)
    assert drive(layer, 200.0) == [] and layer.events() == []  # rings as long as it likes
    assert layer.client_transactions == 1


def test_client_invite_non_2xx_acked_by_core_and_timer_d() -> None:
    layer = make_layer()
    invite = sip_request("INVITE", via=None, extra=(("Route", "<sip:proxy.example.com;lr>"),))
    tx = layer.send_request(invite, UDP_OUT, 0.0)
    request = sent_request(layer)
    layer.receive(answer(request, 486), UDP_OUT, 0.2)
    event = one_event(layer)
    assert isinstance(event, ResponseReceived) and event.response.status == 486
    [(ack_bytes, flow)] = layer.outgoing()
    assert flow == UDP_OUT
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == request.uri and ack.call_id == request.call_id
    assert str(ack.cseq) == f"{request.cseq.seq} ACK"
    assert ack.top_via.branch == request.top_via.branch and len(ack.vias) == 1
    assert ack.to.tag == "uas1" and ack.from_.tag == request.from_.tag
    assert ack.headers.get_all("route") == ["<sip:proxy.example.com;lr>"]
    layer.receive(answer(request, 486), UDP_OUT, 1.0)  # retransmitted: ACK again, no event
    assert layer.outgoing() == [(ack_bytes, UDP_OUT)] and layer.events() == []
    assert layer.next_timer() == 32.2  # Timer D
    drive(layer, 40.0)
    assert layer.client_transactions == 0 and layer.events() == []
    assert tx


def test_client_invite_non_2xx_over_tcp_zero_timer_d() -> None:
    layer = make_layer()
    layer.send_request(sip_request("INVITE", via=None), TCP_OUT, 0.0)
    request = sent_request(layer)
    layer.receive(answer(request, 603), TCP_OUT, 0.2)
    assert len(layer.outgoing()) == 1  # the ACK
    assert layer.client_transactions == 0


def test_client_invite_2xx_accepted_retransmissions_delivered_timer_m() -> None:
    layer = make_layer(timers=Timers(t1=0.25))
    tx = layer.send_request(sip_request("INVITE", via=None), UDP_OUT, 0.0)
    request = sent_request(layer)
    layer.receive(answer(request, 200), UDP_OUT, 0.1)
    layer.receive(answer(request, 200), UDP_OUT, 0.6)  # a 2xx retransmission
    layer.receive(answer(request, 200, tag="fork2"), UDP_OUT, 0.7)  # another fork
    layer.receive(answer(request, 486, tag="fork3"), UDP_OUT, 0.8)  # absorbed
    events = layer.events()
    assert [e.tx_id for e in events] == [tx, tx, tx]  # type: ignore[union-attr]
    assert layer.outgoing() == []  # the TU ACKs a 2xx, not the core
    assert layer.next_timer() == 0.1 + 16.0  # Timer M = 64*T1
    assert drive(layer, 20.0) == []
    layer.receive(answer(request, 200), UDP_OUT, 20.0)
    stray = one_event(layer)
    assert isinstance(stray, StrayResponseReceived) and stray.response.status == 200


def test_scaled_timers_scale_the_schedule() -> None:
    layer = make_layer(timers=Timers(t1=0.1, t2=0.4, t4=0.5))
    layer.send_request(sip_request("OPTIONS", via=None), UDP_OUT, 0.0)
    layer.outgoing()
    sent = drive(layer, 7.0)
    assert times(sent)[:5] == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5])
    assert len(layer.events()) == 1  # F at 6.4
