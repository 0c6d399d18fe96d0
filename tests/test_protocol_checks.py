"""Every version 2 key typed and range-checked (issue 11, item 6); the end-of-sequence message;
a property test over arbitrary header values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sunspec import clock, protocol
from sunspec.protocol import FrameHeader, ProtocolError

TAG = 343_597_383_680_000_123


def header(**over) -> dict:
    h = protocol.make_header(nbeam=1, nchan=8, npol=4, time_tag=TAG,
                             t_end_tag=TAG + 512 * 24 * 8192, timestamp=1.7e9, seq=7,
                             sender_id="abc123", beam=2, t_start_tag=TAG, nint=512, navg=24,
                             chan0=600, cfreq0=600 * clock.CHAN_BW, bw=8 * clock.CHAN_BW,
                             chan_bw=clock.CHAN_BW, pols="XX,YY,XY_real,XY_imag",
                             encoding="raw")
    for k, v in over.items():
        if v is ...:
            del h[k]
        else:
            h[k] = v
    return h


#: stands for the JSON number 1e999, which Python's json reads as inf
BIG = "<1e999>"


def parse(h: dict) -> FrameHeader:
    return protocol.parse_header(json.dumps(h).replace(f'"{BIG}"', "1e999").encode())


@pytest.mark.parametrize("change", [
    {"chan0": 10**400}, {"chan0": -1}, {"chan0": 2**31}, {"chan0": 600.0}, {"chan0": True},
    {"chan_bw": 0}, {"chan_bw": -1.0}, {"chan_bw": BIG}, {"chan_bw": "wide"},
    {"chan_bw": 10**400}, {"cfreq0": -5.0}, {"cfreq0": [1]}, {"cfreq0": 1e300},
    {"sender_id": "a\x00b"}, {"sender_id": "caf\u00e9"}, {"sender_id": ""},
    {"sender_id": "x" * 65}, {"sender_id": "a b"}, {"sender_id": 5},
    {"seq": 2**63}, {"seq": 1.0},
    {"t_start_tag": TAG + 512 * 24 * 8192 + 1}, {"t_start_tag": -1},
    {"proto": 0}, {"proto": "2"}, {"nbeam": 2**40}, {"nchan": 0},
    {"timestamp": BIG}, {"timestamp": 10**400}, {"timestamp": True},
])
def test_bad_keys_that_shape_time_label_or_count_reject(change):
    with pytest.raises(ProtocolError) as info:
        parse(header(**change))
    assert info.value.reason == "keys"


@pytest.mark.parametrize("change, key", [
    ({"beam": 2**64}, "beam"), ({"beam": -1}, "beam"), ({"beam": "1"}, "beam"),
    ({"navg": 0}, "navg"), ({"nint": 10**30}, "nint"), ({"bw": -1.0}, "bw"),
    ({"bw": BIG}, "bw"), ({"pols": 5}, "pols"), ({"pols": "XX,YY"}, "pols"),
    ({"pols": "XX,YY,\x00,Q"}, "pols"),
])
def test_bad_optional_keys_are_dropped_and_named(change, key):
    h = parse(header(**change))
    assert h.ignored == (key,) and h.get(key) is None and key not in h.stream_keys()
    assert h.chan0 == 600 and h.seq == 7  # the rest is kept


def test_every_version_2_key_typed():
    h = parse(header())
    assert (h.proto, h.seq, h.sender_id, h.beam, h.start_tag, h.nint, h.navg, h.chan0) == (
        2, 7, "abc123", 2, TAG, 512, 24, 600)
    assert h.chan_bw == clock.CHAN_BW and h.cfreq0 == 600 * clock.CHAN_BW
    assert h.bw == 8 * clock.CHAN_BW and h.pols == "XX,YY,XY_real,XY_imag"
    assert h.ignored == ()
    keys = h.stream_keys()
    assert keys["chan0"] == 600 and keys["data_shape"] == [1, 8, 4] and "seq" not in keys


def test_unknown_keys_are_not_kept():
    h = parse(header(note={"deep": [1, 2]}, extra="\x00"))
    assert h.get("note") is None and "note" not in h.stream_keys() and h.ignored == ()


def test_a_rejection_names_the_sender_and_seq_it_came_with():
    with pytest.raises(ProtocolError) as info:
        parse(header(chan_bw=-1.0, seq=42, sender_id="s1"))
    assert (info.value.sender_id, info.value.seq) == ("s1", 42)
    with pytest.raises(ProtocolError) as info:
        parse(header(sender_id="a\x00"))
    assert info.value.seq is None  # not readable: not attributable


def test_header_size_limit():
    text = json.dumps(header()).encode()
    padded = text[:-1] + b" " * (protocol.HEADER_LIMIT - len(text)) + b"}"
    assert len(padded) == protocol.HEADER_LIMIT + 0 and parse(json.loads(padded)).seq == 7
    protocol.parse_header(padded)  # exactly the limit: accepted
    with pytest.raises(ProtocolError) as info:
        protocol.parse_header(padded + b" ")
    assert info.value.reason == "oversize"
    big = protocol.parse_header(padded + b" " * 1000, max_bytes=2 * protocol.HEADER_LIMIT)
    assert big.seq == 7


def test_end_message_round_trip_and_checks():
    topic, body = protocol.encode_end("abc", seq_end=10, dropped=2)
    assert topic == protocol.END_TOPIC == b"end"
    end = protocol.parse_end(body)
    assert (end.sender_id, end.seq_end, end.dropped) == ("abc", 10, 2)
    assert protocol.parse_end(protocol.encode_end("abc", 0)[1]).dropped is None
    for bad in ({"sender_id": "abc"}, {"sender_id": "abc", "seq_end": -1},
                {"sender_id": "abc", "seq_end": 3, "dropped": 4},
                {"sender_id": 5, "seq_end": 3}):
        with pytest.raises(ProtocolError) as info:
            protocol.parse_end(json.dumps(bad).encode())
        assert info.value.reason == "keys"


# --- property: any value under any key is a typed header or a named rejection ---------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4),
                                                                      children, max_size=3),
    max_leaves=6,
)
KEYS = ["nbeam", "nchan", "npol", "time_tag", "timestamp", "t_end_tag", "last_block_time",
        "data_shape", "data_type", "proto", "sender_id", "seq", "beam", "t_start_tag", "nint",
        "navg", "chan0", "cfreq0", "bw", "chan_bw", "pols", "encoding"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), JSON_VALUES | st.sampled_from(
    [2**63, 2**64, 10**400, -1, 0, 1e308, "", "\x00", [1, 8, 4]]), max_size=6),
    st.lists(st.sampled_from(KEYS), max_size=4))
def test_any_header_is_typed_or_a_named_rejection(changes, removed):
    h = header(**changes)
    for k in removed:
        h.pop(k, None)
    try:
        fh = protocol.parse_header(json.dumps(h).encode())
    except ProtocolError as exc:
        assert exc.reason in protocol.REJECT_REASONS
        return
    # accepted: every field has its type and range, whatever was sent
    assert all(type(v) is int and 1 <= v < 2**31 for v in fh.shape)
    for v in (fh.time_tag, fh.end_tag, fh.seq, fh.start_tag):
        assert v is None or (type(v) is int and 0 <= v < 2**63)
    assert math.isfinite(fh.timestamp)
    for v in (fh.chan_bw, fh.cfreq0, fh.bw):
        assert v is None or (type(v) is float and math.isfinite(v) and v >= 0)
    for v in (fh.beam, fh.nint, fh.navg, fh.chan0):
        assert v is None or (type(v) is int and 0 <= v < 2**31)
    for v in (fh.sender_id, fh.pols):
        assert v is None or (v.isascii() and v.isprintable() and 0 < len(v) <= 256)
    if fh.chan0 is not None:
        freqs = clock.channel_freqs_hz(fh.chan0, fh.nchan % 4096 + 1) * (
            (fh.chan_bw or clock.CHAN_BW) / clock.CHAN_BW)
        assert np.isfinite(freqs.astype(np.float32)).all()
    json.dumps(fh.stream_keys(), allow_nan=False)  # valid JSON, so valid for every consumer
