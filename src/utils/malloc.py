"""Keep freed memory in glibc's heap instead of handing it back to the kernel after every step.

A training step frees and re-allocates the same activation and gradient buffers. With glibc's defaults the
large ones are mmap'd and munmap'd (or trimmed from the heap top) each time, so every step page-faults and
zeroes them again. A fixed mmap threshold at glibc's maximum and a trim threshold far above any step's
working set keep them mapped. Only allocation changes, never a computed value (PyTorch aligns its CPU
buffers itself). No effect, and no error, off glibc. Measured in the README, "Speed".
"""
import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set the two thresholds; True when glibc accepted both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
