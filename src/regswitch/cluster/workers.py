"""`serve --workers N`: N worker processes of one host sharing the SIP and API ports.

The parent serves nothing itself. It fixes the ports first (a listener given
port 0 gets a free one, so that every worker binds the same), then starts
each worker as a fresh interpreter (multiprocessing "spawn": no state
inherited from the parent) running the ordinary `serve` with SO_REUSEPORT
on every listener and node id NAME/i. Each worker is a full node of the
cluster; the kernel gives each phone's packets (and TCP connections) to one
worker, which then holds that phone's flow. The admin API port is shared
the same way: any worker answers, and what it answers is cluster-wide.

A worker that dies is started again (after a pause that grows while it
keeps dying). One that fails to start at all -- a port in use, Redis
unreachable -- stops the whole start with its one-line reason and exit 2.
SIGTERM/SIGINT to the parent stops the workers (SIGTERM each, then SIGKILL
after STOP_TIMEOUT) and ends it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from regswitch.common.config import Settings, api_host, api_port
from regswitch.transport.base import ListenSpec

log = logging.getLogger("regswitch.workers")

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
RESTART_PAUSE = (0.5, 30.0)  # first and longest pause before starting a dead worker again


class WorkerStartError(Exception):
    """A worker could not start; the message is its one line (exit 2)."""


def _free_port(transport: str, host: str) -> int:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def fixed_ports(settings: Settings) -> Settings:
    """The same settings with every port 0 replaced by a free port: all workers bind one."""
    sip = []
    for text in settings.sip:
        spec = ListenSpec.parse(text)
        port = spec.port or _free_port(spec.transport, spec.host)
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        sip.append(f"{spec.transport}:{host}:{port}")
    host = api_host(settings.api)
    port = api_port(settings.api) or _free_port("tcp", host)
    api = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return settings.model_copy(update={"sip": sip, "api": api})


#: what a worker process runs: the ordinary serve, given the settings as a dict
# (server.run_worker; a module-level function, so that "spawn" can name it)
WorkerMain = Callable[[dict[str, Any]], None]


class Supervisor:
    def __init__(self, settings: Settings, target: WorkerMain) -> None:
        self.target = target
        self.settings = fixed_ports(settings)
        self.count = settings.workers
        self.node = settings.node_id
        self.context = multiprocessing.get_context("spawn")
        self.workdir = Path(tempfile.mkdtemp(prefix="regswitch-workers-"))
        self.workers: dict[int, BaseProcess] = {}
        self.restarts: dict[int, int] = {}
        self._stopping = False

    def worker_settings(self, number: int) -> dict[str, Any]:
        return self.settings.model_copy(
            update={
                "workers": 1,
                "reuse_port": True,
                "node_id": f"{self.node}/{number}",
                "ready_file": str(self.ready_path(number)),
            }
        ).model_dump()

    def ready_path(self, number: int) -> Path:
        return self.workdir / f"worker-{number}.json"

    def start(self, number: int) -> None:
        self.ready_path(number).unlink(missing_ok=True)
        process = self.context.Process(
            target=self.target,
            args=(self.worker_settings(number),),
            name=f"regswitch-worker-{number}",
            daemon=False,
        )
        process.start()
        self.workers[number] = process
        log.info("worker %d started (pid %s, node %s/%d)", number, process.pid, self.node, number)

    def wait_ready(self) -> list[dict[str, Any]]:
        """Each worker's ready file, once all are written; WorkerStartError if one exits first."""
        deadline = time.monotonic() + READY_TIMEOUT
        ready: dict[int, dict[str, Any]] = {}
        while len(ready) < self.count:
            for number, process in self.workers.items():
                if number in ready:
                    continue
                if process.exitcode is not None:
                    raise WorkerStartError(
                        f"worker {number} exited with {process.exitcode} before it was ready"
                    )
                with contextlib.suppress(OSError, ValueError):  # not (fully) written yet
                    ready[number] = json.loads(self.ready_path(number).read_text())
            if time.monotonic() > deadline:
                raise WorkerStartError(f"the workers were not ready within {READY_TIMEOUT:g} s")
            time.sleep(0.05)  # the ready files are the workers' only signal
        return [ready[n] for n in sorted(ready)]

    def run(self) -> None:
        for number in range(1, self.count + 1):
            self.start(number)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_signal)
        try:
            ready = self.wait_ready()
        except WorkerStartError:
            self.stop()
            raise
        first = ready[0]
        sip = ", ".join(f"{i['transport']}:{i['host']}:{i['port']}" for i in first["sip"])
        print(
            f"regswitch ready: SIP {sip}; API {first['api']}; {self.count} workers "
            f"(nodes {self.node}/1..{self.count})",
            flush=True,
        )
        if self.settings.ready_file:
            _write_ready(
                Path(self.settings.ready_file),
                {**first, "pid": os.getpid(), "workers": [w["pid"] for w in ready]},
            )
        self.supervise()

    def supervise(self) -> None:
        """Start again every worker that dies, until told to stop."""
        while not self._stopping:
            sentinels = {p.sentinel: n for n, p in self.workers.items()}
            for sentinel in wait(list(sentinels), timeout=1.0):
                number = sentinels[sentinel]  # type: ignore[index]
                process = self.workers[number]
                process.join()
                if self._stopping:
                    break
                restarts = self.restarts.get(number, 0)
                pause = min(RESTART_PAUSE[1], RESTART_PAUSE[0] * 2**restarts)
                log.error(
                    "worker %d (pid %s) exited with %s; starting it again in %.1f s",
                    number, process.pid, process.exitcode, pause,
                )  # fmt: skip
                self.restarts[number] = restarts + 1
                time.sleep(pause)
                if not self._stopping:
                    self.start(number)
        self.stop()

    def _stop_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def stop(self) -> None:
        self._stopping = True
        for process in self.workers.values():
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join(1.0)
        for path in self.workdir.glob("*"):
            path.unlink(missing_ok=True)
        self.workdir.rmdir()


def _write_ready(target: Path, data: dict[str, Any]) -> None:
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps({**data, "time": time.time()}))
    tmp.replace(target)


def supervise(settings: Settings, target: WorkerMain) -> None:
    """Run `settings.workers` workers until a signal; WorkerStartError if they cannot start."""
    Supervisor(settings, target).run()
