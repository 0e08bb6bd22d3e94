/*
 * vit.c — the Vision Transformer of attn/vit.h: parameter slab and layer binding, the activations of a
 * shard carved from one allocation, forward, backward, the sharded training step, the attention rollout
 * and checkpoints.
 *
 * Every call runs on the model's shards: a batch of B images is split into n_shards fixed parts of
 * ceil(B / shards) images, each run by one thread on its own activations (and, in training, its own
 * gradients, summed in shard order afterwards), so results do not depend on the thread count.
 */
#include "internal.h"
#include "attn/vit.h"
#include "layers/util.h"
#include "nmt_common.h"

#include <stdlib.h>
#include <string.h>

void attn_vit_config_default(attn_vit_config *c) {
    if (!c) return;
    *c = (attn_vit_config){.image = 28, .channels = 1, .patch = 7, .dim = 128, .heads = 4, .blocks = 4, .mlp = 256,
                           .classes = 10, .max_batch = 128};
}

attn_status attn_vit_config_check(const attn_vit_config *c) {
    if (!c) return ATTN_ERR_NULL;
    const int v[8] = {c->image, c->channels, c->patch, c->dim, c->heads, c->blocks, c->mlp, c->classes};
    for (int i = 0; i < 8; i++)
        if (v[i] < 1 || v[i] > 65536) return ATTN_ERR_SIZE;
    if (c->max_batch < 1 || c->max_batch > 65536 || c->blocks > ATTN_VIT_MAX_BLOCKS) return ATTN_ERR_SIZE;
    if (c->image % c->patch != 0 || c->dim % c->heads != 0) return ATTN_ERR_SHAPE;
    const int64_t np = (int64_t)(c->image / c->patch) * (c->image / c->patch);
    if (np + 1 > 4096) return ATTN_ERR_SIZE;
    const int kp = c->patch_kernel ? c->patch_kernel : c->patch;
    const attn_status ks = attn__patch_kernel_check(c->patch, kp);
    if (ks != ATTN_OK) return ks;
    if ((int64_t)c->channels * kp * kp > 65536) return ATTN_ERR_SIZE;
    if (c->compute != ATTN_DTYPE_F32 && c->compute != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Parameters: binds every layer to (p, g) at the offsets of the slab (p NULL: only counts).
 */
static size_t vit_layout(attn_vit *m, float *p, float *g) {
    const attn_vit_config *c = &m->cfg;
    const int D = c->dim, F = c->mlp, K = c->classes, Np = (c->image / c->patch) * (c->image / c->patch);
    size_t at = 0;
#define VIT_AT(n) (p ? p + at : NULL), (g ? g + at : NULL)
    const int kp = c->patch_kernel ? c->patch_kernel : c->patch;
    size_t n = attn_patch_embed_n_params(c->channels, kp, D);
    if (p) attn_patch_embed_bind_kernel(&m->patch, c->channels, c->image, c->image, c->patch, kp, D, VIT_AT(n));
    at += n;
    n = attn_cls_pos_n_params(Np, D);
    if (p) attn_cls_pos_bind(&m->tok, Np, D, VIT_AT(n));
    at += n;
    for (int l = 0; l < c->blocks; l++) {
        attn_vit_block *b = &m->blk[l];
        n = attn_layernorm_n_params(D);
        if (p) attn_layernorm_bind(&b->ln1, D, VIT_AT(n));
        at += n;
        n = attn_mha_n_params(D, D, D, D);
        if (p) {
            attn_mha_bind(&b->attn, D, D, D, D, c->heads, VIT_AT(n));
            b->attn.compute = c->compute;
        }
        at += n;
        n = attn_layernorm_n_params(D);
        if (p) attn_layernorm_bind(&b->ln2, D, VIT_AT(n));
        at += n;
        if (p) {
            b->w1 = p + at; b->b1 = b->w1 + (size_t)F * D; b->w2 = b->b1 + F; b->b2 = b->w2 + (size_t)D * F;
            if (g) { b->dw1 = g + at; b->db1 = b->dw1 + (size_t)F * D; b->dw2 = b->db1 + F; b->db2 = b->dw2 + (size_t)D * F; }
        }
        at += (size_t)F * D + F + (size_t)D * F + D;
    }
    n = attn_layernorm_n_params(D);
    if (p) attn_layernorm_bind(&m->norm, D, VIT_AT(n));
    at += n;
    if (p) {
        m->head_w = p + at; m->head_b = m->head_w + (size_t)K * D;
        if (g) { m->dhead_w = g + at; m->dhead_b = m->dhead_w + (size_t)K * D; }
    }
    at += (size_t)K * D + K;
#undef VIT_AT
    return at;
}

/* ---------------------------------------------------------------------------------------------------
 * Activations of one shard (Bm images, N = Bm·T rows), carved from one allocation (base NULL: sizes only).
 */
typedef struct vit_block_acts {
    float *a1, *att, *h, *a2, *u, *g;          /* (N,D) (N,D) (N,D) (N,D) (N,F) (N,F) */
    void *c_ln1, *c_ln2, *c_mha;
} vit_block_acts;

typedef struct vit_acts {
    float *pe;                                 /* (Bm,Np,D) patch embeddings */
    float *xs;                                 /* (L+1,N,D) the residual stream entering each block, and out */
    vit_block_acts b[ATTN_VIT_MAX_BLOCKS];
    float *cls, *clsn, *logits, *probs, *losses;   /* (Bm,D) (Bm,D) (Bm,K) (Bm,K) (Bm) */
    float *dx, *dh, *da, *dg, *du, *dcls, *dclsn, *dlogits, *dpe;  /* backward scratch */
    void *c_patch, *c_norm;
    size_t n_patch, n_ln1, n_ln2, n_mha, n_norm;
} vit_acts;

static void *take(char *base, size_t *at, size_t bytes) {
    void *p = base ? base + *at : NULL;
    *at += (bytes + 63) & ~(size_t)63;
    return p;
}

static attn_status vit_carve(const attn_vit *m, char *base, int Bm, vit_acts *a, size_t *total) {
    const attn_vit_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, F = (size_t)c->mlp, K = (size_t)c->classes, T = (size_t)m->T;
    const size_t N = (size_t)Bm * T, Np = T - 1, f = sizeof(float);
    attn_status st;
    if ((st = attn_patch_embed_cache_bytes(&m->patch, Bm, &a->n_patch)) != ATTN_OK) return st;
    if ((st = attn_layernorm_cache_bytes(&m->blk[0].ln1, (int)N, &a->n_ln1)) != ATTN_OK) return st;
    a->n_ln2 = a->n_ln1;
    if ((st = attn_mha_cache_bytes(&m->ctx, &m->blk[0].attn, Bm, (int)T, (int)T, &a->n_mha)) != ATTN_OK) return st;
    if ((st = attn_layernorm_cache_bytes(&m->norm, Bm, &a->n_norm)) != ATTN_OK) return st;
    size_t at = 0;
    a->pe = take(base, &at, (size_t)Bm * Np * D * f);
    a->xs = take(base, &at, (size_t)(c->blocks + 1) * N * D * f);
    for (int l = 0; l < c->blocks; l++) {
        vit_block_acts *b = &a->b[l];
        b->a1 = take(base, &at, N * D * f);
        b->att = take(base, &at, N * D * f);
        b->h = take(base, &at, N * D * f);
        b->a2 = take(base, &at, N * D * f);
        b->u = take(base, &at, N * F * f);
        b->g = take(base, &at, N * F * f);
        b->c_ln1 = take(base, &at, a->n_ln1);
        b->c_ln2 = take(base, &at, a->n_ln2);
        b->c_mha = take(base, &at, a->n_mha);
    }
    a->cls = take(base, &at, (size_t)Bm * D * f);
    a->clsn = take(base, &at, (size_t)Bm * D * f);
    a->logits = take(base, &at, (size_t)Bm * K * f);
    a->probs = take(base, &at, (size_t)Bm * K * f);
    a->losses = take(base, &at, (size_t)Bm * f);
    a->dx = take(base, &at, N * D * f);
    a->dh = take(base, &at, N * D * f);
    a->da = take(base, &at, N * D * f);
    a->dg = take(base, &at, N * F * f);
    a->du = take(base, &at, N * F * f);
    a->dcls = take(base, &at, (size_t)Bm * D * f);
    a->dclsn = take(base, &at, (size_t)Bm * D * f);
    a->dlogits = take(base, &at, (size_t)Bm * K * f);
    a->dpe = take(base, &at, (size_t)Bm * Np * D * f);
    a->c_patch = take(base, &at, a->n_patch);
    a->c_norm = take(base, &at, a->n_norm);
    *total = at + 64;
    return ATTN_OK;
}

static void vit_acts_get(const attn_vit *m, vit_acts *a) {
    size_t total;
    uintptr_t u = ((uintptr_t)m->acts + 63) & ~(uintptr_t)63;
    vit_carve(m, (char *)u, m->cfg.max_batch, a, &total);
}

/* ---------------------------------------------------------------------------------------------------
 * Lifecycle.
 */
static void vit_shard_free(void *p) {
    attn_vit *s = p;
    free(s->grads);                      /* a shard's params are the model's */
    free(s->acts);
}

static void vit_free_shards(attn_vit *m) {
    attn__shards_free(m->shards, m->n_shards, sizeof *m->shards, vit_shard_free);
    m->shards = NULL;
    m->n_shards = 0;
}

void attn_vit_free(attn_vit *m) {
    if (!m) return;
    vit_free_shards(m);
    free(m->params);
    memset(m, 0, sizeof *m);
}

static attn_status vit_alloc(attn_vit *m, const attn_ctx *ctx, const attn_vit_config *cfg) {
    attn_status st = attn_vit_config_check(cfg);
    if (st != ATTN_OK) return st;
    memset(m, 0, sizeof *m);
    const attn_kernels *kern;
    if ((st = attn__ctx_resolve(ctx, &m->ctx, &kern)) != ATTN_OK) return st;
    m->cfg = *cfg;
    m->T = (cfg->image / cfg->patch) * (cfg->image / cfg->patch) + 1;
    m->n_params = vit_layout(m, NULL, NULL);
    m->params = calloc(2 * m->n_params, sizeof(float));
    if (!m->params) return ATTN_ERR_NOMEM;
    m->grads = m->params + m->n_params;
    vit_layout(m, m->params, m->grads);
    if ((st = attn_vit_set_shards(m, ATTN_VIT_SHARDS)) != ATTN_OK) { attn_vit_free(m); return st; }
    return ATTN_OK;
}

/* A shard: a view of the model's parameters with its own gradients and activations for ceil(max_batch/ns)
 * rows, run on one thread (the shards themselves run in parallel). */
static attn_status vit_shard_init(void *model, void *p, int ns) {
    const attn_vit *m = model;
    attn_vit *s = p;
    s->cfg = m->cfg;
    s->cfg.max_batch = (m->cfg.max_batch + ns - 1) / ns;
    s->T = m->T;
    s->ctx = m->ctx;
    s->ctx.threads = 1;
    s->n_params = m->n_params;
    s->params = m->params;
    if (!(s->grads = calloc(m->n_params, sizeof(float)))) return ATTN_ERR_NOMEM;
    vit_layout(s, s->params, s->grads);
    vit_acts a;
    attn_status st = vit_carve(s, NULL, s->cfg.max_batch, &a, &s->acts_bytes);
    if (st != ATTN_OK) return st;
    return (s->acts = calloc(1, s->acts_bytes)) ? ATTN_OK : ATTN_ERR_NOMEM;
}

attn_status attn_vit_set_shards(attn_vit *m, int ns) {
    if (!m || !m->params) return ATTN_ERR_NULL;
    void *shards = m->shards;
    attn_status st = attn__shards_replace(m, &shards, &m->n_shards, sizeof *m->shards, ns, vit_shard_init,
                                          vit_shard_free);
    m->shards = shards;
    return st;
}

attn_status attn_vit_init(attn_vit *m, const attn_ctx *ctx, const attn_vit_config *cfg, uint64_t seed) {
    if (!m || !cfg) return ATTN_ERR_NULL;
    attn_status st = vit_alloc(m, ctx, cfg);
    if (st != ATTN_OK) return st;
    attn_rng r;
    attn_rng_seed(&r, seed);
    attn_patch_embed_init_weights(&m->patch, &r);
    attn_cls_pos_init_weights(&m->tok, &r);
    for (int l = 0; l < cfg->blocks; l++) {
        attn_vit_block *b = &m->blk[l];
        attn_layernorm_init_weights(&b->ln1, NULL);
        attn_mha_init_weights(&b->attn, &r);
        attn_layernorm_init_weights(&b->ln2, NULL);
        attn__xavier_uniform(&r, b->w1, cfg->mlp, cfg->dim);
        memset(b->b1, 0, sizeof(float) * (size_t)cfg->mlp);
        attn__xavier_uniform(&r, b->w2, cfg->dim, cfg->mlp);
        memset(b->b2, 0, sizeof(float) * (size_t)cfg->dim);
    }
    attn_layernorm_init_weights(&m->norm, NULL);
    attn__xavier_uniform(&r, m->head_w, cfg->classes, cfg->dim);
    memset(m->head_b, 0, sizeof(float) * (size_t)cfg->classes);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * One shard: forward (logits; weights (L, Bw, H, T, T) slices at row offset w_off when asked), and with
 * labels the loss (label smoothing eps), and with backward the gradients of Σ loss · inv_b into s->grads (zeroed
 * first). eps 0 runs the plain cross-entropy, whose bits every run before label smoothing has.
 */
static attn_status shard_run(attn_vit *s, const float *images, const int32_t *labels, int Bm, float inv_b, float eps,
                             int backward, float *logits_out, float *weights, int Bw, int w_off, float *loss_sum,
                             int *correct) {
    const attn_vit_config *c = &s->cfg;
    const int D = c->dim, F = c->mlp, K = c->classes, T = s->T, H = c->heads, L = c->blocks;
    const int N = Bm * T;
    const size_t ND = (size_t)N * D;
    vit_acts a;
    vit_acts_get(s, &a);
    attn_status st;

    /* forward: patches, tokens, blocks, class token's norm and head */
    if ((st = attn_patch_embed_forward(&s->patch, a.c_patch, a.n_patch, a.pe, images, Bm)) != ATTN_OK) return st;
    if ((st = attn_cls_pos_forward(&s->tok, a.xs, a.pe, Bm)) != ATTN_OK) return st;
    for (int l = 0; l < L; l++) {
        const attn_vit_block *b = &s->blk[l];
        vit_block_acts *ba = &a.b[l];
        const float *x = a.xs + (size_t)l * ND;
        float *y = a.xs + (size_t)(l + 1) * ND;
        float *w = weights ? weights + ((size_t)l * Bw + w_off) * H * T * T : NULL;
        if ((st = attn_layernorm_forward(&b->ln1, ba->c_ln1, a.n_ln1, ba->a1, x, N)) != ATTN_OK) return st;
        if ((st = attn_mha_forward(&s->ctx, &b->attn, ba->c_mha, a.n_mha, ba->att, w, ba->a1, ba->a1, ba->a1, Bm, T, T,
                                   NULL, 0.0f, 0)) != ATTN_OK)
            return st;
        for (size_t i = 0; i < ND; i++) ba->h[i] = x[i] + ba->att[i];
        if ((st = attn_layernorm_forward(&b->ln2, ba->c_ln2, a.n_ln2, ba->a2, ba->h, N)) != ATTN_OK) return st;
        if ((st = attn_linear_forward(ba->u, ba->a2, b->w1, b->b1, N, D, F)) != ATTN_OK) return st;
        if ((st = attn_gelu_forward(ba->g, ba->u, (size_t)N * F)) != ATTN_OK) return st;
        if ((st = attn_linear_forward(y, ba->g, b->w2, b->b2, N, F, D)) != ATTN_OK) return st;
        for (size_t i = 0; i < ND; i++) y[i] += ba->h[i];
    }
    const float *xl = a.xs + (size_t)L * ND;
    for (int i = 0; i < Bm; i++) memcpy(a.cls + (size_t)i * D, xl + (size_t)i * T * D, sizeof(float) * D);
    if ((st = attn_layernorm_forward(&s->norm, a.c_norm, a.n_norm, a.clsn, a.cls, Bm)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(a.logits, a.clsn, s->head_w, s->head_b, Bm, D, K)) != ATTN_OK) return st;
    if (logits_out) memcpy(logits_out, a.logits, sizeof(float) * (size_t)Bm * K);
    if (!labels) return ATTN_OK;

    st = eps > 0.0f ? attn_softmax_xent_smooth_forward(a.losses, a.probs, a.logits, labels, eps, Bm, K)
                    : attn_softmax_xent_forward(a.losses, a.probs, a.logits, labels, NULL, Bm, K);
    if (st != ATTN_OK) return st;
    double sum = 0.0;
    int ok = 0;
    for (int i = 0; i < Bm; i++) {
        sum += a.losses[i];
        int best = 0;
        for (int k = 1; k < K; k++)
            if (a.logits[(size_t)i * K + k] > a.logits[(size_t)i * K + best]) best = k;
        ok += best == labels[i];
    }
    *loss_sum = (float)sum;
    *correct = ok;
    if (!backward) return ATTN_OK;

    /* backward, in reverse: head, norm, the class token's rows, blocks, tokens, patches */
    memset(s->grads, 0, sizeof(float) * s->n_params);
    for (int i = 0; i < Bm; i++) a.losses[i] = inv_b;             /* d(mean loss)/d(loss_i) */
    memset(a.dlogits, 0, sizeof(float) * (size_t)Bm * K);
    st = eps > 0.0f ? attn_softmax_xent_smooth_backward(a.dlogits, a.losses, a.probs, labels, eps, Bm, K)
                    : attn_softmax_xent_backward(a.dlogits, a.losses, a.probs, labels, NULL, Bm, K);
    if (st != ATTN_OK) return st;
    memset(a.dclsn, 0, sizeof(float) * (size_t)Bm * D);
    if ((st = attn_linear_backward(a.dclsn, s->dhead_w, s->dhead_b, a.dlogits, a.clsn, s->head_w, Bm, D, K)) != ATTN_OK)
        return st;
    memset(a.dcls, 0, sizeof(float) * (size_t)Bm * D);
    if ((st = attn_layernorm_backward(&s->norm, a.c_norm, a.n_norm, a.dcls, a.dclsn, a.cls, Bm)) != ATTN_OK) return st;
    memset(a.dx, 0, sizeof(float) * ND);
    for (int i = 0; i < Bm; i++) memcpy(a.dx + (size_t)i * T * D, a.dcls + (size_t)i * D, sizeof(float) * D);
    for (int l = L - 1; l >= 0; l--) {
        const attn_vit_block *b = &s->blk[l];
        vit_block_acts *ba = &a.b[l];
        const float *x = a.xs + (size_t)l * ND;
        /* y = h + fc2(gelu(fc1(ln2(h)))): dh = dy + the MLP's path */
        memcpy(a.dh, a.dx, sizeof(float) * ND);
        memset(a.dg, 0, sizeof(float) * (size_t)N * F);
        if ((st = attn_linear_backward(a.dg, b->dw2, b->db2, a.dx, ba->g, b->w2, N, F, D)) != ATTN_OK) return st;
        memset(a.du, 0, sizeof(float) * (size_t)N * F);
        if ((st = attn_gelu_backward(a.du, a.dg, ba->u, (size_t)N * F)) != ATTN_OK) return st;
        memset(a.da, 0, sizeof(float) * ND);
        if ((st = attn_linear_backward(a.da, b->dw1, b->db1, a.du, ba->a2, b->w1, N, D, F)) != ATTN_OK) return st;
        if ((st = attn_layernorm_backward(&b->ln2, ba->c_ln2, a.n_ln2, a.dh, a.da, ba->h, N)) != ATTN_OK) return st;
        /* h = x + mha(ln1(x)): dx = dh + the attention's path */
        memcpy(a.dx, a.dh, sizeof(float) * ND);
        memset(a.da, 0, sizeof(float) * ND);
        if ((st = attn_mha_backward(&s->ctx, &b->attn, ba->c_mha, a.n_mha, a.da, a.da, a.da, a.dh, ba->a1, ba->a1, ba->a1,
                                    Bm, T, T, NULL, 0.0f, 0)) != ATTN_OK)
            return st;
        if ((st = attn_layernorm_backward(&b->ln1, ba->c_ln1, a.n_ln1, a.dx, a.da, x, N)) != ATTN_OK) return st;
    }
    memset(a.dpe, 0, sizeof(float) * (size_t)Bm * (T - 1) * D);
    if ((st = attn_cls_pos_backward(&s->tok, a.dpe, a.dx, Bm)) != ATTN_OK) return st;
    return attn_patch_embed_backward(&s->patch, a.c_patch, a.n_patch, NULL, a.dpe, images, Bm);
}

/* Runs shards [first, first + count) over a batch (all of them: first 0, count n_shards). Training
 * (labels and backward): the shards' gradients summed into m->grads in shard order, by combine when given
 * (data parallel: the other shards are other processes'). */
static attn_status run_sharded(attn_vit *m, const float *images, const int32_t *labels, int B, int backward,
                               float *logits, float *weights, float *loss, int *correct,
                               int first, int count, attn_shard_combine_fn combine, void *user) {
    if (!m->shards) return ATTN_ERR_NULL;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    const int ns = m->n_shards, per = (B + ns - 1) / ns, K = m->cfg.classes;
    const int n_used = (B + per - 1) / per;       /* shards holding images */
    const size_t img = (size_t)m->cfg.channels * m->cfg.image * m->cfg.image;
    attn_status sts[ATTN_MAX_SHARDS];
    float losses[ATTN_MAX_SHARDS];
    int oks[ATTN_MAX_SHARDS];
    int nth = m->ctx.threads > 0 ? m->ctx.threads : attn_get_num_threads();
    nth = nth < 1 ? 1 : nth > ns ? ns : nth;
    (void)nth;
    ATTN_OMP(omp parallel for num_threads(nth) schedule(static, 1) if (nth > 1))
    for (int k = 0; k < ns; k++) {
        const int lo = k * per, n = B - lo < per ? B - lo : per;
        losses[k] = 0.0f;
        oks[k] = 0;
        sts[k] = ATTN_OK;
        if (n <= 0 || k < first || k >= first + count) continue;
        sts[k] = shard_run(&m->shards[k], images + (size_t)lo * img, labels ? labels + lo : NULL, n, 1.0f / (float)B,
                           m->label_smoothing, backward, logits ? logits + (size_t)lo * K : NULL, weights, B, lo, &losses[k], &oks[k]);
    }
    double sum = 0.0;
    int ok = 0;
    attn_status st;
    for (int k = 0; k < ns; k++) {
        if (sts[k] != ATTN_OK) return sts[k];
        sum += losses[k];
        ok += oks[k];
    }
    if (backward && combine) {
        float *sg[ATTN_MAX_SHARDS];
        float lsum;
        for (int k = 0; k < ns; k++) sg[k] = m->shards[k].grads;
        if ((st = combine(user, m->grads, m->n_params, sg, losses, first, count, n_used, &lsum)) != ATTN_OK) return st;
        sum = lsum;
    } else if (backward) {
        memset(m->grads, 0, sizeof(float) * m->n_params);
        for (int k = 0; k < n_used; k++) {
            const float *g = m->shards[k].grads;
            for (size_t i = 0; i < m->n_params; i++) m->grads[i] += g[i];
        }
    }
    if (loss) *loss = (float)(sum / B);
    if (correct) *correct = ok;
    return ATTN_OK;
}

static attn_status check_labels(const attn_vit *m, const int32_t *labels, int B) {
    if (!(m->label_smoothing >= 0.0f && m->label_smoothing < 1.0f)) return ATTN_ERR_ARG;
    for (int i = 0; i < B; i++)
        if (labels[i] < 0 || labels[i] >= m->cfg.classes) return ATTN_ERR_ARG;
    return ATTN_OK;
}

attn_status attn_vit_forward(attn_vit *m, float *logits, float *weights, const float *images, int B) {
    if (!m || !logits || !images || !m->params) return ATTN_ERR_NULL;
    return run_sharded(m, images, NULL, B, 0, logits, weights, NULL, NULL, 0, m->n_shards, NULL, NULL);
}

attn_status attn_vit_loss_grad(attn_vit *m, const float *images, const int32_t *labels, int B, float *loss) {
    if (!m || !images || !labels || !m->params) return ATTN_ERR_NULL;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    attn_status st = check_labels(m, labels, B);
    if (st != ATTN_OK) return st;
    return run_sharded(m, images, labels, B, 1, NULL, NULL, loss, NULL, 0, m->n_shards, NULL, NULL);
}

attn_status attn_vit_train_step(attn_vit *m, attn_adam *opt, const float *images, const int32_t *labels, int B,
                                float clip, float *loss, int *correct) {
    return attn_vit_train_step_part(m, opt, images, labels, B, clip, 0, 0, NULL, NULL, loss, correct);
}

attn_status attn_vit_train_step_part(attn_vit *m, attn_adam *opt, const float *images, const int32_t *labels, int B,
                                     float clip, int first, int count, attn_shard_combine_fn combine, void *user,
                                     float *loss, int *correct) {
    if (!m || !opt || !images || !labels || !m->params) return ATTN_ERR_NULL;
    if (opt->n != m->n_params) return ATTN_ERR_SHAPE;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    if (isnan(clip)) return ATTN_ERR_ARG;
    if (count && !combine) return ATTN_ERR_NULL;
    if (count < 0 || first < 0 || first + count > m->n_shards) return ATTN_ERR_ARG;
    if (count == 0) {                             /* the whole batch here */
        first = 0;
        count = m->n_shards;
        combine = NULL;
    }
    attn_status st = check_labels(m, labels, B);
    if (st != ATTN_OK) return st;
    if ((st = run_sharded(m, images, labels, B, 1, NULL, NULL, loss, correct, first, count, combine, user)) != ATTN_OK)
        return st;
    if (clip > 0.0f && (st = attn_clip_grad_norm(m->grads, m->n_params, clip, NULL)) != ATTN_OK) return st;
    return attn_adam_step(opt, m->params, m->grads);
}

/* ---------------------------------------------------------------------------------------------------
 * Attention rollout.
 */
attn_status attn_vit_rollout(float *rollout, const float *weights, int L, int H, int T) {
    if (!rollout || !weights) return ATTN_ERR_NULL;
    if (L < 1 || H < 1 || T < 1 || T > 4096 || L > ATTN_VIT_MAX_BLOCKS) return ATTN_ERR_SIZE;
    const size_t TT = (size_t)T * T;
    double *r = malloc(sizeof(double) * TT * 3);
    if (!r) return ATTN_ERR_NOMEM;
    double *a = r + TT, *t = a + TT;
    for (size_t i = 0; i < TT; i++) r[i] = (i % (T + 1) == 0) ? 1.0 : 0.0;      /* identity */
    for (int l = 0; l < L; l++) {
        /* A = rownorm(0.5 · mean_h W + 0.5 · I) */
        for (int i = 0; i < T; i++) {
            double s = 0.0;
            for (int j = 0; j < T; j++) {
                double v = 0.0;
                for (int h = 0; h < H; h++) v += weights[((size_t)l * H + h) * TT + (size_t)i * T + j];
                v = 0.5 * v / H + (i == j ? 0.5 : 0.0);
                a[(size_t)i * T + j] = v;
                s += v;
            }
            for (int j = 0; j < T; j++) a[(size_t)i * T + j] /= s > 0 ? s : 1.0;
        }
        /* R ← A R (the later block's mixing applied to what the earlier ones gathered) */
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                double v = 0.0;
                for (int k = 0; k < T; k++) v += a[(size_t)i * T + k] * r[(size_t)k * T + j];
                t[(size_t)i * T + j] = v;
            }
        memcpy(r, t, sizeof(double) * TT);
    }
    for (int j = 0; j < T; j++) rollout[j] = (float)r[j];
    free(r);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
#define VIT_MAX_TENSORS (6 + 16 * ATTN_VIT_MAX_BLOCKS)

static int vit_list(const attn_vit *m, attn__nmt_named *t) {
    const attn_vit_config *c = &m->cfg;
    const int kp = c->patch_kernel ? c->patch_kernel : c->patch;
    const int D = c->dim, F = c->mlp, K = c->classes, T = m->T, Kp = c->channels * kp * kp;
    char nm[64];
    int n = 0;
    n = attn__nmt_add(t, n, "patch_embed.weight", m->patch.w, 2, D, Kp);
    n = attn__nmt_add(t, n, "patch_embed.bias", m->patch.b, 1, D, 0);
    n = attn__nmt_add(t, n, "cls_token", m->tok.cls, 1, D, 0);
    n = attn__nmt_add(t, n, "pos_embed", m->tok.pos, 2, T, D);
    for (int l = 0; l < c->blocks; l++) {
        const attn_vit_block *b = &m->blk[l];
        const char *const pn[4] = {"q", "k", "v", "o"};
        float *const pw[4] = {b->attn.wq, b->attn.wk, b->attn.wv, b->attn.wo};
        float *const pb[4] = {b->attn.bq, b->attn.bk, b->attn.bv, b->attn.bo};
        snprintf(nm, sizeof nm, "blocks.%d.norm1.weight", l); n = attn__nmt_add(t, n, nm, b->ln1.gamma, 1, D, 0);
        snprintf(nm, sizeof nm, "blocks.%d.norm1.bias", l);   n = attn__nmt_add(t, n, nm, b->ln1.beta, 1, D, 0);
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "blocks.%d.attn.%s_proj.weight", l, pn[i]); n = attn__nmt_add(t, n, nm, pw[i], 2, D, D);
            snprintf(nm, sizeof nm, "blocks.%d.attn.%s_proj.bias", l, pn[i]);   n = attn__nmt_add(t, n, nm, pb[i], 1, D, 0);
        }
        snprintf(nm, sizeof nm, "blocks.%d.norm2.weight", l);   n = attn__nmt_add(t, n, nm, b->ln2.gamma, 1, D, 0);
        snprintf(nm, sizeof nm, "blocks.%d.norm2.bias", l);     n = attn__nmt_add(t, n, nm, b->ln2.beta, 1, D, 0);
        snprintf(nm, sizeof nm, "blocks.%d.mlp.fc1.weight", l); n = attn__nmt_add(t, n, nm, b->w1, 2, F, D);
        snprintf(nm, sizeof nm, "blocks.%d.mlp.fc1.bias", l);   n = attn__nmt_add(t, n, nm, b->b1, 1, F, 0);
        snprintf(nm, sizeof nm, "blocks.%d.mlp.fc2.weight", l); n = attn__nmt_add(t, n, nm, b->w2, 2, D, F);
        snprintf(nm, sizeof nm, "blocks.%d.mlp.fc2.bias", l);   n = attn__nmt_add(t, n, nm, b->b2, 1, D, 0);
    }
    n = attn__nmt_add(t, n, "norm.weight", m->norm.gamma, 1, D, 0);
    n = attn__nmt_add(t, n, "norm.bias", m->norm.beta, 1, D, 0);
    n = attn__nmt_add(t, n, "head.weight", m->head_w, 2, K, D);
    n = attn__nmt_add(t, n, "head.bias", m->head_b, 1, K, 0);
    return n;
}

#define VIT_N_META 9
static const char *const vit_meta_names[VIT_N_META] = {"model", "image", "channels", "patch", "dim", "heads",
                                                       "blocks", "mlp", "classes"};

attn_status attn_vit_save(const attn_vit *m, const attn_adam *opt, const char *const *keys, const char *const *vals,
                          int n_extra, const char *path, char *err, size_t err_size) {
    if (!m || !m->params || !path || (n_extra > 0 && (!keys || !vals))) return ATTN_ERR_NULL;
    if (n_extra < 0 || n_extra > 32) return ATTN_ERR_SIZE;
    if (opt && (opt->n != m->n_params || !opt->m)) return ATTN_ERR_SHAPE;
    attn__nmt_named t[VIT_MAX_TENSORS + 2];
    int n = vit_list(m, t);
    if (opt) {
        n = attn__nmt_add(t, n, "optimizer.m", opt->m, 1, (int64_t)opt->n, 0);
        n = attn__nmt_add(t, n, "optimizer.v", opt->v, 1, (int64_t)opt->n, 0);
    }
    const attn_vit_config *c = &m->cfg;
    const int v[VIT_N_META - 1] = {c->image, c->channels, c->patch, c->dim, c->heads, c->blocks, c->mlp, c->classes};
    char mv[VIT_N_META + 2][32];
    const char *mk[VIT_N_META + 3 + 32], *mp[VIT_N_META + 3 + 32];
    snprintf(mv[0], 32, "vit");
    for (int i = 1; i < VIT_N_META; i++) snprintf(mv[i], 32, "%d", v[i - 1]);
    snprintf(mv[VIT_N_META], 32, "%lld", opt ? (long long)opt->t : 0LL);
    for (int i = 0; i < VIT_N_META; i++) { mk[i] = vit_meta_names[i]; mp[i] = mv[i]; }
    mk[VIT_N_META] = "optimizer_t";
    mp[VIT_N_META] = mv[VIT_N_META];
    mk[VIT_N_META + 1] = "compute";                    /* missing in older checkpoints: f32 */
    mp[VIT_N_META + 1] = attn__compute_name(c->compute);
    int nm = VIT_N_META + 2;
    if (c->patch_kernel && c->patch_kernel != c->patch) {   /* only then: a plain ViT's file keeps its bytes */
        snprintf(mv[VIT_N_META + 1], 32, "%d", c->patch_kernel);
        mk[nm] = "patch_kernel";                        /* missing in older checkpoints: P */
        mp[nm++] = mv[VIT_N_META + 1];
    }
    for (int i = 0; i < n_extra; i++) { mk[nm + i] = keys[i]; mp[nm + i] = vals[i]; }
    return attn__nmt_save(path, t, n, mk, mp, nm + n_extra, err, err_size);
}

attn_status attn_vit_load(attn_vit *m, attn_adam *opt, const attn_ctx *ctx, const char *path, int max_batch,
                          char *err, size_t err_size) {
    if (!m || !path) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    const char *kind = attn_st_meta(&f, "model");
    if (!kind || strcmp(kind, "vit") != 0) {
        attn__set_err(err, err_size, "%s: not a ViT checkpoint (metadata 'model' is %s, expected vit)", path,
                      kind ? kind : "missing");
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    double v[VIT_N_META];
    if ((st = attn__nmt_meta_numbers(&f, path, vit_meta_names + 1, VIT_N_META - 1, v + 1, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    attn_vit_config c = {.image = (int)v[1], .channels = (int)v[2], .patch = (int)v[3], .dim = (int)v[4],
                         .heads = (int)v[5], .blocks = (int)v[6], .mlp = (int)v[7], .classes = (int)v[8],
                         .max_batch = max_batch > 1 ? max_batch : 1};
    const char *cs = attn_st_meta(&f, "compute");
    if (!attn__compute_parse(cs, &c.compute)) {
        attn__set_err(err, err_size, "%s: metadata \"compute\" = \"%s\", expected f32 or bf16", path, cs);
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    /* absent in older checkpoints (and whenever K == P): patches side by side */
    if ((st = attn__nmt_meta_optional(&f, path, "patch_kernel", &c.patch_kernel, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    if ((st = vit_alloc(m, ctx, &c)) != ATTN_OK) {
        attn__set_err(err, err_size, "%s: the configuration in the metadata is invalid (%s)", path,
                      attn_status_string(st));
        attn_st_free(&f);
        return st == ATTN_ERR_NOMEM ? st : ATTN_ERR_FORMAT;
    }
    attn__nmt_named t[VIT_MAX_TENSORS];
    int n = vit_list(m, t);
    st = attn__nmt_read_tensors(&f, path, t, n, err, err_size);
    if (st == ATTN_OK && opt) {
        /* the optimizer's moments and step, when the checkpoint has them */
        int has = attn_st_find(&f, "optimizer.m") != NULL;
        double ot = 0;
        const char *const otn[1] = {"optimizer_t"};
        if (has && (st = attn__nmt_meta_numbers(&f, path, otn, 1, &ot, err, err_size)) == ATTN_OK &&
            (st = attn_adam_alloc(opt, m->n_params, 0.0f)) == ATTN_OK) {
            n = 0;
            n = attn__nmt_add(t, n, "optimizer.m", opt->m, 1, (int64_t)m->n_params, 0);
            n = attn__nmt_add(t, n, "optimizer.v", opt->v, 1, (int64_t)m->n_params, 0);
            st = attn__nmt_read_tensors(&f, path, t, n, err, err_size);
            opt->t = (int64_t)ot;
            if (st != ATTN_OK) attn_adam_free(opt);
        } else if (!has) {
            attn__set_err(err, err_size, "%s: no optimizer state (tensors optimizer.m, optimizer.v) to resume from", path);
            st = ATTN_ERR_FORMAT;
        }
    }
    attn_st_free(&f);
    if (st != ATTN_OK) attn_vit_free(m);
    return st;
}
