"""The domain events: what happened to registrations, calls, accounts and the
switch, one small frozen class per event type (as sip/events.py does for the
transaction layer), and `details_of`, the one place an event becomes the
stored and streamed record (`type`, `account`, `source`, `details`).

The classes are the event schema: the SSE stream, `/api/events`, an
account's history and the web console read the `details` these fields make
(docs/events.md describes each type). A field whose default is None is left
out of `details` while it is None (a refresh that did not move has no
`old_contact`); every other field is always there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

# The event types (the `type` of a stored event).
REGISTERED = "registered"
REFRESHED = "refreshed"
SAME_DEVICE = "same-device"
UNREGISTERED = "unregistered"
EXPIRED = "expired"
REPLACED = "replaced"  # a kick (or a keep-calls replace): old -> new contact
REJECTED = "rejected"  # replace Off (or flapping hold) refused a new device
AUTH_FAILED = "auth-failed"
PARAM_CHANGED = "param-changed"
FLOOD_BLOCKED = "flood-blocked"
FLAPPING = "flapping"
REACHABILITY = "reachability"
DELETED = "deleted"  # a registration removed from the console
CREDENTIAL_SHARING = "credential-sharing-suspected"
ACCOUNT_CHANGED = "account-changed"
CALL_STARTED = "call-started"
CALL_ANSWERED = "call-answered"
CALL_ENDED = "call-ended"
DOMAIN_CHANGED = "domain-changed"
NODE_DOWN = "node-down"  # a cluster node stopped; a survivor closed its calls


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Who it is about (`account`, None for the switch as a whole) and where it
    came from (`source`: `transport:host:port` of a device, an address, or
    `api`)."""

    TYPE: ClassVar[str]
    account: str | None = None
    source: str | None = None


_TRANSPORT_PREFIXES = ("udp:", "tcp:", "tls:")


def source_host(source: str | None) -> str:
    """The host of an event source: "udp:192.0.2.1:5060" -> "192.0.2.1"."""
    if source is None:
        return ""
    if source.startswith(_TRANSPORT_PREFIXES):
        source = source[4:].rpartition(":")[0]  # transport:host:port, host maybe IPv6
    return source.strip("[]")


# --------------------------------------------------------------------------- registrations


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered(DomainEvent):
    TYPE: ClassVar[str] = REGISTERED
    contact: str
    binding: str
    expires: int
    user_agent: str | None
    kind: str  # what policy.decide made of it: "new", "replace", ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Refreshed(DomainEvent):
    """A binding renewed; `old_contact`/`old_source` when it moved (a refresh
    from a new address, or a same-device re-registration)."""

    TYPE: ClassVar[str] = REFRESHED
    contact: str
    binding: str
    expires: int
    old_contact: str | None = None
    old_source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SameDevice(Refreshed):
    """The same device (instance or Call-ID) registered again, maybe from a new
    address: its binding is kept, and so are its calls."""

    TYPE: ClassVar[str] = SAME_DEVICE


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered(DomainEvent):
    TYPE: ClassVar[str] = UNREGISTERED
    contact: str
    binding: str
    wildcard: bool  # Contact: *


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired(DomainEvent):
    TYPE: ClassVar[str] = EXPIRED
    contact: str
    binding: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Replaced(DomainEvent):
    """A new device took an old one's place: kicked (its calls ended) or, with
    keep-calls, only its binding replaced."""

    TYPE: ClassVar[str] = REPLACED
    old_contact: str
    old_source: str
    old_binding: str
    new_contact: str | None
    new_source: str
    kicked: bool
    keep_calls: bool
    calls_ended: list[str]
    policy: str  # "on" | "off-unreachable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(DomainEvent):
    """A REGISTER refused: what the device was told (`status`, `reason` and
    the rest when given), and why (the device kept, or the tombstone)."""

    TYPE: ClassVar[str] = REJECTED
    status: int
    reason: str
    new_contact: str | None = None
    old_contact: str | None = None
    old_source: str | None = None
    retry_after: int | None = None
    flapping: bool | None = None
    warning: str | None = None
    # refused by a tombstone (a kicked device trying to come back)
    tombstone: str | None = None
    old_binding: str | None = None
    replaced_by: str | None = None
    replaced_at: float | None = None
    until: float | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted(DomainEvent):
    TYPE: ClassVar[str] = DELETED
    contact: str
    binding: str
    kicked: bool
    calls_ended: list[str]
    blocked_until: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reachability(DomainEvent):
    TYPE: ClassVar[str] = REACHABILITY
    contact: str
    binding: str
    reachable: bool


