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
 *   [ bf16 tensors on a path that takes fp32 only: their fp32 copies, each 64-byte aligned ]
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
    if ((int)d->dtype < 0 || d->dtype >= ATTN_DTYPE_COUNT) return ATTN_ERR_ARG;
    if ((int)d->compute < 0 || d->compute >= ATTN_DTYPE_COUNT) return ATTN_ERR_ARG;

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

/* ---------------------------------------------------------------------------------------------------
 * bf16 tensors on a path that takes fp32 only (and on the reference path): the tensors are converted to
 * contiguous fp32 copies in the workspace, the path runs on those with the descriptor conv_desc gives,
 * and the outputs are rounded back. Conversion runs as extra stages around the path's own: forward
 * [inputs in] [path stages] [out back]; backward [inputs and the gradients' current values in] [path
 * stages] [dq, dk, dv back] (the backward accumulates, so a gradient is rounded to bf16 once per call).
 * Simple and slow; it is there so every path runs every type.
 */
enum { CV_Q, CV_K, CV_V, CV_OUT, CV_DOUT, CV_DQ, CV_DK, CV_DV, CV_COUNT };

/* Sizes of fp32 copy i: rows and row width. */
static void cv_shape(const attn_sdpa_desc *d, int i, int64_t *rows, int *inner) {
    switch (i) {
    case CV_Q: case CV_DQ: *rows = (int64_t)d->B * d->H * d->T; *inner = d->D; break;
    case CV_K: case CV_DK: *rows = (int64_t)d->B * d->Hkv * d->S; *inner = d->D; break;
    case CV_V: case CV_DV: *rows = (int64_t)d->B * d->Hkv * d->S; *inner = d->Dv; break;
    default: *rows = (int64_t)d->B * d->H * d->T; *inner = d->Dv; break;
    }
}

static const attn_layout *cv_layout(const attn_sdpa_desc *d, int i) {
    switch (i) {
    case CV_Q: case CV_DQ: return &d->q;
    case CV_K: case CV_DK: return &d->k;
    case CV_V: case CV_DV: return &d->v;
    default: return &d->out;
    }
}

static int cv_count(attn_pass pass) { return pass == ATTN_PASS_FORWARD ? CV_DOUT : CV_COUNT; }

/* Bytes of the fp32 copies of a pass (each rounded up to the alignment). */
static attn_status cv_bytes(const attn_sdpa_desc *d, attn_pass pass, size_t *bytes) {
    size_t n = 0;
    for (int i = 0; i < cv_count(pass); i++) {
        int64_t rows;
        int inner;
        cv_shape(d, i, &rows, &inner);
        if ((uint64_t)rows > (SIZE_MAX / 8) / sizeof(float) / (uint64_t)inner) return ATTN_ERR_SIZE;
        n += round_up_align((size_t)rows * (size_t)inner * sizeof(float));
        if (n > SIZE_MAX / 8) return ATTN_ERR_SIZE;
    }
    *bytes = n;
    return ATTN_OK;
}

/* The descriptor of the fp32 copies: contiguous, fp32. */
static attn_sdpa_desc conv_desc(const attn_sdpa_desc *d) { return attn__contiguous_desc(d, ATTN_DTYPE_F32); }

/* Does the path take d as it is for this pass (its tensors' type and compute type)? Weights asked for: a
 * weights stage recomputes the scores as the fp32 paths do, so the forward must have run as they do. */
static int takes_native(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c, const attn_kernels *kern,
                        int weights) {
    if (d->dtype == ATTN_DTYPE_F32 && d->compute == ATTN_DTYPE_F32) return 1;
    return c->isa != ATTN_ISA_REF && !weights && kern->sdpa_native && kern->sdpa_native(d, pass);
}

/* Does the pass on context c need the fp32 copies? */
static int needs_convert(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c, const attn_kernels *kern,
                         int weights) {
    return d->dtype != ATTN_DTYPE_F32 && !takes_native(d, pass, c, kern, weights);
}

/* The descriptor the path runs: d, the fp32 copies' (converting), or d computed in fp32 (fp32 tensors the
 * path does not take with bf16 compute: its entries then run as the fp32 path's). */
static attn_sdpa_desc run_desc(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c, const attn_kernels *kern,
                               int weights) {
    if (takes_native(d, pass, c, kern, weights)) return *d;
    if (d->dtype != ATTN_DTYPE_F32) return conv_desc(d);
    attn_sdpa_desc e = *d;
    e.compute = ATTN_DTYPE_F32;
    return e;
}

