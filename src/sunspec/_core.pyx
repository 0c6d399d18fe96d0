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
