"""PostgreSQL schema side: statements, record <-> row conversion, migrations
(numbered files in schema/postgres/, applied in order under an advisory lock).

A new table is one migration file plus its statements here: the writer and
the stores only run statements and convert rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from regswitch.storage.base import (
    Account,
    BindingOp,
    BindingRecord,
    StorageError,
    shared,
    shared_port,
)
from regswitch.storage.shared_sql import CDR_COLS, EVENT_COLS, bundled_migrations

#: pg_advisory_xact_lock key ("regs"): nodes starting together migrate one at a time.
MIGRATION_LOCK = 0x72656773


class SchemaTooNewError(StorageError):
    """The database was migrated by a newer regswitch than this one."""


# --------------------------------------------------------------------------- rows

BINDING_COLS = (
    "id, aor, contact, transport, source_ip, source_port, local_ip, local_port, conn_id, "
    "call_id, cseq, expires_at, instance, reg_id, user_agent, path, registered_at, "
    "refreshed_at, reachable, node, nat"
)
_BINDING_NAMES = [c.strip() for c in BINDING_COLS.split(",")]
BINDING_UPSERT = (
    f"INSERT INTO bindings ({BINDING_COLS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_BINDING_NAMES) + 1))}) "
    "ON CONFLICT (id) DO UPDATE SET "
    # a binding never changes account: aor stays out of the update
    + ", ".join(f"{c} = excluded.{c}" for c in _BINDING_NAMES[2:])
)
BINDING_DELETE = "DELETE FROM bindings WHERE id = $1"

# The SQL type of the binding columns that are not text; path travels as
# JSON text (unnest would flatten an array of arrays).
_BINDING_TYPES = {
    "source_port": "int", "local_port": "int", "conn_id": "bigint", "cseq": "bigint",
    "expires_at": "float8", "registered_at": "float8", "refreshed_at": "float8",
    "reachable": "bool", "nat": "bool",
}  # fmt: skip
_BINDING_PARAMS = [
    f"${i}::{_BINDING_TYPES.get(name, 'text')}[]" for i, name in enumerate(_BINDING_NAMES, 2)
]
#: A whole group commit of binding ops in one statement (one round trip, its
#: own transaction): $1 the ids to delete, then one array per column of the
#: rows to upsert. The ops must be collapsed to one final op per id first.
BINDING_APPLY = (
    "WITH gone AS (DELETE FROM bindings WHERE id = ANY($1::text[])) "
    f"INSERT INTO bindings ({BINDING_COLS}) SELECT "
    + ", ".join(
        "COALESCE(ARRAY(SELECT json_array_elements_text(u.path::json)), '{}')"
        if name == "path"
        else f"u.{name}"
        for name in _BINDING_NAMES
    )
    + f" FROM unnest({', '.join(_BINDING_PARAMS)}) AS u({BINDING_COLS}) "
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _BINDING_NAMES[2:])
)

ACCOUNT_COLS = (
    "aor, username, domain, ha1_md5, ha1_sha256, allowed_networks, max_contacts, "
    "register_replace, replace_keep_calls, enabled, created_at, updated_at"
)
_ACCOUNT_NAMES = [c.strip() for c in ACCOUNT_COLS.split(",")]
ACCOUNT_UPSERT = (
    f"INSERT INTO accounts ({ACCOUNT_COLS}) VALUES ({', '.join(f'${i}' for i in range(1, 13))}) "
    "ON CONFLICT (aor) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ACCOUNT_NAMES[1:])
)

DOMAIN_UPSERT = (
    "INSERT INTO domains (name, created_at) VALUES ($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at"
)

PARAM_UPSERT = (
    "INSERT INTO params (name, value, updated_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)

def batch_upsert(table: str, columns: str, types: str, update: list[str]) -> str:
    """An upsert of a whole batch in one statement: one array per column, of
    PostgreSQL type `types` (in column order), unnested into rows. The server
    plans and runs one statement instead of one per row (executemany), a third
    of its CPU for a batch of events. `rows_of` makes the arguments; a batch
    must not hold a key twice (ON CONFLICT DO UPDATE would refuse it)."""
    names = [c.strip() for c in columns.split(",")]
    arrays = ", ".join(f"${i}::{t.strip()}[]" for i, t in enumerate(types.split(","), 1))
    return (
        f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({names[0]}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in update)
    )


def rows_of(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """`batch_upsert`'s arguments: the rows' columns, the last row of a key kept."""
    unique = list({row[0]: row for row in rows}.values())
    return [list(column) for column in zip(*unique, strict=True)]


#: details are JSON text: cast to the column's json on insert
EVENT_INSERT = batch_upsert(
    "events", EVENT_COLS, "bigint, float8, text, text, text, json",
    ["time", "type", "account", "source", "details"],
)  # fmt: skip

_CDR_NAMES = [c.strip() for c in CDR_COLS.split(",")]
CDR_INSERT = batch_upsert(
    "cdrs", CDR_COLS,
    "text, text, text, text, text, text, text, text, text, float8, float8, float8, int4, int4,"
    " text, text",
    # a replaced CDR sorts as the newest written (its fresh seq), as in SQLite
    [*_CDR_NAMES[1:], "seq"],
)  # fmt: skip


def binding_row(r: BindingRecord) -> tuple[Any, ...]:
    return (
        r.id, r.aor, r.contact, r.transport, r.source_ip, r.source_port, r.local_ip,
        r.local_port, r.conn_id, r.call_id, r.cseq, r.expires_at, r.instance, r.reg_id,
        r.user_agent, list(r.path), r.registered_at, r.refreshed_at, r.reachable, r.node,
        r.nat,
    )  # fmt: skip


def binding_apply_args(ops: Iterable[BindingOp]) -> list[Any]:
    """The arguments of BINDING_APPLY for `ops` applied in order: the last op
    of each binding id wins (the batch commits atomically, so only the final
    state of each row is visible to anyone)."""
    final: dict[str, BindingRecord | None] = {}
    for op in ops:
        final[op.binding_id] = op.record
    deletes = [bid for bid, rec in final.items() if rec is None]
    rows = [binding_row(rec) for rec in final.values() if rec is not None]
    columns: list[list[Any]] = [[] for _ in _BINDING_NAMES]
    for row in rows:
        for i, value in enumerate(row):
            columns[i].append(value)
    path = _BINDING_NAMES.index("path")
    columns[path] = [json.dumps(p) for p in columns[path]]
    return [deletes, *columns]


def binding_from_row(row: Sequence[Any]) -> BindingRecord:
    return BindingRecord(
        id=row[0], aor=row[1], contact=row[2], transport=shared(row[3]), source_ip=row[4],
        source_port=shared_port(row[5]), local_ip=shared(row[6]),
        local_port=shared_port(row[7]), conn_id=row[8],
        call_id=row[9], cseq=row[10], expires_at=row[11], instance=row[12], reg_id=row[13],
        user_agent=shared(row[14]), path=tuple(row[15]), registered_at=row[16],
        refreshed_at=row[17], reachable=row[18], node=shared(row[19]), nat=row[20],
    )  # fmt: skip


def account_row(a: Account) -> tuple[Any, ...]:
    return (
        a.aor, a.user, a.domain, a.ha1_md5, a.ha1_sha256, list(a.allowed_networks),
        a.max_contacts, a.register_replace, a.replace_keep_calls, a.enabled,
        a.created_at, a.updated_at,
    )  # fmt: skip


def account_from_row(row: Sequence[Any]) -> Account:
    return Account(
        user=row[1], domain=shared(row[2]), ha1_md5=row[3], ha1_sha256=row[4],
        allowed_networks=tuple(row[5]), max_contacts=row[6],
        register_replace=shared(row[7]), replace_keep_calls=shared(row[8]), enabled=row[9],
        # an account never changed: one float for both times
        created_at=row[10], updated_at=row[10] if row[11] == row[10] else row[11],
    )  # fmt: skip


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: int  # the database's version (0: never migrated)
    latest: int  # the newest this code knows

    @property
    def verdict(self) -> str:
        if self.current == self.latest:
            return "up to date"
        if self.current < self.latest:
            return f"{self.latest - self.current} migration(s) to apply"
        return "newer than this regswitch"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    return bundled_migrations("postgres")


def _too_new(current: int, latest: int) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"database schema version {current} is newer than this regswitch supports "
        f"({latest}); upgrade regswitch"
    )


async def schema_status(conn: asyncpg.Connection) -> SchemaStatus:
    """Where the database stands, without changing it."""
    latest = migrations()[-1][0]
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    current = 0
    if exists:
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return SchemaStatus(int(current), latest)


async def migrate(conn: asyncpg.Connection) -> tuple[int, int]:
    """Bring the schema up to date in one transaction; return (before, after).

    The advisory lock makes a second node starting at the same moment wait,
    then find the work done. A database newer than the code is refused.
    """
    found = migrations()
    latest = found[-1][0]
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        if current > latest:
            raise _too_new(current, latest)
        for version, name, sql in found:
            if version > current:
                await conn.execute(sql)  # no arguments: several statements are allowed
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                    version,
                    name,
                    time.time(),
                )
    return current, latest
