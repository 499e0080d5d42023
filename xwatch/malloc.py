"""Give the memory the process has freed back to the system.

glibc's allocator keeps freed memory for reuse; after a large transient (the daemon's
checkpoint of every detector) the resident size stays at the peak for good, which looks
like a leak on a dashboard and takes memory other processes could use. ``malloc_trim``
returns the free pages (from the top of the heap, and since glibc 2.8 from within it).
Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free memory to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
