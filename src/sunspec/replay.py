"""Replay archive files as a live stream of version 2 messages with their original times.

An archived row is already reduced: one product (``product``), ``factor`` recorder channels
averaged. Replay publishes each row as a frame of shape (1, nfreq * factor, 1): every value
repeated ``factor`` times, so the header's ``chan0`` and ``chan_bw`` stay those of the
recorder's channels (``chan0`` is an integer and could not describe the averaged channels),
``npol`` = 1 and ``pols`` = the product's name. A receiver with ``product='XX'`` (or pol 0)
and ``factor`` = the archive's factor therefore rebuilds the archived rows exactly (the mean
of identical float32 values is exact), with the same times and frequencies.

Pacing follows data time divided by ``speed`` (0: as fast as receivers take them); gaps in
the data longer than ``max_gap`` seconds are skipped rather than waited out. The socket is an
XPUB, which receivers see as a PUB; it lets replay wait for a subscriber, and with
``XPUB_NODROP`` a slow receiver makes replay wait instead of losing frames (a past day has
no deadline; the telescope's sender, by contrast, drops).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

from . import protocol
from .clock import FS

if TYPE_CHECKING:
    from .archive import ArchiveData

__all__ = ["Replayer", "frames"]

log = logging.getLogger(__name__)


def frames(rows: ArchiveData) -> Iterator[tuple[int, np.ndarray]]:
    """``(end_tag, frame)`` for each archived row; the frame (1, nfreq * factor, 1) float32
    is one buffer, overwritten by the next step."""
    factor = rows.meta.factor
    nfreq = rows.data.shape[1]
    frame = np.empty((1, nfreq * factor, 1), np.float32)
    grid = frame.reshape(nfreq, factor)
    for tag, row in zip(rows.end_tag.tolist(), rows.data, strict=True):
        grid[:] = row[:, np.newaxis]
        yield tag, frame


def _v2_keys(rows: ArchiveData, nchan: int) -> dict[str, Any]:
    """Version 2 header keys of a replayed file; ``chan0`` is the one its frequencies imply."""
    m = rows.meta
    keys: dict[str, Any] = {"beam": m.beam, "nint": m.nint, "navg": m.navg, "chan_bw": m.chan_bw,
                            "pols": m.product, "encoding": "raw"}
    if rows.freqs_hz is not None:
        chan0 = round(rows.freqs_hz[0] / m.chan_bw - (m.factor - 1) / 2)
        keys.update(chan0=chan0, cfreq0=chan0 * m.chan_bw, bw=nchan * m.chan_bw)
    return keys


class Replayer:
    """Publish archive files on ``endpoint`` (bound), in time order."""

    def __init__(self, paths: Sequence[str | Path], endpoint: str = "tcp://127.0.0.1:9798", *,
                 speed: float = 1.0, max_gap: float = 10.0, sndhwm: int = 1000,
                 context: zmq.Context | None = None):
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        from .archive import read_archive  # needs sunspec[archive]

        archives = [read_archive(p) for p in paths]
        self.archives = sorted((a for a in archives if len(a)), key=lambda a: int(a.end_tag[0]))
        self.speed = speed
        self.max_gap = max_gap
        self.sender_id = secrets.token_hex(8)
        self.sent = 0
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue makes replay wait, not drop
        self._sock.setsockopt(zmq.LINGER, 1000)
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def wait_subscriber(self, timeout: float) -> bool:
        """Wait until a receiver has subscribed; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._sock.poll(max(deadline - time.monotonic(), 0.0) * 1000):
            if self._sock.recv()[:1] == b"\x01":
                return True
        return False

    def run(self, stop: threading.Event | None = None) -> int:
        """Publish every row (until ``stop`` is set); returns the number of messages sent."""
        stop = stop or threading.Event()
        clock_start = time.monotonic()
        data_start: int | None = None
        skipped = 0.0  # data seconds of gaps not waited out
        prev: int | None = None
        for rows in self.archives:
            nchan = rows.data.shape[1] * rows.meta.factor
            keys = _v2_keys(rows, nchan)
            window = rows.meta.window_ticks
            seq_start = int(rows.end_tag[0]) - (window or 0)
            for tag, frame in frames(rows):
                if stop.is_set():
                    return self.sent
                if data_start is None:
                    data_start = tag
                if prev is not None and (tag - prev) / FS > self.max_gap:
                    skipped += (tag - prev) / FS
                prev = tag
                if self.speed:
                    due = clock_start + ((tag - data_start) / FS - skipped) / self.speed
                    if stop.wait(max(due - time.monotonic(), 0.0)):
                        return self.sent
                header = protocol.make_header(
                    nbeam=1, nchan=nchan, npol=1, time_tag=seq_start, t_end_tag=tag,
                    sender_id=self.sender_id, seq=self.sent,
                    t_start_tag=tag - window if window else None, **keys)
                if not self._send(protocol.encode(frame, header), stop):
                    return self.sent
                self.sent += 1
        return self.sent

    def _send(self, parts: list, stop: threading.Event) -> bool:
        """Send, waiting while a receiver's queue is full; False if ``stop`` was set."""
        while True:
            try:
                self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
                return True
            except zmq.Again:
                if stop.wait(0.005):
                    return False

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

