"""REGISTER processing (docs/behaviour.md §3): checks in order, then the policy
under the account's turn.

Steps 1–5 (validation, flood, account, IP, digest, expires) never change
state. Step 6 runs `policy.decide` and applies the decision in memory at
once — the event loop makes that atomic per account — then writes it
through; the 200 goes out when the write has committed. Only the §3.4 probe
waits, and while it does, later REGISTERs of that account queue behind it.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote

from regswitch import events as ev
from regswitch.endpoint import ServerTransaction
from regswitch.events import EventBus
from regswitch.params import Params
from regswitch.periodic import Periodic
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard, Notice
from regswitch.registrar.accounts import AccountEntry, Accounts
from regswitch.registrar.auth import BLOCKED, Authenticator
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.contacts import (
    behind_nat,
    contact_key,
    contact_line,
    contact_request,
    is_ip_literal,
    quote_safe,
    refuse_contacts,
    source_of,
    warn_agent,
)
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.kick_guard import KickGuard
from regswitch.registrar.kicker import Kicker
from regswitch.registrar.policy import (
    ContactRequest,
    Decision,
    Policy,
    RegisterRequest,
    Removal,
    decide,
    needs_return_path,
)
from regswitch.registrar.shared import UDP_CHANGES_REFUSED, SharedLocation, decide_shared
from regswitch.sip.errors import ParseError
from regswitch.sip.flow import Flow
from regswitch.sip.uri import URI, parse_uri
from regswitch.storage.base import BindingOp, BindingStore, StorageUnavailableError

log = logging.getLogger("regswitch.registrar")

PROBE_TIMEOUT = 2.0
#: Retry-After (s) of the 503 for a REGISTER that needs a write while the
#: database is unreachable (the storage reconnects within a second of its return).
STORAGE_RETRY_AFTER = "2"
# REGISTERs of one account waiting behind a probe or a return-path check
MAX_QUEUED = 32
REJECT_REASON = "Registration Replace Disabled"
FLAP_REASON = "Registration Flapping"

Prober = Callable[[Binding, float], Awaitable[bool]]
# (flow, Request-URI, timeout) -> whether an OPTIONS there was answered
Confirmer = Callable[[Flow, str, float], Awaitable[bool]]
# the one Warning text of every authentication failure (no account enumeration)
AUTH_FAILED_TEXT = "Authentication failed"


class _Pending:
    """A REGISTER past steps 1–5, waiting for its account's turn."""

    __slots__ = ("confirmed", "contacts", "entry", "extra", "req", "stx")

    def __init__(
        self,
        stx: ServerTransaction,
        req: RegisterRequest,
        contacts: list[ContactRequest] | None,
        entry: AccountEntry,
        extra: dict[str, str],
    ) -> None:
        self.stx = stx
        self.req = req
        self.contacts = contacts
        self.entry = entry
        self.extra = extra
        self.confirmed = False


