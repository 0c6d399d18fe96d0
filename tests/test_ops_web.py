"""The live view under faults: file-descriptor exhaustion, idle and half-sent connections,
viewers that never read, pages of other origins, health for monitors. Real sockets on
loopback, a real Receiver, and one real ``sunspec-recv`` under ``ulimit -n 256``."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
from streams import wait_until

aiohttp = pytest.importorskip("aiohttp")

from sunspec import Receiver  # noqa: E402
from sunspec._worker import Worker  # noqa: E402
from sunspec.web import serve  # noqa: E402

pytestmark = [pytest.mark.publisher(sndhwm=10_000), pytest.mark.receiver(buffer_length=64)]


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def raw(server, data: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port))
    if data:
        s.sendall(data)
    return s


def closed_by_server(s: socket.socket, timeout: float = 10.0) -> bool:
    """True once the server closed ``s`` (EOF or reset), reading what it sent meanwhile."""
    s.settimeout(0.1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if s.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def server_side_open(port: int, peer_port: int) -> bool:
    """Whether this process still holds the server's end of the connection from peer_port."""
    return any(c.laddr and c.raddr and c.laddr.port == port and c.raddr.port == peer_port
               for c in psutil.Process().net_connections("tcp"))


class Viewers:
    """``n`` WebSocket viewers held open in their own thread and loop until close()."""

    def __init__(self, url: str, n: int, headers: dict | None = None):
        self.errors: list[BaseException] = []
        self.open = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(url, n, headers),))
        self._thread.start()

    async def _run(self, url: str, n: int, headers: dict | None) -> None:
        async with aiohttp.ClientSession() as s:
            async def one() -> None:
                try:
                    async with s.ws_connect(url + "ws", headers=headers):
                        self.open += 1
                        while not self._done.is_set():
                            await asyncio.sleep(0.02)
                except aiohttp.ClientError as exc:
                    self.errors.append(exc)

            await asyncio.gather(*(one() for _ in range(n)))

    def close(self) -> None:
        self._done.set()
        self._thread.join(10)


