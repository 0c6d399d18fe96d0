"""Receiver over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import numpy as np
import pytest
import zmq
from streams import TAG0, WINDOW, RawPublisher, const_frame, wait_until
from test_receiver_accounting import settled

from sunspec import Receiver, StatusBoard, StreamReceiver, clock, protocol
from sunspec import receiver as receiver_module
from sunspec.ring import RingBuffer


def frames_received(r, n, timeout=5.0):
    assert wait_until(lambda: r.get_buffer_status()["frames_received"] >= n, timeout), (
        r.get_buffer_status())


def test_rows_equal_numpy_reference_with_times_in_order(pub, receiver_for):
    r = receiver_for(buffer_length=8)
    rng = np.random.default_rng(5)
    frames = [rng.random((1, 3072, 4), dtype=np.float32) * 1e6 for _ in range(12)]
    for f in frames:
        pub.send(f, chan0=600, chan_bw=clock.CHAN_BW)
    frames_received(r, 12)
    rows = r.get_latest(100)
    assert len(rows) == 8  # only the newest buffer_length rows, oldest first
    for i, f in enumerate(frames[4:]):
        ref = f.reshape(3072, 4)[:, 0].reshape(1536, 2).mean(1)
        np.testing.assert_array_equal(rows.data[i], ref)
    np.testing.assert_array_equal(rows.seq, np.arange(4, 12))
    np.testing.assert_array_equal(rows.time_tags, TAG0 + (np.arange(4, 12) + 1) * WINDOW)
    assert rows.times[0] == np.datetime64(clock.tag_to_datetime(TAG0 + 5 * WINDOW))
    assert np.all(np.diff(rows.end_unix) > 0)
    np.testing.assert_allclose(rows.freqs_mhz[:2], np.array([600.5, 602.5]) * clock.CHAN_BW / 1e6)
    np.testing.assert_array_equal(r.get_latest_data(3), rows.data[-3:])
    st = r.get_buffer_status()
    assert st["frames_received"] == 12 and st["frames_held"] == 8 and st["lost"] == 0
    assert st["rejected_total"] == 0 and st["sender_id"] == "test-sender"
    assert st["buffer_shape"] == (8, 1536)
    assert st["latest_mean"] == pytest.approx(float(rows.data[-1].mean()))
    assert st["delay_s"] >= 0


@pytest.mark.parametrize("product, factor", [("I", 4), ("V", 2), (1, 1)])
def test_products_and_factors(pub, receiver_for, product, factor):
    r = receiver_for(product=product, factor=factor, chan0=600)
    f = np.random.default_rng(1).random((1, 3072, 4), dtype=np.float32)
    pub.send(f)
    frames_received(r, 1)
    x = f[0].astype(np.float64)
    v = {"I": (x[:, 0] + x[:, 1]) / 2, "V": x[:, 3], 1: x[:, 1]}[product]
    np.testing.assert_array_equal(r.get_latest_data(1)[0],
                                  v.reshape(-1, factor).mean(1).astype(np.float32))
    # a version 2 stream without chan0 and a user chan0: frequencies from the user's chan0
    assert r.get_latest(1).freqs_mhz[0] == pytest.approx(
        (600 + (factor - 1) / 2) * clock.CHAN_BW / 1e6)


def test_v1_stream_from_deployed_recorder(pub, receiver_for):
    r = receiver_for()
    f = const_frame(3.0)
    header = {"time_tag": TAG0, "nbeam": 1, "nchan": 3072, "npol": 4, "timestamp": time.time(),
              "last_block_time": "2025-08-01 12:00:00.514191", "data_shape": [1, 3072, 4],
              "data_type": "<f4"}
    pub.send_parts([b"data", json.dumps(header).encode(), f.tobytes()])
    frames_received(r, 1)
    rows = r.get_latest(1)
    assert rows.data[0, 0] == 3.0 and rows.seq[0] == -1 and rows.freqs_mhz is None
    assert str(rows.times[0]) == "2025-08-01T12:00:00.514191"


def test_receiver_started_before_sender_exists():
    probe = RawPublisher()
    endpoint = probe.endpoint
    probe.close()  # the port is free again: nobody is sending there
    with Receiver(endpoint=endpoint) as r:
        time.sleep(0.3)
        assert r.running and r.get_buffer_status()["frames_received"] == 0
        assert r.get_latest_data(5).shape[0] == 0
        late = RawPublisher(endpoint=endpoint)
        try:
            late.wait_subscriber(timeout=10)
            late.send(const_frame(1.0))
            frames_received(r, 1)
        finally:
            late.close()


def test_receiver_started_after_sender_gets_only_new_frames(pub):
    for i in range(5):
        pub.send(const_frame(i))  # nobody listens: these are gone, as in PUB/SUB
    with Receiver(endpoint=pub.endpoint) as r:
        pub.wait_subscriber()
        pub.send(const_frame(9.0))
        frames_received(r, 1)
        assert r.get_latest_data(10)[:, 0].tolist() == [9.0]
        # frames sent before we subscribed were never ours to lose
        assert r.get_buffer_status()["lost"] == 0


def test_sender_restart_is_counted_and_reception_goes_on(pub, receiver_for):
    r = receiver_for()
    for i in range(3):
        pub.send(const_frame(i))
    frames_received(r, 3)
    pub.sender_id, pub.seq = "restarted", 0
    for i in range(2):
        pub.send(const_frame(10 + i))
    frames_received(r, 5)
    st = r.get_buffer_status()
    assert st["restarts"] == 1 and st["lost"] == 0 and st["sender_id"] == "restarted"
    # the same sender_id with seq going back (a v2 sender without a new id) is a restart too
    pub.send(const_frame(20), seq=0)
    frames_received(r, 6)
    assert r.get_buffer_status()["restarts"] == 2
    assert r.get_latest_data(6)[:, 0].tolist() == [0, 1, 2, 10, 11, 20]


def test_seq_gaps_counted_as_lost(pub, receiver_for):
    r = receiver_for()
    for seq in (0, 1, 5, 6, 10):
        pub.send(const_frame(seq), seq=seq)
    frames_received(r, 5)
    assert r.get_buffer_status()["lost"] == 3 + 3


def bad_messages(pub):
    """Bad messages by the reason they are rejected for; each has a seq of its own (the same
    seq twice is a duplicate or a restart)."""
    payload = const_frame(0.0).tobytes()
    nan_frame = const_frame(1.0)
    nan_frame[0, 100, 0] = np.nan

    def header(**kw):
        h = {**pub.header(const_frame(0.0)), **kw}
        pub.seq += 1
        return json.dumps(h).encode()

    def with_hdr(**kw):
        return [b"data", header(**kw), payload]

    return {
        "parts": [[b"data", header()], [b"data", header(), payload, b"extra"], [b"data"]],
        "topic": [[b"status", header(), payload], [b"dat", header(), payload]],
        "header": [[b"data", b"{not json", payload], [b"data", b"[]", payload],
                   [b"data", b"\xff", payload]],
        "keys": [with_hdr(nchan="3072"), with_hdr(timestamp=None)],
        "dtype": [with_hdr(data_type="<f8")],
        "encoding": [with_hdr(encoding="zstd")],
        "size": [[b"data", header(), payload[:-4]], [b"data", header(), payload + payload]],
        "nonfinite": [[b"data", header(), nan_frame.tobytes()]],
        # a 1-pol stream cannot give the product I
        "geometry": [with_hdr(nbeam=1, npol=1, nchan=12288, data_shape=[1, 12288, 1])],
    }


def test_each_bad_input_is_counted_never_written(pub, receiver_for):
    r = receiver_for(beam_index=0, product="I", factor=2)
    pub.send(const_frame(7.0))
    frames_received(r, 1)
    before = r.get_latest(10)
    cases = bad_messages(pub)
    for msgs in cases.values():
        for parts in msgs:
            pub.send_parts(parts)
    expected = {k: len(v) for k, v in cases.items()}
    assert wait_until(lambda: r.get_buffer_status()["rejected_total"] == sum(expected.values()))
    st = r.get_buffer_status()
    assert {k: v for k, v in st["rejected"].items() if v} == expected
    after = r.get_latest(10)
    np.testing.assert_array_equal(after.data, before.data)
    assert st["frames_received"] == 1 and st["running"]
    pub.send(const_frame(8.0))  # still alive and well
    frames_received(r, 2)
    assert r.get_latest_data(1)[0, 0] == 8.0


def test_oversized_message_rejected(pub, receiver_for):
    r = receiver_for(max_message_bytes=100_000)
    pub.send(const_frame(1.0, nchan=65536))  # 1 MiB
    pub.send(const_frame(2.0))
    frames_received(r, 1)
    st = r.get_buffer_status()
    assert st["rejected"]["oversize"] == 1 and r.get_latest_data(5)[:, 0].tolist() == [2.0]


def test_geometry_change_starts_a_fresh_ring(pub, receiver_for):
    r = receiver_for(factor=2)
    pub.send(const_frame(1.0))
    frames_received(r, 1)
    first = r.ring
    for i in range(3):  # confirm_frames = 3 consecutive frames of the new geometry
        pub.send(const_frame(2.0 + i, nbeam=2, nchan=1024))
    frames_received(r, 4)
    assert r.ring is not first and r.ring.nfreq == 512
    assert r.get_latest_data(10)[:, 0].tolist() == [2.0, 3.0, 4.0]  # none lost waiting
    st = r.get_buffer_status()
    assert st["geometry_changes"] == 1 and st["geometry_pending"] == 0
    assert first.latest(5).data.shape == (1, 1536)  # the old ring is intact for its readers


@pytest.mark.parametrize("pub", [{"nodrop": True}], indirect=True)  # every message arrives,
def test_readers_never_see_a_torn_row(pub, receiver_for):               # however slow we are
    r = receiver_for(buffer_length=16, gc_interval=0, rcvhwm=5000)
    stop = threading.Event()
    torn = []
    reads = [0]

    def reader():
        while not stop.is_set():
            rows = r.get_latest(16)
            for row, seq in zip(rows.data, rows.seq, strict=True):
                if not (row == row[0]).all() or row[0] != seq:
                    torn.append((seq, row[0], row.min(), row.max()))
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(3000):
            pub.send(const_frame(float(i)))
            if i % 500 == 0:  # readers and writer overlap all along
                n = reads[0]
                assert wait_until(lambda n=n: reads[0] > n + 5, 20)
        assert wait_until(lambda: r.get_buffer_status()["last_seq"] == 2999, 20)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not torn, torn[:5]
    assert r.get_buffer_status()["frames_received"] == 3000


def test_ring_since_and_wait_follow_every_frame(pub, receiver_for):
    r = receiver_for(buffer_length=4)
    got = []

    def consumer():
        ring = r.wait_for_ring(10)
        cursor = 0
        while cursor < 10 and ring.wait(cursor, 10):
            rows = ring.since(cursor)
            assert rows.missed == 0
            got.extend(rows.seq.tolist())
            cursor = rows.next_index

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(10):
        pub.send(const_frame(i))
        assert wait_until(lambda i=i: len(got) > i, 10)  # the consumer keeps up: nothing missed
    t.join(10)
    assert got == list(range(10))
    rows = r.ring.since(0)  # ring of 4: six were overwritten
    assert rows.missed == 6 and rows.seq.tolist() == [6, 7, 8, 9] and rows.first_index == 6


def open_pipes() -> int:
    """File descriptors of this process that are pipes."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own fd, closed by now
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return n


