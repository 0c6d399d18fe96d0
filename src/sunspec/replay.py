"""Replay spectrum files as a live stream of version 2 messages with their original times.

Any file :func:`sunspec.readers.open_spectra` reads is replayed: sunspec's own archives,
the OVRO-LWA recorder's power-beam HDF5 files and e-CALLISTO FITS files. Files are read a
chunk at a time (memory is bounded by a chunk, not by the file) and played in time order.

How a file's frequency axis goes on the wire:

- on the recorder's channel grid (``chan0`` known: sunspec archives, recorder files), as
  ``chan0``/``chan_bw``: a row averaged over ``factor`` recorder channels is sent with each
  value repeated ``factor`` times, so ``chan0`` stays an integer and a receiver with the same
  ``factor`` rebuilds the row exactly (the mean of identical float32 values is exact);
- any other axis (e-CALLISTO's uneven, descending channels) as the explicit ``freqs_hz``
  list, without ``chan0``/``chan_bw``/``cfreq0``, so older receivers show channel indices
  rather than wrong MHz.

Every header says ``replay: true`` and names its ``source`` file, the data's ``unit``
(``linear``, ``dB`` or ``digits`` with ``db_per_digit``), ``instrument`` and ``station``.

Fine-grained files (the recorder's ~1 ms spectra) are averaged into frames of ``interval``
seconds (default :data:`DEFAULT_INTERVAL`) through the :class:`~sunspec.sender.Averager`
the recorder uses; coarser files are sent a row per frame. Pacing follows data time divided
by ``speed`` (0: as fast as receivers take them); gaps longer than ``max_gap`` seconds are
skipped rather than waited out; ``loop`` plays the files again and again (the data's times
repeat; ``seq`` goes on). Replay publishes through a blocking, no-drop
:class:`~sunspec.sender.Publisher`: a slow receiver makes it wait (a past day has no
deadline; the telescope's sender, by contrast, drops).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from . import protocol
from .clock import CHAN_BW, FS, ticks_per_spectrum
from .sender import Averager, Publisher, SequenceInfo

if TYPE_CHECKING:
    from .readers import SpectrumReader, TimeLike

__all__ = ["DEFAULT_INTERVAL", "Replayer"]

log = logging.getLogger(__name__)

#: seconds per frame for files finer than :data:`FINE_S` (the live cadence)
DEFAULT_INTERVAL = 0.5
#: rows closer than this (s) are averaged into frames by default
FINE_S = 0.1
#: rows read from a file at a time
_CHUNK = 1024


@dataclass
class _Source:
    """One open file and how its rows go on the wire."""

    reader: SpectrumReader
    first_tag: int
    keys: dict[str, Any]  # version 2 header keys of every frame
    repeat: int  # each value sent this many times (recorder channel grid)
    nint: int | None  # recorder spectra per frame, when averaging


def _axis_keys(reader: SpectrumReader) -> tuple[dict[str, Any], int]:
    """Header keys of the file's frequency axis, and the channel repeat it needs."""
    freqs = reader.freqs_hz
    if reader.chan0 is not None and freqs is not None:
        meta = reader.meta
        chan_bw = float(meta.chan_bw) if meta is not None else CHAN_BW
        nchan = reader.nchan * reader.factor
        return ({"chan0": int(reader.chan0), "chan_bw": chan_bw,
                 "cfreq0": reader.chan0 * chan_bw, "bw": nchan * chan_bw}, reader.factor)
    if freqs is not None:
        return {"freqs_hz": [float(f) for f in freqs]}, 1
    return {}, 1


def _file_keys(reader: SpectrumReader) -> dict[str, Any]:
    meta = reader.meta
    keys: dict[str, Any] = {
        "replay": True, "source": reader.path.name.encode("ascii", "replace").decode(),
        "unit": reader.unit, "db_per_digit": reader.db_per_digit,
        "instrument": reader.instrument or None, "station": reader.station or None,
        "pols": ",".join(reader.pols), "navg": reader.navg, "encoding": "raw",
    }
    if meta is not None:
        keys.update(beam=meta.beam, nint=meta.nint)
    return keys


