/*
 * sdpa.c — the public scaled dot-product attention calls: descriptor set-up, validation, workspace
 * sizes and dispatch to a kernel path.
 *
 * Every call resolves its context, validates the whole descriptor, then the pointers, then the workspace,
 * and only then runs a kernel, so a kernel always receives a descriptor it can trust. Dispatch:
 *
 *   forward   the context's table, sdpa_forward (the reference path's entry on REF), with scratch row
 *             statistics carved from the workspace when stats is NULL on a fused path; weights asked
 *             for: one more stage, sdpa_weights, from those statistics (on REF, attn__sdpa_ref_forward
 *             materializes them itself)
 *   backward                                    -> the context's table, sdpa_backward
 *
 * Threads: a pass is a sequence of stages (the path says how many); attn_sdpa_forward/backward run them
 * in one OpenMP region with a barrier between stages and a shared item counter, and the *_part entries
 * let a caller's own threads run the same stages (one call per thread and stage, items split statically).
 * Which thread runs an item never changes its arithmetic, so both give the same bits.
 *
 * Workspace layout handed out by this file (sizes from attn_sdpa_workspace_size):
 *
 *   [ up to 64 bytes to align the caller's pointer ]
 *   [ forward on a fused path only: scratch stats (B,H,T,2) floats, rounded up to 64 bytes ]
 *   [ the path's own workspace: kern->sdpa_workspace(d, pass, nth) bytes, 64-byte aligned ]
 *
 * A fused path's forward size covers its weights stage too, since whether the caller asks for weights is
 * only known at the call. No call allocates.
 */
#include "internal.h"

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define ATTN_WORK_ALIGN 64

static size_t round_up_align(size_t n) {
    return (n + (ATTN_WORK_ALIGN - 1)) & ~(size_t)(ATTN_WORK_ALIGN - 1);
}

static void *align_up(void *p) {
    uintptr_t u = (uintptr_t)p;
    u = (u + (ATTN_WORK_ALIGN - 1)) & ~(uintptr_t)(ATTN_WORK_ALIGN - 1);
    return (void *)u;
}

static int size_ok(int n) { return n >= 1 && n <= ATTN_MAX_DIM; }

/* Largest element offset of a (B,H,T,inner) tensor with layout l: 0 and ATTN_OK, or ATTN_ERR_STRIDE
 * when a stride is negative or the offset does not fit in int64. */
static attn_status layout_extent(const attn_layout *l, int B, int H, int T, int inner) {
    const int64_t ext[3] = {B, H, T};
    const int64_t str[3] = {l->b, l->h, l->t};
    int64_t end = inner - 1;
    for (int i = 0; i < 3; i++) {
        if (str[i] < 0) return ATTN_ERR_STRIDE;
        int64_t steps = ext[i] - 1;
        if (steps > 0 && str[i] > (INT64_MAX - end) / steps) return ATTN_ERR_STRIDE;
        end += steps * str[i];
    }
    return ATTN_OK;
}

/* An input operand: nonnegative strides; any axis may broadcast with stride 0 (every row the same); a
 * t-stride between 0 and the row width (rows that partly overlap) is refused as the mistake it
 * almost certainly is. */
static attn_status check_input_layout(const attn_layout *l, int B, int H, int T, int inner) {
    attn_status st = layout_extent(l, B, H, T, inner);
    if (st != ATTN_OK) return st;
    if (T > 1 && l->t != 0 && l->t < inner) return ATTN_ERR_STRIDE;
    return ATTN_OK;
}

/* An output operand: as an input, and no two elements at one address. */
static attn_status check_output_layout(const attn_layout *l, int B, int H, int T, int inner) {
    attn_status st = layout_extent(l, B, H, T, inner);
    if (st != ATTN_OK) return st;
    return attn__layout_disjoint(l, B, H, T, inner) ? ATTN_OK : ATTN_ERR_STRIDE;
}

