"""Random events of a simulated day, drawn lazily in time order from one independent random
stream per event kind, so that the events of a seed do not depend on how long a run is.

Type III groups, type IIIb and spike clusters happen only inside active *episodes*
(exponential lengths, mean ``episode_s``; quiet gaps of mean ``episode_s (1 - duty) /
duty``), shared by all kinds and drawn from their own stream; type II and type IV bursts
and impulses are Poisson in time. Peak brightness follows a truncated power law (see
:func:`power_law`). Interference lines are drawn once per seed (:func:`rfi_lines`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator

import numpy as np

from .config import SimConfig
from .events import Event, Impulse, RFILine, Spike, TypeII, TypeIII, TypeIV

__all__ = ["DEFAULT_RFI", "Episodes", "EventSource", "power_law", "rfi_lines"]

#: random stream of each kind (``np.random.default_rng([seed, STREAM[kind]])``)
STREAM = {"episodes": 0xE915, "III": 0x3333, "II": 0x2222, "IV": 0x4444, "spike": 0x5B1C,
          "impulse": 0x1A9, "rfi": 0xAF1}

#: fixed transmitters (the 40.68 MHz ISM band, a digital TV pilot, a few intermittent ones,
#: an FM broadcast carrier at the band's top)
DEFAULT_RFI = (
    RFILine(26.965, 8.0, duty=0.35, period_s=13.0, angle=0.2),
    RFILine(40.68, 25.0, width_chan=1.2, angle=0.8, mode="steady"),
    RFILine(54.31, 4.0, angle=1.2, mode="steady"),
    RFILine(62.1, 15.0, duty=0.1, period_s=4.3, angle=0.5),
    RFILine(73.0, 3.0, width_chan=2.0, duty=0.6, period_s=31.0, angle=1.4,
            mode="intermittent", key=73),
    RFILine(87.7, 40.0, width_chan=3.0, angle=0.1, mode="steady"),
)

#: shortwave broadcast, citizens' and amateur bands below 30 MHz (MHz)
_HF_BANDS = ((13.57, 13.87), (15.1, 15.8), (17.48, 17.9), (18.9, 19.02), (21.45, 21.85),
             (25.67, 26.1), (26.965, 27.405), (28.0, 29.7))


def power_law(rng: np.random.Generator, index: float, floor: float, top: float,
              size: int | None = None) -> np.ndarray | float:
    """Draws from ``dN/dS ~ S**-index`` on ``[floor, top]`` (inverse of its CDF)."""
    e = 1.0 - index
    u = rng.random(size)
    return (floor ** e + u * (top ** e - floor ** e)) ** (1.0 / e)


def _brightness(rng: np.random.Generator, cfg: SimConfig) -> float:
    """One burst's peak brightness: the power law of ``cfg`` above its brightness floor."""
    return float(power_law(rng, cfg.brightness_index, cfg.get("brightness_floor"),
                           cfg.brightness_max))


def _arrivals(rng: np.random.Generator, rate: float) -> Iterator[float]:
    """Times of a Poisson process of ``rate`` per second from 0 (none if ``rate`` <= 0);
    each is drawn only when asked for, so draws between them keep their order."""
    t = 0.0
    while rate > 0:
        t += float(rng.exponential(1 / rate))
        yield t


class Episodes:
    """Active episodes in data time, drawn lazily; :meth:`to_time` maps *active time*
    (seconds counted inside episodes only) to data time, so a Poisson process in active
    time is one that pauses in the quiet hours."""

    def __init__(self, seed: int, duty: float, mean_on_s: float):
        self._rng = np.random.default_rng([seed, STREAM["episodes"]])
        self.duty = duty
        self.mean_on = mean_on_s
        self.mean_off = mean_on_s * (1 - duty) / duty
        self.on: list[tuple[float, float, float]] = []  # (start, end, active time at start)
        self._t = 0.0 if self._rng.random() < duty else float(
            self._rng.exponential(self.mean_off))
        self._active = 0.0

    def _extend(self) -> None:
        length = float(self._rng.exponential(self.mean_on)) if self.duty < 1 else math.inf
        self.on.append((self._t, self._t + length, self._active))
        self._active += length
        self._t += length + float(self._rng.exponential(self.mean_off))

    def to_time(self, active_s: float) -> float:
        """Data time at which ``active_s`` seconds of active time have passed."""
        while not self.on or self._active <= active_s:
            self._extend()
        for start, _end, a0 in reversed(self.on):
            if a0 <= active_s:
                return start + (active_s - a0)
        return self.on[0][0]

    def active_at(self, t: float) -> bool:
        """Whether data time ``t`` is inside an episode."""
        while not self.on or self._t <= t:
            self._extend()
        return any(s <= t < e for s, e, _ in self.on)


