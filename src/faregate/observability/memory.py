"""Memory given back to the system once load falls.

glibc's malloc keeps the memory a burst of requests freed: its heap shrinks only from the top, and
its threshold for serving a large block with its own mmap (given back at free) rises to the
largest block freed so far, so after the first 150 KB bodies they come from the heap too. A worker
that held 1,500 such requests stayed at 3x its idle RSS long after (measured: 285 MiB 60 s after
the load against 91 MiB idle; ``malloc_trim(0)`` took it to 110 MiB at once). So the worker's
background task calls ``malloc_trim(0)`` when no request is in flight after some were: the freed
pages of every arena go back (``madvise``), in well under a millisecond when there is little to
give, a few milliseconds after a large burst, and only while nothing waits on the event loop.
Where the C library has no ``malloc_trim`` (musl, macOS) the task ends at once.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import Callable

SAMPLE_SECONDS = 1.0  # how often the task looks at the requests in flight
MIN_GAP_SECONDS = 5.0  # at most one trim this often
IDLE_SECONDS = 60.0  # ...and one at least this often while idle (requests too short to be seen in flight)


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_when_idle(in_flight: Callable[[], int], trim: Callable[[int], int] | None = None) -> None:
    """Forever: give freed memory back when nothing is in flight, after requests were seen in
    flight (or ``IDLE_SECONDS`` passed), at most once per ``MIN_GAP_SECONDS``."""
    trim = trim or malloc_trim()
    if trim is None:
        return
    busy = False
    last = time.monotonic()
    while True:
        await asyncio.sleep(SAMPLE_SECONDS)
        if in_flight():
            busy = True
            continue
        now = time.monotonic()
        if (busy and now - last >= MIN_GAP_SECONDS) or now - last >= IDLE_SECONDS:
            trim(0)
            busy, last = False, now
