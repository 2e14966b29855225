"""Every answer the registrar sends to a REGISTER (and the challenges of
INVITEs it authenticates): the 200 with the bindings, the policy's rejection,
challenges, and the refusals of failed checks, each with the counter and the
event that record it for the operator (docs/behaviour.md §3)."""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Callable

from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.params import Params
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard, Notice
from regswitch.registrar.auth import Authenticator
from regswitch.registrar.bindings import Location
from regswitch.registrar.contacts import contact_line, quote_safe, warn_agent
from regswitch.registrar.kick_guard import KickGuard
from regswitch.registrar.policy import ContactRequest, Decision, RegisterRequest
from regswitch.transport.endpoint import IncomingRequest

REJECT_REASON = "Registration Replace Disabled"
FLAP_REASON = "Registration Flapping"
# the one Warning text of every authentication failure (no account enumeration)
AUTH_FAILED_TEXT = "Authentication failed"


class Replies:
    def __init__(
        self,
        *,
        location: Location,
        params: Params,
        events: EventBus,
        auth: Authenticator,
        flood: FloodGuard,
        flapping: FlapDetector,
        guard: KickGuard,
        results: Counter[str],
        clock: Callable[[], float],
        default_domain: str,
    ) -> None:
        self.location = location
        self.params = params
        self.events = events
        self.auth = auth
        self.flood = flood
        self.flapping = flapping
        self.guard = guard
        self.results = results  # the registrar's outcome counters (/metrics)
        self.clock = clock
        self.default_domain = default_domain
        self._date_cache: tuple[int, str] = (0, "")

    def ok(self, stx: IncomingRequest, req: RegisterRequest, extra: dict[str, str]) -> None:
        response = stx.response(200)
        headers = response.headers
        now = self.clock()
        for b in self.location.of(req.aor):
            if b.expires_at > now:
                headers.add("Contact", contact_line(b, now))
        for path in req.path:
            headers.add("Path", path)
        headers.add("Date", self._date(now))
        for name, value in extra.items():
            headers.add(name, value)
        stx.send(response)

    def reject(
        self,
        stx: IncomingRequest,
        req: RegisterRequest,
        decision: Decision,
        contacts: list[ContactRequest] | None,
    ) -> None:
        now = req.now
        conflict = decision.conflict
        until = min((b.expires_at for b in conflict), default=now)
        retry_after = max(1, int(until - now + 0.999))
        status = int(self.params.values["REGISTER_REPLACE_REJECT_CODE"])
        first = conflict[0] if conflict else None
        where = f"{first.contact} ({first.source})" if first else "another device"
        stamp = email.utils.formatdate(until, usegmt=True)
        if decision.flapping:
            reason = FLAP_REASON
            holds = (self.flapping.held_until(req.aor), self.guard.held_until(req.aor))
            held = max((h for h in holds if h is not None), default=now)
            text = (
                f"{req.aor} is flapping between devices; replacements are held until "
                f"{email.utils.formatdate(held, usegmt=True)}"
            )
            retry_after = max(1, int(held - now + 0.999))
            self.results["rejected-flapping"] += 1
        else:
            reason = REJECT_REASON
            text = (
                f"{req.aor} is already registered from {where} until {stamp}; "
                f"registration replace is off"
            )
            self.results["rejected-replace"] += 1
        new_contact = contacts[0].uri if contacts else None
        source = f"{req.transport}:{req.source_ip}:{req.source_port}"
        self.events.emit(
            ev.Rejected(
                account=req.aor,
                source=source,
                status=status,
                reason=reason,
                new_contact=new_contact,
                old_contact=first.contact if first else None,
                old_source=first.source if first else None,
                retry_after=retry_after,
                flapping=decision.flapping,
                warning=text,  # what the refused device was told (an account's history shows it)
            )
        )
        host = warn_agent(stx.flow.local[0], self.default_domain)
        stx.respond(
            status,
            reason,
            {
                "Warning": f'399 {host} "{quote_safe(text)}"',
                "Retry-After": str(retry_after),
            },
        )

    def challenge(
        self,
        stx: IncomingRequest,
        realm: str,
        stale: bool = False,
        proxy: bool = False,
        account: str | None = None,
    ) -> None:
        ip = stx.flow.remote[0]
        now = self.clock()
        flood = self.flood
        # a stale challenge answers credentials: only a request without any
        # counts toward the "challenges unanswered" trace
        if account and not stale:
            notice = flood.challenged(ip, account, now)
        else:
            notice = flood.unauthenticated(ip, now)
        if notice is not None:
            self.notice(notice)
            if notice.kind == "source-blocked":
                self.refuse_blocked(stx)
                return
        self.results["challenge"] += 1
        response = stx.response(407 if proxy else 401, stateless=True)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.auth.challenges(realm, stale, flood.key(ip)):
            response.headers.add(name, value)
        # a challenge keeps no state (as Kamailio's www_challenge), to an INVITE
        # neither: sent once, never retransmitted until Timer H. A lost 401/407
        # costs the phone one retransmission, answered with a fresh challenge.
        stx.send(response, forget=True)

    def auth_failed(
        self, stx: IncomingRequest, aor: str, ip: str, source: str, reason: str
    ) -> None:
        """Refuse with the one answer every authentication failure gets; the
        event keeps the precise reason for the operator."""
        self.results["auth-fail"] += 1
        self.events.emit(ev.AuthFailed(account=aor, source=source, reason=reason))
        notice = self.flood.failed(ip, aor, self.clock())
        if notice is not None:
            self.notice(notice)
            if notice.kind == "source-blocked":
                self.refuse_blocked(stx)
                return
        self.forbid(stx)

    def forbid(self, stx: IncomingRequest) -> None:
        host = warn_agent(stx.flow.local[0], self.default_domain)
        stx.respond(403, "Forbidden", {"Warning": f'399 {host} "{AUTH_FAILED_TEXT}"'})

    def count_unauthenticated(self, stx: IncomingRequest, ip: str, now: float) -> bool:
        """Count a request refused before authentication; True if that
        blocked the source (and the request is answered)."""
        notice = self.flood.unauthenticated(ip, now)
        if notice is None:
            return False
        self.notice(notice)
        self.refuse_blocked(stx)
        return True

    def refuse_account_blocked(self, stx: IncomingRequest, ip: str, now: float) -> None:
        """The account is blocked from this source for failed credentials and
        the nonce never authenticated: refused unverified (no more guesses),
        with the usual answer and no event per attempt."""
        self.results["auth-blocked"] += 1
        if not self.count_unauthenticated(stx, ip, now):
            self.forbid(stx)

    def refuse_contacts(
        self, stx: IncomingRequest, aor: str, source: str, refused: tuple[str, str]
    ) -> None:
        reason, text = refused
        self.results["contacts-refused"] += 1
        self.events.emit(ev.Rejected(account=aor, source=source, status=403, reason=text))
        host = warn_agent(stx.flow.local[0], self.default_domain)
        stx.respond(403, reason, {"Warning": f'399 {host} "{quote_safe(text)}"'})

    def refuse_blocked(self, stx: IncomingRequest) -> None:
        """The request that tripped the block (later ones are dropped before
        they reach the transaction layer, see Endpoint.gate) still gets an
        answer, or its server transaction would wait forever."""
        self.results["flood-dropped"] += 1
        response = stx.response(503, "Service Unavailable", stateless=True)
        response.headers.add("Retry-After", str(int(self.flood.limits.block)))
        stx.send(response, forget=True)  # sent once: no retransmissions to a flooding source

    def notice(self, notice: Notice) -> None:
        if notice.kind == "unanswered":
            self.events.emit(
                ev.AuthFailed(
                    account=notice.account,
                    source=notice.source,
                    reason=f"{notice.reason}: the phone sends no credentials (wrong account "
                    "settings, or it cannot answer the algorithms of AUTH_ALGORITHMS)",
                )
            )
            return
        self.results["flood-blocked"] += 1
        self.events.emit(
            ev.FloodBlocked(
                account=notice.account,
                source=notice.source,
                reason=notice.reason,
                seconds=self.flood.limits.block,
            )
        )

    def _date(self, now: float) -> str:
        second = int(now)
        if self._date_cache[0] != second:
            self._date_cache = (second, email.utils.formatdate(second, usegmt=True))
        return self._date_cache[1]
