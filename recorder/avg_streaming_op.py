"""``AvgStreamingOp``: the OVRO-LWA recorder's streaming block, rebuilt on sunspec.

A drop-in replacement for the class of that name in ``dr_beam.py`` (ovro_data_recorder):
same constructor, ``main()``, ``shutdown()`` and ``shutdown_event``; same messages on the
wire (every version 1 key, plus sunspec's version 2 keys). What changes:

- each frame is the float64-accurate mean of ``ntime_gulp // npack_per_gulp`` spectra
  (:class:`sunspec.Averager`) and goes out through :class:`sunspec.Publisher`: the thread
  reading the ring only copies the frame into a bounded queue (full: the oldest frame is
  dropped and counted) and makes no ZeroMQ call; the publisher's own thread sends, so no
  peer can stall the ring;
- every frame is labelled by the spectra it holds: a span's ``offset`` (bytes from the
  sequence start) gives its first spectrum, so a late join or an overrun reader
  (``guarantee=False``) restarts the averaging window after the gap, and the skipped
  spectra are counted (:meth:`AvgStreamingOp.stats`) and logged;
- there is no sleeping: frames are paced by data time, so ``stream_interval`` is accepted
  for compatibility and ignored (the deployed op slept that long between the two frames of
  a gulp while holding its span);
- a span is handed back as soon as its frames are computed and queued;
- ``shutdown_event`` (and :meth:`AvgStreamingOp.shutdown`) is honoured at every span;
- the short final span of a sequence is averaged too (the deployed op skipped it), and the
  partial window left at a sequence's end is sent if it holds at least half a frame's
  spectra (its ``nint`` and window tags say so), else dropped and counted.

Bifrost's ``ProcLog`` and ``affinity`` are used when ``bifrost`` imports (the recorder's
environment); without it the op still runs, which is how it is tested on a stand-in ring.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np

from sunspec import Averager, Publisher
from sunspec._log import RateLimitedLog

try:  # only inside the recorder's environment
    from bifrost import affinity as _affinity
    from bifrost.proclog import ProcLog as _ProcLog
except ImportError:  # pragma: no cover - depends on the environment
    _affinity = None
    _ProcLog = None

__all__ = ["AvgStreamingOp"]


class _NoProcLog:
    """Stands in for ``bifrost.proclog.ProcLog`` when Bifrost is absent."""

    def __init__(self, name: str):
        self.name = name

    def update(self, contents: dict[str, Any] | str) -> None:
        pass


def _proclog(name: str) -> Any:
    return _ProcLog(name) if _ProcLog is not None else _NoProcLog(name)


class AvgStreamingOp:
    """Average each ``1 / npack_per_gulp`` of a gulp into one frame and publish it on
    ``tcp://streaming_addr:streaming_port``.

    Extra keyword-only arguments (all optional): ``beam`` (sent as the version 2 ``beam``
    key), ``sndhwm`` (messages queued per subscriber before that subscriber loses some),
    ``queue`` (frames waiting for the publishing thread before the oldest is dropped),
    ``min_partial`` (see :class:`sunspec.Averager`).
    """

    def __init__(self, log: logging.Logger, iring: Any, ntime_gulp: int = 250,
                 guarantee: bool = True, core: int | None = None,
                 streaming_addr: str = "127.0.0.1", streaming_port: int = 9798,
                 stream_interval: float = 0.15, npack_per_gulp: int = 2, *,
                 beam: int | None = None, sndhwm: int = 100, queue: int = 8,
                 min_partial: float = 0.5):
        if npack_per_gulp < 1 or ntime_gulp < npack_per_gulp:
            raise ValueError(f"need 1 <= npack_per_gulp <= ntime_gulp, got {npack_per_gulp}, "
                             f"{ntime_gulp}")
        self.log = log
        self.iring = iring
        self.ntime_gulp = ntime_gulp
        self.guarantee = guarantee
        self.core = core
        self.streaming_addr = streaming_addr
        self.streaming_port = streaming_port
        self.stream_interval = float(stream_interval)  # compatibility only: no sleeping
        self.npack_per_gulp = npack_per_gulp
        self.shutdown_event: threading.Event | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = False

        name = type(self).__name__
        self.bind_proclog = _proclog(name + "/bind")
        self.in_proclog = _proclog(name + "/in")
        self.size_proclog = _proclog(name + "/size")
        self.sequence_proclog = _proclog(name + "/sequence0")
        self.perf_proclog = _proclog(name + "/perf")
        self.in_proclog.update({"nring": 1, "ring0": getattr(iring, "name", "")})
        self.size_proclog.update({"nseq_per_gulp": ntime_gulp})

        self._rlog = RateLimitedLog(log)
        self.averager = Averager(ntime_gulp // npack_per_gulp, min_partial=min_partial)
        self.publisher = Publisher(streaming_addr, streaming_port, sndhwm=sndhwm, queue=queue,
                                   beam=beam)
        self.log.info("AvgStreamingOp: publishing on %s (%d spectra per frame)",
                      self.publisher.endpoint, self.averager.nint)

    def _stopping(self) -> bool:
        ev = self.shutdown_event
        return self._stop.is_set() or (ev is not None and ev.is_set())

    def main(self) -> None:
        """Read the ring until it ends or shutdown is asked for; publish frames."""
        with self._lock:
            if self.publisher.closed:
                return
            self._running = True
        try:
            if self.core is not None and _affinity is not None:
                _affinity.set_core(self.core)
                self.bind_proclog.update({"ncore": 1, "core0": _affinity.get_core()})
            for iseq in self.iring.read(guarantee=self.guarantee):
                if self._stopping():
                    break
                self._sequence(iseq)
                if self._stopping():
                    break
        finally:
            with self._lock:
                self._running = False
                self.publisher.close()
            self.log.info("AvgStreamingOp - Done (%s)", self.status())

    def _sequence(self, iseq: Any) -> None:
        ihdr = json.loads(iseq.header.tobytes())
        self.sequence_proclog.update(ihdr)
        self.log.info("AvgStreamingOp: start of new sequence: %s", str(ihdr))
        info = self.averager.begin_sequence(ihdr, self.ntime_gulp)
        nbeam, nchan, npol = info.frame_shape
        nbyte = nbeam * nchan * npol * 4  # bytes per spectrum
        igulp_size = self.ntime_gulp * nbyte
        avg, pub = self.averager, self.publisher
        t_prev = time.perf_counter()
        for ispan in iseq.read(igulp_size):
            if self._stopping():
                break
            t_acquired = time.perf_counter()
            # the spectra this span holds, from the sequence start: a late or overrun reader
            # gets a later offset than it asked for; only whole spectra are used
            offset = ispan.offset
            first = max(-(-offset // nbyte), avg.next_spectrum)  # never one already averaged
            end = (offset + ispan.size) // nbyte
            if end > first:
                if first > avg.next_spectrum:
                    self._gap(info.time_tag, avg.next_spectrum, first)
                raw = ispan.data_view(np.uint8).reshape(-1)
                gulp = raw[first * nbyte - offset:end * nbyte - offset].view(np.float32)
                for frame in avg.add(gulp.reshape(end - first, nbeam, nchan, npol), first):
                    pub.send(frame)
                del raw, gulp  # no reference outlives the span
            t_done = time.perf_counter()
            self.perf_proclog.update({"acquire_time": t_acquired - t_prev, "reserve_time": -1,
                                      "process_time": t_done - t_acquired})
            t_prev = t_done
        final = avg.end_sequence()
        if final is not None and not self._stopping():
            pub.send(final)

    def _gap(self, time_tag: int, expected: int, first: int) -> None:
        self._rlog.log(logging.WARNING, "gap",
                       "AvgStreamingOp: sequence %d: spectra %d-%d were not read (joined late "
                       "or overrun); the next frame starts at spectrum %d (%d spectra skipped "
                       "so far)", time_tag, expected, first - 1, first,
                       self.averager.spectra_skipped + first - expected)

    def status(self) -> dict[str, Any]:
        """Counters: the averager's (frames, spectra, gaps, spectra_skipped, partial
        windows) and the publisher's (seq, sent, dropped, subscriptions, refused, ...)."""
        return {"averager": self.averager.status(), "publisher": self.publisher.status()}

    def shutdown(self) -> None:
        """Ask ``main()`` to end at its next span; close the socket once it has."""
        if self.shutdown_event is not None:
            self.shutdown_event.set()
        self._stop.set()
        with self._lock:
            if not self._running:
                self.publisher.close()
        self.log.info("AvgStreamingOp - Shutdown complete")
