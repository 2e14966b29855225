"""The registration decision (docs/behaviour.md §3.1–3.5), pure: bindings and
request in, Decision out.

No I/O and no clock: `now` is in the request. The service applies the
decision; probing an old device (§3.4) is the service's job, after which it
calls `decide` again with the probe results.
"""

from __future__ import annotations

from typing import Any, Literal

from regswitch.registrar.bindings import Binding

# The inputs are built for every REGISTER and never changed after; they are
# not `frozen` only because that triples their construction cost in CPython.
Outcome = Literal["ok", "reject", "probe", "error"]
RemovalWhy = Literal["unregistered", "wildcard", "replaced"]


class ContactRequest:
    __slots__ = ("expires", "instance", "key", "reg_id", "uri")

    def __init__(
        self,
        uri: str,
        key: str,
        expires: int,
        instance: str | None = None,
        reg_id: str | None = None,
    ) -> None:
        self.uri = uri
        self.key = key  # comparison form of the URI (RFC 3261 §19.1.4 for what we compare)
        self.expires = expires  # granted seconds, 0 = remove
        self.instance = instance
        self.reg_id = reg_id


class RegisterRequest:
    __slots__ = (
        "aor",
        "call_id",
        "conn_id",
        "cseq",
        "local_ip",
        "local_port",
        "nat",
        "node",
        "now",
        "path",
        "source_ip",
        "source_port",
        "transport",
        "user_agent",
    )

    def __init__(
        self,
        aor: str,
        call_id: str,
        cseq: int,
        transport: str,
        source_ip: str,
        source_port: int,
        local_ip: str,
        local_port: int,
        conn_id: int,
        user_agent: str | None,
        path: tuple[str, ...],
        now: float,
        node: str = "",
        nat: bool = True,
    ) -> None:
        self.aor = aor
        self.call_id = call_id
        self.cseq = cseq
        self.transport = transport
        self.source_ip = source_ip
        self.source_port = source_port
        self.local_ip = local_ip
        self.local_port = local_port
        self.conn_id = conn_id
        self.user_agent = user_agent
        self.path = path
        self.now = now
        self.node = node
        self.nat = nat  # the source differs from the top Via's sent-by

    def at(self, now: float) -> RegisterRequest:
        """The same request, decided at `now` (after a probe)."""
        return RegisterRequest(
            self.aor,
            self.call_id,
            self.cseq,
            self.transport,
            self.source_ip,
            self.source_port,
            self.local_ip,
            self.local_port,
            self.conn_id,
            self.user_agent,
            self.path,
            now,
            self.node,
            self.nat,
        )


class Policy:
    __slots__ = ("flap_held", "if_unreachable", "keep_calls", "max_contacts", "replace")

    def __init__(
        self,
        replace: bool,
        keep_calls: bool,
        max_contacts: int,
        if_unreachable: bool,
        flap_held: bool = False,
    ) -> None:
        self.replace = replace  # effective register_replace
        self.keep_calls = keep_calls  # effective replace_keep_calls
        self.max_contacts = max_contacts
        self.if_unreachable = if_unreachable
        self.flap_held = flap_held


class Change:
    """A binding to create (`binding` None) or update in place; `values` are
    always every field a REGISTER sets (`binding_values`)."""

    __slots__ = ("binding", "kind", "values")

    def __init__(
        self,
        binding: Binding | None,
        values: dict[str, Any],
        kind: Literal["new", "refresh", "same-device", "new-flow"],
    ) -> None:
        self.binding = binding
        self.values = values
        self.kind = kind


class Removal:
    __slots__ = ("binding", "kick", "replaced_by", "why")

    def __init__(
        self,
        binding: Binding,
        why: RemovalWhy,
        kick: bool = False,
        replaced_by: str | None = None,
    ) -> None:
        self.binding = binding
        self.why = why
        self.kick = kick  # end its calls (replace without keep-calls)
        self.replaced_by = replaced_by  # contact that took its place


