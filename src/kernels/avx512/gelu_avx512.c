/*
 * gelu_avx512.c — GELU's loops (layers/gelu_kernels.h) compiled with -mavx512f: the compiler widens them; the
 * operations and so the bits are the portable loops'. Run only when the CPU has AVX-512 (config.c).
 */
#include "layers/gelu_kernels.h"

void attn__gelu_forward_avx512(float *y, const float *x, int64_t n) { gelu_forward_loop(y, x, n); }

void attn__gelu_backward_avx512(float *dx, const float *dy, const float *x, int64_t n) {
    gelu_backward_loop(dx, dy, x, n);
}
