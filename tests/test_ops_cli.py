"""Every command under operators' mistakes and faults, run as real processes: bad option
values, busy ports, missing optional extras, a silent endpoint, a part that fails."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zmq
from streams import RawPublisher, const_frame

RECV = [sys.executable, "-m", "sunspec"]
REPLAY = [sys.executable, "-c", "import sys; from sunspec.cli import replay_main; "
          "sys.exit(replay_main())"]


def run(cmd: list[str], *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env)


def assert_usage_error(out: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, the usage line and one error line, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("usage: "), out.stderr
    errors = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, out.stderr
    for word in words:
        assert word in errors[0], errors[0]


class Program:
    """A running program: every stderr line kept, waited on by content."""

    def __init__(self, cmd: list[str], *args: str):
        self.proc = subprocess.Popen([*cmd, *args], stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_line(self, words: str, count: int = 1, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [line for line in list(self.lines) if words in line]
            if len(hits) >= count:
                return hits[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"not {count} lines with {words!r} in:\n{''.join(self.lines)}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self._pump.join(5)
        return code

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- item 11: every bad value is a usage error --------------------------------------------------
@pytest.mark.parametrize("args", [
    ("--buffer-length", "-5"), ("--factor", "0"), ("--gc-interval", "-1"),
    ("--snapshot-interval", "0"), ("--snapshot-keep", "0"), ("--archive-span", "0"),
    ("--web-port", "80000"), ("--status-interval", "-3"), ("--port", "70000"),
    ("--port", "0"), ("--endpoint", "tcp://127.0.0.1:70000"), ("--endpoint", "tcp://127.0.0.1"),
    ("--endpoint", "tcp://*:5000"), ("--addr", "127.0.0.999"), ("--addr", "127.0.0.1 x"),
    ("--stall-timeout", "0"), ("--web-max-connections", "0"), ("--web-max-viewers", "-1"),
    ("--web-request-timeout", "nan"), ("--web-allow-origin", "evil"), ("--log-level", "loud"),
    ("--beam-index", "-1"), ("--pol", "-2"), ("--chan0", "x"), ("--archive-sun-above", "91"),
    ("--archive-format", "zip"), ("--product", "Q"),
], ids=lambda a: " ".join(a))
def test_recv_rejects_a_bad_value_with_one_usage_line(args):
    option = args[0] if args[0] != "--addr" else "--addr"
    assert_usage_error(run(RECV, *args), option)


@pytest.mark.parametrize("args", [
    ("--port", "70000"), ("--speed", "-1"), ("--max-gap", "0"), ("--wait", "-1"),
    ("--endpoint", "tcp://127.0.0.1:99999"), ("--addr", "127.0.0.1.5"),
    ("--status-interval", "-3"), ("--log-level", "loud"),
], ids=lambda a: " ".join(a))
def test_replay_rejects_a_bad_value_with_one_usage_line(args, tmp_path):
    pytest.importorskip("h5py")
    assert_usage_error(run(REPLAY, str(tmp_path / "none.h5"), *args), args[0])


def test_replay_of_a_missing_file_is_a_usage_error(tmp_path):
    pytest.importorskip("h5py")
    assert_usage_error(run(REPLAY, str(tmp_path / "none.h5")), "cannot read")


def test_log_level_is_case_insensitive():
    out = run(RECV, "--log-level", "wArNiNg", "--port", "70000")  # parsed, then the port fails
    assert_usage_error(out, "--port")
    assert "--log-level" not in out.stderr.splitlines()[-1]


def test_a_pol_index_the_stream_lacks_is_a_geometry_rejection_not_a_crash():
    pub = RawPublisher()
    try:
        with Program(RECV, "--endpoint", pub.endpoint, "--product", "7", "--stall-timeout",
                     "0.5", "--status-interval", "0.2") as prog:
            pub.wait_subscriber(timeout=15)
            for _ in range(3):
                pub.send(const_frame(1.0))  # 4 pols: there is no pol 7
            assert "npol >= 8, the stream has 4" in prog.wait_line("rejected message")
            warning = prog.wait_line("receiver: no frame from")
            assert "3 messages arrived but were rejected (geometry 3)" in warning
            assert "rejected geometry=3" in prog.wait_line("stalled, health degraded")
            assert prog.stop() == 0
    finally:
        pub.close()
    assert "Traceback" not in "".join(prog.lines)


# --- item 6: silence is reported, with the endpoint and a hint ---------------------------------
def test_silence_at_start_and_after_the_stream_stops_is_reported():
    pub = RawPublisher()
    try:
        with Program(RECV, "--endpoint", pub.endpoint, "--stall-timeout", "0.5",
                     "--status-interval", "0.2") as prog:
            pub.wait_subscriber(timeout=15)
            first = prog.wait_line("receiver: no frame from")
            assert f"no frame from {pub.endpoint}" in first and "since start" in first
            assert "is the sender running" in first and "--endpoint" in first
            assert "status: stalled, health degraded (no frame from" in prog.wait_line(
                "status: stalled")
            for i in range(3):
                pub.send(const_frame(float(i)))
            prog.wait_line(f"frames from {pub.endpoint} again")
            prog.wait_line("status: receiving, health ok; frames 3")
            again = prog.wait_line("receiver: no frame from", count=2)
            assert "since the stream stopped" in again
            prog.wait_line("health ok again")
            prog.wait_line("WARNING sunspec: health degraded", count=2)
            assert prog.stop() == 0
    finally:
        pub.close()
    warnings = [line for line in prog.lines if "WARNING" in line]
    assert len([w for w in warnings if "receiver: no frame from" in w]) == 2  # once a silence
    assert len([w for w in warnings if "health degraded" in w]) == 2


# --- item 12: busy ports ---------------------------------------------------------------------
def test_recv_web_on_a_busy_port_names_the_option():
    pytest.importorskip("aiohttp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = run(RECV, "--web", "--web-port", str(s.getsockname()[1]),
                  "--port", str(free_port()))
    assert_usage_error(out, "--web-port", "Choose another")


def test_replay_on_a_busy_port_names_the_option(tmp_path):
    pytest.importorskip("h5py")
    from test_replay import make_archive

    files, *_ = make_archive(tmp_path, "hdf5", n=4)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    try:
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        out = run(REPLAY, str(files[0]), "--port", str(port))
    finally:
        sock.close(0)
        ctx.term()
    assert_usage_error(out, "--port", "Choose another")


# --- item 13: missing extras are found at start ----------------------------------------------
def without(tmp_path: Path, *modules: str) -> dict:
    """An environment in which importing ``modules`` raises ImportError (a shadowing dir)."""
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    for name in modules:
        (shadow / f"{name}.py").write_text("raise ImportError('not installed (test)')\n")
    path = os.pathsep.join(p for p in (str(shadow), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


@pytest.mark.parametrize(("args", "module", "extra"), [
    (("--web",), "aiohttp", "web"),
    (("--snapshot-dir", "snaps"), "matplotlib", "snapshot"),
    (("--archive-dir", "arch"), "h5py", "archive"),
])
def test_recv_names_the_missing_extra_before_starting(tmp_path, args, module, extra):
    out = run(RECV, *args, "--port", str(free_port()), env=without(tmp_path, module))
    assert_usage_error(out, args[0], f"pip install '.[{extra}]'", f"sunspec[{extra}]")
    assert not (tmp_path / args[-1]).exists()


def test_help_needs_no_extra(tmp_path):
    env = without(tmp_path, "aiohttp", "matplotlib", "h5py", "astropy")
    for cmd in (RECV, REPLAY):
        out = run(cmd, "--help", env=env)
        assert out.returncode == 0 and out.stdout.startswith("usage: "), out.stderr


def test_replay_names_the_missing_extra(tmp_path):
    out = run(REPLAY, str(tmp_path / "x.h5"), env=without(tmp_path, "h5py"))
    assert_usage_error(out, "sunspec[archive]", "pip install '.[archive]'")


# --- item 5: a part that fails is loud, and ends the program for its supervisor ---------------
BROKEN_SNAPSHOTS = (
    "import sys\n"
    "import sunspec.cli as cli\n"
    "from sunspec.snapshot import SnapshotWriter\n"
    "def broken(self):\n"
    "    raise RuntimeError('disk controller gone')\n"
    "SnapshotWriter._run = broken  # the snapshot thread dies of an unexpected error\n"
    "cli.FAILED_REPEAT_S = 0.3\n"
    "sys.exit(cli.recv_main(sys.argv[1:]))\n"
)


def test_a_failed_part_ends_the_program_with_status_1(tmp_path):
    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, "-c", BROKEN_SNAPSHOTS, "--demo", "--snapshot-dir",
                          str(tmp_path), "--status-interval", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "ERROR sunspec: snapshots failed: thread ended by RuntimeError: disk controller " \
           "gone" in out.stderr
    assert "exiting with status 1" in out.stderr
    assert "final status: stopped, health failed (snapshots: thread ended" in out.stderr


def test_without_exit_on_failure_the_error_repeats_and_health_says_503(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("aiohttp")
    with Program([sys.executable, "-c", BROKEN_SNAPSHOTS], "--demo", "--no-exit-on-failure",
                 "--snapshot-dir", str(tmp_path), "--web", "--web-port", "0",
                 "--status-interval", "0.5") as prog:
        url = prog.wait_line("live view on ").split("live view on ")[1].strip()
        prog.wait_line("ERROR sunspec: snapshots failed", count=3)  # repeated while it lasts
        prog.wait_line("status: receiving, health failed (snapshots: thread ended")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "api/health", timeout=10)  # loopback
        assert err.value.code == 503
        body = json.load(err.value)
        assert body["health"] == "failed" and body["sections"]["snapshots"]["health"] == "failed"
        assert body["sections"]["receiver"]["health"] == "ok"
        assert prog.proc.poll() is None
        assert prog.stop() == 0
