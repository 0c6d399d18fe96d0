"""Rows of a spectrum file (any :mod:`sunspec.readers` reader) as the detector takes them.

The detector takes linear power or dB; a reader may also give raw instrument ``digits``
(e-CALLISTO's logarithmic detector), which are turned into dB with the reader's
``db_per_digit``. Nothing here imports the readers: any object with a reader's attributes
will do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .detector import RowChunk

__all__ = ["SpectrumSource", "reader_rows", "stream_name"]


class SpectrumSource(Protocol):
    """What :func:`reader_rows` needs of a reader (a ``sunspec.readers`` reader is one)."""

    path: Path
    unit: str
    db_per_digit: float | None
    pols: tuple[str, ...]
    time_resolution_s: float | None
    instrument: str
    station: str

    def chunks(self, max_rows: int = ...) -> Iterable[Any]:
        """Chunks with ``data`` (n, nchan, npol) and ``end_tag`` (n,)."""
        ...


def reader_rows(reader: SpectrumSource, pol: str | None = None, max_rows: int = 256
                ) -> tuple[str, float | None, Iterator[RowChunk]]:
    """``(unit, row spacing s, chunks)`` of one product of ``reader``: ``pol`` (default the
    file's first) as 'linear' or 'dB' rows. The spacing is the reader's, else None (the
    detector then measures it on the first chunk). Raises ValueError for an unknown ``pol``
    or unit."""
    pols = tuple(reader.pols)
    name = pols[0] if pol is None and pols else pol
    if name not in pols:
        raise ValueError(f"no product {pol!r} in {reader.path.name} (it has "
                         f"{', '.join(pols) or 'none'})")
    index = pols.index(name)
    unit = reader.unit
    scale: np.float32 | None = None
    if unit == "digits":
        if not reader.db_per_digit:
            raise ValueError(f"{reader.path.name}: digits without a dB scale")
        scale, unit = np.float32(reader.db_per_digit), "dB"
    elif unit not in ("linear", "dB"):
        raise ValueError(f"{reader.path.name}: unit {unit!r} is not linear, dB or digits")

    def rows() -> Iterator[RowChunk]:
        for c in reader.chunks(max_rows):
            data = np.ascontiguousarray(c.data[:, :, index], np.float32)
            if scale is not None:
                data *= scale
            yield RowChunk(data, np.asarray(c.end_tag, np.int64))

    return unit, reader.time_resolution_s, rows()


def stream_name(reader: SpectrumSource) -> str:
    """The name events of this file carry as ``stream``: the instrument (e.g. the
    e-CALLISTO station code 'BIR', 'OVRO-LWA'), else the station, else the file's name."""
    return reader.instrument or reader.station or reader.path.name

