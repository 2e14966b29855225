"""`regswitch` command line: `serve`, and the operator commands over the HTTP API.

Every operator command talks to the API (`--api URL`, env REGSWITCH_API,
token from REGSWITCH_API_TOKEN, `--token-file` or `--token`; secrets given
as arguments show in `ps`, see secret_input.py). Human tables by default,
`--json` for scripts. A bad argument or an API error is one line on stderr and exit
code 2 (bad argument) or 1 (the API refused or is unreachable).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from regswitch.cli.client import call, ctx, fail, show
from regswitch.cli.db import db_app
from regswitch.cli.domains import domain_app
from regswitch.cli.history import account_history

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="regswitch SIP softswitch",
)
account_app = typer.Typer(no_args_is_help=True, help="accounts (subscribers)")
param_app = typer.Typer(no_args_is_help=True, help="system parameters (live)")
reg_app = typer.Typer(no_args_is_help=True, help="registrations")
calls_app = typer.Typer(no_args_is_help=True, help="calls in progress")
cdr_app = typer.Typer(no_args_is_help=True, help="call detail records")
cluster_app = typer.Typer(no_args_is_help=True, help="the nodes of a cluster")
app.add_typer(account_app, name="account")
app.add_typer(param_app, name="param")
app.add_typer(reg_app, name="reg")
app.add_typer(calls_app, name="calls")
app.add_typer(cdr_app, name="cdr")
app.add_typer(cluster_app, name="cluster")
app.add_typer(domain_app, name="domain")
app.add_typer(db_app, name="db")


def show_version(value: bool) -> None:
    if value:
        from regswitch import version_text

        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def main_options(
    api: Annotated[
        str, typer.Option("--api", envvar="REGSWITCH_API", help="admin API URL")
    ] = ctx.api,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="REGSWITCH_API_TOKEN",
            help="API bearer token; '-' prompts. Prefer env REGSWITCH_API_TOKEN or "
            "--token-file: a value here shows in ps",
        ),
    ] = None,
    token_file: Annotated[
        str | None, typer.Option("--token-file", help="read the API bearer token from this file")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="version and build, then exit"
        ),
    ] = False,
) -> None:
    ctx.api = api if "://" in api else f"http://{api}"
    ctx.token = _secret("the API token", token if token_file is None else None, file=token_file)
    ctx.json = as_json


_PASSWORD_HELP = (
    "digest password; '-' prompts (or reads a line from stdin). A value here shows in ps: "
    "prefer '-', --password-file or --password-env"
)
PasswordFile = Annotated[
    str | None, typer.Option("--password-file", help="read the password from this file")
]
PasswordEnv = Annotated[
    str | None,
    typer.Option("--password-env", help="read the password from this environment variable"),
]


def _secret(label: str, value: str | None, **sources: Any) -> str | None:
    """read_secret (file=, env=, confirm=), a bad source being a one-line exit 2."""
    from regswitch.cli.secret_input import SecretError, read_secret

    try:
        return read_secret(label, value, **sources)
    except SecretError as exc:
        fail(str(exc), 2)


def _override(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered not in ("inherit", "on", "off"):
        fail(f"{name} must be inherit, on or off", 2)
    return lowered


# --- accounts ---------------------------------------------------------------------------
@account_app.command("add")
def account_add(
    aor: Annotated[str, typer.Argument(help="user@domain")],
    password: Annotated[str | None, typer.Option(help=_PASSWORD_HELP)] = None,
    password_file: PasswordFile = None,
    password_env: PasswordEnv = None,
    network: Annotated[
        list[str] | None, typer.Option("--network", help="allowed CIDR (repeatable)")
    ] = None,
    max_contacts: Annotated[int, typer.Option(min=1, max=100)] = 1,
    replace: Annotated[
        str, typer.Option("--replace", help="register_replace: inherit|on|off")
    ] = "inherit",
    keep_calls: Annotated[
        str, typer.Option("--keep-calls", help="replace_keep_calls: inherit|on|off")
    ] = "inherit",
    disabled: Annotated[bool, typer.Option("--disabled", help="create disabled")] = False,
    create_domain: Annotated[
        bool, typer.Option("--create-domain", help="also serve its domain if it is not")
    ] = False,
) -> None:
    """Create an account."""
    user, at, domain = aor.rpartition("@")
    if not at or not user or not domain:
        fail(f"bad account {aor!r}: expected user@domain", 2)
    # asked twice at a prompt: a typo would lock the device out
    new_password = _secret("password", password, file=password_file, env=password_env, confirm=True)
    body = {
        "user": user,
        "domain": domain,
        "password": new_password,
        "allowed_networks": network or [],
        "max_contacts": max_contacts,
        "register_replace": _override(replace, "--replace"),
        "replace_keep_calls": _override(keep_calls, "--keep-calls"),
        "enabled": not disabled,
        "create_domain": create_domain,
    }
    show(call("POST", "/api/accounts", json=body))


@account_app.command("list")
def account_list() -> None:
    """List accounts."""
    show(
        call("GET", "/api/accounts"),
        [
            "aor",
            "max_contacts",
            "register_replace",
            "replace_keep_calls",
            "allowed_networks",
            "enabled",
        ],
    )


@account_app.command("show")
def account_show(aor: str) -> None:
    """One account with its registrations."""
    show(call("GET", f"/api/accounts/{aor}"))


@account_app.command("set")
def account_set(
    aor: str,
    password: Annotated[str | None, typer.Option(help=_PASSWORD_HELP)] = None,
    password_file: PasswordFile = None,
    password_env: PasswordEnv = None,
    network: Annotated[
        list[str] | None, typer.Option("--network", help="allowed CIDR (repeatable)")
    ] = None,
    clear_networks: Annotated[bool, typer.Option("--clear-networks")] = False,
    max_contacts: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    replace: Annotated[str | None, typer.Option("--replace")] = None,
    keep_calls: Annotated[str | None, typer.Option("--keep-calls")] = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
) -> None:
    """Change an account."""
    patch: dict[str, Any] = {}
    password = _secret("password", password, file=password_file, env=password_env, confirm=True)
    if password is not None:
        patch["password"] = password
    if network:
        patch["allowed_networks"] = network
    if clear_networks:
        patch["allowed_networks"] = []
    if max_contacts is not None:
        patch["max_contacts"] = max_contacts
    if replace is not None:
        patch["register_replace"] = _override(replace, "--replace")
    if keep_calls is not None:
        patch["replace_keep_calls"] = _override(keep_calls, "--keep-calls")
    if enabled is not None:
        patch["enabled"] = enabled
    if not patch:
        fail("nothing to change: give at least one option", 2)
    show(call("PATCH", f"/api/accounts/{aor}", json=patch))


@account_app.command("del")
def account_del(aor: str) -> None:
    """Delete an account."""
    show(call("DELETE", f"/api/accounts/{aor}"))


@account_app.command("import")
def account_import(
    path: Annotated[str, typer.Argument(help="JSON list of accounts, or CSV user,domain,password")],
    replace_existing: Annotated[bool, typer.Option("--replace-existing")] = False,
) -> None:
    """Bulk import accounts (all or nothing)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    if path.endswith(".json"):
        try:
            items = json.loads(text)
        except ValueError as exc:
            fail(f"{path} is not JSON: {exc}", 2)
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 3:
                fail(f"{path}:{number}: expected user,domain,password", 2)
            items.append({"user": parts[0], "domain": parts[1], "password": parts[2]})
    show(
        call(
            "POST",
            "/api/accounts/import",
            json={"accounts": items, "replace_existing": replace_existing},
        )
    )


