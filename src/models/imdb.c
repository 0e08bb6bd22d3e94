/*
 * imdb.c — the IMDB self-attention classifier (see attn/imdb_model.h): one parameter slab, one
 * gradient slab; the embedding and the attention projections per distinct word, the fused attention
 * kernel, then the library's small layers (mean, dropout, dense, softmax cross-entropy).
 */
#include "attn.h"
#include "attn/imdb_model.h"
#include "attn/safetensors.h"
#include "layers/util.h"

#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define IM_OMP(x) _Pragma(#x)
#else
#define IM_OMP(x)
#endif

#define IM_COLS 32       /* columns per dW job: fixed by the shape, not the threads */

void attn_imdb_config_default(attn_imdb_config *c) {
    c->V = 20000;
    c->D = 128;
    c->T = 64;
    c->C = 2;
    c->scale = 0.125f;          /* 1/sqrt(64), as the Keras layer divides by 8 whatever its width */
    c->dropout = 0.5f;
    c->mask_padding = 0;        /* the Keras model attends over the padding */
    c->window = 0;              /* dense */
    c->window_left = c->window_right = 0;
    c->compute = ATTN_DTYPE_F32;
}

void attn_imdb_model_free(attn_imdb_model *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->x);
    free(m->words);
    free(m->wc);
    free(m->awork);
    free(m->targets);
    free(m->touched);
    free(m->tab);
    free(m->keymask);
    memset(m, 0, sizeof *m);
}

attn_status attn_imdb_model_init(attn_imdb_model *m, const attn_ctx *ctx, const attn_imdb_config *c, int Bmax,
                                 uint64_t seed) {
    if (!m || !c) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    if (c->V < 1 || c->D < 1 || c->T < 1 || c->C < 2 || Bmax < 1) return ATTN_ERR_SIZE;
    if (c->window && (c->window_left < 0 || c->window_right < 0)) return ATTN_ERR_ARG;
    if (c->compute != ATTN_DTYPE_F32 && c->compute != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    m->cfg = *c;
    m->ctx = ctx ? *ctx : attn_ctx_default();
    m->Bmax = Bmax;
    const size_t V = (size_t)c->V, D = (size_t)c->D, T = (size_t)c->T, C = (size_t)c->C, B = (size_t)Bmax;
    m->n_params = V * D + 3 * D * D + C * D + C;
    m->params = calloc(m->n_params, sizeof(float));
    m->grads = calloc(m->n_params, sizeof(float));
    if (!m->params || !m->grads) {
        attn_imdb_model_free(m);
        return ATTN_ERR_NOMEM;
    }
    m->emb = m->params;
    m->kernel = m->emb + V * D;
    m->dense_w = m->kernel + 3 * D * D;
    m->dense_b = m->dense_w + C * D;
    m->d_emb = m->grads;
    m->d_kernel = m->d_emb + V * D;
    m->d_dense_w = m->d_kernel + 3 * D * D;
    m->d_dense_b = m->d_dense_w + C * D;

    /* init: one stream, in slab order */
    attn_rng r;
    attn_rng_seed(&r, seed);
    attn_rng_fill_uniform(&r, m->emb, V * D, -0.05f, 0.05f);
    attn_rng_fill_uniform(&r, m->kernel, 3 * D * D, -0.05f, 0.05f);
    const float g = sqrtf(6.0f / (float)(D + C));    /* Glorot uniform: fan_in D, fan_out C */
    attn_rng_fill_uniform(&r, m->dense_w, C * D, -g, g);

    if ((int64_t)B * T * 3 * D > INT32_MAX || V > INT32_MAX / 2) {
        attn_imdb_model_free(m);
        return ATTN_ERR_SIZE;
    }
    /* activations: one allocation (+ the projections: 4 (N,3D) and the attention's row statistics (N,2)) */
    const size_t N = B * T;
    const size_t nact = 4 * N * D + 4 * B * D + 5 * B * C + 4 * N * 3 * D + 2 * N;
    m->x = malloc(sizeof(float) * nact);
    m->targets = calloc(B, sizeof(int32_t));
    m->touched = malloc(sizeof(int32_t) * N);
    m->words = malloc(sizeof(int32_t) * (4 * N + 1 + V));
    m->wc = malloc(sizeof(float) * 3 * D * D);
    m->keymask = calloc(N, 1);
    if (!m->x || !m->targets || !m->touched || !m->words || !m->wc || !m->keymask) {
        attn_imdb_model_free(m);
        return ATTN_ERR_NOMEM;
    }
    m->wpos = m->words + N;
    m->wstart = m->wpos + N;
    m->wlist = m->wstart + N + 1;
    m->wmark = m->wlist + N;
    for (size_t i = 0; i < V; i++) m->wmark[i] = -1;
    float *p = m->x;
    p += B * T * D;
    m->h = p;        p += B * T * D;
    m->dx = p;       p += B * T * D;
    m->dh = p;       p += B * T * D;
    m->pooled = p;   p += B * D;
    m->dropped = p;  p += B * D;
    m->dpooled = p;  p += B * D;
    m->ddropped = p; p += B * D;
    m->logits = p;   p += B * C;
    m->probs = p;    p += B * C;
    m->dlogits = p;  p += B * C;
    m->losses = p;   p += B * C;   /* B used */
    m->dlosses = p;  p += B * C;   /* B used */
    m->pu = p;       p += N * 3 * D;
    m->dpu = p;      p += N * 3 * D;
    m->pp = p;       p += N * 3 * D;
    m->dpp = p;      p += N * 3 * D;
    m->astats = p;
    return ATTN_OK;
}

/* From h (B,T,D): mean over T, dropout when training, dense, softmax cross-entropy, loss and accuracy. */
static attn_status head_forward(attn_imdb_model *m, const int32_t *labels, int B, int train, uint64_t drop_seed,
                                double *loss_sum, int *correct, int pooled_ready) {
    const attn_imdb_config *c = &m->cfg;
    attn_status st;
    /* pooled (B,D) = mean over T (unless the attention's threads made it already) */
    if (!pooled_ready && (st = attn_mean_time_forward(m->pooled, m->h, B, c->T, c->D)) != ATTN_OK) return st;
    /* dropped (B,D) */
    const float *feat = m->pooled;
    if (train && c->dropout > 0.0f) {
        if ((st = attn_dropout_forward(m->dropped, m->pooled, (size_t)B * c->D, c->dropout, drop_seed)) != ATTN_OK)
            return st;
        feat = m->dropped;
    }
    /* logits (B,C) */
    if ((st = attn_linear_forward(m->logits, feat, m->dense_w, m->dense_b, B, c->D, c->C)) != ATTN_OK) return st;
    const int32_t *tg = labels ? labels : m->targets;
    if ((st = attn_softmax_xent_forward(m->losses, m->probs, m->logits, tg, NULL, B, c->C)) != ATTN_OK) return st;
    if (labels) {
        double ls = 0;
        int ok = 0;
        for (int b = 0; b < B; b++) {
            ls += m->losses[b];
            const float *pr = m->probs + (size_t)b * c->C;
            int am = 0;
            for (int k = 1; k < c->C; k++)
                if (pr[k] > pr[am]) am = k;
            ok += am == labels[b];
        }
        if (loss_sum) *loss_sum += ls;
        if (correct) *correct += ok;
    }
    return ATTN_OK;
}

static attn_status im_plan(attn_imdb_model *m, int B, int want_full, int *np_out, size_t *part_bytes);
static attn_status im_desc(const attn_imdb_model *m, int b0, int nb, attn_sdpa_desc *d);
static void im_pack(attn_imdb_model *m);
static void im_part(int n, int np, int p, int *lo, int *hi);
static int im_thread(int *nt);
static attn_status im_begin(attn_imdb_model *m, const int32_t *ids, int B, int want_full, int *np, size_t *pb);
static void im_part_forward(attn_imdb_model *m, const float *src, const int32_t *idx, int B, int np, int p, size_t pb,
                            int chunk, int attend, attn_status *pst);

attn_status attn_imdb_model_eval_prepare(attn_imdb_model *m) {
    if (!m || !m->params) return ATTN_ERR_NULL;
    const attn_imdb_config *c = &m->cfg;
    const size_t V = (size_t)c->V, D = (size_t)c->D;
    if (!m->tab) {
        m->tab = malloc(sizeof(float) * 3 * V * D);
        if (!m->tab) return ATTN_ERR_NOMEM;
    }
    int np;
    size_t pb;
    attn_status st = im_plan(m, m->Bmax, 0, &np, &pb);     /* the attention workspaces, now */
    if (st != ATTN_OK) return st;
    /* tab (V,3D) = emb (V,D) · [W0 W1 W2] (D,3D): one product, OpenBLAS's threads */
    im_pack(m);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->V, 3 * c->D, c->D, 1.0f, m->emb, c->D, m->wc,
                3 * c->D, 0.0f, m->tab, 3 * c->D);
    return ATTN_OK;
}

