/*
 * varlen.c — packed variable-length batches: n sequences stored back to back as (total, H, D) with
 * cumulative offsets, run through the scaled dot-product dispatch one sequence at a time.
 *
 * Sequence i is a batch of one, a sub-descriptor whose layouts are strided views into the packed buffers
 * (head stride D, row stride q_row, ...): no copy, and the same kernels, items and arithmetic as a call
 * for that sequence alone — so the packed result is bitwise the per-sequence one, and thread-count
 * independent, because each attn_sdpa_forward/backward is. The sequences share one workspace (the
 * largest any of them needs). The cost is one OpenMP region per sequence; docs/DESIGN.md ("Packed
 * batches") gives the measured overhead and why the items are not pooled across sequences.
 */
#include "internal.h"

#include <stdint.h>

static int seq_len(const int32_t *cu, int i) { return cu[i + 1] - cu[i]; }

/* The offsets: cu[0] = 0, nondecreasing, each length at most ATTN_MAX_DIM. */
static attn_status check_offsets(const int32_t *cu, int n) {
    if (!cu) return ATTN_ERR_NULL;
    if (cu[0] != 0) return ATTN_ERR_ARG;
    for (int i = 0; i < n; i++) {
        if (cu[i + 1] < cu[i]) return ATTN_ERR_ARG;
        if (seq_len(cu, i) > ATTN_MAX_DIM) return ATTN_ERR_SIZE;
    }
    return ATTN_OK;
}

/* A packed operand of `total` tokens with `heads` rows of `inner` per token: the heads of a token must
 * fit in its row stride (so no two elements share an address) and the last element's offset in int64. */
static attn_status check_rows(int64_t row, int64_t total, int heads, int inner) {
    const int64_t width = (int64_t)heads * inner;
    if (row < width) return ATTN_ERR_STRIDE;
    if (total > 1 && row > (INT64_MAX - width) / (total - 1)) return ATTN_ERR_STRIDE;
    return ATTN_OK;
}

attn_status attn_sdpa_varlen_desc_init(attn_sdpa_varlen_desc *d, int n, const int32_t *cu_seqlens_q,
                                       const int32_t *cu_seqlens_k, int H, int D, int Dv) {
    if (!d) return ATTN_ERR_NULL;
    *d = (attn_sdpa_varlen_desc){0};
    d->n = n; d->cu_seqlens_q = cu_seqlens_q; d->cu_seqlens_k = cu_seqlens_k;
    d->H = H; d->Hkv = H; d->D = D; d->Dv = Dv;
    if (n < 1 || n > ATTN_MAX_DIM || H < 1 || H > ATTN_MAX_DIM || D < 1 || D > ATTN_MAX_DIM || Dv < 1 ||
        Dv > ATTN_MAX_DIM)
        return ATTN_ERR_SIZE;
    d->scale = (float)(1.0 / sqrt((double)D));
    d->q_row = (int64_t)H * D; d->k_row = (int64_t)H * D;
    d->v_row = (int64_t)H * Dv; d->out_row = (int64_t)H * Dv;
    return ATTN_OK;
}

