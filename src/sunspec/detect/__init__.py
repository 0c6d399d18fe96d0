"""Burst detection: the receiver watches the Sun and says when a radio burst happens.

A model-free detector of type III (fast drift) and type II (slow drift) solar radio bursts over
a ring's dynamic spectrum (see :mod:`.search` for the method and its references):

- :class:`Detector` — the detection of one stream geometry, fed chunks of rows (no thread,
  no I/O); :func:`detect_chunks` runs one over any sequence of Rows-like chunks (offline);
- :class:`DetectorWorker` — a thread following a :class:`~sunspec.source.StreamSource`'s
  ring, writing a JSON-lines log and publishing events and heartbeats on a PUB socket;
- :func:`reader_rows` — one product of a spectrum file (``sunspec.readers``) as the
  detector's rows (instrument digits turned into dB), :func:`stream_name` its stream;
- :class:`DetectorConfig` — thresholds (recorded in every event), :data:`VERSION`.

Event records and the PUB socket's messages are specified in docs/PROTOCOL.md.
"""

from __future__ import annotations

from .config import VERSION, DetectorConfig
from .detector import Detector, RowChunk, detect_chunks, row_interval_s
from .files import SpectrumSource, reader_rows, stream_name
from .sinks import DEFAULT_EVENTS_ENDPOINT, EventLog, EventPublisher
from .worker import DetectorWorker

__all__ = ["DEFAULT_EVENTS_ENDPOINT", "VERSION", "Detector", "DetectorConfig",
           "DetectorWorker", "EventLog", "EventPublisher", "RowChunk", "SpectrumSource",
           "detect_chunks", "reader_rows", "row_interval_s", "stream_name"]
