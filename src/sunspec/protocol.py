"""The sunspec wire format, in one place (see docs/PROTOCOL.md).

A message is three ZeroMQ frames: the topic ``b"data"``, a UTF-8 JSON header object, and the
payload of raw little-endian float32 in C order, shape ``data_shape = [nbeam, nchan, npol]``.
Version 1 is what the deployed OVRO-LWA recorder sends; version 2 adds keys (``proto``,
``sender_id``, ``seq``, window tags, the recorder's ring metadata) that old receivers ignore.

:func:`encode` builds the frames; :func:`parse_header` and :func:`payload_view` (or
:func:`decode`, both at once) check them, raising :class:`ProtocolError` with a short
``reason`` that receivers use as a counter name.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

import numpy as np

from .clock import FS, datetime_to_tag, format_block_time, parse_block_time, tag_to_unix
from .encodings import ENCODINGS
from .kernels import CompiledHeaderReader

__all__ = [
    "DATA_TYPE",
    "END_TOPIC",
    "HEADER_LIMIT",
    "PROTO_VERSION",
    "REJECT_REASONS",
    "TOPIC",
    "UNITS",
    "FrameHeader",
    "HeaderReader",
    "ProtocolError",
    "Reject",
    "SequenceEnd",
    "check_payload_size",
    "decode",
    "encode",
    "encode_end",
    "make_header",
    "parse_end",
    "parse_header",
    "payload_view",
]

TOPIC = b"data"
#: topic of the one end-of-sequence message a version 2 sender sends when it stops
END_TOPIC = b"end"
DATA_TYPE = "<f4"
PROTO_VERSION = 2
#: bytes of header JSON every receiver accepts and no sender exceeds (room for an explicit
#: frequency axis of 3072 channels); receivers may accept more (``max_header_bytes``)
HEADER_LIMIT = 64 * 1024


class Reject(str, Enum):
    """Every reason a receiver rejects a message for; the value names its counter."""

    PARTS = "parts"  # not exactly three frames (two for an end message)
    TOPIC = "topic"  # topic frame other than b"data" or b"end"
    HEADER = "header"  # header not UTF-8 JSON (NaN/Infinity tokens included), or not an object
    KEYS = "keys"  # a key that shapes, times, labels or counts the data missing or bad
    DTYPE = "dtype"  # data_type other than "<f4"
    ENCODING = "encoding"  # a payload encoding other than "raw" (version 2 key)
    SIZE = "size"  # payload size differs from the header's shape
    OVERSIZE = "oversize"  # a header or payload larger than the receiver accepts
    NONFINITE = "nonfinite"  # NaN or inf in the values a receiver keeps
    # found by the receiver, not by the wire format:
    GEOMETRY = "geometry"  # the stream cannot give the beam/product/factor asked for
    UNCONFIRMED = "unconfirmed"  # a new geometry that no run of frames confirmed
    INTERNAL = "internal"  # the message broke the receiver's own code (a bug; logged)

    def __str__(self) -> str:
        return self.value


#: the counter names of :class:`Reject`, in order
REJECT_REASONS: tuple[str, ...] = tuple(r.value for r in Reject)

_DTYPE = np.dtype(DATA_TYPE)


class ProtocolError(ValueError):
    """A message that does not follow the protocol, with the :class:`Reject` reason.

    ``sender_id`` and ``seq`` are the message's, when its header gave them valid (so a
    receiver counts the message as received from that sender although it rejects it).
    """

    def __init__(self, reason: Reject | str, message: str, sender_id: str | None = None,
                 seq: int | None = None):
        self.reason = Reject(reason)
        self.sender_id = sender_id
        self.seq = seq
        super().__init__(f"{self.reason.value}: {message}")


class FrameHeader(NamedTuple):
    """One message's header, every key the receiver uses checked and typed (a named tuple:
    immutable and cheap to make, once per message).

    ``end_tag`` is the window end in ticks: ``t_end_tag`` (version 2) or parsed from
    ``last_block_time`` (version 1, microsecond resolution); ``start_tag`` is ``t_start_tag``.
    Optional version 2 keys are ``None`` when absent or dropped as bad (their names are in
    ``ignored``). Keys this version does not know are not kept.
    """

    nbeam: int
    nchan: int
    npol: int
    time_tag: int
    timestamp: float
    end_tag: int
    end_unix: float  # the window end in Unix seconds (clock.tag_to_unix of end_tag)
    proto: int = 1
    seq: int | None = None
    sender_id: str | None = None
    start_tag: int | None = None
    chan0: int | None = None
    chan_bw: float | None = None
    cfreq0: float | None = None
    beam: int | None = None
    nint: int | None = None
    navg: int | None = None
    bw: float | None = None
    pols: str | None = None
    ignored: tuple[str, ...] = ()
    freqs_hz: tuple[float, ...] | None = None
    unit: str = "linear"
    db_per_digit: float | None = None
    instrument: str | None = None
    station: str | None = None
    replay: bool | None = None
    source: str | None = None
    missing: tuple[int, ...] = ()
    encoding: str = "raw"
    codec: dict[str, Any] | None = None  # the keys an encoding other than raw needs

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.nbeam, self.nchan, self.npol)

    @property
    def nbytes(self) -> int:
        return self.nbeam * self.nchan * self.npol * _DTYPE.itemsize

    @property
    def descending(self) -> bool:
        """The explicit frequency axis runs downwards (receivers keep rows ascending)."""
        return self.freqs_hz is not None and self.freqs_hz[0] > self.freqs_hz[-1]

    def get(self, key: str, default: Any = None) -> Any:
        """A checked header value by its wire key (``default`` when absent or dropped)."""
        v = getattr(self, _FIELD_OF.get(key, key)) if key in _WIRE_KEYS else None
        return default if v is None else v

    def stream_keys(self) -> dict[str, Any]:
        """The checked keys that describe the stream (not those that change every frame),
        as wire keys and JSON-ready values."""
        out = {k: self.get(k) for k in _STREAM_KEYS}
        out["data_shape"] = list(self.shape)
        out["data_type"] = DATA_TYPE
        return {k: v for k, v in out.items() if v is not None}


#: wire keys FrameHeader keeps, and the field each is kept in
_FIELD_OF = {"t_start_tag": "start_tag", "t_end_tag": "end_tag"}
_WIRE_KEYS = frozenset((
    "nbeam", "nchan", "npol", "time_tag", "timestamp", "t_end_tag", "proto", "seq",
    "sender_id", "t_start_tag", "chan0", "chan_bw", "cfreq0", "beam", "nint", "navg", "bw",
    "pols", "freqs_hz", "unit", "db_per_digit", "instrument", "station", "replay", "source",
    "missing",
))
_STREAM_KEYS = ("time_tag", "nbeam", "nchan", "npol", "proto", "sender_id", "beam", "nint",
                "navg", "chan0", "cfreq0", "bw", "chan_bw", "pols", "unit", "db_per_digit",
                "instrument", "station", "replay", "source")
#: ``stream_key(h)``: the values of the header's describing keys other than those that shape
#: or label its rows (one C call, cheap enough for every frame): when it changes, so do the
#: stream's keys (:meth:`FrameHeader.stream_keys`)
stream_key = operator.attrgetter("sender_id", "time_tag", "proto", "beam", "nint", "navg", "bw",
                                 "pols", "db_per_digit", "instrument", "station", "replay",
                                 "source")
#: the units of a stream's values: linear power, decibels, or an instrument's digits (of a
#: logarithmic detector, ``db_per_digit`` dB each)
UNITS = ("linear", "dB", "digits")


@dataclass(frozen=True, slots=True)
class SequenceEnd:
    """The end-of-sequence message: sender ``sender_id`` sent messages with seq below
    ``seq_end`` (the seq its next message would have had), ``dropped`` of them itself."""

    sender_id: str
    seq_end: int
    dropped: int | None = None


def make_header(
    *,
    nbeam: int,
    nchan: int,
    npol: int,
    time_tag: int,
    t_end_tag: int,
    timestamp: float | None = None,
    **v2: Any,
) -> dict[str, Any]:
    """A header with every version 1 key as the deployed recorder writes it, in its order,
    followed by the version 2 keys given (``proto`` is added; ``None`` values are left out).

    ``time_tag`` is the start of the recorder's sequence; ``t_end_tag`` the end of this
    frame's averaging window, which becomes ``last_block_time``.
    """
    header: dict[str, Any] = {
        "time_tag": int(time_tag),
        "nbeam": int(nbeam),
        "nchan": int(nchan),
        "npol": int(npol),
        "timestamp": time.time() if timestamp is None else float(timestamp),
        "last_block_time": format_block_time(t_end_tag),
        "data_shape": [int(nbeam), int(nchan), int(npol)],
        "data_type": DATA_TYPE,
        "proto": PROTO_VERSION,
        "t_end_tag": int(t_end_tag),
    }
    header.update((k, v) for k, v in v2.items() if v is not None)
    return header


def encode(frame: np.ndarray, header: dict[str, Any]) -> list[bytes | memoryview]:
    """The three frames of one message: topic, header JSON (ASCII), payload (no copy).

    ``frame`` must be float32 C-contiguous of shape ``header["data_shape"]``.
    """
    if frame.dtype != _DTYPE or not frame.flags.c_contiguous:
        raise ValueError("frame must be C-contiguous little-endian float32")
    if list(frame.shape) != list(header["data_shape"]):
        raise ValueError(f"frame shape {frame.shape} != data_shape {header['data_shape']}")
    return [TOPIC, json.dumps(header).encode("ascii"), frame.reshape(-1).view(np.uint8).data]


def encode_end(sender_id: str, seq_end: int, dropped: int | None = None) -> list[bytes]:
    """The two frames of the end-of-sequence message (see :class:`SequenceEnd`)."""
    body: dict[str, Any] = {"proto": PROTO_VERSION, "sender_id": sender_id, "seq_end": seq_end}
    if dropped is not None:
        body["dropped"] = dropped
    return [END_TOPIC, json.dumps(body).encode("ascii")]


_INT64_MAX = 2**63 - 1
_INT31_MAX = 2**31 - 1
#: bound of every frequency key (Hz): far above any radio band; (chan0 + nchan) * chan_bw
#: stays far below float32 overflow
_FREQ_MAX = 1e12
#: header keys of an encoding (docs/PROTOCOL.md part D), passed to its decoder unchecked
_CODEC_PREFIX = "log8_"
_SENDER_ID_MAX = 64
_POLS_MAX = 256
_NAME_MAX = 64
_SOURCE_MAX = 256
_DB_PER_DIGIT_MAX = 100.0


def _reject_constant(name: str) -> Any:
    raise ProtocolError(Reject.HEADER, f"{name} is not JSON (RFC 8259)")


#: one decoder for every header (``json.loads`` with options builds one per call)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _load(data: bytes | bytearray | memoryview, limit: int) -> dict[str, Any]:
    """The JSON object of a header frame of at most ``limit`` bytes."""
    if len(data) > limit:
        raise ProtocolError(Reject.OVERSIZE, f"header of {len(data)} bytes, limit {limit}")
    try:
        h = _DECODER.decode(bytes(data).decode("utf-8"))
    except ProtocolError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(Reject.HEADER, f"not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(h, dict):
        raise ProtocolError(Reject.HEADER, f"JSON {type(h).__name__}, not an object")
    return h


def _int(v: Any, key: str, lo: int, hi: int = _INT64_MAX) -> int:
    """An integer (never a bool or float) in [lo, hi]."""
    if type(v) is not int:
        raise ProtocolError(Reject.KEYS, f"{key!r} must be an integer, got {v!r:.40}")
    if not lo <= v <= hi:
        raise ProtocolError(Reject.KEYS, f"{key!r} must lie in [{lo}, {hi}], got {str(v)[:24]}")
    return v


def _number(v: Any, key: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A JSON number (int or float, never a bool) in [lo, hi] (or (lo, hi])."""
    if type(v) is not float and type(v) is not int:
        raise ProtocolError(Reject.KEYS, f"{key!r} must be a number, got {v!r:.40}")
    x = float(v) if type(v) is float or abs(v) <= _INT64_MAX else math.inf
    if not math.isfinite(x) or not (lo < x if lo_open else lo <= x) or not x <= hi:
        raise ProtocolError(Reject.KEYS, f"{key!r} must lie in {'(' if lo_open else '['}{lo}, "
                            f"{hi}], got {x:.6g}")
    return x


