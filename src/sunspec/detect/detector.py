"""Detector: the whole detection of one stream geometry, fed chunks of rows, live or offline.

It owns the background, the search and the event builder, and returns the event records
(see docs/PROTOCOL.md, "Burst events") that each chunk made or revised. It has no thread and
no I/O: :class:`~sunspec.detect.worker.DetectorWorker` runs it on a live ring,
:func:`detect_chunks` over any sequence of Rows-like chunks (archive files, other readers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .. import kernels
from ..clock import FS
from .background import UNITS, Background, to_db
from .config import DetectorConfig
from .events import EventBuilder, make_record
from .search import Geometry, Search

__all__ = ["Chunk", "Detector", "RowChunk", "detect_chunks", "row_interval_s"]

#: row times kept for event records (older rows are extrapolated)
_TAG_ROWS = 8192


class Chunk(Protocol):
    """What the detector needs of a chunk of rows (a :class:`sunspec.ring.Rows` is one)."""

    @property
    def data(self) -> np.ndarray:
        """(n, nchan) rows, linear power or dB."""
        ...

    @property
    def end_tag(self) -> np.ndarray:
        """(n,) int64 window ends, 196 MHz ticks since 1970 UTC."""
        ...


@dataclass(frozen=True)
class RowChunk:
    """A plain :class:`Chunk` (e.g. a slice of an archive file)."""

    data: np.ndarray
    end_tag: np.ndarray


def row_interval_s(end_tag: np.ndarray) -> float | None:
    """Median spacing (s) of rows' window ends, or None for fewer than two rows."""
    tags = np.asarray(end_tag, np.int64)
    if len(tags) < 2:
        return None
    d = np.diff(tags)
    d = d[d > 0]
    return float(np.median(d)) / FS if d.size else None


