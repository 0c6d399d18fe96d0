"""docs/DEPLOYMENT.md and its reverse-proxy example: the relay commands it shows parse, and
nginx accepts the configuration (``nginx -t``; skipped where nginx is not installed)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from sunspec.cli import relay_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_relay_commands_in_the_deployment_guide_parse():
    lines = [line.strip() for line in (DOCS / "DEPLOYMENT.md").read_text().splitlines()
             if line.strip().startswith("sunspec-relay ")]
    assert len(lines) >= 2
    for line in lines:
        args = relay_parser().parse_args(shlex.split(line)[1:])  # exits 2 on a mistake
        assert args.upstream and args.bind


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_reverse_proxy_example(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log {tmp_path}/access.log;\n"
        f" include {DOCS / 'nginx-sunspec.conf'};\n}}\n")
    out = subprocess.run(["nginx", "-t", "-c", str(conf), "-p", str(tmp_path), "-e",
                          str(tmp_path / "error.log")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr
    # the WebSocket upgrade and the API are what the page needs through the proxy
    text = (DOCS / "nginx-sunspec.conf").read_text()
    assert "location = /ws" in text and "proxy_set_header Upgrade $http_upgrade" in text
    assert "location /api/" in text
