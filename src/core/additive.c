/*
 * additive.c — the public additive (Bahdanau) attention calls: descriptor set-up, validation, workspace
 * sizes and the call into the reference kernels (src/ref/additive_ref.c; there is no fused path).
 *
 * As in sdpa.c, each call validates the descriptor, then the pointers, then the workspace, then runs.
 * No call allocates. The backward adds into each gradient separately, so when the keys are also the
 * values (Dk == Dv) dk and dv may be one buffer: it receives dk + dv (tests/test_additive_ref.c).
 */
#include "internal.h"
#include "ref/ref.h"

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
    return attn__validate_mask(&d->mask, d->B, 1, d->T, d->S);
}

attn_status attn_additive_workspace_size(const attn_additive_desc *d, attn_pass pass, size_t *bytes) {
    attn_status st = attn_additive_validate(d);
    if (st != ATTN_OK) return st;
    if (!bytes) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    *bytes = attn__additive_ref_workspace(d, pass);
    return ATTN_OK;
}

static attn_status check_workspace(const attn_additive_desc *d, attn_pass pass, const void *work,
                                   size_t work_bytes) {
    if (!work || work_bytes < attn__additive_ref_workspace(d, pass)) return ATTN_ERR_WORKSPACE;
    return ATTN_OK;
}

attn_status attn_additive_forward(const attn_additive_desc *d,
                                  float *out, float *weights,
                                  const float *q, const float *k, const float *v,
                                  const float *wq, const float *wk, const float *wv,
                                  void *work, size_t work_bytes) {
    attn_status st = attn_additive_validate(d);
    if (st != ATTN_OK) return st;
    if (!out || !q || !k || !v || !wq || !wk || !wv) return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_FORWARD, work, work_bytes)) != ATTN_OK) return st;
    return attn__additive_ref_forward(d, out, weights, q, k, v, wq, wk, wv, work);
}

attn_status attn_additive_backward(const attn_additive_desc *d,
                                   float *dq, float *dk, float *dv,
                                   float *dwq, float *dwk, float *dwv,
                                   const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *wq, const float *wk, const float *wv,
                                   void *work, size_t work_bytes) {
    attn_status st = attn_additive_validate(d);
    if (st != ATTN_OK) return st;
    if (!dq || !dk || !dv || !dwq || !dwk || !dwv || !dout || !q || !k || !v || !wq || !wk || !wv)
        return ATTN_ERR_NULL;
    if ((st = check_workspace(d, ATTN_PASS_BACKWARD, work, work_bytes)) != ATTN_OK) return st;
    return attn__additive_ref_backward(d, dq, dk, dv, dwq, dwk, dwv, dout, q, k, v, wq, wk, wv, work);
}
