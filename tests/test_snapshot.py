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
