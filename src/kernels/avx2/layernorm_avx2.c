/*
 * layernorm_avx2.c — layer norm's row loops (layers/layernorm_kernels.h) compiled with -mavx2: the compiler
 * widens them; the operations and so the bits are the portable loops'. Run only when the CPU has it (config.c).
 */
#include "layers/layernorm_kernels.h"

void attn__layernorm_forward_avx2(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                  const float *beta, int64_t n, int C, float eps) {
    ln_forward_loop(y, mean, rstd, x, gamma, beta, n, C, eps);
}

void attn__layernorm_backward_avx2(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                   const float *gamma, int64_t n, int C) {
    ln_backward_loop(dx, dy, x, mean, rstd, gamma, n, C);
}