def test_stop_is_prompt_and_restartable(pub, monkeypatch):
    # the thread would wait 30 min between stall checks: stop() wakes it (or the test fails)
    monkeypatch.setattr(receiver_module, "POLL_INTERVAL", 3600.0)
    r = Receiver(endpoint=pub.endpoint, stall_timeout=3600.0)
    pipes = open_pipes()
    for _ in range(3):
        r.start()
        assert r.running and open_pipes() == pipes + 2  # its wake pipe
        r.stop(timeout=60)
        assert not r.running and open_pipes() == pipes
    r.stop()  # idempotent

    def session(value: float, total: int) -> None:
        """Restart the receiver, send one frame, wait for it, stop again."""
        time.sleep(0.1)
        pub.forget_subscriptions()
        with r:
            pub.wait_subscriber()
            pub.send(const_frame(value))
            frames_received(r, total)

    session(4.0, 1)
    assert r.get_latest_data(1)[0, 0] == 4.0  # data stays readable after stop
    pub.send(const_frame(5.0))  # sent while nobody listens: not ours to lose
    session(6.0, 2)
    assert r.get_latest_data(5)[:, 0].tolist() == [4.0, 6.0]
    assert r.get_buffer_status()["lost"] == 0


def test_memory_api_and_gc(pub, receiver_for):
    r = receiver_for(gc_interval=5)
    for burst in range(2):  # GC runs after a burst of at least 5, never inside one
        for i in range(6):
            pub.send(const_frame(i))
        frames_received(r, 6 * (burst + 1))
        assert wait_until(lambda burst=burst: r.get_buffer_status()["gc_runs"] >= burst + 1)
    info = r.get_memory_info()
    assert info["rss_mb"] > 1 and info["ring_bytes"] >= 1201 * 1536 * 4
    assert isinstance(r.force_garbage_collection(), int)
    held = r.get_latest(100)
    res = r.optimize_memory()
    assert set(res) >= {"memory_before", "memory_after", "objects_collected"}
    np.testing.assert_array_equal(r.get_latest(100).data, held.data)  # never discards data
    st = r.get_buffer_status()
    assert st["gc_runs"] >= 3 and st["gc_time_ms"] >= 0
    assert st["process_us_mean"] > 0 and st["process_us_max"] >= st["process_us_mean"]


