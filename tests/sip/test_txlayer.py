"""Transaction layer: matching (§17.2.3, RFC 2543 fallback), ACK and CANCEL
handling, merged requests, received/rport and response addressing, CANCEL
from the client side, malformed input, and two layers over a lossy loop."""

from __future__ import annotations

import random

import pytest
from loop import LossyLoop, counter_ids, first_matching, sip_request, sip_request_bytes

from regswitch.sip.errors import LocalProtocolError
from regswitch.sip.events import (
    AckReceived,
    CancelReceived,
    Event,
    MalformedReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponseReceived,
    TransactionTimedOut,
)
from regswitch.sip.flow import Flow
from regswitch.sip.message import Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise
from regswitch.sip.txlayer import TransactionLayer

PEER = ("192.0.2.1", 5060)
ME = ("192.0.2.10", 5060)
UDP = Flow("udp", PEER, ME)
TCP = Flow("tcp", PEER, ME, 7)


def make_layer(**kwargs: object) -> TransactionLayer:
    return TransactionLayer(id_factory=counter_ids("x"), **kwargs)  # type: ignore[arg-type]


def responses(layer: TransactionLayer) -> list[tuple[Response, Flow]]:
    out = []
    for data, flow in layer.outgoing():
        message = parse_message(data)
        assert isinstance(message, Response)
        out.append((message, flow))
    return out


def new_request(layer: TransactionLayer, data: bytes, flow: Flow = UDP) -> RequestReceived:
    layer.receive(data, flow, 0.0)
    [event] = layer.events()
    assert isinstance(event, RequestReceived)
    return event


# ------------------------------------------------------------ matching


def test_same_branch_different_method_or_sent_by_is_another_transaction() -> None:
    layer = make_layer()
    new_request(layer, sip_request_bytes("OPTIONS"))
    new_request(layer, sip_request_bytes("INFO", cseq=2))
    other_host = "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKtest1"
    new_request(layer, sip_request_bytes("OPTIONS", via=other_host, cseq=3))
    assert layer.server_transactions == 3


def test_rfc2543_branchless_requests_match_and_ack_is_absorbed() -> None:
    layer = make_layer()
    old = "SIP/2.0/UDP 192.0.2.1:5060"
    invite = sip_request_bytes("INVITE", via=old)
    event = new_request(layer, invite)
    layer.outgoing()
    layer.receive(invite, UDP, 0.5)  # retransmission: absorbed, 100 again
    assert layer.events() == [] and len(layer.outgoing()) == 1
    layer.respond(event.tx_id, response_for(event.request, 404, to_tag="t"), 1.0)
    layer.outgoing()
    layer.receive(sip_request_bytes("ACK", via=old, to="<sip:bob@example.com>;tag=t"), UDP, 1.1)
    assert layer.events() == []
    assert layer.next_timer() == 6.1  # Confirmed, Timer I


def test_ack_matching_nothing_is_reported() -> None:
    layer = make_layer()
    layer.receive(sip_request_bytes("ACK", to="<sip:bob@example.com>;tag=t"), UDP, 0.0)
    [event] = layer.events()
    assert isinstance(event, AckReceived) and event.flow == UDP
    assert layer.outgoing() == [] and layer.server_transactions == 0


def test_100_trying_on_invite_carries_timestamp_and_server() -> None:
    layer = make_layer(server_header="regswitch/0.1")
    data = sip_request_bytes("INVITE", extra=(("Timestamp", "54"),))
    new_request(layer, data)
    [(trying, flow)] = responses(layer)
    assert trying.status == 100 and flow == UDP
    assert trying.headers.get("timestamp") == "54"
    assert trying.headers.get("server") == "regswitch/0.1"
    assert trying.to.tag is None


def test_server_header_added_to_tu_responses_unless_present() -> None:
    layer = make_layer(server_header="regswitch/0.1")
    event = new_request(layer, sip_request_bytes("OPTIONS"))
    response = response_for(event.request, 200, to_tag="t")
    response.headers.add("Server", "custom")
    layer.respond(event.tx_id, response, 0.0)
    [(sent, _)] = responses(layer)
    assert sent.headers.get_all("server") == ["custom"]


