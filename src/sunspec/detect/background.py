"""Per-channel background and noise of a dynamic spectrum, in dB.

Solar bursts only add power, and they occupy any one channel for a small part of a couple of
minutes, so the median of each channel over the last ``bg_window_s`` is its quiet level and
1.4826 x the median absolute deviation about it its noise (robust estimators, e.g. Huber &
Ronchetti, *Robust Statistics*, 2009). Working in dB makes a multiplicative bandpass and
gain additive, and brings radiometer noise (a chi-square of 2 navg nint degrees of freedom,
very many here) close to Gaussian. A channel more than 3 sigma above its median in a fraction of the
window exceeding its neighbours' (16 channels either side) by ``rfi_occupancy`` carries a
transmitter and is masked.
"""

from __future__ import annotations

import numpy as np

from .config import DetectorConfig

__all__ = ["UNITS", "Background", "to_db"]

#: the ``unit`` values of a stream's rows that the detector accepts
UNITS = ("linear", "dB")
#: at most this many rows of the window enter a median (older ones are thinned out)
_MAX_ROWS = 64
#: channels on each side a channel's RFI occupancy is compared with
_NEIGHBOURS = 16


def to_db(data: np.ndarray, unit: str = "linear", out: np.ndarray | None = None) -> np.ndarray:
    """Rows in dB as float32: ``10 log10`` of linear power (values <= 0 or non-finite become
    NaN), or a copy of rows already in dB."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    x = np.asarray(data)
    if out is None:
        out = np.empty(x.shape, np.float32)
    if unit == "dB":
        out[...] = x
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log10(x, out=out, dtype=np.float32)
    out *= np.float32(10.0)
    out[~np.isfinite(out)] = np.nan
    return out


class Background:
    """Running per-channel quiet level (``level``, dB), noise (``sigma``, dB) and RFI mask.

    Feed dB rows with :meth:`push`; the estimate is recomputed every ``bg_update_s`` of rows
    (:attr:`due` says when) from the last ``bg_window_s``. ``inv_sigma`` is 0 for a masked
    channel or before the first estimate.
    """

    def __init__(self, nchan: int, dt_s: float, config: DetectorConfig):
        self.window = max(8, round(config.bg_window_s / dt_s))
        self.update_rows = max(1, round(config.bg_update_s / dt_s))
        self.rfi_occupancy = config.rfi_occupancy
        self._hist = np.zeros((self.window, nchan), np.float32)
        self._pushed = 0
        self._since_update = 0
        self.level = np.zeros(nchan, np.float32)
        self.sigma = np.ones(nchan, np.float32)
        self.inv_sigma = np.zeros(nchan, np.float32)
        self.masked = np.zeros(nchan, bool)
        self.estimates = 0

    @property
    def rows_until_update(self) -> int:
        """Rows that may still be pushed before the estimate is due."""
        return max(self.update_rows - self._since_update, 1) if self.estimates else \
            max(min(self.update_rows, 8) - self._since_update, 1)

    def push(self, rows_db: np.ndarray) -> bool:
        """Add dB rows to the window; re-estimates when due. Returns True if it did."""
        n = len(rows_db)
        for i in range(n):  # a chunk is a few rows: wrap row by row
            self._hist[self._pushed % self.window] = rows_db[i]
            self._pushed += 1
        self._since_update += n
        first = not self.estimates and self._pushed >= 8
        if first or self._since_update >= self.update_rows:
            self._estimate()
            return True
        return False

    def _estimate(self) -> None:
        held = min(self._pushed, self.window)
        h = self._hist[:held]
        if held > _MAX_ROWS:
            h = h[:: -(-held // _MAX_ROWS)]
        has_nan = bool(np.isnan(h).any())
        median = np.nanmedian if has_nan else np.median
        with np.errstate(all="ignore"):
            level = median(h, axis=0)
            dev = h - level
            sigma = 1.4826 * median(np.abs(dev), axis=0)
            # quantised data (e.g. 8-bit log detectors) can have a MAD of 0
            flat = ~(sigma > 0)
            if flat.any():
                sigma[flat] = (np.nanstd if has_nan else np.std)(h[:, flat], axis=0)
            hot = np.mean(dev > 3 * sigma, axis=0)
        # a transmitter is narrow: its channel is hot far more often than its neighbours
        # (bursts are broad, so they heat neighbouring channels alike)
        pad = np.pad(hot, _NEIGHBOURS, mode="edge")
        around = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * _NEIGHBOURS + 1),
                           axis=1)
        masked = ~np.isfinite(level) | ~(sigma > 0) | (hot - around > self.rfi_occupancy)
        self.level = np.where(masked, 0, level).astype(np.float32)
        self.sigma = np.where(masked, 1, sigma).astype(np.float32)
        self.inv_sigma = np.where(masked, 0, 1 / self.sigma).astype(np.float32)
        self.masked = masked
        self._since_update = 0
        self.estimates += 1

    def excess_db(self, rows_db: np.ndarray) -> np.ndarray:
        """dB above the background of dB rows (NaN in masked channels)."""
        out = np.asarray(rows_db, np.float32) - self.level
        out[..., self.masked] = np.nan
        return out
