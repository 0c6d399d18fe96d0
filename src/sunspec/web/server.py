"""The live view's server: aiohttp HTTP + WebSocket on its own thread and asyncio loop.

Data flow (one way, as everywhere in sunspec), for each stream served::

    source ──ring──> fan-out thread    ──call_soon_threadsafe──> loop ──> per-viewer queues
                      (only while the stream
                       has viewers: ring.wait/since,
                       encodes each row once)

One thread per stream reads its ring and encodes every row once (:mod:`.codec`); the loop
hands the same bytes to every viewer of that stream. Encoding is lazy: a stream nobody
watches costs nothing per row (its thread sleeps until a viewer comes); the first viewer
makes the thread encode what the ring holds, and it keeps those encoded rows (the history,
at most one ring) for the backfill of the viewers after it, until the last one leaves. The
thread answers each viewer's join itself, between two batches of rows, and queues its
metadata and backfill in the loop before any later row: a viewer sees every row exactly once.

Each viewer has a bounded queue drained by its own task: a viewer that reads slowly, or not at
all, loses its oldest rows (counted) and holds up nobody. When the stream has a burst
detector (``events``, ``excess_db``), the thread polls it while viewers watch and sends them
its events (a text message of type ``events`` when they change) and its running background
(``background``, dB per channel, when it changes): the page subtracts it from the rows it
holds, so the background-subtracted view costs no second encoding and applies at once to the
whole backfill (columns older than the newest estimate are shown against the newest).

Nothing served writes files or runs anything: the routes are the page's static files, ``/ws``
and the read-only ``/api/*``; ``?stream=NAME`` picks one of several streams (default: the
first).

Guards for a server that runs unattended for months: at most ``max_connections`` connections
(more are answered 503 and closed at once) and ``max_viewers`` WebSocket viewers (503), both
kept below the process's file-descriptor limit; a connection that sends no complete request
for ``request_timeout`` s is closed; a viewer that stops reading is closed by the heartbeat
and its buffered bytes discarded; ``/ws`` and ``/api/*`` answer a browser page of another
origin 403 unless ``allow_origins`` names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import math
import queue
import resource
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import numpy as np
from aiohttp import WSMsgType, web
from aiohttp.web_protocol import RequestHandler

from .._log import RateLimitedLog
from ..ring import RingBuffer, Rows
from ..source import StreamSource
from ..status import overall_health
from . import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_VIEWERS,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
)
from .codec import HEADER, MAGIC, encode_rows, record_dtype

__all__ = ["EventsFn", "ExcessFn", "StatusFn", "WebServer", "serve"]

log = logging.getLogger(__name__)

#: the program's composed status (e.g. ``Receiver.get_buffer_status``)
StatusFn = Callable[[], dict[str, Any]]
#: the newest ``n`` event records, oldest first (e.g. ``DetectorWorker.get_events``)
EventsFn = Callable[[int], list[dict[str, Any]]]
#: rows (n, nchan) in the stream's unit -> dB above the running background, or None
#: (e.g. ``DetectorWorker.excess_db``)
ExcessFn = Callable[[np.ndarray], "np.ndarray | None"]

#: static files of the page: name -> content type
_STATIC = {"index.html": "text/html", "app.js": "text/javascript",
           "colormaps.js": "text/javascript", "style.css": "text/css"}
#: at most this many rows per WebSocket message (backfill and catch-up)
_MAX_BATCH = 256
#: seconds a fan-out thread waits on the ring (or for a viewer) before looking again
_WAIT = 0.1
#: seconds between polls of a detector's events and background while viewers watch
_POLL = 0.5
#: events sent to the page (the newest), and answered by /api/events without ``n``
_EVENTS = 50
#: stream_info keys the page is told
_INFO_KEYS = ("name", "sender_id", "beam", "nbeam", "beam_index", "product", "factor",
              "endpoint", "pols", "navg", "nint", "unit", "db_per_digit", "instrument",
              "station", "replay", "source", "axis")
#: units whose values are logarithmic already (never quantised in log10 again)
_LOG_UNITS = ("dB", "digits")
#: file descriptors left to the rest of the process when capping connections
_FD_RESERVE = 64
#: what a connection beyond the cap gets before it is closed
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Retry-After: 10\r\nConnection: close\r\nContent-Length: 33\r\n\r\n"
         b"too many connections, retry later")

T = TypeVar("T")


def fd_limit() -> int:
    """The soft limit on open file descriptors of this process (``ulimit -n``)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class _Refuse(asyncio.Protocol):
    """A connection beyond the cap: answered 503 and closed, costing its fd for a moment."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


@dataclass(frozen=True)
class _Message:
    """One message for the viewers: rows in binary, or a JSON text of ``kind`` ``meta`` (a
    new geometry: replaces what is queued), ``events`` or ``background`` (replaces a queued
    message of its kind)."""

    data: bytes | str
    kind: str = "rows"
    nrows: int = 0
    records: tuple[bytes, ...] = ()


class _Viewer:
    """A connected WebSocket viewer: its bounded queue and counters (loop thread only)."""

    def __init__(self, ident: int, ws: web.WebSocketResponse, peer: str, limit: int,
                 stream: str):
        self.ident = ident
        self.ws = ws
        self.peer = peer
        self.limit = limit
        self.stream = stream
        self.queue: deque[_Message] = deque()
        self.wake = asyncio.Event()
        self.connected = time.time()
        self.closed = False
        self.sent_rows = 0
        self.sent_bytes = 0
        self.dropped_rows = 0

    def push(self, msg: _Message) -> None:
        """Queue ``msg``; a new stream geometry discards the old rows, a full queue its oldest
        rows, a newer events or background message the queued one."""
        if msg.kind == "meta":
            self.dropped_rows += sum(m.nrows for m in self.queue)
            self.queue.clear()
        elif msg.kind != "rows":
            self.queue = deque(m for m in self.queue if m.kind != msg.kind)
        else:
            while len(self.queue) >= self.limit:
                oldest = next((i for i, m in enumerate(self.queue) if m.nrows), None)
                if oldest is None:
                    break
                self.dropped_rows += self.queue[oldest].nrows
                del self.queue[oldest]
        self.queue.append(msg)
        self.wake.set()

    async def send(self, msg: _Message) -> None:
        if isinstance(msg.data, str):
            await self.ws.send_str(msg.data)
        else:
            await self.ws.send_bytes(msg.data)
        self.sent_rows += msg.nrows
        self.sent_bytes += len(msg.data)

    def status(self) -> dict[str, Any]:
        return {"id": self.ident, "peer": self.peer, "stream": self.stream,
                "connected_s": time.time() - self.connected,
                "queued_messages": len(self.queue), "sent_rows": self.sent_rows,
                "sent_bytes": self.sent_bytes, "dropped_rows": self.dropped_rows}


class _Stream:
    """One stream served: its source and hooks, its attached viewers (loop thread) and the
    state of its fan-out thread (that thread only, apart from ``requests``)."""

    def __init__(self, name: str, source: StreamSource, status: StatusFn | None,
                 events: EventsFn | None, excess_db: ExcessFn | None,
                 post: Callable[..., None], stop: threading.Event):
        self.name = name
        self.source = source
        self.read_status = status
        self.events = events
        self.excess_db = excess_db
        self._post = post
        self._stop = stop
        self.viewers: dict[int, _Viewer] = {}  # attached: receiving rows (loop thread)
        self.requests: queue.SimpleQueue[tuple[str, _Viewer]] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None
        self.counts = {"rows_encoded": 0, "rows_missed": 0, "resets": 0, "polls_failed": 0}
        self._rlog = RateLimitedLog(log)
        # fan-out thread state
        self._ring: RingBuffer | None = None
        self._cursor = 0
        self._members = 0
        self._history: deque[bytes] = deque()
        self._backfill: list[_Message] | None = None
        self._meta = _Message(self.meta_json(None), "meta")
        self._events_msg: _Message | None = None
        self._events_key: tuple[Any, ...] = ()
        self._bg_msg: _Message | None = None
        self._bg_key: list[Any] | None = None
        self._next_poll = 0.0

    # --- metadata -------------------------------------------------------------------------
    @property
    def log_unit(self) -> bool:
        """The stream's values are logarithmic already (dB, instrument digits)."""
        return self.source.stream_info.get("unit") in _LOG_UNITS

    def info(self) -> dict[str, Any]:
        info = self.source.stream_info
        return {k: info.get(k) for k in _INFO_KEYS} | {"name": self.name}

    def meta_json(self, ring: RingBuffer | None) -> str:
        freqs = ring.freqs_mhz if ring is not None else None
        return json.dumps(_nan_to_none({
            "type": "meta", "stream_name": self.name,
            "nrows": ring.nrows if ring is not None else 0,
            "nfreq": ring.nfreq if ring is not None else 0,
            "freqs_mhz": None if freqs is None else np.round(freqs, 6).tolist(),
            "detector": self.events is not None, "background": self.excess_db is not None,
            "stream": self.info(),
        }), default=_jsonable)

    # --- the fan-out thread ---------------------------------------------------------------
    def run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:  # a dead fan-out must be visible, not silent
            self.failure = exc
            log.error("web fan-out of %s failed: %r", self.name, exc, exc_info=True)

    def _follow(self) -> None:
        while not self._stop.is_set():
            current = self.source.ring
            if current is not self._ring:
                self._new_ring(current)
            self._serve_requests()
            ring = self._ring
            if not self._members:
                self.wake.wait(_WAIT)  # nobody watches: nothing is read or encoded
                self.wake.clear()
                continue
            if ring is None:
                self.source.wait_for_ring(_WAIT)
                continue
            if time.monotonic() >= self._next_poll:
                self._poll(broadcast=True)
            if not ring.wait(self._cursor, _WAIT):
                continue
            self._serve_requests()  # the last viewer may have left meanwhile
            if not self._members:
                continue
            rows = ring.since(self._cursor, _MAX_BATCH)
            self.counts["rows_missed"] += rows.missed
            self._post("broadcast", self, self._encode(rows))

    def _new_ring(self, ring: RingBuffer | None) -> None:
        self._ring, self._cursor = ring, 0
        self._meta = _Message(self.meta_json(ring), "meta")
        self._history = deque(maxlen=ring.nrows if ring is not None else 0)
        self._backfill = None
        self._bg_msg, self._bg_key = None, None
        self.counts["resets"] += 1
        if self._members:
            self._post("broadcast", self, self._meta)

    def _serve_requests(self) -> None:
        """Viewers joining get the metadata, the backfill and the detector's state in one
        post, queued before any later row; the first one has the ring's rows encoded."""
        while True:
            try:
                kind, viewer = self.requests.get_nowait()
            except queue.Empty:
                return
            if kind == "leave":
                self._members -= 1
                if not self._members:  # the history is not kept for nobody
                    self._history.clear()
                    self._backfill = None
                continue
            if not self._members:
                self._fill()
                self._poll(broadcast=False)
            self._members += 1
            extra = [m for m in (self._events_msg, self._bg_msg) if m is not None]
            self._post("attach", viewer, [self._meta, *self._backfill_messages(), *extra])

    def _fill(self) -> None:
        """Encode what the ring holds into the history (the first viewer's backfill)."""
        self._history.clear()
        self._backfill = None
        ring = self._ring
        if ring is None:
            self._cursor = 0
            return
        target = ring.total
        self._cursor = target - ring.held
        while self._cursor < target:
            rows = ring.since(self._cursor, min(_MAX_BATCH, target - self._cursor))
            if not len(rows):
                break
            self._encode(rows)

    def _encode(self, rows: Rows) -> _Message:
        """Encode ``rows`` once: the message for live viewers; each row's record joins the
        history for backfill."""
        data = encode_rows(rows, log=not self.log_unit)
        size = record_dtype(rows.data.shape[1]).itemsize
        body = memoryview(data)[HEADER.itemsize:]
        records = tuple(bytes(body[i * size:(i + 1) * size]) for i in range(len(rows)))
        self._history.extend(records)
        self._backfill = None
        self._cursor = rows.next_index
        self.counts["rows_encoded"] += len(rows)
        return _Message(data, "rows", len(rows), records)

    def _backfill_messages(self) -> list[_Message]:
        if self._backfill is None:  # made once per new row, shared by the viewers joining
            nfreq = self._ring.nfreq if self._ring is not None else 0
            history = list(self._history)
            self._backfill = []
            for start in range(0, len(history), _MAX_BATCH):
                chunk = history[start:start + _MAX_BATCH]
                data = np.array([(MAGIC, len(chunk), nfreq)], HEADER).tobytes()
                self._backfill.append(_Message(data + b"".join(chunk), "rows", len(chunk)))
        return self._backfill

    def _poll(self, broadcast: bool) -> None:
        """Read the detector's events and background; new ones go to the viewers."""
        self._next_poll = time.monotonic() + _POLL
        for make in (self._events_message, self._background_message):
            msg = self._guarded(make)
            if msg is not None and broadcast:
                self._post("broadcast", self, msg)

    def _guarded(self, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception as exc:  # a detector hook must not end the live view
            self.counts["polls_failed"] += 1
            self._rlog.log(logging.WARNING, fn.__name__, "web: %s of %s failed: %r",
                           fn.__name__, self.name, exc)
            return None

    def _events_message(self) -> _Message | None:
        if self.events is None:
            return None
        events = self.events(_EVENTS)
        key = tuple((e.get("id"), e.get("revision")) for e in events)
        if key == self._events_key and self._events_msg is not None:
            return None
        self._events_key = key
        self._events_msg = _Message(json.dumps(_nan_to_none(
            {"type": "events", "stream_name": self.name, "events": events}),
            default=_jsonable), "events")
        return self._events_msg

    def _background_message(self) -> _Message | None:
        ring = self._ring
        if self.excess_db is None or ring is None:
            return None
        level = background_db(self.excess_db, ring.nfreq,
                              self.source.stream_info.get("unit", "linear"))
        key = None if level is None else np.round(level, 2).tolist()
        if key is None or key == self._bg_key:
            return None
        self._bg_key = key
        self._bg_msg = _Message(json.dumps(_nan_to_none(
            {"type": "background", "stream_name": self.name, "db": key})), "background")
        return self._bg_msg

    def status(self) -> dict[str, Any]:
        return {"viewers": len(self.viewers), "detector": self.events is not None,
                **self.counts}


def background_db(excess_db: ExcessFn, nfreq: int, unit: str) -> np.ndarray | None:
    """The running background level per channel (dB) behind ``excess_db``: the excess of a
    row whose dB value is 0 everywhere (1.0 in linear units, 0 in logarithmic ones) is minus
    the level. None before an estimate exists (no answer, a geometry not yet followed, or a
    level of exactly 0 dB in every channel, which is what a background without an estimate
    holds); NaN in channels the detector masks (RFI)."""
    probe = np.full((1, nfreq), 1.0 if unit not in _LOG_UNITS else 0.0, np.float32)
    excess = excess_db(probe)
    if excess is None:
        return None
    excess = np.asarray(excess, np.float64)
    if excess.shape != (1, nfreq):
        return None
    level = -excess[0]
    finite = level[np.isfinite(level)]
    if not finite.size or not np.any(finite):
        return None
    return level


def _by_name(what: str, value: T | Mapping[str, T] | None, names: list[str]) -> dict[str, T]:
    """A hook per stream: a mapping by stream name, or one hook for a lone stream."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what} names streams not served: {sorted(unknown)}")
        return dict(value)
    if len(names) > 1:
        raise ValueError(f"{what} of several streams must be a mapping by stream name")
    return {names[0]: value}


def _sources(sources: StreamSource | Sequence[StreamSource] | Mapping[str, StreamSource]
             ) -> dict[str, StreamSource]:
    if isinstance(sources, Mapping):
        named = dict(sources)
    elif isinstance(sources, StreamSource):
        named = {sources.name: sources}
    else:
        named = {}
        for src in sources:
            if src.name in named:
                raise ValueError(f"two streams are named {src.name!r}: pass a mapping")
            named[src.name] = src
    if not named:
        raise ValueError("no stream to serve")
    bad = [n for n in named if not n or any(c in n for c in "&?#/ ")]
    if bad:
        raise ValueError(f"stream names must be plain words, got {bad}")
    return named


class WebServer:
    """Serve the live view of one stream or several (any :class:`~sunspec.source.StreamSource`,
    e.g. a :class:`~sunspec.Receiver`; several as a sequence, named by their ``name``, or a
    mapping name -> source) on ``http://host:port/`` (``port=0``: any free port).

    ``/api/status`` answers ``status()`` (the program's composed status, e.g. a receiver's
    ``get_buffer_status``; with several streams, one function for all or a mapping by
    stream name); without it, the stream's metadata and this server's own section.

    ``/api/health`` answers :func:`~sunspec.status.overall_health` of that status: 200 when
    ok or degraded, 503 when failed (``?strict=1``: 503 unless ok).

    ``events`` (e.g. ``DetectorWorker.get_events``) and ``excess_db`` (e.g.
    ``DetectorWorker.excess_db``), for one stream or a mapping by stream name, give the page
    the burst detector's events (``/api/events``, markers and a list) and its
    background-subtracted view. The server imports nothing of the detector.

    ``queue_limit`` bounds each viewer's queue (messages, usually one row each) and
    ``send_buffer`` the kernel's send buffer per viewer (bytes), so a viewer that stops reading
    costs bounded memory; ``heartbeat`` (s) pings viewers so that vanished or stalled ones are
    closed. ``max_connections`` (lowered to fit ``ulimit -n``), ``max_viewers``,
    ``request_timeout`` (s) and ``allow_origins`` (origins such as ``https://host:port`` whose
    pages may use ``/ws`` and ``/api``; ``"*"``: any) are described in the module docstring.
    """

    def __init__(self, sources: StreamSource | Sequence[StreamSource]
                 | Mapping[str, StreamSource], host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, *,
                 status: StatusFn | Mapping[str, StatusFn] | None = None,
                 events: EventsFn | Mapping[str, EventsFn] | None = None,
                 excess_db: ExcessFn | Mapping[str, ExcessFn] | None = None,
                 queue_limit: int = 256, send_buffer: int = 256 * 1024,
                 heartbeat: float = 15.0, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_viewers: int = DEFAULT_MAX_VIEWERS,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 allow_origins: Sequence[str] = ()):
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be >= 1, got {queue_limit}")
        if max_connections < 1 or max_viewers < 1:
            raise ValueError("max_connections and max_viewers must be >= 1, got "
                             f"{max_connections} and {max_viewers}")
        if not 0 < request_timeout < float("inf") or not 0 < heartbeat < float("inf"):
            raise ValueError("request_timeout and heartbeat must be > 0 s, got "
                             f"{request_timeout} and {heartbeat}")
        named = _sources(sources)
        names = list(named)
        statuses: dict[str, StatusFn] = (
            dict.fromkeys(names, status) if callable(status) else
            _by_name("status", status, names))
        hooks = _by_name("events", events, names), _by_name("excess_db", excess_db, names)
        room = max(fd_limit() - _FD_RESERVE, 8)
        if max_connections > room:
            log.warning("max_connections %d exceeds what the file-descriptor limit allows "
                        "(ulimit -n = %d); using %d (raise ulimit -n for more)",
                        max_connections, fd_limit(), room)
            max_connections = room
        self.max_connections = max_connections
        self.max_viewers = min(max_viewers, max_connections)
        self.request_timeout = request_timeout
        self.allow_origins = frozenset(o.rstrip("/").lower() for o in allow_origins)
        self.host = host
        self.port = port
        self.queue_limit = queue_limit
        self.send_buffer = send_buffer
        self.heartbeat = heartbeat
        self._static = {name: (resources.files(__package__) / "static" / name).read_bytes()
                        for name in _STATIC}
        self._stop = threading.Event()
        self._streams = {name: _Stream(name, src, statuses.get(name), hooks[0].get(name),
                                       hooks[1].get(name), self._post, self._stop)
                         for name, src in named.items()}
        #: the first stream's source (the one served by default)
        self.source = named[names[0]]
        self._viewers: dict[int, _Viewer] = {}  # every connected viewer
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None
        self._counts = {"dropped_rows_closed": 0, "viewers_total": 0,
                        "refused_connections": 0, "refused_viewers": 0, "refused_origin": 0,
                        "closed_idle": 0, "closed_stalled": 0, "accept_errors": 0}
        self._rlog = RateLimitedLog(log)
        self._server: web.Server | None = None
        self._idle_since: dict[RequestHandler, float] = {}  # connections not in a handler
        self._failure: BaseException | None = None

    @property
    def streams(self) -> list[str]:
        """Names of the streams served, the default first."""
        return list(self._streams)

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._loop_thread is not None and self._loop_thread.is_alive()

    def start(self, timeout: float = 10.0) -> WebServer:
        """Bind and start serving; raises what binding raised (e.g. the port is taken)."""
        if self.running:
            return self
        self._stop.clear()
        started = threading.Event()
        errors: list[BaseException] = []
        self._loop_thread = threading.Thread(target=self._run_loop, args=(started, errors),
                                             daemon=True, name="sunspec-web")
        self._loop_thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"web server did not start within {timeout} s")
        if errors:
            self._loop_thread.join()
            self._loop_thread = None
            raise errors[0]
        for st in self._streams.values():
            st.thread = threading.Thread(target=st.run, daemon=True,
                                         name=f"sunspec-web-fanout {st.name}")
            st.thread.start()
        log.info("live view on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every viewer, stop serving and join every thread (idempotent)."""
        self._stop.set()
        for st in self._streams.values():
            st.wake.set()
            fanout, st.thread = st.thread, None
            if fanout is not None:
                fanout.join(timeout)
        thread, self._loop_thread = self._loop_thread, None
        if thread is None:
            return
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None:
            loop.call_soon_threadsafe(closing.set)
        thread.join(timeout)
        if thread.is_alive():  # pragma: no cover - a handler that ignores cancellation
            log.error("web server thread did not stop within %.1f s", timeout)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        """Viewers, connections, their counters and health (any thread; a snapshot, not
        locked); ``streams``: each stream's viewers and counters."""
        viewers = [v.status() for v in list(self._viewers.values())]
        streams = {name: st.status() for name, st in self._streams.items()}
        connections = len(self._server.connections) if self._server is not None else 0
        totals = {k: sum(s[k] for s in streams.values())
                  for k in ("rows_encoded", "rows_missed", "resets")}
        return {"url": self.url, "running": self.running, **self._health(connections),
                "viewers": sum(s["viewers"] for s in streams.values()),
                "max_viewers": self.max_viewers,
                "connections": connections, "max_connections": self.max_connections,
                "dropped_rows": self._counts["dropped_rows_closed"]
                + sum(v["dropped_rows"] for v in viewers), **totals,
                **{k: v for k, v in self._counts.items() if k != "dropped_rows_closed"},
                "streams": streams, "viewer": viewers}

    def _health(self, connections: int) -> dict[str, Any]:
        failure = self._failure or next((st.failure for st in self._streams.values()
                                         if st.failure is not None), None)
        if failure is not None:
            return {"health": "failed", "health_reason": f"web server thread ended by "
                    f"{type(failure).__name__}: {failure}"}
        if self._loop_thread is not None and not self._stop.is_set() and not (
                self.running and all(st.thread is not None and st.thread.is_alive()
                                     for st in self._streams.values())):
            return {"health": "failed", "health_reason": "a web server thread ended"}
        busy = connections - len(self._idle_since)
        if busy >= self.max_connections or len(self._viewers) >= self.max_viewers:
            return {"health": "degraded", "health_reason": "full: refusing new connections "
                    f"({busy}/{self.max_connections} connections busy, {len(self._viewers)}/"
                    f"{self.max_viewers} viewers)"}
        return {"health": "ok", "health_reason": None}

    # --- the loop thread --------------------------------------------------------------------
    def _run_loop(self, started: threading.Event, errors: list[BaseException]) -> None:
        try:
            asyncio.run(self._main(started, errors))
        except BaseException as exc:  # a dead server must be visible, not silent
            self._failure = exc
            log.error("web server failed: %r", exc, exc_info=True)

    async def _main(self, started: threading.Event, errors: list[BaseException]) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._guard])
        app.add_routes([web.get("/", self._page), web.get("/ws", self._websocket),
                        web.get("/api/status", self._api_status),
                        web.get("/api/health", self._api_health),
                        web.get("/api/latest", self._api_latest),
                        web.get("/api/freqs", self._api_freqs),
                        web.get("/api/events", self._api_events),
                        web.get("/api/streams", self._api_streams)])
        app.add_routes([web.get(f"/{name}", self._page) for name in _STATIC])
        app.on_shutdown.append(self._close_viewers)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        listener: socket.socket | None = None
        try:
            await runner.setup()
            self._server = runner.server
            listener = await self._listen()
            self.port = listener.getsockname()[1]
        except BaseException as exc:
            errors.append(exc)
            if listener is not None:
                listener.close()
            await runner.cleanup()
            started.set()
            return
        started.set()
        tasks = [asyncio.create_task(self._accept(listener)),
                 asyncio.create_task(self._sweep_idle())]
        try:
            await self._closing.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            listener.close()
            await runner.cleanup()

    async def _listen(self) -> socket.socket:
        """The listening socket on (host, port) (the first address ``host`` names)."""
        assert self._loop is not None
        family, kind, proto, _, addr = (await self._loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE))[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _accept(self, listener: socket.socket) -> None:
        """Accept one connection at a time, so that the cap holds even in a burst (asyncio's
        own server accepts up to a hundred at once, past the file-descriptor limit)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # e.g. EMFILE: the connection waits in the backlog
                self._counts["accept_errors"] += 1
                self._rlog.log(logging.WARNING, "accept", "cannot accept a connection: %s "
                               "(ulimit -n is %d)", exc, fd_limit())
                await asyncio.sleep(0.5)
                continue
            try:
                await loop.connect_accepted_socket(self._connection, conn)
            except OSError as exc:  # the peer left already
                conn.close()
                log.debug("connection lost while accepted: %s", exc)

    # --- connections: capped, and closed when idle ------------------------------------------
    def _connection(self) -> asyncio.Protocol:
        """Protocol for a new connection: aiohttp's handler. At the cap, the connection idle
        the longest is closed to make room (so idle connections cannot lock out a monitor);
        if none is idle, the new one is answered 503."""
        server = self._server
        assert server is not None and self._loop is not None
        if len(server.connections) >= self.max_connections:
            idle = [(since, c) for c, since in self._idle_since.items()
                    if c.transport is not None]
            if not idle:
                self._counts["refused_connections"] += 1
                return _Refuse()
            _, oldest = min(idle, key=lambda pair: pair[0])
            self._drop_idle(oldest)
        handler = server()
        self._idle_since[handler] = self._loop.time()
        return handler

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        """Refuse other origins on the API and WebSocket; mark the connection busy."""
        origin = request.headers.get("Origin")
        if origin is not None and request.path.startswith(("/ws", "/api/")) and not (
                self._origin_allowed(origin, request)):
            self._counts["refused_origin"] += 1
            raise web.HTTPForbidden(text=f"origin {origin} refused: the live view answers its "
                                    "own pages (allow others with --web-allow-origin)")
        conn = request.protocol
        self._idle_since.pop(conn, None)
        try:
            return await handler(request)
        finally:
            if conn.transport is not None and self._loop is not None:
                self._idle_since[conn] = self._loop.time()

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        origin = origin.rstrip("/").lower()
        return ("*" in self.allow_origins or origin in self.allow_origins
                or origin == f"{request.scheme}://{request.host}".lower())

    async def _sweep_idle(self) -> None:
        """Close connections that have not sent a whole request for ``request_timeout`` s."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.request_timeout / 4))
            now = loop.time()
            for conn, since in list(self._idle_since.items()):
                if conn.transport is None:
                    del self._idle_since[conn]
                elif now - since >= self.request_timeout:
                    self._drop_idle(conn)

    def _drop_idle(self, conn: RequestHandler) -> None:
        """Close a connection that is not in a request, discarding anything unsent."""
        del self._idle_since[conn]
        self._counts["closed_idle"] += 1
        if conn.transport is not None:
            conn.transport.abort()
        conn.force_close()

    async def _close_viewers(self, _app: web.Application) -> None:
        await asyncio.gather(*(v.ws.close(code=1001, message=b"server stopping")
                               for v in list(self._viewers.values())), return_exceptions=True)

    # --- fan-out threads -> loop ------------------------------------------------------------
    def _post(self, what: str, target: Any, payload: Any) -> None:
        """From a fan-out thread: run ``_attach`` or ``_broadcast`` on the loop, in order."""
        loop = self._loop
        fn = self._attach if what == "attach" else self._broadcast
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed since the check
                loop.call_soon_threadsafe(fn, target, payload)

    def _attach(self, viewer: _Viewer, messages: list[_Message]) -> None:
        """On the loop: a joining viewer gets its first messages and then every row."""
        if viewer.closed:
            return
        viewer.queue.extend(messages)
        self._streams[viewer.stream].viewers[viewer.ident] = viewer
        viewer.wake.set()

    @staticmethod
    def _broadcast(stream: _Stream, msg: _Message) -> None:
        """On the loop: queue ``msg`` for every viewer of ``stream``."""
        for viewer in stream.viewers.values():
            viewer.push(msg)

    # --- WebSocket --------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        stream = self._stream(request)
        if len(self._viewers) >= self.max_viewers:
            self._counts["refused_viewers"] += 1
            raise web.HTTPServiceUnavailable(text=f"{self.max_viewers} viewers already: "
                                             "retry later", headers={"Retry-After": "10"})
        ws = web.WebSocketResponse(heartbeat=self.heartbeat, compress=False, max_msg_size=4096)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:  # bound what the kernel holds for a viewer that stops reading
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        await ws.prepare(request)
        viewer = _Viewer(next(self._ids), ws, request.remote or "?", self.queue_limit,
                         stream.name)
        self._viewers[viewer.ident] = viewer
        await ws.send_str(json.dumps({"type": "hello", "viewer": viewer.ident,
                                      "stream_name": stream.name}))
        # the fan-out thread answers with the metadata and backfill, before any later row
        stream.requests.put(("join", viewer))
        stream.wake.set()
        self._counts["viewers_total"] += 1
        sender = asyncio.create_task(self._send_loop(viewer))
        try:
            async for msg in ws:  # viewers send nothing we act on; this notices close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            viewer.closed = True
            stream.requests.put(("leave", viewer))  # before it stops counting as a viewer
            stream.wake.set()
            del self._viewers[viewer.ident]
            stream.viewers.pop(viewer.ident, None)
            self._counts["dropped_rows_closed"] += viewer.dropped_rows
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            transport = request.transport
            if transport is not None and transport.get_write_buffer_size():
                # a viewer that stopped reading: closing would wait for it forever, holding
                # the fd and the buffered bytes; discard them instead
                self._counts["closed_stalled"] += 1
                log.info("viewer %d (%s) stopped reading: connection dropped", viewer.ident,
                         viewer.peer)
                transport.abort()
        return ws

    @staticmethod
    async def _send_loop(viewer: _Viewer) -> None:
        try:
            while True:
                await viewer.wake.wait()
                viewer.wake.clear()
                while viewer.queue:
                    await viewer.send(viewer.queue.popleft())
        except (ConnectionError, RuntimeError):  # the viewer went away mid-send
            await viewer.ws.close()

    # --- HTTP -------------------------------------------------------------------------------
    def _stream(self, request: web.Request) -> _Stream:
        """The stream ``?stream=`` names (default: the first); 404 for another name."""
        name = request.query.get("stream")
        if name is None:
            return next(iter(self._streams.values()))
        try:
            return self._streams[name]
        except KeyError:
            raise web.HTTPNotFound(text=f"no stream {name!r} here (streams: "
                                   f"{', '.join(self._streams)})") from None

    async def _page(self, request: web.Request) -> web.Response:
        name = request.path.lstrip("/") or "index.html"
        return web.Response(body=self._static[name], content_type=_STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    def _read_status(self, stream: _Stream) -> dict[str, Any]:
        return stream.read_status() if stream.read_status is not None else {"web": self.status()}

    async def _api_status(self, request: web.Request) -> web.Response:
        stream = self._stream(request)
        try:
            status = self._read_status(stream)
            status["stream"] = stream.source.stream_info
        except Exception as exc:  # e.g. no file descriptor free: answer, never fail
            log.warning("status unreadable: %r", exc)
            return _json_response({"error": repr(exc)}, status=503)
        status["stream_name"] = stream.name
        status["streams"] = self.streams
        status["server_time"] = time.time()
        return _json_response(status)

    async def _api_health(self, request: web.Request) -> web.Response:
        """``overall_health`` of the status: 200 if ok or degraded, 503 if failed
        (``?strict=1``: 503 unless ok), for standard HTTP monitors."""
        stream = self._stream(request)
        try:
            health = overall_health(self._read_status(stream))
        except Exception as exc:
            health = {"health": "failed", "health_reason": f"status unreadable: {exc!r}",
                      "sections": {}}
        strict = request.query.get("strict", "0").lower() in ("1", "true", "yes")
        bad = health["health"] == "failed" or (strict and health["health"] != "ok")
        return _json_response(health, status=503 if bad else 200)

    async def _api_streams(self, _request: web.Request) -> web.Response:
        """The streams served (the default first): name, metadata, whether a detector runs."""
        return _json_response({"streams": [
            {"name": st.name, "info": st.info(), "detector": st.events is not None,
             "viewers": len(st.viewers)} for st in self._streams.values()]})

    async def _api_freqs(self, request: web.Request) -> web.Response:
        ring = self._stream(request).source.ring
        freqs = ring.freqs_mhz if ring is not None else None
        return _json_response({
            "nfreq": ring.nfreq if ring is not None else 0,
            "unit": "channel" if freqs is None else "MHz",
            "freqs_mhz": None if freqs is None else freqs.tolist(),
        })

    async def _api_events(self, request: web.Request) -> web.Response:
        """The detector's newest ``?n=`` events (default 50; latest revision of each, oldest
        first); ``detector`` is false (and the list empty) for a stream without one."""
        stream = self._stream(request)
        try:
            n = int(request.query.get("n", str(_EVENTS)))
        except ValueError:
            raise web.HTTPBadRequest(text="n must be an integer") from None
        if n < 0:
            raise web.HTTPBadRequest(text="n must be >= 0")
        events: list[dict[str, Any]] = []
        if stream.events is not None and n:
            try:
                events = stream.events(n)
            except Exception as exc:
                log.warning("events of %s unreadable: %r", stream.name, exc)
                return _json_response({"error": repr(exc)}, status=503)
        return _json_response({"stream_name": stream.name,
                               "detector": stream.events is not None, "events": events})

    async def _api_latest(self, request: web.Request) -> web.Response:
        """``?n=`` newest rows (default 1); ``format=json`` (default), ``bin`` (the WebSocket
        form, see :mod:`.codec`) or ``npz`` (exact float32, for numpy)."""
        stream = self._stream(request)
        try:
            n = int(request.query.get("n", "1"))
        except ValueError:
            raise web.HTTPBadRequest(text="n must be an integer") from None
        fmt = request.query.get("format", "json")
        if n < 0 or fmt not in ("json", "bin", "npz"):
            raise web.HTTPBadRequest(text="n must be >= 0 and format one of json, bin, npz")
        ring = stream.source.ring
        rows = ring.latest(n) if ring is not None else Rows.empty()
        loop = asyncio.get_running_loop()
        if fmt == "bin":
            body = await loop.run_in_executor(None, lambda: encode_rows(
                rows, log=not stream.log_unit))
            return web.Response(body=body, content_type="application/octet-stream")
        if fmt == "npz":
            body = await loop.run_in_executor(None, _npz, rows)
            return web.Response(body=body, content_type="application/octet-stream")
        text = await loop.run_in_executor(None, _rows_json, rows)
        return web.Response(text=text, content_type="application/json")


def _rows_json(rows: Rows) -> str:
    return json.dumps({
        "n": len(rows),
        "nfreq": rows.data.shape[1],
        "first_index": rows.first_index,
        "times_utc": [str(t) + "Z" for t in rows.times],
        "end_unix": rows.end_unix.tolist(),
        "time_tags": [str(t) for t in rows.end_tag],  # > 2**53: strings keep them exact
        "seq": rows.seq.tolist(),
        "freqs_mhz": None if rows.freqs_mhz is None else rows.freqs_mhz.tolist(),
        "data": _finite_or_none(rows.data),
    })


def _finite_or_none(data: np.ndarray) -> list[Any]:
    """Rows as lists, missing (non-finite) values as null: JSON has no NaN."""
    if np.isfinite(data).all():
        return data.tolist()
    return [[v if math.isfinite(v) else None for v in row] for row in data.tolist()]


def _npz(rows: Rows) -> bytes:
    buf = io.BytesIO()
    arrays = {"data": rows.data, "end_tag": rows.end_tag, "end_unix": rows.end_unix,
              "seq": rows.seq, "arrival_unix": rows.arrival_unix}
    if rows.freqs_mhz is not None:
        arrays["freqs_mhz"] = rows.freqs_mhz
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _json_response(obj: Any, status: int = 200) -> web.Response:
    text = json.dumps(_nan_to_none(obj), default=_jsonable, allow_nan=False)
    return web.Response(text=text, content_type="application/json", status=status)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def serve(sources: StreamSource | Sequence[StreamSource] | Mapping[str, StreamSource],
          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **kwargs: Any) -> WebServer:
    """Start the live view of ``sources`` (one stream, or several: see :class:`WebServer`) in
    its own threads; returns the running :class:`WebServer` (``.url``, ``.port``,
    ``.status()``, ``.stop()``). ``kwargs`` go to it."""
    return WebServer(sources, host, port, **kwargs).start()
