"""protocol.HeaderReader reads exactly what parse_header reads (issue 17, cost per frame).

The reader takes a compiled short cut for a header that repeats the kept one but for its
per-frame values. Whatever the bytes, its result (or the rejection it raises) must be
parse_header's: hypothesis sends sequences of headers that repeat, change, break or disguise
their per-frame keys, and every read is compared with parse_header on the same bytes.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sunspec import clock, protocol
from sunspec.protocol import HeaderReader, ProtocolError

TAG = 343_597_383_680_000_123
WINDOW = 512 * clock.ticks_per_spectrum(24)

#: tokens a per-frame key may carry: plain ones the scanner reads, and every other JSON (or
#: not-JSON: bad escapes, control characters, a byte that is not UTF-8) form, which the full
#: parser must decide on
ODD_TOKENS = [
    "0", "-0", "-5", "05", "1.0", "1e3", "1E+3", "2.5e-3", "-0.0", "1e999", "-1e999", "NaN",
    "Infinity", "-Infinity", "123456789012345678", "1234567890123456789",
    "99999999999999999999999", '"7"', "null", "true", "false", "[1]", "{}", '{"seq": 1}',
    '"2025-07-20 21:44:38.486308"', '"caf\\u00e9"', '"tab\there"', '"a\\"b"', "", "1.", ".5",
    "+1", "0x10", "1_000", "\u0661", '"bad\\x"', '"\\u12"', '"a\x01b"', '"\udcff"',
    '"\\ud800"',
]
PER_FRAME = ["seq", "t_end_tag", "t_start_tag", "timestamp", "last_block_time"]


def outcome(read):
    """What a read gives: the header's exact repr (-0.0 and 0.0 differ), or the rejection."""
    try:
        return ("header", repr(tuple(read())))
    except ProtocolError as exc:
        return ("rejected", exc.reason, exc.sender_id, exc.seq)


def render(pairs, comma=", ", colon=": ", pad="") -> bytes:
    body = comma.join(f"{k}{colon}{v}" for k, v in pairs)
    return f"{pad}{{{body}}}{pad}".encode("utf-8", "surrogateescape")  # \udcff: a 0xff byte


def base_pairs(optional: dict) -> list[tuple[str, str]]:
    h = protocol.make_header(nbeam=1, nchan=8, npol=4, time_tag=TAG, t_end_tag=TAG + WINDOW,
                             timestamp=1.75e9, seq=0, sender_id="abc", **optional)
    return [(json.dumps(k), json.dumps(v)) for k, v in h.items()]


def realistic(key: str, i: int, draw) -> str:
    """A plausible per-frame value of message ``i``."""
    if key == "seq":
        return str(i)
    if key in ("t_end_tag", "t_start_tag"):
        return str(TAG + (i + (key == "t_end_tag")) * WINDOW + draw(st.integers(0, 5)))
    if key == "timestamp":
        return repr(draw(st.floats(1.7e9, 1.8e9)))
    return json.dumps(clock.format_block_time(TAG + (i + 1) * WINDOW))


#: changes a stream may carry in every message (its per-frame values still change)
PERSISTENT = ["none", "none", "dup", "escaped", "trailing", "drop", "nested", "spacing"]
#: changes one message may carry
ONCE = ["none"] * 8 + ["odd", "stable", "dup", "trailing"]


def apply(out, kind, i, j, draw):
    if kind == "odd":
        out[j] = (out[j][0], draw(st.sampled_from(ODD_TOKENS)))
    elif kind == "dup":  # json keeps the last of two
        out.append((out[j][0], realistic(json.loads(out[j][0]), i + 1, draw)))
    elif kind == "escaped":  # a key that spells a per-frame key with an escape
        name = json.loads(out[j][0])
        out[j] = ('"' + name[:-1] + f"\\u{ord(name[-1]):04x}" + '"', out[j][1])
    elif kind == "drop":
        del out[j]
    elif kind == "stable":
        out.append(('"nint"', str(draw(st.integers(-1, 3)))))
    elif kind == "nested":
        out.append(('"meta"', '{"seq": 5, "t_end_tag": [1, {"x": "}"}]}'))