def rfi_lines(seed: int, config: SimConfig) -> list[RFILine]:
    """The fixed lines plus ``rfi_hf_lines`` below 30 MHz and ``rfi_lines`` above, for
    ``seed``: steady, blinking or intermittent carriers."""
    rng = np.random.default_rng([seed, STREAM["rfi"]])
    lines = list(DEFAULT_RFI)
    for n, hf in ((config.rfi_hf_lines, True), (config.rfi_lines, False)):
        for i in range(n):
            if hf:
                lo, hi = (_HF_BANDS[int(rng.integers(len(_HF_BANDS)))]
                          if rng.random() < 0.8 else (14.4, 30.0))
                amp = float(rng.lognormal(math.log(6.0), 1.0))
            else:
                lo, hi = 30.0, 87.0
                amp = float(rng.lognormal(math.log(2.0), 1.0))
            mode = str(rng.choice(["steady", "intermittent", "blink"], p=[0.5, 0.3, 0.2]))
            period = float(rng.uniform(5, 120) if mode == "intermittent" else rng.uniform(1, 30))
            lines.append(RFILine(
                float(rng.uniform(lo, hi)), amp, width_chan=float(rng.uniform(0.5, 1.5)),
                duty=float(rng.uniform(0.2, 0.9)) if mode != "steady" else 1.0,
                period_s=period, angle=float(rng.uniform(0, np.pi / 2)), mode=mode,
                phase_s=float(rng.uniform(0, period)), key=1000 * hf + i))
    return lines


def _type3(rng: np.random.Generator, t: float, cfg: SimConfig) -> TypeIII:
    f_start = float(np.exp(rng.uniform(math.log(35), math.log(250))))
    striated = rng.random() < cfg.type3b_fraction
    stops = rng.random() < cfg.type3_stop_fraction
    spacing = float(rng.uniform(0.3, 1.0))
    return TypeIII(
        t0=t, f_start_mhz=f_start, peak_mhz=float(rng.uniform(20, 70)),
        amplitude=_brightness(rng, cfg),
        drift_scale=float(np.clip(rng.lognormal(0, 0.3), 0.4, 2.5)),
        decay_s=float(rng.uniform(0.8, 2.5)), rise_s=float(rng.uniform(0.1, 0.4)),
        circular=float(rng.uniform(0.1, 0.6)),
        f_end_mhz=float(rng.uniform(20, max(21.0, min(f_start, 85.0) - 5))) if stops else 0.0,
        bandwidth=float(rng.uniform(0.35, 0.6)),
        striae_mhz=spacing if striated else 0.0,
        stria_width_mhz=float(rng.uniform(0.03, 0.08)),
        stria_phase=float(rng.uniform(0, spacing)))


def _type3_groups(seed: int, cfg: SimConfig, ep: Episodes) -> Iterator[tuple[float, list[Event]]]:
    rng = np.random.default_rng([seed, STREAM["III"]])
    if cfg.get("opening_s") > 0:
        t = cfg.get("opening_s")
        yield t, [TypeIII(t0=t, f_start_mhz=85.0, peak_mhz=45.0, amplitude=30.0)]
    for active in _arrivals(rng, cfg.get("type3_groups_per_hour") / 3600):
        t = ep.to_time(active)
        members: list[Event] = []
        tm = t
        for _ in range(1 + int(rng.poisson(cfg.get("type3_per_group") - 1))):
            members.append(_type3(rng, tm, cfg))
            tm += float(rng.exponential(cfg.type3_spacing_s))
        yield t, members


