"""What a new operator saw in the console: the CDR filter row overflowing a
1,400-px window, a registration deleted from the console not standing out
like a kick, and calls placed by a device that is not registered missing
from the Registrations page's Calls column."""

from __future__ import annotations

import re
from typing import Any

import pytest
from console_helpers import Phones, aor, create_account, expect, registrations

from support.server import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(90)]

OVERFLOW = """(selector) => {
  const box = document.querySelector(selector);
  const right = box.getBoundingClientRect().right;
  return {
    scroll: box.scrollWidth - box.clientWidth,
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    out: [...box.querySelectorAll("*")]
      .filter((el) => el.getBoundingClientRect().right > right + 0.5)
      .map((el) => `${el.tagName.toLowerCase()}#${el.id}`),
  };
}"""


@pytest.mark.parametrize("width", [1440, 1400, 1366, 1280, 1024])
def test_cdr_filter_row_fits_the_window(console: Any, width: int) -> None:
    console.page.set_viewport_size({"width": width, "height": 900})
    page = console.open("cdrs", live=False)
    expect(page.locator("#cdr-csv")).to_be_visible()
    fit = page.evaluate(OVERFLOW, "form.filters")
    assert fit == {"scroll": 0, "page": 0, "out": []}, fit


@pytest.mark.sipp
def test_deleted_registration_is_highlighted_like_a_kick(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    create_account(server, "bob")
    phones.register("bob")
    page = console.open("events")
    (binding,) = registrations(server, "bob")
    server.api.delete(f"/api/registrations/{binding['id']}", params={"kick": "true"})
    deleted = page.locator("#events li[data-type='deleted']").first
    expect(deleted).to_be_visible()
    expect(deleted).to_have_class(re.compile(r"\balert\b"))
    expect(deleted.locator(".badge")).to_have_class(re.compile(r"\bbadge-alert\b"))
    page.locator("#event-type").select_option("@alerts")
    expect(page.locator("#events li.event")).to_have_count(1)
    expect(page.locator("#events li.event").first).to_have_attribute("data-type", "deleted")
    console.screenshot("console-events-deleted")


@pytest.mark.sipp
def test_calls_column_counts_calls_from_unregistered_devices(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "bob", "carol"):
        create_account(server, user)
    phones.register("alice")
    phones.register("bob")
    page = console.open("registrations")
    # alice's desk phone is registered, but she calls from another device (the
    # SIPp caller, IP-authenticated, never registered); carol registers nothing
    phones.call("alice", "bob")
    phones.call("carol", "bob")
    alice = page.locator(f"#registrations tr[data-account='{aor('alice')}'] td[data-label='Calls']")
    expect(alice.locator(".calls-count")).to_have_attribute("data-unregistered", "1")
    expect(alice).to_contain_text("+1 unregistered")
    bob = page.locator(f"#registrations tr[data-account='{aor('bob')}'] td[data-label='Calls']")
    expect(bob).to_have_text("2")
    expect(page.locator("#registrations-count")).to_have_text(
        "2 registrations · 2 calls from devices not registered"
    )


def test_account_in_a_new_domain_is_refused_until_the_domain_is_served(
    console: Any, server: RunningServer
) -> None:
    create_account(server, "alice")
    page = console.open("accounts")
    page.locator("#add-account").click()
    dialog = page.locator("dialog.account-dialog")
    dialog.locator("input[name=user]").fill("erin")
    dialog.locator("input[name=domain]").fill("customer.example")
    dialog.locator("input[name=password]").fill("pw")
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog.locator(".error")).to_contain_text("domain customer.example is not served")
    assert server.api.get("/api/accounts/erin@customer.example").status_code == 404

    dialog.locator("input[name=create_domain]").check()
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("#accounts tr[data-aor='erin@customer.example']")).to_be_visible()
    served = [d["name"] for d in server.api.get("/api/domains").json()]
    assert "customer.example" in served
