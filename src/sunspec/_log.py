"""Rate-limited logging for conditions that can repeat once per message."""

from __future__ import annotations

import logging
import time

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs the first occurrence of each key at once, then at most once per ``interval``
    seconds, saying how many occurrences were not logged in between."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0):
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += " (%d more like this not logged)"
            args = (*args, skipped)
        self._logger.log(level, msg, *args, exc_info=exc_info)
