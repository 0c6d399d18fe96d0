"""sunspec-relay: CPU, added latency, a stalled subscriber, and the payload encodings.

Measured in one run:

1. 16 upstream streams at 2 frames/s (one publisher process) relayed by a ``sunspec-relay``
   process: the relay's CPU (% of a core), and the latency (arrival - the sender's header
   timestamp) of the same messages received directly from the upstreams and through the
   relay, by the same subscriber thread. Then the same with a stalled subscriber (never
   reads, 1 message receive queue, 1 KiB socket buffer) on every relay endpoint.
   Targets (issue 16): relay CPU <= 1 % of a core; p99 latency added <= 1 ms; others'
   latency with a stalled subscriber unchanged within noise.
2. Each encoding on frames of simulated spectra and on frames replayed from a real
   e-CALLISTO file: bytes against raw, encode and decode CPU per frame (in a worker thread,
   as in the relay and the receiver), and the lossy ``log8``'s largest error.
   Target: ``log8`` <= 25 % of raw bytes.

Run: python benchmarks/bench_relay.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import zmq
from _timing import verdict

from sunspec import encodings, protocol
from sunspec.clock import ticks_per_spectrum

NSTREAM = 16
RATE = 2.0  # frames per second per stream
TAG0 = 343_597_383_680_000_000


# --- the upstream publisher process (run as: bench_relay.py --upstreams PORT0) -------------
def upstreams_main(seconds: float) -> None:
    """NSTREAM XPUBs on free loopback ports, each sending RATE frames/s for ``seconds``."""
    ctx = zmq.Context()
    socks = []
    for _ in range(NSTREAM):
        s = ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 0)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        socks.append((s, port))
    print(" ".join(str(p) for _, p in socks), flush=True)
    sys.stdin.readline()  # go
    frame = np.random.default_rng(0).random((1, 3072, 4), dtype=np.float32).tobytes()
    window = 512 * ticks_per_spectrum(24)
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        due = t0 + k / RATE
        time.sleep(max(0.0, due - time.perf_counter()))
        for i, (s, _) in enumerate(socks):
            while s.poll(0):
                s.recv()
            h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=TAG0,
                                     t_end_tag=TAG0 + (k + 1) * window, seq=k,
                                     sender_id=f"beam{i}", beam=i)
            s.send_multipart([protocol.TOPIC, json.dumps(h).encode(), frame])
            time.sleep(0.5 / RATE / NSTREAM)  # spread the streams over half a period
        k += 1
    print("done", flush=True)
    sys.stdin.readline()
    for s, _ in socks:
        s.close(0)
    ctx.term()


# --- the measuring side ---------------------------------------------------------------------
class Latencies:
    """One thread receiving from many SUB sockets; arrival - header timestamp per message."""

    def __init__(self, groups: dict[str, list[str]], stalled: list[str] | None = None):
        self.ctx = zmq.Context()
        self.lat: dict[str, list[float]] = {g: [] for g in groups}
        self.socks: dict[zmq.Socket, str] = {}
        for g, endpoints in groups.items():
            for e in endpoints:
                s = self.ctx.socket(zmq.SUB)
                s.setsockopt(zmq.SUBSCRIBE, b"")
                s.setsockopt(zmq.LINGER, 0)
                s.connect(e)
                self.socks[s] = g
        self.stalled = []
        for e in stalled or []:
            s = self.ctx.socket(zmq.SUB)
            s.setsockopt(zmq.RCVHWM, 1)
            s.setsockopt(zmq.RCVBUF, 1024)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(e)
            self.stalled.append(s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        for s in self.socks:
            poller.register(s, zmq.POLLIN)
        while not self._stop.is_set():
            for s, _ in poller.poll(100):
                parts = s.recv_multipart()
                now = time.time()
                self.lat[self.socks[s]].append(now - json.loads(parts[1])["timestamp"])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.ctx.destroy(0)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1e3, q)) if values else float("nan")


def relay_phase(seconds: float, stalled: bool) -> dict[str, float]:
    here = Path(__file__)
    up = subprocess.Popen([sys.executable, str(here), "--upstreams", str(seconds)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = [int(p) for p in up.stdout.readline().split()]
    upstreams = [f"tcp://127.0.0.1:{p}" for p in ports]
    args = [a for u in upstreams for a in ("--upstream", u)]
    relay = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sunspec.cli import relay_main; "
         "sys.exit(relay_main())", *args, "--bind", "tcp://127.0.0.1:*",
         "--sndhwm", "10", "--status-interval", "0", "--log-level", "INFO"],
        stderr=subprocess.PIPE, text=True)
    relayed = []
    while len(relayed) < NSTREAM:  # "relaying UPSTREAM -> ENDPOINT (raw)", in stream order
        line = relay.stderr.readline()
        if not line:
            sys.exit("the relay ended before it bound")
        m = re.search(r"relaying (\S+) -> (\S+) \(raw\)", line)
        if m:
            relayed.append(m[2])
    threading.Thread(target=relay.stderr.read, daemon=True).start()  # keep the pipe open
    time.sleep(0.5)  # subscribed upstream
    lat = Latencies({"direct": upstreams, "relayed": relayed},
                    stalled=relayed if stalled else None)
    time.sleep(1.0)  # every subscription has arrived
    proc = psutil.Process(relay.pid)
    threads0 = {t.id: t.user_time + t.system_time for t in proc.threads()}
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
    up.stdin.write("go\n")
    up.stdin.flush()
    up.stdout.readline()  # done
    time.sleep(0.5)
    wall = time.perf_counter() - t0
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) / wall
    per_thread = sorted((100 * (t.user_time + t.system_time - threads0.get(t.id, 0.0)) / wall
                         for t in proc.threads()), reverse=True)
    stalled_got = 0
    for s in lat.stalled:
        while s.poll(0):
            s.recv_multipart()
            stalled_got += 1
    lat.close()
    relay.terminate()
    relay.wait(10)
    up.stdin.write("quit\n")
    up.stdin.flush()
    up.wait(10)
    d, r = lat.lat["direct"], lat.lat["relayed"]
    return {"cpu": 100 * cpu, "threads": per_thread, "n_direct": len(d), "n_relayed": len(r),
            "d50": pct(d, 50), "d99": pct(d, 99), "r50": pct(r, 50), "r99": pct(r, 99),
            "stalled_got": stalled_got}


# --- encodings ------------------------------------------------------------------------------
def sim_frames(n: int) -> list[np.ndarray]:
    from sunspec.sim import Simulator

    sim = Simulator(seed=11, ntime_gulp=512)
    return [np.ascontiguousarray(sim.gulp(i).mean(0, dtype=np.float64).astype(np.float32))
            for i in range(n)]


def real_frames() -> tuple[list[np.ndarray], str]:
    """Frames as sunspec-replay sends them, from radiospectra's e-CALLISTO test file."""
    import radiospectra

    from sunspec.archive import read_archive
    from sunspec.replay import frames

    path = Path(radiospectra.__file__).parent / "tests" / "data" / "BIR_20110607_062400_10.fit"
    rows = read_archive(path)
    return [f.copy() for _, f in frames(rows)], str(path)


