"""Readers of spectrum files behind one interface, chosen by content (not by file name).

    with open_spectra(path) as reader:       # raises UnsupportedFile for anything else
        reader.freqs_hz, reader.unit, reader.instrument, reader.pols, reader.window_ticks
        for chunk in reader.chunks(1024, start=t0, stop=t1):
            chunk.data      # float32 (n, nchan, npol), channels in the order of freqs_hz
            chunk.end_tag   # int64 window ends, ticks of the 196 MHz clock since 1970 UTC

| format | module | source_format |
| --- | --- | --- |
| e-CALLISTO FITS (``.fit``, ``.fit.gz``) | :mod:`.callisto` | ``e-callisto`` |
| sunspec FITS archive | :mod:`.callisto` | ``sunspec-fits`` |
| OVRO-LWA recorder power-beam HDF5 | :mod:`.lwahdf` | ``ovro-lwa-hdf5`` |
| sunspec HDF5 archive | :mod:`.lwahdf` | ``sunspec-hdf5`` |

Needs the ``archive`` extra (h5py, astropy), imported when a file of that kind is opened.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from .base import UNITS, Chunk, SpectrumReader, TimeLike, UnsupportedFile
from .sniff import FITS, HDF5, sniff

__all__ = ["UNITS", "Chunk", "SpectrumReader", "TimeLike", "UnsupportedFile", "open_spectra"]

_KNOWN = "e-CALLISTO or sunspec FITS, OVRO-LWA recorder or sunspec HDF5"


def open_spectra(path: str | Path, **options: Any) -> SpectrumReader:
    """Open a spectrum file with the reader its content calls for.

    ``options`` go to that reader (e.g. ``db_per_digit`` for e-CALLISTO). Raises
    :class:`UnsupportedFile` for a file no reader recognises or whose layout is broken, and
    OSError (e.g. FileNotFoundError) when the file cannot be opened at all.
    """
    path = Path(path)
    kind = sniff(path)
    try:
        if kind == FITS:
            from .callisto import CallistoReader

            return CallistoReader(path, **options)
        if kind == HDF5:
            from .lwahdf import LwaHdf5Reader

            return LwaHdf5Reader(path, **options)
    except UnsupportedFile:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError, zlib.error) as exc:
        raise UnsupportedFile(f"{path}: a {kind} file sunspec cannot read: {exc}") from exc
    raise UnsupportedFile(f"{path}: not a spectrum file sunspec reads ({_KNOWN})")
