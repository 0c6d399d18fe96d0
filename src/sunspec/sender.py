"""Sending side: :class:`Averager` turns recorder gulps into frames, :class:`Publisher` puts
frames on the wire.

The recorder's Bifrost op (``recorder/avg_streaming_op.py``) and the simulator
(:mod:`sunspec.sim`) both use exactly this path::

    averager.begin_sequence(ring_header)
    for start, gulp in gulps:               # float32 (ntime, nbeam, nchan, npol), read-only is fine
        for frame in averager.add(gulp, start):  # zero or more frames, float64-accurate means
            publisher.send(frame)           # copies into a queue slot: no ZeroMQ call, no wait
    final = averager.end_sequence()         # the partial window at the sequence's end
    if final is not None:
        publisher.send(final)

Times are integers throughout: a frame's window ``[t_start_tag, t_end_tag)`` is the
sequence's ``time_tag`` plus ``navg * 8192`` ticks per spectrum before it (``start``, the
gulp's first spectrum from the sequence start, is optional: it matters when spectra were
skipped). :class:`Publisher` sends from a thread of its own, so the thread that feeds it
never waits on the network or on peers.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from . import kernels, protocol
from ._log import RateLimitedLog
from ._xpub import XPubSocket
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


@dataclass(frozen=True, slots=True, eq=False)
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

    Windows are counted from the sequence start and may span gulps. A gulp may say where
    it starts (``add(gulp, start=...)``, in spectra from the sequence start): when that is
    later than the spectrum expected next (a reader joined late or was overrun), the
    unfinished window is dropped and counted, the spectra in between are counted as
    skipped (``gaps``, ``spectra_skipped``), and the next window starts at ``start``, so
    every frame's window names the spectra it holds. At the sequence's end
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
        self.gaps = 0
        self.spectra_skipped = 0
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

    @property
    def next_spectrum(self) -> int:
        """Index (from the sequence start) of the spectrum expected next."""
        return self._start + self._filled

    def add(self, gulp: Any, start: int | None = None) -> Iterator[Frame]:
        """Add a gulp (float32 (ntime, nbeam, nchan, npol), C-contiguous, may be read-only;
        it is not copied) and yield each frame it completes. ``start``: index of its first
        spectrum from the sequence start (default: right after the previous gulp); it may
        not be earlier than :attr:`next_spectrum`. Consume the iterator fully before adding
        the next gulp; each frame's ``data`` is valid until the next one."""
        info = self.info
        if info is None:
            raise RuntimeError("begin_sequence() must be called before add()")
        if not isinstance(gulp, np.ndarray):
            gulp = np.asarray(gulp)
        if gulp.ndim != 4 or gulp.shape[1:] != info.frame_shape:
            raise ValueError(f"gulp must have shape (ntime, {', '.join(map(str, info.frame_shape))}"
                             f"), got {gulp.shape}")
        if start is not None and start != self.next_spectrum:
            if start < self.next_spectrum:
                raise ValueError(f"gulp starts at spectrum {start}, before the next expected "
                                 f"({self.next_spectrum})")
            self.gaps += 1
            self.spectra_skipped += start - self.next_spectrum
            self._discard_partial()
            self._start = start
        return self._frames(gulp)

    def _frames(self, gulp: np.ndarray) -> Iterator[Frame]:
        assert self._acc is not None
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
        assert self.info is not None and self._acc is not None and self._out is not None
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
            assert self._acc is not None
            self.partial_dropped += 1
            self.spectra_dropped += self._filled
            self._start += self._filled
            self._filled = 0
            self._acc.fill(0.0)

    def status(self) -> dict[str, int]:
        """Counters: frames made, spectra added, partial windows sent and dropped, gaps
        and the spectra they skipped."""
        return {"frames": self.frames, "spectra": self.spectra, "nint": self.nint,
                "partial_frames": self.partial_frames, "partial_dropped": self.partial_dropped,
                "spectra_dropped": self.spectra_dropped, "gaps": self.gaps,
                "spectra_skipped": self.spectra_skipped}


