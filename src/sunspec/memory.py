"""Process memory figures (psutil) and garbage-collector control."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import os
import time
from functools import cache

import psutil

__all__ = ["collect_garbage", "memory_info", "release_free_heap", "rss_mb"]

_MB = 1024 * 1024


@cache
def _process() -> psutil.Process:
    return psutil.Process(os.getpid())


def rss_mb() -> float:
    """Resident set size of this process, MiB; NaN if it cannot be read now (e.g. no file
    descriptor is free: a status read never fails)."""
    try:
        return _process().memory_info().rss / _MB
    except (OSError, psutil.Error):
        return math.nan


def memory_info(count_objects: bool = True) -> dict[str, float | int | tuple[int, int, int]]:
    """RSS and VMS (MiB), the collector's generation counts and, optionally, tracked objects."""
    mi = _process().memory_info()
    info: dict[str, float | int | tuple[int, int, int]] = {
        "rss_mb": mi.rss / _MB,
        "vms_mb": mi.vms / _MB,
        "gc_counts": gc.get_count(),
        "gc_garbage": len(gc.garbage),
    }
    if count_objects:
        info["gc_objects"] = len(gc.get_objects())
    return info


def collect_garbage(generation: int = 2) -> tuple[int, float]:
    """Run the collector; returns (objects collected, seconds taken)."""
    t0 = time.perf_counter()
    n = gc.collect(generation)
    return n, time.perf_counter() - t0


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_heap() -> bool:
    """Hand free heap pages back to the OS (glibc ``malloc_trim(0)``); False if unavailable."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
