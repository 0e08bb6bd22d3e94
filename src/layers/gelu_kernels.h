/*
 * gelu_kernels.h — internal: GELU's elementwise loops, written once and compiled per kernel path (the
 * portable one in src/ref/layers_ref.c, src/kernels/avx2/gelu_avx2.c with -mavx2, avx512/gelu_avx512.c
 * with -mavx512f), each path's table pointing at its own (attn_gelu_forward/backward pick the default
 * path's). The loops only widen: the same IEEE operations in the same order (ISO C: no FMA contraction),
 * so every path gives the same bits.
 *
 *   y = x Φ(x) = 0.5 x (1 + erf(x / √2));  dx += dy · (Φ(x) + x φ(x)),  φ(x) = exp(-x²/2) / √(2π).
 *
 * erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7): for z = |x|/√2, t = 1/(1 + 0.3275911 z),
 * erfc(z) = t·(a1 + t·(a2 + ...)) · exp(-z²), so Φ(x) = 1 - erfc(z)/2 for x >= 0 and erfc(z)/2 below,
 * with no cancellation on the negative side; the same exp(-z²) gives φ. exp is a Cephes-style polynomial
 * on float, so the loops vectorize (libm's erf in double took a third of a ViT's training step).
 */
#ifndef ATTN_GELU_KERNELS_H
#define ATTN_GELU_KERNELS_H

#include "util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef ATTN_HAVE_AVX2
void attn__gelu_forward_avx2(float *y, const float *x, int64_t n);
void attn__gelu_backward_avx2(float *dx, const float *dy, const float *x, int64_t n);
#endif
#ifdef ATTN_HAVE_AVX512
void attn__gelu_forward_avx512(float *y, const float *x, int64_t n);
void attn__gelu_backward_avx512(float *dx, const float *dy, const float *x, int64_t n);
#endif

static inline float exp_nonpos(float a) {                  /* e^a for -87 <= a <= 0 */
    const float n = (float)(int32_t)(a * 1.44269504088896341f - 0.5f);   /* round (a <= 0): no libm call */
    const float r = a - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;                        /* 2^n */
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return e * two_n;
}

/* Φ(x) and φ(x) for one x, without a branch or a comparison (GCC will not if-convert a float comparison
 * under -ftrapping-math, and a loop with one does not vectorize): min(z, 9.3) = (z + 9.3 - |z - 9.3|)/2
 * keeps exp's argument above -87 (erfc(9.3) is 0 in float), and copysign picks the side. */
static inline void normal_cdf_pdf(float x, float *cdf, float *pdf) {
    float z = fabsf(x) * 0.70710678118654752f;
    z = 0.5f * (z + 9.3f - fabsf(z - 9.3f));
    const float t = 1.0f / (1.0f + 0.3275911f * z);
    const float e = exp_nonpos(-z * z);
    const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
                                                                                       t * 1.061405429f))));
    const float half_erfc = 0.5f * poly * e;
    *cdf = 0.5f + copysignf(0.5f - half_erfc, x);
    *pdf = e * 0.39894228040143267794f;
}

/* The two loops, for the includer to wrap in its path's named functions. */
static inline void gelu_forward_loop(float *y, const float *x, int64_t n) {
    ATTN_OMP(omp simd)
    for (int64_t i = 0; i < n; i++) {
        float cdf, pdf;
        const float v = x[i];
        normal_cdf_pdf(v, &cdf, &pdf);
        y[i] = v * cdf;
    }
}

static inline void gelu_backward_loop(float *dx, const float *dy, const float *x, int64_t n) {
    ATTN_OMP(omp simd)
    for (int64_t i = 0; i < n; i++) {
        float cdf, pdf;
        const float v = x[i];
        normal_cdf_pdf(v, &cdf, &pdf);
        dx[i] += dy[i] * (cdf + v * pdf);
    }
}

#endif /* ATTN_GELU_KERNELS_H */
