"""StatusBoard: the status of a program, composed where the program is assembled.

Each part (the receiver, the live view, snapshots, the archive, ...) has a ``status()`` method
that returns a dict of its own counters. The program (``sunspec.cli``, or a user's script)
adds those methods to one board under section names; the board reads them all at once for
the status line, ``/api/status`` and :meth:`sunspec.Receiver.get_buffer_status`. A part never
registers itself, so no part knows who reports on it.

Health: every section carries ``"health"`` (one of :data:`HEALTH`: ``"ok"``, ``"degraded"``
-- working, but something needs attention --, ``"failed"`` -- stopped working and will not
recover by itself) and ``"health_reason"`` (a sentence, or ``None`` when ok).
:func:`overall_health` reduces a composed status to the worst of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["HEALTH", "StatusBoard", "overall_health"]

log = logging.getLogger(__name__)

StatusFn = Callable[[], dict[str, Any]]

#: health values, best first
HEALTH = ("ok", "degraded", "failed")


def overall_health(status: dict[str, Any]) -> dict[str, Any]:
    """The worst health of a composed status: its own ``health`` (e.g. the receiver's) and
    that of every nested section. Returns ``health``, ``health_reason`` (the worst part's,
    prefixed with its section name) and ``sections`` (each section's health and reason).
    A section without a ``health`` key counts as ok; one that could not be read (``error``)
    as degraded."""
    parts: dict[str, tuple[str, str | None]] = {}
    if "health" in status:
        parts[""] = (status["health"], status.get("health_reason"))
    for name, section in status.items():
        if not isinstance(section, dict):
            continue
        if "health" in section:
            parts[name] = (section["health"], section.get("health_reason"))
        elif "error" in section:
            parts[name] = ("degraded", f"status unreadable: {section['error']}")
    worst, reason = "ok", None
    for name, (health, why) in parts.items():
        rank = HEALTH.index(health) if health in HEALTH else HEALTH.index("degraded")
        if rank > HEALTH.index(worst):
            worst = HEALTH[rank]
            reason = f"{name}: {why}" if name else why
    return {"health": worst, "health_reason": reason,
            "sections": {name or "receiver": {"health": h, "health_reason": r}
                         for name, (h, r) in parts.items()}}


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
        ``{"error": ..., "health": "degraded", ...}`` instead: reading status never fails."""
        out: dict[str, dict[str, Any]] = {}
        for name, fn in list(self._sections.items()):
            try:
                out[name] = fn()
            except Exception as exc:
                log.debug("status section %s failed", name, exc_info=True)
                out[name] = {"error": repr(exc), "health": "degraded",
                             "health_reason": f"status unreadable: {exc!r}"}
        return out

    def health(self, own: dict[str, Any] | None = None) -> dict[str, Any]:
        """The overall health (:func:`overall_health`) of every section, plus ``own``: the
        status of the part the board belongs to (e.g. a receiver's :meth:`status`)."""
        status: dict[str, Any] = dict(own or {})
        status.update(self.read())
        return overall_health(status)
