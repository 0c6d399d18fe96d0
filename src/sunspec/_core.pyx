# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled kernels of sunspec: loops only, every one with the GIL released.

They take typed memoryviews (the buffer protocol, never numpy's C API, so one build serves
numpy 1.x and 2.x), compute into buffers they are given and allocate nothing. Shapes, dtypes
and ranges are checked by the Python wrappers in :mod:`sunspec.kernels`; calling these
directly with inconsistent arguments is undefined behaviour.
"""

from libc.string cimport memcpy

cdef extern from "_simd.h" nogil:
    void sunspec_accumulate_block(const float* x, Py_ssize_t stride, Py_ssize_t t0,
                                  Py_ssize_t t1, double* acc, Py_ssize_t j0, Py_ssize_t j1)

#: product code of Stokes-I-like total power, (pol 0 + pol 1) / 2
PRODUCT_I = -1


cdef enum:
    # columns per cache block of the time accumulation: 1024 float64 = 8 KiB of accumulator
    # stay in L1 while the block's rows stream through
    ACC_BLOCK = 1024


def accumulate(const float[:, ::1] x, Py_ssize_t t0, Py_ssize_t t1, double[::1] acc) -> None:
    """acc[j] += x[t, j] for t0 <= t < t1, in order of t (float64 accumulation)."""
    cdef Py_ssize_t j0, j1, m = x.shape[1]
    if t1 <= t0:
        return
    with nogil:
        j0 = 0
        while j0 < m:
            j1 = min(j0 + ACC_BLOCK, m)
            sunspec_accumulate_block(&x[0, 0], m, t0, t1, &acc[0], j0, j1)
            j0 = j1


def finalize_mean(double[::1] acc, Py_ssize_t n, float[::1] out) -> None:
    """out[j] = float32(acc[j] / n)."""
    cdef Py_ssize_t j, m = acc.shape[0]
    cdef double dn = <double>n
    with nogil:
        for j in range(m):
            out[j] = <float>(acc[j] / dn)


cdef inline Py_ssize_t count_nonfinite(const float* v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k, nbad = 0
    for k in range(n):
        # x - x is 0 for finite x and NaN for NaN or inf; branch-free so it vectorizes
        nbad += (v[k] - v[k]) != 0.0
    return nbad


cdef Py_ssize_t reduce_row(const float* src, Py_ssize_t npol, int product, Py_ssize_t factor,
                           float* dst, Py_ssize_t nout) noexcept nogil:
    cdef Py_ssize_t k, c, step = factor * npol
    cdef const float* p
    cdef double s
    cdef double dfactor = <double>factor
    # 1 / factor is exact for powers of two, so multiplying gives the same bits as dividing
    cdef bint pow2 = (factor & (factor - 1)) == 0
    cdef double inv = 1.0 / dfactor
    if product >= 0:
        src = src + product
        if factor == 2 and npol == 4:
            # the deployed case, with constant strides the compiler can vectorize; summed in
            # float64 like the others, so finite values up to float32's maximum stay finite
            for k in range(nout):
                dst[k] = <float>((<double>src[8 * k] + <double>src[8 * k + 4]) * 0.5)
        elif factor == 2:
            for k in range(nout):
                p = src + k * step
                dst[k] = <float>((<double>p[0] + <double>p[npol]) * 0.5)
        else:
            for k in range(nout):
                p = src + k * step
                s = 0.0
                for c in range(factor):
                    s += p[c * npol]
                dst[k] = <float>(s * inv if pow2 else s / dfactor)
    else:
        for k in range(nout):
            p = src + k * step
            s = 0.0
            for c in range(factor):
                s += (<double>p[c * npol] + <double>p[c * npol + 1]) * 0.5
            dst[k] = <float>(s * inv if pow2 else s / dfactor)
    return count_nonfinite(dst, nout)


def reduce_frame(const float[:, :, ::1] frame, Py_ssize_t beam, int product,
                 Py_ssize_t factor, float[:, ::1] ring, Py_ssize_t row):
    """Write one ring row from one frame: product of ``beam``, ``factor`` channels averaged.

    product >= 0 picks that pol; PRODUCT_I gives (pol 0 + pol 1) / 2. Sums run in float64
    in channel order, then divide by ``factor``. Returns how many written values are not
    finite (NaN or inf), which the caller uses to decide whether to publish the row.
    """
    cdef Py_ssize_t nbad
    with nogil:
        nbad = reduce_row(&frame[beam, 0, 0], frame.shape[2], product, factor,
                          &ring[row, 0], ring.shape[1])
    return nbad


cdef class FrameReducer:
    """reduce_frame bound once to a frame buffer and a ring, for a per-frame call that
    acquires no buffers: the receiver receives every payload into the same buffer."""

    cdef const float[:, :, ::1] frame
    cdef float[:, ::1] ring
    cdef Py_ssize_t beam, factor
    cdef int product

    def __init__(self, const float[:, :, ::1] frame, Py_ssize_t beam, int product,
                 Py_ssize_t factor, float[:, ::1] ring):
        self.frame = frame
        self.ring = ring
        self.beam = beam
        self.product = product
        self.factor = factor

    def reduce(self, Py_ssize_t row):
        """Reduce the bound frame into ``ring[row]``; returns the non-finite count.

        Raises IndexError unless 0 <= row < ring rows (the one check made per call).
        """
        cdef Py_ssize_t nbad
        if row < 0 or row >= self.ring.shape[0]:
            raise IndexError(f"row must be in [0, {self.ring.shape[0]}), got {row}")
        with nogil:
            nbad = reduce_row(&self.frame[self.beam, 0, 0], self.frame.shape[2], self.product,
                              self.factor, &self.ring[row, 0], self.ring.shape[1])
        return nbad


def copy_rows(const unsigned char[:, ::1] src, Py_ssize_t head, Py_ssize_t n,
              unsigned char[:, ::1] out) -> None:
    """Copy the ``n`` rows before ``head`` (wrapping) of ``src`` into ``out``, oldest first."""
    cdef Py_ssize_t nrows = src.shape[0]
    cdef Py_ssize_t rowbytes = src.shape[1]
    cdef Py_ssize_t start = (head - n) % nrows
    cdef Py_ssize_t first
    if n <= 0:
        return
    if start < 0:
        start += nrows
    first = min(n, nrows - start)
    with nogil:
        memcpy(&out[0, 0], &src[start, 0], first * rowbytes)
        if first < n:
            memcpy(&out[first, 0], &src[0, 0], (n - first) * rowbytes)


# --- burst detection (sunspec.detect) -------------------------------------------------------

def detect_bin_rows(const float[:, ::1] x_db, const float[::1] bg, const float[::1] inv_sigma,
                    const int[::1] chan_bin, const float[::1] z_norm, const float[::1] db_norm,
                    float zclip, float[:, ::1] out_z, float[:, ::1] out_db) -> None:
    """Normalise dB rows by a per-channel background and noise, and sum channels into bins.

    For each row i and channel c with chan_bin[c] = b >= 0, inv_sigma[c] > 0 and a finite
    value: r = x_db[i, c] - bg[c]; out_z[i, b] += clip(r * inv_sigma[c], -zclip, zclip) and
    out_db[i, b] += r; then out_z[i, b] *= z_norm[b] (1 / sqrt(channels)) and out_db[i, b]
    *= db_norm[b] (1 / channels). Non-finite values count as zero excess.
    """
    cdef Py_ssize_t i, c, b, n = x_db.shape[0], m = x_db.shape[1], nb = out_z.shape[1]
    cdef float r, z
    with nogil:
        for i in range(n):
            for b in range(nb):
                out_z[i, b] = 0.0
                out_db[i, b] = 0.0
            for c in range(m):
                b = chan_bin[c]
                if b < 0 or inv_sigma[c] <= 0.0:
                    continue
                r = x_db[i, c] - bg[c]
                if r - r != 0.0:
                    continue
                z = r * inv_sigma[c]
                if z > zclip:
                    z = zclip
                elif z < -zclip:
                    z = -zclip
                out_z[i, b] += z
                out_db[i, b] += r
            for b in range(nb):
                out_z[i, b] *= z_norm[b]
                out_db[i, b] *= db_norm[b]


def detect_curve_sums(const float[:, ::1] hist, Py_ssize_t newest, const int[:, ::1] lags,
                      const int[::1] bin_group, float[:, ::1] out) -> None:
    """Sums of a circular history along a bank of drift curves, per group of bins.

    ``hist`` (T, B) holds binned rows, physical row ``newest`` the latest. For each curve k:
    out[k, g] = sum over bins b with bin_group[b] = g >= 0 and lags[k, b] >= 0 of
    hist[(newest - lags[k, b]) mod T, b]. Lags must be < T.
    """
    cdef Py_ssize_t k, b, g, row, t = hist.shape[0], nb = hist.shape[1]
    cdef Py_ssize_t nk = lags.shape[0], ng = out.shape[1]
    with nogil:
        for k in range(nk):
            for g in range(ng):
                out[k, g] = 0.0
            for b in range(nb):
                g = bin_group[b]
                if g < 0 or lags[k, b] < 0:
                    continue
                row = newest - lags[k, b]
                if row < 0:
                    row += t
                out[k, g] += hist[row, b]


def detect_line_sums(const float[:, ::1] hist, Py_ssize_t newest, const int[:, ::1] offsets,
                     const float[::1] weight, Py_ssize_t width, float[:, ::1] out_sum,
                     float[:, ::1] out_n) -> None:
    """Sums of a circular history along straight lanes ending at the newest row.

    For lane r ending in bin b: the j-th row back (j < offsets.shape[1]) contributes bins
    b + offsets[r, j] .. + width - 1 (those inside the band), each times weight[bin]
    (1 for a bin with channels, 0 for an empty one); out_n counts the weights. Rows back
    must be < T.
    """
    cdef Py_ssize_t r, b, j, q, bb, row, t = hist.shape[0], nb = hist.shape[1]
    cdef Py_ssize_t nr = offsets.shape[0], nl = offsets.shape[1]
    cdef float s, w
    with nogil:
        for r in range(nr):
            for b in range(nb):
                s = 0.0
                w = 0.0
                for j in range(nl):
                    row = newest - j
                    if row < 0:
                        row += t
                    for q in range(width):
                        bb = b + offsets[r, j] + q
                        if bb < 0 or bb >= nb:
                            continue
                        s += hist[row, bb] * weight[bb]
                        w += weight[bb]
                out_sum[r, b] = s
                out_n[r, b] = w
