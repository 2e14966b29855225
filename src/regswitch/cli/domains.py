"""`regswitch domain add|list|remove`: the served SIP domains, over the API."""

from __future__ import annotations

from typing import Annotated

import typer

from regswitch.cli.client import call, show

domain_app = typer.Typer(no_args_is_help=True, help="served SIP domains (live)")


@domain_app.command("add")
def domain_add(
    name: Annotated[str, typer.Argument(help="domain, e.g. example.org")],
) -> None:
    """Serve a domain (REGISTERs to it are accepted at once)."""
    show(call("POST", "/api/domains", json={"domain": name}))


@domain_app.command("list")
def domain_list() -> None:
    """Served domains with their account counts."""
    show(call("GET", "/api/domains"), ["name", "accounts", "created_at"])


@domain_app.command("remove")
def domain_remove(name: str) -> None:
    """Stop serving a domain (refused while it has accounts)."""
    show(call("DELETE", f"/api/domains/{name}"))
