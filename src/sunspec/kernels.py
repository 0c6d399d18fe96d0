"""Checked entry points to the compiled kernels of :mod:`sunspec._core`.

Each function validates its arguments (shape, dtype, contiguity, ranges), raising
:class:`TypeError` or :class:`ValueError` that names the argument, and then runs one
kernel with the GIL released. Outputs are written into arrays the caller owns, so a
steady-state caller allocates nothing.

NaN and inf are not filtered: they propagate through the sums as IEEE arithmetic does
(a NaN anywhere in a window or a channel group makes that output NaN). :func:`reduce_frame`
returns how many of the values it wrote are not finite, so callers can reject such rows.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import _core

__all__ = [
    "CompiledHeaderReader",
    "FrameReducer",
    "Product",
    "RowStamps",
    "accumulate",
    "finalize_mean",
    "product_code",
    "read_rows",
    "reduce_frame",
    "time_average",
]


class Product(str, Enum):
    """The products a ring row can hold: pols 0..3 in the recorder's order (``XX``, ``YY``,
    ``XY_real``, ``XY_imag``), ``I`` = (XX + YY) / 2 and ``V`` = XY_imag. A plain int pol
    index is accepted wherever a product is."""

    XX = "XX"
    YY = "YY"
    XY_real = "XY_real"
    XY_imag = "XY_imag"
    I = "I"  # noqa: E741 - the Stokes parameter's name
    V = "V"

    def __str__(self) -> str:
        return self.value

    @property
    def code(self) -> int:
        """The kernel's code: a pol index, or the code of (pol 0 + pol 1) / 2."""
        return _CODES[self]


_CODES = {Product.XX: 0, Product.YY: 1, Product.XY_real: 2, Product.XY_imag: 3,
          Product.I: _core.PRODUCT_I, Product.V: 3}


def product_code(product: Product | str | int, npol: int = 4) -> int:
    """Kernel code for a product (see :class:`Product`, names accepted) or a pol index."""
    if isinstance(product, str):
        try:
            code = Product(product).code
        except ValueError:
            raise ValueError(
                f"product must be one of {[p.value for p in Product]} or a pol index, "
                f"got {product!r}"
            ) from None
    elif isinstance(product, (int, np.integer)) and not isinstance(product, bool):
        code = int(product)
        if code < 0:
            raise ValueError(f"pol index must be >= 0, got {code}")
    else:
        raise TypeError(f"product must be a name or an int pol index, got {type(product).__name__}")
    needed = 2 if code == _core.PRODUCT_I else code + 1
    if npol < needed:
        raise ValueError(f"product {str(product)!r} needs npol >= {needed}, the stream has {npol}")
    return code


def _as_array(name: str, a: Any, dtype: DTypeLike, ndim: int,
              writeable: bool = False) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from exc
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype.name}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writeable and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


def _gulp(gulp) -> np.ndarray:
    x = _as_array("gulp", gulp, np.float32, np.ndim(gulp))
    if x.ndim < 2:
        raise ValueError(f"gulp must have a time axis and at least one more, got shape {x.shape}")
    return x


def accumulate(gulp, t0: int, t1: int, acc: np.ndarray) -> None:
    """Add spectra ``gulp[t0:t1]`` to the float64 accumulator ``acc`` (shape gulp.shape[1:])."""
    x = _gulp(gulp)
    ntime = x.shape[0]
    if not 0 <= t0 <= t1 <= ntime:
        raise ValueError(f"time range [t0, t1) = [{t0}, {t1}) must lie within [0, {ntime}]")
    a = _as_array("acc", acc, np.float64, x.ndim - 1, writeable=True)
    if a.shape != x.shape[1:]:
        raise ValueError(f"acc must have shape {x.shape[1:]}, got {a.shape}")
    if t1 > t0:
        _core.accumulate(x.reshape(ntime, -1), t0, t1, a.reshape(-1))


