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

A span's rows are journalled while it is open (:mod:`.journal`); the file is built in
memory from the journal when the span is complete and written in one piece, so HDF5 never
writes to a disk that fails under it (it cannot recover from a failed write). :func:`read`
also reads the SWMR files sunspec 0.1 wrote while a span was open (``.h5.part``, left by a
crash), up to their last flush.
"""

from __future__ import annotations

import datetime as _dt
import io
from pathlib import Path

import h5py
import numpy as np

from ..clock import FS
from .base import ArchiveData, ArchiveMeta, join_tags, split_tags, write_new

__all__ = ["EXTENSION", "encode", "read", "write"]

EXTENSION = ".h5"
TIME_DTYPE = np.dtype({"names": ["int", "frac"], "formats": ["<i8", "<f8"]})
_META_PREFIX = "sunspec_"


def _write_layout(f: h5py.File, rows: ArchiveData) -> None:
    """Groups, attributes and datasets of ``rows``."""
    meta, nfreq, freqs_hz = rows.meta, rows.data.shape[1], rows.freqs_hz
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
    rec = np.empty(len(rows), TIME_DTYPE)
    rec["int"], rec["frac"] = split_tags(rows.end_tag)
    time = obs.create_dataset("time", data=rec)
    time.attrs.update({"format": "unix", "scale": "utc", "reference": "window end"})
    tuning = obs.create_group("Tuning1")
    if freqs_hz is None:
        freq = tuning.create_dataset("freq", data=np.arange(nfreq, dtype=np.float64))
        freq.attrs["Units"] = "channel"
    else:
        freq = tuning.create_dataset("freq", data=np.asarray(freqs_hz, np.float64))
        freq.attrs["Units"] = "Hz"
    data = tuning.create_dataset(meta.product, data=np.asarray(rows.data, "<f4"))
    data.attrs.update({"axis0": "time", "axis1": "frequency"})


def encode(rows: ArchiveData) -> bytes:
    """The bytes of an archive file holding ``rows`` (built in memory)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        _write_layout(f, rows)
    return buf.getvalue()


def write(path: Path, rows: ArchiveData) -> None:
    """Write a complete archive file (``path`` must not exist)."""
    write_new(path, encode(rows))


def read(path: str | Path) -> ArchiveData:
    """Read an archive file (a SWMR file left open by a crash up to its last flush)."""
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
