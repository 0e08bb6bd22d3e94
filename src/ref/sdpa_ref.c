/*
 * sdpa_ref.c — the reference scaled dot-product attention in float: the kernels attn_sdpa_forward and
 * attn_sdpa_backward run when weights are asked for or the REF path is forced, their workspace size, and
 * the REF path's dispatch table. The loops themselves are in sdpa_ref.inc (shared with the double twin
 * in sdpa_ref_f64.c that the finite-difference tests use).
 */
#include "ref.h"

#define REAL float
#define SDPA_REF_FORWARD attn__sdpa_ref_forward
#define SDPA_REF_BACKWARD attn__sdpa_ref_backward
#include "sdpa_ref.inc"

/* Forward: a row of scores (S) and an output row (Dv). Backward: a row of probabilities (S), a dq row
 * (D), and the dk (S,D) and dv (S,Dv) sums of one (b, kv head). All double, plus 64 bytes to align.
 * The same for float and double tensors; independent of the thread count (single-threaded). */
size_t attn__sdpa_ref_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    (void)nth;
    const size_t S = (size_t)d->S, D = (size_t)d->D, Dv = (size_t)d->Dv;
    size_t n = pass == ATTN_PASS_FORWARD ? S + Dv : S + D + S * D + S * Dv;
    return n * sizeof(double) + 64;
}

static attn_status ref_forward(const attn_sdpa_desc *d, float *out, float *lse, const float *q, const float *k,
                               const float *v, void *work, int nth) {
    (void)nth;
    return attn__sdpa_ref_forward(d, out, lse, NULL, q, k, v, work);
}

static attn_status ref_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *k, const float *v, const float *out,
                                const float *lse, void *work, int nth) {
    (void)nth;
    return attn__sdpa_ref_backward(d, dq, dk, dv, dout, q, k, v, out, lse, work);
}

const attn_kernels attn__kernels_ref = {ATTN_ISA_REF, attn__sdpa_ref_workspace, ref_forward, ref_backward};
