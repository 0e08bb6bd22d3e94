/*
 * layernorm_kernels.h — internal: layer norm's row loops, written once and compiled per kernel path (the
 * portable one in src/ref/layers_ref.c, src/kernels/avx2/layernorm_avx2.c with -mavx2,
 * avx512/layernorm_avx512.c with -mavx512f), each path's table pointing at its own (attn__layernorm_forward
 * and _backward in src/layers/basic.c pick the default path's). The loops only widen: the same IEEE
 * operations in the same order (ISO C: no FMA contraction), so every path gives the same bits.
 *
 * Rows go LN_ROWS at a time: each row's statistics are sums in double over its C values in order, one
 * dependency chain of C additions per sum, which bounded the pass by latency when rows went one by one;
 * LN_ROWS rows' chains side by side are lanes of one vector (each lane a row, its sums in its own order,
 * so a row gives the bits it gives alone, whatever rows share its group).
 *
 *   forward:  mean = Σx / C,  var = Σ(x - mean)² / C (two passes: no cancellation),  rstd = 1/√(var + eps),
 *             y = (x - mean) · rstd · gamma + beta
 *   backward: g = dy·gamma, xhat = (x - mean)·rstd,  dx += rstd · (g - mean(g) - xhat · mean(g · xhat))
 */
#ifndef ATTN_LAYERNORM_KERNELS_H
#define ATTN_LAYERNORM_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define LN_ROWS 8

#ifdef ATTN_HAVE_AVX2
void attn__layernorm_forward_avx2(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                  const float *beta, int64_t n, int C, float eps);
void attn__layernorm_backward_avx2(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                   const float *gamma, int64_t n, int C);
#endif
#ifdef ATTN_HAVE_AVX512
void attn__layernorm_forward_avx512(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                    const float *beta, int64_t n, int C, float eps);
void attn__layernorm_backward_avx512(float *dx, const float *dy, const float *x, const float *mean,
                                     const float *rstd, const float *gamma, int64_t n, int C);
#endif

/* mean and rstd of nr ≤ LN_ROWS rows of x (nr,C) */
static inline void ln_stats(float *mean, float *rstd, const float *x, int nr, int C, float eps) {
    double s[LN_ROWS], mu[LN_ROWS], ss[LN_ROWS];
    for (int r = 0; r < nr; r++) s[r] = ss[r] = 0.0;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < nr; r++) s[r] += x[(size_t)r * C + c];
    for (int r = 0; r < nr; r++) mu[r] = s[r] / C;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < nr; r++) {
            double dlt = x[(size_t)r * C + c] - mu[r];
            ss[r] += dlt * dlt;
        }
    for (int r = 0; r < nr; r++) {
        mean[r] = (float)mu[r];
        rstd[r] = (float)(1.0 / sqrt(ss[r] / C + (double)eps));
    }
}

/* rows [0, n) of x (n,C): y (n,C), mean (n), rstd (n) */
static inline void ln_forward_loop(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                   const float *beta, int64_t n, int C, float eps) {
    for (int64_t n0 = 0; n0 < n; n0 += LN_ROWS) {
        const int nr = n - n0 < LN_ROWS ? (int)(n - n0) : LN_ROWS;
        const float *xg = x + (size_t)n0 * C;                           /* (nr,C) */
        if (nr == LN_ROWS) ln_stats(mean + n0, rstd + n0, xg, LN_ROWS, C, eps);   /* nr known: unrolled */
        else ln_stats(mean + n0, rstd + n0, xg, nr, C, eps);
        for (int r = 0; r < nr; r++) {                                  /* normalize, scale, shift */
            const float *xr = xg + (size_t)r * C;
            float *yr = y + (size_t)(n0 + r) * C;
            const float m = mean[n0 + r], rs = rstd[n0 + r];
            for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs * gamma[c] + beta[c];
        }
    }
}

/* mean(g) and mean(g · xhat) of nr ≤ LN_ROWS rows */
static inline void ln_dsums(float *mg, float *mgx, const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *gamma, int nr, int C) {
    double sg[LN_ROWS], sgx[LN_ROWS];
    for (int r = 0; r < nr; r++) sg[r] = sgx[r] = 0.0;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < nr; r++) {
            const size_t o = (size_t)r * C + c;
            float g = dy[o] * gamma[c];
            sg[r] += g;
            sgx[r] += (double)g * ((x[o] - mean[r]) * rstd[r]);
        }
    for (int r = 0; r < nr; r++) {
        mg[r] = (float)(sg[r] / C);
        mgx[r] = (float)(sgx[r] / C);
    }
}

/* the input gradient of rows [0, n): dx (n,C) += ... */
static inline void ln_backward_loop(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                    const float *gamma, int64_t n, int C) {
    for (int64_t n0 = 0; n0 < n; n0 += LN_ROWS) {
        const int nr = n - n0 < LN_ROWS ? (int)(n - n0) : LN_ROWS;
        const size_t o0 = (size_t)n0 * C;
        float mg[LN_ROWS], mgx[LN_ROWS];
        if (nr == LN_ROWS) ln_dsums(mg, mgx, dy + o0, x + o0, mean + n0, rstd + n0, gamma, LN_ROWS, C);
        else ln_dsums(mg, mgx, dy + o0, x + o0, mean + n0, rstd + n0, gamma, nr, C);
        for (int r = 0; r < nr; r++) {
            const size_t o = o0 + (size_t)r * C;
            const float *xr = x + o, *gr = dy + o;
            float *dxr = dx + o;
            const float m = mean[n0 + r], rs = rstd[n0 + r];
            for (int c = 0; c < C; c++) {
                float xhat = (xr[c] - m) * rs;
                dxr[c] += rs * (gr[c] * gamma[c] - mg[r] - xhat * mgx[r]);
            }
        }
    }
}

#endif /* ATTN_LAYERNORM_KERNELS_H */
