"""Benchmark publisher process: one XPUB on loopback, driven by commands on stdin.

Commands: ``flood SECONDS`` (send as fast as possible), ``pace RATE SECONDS``, ``quit``.
Each phase waits for a subscription first, then prints ``sent N`` when done.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import zmq

from sunspec import protocol
from sunspec.clock import ticks_per_spectrum

TAG0 = 343_597_383_680_000_000


def main() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"endpoint tcp://127.0.0.1:{port}", flush=True)
    frame = np.random.default_rng(0).random((1, 3072, 4), dtype=np.float32)
    payload = frame.tobytes()
    window = 512 * ticks_per_spectrum(24)
    seq = 0
    subscribers = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        while sock.poll(0) or subscribers <= 0:  # take notices; wait for a subscriber
            if not sock.poll(10_000):
                sys.exit("no subscriber within 10 s")
            subscribers += 1 if sock.recv()[:1] == b"\x01" else -1
        duration = float(cmd[-1])
        period = 1.0 / float(cmd[1]) if cmd[0] == "pace" else 0.0
        sent = 0
        t0 = time.perf_counter()
        while (now := time.perf_counter()) - t0 < duration:
            if period and now < t0 + sent * period:
                time.sleep(min(t0 + sent * period - now, 0.001))
                continue
            h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=TAG0,
                                     t_end_tag=TAG0 + (seq + 1) * window, seq=seq,
                                     sender_id="bench")
            sock.send_multipart([protocol.TOPIC, json.dumps(h).encode(), payload])
            seq += 1
            sent += 1
        print(f"sent {sent}", flush=True)
    sock.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
