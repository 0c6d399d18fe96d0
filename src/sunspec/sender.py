"""Sending side: :class:`Averager` turns recorder gulps into frames, :class:`Publisher` puts
frames on the wire.

The recorder's Bifrost op (``recorder/avg_streaming_op.py``) and the simulator
(:mod:`sunspec.sim`) both use exactly this path::

    averager.begin_sequence(ring_header)
    for gulp in gulps:                      # float32 (ntime, nbeam, nchan, npol), read-only is fine
        for frame in averager.add(gulp):    # zero or more frames, each a float64-accurate mean
            publisher.send(frame)           # never blocks; a full queue drops and counts
    final = averager.end_sequence()         # the partial window at the sequence's end
    if final is not None:
        publisher.send(final)

Times are integers throughout: a frame's window ``[t_start_tag, t_end_tag)`` is the
sequence's ``time_tag`` plus ``navg * 8192`` ticks per spectrum before it.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from . import kernels, protocol
from ._log import RateLimitedLog
from .clock import CHAN_BW, FS, ticks_per_spectrum

__all__ = ["Averager", "Frame", "Publisher", "SequenceInfo", "nint_for_interval"]

log = logging.getLogger(__name__)

#: the recorder's pol labels (ring header) and the names sunspec messages use for them
_POL_NAMES = {"CR": "XY_real", "CI": "XY_imag"}


def nint_for_interval(interval: float, navg: int) -> int:
    """Spectra per frame closest to ``interval`` seconds of data time (at least 1)."""
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval}")
    return max(1, round(interval * FS / ticks_per_spectrum(navg)))


@dataclass(frozen=True, slots=True)
class SequenceInfo:
    """What a recorder ring sequence's header says about its spectra.

    Built from the header dict the recorder's capture writes (``time_tag``, ``navg``,
    ``nbeam``, ``nchan``, ``npol``, and when present ``chan0``, ``cfreq0``, ``bw``, ``pols``).
    """

    time_tag: int
    navg: int
    nbeam: int
    nchan: int
    npol: int
    chan0: int | None = None
    cfreq0: float | None = None
    bw: float | None = None
    pols: str | None = None

    @classmethod
    def from_header(cls, hdr: Mapping[str, Any]) -> SequenceInfo:
        """Parse a ring header (``pols`` CR/CI are renamed XY_real/XY_imag as deployed)."""
        try:
            ints = {k: int(hdr[k]) for k in ("time_tag", "navg", "nbeam", "nchan", "npol")}
        except KeyError as exc:
            raise ValueError(f"ring header lacks {exc.args[0]!r}") from None
        if ints["navg"] < 1 or min(ints["nbeam"], ints["nchan"], ints["npol"]) < 1:
            raise ValueError(f"ring header has a non-positive size: {ints}")
        chan0 = hdr.get("chan0")
        pols = hdr.get("pols")
        if isinstance(pols, str):
            pols = ",".join(_POL_NAMES.get(p.strip(), p.strip()) for p in pols.split(","))
        cfreq0 = hdr.get("cfreq0")
        bw = hdr.get("bw")
        return cls(
            **ints,
            chan0=None if chan0 is None else int(chan0),
            cfreq0=None if cfreq0 is None else float(cfreq0),
            bw=None if bw is None else float(bw),
            pols=pols,
        )

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.nbeam, self.nchan, self.npol)

    @property
    def ticks_per_spectrum(self) -> int:
        return ticks_per_spectrum(self.navg)

    @property
    def chan_bw(self) -> float:
        """Channel width, Hz (``bw / nchan`` when the header gives ``bw``)."""
        return self.bw / self.nchan if self.bw else CHAN_BW

    def metadata(self) -> dict[str, Any]:
        """The version 2 header keys this sequence supplies (``None`` where unknown)."""
        cfreq0 = self.cfreq0
        if cfreq0 is None and self.chan0 is not None:
            cfreq0 = self.chan0 * CHAN_BW
        bw = self.bw if self.bw is not None else self.nchan * CHAN_BW
        return {"navg": self.navg, "chan0": self.chan0, "cfreq0": cfreq0, "bw": bw,
                "chan_bw": self.chan_bw, "pols": self.pols}


@dataclass(frozen=True, slots=True)
class Frame:
    """One averaged frame and its window.

    ``data`` (float32, (nbeam, nchan, npol)) is the :class:`Averager`'s output buffer: it is
    overwritten by the next frame, so send or copy it before asking for more.
    """

    data: np.ndarray
    info: SequenceInfo
    t_start_tag: int
    t_end_tag: int
    nint: int

    @property
    def time_tag(self) -> int:
        """Start of the sequence (the version 1 ``time_tag``)."""
        return self.info.time_tag


class Averager:
    """Mean of every ``nint`` consecutive spectra of a sequence, accumulated in float64.

    Windows are counted from the sequence start and may span gulps. At the sequence's end
    (:meth:`end_sequence`) an incomplete window holding at least
    ``max(1, ceil(min_partial * nint))`` spectra becomes a frame with its own ``nint`` and its
    true window; a smaller one is dropped and counted (``partial_dropped``,
    ``spectra_dropped``). ``min_partial = 1`` keeps full windows only; ``0`` keeps every
    partial window.

    One float64 accumulator and one float32 output are allocated per frame shape and reused.
    """

    def __init__(self, nint: int | None = None, *, interval: float | None = None,
                 min_partial: float = 0.5):
        if nint is not None and interval is not None:
            raise ValueError("give nint or interval, not both")
        if nint is not None and nint < 1:
            raise ValueError(f"nint must be >= 1, got {nint}")
        if not 0.0 <= min_partial <= 1.0:
            raise ValueError(f"min_partial must be in [0, 1], got {min_partial}")
        self._nint_arg = nint
        self.interval = interval
        self.min_partial = min_partial
        self.nint = nint or 0  # fixed per sequence by begin_sequence
        self.info: SequenceInfo | None = None
        self._acc: np.ndarray | None = None
        self._out: np.ndarray | None = None
        self._filled = 0  # spectra in the current window
        self._start = 0  # index (from the sequence start) of the current window's first spectrum
        self.frames = 0
        self.spectra = 0
        self.partial_frames = 0
        self.partial_dropped = 0
        self.spectra_dropped = 0

    def begin_sequence(self, header: Mapping[str, Any] | SequenceInfo,
                       ntime_gulp: int | None = None) -> SequenceInfo:
        """Start a sequence (a ring header dict or a :class:`SequenceInfo`).

        ``nint`` is, in order: the constructor's ``nint``; from ``interval`` and the
        sequence's ``navg``; else half of ``ntime_gulp`` (as deployed); else 512.
        An unfinished window of the previous sequence is discarded and counted.
        """
        info = header if isinstance(header, SequenceInfo) else SequenceInfo.from_header(header)
        self._discard_partial()
        if self._nint_arg is not None:
            self.nint = self._nint_arg
        elif self.interval is not None:
            self.nint = nint_for_interval(self.interval, info.navg)
        else:
            self.nint = max(1, ntime_gulp // 2) if ntime_gulp else 512
        if self._acc is None or self._acc.shape != info.frame_shape:
            self._acc = np.zeros(info.frame_shape, np.float64)
            self._out = np.empty(info.frame_shape, np.float32)
        self.info = info
        self._start = 0
        self._filled = 0
        return info

    def add(self, gulp) -> Iterator[Frame]:
        """Add a gulp (float32 (ntime, nbeam, nchan, npol), C-contiguous, may be read-only;
        it is not copied) and yield each frame it completes. Consume the iterator fully
        before adding the next gulp; each frame's ``data`` is valid until the next one."""
        info = self.info
        if info is None:
            raise RuntimeError("begin_sequence() must be called before add()")
        if not isinstance(gulp, np.ndarray):
            gulp = np.asarray(gulp)
        if gulp.ndim != 4 or gulp.shape[1:] != info.frame_shape:
            raise ValueError(f"gulp must have shape (ntime, {', '.join(map(str, info.frame_shape))}"
                             f"), got {gulp.shape}")
        return self._frames(gulp)

    def _frames(self, gulp: np.ndarray) -> Iterator[Frame]:
        ntime = gulp.shape[0]
        t = 0
        while t < ntime:
            take = min(self.nint - self._filled, ntime - t)
            kernels.accumulate(gulp, t, t + take, self._acc)
            self._filled += take
            self.spectra += take
            t += take
            if self._filled == self.nint:
                yield self._emit()

    def end_sequence(self) -> Frame | None:
        """Close the sequence: its partial window as a frame (see the class), or ``None``."""
        frame = None
        if self._filled and self._filled >= max(1, math.ceil(self.min_partial * self.nint)):
            self.partial_frames += 1
            frame = self._emit()
        self._discard_partial()
        self.info = None
        return frame

    def _emit(self) -> Frame:
        n = self._filled
        kernels.finalize_mean(self._acc, n, self._out)
        self._acc.fill(0.0)
        tps = self.info.ticks_per_spectrum
        t0 = self.info.time_tag + self._start * tps
        frame = Frame(self._out, self.info, t0, t0 + n * tps, n)
        self._start += n
        self._filled = 0
        self.frames += 1
        return frame

    def _discard_partial(self) -> None:
        if self._filled:
            self.partial_dropped += 1
            self.spectra_dropped += self._filled
            self._start += self._filled
            self._filled = 0
            self._acc.fill(0.0)

    def stats(self) -> dict[str, int]:
        """Counters: frames made, spectra added, partial windows sent and dropped."""
        return {"frames": self.frames, "spectra": self.spectra, "nint": self.nint,
                "partial_frames": self.partial_frames, "partial_dropped": self.partial_dropped,
                "spectra_dropped": self.spectra_dropped}


