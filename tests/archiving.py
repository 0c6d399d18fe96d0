"""Test helpers for the archive: a stand-in receiver around a real RingBuffer."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np

from sunspec.clock import FS, channel_freqs_hz, datetime_to_tag
from sunspec.ring import RingBuffer
from sunspec.source import wait_for_ring

#: 20:14:50 UTC: ten seconds before a 900 s span edge
T_EDGE = datetime_to_tag(dt.datetime(2025, 6, 1, 20, 15, 0))
STREAM_INFO = {"product": "XX", "factor": 2, "chan0": 600, "chan_bw": FS / 8192, "navg": 24,
               "nint": 512, "beam": 2, "sender_id": "cafe", "proto": 2}


class FakeReceiver:
    """A :class:`sunspec.source.StreamSource` around a real RingBuffer, filled by the test."""

    name = "fake"

    def __init__(self, nrows: int = 1000, nfreq: int = 64, info: dict | None = None):
        self.stream_info = dict(STREAM_INFO if info is None else info)
        self.ring: RingBuffer | None = self.new_ring(nrows, nfreq)

    def wait_for_ring(self, timeout: float | None = None) -> RingBuffer | None:
        return wait_for_ring(self, timeout)

    def new_ring(self, nrows: int, nfreq: int) -> RingBuffer:
        f = self.stream_info["factor"]
        return RingBuffer(nrows, nfreq,
                          freqs_hz=channel_freqs_hz(self.stream_info["chan0"], nfreq * f, f))

    def push(self, data: np.ndarray, tags, ring: RingBuffer | None = None) -> None:
        ring = ring or self.ring
        for row, tag in zip(data, tags, strict=True):
            ring.data[ring.spare_row] = row
            ring.commit(int(tag), int(tag) / FS, -1, time.time())


def rows_for(n: int, nfreq: int, t0: int, step_s: float = 0.5, seed: int = 0):
    """``n`` random rows and window-end tags every ``step_s`` from ``t0``."""
    rng = np.random.default_rng(seed)
    data = rng.random((n, nfreq), dtype=np.float32) * 1e6
    tags = t0 + np.arange(n, dtype=np.int64) * round(step_s * FS)
    return data, tags
