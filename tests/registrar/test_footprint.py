"""Memory per registered binding, through the whole REGISTER pipeline without
sockets (harness.py): a test that fails when a change makes each binding cost
more than twice what it costs now (bench/memory.py measures the real server's
RSS; this guards the figure in `make test`)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest
from harness import RegistrarHarness

pytestmark = pytest.mark.timeout(60)

#: bytes of Python objects per binding (3,252 in the interpreted build when this
#: test was written; 3,177 once the contact's comparison key and the user agent
#: were shared; 2,187 once the sharing detector kept a chain instead of a deque,
#: nonces no tuple, the schedules buckets of ids, and the binding its account's
#: key string): the binding, the location's indexes, the expiry schedule, the
#: account's sharing sighting, the source's flood window, the nonce, and the
#: in-memory storage's copy and event rows
BASELINE = 2_200
WARM_UP = 1_000  # fills the bounded rings (recent events) before measuring
MEASURED = 1_000


async def register_many(reg: RegistrarHarness, first: int, count: int) -> None:
    for n in range(first, first + count):
        user = f"u{n:05d}"
        peer = (f"10.1.{n // 250}.{n % 250 + 1}", 5060)
        assert (await reg.register(user, "pw", peer)).status == 200


def forget_transactions(reg: RegistrarHarness) -> None:
    """End the finished transactions (their Timer J): per request, not per binding."""
    reg.tx.handle_timers(asyncio.get_running_loop().time() + 64)
    assert reg.tx.server_transactions == 0


async def test_a_binding_costs_at_most_twice_what_it_did() -> None:
    reg = await RegistrarHarness.start()
    try:
        for n in range(WARM_UP + MEASURED):
            await reg.account(f"u{n:05d}", "pw")
        await register_many(reg, 0, WARM_UP)
        forget_transactions(reg)
        reg.sent.out.clear()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await register_many(reg, WARM_UP, MEASURED)
            forget_transactions(reg)
            reg.sent.out.clear()  # the harness's own record of what was sent
            gc.collect()
            per_binding = (tracemalloc.get_traced_memory()[0] - before) / MEASURED
        finally:
            tracemalloc.stop()
        assert len(reg.location) == WARM_UP + MEASURED
        assert per_binding <= 2 * BASELINE, f"{per_binding:.0f} bytes per binding"
    finally:
        await reg.close()
