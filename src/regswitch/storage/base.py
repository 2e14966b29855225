"""Storage interface: records, filters and the protocols every backend implements.

The app imports this module only, never a backend (sqlite, memory, later
postgres/redis); `storage.factory.open_storage(url)` picks the backend.

Write semantics differ by kind of data, on purpose (DESIGN "Hot-path
performance"):

- accounts, params, bindings are *write-through*: the awaited call returns
  once the change is durably committed (a REGISTER is answered only after its
  binding is stored, so no acknowledged registration is lost by a crash);
- events and CDRs are *write-behind*: `add()` is synchronous, never blocks
  and never raises because storage is slow; a bounded queue absorbs bursts
  and what does not fit is dropped and counted in `Storage.stats`.

All times here are wall-clock epoch seconds (the app's injected clock), not
the loop's monotonic time: they must survive a restart.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload, runtime_checkable

__all__ = [
    "COMMITTED",
    "CONFLICT",
    "END_DIRECTIONS",
    "END_REASONS",
    "POLICY_VALUES",
    "REPLAYED",
    "Account",
    "AccountState",
    "AccountStore",
    "AccountWatch",
    "BindingOp",
    "BindingRecord",
    "BindingStore",
    "CdrFilter",
    "CdrRecord",
    "CdrStore",
    "Domain",
    "DomainStore",
    "EventFilter",
    "EventRecord",
    "EventStore",
    "NewEvent",
    "ParamStore",
    "SharedBindingStore",
    "SlottedEventStore",
    "Storage",
    "StorageClosedError",
    "StorageError",
    "StorageUnavailableError",
    "normalise_aor",
    "shared",
    "shared_port",
]

#: Values of the per-account overrides `register_replace` / `replace_keep_calls`.
POLICY_VALUES: frozenset[str] = frozenset({"inherit", "on", "off"})

#: CDR end reasons (docs/behaviour.md §4).
END_REASONS: frozenset[str] = frozenset(
    {
        "normal",
        "busy",
        "no-answer",
        "cancelled",
        "rejected",
        "not-registered",
        "registration-replaced",
        "registration-deleted",
        "admin-hangup",
        "timeout",
        "error",
        "node-failure",
    }
)

#: Who ended the call (docs/behaviour.md §4).
END_DIRECTIONS: frozenset[str] = frozenset({"caller", "callee", "system"})


class StorageError(Exception):
    """A backend failed to read or write; the operation did not take effect."""


class StorageClosedError(StorageError):
    """The storage is not open (never opened, or already closed)."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached right now (down, restarting, network);
    nothing was written. Worth retrying later: the backend reconnects by itself."""


def normalise_aor(aor: str) -> str:
    """Return the `user@domain` key with the domain lower-cased.

    The user part stays as given: it is case-sensitive (RFC 3261 §19.1.4),
    the host part is not.
    """
    user, at, domain = aor.rpartition("@")
    if not at:
        return aor
    return f"{user}@{domain.lower()}"


@overload
def shared(text: str) -> str: ...
@overload
def shared(text: str | None) -> str | None: ...
def shared(text: str | None) -> str | None:
    """One string object for a value that many records repeat (a domain, a
    transport, a user agent, a policy): a database driver or a parser makes a
    new one each time, and a million bindings would hold a million "udp"s."""
    return sys.intern(text) if text else text


_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
TUPLES_REMEMBERED = 4096


def shared_tuple(texts: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object for a list of strings that many records repeat (an
    account's allowed networks): bounded, a later list only goes unshared."""
    if not texts:
        return ()
    known = _TUPLES.get(texts)
    if known is None:
        if len(_TUPLES) >= TUPLES_REMEMBERED:
            _TUPLES.clear()
        known = _TUPLES[texts] = tuple(shared(t) for t in texts)
    return known


_PORTS: dict[int, int] = {}


def shared_port(port: int) -> int:
    """One int object per port number: above 256 a driver makes a new one per
    row (28 bytes each), and most bindings share a few listening ports."""
    if 0 <= port <= 65535:
        return _PORTS.setdefault(port, port)
    return port


