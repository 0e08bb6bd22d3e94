/*
 * util.h — small helpers shared by the files of src/layers: size checks and an OpenMP pragma that
 * disappears (without an unknown-pragma warning) when the library is built without OpenMP.
 */
#ifndef ATTN_LAYERS_UTIL_H
#define ATTN_LAYERS_UTIL_H

#include "internal.h"

#include <limits.h>

#ifdef _OPENMP
#define ATTN_OMP(x) _Pragma(#x)
#else
#define ATTN_OMP(x)
#endif

/* 1 when every size is in [1, ATTN_MAX_DIM]. */
static inline int attn__dim_ok(int n) { return n >= 1 && n <= ATTN_MAX_DIM; }

/* 1 when a·b fits in an int (BLAS takes int dimensions). */
static inline int attn__prod_fits_int(int a, int b) { return (int64_t)a * b <= INT_MAX; }

/* Threads for an elementwise pass over n items: 1 below a size where a fork costs more than it saves. */
static inline int attn__threads_for(size_t n) {
    if (n < 32768) return 1;
    int nth = attn_get_num_threads();
    return nth < 1 ? 1 : nth;
}

#endif /* ATTN_LAYERS_UTIL_H */
