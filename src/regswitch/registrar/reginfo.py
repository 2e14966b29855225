"""The `reg` event package's document (RFC 3680 §5): application/reginfo+xml.

Pure: bindings and registrar events in, XML bytes out.

Which RFC 3680 contact event a registrar event becomes (§5.1's contact
state machine; the reasons are in docs/signed-out.md):

| registrar event            | contact state | RFC 3680 event |
|----------------------------|---------------|----------------|
| registered                 | active        | registered     |
| same-device                | active        | registered     |
| refreshed                  | active        | refreshed      |
| unregistered               | terminated    | unregistered   |
| expired                    | terminated    | expired        |
| replaced (the old binding) | terminated    | rejected       |
| deleted                    | terminated    | deactivated    |
| deleted and blocked        | terminated    | probation      |

`created` (a contact made by other means than REGISTER) and `shortened` (an
expiry shortened by policy) never happen here: every binding comes from a
REGISTER, and regswitch never shortens one. A replaced contact carries a
`<rs:replaced>` extension element (RFC 3680 §5.4 allows elements of other
namespaces in `<contact>`) with the id of the `replaced` event record, so a
client can look up who replaced it (`GET /api/events?type=replaced`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from regswitch.registrar.bindings import Binding

NS = "urn:ietf:params:xml:ns:reginfo"
EXT_NS = "urn:x-regswitch:params:xml:ns:reginfo-ext"
CONTENT_TYPE = "application/reginfo+xml"

# registrar event type -> (contact state, RFC 3680 event)
EVENTS: dict[str, tuple[str, str]] = {
    "registered": ("active", "registered"),
    "same-device": ("active", "registered"),
    "refreshed": ("active", "refreshed"),
    "unregistered": ("terminated", "unregistered"),
    "expired": ("terminated", "expired"),
    "replaced": ("terminated", "rejected"),
    "deleted": ("terminated", "deactivated"),
}


@dataclass(slots=True)
class ContactState:
    """One `<contact>` of a document."""

    id: str
    uri: str
    state: str  # active | terminated
    event: str
    expires: int | None = None
    duration_registered: int | None = None
    retry_after: int | None = None
    callid: str | None = None
    cseq: int | None = None
    replaced_event: int | None = None  # id of the `replaced` event record
    replaced_by: str | None = None  # the contact that took its place

    def xml(self) -> str:
        attrs = [
            f"id={quoteattr(self.id)}",
            f"state={quoteattr(self.state)}",
            f"event={quoteattr(self.event)}",
        ]
        for name, value in (
            ("expires", self.expires),
            ("duration-registered", self.duration_registered),
            ("retry-after", self.retry_after),
            ("callid", self.callid),
            ("cseq", self.cseq),
        ):
            if value is not None:
                attrs.append(f"{name}={quoteattr(str(value))}")
        inner = f"<uri>{escape(self.uri)}</uri>"
        if self.replaced_event is not None:
            by = f" by={quoteattr(self.replaced_by)}" if self.replaced_by else ""
            inner += f'<rs:replaced event="{self.replaced_event}"{by}/>'
        return f"<contact {' '.join(attrs)}>{inner}</contact>"


def registration_id(aor: str) -> str:
    """A stable `id` of the account's `<registration>` (RFC 3680 §5.4)."""
    return "r" + hashlib.sha256(aor.encode()).hexdigest()[:16]


def active(binding: Binding, now: float) -> ContactState:
    return ContactState(
        id=binding.id,
        uri=binding.contact,
        state="active",
        event="registered",
        expires=binding.expires_in(now),
        duration_registered=max(0, int(now - binding.registered_at)),
        callid=binding.call_id,
        cseq=binding.cseq,
    )


def change(
    event_type: str, details: dict[str, Any], record_id: int, now: float
) -> ContactState | None:
    """The contact change a registrar event makes; None if it changes none."""
    mapped = EVENTS.get(event_type)
    if mapped is None:
        return None
    state, event = mapped
    contact = ContactState(
        id=str(details.get("old_binding") or details.get("binding") or ""),
        uri=str(details.get("old_contact") if event_type == "replaced" else details.get("contact")),
        state=state,
        event=event,
    )
    if not contact.id or contact.uri == "None":
        return None
    if state == "active":
        contact.expires = int(details.get("expires") or 0)
    if event_type == "replaced":
        contact.replaced_event = record_id
        contact.replaced_by = details.get("new_contact")
    blocked_until = details.get("blocked_until")
    if event_type == "deleted" and blocked_until:
        contact.event = "probation"  # come back later, not now (RFC 3680 §5.1)
        contact.retry_after = max(1, int(float(blocked_until) - now + 0.999))
    return contact


def document(aor: str, version: int, full: bool, contacts: list[ContactState], live: int) -> bytes:
    """A reginfo document. `live` is how many contacts the account has now
    (the `<registration>` state: init with none; terminated when a partial
    document reports the last one gone)."""
    if live:
        reg_state = "active"
    elif full or not contacts:
        reg_state = "init"
    else:
        reg_state = "terminated"
    body = "".join(c.xml() for c in contacts)
    ext = f' xmlns:rs="{EXT_NS}"' if any(c.replaced_event is not None for c in contacts) else ""
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<reginfo xmlns="{NS}"{ext} version="{version}" state="{"full" if full else "partial"}">'
        f"<registration aor={quoteattr('sip:' + aor)} id={quoteattr(registration_id(aor))}"
        f' state="{reg_state}">{body}</registration></reginfo>\n'
    )
    return text.encode("utf-8")