# ------------------------------------------------------------ CANCEL (server)


def test_cancel_gets_200_from_the_core_and_cancel_received() -> None:
    layer = make_layer()
    invite = new_request(layer, sip_request_bytes("INVITE"))
    layer.outgoing()
    layer.respond(invite.tx_id, response_for(invite.request, 180, to_tag="ours"), 0.1)
    layer.outgoing()
    cancel = sip_request_bytes("CANCEL")
    layer.receive(cancel, UDP, 1.0)
    [(ok, flow)] = responses(layer)
    assert (ok.status, ok.cseq.method, flow) == (200, "CANCEL", UDP)
    assert ok.to.tag == "ours"  # §9.2: same tag as the INVITE's responses
    [event] = layer.events()
    assert isinstance(event, CancelReceived) and event.tx_id == invite.tx_id
    layer.receive(cancel, UDP, 1.2)  # retransmitted CANCEL: same 200, no event
    assert [r.status for r, _ in responses(layer)] == [200] and layer.events() == []
    # the TU ends the INVITE with 487; its ACK is absorbed
    layer.respond(invite.tx_id, response_for(invite.request, 487, to_tag="ours"), 1.3)
    assert [r.status for r, _ in responses(layer)] == [487]
    layer.receive(sip_request_bytes("ACK", to="<sip:bob@example.com>;tag=ours"), UDP, 1.4)
    assert layer.events() == []


def test_cancel_from_another_source_gets_481_and_leaves_the_callers_own() -> None:
    """The branch travels in clear: a stranger reusing it cancels nothing, and
    its CANCEL does not take the key the caller's own CANCEL will arrive with."""
    layer = make_layer()
    invite = new_request(layer, sip_request_bytes("INVITE"))
    layer.outgoing()
    cancel = sip_request_bytes("CANCEL")
    stranger = Flow("udp", ("192.0.2.66", 5060), ME)
    layer.receive(cancel, stranger, 1.0)
    [(resp, flow)] = responses(layer)
    assert (resp.status, flow.remote) == (481, stranger.remote)
    assert layer.events() == [] and layer.stats.foreign_requests == 1
    assert layer.server_transactions == 1  # only the INVITE
    layer.receive(cancel, Flow("tcp", PEER, ME, 9), 1.1)  # the right address, another transport
    assert [r.status for r, _ in responses(layer)] == [481]
    layer.receive(cancel, UDP, 1.2)  # the caller's own
    assert [r.status for r, _ in responses(layer)] == [200]
    [event] = layer.events()
    assert isinstance(event, CancelReceived) and event.tx_id == invite.tx_id


def test_ack_from_another_source_does_not_confirm() -> None:
    layer = make_layer()
    invite = new_request(layer, sip_request_bytes("INVITE"))
    layer.respond(invite.tx_id, response_for(invite.request, 486, to_tag="t"), 0.0)
    layer.outgoing()
    ack = sip_request_bytes("ACK", to="<sip:bob@example.com>;tag=t")
    layer.receive(ack, Flow("udp", ("192.0.2.66", 5060), ME), 0.1)
    layer.handle_timers(0.6)  # Timer G still runs: the 486 goes out again
    assert [r.status for r, _ in responses(layer)] == [486]
    layer.receive(ack, UDP, 0.7)
    layer.handle_timers(1.7)
    assert responses(layer) == [] and layer.events() == []


