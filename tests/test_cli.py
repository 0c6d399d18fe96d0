"""sunspec-recv as a program: starts, reports status, ends cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from streams import RawPublisher, const_frame

FLAGS = ["--addr", "--port", "--endpoint", "--buffer-length", "--gc-interval", "--log-level",
         "--product", "--pol", "--factor", "--chan0", "--status-interval", "--beam-index",
         "--stall-timeout", "--exit-on-failure", "--web-max-connections", "--web-max-viewers",
         "--web-request-timeout", "--web-allow-origin"]


@contextmanager
def running_recv(*args: str) -> Iterator[tuple[subprocess.Popen, queue.Queue]]:
    """``python -m sunspec ARGS`` with its log lines in a queue; killed if still running."""
    proc = subprocess.Popen([sys.executable, "-m", "sunspec", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_line(lines: queue.Queue, words: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if words in line:
            return line
    raise AssertionError(f"no line with {words!r} in:\n{''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_recv_reports_status_and_exits_zero_on_signal(sig):
    pub = RawPublisher()
    try:
        with running_recv("--endpoint", pub.endpoint, "--status-interval", "0.2",
                          "--product", "I", "--factor", "4", "--log-level", "debug"
                          ) as (proc, lines):
            pub.wait_subscriber(timeout=15)
            for i in range(3):
                pub.send(const_frame(float(i)))
            line = wait_line(lines, "health ok; frames 3 held 3/1200")
            assert "status: receiving, health ok;" in line
            assert "lost 0" in line and "rejected 0" in line and "mean 2" in line
            proc.send_signal(sig)
            assert proc.wait(10) == 0
            wait_line(lines, "final status: stopped, health ok; frames 3", timeout=5)
    finally:
        pub.close()


def test_help_documents_every_flag():
    out = subprocess.run([sys.executable, "-m", "sunspec", "--help"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0
    for flag in FLAGS:
        assert flag in out.stdout, flag


def test_bad_product_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "sunspec", "--product", "Q"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "expected one of XX" in out.stderr


def test_demo_runs_the_whole_system_in_one_command():
    with running_recv("--demo", "--status-interval", "0.5") as (proc, lines):
        deadline = time.monotonic() + 20
        frames = 0
        while frames < 4:
            line = wait_line(lines, "status: ", timeout=max(deadline - time.monotonic(), 0))
            frames = int(line.split("; frames ")[1].split()[0])
        assert "lost 0" in line and "rejected 0" in line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_demo_with_live_view_snapshots_and_archive(tmp_path):
    import json
    import urllib.request

    h5py = pytest.importorskip("h5py")  # the optional parts need their extras
    pytest.importorskip("aiohttp")
    pytest.importorskip("matplotlib")
    snaps, arch = tmp_path / "snaps", tmp_path / "arch"
    with running_recv("--demo", "--status-interval", "0.5", "--web", "--web-port", "0",
                      "--snapshot-dir", str(snaps), "--snapshot-interval", "1",
                      "--archive-dir", str(arch), "--archive-span", "60") as (proc, lines):
        url = wait_line(lines, "live view on ").split("live view on ")[1].strip()
        deadline = time.monotonic() + 20
        status = {}
        while time.monotonic() < deadline and status.get("frames_received", 0) < 4:
            time.sleep(0.5)
            with urllib.request.urlopen(url + "api/status", timeout=5) as resp:  # loopback
                status = json.load(resp)
        assert status["frames_received"] >= 4 and status["lost"] == 0
        assert "web" in status and "archive" in status
        assert wait_until_files(snaps, "*.png")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    files = sorted(arch.glob("*.h5"))
    assert files and not list(arch.glob("*.part"))
    with h5py.File(files[-1], "r") as f:
        assert f["Observation1/Tuning1/XX"].shape[1] == 1536


def wait_until_files(directory, pattern, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if directory.exists() and list(directory.glob(pattern)):
            return True
        time.sleep(0.2)
    return False
