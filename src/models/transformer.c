/*
 * transformer.c — the d2l Transformer: the encoder and decoder blocks (bias-free multi-head attention on
 * attn_sdpa_*; feed-forward and add & norm from src/layers/transformer_layers.c), and the translator built
 * from them: teacher-forced training step with the masked cross-entropy, forward and backward, greedy
 * decoding with or without a key/value cache, the sharded training epoch and checkpoints.
 *
 * Tensors are batch-major (B,T,D). The heads are never transposed: the attention descriptor reads a
 * (B,T,D) projection as (B,H,T,D/H) with strides b = T·D, h = D/H, t = D (as mha.c).
 */
#include "layers/util.h"
#include "nmt_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Bias-free multi-head attention on (B,T,D) / (B,S,D) tensors: Q = xq Wqᵀ, K = xkv Wkᵀ, V = xkv Wvᵀ,
 * per-head scaled dot-product attention, out = ctx Woᵀ.
 */

/* The descriptor: q and out (B,T,D) read as (B,H,T,D/H); k and v rows kv_ld floats apart per batch row
 * (S·D for a packed (B,S,D), more for a key/value cache). */
static attn_status att_desc(attn_sdpa_desc *d, attn_dtype compute, int B, int H, int T, int S, int D, int64_t kv_ld,
                            const attn_mask *mask, float dropout, uint64_t seed) {
    const int Dh = D / H;
    attn_status st = attn_sdpa_desc_init(d, B, H, T, S, Dh, Dh);
    if (st != ATTN_OK) return st;
    d->q   = (attn_layout){(int64_t)T * D, Dh, D};
    d->k   = (attn_layout){kv_ld, Dh, D};
    d->v   = (attn_layout){kv_ld, Dh, D};
    d->out = (attn_layout){(int64_t)T * D, Dh, D};
    d->scale = (float)(1.0 / sqrt((double)Dh));
    d->compute = compute;
    if (mask) d->mask = *mask;
    d->dropout = dropout;
    d->seed = seed;
    return attn_sdpa_validate(d);
}

/* Bytes of attn_sdpa workspace for these sizes with context ctx, forward and backward (0 on an invalid
 * shape: the calls then fail with the descriptor's status). */
static size_t att_work_bytes(const attn_ctx *ctx, attn_dtype compute, int B, int H, int T, int S, int D) {
    attn_sdpa_desc d;
    size_t fw = 0, bw = 0;
    if (att_desc(&d, compute, B, H, T, S, D, (int64_t)S * D, NULL, 0.0f, 0) != ATTN_OK) return 0;
    attn_sdpa_workspace_size(ctx, &d, ATTN_PASS_FORWARD, &fw);
    attn_sdpa_workspace_size(ctx, &d, ATTN_PASS_BACKWARD, &bw);
    return fw > bw ? fw : bw;
}

/* Activations one attention saves. */
typedef struct att_acts {
    float *qp, *kp, *vp, *ctx;   /* (B,T,D) (B,S,D) (B,S,D) (B,T,D) */
    float *stats;                /* (B,H,T,2) the attention's row statistics, for its backward */
    float *a;                    /* (B,T,D) output, after Wo */
    void *work;                  /* the block's attn_sdpa workspace (shared by its attentions) */
    size_t work_bytes;
} att_acts;

/* a = attention(xq Wqᵀ, xkv Wkᵀ, xkv Wvᵀ) Woᵀ, the attention by attn_sdpa_forward;  weights (B,H,T,S) or
 * NULL: the attention weights (asking for them runs the reference path). */
static attn_status att_forward(const attn_ctx *ctx, const float *wq, const float *wk, const float *wv, const float *wo,
                               const att_acts *c, float *weights, const float *xq, const float *xkv,
                               attn_dtype compute, int B, int H, int T, int S, int D, const attn_mask *mask, float p,
                               uint64_t seed) {
    attn_sdpa_desc d;
    attn_status st = att_desc(&d, compute, B, H, T, S, D, (int64_t)S * D, mask, p, seed);
    if (st != ATTN_OK) return st;
    if ((st = attn_linear_forward(c->qp, xq, wq, NULL, B * T, D, D)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(c->kp, xkv, wk, NULL, B * S, D, D)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(c->vp, xkv, wv, NULL, B * S, D, D)) != ATTN_OK) return st;
    st = attn_sdpa_forward(ctx, &d, c->ctx, c->stats, weights, c->qp, c->kp, c->vp, c->work, c->work_bytes);
    if (st != ATTN_OK) return st;
    return attn_linear_forward(c->a, c->ctx, wo, NULL, B * T, D, D);
}

/* Backward of att_forward: da (B,T,D) in; dxq (B,T,D), dxkv (B,S,D) += (each may be NULL, or the same
 * buffer for self-attention); scratch dq, dctx (B,T,D), dk, dv (B,S,D). */
static attn_status att_backward(const attn_ctx *ctx, const float *wq, const float *wk, const float *wv, const float *wo,
                                float *dwq, float *dwk, float *dwv, float *dwo, const att_acts *c,
                                float *dxq, float *dxkv, const float *da, const float *xq, const float *xkv,
                                float *dq, float *dk, float *dv, float *dctx,
                                attn_dtype compute, int B, int H, int T, int S, int D, const attn_mask *mask, float p,
                                uint64_t seed) {
    attn_sdpa_desc d;
    attn_status st = att_desc(&d, compute, B, H, T, S, D, (int64_t)S * D, mask, p, seed);
    if (st != ATTN_OK) return st;
    const size_t nT = (size_t)B * T * D, nS = (size_t)B * S * D;
    memset(dctx, 0, sizeof(float) * nT);
    if ((st = attn_linear_backward(dctx, dwo, NULL, da, c->ctx, wo, B * T, D, D)) != ATTN_OK) return st;
    memset(dq, 0, sizeof(float) * nT);
    memset(dk, 0, sizeof(float) * nS);
    memset(dv, 0, sizeof(float) * nS);
    st = attn_sdpa_backward(ctx, &d, dq, dk, dv, dctx, c->qp, c->kp, c->vp, c->ctx, c->stats, c->work, c->work_bytes);
    if (st != ATTN_OK) return st;
    if ((st = attn_linear_backward(dxq, dwq, NULL, dq, xq, wq, B * T, D, D)) != ATTN_OK) return st;
    if ((st = attn_linear_backward(dxkv, dwk, NULL, dk, xkv, wk, B * S, D, D)) != ATTN_OK) return st;
    return attn_linear_backward(dxkv, dwv, NULL, dv, xkv, wv, B * S, D, D);
}

/* ---------------------------------------------------------------------------------------------------
 * Blocks.
 */
size_t attn_tf_block_n_params(int D, int F, int decoder) {
    const size_t d = (size_t)D, f = (size_t)F;
    size_t att = 4 * d * d + 2 * d;                        /* W_q W_k W_v W_o + its add & norm */
    return att * (decoder ? 2 : 1) + f * d + f + d * f + d + 2 * d;
}

attn_status attn_tf_block_bind(attn_tf_block *b, int D, int F, int H, int decoder, float dropout, float *params,
                               float *grads) {
    if (!b || !params) return ATTN_ERR_NULL;
    if (!attn__dim_ok(D) || !attn__dim_ok(F) || !attn__dim_ok(H)) return ATTN_ERR_SIZE;
    if (D % H != 0) return ATTN_ERR_SHAPE;
    if (!(dropout >= 0.0f && dropout < 1.0f)) return ATTN_ERR_ARG;
    memset(b, 0, sizeof *b);
    b->D = D; b->F = F; b->H = H; b->decoder = decoder ? 1 : 0; b->dropout = dropout;
    b->n_params = attn_tf_block_n_params(D, F, decoder);
    b->params = params;
    b->grads = grads;
    const size_t dd = (size_t)D * D;
    size_t off = 0;
    /* the same offsets in both slabs; no gradient views without a gradient slab */
#define NEXT(name, n) do { b->w.name = params + off; b->g.name = grads ? grads + off : NULL; off += (n); } while (0)
    NEXT(wq, dd); NEXT(wk, dd); NEXT(wv, dd); NEXT(wo, dd);
    NEXT(ln1_g, D); NEXT(ln1_b, D);
    if (decoder) {
        NEXT(xwq, dd); NEXT(xwk, dd); NEXT(xwv, dd); NEXT(xwo, dd);
        NEXT(ln2_g, D); NEXT(ln2_b, D);
    }
    NEXT(w1, (size_t)F * D); NEXT(b1, F); NEXT(w2, (size_t)D * F); NEXT(b2, D);
    NEXT(ln3_g, D); NEXT(ln3_b, D);
#undef NEXT
    return ATTN_OK;
}