class Publisher:
    """Binds a ZeroMQ publishing socket and sends frames without ever blocking.

    Receivers connect SUB sockets (any number, coming and going). The socket is an XPUB,
    which peers see as a PUB; it also reports subscriptions (see
    :meth:`wait_for_subscribers`).
    With the default ``nodrop=False`` a subscriber whose queue (``sndhwm`` messages) is full
    loses messages silently, the others are unaffected, and the loss shows as a ``seq`` gap
    at that receiver. With ``nodrop=True`` a full queue makes the send fail for everyone;
    the message is dropped and counted in ``dropped``. ``seq`` counts every frame offered,
    sent or not, so a gap always means loss. ``port=0`` (or an endpoint ending in ``:*``)
    binds an ephemeral port; :attr:`endpoint` is the bound one.
    """

    def __init__(self, addr: str = "127.0.0.1", port: int = 9798, *,
                 endpoint: str | None = None, sndhwm: int = 100, linger: float = 0.1,
                 nodrop: bool = False, beam: int | None = None,
                 context: zmq.Context | None = None):
        if sndhwm < 0:
            raise ValueError(f"sndhwm must be >= 0, got {sndhwm}")
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        try:
            self._sock.setsockopt(zmq.SNDHWM, sndhwm)
            self._sock.setsockopt(zmq.LINGER, max(0, round(linger * 1000)))
            self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)
            self._sock.setsockopt(zmq.XPUB_NODROP, int(nodrop))
            self._sock.bind(endpoint or f"tcp://{addr}:{port}")
        except zmq.ZMQError:
            self._sock.close(0)
            if self._own_context:
                self._ctx.term()
            raise
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sender_id = secrets.token_hex(8)
        self.beam = beam
        self.sndhwm = sndhwm
        self.nodrop = nodrop
        self.seq = 0
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.bytes_sent = 0
        self.subscriptions = 0
        self.closed = False
        self._rlog = RateLimitedLog(log)

    def send(self, frame: Frame, timestamp: float | None = None) -> bool:
        """Send one frame (header built by :func:`sunspec.protocol.make_header`).

        Returns True if it was queued; False if dropped (full queue) or failed (counted).
        """
        info = frame.info
        header = protocol.make_header(
            nbeam=info.nbeam, nchan=info.nchan, npol=info.npol, time_tag=info.time_tag,
            t_end_tag=frame.t_end_tag, timestamp=time.time() if timestamp is None else timestamp,
            sender_id=self.sender_id, seq=self.seq, beam=self.beam,
            t_start_tag=frame.t_start_tag, nint=frame.nint, **info.metadata(), encoding="raw",
        )
        return self.send_parts(protocol.encode(frame.data, header))

    def send_parts(self, parts: list) -> bool:
        """Send an encoded message (frames as :func:`sunspec.protocol.encode` makes them)."""
        self.seq += 1
        if self.closed:
            self.errors += 1
            return False
        self._drain_subscriptions()
        try:
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
        except zmq.Again:
            self.dropped += 1
            self._rlog.log(logging.WARNING, "dropped",
                           "send queue full on %s: dropped message (%d so far)",
                           self.endpoint, self.dropped)
            return False
        except zmq.ZMQError as exc:
            self.errors += 1
            self._rlog.log(logging.ERROR, "error", "send on %s failed: %s", self.endpoint, exc)
            return False
        self.sent += 1
        self.bytes_sent += sum(memoryview(p).nbytes for p in parts)
        return True

    def _drain_subscriptions(self) -> None:
        sock = self._sock
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            if sock.recv(zmq.NOBLOCK)[:1] == b"\x01":
                self.subscriptions += 1

    def wait_for_subscribers(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s until ``n`` subscriptions have arrived since the start,
        so that messages sent next reach those subscribers. Call from the sending thread."""
        deadline = time.monotonic() + timeout
        self._drain_subscriptions()
        while self.subscriptions < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(left * 1000):
                return False
            self._drain_subscriptions()
        return True

    def stats(self) -> dict[str, Any]:
        """Counters since start: sent, dropped, errors, bytes_sent, seq, subscriptions."""
        return {"endpoint": self.endpoint, "sender_id": self.sender_id, "seq": self.seq,
                "sent": self.sent, "dropped": self.dropped, "errors": self.errors,
                "bytes_sent": self.bytes_sent, "subscriptions": self.subscriptions}

    def close(self) -> None:
        """Close the socket (pending messages get up to ``linger`` s) and its own context."""
        if self.closed:
            return
        self.closed = True
        self._sock.close()
        if self._own_context:
            self._ctx.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
