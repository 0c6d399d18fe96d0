"""Test helpers: a raw publisher on an XPUB socket, so a test can wait for its receiver's
subscription before sending (no slow-joiner losses), and frame builders."""

from __future__ import annotations

import time

import numpy as np
import zmq

from sunspec import protocol
from sunspec.clock import ticks_per_spectrum

TAG0 = 343_597_383_680_000_000  # a sequence start in 2025, above 2**53
WINDOW = 512 * ticks_per_spectrum(24)


class RawPublisher:
    """Binds an XPUB on an ephemeral loopback port and sends hand-made messages."""

    def __init__(self, sndhwm: int = 1000, sender_id: str = "test-sender"):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # report every subscription, repeats too
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.sender_id = sender_id
        self.seq = 0

    def wait_subscriber(self, timeout: float = 5.0) -> None:
        """Block until a SUB socket has subscribed (its subscription reached us)."""
        deadline = time.monotonic() + timeout
        while self.sock.poll(max(deadline - time.monotonic(), 0) * 1000):
            if self.sock.recv()[:1] == b"\x01":
                return
        raise TimeoutError(f"no subscriber within {timeout:.1f} s")

    def forget_subscriptions(self) -> None:
        """Discard (un)subscription notices of earlier subscribers."""
        while self.sock.poll(0):
            self.sock.recv()

    def header(self, frame: np.ndarray, seq: int | None = None, **extra) -> dict:
        seq = self.seq if seq is None else seq
        kw = dict(nbeam=frame.shape[0], nchan=frame.shape[1], npol=frame.shape[2],
                  time_tag=TAG0, t_end_tag=TAG0 + (seq + 1) * WINDOW, seq=seq,
                  sender_id=self.sender_id, timestamp=time.time())
        kw.update(extra)
        return protocol.make_header(**kw)

    def send(self, frame: np.ndarray, seq: int | None = None, flags: int = 0, **extra) -> dict:
        h = self.header(frame, seq, **extra)
        self.sock.send_multipart(protocol.encode(frame, h), flags=flags)
        self.seq = h["seq"] + 1 if "seq" in h else self.seq
        return h

    def send_parts(self, parts: list[bytes]) -> None:
        self.sock.send_multipart(parts)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def const_frame(value: float, nbeam: int = 1, nchan: int = 3072, npol: int = 4) -> np.ndarray:
    return np.full((nbeam, nchan, npol), value, np.float32)


def wait_until(cond, timeout: float = 5.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()
