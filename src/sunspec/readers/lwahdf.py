"""HDF5 power-beam files of the OVRO-LWA data recorder, and sunspec's HDF5 archives.

The recorder (github.com/lwa-project/ovro_data_recorder: ``scripts/dr_beam.py`` WriterOp,
``ovro_data_recorder/filewriter.py`` HDF5Writer, ``ovro_data_recorder/lwahdf.py``; constants
and ``chan_to_freq`` from github.com/ovro-lwa/mnc_python ``mnc/common.py``) writes, with no
file extension::

    /Observation1                attrs tInt = navg / CHAN_BW (s), RBW (Hz), nChan, Beam, ...
    /Observation1/time           compound (int <i8 Unix s, frac <f8 s), preallocated for the
                                 whole scheduled span; rows after the last write stay zero
    /Observation1/Tuning1/freq   <f8 Hz, attr Units 'Hz'
    /Observation1/Tuning1/XX, YY, XY_real, XY_imag (or I, Q, U, V after a reduction)
                                 <f4 (count, nchan), preallocated like time

Facts this reader relies on, with where they come from:

* Values are divided by ``navg`` (WriterOp: ``ndata /= norm_factor`` with
  ``norm_factor = navg``) before they are written: ``normalised_by_navg`` is True. sunspec's
  stream and archives carry the plain mean (not divided): multiply by ``navg`` to compare.
* Time stamps mark the **start** of each spectrum. The capture's sequence ``time_tag`` is
  ``seq0 * 8192 * navg`` (the spectrum counter times the ticks of one spectrum), each gulp
  advances it by ``navg * ntime * 8192``, and spectrum ``i`` of a gulp is stamped
  ``time_tag + i * navg * 8192`` (HDF5Writer.write) -- the same tag sunspec's Averager takes
  as a spectrum's start. So ``end_tag`` = stamp + ``window_ticks`` (= navg * 8192, navg
  from ``tInt * CHAN_BW``). The stamps pass through astropy ``Time`` (``LWATime.tuple``),
  whose float arithmetic and truncation can make a stamp one tick (5.1 ns) early; they are
  read as written (``int`` + rint(``frac`` * FS)).
* Preallocated rows: ``count = span / tInt + 1`` rows are created at the start and filled in
  order; the file holds ``n`` written rows followed by rows whose ``int`` is 0. The reader
  finds ``n`` by a binary search on ``int`` and never reads past it.
* Frequencies: the recorder writes ``freq = CHAN_BW * (chan0 + 0.5) + k * chan_bw``
  (``chan_to_freq(chan) = CHAN_BW * (chan + 0.5)``), and a reduction by ``r`` channels
  takes the mean of ``r`` of those. sunspec (:func:`sunspec.clock.channel_freqs_hz`) centres
  channel ``c`` on ``c * CHAN_BW``: the two differ by exactly half a channel,
  :data:`RECORDER_FREQ_OFFSET_HZ` = CHAN_BW / 2 = 11962.890625 Hz, for any reduction. Which
  is right is a property of the F-engine: the OVRO-LWA F-engine channelises with an 8192-point
  real FFT of the 196 MHz samples, and bin ``c`` of such a transform is centred on
  ``c * FS / 8192 = c * CHAN_BW`` (the DFT's bin frequencies), which is sunspec's
  convention; the recorder's extra half channel would be right only for a channeliser that
  shifts its bins by half a bin, which nothing in the recorder's or F-engine's public code
  shows (OVRO-LWA's own check of the labelling with an injected tone, lwa-issues #170, was
  not done: "no feature in f-eng for sinusoid injection"). A tone test settles it. This
  reader reports ``freqs_hz`` **as written** and the recorder channel ``chan0`` and
  ``factor`` they imply; ``channel_freqs_hz(chan0, nchan * factor, factor)`` gives sunspec's
  labels, :func:`recorder_freqs_hz` the recorder's, :func:`recorder_to_sunspec_hz` converts.

sunspec's own archives (root attributes ``sunspec_*``) have the same groups with one
product, rows appended (no preallocation), times the **end** of each window and values not
divided by navg; their metadata becomes ``meta`` (an ArchiveMeta).

Streaming: rows are read with h5py slices ``[a:b]``, so memory is bounded by one chunk.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import h5py
import numpy as np

from ..archive.base import ArchiveMeta, join_tags
from ..archive.hdf5 import _META_PREFIX as _SUNSPEC_PREFIX
from ..clock import CHAN_BW, FS, NFFT
from .base import SpectrumReader, UnsupportedFile

__all__ = ["RECORDER_FREQ_OFFSET_HZ", "RECORDER_POLS", "LwaHdf5Reader", "is_lwahdf",
           "recorder_freqs_hz", "recorder_to_sunspec_hz"]

#: recorder freq minus sunspec's channel centre, Hz, for every channel and reduction
RECORDER_FREQ_OFFSET_HZ = CHAN_BW / 2
#: product datasets the recorder writes, in this order when present
RECORDER_POLS = ("XX", "YY", "XY_real", "XY_imag", "I", "Q", "U", "V")


def recorder_freqs_hz(chan0: int, nchan: int, factor: int = 1) -> np.ndarray:
    """The ``freq`` the recorder writes for ``nchan`` channels from ``chan0`` (recorder
    channels), reduced ``factor``:1 by averaging (``nchan // factor`` values)."""
    f = CHAN_BW * (chan0 + 0.5) + np.arange(nchan, dtype=np.float64) * CHAN_BW
    return f.reshape(-1, factor).mean(axis=1)


def recorder_to_sunspec_hz(freqs_hz: np.ndarray) -> np.ndarray:
    """A recorder file's ``freq`` relabelled with sunspec's channel centres."""
    return np.asarray(freqs_hz, np.float64) - RECORDER_FREQ_OFFSET_HZ


def is_lwahdf(f: h5py.File) -> bool:
    """Whether an open HDF5 file has the power-beam layout."""
    return isinstance(f.get("Observation1/time"), h5py.Dataset) and \
        isinstance(f.get("Observation1/Tuning1/freq"), h5py.Dataset)


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError:  # still open for writing (SWMR) or left so by a crash
        return h5py.File(path, "r", libver="latest", swmr=True)


def _py(v: object) -> object:
    if isinstance(v, bytes):
        return v.decode()
    return v.item() if isinstance(v, np.generic) else v


class LwaHdf5Reader(SpectrumReader):
    """Rows of a recorder power-beam file or a sunspec HDF5 archive (see the module
    docstring for the facts)."""

    instrument = "OVRO-LWA"

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._file = _open(self.path)
        try:
            self._setup()
        except BaseException:
            self._file.close()
            raise

    def _setup(self) -> None:
        f = self._file
        if not is_lwahdf(f):
            raise UnsupportedFile(f"{self.path}: HDF5 without /Observation1/time and "
                                  "/Observation1/Tuning1/freq")
        obs = f["Observation1"]
        tuning = obs["Tuning1"]
        self._time = obs["time"]
        if self._time.dtype.names is None or not {"int", "frac"} <= set(self._time.dtype.names):
            raise UnsupportedFile(f"{self.path}: /Observation1/time is not (int, frac)")
        freq = tuning["freq"]
        freqs = np.asarray(freq[...], np.float64)
        if len(freqs) > 1 and np.any(np.diff(freqs) <= 0):
            raise UnsupportedFile(f"{self.path}: Tuning1/freq is not increasing")
        in_hz = _py(freq.attrs.get("Units", "Hz")) == "Hz"
        self.freqs_hz = freqs if in_hz else None
        self.nchan = len(freqs)
        attrs = {k[len(_SUNSPEC_PREFIX):]: _py(v) for k, v in f.attrs.items()
                 if k.startswith(_SUNSPEC_PREFIX)}
        self.station = str(_py(f.attrs.get("StationName", "")))
        beam = _py(obs.attrs.get("Beam", -1))
        self.beam = beam if isinstance(beam, int) and beam >= 0 else None
        if attrs:
            self.meta = meta = ArchiveMeta.from_dict(attrs)
            self.source_format = "sunspec-hdf5"
            self.pols = (meta.product,)
            self.window_ticks = meta.window_ticks
            self.navg, self.factor, self.chan0 = meta.navg, meta.factor, meta.chan0
            self.unit, self.db_per_digit = meta.unit, meta.db_per_digit
            self.instrument = meta.instrument or self.instrument
            self.station = meta.station
            self.nrows = len(self._time)
            self._stamp_offset = 0  # stamps are window ends
        else:
            self.source_format = "ovro-lwa-hdf5"
            self.normalised_by_navg = True
            self.pols = tuple(p for p in RECORDER_POLS if p in tuning)
            tint = float(obs.attrs.get("tInt", -1.0))
            self.navg = round(tint * CHAN_BW) if tint > 0 else None
            self.window_ticks = None if self.navg is None else self.navg * NFFT
            self.nrows = self._written_rows()
            self._stamp_offset = self.window_ticks or 0  # stamps are spectrum starts
            if self.freqs_hz is not None and self.nchan:
                self._recorder_channels()
        if not self.pols:
            raise UnsupportedFile(f"{self.path}: no product dataset in Tuning1")
        self._data = [tuning[p] for p in self.pols]
        for d in self._data:
            if d.ndim != 2 or d.shape[1] != self.nchan or d.shape[0] < self.nrows:
                raise UnsupportedFile(f"{self.path}: {d.name} has shape {d.shape}, expected "
                                      f"(>= {self.nrows}, {self.nchan})")
        if self.nrows > 1:
            self.time_resolution_s = (self._tag_at(1) - self._tag_at(0)) / FS
        elif self.window_ticks:
            self.time_resolution_s = self.window_ticks / FS

    def _written_rows(self) -> int:
        """Rows before the first preallocated (zero) stamp."""
        t = self._time
        return bisect.bisect_left(range(len(t)), True, key=lambda i: int(t[i]["int"]) == 0)

    def _recorder_channels(self) -> None:
        """``factor`` and ``chan0`` the recorder's ``freq`` implies (left None/1 if the axis
        does not follow the recorder's convention)."""
        f = self.freqs_hz
        assert f is not None
        step = f[1] - f[0] if len(f) > 1 else CHAN_BW
        factor = round(step / CHAN_BW)
        chan0 = round(f[0] / CHAN_BW - factor / 2)
        if factor >= 1 and np.allclose(recorder_freqs_hz(chan0, len(f) * factor, factor), f,
                                       rtol=0, atol=1e-3):
            self.factor, self.chan0 = factor, chan0

    def _end_tags(self, a: int, b: int) -> np.ndarray:
        rec = self._time[a:b]
        return join_tags(rec["int"], rec["frac"]) + self._stamp_offset

    def _rows(self, a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, self.nchan, len(self._data)), np.float32)
        for i, d in enumerate(self._data):
            out[:, :, i] = d[a:b]
        return out

    def close(self) -> None:
        self._file.close()