attn_status attn_sdpa_varlen_validate(const attn_sdpa_varlen_desc *d) {
    if (!d) return ATTN_ERR_NULL;
    if (d->n < 1 || d->n > ATTN_MAX_DIM) return ATTN_ERR_SIZE;
    const int sizes[4] = {d->H, d->Hkv, d->D, d->Dv};
    for (int i = 0; i < 4; i++)
        if (sizes[i] < 1 || sizes[i] > ATTN_MAX_DIM) return ATTN_ERR_SIZE;
    if (d->H % d->Hkv != 0) return ATTN_ERR_SHAPE;
    attn_status st;
    if ((st = check_offsets(d->cu_seqlens_q, d->n)) != ATTN_OK) return st;
    if ((st = check_offsets(d->cu_seqlens_k, d->n)) != ATTN_OK) return st;
    if (!isfinite(d->scale)) return ATTN_ERR_ARG;
    if (!(d->dropout >= 0.0f && d->dropout < 1.0f)) return ATTN_ERR_ARG;
    if (d->dtype != ATTN_DTYPE_F32 && d->dtype != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    if (d->compute != ATTN_DTYPE_F32 && d->compute != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    const int64_t tq = d->cu_seqlens_q[d->n], tk = d->cu_seqlens_k[d->n];
    if ((st = check_rows(d->q_row, tq, d->H, d->D)) != ATTN_OK) return st;
    if ((st = check_rows(d->out_row, tq, d->H, d->Dv)) != ATTN_OK) return st;
    if ((st = check_rows(d->k_row, tk, d->Hkv, d->D)) != ATTN_OK) return st;
    return check_rows(d->v_row, tk, d->Hkv, d->Dv);
}

/* Sequence i as a batch of one over the packed buffers (its tensors start at its first token). Only
 * for sequences with at least one query and one key. */
static attn_sdpa_desc seq_desc(const attn_sdpa_varlen_desc *d, int i) {
    attn_sdpa_desc s = {0};
    s.B = 1; s.H = d->H; s.Hkv = d->Hkv; s.D = d->D; s.Dv = d->Dv;
    s.T = seq_len(d->cu_seqlens_q, i);
    s.S = seq_len(d->cu_seqlens_k, i);
    s.scale = d->scale;
    /* (1, heads, tokens, inner): the batch stride is never used with B = 1, but must be a valid one */
    s.q = (attn_layout){d->q_row * s.T, d->D, d->q_row};
    s.k = (attn_layout){d->k_row * s.S, d->D, d->k_row};
    s.v = (attn_layout){d->v_row * s.S, d->Dv, d->v_row};
    s.out = (attn_layout){d->out_row * s.T, d->Dv, d->out_row};
    s.mask.causal = d->causal;
    s.dropout = d->dropout;
    s.seed = d->seed + (uint64_t)i;
    s.dtype = d->dtype;
    s.compute = d->compute;
    return s;
}

static size_t elem_size(const attn_sdpa_varlen_desc *d) { return d->dtype == ATTN_DTYPE_BF16 ? 2 : 4; }

attn_status attn_sdpa_varlen_workspace_size(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d, attn_pass pass,
                                            size_t *bytes) {
    attn_status st = attn_sdpa_varlen_validate(d);
    if (st != ATTN_OK) return st;
    if (!bytes) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    attn_ctx c;
    const attn_kernels *kern;
    if ((st = attn__ctx_resolve(ctx, &c, &kern)) != ATTN_OK) return st;
    size_t most = 0;
    for (int i = 0; i < d->n; i++) {
        if (seq_len(d->cu_seqlens_q, i) == 0 || seq_len(d->cu_seqlens_k, i) == 0) continue;
        const attn_sdpa_desc s = seq_desc(d, i);
        size_t b;
        if ((st = attn_sdpa_workspace_size(&c, &s, pass, &b)) != ATTN_OK) return st;
        if (b > most) most = b;
    }
    *bytes = most;
    return ATTN_OK;
}

attn_status attn_sdpa_varlen_forward(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d,
                                     void *out, float *stats,
                                     const void *q, const void *k, const void *v,
                                     void *work, size_t work_bytes) {
    size_t need;
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = attn_sdpa_varlen_workspace_size(&c, d, ATTN_PASS_FORWARD, &need)) != ATTN_OK) return st;
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    if (need > 0 && (!work || work_bytes < need)) return ATTN_ERR_WORKSPACE;
    const size_t es = elem_size(d);
    for (int i = 0; i < d->n; i++) {
        const int64_t q0 = d->cu_seqlens_q[i], k0 = d->cu_seqlens_k[i];
        const int T = seq_len(d->cu_seqlens_q, i), S = seq_len(d->cu_seqlens_k, i);
        float *st_i = stats ? stats + 2 * (int64_t)d->H * q0 : NULL;   /* (H,T,2) */
        if (T == 0) continue;
        if (S == 0) {
            /* no keys: every row fully masked */
            for (int64_t t = 0; t < T; t++) memset((char *)out + (size_t)((q0 + t) * d->out_row) * es, 0,
                                                   (size_t)d->H * d->Dv * es);
            if (st_i)
                for (int64_t r = 0; r < (int64_t)d->H * T; r++) { st_i[2 * r] = -INFINITY; st_i[2 * r + 1] = 0; }
            continue;
        }
        const attn_sdpa_desc s = seq_desc(d, i);
        st = attn_sdpa_forward(&c, &s, (char *)out + (size_t)(q0 * d->out_row) * es, st_i, NULL,
                               (const char *)q + (size_t)(q0 * d->q_row) * es,
                               (const char *)k + (size_t)(k0 * d->k_row) * es,
                               (const char *)v + (size_t)(k0 * d->v_row) * es, work, work_bytes);
        if (st != ATTN_OK) return st;
    }
    return ATTN_OK;
}

attn_status attn_sdpa_varlen_backward(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d,
                                      void *dq, void *dk, void *dv,
                                      const void *dout,
                                      const void *q, const void *k, const void *v,
                                      const void *out, const float *stats,
                                      void *work, size_t work_bytes) {
    size_t need;
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = attn_sdpa_varlen_workspace_size(&c, d, ATTN_PASS_BACKWARD, &need)) != ATTN_OK) return st;
    if (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !stats) return ATTN_ERR_NULL;
    if (need > 0 && (!work || work_bytes < need)) return ATTN_ERR_WORKSPACE;
    const size_t es = elem_size(d);
    for (int i = 0; i < d->n; i++) {
        const int64_t q0 = d->cu_seqlens_q[i], k0 = d->cu_seqlens_k[i];
        /* no queries or no keys: nothing flows back */
        if (seq_len(d->cu_seqlens_q, i) == 0 || seq_len(d->cu_seqlens_k, i) == 0) continue;
        const attn_sdpa_desc s = seq_desc(d, i);
        const size_t oq = (size_t)(q0 * d->q_row) * es, ok = (size_t)(k0 * d->k_row) * es;
        const size_t ov = (size_t)(k0 * d->v_row) * es, oo = (size_t)(q0 * d->out_row) * es;
        st = attn_sdpa_backward(&c, &s, (char *)dq + oq, (char *)dk + ok, (char *)dv + ov,
                                (const char *)dout + oo, (const char *)q + oq, (const char *)k + ok,
                                (const char *)v + ov, (const char *)out + oo, stats + 2 * (int64_t)d->H * q0,
                                work, work_bytes);
        if (st != ATTN_OK) return st;
    }
    return ATTN_OK;
}
