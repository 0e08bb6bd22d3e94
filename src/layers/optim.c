/*
 * optim.c — Adam (Keras and PyTorch forms, and AdamW's decoupled weight decay) and gradient clipping by
 * global norm.
 *
 * Adam is elementwise: each thread takes a contiguous block of parameters and nothing is reduced, so
 * the result is bitwise identical for any thread count. The inner loop is one pass over p, g, m, v, in
 * the widest vector form the CPU runs (src/kernels/avx512/adam_avx512.c, src/kernels/avx2/adam_avx2.c,
 * or the portable loop here), all computing the same IEEE operations (optim_kernels.h), so the ISA never
 * changes a bit either. The step-dependent scalars (decayed learning rate, bias corrections) are computed
 * once per step in double.
 *
 * The update runs with flush-to-zero and denormals-are-zero set on x86 (see adam_update): a subnormal
 * moment or gradient counts as zero, as in TensorFlow's (Keras') CPU kernels.
 *
 * Clipping sums squares in double over a fixed set of chunks (independent of the thread count), then
 * adds the chunk sums in order: deterministic.
 */
#include "util.h"
#include "optim_kernels.h"

#include <stdlib.h>

#if defined(__SSE2__) && (defined(__x86_64__) || defined(__i386__))
#include <xmmintrin.h>
#define ATTN_ADAM_FTZ 1
#else
#define ATTN_ADAM_FTZ 0
#endif

attn_status attn_adam_alloc(attn_adam *a, size_t n, float lr) {
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

/* The loop of the kernel path in force (the dispatch table's: AVX-512 or AVX2 when the CPU has it, the
 * portable loop for the scalar and reference paths). All give the same bits (optim_kernels.h), so the
 * choice never changes a result; test_rng checks it. */
static attn__adam_block_fn adam_pick(void) { return attn__kernels(attn_get_isa())->adam_block; }

#define ATTN_ADAM_BLOCK 4096

/* Blocks of ATTN_ADAM_BLOCK parameters, shared out statically among the threads. Each thread runs its
 * blocks with flush-to-zero and denormals-are-zero set (and restores its MXCSR after): the first moment of
 * an embedding row that sees no gradient for ~800 steps decays (×0.9 per step) into the subnormal range,
 * where every multiply takes a microcode assist (~20× slower). TensorFlow runs its CPU kernels, Keras'
 * Adam included, with the same flags, so this is also the reference behaviour; the flags are the same for
 * every path and thread, so the results stay bitwise identical across ISAs and thread counts. */
static void adam_update(float *p, const float *g, float *m, float *v, int64_t n,
                        float b1, float b2, float eps, float step, float vscale) {
    const attn__adam_block_fn adam_block = adam_pick();
    const int64_t nblocks = (n + ATTN_ADAM_BLOCK - 1) / ATTN_ADAM_BLOCK;
    const int nth = attn__threads_for((size_t)n);
    (void)nth;
    ATTN_OMP(omp parallel num_threads(nth) if(nth > 1))
    {
#if ATTN_ADAM_FTZ
        const unsigned csr = _mm_getcsr();
        _mm_setcsr(csr | 0x8040u);                     /* FTZ (bit 15) | DAZ (bit 6) */
#endif
        ATTN_OMP(omp for schedule(static))
        for (int64_t blk = 0; blk < nblocks; blk++) {
            int64_t lo = blk * ATTN_ADAM_BLOCK, hi = lo + ATTN_ADAM_BLOCK < n ? lo + ATTN_ADAM_BLOCK : n;
            adam_block(p, g, m, v, lo, hi, b1, b2, eps, step, vscale);
        }
#if ATTN_ADAM_FTZ
        _mm_setcsr(csr);
#endif
    }
}

attn_status attn_adam_step(attn_adam *a, float *params, const float *grads) {
    if (!a || !params || !grads || !a->m || !a->v) return ATTN_ERR_NULL;
    if (a->n == 0 || a->n > (size_t)INT64_MAX / 2) return ATTN_ERR_SIZE;
    if (!isfinite(a->lr) || a->lr < 0.0f || !(a->beta1 >= 0.0f && a->beta1 < 1.0f) ||
        !(a->beta2 >= 0.0f && a->beta2 < 1.0f) || !(a->eps >= 0.0f) || isinf(a->eps) ||
        !(a->decay >= 0.0f) || isinf(a->decay) || a->t < 0 || a->t == INT64_MAX ||
        !(a->weight_decay >= 0.0f) || isinf(a->weight_decay))
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

    if (a->weight_decay > 0.0f) {
        /* AdamW: p ← p (1 - lr_t · wd) before the Adam update, as torch.optim.AdamW */
        const float keep = (float)(1.0 - lr_t * (double)a->weight_decay);
        const int64_t nn = (int64_t)a->n;
        const int nth = attn__threads_for(a->n);
        (void)nth;
        ATTN_OMP(omp parallel for simd schedule(static) num_threads(nth) if(nth > 1))
        for (int64_t i = 0; i < nn; i++) params[i] *= keep;
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