# --------------------------------------------------------------------------- protection


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailed(DomainEvent):
    TYPE: ClassVar[str] = AUTH_FAILED
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FloodBlocked(DomainEvent):
    TYPE: ClassVar[str] = FLOOD_BLOCKED
    reason: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Flapping(DomainEvent):
    """Replacements of an account held: too many in the window (or, with
    `kind` "ping-pong", two devices taking turns)."""

    TYPE: ClassVar[str] = FLAPPING
    limit: int
    window: float
    held_until: float | None
    kind: str | None = None
    devices: list[str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSharing(DomainEvent):
    TYPE: ClassVar[str] = CREDENTIAL_SHARING
    why: str  # "sources" | "instances" | "kicks"
    networks: list[str]
    instances: list[str]
    sources: list[str]
    user_agents: list[str]
    kicks: int
    locked_until: float | None


# --------------------------------------------------------------------------- calls


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(DomainEvent):
    TYPE: ClassVar[str] = CALL_STARTED
    call: str
    callee: str
    forks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(DomainEvent):
    TYPE: ClassVar[str] = CALL_ANSWERED
    call: str
    callee: str
    callee_contact: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(DomainEvent):
    """A call's end (`call` None: refused before it was set up)."""

    TYPE: ClassVar[str] = CALL_ENDED
    call: str | None
    callee: str
    reason: str
    direction: str
    code: int | None
    duration: float


# --------------------------------------------------------------------------- the operator


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamChanged(DomainEvent):
    TYPE: ClassVar[str] = PARAM_CHANGED
    name: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountChanged(DomainEvent):
    TYPE: ClassVar[str] = ACCOUNT_CHANGED
    action: str  # created | updated | deleted | imported
    fields: list[str] | None = None  # updated: which
    created: int | None = None  # imported: how many new
    updated: int | None = None  # imported: how many replaced


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainChanged(DomainEvent):
    TYPE: ClassVar[str] = DOMAIN_CHANGED
    action: str  # created | deleted
    domain: str


# --------------------------------------------------------------------------- a cluster


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDown(DomainEvent):
    """A cluster node stopped; `by` (a surviving node) closed its calls' CDRs."""

    TYPE: ClassVar[str] = NODE_DOWN
    node: str
    last_heartbeat: float
    calls_closed: list[str]
    by: str


EVENT_CLASSES: tuple[type[DomainEvent], ...] = (
    Registered, Refreshed, SameDevice, Unregistered, Expired, Replaced, Rejected, Deleted,
    Reachability, AuthFailed, FloodBlocked, Flapping, CredentialSharing, CallStarted,
    CallAnswered, CallEnded, ParamChanged, AccountChanged, DomainChanged, NodeDown,
)  # fmt: skip

#: What `/api/events?type=` accepts.
EVENT_TYPES: frozenset[str] = frozenset(cls.TYPE for cls in EVENT_CLASSES)


def _detail_fields(cls: type[DomainEvent]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(always, when not None): the names of a class's details."""
    always: list[str] = []
    optional: list[str] = []
    for f in fields(cls):
        if f.name in ("account", "source"):
            continue
        (optional if f.default is None else always).append(f.name)
    return tuple(always), tuple(optional)


# worked out once per class, not per event (a refresh emits one per REGISTER)
_DETAILS = {cls: _detail_fields(cls) for cls in EVENT_CLASSES}


def details_of(event: DomainEvent) -> dict[str, Any]:
    """The event's `details`: its own fields, by name."""
    always, optional = _DETAILS[type(event)]
    details = {name: getattr(event, name) for name in always}
    for name in optional:
        value = getattr(event, name)
        if value is not None:
            details[name] = value
    return details
