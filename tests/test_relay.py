"""The relay over real ZeroMQ sockets on 127.0.0.1: forwarding, the last-value cache, the
public side's limits, encoded outputs, status and health."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zmq
from streams import RawPublisher, const_frame, wait_until

from sunspec import Receiver, encodings, protocol
from sunspec.relay import Output, Relay, stream_endpoints


class Sub:
    """A plain SUB socket collecting whole messages (header dict, payload bytes)."""

    def __init__(self, endpoint: str, topic: bytes = b"", rcvhwm: int = 1000):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)
        self.got: list[tuple[dict, bytes]] = []

    def drain(self, wait_ms: int = 0) -> int:
        while self.sock.poll(wait_ms):
            parts = self.sock.recv_multipart()
            assert len(parts) == 3 and parts[0] == b"data"
            self.got.append((json.loads(parts[1]), parts[2]))
            wait_ms = 0
        return len(self.got)

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        return wait_until(lambda: self.drain() >= n, timeout)

    @property
    def seqs(self) -> list[int]:
        return [h["seq"] for h, _ in self.got]

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def made():
    """Closes what a test made (publishers, relays, subscribers), in reverse order."""
    things: list = []
    yield things
    for t in reversed(things):
        t.stop() if isinstance(t, (Relay, Receiver)) else t.close()


def start_relay(made, pubs, outputs=("tcp://127.0.0.1:*",), **kw) -> Relay:
    relay = Relay([p.endpoint for p in pubs], list(outputs), **kw)
    made.append(relay)
    relay.start()
    for p in pubs:
        p.wait_subscriber()  # the relay's XSUB has subscribed upstream
    return relay


def make_pub(made, sender_id="up") -> RawPublisher:
    p = RawPublisher(sender_id=sender_id)
    made.append(p)
    return p


def subscribed(relay: Relay, n: int, stream: int = 0, output: int = 0) -> bool:
    """Wait until ``n`` subscriptions have been granted on one public socket."""
    def granted() -> bool:
        out = relay.status()["streams"][stream]["outputs"][output]
        return out["subscriptions"] >= n
    return wait_until(granted)


def sub(made, relay, stream=0, output=0, **kw) -> Sub:
    s = Sub(relay.endpoint(stream, output), **kw)
    made.append(s)
    return s


def test_forwards_each_stream_on_its_own_endpoint_headers_untouched(made):
    pubs = [make_pub(made, "beam1"), make_pub(made, "beam2")]
    relay = start_relay(made, pubs)
    subs = [sub(made, relay, i) for i in range(2)]
    assert subscribed(relay, 1, 0) and subscribed(relay, 1, 1)
    sent = {0: [], 1: []}
    for k in range(5):
        for i, p in enumerate(pubs):
            f = const_frame(10 * i + k)
            h = p.send(f)
            sent[i].append((h, f.tobytes()))
    for i, s in enumerate(subs):
        assert s.wait_for(5), s.got
        s.drain(50)
        assert len(s.got) == 5  # its own stream only
        for (h, payload), (hs, fs) in zip(s.got, sent[i], strict=True):
            assert h == hs  # sender_id, seq and every other key as sent
            assert payload == fs
    st = relay.status()
    assert [s["forwarded"] for s in st["streams"]] == [5, 5]
    assert [s["sender_id"] for s in st["streams"]] == ["beam1", "beam2"]
    assert [s["outputs"][0]["forwarded"] for s in st["streams"]] == [5, 5]
    assert st["forwarded"] == 10 and st["dropped"] == 0 and st["lost"] == 0


def relayed_receiver(made) -> tuple[RawPublisher, Relay, Receiver]:
    """A publisher, a relay following it and a receiver subscribed to the relay."""
    pub = make_pub(made)
    relay = start_relay(made, [pub])
    r = Receiver(endpoint=relay.endpoint(), buffer_length=16)
    made.append(r)
    r.start()
    assert subscribed(relay, 1)
    return pub, relay, r


def test_receiver_reads_a_relayed_stream(made):
    pub, _, r = relayed_receiver(made)
    for k in range(6):
        pub.send(const_frame(float(k + 1)))
    assert wait_until(lambda: r.status()["frames_received"] >= 6)
    st = r.status()
    assert st["lost"] == 0 and st["rejected_total"] == 0 and st["sender_id"] == "up"
    np.testing.assert_array_equal(r.get_latest(6).data[:, 0], np.arange(1, 7, dtype=np.float32))


def test_bad_messages_are_dropped_and_counted_gaps_are_lost(made):
    pub = make_pub(made)
    relay = start_relay(made, [pub])
    s = sub(made, relay)
    assert subscribed(relay, 1)
    pub.send_parts([b"data", b"{}"])  # two frames
    pub.send_parts([b"news", b"{}", b"x"])  # another topic
    pub.send(const_frame(1.0), seq=0)
    pub.send(const_frame(1.0), seq=4)  # 3 lost upstream
    assert s.wait_for(2)
    s.drain(50)
    assert s.seqs == [0, 4]
    st = relay.status()["streams"][0]
    assert st["received"] == 4 and st["forwarded"] == 2 and st["dropped"] == 2
    assert st["rejected"]["parts"] == 1 and st["rejected"]["topic"] == 1
    assert st["lost"] == 3


def test_late_subscriber_gets_the_latest_frame_at_once_and_alone(made):
    pub = make_pub(made)
    relay = start_relay(made, [pub])
    early = sub(made, relay)
    assert subscribed(relay, 1)
    for k in range(3):
        pub.send(const_frame(float(k)))
    assert early.wait_for(3)
    late = sub(made, relay)
    assert late.wait_for(1)  # without any new upstream message
    assert late.seqs == [2]
    assert late.got[0][1] == const_frame(2.0).tobytes()
    pub.send(const_frame(3.0))
    assert early.wait_for(4) and late.wait_for(2)
    early.drain(50)
    late.drain(50)
    assert early.seqs == [0, 1, 2, 3]  # no duplicate of the cached frame
    assert late.seqs == [2, 3]
    out = relay.status()["streams"][0]["outputs"][0]
    assert out["last_value_sent"] == 1 and out["forwarded"] == 4


def test_subscriber_before_any_frame_does_not_divert_the_first_one(made):
    # the last-value mode is on only for the cached send: left on, the subscription read
    # last would receive the next live message alone
    pub = make_pub(made)
    relay = start_relay(made, [pub])
    a = sub(made, relay)
    assert subscribed(relay, 1)
    b = sub(made, relay)
    assert subscribed(relay, 2)
    pub.send(const_frame(1.0))
    assert a.wait_for(1) and b.wait_for(1)
    assert relay.status()["streams"][0]["outputs"][0]["last_value_sent"] == 0


def test_only_the_protocols_subscriptions_are_granted(made):
    pub = make_pub(made)
    relay = start_relay(made, [pub])
    pub.send(const_frame(1.0))  # fill the cache
    assert wait_until(lambda: relay.status()["forwarded"] == 1)
    odd = sub(made, relay, topic=b"dat")
    good = sub(made, relay, topic=b"data")
    assert subscribed(relay, 1)
    assert wait_until(lambda: relay.status()["refused_subscriptions"] == 1)
    pub.send(const_frame(2.0))
    assert good.wait_for(2)  # the cached frame, then the new one
    assert odd.drain(100) == 0
    st = relay.status()
    assert st["subscribers"] == 1 and st["last_value_sent"] == 1


def test_a_peer_sending_more_than_the_inbound_limit_is_disconnected(made):
    pub = make_pub(made)
    relay = start_relay(made, [pub], max_inbound_bytes=256)
    ctx = zmq.Context()
    made.append(ctx_closer(ctx))
    bad = ctx.socket(zmq.XSUB)
    bad.setsockopt(zmq.LINGER, 0)
    bad.connect(relay.endpoint())
    assert wait_until(lambda: relay.status()["connections"] == 1)
    bad.send(b"\x01" + b"x" * 1000)  # a subscription far beyond 256 bytes
    assert wait_until(lambda: relay.status()["disconnects"] >= 1)
    good = sub(made, relay)
    assert subscribed(relay, 1)
    pub.send(const_frame(1.0))
    assert good.wait_for(1)
    st = relay.status()
    assert st["refused_subscriptions"] == 0  # never read: the peer was dropped first
    bad.close(0)


class ctx_closer:
    def __init__(self, ctx):
        self.ctx = ctx

    def close(self):
        self.ctx.destroy(0)


def test_a_stalled_subscriber_costs_the_others_nothing(made):
    pub = make_pub(made)
    relay = start_relay(made, [pub], sndhwm=20)
    stalled = sub(made, relay, rcvhwm=1)  # never reads
    good = sub(made, relay)
    assert subscribed(relay, 2)
    n = 600  # 30 MB: more than the stalled peer's queues and socket buffers hold
    for k in range(n):
        pub.send(const_frame(float(k)))
        if k % 5 == 4:  # the good subscriber keeps up; the stalled one does not read
            assert good.wait_for(k + 1)
    assert good.wait_for(n)
    assert good.seqs == list(range(n))
    got_stalled = stalled.drain(100)
    assert got_stalled < n  # its queues filled and it lost the rest, alone
    assert relay.status()["streams"][0]["outputs"][0]["forwarded"] == n


@pytest.mark.parametrize("encoding", ["bitshuffle-lz4", "bitshuffle-zstd", "log8"])
def test_encoded_output_decodes_to_the_frame(made, encoding):
    pytest.importorskip("numcodecs")
    pub = make_pub(made)
    relay = start_relay(made, [pub], outputs=["tcp://127.0.0.1:*",
                                                Output("tcp://127.0.0.1:*", encoding)])
    raw, enc = sub(made, relay, output=0), sub(made, relay, output=1)
    assert subscribed(relay, 1, output=0) and subscribed(relay, 1, output=1)
    rng = np.random.default_rng(3)
    frames = [(rng.random((1, 3072, 4), dtype=np.float32) + 0.5) * 1e5 for _ in range(3)]
    sent = [pub.send(f) for f in frames]
    assert raw.wait_for(3) and enc.wait_for(3)
    for (h, payload), hs, f in zip(enc.got, sent, frames, strict=True):
        assert h["encoding"] == encoding
        assert {k: v for k, v in h.items() if not k.startswith("log8_")} == {
            **hs, "encoding": encoding}  # sender_id, seq, times untouched
        out = encodings.decode(encoding, payload, h)
        if encoding in encodings.LOSSLESS:
            np.testing.assert_array_equal(out, f)
            assert len(payload) < f.nbytes
        else:
            assert len(payload) <= f.nbytes // 4
            np.testing.assert_allclose(out, f, rtol=0.01)
    assert [h for h, _ in raw.got] == sent
    st = relay.status()["streams"][0]
    assert st["encode_us_mean"] > 0
    assert st["outputs"][1]["bytes_out"] < st["outputs"][0]["bytes_out"]


def test_health_ok_degraded_failed(made):
    pub = make_pub(made)
    relay = start_relay(made, [pub], stale_after=0.3)
    pub.send(const_frame(1.0))
    assert wait_until(lambda: relay.status()["forwarded"] == 1)
    st = relay.status()
    if st["streams"][0]["age_s"] < 0.3:  # otherwise the machine was slow: still degraded
        assert st["health"] == "ok" and st["health_reason"] == ""
    assert wait_until(lambda: relay.status()["health"] == "degraded")
    assert pub.endpoint in relay.status()["health_reason"]
    relay.stop()
    st = relay.status()
    assert st["health"] == "failed" and not st["running"]


def test_restart_binds_again_and_forwards(made):
    pub = make_pub(made)
    relay = Relay([pub.endpoint], ["tcp://127.0.0.1:*"])
    made.append(relay)
    for _ in range(2):
        relay.start()
        pub.wait_subscriber()
        s = Sub(relay.endpoint())
        assert subscribed(relay, 1)
        pub.send(const_frame(1.0))
        assert s.wait_for(1)
        s.close()
        relay.stop()


def test_stream_endpoints_and_bad_arguments():
    assert stream_endpoints("tcp://127.0.0.1:31001", 3) == [
        "tcp://127.0.0.1:31001", "tcp://127.0.0.1:31002", "tcp://127.0.0.1:31003"]
    assert stream_endpoints("tcp://127.0.0.1:*", 2) == ["tcp://127.0.0.1:*"] * 2
    assert stream_endpoints("ipc:///tmp/x", 1) == ["ipc:///tmp/x"]
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        stream_endpoints("ipc:///tmp/x", 2)
    with pytest.raises(ValueError, match="65535"):
        stream_endpoints("tcp://127.0.0.1:65535", 2)
    with pytest.raises(ValueError, match="encoding"):
        Output("tcp://127.0.0.1:*", "gzip")
    with pytest.raises(ValueError, match="twice"):
        Relay(["tcp://127.0.0.1:1", "tcp://127.0.0.1:1"], ["tcp://127.0.0.1:*"])


def test_a_port_in_use_fails_start_and_leaves_nothing_open(made):
    pub = make_pub(made)
    first = start_relay(made, [pub])
    second = Relay([pub.endpoint], [first.endpoint()])
    with pytest.raises(zmq.ZMQError):
        second.start()
    assert not second.running
    assert second.status()["health"] == "failed"


def test_an_end_of_sequence_is_forwarded_never_cached(made):
    pub, relay, r = relayed_receiver(made)
    for k in range(3):
        pub.send(const_frame(float(k)))
    pub.send_parts(protocol.encode_end("up", seq_end=5, dropped=1))
    assert wait_until(lambda: r.status()["sequence_ends"] == 1)
    st = r.status()
    assert st["frames_received"] == 3 and st["lost"] == 2  # seq 3 and 4 never came
    assert st["senders"]["up"]["seq_end"] == 5 and st["senders"]["up"]["sender_dropped"] == 1
    late = sub(made, relay)
    assert late.wait_for(1)  # the cached frame, not the end message (Sub checks the topic)
    assert late.seqs == [2]
    stream = relay.status()["streams"][0]
    assert stream["ends"] == 1 and stream["dropped"] == 0
    assert stream["outputs"][0]["ends"] == 1
