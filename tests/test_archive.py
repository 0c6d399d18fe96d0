"""Archive writer: real files in tmp_path, real sockets on 127.0.0.1 for the round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from archiving import T_EDGE, FakeReceiver, kill_when_ready, rows_for
from streams import RawPublisher, wait_until

from sunspec import Receiver
from sunspec.archive import ArchiveWriter, read_archive
from sunspec.clock import CHAN_BW, FS, tag_to_datetime
from sunspec.status import StatusBoard

h5py = pytest.importorskip("h5py")
fits = pytest.importorskip("astropy.io.fits")

EXT = {"hdf5": ".h5", "fits": ".fit"}


def archived(directory: Path, fmt: str) -> list[Path]:
    return sorted(directory.glob("*" + EXT[fmt]))


def concat(paths: list[Path]):
    parts = [read_archive(p) for p in paths]
    return (np.concatenate([p.data for p in parts]), np.concatenate([p.end_tag for p in parts]))


def wait_rows(writer: ArchiveWriter, n: int, timeout: float = 10.0) -> None:
    assert wait_until(lambda: writer.status()["rows_written"] >= n, timeout), writer.status()


def send_frames(pub: RawPublisher, n: int, t0: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        frame = rng.random((1, 3072, 4), dtype=np.float32) * 1e6
        pub.send(frame, t_end_tag=t0 + i * FS // 2, chan0=600, chan_bw=CHAN_BW, navg=24,
                 nint=512, beam=2)


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_round_trip_receiver_to_archive(tmp_path, pub, fmt):
    """Stream -> receiver -> archive: files on the span edge hold exactly the ring's rows."""
    board = StatusBoard()
    receiver = Receiver(endpoint=pub.endpoint, buffer_length=100, factor=2,
                        status_board=board).start()
    writer = ArchiveWriter(receiver, tmp_path, fmt, span=900, flush_interval=0.1).start()
    board.add("archive", writer.status)
    try:
        pub.wait_subscriber()
        send_frames(pub, 40, T_EDGE - 10 * FS)  # 21 end by 20:15:00 (one exactly on it), 19 after
        assert wait_until(lambda: receiver.get_buffer_status()["frames_received"] == 40)
        wait_rows(writer, 40)
    finally:
        writer.stop()
        receiver.stop()
    held = receiver.get_latest(100)
    status = receiver.get_buffer_status()["archive"]
    assert status["files_written"] == 2 and status["rows_written"] == 40, status
    assert status["errors"] == {} and status["rows_missed"] == 0
    files = archived(tmp_path, fmt)
    assert [f.name for f in files] == [f"OVRO-LWA_20250601_200000_02{EXT[fmt]}",
                                       f"OVRO-LWA_20250601_201500_02{EXT[fmt]}"]
    first, second = read_archive(files[0]), read_archive(files[1])
    assert np.all(first.end_tag <= T_EDGE) and np.all(second.end_tag > T_EDGE)
    data, tags = concat(files)
    np.testing.assert_array_equal(data, held.data)
    np.testing.assert_array_equal(tags, held.end_tag)
    np.testing.assert_array_equal(first.freqs_hz / 1e6, held.freqs_mhz * 1.0)
    assert first.meta.beam == 2 and first.meta.factor == 2 and first.meta.chan0 == 600

    if fmt == "hdf5":
        with h5py.File(files[0], "r") as f:
            obs = f["Observation1"]
            t = obs["time"][...]
            np.testing.assert_array_equal(t["int"] + t["frac"], held.end_unix[:21])
            np.testing.assert_array_equal(obs["Tuning1/freq"][...], held.freqs_mhz * 1e6)
            assert obs["Tuning1/XX"].shape == (21, 1536)
            assert obs["Tuning1/XX"].attrs["axis0"] == "time"
            assert obs.attrs["Beam"] == 2 and f.attrs["StationName"] == "ovro-lwa"
            assert f.attrs["sunspec_nint"] == 512 and f.attrs["sunspec_navg"] == 24
    else:
        check_radiospectra(files[0], held, slice(0, 21))


