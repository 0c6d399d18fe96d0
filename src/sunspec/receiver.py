"""Receiver: subscribes to a sunspec / OVRO-LWA spectrum stream and keeps a ring of rows.

The receiving thread only receives, validates and writes ring rows: every message either
becomes a row, or is counted under a named reason (``rejected``), as a ``duplicate``, as
waiting for a geometry change to be confirmed (``geometry_pending``) or as an end of
sequence; ``seq`` numbers never received are counted as ``lost``, per sender. The rules are
in docs/PROTOCOL.md ("Receiver rules"). Everything slow (plots, files, web clients) reads
the ring from its own thread. The thread waits on a poller with a timeout, so it costs
nothing while the stream is quiet, and checks for :meth:`Receiver.stop` before every message;
the wait and the receipt of a message's parts are one compiled call (:mod:`sunspec._poller`).

A sender's frames in the steady state (each header repeating the last but for its per-frame
keys, seq following on, same geometry) take a short path: the header's per-frame values are
read by a compiled scanner (:class:`~sunspec.protocol.HeaderReader`) and the frame goes
straight into the ring (:meth:`Receiver._steady_step`); every other message takes the full
path, which checks and counts everything. Both keep the same counts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from . import memory
from ._log import RateLimitedLog
from ._poller import WAIT_MESSAGE, WAIT_MONITOR, MessagePoller, message_poller
from ._worker import Worker
from .clock import CHAN_BW, channel_freqs_hz
from .curve import ClientKeys
from .encodings import DecodeError, decode_into
from .endpoint import check_endpoint
from .kernels import FrameReducer, Product, product_code
from .protocol import (
    END_TOPIC,
    HEADER_LIMIT,
    REJECT_REASONS,
    TOPIC,
    FrameHeader,
    HeaderReader,
    ProtocolError,
    Reject,
    SequenceEnd,
    check_payload_size,
    parse_end,
    stream_key,
)
from .ring import RingBuffer, Rows
from .source import wait_for_ring
from .status import StatusBoard

__all__ = ["Receiver", "StreamReceiver"]

log = logging.getLogger(__name__)

#: longest wait (s) of the receiving thread for a message before it checks whether the stream
#: has stalled (every half ``stall_timeout``); :meth:`Receiver.stop` wakes it at once
POLL_INTERVAL = 5.0
#: channels averaged per row, unless asked otherwise, for streams on a uniform channel grid
#: (an explicit frequency axis is kept channel by channel)
DEFAULT_FACTOR = 2
#: while a stream stays stalled, its warning is repeated this often (s)
STALL_REPEAT = 300.0

#: monitor events: a disconnection, and ZeroMQ's own reconnection attempts after one
_MONITORED = (zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED
              | zmq.EVENT_CONNECTED)
#: seconds a disconnection may go without a reconnection attempt before the socket is renewed
_ORPHAN_S = 1.0
_ORPHAN_MS = round(_ORPHAN_S * 1000 / 4)  # the wait while one is pending
_TOPIC_BYTES, _END_TOPIC_BYTES = len(TOPIC), len(END_TOPIC)
#: recent seq numbers per sender remembered to tell duplicates and late arrivals apart
_SEQ_WINDOW = 64
#: senders whose sequences are followed at once (the least recently heard is forgotten)
_MAX_SENDERS = 16


class _Sender:
    """The sequence accounting of one ``sender_id`` (docs/PROTOCOL.md, "Sequences").

    ``messages = rows + rejected + duplicates + pending`` and
    ``messages - duplicates + lost = span`` (the seq numbers its spans cover).
    """

    __slots__ = (
        "base",
        "dropped",
        "duplicates",
        "end",
        "lost",
        "messages",
        "pending",
        "recent",
        "rejected",
        "rows",
        "spans",
        "top",
    )

    def __init__(self) -> None:
        self.messages = self.rows = self.rejected = self.duplicates = self.pending = 0
        self.lost = 0
        self.spans = 0  # seq numbers covered by closed spans
        self.base: int | None = None  # first seq of the open span (None: no open span)
        self.top = -1  # highest seq received in the open span
        self.end: int | None = None  # seq_end of its end message, once received
        self.dropped: int | None = None  # what its end message says it dropped itself
        self.recent: list[tuple[int, Any] | None] = [None] * _SEQ_WINDOW

    @property
    def span(self) -> int:
        if self.base is None:
            return self.spans
        return self.spans + (self.end if self.end is not None else self.top + 1) - self.base

    def close_span(self) -> None:
        self.spans = self.span
        self.base, self.top, self.end = None, -1, None
        self.recent = [None] * _SEQ_WINDOW

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "rows": self.rows, "rejected": self.rejected,
                "duplicates": self.duplicates, "pending": self.pending, "lost": self.lost,
                "span": self.span, "last_seq": self.top if self.base is not None else None,
                "seq_end": self.end, "sender_dropped": self.dropped}


class _Candidate:
    """Frames of a new geometry waiting for confirmation, in a small ring of their own."""

    __slots__ = (
        "count",
        "factor",
        "geometry",
        "header",
        "next_seq",
        "reduce",
        "ring",
        "sender",
        "sender_id",
    )

    def __init__(self, geometry: tuple[Any, ...], ring: RingBuffer, reducer: FrameReducer,
                 sender: _Sender | None, h: FrameHeader, factor: int):
        self.geometry = geometry
        self.factor = factor
        self.ring = ring
        self.reduce = reducer.reduce
        self.sender = sender
        self.sender_id = h.sender_id
        self.next_seq: int | None = None
        self.count = 0  # rows held
        self.header = h  # the newest, for stream_info once confirmed


class Receiver(Worker):
    """Subscribe to a spectrum stream and keep the newest ``buffer_length`` reduced frames.

    Each frame (nbeam, nchan, npol) becomes one ring row: the ``product`` (see
    :class:`~sunspec.kernels.Product`, or a pol index via ``pol``) of the beam at index
    ``beam_index`` within the frame, averaged over ``factor`` adjacent channels. (The header's
    ``beam`` is the recorder's beam *number*, e.g. 1 for port 30001; it is reported in
    :attr:`stream_info`, never used to pick data.) ``chan0`` names the first recorder channel
    for version 1 streams, which do not carry it, so rows get frequencies. :meth:`start` and
    :meth:`stop` may be called at any time and repeatedly; :meth:`stop` returns once the
    message being handled is done and leaves the held data readable.

    A change of geometry (shape or frequency labels) replaces the ring only once
    ``confirm_frames`` consecutive frames confirm it (consecutive ``seq`` of one
    ``sender_id``); until then the old ring stays current. ``max_header_bytes`` (at least
    :data:`~sunspec.protocol.HEADER_LIMIT`) and ``max_message_bytes`` bound every inbound
    frame; ZeroMQ drops a connection that sends a larger one (counted as ``disconnects``).
    A ``seq`` jump over more than ``max_seq_gap`` is taken for a restart, not a loss.

    A receiver is a :class:`~sunspec.source.StreamSource`: consumers take it as one.
    :meth:`status` is its own counters; :meth:`get_buffer_status` adds the sections of the
    :class:`~sunspec.status.StatusBoard` ``status_board`` (a program's composed status: give
    one, or add sections to the receiver's own).
    """

    stop_timeout = 2.0
    #: the sender whose frames take :meth:`_steady_step`, their payload size, and the ring
    #: and kernel they go to
    _steady: tuple[_Sender, int, RingBuffer, Callable[[int], int]] | None

    def __init__(
        self,
        addr: str = "127.0.0.1",
        port: int = 9798,
        *,
        endpoint: str | None = None,
        name: str = "stream",
        buffer_length: int = 1200,
        product: Product | str | int = Product.XX,
        pol: int | None = None,
        factor: int | None = None,
        beam_index: int = 0,
        gc_interval: int = 100,
        chan0: int | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        max_header_bytes: int = 1024 * 1024,
        confirm_frames: int = 3,
        max_seq_gap: int = 2**24,
        rcvhwm: int = 100,
        context: zmq.Context | None = None,
        status_board: StatusBoard | None = None,
        curve: ClientKeys | None = None,
        stall_timeout: float = 10.0,
    ):
        if buffer_length < 1:
            raise ValueError(f"buffer_length must be >= 1, got {buffer_length}")
        if factor is not None and factor < 1:
            raise ValueError(f"factor must be >= 1 (or None: automatic), got {factor}")
        if beam_index < 0:
            raise ValueError(f"beam_index must be >= 0, got {beam_index}")
        if gc_interval < 0:
            raise ValueError(f"gc_interval must be >= 0 (0 = off), got {gc_interval}")
        if max_header_bytes < HEADER_LIMIT:
            raise ValueError(f"max_header_bytes must be >= {HEADER_LIMIT}, got {max_header_bytes}")
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be >= 1, got {max_message_bytes}")
        if confirm_frames < 1:
            raise ValueError(f"confirm_frames must be >= 1, got {confirm_frames}")
        if max_seq_gap < 0:
            raise ValueError(f"max_seq_gap must be >= 0, got {max_seq_gap}")
        if not 0 < stall_timeout < float("inf"):
            raise ValueError(f"stall_timeout must be > 0 s, got {stall_timeout}")
        self.endpoint = check_endpoint(endpoint or f"tcp://{addr}:{port}")
        #: seconds without a frame after which the stream counts as stalled (warned, degraded)
        self.stall_timeout = stall_timeout
        self._name = name
        self.buffer_length = buffer_length
        chosen = pol if pol is not None else product
        product_code(chosen, 1 << 30)  # a bad name fails now; a missing pol when frames arrive
        self.product: Product | int = chosen if isinstance(chosen, int) else Product(chosen)
        #: channels averaged per row as asked (``None``: :data:`DEFAULT_FACTOR` for streams
        #: on a uniform channel grid, 1 for an explicit axis)
        self.factor = factor
        self._factor = factor or DEFAULT_FACTOR  # in force for the current ring
        self._axis = "channels"
        self.beam_index = beam_index
        self.gc_interval = gc_interval
        self.chan0 = chan0
        self.max_message_bytes = max_message_bytes
        self.max_header_bytes = max_header_bytes
        self.confirm_frames = confirm_frames
        self.max_seq_gap = max_seq_gap
        self.rcvhwm = rcvhwm
        self._context = context
        #: CURVE keys (:class:`~sunspec.curve.ClientKeys`) for a relay's authenticated endpoint
        self.curve = curve
        #: the program's composed status; :meth:`get_buffer_status` adds its sections
        self.status_board = status_board if status_board is not None else StatusBoard()
        super().__init__()
        self._ring: RingBuffer | None = None
        self._rlog = RateLimitedLog(log)
        self._reset_stats()

    # --- lifecycle (start, stop, running, context manager: Worker) ---------------------------
    def _thread_name(self) -> str:
        return f"sunspec-recv {self.endpoint}"

    def _prepare(self) -> tuple[zmq.Socket, zmq.Socket]:
        """Connect the SUB socket the receiving thread will own, and its monitor."""
        sock, monitor = self._connect()
        self._wake_pipe()
        self._started_at = time.time()
        # what was sent while we were stopped is not lost: every span starts afresh
        self._stats["last_seq"] = None
        for sender in self._senders.values():
            sender.close_span()
        self._session_senders = 0
        self._steady = None
        self._stall_reset()
        log.info("receiving from %s (%s, factor %s, beam index %d)", self.endpoint,
                 self.product, self.factor or "auto", self.beam_index)
        return (sock, monitor)

    # --- data access (the StreamSource interface, and the deployed receiver's names) --------
    @property
    def name(self) -> str:
        """The stream's short name (status sections, file names)."""
        return self._name

    @property
    def ring(self) -> RingBuffer | None:
        """The current ring (``None`` before the first frame); replaced on a geometry change."""
        return self._ring

    def wait_for_ring(self, timeout: float | None = None) -> RingBuffer | None:
        """Wait until the first frame has arrived; returns the ring or ``None`` on timeout."""
        return wait_for_ring(self, timeout)

    def get_latest(self, n: int = 1) -> Rows:
        """The newest ``n`` rows (fewer if fewer held) with their times and frequencies."""
        ring = self._ring
        return Rows.empty() if ring is None else ring.latest(n)

    def get_latest_data(self, n_frames: int = 1) -> np.ndarray:
        """The newest ``n_frames`` rows as a float32 array (n, nfreq), oldest first."""
        return self.get_latest(n_frames).data

    @property
    def stream_info(self) -> dict[str, Any]:
        """The current ring's stream: the checked header keys that describe it (never a
        value that failed a check), with this receiver's product and factor."""
        info = dict(self._stream_info)
        info.update(name=self._name, product=str(self.product), factor=self._factor,
                    factor_auto=self.factor is None, axis=self._axis,
                    beam_index=self.beam_index, endpoint=self.endpoint)
        return info

    def get_buffer_status(self) -> dict[str, Any]:
        """:meth:`status`, plus every section of ``status_board`` under its name (the
        deployed receiver's name for it; cheap; any thread)."""
        status = self.status()
        status.update(self.status_board.read())
        return status

    def status(self) -> dict[str, Any]:
        """The receiver's own counters, rates, delays and memory (cheap; any thread).

        The keys are listed in README.md ("Status"); ``buffer_index`` is the ring row
        written next, as in the deployed receiver.
        """
        now = time.time()
        ring = self._ring
        st = self._stats
        latest = ring.latest(1) if ring is not None else Rows.empty()
        has_row = len(latest) > 0
        row = latest.data[-1] if has_row else latest.data  # only read where has_row
        nmsg = st["messages"]
        state, quiet = self._stall_state()
        return {
            "running": self.running,
            "state": state,
            "quiet_s": quiet,
            **self._health(state, quiet),
            "name": self._name,
            "endpoint": self.endpoint,
            "product": str(self.product),
            "factor": self._factor,
            "factor_auto": self.factor is None,
            "axis": self._axis,
            "buffer_index": ring.spare_row if ring is not None else 0,
            "buffer_shape": (ring.nrows, ring.nfreq) if ring is not None else
            (self.buffer_length, 0),
            "frames_received": st["frames"],
            "frames_held": ring.held if ring is not None else 0,
            "messages": st["messages"],
            "lost": st["lost"],
            "rejected": dict(st["rejected"]),
            "rejected_total": sum(st["rejected"].values()),
            "duplicates": st["duplicates"],
            "geometry_pending": st["pending"],
            "sequence_ends": st["ends"],
            "keys_ignored": st["keys_ignored"],
            "disconnects": st["disconnects"],
            "senders": {k: v.as_dict() for k, v in list(self._senders.items())},
            "restarts": st["restarts"],
            "geometry_changes": st["geometry_changes"],
            "sender_id": self._stream_info.get("sender_id"),
            "last_seq": st["last_seq"],
            "frame_rate": self._frame_rate(ring, now),
            "delay_s": now - st["last_timestamp"] if st["last_timestamp"] else None,
            "latency_s": float(latest.arrival_unix[0]) - st["last_timestamp"]
            if has_row and st["last_timestamp"] else None,
            "data_age_s": now - float(latest.end_unix[0]) if has_row else None,
            "latest_time": str(latest.times[0]) if has_row else None,
            "latest_min": float(np.min(row)) if has_row else None,
            "latest_max": float(np.max(row)) if has_row else None,
            "latest_mean": float(np.mean(row, dtype=np.float64)) if has_row else None,
            "process_us_mean": 1e6 * st["proc_time"] / nmsg if nmsg else None,
            "process_us_max": 1e6 * st["proc_max"],
            "gc_runs": st["gc_runs"],
            "gc_collected": st["gc_collected"],
            "gc_time_ms": 1e3 * st["gc_time"],
            "rss_mb": memory.rss_mb(),
            "uptime_s": now - self._started_at if self._started_at else 0.0,
        }

    # --- memory -----------------------------------------------------------------------------
    def get_memory_info(self) -> dict[str, Any]:
        """RSS/VMS (MiB), ring bytes, collector counts and tracked objects."""
        info = memory.memory_info()
        info["ring_bytes"] = self._ring.nbytes if self._ring is not None else 0
        info["payload_buffer_bytes"] = self._payload.nbytes if self._payload is not None else 0
        return info

    def force_garbage_collection(self) -> int:
        """Run a full collection now; returns the number of objects collected."""
        n, dt = memory.collect_garbage()
        self._count_gc(n, dt)
        log.info("garbage collection: %d objects in %.1f ms", n, dt * 1e3)
        return n

    def optimize_memory(self) -> dict[str, Any]:
        """Free what the process no longer needs, never any held data.

        Runs a full garbage collection and hands free heap pages back to the operating
        system (glibc ``malloc_trim``). The ring and everything in it are untouched.
        Returns RSS before and after (MiB), objects collected and whether trimming ran.
        """
        before = memory.rss_mb()
        collected = self.force_garbage_collection()
        trimmed = memory.release_free_heap()
        after = memory.rss_mb()
        log.info("optimize_memory: RSS %.1f -> %.1f MiB", before, after)
        return {"memory_before": before, "memory_after": after,
                "objects_collected": collected, "heap_trimmed": trimmed}

    # --- receiving thread -------------------------------------------------------------------
    def _reset_stats(self) -> None:
        self._stats: dict[str, Any] = {
            "messages": 0, "frames": 0, "lost": 0, "restarts": 0, "geometry_changes": 0,
            "rejected": dict.fromkeys(REJECT_REASONS, 0), "duplicates": 0, "pending": 0,
            "ends": 0, "keys_ignored": 0, "disconnects": 0,
            "last_seq": None, "last_timestamp": None, "proc_time": 0.0, "proc_max": 0.0,
            "gc_runs": 0, "gc_collected": 0, "gc_time": 0.0,
        }
        self._stream_info: dict[str, Any] = {}
        self._info_key: tuple[Any, ...] | None = None
        self._started_at = 0.0
        self._payload: np.ndarray | None = None
        self._headers: HeaderReader  # made with the payload buffer, before the first message
        self._encoded: np.ndarray | None = None  # an encoded payload, while it is decoded
        self._geometry: tuple[Any, ...] | None = None
        self._reducer: FrameReducer | None = None
        self._candidate: _Candidate | None = None
        self._senders: OrderedDict[str, _Sender] = OrderedDict()
        self._session_senders = 0  # senders heard since start()
        self._cur: _Sender | None = None  # sender of the message being handled
        self._steady = None
        self._since_gc = 0

    def _connect(self) -> tuple[zmq.Socket, zmq.Socket]:
        """A connected SUB socket and the monitor of its connections."""
        ctx = self._context or zmq.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sock.setsockopt(zmq.LINGER, 0)
        # ZeroMQ drops a connection that sends a larger frame before it is allocated
        sock.setsockopt(zmq.MAXMSGSIZE, max(self.max_message_bytes, self.max_header_bytes))
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # all topics, so stray ones are seen and counted
        monitor = sock.get_monitor_socket(_MONITORED)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.endpoint)
        self._orphaned_at: float | None = None
        return sock, monitor

    def _run(self, sock: zmq.Socket, monitor: zmq.Socket) -> None:
        topic = bytearray(len(TOPIC) + 1)
        if self._payload is None:
            self._payload = np.empty(self.max_message_bytes, np.uint8)
            self._headers = HeaderReader(bytearray(self.max_header_bytes),
                                         self.max_header_bytes)
        header, payload = self._headers.buffer, self._payload.data
        stop = self._stop
        wake = self._wakeup.fd if self._wakeup is not None else -1
        poller = message_poller(sock, monitor, wake, topic, header, payload)
        interval = self.stall_check_interval
        timeout = steady_timeout = round(interval * 1000)
        receive = self._receive_one
        next_check = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_check:  # once per interval, not for every message
                    self._check_stalled()
                    next_check = now + interval
                # one message per wait: the poll returns at once while more are waiting
                ready = poller.wait(timeout)
                if ready == WAIT_MESSAGE:
                    receive(sock, poller, topic)
                elif ready == WAIT_MONITOR:
                    self._monitor_event(monitor)
                    # an orphaned socket is looked at more often, to be renewed in time
                    timeout = steady_timeout if self._orphaned_at is None else _ORPHAN_MS
                elif self._orphaned_at is not None and \
                        time.monotonic() - self._orphaned_at >= _ORPHAN_S:
                    # messages first: a socket is renewed only once nothing is queued
                    sock, monitor = self._reconnect(sock, monitor)
                    poller = message_poller(sock, monitor, wake, topic, header, payload)
                    timeout = steady_timeout
                if self.gc_interval and self._since_gc >= self.gc_interval:
                    self._periodic_gc()
        except zmq.ZMQError as exc:  # the context was terminated under us
            log.error("receiving stopped: %s", exc)
        finally:
            _close(sock, monitor)

    def _monitor_event(self, monitor: zmq.Socket) -> None:
        """Count a disconnection. ZeroMQ retries after a lost peer (a retry event follows),
        but not after a frame over MAXMSGSIZE, which it takes for a protocol error: a
        disconnection no retry follows within :data:`_ORPHAN_S` is repaired by
        :meth:`_reconnect`, once every message already queued has been read."""
        event = recv_monitor_message(monitor)
        if event["event"] != zmq.EVENT_DISCONNECTED:
            self._orphaned_at = None  # ZeroMQ is connecting again by itself
            return
        self._stats["disconnects"] += 1
        self._orphaned_at = time.monotonic()
        self._rlog.log(logging.WARNING, "disconnect", "disconnected from %s (the sender "
                       "stopped, or sent a frame over %d bytes)", self.endpoint,
                       max(self.max_message_bytes, self.max_header_bytes))

    def _reconnect(self, sock: zmq.Socket, monitor: zmq.Socket
                   ) -> tuple[zmq.Socket, zmq.Socket]:
        """Replace an idle socket whose connection ZeroMQ gave up on by a new one (closing
        it, never disconnecting: ZeroMQ aborts when a connection ends between the frames of
        a message being read)."""
        log.info("connecting to %s again", self.endpoint)
        _close(sock, monitor)
        return self._connect()

    def _receive_one(self, sock: zmq.Socket, poller: MessagePoller, topic: bytearray) -> None:
        """Check and take the message ``poller`` received (its first three parts)."""
        t0 = time.perf_counter()
        arrival = poller.arrival
        self._stats["messages"] += 1
        self._cur = None
        try:
            parts, ntopic, nheader = poller.parts, poller.ntopic, poller.nheader
            if parts == 1:
                raise ProtocolError(Reject.PARTS, "1 frame, expected 3")
            if nheader > self.max_header_bytes:
                raise ProtocolError(Reject.OVERSIZE, f"header of {nheader} bytes exceeds "
                                    f"max_header_bytes = {self.max_header_bytes}")
            if ntopic == _END_TOPIC_BYTES and topic.startswith(END_TOPIC):
                if parts == 3:
                    raise ProtocolError(Reject.PARTS, f"end message of {3 + _drain(sock)} "
                                        "frames, expected 2")
                self._end(parse_end(memoryview(self._headers.buffer)[:nheader],
                                    self.max_header_bytes))
                return
            if parts == 2:
                raise ProtocolError(Reject.PARTS, "2 frames, expected 3")
            if poller.more:
                raise ProtocolError(Reject.PARTS, f"{3 + _drain(sock)} frames, expected 3")
            if ntopic != _TOPIC_BYTES or not topic.startswith(TOPIC):
                raise ProtocolError(Reject.TOPIC, f"topic {bytes(topic[:ntopic])!r}...")
            nbytes = poller.npayload
            if nbytes > self.max_message_bytes:
                raise ProtocolError(Reject.OVERSIZE, f"payload of {nbytes} bytes exceeds "
                                    f"max_message_bytes = {self.max_message_bytes}")
            h: FrameHeader = self._headers.read(nheader)
            ident = self._headers.digest  # tells an exact duplicate from another message
            if self._steady is not None:
                if self._headers.repeated and self._steady_step(h, ident, nbytes, arrival):
                    return
                self._steady = None
            if h.seq is not None:
                self._cur = self._track(h.sender_id, h.seq, ident)
                if self._cur is None:
                    return  # a duplicate, counted
            if h.encoding != "raw":
                nbytes = self._decode(h, nbytes)
            check_payload_size(h, nbytes)
            if h.ignored:
                self._stats["keys_ignored"] += len(h.ignored)
                self._rlog.log(logging.WARNING, "keys_ignored", "ignored bad optional keys %s "
                               "of a message from %s", ", ".join(h.ignored), self.endpoint)
            self._accept(h, arrival)
        except ProtocolError as exc:
            _drain(sock)  # the rest of the message, if any
            if exc.seq is not None and self._cur is None:  # rejected after its seq was read
                self._cur = self._track(exc.sender_id, exc.seq, self._headers.digest)
                if self._cur is None:
                    return
            self._reject(exc.reason, str(exc))
        except zmq.ZMQError:
            raise
        except Exception as exc:  # never let one message end reception
            _drain(sock)  # the rest of the message, if any
            self._count_rejected(Reject.INTERNAL)
            self._rlog.log(logging.ERROR, Reject.INTERNAL.value, "message from %s not handled: %r",
                           self.endpoint, exc, exc_info=True)
        finally:
            dt = time.perf_counter() - t0
            st = self._stats
            st["proc_time"] += dt
            if dt > st["proc_max"]:
                st["proc_max"] = dt

    def _count_rejected(self, reason: Reject, n: int = 1, sender: _Sender | None = None) -> None:
        self._stats["rejected"][reason.value] += n
        sender = sender or self._cur
        if sender is not None:
            sender.rejected += n

    def _reject(self, reason: Reject, detail: str) -> None:
        self._count_rejected(reason)
        self._rlog.log(logging.WARNING, reason.value, "rejected message from %s: %s",
                       self.endpoint, detail)

    def _decode(self, h: FrameHeader, nbytes: int) -> int:
        """Decode an encoded payload (docs/PROTOCOL.md part D) in place: the encoded bytes
        are copied aside, the frame written back into the payload buffer; returns its size."""
        payload = self._payload
        assert payload is not None
        if h.nbytes > payload.nbytes:
            raise ProtocolError(Reject.OVERSIZE, f"decoded frame of {h.nbytes} bytes exceeds "
                                f"max_message_bytes = {payload.nbytes}")
        if self._encoded is None or self._encoded.nbytes < nbytes:
            self._encoded = np.empty(payload.nbytes, np.uint8)
        encoded = self._encoded[:nbytes]
        encoded[:] = payload[:nbytes]
        meta = {**(h.codec or {}), "data_shape": list(h.shape)}
        try:
            return decode_into(h.encoding, encoded, payload[: h.nbytes], meta)
        except DecodeError as exc:
            raise ProtocolError(Reject(exc.reason), str(exc)) from None

    # --- rows and geometry ------------------------------------------------------------------
    def _accept(self, h: FrameHeader, arrival: float) -> None:
        """Write a checked frame into the current ring, or into the candidate of its new
        geometry (committed to a fresh ring once confirmed)."""
        chan0 = h.chan0 if h.chan0 is not None or h.freqs_hz is not None else self.chan0
        geometry = (h.nbeam, h.nchan, h.npol, chan0, h.chan_bw, h.cfreq0, h.freqs_hz, h.unit)
        cand = None
        if geometry == self._geometry:
            if self._candidate is not None:
                self._abandon("a frame of the current geometry came first")
            ring, reduce = self._ring, self._reducer.reduce  # type: ignore[union-attr]
        else:
            cand = self._gate(h, geometry)
            if cand is None:
                return
            ring, reduce = cand.ring, cand.reduce
        assert ring is not None
        if h.missing:
            self._blank_missing(h)
        nbad = reduce(ring.spare_row)
        factor = cand.factor if cand is not None else self._factor
        if h.descending:
            row = ring.data[ring.spare_row]
            row[:] = row[::-1].copy()  # rows are kept in ascending frequency
        if nbad and (not h.missing or self._unflagged_nonfinite(ring, h, factor)):
            self._reject(Reject.NONFINITE, f"{nbad} of {ring.nfreq} values not finite "
                         f"(frame ending {h.end_tag})")
            return
        ring.commit(h.end_tag, h.end_unix, -1 if h.seq is None else h.seq, arrival)
        st = self._stats
        if cand is None:
            st["frames"] += 1
            st["last_timestamp"] = h.timestamp
            if self._cur is not None:
                self._cur.rows += 1
            self._since_gc += 1
            key = stream_key(h)
            if key != self._info_key:
                self._info_key = key
                self._stream_info = h.stream_keys()
            if self._headers.kept and self._cur is not None and h.encoding == "raw" \
                    and not h.missing and not h.ignored and not h.descending:
                self._steady = (self._cur, h.nbytes, ring, reduce)
            return
        cand.count += 1
        cand.header = h
        if cand.count >= (self.confirm_frames if self._ring is not None else 1):
            self._confirm(cand)
            return
        st["pending"] += 1
        if cand.sender is not None:
            cand.sender.pending += 1

    def _steady_step(self, h: FrameHeader, ident: int, nbytes: int, arrival: float) -> bool:
        """Take a frame in a few steps, or return False having changed nothing.

        A frame takes them when its header repeats, but for its per-frame keys, the last
        frame taken into the current ring by the full path (:meth:`_track`, :meth:`_accept`),
        which had no key to ignore or blank and a raw payload, the same size as this one's:
        so nothing of the geometry or the stream is new. Its seq must follow that sender's
        last, and its values be finite; anything else goes the full path. (The sender is the
        most recently heard already: any other sender's message ends the steady state.)
        """
        sender, size, ring, reduce = self._steady  # type: ignore[misc]
        seq = h.seq
        if seq is None or seq != sender.top + 1 or nbytes != size or sender.end is not None \
                or sender.base is None:
            return False
        if reduce(ring.spare_row):
            return False
        ring.commit(h.end_tag, h.end_unix, seq, arrival)
        sender.messages += 1
        sender.rows += 1
        sender.top = seq
        sender.recent[seq % _SEQ_WINDOW] = (seq, ident)
        st = self._stats
        st["last_seq"] = seq
        st["frames"] += 1
        st["last_timestamp"] = h.timestamp
        self._since_gc += 1
        return True

    def _gate(self, h: FrameHeader, geometry: tuple[Any, ...]) -> _Candidate | None:
        """The candidate a frame of a new geometry joins (a new one unless it continues the
        current run); ``None`` if the receiver cannot use that geometry (rejected)."""
        cand = self._candidate
        if cand is None or cand.geometry != geometry or cand.sender_id != h.sender_id \
                or cand.next_seq != h.seq:
            try:
                cand = self._new_candidate(h, geometry)
            except ValueError as exc:
                self._reject(Reject.GEOMETRY, str(exc))
                return None
        cand.next_seq = None if h.seq is None else h.seq + 1
        return cand

    def _new_candidate(self, h: FrameHeader, geometry: tuple[Any, ...]) -> _Candidate:
        nbeam, nchan, npol = h.shape
        if self.beam_index >= nbeam:
            raise ValueError(f"beam index {self.beam_index} asked for, the stream has "
                             f"{nbeam} beams")
        product_code(self.product, npol)
        factor = self.factor or (1 if h.freqs_hz is not None else DEFAULT_FACTOR)
        if nchan % factor:
            raise ValueError(f"factor {factor} does not divide nchan = {nchan}")
        if self._candidate is not None:
            self._abandon("another geometry or sender broke its run")
        nfreq = nchan // factor
        ring = RingBuffer(self.confirm_frames, nfreq,
                          freqs_hz=self._freqs_hz(h, geometry, factor))
        cand = _Candidate(geometry, ring, self._bind(h, ring, factor), self._cur, h, factor)
        self._candidate = cand
        return cand

    def _bind(self, h: FrameHeader, ring: RingBuffer, factor: int) -> FrameReducer:
        """The kernel reducing the payload buffer, read as ``h``'s shape, into ``ring``."""
        assert self._payload is not None  # allocated before the first message
        frame = self._payload[: h.nbytes].view(np.float32).reshape(h.shape)
        return FrameReducer(frame, ring.data, beam=self.beam_index, product=self.product,
                            factor=factor)

    def _blank_missing(self, h: FrameHeader) -> None:
        """Make the channels the sender declared missing NaN in the payload (every pol of
        the beam kept), so that rows hold them as missing whatever the values sent."""
        assert self._payload is not None
        frame = self._payload[: h.nbytes].view(np.float32).reshape(h.shape)
        frame[self.beam_index, list(h.missing), :] = np.nan

    @staticmethod
    def _unflagged_nonfinite(ring: RingBuffer, h: FrameHeader, factor: int) -> bool:
        """True if the spare row has a non-finite value outside the channels ``h`` declared
        missing (averaged ``factor`` to a row channel; rows in ascending frequency)."""
        bad = ~np.isfinite(ring.data[ring.spare_row, : ring.nfreq])
        rows = [m // factor for m in h.missing]
        if h.descending:
            rows = [ring.nfreq - 1 - i for i in rows]
        bad[rows] = False
        return bool(bad.any())

    def _abandon(self, why: str) -> None:
        """Count the candidate's frames as ``unconfirmed`` rejections and drop it."""
        cand, self._candidate = self._candidate, None
        assert cand is not None
        self._stats["pending"] -= cand.count
        if cand.sender is not None:
            cand.sender.pending -= cand.count
        if cand.count:
            self._count_rejected(Reject.UNCONFIRMED, cand.count, cand.sender)
            self._rlog.log(logging.WARNING, Reject.UNCONFIRMED.value, "%d frame(s) of "
                           "geometry %s from %s not confirmed (%s)", cand.count,
                           cand.geometry, cand.sender_id, why)

    def _confirm(self, cand: _Candidate) -> None:
        """Make the candidate's geometry current: a fresh ring holding its rows."""
        self._candidate = None
        rows = cand.ring.latest(cand.count)
        ring = RingBuffer(self.buffer_length, cand.ring.nfreq, freqs_hz=cand.ring.freqs_hz)
        for i in range(len(rows)):
            ring.data[ring.spare_row] = rows.data[i]
            ring.commit(int(rows.end_tag[i]), float(rows.end_unix[i]), int(rows.seq[i]),
                        float(rows.arrival_unix[i]))
        if self._geometry is not None:
            self._stats["geometry_changes"] += 1
            log.warning("stream geometry changed %s -> %s (confirmed by %d frames): starting "
                        "a fresh ring", self._geometry, cand.geometry, cand.count)
        h = cand.header
        self._reducer = self._bind(h, ring, cand.factor)
        self._factor = cand.factor
        self._axis = _axis_kind(h, cand.geometry[3])
        self._geometry = cand.geometry
        self._info_key = stream_key(h)
        self._stream_info = h.stream_keys()
        self._ring = ring  # after stream_info: a consumer seeing the ring sees its labels
        st = self._stats
        st["frames"] += cand.count
        st["pending"] -= cand.count - 1  # the newest was never counted as pending
        st["last_timestamp"] = h.timestamp
        self._since_gc += cand.count
        if cand.sender is not None:
            cand.sender.rows += cand.count
            cand.sender.pending -= cand.count - 1

    @staticmethod
    def _freqs_hz(h: FrameHeader, geometry: tuple[Any, ...], factor: int
                  ) -> np.ndarray | None:
        """Row frequencies: the explicit axis (ascending: a descending one's rows are kept
        reversed), the recorder's grid from ``chan0`` (the header's or this receiver's) or
        from ``cfreq0``, each averaged over ``factor`` channels; ``None`` (channel indices)
        when the stream says none of these."""
        chan0 = geometry[3]
        chan_bw = h.chan_bw if h.chan_bw is not None else (
            h.bw / h.nchan if h.bw is not None else CHAN_BW)
        if h.freqs_hz is not None:
            axis = np.asarray(h.freqs_hz, np.float64)
        elif chan0 is not None:
            return channel_freqs_hz(chan0, h.nchan, factor) * (chan_bw / CHAN_BW)
        elif h.cfreq0 is not None:
            axis = np.asarray(h.cfreq0 + np.arange(h.nchan) * chan_bw, np.float64)
        else:
            return None
        freqs = axis.reshape(-1, factor).mean(axis=1)
        return freqs[::-1].copy() if freqs[0] > freqs[-1] else freqs

    # --- sequences --------------------------------------------------------------------------
    def _track(self, sender_id: str | None, seq: int, ident: Any) -> _Sender | None:
        """Account one message of ``sender_id`` with ``seq``; ``ident`` (a hash of its
        header) tells an exact duplicate from a restart. Returns the sender, or ``None`` for
        a duplicate (counted)."""
        key = sender_id or ""
        senders = self._senders
        sender = senders.get(key)
        if sender is None:
            sender = senders[key] = _Sender()
            if len(senders) > _MAX_SENDERS:
                senders.popitem(last=False)
        else:
            senders.move_to_end(key)
        sender.messages += 1
        st = self._stats
        st["last_seq"] = seq
        top = sender.top
        if sender.base is None:  # first heard since start(): a restart if it is new and
            # another sender was heard before it
            new = sender.messages == 1 and self._session_senders > 0
            self._open_span(sender, key, seq, "new sender_id" if new else None)
        elif sender.end is not None:
            self._open_span(sender, key, seq, f"seq {seq} after its end at {sender.end}")
        elif seq > top:
            gap = seq - top - 1
            if gap > self.max_seq_gap:
                self._open_span(sender, key, seq, f"seq jumped {top} -> {seq}", from_zero=False)
            else:
                if gap:
                    self._lose(sender, gap, f"seq {top} -> {seq}")
                sender.top = seq
        else:
            slot = sender.recent[seq % _SEQ_WINDOW]
            in_window = top - seq < _SEQ_WINDOW
            if in_window and slot is not None and slot[0] == seq:
                if slot[1] == ident:
                    sender.duplicates += 1
                    st["duplicates"] += 1
                    self._rlog.log(logging.WARNING, "duplicate", "duplicate of seq %d from %s",
                                   seq, key)
                    return None
                self._open_span(sender, key, seq, f"seq {seq} again, another message")
            elif in_window and seq >= sender.base:  # late: it was counted lost
                sender.lost -= 1
                st["lost"] -= 1
            else:
                self._open_span(sender, key, seq, f"seq {top} -> {seq}")
        sender.recent[seq % _SEQ_WINDOW] = (seq, ident)
        return sender

    def _open_span(self, sender: _Sender, key: str, seq: int, restart: str | None, *,
                   from_zero: bool = True) -> None:
        """Start a span of ``sender``'s seq numbers at ``seq``; ``restart`` says why the
        sender restarted, if it did. A restarted sender's span starts at 0 (what it sent
        before we heard it is lost) unless ``from_zero`` is false or ``seq`` is implausible."""
        sender.close_span()
        base = seq
        if restart is not None:
            self._stats["restarts"] += 1
            log.warning("sender %s restarted (%s)", key, restart)
            if from_zero and seq <= self.max_seq_gap:
                base = 0
        self._session_senders += 1
        sender.base, sender.top = base, seq
        if seq > base:
            self._lose(sender, seq - base, f"seq 0 -> {seq} of a restarted sender")

    def _lose(self, sender: _Sender, n: int, what: str) -> None:
        sender.lost += n
        self._stats["lost"] += n
        self._rlog.log(logging.WARNING, "lost", "lost %d messages (%s)", n, what)

    def _end(self, end: SequenceEnd) -> None:
        """An end-of-sequence message: what its sender sent after our last is lost."""
        self._stats["ends"] += 1
        sender = self._senders.get(end.sender_id)
        if sender is None or sender.base is None or sender.end is not None \
                or end.seq_end <= sender.top or end.seq_end - sender.top - 1 > self.max_seq_gap:
            log.info("end of sequence of %s at seq %d ignored: no open span it can end",
                     end.sender_id, end.seq_end)
            return
        if end.seq_end > sender.top + 1:
            self._lose(sender, end.seq_end - sender.top - 1, f"end of sequence at {end.seq_end}")
        sender.end, sender.dropped = end.seq_end, end.dropped
        log.info("sender %s ended its sequence at seq %d", end.sender_id, end.seq_end)

    def _periodic_gc(self) -> None:
        self._since_gc = 0
        n, dt = memory.collect_garbage(0)
        self._count_gc(n, dt)

    def _count_gc(self, n: int, dt: float) -> None:
        st = self._stats
        st["gc_runs"] += 1
        st["gc_collected"] += n
        st["gc_time"] += dt

    # --- stalled detection and health -------------------------------------------------------
    def _stall_reset(self) -> None:
        """Start the stall clock (at :meth:`start`): silence counts from now."""
        st = self._stats
        self._stall_mark = (time.monotonic(), st["frames"], st["messages"], dict(st["rejected"]))
        self._stalled_logged: float | None = None

    def _check_stalled(self) -> None:
        """Receiving thread: warn (then every ``STALL_REPEAT`` s) while no frame arrived for
        ``stall_timeout`` s; note when frames come back."""
        now = time.monotonic()
        since, frames, _, _ = self._stall_mark
        st = self._stats
        if st["frames"] != frames:
            if self._stalled_logged is not None:
                log.info("frames from %s again after %.0f s without", self.endpoint, now - since)
            self._stall_mark = (now, st["frames"], st["messages"], dict(st["rejected"]))
            self._stalled_logged = None
        elif now - since >= self.stall_timeout and (
                self._stalled_logged is None or now - self._stalled_logged >= STALL_REPEAT):
            self._stalled_logged = now
            log.warning("%s", self._stall_reason(now - since))

    @property
    def stall_check_interval(self) -> float:
        """Seconds between the receiving thread's stall checks: its longest wait for a
        message (half ``stall_timeout``, at most ``POLL_INTERVAL``)."""
        return min(POLL_INTERVAL, self.stall_timeout / 2)

    def _stall_state(self) -> tuple[str, float | None]:
        """(``stopped`` | ``waiting`` | ``receiving`` | ``stalled``, s since the last frame)."""
        if not self.running:
            return "stopped", None
        quiet = time.monotonic() - self._stall_mark[0]
        if quiet >= self.stall_timeout:
            return "stalled", quiet
        return ("receiving" if self._stats["frames"] else "waiting"), quiet

    def _stall_reason(self, quiet: float) -> str:
        _, frames, messages, rejected = self._stall_mark
        st = self._stats
        what = "since start" if frames == 0 else "since the stream stopped"
        reason = f"no frame from {self.endpoint} for {quiet:.0f} s ({what}): "
        arrived = st["messages"] - messages
        if not arrived:
            return reason + ("nothing arrives: is the sender running and publishing there? "
                             "(check --addr/--port or --endpoint, and firewalls)")
        why = ", ".join(f"{k} {v - rejected.get(k, 0)}" for k, v in st["rejected"].items()
                        if v - rejected.get(k, 0))
        return reason + f"{arrived} messages arrived but were rejected ({why}): see the log"

    def _health(self, state: str, quiet: float | None) -> dict[str, Any]:
        health = self.health()
        if health["health"] == "ok" and self._thread is not None and not self.running:
            health = {"health": "failed", "health_reason": "the receiving thread ended"}
        elif health["health"] == "ok" and state == "stalled" and quiet is not None:
            health = {"health": "degraded", "health_reason": self._stall_reason(quiet)}
        return health

    @staticmethod
    def _frame_rate(ring: RingBuffer | None, now: float, window: float = 10.0) -> float:
        """Frames per second that arrived over the last ``window`` seconds (less at start)."""
        if ring is None or ring.held == 0:
            return 0.0
        arrivals = ring.recent_arrivals(min(ring.held, 10_000))
        recent = arrivals[arrivals > now - window]
        if len(recent) == len(arrivals):  # the ring does not reach back a whole window
            window = now - recent[0] if len(recent) else window
        return float(len(recent) / max(window, 1e-3))


def _axis_kind(h: FrameHeader, chan0: int | None) -> str:
    """How a stream labels its channels: ``explicit`` (a list of frequencies), ``uniform``
    (the recorder's grid: ``chan0`` or ``cfreq0``) or ``channels`` (indices only)."""
    if h.freqs_hz is not None:
        return "explicit"
    return "uniform" if chan0 is not None or h.cfreq0 is not None else "channels"


def _close(sock: zmq.Socket, monitor: zmq.Socket) -> None:
    """Close a socket and its monitor (both, even once the context is terminated: a
    terminating context waits for them)."""
    with contextlib.suppress(zmq.ZMQError):  # refused once the context is terminated
        sock.disable_monitor()
    monitor.close(linger=0)
    sock.close(linger=0)


def _drain(sock: zmq.Socket) -> int:
    """Discard the rest of a multipart message; returns how many frames were dropped."""
    n = 0
    while sock.getsockopt(zmq.RCVMORE):
        sock.recv_into(bytearray())
        n += 1
    return n


class StreamReceiver(Receiver):
    """The deployed receiver's interface: ``StreamReceiver(stream_addr, stream_port, ...)``."""

    def __init__(self, stream_addr: str = "127.0.0.1", stream_port: int = 9798,
                 buffer_length: int = 1200, gc_interval: int = 100, **kwargs: Any):
        super().__init__(stream_addr, stream_port, buffer_length=buffer_length,
                         gc_interval=gc_interval, **kwargs)
