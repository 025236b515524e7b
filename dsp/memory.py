"""Keep freed memory in the process for reuse (glibc's malloc on Linux).

The chain works on tensors of tens to hundreds of MB (a 3-minute stereo track is 63 MB
in float32; a multiband split of a training batch 190 MB). glibc serves every block
above 32 MB with a fresh ``mmap`` and unmaps it on ``free``, so each such tensor was
page-faulted and zeroed by the kernel again, 4 kB at a time: measured here, that was
about half the chain's time (3-minute forward 1.16 -> 0.62 s, a 16 x 5 s training batch
forward+backward 1.03 -> 0.72 s; ``python -m bench.bench_chain``). With
:func:`keep_freed_memory` large blocks come from the heap and freed ones stay there for
the next tensor of that size, so the process's resident memory stays at its peak
instead of shrinking after each call.

The product's entry points (the ``automaster`` command, its album and web servers,
:func:`automaster.master`, training and its data workers) call it once. It changes
allocation for the whole process, so it is an explicit call, not a side effect of
``import dsp``; ``AUTOMASTER_KEEP_MEMORY=0`` turns it off. Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB free at the heap's top
_TOP_PAD = 64 * 2**20  # grow the heap 64 MiB beyond each request (address space, not memory)

_state: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory (glibc ``mallopt``); once
    per process. Returns whether it is in effect (False off glibc, or when
    ``AUTOMASTER_KEEP_MEMORY=0``)."""
    global _state
    if _state is not None:
        return _state
    _state = False
    if os.environ.get("AUTOMASTER_KEEP_MEMORY", "1").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl and macOS have other allocators
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the trim threshold first: setting it also stops glibc's dynamic mmap threshold
    _state = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) and mallopt(_M_TOP_PAD, _TOP_PAD)
                  and mallopt(_M_MMAP_MAX, 0))
    return _state
