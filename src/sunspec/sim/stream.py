""":class:`SimulatedStream`: a :class:`~sunspec.sim.model.Simulator` published through the
recorder's sending path from a background thread."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from .._worker import Worker
from ..sender import Averager, Frame, Publisher, SequenceInfo
from .model import Simulator

__all__ = ["SimulatedStream"]

log = logging.getLogger("sunspec.sim")


class SimulatedStream(Worker):
    """A :class:`Simulator` streamed through :class:`sunspec.Averager` and
    :class:`sunspec.Publisher` from a background thread.

    ``speed`` is data seconds per wall second (1 = real time, as the recorder: a gulp is
    published when its data would be complete); ``speed=None`` runs as fast as the publisher
    sends (its queue waits for room rather than dropping a frame).
    ``duration`` (data seconds, None = until :meth:`stop`) ends the sequence after
    ``ceil(duration / gulp_seconds)`` gulps, whose final partial window is handled by the
    Averager. ``nint`` or ``interval`` set the frame length (default: half a gulp, as
    deployed). ``frame_level=True`` skips the gulps: frames come from
    :meth:`Simulator.frames` (same windows, same statistics, ~1000x cheaper) and the final
    partial window is sent when it holds at least half ``nint``, as the Averager does.
    ``wait_subscribers`` makes the thread wait up to ``wait_timeout`` s for that many
    subscriptions before the first gulp. Other keyword arguments go to :class:`Simulator`.
    The socket is bound by :meth:`start`, so port 0 works and :attr:`endpoint` is then the
    real one.
    """

    def __init__(self, addr: str = "127.0.0.1", port: int = 9798, *,
                 endpoint: str | None = None, speed: float | None = 1.0,
                 duration: float | None = None, nint: int | None = None,
                 interval: float | None = None, sndhwm: int = 100, beam: int | None = None,
                 wait_subscribers: int = 0, wait_timeout: float = 10.0,
                 frame_level: bool = False, **sim_kwargs: Any):
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed}")
        self.sim = Simulator(**sim_kwargs)
        self.averager = Averager(nint, interval=interval)
        self._frame_args = (nint, interval)
        self.frame_level = frame_level
        self._bind = endpoint or f"tcp://{addr}:{port}"
        self.speed = speed
        self.duration = duration
        self.sndhwm = sndhwm
        self.beam = beam
        self.wait_subscribers = wait_subscribers
        self.wait_timeout = wait_timeout
        self.publisher: Publisher | None = None
        self.gulps_done = 0
        self.frames_done = 0
        self.late_s = 0.0  # worst lag behind the real-time schedule
        super().__init__()
        self._error: BaseException | None = None

    @property
    def nint(self) -> int:
        """Spectra per frame (the Averager's rule: ``nint``, else from ``interval``, else
        half a gulp)."""
        nint, interval = self._frame_args
        avg = Averager(nint, interval=interval)
        avg.begin_sequence(self.sim.header, self.sim.ntime_gulp)
        return avg.nint

    @property
    def nspectra(self) -> int | None:
        """Spectra in the whole sequence (whole gulps), or ``None`` without a duration."""
        if self.duration is None:
            return None
        return math.ceil(self.duration / self.sim.gulp_seconds - 1e-9) * self.sim.ntime_gulp

    @property
    def endpoint(self) -> str | None:
        """The bound endpoint (after :meth:`start`)."""
        return self.publisher.endpoint if self.publisher is not None else None

    def _thread_name(self) -> str:
        return f"sunspec-sim {self.endpoint}"

    def _prepare(self) -> tuple[()]:
        """Bind the publisher (raises if binding fails; a stream runs once)."""
        if self.publisher is not None:
            raise RuntimeError("already started: a SimulatedStream runs once")
        # at full speed the publisher's queue waits for room: the stream outruns it by design
        self.publisher = Publisher(endpoint=self._bind, sndhwm=self.sndhwm, beam=self.beam,
                                   block=self.speed is None)
        log.info("simulating on %s (speed %s, seed %d, %s path)", self.publisher.endpoint,
                 self.speed or "max", self.sim.seed, "frame" if self.frame_level else "gulp")
        return ()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end (``duration`` reached or stopped); True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        return True

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the streaming thread, if any."""
        return self._error

    def status(self) -> dict[str, Any]:
        """Publisher and averager counters, gulps and frames made, the worst real-time lag."""
        st: dict[str, Any] = {"gulps": self.gulps_done, "frames": self.frames_done,
                              "late_s": self.late_s, "running": self.running}
        if self.publisher is not None:
            st.update(self.publisher.status())
        st["averager"] = self.averager.status()
        return st

    def _pace(self, t_wall0: float, data_s: float) -> bool:
        """Wait until ``data_s`` of data is due; False if stopped meanwhile."""
        if self.speed is None:
            return not self._stop.is_set()
        wait = t_wall0 + data_s / self.speed - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return False
        self.late_s = max(self.late_s, -wait)
        return True

    def _run(self) -> None:
        pub = self.publisher
        assert pub is not None
        try:
            if self.wait_subscribers:
                pub.wait_for_subscribers(self.wait_subscribers, self.wait_timeout)
            if self.frame_level:
                self._run_frames(pub)
            else:
                self._run_gulps(pub)
        except BaseException as exc:  # reported through .error; the thread must end cleanly
            self._error = exc
            log.exception("simulated stream failed")
        finally:
            pub.close()

    def _run_gulps(self, pub: Publisher) -> None:
        sim, avg = self.sim, self.averager
        avg.begin_sequence(sim.header, sim.ntime_gulp)
        total = self.nspectra
        ngulps = None if total is None else total // sim.ntime_gulp
        t_wall0 = time.monotonic()
        buf = np.empty(sim.shape, np.float32)
        i = 0
        while (ngulps is None or i < ngulps) and not self._stop.is_set():
            sim.gulp(i, out=buf)
            if not self._pace(t_wall0, (i + 1) * sim.gulp_seconds):
                break
            for frame in avg.add(buf):
                pub.send(frame)
                self.frames_done += 1
            i += 1
            self.gulps_done = i
        final = avg.end_sequence()
        if final is not None:
            pub.send(final)
            self.frames_done += 1

    def _run_frames(self, pub: Publisher) -> None:
        sim, nint = self.sim, self.nint
        info = SequenceInfo.from_header(sim.header)
        tps = info.ticks_per_spectrum
        total = self.nspectra
        nfull = None if total is None else total // nint
        rest = 0 if total is None else total - (nfull or 0) * nint
        block = max(1, min(64, round(sim.gulp_seconds / (nint * sim.spectrum_seconds))))
        t_wall0 = time.monotonic()
        k = 0
        while (nfull is None or k < nfull) and not self._stop.is_set():
            count = block if nfull is None else min(block, nfull - k)
            data = sim.frames(k, count, nint)
            for j in range(count):
                if not self._pace(t_wall0, (k + 1) * nint * sim.spectrum_seconds):
                    return
                t0 = sim.start_tag + k * nint * tps
                pub.send(Frame(data[j], info, t0, t0 + nint * tps, nint))
                k += 1
                self.frames_done = k
        if rest and rest >= max(1, math.ceil(self.averager.min_partial * nint)) \
                and not self._stop.is_set():
            t0 = sim.start_tag + k * nint * tps
            data = sim.partial_frame(k * nint, rest)
            pub.send(Frame(data, info, t0, t0 + rest * tps, rest))
            self.frames_done += 1
