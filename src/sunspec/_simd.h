/* Inner loops of sunspec._core that gain from wider vectors than the portable baseline.
 *
 * On x86-64 with GCC or clang (ELF targets), each is compiled twice -- for AVX2 and for the
 * baseline -- and the loader picks the version the CPU supports (target_clones), so one
 * portable build runs at full width where it can. Elsewhere they are plain C.
 * The arithmetic and its order are the same in every version (no FMA, no reassociation),
 * so results are identical bit for bit.
 */
#ifndef SUNSPEC_SIMD_H
#define SUNSPEC_SIMD_H

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define SUNSPEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SUNSPEC_CLONES
#endif

/* acc[j] += x[t*stride + j] for t0 <= t < t1 and j0 <= j < j1, each element summing its rows
 * in order of t; four rows per pass keep the accumulator in registers longer. */
SUNSPEC_CLONES
static void sunspec_accumulate_block(const float *restrict x, ptrdiff_t stride, ptrdiff_t t0,
                                     ptrdiff_t t1, double *restrict acc, ptrdiff_t j0,
                                     ptrdiff_t j1)
{
    ptrdiff_t t = t0, j;
    for (; t + 4 <= t1; t += 4) {
        const float *r0 = x + t * stride, *r1 = r0 + stride, *r2 = r1 + stride,
                    *r3 = r2 + stride;
        for (j = j0; j < j1; j++)
            acc[j] = (((acc[j] + (double)r0[j]) + (double)r1[j]) + (double)r2[j]) + (double)r3[j];
    }
    for (; t < t1; t++) {
        const float *r0 = x + t * stride;
        for (j = j0; j < j1; j++)
            acc[j] += (double)r0[j];
    }
}

#endif
