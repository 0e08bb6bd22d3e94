/*
 * optim_kernels.h — internal: the per-ISA inner loops of the Adam update (optim.c picks one at run time).
 *
 * Every version computes, for i in [lo, hi), with separate IEEE multiplies, adds, a square root and a
 * divide (no FMA contraction, no reciprocal approximations):
 *
 *   m[i] = b1·m[i] + (1-b1)·g[i]
 *   v[i] = b2·v[i] + (1-b2)·(g[i]·g[i])
 *   p[i] = p[i] - (step·m[i]) / (sqrt(v[i])·vscale + eps)
 *
 * so all of them give bitwise-identical results, whatever the ISA and wherever the blocks start.
 * g == NULL means a zero gradient (the update then reads no gradient memory).
 */
#ifndef ATTN_OPTIM_KERNELS_H
#define ATTN_OPTIM_KERNELS_H

#include <stdint.h>

typedef void (*attn__adam_block_fn)(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                                    float b1, float b2, float eps, float step, float vscale);

#ifdef ATTN_HAVE_AVX512
void attn__adam_block_avx512(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                             float b1, float b2, float eps, float step, float vscale);
#endif
#ifdef ATTN_HAVE_AVX2
void attn__adam_block_avx2(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                           float b1, float b2, float eps, float step, float vscale);
#endif

#endif /* ATTN_OPTIM_KERNELS_H */
