"""Replay: archive files -> version 2 stream -> a receiver rebuilds the archived rows."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from archiving import T_EDGE, FakeReceiver, rows_for
from streams import wait_until

from sunspec import Receiver
from sunspec.archive import ArchiveWriter, read_archive
from sunspec.cli import replay_main as main
from sunspec.clock import FS
from sunspec.replay import Replayer

pytest.importorskip("h5py")
pytest.importorskip("astropy.io.fits")


def make_archive(directory, fmt: str, n: int = 60, start: int = T_EDGE - 10 * FS):
    """Archive ``n`` rows (2 files: they straddle a span edge); returns paths, data, tags."""
    rec = FakeReceiver(nfreq=1536)
    data, tags = rows_for(n, 1536, start, seed=3)
    with ArchiveWriter(rec, directory, fmt, span=900) as w:
        rec.push(data, tags)
        assert wait_until(lambda: w.status()["rows_written"] == n)
    return sorted(directory.iterdir()), data, tags, rec.ring.freqs_hz


def received(receiver: Receiver, n: int, timeout: float = 10.0):
    assert wait_until(lambda: receiver.get_buffer_status()["frames_received"] >= n, timeout), (
        receiver.get_buffer_status())
    return receiver.get_latest(n)


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_replay_into_receiver_reproduces_rows(tmp_path, fmt):
    paths, data, tags, freqs = make_archive(tmp_path, fmt)
    assert len(paths) == 2
    with Replayer(paths[::-1], "tcp://127.0.0.1:*", speed=0) as rep:
        receiver = Receiver(endpoint=rep.endpoint, buffer_length=100, factor=2).start()
        try:
            assert rep.wait_subscriber(5)
            assert rep.run() == 60
            rows = received(receiver, 60)
        finally:
            receiver.stop()
    np.testing.assert_array_equal(rows.data, data)  # files given out of order: time order
    np.testing.assert_array_equal(rows.end_tag, tags)
    np.testing.assert_array_equal(rows.freqs_mhz * 1e6, freqs)
    np.testing.assert_array_equal(rows.seq, np.arange(60))
    info = receiver.stream_info
    assert info["proto"] == 2 and info["pols"] == "XX" and info["chan0"] == 600
    assert info["nint"] == 512 and info["navg"] == 24 and info["beam"] == 2
    st = receiver.get_buffer_status()
    assert st["lost"] == 0 and sum(st["rejected"].values()) == 0


def test_receiver_archive_replay_round_trip(tmp_path):
    """Replay an archive, archive the replay: the second archive equals the first."""
    paths, data, tags, _ = make_archive(tmp_path / "a", "hdf5")
    with Replayer(paths, "tcp://127.0.0.1:*", speed=0) as rep:
        receiver = Receiver(endpoint=rep.endpoint, factor=2).start()
        writer = ArchiveWriter(receiver, tmp_path / "b", "fits", span=900).start()
        try:
            assert rep.wait_subscriber(5)
            rep.run()
            assert wait_until(lambda: writer.status()["rows_written"] == 60)
        finally:
            writer.stop()
            receiver.stop()
    again = [read_archive(p) for p in sorted((tmp_path / "b").iterdir())]
    np.testing.assert_array_equal(np.concatenate([a.data for a in again]), data)
    np.testing.assert_array_equal(np.concatenate([a.end_tag for a in again]), tags)
    assert again[0].meta.chan0 == 600 and again[0].meta.product == "XX"


def test_speed_paces_by_data_time_and_skips_long_gaps(tmp_path):
    rec = FakeReceiver(nfreq=8)
    data, tags = rows_for(11, 8, T_EDGE + FS)  # 5 s of data
    tags[-1] += 3600 * FS  # an hour's gap before the last row: skipped, not waited out
    with ArchiveWriter(rec, tmp_path, "hdf5", span=900) as w:
        rec.push(data, tags)
        assert wait_until(lambda: w.status()["rows_written"] == 11)
    with Replayer(sorted(tmp_path.iterdir()), "tcp://127.0.0.1:*", speed=10) as rep:
        t0 = time.monotonic()
        assert rep.run() == 11
        elapsed = time.monotonic() - t0
    assert elapsed > 0.4, elapsed  # paced: never faster than data time / speed


def test_cli_main_publishes_on_the_given_port(tmp_path):
    paths, data, tags, _ = make_archive(tmp_path, "fits", n=10, start=T_EDGE + FS)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver = Receiver(port=port, factor=2).start()
    done = threading.Event()
    result = []

    def run() -> None:
        result.append(main([str(p) for p in paths] + ["--port", str(port), "--speed", "0",
                                                      "--wait", "5"]))
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        rows = received(receiver, 10)
    finally:
        thread.join(10)
        receiver.stop()
    assert result == [0]
    np.testing.assert_array_equal(rows.end_tag, tags)
    np.testing.assert_array_equal(rows.data, data)


def test_recorder_file_replays_averaged_as_asked_with_exact_times_and_frequencies(tmp_path):
    """1 ms recorder spectra (its HDF5 layout, written with h5py as the recorder does) ->
    replay averaging 512 spectra a frame through the Averager -> receiver rows that are the
    float64 means of the file's values, ending exactly on the last spectrum's end, labelled
    with sunspec's channel centres."""
    from recorder_files import write_recorder_file

    from sunspec.clock import channel_freqs_hz
    from sunspec.readers.lwahdf import recorder_to_sunspec_hz

    path = tmp_path / "060000_000000000042"
    raw, starts, freq = write_recorder_file(path, nchan=32, written=2048, count=2500, gulp=700)
    navg = 24
    spectrum = navg * 8192
    with Replayer([path], "tcp://127.0.0.1:*", speed=0, interval=512 * spectrum / FS) as rep:
        receiver = Receiver(endpoint=rep.endpoint, factor=1).start()
        try:
            assert rep.wait_subscriber(10)
            assert rep.run() == 4
            rows = received(receiver, 4)
            info = receiver.stream_info
        finally:
            receiver.stop()
    values = raw[:, :, 0] / np.float32(navg)  # what the file holds: XX, divided by navg
    want = values.reshape(4, 512, 32).astype(np.float64).mean(axis=1).astype(np.float32)
    np.testing.assert_array_equal(rows.data, want)
    np.testing.assert_array_equal(rows.end_tag, starts[511::512] + spectrum)
    np.testing.assert_array_equal(rows.freqs_mhz * 1e6, channel_freqs_hz(600, 32))
    np.testing.assert_array_equal(recorder_to_sunspec_hz(freq), channel_freqs_hz(600, 32))
    assert info["replay"] is True and info["source"] == path.name and info["nint"] == 512


def test_a_file_no_reader_knows_is_refused_by_the_cli(tmp_path, capsys):
    bad = tmp_path / "notes.fit"
    bad.write_text("not a FITS file")
    with pytest.raises(SystemExit) as exc:
        main([str(bad), "--port", "0"])
    assert exc.value.code == 2
    assert "not a spectrum file" in capsys.readouterr().err
