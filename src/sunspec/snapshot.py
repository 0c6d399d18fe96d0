"""PNG snapshots of a receiver's ring: the latest spectrum over a waterfall (``sunspec[snapshot]``:
needs matplotlib).

Figures are drawn with matplotlib's Agg canvas on a :class:`~matplotlib.figure.Figure` made
directly (no pyplot, so no global state and safe from any thread), and written atomically: to a
temporary file in the same directory, then renamed over the target, so a reader never sees a
half-written PNG. :class:`SnapshotWriter` does this every ``interval`` seconds from its own
thread, names files by the UTC time of their newest row and keeps the newest ``keep``.

Any spectrometer's rows: the frequency axis may be uneven or descending (each channel is drawn
between the midpoints to its neighbours), values may be linear power, dB or instrument digits
(``unit``, ``db_per_digit``), channels the sender declared missing (NaN) are drawn grey; a
replayed stream is marked as such, and a burst detector's events are drawn as boxes.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._worker import Worker
from .ring import Rows
from .source import StreamSource

__all__ = ["SnapshotWriter", "render_png", "save_snapshot", "snapshot_figure"]

log = logging.getLogger(__name__)

#: robust colour levels: these percentiles of the waterfall
LEVEL_PERCENTILES = (1.0, 99.5)
#: newest events a snapshot asks for
_EVENTS = 200
_NAME = re.compile(r"^(?P<prefix>.*)_\d{8}T\d{6}(\.\d+)?Z\.png$")


#: colour of missing channels (NaN): a grey in no colour map offered
GAP_COLOUR = "#8c8c8c"
#: outline colours of burst events by type
EVENT_COLOURS = {"III": "#ff5ca8", "II": "#5cd6ff"}


def _power(data: np.ndarray, unit: str = "linear", db_per_digit: float | None = None
           ) -> tuple[np.ndarray, str]:
    """Values to draw and their label: dB values as they are, instrument digits times their
    dB step, linear power in dB when every (present) value is positive (the usual power
    products), else linear. Missing values (not finite) stay NaN."""
    data = np.where(np.isfinite(data), data, np.nan)
    if unit == "dB":
        return data, "Power (dB)"
    if unit == "digits":
        k = db_per_digit if db_per_digit else 1.0
        return data * k, f"Power (dB: instrument digits x {k:.4g})"
    present = data[np.isfinite(data)]
    if present.size and np.all(present > 0):
        return 10.0 * np.log10(data), "Power (dB)"
    return data, "Power"


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around monotonic (possibly uneven or descending) centres: the midpoints,
    and half a neighbouring step beyond the first and last."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _uniform(edges: np.ndarray) -> bool:
    d = np.diff(edges)
    return bool(np.allclose(d, d[0], rtol=1e-3, atol=0))


def _utc(iso: Any) -> np.datetime64 | None:
    try:
        return np.datetime64(str(iso).rstrip("Z"), "ms")
    except ValueError:
        return None


def render_png(rows: Rows, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Draw ``rows`` (:func:`snapshot_figure`, ``kwargs`` go to it) and write a PNG
    atomically."""
    path = Path(path)
    fig = snapshot_figure(rows, **kwargs)
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


def snapshot_figure(rows: Rows, *, title: str = "", cmap: str = "viridis", dpi: int = 100,
                    size: tuple[float, float] = (11.0, 8.0), unit: str = "linear",
                    db_per_digit: float | None = None, replay: str | None = None,
                    events: Sequence[dict[str, Any]] = ()) -> Any:
    """The matplotlib Figure of ``rows``: the latest spectrum above, the waterfall below.

    ``unit`` (``linear``, ``dB``, ``digits`` with ``db_per_digit``) says what the values are;
    ``replay`` (a file name, or ``""``) marks a stream played back from a file; ``events``
    (burst event records, docs/PROTOCOL.md part E) are outlined on the waterfall.
    """
    from matplotlib import colormaps
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if len(rows) == 0:
        raise ValueError("no rows to draw")
    values, vlabel = _power(rows.data, unit, db_per_digit)
    nfreq = values.shape[1]
    if rows.freqs_mhz is not None:
        freqs = np.asarray(rows.freqs_mhz, np.float64)
        f_edges = _edges(freqs)
        flabel = "Frequency (MHz)" if _uniform(f_edges) else "Frequency (MHz, uneven channels)"
    else:
        freqs, flabel = np.arange(nfreq, dtype=np.float64), "Channel"
        f_edges = _edges(freqs)
    f_range = (float(f_edges.min()), float(f_edges.max()))
    times = rows.times
    step = np.median(np.diff(times)) if len(times) > 1 else np.timedelta64(1, "s")
    t_edges = mdates.date2num(np.array([times[0] - step, times[-1]]))
    present = values[np.isfinite(values)]
    lo, hi = np.percentile(present, LEVEL_PERCENTILES) if present.size else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    colours = colormaps[cmap].with_extremes(bad=GAP_COLOUR)
    masked = np.ma.masked_invalid(values)

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_sp, ax_wf = fig.subplots(2, 1, height_ratios=(1, 2.2))
    ax_sp.plot(freqs, values[-1], lw=0.8, color="C1")
    ax_sp.set(xlim=f_range, xlabel=flabel, ylabel=vlabel,
              title=f"Latest spectrum {str(times[-1])[:22].replace('T', ' ')} UTC")
    ax_sp.grid(alpha=0.3)
    if _uniform(f_edges):
        im = ax_wf.imshow(masked.T, origin="lower", aspect="auto", cmap=colours, vmin=lo,
                          vmax=hi, interpolation="nearest",
                          extent=(*t_edges, f_edges[0], f_edges[-1]))
    else:  # each channel between the midpoints to its neighbours
        t_cells = mdates.date2num(np.concatenate([[times[0] - step], times]))
        im = ax_wf.pcolormesh(t_cells, f_edges, masked.T, cmap=colours, vmin=lo, vmax=hi,
                              shading="flat", rasterized=True)
    ax_wf.set(ylim=f_range, xlim=tuple(t_edges))
    _draw_events(ax_wf, events, times[0] - step, times[-1], rows.freqs_mhz is not None,
                 Rectangle, mdates.date2num)
    ax_wf.xaxis_date()
    locator = mdates.AutoDateLocator()
    ax_wf.xaxis.set_major_locator(locator)
    ax_wf.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax_wf.set(ylabel=flabel, xlabel=f"Time (UTC), {str(times[0])[:10]}")
    fig.colorbar(im, ax=ax_wf, label=vlabel, pad=0.01)
    if replay is not None:
        title = f"{title}   REPLAY of {replay or 'a file'}".strip()
        fig.text(0.995, 0.995, "REPLAY", ha="right", va="top", color="white", weight="bold",
                 bbox={"facecolor": "#1d4f9c", "edgecolor": "none", "pad": 4})
    if title:
        fig.suptitle(title)
    return fig


