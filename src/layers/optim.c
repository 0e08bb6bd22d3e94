/*
 * optim.c — Adam (Keras and PyTorch forms) and gradient clipping by global norm.
 *
 * Adam is elementwise: each thread takes a contiguous block of parameters and nothing is reduced, so
 * the result is bitwise identical for any thread count (and the vector and scalar remainders compute the
 * same IEEE operations). The step-dependent scalars (decayed learning rate, bias corrections) are
 * computed once per step in double.
 *
 * Clipping sums squares in double over a fixed set of chunks (independent of the thread count), then
 * adds the chunk sums in order: deterministic.
 */
#include "util.h"

#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

attn_status attn_adam_init(attn_adam *a, size_t n, float lr) {
    if (!a) return ATTN_ERR_NULL;
    *a = (attn_adam){0};
    if (n == 0 || n > (SIZE_MAX / 2) / sizeof(float) || n > (size_t)INT64_MAX / 2) return ATTN_ERR_SIZE;
    if (!isfinite(lr) || lr < 0.0f) return ATTN_ERR_ARG;
    float *mv = calloc(2 * n, sizeof(float));          /* m (n), then v (n): one allocation */
    if (!mv) return ATTN_ERR_NOMEM;
    a->n = n;
    a->lr = lr;
    a->beta1 = 0.9f;
    a->beta2 = 0.999f;
    a->eps = 1e-8f;
    a->decay = 0.0f;
    a->keras_eps = 0;
    a->t = 0;
    a->m = mv;
    a->v = mv + n;
    return ATTN_OK;
}

void attn_adam_free(attn_adam *a) {
    if (!a) return;
    free(a->m);                                        /* v lives in the same allocation */
    *a = (attn_adam){0};
}

/* The elementwise update of elements [lo, hi). GCC does not vectorize sqrtf without -fno-math-errno
 * (which the library does not assume), so the x86 path spells out the vector loop; every element sees
 * the same IEEE operations in the vector body and the scalar tail (no FMA contraction in ISO C mode),
 * so the result does not depend on where the blocks start. */
static void adam_block(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                       int64_t lo, int64_t hi, float b1, float b2, float eps, float step, float vscale) {
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    int64_t i = lo;
#if defined(__AVX__)
    const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2), vc1 = _mm256_set1_ps(c1),
                 vc2 = _mm256_set1_ps(c2), veps = _mm256_set1_ps(eps), vstep = _mm256_set1_ps(step),
                 vvs = _mm256_set1_ps(vscale);
    for (; i + 8 <= hi; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(vc1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)),
                                  _mm256_mul_ps(vc2, _mm256_mul_ps(gi, gi)));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), vvs), veps);
        __m256 upd = _mm256_div_ps(_mm256_mul_ps(vstep, mi), den);
        _mm256_storeu_ps(p + i, _mm256_sub_ps(_mm256_loadu_ps(p + i), upd));
    }
#elif defined(__SSE2__)
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vc1 = _mm_set1_ps(c1), vc2 = _mm_set1_ps(c2),
                 veps = _mm_set1_ps(eps), vstep = _mm_set1_ps(step), vvs = _mm_set1_ps(vscale);
    for (; i + 4 <= hi; i += 4) {
        __m128 gi = _mm_loadu_ps(g + i);
        __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vc1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)), _mm_mul_ps(vc2, _mm_mul_ps(gi, gi)));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 den = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), vvs), veps);
        __m128 upd = _mm_div_ps(_mm_mul_ps(vstep, mi), den);
        _mm_storeu_ps(p + i, _mm_sub_ps(_mm_loadu_ps(p + i), upd));
    }
#endif
    for (; i < hi; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] -= (step * mi) / (sqrtf(vi) * vscale + eps);
    }
}

#define ATTN_ADAM_BLOCK 4096

