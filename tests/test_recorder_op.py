"""recorder/AvgStreamingOp on a stand-in ring (tests/bifrost_standin.py) and, when Bifrost
imports, on a real Bifrost ring; frames checked on a raw SUB socket and through Receiver."""

from __future__ import annotations

import inspect
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from bifrost_standin import StandinRing
from streams import wait_until

from sunspec import Receiver, clock, protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recorder"))
from avg_streaming_op import AvgStreamingOp

TAG0 = 343_597_383_680_000_000
TPS = 24 * 8192
LOG = logging.getLogger("test-op")
RNG = np.random.default_rng(7)


def ring_header(nchan=3072, nbeam=1, time_tag=TAG0):
    return {"time_tag": time_tag, "seq0": time_tag // TPS, "chan0": 600,
            "cfreq0": 600 * clock.CHAN_BW, "bw": nchan * clock.CHAN_BW, "navg": 24,
            "nbeam": nbeam, "nchan": nchan, "npol": 4, "pols": "XX,YY,CR,CI",
            "complex": False, "nbit": 32}


def make_gulps(n, ntime=1024, nchan=3072, nbeam=1):
    return [RNG.random((ntime, nbeam, nchan, 4), dtype=np.float32) * 1e5 for _ in range(n)]


def mean64(x):
    return x.astype(np.float64).mean(0).astype(np.float32)


class Harness:
    """An op with a SUB socket connected to it, main() in a thread, frames collected."""

    def __init__(self, ring, **kw):
        kw.setdefault("queue", 256)  # the stand-in ring runs faster than real time
        self.op = AvgStreamingOp(LOG, ring, streaming_port=0, **kw)
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.op.publisher.endpoint)
        assert self.op.publisher.wait_for_subscribers(1, 5.0)  # before main() owns the socket
        self.thread = threading.Thread(target=self.op.main, name="AvgStreamingOp")
        self.end: protocol.SequenceEnd | None = None

    def run(self, timeout=20.0):
        self.thread.start()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "main() did not return"
        return self.messages()

    def messages(self, wait_ms=500):
        """The frames received (header, data); an end-of-sequence message, which the op's
        publisher sends when main() ends, is kept in ``self.end`` and must come last."""
        out = []
        while self.sub.poll(wait_ms):
            parts = self.sub.recv_multipart()
            assert self.end is None, "a message after the end of sequence"
            if parts[0] == protocol.END_TOPIC:
                self.end = protocol.parse_end(parts[1])
                continue
            out.append((json.loads(parts[1]), protocol.decode(parts)[1].copy()))
        return out

    def close(self):
        self.op.shutdown()
        self.thread.join(5) if self.thread.is_alive() else None
        self.sub.close()
        self.ctx.term()


