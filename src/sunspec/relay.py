"""Relay: republish streams from the recorder's host to many consumers elsewhere.

Each upstream (a sender's endpoint, e.g. the recorder's beam on ``tcp://127.0.0.1:30001``) is
one *stream*. The relay follows it with its own XSUB socket and republishes every message on
one XPUB socket per stream and *output*; an output is a public base endpoint with a payload
encoding (:mod:`sunspec.encodings`). Stream ``i`` (in the order given) binds the base port
plus ``i``, so every public endpoint carries exactly one stream, as a receiver expects.

What ZeroMQ does and what the relay's own poll loop adds:

- each subscriber has its own send queue (``sndhwm`` messages); a slow or stalled one loses
  messages from its own queue and costs the others nothing (the relay never blocks);
- the relay checks every upstream message once (:func:`sunspec.protocol.decode`) and counts
  per stream what it forwards, rejects (by reason) and loses (gaps in the sender's ``seq``);
  headers are passed on untouched (``sender_id``, ``seq``), except that an encoded output
  rewrites the encoding keys;
- public sockets are in ``XPUB_MANUAL`` mode: only the subscriptions the protocol uses
  (``b""`` and ``b"data"``) are granted, others are refused and counted; ``ZMQ_MAXMSGSIZE``
  bounds what a peer may send (a peer sending more is disconnected); a socket monitor counts
  connections, disconnections and failed (CURVE) handshakes;
- last-value cache: a new subscriber gets the latest message of its stream at once, sent to
  it alone (``XPUB_MANUAL_LAST_VALUE``), so a page shows data immediately and nobody else
  sees a duplicate (an end-of-sequence message is forwarded on every endpoint, never
  cached);
- CURVE (:mod:`sunspec.curve`): with server keys every public socket encrypts and accepts
  only the client keys of an allow-list (a ``zmq.auth`` ThreadAuthenticator on the relay's
  own context).
"""

from __future__ import annotations

import json
import logging
import re
import selectors
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from . import encodings, protocol
from ._log import RateLimitedLog
from ._worker import Worker
from .curve import ServerKeys, start_authenticator

__all__ = ["ALLOWED_TOPICS", "Output", "Relay", "stream_endpoints"]

log = logging.getLogger(__name__)

#: the subscriptions a public socket grants: all topics, or the protocol's one topic
ALLOWED_TOPICS = frozenset((b"", protocol.TOPIC))
#: seconds the loop waits for a socket before checking for stop
POLL_INTERVAL = 0.25
_BATCH = 64  # messages handled from one socket before the others get a turn
_MONITOR_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_TCP_PORT = re.compile(r"^(?P<head>tcp://.+):(?P<port>\d+|\*)$")
_LOOPBACK = re.compile(r"^tcp://(127\.[\d.]+|localhost|\[::1\]):")


@dataclass(frozen=True)
class Output:
    """A public base endpoint and the payload encoding of every stream published there."""

    endpoint: str
    encoding: str = "raw"

    def __post_init__(self) -> None:
        if self.encoding not in encodings.ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; one of "
                             f"{', '.join(encodings.ENCODINGS)}")


def stream_endpoints(base: str, n: int) -> list[str]:
    """The endpoints of ``n`` streams published from ``base``: ``tcp://HOST:PORT`` gives
    PORT, PORT+1, ...; ``tcp://HOST:*`` a free port each; other transports one stream only."""
    if n == 1:
        return [base]
    m = _TCP_PORT.match(base)
    if not m:
        raise ValueError(f"{base}: several streams need a tcp://HOST:PORT base endpoint")
    if m["port"] == "*":
        return [base] * n
    port = int(m["port"])
    if port + n - 1 > 65535:
        raise ValueError(f"{base}: {n} streams from port {port} pass 65535")
    return [f"{m['head']}:{port + i}" for i in range(n)]


