"""Averager windows and times to the tick; Publisher over real loopback sockets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from sunspec import Averager, Frame, Publisher, SequenceInfo, clock, protocol
from sunspec.sender import nint_for_interval

sys.path.insert(0, str(Path(__file__).parent))
from streams import wait_until

TAG0 = 343_597_383_680_000_000 + 12_345 * 196_608  # a sequence start above 2**53
TPS = 24 * 8192
RNG = np.random.default_rng(44)
V1_KEYS = ["time_tag", "nbeam", "nchan", "npol", "timestamp", "last_block_time", "data_shape",
           "data_type"]


def ring_header(nbeam=1, nchan=16, npol=4, time_tag=TAG0, navg=24, chan0=600):
    """A header as the recorder's capture writes it (keys in its order)."""
    return {"time_tag": time_tag, "seq0": time_tag // (navg * 8192), "chan0": chan0,
            "cfreq0": chan0 * clock.CHAN_BW, "bw": nchan * clock.CHAN_BW, "navg": navg,
            "nbeam": nbeam, "nchan": nchan, "npol": npol, "pols": "XX,YY,CR,CI",
            "complex": False, "nbit": 32}


def gulps(n, ntime, nbeam=1, nchan=16, npol=4):
    return [RNG.random((ntime, nbeam, nchan, npol), dtype=np.float32) * 1e5 for _ in range(n)]


def mean64(x):
    return x.astype(np.float64).mean(0).astype(np.float32)


def collect(avg: Averager, gs) -> list[tuple[np.ndarray, Frame]]:
    out = []
    for g in gs:
        out += [(f.data.copy(), f) for f in avg.add(g)]
    return out


@pytest.mark.parametrize("ntime, nint", [(1024, 512), (100, 37), (64, 64), (10, 25), (7, 1)])
def test_windows_are_exact_float64_means_with_tick_exact_times(ntime, nint):
    gs = gulps(5, ntime)
    avg = Averager(nint)
    avg.begin_sequence(ring_header())
    frames = collect(avg, gs)
    allspec = np.concatenate(gs)
    assert len(frames) == len(allspec) // nint
    for k, (data, f) in enumerate(frames):
        ref = allspec[k * nint:(k + 1) * nint].astype(np.float64).mean(0).astype(np.float32)
        np.testing.assert_array_equal(data, ref)
        assert (f.t_start_tag, f.t_end_tag) == (TAG0 + k * nint * TPS, TAG0 + (k + 1) * nint * TPS)
        assert f.nint == nint and f.time_tag == TAG0  # v1 time_tag: the sequence start
        assert type(f.t_end_tag) is int


def test_deployed_case_two_frames_per_gulp_match_the_deployed_times():
    gs = gulps(3, 1024, nchan=3072)
    avg = Averager()
    avg.begin_sequence(ring_header(nchan=3072), ntime_gulp=1024)
    assert avg.nint == 512
    frames = collect(avg, gs)
    assert len(frames) == 6
    for k, (data, f) in enumerate(frames):
        g, i = divmod(k, 2)
        # dr_beam.py: t_last_block = time_tag(gulp) + navg * chunk * (i + 1) * 8192
        assert f.t_end_tag == TAG0 + g * 1024 * TPS + 24 * 512 * (i + 1) * 8192
        np.testing.assert_allclose(data, gs[g][i * 512:(i + 1) * 512].mean(0), rtol=2e-6)


def test_nint_from_interval_and_defaults():
    assert nint_for_interval(0.5, 24) == round(0.5 * clock.FS / TPS) == 498
    assert nint_for_interval(1e-9, 24) == 1
    with pytest.raises(ValueError):
        nint_for_interval(0, 24)
    avg = Averager(interval=0.25)
    avg.begin_sequence(ring_header(navg=12))
    assert avg.nint == round(0.25 * clock.FS / (12 * 8192))
    avg = Averager()
    avg.begin_sequence(ring_header(), ntime_gulp=250)
    assert avg.nint == 125
    avg.begin_sequence(ring_header())
    assert avg.nint == 512
    with pytest.raises(ValueError):
        Averager(10, interval=1.0)


