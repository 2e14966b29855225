"""Settings: defaults < TOML file < REGSWITCH_* environment < command-line flags."""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from regswitch.storage.factory import check_url
from regswitch.transport.base import ListenSpec
from regswitch.transport.hep import resolve_target

ENV_PREFIX = "REGSWITCH_"
_LIST_FIELDS = {"sip", "domains", "trusted_networks", "api_allowed_hosts"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sip: list[str] = Field(default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    api: str = "127.0.0.1:8080"
    api_token: str | None = None
    # Host header names the API answers besides its own address (DNS rebinding
    # defence); "*" turns the check off.
    api_allowed_hosts: list[str] = Field(default_factory=list)
    api_tls_cert: str | None = None  # serve the API over HTTPS with this PEM pair
    api_tls_key: str | None = None
    db: str = "sqlite:///var/regswitch.db"
    tls_cert: str | None = None
    tls_key: str | None = None
    # Domains served; requests to the switch's own addresses count as the first one.
    domains: list[str] = Field(default_factory=lambda: ["regswitch.local"])
    # Networks exempt from flood protection.
    trusted_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Host written into Via/Contact of requests we send (default: the listen address).
    advertised_host: str | None = None
    # this node's name in a cluster (default there: the host name); events and
    # bindings carry it
    node_id: str = "node1"
    # a cluster: redis://HOST:PORT/N (or redis+cluster://HOST:PORT, a Redis Cluster)
    # holding the shared location and the bus
    # (README "Cluster"); unset, the switch is one process on its own
    cluster: str | None = None
    # seconds without a heartbeat after which the other nodes count a node as down
    cluster_node_timeout: float = Field(default=10.0, gt=0, le=3600)
    # worker processes sharing the SIP ports (SO_REUSEPORT); more than one needs `cluster`
    workers: int = Field(default=1, ge=1, le=64)
    # set by `--workers` for its worker processes: share the SIP and API ports
    reuse_port: bool = False
    server_header: str = "regswitch/0.1.0"
    secret: str | None = None  # nonce HMAC key; random per process when unset
    nonce_lifetime: float = 300.0
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    tcp_idle_timeout: float = 600.0
    max_connections: int = 10000
    max_connections_per_ip: int = 100
    max_message_stream: int = 65536
    # bytes buffered over all TCP/TLS connections (partial messages, unsent output)
    max_stream_buffered: int = 64 * 1024 * 1024
    no_answer_timeout: float = 60.0
    max_call_duration: float = 7200.0
    log_level: str = "info"
    log_format: str = "text"
    ready_file: str | None = None
    # starting values of the live parameters EVENT_/CDR_RETENTION_DAYS (days;
    # unset: the parameter's default or its stored value)
    event_retention_days: int | None = Field(default=None, ge=1, le=36500)
    cdr_retention_days: int | None = Field(default=None, ge=1, le=36500)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_url(value)

    @field_validator("sip")
    @classmethod
    def _listeners(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one SIP listener is needed")
        for text in value:
            ListenSpec.parse(text)  # ValueError naming the value
        return value

    # HEP capture: "udp:HOST:PORT" of a Homer / sngrep collector, our capture id, its key
    hep: str | None = None
    hep_id: int = Field(default=0, ge=0, le=0xFFFFFFFF)
    hep_password: str | None = None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be debug, info, warning or error")
        return value.lower()

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError("log_format must be text or json")
        return value

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @field_validator("hep")
    @classmethod
    def _hep(cls, value: str | None) -> str | None:
        if value:
            resolve_target(value)
        return value or None

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one domain is needed")
        return [d.lower() for d in value]

    @model_validator(mode="before")
    @classmethod
    def _cluster_node(cls, data: Any) -> Any:
        """A cluster node is named after its host unless told otherwise."""
        if isinstance(data, dict) and data.get("cluster") and not data.get("node_id"):
            return {**data, "node_id": socket.gethostname()}
        return data

    @field_validator("cluster")
    @classmethod
    def _cluster_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        from regswitch.storage.redis_location import check_url as check_cluster_url

        return check_cluster_url(value)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not value or len(value) > 64 or any(c.isspace() or c in "{}" for c in value):
            raise ValueError("node_id must be 1-64 characters, no spaces or braces")
        return value

    @model_validator(mode="after")
    def _cluster_needs(self) -> Settings:
        if self.workers > 1 and not self.cluster:
            raise ValueError(
                f"--workers {self.workers} needs --cluster redis://HOST:PORT/N: the embedded "
                "SQLite set-up is one process (the workers share bindings through Redis)"
            )
        if self.cluster and self.db.startswith("sqlite"):
            raise ValueError(
                "--cluster needs --db postgresql://...: the nodes share accounts, parameters, "
                "CDRs and events through it (SQLite is one process's file)"
            )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if any(s.startswith("tls:") for s in self.sip) and not self.tls_cert:
            raise ValueError("a tls: listener needs tls_cert and tls_key")
        if bool(self.api_tls_cert) != bool(self.api_tls_key):
            raise ValueError("api_tls_cert and api_tls_key go together")
        host = api_host(self.api)
        if not _is_loopback(host) and not self.api_token:
            raise ValueError(f"the API on non-loopback address {host} requires api_token")
        return self

    @property
    def default_domain(self) -> str:
        return self.domains[0]


def api_host(api: str) -> str:
    host, _, _ = api.rpartition(":")
    return host.strip("[]") or "127.0.0.1"


def api_port(api: str) -> int:
    _, _, port = api.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bad API address {api!r}: expected host:port")
    return int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is None:
            continue
        out[name] = (
            [v.strip() for v in value.split(",") if v.strip()] if name in _LIST_FIELDS else value
        )
    return out


def load_settings(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge the layers; raises ValueError (pydantic's ValidationError is one) on bad input."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            with open(config_file, "rb") as f:
                data.update(tomllib.load(f))
        except OSError as exc:
            raise ValueError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {config_file}: {exc}") from None
    data.update(_from_env(dict(os.environ) if environ is None else environ))
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Settings.model_validate(data)
