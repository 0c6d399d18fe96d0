"""Wire format (PROTOCOL.md) and exact time helpers."""

import datetime as dt
import json

import numpy as np
import pytest

from sunspec import clock, protocol
from sunspec.protocol import ProtocolError

TAG = 343_597_383_680_000_123  # ~2025-08, above 2**53
assert TAG > 2**53


def frame(nbeam=1, nchan=3072, npol=4):
    return np.random.default_rng(1).random((nbeam, nchan, npol), dtype=np.float32)


def v2_header(f, **over):
    kw = dict(nbeam=f.shape[0], nchan=f.shape[1], npol=f.shape[2], time_tag=TAG,
              t_end_tag=TAG + 512 * 24 * 8192, timestamp=1.7e9, seq=7, sender_id="abc123",
              beam=2, t_start_tag=TAG, nint=512, navg=24, chan0=600,
              cfreq0=600 * clock.CHAN_BW, bw=3072 * clock.CHAN_BW, chan_bw=clock.CHAN_BW,
              pols="XX,YY,XY_real,XY_imag", encoding="raw")
    kw.update(over)
    return protocol.make_header(**kw)


def test_round_trip_v2():
    f = frame()
    parts = protocol.encode(f, v2_header(f))
    assert parts[0] == b"data" and len(bytes(parts[2])) == 49_152
    h, view = protocol.decode([bytes(p) for p in parts])
    np.testing.assert_array_equal(view, f)
    assert not view.flags.writeable
    assert h.shape == (1, 3072, 4) and h.proto == 2 and h.seq == 7 and h.sender_id == "abc123"
    assert h.time_tag == TAG and h.end_tag == TAG + 512 * 24 * 8192
    assert h.get("chan0") == 600 and h.get("pols") == "XX,YY,XY_real,XY_imag"


def test_v1_keys_in_deployed_order_and_form():
    f = frame()
    hdr = json.loads(protocol.encode(f, v2_header(f))[1])
    assert list(hdr)[:8] == ["time_tag", "nbeam", "nchan", "npol", "timestamp",
                             "last_block_time", "data_shape", "data_type"]
    assert hdr["data_shape"] == [1, 3072, 4] and hdr["data_type"] == "<f4"
    end = TAG + 512 * 24 * 8192
    assert hdr["last_block_time"] == str(clock.tag_to_datetime(end))
    assert hdr["time_tag"] == TAG  # the sequence start, exact


def test_v1_only_message_decodes():
    f = frame(nchan=64)
    header = {"time_tag": TAG, "nbeam": 1, "nchan": 64, "npol": 4, "timestamp": 1.7e9,
              "last_block_time": "2025-08-01 12:00:00.500000", "data_shape": [1, 64, 4],
              "data_type": "<f4"}
    h, view = protocol.decode([b"data", json.dumps(header).encode(), f.tobytes()])
    np.testing.assert_array_equal(view, f)
    assert h.proto == 1 and h.seq is None and h.sender_id is None
    assert h.end_tag == clock.datetime_to_tag(dt.datetime(2025, 8, 1, 12, 0, 0, 500000))
    assert h.end_unix == pytest.approx(dt.datetime(2025, 8, 1, 12, 0, 0, 500000,
                                                   tzinfo=dt.timezone.utc).timestamp())


def test_v1_whole_second_block_time():
    header = {"time_tag": 1, "nbeam": 1, "nchan": 1, "npol": 1, "timestamp": 0,
              "last_block_time": "2025-08-01 12:00:00"}
    h, _ = protocol.decode([b"data", json.dumps(header).encode(), b"\0" * 4])
    assert clock.tag_to_datetime(h.end_tag) == dt.datetime(2025, 8, 1, 12)


def good_parts():
    f = frame(nchan=8)
    return [bytes(p) for p in protocol.encode(f, v2_header(f))]


def with_header(**change):
    h = json.loads(good_parts()[1])
    for k, v in change.items():
        if v is ...:
            del h[k]
        else:
            h[k] = v
    p = good_parts()
    return [p[0], json.dumps(h).encode(), p[2]]


