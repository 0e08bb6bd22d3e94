/*
 * linformer.c — the Linformer attention layer: multi-head attention whose keys and values are projected
 * along the sequence to Kp rows (learned E, F of (Kp,N)) before the scaled dot-product attention.
 *
 *   Qp = q Wqᵀ + bq (B,T,Dm)   Kp = k Wkᵀ + bk (B,S,Dm)   Vp = v Wvᵀ + bv (B,S,Dm)
 *   Ke = E[:, :S] Kp (B,Kp,Dm) Ve = F[:, :S] Vp (B,Kp,Dm)        per batch row, one GEMM each
 *   ctx = sdpa(Qp, Ke, Ve)  (B,T,Dm)  heads read as (B,H,·,Dh) by strides, as attn_mha does
 *   out = ctx Woᵀ + bo
 * Backward: dKe, dVe from the attention; dKp = E[:, :S]ᵀ dKe, dE[:, :S] += dKe Kpᵀ (and F, V alike); the
 * projections' own backward. The plain products go through CBLAS; the attention through attn_sdpa_*.
 * Activations are carved from the caller's cache:
 *   Qp Kp Vp Ke Ve ctx stats (saved)  dQp dKp dVp dKe dVe dctx (backward scratch)  attention workspace
 */
#include "util.h"

#include <cblas.h>
#include <string.h>

enum { LF_QP, LF_KP, LF_VP, LF_KE, LF_VE, LF_CTX, LF_STATS, LF_DQP, LF_DKP, LF_DVP, LF_DKE, LF_DVE, LF_DCTX,
       LF_WORK, LF_COUNT };

static int lf_sizes_ok(int Dm, int N, int Kp) {
    return attn__dim_ok(Dm) && attn__dim_ok(N) && attn__dim_ok(Kp) && attn__prod_fits_int(Dm, Dm) &&
           attn__prod_fits_int(Kp, N);
}

size_t attn_linformer_n_params(int Dm, int N, int Kp) {
    if (!lf_sizes_ok(Dm, N, Kp)) return 0;
    return 4 * ((size_t)Dm * Dm + Dm) + 2 * (size_t)Kp * N;
}

attn_status attn_linformer_bind(attn_linformer *l, int Dm, int H, int N, int Kp, float *params, float *grads) {
    if (!l || !params) return ATTN_ERR_NULL;
    if (!lf_sizes_ok(Dm, N, Kp) || !attn__dim_ok(H)) return ATTN_ERR_SIZE;
    if (Dm % H != 0) return ATTN_ERR_SHAPE;
    *l = (attn_linformer){0};
    l->Dm = Dm; l->H = H; l->N = N; l->Kp = Kp;
    l->params = params;
    l->grads = grads;
    l->n_params = attn_linformer_n_params(Dm, N, Kp);
    float **pp[10] = {&l->wq, &l->bq, &l->wk, &l->bk, &l->wv, &l->bv, &l->wo, &l->bo, &l->e, &l->f};
    float **gg[10] = {&l->dwq, &l->dbq, &l->dwk, &l->dbk, &l->dwv, &l->dbv, &l->dwo, &l->dbo, &l->de, &l->df};
    const size_t dm = (size_t)Dm, ef = (size_t)Kp * N;
    const size_t n[10] = {dm * dm, dm, dm * dm, dm, dm * dm, dm, dm * dm, dm, ef, ef};
    size_t off = 0;
    for (int i = 0; i < 10; i++) {
        *pp[i] = params + off;
        if (grads) *gg[i] = grads + off;
        off += n[i];
    }
    return ATTN_OK;
}

static int lf_ok(const attn_linformer *l) {
    return l && l->wq && l->bq && l->wk && l->bk && l->wv && l->bv && l->wo && l->bo && l->e && l->f;
}

static int lf_grads_ok(const attn_linformer *l) {
    return l->dwq && l->dbq && l->dwk && l->dbk && l->dwv && l->dbv && l->dwo && l->dbo && l->de && l->df;
}

