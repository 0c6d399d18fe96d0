"""The simulator as a yardstick: finite output after every event kind, the frame-level path
against the gulp path, ground truth through the CLI into a receiver, brightness and rate
statistics, truth independent of the duration asked for."""

from __future__ import annotations

import datetime
import json
import math
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from sunspec import Receiver, Simulator
from sunspec.cli import _start_tag, sim_main
from sunspec.sim import ACTIVITY, EventSource, Impulse, SimConfig, Spike, TypeII, TypeIII, TypeIV

TAG0 = 343_597_383_680_000_000 // (24 * 8192) * (24 * 8192)
STILL = SimConfig(hf_junk=0.0, gain_drift=0.0, sky_drift=0.0, impulse_per_s=0.0)


def reference_frames(sim: Simulator, ngulps: int, nint: int) -> np.ndarray:
    allspec = np.concatenate([sim.gulp(i) for i in range(ngulps)]).astype(np.float64)
    n = len(allspec) // nint
    return allspec[:n * nint].reshape(n, nint, *allspec.shape[1:]).mean(1)


@pytest.mark.parametrize("event", [
    TypeII(t0=0.0, duration=1.5, f0_mhz=35.0, amplitude=8.0),
    TypeIII(t0=0.0, f_start_mhz=80.0, decay_s=0.05, rise_s=0.02, f_end_mhz=60.0),
    TypeIII(t0=0.0, striae_mhz=0.5, decay_s=0.05, rise_s=0.02),
    Spike(t0=0.2, f_mhz=30.0, decay_s=0.05),
    TypeIV(t0=0.2, rise_s=0.05, decay_s=0.1),
    Impulse(t0=0.3, nspec=3),
], ids=lambda e: type(e).__name__)
def test_no_non_finite_value_during_or_after_any_event_kind(event):
    kw = dict(nchan=3072, ntime_gulp=256, seed=2, start_tag=TAG0, bursts=[event])
    sim = Simulator(**kw)
    for i in range(12):  # ~3 s: each event has ended by then
        assert np.isfinite(sim.gulp(i)).all(), i
    assert np.isfinite(sim.frames(0, 40, 64)).all()
    assert np.isfinite(Simulator(navg=1, **kw).frames(0, 200, 1)).all()  # exact gamma draws
    assert (Simulator(navg=1, **kw).gulp(0)[..., :2] >= 0).all()


def test_frame_level_path_agrees_with_the_gulp_path_in_mean_and_variance():
    kw = dict(nchan=256, ntime_gulp=128, seed=4, start_tag=TAG0, chan0=1200, config=STILL,
              rfi=[], bursts=[])
    nint, ngulps = 32, 96
    slow = reference_frames(Simulator(**kw), ngulps, nint)  # 384 frames from spectra
    fast = Simulator(**kw).frames(0, len(slow), nint).astype(np.float64)
    for p in range(4):
        a, b = slow[:, 0, :, p], fast[:, 0, :, p]
        scale = np.sqrt(slow[:, 0, :, 0].mean(0) * slow[:, 0, :, 1].mean(0))
        se = np.sqrt((a.var(0) + b.var(0)) / len(a)) / scale
        assert np.all(np.abs(a.mean(0) - b.mean(0)) / scale < 5 * se.mean())
        ratio = b.var(0).mean() / a.var(0).mean()
        assert ratio == pytest.approx(1, abs=0.03), p
    m = Simulator(noise=False, **kw).frames(0, 1, nint)[0, 0, :, 0].astype(np.float64)
    dof = 2 * 24 * nint  # the radiometer equation for a frame of nint spectra of navg
    assert (fast[:, 0, :, 0].var(0) / m ** 2).mean() == pytest.approx(2 / dof, rel=0.03)
    # with a burst, noise-free: identical frame means (summed exactly, not sampled)
    kw.update(bursts=[TypeIII(t0=0.5, f_start_mhz=45.0, peak_mhz=35.0, amplitude=20)],
              noise=False)
    slow = reference_frames(Simulator(**kw), 24, nint)
    fast = Simulator(**kw).frames(0, len(slow), nint)
    np.testing.assert_allclose(fast, slow, rtol=2e-4, atol=1e-3 * np.abs(slow).max())


