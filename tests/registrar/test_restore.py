"""A restart restores its stored bindings while it answers SIP
(BindingUpkeep.restore_in_background): REGISTERs are challenged as usual,
but none is decided on a partly restored location: until every binding is
back, one with valid credentials gets 503 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest
from harness import RegistrarHarness

from regswitch.registrar import upkeep

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


async def test_register_while_restoring_is_503_then_decided_on_every_binding() -> None:
    reg = await restarted(1)
    aor, device = "u0@" + reg.registrar.default_domain, ("10.0.1.1", 5060)
    [stored] = await reg.storage.bindings.load()
    try:
        task = reg.registrar.upkeep.restore_in_background()
        assert reg.registrar.restoring
        refused = await reg.register("u0", "pw", device)
        assert (refused.status, refused.headers.get("retry-after")) == (503, "5")
        assert reg.registrar.results["restoring"] == 1
        assert await task == 1
        assert not reg.registrar.restoring
        assert (await reg.register("u0", "pw", device)).status == 200
        # decided on the restored binding: a refresh of it, not a new one
        assert [b.id for b in reg.location.of(aor)] == [stored.id]
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