def test_ack_of_a_2xx_from_another_source_is_dropped() -> None:
    layer = make_layer()
    invite = new_request(layer, sip_request_bytes("INVITE"))
    layer.respond(invite.tx_id, response_for(invite.request, 200, to_tag="t"), 0.0)
    layer.outgoing()
    ack = sip_request_bytes(
        "ACK", to="<sip:bob@example.com>;tag=t", via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack"
    )
    layer.receive(ack, Flow("udp", ("192.0.2.66", 5060), ME), 0.1)
    assert layer.events() == []
    layer.handle_timers(0.6)  # the 2xx is still retransmitted
    assert [r.status for r, _ in responses(layer)] == [200]
    layer.receive(ack, UDP, 0.7)
    [event] = layer.events()
    assert isinstance(event, AckReceived)


def test_cancel_matching_nothing_gets_481() -> None:
    layer = make_layer()
    layer.receive(sip_request_bytes("CANCEL"), UDP, 0.0)
    [(resp, _)] = responses(layer)
    assert resp.status == 481 and resp.to.tag
    assert layer.events() == [] and layer.stats.unmatched_cancels == 1


def test_cancel_after_final_response_gets_200_but_no_event() -> None:
    layer = make_layer()
    invite = new_request(layer, sip_request_bytes("INVITE"))
    layer.respond(invite.tx_id, response_for(invite.request, 200, to_tag="t"), 0.1)
    layer.outgoing()
    layer.receive(sip_request_bytes("CANCEL"), UDP, 0.2)
    assert [r.status for r, _ in responses(layer)] == [200]
    assert layer.events() == []


# ------------------------------------------------------------ merged (§8.2.2.2)


def test_merged_request_gets_482_and_no_event() -> None:
    layer = make_layer()
    new_request(layer, sip_request_bytes("INVITE"))
    layer.outgoing()
    forked = sip_request_bytes("INVITE", via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKother")
    layer.receive(forked, UDP, 0.1)
    [(resp, _)] = responses(layer)
    assert resp.status == 482 and layer.events() == []
    layer.receive(forked, UDP, 0.2)  # its retransmission: the 482 again
    assert [r.status for r, _ in responses(layer)] == [482]
    assert layer.stats.merged_requests == 1


def test_non_invite_is_no_longer_merged_once_answered() -> None:
    layer = make_layer()
    first = new_request(layer, sip_request_bytes("REGISTER", to="<sip:alice@example.com>"))
    layer.respond(first.tx_id, response_for(first.request, 200, to_tag="t"), 0.0)
    layer.outgoing()
    again = sip_request_bytes(
        "REGISTER",
        to="<sip:alice@example.com>",
        via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew",
    )
    new_request(layer, again)


def test_request_with_to_tag_is_never_merged() -> None:
    layer = make_layer()
    to = "<sip:bob@example.com>;tag=dialog"
    new_request(layer, sip_request_bytes("INFO", to=to))
    new_request(layer, sip_request_bytes("INFO", to=to, via="SIP/2.0/UDP h:5060;branch=z9hG4bKz"))


# ------------------------------------------------- received / rport (RFC 3581)


def test_empty_rport_filled_received_added_response_to_source() -> None:
    layer = make_layer()
    nat = Flow("udp", ("203.0.113.7", 40000), ME)
    via = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport"
    event = new_request(layer, sip_request_bytes("REGISTER", via=via), nat)
    top = event.request.top_via
    assert top.params["rport"] == "40000" and top.params["received"] == "203.0.113.7"
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    [(resp, flow)] = responses(layer)
    assert flow == nat
    assert resp.top_via.params["rport"] == "40000"
    assert resp.top_via.params["received"] == "203.0.113.7"


def test_rport_with_sent_by_equal_to_source_still_gets_received() -> None:
    layer = make_layer()
    via = "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKr"
    event = new_request(layer, sip_request_bytes("OPTIONS", via=via))
    assert str(event.request.top_via).endswith(";rport=5060;branch=z9hG4bKr;received=192.0.2.1")


def test_no_rport_response_goes_to_source_ip_and_via_port() -> None:
    layer = make_layer()
    src = Flow("udp", ("203.0.113.7", 40000), ME)
    via = "SIP/2.0/UDP phone.example.com:5070;branch=z9hG4bKn"
    event = new_request(layer, sip_request_bytes("OPTIONS", via=via), src)
    assert event.request.top_via.params["received"] == "203.0.113.7"
    assert "rport" not in event.request.top_via.params
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    [(resp, flow)] = responses(layer)
    assert flow == Flow("udp", ("203.0.113.7", 5070), ME)
    assert resp.top_via.params["received"] == "203.0.113.7"


def test_default_port_5060_and_unchanged_via_when_host_is_source() -> None:
    layer = make_layer()
    src = Flow("udp", ("192.0.2.1", 5062), ME)
    raw_via = "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKd"
    event = new_request(layer, sip_request_bytes("OPTIONS", via=raw_via), src)
    assert event.request.headers.get("via") == raw_via
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    [(_, flow)] = responses(layer)
    assert flow.remote == ("192.0.2.1", 5060)


def test_ipv6_sent_by_in_brackets_matches_source() -> None:
    layer = make_layer()
    src = Flow("udp", ("2001:db8::1", 5060), ("2001:db8::10", 5060))
    raw_via = "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6"
    event = new_request(layer, sip_request_bytes("OPTIONS", via=raw_via), src)
    assert event.request.headers.get("via") == raw_via


def test_stream_responses_go_back_on_the_same_connection() -> None:
    layer = make_layer()
    via = "SIP/2.0/TCP 10.0.0.5:5090;branch=z9hG4bKt;rport"
    event = new_request(layer, sip_request_bytes("OPTIONS", via=via), TCP)
    assert event.request.top_via.params["received"] == PEER[0]
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    [(_, flow)] = responses(layer)
    assert flow is TCP


def test_via_list_in_one_header_line_keeps_the_rest() -> None:
    layer = make_layer()
    via = "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKa;rport, SIP/2.0/UDP proxy.test;branch=z9hG4bKb"
    event = new_request(layer, sip_request_bytes("OPTIONS", via=via))
    vias = event.request.vias
    assert len(vias) == 2 and vias[1].host == "proxy.test"
    assert vias[0].params["received"] == PEER[0]


def test_retransmission_after_final_is_answered_at_its_own_source() -> None:
    layer = make_layer()
    via = "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKm;rport"
    first = Flow("udp", ("203.0.113.7", 40000), ME)
    event = new_request(layer, sip_request_bytes("REGISTER", via=via), first)
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0)
    [(ok, _)] = layer.outgoing()
    moved = Flow("udp", ("203.0.113.7", 40001), ME)  # the NAT rebound
    layer.receive(sip_request_bytes("REGISTER", via=via), moved, 1.0)
    assert layer.outgoing() == [(ok, moved)]


