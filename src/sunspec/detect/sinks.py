"""Where events go: a JSON-lines log (one file per UTC day) and a ZeroMQ PUB socket.

The PUB socket sends two-frame messages: topic ``event`` + a record (JSON), and topic
``heartbeat`` + the detector's status (JSON) every ``heartbeat_s``; see docs/PROTOCOL.md,
"Burst events".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import zmq

__all__ = ["DEFAULT_EVENTS_ENDPOINT", "HEARTBEAT", "TOPIC", "EventLog", "EventPublisher"]

log = logging.getLogger(__name__)

#: where events are published unless told otherwise (loopback only)
DEFAULT_EVENTS_ENDPOINT = "tcp://127.0.0.1:9531"
TOPIC = b"event"
HEARTBEAT = b"heartbeat"


def dumps(record: dict[str, Any]) -> str:
    """One record as compact JSON (no NaN: absent values are null)."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


class EventLog:
    """Appends each record as one line to ``<directory>/events-YYYYMMDD.jsonl``, the UTC
    day of the event's ``start_utc`` (so all revisions of an event share a file; a reader
    keeps the highest ``revision`` of each ``id``)."""

    def __init__(self, directory: str | os.PathLike[str], prefix: str = "events"):
        self.directory = Path(directory)
        self.prefix = prefix
        self.written = 0
        self.errors = 0
        self.last_error: str | None = None

    def path_for(self, record: dict[str, Any]) -> Path:
        day = str(record["start_utc"])[:10].replace("-", "")
        return self.directory / f"{self.prefix}-{day}.jsonl"

    def write(self, record: dict[str, Any]) -> bool:
        """Append one record; False (logged, counted) if the disk refused."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.path_for(record), "a", encoding="utf-8") as f:
                f.write(dumps(record) + "\n")
        except (OSError, ValueError) as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.error("event log %s: %s", self.directory, exc)
            return False
        self.written += 1
        return True


class EventPublisher:
    """A PUB socket bound to ``endpoint`` (``tcp://127.0.0.1:0`` picks a free port; read
    :attr:`endpoint` for the one bound)."""

    def __init__(self, endpoint: str = DEFAULT_EVENTS_ENDPOINT,
                 context: zmq.Context[Any] | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 1000)
        try:
            self._sock.bind(endpoint.replace(":0", ":*") if endpoint.endswith(":0") else
                            endpoint)
        except zmq.ZMQError:
            self._sock.close()
            raise
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sent = 0
        self.heartbeats = 0

    def publish(self, record: dict[str, Any]) -> None:
        """Send one event record (never blocks: slow subscribers lose messages)."""
        self._send(TOPIC, record)
        self.sent += 1

    def heartbeat(self, status: dict[str, Any]) -> None:
        """Send the detector's status, saying it is alive."""
        self._send(HEARTBEAT, status)
        self.heartbeats += 1

    def _send(self, topic: bytes, body: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):  # PUB drops rather than blocks
            self._sock.send_multipart([topic, dumps(body).encode()], zmq.NOBLOCK)

    def close(self) -> None:
        self._sock.close()
