"""An account's history: one timeline of what happened to it, for support staff.

"I keep getting signed out" is answered by reading, newest first: the
registrations and their refreshes (a run of refreshes is one line), the kicks
(which device replaced which, from where, with which User-Agent, and which
calls ended), the rejections (with what the refused device was told), flood
blocks of the addresses it used, flapping holds, its calls (CDRs), and the
parameter and account changes made meanwhile. Every line names the event or
CDR it comes from.

`read_history` does the reading (four simple indexed queries); `timeline` is
the pure part that merges and words them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from regswitch.common import domain_events as ev
from regswitch.storage.base import CdrFilter, CdrRecord, EventFilter, EventRecord, Storage

#: Events of the account read per page (newest first), by default and at most.
PAGE = 1000
MAX_EVENTS = 10_000

_CALL_EVENTS = frozenset({ev.CALL_STARTED, ev.CALL_ANSWERED, ev.CALL_ENDED})
_MOVES = frozenset({ev.REPLACED, ev.REJECTED, ev.SAME_DEVICE})


async def read_history(
    storage: Storage, account: str, since: float, until: float, limit: int = PAGE
) -> dict[str, Any]:
    """The timeline of [since, until). When the account has more than `limit`
    events there, this is the newest page: it starts at its oldest event, and
    `next_until` is where the next (older) page ends."""
    events = storage.events
    await events.flush()
    await storage.cdrs.flush()
    own = await events.query(EventFilter(account=account, since=since, until=until, limit=limit))
    truncated = len(own) >= limit
    if truncated:
        since = own[-1].time
    # flood blocks are few: read the window's and keep those of the account's addresses
    blocks = await events.query(
        EventFilter(type=ev.FLOOD_BLOCKED, since=since, until=until, limit=limit)
    )
    floods: list[EventRecord] = []
    if blocks:  # the usual case is none: then the account's addresses are not needed
        ips = {ev.source_host(s) for s in _sources(own)}
        floods = [e for e in blocks if e.source in ips]
    system = await events.query(
        EventFilter(type=ev.PARAM_CHANGED, no_account=True, since=since, until=until, limit=limit)
    )
    cdrs = await storage.cdrs.query(
        CdrFilter(account=account, since=since, until=until, limit=limit)
    )
    return {
        "account": account,
        "since": since,
        "until": until,
        "truncated": truncated,
        "next_until": since if truncated else None,
        "entries": timeline(account, [*own, *floods, *system], cdrs),
    }


def _sources(events: list[EventRecord]) -> set[str]:
    """Every address the account's events came from (or name, for moves)."""
    found = {e.source for e in events if e.source}
    for e in events:
        if e.type in _MOVES:
            for key in ("old_source", "new_source"):
                value = e.details.get(key)
                if isinstance(value, str):
                    found.add(value)
    return found


# --------------------------------------------------------------------------- the timeline


def timeline(
    account: str, events: list[EventRecord], cdrs: list[CdrRecord]
) -> list[dict[str, Any]]:
    """Entries newest first. Refreshes of one binding with nothing else in
    between become one entry; a call with a CDR is shown by its CDR."""
    ordered = sorted(events, key=_by_id)
    user_agents = {
        e.details.get("binding"): e.details.get("user_agent")
        for e in ordered
        if e.type == ev.REGISTERED
    }
    with_cdr = {c.id for c in cdrs}
    out: list[dict[str, Any]] = []
    # binding -> its open run of refreshes; a run's entry is completed once,
    # after the loop (most of an account's events are refreshes)
    runs: dict[str, _Run] = {}
    closed: list[_Run] = []
    refreshed, call_events = ev.REFRESHED, _CALL_EVENTS
    for position, event in enumerate(ordered):
        kind = event.type
        details = event.details
        if kind == refreshed and not details.get("old_contact"):
            binding = str(details.get("binding"))
            run = runs.get(binding)
            if run is not None:
                run.count += 1
                run.last = event
                continue
            run = runs[binding] = _Run(_entry(event, "refreshes", ""), event)
            closed.append(run)
            out.append(run.entry)
            continue
        if kind in call_events and (kind == ev.CALL_ANSWERED or details.get("call") in with_cdr):
            continue  # a call is told by its start and end, or by its CDR
        runs.clear()
        out.append(_entry(event, _KIND.get(kind, kind),
                          _summary(event, ordered, position, user_agents)))  # fmt: skip
    for run in closed:
        last = run.last
        if run.count > 1:
            run.entry.update(count=run.count, end_time=last.time, last_event_id=last.id)
        else:
            run.entry["count"] = 1
        run.entry["summary"] = _refresh_text(run.count, last)
    for cdr in cdrs:
        out.append(_cdr_entry(account, cdr))
    out.sort(key=lambda x: (x["time"], x.get("event_id") or 0), reverse=True)
    return out


