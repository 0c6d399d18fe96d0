"""What every reader delivers: the facts of a file's spectra and its rows, chunk by chunk.

A reader holds a file open and reads rows on demand, so memory is bounded by one chunk
(``max_rows`` rows), not by the file. Rows come oldest first, each stamped with the **end**
of its window in ticks of the 196 MHz clock since 1970 UTC (``end_tag``); the window is
``window_ticks`` long when the file says so (its start is then ``end_tag - window_ticks``).
The frequency axis ``freqs_hz`` is the file's own, in Hz, strictly increasing; a reader that
drops or reorders channels to make it so says how in its module docstring.
"""

from __future__ import annotations

import abc
import bisect
import datetime as _dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..clock import FS, datetime_to_tag

log = logging.getLogger(__name__)

__all__ = ["UNITS", "Chunk", "SpectrumReader", "TimeLike", "UnsupportedFile", "ticks"]

#: value units: linear power (arbitrary scale), decibels, or raw instrument digits
UNITS = ("linear", "dB", "digits")

TimeLike = int | _dt.datetime


class UnsupportedFile(ValueError):
    """A file no reader recognises (or one whose layout is broken); never read as spectra."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of a file."""

    data: np.ndarray  # float32 (n, nchan, npol), channels in the order of freqs_hz
    end_tag: np.ndarray  # int64 (n,), window ends, ticks since 1970 UTC
    window_ticks: int | None  # length of each row's window, when known

    def __len__(self) -> int:
        return len(self.end_tag)

    @property
    def start_tag(self) -> np.ndarray | None:
        """Window starts (int64), when the window length is known."""
        return None if self.window_ticks is None else self.end_tag - self.window_ticks


def _after(end: np.ndarray, last: int | None) -> np.ndarray | None:
    """Mask of the rows later than every row before them (None when all are)."""
    prev = np.maximum.accumulate(end)
    prior = np.empty_like(end)
    prior[0] = np.iinfo(np.int64).min if last is None else last
    prior[1:] = prev[:-1]
    if last is not None:
        prior = np.maximum(prior, last)
    keep = end > prior
    return None if keep.all() else keep


def _tag(t: TimeLike | None) -> int | None:
    if t is None or isinstance(t, int):
        return t
    if isinstance(t, _dt.datetime):
        return datetime_to_tag(t)
    raise TypeError(f"a time is a tag (int) or a datetime, got {type(t).__name__}")


