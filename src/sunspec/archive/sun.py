"""The Sun's elevation at OVRO, for archiving only while the Sun is up (astropy)."""

from __future__ import annotations

import warnings

import numpy as np

from ..clock import FS
from .base import OVRO

__all__ = ["SunGate", "sun_elevation"]


def sun_elevation(unix: np.ndarray, site: tuple[float, float, float] = OVRO) -> np.ndarray:
    """Apparent elevation of the Sun's centre (degrees) at ``site`` (lat, lon, height m)."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, get_body
    from astropy.time import Time
    from astropy.utils import iers

    lat, lon, height = site
    where = EarthLocation(lat=lat * u.deg, lon=lon * u.deg, height=height * u.m)
    t = Time(np.asarray(unix, np.float64), format="unix")
    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicted polar motion is plenty for this
        altaz = get_body("sun", t, where).transform_to(AltAz(obstime=t, location=where))
    return np.asarray(altaz.alt.deg, np.float64)


class SunGate:
    """Says which window-end tags fall while the Sun is above ``min_elevation`` degrees,
    evaluating the elevation once per minute of data time."""

    def __init__(self, min_elevation: float, site: tuple[float, float, float] = OVRO):
        self.min_elevation = min_elevation
        self.site = site
        self._up: dict[int, bool] = {}

    def mask(self, tags: np.ndarray) -> np.ndarray:
        minutes = np.asarray(tags, np.int64) // (60 * FS)
        new = [m for m in np.unique(minutes).tolist() if m not in self._up]
        if new:
            if len(self._up) > 10_000:
                self._up.clear()
            elev = sun_elevation(np.array(new, np.float64) * 60.0 + 30.0, self.site)
            self._up.update(zip(new, (elev > self.min_elevation).tolist(), strict=True))
        return np.array([self._up[m] for m in minutes.tolist()], dtype=bool)
