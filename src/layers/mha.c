/*
 * mha.c — the multi-head attention layer: Q, K, V projections (linear, with bias), scaled dot-product
 * attention over H heads of Dh = Dm/H, and the output projection.
 *
 *   Qp = q Wqᵀ + bq  (B,T,Dm)    Kp = k Wkᵀ + bk  (B,S,Dm)    Vp = v Wvᵀ + bv  (B,S,Dm)
 *   ctx = sdpa(Qp, Kp, Vp)        (B,T,Dm)   head h reads columns [h·Dh, (h+1)·Dh) of each row
 *   out = ctx Woᵀ + bo            (B,T,Dm)
 *
 * The heads are never transposed in memory: the attention descriptor reads (B,T,Dm) as (B,H,T,Dh) with
 * strides b = T·Dm, h = Dh, t = Dm. Parameters and gradients are views into the caller's slabs (bind);
 * forward and backward allocate nothing and carve their activations from the caller's cache:
 *
 *   [ up to 64 bytes to align the caller's pointer ]
 *   Qp (B,T,Dm)  Kp (B,S,Dm)  Vp (B,S,Dm)  ctx (B,T,Dm)  stats (B,H,T,2)    saved by the forward
 *   dQp (B,T,Dm) dKp (B,S,Dm) dVp (B,S,Dm) dctx (B,T,Dm)                    backward scratch
 *   attention workspace: max of the forward and backward sizes
 * each block starting on a 64-byte boundary.
 */
#include "util.h"

#include <string.h>

#define ATTN_CACHE_ALIGN 64

static size_t align_bytes(size_t n) {
    return (n + (ATTN_CACHE_ALIGN - 1)) & ~(size_t)(ATTN_CACHE_ALIGN - 1);
}

/* The blocks of a cache, as offsets from its aligned start and as pointers once carved. */
typedef struct mha_cache {
    float *qp, *kp, *vp, *ctx, *stats;      /* (B,T,Dm) (B,S,Dm) (B,S,Dm) (B,T,Dm) (B,H,T,2) */
    float *dqp, *dkp, *dvp, *dctx;          /* (B,T,Dm) (B,S,Dm) (B,S,Dm) (B,T,Dm) */
    void *work;
    size_t work_bytes;
} mha_cache;

/* The attention descriptor over the projected tensors. Validates sizes, mask and dropout. */
static attn_status mha_desc(const attn_mha *m, int B, int T, int S, const attn_mask *mask, float dropout,
                            uint64_t seed, attn_sdpa_desc *d) {
    const int Dm = m->Dm, H = m->H, Dh = m->Dm / m->H;
    attn_status st = attn_sdpa_desc_init(d, B, H, T, S, Dh, Dh);
    if (st != ATTN_OK) return st;
    d->q   = (attn_layout){(int64_t)T * Dm, Dh, Dm};
    d->k   = (attn_layout){(int64_t)S * Dm, Dh, Dm};
    d->v   = (attn_layout){(int64_t)S * Dm, Dh, Dm};
    d->out = (attn_layout){(int64_t)T * Dm, Dh, Dm};
    d->scale = (float)(1.0 / sqrt((double)Dh));
    d->compute = m->compute;
    if (mask) d->mask = *mask;
    d->dropout = dropout;
    d->seed = seed;
    return attn_sdpa_validate(d);
}

static int mha_ok(const attn_mha *m) {
    return m && m->wq && m->bq && m->wk && m->bk && m->wv && m->bv && m->wo && m->bo;
}

static int mha_grads_ok(const attn_mha *m) {
    return m->dwq && m->dbq && m->dwk && m->dbk && m->dwv && m->dbv && m->dwo && m->dbo;
}

/* Checks the layer and sizes, builds the descriptor and computes the cache layout (offsets from the
 * aligned start; total bytes including the alignment slack). */
