/*
 * vision.c — the layers a Vision Transformer adds to the text ones: GELU (the exact erf form), the patch
 * embedding (a convolution of stride P and kernel K >= P, zero-padded when the patches overlap, computed
 * as one linear map over the unfolded patches through CBLAS), the class token with learned positions, and
 * the warm-up + cosine learning-rate schedule. Lifecycles as every layer's (attn/layers.h).
 */
#include "util.h"

#include <cblas.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * GELU: y = x Φ(x); the loops are gelu_kernels.h's, run on the default path's table (its AVX2 or AVX-512
 * compilation of the same code: the same bits, 2-4x the floats per instruction of the portable build).
 * One thread: the ViT calls it from its shards, which are the threads.
 */
static const attn_kernels *gelu_table(void) {
    const attn_kernels *k = attn__kernels(attn_get_isa());
    return k ? k : attn__kernels(ATTN_ISA_REF);
}

attn_status attn_gelu_forward(float *y, const float *x, size_t n) {
    if (!y || !x) return ATTN_ERR_NULL;
    if (n == 0 || n > (size_t)INT64_MAX / 8) return ATTN_ERR_SIZE;
    gelu_table()->gelu_forward(y, x, (int64_t)n);
    return ATTN_OK;
}

attn_status attn_gelu_backward(float *dx, const float *dy, const float *x, size_t n) {
    if (!dx || !dy || !x) return ATTN_ERR_NULL;
    if (n == 0 || n > (size_t)INT64_MAX / 8) return ATTN_ERR_SIZE;
    gelu_table()->gelu_backward(dx, dy, x, (int64_t)n);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Patch embedding, kernel K, stride P, zero padding q = (K-P)/2.
 *   unfold:  u[b, p, c·K·K + i·K + j] = x[b, c, py·P - q + i, px·P - q + j] (0 outside the image),
 *            p = py·(Wi/P) + px
 *   linear:  y[b, p, :] = w (D, C·K·K) · u[b, p, :] + b
 * The weight is nn.Conv2d's (D,C,K,K), which flattened is exactly the (D, C·K·K) matrix of the linear.
 */
size_t attn_patch_embed_n_params(int C, int K, int D) {
    if (!attn__dim_ok(C) || !attn__dim_ok(K) || !attn__dim_ok(D)) return 0;
    const size_t k = (size_t)C * K * K;
    if (k > ATTN_MAX_DIM || !attn__prod_fits_int((int)k, D)) return 0;
    return (size_t)D * k + (size_t)D;
}

attn_status attn_patch_embed_bind_kernel(attn_patch_embed *l, int C, int Hi, int Wi, int P, int K, int D,
                                         float *params, float *grads) {
    if (!l || !params) return ATTN_ERR_NULL;
    memset(l, 0, sizeof *l);
    if (!attn__dim_ok(Hi) || !attn__dim_ok(Wi)) return ATTN_ERR_SIZE;
    attn_status st = attn__patch_kernel_check(P, K);
    if (st != ATTN_OK) return st;
    const size_t n = attn_patch_embed_n_params(C, K, D);
    if (n == 0) return ATTN_ERR_SIZE;
    if (Hi % P != 0 || Wi % P != 0) return ATTN_ERR_SHAPE;
    const int64_t Np = (int64_t)(Hi / P) * (Wi / P);
    if (Np > ATTN_MAX_DIM) return ATTN_ERR_SIZE;
    const size_t k = (size_t)C * K * K;
    l->C = C; l->Hi = Hi; l->Wi = Wi; l->P = P; l->D = D; l->Np = (int)Np;
    l->K = K; l->pad = (K - P) / 2;
    l->w = params;
    l->b = params + (size_t)D * k;
    if (grads) {
        l->dw = grads;
        l->db = grads + (size_t)D * k;
    }
    l->params = params;
    l->grads = grads;
    l->n_params = n;
    return ATTN_OK;
}

attn_status attn_patch_embed_bind(attn_patch_embed *l, int C, int Hi, int Wi, int P, int D, float *params,
                                  float *grads) {
    return attn_patch_embed_bind_kernel(l, C, Hi, Wi, P, P, D, params, grads);
}

attn_status attn_patch_embed_init_weights(attn_patch_embed *l, attn_rng *rng) {
    if (!l || !rng || !l->w) return ATTN_ERR_NULL;
    /* nn.Conv2d's default: kaiming_uniform(a=√5) on the weight and U(±1/√fan_in) on the bias; both are
     * U(±1/√fan_in), fan_in = C·K·K */
    const int k = l->C * l->K * l->K;
    const float a = 1.0f / sqrtf((float)k);
    attn_rng_fill_uniform(rng, l->w, (size_t)l->D * k, -a, a);
    attn_rng_fill_uniform(rng, l->b, (size_t)l->D, -a, a);
    return ATTN_OK;
}

static attn_status patch_sizes(const attn_patch_embed *l, int B, size_t *rows, size_t *bytes) {
    if (!attn__dim_ok(B)) return ATTN_ERR_SIZE;
    const size_t K = (size_t)l->C * l->K * l->K;
    const size_t r = (size_t)B * l->Np;
    if (r > INT_MAX || r > SIZE_MAX / sizeof(float) / K) return ATTN_ERR_SIZE;
    *rows = r;
    size_t sizes[1] = {r * K * sizeof(float)}, off[1];
    return attn__cache_plan(sizes, 1, off, bytes);
}

attn_status attn_patch_embed_cache_bytes(const attn_patch_embed *l, int B, size_t *bytes) {
    if (!l || !bytes || !l->w) return ATTN_ERR_NULL;
    size_t rows;
    return patch_sizes(l, B, &rows, bytes);
}

/* u (B·Np, C·K·K) from x (B,C,Hi,Wi), or back (fold, accumulating into x) when fold is nonzero. A window's
 * row i covers image columns [x0, x0 + K), of which [j0, j1) of the window lie inside the image; the rest of
 * u is zero (unfold) or skipped (fold). With K == P every window lies inside: j0 = 0, j1 = K. */
static void unfold(const attn_patch_embed *l, float *u, float *x, int B, int fold) {
    const int C = l->C, P = l->P, K = l->K, q = l->pad, Hi = l->Hi, Wi = l->Wi, nx = Wi / P, CK = C * K * K;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < l->Np; p++) {
            const int y0 = (p / nx) * P - q, x0 = (p % nx) * P - q;
            const int j0 = x0 < 0 ? -x0 : 0, j1 = x0 + K > Wi ? Wi - x0 : K;
            float *row = u + ((size_t)b * l->Np + p) * CK;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < K; i++) {
                    float *dst = row + (c * K + i) * K;
                    const int yy = y0 + i;
                    if (yy < 0 || yy >= Hi) {
                        if (!fold) memset(dst, 0, (size_t)K * sizeof(float));
                        continue;
                    }
                    float *src = x + (((size_t)b * C + c) * Hi + yy) * Wi + (x0 + j0);   /* window column j0 */
                    if (fold) {
                        for (int j = j0; j < j1; j++) src[j - j0] += dst[j];
                    } else {
                        for (int j = 0; j < j0; j++) dst[j] = 0.0f;
                        memcpy(dst + j0, src, (size_t)(j1 - j0) * sizeof(float));
                        for (int j = j1; j < K; j++) dst[j] = 0.0f;
                    }
                }
        }
}

