"""The sunspec-relay program as a real process: forwards, reports, ends on SIGTERM with 0;
option mistakes end with one usage line and exit 2."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
from streams import RawPublisher, const_frame
from test_relay import Sub

RELAY = [sys.executable, "-c", "import sys; from sunspec.cli import relay_main; "
         "sys.exit(relay_main())"]


def run_relay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RELAY, *args], capture_output=True, text=True, timeout=60)


def test_relay_program_forwards_reports_and_ends_cleanly():
    pub = RawPublisher()
    proc = subprocess.Popen([*RELAY, "--upstream", pub.endpoint, "--bind", "tcp://127.0.0.1:*",
                             "--bind", "log8=tcp://127.0.0.1:*", "--status-interval", "0.2"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    try:
        endpoints = None
        while endpoints is None:
            line = lines.get(timeout=20)
            m = re.search(r"-> (tcp://\S+) \(raw\), (tcp://\S+) \(log8\)", line)
            if m:
                endpoints = m.groups()
        pub.wait_subscriber()
        subs = [Sub(e) for e in endpoints]
        try:
            pub.send(const_frame(1.0))  # cached, then served to each subscriber on arrival
            for s in subs:
                assert s.wait_for(1, timeout=20)
            assert [s.got[0][0].get("encoding", "raw") for s in subs] == ["raw", "log8"]
            status = ""
            while "forwarded 1" not in status:
                status = lines.get(timeout=20)
            assert "health ok" in status and "streams 1" in status
        finally:
            for s in subs:
                s.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.close()


@pytest.mark.parametrize("args, message", [
    (["--bind", "tcp://127.0.0.1:*"], "--upstream"),
    (["--upstream", "tcp://127.0.0.1:1", "--bind", "gzip=tcp://127.0.0.1:*"], "ENCODING"),
    (["--upstream", "tcp://127.0.0.1:1", "--bind", "tcp://127.0.0.1"], "tcp://HOST:PORT"),
    (["--upstream", "tcp://127.0.0.1:1", "--upstream", "tcp://127.0.0.1:2", "--bind",
      "ipc:///tmp/sunspec-relay-test"], "several streams"),
    (["--upstream", "tcp://127.0.0.1:1", "--bind", "tcp://127.0.0.1:*", "--curve-secret",
      "x.key_secret"], "go together"),
    (["--upstream", "tcp://127.0.0.1:1", "--bind", "tcp://127.0.0.1:*", "--curve-secret",
      "/nonexistent/x.key_secret", "--curve-clients", "/tmp"], "CURVE keys"),
    (["--upstream", "tcp://127.0.0.1:1", "--bind", "tcp://127.0.0.1:*", "--sndhwm", "0"],
     "--sndhwm"),
])
def test_option_mistakes_exit_2_with_a_usage_line(args, message):
    out = run_relay(*args)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("usage: sunspec-relay")
    assert message in out.stderr.splitlines()[-1]


def test_a_port_in_use_exits_2():
    pub = RawPublisher()  # its port is taken
    try:
        out = run_relay("--upstream", "tcp://127.0.0.1:1", "--bind", pub.endpoint)
    finally:
        pub.close()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot bind" in out.stderr.splitlines()[-1]
