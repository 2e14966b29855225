"""The reg event package (RFC 3680) against a real `regswitch serve`: a SIPp
watcher subscribes (407, then credentials), gets the full state, sees a kick as
two partial NOTIFYs, and unsubscribes; every document is validated against
RFC 3680's schema. The refusals (489, 423, 403, 481) and the limits with the
Python test UA."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support import sipp_scenario, wait_until
from support.register_helpers import (
    DOMAIN,
    create_account,
    events,
    only,
    registrations,
    set_params,
    sipp_register,
    write_inf,
)
from support.server import RunningServer
from support.sipp import SippRunner
from support.ua import UA

xmlschema = pytest.importorskip("xmlschema")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

XSD = Path(__file__).resolve().parents[1] / "fixtures" / "xml" / "reginfo.xsd"
_BLOCK = re.compile(r"(?m)^-{20,} .*\n")


def received_notifies(messages: Path) -> list[tuple[dict[str, str], str]]:
    """(headers, body) of every NOTIFY SIPp received, in order, from its -trace_msg log."""
    out = []
    text = messages.read_bytes().decode("utf-8", "replace") if messages.exists() else ""
    for block in _BLOCK.split(text):
        head, _, message = block.partition("\n")
        if not head.startswith("UDP message received") or "NOTIFY sip:" not in message[:200]:
            continue
        raw_head, _, body = message.lstrip("\r\n").partition("\r\n\r\n")
        headers = {}
        for line in raw_head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((headers, body.encode()[:length].decode()))
    return out


@pytest.mark.sipp
def test_a_watcher_sees_the_full_state_then_a_kick(
    server: RunningServer, sipp: SippRunner, tmp_path: Path
) -> None:
    create_account(server, "alice", "pw")
    old = sipp_register(sipp, server, "alice", "pw")
    watcher = sipp.start(
        sipp_scenario("reg_subscribe"),
        server.target("udp"),
        inf=write_inf(tmp_path / "watcher.csv", "alice", None, "pw"),
        keys={"expires": 600},
        timeout=40,
        # SIPp's digest uri defaults to sip:HOST:PORT; the switch checks it against
        # the Request-URI (RFC 7616 §3.4.6), which names the account
        extra=["-auth_uri", f"alice@{server.udp[0]}:{server.udp[1]}"],
    )
    wait_until(lambda: received_notifies(watcher.messages_path), 10, "the full-state NOTIFY")

    new = sipp_register(sipp, server, "alice", "pw")  # replaces (kicks) the old device
    result = watcher.wait(30)
    result.check(1)

    schema = xmlschema.XMLSchema(str(XSD))
    notifies = received_notifies(watcher.messages_path)
    assert len(notifies) == 4, notifies  # full, registered, rejected, final
    docs = []
    for headers, body in notifies:
        assert headers["event"] == "reg"
        assert headers["content-type"] == "application/reginfo+xml" if body else True
        if body:
            schema.validate(body)
            docs.append(schema.to_dict(body))
    assert [d["@version"] for d in docs] == [0, 1, 2, 3]  # one counter per subscription
    assert [d["@state"] for d in docs] == ["full", "partial", "partial", "full"]
    assert notifies[0][0]["subscription-state"].startswith("active;expires=")
    assert notifies[-1][0]["subscription-state"].startswith("terminated")

    full = docs[0]["registration"][0]
    assert full["@aor"] == f"sip:alice@{DOMAIN}" and full["@state"] == "active"
    assert [c["uri"] for c in full["contact"]] == [old.contact]

    new_binding = only(registrations(server, "alice"))
    (created,) = docs[1]["registration"][0]["contact"]
    assert (created["@id"], created["uri"], created["@event"]) == (
        new_binding["id"], new.contact, "registered",
    )
    (kicked,) = docs[2]["registration"][0]["contact"]
    assert (kicked["uri"], kicked["@state"], kicked["@event"]) == (
        old.contact, "terminated", "rejected",
    )
    replaced = only(events(server, "replaced", "alice"))
    assert kicked["@id"] == replaced["details"]["old_binding"]
    ext = re.search(r'<rs:replaced event="(\d+)" by="([^"]+)"/>', notifies[2][1])
    assert ext is not None and int(ext.group(1)) == replaced["id"]
    assert ext.group(2) == new.contact
    metrics = server.api.get("/metrics").text
    assert 'regswitch_reg_event_total{result="accepted"} 1.0' in metrics
    assert 'regswitch_reg_event_total{result="notify"} 4.0' in metrics
    assert "regswitch_reg_subscriptions 0.0" in metrics  # it unsubscribed
    assert [c["uri"] for c in docs[3]["registration"][0]["contact"]] == [new.contact]


def _subscribe(
    ua: UA,
    user: str = "alice",
    event: str = "reg",
    expires: int = 600,
    password: str | None = "pw",
) -> Any:
    uri = f"sip:{user}@{DOMAIN}"
    headers = {"Event": event, "Expires": str(expires), "To": f"<{uri}>"}
    call_id = f"sub-{id(headers)}"
    first = ua.request("SUBSCRIBE", uri, headers, call_id=call_id)
    if first.status != 407 or password is None:
        return first
    challenge = ua.choose_challenge(first)
    assert challenge is not None
    name, value = ua.authorization(challenge, "SUBSCRIBE", uri, user, password)
    return ua.request("SUBSCRIBE", uri, {**headers, name: value}, call_id=call_id)


def test_refusals_say_why(server: RunningServer, ua: Any) -> None:
    create_account(server, "alice", "pw")
    phone = ua("udp", server.udp)
    assert _subscribe(phone, event="presence").status == 489
    assert phone.last_response.headers.get("Allow-Events") == "reg"
    brief = _subscribe(phone, expires=10)
    assert (brief.status, brief.headers.get("Min-Expires")) == (423, "60")
    wrong = _subscribe(phone, password="guess")
    # the same answer as any failure (no account enumeration); the event says why
    assert wrong.status == 403 and "Authentication failed" in (wrong.headers.get("Warning") or "")
    assert _subscribe(phone, user="nobody", password="pw").status == 403
    assert _subscribe(phone, password=None).status == 407  # no credentials: challenged
    stray = phone.request(
        "SUBSCRIBE", f"sip:alice@{DOMAIN}",
        {"Event": "reg", "To": f"<sip:alice@{DOMAIN}>;tag=nosuch"},
    )
    assert stray.status == 481


def test_limits_refresh_and_trusted_networks(server: RunningServer, ua: Any) -> None:
    create_account(server, "alice", "pw")
    set_params(server, REG_EVENT_MAX_PER_ACCOUNT=1)
    one, two = ua("udp", server.udp), ua("udp", server.udp)
    accepted = _subscribe(one)
    assert accepted.status == 200 and accepted.headers.get("Expires") == "600"
    notify = one.expect_request("NOTIFY")
    one.respond(notify, 200)
    assert notify.headers.get("Subscription-State") == "active;expires=600"
    over = _subscribe(two)
    assert over.status == 403 and "too many" in (over.headers.get("Warning") or "")

    # a refresh in the dialog: 200 and a new full NOTIFY (version + 1)
    in_dialog = {
        "Event": "reg",
        "Expires": "300",
        "From": accepted.headers.get("From") or "",
        "To": accepted.headers.get("To") or "",
    }
    refreshed = one.request(
        "SUBSCRIBE", f"sip:alice@{DOMAIN}", in_dialog,
        call_id=accepted.call_id, cseq=accepted.cseq.seq + 1,
    )
    assert refreshed.status == 200 and refreshed.headers.get("Expires") == "300"
    again = one.expect_request("NOTIFY")
    one.respond(again, 200)
    assert b'version="1"' in again.body and b'state="full"' in again.body
    # the same dialog from another address is not the subscriber
    hijack = two.request(
        "SUBSCRIBE", f"sip:alice@{DOMAIN}", {**in_dialog, "Expires": "0"},
        call_id=accepted.call_id, cseq=accepted.cseq.seq + 2,
    )
    assert hijack.status == 481
    set_params(server, REG_EVENT_TRUSTED_NETWORKS="127.0.0.0/8")
    set_params(server, REG_EVENT_MAX_PER_ACCOUNT=5)
    trusted = _subscribe(two, password=None)
    assert trusted.status == 200  # an application server: no credentials needed
    two.respond(two.expect_request("NOTIFY"), 200)

    # deleting the account ends its subscriptions
    assert server.api.delete(f"/api/accounts/alice@{DOMAIN}").status_code < 300
    for watcher in (one, two):
        final = watcher.expect_request("NOTIFY")
        watcher.respond(final, 200)
        assert final.headers.get("Subscription-State") == "terminated;reason=noresource"


def test_a_subscription_that_is_not_refreshed_ends(server: RunningServer, ua: Any) -> None:
    create_account(server, "alice", "pw")
    set_params(server, REG_EVENT_MIN_EXPIRES=1)
    watcher = ua("udp", server.udp)
    assert _subscribe(watcher, expires=2).status == 200
    watcher.respond(watcher.expect_request("NOTIFY"), 200)
    final = watcher.expect_request("NOTIFY", timeout=6)
    watcher.respond(final, 200)
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert b'version="1"' in final.body