class SpectrumReader(abc.ABC):
    """A file of spectra, open for reading (a context manager; :meth:`close` when done).

    Attributes every reader sets:

    ``path``, ``source_format`` (e.g. ``"e-callisto"``), ``nrows``; ``freqs_hz`` (float64,
    strictly increasing, or None when the file only knows channel indices); ``nchan``;
    ``pols`` (product names, one per last axis of a chunk's data); ``unit`` (one of
    :data:`UNITS`); ``db_per_digit`` (for ``"digits"``, else None); ``instrument``,
    ``station``; ``window_ticks`` and ``time_resolution_s`` (row window and row spacing);
    ``navg`` (recorder spectra integrated per sample), ``factor`` (recorder channels per
    channel) and ``chan0`` (recorder channel of the first channel) where known;
    ``normalised_by_navg`` (values divided by ``navg``, as the recorder's own files are);
    ``meta`` (the :class:`~sunspec.archive.ArchiveMeta` of a sunspec archive, else None).
    """

    source_format: str = ""
    unit: str = "linear"
    db_per_digit: float | None = None
    instrument: str = ""
    station: str = ""
    navg: int | None = None
    factor: int = 1
    chan0: int | None = None
    normalised_by_navg: bool = False
    meta: Any = None

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.freqs_hz: np.ndarray | None = None
        self.pols: tuple[str, ...] = ()
        self.nchan = 0
        self.nrows = 0
        self.window_ticks: int | None = None
        self.time_resolution_s: float | None = None
        #: rows skipped because their time was not after the row before them
        self.rows_out_of_order = 0

    # --- what a format implements ------------------------------------------------------------
    @abc.abstractmethod
    def _end_tags(self, a: int, b: int) -> np.ndarray:
        """int64 window ends of rows [a, b)."""

    @abc.abstractmethod
    def _rows(self, a: int, b: int) -> np.ndarray:
        """float32 (b - a, nchan, npol) values of rows [a, b)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file."""

    # --- shared -------------------------------------------------------------------------------
    @property
    def npol(self) -> int:
        return len(self.pols)

    def _tag_at(self, i: int) -> int:
        return int(self._end_tags(i, i + 1)[0])

    def _first_after(self, tag: int) -> int:
        """Index of the first row whose window ends after ``tag`` (rows are in time order;
        a binary search that reads one time stamp per step)."""
        return bisect.bisect_right(range(self.nrows), tag, key=self._tag_at)

    def row_range(self, start: TimeLike | None = None,
                  stop: TimeLike | None = None) -> tuple[int, int]:
        """Rows [a, b) whose window ends in (start, stop] (tags or datetimes; None: open)."""
        t0, t1 = _tag(start), _tag(stop)
        a = 0 if t0 is None else self._first_after(t0)
        b = self.nrows if t1 is None else self._first_after(t1)
        return a, max(a, b)

    def chunks(self, max_rows: int = 1024, start: TimeLike | None = None,
               stop: TimeLike | None = None) -> Iterator[Chunk]:
        """Rows whose window ends in (start, stop], oldest first, at most ``max_rows`` a
        chunk; each chunk's arrays are new (safe to keep).

        A row whose time is not after every row before it (a file whose clock went back) is
        skipped, logged and counted in ``rows_out_of_order``, never delivered out of order.
        """
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        a, b = self.row_range(start, stop)
        t0, t1 = _tag(start), _tag(stop)
        last: int | None = None
        for i in range(a, b, max_rows):
            j = min(i + max_rows, b)
            data, end = self._rows(i, j), self._end_tags(i, j)
            keep = _after(end, last)
            if keep is not None:
                bad = len(end) - int(np.count_nonzero(keep))
                self.rows_out_of_order += bad
                log.warning("%s: %d rows of %d-%d not after the row before them, skipped "
                            "(%d so far)", self.path, bad, i, j, self.rows_out_of_order)
                if t0 is not None or t1 is not None:  # the search assumed time order
                    keep &= (end > (t0 if t0 is not None else end.min() - 1)) & \
                        (end <= (t1 if t1 is not None else end.max()))
                data, end = data[keep], end[keep]
            if len(end):
                last = int(end[-1])
                yield Chunk(data, end, self.window_ticks)

    def describe(self) -> dict[str, Any]:
        """The reader's facts as plain values (for logs and stream headers)."""
        f = self.freqs_hz
        return {
            "path": str(self.path), "source_format": self.source_format, "nrows": self.nrows,
            "nchan": self.nchan, "pols": list(self.pols), "unit": self.unit,
            "db_per_digit": self.db_per_digit, "instrument": self.instrument,
            "station": self.station, "window_ticks": self.window_ticks,
            "time_resolution_s": self.time_resolution_s, "navg": self.navg,
            "factor": self.factor, "chan0": self.chan0,
            "normalised_by_navg": self.normalised_by_navg,
            "rows_out_of_order": self.rows_out_of_order,
            "freq_min_hz": None if f is None else float(f[0]),
            "freq_max_hz": None if f is None else float(f[-1]),
        }

    def __enter__(self) -> SpectrumReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.source_format} {self.path.name}: "
                f"{self.nrows} rows x {self.nchan} ch x {self.pols}>")


def ticks(seconds: float) -> int:
    """The nearest whole number of ticks to ``seconds``."""
    return round(seconds * FS)
