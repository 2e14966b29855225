"""What is stored of an event or CDR: strings cut to size, and failure events
written only up to a rate per source (the rest counted)."""

from __future__ import annotations

import pytest

from regswitch.common import domain_events as ev
from regswitch.common.domain_events import source_host
from regswitch.common.events import EventBus, FailureEventLimit, FailureEventLimiter
from regswitch.storage.base import CdrRecord, EventRecord, NewEvent
from regswitch.storage.caps import CUT_MARK, MAX_DETAIL, MAX_ITEMS, MAX_NAME, CappedCdrs, capped_cdr

pytestmark = pytest.mark.timeout(10)


class Sink:
    def __init__(self) -> None:
        self.rows: list[EventRecord] = []

    def add(self, event: NewEvent) -> EventRecord:
        record = EventRecord.from_new(len(self.rows) + 1, event)
        self.rows.append(record)
        return record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_long_strings_are_cut_and_marked() -> None:
    sink = Sink()
    bus = EventBus(sink, Clock())
    bus.emit(
        ev.Replaced(
            account="x" * 65536 + "@example.com",
            source="udp:192.0.2.1:5060",
            old_contact="U" * 65536,
            old_source="udp:192.0.2.9:5060",
            old_binding="b1",
            new_contact="<sip:a@192.0.2.1>",
            new_source="udp:192.0.2.1:5060",
            kicked=True,
            keep_calls=False,
            calls_ended=["c" * 1000] * 1000,
            policy="on",
        )
    )
    row = sink.rows[0]
    assert row.account is not None and len(row.account) == MAX_NAME
    assert row.account.endswith(CUT_MARK)
    assert len(row.details["old_contact"]) == MAX_DETAIL
    assert row.details["new_contact"] == "<sip:a@192.0.2.1>"  # short ones untouched
    assert row.source == "udp:192.0.2.1:5060" and row.details["policy"] == "on"
    assert len(row.details["calls_ended"]) == MAX_ITEMS
    assert all(len(c) == MAX_DETAIL for c in row.details["calls_ended"])


def test_a_short_event_is_stored_as_given() -> None:
    sink = Sink()
    EventBus(sink, Clock()).emit(
        ev.Expired(account="a@b", source="udp:1.2.3.4:5", contact="sip:a@1.2.3.4:5", binding="b1")
    )
    row = sink.rows[0]
    assert (row.type, row.account, row.source) == (ev.EXPIRED, "a@b", "udp:1.2.3.4:5")
    assert row.details == {"contact": "sip:a@1.2.3.4:5", "binding": "b1"}


def _cdr(**kw: object) -> CdrRecord:
    base: dict[str, object] = dict(
        id="c1",
        caller="a@b",
        callee="b@b",
        a_call_id="x",
        start=1.0,
        end=2.0,
        final_code=480,
        end_reason="not-registered",
        end_direction="system",
    )
    base.update(kw)
    return CdrRecord(**base)  # type: ignore[arg-type]


class CdrList:
    def __init__(self) -> None:
        self.rows: list[CdrRecord] = []

    def add(self, cdr: CdrRecord) -> None:
        self.rows.append(cdr)


def test_cdrs_are_cut_before_any_backend_stores_them() -> None:
    store = CdrList()
    CappedCdrs(store).add(  # type: ignore[arg-type]
        _cdr(callee="b" * 70000, caller_contact="<sip:" + "c" * 70000 + ">")
    )
    (stored,) = store.rows
    assert len(stored.callee) == MAX_NAME and stored.callee.endswith(CUT_MARK)
    assert stored.caller_contact is not None and len(stored.caller_contact) == MAX_DETAIL
    short = _cdr()
    assert capped_cdr(short) is short


@pytest.mark.parametrize(
    ("source", "host"),
    [
        ("udp:192.0.2.1:5060", "192.0.2.1"),
        ("tcp:2001:db8::1:5060", "2001:db8::1"),
        ("tls:[2001:db8::1]:5061", "2001:db8::1"),
        ("192.0.2.7", "192.0.2.7"),
        ("api", "api"),
        (None, ""),
    ],
)
def test_source_host(source: str | None, host: str) -> None:
    assert source_host(source) == host


def test_failure_events_per_source_beyond_the_rate_are_counted_not_written() -> None:
    sink, clock = Sink(), Clock()
    bus = EventBus(sink, clock, failure_limit=FailureEventLimit(per_source=3, window=60))
    for port in range(10):  # port rotation does not make a new source
        bus.emit(ev.AuthFailed(account="a@b", source=f"udp:192.0.2.1:{port}", reason="r"))
    bus.emit(ev.AuthFailed(account="a@b", source="udp:192.0.2.2:1", reason="r"))
    bus.emit(ev.Expired(account="a@b", source="udp:192.0.2.1:1", contact="c", binding="b"))
    assert [r.source for r in sink.rows].count("udp:192.0.2.2:1") == 1
    assert sum(r.type == ev.AUTH_FAILED for r in sink.rows) == 4
    assert bus.suppressed[ev.AUTH_FAILED] == 7
    assert bus.counts[ev.AUTH_FAILED] == 4
    # the next window: the first event written says how many it stands for
    clock.now += 60
    bus.emit(ev.AuthFailed(account="a@b", source="udp:192.0.2.1:99", reason="r"))
    assert sink.rows[-1].details["suppressed"] == 7
    bus.emit(ev.AuthFailed(account="a@b", source="udp:192.0.2.1:99", reason="r"))
    assert "suppressed" not in sink.rows[-1].details


def test_the_total_and_the_table_are_bounded() -> None:
    limiter = FailureEventLimiter(
        FailureEventLimit(per_source=5, total=20, window=60, max_sources=100)
    )
    admitted = [limiter.admit(f"10.0.{i // 256}.{i % 256}", 0.0) for i in range(1000)]
    assert sum(a is not None for a in admitted) == 20
    assert len(limiter._held) == 100
