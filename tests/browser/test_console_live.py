"""The console in a real browser against a real `regswitch serve` and SIPp
phones: what an operator sees must follow what SIP does, live, without a
reload; and what the operator does (the replace switch, deleting with a kick)
must change what SIP does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from console_helpers import (
    Phones,
    aor,
    calls,
    create_account,
    expect,
    param,
    registrations,
    set_param,
    wait_until,
)

from support.server import RunningServer

pytestmark = [
    pytest.mark.browser, pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(90),
]


def row(page: Any, user: str) -> Any:
    return page.locator(f"#registrations tr[data-account='{aor(user)}']")


def mark_document(page: Any) -> None:
    """Tag this document; `still_same_document` then proves nothing reloaded it."""
    page.evaluate("window.__noReload = true")


def still_same_document(page: Any) -> bool:
    return bool(page.evaluate("window.__noReload === true"))


def test_registrations_page_shows_a_registering_device_live(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "bob", "carol"):
        create_account(server, user)
    page = console.open("registrations")
    expect(page.locator("#registrations")).to_contain_text("No device is registered.")
    mark_document(page)

    alice = phones.start("alice", ua="Yealink SIP-T46S 66.86.0.15", expires=1800)
    # Within 2 s of the REGISTER, without a reload.
    expect(row(page, "alice")).to_be_visible(timeout=2000)
    first = row(page, "alice")
    expect(first).to_contain_text(alice.contact)
    expect(first).to_contain_text(f"127.0.0.1:{alice.port}")
    expect(first).to_contain_text("UDP")
    expect(first).to_contain_text("Yealink SIP-T46S 66.86.0.15")
    expect(first).to_contain_text("reachable")
    countdown = first.locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^(29:[0-5]\d|30:00)$"))
    shown = countdown.inner_text()
    expect(countdown).not_to_have_text(shown, timeout=3000)  # it counts down by itself

    # More devices and a call: they appear too, and the callee's row counts the call.
    phones.register("bob", ua="Zoiper rv2.10.20.3")
    phones.register("carol", ua="MicroSIP/3.21.3")
    call = phones.call("carol", "bob")
    expect(row(page, "bob")).to_be_visible()
    expect(row(page, "carol")).to_be_visible()
    expect(row(page, "bob").locator("td[data-label='Calls']")).to_have_text("1")
    # the SIPp caller is not carol's registered device: its call is counted apart
    expect(page.locator("#registrations-count")).to_have_text(
        "3 registrations · 1 call from devices not registered"
    )
    expect(row(page, "carol").locator("td[data-label='Calls']")).to_have_text("0 +1 unregistered")
    assert call.id

    # The filters narrow the table in place.
    page.get_by_placeholder("Filter by account").fill("bob")
    expect(page.locator("#registrations tbody tr")).to_have_count(1)
    page.get_by_placeholder("Filter by account").fill("")
    page.get_by_placeholder("Filter by IP").fill("127.0.0.1")
    expect(page.locator("#registrations tbody tr")).to_have_count(3)
    page.get_by_placeholder("Filter by IP").fill("")

    assert still_same_document(page)
    console.screenshot("console-registrations")


def test_replace_switch_changes_what_the_next_register_gets(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    create_account(server, "bob")
    first = phones.register("bob", ua="first phone")
    page = console.open("parameters")
    switch = page.locator("#replace-switch")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(page.locator("#replace-card")).to_contain_text("a REGISTER from a new device replaces")

    switch.click()
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).to_contain_text("Off")
    assert param(server, "SS_ENDPOINT_REGISTER_REPLACE") == "Off"

    # Off: a second device is refused with 403 (the first answers the probe,
    # so REGISTER_REPLACE_IF_UNREACHABLE does not let it in) ...
    phones.refused("bob").check(1)
    assert [b["source_port"] for b in registrations(server, "bob")] == [first.port]

    # ... On again: the next new device takes over.
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "true")
    assert param(server, "SS_ENDPOINT_REGISTER_REPLACE") == "On"
    second = phones.register("bob", ua="second phone")
    wait_until(
        lambda: [b["source_port"] for b in registrations(server, "bob")] == [second.port],
        5, "the second device replacing the first",
    )


def test_kick_appears_live_in_events_with_old_and_new_contact(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "bob"):
        create_account(server, user)
    old = phones.register("bob", ua="Zoiper rv2.10.20.3")
    call = phones.call("alice", "bob")
    page = console.open("events")
    mark_document(page)

    new = phones.register("bob", ua="Yealink SIP-T46S (new desk phone)")

    kick = page.locator("#events li[data-type='replaced']").first
    expect(kick).to_be_visible()
    expect(kick).to_have_class(re.compile(r"\balert\b"))
    expect(kick.locator(".change .old")).to_have_text(old.contact)
    expect(kick.locator(".change .new")).to_have_text(new.contact)
    expect(kick.locator(".calls-ended")).to_contain_text(f"1 call ended: {call.id}")
    expect(kick).to_contain_text(aor("bob"))

    # The kick really ended the call, on both sides.
    wait_until(lambda: old.received("BYE") == 1, 5, "BYE at the replaced device")
    wait_until(lambda: call.caller_received("BYE") == 1, 5, "BYE at the caller")
    assert new.received("BYE") == 0

    # A refusal under replace Off shows up highlighted too.
    server.api.put("/api/parameters/SS_ENDPOINT_REGISTER_REPLACE", json={"value": "Off"})
    phones.refused("bob", ua="a third phone").check(1)
    reject = page.locator("#events li[data-type='rejected']").first
    expect(reject).to_be_visible()
    expect(reject).to_contain_text("403 Registration Replace Disabled")
    expect(reject).to_contain_text(new.contact)
    expect(page.locator("#events li[data-type='param-changed']").first).to_contain_text("On → Off")

    # The account filter narrows to one account's events.
    page.locator("#event-account").fill("alice")
    expect(page.locator("#events li.event").first).to_contain_text(aor("alice"))
    for item in page.locator("#events li.event").all():
        expect(item.locator(".account")).to_have_text(aor("alice"))
    page.locator("#event-account").fill("")

    # The alerts filter keeps only kicks, refusals, flapping and floods.
    page.locator("#event-type").select_option("@alerts")
    expect(page.locator("#events li.event")).to_have_count(2)
    page.locator("#event-type").select_option("")
    expect(page.locator("#events li[data-type='replaced']")).to_have_count(1)

    assert still_same_document(page)
    console.screenshot("console-events")


def test_delete_registration_with_kick_ends_its_call(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "bob"):
        create_account(server, user)
    bob = phones.register("bob")
    call = phones.call("alice", "bob")
    page = console.open("registrations")
    bob_row = row(page, "bob")
    expect(bob_row.locator("td[data-label='Calls']")).to_have_text("1")

    bob_row.get_by_role("button", name="Delete").click()
    dialog = page.locator("dialog.confirm-delete")
    expect(dialog).to_be_visible()
    # The confirmation names the call that will end.
    expect(dialog.locator(f"li[data-call='{call.id}']")).to_contain_text(
        f"{aor('alice')} → {aor('bob')}"
    )
    dialog.get_by_role("button", name="Delete and end 1 call").click()

    wait_until(lambda: bob.received("BYE") == 1, 5, "BYE at the callee")
    wait_until(lambda: call.caller_received("BYE") == 1, 5, "BYE at the caller")
    expect(bob_row).to_have_count(0)
    expect(page.locator("#registrations")).to_contain_text("No device is registered.")
    assert calls(server) == []
    cdr = server.api.get("/api/cdrs", params={"account": aor("alice")}).json()[0]
    assert (cdr["id"], cdr["end_reason"]) == (call.id, "registration-deleted")


def test_delete_registration_without_kick_keeps_its_call(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "bob"):
        create_account(server, user)
    bob = phones.register("bob")
    call = phones.call("alice", "bob")
    page = console.open("registrations")
    row(page, "bob").get_by_role("button", name="Delete").click()
    dialog = page.locator("dialog.confirm-delete")
    expect(dialog.locator(f"li[data-call='{call.id}']")).to_be_visible()
    dialog.get_by_role("button", name="Delete, keep calls").click()

    expect(row(page, "bob")).to_have_count(0)
    event = wait_until(
        lambda: server.api.get("/api/events", params={"type": "deleted"}).json(), 5, "deleted event"
    )
    assert event[0]["details"]["kicked"] is False
    assert [c["id"] for c in calls(server)] == [call.id]
    assert bob.received("BYE") == 0


def test_refresh_and_unregister_show_live(
    console: Any, server: RunningServer, ua: Any
) -> None:
    # with a password: an address-only account's unregister over UDP would first
    # need its return path confirmed (an OPTIONS this test UA does not answer)
    create_account(server, "erin", allowed_networks=[], password="erin-pw")
    page = console.open("registrations")
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/api/registrations" in r.url else None)
    phone = ua("udp", server.udp)
    assert phone.register("erin", "regswitch.local", "erin-pw", expires=600).status == 200
    countdown = row(page, "erin").locator(".countdown")
    expect(countdown).to_have_text(re.compile(r"^(9:[0-5]\d|10:00)$"))
    # The row may come from a read that began before the `registered` event,
    # whose own re-read then follows: count reads once the page has that
    # event and no read is in flight or scheduled.
    registered = server.api.get("/api/events", params={"type": "registered"}).json()[0]
    page.wait_for_function(
        "id => Number(document.documentElement.dataset.lastEvent || 0) >= id", arg=registered["id"]
    )
    expect(page.locator("#registrations")).to_have_attribute("data-settled", "true")
    reads_before = len(reads)

    # A refresh (same Call-ID) patches the row from its event: no re-read.
    assert phone.register("erin", "regswitch.local", "erin-pw", expires=3000).status == 200
    expect(countdown).to_have_text(re.compile(r"^(49:[0-5]\d|50:00)$"))
    assert len(reads) == reads_before

    # Expires: 0 removes it.
    assert phone.register("erin", "regswitch.local", "erin-pw", expires=0).status == 200
    expect(row(page, "erin")).to_have_count(0)


def test_delete_and_block_keeps_the_device_out(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    create_account(server, "bob")
    phones.register("bob")
    page = console.open("registrations")
    row(page, "bob").get_by_role("button", name="Delete").click()
    dialog = page.locator("dialog.confirm-delete")
    dialog.get_by_role("button", name="Delete and block for 1 h").click()

    expect(row(page, "bob")).to_have_count(0)
    stone = wait_until(
        lambda: server.api.get("/api/tombstones", params={"account": aor("bob")}).json(),
        5,
        "the block",
    )[0]
    assert stone["kind"] == "blocked" and 3590 <= stone["remaining"] <= 3600
    # the same device (same IP and user agent, no instance), even from a new port
    phones.refused("bob", ua="SIPp phone").check(1)
    assert registrations(server, "bob") == []


def test_credential_sharing_badge_and_unlock(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    create_account(server, "bob")
    set_param(server, "SHARING_MAX_KICKS", "1")
    set_param(server, "SHARING_ACTION", "lock")
    page = console.open("accounts")
    account = page.locator(f"#accounts tr[data-aor='{aor('bob')}']")
    expect(account).to_be_visible()
    expect(account.locator(".sharing-badge")).to_have_count(0)
    for name in ("first", "second", "third"):  # two kicks: more than SHARING_MAX_KICKS
        phones.register("bob", ua=f"{name} phone")
    # live, from the credential-sharing-suspected event
    expect(account.locator(".sharing-badge")).to_contain_text("locked: sharing suspected")
    phones.refused("bob", ua="fourth phone").check(1)  # locked: newcomers refused

    account.get_by_role("button", name=f"Unlock {aor('bob')}").click()
    expect(account.locator(".sharing-badge")).to_have_count(0)
    assert server.api.get("/api/sharing").json() == []
    phones.register("bob", ua="fourth phone")
    events = console.open("events")
    expect(events.locator("body")).to_contain_text("credential sharing suspected (kicks)")
