"""A REGISTER decided against a location several nodes share (a cluster).

One process makes a decision atomic for free: the event loop runs `decide`
and applies it without an await in between. Several nodes cannot lean on
that, so the decision runs optimistically (DESIGN "Cluster"):

1. hold the account on this node (`SharedLocation.turn`): changes to it from
   other nodes wait while the decision is made and applied;
2. run the same pure `policy.decide` on this node's copy of the account;
3. plan the decision (plan.py: new bindings get their ids there, before
   anything is written) and commit its binding writes only if the account
   is still at the version the copy holds -- with nothing to write, only
   confirm that version. The same command claims the REGISTER's nonce count
   (cluster-wide replay protection): one round trip a REGISTER;
4. committed: apply the same plan here as a single node would (memory,
   events, kicks, the 200); refused because the copy was behind (another
   node came first): the copy now holds what the location does, go back to
   2; refused because the nonce count was used (a replay): a stale challenge.

Nothing is applied, evented or kicked before the commit, so a lost race or a
replay leaves no trace. Probes (§3.4) and return-path checks wait outside the
hold, after a commit that writes nothing has claimed the nonce and confirmed
the copy, and then decide again, as in one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from typing import Any, Protocol

from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.contacts import contact_key
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.plan import Plan, plan
from regswitch.registrar.policy import Decision, Policy, RegisterRequest
from regswitch.registrar.replies import Replies
from regswitch.sip.errors import ParseError
from regswitch.sip.uri import parse_uri
from regswitch.storage.base import (
    CONFLICT,
    REPLAYED,
    BindingOp,
    BindingRecord,
    StorageError,
    StorageUnavailableError,
)

log = logging.getLogger("regswitch.registrar")

#: Decisions retried when other nodes keep changing the account first; a
#: REGISTER still undecided after that many is answered 503 (try again).
MAX_ATTEMPTS = 20
PROBE_TIMEOUT = 2.0
#: Retry-After (s) of a 503 while the shared location is unreachable or contended
RETRY_AFTER = "2"
UDP_CHANGES_REFUSED = (
    "an address-only account changes over TCP or TLS only (REGISTER_IP_AUTH_UDP_CHANGES Refuse)"
)
_RECORD_FIELDS = tuple(f.name for f in fields(BindingRecord))


class Turn(Protocol):
    """One REGISTER's hold on an account, and its conditional commit."""

    @property
    def nonce(self) -> tuple[str, int] | None:
        """The nonce count still to claim: None once a commit claimed it."""
        ...

    async def commit(self, ops: Sequence[BindingOp]) -> str:
        """Write `ops` (none: write nothing) if the account is still as this
        node's copy holds it, claiming the nonce count first: COMMITTED;
        CONFLICT (the copy now holds what the location does: decide again);
        REPLAYED (the count was used, on any node: nothing done). Raises
        StorageUnavailableError when the location cannot be reached."""
        ...

    def close(self) -> None:
        """End the hold: changes from other nodes apply again."""
        ...


class SharedLocation(Protocol):
    """What the registrar needs of a location shared by several nodes."""

    def turn(self, aor: str, nonce: tuple[str, int] | None = None) -> Turn:
        """Hold `aor` until the turn is closed; `nonce`: the REGISTER's nonce count to claim."""
        ...

    async def expire(self, binding: Binding, now: float) -> bool:
        """True when this node removed the expired binding (exactly one node does)."""
        ...


class Pending(Protocol):
    """A REGISTER past the checks, waiting for its account's turn (check.Checked)."""

    stx: Any
    req: RegisterRequest
    entry: Any  # AccountEntry
    nonce: tuple[str, int] | None  # the digest's nonce and count (None: no digest)
    confirmed: bool


class Steps(Protocol):
    """The registrar's steps a shared turn runs (registrar/service.py)."""

    new_id: Callable[[], str]
    clock: Callable[[], float]
    params: Any
    results: Counter[str]
    prober: Callable[[Binding, float], Awaitable[bool]]

    def _refused_by_guard(self, pending: Any) -> bool: ...

    def _decision(
        self, pending: Any, probed: dict[str, bool] | None, live: bool
    ) -> tuple[Decision, Policy]: ...

    def _needs_confirmation(self, pending: Any, decision: Decision) -> bool: ...

    async def _confirm(self, pending: Any) -> bool: ...

    replies: Replies

    def _finish(
        self, pending: Any, decision: Decision, policy: Policy, committed: bool = False
    ) -> None: ...

    def _apply(self, pending: Any, plan: Plan, policy: Policy, committed: bool) -> None: ...


