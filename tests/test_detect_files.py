"""sunspec-detect over the files the readers read: the e-CALLISTO Birr file radiospectra
ships (8-bit digits of a log detector, descending channels), in a subprocess; files no reader
recognises; instrument digits turned into dB for the detector."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sunspec.detect import reader_rows, stream_name
from sunspec.readers import open_spectra

pytest.importorskip("h5py")
fits = pytest.importorskip("astropy.io.fits")
radiospectra = pytest.importorskip("radiospectra")

BIRR = Path(radiospectra.__file__).parent / "tests" / "data" / "BIR_20110607_062400_10.fit"


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text.rstrip("Z")).replace(
        tzinfo=dt.timezone.utc).timestamp()


def detect_cli(*args):
    return subprocess.run([sys.executable, "-c",
                           "import sys; from sunspec.cli import detect_main; "
                           "sys.exit(detect_main())", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_reader_rows_give_digits_as_db_of_one_product():
    with open_spectra(BIRR) as r:
        raw = np.concatenate([c.data[:, :, 0] for c in r.chunks(500)])
        unit, step, chunks = reader_rows(r, max_rows=500)
        rows = list(chunks)
        assert unit == "dB" and r.unit == "digits"
        assert step == pytest.approx(0.25)
        assert stream_name(r) == "BIR"
        got = np.concatenate([c.data for c in rows])
        # e-CALLISTO: 2500 mV over 256 digits at 25 mV per dB
        np.testing.assert_allclose(got, raw * (2500 / 256 / 25), rtol=1e-6)
        assert got.shape == (3600, 192) and got.dtype == np.float32
        assert np.all(np.diff(np.concatenate([c.end_tag for c in rows])) > 0)
        with pytest.raises(ValueError, match="no product 'XX'"):
            reader_rows(r, "XX")


def test_cli_finds_the_birr_type_iii_bursts_through_the_reader():
    out = detect_cli(BIRR)
    assert out.returncode == 0, out.stderr
    events = [json.loads(x) for x in out.stdout.splitlines()]
    with fits.open(BIRR) as f:
        h = f[0].header
        start = dt.datetime.strptime(f"{h['DATE-OBS']} {h['TIME-OBS']}", "%Y/%m/%d %H:%M:%S.%f")
    t0 = start.replace(tzinfo=dt.timezone.utc).timestamp()
    assert events and all(e["stream"] == "BIR" and e["final"] for e in events)
    assert all(t0 <= utc(e["start_utc"]) <= t0 + 900 for e in events)
    assert all(20.0 <= e["f_low_mhz"] < e["f_high_mhz"] <= 92.0 for e in events)
    # the file's brightest burst, a type III group from 06:25:5x down through the band
    first = events[0]
    assert first["type"] == "III" and first["drift_mhz_s"] < 0
    assert t0 + 110 <= utc(first["start_utc"]) <= t0 + 120, first


def test_cli_names_unreadable_files_and_searches_the_others(tmp_path):
    junk = tmp_path / "notes.fit"
    junk.write_text("SIMPLE  = not really a FITS file\n")
    text = tmp_path / "x.h5"
    text.write_bytes(b"hello")
    alone = detect_cli(BIRR)
    both = detect_cli(text, BIRR, junk)
    assert both.returncode == 1
    assert both.stdout.count("\n") == alone.stdout.count("\n") > 0
    assert [json.loads(x)["start_utc"] for x in both.stdout.splitlines()] == \
        [json.loads(x)["start_utc"] for x in alone.stdout.splitlines()]
    lines = both.stderr.splitlines()
    assert sum(f"cannot read {text}" in x for x in lines) == 1
    assert sum(f"cannot read {junk}" in x for x in lines) == 1
    assert "Traceback" not in both.stderr
    none = detect_cli(text, junk)
    assert none.returncode == 2
    assert "usage: sunspec-detect" in none.stderr and "Traceback" not in none.stderr
    assert "not a spectrum file" in none.stderr
    product = detect_cli("--product", "YY", BIRR)
    assert product.returncode == 2 and "no product 'YY'" in product.stderr