class _Slot:
    """One queued message: a frame (data copied into a buffer kept for reuse) or raw parts."""

    __slots__ = ("beam", "data", "info", "nint", "parts", "seq", "t_end_tag", "t_start_tag",
                 "timestamp")

    def __init__(self) -> None:
        self.data: np.ndarray | None = None
        self.info: SequenceInfo | None = None
        self.t_start_tag = self.t_end_tag = self.nint = self.seq = 0
        self.timestamp = 0.0
        self.beam: int | None = None
        self.parts: list[bytes] | None = None


class _Outbox:
    """What the caller's thread and the publishing thread share: a bounded queue of
    preallocated slots and the counters, under one lock."""

    def __init__(self, nslots: int, block: bool, sender_id: str, end_message: bool):
        self.sender_id = sender_id
        self.end_message = end_message
        self.cond = threading.Condition()
        self.free = [_Slot() for _ in range(nslots)]
        self.ready: deque[_Slot] = deque()
        self.block = block
        self.closing = False
        self.busy = False  # the publishing thread holds a slot
        self.seq = 0
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.bytes_sent = 0
        self.end_sent = False
        self.socket_status: dict[str, int] = {}


class Publisher:
    """Binds a ZeroMQ publishing socket; frames are sent by a thread of its own.

    :meth:`send` makes no ZeroMQ call: it copies the frame into one of ``queue``
    preallocated slots and returns; a publishing thread takes slots in order, builds the
    header and sends. Receivers connect SUB sockets (any number, coming and going); the
    socket (:class:`sunspec._xpub.XPubSocket`, an XPUB that peers see as a PUB) takes
    only the protocol's subscriptions and bounds what peers can make it hold.

    Default (``block=False``, ``nodrop=False``, the recorder and the simulator): ``send``
    never waits; with every slot queued the oldest queued frame is dropped (counted in
    ``dropped``); a subscriber whose socket queue (``sndhwm`` messages) is full loses
    messages, the others do not. ``block=True``: ``send`` waits for a free slot instead.
    ``nodrop=True``: the thread waits for a slow subscriber instead of dropping for it.
    Replay uses both: a slow receiver makes it wait, nothing is lost. ``seq`` counts every
    frame offered, queued or dropped, so a gap always means loss. ``port=0`` (or an
    endpoint ending in ``:*``) binds an ephemeral port; :attr:`endpoint` is the bound one.

    On :meth:`close`, once the queue is sent, the publisher sends the end-of-sequence
    message of its ``sender_id`` (docs/PROTOCOL.md): the seq its next frame would have had
    and how many it dropped, so that receivers count what they missed at the tail. Give
    ``end_message=False`` when :meth:`send_parts` messages carry another sender's id.
    """

    def __init__(self, addr: str = "127.0.0.1", port: int = 9798, *,
                 endpoint: str | None = None, sndhwm: int = 100, linger: float = 0.1,
                 queue: int = 8, block: bool = False, nodrop: bool = False,
                 beam: int | None = None, context: zmq.Context | None = None,
                 max_foreign: int = 10_000, end_message: bool = True):
        if sndhwm < 0:
            raise ValueError(f"sndhwm must be >= 0, got {sndhwm}")
        if queue < 1:
            raise ValueError(f"queue must be >= 1, got {queue}")
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        try:
            xsock = XPubSocket(self._ctx, endpoint or f"tcp://{addr}:{port}", sndhwm=sndhwm,
                               linger_ms=max(0, round(linger * 1000)), nodrop=nodrop,
                               max_foreign=max_foreign)
        except zmq.ZMQError:
            if self._own_context:
                self._ctx.term()
            raise
        self.endpoint: str = xsock.endpoint
        self.sender_id = secrets.token_hex(8)
        self.beam = beam
        self.sndhwm = sndhwm
        self.nodrop = nodrop
        self._out = _Outbox(queue, block, self.sender_id, end_message)
        self._closed = False
        self._rlog = RateLimitedLog(log)
        own = self._ctx if self._own_context else None
        self._thread = threading.Thread(target=_publish, args=(self._out, xsock, own),
                                        name=f"sunspec-publisher {self.endpoint}", daemon=True)
        self._thread.start()

    # --- the caller's side: no ZeroMQ calls -----------------------------------------------

    def send(self, frame: Frame, timestamp: float | None = None,
             timeout: float | None = None) -> bool:
        """Queue one frame (header built by :func:`sunspec.protocol.make_header`).

        Returns True if queued (it may still be dropped later for a newer frame, counted),
        False if the publisher is closed or, with ``block=True``, no slot freed up within
        ``timeout`` s (then nothing was queued and ``seq`` is unchanged).
        """
        slot = self._take_slot(timeout)
        if slot is None:
            return False
        data = frame.data
        if slot.data is None or slot.data.shape != data.shape:
            slot.data = np.empty(data.shape, np.float32)
        np.copyto(slot.data, data)
        slot.info, slot.nint = frame.info, frame.nint
        slot.t_start_tag, slot.t_end_tag = frame.t_start_tag, frame.t_end_tag
        slot.timestamp = time.time() if timestamp is None else timestamp
        slot.beam = self.beam
        slot.parts = None
        self._queue(slot)
        return True

    def send_parts(self, parts: Sequence[bytes | memoryview], timeout: float | None = None
                   ) -> bool:
        """Queue a message of hand-made frames, sent as they are (they are copied); as
        :meth:`send` otherwise."""
        slot = self._take_slot(timeout)
        if slot is None:
            return False
        slot.parts = [bytes(p) for p in parts]
        self._queue(slot)
        return True

    def _take_slot(self, timeout: float | None) -> _Slot | None:
        out = self._out
        with out.cond:
            if out.closing:
                out.errors += 1
                return None
            if out.block:
                if not out.cond.wait_for(lambda: out.free or out.closing, timeout):
                    return None
                if out.closing:
                    out.errors += 1
                    return None
            elif not out.free:
                out.free.append(out.ready.popleft())
                out.dropped += 1
                self._rlog.log(logging.WARNING, "dropped",
                               "%s: publishing thread behind: dropped a queued message "
                               "(%d so far)", self.endpoint, out.dropped)
            slot = out.free.pop()
            slot.seq = out.seq
            out.seq += 1
            # the slot is ours: nobody else sees it until _queue
            return slot

    def _queue(self, slot: _Slot) -> None:
        out = self._out
        with out.cond:
            out.ready.append(slot)
            out.cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued message has been handed to the socket."""
        out = self._out
        with out.cond:
            return out.cond.wait_for(lambda: not (out.ready or out.busy) or out.closing,
                                     timeout) and not out.ready

    def wait_for_subscribers(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s until ``n`` subscriptions have been accepted since the
        start, so that messages queued next reach those subscribers."""
        out = self._out
        with out.cond:
            return out.cond.wait_for(
                lambda: out.socket_status.get("subscriptions", 0) >= n, timeout)

    @property
    def seq(self) -> int:
        return self._out.seq

    @property
    def sent(self) -> int:
        return self._out.sent

    @property
    def dropped(self) -> int:
        return self._out.dropped

    @property
    def errors(self) -> int:
        return self._out.errors

    @property
    def subscriptions(self) -> int:
        return self._out.socket_status.get("subscriptions", 0)

    def status(self) -> dict[str, Any]:
        """Counters since start: seq (messages offered), sent, dropped (queue full),
        errors, bytes_sent, queued, end_sent (the end-of-sequence message, on close); and
        the socket's: subscriptions (accepted since the
        start), subscribed (held now), refused, foreign (refused ones peers still hold),
        connections, disconnects."""
        out = self._out
        with out.cond:
            return {"endpoint": self.endpoint, "sender_id": self.sender_id, "seq": out.seq,
                    "sent": out.sent, "dropped": out.dropped, "errors": out.errors,
                    "bytes_sent": out.bytes_sent, "queued": len(out.ready),
                    "end_sent": out.end_sent,
                    **out.socket_status}

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking frames, let the thread send what is queued (the socket's ``linger``
        applies to what it cannot), close the socket and the publisher's own context."""
        if self._closed:
            return
        self._closed = True
        out = self._out
        with out.cond:
            out.closing = True
            out.cond.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"unclosed Publisher on {self.endpoint}", ResourceWarning,
                          stacklevel=2, source=self)
            with self._out.cond:  # the thread closes its socket and ends
                self._out.closing = True
                self._out.cond.notify_all()