async def decide_shared(steps: Steps, shared: SharedLocation, pending: Pending) -> None:
    """Decide `pending` and apply it once committed (see the module docstring)."""
    aor = pending.req.aor
    probed: dict[str, bool] | None = None
    try:
        nonce = pending.nonce  # authenticated by digest: claim its nonce count
        for _ in range(MAX_ATTEMPTS):
            turn = shared.turn(aor, nonce)
            try:
                outcome = await _attempt(steps, turn, pending, probed)
            finally:
                turn.close()
                nonce = turn.nonce
            if outcome is None:
                return  # applied (or refused) and answered
            if isinstance(outcome, str):  # CONFLICT
                continue  # another node changed the account first: decide again
            decision, confirm = outcome
            # outside the hold: a return-path check or a probe takes up to seconds
            req = pending.req
            if confirm:
                if steps.params.values["REGISTER_IP_AUTH_UDP_CHANGES"] == "Refuse":
                    source = f"{req.transport}:{req.source_ip}:{req.source_port}"
                    steps.replies.auth_failed(
                        pending.stx, aor, req.source_ip, source, UDP_CHANGES_REFUSED
                    )
                    return
                if not await steps._confirm(pending):
                    return
                continue
            answers = await asyncio.gather(
                *(steps.prober(b, PROBE_TIMEOUT) for b in decision.probe), return_exceptions=True
            )
            probed = (probed or {}) | {
                b.id: a is True for b, a in zip(decision.probe, answers, strict=True)
            }
            pending.req = req.at(steps.clock())  # time passed: decide on the present
        log.warning(
            "REGISTER for %s: the account kept changing over %d attempts", aor, MAX_ATTEMPTS
        )
        steps.results["busy"] += 1
        pending.stx.respond(503, "Registration Busy", {"Retry-After": RETRY_AFTER})
    except StorageError as exc:
        if not isinstance(exc, StorageUnavailableError):
            log.error("REGISTER for %s: the shared location failed: %s", aor, exc)
        steps.results["storage-unavailable"] += 1
        pending.stx.respond(503, "Service Unavailable", {"Retry-After": RETRY_AFTER})


async def _attempt(
    steps: Steps, turn: Turn, pending: Pending, probed: dict[str, bool] | None
) -> tuple[Decision, bool] | str | None:
    """One decision on this node's copy of the account, held by `turn`: None
    when it was applied (or refused) and answered; CONFLICT when the copy was
    behind (it is not any more); else (decision, confirm): a return-path check
    or a probe must run first, outside the hold."""
    aor = pending.req.aor
    if steps._refused_by_guard(pending):
        return None
    decision, policy = steps._decision(pending, probed, probed is None)
    confirm = steps._needs_confirmation(pending, decision)
    waits = confirm or decision.outcome == "probe"
    writes = decision.outcome == "ok" and bool(decision.changes or decision.removals)
    effects = plan(decision, pending.req, steps.new_id) if writes and not waits else None
    outcome = await turn.commit(effects.ops if effects is not None else ())
    if outcome == REPLAYED:
        # this node's own table let it through; another node saw it first
        steps.results["auth-stale"] += 1
        steps.replies.challenge(pending.stx, aor.partition("@")[2], True, account=aor)
        return None
    if outcome == CONFLICT:
        return CONFLICT
    if waits:
        return decision, confirm
    if effects is None:
        steps._finish(pending, decision, policy, committed=True)  # nothing to write
    else:
        steps._apply(pending, effects, policy, committed=True)
    return None


def sync_account(
    location: Location,
    aor: str,
    records: list[BindingRecord] | tuple[BindingRecord, ...],
    expiry: ExpiryQueue,
    node: str,
) -> None:
    """Make this node's copy of `aor`'s bindings equal `records` (the shared
    location's). Known bindings are updated in place (calls and keepalives
    hold them by id, runtime state stays); every binding is in `expiry`, so
    any node expires it if its own node is gone. Reachability is the
    keepalive's, which only the binding's own node runs: its local view wins."""
    current = {b.id: b for b in location.of(aor)}
    for record in records:
        binding = current.pop(record.id, None)
        if binding is None:
            key = _key(record.contact)
            if key is None:
                continue
            binding = Binding.from_record(record, key)
            location.add(binding)
            expiry.push(binding.id, binding.expires_at)
            continue
        if binding.contact != record.contact:
            binding.contact_key = _key(record.contact) or binding.contact_key
        if binding.expires_at != record.expires_at:
            expiry.push(binding.id, record.expires_at)
        mine = binding.node == node and record.node == node
        for name in _RECORD_FIELDS:
            if name == "reachable" and mine:
                continue
            setattr(binding, name, getattr(record, name))
    for gone in current.values():
        location.remove(gone)


def _key(contact: str) -> str | None:
    try:
        return contact_key(parse_uri(contact))
    except ParseError:
        return None
