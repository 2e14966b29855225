"""SIP devices (SIPp) and API shortcuts for the console's browser tests.

A *device* is one SIPp process that REGISTERs an IP-authenticated account
from its own port (Contact = source, so regswitch sends INVITEs and OPTIONS
probes there) and stays up; requests regswitch starts (INVITE, OPTIONS) have
Call-IDs the device never made, so SIPp hands them to the out-of-call
scenario, which answers like a phone. What the device received is read back
from SIPp's message log.

    alice = phones.register("alice")          # waits until the API shows it
    call = phones.call("carol", "alice")      # answered call carol -> alice
    wait_until(lambda: alice.received("BYE"), 5, "BYE at alice")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from support import wait_until
from support.server import RunningServer
from support.sipp import SippProcess, SippResult, SippRunner, free_port

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (fails under CI=true) before any use
    expect = None  # type: ignore[assignment]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DOMAIN = "regswitch.local"  # the server's default domain; SIP to 127.0.0.1 maps to it
DEVICE_LIFETIME_MS = 120_000  # devices outlive any test; teardown ends them

ROOT = Path(__file__).resolve().parents[2]
# Screenshots go to build/screenshots; `make screenshots` points this at docs/
# to refresh the ones the README shows (a test run never rewrites tracked files).
SCREENSHOTS = ROOT / os.environ.get("REGSWITCH_SCREENSHOTS", "build/screenshots")

T = TypeVar("T")


def aor(user: str) -> str:
    return f"{user}@{DOMAIN}"


def create_account(server: RunningServer, user: str, **fields: Any) -> dict[str, Any]:
    """An account IP-authenticated from loopback (no password), unless `fields` say otherwise."""
    body = {"user": user, "domain": DOMAIN, "allowed_networks": ["127.0.0.0/8"], **fields}
    response = server.api.post("/api/accounts", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def set_param(server: RunningServer, name: str, value: str) -> None:
    response = server.api.put(f"/api/parameters/{name}", json={"value": value})
    assert response.status_code == 200, response.text


def param(server: RunningServer, name: str) -> str:
    return str(server.api.get(f"/api/parameters/{name}").json()["value"])


def registrations(server: RunningServer, user: str | None = None) -> list[dict[str, Any]]:
    query = {"account": aor(user)} if user else {}
    return list(server.api.get("/api/registrations", params=query).json())


def calls(server: RunningServer) -> list[dict[str, Any]]:
    return list(server.api.get("/api/calls").json())


_RECEIVED = re.compile(r"message received \[\d+\] bytes :\s*\n\s*(\S+)")


def received(proc: SippProcess, method: str) -> int:
    """How many `method` requests a SIPp process has received so far (its message log)."""
    try:
        text = proc.messages_path.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(1 for first in _RECEIVED.findall(text) if first == method)


@dataclass
class Device:
    """A registered SIPp phone."""

    user: str
    proc: SippProcess

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.port}"

    def received(self, method: str) -> int:
        """How many `method` requests this device has received so far."""
        return received(self.proc, method)

    def binding(self, server: RunningServer) -> dict[str, Any] | None:
        for item in registrations(server, self.user):
            if item["source_port"] == self.port:
                return item
        return None

    def stop(self) -> None:
        # A soft SIPp exit waits for the device's long pause; nothing is
        # left to check in its stats, so end it (our own process) at once.
        if self.proc.running:
            self.proc.proc.terminate()
        self.proc.wait(10)


@dataclass
class ActiveCall:
    """An answered call through the B2BUA and the SIPp caller holding it."""

    info: dict[str, Any]
    caller: SippProcess

    @property
    def id(self) -> str:
        return str(self.info["id"])

    def caller_received(self, method: str) -> int:
        return received(self.caller, method)


class Phones:
    """SIPp devices and callers against one server; all stopped by `close()`."""

    def __init__(self, sipp: SippRunner, server: RunningServer) -> None:
        self.sipp = sipp
        self.server = server
        self.devices: list[Device] = []
        self.callers: list[SippProcess] = []

    def start(self, user: str, ua: str = "SIPp phone", expires: int = 3600) -> Device:
        """Start a device; it REGISTERs at once (don't wait for the result)."""
        proc = self.sipp.start(
            SCENARIOS / "device.xml",
            self.server.target("udp"),
            transport="u1",
            calls=1,
            timeout=DEVICE_LIFETIME_MS / 1000 + 30,
            keys={"ua": ua, "expires": expires},
            extra=[
                "-s",
                user,
                "-oocsf",
                str(SCENARIOS / "device_ooc.xml"),
                "-d",
                str(DEVICE_LIFETIME_MS),
            ],
        )
        device = Device(user, proc)
        self.devices.append(device)
        return device

    def register(self, user: str, ua: str = "SIPp phone", expires: int = 3600) -> Device:
        """Start a device and wait until the API lists its registration."""
        device = self.start(user, ua, expires)
        wait_until(lambda: device.binding(self.server), 5, f"{user} registered from :{device.port}")
        return device

    def refused(self, user: str, ua: str = "SIPp second phone") -> SippResult:
        """A REGISTER for `user` from a new port that must get 403."""
        return self.sipp.run(
            SCENARIOS / "register_refused.xml",
            self.server.target("udp"),
            transport="u1",
            calls=1,
            timeout=15,
            keys={"ua": ua},
            extra=["-s", user],
            local_port=free_port(),
        )

    def call(self, caller: str, callee: str) -> ActiveCall:
        """`caller` (IP-authenticated, need not be registered) calls `callee`; returns the
        answered call from /api/calls. The caller holds the call until a BYE ends it."""
        before = {c["id"] for c in calls(self.server)}
        proc = self.sipp.start(
            SCENARIOS / "caller.xml",
            self.server.target("udp"),
            transport="u1",
            calls=1,
            timeout=DEVICE_LIFETIME_MS / 1000,
            keys={"caller": caller, "ua": "SIPp caller"},
            extra=["-s", callee],
        )
        self.callers.append(proc)

        def answered() -> dict[str, Any] | None:
            for item in calls(self.server):
                if item["id"] not in before and item["state"] == "answered":
                    return item
            return None

        info = wait_until(answered, 8, f"call {caller} -> {callee} answered")
        return ActiveCall(info, proc)

    def close(self) -> None:
        for device in self.devices:
            device.stop()
        for proc in self.callers:
            if proc.running:
                proc.proc.terminate()
            proc.wait(10)


class Console:
    """A browser tab on one server's console."""

    def __init__(self, page: Any, server: RunningServer) -> None:
        self.page = page
        self.server = server

    def open(self, name: str = "registrations", *, live: bool = True) -> Any:
        """Go to a console page; with `live`, wait until its event stream is connected."""
        self.page.goto(f"{self.server.api_url}/#/{name}")
        expect(self.page.locator("#page")).to_have_attribute("data-page", name)
        if live:
            expect(self.page.locator("#live")).to_have_attribute("data-state", "live")
        return self.page

    def screenshot(self, name: str) -> Path:
        """Save <name>.png in SCREENSHOTS."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.locator("#toasts").evaluate("el => el.replaceChildren()")
        self.page.evaluate("document.activeElement && document.activeElement.blur()")
        # The top bar down to the end of the page's content: no empty canvas below.
        bottom = self.page.evaluate(
            "Math.ceil(document.getElementById('page').lastElementChild"
            ".getBoundingClientRect().bottom)"
        )
        viewport = self.page.viewport_size
        height = min(viewport["height"], bottom + 24)
        self.page.screenshot(
            path=str(path), clip={"x": 0, "y": 0, "width": viewport["width"], "height": height}
        )
        return path
