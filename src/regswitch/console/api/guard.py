"""Who may use the admin API: the Host header, then the bearer token.

The Host check defeats DNS rebinding: a web page on evil.example whose name
is re-pointed to 127.0.0.1 makes the operator's browser talk to a loopback
API with the page's own origin, so the same-origin policy does not help.
The browser still sends `Host: evil.example`, and that is refused here, on
every path (the console page too), whatever the client address.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from fastapi import FastAPI, Request, Response

from regswitch.common.config import Settings, api_host
from regswitch.console.api.errors import error_response

OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
_WILDCARDS = frozenset({"0.0.0.0", "::"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_of(header: str) -> str:
    """The host part of a Host header value: no port, no brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class HostPolicy:
    """The names and addresses a request may give in Host.

    The API's own address; with a loopback address also `localhost` and the
    other loopback literals; with a wildcard bind (0.0.0.0, ::) any IP
    literal (an address cannot be rebound, only a name can); and the names
    in `api_allowed_hosts` ("*" turns the check off, e.g. behind a proxy that
    checks Host itself).
    """

    def __init__(self, api_address: str, extra: Iterable[str]) -> None:
        own = host_of(api_address)
        names = {own, *(host_of(h) for h in extra)}
        own_ip = _ip(own)
        if own == "localhost" or (own_ip is not None and own_ip.is_loopback):
            names |= _LOOPBACK_NAMES
        self.any_ip = own in _WILDCARDS
        self.any_host = "*" in names
        self.names = frozenset(names)

    def allows(self, header: str | None) -> bool:
        if header is None:
            return True  # HTTP/1.0 without Host: not a browser, so not rebinding
        host = host_of(header)
        if self.any_host or host in self.names:
            return True
        return self.any_ip and _ip(host) is not None


def install_guard(app: FastAPI, settings: Settings) -> None:
    hosts = HostPolicy(api_host(settings.api), settings.api_allowed_hosts)
    token = settings.api_token
    expected = f"Bearer {token}".encode() if token else None

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.headers.get("host")
        if not hosts.allows(host):
            return error_response(
                421,
                f"Host {host!r} is not an address of this API; "
                "add the name to api_allowed_hosts if it is",
            )
        path = request.url.path
        # the token is checked whoever asks, loopback clients included
        if expected is None or path in OPEN_PATHS:
            return await call_next(request)
        if not (path.startswith("/api") or path == "/metrics"):
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return error_response(401, "missing or wrong API token", {"WWW-Authenticate": "Bearer"})
        return await call_next(request)
