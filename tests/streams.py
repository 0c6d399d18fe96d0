"""Test helpers: a raw publisher that can wait for its receiver's subscription before
sending (no slow-joiner losses), and frame builders."""

from __future__ import annotations

import time

import numpy as np

from sunspec import Publisher, protocol
from sunspec.clock import ticks_per_spectrum

TAG0 = 343_597_383_680_000_000  # a sequence start in 2025, above 2**53
WINDOW = 512 * ticks_per_spectrum(24)


class RawPublisher:
    """Sends hand-made messages through :class:`sunspec.Publisher` (the same socket set-up
    as every sunspec sender) on an ephemeral loopback port: each send returns once the
    message is on the socket; a subscriber whose queue (``sndhwm``) is full loses it, unless
    ``nodrop``: then sends wait for room and nothing is dropped on this side."""

    def __init__(self, sndhwm: int = 1000, sender_id: str = "test-sender",
                 endpoint: str = "tcp://127.0.0.1:*", nodrop: bool = False):
        self.pub = Publisher(endpoint=endpoint, sndhwm=sndhwm, linger=0, queue=64, block=True,
                             nodrop=nodrop, end_message=False)  # its messages are hand-made
        self.endpoint = self.pub.endpoint
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.sender_id = sender_id
        self.seq = 0
        self._seen = 0  # subscriptions waited for

    def wait_subscriber(self, timeout: float = 5.0) -> None:
        """Block until one more SUB socket has subscribed (its subscription reached us)."""
        if not self.pub.wait_for_subscribers(self._seen + 1, timeout):
            raise TimeoutError(f"no subscriber within {timeout:.1f} s")
        self._seen += 1

    def forget_subscriptions(self) -> None:
        """Discard the subscriptions of earlier subscribers."""
        self._seen = self.pub.subscriptions

    def header(self, frame: np.ndarray, seq: int | None = None, **extra) -> dict:
        seq = self.seq if seq is None else seq
        kw = dict(nbeam=frame.shape[0], nchan=frame.shape[1], npol=frame.shape[2],
                  time_tag=TAG0, t_end_tag=TAG0 + (seq + 1) * WINDOW, seq=seq,
                  sender_id=self.sender_id, timestamp=time.time())
        kw.update(extra)
        return protocol.make_header(**kw)

    def send(self, frame: np.ndarray, seq: int | None = None, **extra) -> dict:
        h = self.header(frame, seq, **extra)
        self.send_parts(protocol.encode(frame, h))
        self.seq = h["seq"] + 1 if "seq" in h else self.seq
        return h

    def send_parts(self, parts: list) -> None:
        assert self.pub.send_parts(parts, timeout=10) and self.pub.flush(10)

    def close(self) -> None:
        self.pub.close()


def const_frame(value: float, nbeam: int = 1, nchan: int = 3072, npol: int = 4) -> np.ndarray:
    return np.full((nbeam, nchan, npol), value, np.float32)


def wait_until(cond, timeout: float = 5.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()
