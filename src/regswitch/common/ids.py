"""Random identifiers (tags, branches, Call-IDs, binding ids) without a
system call each: cryptographic random bytes are drawn from the OS in bulk
and handed out 8 at a time (64 bits, RFC 3261 §19.3 asks for at least 32)."""

from __future__ import annotations

import os


class RandomIds:
    def __init__(self, pool: int = 8192) -> None:
        self._size = pool
        self._buf = b""
        self._pos = pool

    def __call__(self) -> str:
        pos = self._pos
        if pos >= self._size:
            self._buf = os.urandom(self._size)
            pos = 0
        self._pos = pos + 8
        return self._buf[pos : pos + 8].hex()


new_id = RandomIds()
