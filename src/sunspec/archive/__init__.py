"""Archive a stream's dynamic spectrum to files of fixed UTC spans, and read them back.

Formats: ``hdf5`` (the OVRO-LWA recorder's power-beam layout, :mod:`.hdf5`) and ``fits``
(e-CALLISTO layout, readable by radiospectra, :mod:`.fits`). Needs the ``archive`` extra
(h5py, astropy). Importing this package needs neither (the CLI reads the defaults below);
the other names import their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import ArchiveData, ArchiveMeta
    from .reading import read_archive
    from .writer import FORMATS, ArchiveWriter, recover

__all__ = ["ARCHIVE_FORMATS", "DEFAULT_FORMAT", "DEFAULT_SPAN", "FORMATS", "ArchiveData",
           "ArchiveMeta", "ArchiveWriter", "read_archive", "recover"]

#: the formats :class:`ArchiveWriter` writes, by name
ARCHIVE_FORMATS = ("hdf5", "fits")
DEFAULT_FORMAT = "hdf5"
#: seconds of UTC per file (quarter hours)
DEFAULT_SPAN = 900

_LAZY = {"ArchiveData": "base", "ArchiveMeta": "base", "read_archive": "reading",
         "FORMATS": "writer", "ArchiveWriter": "writer", "recover": "writer"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
