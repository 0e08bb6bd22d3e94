/*
 * adam_avx512.c — the Adam update's inner loop with AVX-512F: one pass over p, g, m, v, 16 floats per
 * vector, the ragged tail under a mask (no scalar tail). Same IEEE operations as the portable loop in
 * optim.c (see optim_kernels.h), so the result is bitwise identical. Compiled with -mavx512f and run only
 * when the CPU has it.
 */
#include "layers/optim_kernels.h"

#include <immintrin.h>

void attn__adam_block_avx512(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                             float b1, float b2, float eps, float step, float vscale) {
    const __m512 vb1 = _mm512_set1_ps(b1), vb2 = _mm512_set1_ps(b2), vc1 = _mm512_set1_ps(1.0f - b1),
                 vc2 = _mm512_set1_ps(1.0f - b2), veps = _mm512_set1_ps(eps), vstep = _mm512_set1_ps(step),
                 vvs = _mm512_set1_ps(vscale), zero = _mm512_setzero_ps();
    for (int64_t i = lo; i < hi; i += 16) {
        const __mmask16 k = hi - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hi - i)) - 1);
        const __m512 gi = g ? _mm512_maskz_loadu_ps(k, g + i) : zero;
        const __m512 mi = _mm512_add_ps(_mm512_mul_ps(vb1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(vc1, gi));
        const __m512 vi = _mm512_add_ps(_mm512_mul_ps(vb2, _mm512_maskz_loadu_ps(k, v + i)),
                                        _mm512_mul_ps(vc2, _mm512_mul_ps(gi, gi)));
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(v + i, k, vi);
        const __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), vvs), veps);
        const __m512 upd = _mm512_div_ps(_mm512_mul_ps(vstep, mi), den);
        _mm512_mask_storeu_ps(p + i, k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + i), upd));
    }
}