attn_status attn_tf_block_init_weights(attn_tf_block *b, attn_rng *r) {
    if (!b || !r) return ATTN_ERR_NULL;
    if (!b->w.wq || !b->w.w1 || !b->w.ln3_g || (b->decoder && !b->w.xwq)) return ATTN_ERR_ARG;   /* not bound */
    const int D = b->D, F = b->F;
    float *ws[8] = {b->w.wq, b->w.wk, b->w.wv, b->w.wo, b->w.xwq, b->w.xwk, b->w.xwv, b->w.xwo};
    for (int i = 0; i < (b->decoder ? 8 : 4); i++) attn__nmt_xavier(r, ws[i], D, D);
    attn__nmt_xavier(r, b->w.w1, F, D);
    attn_rng_fill_uniform(r, b->w.b1, (size_t)F, -1.0f / sqrtf((float)D), 1.0f / sqrtf((float)D));
    attn__nmt_xavier(r, b->w.w2, D, F);
    attn_rng_fill_uniform(r, b->w.b2, (size_t)D, -1.0f / sqrtf((float)F), 1.0f / sqrtf((float)F));
    float *g[3] = {b->w.ln1_g, b->w.ln2_g, b->w.ln3_g}, *be[3] = {b->w.ln1_b, b->w.ln2_b, b->w.ln3_b};
    for (int k = 0; k < 3; k++) {
        if (!g[k]) continue;
        for (int i = 0; i < D; i++) { g[k][i] = 1.0f; be[k][i] = 0.0f; }
    }
    return ATTN_OK;
}

/* The block cache, carved in this order (each piece rounded up to 16 floats):
 *   self  : qp kp vp ctx (N,D), stats (B,H,T,2), a (N,D), the attention workspace (for both attentions);
 *           z1 (N,D) m1 r1 (N) y1 (N,D) dm1
 *   cross : qp (N,D) kp vp (M,D) ctx (N,D) stats (B,H,T,2) a (N,D);  z2 (N,D) m2 r2 (N) y2 (N,D) dm2  [decoder]
 *   ffn   : h (N,F) f (N,D);  z3 (N,D) m3 r3 (N) dm3
 * (dm1..dm3 (N,D) bytes: the add & norms' dropout masks)
 *   backward scratch: dz du df dy1 dq dctx (N,D), dk dv (max(N,M),D), dh (N,F)
 * with N = B·T, M = B·S. */
typedef struct blk_cache {
    att_acts sa, ca;
    float *z1, *m1, *r1, *y1, *z2, *m2, *r2, *y2, *h, *f, *z3, *m3, *r3;
    uint8_t *dm1, *dm2, *dm3;    /* (N,D) the add & norms' dropout masks */
    float *dz, *du, *df, *dy1, *dq, *dctx, *dk, *dv, *dh;
    size_t total;
} blk_cache;

static void blk_carve(const attn_ctx *ctx, const attn_tf_block *b, float *base, int B, int T, int S, blk_cache *c) {
    const size_t D = (size_t)b->D, F = (size_t)b->F, N = (size_t)B * T, M = (size_t)B * S,
                 L = (size_t)B * b->H * T * ATTN_SDPA_STATS, K = N > M ? N : M;
    const size_t ws = att_work_bytes(ctx, b->compute, B, b->H, T, T, b->D),
                 wc = b->decoder ? att_work_bytes(ctx, b->compute, B, b->H, T, S, b->D) : 0;
    const size_t work_bytes = ws > wc ? ws : wc;
    size_t off = 0;
#define TAKE(ptr, n) do { c->ptr = base ? base + off : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
#define TAKE_B(ptr, n) do { c->ptr = base ? (uint8_t *)(base + off) : NULL; off += ((n) / 4 + 16) & ~(size_t)15; } while (0)
    TAKE(sa.qp, N * D); TAKE(sa.kp, N * D); TAKE(sa.vp, N * D); TAKE(sa.ctx, N * D); TAKE(sa.stats, L); TAKE(sa.a, N * D);
    c->sa.work = base ? base + off : NULL;
    c->sa.work_bytes = work_bytes;
    off += (work_bytes + sizeof(float) - 1) / sizeof(float);
    TAKE(z1, N * D); TAKE(m1, N); TAKE(r1, N); TAKE(y1, N * D); TAKE_B(dm1, N * D);
    if (b->decoder) {
        TAKE(ca.qp, N * D); TAKE(ca.kp, M * D); TAKE(ca.vp, M * D); TAKE(ca.ctx, N * D); TAKE(ca.stats, L);
        TAKE(ca.a, N * D);
        c->ca.work = c->sa.work;
        c->ca.work_bytes = work_bytes;
        TAKE(z2, N * D); TAKE(m2, N); TAKE(r2, N); TAKE(y2, N * D); TAKE_B(dm2, N * D);
    }
    TAKE(h, N * F); TAKE(f, N * D); TAKE(z3, N * D); TAKE(m3, N); TAKE(r3, N); TAKE_B(dm3, N * D);
    TAKE(dz, N * D); TAKE(du, N * D); TAKE(df, N * D); TAKE(dy1, N * D); TAKE(dq, N * D); TAKE(dctx, N * D);
    TAKE(dk, K * D); TAKE(dv, K * D); TAKE(dh, N * F);
#undef TAKE
#undef TAKE_B
    c->total = off + 16;
}

attn_status attn_tf_block_cache_bytes(const attn_ctx *ctx, const attn_tf_block *b, int B, int T, int S,
                                      size_t *bytes) {
    if (!b || !bytes) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(S) || b->D < 1 || b->H < 1) return ATTN_ERR_SIZE;
    if (T > ATTN_TF_MAX_LEN || S > ATTN_TF_MAX_LEN) return ATTN_ERR_SIZE;
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, &c, &kern);
    if (st != ATTN_OK) return st;
    blk_cache bc;
    blk_carve(&c, b, NULL, B, T, S, &bc);
    *bytes = bc.total * sizeof(float);
    return ATTN_OK;
}

static attn_status blk_check(const attn_ctx *ctx, const attn_tf_block *b, void *cache, size_t cache_bytes,
                             const float *x, const float *enc, const int32_t *src_lens, int B, int T, int S,
                             blk_cache *c) {
    if (!b || !b->w.wq || !b->w.w1 || !b->w.ln3_g || !x || !src_lens) return ATTN_ERR_NULL;
    if (b->decoder && (!enc || !b->w.xwq || !b->w.ln2_g)) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(S)) return ATTN_ERR_SIZE;
    if (!b->decoder && S != T) return ATTN_ERR_SHAPE;
    if (T > ATTN_TF_MAX_LEN || S > ATTN_TF_MAX_LEN) return ATTN_ERR_SIZE;
    if ((int64_t)B * T * (b->F > b->D ? b->F : b->D) > INT_MAX || (int64_t)B * S * b->D > INT_MAX) return ATTN_ERR_SIZE;
    blk_carve(ctx, b, NULL, B, T, S, c);
    if (!cache || cache_bytes < c->total * sizeof(float)) return ATTN_ERR_WORKSPACE;
    /* align the caller's cache to 64 bytes (the +16 floats of slack in total) */
    uintptr_t u = ((uintptr_t)cache + 63) & ~(uintptr_t)63;
    blk_carve(ctx, b, (float *)u, B, T, S, c);
    return ATTN_OK;
}

static void blk_masks(const attn_tf_block *b, const int32_t *src_lens, attn_mask *self, attn_mask *cross) {
    memset(self, 0, sizeof *self);
    memset(cross, 0, sizeof *cross);
    cross->valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    cross->valid_lens = src_lens;
    if (b->decoder) self->causal = !b->full_self;     /* full_self: no mask among the queries */
    else *self = *cross;
}

