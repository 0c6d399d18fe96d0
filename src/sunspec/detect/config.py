"""The detector's settings (every threshold is recorded in each event it publishes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["VERSION", "DetectorConfig"]

#: version of the detection algorithm; changes whenever the same data could give other events
VERSION = "1.0"


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds and geometry of the search (see :mod:`sunspec.detect`).

    Significances are in units of the statistic's own robust standard deviation measured on
    the stream, so a threshold means the same on any instrument.
    """

    #: type III: leave-one-out significance of a drift-curve sum over sub-bands
    threshold: float = 7.0
    #: type II: significance of a slow lane sum
    type2_threshold: float = 9.0
    #: sub-bands a type III must cover, each above ``subband_z``
    min_subbands: int = 3
    subband_z: float = 1.0
    #: a type III's curve must be bright (smoothed significance >= 3) in bins covering at
    #: least this ratio of frequencies (a type II lane, a few per cent wide, cannot)
    min_band_ratio: float = 1.4
    #: a trigger whose zero-drift (simultaneous) sum reaches this fraction of its best drift
    #: sum is a broadband spike or gain step, not a burst
    spike_ratio: float = 0.85
    #: a type II lane whose constant-frequency sum reaches this fraction of its best drifting
    #: one is narrowband RFI
    rfi_ratio: float = 0.85
    #: frequency bins (uniform in log f) and sub-bands of equal numbers of bins
    nbins: int = 64
    nsub: int = 8
    #: per-channel z is clipped to +-zclip before binning; binned z of the type II search to
    #: +-type2_clip (so one bright pixel cannot make a lane)
    zclip: float = 5.0
    type2_clip: float = 3.0
    #: background: median of the last bg_window_s, recomputed every bg_update_s; no
    #: detection before warmup_s of data
    bg_window_s: float = 120.0
    bg_update_s: float = 30.0
    warmup_s: float = 30.0
    #: a channel more than 3 sigma above background in a fraction of the window exceeding
    #: its neighbours' by this much is masked as RFI
    rfi_occupancy: float = 0.1
    #: subtract each row's median over bins (gain changes, broadband spikes)
    common_mode: bool = True
    #: type II lanes: length and time step
    type2_lane_s: float = 60.0
    type2_step_s: float = 2.0
    #: triggers of one type closer than this in time (and overlapping in frequency for type
    #: II) grow one event; an event is final after this long without a trigger
    merge_gap_s: float = 5.0
    type2_merge_gap_s: float = 60.0
    #: an event longer than this is closed and continued by a new one (field ``continues``)
    max_event_s: float = 900.0

    def __post_init__(self) -> None:
        for name in ("threshold", "type2_threshold", "zclip", "type2_clip", "bg_window_s",
                     "bg_update_s", "type2_lane_s", "type2_step_s", "merge_gap_s",
                     "type2_merge_gap_s", "max_event_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {self.warmup_s}")
        if self.nsub < 2 or self.nbins < 2 * self.nsub or self.nbins % self.nsub:
            raise ValueError(f"nbins must be a multiple of nsub >= 2 with at least 2 bins per "
                             f"sub-band, got nbins={self.nbins}, nsub={self.nsub}")
        if not 2 <= self.min_subbands <= self.nsub:
            raise ValueError(f"min_subbands must be in [2, nsub], got {self.min_subbands}")
        if self.min_band_ratio < 1:
            raise ValueError(f"min_band_ratio must be >= 1, got {self.min_band_ratio}")
        for name in ("spike_ratio", "rfi_ratio", "rfi_occupancy"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
