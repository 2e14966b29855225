"""When bindings expire: a heap of (expires_at, id), checked lazily.

Refreshes do not touch the heap; an entry whose binding was refreshed or
removed is simply skipped (or pushed again) when it comes due.
"""

from __future__ import annotations

import heapq


class ExpiryQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def push(self, binding_id: str, expires_at: float) -> None:
        heapq.heappush(self._heap, (expires_at, binding_id))

    def due(self, now: float) -> list[str]:
        """Ids whose recorded expiry has passed (the caller re-checks each)."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[1])
        return out

    def __len__(self) -> int:
        return len(self._heap)