static attn_status mha_plan(const attn_ctx *ctx, const attn_mha *m, int B, int T, int S, const attn_mask *mask,
                            float dropout, uint64_t seed, attn_sdpa_desc *d, size_t off[10], size_t *work_bytes,
                            size_t *total) {
    if (!mha_ok(m)) return ATTN_ERR_NULL;
    /* the layer's own sizes, in case the struct was changed after bind */
    if (!attn__dim_ok(m->Dq) || !attn__dim_ok(m->Dk) || !attn__dim_ok(m->Dv) || !attn__dim_ok(m->Dm) ||
        !attn__dim_ok(m->H))
        return ATTN_ERR_SIZE;
    if (m->Dm % m->H != 0) return ATTN_ERR_SHAPE;
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(S)) return ATTN_ERR_SIZE;
    /* rows of the projections are BLAS ints */
    if ((int64_t)B * T > INT_MAX || (int64_t)B * S > INT_MAX ||
        (int64_t)B * T * m->Dm > INT_MAX || (int64_t)B * S * m->Dm > INT_MAX ||
        (int64_t)B * T * (m->Dq > m->Dm ? m->Dq : m->Dm) > INT_MAX ||
        (int64_t)B * S * (m->Dk > m->Dv ? m->Dk : m->Dv) > INT_MAX)
        return ATTN_ERR_SIZE;
    attn_status st = mha_desc(m, B, T, S, mask, dropout, seed, d);
    if (st != ATTN_OK) return st;
    size_t fw, bw;
    if ((st = attn_sdpa_workspace_size(ctx, d, ATTN_PASS_FORWARD, &fw)) != ATTN_OK) return st;
    if ((st = attn_sdpa_workspace_size(ctx, d, ATTN_PASS_BACKWARD, &bw)) != ATTN_OK) return st;
    *work_bytes = fw > bw ? fw : bw;

    const size_t f = sizeof(float);
    const size_t nT = (size_t)B * T * m->Dm, nS = (size_t)B * S * m->Dm, nL = (size_t)B * m->H * T * ATTN_SDPA_STATS;
    const size_t sizes[10] = {nT * f, nS * f, nS * f, nT * f, nL * f, nT * f, nS * f, nS * f, nT * f,
                              *work_bytes};
    size_t at = 0;
    for (int i = 0; i < 10; i++) {
        off[i] = at;
        if (sizes[i] > SIZE_MAX / 4 || at > SIZE_MAX / 4) return ATTN_ERR_SIZE;
        at += align_bytes(sizes[i]);
    }
    *total = at + ATTN_CACHE_ALIGN;
    return ATTN_OK;
}

static void mha_carve(void *cache, const size_t off[10], size_t work_bytes, mha_cache *c) {
    uintptr_t u = ((uintptr_t)cache + (ATTN_CACHE_ALIGN - 1)) & ~(uintptr_t)(ATTN_CACHE_ALIGN - 1);
    char *base = (char *)u;
    c->qp = (float *)(base + off[0]);
    c->kp = (float *)(base + off[1]);
    c->vp = (float *)(base + off[2]);
    c->ctx = (float *)(base + off[3]);
    c->stats = (float *)(base + off[4]);
    c->dqp = (float *)(base + off[5]);
    c->dkp = (float *)(base + off[6]);
    c->dvp = (float *)(base + off[7]);
    c->dctx = (float *)(base + off[8]);
    c->work = base + off[9];
    c->work_bytes = work_bytes;
}

static int mha_sizes_ok(int Dq, int Dk, int Dv, int Dm) {
    if (!attn__dim_ok(Dq) || !attn__dim_ok(Dk) || !attn__dim_ok(Dv) || !attn__dim_ok(Dm)) return 0;
    /* weights are BLAS matrices: (Dm,Din) must have an int count of elements */
    return attn__prod_fits_int(Dm, Dq) && attn__prod_fits_int(Dm, Dk) && attn__prod_fits_int(Dm, Dv) &&
           attn__prod_fits_int(Dm, Dm);
}

size_t attn_mha_n_params(int Dq, int Dk, int Dv, int Dm) {
    if (!mha_sizes_ok(Dq, Dk, Dv, Dm)) return 0;
    return (size_t)Dm * ((size_t)Dq + Dk + Dv + Dm) + 4 * (size_t)Dm;
}

/* Points the named parameter (and gradient) arrays into the slabs, in the order wq bq wk bk wv bv wo bo. */
attn_status attn_mha_bind(attn_mha *m, int Dq, int Dk, int Dv, int Dm, int H, float *params, float *grads) {
    if (!m || !params) return ATTN_ERR_NULL;
    if (!mha_sizes_ok(Dq, Dk, Dv, Dm) || !attn__dim_ok(H)) return ATTN_ERR_SIZE;
    if (Dm % H != 0) return ATTN_ERR_SHAPE;
    *m = (attn_mha){0};
    m->Dq = Dq; m->Dk = Dk; m->Dv = Dv; m->Dm = Dm; m->H = H;
    m->params = params;
    m->grads = grads;
    m->n_params = attn_mha_n_params(Dq, Dk, Dv, Dm);
    const size_t dm = (size_t)Dm;
    float **pp[8] = {&m->wq, &m->bq, &m->wk, &m->bk, &m->wv, &m->bv, &m->wo, &m->bo};
    float **gg[8] = {&m->dwq, &m->dbq, &m->dwk, &m->dbk, &m->dwv, &m->dbv, &m->dwo, &m->dbo};
    const size_t n[8] = {dm * Dq, dm, dm * Dk, dm, dm * Dv, dm, dm * dm, dm};
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        *pp[i] = params + off;
        if (grads) *gg[i] = grads + off;
        off += n[i];
    }
    return ATTN_OK;
}

