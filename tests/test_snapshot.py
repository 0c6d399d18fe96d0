"""PNG snapshots: drawn from a real Receiver's ring, written atomically, rotated."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from streams import RawPublisher, wait_until

pytest.importorskip("matplotlib")

from matplotlib import image as mimage

from sunspec import Receiver, clock
from sunspec.ring import Rows
from sunspec.sim import SimulatedStream, TypeIII
from sunspec.snapshot import SnapshotWriter, save_snapshot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    return mimage.imread(path)


def rows(data: np.ndarray, freqs_mhz: np.ndarray | None = None) -> Rows:
    n = len(data)
    tags = clock.unix_to_tag(1.75e9) + np.arange(1, n + 1) * clock.FS // 2
    return Rows(data.astype(np.float32), tags.astype(np.int64),
                np.array([clock.tag_to_unix(t) for t in tags]), np.arange(n), np.zeros(n), 0, 0,
                freqs_mhz)


def test_snapshot_of_a_simulated_receiver_is_a_png_and_nothing_else_is_left(tmp_path):
    with SimulatedStream(port=0, speed=None, duration=4.0, nint=128, seed=3,
                         bursts=[TypeIII(t0=1.0)], wait_subscribers=1) as stream:
        rx = Receiver(endpoint=stream.endpoint, buffer_length=64).start()
        try:
            assert stream.join(30)
            assert wait_until(lambda: rx.get_buffer_status()["frames_received"] >= 30)
            out = save_snapshot(rx, tmp_path / "snap.png")
        finally:
            rx.stop()
    assert out == tmp_path / "snap.png"
    assert out.stat().st_mode & 0o777 == 0o644  # readable by whoever serves the snapshots
    img = read_png(out)
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert img[..., :3].std() > 0.05  # a picture, not a blank page
    assert [p.name for p in tmp_path.iterdir()] == ["snap.png"]


@pytest.mark.parametrize("freqs", [None, np.linspace(14.4, 87.8, 32)])
def test_signed_rows_and_unknown_frequencies_are_drawn(tmp_path, freqs):
    data = np.random.default_rng(1).normal(size=(20, 32))  # an XY product: linear scale
    read_png(save_snapshot(rows(data, freqs), tmp_path / "xy.png", cmap="inferno"))
    one = save_snapshot(rows(np.ones((1, 32)) * 5, freqs), tmp_path / "one.png")  # 1 flat row
    read_png(one)


def test_nothing_to_draw_raises_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        save_snapshot(rows(np.zeros((0, 8))), tmp_path / "x.png")
    rx = Receiver(endpoint="tcp://127.0.0.1:1")  # never started: no ring
    with pytest.raises(ValueError, match="no rows"):
        save_snapshot(rx, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_writer_rotates_its_own_files_only_and_reports_in_status(tmp_path):
    foreign = [tmp_path / "notes.png", tmp_path / "other_20250101T000000Z.png"]
    for p in foreign:
        p.write_bytes(b"keep me")
    pub = RawPublisher()
    rx = Receiver(endpoint=pub.endpoint, buffer_length=50).start()
    stop = threading.Event()

    def feed() -> None:  # 20 frames/s of real time: one new second-stamp per second
        while not stop.is_set():
            f = np.full((1, 64, 4), 1e5 * (1 + pub.seq % 5), np.float32)
            pub.send(f, chan0=600, chan_bw=clock.CHAN_BW,
                     t_end_tag=clock.unix_to_tag(time.time()))
            stop.wait(0.05)

    feeder = threading.Thread(target=feed)
    try:
        pub.wait_subscriber()
        feeder.start()
        with SnapshotWriter(rx, tmp_path, interval=0.5, keep=2, prefix="beam0") as writer:
            rx.status_board.add("snapshots", writer.status)
            assert wait_until(lambda: writer.status()["written"] >= 4, 20), writer.status()
            st = rx.get_buffer_status()["snapshots"]
    finally:
        stop.set()
        feeder.join()
        rx.stop()
        pub.close()
    assert not writer.running
    mine = sorted(p.name for p in tmp_path.glob("beam0_*Z.png"))
    assert len(mine) == 2 and all(p.exists() for p in foreign)
    # names have whole seconds, so two snapshots within one second share (and replace) a file
    assert st["failed"] == 0 and st["deleted"] >= 1 and st["last_path"].endswith(mine[-1])
    for name in mine:
        read_png(tmp_path / name)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_writer_skips_when_no_new_row_and_validates_arguments(tmp_path):
    pub = RawPublisher()
    rx = Receiver(endpoint=pub.endpoint, buffer_length=8).start()
    try:
        pub.wait_subscriber()
        writer = SnapshotWriter(rx, tmp_path / "new", interval=60, keep=5)
        assert writer.write_once() is None  # no ring yet
        pub.send(np.ones((1, 16, 4), np.float32))
        assert wait_until(lambda: rx.ring is not None and rx.ring.total == 1)
        writer.start()
        first = writer.write_once()
        assert first is not None and first.parent == tmp_path / "new"
        assert first.name.startswith("sunspec_") and first.name.endswith("Z.png")
        assert writer.write_once() is None  # nothing new since
        writer.stop()
        writer.stop()
    finally:
        rx.stop()
        pub.close()
    for bad in ({"interval": 0}, {"keep": 0}, {"prefix": "a/b"}):
        with pytest.raises(ValueError):
            SnapshotWriter(rx, tmp_path, **bad)


def test_an_uneven_descending_db_axis_with_gaps_replay_and_events(tmp_path):
    """An e-CALLISTO-like stream: 192 uneven channels 92 -> 20 MHz, values in dB (drawn as
    they are, never 10 log10 again), missing channels grey, a replay marked, events boxed."""
    from matplotlib.collections import QuadMesh
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    from sunspec.snapshot import GAP_COLOUR, snapshot_figure

    x = np.linspace(0.0, 1.0, 192)
    freqs = 92.0 - 72.0 * x**1.6
    data = 40.0 + 20.0 * x[None, :] + np.zeros((60, 1))
    data[:, 50:55] = np.nan
    r = rows(data, freqs)
    t = [str(v) + "Z" for v in r.times]
    events = [{"id": "e1", "type": "III", "snr": 11.5, "final": True, "start_utc": t[10],
               "end_utc": t[20], "f_low_mhz": 30.0, "f_high_mhz": 85.0},
              {"id": "e0", "type": "II", "snr": 6.0, "final": True,  # before these rows
               "start_utc": "2020-01-01T00:00:00.000Z", "end_utc": "2020-01-01T00:01:00.000Z",
               "f_low_mhz": 30.0, "f_high_mhz": 85.0}]
    fig = snapshot_figure(r, unit="dB", replay="GAURI_20240516_000000_59.fit.gz",
                          events=events, title="sunspec  GAURI")
    ax_wf = fig.axes[1]
    assert ax_wf.get_ylim()[0] == pytest.approx(20.0, abs=0.5)
    assert ax_wf.get_ylim()[1] == pytest.approx(92.0, abs=0.5)
    assert "uneven" in ax_wf.get_ylabel()
    mesh = next(c for c in ax_wf.collections if isinstance(c, QuadMesh))
    drawn = mesh.get_array()
    assert np.ma.is_masked(drawn) and drawn.mask.reshape(192, 60)[50:55].all()
    # the values drawn are the dB values themselves
    np.testing.assert_allclose(np.ma.compressed(drawn).max(), 60.0)
    np.testing.assert_allclose(np.ma.compressed(drawn).min(), 40.0)
    assert mesh.get_cmap().get_bad().tolist() == list(to_rgba(GAP_COLOUR))
    assert fig.axes[2].get_ylabel() == "Power (dB)"  # the colour bar
    boxes = [p for p in ax_wf.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1 and (boxes[0].get_y(), boxes[0].get_height()) == (30.0, 55.0)
    assert any(tx.get_text() == "III snr 11.5" for tx in ax_wf.texts)
    assert "REPLAY of GAURI_20240516_000000_59.fit.gz" in fig._suptitle.get_text()
    # digits: instrument digits times their dB step, said in the label
    fig = snapshot_figure(rows(data / 0.4, freqs), unit="digits", db_per_digit=0.4)
    assert fig.axes[2].get_ylabel() == "Power (dB: instrument digits x 0.4)"
    mesh = next(c for c in fig.axes[1].collections if isinstance(c, QuadMesh))
    np.testing.assert_allclose(np.ma.compressed(mesh.get_array()).max(), 60.0, rtol=1e-5)


def test_the_writer_draws_its_sources_metadata_and_events(tmp_path, monkeypatch):
    """SnapshotWriter takes the unit, replay and title from ``stream_info`` and the events
    from its ``events`` callable."""
    from sunspec import snapshot
    from sunspec.ring import RingBuffer

    class Source:
        name = "GAURI"

        def __init__(self):
            self.stream_info = {"name": "GAURI", "unit": "dB", "instrument": "e-CALLISTO",
                                "station": "Gauribidanur", "replay": True,
                                "source": "x.fit.gz"}
            self.ring = RingBuffer(30, 16, freqs_hz=np.linspace(92e6, 20e6, 16))

        def wait_for_ring(self, timeout=None):
            return self.ring

    src = Source()
    for i in range(30):
        src.ring.data[src.ring.spare_row] = 50.0 + i % 3
        src.ring.commit(clock.unix_to_tag(1.75e9 + i), 1.75e9 + i, i, time.time())
    asked: list[int] = []
    seen: dict = {}
    real = snapshot.snapshot_figure

    def spy(rows, **kw):
        seen.update(kw)
        return real(rows, **kw)

    monkeypatch.setattr(snapshot, "snapshot_figure", spy)
    writer = SnapshotWriter(src, tmp_path, events=lambda n: asked.append(n) or [
        {"id": "a", "type": "III", "snr": 9.0, "start_utc": "2025-06-15T23:46:45.000Z",
         "end_utc": "2025-06-15T23:46:50.000Z", "f_low_mhz": 30.0, "f_high_mhz": 60.0}])
    read_png(writer.write_once())
    assert asked and seen["unit"] == "dB" and seen["replay"] == "x.fit.gz"
    assert "e-CALLISTO" in seen["title"] and "Gauribidanur" in seen["title"]
    assert [e["id"] for e in seen["events"]] == ["a"]
