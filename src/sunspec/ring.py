"""RingBuffer: the newest frames of a stream, one reduced spectrum per row, with their times.

One thread writes (the receiver); any number of threads read. The buffer has one more
physical row than it holds: the writer fills that spare row (the kernel runs without any
lock, so readers are never held up by it), then, under the lock, publishes it by advancing
``head``; the oldest row becomes the next spare. Readers copy under the same lock. So a
reader never sees a half-written row, and the writer waits at most for one reader's copy
(the copy runs with the GIL released).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .kernels import RowStamps, read_rows

__all__ = ["RingBuffer", "Rows"]


@dataclass(frozen=True, eq=False)
class Rows:
    """Copies of consecutive ring rows, oldest first.

    ``first_index`` counts frames written to the ring before row 0; ``missed`` is how many
    requested rows had already been overwritten (see :meth:`RingBuffer.since`).
    """

    data: np.ndarray
    end_tag: np.ndarray
    end_unix: np.ndarray
    seq: np.ndarray
    arrival_unix: np.ndarray
    first_index: int
    missed: int
    freqs_mhz: np.ndarray | None

    def __len__(self) -> int:
        return len(self.data)

    @classmethod
    def empty(cls, nfreq: int = 0) -> Rows:
        """No rows (what a receiver without data returns)."""
        return cls(np.zeros((0, nfreq), np.float32), np.zeros(0, np.int64), np.zeros(0),
                   np.zeros(0, np.int64), np.zeros(0), 0, 0, None)

    @property
    def next_index(self) -> int:
        """Index of the frame after the last row (the cursor for the next :meth:`since`)."""
        return self.first_index + len(self.data)

    @property
    def time_tags(self) -> np.ndarray:
        """Window ends in 196 MHz ticks since 1970 UTC (int64)."""
        return self.end_tag

    @property
    def times(self) -> np.ndarray:
        """Window ends as UTC ``datetime64[us]`` (exact to the microsecond)."""
        from .clock import TICKS_PER_US

        return (self.end_tag // TICKS_PER_US).astype("datetime64[us]")


class RingBuffer:
    """``nrows`` rows of ``nfreq`` float32, each with its frame's window end, seq and arrival.

    ``freqs_hz`` gives the rows' channel centres when known (else ``None``: channel indices).
    """

    def __init__(self, nrows: int, nfreq: int, *, freqs_hz: np.ndarray | None = None):
        if nrows < 1 or nfreq < 1:
            raise ValueError(f"nrows and nfreq must be >= 1, got {nrows}, {nfreq}")
        if freqs_hz is not None:
            freqs_hz = np.asarray(freqs_hz, dtype=np.float64)
            if freqs_hz.shape != (nfreq,):
                raise ValueError(f"freqs_hz must have shape ({nfreq},), got {freqs_hz.shape}")
            freqs_hz.flags.writeable = False
        self.nrows = nrows
        self.nfreq = nfreq
        self.freqs_hz = freqs_hz
        #: ``freqs_hz`` in MHz, made once (read-only; every Rows shares it)
        self.freqs_mhz: np.ndarray | None = None
        if freqs_hz is not None:
            self.freqs_mhz = freqs_hz / 1e6
            self.freqs_mhz.flags.writeable = False
        physical = nrows + 1
        # np.full writes every page now: the memory is committed when the ring is made, so
        # no frame pays a page fault later (np.zeros would leave that to the first writes)
        self.data = np.full((physical, nfreq), 0, np.float32)
        self._end_tag = np.full(physical, 0, np.int64)
        self._end_unix = np.full(physical, 0, np.float64)
        self._seq = np.full(physical, -1, np.int64)
        self._arrival = np.full(physical, 0, np.float64)
        self._stamp = RowStamps(self._end_tag, self._end_unix, self._seq, self._arrival).write
        self._physical = physical
        #: physical row the writer fills next, invisible to readers until :meth:`commit`
        #: (writer side: read it, never set it)
        self.spare_row = 0
        self._total = 0
        self._lock = threading.Lock()  # taken by itself where nobody is notified (cheaper)
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # readers in wait(): a commit wakes them only when there are some

    @property
    def total(self) -> int:
        """Frames written to this ring so far."""
        return self._total

    @property
    def held(self) -> int:
        """Rows currently held."""
        return min(self._total, self.nrows)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.data, self._end_tag, self._end_unix, self._seq,
                                      self._arrival))

    # --- writer side (one thread) ---------------------------------------------------------
    def commit(self, end_tag: int, end_unix: float, seq: int, arrival_unix: float) -> None:
        """Publish the spare row (already filled) with its frame's times."""
        r = self.spare_row
        self._stamp(r, end_tag, end_unix, seq, arrival_unix)
        with self._lock:
            self.spare_row = (r + 1) % self._physical
            self._total += 1
            if self._waiting:
                self._cond.notify_all()

    # --- reader side (any thread) ---------------------------------------------------------
    def _copy(self, end: int, n: int, first_index: int, missed: int) -> Rows:
        """Copy ``n`` rows ending ``end`` rows before head; caller holds the lock."""
        head = (self.spare_row - end) % self._physical
        return Rows(
            data=read_rows(self.data, head, n),
            end_tag=read_rows(self._end_tag, head, n),
            end_unix=read_rows(self._end_unix, head, n),
            seq=read_rows(self._seq, head, n),
            arrival_unix=read_rows(self._arrival, head, n),
            first_index=first_index,
            missed=missed,
            freqs_mhz=self.freqs_mhz,
        )

    def latest(self, n: int = 1) -> Rows:
        """The newest ``n`` rows (fewer if fewer are held), oldest first."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._cond:
            n = min(n, self.held)
            return self._copy(0, n, self._total - n, 0)

    def recent_arrivals(self, n: int) -> np.ndarray:
        """Arrival times (Unix s) of the newest ``n`` rows, oldest first (no row data)."""
        with self._cond:
            n = min(n, self.held)
            return read_rows(self._arrival, self.spare_row, n)

    def since(self, cursor: int, max_rows: int | None = None) -> Rows:
        """Rows with index >= ``cursor``, oldest first, at most ``max_rows`` of them.

        Rows already overwritten are skipped and counted in ``missed``; continue from
        ``rows.next_index``.
        """
        with self._cond:
            total = self._total
            start = max(cursor, total - self.held)
            n = max(total - start, 0)
            if max_rows is not None:
                n = min(n, max_rows)
            return self._copy(total - start - n, n, start, max(start - cursor, 0))

    def wait(self, cursor: int, timeout: float | None = None) -> bool:
        """Block until a frame with index >= ``cursor`` exists (or ``timeout`` s pass)."""
        with self._cond:
            self._waiting += 1
            try:
                return self._cond.wait_for(lambda: self._total > cursor, timeout)
            finally:
                self._waiting -= 1
