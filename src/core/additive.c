/*
 * additive.c — the public additive (Bahdanau) attention calls: descriptor set-up, validation, workspace
 * sizes, the split form (keys projected once, then steps against them) and dispatch.
 *
 * As in sdpa.c, each call resolves its context, validates the descriptor, then the pointers, then the
 * workspace, then runs. No call allocates. Dispatch:
 *   whole call, path REF   -> the reference kernels with k and W_k (they project in double)
 *   whole call, other path -> kp = k W_kᵀ (CBLAS) into the workspace, the path's step entry, and for the
 *                             backward dk, dW_k from the step's dkp (CBLAS)
 *   split calls            -> the path's step entries (the reference path's read kp in double)
 * The backward adds into each gradient separately, so when the keys are also the values (Dk == Dv) dk
 * and dv may be one buffer: it receives dk + dv (tests/test_additive_ref.c).
 * bf16 compute is a permission, as in sdpa.c: the kernels see compute BF16 only on a path with bf16 units
 * (AMX, AVX512-BF16); on every other path, the reference one included, the call runs as fp32 (begin's copy
 * of the descriptor, which sizes the workspace too).
 *
 * Workspace (bytes from attn_additive_workspace_size), after up to 64 bytes of alignment:
 *   REF path     the reference kernels' (attn__additive_ref_workspace)
 *   other paths  [ kp, dkp (B,S,Dh) floats, for the whole calls ] [ the step entries' scratch, with bf16
 *                compute the rounded w_v, V and dout row too ]
 */
#include "internal.h"
#include "ref/ref.h"

#include <cblas.h>
#include <string.h>

static int size_ok(int n) { return n >= 1 && n <= ATTN_MAX_DIM; }

attn_status attn_additive_desc_init(attn_additive_desc *d, int B, int T, int S, int Dq, int Dk, int Dv, int Dh) {
    if (!d) return ATTN_ERR_NULL;
    *d = (attn_additive_desc){0};
    d->B = B; d->T = T; d->S = S; d->Dq = Dq; d->Dk = Dk; d->Dv = Dv; d->Dh = Dh;
    return attn_additive_validate(d);
}

/* The workspace holds (B,T,Dh), (B,S,Dh) and (B,S,Dv) blocks: refuse sizes whose blocks do not fit. */
static int products_fit(const attn_additive_desc *d) {
    const double lim = 1.0e15;                    /* elements; far beyond any real memory, inside size_t */
    /* the projections are CBLAS products over B·T and B·S rows, whose sizes are ints */
    if ((int64_t)d->B * d->T > INT32_MAX || (int64_t)d->B * d->S > INT32_MAX) return 0;
    return (double)d->B * d->T * d->Dh < lim && (double)d->B * d->S * d->Dh < lim &&
           (double)d->B * d->S * d->Dv < lim && (double)d->B * d->T * d->Dq < lim &&
           (double)d->B * d->S * d->Dk < lim && (double)d->B * d->T * d->S < lim;
}

attn_status attn_additive_validate(const attn_additive_desc *d) {
    if (!d) return ATTN_ERR_NULL;
    if (!size_ok(d->B) || !size_ok(d->T) || !size_ok(d->S) || !size_ok(d->Dq) || !size_ok(d->Dk) ||
        !size_ok(d->Dv) || !size_ok(d->Dh) || !products_fit(d))
        return ATTN_ERR_SIZE;
    if (!(d->dropout >= 0.0f && d->dropout < 1.0f)) return ATTN_ERR_ARG;   /* NaN fails too */
    if (d->compute != ATTN_DTYPE_F32 && d->compute != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    if (attn__mask_sparse(&d->mask)) return ATTN_ERR_UNSUPPORTED;       /* window, sinks, ALiBi: SDPA only */
    return attn__validate_mask(&d->mask, d->B, 1, d->T, d->S);
}

/* Bytes of the fused paths' step scratch (src/kernels/scalar/layers_impl.h): projected queries and their
 * gradient (B,T,Dh), and two rows of S floats padded by a vector, after 64 bytes of alignment; with bf16
 * compute also w_v (Dh, padded), V (B,S,Dv) and a row of Dv, rounded. */
static size_t step_bytes(const attn_additive_desc *d) {
    const size_t B = (size_t)d->B, T = (size_t)d->T, S = (size_t)d->S, Dh = (size_t)d->Dh, Dv = (size_t)d->Dv;
    const size_t bf = d->compute == ATTN_DTYPE_BF16 ? Dh + 16 + B * S * Dv + Dv : 0;
    return sizeof(float) * (2 * B * T * Dh + 2 * (S + 16) + bf) + 64;
}

static size_t kp_bytes(const attn_additive_desc *d) {
    return ((sizeof(float) * (size_t)d->B * d->S * d->Dh + 63) & ~(size_t)63);
}

static size_t workspace_for(const attn_additive_desc *d, attn_pass pass, attn_isa isa) {
    if (isa == ATTN_ISA_REF) return attn__additive_ref_workspace(d, pass) + 64;
    return 2 * kp_bytes(d) + step_bytes(d) + 64;
}

static int has_bf16_units(attn_isa isa) { return isa == ATTN_ISA_AMX || isa == ATTN_ISA_AVX512BF16; }

/* Resolves the context, validates d and copies it into e as the path will run it (compute F32 on a path
 * without bf16 units). */
static attn_status begin(const attn_ctx *ctx, const attn_additive_desc *d, attn_ctx *c, const attn_kernels **kern,
                         attn_additive_desc *e) {
    attn_status st = attn__ctx_resolve(ctx, c, kern);
    if (st != ATTN_OK) return st;
    if ((st = attn_additive_validate(d)) != ATTN_OK) return st;
    *e = *d;
    if (!has_bf16_units(c->isa)) e->compute = ATTN_DTYPE_F32;
    return ATTN_OK;
}

static char *aligned(void *p) { return (char *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static attn_status check_workspace(const attn_additive_desc *d, attn_pass pass, attn_isa isa, const void *work,
                                   size_t work_bytes) {
    if (!work || work_bytes < workspace_for(d, pass, isa)) return ATTN_ERR_WORKSPACE;
    return ATTN_OK;
}

attn_status attn_additive_workspace_size(const attn_ctx *ctx, const attn_additive_desc *d, attn_pass pass,
                                         size_t *bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!bytes) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    *bytes = workspace_for(d, pass, c.isa);
    return ATTN_OK;
}

attn_status attn_additive_compute_type(const attn_ctx *ctx, const attn_additive_desc *d, attn_dtype *compute) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    if (!compute) return ATTN_ERR_NULL;
    *compute = e.compute;
    return ATTN_OK;
}

attn_status attn_additive_keys_forward(const attn_ctx *ctx, const attn_additive_desc *d, float *kp,
                                       const float *k, const float *wk) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!kp || !k || !wk) return ATTN_ERR_NULL;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d->B * d->S, d->Dh, d->Dk, 1.0f, k, d->Dk, wk, d->Dk,
                0.0f, kp, d->Dh);
    return ATTN_OK;
}

