"""Synthetic dynamic spectra with injected bursts of known truth (tests and benchmarks).

Rows are what a sunspec ring holds (linear power, one reduced product): a power-law sky
``(f / 50 MHz)^-2.55`` (the galactic background, e.g. Cane 1979, MNRAS 189, 465) times a
bandpass with ripple and a slow gain drift, with radiometer noise: a chi-square of
``2 navg nint factor`` degrees of freedom per channel (Wilson & Hilferty 1931 cube of a
normal deviate), relative to the expected value. Added on top:

- type III bursts: onset ``t(f)`` by the Alvarez & Haddock (1973) drift
  ``df/dt = -0.01 s f^1.84`` MHz/s, a 0.15 s Gaussian rise and an exponential decay of
  ``decay_s x 30 MHz / f``; peak brightness (excess over the sky) from a steep power law of
  index ``-1.7`` (Saint-Hilaire, Vilmer & Kerdraon 2013, ApJ 762, 60);
- type II bursts: a fundamental lane ``f0 exp(-r (t - t0))`` drifting -0.05..-0.5 MHz/s at
  30-45 MHz (Mann, Classen & Aurass 1995), Gaussian in frequency (3 % wide), patchy, with its
  harmonic at twice the frequency (Nelson & Melrose 1985);
- broadband spikes (one row, no drift) and RFI lines (narrow, steady or intermittent).

:func:`truth` records have the shape of ``sunspec.sim`` truth records: ``type``,
``onset_utc`` (at ``f_start_mhz``), ``f_start_mhz``, ``f_end_mhz``, ``duration_s``,
``peak_db`` and ``onset`` (the law of the onset curve).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..clock import FS, channel_freqs_hz, datetime_to_tag
from .events import iso_utc
from .search import ah_delay_s

__all__ = ["RFI", "Injection", "Scenario", "ovro_freqs_mhz", "random_scenario"]


def ovro_freqs_mhz(nchan: int = 1536, chan0: int = 600, factor: int = 2) -> np.ndarray:
    """Channel centres (MHz) of the OVRO-LWA rows: ``factor`` recorder channels averaged."""
    return channel_freqs_hz(chan0, nchan * factor, factor) / 1e6


@dataclass(frozen=True)
class Injection:
    """One burst: ``kind`` 'III', 'II' or 'spike' starting at ``t0`` s at ``f_start``."""

    kind: str
    t0: float
    f_start: float
    f_end: float
    peak: float  # peak excess over the sky (ratio)
    rate: float = 1.0  # III: drift scale; II: relative drift 1/s
    decay_s: float = 1.5  # III: decay at 30 MHz
    duration: float = 0.0  # II: seconds
    harmonic: float = 0.0  # II: harmonic / fundamental brightness
    phase: float = 0.0

    @property
    def peak_db(self) -> float:
        return 10 * math.log10(1 + self.peak)

    def span(self) -> tuple[float, float]:
        if self.kind == "III":
            end = float(ah_delay_s(self.f_end, self.f_start, self.rate))
            return self.t0 - 0.6, self.t0 + end + 8 * self.decay_s * 30 / self.f_end
        if self.kind == "II":
            return self.t0, self.t0 + self.duration
        return self.t0 - 1, self.t0 + 1

    def excess(self, t: np.ndarray, f: np.ndarray) -> np.ndarray:
        """Excess over the sky (ratio) at times ``t`` (n,) and frequencies ``f`` (m,)."""
        tt, ff = t[:, None], f[None, :]
        if self.kind == "III":
            onset = self.t0 + np.asarray(ah_delay_s(np.minimum(f, self.f_start),
                                                    self.f_start, self.rate))[None, :]
            tau = self.decay_s * 30.0 / ff
            dt = tt - onset
            prof = np.where(dt < 0, np.exp(-0.5 * (dt / 0.15) ** 2), np.exp(-dt / tau))
            mid = math.sqrt(self.f_start * self.f_end)
            half = max(math.log(self.f_start / self.f_end) / 2, 0.05)
            spec = np.exp(-0.5 * (np.log(ff / mid) / (0.6 * half)) ** 4)
            return self.peak * prof * spec
        if self.kind == "II":
            x = np.clip((tt - self.t0) / self.duration, 0, 1)
            env = np.sin(np.pi * x) ** 0.5 * (1 + 0.4 * np.sin(2 * np.pi * tt / 9.1 + self.phase))
            lane = self.f_start * np.exp(-self.rate * (tt - self.t0))
            out = np.exp(-0.5 * ((ff - lane) / (0.03 * lane)) ** 2)
            if self.harmonic:
                out = out + self.harmonic * np.exp(-0.5 * ((ff - 2 * lane) / (0.03 * 2 * lane))
                                                   ** 2)
            return self.peak * env / 1.4 * out
        # spike: all channels, gently sloped, one instant
        return self.peak * (ff / 50.0) ** -0.5 * (np.abs(tt - self.t0) < 1e-9)

    def truth(self, start_tag: int) -> dict[str, Any]:
        if self.kind == "III":
            onset = {"law": "alvarez-haddock", "drift_scale": self.rate}
            duration = self.span()[1] - self.t0
        elif self.kind == "II":
            onset = {"law": "exponential", "rate_per_s": self.rate, "harmonic": self.harmonic}
            duration = self.duration
        else:
            onset = {"law": "none"}
            duration = 0.0
        return {"type": self.kind, "onset_utc": iso_utc(start_tag + round(self.t0 * FS)),
                "f_start_mhz": self.f_start, "f_end_mhz": self.f_end,
                "duration_s": duration, "peak_db": self.peak_db, "onset": onset}


@dataclass(frozen=True)
class RFI:
    """A transmitter: ``peak`` x the sky at ``f_mhz``, ``width_chan`` wide, on for ``duty``
    of every ``period_s``."""

    f_mhz: float
    peak: float
    width_chan: float = 0.7
    duty: float = 1.0
    period_s: float = 10.0


@dataclass
class Scenario:
    """A stream: geometry, noise and what is injected; :meth:`chunks` makes its rows."""

    freqs_mhz: np.ndarray = field(default_factory=ovro_freqs_mhz)
    dt_s: float = 0.5
    dof: int = 2 * 24 * 512 * 2
    injections: list[Injection] = field(default_factory=list)
    rfi: list[RFI] = field(default_factory=list)
    seed: int = 0
    start_tag: int = datetime_to_tag(__import__("datetime").datetime(2024, 6, 1, 18, 0, 0))

    def sky(self) -> np.ndarray:
        f = self.freqs_mhz
        bandpass = np.exp(-0.5 * ((f - 50) / 40) ** 4) * (1 + 0.05 * np.sin(f / 1.3))
        return ((f / 50.0) ** -2.55 + 0.3) * bandpass

    def chunks(self, duration_s: float, rows: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(data float32 (n, nchan), end_tag int64 (n,)) chunks covering ``duration_s``."""
        rng = np.random.default_rng(self.seed)
        f = self.freqs_mhz
        sky = self.sky().astype(np.float32)
        step = round(self.dt_s * FS)
        total = int(duration_s / self.dt_s)
        k = self.dof
        c1, c2 = 1 - 2 / (9 * k), math.sqrt(2 / (9 * k))
        chan = np.arange(len(f))
        for i0 in range(0, total, rows):
            n = min(rows, total - i0)
            t = (i0 + np.arange(n) + 0.5) * self.dt_s  # window centres
            excess = np.zeros((n, len(f)), np.float64)
            for inj in self.injections:
                a, b = inj.span()
                if b < t[0] - self.dt_s or a > t[-1] + self.dt_s:
                    continue
                if inj.kind == "spike":
                    j = int(inj.t0 / self.dt_s) - i0
                    if 0 <= j < n:
                        excess[j] += inj.peak * (f / 50.0) ** -0.5
                    continue
                # average over the row's window: four samples
                for s in (-0.375, -0.125, 0.125, 0.375):
                    excess += inj.excess(t + s * self.dt_s, f) / 4
            for line in self.rfi:
                on = ((t / line.period_s) % 1.0) < line.duty
                prof = line.peak * np.exp(-0.5 * ((f - line.f_mhz) / (line.width_chan *
                                                                        (f[1] - f[0]))) ** 2)
                excess += on[:, None] * prof[None, :]
            gain = 1 + 0.05 * np.sin(2 * np.pi * t / 3600.0)
            z = rng.standard_normal((n, len(f)), dtype=np.float32)
            noise = (c1 + c2 * z) ** 3
            data = (sky[None, :] * (1 + excess) * gain[:, None] * noise).astype(np.float32)
            tags = self.start_tag + (i0 + 1 + np.arange(n, dtype=np.int64)) * step
            yield data, tags
        del chan

    def truth(self) -> list[dict[str, Any]]:
        """Truth records of the injected bursts (not of spikes), by onset."""
        return [i.truth(self.start_tag) for i in sorted(self.injections, key=lambda i: i.t0)
                if i.kind in ("III", "II")]


