"""The compiled message poller (sunspec._poller): one call waits on a data socket and its
monitor and receives a message's first three parts, as pyzmq's own calls would.

Real sockets on 127.0.0.1: a PUSH socket sends hand-made multipart messages to the PULL
socket the poller reads (a PULL socket has no subscription to wait for).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from sunspec._poller import WAIT_MESSAGE, WAIT_MONITOR, WAIT_NOTHING, message_poller
from sunspec._worker import WakePipe

TOPIC_BYTES, HEADER_BYTES, PAYLOAD_BYTES = 8, 64, 256


class Link:
    """A PUSH socket connected to the PULL socket a poller reads, with its buffers."""

    def __init__(self, context: zmq.Context):
        self.pull = context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        port = self.pull.bind_to_random_port("tcp://127.0.0.1")
        self.monitor = self.pull.get_monitor_socket(zmq.EVENT_ACCEPTED)
        self.topic = bytearray(TOPIC_BYTES)
        self.header = bytearray(HEADER_BYTES)
        self.payload = np.zeros(PAYLOAD_BYTES, np.uint8)
        self.wake = WakePipe()
        self.poller = message_poller(self.pull, self.monitor, self.wake.fd, self.topic,
                                     self.header, self.payload.data)
        self.push = context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(f"tcp://127.0.0.1:{port}")

    def next(self, limit: int = 200) -> int:
        """Wait until the poller finds something (bounded: ``limit`` waits of 50 ms)."""
        for _ in range(limit):
            found = self.poller.wait(50)
            if found != WAIT_NOTHING:
                return found
        raise AssertionError("nothing arrived")

    def next_message(self) -> None:
        """Wait for a message, taking any monitor events on the way."""
        while (found := self.next()) == WAIT_MONITOR:
            self.monitor.recv_multipart()
        assert found == WAIT_MESSAGE

    def close(self) -> None:
        self.push.close()
        self.wake.close()
        self.pull.disable_monitor()
        self.monitor.close()
        self.pull.close()


@pytest.fixture
def link():
    context = zmq.Context()
    made = Link(context)
    yield made
    made.close()
    context.term()


def test_a_connection_event_waits_on_the_monitor_then_nothing_does(link):
    assert link.next() == WAIT_MONITOR  # the PUSH socket's connection was accepted
    event = recv_monitor_message(link.monitor)  # read by the caller, as pyzmq would
    assert event["event"] == zmq.EVENT_ACCEPTED
    assert link.poller.wait(10) == WAIT_NOTHING


def test_a_wake_up_ends_a_long_wait_and_stays_until_read(link):
    assert link.next() == WAIT_MONITOR
    recv_monitor_message(link.monitor)
    link.wake.wake()
    for _ in range(3):  # a wait of ten minutes ends at once (pytest-timeout fails a hang)
        assert link.poller.wait(600_000) == WAIT_NOTHING


@pytest.mark.parametrize("nparts", [1, 2, 3, 4, 6])
def test_parts_are_received_into_their_buffers_and_counted(link, nparts):
    rng = np.random.default_rng(nparts)
    parts = [rng.bytes(n) for n in (5, 40, 200, 7, 1, 3)][:nparts]
    before = time.time()
    link.push.send_multipart(parts)
    link.next_message()
    after = time.time()
    p = link.poller
    assert p.parts == min(nparts, 3)
    assert p.more == (nparts > 3)
    assert (p.ntopic, p.nheader, p.npayload) == tuple(
        len(x) for x in parts[:3]) + (0,) * (3 - min(nparts, 3))
    assert bytes(link.topic[:5]) == parts[0]
    if nparts > 1:
        assert bytes(link.header[:40]) == parts[1]
    if nparts > 2:
        assert link.payload[:200].tobytes() == parts[2]
    assert before <= p.arrival <= after  # the receive happened between the two
    # the rest of the message stays queued on the socket, then the next message follows
    assert [link.pull.recv() for _ in range(nparts - 3)] == parts[3:]
    assert not link.pull.getsockopt(zmq.RCVMORE)
    link.push.send_multipart([b"next", b"h", b"p"])
    link.next_message()
    assert (p.parts, p.more, bytes(link.topic[:4])) == (3, False, b"next")


def test_a_part_longer_than_its_buffer_is_truncated_and_its_length_reported(link):
    parts = [b"t" * (TOPIC_BYTES + 3), b"h" * (HEADER_BYTES + 10), b"p" * (PAYLOAD_BYTES * 4)]
    link.push.send_multipart(parts)
    link.next_message()
    p = link.poller
    assert (p.ntopic, p.nheader, p.npayload) == tuple(len(x) for x in parts)
    assert bytes(link.topic) == b"t" * TOPIC_BYTES
    assert bytes(link.header) == b"h" * HEADER_BYTES
    assert link.payload.tobytes() == b"p" * PAYLOAD_BYTES


def test_messages_are_taken_one_per_wait_in_order(link):
    for i in range(50):
        link.push.send_multipart([b"data", str(i).encode(), bytes(i)])
    got = []
    while len(got) < 50:
        link.next_message()
        got.append((int(bytes(link.header[:link.poller.nheader])), link.poller.npayload))
    assert got == [(i, i) for i in range(50)]


def test_a_terminated_context_raises_zmqerror():
    context = zmq.Context()
    made = Link(context)
    assert made.next() == WAIT_MONITOR  # the connection: no event left to wake the waits
    recv_monitor_message(made.monitor)
    made.push.close()
    ender = threading.Thread(target=context.term)  # blocks until the sockets are closed
    ender.start()
    with pytest.raises(zmq.ZMQError) as err:
        for _ in range(200):  # bounded: the termination reaches the sockets at once
            made.poller.wait(50)
    assert err.value.errno == zmq.ETERM
    made.monitor.close()
    made.pull.close()
    made.wake.close()
    ender.join()


def test_the_poller_refuses_null_handles(link):
    from sunspec import _core
    from sunspec._poller import _libzmq_functions

    with pytest.raises(ValueError, match="must not be 0"):
        _core.MessagePoller(_libzmq_functions(), (zmq.RCVMORE, zmq.POLLIN, zmq.DONTWAIT),
                            zmq.ZMQError, link.pull, 0, link.monitor, link.monitor.underlying,
                            -1, link.topic, link.header, link.payload.data)


def test_another_pyzmq_backend_is_refused(monkeypatch):
    from sunspec import _poller

    class OtherSocket:  # what a socket of another backend (and perhaps libzmq) looks like
        pass

    monkeypatch.setattr(_poller.zmq, "Socket", OtherSocket)
    _poller._libzmq_functions.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="Cython backend"):
            _poller._libzmq_functions()
    finally:
        _poller._libzmq_functions.cache_clear()