attn_status attn_sdpa_desc_init(attn_sdpa_desc *d, int B, int H, int T, int S, int D, int Dv) {
    if (!d) return ATTN_ERR_NULL;
    *d = (attn_sdpa_desc){0};
    d->B = B; d->H = H; d->Hkv = H; d->T = T; d->S = S; d->D = D; d->Dv = Dv;
    if (!size_ok(B) || !size_ok(H) || !size_ok(T) || !size_ok(S) || !size_ok(D) || !size_ok(Dv))
        return ATTN_ERR_SIZE;
    /* the contiguous strides below must fit in int64 */
    double elems = (double)B * H * (T > S ? T : S) * (D > Dv ? D : Dv);
    if (elems > 4.0e18) return ATTN_ERR_SIZE;
    d->scale = (float)(1.0 / sqrt((double)D));
    /* contiguous (B,H,T,D), (B,H,S,D), (B,H,S,Dv), (B,H,T,Dv) */
    d->q   = (attn_layout){(int64_t)H * T * D,  (int64_t)T * D,  D};
    d->k   = (attn_layout){(int64_t)H * S * D,  (int64_t)S * D,  D};
    d->v   = (attn_layout){(int64_t)H * S * Dv, (int64_t)S * Dv, Dv};
    d->out = (attn_layout){(int64_t)H * T * Dv, (int64_t)T * Dv, Dv};
    return ATTN_OK;
}

attn_status attn_sdpa_validate(const attn_sdpa_desc *d) {
    if (!d) return ATTN_ERR_NULL;
    if (!size_ok(d->B) || !size_ok(d->H) || !size_ok(d->Hkv) || !size_ok(d->T) || !size_ok(d->S) ||
        !size_ok(d->D) || !size_ok(d->Dv))
        return ATTN_ERR_SIZE;
    if (d->H % d->Hkv != 0) return ATTN_ERR_SHAPE;
    if (!isfinite(d->scale)) return ATTN_ERR_ARG;
    if (!(d->dropout >= 0.0f && d->dropout < 1.0f)) return ATTN_ERR_ARG;   /* NaN fails too */

    attn_status st;
    if ((st = check_input_layout(&d->q, d->B, d->H, d->T, d->D)) != ATTN_OK) return st;
    if ((st = check_input_layout(&d->k, d->B, d->Hkv, d->S, d->D)) != ATTN_OK) return st;
    if ((st = check_input_layout(&d->v, d->B, d->Hkv, d->S, d->Dv)) != ATTN_OK) return st;
    if ((st = check_output_layout(&d->out, d->B, d->H, d->T, d->Dv)) != ATTN_OK) return st;
    return attn__validate_mask(&d->mask, d->B, d->H, d->T, d->S);
}

/* Bytes of the scratch row statistics, (B,H,T,2) floats rounded up to the alignment; ATTN_ERR_SIZE when
 * it does not fit in size_t. */
static attn_status stats_scratch_bytes(const attn_sdpa_desc *d, size_t *bytes) {
    uint64_t rows = (uint64_t)d->B * (uint64_t)d->H;           /* < 2^48 */
    if (rows > (SIZE_MAX / 2) / (sizeof(float) * ATTN_SDPA_STATS) / (uint64_t)d->T) return ATTN_ERR_SIZE;
    *bytes = round_up_align((size_t)(rows * (uint64_t)d->T) * sizeof(float) * ATTN_SDPA_STATS);
    return ATTN_OK;
}

/* The workspace of a pass for context c: the path's own, plus on a fused path's forward the scratch stats;
 * the forward also covers the reference kernel (weights asked for). */
static attn_status workspace_for(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c,
                                 const attn_kernels *kern, size_t *bytes) {
    size_t need = attn__sdpa_ref_workspace(d, pass, 1);
    if (c->isa != ATTN_ISA_REF) {
        need = kern->sdpa_workspace(d, pass, c->threads);
        if (pass == ATTN_PASS_FORWARD) {
            size_t stats_bytes;
            attn_status st = stats_scratch_bytes(d, &stats_bytes);
            if (st != ATTN_OK) return st;
            if (need > SIZE_MAX / 2 - stats_bytes) return ATTN_ERR_SIZE;
            need += stats_bytes;
        }
    }
    if (need > SIZE_MAX / 2) return ATTN_ERR_SIZE;
    *bytes = round_up_align(need) + ATTN_WORK_ALIGN;   /* room to align the caller's pointer */
    return ATTN_OK;
}

/* What every call does first: resolve the context, validate the descriptor. */
static attn_status begin(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_ctx *c, const attn_kernels **kern) {
    attn_status st = attn__ctx_resolve(ctx, c, kern);
    if (st != ATTN_OK) return st;
    return attn_sdpa_validate(d);
}

attn_status attn_sdpa_workspace_size(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass,
                                     size_t *bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if (!bytes) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    return workspace_for(d, pass, &c, kern, bytes);
}

