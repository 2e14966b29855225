"""Build every part, start the transports and the API, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from regswitch.app.switch import Switch
from regswitch.common.config import Settings, api_host, api_port
from regswitch.common.ids import new_id
from regswitch.common.logs import setup_logging
from regswitch.sip.timers import Timers
from regswitch.sip.txlayer import TransactionLayer
from regswitch.storage.base import StorageError
from regswitch.storage.redis_location import RedisLocation
from regswitch.transport.base import ListenSpec, TransportLimits
from regswitch.transport.endpoint import Endpoint
from regswitch.transport.hep import CapturingSender, HepCapture, parse_target
from regswitch.transport.manager import TransportManager
from regswitch.transport.stream import server_ssl_context

log = logging.getLogger("regswitch.server")


API_SEND_BUFFER = 256 * 1024


class StartupError(Exception):
    """The switch cannot start; the message is one line for the operator
    (the CLI prints it and exits 2)."""


def _os_reason(exc: OSError) -> str:
    """"address already in use", not asyncio's sentence around it."""
    if exc.errno and not isinstance(exc, ssl.SSLError):
        return os.strerror(exc.errno).lower()
    return str(exc)


async def _close_quietly(switch: Switch) -> None:
    """Close what a failed start opened; the start-up error is what to report."""
    with contextlib.suppress(Exception):
        await switch.close()


def tune_gc() -> None:
    """Fewer cyclic-GC passes. The switch keeps hundreds of thousands of live
    objects (lingering transactions, bindings); with CPython's default
    thresholds a full pass over them runs every few thousand messages and
    costs a third of the CPU under load. Cycles are rare on the hot path, so
    collecting less often only delays reclaiming them."""
    gc.set_threshold(50_000, 20, 100)


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _not_listening_yet(data: bytes, flow: object) -> None:
    raise RuntimeError("a transport delivered data before the endpoint existed")