def _encode(slot: _Slot, sender_id: str) -> list:
    info = slot.info
    assert info is not None and slot.data is not None
    header = protocol.make_header(
        nbeam=info.nbeam, nchan=info.nchan, npol=info.npol, time_tag=info.time_tag,
        t_end_tag=slot.t_end_tag, timestamp=slot.timestamp, sender_id=sender_id, seq=slot.seq,
        beam=slot.beam, t_start_tag=slot.t_start_tag, nint=slot.nint, **info.metadata(),
        encoding="raw")
    return protocol.encode(slot.data, header)


def _send_end(out: _Outbox, xsock: XPubSocket, rlog: RateLimitedLog) -> None:
    """The end-of-sequence message (best effort: a subscriber with a full queue misses it,
    as it would a frame; the socket's linger gives it time to leave)."""
    try:
        out.end_sent = xsock.send(protocol.encode_end(out.sender_id, out.seq, out.dropped))
    except zmq.ZMQError as exc:
        rlog.log(logging.ERROR, "error", "end of sequence on %s failed: %s", xsock.endpoint, exc)
    if out.end_sent:
        log.info("%s: sender %s ended its sequence at seq %d", xsock.endpoint, out.sender_id,
                 out.seq)


def _publish(out: _Outbox, xsock: XPubSocket, own_ctx: zmq.Context | None) -> None:
    """The publishing thread, the only one that touches the socket (and terminates the
    publisher's own context): handles subscriptions and sends queued slots in order."""
    rlog = RateLimitedLog(log)
    try:
        while True:
            accepted = xsock.service()
            with out.cond:
                out.socket_status = xsock.status()
                if accepted:
                    out.cond.notify_all()
                if not out.ready:
                    if out.closing:
                        if out.end_message and out.seq:
                            _send_end(out, xsock, rlog)
                        return
                    out.cond.wait(0.01)
                    continue
                slot = out.ready.popleft()
                out.busy = True
            ok, nbytes = False, 0
            try:
                parts = slot.parts if slot.parts is not None else _encode(slot, out.sender_id)
                nbytes = sum(memoryview(p).nbytes for p in parts)
                ok = xsock.send(parts)
                while not ok and not out.closing:  # nodrop: a subscriber's queue is full
                    xsock.service()
                    xsock.wait(2)
                    ok = xsock.send(parts)
            except (zmq.ZMQError, ValueError, TypeError) as exc:
                rlog.log(logging.ERROR, "error", "send on %s failed: %s", xsock.endpoint, exc)
            with out.cond:
                if ok:
                    out.sent += 1
                    out.bytes_sent += nbytes
                else:
                    out.errors += 1
                out.free.append(slot)
                out.busy = False
                out.cond.notify_all()
    except Exception:  # pragma: no cover - a bug; the caller sees errors and a dead thread
        log.exception("publishing thread on %s failed", xsock.endpoint)
        with out.cond:
            out.closing = True
            out.cond.notify_all()
    finally:
        xsock.close()
        if own_ctx is not None:
            own_ctx.term()
