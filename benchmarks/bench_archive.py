"""Archive throughput per format, and the receiver's ingest rate with archiving on and off.

    python benchmarks/bench_archive.py [--rows 7200] [--seconds 3] [--repeats 2]

1. Throughput: a ring pre-filled with ``--rows`` rows (1536 channels, 0.5 s apart: 900 s
   files of 1800 rows) is archived by an ArchiveWriter; frames/s is compared with the
   rate of 16 beams at 2 frames/s (32 frames/s).
2. Ingest: a publisher in another process sends 1 x 3072 x 4 frames as fast as it can for
   ``--seconds``; the receiver's accepted frames/s is measured with no archive, with HDF5
   and with FITS archiving, alternating, in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from sunspec import Receiver
from sunspec.archive import ArchiveWriter
from sunspec.clock import FS, channel_freqs_hz, datetime_to_tag
from sunspec.ring import RingBuffer

BEAMS_RATE = 16 * 2.0  # frames/s of 16 beams at 2 frames/s
T0 = datetime_to_tag(datetime.datetime(2025, 6, 1, 18, 0, 0))


class _Source:
    """A receiver stand-in: a filled ring and its stream metadata."""

    def __init__(self, ring: RingBuffer):
        self.ring = ring
        self.stream_info = {"product": "XX", "factor": 2, "chan0": 600, "navg": 24,
                            "nint": 512, "beam": 1, "sender_id": "bench", "proto": 2}


def throughput(fmt: str, nrows: int, directory: Path) -> float:
    ring = RingBuffer(nrows, 1536, freqs_hz=channel_freqs_hz(600, 3072, 2))
    rng = np.random.default_rng(0)
    block = rng.random((64, 1536), dtype=np.float32)
    for i in range(nrows):
        ring.data[ring.spare_row] = block[i % 64]
        tag = T0 + i * FS // 2
        ring.commit(tag, tag / FS, i, 0.0)
    writer = ArchiveWriter(_Source(ring), directory, fmt, span=900)
    t0 = time.perf_counter()
    writer.start()
    while writer.status()["rows_written"] < nrows:
        time.sleep(0.002)
    writer.stop()  # includes completing the last file
    dt = time.perf_counter() - t0
    st = writer.status()
    assert st["rows_written"] == nrows and not st["errors"], st
    return nrows / dt


_PUBLISHER = """
import sys, time
import numpy as np, zmq
from sunspec import protocol
FS = 196_000_000
ctx = zmq.Context()
sock = ctx.socket(zmq.XPUB)
sock.setsockopt(zmq.SNDHWM, 1000)
sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every receiver's subscription starts a run
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
seconds, rate = float(sys.argv[1]), float(sys.argv[2])
frame = np.random.default_rng(0).random((1, 3072, 4), dtype=np.float32)
while True:  # one run per subscription
    if sock.recv()[:1] != b"\\x01":
        continue
    time.sleep(0.2)
    t_end = time.monotonic() + seconds
    seq = 0
    t0 = {t0}
    start = time.monotonic()
    while time.monotonic() < t_end:
        if rate and seq > (time.monotonic() - start) * rate:
            time.sleep(0.001)
            continue
        tag = t0 + seq * FS // 2
        h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=t0, t_end_tag=tag,
                                 sender_id="bench", seq=seq, chan0=600, chan_bw=FS / 8192,
                                 navg=24, nint=512, beam=1)
        sock.send_multipart(protocol.encode(frame, h))
        seq += 1
    time.sleep(0.5)  # let the queue drain so that the end marker is not dropped
    sock.send_multipart([b"done", b"", b""])
"""


def ingest(endpoint: str, seconds: float, fmt: str | None, directory: Path) -> dict:
    receiver = Receiver(endpoint=endpoint, buffer_length=1200).start()
    writer = ArchiveWriter(receiver, directory, fmt, span=900).start() if fmt else None
    # the run ends with a message of another topic, which the receiver counts as rejected
    deadline = time.monotonic() + seconds + 30
    while not receiver.get_buffer_status()["rejected"].get("topic"):
        if time.monotonic() > deadline:
            raise TimeoutError("the publisher's run did not end")
        time.sleep(0.01)
    st = receiver.get_buffer_status()
    receiver.stop()
    out = {"rate": st["frames_received"] / seconds}
    if writer is not None:
        writer.stop()
        ws = writer.status()
        out.update(written=ws["rows_written"], missed=ws["rows_missed"],
                   files=ws["files_written"])
    return out


def ingest_runs(args: argparse.Namespace, rate: float, root: Path) -> None:
    pub = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PUBLISHER.format(t0=T0)), str(args.seconds),
         str(rate)], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = f"tcp://127.0.0.1:{pub.stdout.readline().strip()}"
        results: dict[str, list[dict]] = {"off": [], "hdf5": [], "fits": []}
        for r in range(args.repeats):
            for mode in results:
                fmt = None if mode == "off" else mode
                results[mode].append(ingest(endpoint, args.seconds, fmt,
                                            root / f"i-{mode}-{r}"))
    finally:
        pub.kill()
        pub.wait()
        pub.stdout.close()
    base = np.mean([x["rate"] for x in results["off"]])
    for mode, runs in results.items():
        rates = [x["rate"] for x in runs]
        line = (f"   archive {mode:5s} ingest {np.mean(rates):8.0f} frames/s "
                f"(runs: {', '.join(f'{x:.0f}' for x in rates)}) = "
                f"{np.mean(rates) / base:5.2f} x off")
        if mode != "off":
            line += (f"; rows written {sum(x['written'] for x in runs)}, missed "
                     f"{sum(x['missed'] for x in runs)}, files "
                     f"{sum(x['files'] for x in runs)}")
        print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=7200)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rate", type=float, default=2000.0,
                   help="paced publishing rate, frames/s (the flood run follows)")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)  # floods make the receiver log losses
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"1. archive throughput, {args.rows} rows x 1536 channels (target: 16 beams x "
              f"2 frames/s = {BEAMS_RATE:.0f} frames/s)")
        for fmt in ("hdf5", "fits"):
            rate = throughput(fmt, args.rows, root / f"t-{fmt}")
            print(f"   {fmt:5s} {rate:10.0f} frames/s  = {rate / BEAMS_RATE:7.1f} x target")

        for rate in (args.rate, 0.0):
            what = f"at {rate:.0f} frames/s" if rate else "as fast as it can"
            print(f"2. receiver ingest, publisher sending 1x3072x4 frames {what} for "
                  f"{args.seconds} s")
            ingest_runs(args, rate, root / f"r{rate:.0f}")


if __name__ == "__main__":
    main()
