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

import json
import math
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from .clock import datetime_to_tag, format_block_time, parse_block_time, tag_to_unix

__all__ = [
    "DATA_TYPE",
    "PROTO_VERSION",
    "REJECT_REASONS",
    "TOPIC",
    "FrameHeader",
    "ProtocolError",
    "Reject",
    "check_payload_size",
    "decode",
    "encode",
    "make_header",
    "parse_header",
    "payload_view",
]

TOPIC = b"data"
DATA_TYPE = "<f4"
PROTO_VERSION = 2

class Reject(str, Enum):
    """Every reason a receiver rejects a message for; the value names its counter."""

    PARTS = "parts"  # not exactly three frames
    TOPIC = "topic"  # topic frame other than b"data"
    HEADER = "header"  # header not UTF-8 JSON, or not an object
    KEYS = "keys"  # a required key missing, or a key of the wrong type or value
    DTYPE = "dtype"  # data_type other than "<f4"
    ENCODING = "encoding"  # a payload encoding other than "raw" (version 2 key)
    SIZE = "size"  # payload size differs from the header's shape
    OVERSIZE = "oversize"  # message larger than the receiver accepts
    NONFINITE = "nonfinite"  # NaN or inf in the values a receiver keeps
    # found by the receiver, not by the wire format:
    GEOMETRY = "geometry"  # the stream cannot give the beam/product/factor asked for
    INTERNAL = "internal"  # the message broke the receiver's own code (a bug; logged)

    def __str__(self) -> str:
        return self.value


#: the counter names of :class:`Reject`, in order
REJECT_REASONS: tuple[str, ...] = tuple(r.value for r in Reject)

_DTYPE = np.dtype(DATA_TYPE)


class ProtocolError(ValueError):
    """A message that does not follow the protocol, with the :class:`Reject` reason."""

    def __init__(self, reason: Reject | str, message: str):
        self.reason = Reject(reason)
        super().__init__(f"{self.reason.value}: {message}")


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What a receiver needs of one message's header, checked and typed.

    ``end_tag`` is the window end in ticks: ``t_end_tag`` (version 2) or parsed from
    ``last_block_time`` (version 1, microsecond resolution). ``raw`` is the whole JSON object.
    """

    nbeam: int
    nchan: int
    npol: int
    time_tag: int
    timestamp: float
    end_tag: int
    proto: int
    seq: int | None
    sender_id: str | None
    raw: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.nbeam, self.nchan, self.npol)

    @property
    def nbytes(self) -> int:
        return self.nbeam * self.nchan * self.npol * _DTYPE.itemsize

    @property
    def end_unix(self) -> float:
        """Window end, Unix seconds."""
        return tag_to_unix(self.end_tag)

    def get(self, key: str, default: Any = None) -> Any:
        """A header value by key (version 2 keys are absent from version 1 messages)."""
        return self.raw.get(key, default)


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


_INT64_MAX = 2**63 - 1


def _int(h: dict[str, Any], key: str, minimum: int | None = None) -> int:
    """An integer key, within int64 (tags and counters are stored as int64)."""
    v = h.get(key)
    if type(v) is not int:
        raise ProtocolError(Reject.KEYS, f"{key!r} must be an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise ProtocolError(Reject.KEYS, f"{key!r} must be >= {minimum}, got {v}")
    if v > _INT64_MAX:
        raise ProtocolError(Reject.KEYS, f"{key!r} does not fit in 64 bits: {v}")
    return v


def _opt_int(h: dict[str, Any], key: str) -> int | None:
    return _int(h, key, 0) if key in h else None


def parse_header(data: bytes | bytearray | memoryview) -> FrameHeader:
    """Check a header frame (version 1 or 2) and return its typed fields."""
    try:
        h = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(Reject.HEADER, f"not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(h, dict):
        raise ProtocolError(Reject.HEADER, f"JSON {type(h).__name__}, not an object")
    dtype = h.get("data_type", DATA_TYPE)
    if dtype != DATA_TYPE:
        raise ProtocolError(Reject.DTYPE, f"data_type {dtype!r}, only {DATA_TYPE!r} is accepted")
    encoding = h.get("encoding", "raw")
    if encoding != "raw":
        raise ProtocolError(Reject.ENCODING, f"payload encoding {encoding!r}; this receiver "
                            "reads only 'raw'")
    nbeam, nchan, npol = _int(h, "nbeam", 1), _int(h, "nchan", 1), _int(h, "npol", 1)
    shape = h.get("data_shape", [nbeam, nchan, npol])
    if shape != [nbeam, nchan, npol]:
        raise ProtocolError(Reject.KEYS, f"data_shape {shape!r} != [nbeam, nchan, npol]")
    time_tag = _int(h, "time_tag", 0)
    ts: Any = h.get("timestamp")
    if type(ts) not in (int, float) or not math.isfinite(ts):
        raise ProtocolError(Reject.KEYS, f"'timestamp' must be a finite number, got {ts!r}")
    if "t_end_tag" in h:
        end_tag = _int(h, "t_end_tag", 0)
    else:
        try:
            end_tag = datetime_to_tag(parse_block_time(h["last_block_time"]))
        except (KeyError, ValueError, TypeError):
            raise ProtocolError(
                Reject.KEYS, f"'last_block_time' unreadable: {h.get('last_block_time')!r}"
            ) from None
    proto = h.get("proto", 1)
    if type(proto) is not int:
        raise ProtocolError(Reject.KEYS, f"'proto' must be an integer, got {proto!r}")
    sender_id = h.get("sender_id")
    if sender_id is not None and not isinstance(sender_id, str):
        raise ProtocolError(Reject.KEYS, f"'sender_id' must be a string, got {sender_id!r}")
    return FrameHeader(nbeam, nchan, npol, time_tag, float(ts), end_tag, proto,
                       _opt_int(h, "seq"), sender_id, h)


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