attn_status attn_imdb_model_eval_forward(attn_imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                    double *loss_sum, int *correct) {
    if (!m || !ids) return ATTN_ERR_NULL;
    if (!m->tab) return ATTN_ERR_ARG;                         /* attn_imdb_model_eval_prepare first */
    if (B < 1 || B > m->Bmax) return ATTN_ERR_SIZE;
    int np;
    size_t pb;
    /* the buffers below are the training forward's: no backward after this */
    attn_status st = im_begin(m, ids, B, 0, &np, &pb);
    if (st != ATTN_OK) return st;
    attn_status pst = ATTN_OK;
    /* one part of the reviews per thread, a few reviews at a time (their rows still in cache when the
     * attention reads them): P rows (Q, K, V side by side) from the table, the attention, the mean */
    IM_OMP(omp parallel num_threads(np) if(np > 1))
    {
        int nt, ith = im_thread(&nt);
        for (int p = ith; p < np; p += nt) im_part_forward(m, m->tab, ids, B, np, p, pb, 16, 1, &pst);
    }
    if (pst != ATTN_OK) return pst;
    return head_forward(m, labels, B, 0, 0, loss_sum, correct, 1);
}

/* ---------------------------------------------------------------------------------------------------
 * The embedding + self-attention block, per distinct word (see attn/imdb_model.h).
 */

/* This thread's number, and *nt = the team's size (0 and 1 outside a parallel region). */
static int im_thread(int *nt) {
#ifdef _OPENMP
    *nt = omp_get_num_threads();
    return omp_get_thread_num();
#else
    *nt = 1;
    return 0;
#endif
}

/* Keeps a failure of one thread's part (any one of them). */
static void im_fail(attn_status s, attn_status *pst) {
    if (s != ATTN_OK) {
        IM_OMP(omp critical(imdb_status))
        *pst = s;
    }
}

/* Part p of np of n items: [*lo, *hi). */
static void im_part(int n, int np, int p, int *lo, int *hi) {
    *lo = (int)((int64_t)n * p / np);
    *hi = (int)((int64_t)n * (p + 1) / np);
}

/* The same for rows of a matrix product, with the cuts on multiples of IM_ROWS (a multiple of the row
 * tile of OpenBLAS's SSE and AVX-512 single-precision kernels, 8 and 16): every row then sits at
 * the same place in the BLAS kernel's row tiles as in one product over all rows, so it rounds the same
 * (OpenBLAS's SSE kernels, unlike its AVX-512 ones, round a tail row differently). */
