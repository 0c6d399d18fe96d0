"""Many streams in one receiver: ``sunspec-recv --stream NAME=ENDPOINT`` (repeated) and
several Receivers in one process, each stream with its own geometry, ring, status section
and files."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq
from streams import RawPublisher, const_frame, wait_until
from test_cli import running_recv, wait_line, wait_until_files

from sunspec import Receiver, StatusBoard
from sunspec.cli import format_status
from sunspec.status import overall_health

# two streams of different geometry: (nbeam, nchan, npol)
SHAPES = {"a": (1, 3072, 4), "b": (2, 1024, 2)}


def stream_part(line: str, name: str) -> str:
    """The part of a status line about stream ``name``."""
    m = re.search(rf"(?:; ){name}: (.*?)(?:;|$| \|)", line)
    assert m, f"no stream {name} in {line!r}"
    return m.group(1)


def test_two_receivers_of_different_geometry_share_one_context():
    pubs = {name: RawPublisher(sender_id=f"sender-{name}") for name in SHAPES}
    board = StatusBoard()
    context = zmq.Context()
    receivers = {name: Receiver(endpoint=p.endpoint, name=name, context=context,
                                status_board=board, factor=2)
                 for name, p in pubs.items()}
    for name, r in receivers.items():
        board.add(f"stream:{name}", r.status)
    try:
        for r in receivers.values():
            r.start()
        for name, p in pubs.items():
            p.wait_subscriber()
            for i in range(3):
                p.send(const_frame(10.0 * (i + 1) + (name == "b"), *SHAPES[name]))
        assert wait_until(lambda: all(r.status()["frames_received"] == 3
                                      for r in receivers.values()))
        a, b = receivers["a"].get_latest(3), receivers["b"].get_latest(3)
        assert a.data.shape == (3, 1536) and b.data.shape == (3, 512)
        np.testing.assert_array_equal(a.data[:, 0], [10, 20, 30])
        np.testing.assert_array_equal(b.data[:, 0], [11, 21, 31])
        status = board.read()
        assert status["stream:a"]["buffer_shape"] == (1200, 1536)
        assert status["stream:b"]["buffer_shape"] == (1200, 512)
        assert receivers["b"].stream_info["nbeam"] == 2
        line = format_status(status)
        assert line.startswith("2 streams receiving, health ok; a: receiving frames 3 ")
        assert "frames 3 held 3/1200" in stream_part(line, "b")
        assert stream_part(line, "a").endswith(" mean 30")
        assert stream_part(line, "b").endswith(" mean 31")
        assert overall_health(status)["health"] == "ok"
    finally:
        for r in receivers.values():
            r.stop()
        for p in pubs.values():
            p.close()
        context.term()


def test_recv_follows_two_streams_with_files_per_stream(tmp_path):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("matplotlib")
    pubs = {name: RawPublisher(sender_id=f"sender-{name}") for name in SHAPES}
    archive, snaps = tmp_path / "archive", tmp_path / "snaps"
    sent = {"a": 4, "b": 3}
    try:
        with running_recv("--stream", f"a={pubs['a'].endpoint}",
                          "--stream", f"b={pubs['b'].endpoint}", "--status-interval", "0.2",
                          "--archive-dir", str(archive), "--archive-span", "3600",
                          "--snapshot-dir", str(snaps), "--snapshot-interval", "0.5"
                          ) as (proc, lines):
            for name, p in pubs.items():
                p.wait_subscriber(timeout=15)
                for i in range(sent[name]):
                    p.send(const_frame(float(i + 1), *SHAPES[name]))
            line = wait_line(lines, "a: receiving frames 4 held 4/1200")
            while "b: receiving frames 3 held 3/1200" not in line:
                line = wait_line(lines, "status: ")
            assert "status: 2 streams receiving, health ok;" in line
            assert "lost 0 rejected 0" in stream_part(line, "a")
            assert stream_part(line, "a").endswith(" mean 4")  # the newest row's
            assert stream_part(line, "b").endswith(" mean 3")
            for name in SHAPES:
                assert f"| archive:{name} rows" in line and f"| snapshots:{name}" in line
                assert wait_until_files(snaps, f"{name}_*.png")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
            wait_line(lines, "final status: 2 streams stopped", timeout=5)
    finally:
        for p in pubs.values():
            p.close()
    assert sorted(p.name for p in archive.iterdir()) == ["a", "b"]
    for name, nfreq in (("a", 1536), ("b", 512)):
        files = list((archive / name).glob("*.h5"))
        assert len(files) == 1 and not list((archive / name).glob("*.part"))
        with h5py.File(files[0], "r") as f:
            rows = f["Observation1/Tuning1/XX"][:]
        assert rows.shape == (sent[name], nfreq)
        np.testing.assert_array_equal(rows[:, 0], np.arange(1, sent[name] + 1))
    snap_names = {p.name.split("_")[0] for p in snaps.glob("*.png")}
    assert snap_names == {"a", "b"}


def test_health_covers_every_stream():
    pubs = {name: RawPublisher(sender_id=f"sender-{name}") for name in SHAPES}
    done = threading.Event()

    def keep_sending() -> None:  # a stays alive; b sends nothing
        while not done.wait(0.1):
            pubs["a"].send(const_frame(1.0, *SHAPES["a"]))

    sender = threading.Thread(target=keep_sending)
    try:
        with running_recv("--stream", f"a={pubs['a'].endpoint}",
                          "--stream", f"b={pubs['b'].endpoint}", "--status-interval", "0.2",
                          "--stall-timeout", "1") as (proc, lines):
            for p in pubs.values():
                p.wait_subscriber(timeout=15)
            sender.start()
            line = wait_line(lines, "health degraded: stream:b: no frame from "
                             f"{pubs['b'].endpoint}")
            assert "WARNING" in line
            line = wait_line(lines, "status: 2 streams receiving/stalled, health degraded "
                             "(stream:b: no frame from")
            assert stream_part(line, "a").startswith("receiving frames ")
            assert stream_part(line, "b").startswith("stalled frames 0 ")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
    finally:
        done.set()
        if sender.is_alive():
            sender.join()
        for p in pubs.values():
            p.close()


@pytest.mark.parametrize("args, message", [
    (["--stream", "a=tcp://127.0.0.1:9", "--port", "9"], "cannot go with --port"),
    (["--stream", "a=tcp://127.0.0.1:9", "--addr", "127.0.0.1"], "cannot go with --addr"),
    (["--stream", "a=tcp://127.0.0.1:9", "--endpoint", "tcp://127.0.0.1:9"],
     "cannot go with --endpoint"),
    (["--stream", "a=tcp://127.0.0.1:9", "--demo"], "cannot go with --demo"),
    (["--stream", "a=tcp://127.0.0.1:9", "--stream", "a=tcp://127.0.0.1:10"],
     "a given more than once"),
    (["--stream", "tcp://127.0.0.1:9"], "expected NAME=ENDPOINT"),
    (["--stream", "../x=tcp://127.0.0.1:9"], "expected NAME=ENDPOINT"),
    (["--stream", "a=tcp://127.0.0.1:0"], "port '0' is not in 1-65535"),
])
def test_stream_mistakes_are_usage_errors(args, message):
    out = subprocess.run([sys.executable, "-m", "sunspec", *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("error:") == 1


def test_a_detector_per_stream_with_its_own_events_socket_and_log_dir(tmp_path):
    pubs = {name: RawPublisher(sender_id=f"sender-{name}") for name in SHAPES}
    try:
        with running_recv("--stream", f"a={pubs['a'].endpoint}",
                          "--stream", f"b={pubs['b'].endpoint}", "--detect",
                          "--events-dir", str(tmp_path), "--events-endpoint",
                          "tcp://127.0.0.1:0", "--status-interval", "0.2") as (proc, lines):
            published = {}
            for _ in SHAPES:
                line = wait_line(lines, "burst detection on ")
                name, endpoint = re.search(r"burst detection on (\w+); events published on "
                                           r"(\S+)", line).groups()
                published[name] = endpoint
            assert sorted(published) == ["a", "b"]
            assert published["a"] != published["b"]
            line = wait_line(lines, "status: ")
            assert "| detector:a events 0" in line and "| detector:b events 0" in line
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
    finally:
        for p in pubs.values():
            p.close()


@pytest.mark.parametrize("endpoint, i, expected", [
    ("tcp://127.0.0.1:9531", 0, "tcp://127.0.0.1:9531"),
    ("tcp://127.0.0.1:9531", 3, "tcp://127.0.0.1:9534"),
    ("tcp://127.0.0.1:0", 3, "tcp://127.0.0.1:0"),
    ("tcp://*:*", 1, "tcp://*:*"),
    ("ipc:///tmp/events", 1, "ipc:///tmp/events-b"),
])
def test_events_endpoint_of_the_ith_stream(endpoint, i, expected):
    from sunspec.cli import _nth_endpoint, recv_parser

    assert _nth_endpoint(recv_parser(), endpoint, i, "b") == expected


def test_events_port_beyond_65535_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "sunspec", "--stream", "a=tcp://127.0.0.1:9",
                          "--stream", "b=tcp://127.0.0.1:10", "--detect", "--events-endpoint",
                          "tcp://127.0.0.1:65535"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "no port 65536 for stream b" in out.stderr, out.stderr