def check_radiospectra(path: Path, held, rows: slice) -> None:
    """radiospectra reads the FITS file with no conversion: values, times, frequencies."""
    spectrogram = pytest.importorskip("radiospectra.spectrogram")
    from astropy.coordinates import EarthLocation

    spec = spectrogram.Spectrogram(path)
    spec = spec[0] if isinstance(spec, list) else spec  # radiospectra 0.6 wraps it in a list
    assert type(spec).__name__ == "CALISTOSpectrogram"
    assert spec.observatory == "OVRO-LWA"
    np.testing.assert_array_equal(spec.data, held.data[rows].T[::-1])
    np.testing.assert_array_equal(spec.frequencies.to_value("MHz"), held.freqs_mhz[::-1])
    got = (spec.times - spec.times[0]).to_value("s")
    np.testing.assert_allclose(got, held.end_unix[rows] - held.end_unix[rows][0], atol=1e-6)
    assert abs(spec.times[0].unix - held.end_unix[rows][0]) < 1e-6
    # radiospectra 0.6's observatory_location drops the units for S/W codes: use the keys
    hdr = spec.meta["fits_meta"]
    site = EarthLocation(lat=hdr["OBS_LAT"] * (1 if hdr["OBS_LAC"] == "N" else -1),
                         lon=hdr["OBS_LON"] * (1 if hdr["OBS_LOC"] == "E" else -1),
                         height=hdr["OBS_ALT"])
    assert abs(site.lat.deg - 37.2339) < 1e-9 and abs(site.lon.deg + 118.2817) < 1e-9
    assert abs(site.height.value - 1222) < 1e-6


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_spans_split_batches_exactly(tmp_path, fmt):
    """Rows pushed in odd batches land once each, in order, in files aligned to the span."""
    rec = FakeReceiver(nrows=2000)
    data, tags = rows_for(190, 64, T_EDGE - 7 * FS, step_s=0.25)
    with ArchiveWriter(rec, tmp_path, fmt, span=10, flush_interval=0.05):
        for a, b in [(0, 1), (1, 39), (39, 40), (40, 117), (117, 190)]:
            rec.push(data[a:b], tags[a:b])
    files = archived(tmp_path, fmt)
    got_data, got_tags = concat(files)
    np.testing.assert_array_equal(got_data, data)
    np.testing.assert_array_equal(got_tags, tags)
    span = 10 * FS
    for f in files:
        part = read_archive(f)
        k = (int(part.end_tag[0]) - 1) // span
        assert np.all((part.end_tag > k * span) & (part.end_tag <= (k + 1) * span))
        assert tag_to_datetime(k * span).strftime("%Y%m%d_%H%M%S") in f.name
        assert np.all(np.diff(part.end_tag) > 0)
    assert len(files) == 6  # 20:14:53 .. 20:15:40.25 covers six 10 s spans


def test_time_going_back_starts_new_file_and_existing_files_are_kept(tmp_path):
    rec = FakeReceiver()
    data, tags = rows_for(10, 64, T_EDGE + FS)
    taken = tmp_path / "OVRO-LWA_20250601_201500_02.h5"
    taken.write_bytes(b"not ours")
    with ArchiveWriter(rec, tmp_path, "hdf5", span=900) as w:
        rec.push(data, tags)
        wait_rows(w, 10)
        rec.push(data[:3], tags[:3])  # a replay of the same times: a new file, not a mix
    assert taken.read_bytes() == b"not ours"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["OVRO-LWA_20250601_201500_02-1.h5", "OVRO-LWA_20250601_201500_02-2.h5",
                     "OVRO-LWA_20250601_201500_02.h5"]
    assert len(read_archive(tmp_path / names[0])) == 10
    assert len(read_archive(tmp_path / names[1])) == 3


def test_rows_overwritten_before_reading_are_counted(tmp_path):
    rec = FakeReceiver()
    rec.ring = None
    with ArchiveWriter(rec, tmp_path, "hdf5", span=900) as w:
        ring = rec.new_ring(10, 64)
        data, tags = rows_for(50, 64, T_EDGE + FS)
        rec.push(data, tags, ring)
        rec.ring = ring  # a new ring is read from index 0, of which 40 rows are gone
        wait_rows(w, 10)
    st = w.status()
    assert st["rows_missed"] == 40 and st["rows_written"] == 10
    np.testing.assert_array_equal(concat(archived(tmp_path, "hdf5"))[1], tags[40:])


