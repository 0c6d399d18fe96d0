"""The archive under faults: a full disk (a real tmpfs), kills at every step of completing a
file, journals left empty or unreadable, a receiver that raises."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from archiving import T_EDGE, TESTS, FakeReceiver, kill_when_ready, rows_for, run_on_tmpfs
from streams import wait_until

from sunspec.archive import ArchiveWriter, read_archive
from sunspec.archive.base import ArchiveMeta
from sunspec.archive.journal import Journal
from sunspec.clock import FS

pytest.importorskip("h5py")
pytest.importorskip("astropy.io.fits")

EXT = {"hdf5": ".h5", "fits": ".fit"}

_FULL_DISK = """
import json, os, sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from archiving import FakeReceiver, T_EDGE, rows_for
from streams import wait_until
from sunspec.archive import ArchiveWriter, read_archive

disk = sys.argv[1]
filler = os.path.join(disk, "filler")
with open(filler, "wb") as f:  # of the 4 MiB, about 1 MiB is left
    f.write(bytes(3 << 20))
rec = FakeReceiver(nrows=4000, nfreq=1536)
data, tags = rows_for(1000, 1536, T_EDGE + 1)  # 500 s: all in the span from 20:15:00
w = ArchiveWriter(rec, disk, {fmt!r}, span=900, flush_interval=0.05, retry_interval=0.2)
w.start()
pushed = 0

def push(n):
    global pushed
    rec.push(data[pushed:pushed + n], tags[pushed:pushed + n])
    pushed += n
    assert wait_until(lambda: w.status()["rows_written"] + w.status()["rows_dropped"]
                      == pushed, 20), w.status()

while not w.status()["errors"] and pushed < 500:
    push(10)
full_at = pushed
for _ in range(5):  # the disk stays full for a while
    push(10)
    time.sleep(0.05)
written = w.status()["rows_written"]
os.unlink(filler)  # room again
while w.status()["rows_written"] == written and pushed < 900:
    push(10)
    time.sleep(0.05)
push(50)
w.stop()
st = w.status()
files = sorted(os.listdir(disk))
out = dict(status=st, files=files, pushed=pushed, full_at=full_at, running=w.running)
ours = [f for f in files if f.endswith({ext!r})]
if len(ours) == 1:
    a = read_archive(os.path.join(disk, ours[0]))
    index = np.searchsorted(tags[:pushed], a.end_tag)
    out["rows"] = index.tolist()
    out["same"] = bool(np.array_equal(tags[index], a.end_tag)
                       and np.array_equal(data[index], a.data))
print(json.dumps(out))
"""


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_full_disk_pauses_archiving_and_the_span_goes_on_when_room_returns(tmp_path, fmt):
    """On a real full disk (a 4 MiB tmpfs): the process lives on, errors are counted, rows
    are written or counted as dropped, and the same span's file resumes when there is room:
    one file, no journal or temporary file left."""
    out = run_on_tmpfs(_FULL_DISK.format(tests=TESTS, fmt=fmt, ext=EXT[fmt]), tmp_path)
    st = out["status"]
    assert out["files"] == [f"OVRO-LWA_20250601_201500_02{EXT[fmt]}"], out
    assert st["errors"].get("ENOSPC", 0) >= 1, st
    assert st["rows_dropped"] >= 50 and st["rows_written"] + st["rows_dropped"] == out["pushed"]
    assert st["files_written"] == 1 and st["rows_missed"] == 0
    assert st["health"] == "ok" and st["health_reason"] is None, st
    rows = out["rows"]
    assert out["same"] and len(rows) == st["rows_written"]
    assert rows[0] == 0 and rows[-1] == out["pushed"] - 1  # before and after the full disk
    assert rows == sorted(set(rows))
    assert max(np.diff(rows)) > 1  # a gap: the rows dropped while the disk was full


_KILL_AT_PUBLISH = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from archiving import FakeReceiver, rows_for
from sunspec.archive import ArchiveWriter, writer

real_publish = writer._publish

def publish_and_die(tmp, final):
    if {before!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    real_publish(tmp, final)
    os.kill(os.getpid(), signal.SIGKILL)

writer._publish = publish_and_die
rec = FakeReceiver()
data, tags = rows_for(20, 64, {t0})
w = ArchiveWriter(rec, {directory!r}, {fmt!r}, span=10).start()
rec.push(data, tags)
w.stop()
"""


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
@pytest.mark.parametrize("before", [False, True], ids=["after-publish", "before-publish"])
def test_kill_while_completing_a_file_publishes_it_exactly_once(tmp_path, fmt, before):
    """A kill just after (or just before) a file is published: the next start leaves one
    file with every row, never a ``-1`` duplicate, and nothing else."""
    t0 = T_EDGE + FS // 2  # 20 rows, 20:15:00.5 .. 20:15:10: one 10 s span
    script = _KILL_AT_PUBLISH.format(tests=TESTS, before=before, t0=t0,
                                     directory=str(tmp_path), fmt=fmt)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with ArchiveWriter(FakeReceiver(), tmp_path, fmt, span=10) as w:
        pass
    assert_only_file_holds_the_20_rows(tmp_path, fmt, t0)
    st = w.status()
    assert st["files_recovered"] == (1 if before else 0) and st["errors"] == {}