def test_forget_keeps_no_state_after_a_final_non_invite_response() -> None:
    layer = make_layer()
    data = sip_request_bytes("REGISTER")
    event = new_request(layer, data)
    layer.respond(event.tx_id, response_for(event.request, 401, to_tag="t"), 0.0, forget=True)
    [(challenge, _)] = responses(layer)
    assert challenge.status == 401 and layer.server_transactions == 0
    # a retransmission is a new request now: the TU answers it again
    again = new_request(layer, data)
    assert again.tx_id == event.tx_id and layer.stats.retransmissions_absorbed == 0
    layer.respond(again.tx_id, response_for(again.request, 401, to_tag="u"), 0.1)
    assert layer.server_transactions == 1  # without forget it lingers for Timer J


def test_forget_sends_an_invite_failure_once() -> None:
    """A stateless challenge to INVITE: one response, no Timer G/H, and the
    retransmitted INVITE is a new request, answered again."""
    layer = make_layer()
    data = sip_request_bytes("INVITE")
    event = new_request(layer, data)
    layer.outgoing()  # the 100 Trying
    layer.respond(event.tx_id, response_for(event.request, 407, to_tag="t"), 0.0, forget=True)
    assert [r.status for r, _ in responses(layer)] == [407]
    assert layer.server_transactions == 0 and layer.next_timer() is None
    layer.receive(sip_request_bytes("ACK", to="<sip:bob@example.com>;tag=t"), UDP, 0.1)
    [ack] = layer.events()
    assert isinstance(ack, AckReceived)  # matches nothing: the TU drops it
    again = new_request(layer, data)
    assert again.tx_id == event.tx_id


