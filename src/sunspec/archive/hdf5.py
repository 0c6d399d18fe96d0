"""HDF5 archive files in the layout the OVRO-LWA data recorder writes for power beams.

    /                          ObserverID, ..., StationName = 'ovro-lwa', FileCreation, ...
                               + sunspec_* attributes (the stream's metadata, see ArchiveMeta)
    /Observation1              Beam, sampleRate, tInt, LFFT, nChan, RBW, ... (recorder's set)
    /Observation1/time         compound (int: <i8 Unix seconds, frac: <f8), format 'unix',
                               scale 'utc'; here the END of each row's averaging window
    /Observation1/Tuning1/freq <f8 channel centres, Units 'Hz'
    /Observation1/Tuning1/<product>  <f4 (time, frequency), axis0 'time', axis1 'frequency'

Differences from the recorder's files, on purpose: values are the stream's (a plain mean of
spectra, not divided by ``navg``); one product, the receiver's; times are window ends.

While open the file is in SWMR mode: datasets grow in chunks, readers may open it with
``swmr=True``, and after a crash it stays readable up to the last flush (SWMR mode readers
only; :func:`read` handles that).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from pathlib import Path

import h5py
import numpy as np

from ..clock import FS
from .base import ArchiveData, ArchiveMeta, join_tags, split_tags

__all__ = ["EXTENSION", "Hdf5SpanFile", "read", "write"]

EXTENSION = ".h5"
TIME_DTYPE = np.dtype({"names": ["int", "frac"], "formats": ["<i8", "<f8"]})
_META_PREFIX = "sunspec_"
#: bytes per data chunk: small enough that a flush every few seconds rewrites little
_CHUNK_BYTES = 1 << 20


class Hdf5SpanFile:
    """An HDF5 archive file being appended to (SWMR writer) under a temporary name."""

    def __init__(self, path: Path, meta: ArchiveMeta, freqs_hz: np.ndarray | None, nfreq: int):
        self.path = path
        self._file = h5py.File(path, "w-", libver="latest")
        try:
            self._time, self._data = _create_layout(self._file, meta, freqs_hz, nfreq)
            self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            path.unlink(missing_ok=True)
            raise

    def append(self, data: np.ndarray, end_tag: np.ndarray) -> None:
        n0, n = self._time.shape[0], len(end_tag)
        rec = np.empty(n, TIME_DTYPE)
        rec["int"], rec["frac"] = split_tags(end_tag)
        self._data.resize(n0 + n, axis=0)
        self._data[n0:] = data
        self._time.resize(n0 + n, axis=0)  # time last: a reader never sees a row without data
        self._time[n0:] = rec

    def flush(self) -> None:
        self._file.flush()

    def finish(self) -> Path:
        self._file.close()
        return self.path

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def abandon(self) -> None:
        with contextlib.suppress(Exception):  # the file is left for recovery either way
            self._file.close()


def _create_layout(f: h5py.File, meta: ArchiveMeta, freqs_hz: np.ndarray | None,
                   nfreq: int) -> tuple[h5py.Dataset, h5py.Dataset]:
    """Groups, attributes and empty growable datasets; returns (time, data)."""
    now = _dt.datetime.now(_dt.timezone.utc)
    f.attrs.update({
        "ObserverID": 0, "ObserverName": "", "ProjectID": "", "SessionID": 0,
        "StationName": "ovro-lwa", "FileCreation": now.strftime("UTC %Y/%m/%d %H:%M:%S"),
        "FileGenerator": "sunspec.archive", "InputMetadata": "", "ConfigFile": "", "CalDir": "",
    })
    for key, value in meta.to_dict().items():
        if value is not None:
            f.attrs[_META_PREFIX + key] = value
    obs = f.create_group("Observation1")
    window = meta.window_ticks
    rbw = meta.chan_bw * meta.factor
    obs.attrs.update({
        "TargetName": "", "RA": -99.0, "RA_Units": "hours", "Dec": -99.0,
        "Dec_Units": "degrees", "Epoch": 2000.0, "TrackingMode": "Unknown",
        "ARX_Filter": -1.0, "ARX_Gain1": -1.0, "ARX_Gain2": -1.0, "ARX_GainS": -1.0,
        "Beam": -1 if meta.beam is None else meta.beam, "DRX_Gain": -1,
        "sampleRate": float(FS), "sampleRate_Units": "Hz",
        "tInt": -1.0 if window is None else window / FS, "tInt_Units": "s",
        "LFFT": 4096, "nChan": nfreq, "RBW": rbw, "RBW_Units": "Hz",
    })
    rows = max(1, min(4096, _CHUNK_BYTES // (4 * nfreq)))
    time = obs.create_dataset("time", shape=(0,), maxshape=(None,), dtype=TIME_DTYPE,
                              chunks=(4096,))
    time.attrs.update({"format": "unix", "scale": "utc", "reference": "window end"})
    tuning = obs.create_group("Tuning1")
    if freqs_hz is None:
        freq = tuning.create_dataset("freq", data=np.arange(nfreq, dtype=np.float64))
        freq.attrs["Units"] = "channel"
    else:
        freq = tuning.create_dataset("freq", data=np.asarray(freqs_hz, np.float64))
        freq.attrs["Units"] = "Hz"
    data = tuning.create_dataset(meta.product, shape=(0, nfreq), maxshape=(None, nfreq),
                                 dtype="<f4", chunks=(rows, nfreq))
    data.attrs.update({"axis0": "time", "axis1": "frequency"})
    return time, data


def write(path: Path, rows: ArchiveData) -> None:
    """Write a complete archive file (``path`` must not exist)."""
    f = Hdf5SpanFile(path, rows.meta, rows.freqs_hz, rows.data.shape[1])
    try:
        f.append(rows.data, rows.end_tag)
    except BaseException:
        f.abandon()
        path.unlink(missing_ok=True)
        raise
    f.finish()


def read(path: str | Path) -> ArchiveData:
    """Read an archive file; one that is still open (or left by a crash) is read in SWMR mode
    up to its last flush."""
    try:
        f = h5py.File(path, "r")
    except OSError:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    with f:
        meta = ArchiveMeta.from_dict({k[len(_META_PREFIX):]: _py(v) for k, v in f.attrs.items()
                                      if k.startswith(_META_PREFIX)})
        tuning = f["Observation1/Tuning1"]
        freq = tuning["freq"]
        freqs_hz = freq[...] if freq.attrs.get("Units") == "Hz" else None
        rec = f["Observation1/time"][...]
        n = len(rec)
        data = tuning[meta.product][:n]
    return ArchiveData(np.ascontiguousarray(data, np.float32),
                       join_tags(rec["int"], rec["frac"]), freqs_hz, meta)


def _py(v: object) -> object:
    """An attribute value as a plain Python scalar."""
    if isinstance(v, bytes):
        return v.decode()
    return v.item() if isinstance(v, np.generic) else v
