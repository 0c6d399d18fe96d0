"""The simulator's model (bursts, RFI, noise statistics, determinism, speed) and its stream
through Averager + Publisher to a raw SUB socket, the Receiver and the sunspec-sim CLI."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from sunspec import Receiver, SimulatedStream, Simulator, clock, protocol
from sunspec.cli import sim_main, sim_parser
from sunspec.sim import DEFAULT_CHAN0, Impulse, RFILine, SimConfig, TypeII, TypeIII

#: a still sky: no drifts, no broadband interference, no random events, no lines
STILL = SimConfig(hf_junk=0.0, gain_drift=0.0, sky_drift=0.0, impulse_per_s=0.0)
QUIET = dict(rfi=[], config=STILL)
TAG0 = 343_597_383_680_000_000 // (24 * 8192) * (24 * 8192)  # on a spectrum boundary


def small(**kw):
    kw = {"nchan": 256, "ntime_gulp": 128, "seed": 3, "start_tag": TAG0,
          **kw}
    return Simulator(**kw)


def excess(sim: Simulator, i: int) -> np.ndarray:
    """Source power above the quiet sky, relative to it, (ntime, nchan)."""
    total, _ = sim.source_power(i)
    return total / sim.sky.astype(np.float32) - 1


def test_shapes_header_and_determinism():
    a = small()
    g = a.gulp(2)
    assert g.shape == (128, 1, 256, 4) and g.dtype == np.float32 and np.isfinite(g).all()
    np.testing.assert_array_equal(g, small().gulp(2))  # same seed, same data
    assert not np.array_equal(g, small(seed=4).gulp(2))
    np.testing.assert_array_equal(list(a.gulps(1, 2))[1], g)
    h = a.header
    assert list(h) == ["time_tag", "seq0", "chan0", "cfreq0", "bw", "navg", "nbeam", "nchan",
                       "npol", "pols", "complex", "nbit"]
    assert h["time_tag"] % (24 * 8192) == 0 and h["chan0"] == DEFAULT_CHAN0 == 600
    assert h["pols"] == "XX,YY,CR,CI" and h["nbit"] == 32
    assert a.gulp_seconds == pytest.approx(128 * 24 * 8192 / 196e6)


def test_noise_has_the_statistics_of_averaged_powers():
    kw = dict(nchan=512, ntime_gulp=2048, bursts=[], **QUIET)
    g = small(**kw).gulp(0)
    m = small(noise=False, **kw).gulp(0)
    r = g[..., 0] / m[..., 0]
    k = 2 * 24  # a sum of 24 exponential powers: chi-square with 48 dof, over 48
    assert r.mean() == pytest.approx(1, abs=2e-3)
    assert r.std() == pytest.approx(np.sqrt(2 / k), rel=0.02)
    skew = ((r - r.mean()) ** 3).mean() / r.std() ** 3
    assert skew == pytest.approx(np.sqrt(8 / k), abs=0.03)
    sigma = np.sqrt(m[..., 0] * m[..., 1] / (2 * 24))
    for p in (2, 3):
        z = (g[..., p] - m[..., p]) / sigma
        assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1, rel=0.02)
    assert (m[..., 1] < m[..., 0]).mean() > 0.9  # YY has its own, lower, gain
    assert np.all(np.abs(m[..., 2]) < 0.05 * np.sqrt(m[..., 0] * m[..., 1]))  # small leakage
    assert np.all(m[..., 3] == 0)  # no circular polarisation without bursts


def test_type_iii_appears_when_scripted_and_drifts_from_high_to_low_frequency():
    b = TypeIII(t0=3.0, f_start_mhz=85.0, amplitude=30.0, peak_mhz=45.0)
    sim = small(bursts=[b], nchan=3072, ntime_gulp=256, **QUIET)
    n = int(17 / sim.gulp_seconds)
    ex = np.concatenate([excess(sim, i) for i in range(n)])
    t = np.concatenate([sim.times(i) for i in range(n)])
    assert ex[t < b.t0 - 10 * b.rise_s].max() < 1e-3  # nothing before it starts
    f = sim.freqs_mhz
    peaks = []
    for fm in (80, 60, 40, 25):
        c = int(np.argmin(abs(f - fm)))
        tp = t[np.argmax(ex[:, c])]
        assert tp == pytest.approx(b.onset(f[c]), abs=0.05)  # where the script puts it
        assert ex[:, c].max() > 1.0
        peaks.append(tp)
    assert np.all(np.diff(peaks) > 0)  # later at lower frequencies
    assert 3 < peaks[-1] - peaks[0] < 12  # seconds across the band
    circ = sim.source_power(int(peaks[1] / sim.gulp_seconds))[1]
    assert circ is not None and circ.max() > 0  # partly circularly polarised
    model = small(bursts=[b], nchan=3072, ntime_gulp=256, noise=False, **QUIET)
    peak_v = model.gulp(int(peaks[1] / sim.gulp_seconds))[..., 3].max()  # in XY_imag
    assert peak_v > 0.1 * model.sky.max() * 24
    assert model.gulp(0)[:50, ..., 3].max() < 1e-6 * peak_v  # and not before the burst


def test_type_ii_drifts_slowly_with_a_harmonic_at_nearly_twice_the_frequency():
    b = TypeII(t0=0.0, duration=120.0, f0_mhz=35.0, drift=0.004, amplitude=8.0, width=0.03)
    sim = small(bursts=[b], nchan=3072, **QUIET)
    f = sim.freqs_mhz
    lanes = []
    for ts in (20.0, 60.0):
        i = int(ts / sim.gulp_seconds)
        ex = excess(sim, i).mean(0)
        fund = f[np.argmax(np.where(f < 50, ex, 0))]
        harm = f[np.argmax(np.where(f > 50, ex, 0))]
        lane = b.lane_mhz(sim.times(i).mean())
        assert fund == pytest.approx(lane, rel=0.02)
        assert harm == pytest.approx(b.harmonic_ratio * lane, rel=0.02)  # 1.9-2, not 2
        lanes.append(fund)
    drift = (lanes[1] - lanes[0]) / 40.0  # MHz/s
    assert -0.5 < drift < -0.05  # slow, downwards
    assert excess(small(bursts=[b], nchan=3072, **QUIET), int(130 / sim.gulp_seconds)).max() < 1e-3


def test_rfi_lines_and_spikes():
    line = RFILine(40.68, amplitude=25.0, angle=0.0)
    sim = small(bursts=[], rfi=[line], config=STILL, noise=False, nchan=3072)
    m = sim.gulp(0)[:, 0]
    c = round(40.68e6 / clock.CHAN_BW) - 600
    assert m[0, c, 0] > 10 * m[0, c + 20, 0]  # narrow, strong, in XX at angle 0
    clean = small(bursts=[], rfi=[], config=STILL, noise=False, nchan=3072).gulp(0)[:, 0]
    np.testing.assert_array_equal(m[..., 1], clean[..., 1])  # none in YY at angle 0
    assert m[0, c, 2] == clean[0, c, 2]  # nor in XY (cos * sin = 0)
    spiky = small(bursts=[Impulse(t0=0.01, nspec=2)], rfi=[], config=STILL, noise=False)
    rows = spiky.source_power(0)[0].mean(1)
    assert (rows > 1.5 * np.median(rows)).sum() == 2  # broadband, two spectra long


def test_a_full_size_gulp_is_made_well_within_its_data_time():
    sim = Simulator(seed=1, bursts=[TypeIII(t0=0.3), TypeII(t0=-10.0)])
    out = np.empty(sim.shape, np.float32)
    sim.gulp(0, out=out)  # warm up
    t0 = time.thread_time()
    sim.gulp(1, out=out)
    cpu = time.thread_time() - t0
    assert cpu < 0.6 * sim.gulp_seconds, f"{cpu:.3f} s of CPU for {sim.gulp_seconds:.3f} s"


# --- streaming ---------------------------------------------------------------------------------

def reference_frames(sim: Simulator, ngulps: int, nint: int) -> np.ndarray:
    allspec = np.concatenate([sim.gulp(i) for i in range(ngulps)])
    n = len(allspec) // nint
    return np.stack([allspec[k * nint:(k + 1) * nint].astype(np.float64).mean(0)
                     .astype(np.float32) for k in range(n)])


@pytest.fixture
def sub_for():
    ctx = zmq.Context()
    socks = []

    def make(endpoint):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(endpoint)
        socks.append(s)
        return s

    yield make
    for s in socks:
        s.close()
    ctx.term()


def test_fast_stream_frames_equal_the_reference_of_the_simulated_gulps(sub_for):
    kw = dict(nchan=256, ntime_gulp=128, seed=9, bursts=[TypeIII(t0=0.2)])
    stream = SimulatedStream(port=0, speed=None, duration=4 * 128 * 24 * 8192 / 196e6,
                             nint=48, wait_subscribers=1, **kw)
    with stream:
        sub = sub_for(stream.endpoint)
        msgs = []
        while len(msgs) < 11 and sub.poll(5000):
            msgs.append(protocol.decode(sub.recv_multipart()))
        assert stream.join(5)
    assert not stream.running and stream.error is None and stream.publisher.closed
    ref = reference_frames(Simulator(start_tag=stream.sim.start_tag, **kw), 4, 48)
    assert len(msgs) == 11  # 512 spectra: 10 x 48, then 32 >= 24 flushed with nint 32
    tag0 = stream.sim.start_tag
    for k, (h, data) in enumerate(msgs[:10]):
        np.testing.assert_array_equal(data, ref[k])
        assert h.end_tag == tag0 + (k + 1) * 48 * 24 * 8192 and h.seq == k
    assert msgs[10][0].get("nint") == 32
    assert msgs[10][0].end_tag == tag0 + 512 * 24 * 8192


def test_real_time_pacing_and_speed():
    for speed, expected in ((1.0, 0.5), (4.0, 0.125)):
        stream = SimulatedStream(port=0, speed=speed, duration=0.5, nchan=64, ntime_gulp=32,
                                 seed=1)
        t0 = time.monotonic()
        stream.start()
        assert stream.join(5)
        elapsed = time.monotonic() - t0
        ngulps = stream.gulps_done
        assert ngulps == int(np.ceil(0.5 / stream.sim.gulp_seconds))
        assert elapsed > expected * 0.9  # paced by data time, never faster
        assert stream.status()["seq"] == stream.status()["sent"] > 0


def test_stop_is_prompt_and_leaves_no_thread():
    before = set(threading.enumerate())
    stream = SimulatedStream(port=0, speed=1.0, nchan=64, ntime_gulp=4096).start()
    time.sleep(0.1)
    stream.stop()  # returns once the thread is gone
    assert not stream.running and stream.publisher.closed
    assert set(threading.enumerate()) <= before


def test_end_to_end_sim_to_receiver_at_real_time_nothing_lost():
    stream = SimulatedStream(port=0, speed=1.0, duration=2.5, nchan=512, ntime_gulp=128,
                             nint=32, seed=11, wait_subscribers=1,
                             bursts=[TypeIII(t0=0.5, amplitude=40)])
    stream.start()
    with Receiver(endpoint=stream.endpoint, buffer_length=256, product="XX", factor=2) as rx:
        assert stream.join(10)
        deadline = time.monotonic() + 5
        nexp = stream.status()["sent"]
        while rx.get_buffer_status()["frames_received"] < nexp and time.monotonic() < deadline:
            time.sleep(0.01)
        rows = rx.get_latest(256)
        st = rx.get_buffer_status()
    assert stream.error is None
    ngulps = stream.gulps_done
    assert len(rows) == nexp == ngulps * 4 and st["lost"] == 0 and st["rejected_total"] == 0
    ref = reference_frames(Simulator(nchan=512, ntime_gulp=128, seed=11,
                                     start_tag=stream.sim.start_tag,
                                     bursts=[TypeIII(t0=0.5, amplitude=40)]), ngulps, 32)
    xx = ref[:, 0, :, 0].astype(np.float64).reshape(len(ref), -1, 2).mean(2).astype(np.float32)
    np.testing.assert_array_equal(rows.data, xx)
    tag0 = stream.sim.start_tag
    np.testing.assert_array_equal(rows.time_tags, tag0 + (np.arange(nexp) + 1) * 32 * 24 * 8192)
    np.testing.assert_array_equal(rows.seq, np.arange(nexp))
    np.testing.assert_allclose(rows.freqs_mhz[0], 600.5 * clock.CHAN_BW / 1e6)
    assert rx.stream_info["chan0"] == 600 and rx.stream_info["nint"] == 32


def test_cli_runs_and_its_defaults_are_the_constructors(capsys):
    args = sim_parser().parse_args([])
    d = Simulator.__init__.__kwdefaults__
    assert (args.port, args.addr, args.speed, args.seed, args.nchan, args.nbeam) == (
        9798, "127.0.0.1", 1.0, d["seed"], d["nchan"], d["nbeam"])
    assert sim_main(["--fast", "--duration", "2", "--port", "0", "--nchan", "256",
                     "--nbeam", "2", "--seed", "5", "--status-interval", "0",
                     "--log-level", "WARNING"]) == 0


def test_sim_header_is_valid_json_for_the_v1_reader(sub_for):
    stream = SimulatedStream(port=0, speed=None, duration=0.2, nchan=64, ntime_gulp=64,
                             wait_subscribers=1, nbeam=2)
    with stream:
        sub = sub_for(stream.endpoint)
        assert sub.poll(5000)
        topic, hdr, payload = sub.recv_multipart()
    h = json.loads(hdr)
    assert topic == b"data" and h["data_shape"] == [2, 64, 4]
    assert np.frombuffer(payload, np.float32).size == 2 * 64 * 4
