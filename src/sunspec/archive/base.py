"""What every archive format shares: the stream metadata a file carries and the rows it holds.

Archived rows are what a receiver's ring held: one reduced product (``product``) averaged
over ``factor`` recorder channels, float32 in the recorder's units (a plain mean of spectra,
*not* divided by ``navg``), each stamped with the **end** of its averaging window in ticks
of the 196 MHz clock. The window starts ``nint * navg * 8192`` ticks earlier when both are
known.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..clock import CHAN_BW, FS

__all__ = ["OVRO", "ArchiveData", "ArchiveMeta", "join_tags", "meta_from_stream_info",
           "split_tags", "write_new"]

#: OVRO-LWA site: latitude (deg N), longitude (deg E, negative = W), height (m above sea level)
OVRO = (37.2339, -118.2817, 1222.0)


@dataclass(frozen=True)
class ArchiveMeta:
    """Stream metadata stored with each file (FITS keywords, HDF5 attributes)."""

    span_start_tag: int
    span_s: int
    product: str = "XX"
    factor: int = 1
    chan_bw: float = CHAN_BW
    chan0: int | None = None
    beam: int | None = None
    navg: int | None = None
    nint: int | None = None
    sender_id: str | None = None
    proto: int = 1
    software: str = ""
    station: str = "OVRO-LWA"
    unit: str = "linear"
    db_per_digit: float | None = None
    instrument: str | None = None
    replay: bool = False
    source: str | None = None

    @property
    def window_ticks(self) -> int | None:
        """Length of one row's averaging window in ticks, when the stream told it."""
        if self.nint is None or self.navg is None:
            return None
        return self.nint * self.navg * 8192

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchiveMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _opt_int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None


def meta_from_stream_info(info: dict[str, Any], *, span_start_tag: int, span_s: int,
                          software: str) -> ArchiveMeta:
    """Metadata of a file from a receiver's ``stream_info`` (version 1 keys may be absent)."""
    product = info.get("product", "XX")
    if not isinstance(product, str):  # a pol index: name it from the stream's pols
        pols = str(info.get("pols", "")).split(",")
        product = pols[product] if 0 <= product < len(pols) and pols[product] else \
            f"pol{product}"
    chan_bw = info.get("chan_bw", CHAN_BW)
    return ArchiveMeta(
        span_start_tag=span_start_tag,
        span_s=span_s,
        product=product,
        factor=int(info.get("factor", 1)),
        chan_bw=float(chan_bw) if isinstance(chan_bw, (int, float)) else CHAN_BW,
        chan0=_opt_int(info.get("chan0")),
        beam=_opt_int(info.get("beam")),
        navg=_opt_int(info.get("navg")),
        nint=_opt_int(info.get("nint")),
        sender_id=info.get("sender_id") if isinstance(info.get("sender_id"), str) else None,
        proto=_opt_int(info.get("proto")) or 1,
        software=software,
        station=_name(info.get("station")) or ArchiveMeta.station,
        unit=info["unit"] if info.get("unit") in ("linear", "dB", "digits") else "linear",
        db_per_digit=float(info["db_per_digit"]) if isinstance(
            info.get("db_per_digit"), (int, float)) else None,
        instrument=info.get("instrument") if isinstance(info.get("instrument"), str) else None,
        replay=info.get("replay") is True,
        source=info.get("source") if isinstance(info.get("source"), str) else None,
    )


def _name(v: Any) -> str | None:
    """A station name fit for file names: letters, digits and ``-`` (else None)."""
    if not isinstance(v, str):
        return None
    clean = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in v)
    return clean.strip("-")[:32] or None


@dataclass(frozen=True)
class ArchiveData:
    """Rows read back from an archive file, oldest first."""

    data: np.ndarray  # float32 (n, nfreq)
    end_tag: np.ndarray  # int64 (n,), window ends, ticks since 1970 UTC
    freqs_hz: np.ndarray | None  # float64 (nfreq,), channel centres; None = channel indices
    meta: ArchiveMeta

    def __len__(self) -> int:
        return len(self.end_tag)

    @property
    def end_unix(self) -> np.ndarray:
        sec, frac = split_tags(self.end_tag)
        return sec + frac


def split_tags(tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole seconds and fractions of tags, exact (``tag = sec * FS + round(frac * FS)``)."""
    sec, rem = np.divmod(tags.astype(np.int64), FS)
    return sec, rem / FS


def join_tags(sec: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_tags`."""
    return sec.astype(np.int64) * FS + np.rint(frac * FS).astype(np.int64)


def write_new(path: Path, blob: bytes) -> None:
    """Write ``blob`` to the new file ``path`` and sync it; nothing is left at ``path`` if
    that fails (a full disk, ...)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
