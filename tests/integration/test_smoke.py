"""Smoke tests of a real `regswitch serve`: OPTIONS over every transport, a
malformed request, a burst, and a real PJSIP phone registering."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from support import sipp_scenario
from support.server import RunningServer
from support.sipp import SippRunner
from support.tls import TlsFiles
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.mark.sipp
@pytest.mark.parametrize(("transport", "sipp_transport"), [("udp", "u1"), ("tcp", "t1")])
def test_sipp_options_answered_200(
    server: RunningServer, sipp: SippRunner, transport: str, sipp_transport: str
) -> None:
    result = sipp.run(
        sipp_scenario("options"), server.target(transport), transport=sipp_transport, calls=3
    )
    result.check(3)


def test_options_over_tls_answered_200(
    tls_server: RunningServer, ua: Callable[..., UA], tls_cert: TlsFiles
) -> None:
    # Debian's SIPp is built without TLS, so the Python UA is the TLS peer; it
    # verifies the server's certificate against the test CA.
    phone = ua("tls", tls_server.tls, tls_context=tls_cert.client_context())
    resp = phone.request("OPTIONS")
    assert resp.status == 200
    assert phone.request("OPTIONS").status == 200  # the connection stays usable


def test_malformed_request_answered_400_with_reason(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    phone = ua("udp", server.udp)
    host, port = phone.local
    bad = (
        f"OPTIONS sip:{server.target('udp')} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-smoke-bad-cseq;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:smoke@{host}>;tag=bad1\r\n"
        f"To: <sip:{server.target('udp')}>\r\n"
        "Call-ID: bad-cseq@smoke\r\n"
        "CSeq: abc OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    phone.send_raw(bad.encode())
    # Read it raw: the reply echoes the bad CSeq, so our own parser would reject it.
    data = phone.recv_raw(timeout=5)
    status_line, _, rest = data.decode("latin-1").partition("\r\n")
    version, status, reason = status_line.split(" ", 2)
    assert (version, status) == ("SIP/2.0", "400"), status_line
    assert "cseq" in reason.lower(), reason  # the reason says what was wrong
    assert re.search(r"(?im)^(call-id|i)[ \t]*:[ \t]*bad-cseq@smoke[ \t]*\r?$", rest), rest
    assert phone.request("OPTIONS").status == 200  # and the server carries on


@pytest.mark.sipp
@pytest.mark.slow
def test_burst_of_5000_options_over_udp_all_answered(
    server: RunningServer, sipp: SippRunner
) -> None:
    result = sipp.run(
        sipp_scenario("options"),
        server.target("udp"),
        transport="u1",
        calls=5000,
        rate=2000,
        rate_period_ms=1000,
        timeout=60,
        trace_msg=False,
    )
    result.check(5000)


@pytest.mark.pjsua
def test_pjsua_register_gets_a_final_reply(
    server: RunningServer, pjsua: Callable[..., Any]
) -> None:
    # Whatever the registrar makes of an unknown account in an unserved domain,
    # the phone must get a well-formed final answer (none would surface as a
    # timeout here).
    phone = pjsua("alice")
    host, port = server.udp
    phone.register(f"sip:{host}:{port}", "alice", "example.com", "secret", expires=300)
    event = phone.wait_reg(timeout=15)
    assert event["code"] in {200, 401, 403, 404, 501}, event


@pytest.mark.pjsua
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_account_registers_with_digest_from_pjsua_and_test_ua(
    server_factory: Callable[..., RunningServer],
    pjsua: Callable[..., Any],
    ua: Callable[..., UA],
    tls_cert: TlsFiles,
    transport: str,
) -> None:
    # End to end: an account made through the API; a real PJSIP phone and the
    # test UA (its own digest code, MD5 and SHA-256) both get 200 over each
    # transport, and the API lists the bindings. Over TLS both verify the
    # server certificate against the test CA.
    server = server_factory("--domain", "example.com", tls=True)
    for user in ("alice", "bob"):
        created = server.api.post(
            "/api/accounts",
            json={
                "user": user,
                "domain": "example.com",
                "password": f"pw-{user}",
                "max_contacts": 2,
            },
        )
        assert created.status_code == 201, created.text
    host, port = server.listener(transport)

    phone = pjsua("alice")
    phone.register(
        f"sip:{host}:{port}",
        "alice",
        "example.com",
        "pw-alice",
        expires=300,
        transport=transport,
        ca=str(tls_cert.ca),
    )
    event = phone.wait_reg(timeout=15)
    assert (event["code"], event["active"]) == (200, True), event

    context = tls_cert.client_context() if transport == "tls" else None
    # SHA-256 is an opt-in (MD5 alone by default, which every phone answers)
    put = server.api.put("/api/parameters/AUTH_ALGORITHMS", json={"value": "MD5,SHA-256"})
    assert put.status_code == 200, put.text
    for algorithm in ("MD5", "SHA-256"):
        agent = ua(transport, (host, port), tls_context=context)
        resp = agent.register("bob", "example.com", password="pw-bob", algorithm=algorithm)
        assert resp.status == 200, (algorithm, resp.status, resp.reason)
        assert any(c.uri.port == agent.local[1] for c in resp.contacts), resp.contacts

    listed = server.api.get("/api/registrations")
    assert listed.status_code == 200, listed.text
    accounts = sorted(b["account"] for b in listed.json())
    assert accounts == ["alice@example.com", "bob@example.com", "bob@example.com"], accounts


def test_options_advertises_allow_accept_supported(
    server: RunningServer, ua: Callable[..., UA]
) -> None:
    resp = ua("udp", server.udp).request("OPTIONS")
    assert resp.status == 200
    allow = {m.strip() for m in (resp.headers.get("Allow") or "").split(",")}
    assert {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "SUBSCRIBE"} <= allow
    assert "application/sdp" in (resp.headers.get("Accept") or "")
    assert resp.headers.get("Supported") is not None


@pytest.mark.parametrize(("method", "status"), [("OPTIONS", 200), ("REGISTER", 401)])
def test_stateless_answers_keep_no_transaction_and_one_to_tag_per_request(
    server: RunningServer, ua: Callable[..., UA], method: str, status: int
) -> None:
    """An OPTIONS, and a challenge, keep no transaction for Timer J (a flood
    leaves no state); a retransmission is answered again, with the same To
    tag (RFC 3261 §8.2.7), and another request gets another tag."""
    phone = ua("udp", server.udp)
    host, port = phone.local
    target = server.target("udp")

    def request(branch: str) -> bytes:
        return (
            f"{method} sip:{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:smoke@{target}>;tag=st1\r\n"
            f"To: <sip:smoke@{target}>\r\nCall-ID: {branch}@smoke\r\n"
            f"CSeq: 1 {method}\r\nContact: <sip:smoke@{host}:{port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    tags = []
    for branch in ("stateless-1", "stateless-1", "stateless-2"):
        phone.send_raw(request(branch))
        answer = phone.recv_raw(timeout=5)
        assert answer.startswith(f"SIP/2.0 {status} ".encode()), answer
        tag = re.search(rb"^To:.*;tag=([^;\r\n]+)", answer, re.M | re.I)
        assert tag is not None, answer
        tags.append(tag.group(1))
    assert tags[0] == tags[1] != tags[2]
    metrics = server.api.get("/metrics").text
    live = re.search(r"^regswitch_server_transactions (\S+)$", metrics, re.M)
    assert live is not None and float(live.group(1)) == 0, live


@pytest.mark.parametrize("method", ["PUBLISH", "FOOBAR"])
def test_unimplemented_methods_get_501_with_allow(
    server: RunningServer, ua: Callable[..., UA], method: str
) -> None:
    resp = ua("udp", server.udp).request(method)
    assert resp.status == 501
    assert "REGISTER" in (resp.headers.get("Allow") or "")


def test_wrong_sip_version_gets_505(server: RunningServer, ua: Callable[..., UA]) -> None:
    phone = ua("udp", server.udp)
    host, port = phone.local
    phone.send_raw(
        f"OPTIONS sip:{server.target('udp')} SIP/3.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-smoke-v3\r\n"
        f"From: <sip:smoke@{host}>;tag=v3\r\nTo: <sip:{server.target('udp')}>\r\n"
        "Call-ID: v3@smoke\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert phone.recv_raw(timeout=5).startswith(b"SIP/2.0 505 ")