# --- parameters -------------------------------------------------------------------------
@param_app.command("list")
def param_list() -> None:
    """Every parameter with its value and default."""
    show(call("GET", "/api/parameters"), ["name", "value", "default", "meaning"])


@param_app.command("get")
def param_get(name: str) -> None:
    show(call("GET", f"/api/parameters/{name}"))


@param_app.command("set")
def param_set(name: str, value: str) -> None:
    """Set a parameter live (applies to the next request)."""
    show(call("PUT", f"/api/parameters/{name}", json={"value": value}))


@account_app.command("sharing")
def account_sharing() -> None:
    """Accounts suspected of credential sharing (and locked ones)."""
    show(
        call("GET", "/api/sharing"),
        ["account", "why", "networks", "kicks", "user_agents", "locked_until"],
    )


@account_app.command("unlock")
def account_unlock(aor: str) -> None:
    """Unlock an account locked for credential sharing (and clear its suspicion)."""
    show(call("DELETE", f"/api/sharing/{aor}"))


# --- registrations ----------------------------------------------------------------------
@reg_app.command("list")
def reg_list(
    account: Annotated[str | None, typer.Option(help="user@domain")] = None,
    ip: Annotated[str | None, typer.Option(help="source IP")] = None,
) -> None:
    """Current registrations."""
    query = {k: v for k, v in {"account": account, "ip": ip}.items() if v}
    show(
        call("GET", "/api/registrations", params=query),
        ["id", "account", "contact", "source", "user_agent", "expires_in", "reachable"],
    )