class _Public:
    """One stream's XPUB socket of one output, its monitor and its counters."""

    def __init__(self, sock: zmq.Socket, monitor: zmq.Socket, encoding: str):
        self.sock = sock
        self.monitor = monitor
        self.encoding = encoding
        self.endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.last: list[Any] | None = None  # the last-value cache: latest message's frames
        self.stats: dict[str, Any] = {
            "endpoint": self.endpoint, "encoding": encoding, "forwarded": 0, "ends": 0,
            "bytes_out": 0,
            "errors": 0, "subscribers": 0, "subscriptions": 0, "last_value_sent": 0,
            "refused_subscriptions": 0, "connections": 0, "accepted": 0, "disconnects": 0,
            "auth_failures": 0, "handshake_failures": 0,
        }


class _Stream:
    """One upstream: its XSUB socket, its public sockets and its counters."""

    def __init__(self, upstream: str, sock: zmq.Socket):
        self.upstream = upstream
        self.sock = sock
        self.publics: list[_Public] = []
        self.last_arrival: float | None = None
        self.stats: dict[str, Any] = {
            "upstream": upstream, "received": 0, "forwarded": 0, "ends": 0, "dropped": 0,
            "rejected": dict.fromkeys(protocol.REJECT_REASONS, 0), "lost": 0, "restarts": 0,
            "sender_id": None, "last_seq": None, "bytes_in": 0, "encode_s": 0.0,
        }