def test_stream_receiver_keeps_the_deployed_names(pub):
    r = StreamReceiver(stream_addr="127.0.0.1", stream_port=pub.port, buffer_length=50,
                       gc_interval=10)
    r.start()
    try:
        pub.wait_subscriber()
        pub.send(const_frame(1.0))
        frames_received(r, 1)
        assert r.get_latest_data(n_frames=10).shape == (1, 1536)
        st = r.get_buffer_status()
        assert st["buffer_shape"] == (50, 1536) and st["running"]
        assert {"rss_mb", "vms_mb"} <= set(r.get_memory_info())
    finally:
        r.stop()


def test_status_sections_are_merged_and_isolated(pub, receiver_for):
    board = StatusBoard()
    r = receiver_for(status_board=board)
    board.add("archive", lambda: {"files": 3})
    board.add("broken", lambda: 1 / 0)
    st = r.get_buffer_status()
    assert st["archive"] == {"files": 3} and "ZeroDivisionError" in st["broken"]["error"]
    assert "archive" not in r.status() and st["frames_received"] == r.status()["frames_received"]


def test_constructor_checks():
    with pytest.raises(ValueError, match="product"):
        Receiver(product="Q")
    with pytest.raises(ValueError, match="buffer_length"):
        Receiver(buffer_length=0)
    with pytest.raises(ValueError, match="factor"):
        Receiver(factor=0)
    with pytest.raises(ValueError, match="max_header_bytes"):
        Receiver(max_header_bytes=protocol.HEADER_LIMIT - 1)
    with pytest.raises(ValueError, match="confirm_frames"):
        Receiver(confirm_frames=0)
    with pytest.raises(ValueError, match="max_seq_gap"):
        Receiver(max_seq_gap=-1)