# --------------------------------------------------------------------------- records
#
# Records are values: nobody changes one after building it. The ones built
# for every REGISTER (BindingRecord, BindingOp, NewEvent, EventRecord) are
# not `frozen` only because a frozen dataclass costs three times as much to
# build in CPython.


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A SIP subscriber. Only HA1 digests are stored, never the password."""

    user: str
    domain: str
    ha1_md5: str
    ha1_sha256: str
    allowed_networks: tuple[str, ...] = ()
    max_contacts: int = 1
    register_replace: str = "inherit"
    replace_keep_calls: str = "inherit"
    enabled: bool = True
    created_at: float
    updated_at: float

    def __post_init__(self) -> None:
        if not self.user or not self.domain:
            raise ValueError("account user and domain must not be empty")
        if not isinstance(self.allowed_networks, tuple):
            # A list would compare unequal to what a backend loads back.
            object.__setattr__(self, "allowed_networks", tuple(self.allowed_networks))
        if self.domain != self.domain.lower():
            # The domain is part of the key: one spelling only.
            object.__setattr__(self, "domain", self.domain.lower())
        if self.register_replace not in POLICY_VALUES:
            raise ValueError(
                f"register_replace must be one of inherit/on/off, not {self.register_replace!r}"
            )
        if self.replace_keep_calls not in POLICY_VALUES:
            raise ValueError(
                f"replace_keep_calls must be one of inherit/on/off, not {self.replace_keep_calls!r}"
            )
        if self.max_contacts < 1:
            raise ValueError(f"max_contacts must be >= 1, not {self.max_contacts}")

    @property
    def aor(self) -> str:
        """The key: `user@domain`."""
        return f"{self.user}@{self.domain}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Domain:
    """A SIP domain the switch serves (accounts live in one)."""

    name: str
    created_at: float

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a domain name must not be empty")
        if self.name != self.name.lower():
            object.__setattr__(self, "name", self.name.lower())  # the key: one spelling


@dataclass(slots=True, kw_only=True)
class BindingRecord:
    """The stored form of one registered contact (docs/behaviour.md §1 "Binding").

    `expires_at`, `registered_at`, `refreshed_at` are wall-clock epochs so a
    restarted node can tell which bindings are still valid. `node` names the
    regswitch node holding the binding's connection and calls.
    """

    id: str
    aor: str
    contact: str
    transport: str
    source_ip: str
    source_port: int
    local_ip: str
    local_port: int
    conn_id: int
    call_id: str
    cseq: int
    expires_at: float
    instance: str | None
    reg_id: str | None
    user_agent: str | None
    path: tuple[str, ...]
    registered_at: float
    refreshed_at: float
    reachable: bool = True
    node: str = ""
    # behind NAT when it registered: requests go to the source, not the Contact
    nat: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple):
            object.__setattr__(self, "path", tuple(self.path))


@dataclass(slots=True)
class BindingOp:
    """One change to the binding table; build with `upsert()` / `delete()`."""

    kind: Literal["upsert", "delete"]
    record: BindingRecord | None
    binding_id: str
    # a delete's account when the caller knows it: a shared location keeps
    # bindings by account (an upsert's is in its record)
    aor: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "upsert":
            if self.record is None or self.record.id != self.binding_id:
                raise ValueError("an upsert BindingOp needs the record with binding_id == id")
        elif self.kind == "delete":
            if self.record is not None:
                raise ValueError("a delete BindingOp carries no record")
        else:
            raise ValueError(f"unknown BindingOp kind {self.kind!r}")

    @classmethod
    def upsert(cls, record: BindingRecord) -> BindingOp:
        return cls("upsert", record, record.id)

    @classmethod
    def delete(cls, binding_id: str, aor: str | None = None) -> BindingOp:
        return cls("delete", None, binding_id, aor)


@dataclass(slots=True, kw_only=True)
class NewEvent:
    """An event before the store has given it an id (the argument of `add`).

    `details` must be JSON-serialisable (non-JSON values are stored as
    strings) and must not be mutated after `add()`: it is written later.
    """

    time: float
    type: str
    account: str | None = None
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class EventRecord:
    """A stored event; `id` is assigned by the store and increases."""

    id: int
    time: float
    type: str
    account: str | None = None
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_new(cls, event_id: int, event: NewEvent) -> EventRecord:
        return cls(
            id=event_id,
            time=event.time,
            type=event.type,
            account=event.account,
            source=event.source,
            details=event.details,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrRecord:
    """One call attempt (docs/behaviour.md §4). Times are wall epochs; `answer` is None
    for a call never answered. Contacts/sources/B-leg Call-ID are None when
    there was no such leg (e.g. `not-registered`)."""

    id: str
    caller: str
    callee: str
    caller_contact: str | None = None
    callee_contact: str | None = None
    caller_source: str | None = None
    callee_source: str | None = None
    a_call_id: str
    b_call_id: str | None = None
    start: float
    answer: float | None = None
    end: float
    billable_seconds: int = 0
    final_code: int
    end_reason: str
    end_direction: str

    def __post_init__(self) -> None:
        if self.end_reason not in END_REASONS:
            raise ValueError(f"unknown CDR end_reason {self.end_reason!r}")
        if self.end_direction not in END_DIRECTIONS:
            raise ValueError(f"unknown CDR end_direction {self.end_direction!r}")


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    """Events matching all given fields; ids strictly between the bounds.
    `types` (any of them) narrows like `type`; both may be given. `since <=
    time < until`; `no_account` keeps only events of no account (system-wide
    ones)."""

    type: str | None = None
    types: tuple[str, ...] = ()
    account: str | None = None
    limit: int = 100
    after_id: int | None = None
    before_id: int | None = None
    since: float | None = None
    until: float | None = None
    no_account: bool = False

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError("limit must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrFilter:
    """CDRs matching all given fields.

    `account` matches caller or callee; `reason` matches `end_reason`;
    `since <= start < until`.
    """

    account: str | None = None
    reason: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError("limit must be >= 0")


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class AccountStore(Protocol):
    async def list_all(self) -> list[Account]: ...

    async def get(self, aor: str) -> Account | None:
        """The account for `user@domain` (domain compared case-insensitively)."""
        ...

    async def put(self, account: Account) -> None:
        """Insert or replace (keyed by `account.aor`); write-through."""
        ...

    async def put_many(self, accounts: Sequence[Account]) -> None:
        """`put` of all, in one transaction (bulk import): all or nothing."""
        ...

    async def delete(self, aor: str) -> bool:
        """Remove; True if it existed. Write-through."""
        ...


@runtime_checkable
class DomainStore(Protocol):
    async def list_all(self) -> list[Domain]:
        """Every served domain, by name."""
        ...

    async def put(self, domain: Domain) -> None:
        """Insert or replace (keyed by name); write-through."""
        ...

    async def delete(self, name: str) -> bool:
        """Remove; True if it existed. Write-through."""
        ...


@runtime_checkable
class ParamStore(Protocol):
    async def load(self) -> dict[str, str]:
        """Every stored parameter (those never set are absent: defaults apply)."""
        ...

    async def set(self, name: str, value: str) -> None:
        """Store one value (already validated by the caller); write-through."""
        ...


@runtime_checkable
class BindingStore(Protocol):
    async def load(self) -> list[BindingRecord]:
        """Every stored binding, expired ones included (the app drops those)."""
        ...

    async def load_account(self, aor: str) -> list[BindingRecord]:
        """The stored bindings of one account, expired ones included (a restart
        restores an account that registers before the rest are back)."""
        ...

    async def apply(self, ops: Sequence[BindingOp]) -> None:
        """Apply `ops` in order, atomically; return once durably committed.

        Concurrent calls are group-committed. Cancelling the awaiting task
        does not withdraw the ops: they are committed anyway.
        """
        ...

    def submit(self, ops: Sequence[BindingOp]) -> asyncio.Future[None]:
        """`apply` without a coroutine: queue `ops` now, and get a future that
        resolves once they are committed (the hot path adds a callback to it
        instead of creating a Task per REGISTER)."""
        ...


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account's bindings in a shared location, as one commit left them.
    `change` is the account's version: it orders the account's commits (later
    ones compare greater); (0, 0) for an account never committed."""

    aor: str
    records: tuple[BindingRecord, ...]
    change: tuple[int, int] = (0, 0)


