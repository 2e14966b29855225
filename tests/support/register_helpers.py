"""Helpers for the REGISTER integration tests (tests/integration/test_register_*.py).

- the console API: accounts, parameters, registrations, events;
- `wait_until`: poll a condition with a deadline (the API is the only window
  into the server's state, so polling it is how a test waits);
- SIPp REGISTER runs (tests/sipp/register_*.xml) with credentials from a
  generated -inf file, a chosen local port (so the Contact is known), and the
  responses SIPp received parsed back from its message log;
- hand-built REGISTER requests for the Python test UA, for what SIPp can't
  express (a replayed Authorization, two devices sent back to back).

    create_account(server, "alice", password="pw")
    run = sipp_register(sipp, server, "alice", "pw")          # 401 -> 200
    assert run.final.status == 200
    wait_until(lambda: not registrations(server, "alice"), 5, "alice gone")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from regswitch.sip.errors import ParseError
from regswitch.sip.message import Request, Response
from regswitch.sip.parse import parse_message

from . import sipp_scenario
from .digest import Challenge, authorization, challenges_in
from .server import RunningServer
from .sipp import SippProcess, SippResult, SippRunner, free_port
from .ua import UA, ClientTransaction, new_call_id, new_tag

DOMAIN = "regswitch.local"  # the server's default domain: its own addresses mean it too
# Loopback is trusted (exempt from flood limits) by default; servers started
# with this environment trust only a documentation network, so loopback counts.
UNTRUSTED_LOOPBACK = {"REGSWITCH_TRUSTED_NETWORKS": "192.0.2.0/24"}


# -- waiting -----------------------------------------------------------------------


# -- the console API ---------------------------------------------------------------


def _ok(response: Any) -> Any:
    assert response.status_code < 300, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json()


def create_account(
    server: RunningServer, user: str, password: str | None = "pw", **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"user": user, "domain": DOMAIN, **fields}
    if password is not None:
        body["password"] = password
    return dict(_ok(server.api.post("/api/accounts", json=body)))


def update_account(server: RunningServer, user: str, **fields: Any) -> dict[str, Any]:
    return dict(_ok(server.api.patch(f"/api/accounts/{user}@{DOMAIN}", json=fields)))


def set_param(server: RunningServer, name: str, value: object) -> dict[str, Any]:
    return dict(_ok(server.api.put(f"/api/parameters/{name}", json={"value": value})))


def set_params(server: RunningServer, **values: object) -> None:
    for name, value in values.items():
        set_param(server, name, value)


def get_param(server: RunningServer, name: str) -> str:
    return str(_ok(server.api.get(f"/api/parameters/{name}"))["value"])


def registrations(server: RunningServer, user: str | None = None) -> list[dict[str, Any]]:
    params = {"account": f"{user}@{DOMAIN}"} if user else {}
    return list(_ok(server.api.get("/api/registrations", params=params)))


def events(
    server: RunningServer, type: str | None = None, user: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Recorded events, oldest first."""
    params: dict[str, Any] = {"limit": limit}
    if type:
        params["type"] = type
    if user:
        params["account"] = f"{user}@{DOMAIN}"
    return list(reversed(_ok(server.api.get("/api/events", params=params))))


def refusal_reason(server: RunningServer, user: str) -> str:
    """The reason of the one `auth-failed` event of `user`, who must hold no
    registration (a refused REGISTER changes nothing)."""
    assert not registrations(server, user), f"{user} is registered"
    failures = events(server, "auth-failed", user)
    assert len(failures) == 1, f"expected one auth-failed event of {user}: {failures!r}"
    return str(failures[0]["details"]["reason"])


T = TypeVar("T")


def only(items: Sequence[T], what: str = "item") -> T:
    assert len(items) == 1, f"expected exactly one {what}, got {len(items)}: {items!r}"
    return items[0]


# -- SIPp ----------------------------------------------------------------------------

_SEPARATOR = re.compile(r"(?m)^-{20,} .*\n")
_DIRECTION = re.compile(r"^\w+ message (received|sent)")


def sipp_messages(result: SippResult) -> list[tuple[str, Request | Response]]:
    """("received" | "sent", message) for every message in SIPp's -trace_msg log."""
    try:
        text = result.messages_path.read_bytes().decode("latin-1")
    except OSError:
        return []
    out: list[tuple[str, Request | Response]] = []
    for block in _SEPARATOR.split(text):
        head, _, body = block.partition("\n")
        match = _DIRECTION.match(head)
        if match is None:
            continue
        raw = body.lstrip("\r\n").encode("latin-1")
        # the log adds a newline after each message; keep exactly one CRLFCRLF end
        head_end = raw.find(b"\r\n\r\n")
        if head_end < 0:
            continue
        try:
            out.append((match.group(1), parse_message(raw[: head_end + 4], stream=True)))
        except ParseError:
            continue
    return out