def finalize_mean(acc: np.ndarray, n: int, out: np.ndarray) -> None:
    """Write ``acc / n`` as float32 into ``out`` (same shape as ``acc``)."""
    a = _as_array("acc", acc, np.float64, acc.ndim)
    o = _as_array("out", out, np.float32, a.ndim, writeable=True)
    if o.shape != a.shape:
        raise ValueError(f"out must have shape {a.shape}, got {o.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _core.finalize_mean(a.reshape(-1), n, o.reshape(-1))


def time_average(gulp, t0: int = 0, t1: int | None = None, out: np.ndarray | None = None,
                 scratch: np.ndarray | None = None) -> np.ndarray:
    """Mean of spectra ``gulp[t0:t1]`` along time, accumulated in float64.

    ``gulp`` is float32 (ntime, nbeam, nchan, npol) (any ndim >= 2 works); the result has
    shape ``gulp.shape[1:]`` and equals
    ``gulp[t0:t1].astype(np.float64).mean(0).astype(np.float32)`` bit for bit. ``out`` and
    ``scratch`` (float64, same shape) may be given to avoid allocating.
    """
    x = _gulp(gulp)
    t1 = x.shape[0] if t1 is None else t1
    if t1 <= t0:
        raise ValueError(f"time range [t0, t1) = [{t0}, {t1}) is empty")
    if out is None:
        out = np.empty(x.shape[1:], np.float32)
    if scratch is None:
        scratch = np.zeros(x.shape[1:], np.float64)
    else:
        _as_array("scratch", scratch, np.float64, x.ndim - 1, writeable=True)
        scratch.fill(0.0)
    accumulate(x, t0, t1, scratch)
    finalize_mean(scratch, t1 - t0, out)
    return out


def _reduction(frame, ring, beam: int, product: Product | str | int,
               factor: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Check a frame/ring pair for :func:`reduce_frame`; returns them and the product code."""
    f = _as_array("frame", frame, np.float32, 3)
    nbeam, nchan, npol = f.shape
    r = _as_array("ring", ring, np.float32, 2, writeable=True)
    if not 0 <= beam < nbeam:
        raise ValueError(f"beam must be in [0, {nbeam}), got {beam}")
    code = product_code(product, npol)
    if factor < 1 or nchan % factor:
        raise ValueError(f"factor must be >= 1 and divide nchan = {nchan}, got {factor}")
    if r.shape[1] != nchan // factor:
        raise ValueError(
            f"ring rows must hold nchan // factor = {nchan // factor} values, got {r.shape[1]}"
        )
    return f, r, code


def reduce_frame(frame, ring: np.ndarray, row: int, *, beam: int = 0,
                 product: Product | str | int = Product.XX, factor: int = 2) -> int:
    """Reduce one frame (nbeam, nchan, npol) float32 into row ``row`` of ``ring``.

    Picks beam index ``beam`` and ``product`` (see :func:`product_code`), averages
    ``factor`` adjacent channels in float64 and writes float32 straight into ``ring[row]``,
    whose length must be ``nchan // factor``. Returns the number of non-finite values written.
    """
    f, r, code = _reduction(frame, ring, beam, product, factor)
    if not 0 <= row < r.shape[0]:
        raise ValueError(f"row must be in [0, {r.shape[0]}), got {row}")
    return _core.reduce_frame(f, beam, code, factor, r, row)


class FrameReducer:
    """:func:`reduce_frame` bound once to a frame buffer and a ring, checked once here.

    The receiver receives every payload into the same buffer, so each frame costs one call of
    :meth:`reduce` that acquires no buffers; an out-of-range row raises IndexError.
    """

    __slots__ = ("reduce",)
    reduce: Callable[[int], int]

    def __init__(self, frame, ring: np.ndarray, *, beam: int = 0,
                 product: Product | str | int = Product.XX, factor: int = 2):
        f, r, code = _reduction(frame, ring, beam, product, factor)
        #: ``reduce(row) -> int``: reduce the bound frame into ``ring[row]``; returns the
        #: count of non-finite values written (the compiled method itself, no Python frame)
        self.reduce = _core.FrameReducer(f, beam, code, factor, r).reduce


#: ``RowStamps(end_tag, end_unix, seq, arrival)`` (int64, float64, int64, float64 arrays of
#: one length) and ``.write(row, end_tag, end_unix, seq, arrival)``: one ring row's times in
#: one compiled call (an out-of-range row raises IndexError)
RowStamps = _core.RowStamps

#: the compiled header reader (``_core.HeaderReader``) that :class:`sunspec.protocol.HeaderReader`
#: specialises for the wire format: ``read(n)`` returns a header, quickly when it repeats the
#: one kept but for its per-frame values; ``repeated``, ``kept`` and ``digest`` describe it
CompiledHeaderReader = _core.HeaderReader


def read_rows(src: np.ndarray, head: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """The ``n`` rows of ``src`` before index ``head`` (wrapping), oldest first, as a copy.

    ``src`` is any C-contiguous array whose first axis is the ring's; ``out`` (shape
    ``(n,) + src.shape[1:]``, same dtype) may be given to avoid allocating.
    """
    if not isinstance(src, np.ndarray) or not src.flags.c_contiguous or src.ndim < 1:
        raise ValueError("src must be a C-contiguous ndarray with a row axis")
    nrows = src.shape[0]
    if not 0 <= n <= nrows:
        raise ValueError(f"n must be in [0, {nrows}], got {n}")
    if not 0 <= head < max(nrows, 1):
        raise ValueError(f"head must be in [0, {nrows}), got {head}")
    if out is None:
        out = np.empty((n, *src.shape[1:]), src.dtype)
    else:
        _as_array("out", out, src.dtype, src.ndim, writeable=True)
        if out.shape != (n, *src.shape[1:]):
            raise ValueError(f"out must have shape {(n, *src.shape[1:])}, got {out.shape}")
    if n:
        rowbytes = src.itemsize * (src.size // nrows)
        _core.copy_rows(src.view(np.uint8).reshape(nrows, rowbytes), head, n,
                        out.view(np.uint8).reshape(n, rowbytes))
    return out


# --- burst detection (sunspec.detect) ---------------------------------------------------------
def detect_bin_rows(x_db: np.ndarray, bg: np.ndarray, inv_sigma: np.ndarray,
                    chan_bin: np.ndarray, z_norm: np.ndarray, db_norm: np.ndarray,
                    zclip: float, out_z: np.ndarray, out_db: np.ndarray) -> None:
    """Per-channel normalised excess of dB rows, summed into frequency bins.

    ``x_db`` float32 (n, nchan); ``bg``, ``inv_sigma`` float32 (nchan,) (0 = channel masked);
    ``chan_bin`` int32 (nchan,) bin of each channel (-1 = none); ``z_norm``, ``db_norm``
    float32 (nbin,) factors applied to each bin's sums (1/sqrt(count), 1/count). Writes
    ``out_z`` (sum of z clipped to +-``zclip``, times z_norm) and ``out_db`` (mean dB excess),
    both float32 (n, nbin). Non-finite values count as no excess.
    """
    x = _as_array("x_db", x_db, np.float32, 2)
    n, m = x.shape
    for name, a in (("bg", bg), ("inv_sigma", inv_sigma)):
        if _as_array(name, a, np.float32, 1).shape != (m,):
            raise ValueError(f"{name} must have shape ({m},), got {a.shape}")
    cb = _as_array("chan_bin", chan_bin, np.int32, 1)
    if cb.shape != (m,):
        raise ValueError(f"chan_bin must have shape ({m},), got {cb.shape}")
    oz = _as_array("out_z", out_z, np.float32, 2, writeable=True)
    nb = oz.shape[1]
    od = _as_array("out_db", out_db, np.float32, 2, writeable=True)
    if oz.shape != (n, nb) or od.shape != (n, nb):
        raise ValueError(f"out_z and out_db must have shape ({n}, nbin), got {oz.shape}, "
                         f"{od.shape}")
    for name, a in (("z_norm", z_norm), ("db_norm", db_norm)):
        if _as_array(name, a, np.float32, 1).shape != (nb,):
            raise ValueError(f"{name} must have shape ({nb},), got {a.shape}")
    if m and (cb.min() < -1 or cb.max() >= nb):
        raise ValueError(f"chan_bin values must be in [-1, {nb})")
    if not zclip > 0:
        raise ValueError(f"zclip must be > 0, got {zclip}")
    _core.detect_bin_rows(x, bg, inv_sigma, cb, z_norm, db_norm, float(zclip), oz, od)


def _history(hist: np.ndarray, newest: int) -> np.ndarray:
    h = _as_array("hist", hist, np.float32, 2)
    if not 0 <= newest < h.shape[0]:
        raise ValueError(f"newest must be in [0, {h.shape[0]}), got {newest}")
    return h


def detect_curve_sums(hist: np.ndarray, newest: int, lags: np.ndarray, bin_group: np.ndarray,
                      out: np.ndarray) -> None:
    """Sums of the circular history ``hist`` (T, nbin) along drift curves, per bin group.

    Row ``newest`` is the latest; ``lags`` int32 (ncurve, nbin) rows back from it per bin
    (-1 = bin not on the curve, else < T); ``bin_group`` int32 (nbin,) group of each bin
    (-1 = none); ``out`` float32 (ncurve, ngroup) receives the sums.
    """
    h = _history(hist, newest)
    t, nb = h.shape
    lg = _as_array("lags", lags, np.int32, 2)
    if lg.shape[1] != nb:
        raise ValueError(f"lags must have {nb} columns, got shape {lg.shape}")
    if lg.size and (lg.min() < -1 or lg.max() >= t):
        raise ValueError(f"lags must be in [-1, {t})")
    bg = _as_array("bin_group", bin_group, np.int32, 1)
    o = _as_array("out", out, np.float32, 2, writeable=True)
    if bg.shape != (nb,):
        raise ValueError(f"bin_group must have shape ({nb},), got {bg.shape}")
    if o.shape[0] != lg.shape[0] or (nb and bg.max() >= o.shape[1]):
        raise ValueError(f"out must have shape ({lg.shape[0]}, > max group), got {o.shape}")
    _core.detect_curve_sums(h, newest, lg, bg, o)


def detect_line_sums(hist: np.ndarray, newest: int, offsets: np.ndarray, weight: np.ndarray,
                     width: int, out_sum: np.ndarray, out_n: np.ndarray) -> None:
    """Sums of the circular history ``hist`` (T, nbin) along straight lanes.

    Lane r ending at bin b (row ``newest``) takes, ``j`` rows back (j < L), bins
    ``b + offsets[r, j]`` .. ``+ width - 1`` inside the band, each times ``weight`` (float32
    (nbin,)). ``offsets`` int32 (nlane, L) with L <= T; ``out_sum`` and ``out_n`` (the
    summed weights) are float32 (nlane, nbin).
    """
    h = _history(hist, newest)
    t, nb = h.shape
    off = _as_array("offsets", offsets, np.int32, 2)
    if off.shape[1] > t:
        raise ValueError(f"offsets may reach {t} rows back, got {off.shape[1]}")
    w = _as_array("weight", weight, np.float32, 1)
    if w.shape != (nb,):
        raise ValueError(f"weight must have shape ({nb},), got {w.shape}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    shape = (off.shape[0], nb)
    for name, a in (("out_sum", out_sum), ("out_n", out_n)):
        if _as_array(name, a, np.float32, 2, writeable=True).shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    _core.detect_line_sums(h, newest, off, w, int(width), out_sum, out_n)


__all__ += ["detect_bin_rows", "detect_curve_sums", "detect_line_sums"]