def _type2s(seed: int, cfg: SimConfig) -> Iterator[tuple[float, list[Event]]]:
    rng = np.random.default_rng([seed, STREAM["II"]])
    for t in _arrivals(rng, cfg.get("type2_per_day") / 86400):
        dur = float(rng.uniform(180, 900))
        amp = _brightness(rng, cfg)
        split = float(rng.uniform(0.05, 0.3)) if rng.random() < cfg.type2_split_fraction else 0.0
        hb: list[tuple[float, int, float]] = []
        if rng.random() < cfg.herringbone_fraction:
            for _ in range(int(rng.poisson(dur / 10))):
                hb.append((float(t + rng.uniform(0, dur)), int(rng.choice([-1, 1])),
                           float(amp * rng.uniform(0.5, 2.0))))
        yield t, [TypeII(
            t0=t, duration=dur, f0_mhz=float(rng.uniform(25, 60)),
            drift=float(rng.uniform(1e-3, 6e-3)), amplitude=amp,
            harmonic=float(rng.uniform(0.4, 1.2)), harmonic_ratio=float(rng.uniform(1.9, 2.0)),
            width=float(rng.uniform(0.02, 0.05)), split=split,
            circular=float(rng.uniform(0.0, 0.15)), patchiness=float(rng.uniform(0.3, 0.8)),
            patch_s=float(rng.uniform(1.0, 5.0)), patch_seed=int(rng.integers(2 ** 31)),
            herringbones=tuple(sorted(hb)))]


def _type4s(seed: int, cfg: SimConfig) -> Iterator[tuple[float, list[Event]]]:
    rng = np.random.default_rng([seed, STREAM["IV"]])
    for t in _arrivals(rng, cfg.get("type4_per_day") / 86400):
        rise = float(rng.uniform(120, 600))
        yield t - 8 * rise, [TypeIV(
            t0=t, amplitude=_brightness(rng, cfg),
            peak_mhz=float(rng.uniform(25, 60)), bandwidth=float(rng.uniform(0.5, 1.0)),
            rise_s=rise, decay_s=float(rng.uniform(900, 5400)),
            modulation=float(rng.uniform(0, 0.3)), period_s=float(rng.uniform(30, 300)),
            circular=float(rng.uniform(0.2, 0.6)))]


def _spike_clusters(seed: int, cfg: SimConfig, ep: Episodes
                    ) -> Iterator[tuple[float, list[Event]]]:
    rng = np.random.default_rng([seed, STREAM["spike"]])
    for active in _arrivals(rng, cfg.get("spike_clusters_per_hour") / 3600):
        t = ep.to_time(active)
        fc = float(rng.uniform(20, 80))
        n = max(1, int(rng.poisson(cfg.spikes_per_cluster)))
        times = np.sort(t + rng.uniform(0, 30, n))
        yield t, [Spike(
            t0=float(ts), f_mhz=float(fc + rng.uniform(-5, 5)),
            amplitude=_brightness(rng, cfg),
            width_mhz=float(rng.uniform(0.03, 0.15)), rise_s=float(rng.uniform(0.02, 0.1)),
            decay_s=float(rng.uniform(0.2, 1.0)), circular=float(rng.uniform(0.2, 0.9)))
            for ts in times]


def _impulses(seed: int, cfg: SimConfig, spectrum_s: float
              ) -> Iterator[tuple[float, list[Event]]]:
    rng = np.random.default_rng([seed, STREAM["impulse"]])
    for t in _arrivals(rng, cfg.impulse_per_s):
        yield t, [Impulse(t0=t, amplitude=float(rng.lognormal(1.5, 0.7)),
                          nspec=int(rng.integers(1, 4)), spectrum_s=spectrum_s)]


class EventSource:
    """The random events of ``seed`` under ``config``, drawn lazily and in order of their
    groups' start times (no event of a group starts more than a few seconds before the
    group). ``spectrum_s`` is the length of one recorder spectrum (impulses fill whole
    spectra)."""

    def __init__(self, seed: int, config: SimConfig, spectrum_s: float):
        ep = Episodes(seed, config.get("duty"), config.get("episode_s"))
        self.episodes = ep
        self._gens = [_type3_groups(seed, config, ep), _type2s(seed, config),
                      _type4s(seed, config), _spike_clusters(seed, config, ep),
                      _impulses(seed, config, spectrum_s)]
        self._heap: list[tuple[float, int, list[Event]]] = []
        for k in range(len(self._gens)):
            self._push(k)
        self.horizon = -math.inf

    def _push(self, k: int) -> None:
        nxt = next(self._gens[k], None)
        if nxt is not None:
            heapq.heappush(self._heap, (nxt[0], k, nxt[1]))

    def take(self, t: float) -> list[Event]:
        """The events of groups starting at data time <= ``t`` not taken before."""
        out: list[Event] = []
        while self._heap and self._heap[0][0] <= t:
            _, k, evs = heapq.heappop(self._heap)
            out.extend(evs)
            self._push(k)
        self.horizon = max(self.horizon, t)
        return out