@pytest.mark.parametrize("leftover, min_partial, flushed", [
    (300, 0.5, True), (256, 0.5, True), (255, 0.5, False), (1, 0.0, True), (511, 1.0, False),
])
def test_partial_window_at_sequence_end_is_flushed_or_dropped_and_counted(
        leftover, min_partial, flushed):
    gs = gulps(1, 1024) + gulps(1, leftover)  # a short final span of `leftover` spectra
    avg = Averager(512, min_partial=min_partial)
    avg.begin_sequence(ring_header())
    frames = collect(avg, gs)
    assert len(frames) == 2
    final = avg.end_sequence()
    st = avg.status()
    if flushed:
        assert final is not None and final.nint == leftover
        assert (final.t_start_tag, final.t_end_tag) == (TAG0 + 1024 * TPS,
                                                        TAG0 + (1024 + leftover) * TPS)
        ref = gs[1].astype(np.float64).mean(0).astype(np.float32)
        np.testing.assert_array_equal(final.data, ref)
        assert st["partial_frames"] == 1 and st["spectra_dropped"] == 0
    else:
        assert final is None
        assert st["partial_dropped"] == 1 and st["spectra_dropped"] == leftover
    assert avg.end_sequence() is None  # nothing left


def test_new_sequence_restarts_windows_and_discards_an_unfinished_one():
    avg = Averager(100, min_partial=1.0)
    avg.begin_sequence(ring_header())
    assert len(collect(avg, gulps(1, 150))) == 1
    tag1 = TAG0 + 10**9 * TPS
    avg.begin_sequence(ring_header(time_tag=tag1))  # 50 spectra left unfinished
    assert avg.status()["spectra_dropped"] == 50
    g = gulps(1, 100)
    (data, f), = collect(avg, g)
    assert (f.time_tag, f.t_start_tag, f.t_end_tag) == (tag1, tag1, tag1 + 100 * TPS)
    np.testing.assert_array_equal(data, g[0].astype(np.float64).mean(0).astype(np.float32))


def test_a_gap_restarts_the_window_and_is_counted():
    gs = gulps(3, 100)
    avg = Averager(64, min_partial=1.0)
    avg.begin_sequence(ring_header())
    out = collect(avg, gs[:1])  # spectra 0-99: one frame, 36 pending
    assert avg.next_spectrum == 100
    out += [(d.copy(), f) for d, f in ((f.data, f) for f in avg.add(gs[1], start=150))]
    out += [(d.copy(), f) for d, f in ((f.data, f) for f in avg.add(gs[2], start=250))]
    # 250 follows 150-249: no gap there, the window 214-277 spans both gulps
    assert [(f.t_start_tag - TAG0) // TPS for _, f in out] == [0, 150, 214, 278]
    allspec = np.full((350, *gs[0].shape[1:]), np.nan, np.float32)
    allspec[:100], allspec[150:250], allspec[250:] = gs
    for data, f in out:
        k0 = (f.t_start_tag - TAG0) // TPS
        np.testing.assert_array_equal(data, mean64(allspec[k0:k0 + 64]))
    st = avg.status()
    assert st["gaps"] == 1 and st["spectra_skipped"] == 50
    assert st["spectra_dropped"] == 36  # the unfinished window (64-99) before the gap
    with pytest.raises(ValueError, match="before"):
        avg.add(gs[0], start=300)


def test_readonly_views_are_averaged_without_copy_and_output_is_reused():
    g = gulps(1, 64)[0]
    flat = g.reshape(1, -1)  # Bifrost's (nringlet, n) view
    flat.flags.writeable = False
    view = flat.reshape(g.shape)
    assert not view.flags.writeable and np.shares_memory(view, g)
    avg = Averager(32)
    avg.begin_sequence(ring_header())
    f1, f2 = list(avg.add(view))
    assert f1.data is f2.data  # one output buffer, overwritten frame after frame
    np.testing.assert_array_equal(f2.data, g[32:].astype(np.float64).mean(0).astype(np.float32))


def test_bad_input_is_refused():
    avg = Averager(4)
    with pytest.raises(RuntimeError):
        avg.add(np.zeros((4, 1, 16, 4), np.float32))
    avg.begin_sequence(ring_header())
    with pytest.raises(ValueError, match="shape"):
        avg.add(np.zeros((4, 1, 8, 4), np.float32))
    with pytest.raises(TypeError):
        list(avg.add(np.zeros((4, 1, 16, 4), np.float64)))
    with pytest.raises(ValueError):
        list(avg.add(np.zeros((4, 1, 16, 8), np.float32)[..., ::2]))
    with pytest.raises(ValueError, match="navg"):
        SequenceInfo.from_header({"time_tag": 1, "nbeam": 1, "nchan": 1, "npol": 1})
    with pytest.raises(ValueError):
        Averager(0)


def test_sequence_info_from_the_ring_header():
    info = SequenceInfo.from_header(ring_header(nchan=3072))
    assert info.pols == "XX,YY,XY_real,XY_imag"
    assert info.chan_bw == clock.CHAN_BW
    meta = info.metadata()
    assert meta == {"navg": 24, "chan0": 600, "cfreq0": 600 * clock.CHAN_BW,
                    "bw": 3072 * clock.CHAN_BW, "chan_bw": clock.CHAN_BW,
                    "pols": "XX,YY,XY_real,XY_imag"}


# --- Publisher -----------------------------------------------------------------------------

@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def subscriber(ctx, endpoint, rcvhwm=1000):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, rcvhwm)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(endpoint)
    return s