def _ascii(v: Any, key: str, maxlen: int, lo: str = " ") -> str:
    """A string of 1..maxlen printable ASCII characters (from ``lo`` to ``~``)."""
    if type(v) is not str or not 0 < len(v) <= maxlen or not v.isascii() or not v.isprintable()\
            or min(v) < lo:
        raise ProtocolError(Reject.KEYS, f"{key!r} must be 1-{maxlen} printable ASCII "
                            f"characters, got {v!r:.80}")
    return v


def _sender_id(v: Any) -> str:
    return _ascii(v, "sender_id", _SENDER_ID_MAX, lo="!")


def _pols(v: Any, npol: int) -> str:
    s = _ascii(v, "pols", _POLS_MAX)
    if s.count(",") != npol - 1:
        raise ProtocolError(Reject.KEYS, f"'pols' must name npol = {npol} pols, got {s!r}")
    return s


def parse_header(data: bytes | bytearray | memoryview,
                 max_bytes: int = HEADER_LIMIT) -> FrameHeader:
    """Check a header frame (version 1 or 2) of at most ``max_bytes`` and return its fields.

    A bad key that shapes, times, labels or counts the data raises ``ProtocolError``; a bad
    optional key (``beam``, ``nint``, ``navg``, ``bw``, ``pols``) is dropped and named in
    :attr:`FrameHeader.ignored`. The rules are in docs/PROTOCOL.md.
    """
    h = _load(data, max_bytes)
    get = h.get
    sender_id = get("sender_id")
    if sender_id is not None:
        sender_id = _sender_id(sender_id)
    seq = get("seq")
    if seq is not None:
        seq = _int(seq, "seq", 0)
    try:
        return _fields(h, get, sender_id, seq)
    except ProtocolError as exc:
        exc.sender_id, exc.seq = sender_id, seq
        raise