@pytest.mark.parametrize(
    "parts, reason",
    [
        (good_parts()[:2], "parts"),
        ([*good_parts(), b"x"], "parts"),
        ([b"spam", *good_parts()[1:]], "topic"),
        ([b"dat", *good_parts()[1:]], "topic"),
        ([b"data", b"\xff\xfe", good_parts()[2]], "header"),
        ([b"data", b"{not json", good_parts()[2]], "header"),
        ([b"data", b"[1, 2, 3]", good_parts()[2]], "header"),
        ([b"data", b"", good_parts()[2]], "header"),
        (with_header(nchan=...), "keys"),
        (with_header(nchan="8"), "keys"),
        (with_header(nchan=True), "keys"),
        (with_header(nbeam=0), "keys"),
        (with_header(time_tag=1.5), "keys"),
        (with_header(timestamp="now"), "keys"),
        (with_header(data_shape=[1, 9, 4]), "keys"),
        (with_header(t_end_tag=..., last_block_time="yesterday"), "keys"),
        (with_header(t_end_tag=..., last_block_time="2025-08-01T12:00:00+00:00"), "keys"),
        (with_header(seq=-1), "keys"),
        (with_header(t_end_tag=2**63), "keys"),
        (with_header(time_tag=2**70), "keys"),
        (with_header(sender_id=5), "keys"),
        (with_header(data_type="<f8"), "dtype"),
        (with_header(data_type=">f4"), "dtype"),
        (with_header(encoding="zstd"), "encoding"),
        ([*good_parts()[:2], good_parts()[2][:-4]], "size"),
        ([*good_parts()[:2], good_parts()[2] + b"\0\0\0\0"], "size"),
        ([*good_parts()[:2], b""], "size"),
    ],
)
def test_each_rejection_names_its_reason(parts, reason):
    with pytest.raises(ProtocolError) as info:
        protocol.decode(parts)
    assert info.value.reason == reason
    assert reason in protocol.REJECT_REASONS
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("key", [b"timestamp", b"chan_bw", b"beam"])
def test_nan_and_infinity_tokens_are_not_json(key, token):
    """Python's json accepts these tokens; the protocol (RFC 8259 JSON) does not, whatever
    the key, so they never reach a ring, a file or a browser's JSON.parse."""
    parts = good_parts()
    h = json.loads(parts[1])
    text = json.dumps(h).replace(f'"{key.decode()}": {json.dumps(h[key.decode()])}',
                                 f'"{key.decode()}": {token.decode()}')
    assert token.decode() in text
    with pytest.raises(ProtocolError) as info:
        protocol.decode([parts[0], text.encode(), parts[2]])
    assert info.value.reason == "header"


def test_encode_refuses_wrong_frames():
    f = frame(nchan=8)
    with pytest.raises(ValueError):
        protocol.encode(f.astype(np.float64), v2_header(f))
    with pytest.raises(ValueError):
        protocol.encode(frame(nchan=16), v2_header(f))


# --- clock ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", [0, 196, 2**53 + 1, TAG, TAG + 195, 2**62 + 12345])
def test_tag_datetime_exact_to_the_tick(tag):
    t = clock.tag_to_datetime(tag)
    us = tag // 196
    assert t == dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)
    back = clock.datetime_to_tag(t)
    assert back == tag - tag % 196  # sub-microsecond ticks are what a datetime cannot hold
    assert clock.datetime_to_tag(t.replace(tzinfo=dt.timezone.utc)) == back


def test_tag_to_unix_and_back():
    assert clock.tag_to_unix(TAG) == pytest.approx(TAG / 196e6, abs=1e-6)
    assert clock.unix_to_tag(1.7e9 + 0.25) == 1_700_000_000 * 196_000_000 + 49_000_000
    assert clock.tag_to_unix(3 * clock.FS + 98_000_000) == 3.5


@pytest.mark.parametrize("us", [0, 1, 500_000, 999_999])
def test_block_time_string_is_str_datetime(us):
    tag = (1_754_049_600 * 1_000_000 + us) * 196
    s = clock.format_block_time(tag)
    assert s == str(dt.datetime(2025, 8, 1, 12, 0, 0, us))
    assert ("." in s) == (us != 0)
    assert clock.datetime_to_tag(clock.parse_block_time(s)) == tag


@pytest.mark.parametrize("text", ["2025-08-01T12:00:00", "2025-08-01 12:00", "12:00:00", "",
                                  "2025-08-01 12:00:00.5", None, 5])
def test_parse_block_time_rejects_other_forms(text):
    with pytest.raises((ValueError, TypeError)):
        clock.parse_block_time(text)


def test_constants_and_frequencies():
    assert clock.FS == 196_000_000 and clock.CHAN_BW == 23925.78125
    assert clock.ticks_per_spectrum(24) == 196_608
    f = clock.channel_freqs_hz(600, 3072, 2)
    assert len(f) == 1536
    assert f[0] == pytest.approx(600.5 * clock.CHAN_BW)
    assert f[-1] == pytest.approx(3670.5 * clock.CHAN_BW)
    np.testing.assert_allclose(clock.channel_freqs_hz(600, 8, 1),
                               (600 + np.arange(8)) * 23925.78125)