/* The path's part of a pass run with (or without) weights: its own workspace for the descriptor it runs,
 * plus the fp32 copies when converting. */
static attn_status fused_need(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c, const attn_kernels *kern,
                              int weights, size_t conv, size_t *need) {
    const attn_sdpa_desc e = run_desc(d, pass, c, kern, weights);
    size_t n = kern->sdpa_workspace(&e, pass, c->threads);
    if (n > SIZE_MAX / 4) return ATTN_ERR_SIZE;
    *need = round_up_align(n) + (needs_convert(d, pass, c, kern, weights) ? conv : 0);
    return ATTN_OK;
}

/* The workspace of a pass for context c: the path's own, plus on a fused path's forward the scratch stats,
 * plus the fp32 copies when converting; the forward covers a call with weights too (which may run another
 * way: see takes_native). */
static attn_status workspace_for(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c,
                                 const attn_kernels *kern, size_t *bytes) {
    const attn_sdpa_desc dd = conv_desc(d);
    size_t conv = 0, need;
    attn_status st;
    if (d->dtype != ATTN_DTYPE_F32 && (st = cv_bytes(d, pass, &conv)) != ATTN_OK) return st;
    if (c->isa == ATTN_ISA_REF) {
        need = attn__sdpa_ref_workspace(&dd, pass, 1);
        if (need > SIZE_MAX / 4) return ATTN_ERR_SIZE;
        need = round_up_align(need) + conv;
    } else {
        if ((st = fused_need(d, pass, c, kern, 0, conv, &need)) != ATTN_OK) return st;
        if (pass == ATTN_PASS_FORWARD) {
            size_t with_weights, ref = attn__sdpa_ref_workspace(&dd, pass, 1), stats_bytes;
            if ((st = fused_need(d, pass, c, kern, 1, conv, &with_weights)) != ATTN_OK) return st;
            if (with_weights > need) need = with_weights;
            if (!kern->sdpa_weights && ref > SIZE_MAX / 4) return ATTN_ERR_SIZE;
            if (!kern->sdpa_weights && round_up_align(ref) + conv > need) need = round_up_align(ref) + conv;
            if ((st = stats_scratch_bytes(d, &stats_bytes)) != ATTN_OK) return st;
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

attn_status attn_sdpa_compute_type(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass,
                                   attn_dtype *compute) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if (!compute) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    /* a path that takes a bf16 descriptor natively multiplies in bf16; every other route is fp32 (the
     * fp32 kernels, on copies when the tensors are bf16) */
    const int bf16 = d->dtype == ATTN_DTYPE_BF16 || d->compute == ATTN_DTYPE_BF16;
    *compute = bf16 && takes_native(d, pass, &c, kern, 0) ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32;
    return ATTN_OK;
}

static attn_status check_workspace(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c,
                                   const attn_kernels *kern, const void *work, size_t work_bytes) {
    size_t need;
    attn_status st = workspace_for(d, pass, c, kern, &need);
    if (st != ATTN_OK) return st;
    if (need > 0 && (!work || work_bytes < need)) return ATTN_ERR_WORKSPACE;
    return ATTN_OK;
}

/* The arguments of one pass, so that the OpenMP driver and the partition entries run the same code.
 * With conversion, the kernel's pointers are the fp32 copies and `user` holds the caller's tensors. */
typedef struct pass_args {
    const attn_sdpa_desc *d;     /* the caller's descriptor */
    attn_sdpa_desc dd;           /* what the kernel runs (run_desc) */
    const attn_kernels *kern;
    attn_pass pass;
    int convert;                 /* 1: stage 0 converts in, the last stage converts out */
    float *out, *stats, *weights, *dq, *dk, *dv;
    const float *dout, *q, *k, *v, *cout, *cstats;
    char *work;                  /* the path's workspace (after the scratch stats and the copies) */
    void *user[CV_COUNT];        /* the caller's tensors (converting) */
    float *copy[CV_COUNT];       /* their fp32 copies (converting) */
} pass_args;

/* Stages: [inputs in] the path's stages [weights] [outputs back], the bracketed ones when converting or
 * asked for weights. */
static int pass_stages(const pass_args *a) {
    return a->kern->sdpa_stages(&a->dd, a->pass) + (a->weights ? 1 : 0) + (a->convert ? 2 : 0);
}
/* Rows converted per work item. */
#define CV_ROWS 64

/* Converts in (dir 0: every input of the pass, bf16 -> fp32) or out (dir 1: the outputs, fp32 -> bf16)
 * for part p; items are CV_ROWS rows of one tensor. */
static void convert_stage(const pass_args *a, const attn__part *p, int dir) {
    const attn_sdpa_desc *d = a->d;
    int first = 0, last = cv_count(a->pass);
    if (dir == 1) first = a->pass == ATTN_PASS_FORWARD ? CV_OUT : CV_DQ;
    int64_t nitems = 0, base[CV_COUNT + 1];
    for (int i = first; i < last; i++) {
        int64_t rows;
        int inner;
        cv_shape(d, i, &rows, &inner);
        base[i] = nitems;
        nitems += (rows + CV_ROWS - 1) / CV_ROWS;
    }
    int64_t local = -1;
    for (int64_t it = attn__part_next(p, &local); it < nitems; it = attn__part_next(p, &local)) {
        int i = first;
        while (i + 1 < last && it >= base[i + 1]) i++;
        if (dir == 0 && a->pass == ATTN_PASS_FORWARD && i == CV_OUT) continue;   /* out is only written */
        int64_t rows;
        int inner;
        cv_shape(d, i, &rows, &inner);
        const attn_layout *l = cv_layout(d, i);
        const int Hx = (i == CV_K || i == CV_V || i == CV_DK || i == CV_DV) ? d->Hkv : d->H;
        const int Tx = (i == CV_K || i == CV_V || i == CV_DK || i == CV_DV) ? d->S : d->T;
        const int64_t r0 = (it - base[i]) * CV_ROWS, r1 = r0 + CV_ROWS < rows ? r0 + CV_ROWS : rows;
        for (int64_t r = r0; r < r1; r++) {
            const int64_t b = r / ((int64_t)Hx * Tx), h = r / Tx % Hx, t = r % Tx;
            uint16_t *u = (uint16_t *)a->user[i] + b * l->b + h * l->h + t * l->t;   /* (inner) */
            float *f = a->copy[i] + r * inner;                                          /* (inner) */
            if (dir == 0) for (int x = 0; x < inner; x++) f[x] = attn__f32(u[x]);
            else for (int x = 0; x < inner; x++) u[x] = attn__bf16(f[x]);
        }
    }
}

/* Stage p->stage of the pass. */
static void run_part(const pass_args *a, const attn__part *p) {
    attn__part kp = *p;
    if (a->convert) {
        if (p->stage == 0 || p->stage == pass_stages(a) - 1) {
            convert_stage(a, p, p->stage == 0 ? 0 : 1);
            return;
        }
        kp.stage = p->stage - 1;
    }
    if (a->pass == ATTN_PASS_FORWARD && a->weights && kp.stage == a->kern->sdpa_stages(&a->dd, a->pass))
        a->kern->sdpa_weights(&a->dd, a->weights, a->stats, a->q, a->k, a->work, &kp);
    else if (a->pass == ATTN_PASS_FORWARD)
        a->kern->sdpa_forward(&a->dd, a->out, a->stats, a->weights, a->q, a->k, a->v, a->work, &kp);
    else
        a->kern->sdpa_backward(&a->dd, a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->cout, a->cstats, a->work,
                               &kp);
}

/* Every stage of the pass on the context's threads (or fewer when the pass is small: the path says how
 * many are worth waking), items handed out by a shared counter; a barrier between stages. */
static void run_openmp(const pass_args *a, int nth) {
    const int stages = pass_stages(a);
    nth = a->kern->sdpa_threads(&a->dd, a->pass, nth);
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

/* Carves the fp32 copies from the workspace at *base (advanced past them) and points the kernel's
 * arguments at them. */
static void carve_copies(pass_args *a, char **base) {
    for (int i = 0; i < cv_count(a->pass); i++) {
        int64_t rows;
        int inner;
        cv_shape(a->d, i, &rows, &inner);
        a->copy[i] = (float *)*base;
        *base += round_up_align((size_t)rows * (size_t)inner * sizeof(float));
    }
    a->q = a->copy[CV_Q]; a->k = a->copy[CV_K]; a->v = a->copy[CV_V];
    if (a->pass == ATTN_PASS_FORWARD) {
        a->out = a->copy[CV_OUT];
    } else {
        a->cout = a->copy[CV_OUT]; a->dout = a->copy[CV_DOUT];
        a->dq = a->copy[CV_DQ]; a->dk = a->copy[CV_DK]; a->dv = a->copy[CV_DV];
    }
}

/* Sets up the forward's arguments: pointers checked, workspace checked, scratch stats and copies carved.
 * ref: the reference kernel runs (a REF context, or weights on a path without a weights stage). */
static attn_status forward_args(const attn_sdpa_desc *d, const attn_ctx *c, const attn_kernels *kern, void *out,
                                float *stats, const void *q, const void *k, const void *v, float *weights,
                                void *work, size_t work_bytes, int ref, pass_args *a) {
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    attn_status st = check_workspace(d, ATTN_PASS_FORWARD, c, kern, work, work_bytes);
    if (st != ATTN_OK) return st;
    size_t stats_bytes;
    if ((st = stats_scratch_bytes(d, &stats_bytes)) != ATTN_OK) return st;
    char *base = align_up(work);
    /* the fused kernels always write their row statistics: scratch when the caller does not want them */
    *a = (pass_args){.d = d, .kern = kern, .pass = ATTN_PASS_FORWARD, .out = out,
                     .stats = stats || ref ? stats : (float *)base, .q = q, .k = k, .v = v};
    if (!ref) base += stats_bytes;
    const int w = weights != NULL;
    a->dd = run_desc(d, ATTN_PASS_FORWARD, c, kern, w || ref);
    a->convert = ref ? d->dtype != ATTN_DTYPE_F32 : needs_convert(d, ATTN_PASS_FORWARD, c, kern, w);
    if (a->convert) {
        a->dd = conv_desc(d);
        a->user[CV_Q] = (void *)q; a->user[CV_K] = (void *)k; a->user[CV_V] = (void *)v; a->user[CV_OUT] = out;
        carve_copies(a, &base);
    }
    a->work = base;
    return ATTN_OK;
}

static attn_status backward_args(const attn_sdpa_desc *d, const attn_ctx *c, const attn_kernels *kern, void *dq,
                                 void *dk, void *dv, const void *dout, const void *q, const void *k,
                                 const void *v, const void *out, const float *stats, void *work, size_t work_bytes,
                                 pass_args *a) {
    /* dq, dk, dv are outputs with the layouts of q, k, v: they must not overlap themselves (a broadcast
     * input has no gradient layout of its own) */
    attn_status st;
    if ((st = check_output_layout(&d->q, d->B, d->H, d->T, d->D)) != ATTN_OK) return st;
    if ((st = check_output_layout(&d->k, d->B, d->Hkv, d->S, d->D)) != ATTN_OK) return st;
    if ((st = check_output_layout(&d->v, d->B, d->Hkv, d->S, d->Dv)) != ATTN_OK) return st;
    if (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !stats) return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_BACKWARD, c, kern, work, work_bytes)) != ATTN_OK) return st;
    char *base = align_up(work);
    *a = (pass_args){.d = d, .kern = kern, .pass = ATTN_PASS_BACKWARD, .dq = dq, .dk = dk, .dv = dv,
                     .dout = dout, .q = q, .k = k, .v = v, .cout = out, .cstats = stats};
    a->dd = run_desc(d, ATTN_PASS_BACKWARD, c, kern, 0);
    a->convert = needs_convert(d, ATTN_PASS_BACKWARD, c, kern, 0);
    if (a->convert) {
        void *const user[CV_COUNT] = {(void *)q, (void *)k, (void *)v, (void *)out, (void *)dout, dq, dk, dv};
        memcpy(a->user, user, sizeof user);
        carve_copies(a, &base);
    }
    a->work = base;
    return ATTN_OK;
}