attn_status attn_mha_init_weights(attn_mha *m, attn_rng *rng) {
    if (!mha_ok(m) || !rng) return ATTN_ERR_NULL;
    /* like nn.Linear: weight and bias uniform in ±1/sqrt(in), in the order q, k, v, o */
    const int ins[4] = {m->Dq, m->Dk, m->Dv, m->Dm};
    float *w[4] = {m->wq, m->wk, m->wv, m->wo}, *b[4] = {m->bq, m->bk, m->bv, m->bo};
    for (int i = 0; i < 4; i++) {
        float bound = (float)(1.0 / sqrt((double)ins[i]));
        attn_rng_fill_uniform(rng, w[i], (size_t)m->Dm * ins[i], -bound, bound);
        attn_rng_fill_uniform(rng, b[i], (size_t)m->Dm, -bound, bound);
    }
    return ATTN_OK;
}

attn_status attn_mha_cache_bytes(const attn_ctx *ctx, const attn_mha *m, int B, int T, int S, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    attn_sdpa_desc d;
    size_t off[10], wb;
    return mha_plan(ctx, m, B, T, S, NULL, 0.0f, 0, &d, off, &wb, bytes);
}

attn_status attn_mha_forward(const attn_ctx *ctx, const attn_mha *m, void *cache, size_t cache_bytes,
                             float *out, float *weights,
                             const float *q, const float *k, const float *v,
                             int B, int T, int S, const attn_mask *mask, float dropout, uint64_t seed) {
    attn_sdpa_desc d;
    size_t off[10], wb, need;
    attn_status st = mha_plan(ctx, m, B, T, S, mask, dropout, seed, &d, off, &wb, &need);
    if (st != ATTN_OK) return st;
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    mha_cache c;
    mha_carve(cache, off, wb, &c);
    const int Dm = m->Dm, NT = B * T, NS = B * S;

    /* projections: (B,T,Dq) -> (B,T,Dm), (B,S,Dk) -> (B,S,Dm), (B,S,Dv) -> (B,S,Dm) */
    if ((st = attn_linear_forward(c.qp, q, m->wq, m->bq, NT, m->Dq, Dm)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(c.kp, k, m->wk, m->bk, NS, m->Dk, Dm)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(c.vp, v, m->wv, m->bv, NS, m->Dv, Dm)) != ATTN_OK) return st;
    /* attention per head, in place in the (B,T,Dm) layout; its row statistics saved */
    if ((st = attn_sdpa_forward(ctx, &d, c.ctx, c.stats, weights, c.qp, c.kp, c.vp, c.work, c.work_bytes)) != ATTN_OK)
        return st;
    /* output projection (B,T,Dm) -> (B,T,Dm) */
    return attn_linear_forward(out, c.ctx, m->wo, m->bo, NT, Dm, Dm);
}

attn_status attn_mha_backward(const attn_ctx *ctx, const attn_mha *m, void *cache, size_t cache_bytes,
                              float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v,
                              int B, int T, int S, const attn_mask *mask, float dropout, uint64_t seed) {
    attn_sdpa_desc d;
    size_t off[10], wb, need;
    attn_status st = mha_plan(ctx, m, B, T, S, mask, dropout, seed, &d, off, &wb, &need);
    if (st != ATTN_OK) return st;
    if (!mha_grads_ok(m) || !dout || !q || !k || !v) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    mha_cache c;
    mha_carve(cache, off, wb, &c);
    const int Dm = m->Dm, NT = B * T, NS = B * S;
    const size_t nT = (size_t)NT * Dm, nS = (size_t)NS * Dm;

    /* output projection: dctx = dout Wo (B,T,Dm); dWo += doutᵀ ctx; dbo += Σ dout */
    memset(c.dctx, 0, sizeof(float) * nT);
    if ((st = attn_linear_backward(c.dctx, m->dwo, m->dbo, dout, c.ctx, m->wo, NT, Dm, Dm)) != ATTN_OK)
        return st;
    /* attention: into zeroed dQp (B,T,Dm), dKp (B,S,Dm), dVp (B,S,Dm) */
    memset(c.dqp, 0, sizeof(float) * nT);
    memset(c.dkp, 0, sizeof(float) * nS);
    memset(c.dvp, 0, sizeof(float) * nS);
    if ((st = attn_sdpa_backward(ctx, &d, c.dqp, c.dkp, c.dvp, c.dctx, c.qp, c.kp, c.vp, c.ctx, c.stats,
                                 c.work, c.work_bytes)) != ATTN_OK)
        return st;
    /* input projections; dq, dk, dv may be one buffer (self-attention): each call adds its part */
    if ((st = attn_linear_backward(dq, m->dwq, m->dbq, c.dqp, q, m->wq, NT, m->Dq, Dm)) != ATTN_OK) return st;
    if ((st = attn_linear_backward(dk, m->dwk, m->dbk, c.dkp, k, m->wk, NS, m->Dk, Dm)) != ATTN_OK) return st;
    return attn_linear_backward(dv, m->dwv, m->dbv, c.dvp, v, m->wv, NS, m->Dv, Dm);
}
