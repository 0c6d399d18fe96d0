"""ArchiveWriter: a thread that copies a receiver's ring rows into files of fixed UTC spans.

Rows are read with ``ring.since(cursor)`` / ``ring.wait`` from the writer's own thread, so
reception never waits for a disk. A row belongs to the span holding its averaging window:
span ``(end_tag - 1) // span_ticks``, spans aligned to multiples of ``span`` seconds since
1970 (900 s: quarter hours). One file holds one span's rows in strictly increasing time; a
row from another span, a time going backwards or a new ring (the stream's geometry changed)
starts a new file. A file is completed when a row of a later span arrives, when no row has
come for ``idle_close`` seconds, or at :meth:`ArchiveWriter.stop`.

An open span's rows are journalled in ``<name>.part`` (:mod:`.journal`). To complete it the
format's file is written as ``<name>.tmp``, the journal removed, and the file published
under ``<name>`` by a hard link, which fails rather than replace an existing file (a name
already taken gets ``-1``, ``-2``, ...); then ``.tmp`` is removed. A crash at any step is
undone by :func:`recover` at the next start, with no row lost or published twice: a journal
is completed, a lone ``.tmp`` published, one already published (two links) removed.

Nothing here stops reception. A failing disk (full, read-only, ...) is logged at a bounded
rate and counted under the error's kind (``ENOSPC``, ``EACCES``, ...); writing pauses for
``retry_interval``, and rows that arrive meanwhile are counted as ``rows_dropped``. A failed
write leaves the journal whole, so the span goes on in the same file once the disk has room;
spans that could not be completed are retried. ``status()["health"]`` is ``"degraded"``
(``health_reason`` says why) from a failure until writing succeeds again, else ``"ok"``.
Rows the ring overwrote before the writer read them are counted as ``rows_missed``.

Retention (``keep_days``, ``min_free_gb``) deletes the oldest archive files, recognised by
their names (:func:`is_archive_name`); nothing else in the directory is touched.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
from .base import ArchiveData, ArchiveMeta, meta_from_stream_info
from .journal import Journal, JournalError, read_journal
from .retention import prune

__all__ = ["FORMATS", "ArchiveWriter", "Recovery", "is_archive_name", "recover"]

log = logging.getLogger(__name__)

#: format name -> module with EXTENSION, read() and write()
FORMATS: dict[str, ModuleType] = {"hdf5": hdf5, "fits": fits}
_EXTENSIONS = {m.EXTENSION: m for m in FORMATS.values()}
#: seconds the thread sleeps in ring.wait before doing housekeeping
_TICK = 0.25
#: seconds between retention passes
_RETENTION_INTERVAL = 60.0
#: what _final_name gives (``-N`` when the name was taken), and quarantined journals
_EXT_PATTERN = "|".join(re.escape(ext) for ext in _EXTENSIONS)
_ARCHIVE_NAME = re.compile(rf"(?P<station>[A-Za-z0-9-]+)_\d{{8}}_\d{{6}}_\d{{2,}}(_replay)?(-\d+)?"
                           rf"({_EXT_PATTERN})(\.part\.bad)?")


def _software() -> str:
    from .. import __version__

    return f"sunspec {__version__}"


def _kind(exc: BaseException) -> str:
    """Counter name for an error: the errno's name for OS errors, else the type's name."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is not None and code in errno.errorcode:
        return errno.errorcode[code]
    return type(exc).__name__


def is_archive_name(name: str, stations: Iterable[str] = (ArchiveMeta.station,)) -> bool:
    """True for the names of the files an ArchiveWriter publishes (or quarantines) for one
    of ``stations`` (by default the OVRO-LWA's; a writer adds each station it wrote)."""
    m = _ARCHIVE_NAME.fullmatch(name)
    return m is not None and m["station"] in stations


def _candidates(final: Path) -> Iterator[Path]:
    """``final``, then ``stem-1.ext``, ``stem-2.ext``, ... (ext may be double, e.g. .h5)."""
    yield final
    stem, ext = final.name.split(".", 1)
    i = 1
    while True:
        yield final.with_name(f"{stem}-{i}.{ext}")
        i += 1


def _taken(path: Path) -> bool:
    return any(path.with_name(path.name + suffix).exists()
               for suffix in ("", ".part", ".tmp", ".part.bad"))


def _publish(tmp: Path, final: Path) -> Path:
    """Give the finished file ``tmp`` the first free name from ``final`` on, never replacing
    a file nor taking the name of another span's journal; removes ``tmp``."""
    for cand in _candidates(final):
        if cand != final and _taken(cand):
            continue
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
        tmp.unlink()
        return cand
    raise AssertionError("unreachable")


