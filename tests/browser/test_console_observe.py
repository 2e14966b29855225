"""The dashboard and an account's history in Chromium against a real server
and SIPp phones: the charts move when devices register and kick each other,
and clicking an account anywhere leads to its history, with the kick in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from console_helpers import Phones, aor, create_account, expect

from support.server import RunningServer

pytestmark = [
    pytest.mark.browser, pytest.mark.integration, pytest.mark.sipp, pytest.mark.timeout(90),
]

# Screenshots of these tests (for a look, or to copy into docs/ for the README
# by hand): never written to the tracked docs/ by a test run.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(path), full_page=True)
    return path


def value(page: Any, series: str) -> Any:
    return page.locator(f".chart-card[data-series='{series}'] .chart-value")


def chart(page: Any, series: str) -> Any:
    return page.locator(f".chart-card[data-series='{series}'] svg")


def test_dashboard_is_the_first_page_and_its_charts_move_with_registrations_and_kicks(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    create_account(server, "alice")
    create_account(server, "bob")
    page = console.page
    page.goto(f"{server.api_url}/")  # the console's address itself
    expect(page.locator("#page")).to_have_attribute("data-page", "dashboard")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("nav.tabs a").first).to_have_text("Dashboard")
    for series in ("bindings", "registers_per_s", "kicks", "rejections", "flood_blocks", "calls"):
        expect(value(page, series)).to_have_attribute("data-value", "0")
    expect(page.locator("#top-kicked")).to_contain_text("No kick in the last hour.")

    phones.register("bob", ua="Zoiper rv2.10.20.3")
    first = phones.register("alice", ua="Yealink SIP-T46S")
    # live, from the event stream: no reload, no waiting for a sample
    expect(value(page, "bindings")).to_have_attribute("data-value", "2", timeout=3000)
    phones.register("alice", ua="Grandstream GXP2170")  # a second device: kicks the first
    expect(value(page, "kicks")).to_have_attribute("data-value", "1", timeout=3000)
    expect(value(page, "bindings")).to_have_attribute("data-value", "2")
    top = page.locator(f"#top-kicked tr[data-account='{aor('alice')}']")
    expect(top).to_contain_text("1")
    assert first.binding(server) is None

    # then the server's samples (one every 5 s) carry it: the lines are drawn from them
    points = int(chart(page, "bindings").get_attribute("data-points") or 0)
    expect(chart(page, "bindings")).not_to_have_attribute("data-points", str(points), timeout=12000)
    expect(chart(page, "bindings")).to_have_attribute("data-last", "2")
    expect(chart(page, "kicks")).to_have_attribute("data-total", "1")
    expect(chart(page, "registers_per_s").locator("path.line")).to_have_count(1)
    expect(value(page, "registers_per_s")).not_to_have_attribute("data-value", "0")

    # clicking the account leads to its history
    top.locator("a.aor").click()
    expect(page.locator("#page")).to_have_attribute("data-page", "history")
    expect(page.locator("#timeline li.entry[data-kind='kick']")).to_have_count(1)
    page.go_back()
    expect(page.locator("#page")).to_have_attribute("data-page", "dashboard")
    expect(value(page, "kicks")).to_have_attribute("data-value", "1")
    shot(page, "dashboard")


def test_history_page_from_a_registration_row(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    create_account(server, "carol")
    phones.register("carol", ua="Polycom VVX 450")
    second = phones.register("carol", ua="Linphone 5.2")
    page = console.open("registrations")
    page.locator(f"#registrations tr[data-account='{aor('carol')}'] a.aor").click()
    expect(page).to_have_url(re.compile(r"#/history/carol%40regswitch\.local$"))
    expect(page.locator("#page")).to_have_attribute("data-page", "history")
    timeline = page.locator("#timeline")
    kick = timeline.locator("li.entry[data-kind='kick']")
    expect(kick).to_contain_text("(Polycom VVX 450)")
    expect(kick).to_contain_text(f"from udp:127.0.0.1:{second.port} (Linphone 5.2)")
    expect(timeline.locator("li.entry[data-kind='registration']")).to_have_count(2)
    expect(timeline.locator("li.entry").last).to_contain_text("account created")
    href = kick.locator("a.ref").get_attribute("href")
    assert href and re.fullmatch(r"api/events/\d+", href)
    assert server.api.get("/" + href).json()["type"] == "replaced"

    # live: a parameter change shows up without a reload
    server.api.put("/api/parameters/SS_ENDPOINT_EXPIRE", json={"value": "1800"})
    expect(timeline.locator("li.entry[data-kind='parameter']")).to_contain_text(
        "SS_ENDPOINT_EXPIRE: 3600 -> 1800"
    )
    shot(page, "history")
