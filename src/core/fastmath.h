/*
 * fastmath.h — exp, tanh and the logistic sigmoid in float for the recurrent and attention loops
 * of the seq2seq model (src/layers/gru.c, src/models/seq2seq.c), where libm's tanhf and expf were most
 * of the time. Branch-free enough for the compiler to vectorize; no -ffast-math needed.
 *   expf:    Cody–Waite range reduction x = n·ln2 + r, a degree-6 polynomial for e^r, 2^n from the
 *            exponent bits; within 2 ulp on [-87, 88] (inputs are clamped there).
 *   tanh:    odd Taylor polynomial to x^13 for |x| < 0.5 (error < 5e-8), else 1 - 2/(e^{2|x|} + 1);
 *            within about 1e-7 absolute everywhere.
 *   sigmoid: 1 / (1 + e^{-x}).
 * The loops that call these vectorize only when GCC may assume floating-point operations do not trap
 * (the select in tanh would otherwise keep its division behind a branch): files that include this
 * header get -fno-trapping-math through the pragma below. It changes no result; we never read the
 * floating-point exception flags. Internal, never installed.
 */
#ifndef ATTN_FRA_FASTMATH_H
#define ATTN_FRA_FASTMATH_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

/* The loops around these are compiled for AVX-512, AVX2 and the baseline and chosen when the program
 * loads (GCC function multiversioning): the same IEEE operations in every version (no contraction into
 * FMA under -std=c11), so the same results on every machine. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ATTN_FRA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ATTN_FRA_CLONES
#endif

static inline float attn__fexp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f;   /* round to nearest by the 1.5·2^23 trick */
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;                      /* ln 2 in two parts */
    r = r + n * 2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

static inline float attn__ftanh(float x) {
    float a = x < 0 ? -x : x;
    float z = x * x;
    /* small: x (1 - x²/3 + 2x⁴/15 - 17x⁶/315 + 62x⁸/2835 - 1382x¹⁰/155925 + 21844x¹²/6081075) */
    float q = 3.59212159e-3f;
    q = q * z - 8.86323552e-3f;
    q = q * z + 2.18694885e-2f;
    q = q * z - 5.39682540e-2f;
    q = q * z + 1.33333333e-1f;
    q = q * z - 3.33333333e-1f;
    float small = x + x * z * q;
    float big = 1.0f - 2.0f / (attn__fexp(2.0f * a) + 1.0f);
    big = x < 0 ? -big : big;
    return a < 0.5f ? small : big;
}

static inline float attn__fsigmoid(float x) { return 1.0f / (1.0f + attn__fexp(-x)); }

#endif /* ATTN_FRA_FASTMATH_H */
