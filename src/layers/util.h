/*
 * util.h — small helpers shared by the files of src/layers: size checks and an OpenMP pragma that
 * disappears (without an unknown-pragma warning) when the library is built without OpenMP.
 */
#ifndef ATTN_LAYERS_UTIL_H
#define ATTN_LAYERS_UTIL_H

#include "internal.h"

#include <limits.h>
#include <string.h>

#ifdef _OPENMP
#define ATTN_OMP(x) _Pragma(#x)
#else
#define ATTN_OMP(x)
#endif

/* 1 when every size is in [1, ATTN_MAX_DIM]. */
static inline int attn__dim_ok(int n) { return n >= 1 && n <= ATTN_MAX_DIM; }

/* 1 when a·b fits in an int (BLAS takes int dimensions). */
static inline int attn__prod_fits_int(int a, int b) { return (int64_t)a * b <= INT_MAX; }

/* The patch embedding's kernel K for patch size P (attn_patch_embed_bind_kernel): ATTN_ERR_SIZE when either is
 * not a size, ATTN_ERR_SHAPE unless P <= K <= 3P with K - P even (padding (K-P)/2 reaches at most into the
 * neighbouring patches). */
static inline attn_status attn__patch_kernel_check(int P, int K) {
    if (!attn__dim_ok(P) || !attn__dim_ok(K)) return ATTN_ERR_SIZE;
    return K < P || (K - P) % 2 != 0 || K > 3 * (int64_t)P ? ATTN_ERR_SHAPE : ATTN_OK;
}

/* A model's attention compute as its checkpoints write it ("f32", "bf16"), and back: a missing value (older
 * checkpoints) is F32; 0 for anything else. */
static inline const char *attn__compute_name(attn_dtype c) { return c == ATTN_DTYPE_BF16 ? "bf16" : "f32"; }
static inline int attn__compute_parse(const char *s, attn_dtype *c) {
    if (!s || strcmp(s, "f32") == 0) { *c = ATTN_DTYPE_F32; return 1; }
    if (strcmp(s, "bf16") == 0) { *c = ATTN_DTYPE_BF16; return 1; }
    return 0;
}

/* Threads for an elementwise pass over n items: 1 below a size where a fork costs more than it saves. */
static inline int attn__threads_for(size_t n) {
    if (n < 32768) return 1;
    int nth = attn_get_num_threads();
    return nth < 1 ? 1 : nth;
}

/* ---------------------------------------------------------------------------------------------------
 * Layer caches: n blocks of sizes[i] bytes, each on a 64-byte boundary, from a caller's pointer of any
 * alignment. attn__cache_plan gives each block's offset from the aligned start and the bytes a caller
 * must provide (the blocks, plus the slack to align its pointer); attn__cache_base aligns the pointer.
 */
#define ATTN__CACHE_ALIGN 64

static inline size_t attn__cache_round(size_t n) {
    return (n + (ATTN__CACHE_ALIGN - 1)) & ~(size_t)(ATTN__CACHE_ALIGN - 1);
}

static inline attn_status attn__cache_plan(const size_t *sizes, int n, size_t *off, size_t *total) {
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] > SIZE_MAX / 4 || at > SIZE_MAX / 4) return ATTN_ERR_SIZE;
        if (off) off[i] = at;
        at += attn__cache_round(sizes[i]);
    }
    *total = at + ATTN__CACHE_ALIGN;
    return ATTN_OK;
}

static inline char *attn__cache_base(void *cache) {
    uintptr_t u = ((uintptr_t)cache + (ATTN__CACHE_ALIGN - 1)) & ~(uintptr_t)(ATTN__CACHE_ALIGN - 1);
    return (char *)u;
}

/* Xavier-uniform fill of a (fan_out, fan_in) weight: U(±sqrt(6 / (fan_in + fan_out))). */
static inline void attn__xavier_uniform(attn_rng *r, float *w, int fan_out, int fan_in) {
    float a = sqrtf(6.0f / (float)(fan_in + fan_out));
    attn_rng_fill_uniform(r, w, (size_t)fan_out * fan_in, -a, a);
}

/* The raw forms of the Transformer's layers (src/layers/transformer_layers.c), on parameter pointers and
 * caller-carved activations: the layers' calls wrap them, and the Transformer's blocks, which carve
 * every activation of a block from one cache, call them directly.
 *   ffn:      y (N,D)  h (N,F) saved (after the ReLU);  backward: dh (N,F) scratch, overwritten.
 *   add&norm: z (N,C) mean rstd (N) saved; mask (N·C) the dropout's keep bytes, or NULL to draw them
 *             from (p, seed); backward: dz (N,C) scratch, overwritten.
 * They check nothing but what the layers do not (callers validated sizes). */
attn_status attn__ffn_forward(float *y, float *h, const float *x, const float *w1, const float *b1,
                              const float *w2, const float *b2, int N, int D, int F);
attn_status attn__ffn_backward(float *dx, float *dw1, float *db1, float *dw2, float *db2, float *dh,
                               const float *dy, const float *x, const float *h, const float *w1,
                               const float *w2, int N, int D, int F);
void        attn__dropout_mask(uint8_t *mask, size_t n, float p, uint64_t seed);
attn_status attn__addnorm_forward(float *y, float *z, float *mean, float *rstd, const float *x, const float *s,
                                  const float *gamma, const float *beta, int N, int C, float p, uint64_t seed,
                                  const uint8_t *mask);
attn_status attn__addnorm_backward(float *dx, float *ds, float *dgamma, float *dbeta, float *dz, const float *dy,
                                   const float *z, const float *mean, const float *rstd, const float *gamma,
                                   int N, int C, float p, uint64_t seed, const uint8_t *mask);
/* LayerNorm on raw pointers (basic.c): y (N,C) mean rstd (N) written; backward accumulates. */
attn_status attn__layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                    const float *beta, int N, int C, float eps);
attn_status attn__layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                     const float *mean, const float *rstd, const float *gamma, int N, int C);

#endif /* ATTN_LAYERS_UTIL_H */