#define IM_ROWS 16
static void im_part_rows(int n, int np, int p, int *lo, int *hi) {
    const int nb = (n + IM_ROWS - 1) / IM_ROWS;
    int b0, b1;
    im_part(nb, np, p, &b0, &b1);
    *lo = b0 * IM_ROWS < n ? b0 * IM_ROWS : n;
    *hi = b1 * IM_ROWS < n ? b1 * IM_ROWS : n;
}

/* The attention of the nb reviews from b0 on as the fused kernel reads it: Q, K, V side by side in pp;
 * with mask_padding, the keys that are padding excluded (keymask (B,T), one row per review, the same for
 * every query: strides T, 0, 0); with a window, the keys outside it (the kernel skips those blocks). */
static attn_status im_desc(const attn_imdb_model *m, int b0, int nb, attn_sdpa_desc *d) {
    const attn_imdb_config *c = &m->cfg;
    attn_status st = attn_sdpa_desc_init(d, nb, 1, c->T, c->T, c->D, c->D);
    if (st != ATTN_OK) return st;
    d->scale = c->scale;
    d->compute = c->compute;
    const int64_t row = 3 * (int64_t)c->D;
    d->q = d->k = d->v = (attn_layout){(int64_t)c->T * row, (int64_t)c->T * row, row};
    if (c->mask_padding) {
        d->mask.allow = m->keymask + (size_t)b0 * c->T;
        d->mask.allow_stride[0] = c->T;
        d->mask.allow_stride[1] = 0;
        d->mask.allow_stride[2] = 0;
    }
    if (c->window) {
        d->mask.window = 1;
        d->mask.window_left = c->window_left;
        d->mask.window_right = c->window_right;
    }
    return attn_sdpa_validate(d);
}

/* Reviews [b0, b1) by one thread, workspace part p (pb bytes): h (nb,T,D) and the row statistics (nb,T,2) from their
 * P rows (fused kernel), then their pooled (nb,D) rows = mean over T, as attn_mean_time_forward
 * computes it. A failure goes to *pst. */
static void im_slice_forward(attn_imdb_model *m, int b0, int b1, int p, size_t pb, attn_status *pst) {
    const int T = m->cfg.T, D = m->cfg.D;
    const size_t r0 = (size_t)b0 * T;
    float *pp = m->pp + r0 * 3 * D;
    attn_sdpa_desc d;
    attn_status s = im_desc(m, b0, b1 - b0, &d);
    if (s == ATTN_OK)
        s = attn_sdpa_forward(&m->ctx, &d, m->h + r0 * D, m->astats + 2 * r0, NULL, pp, pp + D, pp + 2 * D,
                              (char *)m->awork + (size_t)p * pb, pb);
    im_fail(s, pst);
    const float inv = 1.0f / (float)T;
    for (int b = b0; b < b1; b++) {
        float *yr = m->pooled + (size_t)b * D;
        const float *hb = m->h + (size_t)b * T * D;
        for (int x = 0; x < D; x++) yr[x] = 0.0f;
        for (int t = 0; t < T; t++)
            for (int x = 0; x < D; x++) yr[x] += hb[(size_t)t * D + x];
        for (int x = 0; x < D; x++) yr[x] *= inv;
    }
}

/* Part p of np of the B reviews, chunk reviews at a time: P rows (nb·T,3D) (Q, K, V side by side) = the
 * rows idx[n] of src (·,3D), then (when attend) their attention and mean (im_slice_forward). */
static void im_part_forward(attn_imdb_model *m, const float *src, const int32_t *idx, int B, int np, int p, size_t pb,
                            int chunk, int attend, attn_status *pst) {
    const size_t T = (size_t)m->cfg.T, D3 = 3 * (size_t)m->cfg.D;
    int b0, b1;
    im_part(B, np, p, &b0, &b1);
    for (int s0 = b0; s0 < b1; s0 += chunk) {
        const int s1 = b1 - s0 < chunk ? b1 : s0 + chunk;
        for (size_t n = (size_t)s0 * T; n < (size_t)s1 * T; n++)
            memcpy(m->pp + n * D3, src + (size_t)idx[n] * D3, sizeof(float) * D3);
        if (attend) im_slice_forward(m, s0, s1, p, pb, pst);
    }
}

/* Threads for B reviews: one part of reviews each. The workspace holds np per-part workspaces (and one
 * for the whole batch when the weights are asked for); *part_bytes is the size of one. */
static attn_status im_plan(attn_imdb_model *m, int B, int want_full, int *np_out, size_t *part_bytes) {
    int np = m->ctx.threads;
    if (np < 1) np = 1;
    if (np > B) np = B;
    attn_sdpa_desc d;
    attn_status st;
    size_t pb = 0, fb = 0, fw, bw;
    if ((st = im_desc(m, 0, (B + np - 1) / np, &d)) != ATTN_OK) return st;
    if ((st = attn_sdpa_workspace_size(&m->ctx, &d, ATTN_PASS_FORWARD, &fw)) != ATTN_OK) return st;
    if ((st = attn_sdpa_workspace_size(&m->ctx, &d, ATTN_PASS_BACKWARD, &bw)) != ATTN_OK) return st;
    pb = ((fw > bw ? fw : bw) + 63) & ~(size_t)63;
    if (want_full) {
        if ((st = im_desc(m, 0, B, &d)) != ATTN_OK) return st;
        if ((st = attn_sdpa_workspace_size(&m->ctx, &d, ATTN_PASS_FORWARD, &fb)) != ATTN_OK) return st;
    }
    size_t need = pb * (size_t)np > fb ? pb * (size_t)np : fb;
    if (need == 0) need = 64;
    if (!m->awork || m->awork_bytes < need) {
        free(m->awork);
        m->awork = malloc(need);
        m->awork_bytes = m->awork ? need : 0;
        if (!m->awork) return ATTN_ERR_NOMEM;
    }
    *np_out = np;
    *part_bytes = pb;
    return ATTN_OK;
}

/* The start of a forward over ids (B,T): the ids checked, the threads planned (see im_plan), and no
 * backward allowed until the training forward has succeeded. */
