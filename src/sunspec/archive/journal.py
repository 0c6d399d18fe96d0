"""Span journals: the rows of a span being archived, appended to ``<name>.part``.

Layout: a magic line, the header's length (``<u8``), a JSON header (the file's
:class:`~.base.ArchiveMeta`, ``nfreq``, ``freqs_hz``), then fixed-size records: the row's
window-end tag (``<i8``) and its ``nfreq`` values (``<f4``). Both formats journal their
rows this way and turn the journal into their file when the span is complete, so the
format libraries (HDF5, astropy) never write to a disk that may fail under them.

Rows go straight to the kernel (``pwrite``, no user-space buffer): a killed process loses
none of the rows it appended; :meth:`Journal.flush` syncs them to the disk. A write that
fails (a full disk) is cut back to the last whole record, so the journal stays valid and
takes rows again once the disk has room.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from .base import ArchiveData, ArchiveMeta

__all__ = ["Journal", "JournalError", "read_journal"]

_MAGIC = b"sunspec-journal-1\n"
_LEN = struct.Struct("<Q")


class JournalError(ValueError):
    """A ``.part`` file that is not a readable journal; ``empty`` when it holds no row."""

    def __init__(self, message: str, empty: bool):
        super().__init__(message)
        self.empty = empty


def _record_dtype(nfreq: int) -> np.dtype:
    return np.dtype([("tag", "<i8"), ("data", "<f4", (nfreq,))])


def _pwrite_all(fd: int, blob: bytes, offset: int) -> None:
    view = memoryview(blob)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class Journal:
    """A new journal at ``path`` (which must not exist) for rows of ``nfreq`` channels.

    If the header cannot be written the file is removed and the error raised. ``broken``
    is set when a failed append could not be cut back: append no more, complete it.
    """

    def __init__(self, path: Path, meta: ArchiveMeta, freqs_hz: np.ndarray | None, nfreq: int):
        self.path = path
        self.rows = 0
        self.broken = False
        self._dtype = _record_dtype(nfreq)
        head = json.dumps({"meta": meta.to_dict(), "nfreq": nfreq,
                           "freqs_hz": None if freqs_hz is None else
                           np.asarray(freqs_hz, np.float64).tolist()}).encode()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _pwrite_all(self._fd, _MAGIC + _LEN.pack(len(head)) + head, 0)
        except BaseException:
            os.close(self._fd)
            path.unlink(missing_ok=True)
            raise
        self._end = len(_MAGIC) + _LEN.size + len(head)  # offset after the last whole record

    def append(self, data: np.ndarray, end_tag: np.ndarray) -> None:
        """Add rows (float32 (n, nfreq), int64 (n,)): all of them, or none if this raises."""
        rec = np.empty(len(end_tag), self._dtype)
        rec["tag"] = end_tag
        rec["data"] = data
        try:
            _pwrite_all(self._fd, rec.tobytes(), self._end)
        except BaseException:
            try:
                os.ftruncate(self._fd, self._end)
            except OSError:  # rows of this batch may stay after the last whole record
                self.broken = True
            raise
        self._end += rec.nbytes
        self.rows += len(rec)

    def flush(self) -> None:
        """Sync the rows appended so far to the disk (they already survive a killed process)."""
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_journal(path: str | Path) -> tuple[ArchiveData, int]:
    """The rows of a journal up to its last whole record, and the number of bytes after it
    (an incomplete record: the process ended while writing it). Raises :class:`JournalError`
    if ``path`` is not a journal with a whole header."""
    raw = Path(path).read_bytes()
    start = len(_MAGIC) + _LEN.size
    if not raw.startswith(_MAGIC):
        empty = _MAGIC.startswith(raw)
        raise JournalError(f"{path}: {'empty' if empty else 'not a sunspec journal'}", empty)
    if len(raw) < start or len(raw) < start + _LEN.unpack_from(raw, len(_MAGIC))[0]:
        raise JournalError(f"{path}: journal header incomplete ({len(raw)} bytes)", True)
    (nhead,) = _LEN.unpack_from(raw, len(_MAGIC))
    try:
        head = json.loads(raw[start:start + nhead])
        dtype = _record_dtype(int(head["nfreq"]))
        meta = ArchiveMeta.from_dict(head["meta"])
        freqs = head["freqs_hz"]
    except (ValueError, KeyError, TypeError) as exc:
        raise JournalError(f"{path}: bad journal header ({exc})", False) from None
    body = raw[start + nhead:]
    n = len(body) // dtype.itemsize
    rec = np.frombuffer(body, dtype, count=n)
    return (ArchiveData(np.ascontiguousarray(rec["data"]), rec["tag"].copy(),
                        None if freqs is None else np.array(freqs, np.float64), meta),
            len(body) - n * dtype.itemsize)
