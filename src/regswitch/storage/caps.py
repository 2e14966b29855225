"""How much of a user-controlled string is stored.

Accounts, sources, contacts, User-Agents and Call-IDs in events and CDRs come
from packets, often from packets nobody authenticated: a REGISTER with a
64 kB To-user must not become a 64 kB row (nor 64 kB in every live console).
Strings are cut at a length no real device needs, and the cut is marked so
an operator sees that it happened.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from regswitch.storage.base import CdrFilter, CdrRecord, CdrStore, NewEvent

# account, source, CDR parties and ids: a user@domain or a host:port
MAX_NAME = 256
# an event detail: a Contact with its parameters, a User-Agent, a reason
MAX_DETAIL = 512
# items kept of a list in an event detail (e.g. the calls a kick ended)
MAX_ITEMS = 64
CUT_MARK = "…"

_CDR_LIMITS = {
    "caller": MAX_NAME,
    "callee": MAX_NAME,
    "caller_contact": MAX_DETAIL,
    "callee_contact": MAX_DETAIL,
    "caller_source": MAX_NAME,
    "callee_source": MAX_NAME,
    "a_call_id": MAX_NAME,
    "b_call_id": MAX_NAME,
}


def cap_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARK)] + CUT_MARK


def _cap_value(value: Any) -> Any:
    if isinstance(value, str):
        return cap_text(value, MAX_DETAIL)
    if isinstance(value, list | tuple):
        return [_cap_value(v) for v in value[:MAX_ITEMS]]
    return value


def capped_event(event: NewEvent) -> NewEvent:
    """`event` with its strings cut to size (the same object when nothing is long)."""
    account, source, details = event.account, event.source, event.details
    long_detail = any(
        (isinstance(v, str) and len(v) > MAX_DETAIL) or (isinstance(v, list | tuple) and v)
        for v in details.values()
    )
    if (
        (account is None or len(account) <= MAX_NAME)
        and (source is None or len(source) <= MAX_NAME)
        and not long_detail
    ):
        return event
    return dataclasses.replace(
        event,
        account=None if account is None else cap_text(account, MAX_NAME),
        source=None if source is None else cap_text(source, MAX_NAME),
        details={k: _cap_value(v) for k, v in details.items()},
    )


def capped_cdr(cdr: CdrRecord) -> CdrRecord:
    """`cdr` with its caller, callee, contacts, sources and Call-IDs cut to size."""
    changes: dict[str, Any] = {
        name: cap_text(value, limit)
        for name, limit in _CDR_LIMITS.items()
        if isinstance(value := getattr(cdr, name), str) and len(value) > limit
    }
    return dataclasses.replace(cdr, **changes) if changes else cdr


class CappedCdrs:
    """A CdrStore that cuts each CDR to size before the backend writes it,
    whichever backend that is."""

    def __init__(self, store: CdrStore) -> None:
        self._store = store

    def add(self, cdr: CdrRecord) -> None:
        self._store.add(capped_cdr(cdr))

    async def query(self, flt: CdrFilter) -> list[CdrRecord]:
        return await self._store.query(flt)

    async def flush(self) -> None:
        await self._store.flush()

    async def prune(self, before: float, limit: int) -> int:
        return await self._store.prune(before, limit)