static attn_status im_begin(attn_imdb_model *m, const int32_t *ids, int B, int want_full, int *np, size_t *pb) {
    const int N = B * m->cfg.T;
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= m->cfg.V) return ATTN_ERR_ARG;
    for (int n = 0; n < N; n++) m->keymask[n] = ids[n] != ATTN_IMDB_PAD;    /* read only with mask_padding */
    attn_status st = im_plan(m, B, want_full, np, pb);
    if (st != ATTN_OK) return st;
    m->n_words = 0;
    return ATTN_OK;
}

/* wc (D,3D) = [W0 W1 W2] */
static void im_pack(attn_imdb_model *m) {
    const size_t D = (size_t)m->cfg.D;
    for (size_t r = 0; r < D; r++)
        for (size_t i = 0; i < 3; i++) memcpy(m->wc + (r * 3 + i) * D, m->kernel + (i * D + r) * D, sizeof(float) * D);
}

/* h (B,T,D) from ids (B,T); weights (B,T,T) when given (the reference kernel, one call). */
static attn_status im_attention_forward(attn_imdb_model *m, const int32_t *ids, int B, float *weights) {
    const attn_imdb_config *c = &m->cfg;
    const int T = c->T, D = c->D, D3 = 3 * D, N = B * T;
    int np;
    size_t pb;
    attn_status st = im_begin(m, ids, B, weights != NULL, &np, &pb);   /* n_words set again once it succeeds */
    if (st != ATTN_OK) return st;
    /* the distinct words, in order of first use */
    int nu = 0;
    for (int n = 0; n < N; n++) {
        int32_t w = ids[n], k = m->wmark[w];
        if (k < 0) {
            k = nu++;
            m->wmark[w] = k;
            m->words[k] = w;
        }
        m->wpos[n] = k;
    }
    for (int k = 0; k < nu; k++) m->wmark[m->words[k]] = -1;
    /* each word's positions, in increasing order: wlist[wstart[k] .. wstart[k+1]) */
    for (int k = 0; k <= nu; k++) m->wstart[k] = 0;
    for (int n = 0; n < N; n++) m->wstart[m->wpos[n] + 1]++;
    for (int k = 0; k < nu; k++) m->wstart[k + 1] += m->wstart[k];
    for (int n = 0; n < N; n++) m->wlist[m->wstart[m->wpos[n]]++] = n;
    for (int k = nu; k > 0; k--) m->wstart[k] = m->wstart[k - 1];
    m->wstart[0] = 0;
    im_pack(m);
    attn_status pst = ATTN_OK;
    IM_OMP(omp parallel num_threads(np) if(np > 1))
    {
        int nt, ith = im_thread(&nt);
        /* x (U,D) = emb[words];  PU (U,3D) = x · Wc, rows cut among the threads */
        for (int p = ith; p < np; p += nt) {
            int u0, u1;
            im_part_rows(nu, np, p, &u0, &u1);
            for (int k = u0; k < u1; k++)
                memcpy(m->x + (size_t)k * D, m->emb + (size_t)m->words[k] * D, sizeof(float) * D);
            if (u1 > u0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, u1 - u0, D3, D, 1.0f, m->x + (size_t)u0 * D, D,
                            m->wc, D3, 0.0f, m->pu + (size_t)u0 * D3, D3);
        }
        IM_OMP(omp barrier)
        /* each part of reviews: P rows from PU, then the attention (fused kernel, one thread each) */
        for (int p = ith; p < np; p += nt) im_part_forward(m, m->pu, m->wpos, B, np, p, pb, B, !weights, &pst);
    }
    if (pst != ATTN_OK) return pst;
    if (weights) {
        attn_sdpa_desc d;
        if ((st = im_desc(m, 0, B, &d)) != ATTN_OK) return st;
        if ((st = attn_sdpa_forward(&m->ctx, &d, m->h, m->astats, weights, m->pp, m->pp + D, m->pp + 2 * D, m->awork,
                                    m->awork_bytes)) != ATTN_OK)
            return st;
    }
    m->n_words = nu;
    m->fwd_B = B;
    return ATTN_OK;
}

/* From dh (B,T,D) of the last forward: dW += xᵀ·dPU, d_emb[words] += dPU·Wcᵀ. dpooled (B,D) is the
 * gradient of the mean over T, which gives dh (written here, part by part). */
