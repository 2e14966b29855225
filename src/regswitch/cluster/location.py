"""This node's copy of the cluster's location, and the registrar's way into it.

Every node keeps every binding in memory (`Location`): routing an INVITE,
matching a caller to its binding, the console's lists and expiry all read it
without a round trip. The copy follows the shared location's change stream
(storage/redis_location.py); a node that lost Redis for a while starts again
from a full snapshot once it is back.

Changes are ordered per account by the account's version, not by their
place in the stream (two nodes' appends may interleave): a change no newer
than what the copy holds is skipped. A commit refused because the copy was
behind, and an expiry's read, count as a change too, so a copy that missed
one (its notice lost with the node that committed it) catches up there.

The registrar decides a REGISTER on the copy (registrar/shared.py) and
commits conditionally on the version the copy holds, the REGISTER's nonce
claim in the same command: one round trip. A copy that was behind is refused,
and brought up to date by the refusal's reply, and the registrar decides
again. While a turn holds an account here, changes to it from the stream wait,
so the registrar applies its own commit to a copy nobody else moves under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from regswitch.cluster.protection import NonceClaims
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.shared import sync_account
from regswitch.storage.base import (
    CONFLICT,
    REPLAYED,
    AccountState,
    BindingOp,
    BindingRecord,
    StorageError,
    StorageUnavailableError,
)
from regswitch.storage.redis_location import (
    RedisLocation,
    asked_to_stop,
    stop_reader,
    version_text,
)

log = logging.getLogger("regswitch.cluster")

#: Seconds the follower waits after a read that brought changes, so that under
#: load one read brings the changes of many REGISTERs (each read costs this node
#: and Redis alike, whatever it brings; under 2,000 REGISTERs a second the
#: stream has an entry every loop turn). A copy that is behind costs no
#: correctness: a commit on it is refused and retried (`_Turn.commit`).
FOLLOW_LINGER = 0.003


class _Turn:
    """One REGISTER's hold on an account (registrar/shared.py Turn)."""

    def __init__(self, owner: ClusterLocation, aor: str, nonce: tuple[str, int] | None) -> None:
        self._owner = owner
        self._aor = aor
        self.nonce = nonce  # claimed by the first commit that reaches Redis

    async def commit(self, ops: Sequence[BindingOp]) -> str:
        owner, aor = self._owner, self._aor
        claim = None if self.nonce is None else owner.nonces.claim(aor, *self.nonce)
        records = owner._written(aor, ops) if ops else None
        version = version_text(owner._seen.get(aor, (0, 0)))
        outcome, state = await owner.store.commit(aor, version, records, claim)
        if outcome == REPLAYED:
            owner.nonces.refused += 1
            return outcome
        self.nonce = None
        if outcome == CONFLICT:
            # the copy was behind: it is what the location holds now
            sync_account(owner.location, aor, state.records, owner.expiry, owner.node)
        owner._seen[aor] = state.change
        return outcome

    def close(self) -> None:
        self._owner._release(self._aor)


