"""Secrets for the command line without putting them on the command line.

A value given as an argument is visible to every local user in `ps` and
/proc/PID/cmdline, and lands in shell history. So each secret option also
has a `...-file PATH` form, a `...-env NAME` form (read the named
environment variable), and the value `-`, which prompts (hidden input) on a
terminal or reads one line from standard input otherwise.
"""

from __future__ import annotations

import os
import sys

PROMPT_VALUE = "-"


class SecretError(ValueError):
    """The secret could not be read; the message is one line for the operator."""


def read_secret(
    label: str,
    value: str | None,
    *,
    file: str | None = None,
    env: str | None = None,
    confirm: bool = False,
) -> str | None:
    """The secret from whichever one source was given (None if none was)."""
    given = [s for s in (value, file, env) if s is not None]
    if len(given) > 1:
        raise SecretError(f"give {label} one way only (value, file or environment variable)")
    if file is not None:
        return _from_file(label, file)
    if env is not None:
        secret = os.environ.get(env)
        if not secret:
            raise SecretError(f"{label}: environment variable {env} is not set or empty")
        return secret
    if value == PROMPT_VALUE:
        return _prompt(label, confirm)
    return value


def _from_file(label: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().rstrip("\r\n")
    except OSError as exc:
        raise SecretError(f"{label}: cannot read {path}: {exc.strerror}") from exc
    if not secret:
        raise SecretError(f"{label}: {path} is empty")
    return secret


def _prompt(label: str, confirm: bool) -> str:
    if not sys.stdin.isatty():
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        import typer

        secret = typer.prompt(label, hide_input=True, confirmation_prompt=confirm)
    if not secret:
        raise SecretError(f"{label}: nothing was entered")
    return secret