attn_status attn_patch_embed_forward(const attn_patch_embed *l, void *cache, size_t cache_bytes, float *y,
                                     const float *x, int B) {
    if (!l || !cache || !y || !x || !l->w) return ATTN_ERR_NULL;
    size_t rows, need;
    attn_status st = patch_sizes(l, B, &rows, &need);
    if (st != ATTN_OK) return st;
    if (cache_bytes < need) return ATTN_ERR_WORKSPACE;
    float *u = (float *)attn__cache_base(cache);       /* (B·Np, K) saved for the backward */
    unfold(l, u, (float *)x, B, 0);
    return attn_linear_forward(y, u, l->w, l->b, (int)rows, l->C * l->K * l->K, l->D);
}

attn_status attn_patch_embed_backward(const attn_patch_embed *l, void *cache, size_t cache_bytes, float *dx,
                                      const float *dy, const float *x, int B) {
    if (!l || !cache || !dy || !x || !l->w) return ATTN_ERR_NULL;
    if (!l->dw) return ATTN_ERR_NULL;
    size_t rows, need;
    attn_status st = patch_sizes(l, B, &rows, &need);
    if (st != ATTN_OK) return st;
    if (cache_bytes < need) return ATTN_ERR_WORKSPACE;
    float *u = (float *)attn__cache_base(cache);
    const int K = l->C * l->K * l->K;
    /* dw += dyᵀ u, db += Σ dy (u is still the forward's) */
    if ((st = attn_linear_backward(NULL, l->dw, l->db, dy, u, l->w, (int)rows, K, l->D)) != ATTN_OK) return st;
    if (!dx) return ATTN_OK;
    /* du = dy w, overwriting u, then folded back into dx */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, K, l->D, 1.0f, dy, l->D, l->w, K, 0.0f, u, K);
    unfold(l, u, dx, B, 1);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Class token and learned positions: y[b] = [cls; x[b]] + pos.
 */
