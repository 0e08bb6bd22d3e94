/*
 * varlen.c — packed variable-length batches: n sequences stored back to back as (total, H, D) with
 * cumulative offsets, run through the scaled dot-product dispatch one sequence at a time.
 *
 * Sequence i is a contiguous batch of one: its rows are copied out of the packed buffers into the
 * workspace ((H,T,D) per tensor), run through attn_sdpa_forward/backward, and the results written back —
 * the same kernels, items and arithmetic as a call for that sequence alone, so the packed result is
 * bitwise the per-sequence one, and thread-count independent, because each attn_sdpa_* call is. Copies
 * and not strided views: a packed row stride of H·D floats (a power of two) makes the K and V rows the
 * kernels stream alias in the caches (measured 1.5x the CPU time of contiguous copies at H=8, D=64).
 * The sequences share one workspace (the largest any of them needs: the kernel's part, then the copies).
 * The cost is one OpenMP region per sequence; docs/DESIGN.md ("Packed batches") says why the items are
 * not pooled across sequences.
 */
#include "internal.h"

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* Sequence i as a contiguous batch of one: q (1,H,T,D), k (1,Hkv,S,D), v (1,Hkv,S,Dv), out (1,H,T,Dv). Only
 * for sequences with at least one query and one key. */
static attn_sdpa_desc seq_desc(const attn_sdpa_varlen_desc *d, int i) {
    attn_sdpa_desc s;
    const int T = seq_len(d->cu_seqlens_q, i), S = seq_len(d->cu_seqlens_k, i);
    attn_sdpa_desc_init(&s, 1, d->H, T, S, d->D, d->Dv);
    s.Hkv = d->Hkv;
    s.k = (attn_layout){(int64_t)d->Hkv * S * d->D, (int64_t)S * d->D, d->D};
    s.v = (attn_layout){(int64_t)d->Hkv * S * d->Dv, (int64_t)S * d->Dv, d->Dv};
    s.scale = d->scale;
    s.mask.causal = d->causal;
    s.dropout = d->dropout;
    s.seed = d->seed + (uint64_t)i;
    s.dtype = d->dtype;
    s.compute = d->compute;
    return s;
}

/* What the pass runs for sequence i: the forward reads q and writes out straight in the packed tensors
 * (each row once, through strides) and K, V from contiguous copies; the backward, which streams every
 * tensor many times, runs on contiguous copies of all of them. */
static attn_sdpa_desc run_desc(const attn_sdpa_varlen_desc *d, int i, attn_pass pass) {
    attn_sdpa_desc s = seq_desc(d, i);
    if (pass == ATTN_PASS_FORWARD) {
        s.q = (attn_layout){d->q_row * s.T, d->D, d->q_row};
        s.out = (attn_layout){d->out_row * s.T, d->Dv, d->out_row};
    }
    return s;
}

static size_t elem_size(const attn_sdpa_varlen_desc *d) { return d->dtype == ATTN_DTYPE_BF16 ? 2 : 4; }

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* The contiguous copies of a sequence: which tensors a pass copies, their rows and widths. */
enum { CP_Q, CP_K, CP_V, CP_OUT, CP_DOUT, CP_DQ, CP_DK, CP_DV, CP_COUNT };

/* the copies of a pass are [cp_first, cp_count) */
static int cp_first(attn_pass pass) { return pass == ATTN_PASS_FORWARD ? CP_K : CP_Q; }
static int cp_count(attn_pass pass) { return pass == ATTN_PASS_FORWARD ? CP_OUT : CP_COUNT; }

/* heads and width of copy c; tokens: T for q-side tensors, S for k-side */
static void cp_shape(const attn_sdpa_varlen_desc *d, int c, int *heads, int *inner, int *kside) {
    *kside = c == CP_K || c == CP_V || c == CP_DK || c == CP_DV;
    *heads = *kside ? d->Hkv : d->H;
    *inner = (c == CP_V || c == CP_DV || c == CP_OUT || c == CP_DOUT) ? d->Dv : d->D;
}

