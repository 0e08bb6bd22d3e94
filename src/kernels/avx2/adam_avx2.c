/*
 * adam_avx2.c — the Adam update's inner loop with AVX2: one pass over p, g, m, v, 8 floats per vector,
 * the ragged tail under a mask (no scalar tail). Same IEEE operations as the portable loop in optim.c
 * (see optim_kernels.h; no FMA), so the result is bitwise identical. Run only when the CPU has AVX2.
 */
#include "layers/optim_kernels.h"

#include <immintrin.h>

void attn__adam_block_avx2(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                           float b1, float b2, float eps, float step, float vscale) {
    const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), vc1 = _mm256_set1_ps(1.0f - b1),
                 vc2 = _mm256_set1_ps(1.0f - b2), veps = _mm256_set1_ps(eps), vstep = _mm256_set1_ps(step),
                 vvs = _mm256_set1_ps(vscale), zero = _mm256_setzero_ps();
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t i = lo; i < hi; i += 8) {
        const int n = hi - i >= 8 ? 8 : (int)(hi - i);
        const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);     /* lanes < n */
        const __m256 gi = g ? _mm256_maskload_ps(g + i, k) : zero;
        const __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_maskload_ps(m + i, k)), _mm256_mul_ps(vc1, gi));
        const __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_maskload_ps(v + i, k)),
                                        _mm256_mul_ps(vc2, _mm256_mul_ps(gi, gi)));
        _mm256_maskstore_ps(m + i, k, mi);
        _mm256_maskstore_ps(v + i, k, vi);
        const __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), vvs), veps);
        const __m256 upd = _mm256_div_ps(_mm256_mul_ps(vstep, mi), den);
        _mm256_maskstore_ps(p + i, k, _mm256_sub_ps(_mm256_maskload_ps(p + i, k), upd));
    }
}
