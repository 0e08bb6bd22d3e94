/*
 * selfattn.c — self-attention with one kernel W (3,Din,Dout) and no bias, the layer of the IMDB
 * experiment (Keras' (in, out) layout):
 *
 *   Q = X W[0],  K = X W[1],  V = X W[2]      (B,T,Dout) each, by CBLAS
 *   out = softmax(scale · Q Kᵀ, masked) V     (B,T,Dout), one head
 *
 * Parameters and gradients are one allocation (the slab, made at init). The cache the caller provides:
 *
 *   [ up to 64 bytes to align the caller's pointer ]
 *   Qp, Kp, Vp, ctx (B,T,Dout) each, lse (B,T)          saved by the forward (ctx = a copy of out)
 *   dQp, dKp, dVp (B,T,Dout) each                        backward scratch
 *   attention workspace: max of the forward and backward sizes
 * each block starting on a 64-byte boundary.
 */
#include "util.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_CACHE_ALIGN 64
#define SA_BLOCKS 9

static size_t align_bytes(size_t n) {
    return (n + (ATTN_CACHE_ALIGN - 1)) & ~(size_t)(ATTN_CACHE_ALIGN - 1);
}

typedef struct sa_cache {
    float *qp, *kp, *vp, *ctx, *lse;        /* (B,T,Dout) x4, (B,T) */
    float *dqp, *dkp, *dvp;                 /* (B,T,Dout) x3 */
    void *work;
    size_t work_bytes;
} sa_cache;

static int sa_ok(const attn_selfattn *l) {
    return l && l->w && l->dw && l->params && l->grads;
}

static attn_status sa_plan(const attn_selfattn *l, int B, int T, const attn_mask *mask, attn_sdpa_desc *d,
                           size_t off[SA_BLOCKS], size_t *work_bytes, size_t *total) {
    if (!sa_ok(l)) return ATTN_ERR_NULL;
    if (!attn__dim_ok(l->Din) || !attn__dim_ok(l->Dout) || !attn__prod_fits_int(l->Din, l->Dout))
        return ATTN_ERR_SIZE;
    if (!attn__dim_ok(B) || !attn__dim_ok(T)) return ATTN_ERR_SIZE;
    const int Dmax = l->Din > l->Dout ? l->Din : l->Dout;
    if ((int64_t)B * T > INT_MAX || (int64_t)B * T * Dmax > INT_MAX) return ATTN_ERR_SIZE;
    attn_status st = attn_sdpa_desc_init(d, B, 1, T, T, l->Dout, l->Dout);
    if (st != ATTN_OK) return st;
    d->scale = l->scale;
    if (mask) d->mask = *mask;
    if ((st = attn_sdpa_validate(d)) != ATTN_OK) return st;
    size_t fw, bw;
    if ((st = attn_sdpa_workspace_size(d, ATTN_PASS_FORWARD, &fw)) != ATTN_OK) return st;
    if ((st = attn_sdpa_workspace_size(d, ATTN_PASS_BACKWARD, &bw)) != ATTN_OK) return st;
    *work_bytes = fw > bw ? fw : bw;

    const size_t nX = (size_t)B * T * l->Dout * sizeof(float), nL = (size_t)B * T * sizeof(float);
    const size_t sizes[SA_BLOCKS] = {nX, nX, nX, nX, nL, nX, nX, nX, *work_bytes};
    size_t at = 0;
    for (int i = 0; i < SA_BLOCKS; i++) {
        off[i] = at;
        if (sizes[i] > SIZE_MAX / 4 || at > SIZE_MAX / 4) return ATTN_ERR_SIZE;
        at += align_bytes(sizes[i]);
    }
    *total = at + ATTN_CACHE_ALIGN;
    return ATTN_OK;
}

static void sa_carve(void *cache, const size_t off[SA_BLOCKS], size_t work_bytes, sa_cache *c) {
    uintptr_t u = ((uintptr_t)cache + (ATTN_CACHE_ALIGN - 1)) & ~(uintptr_t)(ATTN_CACHE_ALIGN - 1);
    char *base = (char *)u;
    c->qp = (float *)(base + off[0]);
    c->kp = (float *)(base + off[1]);
    c->vp = (float *)(base + off[2]);
    c->ctx = (float *)(base + off[3]);
    c->lse = (float *)(base + off[4]);
    c->dqp = (float *)(base + off[5]);
    c->dkp = (float *)(base + off[6]);
    c->dvp = (float *)(base + off[7]);
    c->work = base + off[8];
    c->work_bytes = work_bytes;
}