static int64_t cp_row(const attn_sdpa_varlen_desc *d, int c) {
    switch (c) {
    case CP_Q: case CP_DQ: return d->q_row;
    case CP_K: case CP_DK: return d->k_row;
    case CP_V: case CP_DV: return d->v_row;
    default: return d->out_row;
    }
}

/* Bytes of the copies of sequence i for the pass (each rounded to 64); SIZE_MAX when they do not fit. */
static size_t cp_bytes(const attn_sdpa_varlen_desc *d, int i, attn_pass pass) {
    size_t n = 0;
    for (int c = cp_first(pass); c < cp_count(pass); c++) {
        int heads, inner, kside;
        cp_shape(d, c, &heads, &inner, &kside);
        const int L = seq_len(kside ? d->cu_seqlens_k : d->cu_seqlens_q, i);
        if ((uint64_t)L * (uint64_t)heads > (SIZE_MAX / 64) / (uint64_t)inner / elem_size(d)) return SIZE_MAX;
        n += round64((size_t)L * heads * inner * elem_size(d));
    }
    return n;
}

/* Rows [t0, t0+L) of a packed (total, heads, inner) tensor to a contiguous (heads, L, inner) copy (dir 0)
 * or back (dir 1). A copy changes no bits. */
static void copy_seq(const attn_sdpa_varlen_desc *d, char *copy, char *packed, int64_t row, int64_t t0, int L,
                     int heads, int inner, int dir, int nth) {
    const size_t es = elem_size(d), w = (size_t)inner * es;
    const int64_t n = (int64_t)heads * L;
    (void)nth;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1 && n * inner > 65536)
#endif
    for (int64_t r = 0; r < n; r++) {
        const int64_t h = r / L, t = r % L;
        char *c = copy + (size_t)r * w, *p = packed + ((size_t)((t0 + t) * row) + (size_t)h * inner) * es;
        if (dir == 0) memcpy(c, p, w);
        else memcpy(p, c, w);
    }
}

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
        const attn_sdpa_desc s = run_desc(d, i, pass);
        size_t b;
        if ((st = attn_sdpa_workspace_size(&c, &s, pass, &b)) != ATTN_OK) return st;
        const size_t cb = cp_bytes(d, i, pass);
        if (b > SIZE_MAX / 4 || cb > SIZE_MAX / 4) return ATTN_ERR_SIZE;
        b = round64(b) + cb + 64;
        if (b > most) most = b;
    }
    *bytes = most;
    return ATTN_OK;
}

/* Carves sequence i's copies after the kernel's workspace: p[c] for each copy of the pass. Returns the
 * kernel's workspace bytes (before the copies). */
static size_t carve(const attn_sdpa_varlen_desc *d, const attn_ctx *c, const attn_sdpa_desc *s, int i,
                    attn_pass pass, void *work, char *p[CP_COUNT]) {
    size_t kb;
    attn_sdpa_workspace_size(c, s, pass, &kb);   /* validated by the caller's workspace size */
    uintptr_t u = ((uintptr_t)work + round64(kb) + 63) & ~(uintptr_t)63;
    char *at = (char *)u;
    for (int x = cp_first(pass); x < cp_count(pass); x++) {
        int heads, inner, kside;
        cp_shape(d, x, &heads, &inner, &kside);
        const int L = seq_len(kside ? d->cu_seqlens_k : d->cu_seqlens_q, i);
        p[x] = at;
        at += round64((size_t)L * heads * inner * elem_size(d));
    }
    return kb;
}