def test_random_malformed_messages_are_all_accounted_for(pub, receiver_for):
    """Seeded garbage: every message is a row or a counted rejection; rows stay good."""
    r = receiver_for(buffer_length=64)
    rng = np.random.default_rng(7)
    good = pub.header(const_frame(0.0))
    payload = const_frame(1.0).tobytes()
    junk_values = [None, True, -1, 0, 2**70, 1.5, float("nan"), "x", [], {}, [1, 2, 3]]
    sent_good = 0
    for _ in range(300):
        kind = rng.integers(6)
        h = dict(good, seq=pub.seq, timestamp=time.time())
        parts = [b"data", None, payload]
        if kind == 0:  # a key mutated to a value of another type
            key = list(h)[rng.integers(len(h))]
            h[key] = junk_values[rng.integers(len(junk_values))]
        elif kind == 1:  # a key removed
            del h[list(h)[rng.integers(len(h))]]
        elif kind == 2:  # random bytes instead of the header
            parts[1] = rng.bytes(int(rng.integers(0, 64)))
        elif kind == 3:  # payload cut or padded by a random amount
            parts[2] = payload[: int(rng.integers(0, len(payload)))] + rng.bytes(
                int(rng.integers(0, 3)) * 4)
        elif kind == 4:  # 1, 2 or 4 frames
            parts = [b"data", json.dumps(h).encode(), payload, b"x"][: int(rng.choice([1, 2, 4]))]
        if len(parts) == 3 and parts[1] is None:
            parts[1] = json.dumps(h).encode()
        pub.send_parts(parts)
        pub.seq += 1
        sent_good += kind == 5
    pub.send(const_frame(1.0))  # a last good one
    st = settled(r, 301)  # each one accounted for once (no duplicates, nothing pending)
    assert st["running"] and st["rejected"]["internal"] == 0
    assert st["frames_received"] + st["rejected_total"] == 301
    assert st["frames_received"] >= sent_good + 1
    rows = r.get_latest(64)
    assert (rows.data == 1.0).all()  # no garbage ever reached a row


