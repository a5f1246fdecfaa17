"""Keeps freed memory in the process for the simulator's next block, where glibc would give it
back to the kernel and fault it in again.

The simulator allocates the same few large temporaries (a block's products, megabytes each)
block after block. glibc serves such sizes with mmap, or trims them off the heap when freed,
so every block faults its pages in anew: on this project's 2-core VMs a 4-head, 1,024-token
fitted float64 run took 25,000 minor faults and 93 ms of system time in 600 ms. Raising the
mmap and trim thresholds (mallopt) keeps the pages mapped; the process's resident size then
stays at its peak instead of shrinking between blocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20      # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
TRIM_THRESHOLD_BYTES = 512 << 20
TOP_PAD_BYTES = 64 << 20
# A user's own glibc tunables win: with any of these set, gcsim leaves malloc alone.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                  "GLIBC_TUNABLES")

_lock = threading.Lock()
_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are raised
    (now or before), False where malloc is not glibc's or the user set their own."""
    with _lock:
        if "kept" not in _state:
            _state["kept"] = _raise_thresholds()
        return _state["kept"]


def _raise_thresholds() -> bool:
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False   # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_TOP_PAD, TOP_PAD_BYTES)))