async def build(settings: Settings) -> Switch:
    """Everything wired, nothing listening yet."""
    loop = asyncio.get_running_loop()
    limits = TransportLimits(
        max_message_stream=settings.max_message_stream,
        tcp_idle_timeout=settings.tcp_idle_timeout,
        max_connections=settings.max_connections,
        max_connections_per_ip=settings.max_connections_per_ip,
        max_stream_buffered=settings.max_stream_buffered,
        reuse_port=settings.reuse_port,
    )
    ssl_context: ssl.SSLContext | None = None
    if settings.tls_cert and settings.tls_key:
        try:
            ssl_context = server_ssl_context(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(
                f"cannot load the TLS certificate {settings.tls_cert} or key "
                f"{settings.tls_key}: {_os_reason(exc)}"
            ) from None
    txlayer = TransactionLayer(
        id_factory=new_id,
        timers=Timers(t1=settings.t1, t2=settings.t2, t4=settings.t4),
        server_header=settings.server_header,
        max_stream_message=settings.max_message_stream,
    )
    # transports and endpoint refer to each other: the handler is set once
    # both exist (before any listener starts, which takes it from here)
    transports = TransportManager(_not_listening_yet, limits, ssl_context)
    hep = hep_capture(settings, loop)
    endpoint = Endpoint(
        txlayer,
        CapturingSender(transports, hep) if hep else transports,
        id_factory=new_id,
        server_header=settings.server_header,
        loop=loop,
    )
    transports.handler = endpoint.on_data
    if hep is not None:  # a flood-blocked source's messages are dropped, not copied
        gate = lambda ip: endpoint.gate is not None and endpoint.gate(ip)  # noqa: E731
        transports.handler = hep.tap_handler(endpoint.on_data, gate)
    shared = RedisLocation(settings.cluster) if settings.cluster else None
    try:
        switch = Switch(settings, endpoint, transports, hep=hep, shared=shared)
    except ValueError as exc:  # the storage URL
        raise StartupError(str(exc)) from None
    try:
        await switch.open()
    except (StorageError, OSError) as exc:
        await _close_quietly(switch)
        raise StartupError(str(exc).splitlines()[0]) from None
    return switch


def hep_capture(settings: Settings, loop: asyncio.AbstractEventLoop) -> HepCapture | None:
    """The HEP copy of the SIP traffic when `hep` is configured (else no tap at all)."""
    if not settings.hep:
        return None
    capture = HepCapture(
        parse_target(settings.hep),
        capture_id=settings.hep_id,
        password=settings.hep_password or "",
        loop=loop,
    )
    log.info("HEP capture to %s (capture id %d)", settings.hep, settings.hep_id)
    return capture


def _api_socket(settings: Settings) -> socket.socket:
    host = api_host(settings.api)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.reuse_port:  # the workers of `--workers N` share one admin API port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Accepted connections inherit this. A fixed send buffer turns off the
    # kernel's autotuning, which on loopback grows to megabytes: a stalled
    # event-stream client then blocks its writer (and gets dropped) early.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, API_SEND_BUFFER)
    try:
        sock.bind((host, api_port(settings.api)))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on API {settings.api}: {_os_reason(exc)}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(settings: Settings) -> None:
    # Start-up builds an object per account and per binding, and builds no
    # cycles worth collecting: with the collector on, its passes over the
    # growing heap were a third of the time a restart took to load them.
    gc.disable()
    try:
        switch = await build(settings)
    finally:
        gc.freeze()  # what start-up built lives for good: never scan it again
        gc.enable()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    listening = []
    try:
        specs = [(text, ListenSpec.parse(text)) for text in settings.sip]
        switch.serve_hosts(spec.host for _, spec in specs)
        for text, spec in specs:
            try:
                host, port = await switch.transports.listen(spec)
            except OSError as exc:
                raise StartupError(f"cannot listen on {text}: {_os_reason(exc)}") from None
            listening.append({"transport": spec.transport, "host": host, "port": port})
        switch.set_listeners(listening)
        api_sock = _api_socket(settings)
    except StartupError:
        await _close_quietly(switch)
        raise

    api_addr = api_sock.getsockname()
    scheme = "https" if settings.api_tls_cert else "http"
    api_url = f"{scheme}://{_url_host(api_addr[0])}:{api_addr[1]}"
    switch.api_url = api_url
    try:
        await switch.listen_relay()  # a cluster node: announced with its API and listeners
    except OSError as exc:
        api_sock.close()
        await _close_quietly(switch)
        raise StartupError(f"cannot open the cluster relay listener: {_os_reason(exc)}") from None
    api_task = asyncio.create_task(_run_api(switch, api_sock, settings))

    for item in listening:
        log.info("SIP listening on %s:%s:%s", item["transport"], item["host"], item["port"])
    log.info("admin API on %s (OpenAPI at %s/openapi.json)", api_url, api_url)
    sip_text = ", ".join(f"{i['transport']}:{i['host']}:{i['port']}" for i in listening)
    print(
        f"regswitch ready: SIP {sip_text}; API {api_url}\n"
        f"  add a first account:  {command_hint()} --api {api_url} account add "
        f"alice@{settings.default_domain}"
        " --password secret",
        flush=True,
    )
    if settings.ready_file:
        _write_ready(settings.ready_file, listening, api_url)

    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({stop_task, api_task}, return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down")
    api_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await api_task
    await switch.close()
    log.info("stopped")


async def _run_api(switch: Switch, sock: socket.socket, settings: Settings) -> None:
    import uvicorn

    from regswitch.console.api.app import create_app

    app = create_app(switch)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="none",
        http="h11",
        ssl_certfile=settings.api_tls_cert,
        ssl_keyfile=settings.api_tls_key,
    )
    # uvicorn captures SIGINT/SIGTERM while serving and ends serve() on them,
    # which ends the switch too (serve() waits for whichever finishes first)
    server = uvicorn.Server(config)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


def check_api_tls(settings: Settings) -> None:
    """Load the API's certificate pair now, so a bad one is a one-line start
    error rather than an API task that dies after the switch is up."""
    if settings.api_tls_cert and settings.api_tls_key:
        try:
            server_ssl_context(settings.api_tls_cert, settings.api_tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load api_tls_cert/api_tls_key ({settings.api_tls_cert}): {exc}"
            ) from exc


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_ready(path: str, listening: list[dict[str, object]], api_url: str) -> None:
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(
        json.dumps({"sip": listening, "api": api_url, "pid": os.getpid(), "time": time.time()})
    )
    tmp.replace(target)


def command_hint() -> str:
    """How the operator runs this `regswitch` again: the bare name when that
    is what PATH finds, else the path it was started by (e.g.
    .venv/bin/regswitch), else `python -m regswitch`."""
    started = sys.argv[0] if sys.argv else ""
    if Path(started).name == "regswitch":
        found = shutil.which("regswitch")
        if found and Path(found).resolve() == Path(started).resolve():
            return "regswitch"
        return started
    return f"{sys.executable} -m regswitch"


def check_db_path(db: str) -> None:
    """A SQLite file's directory must exist: a typo in --db must not create
    a tree of directories somewhere unexpected."""
    if not db.startswith("sqlite:///") or db.partition("?")[0].endswith(":memory:"):
        return
    parent = Path(db.removeprefix("sqlite:///").partition("?")[0]).parent
    if not parent.is_dir():
        raise StartupError(
            f"--db {db}: directory {parent} does not exist (create it first: mkdir -p {parent})"
        )


def run(settings: Settings) -> None:
    """Serve until a signal; StartupError when the switch cannot start."""
    setup_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        _supervise(settings)
        return
    install_uvloop()
    tune_gc()
    check_db_path(settings.db)
    asyncio.run(serve(settings))


def _supervise(settings: Settings) -> None:
    """`--workers N`: check the cluster answers (one line if not), then run the workers."""
    from regswitch.cluster.workers import WorkerStartError, supervise

    assert settings.cluster is not None  # Settings refuses workers without a cluster
    shared = RedisLocation(settings.cluster)

    async def reachable() -> None:
        await shared.open()
        await shared.close()

    asyncio.run(reachable())  # StorageError: one line, exit 2
    try:
        supervise(settings, run_worker)
    except WorkerStartError as exc:
        raise StartupError(str(exc)) from None


def run_worker(data: dict[str, Any]) -> None:
    """One worker process of `--workers`: the ordinary serve; a start-up error is
    its one line on stderr and exit code 2 (the parent then gives up)."""
    settings = Settings.model_validate(data)
    try:
        run(settings)
    except (StartupError, StorageError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
