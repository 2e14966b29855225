"""A small synchronous SIP user agent for protocol tests (UDP, TCP, TLS).

For the cases SIPp can't express. Messages are built and parsed with
regswitch.sip (message/parse/serialise); digest answers come from
support.digest, which is independent of the server's digest code.

A background thread reads the socket: responses go to the client transaction
whose Via branch they carry, requests to a queue that `expect_request` reads,
and everything else (unparseable data, keepalives, stray responses) to a raw
queue that `recv_raw` reads. The UA does the transaction-layer chores a test
should not have to: UDP retransmission of its requests (T1 doubling), the ACK
of a non-2xx final response to its INVITE, re-sending its last response when
a request is retransmitted, and answering a stream CRLF ping with a pong.

    ua = UA("udp", server.udp)
    r = ua.register("alice", "example.com", password="secret")
    assert r.status == 200
    invite = ua.expect_request("INVITE")
    ua.respond(invite, 180)
    ua.respond(invite, 200, body=sdp)
"""

from __future__ import annotations

import contextlib
import re
import secrets
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from regswitch.sip.errors import ParseError
from regswitch.sip.message import Headers, Request, Response
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise

from .digest import Challenge, authorization, challenges_in

Addr = tuple[str, int]
HeaderArg = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]] | None

T1 = 0.5
T2 = 4.0
USER_AGENT = "regswitch-test-ua"
CRLF_PING = b"\r\n\r\n"
CRLF_PONG = b"\r\n"
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$")
_MAX_HEAD = 65536


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(5)


def new_call_id(host: str = "127.0.0.1") -> str:
    return f"{secrets.token_hex(10)}@{host}"


class SipTimeout(TimeoutError):
    pass


@dataclass
class ClientTransaction:
    request: Request
    data: bytes
    dest: Addr
    provisionals: list[Response] = field(default_factory=list)
    final: Response | None = None
    retransmitted_finals: int = 0
    sent_at: float = 0.0

    @property
    def branch(self) -> str:
        return self.request.top_via.branch or ""

    @property
    def method(self) -> str:
        return self.request.method


@dataclass
class Dialog:
    """Enough dialog state for in-dialog requests (BYE, re-INVITE, INFO)."""

    call_id: str
    local: str  # our From value for requests, with our tag
    remote: str  # their To value for requests, with their tag
    remote_target: str
    local_seq: int
    route_set: list[str] = field(default_factory=list)
    dest: Addr | None = None

    def next_cseq(self) -> int:
        self.local_seq += 1
        return self.local_seq


@dataclass
class _Registration:
    call_id: str
    from_tag: str
    cseq: int = 0
    challenge: Challenge | None = None


@dataclass
class _Origin:
    source: Addr
    last_response: bytes | None = None
    final_status: int | None = None


