"""The served-domain set: seeded from the configuration, changed in place (the
registrar holds the very set), written through to storage."""

from __future__ import annotations

import pytest

from regswitch.registrar.domains import DomainError, Domains
from regswitch.storage.memory import MemoryStorage

pytestmark = pytest.mark.timeout(10)


async def test_seeded_changed_in_place_and_stored() -> None:
    storage = MemoryStorage()
    await storage.open()
    domains = Domains(storage.domains, lambda: 100.0, ["Main.Example"])
    live = domains.names
    await domains.load()
    assert live == {"main.example"} and domains.names is live
    await domains.add("Other.Example")
    assert "other.example" in live and "OTHER.example" in domains
    assert [d.name for d in await storage.domains.list_all()] == ["main.example", "other.example"]

    again = Domains(storage.domains, lambda: 200.0, ["main.example"])
    await again.load()  # a restart: stored ones kept, configured one not duplicated
    assert again.names == {"main.example", "other.example"}
    assert [d.created_at for d in again.list()] == [100.0, 100.0]

    with pytest.raises(DomainError, match="still has 2 accounts") as busy:
        await again.remove("other.example", accounts=2)
    assert busy.value.status == 409 and "other.example" in again.names
    with pytest.raises(DomainError, match="configured") as configured:
        await again.remove("main.example", accounts=0)
    assert configured.value.status == 409
    await again.remove("OTHER.example", accounts=0)
    assert again.names == {"main.example"}
    assert again.unserved(["Main.example", "x.example", "X.EXAMPLE"]) == ["x.example"]


@pytest.mark.parametrize("name", ["", "a b", "x" * 254, "semi;colon.example"])
async def test_bad_names_refused(name: str) -> None:
    storage = MemoryStorage()
    await storage.open()
    domains = Domains(storage.domains, lambda: 0.0, ["main.example"])
    with pytest.raises(DomainError) as refused:
        await domains.add(name)
    assert refused.value.status == 422
