"""The compact binary form of ring rows sent to browsers (WebSocket pushes, ``/api/latest``).

One message, little-endian::

    magic  4s   b"SSR1"
    nrows  u32
    nfreq  u32
    then nrows records of 24 + nfreq bytes:
      end_unix  f8   window end, Unix seconds
      index     u4   absolute ring index of the row (mod 2**32)
      mode      u1   bit 0 clear: value = offset + scale * q;
                     bit 0 set: value = 10 ** (offset + scale * q)
                     bit 1 set: the row has missing channels: q = 255 is "missing" (NaN) and
                     the values are quantised to 0..254
      pad       3 x u1
      offset    f4
      scale     f4
      q         nfreq x u1

Rows whose values are all positive are quantised in log10 (bit 0), so quiet channels keep
their detail next to a burst or RFI 40 dB brighter; others (XY products, and streams whose
values are already logarithmic: ``log=False``) linearly. Each row spans its own minimum to
maximum, so nothing is clipped. Channels the sender declared missing (NaN, or any value that
is not finite) stay missing (bit 1). For 1536 channels a row costs 1560 bytes, against 6144
as float32. A row without missing channels is encoded exactly as before bit 1 existed.
"""

from __future__ import annotations

import numpy as np

from ..ring import Rows

__all__ = ["GAP", "HEADER", "MAGIC", "MODE_GAPS", "MODE_LINEAR", "MODE_LOG10", "decode_rows",
           "encode_rows", "record_dtype"]

MAGIC = b"SSR1"
HEADER = np.dtype([("magic", "S4"), ("nrows", "<u4"), ("nfreq", "<u4")])
MODE_LINEAR = 0
MODE_LOG10 = 1
#: mode bit: q == GAP marks a missing channel
MODE_GAPS = 2
GAP = 255


def record_dtype(nfreq: int) -> np.dtype:
    """The packed record of one row of ``nfreq`` channels."""
    return np.dtype([("end_unix", "<f8"), ("index", "<u4"), ("mode", "u1"), ("pad", "u1", 3),
                     ("offset", "<f4"), ("scale", "<f4"), ("q", "u1", (nfreq,))])


def encode_rows(rows: Rows, *, log: bool = True) -> bytes:
    """One binary message holding every row of ``rows`` (``log=False``: never quantise in
    log10, for values that are logarithmic already, e.g. dB)."""
    n, nfreq = rows.data.shape
    data = rows.data.astype(np.float64)
    good = np.isfinite(data)
    gaps = ~good.all(axis=1)
    uselog = np.all((data > 0) | ~good, axis=1) & good.any(axis=1) & log
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = np.where(uselog[:, None], np.log10(np.where(data > 0, data, 1.0)), data)
    vals[~good] = np.nan
    if gaps.any():
        with np.errstate(invalid="ignore"):
            allgap = np.asarray(~good.any(axis=1))
            lo = np.where(allgap, 0.0, np.nanmin(np.where(allgap[:, None], 0.0, vals), axis=1))
            hi = np.where(allgap, 0.0, np.nanmax(np.where(allgap[:, None], 0.0, vals), axis=1))
    else:
        lo, hi = vals.min(axis=1), vals.max(axis=1)
    levels = np.asarray(np.where(gaps, 254.0, 255.0))
    span = hi - lo
    scale = np.where(span > 0, span / levels, 1.0)
    rec = np.zeros(n, record_dtype(nfreq))
    rec["end_unix"] = rows.end_unix
    rec["index"] = (rows.first_index + np.arange(n)) % 2**32
    rec["mode"] = np.where(uselog, MODE_LOG10, MODE_LINEAR) | np.where(gaps, MODE_GAPS, 0)
    rec["offset"] = lo
    rec["scale"] = scale
    with np.errstate(invalid="ignore"):
        q = np.rint((vals - lo[:, None]) / scale[:, None]).clip(0, levels[:, None])
    q[~good] = GAP
    rec["q"] = q
    head = np.array([(MAGIC, n, nfreq)], HEADER)
    return head.tobytes() + rec.tobytes()


def decode_rows(message: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(end_unix, index, values)`` of a message made by :func:`encode_rows` (for clients
    written in Python and for tests); missing channels are NaN."""
    head = np.frombuffer(message, HEADER, count=1)[0]
    if head["magic"] != MAGIC:
        raise ValueError(f"not a sunspec rows message (magic {head['magic']!r})")
    nrows, nfreq = int(head["nrows"]), int(head["nfreq"])
    rec = np.frombuffer(message, record_dtype(nfreq), count=nrows, offset=HEADER.itemsize)
    lin = rec["offset"][:, None] + rec["scale"][:, None] * rec["q"].astype(np.float64)
    mode = rec["mode"][:, None]
    values = np.where(mode & MODE_LOG10, 10.0**lin, lin)
    values[(mode & MODE_GAPS).astype(bool) & (rec["q"] == GAP)] = np.nan
    return rec["end_unix"].copy(), rec["index"].astype(np.int64), values