size_t attn_cls_pos_n_params(int N, int D) {
    if (!attn__dim_ok(N) || N >= ATTN_MAX_DIM || !attn__dim_ok(D)) return 0;
    if ((int64_t)(N + 1) * D > ATTN_MAX_DIM * (int64_t)64) return 0;
    return (size_t)D + (size_t)(N + 1) * D;
}

attn_status attn_cls_pos_bind(attn_cls_pos *l, int N, int D, float *params, float *grads) {
    if (!l || !params) return ATTN_ERR_NULL;
    memset(l, 0, sizeof *l);
    const size_t n = attn_cls_pos_n_params(N, D);
    if (n == 0) return ATTN_ERR_SIZE;
    l->N = N; l->D = D;
    l->cls = params;
    l->pos = params + D;
    if (grads) {
        l->dcls = grads;
        l->dpos = grads + D;
    }
    l->params = params;
    l->grads = grads;
    l->n_params = n;
    return ATTN_OK;
}

/* N(0, std²) cut at ±2 std by drawing again (nn.init.trunc_normal_(std, a=-2std, b=2std)). */
static void trunc_normal(attn_rng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) {
        float z;
        do z = attn_rng_normal(r); while (z < -2.0f || z > 2.0f);
        x[i] = z * std;
    }
}

attn_status attn_cls_pos_init_weights(attn_cls_pos *l, attn_rng *rng) {
    if (!l || !rng || !l->cls) return ATTN_ERR_NULL;
    trunc_normal(rng, l->cls, (size_t)l->D, 0.02f);
    trunc_normal(rng, l->pos, (size_t)(l->N + 1) * l->D, 0.02f);
    return ATTN_OK;
}

attn_status attn_cls_pos_forward(const attn_cls_pos *l, float *y, const float *x, int B) {
    if (!l || !y || !x || !l->cls) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || (int64_t)B * (l->N + 1) > INT_MAX) return ATTN_ERR_SIZE;
    const int N = l->N, D = l->D;
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * (N + 1) * D;
        const float *xb = x + (size_t)b * N * D;
        for (int d = 0; d < D; d++) yb[d] = l->cls[d] + l->pos[d];
        for (size_t i = 0; i < (size_t)N * D; i++) yb[D + i] = xb[i] + l->pos[D + i];
    }
    return ATTN_OK;
}

attn_status attn_cls_pos_backward(const attn_cls_pos *l, float *dx, const float *dy, int B) {
    if (!l || !dy || !l->cls) return ATTN_ERR_NULL;
    if (!l->dcls) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || (int64_t)B * (l->N + 1) > INT_MAX) return ATTN_ERR_SIZE;
    const int N = l->N, D = l->D;
    const size_t TD = (size_t)(N + 1) * D;
    for (int b = 0; b < B; b++) {
        const float *dyb = dy + (size_t)b * TD;
        for (int d = 0; d < D; d++) l->dcls[d] += dyb[d];
        for (size_t i = 0; i < TD; i++) l->dpos[i] += dyb[i];
        if (dx) {
            float *dxb = dx + (size_t)b * N * D;
            for (size_t i = 0; i < (size_t)N * D; i++) dxb[i] += dyb[D + i];
        }
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Warm-up, then cosine decay.
 */
float attn_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float base, float min_lr) {
    if (step < 0) step = 0;
    if (warmup > 0 && step < warmup) return (float)((double)base * (double)(step + 1) / (double)warmup);
    if (total <= warmup) return base;
    double t = (double)(step - warmup) / (double)(total - warmup);
    if (t > 1.0) t = 1.0;
    return (float)(min_lr + 0.5 * ((double)base - min_lr) * (1.0 + cos(3.14159265358979323846 * t)));
}
