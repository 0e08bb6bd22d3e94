/*
 * bwd_avx512bf16.h — the AVX512-BF16 path's backward of bf16 tensors (bwd_avx512bf16.c), as its table
 * (kernels_avx512bf16.c) calls it: the workspace, stage and thread counts, and one stage of one thread.
 * Not a public header.
 */
#ifndef ATTN_BWD_AVX512BF16_H
#define ATTN_BWD_AVX512BF16_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

size_t attn__bf16_bwd_workspace(const attn_sdpa_desc *d, int nth);
int attn__bf16_bwd_stages(const attn_sdpa_desc *d);
int attn__bf16_bwd_threads(const attn_sdpa_desc *d, int nth);
/* fp32 tensors computed in bf16 (the inputs are bf16 copies, kernels_avx512bf16.c "fp32 tensors with bf16
 * compute"): the gradients in fp32, where the caller's tensors lie, by the caller's layouts; and the
 * caller's fp32 out (layout o), whose difference from its bf16 copy is added to Δ. */
typedef struct attn__bf16_grads32 {
    float *dq, *dk, *dv;
    attn_layout q, k, v;
    const float *out;
    attn_layout o;
} attn__bf16_grads32;

/* one stage (part->stage: 0 packs and Δ, 1 the key chunks, 2 the dQ sums) of a validated bf16 descriptor;
 * the gradients accumulate (+=) and are rounded to bf16 once, or, with g32, accumulate in fp32 there (dq,
 * dk, dv are then not used) */
void attn__bf16_backward(const attn_sdpa_desc *d, uint16_t *dq, uint16_t *dk, uint16_t *dv, const uint16_t *dout,
                         const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out,
                         const float *stats, void *work, const attn__part *part, const attn__bf16_grads32 *g32);

#endif
