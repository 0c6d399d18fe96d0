"""Archive retention: the oldest archive files go, by age and to keep space free; nothing
else in the directory is ever touched."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from archiving import TESTS, FakeReceiver, run_on_tmpfs
from streams import wait_until

from sunspec.archive import ArchiveWriter

pytest.importorskip("h5py")

DAY = 86400.0


def make(path, size: int, age_days: float) -> None:
    path.write_bytes(bytes(size))
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))


def test_keep_days_deletes_only_old_archive_files(tmp_path):
    old = {"OVRO-LWA_20250101_000000_02.h5": 10, "OVRO-LWA_20250102_000000_02-1.fit": 5,
           "OVRO-LWA_20250103_000000_02.h5.part.bad": 5}
    kept = {"OVRO-LWA_20250104_000000_02.h5": 1, "notes.txt": 10,
            "OVRO-LWA_20250101_000000_02.h5.bak": 10, "OVRO-LWA_20250101_000000_02.h5x": 10,
            "my_20250101_000000_02.fits": 10, "LWA_20250101_000000_02.h5": 10}
    for i, (name, age) in enumerate({**old, **kept}.items()):
        make(tmp_path / name, 1000 + i, age)
    sizes = sum(1000 + i for i, name in enumerate({**old, **kept}) if name in old)
    with ArchiveWriter(FakeReceiver(), tmp_path, "hdf5", keep_days=3) as w:
        assert wait_until(lambda: w.status()["files_deleted"] == 3, 20), w.status()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    st = w.status()
    assert st["files_deleted"] == 3 and st["bytes_deleted"] == sizes and st["errors"] == {}


_MIN_FREE = """
import json, os, shutil, sys, time
sys.path.insert(0, {tests!r})
from archiving import FakeReceiver
from streams import wait_until
from sunspec.archive import ArchiveWriter

disk = sys.argv[1]
now = time.time()

def make(name, size, age_days):
    path = os.path.join(disk, name)
    with open(path, "wb") as f:
        f.write(bytes(size))
    os.utime(path, (now - age_days * 86400, now - age_days * 86400))

make("notes.bin", 1 << 20, 30)  # older than every archive file, and not one
for day in range(1, 6):  # 400 KiB each, the first day's the oldest
    make(f"OVRO-LWA_2025010{{day}}_000000_02.h5", 400 << 10, 10 - day)
before = shutil.disk_usage(disk).free
w = ArchiveWriter(FakeReceiver(), disk, "hdf5", min_free_gb=before / 1e9 + 0.0005)
with w:
    wait_until(lambda: w.status()["files_deleted"] >= 2, 20)
print(json.dumps(dict(status=w.status(), files=sorted(os.listdir(disk)), before=before,
                      after=shutil.disk_usage(disk).free)))
"""


def test_min_free_deletes_the_oldest_archive_files_until_enough_is_free(tmp_path):
    """On a 4 MiB tmpfs: 500 kB more free space than there is takes the two oldest 400 KiB
    archive files, never the older file that is not one."""
    out = run_on_tmpfs(_MIN_FREE.format(tests=TESTS), tmp_path)
    st = out["status"]
    assert st["files_deleted"] == 2 and st["bytes_deleted"] == 2 * (400 << 10), st
    assert out["files"] == ["OVRO-LWA_20250103_000000_02.h5", "OVRO-LWA_20250104_000000_02.h5",
                            "OVRO-LWA_20250105_000000_02.h5", "notes.bin"]
    assert out["after"] - out["before"] >= 500_000 and st["errors"] == {}


def test_cli_keep_days_runs_retention_and_bad_values_are_usage_errors(tmp_path):
    arch = tmp_path / "arch"
    arch.mkdir()
    make(arch / "OVRO-LWA_20250101_000000_02.h5", 100, 3)
    make(arch / "notes.txt", 100, 3)
    proc = subprocess.Popen([sys.executable, "-m", "sunspec", "--demo", "--archive-dir",
                             str(arch), "--archive-keep-days", "2", "--status-interval", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    try:
        assert wait_until(lambda: not (arch / "OVRO-LWA_20250101_000000_02.h5").exists(), 30)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    log = "".join(lines.queue)
    assert "archive retention: deleted 1 files" in log and (arch / "notes.txt").exists()

    for flag, value in [("--archive-keep-days", "0"), ("--archive-keep-days", "x"),
                        ("--archive-min-free", "-1"), ("--archive-min-free", "nan")]:
        bad = subprocess.run([sys.executable, "-m", "sunspec", "--archive-dir", str(arch),
                              flag, value], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert f"argument {flag}" in bad.stderr.splitlines()[-1]


_FULL_THEN_PRUNE = """
import errno, json, os, sys, time
sys.path.insert(0, {tests!r})
from archiving import FakeReceiver, T_EDGE, rows_for
from streams import wait_until
from sunspec.archive import ArchiveWriter

disk = sys.argv[1]
now = time.time()
for day in range(1, 5):  # 400 KiB each, the first day's the oldest
    path = os.path.join(disk, f"OVRO-LWA_2025010{{day}}_000000_02.h5")
    with open(path, "wb") as f:
        f.write(bytes(400 << 10))
    os.utime(path, (now - (10 - day) * 86400, now - (10 - day) * 86400))
rec = FakeReceiver()
data, tags = rows_for(2000, 64, T_EDGE + 1)
w = ArchiveWriter(rec, disk, "hdf5", min_free_gb=0.0008, retry_interval=0.2,
                  flush_interval=0.05).start()
rec.push(data[:10], tags[:10])
assert wait_until(lambda: w.status()["rows_written"] == 10, 20)
deleted_at_start = w.status()["files_deleted"]
fd = os.open(os.path.join(disk, "recorder.dat"), os.O_WRONLY | os.O_CREAT)
try:  # another program fills the disk
    while True:
        os.write(fd, bytes(4096))
except OSError as exc:
    assert exc.errno == errno.ENOSPC
os.close(fd)
pushed = 10
while pushed < 2000 and not (w.status()["errors"] and w.status()["rows_written"] > 10
                             and w.status()["health"] == "ok"):
    rec.push(data[pushed:pushed + 10], tags[pushed:pushed + 10])
    pushed += 10
    time.sleep(0.05)
w.stop()
print(json.dumps(dict(status=w.status(), files=sorted(os.listdir(disk)),
                      deleted_at_start=deleted_at_start)))
"""


def test_full_disk_prunes_at_once_when_min_free_is_set(tmp_path):
    """Another program fills the disk between retention passes: the archive's first ENOSPC
    runs retention at once, the oldest archive files go, and archiving goes on."""
    out = run_on_tmpfs(_FULL_THEN_PRUNE.format(tests=TESTS), tmp_path)
    st = out["status"]
    assert out["deleted_at_start"] == 0 and st["errors"].get("ENOSPC", 0) >= 1, out
    assert st["files_deleted"] >= 1 and st["rows_written"] > 10 and st["health"] == "ok"
    kept = [f for f in out["files"] if f.startswith("OVRO-LWA_2025010")]
    assert kept == [f"OVRO-LWA_2025010{d}_000000_02.h5" for d in range(5)[-len(kept):]]
    assert "recorder.dat" in out["files"] and "OVRO-LWA_20250601_201500_02.h5" in out["files"]