class Detector:
    """Burst detection over rows of ``nchan`` channels spaced ``dt_s`` seconds.

    ``freqs_mhz`` (any order, may be None: channel indices only, events then report no MHz
    and are ``unclassified``), ``unit`` of the rows ('linear' power or 'dB'), ``config``
    (thresholds), ``stream`` and ``beam`` (copied into events). :meth:`process` returns the
    records published by a chunk; :meth:`flush` makes every open event final.
    """

    def __init__(self, nchan: int, dt_s: float, *, freqs_mhz: np.ndarray | None = None,
                 unit: str = "linear", config: DetectorConfig | None = None,
                 stream: str = "", beam: int | None = None, keep_events: int = 1000):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        if not dt_s > 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        self.config = config or DetectorConfig()
        self.nchan = nchan
        self.dt_s = float(dt_s)
        self.unit = unit
        self.stream = stream
        self.beam = beam
        self.geometry = Geometry(nchan, freqs_mhz, self.config)
        self.background = Background(nchan, self.dt_s, self.config)
        self.search = Search(self.geometry, self.dt_s, self.config)
        self.builder = EventBuilder(self.config, self.dt_s, stream)
        self._tags = np.zeros(_TAG_ROWS, np.int64)
        self._warmup_rows = round(self.config.warmup_s / self.dt_s)
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._keep = keep_events
        self.rows = 0
        self.stats_type2_as_type3 = 0
        self.stats: dict[str, int] = {"rows": 0, "triggers": 0, "events": 0, "revisions": 0,
                                      "time_gaps": 0}

    # --- feeding ----------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        """True once the background is estimated and ``warmup_s`` of rows have passed."""
        return self.background.estimates > 0 and self.rows >= self._warmup_rows

    def process(self, data: np.ndarray, end_tag: np.ndarray) -> list[dict[str, Any]]:
        """Detect in rows ``data`` (n, nchan) ending at ``end_tag`` (n,) (after all rows
        given before); returns the event records this made or revised, oldest first."""
        x = np.asarray(data)
        tags = np.asarray(end_tag, np.int64)
        if x.ndim != 2 or x.shape[1] != self.nchan or tags.shape != (len(x),):
            raise ValueError(f"expected data (n, {self.nchan}) and end_tag (n,), got "
                             f"{x.shape} and {tags.shape}")
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(x):
            n = min(self.background.rows_until_update, len(x) - i)
            out += self._piece(x[i:i + n], tags[i:i + n])
            i += n
        return out

    def process_rows(self, rows: Chunk) -> list[dict[str, Any]]:
        """:meth:`process` of a Rows-like chunk."""
        return self.process(rows.data, rows.end_tag)

    def _piece(self, x: np.ndarray, tags: np.ndarray) -> list[dict[str, Any]]:
        bg = self.background
        x_db = to_db(x, self.unit)
        n, nb = len(x_db), self.geometry.nbins
        z = np.empty((n, nb), np.float32)
        db = np.empty((n, nb), np.float32)
        g = self.geometry
        kernels.detect_bin_rows(x_db, bg.level, bg.inv_sigma, g.chan_bin, g.z_norm, g.db_norm,
                                self.config.zclip, z, db)
        usable = bg.estimates > 0
        if bg.push(x_db):
            self.search.renormalise()
        out: list[dict[str, Any]] = []
        for i in range(n):
            if self.rows and tags[i] - self._tags[(self.rows - 1) % _TAG_ROWS] > \
                    1.5 * self.dt_s * FS:
                self.stats["time_gaps"] += 1
            self._tags[self.rows % _TAG_ROWS] = tags[i]
            triggers = self.search.push(z[i], db[i], self.armed and usable)
            for trig in triggers:
                self.stats["triggers"] += 1
                if trig.kind == "II" and self.builder.explained_by_type3(trig):
                    self.stats_type2_as_type3 += 1
                    continue
                self.builder.add(trig, self._tag_of)
            out += self._publish(flush=False)
            self.rows += 1
            self.stats["rows"] += 1
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Make every open event final; returns their final records."""
        return self._publish(flush=True)

    def _publish(self, flush: bool) -> list[dict[str, Any]]:
        now = self.rows
        due, successors = self.builder.due(now, flush)
        for ev in successors:
            self.builder.name_successor(ev, self._tag_of)
        out = []
        for ev in due:
            if ev.published_row >= 0:
                ev.revision += 1
            else:
                self.stats["events"] += 1
            ev.published_row = now
            ev.dirty = False
            rec = make_record(ev, now_row=now, tag_of=self._tag_of, dt_s=self.dt_s,
                              geometry_centre=self._centre, chan_range=self._chans,
                              has_mhz=self.geometry.has_mhz, stream=self.stream,
                              beam=self.beam, config=self.config)
            self.stats["revisions"] += 1
            self._events[ev.id] = rec
            self._events.move_to_end(ev.id)
            while len(self._events) > self._keep:
                self._events.popitem(last=False)
            out.append(rec)
        return out

    # --- helpers for records ----------------------------------------------------------------
    def _tag_of(self, row: int) -> int:
        newest = self.rows - 1 if self.rows else 0
        row = min(row, newest)
        if newest - row < _TAG_ROWS and row >= 0:
            return int(self._tags[row % _TAG_ROWS])
        anchor = max(newest - _TAG_ROWS + 1, 0)
        return int(self._tags[anchor % _TAG_ROWS]) - round((anchor - row) * self.dt_s * FS)

    def _centre(self, b: int) -> float | None:
        return float(self.geometry.centre_mhz[b]) if self.geometry.has_mhz else None

    def _chans(self, b_high: int, b_low: int) -> tuple[int, int]:
        r = self.geometry.bin_chan_range
        lo = r[b_high:b_low + 1]
        lo = lo[lo[:, 0] >= 0]
        if not lo.size:
            return -1, -1
        # the channel of the event's highest and lowest frequency
        f = self.geometry.freqs_mhz
        chans = np.concatenate([np.arange(a, b + 1) for a, b in lo])
        chans = chans[(self.geometry.chan_bin[chans] >= b_high) &
                      (self.geometry.chan_bin[chans] <= b_low)]
        return int(chans[np.argmax(f[chans])]), int(chans[np.argmin(f[chans])])

    # --- reading ----------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """The latest revision of each event (up to ``keep_events``), oldest first."""
        return list(self._events.values())

    def excess_db(self, data: np.ndarray) -> np.ndarray:
        """dB above the detector's running background of rows ``data`` (n, nchan) in the
        stream's unit, float32; NaN in channels masked as RFI (all 0 before the first
        estimate)."""
        return self.background.excess_db(to_db(np.asarray(data), self.unit))

    def status(self) -> dict[str, Any]:
        """Counters: rows, triggers, events, revisions, vetoes, masked channels."""
        st: dict[str, Any] = dict(self.stats)
        st.update(armed=self.armed, open_events=len(self.builder.open),
                  vetoed_spikes=self.search.vetoed_spikes, vetoed_rfi=self.search.vetoed_rfi,
                  vetoed_narrow=self.search.vetoed_narrow, spike_rows=self.search.spike_rows,
                  type2_as_type3=self.stats_type2_as_type3,
                  late_triggers=self.builder.late,
                  masked_channels=int(self.background.masked.sum()), dt_s=self.dt_s,
                  unit=self.unit)
        return st


def detect_chunks(chunks: Iterable[Chunk], *, freqs_mhz: np.ndarray | None = None,
                  unit: str = "linear", dt_s: float | None = None,
                  config: DetectorConfig | None = None, stream: str = "",
                  beam: int | None = None, final_only: bool = False
                  ) -> Iterable[dict[str, Any]]:
    """Run one detector over consecutive chunks (all of one geometry); yields records.

    ``dt_s`` defaults to the median spacing of the first chunk's rows. With ``final_only``
    only each event's final revision is yielded.
    """
    det: Detector | None = None
    for chunk in chunks:
        if det is None:
            step = dt_s or row_interval_s(chunk.end_tag)
            if step is None:
                raise ValueError("cannot tell the row spacing from a chunk of one row; "
                                 "give dt_s")
            det = Detector(np.asarray(chunk.data).shape[1], step, freqs_mhz=freqs_mhz,
                           unit=unit, config=config, stream=stream, beam=beam)
        for rec in det.process_rows(chunk):
            if rec["final"] or not final_only:
                yield rec
    if det is not None:
        yield from det.flush()