attn_status attn_sdpa_forward(const attn_ctx *ctx, const attn_sdpa_desc *d,
                              void *out, float *stats, float *weights,
                              const void *q, const void *k, const void *v,
                              void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    pass_args a;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    /* the reference path materializes weights in its forward; a fused path in one more stage */
    const int ref = c.isa == ATTN_ISA_REF || (weights && !kern->sdpa_weights);
    if ((st = forward_args(d, &c, kern, out, stats, q, k, v, weights, work, work_bytes, ref, &a)) != ATTN_OK)
        return st;
    if (weights && ref) {
        int64_t counter = 0;
        attn__part p = {0, 0, 1, &counter};
        if (a.convert) convert_stage(&a, &p, 0);
        st = attn__sdpa_ref_forward(&a.dd, a.out, stats, weights, a.q, a.k, a.v, a.work);
        counter = 0;
        if (a.convert && st == ATTN_OK) convert_stage(&a, &p, 1);
        return st;
    }
    a.weights = weights;
    run_openmp(&a, c.threads);
    return ATTN_OK;
}

attn_status attn_sdpa_backward(const attn_ctx *ctx, const attn_sdpa_desc *d,
                               void *dq, void *dk, void *dv,
                               const void *dout,
                               const void *q, const void *k, const void *v,
                               const void *out, const float *stats,
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

/* Stages of a pass run by the partition entries (never with weights). */
static int part_stages(const attn_sdpa_desc *d, attn_pass pass, const attn_ctx *c, const attn_kernels *kern) {
    const int ref = c->isa == ATTN_ISA_REF;
    const attn_sdpa_desc dd = run_desc(d, pass, c, kern, ref);
    const int convert = ref ? d->dtype != ATTN_DTYPE_F32 : needs_convert(d, pass, c, kern, 0);
    return kern->sdpa_stages(&dd, pass) + (convert ? 2 : 0);
}

attn_status attn_sdpa_stages(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass, int *n_stages) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if (!n_stages) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    *n_stages = part_stages(d, pass, &c, kern);
    return ATTN_OK;
}

