"""The compiled kernels against numpy references, and their argument checks."""

import numpy as np
import pytest

from sunspec import kernels

RNG = np.random.default_rng(20261124)


def gulp(ntime, nbeam, nchan, npol, scale=1e6):
    return (RNG.random((ntime, nbeam, nchan, npol), dtype=np.float32) * scale).astype(np.float32)


@pytest.mark.parametrize(
    "shape, t0, t1",
    [
        ((1024, 1, 3072, 4), 0, 512),
        ((1024, 1, 3072, 4), 512, 1024),
        ((1, 1, 16, 4), 0, 1),
        ((37, 3, 10, 4), 5, 22),  # odd sub-range, nbeam > 1
        ((9, 2, 7, 1), 0, 9),
        ((13, 1, 5, 2), 12, 13),
    ],
)
def test_time_average_equals_float64_mean(shape, t0, t1):
    x = gulp(*shape)
    out = kernels.time_average(x, t0, t1)
    ref = x[t0:t1].astype(np.float64).mean(0).astype(np.float32)
    assert out.dtype == np.float32 and out.shape == shape[1:]
    np.testing.assert_array_equal(out, ref)


def test_time_average_reuses_out_and_scratch_and_accepts_readonly_views():
    x = gulp(64, 1, 32, 4)
    x.flags.writeable = False  # Bifrost spans are read-only views
    out = np.empty((1, 32, 4), np.float32)
    scratch = np.full((1, 32, 4), 123.0)  # stale contents must not leak into the result
    res = kernels.time_average(x, 0, 64, out=out, scratch=scratch)
    assert res is out
    np.testing.assert_array_equal(out, x.astype(np.float64).mean(0).astype(np.float32))


def test_accumulate_across_gulps_matches_one_mean():
    a, b = gulp(10, 1, 8, 4), gulp(10, 1, 8, 4)
    acc = np.zeros((1, 8, 4))
    kernels.accumulate(a, 6, 10, acc)
    kernels.accumulate(b, 0, 3, acc)
    out = np.empty((1, 8, 4), np.float32)
    kernels.finalize_mean(acc, 7, out)
    ref = np.concatenate([a[6:], b[:3]]).astype(np.float64).mean(0).astype(np.float32)
    np.testing.assert_array_equal(out, ref)


def reference_row(frame, beam, product, factor):
    f = frame[beam].astype(np.float64)
    if product == "I":
        v = (f[:, 0] + f[:, 1]) * 0.5
    else:
        v = f[:, {"XX": 0, "YY": 1, "XY_real": 2, "XY_imag": 3, "V": 3}.get(product, product)]
    return v.reshape(-1, factor).mean(1).astype(np.float32)


