"""This node's copy of the cluster's location, and the registrar's way into it.

Every node keeps every binding in memory (`Location`): routing an INVITE,
matching a caller to its binding, the console's lists and expiry all read it
without a round trip. The copy follows the shared location's change stream
(storage/redis_location.py); a node that lost Redis for a while starts again
from a full snapshot once it is back.

Changes are ordered per account by the account's version, not by their
place in the stream (two nodes' appends may interleave): a change no newer
than what the copy holds is skipped. An account read for a turn or an expiry
counts as a change too, so a copy that missed one (its notice lost with the
node that committed it) catches up there.

Decisions never trust the copy: the registrar's turn (registrar/shared.py)
re-reads the account (one round trip, carrying the REGISTER's nonce claim)
and commits conditionally; the read also brings the copy of that account up
to date. While a turn holds an account here, changes to it from the stream
wait, so the registrar applies its own commit to a copy nobody else moves
under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from regswitch.cluster.protection import NonceClaims
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.shared import sync_account
from regswitch.storage.base import (
    AccountState,
    AccountWatch,
    BindingOp,
    BindingRecord,
    StorageError,
    StorageUnavailableError,
)
from regswitch.storage.redis_location import RedisLocation, asked_to_stop, stop_reader

log = logging.getLogger("regswitch.cluster")


class _Turn:
    """The watch of one turn; a commit also tells the copy which change it made."""

    def __init__(
        self, owner: ClusterLocation, watch: AccountWatch, aor: str, nonce_fresh: bool
    ) -> None:
        self._owner = owner
        self._watch = watch
        self._aor = aor
        self.nonce_fresh = nonce_fresh  # the nonce count claimed with the read was unused

    @property
    def records(self) -> list[BindingRecord]:
        return self._watch.records

    async def commit(self, ops: Sequence[BindingOp]) -> AccountState | None:
        state = await self._watch.commit(ops)
        if state is not None:
            self._owner._seen[self._aor] = state.change
        return state


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
    @asynccontextmanager
    async def turn(self, aor: str, nonce: tuple[str, int] | None = None) -> AsyncIterator[_Turn]:
        self._held[aor] = self._held.get(aor, 0) + 1
        try:
            queue = None if nonce is None else self.nonces.queue(*nonce)
            async with self.store.watch(aor, queue) as watch:
                sync_account(self.location, aor, watch.records, self.expiry, self.node)
                self._seen[aor] = max(self._seen.get(aor, (0, 0)), watch.change)
                fresh = nonce is None or self.nonces.fresh(watch.queued[0])
                yield _Turn(self, watch, aor, fresh)
        finally:
            held = self._held[aor] - 1
            if held:
                self._held[aor] = held
            else:
                del self._held[aor]
                deferred = self._deferred.pop(aor, None)
                if deferred is not None:
                    self._apply(deferred)

    async def expire(self, binding: Binding, now: float) -> bool:
        # not due after all: this copy missed a change (its notice was lost with
        # the node that committed it), and catches up on what was read
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
                for entry_id, state in await self.store.changes(self._position):
                    self._position = entry_id
                    if state is not None:  # None: this node's own, applied at its commit
                        self._apply(state)
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
