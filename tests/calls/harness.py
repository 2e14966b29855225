"""Helpers for the call tests (tests/integration/test_calls*.py): accounts, SIPp devices
registering and calling through a real `regswitch serve`, and waits on the API.

A device is a SIPp instance on a fixed local port: `register()` runs
tests/sipp/call_register.xml from that port (the binding's source and contact
are the port), then `device()` starts the call scenario on the same port, so
the switch's INVITEs reach it. Accounts are IP-authenticated (127.0.0.0/8, no
password), which SIPp needs for INVITE without digest.

Scenarios with `@CODE@`/`@REASON@` placeholders are filled in here (SIPp takes
no keywords in `response="..."`).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from pathlib import Path
from typing import Any

from support import sipp_scenario, wait_until
from support.server import RunningServer
from support.sipp import SippProcess, SippResult, SippRunner, free_port

DOMAIN = "regswitch.local"
LOOPBACK = ["127.0.0.0/8"]
REASONS = {
    200: "OK",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    603: "Decline",
}
_CALL_ID = re.compile(r"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)[ \t]*\r?$")


def user(aor: str) -> str:
    """The user part of `user@domain`."""
    return aor.partition("@")[0]


def unique(name: str) -> str:
    """A user name of its own per test (several tests may share a server)."""
    return f"{name}{secrets.token_hex(3)}"


def scenario(name: str, code: int | None = None) -> Path | str:
    """tests/sipp/<name>.xml, with @CODE@/@REASON@ filled in when `code` is given."""
    path = sipp_scenario(name)
    if code is None:
        return path
    text = path.read_text(encoding="iso-8859-1")
    return text.replace("@CODE@", str(code)).replace("@REASON@", REASONS.get(code, "Failed"))


class Api:
    """The switch's admin API, as the call tests use it."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = server.api

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def account(self, user: str, **fields: Any) -> str:
        body: dict[str, Any] = {"user": user, "domain": DOMAIN, "allowed_networks": LOOPBACK}
        body.update(fields)
        r = self.http.post("/api/accounts", json=body)
        assert r.status_code == 201, r.text
        return f"{user}@{DOMAIN}"

    def set_param(self, name: str, value: Any) -> None:
        r = self.http.put(f"/api/parameters/{name}", json={"value": value})
        assert r.status_code == 200, r.text

    def registrations(self, aor: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/registrations", account=aor)
        return result

    def calls(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/calls")
        return result

    def call_of(self, caller: str, state: str | None = None) -> dict[str, Any] | None:
        for call in self.calls():
            if call["caller"] == caller and (state is None or call["state"] == state):
                return call
        return None

    def wait_call(self, caller: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        call: dict[str, Any] = wait_until(
            lambda: self.call_of(caller, state), timeout, f"a call from {caller} in state {state}"
        )
        return call

    def wait_no_calls(self, timeout: float = 10.0) -> None:
        wait_until(lambda: not self.calls() or None, timeout, "no call in progress")

    def cdrs(self, aor: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/cdrs", account=aor)
        return result

    def wait_cdrs(self, aor: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        def probe() -> list[dict[str, Any]] | None:
            found = self.cdrs(aor)
            return found if len(found) >= count else None

        result: list[dict[str, Any]] = wait_until(probe, timeout, f"{count} CDR(s) of {aor}")
        assert len(result) == count, result
        return result

    def events(self, type: str, aor: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/events", type=type, account=aor)
        return result


def call_ids(proc: SippProcess | SippResult) -> set[str]:
    """Every Call-ID in a SIPp run's message trace."""
    try:
        text = proc.messages_path.read_text(errors="replace")
    except OSError:
        return set()
    return set(_CALL_ID.findall(text))


def wait_trace(proc: SippProcess, needle: str, timeout: float = 10.0) -> None:
    """Wait until SIPp's message trace contains `needle` (e.g. 'SIP/2.0 180')."""

    def probe() -> bool:
        try:
            return needle in proc.messages_path.read_text(errors="replace")
        except OSError:
            return False

    wait_until(probe, timeout, f"{needle!r} in {proc.messages_path}")


class Devices:
    """SIPp devices and callers of one test, against one server."""

    def __init__(self, sipp: SippRunner, server: RunningServer) -> None:
        self.sipp = sipp
        self.server = server
        self.target = server.target("udp")

    def register(self, user: str, port: int | None = None, code: int = 200) -> int:
        """Register `user` from `port` (a new free one by default); returns the port."""
        port = port or free_port()
        self.sipp.run(
            scenario("call_register", code),
            self.target,
            local_port=port,
            calls=1,
            timeout=10,
            # answer OPTIONS, as a device does: replacing a binding of an
            # address-only account first checks the return path with one
            extra=["-s", user, "-aa"],
        ).check(1)
        return port

    def device(
        self,
        name: str,
        port: int,
        *,
        code: int | None = None,
        pause_ms: int = 0,
        timeout: float = 25,
    ) -> SippProcess:
        """Start a callee device's scenario (tests/sipp/<name>.xml) on `port`, in the background."""
        return self.sipp.start(
            scenario(name, code),
            None,
            local_port=port,
            calls=1,
            timeout=timeout,
            extra=["-d", str(pause_ms)],
        )

    def caller(
        self,
        name: str,
        caller: str,
        callee: str,
        *,
        port: int | None = None,
        code: int | None = None,
        pause_ms: int = 0,
        timeout: float = 25,
    ) -> SippProcess:
        """Start a caller (tests/sipp/<name>.xml) calling `callee`, in the background."""
        return self.sipp.start(
            scenario(name, code),
            self.target,
            local_port=port or 0,
            calls=1,
            timeout=timeout,
            keys={"caller": caller},
            extra=["-s", callee, "-d", str(pause_ms)],
        )


def source(port: int) -> str:
    return f"udp:127.0.0.1:{port}"


def contact(user: str, port: int) -> str:
    return f"sip:{user}@127.0.0.1:{port}"


def check_cdr(
    cdr: dict[str, Any],
    *,
    caller: str,
    callee: str,
    reason: str,
    direction: str,
    code: int,
    answered: bool,
    caller_port: int | None = None,
    callee_port: int | None = None,
    a_leg: SippProcess | SippResult | None = None,
    b_leg: SippProcess | SippResult | None = None,
    min_seconds: float = 0.0,
) -> None:
    """The CDR fields of docs/behaviour.md §4 for one call attempt."""
    assert cdr["caller"] == caller
    assert cdr["callee"] == callee
    outcome = (cdr["end_reason"], cdr["end_direction"], cdr["final_code"])
    assert outcome == (reason, direction, code), cdr
    now = time.time()
    assert now - 120 < cdr["start"] <= cdr["end"] <= now + 1, cdr
    if caller_port is not None:
        assert cdr["caller_source"] == source(caller_port), cdr
        assert cdr["caller_contact"] == contact(caller.split("@")[0], caller_port), cdr
    if callee_port is not None:
        assert cdr["callee_source"] == source(callee_port), cdr
        assert cdr["callee_contact"] == contact(callee.split("@")[0], callee_port), cdr
    if a_leg is not None:
        assert cdr["a_call_id"] in call_ids(a_leg), (cdr["a_call_id"], call_ids(a_leg))
    if b_leg is not None:
        assert cdr["b_call_id"] in call_ids(b_leg), (cdr["b_call_id"], call_ids(b_leg))
        assert cdr["b_call_id"] != cdr["a_call_id"]
    if answered:
        assert cdr["answer"] is not None and cdr["start"] <= cdr["answer"] <= cdr["end"], cdr
        talk = cdr["end"] - cdr["answer"]
        assert talk >= min_seconds, cdr
        assert cdr["billable_seconds"] == max(0, math.ceil(talk - 1e-6)), cdr
    else:
        assert cdr["answer"] is None, cdr
        assert cdr["billable_seconds"] == 0, cdr