static attn_status im_attention_backward(attn_imdb_model *m, int B) {
    const attn_imdb_config *c = &m->cfg;
    const int T = c->T, D = c->D, D3 = 3 * D, nu = m->n_words;
    const size_t wsz = (size_t)D * D;
    int np;
    size_t pb;
    attn_status st = im_plan(m, B, 0, &np, &pb);
    if (st != ATTN_OK) return st;
    im_pack(m);
    const float inv = 1.0f / (float)T;
    const int nwc = (D + IM_COLS - 1) / IM_COLS, njob = 3 * nwc;   /* dW jobs */
    attn_status pst = ATTN_OK;
    IM_OMP(omp parallel num_threads(np) if(np > 1))
    {
        int nt, ith = im_thread(&nt);
        /* each part of reviews: dh = dpooled / T broadcast over T, then dP (zeroed) += attention backward */
        for (int p = ith; p < np; p += nt) {
            int b0, b1;
            im_part(B, np, p, &b0, &b1);
            if (b1 == b0) continue;
            for (int b = b0; b < b1; b++) {
                const float *g = m->dpooled + (size_t)b * D;
                float *r = m->dh + (size_t)b * T * D;
                for (int x = 0; x < D; x++) r[x] = g[x] * inv;
                for (int t = 1; t < T; t++) memcpy(r + (size_t)t * D, r, sizeof(float) * D);
            }
            const size_t r0 = (size_t)b0 * T;
            float *dpp = m->dpp + r0 * D3;
            const float *pp = m->pp + r0 * D3;
            memset(dpp, 0, sizeof(float) * (size_t)(b1 - b0) * T * D3);
            attn_sdpa_desc d;
            attn_status s = im_desc(m, b0, b1 - b0, &d);
            if (s == ATTN_OK)
                s = attn_sdpa_backward(&m->ctx, &d, dpp, dpp + D, dpp + 2 * D, m->dh + r0 * D, pp, pp + D, pp + 2 * D,
                                       m->h + r0 * D, m->astats + 2 * r0, (char *)m->awork + (size_t)p * pb, pb);
            im_fail(s, &pst);
        }
        IM_OMP(omp barrier)
        /* each part of the words: dPU rows = Σ over the word's positions of dP (in position order);
         * dx (U,D) rows = dPU · Wcᵀ; d_emb[words] += dx (distinct rows: no two threads meet) */
        for (int p = ith; p < np; p += nt) {
            int u0, u1;
            im_part_rows(nu, np, p, &u0, &u1);
            if (u1 == u0) continue;
            for (int k = u0; k < u1; k++) {
                float *restrict dst = m->dpu + (size_t)k * D3;
                const int32_t *pos = m->wlist + m->wstart[k], np_k = m->wstart[k + 1] - m->wstart[k];
                memcpy(dst, m->dpp + (size_t)pos[0] * D3, sizeof(float) * D3);
                for (int j = 1; j < np_k; j++) {
                    const float *restrict src = m->dpp + (size_t)pos[j] * D3;
                    for (int x = 0; x < D3; x++) dst[x] += src[x];
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, u1 - u0, D, D3, 1.0f, m->dpu + (size_t)u0 * D3, D3,
                        m->wc, D3, 0.0f, m->dx + (size_t)u0 * D, D);
            for (int k = u0; k < u1; k++) {
                float *restrict dst = m->d_emb + (size_t)m->words[k] * D;
                const float *restrict src = m->dx + (size_t)k * D;
                for (int x = 0; x < D; x++) dst[x] += src[x];
            }
        }
        IM_OMP(omp barrier)
        /* dW[i] (D, cols) += xᵀ (D,U) · dPU_i (U, cols) */
        for (int j = ith; j < njob; j += nt) {
            const int i = j / nwc, c0 = (j % nwc) * IM_COLS, nc = D - c0 < IM_COLS ? D - c0 : IM_COLS;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, nc, nu, 1.0f, m->x, D,
                        m->dpu + (size_t)i * D + c0, D3, 1.0f, m->d_kernel + i * wsz + c0, D);
        }
    }
    return pst;
}

attn_status attn_imdb_model_forward(attn_imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                               uint64_t drop_seed, float *weights, double *loss_sum, int *correct) {
    if (!m || !ids) return ATTN_ERR_NULL;
    if (B < 1 || B > m->Bmax) return ATTN_ERR_SIZE;
    attn_status st;
    /* h (B,T,D) = selfattn(emb[ids]), no mask (the Keras model attends over the padding too) */
    if ((st = im_attention_forward(m, ids, B, weights)) != ATTN_OK) return st;
    return head_forward(m, labels, B, train, drop_seed, loss_sum, correct, weights == NULL);
}

void attn_imdb_model_zero_grad(attn_imdb_model *m, int full) {
    const size_t D = (size_t)m->cfg.D, V = (size_t)m->cfg.V;
    if (full || m->n_touched < 0) {
        memset(m->grads, 0, sizeof(float) * m->n_params);
    } else {
        for (int i = 0; i < m->n_touched; i++) memset(m->d_emb + (size_t)m->touched[i] * D, 0, sizeof(float) * D);
        memset(m->grads + V * D, 0, sizeof(float) * (m->n_params - V * D));
    }
    m->n_touched = 0;
}