def _fields(h: dict[str, Any], get: Any, sender_id: str | None, seq: int | None) -> FrameHeader:
    dtype = get("data_type", DATA_TYPE)
    if dtype != DATA_TYPE:
        raise ProtocolError(Reject.DTYPE, f"data_type {dtype!r:.40}, only {DATA_TYPE!r} is "
                            "accepted")
    encoding = get("encoding", "raw")
    if encoding not in ENCODINGS:
        raise ProtocolError(Reject.ENCODING, f"payload encoding {encoding!r:.40}; this "
                            f"receiver reads {', '.join(ENCODINGS)}")
    codec = {k: v for k, v in h.items() if k.startswith(_CODEC_PREFIX)} if encoding != "raw" \
        else None
    nbeam = _int(get("nbeam"), "nbeam", 1, _INT31_MAX)
    nchan = _int(get("nchan"), "nchan", 1, _INT31_MAX)
    npol = _int(get("npol"), "npol", 1, _INT31_MAX)
    shape = get("data_shape")
    if shape is not None and shape != [nbeam, nchan, npol]:
        raise ProtocolError(Reject.KEYS, f"data_shape {shape!r:.60} != [nbeam, nchan, npol]")
    time_tag = _int(get("time_tag"), "time_tag", 0)
    timestamp = _number(get("timestamp"), "timestamp", -math.inf, math.inf)
    end = get("t_end_tag")
    if end is not None:
        end_tag = _int(end, "t_end_tag", 0)
    else:
        try:
            end_tag = datetime_to_tag(parse_block_time(h["last_block_time"]))
        except (KeyError, ValueError, TypeError, OverflowError):
            raise ProtocolError(Reject.KEYS, "'last_block_time' unreadable: "
                                f"{get('last_block_time')!r:.60}") from None
    v = get("t_start_tag")
    start_tag = None if v is None else _int(v, "t_start_tag", 0, end_tag)
    v = get("proto", 1)
    proto = _int(v, "proto", 1, _INT31_MAX)
    v = get("chan0")
    chan0 = None if v is None else _int(v, "chan0", 0, _INT31_MAX)
    v = get("chan_bw")
    chan_bw = None if v is None else _number(v, "chan_bw", 0.0, _FREQ_MAX, lo_open=True)
    v = get("cfreq0")
    cfreq0 = None if v is None else _number(v, "cfreq0", 0.0, _FREQ_MAX)
    ignored: list[str] = []
    beam = _opt_int(get("beam"), "beam", 0, ignored)
    nint = _opt_int(get("nint"), "nint", 1, ignored)
    navg = _opt_int(get("navg"), "navg", 1, ignored)
    bw = pols = None
    v = get("bw")
    if v is not None:
        try:
            bw = _number(v, "bw", 0.0, _FREQ_MAX, lo_open=True)
        except ProtocolError:
            ignored.append("bw")
    v = get("pols")
    if v is not None:
        try:
            pols = _pols(v, npol)
        except ProtocolError:
            ignored.append("pols")
    freqs = get("freqs_hz")
    if freqs is not None:
        if chan0 is not None or chan_bw is not None or cfreq0 is not None:
            raise ProtocolError(Reject.KEYS, "'freqs_hz' goes without 'chan0', 'chan_bw' and "
                                "'cfreq0' (two axes for one frame)")
        freqs = _axis(freqs, nchan)
    unit = get("unit", "linear")
    if unit not in UNITS:
        raise ProtocolError(Reject.KEYS, f"'unit' must be one of {UNITS}, got {unit!r:.40}")
    missing = get("missing")
    missing = () if missing is None else _missing(missing, nchan)
    db_per_digit = _opt(get("db_per_digit"), "db_per_digit", ignored, lambda v, k: _number(
        v, k, 0.0, _DB_PER_DIGIT_MAX, lo_open=True))
    instrument = _opt(get("instrument"), "instrument", ignored,
                      lambda v, k: _ascii(v, k, _NAME_MAX))
    station = _opt(get("station"), "station", ignored, lambda v, k: _ascii(v, k, _NAME_MAX))
    source = _opt(get("source"), "source", ignored, lambda v, k: _ascii(v, k, _SOURCE_MAX))
    replay = _opt(get("replay"), "replay", ignored, _bool)
    return FrameHeader(nbeam, nchan, npol, time_tag, timestamp, end_tag, tag_to_unix(end_tag),
                       proto, seq,
                       sender_id, start_tag, chan0, chan_bw, cfreq0, beam, nint, navg, bw,
                       pols, tuple(ignored), freqs, unit, db_per_digit, instrument, station,
                       replay, source, missing, encoding, codec)


