/*
 * exp2_avx512.h — the AVX-512 exp2, the one polynomial of the AVX-512 path and of the AMX path built on
 * it (their softmax, GRU gates and tanh). Included by files compiled with -mavx512f.
 */
#ifndef ATTN_EXP2_AVX512_H
#define ATTN_EXP2_AVX512_H

#include <immintrin.h>

/* 2^x: x = n + f, |f| <= 1/2, 2^f by its degree-7 Taylor series, scaled by 2^n with vscalefps. x below
 * -125 (and -inf) gives exactly 0 without a subnormal in between: the scaling runs on x clamped to -125
 * (the product stays normal) and the lanes below are zeroed by the mask of the same instruction — a
 * subnormal result costs a microcode assist per vector, and masked keys are -inf on every row of a short
 * key block. NaN stays NaN (the comparison is unordered-true, max/min return their second operand). */
static inline __m512 attn__exp2_avx512(__m512 x) {
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-125.0f), _CMP_NLT_UQ);
    x = _mm512_max_ps(_mm512_set1_ps(-125.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(128.0f), x);
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.5252733e-05f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530e-04f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

#endif /* ATTN_EXP2_AVX512_H */
