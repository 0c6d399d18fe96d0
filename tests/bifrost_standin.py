"""A STAND-IN for a Bifrost ring, for tests only: it is not Bifrost and shares no code with it.

It implements exactly the reading protocol the recorder's ops use (see the Bifrost facts in
the design notes):

- ``ring.read(guarantee=True)`` yields sequences in order;
- a sequence has ``.header``, a read-only ``np.uint8`` array of the header's JSON bytes, and
  ``.time_tag``, ``.name``;
- ``seq.read(span_size)`` yields spans of ``span_size`` bytes, and a short final span when
  the sequence's data end mid-span; a span has ``.size`` (bytes available), ``.offset`` and
  ``.data_view(dtype)``, a read-only view of shape ``(1, size // itemsize)`` (Bifrost's
  nringlet axis);
- a span is held until the consumer advances the generator (or closes it), as Bifrost
  releases it on leaving its ``with`` block.

A sequence may be given ``skips`` (``{span number: bytes}``) to play a reader that joined
late or was overrun: span ``k`` is then handed out that many bytes later than it was asked
for (its ``offset`` says so), with the requested size, and the next request is made where
the reader asked plus one span, as Bifrost's ``ReadSequence.read`` does (so a span after a
skip may overlap the previous one). ``{0: n}`` is a late join.

For tests it also records how long each span was held (``ring.holds``, seconds) and, when a
span is released, overwrites its bytes with NaN, as a writer reusing the ring would, so a
consumer that keeps data past the release is caught. ``span_interval`` makes each span wait
that long before it is yielded (a writer producing data in real time).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np


class StandinSpan:
    def __init__(self, data: np.ndarray, offset: int):
        self._data = data  # writable uint8 bytes owned by the ring
        self.size = data.nbytes
        self.offset = offset

    def data_view(self, dtype=np.uint8) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        assert self.size % itemsize == 0
        view = self._data.view(dtype).reshape(1, self.size // itemsize)
        view.flags.writeable = False
        return view


class StandinSequence:
    def __init__(self, ring: StandinRing, header: dict, gulps: Iterable[np.ndarray],
                 skips: dict[int, int] | None = None):
        self.ring = ring
        self.skips = dict(skips or {})
        self.time_tag = int(header.get("time_tag", -1))
        self.name = str(self.time_tag)
        header_bytes = np.frombuffer(json.dumps(header).encode("ascii"), np.uint8).copy()
        header_bytes.flags.writeable = False
        self.header = header_bytes
        self._gulps = iter(gulps)

    def read(self, span_size: int) -> Iterator[StandinSpan]:
        pending = bytearray()  # the sequence's bytes from offset `base` on
        base = 0
        requested = 0
        exhausted = False
        k = 0
        while True:
            offset = requested + self.skips.get(k, 0)
            while base + len(pending) < offset + span_size and not exhausted:
                try:
                    pending += np.ascontiguousarray(next(self._gulps), np.float32).tobytes()
                except StopIteration:
                    exhausted = True
            n = min(span_size, base + len(pending) - offset)
            if n <= 0:
                return
            data = np.frombuffer(bytes(pending[offset - base:offset - base + n]), np.uint8).copy()
            if self.ring.span_interval:
                time.sleep(self.ring.span_interval)
            span = StandinSpan(data, offset)
            t0 = time.perf_counter()
            try:
                yield span
            finally:
                self.ring.holds.append(time.perf_counter() - t0)
                data.view(np.uint8)[:] = 0xFF  # NaN in float32: the writer reuses the memory
                self.ring.spans_released += 1
            requested += span_size
            k += 1
            drop = requested - base  # bytes no later request can ask for
            if drop > 0:
                del pending[:drop]
                base += drop


class StandinRing:
    """``StandinRing([(header_dict, gulps), ...], span_interval=0.0)``: one entry per
    sequence; ``gulps`` is any iterable of float32 arrays (may be endless); an entry may
    have a third item, ``skips`` (see the module)."""

    def __init__(self, sequences: Iterable[tuple],
                 span_interval: float = 0.0, name: str = "capture"):
        self._sequences = iter(sequences)
        self.span_interval = span_interval
        self.name = name
        self.holds: list[float] = []
        self.spans_released = 0
        self.guarantee: bool | None = None
        self.reader_thread: threading.Thread | None = None

    def read(self, whence: str = "earliest", guarantee: bool = True
             ) -> Iterator[StandinSequence]:
        self.guarantee = guarantee
        self.reader_thread = threading.current_thread()
        for header, gulps, *skips in self._sequences:
            yield StandinSequence(self, header, gulps, *skips)
