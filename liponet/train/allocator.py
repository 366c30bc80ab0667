"""Keep freed CPU memory in the process: glibc's ``malloc`` without fresh pages on every step.

A CPU training step allocates and frees the same large temporaries (activations, spectra,
gradients) every step. glibc's ``malloc`` serves each block above its mmap threshold (dynamic, at
most 32 MB) with a fresh ``mmap`` and hands it back on ``free``, and trims the heap's top above
its trim threshold; either way the next step touches fresh pages, each a minor page fault and
4 KB zeroed by the kernel. On a 2-D width-64 LipFNO that is about 300000 faults, about half
the step (``benchmarks/results/allocator.md``). :func:`tune_cpu_allocator` raises both
thresholds so that freed blocks stay in the heap and are reused: the process keeps its peak
memory (resident size does not shrink after a step) and the steps stop faulting.

``liponet`` commands call it at start (``LIPONET_TUNE_ALLOCATOR=0`` turns that off); a script
that trains through the library calls it itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["tune_cpu_allocator"]

#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest value ``mallopt`` takes for either (a C ``int``).
_INT_MAX = 2**31 - 1
#: glibc's own environment variables for the same settings: where the user set one, it wins.
_GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune_cpu_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = _INT_MAX) -> bool:
    """Raise glibc's mmap and trim thresholds for this process; ``True`` where applied.

    Blocks up to ``mmap_threshold`` bytes are then served from the heap and, once freed, kept
    for the next allocation instead of being unmapped or trimmed (``trim_threshold``: how much
    free memory the heap's top may keep). Process-wide and for the rest of the process: memory
    freed after a peak is not returned to the system, in exchange for steps without page
    faults. Nothing is changed (``False``) where the C library is not glibc, where
    ``LIPONET_TUNE_ALLOCATOR=0`` is set, or where one of glibc's own variables
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``) is set: the
    user's choice stands. GPU memory (torch's caching allocator) is unaffected.

    Parameters
    ----------
    mmap_threshold
        Bytes; blocks larger than this are still mapped on their own (1 to 2**31 - 1).
    trim_threshold
        Bytes of free memory the top of the heap keeps (0 to 2**31 - 1).

    Returns
    -------
    bool
        Whether both settings were applied.

    Examples
    --------
    >>> from liponet.train import tune_cpu_allocator
    >>> isinstance(tune_cpu_allocator(), bool)  # True on Linux with glibc
    True
    """
    for name, value, low in (
        ("mmap_threshold", mmap_threshold, 1),
        ("trim_threshold", trim_threshold, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _INT_MAX:
            raise ValueError(f"{name} must be an int in [{low}, {_INT_MAX}], got {value!r}")
    if os.environ.get("LIPONET_TUNE_ALLOCATOR", "1").strip() == "0":
        return False
    if any(name in os.environ for name in _GLIBC_VARIABLES):
        return False
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return False
    if not version or not version.startswith("glibc"):
        return False
    libc = ctypes.util.find_library("c")
    if libc is None:
        return False
    try:
        mallopt = ctypes.CDLL(libc).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # The trim threshold first: setting either disables glibc's dynamic adjustment.
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    )
