"""The synthetic recorder: :class:`Simulator` makes recorder gulps (time-domain path) or
averaged frames directly (frame-level path), and the ground truth of what it put in them.

Units: a gulp ``(ntime_gulp, nbeam, nchan, 4)`` (pols XX, YY, XY_real, XY_imag) holds what
the recorder's ring holds: each value the sum of ``navg`` raw power spectra, arbitrary
units, the sky near 1e4 per raw spectrum at 50 MHz.

Per channel frequency ``f`` and data time ``t`` (seconds since the stream's start) the
source power is ``sky(f) * (d(t) + J(t, f) + sum of event excesses)``:

- ``sky(f)``: galactic power law ``(f / 50 MHz) ** -2.55`` (Cane 1979, MNRAS 189, 465), a
  weak quiet-Sun ``f ** 2`` term and a flat receiver term;
- ``d(t)``: the sidereal drift of the sky as the Galaxy moves through the beam,
  ``1 + sky_drift sin(2 pi t / 86164 s + phase)``;
- ``J(t, f)``: broadband interference below ~30 MHz (ionospherically propagated junk),
  ``hf_junk (f / 20 MHz) ** -6`` times slow fluctuations;
- events: :mod:`sunspec.sim.events`, drawn by :mod:`sunspec.sim.scenario`.

XX and YY are that power times a per-pol bandpass (analog roll-off, ripple, per-subband
digital gains of 192 channels) times a slow gain drift ``1 + gain_drift sin(2 pi t /
gain_period_s + phase)``, plus RFI lines; XY_real carries 1 % instrumental leakage and the
lines' linear polarisation; XY_imag the events' circular polarisation.

Radiometer noise: a sum of ``navg`` exponential powers is chi-square with ``2 navg`` degrees
of freedom (Wilson-Hilferty cube of a normal deviate, or exact gamma draws below 40
degrees); a frame, the mean of ``nint`` spectra, has ``2 navg nint`` degrees of freedom,
which the frame-level path draws directly. XY parts are normal with variance
``XX * YY / (2 navg)`` per spectrum, ``/ nint`` per frame. (Thompson, Moran & Swenson,
*Interferometry and Synthesis in Radio Astronomy*, 3rd ed., sect. 6.2 and 9.3.)

Everything is deterministic: gulp ``i`` depends only on the seed and ``i``, frame ``k`` of
``nint`` spectra only on the seed, ``nint`` and ``k``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..clock import CHAN_BW, FS, channel_freqs_hz, tag_to_datetime, ticks_per_spectrum, unix_to_tag
from .config import SimConfig
from .events import Event, RFILine, Spike, TypeII, TypeIII
from .scenario import EventSource, rfi_lines

__all__ = ["DEFAULT_CHAN0", "POLS", "SKY_LEVEL", "Simulator", "write_truth"]

#: first recorder channel by default: the field's receivers assumed 600 (14.4-87.8 MHz)
DEFAULT_CHAN0 = 600
#: pol order of the recorder's ring
POLS = "XX,YY,CR,CI"
#: sky power per raw spectrum at 50 MHz
SKY_LEVEL = 1e4
SIDEREAL_DAY_S = 86164.0905
_SUBBAND = 192  # channels per recorder pipeline (16 x 192 = 3072)
_LOOKAHEAD_S = 30.0  # events of a group start at most this long before the group


class Simulator:
    """Deterministic synthetic recorder data (see the module docstring for the model).

    ``config`` holds the sky's parameters (:class:`SimConfig`; default: the ``demo``
    activity level). ``bursts`` replaces the random events (solar bursts and impulses) by
    a fixed list of :class:`~sunspec.sim.events.Event`; ``rfi`` the random lines (default:
    :func:`~sunspec.sim.scenario.rfi_lines` of the seed). ``noise=False`` gives expected
    values. ``start_tag`` is the sequence's ``time_tag`` (default: now, on a spectrum
    boundary).

    Two paths: :meth:`gulp` makes the recorder's spectra (faithful, ~0.3 s of CPU per
    second of data); :meth:`frames` makes the frames the recorder's averaging would send,
    with the same per-channel mean and radiometer statistics, about a thousand times
    cheaper. :meth:`truth` lists what was simulated.
    """

    npol = 4

    def __init__(self, *, nbeam: int = 1, nchan: int = 3072, ntime_gulp: int = 1024,
                 navg: int = 24, chan0: int = DEFAULT_CHAN0, seed: int = 0,
                 config: SimConfig | None = None, bursts: Sequence[Event] | None = None,
                 rfi: Sequence[RFILine] | None = None, noise: bool = True,
                 start_tag: int | None = None):
        if min(nbeam, nchan, ntime_gulp, navg) < 1 or chan0 < 0:
            raise ValueError("nbeam, nchan, ntime_gulp, navg must be >= 1 and chan0 >= 0")
        self.nbeam, self.nchan, self.ntime_gulp, self.navg = nbeam, nchan, ntime_gulp, navg
        self.chan0 = chan0
        self.seed = seed
        self.config = config or SimConfig()
        self.noise = noise
        tps = ticks_per_spectrum(navg)
        if start_tag is None:
            start_tag = unix_to_tag(time.time()) // tps * tps
        self.start_tag = int(start_tag)
        self.spectrum_seconds = tps / FS
        self.gulp_seconds = ntime_gulp * self.spectrum_seconds
        self.freqs_mhz = (channel_freqs_hz(chan0, nchan) / 1e6).astype(np.float32)
        self._f = self.freqs_mhz.astype(np.float64)
        self.band = (float(self._f[0]), float(self._f[-1]))
        f = self._f
        self.sky = (SKY_LEVEL * ((f / 50.0) ** -2.55 + 0.03 * (f / 50.0) ** 2 + 0.15))
        self.gains = self._bandpass(f)  # (nbeam, 2, nchan) for XX, YY
        # per beam: XX, YY and sqrt(XX YY) power of the relative sky 1, float32
        self._scales = [tuple((0.5 * navg * g).astype(np.float32) for g in (
            self.gains[b, 0] * self.sky, self.gains[b, 1] * self.sky,
            np.sqrt(self.gains[b, 0] * self.gains[b, 1]) * self.sky)) for b in range(nbeam)]
        rng = np.random.default_rng([seed, 0xD81F])
        self._phases = rng.uniform(0, 2 * np.pi, (nbeam, 2))
        self._sky_phase, self._junk_phases = rng.uniform(0, 2 * np.pi), rng.uniform(
            0, 2 * np.pi, 2)
        self._junk_shape = (f / 20.0) ** -6.0
        self.rfi = list(rfi_lines(seed, self.config) if rfi is None else rfi)
        self._fixed = None if bursts is None else list(bursts)
        self._source: EventSource | None = None
        self._events: list[Event] = []
        self._lo = np.empty(0)
        self._hi = np.empty(0)
        self._reset_events()

    # --- events ---------------------------------------------------------------------------

    def _reset_events(self) -> None:
        self._source = (EventSource(self.seed, self.config, self.spectrum_seconds)
                        if self._fixed is None else None)
        self._events = []
        self._add_events(self._fixed or [])

    def _add_events(self, evs: Sequence[Event]) -> None:
        if not evs:
            return
        spans = np.array([ev.span(*self.band) for ev in evs], np.float64).reshape(-1, 2)
        self._events.extend(evs)
        self._lo = np.concatenate([self._lo, spans[:, 0]])
        self._hi = np.concatenate([self._hi, spans[:, 1]])

    def events_between(self, t_lo: float, t_hi: float) -> list[Event]:
        """The events that add power between data times ``t_lo`` and ``t_hi`` (s)."""
        if self._source is not None and self._source.horizon < t_hi + _LOOKAHEAD_S:
            self._add_events(self._source.take(t_hi + _LOOKAHEAD_S + 600.0))
        idx = np.flatnonzero((self._lo <= t_hi) & (self._hi >= t_lo))
        return [self._events[i] for i in idx]

    @property
    def bursts(self) -> list[Event]:
        """The events drawn so far (all of them for a fixed ``bursts`` list)."""
        return list(self._events)

    # --- the model ------------------------------------------------------------------------

    def _bandpass(self, f: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0xBA9D])
        analog = 1 / (1 + (18.0 / f) ** 8) / (1 + (f / 86.0) ** 16)
        nsub = -(-self.nchan // _SUBBAND)
        g = np.empty((self.nbeam, 2, self.nchan))
        for b in range(self.nbeam):
            for p, level in enumerate((1.0, 0.85)):
                ripple = 1 + 0.06 * np.sin(2 * np.pi * f / 3.7 + rng.uniform(0, 6.3))
                digital = np.repeat(rng.normal(1.0, 0.03, nsub), _SUBBAND)[: self.nchan]
                g[b, p] = np.maximum(level * (1 - 0.08 * b) * analog * ripple * digital, 1e-3)
        return g

    def sky_drift(self, t: np.ndarray) -> np.ndarray:
        """``d(t)``: the quiet sky's level relative to ``sky`` at data times ``t``."""
        return 1 + self.config.sky_drift * np.sin(2 * np.pi * t / SIDEREAL_DAY_S
                                                  + self._sky_phase)

    def gain_drift(self, t: np.ndarray, beam: int, pol: int) -> np.ndarray:
        """Slow gain factor of ``beam``'s XX (``pol`` 0) or YY (1) at data times ``t``."""
        c = self.config
        return 1 + c.gain_drift * np.sin(2 * np.pi * t / c.gain_period_s
                                         + self._phases[beam, pol])

    def junk(self, t: np.ndarray) -> np.ndarray:
        """Broadband interference excess ``J(t, f)``, (len(t), nchan)."""
        p1, p2 = self._junk_phases
        m = ((1 + 0.5 * np.sin(2 * np.pi * t / 2400 + p1))
             * (1 + 0.3 * np.sin(2 * np.pi * t / 173 + p2)))
        return (self.config.hf_junk * m)[:, None] * self._junk_shape[None, :]

    def _relative(self, t: np.ndarray, t_first: np.ndarray | None, n: int
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """Source power relative to ``sky`` and its circular part, (len(t), nchan) float32.

        ``t`` are spectrum times (``t_first`` None) or frame mid-times with frames of ``n``
        spectra starting at ``t_first``."""
        rel = (self.sky_drift(t)[:, None] + self.junk(t)).astype(np.float32)
        circ = None
        lo, hi = ((t[0], t[-1]) if t_first is None
                  else (t_first[0], t_first[-1] + n * self.spectrum_seconds))
        for ev in self.events_between(float(lo), float(hi)):
            rows, ch = self._window(ev, t if t_first is None else t_first, n)
            if rows.start >= rows.stop or ch.start >= ch.stop:
                continue
            f = self._f[None, ch]
            if t_first is None:
                part = ev.excess(t[rows, None], f)
            else:
                part = ev.frame_mean(t_first[rows, None], self.spectrum_seconds, n, f)
            part = part.astype(np.float32)
            rel[rows, ch] += part
            if ev.circular:
                if circ is None:
                    circ = np.zeros_like(rel)
                circ[rows, ch] += part * np.float32(ev.circular)
        return rel, circ

    def _window(self, ev: Event, t_start: np.ndarray, n: int) -> tuple[slice, slice]:
        """Rows (spectra or frames starting at ``t_start``, ``n`` spectra each) and
        channels where ``ev`` adds power."""
        lo, hi = ev.span(*self.band)
        t_end = t_start + n * self.spectrum_seconds
        r0 = int(np.searchsorted(t_end, lo, "left"))
        r1 = int(np.searchsorted(t_start, hi, "right"))
        f = self._f
        if isinstance(ev, TypeIII):
            on = ev.onset(f)
            live = np.flatnonzero((on - 10 * ev.rise_s <= t_end[min(r1, len(t_end)) - 1])
                                  & (on + 10 * ev.tau(f) >= t_start[min(r0, len(t_start) - 1)]))
            ch = slice(live[0], live[-1] + 1) if live.size else slice(0, 0)
        elif isinstance(ev, Spike):
            a, b = np.searchsorted(f, [ev.f_mhz - 6 * ev.width_mhz, ev.f_mhz + 6 * ev.width_mhz])
            ch = slice(int(a), int(b))
        elif isinstance(ev, TypeII):
            ts = t_start[r0:r1]
            if ts.size == 0:
                return slice(r0, r1), slice(0, 0)
            mults = [m for m, _, _ in ev.lanes()]
            pad = 5 * ev.width + (0.15 if ev.herringbones else 0.0)
            a, b = np.searchsorted(f, [min(mults) * ev.lane_mhz(ts[-1] + n * self.spectrum_seconds)
                                       * (1 - pad), max(mults) * ev.lane_mhz(ts[0]) * (1 + pad)])
            ch = slice(int(a), int(b))
        else:
            ch = slice(0, self.nchan)
        return slice(r0, r1), ch

    def _rfi_on(self, line: RFILine, t_first: np.ndarray, n: int) -> np.ndarray:
        """Fraction of the ``n`` spectra from each ``t_first`` the line is on (16 samples)."""
        s = min(n, 16)
        offs = np.floor((np.arange(s) + 0.5) * (n / s)) * self.spectrum_seconds
        return line.on(t_first[:, None] + offs[None, :]).mean(1)

    def _fill(self, out: np.ndarray, rel: np.ndarray, circ: np.ndarray | None,
              t: np.ndarray, on: list[np.ndarray], dof: float,
              rngs: list[tuple[slice, np.random.Generator]]) -> None:
        """Write expected values (times noise of ``dof`` degrees of freedom for XX, YY) of
        every beam into ``out`` (rows, nbeam, nchan, 4); ``t`` gives the gain drift;
        ``rngs`` the generator of each block of rows."""
        nrow = out.shape[0]
        z = np.empty((nrow, self.nbeam, 4, self.nchan), np.float32) if self.noise else None
        if z is not None:
            for rows, rng in rngs:
                rng.standard_normal(out=z[rows].reshape(-1), dtype=np.float32)
        for b in range(self.nbeam):
            cx, cy, cxy = self._scales[b]
            gdx = self.gain_drift(t, b, 0).astype(np.float32)[:, None]
            gdy = self.gain_drift(t, b, 1).astype(np.float32)[:, None]
            gdxy = np.sqrt(gdx * gdy)
            xx = rel * cx
            xx *= gdx
            yy = rel * cy
            yy *= gdy
            xyr = rel * (cxy * np.float32(0.01))
            xyr *= gdxy
            for line, frac in zip(self.rfi, on, strict=True):
                self._add_rfi(line, frac, xx, yy, xyr, b)
            o = out[:, b]
            xyi = None
            if circ is not None:
                xyi = circ * cxy
                xyi *= gdxy
            if z is None:
                o[..., 0], o[..., 1], o[..., 2] = xx, yy, xyr
                o[..., 3] = 0.0 if xyi is None else xyi
                continue
            # noise: XX, YY chi-square; XY normal with variance XX YY / dof
            zb = z[:, b]
            sigma = xx * yy
            sigma *= np.float32(1.0 / dof)
            np.sqrt(sigma, out=sigma)
            for p, m in ((0, xx), (1, yy)):
                _chi2_scale(zb[:, p], m, dof, rngs)
            for p, m in ((2, xyr), (3, xyi)):
                zp = zb[:, p]
                zp *= sigma
                if m is not None:
                    zp += m
            o[...] = zb.transpose(0, 2, 1)

    def _add_rfi(self, line: RFILine, on: np.ndarray, xx: np.ndarray, yy: np.ndarray,
                 xyr: np.ndarray, b: int) -> None:
        c = (line.freq_mhz * 1e6 / CHAN_BW) - self.chan0
        lo = max(0, int(c - 4 * line.width_chan))
        hi = min(self.nchan, int(c + 4 * line.width_chan) + 2)
        if hi <= lo or not on.any():
            return
        idx = np.arange(lo, hi)
        prof = (np.exp(-0.5 * ((idx - c) / line.width_chan) ** 2) * line.amplitude
                * self.sky[idx] * self.navg).astype(np.float32)
        p = on.astype(np.float32)[:, None] * prof[None, :]
        gx, gy = self.gains[b, 0, lo:hi], self.gains[b, 1, lo:hi]
        cs, sn = math.cos(line.angle), math.sin(line.angle)
        xx[:, lo:hi] += p * (gx * cs * cs).astype(np.float32)
        yy[:, lo:hi] += p * (gy * sn * sn).astype(np.float32)
        xyr[:, lo:hi] += p * (np.sqrt(gx * gy) * cs * sn).astype(np.float32)

    # --- the time-domain path -------------------------------------------------------------

    @property
    def header(self) -> dict[str, Any]:
        """The ring header the recorder's capture writes for this sequence."""
        tps = ticks_per_spectrum(self.navg)
        return {"time_tag": self.start_tag, "seq0": self.start_tag // tps,
                "chan0": self.chan0, "cfreq0": self.chan0 * CHAN_BW,
                "bw": self.nchan * CHAN_BW, "navg": self.navg, "nbeam": self.nbeam,
                "nchan": self.nchan, "npol": self.npol, "pols": POLS, "complex": False,
                "nbit": 32}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.ntime_gulp, self.nbeam, self.nchan, self.npol)

    def times(self, i: int) -> np.ndarray:
        """Data times (s since the start) of the spectra of gulp ``i``, float64."""
        n = self.ntime_gulp
        return (i * n + np.arange(n)) * self.spectrum_seconds

    def source_power(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Source power per raw spectrum of gulp ``i`` before the bandpass, without RFI or
        noise: ``(total, circular)``, each (ntime, nchan) float32 (``circular`` is ``None``
        when no polarised event is active)."""
        rel, circ = self._relative(self.times(i), None, 1)
        sky = self.sky.astype(np.float32)
        return rel * sky, None if circ is None else circ * sky

    def gulp(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Gulp ``i`` (float32 ``shape``), written into ``out`` when given."""
        if out is None:
            out = np.empty(self.shape, np.float32)
        elif out.shape != self.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float32 of shape {self.shape}")
        t = self.times(i)
        rel, circ = self._relative(t, None, 1)
        on = [line.on(t) for line in self.rfi]
        self._fill(out, rel, circ, t, on, 2.0 * self.navg,
                   [(slice(None), np.random.default_rng([self.seed, i]))])
        return out

    def gulps(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Gulps ``start``, ``start + 1``, ... (``count`` of them, or forever), each a new
        array."""
        i = start
        while count is None or i < start + count:
            yield self.gulp(i)
            i += 1

    # --- the frame-level path -------------------------------------------------------------

    def frames(self, k0: int, count: int, nint: int, *, out: np.ndarray | None = None
               ) -> np.ndarray:
        """Frames ``k0 .. k0 + count - 1`` of ``nint`` spectra each, float32
        ``(count, nbeam, nchan, 4)``: what averaging the gulps' spectra ``k nint .. (k + 1)
        nint - 1`` gives, in expectation and radiometer statistics (``2 navg nint`` degrees
        of freedom), drawn directly. Frame ``k`` depends only on the seed, ``nint`` and
        ``k``."""
        if nint < 1 or count < 0 or k0 < 0:
            raise ValueError("need nint >= 1, count >= 0, k0 >= 0")
        shape = (count, self.nbeam, self.nchan, self.npol)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float32 of shape {shape}")
        if count:
            self._frames_at(np.arange(k0, k0 + count) * nint, nint, out)
        return out

    def partial_frame(self, first: int, n: int) -> np.ndarray:
        """One frame, the mean of the ``n`` spectra from spectrum ``first`` (a sequence's
        final partial window), float32 ``(nbeam, nchan, 4)``."""
        out = np.empty((1, self.nbeam, self.nchan, self.npol), np.float32)
        return self._frames_at(np.array([first]), n, out)[0]

    def _frames_at(self, first: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
        dt = self.spectrum_seconds
        t_first = first * dt
        t_mid = t_first + 0.5 * (n - 1) * dt
        rel, circ = self._relative(t_mid, t_first, n)
        on = [self._rfi_on(line, t_first, n) for line in self.rfi]
        # one generator per frame: a frame never depends on which others are made with it
        rngs = [(slice(j, j + 1), np.random.default_rng([self.seed, 0xF7A3, n, int(s)]))
                for j, s in enumerate(first)] if self.noise else []
        self._fill(out, rel, circ, t_mid, on, 2.0 * self.navg * n, rngs)
        return out

    # --- truth ----------------------------------------------------------------------------

    def utc(self, t: float) -> str:
        """ISO 8601 UTC of data time ``t`` (s since the stream's start)."""
        d = tag_to_datetime(self.start_tag + round(t * FS))
        return d.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def noise_sigma(self, nint: int, factor: int = 2) -> float:
        """Relative radiometer noise of XX in a frame of ``nint`` spectra averaged over
        ``factor`` channels."""
        return 1.0 / math.sqrt(self.navg * nint * factor)

    def truth(self, duration: float, nint: int | None = None) -> list[dict[str, Any]]:
        """One JSON-ready record per event with onset before ``duration`` s, sorted by onset.

        Keys: ``type`` (III, IIIb, II, IV, spike, impulse, rfi, background), ``id``,
        ``onset_utc``/``onset_s`` (onset at ``f_start_mhz``, the highest frequency it reaches
        inside the band), ``f_start_mhz``, ``f_end_mhz``, ``duration_s`` (until every
        element has fallen below 1 % of its peak; null for RFI lines), ``onset_curve`` (law
        and parameters of onset time against frequency), ``amplitude`` (the drawn peak
        excess over the sky for single spectra), ``peak_excess``, ``peak_db`` (``10 log10(1 +
        peak_excess)``), ``peak_sigma`` (over the radiometer noise) at the receiver's
        default resolution (one frame of ``nint`` spectra, default half a gulp, two
        channels), where it peaks (``peak_utc``/``peak_s``: the frame's start,
        ``peak_mhz``), and ``params`` (every parameter of the event). The records do not
        depend on ``duration`` beyond which records are included.
        """
        nint = nint or max(1, self.ntime_gulp // 2)
        f_lo, f_hi = self.band
        evs = (list(self._fixed) if self._fixed is not None else
               EventSource(self.seed, self.config, self.spectrum_seconds).take(duration))
        counts: dict[str, int] = {}
        recs: list[dict[str, Any]] = []
        sigma = self.noise_sigma(nint)
        for ev in evs:
            kind = ev.kind_name
            counts[kind] = counts.get(kind, 0) + 1
            geo = ev.geometry(f_lo, f_hi)
            if geo is None or geo["onset_s"] >= duration:
                continue
            peak, t_pk, f_pk = self._peak(ev, nint)
            rec: dict[str, Any] = {"type": kind, "id": f"{kind}-{counts[kind]}",
                                   "onset_utc": self.utc(geo["onset_s"])}
            rec.update(geo)
            rec.update({"amplitude": getattr(ev, "amplitude", None), "peak_excess": peak,
                        "peak_db": 10 * math.log10(1 + peak), "peak_sigma": peak / sigma,
                        "peak_utc": self.utc(t_pk), "peak_s": t_pk, "peak_mhz": f_pk,
                        "params": ev.params()})
            recs.append(rec)
        for i, line in enumerate(self.rfi):
            if f_lo <= line.freq_mhz <= f_hi:
                rec = {"type": "rfi", "id": f"rfi-{i + 1}", "onset_utc": self.utc(0.0)}
                rec.update(line.record())
                c = line.freq_mhz * 1e6 / CHAN_BW - self.chan0  # channel of the centre
                pair = 2 * math.floor(c / 2) + np.arange(2)
                peak = line.amplitude * float(np.exp(-0.5 * ((pair - c) / line.width_chan) ** 2)
                                              .mean())
                rec.update({"peak_excess": peak, "peak_db": 10 * math.log10(1 + peak),
                            "peak_sigma": peak / sigma, "peak_mhz": line.freq_mhz})
                recs.append(rec)
        cfg = self.config
        recs.append({"type": "background", "id": "background-1", "onset_utc": self.utc(0.0),
                     "onset_s": 0.0, "f_start_mhz": f_hi, "f_end_mhz": f_lo,
                     "duration_s": None, "peak_db": None, "activity": cfg.activity,
                     "episodes": self._episodes(duration),
                     "sky_drift": cfg.sky_drift, "gain_drift": cfg.gain_drift,
                     "gain_period_s": cfg.gain_period_s, "hf_junk": cfg.hf_junk,
                     "noise_sigma": sigma, "nint": nint, "navg": self.navg, "seed": self.seed})
        recs.sort(key=lambda r: (r["onset_s"], r["type"], r["id"]))
        return recs

    def _episodes(self, duration: float) -> list[list[float | None]]:
        """Active episodes ``[start, end]`` starting before ``duration`` (an end may lie
        beyond it; null: never ends)."""
        if self._fixed is not None:
            return []
        src = EventSource(self.seed, self.config, self.spectrum_seconds)
        src.episodes.active_at(duration)
        return [[s, e if math.isfinite(e) else None] for s, e, _ in src.episodes.on
                if s < duration]

    def _peak(self, ev: Event, nint: int) -> tuple[float, float, float]:
        """Largest mean excess over a frame of ``nint`` spectra (frames from the stream's
        start) and two channels: (excess, frame start s, MHz)."""
        dt = self.spectrum_seconds
        frame = nint * dt
        npair = self.nchan // 2
        fa, fb = self._f[0:2 * npair:2], self._f[1:2 * npair:2]
        if isinstance(ev, TypeII):
            lo, hi = ev.span(*self.band)
            k = np.arange(max(0, math.floor(lo / frame)), math.ceil(hi / frame) + 1)
            return ev.lane_peak(k * frame, dt, nint)
        track = ev.peak_track(0.5 * (fa + fb))
        if track is not None:
            kk = np.floor(track / frame)[None, :] + np.arange(-1, 3)[:, None]
            t_first: np.ndarray = np.maximum(kk, 0) * frame
        else:  # slow and broadband: frames around the peak, every fourth pair of channels
            lo, hi = ev.peak_window()
            k = np.arange(max(0, math.floor(lo / frame)), math.ceil(hi / frame) + 1)
            t_first = (k * frame)[:, None]
            fa, fb = fa[::4], fb[::4]
        v = 0.5 * (ev.frame_mean(t_first, dt, nint, fa[None, :])
                   + ev.frame_mean(t_first, dt, nint, fb[None, :]))
        v = np.broadcast_to(v, np.broadcast_shapes(v.shape, t_first.shape))
        r, c = np.unravel_index(int(np.argmax(v)), v.shape)
        t_pk = float(np.broadcast_to(t_first, v.shape)[r, c])
        return float(v[r, c]), t_pk, float(0.5 * (fa[c] + fb[c]))


def _chi2_scale(z: np.ndarray, mean: np.ndarray, dof: float,
                rngs: list[tuple[slice, np.random.Generator]]) -> None:
    """Turn standard normal deviates ``z`` into ``mean * chi2(dof) / dof`` in place
    (Wilson-Hilferty for ``dof >= 40``, exact gamma draws below)."""
    if dof >= 40:
        a, s = np.float32(1 - 2 / (9 * dof)), np.float32(math.sqrt(2 / (9 * dof)))
        w = z * s
        w += a
        np.multiply(w * w * w, mean, out=z)
    else:
        for rows, rng in rngs:
            g = rng.standard_gamma(dof / 2, size=z[rows].shape, dtype=np.float32)
            np.multiply(g * np.float32(2 / dof), mean[rows], out=z[rows])


def write_truth(path: str | os.PathLike[str], records: Sequence[dict[str, Any]]) -> None:
    """Write truth records as JSON lines (one event per line), atomically."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=False) + "\n")
    os.replace(tmp, path)