def _axis(v: Any, nchan: int) -> tuple[float, ...]:
    """An explicit frequency axis: ``nchan`` finite numbers in (0, 1e12] Hz, strictly
    increasing or strictly decreasing (a sender removes repeated channels first)."""
    if type(v) is not list or len(v) != nchan:
        size = len(v) if isinstance(v, list) else "?"
        raise ProtocolError(Reject.KEYS, f"'freqs_hz' must be a list of nchan = {nchan} "
                            f"numbers, got {type(v).__name__} of {size}")
    axis = tuple(_number(f, "freqs_hz", 0.0, _FREQ_MAX, lo_open=True) for f in v)
    steps = np.diff(np.asarray(axis, np.float64))
    if nchan > 1 and not (np.all(steps > 0) or np.all(steps < 0)):
        raise ProtocolError(Reject.KEYS, "'freqs_hz' must be strictly monotonic (no repeated "
                            "channel)")
    return axis


def _missing(v: Any, nchan: int) -> tuple[int, ...]:
    """Channels declared missing: strictly increasing indices in [0, nchan)."""
    if type(v) is not list or len(v) > nchan:
        raise ProtocolError(Reject.KEYS, f"'missing' must be a list of at most nchan = {nchan} "
                            "channel indices")
    out = tuple(_int(i, "missing", 0, nchan - 1) for i in v)
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ProtocolError(Reject.KEYS, "'missing' must be strictly increasing")
    return out


