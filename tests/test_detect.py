"""Burst detector: injected bursts of known truth through the real Detector, a real
RingBuffer followed by DetectorWorker, a real SUB socket on 127.0.0.1, real log files, and
sunspec-detect in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from streams import wait_until

from sunspec import kernels
from sunspec.clock import FS
from sunspec.detect import Detector, DetectorConfig, DetectorWorker
from sunspec.detect.inject import RFI, Injection, Scenario, ovro_freqs_mhz
from sunspec.detect.search import ah_drift_mhz_s
from sunspec.ring import RingBuffer
from sunspec.source import wait_for_ring


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text.rstrip("Z")).replace(
        tzinfo=dt.timezone.utc).timestamp()


def run(sc: Scenario, seconds: float, unit: str = "linear", freqs="scenario", rows: int = 4,
        **kw):
    det = Detector(len(sc.freqs_mhz), sc.dt_s, unit=unit,
                   freqs_mhz=sc.freqs_mhz if freqs == "scenario" else freqs, **kw)
    recs = []
    for data, tags in sc.chunks(seconds, rows=rows):
        if unit == "dB":
            data = (10 * np.log10(data)).astype(np.float32)
        recs += det.process(data, tags)
    recs += det.flush()
    return det, recs


def finals(recs):
    return [r for r in recs if r["final"]]


def onset_s(sc: Scenario, inj: Injection) -> float:
    return sc.start_tag / FS + inj.t0


# --- the search on injected truth -------------------------------------------------------------
def test_type3_bursts_are_found_once_each_with_their_times_band_and_drift():
    bursts = [Injection("III", 90.0, 80.0, 20.0, 0.2, rate=1.0),   # 0.8 dB
              Injection("III", 160.0, 60.0, 25.0, 3.0, rate=1.5)]  # 6 dB
    sc = Scenario(injections=bursts, seed=3)
    _, recs = run(sc, 220)
    events = finals(recs)
    assert [e["type"] for e in events] == ["III", "III"], events
    for e, b in zip(events, bursts, strict=True):
        assert abs(utc(e["start_utc"]) - onset_s(sc, b)) <= 3.0
        assert b.f_start / 1.3 <= e["f_high_mhz"] <= b.f_start * 1.1
        assert e["f_low_mhz"] <= 35
        ref = e["drift_ref_mhz"]
        expected = ah_drift_mhz_s(ref, b.rate)
        assert expected * 2.5 <= e["drift_mhz_s"] <= expected / 2.5
        assert e["snr"] >= DetectorConfig().threshold
        assert e["detector"]["config"]["threshold"] == DetectorConfig().threshold
    assert events[1]["excess_db"] > events[0]["excess_db"]
    assert len({e["id"] for e in events}) == 2


def test_an_event_grows_by_revisions_never_by_duplicates():
    sc = Scenario(injections=[Injection("III", 60.0, 85.0, 18.0, 1.0, rate=0.6,
                                        decay_s=2.5)], seed=4)
    _, recs = run(sc, 120)
    assert len({r["id"] for r in recs}) == 1, recs
    assert [r["revision"] for r in recs] == list(range(len(recs)))
    assert [r["final"] for r in recs] == [False] * (len(recs) - 1) + [True]
    # the first publication comes within seconds of the onset (data time)
    assert utc(recs[0]["detected_utc"]) - onset_s(sc, sc.injections[0]) <= 5.0


def test_quiet_sky_with_transmitters_and_spikes_raises_nothing():
    spikes = [Injection("spike", 40.0 + 23.0 * i, 88, 14, 3.0) for i in range(20)]
    rfi = [RFI(40.68, 25.0, width_chan=1.2), RFI(62.1, 15.0, duty=0.1, period_s=4.3),
           RFI(26.965, 8.0, duty=0.35, period_s=13.0)]
    sc = Scenario(injections=spikes, rfi=rfi, seed=5)
    det, recs = run(sc, 540, rows=32)
    assert recs == []
    st = det.status()
    assert det.search.spike_rows >= 15  # the spikes were seen and blanked
    assert st["masked_channels"] >= 1  # the steady transmitter
    assert st["rows"] == 1080


def test_type2_is_classified_with_a_slow_drift():
    sc = Scenario(injections=[Injection("II", 60.0, 70.0, 30.0, 1.5, rate=0.004,
                                        duration=240.0, harmonic=0.0)], seed=6)
    _, recs = run(sc, 330, rows=16)
    events = finals(recs)
    assert [e["type"] for e in events] == ["II"], events
    e = events[0]
    assert -1.0 <= e["drift_mhz_s"] <= -0.05
    assert utc(e["start_utc"]) <= onset_s(sc, sc.injections[0]) + 120


def test_descending_non_uniform_axis_in_db():
    # e-CALLISTO-like: 200 channels from 91.8 down to 20 MHz, unevenly spaced, 0.25 s rows
    rng = np.random.default_rng(0)
    freqs = np.sort(rng.uniform(20, 91.8, 200))[::-1]
    sc = Scenario(freqs_mhz=freqs, dt_s=0.25, dof=2000,
                  injections=[Injection("III", 70.0, 85.0, 22.0, 2.0)], seed=7)
    _, recs = run(sc, 110, unit="dB", rows=8)
    events = finals(recs)
    assert [e["type"] for e in events] == ["III"], events
    assert abs(utc(events[0]["start_utc"]) - onset_s(sc, sc.injections[0])) <= 3.0
    assert freqs[events[0]["chan_high"]] == pytest.approx(events[0]["f_high_mhz"], rel=0.05)


def test_without_frequencies_events_report_channels_only():
    sc = Scenario(injections=[Injection("III", 60.0, 85.0, 18.0, 2.0)], seed=8)
    _, recs = run(sc, 100, freqs=None)
    events = finals(recs)
    assert len(events) == 1
    e = events[0]
    assert e["type"] == "unclassified"
    assert e["f_high_mhz"] is None and e["drift_mhz_s"] is None
    assert 0 <= e["chan_low"] < e["chan_high"] < 1536  # ascending channels: high f = high index


def test_excess_db_is_the_running_background_removed():
    sc = Scenario(seed=9)
    det, _ = run(sc, 60)
    data, _tags = next(sc.chunks(4, rows=4))
    exc = det.excess_db(data * np.float32(10 ** 0.3))  # 3 dB brighter everywhere
    assert exc.shape == data.shape
    assert np.nanmedian(exc) == pytest.approx(3.0, abs=0.1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unit"):
        Detector(64, 0.5, unit="K")
    with pytest.raises(ValueError, match="nbins"):
        Detector(32, 0.5)  # fewer channels than bins
    with pytest.raises(ValueError, match="min_subbands"):
        DetectorConfig(min_subbands=1)
    det = Detector(64, 0.5, freqs_mhz=np.linspace(20, 80, 64))
    with pytest.raises(ValueError, match="expected data"):
        det.process(np.ones((2, 63), np.float32), np.arange(2))


# --- kernels ----------------------------------------------------------------------------------
def test_curve_and_line_sums_match_plain_numpy():
    rng = np.random.default_rng(1)
    hist = rng.standard_normal((20, 12)).astype(np.float32)
    lags = rng.integers(-1, 20, (3, 12)).astype(np.int32)
    group = (np.arange(12) // 4).astype(np.int32)
    out = np.zeros((3, 3), np.float32)
    kernels.detect_curve_sums(hist, 5, lags, group, out)
    ref = np.zeros((3, 3))
    for k in range(3):
        for b in range(12):
            if lags[k, b] >= 0:
                ref[k, group[b]] += hist[(5 - lags[k, b]) % 20, b]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    off = -np.arange(6)[None, :].repeat(2, 0).astype(np.int32) * np.array([[0], [1]], np.int32)
    w = np.ones(12, np.float32)
    w[3] = 0
    s = np.zeros((2, 12), np.float32)
    n = np.zeros((2, 12), np.float32)
    kernels.detect_line_sums(hist, 2, off, w, 2, s, n)
    for r in range(2):
        for b in range(12):
            tot = cnt = 0.0
            for j in range(6):
                for q in range(2):
                    bb = b + off[r, j] + q
                    if 0 <= bb < 12:
                        tot += hist[(2 - j) % 20, bb] * w[bb]
                        cnt += w[bb]
            assert s[r, b] == pytest.approx(tot, abs=1e-4)
            assert n[r, b] == cnt
    with pytest.raises(ValueError, match="lags"):
        kernels.detect_curve_sums(hist, 5, lags + 20, group, out)
    with pytest.raises(ValueError, match="newest"):
        kernels.detect_line_sums(hist, 20, off, w, 2, s, n)


def test_bin_rows_matches_plain_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 10)).astype(np.float32)
    x[1, 4] = np.nan
    bg = rng.standard_normal(10).astype(np.float32)
    inv = np.full(10, 2.0, np.float32)
    inv[7] = 0
    cb = np.array([0, 0, 1, 1, 1, 2, 2, 2, -1, 0], np.int32)
    zn = np.ones(3, np.float32) * 0.5
    dn = np.ones(3, np.float32)
    oz = np.zeros((3, 3), np.float32)
    od = np.zeros((3, 3), np.float32)
    kernels.detect_bin_rows(x, bg, inv, cb, zn, dn, 1.5, oz, od)
    r = x - bg
    z = np.clip(r * inv, -1.5, 1.5)
    ok = np.isfinite(r) & (inv > 0) & (cb >= 0)[None]
    for b in range(3):
        m = ok & (cb == b)[None]
        np.testing.assert_allclose(oz[:, b], np.where(m, z, 0).sum(1) * 0.5, atol=1e-5)
        np.testing.assert_allclose(od[:, b], np.where(m, r, 0).sum(1), atol=1e-5)


# --- live: ring -> worker -> log file and PUB socket ----------------------------------------
class Source:
    """A StreamSource around a real RingBuffer the test fills."""

    name = "test"

    def __init__(self, nfreq: int = 1536, info: dict | None = None):
        self.stream_info = {"navg": 24, "nint": 512 * 0 + 1, "beam": 3} if info is None else info
        self.ring = RingBuffer(2000, nfreq, freqs_hz=ovro_freqs_mhz(nfreq) * 1e6)

    def wait_for_ring(self, timeout=None):
        return wait_for_ring(self, timeout)

    def push(self, data, tags):
        for row, tag in zip(data, tags, strict=True):
            self.ring.data[self.ring.spare_row] = row
            self.ring.commit(int(tag), int(tag) / FS, -1, time.time())


def test_worker_logs_publishes_and_beats(tmp_path):
    src = Source(info={"beam": 3})  # no nint/navg: the spacing is measured from the rows
    sc = Scenario(injections=[Injection("III", 60.0, 80.0, 20.0, 2.0)], seed=10)
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 100)
    got: list[tuple[bytes, dict]] = []

    def drain():
        while True:
            try:
                topic, body = sub.recv_multipart()
            except zmq.Again:
                return
            got.append((topic, json.loads(body)))

    with DetectorWorker(src, log_dir=tmp_path / "events", events_endpoint="tcp://127.0.0.1:0",
                        heartbeat_s=0.05) as worker:
        assert worker.endpoint.startswith("tcp://127.0.0.1:")
        sub.connect(worker.endpoint)
        assert wait_until(lambda: (drain(), any(t == b"heartbeat" for t, _ in got))[1], 10)
        for data, tags in sc.chunks(120, rows=16):
            src.push(data, tags)
        assert wait_until(lambda: worker.status()["rows"] == 240, 30), worker.status()
        st = worker.status()
        assert st["health"] == "ok" and st["health_reason"] == ""
        assert st["detector"]["rows"] == 240
        excess = worker.excess_db(src.ring.latest(2).data)
        assert excess is not None and excess.shape == (2, 1536)
    drain()
    events = [b for t, b in got if t == b"event"]
    beats = [b for t, b in got if t == b"heartbeat"]
    assert beats and beats[0]["stream"] == "test" and "health" in beats[0]
    assert events and events[-1]["final"] and events[-1]["type"] == "III"
    assert {e["id"] for e in events} == {events[0]["id"]}
    assert events[-1]["beam"] == 3 and events[-1]["stream"] == "test"
    # the log holds the same revisions, in a file named by the event's UTC day
    day = events[0]["start_utc"][:10].replace("-", "")
    lines = (tmp_path / "events" / f"events-{day}.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == events
    assert worker.get_events() == [events[-1]]
    sub.close(0)


def test_worker_follows_a_new_ring_and_reports_an_unknown_unit():
    src = Source(info={"unit": "furlongs"})
    sc = Scenario(seed=11)
    with DetectorWorker(src, events_endpoint=None) as worker:
        src.push(*next(sc.chunks(5, rows=10)))
        assert wait_until(lambda: worker.status()["health"] == "failed", 10)
        assert "furlongs" in worker.status()["health_reason"]
        src.stream_info = {}
        src.ring = RingBuffer(500, 1536, freqs_hz=ovro_freqs_mhz() * 1e6)
        src.push(*next(sc.chunks(5, rows=10)))
        assert wait_until(lambda: worker.status()["rings"] == 2 and
                          worker.status()["health"] == "ok", 10), worker.status()
        assert wait_until(lambda: worker.status()["rows"] >= 10, 10)


# --- offline: sunspec-detect in a subprocess ---------------------------------------------------
def _archive(path, sc: Scenario, seconds: float, fmt: str = "hdf5"):
    pytest.importorskip("h5py")
    pytest.importorskip("astropy")
    from sunspec.archive import ArchiveData, ArchiveMeta
    from sunspec.archive.fits import write as write_fits
    from sunspec.archive.hdf5 import write as write_h5

    parts = list(sc.chunks(seconds, rows=256))
    data = np.concatenate([d for d, _ in parts])
    tags = np.concatenate([t for _, t in parts])
    meta = ArchiveMeta(span_start_tag=int(tags[0]), span_s=900, factor=2, chan0=600, beam=1)
    (write_h5 if fmt == "hdf5" else write_fits)(path, ArchiveData(data, tags,
                                                                  sc.freqs_mhz * 1e6, meta))


def _detect_cli(*args):
    return subprocess.run([sys.executable, "-c",
                           "import sys; from sunspec.cli import detect_main; "
                           "sys.exit(detect_main())", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_cli_prints_one_record_per_event_as_json_or_csv(tmp_path, fmt):
    sc = Scenario(injections=[Injection("III", 60.0, 80.0, 20.0, 2.0),
                              Injection("III", 150.0, 70.0, 20.0, 2.0)], seed=12)
    path = tmp_path / ("a.h5" if fmt == "hdf5" else "a.fits")
    _archive(path, sc, 200, fmt)
    out = _detect_cli(path)
    assert out.returncode == 0, out.stderr
    events = [json.loads(x) for x in out.stdout.splitlines()]
    assert [e["type"] for e in events] == ["III", "III"]
    assert all(e["final"] for e in events) and events[0]["beam"] == 1
    assert {e["stream"] for e in events} == {"OVRO-LWA"}
    for e, b in zip(events, sc.injections, strict=True):
        assert abs(utc(e["start_utc"]) - onset_s(sc, b)) <= 3.0
    csv = _detect_cli("--csv", path)
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("id,revision,final,type,start_utc")
    rows = [dict(zip(lines[0].split(","), x.split(","), strict=True)) for x in lines[1:]]
    assert [(r["type"], r["start_utc"], r["final"]) for r in rows] == \
        [(e["type"], e["start_utc"], "True") for e in events]


@pytest.mark.parametrize("args", [["--threshold", "-1", "x.h5"], ["--threshold", "0", "x.h5"],
                                  [], ["--bogus", "x.h5"], ["missing.h5"]])
def test_cli_mistakes_end_with_usage_and_status_2(tmp_path, args):
    out = _detect_cli(*args)
    assert out.returncode == 2
    assert "usage: sunspec-detect" in out.stderr and "Traceback" not in out.stderr
