"""Bindings outside a REGISTER (docs/behaviour.md §3.5, §7): restored from
storage at start, expired when due (four times a second, so within a second
of expiry), and deleted from the console, with or without a kick.

On a cluster every node holds every binding and tries to expire it; the one
whose removal commits in the shared location sends the one `expired` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.memory import give_back
from regswitch.common.periodic import Periodic
from regswitch.registrar.bindings import Binding, Location
from regswitch.registrar.contacts import contact_key
from regswitch.registrar.expiry import ExpiryQueue
from regswitch.registrar.kick_guard import KickGuard
from regswitch.registrar.kicker import Kicker
from regswitch.registrar.shared import SharedLocation
from regswitch.sip.errors import ParseError
from regswitch.sip.uri import parse_uri
from regswitch.storage.base import BindingOp, BindingRecord, BindingStore

log = logging.getLogger(__name__)

#: bindings restored between two turns of the event loop (about 50 ms of work)
RESTORE_TURN = 10_000
#: seconds a device is asked to wait (503) while they are restored
RESTORING_RETRY = "5"


class BindingUpkeep:
    def __init__(
        self,
        *,
        location: Location,
        store: BindingStore,
        expiry: ExpiryQueue,
        events: EventBus,
        kicker: Kicker,
        guard: KickGuard,
        clock: Callable[[], float],
        results: Counter[str],
        shared: SharedLocation | None,
        account_key: Callable[[str], str] = str,
    ) -> None:
        self.location = location
        # an account's own key string for the same text (Accounts.key): a
        # restored binding holds it instead of its row's copy
        self.account_key = account_key
        self.store = store
        self.expiry = expiry
        self.events = events
        self.kicker = kicker
        self.guard = guard
        self.clock = clock
        self.results = results  # the registrar's counters: "expired" is one of them
        self.shared = shared
        self._expirer = Periodic(0.25, self.expire_due, "expiry")
        # True while stored bindings are coming back into memory: no call is
        # routed on a partial location, and a registration is decided only
        # once its own account is back (restore_account)
        self.restoring = False
        self.restore_failed: str | None = None
        self._early: set[str] = set()  # accounts restored ahead of the rest
        self._early_reads: dict[str, asyncio.Future[None]] = {}

    async def restore(self) -> int:
        """Load stored bindings, dropping expired ones; returns how many were kept.
        Yields to the event loop every RESTORE_TURN bindings: a switch restoring
        a million answers SIP meanwhile (with 503 where it would need them)."""
        self.restoring = True
        try:
            kept = await self._restore()
        except Exception as exc:
            self.restore_failed = f"restoring bindings failed: {exc!r}"
            raise
        self.restoring = False
        self._early.clear()
        return kept

    def restored(self, aor: str) -> bool:
        """Whether `aor`'s stored bindings are in memory (all are, but during a restore)."""
        return not self.restoring or aor in self._early

    async def restore_account(self, aor: str) -> None:
        """Bring one account's stored bindings back ahead of the rest, so that a
        REGISTER during a restore is decided on all of them; the bulk restore
        then leaves the account alone (its snapshot may predate the decision).
        Raises StorageError when the read fails."""
        reading = self._early_reads.get(aor)
        if reading is None:  # one read, however many REGISTERs of the account wait on it
            reading = asyncio.ensure_future(self._restore_account(aor))
            self._early_reads[aor] = reading
            reading.add_done_callback(lambda _: self._early_reads.pop(aor, None))
        await asyncio.shield(reading)

    async def _restore_account(self, aor: str) -> None:
        records = await self.store.load_account(aor)
        if self.restored(aor):
            return  # the bulk restore ended meanwhile
        now = self.clock()
        expired: list[BindingOp] = []
        for record in records:
            if self.location.get(record.id) is None:  # the bulk may have brought it
                self._bring_back(record, now, expired)
        self._early.add(aor)
        if expired:
            await self.store.apply(expired)

    def restore_in_background(self) -> asyncio.Task[int]:
        """`restore` as a task: a switch answers SIP from the moment its
        accounts are loaded, however many bindings it has to restore."""
        self.restoring = True
        task = asyncio.get_running_loop().create_task(self.restore())
        task.add_done_callback(_log_failure)
        return task

    async def _restore(self) -> int:
        now = self.clock()
        expired: list[BindingOp] = []
        records = await self.store.load()
        # taken from the end, so each record is freed as its binding is built:
        # the memory of both lists is never held at once
        records.reverse()
        while records:
            if len(records) % RESTORE_TURN == 0:
                await asyncio.sleep(0)
            record = records.pop()
            if record.aor not in self._early:
                self._bring_back(record, now, expired)
        give_back()  # what the bulk read left free in the allocator
        if expired:
            await self.store.apply(expired)
        return len(self.location)

    def _bring_back(self, record: BindingRecord, now: float, expired: list[BindingOp]) -> None:
        """One stored binding into memory; an expired or unreadable one is
        listed for deletion instead."""
        if record.expires_at <= now and self.shared is None:
            expired.append(BindingOp.delete(record.id))
            return
        try:
            key = contact_key(parse_uri(record.contact))
        except ParseError:
            expired.append(BindingOp.delete(record.id))
            return
        binding = Binding.from_record(record, key)
        binding.aor = self.account_key(binding.aor)
        self.location.add(binding)
        self.expiry.push(binding.id, binding.expires_at)

    def start(self) -> None:
        self._expirer.start()

    async def stop(self) -> None:
        await self._expirer.stop()

    # --- the console ---------------------------------------------------------------
    async def delete(self, binding_id: str, kick: bool, block: float = 0) -> dict[str, Any] | None:
        """Remove a registration from the console; with `kick`, end its calls;
        with `block` seconds, refuse the device for that long (delete and block)."""
        binding = self.location.get(binding_id)
        if binding is None:
            return None
        self.location.remove(binding)
        blocked_until = self.guard.block(binding, self.clock(), block) if block > 0 else None
        ended = self.kicker(binding, "registration-deleted") if kick else []
        self.events.emit(
            ev.Deleted(
                account=binding.aor,
                source=binding.source,
                contact=binding.contact,
                binding=binding.id,
                kicked=kick,
                calls_ended=ended,
                blocked_until=blocked_until,
            )
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
                ev.Expired(
                    account=binding.aor,
                    source=binding.source,
                    contact=binding.contact,
                    binding=binding.id,
                )
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


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("restoring bindings failed", exc_info=task.exception())
