"""Payload encodings: how frame 2 of a message may be packed for the network.

The header key ``encoding`` names the packing (docs/PROTOCOL.md, part D); whatever the
encoding, ``data_type``, ``data_shape`` and every other key describe the *decoded* frame,
float32 (nbeam, nchan, npol). A publisher cannot negotiate with its subscribers, so an
encoding is a property of an endpoint: the recorder's own port stays ``raw``, a relay
endpoint may use any of these.

- ``raw`` (exact): little-endian float32, C order, as in version 1;
- ``bitshuffle-lz4`` (lossless): a Blosc chunk (format version 1) of the raw payload,
  bit-shuffled with 4-byte items, then LZ4;
- ``bitshuffle-zstd`` (lossless): the same with Zstandard;
- ``log8`` (lossy, for display): one byte per value in the same order; per (beam, pol) plane a
  log or linear scale given in the header (``log8_lo``, ``log8_hi``, ``log8_log``).

Bit-shuffling (Masui et al. 2015, Astronomy and Computing 12, 181: "A compression scheme for
radio data in high performance computing") groups the same bit of every value together, so
the slowly varying exponent and high mantissa bits of a spectrum compress well. The lossless
encodings need ``numcodecs`` (``sunspec[compress]``); ``raw`` and ``log8`` need only numpy.

:func:`encode` makes a payload and the header keys that go with it; :func:`decode_into`
unpacks a payload into a caller's buffer (what a receiver calls per message).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "ENCODINGS",
    "LOSSLESS",
    "DecodeError",
    "decode",
    "decode_into",
    "encode",
    "log8_max_error_db",
]

#: every encoding name, ``raw`` first
ENCODINGS: tuple[str, ...] = ("raw", "bitshuffle-lz4", "bitshuffle-zstd", "log8")
#: the encodings that give back the float32 payload bit for bit
LOSSLESS: frozenset[str] = frozenset(("raw", "bitshuffle-lz4", "bitshuffle-zstd"))

_F4 = np.dtype("<f4")
#: Blosc compressor name and level per lossless encoding
_BLOSC = {"bitshuffle-lz4": (b"lz4", 5), "bitshuffle-zstd": (b"zstd", 3)}
#: Blosc format-1 header: version, versionlz, flags, typesize, nbytes, blocksize, cbytes
_BLOSC_HEADER = struct.Struct("<BBBBIII")
_BLOSC_BITSHUFFLE = 0x04  # flags bit: bit-shuffle applied
_BLOSC_CODES = {b"lz4": 1, b"zstd": 4}  # flags bits 5-7: the compressor
#: log8: code 0 marks a value that was not finite; 1..255 span [lo, hi]
_LEVELS = 254


class DecodeError(ValueError):
    """A payload that cannot be decoded. ``reason`` names the receiver's rejection counter
    (a :class:`sunspec.protocol.Reject` value): ``encoding`` (unknown name, unavailable codec,
    corrupt payload), ``size`` (decodes to another size than the header says) or ``keys``
    (the encoding's own header keys missing or wrong)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def _blosc() -> ModuleType:
    try:
        from numcodecs import blosc
    except ImportError:
        raise DecodeError("encoding", "the lossless encodings need numcodecs: pip install "
                          "'sunspec[compress]'") from None
    return blosc


# --- encoding -------------------------------------------------------------------------------
def encode(encoding: str, frame: np.ndarray) -> tuple[bytes | memoryview, dict[str, Any]]:
    """The payload of ``frame`` (float32 C-contiguous (nbeam, nchan, npol)) in ``encoding``,
    and the header keys that describe it (``encoding`` and the encoding's own keys)."""
    if frame.dtype != _F4 or not frame.flags.c_contiguous or frame.ndim != 3:
        raise ValueError("frame must be a C-contiguous little-endian float32 (nbeam, nchan, "
                         "npol) array")
    if encoding == "raw":
        return frame.reshape(-1).view(np.uint8).data, {"encoding": "raw"}
    if encoding in _BLOSC:
        cname, level = _BLOSC[encoding]
        blosc = _blosc()
        return blosc.compress(frame, cname, level, blosc.BITSHUFFLE), {"encoding": encoding}
    if encoding == "log8":
        return _log8_encode(frame)
    raise ValueError(f"unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}")


def _log8_encode(frame: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """Per (beam, pol) plane: a log scale between the plane's smallest and largest finite
    values if all of them are > 0, else a linear one; 254 levels, code 0 = not finite."""
    f = frame.astype(np.float64)
    bad = ~np.isfinite(f)
    f[bad] = np.nan
    lo = np.fmin.reduce(f, axis=1)  # (nbeam, npol); NaN only for a plane with no finite value
    hi = np.fmax.reduce(f, axis=1)
    empty = np.isnan(lo)
    lo[empty] = hi[empty] = 0.0
    use_log = lo > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(use_log[:, None, :], np.log(f), f)
        glo = np.where(use_log, np.log(np.where(use_log, lo, 1.0)), lo)
        ghi = np.where(use_log, np.log(np.where(use_log, hi, 1.0)), hi)
    span = ghi - glo
    scale = np.divide(_LEVELS, span, out=np.zeros_like(span), where=span > 0)
    t = (g - glo[:, None, :]) * scale[:, None, :]
    t[bad] = -1.0  # -> code 0
    codes = (np.rint(t) + 1).astype(np.uint8)
    keys = {"encoding": "log8", "log8_lo": lo.ravel().tolist(), "log8_hi": hi.ravel().tolist(),
            "log8_log": use_log.ravel().tolist()}
    return codes.tobytes(), keys


def log8_max_error_db(keys: Mapping[str, Any]) -> float:
    """The largest quantisation error (dB) the ``log8`` keys allow on their log planes:
    half a level, 10 log10(hi / lo) / (2 * 254)."""
    worst = 0.0
    for lo, hi, is_log in zip(keys["log8_lo"], keys["log8_hi"], keys["log8_log"], strict=True):
        if is_log and hi > lo:
            worst = max(worst, 10 * math.log10(hi / lo) / (2 * _LEVELS))
    return worst


# --- decoding -------------------------------------------------------------------------------
def decode_into(encoding: str, payload: Any, out: np.ndarray, meta: Mapping[str, Any]) -> int:
    """Decode ``payload`` (any buffer) of a message whose header is ``meta`` into ``out`` and
    return the bytes written.

    ``out`` is writable and C-contiguous (any dtype, e.g. the receiver's uint8 payload
    buffer cut to the frame's size); its ``nbytes`` must be what the header's ``data_shape``
    needs as float32. Raises :class:`DecodeError` (never anything else for bad input).
    """
    buf = memoryview(payload).cast("B")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writable C-contiguous array")
    if encoding == "raw":
        if buf.nbytes != out.nbytes:
            raise DecodeError("size", f"raw payload of {buf.nbytes} bytes, the header needs "
                              f"{out.nbytes}")
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(buf, np.uint8)
        return out.nbytes
    if encoding in _BLOSC:
        return _blosc_decode(encoding, buf, out)
    if encoding == "log8":
        return _log8_decode(buf, out, meta)
    raise DecodeError("encoding", f"unknown payload encoding {str(encoding)[:40]!r}")


def decode(encoding: str, payload: Any, meta: Mapping[str, Any]) -> np.ndarray:
    """A new float32 array of shape ``meta["data_shape"]`` holding the decoded payload."""
    shape = _shape(meta, None)
    out = np.empty(shape, _F4)
    decode_into(encoding, payload, out, meta)
    return out


def _shape(meta: Mapping[str, Any], nbytes: int | None) -> tuple[int, int, int]:
    shape = meta.get("data_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(type(n) is int and n >= 1 for n in shape)):
        raise DecodeError("keys", f"data_shape {shape!r} is not three integers >= 1")
    if nbytes is not None and shape[0] * shape[1] * shape[2] * _F4.itemsize != nbytes:
        raise DecodeError("size", f"data_shape {shape} does not fill {nbytes} bytes")
    return shape[0], shape[1], shape[2]


def _blosc_decode(encoding: str, buf: memoryview, out: np.ndarray) -> int:
    """Check the chunk's header against the buffer and ``out`` before decompressing, so a
    corrupt or hostile chunk can neither overrun ``out`` nor make the codec read past ``buf``."""
    if buf.nbytes < _BLOSC_HEADER.size:
        raise DecodeError("encoding", f"{encoding} payload of {buf.nbytes} bytes is shorter "
                          "than a Blosc header")
    version, _, flags, typesize, nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(buf)
    cname = _BLOSC[encoding][0]
    if (version not in (1, 2) or typesize != _F4.itemsize or not flags & _BLOSC_BITSHUFFLE
            or flags >> 5 != _BLOSC_CODES[cname]):
        raise DecodeError("encoding", f"not a bit-shuffled {cname.decode()} Blosc chunk of "
                          f"4-byte items (version {version}, flags {flags:#04x}, typesize "
                          f"{typesize})")
    if cbytes != buf.nbytes:
        raise DecodeError("encoding", f"Blosc chunk says {cbytes} bytes, payload has "
                          f"{buf.nbytes}")
    if nbytes != out.nbytes:
        raise DecodeError("size", f"{encoding} payload decodes to {nbytes} bytes, the header "
                          f"needs {out.nbytes}")
    blosc = _blosc()
    try:
        blosc.decompress(buf, out)
    except (RuntimeError, ValueError) as exc:
        raise DecodeError("encoding", f"corrupt {encoding} payload ({exc})") from None
    return nbytes


def _log8_decode(buf: memoryview, out: np.ndarray, meta: Mapping[str, Any]) -> int:
    nbeam, nchan, npol = _shape(meta, out.nbytes)
    if buf.nbytes != nbeam * nchan * npol:
        raise DecodeError("size", f"log8 payload of {buf.nbytes} bytes, the header needs "
                          f"{nbeam * nchan * npol}")
    nplane = nbeam * npol
    lo, hi, use_log = meta.get("log8_lo"), meta.get("log8_hi"), meta.get("log8_log")
    for key, seq in (("log8_lo", lo), ("log8_hi", hi), ("log8_log", use_log)):
        if not isinstance(seq, list) or len(seq) != nplane:
            raise DecodeError("keys", f"{key} must be a list of {nplane} values")
    assert isinstance(lo, list) and isinstance(hi, list) and isinstance(use_log, list)
    if not all(type(v) in (int, float) and math.isfinite(v) for v in lo + hi):
        raise DecodeError("keys", "log8_lo / log8_hi must be finite numbers")
    if not all(type(v) is bool for v in use_log):
        raise DecodeError("keys", "log8_log must be booleans")
    flo, fhi, flog = np.array(lo, float), np.array(hi, float), np.array(use_log, bool)
    if np.any(fhi < flo) or np.any(flo[flog] <= 0):
        raise DecodeError("keys", "log8 scales need lo <= hi, and lo > 0 on log planes")
    # one table of 256 values per plane: code 0 -> NaN, 1..255 -> lo..hi
    with np.errstate(divide="ignore"):
        glo = np.where(flog, np.log(np.where(flog, flo, 1.0)), flo)
        ghi = np.where(flog, np.log(np.where(flog, fhi, 1.0)), fhi)
    steps = np.arange(_LEVELS + 1) / _LEVELS
    g = glo[:, None] + (ghi - glo)[:, None] * steps[None, :]
    table = np.empty((nplane, 256), _F4)
    table[:, 0] = np.nan
    table[:, 1:] = g
    table[flog, 1:] = np.exp(g[flog])
    codes = np.frombuffer(buf, np.uint8).reshape(nbeam, nchan, npol)
    plane0 = (np.arange(nbeam)[:, None, None] * npol + np.arange(npol)[None, None, :]) * 256
    np.take(table.reshape(-1), codes + plane0, out=out.reshape(-1).view(_F4).reshape(codes.shape))
    return out.nbytes
