"""Tell the C allocator what to do with freed memory: keep it for reuse during a large read
(``xenlat trace``), or give it back between the steps of ``analyze`` (peak RSS).

Keeping it, why: numpy allocates every temporary of a pass afresh. glibc serves a block above its
mmap threshold (128 KiB at first, rising to at most 32 MiB as blocks are freed) with fresh
pages from the kernel and gives them back on free, so each pass over millions of records
pays a page fault per 4 KiB it writes: a fifth of ``xenlat trace``'s CPU time on a 300 MB
trace is the kernel's (1.2 s of system time beside 4.0 s of user time, at load 8). Raising
the threshold to its ceiling and the trim threshold past any working set keeps those blocks in
the heap, where the next pass reuses them: 0.7-0.9 s of system time on the same runs, user
time the same, peak RSS 557 MiB against 541 MiB (1.76x the file). Done only where it pays (a
large trace), once per process; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

#: mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above half its largest heap (32 MiB on 64-bit).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap kept, not given back (the process exits soon).
TRIM_THRESHOLD = 1 << 30


def reuse_freed_memory() -> bool:
    """Keep freed blocks up to ``MMAP_THRESHOLD`` in the heap for reuse; True when the C
    library took both settings (glibc), False elsewhere."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: its C library's
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def give_back_memory() -> None:
    """Return the heap memory freed so far to the system (peak RSS, not speed).

    glibc keeps freed memory in its heaps (one per thread that allocated), and Arrow's pool
    keeps its own: after a reader's temporaries are gone, hundreds of MB would stay resident
    while the next step allocates anew. A no-op where ``malloc_trim`` does not exist.
    """
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None
