/*
 * basic.c — the simple layers: linear, embedding, dropout, layer norm, mean over time and softmax
 * cross-entropy, forward and backward. All but layer norm are plain functions on pointers; layer norm is
 * also a layer with the lifecycle of attn/layers.h (bind, init_weights, cache_bytes) around its raw form.
 *
 * Conventions (attn/layers.h): arguments go outputs, saved-for-backward, inputs, parameters, sizes; every
 * backward accumulates (+=); a NULL input gradient is skipped. Each call checks all its arguments before
 * writing anything. None allocates. Matrix products go through CBLAS (OpenBLAS threads them itself);
 * elementwise passes over large arrays use OpenMP, elementwise only, so results do not depend on the
 * thread count.
 */
#include "util.h"

#include <cblas.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Linear: y = x Wᵀ + b, W in PyTorch's (out, in) layout.
 */
static attn_status linear_check(int N, int in, int out) {
    if (!attn__dim_ok(N) || !attn__dim_ok(in) || !attn__dim_ok(out)) return ATTN_ERR_SIZE;
    /* leading dimensions and the row counts below are BLAS ints */
    if (!attn__prod_fits_int(N, in) || !attn__prod_fits_int(N, out) || !attn__prod_fits_int(out, in))
        return ATTN_ERR_SIZE;
    return ATTN_OK;
}

attn_status attn_linear_forward(float *y, const float *x, const float *w, const float *b,
                                int N, int in, int out) {
    if (!y || !x || !w) return ATTN_ERR_NULL;
    attn_status st = linear_check(N, in, out);
    if (st != ATTN_OK) return st;
    /* y (N,out) = b broadcast, then += x (N,in) · Wᵀ (in,out) */
    float beta = 0.0f;
    if (b) {
        for (int n = 0; n < N; n++) memcpy(y + (size_t)n * out, b, sizeof(float) * (size_t)out);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in,
                1.0f, x, in, w, in, beta, y, out);
    return ATTN_OK;
}

attn_status attn_linear_backward(float *dx, float *dw, float *db,
                                 const float *dy, const float *x, const float *w,
                                 int N, int in, int out) {
    if (!dw || !dy || !x || !w) return ATTN_ERR_NULL;
    attn_status st = linear_check(N, in, out);
    if (st != ATTN_OK) return st;
    /* dx (N,in) += dy (N,out) · W (out,in) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out,
                    1.0f, dy, out, w, in, 1.0f, dx, in);
    /* dW (out,in) += dyᵀ (out,N) · x (N,in) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N,
                1.0f, dy, out, x, in, 1.0f, dw, in);
    /* db (out) += Σ_n dy[n] */
    if (db)
        for (int n = 0; n < N; n++) {
            const float *r = dy + (size_t)n * out;
            for (int o = 0; o < out; o++) db[o] += r[o];
        }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Embedding: y[n] = table[ids[n]]. Every id is checked before anything is written.
 */
static attn_status embedding_check(const int32_t *ids, int N, int V, int D) {
    if (!attn__dim_ok(N) || !attn__dim_ok(V) || !attn__dim_ok(D)) return ATTN_ERR_SIZE;
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V) return ATTN_ERR_ARG;
    return ATTN_OK;
}

attn_status attn_embedding_forward(float *y, const int32_t *ids, const float *table, int N, int V, int D) {
    if (!y || !ids || !table) return ATTN_ERR_NULL;
    attn_status st = embedding_check(ids, N, V, D);
    if (st != ATTN_OK) return st;
    for (int n = 0; n < N; n++)
        memcpy(y + (size_t)n * D, table + (size_t)ids[n] * D, sizeof(float) * (size_t)D);
    return ATTN_OK;
}