def random_scenario(duration_s: float, *, seed: int, type3_per_hour: float = 60.0,
                    type2_per_hour: float = 2.0, spikes_per_hour: float = 60.0,
                    rfi: bool = True, min_peak: float = 0.05, max_peak: float = 30.0,
                    **kw: Any) -> Scenario:
    """Bursts, spikes and transmitters at random (Poisson times), deterministic in seed.

    Type III peak excess ratios follow ``dN/dS ~ S^-1.7`` between ``min_peak`` and
    ``max_peak``; bursts of one type do not overlap.
    """
    rng = np.random.default_rng([seed, 15])
    inj: list[Injection] = []

    def times(rate: float, gap: float) -> list[float]:
        out: list[float] = []
        t = gap
        while rate > 0:
            t += gap + rng.exponential(3600.0 / rate)
            if t >= duration_s - gap:
                return out
            out.append(float(t))
        return out

    a = 1.7
    for t in times(type3_per_hour, 20.0):
        u = rng.uniform()
        s = (min_peak ** (1 - a) + u * (max_peak ** (1 - a) - min_peak ** (1 - a))) ** (1 / (1 - a))
        f_start = float(rng.uniform(45, 88))
        inj.append(Injection("III", t, f_start, float(rng.uniform(15, min(35, f_start / 1.6))),
                             float(s), rate=float(rng.uniform(0.5, 2.0)),
                             decay_s=float(rng.uniform(0.8, 2.5))))
    for t in times(type2_per_hour, 600.0):
        f0 = float(rng.uniform(30, 45))
        drift = float(np.exp(rng.uniform(np.log(0.05), np.log(0.5))))  # MHz/s at f0
        dur = float(rng.uniform(120, 400))
        r = drift / f0
        dur = min(dur, math.log(f0 / 16.0) / r)  # until the lane leaves the band
        inj.append(Injection("II", t, 2 * f0 if 2 * f0 < 85 else f0,
                             f0 * math.exp(-r * dur), float(rng.uniform(0.3, 3.0)), rate=r,
                             duration=dur, harmonic=float(rng.uniform(0.5, 1.0)),
                             phase=float(rng.uniform(0, 6))))
    for t in times(spikes_per_hour, 1.0):
        inj.append(Injection("spike", t, 88, 14, float(10 ** rng.uniform(-1.5, 0.7))))
    lines = [RFI(26.965, 8.0, duty=0.35, period_s=13.0), RFI(40.68, 25.0, width_chan=1.2),
             RFI(54.31, 4.0), RFI(62.1, 15.0, duty=0.1, period_s=4.3),
             RFI(73.0, 3.0, width_chan=2.0, duty=0.6, period_s=31.0),
             RFI(33.3, 1.0, width_chan=6.0, duty=0.05, period_s=47.0)] if rfi else []
    return Scenario(injections=inj, rfi=lines, seed=seed, **kw)
