"""The REGISTER pipeline without sockets (harness.py): the checks answer and
change nothing, the policy's decision is applied, kicks go to the kicker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness import DEVICE1, DEVICE2, DOMAIN, RegistrarHarness

from regswitch.common import domain_events as ev
from regswitch.protection.flood import FloodLimits
from regswitch.registrar.accounts import MISS_MEMORY, Accounts
from regswitch.storage.base import Account

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def reg() -> AsyncIterator[RegistrarHarness]:
    harness = await RegistrarHarness.start()
    yield harness
    await harness.close()


async def test_a_registration_is_challenged_then_bound(reg: RegistrarHarness) -> None:
    aor = await reg.account("alice", "pw")
    first = await reg.send(reg.request("alice", DEVICE1), DEVICE1)
    assert first.status == 401 and reg.location.of(aor) == []
    ok = await reg.register("alice", "pw", DEVICE1)
    assert ok.status == 200
    assert [b.contact for b in reg.location.of(aor)] == [f"sip:alice@{DEVICE1[0]}:{DEVICE1[1]}"]
    assert reg.events_of(ev.REGISTERED)[0]["kind"] == "new"
    assert [b.id for b in await reg.storage.bindings.load()] == [reg.location.of(aor)[0].id]


async def test_a_wrong_password_is_refused_and_changes_nothing(reg: RegistrarHarness) -> None:
    aor = await reg.account("alice", "pw")
    refused = await reg.register("alice", "not-the-password", DEVICE1)
    assert refused.status == 403 and reg.location.of(aor) == []
    assert reg.events_of(ev.AUTH_FAILED) and not reg.events_of(ev.REGISTERED)


async def test_an_unknown_domain_is_not_served(reg: RegistrarHarness) -> None:
    request = reg.request("alice", DEVICE1)
    request.headers.set("To", "<sip:alice@elsewhere.example>")
    assert (await reg.send(request, DEVICE1)).status == 403


async def test_too_brief_an_interval_gets_423_with_the_minimum(reg: RegistrarHarness) -> None:
    aor = await reg.account("alice", "pw")
    minimum = reg.params.values["SS_ENDPOINT_MIN_EXPIRE"]
    brief = await reg.register("alice", "pw", DEVICE1, expires=1)
    assert brief.status == 423 and brief.headers.get("Min-Expires") == str(minimum)
    assert reg.location.of(aor) == []


async def test_a_refresh_keeps_the_binding(reg: RegistrarHarness) -> None:
    aor = await reg.account("alice", "pw")
    await reg.register("alice", "pw", DEVICE1)
    (binding,) = reg.location.of(aor)
    reg.now += 60
    assert (await reg.register("alice", "pw", DEVICE1)).status == 200
    assert [b.id for b in reg.location.of(aor)] == [binding.id]
    assert reg.events_of(ev.REFRESHED) and reg.kicks == []


async def test_replace_on_kicks_the_old_device(reg: RegistrarHarness) -> None:
    aor = await reg.account("alice", "pw")
    await reg.register("alice", "pw", DEVICE1)
    (old,) = reg.location.of(aor)
    assert (await reg.register("alice", "pw", DEVICE2)).status == 200
    (new,) = reg.location.of(aor)
    assert new.source_ip == DEVICE2[0] and new.id != old.id
    assert reg.kicks == [(old.id, "registration-replaced")]
    replaced = reg.events_of(ev.REPLACED)[0]
    assert (replaced["old_binding"], replaced["kicked"]) == (old.id, True)


async def test_replace_off_rejects_the_new_device_and_keeps_the_old(
    reg: RegistrarHarness,
) -> None:
    aor = await reg.account("alice", "pw")
    reg.set("SS_ENDPOINT_REGISTER_REPLACE", "Off")
    await reg.register("alice", "pw", DEVICE1)
    (old,) = reg.location.of(aor)
    refused = await reg.register("alice", "pw", DEVICE2)
    assert refused.status == int(reg.params.values["REGISTER_REPLACE_REJECT_CODE"])
    assert refused.headers.get("Retry-After") is not None
    assert [b.id for b in reg.location.of(aor)] == [old.id] and reg.kicks == []
    assert reg.events_of(ev.REJECTED)[0]["old_contact"] == old.contact


async def test_a_wildcard_unregister_removes_every_binding(reg: RegistrarHarness) -> None:
    aor = await reg.account("alice", "pw", max_contacts=2)
    await reg.register("alice", "pw", DEVICE1)
    await reg.register("alice", "pw", DEVICE2)
    assert len(reg.location.of(aor)) == 2
    gone = await reg.register("alice", "pw", DEVICE1, expires=0, contact="*")
    assert gone.status == 200 and reg.location.of(aor) == []
    assert reg.kicks == [] and {e["wildcard"] for e in reg.events_of(ev.UNREGISTERED)} == {True}


async def test_a_cluster_node_reads_an_account_another_node_just_created() -> None:
    """The phone's answer to its challenge reaches this node before the bus's news
    of the account: the node reads storage, once, and registers it."""
    reg = await RegistrarHarness.start(shared_accounts=True)
    try:
        other_node = Accounts(reg.storage.accounts, reg.clock)
        await other_node.create({"user": "kim", "domain": DOMAIN, "password": "pw"})
        assert reg.accounts.get(f"kim@{DOMAIN}") is None
        assert (await reg.register("kim", "pw", DEVICE1)).status == 200
        assert [b.aor for b in reg.location.of(f"kim@{DOMAIN}")] == [f"kim@{DOMAIN}"]
    finally:
        await reg.close()


def count_account_reads(reg: RegistrarHarness) -> list[str]:
    """The names the registrar reads from account storage, from now on."""
    reads: list[str] = []
    real_get = reg.storage.accounts.get

    async def counting_get(aor: str) -> Account | None:
        reads.append(aor)
        return await real_get(aor)

    reg.storage.accounts.get = counting_get  # type: ignore[method-assign]
    return reads


async def test_a_name_storage_lacks_is_read_once_in_a_while() -> None:
    """A stranger guessing names costs one storage read per name per
    MISS_MEMORY seconds, and is refused like any unknown account."""
    reg = await RegistrarHarness.start(shared_accounts=True)
    try:
        reads = count_account_reads(reg)
        for _ in range(3):
            assert (await reg.register("nobody", "guess", DEVICE2)).status == 403
        assert reads == [f"nobody@{DOMAIN}"]
        reg.now += MISS_MEMORY
        assert (await reg.register("nobody", "guess", DEVICE2)).status == 403
        assert reads == [f"nobody@{DOMAIN}"] * 2
    finally:
        await reg.close()


async def test_a_stranger_guessing_names_is_blocked_before_many_storage_reads() -> None:
    """Every name read from storage is a failed registration to the flood guard
    too: a source guessing names is blocked (dropped) long before it has made
    the node read storage once per name of a long list."""
    reg = await RegistrarHarness.start(shared_accounts=True)
    try:
        reads = count_account_reads(reg)
        guesses = 2 * FloodLimits().unauthenticated
        statuses = [
            (await reg.register(f"guess{n}", "pw", DEVICE2)).status for n in range(guesses // 2)
        ]
        assert statuses[0] == 403 and statuses[-1] == 503  # refused, then blocked
        assert reg.registrar.flood.blocked(DEVICE2[0], reg.now)
        assert len(reads) == statuses.count(403) < len(statuses)
        # blocked: more names cost no read at all
        before = len(reads)
        for n in range(guesses // 2, guesses):
            await reg.send(
                reg.request(f"guess{n}", DEVICE2, extra={"Authorization": "Digest x"}), DEVICE2
            )
        assert len(reads) == before
    finally:
        await reg.close()