attn_status attn_imdb_model_backward(attn_imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                                uint64_t drop_seed) {
    if (!m || !ids || !labels) return ATTN_ERR_NULL;
    if (B < 1 || B > m->Bmax) return ATTN_ERR_SIZE;
    const attn_imdb_config *c = &m->cfg;
    const int N = B * c->T;
    const size_t nBD = (size_t)B * c->D;
    attn_status st;
    /* the same reviews as the last forward (its distinct words are reused) */
    if (m->n_words < 1 || m->n_words > N || m->fwd_B != B) return ATTN_ERR_ARG;
    for (int n = 0; n < N; n++)
        if (m->wpos[n] < 0 || m->wpos[n] >= m->n_words || m->words[m->wpos[n]] != ids[n]) return ATTN_ERR_ARG;
    /* the mean loss: dlosses = 1/B */
    for (int b = 0; b < B; b++) m->dlosses[b] = 1.0f / (float)B;
    memset(m->dlogits, 0, sizeof(float) * (size_t)B * c->C);
    if ((st = attn_softmax_xent_backward(m->dlogits, m->dlosses, m->probs, labels, NULL, B, c->C)) != ATTN_OK)
        return st;
    const int drop = train && c->dropout > 0.0f;
    const float *feat = drop ? m->dropped : m->pooled;
    float *dfeat = drop ? m->ddropped : m->dpooled;
    memset(dfeat, 0, sizeof(float) * nBD);
    if ((st = attn_linear_backward(dfeat, m->d_dense_w, m->d_dense_b, m->dlogits, feat, m->dense_w, B, c->D, c->C)) != ATTN_OK)
        return st;
    if (drop) {
        memset(m->dpooled, 0, sizeof(float) * nBD);
        if ((st = attn_dropout_backward(m->dpooled, m->ddropped, nBD, c->dropout, drop_seed)) != ATTN_OK) return st;
    }
    if ((st = im_attention_backward(m, B)) != ATTN_OK) return st;
    /* remember the rows to clear; when they no longer fit, the next zero_grad clears everything */
    const int nu = m->n_words;
    if (m->n_touched >= 0 && m->n_touched + nu <= m->Bmax * c->T)
        for (int i = 0; i < nu; i++) m->touched[m->n_touched++] = m->words[i];
    else
        m->n_touched = -1;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints (see attn/imdb_model.h for the format).
 */
#define IM_FORMAT "attn-imdb-1"
#define IM_N_PARAM_TENSORS 4

static const char *const im_param_names[IM_N_PARAM_TENSORS] = {"embedding.weight", "selfattn.kernel",
                                                               "dense.weight", "dense.bias"};

/* The four parameter tensors' ndim and shapes for config c. */
static void im_param_shapes(const attn_imdb_config *c, int ndims[IM_N_PARAM_TENSORS],
                            int64_t shapes[IM_N_PARAM_TENSORS][3]) {
    const int nd[IM_N_PARAM_TENSORS] = {2, 3, 2, 1};
    const int64_t sh[IM_N_PARAM_TENSORS][3] = {{c->V, c->D, 0}, {3, c->D, c->D}, {c->C, c->D, 0}, {c->C, 0, 0}};
    memcpy(ndims, nd, sizeof nd);
    memcpy(shapes, sh, sizeof sh);
}

/* Returns st after writing the message into err (when err is given). */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static attn_status im_fail_msg(attn_status st, char *err, size_t err_size, const char *fmt, ...) {
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return st;
}

attn_status attn_imdb_model_save(const attn_imdb_model *m, const attn_adam *adam, const attn_imdb_vocab *vocab,
                                 const attn_imdb_run_info *run, const char *path, char *err, size_t err_size) {
    if (!m || !m->params || !adam || !adam->m || !vocab || !vocab->blob || !run || !path) return ATTN_ERR_NULL;
    const attn_imdb_config *c = &m->cfg;
    attn_imdb_config def;
    attn_imdb_config_default(&def);
    if (c->C != def.C || c->scale != def.scale || c->dropout != def.dropout)
        return im_fail_msg(ATTN_ERR_ARG, err, err_size, "%s: the " IM_FORMAT " format records vocabulary, maxlen and "
                           "width only; this model's classes, scale or dropout are not the experiment's", path);
    if (adam->n != m->n_params)
        return im_fail_msg(ATTN_ERR_SHAPE, err, err_size, "%s: the optimizer holds %zu parameters, the model %zu",
                           path, adam->n, m->n_params);
    if (vocab->V != c->V)
        return im_fail_msg(ATTN_ERR_SHAPE, err, err_size, "%s: the vocabulary has %d words, the model %d", path,
                           vocab->V, c->V);
    /* tensors: the parameters, the Adam moments, the vocabulary */
    attn_st_tensor t[7];
    memset(t, 0, sizeof t);
    int ndims[7];
    int64_t shapes[7][3];
    im_param_shapes(c, ndims, shapes);
    const char *names[7] = {im_param_names[0], im_param_names[1], im_param_names[2], im_param_names[3], "adam.m",
                            "adam.v", "vocab"};
    const float *data[6] = {m->emb, m->kernel, m->dense_w, m->dense_b, adam->m, adam->v};
    for (int i = 4; i < 6; i++) {
        ndims[i] = 1;
        shapes[i][0] = (int64_t)m->n_params;
    }
    for (int i = 0; i < 6; i++) {
        t[i].name = names[i];
        t[i].dtype = ATTN_DTYPE_F32;
        t[i].ndim = ndims[i];
        size_t n = 1;
        for (int k = 0; k < ndims[i]; k++) {
            t[i].shape[k] = shapes[i][k];
            n *= (size_t)shapes[i][k];
        }
        t[i].data = data[i];
        t[i].nbytes = n * sizeof(float);
    }
    t[6].name = names[6];
    t[6].dtype = ATTN_DTYPE_U8;
    t[6].ndim = 1;
    t[6].shape[0] = (int64_t)vocab->blob_size;
    t[6].data = vocab->blob;
    t[6].nbytes = vocab->blob_size;
    /* metadata: the model, then the run */
    char s[16][64];
    snprintf(s[0], 64, "%s", IM_FORMAT);
    snprintf(s[1], 64, "%d", c->V);
    snprintf(s[2], 64, "%d", c->T);
    snprintf(s[3], 64, "%d", c->D);
    snprintf(s[4], 64, "%08x", vocab->crc);
    snprintf(s[5], 64, "%d", run->epoch);
    snprintf(s[6], 64, "%" PRId64, run->adam_t);
    snprintf(s[7], 64, "%" PRIu64, run->seed);
    snprintf(s[8], 64, "%.9g", run->lr);
    snprintf(s[9], 64, "%d", run->batch);
    snprintf(s[10], 64, "%d", run->limit);
    snprintf(s[11], 64, "%zu", m->n_params);
    snprintf(s[12], 64, "%d", c->mask_padding ? 1 : 0);
    if (c->window) snprintf(s[13], 64, "%d,%d", c->window_left, c->window_right);
    else snprintf(s[13], 64, "0");
    snprintf(s[14], 64, "%s", attn__compute_name(c->compute));
    snprintf(s[15], 64, "%d", run->step);
    const char *keys[16] = {"format", "vocab_size", "maxlen", "dim", "vocab_crc32", "epoch", "adam_t", "seed",
                            "lr", "batch", "limit", "n_params", "mask_padding", "window", "compute", "step"};
    const char *vals[16];
    for (int i = 0; i < 16; i++) vals[i] = s[i];
    return attn_st_write(path, t, 7, keys, vals, 16, err, err_size);
}

/* Metadata key as an integer: ATTN_ERR_FORMAT (err filled) when missing or not an integer. */
static attn_status im_meta_int(const attn_st_file *f, const char *key, int64_t *out, const char *path, char *err,
                               size_t err_size) {
    const char *s = attn_st_meta(f, key);
    char *end;
    if (!s || !*s)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size,
                           "%s: metadata \"%s\" missing (not an attn imdb checkpoint?)", path, key);
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: metadata \"%s\" = \"%s\" is not an integer", path,
                           key, s);
    *out = v;
    return ATTN_OK;
}

