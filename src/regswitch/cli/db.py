"""`regswitch db migrate | check`: the PostgreSQL schema, for operators who
run migrations explicitly (`serve` also migrates at start, under the same
advisory lock, so running both is safe).

Exit codes: 0 done / up to date, 1 `check` found migrations to apply (or a
database newer than this regswitch), 2 bad URL or the database cannot be used.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from regswitch.storage.pg_conn import PgTarget

db_app = typer.Typer(no_args_is_help=True, help="database schema (PostgreSQL)")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="postgresql://USER:PASSWORD@HOST:PORT/DBNAME (default: REGSWITCH_DB)",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _target(db: str | None) -> PgTarget:
    from regswitch.storage.pg_conn import parse_url

    url = db or os.environ.get("REGSWITCH_DB")
    if not url:
        _fail("give the database with --db postgresql://... (or REGSWITCH_DB)", 2)
    if not url.lower().startswith(("postgresql://", "postgres://")):
        _fail("`regswitch db` manages PostgreSQL databases (SQLite migrates itself at start)", 2)
    try:
        return parse_url(url)
    except ValueError as exc:
        _fail(str(exc), 2)


async def _run(target: PgTarget, apply: bool) -> tuple[int, int]:
    from regswitch.storage.pg_conn import connect
    from regswitch.storage.pg_schema import migrate, schema_status

    conn = await connect(target)
    try:
        if apply:
            return await migrate(conn)
        status = await schema_status(conn)
        return status.current, status.latest
    finally:
        await conn.close()


def _execute(db: str | None, apply: bool) -> tuple[str, int, int]:
    import asyncpg

    from regswitch.storage.base import StorageError
    from regswitch.storage.pg_conn import explain

    target = _target(db)
    try:
        current, latest = asyncio.run(_run(target, apply))
    except StorageError as exc:
        _fail(f"PostgreSQL {target.where}: {exc}", 2)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        _fail(explain(exc, target), 2)
    return target.where, current, latest


@db_app.command("migrate")
def migrate_cmd(db: DbOption = None) -> None:
    """Apply the migrations this regswitch has and the database lacks."""
    where, before, after = _execute(db, apply=True)
    if before == after:
        typer.echo(f"{where}: schema version {after}, already up to date")
    else:
        typer.echo(f"{where}: schema migrated from version {before} to {after}")


@db_app.command("check")
def check_cmd(db: DbOption = None) -> None:
    """Compare the database's schema version with this regswitch's (changes nothing)."""
    from regswitch.storage.pg_schema import SchemaStatus

    where, current, latest = _execute(db, apply=False)
    status = SchemaStatus(current, latest)
    typer.echo(f"{where}: schema version {current}, this regswitch has {latest}: {status.verdict}")
    if current != latest:
        raise typer.Exit(1)
