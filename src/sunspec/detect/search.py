"""The search: matched sums of normalised excess along drifting curves and slow lanes.

Rows of per-channel significance (see :mod:`.background`) are summed into ``nbins`` bins
uniform in log frequency (bin 0 the highest), so that a burst's shape does not depend on
how an instrument spaces its channels (uniform OVRO-LWA channels, descending non-uniform
e-CALLISTO ones). Each row's median over bins is subtracted (gain changes and broadband
spikes are common to all bins, bursts cover a minority of them at any one time).

Type III (fast drift): the bins' time series, smoothed over the burst's decay time
(about 1.5 s x 30 MHz / f; decay roughly as 1/f, e.g. Reid & Ratcliffe 2014, RAA 14, 773),
are summed along a bank of curves of the Alvarez & Haddock (1973, Sol. Phys. 29, 197) drift
law ``df/dt = -0.01 s f^1.84`` MHz/s, for drift scales ``s`` covering the spread of type III
drift rates (Saint-Hilaire, Vilmer & Kerdraon 2013, ApJ 762, 60), plus a zero-drift curve
(a simultaneous, broadband excess). Like incoherent dedispersion in transient searches, each
curve is a table of delays per bin; sums are kept per sub-band of bins anchored at the
sub-band's low edge, so that any run of sub-bands from a burst's start downwards is scored as
soon as the burst has swept through it (low latency) and a burst that starts below the top
or fades before the bottom of the band is not diluted by the bins it misses. A run's
significance leaves out its brightest sub-band and needs ``min_subbands`` sub-bands above
``subband_z`` (consistency across the band: one transmitter cannot make a burst); a run whose
zero-drift sum is as large as its drifting one is a spike, not a burst.

Type II (slow drift): bins averaged over ``type2_step_s`` (clipped, so a type III crossing
adds little) are summed along straight lanes in (time, log f) of ``type2_lane_s``, the
plasma-emission lanes of a shock travelling out through a density falling with height (Nelson
& Melrose 1985, in *Solar Radiophysics*, ch. 13; drift rates -0.05..-1 MHz/s at these
frequencies, Mann, Classen & Aurass 1995, A&A 295, 775; Mann et al. 1996), alone or with
the harmonic lane at twice the frequency. A lane whose constant-frequency sum is as large as
its drifting one is a transmitter.

Every statistic is divided by its own robust scale measured on the stream (MAD of its recent
history), so a significance of 7 means the same on any instrument.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import kernels
from .config import DetectorConfig

__all__ = ["TYPE2_RATES", "TYPE3_SCALES", "Geometry", "Search", "Trigger", "ah_delay_s",
           "ah_drift_mhz_s"]

#: multiples of the Alvarez-Haddock drift rate searched for type III bursts
TYPE3_SCALES = (0.3, 0.45, 0.65, 1.0, 1.5, 2.2, 3.3)
#: relative drift rates -(df/dt)/f (1/s) searched for type II lanes: -0.05 MHz/s at 80 MHz
#: to -1 MHz/s at 25 MHz
TYPE2_RATES = tuple(float(r) for r in np.geomspace(0.0006, 0.04, 9))
#: the axis assumed when a stream gives no frequencies (shapes only; no MHz is reported)
NOMINAL_BAND_MHZ = (20.0, 80.0)
#: e-folding decay of a type III at 30 MHz (s), scaling as 1/f
_DECAY_30MHZ_S = 1.5
_MAX_SMOOTH = 8
#: a row's median excess beyond this many of its robust deviations marks a spike
_SPIKE_SIGMA = 6.0
#: ... and whose bins are nearly all above their noise (a burst covers a minority of them)
_SPIKE_COVER = 0.8
#: a bin on a type III's curve is part of its band above this smoothed significance
_LIT_Z = 3.0
#: parts of a type II lane scored apart (the brightest is left out of the statistic)
_LANE_PARTS = 3
_AH_INDEX = 1.84


def ah_delay_s(f_mhz: np.ndarray | float, f_top_mhz: float, scale: float = 1.0
               ) -> np.ndarray | float:
    """Time (s) a type III takes to drift from ``f_top_mhz`` down to ``f_mhz`` under
    ``df/dt = -0.01 scale f^1.84`` MHz/s (Alvarez & Haddock 1973)."""
    k = _AH_INDEX - 1
    return (np.power(f_mhz, -k) - f_top_mhz ** -k) / (0.01 * k * scale)


def ah_drift_mhz_s(f_mhz: float, scale: float = 1.0) -> float:
    """Drift rate (MHz/s, negative) at ``f_mhz`` of Alvarez & Haddock (1973) times scale."""
    return -0.01 * scale * f_mhz ** _AH_INDEX


class Geometry:
    """How channels map to log-frequency bins and sub-bands.

    ``freqs_mhz`` may be ascending, descending or non-uniform; ``None`` means channel
    indices only (a nominal band then gives the curves their shapes, ``has_mhz`` is False).
    """

    def __init__(self, nchan: int, freqs_mhz: np.ndarray | None, config: DetectorConfig):
        self.nchan = nchan
        self.has_mhz = freqs_mhz is not None
        if freqs_mhz is None:
            f = np.geomspace(*NOMINAL_BAND_MHZ, nchan) if nchan > 1 else \
                np.array([NOMINAL_BAND_MHZ[1]])
        else:
            f = np.asarray(freqs_mhz, np.float64)
            if f.shape != (nchan,):
                raise ValueError(f"freqs_mhz must have shape ({nchan},), got {f.shape}")
        self.freqs_mhz = f
        ok = np.isfinite(f) & (f > 0)
        if ok.sum() < config.nbins:
            raise ValueError(f"need at least nbins = {config.nbins} channels with positive "
                             f"frequencies, got {int(ok.sum())}")
        nb = self.nbins = config.nbins
        u = np.log(np.where(ok, f, 1.0))
        top, bottom = float(u[ok].max()), float(u[ok].min())
        if top - bottom <= 0:
            raise ValueError("the channels' frequencies must span a range")
        self.du = (top - bottom) / nb
        b = np.minimum(((top - u) / self.du).astype(np.int64), nb - 1)
        self.chan_bin = np.where(ok, b, -1).astype(np.int32)
        self.counts = np.bincount(b[ok], minlength=nb).astype(np.float64)
        has = self.counts > 0
        self.weight = has.astype(np.float32)
        self.z_norm = np.where(has, 1 / np.sqrt(np.maximum(self.counts, 1)), 0).astype(np.float32)
        self.db_norm = np.where(has, 1 / np.maximum(self.counts, 1), 0).astype(np.float32)
        #: bin edges (MHz): bin b spans [edge[b + 1], edge[b]]
        self.edges_mhz = np.exp(top - self.du * np.arange(nb + 1))
        self.centre_mhz = np.sqrt(self.edges_mhz[:-1] * self.edges_mhz[1:])
        self.nsub = config.nsub
        self.per_sub = nb // config.nsub
        self.bin_group = (np.arange(nb) // self.per_sub).astype(np.int32)
        # channels of each bin (for reporting channel indices)
        self.bin_chan_range = np.zeros((nb, 2), np.int64)
        for i in range(nb):
            chans = np.flatnonzero(self.chan_bin == i)
            self.bin_chan_range[i] = (chans.min(), chans.max()) if chans.size else (-1, -1)


@dataclass(frozen=True)
class Trigger:
    """One crossing of a threshold by a statistic, at row ``row`` (the newest row)."""

    kind: str  # "III" or "II"
    row: int
    onset_row: int  # row at which the burst was at bin_high
    end_row: int  # row at which the detected emission was last at bin_low
    score: float  # the detection statistic
    snr: float  # the whole run's / lane's significance
    bin_high: int
    bin_low: int
    rate: float  # drift scale (III) or relative drift rate 1/s (II)
    excess_db: float
    harmonic: bool = False


class _Scale:
    """Robust scale (1.4826 MAD) of a statistic per slot, from its recent history."""

    def __init__(self, nhist: int, shape: tuple[int, ...], floor: np.ndarray | float):
        self.hist = np.zeros((nhist, *shape), np.float32)
        self.n = 0
        self.floor = np.broadcast_to(np.asarray(floor, np.float32), shape).copy()
        self.scale = self.floor.copy()

    def push(self, value: np.ndarray) -> None:
        self.hist[self.n % len(self.hist)] = value
        self.n += 1

    def update(self, pool_axis: int | None = None) -> None:
        h = self.hist[: min(self.n, len(self.hist))]
        if len(h) < 16:
            return
        axes: tuple[int, ...] = (0,) if pool_axis is None else (0, pool_axis + 1)
        # NaN marks slots without a value (all NaN: the floor)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(h, axis=axes, keepdims=True)
            mad = 1.4826 * np.nanmedian(np.abs(h - med), axis=axes, keepdims=True)[0]
        mad = np.where(np.isfinite(mad), mad, 0)
        self.scale = np.maximum(np.broadcast_to(mad, self.floor.shape), self.floor)


class Search:
    """Scores each new row of binned significance; returns the triggers it raises."""

    def __init__(self, geometry: Geometry, dt_s: float, config: DetectorConfig):
        self.g = geometry
        self.c = config
        self.dt = dt_s
        nb, ng, ps = geometry.nbins, geometry.nsub, geometry.per_sub
        f = geometry.centre_mhz
        f_top = float(geometry.edges_mhz[0])
        # --- type III bank: curve 0 has no drift
        self.scales = (math.inf, *TYPE3_SCALES)
        nk = len(self.scales)
        delay = np.zeros((nk, nb))
        for k, s in enumerate(self.scales[1:], 1):
            delay[k] = np.asarray(ah_delay_s(f, f_top, s)) / dt_s
        bottom = np.arange(ng) * ps + ps - 1  # lowest-frequency bin of each sub-band
        self.lags = np.rint(delay[:, bottom][:, geometry.bin_group] - delay).astype(np.int32)
        # glag[k, g2, g]: rows from the sub-band g's anchor to g2's anchor (g <= g2)
        d_b = delay[:, bottom]
        self.glag = np.maximum(np.rint(d_b[:, :, None] - d_b[:, None, :]), 0).astype(np.int64)
        self.smooth = np.clip(np.rint(_DECAY_30MHZ_S * 30.0 / f / dt_s), 1, _MAX_SMOOTH
                              ).astype(np.int64)
        self.hist_rows = int(max(self.lags.max(), self.glag.max() + self.lags.max())
                             + 2 * _MAX_SMOOTH + 4)
        self.z = np.zeros((self.hist_rows, nb), np.float32)  # binned significance
        self.db = np.zeros((self.hist_rows, nb), np.float32)  # binned dB excess
        self.zs = np.zeros((self.hist_rows, nb), np.float32)  # smoothed over the decay
        self._box = np.zeros(nb, np.float64)
        self._sqrt_w = np.sqrt(self.smooth).astype(np.float32)
        self.p = np.zeros((self.hist_rows, nk, ng), np.float32)  # normalised sub-band sums
        self._p = np.zeros((nk, ng), np.float32)
        n_sub = np.array([geometry.weight[geometry.bin_group == g].sum() for g in range(ng)])
        self.sub_ok = n_sub >= max(1, ps // 2)
        self.p_scale = _Scale(max(256, self.hist_rows), (nk, ng),
                              np.sqrt(np.maximum(n_sub, 1)) * 0.7)
        # run masks: run (g1..g2) holds sub-band g
        gi = np.arange(ng)
        self.run_mask = (gi[None, :, None] <= gi[None, None, :]) & \
            (gi[None, None, :] <= gi[:, None, None])  # [g2, g1, g]: g1 <= g <= g2
        self.run_n = self.run_mask.sum(-1)  # [g2, g1]
        # --- type II bank: lane 0 has no drift
        self.step = max(1, round(config.type2_step_s / dt_s))
        self.lane_len = max(4, round(config.type2_lane_s / (self.step * dt_s)))
        self.rates = (0.0, *TYPE2_RATES)
        slope = np.array(self.rates) * self.step * dt_s / geometry.du  # bins per step
        j = np.arange(self.lane_len)
        self.offsets = (-np.rint(slope[:, None] * j[None, :])).astype(np.int32)
        self.lane_width = 2
        self.z2 = np.zeros((self.lane_len + 1, nb), np.float32)
        self._acc2 = np.zeros(nb, np.float64)
        self._n2 = 0
        self.steps2 = 0
        part = self.lane_len // _LANE_PARTS
        self._part_offsets = [np.ascontiguousarray(self.offsets[:, i * part:(i + 1) * part])
                              for i in range(_LANE_PARTS)]
        self._s2 = np.zeros((_LANE_PARTS, len(self.rates), nb), np.float32)
        self._n2w = np.zeros((_LANE_PARTS, len(self.rates), nb), np.float32)
        self.l_scale = _Scale(300, (len(self.rates), nb), 0.8)
        self.harm = round(math.log(2) / geometry.du)
        self.rows = 0
        self.vetoed_spikes = 0
        self.vetoed_rfi = 0
        self.spike_rows = 0
        self.vetoed_narrow = 0
        self.cm_scale = _Scale(512, (1,), 1e-3)
        self._sqrt_n = np.sqrt(geometry.counts).astype(np.float32)

    # --- one row --------------------------------------------------------------------------
    def push(self, z: np.ndarray, db: np.ndarray, armed: bool) -> list[Trigger]:
        """Add one row of binned significance ``z`` and dB excess ``db`` (both (nbins,));
        returns triggers (none unless ``armed``)."""
        t = self.rows % self.hist_rows
        if self.c.common_mode:
            ok = self.g.weight > 0
            # a common excess per channel (gain, spikes) adds sqrt(channels) to a bin's z
            cm = np.float32(np.median(z[ok] * self.g.z_norm[ok]))
            cover = float(np.mean(z[ok] > 2.0))
            z = z - cm * self._sqrt_n
            db = db - np.float32(np.median(db[ok]))
            z[~ok] = 0
            db[~ok] = 0
            # a row whose common excess stands out is an impulsive broadband spike: blank it
            self.cm_scale.push(np.array([cm]))
            if abs(cm) > _SPIKE_SIGMA * float(self.cm_scale.scale[0]) and \
                    cover >= _SPIKE_COVER:
                z = np.zeros_like(z)
                self.spike_rows += 1
        self.z[t] = z
        self.db[t] = db
        # box-car over each bin's decay time
        old = self.z[(t - self.smooth) % self.hist_rows, np.arange(self.g.nbins)]
        self._box += z
        if self.rows >= _MAX_SMOOTH:
            self._box -= old
        self.zs[t] = (self._box / self._sqrt_w).astype(np.float32)
        kernels.detect_curve_sums(self.zs, t, self.lags, self.g.bin_group, self._p)
        self.p_scale.push(self._p)
        self.p[t] = self._p / self.p_scale.scale
        out: list[Trigger] = []
        if armed and self.rows >= self.hist_rows:
            trig = self._type3(t)
            if trig is not None:
                out.append(trig)
        # type II: averaged steps
        self._acc2 += np.clip(z, -self.c.type2_clip * 2, self.c.type2_clip * 2)
        self._n2 += 1
        if self._n2 == self.step:
            t2 = self.steps2 % len(self.z2)
            self.z2[t2] = np.clip(self._acc2 / math.sqrt(self.step), -self.c.type2_clip,
                                  self.c.type2_clip)
            self._acc2[:] = 0
            self._n2 = 0
            self.steps2 += 1
            if self.steps2 >= self.lane_len:
                trig = self._type2(t2, armed)
                if trig is not None:
                    out.append(trig)
        self.rows += 1
        return out

    def renormalise(self) -> None:
        """Re-measure the statistics' robust scales (call when the background updates)."""
        self.p_scale.update()
        self.l_scale.update(pool_axis=1)
        self.cm_scale.update()

    # --- type III -------------------------------------------------------------------------
    def _type3(self, t: int) -> Trigger | None:
        nk, ng = len(self.scales), self.g.nsub
        rows = (t - self.glag) % self.hist_rows  # [k, g2, g]
        v = self.p[rows, np.arange(nk)[:, None, None], np.arange(ng)[None, None, :]]
        v = np.where(self.sub_ok, v, 0.0)
        # most rows: no curve has min_subbands sub-bands above subband_z anywhere
        if not ((v[1:] > self.c.subband_z).sum(-1) >= self.c.min_subbands).any():
            return None
        m = self.run_mask[None]  # [1, g2, g1, g]
        runs = np.where(m, v[:, :, None, :], 0.0)  # [k, g2, g1, g]
        total = runs.sum(-1)
        top = np.where(m, v[:, :, None, :], -np.inf).max(-1)
        n = np.maximum(self.run_n, 1)[None]
        snr = total / np.sqrt(n)
        loo = (total - top) / np.sqrt(np.maximum(n - 1, 1))
        consistent = (np.where(m, v[:, :, None, :] > self.c.subband_z, False).sum(-1)
                      >= self.c.min_subbands)
        score = np.where(consistent & (n >= self.c.min_subbands), loo, -np.inf)
        score[0] = -np.inf  # the zero-drift curve only vetoes
        k, g2, g1 = np.unravel_index(int(np.argmax(score)), score.shape)
        best = float(score[k, g2, g1])
        if best < self.c.threshold:
            return None
        if snr[0, g2, g1] >= self.c.spike_ratio * snr[k, g2, g1]:
            self.vetoed_spikes += 1
            return None
        ps = self.g.per_sub
        b_hi, b_lo = int(g1 * ps), int(g2 * ps + ps - 1)
        # dB excess along the curve, half a decay time after it reached each bin
        bins = np.arange(b_hi, b_lo + 1)
        back = self.glag[k, g2, self.g.bin_group[bins]] + self.lags[k, bins]
        lag = np.maximum(back - self.smooth[bins] // 2, 0)
        exc = self.db[(t - lag) % self.hist_rows, bins]
        # the band: from the first to the last bin significantly bright on the curve
        lit = np.flatnonzero(self.zs[(t - back) % self.hist_rows, bins] >= _LIT_Z)
        if len(lit):
            b_hi, b_lo = b_hi + int(lit[0]), b_hi + int(lit[-1])
        if len(lit) * self.g.du < math.log(self.c.min_band_ratio):  # bright bins, not span
            self.vetoed_narrow += 1
            return None
        # rows from the curve at the run's anchor back to its passage through b_hi
        onset = self.rows - int(self.glag[k, g2, self.g.bin_group[b_hi]]
                                + self.lags[k, b_hi])
        return Trigger("III", self.rows, onset, onset + int(self.smooth[b_hi]), best,
                       float(snr[k, g2, g1]), b_hi, b_lo, float(self.scales[k]),
                       float(np.max(exc)) if exc.size else 0.0)

    # --- type II --------------------------------------------------------------------------
    def _type2(self, t2: int, armed: bool) -> Trigger | None:
        part = self.lane_len // _LANE_PARTS
        nz = len(self.z2)
        for i in range(_LANE_PARTS):
            kernels.detect_line_sums(self.z2, (t2 - i * part) % nz, self._part_offsets[i],
                                     self.g.weight, self.lane_width, self._s2[i], self._n2w[i])
        n_all = self._n2w.sum(0)
        full = n_all >= 0.5 * part * _LANE_PARTS * self.lane_width
        seg = self._s2 / np.sqrt(np.maximum(self._n2w, 1))  # [part, lane, bin]
        top = seg.max(0)
        n_top = np.take_along_axis(self._n2w, seg.argmax(0)[None], 0)[0]
        # leave the brightest part out: a type III crossing the lane lights one part only
        lane = np.where(full, (self._s2.sum(0) - top * np.sqrt(np.maximum(n_top, 1)))
                        / np.sqrt(np.maximum(n_all - n_top, 1)), 0.0)
        # every part of the lane must carry excess: intermittent RFI lights some parts only
        lane = np.where(seg.min(0) >= self.c.subband_z, lane, np.minimum(lane, 0.0))
        self.l_scale.push(np.where(full, lane, np.nan))
        lane = lane / self.l_scale.scale
        if not armed or self.steps2 < 2 * self.lane_len:
            return None
        h = self.harm
        both = np.full_like(lane, -np.inf)
        if 0 < h < self.g.nbins:
            both[:, h:] = (lane[:, h:] + lane[:, :-h]) / math.sqrt(2)
        stat = np.maximum(lane, both)
        stat[0] = -np.inf
        r, b = np.unravel_index(int(np.argmax(stat)), stat.shape)
        best = float(stat[r, b])
        if best < self.c.type2_threshold:
            return None
        lo, hi = max(b - 1, 0), min(b + 2, self.g.nbins)
        if float(np.max(lane[0, lo:hi])) >= self.c.rfi_ratio * float(lane[r, b]):
            self.vetoed_rfi += 1
            return None
        harmonic = bool(both[r, b] > lane[r, b])
        b_lo = int(b)
        b_hi = int(max(b + self.offsets[r, -1], 0))
        if harmonic:
            b_hi = max(b_hi - h, 0)
        span = (self.lane_len - 1) * self.step
        # dB excess on the lane's path at its newest steps
        exc = float(np.max(self.db[(self.rows - np.arange(min(self.step * 4, self.hist_rows)))
                                   % self.hist_rows, b_lo]))
        return Trigger("II", self.rows, self.rows - span, self.rows, best, best, b_hi, b_lo,
                       float(self.rates[r]), exc, harmonic)