def _bool(v: Any, key: str) -> bool:
    if type(v) is not bool:
        raise ProtocolError(Reject.KEYS, f"{key!r} must be true or false, got {v!r:.40}")
    return v


def _opt(v: Any, key: str, ignored: list[str], check: Any) -> Any:
    """An optional key checked by ``check(v, key)``, or ``None`` (named in ``ignored`` if
    bad)."""
    if v is None:
        return None
    try:
        return check(v, key)
    except ProtocolError:
        ignored.append(key)
        return None


def _opt_int(v: Any, key: str, lo: int, ignored: list[str]) -> int | None:
    """An optional integer key in [lo, 2**31-1], or ``None`` (named in ``ignored`` if bad)."""
    if v is None:
        return None
    if type(v) is int and lo <= v <= _INT31_MAX:
        return v
    ignored.append(key)
    return None


#: FrameHeader fields a repeated header's scan fills in: seq, timestamp, end and start tags,
#: end time
_PER_FRAME = tuple(map(FrameHeader._fields.index,
                       ("seq", "timestamp", "end_tag", "start_tag", "end_unix")))


class HeaderReader(CompiledHeaderReader):
    """:func:`parse_header` for the header frames received into one ``buffer``, at a small
    part of its cost for a header that repeats the one before but for its per-frame keys.

    A sender's headers differ from frame to frame only in ``seq``, ``t_end_tag``,
    ``t_start_tag``, ``timestamp`` and ``last_block_time`` (ignored beside ``t_end_tag``).
    A compiled scanner reads those values and checks them as :func:`parse_header` does; when
    every other byte equals the last header parsed in full, that header's checked fields
    are reused. Any other header (a new sender, geometry or key, version 1's
    ``last_block_time`` alone, anything the scanner does not read) is parsed in full, so
    ``read(n)`` always returns what :func:`parse_header` returns for ``buffer[:n]`` (or
    raises what it raises). After a read, ``repeated`` says whether the header repeated the
    kept one, ``kept`` whether it is (or repeats) the kept one, and ``digest`` is a 64-bit
    hash of its bytes (0 over ``max_bytes``), which tells an exact duplicate.
    """

    def __init__(self, buffer: bytearray, max_bytes: int = HEADER_LIMIT):
        view = memoryview(buffer)
        limit = min(max_bytes, len(buffer))
        # a sender's header never exceeds HEADER_LIMIT: the scanner's two copies of a
        # header's stable part need no more (a longer one is parsed in full)
        super().__init__(buffer, limit, min(limit, HEADER_LIMIT),
                         lambda n: parse_header(view[:n], max_bytes), FrameHeader, _PER_FRAME,
                         FS)
        self.buffer = buffer