/* The block's forward; self_weights (B,H,T,T) and cross_weights (B,H,T,S), each NULL or written. */
static attn_status blk_forward(const attn_ctx *ctx, const attn_tf_block *b, void *cache, size_t cache_bytes,
                               float *y, float *self_weights, float *cross_weights,
                               const float *x, const float *enc, const int32_t *src_lens,
                               int B, int T, int S, int train, uint64_t seed) {
    blk_cache c;
    attn_ctx cx;
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, &cx, &kern);
    if (st != ATTN_OK) return st;
    if ((st = blk_check(&cx, b, cache, cache_bytes, x, enc, src_lens, B, T, S, &c)) != ATTN_OK) return st;
    if (!y) return ATTN_ERR_NULL;
    const int D = b->D, H = b->H, N = B * T;
    const float p = train ? b->dropout : 0.0f;
    attn_mask ms, mc;
    blk_masks(b, src_lens, &ms, &mc);

    /* self-attention, add & norm: y1 (B,T,D) */
    st = att_forward(&cx, b->w.wq, b->w.wk, b->w.wv, b->w.wo, &c.sa, self_weights, x, x, b->compute, B, H, T, T, D, &ms, p,
                     attn__nmt_sub_seed(seed, 1));
    if (st != ATTN_OK) return st;
    attn__dropout_mask(c.dm1, (size_t)N * D, p, attn__nmt_sub_seed(seed, 2));
    st = attn__addnorm_forward(c.y1, c.z1, c.m1, c.r1, x, c.sa.a, b->w.ln1_g, b->w.ln1_b, N, D, p, 0, c.dm1);
    if (st != ATTN_OK) return st;
    const float *u = c.y1;
    /* cross-attention on the encoder's output, add & norm: y2 (B,T,D) */
    if (b->decoder) {
        st = att_forward(&cx, b->w.xwq, b->w.xwk, b->w.xwv, b->w.xwo, &c.ca, cross_weights, c.y1, enc, b->compute, B, H, T, S, D, &mc, p,
                         attn__nmt_sub_seed(seed, 3));
        if (st != ATTN_OK) return st;
        attn__dropout_mask(c.dm2, (size_t)N * D, p, attn__nmt_sub_seed(seed, 4));
        st = attn__addnorm_forward(c.y2, c.z2, c.m2, c.r2, c.y1, c.ca.a, b->w.ln2_g, b->w.ln2_b, N, D, p, 0, c.dm2);
        if (st != ATTN_OK) return st;
        u = c.y2;
    }
    /* feed-forward, add & norm: y (B,T,D) */
    if ((st = attn__ffn_forward(c.f, c.h, u, b->w.w1, b->w.b1, b->w.w2, b->w.b2, N, D, b->F)) != ATTN_OK) return st;
    attn__dropout_mask(c.dm3, (size_t)N * D, p, attn__nmt_sub_seed(seed, 5));
    return attn__addnorm_forward(y, c.z3, c.m3, c.r3, u, c.f, b->w.ln3_g, b->w.ln3_b, N, D, p, 0, c.dm3);
}

attn_status attn_tf_block_forward(const attn_ctx *ctx, const attn_tf_block *b, void *cache, size_t cache_bytes,
                                  float *y, float *cross_weights,
                                  const float *x, const float *enc, const int32_t *src_lens,
                                  int B, int T, int S, int train, uint64_t seed) {
    return blk_forward(ctx, b, cache, cache_bytes, y, NULL, cross_weights, x, enc, src_lens, B, T, S, train, seed);
}

attn_status attn_tf_block_forward_weights(const attn_ctx *ctx, const attn_tf_block *b, void *cache,
                                          size_t cache_bytes, float *y, float *self_weights, float *cross_weights,
                                          const float *x, const float *enc, const int32_t *src_lens,
                                          int B, int T, int S, int train, uint64_t seed) {
    return blk_forward(ctx, b, cache, cache_bytes, y, self_weights, cross_weights, x, enc, src_lens, B, T, S, train,
                       seed);
}

attn_status attn_tf_block_backward(const attn_ctx *ctx, const attn_tf_block *b, void *cache,
                                   size_t cache_bytes, float *dx, float *denc, const float *dy,
                                   const float *x, const float *enc, const int32_t *src_lens,
                                   int B, int T, int S, int train, uint64_t seed) {
    blk_cache c;
    attn_ctx cx;
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, &cx, &kern);
    if (st != ATTN_OK) return st;
    if ((st = blk_check(&cx, b, cache, cache_bytes, x, enc, src_lens, B, T, S, &c)) != ATTN_OK) return st;
    if (!dy || !b->g.wq || !b->g.w1 || !b->g.ln3_g || (b->decoder && (!b->g.xwq || !b->g.ln2_g))) return ATTN_ERR_NULL;
    const int D = b->D, H = b->H, N = B * T;
    const size_t nT = (size_t)N * D;
    const float p = train ? b->dropout : 0.0f;
    attn_mask ms, mc;
    blk_masks(b, src_lens, &ms, &mc);
    const float *u = b->decoder ? c.y2 : c.y1;

    /* feed-forward's add & norm, then the feed-forward: du = dL/du */
    memset(c.du, 0, sizeof(float) * nT);
    memset(c.df, 0, sizeof(float) * nT);
    st = attn__addnorm_backward(c.du, c.df, b->g.ln3_g, b->g.ln3_b, c.dz, dy, c.z3, c.m3, c.r3, b->w.ln3_g, N, D, p, 0, c.dm3);
    if (st != ATTN_OK) return st;
    st = attn__ffn_backward(c.du, b->g.w1, b->g.b1, b->g.w2, b->g.b2, c.dh, c.df, u, c.h, b->w.w1, b->w.w2, N, D, b->F);
    if (st != ATTN_OK) return st;
    float *dy1 = c.du;
    /* cross-attention's add & norm, then the cross-attention: dy1, denc */
    if (b->decoder) {
        dy1 = c.dy1;
        memset(dy1, 0, sizeof(float) * nT);
        memset(c.df, 0, sizeof(float) * nT);
        st = attn__addnorm_backward(dy1, c.df, b->g.ln2_g, b->g.ln2_b, c.dz, c.du, c.z2, c.m2, c.r2, b->w.ln2_g, N, D, p, 0, c.dm2);
        if (st != ATTN_OK) return st;
        st = att_backward(&cx, b->w.xwq, b->w.xwk, b->w.xwv, b->w.xwo, b->g.xwq, b->g.xwk, b->g.xwv, b->g.xwo, &c.ca, dy1, denc, c.df,
                          c.y1, enc, c.dq, c.dk, c.dv, c.dctx, b->compute, B, H, T, S, D, &mc, p, attn__nmt_sub_seed(seed, 3));
        if (st != ATTN_OK) return st;
    }
    /* self-attention's add & norm, then the self-attention: dx (q, k and v all read x) */
    memset(c.df, 0, sizeof(float) * nT);
    st = attn__addnorm_backward(dx, c.df, b->g.ln1_g, b->g.ln1_b, c.dz, dy1, c.z1, c.m1, c.r1, b->w.ln1_g, N, D, p, 0, c.dm1);
    if (st != ATTN_OK) return st;
    return att_backward(&cx, b->w.wq, b->w.wk, b->w.wv, b->w.wo, b->g.wq, b->g.wk, b->g.wv, b->g.wo, &c.sa, dx, dx, c.df, x, x,
                        c.dq, c.dk, c.dv, c.dctx, b->compute, B, H, T, T, D, &ms, p, attn__nmt_sub_seed(seed, 1));
}

/* ---------------------------------------------------------------------------------------------------
 * The translator's activations, for max_batch Bm (N = Bm·T), carved in this order:
 *   src dec tgt (N) ids, wts (N);  ex (L+1,N,D) encoder stream, dx (L+1,N,D) decoder stream;
 *   enc caches, dec caches (L each);  emb (N,D);  logits probs (N,V);  losses (N);  g1 g2 denc (N,D);
 *   decoding: kv (L,4,T,D) (self K, self V, encoder K, encoder V per decoder block), wscr (L,H,T,T),
 *   step scratch (8·D + F + H + 16), step workspace.
 */
typedef struct tf_acts {
    int32_t *src, *dec, *tgt;
    float *wts, *ex, *dx, *enc_cache, *dec_cache, *emb, *logits, *probs, *losses, *g1, *g2, *denc;
    float *kv, *wscr, *step;
    void *step_work;
    size_t enc_cache_n, dec_cache_n, step_work_bytes, total;
} tf_acts;

