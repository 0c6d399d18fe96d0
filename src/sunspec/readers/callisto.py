"""e-CALLISTO FITS files (``.fit``, ``.fit.gz``), and sunspec's FITS archives (same layout).

Layout (e-CALLISTO operating manual, C. Monstein; files as the network's archive serves them,
e.g. ``BIR_20110607_062400_10.fit``): primary HDU an image (frequency, time), one column per
sweep; extension 1 a one-row binary table with ``TIME`` (seconds from ``DATE-OBS``
``TIME-OBS``) and ``FREQUENCY`` (MHz, in sweep order, e-CALLISTO: descending).

Facts this reader delivers:

* Times: row ``i`` starts at ``DATE-OBS TIME-OBS + TIME[i]`` (as radiospectra reads it; note
  that ``CRVAL1`` may give a slightly different start, e.g. 06:24:00 against TIME-OBS
  06:24:00.213 in the Birr file: TIME-OBS is used). A CALLISTO sweep measures its channels one
  after the other over the whole sweep, so a row's window is one sweep: ``window_ticks`` =
  the median step of ``TIME`` (0.25 s for 200 channels at 800 measurements per second),
  ``end_tag`` = start + window. sunspec's own files (keyword ``T0TAG``) store window ends
  exactly: ``end_tag = T0TAG + TIME``, window from their ``NAVG``/``NINT``.
* Frequencies, the dedup rule: the axis is made strictly increasing by ordering channels by
  frequency and, where several channels carry exactly the same frequency value, keeping the
  one that comes **first in the file** and dropping the others. (e-CALLISTO frequency
  programs pad unused slots with a repeated frequency: the Birr file's last 9 of 200
  channels are all 20.0 MHz, so 192 channels remain, 20.0-91.813 MHz.)
* Values: ``BUNIT`` ``digits`` -> unit ``"digits"``: raw 8-bit output of CALLISTO's
  logarithmic detector. ``db_per_digit`` converts them to relative dB: the ADC spans about
  2500 mV in 256 digits and the detector gives about 25 mV per dB, i.e.
  2500 / 256 / 25 = 0.390625 dB per digit (:data:`DB_PER_DIGIT`, the value used; pass another
  to :class:`CallistoReader` for a calibrated station). Sources: Benz, Monstein & Meyer 2005,
  "CALLISTO - a new concept for solar radio spectrometers", Solar Physics 226, 143;
  Benz et al. 2009, "A world-wide net of solar radio spectrometers: e-CALLISTO", Earth Moon
  Planets 104, 277; the e-CALLISTO operating manual. sunspec's files (``BUNIT`` arbitrary)
  are ``"linear"``; a ``BUNIT`` naming dB gives ``"dB"``.
* ``instrument`` = ``INSTRUME`` (the e-CALLISTO station code, e.g. "BIR"); ``station`` =
  sunspec's ``STATION`` keyword, else ``ORIGIN`` (e.g. "Birr_Castle_Ireland");
  ``location`` = (latitude N, longitude E, altitude m) from ``OBS_*`` when present.

Streaming: the image is memory-mapped and read by column ranges through astropy's
``section``, so only a chunk's columns are copied; a gzipped file is first decompressed as a
stream to an unnamed temporary file (disk, not memory). The ``TIME`` column (8 bytes a row)
is held whole.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..archive.base import ArchiveMeta
from ..archive.fits import _KEYS as _SUNSPEC_KEYS
from ..clock import FS, datetime_to_tag
from .base import SpectrumReader, UnsupportedFile, ticks

__all__ = ["DB_PER_DIGIT", "CallistoReader", "dedup_axis", "is_callisto"]

#: dB per digit of CALLISTO's detector: 2500 mV / 256 digits / 25 mV per dB
DB_PER_DIGIT = 2500.0 / 256.0 / 25.0


def dedup_axis(freqs: np.ndarray) -> np.ndarray:
    """Indices of the channels to keep, in increasing frequency: of channels with the same
    frequency, the first in the file."""
    order = np.argsort(freqs, kind="stable")  # stable: equal values keep file order
    f = freqs[order]
    first = np.ones(len(f), bool)
    first[1:] = f[1:] != f[:-1]
    return order[first]


def _header_ok(hdul: fits.HDUList) -> str | None:
    """Why ``hdul`` is not in the e-CALLISTO layout (None if it is)."""
    if len(hdul) < 2 or hdul[0].header.get("NAXIS") != 2:
        return "no 2-D primary image with a table extension"
    table = hdul[1]
    if not isinstance(table, fits.BinTableHDU):
        return "extension 1 is not a binary table"
    names = [n.upper() for n in table.columns.names]
    if "TIME" not in names or "FREQUENCY" not in names:
        return "its table has no TIME and FREQUENCY columns"
    return None


def is_callisto(hdul: fits.HDUList) -> bool:
    """Whether an open FITS file has the e-CALLISTO layout."""
    return _header_ok(hdul) is None


def _unit(bunit: str) -> str:
    b = bunit.strip().lower()
    if "digit" in b:
        return "digits"
    if "db" in b:
        return "dB"
    return "linear"


def _parse_time(date: str, time: str) -> _dt.datetime:
    text = f"{date.strip()} {time.strip()}"
    for fmt in ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
                "%Y-%m-%d %H:%M:%S"):
        try:
            return _dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise UnsupportedFile(f"DATE-OBS/TIME-OBS {text!r} is not a time")


def _open(path: Path) -> fits.HDUList:
    """Open memory-mapped; a gzipped file is first decompressed, as a stream, to an unnamed
    temporary file (astropy would otherwise decompress from the start for every chunk)."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if not gzipped:
        return fits.open(path, memmap=True, do_not_scale_image_data=True)
    with tempfile.NamedTemporaryFile(suffix=".fit", delete=False) as tmp:
        try:
            with gzip.open(path, "rb") as gz:
                shutil.copyfileobj(gz, tmp, 1 << 16)
        except BaseException:
            os.unlink(tmp.name)
            raise
    try:
        return fits.open(tmp.name, memmap=True, do_not_scale_image_data=True)
    finally:
        os.unlink(tmp.name)  # gone from the directory; the open map keeps the data


