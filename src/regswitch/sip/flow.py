"""Where a message came from or goes to, as far as the core needs to know."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Flow:
    """A transport path to a peer.

    `transport` is "udp", "tcp" or "tls"; `conn_id` names the connection of a
    stream transport (0 for UDP). Only UDP is unreliable: the core retransmits
    on unreliable flows only (RFC 3261 §17).
    """

    transport: str
    remote: tuple[str, int]
    local: tuple[str, int]
    conn_id: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def via_transport(self) -> str:
        return self.transport.upper()
