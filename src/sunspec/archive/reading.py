"""Read an archive file of either format, chosen by its extension."""

from __future__ import annotations

from pathlib import Path

from . import fits, hdf5
from .base import ArchiveData

__all__ = ["read_archive"]

_BY_SUFFIX = {".h5": hdf5, ".hdf5": hdf5, ".fit": fits, ".fits": fits, ".fts": fits}


def read_archive(path: str | Path) -> ArchiveData:
    """Read an archive file of either format (chosen by its extension)."""
    path = Path(path)
    module = _BY_SUFFIX.get(path.suffix.lower())
    if module is not None:
        return module.read(path)
    raise ValueError(f"{path}: unknown archive extension (expected .h5 or .fit/.fits)")
