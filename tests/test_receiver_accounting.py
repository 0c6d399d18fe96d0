"""Every message a correct row or a named count (issue 11), over real sockets on 127.0.0.1.

Each test here failed on the receiver before issue 11: a stray frame replacing the ring, labels
that never followed chan0, sequence arithmetic, a second receiving thread, unbounded inbound
sizes, unchecked header values, float32 overflow in the 2:1 path.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from streams import TAG0, WINDOW, RawPublisher, const_frame, wait_until

from sunspec import Receiver, clock, protocol

# sends wait for room: nothing is dropped on our side
pytestmark = [pytest.mark.publisher(nodrop=True), pytest.mark.receiver(rcvhwm=10_000)]


def message(frame: np.ndarray, *, sender_id: str, seq: int, **extra) -> list[bytes]:
    """The frames of one version 2 message, made by hand."""
    h = protocol.make_header(nbeam=frame.shape[0], nchan=frame.shape[1], npol=frame.shape[2],
                             time_tag=TAG0, t_end_tag=TAG0 + (seq + 1) * WINDOW,
                             sender_id=sender_id, seq=seq, timestamp=1.75e9 + seq, **extra)
    return [bytes(p) for p in protocol.encode(frame, h)]


def accounted(st: dict) -> int:
    """Messages the status accounts for: rows, rejections, duplicates, frames waiting for a
    geometry to be confirmed, ends of sequence."""
    return (st["frames_received"] + st["rejected_total"] + st["duplicates"]
            + st["geometry_pending"] + st["sequence_ends"])


def settled(r: Receiver, messages: int) -> dict:
    """The status once ``messages`` messages have been taken off the socket and handled
    (each one accounted for exactly once)."""
    snap: list[dict] = []

    def done() -> bool:
        snap[:] = [r.status()]
        return snap[0]["messages"] == accounted(snap[0]) == messages

    assert wait_until(done, 10), snap
    assert snap[0]["running"]
    return snap[0]


# --- 1. a change of geometry must be confirmed -----------------------------------------------
def test_a_stray_frame_of_another_geometry_leaves_the_ring(pub, receiver_for):
    r = receiver_for(buffer_length=100)
    for i in range(20):
        pub.send(const_frame(i))
    settled(r, 20)
    ring = r.ring
    # a stray peer: another sender_id and geometry, one frame
    pub.send_parts(message(const_frame(-1.0, nchan=64), sender_id="stray", seq=0))
    for i in range(20, 25):
        pub.send(const_frame(i))
    st = settled(r, 26)
    assert r.ring is ring and ring.held == 25
    assert r.get_latest_data(100)[:, 0].tolist() == list(range(25))
    assert st["rejected"]["unconfirmed"] == 1 and st["geometry_changes"] == 0
    assert st["geometry_pending"] == 0 and r.stream_info["nchan"] == 3072


def test_a_new_geometry_waits_for_a_run_then_keeps_its_frames(pub, receiver_for):
    r = receiver_for(buffer_length=100, confirm_frames=3)
    for i in range(5):
        pub.send(const_frame(i))
    settled(r, 5)
    ring = r.ring
    pub.sender_id, pub.seq = "reconfigured", 0
    pub.send(const_frame(100.0, nchan=1024), chan0=900)
    pub.send(const_frame(101.0, nchan=1024), chan0=900)
    st = settled(r, 7)
    # waiting: counted, the old ring and its labels current and readable
    assert st["geometry_pending"] == 2 and st["frames_received"] == 5
    assert r.ring is ring and r.stream_info["sender_id"] == "test-sender"
    assert r.get_latest_data(100)[:, 0].tolist() == list(range(5))
    pub.send(const_frame(102.0, nchan=1024), chan0=900)
    st = settled(r, 8)
    assert r.ring is not ring and r.ring.nfreq == 512
    rows = r.get_latest(100)
    assert rows.data[:, 0].tolist() == [100.0, 101.0, 102.0] and rows.seq.tolist() == [0, 1, 2]
    assert st["geometry_pending"] == 0 and st["geometry_changes"] == 1
    assert st["frames_received"] == 8 and st["senders"]["reconfigured"]["rows"] == 3
    assert r.stream_info["chan0"] == 900 and r.stream_info["sender_id"] == "reconfigured"


def test_a_forged_id_cannot_confirm_without_a_run(pub, receiver_for):
    """Frames of a new geometry whose seq are not consecutive never replace the ring."""
    r = receiver_for(confirm_frames=2)
    pub.send(const_frame(1.0))
    settled(r, 1)
    ring = r.ring
    for seq in (10, 20, 30):  # each breaks the run of the one before
        pub.send_parts(message(const_frame(2.0, nchan=64), sender_id="test-sender", seq=seq))
    pub.send(const_frame(3.0), seq=31)
    st = settled(r, 5)
    assert r.ring is ring and st["rejected"]["unconfirmed"] == 3
    assert r.get_latest_data(10)[:, 0].tolist() == [1.0, 3.0]


# --- 2. labels follow chan0 at the same shape -----------------------------------------------
def test_a_new_chan0_at_the_same_shape_relabels_the_rows(pub, receiver_for):
    r = receiver_for(factor=2)
    for i in range(3):
        pub.send(const_frame(i), chan0=600, chan_bw=clock.CHAN_BW)
    settled(r, 3)
    pub.sender_id, pub.seq = "restarted", 0
    for i in range(3):
        pub.send(const_frame(10 + i), chan0=1234, chan_bw=clock.CHAN_BW)
    settled(r, 6)
    rows = r.get_latest(10)
    assert rows.data[:, 0].tolist() == [10.0, 11.0, 12.0]
    assert rows.freqs_mhz[0] == pytest.approx(1234.5 * clock.CHAN_BW / 1e6)
    assert r.stream_info["chan0"] == 1234
    assert r.status()["geometry_changes"] == 1


# --- 3. sequence arithmetic -------------------------------------------------------------------
def test_an_implausible_seq_jump_is_a_restart_not_a_loss(pub, receiver_for):
    r = receiver_for()
    for i, seq in enumerate((0, 1, 2**63 - 1)):
        pub.send(const_frame(i), seq=seq, t_end_tag=TAG0 + (i + 1) * WINDOW)
    st = settled(r, 3)
    assert st["lost"] == 0 and st["restarts"] == 1 and st["frames_received"] == 3


def test_an_exact_duplicate_is_counted_not_a_row(pub, receiver_for):
    r = receiver_for()
    parts = message(const_frame(1.0), sender_id="s", seq=0)
    pub.send_parts(parts)
    pub.send_parts(parts)
    pub.send_parts(message(const_frame(2.0), sender_id="s", seq=1))
    st = settled(r, 3)
    assert st["duplicates"] == 1 and st["restarts"] == 0 and st["lost"] == 0
    assert r.get_latest_data(10)[:, 0].tolist() == [1.0, 2.0]
    assert st["senders"]["s"] == {"messages": 3, "rows": 2, "rejected": 0, "duplicates": 1,
                                  "pending": 0, "lost": 0, "span": 2, "last_seq": 1,
                                  "seq_end": None, "sender_dropped": None}


def test_the_same_seq_with_another_header_is_a_restart(pub, receiver_for):
    r = receiver_for()
    pub.send_parts(message(const_frame(1.0), sender_id="s", seq=0))
    pub.send_parts(message(const_frame(2.0), sender_id="s", seq=1))
    pub.send_parts(message(const_frame(3.0), sender_id="s", seq=1, beam=4))  # not a copy
    st = settled(r, 3)
    assert st["restarts"] == 1 and st["duplicates"] == 0
    assert st["lost"] == 1  # the restarted sender's seq 0 never came
    assert r.get_latest_data(10)[:, 0].tolist() == [1.0, 2.0, 3.0]


def test_a_rejected_message_is_not_also_lost(pub, receiver_for):
    r = receiver_for()
    bad = const_frame(1.0)
    bad[0, 5, 0] = np.inf
    pub.send_parts(message(const_frame(1.0), sender_id="s", seq=0))
    pub.send_parts(message(bad, sender_id="s", seq=1))  # nonfinite
    short = message(const_frame(1.0), sender_id="s", seq=2)
    pub.send_parts([*short[:2], short[2][:-4]])  # size
    pub.send_parts(message(const_frame(1.0), sender_id="s", seq=3, chan_bw=-1.0))  # keys
    pub.send_parts(message(const_frame(4.0), sender_id="s", seq=4))
    st = settled(r, 5)
    assert st["lost"] == 0 and st["frames_received"] == 2
    assert {k: v for k, v in st["rejected"].items() if v} == {"nonfinite": 1, "size": 1,
                                                               "keys": 1}
    assert st["senders"]["s"]["rejected"] == 3 and st["senders"]["s"]["span"] == 5


def test_late_arrival_takes_back_its_loss(pub, receiver_for):
    r = receiver_for()
    for seq in (0, 1, 3, 2, 4):
        pub.send_parts(message(const_frame(seq), sender_id="s", seq=seq))
    st = settled(r, 5)
    assert st["lost"] == 0 and st["restarts"] == 0 and st["frames_received"] == 5
    assert r.get_latest(10).seq.tolist() == [0, 1, 3, 2, 4]  # rows in arrival order


def test_loss_at_the_end_of_a_sequence_is_counted(pub, receiver_for):
    r = receiver_for()
    for seq in range(5):
        pub.send_parts(message(const_frame(seq), sender_id="s", seq=seq))
    pub.send_parts(protocol.encode_end("s", seq_end=8, dropped=1))
    st = settled(r, 6)
    assert st["lost"] == 3 and st["sequence_ends"] == 1 and st["rejected_total"] == 0
    s = st["senders"]["s"]
    assert s["span"] == 8 and s["seq_end"] == 8 and s["sender_dropped"] == 1
    assert s["messages"] - s["duplicates"] + s["lost"] == s["span"]


def test_messages_of_a_restarted_sender_before_reconnection_are_lost(pub, receiver_for):
    r = receiver_for()
    for seq in range(3):
        pub.send_parts(message(const_frame(seq), sender_id="first", seq=seq))
    # the sender restarts; its seq 0..3 went out before we (re)connected
    pub.send_parts(message(const_frame(9.0), sender_id="second", seq=4))
    st = settled(r, 4)
    assert st["restarts"] == 1 and st["lost"] == 4
    assert st["senders"]["second"]["span"] == 5


def test_flood_losses_counted_exactly():
    """A publisher with a tiny SNDHWM floods; every message is received or counted lost."""
    pub = RawPublisher(sndhwm=2)
    try:
        with Receiver(endpoint=pub.endpoint, rcvhwm=2, gc_interval=0) as r:
            pub.wait_subscriber()
            big = const_frame(1.0, nchan=32768)  # 512 KiB per message fills the pipes fast
            pub.send(big)  # the span starts with the first message we hear: make it seq 0
            assert wait_until(lambda: r.status()["frames_received"] == 1, 10)
            for _ in range(2000):
                pub.send(big)
            # the span ends with the last message we hear: send until one of them arrives
            for _ in range(100):
                pub.send(big)
                if wait_until(lambda: r.status()["last_seq"] == pub.seq - 1, 1):
                    break
            sent = pub.seq
            st = r.status()
            assert st["last_seq"] == sent - 1
            assert st["frames_received"] + st["lost"] == sent
            assert st["senders"]["test-sender"]["span"] == sent
    finally:
        pub.close()


# --- 4. one receiving thread, stop noticed mid-batch -----------------------------------------
def test_stop_never_leaves_two_threads(pub, receiver_for):
    r = receiver_for()
    accept = r._accept
    inside, release = threading.Event(), threading.Event()

    def slow(h, arrival):
        inside.set()
        release.wait(10)
        accept(h, arrival)

    r._accept = slow
    for i in range(50):
        pub.send(const_frame(i))
    assert inside.wait(10)
    r.stop(timeout=0.01)  # the thread is inside a message: it cannot have ended
    assert r.running
    r.stop_timeout = 0.01
    with pytest.raises(RuntimeError, match="not stopped"):
        r.start()
    release.set()
    assert wait_until(lambda: not r.running, 10)
    # it noticed the stop after the message it was in, not after its whole batch
    assert r.status()["frames_received"] == 1
    r._accept = accept
    r.stop_timeout = 2.0
    pub.forget_subscriptions()
    r.start()
    pub.wait_subscriber()
    pub.send(const_frame(99.0))
    assert wait_until(lambda: r.status()["frames_received"] == 2)
    alive = [t for t in threading.enumerate() if t.name.startswith("sunspec-recv")]
    assert len(alive) == 1 and r.get_latest_data(5)[-1, 0] == 99.0


# --- 5. bounded inbound sizes ----------------------------------------------------------------
def test_a_header_over_the_limit_is_oversize_unparsed(pub, receiver_for):
    r = receiver_for()  # max_header_bytes 1 MiB
    parts = message(const_frame(1.0), sender_id="s", seq=0)
    padded = parts[1][:-1] + b" " * (2 * 1024 * 1024) + b"}"  # valid JSON, 2 MiB
    json.loads(padded)
    pub.send_parts([parts[0], padded, parts[2]])
    pub.send_parts(message(const_frame(2.0), sender_id="s", seq=1))
    st = settled(r, 2)
    assert st["rejected"]["oversize"] == 1 and r.get_latest_data(5)[:, 0].tolist() == [2.0]


def test_a_frame_over_max_message_bytes_drops_the_connection_counted(pub, receiver_for):
    r = receiver_for(max_message_bytes=200_000, max_header_bytes=64 * 1024)
    pub.forget_subscriptions()
    pub.send(const_frame(1.0, nchan=65536))  # 1 MiB payload: over the socket's limit
    assert wait_until(lambda: r.status()["disconnects"] >= 1, 10), r.status()
    pub.wait_subscriber(timeout=10)  # it reconnects and subscribes again
    pub.send(const_frame(2.0))
    assert wait_until(lambda: r.status()["frames_received"] == 1, 10)
    st = r.status()
    assert st["rejected_total"] == 0 and r.get_latest_data(5)[:, 0].tolist() == [2.0]


# --- 6. header values nobody checked ---------------------------------------------------------
@pytest.mark.parametrize("change", [
    {"chan0": 10**400}, {"chan0": -1}, {"chan_bw": 0}, {"cfreq0": "x"},
    {"sender_id": "a\x00b"}, {"sender_id": "sender\u00e9"}, {"t_start_tag": 2**63},
])
def test_bad_keys_that_shape_or_label_reject_the_frame(pub, receiver_for, change):
    r = receiver_for()
    parts = message(const_frame(1.0), sender_id="s", seq=0)
    h = {**json.loads(parts[1]), **change}
    pub.send_parts([parts[0], json.dumps(h).encode(), parts[2]])
    st = settled(r, 1)
    assert st["rejected"]["keys"] == 1 and st["rejected"]["internal"] == 0


def test_bad_optional_keys_are_dropped_and_counted_data_kept(pub, receiver_for):
    r = receiver_for()
    pub.send_parts(message(const_frame(5.0), sender_id="s", seq=0, beam=2**64, navg=0,
                           pols="XX,YY", nint=24))
    st = settled(r, 1)
    assert st["keys_ignored"] == 3 and st["frames_received"] == 1
    info = r.stream_info
    assert "beam" not in info and "navg" not in info and "pols" not in info
    assert info["nint"] == 24
    json.dumps(info, allow_nan=False)  # valid JSON by construction


def test_stream_info_carries_only_checked_keys(pub, receiver_for):
    r = receiver_for()
    parts = message(const_frame(1.0), sender_id="s", seq=0, chan0=600)
    h = {**json.loads(parts[1]), "note": {"x": [1e308, "\x00"]}, "beam": 1.5}
    pub.send_parts([parts[0], json.dumps(h).encode(), parts[2]])
    settled(r, 1)
    info = r.stream_info
    assert "note" not in info and "beam" not in info and info["chan0"] == 600
    json.dumps(info, allow_nan=False)


# --- 7. the 2:1 path near float32's maximum ---------------------------------------------------
def test_values_near_float32_max_stay_finite(pub, receiver_for):
    r = receiver_for(factor=2)
    f = const_frame(3e38)
    f[0, 1::2, 0] = 3.2e38
    pub.send(f)
    st = settled(r, 1)
    assert st["frames_received"] == 1 and st["rejected_total"] == 0
    ref = f[0, :, 0].astype(np.float64).reshape(-1, 2).mean(1).astype(np.float32)
    np.testing.assert_array_equal(r.get_latest_data(1)[0], ref)
    assert st["latest_mean"] == pytest.approx(3.1e38)  # the status too stays finite
    json.dumps(r.status(), allow_nan=False)
