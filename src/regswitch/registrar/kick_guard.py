"""What the registrar does around a kick (docs/signed-out.md): refuse a
replaced registration's refresh (tombstones), a blocked device, or a locked
account's newcomers; tell the old device (MESSAGE); and count what a kick
means for ping-pong and credential sharing.

The REGISTER service calls three hooks (`refused` before deciding,
`replacing` before a kick, `replaced` after it) and keeps its own flow; the
decisions themselves are the pure steps of tombstones.py, pingpong.py and
sharing.py, each given `now`.
"""

from __future__ import annotations

import email.utils
from collections import Counter

from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.params import Params
from regswitch.protection.pingpong import PingPongDetector, device_of
from regswitch.protection.sharing import SharingDetector, Suspicion
from regswitch.registrar.bindings import Binding
from regswitch.registrar.contacts import quote_safe, warn_agent
from regswitch.registrar.kick_notice import KickNotice, render
from regswitch.registrar.policy import ContactRequest, RegisterRequest
from regswitch.registrar.tombstones import Tombstone, Tombstones, refusal_text
from regswitch.transport.endpoint import IncomingRequest

TOMBSTONE_REASON = {"replaced": "Registration Replaced", "blocked": "Device Blocked"}
LOCKED_REASON = "Account Locked"


def _source(req: RegisterRequest) -> str:
    return f"{req.transport}:{req.source_ip}:{req.source_port}"


