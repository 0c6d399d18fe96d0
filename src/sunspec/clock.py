"""Clock and frequency constants of the OVRO-LWA recorder, and exact time conversions.

Time tags count ticks of the 196 MHz sampling clock since 1970-01-01 UTC. They are about
3.4e17, beyond float64's exact integers (2**53), so every conversion here is done in integer
arithmetic; floats appear only in the results meant for people and plots.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

__all__ = [
    "CHAN_BW",
    "FS",
    "NFFT",
    "TICKS_PER_US",
    "channel_freqs_hz",
    "datetime_to_tag",
    "format_block_time",
    "parse_block_time",
    "tag_to_datetime",
    "tag_to_unix",
    "ticks_per_spectrum",
    "unix_to_tag",
]

#: sampling clock, ticks per second
FS: int = 196_000_000
#: FFT length of the recorder's channeliser: one raw spectrum spans NFFT ticks
NFFT: int = 8192
#: width of one recorder channel, Hz (FS / NFFT = 23925.78125, exact in binary)
CHAN_BW: float = FS / NFFT
#: ticks per microsecond (exact: FS is a whole number of MHz)
TICKS_PER_US: int = FS // 1_000_000

_EPOCH = _dt.datetime(1970, 1, 1)


def ticks_per_spectrum(navg: int) -> int:
    """Ticks spanned by one recorder spectrum that integrates ``navg`` raw spectra."""
    return navg * NFFT


def tag_to_unix(tag: int) -> float:
    """Unix seconds (float64; sub-microsecond detail is beyond a float at this epoch)."""
    sec, rem = divmod(int(tag), FS)
    return sec + rem / FS


def unix_to_tag(t: float) -> int:
    """The tick nearest to Unix time ``t``."""
    sec = int(t // 1)
    return sec * FS + round((t - sec) * FS)


def tag_to_datetime(tag: int) -> _dt.datetime:
    """Naive UTC datetime of a tag, truncated to the microsecond (196 ticks)."""
    return _EPOCH + _dt.timedelta(microseconds=int(tag) // TICKS_PER_US)


def datetime_to_tag(t: _dt.datetime) -> int:
    """Exact tag of a datetime (naive means UTC; an aware one is converted to UTC)."""
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    d = t - _EPOCH
    return ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds) * TICKS_PER_US


def format_block_time(tag: int) -> str:
    """The v1 ``last_block_time`` of a tag: ``str(datetime)``, fraction omitted when zero."""
    return str(tag_to_datetime(tag))


def parse_block_time(text: str) -> _dt.datetime:
    """Inverse of :func:`format_block_time` (``YYYY-MM-DD HH:MM:SS[.ffffff]``, UTC).

    Raises ValueError for anything else.
    """
    if not isinstance(text, str) or len(text) not in (19, 26) or text[10] != " ":
        raise ValueError(f"not a 'YYYY-MM-DD HH:MM:SS[.ffffff]' time: {text!r}")
    t = _dt.datetime.fromisoformat(text)
    if t.tzinfo is not None:
        raise ValueError(f"last_block_time carries no zone, got {text!r}")
    return t


def channel_freqs_hz(chan0: int, nchan: int, factor: int = 1) -> np.ndarray:
    """Centre frequencies (Hz) of ``nchan // factor`` channels made by averaging ``factor``
    adjacent recorder channels, the first recorder channel being ``chan0``.

    Channel ``c`` is centred on ``c * CHAN_BW`` (the recorder's ``cfreq0 = chan0 * CHAN_BW``).
    """
    first = chan0 + (factor - 1) / 2
    return (first + factor * np.arange(nchan // factor, dtype=np.float64)) * CHAN_BW
