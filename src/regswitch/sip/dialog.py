"""Dialog state (RFC 3261 §12): identity, route set, remote target, CSeq spaces,
and the in-dialog requests built from them."""

from __future__ import annotations

from dataclasses import dataclass, field

from regswitch.sip.headers import parse_name_addr
from regswitch.sip.message import Headers, Request, Response


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    local_uri: str  # name-addr of our side, without tag (From of our requests)
    remote_uri: str  # name-addr of the peer, without tag (To of our requests)
    remote_target: str  # URI our requests go to (the peer's Contact)
    local_contact: str  # our Contact header value
    remote_tag: str | None = None
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int | None = None
    # the peer's tag and the route set are final: UAS from the INVITE, UAC from the first 2xx
    confirmed: bool = False
    # UAC: the Route set the INVITE was sent with (a binding's Path); used when no
    # Record-Route comes back, as that is where the binding is reachable
    initial_routes: list[str] = field(default_factory=list)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_contact: str) -> Dialog:
        """The dialog a received INVITE creates on our side (§12.1.1)."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            local_uri=_without_tag(request.headers.get("to") or ""),
            remote_uri=_without_tag(request.headers.get("from") or ""),
            remote_target=_contact_uri(request) or request.from_.uri_text,
            local_contact=local_contact,
            remote_tag=request.from_.tag,
            route_set=list(request.headers.values("record-route")),
            remote_cseq=request.cseq.seq,
            confirmed=True,
        )

    @classmethod
    def as_uac(cls, request: Request, local_tag: str, local_contact: str) -> Dialog:
        """The dialog an INVITE we send will create; completed by `confirm`."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            local_uri=_without_tag(request.headers.get("from") or ""),
            remote_uri=_without_tag(request.headers.get("to") or ""),
            remote_target=request.uri,
            local_contact=local_contact,
            route_set=list(request.headers.values("route")),
            local_cseq=request.cseq.seq,
            initial_routes=list(request.headers.values("route")),
        )

    def update_from_response(self, response: Response) -> None:
        """Take the peer's tag, target and (reversed) Record-Route from a 1xx/2xx to our
        INVITE (§12.1.2). The first 2xx decides the dialog, even when an earlier 1xx
        came with another tag (a fork further on, §13.2.2.4); after it, responses
        with other tags belong to other dialogs (see `for_response`) and change
        nothing here."""
        tag = response.to.tag
        if 200 <= response.status < 300 and not self.confirmed:
            self.confirmed = True
            self.remote_tag = tag
            self.route_set = self._routes_from(response)  # recomputed from the 2xx
        elif self.remote_tag is None:
            self.remote_tag = tag
            self.route_set = self._routes_from(response)
        if tag != self.remote_tag:
            return
        target = _contact_uri(response)
        if target:
            self.remote_target = target

    def _routes_from(self, response: Response) -> list[str]:
        record_route = response.headers.values("record-route")
        return list(reversed(record_route)) if record_route else list(self.initial_routes)

    def for_response(self, response: Response) -> Dialog:
        """The other dialog a 2xx with a tag of its own creates from the same INVITE
        (§13.2.2.4): enough to ACK it and hang it up."""
        return Dialog(
            call_id=self.call_id,
            local_tag=self.local_tag,
            local_uri=self.local_uri,
            remote_uri=self.remote_uri,
            remote_target=_contact_uri(response) or self.remote_target,
            local_contact=self.local_contact,
            remote_tag=response.to.tag,
            route_set=self._routes_from(response),
            local_cseq=response.cseq.seq,
            confirmed=True,
            initial_routes=list(self.initial_routes),
        )

    def update_target(self, request: Request) -> None:
        """A target refresh request (re-INVITE, UPDATE) from the peer (§12.2.2)."""
        target = _contact_uri(request)
        if target:
            self.remote_target = target

    def accepts_remote_cseq(self, cseq: int) -> bool:
        """In-order check of a request from the peer (§12.2.2); remembers it."""
        if self.remote_cseq is not None and cseq <= self.remote_cseq:
            return False
        self.remote_cseq = cseq
        return True

    def request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """A new in-dialog request (ACK passes the INVITE's `cseq`)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        headers = Headers()
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and ";lr" not in routes[0]:
            # strict router (§12.2.1.1): it goes in the R-URI, the target last
            uri = parse_name_addr(routes[0]).uri_text
            routes = [*routes[1:], f"<{self.remote_target}>"]
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{self.local_uri};tag={self.local_tag}")
        tag = self.remote_tag
        headers.add("To", self.remote_uri if tag is None else f"{self.remote_uri};tag={tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER", "NOTIFY"):
            headers.add("Contact", self.local_contact)
        if content_type and body:
            headers.add("Content-Type", content_type)
        return Request(method, uri, headers, body)

    def ack(self, invite_cseq: int, body: bytes = b"", content_type: str | None = None) -> Request:
        return self.request("ACK", body, content_type, cseq=invite_cseq)


def _without_tag(value: str) -> str:
    """A From/To value with its tag parameter removed (other params kept)."""
    na = parse_name_addr(value)
    params = "".join(
        f";{k}" if v is None else f";{k}={v}" for k, v in na.params.items() if k != "tag"
    )
    display = f"{na.display} " if na.display else ""
    return f"{display}<{na.uri_text}>{params}"


def _contact_uri(message: Request | Response) -> str | None:
    values = message.headers.values("contact")
    if not values or values[0].strip() == "*":
        return None
    return parse_name_addr(values[0]).uri_text
