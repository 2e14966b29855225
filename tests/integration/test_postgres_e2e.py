"""`regswitch serve --db postgresql://…` end to end, against a real PostgreSQL
started by the suite (support/postgres.py):

- a representative set of the registrar and kick tests (SIPp and pjsua2),
  imported from their own modules and run here again with `server` started
  on PostgreSQL: one suite, two backends;
- durability: kill -9 of regswitch under REGISTER load loses no acknowledged
  binding; PostgreSQL stopped and restarted under load: no crash, 503 with
  Retry-After while it is down, OPTIONS and an established call unaffected,
  /healthz degraded with the reason, full service within 2 s of its return,
  nothing acknowledged lost;
- a database that cannot be used at start: one line, exit code 2.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The same tests as on SQLite, collected again here with this module's `server`.
from test_calls_kick import (  # noqa: F401
    test_answered_call_kicked_by_new_callee_device,
    test_replace_off_new_device_refused_call_goes_on,
)
from test_register_auth import (  # noqa: F401
    test_sipp_md5_challenge_then_200,
    test_wrong_password_is_403_and_changes_nothing,
)
from test_register_lifecycle import test_query_lists_and_expires_zero_unregisters  # noqa: F401
from test_register_pjsua import (  # noqa: F401
    test_second_phone_is_refused_under_off,
    test_second_phone_replaces_the_first_under_on,
)
from test_register_policy import (  # noqa: F401
    test_keep_calls_replaces_without_kick,
    test_on_new_device_replaces_the_old_and_kicks_it,
    test_refresh_then_cseq_not_higher_is_500,
)

from calls.harness import Api, Devices, unique, user
from support import wait_until
from support.postgres import PgCluster
from support.register_helpers import DOMAIN, registrations
from support.server import RunningServer
from support.ua import UA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ServerFactory = Callable[..., RunningServer]
#: Seconds within which service must resume once PostgreSQL is back.
RESUME_WITHIN = 2.0


@pytest.fixture
def server(server_factory: ServerFactory, pg_url: str) -> RunningServer:
    """`regswitch serve` on a fresh PostgreSQL database (the later --db wins)."""
    return server_factory("--db", pg_url)


# -- load -------------------------------------------------------------------------


def _import_accounts(server: RunningServer, count: int) -> list[str]:
    users = [f"load{i:04d}" for i in range(count)]
    accounts = [{"user": u, "domain": DOMAIN, "password": f"pw-{u}"} for u in users]
    response = server.api.post("/api/accounts/import", json={"accounts": accounts}, timeout=60)
    assert response.status_code < 300, response.text
    return users


class RegisterLoad:
    """Threads of Python UAs, each registering its own users once, with digest,
    each from its own Contact; records what was acknowledged (200) and what
    was refused (503 and its Retry-After)."""

    def __init__(self, server: RunningServer, users: list[str], threads: int = 4) -> None:
        self.server = server
        self.acked: dict[str, str] = {}  # user -> contact acknowledged with 200
        self.unanswered: set[str] = set()  # users whose REGISTER got no final answer
        self.statuses: list[int] = []
        self.retry_after: set[str] = set()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(users[n::threads],), daemon=True)
            for n in range(threads)
        ]

    def start(self) -> RegisterLoad:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 60) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout)

    def count(self, status: int) -> int:
        with self._lock:
            return self.statuses.count(status)

    def _run(self, users: list[str]) -> None:
        phone = UA("udp", self.server.udp)
        try:
            for u in users:
                if self.stop.is_set():
                    return
                contact = f"<sip:{u}@{phone.local[0]}:{phone.local[1]}>"
                try:
                    resp = phone.register(
                        u, DOMAIN, f"pw-{u}", expires=600, contact=contact, timeout=3
                    )
                except (AssertionError, TimeoutError, OSError):
                    with self._lock:  # no answer (e.g. the server was killed): not acknowledged
                        self.unanswered.add(u)
                    continue
                with self._lock:
                    self.statuses.append(resp.status)
                    if resp.status == 200:
                        self.acked[u] = contact.strip("<>")
                    elif resp.status == 503:
                        self.retry_after.add(resp.headers.get("retry-after") or "")
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)
        finally:
            phone.close()


def _bindings(server: RunningServer) -> dict[str, str]:
    return {b["account"].partition("@")[0]: b["contact"] for b in registrations(server)}


def _assert_kept(load: RegisterLoad, server: RunningServer) -> None:
    stored = _bindings(server)
    lost = {u: c for u, c in load.acked.items() if stored.get(u) != c}
    assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged bindings lost: {lost}"


def _wait_healthy(server: RunningServer) -> None:
    """Until /healthz is ok again: the database is back and reconnected."""
    wait_until(
        lambda: server.api.get("/healthz").json()["status"] == "ok",
        RESUME_WITHIN + 1.0,  # a busy shared machine adds to the 2 s
        "healthz ok after PostgreSQL is back",
    )


# -- durability ---------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_under_register_load_loses_no_acknowledged_binding(
    server: RunningServer,
) -> None:
    users = _import_accounts(server, 1500)
    load = RegisterLoad(server, users).start()
    wait_until(lambda: load.count(200) >= 150, 30, "150 acknowledged REGISTERs")
    server.kill()  # SIGKILL mid-load: REGISTERs are in flight
    load.join()
    assert not load.errors, load.errors
    assert 150 <= len(load.acked) < len(users)  # it really was cut short

    server.start()  # the same database
    _assert_kept(load, server)


@pytest.mark.slow
def test_postgresql_down_under_load_503_then_full_service(
    server: RunningServer, pg_cluster: PgCluster
) -> None:
    users = _import_accounts(server, 3000)
    load = RegisterLoad(server, users).start()
    try:
        wait_until(lambda: load.count(200) >= 50, 30, "50 acknowledged REGISTERs")
        pg_cluster.pause()  # pg_ctl stop -m fast: sessions cut, connections refused
        try:
            wait_until(lambda: load.count(503) >= 5, 15, "503s while PostgreSQL is down")
            health = server.api.get("/healthz").json()
            assert health["status"] == "degraded"
            assert "database unavailable" in health["reasons"]["storage"]
            assert health["storage"]["events_dropped"] == 0  # queued, not dropped
            metrics = server.api.get("/metrics").text
            assert 'regswitch_storage{stat="database_up"} 0.0' in metrics
            assert 'regswitch_storage{stat="events_dropped"} 0.0' in metrics
            # OPTIONS needs no database
            probe = UA("udp", server.udp)
            try:
                assert probe.request("OPTIONS", f"sip:{server.target()}").status == 200
            finally:
                probe.close()
        finally:
            pg_cluster.resume()
        back = time.monotonic()
        _wait_healthy(server)
        resumed_after = time.monotonic() - back
        acked_before = load.count(200)
        wait_until(lambda: load.count(200) > acked_before + 20, 20, "200s after the return")
    finally:
        load.join()
    assert not load.errors, load.errors
    assert load.retry_after == {"2"}  # every 503 said when to retry
    assert server.alive
    assert resumed_after < RESUME_WITHIN + 1.0
    _assert_kept(load, server)
    # and nothing refused with 503 is shown (or used) as registered
    shown = set(_bindings(server))
    assert shown <= set(load.acked) | load.unanswered, shown - set(load.acked)
    server.restart()  # and after a restart, everything acknowledged is still there
    _assert_kept(load, server)


@pytest.mark.sipp
def test_established_call_survives_postgresql_down_and_its_cdr_is_written_after(
    server: RunningServer, pg_cluster: PgCluster, sipp: Any
) -> None:
    api, devs = Api(server), Devices(sipp, server)
    alice, bob = api.account(unique("alice")), api.account(unique("bob"))
    bob_port = devs.register(user(bob))
    callee = devs.device("call_uas_answer", bob_port)
    caller = devs.caller("call_uac_hangup", user(alice), user(bob), pause_ms=3000)
    api.wait_call(alice, "answered")
    pg_cluster.pause()
    try:
        caller.wait().check(1)  # the BYE went through and was answered
        callee.wait().check(1)
        api.wait_no_calls()
    finally:
        pg_cluster.resume()
    _wait_healthy(server)
    [cdr] = api.wait_cdrs(alice, timeout=15)  # queued while down, written after
    assert cdr["end_reason"] == "normal"


def test_pg_restart_fast_is_survived(server: RunningServer, pg_cluster: PgCluster) -> None:
    """`pg_ctl restart -m fast` itself (a short gap): the server lives, then serves."""
    users = _import_accounts(server, 20)
    pg_cluster.restart()
    phone = UA("udp", server.udp)

    def registered() -> bool:
        return phone.register(users[0], DOMAIN, f"pw-{users[0]}", expires=600).status == 200

    try:
        wait_until(registered, RESUME_WITHIN + 1.0, "a 200 after the restart", interval=0.1)
    finally:
        phone.close()
    assert server.alive
    assert server.api.get("/healthz").json()["status"] == "ok"


# -- bad input at start ---------------------------------------------------------------


def _serve(db: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regswitch", "serve", "--sip", "udp:127.0.0.1:0",
         "--api", "127.0.0.1:0", "--db", db],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip


def test_unusable_database_at_start_is_one_line_and_exit_2(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    cases = {
        "postgresql://u:p@127.0.0.1:notaport/db": "PostgreSQL URL is malformed",
        "postgresql://u:p@127.0.0.1:5432": "names no database",
        pg_cluster.url("postgres", password="not-the-password"): "login refused",
        pg_cluster.url("missing_db"): "database 'missing_db' does not exist",
        "postgresql://u:p@127.0.0.1:1/db": "cannot reach PostgreSQL at 127.0.0.1:1",
    }
    for db, message in cases.items():
        proc = _serve(db, tmp_path)
        assert proc.returncode == 2, (db, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr  # one line, no traceback
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert "not-the-password" not in proc.stderr


def test_db_migrate_and_check_cli(pg_url: str) -> None:
    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "regswitch", "db", *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    before = db("check", "--db", pg_url)
    assert before.returncode == 1 and "migration(s) to apply" in before.stdout
    done = db("migrate", "--db", pg_url)
    assert done.returncode == 0 and "migrated from version 0 to" in done.stdout
    assert db("migrate", "--db", pg_url).stdout.endswith("already up to date\n")
    after = db("check", "--db", pg_url)
    assert after.returncode == 0 and "up to date" in after.stdout
    bad = db("check", "--db", pg_url.replace("regswitch-test-pw", "nope"))
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "login refused" in bad.stderr
    )
    sqlite = db("check", "--db", "sqlite:///x.db")
    assert sqlite.returncode == 2 and "PostgreSQL" in sqlite.stderr
