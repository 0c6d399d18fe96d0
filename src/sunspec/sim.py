"""A synthetic OVRO-LWA power-beam recorder: gulps at the deployed shapes and clock.

:class:`Simulator` makes float32 gulps ``(ntime_gulp, nbeam, nchan, 4)`` (pols XX, YY,
XY_real, XY_imag) of what the recorder's ring holds: each value is the sum of ``navg`` raw
power spectra, in arbitrary units with the sky near 1e4 per raw spectrum at 50 MHz, so a
frame divided by ``1e4 * navg`` is of order one (as the field's receivers scale it).

The model, per channel frequency ``f`` and time ``t`` (seconds of data since the stream's
start):

- sky: galactic power law ``(f / 50 MHz) ** -2.55``, a weak quiet-Sun ``f ** 2`` term and a
  flat receiver term, times a per-pol bandpass (analog roll-off, ripple and per-subband
  digital gains of 192 channels);
- noise: XX and YY follow the chi-square law of a sum of ``navg`` exponential powers
  (``2 * navg`` degrees of freedom, by the Wilson-Hilferty cube of a normal deviate); XY_real
  and XY_imag are normal with variance ``navg * XX * YY / 2``;
- :class:`RFILine`: narrowband, linearly polarised, steady or blinking;
- impulsive broadband spikes lasting one to three spectra, at random times;
- :class:`TypeIII`: fast drift, onset ``t(f)`` from the Alvarez-Haddock rate
  ``df/dt = -0.01 f ** 1.84`` MHz/s (about ten seconds from 88 to 14 MHz), fast rise,
  exponential decay lasting longer at lower frequencies, partly circularly polarised
  (XY_imag);
- :class:`TypeII`: slow drift, a fundamental lane ``f0 * exp(-drift * (t - t0))`` and its
  harmonic at twice the frequency, patchy in time, weakly polarised.

Everything is deterministic: gulp ``i`` depends only on the seed and ``i`` (its noise is drawn
from a generator seeded with ``(seed, i)``), so a test can regenerate any gulp.

:class:`SimulatedStream` runs a simulator through the same :class:`sunspec.Averager` and
:class:`sunspec.Publisher` as the recorder, in a background thread, in real time by default.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._worker import Worker
from .clock import CHAN_BW, FS, ticks_per_spectrum, unix_to_tag
from .sender import Averager, Publisher

__all__ = ["RFILine", "SimulatedStream", "Simulator", "TypeII", "TypeIII", "random_bursts"]

log = logging.getLogger(__name__)

#: first recorder channel by default: the field's receivers assumed 600 (14.4-87.8 MHz)
DEFAULT_CHAN0 = 600
#: pol order of the recorder's ring
POLS = "XX,YY,CR,CI"
#: sky power per raw spectrum at 50 MHz
SKY_LEVEL = 1e4
_SUBBAND = 192  # channels per recorder pipeline (16 x 192 = 3072)


@dataclass(frozen=True)
class TypeIII:
    """A type III burst: starts at ``f_start_mhz`` at ``t0`` and drifts down the band.

    ``amplitude`` is the peak power relative to the sky at ``peak_mhz``; ``drift_scale``
    multiplies the Alvarez-Haddock drift rate; ``decay_s`` is the e-folding decay at 30 MHz
    (it scales as 30 MHz / f); ``circular`` is the fraction of circular polarisation.
    """

    t0: float
    f_start_mhz: float = 90.0
    peak_mhz: float = 40.0
    amplitude: float = 20.0
    drift_scale: float = 1.0
    decay_s: float = 1.5
    rise_s: float = 0.15
    circular: float = 0.3

    def onset(self, f_mhz: np.ndarray | float) -> np.ndarray | float:
        """Time (s) at which the burst reaches frequency ``f_mhz`` (later for lower f)."""
        f = np.minimum(f_mhz, self.f_start_mhz)
        return self.t0 + (f ** -0.84 - self.f_start_mhz ** -0.84) / (
            0.84 * 0.01 * self.drift_scale)

    def add_to(self, power: np.ndarray, t: np.ndarray, f_mhz: np.ndarray,
               sky: np.ndarray) -> np.ndarray:
        """Add total power (sky units x ``sky``) to ``power`` (ntime, nchan); returns it."""
        onset = self.onset(f_mhz).astype(np.float32)
        tau = (self.decay_s * 30.0 / f_mhz).astype(np.float32)
        # channels (a contiguous range: onset falls with f) the burst touches in this gulp
        live = np.flatnonzero((onset <= t[-1] + 6 * self.rise_s) & (onset + 8 * tau >= t[0]))
        if live.size == 0:
            return power
        ch = slice(live[0], live[-1] + 1)
        f = f_mhz[ch]
        dt = t[:, None] - onset[None, ch]
        expo = np.where(dt < 0, (dt * dt) * np.float32(-0.5 / self.rise_s ** 2),
                        dt / -tau[None, ch])
        spec = self.amplitude * np.exp(-0.5 * (np.log(f / self.peak_mhz) / 0.45) ** 2)
        spec /= 1.0 + np.exp((f - self.f_start_mhz) / 0.5)  # nothing above the start
        np.exp(expo, out=expo)
        expo *= (spec * sky[ch]).astype(np.float32)
        power[:, ch] += expo
        return power

    def span(self, f_lo_mhz: float) -> tuple[float, float]:
        """Data times (s) outside which the burst adds nothing noticeable above f_lo_mhz."""
        end = self.onset(f_lo_mhz) + 8 * self.decay_s * 30.0 / f_lo_mhz
        return self.t0 - 6 * self.rise_s, float(end)


@dataclass(frozen=True)
class TypeII:
    """A type II burst: a fundamental lane ``f0_mhz * exp(-drift * (t - t0))`` and its
    harmonic (``harmonic`` times as bright) at twice the frequency, for ``duration`` s.

    ``width`` is the lane's Gaussian width relative to its frequency.
    """

    t0: float
    duration: float = 240.0
    f0_mhz: float = 42.0
    drift: float = 0.003
    amplitude: float = 6.0
    harmonic: float = 0.7
    width: float = 0.04
    circular: float = 0.05
    phase: float = 0.0

    def lane_mhz(self, t: np.ndarray | float) -> np.ndarray | float:
        """Fundamental lane frequency (MHz) at data time ``t``."""
        return self.f0_mhz * np.exp(-self.drift * (np.asarray(t) - self.t0))

    def span(self) -> tuple[float, float]:
        return self.t0, self.t0 + self.duration

    def envelope(self, t: np.ndarray) -> np.ndarray:
        """Rise, plateau and fall over ``duration``, modulated by patchy fine structure."""
        x = np.clip((t - self.t0) / self.duration, 0.0, 1.0)
        env = np.sin(np.pi * x) ** 0.5
        patch = 1 + 0.5 * np.sin(2 * np.pi * t / 7.3 + self.phase) * np.sin(
            2 * np.pi * t / 2.1 + 2 * self.phase)
        return (env * patch).astype(np.float32)

    def add_to(self, power: np.ndarray, t: np.ndarray, f_mhz: np.ndarray,
               sky: np.ndarray) -> np.ndarray:
        env = self.envelope(t)
        for mult, amp in ((1, self.amplitude), (2, self.amplitude * self.harmonic)):
            fc = (mult * self.lane_mhz(t)).astype(np.float32)
            lo, hi = np.searchsorted(f_mhz, [fc.min() * (1 - 5 * self.width),
                                             fc.max() * (1 + 5 * self.width)])
            if hi <= lo:
                continue
            f = f_mhz[lo:hi]
            x = (f[None, :] - fc[:, None]) / (self.width * fc[:, None])
            power[:, lo:hi] += (np.exp(-0.5 * x * x) * (amp * env)[:, None]
                                * sky[lo:hi].astype(np.float32))
        return power


@dataclass(frozen=True)
class RFILine:
    """A narrowband transmitter: ``amplitude`` x the sky at ``freq_mhz``, Gaussian of
    ``width_chan`` channels, on for ``duty`` of every ``period_s``, linearly polarised at
    ``angle`` radians (0 = all in XX)."""

    freq_mhz: float
    amplitude: float = 10.0
    width_chan: float = 0.7
    duty: float = 1.0
    period_s: float = 10.0
    angle: float = 0.3

    def on(self, t: np.ndarray) -> np.ndarray:
        return ((t / self.period_s) % 1.0 < self.duty).astype(np.float32)


#: transmitters seen in the default scenario (HF citizens band, the 40.68 MHz ISM band,
#: a digital TV pilot, two intermittent ones)
DEFAULT_RFI = (
    RFILine(26.965, 8.0, duty=0.35, period_s=13.0, angle=0.2),
    RFILine(40.68, 25.0, width_chan=1.2, angle=0.8),
    RFILine(54.31, 4.0, angle=1.2),
    RFILine(62.1, 15.0, duty=0.1, period_s=4.3, angle=0.5),
    RFILine(73.0, 3.0, width_chan=2.0, duty=0.6, period_s=31.0, angle=1.4),
)


def random_bursts(seed: int, duration: float, *, type3_per_min: float = 2.0,
                  type2_per_hour: float = 4.0, first_type3: float = 3.0
                  ) -> list[TypeIII | TypeII]:
    """Bursts at random times over ``duration`` s (Poisson), deterministic in ``seed``.

    A type III comes at ``first_type3`` s (so a demo shows one at once) when
    ``type3_per_min > 0``.
    """
    rng = np.random.default_rng([seed, 0x5E5])
    events: list[TypeIII | TypeII] = []
    if type3_per_min > 0:
        t = first_type3
        while t < duration:
            events.append(TypeIII(
                t0=float(t), f_start_mhz=float(rng.uniform(60, 95)),
                peak_mhz=float(rng.uniform(25, 60)), amplitude=float(rng.lognormal(2.5, 0.8)),
                drift_scale=float(rng.uniform(0.6, 1.6)), decay_s=float(rng.uniform(0.8, 2.5)),
                circular=float(rng.uniform(0.1, 0.6))))
            t += rng.exponential(60.0 / type3_per_min)
    if type2_per_hour > 0:
        t = rng.exponential(3600.0 / type2_per_hour) if type3_per_min > 0 else 5.0
        while t < duration:
            events.append(TypeII(
                t0=float(t), duration=float(rng.uniform(120, 600)),
                f0_mhz=float(rng.uniform(30, 45)), drift=float(rng.uniform(0.001, 0.005)),
                amplitude=float(rng.lognormal(1.5, 0.5)), phase=float(rng.uniform(0, 6.3))))
            t += rng.exponential(3600.0 / type2_per_hour)
    return sorted(events, key=lambda e: e.t0)


class Simulator:
    """Deterministic synthetic recorder gulps (see the module docstring for the model).

    ``bursts`` are the solar bursts (default: :func:`random_bursts` over a day for ``seed``);
    ``rfi`` the transmitters (default :data:`DEFAULT_RFI`); ``spike_rate`` impulsive spikes
    per second; ``noise=False`` gives the expected values. ``start_tag`` is the sequence's
    ``time_tag`` (default: now, on a spectrum boundary).
    """

    npol = 4

    def __init__(self, *, nbeam: int = 1, nchan: int = 3072, ntime_gulp: int = 1024,
                 navg: int = 24, chan0: int = DEFAULT_CHAN0, seed: int = 0,
                 bursts: Sequence[TypeIII | TypeII] | None = None,
                 rfi: Sequence[RFILine] = DEFAULT_RFI, spike_rate: float = 0.3,
                 noise: bool = True, start_tag: int | None = None):
        if min(nbeam, nchan, ntime_gulp, navg) < 1 or chan0 < 0:
            raise ValueError("nbeam, nchan, ntime_gulp, navg must be >= 1 and chan0 >= 0")
        self.nbeam, self.nchan, self.ntime_gulp, self.navg = nbeam, nchan, ntime_gulp, navg
        self.chan0 = chan0
        self.seed = seed
        self.bursts = list(random_bursts(seed, 86400.0) if bursts is None else bursts)
        self.rfi = list(rfi)
        self.spike_rate = spike_rate
        self.noise = noise
        tps = ticks_per_spectrum(navg)
        if start_tag is None:
            start_tag = unix_to_tag(time.time()) // tps * tps
        self.start_tag = int(start_tag)
        self.spectrum_seconds = tps / FS
        self.gulp_seconds = ntime_gulp * self.spectrum_seconds
        self.freqs_mhz = ((chan0 + np.arange(nchan)) * CHAN_BW / 1e6).astype(np.float32)
        f = self.freqs_mhz.astype(np.float64)
        self.sky = (SKY_LEVEL * ((f / 50.0) ** -2.55 + 0.03 * (f / 50.0) ** 2 + 0.15))
        self.gains = self._bandpass(f)  # (nbeam, 2, nchan) for XX, YY

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
        noise: ``(total, circular)``, each (ntime, nchan) float32; ``total`` is sky plus
        spikes plus bursts, ``circular`` the bursts' circularly polarised part (``None``
        when no burst is active)."""
        t = self.times(i)
        t32 = t.astype(np.float32)
        f = self.freqs_mhz
        power = np.empty((len(t), self.nchan), np.float32)
        power[:] = self.sky.astype(np.float32)
        circ = None
        for ev in self.bursts:
            lo, hi = ev.span(float(f[0])) if isinstance(ev, TypeIII) else ev.span()
            if not (hi > t[0] and lo < t[-1]):
                continue
            if not ev.circular:
                ev.add_to(power, t32, f, self.sky)
                continue
            part = ev.add_to(np.zeros_like(power), t32, f, self.sky)
            power += part
            if circ is None:
                circ = np.zeros_like(power)
            part *= np.float32(ev.circular)
            circ += part
        rng = np.random.default_rng([self.seed, 0x5B1C, i])
        for _ in range(rng.poisson(self.spike_rate * self.gulp_seconds)):
            row = int(rng.integers(len(t)))
            rows = slice(row, row + int(rng.integers(1, 4)))
            power[rows] += (rng.lognormal(1.5, 0.7) * self.sky * (f / 50.0) ** -1.0).astype(
                np.float32)
        return power, circ

    def gulp(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Gulp ``i`` (float32 ``shape``), written into ``out`` when given."""
        if out is None:
            out = np.empty(self.shape, np.float32)
        elif out.shape != self.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float32 of shape {self.shape}")
        t = self.times(i).astype(np.float32)
        power, circ = self.source_power(i)
        rfi = [(line, line.on(t)) for line in self.rfi]
        rng = np.random.default_rng([self.seed, i])
        if self.noise:
            rng.standard_normal(out=out.reshape(-1), dtype=np.float32)
        k = 2.0 * self.navg
        a, s = np.float32(1 - 2 / (9 * k)), np.float32(math.sqrt(2 / (9 * k)))
        n = np.float32(self.navg)
        for b in range(self.nbeam):
            gx = self.gains[b, 0].astype(np.float32)
            gy = self.gains[b, 1].astype(np.float32)
            gxy = np.sqrt(gx * gy)
            xx = power * (0.5 * n * gx)
            yy = power * (0.5 * n * gy)
            xyr = power * (0.005 * n * gxy)  # 1 % instrumental leakage into XY
            xyi = None if circ is None else circ * (0.5 * n * gxy)
            for line, on in rfi:
                self._add_rfi(line, on, xx, yy, xyr, gx, gy, gxy)
            o = out[:, b]
            if self.noise:
                # chi-square with k dof / k by Wilson-Hilferty: (a + s z)^3
                for p, m in ((0, xx), (1, yy)):
                    z = o[..., p]
                    w = z * s
                    w += a
                    np.multiply(w * w * w, m, out=z)
                sigma = np.sqrt(xx * yy / (2 * n))
                o[..., 2] *= sigma
                o[..., 2] += xyr
                o[..., 3] *= sigma
                if xyi is not None:
                    o[..., 3] += xyi
            else:
                o[..., 0], o[..., 1], o[..., 2] = xx, yy, xyr
                o[..., 3] = 0.0 if xyi is None else xyi
        return out

    def _add_rfi(self, line: RFILine, on: np.ndarray, xx: np.ndarray, yy: np.ndarray,
                 xyr: np.ndarray, gx: np.ndarray, gy: np.ndarray, gxy: np.ndarray) -> None:
        c = (line.freq_mhz * 1e6 / CHAN_BW) - self.chan0
        lo = max(0, int(c - 4 * line.width_chan))
        hi = min(self.nchan, int(c + 4 * line.width_chan) + 2)
        if hi <= lo or not on.any():
            return
        idx = np.arange(lo, hi)
        prof = np.exp(-0.5 * ((idx - c) / line.width_chan) ** 2) * line.amplitude * self.sky[idx]
        p = (on[:, None] * prof[None, :].astype(np.float32)) * np.float32(self.navg)
        cs, sn = math.cos(line.angle), math.sin(line.angle)
        xx[:, lo:hi] += p * (gx[lo:hi] * cs * cs)
        yy[:, lo:hi] += p * (gy[lo:hi] * sn * sn)
        xyr[:, lo:hi] += p * (gxy[lo:hi] * cs * sn)

    def gulps(self, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
        """Gulps ``start``, ``start + 1``, ... (``count`` of them, or forever), each a new
        array."""
        i = start
        while count is None or i < start + count:
            yield self.gulp(i)
            i += 1


class SimulatedStream(Worker):
    """A :class:`Simulator` streamed through :class:`sunspec.Averager` and
    :class:`sunspec.Publisher` from a background thread.

    ``speed`` is data seconds per wall second (1 = real time, as the recorder: a gulp is
    published when its data would be complete); ``speed=None`` runs as fast as possible.
    ``duration`` (data seconds, None = until :meth:`stop`) ends the sequence, whose final
    partial window is handled by the Averager. ``nint`` or ``interval`` set the frame length
    (default: half a gulp, as deployed). ``wait_subscribers`` makes the thread wait up to
    ``wait_timeout`` s for that many subscriptions before the first gulp. Other keyword
    arguments go to :class:`Simulator`. The socket is bound by :meth:`start`, so port 0 works
    and :attr:`endpoint` is then the real one.
    """

    def __init__(self, addr: str = "127.0.0.1", port: int = 9798, *,
                 endpoint: str | None = None, speed: float | None = 1.0,
                 duration: float | None = None, nint: int | None = None,
                 interval: float | None = None, sndhwm: int = 100, beam: int | None = None,
                 wait_subscribers: int = 0, wait_timeout: float = 10.0, **sim_kwargs: Any):
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed}")
        self.sim = Simulator(**sim_kwargs)
        self.averager = Averager(nint, interval=interval)
        self._bind = endpoint or f"tcp://{addr}:{port}"
        self.speed = speed
        self.duration = duration
        self.sndhwm = sndhwm
        self.beam = beam
        self.wait_subscribers = wait_subscribers
        self.wait_timeout = wait_timeout
        self.publisher: Publisher | None = None
        self.gulps_done = 0
        self.late_s = 0.0  # worst lag behind the real-time schedule
        super().__init__()
        self._error: BaseException | None = None

    @property
    def endpoint(self) -> str | None:
        """The bound endpoint (after :meth:`start`)."""
        return self.publisher.endpoint if self.publisher is not None else None

    def _thread_name(self) -> str:
        return f"sunspec-sim {self.publisher.endpoint}"

    def _prepare(self) -> tuple[()]:
        """Bind the publisher (raises if binding fails; a stream runs once)."""
        if self.publisher is not None:
            raise RuntimeError("already started: a SimulatedStream runs once")
        self.publisher = Publisher(endpoint=self._bind, sndhwm=self.sndhwm, beam=self.beam)
        log.info("simulating on %s (speed %s, seed %d)", self.publisher.endpoint,
                 self.speed or "max", self.sim.seed)
        return ()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end (``duration`` reached or stopped); True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        return True

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the streaming thread, if any."""
        return self._error

    def stats(self) -> dict[str, Any]:
        """Publisher and averager counters, gulps made and the worst real-time lag."""
        st: dict[str, Any] = {"gulps": self.gulps_done, "late_s": self.late_s,
                              "running": self.running}
        if self.publisher is not None:
            st.update(self.publisher.status())
        st["averager"] = self.averager.status()
        return st

    def _run(self) -> None:
        sim, avg, pub = self.sim, self.averager, self.publisher
        assert pub is not None
        try:
            if self.wait_subscribers:
                pub.wait_for_subscribers(self.wait_subscribers, self.wait_timeout)
            avg.begin_sequence(sim.header, sim.ntime_gulp)
            ngulps = None if self.duration is None else math.ceil(
                self.duration / sim.gulp_seconds - 1e-9)
            t_wall0 = time.monotonic()
            buf = np.empty(sim.shape, np.float32)
            i = 0
            while (ngulps is None or i < ngulps) and not self._stop.is_set():
                sim.gulp(i, out=buf)
                if self.speed is not None:
                    due = t_wall0 + (i + 1) * sim.gulp_seconds / self.speed
                    wait = due - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                    self.late_s = max(self.late_s, -wait)
                for frame in avg.add(buf):
                    pub.send(frame)
                i += 1
                self.gulps_done = i
            final = avg.end_sequence()
            if final is not None:
                pub.send(final)
        except BaseException as exc:  # reported through .error; the thread must end cleanly
            self._error = exc
            log.exception("simulated stream failed")
        finally:
            pub.close()