#: What a conditional commit to a shared location came to: written (or, with nothing to
#: write, the account confirmed unchanged); refused because the account changed since the
#: version the decision was made on; refused because its nonce count was used already.
COMMITTED = "committed"
CONFLICT = "conflict"
REPLAYED = "replayed"


class AccountWatch(Protocol):
    """One account's bindings as read at the start of a watch, and the way to
    change them only if nobody else did since (optimistic concurrency)."""

    @property
    def records(self) -> list[BindingRecord]: ...

    async def commit(self, ops: Sequence[BindingOp]) -> AccountState | None:
        """Apply `ops` (all of this account) atomically if the account is
        unchanged since the read; the new state, or None when another writer
        came first (read again, decide again). Raises StorageUnavailableError
        when the location cannot be reached."""
        ...


@runtime_checkable
class SharedBindingStore(BindingStore, Protocol):
    """A location several switches share (a cluster). Besides the plain
    BindingStore writes, a decision about one account is made on a watched
    snapshot and committed only if the account did not change meanwhile."""

    def watch(self, aor: str) -> AbstractAsyncContextManager[AccountWatch]:
        """Read `aor`'s bindings and watch them until the block ends."""
        ...

    async def expire(self, aor: str, binding_id: str, now: float) -> bool:
        """Remove the binding if it is still there and expired at `now` (wall
        clock); True for exactly one caller location-wide."""
        ...

    @property
    def problem(self) -> str | None:
        """Why the location cannot be used now, None while it can."""
        ...


