"""Payload encodings: round trips on simulated spectra, the lossy codec's error, bad input."""

from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sunspec import encodings
from sunspec.encodings import DecodeError, decode, decode_into, encode
from sunspec.sim import Simulator

pytest.importorskip("numcodecs")


@pytest.fixture(scope="module")
def sim_frame() -> np.ndarray:
    """One frame as the recorder sends it: the mean of 512 simulated spectra."""
    gulp = Simulator(seed=7, ntime_gulp=512).gulp(3)
    return np.ascontiguousarray(gulp.mean(axis=0, dtype=np.float64).astype(np.float32))


def meta_for(frame, keys):
    return {"data_shape": list(frame.shape), **keys}


@pytest.mark.parametrize("encoding", sorted(encodings.LOSSLESS))
def test_lossless_round_trip_is_bit_exact(sim_frame, encoding):
    payload, keys = encode(encoding, sim_frame)
    assert keys["encoding"] == encoding
    out = np.empty(sim_frame.nbytes, np.uint8)  # the receiver's byte buffer
    assert decode_into(encoding, payload, out, meta_for(sim_frame, keys)) == sim_frame.nbytes
    np.testing.assert_array_equal(out.view(np.float32).reshape(sim_frame.shape), sim_frame)


def test_lossless_keeps_nan_and_inf_bits(sim_frame):
    f = sim_frame.copy()
    f[0, 5, 0], f[0, 6, 1], f[0, 7, 2] = np.nan, np.inf, -np.inf
    for enc in ("bitshuffle-lz4", "bitshuffle-zstd"):
        payload, keys = encode(enc, f)
        out = decode(enc, payload, meta_for(f, keys))
        assert out.tobytes() == f.tobytes()


def test_log8_is_a_quarter_and_within_half_a_level_in_db(sim_frame):
    payload, keys = encode("log8", sim_frame)
    assert memoryview(payload).nbytes == sim_frame.nbytes // 4
    out = decode("log8", payload, meta_for(sim_frame, keys))
    assert keys["log8_log"] == [True, True, False, False]  # XX, YY > 0; cross pols signed
    for p in (0, 1):
        x, y = sim_frame[0, :, p].astype(float), out[0, :, p].astype(float)
        half_level_db = 10 * np.log10(x.max() / x.min()) / 254 / 2
        err_db = np.abs(10 * np.log10(y / x))
        assert err_db.max() <= half_level_db * 1.001 + 1e-5
        assert err_db.max() < 0.1  # what the live view is asked to tolerate
    for p in (2, 3):
        x, y = sim_frame[0, :, p].astype(float), out[0, :, p].astype(float)
        assert np.abs(y - x).max() <= (x.max() - x.min()) / 254 / 2 * 1.001 + 1e-3
    assert encodings.log8_max_error_db(keys) == pytest.approx(max(
        10 * np.log10(sim_frame[0, :, p].max() / sim_frame[0, :, p].min()) / 508
        for p in (0, 1)))


def test_log8_marks_non_finite_values_and_handles_flat_and_empty_planes():
    f = np.ones((2, 8, 2), np.float32)
    f[0, :, 0] = 3.0  # flat plane
    f[0, :, 1] = np.nan  # no finite value at all
    f[1, :, 0] = np.linspace(-1, 1, 8)  # signed
    f[1, 2, 1] = np.inf
    payload, keys = encode("log8", f)
    out = decode("log8", payload, meta_for(f, keys))
    assert np.all(out[0, :, 0] == 3.0)
    assert np.all(np.isnan(out[0, :, 1]))
    np.testing.assert_allclose(out[1, :, 0], f[1, :, 0], atol=2 / 508 + 1e-7)
    assert np.isnan(out[1, 2, 1]) and np.all(out[1, [0, 1, 3, 4, 5, 6, 7], 1] == 1.0)