@dataclass
class SippRegister:
    """One SIPp REGISTER run: its result, local port, the Contact it registered,
    and the responses it received, in order."""

    result: SippResult
    port: int
    user: str
    contact_port: int
    responses: list[Response]

    @property
    def final(self) -> Response:
        assert self.responses, f"SIPp received no response\n{self.result.describe()}"
        return self.responses[-1]

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.contact_port}"

    @property
    def source(self) -> str:
        """Where a UDP run sent from (over TCP the source port is the connection's)."""
        return f"udp:127.0.0.1:{self.port}"


def write_inf(path: Path, user: str, auth_user: str | None, password: str | None) -> Path:
    """A SIPp -inf file: field0 = the AOR user, field1 = the [authentication] keyword
    (SIPp 3.6 cannot nest [fieldN] inside [authentication])."""
    auth = (
        ""
        if password is None
        else (f"[authentication username={auth_user or user} password={password}]")
    )
    path.write_text(f"SEQUENTIAL\n{user};{auth}\n", encoding="iso-8859-1")
    return path


def _sipp_setup(
    sipp: SippRunner,
    scenario: str,
    user: str,
    password: str | None,
    auth_user: str | None,
    expires: int,
    contact_port: int | None,
    contact_params: str,
    local_port: int | None,
    call_id: str | None,
    base_cseq: int | None,
    auto_answer: bool,
    transport: str = "udp",
    local_host: str = "127.0.0.1",
) -> tuple[dict[str, Any], int, int]:
    port = local_port or free_port()
    workdir = sipp._dir(f"{scenario}-")
    workdir.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    if call_id is not None:
        extra += ["-cid_str", call_id]
    if base_cseq is not None:
        extra += ["-base_cseq", str(base_cseq)]
    if auto_answer:
        extra.append("-aa")
    kwargs: dict[str, Any] = {
        "transport": "t1" if transport == "tcp" else "u1",
        "inf": write_inf(workdir / "users.csv", user, auth_user, password),
        "extra": extra,
        "local_port": port,
        "local_host": local_host,
        "workdir": workdir,
        "keys": {
            "contact_port": contact_port or port,
            "contact_params": contact_params,
            "expires": expires,
        },
    }
    return kwargs, port, contact_port or port


def _collect(result: SippResult, port: int, user: str, contact_port: int) -> SippRegister:
    responses = [m for d, m in sipp_messages(result) if d == "received" and isinstance(m, Response)]
    return SippRegister(result, port, user, contact_port, responses)


def sipp_register(
    sipp: SippRunner,
    server: RunningServer,
    user: str,
    password: str | None = "pw",
    *,
    scenario: str = "register_digest",
    auth_user: str | None = None,
    expires: int = 300,
    contact_port: int | None = None,
    contact_params: str = "",
    local_port: int | None = None,
    call_id: str | None = None,
    base_cseq: int | None = None,
    calls: int = 1,
    rate: float | None = None,
    auto_answer: bool = False,
    transport: str = "udp",
    timeout: float = 15,
    check: bool = True,
    local_host: str = "127.0.0.1",
) -> SippRegister:
    """Run tests/sipp/<scenario>.xml once (or `calls` times) as a REGISTERing device.

    The Contact is `sip:<user>@127.0.0.1:<contact_port><contact_params>`, the
    contact port defaulting to SIPp's own (so the device is not behind NAT);
    `call_id`/`base_cseq` pin Call-ID and the first CSeq (for refreshes across
    runs); `auto_answer` answers out-of-call OPTIONS with 200 (`-aa`);
    `local_host` another loopback address (a device on another network).
    With `check`, the run must be clean (exit 0, every call successful).
    """
    kwargs, port, cport = _sipp_setup(
        sipp,
        scenario,
        user,
        password,
        auth_user,
        expires,
        contact_port,
        contact_params,
        local_port,
        call_id,
        base_cseq,
        auto_answer,
        transport,
        local_host,
    )
    result = sipp.run(
        sipp_scenario(scenario),
        server.target(transport),
        calls=calls,
        rate=rate,
        timeout=timeout,
        **kwargs,
    )
    if check:
        result.check(calls)
    return _collect(result, port, user, cport)