class Decision:
    __slots__ = (
        "changes",
        "conflict",
        "flapping",
        "outcome",
        "probe",
        "reason",
        "removals",
        "status",
    )

    def __init__(
        self,
        outcome: Outcome,
        changes: list[Change] | None = None,
        removals: list[Removal] | None = None,
        probe: list[Binding] | None = None,
        status: int = 200,
        reason: str | None = None,
        conflict: list[Binding] | None = None,
        flapping: bool = False,
    ) -> None:
        self.outcome = outcome
        self.changes = [] if changes is None else changes
        self.removals = [] if removals is None else removals
        self.probe = [] if probe is None else probe
        self.status = status  # this and `reason`: for "reject" / "error"
        self.reason = reason
        self.conflict = [] if conflict is None else conflict
        self.flapping = flapping


def binding_values(req: RegisterRequest, contact: ContactRequest) -> dict[str, Any]:
    """Every field a REGISTER sets on a binding (id, registered_at excluded)."""
    return {
        "aor": req.aor,
        "contact": contact.uri,
        "contact_key": contact.key,
        "transport": req.transport,
        "source_ip": req.source_ip,
        "source_port": req.source_port,
        "local_ip": req.local_ip,
        "local_port": req.local_port,
        "conn_id": req.conn_id,
        "call_id": req.call_id,
        "cseq": req.cseq,
        "expires_at": req.now + contact.expires,
        "instance": contact.instance,
        "reg_id": contact.reg_id,
        "user_agent": req.user_agent,
        "path": req.path,
        "refreshed_at": req.now,
        "reachable": True,
        "node": req.node,
        "nat": req.nat,
    }


def decide(
    bindings: list[Binding],
    req: RegisterRequest,
    contacts: list[ContactRequest] | None,
    policy: Policy,
    probed: dict[str, bool] | None = None,
) -> Decision:
    """Decide one REGISTER.

    `contacts` None means `Contact: *` with Expires 0 (remove all).
    `probed` maps binding id -> answered the §3.4 OPTIONS probe.
    """
    live = [b for b in bindings if b.expires_at > req.now]
    if contacts is None:
        for b in live:
            if b.call_id == req.call_id and req.cseq <= b.cseq:
                return _error(500, "CSeq out of order")
        return Decision("ok", removals=[Removal(b, "wildcard") for b in live])

    decision = Decision("ok")
    matched: set[str] = set()  # bindings this request already touched
    removed: set[str] = set()
    added_devices: list[str] = []

    for contact in contacts:
        if contact.expires == 0:
            for b in live:
                if b.id in removed or b.contact_key != contact.key:
                    continue
                if b.call_id == req.call_id and req.cseq <= b.cseq:
                    return _error(500, "CSeq out of order")
                decision.removals.append(Removal(b, "unregistered"))
                removed.add(b.id)
            continue

        if matched or removed:
            candidates = [b for b in live if b.id not in matched and b.id not in removed]
        else:
            candidates = live
        same_call = [b for b in candidates if b.call_id == req.call_id]
        target: Binding | None = None
        kind: Literal["refresh", "same-device"] = "refresh"
        if same_call:
            target = next((b for b in same_call if b.contact_key == contact.key), None)
            if target is None and contact.instance:
                target = next((b for b in same_call if b.instance == contact.instance), None)
            if target is None:
                # The same Call-ID is the same registration (§3.1) whatever its new
                # contact, also when the refresh is the first to carry an instance;
                # only a different declared instance makes it another device.
                target = next((b for b in same_call if not (contact.instance and b.instance)), None)
            if target is not None and req.cseq <= target.cseq:
                return _error(500, "CSeq out of order")
        if target is None:
            kind = "same-device"
            if contact.instance:
                target = next(
                    (
                        b
                        for b in candidates
                        if b.instance == contact.instance
                        and (b.reg_id == contact.reg_id or not b.reg_id or not contact.reg_id)
                    ),
                    None,
                )
            if target is None:
                target = next(
                    (
                        b
                        for b in candidates
                        if b.contact_key == contact.key and b.source_ip == req.source_ip
                    ),
                    None,
                )
            if target is None:
                target = next((b for b in candidates if _same_address(b, req, contact)), None)
        if target is not None:
            matched.add(target.id)
            decision.changes.append(Change(target, binding_values(req, contact), kind))
            continue

        values = binding_values(req, contact)
        same_device_flow = contact.instance is not None and any(
            b.instance == contact.instance for b in candidates
        )
        decision.changes.append(Change(None, values, "new-flow" if same_device_flow else "new"))
        if same_device_flow:
            continue
        # A different device: does it exceed max_contacts? (docs/behaviour.md §3.3)
        device = f"instance:{contact.instance}" if contact.instance else f"new:{len(added_devices)}"
        added_devices.append(device)
        staying = [b for b in live if b.id not in removed] if removed else live
        if len(staying) + len(added_devices) <= policy.max_contacts:
            continue  # fewer bindings than the limit: fewer devices too
        devices = _devices_oldest_first(staying)
        excess = len(devices) + len(added_devices) - policy.max_contacts
        if excess <= 0:
            continue
        victims = [b for _, group in devices[:excess] for b in group]
        verdict = _conflict(victims, policy, probed or {})
        if verdict.outcome != "ok":
            return verdict
        for b in victims:
            kick = not policy.keep_calls
            decision.removals.append(Removal(b, "replaced", kick=kick, replaced_by=contact.uri))
            removed.add(b.id)
    return decision


