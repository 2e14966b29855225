"""The timeline's pure part: refresh runs, calls shown by their CDRs, flood
blocks and parameter changes among the account's own events."""

from __future__ import annotations

from regswitch.console.history import timeline
from regswitch.storage.base import CdrRecord, EventRecord

AOR = "alice@x"


def event(id: int, type: str, account: str | None = AOR, source: str = "udp:10.0.0.1:5060",
          **details: object) -> EventRecord:  # fmt: skip
    return EventRecord(id=id, time=1000.0 + id, type=type, account=account, source=source,
                       details=dict(details))  # fmt: skip


def test_refreshes_of_two_devices_form_runs_broken_by_anything_else() -> None:
    events = [
        event(1, "refreshed", binding="a", contact="sip:a"),
        event(2, "refreshed", binding="b", contact="sip:b"),
        event(3, "refreshed", binding="a", contact="sip:a"),
        event(4, "refreshed", binding="b", contact="sip:b"),
        event(5, "auth-failed", reason="wrong password"),
        event(6, "refreshed", binding="a", contact="sip:a"),
    ]
    entries = timeline(AOR, events, [])
    assert [(e["kind"], e.get("count"), e["event_id"]) for e in entries] == [
        ("refreshes", 1, 6),
        ("auth-failure", None, 5),
        ("refreshes", 2, 2),
        ("refreshes", 2, 1),
    ]
    assert entries[3]["last_event_id"] == 3 and entries[3]["end_time"] == 1003.0


def test_a_call_with_a_cdr_is_its_cdr_one_without_is_in_progress() -> None:
    cdr = CdrRecord(id="c1", caller="bob@x", callee=AOR, a_call_id="x", start=1001.5,
                    answer=1002.0, end=1010.0, billable_seconds=8, final_code=200,
                    end_reason="registration-replaced", end_direction="system")  # fmt: skip
    events = [
        event(1, "call-started", call="c1", callee="bob@x"),
        event(2, "call-ended", call="c1", callee="bob@x", reason="normal", code=200),
        event(3, "call-started", call="c2", callee="carol@x"),
        event(4, "flood-blocked", account=None, source="10.0.0.1", seconds=300, reason="auth"),
        event(5, "param-changed", account=None, source="api", name="N", old="1", new="2"),
    ]
    entries = timeline(AOR, events, [cdr])
    assert [e["kind"] for e in entries] == ["parameter", "flood-block", "call", "cdr"]
    assert entries[2]["summary"] == "call to carol@x started (in progress)"
    assert entries[3]["summary"] == (
        "call from bob@x: answered, 8 s; ended by system: registration-replaced"
    )
    assert entries[3]["cdr_id"] == "c1" and "since=1001.5" in entries[3]["link"]
    assert entries[1]["summary"] == "source 10.0.0.1 blocked for 300 s: auth"