def assert_only_file_holds_the_20_rows(directory: Path, fmt: str, t0: int) -> None:
    """The directory holds one archive, the 10 s span from 20:15:00, with the 20 rows from
    ``t0`` that the killed process was given."""
    name = f"OVRO-LWA_20250601_201500_02{EXT[fmt]}"
    assert sorted(p.name for p in directory.iterdir()) == [name]
    data, tags = rows_for(20, 64, t0)
    got = read_archive(directory / name)
    np.testing.assert_array_equal(got.end_tag, tags)
    np.testing.assert_array_equal(got.data, data)


_KILL_BEFORE_FLUSH = """
import sys, time
sys.path.insert(0, {tests!r})
from archiving import FakeReceiver, rows_for
from sunspec.archive import ArchiveWriter

rec = FakeReceiver()
data, tags = rows_for(20, 64, {t0})
w = ArchiveWriter(rec, {directory!r}, {fmt!r}, flush_interval=3600).start()
rec.push(data, tags)
while w.status()["rows_written"] < 20:
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("fmt", ["hdf5", "fits"])
def test_kill_before_the_first_flush_loses_no_row(tmp_path, fmt):
    """Rows appended but never flushed survive a kill of the process; recovery counts them."""
    t0 = T_EDGE + FS
    script = _KILL_BEFORE_FLUSH.format(tests=TESTS, t0=t0, directory=str(tmp_path), fmt=fmt)
    kill_when_ready(script)
    with ArchiveWriter(FakeReceiver(), tmp_path, fmt) as w:
        pass
    st = w.status()
    assert st["files_recovered"] == 1 and st["rows_recovered"] == 20, st
    assert_only_file_holds_the_20_rows(tmp_path, fmt, t0)


def _journal(path: Path, nrows: int) -> None:
    meta = ArchiveMeta(span_start_tag=T_EDGE, span_s=900, beam=2)
    j = Journal(path, meta, None, 64)
    data, tags = rows_for(nrows, 64, T_EDGE + FS)
    if nrows:
        j.append(data, tags)
    j.close()


def test_empty_and_unreadable_journals_are_removed_or_quarantined_once(tmp_path):
    """What a full disk or a crash leaves (an empty journal, a torn header, a header with no
    row, bytes that are no journal, a torn last row) is dealt with at the first start, logged
    and counted, and never again; other files are not touched."""
    stem = "OVRO-LWA_20250601_2015"
    (tmp_path / f"{stem}00_02.fit.part").write_bytes(b"")
    (tmp_path / f"{stem}10_02.fit.part").write_bytes(b"sunspec-jou")
    _journal(tmp_path / f"{stem}20_02.h5.part", 0)
    (tmp_path / f"{stem}30_02.h5.part").write_bytes(b"neither a journal nor HDF5")
    _journal(tmp_path / f"{stem}40_02.fit.part", 3)
    with open(tmp_path / f"{stem}40_02.fit.part", "ab") as f:
        f.write(bytes(100))  # the start of a fourth row
    (tmp_path / "notes.part").write_bytes(b"someone else's")
    with ArchiveWriter(FakeReceiver(), tmp_path, "fits") as w:
        pass
    st = w.status()
    assert (st["parts_removed"], st["parts_quarantined"], st["files_recovered"],
            st["rows_recovered"], st["rows_torn"]) == (3, 1, 1, 3, 1), st
    assert st["errors"] == {} and st["health"] == "ok"
    after = sorted(p.name for p in tmp_path.iterdir())
    assert after == [f"{stem}30_02.h5.part.bad", f"{stem}40_02.fit", "notes.part"]
    assert (tmp_path / f"{stem}30_02.h5.part.bad").read_bytes() == b"neither a journal nor HDF5"
    _, tags = rows_for(3, 64, T_EDGE + FS)
    np.testing.assert_array_equal(read_archive(tmp_path / f"{stem}40_02.fit").end_tag, tags)

    with ArchiveWriter(FakeReceiver(), tmp_path, "fits") as w:
        pass
    st = w.status()
    assert (st["parts_removed"], st["parts_quarantined"], st["files_recovered"]) == (0, 0, 0)
    assert st["errors"] == {} and sorted(p.name for p in tmp_path.iterdir()) == after


class _FlakyReceiver(FakeReceiver):
    """A receiver whose ``ring`` raises while ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.calls = 0

    @property
    def ring(self):
        self.calls += 1
        if self.broken:
            raise RuntimeError("ring unavailable")
        return self._ring

    @ring.setter
    def ring(self, value) -> None:
        self._ring = value


