"""Live view under load: frame -> Receiver -> WebSocket viewer latency, bytes per row per
viewer, and the receiving process's CPU with no web server, 0, 1, 50 and 1,000 viewers at 2
and 100 frames/s.

Several processes, so that what is measured is only the receiver's: a publisher (real frames,
1 x 3072 x 4 float32, each stamped with the wall clock as its window end), this process
(Receiver + web server, CPU measured) and viewer processes (aiohttp WebSocket clients that
record when each row arrives; 1,000 viewers are spread over several processes, and the
file-descriptor limit is raised to the hard limit for the run). Latency of a row = its arrival
at a viewer minus its arrival at the Receiver (``Rows.arrival_unix``; same host, same clock),
so it includes the viewer processes' own delay in reading hundreds of sockets. Every figure
comes from this run.

Targets (issue 5): p99 <= 100 ms with 50 viewers, <= 3 KB per row per viewer, no ingest loss;
(issue 17): 1,000 viewers at 2 rows/s with p99 <= 100 ms; a page server without viewers costs
nothing measurable per row (compared with a receiver without one in the same run; before
encoding became lazy, the server encoded every row whether watched or not: +0.40 ms per row).

    python benchmarks/bench_web.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time

import numpy as np

TARGET_P99_S = 0.100
TARGET_ROW_BYTES = 3 * 1024
#: viewers per viewer process
PER_PROCESS = 250
#: the many-viewers case
MANY = 1000


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit; returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- child roles ---------------------------------------------------------------------------
def publish(rate: float, duration: float) -> None:
    """Bind a PUB, print its endpoint, wait for 'go' on stdin, send paced frames, print 'sent N'."""
    import zmq

    from sunspec import protocol
    from sunspec.clock import unix_to_tag

    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    if not sock.poll(10_000):
        sys.exit("no subscriber within 10 s")
    sock.recv()
    sys.stdin.readline()
    frame = np.random.default_rng(0).random((1, 3072, 4), dtype=np.float32) * 1e6 + 1e5
    t0 = time.time()
    n = int(rate * duration)
    for seq in range(n):
        delay = t0 + seq / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=unix_to_tag(t0),
                                 t_end_tag=unix_to_tag(now), timestamp=now, seq=seq,
                                 sender_id="bench-web", chan0=600, chan_bw=23925.78125)
        sock.send_multipart(protocol.encode(frame, h))
    print(f"sent {n}", flush=True)
    sys.stdin.readline()
    sock.close(0)
    ctx.term()


async def _viewers(url: str, n: int) -> None:
    """Connect ``n`` viewers, print 'ready', record rows until 'stop' on stdin, print JSON."""
    import aiohttp

    from sunspec.web.codec import HEADER

    results = [{"index": [], "recv": [], "bytes": 0, "rows": 0} for _ in range(n)]

    async def one(ws: aiohttp.ClientWebSocketResponse, res: dict) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            now = time.time()
            nrows, nfreq = np.frombuffer(msg.data, HEADER, count=1)[0][["nrows", "nfreq"]]
            size = 24 + int(nfreq)
            for r in range(int(nrows)):
                off = HEADER.itemsize + r * size + 8
                res["index"].append(int.from_bytes(msg.data[off:off + 4], "little"))
                res["recv"].append(now)
            res["bytes"] += len(msg.data) + (2 if len(msg.data) < 126 else 4)  # + frame header
            res["rows"] += int(nrows)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = [await session.ws_connect(url + "ws", max_msg_size=0) for _ in range(n)]
        tasks = [asyncio.create_task(one(ws, res))
                 for ws, res in zip(sockets, results, strict=True)]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(results), flush=True)


# --- the measuring process -----------------------------------------------------------------
def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)


def phase(rate: float, duration: float, nviewers: int) -> dict:
    """One run: a fresh Receiver and server, ``nviewers`` viewers (-1: no web server at all),
    ``rate`` frames/s."""
    import psutil

    from sunspec import Receiver
    from sunspec.web import serve

    nframes = int(rate * duration)
    pub = _child("--role", "publish", str(rate), str(duration))
    endpoint = pub.stdout.readline().strip()
    rx = Receiver(endpoint=endpoint, buffer_length=nframes + 10, gc_interval=0).start()
    server = (serve(rx, port=0, max_connections=MANY + 200, max_viewers=MANY + 100)
              if nviewers >= 0 else None)
    groups: list[subprocess.Popen] = []
    try:
        if nviewers > 0:
            assert server is not None
            for start in range(0, nviewers, PER_PROCESS):
                groups.append(_child("--role", "view", server.url,
                                     str(min(PER_PROCESS, nviewers - start))))
            for g in groups:
                assert g.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 30
            while server.status()["viewers"] < nviewers and time.monotonic() < deadline:
                time.sleep(0.01)
        proc = psutil.Process()
        cpu0, wall0 = sum(proc.cpu_times()[:2]), time.monotonic()
        pub.stdin.write("go\n")
        sent = int(pub.stdout.readline().split()[1])
        deadline = time.monotonic() + 5
        while rx.get_buffer_status()["frames_received"] < sent and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.3)  # the last rows reach the viewers
        cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        cpu = cpu_s / (time.monotonic() - wall0)
        status = rx.get_buffer_status()
        rows = rx.get_latest(nframes + 10)
        web = server.status() if server is not None else {}
        out = {"rate": rate, "viewers": nviewers, "sent": sent,
               "received": status["frames_received"], "lost": status["lost"],
               "rejected": status["rejected_total"], "cpu": cpu,
               "cpu_per_row": cpu_s / max(status["frames_received"], 1),
               "web_dropped": web.get("dropped_rows", 0),
               "attached": web.get("viewers", 0)}
        if groups:
            res = []
            for g in groups:
                g.stdin.write("stop\n")
            for g in groups:
                res += json.loads(g.stdout.readline())
            arrival = dict(zip(range(rows.first_index, rows.next_index), rows.arrival_unix,
                               strict=True))
            lat = np.array([t - arrival[i] for r in res
                            for i, t in zip(r["index"], r["recv"], strict=True) if i in arrival])
            out.update(latency_p50=float(np.percentile(lat, 50)),
                       latency_p99=float(np.percentile(lat, 99)),
                       latency_max=float(lat.max()), samples=len(lat),
                       rows_per_viewer_min=min(r["rows"] for r in res),
                       bytes_per_row=sum(r["bytes"] for r in res) / sum(r["rows"] for r in res))
        return out
    finally:
        if server is not None:
            server.stop()
        rx.stop()
        for child in (pub, *groups):
            child.stdin.close()
            child.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter phases (a smoke run)")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.role == "publish":
        publish(float(a.args[0]), float(a.args[1]))
        return
    if a.role == "view":
        asyncio.run(_viewers(a.args[0], int(a.args[1])))
        return
    fds = raise_fd_limit()
    fast, slow = (3.0, 6.0) if a.quick else (6.0, 12.0)
    runs = [(100, fast, -1), (100, fast, 0), (100, fast, 1), (100, fast, 50),
            (2, slow, 0), (2, slow, 1), (2, slow, 50), (2, slow, MANY)]
    results = []
    print(f"file-descriptor limit raised to {fds}; viewers: -1 = no web server")
    print(f"{'rate/s':>6} {'viewers':>7} {'sent':>5} {'recv':>5} {'lost':>4} {'dropped':>7} "
          f"{'CPU%':>6} {'ms/row':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'B/row':>6}")
    for rate, duration, n in runs:
        r = phase(rate, duration, n)
        results.append(r)
        lat = (f"{1e3 * r['latency_p50']:7.1f} {1e3 * r['latency_p99']:7.1f} "
               f"{1e3 * r['latency_max']:7.1f} {r['bytes_per_row']:6.0f}" if n > 0 else
               f"{'-':>7} {'-':>7} {'-':>7} {'-':>6}")
        print(f"{rate:6.0f} {n:7d} {r['sent']:5d} {r['received']:5d} {r['lost']:4d} "
              f"{r['web_dropped']:7d} {100 * r['cpu']:6.1f} {1e3 * r['cpu_per_row']:6.3f} {lat}",
              flush=True)

    def find(rate: float, n: int) -> dict:
        return next(r for r in results if r["rate"] == rate and r["viewers"] == n)

    big = find(100, 50)
    print()
    print(f"p99 latency, 50 viewers at 100/s: {1e3 * big['latency_p99']:.1f} ms "
          f"= {big['latency_p99'] / TARGET_P99_S:.2f} x the 100 ms target")
    print(f"p99 latency, 1 viewer at 100/s:   {1e3 * find(100, 1)['latency_p99']:.1f} ms")
    print(f"bytes per row per viewer: {big['bytes_per_row']:.0f} "
          f"= {big['bytes_per_row'] / TARGET_ROW_BYTES:.2f} x the 3 KB target "
          f"({big['bytes_per_row'] / (4 * 1536):.2f} x float32 rows)")
    for rate in (2, 100):
        base, load = find(rate, 0)["cpu"], find(rate, 50)["cpu"]
        print(f"receiver CPU at {rate}/s: {100 * base:.1f}% with no viewer, {100 * load:.1f}% "
              f"with 50 ({load / max(base, 1e-3):.1f} x)")
    many = find(2, MANY)
    print(f"{MANY} viewers at 2/s ({many['attached']} attached): p50 "
          f"{1e3 * many['latency_p50']:.1f} ms, p99 {1e3 * many['latency_p99']:.1f} ms "
          f"= {many['latency_p99'] / TARGET_P99_S:.2f} x the 100 ms target; "
          f"{many['bytes_per_row']:.0f} B/row; fewest rows at a viewer "
          f"{many['rows_per_viewer_min']} of {many['sent']}")
    per_viewer = (many["cpu"] - find(2, 0)["cpu"]) / MANY
    print(f"server CPU per viewer at 2/s: {1e6 * per_viewer:.1f} us/s "
          f"= {1e6 * per_viewer / 2:.1f} us per row per viewer")
    bare, idle = find(100, -1)["cpu_per_row"], find(100, 0)["cpu_per_row"]
    print(f"CPU per row at 100/s: {1e3 * bare:.3f} ms without a web server, {1e3 * idle:.3f} ms "
          f"with one and no viewer (+{1e3 * (idle - bare):.3f} ms per row for the page server)")
    losses = sum(r["sent"] - r["received"] + r["lost"] + r["rejected"] for r in results)
    print(f"ingest losses over all runs: {losses} of {sum(r['sent'] for r in results)} frames")


if __name__ == "__main__":
    main()