def test_no_100_trying_for_an_invite_answered_at_once() -> None:
    """The 100 waits for `outgoing()`: a final response given before it makes it
    pointless; a provisional one replaces it; an INVITE left unanswered gets it."""
    layer = make_layer()
    refused = new_request(layer, sip_request_bytes("INVITE"))
    layer.respond(refused.tx_id, response_for(refused.request, 407, to_tag="t"), 0.0, forget=True)
    ringing = new_request(layer, sip_request_bytes(
        "INVITE", via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKring", call_id="ring"))
    layer.respond(ringing.tx_id, response_for(ringing.request, 180, to_tag="r"), 0.0)
    new_request(layer, sip_request_bytes(
        "INVITE", via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKwait", call_id="wait"))
    sent = [(r.status, r.call_id) for r, _ in responses(layer)]
    assert sent == [(100, "wait"), (407, "call-1@example.com"), (180, "ring")]


def test_forget_keeps_an_invite_2xx() -> None:
    layer = make_layer()
    event = new_request(layer, sip_request_bytes("INVITE"))
    layer.outgoing()
    layer.respond(event.tx_id, response_for(event.request, 200, to_tag="t"), 0.0, forget=True)
    assert layer.server_transactions == 1  # retransmitted until its ACK


# ------------------------------------------------------------ client side


def test_send_request_inserts_via_with_branch_and_rport() -> None:
    layer = make_layer()
    flow = Flow("tls", ("192.0.2.1", 5061), ("2001:db8::10", 5061), 3)
    tx = layer.send_request(sip_request("OPTIONS", via=None), flow, 0.0)
    [(data, out_flow)] = layer.outgoing()
    request = parse_message(data)
    assert out_flow is flow
    assert request.headers.get("via") == "SIP/2.0/TLS [2001:db8::10]:5061;branch=z9hG4bKx1;rport"
    assert tx == "z9hG4bKx1 OPTIONS"


def test_send_request_adds_branch_to_top_via_without_one() -> None:
    layer = make_layer()
    request = sip_request("OPTIONS", via="SIP/2.0/UDP 192.0.2.10:5060;rport")
    layer.send_request(request, UDP, 0.0)
    sent = parse_message(layer.outgoing()[0][0])
    assert sent.top_via.branch == "z9hG4bKx1" and "rport" in sent.top_via.params


def test_send_request_rejects_ack_and_duplicate_branch() -> None:
    layer = make_layer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(sip_request("ACK"), UDP, 0.0)
    layer.send_request(sip_request("OPTIONS"), UDP, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(sip_request("OPTIONS"), UDP, 0.0)


def test_send_stateless_adds_a_branch_and_sends_responses_as_is() -> None:
    layer = make_layer()
    layer.send_stateless(sip_request("ACK", via=None), UDP)
    [(data, flow)] = layer.outgoing()
    assert parse_message(data).top_via.branch == "z9hG4bKx1" and flow is UDP
    response = response_for(sip_request("INVITE"), 200, to_tag="t")
    layer.send_stateless(response, TCP)
    assert layer.outgoing() == [(serialise(response), TCP)]
    assert layer.client_transactions == 0 and layer.next_timer() is None


def test_stray_non_2xx_dropped_and_counted() -> None:
    layer = make_layer()
    layer.receive(serialise(response_for(sip_request("INVITE"), 486, to_tag="t")), UDP, 0.0)
    layer.receive(serialise(response_for(sip_request("OPTIONS"), 200, to_tag="t")), UDP, 0.0)
    assert layer.events() == [] and layer.stats.stray_responses == 2
    layer.receive(serialise(response_for(sip_request("INVITE"), 200, to_tag="t")), UDP, 0.0)
    [event] = layer.events()
    assert isinstance(event, StrayResponseReceived) and event.flow == UDP


def _invite_client(layer: TransactionLayer) -> tuple[str, Request]:
    invite = sip_request("INVITE", via=None, extra=(("Route", "<sip:p.example.com;lr>"),))
    tx = layer.send_request(invite, UDP, 0.0)
    [(data, _)] = layer.outgoing()
    sent = parse_message(data)
    assert isinstance(sent, Request)
    return tx, sent


def _reply(layer: TransactionLayer, request: Request, status: int, now: float) -> None:
    layer.receive(serialise(response_for(request, status, to_tag="callee")), UDP, now)


def test_2xx_of_a_fork_after_a_failure_is_handed_to_the_tu() -> None:
    layer = make_layer()
    _, invite = _invite_client(layer)
    _reply(layer, invite, 486, 0.1)
    layer.events()
    layer.outgoing()
    layer.receive(serialise(response_for(invite, 200, to_tag="fork2")), UDP, 0.2)
    [event] = layer.events()
    assert isinstance(event, StrayResponseReceived) and event.response.to.tag == "fork2"


def test_cancel_before_provisional_is_deferred_until_one_arrives() -> None:
    layer = make_layer()
    tx, invite = _invite_client(layer)
    cancel_tx = layer.send_cancel(tx, 0.1, reason='SIP;cause=200;text="Elsewhere"')
    assert cancel_tx is not None and layer.outgoing() == []
    assert layer.send_cancel(tx, 0.2) == cancel_tx
    _reply(layer, invite, 180, 0.3)
    [(data, flow)] = layer.outgoing()
    cancel = parse_message(data)
    assert isinstance(cancel, Request) and flow == UDP
    assert (cancel.method, cancel.uri, cancel.call_id) == ("CANCEL", invite.uri, invite.call_id)
    assert str(cancel.cseq) == f"{invite.cseq.seq} CANCEL"
    assert cancel.headers.get("from") == invite.headers.get("from")
    assert cancel.headers.get("to") == invite.headers.get("to")
    assert cancel.vias[0].branch == invite.top_via.branch and len(cancel.vias) == 1
    assert cancel.headers.get_all("route") == invite.headers.get_all("route")
    assert cancel.headers.get("reason") == 'SIP;cause=200;text="Elsewhere"'
    layer.receive(serialise(response_for(cancel, 200, to_tag="callee")), UDP, 0.4)
    _reply(layer, invite, 487, 0.5)
    events = layer.events()
    assert [(e.tx_id, e.response.status) for e in events] == [  # type: ignore[union-attr]
        (tx, 180),
        (cancel_tx, 200),
        (tx, 487),
    ]
    [(ack, _)] = layer.outgoing()
    assert ack.startswith(b"ACK ")


def test_cancel_is_not_sent_when_a_final_response_comes_first() -> None:
    layer = make_layer()
    tx, invite = _invite_client(layer)
    assert layer.send_cancel(tx, 0.1) is not None
    _reply(layer, invite, 486, 0.2)
    assert [d[:4] for d, _ in layer.outgoing()] == [b"ACK "]
    assert layer.send_cancel(tx, 0.3) is not None  # same id, nothing sent
    assert layer.outgoing() == []
    other = make_layer()
    tx2, _ = _invite_client(other)
    other.receive(serialise(response_for(invite, 486, to_tag="t")), UDP, 0.2)
    assert other.send_cancel(tx2, 0.3) is None  # finished before anyone asked
    assert other.send_cancel("nope", 0.3) is None


def test_cancelled_invite_without_final_gives_up_64_t1_after_the_cancel() -> None:
    layer = make_layer()
    tx, invite = _invite_client(layer)
    _reply(layer, invite, 180, 0.1)
    cancel_tx = layer.send_cancel(tx, 10.0)
    [(data, _)] = layer.outgoing()
    cancel = parse_message(data)
    assert isinstance(cancel, Request)
    layer.receive(serialise(response_for(cancel, 200, to_tag="callee")), UDP, 10.1)
    layer.events()
    while (deadline := layer.next_timer()) is not None and deadline <= 50.0:
        layer.handle_timers(deadline)
    assert layer.events() == [TransactionTimedOut(tx, client=True)]
    assert cancel_tx is not None


def test_send_cancel_on_non_invite_is_a_local_error() -> None:
    layer = make_layer()
    tx = layer.send_request(sip_request("OPTIONS"), UDP, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_cancel(tx, 0.0)


# ------------------------------------------------------------ malformed


def test_malformed_request_and_response_become_events() -> None:
    layer = make_layer()
    layer.receive(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: junk\r\n\r\n", UDP, 0.0)
    layer.receive(b"SIP/2.0 200 OK\r\nFrom: x\r\n\r\n", UDP, 0.0)
    events = layer.events()
    assert all(isinstance(e, MalformedReceived) for e in events) and len(events) == 2
    assert layer.stats.parse_errors_requests == 1 and layer.stats.parse_errors_responses == 1
    assert layer.outgoing() == []


def test_lazily_parsed_garbage_is_malformed_not_an_exception() -> None:
    layer = make_layer()
    bad_from = sip_request_bytes("INVITE", via="SIP/2.0/UDP 192.0.2.1", from_="<<<")
    layer.receive(bad_from, UDP, 0.0)  # RFC 2543 matching needs the From tag
    bad_to = sip_request_bytes("OPTIONS", to='"unterminated <sip:a@b>;tag=1')
    layer.receive(bad_to, UDP, 0.0)
    response = serialise(response_for(sip_request("INVITE"), 200, to_tag="t"))
    layer.receive(response.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP [::1"), UDP, 0.0)
    events = layer.events()
    assert [type(e) for e in events] == [MalformedReceived] * 3


@pytest.mark.parametrize("method", ["CANCEL", "INVITE", "REGISTER"])
def test_bad_to_fails_before_any_transaction_exists(method: str) -> None:
    layer = make_layer()
    if method == "CANCEL":
        new_request(layer, sip_request_bytes("INVITE"))
        layer.outgoing()
    before = layer.server_transactions
    layer.receive(sip_request_bytes(method, to='"open <sip:bob@example.com>'), UDP, 0.1)
    [event] = layer.events()
    assert isinstance(event, MalformedReceived)
    assert layer.server_transactions == before and layer.outgoing() == []


def test_random_corruption_never_raises() -> None:
    rng = random.Random(3261)
    layer = make_layer()
    seeds = [
        sip_request_bytes("INVITE", extra=(("Contact", "<sip:a@192.0.2.1>"),), body=b"v=0\r\n"),
        sip_request_bytes("CANCEL"),
        sip_request_bytes("ACK", to="<sip:b@example.com>;tag=1"),
        serialise(response_for(sip_request("INVITE"), 180, to_tag="t")),
    ]
    for i in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = rng.choice([b";", b",", b"\r\n", b":", b"<", b'"', b" "])
        layer.receive(bytes(data), UDP if i % 2 else TCP, i * 0.01)
        layer.events()
        layer.outgoing()
    layer.handle_timers(1e6)


# ------------------------------------------------------------ lossy loop


def _uas(status: int) -> object:
    def handler(loop: LossyLoop, event: Event) -> None:
        if isinstance(event, RequestReceived):
            response = response_for(event.request, status, to_tag="uas")
            loop.b.layer.respond(event.tx_id, response, loop.now)

    return handler


def _finals(events: list[Event]) -> list[int]:
    return [
        e.response.status
        for e in events
        if isinstance(e, ResponseReceived) and e.response.status >= 200
    ]


@pytest.mark.parametrize("lost", ["OPTIONS ", "SIP/2.0 200"])
def test_loop_non_invite_completes_despite_a_lost_packet(lost: str) -> None:
    src = "a" if lost == "OPTIONS " else "b"
    a, b = make_layer(), TransactionLayer(id_factory=counter_ids("b"))
    loop = LossyLoop(a, b, drop=first_matching(src, lost))
    loop.on_b = _uas(200)  # type: ignore[assignment]
    a.send_request(sip_request("OPTIONS", via=None), loop.flow_from("a"), loop.now)
    loop.run(40.0)
    assert _finals(loop.a.events) == [200]
    assert [type(e) for e in loop.b.events] == [RequestReceived]
    assert sum(p.dropped for p in loop.packets) == 1
    assert loop.sent_lines("a").count("OPTIONS sip:bob@example.com SIP/2.0") == 2
    assert a.client_transactions == 0 and b.server_transactions == 0


@pytest.mark.parametrize("lost", ["INVITE ", "SIP/2.0 486", "ACK "])
def test_loop_invite_rejected_completes_despite_a_lost_packet(lost: str) -> None:
    src = "b" if lost.startswith("SIP") else "a"
    a, b = make_layer(), TransactionLayer(id_factory=counter_ids("b"))
    loop = LossyLoop(a, b, drop=first_matching(src, lost), latency=0.01)
    loop.on_b = _uas(486)  # type: ignore[assignment]
    a.send_request(sip_request("INVITE", via=None), loop.flow_from("a"), loop.now)
    loop.run(60.0)
    assert _finals(loop.a.events) == [486]
    assert [type(e) for e in loop.b.events] == [RequestReceived]  # no H timeout
    assert a.client_transactions == 0 and b.server_transactions == 0


def test_loop_invite_accepted_lost_2xx_is_retransmitted_and_acked() -> None:
    a, b = make_layer(), TransactionLayer(id_factory=counter_ids("b"))
    loop = LossyLoop(a, b, drop=first_matching("b", "SIP/2.0 200"), latency=0.01)
    loop.on_b = _uas(200)  # type: ignore[assignment]

    def uac(loop: LossyLoop, event: Event) -> None:  # the TU ACKs the 2xx
        if isinstance(event, ResponseReceived) and event.response.status == 200:
            ack = sip_request("ACK", via=None, to=event.response.headers.get("to") or "")
            loop.a.layer.send_stateless(ack, loop.flow_from("a"))

    loop.on_a = uac
    a.send_request(sip_request("INVITE", via=None), loop.flow_from("a"), loop.now)
    loop.run(60.0)
    assert _finals(loop.a.events) == [200]
    assert [type(e) for e in loop.b.events] == [RequestReceived, AckReceived]
    oks = [p for p in loop.packets if p.first_line.startswith("SIP/2.0 200")]
    assert len(oks) == 2  # the lost one and one G retransmission, then the ACK stopped it


def test_loop_duplicated_request_and_response_are_absorbed() -> None:
    a, b = make_layer(), TransactionLayer(id_factory=counter_ids("b"))
    loop = LossyLoop(a, b, duplicate=lambda p: True)
    loop.on_b = _uas(200)  # type: ignore[assignment]
    a.send_request(sip_request("REGISTER", via=None), loop.flow_from("a"), loop.now)
    loop.run(40.0)
    assert _finals(loop.a.events) == [200]
    assert [type(e) for e in loop.b.events] == [RequestReceived]
    assert b.stats.retransmissions_absorbed == 1 and a.stats.retransmissions_absorbed >= 1


def test_loop_over_tcp_never_retransmits() -> None:
    a, b = make_layer(), TransactionLayer(id_factory=counter_ids("b"))
    loop = LossyLoop(a, b, transport="tcp", drop=first_matching("b", "SIP/2.0 200"))
    loop.on_b = _uas(200)  # type: ignore[assignment]
    tx = a.send_request(sip_request("OPTIONS", via=None), loop.flow_from("a"), loop.now)
    loop.run(40.0)
    assert len(loop.packets) == 2  # the request and the lost response, nothing more
    assert loop.a.events == [TransactionTimedOut(tx, client=True)]
