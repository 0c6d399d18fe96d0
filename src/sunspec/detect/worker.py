"""DetectorWorker: a thread that runs the detector on a live stream and sends its events."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from .._log import RateLimitedLog
from .._worker import Worker
from ..clock import FS
from ..ring import RingBuffer
from ..source import StreamSource
from .background import UNITS
from .config import VERSION, DetectorConfig
from .detector import Detector, row_interval_s
from .sinks import DEFAULT_EVENTS_ENDPOINT, EventLog, EventPublisher

__all__ = ["DetectorWorker"]

log = logging.getLogger(__name__)

_TICK = 0.25


def _opt_int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None


class DetectorWorker(Worker):
    """Follows ``source.ring`` (a new :class:`Detector` whenever the ring is replaced) and
    sends every event record to a JSON-lines log in ``log_dir`` (None: no log) and a PUB
    socket on ``events_endpoint`` (None: none), with a heartbeat every ``heartbeat_s``.

    :meth:`get_events` returns the latest revision of recent events, :meth:`excess_db` the
    detector's view of rows as dB above its running background, :meth:`status` its
    counters with ``health`` ('ok', 'degraded', 'failed') and ``health_reason``.
    """

    def __init__(self, source: StreamSource, *, config: DetectorConfig | None = None,
                 log_dir: str | os.PathLike[str] | None = None,
                 events_endpoint: str | None = DEFAULT_EVENTS_ENDPOINT,
                 heartbeat_s: float = 5.0, batch: int = 256, keep_events: int = 1000):
        if not heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0, got {heartbeat_s}")
        super().__init__()
        self.source = source
        self.config = config or DetectorConfig()
        self.log_dir = log_dir
        self.events_endpoint = events_endpoint
        self.heartbeat_s = heartbeat_s
        self.batch = batch
        self._keep = keep_events
        self._log = EventLog(log_dir) if log_dir is not None else None
        self._pub: EventPublisher | None = None
        self._det: Detector | None = None
        self._ring: RingBuffer | None = None
        self._cursor = 0
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._rlog = RateLimitedLog(log)
        self._stats: dict[str, Any] = {"rows": 0, "rows_missed": 0, "rings": 0, "events": 0,
                                       "revisions": 0, "errors": 0, "last_error": None}
        self._health = ("ok", "")
        self._last_beat = 0.0

    # --- life cycle --------------------------------------------------------------------------
    def _thread_name(self) -> str:
        return f"sunspec-detect {self.source.name}"

    def _prepare(self) -> tuple[()]:
        if self.events_endpoint is not None and self._pub is None:
            self._pub = EventPublisher(self.events_endpoint)
            log.info("burst events published on %s", self._pub.endpoint)
        return ()

    @property
    def endpoint(self) -> str | None:
        """The bound events endpoint (after start), or None."""
        return self._pub.endpoint if self._pub is not None else None

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        if self._pub is not None:
            self._pub.close()
            self._pub = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
                now = time.monotonic()
                if now - self._last_beat >= self.heartbeat_s:
                    self._beat(now)
            self._switch(None)  # final revisions of open events
            self._beat(time.monotonic())
        except Exception as exc:  # pragma: no cover - a bug; never take the program down
            log.exception("detector thread failed")
            self._health = ("failed", f"thread failed: {exc!r}")
            self._stats["errors"] += 1
            self._stats["last_error"] = repr(exc)

    def _step(self) -> None:
        ring = self.source.ring
        if ring is not self._ring:
            self._switch(ring)
        if ring is None:
            self._stop.wait(_TICK)
            return
        if not ring.wait(self._cursor, _TICK):
            return
        rows = ring.since(self._cursor, self.batch)
        self._cursor = rows.next_index
        if rows.missed:
            self._stats["rows_missed"] += rows.missed
            self._health = ("degraded", f"fell behind: {rows.missed} rows overwritten")
            self._rlog.log(logging.WARNING, "missed", "detector fell behind: %d rows missed",
                           rows.missed)
        if not len(rows):
            return
        if self._det is None and not self._make_detector(ring, rows.end_tag):
            return
        assert self._det is not None
        self._emit(self._det.process_rows(rows))
        self._stats["rows"] += len(rows)
        if not rows.missed and self._health[0] == "degraded" and "behind" in self._health[1]:
            self._health = ("ok", "")

    def _switch(self, ring: RingBuffer | None) -> None:
        if self._det is not None:
            self._emit(self._det.flush())
        self._det = None
        self._ring = ring
        if ring is not None:
            self._stats["rings"] += 1
            # begin with what the ring holds: the background needs a window of history
            self._cursor = max(ring.total - ring.held, 0)

    def _make_detector(self, ring: RingBuffer, tags: np.ndarray) -> bool:
        info = self.source.stream_info
        unit = info.get("unit", "linear")
        if unit not in UNITS:
            self._health = ("failed", f"unknown unit {unit!r} (known: {', '.join(UNITS)})")
            return False
        nint, navg = _opt_int(info.get("nint")), _opt_int(info.get("navg"))
        dt = nint * navg * 8192 / FS if nint and navg else row_interval_s(tags)
        if dt is None:  # one row so far: wait for the next to measure the spacing
            self._cursor -= len(tags)
            return False
        try:
            self._det = Detector(ring.nfreq, dt, freqs_mhz=ring.freqs_mhz, unit=unit,
                                 config=self.config, stream=self.source.name,
                                 beam=_opt_int(info.get("beam")), keep_events=self._keep)
        except ValueError as exc:
            self._health = ("failed", f"cannot search this stream: {exc}")
            self._rlog.log(logging.ERROR, "geometry", "detector: %s", exc)
            return False
        self._health = ("ok", "")
        return True

    def _emit(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            if rec["revision"] == 0:
                self._stats["events"] += 1
            self._stats["revisions"] += 1
            self._events[rec["id"]] = rec
            self._events.move_to_end(rec["id"])
            while len(self._events) > self._keep:
                self._events.popitem(last=False)
            if self._log is not None and not self._log.write(rec):
                self._stats["errors"] += 1
                self._stats["last_error"] = self._log.last_error
                self._health = ("degraded", f"event log: {self._log.last_error}")
            if self._pub is not None:
                self._pub.publish(rec)
            log.info("burst %s rev %d%s: type %s %s..%s MHz snr %.1f", rec["id"],
                     rec["revision"], " final" if rec["final"] else "", rec["type"],
                     rec["f_high_mhz"], rec["f_low_mhz"], rec["snr"])

    def _beat(self, now: float) -> None:
        self._last_beat = now
        if self._pub is not None:
            st = self.status()
            st["time_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
            self._pub.heartbeat(st)

    # --- reading -----------------------------------------------------------------------------
    def get_events(self, n: int | None = None) -> list[dict[str, Any]]:
        """The latest revision of the newest ``n`` events (all kept if None), oldest first."""
        events = list(self._events.values())
        return events if n is None else events[-n:] if n > 0 else []

    def excess_db(self, data: np.ndarray) -> np.ndarray | None:
        """Rows ``data`` (n, nchan) of the current ring as dB above the detector's running
        background (NaN in channels masked as RFI); None before the detector has started."""
        det = self._det
        return None if det is None else det.excess_db(data)

    def status(self) -> dict[str, Any]:
        """Counters of the worker and its current detector, with ``health``."""
        st: dict[str, Any] = dict(self._stats)
        det = self._det
        health, reason = self._health
        if not self.running and self._thread is not None:
            health, reason = "failed", "thread not running"
        st.update(running=self.running, stream=self.source.name, version=VERSION,
                  endpoint=self.endpoint, log_dir=None if self.log_dir is None else
                  str(self.log_dir), health=health, health_reason=reason,
                  detector=det.status() if det is not None else None)
        if self._log is not None:
            st.update(log_written=self._log.written, log_errors=self._log.errors)
        if self._pub is not None:
            st.update(published=self._pub.sent, heartbeats=self._pub.heartbeats)
        return st
