"""The test harness tested without the server: the Python UA against itself and
against in-test peers (UDP, TCP, TLS), its digest code against RFC 7616's
examples, and the SIPp / pjsua2 drivers against each other and the UA."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regswitch.sip.message import Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise
from support import require_module, require_tool, sipp_scenario
from support.digest import Challenge, digest_response, split_auth_params
from support.sipp import parse_stats, run_sipp, start_sipp
from support.tls import TlsFiles
from support.ua import UA, split_stream

pytestmark = pytest.mark.timeout(60)

# RFC 7616 §3.9.1
MUFASA = dict(
    username="Mufasa", realm="http-auth@example.org", password="Circle of Life",
    method="GET", uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop="auth",
)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_matches_rfc7616_examples(algorithm: str, expected: str) -> None:
    assert digest_response(algorithm=algorithm, **MUFASA) == expected


def test_auth_params_quoted_commas_and_escapes() -> None:
    params = split_auth_params('realm="a, b", nonce="x\\"y", qop="auth,auth-int", stale=TRUE')
    assert params == {"realm": "a, b", "nonce": 'x"y', "qop": "auth,auth-int", "stale": "TRUE"}
    challenge = Challenge.parse('Digest realm="r", nonce="n", qop="auth,auth-int"')
    assert challenge.algorithm == "MD5" and challenge.qops == ["auth", "auth-int"]


def test_split_stream_framing() -> None:
    msg = b"SIP/2.0 200 OK\r\nl: 4\r\nCSeq: 1 OPTIONS\r\n\r\nbody"
    buf = bytearray(b"\r\n\r\n" + msg + msg[:10])
    assert split_stream(buf) == [b"\r\n\r\n", msg]
    assert bytes(buf) == msg[:10]
    buf += msg[10:]
    assert split_stream(buf) == [msg] and not buf


@contextmanager
def serving(agent: UA, handler: Callable[[Request], None], count: int) -> Iterator[None]:
    """Run `handler` on the next `count` requests `agent` receives, in a thread."""
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            for _ in range(count):
                handler(agent.expect_request(timeout=10))
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    thread.join(15)
    assert not thread.is_alive(), "peer thread did not finish"
    if errors:
        raise errors[0]


def test_udp_request_response_with_provisional(ua: Callable[..., UA]) -> None:
    b = ua("udp")
    a = ua("udp", b.local)

    def answer(req: Request) -> None:
        b.respond(req, 100)
        b.respond(req, 200, headers={"Allow": "OPTIONS"})

    with serving(b, answer, 1):
        resp = a.request("OPTIONS")
    assert resp.status == 200 and resp.headers.get("Allow") == "OPTIONS"
    assert [p.status for p in a.last_provisionals] == [100]
    assert resp.to.tag  # our respond() adds a To tag


def test_register_digest_challenge_refresh_and_new_call_id(ua: Callable[..., UA]) -> None:
    registrar = ua("udp")
    phone = ua("udp", registrar.local)
    seen: list[Request] = []

    def handle(req: Request) -> None:
        seen.append(req)
        authz = req.headers.get("Authorization")
        if authz is None:
            registrar.respond(req, 401, headers=[
                ("WWW-Authenticate", 'Digest realm="example.com", nonce="n1", qop="auth", '
                                     "algorithm=SHA-256"),
                ("WWW-Authenticate", 'Digest realm="example.com", nonce="n2", qop="auth", '
                                     "algorithm=MD5"),
            ])
            return
        p = split_auth_params(authz.partition(" ")[2])
        expected = digest_response(
            algorithm=p["algorithm"], username="alice", realm=p["realm"], password="pw",
            method="REGISTER", uri=p["uri"], nonce=p["nonce"], nc=p["nc"], cnonce=p["cnonce"],
        )
        ok = p["response"] == expected
        registrar.respond(req, 200 if ok else 403, headers={"Contact": req.headers.get("Contact")
                                                             or ""})

    with serving(registrar, handle, 6):
        first = phone.register("alice", "example.com", password="pw", algorithm="SHA-256",
                               expires=60)
        refresh = phone.register("alice", "example.com", password="pw")
        other = phone.register("alice", "example.com", password="pw", call_id="new-call-id",
                               instance="urn:uuid:00000000-0000-0000-0000-000000000001",
                               reg_id=1)
    assert [first.status, refresh.status, other.status] == [200, 200, 200]
    assert [r.cseq.seq for r in seen] == [1, 2, 3, 4, 1, 2]
    assert len({r.call_id for r in seen[:4]}) == 1 and seen[4].call_id == "new-call-id"
    assert "algorithm=SHA-256" in (seen[1].headers.get("Authorization") or "")
    assert "algorithm=MD5" in (seen[3].headers.get("Authorization") or "")
    assert seen[0].headers.get("Expires") == "60"
    contact = seen[5].contacts[0]
    assert contact.instance and contact.reg_id == "1"
    assert seen[0].contacts[0].uri.user == "alice"


def test_register_without_offered_algorithm_returns_the_401(ua: Callable[..., UA]) -> None:
    registrar = ua("udp")
    phone = ua("udp", registrar.local)

    def challenge(req: Request) -> None:
        registrar.respond(req, 401, headers={"WWW-Authenticate": 'Digest realm="r", nonce="n"'})

    with serving(registrar, challenge, 1):
        resp = phone.register("bob", "example.com", password="pw", algorithm="SHA-256")
    assert resp.status == 401


def test_retransmitted_request_gets_the_same_response_and_is_queued_once(
    ua: Callable[..., UA],
) -> None:
    b = ua("udp")
    a = ua("udp", b.local, retransmit=False)
    tx = a.send_request(a.build_request("OPTIONS"))
    req = b.expect_request("OPTIONS")
    sent = b.respond(req, 200)
    assert a.wait_response(tx).status == 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.bind(("127.0.0.1", 0))
        c.settimeout(5)
        c.sendto(tx.data, b.local)  # the same request again, from elsewhere
        again = parse_message(c.recvfrom(65535)[0])
    assert isinstance(again, Response) and again.status == 200
    assert again.to.tag == sent.to.tag
    assert b.pending_requests() == []


def test_invite_error_is_acked_and_2xx_dialog_works(ua: Callable[..., UA]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.1", 0))
        raw.settimeout(5)
        a = ua("udp", raw.getsockname())
        tx = a.invite(f"sip:bob@127.0.0.1:{raw.getsockname()[1]}", body=b"v=0\r\n")
        data, addr = raw.recvfrom(65535)
        invite = parse_message(data)
        assert isinstance(invite, Request) and invite.body == b"v=0\r\n"
        raw.sendto(serialise(response_for(invite, 486, to_tag="t1")), addr)
        assert a.wait_response(tx).status == 486
        ack = parse_message(raw.recvfrom(65535)[0])
        assert isinstance(ack, Request) and ack.method == "ACK"
        assert ack.top_via.branch == invite.top_via.branch and ack.to.tag == "t1"
        assert ack.cseq.seq == invite.cseq.seq

    b = ua("udp")
    a = ua("udp", b.local)
    tx = a.invite(b.contact)
    inv = b.expect_request("INVITE")
    b.respond(inv, 180)
    ok = b.respond(inv, 200, body=b"v=0\r\n")
    resp = a.wait_response(tx)
    assert resp.status == 200 and resp.to.tag == ok.to.tag and resp.body == b"v=0\r\n"
    a.ack(resp)
    ack2 = b.expect_request("ACK")
    assert ack2.top_via.branch != inv.top_via.branch and ack2.uri == b.contact
    dialog = a.dialog_from_response(resp)
    with serving(b, lambda r: b.respond(r, 200), 1):
        bye = a.request("BYE", dialog=dialog)
    assert bye.status == 200 and bye.cseq.seq == inv.cseq.seq + 1


def test_garbage_goes_to_raw_queue(ua: Callable[..., UA]) -> None:
    b = ua("udp")
    a = ua("udp", b.local)
    a.send_raw(b"HELLO")
    assert b.recv_raw() == b"HELLO"


def _stream_peer(
    listener: socket.socket, context: ssl.SSLContext | None, got: list[bytes]
) -> None:
    """Accept one connection; answer the first request with a 100 and a 200 in
    one write, the 200 split over two; then CRLF-ping and read the pong."""
    conn, _ = listener.accept()
    if context is not None:
        conn = context.wrap_socket(conn, server_side=True)
    conn.settimeout(5)
    with conn:
        buf = bytearray()
        while not (units := split_stream(buf)):
            buf += conn.recv(65536)
        req = parse_message(units[0], stream=True)
        assert isinstance(req, Request)
        got.append(units[0])
        trying = serialise(response_for(req, 100))
        ok = serialise(response_for(req, 200, to_tag="peer"))
        conn.sendall(trying + ok[:25])
        conn.sendall(ok[25:])
        conn.sendall(b"\r\n\r\n")
        got.append(conn.recv(16))


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stream_transports(
    transport: str, ua: Callable[..., UA], request: pytest.FixtureRequest
) -> None:
    server_ctx = client_ctx = None
    if transport == "tls":
        tls: TlsFiles = request.getfixturevalue("tls_cert")
        server_ctx, client_ctx = tls.server_context(), tls.client_context()
    got: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = threading.Thread(target=_stream_peer, args=(listener, server_ctx, got))
        peer.start()
        a = ua(transport, listener.getsockname(), tls_context=client_ctx)
        resp = a.request("OPTIONS")
        assert resp.status == 200 and [p.status for p in a.last_provisionals] == [100]
        assert a.recv_raw() == b"\r\n\r\n"
        peer.join(10)
    assert f"SIP/2.0/{transport.upper()} ".encode() in got[0]
    assert f";transport={transport}".encode() in got[0]  # Request-URI
    assert got[1] == b"\r\n"  # the UA answered the ping


def test_sipp_driver_uac_against_uas(tmp_path: Path) -> None:
    require_tool("sipp", "Debian package sip-tester")
    uas = start_sipp(sipp_scenario("options_uas"), calls=2, workdir=tmp_path / "uas")
    result = run_sipp(sipp_scenario("options"), uas.address, calls=2, workdir=tmp_path / "uac")
    result.check(2)
    assert uas.wait(15).check(2).successful == 2
    assert result.messages_path.stat().st_size > 0
    assert parse_stats(tmp_path / "uac" / "stats.csv")["SuccessfulCall(C)"] == "2"


@pytest.mark.pjsua
def test_pjsua_phone_registers_with_digest_to_a_test_registrar(
    ua: Callable[..., UA], pjsua: Callable[..., object]
) -> None:
    require_module("pjsua2")
    from support.pjsua import PjsuaPhone

    registrar = ua("udp")
    phone = pjsua("alice")
    assert isinstance(phone, PjsuaPhone)
    phone.register(f"sip:127.0.0.1:{registrar.local[1]}", "alice", "example.com", "pw",
                   expires=120)
    first = registrar.expect_request("REGISTER", timeout=10)
    registrar.respond(first, 401, headers={
        "WWW-Authenticate": 'Digest realm="example.com", nonce="abc", qop="auth"'})
    second = registrar.expect_request("REGISTER", timeout=10)
    p = split_auth_params((second.headers.get("Authorization") or "").partition(" ")[2])
    assert p["response"] == digest_response(
        algorithm="MD5", username="alice", realm="example.com", password="pw",
        method="REGISTER", uri=p["uri"], nonce="abc", nc=p["nc"], cnonce=p["cnonce"],
    )
    contact = f"{second.headers.get('Contact')};expires=120"
    registrar.respond(second, 200, headers={"Contact": contact})
    event = phone.wait_reg(timeout=10)
    assert event["code"] == 200 and event["active"] is True


def test_stream_close_by_peer_is_reported(ua: Callable[..., UA]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        a = ua("tcp", listener.getsockname())
        conn, _ = listener.accept()
        conn.close()
        a.wait_closed(timeout=5)
        with pytest.raises(ConnectionError):
            a.request("OPTIONS", timeout=5)


def test_assert_no_request(ua: Callable[..., UA]) -> None:
    b = ua("udp")
    b.assert_no_request(within=0.2)
    a = ua("udp", b.local)
    a.send_request(a.build_request("OPTIONS"))
    with pytest.raises(AssertionError):
        b.assert_no_request("OPTIONS", within=5)
