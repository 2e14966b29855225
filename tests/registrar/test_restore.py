"""A restart restores its stored bindings while it answers SIP
(BindingUpkeep.restore_in_background): REGISTERs are challenged as usual, and
one with valid credentials is decided once its own account's stored bindings
are back (read ahead of the rest), never on a partial location; the bulk
restore then leaves that account alone."""

from __future__ import annotations

import asyncio

import pytest
from harness import RegistrarHarness

from regswitch.registrar import upkeep
from regswitch.storage.base import BindingRecord, StorageUnavailableError

pytestmark = pytest.mark.timeout(30)


async def restarted(count: int) -> RegistrarHarness:
    """A harness whose storage holds `count` bindings and whose memory holds
    none, as after a restart."""
    reg = await RegistrarHarness.start()
    for n in range(count):
        await reg.account(f"u{n}", "pw")
        assert (await reg.register(f"u{n}", "pw", (f"10.0.1.{n + 1}", 5060))).status == 200
    for binding in list(reg.location):
        reg.location.remove(binding)
    return reg


def hold_the_bulk(reg: RegistrarHarness, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make the bulk restore take its snapshot, then wait for the returned event."""
    bindings = reg.storage.bindings
    snapshot = bindings.load
    release = asyncio.Event()

    async def load() -> list[BindingRecord]:
        records = await snapshot()
        await release.wait()
        return records

    monkeypatch.setattr(bindings, "load", load)
    return release


async def test_a_refresh_while_restoring_is_decided_on_the_accounts_stored_binding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = await restarted(2)
    aor, device = "u0@" + reg.registrar.default_domain, ("10.0.1.1", 5060)
    [stored] = await reg.storage.bindings.load_account(aor)
    release = hold_the_bulk(reg, monkeypatch)
    try:
        task = reg.registrar.upkeep.restore_in_background()
        assert (await reg.register("u0", "pw", device)).status == 200
        assert reg.registrar.restoring  # the rest is not back yet
        assert [b.id for b in reg.location.of(aor)] == [stored.id]  # a refresh, not a new one
        release.set()
        assert await task == 2
        # the bulk's snapshot held the account too: not brought back twice
        assert [b.id for b in reg.location.of(aor)] == [stored.id]
        assert reg.registrar.results["restoring"] == 0
    finally:
        await reg.close()


async def test_a_replacement_while_restoring_is_not_undone_by_the_bulk_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = await restarted(1)
    aor = "u0@" + reg.registrar.default_domain
    [stored] = await reg.storage.bindings.load_account(aor)
    release = hold_the_bulk(reg, monkeypatch)
    try:
        task = reg.registrar.upkeep.restore_in_background()
        # a new device of the account (max_contacts 1, replace On): the stored one goes
        assert (await reg.register("u0", "pw", ("10.0.2.9", 5060))).status == 200
        release.set()  # the snapshot, taken before, still holds the replaced binding
        await task
        [left] = reg.location.of(aor)
        assert left.id != stored.id and left.source_ip == "10.0.2.9"
        assert [r.id for r in await reg.storage.bindings.load_account(aor)] == [left.id]
    finally:
        await reg.close()


async def test_an_unreadable_account_while_restoring_is_answered_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = await restarted(1)
    release = hold_the_bulk(reg, monkeypatch)

    async def unreadable(aor: str) -> list[BindingRecord]:
        raise StorageUnavailableError("database gone")

    monkeypatch.setattr(reg.storage.bindings, "load_account", unreadable)
    try:
        task = reg.registrar.upkeep.restore_in_background()
        refused = await reg.register("u0", "pw", ("10.0.1.1", 5060))
        assert (refused.status, refused.headers.get("retry-after")) == (503, "5")
        assert reg.registrar.results["restoring"] == 1
        release.set()
        await task
        assert (await reg.register("u0", "pw", ("10.0.1.1", 5060))).status == 200
    finally:
        await reg.close()


async def test_restore_gives_the_loop_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = await restarted(5)
    monkeypatch.setattr(upkeep, "RESTORE_TURN", 2)
    try:
        task = reg.registrar.upkeep.restore_in_background()
        seen = []
        while not task.done():
            await asyncio.sleep(0)
            seen.append(len(reg.location))
        assert any(0 < n < 5 for n in seen), seen  # the loop ran midway
        assert len(reg.location) == 5 and not reg.registrar.restoring
    finally:
        await reg.close()


async def test_a_stranger_during_a_restore_makes_no_storage_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = await restarted(1)
    release = hold_the_bulk(reg, monkeypatch)
    reads: list[str] = []
    real = reg.storage.bindings.load_account

    async def counted(aor: str) -> list[BindingRecord]:
        reads.append(aor)
        return await real(aor)

    monkeypatch.setattr(reg.storage.bindings, "load_account", counted)
    try:
        task = reg.registrar.upkeep.restore_in_background()
        # wrong credentials: refused like any failure, and nothing read on its behalf
        assert (await reg.register("u0", "guess", ("10.0.9.9", 5060))).status == 403
        assert reads == []
        release.set()
        await task
    finally:
        await reg.close()


async def test_a_calls_parties_are_restored_together_ahead_of_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an INVITE during a restore asks (calls/b2bua.py): both parties'
    stored bindings back, then routing, while the bulk is still held."""
    reg = await restarted(3)
    domain = reg.registrar.default_domain
    caller, callee = "u0@" + domain, "u2@" + domain
    release = hold_the_bulk(reg, monkeypatch)
    try:
        task = reg.registrar.upkeep.restore_in_background()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        assert not reg.registrar.restored(callee)
        reg.registrar.restore_accounts((caller, callee), done.set_result)
        assert await asyncio.wait_for(done, 5) is True
        assert reg.registrar.restored(caller) and reg.registrar.restored(callee)
        assert len(reg.registrar.list(caller)) == 1 and len(reg.registrar.list(callee)) == 1
        assert reg.registrar.list("u1@" + domain) == []  # the rest waits for the bulk
        release.set()
        assert await task == 3
    finally:
        await reg.close()