static void tf_carve(const attn_transformer *m, float *base, tf_acts *a) {
    const attn_transformer_config *c = &m->cfg;
    const size_t T = (size_t)c->num_steps, N = (size_t)c->max_batch * T, D = (size_t)c->hidden,
                 L = (size_t)c->blocks, V = (size_t)c->tgt_vocab, H = (size_t)c->heads, F = (size_t)c->ffn;
    size_t off = 0;
#define TAKE(ptr, n) do { a->ptr = base ? base + off : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
#define TAKE_I(ptr, n) do { a->ptr = base ? (int32_t *)(base + off) : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
    TAKE_I(src, N); TAKE_I(dec, N); TAKE_I(tgt, N);
    TAKE(wts, N);
    TAKE(ex, (L + 1) * N * D); TAKE(dx, (L + 1) * N * D);
    size_t eb = 0, db = 0;      /* checked configuration: the sizes are valid */
    attn_tf_block_cache_bytes(&m->ctx, &m->enc[0], c->max_batch, (int)T, (int)T, &eb);
    attn_tf_block_cache_bytes(&m->ctx, &m->dec[0], c->max_batch, (int)T, (int)T, &db);
    a->enc_cache_n = (eb / sizeof(float) + 15) & ~(size_t)15;
    a->dec_cache_n = (db / sizeof(float) + 15) & ~(size_t)15;
    TAKE(enc_cache, L * a->enc_cache_n); TAKE(dec_cache, L * a->dec_cache_n);
    TAKE(emb, N * D);
    TAKE(logits, N * V); TAKE(probs, N * V); TAKE(losses, N);
    TAKE(g1, N * D); TAKE(g2, N * D); TAKE(denc, N * D);
    TAKE(kv, L * 4 * T * D); TAKE(wscr, L * H * T * T); TAKE(step, 8 * D + F + 2 * H + 16);
    a->step_work_bytes = att_work_bytes(&m->ctx, c->compute, 1, c->heads, 1, (int)T, c->hidden);
    a->step_work = base ? (void *)(base + off) : NULL;
    off += (a->step_work_bytes + sizeof(float) - 1) / sizeof(float) + 16;
#undef TAKE
#undef TAKE_I
    a->total = off;
}

/* Parameter views (d2l's state_dict order); p NULL only counts. */
static size_t tf_layout(attn_transformer *m, float *p, float *g) {
    const attn_transformer_config *c = &m->cfg;
    const size_t D = (size_t)c->hidden;
    const size_t ne = attn_tf_block_n_params(c->hidden, c->ffn, 0), nd = attn_tf_block_n_params(c->hidden, c->ffn, 1);
    size_t off = 0;
#define VIEW(name, n) do { m->name = p ? p + off : NULL; m->d_##name = g ? g + off : NULL; off += (n); } while (0)
    VIEW(enc_emb, (size_t)c->src_vocab * D);
    for (int l = 0; l < c->blocks; l++, off += ne)
        if (p) {
            attn_tf_block_bind(&m->enc[l], c->hidden, c->ffn, c->heads, 0, c->dropout, p + off, g ? g + off : NULL);
            m->enc[l].compute = c->compute;
        }
    VIEW(dec_emb, (size_t)c->tgt_vocab * D);
    for (int l = 0; l < c->blocks; l++, off += nd)
        if (p) {
            attn_tf_block_bind(&m->dec[l], c->hidden, c->ffn, c->heads, 1, c->dropout, p + off, g ? g + off : NULL);
            m->dec[l].compute = c->compute;
        }
    VIEW(dense_w, (size_t)c->tgt_vocab * D);
    VIEW(dense_b, (size_t)c->tgt_vocab);
#undef VIEW
    return off;
}

static attn_status tf_check_config(const attn_transformer_config *c) {
    if (c->src_vocab < 5 || c->tgt_vocab < 5 || c->hidden < 1 || c->ffn < 1 || c->heads < 1 || c->blocks < 1 ||
        c->blocks > ATTN_TF_MAX_BLOCKS || c->num_steps < 1 || c->max_batch < 1 || c->src_vocab > (1 << 22) ||
        c->tgt_vocab > (1 << 22) || c->hidden > 4096 || c->ffn > 16384 || c->num_steps > ATTN_TF_MAX_LEN ||
        c->max_batch > 65536)
        return ATTN_ERR_SIZE;
    if (c->hidden % c->heads != 0) return ATTN_ERR_SHAPE;
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return ATTN_ERR_ARG;
    if (c->compute != ATTN_DTYPE_F32 && c->compute != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    return ATTN_OK;
}

static void tf_shard_free(void *p) {
    attn_transformer *s = p;
    free(s->grads);                      /* a shard's params and table belong to the model */
    free(s->acts);
}

static void tf_free_shards(attn_transformer *m) {
    attn__shards_free(m->shards, m->n_shards, sizeof *m->shards, tf_shard_free);
    m->shards = NULL;
    m->n_shards = 0;
}

void attn_transformer_free(attn_transformer *m) {
    if (!m) return;
    tf_free_shards(m);
    free(m->params);
    free(m->acts);
    free(m->pos);
    memset(m, 0, sizeof *m);
}

static attn_status tf_alloc_acts(attn_transformer *m) {
    tf_acts a;
    tf_carve(m, NULL, &a);
    m->acts_floats = a.total;
    m->acts = calloc(a.total + 16, sizeof(float));
    return m->acts ? ATTN_OK : ATTN_ERR_NOMEM;
}

static void tf_acts_get(const attn_transformer *m, tf_acts *a) {
    uintptr_t u = ((uintptr_t)m->acts + 63) & ~(uintptr_t)63;
    tf_carve(m, (float *)u, a);
}

static attn_status tf_alloc(attn_transformer *m, const attn_ctx *ctx, const attn_transformer_config *cfg) {
    attn_status st = tf_check_config(cfg);
    if (st != ATTN_OK) return st;
    memset(m, 0, sizeof *m);
    const attn_kernels *kern;
    if ((st = attn__ctx_resolve(ctx, &m->ctx, &kern)) != ATTN_OK) return st;
    m->cfg = *cfg;
    m->n_params = tf_layout(m, NULL, NULL);
    m->params = calloc(2 * m->n_params, sizeof(float));
    m->pos = malloc(sizeof(float) * (size_t)cfg->num_steps * cfg->hidden);
    if (!m->params || !m->pos) { attn_transformer_free(m); return ATTN_ERR_NOMEM; }
    m->grads = m->params + m->n_params;
    tf_layout(m, m->params, m->grads);
    attn_posenc_table(m->pos, cfg->num_steps, cfg->hidden);
    if ((st = tf_alloc_acts(m)) != ATTN_OK) { attn_transformer_free(m); return st; }
    if ((st = attn_transformer_set_shards(m, ATTN_TF_SHARDS)) != ATTN_OK) { attn_transformer_free(m); return st; }
    return ATTN_OK;
}

/* A shard: a view of the model's parameters with its own gradients and activations for ceil(max_batch/ns)
 * rows, run on one thread (the shards themselves run in parallel). */
static attn_status tf_shard_init(void *model, void *p, int ns) {
    const attn_transformer *m = model;
    attn_transformer *s = p;
    s->cfg = m->cfg;
    s->cfg.max_batch = (m->cfg.max_batch + ns - 1) / ns;
    s->ctx = m->ctx;
    s->ctx.threads = 1;
    s->n_params = m->n_params;
    s->params = m->params;
    s->pos = m->pos;
    if (!(s->grads = calloc(m->n_params, sizeof(float)))) return ATTN_ERR_NOMEM;
    tf_layout(s, s->params, s->grads);
    return tf_alloc_acts(s);
}

attn_status attn_transformer_set_shards(attn_transformer *m, int ns) {
    if (!m || !m->params) return ATTN_ERR_NULL;
    void *shards = m->shards;
    attn_status st = attn__shards_replace(m, &shards, &m->n_shards, sizeof *m->shards, ns, tf_shard_init,
                                          tf_shard_free);
    m->shards = shards;
    return st;
}

attn_status attn_transformer_init(attn_transformer *m, const attn_ctx *ctx, const attn_transformer_config *cfg,
                                  uint64_t seed) {
    if (!m || !cfg) return ATTN_ERR_NULL;
    attn_status st = tf_alloc(m, ctx, cfg);
    if (st != ATTN_OK) return st;
    const size_t D = (size_t)cfg->hidden;
    attn_rng r;
    attn_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)cfg->src_vocab * D; i++) m->enc_emb[i] = attn_rng_normal(&r);
    for (int l = 0; l < cfg->blocks; l++) attn_tf_block_init_weights(&m->enc[l], &r);
    for (size_t i = 0; i < (size_t)cfg->tgt_vocab * D; i++) m->dec_emb[i] = attn_rng_normal(&r);
    for (int l = 0; l < cfg->blocks; l++) attn_tf_block_init_weights(&m->dec[l], &r);
    attn__nmt_xavier(&r, m->dense_w, cfg->tgt_vocab, cfg->hidden);
    float b = 1.0f / sqrtf((float)D);
    attn_rng_fill_uniform(&r, m->dense_b, (size_t)cfg->tgt_vocab, -b, b);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Forward pieces.
 */
