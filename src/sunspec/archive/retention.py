"""Archive retention: delete the oldest archive files, by age and to keep disk space free."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Pruned", "prune"]


@dataclass
class Pruned:
    """What one :func:`prune` pass did."""

    deleted: list[tuple[Path, int, str]] = field(default_factory=list)  # path, bytes, reason
    free_bytes: int | None = None  # free space after the pass, when a minimum was asked

    @property
    def bytes(self) -> int:
        return sum(size for _, size, _ in self.deleted)


def prune(directory: Path, is_ours: Callable[[str], bool], *, keep_days: float | None,
          min_free_bytes: int | None, now: float) -> Pruned:
    """Delete, oldest first (by modification time), the files in ``directory`` whose names
    ``is_ours`` accepts: those last modified more than ``keep_days`` before ``now`` (Unix
    seconds), then more while the file system has less than ``min_free_bytes`` free for
    unprivileged users. Other files are never touched."""
    ours = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if is_ours(entry.name) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                ours.append((st.st_mtime, entry.name, st.st_size))
    ours.sort()
    result = Pruned()
    oldest_kept = None if keep_days is None else now - keep_days * 86400.0
    for mtime, name, size in ours:
        if oldest_kept is not None and mtime < oldest_kept:
            reason = f"older than {keep_days:g} days"
        elif min_free_bytes and shutil.disk_usage(directory).free < min_free_bytes:
            reason = f"less than {min_free_bytes / 1e9:g} GB free"
        else:
            break
        (directory / name).unlink(missing_ok=True)
        result.deleted.append((directory / name, size, reason))
    if min_free_bytes:
        result.free_bytes = shutil.disk_usage(directory).free
    return result
