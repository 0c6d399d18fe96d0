"""Recognise a spectrum file by its first bytes, never by its name."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

__all__ = ["FITS", "HDF5", "sniff"]

FITS = "fits"
HDF5 = "hdf5"

_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"
#: HDF5 superblock signature; it may sit at 0, 512, 1024, 2048, ... (after a user block)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)


def sniff(path: str | Path) -> str | None:
    """``"fits"`` (plain or gzipped), ``"hdf5"``, or None for anything else.

    Raises OSError only when the file cannot be opened (missing, unreadable).
    """
    with open(path, "rb") as fh:
        head = fh.read(max(_HDF5_OFFSETS) + len(_HDF5_MAGIC))
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(len(_FITS_MAGIC))
        except (OSError, EOFError, zlib.error):
            return None
        return FITS if head == _FITS_MAGIC else None
    if head.startswith(_FITS_MAGIC):
        return FITS
    if any(head[o:o + len(_HDF5_MAGIC)] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return HDF5
    return None
