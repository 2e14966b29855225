"""REGISTER processing (docs/behaviour.md §3): the checks (check.py), then the
policy under the account's turn; every answer is worded in replies.py.

Steps 1–5 (validation, flood, account, IP, digest, expires) never change
state. Step 6 runs `policy.decide`, plans the decision (plan.py) and
applies the plan in memory at once — the event loop makes that atomic per
account — then writes it through; the 200 goes out when the write has committed. Only the §3.4 probe
waits, and while it does, later REGISTERs of that account queue behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import unquote

from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.params import Params
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard
from regswitch.registrar.accounts import AccountEntry, Accounts
from regswitch.registrar.auth import Authenticator
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.check import Checked, Checks
from regswitch.registrar.contacts import (
    is_ip_literal,
)
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.kick_guard import KickGuard
from regswitch.registrar.kicker import Kicker
from regswitch.registrar.plan import Plan, plan
from regswitch.registrar.policy import (
    Decision,
    Policy,
    RegisterRequest,
    Removal,
    decide,
    needs_return_path,
)
from regswitch.registrar.replies import Replies
from regswitch.registrar.shared import UDP_CHANGES_REFUSED, SharedLocation, decide_shared
from regswitch.registrar.upkeep import RESTORING_RETRY, BindingUpkeep
from regswitch.sip.flow import Flow
from regswitch.sip.uri import URI
from regswitch.storage.base import BindingStore, StorageUnavailableError
from regswitch.transport.endpoint import IncomingRequest

log = logging.getLogger("regswitch.registrar")

PROBE_TIMEOUT = 2.0
#: Retry-After (s) of the 503 for a REGISTER that needs a write while the
#: database is unreachable (the storage reconnects within a second of its return).
STORAGE_RETRY_AFTER = "2"
# REGISTERs of one account waiting behind a probe or a return-path check
MAX_QUEUED = 32

Prober = Callable[[Binding, float], Awaitable[bool]]
# (flow, Request-URI, timeout) -> whether an OPTIONS there was answered
Confirmer = Callable[[Flow, str, float], Awaitable[bool]]


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
        self.replies = Replies(
            location=location, params=params, events=events, auth=auth, flood=flood,
            flapping=flapping, guard=self.guard, results=self.results, clock=clock,
            default_domain=self.default_domain,
        )  # fmt: skip
        self.checks = Checks(
            aor_of=self.aor_of, accounts=accounts, auth=auth, flood=flood, params=params,
            replies=self.replies, results=self.results, node=node,
            read_account=self._read_then_handle,
        )  # fmt: skip
        # restore at start, expiry, the console's delete (upkeep.py)
        self.upkeep = BindingUpkeep(
            location=location, store=store, expiry=self.expiry, events=events, kicker=kicker,
            guard=self.guard, clock=clock, results=self.results, shared=shared,
            account_key=accounts.key,
        )  # fmt: skip
        self._turns: dict[str, list[Checked]] = {}
        self._confirming: set[str] = set()  # accounts whose turn a return-path check holds
        # the loop holds tasks weakly: running probes are kept here until done
        self._probes: set[asyncio.Task[None]] = set()

    # --- REGISTER -----------------------------------------------------------------
    def handle(self, stx: IncomingRequest) -> None:
        pending = self.checks.register(stx, self.clock())
        if pending is None:
            return  # refused or challenged: answered, nothing changed
        if not self.upkeep.restored(pending.req.aor):
            # a restart is still restoring: deciding before this account's stored
            # bindings are back could forget or duplicate them
            self._restore_then_take(pending)
            return
        self._take(pending)

    def _take(self, pending: Checked) -> None:
        """Decide `pending` now, or queue it behind its account's turn."""
        stx = pending.stx
        aor = pending.req.aor
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

    def _restore_then_take(self, pending: Checked) -> None:
        """Restore the account's stored bindings, then decide; a failed read is
        answered 503, the device retries."""

        def then(restored: bool) -> None:
            if not restored:
                pending.stx.respond(
                    503, "Restoring Registrations", {"Retry-After": RESTORING_RETRY}
                )
                return
            pending.req = _replace_now(pending.req, self.clock())
            self._take(pending)

        self.restore_accounts((pending.req.aor,), then)

    def restore_accounts(self, aors: Iterable[str], then: Callable[[bool], None]) -> None:
        """During a restart's restore, bring these accounts' stored bindings back
        ahead of the rest (upkeep.restore_account, the reads side by side), then
        call `then(True)`; `then(False)` when a read failed. For whoever must
        decide on an account's whole location before the restore ends: its
        REGISTERs, and the calls from and to it."""
        wanted = [aor for aor in aors if not self.upkeep.restored(aor)]

        async def restore() -> None:
            try:
                await asyncio.gather(*(self.upkeep.restore_account(aor) for aor in wanted))
            except Exception:
                log.exception("restoring the bindings of %s", ", ".join(wanted))
                self.results["restoring"] += 1
                then(False)
                return
            then(True)

        self._spawn(restore())

    def _read_then_handle(self, stx: IncomingRequest, aor: str, now: float) -> None:
        """Read an account this node has not heard of (checks.py), then check the
        REGISTER again: found, it goes on; still unknown, it is refused as such."""

        async def read() -> None:
            try:
                await self.accounts.read_unheard(aor, now)
            except Exception:  # storage down: the REGISTER is refused as unknown
                log.exception("reading account %s", aor)
            self.handle(stx)

        self._spawn(read())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the loop's turn (the loop holds tasks weakly: they
        are kept here until done)."""
        task = asyncio.get_running_loop().create_task(work)
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    def _finish_cheap(self, pending: Checked) -> bool:
        """Apply `pending` now if it needs neither a probe nor a return-path check."""
        if self._refused_by_guard(pending):
            return True
        decision, policy = self._decision(pending, None, True)
        if decision.outcome == "probe" or self._needs_confirmation(pending, decision):
            return False
        self._finish(pending, decision, policy)
        return True

    def authenticate_caller(self, stx: IncomingRequest, uri: URI | None = None) -> str | None:
        """Who places this INVITE (check.py); answers and returns None when refused."""
        return self.checks.caller(stx, self.clock(), uri)

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
        self, pending: Checked, probed: dict[str, bool] | None, live: bool
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

    def _refused_by_guard(self, pending: Checked) -> bool:
        """Kick wars (kick_guard.py): a replaced registration's refresh, a blocked
        device, a locked account are answered here, before any decision."""
        req = pending.req
        return self.guard.refused(pending.stx, req, pending.contacts, self.location.of(req.aor))

    def _needs_confirmation(self, pending: Checked, decision: Decision) -> bool:
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

    def _decide(self, pending: Checked) -> None:
        """Decide now, or hold the account's turn while a probe or a
        return-path check runs (later REGISTERs of the account queue behind)."""
        if self.shared is not None:
            # other nodes decide for this account too: commit there first (shared.py)
            self._turns.setdefault(pending.req.aor, [])
            self._spawn(self._shared_turn(pending))
            return
        if self._refused_by_guard(pending):
            return
        decision, policy = self._decision(pending, None, True)
        confirm = self._needs_confirmation(pending, decision)
        if confirm and self.params.values["REGISTER_IP_AUTH_UDP_CHANGES"] == "Refuse":
            req = pending.req
            self.replies.auth_failed(
                pending.stx,
                req.aor,
                req.source_ip,
                f"{req.transport}:{req.source_ip}:{req.source_port}",
                UDP_CHANGES_REFUSED,
            )
            return
        if decision.outcome == "probe" or confirm:
            self._turns.setdefault(pending.req.aor, [])
            self._spawn(self._hold(pending, decision))
            return
        self._finish(pending, decision, policy)

    async def _shared_turn(self, pending: Checked) -> None:
        assert self.shared is not None
        try:
            await decide_shared(self, self.shared, pending)
        finally:
            self._next_turn(pending.req.aor)

    async def _hold(self, pending: Checked, decision: Decision) -> None:
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

    async def _confirm(self, pending: Checked) -> bool:
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
        self.replies.auth_failed(
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
        self, pending: Checked, decision: Decision, policy: Policy, committed: bool = False
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
            self.replies.reject(stx, req, decision, pending.contacts)
            return

        if (decision.changes or decision.removals) and not committed and self._storage_down(stx):
            return
        self._apply(pending, plan(decision, req, self.new_id), policy, committed)

    def _apply(self, pending: Checked, plan: Plan, policy: Policy, committed: bool) -> None:
        """Apply a decision's plan here: memory, then events and kicks, then the
        write and the 200 (at once when `committed`: a shared turn stored it)."""
        stx = pending.stx
        req = pending.req
        location = self.location
        expiry = self.expiry
        for binding in plan.created:
            location.add(binding)
            expiry.push(binding.id, binding.expires_at)
        for binding, values in plan.updates:
            old_expiry = binding.expires_at
            for name, value in values.items():
                setattr(binding, name, value)
            binding.missed_keepalives = 0
            if binding.expires_at < old_expiry:
                # the heap only holds the old, later time: a shorter interval
                # needs its own entry (a longer one is re-pushed when the old is due)
                expiry.push(binding.id, binding.expires_at)
        emit = self.events.emit
        for event in plan.events:
            emit(event)
        removed = 0
        for removal, notice in plan.removals:
            if location.remove(removal.binding):
                removed += 1
                if notice is not None:
                    emit(notice)
                else:
                    self._replaced(removal, req, policy)
        self._count(plan.kinds, plan.removals)
        if committed or not (plan.created or plan.updates or removed):
            self.replies.ok(stx, req, pending.extra)
            return
        done = self.store.submit(plan.ops)
        created = plan.created
        done.add_done_callback(lambda f: self._committed(f, stx, req, pending.extra, created))

    def _storage_down(self, stx: IncomingRequest) -> bool:
        """While the database is unreachable a REGISTER that needs a write is
        refused before anything changes in memory: no kick, no event, no
        binding that a crash would lose (a query still gets its 200)."""
        problem = self.storage_problem() if self.storage_problem is not None else None
        if problem is None:
            return False
        self.results["storage-unavailable"] += 1
        stx.respond(503, "Service Unavailable", {"Retry-After": STORAGE_RETRY_AFTER})
        return True

    def _count(self, kinds: list[str], removals: list[tuple[Removal, Any]]) -> None:
        results = self.results
        if not kinds and not removals:
            results["query"] += 1
        for kind in kinds:
            results["ok" if kind in ("new", "new-flow") else kind] += 1
        for removal, _ in removals:
            results["replaced" if removal.why == "replaced" else "unregister"] += 1

    def _replaced(self, removal: Removal, req: RegisterRequest, policy: Policy) -> None:
        """A binding replaced: the kick guard, the kick, its event, flapping."""
        b = removal.binding
        source = f"{req.transport}:{req.source_ip}:{req.source_port}"
        self.guard.replacing(b, req, removal.replaced_by)
        ended: list[str] = []
        if removal.kick:
            ended = self.kicker(b, "registration-replaced")
        self.events.emit(
            ev.Replaced(
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
        )
        self.guard.replaced(b, req, removal.replaced_by, self.location.of(req.aor))
        if self.flapping.replaced(req.aor, req.now):
            self.events.emit(
                ev.Flapping(
                    account=req.aor,
                    source=source,
                    limit=self.flapping.limit,
                    window=self.flapping.window,
                    held_until=self.flapping.held_until(req.aor),
                )
            )

    def _committed(
        self,
        done: asyncio.Future[None],
        stx: IncomingRequest,
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
        self.replies.ok(stx, req, extra)

    # --- queries ------------------------------------------------------------------
    @property
    def restoring(self) -> bool:
        """Stored bindings are still coming back after a restart (upkeep.py)."""
        return self.upkeep.restoring

    def restored(self, aor: str) -> bool:
        """Whether `aor`'s stored bindings are all in memory (restore_accounts)."""
        return self.upkeep.restored(aor)

    def list(self, account: str | None = None, ip: str | None = None) -> list[Binding]:
        now = self.clock()
        items = self.location.of(account) if account else list(self.location)
        return [b for b in items if b.expires_at > now and (ip is None or b.source_ip == ip)]


def _replace_now(req: RegisterRequest, now: float) -> RegisterRequest:
    return req.at(now)