@dataclass
class Recovery:
    """What :func:`recover` did."""

    published: list[tuple[Path, int, int]] = field(default_factory=list)
    """files published, the rows each holds (0: an unknown number, from a lone ``.tmp``),
    and the bytes of an incomplete last row dropped from its journal"""
    removed: list[tuple[Path, str]] = field(default_factory=list)
    """journals removed because they held no row, and why"""
    quarantined: list[tuple[Path, Path, str]] = field(default_factory=list)
    """unreadable journals: their name, their new name (``.part.bad``), and why"""
    failed: list[tuple[Path, BaseException]] = field(default_factory=list)
    """journals and files that could not be completed now (kept, to try again)"""


def _module_for(final: Path) -> ModuleType | None:
    return _EXTENSIONS.get(final.suffix)


def _read_part(part: Path, module: ModuleType) -> tuple[ArchiveData, int]:
    """Rows of a journal (or of an HDF5 file sunspec 0.1 wrote while a span was open)."""
    try:
        return read_journal(part)
    except JournalError as exc:
        if exc.empty or module is not hdf5:
            raise
        journal_error = exc
    try:
        return hdf5.read(part), 0
    except Exception as exc:
        raise JournalError(f"{journal_error}; nor a readable HDF5 file ({exc})", False) from exc


def _complete(part: Path, final: Path, module: ModuleType, done: Recovery) -> None:
    """Turn the journal ``part`` into the published file for ``final``; see :class:`Recovery`.
    OS errors (a full disk, ...) are raised, with the journal kept."""
    try:
        rows, torn = _read_part(part, module)
    except JournalError as exc:
        if exc.empty:
            part.unlink()
            done.removed.append((part, str(exc)))
        else:
            done.quarantined.append((part, _publish(part, part.with_name(part.name + ".bad")),
                                     str(exc)))
        return
    if not len(rows):
        part.unlink()
        done.removed.append((part, "held no rows"))
        return
    tmp = final.with_name(final.name + ".tmp")
    tmp.unlink(missing_ok=True)  # an incomplete one, from an attempt cut short
    module.write(tmp, rows)
    part.unlink()  # from here on the .tmp file holds every row
    done.published.append((_publish(tmp, final), len(rows), torn))


def recover(directory: Path, skip: frozenset[Path] = frozenset()) -> Recovery:
    """Complete the journals (``*.part``) and unpublished files (``*.tmp``) that a writer
    stopped by a crash or by a failure left in ``directory``, except the journals in ``skip``
    (being written). Never raises for one file: see :attr:`Recovery.failed`."""
    done = Recovery()
    for part in sorted(directory.glob("*.part")):
        final = part.with_suffix("")
        module = _module_for(final)
        if part in skip or module is None:
            continue
        try:
            _complete(part, final, module, done)
        except Exception as exc:
            done.failed.append((part, exc))
    for tmp in sorted(directory.glob("*.tmp")):
        final = tmp.with_suffix("")
        if _module_for(final) is None or final.with_name(final.name + ".part").exists():
            continue  # not ours, or being written again from its journal
        try:
            if tmp.stat().st_nlink > 1:  # published before the crash, not yet removed
                tmp.unlink()
            else:
                done.published.append((_publish(tmp, final), 0, 0))
        except Exception as exc:
            done.failed.append((tmp, exc))
    return done


@dataclass
class _Open:
    """The file being written."""

    journal: Journal
    final: Path
    module: ModuleType
    span: int
    ring: RingBuffer
    last_tag: int