def _draw_events(ax: Any, events: Sequence[dict[str, Any]], t_first: np.datetime64,
                 t_last: np.datetime64, has_freqs: bool, rectangle: Callable[..., Any],
                 date2num: Callable[[Any], Any]) -> None:
    """Outline each event over start..end and f_low..f_high (channels without frequencies),
    labelled with its type and snr; events outside the rows' time span are left out."""
    for ev in events:
        t0, t1 = _utc(ev.get("start_utc")), _utc(ev.get("end_utc"))
        if t0 is None or t1 is None or t1 < t_first or t0 > t_last:
            continue
        if has_freqs and ev.get("f_low_mhz") is not None and ev.get("f_high_mhz") is not None:
            y0, y1 = sorted((float(ev["f_low_mhz"]), float(ev["f_high_mhz"])))
        elif ev.get("chan_low") is not None and ev.get("chan_high") is not None:
            y0, y1 = sorted((float(ev["chan_low"]), float(ev["chan_high"])))
        else:
            continue
        x0, x1 = date2num(np.array([t0, max(t1, t0 + np.timedelta64(500, "ms"))]))
        colour = EVENT_COLOURS.get(str(ev.get("type")), "white")
        ax.add_patch(rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.4, ec=colour,
                               ls="-" if ev.get("final") else "--"))
        snr = ev.get("snr")
        label = f"{ev.get('type')} snr {snr:.1f}" if isinstance(snr, (int, float)) else \
            str(ev.get("type"))
        ax.text(x0, y1, label, color=colour, fontsize=8, va="bottom", ha="left",
                clip_on=True)


def _render_args(source: StreamSource) -> dict[str, Any]:
    """What a stream's metadata says about drawing it: title, unit, replay."""
    info = source.stream_info
    replay = str(info.get("source") or "") if info.get("replay") else None
    return {"title": _title(source), "unit": info.get("unit") or "linear",
            "db_per_digit": info.get("db_per_digit"), "replay": replay}


def _title(source: StreamSource) -> str:
    """The header's beam number (the recorder's) and, for frames of several beams, the
    index within the frame: two different things, never merged."""
    info = source.stream_info
    name = info.get("name")
    parts = [name if name and name != "stream" else None,
             info.get("instrument"), info.get("station"),
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
    return render_png(rows, path, **{**_render_args(source), **kwargs})


class SnapshotWriter(Worker):
    """Every ``interval`` s, write ``directory/{prefix}_YYYYmmddTHHMMSSZ.png`` of the ring,
    named by its newest row's UTC time, and delete all but the newest ``keep`` such files.

    Runs in its own thread; a snapshot is skipped while no new row has arrived. :meth:`status`
    gives its counters. :meth:`stop` lets a snapshot in progress finish. ``events`` (e.g.
    ``DetectorWorker.get_events``: the newest ``n`` event records) has burst events outlined.
    """

    stop_timeout = 10.0

    def __init__(self, source: StreamSource, directory: str | os.PathLike, *,
                 interval: float = 10.0, keep: int = 100, prefix: str = "sunspec",
                 events: Callable[[int], list[dict[str, Any]]] | None = None, **render: Any):
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
        self.events = events
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
        events = self.events(_EVENTS) if self.events is not None else []
        save_snapshot(rows, path, **{**_render_args(self.source), "events": events,
                                     **self.render})
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
