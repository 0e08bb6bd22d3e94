/*
 * layers_ref.c — the reference versions of the layers' per-ISA loops (dispatch table entries): one row of
 * GRU gates forward and backward with libm's expf and tanhf, and Adam's elementwise update. The fused
 * paths override the gates with their own vector exp (src/kernels/); Adam's vector loops compute the
 * same IEEE operations as the loop here, so every path gives the same bits (optim_kernels.h); GELU's
 * loops (and layer norm's, layernorm_kernels.h) are the portable compilation of gelu_kernels.h, which the AVX2
 * and AVX-512 paths compile wider.
 */
#include "ref.h"
#include "layers/gelu_kernels.h"
#include "layers/layernorm_kernels.h"

/* r = σ(ir + gr), z = σ(iz + gz), n = tanh(in + r·gn), h' = (1 - z)·n + z·h. On return gr, gz, gn hold r,
 * z, n (saved for the backward) and ghn the hidden-side n sum gn (W_hn h + b_hn). */
void attn__gru_gates_ref(int H, const float *ir, const float *iz, const float *in, float *gr, float *gz, float *gn,
                         const float *hp, float *hn, float *ghn) {
    for (int j = 0; j < H; j++) {
        const float r = 1.0f / (1.0f + expf(-(ir[j] + gr[j])));
        const float z = 1.0f / (1.0f + expf(-(iz[j] + gz[j])));
        const float a = gn[j];
        const float n = tanhf(in[j] + r * a);
        ghn[j] = a;
        gr[j] = r; gz[j] = z; gn[j] = n;
        hn[j] = (1.0f - z) * n + z * hp[j];
    }
}

/* Backward of one row: from r, z, n, ghn, h_prev and the state's gradient dh + dout, the gate gradients
 * on the input side (dir, diz, din) and the hidden side (dhr, dhz, dhn), and dhp = (dh + dout)·z. */
void attn__gru_gates_backward_ref(int H, const float *r_, const float *z_, const float *n_, const float *ghn,
                                  const float *hp, const float *dh, const float *dout, float *dir, float *diz,
                                  float *din, float *dhr, float *dhz, float *dhn, float *dhp) {
    for (int j = 0; j < H; j++) {
        const float dhv = dh[j] + dout[j];
        const float r = r_[j], z = z_[j], n = n_[j];
        const float dn = dhv * (1.0f - z);
        const float dz = dhv * (hp[j] - n);
        const float dnp = dn * (1.0f - n * n);
        const float drp = dnp * ghn[j] * r * (1.0f - r);
        const float dzp = dz * z * (1.0f - z);
        dir[j] = drp; diz[j] = dzp; din[j] = dnp;
        dhr[j] = drp; dhz[j] = dzp; dhn[j] = dnp * r;
        dhp[j] = dhv * z;
    }
}

/* Adam on [lo, hi): separate IEEE multiplies and adds (no FMA contraction in ISO C mode), as the vector
 * loops of src/kernels/avx2 and avx512. g == NULL: a zero gradient. */
void attn__adam_block_ref(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                          int64_t lo, int64_t hi, float b1, float b2, float eps, float step, float vscale) {
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (int64_t i = lo; i < hi; i++) {
        float gi = g ? g[i] : 0.0f;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + c2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] -= (step * mi) / (sqrtf(vi) * vscale + eps);
    }
}

void attn__gelu_forward_ref(float *y, const float *x, int64_t n) { gelu_forward_loop(y, x, n); }

void attn__gelu_backward_ref(float *dx, const float *dy, const float *x, int64_t n) { gelu_backward_loop(dx, dy, x, n); }

void attn__layernorm_forward_ref(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                 const float *beta, int64_t n, int C, float eps) {
    ln_forward_loop(y, mean, rstd, x, gamma, beta, n, C, eps);
}

void attn__layernorm_backward_ref(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                  const float *gamma, int64_t n, int C) {
    ln_backward_loop(dx, dy, x, mean, rstd, gamma, n, C);
}