def parse_end(data: bytes | bytearray | memoryview,
              max_bytes: int = HEADER_LIMIT) -> SequenceEnd:
    """Check the header frame of an end-of-sequence message."""
    h = _load(data, max_bytes)
    sender_id = _sender_id(h.get("sender_id"))
    seq_end = _int(h.get("seq_end"), "seq_end", 0)
    dropped = h.get("dropped")
    return SequenceEnd(sender_id, seq_end, None if dropped is None else
                       _int(dropped, "dropped", 0, seq_end))


def check_payload_size(header: FrameHeader, nbytes: int) -> None:
    """Raise ``ProtocolError("size")`` unless a payload of ``nbytes`` fits the header."""
    if nbytes != header.nbytes:
        raise ProtocolError(
            Reject.SIZE, f"payload has {nbytes} bytes, header {list(header.shape)} needs "
            f"{header.nbytes}"
        )


def payload_view(header: FrameHeader, payload) -> np.ndarray:
    """Read-only float32 view of a payload, shaped (nbeam, nchan, npol), without copying."""
    buf = memoryview(payload)
    check_payload_size(header, buf.nbytes)
    view = np.frombuffer(buf, dtype=_DTYPE).reshape(header.shape)
    view.flags.writeable = False
    return view


def decode(parts: list) -> tuple[FrameHeader, np.ndarray]:
    """Check a whole message (a list of three frames) and return header and payload view."""
    if len(parts) != 3:
        raise ProtocolError(Reject.PARTS, f"{len(parts)} frames, expected 3")
    topic = bytes(parts[0])
    if topic != TOPIC:
        raise ProtocolError(Reject.TOPIC, f"topic {topic[:32]!r}, expected {TOPIC!r}")
    header = parse_header(parts[1])
    return header, payload_view(header, parts[2])

