"""The live view's server: HTTP endpoints and WebSocket pushes with real clients on loopback,
fed through a real Receiver."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from streams import RawPublisher, wait_until

aiohttp = pytest.importorskip("aiohttp")

from sunspec import Receiver, clock  # noqa: E402
from sunspec.web import serve  # noqa: E402
from sunspec.web.codec import decode_rows, encode_rows, record_dtype  # noqa: E402

NCHAN = 64  # small frames keep these tests fast; the byte budget test uses the real 3072


def frame(i: int, nchan: int = NCHAN) -> np.ndarray:
    """A positive spectrum that changes with ``i``."""
    f = np.zeros((1, nchan, 4), np.float32)
    f[0, :, 0] = 1e5 * (1 + np.arange(nchan)) * (1 + 0.1 * (i % 7))
    return f


pytestmark = [pytest.mark.publisher(sndhwm=10_000), pytest.mark.receiver(buffer_length=32)]


@pytest.fixture
def server(rx):
    s = serve(rx, port=0, status=rx.get_buffer_status)
    rx.status_board.add("web", s.status)
    yield s
    s.stop()


def send(pub: RawPublisher, rx: Receiver, n: int, nchan: int = NCHAN, pace: float = 0.0) -> None:
    start = rx.get_buffer_status()["frames_received"]
    for _ in range(n):
        pub.send(frame(pub.seq, nchan), chan0=600, chan_bw=clock.CHAN_BW,
                 t_end_tag=clock.unix_to_tag(time.time()))
        if pace:
            time.sleep(pace)
    assert wait_until(lambda: rx.get_buffer_status()["frames_received"] >= start + n, 10)


async def get(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, r.content_type, await r.read()


def fetch(url: str) -> tuple[int, str, bytes]:
    return asyncio.run(get(url))


class Viewer:
    """A WebSocket viewer: its metadata and every row it received (in arrival order)."""

    def __init__(self) -> None:
        self.meta: list[dict] = []
        self.hello: dict = {}
        self.index: list[int] = []
        self.values: list[np.ndarray] = []
        self.message_bytes: list[tuple[int, int]] = []  # (bytes, rows) per binary message

    def take(self, msg: aiohttp.WSMessage) -> None:
        if msg.type == aiohttp.WSMsgType.TEXT:
            obj = json.loads(msg.data)
            if obj["type"] == "hello":
                self.hello = obj
            else:
                self.meta.append(obj)
                self.index.clear()
                self.values.clear()
            return
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        _, idx, vals = decode_rows(msg.data)
        self.index += idx.tolist()
        self.values += list(vals)
        self.message_bytes.append((len(msg.data), len(idx)))


async def watch(url: str, until, viewers: int = 1, timeout: float = 10.0) -> list[Viewer]:
    """Connect ``viewers`` viewers and read until ``until(viewer)`` holds for each."""
    async with aiohttp.ClientSession() as s:

        async def one() -> Viewer:
            v = Viewer()
            async with s.ws_connect(url + "ws", max_msg_size=0) as ws:
                while not until(v):
                    v.take(await ws.receive(timeout=timeout))
            return v

        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(viewers))), timeout)


# --- codec -----------------------------------------------------------------------------------
def rows_of(data: np.ndarray, first_index: int = 7):
    from sunspec.ring import Rows

    n = len(data)
    return Rows(data.astype(np.float32), np.arange(n, dtype=np.int64),
                1.7e9 + np.arange(n, dtype=np.float64), np.arange(n, dtype=np.int64),
                np.zeros(n), first_index, 0, None)


def test_codec_log_rows_keep_relative_precision_across_a_wide_range():
    rng = np.random.default_rng(3)
    data = 10 ** rng.uniform(3, 8, (5, 1536))  # 50 dB of range in each row
    msg = encode_rows(rows_of(data))
    assert len(msg) == 12 + 5 * (24 + 1536)
    t, idx, vals = decode_rows(msg)
    np.testing.assert_array_equal(idx, np.arange(7, 12))
    np.testing.assert_array_equal(t, 1.7e9 + np.arange(5))
    ratio = vals / data.astype(np.float32)
    step = 10 ** (5 / 255 / 2)  # half a quantisation step of 5 decades
    assert np.all(ratio < step * 1.001) and np.all(ratio > 1 / step / 1.001)
    np.testing.assert_allclose(vals.min(1), data.astype(np.float32).min(1), rtol=1e-5)
    np.testing.assert_allclose(vals.max(1), data.astype(np.float32).max(1), rtol=1e-5)


def test_codec_signed_and_constant_rows_are_linear():
    data = np.array([np.linspace(-3, 5, 16), np.full(16, 2.5), np.zeros(16)])
    _, _, vals = decode_rows(encode_rows(rows_of(data)))
    np.testing.assert_allclose(vals[0], data[0], atol=8 / 255 / 2 + 1e-6)
    np.testing.assert_allclose(vals[1:], data[1:], rtol=1e-6)


def test_codec_rejects_foreign_bytes():
    with pytest.raises(ValueError, match="not a sunspec rows message"):
        decode_rows(b"NOPE" + bytes(8))


# --- HTTP ------------------------------------------------------------------------------------
def test_page_and_static_files_are_served_from_the_package(server):
    status, ctype, body = fetch(server.url)
    assert (status, ctype) == (200, "text/html")
    assert b"<canvas" in body and b"app.js" in body and b"http" not in body.lower().replace(
        b'http-equiv', b'')  # nothing fetched from elsewhere
    for name, want in [("app.js", "text/javascript"), ("colormaps.js", "text/javascript"),
                       ("style.css", "text/css")]:
        status, ctype, body = fetch(server.url + name)
        assert (status, ctype) == (200, want) and len(body) > 500
    assert fetch(server.url + "nothing")[0] == 404
    assert fetch(server.url + "static/../../etc/passwd")[0] == 404


def test_api_status_freqs_and_latest_in_every_form(pub, rx, server):
    send(pub, rx, 5)
    status, ctype, body = fetch(server.url + "api/status")
    st = json.loads(body)
    assert (status, ctype) == (200, "application/json")
    assert st["frames_received"] == 5 and st["lost"] == 0 and st["endpoint"] == pub.endpoint
    assert st["web"]["viewers"] == 0 and st["web"]["url"] == server.url
    assert st["stream"]["sender_id"] == pub.sender_id

    freqs = json.loads(fetch(server.url + "api/freqs")[2])
    assert freqs["unit"] == "MHz" and freqs["nfreq"] == NCHAN // 2
    np.testing.assert_array_equal(freqs["freqs_mhz"], rx.ring.freqs_mhz)

    ref = rx.get_latest(3)
    got = json.loads(fetch(server.url + "api/latest?n=3")[2])
    assert got["n"] == 3 and got["first_index"] == 2
    np.testing.assert_array_equal(np.array(got["data"], np.float32), ref.data)
    assert [int(t) for t in got["time_tags"]] == ref.end_tag.tolist()  # exact beyond 2**53
    assert got["times_utc"][-1] == str(ref.times[-1]) + "Z"
    np.testing.assert_array_equal(got["seq"], [2, 3, 4])

    status, ctype, body = fetch(server.url + "api/latest?n=3&format=bin")
    assert ctype == "application/octet-stream"
    _, idx, vals = decode_rows(body)
    np.testing.assert_array_equal(idx, [2, 3, 4])
    np.testing.assert_allclose(vals, ref.data, rtol=0.02)

    npz = np.load(io.BytesIO(fetch(server.url + "api/latest?n=100&format=npz")[2]))
    np.testing.assert_array_equal(npz["data"], rx.get_latest(5).data)  # clipped to what is held
    np.testing.assert_array_equal(npz["end_tag"], rx.get_latest(5).end_tag)
    np.testing.assert_array_equal(npz["freqs_mhz"], rx.ring.freqs_mhz)

    for bad in ("n=x", "n=-1", "format=xml"):
        assert fetch(server.url + "api/latest?" + bad)[0] == 400


def test_api_is_read_only_and_works_before_any_data(server):
    async def post() -> int:
        async with aiohttp.ClientSession() as s, s.post(server.url + "api/status") as r:
            return r.status

    assert asyncio.run(post()) == 405
    st = json.loads(fetch(server.url + "api/status")[2])
    assert st["frames_received"] == 0 and st["data_age_s"] is None
    assert json.loads(fetch(server.url + "api/freqs")[2]) == {
        "nfreq": 0, "unit": "channel", "freqs_mhz": None}
    assert json.loads(fetch(server.url + "api/latest?n=4")[2])["n"] == 0


# --- WebSocket -------------------------------------------------------------------------------
def test_websocket_backfills_the_ring_then_pushes_each_row_once(pub, rx, server):
    send(pub, rx, 40)  # more than the ring holds (32)
    held = rx.get_latest(32)
    result: list[Viewer] = []

    def run() -> None:
        result.extend(asyncio.run(watch(server.url, lambda v: len(v.index) >= 42, viewers=3)))

    t = threading.Thread(target=run)
    t.start()
    assert wait_until(lambda: server.status()["viewers"] == 3)
    send(pub, rx, 10, pace=0.01)
    t.join(15)
    assert not t.is_alive() and len(result) == 3
    for v in result:
        assert v.hello["viewer"] >= 1
        meta = v.meta[-1]
        assert meta["nfreq"] == NCHAN // 2 and meta["nrows"] == 32
        np.testing.assert_allclose(meta["freqs_mhz"], rx.ring.freqs_mhz, atol=1e-6)
        assert meta["stream"]["sender_id"] == pub.sender_id
        assert v.index == list(range(8, 50))  # the ring held 8..39, then 40..49 pushed
        np.testing.assert_allclose(v.values[:32], held.data, rtol=0.02)
        pushed = v.message_bytes[-10:]
        assert all(rows == 1 for _, rows in pushed)  # one row per push at this pace
        assert {b for b, _ in pushed} == {12 + record_dtype(NCHAN // 2).itemsize}
    assert len({v.hello["viewer"] for v in result}) == 3
    st = rx.get_buffer_status()["web"]
    assert st["viewers_total"] == 3 and st["dropped_rows"] == 0


def test_a_full_size_row_costs_under_3_kb_per_viewer(pub, rx, server):
    send(pub, rx, 1, nchan=3072)
    views: list[Viewer] = []
    t = threading.Thread(target=lambda: views.extend(
        asyncio.run(watch(server.url, lambda v: len(v.index) >= 4))))
    t.start()
    assert wait_until(lambda: server.status()["viewers"] == 1)
    send(pub, rx, 3, nchan=3072, pace=0.02)
    t.join(10)
    nbytes, nrows = views[0].message_bytes[-1]
    assert nrows == 1 and nbytes == 12 + 24 + 1536 <= 3000


def test_geometry_change_sends_a_reset_and_the_new_rings_rows(pub, rx, server):
    send(pub, rx, 3)
    views: list[Viewer] = []
    backfilled = threading.Event()

    def until(v: Viewer) -> bool:
        if len(v.meta) == 1 and len(v.index) == 3:
            backfilled.set()
        return len(v.meta) == 2 and len(v.index) >= 3

    t = threading.Thread(target=lambda: views.extend(asyncio.run(watch(server.url, until))))
    t.start()
    assert backfilled.wait(5)  # the backfill arrives with no new row to push it along
    send(pub, rx, 3, nchan=2 * NCHAN)  # 3 frames confirm a new geometry (PROTOCOL.md, C)
    t.join(10)
    v = views[0]
    assert [m["nfreq"] for m in v.meta] == [NCHAN // 2, NCHAN]
    assert v.index == [0, 1, 2] and all(len(x) == NCHAN for x in v.values)
    assert server.status()["resets"] == 2


def stalled_viewer(url: str) -> socket.socket:
    """A viewer that completes the WebSocket handshake and then never reads again."""
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return s


def test_a_stalled_viewer_delays_neither_the_receiver_nor_another_viewer(pub, rx):
    n = 1500  # ~2.4 MB of rows: far more than the stalled viewer's socket buffers hold
    with serve(rx, port=0, queue_limit=8) as server:
        rx.status_board.add("web", server.status)
        stalled = stalled_viewer(server.url)
        try:
            views: list[Viewer] = []
            t = threading.Thread(target=lambda: views.extend(
                asyncio.run(watch(server.url, lambda v: bool(v.index) and v.index[-1] >= n - 1,
                                  timeout=30))))
            t.start()
            assert wait_until(lambda: server.status()["viewers"] == 2)
            send(pub, rx, n, nchan=3072, pace=0.001)
            t.join(30)
            st = rx.get_buffer_status()
            me = views[0].hello["viewer"]
            stalled_stats = next(v for v in st["web"]["viewer"] if v["id"] != me)
        finally:
            stalled.close()
    assert st["lost"] == 0 and st["frames_received"] == n and st["rejected_total"] == 0
    v = views[0]
    assert v.index == list(range(n))  # the reading viewer got every row, in order
    assert stalled_stats["dropped_rows"] > 0, str(stalled_stats)
    assert stalled_stats["queued_messages"] <= 8
    # every row was sent, dropped, queued (one row per message here) or is in the one
    # blocked send
    assert stalled_stats["sent_rows"] + stalled_stats["dropped_rows"] + stalled_stats[
        "queued_messages"] in (n - 1, n)


def test_stop_closes_viewers_and_leaves_no_threads(pub, rx):
    server = serve(rx, port=0)
    closed = threading.Event()

    async def view() -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(server.url + "ws") as ws:
            async for _ in ws:
                pass
            closed.set()

    t = threading.Thread(target=lambda: asyncio.run(view()))
    t.start()
    assert wait_until(lambda: server.status()["viewers"] == 1)
    server.stop()
    server.stop()  # idempotent
    t.join(5)
    assert closed.is_set() and not server.running
    assert not [th for th in threading.enumerate() if th.name.startswith("sunspec-web")]
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", server.port))


def test_a_taken_port_raises_at_start(rx):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            serve(rx, port=s.getsockname()[1])
    assert not [th for th in threading.enumerate() if th.name.startswith("sunspec-web")]


# --- missing channels, log units, lazy encoding, several streams, detector hooks --------------
def test_codec_keeps_missing_channels_and_logarithmic_units_linear():
    data = 10 ** np.random.default_rng(4).uniform(3, 6, (3, 40))
    data[0, [3, 17]] = np.nan
    data[1, :] = np.nan  # a row of nothing
    _, _, vals = decode_rows(encode_rows(rows_of(data)))
    assert np.isnan(vals[0, [3, 17]]).all() and np.isnan(vals[1]).all()
    keep = np.isfinite(data)
    np.testing.assert_allclose(vals[keep], data[keep], rtol=0.03)
    db = np.linspace(20.0, 60.0, 40)[None, :].repeat(2, axis=0)  # dB values: quantised linearly
    db[1, 5] = np.nan
    msg = encode_rows(rows_of(db), log=False)
    rec = np.frombuffer(msg, record_dtype(40), offset=12)
    assert rec["mode"].tolist() == [0, 2]
    _, _, vals = decode_rows(msg)
    np.testing.assert_allclose(vals[0], db[0], atol=40 / 255 / 2 + 1e-5)
    assert np.isnan(vals[1, 5]) and np.isfinite(np.delete(vals[1], 5)).all()


class HandSource:
    """A StreamSource around a real RingBuffer, filled by the test (no receiver)."""

    def __init__(self, name: str, nfreq: int = 16, nrows: int = 20, info: dict | None = None):
        from sunspec.ring import RingBuffer

        self.name = name
        self.stream_info = {"name": name, **(info or {})}
        self.ring = RingBuffer(nrows, nfreq, freqs_hz=np.linspace(20e6, 80e6, nfreq))

    def wait_for_ring(self, timeout=None):
        from sunspec.source import wait_for_ring

        return wait_for_ring(self, timeout)

    def push(self, n: int, value: float = 1.0) -> None:
        for _ in range(n):
            ring = self.ring
            ring.data[ring.spare_row] = value * (1 + ring.total)
            t = 1.7e9 + ring.total
            ring.commit(clock.unix_to_tag(t), t, ring.total, time.time())


async def take(url: str, until, timeout: float = 10.0) -> list:
    """Every message of one viewer of ``url`` (``ws?...``) until ``until(messages)``."""
    got: list = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url, max_msg_size=0) as ws:
        while not until(got):
            msg = await ws.receive(timeout=timeout)
            got.append(json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT
                       else decode_rows(msg.data))
    return got


def rows_in(messages: list) -> list[int]:
    return [i for m in messages if isinstance(m, tuple) for i in m[1].tolist()]


def test_a_stream_without_viewers_costs_no_encoding_and_a_viewer_still_gets_the_ring():
    src = HandSource("a")
    with serve(src, port=0) as server:
        src.push(50)  # more than the ring holds (20)
        time.sleep(0.3)  # time for a fan-out that would encode eagerly (none should)
        assert server.status()["rows_encoded"] == 0
        got = asyncio.run(take(server.url + "ws", lambda m: len(rows_in(m)) >= 20))
        assert rows_in(got) == list(range(30, 50))
        assert server.status()["rows_encoded"] == 20
        # after the last viewer leaves, new rows are not encoded again
        assert wait_until(lambda: server.status()["viewers"] == 0)
        src.push(10)
        time.sleep(0.3)
        assert server.status()["rows_encoded"] == 20


def test_several_streams_each_with_its_own_viewers_api_and_events():
    a, b = HandSource("a", nfreq=16), HandSource("b", nfreq=8, info={"unit": "dB"})
    a.push(5, 1.0)
    b.push(7, 2.0)
    events = [{"id": "b-1", "revision": 0, "type": "III", "snr": 9.5, "final": False,
               "start_utc": "2023-11-14T22:13:21.000Z", "end_utc": "2023-11-14T22:13:23.000Z",
               "f_high_mhz": 80.0, "f_low_mhz": 40.0, "chan_high": 7, "chan_low": 2}]
    with serve([a, b], port=0, events={"b": lambda n: events[-n:]}) as server:
        assert server.streams == ["a", "b"]
        streams = json.loads(fetch(server.url + "api/streams")[2])["streams"]
        assert [(s["name"], s["detector"]) for s in streams] == [("a", False), ("b", True)]
        assert streams[1]["info"]["unit"] == "dB"
        got_b = asyncio.run(take(server.url + "ws?stream=b",
                                 lambda m: len(rows_in(m)) >= 7 and any(
                                     isinstance(x, dict) and x["type"] == "events" for x in m)))
        meta = next(m for m in got_b if isinstance(m, dict) and m["type"] == "meta")
        assert meta["nfreq"] == 8 and meta["stream"]["unit"] == "dB" and meta["detector"]
        assert rows_in(got_b) == list(range(7))
        values = np.concatenate([m[2] for m in got_b if isinstance(m, tuple)])
        np.testing.assert_allclose(values[:, 0], 2.0 * np.arange(1, 8), rtol=0.01)
        ev = next(m for m in got_b if isinstance(m, dict) and m["type"] == "events")
        assert ev["events"] == events
        got_a = asyncio.run(take(server.url + "ws", lambda m: len(rows_in(m)) >= 5))
        assert next(m for m in got_a if isinstance(m, dict) and m["type"] == "meta")[
            "nfreq"] == 16
        assert json.loads(fetch(server.url + "api/events?stream=b&n=5")[2]) == {
            "stream_name": "b", "detector": True, "events": events}
        assert json.loads(fetch(server.url + "api/events")[2]) == {
            "stream_name": "a", "detector": False, "events": []}
        assert fetch(server.url + "api/events?stream=b&n=0")[2] and json.loads(
            fetch(server.url + "api/events?stream=b&n=0")[2])["events"] == []
        assert json.loads(fetch(server.url + "api/latest?stream=b&n=2")[2])["data"][1][0] == 14
        assert json.loads(fetch(server.url + "api/status?stream=b")[2])["stream"]["name"] == "b"
        for bad in ("api/latest?stream=c", "api/events?stream=c", "ws?stream=c"):
            assert fetch(server.url + bad)[0] == 404
        assert fetch(server.url + "api/events?n=x")[0] == 400
        st = server.status()["streams"]
        assert st["a"]["rows_encoded"] == 5 and st["b"]["rows_encoded"] == 7
    with pytest.raises(ValueError, match="mapping by stream name"):
        serve([a, b], port=0, events=lambda n: [])
    with pytest.raises(ValueError, match="two streams"):
        serve([a, HandSource("a")], port=0)


def test_events_revisions_and_background_are_pushed_when_they_change():
    src = HandSource("s", nfreq=8)
    src.push(3)
    records = {"e": {"id": "s-1", "revision": 0, "snr": 5.0}}
    level = np.arange(8, dtype=np.float32)
    level_ready = threading.Event()

    def excess(data):  # linear rows -> dB above ``level``; None until "the detector started"
        if not level_ready.is_set():
            return None
        out = 10 * np.log10(np.asarray(data, np.float32)) - level
        out[..., 3] = np.nan  # a channel masked as RFI
        return out

    def until(m):
        texts = [x for x in m if isinstance(x, dict)]
        if any(t["type"] == "events" for t in texts) and not level_ready.is_set():
            records["e"] = {"id": "s-1", "revision": 1, "snr": 8.0}
            level_ready.set()
        return any(t["type"] == "background" for t in texts) and any(
            t["type"] == "events" and t["events"][0]["revision"] == 1 for t in texts)

    with serve(src, port=0, events=lambda n: list(records.values()), excess_db=excess) as s:
        got = asyncio.run(take(s.url + "ws", until))
    texts = [x for x in got if isinstance(x, dict)]
    revisions = [t["events"][0]["revision"] for t in texts if t["type"] == "events"]
    assert revisions == [0, 1]  # sent once each: unchanged events are not sent again
    bg = next(t for t in texts if t["type"] == "background")["db"]
    assert bg[3] is None and bg[:3] == [0.0, 1.0, 2.0] and bg[4:] == [4.0, 5.0, 6.0, 7.0]
