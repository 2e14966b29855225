"""The errors the SIP core declares."""

from __future__ import annotations


class ParseError(Exception):
    """A message could not be parsed or is not valid SIP.

    `status_hint` is the response a request that caused it deserves
    (400, or 505 for a wrong SIP version, 413/513 for size limits).
    """

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint


class LocalProtocolError(Exception):
    """The application asked the core to do something SIP does not allow."""