def frames_for(n, nint=512, nchan=3072):
    avg = Averager(nint)
    avg.begin_sequence(ring_header(nchan=nchan))
    # each frame with its own copy of the data (the Averager reuses one output buffer)
    made = collect(avg, gulps(n, nint, nchan=nchan))
    return [(d, dataclasses.replace(f, data=d)) for d, f in made]


def test_publisher_sends_every_v1_and_v2_key_on_an_ephemeral_port(ctx):
    with Publisher(port=0) as pub:
        assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith(":0")
        sub = subscriber(ctx, pub.endpoint)
        assert pub.wait_for_subscribers(1, 5.0)
        pub.beam = 3
        sent = frames_for(3)
        for _, f in sent:
            assert pub.send(f)
        for k, (data, f) in enumerate(sent):
            assert sub.poll(5000)
            parts = sub.recv_multipart()
            h, payload = protocol.decode(parts)
            raw = json.loads(parts[1])
            assert list(raw)[:8] == V1_KEYS  # the deployed keys first, in the deployed order
            assert raw["last_block_time"] == str(clock.tag_to_datetime(f.t_end_tag))
            assert raw["data_shape"] == [1, 3072, 4] and raw["data_type"] == "<f4"
            assert raw["time_tag"] == TAG0
            assert {k2: raw[k2] for k2 in ("proto", "seq", "beam", "t_start_tag", "t_end_tag",
                                           "nint", "navg", "chan0", "pols", "encoding")} == {
                "proto": 2, "seq": k, "beam": 3, "t_start_tag": f.t_start_tag,
                "t_end_tag": f.t_end_tag, "nint": 512, "navg": 24, "chan0": 600,
                "pols": "XX,YY,XY_real,XY_imag", "encoding": "raw"}
            assert raw["cfreq0"] == 600 * clock.CHAN_BW and raw["chan_bw"] == clock.CHAN_BW
            assert raw["bw"] == 3072 * clock.CHAN_BW
            assert raw["sender_id"] == pub.sender_id and len(pub.sender_id) == 16
            assert abs(raw["timestamp"] - time.time()) < 5
            assert h.end_tag == f.t_end_tag
            np.testing.assert_array_equal(payload, data)
        assert pub.flush(5)  # the publishing thread counts a message once it is sent
        assert pub.status()["sent"] == 3 and pub.seq == 3 and pub.dropped == 0
        sub.close()
    with Publisher(port=0) as other:
        assert other.sender_id != pub.sender_id


def test_a_reader_knowing_only_v1_keys_decodes_our_messages(ctx):
    with Publisher(endpoint="tcp://127.0.0.1:*") as pub:
        sub = subscriber(ctx, pub.endpoint)
        assert pub.wait_for_subscribers(1, 5.0)
        (data, f), = frames_for(1)
        pub.send(f)
        assert sub.poll(5000)
        topic, hdr, payload = sub.recv_multipart()
        sub.close()
    # what the deployed StreamReceiver does, with json and numpy only
    assert topic == b"data"
    header = json.loads(hdr.decode())
    arr = np.frombuffer(payload, dtype=np.float32)
    assert arr.size == 1 * 3072 * 4
    arr = arr.reshape(header["data_shape"])
    np.testing.assert_array_equal(arr, data)
    stokes_i = (arr[0, :, 0] + arr[0, :, 1]) / 2
    assert stokes_i.shape == (3072,)
    end = dt.datetime.strptime(header["last_block_time"], "%Y-%m-%d %H:%M:%S.%f")
    assert header["last_block_time"] == str(end)
    assert end == clock.tag_to_datetime(f.t_end_tag)
    assert header["time_tag"] == TAG0 and header["data_type"] == "<f4"


