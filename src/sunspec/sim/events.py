"""The simulator's events: solar bursts and interference, each a noise-free excess over the
quiet sky.

Every event gives its power as an *excess*: a multiple of the quiet-sky power of the channel
(so a value of 1 doubles the power there), for a single recorder spectrum
(:meth:`Event.excess`) and averaged over the ``n`` spectra of a frame
(:meth:`Event.frame_mean`), and describes itself as a truth record (:meth:`Event.record`).
All arrays broadcast: ``t`` and ``f`` may be ``(ntime, 1)`` and ``(1, nchan)``.

Physical models and their sources:

- :class:`TypeIII`: onset ``t(f)`` from the Alvarez & Haddock (1973, Solar Phys. 29, 197)
  drift law ``df/dt = -0.01 f**1.84`` MHz/s (about -3 to -15 MHz/s between 25 and 55 MHz);
  time profile a fast exponential rise and an exponential decay whose time scales as 1/f
  (Aubier & Boischot 1972, A&A 19, 343; Reid & Ratcliffe 2014, RAA 14, 773, sect. 3.3);
  a type IIIb variant whose emission is broken into narrowband striae along the same track
  (de la Noe & Boischot 1972, A&A 20, 55; Melnik et al. 2010, Solar Phys. 264, 103).
- :class:`TypeII`: a fundamental lane drifting as ``f0 exp(-drift (t - t0))`` with relative
  drift 1e-3 to 6e-3 /s, lasting 3 to 15 min, a harmonic at 1.9 to 2.0 times the fundamental
  (Nelson & Melrose 1985, in *Solar Radiophysics*, McLean & Labrum eds., ch. 13), lanes split
  by a relative bandwidth of 0.05 to 0.3 (Vrsnak et al. 2001, A&A 377, 321), patchy in
  time, optionally with herringbone bursts shooting up and down from the backbone (Cairns &
  Robinson 1987, Solar Phys. 111, 365).
- :class:`Spike`: decameter spikes, narrowband (0.05 to 0.3 MHz) and short (0.2 to 1 s)
  (Melnik et al. 2014, Solar Phys. 289, 1701).
- :class:`TypeIV`: a broadband continuum rising over minutes and decaying over tens of
  minutes to hours (Boischot 1957; McLean & Labrum 1985, ch. 15).
- :class:`Impulse`: broadband instrumental or lightning impulses one to three spectra long.
- :class:`RFILine`: a narrowband transmitter, steady, blinking or intermittent.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["Event", "Impulse", "RFILine", "Spike", "TypeII", "TypeIII", "TypeIV",
           "frame_mean_two_sided"]

#: the drift law's coefficient and exponent (Alvarez & Haddock 1973)
AH_A, AH_B = 0.01, 1.84
#: fraction of an element's peak below which it counts as ended (truth durations)
END_FRACTION = 0.01


def frame_mean_two_sided(t_first: Any, dt: float, n: int, onset: Any, rise: Any,
                         decay: Any) -> np.ndarray:
    """Mean over the samples ``t_first + j dt`` (``j < n``) of the profile
    ``exp((t - onset) / rise)`` before ``onset`` and ``exp(-(t - onset) / decay)`` after,
    summed exactly as two geometric series (arrays broadcast)."""
    t_first = np.asarray(t_first, np.float64)
    onset = np.asarray(onset, np.float64)
    rise = np.asarray(rise, np.float64)
    decay = np.asarray(decay, np.float64)
    m = np.clip(np.ceil((onset - t_first) / dt), 0, n)  # samples before the onset
    last_before = t_first + (m - 1) * dt
    rise_sum = (np.exp(np.minimum(last_before - onset, 0.0) / rise)
                * np.expm1(-m * dt / rise) / np.expm1(-dt / rise))
    first_after = t_first + m * dt
    decay_sum = (np.exp(-np.maximum(first_after - onset, 0.0) / decay)
                 * np.expm1(-(n - m) * dt / decay) / np.expm1(-dt / decay))
    return (rise_sum + decay_sum) / n


def _two_sided(t: Any, onset: Any, rise: Any, decay: Any) -> np.ndarray:
    x = np.asarray(t, np.float64) - onset
    return np.exp(np.minimum(x / rise, -x / decay))


def _logistic_above(f: Any, edge: float, width: float) -> np.ndarray:
    """1 well below ``edge``, 0 well above (a soft cut-off)."""
    return 1.0 / (1.0 + np.exp(np.clip((np.asarray(f) - edge) / width, -60, 60)))


class Event:
    """Base of the simulator's events (see the module docstring).

    ``t0`` is the event's reference time in data seconds since the stream's start;
    ``circular`` the fraction of its power that is circularly polarised (XY_imag).
    """

    kind: ClassVar[str] = "event"
    t0: float
    circular: float = 0.0

    def excess(self, t: Any, f: Any) -> np.ndarray:
        """Excess over the sky (multiples of the channel's sky power) at times ``t`` (s) and
        frequencies ``f`` (MHz) for single spectra."""
        raise NotImplementedError

    def frame_mean(self, t_first: Any, dt: float, n: int, f: Any) -> np.ndarray:
        """Mean excess over the ``n`` spectra ``t_first + j dt`` of frames (default: the
        mean of eight evenly spread samples, exact for slow events)."""
        s = min(n, 8)
        offs = (np.arange(s) + 0.5) * (n / s)
        offs = np.floor(offs) * dt
        t_first = np.asarray(t_first, np.float64)
        total = self.excess(t_first + offs[0], f)
        for o in offs[1:]:
            total = total + self.excess(t_first + o, f)
        return total / s

    def span(self, f_lo: float, f_hi: float) -> tuple[float, float]:
        """Data times (s) outside which the event adds nothing noticeable in the band."""
        raise NotImplementedError

    def geometry(self, f_lo: float, f_hi: float) -> dict[str, Any] | None:
        """Onset (s), frequencies and duration of the event inside the band ``f_lo..f_hi``
        MHz, or ``None`` when it does not reach the band."""
        raise NotImplementedError

    def peak_track(self, f: np.ndarray) -> np.ndarray | None:
        """Time (s) at which the excess peaks at each frequency, or ``None`` when the event
        is slow (its peak is then searched frame by frame)."""
        return None

    @property
    def kind_name(self) -> str:
        """The ``type`` of the event's truth record."""
        return self.kind

    def peak_window(self) -> tuple[float, float]:
        """Data times (s) that hold the largest frame-mean excess of a slow event."""
        return self.span(0.0, math.inf)

    def params(self) -> dict[str, Any]:
        """The event's parameters (its dataclass fields) for truth records."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class TypeIII(Event):
    """A type III burst (type IIIb when ``striae_mhz > 0``).

    Starts at ``f_start_mhz`` at ``t0`` and drifts down to ``f_end_mhz`` (0: below any
    band) on the Alvarez-Haddock law times ``drift_scale``. ``amplitude`` is the peak
    excess for single spectra at ``peak_mhz``; the spectrum is log-normal of width
    ``bandwidth`` (natural log). ``decay_s`` is the e-folding decay at 30 MHz (it scales as
    30 MHz / f), ``rise_s`` the e-folding rise. Type IIIb: narrow striae (Gaussian, sigma
    ``stria_width_mhz``) every ``striae_mhz`` from a random phase ``stria_phase``.
    """

    kind: ClassVar[str] = "III"
    t0: float
    f_start_mhz: float = 90.0
    peak_mhz: float = 40.0
    amplitude: float = 20.0
    drift_scale: float = 1.0
    decay_s: float = 1.5
    rise_s: float = 0.15
    circular: float = 0.3
    f_end_mhz: float = 0.0
    bandwidth: float = 0.45
    striae_mhz: float = 0.0
    stria_width_mhz: float = 0.04
    stria_phase: float = 0.0

    def onset(self, f_mhz: Any) -> Any:
        """Time (s) at which the burst reaches frequency ``f_mhz`` (later for lower f):
        ``t0 + (f**(1-b) - f_start**(1-b)) / ((b-1) a drift_scale)``, a = 0.01, b = 1.84."""
        f = np.minimum(f_mhz, self.f_start_mhz)
        e = AH_B - 1
        return self.t0 + (f ** -e - self.f_start_mhz ** -e) / (e * AH_A * self.drift_scale)

    def tau(self, f_mhz: Any) -> Any:
        """Decay time (s) at ``f_mhz``."""
        return self.decay_s * 30.0 / np.asarray(f_mhz)

    def spectrum(self, f: Any) -> np.ndarray:
        """Peak excess per frequency (the time profile peaks at 1)."""
        f = np.asarray(f, np.float64)
        s = self.amplitude * np.exp(-0.5 * (np.log(f / self.peak_mhz) / self.bandwidth) ** 2)
        s = s * _logistic_above(f, self.f_start_mhz, 0.5)
        if self.f_end_mhz > 0:
            s = s * _logistic_above(-f, -self.f_end_mhz, 1.0)
        if self.striae_mhz > 0:
            x = (f - self.stria_phase) / self.striae_mhz
            d = (x - np.round(x)) * self.striae_mhz
            s = s * np.exp(-0.5 * (d / self.stria_width_mhz) ** 2)
        return s

    def excess(self, t: Any, f: Any) -> np.ndarray:
        return self.spectrum(f) * _two_sided(t, self.onset(f), self.rise_s, self.tau(f))

    def frame_mean(self, t_first: Any, dt: float, n: int, f: Any) -> np.ndarray:
        return self.spectrum(f) * frame_mean_two_sided(t_first, dt, n, self.onset(f),
                                                       self.rise_s, self.tau(f))

    def span(self, f_lo: float, f_hi: float) -> tuple[float, float]:
        lo = float(self.onset(f_hi)) - 10 * self.rise_s
        return lo, float(self.onset(f_lo) + 10 * self.tau(f_lo))

    def peak_track(self, f: np.ndarray) -> np.ndarray:
        return np.asarray(self.onset(f), np.float64)

    def geometry(self, f_lo: float, f_hi: float) -> dict[str, Any] | None:
        top = min(self.f_start_mhz, f_hi)
        bottom = max(self.f_end_mhz, f_lo)
        if top <= bottom:
            return None
        end = float(self.onset(bottom) + self.tau(bottom) * math.log(1 / END_FRACTION))
        return {"onset_s": float(self.onset(top)), "f_start_mhz": top, "f_end_mhz": bottom,
                "duration_s": end - float(self.onset(top)),
                "onset_curve": {"law": "alvarez_haddock", "t_ref_s": self.t0,
                                "f_ref_mhz": self.f_start_mhz, "a": AH_A * self.drift_scale,
                                "b": AH_B}}

    @property
    def kind_name(self) -> str:
        return "IIIb" if self.striae_mhz > 0 else "III"


@dataclass(frozen=True)
class TypeII(Event):
    """A type II burst from ``t0`` for ``duration`` s.

    Fundamental lane ``f0_mhz * exp(-drift * (t - t0))`` of Gaussian relative width
    ``width``, split into two lanes ``f (1 +- split / 2)`` when ``split > 0``; a harmonic
    lane at ``harmonic_ratio`` times it, ``harmonic`` times as bright. ``amplitude`` is the
    peak excess at the lane centre for single spectra. Each lane is patchy: its brightness
    is multiplied by a log-normal factor (sigma ``patchiness``) drawn every ``patch_s``
    seconds from ``patch_seed`` and interpolated. ``herringbones`` (t, direction, amplitude)
    are fast drifting bursts starting on the fundamental backbone.
    """

    kind: ClassVar[str] = "II"
    t0: float
    duration: float = 240.0
    f0_mhz: float = 42.0
    drift: float = 0.003
    amplitude: float = 6.0
    harmonic: float = 0.7
    harmonic_ratio: float = 1.95
    width: float = 0.04
    split: float = 0.0
    circular: float = 0.05
    patchiness: float = 0.5
    patch_s: float = 2.0
    patch_seed: int = 0
    herringbones: tuple[tuple[float, int, float], ...] = field(default=())

    def lane_mhz(self, t: Any) -> Any:
        """Fundamental lane frequency (MHz) at data time ``t`` (the centre of a split pair)."""
        return self.f0_mhz * np.exp(-self.drift * (np.asarray(t, np.float64) - self.t0))

    def lanes(self) -> list[tuple[float, float, int]]:
        """(frequency multiplier, brightness, lane index) of each lane."""
        splits = (1 - self.split / 2, 1 + self.split / 2) if self.split > 0 else (1.0,)
        out = []
        for h, (mult, amp) in enumerate(((1.0, 1.0), (self.harmonic_ratio, self.harmonic))):
            for s, m in enumerate(splits):
                out.append((mult * m, amp, 2 * h + s))
        return out

    def envelope(self, t: Any) -> np.ndarray:
        """Rise, plateau and fall over ``duration`` (zero outside it, never negative)."""
        x = np.clip((np.asarray(t, np.float64) - self.t0) / self.duration, 0.0, 1.0)
        return np.sqrt(np.clip(np.sin(np.pi * x), 0.0, None))

    def patches(self, t: Any, lane: int) -> np.ndarray:
        """Patchy brightness factor of ``lane`` at ``t`` (mean one)."""
        n = int(self.duration / self.patch_s) + 2
        rng = np.random.default_rng([self.patch_seed, lane])
        knots = np.exp(self.patchiness * rng.standard_normal(n) - 0.5 * self.patchiness ** 2)
        x = (np.asarray(t, np.float64) - self.t0) / self.patch_s
        return np.interp(x, np.arange(n), knots)

    def excess(self, t: Any, f: Any) -> np.ndarray:
        t = np.asarray(t, np.float64)
        f = np.asarray(f, np.float64)
        env = self.envelope(t)
        fc = self.lane_mhz(t)
        out = np.zeros(np.broadcast_shapes(t.shape, f.shape))
        for mult, amp, lane in self.lanes():
            c = mult * fc
            x = (f - c) / (self.width * c)
            out += (self.amplitude * amp) * env * self.patches(t, lane) * np.exp(-0.5 * x * x)
        for th, direction, amp in self.herringbones:
            hb = Herringbone(th, float(self.lane_mhz(th)), direction, amp)
            out += hb.excess(t, f)
        return out

    def span(self, f_lo: float, f_hi: float) -> tuple[float, float]:
        return self.t0, self.t0 + self.duration

    def geometry(self, f_lo: float, f_hi: float) -> dict[str, Any] | None:
        t_end = self.t0 + self.duration
        inside = [(m * self.f0_mhz, m * float(self.lane_mhz(t_end))) for m, _, _ in self.lanes()]
        starts = [a for a, b in inside if f_lo <= a <= f_hi]
        if not starts:  # lanes that drift into the band from above, or never reach it
            starts = [f_hi for a, b in inside if a > f_hi and b < f_hi]
        if not starts:
            return None
        top = max(starts)
        t_on = self.t0
        if all(a > f_hi for a, _ in inside):
            t_on = self.t0 + math.log(max(a for a, _ in inside) / f_hi) / self.drift
        ends = [max(b, f_lo) for a, b in inside if b <= f_hi]
        bottom = min(ends) if ends else f_lo
        return {"onset_s": t_on, "f_start_mhz": top, "f_end_mhz": bottom,
                "duration_s": t_end - t_on,
                "onset_curve": {"law": "exponential_lane", "t_ref_s": self.t0,
                                "f_ref_mhz": self.f0_mhz, "drift_per_s": self.drift,
                                "harmonic_ratio": self.harmonic_ratio, "split": self.split}}

    def lane_peak(self, t_first: np.ndarray, dt: float, n: int) -> tuple[float, float, float]:
        """Largest frame-mean excess on a lane centre: (excess, frame start, MHz)."""
        best = (0.0, float(self.t0), float(self.f0_mhz))
        for mult, _amp, _lane in self.lanes():
            tm = t_first + 0.5 * n * dt
            fc = mult * self.lane_mhz(tm)
            v = self.frame_mean(t_first, dt, n, fc)
            k = int(np.argmax(v))
            if v[k] > best[0]:
                best = (float(v[k]), float(t_first[k]), float(fc[k]))
        return best


@dataclass(frozen=True)
class Herringbone:
    """A herringbone element of a type II: from the backbone at ``f_mhz`` at ``t0``, drifting
    up (``direction`` +1) or down (-1) at the type III rate over ~10 % of the frequency."""

    t0: float
    f_mhz: float
    direction: int
    amplitude: float

    def excess(self, t: Any, f: Any) -> np.ndarray:
        f = np.asarray(f, np.float64)
        rate = AH_A * self.f_mhz ** AH_B  # MHz/s at the backbone
        onset = self.t0 + self.direction * (self.f_mhz - f) / rate
        x = (f - self.f_mhz) * self.direction / (0.1 * self.f_mhz)
        spec = self.amplitude * np.where((x >= -0.02) & (x <= 1.0), np.exp(-2 * x), 0.0)
        return spec * _two_sided(t, onset, 0.05, 0.3)


@dataclass(frozen=True)
class Spike(Event):
    """A narrowband spike at ``f_mhz`` (Gaussian, sigma ``width_mhz``), rising in
    ``rise_s`` and decaying in ``decay_s`` from ``t0``, ``amplitude`` its peak excess."""

    kind: ClassVar[str] = "spike"
    t0: float
    f_mhz: float = 40.0
    amplitude: float = 2.0
    width_mhz: float = 0.05
    rise_s: float = 0.05
    decay_s: float = 0.3
    circular: float = 0.5

    def spectrum(self, f: Any) -> np.ndarray:
        return self.amplitude * np.exp(-0.5 * ((np.asarray(f) - self.f_mhz) / self.width_mhz) ** 2)

    def excess(self, t: Any, f: Any) -> np.ndarray:
        return self.spectrum(f) * _two_sided(t, self.t0, self.rise_s, self.decay_s)

    def frame_mean(self, t_first: Any, dt: float, n: int, f: Any) -> np.ndarray:
        return self.spectrum(f) * frame_mean_two_sided(t_first, dt, n, self.t0, self.rise_s,
                                                       self.decay_s)

    def span(self, f_lo: float, f_hi: float) -> tuple[float, float]:
        return self.t0 - 10 * self.rise_s, self.t0 + 10 * self.decay_s

    def peak_track(self, f: np.ndarray) -> np.ndarray:
        return np.full(np.shape(f), self.t0)

    def geometry(self, f_lo: float, f_hi: float) -> dict[str, Any] | None:
        if not f_lo <= self.f_mhz <= f_hi:
            return None
        return {"onset_s": self.t0, "f_start_mhz": min(f_hi, self.f_mhz + 2 * self.width_mhz),
                "f_end_mhz": max(f_lo, self.f_mhz - 2 * self.width_mhz),
                "duration_s": self.decay_s * math.log(1 / END_FRACTION),
                "onset_curve": {"law": "constant", "t_ref_s": self.t0, "f_ref_mhz": self.f_mhz}}


@dataclass(frozen=True)
class TypeIV(Event):
    """A broadband continuum: log-normal spectrum around ``peak_mhz`` (width ``bandwidth``),
    rising with e-folding ``rise_s`` to ``amplitude`` at ``t0``, decaying with ``decay_s``,
    modulated by slow pulsations (relative depth ``modulation``, period ``period_s``)."""

    kind: ClassVar[str] = "IV"
    t0: float
    amplitude: float = 1.0
    peak_mhz: float = 40.0
    bandwidth: float = 0.8
    rise_s: float = 300.0
    decay_s: float = 1800.0
    modulation: float = 0.2
    period_s: float = 90.0
    circular: float = 0.4

    def excess(self, t: Any, f: Any) -> np.ndarray:
        f = np.asarray(f, np.float64)
        spec = self.amplitude * np.exp(-0.5 * (np.log(f / self.peak_mhz) / self.bandwidth) ** 2)
        t = np.asarray(t, np.float64)
        mod = 1 + self.modulation * np.sin(2 * np.pi * (t - self.t0) / self.period_s)
        return spec * _two_sided(t, self.t0, self.rise_s, self.decay_s) * mod

    def span(self, f_lo: float, f_hi: float) -> tuple[float, float]:
        return self.t0 - 8 * self.rise_s, self.t0 + 8 * self.decay_s

    def peak_window(self) -> tuple[float, float]:
        return self.t0 - self.period_s, self.t0 + self.period_s

    def geometry(self, f_lo: float, f_hi: float) -> dict[str, Any] | None:
        start = self.t0 - self.rise_s * math.log(1 / END_FRACTION)
        return {"onset_s": start, "f_start_mhz": f_hi, "f_end_mhz": f_lo,
                "duration_s": self.t0 + self.decay_s * math.log(1 / END_FRACTION) - start,
                "onset_curve": {"law": "constant", "t_ref_s": start, "f_ref_mhz": f_hi}}


@dataclass(frozen=True)
class Impulse(Event):
    """A broadband impulse in ``nspec`` consecutive spectra from the first spectrum at or
    after ``t0``: excess ``amplitude * (f / 50 MHz) ** -1``."""

    kind: ClassVar[str] = "impulse"
    t0: float
    amplitude: float = 4.0
    nspec: int = 1
    spectrum_s: float = 24 * 8192 / 196e6

    def _rows(self) -> tuple[int, int]:
        j0 = math.ceil(self.t0 / self.spectrum_s - 1e-9)
        return j0, j0 + self.nspec

    def spectrum(self, f: Any) -> np.ndarray:
        return self.amplitude * (np.asarray(f, np.float64) / 50.0) ** -1.0

    def excess(self, t: Any, f: Any) -> np.ndarray:
        j = np.round(np.asarray(t, np.float64) / self.spectrum_s)
        j0, j1 = self._rows()
        return self.spectrum(f) * ((j >= j0) & (j < j1))

    def frame_mean(self, t_first: Any, dt: float, n: int, f: Any) -> np.ndarray:
        j = np.round(np.asarray(t_first, np.float64) / dt)
        j0, j1 = self._rows()
        overlap = np.clip(np.minimum(j + n, j1) - np.maximum(j, j0), 0, None)
        return self.spectrum(f) * (overlap / n)

    def span(self, f_lo: float, f_hi: float) -> tuple[float, float]:
        j0, j1 = self._rows()
        return (j0 - 1) * self.spectrum_s, (j1 + 1) * self.spectrum_s

    def peak_track(self, f: np.ndarray) -> np.ndarray:
        return np.full(np.shape(f), self._rows()[0] * self.spectrum_s)

    def geometry(self, f_lo: float, f_hi: float) -> dict[str, Any] | None:
        j0, j1 = self._rows()
        return {"onset_s": j0 * self.spectrum_s, "f_start_mhz": f_hi, "f_end_mhz": f_lo,
                "duration_s": (j1 - j0) * self.spectrum_s,
                "onset_curve": {"law": "constant", "t_ref_s": j0 * self.spectrum_s,
                                "f_ref_mhz": f_hi}}


@dataclass(frozen=True)
class RFILine:
    """A narrowband transmitter: ``amplitude`` x the sky at ``freq_mhz``, Gaussian of
    ``width_chan`` channels, linearly polarised at ``angle`` radians (0 = all in XX).

    ``mode``: ``"steady"`` (always on), ``"blink"`` (on for ``duty`` of every ``period_s``,
    from ``phase_s``) or ``"intermittent"`` (each ``period_s`` slot is on with probability
    ``duty``, from a hash of the slot and ``key``)."""

    freq_mhz: float
    amplitude: float = 10.0
    width_chan: float = 0.7
    duty: float = 1.0
    period_s: float = 10.0
    angle: float = 0.3
    mode: str = "blink"
    phase_s: float = 0.0
    key: int = 0

    def on(self, t: Any) -> np.ndarray:
        """1.0 where the transmitter is on at data times ``t``, else 0.0 (float32)."""
        t = np.asarray(t, np.float64)
        if self.mode == "steady" or self.duty >= 1.0:
            return np.ones(t.shape, np.float32)
        x = (t + self.phase_s) / self.period_s
        if self.mode == "intermittent":
            slot = np.floor(x)
            h = np.sin(slot * 12.9898 + self.key * 78.233) * 43758.5453
            return ((h - np.floor(h)) < self.duty).astype(np.float32)
        return ((x % 1.0) < self.duty).astype(np.float32)

    def record(self) -> dict[str, Any]:
        """The line's truth record (it lasts the whole stream: ``duration_s`` is null)."""
        half = self.width_chan * 2 * 196e6 / 8192 / 1e6
        return {"type": "rfi", "onset_s": 0.0, "f_start_mhz": self.freq_mhz + half,
                "f_end_mhz": self.freq_mhz - half, "duration_s": None,
                "freq_mhz": self.freq_mhz, "amplitude": self.amplitude, "mode": self.mode,
                "duty": self.duty if self.mode != "steady" else 1.0,
                "period_s": self.period_s, "phase_s": self.phase_s,
                "width_chan": self.width_chan, "angle": self.angle}
