"""Shared fixtures: a real server subprocess, the Python test UA, SIPp, PJSIP
phones and a self-signed certificate. Helpers live in tests/support/.

    def test_x(server, ua, sipp):
        phone = ua("udp", server.udp)
        assert phone.request("OPTIONS").status == 200
        sipp.run(sipp_scenario("options"), server.target("tcp"), transport="t1").check(1)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

# `import support` from any test, whatever pytest's import mode.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support import in_ci, require_module, require_tool  # noqa: E402
from support.postgres import pg_cluster, pg_url  # noqa: E402, F401  (fixtures)
from support.redis import (  # noqa: E402, F401  (fixtures)
    redis_cluster,
    redis_cluster_url,
    redis_server,
    redis_url,
    shared_redis,
    shared_url,
)
from support.server import RunningServer, log_tail  # noqa: E402
from support.sipp import SippRunner  # noqa: E402
from support.tls import TlsFiles, make_self_signed  # noqa: E402
from support.ua import UA  # noqa: E402

__all__ = ["in_ci", "require_module", "require_tool"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in
    the main thread while its browser is open, which the asyncio tests of
    other directories cannot share."""
    items.sort(key=lambda item: "browser" in item.path.parts)


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "integration: starts a real regswitch server subprocess",
        "sipp: needs the sipp binary",
        "pjsua: needs the pjsua2 module",
        "browser: needs chromium and playwright",
        "slow: takes more than a few seconds",
    ):
        config.addinivalue_line("markers", line)


_SERVERS = pytest.StashKey[list[RunningServer]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    """A failed test that ran servers shows their log tails in its report."""
    report: pytest.TestReport = yield
    if report.failed:
        for srv in item.stash.get(_SERVERS, []):
            report.sections.append((f"regswitch log {srv.log_path}", log_tail(srv.log_path, 6000)))
    return report


# -- TLS -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed cert/key for 127.0.0.1 (its own CA): `.cert`, `.key`,
    `.client_context()`, `.server_context()`."""
    require_tool("openssl", "Debian package openssl; `make system`")
    return make_self_signed(tmp_path_factory.mktemp("tls"))


# -- server ------------------------------------------------------------------------

ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """`server_factory(*extra_args, tls=False, env=None, name=None, host=..., db=...)`
    starts one more `regswitch serve` (own directory and db under tmp_path, or
    the storage URL `db`; SIP on `host`); all are stopped after the test. A
    server that died during the test fails it."""
    started: list[RunningServer] = []

    def start(
        *extra_args: str,
        tls: bool | TlsFiles = False,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        args: Sequence[str] = (),
        host: str = "127.0.0.1",
        db: str | None = None,
    ) -> RunningServer:
        files: TlsFiles | None = None
        if isinstance(tls, TlsFiles):
            files = tls
        elif tls:
            files = request.getfixturevalue("tls_cert")
        workdir = tmp_path / (name or f"server{len(started)}")
        srv = RunningServer(
            workdir, tls=files, extra_args=[*extra_args, *args], env=env, host=host, db=db
        )
        started.append(srv)
        return srv.start()

    request.node.stash[_SERVERS] = started

    yield start

    died = []
    for srv in started:
        if srv.proc is not None and srv.returncode is not None and srv.starts and not srv.stopped:
            died.append(srv)
        srv.stop()
    if died:
        details = "\n".join(
            f"{srv!r} exited with {srv.returncode}\n{log_tail(srv.log_path)}" for srv in died
        )
        pytest.fail(f"regswitch serve died during the test\n{details}", pytrace=False)


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    """A running server: UDP + TCP SIP listeners and the API (`.udp`, `.tcp`,
    `.api`, `.api_url`, `.restart()`)."""
    return server_factory()


@pytest.fixture
def tls_server(server_factory: ServerFactory) -> RunningServer:
    """As `server`, plus a TLS listener (`.tls`) with the session's `tls_cert`."""
    return server_factory(tls=True)


# -- Python test UA --------------------------------------------------------------


@pytest.fixture
def ua() -> Iterator[Callable[..., UA]]:
    """`ua(transport="udp", server=(host, port), **kwargs) -> UA`; closed after the test."""
    agents: list[UA] = []

    def make(transport: str = "udp", server: tuple[str, int] | None = None, **kw: Any) -> UA:
        agent = UA(transport, server, **kw)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


# -- SIPp --------------------------------------------------------------------------


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippRunner]:
    """`sipp.run(scenario, target, **kw) -> SippResult`, `sipp.start(...) -> SippProcess`
    (see support/sipp.py); needs the sipp binary; background runs stopped after."""
    helper = SippRunner(require_tool("sipp", "Debian package sip-tester; `make system`"), tmp_path)
    yield helper
    helper.stop_all()


# -- PJSIP phones ----------------------------------------------------------------


@pytest.fixture
def pjsua(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`pjsua(name="phone") -> PjsuaPhone` (pjsua2 in a subprocess); stopped after the test."""
    require_module("pjsua2", "PyPI wheel pjsua2-python; `make venv`")
    from support.pjsua import PjsuaPhone

    phones: list[PjsuaPhone] = []

    def make(name: str | None = None, **kw: Any) -> PjsuaPhone:
        phone = PjsuaPhone(tmp_path / (name or f"phone{len(phones)}"), **kw)
        phones.append(phone)
        return phone.start()

    yield make
    for phone in phones:
        phone.stop()
