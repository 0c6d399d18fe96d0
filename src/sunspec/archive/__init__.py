"""Archive a receiver's dynamic spectrum to files of fixed UTC spans, and read them back.

Formats: ``hdf5`` (the OVRO-LWA recorder's power-beam layout, :mod:`.hdf5`) and ``fits``
(e-CALLISTO layout, readable by radiospectra, :mod:`.fits`). Needs the ``archive`` extra
(h5py, astropy).
"""

from __future__ import annotations

from pathlib import Path

from . import fits, hdf5
from .base import ArchiveData, ArchiveMeta
from .writer import FORMATS, ArchiveWriter, recover, start_archive

__all__ = ["FORMATS", "ArchiveData", "ArchiveMeta", "ArchiveWriter", "read_archive", "recover",
           "start_archive"]

_BY_SUFFIX = {".h5": hdf5, ".hdf5": hdf5, ".fit": fits, ".fits": fits, ".fts": fits}


def read_archive(path: str | Path) -> ArchiveData:
    """Read an archive file of either format (chosen by its extension)."""
    path = Path(path)
    module = _BY_SUFFIX.get(path.suffix.lower())
    if module is not None:
        return module.read(path)
    raise ValueError(f"{path}: unknown archive extension (expected .h5 or .fit/.fits)")
