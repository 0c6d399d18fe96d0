"""Events: one record per burst, grown by revisions from the search's triggers.

Rule for merging and splitting (also in docs/PROTOCOL.md): a trigger joins the open event of
its type whose time span, widened by ``merge_gap_s`` (type III) or ``type2_merge_gap_s``
(type II, whose frequency range must also overlap), holds the trigger's onset; otherwise it
opens a new event. So a group of type IIIs closer than the gap is one event, and a type II
with its harmonic and fine structure is one event. A type II trigger whose lane a type III
event covered for half its length is that burst's slow low-frequency tail and is dropped,
and so is a trigger whose onset falls within an event already final (a late look at it).
An event with no trigger for its gap is final; one longer than ``max_event_s`` is made final
and continued by a new event naming it in ``continues``. An event is published when it
opens, then at most once per ``_REVISE_S`` of data while it changes, and once more when
final: never twice as new.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clock import FS, tag_to_datetime
from .config import VERSION, DetectorConfig
from .search import Trigger, ah_drift_mhz_s

__all__ = ["SCHEMA", "Event", "EventBuilder", "iso_utc"]

#: version of the event record's layout
SCHEMA = 1
#: seconds of data between two published revisions of a changing event
_REVISE_S = 5.0


def iso_utc(tag: int) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` of a 196 MHz tag."""
    return tag_to_datetime(tag).isoformat(timespec="milliseconds") + "Z"


@dataclass
class Event:
    """A burst being followed (rows are the detector's row counter)."""

    id: str
    type: str
    start_row: int
    end_row: int
    bin_high: int
    bin_low: int
    snr: float
    score: float
    rate: float
    excess_db: float
    harmonic: bool
    last_row: int = -1
    continues: str | None = None
    triggers: int = 1
    revision: int = 0
    final: bool = False
    published_row: int = -1
    dirty: bool = True
    record: dict[str, Any] = field(default_factory=dict)


class EventBuilder:
    """Turns triggers into events; ``tick`` finalises quiet ones."""

    def __init__(self, config: DetectorConfig, dt_s: float, stream: str):
        self.c = config
        self.dt = dt_s
        self.stream = stream
        self.open: list[Event] = []
        #: recently finalised events (for :meth:`explained_by_type3`)
        self.closed: deque[Event] = deque(maxlen=64)
        self.late = 0
        self._gap = {"III": max(1, round(config.merge_gap_s / dt_s)),
                     "II": max(1, round(config.type2_merge_gap_s / dt_s))}
        self._max_rows = max(1, round(config.max_event_s / dt_s))
        self._revise_rows = max(1, round(_REVISE_S / dt_s))

    def _new_id(self, kind: str, start_tag: int) -> str:
        when = tag_to_datetime(start_tag).strftime("%Y%m%dT%H%M%S")
        return f"{self.stream or 'stream'}-{when}-{kind}-{secrets.token_hex(4)}"

    def add(self, trig: Trigger, tag_of: Callable[[int], int]) -> Event | None:
        """Merge ``trig`` into an open event or open a new one; returns that event (None
        for a trigger within an event already final, which is counted in ``late``)."""
        gap = self._gap[trig.kind]
        for ev in self.open:
            if ev.type != trig.kind or not (
                    ev.start_row - gap <= trig.onset_row <= ev.end_row + gap
                    or ev.start_row <= trig.onset_row <= ev.last_row + gap):
                continue
            if trig.kind == "II" and (trig.bin_high > ev.bin_low + 2 or
                                      trig.bin_low < ev.bin_high - 2):
                continue
            self._grow(ev, trig)
            return ev
        for ev in self.closed:  # a late look at a burst already final: no duplicate
            if ev.type == trig.kind and ev.start_row - gap <= trig.onset_row <= \
                    ev.end_row + gap:
                self.late += 1
                return None
        ev = Event(self._new_id(trig.kind, tag_of(trig.onset_row)), trig.kind, trig.onset_row,
                   trig.end_row, trig.bin_high, trig.bin_low, trig.snr, trig.score, trig.rate,
                   trig.excess_db, trig.harmonic, trig.row)
        self.open.append(ev)
        return ev

    def explained_by_type3(self, trig: Trigger) -> bool:
        """True if a type III event was active over at least half of a type II trigger's
        lane in an overlapping band: the lane is that burst's slow low-frequency tail."""
        span = max(trig.row - trig.onset_row, 1)
        for ev in (*self.open, *self.closed):
            if ev.type != "III" or ev.bin_high > trig.bin_low or ev.bin_low < trig.bin_high:
                continue
            both = min(max(ev.end_row, ev.last_row), trig.row) - max(ev.start_row,
                                                                      trig.onset_row)
            if both >= span / 2:
                return True
        return False

    @staticmethod
    def _grow(ev: Event, trig: Trigger) -> None:
        ev.triggers += 1
        ev.last_row = max(ev.last_row, trig.row)
        before = (ev.start_row, ev.end_row, ev.bin_high, ev.bin_low)
        ev.start_row = min(ev.start_row, trig.onset_row)
        ev.end_row = max(ev.end_row, trig.end_row)
        ev.bin_high = min(ev.bin_high, trig.bin_high)
        ev.bin_low = max(ev.bin_low, trig.bin_low)
        ev.excess_db = max(ev.excess_db, trig.excess_db)
        ev.harmonic = ev.harmonic or trig.harmonic
        if trig.snr > ev.snr:
            ev.snr, ev.score, ev.rate = trig.snr, trig.score, trig.rate
            ev.dirty = True
        if before != (ev.start_row, ev.end_row, ev.bin_high, ev.bin_low):
            ev.dirty = True

    def due(self, now_row: int, flush: bool = False) -> tuple[list[Event], list[Event]]:
        """Events to publish now, and new events continuing ones split for length.

        Finalises events quiet for their gap (all of them if ``flush``) and those longer
        than ``max_event_s``; removes final ones from :attr:`open`.
        """
        out: list[Event] = []
        successors: list[Event] = []
        for ev in list(self.open):
            quiet = now_row - max(ev.end_row, ev.last_row) > self._gap[ev.type]
            long = ev.end_row - ev.start_row >= self._max_rows
            if flush or quiet or long:
                ev.final = True
                self.open.remove(ev)
                self.closed.append(ev)
                out.append(ev)
                if long and not quiet and not flush:
                    nxt = Event("", ev.type, ev.end_row, ev.end_row, ev.bin_high, ev.bin_low,
                                ev.snr, ev.score, ev.rate, ev.excess_db, ev.harmonic, now_row,
                                continues=ev.id)
                    successors.append(nxt)
                    self.open.append(nxt)
            elif ev.published_row < 0 or (ev.dirty and
                                          now_row - ev.published_row >= self._revise_rows):
                out.append(ev)
        return out, successors

    def name_successor(self, ev: Event, tag_of: Callable[[int], int]) -> None:
        ev.id = self._new_id(ev.type, tag_of(ev.start_row))