attn_status attn_additive_keys_backward(const attn_ctx *ctx, const attn_additive_desc *d, float *dk, float *dwk,
                                        const float *dkp, const float *k, const float *wk) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!dk || !dwk || !dkp || !k || !wk) return ATTN_ERR_NULL;
    const int n = d->B * d->S;
    /* dk += dkp W_k;  dW_k += dkpᵀ k */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d->Dk, d->Dh, 1.0f, dkp, d->Dh, wk, d->Dk, 1.0f, dk,
                d->Dk);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d->Dh, d->Dk, n, 1.0f, dkp, d->Dh, k, d->Dk, 1.0f, dwk,
                d->Dk);
    return ATTN_OK;
}

attn_status attn_additive_step_forward(const attn_ctx *ctx, const attn_additive_desc *d,
                                       float *out, float *weights,
                                       const float *q, const float *kp, const float *v,
                                       const float *wq, const float *wv,
                                       void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!out || !q || !kp || !v || !wq || !wv) return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_FORWARD, c.isa, work, work_bytes)) != ATTN_OK) return st;
    kern->additive_forward(d, out, weights, q, kp, v, wq, wv, aligned(work) + (c.isa == ATTN_ISA_REF ? 0 : 2 * kp_bytes(d)));
    return ATTN_OK;
}

attn_status attn_additive_step_backward(const attn_ctx *ctx, const attn_additive_desc *d,
                                        float *dq, float *dkp, float *dv, float *dwq, float *dwv,
                                        const float *dout,
                                        const float *q, const float *kp, const float *v,
                                        const float *wq, const float *wv,
                                        void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!dq || !dkp || !dv || !dwq || !dwv || !dout || !q || !kp || !v || !wq || !wv) return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_BACKWARD, c.isa, work, work_bytes)) != ATTN_OK) return st;
    kern->additive_backward(d, dq, dkp, dv, dwq, dwv, dout, q, kp, v, wq, wv,
                            aligned(work) + (c.isa == ATTN_ISA_REF ? 0 : 2 * kp_bytes(d)));
    return ATTN_OK;
}

attn_status attn_additive_forward(const attn_ctx *ctx, const attn_additive_desc *d,
                                  float *out, float *weights,
                                  const float *q, const float *k, const float *v,
                                  const float *wq, const float *wk, const float *wv,
                                  void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!out || !q || !k || !v || !wq || !wk || !wv) return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_FORWARD, c.isa, work, work_bytes)) != ATTN_OK) return st;
    char *w = aligned(work);
    if (c.isa == ATTN_ISA_REF) return attn__additive_ref_forward(d, out, weights, q, k, NULL, v, wq, wk, wv, w);
    float *kp = (float *)w;
    if ((st = attn_additive_keys_forward(&c, d, kp, k, wk)) != ATTN_OK) return st;
    kern->additive_forward(d, out, weights, q, kp, v, wq, wv, w + 2 * kp_bytes(d));
    return ATTN_OK;
}

attn_status attn_additive_backward(const attn_ctx *ctx, const attn_additive_desc *d,
                                   float *dq, float *dk, float *dv,
                                   float *dwq, float *dwk, float *dwv,
                                   const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *wq, const float *wk, const float *wv,
                                   void *work, size_t work_bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_additive_desc e;
    attn_status st = begin(ctx, d, &c, &kern, &e);
    if (st != ATTN_OK) return st;
    d = &e;                                       /* as the path runs it */
    if (!dq || !dk || !dv || !dwq || !dwk || !dwv || !dout || !q || !k || !v || !wq || !wk || !wv)
        return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_BACKWARD, c.isa, work, work_bytes)) != ATTN_OK) return st;
    char *w = aligned(work);
    if (c.isa == ATTN_ISA_REF)
        return attn__additive_ref_backward(d, dq, dk, NULL, dv, dwq, dwk, dwv, dout, q, k, NULL, v, wq, wk, wv, w);
    float *kp = (float *)w, *dkp = (float *)(w + kp_bytes(d));
    if ((st = attn_additive_keys_forward(&c, d, kp, k, wk)) != ATTN_OK) return st;
    memset(dkp, 0, sizeof(float) * (size_t)d->B * d->S * d->Dh);
    kern->additive_backward(d, dq, dkp, dv, dwq, dwv, dout, q, kp, v, wq, wv, w + 2 * kp_bytes(d));
    return attn_additive_keys_backward(&c, d, dk, dwk, dkp, k, wk);
}