attn_status attn_selfattn_init(attn_selfattn *l, int Din, int Dout, uint64_t seed) {
    if (!l) return ATTN_ERR_NULL;
    *l = (attn_selfattn){0};
    if (!attn__dim_ok(Din) || !attn__dim_ok(Dout) || !attn__prod_fits_int(Din, Dout)) return ATTN_ERR_SIZE;
    const size_t n = 3 * (size_t)Din * Dout;
    float *slab = calloc(2 * n, sizeof(float));        /* parameters (n), then gradients (n): zeroed */
    if (!slab) return ATTN_ERR_NOMEM;
    l->Din = Din;
    l->Dout = Dout;
    l->scale = (float)(1.0 / sqrt((double)Dout));
    l->params = l->w = slab;
    l->grads = l->dw = slab + n;
    l->n_params = n;
    attn_rng r;
    attn_rng_seed(&r, seed);
    attn_rng_fill_uniform(&r, l->w, n, -0.05f, 0.05f);
    return ATTN_OK;
}

void attn_selfattn_free(attn_selfattn *l) {
    if (!l) return;
    free(l->params);
    *l = (attn_selfattn){0};
}

attn_status attn_selfattn_cache_size(const attn_selfattn *l, int B, int T, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    attn_sdpa_desc d;
    size_t off[SA_BLOCKS], wb;
    return sa_plan(l, B, T, NULL, &d, off, &wb, bytes);
}

attn_status attn_selfattn_forward(attn_selfattn *l, void *cache, size_t cache_bytes,
                                  float *out, float *weights, const float *x,
                                  int B, int T, const attn_mask *mask) {
    attn_sdpa_desc d;
    size_t off[SA_BLOCKS], wb, need;
    attn_status st = sa_plan(l, B, T, mask, &d, off, &wb, &need);
    if (st != ATTN_OK) return st;
    if (!out || !x) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    sa_cache c;
    sa_carve(cache, off, wb, &c);
    const int N = B * T, Din = l->Din, Dout = l->Dout;
    const size_t wsz = (size_t)Din * Dout;

    /* Q, K, V (N,Dout) = X (N,Din) · W[i] (Din,Dout) */
    float *proj[3] = {c.qp, c.kp, c.vp};
    for (int i = 0; i < 3; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, Dout, Din,
                    1.0f, x, Din, l->w + i * wsz, Dout, 0.0f, proj[i], Dout);
    /* attention, one head; the output is kept for the backward */
    if ((st = attn_sdpa_forward(&d, c.ctx, c.lse, weights, c.qp, c.kp, c.vp, c.work, c.work_bytes)) != ATTN_OK)
        return st;
    memcpy(out, c.ctx, sizeof(float) * (size_t)N * Dout);
    return ATTN_OK;
}

attn_status attn_selfattn_backward(attn_selfattn *l, void *cache, size_t cache_bytes,
                                   float *dx, const float *dout, const float *x,
                                   int B, int T, const attn_mask *mask) {
    attn_sdpa_desc d;
    size_t off[SA_BLOCKS], wb, need;
    attn_status st = sa_plan(l, B, T, mask, &d, off, &wb, &need);
    if (st != ATTN_OK) return st;
    if (!dout || !x) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    sa_cache c;
    sa_carve(cache, off, wb, &c);
    const int N = B * T, Din = l->Din, Dout = l->Dout;
    const size_t wsz = (size_t)Din * Dout, nX = (size_t)N * Dout;

    /* attention: into zeroed dQp, dKp, dVp (N,Dout) */
    memset(c.dqp, 0, sizeof(float) * nX);
    memset(c.dkp, 0, sizeof(float) * nX);
    memset(c.dvp, 0, sizeof(float) * nX);
    if ((st = attn_sdpa_backward(&d, c.dqp, c.dkp, c.dvp, dout, c.qp, c.kp, c.vp, c.ctx, c.lse,
                                 c.work, c.work_bytes)) != ATTN_OK)
        return st;
    /* projections: dW[i] (Din,Dout) += Xᵀ · dP_i;  dX (N,Din) += dP_i · W[i]ᵀ */
    const float *dproj[3] = {c.dqp, c.dkp, c.dvp};
    for (int i = 0; i < 3; i++) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Din, Dout, N,
                    1.0f, x, Din, dproj[i], Dout, 1.0f, l->dw + i * wsz, Dout);
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, Din, Dout,
                        1.0f, dproj[i], Dout, l->w + i * wsz, Dout, 1.0f, dx, Din);
    }
    return ATTN_OK;
}