def make_record(ev: Event, *, now_row: int, tag_of: Callable[[int], int], dt_s: float,
                geometry_centre: Callable[[int], float | None],
                chan_range: Callable[[int, int], tuple[int, int]],
                has_mhz: bool, stream: str, beam: int | None,
                config: DetectorConfig) -> dict[str, Any]:
    """The published record of an event's current revision (see docs/PROTOCOL.md)."""
    f_high = geometry_centre(ev.bin_high)
    f_low = geometry_centre(ev.bin_low)
    drift = ref = None
    if has_mhz and f_high is not None and f_low is not None:
        ref = round((f_high * f_low) ** 0.5, 3)
        drift = ah_drift_mhz_s(ref, ev.rate) if ev.type == "III" else -ev.rate * ref
        drift = round(drift, 4)
    kind = ev.type if has_mhz else "unclassified"
    ch_hi, ch_lo = chan_range(ev.bin_high, ev.bin_low)
    window = round(dt_s * FS)
    return {
        "schema": SCHEMA,
        "id": ev.id,
        "revision": ev.revision,
        "final": ev.final,
        "type": kind,
        "start_utc": iso_utc(tag_of(ev.start_row) - window),
        "end_utc": iso_utc(tag_of(ev.end_row)),
        "f_high_mhz": round(f_high, 3) if has_mhz and f_high is not None else None,
        "f_low_mhz": round(f_low, 3) if has_mhz and f_low is not None else None,
        "chan_high": ch_hi,
        "chan_low": ch_lo,
        "drift_mhz_s": drift,
        "drift_ref_mhz": ref,
        "harmonic": ev.harmonic if ev.type == "II" else None,
        "snr": round(ev.snr, 2),
        "score": round(ev.score, 2),
        "excess_db": round(ev.excess_db, 3),
        "triggers": ev.triggers,
        "continues": ev.continues,
        "detected_utc": iso_utc(tag_of(now_row)),
        "stream": stream,
        "beam": beam,
        "detector": {"version": VERSION, "config": config.to_dict()},
    }
