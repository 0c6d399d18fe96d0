"""PNG snapshots of a receiver's ring: the latest spectrum over a waterfall (``sunspec[snapshot]``:
needs matplotlib).

Figures are drawn with matplotlib's Agg canvas on a :class:`~matplotlib.figure.Figure` made
directly (no pyplot, so no global state and safe from any thread), and written atomically: to a
temporary file in the same directory, then renamed over the target, so a reader never sees a
half-written PNG. :class:`SnapshotWriter` does this every ``interval`` seconds from its own
thread, names files by the UTC time of their newest row and keeps the newest ``keep``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._worker import Worker
from .ring import Rows
from .source import StreamSource

__all__ = ["SnapshotWriter", "render_png", "save_snapshot"]

log = logging.getLogger(__name__)

#: robust colour levels: these percentiles of the waterfall
LEVEL_PERCENTILES = (1.0, 99.5)
_NAME = re.compile(r"^(?P<prefix>.*)_\d{8}T\d{6}(\.\d+)?Z\.png$")


def _power(data: np.ndarray) -> tuple[np.ndarray, str]:
    """dB when every value is positive (the usual power products), else linear."""
    if data.size and np.all(data > 0):
        return 10.0 * np.log10(data), "Power (dB)"
    return data, "Power"


def render_png(rows: Rows, path: str | os.PathLike, *, title: str = "", cmap: str = "viridis",
               dpi: int = 100, size: tuple[float, float] = (11.0, 8.0)) -> Path:
    """Draw ``rows`` (latest spectrum above, waterfall below) and write a PNG atomically."""
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(rows) == 0:
        raise ValueError("no rows to draw")
    path = Path(path)
    values, unit = _power(rows.data)
    nfreq = values.shape[1]
    if rows.freqs_mhz is not None:
        freqs, flabel = rows.freqs_mhz, "Frequency (MHz)"
        half = (freqs[-1] - freqs[0]) / max(nfreq - 1, 1) / 2
        f_edges = (freqs[0] - half, freqs[-1] + half)
    else:
        freqs, flabel = np.arange(nfreq), "Channel"
        f_edges = (-0.5, nfreq - 0.5)
    times = rows.times
    step = np.median(np.diff(times)) if len(times) > 1 else np.timedelta64(1, "s")
    t_edges = mdates.date2num(np.array([times[0] - step, times[-1]]))
    lo, hi = np.percentile(values, LEVEL_PERCENTILES)
    if not hi > lo:
        hi = lo + 1.0

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_sp, ax_wf = fig.subplots(2, 1, height_ratios=(1, 2.2))
    ax_sp.plot(freqs, values[-1], lw=0.8, color="C1")
    ax_sp.set(xlim=f_edges, xlabel=flabel, ylabel=unit,
              title=f"Latest spectrum {str(times[-1])[:22].replace('T', ' ')} UTC")
    ax_sp.grid(alpha=0.3)
    im = ax_wf.imshow(values.T, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
                      interpolation="nearest", extent=(*t_edges, *f_edges))
    ax_wf.xaxis_date()
    locator = mdates.AutoDateLocator()
    ax_wf.xaxis.set_major_locator(locator)
    ax_wf.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax_wf.set(ylabel=flabel, xlabel=f"Time (UTC), {str(times[0])[:10]}")
    fig.colorbar(im, ax=ax_wf, label=unit, pad=0.01)
    if title:
        fig.suptitle(title)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a snapshot is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _title(source: StreamSource) -> str:
    """The header's beam number (the recorder's) and, for frames of several beams, the
    index within the frame: two different things, never merged."""
    info = source.stream_info
    name = info.get("name")
    parts = [name if name and name != "stream" else None,
             f"beam {info['beam']}" if info.get("beam") is not None else None,
             f"beam index {info.get('beam_index')}" if (info.get("nbeam") or 1) > 1 else None,
             f"product {info.get('product')}",
             f"sender {info['sender_id']}" if info.get("sender_id") else None]
    return "sunspec  " + " · ".join(str(p) for p in parts if p)


def save_snapshot(source: StreamSource | Rows, path: str | os.PathLike[str],
                  **kwargs: Any) -> Path:
    """Write a two-panel PNG of a stream's whole ring (or of ``Rows``) to ``path``.

    ``kwargs`` go to :func:`render_png`. Raises ValueError when there is nothing to draw.
    """
    if isinstance(source, Rows):
        return render_png(source, path, **kwargs)
    ring = source.ring
    rows = ring.latest(ring.nrows) if ring is not None else Rows.empty()
    kwargs.setdefault("title", _title(source))
    return render_png(rows, path, **kwargs)


class SnapshotWriter(Worker):
    """Every ``interval`` s, write ``directory/{prefix}_YYYYmmddTHHMMSSZ.png`` of the ring,
    named by its newest row's UTC time, and delete all but the newest ``keep`` such files.

    Runs in its own thread; a snapshot is skipped while no new row has arrived. :meth:`status`
    gives its counters. :meth:`stop` lets a snapshot in progress finish.
    """

    stop_timeout = 10.0

    def __init__(self, source: StreamSource, directory: str | os.PathLike, *,
                 interval: float = 10.0, keep: int = 100, prefix: str = "sunspec",
                 **render: Any):
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if not prefix or "/" in prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a plain file-name prefix, got {prefix!r}")
        self.source = source
        self.directory = Path(directory)
        self.interval = interval
        self.keep = keep
        self.prefix = prefix
        self.render = render
        super().__init__()
        self._last_row: tuple[int, int] | None = None  # (id of ring, total) last drawn
        self._counts: dict[str, Any] = {"written": 0, "failed": 0, "deleted": 0,
                                        "last_path": None, "last_seconds": None,
                                        "last_error": None}
        self._failing = False  # the last attempt failed

    def _prepare(self) -> tuple[()]:
        self.directory.mkdir(parents=True, exist_ok=True)
        return ()

    def status(self) -> dict[str, Any]:
        """Counters, and health: failed if the thread died, degraded while snapshots fail."""
        health = self.health()
        if health["health"] == "ok" and self._failing:
            health = {"health": "degraded",
                      "health_reason": f"snapshots failing: {self._counts['last_error']}"}
        return dict(self._counts, directory=str(self.directory), keep=self.keep,
                    interval_s=self.interval, running=self.running, **health)

    def write_once(self) -> Path | None:
        """Write one snapshot now if a new row arrived since the last; returns its path."""
        ring = self.source.ring
        if ring is None or ring.total == 0 or self._last_row == (id(ring), ring.total):
            return None
        rows = ring.latest(ring.nrows)
        t0 = time.perf_counter()
        stamp = np.datetime_as_string(rows.times[-1], unit="s").replace("-", "").replace(":", "")
        path = self.directory / f"{self.prefix}_{stamp}Z.png"
        save_snapshot(rows, path, **{"title": _title(self.source), **self.render})
        self._last_row = (id(ring), rows.next_index)
        self._counts.update(written=self._counts["written"] + 1, last_path=str(path),
                            last_seconds=time.perf_counter() - t0)
        self._failing = False
        self._rotate()
        return path

    def _rotate(self) -> None:
        """Delete the oldest of this writer's files beyond ``keep`` (names sort by time)."""
        mine = sorted(p for p in self.directory.iterdir()
                      if (m := _NAME.match(p.name)) and m["prefix"] == self.prefix)
        for old in mine[:-self.keep]:
            try:
                old.unlink()
                self._counts["deleted"] += 1
            except FileNotFoundError:  # removed by someone else meanwhile
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write_once()
            except Exception as exc:  # a full disk must not end the snapshots for good
                self._counts["failed"] += 1
                self._counts["last_error"] = repr(exc)
                self._failing = True
                log.warning("snapshot failed: %r", exc)
