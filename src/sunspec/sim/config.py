"""The simulator's parameters in one dataclass, :class:`SimConfig`, and the activity levels.

Rates (long-run means; ``duty`` is the fraction of time in active episodes, outside which
no type III, IIIb or spike occurs, i.e. quiet hours):

========== ======================== ============= ============ =========== ========
level      type III (groups/h in    type II / day type IV / day spike       duty
           episodes x per group)                               clusters/h
========== ======================== ============= ============ =========== ========
quiet      1 x 2   (0.6/h overall)  0.02          0            0.1         0.3
active     6 x 4   (12/h overall)   0.3           0.2          1           0.5
storm      30 x 5  (135/h overall)  2             1            4           0.9
demo       40 x 3  (120/h overall)  24            0            6           1
========== ======================== ============= ============ =========== ========

Sources, as orders of magnitude: type III occurrence from a few per day at solar minimum to
hundreds per day at maximum, in groups of several bursts minutes apart during active
periods, and thousands per day in type III storms lasting hours to days (Reid & Ratcliffe
2014, RAA 14, 773, sect. 2; Fainberg & Stone 1974, Space Sci. Rev. 16, 145 for storms;
Saint-Hilaire, Vilmer & Kerdraon 2013, ApJ 762, 60, for a decade of rates at Nancay).
Metric type II bursts: roughly 0.1 to 1 per day near solar maximum, far fewer at minimum
(Gopalswamy 2006, in *Solar Eruptions and Energetic Particles*, AGU Monograph 165, 207).
Type IV continua follow the largest flares, a few per month at maximum (McLean & Labrum
1985, *Solar Radiophysics*, ch. 15). Peak brightness: a power law ``dN/dS ~ S**-index``,
index about 1.7 for type III peak fluxes (Saint-Hilaire et al. 2013; Eastwood et al. 2010,
Solar Phys. 264, 283 find 1.7 to 2.1). ``demo`` is not a solar level: it keeps a live view
busy (a bright type III at 3 s, then a burst or group about every minute).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACTIVITY", "SimConfig"]

#: rates of each activity level (see the module docstring)
ACTIVITY: dict[str, dict[str, float]] = {
    "quiet": {"duty": 0.3, "episode_s": 3600.0, "type3_groups_per_hour": 1.0,
              "type3_per_group": 2.0, "type2_per_day": 0.02, "type4_per_day": 0.0,
              "spike_clusters_per_hour": 0.1, "brightness_floor": 0.05, "opening_s": 0.0},
    "active": {"duty": 0.5, "episode_s": 2400.0, "type3_groups_per_hour": 6.0,
               "type3_per_group": 4.0, "type2_per_day": 0.3, "type4_per_day": 0.2,
               "spike_clusters_per_hour": 1.0, "brightness_floor": 0.05, "opening_s": 0.0},
    "storm": {"duty": 0.9, "episode_s": 14400.0, "type3_groups_per_hour": 30.0,
              "type3_per_group": 5.0, "type2_per_day": 2.0, "type4_per_day": 1.0,
              "spike_clusters_per_hour": 4.0, "brightness_floor": 0.05, "opening_s": 0.0},
    "demo": {"duty": 1.0, "episode_s": 3600.0, "type3_groups_per_hour": 40.0,
             "type3_per_group": 3.0, "type2_per_day": 24.0, "type4_per_day": 0.0,
             "spike_clusters_per_hour": 6.0, "brightness_floor": 0.5, "opening_s": 3.0},
}


def _f(help_text: str, **kw: Any) -> Any:
    return field(metadata={"help": help_text}, **kw)


@dataclass(frozen=True)
class SimConfig:
    """Every parameter of the simulated sky (``sunspec-sim`` exposes each as
    ``--field-name``). Fields left ``None`` take the value of the ``activity`` level."""

    activity: str = _f("activity level: quiet, active, storm or demo", default="demo")
    duty: float | None = _f("fraction of time in active episodes (quiet hours outside)",
                            default=None)
    episode_s: float | None = _f("mean length of an active episode, s", default=None)
    type3_groups_per_hour: float | None = _f("type III groups per hour inside episodes",
                                             default=None)
    type3_per_group: float | None = _f("mean type III bursts per group", default=None)
    type3_spacing_s: float = _f("mean spacing of bursts within a group, s", default=4.0)
    type3b_fraction: float = _f("fraction of type IIIs that are striated type IIIb",
                                default=0.1)
    type3_stop_fraction: float = _f("fraction of type IIIs that stop above 20 MHz",
                                     default=0.3)
    type2_per_day: float | None = _f("type II bursts per day", default=None)
    type2_split_fraction: float = _f("fraction of type IIs with split lanes", default=0.6)
    herringbone_fraction: float = _f("fraction of type IIs with herringbones", default=0.0)
    type4_per_day: float | None = _f("type IV continua per day", default=None)
    spike_clusters_per_hour: float | None = _f("spike clusters per hour inside episodes",
                                               default=None)
    spikes_per_cluster: float = _f("mean spikes per cluster", default=20.0)
    brightness_index: float = _f("power-law index of peak brightness dN/dS ~ S**-index",
                                 default=1.7)
    brightness_floor: float | None = _f("smallest peak excess over the sky", default=None)
    brightness_max: float = _f("largest peak excess over the sky", default=1000.0)
    opening_s: float | None = _f("a bright type III at this data time, 0 = none",
                                 default=None)
    impulse_per_s: float = _f("broadband impulses (1-3 spectra) per second", default=0.02)
    rfi_hf_lines: int = _f("RFI lines below 30 MHz (broadcast, CB, amateur bands)",
                           default=30)
    rfi_lines: int = _f("RFI lines above 30 MHz besides the fixed ones", default=6)
    hf_junk: float = _f("broadband interference excess at 20 MHz (falls as f**-6)",
                        default=0.4)
    gain_drift: float = _f("relative amplitude of the slow gain drift", default=0.03)
    gain_period_s: float = _f("period of the gain drift, s", default=10800.0)
    sky_drift: float = _f("relative amplitude of the sidereal sky drift", default=0.1)

    def __post_init__(self) -> None:
        if self.activity not in ACTIVITY:
            raise ValueError(f"activity must be one of {', '.join(ACTIVITY)}, "
                             f"got {self.activity!r}")
        if not self.brightness_index > 1:
            raise ValueError(f"brightness_index must be > 1, got {self.brightness_index}")
        floor = self.get("brightness_floor")
        if not 0 < floor < self.brightness_max:
            raise ValueError("need 0 < brightness_floor < brightness_max")
        for name in ("duty",):
            if not 0 < self.get(name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and v < 0:
                raise ValueError(f"{f.name} must be >= 0, got {v}")

    def get(self, name: str) -> float:
        """The field's value, or the activity level's when the field is ``None``."""
        v = getattr(self, name)
        return float(ACTIVITY[self.activity][name] if v is None else v)

    def mean_rate_per_hour(self, kind: str) -> float:
        """Long-run mean number of events of ``kind`` (III, IIIb, II, IV, spike, impulse)
        per hour."""
        duty = self.get("duty")
        groups = duty * self.get("type3_groups_per_hour") * self.get("type3_per_group")
        return {"III": groups * (1 - self.type3b_fraction),
                "IIIb": groups * self.type3b_fraction,
                "II": self.get("type2_per_day") / 24,
                "IV": self.get("type4_per_day") / 24,
                "spike": duty * self.get("spike_clusters_per_hour") * self.spikes_per_cluster,
                "impulse": self.impulse_per_s * 3600}[kind]