attn_status attn_linformer_init_weights(attn_linformer *l, attn_rng *rng) {
    if (!lf_ok(l) || !rng) return ATTN_ERR_NULL;
    const float bound = (float)(1.0 / sqrt((double)l->Dm));
    float *w[4] = {l->wq, l->wk, l->wv, l->wo}, *b[4] = {l->bq, l->bk, l->bv, l->bo};
    for (int i = 0; i < 4; i++) {
        attn_rng_fill_uniform(rng, w[i], (size_t)l->Dm * l->Dm, -bound, bound);
        attn_rng_fill_uniform(rng, b[i], (size_t)l->Dm, -bound, bound);
    }
    const float pb = (float)(1.0 / sqrt((double)l->Kp));
    attn_rng_fill_uniform(rng, l->e, (size_t)l->Kp * l->N, -pb, pb);
    attn_rng_fill_uniform(rng, l->f, (size_t)l->Kp * l->N, -pb, pb);
    return ATTN_OK;
}

/* Checks the layer and sizes, builds the attention descriptor over (Qp, Ke, Ve) and the cache layout. */
static attn_status lf_plan(const attn_ctx *ctx, const attn_linformer *l, int B, int T, int S, attn_sdpa_desc *d,
                           size_t off[LF_COUNT], size_t *total) {
    if (!lf_ok(l)) return ATTN_ERR_NULL;
    if (!lf_sizes_ok(l->Dm, l->N, l->Kp) || !attn__dim_ok(l->H)) return ATTN_ERR_SIZE;
    if (l->Dm % l->H != 0) return ATTN_ERR_SHAPE;
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(S)) return ATTN_ERR_SIZE;
    if (S > l->N) return ATTN_ERR_SHAPE;
    const int Dm = l->Dm, Kp = l->Kp, H = l->H, Dh = Dm / H;
    if ((int64_t)B * T * Dm > INT_MAX || (int64_t)B * S * Dm > INT_MAX || (int64_t)B * Kp * Dm > INT_MAX)
        return ATTN_ERR_SIZE;
    attn_status st = attn_sdpa_desc_init(d, B, H, T, Kp, Dh, Dh);
    if (st != ATTN_OK) return st;
    d->q = (attn_layout){(int64_t)T * Dm, Dh, Dm};
    d->k = (attn_layout){(int64_t)Kp * Dm, Dh, Dm};
    d->v = (attn_layout){(int64_t)Kp * Dm, Dh, Dm};
    d->out = (attn_layout){(int64_t)T * Dm, Dh, Dm};
    if ((st = attn_sdpa_validate(d)) != ATTN_OK) return st;
    size_t fw, bw;
    if ((st = attn_sdpa_workspace_size(ctx, d, ATTN_PASS_FORWARD, &fw)) != ATTN_OK) return st;
    if ((st = attn_sdpa_workspace_size(ctx, d, ATTN_PASS_BACKWARD, &bw)) != ATTN_OK) return st;
    const size_t f = sizeof(float), nT = (size_t)B * T * Dm * f, nS = (size_t)B * S * Dm * f;
    const size_t nK = (size_t)B * Kp * Dm * f, nL = (size_t)B * H * T * ATTN_SDPA_STATS * f;
    const size_t sizes[LF_COUNT] = {nT, nS, nS, nK, nK, nT, nL, nT, nS, nS, nK, nK, nT, fw > bw ? fw : bw};
    return attn__cache_plan(sizes, LF_COUNT, off, total);
}

attn_status attn_linformer_cache_bytes(const attn_ctx *ctx, const attn_linformer *l, int B, int T, int S,
                                       size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    attn_sdpa_desc d;
    size_t off[LF_COUNT];
    return lf_plan(ctx, l, B, T, S, &d, off, bytes);
}

/* y[b] (Kp,Dm) = P[:, :S] (Kp,N) · x[b] (S,Dm), for every batch row */
static void project_seq(float *y, const float *P, const float *x, int B, int S, int N, int Kp, int Dm) {
    for (int b = 0; b < B; b++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Kp, Dm, S, 1.0f, P, N, x + (size_t)b * S * Dm, Dm,
                    0.0f, y + (size_t)b * Kp * Dm, Dm);
}

/* dx[b] (S,Dm) = P[:, :S]ᵀ dy[b];  dP[:, :S] += dy[b] (Kp,Dm) · x[b]ᵀ (Dm,S), summed over b in order */
static void project_seq_backward(float *dx, float *dP, const float *dy, const float *P, const float *x, int B, int S,
                                 int N, int Kp, int Dm) {
    for (int b = 0; b < B; b++) {
        const float *g = dy + (size_t)b * Kp * Dm, *xb = x + (size_t)b * S * Dm;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, S, Dm, Kp, 1.0f, P, N, g, Dm, 0.0f,
                    dx + (size_t)b * S * Dm, Dm);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Kp, S, Dm, 1.0f, g, Dm, xb, Dm, 1.0f, dP, N);
    }
}