def test_full_queue_drops_the_oldest_frame_and_its_seq_is_a_counted_gap(ctx):
    with Publisher(port=0, sndhwm=1, queue=4, nodrop=True) as pub:
        sub = subscriber(ctx, pub.endpoint, rcvhwm=1)  # reads only later: the thread stalls
        assert pub.wait_for_subscribers(1, 5.0)
        (_, f), = frames_for(1, nint=8, nchan=65536)  # 1 MiB messages fill the TCP buffers
        results = [pub.send(f) for _ in range(300)]
        assert all(results)  # never refused, never waited for
        st = pub.status()
        assert st["seq"] == 300 and st["dropped"] >= 300 - 4 - st["sent"] - 1
        seqs = []
        while len(seqs) < 300 - pub.dropped and sub.poll(5000):
            seqs.append(json.loads(sub.recv_multipart()[1])["seq"])
        assert pub.flush(5.0)
        st = pub.status()
        assert st["sent"] + st["dropped"] == 300 and st["errors"] == 0
        assert seqs == sorted(seqs) and len(seqs) == st["sent"]
        # the newest frames survive (one slot was the frame the thread was stuck on)
        assert seqs[-3:] == [297, 298, 299]
        sub.close()


def test_block_and_nodrop_mode_waits_for_a_slow_receiver_and_loses_nothing(ctx):
    with Publisher(port=0, sndhwm=1, queue=2, block=True, nodrop=True) as pub:
        sub = subscriber(ctx, pub.endpoint, rcvhwm=1)
        assert pub.wait_for_subscribers(1, 5.0)
        (_, f), = frames_for(1, nint=8, nchan=65536)
        refused = 0
        while pub.send(f, timeout=0.2):  # nobody reads: the queue fills, then send waits
            assert pub.seq < 1000
        refused += 1
        queued = pub.seq
        assert pub.dropped == 0 and queued > 2
        feeder = threading.Thread(target=lambda: [pub.send(f) for _ in range(20)])
        feeder.start()
        seqs = []
        while len(seqs) < queued + 20 and sub.poll(5000):
            seqs.append(json.loads(sub.recv_multipart()[1])["seq"])
        feeder.join(10)
        assert seqs == list(range(queued + 20)) and refused == 1
        # the publishing thread counts a message once its send returned: the subscriber may
        # hold the last one a moment before that
        assert wait_until(lambda: pub.status()["sent"] == queued + 20)
        assert pub.status()["dropped"] == 0
        sub.close()


def test_only_the_protocols_subscriptions_are_applied_others_are_refused(ctx):
    with Publisher(port=0) as pub:
        odd = ctx.socket(zmq.SUB)
        odd.setsockopt(zmq.LINGER, 0)
        odd.setsockopt(zmq.SUBSCRIBE, b"d")  # a prefix of b"data": a plain PUB would match
        odd.connect(pub.endpoint)
        good = ctx.socket(zmq.SUB)
        good.setsockopt(zmq.LINGER, 0)
        good.setsockopt(zmq.SUBSCRIBE, b"data")
        good.connect(pub.endpoint)
        assert pub.wait_for_subscribers(1, 5.0)
        assert wait_until(lambda: pub.status()["refused"] == 1)
        (_, f), = frames_for(1)
        pub.send(f)
        assert good.poll(5000) and good.recv_multipart()[0] == b"data"
        assert not odd.poll(300)
        st = pub.status()
        assert st["subscriptions"] == 1 and st["subscribed"] == 1 and st["refused"] == 1
        odd.close()
        good.close()


def test_an_oversized_inbound_message_drops_that_connection_and_is_counted(ctx):
    with Publisher(port=0) as pub:
        sub = subscriber(ctx, pub.endpoint)
        assert pub.wait_for_subscribers(1, 5.0)
        bad = ctx.socket(zmq.XSUB)
        bad.setsockopt(zmq.LINGER, 0)
        bad.setsockopt(zmq.RECONNECT_IVL, 10_000)  # do not come back during the test
        bad.connect(pub.endpoint)
        assert wait_until(lambda: pub.status()["connections"] == 2)
        bad.send(b"\x01" + b"x" * 100_000)
        assert wait_until(lambda: pub.status()["disconnects"] == 1)
        (_, f), = frames_for(1)
        pub.send(f)  # the good subscriber is unaffected
        assert sub.poll(5000) and json.loads(sub.recv_multipart()[1])["seq"] == 0
        assert pub.status()["refused"] == 0  # libzmq never handed the message over
        bad.close()
        sub.close()


