"""FITS archive files in the e-CALLISTO layout, which ``radiospectra.spectrogram.Spectrogram``
reads without conversion.

Primary HDU: float32 image (frequency, time), highest frequency first as e-CALLISTO writes
it, with the e-CALLISTO keywords (``CONTENT`` containing "e-CALLISTO", ``DATE-OBS``/
``TIME-OBS``/``DATE-END``/``TIME-END``, ``INSTRUME``, ``BUNIT``, ``OBS_*`` for OVRO).
Extension 1: a one-row binary table with ``TIME`` (seconds from ``DATE-OBS TIME-OBS``) and
``FREQUENCY`` (MHz, descending). Times are the ends of the rows' averaging windows. The
stream's metadata is kept in extra keywords (``T0TAG`` makes times exact to the tick).

e-CALLISTO's image has time as its fastest axis, so a file cannot grow row by row: while a
span is open its rows are journalled (:mod:`.journal`), and the FITS file is made from the
journal when the span is complete.
"""

from __future__ import annotations

import datetime as _dt
import io
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..clock import FS, TICKS_PER_US, datetime_to_tag, tag_to_datetime
from .base import OVRO, ArchiveData, ArchiveMeta, write_new

__all__ = ["EXTENSION", "encode", "read", "write"]

EXTENSION = ".fit"
#: sunspec keywords (8 characters at most) for ArchiveMeta fields
_KEYS = {
    "span_start_tag": "SPANSTRT", "span_s": "SPAN", "product": "PRODUCT", "factor": "FACTOR",
    "chan_bw": "CHANBW", "chan0": "CHAN0", "beam": "BEAM", "navg": "NAVG", "nint": "NINT",
    "sender_id": "SENDERID", "proto": "PROTO", "software": "SOFTWARE", "station": "STATION",
    "unit": "UNIT", "db_per_digit": "DBPERDIG", "instrument": "INSTNAME", "replay": "REPLAY",
    "source": "SOURCE",
}
#: BUNIT of each ArchiveMeta unit
_BUNIT = {"linear": ("arbitrary", "mean power, not divided by NAVG"),
          "dB": ("dB", "decibels, averaged as such"),
          "digits": ("digits", "log detector digits, DBPERDIG dB each")}


def _fits_date(t: _dt.datetime) -> str:
    return t.strftime("%Y/%m/%d")


def _fits_time(t: _dt.datetime) -> str:
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def write(path: Path, rows: ArchiveData) -> None:
    """Write a complete e-CALLISTO FITS file (``path`` must not exist)."""
    write_new(path, encode(rows))


