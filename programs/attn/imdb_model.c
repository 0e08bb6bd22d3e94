/*
 * imdb_model.c — the IMDB self-attention classifier (see imdb_model.h): one parameter slab, one
 * gradient slab, forward and backward through the library's layers.
 */
#include "imdb_model.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void imdb_config_default(imdb_config *c) {
    c->V = 20000;
    c->D = 128;
    c->T = 64;
    c->C = 2;
    c->scale = 0.125f;          /* 1/sqrt(64), as the Keras layer divides by 8 whatever its width */
    c->dropout = 0.5f;
}

void imdb_model_free(imdb_model *m) {
    if (!m) return;
    attn_selfattn_free(&m->sa);   /* frees the layer's own slab (m->sa.params), not ours */
    free(m->params);
    free(m->grads);
    free(m->cache);
    free(m->x);
    free(m->targets);
    free(m->touched);
    free(m->tab);
    free(m->eq);
    free(m->ework);
    memset(m, 0, sizeof *m);
}

attn_status imdb_model_init(imdb_model *m, const imdb_config *c, int Bmax, uint64_t seed) {
    if (!m || !c) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    if (c->V < 1 || c->D < 1 || c->T < 1 || c->C < 2 || Bmax < 1) return ATTN_ERR_SIZE;
    m->cfg = *c;
    m->Bmax = Bmax;
    const size_t V = (size_t)c->V, D = (size_t)c->D, T = (size_t)c->T, C = (size_t)c->C, B = (size_t)Bmax;
    m->n_params = V * D + 3 * D * D + C * D + C;
    m->params = calloc(m->n_params, sizeof(float));
    m->grads = calloc(m->n_params, sizeof(float));
    attn_status st = attn_selfattn_init(&m->sa, c->D, c->D, seed ^ 0x5a5a5a5aULL);
    if (!m->params || !m->grads || st != ATTN_OK) {
        imdb_model_free(m);
        return st != ATTN_OK ? st : ATTN_ERR_NOMEM;
    }
    m->emb = m->params;
    m->kernel = m->emb + V * D;
    m->dense_w = m->kernel + 3 * D * D;
    m->dense_b = m->dense_w + C * D;
    m->d_emb = m->grads;
    m->d_kernel = m->d_emb + V * D;
    m->d_dense_w = m->d_kernel + 3 * D * D;
    m->d_dense_b = m->d_dense_w + C * D;
    m->sa.scale = c->scale;
    m->sa.w = m->kernel;        /* the layer now reads and writes our slabs */
    m->sa.dw = m->d_kernel;

    /* init: one stream, in slab order */
    attn_rng r;
    attn_rng_seed(&r, seed);
    attn_rng_fill_uniform(&r, m->emb, V * D, -0.05f, 0.05f);
    attn_rng_fill_uniform(&r, m->kernel, 3 * D * D, -0.05f, 0.05f);
    const float g = sqrtf(6.0f / (float)(D + C));    /* Glorot uniform: fan_in D, fan_out C */
    attn_rng_fill_uniform(&r, m->dense_w, C * D, -g, g);

    if ((st = attn_selfattn_cache_size(&m->sa, Bmax, c->T, &m->cache_bytes)) != ATTN_OK) {
        imdb_model_free(m);
        return st;
    }
    m->cache = malloc(m->cache_bytes);
    /* activations: one allocation */
    const size_t nact = 4 * B * T * D + 4 * B * D + 4 * B * C + 2 * B;
    m->x = malloc(sizeof(float) * nact);
    m->targets = calloc(B, sizeof(int32_t));
    m->touched = malloc(sizeof(int32_t) * B * T);
    if (!m->cache || !m->x || !m->targets || !m->touched) {
        imdb_model_free(m);
        return ATTN_ERR_NOMEM;
    }
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
    m->losses = p;   p += B * C;   /* B used; C >= 2 keeps the carving simple */
    m->dlosses = p;
    return ATTN_OK;
}