def needs_return_path(decision: Decision, req: RegisterRequest) -> bool:
    """Would applying `decision` take something from a registered device: a
    removal, a replace, or a binding moved to another source or contact? For
    an account authenticated by its address alone that waits for proof that
    the sender receives at its source address. A refresh in place, or a new
    binding that evicts nobody, stays cheap."""
    if decision.outcome != "ok":
        return False
    if decision.removals:
        return True
    for change in decision.changes:
        b = change.binding
        if b is None:
            continue
        if (b.transport, b.source_ip, b.source_port) != (
            req.transport,
            req.source_ip,
            req.source_port,
        ):
            return True
        if b.contact_key != change.values["contact_key"]:
            return True
    return False


def _same_address(b: Binding, req: RegisterRequest, contact: ContactRequest) -> bool:
    """The same transport, IP and port as the old binding is the same device
    (docs/behaviour.md §10): only one process holds that port, e.g. a phone
    restarted with a new Contact user part. A different declared instance
    still says otherwise."""
    return (
        b.source_port == req.source_port
        and b.source_ip == req.source_ip
        and b.transport == req.transport
        and not (contact.instance and b.instance and contact.instance != b.instance)
    )


def _devices_oldest_first(bindings: list[Binding]) -> list[tuple[str, list[Binding]]]:
    groups: dict[str, list[Binding]] = {}
    for b in bindings:
        groups.setdefault(b.device_key, []).append(b)
    return sorted(groups.items(), key=lambda item: min(b.registered_at for b in item[1]))


def _conflict(victims: list[Binding], policy: Policy, probed: dict[str, bool]) -> Decision:
    """Replace policy for a new device that would exceed max_contacts."""
    if policy.replace:
        if policy.flap_held:
            return Decision("reject", conflict=victims, flapping=True)
        return Decision("ok")
    if policy.if_unreachable:
        to_probe = [b for b in victims if b.reachable and b.id not in probed]
        if to_probe:
            return Decision("probe", probe=to_probe, conflict=victims)
        if all(not b.reachable or not probed.get(b.id, True) for b in victims):
            return Decision("ok")
    return Decision("reject", conflict=victims)


def _error(status: int, reason: str) -> Decision:
    return Decision("error", status=status, reason=reason)