@runtime_checkable
class EventStore(Protocol):
    def add(self, event: NewEvent) -> EventRecord:
        """Assign the next id and queue the event for writing; returns at once.

        The returned record carries the id that `query` will report, so a
        live stream and the stored log agree. If the queue is full the event
        is dropped (counted in stats) but still returned with its id.
        """
        ...

    async def query(self, flt: EventFilter) -> list[EventRecord]:
        """Matching events, newest (highest id) first, at most `flt.limit`."""
        ...

    async def flush(self) -> None:
        """Wait until every event added before this call is written."""
        ...

    async def prune(self, before: float, limit: int) -> int:
        """Delete at most `limit` of the oldest events with `time < before`;
        returns how many went (retention runs this in small batches)."""
        ...

    async def top_accounts(self, type: str, since: float, limit: int) -> list[tuple[str, int]]:
        """The accounts with the most events of `type` since `since`, most first
        (ties by account), as (account, count)."""
        ...


@runtime_checkable
class SlottedEventStore(Protocol):
    """An event store several cluster nodes write (PostgreSQL): each numbers
    its events in the slot it holds, so their ids never collide."""

    def use_slot(self, slot: int, clock: Callable[[], float]) -> None: ...


@runtime_checkable
class CdrStore(Protocol):
    def add(self, cdr: CdrRecord) -> None:
        """Queue the CDR for writing; returns at once (drops are counted).

        Adding a CDR with an existing id replaces it.
        """
        ...

    async def query(self, flt: CdrFilter) -> list[CdrRecord]:
        """Matching CDRs, newest `start` first, at most `flt.limit`."""
        ...

    async def flush(self) -> None:
        """Wait until every CDR added before this call is written."""
        ...

    async def prune(self, before: float, limit: int) -> int:
        """Delete at most `limit` of the oldest CDRs with `start < before`;
        returns how many went (retention runs this in small batches)."""
        ...


@runtime_checkable
class Storage(Protocol):
    """One backend: all stores plus lifecycle and counters.

    Use `await open()` before anything else and `await close()` at the end
    (close writes everything still queued); or `async with storage:`.
    """

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def params(self) -> ParamStore: ...

    @property
    def domains(self) -> DomainStore: ...

    @property
    def bindings(self) -> BindingStore: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def cdrs(self) -> CdrStore: ...

    @property
    def problem(self) -> str | None:
        """Why the backend cannot write now (e.g. the database is unreachable),
        None while it can. Cheap: the hot path reads it per REGISTER."""
        ...

    @property
    def stats(self) -> Mapping[str, float]:
        """Counters for metrics: see the backend for keys; always present:
        `write_behind_depth`, `events_dropped`, `cdrs_dropped`, `commits`,
        `ops_committed`, `ops_per_commit`, `write_errors`."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Storage: ...

    async def __aexit__(self, *exc: object) -> None: ...
