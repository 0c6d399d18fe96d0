"""The Sun's elevation at OVRO, for archiving only while the Sun is up.

Computed offline from closed formulae, with no Earth-orientation table (astropy's IERS table
goes stale a month after its release, and then refuses dates past its end without a
download): the Sun's apparent right ascension and declination from the low-precision
formulae of the Astronomical Almanac (section C, "Low-precision formulas for the Sun's
coordinates", about 0.01 degree from 1950 to 2050), Greenwich mean sidereal time from the
IAU 1982 expression (Meeus, "Astronomical Algorithms", 2nd ed., eq. 12.4) with UT1 taken as
UTC (|UT1 - UTC| < 0.9 s, at most 0.004 degree). Geocentric, without refraction: ample for
a gate of one degree.
"""

from __future__ import annotations

import numpy as np

from ..clock import FS
from .base import OVRO

__all__ = ["SunGate", "sun_elevation"]

#: Julian date of the Unix epoch, and of J2000.0 (2000-01-01 12:00)
_JD_UNIX = 2440587.5
_JD_J2000 = 2451545.0


def sun_elevation(unix: np.ndarray, site: tuple[float, float, float] = OVRO) -> np.ndarray:
    """Elevation of the Sun's centre (degrees, geocentric, no refraction) at ``site``
    (latitude deg N, longitude deg E, height m) at Unix times ``unix`` (UTC seconds)."""
    lat, lon, _ = site
    n = np.asarray(unix, np.float64) / 86400.0 + (_JD_UNIX - _JD_J2000)  # days from J2000
    # Astronomical Almanac, low precision: mean longitude L, mean anomaly g, ecliptic
    # longitude lam, obliquity eps (degrees)
    mean_lon = 280.460 + 0.9856474 * n
    g = np.radians(357.528 + 0.9856003 * n)
    lam = np.radians(mean_lon + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 0.0000004 * n)
    ra = np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam))
    dec = np.arcsin(np.sin(eps) * np.sin(lam))
    # IAU 1982 GMST (Meeus eq. 12.4), degrees; T in Julian centuries from J2000
    t = n / 36525.0
    gmst = 280.46061837 + 360.98564736629 * n + 0.000387933 * t**2 - t**3 / 38710000.0
    hour_angle = np.radians(np.mod(gmst + lon, 360.0)) - ra
    phi = np.radians(lat)
    sin_alt = np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(hour_angle)
    return np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))


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
