"""What every operator command shares: the API it talks to (`ctx`), one call
to it (`call`: an HTTP error or refusal is one line and an exit code), and
the output (`show`: a table for people, JSON with `--json`)."""

from __future__ import annotations

import json
import time
from typing import Any, NoReturn

import typer


class _Ctx:
    api = "http://127.0.0.1:8080"
    token: str | None = None
    json = False


ctx = _Ctx()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def call(method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {ctx.token}"} if ctx.token else {}
    try:
        response = httpx.request(
            method, ctx.api.rstrip("/") + path, headers=headers, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the API at {ctx.api}: {exc}")
    if response.status_code >= 400:
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text or response.reason_phrase
        fail(f"{response.status_code}: {message}")
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


def show(data: Any, columns: list[str] | None = None, title: str | None = None) -> None:
    if ctx.json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(data, dict):
        table = Table(show_header=False, title=title)
        for key, value in data.items():
            table.add_row(str(key), _cell(value))
    else:
        rows = list(data)
        if not rows:
            console.print("(none)")
            return
        columns = columns or list(rows[0].keys())
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
    # Never truncate or fold a cell (an AOR or id cut with "…" cannot be
    # copied back into a command): a table wider than the terminal is
    # printed at its natural width and the terminal wraps the lines.
    natural = console.measure(table, options=console.options.update_width(100_000)).maximum
    if natural > console.width:
        console = Console(width=natural)
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)