/* Encoder over a->src (B,T): ex[0..L], ex[L] (B,T,D) the output. */
/* self_weights (L,B,H,T,T) or NULL: every block's self-attention. */
static attn_status tf_encode(const attn_transformer *m, const tf_acts *a, const int32_t *lens, int B, int train,
                             uint64_t seed, float *self_weights) {
    const int T = m->cfg.num_steps, D = m->cfg.hidden, L = m->cfg.blocks;
    const size_t stride = (size_t)m->cfg.max_batch * T * D;
    const float p = train ? m->cfg.dropout : 0.0f;
    attn_status st = attn_embedding_forward(a->emb, a->src, m->enc_emb, B * T, m->cfg.src_vocab, D);
    if (st != ATTN_OK) return st;
    if ((st = attn_posenc_forward(a->ex, a->emb, m->pos, sqrtf((float)D), B, T, D, p, attn__nmt_sub_seed(seed, 11))) != ATTN_OK)
        return st;
    for (int l = 0; l < L; l++) {
        st = blk_forward(&m->ctx, &m->enc[l], a->enc_cache + (size_t)l * a->enc_cache_n,
                         a->enc_cache_n * sizeof(float), a->ex + (l + 1) * stride,
                         self_weights ? self_weights + (size_t)l * B * m->cfg.heads * T * T : NULL, NULL,
                         a->ex + l * stride, NULL, lens, B, T, T, train, attn__nmt_sub_seed(seed, 100 + (uint64_t)l));
        if (st != ATTN_OK) return st;
    }
    return ATTN_OK;
}

/* Decoder over a->dec (B,Tq) (Tq <= T) against the encoder output ex[L]: dx[0..L]. weights (L,B,H,Tq,T)
 * or NULL: every block's cross-attention; self_weights (L,B,H,Tq,Tq) or NULL: its self-attention. */
static attn_status tf_decode(const attn_transformer *m, const tf_acts *a, const int32_t *lens, int B, int Tq,
                             float *weights, int train, uint64_t seed, float *self_weights) {
    const int T = m->cfg.num_steps, D = m->cfg.hidden, L = m->cfg.blocks, H = m->cfg.heads;
    const size_t stride = (size_t)m->cfg.max_batch * T * D;
    const float p = train ? m->cfg.dropout : 0.0f;
    attn_status st = attn_embedding_forward(a->emb, a->dec, m->dec_emb, B * Tq, m->cfg.tgt_vocab, D);
    if (st != ATTN_OK) return st;
    if ((st = attn_posenc_forward(a->dx, a->emb, m->pos, sqrtf((float)D), B, Tq, D, p, attn__nmt_sub_seed(seed, 12))) != ATTN_OK)
        return st;
    for (int l = 0; l < L; l++) {
        st = blk_forward(&m->ctx, &m->dec[l], a->dec_cache + (size_t)l * a->dec_cache_n,
                         a->dec_cache_n * sizeof(float), a->dx + (l + 1) * stride,
                         self_weights ? self_weights + (size_t)l * B * H * Tq * Tq : NULL,
                         weights ? weights + (size_t)l * B * H * Tq * T : NULL,
                         a->dx + l * stride, a->ex + L * stride, lens, B, Tq, T, train,
                         attn__nmt_sub_seed(seed, 200 + (uint64_t)l));
        if (st != ATTN_OK) return st;
    }
    return ATTN_OK;
}

attn_status attn_transformer_step(attn_transformer *m, float *loss,
                                  const int32_t *X, const int32_t *X_len, const int32_t *Y,
                                  const int32_t *Y_len, int B, int train, int backward, uint64_t seed) {
    if (!m || !m->params || !m->acts || !loss || !X || !X_len || !Y || !Y_len) return ATTN_ERR_NULL;
    const int T = m->cfg.num_steps, D = m->cfg.hidden, L = m->cfg.blocks, V = m->cfg.tgt_vocab;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    attn_status st;
    if ((st = attn__nmt_check_ids(X, (size_t)B * T, m->cfg.src_vocab)) != ATTN_OK) return st;
    if ((st = attn__nmt_check_ids(Y, (size_t)B * T, V)) != ATTN_OK) return st;
    for (int b = 0; b < B; b++) if (X_len[b] < 0 || Y_len[b] < 0) return ATTN_ERR_ARG;
    tf_acts a;
    tf_acts_get(m, &a);
    const int N = B * T;
    const size_t nD = (size_t)N * D, stride = (size_t)m->cfg.max_batch * T * D;
    const float p = train ? m->cfg.dropout : 0.0f, sc = sqrtf((float)D);

    /* ids: decoder input <bos> + Y[:, :-1], targets Y, weights (t < Y_len) / T */
    memcpy(a.src, X, sizeof(int32_t) * (size_t)N);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const size_t i = (size_t)b * T + t;
            a.dec[i] = t == 0 ? ATTN_TOK_BOS : Y[i - 1];
            a.tgt[i] = Y[i];
            a.wts[i] = t < Y_len[b] ? 1.0f / (float)T : 0.0f;
        }
    if ((st = tf_encode(m, &a, X_len, B, train, seed, NULL)) != ATTN_OK) return st;
    if ((st = tf_decode(m, &a, X_len, B, T, NULL, train, seed, NULL)) != ATTN_OK) return st;
    const float *out = a.dx + (size_t)L * stride;
    if ((st = attn_linear_forward(a.logits, out, m->dense_w, m->dense_b, N, D, V)) != ATTN_OK) return st;
    if ((st = attn_softmax_xent_forward(a.losses, a.probs, a.logits, a.tgt, a.wts, N, V)) != ATTN_OK) return st;
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += a.losses[i];
    *loss = (float)sum;
    if (!backward) return ATTN_OK;

    /* cross-entropy and dense: g1 = dL/d(decoder output) */
    float *dlogits = a.logits;
    memset(dlogits, 0, sizeof(float) * (size_t)N * V);
    for (int i = 0; i < N; i++) a.losses[i] = 1.0f;
    if ((st = attn_softmax_xent_backward(dlogits, a.losses, a.probs, a.tgt, a.wts, N, V)) != ATTN_OK) return st;
    memset(a.g1, 0, sizeof(float) * nD);
    if ((st = attn_linear_backward(a.g1, m->d_dense_w, m->d_dense_b, dlogits, out, m->dense_w, N, D, V)) != ATTN_OK)
        return st;
    /* decoder blocks in reverse; the encoder output's gradient gathers in denc */
    memset(a.denc, 0, sizeof(float) * nD);
    float *g = a.g1, *gn = a.g2;
    const float *enc_out = a.ex + (size_t)L * stride;
    for (int l = L - 1; l >= 0; l--) {
        memset(gn, 0, sizeof(float) * nD);
        st = attn_tf_block_backward(&m->ctx, &m->dec[l], a.dec_cache + (size_t)l * a.dec_cache_n,
                                    a.dec_cache_n * sizeof(float),
                                    gn, a.denc, g, a.dx + l * stride, enc_out, X_len, B, T, T, train,
                                    attn__nmt_sub_seed(seed, 200 + (uint64_t)l));
        if (st != ATTN_OK) return st;
        float *tmp = g; g = gn; gn = tmp;
    }
    memset(a.emb, 0, sizeof(float) * nD);
    if ((st = attn_posenc_backward(a.emb, g, sc, B, T, D, p, attn__nmt_sub_seed(seed, 12))) != ATTN_OK) return st;
    if ((st = attn_embedding_backward(m->d_dec_emb, a.emb, a.dec, N, V, D)) != ATTN_OK) return st;
    /* encoder blocks in reverse */
    memcpy(a.g1, a.denc, sizeof(float) * nD);
    g = a.g1; gn = a.g2;
    for (int l = L - 1; l >= 0; l--) {
        memset(gn, 0, sizeof(float) * nD);
        st = attn_tf_block_backward(&m->ctx, &m->enc[l], a.enc_cache + (size_t)l * a.enc_cache_n,
                                    a.enc_cache_n * sizeof(float),
                                    gn, NULL, g, a.ex + l * stride, NULL, X_len, B, T, T, train,
                                    attn__nmt_sub_seed(seed, 100 + (uint64_t)l));
        if (st != ATTN_OK) return st;
        float *tmp = g; g = gn; gn = tmp;
    }
    memset(a.emb, 0, sizeof(float) * nD);
    if ((st = attn_posenc_backward(a.emb, g, sc, B, T, D, p, attn__nmt_sub_seed(seed, 11))) != ATTN_OK) return st;
    return attn_embedding_backward(m->d_enc_emb, a.emb, a.src, N, m->cfg.src_vocab, D);
}