class Relay(Worker):
    """Follow ``upstreams`` and republish each on every output (see the module).

    ``outputs`` are :class:`Output` (or endpoint strings, meaning raw). ``curve`` makes every
    public socket a CURVE server accepting only the allowed client keys. ``sndhwm`` bounds each
    subscriber's queue; ``max_inbound_bytes`` what a public peer may send in one message
    (subscriptions are a few bytes; CURVE handshake messages a few hundred);
    ``max_message_bytes`` the upstream messages accepted. A stream silent for
    ``stale_after`` seconds makes the relay's health ``degraded``. Binding happens in
    :meth:`start`, whose errors (a port in use) reach the caller.
    """

    stop_timeout = 2.0

    def __init__(self, upstreams: Sequence[str], outputs: Sequence[Output | str], *,
                 curve: ServerKeys | None = None, sndhwm: int = 100, rcvhwm: int = 100,
                 max_inbound_bytes: int = 1024, max_message_bytes: int = 16 * 1024 * 1024,
                 heartbeat: float = 10.0, stale_after: float = 10.0, name: str = "relay"):
        if not upstreams or not outputs:
            raise ValueError("a relay needs at least one upstream and one output")
        if len(set(upstreams)) != len(upstreams):
            raise ValueError("an upstream is given twice")
        self.upstreams = list(upstreams)
        self.outputs = [o if isinstance(o, Output) else Output(o) for o in outputs]
        self.public_endpoints = [stream_endpoints(o.endpoint, len(self.upstreams))
                                 for o in self.outputs]
        for value, what in ((sndhwm, "sndhwm"), (rcvhwm, "rcvhwm"),
                            (max_inbound_bytes, "max_inbound_bytes"),
                            (max_message_bytes, "max_message_bytes")):
            if value < 1:
                raise ValueError(f"{what} must be >= 1, got {value}")
        self.curve = curve
        self.sndhwm = sndhwm
        self.rcvhwm = rcvhwm
        self.max_inbound_bytes = max_inbound_bytes
        self.max_message_bytes = max_message_bytes
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.name = name
        super().__init__()
        self._ctx: zmq.Context | None = None
        self._auth: ThreadAuthenticator | None = None
        self._streams: list[_Stream] = []
        self._started_at = 0.0
        self._rlog = RateLimitedLog(log)

    # --- life cycle -----------------------------------------------------------------------
    def _thread_name(self) -> str:
        return f"sunspec-relay {self.name}"

    def _prepare(self) -> tuple[()]:
        self._ctx = zmq.Context(io_threads=1)
        try:
            if self.curve is not None:
                self._auth = start_authenticator(self._ctx, self.curve)
            self._streams = []
            for i, upstream in enumerate(self.upstreams):
                self._open_stream(i, upstream)
        except BaseException:
            self._close_sockets()
            self._teardown()
            raise
        for out, endpoints in zip(self.outputs, self.public_endpoints, strict=True):
            if self.curve is None and not all(_LOOPBACK.match(e) or not e.startswith("tcp://")
                                              for e in endpoints):
                log.warning("%s publishes beyond loopback without CURVE: anyone who reaches "
                            "it can read the streams", out.endpoint)
        self._started_at = time.time()
        for s in self._streams:
            log.info("relaying %s -> %s", s.upstream,
                     ", ".join(f"{p.endpoint} ({p.encoding})" for p in s.publics))
        return ()

    def _open_stream(self, i: int, upstream: str) -> None:
        assert self._ctx is not None
        sub = self._ctx.socket(zmq.XSUB)
        stream = _Stream(upstream, sub)
        self._streams.append(stream)  # closed with the others if a later bind fails
        sub.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(upstream)
        sub.send(b"\x01")  # subscribe to everything: the cache stays fresh with no subscriber
        for out, endpoints in zip(self.outputs, self.public_endpoints, strict=True):
            stream.publics.append(self._open_public(endpoints[i], out.encoding))

    def _open_public(self, endpoint: str, encoding: str) -> _Public:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.XPUB)
        try:
            sock.setsockopt(zmq.SNDHWM, self.sndhwm)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.XPUB_MANUAL, 1)
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_inbound_bytes)
            if self.heartbeat > 0:  # drop peers that vanished without closing (NAT, power)
                sock.setsockopt(zmq.HEARTBEAT_IVL, round(self.heartbeat * 1000))
                sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, round(3 * self.heartbeat * 1000))
            if self.curve is not None:
                self.curve.apply(sock)
            sock.bind(endpoint)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
        except zmq.ZMQError:
            sock.close(0)
            raise
        return _Public(sock, monitor, encoding)

    def endpoint(self, stream: int = 0, output: int = 0) -> str:
        """The bound public endpoint of stream ``stream`` (index in ``upstreams``) on output
        ``output`` (a resolved port where ``*`` was given); valid after :meth:`start`."""
        return self._streams[stream].publics[output].endpoint

    def stop(self, timeout: float | None = None) -> None:
        """Stop forwarding, close every socket and the relay's context (idempotent)."""
        thread = self._thread
        super().stop(timeout)
        if thread is not None and not thread.is_alive():  # its sockets are closed
            self._teardown()

    def _teardown(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _close_sockets(self) -> None:
        for s in self._streams:
            for p in s.publics:
                p.sock.disable_monitor()
                p.monitor.close(0)
                p.sock.close(0)
            s.sock.close(0)

    # --- the poll loop ----------------------------------------------------------------------
    def _run(self) -> None:
        # zmq_poll over every socket costs in proportion to their number at each wake-up,
        # which dominates at a few messages per second per stream. So the loop waits on the
        # sockets' notification descriptors (ZMQ_FD) with epoll and then drains only the
        # socket that woke it. ZMQ_FD is edge-like: a socket whose commands were consumed
        # by another call (a send) does not signal again, so every socket is also swept once
        # per POLL_INTERVAL, which bounds a missed wake-up; monitors are read in the sweep.
        selector = selectors.DefaultSelector()
        handlers: list[tuple[zmq.Socket, Any, Any]] = []
        for s in self._streams:
            handlers.append((s.sock, self._upstream, s))
            handlers.extend((p.sock, self._subscriptions, p) for p in s.publics)
        for entry in handlers:
            selector.register(int(entry[0].getsockopt(zmq.FD)), selectors.EVENT_READ, entry)
        monitors = [(p.monitor, self._monitor, p) for s in self._streams for p in s.publics]
        next_sweep = 0.0
        busy: list[tuple[zmq.Socket, Any, Any]] = []  # sockets left with messages waiting
        try:
            while not self._stop.is_set():
                ready = [key.data for key, _ in selector.select(0 if busy else POLL_INTERVAL)]
                busy = [entry for entry in (*busy, *ready) if self._drain(*entry)]
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + POLL_INTERVAL
                    busy += [entry for entry in (*handlers, *monitors) if self._drain(*entry)]
        except zmq.ZMQError as exc:  # pragma: no cover - context terminated under us
            log.error("relay stopped: %s", exc)
        finally:
            selector.close()
            self._close_sockets()

    @staticmethod
    def _drain(sock: zmq.Socket, fn: Any, part: Any) -> bool:
        """Handle up to _BATCH messages waiting on ``sock`` (reading ZMQ_EVENTS also re-arms
        its ZMQ_FD), so that one busy socket cannot starve the others; True if more wait."""
        for _ in range(_BATCH):
            if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return False
            fn(part)
        return True

    def _upstream(self, s: _Stream) -> None:
        """Take one waiting message from upstream, check it and forward it."""
        sock = s.sock
        parts: list[Any] = [sock.recv(zmq.NOBLOCK)]
        while sock.getsockopt(zmq.RCVMORE):  # the payload (third) stays a zero-copy Frame
            parts.append(sock.recv(copy=len(parts) != 2))
        st = s.stats
        st["received"] += 1
        st["bytes_in"] += sum(len(p) for p in parts)
        s.last_arrival = time.time()
        try:
            if parts[0] == protocol.END_TOPIC and len(parts) == 2:
                protocol.parse_end(parts[1])  # checked; forwarded as it is, never cached
                st["ends"] += 1
                for p in s.publics:
                    self._send(p, parts, "ends")
                return
            if len(parts) != 3:
                raise protocol.ProtocolError(protocol.Reject.PARTS,
                                             f"{len(parts)} frames, expected 3")
            if parts[0] != protocol.TOPIC:
                raise protocol.ProtocolError(protocol.Reject.TOPIC, f"topic {parts[0][:32]!r}")
            if len(parts[2]) > self.max_message_bytes:
                raise protocol.ProtocolError(protocol.Reject.OVERSIZE,
                                             f"payload of {len(parts[2])} bytes")
            header = protocol.parse_header(parts[1])
            if header.encoding != "raw":  # re-encoding would need decoding: follow raw ports
                raise protocol.ProtocolError(protocol.Reject.ENCODING, "an upstream must be "
                                             f"raw, got {header.encoding!r}")
            protocol.check_payload_size(header, len(parts[2]))
        except protocol.ProtocolError as exc:
            st["rejected"][exc.reason.value] += 1
            st["dropped"] += 1
            self._rlog.log(logging.WARNING, f"{s.upstream} {exc.reason.value}",
                           "relay dropped a message from %s: %s", s.upstream, exc)
            return
        self._track_sender(s, header)
        encoded: dict[str, list[Any]] = {"raw": parts}
        for p in s.publics:
            msg = encoded.get(p.encoding)
            if msg is None:
                t0 = time.perf_counter()
                frame = protocol.payload_view(header, parts[2])
                payload, keys = encodings.encode(p.encoding, frame)
                h = json.loads(bytes(parts[1]))  # checked above: the sender's own keys
                h.update(keys)
                msg = encoded[p.encoding] = [protocol.TOPIC, json.dumps(h).encode("ascii"),
                                             payload]
                st["encode_s"] += time.perf_counter() - t0
            p.last = msg
            self._send(p, msg)
            self._drain(p.sock, self._subscriptions, p)  # the send may have taken its signal
        st["forwarded"] += 1

    def _send(self, p: _Public, msg: list[Any], counter: str = "forwarded") -> bool:
        try:
            p.sock.send_multipart(msg, flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # an XPUB without NODROP does not block; count the rest
            p.stats["errors"] += 1
            self._rlog.log(logging.ERROR, f"{p.endpoint} send", "send on %s failed: %s",
                           p.endpoint, exc)
            return False
        p.stats[counter] += 1
        p.stats["bytes_out"] += sum(len(x) for x in msg)
        return True

    def _track_sender(self, s: _Stream, h: protocol.FrameHeader) -> None:
        st = s.stats
        last = st["last_seq"]
        if h.sender_id != st["sender_id"] and st["sender_id"] is not None:
            st["restarts"] += 1
        elif h.seq is not None and last is not None:
            if h.seq <= last:
                st["restarts"] += 1
            elif h.seq > last + 1:
                st["lost"] += h.seq - last - 1
        st["sender_id"] = h.sender_id
        st["last_seq"] = h.seq

    def _subscriptions(self, p: _Public) -> None:
        """Grant or refuse one (un)subscription; a new subscriber gets the cached message."""
        msg = p.sock.recv(zmq.NOBLOCK)  # makes its sender the socket's "last pipe"
        kind, topic = msg[:1], msg[1:]
        st = p.stats
        if topic not in ALLOWED_TOPICS:
            if kind == b"\x01" or kind not in (b"\x00", b"\x01"):
                st["refused_subscriptions"] += 1
                self._rlog.log(logging.WARNING, f"{p.endpoint} refused",
                               "%s: refused subscription %r", p.endpoint, msg[:40])
            return
        if kind == b"\x00":
            p.sock.setsockopt(zmq.UNSUBSCRIBE, topic)  # a no-op once the peer has gone
            st["subscribers"] = max(0, st["subscribers"] - 1)
            return
        p.sock.setsockopt(zmq.SUBSCRIBE, topic)
        st["subscribers"] += 1
        st["subscriptions"] += 1
        if p.last is not None:
            self._send_last_value(p, p.last)

    def _send_last_value(self, p: _Public, msg: list[Any]) -> None:
        """Send ``msg`` to the subscriber just granted, and to nobody else.

        In XPUB_MANUAL_LAST_VALUE mode libzmq sends the next message to the pipe whose
        subscription was read last only. The mode is switched on for this one send: left on,
        a subscription arriving while the cache is empty would divert the next live message
        to its subscriber alone.
        """
        sock = p.sock
        sock.setsockopt(zmq.XPUB_MANUAL_LAST_VALUE, 1)
        try:
            self._send(p, msg, "last_value_sent")
        finally:
            sock.setsockopt(zmq.XPUB_MANUAL_LAST_VALUE, 0)  # (this also clears manual mode)
            sock.setsockopt(zmq.XPUB_MANUAL, 1)

    def _monitor(self, p: _Public) -> None:
        event = recv_monitor_message(p.monitor, zmq.NOBLOCK)["event"]
        st = p.stats
        if event == zmq.EVENT_ACCEPTED:
            st["accepted"] += 1
            st["connections"] += 1
        elif event == zmq.EVENT_DISCONNECTED:
            st["disconnects"] += 1
            st["connections"] = max(0, st["connections"] - 1)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            st["auth_failures"] += 1
            self._rlog.log(logging.WARNING, f"{p.endpoint} auth",
                           "%s: a client's CURVE key was refused", p.endpoint)
        else:
            st["handshake_failures"] += 1

    # --- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Per stream and public endpoint counters, totals, and ``health`` (``ok``,
        ``degraded``: a stream silent for ``stale_after`` s, or ``failed``: not running)
        with ``health_reason``. Cheap; any thread."""
        now = time.time()
        streams = []
        for s in self._streams:
            st = dict(s.stats)
            st["rejected"] = dict(st["rejected"])
            st["rejected_total"] = sum(st["rejected"].values())
            encode_s = st.pop("encode_s")
            st["encode_us_mean"] = 1e6 * encode_s / st["forwarded"] if st["forwarded"] else None
            st["age_s"] = now - s.last_arrival if s.last_arrival else None
            st["outputs"] = [dict(p.stats) for p in s.publics]
            streams.append(st)
        outs = [o for st in streams for o in st["outputs"]]
        health, reason = self._health(now)
        return {
            "running": self.running, "name": self.name, "health": health,
            "health_reason": reason, "curve": self.curve is not None,
            "uptime_s": now - self._started_at if self._started_at else 0.0,
            "streams": streams,
            "received": sum(st["received"] for st in streams),
            "forwarded": sum(st["forwarded"] for st in streams),
            "dropped": sum(st["dropped"] for st in streams),
            "lost": sum(st["lost"] for st in streams),
            **{k: sum(o[k] for o in outs) for k in (
                "subscribers", "connections", "disconnects", "auth_failures",
                "handshake_failures", "refused_subscriptions", "last_value_sent", "errors",
                "bytes_out")},
        }

    def _health(self, now: float) -> tuple[str, str]:
        if not self.running:
            return "failed", "not running"
        silent = []
        for s in self._streams:
            since = s.last_arrival or self._started_at
            if now - since > self.stale_after:
                silent.append(f"{s.upstream} ({now - since:.0f} s)")
        if silent:
            return "degraded", "no data from " + ", ".join(silent)
        return "ok", ""
