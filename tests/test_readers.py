"""Spectrum readers: real files (the e-CALLISTO Birr file radiospectra ships, sunspec's own
archives, recorder-layout HDF5 written here with h5py as the recorder writes it)."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from recorder_files import write_recorder_file

from sunspec.archive import ArchiveData, ArchiveMeta, read_archive
from sunspec.clock import FS, channel_freqs_hz, datetime_to_tag, tag_to_datetime
from sunspec.readers import UnsupportedFile, open_spectra
from sunspec.sender import Averager, SequenceInfo

h5py = pytest.importorskip("h5py")
fits = pytest.importorskip("astropy.io.fits")
radiospectra = pytest.importorskip("radiospectra")

BIRR = Path(radiospectra.__file__).parent / "tests" / "data" / "BIR_20110607_062400_10.fit"
T0 = datetime_to_tag(dt.datetime(2025, 6, 1, 20, 0, 0))


def read_all(reader, max_rows=1000, **kw):
    chunks = list(reader.chunks(max_rows, **kw))
    assert all(0 < len(c) <= max_rows for c in chunks)
    if not chunks:
        return np.empty((0, reader.nchan, reader.npol), np.float32), np.empty(0, np.int64)
    return (np.concatenate([c.data for c in chunks]),
            np.concatenate([c.end_tag for c in chunks]))


# --- e-CALLISTO ------------------------------------------------------------------------------
def birr_expected():
    """The Birr file read plainly with astropy, the dedup rule applied by a loop."""
    with fits.open(BIRR) as h:
        image = np.asarray(h[0].data, np.float32)  # (freq, time)
        times = np.asarray(h[1].data["TIME"]).ravel()
        freqs = np.asarray(h[1].data["FREQUENCY"]).ravel()
    first: dict[float, int] = {}
    for i, f in enumerate(freqs.tolist()):
        first.setdefault(f, i)
    keep = [first[f] for f in sorted(first)]
    return image[keep].T, times, freqs[keep] * 1e6


@pytest.mark.parametrize("copy_as", [None, "gz", "BIR.h5", "noext"])
def test_birr_file(tmp_path, copy_as):
    """The real e-CALLISTO file: axis 20-92 MHz after the dedup rule, 3600 rows from
    06:24:00.213, digits of the BIR instrument; gzipped or misnamed copies read the same."""
    path = BIRR
    if copy_as == "gz":
        path = tmp_path / "BIR_20110607_062400_10.fit.gz"
        path.write_bytes(gzip.compress(BIRR.read_bytes()))
    elif copy_as is not None:
        path = tmp_path / copy_as
        shutil.copy(BIRR, path)
    data, times, freqs = birr_expected()
    with open_spectra(path) as r:
        assert r.source_format == "e-callisto"
        assert r.instrument == "BIR" and r.station == "Birr_Castle_Ireland"
        assert r.unit == "digits" and r.db_per_digit == pytest.approx(2500 / 256 / 25)
        assert r.nrows == 3600 and r.pols == ("total",)
        # 200 channels, 9 of them 20.0 MHz: one of those kept
        assert r.nchan == 192 and np.all(np.diff(r.freqs_hz) > 0)
        assert r.freqs_hz[0] == 20e6 and 91.8e6 < r.freqs_hz[-1] < 92e6
        np.testing.assert_array_equal(r.freqs_hz, freqs)
        assert r.window_ticks == FS // 4 and r.time_resolution_s == 0.25
        assert r.location == pytest.approx((53.094139, 7.920130, 416.5))
        got, end = read_all(r, 500)
    np.testing.assert_array_equal(got[:, :, 0], data)
    start = datetime_to_tag(dt.datetime(2011, 6, 7, 6, 24, 0, 213000))
    np.testing.assert_array_equal(end, start + np.rint(times * FS).astype(np.int64) + FS // 4)
    assert tag_to_datetime(int(end[-1])) == dt.datetime(2011, 6, 7, 6, 39, 0, 213000)


def test_dedup_keeps_the_first_of_equal_frequencies_whatever_the_order(tmp_path):
    """A frequency program out of order, with a repeat in the middle: the axis comes out
    increasing, and the repeated frequency's data is the first occurrence's."""
    freqs = np.array([50.0, 45.0, 60.0, 45.0, 40.0])
    image = np.arange(5 * 4, dtype=np.uint8).reshape(5, 4)  # (freq, time)
    hdr = fits.Header({"DATE-OBS": "2020/01/02", "TIME-OBS": "03:04:05.500", "BUNIT": "digits",
                       "INSTRUME": "TEST", "CTYPE2": "Frequency [MHz]"})
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="TIME", format="4D", array=np.array([[0.0, 0.5, 1.0, 1.5]])),
        fits.Column(name="FREQUENCY", format="5D", array=freqs[np.newaxis])])
    path = tmp_path / "x.fit"
    fits.HDUList([fits.PrimaryHDU(image, hdr), table]).writeto(path)
    with open_spectra(path, db_per_digit=0.4) as r:
        assert r.db_per_digit == 0.4
        np.testing.assert_array_equal(r.freqs_hz, [40e6, 45e6, 50e6, 60e6])
        data, end = read_all(r, 3)
    np.testing.assert_array_equal(data[:, :, 0], image[[4, 1, 0, 2]].T)
    t0 = datetime_to_tag(dt.datetime(2020, 1, 2, 3, 4, 5, 500000))
    np.testing.assert_array_equal(end, t0 + np.arange(1, 5) * FS // 2)


def test_start_stop_select_rows_by_window_end():
    with open_spectra(BIRR) as r:
        _, every = read_all(r)
        start = dt.datetime(2011, 6, 7, 6, 30, 0)
        stop = int(every[2000])
        data, end = read_all(r, 7, start=start, stop=stop)
        assert len(data) == len(end)
    want = every[(every > datetime_to_tag(start)) & (every <= stop)]
    np.testing.assert_array_equal(end, want)
    assert end[-1] == stop and len(end) > 100


# --- refused -----------------------------------------------------------------------------------
def test_unrecognised_files_are_refused(tmp_path):
    text = tmp_path / "notes.fit"
    text.write_text("SIMPLE is not how this starts\n")
    image_only = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((3, 4), np.float32)).writeto(image_only)
    other_h5 = tmp_path / "other.h5"
    with h5py.File(other_h5, "w") as f:
        f["x"] = np.arange(3)
    truncated = tmp_path / "cut.fit.gz"
    truncated.write_bytes(gzip.compress(BIRR.read_bytes())[:5000])
    cut_h5 = tmp_path / "cut.h5"
    cut_h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    for path in (text, image_only, other_h5, truncated, cut_h5):
        with pytest.raises(UnsupportedFile, match=path.name):
            open_spectra(path)
    with pytest.raises(FileNotFoundError):
        open_spectra(tmp_path / "missing.fit")


# --- sunspec archives --------------------------------------------------------------------------
def archive_rows(n=50, nfreq=64, factor=2):
    rng = np.random.default_rng(3)
    meta = ArchiveMeta(span_start_tag=T0, span_s=900, product="YY", factor=factor, chan0=600,
                       beam=2, navg=24, nint=512, sender_id="cafe", proto=2)
    tags = T0 + 12345 + np.arange(n, dtype=np.int64) * (FS // 2)
    return ArchiveData(rng.random((n, nfreq), dtype=np.float32) * 1e6, tags,
                       channel_freqs_hz(600, nfreq * factor, factor), meta)


@pytest.mark.parametrize(("fmt", "name"), [("hdf5", "a.h5"), ("fits", "a.fit"),
                                           ("hdf5", "misnamed.fit"), ("fits", "misnamed")])
def test_sunspec_archives(tmp_path, fmt, name):
    from sunspec.archive import fits as afits
    from sunspec.archive import hdf5

    rows = archive_rows()
    path = tmp_path / name
    (hdf5 if fmt == "hdf5" else afits).write(path, rows)
    with open_spectra(path) as r:
        assert r.source_format == f"sunspec-{fmt}"
        assert r.meta == rows.meta and r.pols == ("YY",) and r.unit == "linear"
        assert (r.factor, r.chan0, r.navg) == (2, 600, 24) and not r.normalised_by_navg
        assert r.window_ticks == 512 * 24 * 8192
        np.testing.assert_array_equal(r.freqs_hz, rows.freqs_hz)
        data, end = read_all(r, 7)
        assert r.time_resolution_s == 0.5
    np.testing.assert_array_equal(data[:, :, 0], rows.data)
    np.testing.assert_array_equal(end, rows.end_tag)
    if name.startswith("a."):  # the same rows as the archive's own reader gives
        np.testing.assert_array_equal(end, read_archive(path).end_tag)


# --- the recorder's HDF5 -----------------------------------------------------------------------
def test_recorder_file_trimmed_exact_times_and_frequencies(tmp_path):
    path = tmp_path / "060000_000000001234"  # the recorder writes no extension
    raw, starts, freq = write_recorder_file(path, written=2500, count=4000, gulp=1000)
    with open_spectra(path) as r:
        assert r.source_format == "ovro-lwa-hdf5" and r.station == "ovro-lwa"
        assert r.nrows == 2500  # the 1500 preallocated zero rows are not rows
        assert r.pols == ("XX", "YY", "XY_real", "XY_imag")
        assert r.navg == 24 and r.window_ticks == 24 * 8192 and r.normalised_by_navg
        assert r.time_resolution_s == 24 * 8192 / FS  # ~1.003 ms
        np.testing.assert_array_equal(r.freqs_hz, freq)
        assert (r.chan0, r.factor) == (600, 1)
        from sunspec.readers.lwahdf import recorder_freqs_hz, recorder_to_sunspec_hz

        np.testing.assert_array_equal(recorder_freqs_hz(r.chan0, r.nchan), freq)
        np.testing.assert_array_equal(recorder_to_sunspec_hz(r.freqs_hz),
                                      channel_freqs_hz(600, 64))
        data, end = read_all(r, 333)
        first = next(r.chunks(5))
    np.testing.assert_array_equal(end, starts + 24 * 8192)  # stamps are spectrum starts
    np.testing.assert_array_equal(first.start_tag, starts[:5])
    np.testing.assert_array_equal(data, raw / np.float32(24))


def test_reduced_recorder_file_implies_chan0_and_factor(tmp_path):
    path = tmp_path / "reduced"
    _, _, freq = write_recorder_file(path, chan0=1234, nchan=64, reduce_chan=4, written=10,
                                     count=10, pols=("I", "V"))
    with open_spectra(path) as r:
        assert (r.chan0, r.factor, r.nchan, r.pols) == (1234, 4, 16, ("I", "V"))
        np.testing.assert_array_equal(r.freqs_hz, freq)
        from sunspec.readers.lwahdf import recorder_to_sunspec_hz

        np.testing.assert_allclose(recorder_to_sunspec_hz(r.freqs_hz),
                                   channel_freqs_hz(1234, 64, 4), rtol=0, atol=1e-6)


def test_recorder_rows_average_into_frames_with_exact_windows(tmp_path):
    """What replay does with 1 ms spectra: start tags and data into the Averager give frames
    whose windows end exactly on the reader's end tags."""
    path = tmp_path / "fine"
    raw, starts, _ = write_recorder_file(path, written=2048, count=2100, nchan=32)
    with open_spectra(path) as r:
        info = SequenceInfo(time_tag=int(starts[0]), navg=r.navg, nbeam=1, nchan=r.nchan,
                            npol=r.npol, pols=",".join(r.pols))
        avg = Averager(512)
        avg.begin_sequence(info)
        frames, ends = [], []
        for chunk in r.chunks(300):
            ends.append(chunk.end_tag)
            for frame in avg.add(chunk.data[:, np.newaxis]):
                frames.append((frame.t_start_tag, frame.t_end_tag, frame.data.copy()))
    ends = np.concatenate(ends)
    assert len(frames) == 4
    for k, (t0, t1, data) in enumerate(frames):
        assert t0 == starts[512 * k] and t1 == ends[512 * k + 511]
        want = (raw[512 * k:512 * (k + 1)] / np.float32(24)).astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(data[0], want, rtol=1e-6)