/* ---------------------------------------------------------------------------------------------------
 * Greedy decoding.
 *
 * With the cache, decoder block l keeps its self-attention's projected keys and values of every position
 * so far, kc, vc (T,D), and the encoder output projected once, ek, ev (S,D); a step projects only the new
 * position and attends (one query, no mask: every cached key is in the past) over the t+1 cached keys.
 */
static attn_status tf_block_step(const attn_ctx *cx, const attn_tf_block *b, float *kc, float *vc, const float *ek, const float *ev,
                                 int Tmax, int S, int t, float *y, float *weights, const float *x,
                                 const int32_t *src_len, float *s, void *work, size_t work_bytes) {
    const int D = b->D, H = b->H;
    float *q = s, *ctx = s + D, *at = s + 2 * D, *z = s + 3 * D, *y1 = s + 4 * D, *y2 = s + 5 * D, *f = s + 6 * D,
          *mr = s + 7 * D, *stats = s + 7 * D + 2, *h = s + 7 * D + 2 + 2 * H;   /* mr: mean, rstd */
    attn_sdpa_desc d;
    attn_mask mc;
    memset(&mc, 0, sizeof mc);
    mc.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    mc.valid_lens = src_len;
    attn_status st;
    /* self-attention over the cache */
    if ((st = attn_linear_forward(q, x, b->w.wq, NULL, 1, D, D)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(kc + (size_t)t * D, x, b->w.wk, NULL, 1, D, D)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(vc + (size_t)t * D, x, b->w.wv, NULL, 1, D, D)) != ATTN_OK) return st;
    if ((st = att_desc(&d, b->compute, 1, H, 1, t + 1, D, (int64_t)Tmax * D, NULL, 0.0f, 0)) != ATTN_OK) return st;
    if ((st = attn_sdpa_forward(cx, &d, ctx, stats, NULL, q, kc, vc, work, work_bytes)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(at, ctx, b->w.wo, NULL, 1, D, D)) != ATTN_OK) return st;
    if ((st = attn__addnorm_forward(y1, z, mr, mr + 1, x, at, b->w.ln1_g, b->w.ln1_b, 1, D, 0.0f, 0, NULL)) != ATTN_OK) return st;
    /* cross-attention over the projected encoder output */
    if ((st = attn_linear_forward(q, y1, b->w.xwq, NULL, 1, D, D)) != ATTN_OK) return st;
    if ((st = att_desc(&d, b->compute, 1, H, 1, S, D, (int64_t)S * D, &mc, 0.0f, 0)) != ATTN_OK) return st;
    if ((st = attn_sdpa_forward(cx, &d, ctx, stats, weights, q, ek, ev, work, work_bytes)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(at, ctx, b->w.xwo, NULL, 1, D, D)) != ATTN_OK) return st;
    if ((st = attn__addnorm_forward(y2, z, mr, mr + 1, y1, at, b->w.ln2_g, b->w.ln2_b, 1, D, 0.0f, 0, NULL)) != ATTN_OK) return st;
    /* feed-forward */
    if ((st = attn__ffn_forward(f, h, y2, b->w.w1, b->w.b1, b->w.w2, b->w.b2, 1, D, b->F)) != ATTN_OK) return st;
    return attn__addnorm_forward(y, z, mr, mr + 1, y2, f, b->w.ln3_g, b->w.ln3_b, 1, D, 0.0f, 0, NULL);
}

attn_status attn_tf_block_step_sizes(const attn_ctx *ctx, const attn_tf_block *b, int Tmax, int S,
                                     size_t *scratch_floats, size_t *work_bytes) {
    if (!b || !scratch_floats || !work_bytes) return ATTN_ERR_NULL;
    if (!b->decoder) return ATTN_ERR_ARG;
    if (!attn__dim_ok(Tmax) || !attn__dim_ok(S) || Tmax > ATTN_TF_MAX_LEN || S > ATTN_TF_MAX_LEN) return ATTN_ERR_SIZE;
    attn_ctx cx = ctx ? *ctx : attn_ctx_default();
    const int n = Tmax > S ? Tmax : S;
    *scratch_floats = 8 * (size_t)b->D + (size_t)b->F + 2 * (size_t)b->H + 16;
    *work_bytes = att_work_bytes(&cx, b->compute, 1, b->H, 1, n, b->D);
    return *work_bytes ? ATTN_OK : ATTN_ERR_SIZE;
}

attn_status attn_tf_block_step(const attn_ctx *ctx, const attn_tf_block *b, float *kc, float *vc, const float *ek,
                               const float *ev, int Tmax, int S, int t, float *y, float *cross_weights,
                               const float *x, const int32_t *src_len, float *scratch, void *work,
                               size_t work_bytes) {
    if (!b || !kc || !vc || !ek || !ev || !y || !x || !src_len || !scratch || !work) return ATTN_ERR_NULL;
    if (!b->decoder || !b->w.xwq) return ATTN_ERR_ARG;
    if (t < 0 || t >= Tmax || S < 1 || Tmax > ATTN_TF_MAX_LEN || S > ATTN_TF_MAX_LEN) return ATTN_ERR_SIZE;
    attn_ctx cx = ctx ? *ctx : attn_ctx_default();
    return tf_block_step(&cx, b, kc, vc, ek, ev, Tmax, S, t, y, cross_weights, x, src_len, scratch, work, work_bytes);
}

