"""The live view's server: aiohttp HTTP + WebSocket on its own thread and asyncio loop.

Data flow (one way, as everywhere in sunspec)::

    source ──ring──> fan-out thread   ──call_soon_threadsafe──> loop ──> per-viewer queues
                       (ring.wait/since,                         (history of encoded rows
                        encodes each row once)                    for backfill)

One thread reads the ring and encodes every row once (:mod:`.codec`); the loop hands the same
bytes to every viewer. Each viewer has a bounded queue drained by its own task: a viewer that
reads slowly, or not at all, loses its oldest rows (counted) and holds up nobody. A new viewer
gets the stream's metadata and the whole ring from the loop's history of encoded rows, in the
same loop turn in which it joins the fan-out, so it sees every row exactly once.

Nothing served writes files or runs anything: the routes are the page's three static files,
``/ws`` and the read-only ``/api/*``.

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
import resource
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

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

__all__ = ["WebServer", "serve"]

log = logging.getLogger(__name__)

#: static files of the page: name -> content type
_STATIC = {"index.html": "text/html", "app.js": "text/javascript",
           "colormaps.js": "text/javascript", "style.css": "text/css"}
#: at most this many rows per WebSocket message (backfill and catch-up)
_MAX_BATCH = 256
#: seconds the fan-out thread waits on the ring before checking for stop or a new ring
_WAIT = 0.1
#: file descriptors left to the rest of the process when capping connections
_FD_RESERVE = 64
#: what a connection beyond the cap gets before it is closed
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Retry-After: 10\r\nConnection: close\r\nContent-Length: 33\r\n\r\n"
         b"too many connections, retry later")


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
    """One message for the viewers: a JSON text (control) or rows in binary."""

    data: bytes | str
    nrows: int = 0
    records: tuple[bytes, ...] = ()

    @property
    def control(self) -> bool:
        return isinstance(self.data, str)


class _Viewer:
    """A connected WebSocket viewer: its bounded queue and counters (loop thread only)."""

    def __init__(self, ident: int, ws: web.WebSocketResponse, peer: str, limit: int):
        self.ident = ident
        self.ws = ws
        self.peer = peer
        self.limit = limit
        self.queue: deque[_Message] = deque()
        self.wake = asyncio.Event()
        self.connected = time.time()
        self.sent_rows = 0
        self.sent_bytes = 0
        self.dropped_rows = 0

    def push(self, msg: _Message) -> None:
        """Queue ``msg``; a new stream geometry discards the old rows, a full queue its oldest."""
        if msg.control:
            self.dropped_rows += sum(m.nrows for m in self.queue)
            self.queue.clear()
        else:
            first = 1 if self.queue and self.queue[0].control else 0  # keep a pending meta
            while len(self.queue) >= self.limit and len(self.queue) > first:
                self.dropped_rows += self.queue[first].nrows
                del self.queue[first]
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
        return {"id": self.ident, "peer": self.peer, "connected_s": time.time() - self.connected,
                "queued_messages": len(self.queue), "sent_rows": self.sent_rows,
                "sent_bytes": self.sent_bytes, "dropped_rows": self.dropped_rows}


class WebServer:
    """Serve the live view of one stream (any :class:`~sunspec.source.StreamSource`, e.g. a
    :class:`~sunspec.Receiver`) on ``http://host:port/`` (``port=0``: any free port).

    ``/api/status`` answers ``status()`` (the program's composed status, e.g. a receiver's
    ``get_buffer_status``); without it, the stream's metadata and this server's own section.

    ``/api/health`` answers :func:`~sunspec.status.overall_health` of that status: 200 when
    ok or degraded, 503 when failed (``?strict=1``: 503 unless ok).

    ``queue_limit`` bounds each viewer's queue (messages, usually one row each) and
    ``send_buffer`` the kernel's send buffer per viewer (bytes), so a viewer that stops reading
    costs bounded memory; ``heartbeat`` (s) pings viewers so that vanished or stalled ones are
    closed. ``max_connections`` (lowered to fit ``ulimit -n``), ``max_viewers``,
    ``request_timeout`` (s) and ``allow_origins`` (origins such as ``https://host:port`` whose
    pages may use ``/ws`` and ``/api``; ``"*"``: any) are described in the module docstring.
    """

    def __init__(self, source: StreamSource, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 *, status: Callable[[], dict[str, Any]] | None = None, queue_limit: int = 256,
                 send_buffer: int = 256 * 1024, heartbeat: float = 15.0,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
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
        self.source = source
        self._status = status
        self.host = host
        self.port = port
        self.queue_limit = queue_limit
        self.send_buffer = send_buffer
        self.heartbeat = heartbeat
        self._static = {name: (resources.files(__package__) / "static" / name).read_bytes()
                        for name in _STATIC}
        self._viewers: dict[int, _Viewer] = {}
        self._ids = itertools.count(1)
        self._history: deque[bytes] = deque()
        self._meta = self._meta_json(None)
        self._nfreq = 0
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._fanout_thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None
        self._counts = {"rows_encoded": 0, "rows_missed": 0, "resets": 0,
                        "dropped_rows_closed": 0, "viewers_total": 0,
                        "refused_connections": 0, "refused_viewers": 0, "refused_origin": 0,
                        "closed_idle": 0, "closed_stalled": 0, "accept_errors": 0}
        self._rlog = RateLimitedLog(log)
        self._server: web.Server | None = None
        self._idle_since: dict[RequestHandler, float] = {}  # connections not in a handler
        self._failure: BaseException | None = None

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
        self._fanout_thread = threading.Thread(target=self._fanout, daemon=True,
                                               name="sunspec-web-fanout")
        self._fanout_thread.start()
        log.info("live view on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every viewer, stop serving and join both threads (idempotent)."""
        self._stop.set()
        fanout, self._fanout_thread = self._fanout_thread, None
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
        locked)."""
        viewers = [v.status() for v in list(self._viewers.values())]
        connections = len(self._server.connections) if self._server is not None else 0
        return {"url": self.url, "running": self.running, **self._health(connections),
                "viewers": len(viewers), "max_viewers": self.max_viewers,
                "connections": connections, "max_connections": self.max_connections,
                "dropped_rows": self._counts["dropped_rows_closed"]
                + sum(v["dropped_rows"] for v in viewers),
                **{k: v for k, v in self._counts.items() if k != "dropped_rows_closed"},
                "viewer": viewers}

    def _health(self, connections: int) -> dict[str, Any]:
        if self._failure is not None:
            return {"health": "failed", "health_reason": f"web server thread ended by "
                    f"{type(self._failure).__name__}: {self._failure}"}
        if self._loop_thread is not None and not self._stop.is_set() and not (
                self.running and self._fanout_thread is not None
                and self._fanout_thread.is_alive()):
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
                        web.get("/api/freqs", self._api_freqs)])
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

    # --- fan-out: one thread reads the ring and encodes each row once -----------------------
    def _fanout(self) -> None:
        try:
            self._follow()
        except BaseException as exc:  # a dead fan-out must be visible, not silent
            self._failure = exc
            log.error("web fan-out failed: %r", exc, exc_info=True)

    def _follow(self) -> None:
        ring: RingBuffer | None = None
        cursor = 0
        while not self._stop.is_set():
            current = self.source.ring
            if current is not ring:
                ring, cursor = current, 0
                self._post(_Message(self._meta_json(ring)), ring)
            if ring is None:
                self.source.wait_for_ring(_WAIT)
                continue
            if not ring.wait(cursor, _WAIT):
                continue
            rows = ring.since(cursor, _MAX_BATCH)
            cursor = rows.next_index
            self._counts["rows_missed"] += rows.missed
            self._counts["rows_encoded"] += len(rows)
            self._post(_rows_message(rows), ring)

    def _post(self, msg: _Message, ring: RingBuffer | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed since the check
                loop.call_soon_threadsafe(self._broadcast, msg, ring)

    def _broadcast(self, msg: _Message, ring: RingBuffer | None) -> None:
        """On the loop: keep the history for backfill and queue ``msg`` for every viewer."""
        if isinstance(msg.data, str):
            self._meta = msg.data
            self._history = deque(maxlen=ring.nrows if ring is not None else 0)
            self._nfreq = ring.nfreq if ring is not None else 0
            self._counts["resets"] += 1
        else:
            self._history.extend(msg.records)
        for viewer in self._viewers.values():
            viewer.push(msg)

    def _meta_json(self, ring: RingBuffer | None) -> str:
        info = self.source.stream_info
        freqs = ring.freqs_mhz if ring is not None else None
        return json.dumps({
            "type": "meta",
            "nrows": ring.nrows if ring is not None else 0,
            "nfreq": ring.nfreq if ring is not None else 0,
            "freqs_mhz": None if freqs is None else np.round(freqs, 6).tolist(),
            "stream": {k: info.get(k) for k in ("name", "sender_id", "beam", "nbeam", "beam_index",
                                                "product", "factor", "endpoint", "pols",
                                                "navg", "nint")},
        }, default=_jsonable)

    # --- WebSocket --------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        if len(self._viewers) >= self.max_viewers:
            self._counts["refused_viewers"] += 1
            raise web.HTTPServiceUnavailable(text=f"{self.max_viewers} viewers already: "
                                             "retry later", headers={"Retry-After": "10"})
        ws = web.WebSocketResponse(heartbeat=self.heartbeat, compress=False, max_msg_size=4096)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:  # bound what the kernel holds for a viewer that stops reading
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        await ws.prepare(request)
        viewer = _Viewer(next(self._ids), ws, request.remote or "?", self.queue_limit)
        await ws.send_str(json.dumps({"type": "hello", "viewer": viewer.ident}))
        # Join the fan-out and take the backfill in one loop turn: no row is missed or repeated.
        viewer.queue.append(_Message(self._meta))
        for start in range(0, len(self._history), _MAX_BATCH):
            chunk = list(itertools.islice(self._history, start, start + _MAX_BATCH))
            data = np.array([(MAGIC, len(chunk), self._nfreq)], HEADER).tobytes()
            viewer.queue.append(_Message(data + b"".join(chunk), len(chunk)))
        self._viewers[viewer.ident] = viewer
        viewer.wake.set()
        self._counts["viewers_total"] += 1
        sender = asyncio.create_task(self._send_loop(viewer))
        try:
            async for msg in ws:  # viewers send nothing we act on; this notices close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            del self._viewers[viewer.ident]
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
    async def _page(self, request: web.Request) -> web.Response:
        name = request.path.lstrip("/") or "index.html"
        return web.Response(body=self._static[name], content_type=_STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    def _read_status(self) -> dict[str, Any]:
        return self._status() if self._status is not None else {"web": self.status()}

    async def _api_status(self, _request: web.Request) -> web.Response:
        try:
            status = self._read_status()
            status["stream"] = self.source.stream_info
        except Exception as exc:  # e.g. no file descriptor free: answer, never fail
            log.warning("status unreadable: %r", exc)
            return _json_response({"error": repr(exc)}, status=503)
        status["server_time"] = time.time()
        return _json_response(status)

    async def _api_health(self, request: web.Request) -> web.Response:
        """``overall_health`` of the status: 200 if ok or degraded, 503 if failed
        (``?strict=1``: 503 unless ok), for standard HTTP monitors."""
        try:
            health = overall_health(self._read_status())
        except Exception as exc:
            health = {"health": "failed", "health_reason": f"status unreadable: {exc!r}",
                      "sections": {}}
        strict = request.query.get("strict", "0").lower() in ("1", "true", "yes")
        bad = health["health"] == "failed" or (strict and health["health"] != "ok")
        return _json_response(health, status=503 if bad else 200)

    async def _api_freqs(self, _request: web.Request) -> web.Response:
        ring = self.source.ring
        freqs = ring.freqs_mhz if ring is not None else None
        return _json_response({
            "nfreq": ring.nfreq if ring is not None else 0,
            "unit": "channel" if freqs is None else "MHz",
            "freqs_mhz": None if freqs is None else freqs.tolist(),
        })

    async def _api_latest(self, request: web.Request) -> web.Response:
        """``?n=`` newest rows (default 1); ``format=json`` (default), ``bin`` (the WebSocket
        form, see :mod:`.codec`) or ``npz`` (exact float32, for numpy)."""
        try:
            n = int(request.query.get("n", "1"))
        except ValueError:
            raise web.HTTPBadRequest(text="n must be an integer") from None
        fmt = request.query.get("format", "json")
        if n < 0 or fmt not in ("json", "bin", "npz"):
            raise web.HTTPBadRequest(text="n must be >= 0 and format one of json, bin, npz")
        ring = self.source.ring
        rows = ring.latest(n) if ring is not None else Rows.empty()
        loop = asyncio.get_running_loop()
        if fmt == "bin":
            body = await loop.run_in_executor(None, encode_rows, rows)
            return web.Response(body=body, content_type="application/octet-stream")
        if fmt == "npz":
            body = await loop.run_in_executor(None, _npz, rows)
            return web.Response(body=body, content_type="application/octet-stream")
        text = await loop.run_in_executor(None, _rows_json, rows)
        return web.Response(text=text, content_type="application/json")


def _rows_message(rows: Rows) -> _Message:
    """Encode ``rows`` once: the message for live viewers and each row's record for backfill."""
    data = encode_rows(rows)
    size = record_dtype(rows.data.shape[1]).itemsize
    body = memoryview(data)[HEADER.itemsize:]
    records = tuple(bytes(body[i * size:(i + 1) * size]) for i in range(len(rows)))
    return _Message(data, len(rows), records)


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
        "data": rows.data.tolist(),
    })


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


def serve(source: StreamSource, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          **kwargs: Any) -> WebServer:
    """Start the live view of ``source`` in its own threads; returns the running
    :class:`WebServer` (``.url``, ``.port``, ``.status()``, ``.stop()``). ``kwargs`` go to it."""
    return WebServer(source, host, port, **kwargs).start()
