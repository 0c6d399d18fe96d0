"""Shared timing helper for the benchmarks: best-of-N wall time, alternating contenders so
both see the same machine load."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_times(fns: dict[str, Callable[[], object]], repeat: int, number: int = 1
               ) -> dict[str, float]:
    """Best time per call (s) of each function, over ``repeat`` rounds of ``number`` calls."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()  # warm up caches and lazy initialisation
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / number)
    return best


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