attn_status attn_embedding_backward(float *dtable, const float *dy, const int32_t *ids, int N, int V, int D) {
    if (!dtable || !dy || !ids) return ATTN_ERR_NULL;
    attn_status st = embedding_check(ids, N, V, D);
    if (st != ATTN_OK) return st;
    /* in order of n, so repeated ids add up the same way every run */
    for (int n = 0; n < N; n++) {
        float *row = dtable + (size_t)ids[n] * D;
        const float *g = dy + (size_t)n * D;
        for (int c = 0; c < D; c++) row[c] += g[c];
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Inverted dropout: y = x · keep(seed, i) / (1 - p).
 */
static attn_status dropout_check(size_t n, float p) {
    if (n == 0 || n > (size_t)INT64_MAX) return ATTN_ERR_SIZE;
    if (!(p >= 0.0f && p < 1.0f)) return ATTN_ERR_ARG;   /* NaN fails too */
    return ATTN_OK;
}

attn_status attn_dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed) {
    if (!y || !x) return ATTN_ERR_NULL;
    attn_status st = dropout_check(n, p);
    if (st != ATTN_OK) return st;
    const float scale = 1.0f / (1.0f - p);
    const int64_t nn = (int64_t)n;
    const int nth = attn__threads_for(n);
    (void)nth;
    ATTN_OMP(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
    for (int64_t i = 0; i < nn; i++)
        y[i] = attn__dropout_keep(seed, (uint64_t)i, p) ? x[i] * scale : 0.0f;
    return ATTN_OK;
}

attn_status attn_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed) {
    if (!dx || !dy) return ATTN_ERR_NULL;
    attn_status st = dropout_check(n, p);
    if (st != ATTN_OK) return st;
    const float scale = 1.0f / (1.0f - p);
    const int64_t nn = (int64_t)n;
    const int nth = attn__threads_for(n);
    (void)nth;
    ATTN_OMP(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
    for (int64_t i = 0; i < nn; i++)
        if (attn__dropout_keep(seed, (uint64_t)i, p)) dx[i] += dy[i] * scale;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * LayerNorm over the last axis (the raw form on pointers, then the layer): y = (x - mean) · rstd · gamma + beta, rstd = 1/sqrt(var + eps), with the
 * biased variance (as PyTorch). Row statistics are accumulated in double.
 */
static attn_status layernorm_check(int N, int C) {
    if (!attn__dim_ok(N) || !attn__dim_ok(C)) return ATTN_ERR_SIZE;
    return ATTN_OK;
}

/* The row loops are layernorm_kernels.h's, on the default path's table (its AVX2 or AVX-512 compilation
 * of the same code: the same bits); threads take contiguous runs of rows. */
static const attn_kernels *ln_table(void) {
    const attn_kernels *k = attn__kernels(attn_get_isa());
    return k ? k : attn__kernels(ATTN_ISA_REF);
}

attn_status attn__layernorm_forward(float *y, float *mean, float *rstd,
                                    const float *x, const float *gamma, const float *beta,
                                    int N, int C, float eps) {
    if (!y || !mean || !rstd || !x || !gamma || !beta) return ATTN_ERR_NULL;
    attn_status st = layernorm_check(N, C);
    if (st != ATTN_OK) return st;
    if (!(eps >= 0.0f) || isinf(eps)) return ATTN_ERR_ARG;
    const attn_kernels *k = ln_table();
    const int nth = attn__threads_for((size_t)N * C), per = (N + nth - 1) / nth;
    (void)nth;
    ATTN_OMP(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
    for (int i = 0; i < nth; i++) {
        const int n0 = i * per, nr = N - n0 < per ? N - n0 : per;
        const size_t o = (size_t)n0 * C;
        if (nr > 0) k->layernorm_forward(y + o, mean + n0, rstd + n0, x + o, gamma, beta, nr, C, eps);
    }
    return ATTN_OK;
}

/* With xhat = (x - mean)·rstd and g = dy·gamma:
 *   dx = rstd · (g - mean(g) - xhat · mean(g · xhat)),  dgamma += Σ_n dy·xhat,  dbeta += Σ_n dy. */
attn_status attn__layernorm_backward(float *dx, float *dgamma, float *dbeta,
                                     const float *dy, const float *x, const float *mean, const float *rstd,
                                     const float *gamma, int N, int C) {
    if (!dgamma || !dbeta || !dy || !x || !mean || !rstd || !gamma) return ATTN_ERR_NULL;
    attn_status st = layernorm_check(N, C);
    if (st != ATTN_OK) return st;
    /* input gradient: rows are independent */
    if (dx) {
        const attn_kernels *k = ln_table();
        const int nth = attn__threads_for((size_t)N * C), per = (N + nth - 1) / nth;
        (void)nth;
        ATTN_OMP(omp parallel for schedule(static) num_threads(nth) if(nth > 1))
        for (int i = 0; i < nth; i++) {
            const int n0 = i * per, nr = N - n0 < per ? N - n0 : per;
            const size_t o = (size_t)n0 * C;
            if (nr > 0) k->layernorm_backward(dx + o, dy + o, x + o, mean + n0, rstd + n0, gamma, nr, C);
        }
    }
    /* parameter gradients: summed over rows in order */
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *gr = dy + (size_t)n * C;
        const float m = mean[n], r = rstd[n];
        for (int c = 0; c < C; c++) {
            dgamma[c] += gr[c] * ((xr[c] - m) * r);
            dbeta[c] += gr[c];
        }
    }
    return ATTN_OK;
}

/* The layer: gamma, beta views; the cache holds mean (N) and rstd (N). */
size_t attn_layernorm_n_params(int C) {
    return attn__dim_ok(C) ? 2 * (size_t)C : 0;
}

attn_status attn_layernorm_bind(attn_layernorm *l, int C, float *params, float *grads) {
    if (!l || !params) return ATTN_ERR_NULL;
    if (!attn__dim_ok(C)) return ATTN_ERR_SIZE;
    *l = (attn_layernorm){0};
    l->C = C;
    l->eps = 1e-5f;
    l->gamma = params;
    l->beta = params + C;
    if (grads) {
        l->dgamma = grads;
        l->dbeta = grads + C;
    }
    l->params = params;
    l->grads = grads;
    l->n_params = 2 * (size_t)C;
    return ATTN_OK;
}

attn_status attn_layernorm_init_weights(attn_layernorm *l, attn_rng *rng) {
    (void)rng;                                   /* nothing is random: gamma 1, beta 0 */
    if (!l || !l->gamma || !l->beta) return ATTN_ERR_NULL;
    for (int c = 0; c < l->C; c++) {
        l->gamma[c] = 1.0f;
        l->beta[c] = 0.0f;
    }
    return ATTN_OK;
}

static attn_status ln_plan(const attn_layernorm *l, int N, size_t off[2], size_t *total) {
    if (!l || !l->gamma || !l->beta) return ATTN_ERR_NULL;
    if (!attn__dim_ok(l->C) || !attn__dim_ok(N)) return ATTN_ERR_SIZE;
    const size_t sizes[2] = {sizeof(float) * (size_t)N, sizeof(float) * (size_t)N};
    return attn__cache_plan(sizes, 2, off, total);
}

attn_status attn_layernorm_cache_bytes(const attn_layernorm *l, int N, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    return ln_plan(l, N, NULL, bytes);
}

attn_status attn_layernorm_forward(const attn_layernorm *l, void *cache, size_t cache_bytes,
                                   float *y, const float *x, int N) {
    size_t off[2], need;
    attn_status st = ln_plan(l, N, off, &need);
    if (st != ATTN_OK) return st;
    if (!y || !x) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    return attn__layernorm_forward(y, (float *)(base + off[0]), (float *)(base + off[1]), x, l->gamma, l->beta,
                                   N, l->C, l->eps);
}

attn_status attn_layernorm_backward(const attn_layernorm *l, void *cache, size_t cache_bytes,
                                    float *dx, const float *dy, const float *x, int N) {
    size_t off[2], need;
    attn_status st = ln_plan(l, N, off, &need);
    if (st != ATTN_OK) return st;
    if (!l->dgamma || !l->dbeta || !dy || !x) return ATTN_ERR_NULL;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    char *base = attn__cache_base(cache);
    return attn__layernorm_backward(dx, l->dgamma, l->dbeta, dy, x, (const float *)(base + off[0]),
                                    (const float *)(base + off[1]), l->gamma, N, l->C);
}

/* ---------------------------------------------------------------------------------------------------
 * Mean over time: y[b] = (1/T) Σ_t x[b,t].
 */
static attn_status mean_time_check(int B, int T, int C) {
    if (!attn__dim_ok(B) || !attn__dim_ok(T) || !attn__dim_ok(C)) return ATTN_ERR_SIZE;
    return ATTN_OK;
}

attn_status attn_mean_time_forward(float *y, const float *x, int B, int T, int C) {
    if (!y || !x) return ATTN_ERR_NULL;
    attn_status st = mean_time_check(B, T, C);
    if (st != ATTN_OK) return st;
    const float inv = 1.0f / (float)T;
    for (int b = 0; b < B; b++) {
        float *yr = y + (size_t)b * C;                       /* (C) */
        const float *xb = x + (size_t)b * T * C;             /* (T,C) */
        for (int c = 0; c < C; c++) yr[c] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *xr = xb + (size_t)t * C;
            for (int c = 0; c < C; c++) yr[c] += xr[c];
        }
        for (int c = 0; c < C; c++) yr[c] *= inv;
    }
    return ATTN_OK;
}

attn_status attn_mean_time_backward(float *dx, const float *dy, int B, int T, int C) {
    if (!dx || !dy) return ATTN_ERR_NULL;
    attn_status st = mean_time_check(B, T, C);
    if (st != ATTN_OK) return st;
    const float inv = 1.0f / (float)T;
    for (int b = 0; b < B; b++) {
        const float *g = dy + (size_t)b * C;                 /* (C) */
        float *dxb = dx + (size_t)b * T * C;                 /* (T,C) */
        for (int t = 0; t < T; t++) {
            float *r = dxb + (size_t)t * C;
            for (int c = 0; c < C; c++) r[c] += g[c] * inv;
        }
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Softmax cross-entropy per row, through a stable log-softmax: log p = x - max - log Σ exp(x - max).
 */
static attn_status xent_check(const int32_t *targets, int N, int C) {
    if (!attn__dim_ok(N) || !attn__dim_ok(C)) return ATTN_ERR_SIZE;
    for (int n = 0; n < N; n++)
        if (targets[n] < 0 || targets[n] >= C) return ATTN_ERR_ARG;
    return ATTN_OK;
}

/* p (C) = softmax(x (C)); returns the sum of exp(x - max) (in double), *mx the max. */
static double softmax_row(float *p, const float *x, int C, float *mx_out) {
    float mx = x[0];
    for (int c = 1; c < C; c++) mx = x[c] > mx ? x[c] : mx;
    /* pass 1: e = exp(x - max), summed in double */
    double sum = 0.0;
    for (int c = 0; c < C; c++) {
        p[c] = expf(x[c] - mx);
        sum += p[c];
    }
    /* pass 2: normalize */
    const float inv = (float)(1.0 / sum);
    for (int c = 0; c < C; c++) p[c] *= inv;
    *mx_out = mx;
    return sum;
}

attn_status attn_softmax_xent_forward(float *losses, float *probs,
                                      const float *logits, const int32_t *targets, const float *weights,
                                      int N, int C) {
    if (!losses || !probs || !logits || !targets) return ATTN_ERR_NULL;
    attn_status st = xent_check(targets, N, C);
    if (st != ATTN_OK) return st;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * C;   /* (C) */
        float mx;
        const double sum = softmax_row(probs + (size_t)n * C, x, C, &mx);
        /* the loss from the log-softmax, not from log(p) */
        const double logp = (double)x[targets[n]] - mx - log(sum);
        const float w = weights ? weights[n] : 1.0f;
        losses[n] = w == 0.0f ? 0.0f : (float)(-logp * w);   /* padding stays 0 even for -inf logits */
    }
    return ATTN_OK;
}

attn_status attn_softmax_xent_backward(float *dlogits, const float *dlosses,
                                       const float *probs, const int32_t *targets, const float *weights,
                                       int N, int C) {
    if (!dlogits || !dlosses || !probs || !targets) return ATTN_ERR_NULL;
    attn_status st = xent_check(targets, N, C);
    if (st != ATTN_OK) return st;
    for (int n = 0; n < N; n++) {
        const float g = dlosses[n] * (weights ? weights[n] : 1.0f);
        if (g == 0.0f) continue;                   /* masked rows contribute nothing */
        const float *p = probs + (size_t)n * C;
        float *d = dlogits + (size_t)n * C;
        for (int c = 0; c < C; c++) d[c] += g * p[c];
        d[targets[n]] -= g;
    }
    return ATTN_OK;
}

/* The smoothed loss's arguments: eps in [0, 1) and the plain loss's checks. */
static attn_status xent_smooth_check(const int32_t *targets, float eps, int N, int C) {
    if (!(eps >= 0.0f && eps < 1.0f)) return ATTN_ERR_ARG;
    return xent_check(targets, N, C);
}

/* Label smoothing: -log p[c] = mx + log(sum) - x[c], so the mean over c is mx + log(sum) - mean(x), in
 * double; the probabilities as the plain loss computes them. */
attn_status attn_softmax_xent_smooth_forward(float *losses, float *probs, const float *logits, const int32_t *targets,
                                             float eps, int N, int C) {
    if (!losses || !probs || !logits || !targets) return ATTN_ERR_NULL;
    attn_status st = xent_smooth_check(targets, eps, N, C);
    if (st != ATTN_OK) return st;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * C;   /* (C) */
        float mx;
        const double sum = softmax_row(probs + (size_t)n * C, x, C, &mx);
        double xs = 0.0;
        for (int c = 0; c < C; c++) xs += x[c];
        const double lse = (double)mx + log(sum);
        losses[n] = (float)((1.0 - eps) * (lse - x[targets[n]]) + eps * (lse - xs / C));
    }
    return ATTN_OK;
}

attn_status attn_softmax_xent_smooth_backward(float *dlogits, const float *dlosses, const float *probs,
                                              const int32_t *targets, float eps, int N, int C) {
    if (!dlogits || !dlosses || !probs || !targets) return ATTN_ERR_NULL;
    attn_status st = xent_smooth_check(targets, eps, N, C);
    if (st != ATTN_OK) return st;
    const float u = eps / (float)C;                /* the smoothed target's floor */
    for (int n = 0; n < N; n++) {
        const float g = dlosses[n];
        const float *p = probs + (size_t)n * C;
        float *d = dlogits + (size_t)n * C;
        for (int c = 0; c < C; c++) d[c] += g * (p[c] - u);
        d[targets[n]] -= g * (1.0f - eps);
    }
    return ATTN_OK;
}
