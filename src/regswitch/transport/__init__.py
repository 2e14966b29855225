"""asyncio transports: UDP, TCP and TLS listeners behind one TransportManager.

Bytes and addresses only; SIP semantics live in regswitch.sip and the endpoint.
"""

from regswitch.transport.base import (
    DataHandler,
    Flow,
    ListenerInfo,
    ListenSpec,
    TransportLimits,
    TransportStats,
)
from regswitch.transport.manager import TransportManager
from regswitch.transport.stream import client_ssl_context, server_ssl_context

__all__ = [
    "DataHandler",
    "Flow",
    "ListenSpec",
    "ListenerInfo",
    "TransportLimits",
    "TransportManager",
    "TransportStats",
    "client_ssl_context",
    "server_ssl_context",
]