static attn_status check_workspace(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c,
                                   const attn_kernels *kern, const void *work, size_t work_bytes) {
    size_t need;
    attn_status st = workspace_for(d, pass, c, kern, &need);
    if (st != ATTN_OK) return st;
    if (need > 0 && (!work || work_bytes < need)) return ATTN_ERR_WORKSPACE;
    return ATTN_OK;
}

/* The arguments of one pass, so that the OpenMP driver and the partition entries run the same code. */
typedef struct pass_args {
    const attn_sdpa_desc *d;
    const attn_kernels *kern;
    attn_pass pass;
    float *out, *stats, *weights, *dq, *dk, *dv;
    const float *dout, *q, *k, *v, *cout, *cstats;
    char *work;                  /* the path's workspace (after the scratch stats) */
} pass_args;

/* Stage p->stage of the pass; a forward asked for weights has one more stage at the end, the weights. */
static void run_part(const pass_args *a, const attn__part *p) {
    if (a->pass == ATTN_PASS_FORWARD && a->weights && p->stage == a->kern->sdpa_stages(a->d, a->pass))
        a->kern->sdpa_weights(a->d, a->weights, a->stats, a->q, a->k, a->work, p);
    else if (a->pass == ATTN_PASS_FORWARD) a->kern->sdpa_forward(a->d, a->out, a->stats, a->q, a->k, a->v, a->work, p);
    else a->kern->sdpa_backward(a->d, a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->cout, a->cstats, a->work, p);
}

/* Every stage of the pass on the context's threads (or fewer when the pass is small: the path says how
 * many are worth waking), items handed out by a shared counter; a barrier between stages. */
static void run_openmp(const pass_args *a, int nth) {
    const int stages = a->kern->sdpa_stages(a->d, a->pass) + (a->weights ? 1 : 0);
    nth = a->kern->sdpa_threads(a->d, a->pass, nth);
    if (nth <= 1) {
        int64_t counter = 0;
        for (int s = 0; s < stages; s++) {
            attn__part p = {s, 0, 1, &counter};
            counter = 0;
            run_part(a, &p);
        }
        return;
    }
    int64_t counter = 0;
    int64_t *cnt = &counter;
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
    {
        int ith = 0, nt = 1;
#ifdef _OPENMP
        ith = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        for (int s = 0; s < stages; s++) {
#ifdef _OPENMP
#pragma omp single
#endif
            *cnt = 0;
            /* (the single's implied barrier ends the previous stage too) */
            attn__part p = {s, ith, nt, cnt};
            run_part(a, &p);
#ifdef _OPENMP
#pragma omp barrier
#endif
        }
    }
}

/* Sets up the forward's arguments: pointers checked, workspace checked, scratch stats carved. */
static attn_status forward_args(const attn_sdpa_desc *d, const attn_ctx *c, const attn_kernels *kern, float *out,
                                float *stats, const float *q, const float *k, const float *v, void *work,
                                size_t work_bytes, pass_args *a) {
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    attn_status st = check_workspace(d, ATTN_PASS_FORWARD, c, kern, work, work_bytes);
    if (st != ATTN_OK) return st;
    size_t stats_bytes;
    if ((st = stats_scratch_bytes(d, &stats_bytes)) != ATTN_OK) return st;
    char *base = align_up(work);
    /* the fused kernels always write their row statistics: scratch when the caller does not want them */
    const int ref = c->isa == ATTN_ISA_REF;
    *a = (pass_args){.d = d, .kern = kern, .pass = ATTN_PASS_FORWARD, .out = out,
                     .stats = stats || ref ? stats : (float *)base, .q = q, .k = k, .v = v,
                     .work = ref ? base : base + stats_bytes};
    return ATTN_OK;
}

