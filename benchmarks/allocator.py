"""glibc allocator settings for the benchmark processes.

glibc hands the top of its heap back to the system whenever more than ``M_TRIM_THRESHOLD`` bytes
(128 KiB by default) are free there, and serves allocations above ``M_MMAP_THRESHOLD`` from fresh
mappings. A training step frees and re-allocates megabytes of activations, so by default it
faults the same pages in again on every step (~160-370 page faults per Copula step,
``docs/results.md``). :func:`keep_freed_memory` raises both thresholds for the calling process,
exactly what ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` in its environment would do;
mcgen itself never changes a process's allocator (``docs/scaling.md``).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, glibc's malloc.h
M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2, which is 32 MiB on 64-bit systems.
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Keep freed heap memory in this process instead of returning it to the system.

    Returns
    -------
    bool
        Whether both settings took (False where the C library is not glibc).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))