def encode(rows: ArchiveData) -> bytes:
    """The bytes of an e-CALLISTO FITS file holding ``rows`` (built in memory)."""
    meta = rows.meta
    n, nfreq = rows.data.shape
    # TIME-OBS has millisecond resolution: times count from the first row's millisecond
    t0_tag = int(rows.end_tag[0]) // (1000 * TICKS_PER_US) * (1000 * TICKS_PER_US)
    t0 = tag_to_datetime(t0_tag)
    t1 = tag_to_datetime(int(rows.end_tag[-1]))
    times = (rows.end_tag - t0_tag) / FS
    if rows.freqs_hz is None:
        freqs, unit = np.arange(nfreq, dtype=np.float64), "Channel"
    else:
        freqs, unit = rows.freqs_hz / 1e6, "Frequency [MHz]"
    lat, lon, alt = OVRO
    hdr = fits.Header()
    hdr["DATE"] = (_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), "File creation")
    hdr["CONTENT"] = f"{_fits_date(t0)}  Radio flux density, e-CALLISTO layout ({meta.station})"
    hdr["ORIGIN"] = ("OVRO", "Organization name")
    hdr["TELESCOP"] = (meta.station, "Type of instrument")
    hdr["INSTRUME"] = (meta.instrument or meta.station, "Name of the spectrometer")
    hdr["OBJECT"] = ("Sun", "object description")
    hdr["DATE-OBS"] = (_fits_date(t0), "Date observation starts")
    hdr["TIME-OBS"] = (_fits_time(t0), "Time observation starts")
    hdr["DATE-END"] = (_fits_date(t1), "date observation ends")
    hdr["TIME-END"] = (_fits_time(t1), "time observation ends")
    hdr["BUNIT"] = _BUNIT.get(meta.unit, _BUNIT["linear"])
    hdr["CRVAL1"] = (float(t0_tag % (86400 * FS)) / FS, "value on axis 1 at ref pixel [sec]")
    hdr["CRPIX1"] = (0, "reference pixel of axis 1")
    hdr["CTYPE1"] = ("Time [UT]", "title of axis 1")
    hdr["CDELT1"] = (float(np.median(np.diff(times))) if n > 1 else 0.0, "step x-axis [sec]")
    hdr["CRVAL2"] = (float(nfreq), "value on axis 2 at the reference pixel")
    hdr["CRPIX2"] = (0, "reference pixel of axis 2")
    hdr["CTYPE2"] = (unit, "title of axis 2")
    hdr["CDELT2"] = (float(freqs[0] - freqs[1]) if nfreq > 1 else 0.0, "step y-axis")
    hdr["OBS_LAT"] = (abs(lat), "observatory latitude in degree")
    hdr["OBS_LAC"] = ("N" if lat >= 0 else "S", "observatory latitude code {N,S}")
    hdr["OBS_LON"] = (abs(lon), "observatory longitude in degree")
    hdr["OBS_LOC"] = ("E" if lon >= 0 else "W", "observatory longitude code {E,W}")
    hdr["OBS_ALT"] = (alt, "observatory altitude in meter asl")
    hdr["T0TAG"] = (t0_tag, "TIME=0 in 196 MHz ticks since 1970 UTC")
    for field, key in _KEYS.items():
        value = getattr(meta, field)
        if value is not None:
            hdr[key] = value
    hdr["COMMENT"] = "Times are the ends of the averaging windows."
    primary = fits.PrimaryHDU(np.ascontiguousarray(rows.data.T[::-1], dtype=">f4"), hdr)
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="TIME", format=f"{n}D", array=times[np.newaxis]),
        fits.Column(name="FREQUENCY", format=f"{nfreq}D", array=freqs[::-1][np.newaxis]),
    ])
    buf = io.BytesIO()
    fits.HDUList([primary, table]).writeto(buf)
    return buf.getvalue()


def read(path: str | Path) -> ArchiveData:
    """Read an e-CALLISTO FITS file (sunspec's, or any whose table has TIME and FREQUENCY)."""
    with fits.open(path) as hdul:
        hdr = hdul[0].header
        data = np.ascontiguousarray(np.asarray(hdul[0].data)[::-1].T, dtype=np.float32)
        times = np.asarray(hdul[1].data["TIME"], np.float64).ravel()
        freqs = np.asarray(hdul[1].data["FREQUENCY"], np.float64).ravel()[::-1]
        if "T0TAG" in hdr:
            t0_tag = int(hdr["T0TAG"])
        else:
            t0_tag = datetime_to_tag(_dt.datetime.strptime(
                f"{hdr['DATE-OBS']} {hdr['TIME-OBS']}", "%Y/%m/%d %H:%M:%S.%f"))
        fields = {field: hdr[key] for field, key in _KEYS.items() if key in hdr}
        fields.setdefault("span_start_tag", t0_tag)
        fields.setdefault("span_s", 0)
        freqs_hz = freqs * 1e6 if hdr.get("CTYPE2", "").startswith("Frequency") else None
    end_tag = t0_tag + np.rint(times * FS).astype(np.int64)
    return ArchiveData(data, end_tag, freqs_hz, ArchiveMeta.from_dict(fields))