def test_a_bug_while_handling_one_message_does_not_end_reception(pub, receiver_for):
    r = receiver_for()
    accept = r._accept
    calls = []

    def broken_once(h, arrival):
        calls.append(h.seq)
        if len(calls) == 1:
            raise RuntimeError("simulated bug")
        accept(h, arrival)

    r._accept = broken_once
    pub.send(const_frame(1.0))
    pub.send(const_frame(2.0))
    frames_received(r, 1)
    st = r.get_buffer_status()
    assert st["running"] and st["rejected"]["internal"] == 1
    assert r.get_latest_data(5)[:, 0].tolist() == [2.0]


def test_rows_share_the_rings_read_only_frequencies():
    ring = RingBuffer(4, 3, freqs_hz=np.array([10e6, 20e6, 30e6]))
    ring.commit(1, 0.0, 0, 0.0)
    a, b = ring.latest(1), ring.since(0)
    assert a.freqs_mhz is b.freqs_mhz is ring.freqs_mhz  # made once, not per read
    assert a.freqs_mhz.tolist() == [10.0, 20.0, 30.0]
    with pytest.raises(ValueError):
        a.freqs_mhz[0] = 1.0  # no reader can change another's frequencies
    assert RingBuffer(2, 3).latest(1).freqs_mhz is None


def test_a_terminated_context_ends_reception_and_the_sockets_are_closed(pub, caplog):
    context = zmq.Context()
    r = Receiver(endpoint=pub.endpoint, context=context).start()
    pub.wait_subscriber()
    ender = threading.Thread(target=context.term)  # returns once every socket is closed
    ender.start()
    ender.join(60)
    assert not ender.is_alive()  # the receiving thread closed its socket and its monitor
    assert wait_until(lambda: not r.running)
    assert r.failure is None and "receiving stopped" in caplog.text
    r.stop()
