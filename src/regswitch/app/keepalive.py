"""NAT keepalives, reachability, and the one-shot probe of docs/behaviour.md §3.4.

A keepalive or its reply never changes a registration; it only moves the
binding's `reachable` flag (three unanswered OPTIONS in a row: unreachable;
any reply: reachable again). CRLF and free-text keepalives keep the NAT
pinhole open but prove nothing, so only OPTIONS moves reachability.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from regswitch.common import domain_events as ev
from regswitch.common.due import DueIds
from regswitch.common.events import EventBus
from regswitch.common.ids import new_id
from regswitch.common.params import Params
from regswitch.common.periodic import Periodic
from regswitch.registrar.bindings import Binding, Location
from regswitch.sip import events as sipev
from regswitch.sip.flow import Flow
from regswitch.sip.message import Request
from regswitch.transport.endpoint import Endpoint, out_of_dialog

log = logging.getLogger("regswitch.keepalive")

MISSED_LIMIT = 3
GONE = frozenset({404, 481})


class Keepalive:
    def __init__(
        self,
        endpoint: Endpoint,
        location: Location,
        params: Params,
        events: EventBus,
        clock: Callable[[], float],
        domain: str,
        node: str | None = None,
        route: Callable[[Binding], tuple[Flow, str] | None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        # a cluster node keeps alive only the bindings it holds the flow of
        self.node = node
        # ...and probes another node's binding through that node (cluster/relay.py)
        self.route = route
        self.location = location
        self.params = params
        self.events = events
        self.clock = clock
        self.domain = domain
        # binding ids by when their next keepalive is due; an entry counts only
        # if its bucket is the one the binding names (keepalive_due): a binding
        # gone, or added again under its id, leaves a stale entry that is skipped
        self._due = DueIds(1.0)
        location.on_add.append(self.watch)
        self._periodic = Periodic(1.0, self.tick, "keepalive")
        self.sent = 0
        self.replies = 0

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    # --- reachability -------------------------------------------------------------
    def mark(self, binding: Binding, reachable: bool) -> None:
        if reachable:
            binding.missed_keepalives = 0
        if binding.reachable != reachable:
            binding.reachable = reachable
            self.events.emit(
                ev.Reachability(
                    account=binding.aor,
                    source=binding.source,
                    contact=binding.contact,
                    reachable=reachable,
                    binding=binding.id,
                )
            )

    def behind_nat(self, binding: Binding) -> bool:
        """Source differs from the contact's host:port (docs/behaviour.md §6).
        The binding remembers its contact's address (no table here)."""
        return not binding.contact_at_source

    # --- sending ------------------------------------------------------------------
    def options_request(self, uri: str) -> Request:
        return out_of_dialog(
            "OPTIONS",
            uri,
            f"sip:keepalive@{self.domain}",
            uri,
            tag=new_id(),
            call_id=new_id() + new_id(),
            agent=self.endpoint.server_header,
        )

    def send_options(self, binding: Binding, on_result: Callable[[bool], None]) -> None:
        """OPTIONS to the binding's flow; `on_result(True)` on any final reply
        but 404/481: whoever holds that address now does not know the
        registration's user agent, so it is gone (a restarted phone)."""
        self._send_options(binding.contact, binding.flow, on_result, gone=GONE)

    def _send_options(
        self,
        uri: str,
        flow: Flow,
        on_result: Callable[[bool], None],
        gone: frozenset[int] = frozenset(),
        route: str | None = None,
    ) -> None:
        done = False

        def on_event(event: sipev.Event) -> None:
            nonlocal done
            if done:
                return
            if isinstance(event, sipev.ResponseReceived):
                if event.response.status < 200:
                    return
                done = True
                self.replies += 1
                on_result(event.response.status not in gone)
            elif isinstance(event, sipev.TransactionTimedOut):
                done = True
                on_result(False)

        self.sent += 1
        request = self.options_request(uri)
        if route is not None:
            request.headers.add("Route", route)
        self.endpoint.send_request(request, flow, on_event)

    async def _answered(
        self,
        uri: str,
        flow: Flow,
        timeout: float,
        gone: frozenset[int] = frozenset(),
        route: str | None = None,
    ) -> bool:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bool] = loop.create_future()

        def result(ok: bool) -> None:
            if not answered.done():
                answered.set_result(ok)

        self._send_options(uri, flow, result, gone, route)
        handle = loop.call_later(timeout, result, False)
        try:
            return await answered
        finally:
            handle.cancel()

    async def probe(self, binding: Binding, timeout: float) -> bool:
        """One OPTIONS; True if the device answers within `timeout` seconds."""
        hop = self.route(binding) if self.route is not None else None
        if hop is not None:  # the device's flow is another node's: through it
            ok = await self._answered(binding.contact, hop[0], timeout, GONE, hop[1])
            if self.location.get(binding.id) is binding:
                self.mark(binding, ok)
            return ok
        ok = await self._answered(binding.contact, binding.flow, timeout, GONE)
        if self.location.get(binding.id) is binding:
            self.mark(binding, ok)
        return ok

    async def reaches(self, flow: Flow, uri: str, timeout: float) -> bool:
        """One OPTIONS to `uri` over `flow`: True if answered within `timeout`.
        Its branch, tags and Call-ID are random, so the answer proves that the
        party answering receives at the flow's address (a return path): any
        final answer, 404 included, proves that."""
        return await self._answered(uri, flow, timeout)

    def _keepalive(self, binding: Binding) -> None:
        message = self.params.values["SS_SIP_NAT_KEEP_ALIVE_MESSAGE"]
        if message.upper() == "OPTIONS":
            if binding.keepalive_unanswered:
                binding.missed_keepalives += 1
                if binding.missed_keepalives >= MISSED_LIMIT:
                    self.mark(binding, False)
            binding.keepalive_unanswered = True

            def result(ok: bool, b: Binding = binding) -> None:
                if ok:
                    b.keepalive_unanswered = False
                    if self.location.get(b.id) is b:
                        self.mark(b, True)

            self.send_options(binding, result)
            return
        payload = b"\r\n\r\n" if message.upper() == "CRLF" else message.encode("utf-8", "replace")
        self.sent += 1
        self.endpoint.send_raw(payload, binding.flow)

    def watch(self, binding: Binding) -> None:
        """A new binding: its first keepalive is due one period from now. One
        added again while its entry is still ahead keeps that entry."""
        now = self.clock()
        if not self._due.ahead(binding.keepalive_due, now):
            period = self.params.values["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
            binding.keepalive_due = self._due.push(binding.id, now + period)

    @property
    def scheduled(self) -> int:
        """Entries in the schedule (a binding gone leaves its entry until it comes due)."""
        return len(self._due)

    def tick(self) -> int:
        """Send the keepalives that are due; returns how many. Buckets of due
        times: the cost follows the keepalives sent, not the bindings held."""
        enabled = self.params.values["SS_SIP_NAT_KEEP_ALIVE"]
        everyone = self.params.values["NAT_KEEP_ALIVE_ALL"]
        period = self.params.values["SS_SIP_NAT_KEEP_ALIVE_PERIOD"]
        now = self.clock()
        count = 0
        for key, ids in self._due.due_buckets(now):
            for binding_id in ids:
                binding = self.location.get(binding_id)
                if binding is None or binding.keepalive_due != key:
                    continue  # gone, or scheduled anew
                binding.keepalive_due = self._due.push(binding_id, now + period)
                if self.node is not None and binding.node != self.node:
                    continue
                if enabled and (everyone or self.behind_nat(binding)):
                    self._keepalive(binding)
                    count += 1
        return count