# --- item 7: file descriptors -----------------------------------------------------------------
def test_recv_under_ulimit_256_survives_300_idle_connections_and_answers_health():
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.Popen([sys.executable, "-m", "sunspec", "--demo", "--web", "--web-port",
                             "0", "--status-interval", "0.5"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, preexec_fn=limit)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    idle: list[socket.socket] = []
    try:
        assert wait_until(lambda: any("live view on" in line for line in lines), 30), lines
        url = re.search(r"live view on (\S+)", "".join(lines))[1]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(3):
            status, body = get(url + "api/health")
            assert status == 200 and json.loads(body)["health"] == "ok", body
        web = json.loads(get(url + "api/status")[1])["web"]
        assert web["max_connections"] == 256 - 64 and web["connections"] <= 256 - 64
        assert web["closed_idle"] >= 300 - web["max_connections"]
        assert proc.poll() is None
        proc.send_signal(2)
        assert proc.wait(20) == 0
    finally:
        for s in idle:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in "".join(lines)


def test_at_the_cap_the_longest_idle_connection_makes_room(rx):
    with serve(rx, port=0, max_connections=4, request_timeout=60) as server:
        idle = [raw(server) for _ in range(4)]
        try:
            assert wait_until(lambda: server.status()["connections"] == 4)
            assert get(server.url + "api/health")[0] == 200
            assert closed_by_server(idle[0])  # the oldest went first
            st = server.status()
            assert st["closed_idle"] == 1 and st["refused_connections"] == 0
        finally:
            for s in idle:
                s.close()


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(rx):
    with serve(rx, port=0, max_connections=3, max_viewers=10) as server:
        viewers = Viewers(server.url, 3)
        try:
            assert wait_until(lambda: server.status()["viewers"] == 3)
            s = raw(server, b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(10)
            assert s.recv(100).startswith(b"HTTP/1.1 503 ")
            s.close()
            st = server.status()
            assert st["refused_connections"] == 1 and st["health"] == "degraded"
            assert "full" in st["health_reason"]
        finally:
            viewers.close()
    assert viewers.errors == []


def test_viewers_beyond_max_viewers_get_503(rx):
    with serve(rx, port=0, max_viewers=2) as server:
        viewers = Viewers(server.url, 3)
        try:
            assert wait_until(lambda: viewers.open == 2 and len(viewers.errors) == 1)
            assert viewers.errors[0].status == 503
            assert server.status()["refused_viewers"] == 1
        finally:
            viewers.close()


@pytest.mark.parametrize("sent", [b"", b"GET /api/status HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_half_sent_requests_are_closed(rx, sent):
    with serve(rx, port=0, request_timeout=0.3) as server:
        s = raw(server, sent)
        try:
            assert closed_by_server(s)
            assert server.status()["closed_idle"] == 1
            assert get(server.url + "api/health")[0] == 200  # a whole request is answered
        finally:
            s.close()


def test_a_status_read_that_fails_is_a_503_not_a_crash(rx):
    def broken() -> dict:
        raise OSError(errno.EMFILE, "Too many open files")

    with serve(rx, port=0, status=broken) as server:
        status, body = get(server.url + "api/status")
        assert status == 503 and "Too many open files" in json.loads(body)["error"]
        status, body = get(server.url + "api/health")
        assert status == 503 and json.loads(body)["health"] == "failed"
        assert get(server.url)[0] == 200
        assert server.running


# --- item 8: viewers that never read -------------------------------------------------------------
def test_a_viewer_that_never_reads_is_closed_and_its_connection_released(pub, rx):
    with serve(rx, port=0, heartbeat=0.3, queue_limit=8) as server:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13\r\n\r\n")
        peer = stalled.getsockname()[1]
        try:
            assert wait_until(lambda: server.status()["viewers"] == 1)
            frame = np.ones((1, 3072, 4), np.float32)
            sent = 0
            while server.status()["viewers"] and sent < 20_000:  # until the server gives up
                pub.send(frame)
                sent += 1
                time.sleep(0.0005)
            assert server.status()["viewers"] == 0
            assert wait_until(lambda: not server_side_open(server.port, peer))
            assert server.status()["closed_stalled"] == 1
        finally:
            stalled.close()


# --- item 10: other origins --------------------------------------------------------------------
def test_pages_of_other_origins_are_refused_unless_allowed(rx):
    evil = {"Origin": "http://evil.example"}
    with serve(rx, port=0) as server:
        own = {"Origin": server.url.rstrip("/")}
        assert get(server.url + "api/status", evil)[0] == 403
        assert get(server.url + "api/latest?n=1", evil)[0] == 403
        assert get(server.url + "api/status", own)[0] == 200
        assert get(server.url + "api/status")[0] == 200  # monitors and scripts send no Origin
        assert get(server.url, evil)[0] == 200  # the page itself is public
        viewers = Viewers(server.url, 1, headers=evil)
        viewers.close()
        assert [e.status for e in viewers.errors] == [403]
        viewers = Viewers(server.url, 1, headers=own)
        assert wait_until(lambda: viewers.open == 1)
        viewers.close()
        assert server.status()["refused_origin"] == 3
    with serve(rx, port=0, allow_origins=["http://evil.example"]) as server:
        assert get(server.url + "api/status", evil)[0] == 200
        viewers = Viewers(server.url, 1, headers=evil)
        assert wait_until(lambda: viewers.open == 1)
        viewers.close()


# --- item 5: /api/health for monitors ----------------------------------------------------------
class Dies(Worker):
    def _run(self) -> None:
        raise RuntimeError("disk controller gone")


def test_api_health_is_200_unless_failed_and_strict_wants_ok(pub):
    rx = Receiver(endpoint=pub.endpoint, stall_timeout=0.3).start()
    try:
        with serve(rx, port=0, status=rx.get_buffer_status) as server:
            rx.status_board.add("web", server.status)
            assert wait_until(lambda: rx.status()["state"] == "stalled")
            status, body = get(server.url + "api/health")
            health = json.loads(body)
            assert status == 200 and health["health"] == "degraded"
            assert health["sections"]["receiver"]["health"] == "degraded"
            assert pub.endpoint in health["health_reason"]
            assert get(server.url + "api/health?strict=1")[0] == 503
            worker = Dies().start()
            assert wait_until(lambda: worker.failure is not None)
            rx.status_board.add("detector", worker.health)
            status, body = get(server.url + "api/health")
            assert status == 503
            assert json.loads(body)["health_reason"] == (
                "detector: thread ended by RuntimeError: disk controller gone")
            st = json.loads(get(server.url + "api/status")[1])
            assert st["detector"]["health"] == "failed" and st["state"] == "stalled"
            worker.stop()
    finally:
        rx.stop()


def test_recv_with_detect_feeds_the_live_view_its_events_and_background(tmp_path):
    """``sunspec-recv --demo --web --detect``: the page server is handed the detector's
    events and background (the detector starts first), so /api/events answers for it and a
    viewer receives the events list and, once the detector has a background, that too."""
    proc = subprocess.Popen([sys.executable, "-m", "sunspec", "--demo", "--web", "--web-port",
                             "0", "--detect", "--no-events-endpoint", "--events-dir",
                             str(tmp_path), "--status-interval", "60"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        url = None
        for line in proc.stderr:  # bounded: the process logs the URL at start or ends
            if "live view on " in line:
                url = line.split("live view on ")[1].strip()
                break
        assert url, "no live view started"
        with urllib.request.urlopen(url + "api/events", timeout=10) as resp:  # loopback
            assert json.load(resp) == {"stream_name": "stream", "detector": True,
                                       "events": []}

        async def view() -> set[str]:
            kinds: set[str] = set()
            async with aiohttp.ClientSession() as s, s.ws_connect(url + "ws",
                                                                  max_msg_size=0) as ws:
                while "background" not in kinds:
                    msg = await ws.receive(timeout=30)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        obj = json.loads(msg.data)
                        kinds.add(obj["type"])
                        if obj["type"] == "meta" and obj["nfreq"]:
                            assert obj["detector"] and obj["background"]
            return kinds

        assert {"hello", "meta", "events", "background"} <= asyncio.run(
            asyncio.wait_for(view(), 60))
        proc.send_signal(2)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