def encoding_table(name: str, frames: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per encoding: bytes / raw, encode and decode CPU per frame (us), in a worker thread."""
    result: dict[str, dict[str, float]] = {}

    def work() -> None:
        for enc in encodings.ENCODINGS:
            encodings.encode(enc, frames[0])  # first use: codec set-up, not per frame
            nbytes = 0
            t_enc = t_dec = 0.0
            worst_db = worst_abs = 0.0
            for f in frames:
                t = time.thread_time()
                payload, keys = encodings.encode(enc, f)
                t_enc += time.thread_time() - t
                meta = {"data_shape": list(f.shape), **keys}
                out = np.empty(f.shape, np.float32)
                t = time.thread_time()
                encodings.decode_into(enc, payload, out, meta)
                t_dec += time.thread_time() - t
                nbytes += memoryview(payload).nbytes
                if enc == "log8":
                    pos = (f > 0).all(axis=1)[0]  # the planes of positive values
                    for p in np.flatnonzero(pos):
                        x, y = f[0, :, p].astype(float), out[0, :, p].astype(float)
                        worst_db = max(worst_db, float(np.abs(10 * np.log10(y / x)).max()))
                    worst_abs = max(worst_abs, float(np.abs(out - f).max()))
            n = len(frames)
            result[enc] = {"ratio": nbytes / sum(f.nbytes for f in frames),
                           "enc_us": 1e6 * t_enc / n, "dec_us": 1e6 * t_dec / n,
                           "max_db": worst_db, "max_abs": worst_abs}

    th = threading.Thread(target=work)
    th.start()
    th.join()
    print(f"\n{name}: {len(frames)} frames of {frames[0].shape} float32 "
          f"({frames[0].nbytes} bytes)")
    print(f"  {'encoding':16s} {'bytes/raw':>9s} {'encode us':>10s} {'decode us':>10s}")
    for enc, r in result.items():
        print(f"  {enc:16s} {r['ratio']:9.3f} {r['enc_us']:10.0f} {r['dec_us']:10.0f}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each relay phase")
    ap.add_argument("--upstreams", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstreams is not None:
        upstreams_main(args.upstreams)
        return
    base = relay_phase(args.seconds, stalled=False)
    stall = relay_phase(args.seconds, stalled=True)
    for name, r in (("no stalled subscriber", base), ("stalled subscriber", stall)):
        print(f"{name}: {NSTREAM} streams x {RATE:g}/s, relay CPU {r['cpu']:.2f} % of a core; "
              f"latency direct p50 {r['d50']:.2f} p99 {r['d99']:.2f} ms ({r['n_direct']} msgs), "
              f"relayed p50 {r['r50']:.2f} p99 {r['r99']:.2f} ms ({r['n_relayed']} msgs); "
              f"relay CPU by thread (%): {', '.join(f'{c:.2f}' for c in r['threads'][:3])}")
    print(f"stalled subscriber took {stall['stalled_got']} of {stall['n_direct']} messages "
          "on its 16 sockets")
    print(f"relay CPU: {base['cpu']:.2f} % of a core (target <= 1 %) {verdict(base['cpu'] <= 1)}")
    added = base["r99"] - base["d99"]
    print(f"p99 latency added by the relay: {added:.3f} ms (target <= 1 ms) "
          f"{verdict(added <= 1.0)}")
    noise = max(0.2, abs(base["d99"] - stall["d99"]))  # the direct path's own drift
    change = stall["r99"] - base["r99"]
    print(f"relayed p99 with a stalled subscriber: {change:+.3f} ms vs without; the direct "
          f"path's own p99 moved {stall['d99'] - base['d99']:+.3f} ms (noise floor "
          f"{noise:.3f} ms) {verdict(change <= noise)}")
    sim = encoding_table("simulated spectra (sunspec.sim, 512-spectrum means)", sim_frames(12))
    real, path = real_frames()
    rr = encoding_table(f"real e-CALLISTO uint8 digits replayed as frames ({path})", real)
    for name, r in (("simulated", sim), ("e-CALLISTO", rr)):
        print(f"lossless on {name}: bitshuffle-lz4 {r['bitshuffle-lz4']['ratio']:.3f} of raw "
              f"({r['bitshuffle-lz4']['enc_us']:.0f} us to encode), bitshuffle-zstd "
              f"{r['bitshuffle-zstd']['ratio']:.3f} ({r['bitshuffle-zstd']['enc_us']:.0f} us)")
    lossy = max(sim["log8"]["ratio"], rr["log8"]["ratio"])
    print(f"log8 bytes/raw: {lossy:.3f} (target <= 0.25) {verdict(lossy <= 0.25)}; max error "
          f"on simulated XX/YY {sim['log8']['max_db']:.4f} dB; on e-CALLISTO "
          f"{rr['log8']['max_abs']:.3f} digits (max abs)")


if __name__ == "__main__":
    main()