/* Blocks of ATTN_ADAM_BLOCK parameters, shared out statically among the threads. */
static void adam_update(float *p, const float *g, float *m, float *v, int64_t n,
                        float b1, float b2, float eps, float step, float vscale) {
    const int64_t nblocks = (n + ATTN_ADAM_BLOCK - 1) / ATTN_ADAM_BLOCK;
    const int nth = attn__threads_for((size_t)n);
    (void)nth;
    ATTN_OMP(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t lo = blk * ATTN_ADAM_BLOCK, hi = lo + ATTN_ADAM_BLOCK < n ? lo + ATTN_ADAM_BLOCK : n;
        adam_block(p, g, m, v, lo, hi, b1, b2, eps, step, vscale);
    }
}

attn_status attn_adam_step(attn_adam *a, float *params, const float *grads) {
    if (!a || !params || !grads || !a->m || !a->v) return ATTN_ERR_NULL;
    if (a->n == 0 || a->n > (size_t)INT64_MAX / 2) return ATTN_ERR_SIZE;
    if (!isfinite(a->lr) || a->lr < 0.0f || !(a->beta1 >= 0.0f && a->beta1 < 1.0f) ||
        !(a->beta2 >= 0.0f && a->beta2 < 1.0f) || !(a->eps >= 0.0f) || isinf(a->eps) ||
        !(a->decay >= 0.0f) || isinf(a->decay) || a->t < 0 || a->t == INT64_MAX)
        return ATTN_ERR_ARG;

    a->t++;
    const double t = (double)a->t;
    const double lr_t = (double)a->lr / (1.0 + (double)a->decay * (t - 1.0));
    const double bc1 = 1.0 - pow((double)a->beta1, t);
    const double bc2 = 1.0 - pow((double)a->beta2, t);

    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
    float step, vscale;
    if (a->keras_eps) {
        /* p -= lr_t · sqrt(bc2)/bc1 · m / (sqrt(v) + eps) */
        step = (float)(lr_t * sqrt(bc2) / bc1);
        vscale = 1.0f;
    } else {
        /* p -= lr_t/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), as torch.optim.Adam computes it */
        step = (float)(lr_t / bc1);
        vscale = (float)(1.0 / sqrt(bc2));
    }

    adam_update(params, grads, a->m, a->v, (int64_t)a->n, b1, b2, eps, step, vscale);
    return ATTN_OK;
}

#define ATTN_CLIP_CHUNKS 64

attn_status attn_clip_grad_norm(float *grads, size_t n, float max_norm, float *norm) {
    if (!grads) return ATTN_ERR_NULL;
    if (n == 0 || n > (size_t)INT64_MAX / 2) return ATTN_ERR_SIZE;
    if (!(max_norm > 0.0f) || isinf(max_norm)) return ATTN_ERR_ARG;

    /* pass 1: Σ g² per chunk in double (chunk boundaries depend on n only), then the chunks in order */
    double part[ATTN_CLIP_CHUNKS];
    const int64_t nn = (int64_t)n;
    const int64_t chunk = (nn + ATTN_CLIP_CHUNKS - 1) / ATTN_CLIP_CHUNKS;
    const int nth = attn__threads_for(n);
    (void)nth;
    ATTN_OMP(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
    for (int c = 0; c < ATTN_CLIP_CHUNKS; c++) {
        int64_t lo = c * chunk, hi = lo + chunk < nn ? lo + chunk : nn;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (double)grads[i + j] * grads[i + j];
        for (; i < hi; i++) acc[0] += (double)grads[i] * grads[i];
        part[c] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    double sum = 0.0;
    for (int c = 0; c < ATTN_CLIP_CHUNKS; c++) sum += part[c];
    const double total = sqrt(sum);
    if (norm) *norm = (float)total;

    /* pass 2: scale when over the limit, as torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6) */
    const double coef = (double)max_norm / (total + 1e-6);
    if (coef < 1.0) {
        const float s = (float)coef;
        ATTN_OMP(omp parallel for simd schedule(static) num_threads(nth) if(nth > 1))
        for (int64_t i = 0; i < nn; i++) grads[i] *= s;
    }
    return ATTN_OK;
}