class CallistoReader(SpectrumReader):
    """Rows of an e-CALLISTO-layout FITS file (see the module docstring for the facts)."""

    def __init__(self, path: str | Path, *, db_per_digit: float = DB_PER_DIGIT):
        super().__init__(path)
        self._hdul = _open(self.path)
        try:
            self._setup(db_per_digit)
        except BaseException:
            self._hdul.close()
            raise

    def _setup(self, db_per_digit: float) -> None:
        hdul = self._hdul
        why = _header_ok(hdul)
        if why is not None:
            raise UnsupportedFile(f"{self.path}: not an e-CALLISTO FITS file: {why}")
        hdr = hdul[0].header
        self._image = hdul[0]
        nfreq_file, ntime = hdr["NAXIS2"], hdr["NAXIS1"]
        table = hdul[1].data
        times = np.asarray(table["TIME"], np.float64).ravel()
        freqs = np.asarray(table["FREQUENCY"], np.float64).ravel()
        if len(times) != ntime or len(freqs) != nfreq_file:
            raise UnsupportedFile(f"{self.path}: TIME/FREQUENCY ({len(times)}, {len(freqs)}) "
                                  f"do not match the image ({ntime}, {nfreq_file})")
        self._scale = (float(hdr.get("BSCALE", 1.0)), float(hdr.get("BZERO", 0.0)))
        sunspec = "T0TAG" in hdr
        if sunspec:
            fields = {f: hdr[k] for f, k in _SUNSPEC_KEYS.items() if k in hdr}
            fields.setdefault("span_start_tag", int(hdr["T0TAG"]))
            fields.setdefault("span_s", 0)
            self.meta = meta = ArchiveMeta.from_dict(fields)
            self.source_format = "sunspec-fits"
            t0 = int(hdr["T0TAG"])
            self.window_ticks = meta.window_ticks
            starts_or_ends = t0 + np.rint(times * FS).astype(np.int64)
            self._end = starts_or_ends
            self.pols = (meta.product,)
            self.navg, self.factor, self.chan0 = meta.navg, meta.factor, meta.chan0
            self.station = meta.station
        else:
            self.source_format = "e-callisto"
            t0 = datetime_to_tag(_parse_time(hdr["DATE-OBS"], hdr["TIME-OBS"]))
            step = np.median(np.diff(times)) if len(times) > 1 else float(hdr.get("CDELT1", 0))
            self.window_ticks = ticks(float(step)) or None
            self._end = t0 + np.rint(times * FS).astype(np.int64) + (self.window_ticks or 0)
            self.pols = ("total",)  # one receiver input, total power
            self.station = str(hdr.get("ORIGIN", "")).strip()
        self.instrument = str(hdr.get("INSTRUME", "")).strip()
        self.unit = _unit(str(hdr.get("BUNIT", "")))
        self.db_per_digit = db_per_digit if self.unit == "digits" else None
        if self.meta is not None:  # sunspec's own file says what its stream said
            self.unit, self.instrument = self.meta.unit, self.meta.instrument or self.instrument
            if self.unit == "digits" and self.meta.db_per_digit is not None:
                self.db_per_digit = self.meta.db_per_digit
        in_mhz = str(hdr.get("CTYPE2", "Frequency")).startswith("Frequency")
        self._keep = dedup_axis(freqs)
        self.freqs_hz = freqs[self._keep] * 1e6 if in_mhz else None
        self.nchan = len(self._keep)
        self.nrows = ntime
        if ntime > 1:
            self.time_resolution_s = float(np.median(np.diff(self._end))) / FS
        self.location: tuple[float, float, float] | None = None
        if all(k in hdr for k in ("OBS_LAT", "OBS_LON")):
            lat = float(hdr["OBS_LAT"]) * (-1 if str(hdr.get("OBS_LAC", "N")).strip() == "S"
                                           else 1)
            lon = float(hdr["OBS_LON"]) * (-1 if str(hdr.get("OBS_LOC", "E")).strip() == "W"
                                           else 1)
            self.location = (lat, lon, float(hdr.get("OBS_ALT", 0.0)))

    def _end_tags(self, a: int, b: int) -> np.ndarray:
        return self._end[a:b].copy()

    def _rows(self, a: int, b: int) -> np.ndarray:
        block = np.asarray(self._image.section[:, a:b])  # (nfreq_file, b - a), raw values
        out = block[self._keep].T.astype(np.float32)
        scale, zero = self._scale
        if scale != 1.0 or zero != 0.0:
            out = out * np.float32(scale) + np.float32(zero)
        return out[:, :, np.newaxis]

    def close(self) -> None:
        self._hdul.close()
