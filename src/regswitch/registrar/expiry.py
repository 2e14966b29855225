"""When bindings expire: their ids in buckets of a quarter of a second (the
expiry step's pace), checked lazily (common/due.py).

Refreshes do not touch the queue; an entry whose binding was refreshed or
removed is simply skipped (or pushed again) when it comes due.
"""

from __future__ import annotations

from regswitch.common.due import DueIds

RESOLUTION = 0.25


class ExpiryQueue(DueIds):
    def __init__(self) -> None:
        super().__init__(RESOLUTION)
