"""Sender benchmark: the recorder op's work per gulp against the deployed numpy code, proof
that averaging releases the GIL, and that a subscription flood does not reach the ring
reader. Every figure is a ratio measured in this run.

1. Per gulp (1024 x 1 x 3072 x 4 float32, a read-only view as Bifrost hands it over):
   sunspec's path (Averager.add + Publisher.send, two frames) against the deployed op's
   ``idata[a:b].mean(axis=0)`` + ``tobytes`` + ``send_multipart``, best of N, CPU and wall
   time. Target: ratio <= 1.1.
2. GIL: a pure-Python counting thread's speed alone, while another thread averages gulps
   continuously, and while another thread runs a CPU-bound loop that holds no GIL at all
   (hashlib over a large buffer: the best any compiled kernel can do). On 2 shared cores
   the counter also loses CPU time to the other thread, GIL or not, so the bar is relative:
   averaging must leave the counter >= 95 % of what the GIL-free loop leaves it (the fixed
   80 % bar measured the machine's load as much as the GIL).
3. Flood: the ring reader's worst span-hold time (Averager.add + Publisher.send per gulp)
   with and without a peer flooding the port with distinct subscriptions (a subprocess),
   in the same run. Target: worst hold with flood <= 1.5x without (noise), and the
   publisher's RSS growth during the flood < 100 MB.

Run: ``python benchmarks/bench_sender.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
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
    pub = Publisher(port=0, sndhwm=0, queue=64, context=ctx)
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
        pub.flush()  # the publishing thread's work is counted in the wall time

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


def alongside(work, seconds: float) -> tuple[float, float]:
    """Counter speed while ``work()`` runs in a loop in another thread; and work() calls/s."""
    stop = threading.Event()
    done = [0]

    def loop() -> None:
        while not stop.is_set():
            work()
            done[0] += 1

    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(0.05)
    t0, d0 = time.perf_counter(), done[0]
    speed = count_for(seconds)
    rate = (done[0] - d0) / (time.perf_counter() - t0)
    stop.set()
    worker.join()
    return speed, rate


def bench_gil(seconds: float) -> bool:
    rng = np.random.default_rng(1)
    gulp = rng.random(SHAPE, dtype=np.float32)
    gulp.flags.writeable = False
    avg = Averager(512)
    avg.begin_sequence(HEADER)
    blob = gulp.tobytes()[: 8 << 20]

    def averaging() -> None:
        for _ in avg.add(gulp):
            pass

    def gil_free() -> None:  # hashlib releases the GIL for the whole digest
        hashlib.sha256(blob).digest()

    solo = count_for(seconds)
    shared, rate = alongside(averaging, seconds)
    free, _ = alongside(gil_free, seconds)
    solo = max(solo, count_for(seconds))
    frac, frac_free = shared / solo, free / solo
    ok = frac >= 0.95 * frac_free
    print(f"GIL: Python thread at {frac:.0%} of its solo speed while another thread averages "
          f"{rate:.1f} gulps/s ({rate * 1024 * 24 * 8192 / 196e6:.0f}x real time); at "
          f"{frac_free:.0%} beside a loop that holds no GIL: ratio {frac / frac_free:.2f} "
          f"(target >= 0.95; the old fixed bar, 80 %: {verdict(frac >= 0.8)}) {verdict(ok)}")
    return ok


FLOODER = """
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.XSUB)
s.setsockopt(zmq.SNDHWM, 0)
s.connect(sys.argv[1])
i = 0
while True:
    s.send(b"\\x01t%09d" % i)  # distinct short subscriptions, as fast as possible
    i += 1
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def bench_flood(seconds: float) -> bool:
    rng = np.random.default_rng(2)
    flat = (rng.random(np.prod(SHAPE), dtype=np.float32) * 1e5).reshape(1, -1)
    flat.flags.writeable = False
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    pub = Publisher(port=0)
    sub.connect(pub.endpoint)
    pub.wait_for_subscribers(1, 5.0)
    avg = Averager(512)
    avg.begin_sequence(HEADER)

    def worst_hold() -> float:
        worst = 0.0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()  # span acquired
            for frame in avg.add(flat.reshape(SHAPE)):
                pub.send(frame)
            worst = max(worst, time.perf_counter() - t0)  # span released
            while sub.poll(0):
                sub.recv_multipart()
            time.sleep(0.02)  # the ring's writer filling the next gulp
        return worst

    quiet = worst_hold()
    rss0 = rss_mb()
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, pub.endpoint])
    try:
        deadline = time.monotonic() + 10
        while pub.status().get("refused", 0) < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        flooded = worst_hold()
        st = pub.status()
        rss1 = rss_mb()
    finally:
        flooder.kill()
        flooder.wait()
    pub.close()
    sub.close(0)
    ctx.term()
    ok_hold = flooded <= 1.5 * quiet
    ok_rss = rss1 - rss0 < 100
    print(f"flood: worst span hold {quiet * 1e3:.1f} ms quiet, {flooded * 1e3:.1f} ms while a "
          f"peer sent {st['refused']} distinct subscriptions ({flooded / quiet:.2f}x, target "
          f"<= 1.5x) {verdict(ok_hold)}; frames sent {st['sent']}, dropped {st['dropped']}")
    print(f"flood: publisher RSS {rss0:.0f} -> {rss1:.0f} MB, growth {rss1 - rss0:.0f} MB "
          f"(target < 100 MB) {verdict(ok_rss)}; peers hold {st['foreign']} refused "
          f"subscriptions ({(rss1 - rss0) * 1e6 / max(st['foreign'], 1):.0f} B each)")
    return ok_hold and ok_rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20, help="rounds per contender")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per GIL phase")
    args = p.parse_args()
    ok = bench_per_gulp(args.repeat)
    ok &= bench_gil(args.seconds)
    ok &= bench_flood(args.seconds * 2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