/* Copies tensors [first, last) of sequence i in (dir 0) or out (dir 1); user[c] is the packed tensor. */
static void copy_range(const attn_sdpa_varlen_desc *d, int i, char *const p[CP_COUNT], void *const user[CP_COUNT],
                       int first, int last, int dir, int nth) {
    for (int x = first; x < last; x++) {
        int heads, inner, kside;
        cp_shape(d, x, &heads, &inner, &kside);
        const int32_t *cu = kside ? d->cu_seqlens_k : d->cu_seqlens_q;
        copy_seq(d, p[x], user[x], cp_row(d, x), cu[i], seq_len(cu, i), heads, inner, dir, nth);
    }
}

/* What both passes do first: resolve the context and size the workspace (which validates d). */
static attn_status begin(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d, attn_pass pass, attn_ctx *c,
                         size_t *need) {
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, c, &kern);
    if (st != ATTN_OK) return st;
    return attn_sdpa_varlen_workspace_size(c, d, pass, need);
}

attn_status attn_sdpa_varlen_forward(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d,
                                     void *out, float *stats,
                                     const void *q, const void *k, const void *v,
                                     void *work, size_t work_bytes) {
    size_t need;
    attn_ctx c;
    attn_status st = begin(ctx, d, ATTN_PASS_FORWARD, &c, &need);
    if (st != ATTN_OK) return st;
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    if (need > 0 && (!work || work_bytes < need)) return ATTN_ERR_WORKSPACE;
    const size_t es = elem_size(d);
    void *const user[CP_COUNT] = {(void *)q, (void *)k, (void *)v, out};
    for (int i = 0; i < d->n; i++) {
        const int64_t q0 = d->cu_seqlens_q[i];
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
        /* K and V as contiguous copies: the kernels stream them once per block of queries, and rows a
         * power of two apart in the packed layout alias in the caches */
        const attn_sdpa_desc s = run_desc(d, i, ATTN_PASS_FORWARD);
        char *p[CP_COUNT];
        const size_t kb = carve(d, &c, &s, i, ATTN_PASS_FORWARD, work, p);
        copy_range(d, i, p, user, CP_K, CP_OUT, 0, c.threads);
        st = attn_sdpa_forward(&c, &s, (char *)out + (size_t)(q0 * d->out_row) * es, st_i, NULL,
                               (const char *)q + (size_t)(q0 * d->q_row) * es, p[CP_K], p[CP_V], work, kb);
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
    attn_status st = begin(ctx, d, ATTN_PASS_BACKWARD, &c, &need);
    if (st != ATTN_OK) return st;
    if (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !stats) return ATTN_ERR_NULL;
    if (need > 0 && (!work || work_bytes < need)) return ATTN_ERR_WORKSPACE;
    void *const user[CP_COUNT] = {(void *)q, (void *)k, (void *)v, (void *)out, (void *)dout, dq, dk, dv};
    for (int i = 0; i < d->n; i++) {
        const int64_t q0 = d->cu_seqlens_q[i];
        /* no queries or no keys: nothing flows back */
        if (seq_len(d->cu_seqlens_q, i) == 0 || seq_len(d->cu_seqlens_k, i) == 0) continue;
        const attn_sdpa_desc s = run_desc(d, i, ATTN_PASS_BACKWARD);
        char *p[CP_COUNT];
        const size_t kb = carve(d, &c, &s, i, ATTN_PASS_BACKWARD, work, p);
        /* every tensor in, the gradients with their current values (the kernels accumulate), and the
         * gradients back out: the same additions on the same values as in place */
        copy_range(d, i, p, user, CP_Q, CP_COUNT, 0, c.threads);
        st = attn_sdpa_backward(&c, &s, p[CP_DQ], p[CP_DK], p[CP_DV], p[CP_DOUT], p[CP_Q], p[CP_K], p[CP_V],
                                p[CP_OUT], stats + 2 * (int64_t)d->H * q0, work, kb);
        if (st != ATTN_OK) return st;
        copy_range(d, i, p, user, CP_DQ, CP_COUNT, 1, c.threads);
    }
    return ATTN_OK;
}
