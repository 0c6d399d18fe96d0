"""Sender benchmark: the recorder op's work per gulp against the deployed numpy code, and
proof that averaging releases the GIL. Every figure is a ratio measured in this run.

1. Per gulp (1024 x 1 x 3072 x 4 float32, a read-only view as Bifrost hands it over):
   sunspec's path (Averager.add + Publisher.send, two frames) against the deployed op's
   ``idata[a:b].mean(axis=0)`` + ``tobytes`` + ``send_multipart``, best of N, CPU and wall
   time. Target: ratio <= 1.1.
2. GIL: a pure-Python counting thread's speed alone, and while another thread averages
   gulps continuously. Target: >= 80 % of its solo speed.

Run: ``python benchmarks/bench_sender.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).parent))
from _timing import verdict

from sunspec import Averager, Publisher

TAG0 = 343_597_383_680_000_000
HEADER = {"time_tag": TAG0, "chan0": 600, "navg": 24, "nbeam": 1, "nchan": 3072, "npol": 4,
          "bw": 3072 * 23925.78125, "pols": "XX,YY,CR,CI"}
SHAPE = (1024, 1, 3072, 4)


def best_cpu_and_wall(fns: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """Best thread-CPU and wall time per call of each function, alternating contenders."""
    best = {k: (float("inf"), float("inf")) for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            fn()
            c, w = time.thread_time() - c0, time.perf_counter() - w0
            best[name] = (min(best[name][0], c), min(best[name][1], w))
    return best


def bench_per_gulp(repeat: int) -> bool:
    rng = np.random.default_rng(0)
    flat = (rng.random(np.prod(SHAPE), dtype=np.float32) * 1e5).reshape(1, -1)
    flat.flags.writeable = False  # Bifrost's read span: (nringlet, n), read-only
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    pub = Publisher(port=0, sndhwm=0, context=ctx)
    sub.connect(pub.endpoint)
    pub.wait_for_subscribers(1, 5.0)
    raw = ctx.socket(zmq.PUB)  # the deployed op's socket: plain PUB, pyzmq defaults
    raw.setsockopt(zmq.SNDHWM, 0)
    raw_port = raw.bind_to_random_port("tcp://127.0.0.1")
    sub.connect(f"tcp://127.0.0.1:{raw_port}")
    time.sleep(0.3)
    avg = Averager(512)
    avg.begin_sequence(HEADER)

    def sunspec_path() -> None:
        for frame in avg.add(flat.reshape(SHAPE)):
            pub.send(frame)

    def deployed_numpy() -> None:  # dr_beam.py's loop body without its sleep
        idata = flat.reshape(SHAPE)
        now = time.time()
        for i in range(2):
            a = idata[i * 512:(i + 1) * 512].mean(axis=0)
            h = {"time_tag": TAG0, "nbeam": 1, "nchan": 3072, "npol": 4, "timestamp": now,
                 "last_block_time": "2025-01-01 00:00:00.000000", "data_shape": a.shape,
                 "data_type": "<f4"}
            raw.send_multipart([b"data", json.dumps(h).encode(), a.tobytes()])

    def numpy_float64() -> None:  # the same accuracy as sunspec, in numpy
        idata = flat.reshape(SHAPE)
        for i in range(2):
            idata[i * 512:(i + 1) * 512].mean(axis=0, dtype=np.float64).astype(np.float32)

    def drain() -> None:
        while sub.poll(0):
            sub.recv_multipart()

    best = best_cpu_and_wall({"sunspec": sunspec_path, "deployed": deployed_numpy,
                              "numpy64": numpy_float64, "drain": drain}, repeat)
    pub.close()
    raw.close(0)
    sub.close(0)
    ctx.term()
    s, d, n64 = best["sunspec"], best["deployed"], best["numpy64"]
    ratio_cpu, ratio_wall = s[0] / d[0], s[1] / d[1]
    print(f"per gulp 1024x1x3072x4 (best of {repeat}): CPU ms / wall ms")
    print(f"  sunspec Averager+Publisher : {s[0] * 1e3:7.2f} / {s[1] * 1e3:7.2f}")
    print(f"  deployed numpy mean(0)+send: {d[0] * 1e3:7.2f} / {d[1] * 1e3:7.2f}")
    print(f"  numpy float64 mean only    : {n64[0] * 1e3:7.2f} / {n64[1] * 1e3:7.2f}")
    ok = ratio_cpu <= 1.1
    print(f"  ratio sunspec/deployed: CPU {ratio_cpu:.2f}x, wall {ratio_wall:.2f}x "
          f"(target <= 1.1x) {verdict(ok)}; vs float64 numpy: CPU {s[0] / n64[0]:.2f}x")
    return ok


def count_for(seconds: float, stop: threading.Event | None = None) -> float:
    """Pure-Python loop iterations per second."""
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(1000):
            n += 1
        if time.perf_counter() >= end:
            break
    return n / (time.perf_counter() - t0)


def bench_gil(seconds: float) -> bool:
    rng = np.random.default_rng(1)
    gulp = rng.random(SHAPE, dtype=np.float32)
    gulp.flags.writeable = False
    avg = Averager(512)
    avg.begin_sequence(HEADER)
    stop = threading.Event()
    gulps_done = [0]

    def averaging() -> None:
        while not stop.is_set():
            for _ in avg.add(gulp):
                pass
            gulps_done[0] += 1

    solo = count_for(seconds)
    worker = threading.Thread(target=averaging)
    worker.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    g0 = gulps_done[0]
    shared = count_for(seconds)
    rate = (gulps_done[0] - g0) / (time.perf_counter() - t0)
    stop.set()
    worker.join()
    solo2 = count_for(seconds)
    solo = max(solo, solo2)
    frac = shared / solo
    ok = frac >= 0.8
    print(f"GIL: Python thread at {frac:.0%} of its solo speed while another thread averages "
          f"{rate:.1f} gulps/s ({rate * 1024 * 24 * 8192 / 196e6:.0f}x real time) "
          f"(target >= 80 %) {verdict(ok)}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20, help="rounds per contender")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per GIL phase")
    args = p.parse_args()
    ok = bench_per_gulp(args.repeat)
    ok &= bench_gil(args.seconds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
