"""The sender's socket: a bound XPUB that takes only the subscriptions the protocol uses.

Receivers see it as a PUB. :class:`XPubSocket` is used by one thread only (the publishing
thread of :class:`sunspec.Publisher`). What it does against hostile or broken peers:

- ``XPUB_MANUAL``: every (un)subscription is handed to us; only ``b""`` and ``b"data"`` are
  applied, anything else is refused (counted, logged) and gets no data;
- ``ZMQ_MAXMSGSIZE``: a peer sending a larger message is disconnected by libzmq. libzmq
  reports that as a plain disconnect, so the socket monitor counts every disconnect
  (``disconnects``: peers that left or were dropped) and logs them;
- libzmq (4.3, ``XPUB_MANUAL`` too) keeps every subscription a peer sends, refused ones
  included, in a per-connection trie until that peer disconnects, and has no call to drop
  one peer. ``foreign`` counts the refused subscriptions still held; above ``max_foreign``
  a warning is logged. Memory therefore grows with a flood of distinct short subscriptions
  from a peer that stays connected (about 0.7 kB each, measured): a known limit, see
  ``benchmarks/bench_sender.py``. Closing and binding the socket again would free them,
  but SUB sockets that were connected did not subscribe again after it (libzmq 4.3.5), so
  that is not done.
"""

from __future__ import annotations

import logging

import zmq
from zmq.utils.monitor import parse_monitor_message

from ._log import RateLimitedLog

__all__ = ["ACCEPTED_TOPICS", "XPubSocket"]

log = logging.getLogger(__name__)

#: the subscriptions a protocol receiver makes (the deployed receiver subscribes b"")
ACCEPTED_TOPICS = (b"", b"data")
#: largest inbound message: the ZMTP handshake's READY command with its properties must fit
DEFAULT_MAXMSGSIZE = 512


class XPubSocket:
    """An XPUB bound on ``endpoint``; call :meth:`service` often from the owning thread."""

    def __init__(self, ctx: zmq.Context, endpoint: str, *, sndhwm: int, linger_ms: int,
                 nodrop: bool, maxmsgsize: int = DEFAULT_MAXMSGSIZE, max_foreign: int = 10_000):
        # RCVHWM: a small inbound queue, so a flooding peer is held back by TCP
        self._opts = {zmq.SNDHWM: sndhwm, zmq.RCVHWM: 64, zmq.LINGER: linger_ms,
                      zmq.XPUB_MANUAL: 1, zmq.XPUB_NODROP: int(nodrop),
                      zmq.MAXMSGSIZE: maxmsgsize}
        self.max_foreign = max_foreign
        self.subscriptions = 0  # accepted subscription messages since the start
        self.subscribed = 0  # accepted subscriptions held now
        self.refused = 0  # refused subscription messages since the start
        self.connections = 0
        self.disconnects = 0
        self.foreign = 0  # refused subscriptions libzmq still holds
        self._rlog = RateLimitedLog(log)
        self.sock = ctx.socket(zmq.XPUB)
        try:
            for opt, value in self._opts.items():
                self.sock.setsockopt(opt, value)
            self.sock.bind(endpoint)
            self.monitor = self.sock.get_monitor_socket(zmq.EVENT_ACCEPTED
                                                        | zmq.EVENT_DISCONNECTED)
        except zmq.ZMQError:
            self.sock.close(0)
            raise
        self.endpoint: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def service(self, limit: int = 256) -> bool:
        """Handle up to ``limit`` pending (un)subscriptions and monitor events; True if
        subscriptions were accepted."""
        sock = self.sock
        accepted = False
        for _ in range(limit):
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            kind, topic = msg[:1], msg[1:]
            if topic in ACCEPTED_TOPICS and kind in (b"\x01", b"\x00"):
                sock.setsockopt(zmq.SUBSCRIBE if kind == b"\x01" else zmq.UNSUBSCRIBE, topic)
                if kind == b"\x01":
                    self.subscriptions += 1
                    self.subscribed += 1
                    accepted = True
                else:
                    self.subscribed = max(0, self.subscribed - 1)
            elif kind == b"\x01":
                self.refused += 1
                self.foreign += 1
                if self.foreign > self.max_foreign:
                    self._rlog.log(logging.WARNING, "foreign",
                                   "%s: peers hold %d refused subscriptions (memory grows until "
                                   "they disconnect)", self.endpoint, self.foreign)
                self._rlog.log(logging.WARNING, "refused",
                               "%s: refused subscription %r (%d refused so far)",
                               self.endpoint, topic[:32], self.refused)
            elif kind == b"\x00":
                self.foreign = max(0, self.foreign - 1)
            else:  # a message from an XSUB peer that is no subscription
                self.refused += 1
        self._read_monitor()
        return accepted

    def _read_monitor(self) -> None:
        while True:
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self.connections += 1
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self.disconnects += 1
                self._rlog.log(logging.INFO, "disconnect",
                               "%s: a peer disconnected or was dropped for a message over "
                               "%d bytes (%d disconnects so far)", self.endpoint,
                               self._opts[zmq.MAXMSGSIZE], self.disconnects)

    def send(self, parts: list) -> bool:
        """Send without blocking; False if the socket would block (``XPUB_NODROP`` and a
        full subscriber queue)."""
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
        except zmq.Again:
            return False
        return True

    def wait(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for inbound (subscription) messages."""
        self.sock.poll(timeout_ms, zmq.POLLIN)

    def close(self) -> None:
        """Close (queued messages get the socket's linger time)."""
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close()

    def status(self) -> dict[str, int]:
        return {"subscriptions": self.subscriptions, "subscribed": self.subscribed,
                "refused": self.refused,
                "foreign": self.foreign, "connections": self.connections,
                "disconnects": self.disconnects}