def message(pairs, i, persistent, j, draw) -> bytes:
    """Message ``i``: new per-frame values, the stream's ``persistent`` change (on per-frame
    key number ``j``) and sometimes a change of its own."""
    out = [(k, realistic(json.loads(k), i, draw)) if json.loads(k) in PER_FRAME else (k, v)
           for k, v in pairs]
    keyed = [n for n, (k, _) in enumerate(out) if json.loads(k) in PER_FRAME]
    apply(out, persistent, i, keyed[j % len(keyed)], draw)
    once = draw(st.sampled_from(ONCE))
    keyed = [n for n, (k, _) in enumerate(out) if k.isascii() and json.loads(k) in PER_FRAME]
    if keyed:
        apply(out, once, i, draw(st.sampled_from(keyed)), draw)
    spacing = (",", ":", "") if persistent == "spacing" else (", ", ": ", "")
    trailing = " x" if "trailing" in (persistent, once) else ""
    return render(out, *spacing) + trailing.encode()


def compare(reader: HeaderReader, raw: bytes) -> tuple:
    reader.buffer[: len(raw)] = raw
    got = outcome(lambda: reader.read(len(raw)))
    assert got == outcome(lambda: protocol.parse_header(raw, len(reader.buffer))), raw
    assert not reader.repeated or got[0] == "header"
    return got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(),
       optional=st.fixed_dictionaries({}, optional={
           "t_start_tag": st.just(TAG), "chan0": st.integers(0, 4000), "beam": st.just(2),
           "pols": st.sampled_from(["XX,YY,XY_real,XY_imag", "XX"]),
           "missing": st.just([1, 3]), "freqs_hz": st.just([1e7 * (k + 1) for k in range(8)]),
           "unit": st.sampled_from(["dB", "volts"]), "replay": st.booleans()}),
       persistent=st.sampled_from(PERSISTENT), key=st.integers(0, 4), count=st.integers(1, 8))
def test_every_read_is_what_parse_header_reads(data, optional, persistent, key, count):
    pairs = base_pairs(optional)
    reader = HeaderReader(bytearray(4096), 4096)
    for i in range(count):
        compare(reader, message(pairs, i, persistent, key, data.draw))


@pytest.mark.parametrize("token", ODD_TOKENS)
@pytest.mark.parametrize("key", PER_FRAME)
def test_any_token_of_a_per_frame_key_reads_as_parse_header_reads_it(key, token):
    pairs = base_pairs({"t_start_tag": TAG})
    reader = HeaderReader(bytearray(4096), 4096)
    compare(reader, render(pairs))  # kept
    odd = [(k, token if json.loads(k) == key else v) for k, v in pairs]
    compare(reader, render(odd))


@pytest.mark.parametrize("key", PER_FRAME)
@pytest.mark.parametrize("kind", ["dup", "escaped", "drop", "nested"])
def test_a_stream_whose_per_frame_keys_are_odd_reads_as_parse_header_reads_it(kind, key):
    pairs = base_pairs({"t_start_tag": TAG})
    j = [json.loads(k) for k, _ in pairs].index(key)
    reader = HeaderReader(bytearray(4096), 4096)
    for i in range(4):
        out = [(k, realistic(json.loads(k), i, lambda s: 1)) if json.loads(k) in PER_FRAME
               else (k, v) for k, v in pairs]
        apply(out, kind, i, j, lambda s: 1)
        compare(reader, render(out))


