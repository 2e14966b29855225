"""`regswitch account history user@domain [--since 2h] [--until T] [--json]`:
an account's timeline over the API (GET /api/accounts/{aor}/history)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from regswitch.cli.client import call, ctx


def account_history(
    aor: Annotated[str, typer.Argument(help="user@domain")],
    since: Annotated[
        str | None, typer.Option(help="from: 2h, 30m, 7d ago, epoch or ISO 8601 (default 24h)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="to (default now)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What happened to an account, newest first: registrations, refreshes, kicks,
    rejections, flood blocks, flapping, calls and CDRs, parameter changes."""
    params = {k: v for k, v in (("since", since), ("until", until)) if v}
    history: dict[str, Any] = call("GET", f"/api/accounts/{aor}/history", params=params)
    if as_json or ctx.json:
        typer.echo(json.dumps(history, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    span = f"{_stamp(history['since'])} to {_stamp(history['until'])}"
    table = Table(title=Text(f"{history['account']}: {span}"))
    for column in ("time", "what", "summary", "ref"):
        table.add_column(column, overflow="fold")
    for entry in history["entries"]:
        when = _stamp(entry["time"])
        if entry.get("end_time") and entry["kind"] == "refreshes":
            when += f"\n..{_stamp(entry['end_time'])[11:]}"
        ref = f"event {entry['event_id']}" if entry.get("event_id") else f"cdr {entry['cdr_id']}"
        # Text, not markup: a User-Agent or contact is whatever a device sent
        table.add_row(when, entry["kind"], Text(entry["summary"]), ref)
    console = Console()
    if history["entries"]:
        console.print(table)
    else:
        console.print(Text(f"nothing about {history['account']} from {span}"))
    if history.get("truncated"):
        console.print("(only the newest events are shown: narrow --since/--until)")


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