class ArchiveWriter(Worker):
    """Archive a receiver's rows to ``directory`` in ``fmt`` ('hdf5' or 'fits'), one file per
    ``span`` seconds of UTC.

    ``receiver`` is any :class:`~sunspec.source.StreamSource` (e.g. a Receiver).
    ``sun_above`` (degrees) keeps only rows taken while the Sun is higher than that at OVRO.
    ``keep_days`` deletes archive files last written more than that many days ago;
    ``min_free_gb`` deletes the oldest archive files while the file system has less than that
    many GB (1e9 bytes) free. :meth:`stop` writes what the ring still holds for the writer
    and completes the open file.
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
        keep_days: float | None = None,
        min_free_gb: float | None = None,
        batch: int = 1024,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
        if int(span) != span or span < 1:
            raise ValueError(f"span must be a whole number of seconds >= 1, got {span}")
        if keep_days is not None and not keep_days > 0:
            raise ValueError(f"keep_days must be > 0, got {keep_days}")
        if min_free_gb is not None and not min_free_gb >= 0:
            raise ValueError(f"min_free_gb must be >= 0, got {min_free_gb}")
        self.receiver = receiver
        self.directory = Path(directory)
        self.fmt = fmt
        self.span = int(span)
        self.flush_interval = flush_interval
        self.idle_close = idle_close
        self.retry_interval = retry_interval
        self.sun_above = sun_above
        self.keep_days = keep_days
        self.min_free_gb = min_free_gb
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
        self._pending = False  # journals or files left to complete (a failure, a crash)
        self._retention_at = 0.0
        #: stations whose archive files retention may delete: OVRO-LWA and each one written
        self._stations = {ArchiveMeta.station}
        self._stats: dict[str, Any] = {
            "files_written": 0, "files_recovered": 0, "rows_written": 0, "rows_missed": 0,
            "rows_dropped": 0, "rows_skipped_sun": 0, "rows_recovered": 0, "rows_torn": 0,
            "parts_removed": 0, "parts_quarantined": 0, "files_deleted": 0, "bytes_deleted": 0,
            "errors": {}, "last_error": None, "health": "ok", "health_reason": None,
        }

    # --- lifecycle (start, stop, running, context manager: Worker) ---------------------------
    def _thread_name(self) -> str:
        return f"sunspec-archive {self.directory}"

    def _prepare(self) -> tuple[()]:
        self._first_ring = self.receiver.ring
        log.info("archiving %s files of %d s to %s", self.fmt, self.span, self.directory)
        return ()

    def status(self) -> dict[str, Any]:
        """The writer's counters (a section of the program's status).

        ``health`` is ``"ok"``, or ``"degraded"`` from a failure (``health_reason``) until
        writing succeeds again with nothing left to complete.
        """
        st = dict(self._stats)
        st["errors"] = dict(st["errors"])
        cur = self._open
        st.update(running=self.running, directory=str(self.directory), format=self.fmt,
                  span_s=self.span, current_file=str(cur.final) if cur else None,
                  current_rows=cur.journal.rows if cur else 0)
        return st

    # --- thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        self._guarded(self._recover_left)
        while True:
            stopping = self._stop.is_set()
            # after stop: one last pass, no waiting; after an unexpected error: a pause
            if not self._guarded(self._step, not stopping) and not stopping:
                self._stop.wait(self.retry_interval)
            if stopping:
                break
        self._guarded(self._close)

    def _guarded(self, step: Any, *args: Any) -> bool:
        """Run ``step``; an exception (a bug) is logged with its traceback at a bounded rate
        and counted, and never ends the thread."""
        try:
            step(*args)
        except Exception as exc:
            self._fail(f"thread ({step.__name__})", exc, exc_info=True)
            return False
        return True

    def _recover_left(self) -> None:
        """Complete what an earlier writer left (at start), or what failed (on retry)."""
        if not self.directory.is_dir():
            return
        cur = self._open
        done = recover(self.directory, frozenset({cur.journal.path}) if cur else frozenset())
        self._pending = bool(done.failed)
        for path, rows, torn in done.published:
            self._stats["files_recovered"] += 1
            self._stats["rows_recovered"] += rows
            log.warning("archive: completed %s (%s rows), left by a crash or a failure", path,
                        rows or "all its")
            self._torn(path, torn)
        self._count_removed(done)
        for path, exc in done.failed:
            self._fail(f"completing {path.name}", exc)
        if not done.failed:
            self._healthy()

    def _count_removed(self, done: Recovery) -> None:
        for path, why in done.removed:
            self._stats["parts_removed"] += 1
            log.warning("archive: removed %s: %s", path, why)
        for path, bad, why in done.quarantined:
            self._stats["parts_quarantined"] += 1
            log.error("archive: %s is unreadable, moved to %s: %s", path, bad.name, why)

    def _torn(self, path: Path, nbytes: int) -> None:
        if nbytes:
            self._stats["rows_torn"] += 1
            log.warning("archive: %s: dropped an incomplete last row (%d bytes)", path, nbytes)

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
        elif not wait or ring.wait(self._cursor, _TICK):
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
        if now >= self._retention_at and (self.keep_days is not None or self.min_free_gb):
            self._retention_at = now + _RETENTION_INTERVAL
            self._retention()
        if self._pending and now >= self._retry_at:
            self._recover_left()
        cur = self._open
        if cur is None:
            return
        if now - self._last_row >= self.idle_close:
            self._close()
        elif self._dirty and now - self._last_flush >= self.flush_interval:
            self._last_flush = now
            try:
                cur.journal.flush()
            except Exception as exc:
                self._fail("flush", exc)
                return
            self._dirty = False

    def _retention(self) -> None:
        if not self.directory.is_dir():
            return
        min_free = None if self.min_free_gb is None else round(self.min_free_gb * 1e9)
        try:
            pruned = prune(self.directory, lambda name: is_archive_name(name, self._stations),
                           keep_days=self.keep_days,
                           min_free_bytes=min_free, now=time.time())
        except OSError as exc:
            self._fail("retention", exc, retry=False)
            return
        if pruned.deleted:
            self._stats["files_deleted"] += len(pruned.deleted)
            self._stats["bytes_deleted"] += pruned.bytes
            first, last = pruned.deleted[0], pruned.deleted[-1]
            log.info("archive retention: deleted %d files (%.1f MB), %s to %s (%s)",
                     len(pruned.deleted), pruned.bytes / 1e6, first[0].name, last[0].name,
                     last[2])
            for path, size, why in pruned.deleted:
                log.debug("archive retention: deleted %s (%d bytes, %s)", path, size, why)
        if pruned.free_bytes is not None and min_free and pruned.free_bytes < min_free:
            self._rlog.log(logging.WARNING, "min_free", "archive: %.3f GB free in %s, less "
                           "than the %g GB asked, and no archive file left to delete",
                           pruned.free_bytes / 1e9, self.directory, self.min_free_gb)

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
                cur.journal.append(data[a:b], tags[a:b])
            except Exception as exc:
                self._fail("write", exc)
                self._stats["rows_dropped"] += len(tags) - a
                if self._open is not None and self._open.journal.broken:
                    self._close()
                return
            cur.last_tag = int(tags[b - 1])
            self._stats["rows_written"] += b - a
            self._dirty = True
            self._last_row = time.monotonic()
        self._healthy()

    def _file_for(self, span: int, first_tag: int, ring: RingBuffer) -> _Open:
        cur = self._open
        if cur is not None and cur.span == span and cur.ring is ring and first_tag > cur.last_tag:
            return cur
        self._close()
        meta = meta_from_stream_info(self.receiver.stream_info,
                                     span_start_tag=span * self._span_ticks,
                                     span_s=self.span, software=_software())
        self._stations.add(meta.station)
        self.directory.mkdir(parents=True, exist_ok=True)
        final = next(p for p in _candidates(self._final_name(meta)) if not _taken(p))
        part = final.with_name(final.name + ".part")
        journal = Journal(part, meta, ring.freqs_hz, ring.nfreq)
        self._open = _Open(journal, final, FORMATS[self.fmt], span, ring, first_tag - 1)
        self._last_flush = time.monotonic()
        log.info("archive: writing %s", part)
        return self._open

    def _final_name(self, meta: ArchiveMeta) -> Path:
        start = tag_to_datetime(meta.span_start_tag).strftime("%Y%m%d_%H%M%S")
        beam = meta.beam if meta.beam is not None else 0
        replay = "_replay" if meta.replay else ""  # never an original span's name
        return self.directory / (f"{meta.station}_{start}_{beam:02d}{replay}"
                                 f"{FORMATS[self.fmt].EXTENSION}")

    def _close(self) -> None:
        """Complete the open file; if that fails its journal is kept and retried."""
        cur, self._open = self._open, None
        if cur is None:
            return
        self._dirty = False
        done = Recovery()
        try:
            cur.journal.close()
            _complete(cur.journal.path, cur.final, cur.module, done)
        except Exception as exc:
            self._pending = True
            self._fail("close", exc)
            return
        for path, rows, torn in done.published:
            self._stats["files_written"] += 1
            log.info("archive: wrote %s (%d rows)", path, rows)
            self._torn(path, torn)
        self._count_removed(done)

    def _healthy(self) -> None:
        """Writing succeeded: back to health "ok" unless something is left to complete."""
        if self._stats["health"] != "ok" and not self._pending:
            self._stats.update(health="ok", health_reason=None)
            self._rlog.log(logging.INFO, "healthy", "archive: writing to %s again",
                           self.directory)

    def _fail(self, stage: str, exc: BaseException, retry: bool = True,
              exc_info: bool = False) -> None:
        """Log and count a failure; unless ``retry`` is False, pause writing for a while."""
        kind = _kind(exc)
        errors = self._stats["errors"]
        reason = f"{stage}: {exc}"
        self._stats.update(errors={**errors, kind: errors.get(kind, 0) + 1},  # new dict:
                           last_error=reason, health="degraded", health_reason=reason)
        if retry:                                                    # status() may be reading
            self._retry_at = time.monotonic() + self.retry_interval
        if kind == "ENOSPC":
            self._retention_at = 0.0  # free space now if a minimum is set
        self._rlog.log(logging.ERROR, kind, "archive %s failed in %s: %s", stage,
                       self.directory, exc, exc_info=exc_info)

