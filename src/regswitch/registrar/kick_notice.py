"""A message to the kicked device (REGISTER_REPLACE_NOTIFY_OLD = MESSAGE).

Before a binding is kicked, a SIP MESSAGE (RFC 3428, text/plain) goes to the
old device through its flow, so its user reads why the phone was signed out
instead of guessing. It is sent and forgotten: the kick never waits for it,
and whatever happens to it (no answer, an error, a dead connection) changes
nothing but a counter.

`render` is pure; `KickNotice.send` is the thin I/O shell.
"""

from __future__ import annotations

import string
import time
from collections import Counter
from collections.abc import Callable

from regswitch.common.ids import new_id
from regswitch.common.params import TEXT_CHECKS
from regswitch.registrar.bindings import Binding
from regswitch.sip import events as sipev
from regswitch.sip.message import Request
from regswitch.transport.endpoint import Endpoint, out_of_dialog

PLACEHOLDERS = {
    "account": "the account (user@domain)",
    "new_ip": "the new device's source IP",
    "new_source": "the new device's transport:IP:port",
    "new_agent": "the new device's User-Agent (or 'unknown device')",
    "new_contact": "the new device's Contact URI",
    "old_source": "the kicked device's own transport:IP:port",
    "time": "when it happened, HH:MM UTC",
    "datetime": "when it happened, YYYY-MM-DD HH:MM:SS UTC",
}
DEFAULT_TEXT = "Signed out: {account} registered from {new_ip} ({new_agent}) at {time}"


def template_error(text: str) -> str | None:
    """Why `text` is not a usable template (unknown or malformed placeholder)."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return f"malformed template: {exc}"
    for name in fields:
        if name not in PLACEHOLDERS:
            return f"unknown placeholder {{{name}}}; known: " + ", ".join(
                "{" + p + "}" for p in PLACEHOLDERS
            )
    return None


TEXT_CHECKS["REGISTER_REPLACE_NOTIFY_TEXT"] = template_error


def render(
    text: str,
    account: str,
    old: Binding,
    new_source: str,
    new_contact: str | None,
    new_agent: str | None,
    now: float,
) -> str:
    stamp = time.gmtime(now)
    values = {
        "account": account,
        "new_ip": new_source.split(":", 1)[-1].rsplit(":", 1)[0],
        "new_source": new_source,
        "new_agent": new_agent or "unknown device",
        "new_contact": new_contact or "",
        "old_source": old.source,
        "time": time.strftime("%H:%M UTC", stamp),
        "datetime": time.strftime("%Y-%m-%d %H:%M:%S UTC", stamp),
    }
    if template_error(text) is not None:
        return DEFAULT_TEXT.format(**values)  # stored before validation existed
    return text.format(**values)


class KickNotice:
    def __init__(self, endpoint: Endpoint, domain: str, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self.domain = domain
        self.clock = clock
        self.results: Counter[str] = Counter()  # sent / delivered / failed

    def request(self, binding: Binding, text: str) -> Request:
        request = out_of_dialog(
            "MESSAGE",
            binding.contact,
            f"sip:regswitch@{self.domain}",
            f"sip:{binding.aor}",
            tag=new_id(),
            call_id=new_id() + new_id(),
            agent=self.endpoint.server_header,
        )
        request.headers.add("Content-Type", "text/plain;charset=UTF-8")
        request.body = text.encode("utf-8")
        return request

    def send(self, binding: Binding, text: str) -> None:
        """Fire and forget; never raises."""

        def on_event(event: sipev.Event) -> None:
            if isinstance(event, sipev.ResponseReceived):
                status = event.response.status
                if status >= 200:
                    self.results["delivered" if status < 300 else "failed"] += 1
            elif isinstance(event, sipev.TransactionTimedOut):
                self.results["failed"] += 1

        try:
            self.endpoint.send_request(self.request(binding, text), binding.flow, on_event)
            self.results["sent"] += 1
        except Exception:  # a dead flow, a bad contact: the kick goes on regardless
            self.results["failed"] += 1
