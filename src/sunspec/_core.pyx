# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled kernels of sunspec: loops only, every one with the GIL released (but the header
scanner's few hundred bytes).

They take typed memoryviews (the buffer protocol, never numpy's C API, so one build serves
numpy 1.x and 2.x), compute into buffers they are given and allocate nothing. Shapes, dtypes
and ranges are checked by the Python wrappers in :mod:`sunspec.kernels`; calling these
directly with inconsistent arguments is undefined behaviour.
"""

from cpython.object cimport PyObject
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

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


cdef class RowStamps:
    """The per-row times of a ring (window end tag and Unix time, seq, arrival), written one
    row at a time by a single compiled call bound once to the four arrays."""

    cdef long long[::1] end_tag
    cdef double[::1] end_unix
    cdef long long[::1] seq
    cdef double[::1] arrival

    def __init__(self, long long[::1] end_tag, double[::1] end_unix, long long[::1] seq,
                 double[::1] arrival):
        self.end_tag = end_tag
        self.end_unix = end_unix
        self.seq = seq
        self.arrival = arrival

    def write(self, Py_ssize_t row, long long end_tag, double end_unix, long long seq,
              double arrival):
        """Stamp ``row``; raises IndexError unless 0 <= row < rows."""
        if row < 0 or row >= self.end_tag.shape[0]:
            raise IndexError(f"row must be in [0, {self.end_tag.shape[0]}), got {row}")
        self.end_tag[row] = end_tag
        self.end_unix[row] = end_unix
        self.seq[row] = seq
        self.arrival[row] = arrival


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


# --- header reading (sunspec.protocol.HeaderReader) ------------------------------------------

cdef extern from "Python.h":
    # Python's own float(): correctly rounded, independent of the C locale
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow_exception) \
        except? -1.0

cdef enum:
    # what a scan found (HeaderScanner.scan)
    SCAN_OTHER = -1  # not a header the scanner reads: parsed in full
    SCAN_NEW = 0  # read, with a stable part other than the kept one: parsed, then kept
    SCAN_SAME = 1  # read, the kept stable part with other per-frame values
    # longest per-frame number token read (digits of an int64 below 10**18, or a float)
    TOKEN_MAX = 63


cdef inline bint is_ws(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef Py_ssize_t skip_ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    while i < n and is_ws(p[i]):
        i += 1
    return i


cdef Py_ssize_t skip_string(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """p[i] is a quote: the index after the string's closing quote, or -1."""
    i += 1
    while i < n:
        if p[i] == 34:  # "
            return i + 1
        i += 2 if p[i] == 92 else 1  # a backslash escapes the next byte
    return -1


cdef Py_ssize_t skip_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The index after the value starting at p[i] (a string, an array or object however
    nested, or a scalar), or -1. Its content is not checked: the caller compares it."""
    cdef Py_ssize_t depth = 0
    cdef unsigned char c
    if i >= n:
        return -1
    c = p[i]
    if c == 34:
        return skip_string(p, i, n)
    if c == 91 or c == 123:  # [ {
        while i < n:
            c = p[i]
            if c == 34:
                i = skip_string(p, i, n)
                if i < 0:
                    return -1
                continue
            if c == 91 or c == 123:
                depth += 1
            elif c == 93 or c == 125:  # ] }
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    while i < n and not (is_ws(p[i]) or p[i] == 44 or p[i] == 125 or p[i] == 93):
        i += 1
    return i


cdef Py_ssize_t digits_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The index after the run of one or more digits at p[i], or -1 if there is none."""
    if i >= n or not is_digit(p[i]):
        return -1
    while i < n and is_digit(p[i]):
        i += 1
    return i