def test_decode_errors_name_the_reason(sim_frame):
    out = np.empty(sim_frame.nbytes, np.uint8)
    meta = {"data_shape": list(sim_frame.shape)}
    payload, _ = encode("bitshuffle-lz4", sim_frame)
    cases = [
        ("gzip", b"xx", meta, "encoding"),
        ("raw", b"\0" * 12, meta, "size"),
        ("bitshuffle-lz4", bytes(payload)[:40], meta, "encoding"),  # truncated chunk
        ("bitshuffle-zstd", payload, meta, "encoding"),  # LZ4 chunk under the zstd name
        ("bitshuffle-lz4", b"\x02\x01", meta, "encoding"),
        ("log8", b"\0" * (sim_frame.size // 4), meta, "size"),
        ("log8", b"\0" * sim_frame.size, meta, "keys"),  # no scale keys
        ("log8", b"\0" * sim_frame.size, {**meta, "log8_lo": [1.0] * 4, "log8_hi": [0.5] * 4,
                                          "log8_log": [True] * 4}, "keys"),
        ("log8", b"\0" * sim_frame.size, {"data_shape": [1, 2]}, "keys"),
    ]
    for enc, data, m, reason in cases:
        with pytest.raises(DecodeError) as info:
            decode_into(enc, data, out, m)
        assert info.value.reason == reason, (enc, info.value)
    small = np.empty(100, np.uint8)
    with pytest.raises(DecodeError) as info:  # the chunk would not fit: never overrun out
        decode_into("bitshuffle-lz4", payload, small, meta)
    assert info.value.reason == "size"
    # a chunk that claims more bytes than it has is refused before the codec reads it
    bad = bytearray(payload)
    struct.pack_into("<I", bad, 12, len(bad) + 1000)
    with pytest.raises(DecodeError) as info:
        decode_into("bitshuffle-lz4", bad, out, meta)
    assert info.value.reason == "encoding"


@settings(max_examples=200, deadline=None)
@given(enc=st.sampled_from(encodings.ENCODINGS), data=st.binary(max_size=300),
       corrupt_at=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_random_or_corrupted_payloads_raise_only_decode_error(enc, data, corrupt_at, byte):
    frame = np.linspace(1, 100, 48, dtype=np.float32).reshape(1, 12, 4)
    payload, keys = encode(enc, frame)
    mangled = bytearray(payload)
    mangled[corrupt_at % len(mangled)] = byte
    out = np.empty(frame.nbytes, np.uint8)
    for candidate in (data, bytes(mangled)):
        with contextlib.suppress(DecodeError):
            decode_into(enc, candidate, out, meta_for(frame, keys))


def test_encode_refuses_frames_it_cannot_describe():
    with pytest.raises(ValueError, match="float32"):
        encode("raw", np.zeros((1, 4, 2), np.float64))
    with pytest.raises(ValueError, match="unknown encoding"):
        encode("gzip", np.zeros((1, 4, 2), np.float32))


@pytest.mark.parametrize("encoding", ["bitshuffle-lz4", "bitshuffle-zstd", "log8"])
def test_a_receiver_decodes_every_encoding_into_the_same_rows(encoding):
    """Encoded frames on a real socket -> Receiver: lossless encodings give the raw rows bit
    for bit, log8 within its stated error; a corrupt payload is rejected, never a row."""
    from streams import RawPublisher, wait_until

    from sunspec import Receiver, protocol
    from sunspec.encodings import encode, log8_max_error_db

    pytest.importorskip("numcodecs")
    rng = np.random.default_rng(2)
    frames = [(rng.random((1, 256, 4), dtype=np.float32) + 0.5) * 1e6 for _ in range(4)]
    pub = RawPublisher(nodrop=True)
    r = Receiver(endpoint=pub.endpoint, factor=1).start()
    try:
        pub.wait_subscriber()
        bound = []
        for f in frames:
            payload, keys = encode(encoding, f)
            h = pub.header(f, **{"encoding": encoding, **keys})
            pub.send_parts([protocol.TOPIC, json.dumps(h).encode(), bytes(payload)])
            pub.seq += 1
            bound.append(log8_max_error_db(keys) if encoding == "log8" else 0.0)
        h = pub.header(frames[0], **{"encoding": encoding, **keys})
        pub.send_parts([protocol.TOPIC, json.dumps(h).encode(), b"\x01" * 40])  # corrupt
        assert wait_until(lambda: r.status()["frames_received"] == 4
                          and r.status()["rejected_total"] == 1, 10), r.status()
        rows = r.get_latest(4)
    finally:
        r.stop()
        pub.close()
    want = np.array([f[0, :, 0] for f in frames])
    if encoding == "log8":
        err_db = np.abs(10 * np.log10(rows.data / want))
        assert (err_db <= np.array(bound)[:, None] + 1e-6).all()
    else:
        np.testing.assert_array_equal(rows.data, want)