_KIND = {
    ev.REGISTERED: "registration",
    ev.SAME_DEVICE: "registration",
    ev.REFRESHED: "registration",
    ev.UNREGISTERED: "unregistration",
    ev.EXPIRED: "expiry",
    ev.DELETED: "deletion",
    ev.REPLACED: "kick",
    ev.REJECTED: "rejection",
    ev.FLAPPING: "flapping",
    ev.FLOOD_BLOCKED: "flood-block",
    ev.AUTH_FAILED: "auth-failure",
    ev.REACHABILITY: "reachability",
    ev.PARAM_CHANGED: "parameter",
    ev.ACCOUNT_CHANGED: "account",
    ev.CALL_STARTED: "call",
    ev.CALL_ENDED: "call",
}


class _Run:
    """A run of refreshes of one binding: its entry and the newest refresh."""

    __slots__ = ("count", "entry", "last")

    def __init__(self, entry: dict[str, Any], first: EventRecord) -> None:
        self.entry = entry
        self.count = 1
        self.last = first


def _by_id(event: EventRecord) -> int:
    return event.id


def _entry(event: EventRecord, kind: str, summary: str) -> dict[str, Any]:
    return {
        "time": event.time,
        "kind": kind,
        "type": event.type,
        "summary": summary,
        "source": event.source,
        "event_id": event.id,
        "link": f"api/events/{event.id}",
        "details": event.details,
    }


def _refresh_text(count: int, event: EventRecord) -> str:
    d = event.details
    times = "once" if count == 1 else f"{count} times"
    return (
        f"refreshed {times}: {d.get('contact')} from {event.source}, "
        f"expires in {d.get('expires')} s"
    )


def _cdr_entry(account: str, cdr: CdrRecord) -> dict[str, Any]:
    outgoing = cdr.caller == account
    peer = cdr.callee if outgoing else cdr.caller
    if cdr.answer is not None:
        how = f"answered, {cdr.billable_seconds} s"
    else:
        how = f"not answered ({cdr.final_code})"
    summary = (
        f"{'call to' if outgoing else 'call from'} {peer}: {how}; ended by {cdr.end_direction}: "
        f"{cdr.end_reason}"
    )
    return {
        "time": cdr.start,
        "end_time": cdr.end,
        "kind": "cdr",
        "type": "cdr",
        "summary": summary,
        "source": cdr.caller_source if outgoing else cdr.callee_source,
        "cdr_id": cdr.id,
        "link": f"api/cdrs?account={account}&since={cdr.start!r}&until={cdr.start + 0.001!r}",
        "details": asdict(cdr),
    }


def _new_user_agent(events: list[EventRecord], position: int, source: str | None) -> str | None:
    """The User-Agent of the device that did a kick: its `registered` event is
    emitted just before the `replaced` one, from the same source."""
    for earlier in reversed(events[max(0, position - 4) : position]):
        if earlier.type == ev.REGISTERED and earlier.source == source:
            ua = earlier.details.get("user_agent")
            return str(ua) if ua else None
    return None


