"""SQLite schema side: column lists, statements, record <-> row conversion and
migrations (numbered files in schema/sqlite/, applied in order)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from regswitch.storage.base import (
    Account,
    BindingRecord,
    StorageError,
    shared,
    shared_port,
    shared_tuple,
)
from regswitch.storage.shared_sql import CDR_COLS, bundled_migrations

# --------------------------------------------------------------------------- rows

BINDING_COLS = (
    "id, aor, contact, transport, source_ip, source_port, local_ip, local_port, conn_id, "
    "call_id, cseq, expires_at, instance, reg_id, user_agent, path, registered_at, "
    "refreshed_at, reachable, node, nat"
)
BINDING_UPSERT = (
    f"INSERT INTO bindings ({BINDING_COLS}) VALUES ({', '.join('?' * 21)}) "
    "ON CONFLICT (id) DO UPDATE SET "
    # a binding never changes account: leaving aor out of the update spares
    # its index a rewrite on every refresh
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in BINDING_COLS.split(",")[2:])
)
BINDING_DELETE = "DELETE FROM bindings WHERE id = ?"

ACCOUNT_COLS = (
    "aor, username, domain, ha1_md5, ha1_sha256, allowed_networks, max_contacts, "
    "register_replace, replace_keep_calls, enabled, created_at, updated_at"
)
ACCOUNT_UPSERT = f"INSERT OR REPLACE INTO accounts ({ACCOUNT_COLS}) VALUES ({', '.join('?' * 12)})"

EVENT_INSERT = (
    "INSERT OR REPLACE INTO events (id, time, type, account, source, details) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

CDR_INSERT = f"INSERT OR REPLACE INTO cdrs ({CDR_COLS}) VALUES ({', '.join('?' * 16)})"


def binding_row(r: BindingRecord) -> tuple[Any, ...]:
    return (
        r.id, r.aor, r.contact, r.transport, r.source_ip, r.source_port, r.local_ip,
        r.local_port, r.conn_id, r.call_id, r.cseq, r.expires_at, r.instance, r.reg_id,
        r.user_agent, json.dumps(list(r.path)) if r.path else "[]", r.registered_at,
        r.refreshed_at, 1 if r.reachable else 0, r.node, 1 if r.nat else 0,
    )  # fmt: skip


def binding_from_row(row: Sequence[Any]) -> BindingRecord:
    return BindingRecord(
        id=row[0], aor=row[1], contact=row[2], transport=shared(row[3]), source_ip=row[4],
        source_port=shared_port(row[5]), local_ip=shared(row[6]),
        local_port=shared_port(row[7]), conn_id=row[8],
        call_id=row[9], cseq=row[10], expires_at=row[11], instance=row[12], reg_id=row[13],
        user_agent=shared(row[14]), path=tuple(json.loads(row[15])) if row[15] != "[]" else (),
        registered_at=row[16], refreshed_at=row[17], reachable=bool(row[18]), node=shared(row[19]),
        nat=bool(row[20]),
    )  # fmt: skip


def account_row(a: Account) -> tuple[Any, ...]:
    return (
        a.aor, a.user, a.domain, a.ha1_md5, a.ha1_sha256, json.dumps(list(a.allowed_networks)),
        a.max_contacts, a.register_replace, a.replace_keep_calls, 1 if a.enabled else 0,
        a.created_at, a.updated_at,
    )  # fmt: skip


def account_from_row(row: Sequence[Any]) -> Account:
    return Account(
        user=row[1], domain=shared(row[2]), ha1_md5=row[3], ha1_sha256=row[4],
        allowed_networks=shared_tuple(tuple(json.loads(row[5]))) if row[5] != "[]" else (),
        max_contacts=row[6],
        register_replace=shared(row[7]), replace_keep_calls=shared(row[8]), enabled=bool(row[9]),
        # an account never changed: one float for both times
        created_at=row[10], updated_at=row[10] if row[11] == row[10] else row[11],
    )  # fmt: skip


# --------------------------------------------------------------------------- migrations


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    return bundled_migrations("sqlite")


def _statements(script: str) -> Iterable[str]:
    """Split a migration into statements (executescript would commit midway)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf
            buf = ""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date, one transaction per migration; return the version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    found = migrations()
    latest = found[-1][0] if found else 0
    for version, name, sql in found:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated.
            (current,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            ).fetchone()
            if current > latest:
                raise StorageError(
                    f"database schema version {current} is newer than this regswitch "
                    f"supports ({latest}); upgrade regswitch"
                )
            if version > current:
                for stmt in _statements(sql):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return latest
