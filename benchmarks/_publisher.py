"""Benchmark publisher process: :class:`sunspec.Publisher` on loopback sending hand-made
messages, driven by commands on stdin.

Commands: ``flood SECONDS`` (send as fast as possible), ``pace RATE SECONDS``, ``quit``.
Each phase waits for a subscriber first, then prints ``sent N`` (messages handed to the
socket) when done.
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
    pub = Publisher(port=0, sndhwm=1000, linger=0, queue=64, block=True)
    print(f"endpoint {pub.endpoint}", flush=True)
    frame = np.random.default_rng(0).random((1, 3072, 4), dtype=np.float32)
    payload = frame.tobytes()
    window = 512 * ticks_per_spectrum(24)
    seq = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        deadline = time.monotonic() + 10
        while pub.status()["subscribed"] <= 0:  # wait for a subscriber
            if time.monotonic() > deadline:
                sys.exit("no subscriber within 10 s")
            time.sleep(0.01)
        duration = float(cmd[-1])
        period = 1.0 / float(cmd[1]) if cmd[0] == "pace" else 0.0
        sent0 = pub.status()["sent"]
        n = 0
        t0 = time.perf_counter()
        while (now := time.perf_counter()) - t0 < duration:
            if period and now < t0 + n * period:
                time.sleep(min(t0 + n * period - now, 0.001))
                continue
            h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=TAG0,
                                     t_end_tag=TAG0 + (seq + 1) * window, seq=seq,
                                     sender_id="bench")
            pub.send_parts([protocol.TOPIC, json.dumps(h).encode(), payload])
            seq += 1
            n += 1
        pub.flush()
        print(f"sent {pub.status()['sent'] - sent0}", flush=True)
    pub.close()


if __name__ == "__main__":
    main()
