"""Health: the convention every part follows, the board's overall health, the receiver's
stalled state and endpoint checks -- with real threads and real sockets on loopback."""

from __future__ import annotations

import logging

import pytest
from streams import RawPublisher, const_frame, wait_until

from sunspec import Receiver, StatusBoard
from sunspec._worker import Worker
from sunspec.status import overall_health


class Dies(Worker):
    """A worker whose thread ends with an unexpected exception."""

    def _run(self) -> None:
        raise OSError(5, "Input/output error")


class Waits(Worker):
    def _run(self) -> None:
        self._stop.wait()


def test_a_worker_whose_thread_dies_is_failed_and_logged(caplog):
    w = Dies()
    with caplog.at_level(logging.ERROR, "sunspec._worker"):
        w.start()
        assert wait_until(lambda: not w.running)
    assert isinstance(w.failure, OSError)
    assert w.health() == {"health": "failed", "health_reason":
                          "thread ended by OSError: [Errno 5] Input/output error"}
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert caplog.records[0].exc_info is not None  # the traceback is in the log
    w.stop()
    good = Waits().start()
    assert good.health() == {"health": "ok", "health_reason": None}
    good.stop()
    assert good.failure is None


def test_overall_health_is_the_worst_part_with_its_reason():
    w = Dies().start()
    assert wait_until(lambda: not w.running)
    board = StatusBoard()
    board.add("ok", lambda: {"health": "ok", "health_reason": None})
    assert board.health({"health": "ok"})["health"] == "ok"
    board.add("broken", lambda: {**w.health(), "rows": 3})
    board.add("unreadable", lambda: 1 / 0)
    h = board.health({"health": "degraded", "health_reason": "stalled"})
    assert h["health"] == "failed" and h["health_reason"].startswith("broken: thread ended by")
    assert h["sections"]["receiver"] == {"health": "degraded", "health_reason": "stalled"}
    assert h["sections"]["unreadable"]["health"] == "degraded"
    assert set(h["sections"]) == {"receiver", "ok", "broken", "unreadable"}
    board.remove("broken")
    assert overall_health({"health": "ok", **board.read()})["health_reason"].startswith(
        "unreadable: status unreadable: ZeroDivisionError")
    w.stop()


@pytest.mark.parametrize("kwargs", [
    {"endpoint": "tcp://127.0.0.1:70000"}, {"endpoint": "tcp://127.0.0.1:0"},
    {"endpoint": "tcp://127.0.0.1"}, {"endpoint": "tcp://*:9798"}, {"endpoint": "udp://x:1"},
    {"endpoint": "tcp://[::zz]:1"}, {"endpoint": "tcp://bad_host!:1"},
    {"addr": "300.1.2.3", "port": 9798}, {"addr": "127.0.0.1", "port": 65536},
    {"addr": "127.0.0.1", "port": -1},
])
def test_receiver_rejects_impossible_endpoints_before_any_socket(kwargs):
    with pytest.raises(ValueError, match="endpoint"):
        Receiver(**kwargs)


def test_receiver_accepts_possible_endpoints_without_resolving():
    for ep in ("tcp://127.0.0.1:1", "tcp://[::1]:65535", "tcp://lwacalim10:30001",
               "ipc:///tmp/sunspec.sock", "inproc://stream"):
        assert Receiver(endpoint=ep).endpoint == ep  # nothing connects before start()


def test_receiver_turns_stalled_and_back_and_warns_once_per_silence(caplog):
    pub = RawPublisher()
    rx = Receiver(endpoint=pub.endpoint, stall_timeout=0.3)
    assert rx.status()["state"] == "stopped" and rx.status()["health"] == "ok"
    try:
        with caplog.at_level(logging.INFO, "sunspec.receiver"):
            rx.start()
            pub.wait_subscriber()
            assert rx.status()["state"] in ("waiting", "stalled")
            assert wait_until(lambda: rx.status()["state"] == "stalled")
            st = rx.status()
            assert st["health"] == "degraded" and pub.endpoint in st["health_reason"]
            assert st["quiet_s"] >= 0.3
            assert wait_until(lambda: any("no frame from" in r.message for r in caplog.records))
            pub.send(const_frame(1.0))
            assert wait_until(lambda: rx.status()["state"] == "receiving")
            assert rx.status()["health"] == "ok"
            assert wait_until(lambda: rx.status()["state"] == "stalled")
            assert wait_until(lambda: sum("no frame from" in r.message
                                          for r in caplog.records) == 2)
            assert "since the stream stopped" in rx.status()["health_reason"]
    finally:
        rx.stop()
        pub.close()
    messages = [r.message for r in caplog.records]
    assert sum("no frame from" in m for m in messages) == 2
    assert sum("again after" in m for m in messages) == 1
    assert rx.status()["state"] == "stopped" and rx.status()["health"] == "ok"


def test_a_missing_pol_is_a_geometry_rejection_named_in_the_stall_reason():
    pub = RawPublisher()
    rx = Receiver(endpoint=pub.endpoint, product=7, stall_timeout=0.3).start()
    try:
        pub.wait_subscriber()
        for _ in range(2):
            pub.send(const_frame(1.0))
        assert wait_until(lambda: rx.status()["rejected"]["geometry"] == 2)
        assert wait_until(lambda: rx.status()["state"] == "stalled")
        assert "2 messages arrived but were rejected (geometry 2)" in rx.status()[
            "health_reason"]
        assert rx.running and rx.status()["frames_received"] == 0
    finally:
        rx.stop()
        pub.close()


def test_snapshot_health_follows_its_failures(tmp_path):
    pytest.importorskip("matplotlib")
    from sunspec.snapshot import SnapshotWriter

    pub = RawPublisher()
    rx = Receiver(endpoint=pub.endpoint).start()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    try:
        pub.wait_subscriber()
        pub.send(const_frame(2.0))
        assert rx.wait_for_ring(5) is not None
        with SnapshotWriter(rx, tmp_path / "snaps", interval=0.05) as w:
            w.directory = blocker / "sub"  # a directory that cannot exist: writes fail
            pub.send(const_frame(3.0))
            assert wait_until(lambda: w.status()["failed"] >= 1)
            st = w.status()
            assert st["health"] == "degraded" and "snapshots failing" in st["health_reason"]
            written = st["written"]
            w.directory = tmp_path / "snaps"  # the disk is back
            pub.send(const_frame(4.0))
            assert wait_until(lambda: w.status()["written"] > written)
            assert w.status()["health"] == "ok"
    finally:
        rx.stop()
        pub.close()