@pytest.mark.parametrize("product", ["XX", "YY", "XY_real", "XY_imag", "I", "V", 0, 2])
@pytest.mark.parametrize("factor", [1, 2, 4])
@pytest.mark.parametrize("nbeam, beam", [(1, 0), (3, 2)])
def test_reduce_frame_matches_numpy(product, factor, nbeam, beam):
    frame = gulp(1, nbeam, 3072, 4)[0]
    ring = np.full((5, 3072 // factor), -1.0, np.float32)
    nbad = kernels.reduce_frame(frame, ring, 3, beam=beam, product=product, factor=factor)
    assert nbad == 0
    np.testing.assert_array_equal(ring[3], reference_row(frame, beam, product, factor))
    assert (ring[[0, 1, 2, 4]] == -1).all(), "only the target row is written"


def test_reduce_frame_deployed_case_equals_the_float32_numpy_line():
    f = gulp(1, 1, 3072, 4)[0]
    ring = np.zeros((1, 1536), np.float32)
    kernels.reduce_frame(f, ring, 0)
    np.testing.assert_array_equal(ring[0], f.reshape(3072, 4)[:, 0].reshape(1536, 2).mean(1))


def test_reduce_frame_odd_factor_is_close_to_reference():
    f = gulp(1, 1, 3000, 4)[0]
    ring = np.zeros((1, 200), np.float32)
    kernels.reduce_frame(f, ring, 0, factor=15, product="I")
    np.testing.assert_allclose(ring[0], reference_row(f, 0, "I", 15), rtol=1e-6)


def test_nonfinite_propagate_and_are_counted():
    f = np.ones((1, 16, 4), np.float32)
    f[0, 3, 0] = np.nan  # channel 3 -> output 1 for factor 2
    f[0, 8, 0] = np.inf  # channel 8 -> output 4
    f[0, 11, 1] = np.nan  # YY only (output 5): invisible to XX, visible to I
    ring = np.zeros((1, 8), np.float32)
    assert kernels.reduce_frame(f, ring, 0, product="XX") == 2
    assert np.isnan(ring[0, 1]) and np.isinf(ring[0, 4])
    assert np.isfinite(np.delete(ring[0], [1, 4])).all()
    assert kernels.reduce_frame(f, ring, 0, product="I") == 3
    x = np.ones((4, 1, 2, 1), np.float32)
    x[2, 0, 1, 0] = np.nan
    out = kernels.time_average(x)
    assert out[0, 0, 0] == 1 and np.isnan(out[0, 1, 0])


@pytest.mark.parametrize("nrows, head, n", [(10, 0, 10), (10, 3, 10), (10, 3, 2), (10, 7, 5),
                                            (1, 0, 1), (5, 4, 0)])
def test_read_rows_is_chronological(nrows, head, n):
    src = np.arange(nrows * 3, dtype=np.float32).reshape(nrows, 3)
    idx = [(head - n + i) % nrows for i in range(n)]
    np.testing.assert_array_equal(kernels.read_rows(src, head, n), src[idx])
    meta = np.arange(nrows, dtype=np.int64) * 2**55  # int64 metadata columns, exact
    np.testing.assert_array_equal(kernels.read_rows(meta, head, n), meta[idx])


def test_read_rows_into_given_out():
    src = np.arange(12, dtype=np.float64).reshape(6, 2)
    out = np.empty((4, 2))
    assert kernels.read_rows(src, 2, 4, out) is out
    np.testing.assert_array_equal(out, src[[4, 5, 0, 1]])


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: kernels.time_average(np.zeros((4, 1, 8, 4))), TypeError, "gulp must have dtype"),
        (lambda: kernels.time_average(np.zeros((4, 1, 8, 4), np.float32)[:, :, ::2]), ValueError,
         "C-contiguous"),
        (lambda: kernels.time_average(np.zeros((4, 1, 8, 4), np.float32), 3, 3), ValueError,
         "empty"),
        (lambda: kernels.time_average(np.zeros((4, 1, 8, 4), np.float32), 0, 5), ValueError,
         "within [0, 4]"),
        (lambda: kernels.time_average(np.zeros(4, np.float32)), ValueError, "time axis"),
        (lambda: kernels.reduce_frame(np.zeros((1, 10, 4), np.float32),
                                      np.zeros((1, 3), np.float32), 0, factor=3),
         ValueError, "factor must be >= 1 and divide nchan = 10"),
        (lambda: kernels.reduce_frame(np.zeros((1, 8, 4), np.float32),
                                      np.zeros((1, 3), np.float32), 0), ValueError,
         "nchan // factor = 4"),
        (lambda: kernels.reduce_frame(np.zeros((1, 8, 4), np.float32),
                                      np.zeros((1, 4), np.float32), 1), ValueError,
         "row must be in [0, 1)"),
        (lambda: kernels.reduce_frame(np.zeros((1, 8, 4), np.float32),
                                      np.zeros((1, 4), np.float32), 0, beam=1), ValueError,
         "beam must be in [0, 1)"),
        (lambda: kernels.reduce_frame(np.zeros((1, 8, 1), np.float32),
                                      np.zeros((1, 4), np.float32), 0, product="I"), ValueError,
         "needs npol >= 2"),
        (lambda: kernels.reduce_frame(np.zeros((1, 8, 4), np.float32),
                                      np.zeros((1, 4), np.float32), 0, product="Q"), ValueError,
         "product must be one of"),
        (lambda: kernels.reduce_frame(np.zeros((1, 8, 4), np.float32),
                                      np.zeros((1, 4), np.float64), 0), TypeError,
         "ring must have dtype float32"),
        (lambda: kernels.reduce_frame(np.zeros((8, 4), np.float32),
                                      np.zeros((1, 4), np.float32), 0), ValueError,
         "frame must be 3-D"),
        (lambda: kernels.read_rows(np.zeros((4, 2)), 0, 5), ValueError, "n must be in [0, 4]"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    assert words in str(info.value)


def test_readonly_ring_is_refused():
    ring = np.zeros((1, 4), np.float32)
    ring.flags.writeable = False
    with pytest.raises(ValueError, match="ring must be writeable"):
        kernels.reduce_frame(np.zeros((1, 8, 4), np.float32), ring, 0)
