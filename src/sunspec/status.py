"""StatusBoard: the status of a program, composed where the program is assembled.

Each part (the receiver, the live view, snapshots, the archive, ...) has a ``status()`` method
that returns a dict of its own counters. The program (``sunspec.cli``, or a user's script)
adds those methods to one board under section names; the board reads them all at once for
the status line, ``/api/status`` and :meth:`sunspec.Receiver.get_buffer_status`. A part never
registers itself, so no part knows who reports on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["StatusBoard"]

log = logging.getLogger(__name__)

StatusFn = Callable[[], dict[str, Any]]


class StatusBoard:
    """Named status sections, each read by calling its function."""

    def __init__(self) -> None:
        self._sections: dict[str, StatusFn] = {}

    def add(self, name: str, status: StatusFn) -> None:
        """Report ``status()`` as section ``name`` (replacing one of the same name)."""
        self._sections[name] = status

    def remove(self, name: str) -> None:
        """Stop reporting section ``name`` (no error if absent)."""
        self._sections.pop(name, None)

    @property
    def names(self) -> list[str]:
        return list(self._sections)

    def read(self) -> dict[str, dict[str, Any]]:
        """Every section's status now. A section whose function raises reports
        ``{"error": ...}`` instead: reading status never fails."""
        out: dict[str, dict[str, Any]] = {}
        for name, fn in list(self._sections.items()):
            try:
                out[name] = fn()
            except Exception as exc:
                log.debug("status section %s failed", name, exc_info=True)
                out[name] = {"error": repr(exc)}
        return out
