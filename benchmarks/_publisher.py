"""Benchmark publisher process: :class:`sunspec.Publisher` s on loopback sending hand-made
messages, driven by commands on stdin.

``python _publisher.py [N]`` opens N publishers (default 1), each on its own port, and prints
``endpoints E1 ... EN``. Commands: ``flood SECONDS`` (send as fast as possible), ``pace RATE
SECONDS`` (RATE messages per second on each publisher), ``quit``. Each phase waits for one
subscriber per publisher first, then prints ``sent N`` (messages handed to the sockets, all
publishers together) when done.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from sunspec import Publisher, protocol
from sunspec.clock import ticks_per_spectrum

TAG0 = 343_597_383_680_000_000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    pubs = [Publisher(port=0, sndhwm=1000, linger=0, queue=64, block=True, end_message=False)
            for _ in range(count)]
    print("endpoints " + " ".join(p.endpoint for p in pubs), flush=True)
    frame = np.random.default_rng(0).random((1, 3072, 4), dtype=np.float32)
    payload = frame.tobytes()
    window = 512 * ticks_per_spectrum(24)
    seq = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        deadline = time.monotonic() + 10
        while any(p.status()["subscribed"] <= 0 for p in pubs):  # wait for subscribers
            if time.monotonic() > deadline:
                sys.exit("no subscriber within 10 s")
            time.sleep(0.01)
        duration = float(cmd[-1])
        period = 1.0 / float(cmd[1]) if cmd[0] == "pace" else 0.0
        sent0 = sum(p.status()["sent"] for p in pubs)
        n = 0
        t0 = time.perf_counter()
        while (now := time.perf_counter()) - t0 < duration:
            if period and now < t0 + n * period:
                time.sleep(min(t0 + n * period - now, 0.001))
                continue
            h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=TAG0,
                                     t_end_tag=TAG0 + (seq + 1) * window, seq=seq,
                                     sender_id="bench")
            parts = [protocol.TOPIC, json.dumps(h).encode(), payload]
            for p in pubs:
                p.send_parts(parts)
            seq += 1
            n += 1
        for p in pubs:
            p.flush()
        print(f"sent {sum(p.status()['sent'] for p in pubs) - sent0}", flush=True)
    for p in pubs:
        p.close()


if __name__ == "__main__":
    main()