def test_a_steady_stream_is_read_by_the_short_cut_and_equals_the_full_parse():
    reader = HeaderReader(bytearray(4096), 4096)
    seen = []
    for i in range(50):
        h = protocol.make_header(nbeam=1, nchan=3072, npol=4, time_tag=TAG,
                                 t_end_tag=TAG + (i + 1) * WINDOW, t_start_tag=TAG + i * WINDOW,
                                 timestamp=1.75e9 + 0.5 * i + 1e-7 * i * i, seq=i,
                                 sender_id="rec1", chan0=1234)
        raw = json.dumps(h).encode()
        reader.buffer[: len(raw)] = raw
        got = reader.read(len(raw))
        assert repr(got) == repr(protocol.parse_header(raw))
        assert got.end_unix == clock.tag_to_unix(TAG + (i + 1) * WINDOW)
        seen.append((reader.repeated, reader.kept))
    assert seen == [(False, True)] + [(True, True)] * 49


def test_a_changed_stable_part_is_parsed_again_then_repeats():
    reader = HeaderReader(bytearray(4096), 4096)

    def read(i: int, chan0: int):
        raw = json.dumps(protocol.make_header(
            nbeam=1, nchan=8, npol=4, time_tag=TAG, t_end_tag=TAG + (i + 1) * WINDOW,
            seq=i, sender_id="s", chan0=chan0)).encode()
        reader.buffer[: len(raw)] = raw
        return reader.read(len(raw)), reader.repeated

    assert [read(i, 100)[1] for i in range(3)] == [False, True, True]
    h, repeated = read(3, 200)
    assert (h.chan0, repeated) == (200, False)
    h, repeated = read(4, 200)
    assert (h.chan0, h.seq, repeated) == (200, 4, True)


def test_version_1_headers_are_parsed_in_full_every_time():
    reader = HeaderReader(bytearray(4096), 4096)
    for i in range(3):
        h = protocol.make_header(nbeam=1, nchan=8, npol=4, time_tag=TAG,
                                 t_end_tag=TAG + (i + 1) * WINDOW)
        del h["t_end_tag"], h["proto"]
        raw = json.dumps(h).encode()
        reader.buffer[: len(raw)] = raw
        assert reader.read(len(raw)) == protocol.parse_header(raw)
        assert not reader.repeated and not reader.kept


def test_digest_tells_identical_bytes_from_others():
    reader = HeaderReader(bytearray(64), 64)
    digests = []
    for raw in (b'{"a": 1}', b'{"a": 2}', b'{"a": 1}'):
        reader.buffer[: len(raw)] = raw
        with pytest.raises(ProtocolError):
            reader.read(len(raw))
        digests.append(reader.digest)
    assert digests[0] == digests[2] != digests[1]


def test_a_header_over_the_limit_is_refused_unscanned():
    reader = HeaderReader(bytearray(512), 200)
    raw = json.dumps(protocol.make_header(nbeam=1, nchan=8, npol=4, time_tag=TAG,
                                          t_end_tag=TAG + WINDOW)).encode()
    assert 200 < len(raw) <= 512
    reader.buffer[: len(raw)] = raw
    with pytest.raises(ProtocolError) as info:
        reader.read(len(raw))
    assert info.value.reason == "oversize" and reader.digest == 0


def test_a_header_longer_than_any_sender_sends_is_parsed_in_full_and_hashed():
    reader = HeaderReader(bytearray(4 * protocol.HEADER_LIMIT), 4 * protocol.HEADER_LIMIT)
    digests = []
    for i in range(2):
        raw = json.dumps(protocol.make_header(
            nbeam=1, nchan=8, npol=4, time_tag=TAG, t_end_tag=TAG + (i + 1) * WINDOW,
            seq=i, sender_id="s")).encode()
        raw = raw[:-1] + b" " * (2 * protocol.HEADER_LIMIT) + b"}"  # valid JSON, 128 KiB
        reader.buffer[: len(raw)] = raw
        assert repr(reader.read(len(raw))) == repr(protocol.parse_header(raw, len(raw)))
        assert not reader.repeated and not reader.kept
        digests.append(reader.digest)
    assert 0 not in digests and digests[0] != digests[1]
