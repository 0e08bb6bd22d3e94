/*
 * transformer_layers.c — the Transformer's layers (d2l's chapter): sinusoidal positional encoding (no
 * parameters), the position-wise feed-forward and add & norm, each with the layer lifecycle of
 * attn/layers.h (n_params, bind, init_weights, cache_bytes, forward, backward).
 *
 * The raw forms (attn__ffn_*, attn__addnorm_*, declared in util.h) work on parameter pointers and
 * activations the caller carved; the layers wrap them with a cache, and the Transformer's blocks call them
 * directly (a block carves every activation it saves from one cache of its own).
 */
#include "util.h"

#include <string.h>

#define LN_EPS 1e-5f

/* ---------------------------------------------------------------------------------------------------
 * Positional encoding.
 */
attn_status attn_posenc_table(float *P, int T, int D) {
    if (!P) return ATTN_ERR_NULL;
    if (!attn__dim_ok(T) || !attn__dim_ok(D)) return ATTN_ERR_SIZE;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i += 2) {
            /* d2l computes t / 10000^(i/D) in float32 */
            const float a = (float)t / powf(10000.0f, (float)i / (float)D);
            P[(size_t)t * D + i] = sinf(a);
            if (i + 1 < D) P[(size_t)t * D + i + 1] = cosf(a);
        }
    return ATTN_OK;
}

attn_status attn_posenc_forward(float *y, const float *x, const float *P, float scale,
                                int B, int T, int D, float dropout, uint64_t seed) {
    if (!y || !x || !P) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(D)) return ATTN_ERR_SIZE;
    if (!(dropout >= 0.0f && dropout < 1.0f)) return ATTN_ERR_ARG;
    const float keep = 1.0f / (1.0f - dropout);
    const size_t TD = (size_t)T * D;
    for (size_t b = 0; b < (size_t)B; b++)
        for (size_t i = 0; i < TD; i++) {
            const size_t k = b * TD + i;
            const float v = scale * x[k] + P[i];
            y[k] = dropout <= 0.0f ? v : attn__dropout_keep(seed, k, dropout) ? v * keep : 0.0f;
        }
    return ATTN_OK;
}