/* From h (B,T,D): mean over T, dropout when training, dense, softmax cross-entropy, loss and accuracy. */
static attn_status head_forward(imdb_model *m, const int32_t *labels, int B, int train, uint64_t drop_seed,
                                double *loss_sum, int *correct) {
    const imdb_config *c = &m->cfg;
    attn_status st;
    /* pooled (B,D) = mean over T */
    if ((st = attn_mean_time_forward(m->pooled, m->h, B, c->T, c->D)) != ATTN_OK) return st;
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

attn_status imdb_model_eval_prepare(imdb_model *m) {
    if (!m || !m->params) return ATTN_ERR_NULL;
    const imdb_config *c = &m->cfg;
    const size_t V = (size_t)c->V, D = (size_t)c->D, BT = (size_t)m->Bmax * c->T;
    attn_sdpa_desc d;
    attn_status st = attn_sdpa_desc_init(&d, m->Bmax, 1, c->T, c->T, c->D, c->D);
    if (st != ATTN_OK) return st;
    d.scale = c->scale;
    size_t wb;
    if ((st = attn_sdpa_workspace_size(&d, ATTN_PASS_FORWARD, &wb)) != ATTN_OK) return st;
    if (!m->tab) {
        m->tab = malloc(sizeof(float) * 3 * V * D);
        m->eq = malloc(sizeof(float) * (3 * BT * D + BT));
        if (!m->tab || !m->eq) return ATTN_ERR_NOMEM;
        m->ek = m->eq + BT * D;
        m->ev = m->ek + BT * D;
        m->lse = m->ev + BT * D;
    }
    if (!m->ework || m->ework_bytes < wb) {
        free(m->ework);
        m->ework = malloc(wb ? wb : 1);
        if (!m->ework) return ATTN_ERR_NOMEM;
        m->ework_bytes = wb;
    }
    /* tab[i] (V,D) = emb (V,D) · W[i] (D,D) */
    for (int i = 0; i < 3; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->V, c->D, c->D, 1.0f, m->emb, c->D,
                    m->kernel + (size_t)i * D * D, c->D, 0.0f, m->tab + (size_t)i * V * D, c->D);
    return ATTN_OK;
}

attn_status imdb_model_eval_forward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                    double *loss_sum, int *correct) {
    if (!m || !ids) return ATTN_ERR_NULL;
    if (!m->tab || !m->ework) return ATTN_ERR_ARG;          /* imdb_model_eval_prepare first */
    if (B < 1 || B > m->Bmax) return ATTN_ERR_SIZE;
    const imdb_config *c = &m->cfg;
    const size_t V = (size_t)c->V, D = (size_t)c->D, N = (size_t)B * c->T;
    for (size_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= c->V) return ATTN_ERR_ARG;
    /* q, k, v (b,T,D): rows of the tables, gathered for a few reviews at a time so that they are still
     * in cache when the attention reads them; h (B,T,D) */
    const int sub = 16;
    for (int b0 = 0; b0 < B; b0 += sub) {
        const int nb = B - b0 < sub ? B - b0 : sub;
        const int64_t n0 = (int64_t)b0 * c->T, nn = (int64_t)nb * c->T;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(attn_get_num_threads()) if(attn_get_num_threads() > 1)
#endif
        for (int64_t n = 0; n < nn; n++) {
            const size_t r = (size_t)ids[n0 + n] * D;
            memcpy(m->eq + n * D, m->tab + r, sizeof(float) * D);
            memcpy(m->ek + n * D, m->tab + V * D + r, sizeof(float) * D);
            memcpy(m->ev + n * D, m->tab + 2 * V * D + r, sizeof(float) * D);
        }
        attn_sdpa_desc d;
        attn_status st = attn_sdpa_desc_init(&d, nb, 1, c->T, c->T, c->D, c->D);
        if (st != ATTN_OK) return st;
        d.scale = c->scale;
        if ((st = attn_sdpa_forward(&d, m->h + (size_t)n0 * D, m->lse, NULL, m->eq, m->ek, m->ev, m->ework,
                                    m->ework_bytes)) != ATTN_OK)
            return st;
    }
    return head_forward(m, labels, B, 0, 0, loss_sum, correct);
}

attn_status imdb_model_forward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                               uint64_t drop_seed, float *weights, double *loss_sum, int *correct) {
    if (!m || !ids) return ATTN_ERR_NULL;
    if (B < 1 || B > m->Bmax) return ATTN_ERR_SIZE;
    const imdb_config *c = &m->cfg;
    const int N = B * c->T;
    attn_status st;
    /* x (B,T,D) = emb[ids] */
    if ((st = attn_embedding_forward(m->x, ids, m->emb, N, c->V, c->D)) != ATTN_OK) return st;
    /* h (B,T,D) = selfattn(x), no mask (the Keras model attends over the padding too) */
    if ((st = attn_selfattn_forward(&m->sa, m->cache, m->cache_bytes, m->h, weights, m->x, B, c->T, NULL)) != ATTN_OK)
        return st;
    return head_forward(m, labels, B, train, drop_seed, loss_sum, correct);
}

void imdb_model_zero_grad(imdb_model *m, int full) {
    const size_t D = (size_t)m->cfg.D, V = (size_t)m->cfg.V;
    if (full || m->n_touched < 0) {
        memset(m->grads, 0, sizeof(float) * m->n_params);
    } else {
        for (int i = 0; i < m->n_touched; i++) memset(m->d_emb + (size_t)m->touched[i] * D, 0, sizeof(float) * D);
        memset(m->grads + V * D, 0, sizeof(float) * (m->n_params - V * D));
    }
    m->n_touched = 0;
}

attn_status imdb_model_backward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                                uint64_t drop_seed) {
    if (!m || !ids || !labels) return ATTN_ERR_NULL;
    if (B < 1 || B > m->Bmax) return ATTN_ERR_SIZE;
    const imdb_config *c = &m->cfg;
    const int N = B * c->T;
    const size_t nBD = (size_t)B * c->D, nBTD = (size_t)N * c->D;
    attn_status st;
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
    memset(m->dh, 0, sizeof(float) * nBTD);
    if ((st = attn_mean_time_backward(m->dh, m->dpooled, B, c->T, c->D)) != ATTN_OK) return st;
    memset(m->dx, 0, sizeof(float) * nBTD);
    if ((st = attn_selfattn_backward(&m->sa, m->cache, m->cache_bytes, m->dx, m->dh, m->x, B, c->T, NULL)) != ATTN_OK)
        return st;
    if ((st = attn_embedding_backward(m->d_emb, m->dx, ids, N, c->V, c->D)) != ATTN_OK) return st;
    /* remember the rows to clear; when they no longer fit, the next zero_grad clears everything */
    if (m->n_touched >= 0 && m->n_touched + N <= m->Bmax * c->T)
        for (int i = 0; i < N; i++) m->touched[m->n_touched++] = ids[i];
    else
        m->n_touched = -1;
    return ATTN_OK;
}
