"""What the SQL backends (SQLite, PostgreSQL) share: the event and CDR rows
(same columns, same text for event details, so both store identical data),
event numbering, the API's event and CDR queries, written with `?`
placeholders (`numbered()` turns them into PostgreSQL's `$1, $2, …`), and
loading the numbered migration files."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from typing import Any

from regswitch.storage.base import (
    CdrFilter,
    CdrRecord,
    EventFilter,
    EventRecord,
    NewEvent,
    StorageError,
)

_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


def bundled_migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration in schema/<dialect>/, in order;
    the files must be numbered 001, 002, ... without gaps."""
    folder = resources.files("regswitch.storage").joinpath("schema", dialect)
    found = []
    for entry in folder.iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise StorageError(f"{dialect} migrations must be numbered 001, 002, ...: {versions}")
    return found


#: Event id slots of a cluster (see EventNumbering.use_slot), and the origin of its ticks.
SLOTS = 1024
_SLOT_EPOCH = 1_735_689_600.0  # 2025-01-01T00:00:00Z


class EventNumbering:
    """Event ids are given by the process when an event is added (so the live
    stream and the stored log agree), continuing after the highest stored id."""

    def __init__(self) -> None:
        self._ids: Iterator[int] = itertools.count(1)
        self._last = 0
        self.dropped = 0

    def start_ids_after(self, last_id: int) -> None:
        self._last = last_id
        self._ids = itertools.count(last_id + 1)

    def use_slot(self, slot: int, clock: Callable[[], float]) -> None:
        """Number for one of several nodes writing this database (a cluster):
        id = tick * SLOTS + slot, a tick being the millisecond since 2025 (or
        one more than the last tick, when that is not later). Each live node
        holds its own slot, so ids never collide; they rise with time across
        nodes (the console's newest-first order) and stay below 2**53 (exact
        in JavaScript) until the year 2300."""
        if not 0 <= slot < SLOTS:
            raise ValueError(f"event id slot must be 0..{SLOTS - 1}, not {slot}")
        self._ids = _slotted(slot, clock, self._last // SLOTS)

    def number(self, event: NewEvent, queue: Callable[[EventRecord], bool]) -> EventRecord:
        """The numbered record, handed to `queue` (False: dropped, counted)."""
        record = EventRecord.from_new(next(self._ids), event)
        if not queue(record):
            self.dropped += 1
        return record


def _slotted(slot: int, clock: Callable[[], float], tick: int) -> Iterator[int]:
    while True:
        tick = max(tick + 1, int((clock() - _SLOT_EPOCH) * 1000))
        yield tick * SLOTS + slot


EVENT_COLS = "id, time, type, account, source, details"
CDR_COLS = (
    "id, caller, callee, caller_contact, callee_contact, caller_source, callee_source, "
    "a_call_id, b_call_id, start_time, answer_time, end_time, billable_seconds, final_code, "
    "end_reason, end_direction"
)

# One encoder for every event row: json.dumps with options builds a new one per call.
_encode_details = json.JSONEncoder(separators=(",", ":"), default=str).encode


def event_row(e: EventRecord) -> tuple[Any, ...]:
    details = _encode_details(e.details) if e.details else "{}"
    return (e.id, e.time, e.type, e.account, e.source, details)


def events_from_rows(rows: Sequence[Sequence[Any]]) -> list[EventRecord]:
    """Records of `EVENT_COLS` rows. The details of all rows are decoded in one
    `json.loads` of one array: per call, the decoder's set-up costs as much as a
    small object's decoding (an account's history reads 10,000 rows at once)."""
    if not rows:
        return []
    details = json.loads("[" + ",".join([row[5] for row in rows]) + "]")
    return [
        EventRecord(id=row[0], time=row[1], type=row[2], account=row[3], source=row[4],
                    details=detail)
        for row, detail in zip(rows, details, strict=True)
    ]  # fmt: skip


def cdr_row(c: CdrRecord) -> tuple[Any, ...]:
    return (
        c.id, c.caller, c.callee, c.caller_contact, c.callee_contact, c.caller_source,
        c.callee_source, c.a_call_id, c.b_call_id, c.start, c.answer, c.end,
        c.billable_seconds, c.final_code, c.end_reason, c.end_direction,
    )  # fmt: skip


def cdr_from_row(row: Sequence[Any]) -> CdrRecord:
    return CdrRecord(
        id=row[0], caller=row[1], callee=row[2], caller_contact=row[3], callee_contact=row[4],
        caller_source=row[5], callee_source=row[6], a_call_id=row[7], b_call_id=row[8],
        start=row[9], answer=row[10], end=row[11], billable_seconds=row[12],
        final_code=row[13], end_reason=row[14], end_direction=row[15],
    )  # fmt: skip


def _select(
    base: str, conditions: list[tuple[str, list[Any]]], order: str, limit: int
) -> tuple[str, list[Any]]:
    """`base WHERE ... ORDER BY order LIMIT ?` with the conditions whose
    arguments were given (a filter field left as None, or empty, drops out)."""
    where: list[str] = []
    args: list[Any] = []
    for clause, values in conditions:
        if values and all(v is not None for v in values):
            where.append(clause)
            args.extend(values)
    sql = base + (" WHERE " + " AND ".join(where) if where else "")
    return f"{sql} ORDER BY {order} LIMIT ?", [*args, limit]


def event_query(flt: EventFilter) -> tuple[str, list[Any]]:
    """Matching events, newest (highest id) first."""
    return _select(
        f"SELECT {EVENT_COLS} FROM events",
        [
            ("type = ?", [flt.type]),
            (f"type IN ({', '.join('?' for _ in flt.types)})", list(flt.types)),
            ("account = ?", [flt.account]),
            ("id > ?", [flt.after_id]),
            ("id < ?", [flt.before_id]),
            # Times become an id range first (ids grow with time; the events_time
            # index finds the ends), so the account and type indexes serve the
            # query; the time test itself stays for a clock that stepped back.
            (f"id >= ({_FIRST_ID_SINCE}) AND time >= ?", [flt.since, flt.since]),
            (f"id <= ({_LAST_ID_BEFORE}) AND time < ?", [flt.until, flt.until]),
            ("(account IS NULL) = ?", [True] if flt.no_account else []),
        ],
        "id DESC",
        flt.limit,
    )


def top_accounts_query(type: str, since: float, limit: int) -> tuple[str, list[Any]]:
    """The accounts with the most events of `type` since `since`: (account, count) rows."""
    sql = (
        "SELECT account, COUNT(*) AS n FROM events WHERE type = ? AND account IS NOT NULL "
        f"AND id >= ({_FIRST_ID_SINCE}) AND time >= ? "
        "GROUP BY account ORDER BY n DESC, account LIMIT ?"
    )
    return sql, [type, since, since, limit]


# The ends of a time range as ids, found in events_time (MIN(id) WHERE time >= ?
# would walk the table in id order instead).
_FIRST_ID_SINCE = "SELECT id FROM events WHERE time >= ? ORDER BY time, id LIMIT 1"
_LAST_ID_BEFORE = "SELECT id FROM events WHERE time < ? ORDER BY time DESC, id DESC LIMIT 1"


def cdr_query(flt: CdrFilter, write_order: str) -> tuple[str, list[Any]]:
    """Matching CDRs, newest `start` first; `write_order` (a column) breaks ties
    with the last written first."""
    return _select(
        f"SELECT {CDR_COLS} FROM cdrs",
        [
            ("(caller = ? OR callee = ?)", [flt.account, flt.account]),
            ("end_reason = ?", [flt.reason]),
            ("start_time >= ?", [flt.since]),
            ("start_time < ?", [flt.until]),
        ],
        f"start_time DESC, {write_order} DESC",
        flt.limit,
    )


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …` (the queries here hold no other `?`)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
