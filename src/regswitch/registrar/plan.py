"""The second half of a REGISTER's step 6 (docs/behaviour.md §3): what an
"ok" decision does, worked out before anything changes.

`policy.decide` says which bindings to create, renew and remove; `plan`
turns that into values: the new bindings (with their ids), the fields to
set on renewed ones, the storage writes, and the events to announce. It
reads the decision and the request and changes nothing, so one node
(service.py) and a cluster node (shared.py, which commits `ops` to the
shared location before it applies anything) apply the same plan.

A replacement's event is not planned here: it names the calls the kick
ended, which only the kick itself can tell (the registrar builds it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from regswitch.common import domain_events as ev
from regswitch.registrar.bindings import Binding
from regswitch.registrar.policy import Decision, RegisterRequest, Removal
from regswitch.storage.base import BindingOp, BindingRecord


class Plan:
    """The effects of one "ok" decision, in the order they are applied."""

    __slots__ = ("created", "events", "kinds", "ops", "removals", "updates")

    def __init__(self) -> None:
        self.created: list[Binding] = []  # new bindings, ids given
        self.updates: list[tuple[Binding, dict[str, Any]]] = []  # binding, fields to set
        # each removal with its event; None: a replacement (the registrar's event)
        self.removals: list[tuple[Removal, ev.Unregistered | None]] = []
        self.ops: list[BindingOp] = []  # the storage writes, all of them
        self.events: list[ev.DomainEvent] = []  # of the created and renewed bindings
        self.kinds: list[str] = []  # each change's kind, for the counters


def plan(decision: Decision, req: RegisterRequest, new_id: Callable[[], str]) -> Plan:
    """The plan of `decision` (outcome "ok") for `req`; `new_id` names new bindings."""
    result = Plan()
    now = req.now
    for change in decision.changes:
        values = change.values
        old = change.binding
        if old is None:
            binding = Binding(id=new_id(), registered_at=now, **values)
            result.created.append(binding)
            result.ops.append(BindingOp.upsert(binding.to_record()))
            result.events.append(
                ev.Registered(
                    account=req.aor,
                    source=binding.source,
                    contact=binding.contact,
                    expires=binding.expires_in(now),
                    user_agent=binding.user_agent,
                    binding=binding.id,
                    kind=change.kind,
                )
            )
        else:
            record = _renewed(old, values)
            result.updates.append((old, values))
            result.ops.append(BindingOp.upsert(record))
            source = f"{record.transport}:{record.source_ip}:{record.source_port}"
            moved = old.contact != record.contact or old.source != source
            event = ev.Refreshed if change.kind == "refresh" else ev.SameDevice
            result.events.append(event(
                account=req.aor, source=source, contact=record.contact, binding=old.id,
                expires=max(0, int(record.expires_at - now + 0.5)),
                old_contact=old.contact if moved else None,
                old_source=old.source if moved else None,
            ))  # fmt: skip
        result.kinds.append(change.kind)
    source = f"{req.transport}:{req.source_ip}:{req.source_port}"
    for removal in decision.removals:
        gone = removal.binding
        result.ops.append(BindingOp.delete(gone.id, gone.aor))
        notice = None
        if removal.why != "replaced":
            notice = ev.Unregistered(
                account=req.aor,
                source=source,
                contact=gone.contact,
                binding=gone.id,
                wildcard=removal.why == "wildcard",
            )
        result.removals.append((removal, notice))
    return result


def _renewed(binding: Binding, values: dict[str, Any]) -> BindingRecord:
    """The stored form of `binding` once `values` (every field a REGISTER sets:
    `policy.binding_values`) are set on it."""
    stored = {name: value for name, value in values.items() if name != "contact_key"}
    return BindingRecord(id=binding.id, registered_at=binding.registered_at, **stored)