class _Stream:
    """One TCP or TLS connection: non-blocking socket, all I/O under one lock
    (an SSL object must not be used by two threads at once)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        sock.setblocking(False)

    def send(self, data: bytes, timeout: float = 5.0) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        with self.lock:
            while view:
                try:
                    sent = self.sock.send(view)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    if time.monotonic() > deadline:
                        raise SipTimeout("stream send blocked") from None
                    select.select([], [self.sock], [], 0.05)
                    continue
                view = view[sent:]

    def recv(self, timeout: float) -> bytes | None:
        """Whatever is readable within `timeout` (b"" if nothing); None at EOF."""
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            try:
                readable, _, _ = select.select([self.sock], [], [], timeout)
            except (OSError, ValueError):  # closed under us
                return None
            if not readable:
                return b""
        chunks: list[bytes] = []
        with self.lock:
            while True:
                try:
                    data = self.sock.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                except (ConnectionError, OSError):
                    return b"".join(chunks) if chunks else None
                if not data:
                    return b"".join(chunks) if chunks else None
                chunks.append(data)
                if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                    break
        return b"".join(chunks)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def split_stream(buf: bytearray) -> list[bytes]:
    """Cut complete messages (and CRLF keepalives) off the front of `buf`.

    RFC 3261 §18.3 framing by Content-Length; RFC 5626 §4.4.1 keepalives: a
    double CRLF is a ping, a lone CRLF a pong. Leaves a partial message in buf.
    """
    out: list[bytes] = []
    while buf:
        if buf.startswith(CRLF_PING):
            out.append(CRLF_PING)
            del buf[:4]
            continue
        if buf.startswith(CRLF_PONG):
            out.append(CRLF_PONG)
            del buf[:2]
            continue
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ParseError("stream header block too large")
            break
        match = _CONTENT_LENGTH.search(bytes(buf[: end + 2]))
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(buf) < total:
            break
        out.append(bytes(buf[:total]))
        del buf[:total]
    return out


class UA:
    """A synchronous test user agent with one socket (UDP) or one connection (TCP/TLS)."""

    def __init__(
        self,
        transport: str = "udp",
        server: Addr | None = None,
        local_host: str = "127.0.0.1",
        *,
        local_port: int = 0,
        user: str = "ua",
        tls_context: ssl.SSLContext | None = None,
        tls_server_name: str | None = None,
        retransmit: bool = True,
        auto_respond: Mapping[str, int] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        transport = transport.lower()
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"unknown transport {transport!r}")
        if transport != "udp" and server is None:
            raise ValueError(f"a {transport} UA needs a server to connect to")
        self.transport = transport
        self.server = server
        self.user = user
        self.retransmit = retransmit and transport == "udp"
        self.auto_respond = dict(auto_respond or {})
        self.closed_by_peer = False
        self.last_provisionals: list[Response] = []
        self.last_response: Response | None = None
        self.trace: list[tuple[float, str, Addr, bytes]] = []

        self._cond = threading.Condition()
        self._pending: dict[tuple[str, str], ClientTransaction] = {}
        self._invites: dict[tuple[str, int], ClientTransaction] = {}
        self._requests: list[Request] = []
        self._origins: dict[int, tuple[Request, _Origin]] = {}
        self._uas: dict[tuple[str, str], _Origin] = {}
        self._uas_tags: dict[tuple[str, str], str] = {}
        self._raw: list[tuple[bytes, Addr]] = []
        self._registrations: dict[tuple[str, str], _Registration] = {}
        self._nc: dict[str, int] = {}
        self._cseq = 0
        self._stop = threading.Event()
        self._udp: socket.socket | None = None
        self._stream: _Stream | None = None

        if transport == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((local_host, local_port))
            sock.settimeout(0.1)
            self._udp = sock
            self.local: Addr = sock.getsockname()[:2]
        else:
            assert server is not None
            raw = socket.create_connection(
                server, timeout=connect_timeout, source_address=(local_host, local_port)
            )
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn: socket.socket = raw
            if transport == "tls":
                ctx = tls_context
                if ctx is None:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                conn = ctx.wrap_socket(raw, server_hostname=tls_server_name or server[0])
            self.local = conn.getsockname()[:2]
            self._stream = _Stream(conn)
        self._reader = threading.Thread(
            target=self._read_loop, name=f"ua-{transport}-{self.local[1]}", daemon=True
        )
        self._reader.start()

    # -- addresses -----------------------------------------------------------

    @property
    def via_transport(self) -> str:
        return self.transport.upper()

    def contact_uri(self, user: str | None = None) -> str:
        who = f"{user}@" if user else ""
        param = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{who}{self.local[0]}:{self.local[1]}{param}"

    @property
    def contact(self) -> str:
        return self.contact_uri(self.user)

    def _default_uri(self) -> str:
        if self.server is None:
            raise ValueError("no server: give uri= and dest=")
        param = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.server[0]}:{self.server[1]}{param}"

    # -- low level -----------------------------------------------------------

    def _send(self, data: bytes, dest: Addr | None = None) -> None:
        target = dest or self.server
        self.trace.append((time.time(), "out", target or ("", 0), data))
        if self._udp is not None:
            if target is None:
                raise ValueError("no destination")
            self._udp.sendto(data, target)
        else:
            assert self._stream is not None
            self._stream.send(data)

    def send_raw(self, data: bytes, dest: Addr | None = None) -> None:
        """Send bytes as they are (UDP: to `dest` or the server; streams: on the connection)."""
        self._send(data, dest)

    def recv_raw(self, timeout: float = 5.0) -> bytes:
        """The next received unit nobody else claimed: unparseable data, keepalives,
        responses matching no request of ours. Raises SipTimeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._raw:
                self._wait(deadline, "raw data")
            return self._raw.pop(0)[0]

    def recv_response(self, timeout: float = 5.0) -> Response:
        """The next stray response (e.g. the answer to send_raw), parsed."""
        data = self.recv_raw(timeout)
        message = parse_message(data, stream=self._stream is not None)
        if not isinstance(message, Response):
            raise AssertionError(f"expected a response, got {data[:200]!r}")
        return message

    def _wait(self, deadline: float, what: str) -> None:
        """Wait on the condition (held) until notified or the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise SipTimeout(f"{self!r}: no {what} in time\n{self.format_trace(6)}")
        if self.closed_by_peer and self._stream is not None:
            raise ConnectionError(f"{self!r}: connection closed by peer while waiting for {what}")
        self._cond.wait(min(left, 0.5))

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until the peer closes our TCP/TLS connection."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.closed_by_peer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SipTimeout(f"{self!r}: connection still open")
                self._cond.wait(left)

    # -- reader ----------------------------------------------------------------

    def _read_loop(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            if self._udp is not None:
                try:
                    data, source = self._udp.recvfrom(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                self._on_unit(data, source[:2])
                continue
            assert self._stream is not None and self.server is not None
            chunk = self._stream.recv(0.1)
            if chunk is None:
                with self._cond:
                    self.closed_by_peer = True
                    self._cond.notify_all()
                return
            if not chunk:
                continue
            buf += chunk
            try:
                units = split_stream(buf)
            except ParseError:
                units = [bytes(buf)]
                buf.clear()
            for unit in units:
                self._on_unit(unit, self.server)

    def _on_unit(self, data: bytes, source: Addr) -> None:
        self.trace.append((time.time(), "in", source, data))
        if data in (CRLF_PING, CRLF_PONG) or not data.strip():
            if data == CRLF_PING and self._stream is not None:
                self._send(CRLF_PONG)
            self._queue_raw(data, source)
            return
        try:
            message = parse_message(data, stream=self._stream is not None)
            if isinstance(message, Response):
                key = (message.top_via.branch or "", message.cseq.method)
            else:
                key = (message.top_via.branch or "", message.method)
        except ParseError:
            self._queue_raw(data, source)
            return
        if isinstance(message, Response):
            self._on_response(message, key, data, source)
        else:
            self._on_request(message, key, source)

    def _queue_raw(self, data: bytes, source: Addr) -> None:
        with self._cond:
            self._raw.append((data, source))
            self._cond.notify_all()

    def _on_response(self, resp: Response, key: tuple[str, str], data: bytes, source: Addr) -> None:
        ack: bytes | None = None
        with self._cond:
            tx = self._pending.get(key)
            if tx is None:
                self._raw.append((data, source))
                self._cond.notify_all()
                return
            if resp.status < 200:
                if tx.final is None:
                    tx.provisionals.append(resp)
            elif tx.final is None:
                tx.final = resp
            else:
                tx.retransmitted_finals += 1
            if tx.method == "INVITE" and resp.status >= 300:
                ack = serialise(self._ack_for_error(tx.request, resp))
            self._cond.notify_all()
        if ack is not None:
            self._send(ack, tx.dest)

    def _on_request(self, req: Request, key: tuple[str, str], source: Addr) -> None:
        with self._cond:
            if req.method == "ACK":
                invite = self._uas.get((key[0], "INVITE"))
                if invite is not None and invite.final_status and invite.final_status >= 300:
                    return  # the ACK of our error response: part of that transaction
            seen = self._uas.get(key)
            if seen is None:
                origin = _Origin(source)
                if req.method != "ACK":
                    self._uas[key] = origin
                self._origins[id(req)] = (req, origin)
                self._requests.append(req)
                self._cond.notify_all()
        if seen is not None:
            # A retransmission: answer it with our last response, if any yet.
            if seen.last_response is not None:
                self._send(seen.last_response, source)
        elif req.method in self.auto_respond:
            self.respond(req, self.auto_respond[req.method])

    # -- client side --------------------------------------------------------

    def next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def build_request(
        self,
        method: str,
        uri: str | None = None,
        headers: HeaderArg = None,
        body: bytes = b"",
        call_id: str | None = None,
        cseq: int | None = None,
        dialog: Dialog | None = None,
        branch: str | None = None,
    ) -> Request:
        """A request with Via/From/To/Call-ID/CSeq/Max-Forwards filled in;
        `headers` replace (mapping) or add to (pairs) the defaults."""
        h = Headers()
        host, port = self.local
        branch = branch or new_branch()
        h.add("Via", f"SIP/2.0/{self.via_transport} {host}:{port};branch={branch};rport")
        h.add("Max-Forwards", "70")
        if dialog is not None:
            uri = uri or dialog.remote_target
            h.add("From", dialog.local)
            h.add("To", dialog.remote)
            h.add("Call-ID", dialog.call_id)
            h.add("CSeq", f"{cseq if cseq is not None else dialog.next_cseq()} {method}")
            for route in dialog.route_set:
                h.add("Route", route)
        else:
            uri = uri or self._default_uri()
            h.add("From", f"<sip:{self.user}@{host}>;tag={new_tag()}")
            h.add("To", f"<{uri}>")
            h.add("Call-ID", call_id or new_call_id(host))
            h.add("CSeq", f"{cseq if cseq is not None else self.next_cseq()} {method}")
        if method in ("INVITE", "SUBSCRIBE", "REFER", "UPDATE"):
            h.add("Contact", f"<{self.contact}>")
        h.add("User-Agent", USER_AGENT)
        _apply_headers(h, headers)
        return Request(method, uri, h, body)

    def send_request(self, request: Request, dest: Addr | None = None) -> ClientTransaction:
        """Send without waiting; the transaction collects its responses."""
        data = serialise(request)
        dest = dest or self.server
        if dest is None:
            raise ValueError("no destination for the request")
        tx = ClientTransaction(request, data, dest, sent_at=time.monotonic())
        with self._cond:
            self._pending[(tx.branch, request.method)] = tx
            if request.method == "INVITE":
                self._invites[(request.call_id, request.cseq.seq)] = tx
        self._send(data, dest)
        return tx

    def wait_response(
        self, tx: ClientTransaction, timeout: float = 5.0, final: bool = True
    ) -> Response:
        """The final response (or, final=False, the first response of any kind)."""
        deadline = time.monotonic() + timeout
        interval = T1
        next_retx = tx.sent_at + interval
        while True:
            resend = False
            with self._cond:
                if tx.final is not None:
                    return tx.final
                if not final and tx.provisionals:
                    return tx.provisionals[-1]
                if self.closed_by_peer and self._stream is not None:
                    raise ConnectionError(
                        f"{self!r}: connection closed before the response to {tx.method}\n"
                        f"{self.format_trace(6)}"
                    )
                now = time.monotonic()
                invite_answered = tx.method == "INVITE" and tx.provisionals
                if self.retransmit and now >= next_retx and not invite_answered:
                    resend = True
                    interval = min(interval * 2, T2) if tx.method != "INVITE" else interval * 2
                    next_retx = now + interval
                elif now >= deadline:
                    raise SipTimeout(
                        f"{self!r}: no {'final ' if final else ''}response to {tx.method} "
                        f"within {timeout} s\n{self.format_trace(6)}"
                    )
                else:
                    wake = deadline
                    if self.retransmit and not invite_answered:
                        wake = min(wake, next_retx)
                    self._cond.wait(max(0.0, wake - now))
            if resend:
                self._send(tx.data, tx.dest)

    def request(
        self,
        method: str,
        uri: str | None = None,
        headers: HeaderArg = None,
        body: bytes = b"",
        call_id: str | None = None,
        cseq: int | None = None,
        timeout: float = 5.0,
        *,
        dialog: Dialog | None = None,
        dest: Addr | None = None,
    ) -> Response:
        """Send a request and wait for its final response (provisionals in
        `.last_provisionals`)."""
        req = self.build_request(method, uri, headers, body, call_id, cseq, dialog)
        tx = self.send_request(req, dest or (dialog.dest if dialog else None))
        resp = self.wait_response(tx, timeout)
        self.last_provisionals = list(tx.provisionals)
        self.last_response = resp
        return resp

    def _ack_for_error(self, invite: Request, resp: Response) -> Request:
        """RFC 3261 §17.1.1.3: same branch, To from the response."""
        h = Headers()
        h.add("Via", invite.headers.get_all("Via")[0])
        h.add("Max-Forwards", "70")
        h.add("From", invite.headers.get("From") or "")
        h.add("To", resp.headers.get("To") or "")
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq.seq} ACK")
        for route in invite.headers.get_all("Route"):
            h.add("Route", route)
        return Request("ACK", invite.uri, h)

    def dialog_from_response(self, resp: Response) -> Dialog:
        """The dialog a 2xx (or 1xx with To tag) to our INVITE created (UAC side)."""
        with self._cond:
            tx = self._invites.get((resp.call_id, resp.cseq.seq))
        if tx is None:
            raise KeyError("no INVITE of ours matches this response")
        contacts = resp.contacts
        target = contacts[0].uri_text if contacts else tx.request.uri
        routes = list(reversed(resp.headers.values("Record-Route")))
        return Dialog(
            call_id=resp.call_id,
            local=tx.request.headers.get("From") or "",
            remote=resp.headers.get("To") or "",
            remote_target=target,
            local_seq=tx.request.cseq.seq,
            route_set=routes,
            dest=tx.dest,
        )

    def ack(self, resp: Response, headers: HeaderArg = None, body: bytes = b"") -> Request:
        """ACK a 2xx to our INVITE (a new transaction; RFC 3261 §13.2.2.4)."""
        dialog = self.dialog_from_response(resp)
        req = self.build_request(
            "ACK", headers=headers, body=body, dialog=dialog, cseq=resp.cseq.seq
        )
        self._send(serialise(req), dialog.dest)
        return req

    def invite(
        self,
        uri: str,
        body: bytes = b"",
        headers: HeaderArg = None,
    ) -> ClientTransaction:
        """Send an INVITE (no waiting): wait_response(tx) for its outcome."""
        h: list[tuple[str, str]] = []
        if body:
            h.append(("Content-Type", "application/sdp"))
        req = self.build_request("INVITE", uri, h, body)
        _apply_headers(req.headers, headers)
        return self.send_request(req)

    def cancel(self, tx: ClientTransaction, timeout: float = 5.0) -> Response:
        """CANCEL our pending INVITE (same branch, RFC 3261 §9.1); returns the CANCEL's reply."""
        invite = tx.request
        h = Headers()
        h.add("Via", invite.headers.get_all("Via")[0])
        h.add("Max-Forwards", "70")
        h.add("From", invite.headers.get("From") or "")
        h.add("To", invite.headers.get("To") or "")
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq.seq} CANCEL")
        for route in invite.headers.get_all("Route"):
            h.add("Route", route)
        cancel = Request("CANCEL", invite.uri, h)
        ctx = self.send_request(cancel, tx.dest)
        return self.wait_response(ctx, timeout)

    # -- REGISTER ---------------------------------------------------------------

    def register(
        self,
        user: str,
        domain: str,
        password: str | None = None,
        expires: int | None = None,
        contact: str | None = None,
        call_id: str | None = None,
        cseq: int | None = None,
        instance: str | None = None,
        reg_id: int | str | None = None,
        algorithm: str = "MD5",
        extra_headers: HeaderArg = None,
        auth: bool = True,
        timeout: float = 5.0,
        *,
        preauth: bool = False,
        registrar: str | None = None,
    ) -> Response:
        """REGISTER `user@domain`, answering one 401/407 challenge when a password
        is given (the challenge with the requested algorithm among those offered;
        if none offers it, the 401 is returned).

        Call-ID and CSeq are kept per (user, domain): calling again is a
        refresh, unless `call_id` starts a new registration. `contact` replaces
        the default Contact value ("*" for all, "" for none: a query);
        `preauth` reuses the last challenge's nonce with the next nc.
        """
        key = (user, domain)
        reg = self._registrations.get(key)
        if reg is None or call_id is not None:
            reg = _Registration(call_id or new_call_id(self.local[0]), new_tag())
            self._registrations[key] = reg
        ruri = registrar or f"sip:{domain}"
        h = Headers()
        h.add("From", f"<sip:{user}@{domain}>;tag={reg.from_tag}")
        h.add("To", f"<sip:{user}@{domain}>")
        contact_value = self._register_contact(user, contact, instance, reg_id)
        if contact_value:
            h.add("Contact", contact_value)
        if expires is not None:
            h.add("Expires", str(expires))
        if reg_id is not None:
            h.add("Supported", "outbound, path")
        _apply_headers(h, extra_headers)

        def attempt(seq: int, authz: tuple[str, str] | None) -> Response:
            headers = h.copy()
            if authz is not None:
                headers.set(*authz)
            reg.cseq = seq
            return self.request(
                "REGISTER",
                ruri,
                _as_mapping(headers),
                call_id=reg.call_id,
                cseq=seq,
                timeout=timeout,
            )

        seq = cseq if cseq is not None else reg.cseq + 1
        authz = None
        if preauth and password is not None and reg.challenge is not None:
            authz = self._answer(reg.challenge, "REGISTER", ruri, user, password)
        resp = attempt(seq, authz)
        if resp.status in (401, 407) and auth and password is not None:
            challenge = self.choose_challenge(resp, algorithm)
            if challenge is None:
                return resp
            reg.challenge = challenge
            resp = attempt(reg.cseq + 1, self._answer(challenge, "REGISTER", ruri, user, password))
        self.last_response = resp
        return resp

    def _register_contact(
        self, user: str, contact: str | None, instance: str | None, reg_id: int | str | None
    ) -> str:
        if contact == "":
            return ""
        if contact == "*":
            return "*"
        value = contact if contact is not None else f"<{self.contact_uri(user)}>"
        if instance is not None:
            urn = instance if instance.startswith("<") else f"<{instance}>"
            value += f';+sip.instance="{urn}"'
        if reg_id is not None:
            value += f";reg-id={reg_id}"
        return value

    @staticmethod
    def choose_challenge(resp: Response, algorithm: str = "MD5") -> Challenge | None:
        for challenge in challenges_in(resp):
            if challenge.algorithm.upper() == algorithm.upper():
                return challenge
        return None

    def _answer(
        self, challenge: Challenge, method: str, uri: str, user: str, password: str
    ) -> tuple[str, str]:
        nc = self._nc.get(challenge.nonce, 0) + 1
        self._nc[challenge.nonce] = nc
        value = authorization(
            challenge, method=method, uri=uri, username=user, password=password, nc=nc
        )
        return challenge.authorization_header, value

    def authorization(
        self, challenge: Challenge, method: str, uri: str, user: str, password: str
    ) -> tuple[str, str]:
        """(header name, value) answering `challenge`, with this UA's next nc for its nonce."""
        return self._answer(challenge, method, uri, user, password)

    # -- server side ------------------------------------------------------------

    def expect_request(self, method: str | None = None, timeout: float = 5.0) -> Request:
        """The oldest unclaimed request sent to us (of `method`, if given)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, req in enumerate(self._requests):
                    if method is None or req.method == method:
                        return self._requests.pop(i)
                self._wait(deadline, f"{method or 'any'} request")

    def assert_no_request(self, method: str | None = None, within: float = 1.0) -> None:
        """Fail if a request (of `method`) arrives within `within` seconds."""
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                for req in self._requests:
                    if method is None or req.method == method:
                        raise AssertionError(f"unexpected request {req!r}\n{self.format_trace(6)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def pending_requests(self) -> list[Request]:
        with self._cond:
            return list(self._requests)

    def source_of(self, request: Request) -> Addr:
        with self._cond:
            return self._origins[id(request)][1].source

    def respond(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        headers: HeaderArg = None,
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> Response:
        """Answer a request we received (to where it came from). The To tag is
        stable per dialog unless given; 18x/2xx to INVITE get our Contact."""
        with self._cond:
            entry = self._origins.get(id(request))
        if entry is None:
            raise KeyError("not a request this UA received")
        origin = entry[1]
        if to_tag is None and status > 100:
            dialog_key = (request.call_id, request.from_.tag or "")
            to_tag = self._uas_tags.setdefault(dialog_key, new_tag())
        resp = response_for(request, status, reason, to_tag=to_tag, body=body)
        if request.method == "INVITE" and 100 < status < 300:
            resp.headers.add("Contact", f"<{self.contact}>")
        if body and "content-type" not in resp.headers:
            resp.headers.add("Content-Type", "application/sdp")
        _apply_headers(resp.headers, headers)
        data = serialise(resp)
        with self._cond:
            origin.last_response = data
            if status >= 200:
                origin.final_status = status
        self._send(data, origin.source)
        return resp

    def dialog_from_request(self, request: Request, response: Response) -> Dialog:
        """The dialog our response (with To tag) to an INVITE created (UAS side)."""
        contacts = request.contacts
        with self._cond:
            source = self._origins[id(request)][1].source
        return Dialog(
            call_id=request.call_id,
            local=response.headers.get("To") or "",
            remote=request.headers.get("From") or "",
            remote_target=contacts[0].uri_text if contacts else request.uri,
            local_seq=secrets.randbelow(10000) + 1,
            route_set=list(request.headers.values("Record-Route")),
            dest=source,
        )

    # -- lifecycle / debugging ----------------------------------------------------

    def format_trace(self, last: int = 20) -> str:
        lines = []
        for stamp, direction, addr, data in self.trace[-last:]:
            first = data.split(b"\r\n", 1)[0][:120].decode("latin-1")
            lines.append(f"  {stamp:.3f} {direction} {addr[0]}:{addr[1]} {first!s}")
        return "trace:\n" + "\n".join(lines) if lines else "trace: (nothing)"

    def close(self) -> None:
        # Stop the reader first (it polls every 0.1 s), then close the socket
        # under it: closing first would hand select() a dead descriptor.
        self._stop.set()
        if self._reader is not threading.current_thread():
            self._reader.join(2.0)
        if self._udp is not None:
            self._udp.close()
        if self._stream is not None:
            self._stream.close()

    def __enter__(self) -> UA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<UA {self.transport} {self.local[0]}:{self.local[1]} -> {self.server}>"


def _as_mapping(headers: Headers) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name, []).append(value)
    return out


def _apply_headers(target: Headers, headers: HeaderArg) -> None:
    """A mapping replaces each named header (a list value gives several lines);
    a sequence of pairs adds lines in order."""
    if not headers:
        return
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            target.remove(name)
            values: Iterable[str] = [value] if isinstance(value, str) else value
            for v in values:
                target.add(name, v)
    else:
        for name, value in headers:
            target.add(name, value)
