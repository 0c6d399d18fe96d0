"""StreamSource: what every consumer of a stream's ring (live view, snapshots, archive, a
user's pipeline) needs of it, and nothing more.

One object per stream. :class:`sunspec.Receiver` is one; a test or a program may give any
object with these members, so consumers never import the receiver. A consumer reads from its
own thread: it waits for a ring, then follows it with :meth:`RingBuffer.since` and
:meth:`RingBuffer.wait`, and re-reads :attr:`StreamSource.ring`, because a change of the
stream's geometry replaces the ring.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from .ring import RingBuffer

__all__ = ["StreamSource", "wait_for_ring"]


@runtime_checkable
class StreamSource(Protocol):
    """One stream's ring and metadata, as a consumer sees them."""

    @property
    def name(self) -> str:
        """Short name of the stream (used in status sections and file names)."""
        ...

    @property
    def ring(self) -> RingBuffer | None:
        """The current ring, ``None`` before the first frame; replaced on a geometry change."""
        ...

    @property
    def stream_info(self) -> dict[str, Any]:
        """Metadata of the stream: the sender's keys plus the receiver's product and factor."""
        ...

    def wait_for_ring(self, timeout: float | None = None) -> RingBuffer | None:
        """The ring once it holds a row (``None`` if ``timeout`` s pass first)."""
        ...


def wait_for_ring(source: StreamSource, timeout: float | None = None,
                  step: float = 0.01) -> RingBuffer | None:
    """Poll ``source.ring`` until it holds a row (a ready-made ``wait_for_ring``)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ring = source.ring
        if ring is not None and ring.total:
            return ring
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(step)

