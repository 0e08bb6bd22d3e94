/*
 * sdpa_ref.c — the reference scaled dot-product attention in float: the kernels attn_sdpa_forward and
 * attn_sdpa_backward run when weights are asked for or the REF path is forced, their workspace size, and
 * the REF path's dispatch table (its SDPA and additive entries here; GRU gates, Adam and GELU in layers_ref.c). The loops themselves are in sdpa_ref.inc (shared with the double twin
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
    size_t n = pass == ATTN_PASS_FORWARD ? S + Dv : 2 * S + D + S * D + S * Dv;   /* (the soft cap's factors) */
    return n * sizeof(double) + 64;
}

/* The table entries: the whole pass in stage 0 on thread 0 (the reference path is single-threaded). */
static int ref_stages(const attn_sdpa_desc *d, attn_pass pass) { (void)d; (void)pass; return 1; }
static int ref_threads(const attn_sdpa_desc *d, attn_pass pass, int nth) { (void)d; (void)pass; (void)nth; return 1; }

static void ref_forward(const attn_sdpa_desc *d, float *out, float *stats, float *scores, const float *q, const float *k,
                        const float *v, void *work, const attn__part *part) {
    if (part->stage == 0 && part->ith == 0) attn__sdpa_ref_forward(d, out, stats, NULL, q, k, v, work);
}

static void ref_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout,
                         const float *q, const float *k, const float *v, const float *out, const float *stats,
                         void *work, const attn__part *part) {
    if (part->stage == 0 && part->ith == 0) attn__sdpa_ref_backward(d, dq, dk, dv, dout, q, k, v, out, stats, work);
}

/* The additive entries against projected keys (the split API on the reference path). */
static void ref_additive_forward(const attn_additive_desc *d, float *out, float *weights, const float *q,
                                 const float *kp, const float *v, const float *wq, const float *wv, void *work) {
    attn__additive_ref_forward(d, out, weights, q, NULL, kp, v, wq, NULL, wv, work);
}

static void ref_additive_backward(const attn_additive_desc *d, float *dq, float *dkp, float *dv, float *dwq,
                                  float *dwv, const float *dout, const float *q, const float *kp, const float *v,
                                  const float *wq, const float *wv, void *work) {
    attn__additive_ref_backward(d, dq, NULL, dkp, dv, dwq, NULL, dwv, dout, q, NULL, kp, v, wq, NULL, wv, work);
}

const attn_kernels attn__kernels_ref = {
    .isa = ATTN_ISA_REF,
    .sdpa_workspace = attn__sdpa_ref_workspace,
    .sdpa_stages = ref_stages,
    .sdpa_threads = ref_threads,
    .sdpa_forward = ref_forward,
    .sdpa_backward = ref_backward,
    .additive_forward = ref_additive_forward,
    .additive_backward = ref_additive_backward,
    .gru_gates = attn__gru_gates_ref,
    .gru_gates_backward = attn__gru_gates_backward_ref,
    .adam_block = attn__adam_block_ref,
    .gelu_forward = attn__gelu_forward_ref,
    .gelu_backward = attn__gelu_backward_ref,
    .layernorm_forward = attn__layernorm_forward_ref,
    .layernorm_backward = attn__layernorm_backward_ref,
};
