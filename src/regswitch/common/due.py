"""Ids due at given times, in buckets (expiry, keepalives).

A million bindings each waiting for its time cost a million (time, id) tuples
and floats in a heap: 88 bytes apiece. Here a time is rounded up to the next
multiple of `resolution` and the id goes into that bucket's list (8 bytes); a
small heap orders the buckets, not the ids. An id is never due before its
time, and at most `resolution` after it: the callers' steps run at that pace
anyway. Stale entries (a binding refreshed or gone) are the caller's to skip,
as they come due.
"""

from __future__ import annotations

import heapq
import math


class DueIds:
    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self._buckets: dict[int, list[str]] = {}
        self._order: list[int] = []  # heap of the buckets' keys
        self._count = 0

    def slot(self, when: float) -> int:
        """The bucket `when` falls in (a caller may keep it to tell its own entry)."""
        return math.ceil(when / self.resolution)

    def ahead(self, key: int, now: float) -> bool:
        """Is bucket `key` still to come (its entries not yet handed out)?"""
        return key * self.resolution > now

    def push(self, item: str, when: float) -> int:
        """`item` is due at `when`; returns its bucket."""
        key = self.slot(when)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [item]
            heapq.heappush(self._order, key)
        else:
            bucket.append(item)
        self._count += 1
        return key

    def due(self, now: float) -> list[str]:
        """The ids whose time has come, earliest bucket first (the caller re-checks each)."""
        return [item for _, bucket in self.due_buckets(now) for item in bucket]

    def due_buckets(self, now: float) -> list[tuple[int, list[str]]]:
        """The same, with the bucket each came from."""
        out = []
        order, buckets = self._order, self._buckets
        while order and order[0] * self.resolution <= now:
            key = heapq.heappop(order)
            bucket = buckets.pop(key)
            self._count -= len(bucket)
            out.append((key, bucket))
        return out

    def __len__(self) -> int:
        return self._count
