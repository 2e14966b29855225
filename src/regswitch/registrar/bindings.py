"""Bindings in memory and the location index (AOR -> bindings, id -> binding)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from regswitch.sip.errors import ParseError
from regswitch.sip.flow import Flow
from regswitch.sip.uri import parse_uri
from regswitch.storage.base import BindingRecord


@dataclass(slots=True, kw_only=True)
class Binding(BindingRecord):
    """One registered contact of an account, live: the stored fields
    (BindingRecord; times are wall-clock epochs) plus what only memory needs."""

    # not stored: derived or runtime state
    contact_key: str = ""
    missed_keepalives: int = 0
    keepalive_unanswered: bool = False  # the last keepalive OPTIONS has no reply yet
    keepalive_due: int = 0  # the keepalive schedule's bucket of this binding (0: none)
    _target: tuple[str, tuple[str, int]] | None = None  # (contact, its address)

    @property
    def flow(self) -> Flow:
        """Where requests to this binding go. Behind NAT (or on a connection):
        the address the REGISTER came from, the only one that reaches the
        device. Otherwise the Contact's address, which a registration made on
        behalf of a device may set to another port or host."""
        remote = (self.source_ip, self.source_port)
        if not self.nat and self.transport == "udp":
            remote = self._contact_address() or remote
        return Flow(self.transport, remote, (self.local_ip, self.local_port), self.conn_id)

    @property
    def contact_at_source(self) -> bool:
        """Does the Contact name the address the REGISTER came from? (No: the
        device is behind NAT, or its Contact names a host, not an address.)"""
        return self._contact_address() == (self.source_ip, self.source_port)

    def _contact_address(self) -> tuple[str, int] | None:
        target = self._target
        if target is not None and target[0] == self.contact:
            return target[1]
        try:
            uri = parse_uri(self.contact)
            ipaddress.ip_address(uri.host.strip("[]"))
        except (ParseError, ValueError):
            return None  # a host name: we do not resolve names; use the source
        address = (uri.host.strip("[]"), uri.port or (5061 if uri.scheme == "sips" else 5060))
        self._target = (self.contact, address)
        return address

    @property
    def source(self) -> str:
        return f"{self.transport}:{self.source_ip}:{self.source_port}"

    @property
    def device_key(self) -> str:
        """What counts as one device toward max_contacts (docs/behaviour.md §3.2)."""
        return f"instance:{self.instance}" if self.instance else f"binding:{self.id}"

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))

    def to_record(self) -> BindingRecord:
        return BindingRecord(
            id=self.id,
            aor=self.aor,
            contact=self.contact,
            transport=self.transport,
            source_ip=self.source_ip,
            source_port=self.source_port,
            local_ip=self.local_ip,
            local_port=self.local_port,
            conn_id=self.conn_id,
            call_id=self.call_id,
            cseq=self.cseq,
            expires_at=self.expires_at,
            instance=self.instance,
            reg_id=self.reg_id,
            user_agent=self.user_agent,
            path=self.path,
            registered_at=self.registered_at,
            refreshed_at=self.refreshed_at,
            reachable=self.reachable,
            node=self.node,
            nat=self.nat,
        )

    @classmethod
    def from_record(cls, record: BindingRecord, contact_key: str = "") -> Binding:
        # field by field, not through dataclasses.fields(): a restart builds a
        # million of these, and the generic copy was most of its time
        r = record
        return cls(
            id=r.id, aor=r.aor, contact=r.contact, transport=r.transport,
            source_ip=r.source_ip, source_port=r.source_port, local_ip=r.local_ip,
            local_port=r.local_port, conn_id=r.conn_id, call_id=r.call_id, cseq=r.cseq,
            expires_at=r.expires_at, instance=r.instance, reg_id=r.reg_id,
            user_agent=r.user_agent, path=r.path, registered_at=r.registered_at,
            refreshed_at=r.refreshed_at, reachable=r.reachable, node=r.node, nat=r.nat,
            # most contacts are already in comparison form: one string for both
            contact_key=r.contact if contact_key == r.contact else contact_key,
        )  # fmt: skip

    def view(self, now: float) -> dict[str, object]:
        """The console's view of the binding."""
        return {
            "id": self.id,
            "account": self.aor,
            "contact": self.contact,
            "transport": self.transport,
            "source_ip": self.source_ip,
            "source_port": self.source_port,
            "source": self.source,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "instance": self.instance,
            "reg_id": self.reg_id,
            "user_agent": self.user_agent,
            "path": list(self.path),
            "registered_at": self.registered_at,
            "refreshed_at": self.refreshed_at,
            "expires_at": self.expires_at,
            "expires_in": self.expires_in(now),
            "reachable": self.reachable,
            "nat": self.nat,
            "node": self.node,
        }


class Location:
    """The location service: every current binding, indexed by AOR and by id."""

    def __init__(self) -> None:
        self._by_aor: dict[str, list[Binding]] = {}
        self._by_id: dict[str, Binding] = {}
        # told of every binding added (keepalive schedules it)
        self.on_add: list[Callable[[Binding], None]] = []

    def of(self, aor: str) -> list[Binding]:
        return self._by_aor.get(aor, [])

    def get(self, binding_id: str) -> Binding | None:
        return self._by_id.get(binding_id)

    def add(self, binding: Binding) -> None:
        self._by_id[binding.id] = binding
        bindings = self._by_aor.get(binding.aor)
        if bindings is None:
            # most accounts have one binding: a list sized for one, not for four
            self._by_aor[binding.aor] = [binding]
        else:
            bindings.append(binding)
        for listener in self.on_add:
            listener(binding)

    def remove(self, binding: Binding) -> bool:
        if self._by_id.pop(binding.id, None) is None:
            return False
        bindings = self._by_aor.get(binding.aor)
        if bindings is not None:
            bindings[:] = [b for b in bindings if b.id != binding.id]
            if not bindings:
                del self._by_aor[binding.aor]
        return True

    def __iter__(self) -> Iterator[Binding]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, binding_id: object) -> bool:
        return binding_id in self._by_id
