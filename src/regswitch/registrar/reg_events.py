"""The `reg` event package (RFC 3680, RFC 6665): who is registered on an account, live.

A watcher sends `SUBSCRIBE` with `Event: reg` to an account's AOR,
authenticated as that account (digest, `407`), or from
`REG_EVENT_TRUSTED_NETWORKS` (an application server). It gets `200` with
`Expires`, then a `NOTIFY` with the full `application/reginfo+xml` state, then
a partial one (version + 1) on every change of the account's bindings. NOTIFYs
go through the subscriber's flow (the address and connection its SUBSCRIBE
came from). Subscriptions live in this node's memory: a restart ends them and
watchers subscribe again, as RFC 6665 has them do when a refresh gets `481`.

Refusals: `489` another event package, `423` too short, `403` wrong
credentials or over the limits, `481` a refresh of an unknown subscription.

`admit` is the pure decision; `RegEvents` the thin I/O shell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.networks import IPNetwork, in_networks, parse_networks
from regswitch.common.params import TEXT_CHECKS, Params
from regswitch.common.periodic import Periodic
from regswitch.registrar import reginfo
from regswitch.registrar.contacts import quote_safe, warn_agent
from regswitch.registrar.service import Registrar
from regswitch.sip import events as sipev
from regswitch.sip.dialog import Dialog
from regswitch.sip.flow import Flow
from regswitch.storage.base import EventRecord
from regswitch.transport.endpoint import Endpoint, IncomingRequest, our_contact

log = logging.getLogger("regswitch.reg_events")

DEFAULT_EXPIRES = 3600  # RFC 3680 §4.4


def networks_error(text: str) -> str | None:
    if text.strip().lower() == "none":
        return None
    try:
        parse_networks(text.split(","))
    except ValueError as exc:
        return str(exc)
    return None


TEXT_CHECKS["REG_EVENT_TRUSTED_NETWORKS"] = networks_error


@dataclass(slots=True)
class Limits:
    per_account: int
    total: int
    min_expires: int
    max_expires: int


@dataclass(slots=True)
class Refusal:
    status: int
    reason: str
    headers: dict[str, str]


def admit(
    event: str | None,
    expires: int | None,
    account_count: int,
    total_count: int,
    limits: Limits,
    accept: str | None = None,
) -> Refusal | int:
    """A new subscription: the refusal, or the granted expiry (0: a fetch)."""
    package = (event or "").split(";", 1)[0].strip().lower()
    if package != "reg":
        return Refusal(489, "Bad Event", {"Allow-Events": "reg"})
    if accept is not None and not _accepts_reginfo(accept):
        return Refusal(406, "Not Acceptable", {"_warning": f"only {reginfo.CONTENT_TYPE}"})
    granted = DEFAULT_EXPIRES if expires is None else expires
    if 0 < granted < limits.min_expires:
        return Refusal(423, "Interval Too Brief", {"Min-Expires": str(limits.min_expires)})
    granted = min(granted, limits.max_expires)
    if granted and account_count >= limits.per_account:
        return Refusal(403, "Forbidden", {"_warning": "too many reg subscriptions to the account"})
    if granted and total_count >= limits.total:
        return Refusal(403, "Forbidden", {"_warning": "too many reg subscriptions on this node"})
    return granted


def _accepts_reginfo(accept: str) -> bool:
    """RFC 3680 §4.3: the body is application/reginfo+xml; an Accept without it
    (or a wildcard covering it) cannot be served."""
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(types & {reginfo.CONTENT_TYPE, "application/*", "*/*"}) or types == {""}


@dataclass(slots=True)
class Subscription:
    aor: str
    dialog: Dialog
    flow: Flow
    event: str  # the Event header value, echoed in NOTIFYs (with its id parameter)
    expires_at: float
    version: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.dialog.call_id, self.dialog.local_tag)

    def next_version(self) -> int:
        version = self.version
        self.version += 1
        return version


class RegEvents:
    def __init__(
        self,
        *,
        endpoint: Endpoint,
        registrar: Registrar,
        params: Params,
        events: EventBus,
        clock: Callable[[], float],
        advertised_host: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.registrar = registrar
        self.params = params
        self.events = events
        self.clock = clock
        self.advertised_host = advertised_host
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._by_aor: dict[str, set[tuple[str, str]]] = {}
        self._trusted: tuple[str, tuple[IPNetwork, ...]] = ("", ())
        self._expirer = Periodic(1.0, self.expire_due, "reg-event expiry")
        self.results: dict[str, int] = {}

    def install(self) -> None:
        self.endpoint.route("SUBSCRIBE", self.handle)
        self.events.listeners.append(self.on_event)
        self._expirer.start()

    async def stop(self) -> None:
        await self._expirer.stop()

    def _count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1

    def limits(self) -> Limits:
        values = self.params.values
        return Limits(
            values["REG_EVENT_MAX_PER_ACCOUNT"],
            values["REG_EVENT_MAX_TOTAL"],
            values["REG_EVENT_MIN_EXPIRES"],
            values["REG_EVENT_MAX_EXPIRES"],
        )

    def _is_trusted(self, ip: str) -> bool:
        text = self.params.values["REG_EVENT_TRUSTED_NETWORKS"]
        if text != self._trusted[0]:
            nets = () if text.strip().lower() == "none" else parse_networks(text.split(","))
            self._trusted = (text, nets)
        return bool(self._trusted[1]) and in_networks(ip, self._trusted[1])

    def of(self, aor: str) -> list[Subscription]:
        return [self._subs[k] for k in self._by_aor.get(aor, ())]

    def __len__(self) -> int:
        return len(self._subs)

    # --- SUBSCRIBE ----------------------------------------------------------------
    def handle(self, stx: IncomingRequest) -> None:
        request = stx.request
        if request.to.tag:
            self._in_dialog(stx)
            return
        registrar = self.registrar
        aor = registrar.aor_of(request.to.uri)
        decision = admit(
            request.headers.get("event"),
            request.expires,
            len(self._by_aor.get(aor or "", ())),
            len(self._subs),
            self.limits(),
            request.headers.get("accept"),
        )
        if isinstance(decision, Refusal) and decision.status in (406, 489):
            self._refuse(stx, decision)
            return
        if (
            aor is None
            or registrar.accounts.get(aor) is None
            or not self._is_trusted(stx.flow.remote[0])
        ):
            # authenticated as the watched account, as a caller is (407, 403)
            aor = registrar.authenticate_caller(stx, request.to.uri)
            if aor is None:
                return
        if isinstance(decision, Refusal):
            self._refuse(stx, decision)
            return
        self._accept(stx, aor, decision, self.clock())

    def _refuse(self, stx: IncomingRequest, refusal: Refusal) -> None:
        self._count(f"refused-{refusal.status}")
        headers = dict(refusal.headers)
        warning = headers.pop("_warning", None)
        if warning:
            host = warn_agent(stx.flow.local[0], self.registrar.default_domain)
            headers["Warning"] = f'399 {host} "{quote_safe(warning)}"'
        stx.respond(refusal.status, refusal.reason, headers)

    def _accept(self, stx: IncomingRequest, aor: str, expires: int, now: float) -> None:
        request = stx.request
        response = stx.response(200)
        assert stx.to_tag is not None
        contact = our_contact(stx.flow, self.advertised_host)
        dialog = Dialog.as_uas(request, stx.to_tag, contact)
        response.headers.add("Expires", str(expires))
        response.headers.add("Contact", contact)
        stx.send(response)
        sub = Subscription(
            aor, dialog, stx.flow, request.headers.get("event") or "reg", now + expires
        )
        self._count("accepted" if expires else "fetched")
        if expires:
            self._subs[sub.key] = sub
            self._by_aor.setdefault(aor, set()).add(sub.key)
            self._notify(sub, self._full(sub, now), f"active;expires={expires}")
        else:
            self._notify(sub, self._full(sub, now), "terminated;reason=timeout")

    def _in_dialog(self, stx: IncomingRequest) -> None:
        """A refresh (or `Expires: 0`, an unsubscribe) of a subscription: the full
        dialog and the subscriber's address (IP and port) must match, so nobody
        but the subscriber ends or redirects it."""
        request = stx.request
        key = (request.call_id, request.to.tag or "")
        sub = self._subs.get(key)
        if (
            sub is None
            or request.from_.tag != sub.dialog.remote_tag
            or stx.flow.remote != sub.flow.remote  # a new address subscribes anew
            or not sub.dialog.accepts_remote_cseq(request.cseq.seq)
        ):
            self._count("refused-481")
            stx.respond(481, "Subscription Does Not Exist")
            return
        limits = self.limits()
        decision = admit(request.headers.get("event"), request.expires, 0, 0, limits)
        if isinstance(decision, Refusal):
            self._refuse(stx, decision)
            return
        now = self.clock()
        sub.flow = stx.flow  # the same address, perhaps a new connection
        response = stx.response(200)
        response.headers.add("Expires", str(decision))
        response.headers.add("Contact", sub.dialog.local_contact)
        stx.send(response)
        if decision == 0:
            self._count("unsubscribed")
            self._end(sub, "terminated;reason=timeout", self._full(sub, now))
            return
        self._count("refreshed")
        sub.expires_at = now + decision
        self._notify(sub, self._full(sub, now), f"active;expires={decision}")

    # --- NOTIFY -------------------------------------------------------------------
    def _full(self, sub: Subscription, now: float) -> bytes:
        live = [b for b in self.registrar.location.of(sub.aor) if b.expires_at > now]
        contacts = [reginfo.active(b, now) for b in live]
        return reginfo.document(sub.aor, sub.next_version(), True, contacts, len(live))

    def _notify(self, sub: Subscription, body: bytes | None, state: str) -> None:
        request = sub.dialog.request("NOTIFY", body or b"", reginfo.CONTENT_TYPE if body else None)
        request.headers.add("Event", sub.event)
        request.headers.add("Subscription-State", state)
        key = sub.key

        def on_response(event: sipev.Event) -> None:
            if isinstance(event, sipev.ResponseReceived):
                status = event.response.status
                if status >= 300:  # by class: the label set stays small
                    self._count(f"notify-{status // 100}xx")
                if status in (404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604):
                    self._drop(key)  # RFC 6665 §4.2.2: the subscription is gone
            elif isinstance(event, sipev.TransactionTimedOut):
                self._count("notify-timeout")
                self._drop(key)

        self._count("notify")
        self.endpoint.send_request(request, sub.flow, on_response)

    def _drop(self, key: tuple[str, str]) -> Subscription | None:
        sub = self._subs.pop(key, None)
        if sub is not None:
            keys = self._by_aor.get(sub.aor)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_aor[sub.aor]
        return sub

    def _end(self, sub: Subscription, state: str, body: bytes | None) -> None:
        self._drop(sub.key)
        self._notify(sub, body, state)

    def on_event(self, record: EventRecord) -> None:
        """A registrar event: a partial document to the account's watchers."""
        aor = record.account
        if not aor or aor not in self._by_aor:
            return
        if record.type == ev.ACCOUNT_CHANGED and record.details.get("action") == "deleted":
            for sub in self.of(aor):
                self._end(sub, "terminated;reason=noresource", None)
            return
        now = self.clock()
        contact = reginfo.change(record.type, record.details, record.id, now)
        if contact is None:
            return
        live = sum(1 for b in self.registrar.location.of(aor) if b.expires_at > now)
        for sub in self.of(aor):
            body = reginfo.document(aor, sub.next_version(), False, [contact], live)
            left = max(1, int(sub.expires_at - now + 0.5))
            self._notify(sub, body, f"active;expires={left}")

    def expire_due(self) -> int:
        now = self.clock()
        due = [s for s in self._subs.values() if s.expires_at <= now]
        for sub in due:
            self._end(sub, "terminated;reason=timeout", self._full(sub, now))
        return len(due)

    def close(self) -> None:
        """Shutting down: tell every watcher its subscription ends."""
        for sub in list(self._subs.values()):
            self._end(sub, "terminated;reason=noresource", None)
