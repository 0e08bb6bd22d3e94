/*
 * kernels_scalar.c — the portable path: the fallback for CPUs without AVX2, the same algorithms as the
 * SIMD paths (kernels_impl.h: fused attention, GRU gates, additive attention) with a "vector" of 8 floats
 * handled by plain loops, which compilers vectorize for the baseline ISA.
 * No intrinsics here.
 */
#include "internal.h"

#include <math.h>

#define FZ_VW 8
#define FZ_NVMAX 4
#define FZ_RTMAX 4
#define FZ_BC 64
#define FZ_QB 64
#define FZ_ISA ATTN_ISA_SCALAR
#define FZ_TABLE attn__kernels_scalar

typedef struct { float x[FZ_VW]; } fz_v;   /* (VW) */
typedef int fz_m;                          /* valid lanes of a tail vector */

static inline fz_v fz_zero(void) { fz_v r; for (int i = 0; i < FZ_VW; i++) r.x[i] = 0.0f; return r; }
static inline fz_v fz_set1(float a) { fz_v r; for (int i = 0; i < FZ_VW; i++) r.x[i] = a; return r; }
static inline fz_v fz_load(const float *p) { fz_v r; for (int i = 0; i < FZ_VW; i++) r.x[i] = p[i]; return r; }
static inline void fz_store(float *p, fz_v a) { for (int i = 0; i < FZ_VW; i++) p[i] = a.x[i]; }
/* The lanes a masked load or store touches: n, at most a vector (callers may pass what is left of a row,
 * as the SIMD paths' masks saturate; an unclamped n let fz_storem copy past the vector's 8 floats). */
static inline fz_m fz_tailmask(int n) { return n < FZ_VW ? n : FZ_VW; }
static inline fz_v fz_loadm(const float *p, fz_m n) {
    fz_v r; for (int i = 0; i < FZ_VW; i++) r.x[i] = i < n ? p[i] : 0.0f; return r;
}
static inline void fz_storem(float *p, fz_v a, fz_m n) { for (int i = 0; i < n; i++) p[i] = a.x[i]; }
static inline void fz_transpose(fz_v v[FZ_VW]) {                 /* v[i] lane j <-> v[j] lane i */
    for (int i = 0; i < FZ_VW; i++)
        for (int j = i + 1; j < FZ_VW; j++) {
            const float x = v[i].x[j];
            v[i].x[j] = v[j].x[i];
            v[j].x[i] = x;
        }
}
static inline fz_v fz_add(fz_v a, fz_v b) { for (int i = 0; i < FZ_VW; i++) a.x[i] += b.x[i]; return a; }
static inline fz_v fz_sub(fz_v a, fz_v b) { for (int i = 0; i < FZ_VW; i++) a.x[i] -= b.x[i]; return a; }
static inline fz_v fz_mul(fz_v a, fz_v b) { for (int i = 0; i < FZ_VW; i++) a.x[i] *= b.x[i]; return a; }
static inline fz_v fz_fma(fz_v a, fz_v b, fz_v c) {
    for (int i = 0; i < FZ_VW; i++) c.x[i] += a.x[i] * b.x[i];
    return c;
}
static inline fz_v fz_div(fz_v a, fz_v b) { for (int i = 0; i < FZ_VW; i++) a.x[i] /= b.x[i]; return a; }
static inline fz_v fz_max(fz_v a, fz_v b) {
    for (int i = 0; i < FZ_VW; i++) a.x[i] = a.x[i] > b.x[i] ? a.x[i] : b.x[i];
    return a;
}
static inline float fz_hsum(fz_v a) { float s = 0.0f; for (int i = 0; i < FZ_VW; i++) s += a.x[i]; return s; }
static inline float fz_hmax(fz_v a) {
    float m = a.x[0];
    for (int i = 1; i < FZ_VW; i++) m = a.x[i] > m ? a.x[i] : m;
    return m;
}
/* lanes whose key limit lim[lane] <= j (key j excluded) become -inf */
static inline fz_v fz_mask_lim(fz_v a, const int32_t *lim, int j) {
    for (int i = 0; i < FZ_VW; i++) if (lim[i] <= j) a.x[i] = -INFINITY;
    return a;
}
/* lanes whose key index j0 + lane is >= lim become -inf */
static inline fz_v fz_mask_iota(fz_v a, int j0, int lim) {
    for (int i = 0; i < FZ_VW; i++) if (j0 + i >= lim) a.x[i] = -INFINITY;
    return a;
}

/* 2^x: x = n + f with |f| <= 1/2, 2^f by its Taylor series to degree 7 (relative error < 1e-8 before
 * rounding), times 2^n. x <= -127 (and -inf) gives exactly 0. */
static inline float fz_exp2_1(float x) {
    if (!(x > -127.0f)) return x != x ? x : 0.0f;
    if (x > 127.0f) x = 127.0f;
    const float n = floorf(x + 0.5f), f = x - n;
    float p = 1.5252733e-05f;                    /* ln2^7 / 7! */
    p = p * f + 1.5403530e-04f;                  /* ln2^6 / 6! */
    p = p * f + 1.3333558e-03f;
    p = p * f + 9.6181291e-03f;
    p = p * f + 5.5504109e-02f;
    p = p * f + 2.4022651e-01f;
    p = p * f + 6.9314718e-01f;
    p = p * f + 1.0f;
    return ldexpf(p, (int)n);
}
static inline fz_v fz_exp2(fz_v a) { for (int i = 0; i < FZ_VW; i++) a.x[i] = fz_exp2_1(a.x[i]); return a; }

#include "kernels/scalar/kernels_impl.h"