class Replayer:
    """Publish spectrum files on ``endpoint`` (bound), in time order.

    ``interval`` (s) averages fine-grained files into frames (default
    :data:`DEFAULT_INTERVAL` for files with rows closer than :data:`FINE_S`; it needs files
    of recorder spectra, whose ``navg`` is known); ``start``/``stop`` (tags or datetimes)
    keep the rows whose windows end in (start, stop]; ``loop`` replays until stopped.
    Raises :class:`sunspec.readers.UnsupportedFile` (a ValueError) for a file no reader
    recognises, OSError for one that cannot be opened, ``zmq.ZMQError`` if binding fails.
    """

    def __init__(self, paths: Sequence[str | Path], endpoint: str = "tcp://127.0.0.1:9798", *,
                 speed: float = 1.0, max_gap: float = 10.0, interval: float | None = None,
                 loop: bool = False, start: TimeLike | None = None,
                 stop: TimeLike | None = None, sndhwm: int = 1000,
                 context: zmq.Context | None = None, **reader_options: Any):
        from .readers import open_spectra  # needs sunspec[archive]

        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if interval is not None and not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.speed = speed
        self.max_gap = max_gap
        self.interval = interval
        self.loop = loop
        self.start = start
        self.stop = stop
        self.sent = 0
        self._sources: list[_Source] = []
        try:
            for path in paths:
                reader = open_spectra(path, **reader_options)
                self._sources.append(self._source(reader))
        except BaseException:
            self._close_readers()
            raise
        self._sources = sorted((s for s in self._sources if s.first_tag >= 0),
                               key=lambda s: s.first_tag)
        try:
            self._pub = Publisher(endpoint=endpoint, sndhwm=sndhwm, linger=1.0, block=True,
                                  nodrop=True, context=context)
        except BaseException:
            self._close_readers()
            raise
        self.endpoint = self._pub.endpoint
        self.sender_id = self._pub.sender_id

    def _source(self, reader: SpectrumReader) -> _Source:
        first = next(reader.chunks(1, self.start, self.stop), None)
        axis, repeat = _axis_keys(reader)
        keys = {**_file_keys(reader), **axis}
        interval = self.interval
        fine = reader.time_resolution_s is not None and reader.time_resolution_s < FINE_S
        if interval is None and fine and reader.navg:
            interval = DEFAULT_INTERVAL
        nint = None
        if interval is not None:
            if not reader.navg or reader.window_ticks is None:
                raise ValueError(f"{reader.path}: averaging in time (--interval) needs recorder "
                                 "spectra (navg known); this file has none")
            nint = max(1, round(interval * FS / ticks_per_spectrum(reader.navg)))
        log.debug("%s: %s, %d rows, %s%s", reader.path.name, reader.source_format, reader.nrows,
                 "explicit axis" if "freqs_hz" in axis else "recorder channel grid",
                 f", {nint} spectra per frame" if nint else "")
        return _Source(reader, -1 if first is None else int(first.end_tag[0]), keys, repeat,
                       nint)

    @property
    def readers(self) -> list[SpectrumReader]:
        """The open files, in the order they are played."""
        return [s.reader for s in self._sources]

    def wait_subscriber(self, timeout: float) -> bool:
        """Wait until a receiver has subscribed; False after ``timeout`` seconds."""
        return self._pub.wait_for_subscribers(1, timeout)

    # --- playing ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> int:
        """Publish every row (until ``stop`` is set); returns the number of messages sent."""
        stop = stop or threading.Event()
        while not stop.is_set():
            clock_start = time.monotonic()
            data_start: int | None = None
            skipped = 0.0  # data seconds of gaps not waited out
            prev: int | None = None
            for source in self._sources:
                for end_tag, start_tag, frame, nint in self._frames(source):
                    if stop.is_set():
                        return self.sent
                    if data_start is None:
                        data_start = end_tag
                    if prev is not None and (end_tag - prev) / FS > self.max_gap:
                        skipped += (end_tag - prev) / FS
                    prev = end_tag
                    if self.speed:
                        due = clock_start + ((end_tag - data_start) / FS - skipped) / self.speed
                        if stop.wait(max(due - time.monotonic(), 0.0)):
                            return self.sent
                    header = protocol.make_header(
                        nbeam=1, nchan=frame.shape[1], npol=frame.shape[2],
                        time_tag=source.first_tag, t_end_tag=end_tag,
                        sender_id=self.sender_id, seq=self.sent, t_start_tag=start_tag,
                        **{**source.keys, **({"nint": nint} if nint else {})})
                    if not self._send(protocol.encode(frame, header), stop):
                        return self.sent
                    self.sent += 1
            if not self.loop:
                break
        while not self._pub.flush(0.1) and not stop.is_set() and not self._pub.closed:
            pass  # a slow receiver is still taking the last messages
        return self.sent

    def _frames(self, source: _Source
                ) -> Iterator[tuple[int, int | None, np.ndarray, int | None]]:
        """(end tag, start tag, frame (1, nchan, npol), nint) for each frame of a file; the
        frame buffer is reused."""
        reader = source.reader
        chunks = reader.chunks(_CHUNK, self.start, self.stop)
        if source.nint is None:
            for chunk in chunks:
                starts = chunk.start_tag
                for i, tag in enumerate(chunk.end_tag.tolist()):
                    row = chunk.data[i]
                    if source.repeat > 1:
                        row = np.repeat(row, source.repeat, axis=0)
                    yield (tag, None if starts is None else int(starts[i]),
                           np.ascontiguousarray(row[np.newaxis], np.float32), None)
            return
        assert reader.navg is not None and reader.window_ticks is not None
        tps = ticks_per_spectrum(reader.navg)
        t0 = source.first_tag - reader.window_ticks
        info = SequenceInfo(time_tag=t0, navg=reader.navg, nbeam=1,
                            nchan=reader.nchan * source.repeat, npol=reader.npol)
        averager = Averager(source.nint, min_partial=0.5)
        averager.begin_sequence(info)
        for chunk in chunks:
            data = chunk.data if source.repeat == 1 else np.repeat(chunk.data, source.repeat, 1)
            first = (int(chunk.end_tag[0]) - reader.window_ticks - t0) // tps
            gulp = np.ascontiguousarray(data[:, np.newaxis], np.float32)
            for f in averager.add(gulp, start=max(first, averager.next_spectrum)):
                yield f.t_end_tag, f.t_start_tag, f.data, f.nint
        last = averager.end_sequence()
        if last is not None:
            yield last.t_end_tag, last.t_start_tag, last.data, last.nint

    def _send(self, parts: list, stop: threading.Event) -> bool:
        """Queue, waiting while the publisher is behind; False if ``stop`` was set."""
        while not self._pub.send_parts(parts, timeout=0.05):
            if stop.is_set() or self._pub.closed:
                return False
        return True

    # --- life cycle ---------------------------------------------------------------------------
    def _close_readers(self) -> None:
        for s in self._sources:
            s.reader.close()

    @property
    def closed(self) -> bool:
        return self._pub.closed

    def close(self) -> None:
        """Send what is queued (up to the socket's 1 s linger), close the files and socket."""
        self._pub.close()
        self._close_readers()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