@dataclass
class PendingSipp:
    """A SIPp REGISTER run in the background (see sipp_register_start)."""

    process: SippProcess
    port: int
    user: str
    contact_port: int

    def finish(self, timeout: float = 20, check: bool = True) -> SippRegister:
        result = self.process.wait(timeout)
        if check:
            result.check(1)
        return _collect(result, self.port, self.user, self.contact_port)


def sipp_register_start(
    sipp: SippRunner,
    server: RunningServer,
    user: str,
    password: str | None = "pw",
    *,
    scenario: str = "register_digest",
    expires: int = 300,
    contact_params: str = "",
    timeout: float = 15,
) -> PendingSipp:
    """As sipp_register, but return as soon as SIPp runs; `.finish()` waits for it."""
    kwargs, port, cport = _sipp_setup(
        sipp,
        scenario,
        user,
        password,
        None,
        expires,
        None,
        contact_params,
        None,
        None,
        None,
        False,
    )
    process = sipp.start(
        sipp_scenario(scenario), server.target("udp"), calls=1, timeout=timeout, **kwargs
    )
    return PendingSipp(process, port, user, cport)


# -- the Python UA: hand-built REGISTERs ------------------------------------------------


@dataclass
class Device:
    """A REGISTERing device on a Python UA with full control of every header."""

    ua: UA
    user: str
    contact: str = ""
    call_id: str = field(default_factory=new_call_id)
    from_tag: str = field(default_factory=new_tag)
    cseq: int = 0
    challenge: Challenge | None = None
    instance: str | None = None
    dest: tuple[str, int] | None = None  # where to send (default: the UA's server)

    def __post_init__(self) -> None:
        if not self.contact:
            self.contact = self.ua.contact_uri(self.user)

    @property
    def ruri(self) -> str:
        return f"sip:{DOMAIN}"

    def request(
        self,
        *,
        expires: int | None = 300,
        contact: str | None = None,
        authz: tuple[str, str] | None = None,
        cseq: int | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """The next REGISTER (CSeq + 1 unless given). `contact` "" sends none (a query)."""
        self.cseq = cseq if cseq is not None else self.cseq + 1
        value = self.contact if contact is None else contact
        headers: list[tuple[str, str]] = []
        if value:
            line = value if value == "*" or value.startswith("<") else f"<{value}>"
            if self.instance and value != "*":
                line += f';+sip.instance="<{self.instance}>"'
            headers.append(("Contact", line))
        if expires is not None:
            headers.append(("Expires", str(expires)))
        if authz is not None:
            headers.append(authz)
        headers.extend(extra)
        req = self.ua.build_request("REGISTER", self.ruri, call_id=self.call_id, cseq=self.cseq)
        req.headers.set("From", f"<sip:{self.user}@{DOMAIN}>;tag={self.from_tag}")
        req.headers.set("To", f"<sip:{self.user}@{DOMAIN}>")
        for name, val in headers:
            req.headers.add(name, val)
        return req

    def send(self, req: Request) -> ClientTransaction:
        return self.ua.send_request(req, self.dest)

    def wait(self, tx: ClientTransaction, timeout: float = 8.0) -> Response:
        return self.ua.wait_response(tx, timeout)

    def fetch_challenge(self, algorithm: str = "MD5") -> Challenge:
        """An unauthenticated REGISTER (no Contact, so it could change nothing
        even if accepted); keeps the 401's challenge for `algorithm`."""
        resp = self.wait(self.send(self.request(contact="", expires=None)))
        assert resp.status == 401, f"expected a 401 challenge, got {resp.status} {resp.reason}"
        found = [c for c in challenges_in(resp) if c.algorithm.upper() == algorithm.upper()]
        assert found, f"no {algorithm} challenge in {resp.headers.get_all('WWW-Authenticate')}"
        self.challenge = found[0]
        return self.challenge

    def authz(
        self,
        password: str,
        nc: int = 1,
        user: str | None = None,
        challenge: Challenge | None = None,
    ) -> tuple[str, str]:
        """An Authorization header answering the kept challenge with `nc`."""
        ch = challenge or self.challenge
        assert ch is not None, "fetch_challenge() first"
        value = authorization(
            ch,
            method="REGISTER",
            uri=self.ruri,
            username=user or self.user,
            password=password,
            nc=nc,
        )
        return ch.authorization_header, value

    def register(
        self,
        password: str,
        *,
        expires: int | None = 300,
        nc: int = 1,
        contact: str | None = None,
        timeout: float = 8.0,
    ) -> Response:
        """Challenge (if none kept) and an authenticated REGISTER with `nc`."""
        if self.challenge is None:
            self.fetch_challenge()
        return self.wait(
            self.send(
                self.request(expires=expires, contact=contact, authz=self.authz(password, nc))
            ),
            timeout,
        )