class ClusterLocation:
    """The registrar's `store` and `shared` location in a cluster."""

    def __init__(
        self,
        store: RedisLocation,
        location: Location,
        expiry: ExpiryQueue,
        node: str,
        nonces: NonceClaims,
    ) -> None:
        self.store = store
        store.node = node  # its own change notices come back marked: skipped unread
        self.nonces = nonces
        self.location = location
        self.expiry = expiry
        self.node = node
        self._held: dict[str, int] = {}  # account -> turns open on it here
        self._deferred: dict[str, AccountState] = {}  # newest change heard during a turn
        self._seen: dict[str, tuple[int, int]] = {}  # account -> last change applied here
        self._position = "0-0"  # the change stream, read up to here
        self._follower: asyncio.Task[None] | None = None
        self.resyncs = 0

    @property
    def problem(self) -> str | None:
        return self.store.problem

    @property
    def stats(self) -> dict[str, float]:
        return {
            **self.store.stats,
            "location_resyncs": self.resyncs,
            "nonce_claims_refused": self.nonces.refused,
        }

    # --- the registrar's BindingStore ---------------------------------------------
    async def load(self) -> list[BindingRecord]:
        """Every binding (the registrar's restore); the copy follows changes from here."""
        position, states = await self.store.snapshot()
        self._position = position
        for state in states:
            self._seen[state.aor] = state.change  # what a commit on the copy is conditional on
        return [r for state in states for r in state.records]

    async def load_account(self, aor: str) -> list[BindingRecord]:
        return await self.store.load_account(aor)

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        """Writes that depend on no decision (a console delete), per account."""
        by_account: dict[str, list[BindingOp]] = {}
        for op in ops:
            aor = op.record.aor if op.record is not None else op.aor
            if aor is None:
                binding = self.location.get(op.binding_id)
                aor = binding.aor if binding is not None else None
            if aor is None:
                await self.store.apply([op])  # finds the account itself (a scan)
                continue
            by_account.setdefault(aor, []).append(op)
        for aor, account_ops in by_account.items():
            state = await self.store.commit_retrying(aor, account_ops)
            if state is None:
                raise StorageError(f"{aor}: the location kept changing; the write was not made")
            self._seen[aor] = max(self._seen.get(aor, (0, 0)), state.change)

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        return asyncio.ensure_future(self.apply(ops))

    # --- the registrar's SharedLocation -----------------------------------------
    def turn(self, aor: str, nonce: tuple[str, int] | None = None) -> _Turn:
        self._held[aor] = self._held.get(aor, 0) + 1
        return _Turn(self, aor, nonce)

    def _release(self, aor: str) -> None:
        held = self._held[aor] - 1
        if held:
            self._held[aor] = held
            return
        del self._held[aor]
        deferred = self._deferred.pop(aor, None)
        if deferred is not None:
            self._apply(deferred)

    def _written(self, aor: str, ops: Sequence[BindingOp]) -> tuple[BindingRecord, ...]:
        """The account's whole state once `ops` are applied to the copy of it."""
        written: dict[str, BindingRecord | None] = {}  # binding id -> the last op's record
        for op in ops:
            written[op.binding_id] = op.record if op.kind == "upsert" else None
        kept = [self._stored(b) for b in self.location.of(aor) if b.id not in written]
        return (*kept, *(r for r in written.values() if r is not None))

    def _stored(self, binding: Binding) -> BindingRecord:
        record = binding.to_record()
        if binding.node == self.node:
            # `reachable` of this node's own bindings is its keepalive's view,
            # kept out of the location (sync_account): stored is what the
            # registration wrote
            record.reachable = True
        return record

    async def expire(self, binding: Binding, now: float) -> bool:
        # the copy follows what the expiry left (a REGISTER's commit is
        # conditional on its version), or, not due after all, catches up on
        # what was read: it missed a change (its notice was lost with the node
        # that committed it)
        return await self.store.expire(binding.aor, binding.id, now, self._apply)

    # --- following the other nodes -----------------------------------------------
    def start(self) -> None:
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="location")

    async def stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            await stop_reader(follower)

    async def _follow(self) -> None:
        while not asked_to_stop():
            try:
                changes = await self.store.changes(self._position)
                for entry_id, state in changes:
                    self._position = entry_id
                    if state is not None:  # None: this node's own, applied at its commit
                        self._apply(state)
                if changes:
                    await asyncio.sleep(FOLLOW_LINGER)
            except StorageUnavailableError:
                # changes made meanwhile may be trimmed or lost with Redis itself:
                # start again from what is there once it answers
                await self.store.wait_up()
                await self._resync()
            except StorageError:
                log.exception("following the location failed; resynchronising")
                await asyncio.sleep(1.0)
                await self._resync()

    async def _resync(self) -> None:
        try:
            position, states = await self.store.snapshot()
        except StorageError:
            return  # down again: the next read says so and waits
        self.resyncs += 1
        self._position = position
        present = {state.aor for state in states}
        for state in states:
            self._apply(state, force=True)
        for binding in list(self.location):
            if binding.aor not in present and binding.aor not in self._held:
                self._apply(AccountState(binding.aor, ()), force=True)

    def _apply(self, state: AccountState, force: bool = False) -> None:
        aor = state.aor
        if aor in self._held:
            known = self._deferred.get(aor)
            if known is None or state.change >= known.change:
                self._deferred[aor] = state
            return
        if not force and state.change <= self._seen.get(aor, (0, 0)):
            return  # this node's own commit, or older than one applied already
        self._seen[aor] = max(state.change, self._seen.get(aor, (0, 0)))
        sync_account(self.location, aor, state.records, self.expiry, self.node)