class KickGuard:
    def __init__(
        self,
        *,
        params: Params,
        events: EventBus,
        results: Counter[str],
        default_domain: str,
        tombstones: Tombstones | None = None,
        pingpong: PingPongDetector | None = None,
        sharing: SharingDetector | None = None,
    ) -> None:
        self.params = params
        self.events = events
        self.results = results
        self.default_domain = default_domain
        self.tombstones = tombstones if tombstones is not None else Tombstones()
        self.pingpong = pingpong if pingpong is not None else PingPongDetector()
        self.sharing = sharing if sharing is not None else SharingDetector()
        self.notice: KickNotice | None = None
        # per locked account, the Call-IDs that held it when it was locked: they
        # may come back (after an outage let the binding expire) while others may not
        self._holders: dict[str, set[str]] = {}

    # --- before the decision --------------------------------------------------------
    def refused(
        self,
        stx: IncomingRequest,
        req: RegisterRequest,
        contacts: list[ContactRequest] | None,
        bindings: list[Binding],
    ) -> bool:
        """Answered a REGISTER that must not reach the replace decision: a refresh
        of a replaced registration, a blocked device, a locked account's newcomer."""
        if not contacts or all(c.expires == 0 for c in contacts):
            return False  # removals and queries are always answered
        if any(b.call_id == req.call_id for b in bindings):
            return False  # a live registration's refresh
        instances = {c.instance for c in contacts if c.instance}
        stone = self.tombstones.refusing(
            req.aor, req.call_id, instances, req.source_ip, req.user_agent, req.now
        )
        if stone is not None:
            self._refuse_stone(stx, req, stone)
            return True
        return self._locked_out(stx, req, next(iter(instances), None), bindings)

    def _refuse_stone(self, stx: IncomingRequest, req: RegisterRequest, stone: Tombstone) -> None:
        stone.refusals += 1
        self.results[f"refused-{stone.kind}"] += 1
        text = refusal_text(stone, req.now)
        reason = TOMBSTONE_REASON[stone.kind]
        if stone.refusals == 1:  # one event per tombstone, not one per retry
            self.events.emit(
                ev.Rejected(
                    account=req.aor,
                    source=_source(req),
                    status=403,
                    reason=reason,
                    tombstone=stone.kind,
                    old_binding=stone.binding_id,
                    replaced_by=stone.by_binding,
                    replaced_at=stone.at,
                    until=stone.until,
                    text=text,
                )
            )
        until = stone.until if stone.kind == "blocked" else None
        self._respond(stx, req, reason, text, until)

    def _locked_out(
        self,
        stx: IncomingRequest,
        req: RegisterRequest,
        instance: str | None,
        bindings: list[Binding],
    ) -> bool:
        """Credential sharing: count this new registration's source; while the
        account is locked, refuse it unless it is the holder's registration
        (its refreshes never get here; its re-registration after expiry does)."""
        suspicion = self.sharing.registered(
            req.aor, req.transport, req.source_ip, req.source_port, instance, req.user_agent,
            req.now,
        )  # fmt: skip
        if suspicion is not None:
            self._suspected(suspicion, _source(req), bindings)
        until = self.sharing.locked_until(req.aor, req.now)
        if until is None or req.call_id in self._holders.get(req.aor, ()):
            return False
        self.results["refused-locked"] += 1
        text = (
            f"{req.aor} is locked until {email.utils.formatdate(until, usegmt=True)}: "
            "it was used from too many places (credential sharing suspected)"
        )
        self._respond(stx, req, LOCKED_REASON, text, until)
        return True

    def _respond(
        self,
        stx: IncomingRequest,
        req: RegisterRequest,
        reason: str,
        text: str,
        until: float | None,
    ) -> None:
        headers = {
            "Warning": f"399 {warn_agent(stx.flow.local[0], self.default_domain)} "
            f'"{quote_safe(text)}"'
        }
        if until is not None:
            headers["Retry-After"] = str(max(1, int(until - req.now + 0.999)))
        stx.respond(403, reason, headers)

    def _suspected(self, suspicion: Suspicion, source: str, bindings: list[Binding]) -> None:
        if suspicion.locked_until is not None:
            self._holders[suspicion.aor] = {b.call_id for b in bindings}
        s = suspicion
        self.events.emit(ev.CredentialSharing(
            account=s.aor, source=source, why=s.why, networks=s.networks, instances=s.instances,
            sources=s.sources, user_agents=s.user_agents, kicks=s.kicks,
            locked_until=s.locked_until,
        ))  # fmt: skip

    # --- holds --------------------------------------------------------------------
    def held(self, aor: str, now: float) -> bool:
        return self.pingpong.held(aor, now)

    def held_until(self, aor: str) -> float | None:
        return self.pingpong.held_until(aor)

    # --- around a replace -----------------------------------------------------------
    def replacing(self, old: Binding, req: RegisterRequest, new_contact: str | None) -> None:
        """REGISTER_REPLACE_NOTIFY_OLD: a MESSAGE to the old device, before its kick."""
        values = self.params.values
        if values["REGISTER_REPLACE_NOTIFY_OLD"] != "MESSAGE" or self.notice is None:
            return
        text = render(
            values["REGISTER_REPLACE_NOTIFY_TEXT"],
            req.aor,
            old,
            _source(req),
            new_contact,
            req.user_agent,
            req.now,
        )
        self.notice.send(old, text)

    def replaced(
        self,
        old: Binding,
        req: RegisterRequest,
        new_contact: str | None,
        bindings: list[Binding],
    ) -> None:
        """After a replace: remember the old registration, and count the kick
        toward credential sharing and ping-pong."""
        source = _source(req)
        new = next(
            (b for b in bindings if b.call_id == req.call_id and b.contact == new_contact), None
        )
        self.tombstones.replaced(
            old,
            req.now,
            self.params.values["REGISTER_KICKED_REFUSE_TIME"],
            by_contact=new_contact,
            by_source=source,
            by_agent=req.user_agent,
            by_binding=new.id if new else None,
        )
        suspicion = self.sharing.kicked(req.aor, req.now)
        if suspicion is not None:
            self._suspected(suspicion, source, bindings)
        old_device = device_of(old.instance, old.source_ip, old.user_agent)
        new_device = device_of(new.instance if new else None, req.source_ip, req.user_agent)
        if self.pingpong.replaced(req.aor, old_device, new_device, req.now):
            self.events.emit(
                ev.Flapping(
                    account=req.aor,
                    source=source,
                    kind="ping-pong",
                    devices=[old_device, new_device],
                    limit=self.pingpong.limit,
                    window=self.pingpong.window,
                    held_until=self.pingpong.held_until(req.aor),
                )
            )

    def block(self, binding: Binding, now: float, seconds: float) -> float:
        """Delete and block: refuse the device for `seconds`; returns until when."""
        return self.tombstones.blocked(binding, now, seconds).until