/* Metadata "window": "0" (dense; also when absent, as in older checkpoints) or "L,R" with L, R >= 0. */
static attn_status im_read_window(const attn_st_file *f, const char *path, attn_imdb_config *c, char *err,
                                  size_t err_size) {
    const char *s = attn_st_meta(f, "window");
    c->window = 0;
    c->window_left = c->window_right = 0;
    if (!s || strcmp(s, "0") == 0) return ATTN_OK;
    char *e1 = NULL, *e2 = NULL;
    errno = 0;
    long l = strtol(s, &e1, 10), r = -1;
    if (!errno && e1 != s && *e1 == ',' && e1[1] >= '0' && e1[1] <= '9') r = strtol(e1 + 1, &e2, 10);
    if (errno || r < 0 || *e2 || l < 0 || l > INT32_MAX || r > INT32_MAX)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: metadata \"window\" = \"%s\", expected 0 or "
                           "LEFT,RIGHT (integers >= 0)", path, s);
    c->window = 1;
    c->window_left = (int)l;
    c->window_right = (int)r;
    return ATTN_OK;
}

/* The checkpoint's config (V, T, D and the masks from the metadata; the rest the experiment's) and its run. */
static attn_status im_read_header(const attn_st_file *f, const char *path, attn_imdb_config *c,
                                  attn_imdb_run_info *run, char *err, size_t err_size) {
    const char *fmt = attn_st_meta(f, "format");
    if (!fmt || strcmp(fmt, IM_FORMAT) != 0)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size,
                           "%s: not an attn imdb checkpoint (metadata format is %s, expected %s)", path,
                           fmt ? fmt : "missing", IM_FORMAT);
    const char *const keys[7] = {"vocab_size", "maxlen", "dim", "epoch", "adam_t", "batch", "limit"};
    int64_t v[7];
    for (int i = 0; i < 7; i++) {
        attn_status st = im_meta_int(f, keys[i], &v[i], path, err, err_size);
        if (st != ATTN_OK) return st;
    }
    attn_imdb_config_default(c);
    if (v[0] < 1 || v[0] > INT32_MAX / 2 || v[1] < 1 || v[1] > 65536 || v[2] < 1 || v[2] > 65536)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: a model of vocabulary %lld, maxlen %lld, width %lld "
                           "is out of range", path, (long long)v[0], (long long)v[1], (long long)v[2]);
    c->V = (int)v[0];
    c->T = (int)v[1];
    c->D = (int)v[2];
    run->epoch = (int)v[3];
    run->adam_t = v[4];
    run->batch = (int)v[5];
    run->limit = (int)v[6];
    const char *s = attn_st_meta(f, "mask_padding");      /* absent in older checkpoints: no mask */
    if (s && strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: metadata \"mask_padding\" = \"%s\", expected 0 or 1",
                           path, s);
    c->mask_padding = s && s[0] == '1';
    attn_status st = im_read_window(f, path, c, err, err_size);
    if (st != ATTN_OK) return st;
    s = attn_st_meta(f, "compute");                         /* absent in older checkpoints: f32 */
    if (!attn__compute_parse(s, &c->compute))
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: metadata \"compute\" = \"%s\", expected f32 or bf16",
                           path, s);
    s = attn_st_meta(f, "lr");
    run->lr = s ? strtof(s, NULL) : 2e-4f;
    s = attn_st_meta(f, "seed");
    run->seed = s ? strtoull(s, NULL, 10) : 0;
    run->step = 0;                                          /* absent in older checkpoints: whole epochs */
    if (attn_st_meta(f, "step")) {
        int64_t step = 0;
        if ((st = im_meta_int(f, "step", &step, path, err, err_size)) != ATTN_OK) return st;
        if (step < 0 || step > INT_MAX)
            return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: metadata \"step\" = %lld, expected 0 .. %d", path,
                               (long long)step, INT_MAX);
        run->step = (int)step;
    }
    return ATTN_OK;
}

/* The vocabulary tensor, checked against its checksum in the metadata. */
static attn_status im_read_vocab(const attn_st_file *f, const char *path, int V, attn_imdb_vocab *v, char *err,
                                 size_t err_size) {
    const attn_st_tensor *vt = attn_st_find(f, "vocab");
    if (!vt || vt->dtype != ATTN_DTYPE_U8 || vt->ndim != 1)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: tensor \"vocab\" (U8, 1-D) missing", path);
    attn_status st = attn_imdb_vocab_from_blob(v, vt->data, vt->nbytes, V);
    if (st == ATTN_ERR_NOMEM) return st;
    if (st != ATTN_OK)
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size, "%s: tensor \"vocab\" does not hold %d words", path, V);
    const char *crc_s = attn_st_meta(f, "vocab_crc32");
    char want[16];
    snprintf(want, sizeof want, "%08x", v->crc);
    if (!crc_s || strcmp(crc_s, want) != 0) {
        attn_imdb_vocab_free(v);
        return im_fail_msg(ATTN_ERR_FORMAT, err, err_size,
                           "%s: vocabulary checksum %s does not match its vocab tensor (%s)", path,
                           crc_s ? crc_s : "missing", want);
    }
    return ATTN_OK;
}

/* The parameter tensors of config c in f: their data (src) when each is there with its shape, else
 * ATTN_ERR_FORMAT. Checked before the model is allocated, so a file cannot make it allocate much more than
 * its own size. */
