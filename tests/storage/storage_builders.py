"""Record builders shared by the storage tests (plain module: conftest is not importable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regswitch.storage.base import Account, BindingRecord, CdrRecord, NewEvent, Storage


@dataclass
class Backend:
    """How to build (and rebuild, after close) one backend over the same data."""

    name: str
    durable: bool  # does data survive close + a new instance?
    make: Callable[[], Storage]

    async def reopen(self, storage: Storage) -> Storage:
        await storage.close()
        fresh = self.make()
        await fresh.open()
        return fresh


def make_account(user: str = "alice", domain: str = "example.com", **kw: Any) -> Account:
    fields: dict[str, Any] = {
        "ha1_md5": "0" * 32,
        "ha1_sha256": "1" * 64,
        "created_at": 1_700_000_000.0,
        "updated_at": 1_700_000_000.0,
    }
    fields.update(kw)
    return Account(user=user, domain=domain, **fields)


def make_binding(
    binding_id: str = "b1", aor: str = "alice@example.com", **kw: Any
) -> BindingRecord:
    fields: dict[str, Any] = {
        "contact": f"sip:{binding_id}@192.0.2.10:5060",
        "transport": "udp",
        "source_ip": "198.51.100.7",
        "source_port": 40000,
        "local_ip": "192.0.2.1",
        "local_port": 5060,
        "conn_id": 0,
        "call_id": f"call-{binding_id}",
        "cseq": 1,
        "expires_at": 1_700_003_600.0,
        "instance": None,
        "reg_id": None,
        "user_agent": None,
        "path": (),
        "registered_at": 1_700_000_000.0,
        "refreshed_at": 1_700_000_000.0,
    }
    fields.update(kw)
    return BindingRecord(id=binding_id, aor=aor, **fields)


def make_cdr(cdr_id: str = "c1", **kw: Any) -> CdrRecord:
    fields: dict[str, Any] = {
        "caller": "alice@example.com",
        "callee": "bob@example.com",
        "caller_contact": "sip:alice@192.0.2.10",
        "callee_contact": "sip:bob@192.0.2.11",
        "caller_source": "udp:198.51.100.7:40000",
        "callee_source": "udp:198.51.100.8:40000",
        "a_call_id": f"a-{cdr_id}",
        "b_call_id": f"b-{cdr_id}",
        "start": 1_700_000_000.0,
        "answer": 1_700_000_002.0,
        "end": 1_700_000_062.0,
        "billable_seconds": 60,
        "final_code": 200,
        "end_reason": "normal",
        "end_direction": "caller",
    }
    fields.update(kw)
    return CdrRecord(id=cdr_id, **fields)


def make_event(type_: str = "registration-replaced", **kw: Any) -> NewEvent:
    fields: dict[str, Any] = {"time": 1_700_000_000.0, "account": "alice@example.com"}
    fields.update(kw)
    return NewEvent(type=type_, **fields)