def test_writer_thread_survives_unexpected_errors_and_reports_health(tmp_path):
    rec = _FlakyReceiver()
    with ArchiveWriter(rec, tmp_path, "hdf5", retry_interval=0.05) as w:
        rec.broken = True
        assert wait_until(lambda: w.status()["errors"].get("RuntimeError", 0) >= 3, 20)
        st = w.status()
        assert w.running and st["health"] == "degraded"
        assert "ring unavailable" in st["health_reason"]
        rec.broken = False
        data, tags = rows_for(5, 64, T_EDGE + FS)
        rec.push(data, tags)
        assert wait_until(lambda: w.status()["rows_written"] == 5, 20), w.status()
        assert w.status()["health"] == "ok" and w.running
    np.testing.assert_array_equal(
        read_archive(tmp_path / "OVRO-LWA_20250601_201500_02.h5").end_tag, tags)



def test_hdf5_part_left_by_sunspec_0_1_is_completed(tmp_path):
    """sunspec 0.1 wrote an open span as an HDF5 file named ``.h5.part``: it is published."""
    from sunspec.archive import hdf5
    from sunspec.archive.base import ArchiveData

    data, tags = rows_for(7, 64, T_EDGE + FS)
    meta = ArchiveMeta(span_start_tag=T_EDGE, span_s=900, beam=2)
    part = tmp_path / "OVRO-LWA_20250601_201500_02.h5.part"
    hdf5.write(part, ArchiveData(data, tags, None, meta))
    with ArchiveWriter(FakeReceiver(), tmp_path, "hdf5") as w:
        pass
    assert w.status()["files_recovered"] == 1 and w.status()["rows_recovered"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OVRO-LWA_20250601_201500_02.h5"]
    got = read_archive(tmp_path / "OVRO-LWA_20250601_201500_02.h5")
    np.testing.assert_array_equal(got.data, data)
    np.testing.assert_array_equal(got.end_tag, tags)