@reg_app.command("delete")
def reg_delete(
    binding_id: str,
    kick: Annotated[bool, typer.Option("--kick/--no-kick", help="also end its calls")] = False,
    block: Annotated[
        int, typer.Option(min=0, max=604800, help="also refuse the device for SECONDS")
    ] = 0,
) -> None:
    """Delete a registration, optionally kicking its calls and blocking the device."""
    params = {"kick": str(kick).lower(), "block": str(block)}
    show(call("DELETE", f"/api/registrations/{binding_id}", params=params))


@reg_app.command("tombstones")
def reg_tombstones(
    account: Annotated[str | None, typer.Option(help="user@domain")] = None,
) -> None:
    """Replaced registrations whose refresh is refused, and blocked devices."""
    show(
        call("GET", "/api/tombstones", params={"account": account} if account else {}),
        ["account", "kind", "source", "user_agent", "by_source", "remaining", "refusals"],
    )


@reg_app.command("unblock")
def reg_unblock(account: str) -> None:
    """Let an account's replaced and blocked devices register again; end its holds."""
    show(call("DELETE", "/api/tombstones", params={"account": account}))


# --- events -----------------------------------------------------------------------------
@app.command("events")
def events(
    type: Annotated[str | None, typer.Option("--type", help="event type")] = None,
    account: Annotated[str | None, typer.Option(help="user@domain")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
) -> None:
    """Recorded events, newest first."""
    query: dict[str, Any] = {"limit": limit}
    if type:
        query["type"] = type
    if account:
        query["account"] = account
    show(
        call("GET", "/api/events", params=query),
        ["id", "time", "type", "account", "source", "details"],
    )


# --- calls and CDRs ---------------------------------------------------------------------
@calls_app.command("list")
def calls_list() -> None:
    """Calls in progress."""
    show(
        call("GET", "/api/calls"),
        ["id", "caller", "callee", "state", "duration", "caller_source", "callee_contact"],
    )


@calls_app.command("hangup")
def calls_hangup(call_id: str) -> None:
    """Hang up both legs of a call (end reason admin-hangup)."""
    show(call("DELETE", f"/api/calls/{call_id}"))


@cluster_app.command("status")
def cluster_status() -> None:
    """Nodes, their heartbeats, and the bindings and calls each holds."""
    status = call("GET", "/api/cluster")
    if ctx.json:
        show(status)
        return
    where = status.get("cluster") or "not a cluster (one process)"
    health = "" if status.get("healthy") else " -- UNREACHABLE"
    typer.echo(f"cluster {where}{health}; asked node {status.get('node')}")
    show(
        [
            {
                **node,
                "alive": "yes" if node.get("alive") else "DOWN",
                "heartbeat": f"{node.get('age', 0):.1f} s ago",
                # counts since the node started: flood blocks it decided, REGISTER
                # nonce counts another node had used, rebuilds of its location copy
                "blocks": node.get("counts", {}).get("flood_blocks", 0),
                "replays": node.get("counts", {}).get("nonce_claims_refused", 0),
                "resyncs": node.get("counts", {}).get("location_resyncs", 0),
            }
            for node in status.get("nodes", [])
        ],
        ["node", "alive", "heartbeat", "bindings", "calls", "blocks", "replays", "resyncs",
         "pid", "started", "api"],
    )  # fmt: skip


def _cdr_query(
    account: str | None, reason: str | None, since: str | None, until: str | None, limit: int
) -> dict[str, Any]:
    query: dict[str, Any] = {"limit": limit}
    for key, value in (
        ("account", account),
        ("reason", reason),
        ("since", since),
        ("until", until),
    ):
        if value:
            query[key] = value
    return query


@cdr_app.command("list")
def cdr_list(
    account: Annotated[str | None, typer.Option(help="caller or callee user@domain")] = None,
    reason: Annotated[str | None, typer.Option(help="end reason")] = None,
    since: Annotated[str | None, typer.Option(help="epoch or ISO 8601")] = None,
    until: Annotated[str | None, typer.Option(help="epoch or ISO 8601")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 50,
) -> None:
    """CDRs, newest first."""
    show(
        call("GET", "/api/cdrs", params=_cdr_query(account, reason, since, until, limit)),
        [
            "start",
            "caller",
            "callee",
            "final_code",
            "billable_seconds",
            "end_reason",
            "end_direction",
        ],
    )


@cdr_app.command("export")
def cdr_export(
    output: Annotated[
        str, typer.Option("--output", "-o", help="file to write ('-' for stdout)")
    ] = "-",
    account: Annotated[str | None, typer.Option()] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100000,
) -> None:
    """CDRs as CSV."""
    query = _cdr_query(account, reason, since, until, limit)
    query["format"] = "csv"
    text = call("GET", "/api/cdrs", params=query)
    if output == "-":
        typer.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}", 2)
    typer.echo(f"wrote {max(0, text.count(chr(10)) - 1)} CDRs to {output}")


# --- serve ------------------------------------------------------------------------------
@app.command()
def serve(
    config: Annotated[str | None, typer.Option("--config", help="TOML configuration file")] = None,
    sip: Annotated[
        list[str] | None,
        typer.Option("--sip", help="SIP listener transport:host:port (repeatable)"),
    ] = None,
    api: Annotated[str | None, typer.Option("--api", help="admin API listen host:port")] = None,
    db: Annotated[
        str | None, typer.Option(help="storage URL, e.g. sqlite:///var/regswitch.db")
    ] = None,
    tls_cert: Annotated[str | None, typer.Option(help="TLS certificate (PEM)")] = None,
    tls_key: Annotated[str | None, typer.Option(help="TLS private key (PEM)")] = None,
    domain: Annotated[
        list[str] | None, typer.Option("--domain", help="served SIP domain (repeatable)")
    ] = None,
    api_token: Annotated[
        str | None,
        typer.Option(
            help="bearer token required by the API; '-' prompts. A value here shows in ps: "
            "prefer env REGSWITCH_API_TOKEN, --api-token-file or api_token in --config"
        ),
    ] = None,
    api_token_file: Annotated[
        str | None, typer.Option(help="read the API bearer token from this file")
    ] = None,
    api_tls_cert: Annotated[
        str | None, typer.Option(help="serve the API over HTTPS: certificate (PEM)")
    ] = None,
    api_tls_key: Annotated[str | None, typer.Option(help="the API's TLS private key (PEM)")] = None,
    api_allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--api-allowed-host",
            help="a Host name the API answers besides its address (repeatable; '*' = any)",
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json")] = None,
    ready_file: Annotated[
        str | None, typer.Option(help="write listening addresses here as JSON")
    ] = None,
    hep: Annotated[
        str | None, typer.Option(help="copy SIP to a HEP collector: udp:HOST:PORT")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="join a cluster: redis://HOST:PORT/N, or redis+cluster://HOST:PORT for a "
            "Redis Cluster (shared location and bus)"
        ),
    ] = None,
    node_id: Annotated[
        str | None, typer.Option("--node-id", help="this node's name in the cluster (hostname)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="worker processes sharing the SIP ports (--cluster)"),
    ] = None,
) -> None:
    """Run the switch."""
    from pydantic import ValidationError

    from regswitch.common.config import load_settings
    from regswitch.server import StartupError, check_api_tls, run

    api_token = _secret("the API token", api_token, file=api_token_file)
    try:
        settings = load_settings(
            config,
            {
                "sip": sip or None,
                "api": api,
                "db": db,
                "tls_cert": tls_cert,
                "tls_key": tls_key,
                "domains": domain or None,
                "api_token": api_token,
                "api_tls_cert": api_tls_cert,
                "api_tls_key": api_tls_key,
                "api_allowed_hosts": api_allowed_host or None,
                "log_level": log_level,
                "log_format": log_format,
                "ready_file": ready_file,
                "hep": hep,
                "cluster": cluster,
                "node_id": node_id,
                "workers": workers,
            },
        )
        check_api_tls(settings)
    except (ValidationError, ValueError, OSError) as exc:
        fail(_one_line(exc), 2)
    from regswitch.storage.base import StorageError

    try:
        run(settings)
    except StartupError as exc:
        fail(str(exc), 2)
    except StorageError as exc:  # the database cannot be used at start
        fail(_one_line(exc), 2)


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        # pydantic prefixes a validator's own message with "Value error, "
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc).splitlines()[0]


account_app.command("history")(account_history)


def json_anywhere(args: Sequence[str]) -> list[str]:
    """`--json` is an option of the whole program; accept it after the
    subcommand too (`regswitch cdr list --json`) by moving it to the front."""
    args = list(args)
    end = args.index("--") if "--" in args else len(args)
    if "--json" not in args[:end]:
        return args
    return ["--json", *(a for i, a in enumerate(args) if a != "--json" or i >= end)]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: usage errors are one line (click's rich box is not), exit 2."""
    # click's exceptions, wherever this typer takes click from (newer ones vendor it)
    errors = sys.modules[typer.BadParameter.__module__]

    args = json_anywhere(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="regswitch", standalone_mode=False)
    except errors.NoArgsIsHelpError as exc:
        exc.show()  # the help text, as `--help` prints it
        raise SystemExit(2) from None
    except errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "regswitch"
        typer.echo(f"error: {exc.format_message()} (see: {where} --help)", err=True)
        raise SystemExit(2) from None
    except errors.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        raise SystemExit(exc.exit_code) from None
    except errors.Abort:
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