attn_status attn_linformer_forward(const attn_ctx *ctx, const attn_linformer *l, void *cache, size_t cache_bytes,
                                   float *out, float *weights, const float *q, const float *k, const float *v,
                                   int B, int T, int S) {
    attn_sdpa_desc d;
    size_t off[LF_COUNT], need;
    attn_status st = lf_plan(ctx, l, B, T, S, &d, off, &need);
    if (st != ATTN_OK) return st;
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    float *c[LF_COUNT];
    for (int i = 0; i < LF_COUNT; i++) c[i] = (float *)(base + off[i]);
    const int Dm = l->Dm;
    size_t wb = need - ATTN__CACHE_ALIGN - off[LF_WORK];

    if ((st = attn_linear_forward(c[LF_QP], q, l->wq, l->bq, B * T, Dm, Dm)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(c[LF_KP], k, l->wk, l->bk, B * S, Dm, Dm)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(c[LF_VP], v, l->wv, l->bv, B * S, Dm, Dm)) != ATTN_OK) return st;
    /* along the sequence: (S,Dm) -> (Kp,Dm) per batch row */
    project_seq(c[LF_KE], l->e, c[LF_KP], B, S, l->N, l->Kp, Dm);
    project_seq(c[LF_VE], l->f, c[LF_VP], B, S, l->N, l->Kp, Dm);
    if ((st = attn_sdpa_forward(ctx, &d, c[LF_CTX], c[LF_STATS], weights, c[LF_QP], c[LF_KE], c[LF_VE],
                                c[LF_WORK], wb)) != ATTN_OK)
        return st;
    return attn_linear_forward(out, c[LF_CTX], l->wo, l->bo, B * T, Dm, Dm);
}

attn_status attn_linformer_backward(const attn_ctx *ctx, const attn_linformer *l, void *cache, size_t cache_bytes,
                                    float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v, int B, int T, int S) {
    attn_sdpa_desc d;
    size_t off[LF_COUNT], need;
    attn_status st = lf_plan(ctx, l, B, T, S, &d, off, &need);
    if (st != ATTN_OK) return st;
    if (!lf_grads_ok(l) || !dout || !q || !k || !v) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    float *c[LF_COUNT];
    for (int i = 0; i < LF_COUNT; i++) c[i] = (float *)(base + off[i]);
    const int Dm = l->Dm, Kp = l->Kp;
    const size_t nT = (size_t)B * T * Dm, nK = (size_t)B * Kp * Dm;
    size_t wb = need - ATTN__CACHE_ALIGN - off[LF_WORK];

    /* output projection */
    memset(c[LF_DCTX], 0, sizeof(float) * nT);
    if ((st = attn_linear_backward(c[LF_DCTX], l->dwo, l->dbo, dout, c[LF_CTX], l->wo, B * T, Dm, Dm)) != ATTN_OK)
        return st;
    /* attention over the projected keys and values */
    memset(c[LF_DQP], 0, sizeof(float) * nT);
    memset(c[LF_DKE], 0, sizeof(float) * nK);
    memset(c[LF_DVE], 0, sizeof(float) * nK);
    if ((st = attn_sdpa_backward(ctx, &d, c[LF_DQP], c[LF_DKE], c[LF_DVE], c[LF_DCTX], c[LF_QP], c[LF_KE], c[LF_VE],
                                 c[LF_CTX], c[LF_STATS], c[LF_WORK], wb)) != ATTN_OK)
        return st;
    /* the sequence projections: dKp, dVp written; dE, dF accumulated */
    project_seq_backward(c[LF_DKP], l->de, c[LF_DKE], l->e, c[LF_KP], B, S, l->N, Kp, Dm);
    project_seq_backward(c[LF_DVP], l->df, c[LF_DVE], l->f, c[LF_VP], B, S, l->N, Kp, Dm);
    /* the input projections; dq, dk, dv may be one buffer */
    if ((st = attn_linear_backward(dq, l->dwq, l->dbq, c[LF_DQP], q, l->wq, B * T, Dm, Dm)) != ATTN_OK) return st;
    if ((st = attn_linear_backward(dk, l->dwk, l->dbk, c[LF_DKP], k, l->wk, B * S, Dm, Dm)) != ATTN_OK) return st;
    return attn_linear_backward(dv, l->dwv, l->dbv, c[LF_DVP], v, l->wv, B * S, Dm, Dm);
}