attn_status attn_transformer_translate(attn_transformer *m, int32_t *out, int *n_out, float *weights,
                                       float *logits, const int32_t *src, int src_len, int use_cache) {
    if (!m || !m->params || !m->acts || !out || !n_out || !src) return ATTN_ERR_NULL;
    const int T = m->cfg.num_steps, D = m->cfg.hidden, L = m->cfg.blocks, V = m->cfg.tgt_vocab, H = m->cfg.heads;
    attn_status st;
    if ((st = attn__nmt_check_ids(src, (size_t)T, m->cfg.src_vocab)) != ATTN_OK) return st;
    if (src_len < 0) return ATTN_ERR_ARG;
    tf_acts a;
    tf_acts_get(m, &a);
    const int32_t lens[1] = {src_len};
    const size_t stride = (size_t)m->cfg.max_batch * T * D, TD = (size_t)T * D;
    memcpy(a.src, src, sizeof(int32_t) * (size_t)T);
    if ((st = tf_encode(m, &a, lens, 1, 0, 0, NULL)) != ATTN_OK) return st;
    const float *enc_out = a.ex + (size_t)L * stride;
    if (weights) memset(weights, 0, sizeof(float) * (size_t)L * H * T * T);
    if (logits) memset(logits, 0, sizeof(float) * (size_t)T * V);
    if (use_cache)       /* project the encoder output once per decoder block: ek, ev (S,D) */
        for (int l = 0; l < L; l++) {
            float *kv = a.kv + (size_t)l * 4 * TD;
            if ((st = attn_linear_forward(kv + 2 * TD, enc_out, m->dec[l].w.xwk, NULL, T, D, D)) != ATTN_OK) return st;
            if ((st = attn_linear_forward(kv + 3 * TD, enc_out, m->dec[l].w.xwv, NULL, T, D, D)) != ATTN_OK) return st;
        }
    float *x = a.g1, *y = a.g2, *row = a.logits, *xl = NULL;
    int32_t tok = ATTN_TOK_BOS;
    *n_out = 0;
    for (int t = 0; t < T; t++) {
        if (use_cache) {
            if ((st = attn_embedding_forward(a.emb, &tok, m->dec_emb, 1, V, D)) != ATTN_OK) return st;
            if ((st = attn_posenc_forward(x, a.emb, m->pos + (size_t)t * D, sqrtf((float)D), 1, 1, D, 0.0f, 0)) != ATTN_OK)
                return st;
            for (int l = 0; l < L; l++) {
                float *kv = a.kv + (size_t)l * 4 * TD;
                st = tf_block_step(&m->ctx, &m->dec[l], kv, kv + TD, kv + 2 * TD, kv + 3 * TD, T, T, t, y,
                                   weights ? a.wscr : NULL, x, lens, a.step, a.step_work, a.step_work_bytes);
                if (st != ATTN_OK) return st;
                if (weights)                                    /* (1,H,1,S) -> [l][h][t] */
                    for (int h = 0; h < H; h++)
                        memcpy(weights + (((size_t)l * H + h) * T + t) * T, a.wscr + (size_t)h * T, sizeof(float) * T);
                float *tmp = x; x = y; y = tmp;
            }
            xl = x;
        } else {          /* the whole prefix again: decoder over a.dec[0..t] with the causal mask */
            a.dec[t] = tok;
            if ((st = tf_decode(m, &a, lens, 1, t + 1, weights ? a.wscr : NULL, 0, 0, NULL)) != ATTN_OK) return st;
            if (weights)    /* block l's (1,H,t+1,S) written at wscr + l·H·(t+1)·T: keep row t */
                for (int l = 0; l < L; l++)
                    for (int h = 0; h < H; h++)
                        memcpy(weights + (((size_t)l * H + h) * T + t) * T,
                               a.wscr + (((size_t)l * H + h) * (t + 1) + t) * T, sizeof(float) * T);
            xl = a.dx + (size_t)L * stride + (size_t)t * D;
        }
        if ((st = attn_linear_forward(row, xl, m->dense_w, m->dense_b, 1, D, V)) != ATTN_OK) return st;
        if (logits) memcpy(logits + (size_t)t * V, row, sizeof(float) * V);
        int best = 0;
        for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        if (best == ATTN_TOK_EOS) break;
        out[(*n_out)++] = best;
        tok = best;
    }
    return ATTN_OK;
}

attn_status attn_transformer_attention(attn_transformer *m, float *enc_self, float *dec_self, float *cross,
                                       const int32_t *src, int src_len, const int32_t *out, int n_out) {
    if (!m || !m->params || !m->acts || !src || (n_out > 0 && !out)) return ATTN_ERR_NULL;
    const int T = m->cfg.num_steps, V = m->cfg.tgt_vocab;
    attn_status st;
    if ((st = attn__nmt_check_ids(src, (size_t)T, m->cfg.src_vocab)) != ATTN_OK) return st;
    if (src_len < 0 || n_out < 0) return ATTN_ERR_ARG;
    const int Tq = n_out + 1 < T ? n_out + 1 : T;
    tf_acts a;
    tf_acts_get(m, &a);
    const int32_t lens[1] = {src_len};
    memcpy(a.src, src, sizeof(int32_t) * (size_t)T);
    /* the decoder's input: <bos>, then the output but its last token (teacher forcing) */
    a.dec[0] = ATTN_TOK_BOS;
    for (int t = 1; t < Tq; t++) {
        if (out[t - 1] < 0 || out[t - 1] >= V) return ATTN_ERR_ARG;
        a.dec[t] = out[t - 1];
    }
    if ((st = tf_encode(m, &a, lens, 1, 0, 0, enc_self)) != ATTN_OK) return st;
    return tf_decode(m, &a, lens, 1, Tq, cross, 0, 0, dec_self);
}

/* ---------------------------------------------------------------------------------------------------
 * Training epoch: every batch split in the model's shards (fixed parts, whatever the thread count), run
 * on up to that many threads, the gradients summed in shard order (the driver is nmt_common.c's).
 */
static attn_status tf_shard_step(void *model, int k, float *loss, const int32_t *X, const int32_t *X_len,
                                 const int32_t *Y, const int32_t *Y_len, int n, uint64_t seed) {
    attn_transformer *s = &((attn_transformer *)model)->shards[k];
    memset(s->grads, 0, sizeof(float) * s->n_params);
    return attn_transformer_step(s, loss, X, X_len, Y, Y_len, n, 1, 1, seed);
}

attn_status attn_transformer_train_epoch(attn_transformer *m, attn_adam *opt, attn_rng *rng,
                                         const int32_t *X, const int32_t *X_len,
                                         const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                         float clip, uint64_t *seed, double *loss_sum, int64_t *tokens) {
    return attn_transformer_train_epoch_part(m, opt, rng, X, X_len, Y, Y_len, N, batch, clip, seed, loss_sum, tokens,
                                             0, 0, NULL, NULL);
}

/* The epoch driver's view of m for shards [first, first + count) (count 0: all of them, summed here), after
 * the checks both training calls make. */
static attn_status tf_make_trainer(attn__nmt_trainer *tr, attn_transformer *m, const attn_adam *opt, int batch,
                                   int first, int count, attn_shard_combine_fn combine, void *user) {
    if (!m->shards) return ATTN_ERR_NULL;
    attn_status st = attn__nmt_trainer_init(tr, m, tf_shard_step, m->params, m->grads, m->n_params, m->n_shards,
                                            m->cfg.num_steps, m->cfg.max_batch, opt, batch, first, count, combine,
                                            user);
    if (st != ATTN_OK) return st;
    for (int k = 0; k < m->n_shards; k++) tr->shard_grads[k] = m->shards[k].grads;
    return ATTN_OK;
}

attn_status attn_transformer_train_epoch_part(attn_transformer *m, attn_adam *opt, attn_rng *rng,
                                              const int32_t *X, const int32_t *X_len,
                                              const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                              float clip, uint64_t *seed, double *loss_sum, int64_t *tokens,
                                              int first, int count, attn_shard_combine_fn combine, void *user) {
    if (!m || !opt || !rng || !X || !X_len || !Y || !Y_len || !seed || !loss_sum || !tokens) return ATTN_ERR_NULL;
    if (N < 1) return ATTN_ERR_SIZE;
    attn__nmt_trainer tr;
    attn_status st = tf_make_trainer(&tr, m, opt, batch, first, count, combine, user);
    if (st != ATTN_OK) return st;
    return attn__nmt_train_epoch(&tr, opt, rng, X, X_len, Y, Y_len, N, batch, clip, seed, loss_sum, tokens);
}

