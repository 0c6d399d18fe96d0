"""Any spectrometer's frequency axis: explicit axes, units, names, missing channels, cfreq0,
through protocol -> receiver -> ring -> archive -> replay, on real sockets and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streams import RawPublisher, wait_until

from sunspec import Receiver, protocol
from sunspec.clock import CHAN_BW, channel_freqs_hz
from sunspec.protocol import ProtocolError, Reject

#: an e-CALLISTO-like axis: uneven, 20-92 MHz, sent high to low as the instrument sweeps
AXIS_HZ = np.sort(np.unique(np.round(np.geomspace(20e6, 92e6, 48) / 1e4) * 1e4))[::-1]
NCH = len(AXIS_HZ)


def frame(values: np.ndarray, npol: int = 1) -> np.ndarray:
    return np.repeat(np.asarray(values, np.float32)[np.newaxis, :, np.newaxis], npol, axis=2)


def header(nchan: int = NCH, **keys):
    h = protocol.make_header(nbeam=1, nchan=nchan, npol=1, time_tag=0, t_end_tag=10, **keys)
    return protocol.encode(np.zeros((1, nchan, 1), np.float32), h)[1]


pytestmark = pytest.mark.publisher(nodrop=True)


def start(pub: RawPublisher, **kw) -> Receiver:
    r = Receiver(endpoint=pub.endpoint, **kw).start()
    pub.wait_subscriber()
    return r


def rows_received(r: Receiver, n: int):
    assert wait_until(lambda: r.status()["frames_received"] >= n, 10), r.status()
    return r.get_latest(n)


# --- protocol -------------------------------------------------------------------------------
def test_an_explicit_axis_and_its_labels_are_typed():
    h = protocol.parse_header(header(freqs_hz=AXIS_HZ.tolist(), unit="digits",
                                     db_per_digit=0.39, instrument="BIR",
                                     station="Birr-Castle", replay=True, source="BIR.fit",
                                     missing=[0, 5]))
    assert h.freqs_hz == tuple(AXIS_HZ) and h.unit == "digits" and h.db_per_digit == 0.39
    assert (h.instrument, h.station, h.replay, h.source, h.missing) == (
        "BIR", "Birr-Castle", True, "BIR.fit", (0, 5))
    keys = h.stream_keys()
    assert "freqs_hz" not in keys and keys["unit"] == "digits" and keys["instrument"] == "BIR"


@pytest.mark.parametrize("keys, why", [
    ({"freqs_hz": [20e6, 30e6]}, "nchan"),                           # wrong length
    ({"freqs_hz": [*AXIS_HZ[:-1].tolist(), AXIS_HZ[-2]]}, "monotonic"),  # a repeated channel
    ({"freqs_hz": AXIS_HZ.tolist(), "chan0": 600}, "two axes"),
    ({"freqs_hz": [0.0, *AXIS_HZ[1:].tolist()]}, "freqs_hz"),
    ({"unit": "kelvin"}, "unit"),
    ({"missing": [3, 3]}, "increasing"),
    ({"missing": [NCH]}, "missing"),
])
def test_bad_labels_of_the_data_reject_the_frame(keys, why):
    with pytest.raises(ProtocolError, match=why) as exc:
        protocol.parse_header(header(**keys))
    assert exc.value.reason is Reject.KEYS


def test_bad_optional_names_are_dropped_and_named():
    h = protocol.parse_header(header(instrument="\x00bad", station=7, replay="yes",
                                     db_per_digit=-1))
    assert set(h.ignored) == {"instrument", "station", "replay", "db_per_digit"}
    assert h.instrument is None and h.replay is None


# --- receiver and ring ----------------------------------------------------------------------
def test_explicit_axis_is_kept_channel_by_channel_with_its_names(pub):
    r = start(pub)
    try:
        values = np.arange(NCH, dtype=np.float32) + 1
        for _ in range(3):
            pub.send(frame(values), freqs_hz=AXIS_HZ.tolist(), unit="digits", db_per_digit=0.39,
                     instrument="BIR", station="Birr-Castle")
        rows = rows_received(r, 3)
        st, info, ring = r.status(), r.stream_info, r.ring
    finally:
        r.stop()
    # as sent (not chan0 * bw), kept in ascending frequency with each value on its channel
    np.testing.assert_array_equal(ring.freqs_hz, AXIS_HZ[::-1])
    np.testing.assert_array_equal(rows.data[-1], values[::-1])     # factor 1: no pairing
    assert st["factor"] == 1 and st["factor_auto"] and st["axis"] == "explicit"
    assert (info["unit"], info["db_per_digit"], info["instrument"], info["station"]) == (
        "digits", 0.39, "BIR", "Birr-Castle")


def test_rebinning_an_explicit_axis_is_asked_for_and_averages_its_frequencies(pub):
    r = start(pub, factor=2)
    try:
        pub.send(frame(np.arange(NCH, dtype=np.float32)), freqs_hz=AXIS_HZ.tolist())
        rows = rows_received(r, 1)
    finally:
        r.stop()
    np.testing.assert_allclose(rows.freqs_mhz * 1e6, AXIS_HZ.reshape(-1, 2).mean(axis=1)[::-1])
    np.testing.assert_array_equal(rows.data[0], np.arange(NCH).reshape(-1, 2).mean(1)[::-1])
    assert r.status()["factor"] == 2 and not r.status()["factor_auto"]


def test_uniform_streams_keep_the_default_pairing(pub):
    r = start(pub)
    try:
        pub.send(frame(np.ones(64)), chan0=600, chan_bw=CHAN_BW)
        assert rows_received(r, 1).data.shape == (1, 32)
    finally:
        r.stop()
    np.testing.assert_array_equal(r.ring.freqs_hz, channel_freqs_hz(600, 64, 2))
    assert r.status()["axis"] == "uniform" and r.status()["factor"] == 2


def test_cfreq0_and_bw_label_a_stream_without_chan0(pub):
    r = start(pub, factor=1)
    try:
        pub.send(frame(np.ones(16)), cfreq0=30e6, bw=16 * 0.5e6)
        assert rows_received(r, 1).data.shape == (1, 16)
    finally:
        r.stop()
    np.testing.assert_array_equal(r.ring.freqs_hz, 30e6 + np.arange(16) * 0.5e6)


def test_declared_missing_channels_are_kept_missing_and_unflagged_nan_still_rejected(pub):
    r = start(pub, factor=2)
    try:
        values = np.arange(1, 65, dtype=np.float32)
        sent = values.copy()
        sent[[7, 20]] = np.inf  # whatever a sender puts in a missing channel
        pub.send(frame(sent), chan0=600, missing=[7, 20])
        rows = rows_received(r, 1)
        bad = values.copy()
        bad[30] = np.nan  # not declared
        pub.send(frame(bad), chan0=600, missing=[7])
        assert wait_until(lambda: r.status()["rejected"]["nonfinite"] == 1)
    finally:
        r.stop()
    row = rows.data[0]
    want = values.reshape(-1, 2).mean(axis=1)
    missing = [3, 10]  # the row channels holding 7 and 20 (a uniform axis: order kept)
    assert np.isnan(row[missing]).all()
    keep = np.setdiff1d(np.arange(32), missing)
    np.testing.assert_array_equal(row[keep], want[keep])
    assert r.status()["frames_received"] == 1


# --- archive and replay ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_a_non_uniform_axis_survives_stream_ring_archive_and_replay(tmp_path, pub, fmt):
    pytest.importorskip("h5py")
    from sunspec.archive import ArchiveWriter, read_archive
    from sunspec.replay import Replayer

    rng = np.random.default_rng(4)
    data = (rng.random((6, NCH), dtype=np.float32) * 200).round()
    r = start(pub)
    try:
        with ArchiveWriter(r, tmp_path, fmt, span=900) as w:
            for row in data:
                pub.send(frame(row), freqs_hz=AXIS_HZ.tolist(), unit="digits",
                         db_per_digit=0.39, instrument="BIR", station="Birr-Castle")
            assert wait_until(lambda: w.status()["rows_written"] == 6, 10), w.status()
    finally:
        r.stop()
    (path,) = sorted(tmp_path.iterdir())
    assert path.name.startswith("Birr-Castle_") and "_replay" not in path.name
    archived = read_archive(path)  # FITS keeps MHz: equal to float precision
    np.testing.assert_allclose(archived.freqs_hz, AXIS_HZ[::-1], rtol=1e-14)
    assert (archived.meta.unit, archived.meta.instrument) == ("digits", "BIR")

    with Replayer([path], "tcp://127.0.0.1:*", speed=0) as rep:
        again = Receiver(endpoint=rep.endpoint).start()
        try:
            assert rep.wait_subscriber(10)
            assert rep.run() == 6
            rows = rows_received(again, 6)
            info, ring = again.stream_info, again.ring
            replay_dir = tmp_path / "replayed"
            with ArchiveWriter(again, replay_dir, fmt, span=900) as w2:
                assert wait_until(lambda: w2.status()["rows_written"] == 6, 10)
        finally:
            again.stop()
    np.testing.assert_array_equal(ring.freqs_hz, archived.freqs_hz)
    np.testing.assert_array_equal(rows.data, data[:, ::-1])
    np.testing.assert_array_equal(rows.end_tag, archived.end_tag)
    assert info["replay"] is True and info["unit"] == "digits" and info["instrument"] == "BIR"
    (copy,) = replay_dir.iterdir()  # marked, never an original span's name
    assert copy.name == path.name.replace(path.suffix, "_replay" + path.suffix)
    assert read_archive(copy).meta.replay


def birr() -> Path:
    radiospectra = pytest.importorskip("radiospectra")
    path = Path(radiospectra.__file__).parent / "tests" / "data" / "BIR_20110607_062400_10.fit"
    if not path.exists():
        pytest.skip("radiospectra ships no Birr file")
    return path


def test_the_birr_file_replays_into_a_default_receiver_labelled_20_to_92_mhz():
    pytest.importorskip("astropy.io.fits")
    from sunspec.replay import Replayer

    with Replayer([birr()], "tcp://127.0.0.1:*", speed=0, stop=None) as rep:
        r = Receiver(endpoint=rep.endpoint, buffer_length=4000).start()  # default options
        try:
            assert rep.wait_subscriber(10)
            assert rep.run() == 3600
            rows = rows_received(r, 3600)
            info, st = r.stream_info, r.status()
        finally:
            r.stop()
    f = rows.freqs_mhz
    assert 19.9 < f.min() < 20.1 and 91.7 < f.max() < 92.0 and len(f) == 192
    assert st["factor"] == 1 and st["axis"] == "explicit" and st["rejected_total"] == 0
    assert info["unit"] == "digits" and info["instrument"] == "BIR" and info["replay"] is True
    assert rows.data.min() >= 0 and rows.data.max() <= 255  # digits, as the file holds them


def test_missing_channels_of_a_descending_axis_land_on_their_frequencies(pub):
    r = start(pub)
    try:
        values = np.arange(1, NCH + 1, dtype=np.float32)
        pub.send(frame(values), freqs_hz=AXIS_HZ.tolist(), missing=[0, 9])
        rows = rows_received(r, 1)
        ring = r.ring
    finally:
        r.stop()
    row = rows.data[0]
    gone = np.isnan(row)
    np.testing.assert_array_equal(ring.freqs_hz[gone], np.sort(AXIS_HZ[[0, 9]]))
    np.testing.assert_array_equal(row[~gone], np.delete(values, [0, 9])[::-1])


def test_a_new_name_or_replay_flag_reaches_stream_info_without_a_new_ring(pub):
    r = start(pub)
    try:
        pub.send(frame(np.ones(NCH)), freqs_hz=AXIS_HZ.tolist(), instrument="BIR")
        rows_received(r, 1)
        ring = r.ring
        pub.send(frame(np.ones(NCH)), freqs_hz=AXIS_HZ.tolist(), instrument="GLASGOW",
                 replay=True)
        rows_received(r, 2)
        info = r.stream_info
    finally:
        r.stop()
    assert r.ring is ring  # the same geometry: the same ring
    assert info["instrument"] == "GLASGOW" and info["replay"] is True