def read_truth(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


REQUIRED = {"type", "onset_utc", "f_start_mhz", "f_end_mhz", "duration_s", "peak_db"}


def test_truth_for_a_seed_does_not_depend_on_the_duration(tmp_path):
    a, b = tmp_path / "hour.jsonl", tmp_path / "day.jsonl"
    common = ["--truth-only", "--seed", "1", "--activity", "active", "--log-level", "WARNING",
              "--start", "2011-06-07T06:24:00", "--type2-per-day", "5"]
    assert sim_main([*common, "--truth", str(a), "--duration", "3600"]) == 0
    assert sim_main([*common, "--truth", str(b), "--duration", "86400"]) == 0
    hour, day = read_truth(a), read_truth(b)
    assert all(set(r) >= REQUIRED for r in hour)
    first = [r for r in day if r["onset_s"] < 3600 and r["type"] != "background"]
    assert [r for r in hour if r["type"] != "background"] == first
    kinds = {r["type"] for r in day}
    assert {"III", "IIIb", "II", "spike", "impulse", "rfi"} <= kinds
    assert len([r for r in hour if r["type"] == "rfi"]) >= 30  # dozens of lines
    assert all(r["duty"] <= 1 and r["period_s"] > 0 for r in hour if r["type"] == "rfi")


def test_brightness_follows_the_configured_power_law():
    for index in (1.7, 2.3):
        cfg = SimConfig(activity="storm", brightness_index=index, brightness_floor=0.05)
        amps = np.array([ev.amplitude for ev in EventSource(7, cfg, 1e-3).take(30 * 3600)
                         if isinstance(ev, TypeIII)])
        n = len(amps)
        assert n > 2000
        # maximum-likelihood index (the 1000x cap is far out: its bias is < 0.01)
        est = 1 + n / np.log(amps / 0.05).sum()
        assert est == pytest.approx(index, abs=4 * (index - 1) / math.sqrt(n))
        edges = 0.05 * np.logspace(0, 3, 10)
        counts = np.histogram(amps, edges)[0]
        e = 1 - index
        expected = n * np.diff((1 - (edges / 0.05) ** e) / (1 - (1000 / 0.05) ** e))
        keep = expected > 5
        chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
        assert chi2 < 27.9  # 99.9 % point of chi-square with 9 degrees of freedom
    assert (amps > 3.3).mean() < 0.05  # faint events dominate (was 95 % above 3.3)


@pytest.mark.parametrize("level", ["quiet", "active", "storm"])
def test_rates_per_hour_match_the_activity_level(level):
    hours = {"quiet": 3000, "active": 500, "storm": 100}[level]
    end = hours * 3600.0
    cfg = SimConfig(activity=level, type2_per_day=0.0, type4_per_day=0.0, impulse_per_s=0.0,
                    spike_clusters_per_hour=0.0)
    src = EventSource(11, cfg, 1e-3)
    evs = [ev for ev in src.take(end) if ev.t0 < end]
    assert all(isinstance(ev, TypeIII) for ev in evs)
    on = [(s, min(e, end)) for s, e, _ in src.episodes.on if s < end]
    active_h = sum(e - s for s, e in on) / 3600
    # quiet hours: every group starts inside an episode; between them there is nothing
    assert sum(any(s <= ev.t0 < e + 60 for s, e in on) for ev in evs) == len(evs)
    # given the active time, groups are Poisson and sizes 1 + Poisson(m - 1): compound
    # Poisson error of the count
    lam = ACTIVITY[level]["type3_groups_per_hour"] * active_h
    m = ACTIVITY[level]["type3_per_group"]
    assert abs(len(evs) - lam * m) < 4 * math.sqrt(lam * (m - 1 + m * m))
    # and the active fraction is the level's duty cycle (many episodes)
    n_ep = len(on)
    duty = ACTIVITY[level]["duty"]
    assert active_h / hours == pytest.approx(duty, abs=4 * duty / math.sqrt(n_ep))
    per_hour = len(evs) / hours
    mean = cfg.mean_rate_per_hour("III") + cfg.mean_rate_per_hour("IIIb")
    assert per_hour == pytest.approx(mean, rel=8 / math.sqrt(n_ep))
    # type II: Poisson in time
    cfg2 = SimConfig(activity=level, type3_groups_per_hour=0.0, impulse_per_s=0.0,
                     spike_clusters_per_hour=0.0, type4_per_day=0.0)
    days = {"quiet": 20000, "active": 1000, "storm": 200}[level]
    n2 = sum(isinstance(ev, TypeII) and ev.t0 < days * 86400.0
             for ev in EventSource(3, cfg2, 1e-3).take(days * 86400.0))
    exp2 = ACTIVITY[level]["type2_per_day"] * days
    assert abs(n2 - exp2) < 4 * math.sqrt(exp2)


def event_of(sim: Simulator, rec: dict):
    """The simulator's event that ``rec`` describes (by its parameters)."""
    return next(e for e in sim.bursts if json.loads(json.dumps(e.params())) == rec["params"])


def pairs_of(sim: Simulator, n: int, nint: int = 128) -> np.ndarray:
    """Noise-free I of the first ``n`` frames, averaged over pairs of channels."""
    i = sim.frames(0, n, nint)[:, 0, :, :2].astype(np.float64).mean(-1)
    return i.reshape(n, -1, 2).mean(2)


def test_every_significant_truth_event_shows_where_its_record_says_in_a_receiver(tmp_path):
    """300 s of a busy sky through sunspec-sim --truth into a Receiver (I, pairs of
    channels): every event at >= 10 sigma shows at least half its recorded excess at its
    recorded peak (within a frame); the noise-free frames of each event alone put its
    recorded peak where the record says."""
    path = tmp_path / "truth.jsonl"
    nint, duration = 128, 300.0
    args = ["--frame-level", "--fast", "--duration", str(duration), "--port", "0",
            "--nint", str(nint), "--seed", "5", "--start", "2024-05-14T17:00:00",
            "--activity", "storm", "--type3-groups-per-hour", "120", "--type2-per-day", "3000",
            "--type4-per-day", "2000", "--brightness-floor", "0.3",
            "--spike-clusters-per-hour", "40", "--impulse-per-s", "0.1",
            "--hf-junk", "0", "--gain-drift", "0", "--sky-drift", "0",
            "--wait-subscribers", "1", "--truth", str(path), "--status-interval", "0",
            "--log-level", "WARNING"]
    proc = subprocess.Popen([sys.executable, "-c", "from sunspec.cli import sim_main; "
                             "raise SystemExit(sim_main())", *args[:-2], "--log-level", "INFO"],
                            stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        for line in proc.stderr:  # bounded: the process ends, closing the pipe
            m = re.search(r"publishing on (tcp://\S+)", line)
            if m:
                endpoint = m.group(1)
                break
        assert endpoint
        config = SimConfig(activity="storm", type3_groups_per_hour=120, type2_per_day=3000,
                           type4_per_day=2000, brightness_floor=0.3,
                           spike_clusters_per_hour=40, impulse_per_s=0.1, hf_junk=0,
                           gain_drift=0, sky_drift=0)
        sim = Simulator(seed=5, config=config, start_tag=_start_tag(
            datetime.datetime(2024, 5, 14, 17, tzinfo=datetime.timezone.utc), 24))
        nframes = math.ceil(duration / sim.gulp_seconds) * sim.ntime_gulp // nint
        with Receiver(endpoint=endpoint, buffer_length=nframes + 10, product="I") as rx:
            assert proc.wait(120) == 0
            deadline = time.monotonic() + 20
            while rx.get_buffer_status()["frames_received"] < nframes and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            rows = rx.get_latest(nframes)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert len(rows) == nframes and rows.time_tags[0] == sim.start_tag + nint * 24 * 8192
    sim.events_between(0, duration + 60)
    truth = read_truth(path)
    # the expected background: the same sky and lines, no events, no noise
    bg_sim = Simulator(seed=5, start_tag=sim.start_tag, config=sim.config, bursts=[],
                       noise=False)
    bg = bg_sim.frames(0, nframes, nint)[:, 0, :, :2].astype(np.float64).mean(-1)
    bg = bg.reshape(nframes, -1, 2).mean(2)
    sky = Simulator(seed=5, start_tag=sim.start_tag, config=sim.config, bursts=[], rfi=[],
                    noise=False).frames(0, 1, nint)[0, 0, :, :2].astype(np.float64).mean(-1)
    sky = sky.reshape(-1, 2).mean(1)
    rel = (rows.data - bg) / sky  # excess over the sky (lines subtracted, as in the truth)
    sim.events_between(0, duration + 60)
    everything = pairs_of(Simulator(seed=5, start_tag=sim.start_tag, config=sim.config,
                                    bursts=sim.bursts, noise=False), 400)
    frame_s = nint * sim.spectrum_seconds
    pair_f = sim.freqs_mhz.astype(np.float64).reshape(-1, 2).mean(1)
    sigma = sim.noise_sigma(nint)
    checked: dict[str, int] = {}
    for r in truth:
        if r["type"] == "background" or r.get("peak_sigma", 0) < 10:
            continue
        if r["type"] == "rfi":  # against everything but this line, noise-free, 400 frames
            c = int(np.argmin(abs(pair_f - r["peak_mhz"])))
            line = next(li for li in sim.rfi if li.freq_mhz == r["freq_mhz"])
            alone = pairs_of(Simulator(seed=5, start_tag=sim.start_tag, config=STILL,
                                       bursts=[], rfi=[line], noise=False), 400)[:, c]
            without = everything[:, c] - (alone - sky[c])
            excess = (rows.data[:400, c] - without) / sky[c]
            local = 4 * sigma * everything[:, c] / sky[c]
            on = excess > 0.5 * r["peak_excess"] - local
            clear = local < 0.2 * r["peak_excess"]  # frames where on and off differ clearly
            if r["mode"] == "steady":
                assert on.all(), r
            elif r["mode"] == "blink" and 10 * frame_s < r["period_s"] < 15 and clear.sum() > 200:
                assert on[clear].mean() == pytest.approx(r["duty"], abs=0.3), r
            checked["rfi"] = checked.get("rfi", 0) + 1
            continue
        k = round(r["peak_s"] / frame_s)
        if k >= nframes - 1:  # peaks after the window (type II, IV): its largest excess inside
            if r["type"] not in ("II", "IV") or checked.get(r["type"], 0) >= 1:
                continue
            ev = event_of(sim, r)
            alone = Simulator(seed=5, start_tag=sim.start_tag, config=STILL, bursts=[ev],
                              rfi=[], noise=False).frames(0, nframes, nint)[:, 0, :, :2]
            alone = alone.astype(np.float64).mean(-1).reshape(nframes, -1, 2).mean(2) / sky - 1
            kk, cc = np.unravel_index(int(np.argmax(alone)), alone.shape)
            if alone[kk, cc] < 10 * sigma:
                continue
            assert rel[kk, cc] > 0.5 * alone[kk, cc] - 4 * sigma, r["id"]
            assert r["onset_s"] - frame_s <= kk * frame_s, r["id"]
            checked[r["type"]] = checked.get(r["type"], 0) + 1
            continue
        c = int(np.argmin(abs(pair_f - r["peak_mhz"])))
        seen = rel[max(0, k - 1):k + 2, c].max()
        assert seen > 0.5 * r["peak_excess"] - 4 * sigma, r["id"]
        checked[r["type"]] = checked.get(r["type"], 0) + 1
    assert {"III", "IIIb", "II", "IV", "spike", "impulse", "rfi"} <= set(checked), checked
    # geometry, noise-free, each event alone: the recorded peak is in the recorded frame
    # and channel pair, and nothing shows before the onset (beyond its rise) or after the end
    done: dict[str, int] = {}
    for r in truth:  # up to three of each kind
        if r["type"] in ("background", "rfi") or r["peak_sigma"] < 10 or \
                r["peak_s"] > duration or r["onset_s"] < 0 or done.get(r["type"], 0) >= 3:
            continue
        done[r["type"]] = done.get(r["type"], 0) + 1
        ev = event_of(sim, r)
        one = Simulator(seed=5, start_tag=sim.start_tag, config=STILL, bursts=[ev], rfi=[],
                        noise=False)
        quiet = Simulator(seed=5, start_tag=sim.start_tag, config=STILL, bursts=[], rfi=[],
                          noise=False).frames(0, 1, nint)[0, 0, :, 0].astype(np.float64)
        k0 = max(0, int((r["onset_s"] - 30) / frame_s))
        k1 = int((r["onset_s"] + min(r["duration_s"], 600) + 30) / frame_s)
        fr = one.frames(k0, k1 - k0, nint)[:, 0, :, 0] / quiet - 1
        pairs = fr.reshape(len(fr), -1, 2).mean(2)
        k, c = np.unravel_index(int(np.argmax(pairs)), pairs.shape)
        assert abs((k + k0) * frame_s - r["peak_s"]) <= frame_s + 1e-6, r["id"]
        assert pairs[k, c] == pytest.approx(r["peak_excess"], rel=0.05), r["id"]
        t_first = (np.arange(k0, k1)) * frame_s
        lit = pairs.max(1) > 0.01 * r["peak_excess"]
        rise = r["params"].get("rise_s", 0.0) * math.log(100)
        assert t_first[lit].min() >= r["onset_s"] - rise - frame_s - 1e-6, r["id"]
        if r["duration_s"] < 600:
            assert t_first[lit].max() <= r["onset_s"] + r["duration_s"] + frame_s, r["id"]
    assert {"III", "IIIb", "II", "spike", "impulse"} <= set(done), done
