/*
 * additive_ref.c — the reference additive (Bahdanau) attention in float, the kernels behind
 * attn_additive_forward/backward, and their workspace size. The loops are in additive_ref.inc, shared
 * with the double twin in additive_ref_f64.c that the finite-difference tests use.
 */
#include "ref.h"

#define REAL float
#define ADDITIVE_REF_FORWARD attn__additive_ref_forward
#define ADDITIVE_REF_BACKWARD attn__additive_ref_backward
#include "additive_ref.inc"

/* Forward: projected queries (B,T,Dh) and keys (B,S,Dh), a row of scores (S), an output row (Dv).
 * Backward: the projections, their gradients (B,T,Dh) and (B,S,Dh), the dv sums (B,S,Dv), two rows (S)
 * and the dwv sums (Dh). All double, plus 64 bytes to align; the same for float and double tensors.
 * The caller has validated d, so every product below fits (each size <= 2^24). */
size_t attn__additive_ref_workspace(const attn_additive_desc *d, attn_pass pass) {
    const size_t B = (size_t)d->B, T = (size_t)d->T, S = (size_t)d->S, Dv = (size_t)d->Dv, Dh = (size_t)d->Dh;
    size_t n = pass == ATTN_PASS_FORWARD
                   ? B * T * Dh + B * S * Dh + S + Dv
                   : 2 * (B * T * Dh + B * S * Dh) + B * S * Dv + 2 * S + Dh;
    return n * sizeof(double) + 64;
}