class Registrar:
    def __init__(
        self,
        *,
        accounts: Accounts,
        location: Location,
        store: BindingStore,
        params: Params,
        events: EventBus,
        auth: Authenticator,
        flood: FloodGuard,
        flapping: FlapDetector,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        domains: list[str],
        own_hosts: set[str],
        kicker: Kicker,
        prober: Prober,
        confirmer: Confirmer,
        node: str = "",
        storage_problem: Callable[[], str | None] | None = None,
        guard: KickGuard | None = None,
        shared: SharedLocation | None = None,
        expiry: ExpiryQueue | None = None,
    ) -> None:
        self.accounts = accounts
        self.location = location
        self.store = store
        self.params = params
        self.events = events
        self.auth = auth
        self.flood = flood
        self.flapping = flapping
        self.clock = clock
        self.new_id = new_id
        self.domains = set(domains)
        self.default_domain = domains[0]
        # the caller's set: filled in when the listeners are known (after construction)
        self.own_hosts = own_hosts
        # why the binding store cannot write now (None: it can); see _finish
        self.storage_problem = storage_problem
        self.node = node
        self.kicker = kicker
        self.prober = prober
        self.confirmer = confirmer
        self.expiry = expiry or ExpiryQueue()
        # a cluster's location (registrar/shared.py): decisions are committed there first
        self.shared = shared
        self.results: Counter[str] = Counter()
        # kick wars, the kicked device's MESSAGE, credential sharing (kick_guard.py)
        self.guard = guard or KickGuard(
            params=params, events=events, results=self.results, default_domain=domains[0]
        )
        self._turns: dict[str, list[_Pending]] = {}
        self._confirming: set[str] = set()  # accounts whose turn a return-path check holds
        self._date_cache: tuple[int, str] = (0, "")
        # within a second of expiry (docs/behaviour.md §3.5): checked four times a second
        self._expirer = Periodic(0.25, self.expire_due, "expiry")
        # the loop holds tasks weakly: running probes are kept here until done
        self._probes: set[asyncio.Task[None]] = set()

    # --- start/stop ---------------------------------------------------------------
    async def restore(self) -> int:
        """Load stored bindings, dropping expired ones; returns how many were kept."""
        now = self.clock()
        expired: list[BindingOp] = []
        for record in await self.store.load():
            if record.expires_at <= now and self.shared is None:
                expired.append(BindingOp.delete(record.id))
                continue
            try:
                key = contact_key(parse_uri(record.contact))
            except ParseError:
                expired.append(BindingOp.delete(record.id))
                continue
            binding = Binding.from_record(record, key)
            self.location.add(binding)
            self.expiry.push(binding.id, binding.expires_at)
        if expired:
            await self.store.apply(expired)
        return len(self.location)

    def start(self) -> None:
        self._expirer.start()

    async def stop(self) -> None:
        await self._expirer.stop()

    # --- REGISTER -----------------------------------------------------------------
    def handle(self, stx: ServerTransaction) -> None:
        request = stx.request
        flow = stx.flow
        ip = flow.remote[0]
        now = self.clock()
        flood = self.flood
        if flood.blocked(ip, now):
            self._refuse_blocked(stx)
            return

        # 1. validation (a ParseError from a lazy header read becomes a 400 in the endpoint):
        # the whole message first, so a malformed one is a 400 whatever its domain
        to_uri = request.to.uri
        star = request.contact_is_star
        contacts = request.contacts
        header_expires = request.expires
        aor = self.aor_of(to_uri)
        if aor is None:
            self.results["forbidden-domain"] += 1
            if not self._count_unauthenticated(stx, ip, now):
                stx.respond(403, "Domain Not Served")
            return
        if star and (header_expires != 0 or len(request.headers.values("contact")) != 1):
            self.results["bad-request"] += 1
            if not self._count_unauthenticated(stx, ip, now):
                stx.respond(400, "Contact * requires Expires: 0 and no other contact")
            return
        call_id = request.call_id
        cseq = request.cseq.seq

        # 3. account and IP authentication. Unknown, disabled and out-of-network
        # are checked like a wrong password (nonce first, one answer for all):
        # the replies tell nothing about which accounts exist.
        entry = self.accounts.get(aor)
        refuse = ""
        if entry is None or not entry.account.enabled:
            refuse = "unknown or disabled account"
        elif entry.networks and not entry.allows(ip):
            refuse = f"source {ip} outside the account's allowed networks"
        # 4. digest (skipped for an IP-only account: networks and no password)
        answered = False
        if refuse or entry is None or entry.account.ha1_md5:
            result = self.auth.check(
                request,
                None if refuse or entry is None else entry.account,
                source=flood.key(ip),
                realm=aor.partition("@")[2],
                refuse=refuse,
                known_nonce_only=flood.account_blocked(ip, aor, now),
            )
            if result.outcome == "challenge":
                if result.reason:
                    self.results["auth-stale"] += 1
                self._challenge(stx, aor.partition("@")[2], result.stale, account=aor)
                return
            if result.reason == BLOCKED:
                self._refuse_account_blocked(stx, ip, now)
                return
            if result.outcome == "forbidden":
                self._auth_failed(stx, aor, ip, source_of(flow), result.reason)
                return
            answered = result.answered
        elif flood.account_blocked(ip, aor, now):
            # address-only, after return-path checks that failed from here
            self._refuse_account_blocked(stx, ip, now)
            return
        assert entry is not None
        notice = flood.authenticated(ip, aor, now, answered)
        if notice is not None:
            self._notice(notice)
            self._refuse_blocked(stx)
            return

        # 5. expires per contact
        wanted: list[ContactRequest] | None
        outbound = False
        nat = behind_nat(request, flow, contacts)
        if star:
            wanted = None
        else:
            wanted = []
            maximum = self.params.values["SS_ENDPOINT_EXPIRE"]
            minimum = self.params.values["SS_ENDPOINT_MIN_EXPIRE"]
            for contact in contacts:
                requested = contact.expires
                if requested is None:
                    requested = header_expires if header_expires is not None else maximum
                if 0 < requested < minimum:
                    self.results["interval-too-brief"] += 1
                    stx.respond(423, None, {"Min-Expires": str(minimum)})
                    return
                wanted.append(contact_request(contact, min(requested, maximum)))
                outbound = outbound or contact.reg_id is not None
            refused = refuse_contacts(
                wanted,
                [c.uri.host for c in contacts],
                ip,
                nat,
                entry.account.max_contacts,
                self.params.values["REGISTER_THIRD_PARTY_CONTACTS"],
            )
            if refused is not None:
                self._refuse_contacts(stx, aor, source_of(flow), refused)
                return

        register = RegisterRequest(
            aor=aor,
            call_id=call_id,
            cseq=cseq,
            transport=flow.transport,
            source_ip=ip,
            source_port=flow.remote[1],
            local_ip=flow.local[0],
            local_port=flow.local[1],
            conn_id=flow.conn_id,
            user_agent=request.headers.get("user-agent"),
            path=tuple(request.headers.values("path")) if "path" in request.headers else (),
            now=now,
            node=self.node,
            nat=nat,
        )
        extra: dict[str, str] = {}
        if outbound and "outbound" in (request.headers.get("supported") or ""):
            extra["Require"] = "outbound"
        pending = _Pending(stx, register, wanted, entry, extra)
        queue = self._turns.get(aor)
        if queue is None:
            self._decide(pending)
        elif aor in self._confirming and self._finish_cheap(pending):
            # a return-path check holds the turn (perhaps for a forged packet):
            # a refresh in place need not wait for it
            return
        elif len(queue) >= MAX_QUEUED:
            self.results["busy"] += 1
            stx.respond(503, "Registration Busy", {"Retry-After": "2"})
        else:
            queue.append(pending)

    def _finish_cheap(self, pending: _Pending) -> bool:
        """Apply `pending` now if it needs neither a probe nor a return-path check."""
        if self._refused_by_guard(pending):
            return True
        decision, policy = self._decision(pending, None, True)
        if decision.outcome == "probe" or self._needs_confirmation(pending, decision):
            return False
        self._finish(pending, decision, policy)
        return True

    def authenticate_caller(self, stx: ServerTransaction, uri: URI | None = None) -> str | None:
        """Who places this INVITE (docs/behaviour.md §4): the From account (or `uri`'s: the AOR
        a reg SUBSCRIBE watches), by its allowed network or by digest (407).
        Answers and returns None when refused."""
        request = stx.request
        flow = stx.flow
        ip = flow.remote[0]
        now = self.clock()
        if self.flood.blocked(ip, now):
            self._refuse_blocked(stx)
            return None
        source = source_of(flow)
        aor = self.aor_of(uri or request.from_.uri)
        entry = self.accounts.get(aor) if aor else None
        if aor is None or entry is None or not entry.account.enabled:
            if aor is not None and not request.headers.get("proxy-authorization"):
                self._challenge(stx, aor.partition("@")[2], proxy=True, account=aor)
                return None
            self._auth_failed(
                stx, aor or (uri or request.from_.uri).aor, ip, source, "unknown or disabled caller"
            )
            return None
        if entry.networks:
            if entry.allows(ip):
                return aor
            self._auth_failed(
                stx, aor, ip, source, f"source {ip} outside the account's allowed networks"
            )
            return None
        result = self.auth.check(
            request, entry.account, "proxy-authorization", source=self.flood.key(ip)
        )
        if result.outcome == "ok":
            # the 407 was answered: taken back from the unauthenticated volume
            notice = self.flood.authenticated(ip, aor, now, result.answered)
            if notice is not None:
                self._notice(notice)
                self._refuse_blocked(stx)
                return None
            return aor
        if result.outcome == "challenge":
            self._challenge(stx, entry.account.domain, result.stale, proxy=True, account=aor)
        else:
            self._auth_failed(stx, aor, ip, source, result.reason)
        return None

    def aor_of(self, uri: URI) -> str | None:
        if uri.scheme not in ("sip", "sips") or not uri.user:
            return None
        host = uri.host.lower()
        user = uri.user if "%" not in uri.user else unquote(uri.user)
        if host in self.domains:
            return f"{user}@{host}"
        if host in self.own_hosts or (is_ip_literal(host) and "*" in self.own_hosts):
            return f"{user}@{self.default_domain}"
        return None

    def effective_policy(self, entry: AccountEntry, now: float) -> Policy:
        account = entry.account
        values = self.params.values
        replace = (
            values["SS_ENDPOINT_REGISTER_REPLACE"]
            if account.register_replace == "inherit"
            else (account.register_replace == "on")
        )
        keep = (
            values["REGISTER_REPLACE_KEEP_CALLS"]
            if account.replace_keep_calls == "inherit"
            else (account.replace_keep_calls == "on")
        )
        return Policy(
            replace=replace,
            keep_calls=keep,
            max_contacts=account.max_contacts,
            if_unreachable=values["REGISTER_REPLACE_IF_UNREACHABLE"],
            flap_held=self.flapping.held(account.aor, now) or self.guard.held(account.aor, now),
        )

    def _decision(
        self, pending: _Pending, probed: dict[str, bool] | None, live: bool
    ) -> tuple[Decision, Policy]:
        """The policy's decision for `pending` now. Without `live` (no probe
        may run), bindings to probe that are not known unreachable count as alive."""
        req = pending.req
        policy = self.effective_policy(pending.entry, req.now)
        decision = decide(self.location.of(req.aor), req, pending.contacts, policy, probed)
        if decision.outcome == "probe" and not live:
            decision = decide(
                self.location.of(req.aor),
                req,
                pending.contacts,
                policy,
                {b.id: True for b in decision.probe} | (probed or {}),
            )
        return decision, policy

    def _refused_by_guard(self, pending: _Pending) -> bool:
        """Kick wars (kick_guard.py): a replaced registration's refresh, a blocked
        device, a locked account are answered here, before any decision."""
        req = pending.req
        return self.guard.refused(pending.stx, req, pending.contacts, self.location.of(req.aor))

    def _needs_confirmation(self, pending: _Pending, decision: Decision) -> bool:
        """A change for an account authenticated by its address alone, over
        UDP, where the source address proves nothing (docs/behaviour.md §3)."""
        entry = pending.entry
        return (
            not pending.confirmed
            and pending.req.transport == "udp"
            and bool(entry.networks)
            and not entry.account.ha1_md5
            and needs_return_path(decision, pending.req)
        )

    def _decide(self, pending: _Pending) -> None:
        """Decide now, or hold the account's turn while a probe or a
        return-path check runs (later REGISTERs of the account queue behind)."""
        if self.shared is not None:
            # other nodes decide for this account too: commit there first (shared.py)
            self._turns.setdefault(pending.req.aor, [])
            task = asyncio.get_running_loop().create_task(self._shared_turn(pending))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
            return
        if self._refused_by_guard(pending):
            return
        decision, policy = self._decision(pending, None, True)
        confirm = self._needs_confirmation(pending, decision)
        if confirm and self.params.values["REGISTER_IP_AUTH_UDP_CHANGES"] == "Refuse":
            req = pending.req
            self._auth_failed(
                pending.stx,
                req.aor,
                req.source_ip,
                f"{req.transport}:{req.source_ip}:{req.source_port}",
                UDP_CHANGES_REFUSED,
            )
            return
        if decision.outcome == "probe" or confirm:
            self._turns.setdefault(pending.req.aor, [])
            task = asyncio.get_running_loop().create_task(self._hold(pending, decision))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
            return
        self._finish(pending, decision, policy)

    async def _shared_turn(self, pending: _Pending) -> None:
        assert self.shared is not None
        try:
            await decide_shared(self, self.shared, pending)
        finally:
            self._next_turn(pending.req.aor)

    async def _hold(self, pending: _Pending, decision: Decision) -> None:
        aor = pending.req.aor
        try:
            if self._needs_confirmation(pending, decision):
                self._confirming.add(aor)
                try:
                    confirmed = await self._confirm(pending)
                finally:
                    self._confirming.discard(aor)
                if not confirmed:
                    return
                decision, policy = self._decision(pending, None, True)
            if decision.outcome == "probe":
                answers = await asyncio.gather(
                    *(self.prober(b, PROBE_TIMEOUT) for b in decision.probe),
                    return_exceptions=True,
                )
                probed = {b.id: a is True for b, a in zip(decision.probe, answers, strict=True)}
                # time passed during the probe: decide on the present
                pending.req = _replace_now(pending.req, self.clock())
                decision, policy = self._decision(pending, probed, False)
            else:
                policy = self.effective_policy(pending.entry, pending.req.now)
            self._finish(pending, decision, policy)
        except Exception:
            log.exception("REGISTER probe failed for %s", aor)
            pending.stx.respond(500, "Probe Failed")
        finally:
            self._next_turn(aor)

    async def _confirm(self, pending: _Pending) -> bool:
        """Send an OPTIONS to the claimed source; only a party that receives
        there can answer it (its branch and Call-ID are random). True when
        answered; otherwise the REGISTER is refused like a failed credential."""
        req = pending.req
        flow = Flow("udp", (req.source_ip, req.source_port), (req.local_ip, req.local_port))
        target = f"sip:{req.source_ip}:{req.source_port}"
        if ":" in req.source_ip:
            target = f"sip:[{req.source_ip}]:{req.source_port}"
        self.results["return-path-check"] += 1
        if await self.confirmer(flow, target, PROBE_TIMEOUT):
            pending.confirmed = True
            pending.req = _replace_now(req, self.clock())
            return True
        self._auth_failed(
            pending.stx,
            req.aor,
            req.source_ip,
            f"{req.transport}:{req.source_ip}:{req.source_port}",
            "return path not confirmed: no answer to an OPTIONS sent to the source",
        )
        return False

    def _next_turn(self, aor: str) -> None:
        queue = self._turns.pop(aor, [])
        while queue:
            item = queue.pop(0)
            self._decide(item)
            if aor in self._turns:  # it started a probe: the rest wait again
                self._turns[aor].extend(queue)
                return

    def _finish(
        self, pending: _Pending, decision: Decision, policy: Policy, committed: bool = False
    ) -> None:
        """Apply `decision`; `committed`: its binding writes are already stored
        (a shared location's turn, shared.py), only memory, events and the reply remain."""
        stx = pending.stx
        req = pending.req
        if decision.outcome == "error":
            self.results["error"] += 1
            stx.respond(decision.status, decision.reason)
            return
        if decision.outcome in ("reject", "probe"):
            self._reject(stx, req, decision, pending.contacts)
            return

        if (decision.changes or decision.removals) and not committed and self._storage_down(stx):
            return
        location = self.location
        ops: list[BindingOp] = []
        kinds: list[str] = []
        created: list[Binding] = []
        for change in decision.changes:
            if change.binding is None:
                values = change.values
                if "id" not in values:  # else given when the turn planned the commit
                    values = {"id": self.new_id(), "registered_at": req.now, **values}
                binding = Binding(**values)
                location.add(binding)
                created.append(binding)
                self.expiry.push(binding.id, binding.expires_at)
                self.events.emit(
                    ev.REGISTERED,
                    account=req.aor,
                    source=binding.source,
                    contact=binding.contact,
                    expires=binding.expires_in(req.now),
                    user_agent=binding.user_agent,
                    binding=binding.id,
                    kind=change.kind,
                )
            else:
                binding = change.binding
                old_contact, old_source = binding.contact, binding.source
                old_expiry = binding.expires_at
                for name, value in change.values.items():
                    setattr(binding, name, value)
                binding.missed_keepalives = 0
                if binding.expires_at < old_expiry:
                    # the heap only holds the old, later time: a shorter interval
                    # needs its own entry (a longer one is re-pushed when the old is due)
                    self.expiry.push(binding.id, binding.expires_at)
                details: dict[str, Any] = {
                    "contact": binding.contact,
                    "binding": binding.id,
                    "expires": binding.expires_in(req.now),
                }
                if old_contact != binding.contact or old_source != binding.source:
                    details.update(old_contact=old_contact, old_source=old_source)
                self.events.emit(
                    ev.REFRESHED if change.kind == "refresh" else ev.SAME_DEVICE,
                    account=req.aor,
                    source=binding.source,
                    **details,
                )
            kinds.append(change.kind)
            ops.append(BindingOp.upsert(binding.to_record()))
        for removal in decision.removals:
            if location.remove(removal.binding):
                ops.append(BindingOp.delete(removal.binding.id))
                self._removed(removal, req, policy)
        self._count(kinds, decision)
        if not ops or committed:
            self._reply_ok(stx, req, pending.extra)
            return
        done = self.store.submit(ops)
        done.add_done_callback(lambda f: self._committed(f, stx, req, pending.extra, created))

    def _storage_down(self, stx: ServerTransaction) -> bool:
        """While the database is unreachable a REGISTER that needs a write is
        refused before anything changes in memory: no kick, no event, no
        binding that a crash would lose (a query still gets its 200)."""
        problem = self.storage_problem() if self.storage_problem is not None else None
        if problem is None:
            return False
        self.results["storage-unavailable"] += 1
        stx.respond(503, "Service Unavailable", {"Retry-After": STORAGE_RETRY_AFTER})
        return True

    def _count(self, kinds: list[str], decision: Decision) -> None:
        results = self.results
        if not kinds and not decision.removals:
            results["query"] += 1
        for kind in kinds:
            results["ok" if kind in ("new", "new-flow") else kind] += 1
        for removal in decision.removals:
            results["replaced" if removal.why == "replaced" else "unregister"] += 1

    def _removed(self, removal: Removal, req: RegisterRequest, policy: Policy) -> None:
        b = removal.binding
        source = f"{req.transport}:{req.source_ip}:{req.source_port}"
        if removal.why != "replaced":
            self.events.emit(
                ev.UNREGISTERED,
                account=req.aor,
                source=source,
                contact=b.contact,
                binding=b.id,
                wildcard=removal.why == "wildcard",
            )
            return
        self.guard.replacing(b, req, removal.replaced_by)
        ended: list[str] = []
        if removal.kick:
            ended = self.kicker(b, "registration-replaced")
        self.events.emit(
            ev.REPLACED,
            account=req.aor,
            source=source,
            old_contact=b.contact,
            old_source=b.source,
            old_binding=b.id,
            new_contact=removal.replaced_by,
            new_source=source,
            kicked=removal.kick,
            keep_calls=not removal.kick,
            calls_ended=ended,
            policy="on" if policy.replace else "off-unreachable",
        )
        self.guard.replaced(b, req, removal.replaced_by, self.location.of(req.aor))
        if self.flapping.replaced(req.aor, req.now):
            self.events.emit(
                ev.FLAPPING,
                account=req.aor,
                source=source,
                limit=self.flapping.limit,
                window=self.flapping.window,
                held_until=self.flapping.held_until(req.aor),
            )

    def _committed(
        self,
        done: asyncio.Future[None],
        stx: ServerTransaction,
        req: RegisterRequest,
        extra: dict[str, str],
        created: list[Binding],
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            log.error(
                "binding write failed for %s: %s",
                req.aor,
                None if done.cancelled() else done.exception(),
            )
            for binding in created:
                # never stored nor acknowledged: routing calls to it would be a lie
                self.location.remove(binding)
            if not done.cancelled() and isinstance(done.exception(), StorageUnavailableError):
                # the database went away with this write in flight: not stored, retry
                self.results["storage-unavailable"] += 1
                stx.respond(503, "Service Unavailable", {"Retry-After": STORAGE_RETRY_AFTER})
                return
            self.results["storage-error"] += 1
            stx.respond(500, "Storage Failure")
            return
        self._reply_ok(stx, req, extra)

    def _reply_ok(
        self, stx: ServerTransaction, req: RegisterRequest, extra: dict[str, str]
    ) -> None:
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

    def _reject(
        self,
        stx: ServerTransaction,
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
            ev.REJECTED,
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
        host = warn_agent(stx.flow.local[0], self.default_domain)
        stx.respond(
            status,
            reason,
            {
                "Warning": f'399 {host} "{quote_safe(text)}"',
                "Retry-After": str(retry_after),
            },
        )

    def _challenge(
        self,
        stx: ServerTransaction,
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
            self._notice(notice)
            if notice.kind == "source-blocked":
                self._refuse_blocked(stx)
                return
        self.results["challenge"] += 1
        response = stx.response(407 if proxy else 401)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.auth.challenges(realm, stale, flood.key(ip)):
            response.headers.add(name, value)
        # a challenge keeps no state (as Kamailio's www_challenge), to an INVITE
        # neither: sent once, never retransmitted until Timer H. A lost 401/407
        # costs the phone one retransmission, answered with a fresh challenge.
        stx.send(response, forget=True)

    def _auth_failed(
        self, stx: ServerTransaction, aor: str, ip: str, source: str, reason: str
    ) -> None:
        """Refuse with the one answer every authentication failure gets; the
        event keeps the precise reason for the operator."""
        self.results["auth-fail"] += 1
        self.events.emit(ev.AUTH_FAILED, account=aor, source=source, reason=reason)
        notice = self.flood.failed(ip, aor, self.clock())
        if notice is not None:
            self._notice(notice)
            if notice.kind == "source-blocked":
                self._refuse_blocked(stx)
                return
        self._forbid(stx)

    def _forbid(self, stx: ServerTransaction) -> None:
        host = warn_agent(stx.flow.local[0], self.default_domain)
        stx.respond(403, "Forbidden", {"Warning": f'399 {host} "{AUTH_FAILED_TEXT}"'})

    def _count_unauthenticated(self, stx: ServerTransaction, ip: str, now: float) -> bool:
        """Count a request refused before authentication; True if that
        blocked the source (and the request is answered)."""
        notice = self.flood.unauthenticated(ip, now)
        if notice is None:
            return False
        self._notice(notice)
        self._refuse_blocked(stx)
        return True

    def _refuse_account_blocked(self, stx: ServerTransaction, ip: str, now: float) -> None:
        """The account is blocked from this source for failed credentials and
        the nonce never authenticated: refused unverified (no more guesses),
        with the usual answer and no event per attempt."""
        self.results["auth-blocked"] += 1
        if not self._count_unauthenticated(stx, ip, now):
            self._forbid(stx)

    def _refuse_contacts(
        self, stx: ServerTransaction, aor: str, source: str, refused: tuple[str, str]
    ) -> None:
        reason, text = refused
        self.results["contacts-refused"] += 1
        self.events.emit(ev.REJECTED, account=aor, source=source, status=403, reason=text)
        host = warn_agent(stx.flow.local[0], self.default_domain)
        stx.respond(403, reason, {"Warning": f'399 {host} "{quote_safe(text)}"'})

    def _refuse_blocked(self, stx: ServerTransaction) -> None:
        """The request that tripped the block (later ones are dropped before
        they reach the transaction layer, see Endpoint.gate) still gets an
        answer, or its server transaction would wait forever."""
        self.results["flood-dropped"] += 1
        response = stx.response(503, "Service Unavailable")
        response.headers.add("Retry-After", str(int(self.flood.limits.block)))
        stx.send(response, forget=True)  # sent once: no retransmissions to a flooding source

    def _notice(self, notice: Notice) -> None:
        if notice.kind == "unanswered":
            self.events.emit(
                ev.AUTH_FAILED,
                account=notice.account,
                source=notice.source,
                reason=f"{notice.reason}: the phone sends no credentials (wrong account "
                "settings, or it cannot answer the algorithms of AUTH_ALGORITHMS)",
            )
            return
        self.results["flood-blocked"] += 1
        self.events.emit(
            ev.FLOOD_BLOCKED,
            account=notice.account,
            source=notice.source,
            reason=notice.reason,
            seconds=self.flood.limits.block,
        )

    def _date(self, now: float) -> str:
        second = int(now)
        if self._date_cache[0] != second:
            self._date_cache = (second, email.utils.formatdate(second, usegmt=True))
        return self._date_cache[1]

    # --- console operations -------------------------------------------------------
    def list(self, account: str | None = None, ip: str | None = None) -> list[Binding]:
        now = self.clock()
        items = self.location.of(account) if account else list(self.location)
        return [b for b in items if b.expires_at > now and (ip is None or b.source_ip == ip)]

    async def delete(
        self, binding_id: str, kick: bool, block: float = 0
    ) -> dict[str, Any] | None:
        """Remove a registration from the console; with `kick`, end its calls;
        with `block` seconds, refuse the device for that long (delete and block)."""
        binding = self.location.get(binding_id)
        if binding is None:
            return None
        self.location.remove(binding)
        blocked_until = self.guard.block(binding, self.clock(), block) if block > 0 else None
        ended = self.kicker(binding, "registration-deleted") if kick else []
        self.events.emit(
            ev.DELETED,
            account=binding.aor,
            source=binding.source,
            contact=binding.contact,
            binding=binding.id,
            kicked=kick,
            calls_ended=ended,
            blocked_until=blocked_until,
        )
        await self.store.apply([BindingOp.delete(binding.id, binding.aor)])
        return {
            "id": binding.id,
            "account": binding.aor,
            "kicked": kick,
            "calls_ended": ended,
            "blocked_until": blocked_until,
        }

    # --- expiry -------------------------------------------------------------------
    async def expire_due(self) -> int:
        now = self.clock()
        ops: list[BindingOp] = []
        candidates: list[Binding] = []
        for binding_id in self.expiry.due(now):
            binding = self.location.get(binding_id)
            if binding is None:
                continue
            if binding.expires_at > now:
                self.expiry.push(binding.id, binding.expires_at)
                continue
            candidates.append(binding)
        due = candidates if self.shared is None else await self._expire_shared(candidates, now)
        for binding in due:
            self.location.remove(binding)
            ops.append(BindingOp.delete(binding.id))
            self.results["expired"] += 1
            self.events.emit(
                ev.EXPIRED,
                account=binding.aor,
                source=binding.source,
                contact=binding.contact,
                binding=binding.id,
            )
        if ops and self.shared is None:
            await self.store.apply(ops)
        return len(ops)

    async def _expire_shared(self, due: Sequence[Binding], now: float) -> Sequence[Binding]:
        """Every node holds every binding; the one whose removal commits first
        expires it (and alone tells: one `expired` event cluster-wide). One
        refreshed or expired elsewhere is looked at again shortly, by when
        this node's copy has heard of it."""
        assert self.shared is not None
        removed = await asyncio.gather(
            *(self.shared.expire(b, now) for b in due), return_exceptions=True
        )
        for binding, done in zip(due, removed, strict=True):
            if done is not True:
                self.expiry.push(binding.id, now + 1.0)
        return [b for b, done in zip(due, removed, strict=True) if done is True]


def _replace_now(req: RegisterRequest, now: float) -> RegisterRequest:
    return req.at(now)