cdef Py_ssize_t number_end(const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                           bint* is_int) noexcept nogil:
    """The index after the JSON number (RFC 8259 grammar) at p[i], or -1."""
    if i < n and p[i] == 45:  # -
        i += 1
    if i < n and p[i] == 48:  # a leading 0 stands alone
        i += 1
    else:
        i = digits_end(p, i, n)
        if i < 0:
            return -1
    is_int[0] = True
    if i < n and p[i] == 46:  # .
        i = digits_end(p, i + 1, n)
        if i < 0:
            return -1
        is_int[0] = False
    if i < n and (p[i] == 101 or p[i] == 69):  # e E
        i += 1
        if i < n and (p[i] == 43 or p[i] == 45):
            i += 1
        i = digits_end(p, i, n)
        if i < 0:
            return -1
        is_int[0] = False
    return i


cdef inline bint key_is(const unsigned char* p, Py_ssize_t a, Py_ssize_t b,
                        const char* name, Py_ssize_t size) noexcept nogil:
    """True if the key bytes p[a:b] spell ``name`` (``size`` bytes)."""
    cdef Py_ssize_t k
    if b - a != size:
        return False
    for k in range(size):
        if p[a + k] != <unsigned char>name[k]:
            return False
    return True


cdef unsigned long long fnv1a(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """64-bit FNV-1a (Fowler, Noll and Vo; IETF draft-eastlake-fnv) of p[:n]."""
    cdef unsigned long long h = 14695981039346656037ULL
    cdef Py_ssize_t k
    for k in range(n):
        h = (h ^ p[k]) * 1099511628211ULL
    return h


cdef class HeaderReader:
    """Reads the header frames received into one buffer; quickly, in one compiled call, a
    header that repeats the one kept but for its per-frame values.

    A header frame of a sender's stream differs from the previous one only in the values of
    ``seq``, ``t_end_tag``, ``t_start_tag``, ``timestamp`` and ``last_block_time`` (its
    *per-frame keys*). The scanner reads a header that is one JSON object with those values
    as plain tokens (non-negative integers below 10**18, a finite number, a string of
    printable ASCII), ``t_end_tag`` and ``timestamp`` present, no per-frame key twice and
    no escape in any key; the rest of the header (its *stable part*: the bytes outside
    those values) is compared with the kept header's. A repeat is built from the kept
    header's fields and the values read; every other header goes to ``parse(n)``, and one
    the scanner read (and ``parse`` accepted) becomes the kept header. The scan holds the
    GIL (a few hundred bytes).

    ``cls`` is the tuple type ``parse`` returns; ``slots`` the indices in it of seq,
    timestamp, end tag, start tag and end time (Unix s, from the tag at
    ``ticks_per_second``). Headers longer than ``scan_limit`` (at most ``limit``) bytes go to
    ``parse`` unscanned; ``digest`` covers headers up to ``limit`` bytes.
    """

    cdef const unsigned char[::1] buf
    cdef unsigned char[::1] stable
    cdef unsigned char[::1] kept_part
    cdef Py_ssize_t nstable, nkept, limit, scan_limit
    cdef object parse
    cdef object cls
    cdef list fields
    cdef Py_ssize_t i_seq, i_timestamp, i_end, i_start, i_unix
    cdef long long ticks_per_second
    cdef long long seq, end_tag, start_tag
    cdef double timestamp
    cdef bint has_seq, has_start
    #: the last header read repeated the kept one but for its per-frame values
    cdef readonly bint repeated
    #: the last header read is the kept one, or repeats it
    cdef readonly bint kept
    #: 64-bit FNV-1a hash of the last header read (0 when longer than ``limit``): tells an
    #: exact repeat of a header (a duplicate message) from another
    cdef readonly unsigned long long digest

    def __init__(self, const unsigned char[::1] buf, Py_ssize_t limit, Py_ssize_t scan_limit,
                 parse, cls, tuple slots, long long ticks_per_second):
        if not 0 <= limit <= buf.shape[0]:
            raise ValueError(f"limit must be in [0, {buf.shape[0]}], got {limit}")
        if not 0 <= scan_limit <= limit:
            raise ValueError(f"scan_limit must be in [0, {limit}], got {scan_limit}")
        if ticks_per_second < 1:
            raise ValueError("ticks_per_second must be >= 1")
        self.buf = buf
        self.limit = limit
        self.scan_limit = scan_limit
        self.stable = bytearray(max(scan_limit, 1))
        self.kept_part = bytearray(max(scan_limit, 1))
        self.nstable = self.nkept = -1
        self.parse = parse
        self.cls = cls
        self.fields = []
        self.i_seq, self.i_timestamp, self.i_end, self.i_start, self.i_unix = slots
        self.ticks_per_second = ticks_per_second

    def read(self, Py_ssize_t n):
        """The header of the first ``n`` bytes of the buffer (what ``parse(n)`` returns)."""
        cdef int found = SCAN_OTHER
        cdef list fields
        cdef long long sec
        self.nstable = -1
        self.digest = fnv1a(&self.buf[0], n) if 0 <= n <= self.limit else 0
        if 0 <= n <= self.scan_limit:
            found = self._scan(&self.buf[0], n)
            if found == SCAN_NEW and self.nstable == self.nkept and (self.nstable == 0 or memcmp(
                    &self.stable[0], &self.kept_part[0], self.nstable) == 0):
                found = SCAN_SAME
        if found == SCAN_SAME:
            self.repeated = self.kept = True
            fields = self.fields
            fields[self.i_seq] = self.seq if self.has_seq else None
            fields[self.i_timestamp] = self.timestamp
            fields[self.i_end] = self.end_tag
            fields[self.i_start] = self.start_tag if self.has_start else None
            # as clock.tag_to_unix: whole seconds plus the rest, each exact in a double
            sec = self.end_tag // self.ticks_per_second
            fields[self.i_unix] = <double>sec + <double>(
                self.end_tag - sec * self.ticks_per_second) / <double>self.ticks_per_second
            return tuple.__new__(self.cls, fields)
        self.repeated = self.kept = False
        header = self.parse(n)
        if found == SCAN_NEW:
            memcpy(&self.kept_part[0], &self.stable[0], self.nstable)
            self.nkept = self.nstable
            self.fields = list(header)
            self.kept = True
        return header

    cdef int _scan(self, const unsigned char* p, Py_ssize_t n) except? -2:
        cdef Py_ssize_t i, a, b, j, k, last = 0, m = 0
        cdef int seen = 0, key
        cdef bint is_int
        cdef long long v
        cdef char token[TOKEN_MAX + 1]
        cdef char* end
        cdef unsigned char* out = &self.stable[0]
        i = skip_ws(p, 0, n)
        if i >= n or p[i] != 123:  # {
            return SCAN_OTHER
        i = skip_ws(p, i + 1, n)
        if i < n and p[i] == 125:
            return SCAN_OTHER  # {}: no t_end_tag
        while True:
            if i >= n or p[i] != 34:
                return SCAN_OTHER
            a = i + 1
            b = a
            while b < n and p[b] != 34:
                if p[b] == 92:  # an escaped key might spell a per-frame key
                    return SCAN_OTHER
                b += 1
            if b >= n:
                return SCAN_OTHER
            i = skip_ws(p, b + 1, n)
            if i >= n or p[i] != 58:  # :
                return SCAN_OTHER
            i = skip_ws(p, i + 1, n)
            key = 0
            if key_is(p, a, b, b"seq", 3):
                key = 1
            elif key_is(p, a, b, b"t_end_tag", 9):
                key = 2
            elif key_is(p, a, b, b"t_start_tag", 11):
                key = 4
            elif key_is(p, a, b, b"timestamp", 9):
                key = 8
            elif key_is(p, a, b, b"last_block_time", 15):
                key = 16
            if key == 0:
                i = skip_value(p, i, n)
                if i < 0:
                    return SCAN_OTHER
            else:
                if seen & key:
                    return SCAN_OTHER  # the full parser decides which of two counts
                seen |= key
                if key == 16:  # ignored beside t_end_tag: any printable ASCII string
                    if i >= n or p[i] != 34:
                        return SCAN_OTHER
                    j = i + 1
                    while j < n and p[j] != 34:
                        if p[j] < 32 or p[j] > 126 or p[j] == 92:
                            return SCAN_OTHER
                        j += 1
                    if j >= n:
                        return SCAN_OTHER
                    j += 1
                else:
                    j = number_end(p, i, n, &is_int)
                    if j < 0 or j - i > TOKEN_MAX:
                        return SCAN_OTHER
                    if key == 8:
                        if not is_int and j - i > TOKEN_MAX or is_int and j - i > 18:
                            return SCAN_OTHER
                        memcpy(token, p + i, j - i)
                        token[j - i] = 0
                        # NULL: an overflow gives +-inf, refused below like json's inf
                        self.timestamp = PyOS_string_to_double(token, &end, NULL)
                        if is_int and self.timestamp == 0.0:
                            self.timestamp = 0.0  # json reads -0 as the integer 0
                        if end != token + (j - i) or not (
                                -1.7976931348623157e308 <= self.timestamp
                                <= 1.7976931348623157e308):
                            return SCAN_OTHER
                    else:
                        if not is_int or p[i] == 45 or j - i > 18:
                            return SCAN_OTHER
                        v = 0
                        for k in range(i, j):
                            v = v * 10 + (p[k] - 48)
                        if key == 1:
                            self.seq = v
                        elif key == 2:
                            self.end_tag = v
                        else:
                            self.start_tag = v
                # the value's bytes are left out of the stable part
                memcpy(out + m, p + last, i - last)
                m += i - last
                last = j
                i = j
            i = skip_ws(p, i, n)
            if i >= n:
                return SCAN_OTHER
            if p[i] == 125:  # }
                break
            if p[i] != 44:  # ,
                return SCAN_OTHER
            i = skip_ws(p, i + 1, n)
        if skip_ws(p, i + 1, n) != n or not seen & 2 or not seen & 8:
            return SCAN_OTHER  # trailing bytes, or t_end_tag or timestamp missing
        if seen & 4 and self.start_tag > self.end_tag:
            return SCAN_OTHER
        memcpy(out + m, p + last, n - last)
        self.nstable = m + n - last
        self.has_seq = seen & 1
        self.has_start = seen & 4
        return SCAN_NEW





# --- receiving messages (sunspec._poller.MessagePoller) ----------------------------------------

# libzmq's poll item (zmq.h; ``fd`` is an int on POSIX)
ctypedef struct zmq_pollitem_t:
    void* socket
    int fd
    short events
    short revents

ctypedef int (*zmq_poll_fn)(zmq_pollitem_t* items, int nitems, long timeout) noexcept nogil
ctypedef int (*zmq_recv_fn)(void* s, void* buf, size_t len, int flags) noexcept nogil
ctypedef int (*zmq_getsockopt_fn)(void* s, int option, void* optval, size_t* optvallen) \
    noexcept nogil

#: what MessagePoller.wait found
WAIT_NOTHING = 0
WAIT_MESSAGE = 1
WAIT_MONITOR = 2


cdef class MessagePoller:
    """Waits on a data socket and its monitor, and receives a message's first three parts
    (topic, header, payload) into three buffers, in one compiled call with the GIL released.

    It calls libzmq through the function addresses it is given (``zmq_poll``, ``zmq_recv``,
    ``zmq_getsockopt``: those of the library the sockets belong to) on the sockets' handles
    (``zmq.Socket.underlying``), with the option and flag values ``RCVMORE``, ``POLLIN`` and
    ``DONTWAIT``. A part longer than its buffer is truncated, its full length reported, as
    ``zmq_recv`` does. Parts after the third stay queued (``more``). A libzmq failure raises
    ``error(errno)``. A readable ``wake_fd`` (unless -1) ends a wait, which is never read.
    """

    cdef zmq_poll_fn poll
    cdef zmq_recv_fn recv
    cdef zmq_getsockopt_fn getsockopt
    cdef zmq_pollitem_t items[3]
    cdef int nitems, rcvmore, pollin, dontwait
    cdef unsigned char[::1] topic, header, payload
    cdef object sockets  # kept alive while their handles are in use
    cdef object error
    #: parts received by the last wait that found a message (1 to 3)
    cdef readonly int parts
    #: more parts of that message are queued
    cdef readonly bint more
    #: lengths of its topic, header and payload parts (0 for parts it lacks)
    cdef readonly Py_ssize_t ntopic, nheader, npayload
    #: when its first part was received (Unix s, CLOCK_REALTIME)
    cdef readonly double arrival

    def __init__(self, tuple functions, tuple constants, error, sock, size_t sock_handle,
                 monitor, size_t monitor_handle, int wake_fd, unsigned char[::1] topic,
                 unsigned char[::1] header, unsigned char[::1] payload):
        cdef size_t poll, recv, getsockopt
        poll, recv, getsockopt = functions
        if not poll or not recv or not getsockopt or not sock_handle or not monitor_handle:
            raise ValueError("function addresses and socket handles must not be 0")
        self.poll = <zmq_poll_fn>poll
        self.recv = <zmq_recv_fn>recv
        self.getsockopt = <zmq_getsockopt_fn>getsockopt
        self.rcvmore, self.pollin, self.dontwait = constants
        self.nitems = 2 if wake_fd < 0 else 3
        for i in range(3):
            self.items[i].socket = NULL
            self.items[i].fd = 0
            self.items[i].events = self.pollin
            self.items[i].revents = 0
        self.items[0].socket = <void*>sock_handle
        self.items[1].socket = <void*>monitor_handle
        self.items[2].fd = wake_fd
        self.sockets = (sock, monitor)
        self.error = error
        self.topic, self.header, self.payload = topic, header, payload

    def wait(self, long timeout_ms):
        """Wait up to ``timeout_ms`` for a message or a monitor event: WAIT_MESSAGE (the
        message received), WAIT_MONITOR (an event waits on the monitor socket) or
        WAIT_NOTHING (timed out, woken, or interrupted by a signal). Raises ``error(errno)``
        if libzmq fails, as it does once the context is terminated."""
        cdef int rc, err = 0
        with nogil:
            rc = self.poll(self.items, self.nitems, timeout_ms)
            if rc < 0:
                err = errno
            elif self.items[0].revents & self.pollin:
                rc = self._receive()
                if rc < 0:
                    err = errno
        if rc < 0:
            if err == EINTR or err == EAGAIN:
                return WAIT_NOTHING
            raise self.error(err)
        if self.items[0].revents & self.pollin and self.parts:
            return WAIT_MESSAGE
        if self.items[1].revents & self.pollin:
            return WAIT_MONITOR
        return WAIT_NOTHING

    cdef int _receive(self) noexcept nogil:
        """Receive up to three parts; 0, or -1 with errno set."""
        cdef int n, more = 0, i
        cdef size_t optlen
        cdef timespec ts
        cdef unsigned char* bufs[3]
        cdef size_t sizes[3]
        cdef Py_ssize_t got[3]
        bufs[0], bufs[1], bufs[2] = &self.topic[0], &self.header[0], &self.payload[0]
        sizes[0] = self.topic.shape[0]
        sizes[1] = self.header.shape[0]
        sizes[2] = self.payload.shape[0]
        got[0] = got[1] = got[2] = 0
        self.parts = 0
        for i in range(3):
            n = self.recv(self.items[0].socket, bufs[i], sizes[i], self.dontwait)
            if n < 0:
                return -1
            if i == 0:
                clock_gettime(CLOCK_REALTIME, &ts)
                self.arrival = <double>ts.tv_sec + 1e-9 * <double>ts.tv_nsec
            got[i] = n
            self.parts = i + 1
            optlen = sizeof(int)
            if self.getsockopt(self.items[0].socket, self.rcvmore, &more, &optlen) < 0:
                return -1
            if not more:
                break
        self.more = more != 0
        self.ntopic, self.nheader, self.npayload = got[0], got[1], got[2]
        return 0
