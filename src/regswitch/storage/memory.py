"""In-memory storage: the same contract as the SQLite backend, for app unit tests.

Data lives in the `MemoryStorage` object, so closing and reopening the same
instance keeps it (as a file database would). Writes take effect at once;
write-behind `add()` is therefore already "flushed".
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Self

from regswitch.storage.base import (
    Account,
    BindingOp,
    BindingRecord,
    CdrFilter,
    CdrRecord,
    Domain,
    EventFilter,
    EventRecord,
    NewEvent,
    StorageClosedError,
    normalise_aor,
)


class _Lifecycle:
    open = False

    def check(self) -> None:
        if not self.open:
            raise StorageClosedError("storage is not open")


class MemoryAccountStore:
    def __init__(self, life: _Lifecycle) -> None:
        self._life = life
        self._rows: dict[str, Account] = {}

    async def list_all(self) -> list[Account]:
        self._life.check()
        return sorted(self._rows.values(), key=lambda a: a.aor)

    async def get(self, aor: str) -> Account | None:
        self._life.check()
        return self._rows.get(normalise_aor(aor))

    async def put(self, account: Account) -> None:
        self._life.check()
        self._rows[account.aor] = account

    async def put_many(self, accounts: Sequence[Account]) -> None:
        self._life.check()
        for account in accounts:
            self._rows[account.aor] = account

    async def delete(self, aor: str) -> bool:
        self._life.check()
        return self._rows.pop(normalise_aor(aor), None) is not None


class MemoryDomainStore:
    def __init__(self, life: _Lifecycle) -> None:
        self._life = life
        self._rows: dict[str, Domain] = {}

    async def list_all(self) -> list[Domain]:
        self._life.check()
        return sorted(self._rows.values(), key=lambda d: d.name)

    async def put(self, domain: Domain) -> None:
        self._life.check()
        self._rows[domain.name] = domain

    async def delete(self, name: str) -> bool:
        self._life.check()
        return self._rows.pop(name.lower(), None) is not None


class MemoryParamStore:
    def __init__(self, life: _Lifecycle) -> None:
        self._life = life
        self._rows: dict[str, str] = {}

    async def load(self) -> dict[str, str]:
        self._life.check()
        return dict(self._rows)

    async def set(self, name: str, value: str) -> None:
        self._life.check()
        self._rows[name] = value


class MemoryBindingStore:
    def __init__(self, life: _Lifecycle) -> None:
        self._life = life
        self._rows: dict[str, BindingRecord] = {}
        self.ops_committed = 0
        self.commits = 0

    async def load(self) -> list[BindingRecord]:
        self._life.check()
        return list(self._rows.values())

    async def load_account(self, aor: str) -> list[BindingRecord]:
        self._life.check()
        return [r for r in self._rows.values() if r.aor == aor]

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        self._write(ops)

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._write(ops)
        except Exception as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        return fut

    def _write(self, ops: Sequence[BindingOp]) -> None:
        self._life.check()
        for op in ops:
            if op.kind == "upsert":
                assert op.record is not None
                self._rows[op.binding_id] = op.record
            else:
                self._rows.pop(op.binding_id, None)
        self.ops_committed += len(ops)
        self.commits += 1


class MemoryEventStore:
    def __init__(self, life: _Lifecycle) -> None:
        self._life = life
        self._rows: list[EventRecord] = []
        self._ids = itertools.count(1)
        self.dropped = 0

    def add(self, event: NewEvent) -> EventRecord:
        record = EventRecord.from_new(next(self._ids), event)
        if self._life.open:
            self._rows.append(record)
        else:
            self.dropped += 1
        return record

    async def query(self, flt: EventFilter) -> list[EventRecord]:
        self._life.check()
        out: list[EventRecord] = []
        for rec in reversed(self._rows):
            if len(out) >= flt.limit:
                break
            if (flt.type is not None and rec.type != flt.type) or (
                flt.types and rec.type not in flt.types
            ):
                continue
            if flt.account is not None and rec.account != flt.account:
                continue
            if flt.after_id is not None and rec.id <= flt.after_id:
                continue
            if flt.before_id is not None and rec.id >= flt.before_id:
                continue
            if (flt.since is not None and rec.time < flt.since) or (
                flt.until is not None and rec.time >= flt.until
            ):
                continue
            if flt.no_account and rec.account is not None:
                continue
            out.append(rec)
        return out

    async def top_accounts(self, type: str, since: float, limit: int) -> list[tuple[str, int]]:
        self._life.check()
        counts = Counter(
            r.account for r in self._rows if r.type == type and r.time >= since and r.account
        )
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    async def flush(self) -> None:
        return None

    async def prune(self, before: float, limit: int) -> int:
        self._life.check()
        # ids increase with time: the oldest are at the front
        gone = [i for i, rec in enumerate(self._rows) if rec.time < before][:limit]
        for i in reversed(gone):
            del self._rows[i]
        return len(gone)


class MemoryCdrStore:
    def __init__(self, life: _Lifecycle) -> None:
        self._life = life
        self._rows: dict[str, tuple[int, CdrRecord]] = {}
        self._seq = itertools.count()
        self.dropped = 0

    def add(self, cdr: CdrRecord) -> None:
        if not self._life.open:
            self.dropped += 1
            return
        self._rows[cdr.id] = (next(self._seq), cdr)

    async def query(self, flt: CdrFilter) -> list[CdrRecord]:
        self._life.check()
        rows = sorted(self._rows.values(), key=lambda r: (r[1].start, r[0]), reverse=True)
        out: list[CdrRecord] = []
        for _, cdr in rows:
            if len(out) >= flt.limit:
                break
            if flt.account is not None and flt.account not in (cdr.caller, cdr.callee):
                continue
            if flt.reason is not None and cdr.end_reason != flt.reason:
                continue
            if flt.since is not None and cdr.start < flt.since:
                continue
            if flt.until is not None and cdr.start >= flt.until:
                continue
            out.append(cdr)
        return out

    async def flush(self) -> None:
        return None

    async def prune(self, before: float, limit: int) -> int:
        self._life.check()
        old = sorted(
            (row for row in self._rows.values() if row[1].start < before),
            key=lambda row: row[1].start,
        )[:limit]
        for _, cdr in old:
            del self._rows[cdr.id]
        return len(old)


class MemoryStorage:
    """`Storage` kept in process memory. Not durable; for tests and demos."""

    def __init__(self) -> None:
        self._life = _Lifecycle()
        self.accounts = MemoryAccountStore(self._life)
        self.params = MemoryParamStore(self._life)
        self.domains = MemoryDomainStore(self._life)
        self.bindings = MemoryBindingStore(self._life)
        self.events = MemoryEventStore(self._life)
        self.cdrs = MemoryCdrStore(self._life)

    @property
    def problem(self) -> str | None:
        return None

    @property
    def stats(self) -> Mapping[str, float]:
        commits = self.bindings.commits
        ops = self.bindings.ops_committed
        return {
            "write_behind_depth": 0,
            "write_through_depth": 0,
            "events_dropped": self.events.dropped,
            "cdrs_dropped": self.cdrs.dropped,
            "commits": commits,
            "ops_committed": ops,
            "ops_per_commit": ops / commits if commits else 0.0,
            "write_errors": 0,
        }

    async def open(self) -> None:
        self._life.open = True

    async def close(self) -> None:
        self._life.open = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
