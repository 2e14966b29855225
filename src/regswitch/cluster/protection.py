"""Protection state shared by the nodes of a cluster.

- Nonces. Every node signs and checks them with one key (`rs:auth`: a secret
  and an epoch, made by the first node that needs them), timed by the wall
  clock, so a nonce one node issued is good on every node. Whether a nonce
  count was used is decided in Redis (`rs:nc:{account}:<nonce>`: the highest
  nc seen, kept for the nonce's lifetime, in the account's slot): a REGISTER's
  credentials are accepted once cluster-wide, whichever nodes they are sent
  to. The claim is made by the script that commits the REGISTER's decision
  (storage/redis_location.py COMMIT), before it writes anything: a replay
  changes no binding and kicks nobody. What the registrar does before that
  round trip is no harm from a replay either: a nonce is bound to the address
  it was issued to, so a replay comes from the same source as the original,
  and the credential-sharing count (the only state counted on the way) is of
  distinct networks and instances. Should Redis lose
  the key (a restart without persistence), the nodes make and adopt a new
  one within a few seconds; nonces signed with the old one are then stale.
- Blocks. A source (or one account from a source) that one node blocks for
  flooding or failed credentials is blocked on every node, for the same time.
- Flapping. Every node counts every replacement of an account, whichever
  node decided it, so two devices fighting through two nodes are held as on one.

Counting itself stays per node: flood windows fill separately, so a source
spread over N nodes is blocked after up to N times the limit, and then everywhere.
"""

from __future__ import annotations

import secrets
from typing import Any

from regswitch.cluster.bus import Bus
from regswitch.common import domain_events as ev
from regswitch.common.events import EventBus
from regswitch.common.periodic import Periodic
from regswitch.protection.flapping import FlapDetector
from regswitch.protection.flood import FloodGuard
from regswitch.registrar.auth import Authenticator
from regswitch.storage.base import EventRecord, StorageError
from regswitch.storage.redis_location import Claim, RedisLocation

AUTH = "rs:auth"
NC_PREFIX = "rs:nc:"
KEY_CHECK = 2.0  # s between checks that the shared nonce key is still the one in use


class NonceClaims:
    """The cluster-wide record of used nonce counts (see the module docstring)."""

    def __init__(self, nonce_lifetime: float) -> None:
        self.ttl = int(nonce_lifetime) + 5
        self.refused = 0

    def claim(self, aor: str, nonce: str, nc: int) -> Claim:
        """The claim of `nc` with `nonce`, made by the commit of `aor`'s decision
        (RedisLocation.commit); its key is in the account's slot."""
        return f"{NC_PREFIX}{{{aor}}}:{nonce}", nc, self.ttl


class SharedProtection:
    def __init__(
        self,
        *,
        redis: RedisLocation,
        bus: Bus,
        auth: Authenticator,
        flood: FloodGuard,
        flapping: FlapDetector,
        events: EventBus,
        clock: Any,
    ) -> None:
        self.redis = redis
        self.bus = bus
        self.auth = auth
        self.flood = flood
        self.flapping = flapping
        self.clock = clock
        self._keeper = Periodic(KEY_CHECK, self._check_key, "nonce-key")
        bus.on("block", self._on_block)
        bus.on("replaced", self._on_replaced)
        events.listeners.append(self._on_event)

    async def open(self) -> None:
        await self._check_key()

    def start(self) -> None:
        self._keeper.start()

    async def stop(self) -> None:
        await self._keeper.stop()

    async def _check_key(self) -> None:
        client = self.redis.client
        pipe = client.pipeline(transaction=False)
        pipe.hsetnx(AUTH, "secret", secrets.token_hex(32))
        pipe.hsetnx(AUTH, "epoch", secrets.token_hex(16))
        pipe.hgetall(AUTH)
        try:
            *_, shared = await self.redis.call(pipe.execute())
        except StorageError:
            return  # Redis down: keep the key in use; checked again shortly
        self.auth.share(bytes.fromhex(shared["secret"]), bytes.fromhex(shared["epoch"]))

    def _on_event(self, record: EventRecord) -> None:
        if record.type == ev.FLOOD_BLOCKED and record.source:
            self.bus.post(
                "block",
                source=record.source,
                account=record.account,  # None: the whole source is blocked
                seconds=record.details.get("seconds", 0),
            )
        elif record.type == ev.REPLACED and record.account:
            self.bus.post("replaced", account=record.account)

    def _on_block(self, sender: str, data: dict[str, Any]) -> None:
        until = self.clock() + float(data.get("seconds") or 0)
        account = data.get("account")
        self.flood.adopt(str(data["source"]), until, str(account) if account else None)

    def _on_replaced(self, sender: str, data: dict[str, Any]) -> None:
        # counted, not evented: the node that decided the replace tells of flapping
        self.flapping.replaced(str(data["account"]), self.clock())
