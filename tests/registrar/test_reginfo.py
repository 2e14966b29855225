"""The reg event package's pure parts: the reginfo document (registrar/reginfo.py),
validated against RFC 3680's schema (tests/fixtures/xml/reginfo.xsd), and the
SUBSCRIBE admission (registrar/reg_events.py: admit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regswitch.registrar import reginfo
from regswitch.registrar.reg_events import Limits, Refusal, admit, networks_error
from support.builders import make_binding

xmlschema = pytest.importorskip("xmlschema")
XSD = Path(__file__).resolve().parents[1] / "fixtures" / "xml" / "reginfo.xsd"
AOR = "alice@example.com"


@pytest.fixture(scope="module")
def schema() -> Any:
    return xmlschema.XMLSchema(str(XSD))


def test_full_state_is_valid_and_lists_every_live_binding(schema: Any) -> None:
    bindings = [
        make_binding(id="b1", contact="sip:alice@10.0.0.1:5060;ob", registered_at=0),
        make_binding(id="b2", contact="sip:alice@10.0.0.2;transport=tcp", registered_at=50),
    ]
    doc = reginfo.document(AOR, 0, True, [reginfo.active(b, 100) for b in bindings], 2)
    schema.validate(doc.decode())
    parsed = schema.to_dict(doc.decode())
    assert parsed["@state"] == "full" and parsed["@version"] == 0
    (registration,) = parsed["registration"]
    assert registration["@aor"] == f"sip:{AOR}" and registration["@state"] == "active"
    assert [c["@id"] for c in registration["contact"]] == ["b1", "b2"]
    assert registration["contact"][1]["@duration-registered"] == 50
    empty = reginfo.document(AOR, 0, True, [], 0).decode()
    schema.validate(empty)
    assert 'state="init"' in empty


@pytest.mark.parametrize(
    ("event_type", "details", "state", "event"),
    [
        ("registered", {"binding": "b1", "contact": "sip:a@h", "expires": 60}, "active",
         "registered"),
        ("refreshed", {"binding": "b1", "contact": "sip:a@h", "expires": 60}, "active",
         "refreshed"),
        ("same-device", {"binding": "b1", "contact": "sip:a@h", "expires": 60}, "active",
         "registered"),
        ("unregistered", {"binding": "b1", "contact": "sip:a@h"}, "terminated", "unregistered"),
        ("expired", {"binding": "b1", "contact": "sip:a@h"}, "terminated", "expired"),
        ("deleted", {"binding": "b1", "contact": "sip:a@h"}, "terminated", "deactivated"),
        ("deleted", {"binding": "b1", "contact": "sip:a@h", "blocked_until": 700.0},
         "terminated", "probation"),
        ("replaced", {"old_binding": "b1", "old_contact": "sip:a@h", "new_contact": "sip:b@h"},
         "terminated", "rejected"),
    ],
)
def test_every_binding_change_is_a_valid_partial_document(
    schema: Any, event_type: str, details: dict[str, Any], state: str, event: str
) -> None:
    contact = reginfo.change(event_type, details, 42, 100.0)
    assert contact is not None and (contact.state, contact.event) == (state, event)
    doc = reginfo.document(AOR, 7, False, [contact], 0).decode()
    schema.validate(doc)
    assert 'state="partial"' in doc and 'version="7"' in doc
    if event == "probation":
        assert contact.retry_after == 600
    if event_type == "replaced":  # the extension element links the replace record
        assert '<rs:replaced event="42" by="sip:b@h"/>' in doc


def test_other_events_change_no_contact() -> None:
    assert reginfo.change("auth-failed", {"binding": "b1"}, 1, 0.0) is None
    assert reginfo.change("registered", {}, 1, 0.0) is None


def test_contact_uris_are_escaped(schema: Any) -> None:
    contact = reginfo.change("expired", {"binding": "b\"1", "contact": "sip:a@h;x=<&>"}, 1, 0.0)
    assert contact is not None
    doc = reginfo.document('a"b@example.com', 1, False, [contact], 0).decode()
    schema.validate(doc)


LIMITS = Limits(per_account=2, total=3, min_expires=60, max_expires=3600)


def test_admit() -> None:
    assert admit("reg", None, 0, 0, LIMITS) == 3600
    assert admit("Reg;id=7", 7200, 0, 0, LIMITS) == 3600
    assert admit("reg", 0, 5, 5, LIMITS) == 0  # a fetch is never over a limit
    bad = admit("presence", 600, 0, 0, LIMITS)
    assert isinstance(bad, Refusal) and bad.status == 489 and bad.headers["Allow-Events"] == "reg"
    assert isinstance(admit(None, 600, 0, 0, LIMITS), Refusal)
    assert admit("reg", 600, 0, 0, LIMITS, "application/reginfo+xml, text/plain") == 600
    assert admit("reg", 600, 0, 0, LIMITS, "*/*") == 600
    not_acceptable = admit("reg", 600, 0, 0, LIMITS, "application/pidf+xml")
    assert isinstance(not_acceptable, Refusal) and not_acceptable.status == 406
    brief = admit("reg", 10, 0, 0, LIMITS)
    assert isinstance(brief, Refusal) and (brief.status, brief.headers["Min-Expires"]) == (
        423, "60",
    )
    per_account = admit("reg", 600, 2, 2, LIMITS)
    assert isinstance(per_account, Refusal) and per_account.status == 403
    total = admit("reg", 600, 0, 3, LIMITS)
    assert isinstance(total, Refusal) and "node" in total.headers["_warning"]


def test_trusted_networks_parameter_is_checked() -> None:
    assert networks_error("none") is None
    assert networks_error("10.0.0.0/8, 192.0.2.0/24") is None
    assert "bad network" in (networks_error("10.0.0.0/8,banana") or "")
