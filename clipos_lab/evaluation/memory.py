"""Giving freed heap memory back to the system between the specs of a suite.

A suite runs spec after spec in one process. Each spec's banks, relevance maps and prompt-training tensors are
freed when it ends (nothing of them stays referenced: the heap's bytes in use are the same after every spec;
``benchmarks/store_scale.py suite`` prints them), but glibc's allocator keeps freed chunks of its arenas for
reuse: once a large block has been freed its dynamic mmap threshold rises (up to 32 MB), so later blocks of a few
MB come from arenas that fragment and are not returned (issue 26 measured the resident size of a warm ten-split
run growing about 120 MB per spec, and flat with a trim after each spec). ``malloc_trim`` hands those free pages
back; it costs milliseconds per spec and changes no number. Elsewhere than glibc it does nothing.

The trim returns what has piled up *between* specs; the peak *within* a spec came from the same cause: with
glibc's dynamic threshold, tensors of 4-32 MB (relevance maps, patch-logit chunks, training batches) are carved
from arenas instead of being mapped, and the arenas fragment. :func:`map_large_blocks` fixes the threshold at
4 MiB, so every block that large is mapped and unmapped on its own (measured on a warm ten-split run of the
default methods, both with the trim: peak RSS 1,171 MB with the dynamic threshold, 1,033 MB with it fixed;
``benchmarks/store_scale.py suite``, ``benchmarks/results/store-suite-threshold.txt``). Blocks that large
cost a page fault per 4 KiB when first touched, which is small beside the work done on them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return the allocator's free pages to the system (glibc ``malloc_trim(0)``); False where there is none."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
LARGE_BLOCK = 4 << 20  # bytes: blocks this large are mapped on their own and returned when freed
KEPT_TOP = 32 << 20  # bytes of free heap top kept for reuse instead of being handed back at every free


@functools.cache
def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process (once); False where there is no glibc.

    Fixing it also turns off the dynamic raise that lets freed multi-MB tensors stay in fragmented arenas, and
    with it the raise of the trim threshold: the heap's free top would then go back to the system whenever it
    passed 128 KiB, and the next step's temporaries of a few MB would be faulted in again. :data:`KEPT_TOP` keeps
    up to 32 MB of it (measured on the v2 suite: docs/pocket2.md, "Time"); :func:`release_freed_memory` still
    returns it between specs."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold))) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_TOP))
