"""The sun gate's solar elevation: offline, for any date, whatever the age of astropy's
Earth-orientation (IERS) table; astropy is only the reference here, never allowed to
download."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import warnings

import numpy as np
import pytest
from archiving import FakeReceiver, rows_for
from streams import wait_until

from sunspec.archive import ArchiveWriter, read_archive
from sunspec.archive.base import OVRO
from sunspec.archive.sun import sun_elevation
from sunspec.clock import datetime_to_tag

iers = pytest.importorskip("astropy.utils.iers")


@pytest.fixture(autouse=True)
def no_download():
    with iers.conf.set_temp("auto_download", False):
        yield


def astropy_elevation(unix: np.ndarray) -> np.ndarray:
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, get_body
    from astropy.time import Time

    lat, lon, height = OVRO
    where = EarthLocation(lat=lat * u.deg, lon=lon * u.deg, height=height * u.m)
    t = Time(unix, format="unix")
    return get_body("sun", t, where).transform_to(AltAz(obstime=t, location=where)).alt.deg


def test_elevation_matches_astropy_where_the_bundled_table_has_measurements():
    from astropy.time import Time

    measured_until = Time(iers.IERS_Auto.open().meta["predictive_mjd"], format="mjd").unix
    unix = np.random.default_rng(3).uniform(Time("2000-01-01").unix, measured_until, 2000)
    diff = sun_elevation(unix) - astropy_elevation(unix)
    assert np.abs(diff).max() < 0.02  # the Almanac's formulae: about 0.01 degree


def test_elevation_far_after_the_bundled_table_ends():
    """2035-2045: against astropy extrapolating Earth orientation (told to accept that), and
    the June solstice's highest Sun, 90 - latitude + obliquity."""
    from astropy.time import Time

    start = dt.datetime(2035, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert start > Time(iers.IERS_Auto.open()["MJD"][-1], format="mjd").unix
    unix = start + np.random.default_rng(4).uniform(0, 10 * 365.25 * 86400, 1000)
    with iers.conf.set_temp("auto_max_age", None), \
            iers.conf.set_temp("iers_degraded_accuracy", "ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = astropy_elevation(unix)
    assert np.abs(sun_elevation(unix) - reference).max() < 0.02

    solstice = dt.datetime(2040, 6, 20, tzinfo=dt.timezone.utc).timestamp()  # its day
    day = solstice + np.arange(0, 86400, 30.0)
    obliquity = 23.4393 - 0.4 * 0.0130  # at 2040 (IAU 2006: 0.0130 degree less a century)
    assert abs(sun_elevation(day).max() - (90 - OVRO[0] + obliquity)) < 0.02


def test_elevation_needs_no_iers_table():
    code = ("import sys, numpy as np; from sunspec.archive.sun import sun_elevation; "
            "sun_elevation(np.array([2.0e9, 4.0e9])); "
            "print(any(m.startswith('astropy.utils.iers') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_sun_gate_after_the_bundled_table_ends(tmp_path):
    """The gate archives daytime rows of 2030 (past the table) and skips the night's."""
    noon = datetime_to_tag(dt.datetime(2030, 6, 1, 20, 16))  # 13:16 PDT
    night = datetime_to_tag(dt.datetime(2030, 6, 2, 6, 16))  # 23:16 PDT
    data, day_tags = rows_for(4, 64, noon)
    rec = FakeReceiver()
    with ArchiveWriter(rec, tmp_path, "hdf5", sun_above=1.0) as w:
        rec.push(data, day_tags)
        rec.push(data, night - noon + day_tags)
        assert wait_until(lambda: w.status()["rows_skipped_sun"] == 4, 20), w.status()
        assert wait_until(lambda: w.status()["rows_written"] == 4, 20), w.status()
    assert w.status()["errors"] == {} and w.status()["health"] == "ok"
    files = sorted(tmp_path.glob("*.h5"))
    assert [f.name for f in files] == ["OVRO-LWA_20300601_201500_02.h5"]
    np.testing.assert_array_equal(read_archive(files[0]).end_tag, day_tags)
