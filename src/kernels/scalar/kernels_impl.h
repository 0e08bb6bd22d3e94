/*
 * kernels_impl.h — one kernel path's whole table: the fused attention (fused_impl.h) and the layers'
 * loops (layers_impl.h), written once over a vector abstraction, instantiated by each path's file
 * (src/kernels/scalar/kernels_scalar.c, avx2/kernels_avx2.c, avx512/kernels_avx512.c) after it defines
 * its vector type, its operations and its exp2 — the path's only polynomial. The includer also names its
 * table (FZ_TABLE), its attn_isa (FZ_ISA) and, when it has them, its Adam loop (FZ_ADAM), GELU loops
 * (FZ_GELU(forward), FZ_GELU(backward)) and layer norm's (FZ_LAYERNORM(forward), FZ_LAYERNORM(backward)).
 */
#include <cblas.h>

#include "kernels/scalar/fused_impl.h"
#include "kernels/scalar/layers_impl.h"

const attn_kernels FZ_TABLE = {
    .isa = FZ_ISA,
    .sdpa_workspace = fz_workspace,
    .sdpa_stages = fz_stages,
    .sdpa_threads = fz_threads,
    .sdpa_forward = fz_forward,
    .sdpa_backward = fz_backward,
    .sdpa_weights = fz_weights,
    .additive_forward = fz_additive_forward,
    .additive_backward = fz_additive_backward,
    .gru_gates = fz_gru_gates,
    .gru_gates_backward = fz_gru_gates_backward,
#ifdef FZ_ADAM
    .adam_block = FZ_ADAM,
#endif
#ifdef FZ_GELU
    .gelu_forward = FZ_GELU(forward),
    .gelu_backward = FZ_GELU(backward),
#endif
#ifdef FZ_LAYERNORM
    .layernorm_forward = FZ_LAYERNORM(forward),
    .layernorm_backward = FZ_LAYERNORM(backward),
#endif
};