attn_status attn_posenc_backward(float *dx, const float *dy, float scale,
                                 int B, int T, int D, float dropout, uint64_t seed) {
    if (!dx || !dy) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(D)) return ATTN_ERR_SIZE;
    if (!(dropout >= 0.0f && dropout < 1.0f)) return ATTN_ERR_ARG;
    const float keep = scale / (1.0f - dropout);
    const size_t n = (size_t)B * T * D;
    for (size_t k = 0; k < n; k++)
        if (dropout <= 0.0f) dx[k] += scale * dy[k];
        else if (attn__dropout_keep(seed, k, dropout)) dx[k] += keep * dy[k];
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Position-wise feed-forward: the raw passes, then the layer. Its cache:
 *   [ up to 64 bytes to align the caller's pointer ]  h (N,F) saved by the forward   dh (N,F) scratch
 */
attn_status attn__ffn_forward(float *y, float *h, const float *x, const float *w1, const float *b1,
                              const float *w2, const float *b2, int N, int D, int F) {
    if (!y || !h || !x || !w1 || !w2) return ATTN_ERR_NULL;
    attn_status st = attn_linear_forward(h, x, w1, b1, N, D, F);         /* (N,F) */
    if (st != ATTN_OK) return st;
    const size_t n = (size_t)N * F;
    for (size_t i = 0; i < n; i++) h[i] = h[i] > 0.0f ? h[i] : 0.0f;   /* ReLU */
    return attn_linear_forward(y, h, w2, b2, N, F, D);                  /* (N,D) */
}

attn_status attn__ffn_backward(float *dx, float *dw1, float *db1, float *dw2, float *db2, float *dh,
                               const float *dy, const float *x, const float *h, const float *w1,
                               const float *w2, int N, int D, int F) {
    if (!dw1 || !dw2 || !dh || !dy || !x || !h || !w1 || !w2) return ATTN_ERR_NULL;
    if (!attn__dim_ok(N) || !attn__dim_ok(F)) return ATTN_ERR_SIZE;
    const size_t n = (size_t)N * F;
    memset(dh, 0, sizeof(float) * n);
    attn_status st = attn_linear_backward(dh, dw2, db2, dy, h, w2, N, F, D);
    if (st != ATTN_OK) return st;
    for (size_t i = 0; i < n; i++) dh[i] = h[i] > 0.0f ? dh[i] : 0.0f;  /* through the ReLU (branch-free) */
    return attn_linear_backward(dx, dw1, db1, dh, x, w1, N, D, F);
}

static int ffn_sizes_ok(int D, int F) {
    return attn__dim_ok(D) && attn__dim_ok(F) && attn__prod_fits_int(D, F);
}

size_t attn_ffn_n_params(int D, int F) {
    if (!ffn_sizes_ok(D, F)) return 0;
    return 2 * (size_t)D * F + (size_t)F + (size_t)D;
}

attn_status attn_ffn_bind(attn_ffn *l, int D, int F, float *params, float *grads) {
    if (!l || !params) return ATTN_ERR_NULL;
    if (!ffn_sizes_ok(D, F)) return ATTN_ERR_SIZE;
    *l = (attn_ffn){0};
    l->D = D;
    l->F = F;
    const size_t o_b1 = (size_t)F * D, o_w2 = o_b1 + F, o_b2 = o_w2 + (size_t)D * F;
    l->w1 = params; l->b1 = params + o_b1; l->w2 = params + o_w2; l->b2 = params + o_b2;
    if (grads) {
        l->dw1 = grads; l->db1 = grads + o_b1; l->dw2 = grads + o_w2; l->db2 = grads + o_b2;
    }
    l->params = params;
    l->grads = grads;
    l->n_params = attn_ffn_n_params(D, F);
    return ATTN_OK;
}

attn_status attn_ffn_init_weights(attn_ffn *l, attn_rng *rng) {
    if (!l || !rng || !l->w1 || !l->b1 || !l->w2 || !l->b2) return ATTN_ERR_NULL;
    const int D = l->D, F = l->F;
    attn__xavier_uniform(rng, l->w1, F, D);
    attn_rng_fill_uniform(rng, l->b1, (size_t)F, -1.0f / sqrtf((float)D), 1.0f / sqrtf((float)D));
    attn__xavier_uniform(rng, l->w2, D, F);
    attn_rng_fill_uniform(rng, l->b2, (size_t)D, -1.0f / sqrtf((float)F), 1.0f / sqrtf((float)F));
    return ATTN_OK;
}

static attn_status ffn_plan(const attn_ffn *l, int N, size_t off[2], size_t *total) {
    if (!l || !l->w1 || !l->w2) return ATTN_ERR_NULL;
    if (!ffn_sizes_ok(l->D, l->F) || !attn__dim_ok(N)) return ATTN_ERR_SIZE;
    if (!attn__prod_fits_int(N, l->F > l->D ? l->F : l->D)) return ATTN_ERR_SIZE;
    const size_t h = sizeof(float) * (size_t)N * l->F;
    const size_t sizes[2] = {h, h};
    return attn__cache_plan(sizes, 2, off, total);
}

attn_status attn_ffn_cache_bytes(const attn_ffn *l, int N, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    return ffn_plan(l, N, NULL, bytes);
}

attn_status attn_ffn_forward(const attn_ffn *l, void *cache, size_t cache_bytes, float *y, const float *x, int N) {
    size_t off[2], need;
    attn_status st = ffn_plan(l, N, off, &need);
    if (st != ATTN_OK) return st;
    if (!y || !x) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    return attn__ffn_forward(y, (float *)(base + off[0]), x, l->w1, l->b1, l->w2, l->b2, N, l->D, l->F);
}

attn_status attn_ffn_backward(const attn_ffn *l, void *cache, size_t cache_bytes,
                              float *dx, const float *dy, const float *x, int N) {
    size_t off[2], need;
    attn_status st = ffn_plan(l, N, off, &need);
    if (st != ATTN_OK) return st;
    if (!l->dw1 || !l->db1 || !l->dw2 || !l->db2 || !dy || !x) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    return attn__ffn_backward(dx, l->dw1, l->db1, l->dw2, l->db2, (float *)(base + off[1]), dy, x,
                              (const float *)(base + off[0]), l->w1, l->w2, N, l->D, l->F);
}

/* ---------------------------------------------------------------------------------------------------
 * Add & norm: the raw passes, then the layer. Its cache:
 *   [ up to 64 bytes ]  z (N,C)  mean (N)  rstd (N) saved by the forward   dz (N,C) scratch
 */
void attn__dropout_mask(uint8_t *mask, size_t n, float p, uint64_t seed) {
    if (p <= 0.0f) { memset(mask, 1, n); return; }
    for (size_t i = 0; i < n; i++) mask[i] = (uint8_t)attn__dropout_keep(seed, i, p);
}

attn_status attn__addnorm_forward(float *y, float *z, float *mean, float *rstd, const float *x, const float *s,
                                  const float *gamma, const float *beta, int N, int C, float p, uint64_t seed,
                                  const uint8_t *mask) {
    const float keep = 1.0f / (1.0f - p);
    const size_t n = (size_t)N * C;
    if (p <= 0.0f)
        for (size_t i = 0; i < n; i++) z[i] = x[i] + s[i];
    else if (mask)
        for (size_t i = 0; i < n; i++) z[i] = x[i] + (mask[i] ? s[i] * keep : 0.0f);
    else
        for (size_t i = 0; i < n; i++) z[i] = x[i] + (attn__dropout_keep(seed, i, p) ? s[i] * keep : 0.0f);
    return attn__layernorm_forward(y, mean, rstd, z, gamma, beta, N, C, LN_EPS);
}

attn_status attn__addnorm_backward(float *dx, float *ds, float *dgamma, float *dbeta, float *dz, const float *dy,
                                   const float *z, const float *mean, const float *rstd, const float *gamma,
                                   int N, int C, float p, uint64_t seed, const uint8_t *mask) {
    const size_t n = (size_t)N * C;
    memset(dz, 0, sizeof(float) * n);
    attn_status st = attn__layernorm_backward(dz, dgamma, dbeta, dy, z, mean, rstd, gamma, N, C);
    if (st != ATTN_OK) return st;
    if (dx) for (size_t i = 0; i < n; i++) dx[i] += dz[i];
    if (ds) {
        const float keep = 1.0f / (1.0f - p);
        if (p <= 0.0f) for (size_t i = 0; i < n; i++) ds[i] += dz[i];
        else if (mask) for (size_t i = 0; i < n; i++) ds[i] += mask[i] ? dz[i] * keep : 0.0f;
        else for (size_t i = 0; i < n; i++) if (attn__dropout_keep(seed, i, p)) ds[i] += dz[i] * keep;
    }
    return ATTN_OK;
}

size_t attn_addnorm_n_params(int C) { return attn_layernorm_n_params(C); }

attn_status attn_addnorm_bind(attn_addnorm *l, int C, float *params, float *grads) {
    if (!l) return ATTN_ERR_NULL;
    return attn_layernorm_bind(&l->ln, C, params, grads);
}

attn_status attn_addnorm_init_weights(attn_addnorm *l, attn_rng *rng) {
    if (!l) return ATTN_ERR_NULL;
    return attn_layernorm_init_weights(&l->ln, rng);
}

static attn_status addnorm_plan(const attn_addnorm *l, int N, size_t off[4], size_t *total) {
    if (!l || !l->ln.gamma || !l->ln.beta) return ATTN_ERR_NULL;
    if (!attn__dim_ok(l->ln.C) || !attn__dim_ok(N)) return ATTN_ERR_SIZE;
    const size_t zc = sizeof(float) * (size_t)N * l->ln.C, r = sizeof(float) * (size_t)N;
    const size_t sizes[4] = {zc, r, r, zc};
    return attn__cache_plan(sizes, 4, off, total);
}

attn_status attn_addnorm_cache_bytes(const attn_addnorm *l, int N, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    return addnorm_plan(l, N, NULL, bytes);
}

attn_status attn_addnorm_forward(const attn_addnorm *l, void *cache, size_t cache_bytes,
                                 float *y, const float *x, const float *s, int N, float dropout, uint64_t seed) {
    size_t off[4], need;
    attn_status st = addnorm_plan(l, N, off, &need);
    if (st != ATTN_OK) return st;
    if (!y || !x || !s) return ATTN_ERR_NULL;
    if (!(dropout >= 0.0f && dropout < 1.0f)) return ATTN_ERR_ARG;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    return attn__addnorm_forward(y, (float *)(base + off[0]), (float *)(base + off[1]), (float *)(base + off[2]),
                                 x, s, l->ln.gamma, l->ln.beta, N, l->ln.C, dropout, seed, NULL);
}

attn_status attn_addnorm_backward(const attn_addnorm *l, void *cache, size_t cache_bytes,
                                  float *dx, float *ds, const float *dy, int N, float dropout, uint64_t seed) {
    size_t off[4], need;
    attn_status st = addnorm_plan(l, N, off, &need);
    if (st != ATTN_OK) return st;
    if (!l->ln.dgamma || !l->ln.dbeta || !dy) return ATTN_ERR_NULL;
    if (!(dropout >= 0.0f && dropout < 1.0f)) return ATTN_ERR_ARG;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    return attn__addnorm_backward(dx, ds, l->ln.dgamma, l->ln.dbeta, (float *)(base + off[3]), dy,
                                  (const float *)(base + off[0]), (const float *)(base + off[1]),
                                  (const float *)(base + off[2]), l->ln.gamma, N, l->ln.C, dropout, seed, NULL);
}