static attn_status check_part(const attn_sdpa_desc *d, const attn_kernels *kern, attn_pass pass, const attn_ctx *c,
                              int stage, int ith) {
    if (ith < 0 || ith >= c->threads) return ATTN_ERR_ARG;
    if (stage < 0 || stage >= part_stages(d, pass, c, kern)) return ATTN_ERR_ARG;
    return ATTN_OK;
}

attn_status attn_sdpa_forward_part(const attn_ctx *ctx, const attn_sdpa_desc *d,
                                   void *out, float *stats,
                                   const void *q, const void *k, const void *v,
                                   void *work, size_t work_bytes, int stage, int ith) {
    attn_ctx c;
    const attn_kernels *kern;
    pass_args a;
    attn_status st = begin(ctx, d, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = check_part(d, kern, ATTN_PASS_FORWARD, &c, stage, ith)) != ATTN_OK) return st;
    if ((st = forward_args(d, &c, kern, out, stats, q, k, v, NULL, work, work_bytes, c.isa == ATTN_ISA_REF, &a)) !=
        ATTN_OK)
        return st;
    const attn__part p = {stage, ith, c.threads, NULL};
    run_part(&a, &p);
    return ATTN_OK;
}

attn_status attn_sdpa_backward_part(const attn_ctx *ctx, const attn_sdpa_desc *d,
                                    void *dq, void *dk, void *dv,
                                    const void *dout,
                                    const void *q, const void *k, const void *v,
                                    const void *out, const float *stats,
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

attn_status attn_sdpa_sink_backward(const attn_sdpa_desc *d, float *dsink, const void *dout, const void *out,
                                    const float *stats) {
    attn_status st = attn_sdpa_validate(d);
    if (st != ATTN_OK) return st;
    if (!dsink || !dout || !out || !stats) return ATTN_ERR_NULL;
    if (!d->mask.sink_logits) return ATTN_ERR_ARG;
    const int bf = d->dtype == ATTN_DTYPE_BF16;
    for (int h = 0; h < d->H; h++) {
        const double z = d->mask.sink_logits[h];
        double acc = 0.0;
        for (int b = 0; b < d->B; b++)
            for (int t = 0; t < d->T; t++) {
                const int64_t off = b * d->out.b + h * d->out.h + (int64_t)t * d->out.t;
                const int64_t row = ((int64_t)b * d->H + h) * d->T + t;
                double delta = 0.0;                                   /* Δ = dout·out */
                for (int x = 0; x < d->Dv; x++) {
                    const double g = bf ? attn__f32(((const uint16_t *)dout)[off + x]) : ((const float *)dout)[off + x];
                    const double o = bf ? attn__f32(((const uint16_t *)out)[off + x]) : ((const float *)out)[off + x];
                    delta += g * o;
                }
                if (delta == 0.0) continue;                           /* (a row with no key: out = 0) */
                acc -= exp(z - (double)stats[2 * row] - (double)stats[2 * row + 1]) * delta;
            }
        dsink[h] += (float)acc;
    }
    return ATTN_OK;
}

int64_t attn__scores_counter[2];

int64_t attn_sdpa_scores_computed(attn_pass pass, int reset) {
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return 0;
    return reset ? __atomic_exchange_n(&attn__scores_counter[pass], 0, __ATOMIC_RELAXED)
                 : __atomic_load_n(&attn__scores_counter[pass], __ATOMIC_RELAXED);
}

uint16_t attn_bf16_from_f32(float x) { return attn__bf16(x); }
float attn_bf16_to_f32(uint16_t h) { return attn__f32(h); }