static attn_status backward_args(const attn_sdpa_desc *d, const attn_ctx *c, const attn_kernels *kern, float *dq,
                                 float *dk, float *dv, const float *dout, const float *q, const float *k,
                                 const float *v, const float *out, const float *stats, void *work, size_t work_bytes,
                                 pass_args *a) {
    /* dq, dk, dv are outputs with the layouts of q, k, v: they must not overlap themselves (a broadcast
     * input has no gradient layout of its own) */
    attn_status st;
    if ((st = check_output_layout(&d->q, d->B, d->H, d->T, d->D)) != ATTN_OK) return st;
    if ((st = check_output_layout(&d->k, d->B, d->Hkv, d->S, d->D)) != ATTN_OK) return st;
    if ((st = check_output_layout(&d->v, d->B, d->Hkv, d->S, d->Dv)) != ATTN_OK) return st;
    if (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !stats) return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_BACKWARD, c, kern, work, work_bytes)) != ATTN_OK) return st;
    *a = (pass_args){.d = d, .kern = kern, .pass = ATTN_PASS_BACKWARD, .dq = dq, .dk = dk, .dv = dv, .dout = dout,
                     .q = q, .k = k, .v = v, .cout = out, .cstats = stats, .work = align_up(work)};
    return ATTN_OK;
}

attn_status attn_sdpa_forward(const attn_ctx *ctx, const attn_sdpa_desc *d,
                              float *out, float *stats, float *weights,
                              const float *q, const float *k, const float *v,
                              void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    pass_args a;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = forward_args(d, &c, kern, out, stats, q, k, v, work, work_bytes, &a)) != ATTN_OK) return st;
    /* the reference path materializes weights in its forward; a fused path in one more stage */
    if (weights && (c.isa == ATTN_ISA_REF || !kern->sdpa_weights))
        return attn__sdpa_ref_forward(d, out, stats, weights, q, k, v, align_up(work));
    a.weights = weights;
    run_openmp(&a, c.threads);
    return ATTN_OK;
}

attn_status attn_sdpa_backward(const attn_ctx *ctx, const attn_sdpa_desc *d,
                               float *dq, float *dk, float *dv,
                               const float *dout,
                               const float *q, const float *k, const float *v,
                               const float *out, const float *stats,
                               void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    pass_args a;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = backward_args(d, &c, kern, dq, dk, dv, dout, q, k, v, out, stats, work, work_bytes, &a)) != ATTN_OK)
        return st;
    run_openmp(&a, c.threads);
    return ATTN_OK;
}

attn_status attn_sdpa_stages(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass, int *n_stages) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if (!n_stages) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    *n_stages = kern->sdpa_stages(d, pass);
    return ATTN_OK;
}

static attn_status check_part(const attn_sdpa_desc *d, const attn_kernels *kern, attn_pass pass, const attn_ctx *c,
                              int stage, int ith) {
    if (ith < 0 || ith >= c->threads) return ATTN_ERR_ARG;
    if (stage < 0 || stage >= kern->sdpa_stages(d, pass)) return ATTN_ERR_ARG;
    return ATTN_OK;
}

attn_status attn_sdpa_forward_part(const attn_ctx *ctx, const attn_sdpa_desc *d,
                                   float *out, float *stats,
                                   const float *q, const float *k, const float *v,
                                   void *work, size_t work_bytes, int stage, int ith) {
    attn_ctx c;
    const attn_kernels *kern;
    pass_args a;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = check_part(d, kern, ATTN_PASS_FORWARD, &c, stage, ith)) != ATTN_OK) return st;
    if ((st = forward_args(d, &c, kern, out, stats, q, k, v, work, work_bytes, &a)) != ATTN_OK) return st;
    const attn__part p = {stage, ith, c.threads, NULL};
    run_part(&a, &p);
    return ATTN_OK;
}

attn_status attn_sdpa_backward_part(const attn_ctx *ctx, const attn_sdpa_desc *d,
                                    float *dq, float *dk, float *dv,
                                    const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *stats,
                                    void *work, size_t work_bytes, int stage, int ith) {
    attn_ctx c;
    const attn_kernels *kern;
    pass_args a;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = check_part(d, kern, ATTN_PASS_BACKWARD, &c, stage, ith)) != ATTN_OK) return st;
    if ((st = backward_args(d, &c, kern, dq, dk, dv, dout, q, k, v, out, stats, work, work_bytes, &a)) != ATTN_OK)
        return st;
    const attn__part p = {stage, ith, c.threads, NULL};
    run_part(&a, &p);
    return ATTN_OK;
}

attn_status attn_sdpa_logsumexp(const float *stats, int64_t rows, float *lse) {
    if (!stats || !lse) return ATTN_ERR_NULL;
    if (rows < 0) return ATTN_ERR_ARG;
    for (int64_t r = 0; r < rows; r++) {
        const float m = stats[2 * r], l = stats[2 * r + 1];
        lse[r] = m == -INFINITY ? -INFINITY : m + l;
    }
    return ATTN_OK;
}
