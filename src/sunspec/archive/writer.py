"""ArchiveWriter: a thread that copies a receiver's ring rows into files of fixed UTC spans.

Rows are read with ``ring.since(cursor)`` / ``ring.wait`` from the writer's own thread, so
reception never waits for a disk. A row belongs to the span holding its averaging window:
span ``(end_tag - 1) // span_ticks``, spans aligned to multiples of ``span`` seconds since
1970 (900 s: quarter hours). One file holds one span's rows in strictly increasing time; a
row from another span, a time going backwards or a new ring (the stream's geometry changed)
starts a new file. A file is completed when a row of a later span arrives, when no row has
come for ``idle_close`` seconds, or at :meth:`ArchiveWriter.stop`.

Files are written as ``<name>.part`` and published under ``<name>`` by a hard link, which
fails rather than replace an existing file: a name already taken gets ``-1``, ``-2``, ...
Part files left by a crash are completed at the next start (see :func:`recover`).

Nothing here stops reception: a failing disk is logged, counted under the error's kind
(``ENOSPC``, ``EACCES``, ...) and retried after ``retry_interval``; rows that arrive
meanwhile are counted as ``rows_dropped``, rows the ring overwrote before the writer read
them as ``rows_missed``.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .._log import RateLimitedLog
from .._worker import Worker
from ..clock import FS, tag_to_datetime
from ..ring import RingBuffer, Rows
from ..source import StreamSource
from . import DEFAULT_FORMAT, DEFAULT_SPAN, fits, hdf5
from .base import ArchiveMeta, SpanFile, meta_from_stream_info

__all__ = ["FORMATS", "ArchiveWriter", "recover"]

log = logging.getLogger(__name__)

#: format name -> module with EXTENSION, a SpanFile class, read() and write()
FORMATS: dict[str, ModuleType] = {"hdf5": hdf5, "fits": fits}
_SPAN_FILES: dict[str, Callable[..., SpanFile]] = {
    "hdf5": hdf5.Hdf5SpanFile, "fits": fits.FitsSpanFile,
}
_EXTENSIONS = {m.EXTENSION: m for m in FORMATS.values()}
#: seconds the thread sleeps in ring.wait before doing housekeeping
_TICK = 0.25


def _software() -> str:
    from .. import __version__

    return f"sunspec {__version__}"


def _kind(exc: BaseException) -> str:
    """Counter name for an error: the errno's name for OS errors, else the type's name."""
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


def _candidates(final: Path) -> Iterator[Path]:
    """``final``, then ``stem-1.ext``, ``stem-2.ext``, ... (ext may be double, e.g. .h5)."""
    yield final
    stem, ext = final.name.split(".", 1)
    i = 1
    while True:
        yield final.with_name(f"{stem}-{i}.{ext}")
        i += 1


def _taken(path: Path) -> bool:
    return any(p.exists() for p in (path, path.with_name(path.name + ".part"),
                                    path.with_name(path.name + ".tmp")))


def _publish(tmp: Path, final: Path) -> Path:
    """Give the finished file ``tmp`` the first free name from ``final`` on; never replaces."""
    for cand in _candidates(final):
        try:
            os.link(tmp, cand)
        except FileExistsError:
            continue
        except OSError as exc:  # no hard links on this file system: check, then rename
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            if cand.exists():
                continue
            os.rename(tmp, cand)
        return cand
    raise AssertionError("unreachable")


def recover(directory: Path) -> tuple[list[Path], list[tuple[Path, BaseException]]]:
    """Complete the part files a crashed writer left in ``directory``.

    Returns the files published and the part files that could not be read (kept as they
    are). Empty part files are removed.
    """
    done: list[Path] = []
    failed: list[tuple[Path, BaseException]] = []
    for part in sorted(directory.glob("*.part")):
        final = part.with_suffix("")
        module = _EXTENSIONS.get("." + final.name.split(".", 1)[-1])
        if module is None:
            continue
        tmp = part.with_suffix(".tmp")
        try:
            rows = fits.read_journal(part) if module is fits else hdf5.read(part)
            if len(rows):
                tmp.unlink(missing_ok=True)
                module.write(tmp, rows)
                done.append(_publish(tmp, final))
            part.unlink()
            tmp.unlink(missing_ok=True)
        except Exception as exc:
            failed.append((part, exc))
    for tmp in directory.glob("*.tmp"):  # finished and published before a crash
        if not tmp.with_suffix(".part").exists():
            tmp.unlink(missing_ok=True)
    return done, failed


@dataclass
class _Open:
    """The file being written."""

    file: SpanFile
    final: Path
    span: int
    ring: RingBuffer
    last_tag: int
    rows: int = 0


class ArchiveWriter(Worker):
    """Archive a receiver's rows to ``directory`` in ``fmt`` ('hdf5' or 'fits'), one file per
    ``span`` seconds of UTC.

    ``receiver`` is any :class:`~sunspec.source.StreamSource` (e.g. a Receiver).
    ``sun_above`` (degrees) keeps only rows taken while the Sun is higher than that at OVRO.
    :meth:`stop` writes what the ring still holds for the writer and completes the open file.
    """

    stop_timeout = 30.0

    def __init__(
        self,
        receiver: StreamSource,
        directory: str | os.PathLike[str],
        fmt: str = DEFAULT_FORMAT,
        span: int = DEFAULT_SPAN,
        *,
        flush_interval: float = 10.0,
        idle_close: float = 60.0,
        retry_interval: float = 5.0,
        sun_above: float | None = None,
        batch: int = 1024,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
        if int(span) != span or span < 1:
            raise ValueError(f"span must be a whole number of seconds >= 1, got {span}")
        self.receiver = receiver
        self.directory = Path(directory)
        self.fmt = fmt
        self.span = int(span)
        self.flush_interval = flush_interval
        self.idle_close = idle_close
        self.retry_interval = retry_interval
        self.sun_above = sun_above
        self.batch = batch
        self._sun = None
        if sun_above is not None:
            from .sun import SunGate

            self._sun = SunGate(sun_above)
        self._span_ticks = self.span * FS
        super().__init__()
        self._rlog = RateLimitedLog(log)
        self._open: _Open | None = None
        self._ring: RingBuffer | None = None
        self._first_ring: RingBuffer | None = None
        self._cursor = 0
        self._last_flush = self._last_row = time.monotonic()
        self._dirty = False
        self._retry_at = 0.0
        self._stats: dict[str, Any] = {
            "files_written": 0, "files_recovered": 0, "rows_written": 0, "rows_missed": 0,
            "rows_dropped": 0, "rows_skipped_sun": 0, "errors": {}, "last_error": None,
        }

    # --- lifecycle (start, stop, running, context manager: Worker) ---------------------------
    def _thread_name(self) -> str:
        return f"sunspec-archive {self.directory}"

    def _prepare(self) -> tuple[()]:
        self._first_ring = self.receiver.ring
        log.info("archiving %s files of %d s to %s", self.fmt, self.span, self.directory)
        return ()

    def status(self) -> dict[str, Any]:
        """The writer's counters (a section of the program's status)."""
        st = dict(self._stats)
        st["errors"] = dict(st["errors"])
        cur = self._open
        st.update(running=self.running, directory=str(self.directory), format=self.fmt,
                  span_s=self.span, current_file=str(cur.final) if cur else None,
                  current_rows=cur.rows if cur else 0)
        return st

    # --- thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._recover()
            while True:
                stopping = self._stop.is_set()
                self._step(wait=not stopping)  # after stop: one last pass, no waiting
                if stopping:
                    break
        except Exception as exc:  # pragma: no cover - a bug; never take the receiver down
            log.exception("archive thread failed")
            self._fail("thread", exc)
        finally:
            self._close()

    def _recover(self) -> None:
        if not self.directory.is_dir():
            return
        try:
            done, failed = recover(self.directory)
        except Exception as exc:
            self._fail("recover", exc, retry=False)
            return
        self._stats["files_recovered"] += len(done)
        for path in done:
            log.warning("completed %s, left by an earlier writer", path)
        for path, exc in failed:
            self._fail(f"recover {path.name}", exc, retry=False)

    def _step(self, wait: bool) -> None:
        """Follow the receiver's ring, write what is new, flush or close when due."""
        ring = self.receiver.ring
        if ring is not self._ring:
            if self._ring is not None:
                self._drain(self._ring)
                self._close()
            self._ring = ring
            self._cursor = ring.total - ring.held if ring is self._first_ring and ring else 0
        if ring is None:
            if wait:
                self._stop.wait(_TICK)
            return
        if not wait or ring.wait(self._cursor, _TICK):
            self._drain(ring)
        self._housekeeping()

    def _drain(self, ring: RingBuffer) -> None:
        while True:
            rows = ring.since(self._cursor, self.batch)
            self._stats["rows_missed"] += rows.missed
            if rows.missed:
                self._rlog.log(logging.WARNING, "missed", "archive fell behind: %d rows "
                               "overwritten before they were written", rows.missed)
            self._cursor = rows.next_index
            if len(rows):
                self._write(rows, ring)
            if len(rows) < self.batch:
                return

    def _housekeeping(self) -> None:
        now = time.monotonic()
        cur = self._open
        if cur is None:
            return
        if now - self._last_row >= self.idle_close:
            self._close()
        elif self._dirty and now - self._last_flush >= self.flush_interval:
            try:
                cur.file.flush()
            except Exception as exc:
                self._fail("flush", exc)
                self._abandon()
                return
            self._dirty = False
            self._last_flush = now

    # --- writing ----------------------------------------------------------------------------
    def _write(self, rows: Rows, ring: RingBuffer) -> None:
        tags, data = rows.end_tag, rows.data
        if self._sun is not None:
            keep = self._sun.mask(tags)
            self._stats["rows_skipped_sun"] += int(len(keep) - np.count_nonzero(keep))
            tags, data = tags[keep], data[keep]
        if not len(tags):
            return
        if time.monotonic() < self._retry_at:
            self._stats["rows_dropped"] += len(tags)
            return
        span = (tags - 1) // self._span_ticks
        cuts = np.flatnonzero((np.diff(span) != 0) | (np.diff(tags) <= 0)) + 1
        bounds = [0, *cuts.tolist(), len(tags)]
        for a, b in itertools.pairwise(bounds):
            try:
                cur = self._file_for(int(span[a]), int(tags[a]), ring)
                cur.file.append(data[a:b], tags[a:b])
            except Exception as exc:
                self._fail("write", exc)
                self._abandon()
                self._stats["rows_dropped"] += len(tags) - a
                return
            cur.rows += b - a
            cur.last_tag = int(tags[b - 1])
            self._stats["rows_written"] += b - a
            self._dirty = True
            self._last_row = time.monotonic()

    def _file_for(self, span: int, first_tag: int, ring: RingBuffer) -> _Open:
        cur = self._open
        if cur is not None and cur.span == span and cur.ring is ring and first_tag > cur.last_tag:
            return cur
        self._close()
        meta = meta_from_stream_info(self.receiver.stream_info,
                                     span_start_tag=span * self._span_ticks,
                                     span_s=self.span, software=_software())
        final = next(p for p in _candidates(self._final_name(meta)) if not _taken(p))
        self.directory.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        file = _SPAN_FILES[self.fmt](part, meta, ring.freqs_hz, ring.nfreq)
        self._open = _Open(file, final, span, ring, first_tag - 1)
        self._last_flush = time.monotonic()
        log.info("archive: writing %s", part)
        return self._open

    def _final_name(self, meta: ArchiveMeta) -> Path:
        start = tag_to_datetime(meta.span_start_tag).strftime("%Y%m%d_%H%M%S")
        beam = meta.beam if meta.beam is not None else 0
        return self.directory / f"{meta.station}_{start}_{beam:02d}{FORMATS[self.fmt].EXTENSION}"

    def _close(self) -> None:
        cur, self._open = self._open, None
        if cur is None:
            return
        try:
            tmp = cur.file.finish()
            path = _publish(tmp, cur.final)
            cur.file.discard()
        except Exception as exc:
            self._fail("close", exc)
            cur.file.abandon()
            return
        self._stats["files_written"] += 1
        self._dirty = False
        log.info("archive: wrote %s (%d rows)", path, cur.rows)

    def _abandon(self) -> None:
        cur, self._open = self._open, None
        if cur is not None:
            cur.file.abandon()
        self._dirty = False

    def _fail(self, stage: str, exc: BaseException, retry: bool = True) -> None:
        """Log and count a failure; unless ``retry`` is False, pause writing for a while."""
        kind = _kind(exc)
        errors = self._stats["errors"]
        self._stats["errors"] = {**errors, kind: errors.get(kind, 0) + 1}  # new dict: status()
        self._stats["last_error"] = f"{stage}: {exc}"                       # may be reading
        if retry:
            self._retry_at = time.monotonic() + self.retry_interval
        self._rlog.log(logging.ERROR, kind, "archive %s failed in %s: %s", stage,
                       self.directory, exc)

