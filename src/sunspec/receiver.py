"""Receiver: subscribes to a sunspec / OVRO-LWA spectrum stream and keeps a ring of rows.

The receiving thread only receives, validates and writes ring rows: every message either
becomes a row or is counted under a named reason (``rejected``), and gaps in the sender's
``seq`` are counted as ``lost``. Everything slow (plots, files, web clients) reads the ring
from its own thread. The thread waits on a poller with a timeout, so it costs nothing while
the stream is quiet and notices :meth:`Receiver.stop` within ``POLL_INTERVAL``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import zmq

from . import memory
from ._log import RateLimitedLog
from ._worker import Worker
from .clock import CHAN_BW, channel_freqs_hz
from .curve import ClientKeys
from .endpoint import check_endpoint
from .kernels import FrameReducer, Product, product_code
from .protocol import (
    REJECT_REASONS,
    TOPIC,
    FrameHeader,
    ProtocolError,
    Reject,
    check_payload_size,
    parse_header,
)
from .ring import RingBuffer, Rows
from .source import wait_for_ring
from .status import StatusBoard

__all__ = ["Receiver", "StreamReceiver"]

log = logging.getLogger(__name__)

#: seconds the receiving thread waits for a message before checking for stop
POLL_INTERVAL = 0.25
#: messages handled per wake-up before housekeeping (stop check, GC) gets a turn
_BATCH = 256
#: while a stream stays stalled, its warning is repeated this often (s)
STALL_REPEAT = 300.0


class Receiver(Worker):
    """Subscribe to a spectrum stream and keep the newest ``buffer_length`` reduced frames.

    Each frame (nbeam, nchan, npol) becomes one ring row: the ``product`` (see
    :class:`~sunspec.kernels.Product`, or a pol index via ``pol``) of the beam at index
    ``beam_index`` within the frame, averaged over ``factor`` adjacent channels. (The header's
    ``beam`` is the recorder's beam *number*, e.g. 1 for port 30001; it is reported in
    :attr:`stream_info`, never used to pick data.) ``chan0`` names the first recorder channel
    for version 1 streams, which do not carry it, so rows get frequencies. :meth:`start` and
    :meth:`stop` may be called at any time and repeatedly; :meth:`stop` returns within
    ``POLL_INTERVAL`` and leaves the held data readable.

    A receiver is a :class:`~sunspec.source.StreamSource`: consumers take it as one.
    :meth:`status` is its own counters; :meth:`get_buffer_status` adds the sections of the
    :class:`~sunspec.status.StatusBoard` ``status_board`` (a program's composed status: give
    one, or add sections to the receiver's own).
    """

    stop_timeout = 2.0

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
        factor: int = 2,
        beam_index: int = 0,
        gc_interval: int = 100,
        chan0: int | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        rcvhwm: int = 100,
        context: zmq.Context | None = None,
        status_board: StatusBoard | None = None,
        curve: ClientKeys | None = None,
        stall_timeout: float = 10.0,
    ):
        if buffer_length < 1:
            raise ValueError(f"buffer_length must be >= 1, got {buffer_length}")
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        if beam_index < 0:
            raise ValueError(f"beam_index must be >= 0, got {beam_index}")
        if gc_interval < 0:
            raise ValueError(f"gc_interval must be >= 0 (0 = off), got {gc_interval}")
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
        self.factor = factor
        self.beam_index = beam_index
        self.gc_interval = gc_interval
        self.chan0 = chan0
        self.max_message_bytes = max_message_bytes
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

    def _prepare(self) -> tuple[zmq.Socket]:
        """Connect the SUB socket the receiving thread will own."""
        ctx = self._context or zmq.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # all topics, so stray ones are seen and counted
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.endpoint)
        self._started_at = time.time()
        self._stats["last_seq"] = None  # what was sent while we were stopped is not lost
        self._stall_reset()
        log.info("receiving from %s (%s, factor %d, beam index %d)", self.endpoint,
                 self.product, self.factor, self.beam_index)
        return (sock,)

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
        """Metadata of the latest accepted message, with this receiver's product and factor."""
        info = dict(self._stream_info)
        info.update(name=self._name, product=str(self.product), factor=self.factor,
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
            "factor": self.factor,
            "buffer_index": ring.spare_row if ring is not None else 0,
            "buffer_shape": (ring.nrows, ring.nfreq) if ring is not None else
            (self.buffer_length, 0),
            "frames_received": st["frames"],
            "frames_held": ring.held if ring is not None else 0,
            "messages": st["messages"],
            "lost": st["lost"],
            "rejected": dict(st["rejected"]),
            "rejected_total": sum(st["rejected"].values()),
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
            "latest_mean": float(np.mean(row)) if has_row else None,
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
            "rejected": dict.fromkeys(REJECT_REASONS, 0),
            "last_seq": None, "last_timestamp": None, "proc_time": 0.0, "proc_max": 0.0,
            "gc_runs": 0, "gc_collected": 0, "gc_time": 0.0,
        }
        self._stream_info: dict[str, Any] = {}
        self._started_at = 0.0
        self._payload: np.ndarray | None = None
        self._geometry: tuple[int, int, int] | None = None
        self._reducer: FrameReducer | None = None
        self._since_gc = 0

    def _run(self, sock: zmq.Socket) -> None:
        topic = bytearray(len(TOPIC) + 1)
        if self._payload is None:
            self._payload = np.empty(self.max_message_bytes, np.uint8)
        payload = self._payload
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                self._check_stalled()
                if not poller.poll(round(POLL_INTERVAL * 1000)):
                    continue
                for _ in range(_BATCH):
                    try:
                        self._receive_one(sock, topic, payload)
                    except zmq.Again:
                        break
                if self.gc_interval and self._since_gc >= self.gc_interval:
                    self._periodic_gc()
        except zmq.ZMQError as exc:  # pragma: no cover - context terminated under us
            log.error("receiving stopped: %s", exc)
        finally:
            sock.close(linger=0)

    def _receive_one(self, sock: zmq.Socket, topic: bytearray, payload: np.ndarray) -> None:
        """Receive one whole message (raises zmq.Again if none is waiting)."""
        ntopic = sock.recv_into(topic, flags=zmq.NOBLOCK)
        t0 = time.perf_counter()
        arrival = time.time()
        self._stats["messages"] += 1
        try:
            if not sock.getsockopt(zmq.RCVMORE):
                raise ProtocolError(Reject.PARTS, "1 frame, expected 3")
            header_bytes = sock.recv()
            if not sock.getsockopt(zmq.RCVMORE):
                raise ProtocolError(Reject.PARTS, "2 frames, expected 3")
            nbytes = sock.recv_into(payload)  # type: ignore[arg-type]  # a buffer
            if sock.getsockopt(zmq.RCVMORE):
                extra = _drain(sock)
                raise ProtocolError(Reject.PARTS, f"{3 + extra} frames, expected 3")
            if ntopic != len(TOPIC) or topic[:ntopic] != TOPIC:
                raise ProtocolError(Reject.TOPIC, f"topic {bytes(topic[:ntopic])!r}...")
            if nbytes > payload.nbytes:
                raise ProtocolError(Reject.OVERSIZE, f"payload of {nbytes} bytes exceeds "
                                    f"max_message_bytes = {payload.nbytes}")
            header = parse_header(header_bytes)
            check_payload_size(header, nbytes)
            self._accept(header, arrival)
        except ProtocolError as exc:
            if sock.getsockopt(zmq.RCVMORE):
                _drain(sock)
            self._reject(exc.reason, str(exc))
        except zmq.ZMQError:
            raise
        except Exception as exc:  # never let one message end reception
            if sock.getsockopt(zmq.RCVMORE):
                _drain(sock)
            self._stats["rejected"][Reject.INTERNAL.value] += 1
            self._rlog.log(logging.ERROR, Reject.INTERNAL.value, "message from %s not handled: %r",
                           self.endpoint, exc, exc_info=True)
        finally:
            dt = time.perf_counter() - t0
            st = self._stats
            st["proc_time"] += dt
            st["proc_max"] = max(st["proc_max"], dt)

    def _reject(self, reason: Reject, detail: str) -> None:
        self._stats["rejected"][reason.value] += 1
        self._rlog.log(logging.WARNING, reason.value, "rejected message from %s: %s",
                       self.endpoint, detail)

    def _accept(self, h: FrameHeader, arrival: float) -> None:
        st = self._stats
        if h.shape != self._geometry and not self._new_geometry(h):
            return
        self._track_sender(h)
        ring, reducer = self._ring, self._reducer
        assert ring is not None and reducer is not None  # bound by _new_geometry
        nbad = reducer.reduce(ring.spare_row)
        if nbad:
            self._reject(Reject.NONFINITE, f"{nbad} of {ring.nfreq} values not finite "
                         f"(frame ending {h.get('last_block_time')})")
            return
        seq = h.seq if h.seq is not None else -1
        ring.commit(h.end_tag, h.end_unix, seq, arrival)
        st["frames"] += 1
        st["last_timestamp"] = h.timestamp
        self._since_gc += 1

    def _new_geometry(self, h: FrameHeader) -> bool:
        """Bind the kernel and a fresh ring to a new stream geometry; False if unusable."""
        nbeam, nchan, npol = h.shape
        try:
            if self.beam_index >= nbeam:
                raise ValueError(f"beam index {self.beam_index} asked for, the stream has "
                                 f"{nbeam} beams")
            product_code(self.product, npol)
            if nchan % self.factor:
                raise ValueError(f"factor {self.factor} does not divide nchan = {nchan}")
        except ValueError as exc:
            self._reject(Reject.GEOMETRY, str(exc))
            return False
        if self._geometry is not None:
            self._stats["geometry_changes"] += 1
            log.warning("stream geometry changed %s -> %s: starting a fresh ring",
                        self._geometry, h.shape)
        nfreq = nchan // self.factor
        ring = RingBuffer(self.buffer_length, nfreq, freqs_hz=self._freqs_hz(h, nchan))
        assert self._payload is not None  # allocated before the first message
        frame = self._payload[: h.nbytes].view(np.float32).reshape(h.shape)
        self._reducer = FrameReducer(frame, ring.data, beam=self.beam_index,
                                     product=self.product, factor=self.factor)
        self._geometry = h.shape
        self._ring = ring
        return True

    def _freqs_hz(self, h: FrameHeader, nchan: int) -> np.ndarray | None:
        chan0 = h.get("chan0", self.chan0)
        chan_bw = h.get("chan_bw", CHAN_BW)
        if type(chan0) is not int or type(chan_bw) not in (int, float):
            return None
        return channel_freqs_hz(chan0, nchan, self.factor) * (chan_bw / CHAN_BW)

    def _track_sender(self, h: FrameHeader) -> None:
        st = self._stats
        info = self._stream_info
        sender_id, seq, last = h.sender_id, h.seq, st["last_seq"]
        restarted = (sender_id is not None and info.get("sender_id") not in (None, sender_id))
        if not restarted and seq is not None and last is not None and seq <= last:
            restarted = True
        if restarted:
            st["restarts"] += 1
            log.warning("sender restarted (sender_id %s -> %s, seq %s -> %s)",
                        info.get("sender_id"), sender_id, last, seq)
        elif seq is not None and last is not None and seq > last + 1:
            st["lost"] += seq - last - 1
            self._rlog.log(logging.WARNING, "lost", "lost %d messages (seq %d -> %d)",
                           seq - last - 1, last, seq)
        st["last_seq"] = seq
        if not info or sender_id != info.get("sender_id") or h.time_tag != info.get("time_tag"):
            self._stream_info = {k: v for k, v in h.raw.items() if k not in _PER_FRAME_KEYS}

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


#: header keys that change with every message, left out of ``stream_info``
_PER_FRAME_KEYS = frozenset(("timestamp", "last_block_time", "seq", "t_start_tag", "t_end_tag"))


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