def test_chunks_never_materialise_the_file(tmp_path):
    """A file of 20 MB of spectra and a 16 MB preallocated time column, read 200 rows at a
    time: the peak of Python-tracked allocations stays within a few chunks (0.2 MB each)."""
    path = tmp_path / "big"
    write_recorder_file(path, nchan=128, written=20_000, count=1_000_000, gulp=5000,
                        pols=("XX", "YY"))
    file_bytes = 20_000 * 128 * 2 * 4
    tracemalloc.start()
    try:
        with open_spectra(path) as r:
            rows = 0
            for chunk in r.chunks(200):
                assert len(chunk) <= 200
                rows += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    chunk_bytes = 200 * 128 * 2 * 4
    assert rows == 20_000
    assert peak < 8 * chunk_bytes < file_bytes / 10, (peak, chunk_bytes, file_bytes)


@pytest.mark.parametrize("gz", [None, "big.fit.gz"])
def test_fits_chunks_never_materialise_the_image(tmp_path, gz):
    """A FITS archive of 16 MB (plain, or gzipped) read 100 rows at a time: Python-tracked
    memory (any copy of the image: numpy arrays, decompressed bytes) peaks at a few chunks."""
    from sunspec.archive import fits as afits

    rows = archive_rows(n=8000, nfreq=512, factor=1)
    plain = tmp_path / "big.fit"
    afits.write(plain, rows)
    path = tmp_path / gz if gz else plain
    if gz:
        path.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    image_bytes = rows.data.nbytes
    tracemalloc.start()
    try:
        with open_spectra(path) as r:
            n = sum(len(c) for c in r.chunks(100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    chunk_bytes = 100 * 512 * 4
    assert n == 8000
    assert peak < 8 * chunk_bytes < image_bytes / 8, (peak, chunk_bytes, image_bytes)


def test_rows_whose_clock_goes_back_are_skipped_and_counted(tmp_path, caplog):
    """A recorder file whose stamps jump back for 50 rows: those rows are not delivered
    (never out of order), they are counted and logged; the rows around them are exact."""
    path = tmp_path / "backwards"
    raw, starts, _ = write_recorder_file(path, written=400, count=400, nchan=16)
    with h5py.File(path, "r+") as f:
        t = f["Observation1/time"]
        rec = t[100:150]
        rec["int"] -= 3600
        t[100:150] = rec
    with open_spectra(path) as r:
        data, end = read_all(r, 64)
        assert r.rows_out_of_order == 50
    keep = np.r_[0:100, 150:400]
    np.testing.assert_array_equal(end, starts[keep] + 24 * 8192)
    np.testing.assert_array_equal(data, raw[keep] / np.float32(24))
    assert "not after the row before them" in caplog.text