def _summary(
    event: EventRecord,
    events: list[EventRecord],
    position: int,
    user_agents: dict[Any, Any],
) -> str:
    d = event.details
    t = event.type
    if t == ev.REPLACED:
        new_ua = _new_user_agent(events, position, event.source)
        old_ua = user_agents.get(d.get("old_binding"))
        calls = d.get("calls_ended") or []
        if d.get("keep_calls"):
            ended = "calls kept running"
        elif calls:
            ended = f"{len(calls)} call(s) ended: {', '.join(map(str, calls))}"
        else:
            ended = "no call ended"
        return (
            f"kicked {d.get('old_contact')} at {d.get('old_source')}"
            f"{f' ({old_ua})' if old_ua else ''}: replaced by {d.get('new_contact')} from "
            f"{d.get('new_source')}{f' ({new_ua})' if new_ua else ''}; {ended}"
        )
    if t == ev.REJECTED:
        told = f"{d.get('status')} {d.get('reason')}, Retry-After {d.get('retry_after')}"
        warning = d.get("warning")
        return (
            f"refused {d.get('new_contact')} from {event.source}: told {told}"
            + (f', Warning "{warning}"' if warning else "")
            + f"; {d.get('old_contact')} at {d.get('old_source')} keeps the account"
        )
    wording = _WORDING.get(t)
    if wording is not None:
        return wording(event, d)
    return " ".join(f"{k}={v}" for k, v in d.items())


def _registered(event: EventRecord, d: dict[str, Any]) -> str:
    ua = d.get("user_agent")
    return (
        f"registered {d.get('contact')} from {event.source}"
        f"{f' ({ua})' if ua else ''}, expires in {d.get('expires')} s"
    )


def _deleted(event: EventRecord, d: dict[str, Any]) -> str:
    calls = d.get("calls_ended") or []
    ended = f", {len(calls)} call(s) ended" if d.get("kicked") else ", calls kept"
    return f"deleted from the console: {d.get('contact')}{ended}"


def _account_changed(event: EventRecord, d: dict[str, Any]) -> str:
    fields = d.get("fields")
    changed = f": {', '.join(map(str, fields))}" if fields else ""
    return f"account {d.get('action')}{changed}"


def _moved(event: EventRecord, d: dict[str, Any]) -> str:
    return (
        f"same device moved: {d.get('old_contact')} at {d.get('old_source')} -> "
        f"{d.get('contact')} from {event.source} (calls kept)"
    )


# event type -> its line (kicks and rejections need more than their own event: above)
_WORDING: dict[str, Callable[[EventRecord, dict[str, Any]], str]] = {
    ev.REGISTERED: _registered,
    ev.SAME_DEVICE: _moved,
    ev.REFRESHED: _moved,  # a refresh from a new address (plain ones form runs)
    ev.UNREGISTERED: lambda e, d: (
        f"unregistered {d.get('contact')}{' (Contact: *)' if d.get('wildcard') else ''}"
    ),
    ev.EXPIRED: lambda e, d: f"expired {d.get('contact')} (no refresh in time)",
    ev.DELETED: _deleted,
    ev.FLAPPING: lambda e, d: (
        f"flapping: more than {d.get('limit')} replacements in {d.get('window')} s; "
        f"replacements held until {_clock(d.get('held_until'))}"
    ),
    ev.FLOOD_BLOCKED: lambda e, d: (
        f"source {e.source} blocked for {d.get('seconds')} s: {d.get('reason')}"
    ),
    ev.AUTH_FAILED: lambda e, d: f"authentication failed from {e.source}: {d.get('reason')}",
    ev.REACHABILITY: lambda e, d: (
        f"{d.get('contact')} {'reachable again' if d.get('reachable') else 'unreachable'}"
    ),
    ev.PARAM_CHANGED: lambda e, d: (
        f"parameter {d.get('name')}: {d.get('old')} -> {d.get('new')} (by {e.source})"
    ),
    ev.ACCOUNT_CHANGED: _account_changed,
    ev.CALL_STARTED: lambda e, d: f"call to {d.get('callee')} started (in progress)",
    ev.CALL_ENDED: lambda e, d: (
        f"call to {d.get('callee')} ended: {d.get('reason')} ({d.get('code')})"
    ),
}


def _clock(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "?"
    return time.strftime("%H:%M:%S", time.localtime(epoch))
