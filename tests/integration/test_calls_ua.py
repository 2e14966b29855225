"""Calls with the Python test UA where SIPp can't express the check: the two legs share no
dialog identity (Call-ID, tags, Via, Contact, CSeq, unknown headers), bodies pass unchanged
both ways, digest on INVITE (407), INFO relayed with its error answer; and the operator's
view of calls and CDRs through the CLI (`calls list|hangup`, `cdr list|export`) and the
CSV download."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from calls.harness import DOMAIN, Api, check_cdr, unique, user
from support import wait_until
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

OFFER = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=offer \xe2\x9c\x93\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ANSWER = (
    b"v=0\r\no=bob 2808844564 2808844564 IN IP4 192.0.2.20\r\ns=answer\r\n"
    b"c=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def received(agent: UA, first_line: str) -> bytes:
    """The raw bytes of the last message `agent` received that starts with `first_line`."""
    for _, direction, _, data in reversed(agent.trace):
        if direction == "in" and data.startswith(first_line.encode()):
            return data
    raise AssertionError(f"{agent!r} received no {first_line!r}\n{agent.format_trace()}")


def test_legs_share_no_dialog_identity(server: RunningServer, ua: Callable[..., UA]) -> None:
    api = Api(server)
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    callee = ua("udp", server.udp, user=user(bob))
    assert callee.register(user(bob), DOMAIN).status == 200
    caller = ua("udp", server.udp, user=user(alice))
    a_call_id = "a-leg-call-id-7f3e@192.0.2.10"
    a_tag = "a-leg-tag-91c2"
    tx = caller.invite(
        f"sip:{user(bob)}@{DOMAIN}",
        body=OFFER,
        headers={
            "Call-ID": a_call_id,
            "CSeq": "4711 INVITE",
            "From": f'"Alice Caller" <sip:{alice}>;tag={a_tag}',
            "X-Private": "a-leg-secret",
            "Subject": "a-leg-subject",
        },
    )
    a_branch = tx.branch
    a_secrets = [
        a_call_id,
        a_tag,
        a_branch,
        "a-leg-secret",
        "a-leg-subject",
        f"{caller.local[0]}:{caller.local[1]}",
        "4711",
    ]

    invite = callee.expect_request("INVITE")
    raw = received(callee, "INVITE ")
    for secret in a_secrets:
        assert secret.encode() not in raw, (secret, raw)
    assert invite.body == OFFER  # bytes untouched
    assert invite.headers.get("content-type") == "application/sdp"
    assert invite.call_id != a_call_id
    assert invite.to.tag is None
    assert invite.from_.tag not in (None, a_tag)
    assert invite.from_.uri_text == f"sip:{alice}"
    assert len(invite.headers.values("via")) == 1  # only the switch's own Via
    assert invite.uri == callee.contact
    b_tag = "b-leg-tag-5d8a"
    callee.respond(invite, 180, to_tag=b_tag)
    ringing = wait_until(
        lambda: next((r for r in tx.provisionals if r.status == 180), None),
        5,
        "a 180 at the caller",
    )
    ok = callee.respond(invite, 200, body=ANSWER, to_tag=b_tag)

    answer = caller.wait_response(tx)
    assert answer.status == 200
    raw = received(caller, "SIP/2.0 200")
    b_secrets = [
        invite.call_id,
        b_tag,
        invite.from_.tag or "?",
        invite.top_via.branch or "?",
        f"{callee.local[0]}:{callee.local[1]}",
    ]
    for secret in b_secrets:
        assert secret.encode() not in raw, (secret, raw)
    assert answer.body == ANSWER
    assert answer.call_id == a_call_id and answer.from_.tag == a_tag
    assert answer.cseq.seq == 4711
    assert answer.to.tag not in (None, b_tag)
    assert answer.to.tag == ringing.to.tag  # one A-leg dialog
    caller.ack(answer)
    ack = callee.expect_request("ACK")
    assert (ack.call_id, ack.to.tag, ack.from_.tag) == (invite.call_id, b_tag, invite.from_.tag)
    assert a_call_id.encode() not in received(callee, "ACK ")

    # the callee hangs up: the caller's BYE is in the A-leg dialog only
    b_dialog = callee.dialog_from_request(invite, ok)
    assert callee.request("BYE", dialog=b_dialog).status == 200
    bye = caller.expect_request("BYE")
    assert (bye.call_id, bye.from_.tag, bye.to.tag) == (a_call_id, answer.to.tag, a_tag)
    assert bye.uri == caller.contact
    raw = received(caller, "BYE ")
    for secret in b_secrets:
        assert secret.encode() not in raw, (secret, raw)
    caller.respond(bye, 200)

    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr, caller=alice, callee=bob, reason="normal", direction="callee", code=200, answered=True
    )
    assert (cdr["a_call_id"], cdr["b_call_id"]) == (a_call_id, invite.call_id)
    assert cdr["caller_source"] == f"udp:{caller.local[0]}:{caller.local[1]}"
    assert cdr["callee_contact"] == callee.contact


def test_digest_caller_and_info_relayed(server: RunningServer, ua: Callable[..., UA]) -> None:
    api = Api(server)
    alice = api.account(unique("alice"), allowed_networks=[], password="alice-secret")
    bob = api.account(unique("bob"))
    callee = ua("udp", server.udp, user=user(bob))
    assert callee.register(user(bob), DOMAIN).status == 200
    caller = ua("udp", server.udp, user=user(alice))
    # CALLS_REQUIRE_REGISTRATION (On): a caller outside its networks calls where it registered
    assert caller.register(user(alice), DOMAIN, password="alice-secret").status == 200
    uri = f"sip:{user(bob)}@{DOMAIN}"
    from_ = f"<sip:{alice}>;tag=dig1"
    tx = caller.invite(
        uri, body=OFFER, headers={"From": from_, "Call-ID": "dig@t", "CSeq": "1 INVITE"}
    )
    challenge = caller.wait_response(tx)
    assert challenge.status == 407
    chosen = caller.choose_challenge(challenge)
    assert chosen is not None
    authz = caller.authorization(chosen, "INVITE", uri, user(alice), "alice-secret")
    tx = caller.invite(
        uri,
        body=OFFER,
        headers={
            "From": from_,
            "Call-ID": "dig@t",
            "CSeq": "2 INVITE",
            authz[0]: authz[1],
        },
    )
    invite = callee.expect_request("INVITE")
    assert b"Proxy-Authorization" not in received(callee, "INVITE ")
    ok = callee.respond(invite, 200, body=ANSWER)
    answer = caller.wait_response(tx)
    assert answer.status == 200
    caller.ack(answer)
    callee.expect_request("ACK")

    # INFO caller -> callee, body and type as sent; the callee's error answer comes back
    a_dialog = caller.dialog_from_response(answer)
    info = caller.build_request(
        "INFO",
        headers={"Content-Type": "application/dtmf-relay"},
        body=b"Signal=5\r\nDuration=160\r\n",
        dialog=a_dialog,
    )
    info_tx = caller.send_request(info, a_dialog.dest)
    got = callee.expect_request("INFO")
    assert (got.body, got.headers.get("content-type")) == (
        b"Signal=5\r\nDuration=160\r\n",
        "application/dtmf-relay",
    )
    assert got.call_id == invite.call_id
    callee.respond(got, 415, "Unsupported Media Type")
    assert caller.wait_response(info_tx).status == 415

    # and the caller hangs up
    assert caller.request("BYE", dialog=a_dialog).status == 200
    bye = callee.expect_request("BYE")
    callee.respond(bye, 200)
    [cdr] = api.wait_cdrs(alice)  # one CDR: the challenged INVITE was no call attempt
    check_cdr(
        cdr, caller=alice, callee=bob, reason="normal", direction="caller", code=200, answered=True
    )
    assert cdr["a_call_id"] == "dig@t"
    assert ok.to.tag and ok.to.tag.encode() not in received(caller, "SIP/2.0 200")


def cli(server: RunningServer, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGSWITCH_")}
    env.update(COLUMNS="250", NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "regswitch", "--api", server.api_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_cli_calls_and_cdrs(server: RunningServer, ua: Callable[..., UA], tmp_path: Path) -> None:
    api = Api(server)
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    callee = ua("udp", server.udp, user=user(bob))
    assert callee.register(user(bob), DOMAIN).status == 200
    caller = ua("udp", server.udp, user=user(alice))
    tx = caller.invite(
        f"sip:{user(bob)}@{DOMAIN}", body=OFFER, headers={"From": f"<sip:{alice}>;tag=cli1"}
    )
    invite = callee.expect_request("INVITE")
    callee.respond(invite, 200, body=ANSWER)
    answer = caller.wait_response(tx)
    caller.ack(answer)
    call = api.wait_call(alice, "answered")

    listed = json.loads(cli(server, "--json", "calls", "list"))
    assert [c["id"] for c in listed] == [call["id"]]
    assert (listed[0]["caller"], listed[0]["callee"]) == (alice, bob)
    assert listed[0]["state"] == "answered"
    table = cli(server, "calls", "list")
    assert call["id"] in table and alice in table

    cli(server, "calls", "hangup", call["id"])  # admin hang-up: BYE both ways
    caller.respond(caller.expect_request("BYE"), 200)
    callee.respond(callee.expect_request("BYE"), 200)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr,
        caller=alice,
        callee=bob,
        reason="admin-hangup",
        direction="system",
        code=200,
        answered=True,
    )

    listed = json.loads(cli(server, "--json", "cdr", "list", "--account", alice))
    assert listed == [cdr]
    table = cli(server, "cdr", "list", "--account", alice)
    assert "admin-hangup" in table and alice in table
    out = tmp_path / "cdrs.csv"
    assert "wrote 1 CDRs" in cli(server, "cdr", "export", "-o", str(out), "--account", alice)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == [cdr["id"]]

    # the API's CSV download: the same fields as the JSON
    r = api.http.get("/api/cdrs", params={"account": alice, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers.get("content-disposition", "")
    [row] = list(csv.DictReader(io.StringIO(r.text)))
    for name, value in cdr.items():
        assert row[name] == ("" if value is None else str(value)), (name, row[name], value)
    assert rows == [row]


@pytest.mark.parametrize(("caller_transport", "callee_transport"), [("tcp", "tcp"), ("udp", "tcp")])
def test_call_over_tcp_uses_the_registration_connection(
    server: RunningServer, ua: Callable[..., UA], caller_transport: str, callee_transport: str
) -> None:
    api = Api(server)
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    callee = ua(callee_transport, server.listener(callee_transport), user=user(bob))
    assert callee.register(user(bob), DOMAIN).status == 200
    caller = ua(caller_transport, server.listener(caller_transport), user=user(alice))
    tx = caller.invite(
        f"sip:{user(bob)}@{DOMAIN}", body=OFFER, headers={"From": f"<sip:{alice}>;tag=tcp1"}
    )
    invite = callee.expect_request("INVITE")  # on the connection bob registered over
    assert invite.top_via.transport.upper() == callee_transport.upper()
    assert f"transport={callee_transport}" in (invite.headers.get("contact") or "")
    ok = callee.respond(invite, 200, body=ANSWER)
    answer = caller.wait_response(tx)
    assert answer.status == 200 and answer.body == ANSWER
    if caller_transport == "tcp":
        assert "transport=tcp" in (answer.headers.get("contact") or "")
    caller.ack(answer)
    callee.expect_request("ACK")
    assert callee.request("BYE", dialog=callee.dialog_from_request(invite, ok)).status == 200
    caller.respond(caller.expect_request("BYE"), 200)
    [cdr] = api.wait_cdrs(alice)
    check_cdr(
        cdr, caller=alice, callee=bob, reason="normal", direction="callee", code=200, answered=True
    )
    assert cdr["callee_source"] == f"{callee_transport}:{callee.local[0]}:{callee.local[1]}"