def test_unwritable_directory_is_reported_and_reception_goes_on(tmp_path, pub):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    board = StatusBoard()
    receiver = Receiver(endpoint=pub.endpoint, buffer_length=100, status_board=board).start()
    writer = ArchiveWriter(receiver, blocker / "archive", "hdf5", retry_interval=0.05).start()
    board.add("archive", writer.status)
    try:
        pub.wait_subscriber()
        send_frames(pub, 10, T_EDGE)
        assert wait_until(lambda: receiver.get_buffer_status()["frames_received"] == 10)
        assert wait_until(lambda: writer.status()["errors"].get("ENOTDIR", 0) >= 1)
        send_frames(pub, 10, T_EDGE + 10 * FS)
        assert wait_until(lambda: receiver.get_buffer_status()["frames_received"] == 20)
        assert wait_until(lambda: receiver.get_buffer_status()["archive"]["rows_dropped"] == 20)
    finally:
        writer.stop()
        receiver.stop()
    st = receiver.get_buffer_status()["archive"]
    assert st["rows_written"] == 0 and st["files_written"] == 0
    assert "a-file" in st["last_error"]


_CRASH_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from archiving import FakeReceiver, rows_for
from sunspec.archive import ArchiveWriter

rec = FakeReceiver()
data, tags = rows_for(50, 64, {t0})
w = ArchiveWriter(rec, {directory!r}, {fmt!r}, span=10, flush_interval=0.05).start()
rec.push(data, tags)  # two full 10 s spans and half of a third
while w.status()["rows_written"] < 50:
    time.sleep(0.01)
time.sleep(0.5)  # several flushes
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_crash_keeps_completed_files_and_next_start_recovers(tmp_path, fmt):
    t0 = T_EDGE + FS // 2  # rows at 20:15:00.5 + 0.5 s * i: 20 per 10 s span
    script = _CRASH_SCRIPT.format(tests=str(Path(__file__).parent), t0=t0,
                                  directory=str(tmp_path), fmt=fmt)
    kill_when_ready(script)
    files = archived(tmp_path, fmt)
    assert len(files) == 2
    before = {f.name: f.read_bytes() for f in files}
    data, tags = rows_for(50, 64, t0)
    for i, f in enumerate(files):
        np.testing.assert_array_equal(read_archive(f).end_tag, tags[20 * i:20 * (i + 1)])
    assert len(list(tmp_path.glob("*.part"))) == 1

    rec = FakeReceiver()
    with ArchiveWriter(rec, tmp_path, fmt, span=10) as w:
        rec.push(data[:20], tags[:20])  # the same span again: must not overwrite
        wait_rows(w, 20)
    assert w.status()["files_recovered"] == 1
    assert {f.name: f.read_bytes() for f in files} == before
    ext = EXT[fmt]
    names = {f.name for f in archived(tmp_path, fmt)}
    assert names == {*before, f"OVRO-LWA_20250601_201520_02{ext}",  # recovered
                     f"OVRO-LWA_20250601_201500_02-1{ext}"}  # the re-sent span, a new name
    assert not list(tmp_path.glob("*.part"))
    recovered = read_archive(tmp_path / f"OVRO-LWA_20250601_201520_02{ext}")
    np.testing.assert_array_equal(recovered.end_tag, tags[40:])
    np.testing.assert_array_equal(recovered.data, data[40:])


def test_sun_gate_keeps_daytime_rows_only(tmp_path):
    pytest.importorskip("astropy.coordinates")
    rec = FakeReceiver()
    noon = T_EDGE + 60 * FS  # 20:16 UTC = 13:16 PDT: the Sun is high at OVRO in June
    night = T_EDGE + 10 * 3600 * FS  # 06:15 UTC = 23:15 PDT
    data, day_tags = rows_for(4, 64, noon)
    with ArchiveWriter(rec, tmp_path, "hdf5", sun_above=10.0) as w:
        rec.push(data, day_tags)
        rec.push(data, night - day_tags[0] + day_tags)
        assert wait_until(lambda: w.status()["rows_skipped_sun"] == 4, 20)
    assert w.status()["rows_written"] == 4
    np.testing.assert_array_equal(concat(archived(tmp_path, "hdf5"))[1], day_tags)