static attn_status im_find_params(const attn_st_file *f, const attn_imdb_config *c,
                                  const float *src[IM_N_PARAM_TENSORS], char *err, size_t err_size) {
    int ndims[IM_N_PARAM_TENSORS];
    int64_t shapes[IM_N_PARAM_TENSORS][3];
    im_param_shapes(c, ndims, shapes);
    for (int i = 0; i < IM_N_PARAM_TENSORS; i++) {
        attn_status st = attn_st_get_f32(f, im_param_names[i], ndims[i], shapes[i], &src[i], err, err_size);
        if (st != ATTN_OK) return st;
        /* a NaN or infinite parameter: a corrupt or diverged checkpoint, refused */
        size_t cnt = 1;
        for (int k = 0; k < ndims[i]; k++) cnt *= (size_t)shapes[i][k];
        for (size_t j = 0; j < cnt; j++)
            if (!isfinite(src[i][j])) {
                if (err && err_size)
                    snprintf(err, err_size, "tensor %s: element %zu is %g, expected a finite parameter",
                             im_param_names[i], j, (double)src[i][j]);
                return ATTN_ERR_FORMAT;
            }
    }
    return ATTN_OK;
}

/* The parameter tensors (and the Adam moments when adam is given) into m, whose config they must fit. */
static attn_status im_read_tensors(const attn_st_file *f, attn_imdb_model *m, attn_adam *adam, char *err,
                                   size_t err_size) {
    int ndims[IM_N_PARAM_TENSORS];
    int64_t shapes[IM_N_PARAM_TENSORS][3];
    im_param_shapes(&m->cfg, ndims, shapes);
    float *dst[IM_N_PARAM_TENSORS] = {m->emb, m->kernel, m->dense_w, m->dense_b};
    const float *src[IM_N_PARAM_TENSORS];
    attn_status st = im_find_params(f, &m->cfg, src, err, err_size);
    if (st != ATTN_OK) return st;
    for (int i = 0; i < IM_N_PARAM_TENSORS; i++) {
        const float *p = src[i];
        size_t n = 1;
        for (int k = 0; k < ndims[i]; k++) n *= (size_t)shapes[i][k];
        memcpy(dst[i], p, n * sizeof(float));
    }
    if (!adam) return ATTN_OK;
    const int64_t np = (int64_t)m->n_params;
    const float *pm, *pv;
    if ((st = attn_st_get_f32(f, "adam.m", 1, &np, &pm, err, err_size)) != ATTN_OK) return st;
    if ((st = attn_st_get_f32(f, "adam.v", 1, &np, &pv, err, err_size)) != ATTN_OK) return st;
    memcpy(adam->m, pm, m->n_params * sizeof(float));
    memcpy(adam->v, pv, m->n_params * sizeof(float));
    return ATTN_OK;
}

attn_status attn_imdb_model_load(attn_imdb_model *m, const attn_ctx *ctx, int Bmax, attn_adam *adam,
                                 attn_imdb_vocab *vocab, attn_imdb_run_info *run, const char *path, char *err,
                                 size_t err_size) {
    if (!m || !path) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    if (vocab) memset(vocab, 0, sizeof *vocab);
    if (err && err_size) err[0] = '\0';
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    attn_imdb_config c;
    attn_imdb_run_info r;
    attn_imdb_vocab v;
    memset(&v, 0, sizeof v);
    const float *src[IM_N_PARAM_TENSORS];
    /* everything checked in the file first, then the one allocation of the model, then the copies */
    if ((st = im_read_header(&f, path, &c, &r, err, err_size)) != ATTN_OK) goto done;
    if ((st = im_read_vocab(&f, path, c.V, &v, err, err_size)) != ATTN_OK) goto done;
    if ((st = im_find_params(&f, &c, src, err, err_size)) != ATTN_OK) goto done;
    const size_t n_params = (size_t)c.V * c.D + 3 * (size_t)c.D * c.D + (size_t)c.C * c.D + (size_t)c.C;
    if (adam && adam->n != n_params) {
        st = im_fail_msg(ATTN_ERR_SHAPE, err, err_size, "%s: the optimizer holds %zu parameters, the model %zu", path,
                         adam->n, n_params);
        goto done;
    }
    if ((st = attn_imdb_model_init(m, ctx, &c, Bmax, 1)) != ATTN_OK) goto done;
    /* im_read_tensors finds both moments before it copies either: a failure leaves adam as it was */
    if ((st = im_read_tensors(&f, m, adam, err, err_size)) == ATTN_OK && adam) adam->t = r.adam_t;
done:
    attn_st_free(&f);
    if (st != ATTN_OK) {
        attn_imdb_model_free(m);
        attn_imdb_vocab_free(&v);
        return st;
    }
    if (vocab) *vocab = v;
    else attn_imdb_vocab_free(&v);
    if (run) *run = r;
    return ATTN_OK;
}

attn_status attn_imdb_model_read_config(const char *path, attn_imdb_config *c, char *err, size_t err_size) {
    if (!path || !c) return ATTN_ERR_NULL;
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    attn_imdb_run_info run;
    st = im_read_header(&f, path, c, &run, err, err_size);
    attn_st_free(&f);
    return st;
}

attn_status attn_imdb_model_read_run(const char *path, attn_imdb_run_info *run, char *err, size_t err_size) {
    if (!path || !run) return ATTN_ERR_NULL;
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    const char *s;
    if ((s = attn_st_meta(&f, "epoch"))) run->epoch = atoi(s);
    if ((s = attn_st_meta(&f, "limit"))) run->limit = atoi(s);
    if ((s = attn_st_meta(&f, "batch"))) run->batch = atoi(s);
    if ((s = attn_st_meta(&f, "adam_t"))) run->adam_t = strtoll(s, NULL, 10);
    if ((s = attn_st_meta(&f, "lr"))) run->lr = strtof(s, NULL);
    if ((s = attn_st_meta(&f, "seed"))) run->seed = strtoull(s, NULL, 10);
    if ((s = attn_st_meta(&f, "step"))) run->step = atoi(s);
    attn_st_free(&f);
    return ATTN_OK;
}