def test_a_flood_of_distinct_subscriptions_is_refused_and_released_on_disconnect(ctx):
    with Publisher(port=0, max_foreign=2000) as pub:
        sub = subscriber(ctx, pub.endpoint)
        assert pub.wait_for_subscribers(1, 5.0)
        flood = ctx.socket(zmq.XSUB)
        flood.setsockopt(zmq.LINGER, 0)
        flood.setsockopt(zmq.SNDHWM, 0)
        flood.connect(pub.endpoint)
        for i in range(5000):
            flood.send(b"\x01t%06d" % i)
        assert wait_until(lambda: pub.status()["refused"] == 5000, 10)
        assert pub.status()["foreign"] == 5000
        (_, f), = frames_for(1)
        pub.send(f)  # the receiver is served meanwhile; the flooder gets nothing
        assert sub.poll(5000) and json.loads(sub.recv_multipart()[1])["seq"] == 0
        flood.close()
        assert wait_until(lambda: pub.status()["foreign"] == 0, 10)  # libzmq let them go
        assert pub.status()["subscribed"] == 1
        sub.close()


def test_unclosed_publisher_and_replayer_warn_when_collected():
    from sunspec.replay import Replayer

    for make in (lambda: Publisher(port=0), lambda: Replayer([], "tcp://127.0.0.1:*")):
        obj = make()
        with pytest.warns(ResourceWarning, match="unclosed"):
            del obj
            gc.collect()
    with Publisher(port=0) as pub:
        assert not pub.closed
    assert pub.closed


def test_default_lossy_mode_never_blocks_and_a_slow_subscriber_sees_seq_gaps(ctx):
    with Publisher(port=0, sndhwm=2) as pub:
        sub = subscriber(ctx, pub.endpoint, rcvhwm=2)
        assert pub.wait_for_subscribers(1, 5.0)
        (_, f), = frames_for(1, nint=8, nchan=65536)
        for _ in range(200):
            assert pub.send(f)  # never waits: a full queue drops its oldest frame
        seqs = []
        while sub.poll(300):
            seqs.append(json.loads(sub.recv_multipart()[1])["seq"])
        # once the subscriber has drained, one more frame gets through: the loss is a gap
        for _ in range(100):
            assert pub.send(f)
            if sub.poll(100):
                seqs.append(json.loads(sub.recv_multipart()[1])["seq"])
                break
        assert 0 < len(seqs) < pub.seq and seqs == sorted(seqs)
        assert np.any(np.diff(seqs) > 1)
        sub.close()


def test_close_is_prompt_with_a_stalled_subscriber_and_idempotent(ctx):
    pub = Publisher(port=0, linger=0.1)
    sub = subscriber(ctx, pub.endpoint, rcvhwm=1)
    assert pub.wait_for_subscribers(1, 5.0)
    (_, f), = frames_for(1, nint=8, nchan=65536)
    for _ in range(50):
        pub.send(f)
    pub.close()  # returns although the subscriber never reads (its linger is 0.1 s)
    pub.close()
    assert not pub.send(f) and pub.errors == 1
    sub.close()


def test_binding_a_used_port_raises_and_wait_times_out():
    with Publisher(port=0) as pub:
        port = int(pub.endpoint.rsplit(":", 1)[1])
        with pytest.raises(zmq.ZMQError):
            Publisher(port=port)
        t0 = time.perf_counter()
        assert not pub.wait_for_subscribers(1, 0.2)
        assert time.perf_counter() - t0 > 0.15  # it waited, then gave up


def test_close_sends_the_end_of_sequence_after_the_last_frame(ctx):
    pub = Publisher(port=0, queue=1)  # one slot: a frame offered while one waits may be dropped
    sub = subscriber(ctx, pub.endpoint)
    assert pub.wait_for_subscribers(1, 5.0)
    for _, f in frames_for(6):
        pub.send(f)
    offered, dropped = pub.seq, pub.dropped
    pub.close()
    assert pub.status()["end_sent"]
    got = []
    while sub.poll(2000):
        got.append(sub.recv_multipart())
        if got[-1][0] == protocol.END_TOPIC:
            break
    end = protocol.parse_end(got[-1][1])
    seqs = [protocol.decode(p)[0].seq for p in got[:-1]]
    assert (end.sender_id, end.seq_end, end.dropped) == (pub.sender_id, offered, dropped)
    assert offered == 6 and len(seqs) + dropped == 6 and seqs == sorted(seqs)
    sub.close()


def test_no_end_of_sequence_when_asked_or_when_nothing_was_offered(ctx):
    for kw, frames in (({"end_message": False}, 2), ({}, 0)):
        pub = Publisher(port=0, **kw)
        sub = subscriber(ctx, pub.endpoint)
        assert pub.wait_for_subscribers(1, 5.0)
        for _, f in frames_for(frames):
            pub.send(f)
        assert pub.flush()
        pub.close()
        topics = []
        while sub.poll(300):
            topics.append(sub.recv_multipart()[0])
        assert topics == [protocol.TOPIC] * frames and not pub.status()["end_sent"]
        sub.close()