@pytest.fixture
def harness():
    made = []

    def make(ring, **kw):
        h = Harness(ring, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_constructor_matches_the_deployed_signature():
    params = list(inspect.signature(AvgStreamingOp.__init__).parameters.values())[1:]
    deployed = [("log", inspect.Parameter.empty), ("iring", inspect.Parameter.empty),
                ("ntime_gulp", 250), ("guarantee", True), ("core", None),
                ("streaming_addr", "127.0.0.1"), ("streaming_port", 9798),
                ("stream_interval", 0.15), ("npack_per_gulp", 2)]
    assert [(p.name, p.default) for p in params[:9]] == deployed
    assert all(p.kind is p.KEYWORD_ONLY for p in params[9:])


def test_two_frames_per_gulp_with_deployed_keys_values_and_quick_span_release(harness):
    gulps = make_gulps(3)
    ring = StandinRing([(ring_header(), gulps)])
    h = harness(ring, ntime_gulp=1024)
    assert h.op.shutdown_event is None
    with CallsByThread(waiting_call) as waits:
        msgs = h.run()
    assert len(msgs) == 6
    # main() ends with the publisher's end of sequence: receivers count loss at the tail
    assert h.end == protocol.SequenceEnd(h.op.publisher.sender_id, 6, 0)
    assert ring.guarantee is True and ring.spans_released == 3
    for k, (hdr, data) in enumerate(msgs):
        g, i = divmod(k, 2)
        assert list(hdr)[:8] == ["time_tag", "nbeam", "nchan", "npol", "timestamp",
                                 "last_block_time", "data_shape", "data_type"]
        assert hdr["time_tag"] == TAG0  # the sequence start, as deployed
        t_end = TAG0 + 24 * 1024 * g * 8192 + 24 * 512 * (i + 1) * 8192  # dr_beam.py's formula
        assert hdr["t_end_tag"] == t_end and hdr["t_start_tag"] == t_end - 512 * TPS
        assert hdr["last_block_time"] == str(clock.tag_to_datetime(t_end))
        assert hdr["seq"] == k and hdr["nint"] == 512 and hdr["pols"] == "XX,YY,XY_real,XY_imag"
        np.testing.assert_array_equal(data, mean64(gulps[g][i * 512:(i + 1) * 512]))
    # the deployed op held each span for >= stream_interval (0.15 s); ours only computes:
    # it never sleeps or waits while it reads the ring
    assert waits.calls.get(h.thread.name, 0) == 0, waits.calls


def test_no_sleeping_whatever_stream_interval_says(harness):
    ring = StandinRing([(ring_header(nchan=64), make_gulps(20, 128, 64))])
    h = harness(ring, ntime_gulp=128, stream_interval=5.0)
    with CallsByThread(waiting_call) as waits:
        assert len(h.run()) == 40
    assert waits.calls.get(h.thread.name, 0) == 0, waits.calls  # never sleeps nor waits


def test_short_final_span_and_partial_window_then_next_sequence(harness):
    g1 = [*make_gulps(2, 128, 64), RNG.random((100, 1, 64, 4), dtype=np.float32)]
    tag2 = TAG0 + 10**6 * TPS
    g2 = [*make_gulps(1, 128, 64), RNG.random((20, 1, 64, 4), dtype=np.float32)]
    ring = StandinRing([(ring_header(64), g1), (ring_header(64, time_tag=tag2), g2)])
    h = harness(ring, ntime_gulp=128)
    msgs = h.run()
    # sequence 1: 4 full frames of 64, then the short span: one full frame and a partial
    # window of 36 >= 32 (half a frame) sent with nint 36; sequence 2: 2 frames, 20 < 32 dropped
    assert [m[0]["nint"] for m in msgs] == [64] * 5 + [36] + [64] * 2
    assert [m[0]["time_tag"] for m in msgs] == [TAG0] * 6 + [tag2] * 2
    s1 = np.concatenate(g1)
    np.testing.assert_array_equal(msgs[5][1], mean64(s1[320:]))
    assert msgs[5][0]["t_end_tag"] == TAG0 + 356 * TPS
    assert msgs[6][0]["t_start_tag"] == tag2 and msgs[7][0]["t_end_tag"] == tag2 + 128 * TPS
    assert [m[0]["seq"] for m in msgs] == list(range(8))
    assert h.op.averager.status()["spectra_dropped"] == 20


def endless(ntime, nchan):
    g = np.ones((ntime, 1, nchan, 4), np.float32)
    while True:
        yield g


@pytest.mark.parametrize("how", ["event", "shutdown"])
def test_shutdown_ends_main_promptly_and_closes_the_socket(harness, how):
    ring = StandinRing([(ring_header(64), endless(128, 64))], span_interval=0.02)
    h = harness(ring, ntime_gulp=128)
    h.op.shutdown_event = threading.Event()
    h.thread.start()
    assert h.sub.poll(5000)
    if how == "event":
        h.op.shutdown_event.set()
    else:
        h.op.shutdown()
        assert h.op.shutdown_event.is_set()
    h.thread.join(2.0)
    assert not h.thread.is_alive()
    assert h.op.publisher.closed


def test_shutdown_before_main_closes_at_once_and_main_returns():
    ring = StandinRing([(ring_header(64), make_gulps(2, 128, 64))])
    op = AvgStreamingOp(LOG, ring, ntime_gulp=128, streaming_port=0)
    op.shutdown()
    assert op.publisher.closed
    op.main()  # returns without reading
    assert ring.spans_released == 0


def test_end_to_end_op_to_receiver_rows_times_and_seq(harness):
    gulps = make_gulps(6, 128, 256)
    ring = StandinRing([(ring_header(256), gulps)], span_interval=0.01)
    h = harness(ring, ntime_gulp=128, beam=2)
    with Receiver(endpoint=h.op.publisher.endpoint, buffer_length=64, product="I",
                  factor=4) as rx:
        assert h.op.publisher.wait_for_subscribers(2, 5.0)
        h.run()
        deadline = time.monotonic() + 5
        while rx.get_buffer_status()["frames_received"] < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        rows = rx.get_latest(64)
        st = rx.get_buffer_status()
    assert len(rows) == 12 and st["lost"] == 0 and st["rejected_total"] == 0
    allspec = np.concatenate(gulps)
    for k in range(12):
        f = allspec[k * 64:(k + 1) * 64].astype(np.float64).mean(0).astype(np.float32)
        ref = ((f[0, :, 0].astype(np.float64) + f[0, :, 1]) * 0.5).reshape(-1, 4).mean(1)
        np.testing.assert_allclose(rows.data[k], ref.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(rows.time_tags, TAG0 + (np.arange(12) + 1) * 64 * TPS)
    np.testing.assert_array_equal(rows.seq, np.arange(12))
    assert rx.stream_info["beam"] == 2
    np.testing.assert_allclose(rows.freqs_mhz[0], (600 + 1.5) * clock.CHAN_BW / 1e6)


def assert_labels_name_the_data(msgs, allspec, nint):
    """Each frame's window [t_start_tag, t_end_tag) names the spectra its data averages."""
    for hdr, data in msgs:
        k0, k1 = (hdr["t_start_tag"] - TAG0) // TPS, (hdr["t_end_tag"] - TAG0) // TPS
        assert (hdr["t_start_tag"] - TAG0) % TPS == 0 and k1 - k0 == hdr["nint"] <= nint
        assert hdr["last_block_time"] == str(clock.tag_to_datetime(hdr["t_end_tag"]))
        np.testing.assert_array_equal(data, mean64(allspec[k0:k1]))


@pytest.mark.parametrize("skips, starts, skipped", [
    ({0: 394 * 64 * 16}, [394, 458, 522], 394),  # joined late: the first span is at 394
    # overrun before span 2: handed 356-483 for 256-383; the next span (384-511) overlaps it
    ({2: 100 * 64 * 16}, [0, 64, 128, 192, 356, 420, 484, 548], 100),
    ({1: 5}, [0, 64, 129, 193, 257, 321, 385, 449, 513], 1),  # an offset inside spectrum 128
])
def test_late_join_and_overrun_frames_are_labelled_by_the_spectra_they_hold(
        harness, caplog, skips, starts, skipped):
    gulps = make_gulps(5, 128, 64)
    ring = StandinRing([(ring_header(64), gulps, skips)])
    h = harness(ring, ntime_gulp=128, min_partial=1.0)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        msgs = h.run()
    allspec = np.concatenate(gulps)
    assert [(m[0]["t_start_tag"] - TAG0) // TPS for m in msgs] == starts
    assert_labels_name_the_data(msgs, allspec, 64)
    st = h.op.status()["averager"]
    assert st["gaps"] == 1 and st["spectra_skipped"] == skipped
    # every spectrum is accounted for: in a frame, skipped, or in a dropped partial window
    assert 64 * len(msgs) + st["spectra_skipped"] + st["spectra_dropped"] == 640
    assert [m[0]["seq"] for m in msgs] == list(range(len(msgs)))
    assert any("were not read" in r.getMessage() for r in caplog.records)


class CallsByThread:
    """Counts, per thread, the calls ``wanted(event, frame, arg)`` picks, through a profile
    hook set on the threads started while it is on."""

    def __init__(self, wanted):
        self.calls: dict[str, int] = {}
        self._wanted = wanted

    def _hook(self, frame, event, arg):
        if self._wanted(event, frame, arg):
            name = threading.current_thread().name
            self.calls[name] = self.calls.get(name, 0) + 1

    def __enter__(self):
        threading.setprofile(self._hook)
        return self

    def __exit__(self, *exc):
        threading.setprofile(None)


_ZMQ_DIR = str(Path(zmq.__file__).parent)


def zmq_call(event, frame, arg) -> bool:
    """A call into pyzmq: a Python function of its package or one of its compiled methods."""
    if event == "call":
        return frame.f_code.co_filename.startswith(_ZMQ_DIR)
    if event == "c_call":
        owner = type(getattr(arg, "__self__", None)).__module__
        return (getattr(arg, "__module__", None) or "").startswith("zmq") or \
            owner.startswith("zmq")
    return False


def waiting_call(event, frame, arg) -> bool:
    """A call that can put a thread to sleep: time.sleep or a threading wait."""
    if event == "c_call":
        return arg is time.sleep
    return event == "call" and frame.f_code.co_name in ("wait", "wait_for") and \
        frame.f_code.co_filename == threading.__file__


def flood_subscriptions(endpoint, stop, sent):
    """A hostile peer: distinct subscriptions as fast as it can, until ``stop``."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.XSUB)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    i = 0
    while not stop.is_set():
        s.send(b"\x01t%09d" % i)
        i += 1
    sent.append(i)
    s.close(0)
    ctx.term()


def test_during_a_subscription_flood_the_ring_thread_makes_no_zmq_call(harness):
    ngulps = 40
    gulps = make_gulps(4, 128, 64)
    ring = StandinRing([(ring_header(64), (gulps[i % 4] for i in range(ngulps)))],
                       span_interval=0.01)
    h = harness(ring, ntime_gulp=128)
    stop, sent = threading.Event(), []
    flooder = threading.Thread(target=flood_subscriptions,
                               args=(h.op.publisher.endpoint, stop, sent))
    flooder.start()
    try:
        assert wait_until(lambda: h.op.publisher.status().get("refused", 0) > 1000)
        with CallsByThread(zmq_call) as calls:
            msgs = h.run()
    finally:
        stop.set()
        flooder.join(10)
    assert calls.calls.get("AvgStreamingOp", 0) == 0, calls.calls
    assert ring.reader_thread is h.thread and ring.spans_released == ngulps
    st = h.op.publisher.status()
    assert st["refused"] > 1000 and sent and st["seq"] == 2 * ngulps
    # the subscriber got frames in order; the ones it missed are seq gaps, and counted
    seqs = [m[0]["seq"] for m in msgs]
    assert seqs == sorted(seqs) and len(msgs) + st["dropped"] <= 2 * ngulps
    assert st["sent"] + st["dropped"] == 2 * ngulps


# --- real Bifrost ----------------------------------------------------------------------------

def test_on_a_real_bifrost_ring(harness):
    """Whichever thread wins the race to the ring (the reader may open the sequence after
    the writer has overwritten its start), every frame is labelled by the spectra it holds
    and every spectrum is accounted for."""
    bfring = pytest.importorskip("bifrost.ring")
    ntime, nchan = 64, 96
    gulp_bytes = ntime * nchan * 4 * 4
    gulps = make_gulps(5, ntime, nchan)
    ring = bfring.Ring(name="test-capture")
    ring.resize(gulp_bytes, 4 * gulp_bytes)
    h = harness(ring, ntime_gulp=ntime, core=0)  # pins the op's thread with bifrost.affinity
    h.thread.start()

    with ring.begin_writing() as writer, writer.begin_sequence(
            name="s0", time_tag=TAG0, header=json.dumps(ring_header(nchan))) as seq:
        for g in gulps:
            with seq.reserve(gulp_bytes) as span:
                span.data_view(np.float32)[...] = g.reshape(1, -1)
        with seq.reserve(gulp_bytes) as span:  # a short final span of 50 spectra
            span.data_view(np.float32)[0, : 50 * nchan * 4] = gulps[0][:50].reshape(-1)
            span.commit(50 * nchan * 16)
    h.thread.join(10)
    assert not h.thread.is_alive()
    msgs = h.messages()
    allspec = np.concatenate([*gulps, gulps[0][:50]])
    assert msgs
    assert_labels_name_the_data(msgs, allspec, 32)
    st = h.op.status()["averager"]
    assert sum(m[0]["nint"] for m in msgs) + st["spectra_skipped"] + st["spectra_dropped"] == 370
    if st["gaps"] == 0:  # the reader was first: all of it, as 11 x 32 and a final 18 >= 16
        assert [m[0]["nint"] for m in msgs] == [32] * 11 + [18]
