"""Handing back to the system memory that the C allocator holds free.

glibc returns the free memory of its heaps to the system only from a heap's
top, and a thread's heap rarely shrinks at all: after a restart's bulk read
(a million rows through SQLite's page cache on the reader thread) tens of MB
stay free in the process. `malloc_trim` gives them back; elsewhere (another
C library) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
if sys.platform.startswith("linux"):
    try:
        _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        _trim = None


def give_back() -> None:
    """Return the allocator's free memory to the system (once, after a bulk load)."""
    if _trim is not None:
        _trim(0)