attn_status attn_transformer_train_step_part(attn_transformer *m, attn_adam *opt, const int32_t *X,
                                             const int32_t *X_len, const int32_t *Y, const int32_t *Y_len, int B,
                                             float clip, uint64_t *seed, int first, int count,
                                             attn_shard_combine_fn combine, void *user, float *loss) {
    if (!m || !opt || !X || !X_len || !Y || !Y_len || !seed || !loss) return ATTN_ERR_NULL;
    attn__nmt_trainer tr;
    attn_status st = tf_make_trainer(&tr, m, opt, B, first, count, combine, user);
    if (st != ATTN_OK) return st;
    *loss = 0.0f;
    return attn__nmt_train_step(&tr, opt, X, X_len, Y, Y_len, B, clip, seed, loss);
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
#define TF_MAX_TENSORS (5 + 22 * ATTN_TF_MAX_BLOCKS)

static int tf_add_block(attn__nmt_named *t, int n, const char *pre, const attn_tf_block *b) {
    const int D = b->D, F = b->F;
    char nm[64];
    const char *const att[2] = {b->decoder ? "attention1" : "attention", "attention2"};
    const char *const wn[4] = {"W_q", "W_k", "W_v", "W_o"};
    float *const sw[4] = {b->w.wq, b->w.wk, b->w.wv, b->w.wo}, *const xw[4] = {b->w.xwq, b->w.xwk, b->w.xwv, b->w.xwo};
    for (int i = 0; i < 4; i++) { snprintf(nm, sizeof nm, "%s.%s.%s.weight", pre, att[0], wn[i]); n = attn__nmt_add(t, n, nm, sw[i], 2, D, D); }
    snprintf(nm, sizeof nm, "%s.addnorm1.ln.weight", pre); n = attn__nmt_add(t, n, nm, b->w.ln1_g, 1, D, 0);
    snprintf(nm, sizeof nm, "%s.addnorm1.ln.bias", pre);   n = attn__nmt_add(t, n, nm, b->w.ln1_b, 1, D, 0);
    if (b->decoder) {
        for (int i = 0; i < 4; i++) { snprintf(nm, sizeof nm, "%s.%s.%s.weight", pre, att[1], wn[i]); n = attn__nmt_add(t, n, nm, xw[i], 2, D, D); }
        snprintf(nm, sizeof nm, "%s.addnorm2.ln.weight", pre); n = attn__nmt_add(t, n, nm, b->w.ln2_g, 1, D, 0);
        snprintf(nm, sizeof nm, "%s.addnorm2.ln.bias", pre);   n = attn__nmt_add(t, n, nm, b->w.ln2_b, 1, D, 0);
    }
    snprintf(nm, sizeof nm, "%s.ffn.dense1.weight", pre); n = attn__nmt_add(t, n, nm, b->w.w1, 2, F, D);
    snprintf(nm, sizeof nm, "%s.ffn.dense1.bias", pre);   n = attn__nmt_add(t, n, nm, b->w.b1, 1, F, 0);
    snprintf(nm, sizeof nm, "%s.ffn.dense2.weight", pre); n = attn__nmt_add(t, n, nm, b->w.w2, 2, D, F);
    snprintf(nm, sizeof nm, "%s.ffn.dense2.bias", pre);   n = attn__nmt_add(t, n, nm, b->w.b2, 1, D, 0);
    const char *last = b->decoder ? "addnorm3" : "addnorm2";
    snprintf(nm, sizeof nm, "%s.%s.ln.weight", pre, last); n = attn__nmt_add(t, n, nm, b->w.ln3_g, 1, D, 0);
    snprintf(nm, sizeof nm, "%s.%s.ln.bias", pre, last);   n = attn__nmt_add(t, n, nm, b->w.ln3_b, 1, D, 0);
    return n;
}

static int tf_list(const attn_transformer *m, attn__nmt_named *t) {
    const attn_transformer_config *c = &m->cfg;
    char pre[64];
    int n = 0;
    n = attn__nmt_add(t, n, "encoder.embedding.weight", m->enc_emb, 2, c->src_vocab, c->hidden);
    for (int l = 0; l < c->blocks; l++) { snprintf(pre, sizeof pre, "encoder.blks.block%d", l); n = tf_add_block(t, n, pre, &m->enc[l]); }
    n = attn__nmt_add(t, n, "decoder.embedding.weight", m->dec_emb, 2, c->tgt_vocab, c->hidden);
    for (int l = 0; l < c->blocks; l++) { snprintf(pre, sizeof pre, "decoder.blks.block%d", l); n = tf_add_block(t, n, pre, &m->dec[l]); }
    n = attn__nmt_add(t, n, "decoder.dense.weight", m->dense_w, 2, c->tgt_vocab, c->hidden);
    n = attn__nmt_add(t, n, "decoder.dense.bias", m->dense_b, 1, c->tgt_vocab, 0);
    return n;
}

#define TF_N_META 9
static const char *const tf_meta_names[TF_N_META] = {"model", "src_vocab", "tgt_vocab", "hidden", "ffn", "heads",
                                                     "blocks", "dropout", "num_steps"};

attn_status attn_transformer_save_train(const attn_transformer *m, const attn_adam *opt, const char *const *keys,
                                        const char *const *vals, int n_extra, const char *path, char *err,
                                        size_t err_size) {
    if (!m || !m->params || !path) return ATTN_ERR_NULL;
    if (opt && (opt->n != m->n_params || !opt->m)) return ATTN_ERR_SHAPE;
    attn__nmt_named t[TF_MAX_TENSORS + 2];
    const int n = tf_list(m, t);
    const attn_transformer_config *c = &m->cfg;
    char cfgv[TF_N_META][32];
    snprintf(cfgv[0], 32, "transformer");
    snprintf(cfgv[1], 32, "%d", c->src_vocab); snprintf(cfgv[2], 32, "%d", c->tgt_vocab);
    snprintf(cfgv[3], 32, "%d", c->hidden);    snprintf(cfgv[4], 32, "%d", c->ffn);
    snprintf(cfgv[5], 32, "%d", c->heads);     snprintf(cfgv[6], 32, "%d", c->blocks);
    snprintf(cfgv[7], 32, "%.9g", (double)c->dropout);
    snprintf(cfgv[8], 32, "%d", c->num_steps);
    /* then the attention's compute, as a word (missing in older checkpoints: f32) */
    const char *names[TF_N_META + 1], *vp[TF_N_META + 1];
    for (int i = 0; i < TF_N_META; i++) { names[i] = tf_meta_names[i]; vp[i] = cfgv[i]; }
    names[TF_N_META] = "compute";
    vp[TF_N_META] = attn__compute_name(c->compute);
    return attn__nmt_save_train(path, t, n, opt, names, vp, TF_N_META + 1, keys, vals, n_extra, err, err_size);
}

attn_status attn_transformer_save(const attn_transformer *m, const char *path, char *err, size_t err_size) {
    return attn_transformer_save_train(m, NULL, NULL, NULL, 0, path, err, err_size);
}

attn_status attn_transformer_load_train(attn_transformer *m, attn_adam *opt, const attn_ctx *ctx, const char *path,
                                        int max_batch, char *err, size_t err_size) {
    if (!m || !path) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    const char *kind = attn_st_meta(&f, "model");
    if (!kind || strcmp(kind, "transformer") != 0) {
        if (err && err_size) snprintf(err, err_size, "%s: not a Transformer checkpoint (metadata 'model' is %s)", path,
                                      kind ? kind : "missing");
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    double v[TF_N_META + 1];
    if ((st = attn__nmt_meta_numbers(&f, path, tf_meta_names + 1, TF_N_META - 1, v + 1, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    static const char *const step_name[1] = {"optimizer_t"};
    if (opt && attn_st_find(&f, "optimizer.m") &&
        (st = attn__nmt_meta_numbers(&f, path, step_name, 1, v + TF_N_META, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    attn_transformer_config c;
    memset(&c, 0, sizeof c);
    c.src_vocab = (int)v[1]; c.tgt_vocab = (int)v[2]; c.hidden = (int)v[3]; c.ffn = (int)v[4];
    c.heads = (int)v[5]; c.blocks = (int)v[6]; c.dropout = (float)v[7]; c.num_steps = (int)v[8];
    c.max_batch = max_batch > 1 ? max_batch : 1;
    const char *cs = attn_st_meta(&f, "compute");
    if (!attn__compute_parse(cs, &c.compute)) {
        if (err && err_size) snprintf(err, err_size, "%s: metadata \"compute\" = \"%s\", expected f32 or bf16", path, cs);
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    if ((st = tf_alloc(m, ctx, &c)) != ATTN_OK) {
        if (err && err_size) snprintf(err, err_size, "%s: the configuration in the metadata is invalid", path);
        attn_st_free(&f);
        return st == ATTN_ERR_NOMEM ? st : ATTN_ERR_FORMAT;
    }
    attn__nmt_named t[TF_MAX_TENSORS];
    const int n = tf_list(m, t);
    st = attn__nmt_read_tensors(&f, path, t, n, err, err_size);
    if (st == ATTN_OK && opt)
        st = attn__nmt_read_optimizer(&f, path, opt, m->n_params, (int64_t)v[TF_N_META], err, err_size);
    attn_st_free(&f);
    if (st != ATTN_OK) attn_transformer_free(m);
    return st;
}

attn_status attn_transformer_load(attn_transformer *m, const attn_ctx *ctx, const char *path, int max_batch, char *err,
                                  size_t err_size) {
    return attn_transformer_load_train(m, NULL, ctx, path, max_batch, err, err_size);
}
