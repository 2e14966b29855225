"""The console's other pages in a real browser: editing parameters (and
refusals), accounts, hanging up a call, CDRs and their CSV, the API token
prompt, and a phone-sized screen."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from console_helpers import (
    Console,
    Phones,
    aor,
    calls,
    create_account,
    expect,
    param,
    wait_until,
)

from support.server import RunningServer

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(90)]

PAGES = ("registrations", "parameters", "events", "calls", "cdrs", "accounts")


def param_row(page: Any, name: str) -> Any:
    return page.locator(f"#parameters .param[data-name='{name}']")


def test_parameters_show_value_default_meaning_and_edit_live(
    console: Any, server: RunningServer
) -> None:
    page = console.open("parameters")
    described = server.api.get("/api/parameters").json()
    expect(page.locator("#parameters .param")).to_have_count(len(described))
    expire = param_row(page, "SS_ENDPOINT_EXPIRE")
    expect(expire).to_contain_text("Longest registration interval granted")
    expect(expire).to_contain_text("default 3600")
    expect(expire.locator("input")).to_have_value("3600")

    expire.locator("input").fill("1800")
    expire.get_by_role("button", name="Save").click()
    expect(expire).to_contain_text("reset to default")
    assert param(server, "SS_ENDPOINT_EXPIRE") == "1800"

    # A choice parameter edits through its list of values.
    code = param_row(page, "REGISTER_REPLACE_REJECT_CODE")
    code.locator("select").select_option("486")
    code.get_by_role("button", name="Save").click()
    wait_until(lambda: param(server, "REGISTER_REPLACE_REJECT_CODE") == "486", 5, "486 saved")
    expect(page.locator("#replace-card")).to_contain_text("refused with 486")

    # A change made elsewhere (API, CLI, another operator) shows up live.
    server.api.put("/api/parameters/SS_ENDPOINT_REGISTER_REPLACE", json={"value": "Off"})
    expect(page.locator("#replace-switch")).to_have_attribute("aria-checked", "false")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SS_ENDPOINT_MIN_EXPIRE", "abc", "SS_ENDPOINT_MIN_EXPIRE must be an integer, not 'abc'"),
        ("SS_ENDPOINT_EXPIRE", "9999999", "SS_ENDPOINT_EXPIRE must be at most 604800"),
        # valid alone, refused against another parameter
        ("SS_ENDPOINT_MIN_EXPIRE", "7200", "must not exceed SS_ENDPOINT_EXPIRE"),
    ],
)
def test_invalid_parameter_value_shows_the_api_error_and_changes_nothing(
    console: Any, server: RunningServer, name: str, value: str, message: str
) -> None:
    before = param(server, name)
    page = console.open("parameters")
    row = param_row(page, name)
    row.locator("input").fill(value)
    row.get_by_role("button", name="Save").click()
    expect(row.locator(".param-error")).to_contain_text(message)
    expect(row.locator("input")).to_have_value(value)  # kept, to be corrected
    assert param(server, name) == before
    events = server.api.get("/api/events", params={"type": "param-changed"}).json()
    assert events == []


def test_accounts_add_edit_delete(console: Any, server: RunningServer) -> None:
    create_account(server, "alice")
    page = console.open("accounts")
    expect(page.locator(f"#accounts tr[data-aor='{aor('alice')}']")).to_be_visible()

    page.locator("#add-account").click()
    dialog = page.locator("dialog.account-dialog")
    dialog.locator("input[name=user]").fill("dave")
    expect(dialog.locator("input[name=domain]")).to_have_value("regswitch.local")
    dialog.locator("input[name=password]").fill("s3cret-pw")
    dialog.locator("textarea[name=allowed_networks]").fill("10.0.0.0/8\n192.0.2.0/24")
    dialog.locator("input[name=max_contacts]").fill("2")
    dialog.locator("select[name=register_replace]").select_option("off")
    dialog.get_by_role("button", name="Add account").click()
    expect(dialog).to_have_count(0)
    row = page.locator(f"#accounts tr[data-aor='{aor('dave')}']")
    expect(row).to_contain_text("digest")
    expect(row).to_contain_text("10.0.0.0/8, 192.0.2.0/24")
    created = server.api.get(f"/api/accounts/{aor('dave')}").json()
    assert created["has_password"] is True
    assert created["allowed_networks"] == ["10.0.0.0/8", "192.0.2.0/24"]
    assert (created["max_contacts"], created["register_replace"]) == (2, "off")

    # Edit: a bad network is refused in the dialog, which stays open.
    row.get_by_role("button", name="Edit").click()
    dialog = page.locator("dialog.account-dialog")
    expect(dialog.locator("input[name=user]")).to_be_disabled()
    dialog.locator("textarea[name=allowed_networks]").fill("not-a-network")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".error")).to_be_visible()
    assert server.api.get(f"/api/accounts/{aor('dave')}").json()["allowed_networks"] == [
        "10.0.0.0/8", "192.0.2.0/24",
    ]
    dialog.locator("textarea[name=allowed_networks]").fill("")
    dialog.locator("select[name=register_replace]").select_option("on")
    dialog.locator("select[name=replace_keep_calls]").select_option("on")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    wait_until(
        lambda: server.api.get(f"/api/accounts/{aor('dave')}").json()["replace_keep_calls"] == "on",
        5, "the edit saved",
    )
    edited = server.api.get(f"/api/accounts/{aor('dave')}").json()
    assert (edited["allowed_networks"], edited["register_replace"]) == ([], "on")
    assert edited["has_password"] is True  # an empty password field keeps it

    row.get_by_role("button", name="Delete").click()
    page.locator("dialog").get_by_role("button", name="Delete account").click()
    expect(row).to_have_count(0)
    assert server.api.get(f"/api/accounts/{aor('dave')}").status_code == 404


@pytest.mark.sipp
def test_hang_up_a_call_then_find_its_cdr_and_csv(
    console: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "bob"):
        create_account(server, user)
    bob = phones.register("bob")
    call = phones.call("alice", "bob")
    page = console.open("calls")
    row = page.locator(f"#calls tr[data-id='{call.id}']")
    expect(row).to_contain_text(aor("alice").split("@")[0])
    expect(row).to_contain_text("answered")
    row.get_by_role("button", name="Hang up").click()
    page.locator("dialog").get_by_role("button", name="Hang up").click()
    wait_until(lambda: bob.received("BYE") == 1, 5, "BYE at the callee")
    wait_until(lambda: call.caller_received("BYE") == 1, 5, "BYE at the caller")
    expect(page.locator("#calls")).to_contain_text("No call in progress.")
    assert calls(server) == []

    page = console.open("cdrs")
    page.locator("#cdr-account").fill(aor("alice"))
    page.locator("#cdr-reason").select_option("admin-hangup")
    page.get_by_role("button", name="Search").click()
    record = page.locator(f"#cdrs tr[data-id='{call.id}']")
    expect(record).to_contain_text("admin-hangup")
    page.locator("#cdr-reason").select_option("busy")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#cdrs")).to_contain_text("No CDR matches.")

    page.locator("#cdr-reason").select_option("admin-hangup")
    page.locator("#cdr-since").fill("2099-01-01T00:00:00")  # a window after the call
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#cdrs")).to_contain_text("No CDR matches.")
    page.locator("#cdr-since").fill("")
    page.locator("#cdr-until").fill("2099-01-01T00:00:00")
    page.get_by_role("button", name="Search").click()
    expect(record).to_contain_text("admin-hangup")
    href = page.locator("#cdr-csv").get_attribute("href")
    assert href is not None and href.startswith("api/cdrs?")
    assert "format=csv" in href and "reason=admin-hangup" in href and "until=4070908800" in href
    with page.expect_download() as download_info:
        page.locator("#cdr-csv").click()
    rows = list(csv.DictReader(io.StringIO(download_info.value.path().read_text())))
    assert [(r["id"], r["end_reason"]) for r in rows] == [(call.id, "admin-hangup")]


def test_token_is_asked_for_and_kept_in_session_storage_only(
    server_factory: Any, page: Any
) -> None:
    server = server_factory("--api-token", "op-token-1")
    create_account_with_token(server, "alice", "op-token-1")
    page.goto(f"{server.api_url}/#/accounts")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.locator("#token-input").fill("wrong-token")
    page.locator("#token-dialog").get_by_role("button", name="Use token").click()
    expect(page.locator("#token-error")).to_contain_text("refused")
    page.locator("#token-input").fill("op-token-1")
    page.locator("#token-dialog").get_by_role("button", name="Use token").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f"#accounts tr[data-aor='{aor('alice')}']")).to_be_visible()
    # The live stream authenticates too (fetch with the Authorization header).
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    headers = {"Authorization": "Bearer op-token-1"}
    server.api.post(
        "/api/accounts", headers=headers,
        json={"user": "bob", "domain": "regswitch.local", "allowed_networks": ["127.0.0.0/8"]},
    )
    expect(page.locator(f"#accounts tr[data-aor='{aor('bob')}']")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('regswitch.api-token')") == "op-token-1"
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []


def create_account_with_token(server: RunningServer, user: str, token: str) -> None:
    response = server.api.post(
        "/api/accounts", headers={"Authorization": f"Bearer {token}"},
        json={"user": user, "domain": "regswitch.local", "allowed_networks": ["127.0.0.0/8"]},
    )
    assert response.status_code == 201, response.text


@pytest.mark.sipp
def test_phone_sized_screen_has_no_horizontal_overflow(
    phone_page: Any, server: RunningServer, phones: Phones
) -> None:
    for user in ("alice", "a-rather-long-account-name-for-a-pbx-trunk"):
        create_account(server, user)
    phones.register("a-rather-long-account-name-for-a-pbx-trunk",
                    ua="Yealink SIP-T46S 66.86.0.15 with-a-very-long-build-identifier-string")
    call = phones.call("alice", "a-rather-long-account-name-for-a-pbx-trunk")
    console = Console(phone_page, server)
    for name in PAGES:
        page = console.open(name)
        if name in ("registrations", "calls", "accounts"):
            expect(page.locator("#page tbody tr").first).not_to_have_class("empty")
        overflow = page.evaluate(
            """() => {
                const doc = document.documentElement;
                const main = document.getElementById('page');
                const wide = [...main.querySelectorAll('*')]
                    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
                    .map((el) => el.tagName + '.' + el.className);
                return {
                    doc: doc.scrollWidth - window.innerWidth,
                    main: main.scrollWidth - main.clientWidth,
                    wide,
                };
            }"""
        )
        assert overflow == {"doc": 0, "main": 0, "wide": []}, (name, overflow)
    # The delete confirmation fits too.
    page = console.open("registrations")
    page.locator("#registrations").get_by_role("button", name="Delete").first.click()
    dialog = page.locator("dialog.confirm-delete")
    expect(dialog.locator(f"li[data-call='{call.id}']")).to_be_visible()
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
