/*
 * caption.c — the image captioner of attn/caption.h: patch embedding and learned positions, encoder and
 * decoder blocks of transformer.c (every attention through attn_sdpa_*), a linear head over the words;
 * the teacher-forced loss and its backward, greedy decoding with the decoder blocks' key/value cache, the
 * attention-on-item measure and checkpoints.
 *
 * Tensors are batch-major: the encoder stream (B,Np,D), the decoder stream (B,T,D).
 */
#include "internal.h"
#include "attn/caption.h"
#include "layers/util.h"
#include "nmt_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void attn_caption_config_default(attn_caption_config *c) {
    if (!c) return;
    *c = (attn_caption_config){.rows = 28, .cols = 84, .patch = 7, .items = 3, .classes = 10, .dim = 64,
                               .heads = 4, .ffn = 128, .enc_blocks = 1, .dec_blocks = 2, .max_batch = 128};
}

attn_status attn_caption_config_check(const attn_caption_config *c) {
    if (!c) return ATTN_ERR_NULL;
    if (c->rows < 1 || c->cols < 1 || c->patch < 1 || c->items < 1 || c->classes < 1 || c->dim < 1 ||
        c->heads < 1 || c->ffn < 1 || c->enc_blocks < 0 || c->dec_blocks < 1 || c->max_batch < 1 ||
        c->enc_blocks > ATTN_CAPTION_MAX_BLOCKS || c->dec_blocks > ATTN_CAPTION_MAX_BLOCKS ||
        c->items > ATTN_CAPTION_MAX_ITEMS || c->rows > 4096 || c->cols > 4096 || c->classes > 65536 ||
        c->dim > 4096 || c->ffn > 16384 || c->max_batch > 65536)
        return ATTN_ERR_SIZE;
    if (c->rows % c->patch || c->cols % c->items || (c->cols / c->items) % c->patch || c->dim % c->heads)
        return ATTN_ERR_SHAPE;
    const int64_t np = (int64_t)(c->rows / c->patch) * (c->cols / c->patch);
    if (np > ATTN_TF_MAX_LEN || np * c->max_batch * (c->ffn > c->dim ? c->ffn : c->dim) > INT32_MAX)
        return ATTN_ERR_SIZE;
    return ATTN_OK;
}

/* Parameter views, in the checkpoint's order; p NULL only counts. */
static size_t cap_layout(attn_caption *m, float *p, float *g) {
    const attn_caption_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, ne = attn_tf_block_n_params(c->dim, c->ffn, 0),
                 nd = attn_tf_block_n_params(c->dim, c->ffn, 1), npe = attn_patch_embed_n_params(1, c->patch, c->dim);
    size_t off = 0;
    if (p) attn_patch_embed_bind(&m->patch, 1, c->rows, c->cols, c->patch, c->dim, p, g);
    off += npe;
#define VIEW(name, dname, n) do { m->name = p ? p + off : NULL; m->dname = g ? g + off : NULL; off += (n); } while (0)
    VIEW(pos, dpos, (size_t)m->Np * D);
    for (int l = 0; l < c->enc_blocks; l++, off += ne)
        if (p) attn_tf_block_bind(&m->enc[l], c->dim, c->ffn, c->heads, 0, 0.0f, p + off, g ? g + off : NULL);
    VIEW(emb, demb, (size_t)m->V * D);
    VIEW(dec_pos, ddec_pos, (size_t)m->T * D);
    for (int l = 0; l < c->dec_blocks; l++, off += nd)
        if (p) attn_tf_block_bind(&m->dec[l], c->dim, c->ffn, c->heads, 1, 0.0f, p + off, g ? g + off : NULL);
    VIEW(head_w, dhead_w, (size_t)m->V * D);
    VIEW(head_b, dhead_b, (size_t)m->V);
#undef VIEW
    return off;
}

/* The activations for max_batch Bm strips (Ne = Bm·Np, Nd = Bm·T), carved in this order, each piece a
 * multiple of 16 floats: lens (Bm) ids tgt (Nd); patch cache; ex (Le+1,Ne,D) encoder stream; dx (Ld+1,Nd,D)
 * decoder stream; enc caches, dec caches; logits probs (Nd,V) losses (Nd); ge1 ge2 denc (Ne,D); gd1 gd2
 * (Nd,D); decoding: kv (Ld, 2·T·D + 2·Np·D), step x y (D each), row (V), step scratch, wscr (H·Np), step
 * workspace. */
typedef struct cap_acts {
    int32_t *lens, *ids, *tgt;
    float *patch_cache, *ex, *dx, *enc_cache, *dec_cache, *logits, *probs, *losses;
    float *ge1, *ge2, *denc, *gd1, *gd2, *kv, *sx, *sy, *row, *scratch, *wscr;
    void *work;
    size_t patch_cache_n, enc_cache_n, dec_cache_n, kv_n, work_bytes, total;
} cap_acts;

static attn_status cap_carve(const attn_caption *m, float *base, cap_acts *a) {
    const attn_caption_config *c = &m->cfg;
    const size_t Bm = (size_t)c->max_batch, Np = (size_t)m->Np, T = (size_t)m->T, D = (size_t)c->dim,
                 V = (size_t)m->V, H = (size_t)c->heads, Ne = Bm * Np, Nd = Bm * T, Le = (size_t)c->enc_blocks,
                 Ld = (size_t)c->dec_blocks;
    size_t off = 0, pb = 0, eb = 0, db = 0, sf = 0;
    attn_status st;
    if ((st = attn_patch_embed_cache_bytes(&m->patch, c->max_batch, &pb)) != ATTN_OK) return st;
    if (Le && (st = attn_tf_block_cache_bytes(&m->ctx, &m->enc[0], c->max_batch, m->Np, m->Np, &eb)) != ATTN_OK)
        return st;
    if ((st = attn_tf_block_cache_bytes(&m->ctx, &m->dec[0], c->max_batch, m->T, m->Np, &db)) != ATTN_OK) return st;
    if ((st = attn_tf_block_step_sizes(&m->ctx, &m->dec[0], m->T, m->Np, &sf, &a->work_bytes)) != ATTN_OK) return st;
    a->patch_cache_n = (pb / sizeof(float) + 16 + 15) & ~(size_t)15;
    a->enc_cache_n = (eb / sizeof(float) + 15) & ~(size_t)15;
    a->dec_cache_n = (db / sizeof(float) + 15) & ~(size_t)15;
    a->kv_n = (2 * T * D + 2 * Np * D + 15) & ~(size_t)15;
#define TAKE(ptr, n) do { a->ptr = base ? base + off : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
#define TAKE_I(ptr, n) do { a->ptr = base ? (int32_t *)(base + off) : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
    TAKE_I(lens, Bm); TAKE_I(ids, Nd); TAKE_I(tgt, Nd);
    TAKE(patch_cache, a->patch_cache_n);
    TAKE(ex, (Le + 1) * Ne * D); TAKE(dx, (Ld + 1) * Nd * D);
    TAKE(enc_cache, Le * a->enc_cache_n); TAKE(dec_cache, Ld * a->dec_cache_n);
    TAKE(logits, Nd * V); TAKE(probs, Nd * V); TAKE(losses, Nd);
    TAKE(ge1, Ne * D); TAKE(ge2, Ne * D); TAKE(denc, Ne * D); TAKE(gd1, Nd * D); TAKE(gd2, Nd * D);
    TAKE(kv, Ld * a->kv_n); TAKE(sx, D); TAKE(sy, D); TAKE(row, V); TAKE(scratch, sf); TAKE(wscr, H * Np);
#undef TAKE
#undef TAKE_I
    a->work = base ? (void *)(base + off) : NULL;
    off += (a->work_bytes + sizeof(float) - 1) / sizeof(float) + 16;
    a->total = off;
    return ATTN_OK;
}

void attn_caption_free(attn_caption *m) {
    if (!m) return;
    free(m->params);
    free(m->acts);
    free(m->shard_grads);
    memset(m, 0, sizeof *m);
}

static attn_status cap_alloc(attn_caption *m, const attn_ctx *ctx, const attn_caption_config *cfg) {
    attn_status st = attn_caption_config_check(cfg);
    if (st != ATTN_OK) return st;
    memset(m, 0, sizeof *m);
    const attn_kernels *kern;
    if ((st = attn__ctx_resolve(ctx, &m->ctx, &kern)) != ATTN_OK) return st;
    m->cfg = *cfg;
    m->Np = (cfg->rows / cfg->patch) * (cfg->cols / cfg->patch);
    m->T = cfg->items + 1;
    m->V = cfg->classes + 2;
    m->n_params = cap_layout(m, NULL, NULL);
    m->params = calloc(2 * m->n_params, sizeof(float));
    if (!m->params) return ATTN_ERR_NOMEM;
    m->grads = m->params + m->n_params;
    cap_layout(m, m->params, m->grads);
    cap_acts a;
    if ((st = cap_carve(m, NULL, &a)) != ATTN_OK) { attn_caption_free(m); return st; }
    m->acts_floats = a.total;
    m->acts = calloc(a.total, sizeof(float));
    if (!m->acts) { attn_caption_free(m); return ATTN_ERR_NOMEM; }
    return ATTN_OK;
}

attn_status attn_caption_init(attn_caption *m, const attn_ctx *ctx, const attn_caption_config *cfg, uint64_t seed) {
    if (!m || !cfg) return ATTN_ERR_NULL;
    attn_status st = cap_alloc(m, ctx, cfg);
    if (st != ATTN_OK) return st;
    const size_t D = (size_t)cfg->dim;
    attn_rng r;
    attn_rng_seed(&r, seed);
    attn_patch_embed_init_weights(&m->patch, &r);
    attn__nmt_normal(&r, m->pos, (size_t)m->Np * D, 0.02f);
    for (int l = 0; l < cfg->enc_blocks; l++) attn_tf_block_init_weights(&m->enc[l], &r);
    attn__nmt_normal(&r, m->emb, (size_t)m->V * D, 1.0f);
    attn__nmt_normal(&r, m->dec_pos, (size_t)m->T * D, 0.02f);
    for (int l = 0; l < cfg->dec_blocks; l++) attn_tf_block_init_weights(&m->dec[l], &r);
    attn__nmt_xavier(&r, m->head_w, m->V, cfg->dim);
    memset(m->head_b, 0, sizeof(float) * (size_t)m->V);
    return ATTN_OK;
}

static void cap_acts_get(const attn_caption *m, cap_acts *a) {
    cap_carve(m, NULL, a);                                       /* sizes only: checked at allocation */
    cap_carve(m, (float *)(((uintptr_t)m->acts + 63) & ~(uintptr_t)63), a);
}

/* The encoder over B strips: a.ex[Le] gets its output (B,Np,D). */
static attn_status cap_encode(attn_caption *m, cap_acts *a, const float *strips, int B) {
    const int D = m->cfg.dim, Np = m->Np, Le = m->cfg.enc_blocks;
    const size_t stride = (size_t)m->cfg.max_batch * Np * D;
    attn_status st;
    for (int b = 0; b < B; b++) a->lens[b] = Np;
    if ((st = attn_patch_embed_forward(&m->patch, a->patch_cache, a->patch_cache_n * sizeof(float), a->ge1, strips,
                                       B)) != ATTN_OK)
        return st;
    attn__nmt_add_rows(a->ex, a->ge1, m->pos, B, Np, D);
    for (int l = 0; l < Le; l++)
        if ((st = attn_tf_block_forward(&m->ctx, &m->enc[l], a->enc_cache + (size_t)l * a->enc_cache_n,
                                        a->enc_cache_n * sizeof(float), a->ex + (size_t)(l + 1) * stride, NULL,
                                        a->ex + (size_t)l * stride, NULL, a->lens, B, Np, Np, 0, 0)) != ATTN_OK)
            return st;
    return ATTN_OK;
}

static attn_status cap_loss_grad(attn_caption *m, const float *strips, const int32_t *words, int B, int Bt,
                                 double *sum_out);

attn_status attn_caption_loss_grad(attn_caption *m, const float *strips, const int32_t *words, int B, float *loss) {
    if (!m || !m->params || !m->acts || !strips || !words) return ATTN_ERR_NULL;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    double sum = 0.0;
    attn_status st = cap_loss_grad(m, strips, words, B, B, &sum);
    if (st == ATTN_OK && loss) *loss = (float)(sum / ((double)B * m->T));
    return st;
}

/* The loss and gradient of B strips as a part of a batch of Bt (>= B): m->grads gets the gradient of
 * (the B strips' row losses summed) / (Bt·T), *sum the row losses summed. Arguments checked by the caller. */
static attn_status cap_loss_grad(attn_caption *m, const float *strips, const int32_t *words, int B, int Bt,
                                 double *sum_out) {
    const attn_caption_config *c = &m->cfg;
    const int D = c->dim, Np = m->Np, T = m->T, V = m->V, N = c->items, Le = c->enc_blocks, Ld = c->dec_blocks;
    const int Nd = B * T;
    for (size_t i = 0; i < (size_t)B * N; i++)
        if (words[i] < 0 || words[i] >= c->classes) return ATTN_ERR_ARG;
    cap_acts a;
    cap_acts_get(m, &a);
    attn_status st;
    /* decoder input <bos> w1 .. wN, targets w1 .. wN <eos> */
    for (int b = 0; b < B; b++) {
        a.ids[b * T] = c->classes;
        for (int i = 0; i < N; i++) {
            a.ids[b * T + i + 1] = words[b * N + i];
            a.tgt[b * T + i] = words[b * N + i];
        }
        a.tgt[b * T + N] = c->classes + 1;
    }
    if ((st = cap_encode(m, &a, strips, B)) != ATTN_OK) return st;
    const size_t es = (size_t)c->max_batch * Np * D, ds = (size_t)c->max_batch * T * D;
    const float *enc = a.ex + (size_t)Le * es;
    if ((st = attn_embedding_forward(a.gd1, a.ids, m->emb, Nd, V, D)) != ATTN_OK) return st;
    attn__nmt_add_rows(a.dx, a.gd1, m->dec_pos, B, T, D);
    for (int l = 0; l < Ld; l++)
        if ((st = attn_tf_block_forward(&m->ctx, &m->dec[l], a.dec_cache + (size_t)l * a.dec_cache_n,
                                        a.dec_cache_n * sizeof(float), a.dx + (size_t)(l + 1) * ds, NULL,
                                        a.dx + (size_t)l * ds, enc, a.lens, B, T, Np, 0, 0)) != ATTN_OK)
            return st;
    const float *top = a.dx + (size_t)Ld * ds;
    if ((st = attn_linear_forward(a.logits, top, m->head_w, m->head_b, Nd, D, V)) != ATTN_OK) return st;
    if ((st = attn_softmax_xent_forward(a.losses, a.probs, a.logits, a.tgt, NULL, Nd, V)) != ATTN_OK) return st;
    double sum = 0;
    for (int i = 0; i < Nd; i++) sum += a.losses[i];
    *sum_out = sum;
    /* backward */
    memset(m->grads, 0, sizeof(float) * m->n_params);
    const float rows = (float)Bt * (float)T;
    for (int i = 0; i < Nd; i++) a.losses[i] = 1.0f / rows;          /* dloss / dloss_i */
    memset(a.logits, 0, sizeof(float) * (size_t)Nd * V);
    if ((st = attn_softmax_xent_backward(a.logits, a.losses, a.probs, a.tgt, NULL, Nd, V)) != ATTN_OK) return st;
    memset(a.gd1, 0, sizeof(float) * (size_t)Nd * D);
    if ((st = attn_linear_backward(a.gd1, m->dhead_w, m->dhead_b, a.logits, top, m->head_w, Nd, D, V)) != ATTN_OK)
        return st;
    memset(a.denc, 0, sizeof(float) * (size_t)B * Np * D);
    float *g = a.gd1, *h = a.gd2;
    for (int l = Ld - 1; l >= 0; l--) {
        memset(h, 0, sizeof(float) * (size_t)Nd * D);
        if ((st = attn_tf_block_backward(&m->ctx, &m->dec[l], a.dec_cache + (size_t)l * a.dec_cache_n,
                                         a.dec_cache_n * sizeof(float), h, a.denc, g, a.dx + (size_t)l * ds, enc,
                                         a.lens, B, T, Np, 0, 0)) != ATTN_OK)
            return st;
        float *tmp = g; g = h; h = tmp;
    }
    attn__nmt_sum_rows(m->ddec_pos, g, B, T, D);
    if ((st = attn_embedding_backward(m->demb, g, a.ids, Nd, V, D)) != ATTN_OK) return st;
    g = a.denc;
    for (int l = Le - 1; l >= 0; l--) {
        float *dst = g == a.ge1 ? a.ge2 : a.ge1;
        memset(dst, 0, sizeof(float) * (size_t)B * Np * D);
        if ((st = attn_tf_block_backward(&m->ctx, &m->enc[l], a.enc_cache + (size_t)l * a.enc_cache_n,
                                         a.enc_cache_n * sizeof(float), dst, NULL, g, a.ex + (size_t)l * es, NULL,
                                         a.lens, B, Np, Np, 0, 0)) != ATTN_OK)
            return st;
        g = dst;
    }
    attn__nmt_sum_rows(m->dpos, g, B, Np, D);
    return attn_patch_embed_backward(&m->patch, a.patch_cache, a.patch_cache_n * sizeof(float), NULL, g, strips, B);
}

attn_status attn_caption_train_step(attn_caption *m, attn_adam *opt, const float *strips, const int32_t *words, int B,
                                    float clip, float *loss) {
    if (!m || !opt) return ATTN_ERR_NULL;
    if (opt->n != m->n_params) return ATTN_ERR_SHAPE;
    attn_status st = attn_caption_loss_grad(m, strips, words, B, loss);
    if (st != ATTN_OK) return st;
    if (clip > 0.0f && (st = attn_clip_grad_norm(m->grads, m->n_params, clip, NULL)) != ATTN_OK) return st;
    return attn_adam_step(opt, m->params, m->grads);
}

static int cap_shards(const attn_caption *m) { return m->n_shards > 0 ? m->n_shards : ATTN_CAPTION_SHARDS; }

attn_status attn_caption_set_shards(attn_caption *m, int n) {
    if (!m) return ATTN_ERR_NULL;
    if (n < 1 || n > ATTN_MAX_SHARDS) return ATTN_ERR_ARG;
    if (n != cap_shards(m)) {              /* the shards' gradients are made again by the next step */
        free(m->shard_grads);
        m->shard_grads = NULL;
    }
    m->n_shards = n;
    return ATTN_OK;
}

attn_status attn_caption_train_step_part(attn_caption *m, attn_adam *opt, const float *strips, const int32_t *words,
                                         int B, float clip, int first, int count, attn_shard_combine_fn combine,
                                         void *user, float *loss) {
    if (count == 0) return attn_caption_train_step(m, opt, strips, words, B, clip, loss);
    if (!m || !opt || !m->params || !m->acts || !strips || !words) return ATTN_ERR_NULL;
    const int ns = cap_shards(m);
    if (!combine && (first != 0 || count != ns)) return ATTN_ERR_NULL;
    if (opt->n != m->n_params) return ATTN_ERR_SHAPE;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    if (isnan(clip) || count < 0 || first < 0 || count > ns - first) return ATTN_ERR_ARG;
    for (size_t i = 0; i < (size_t)B * m->cfg.items; i++)   /* every process refuses the same batch */
        if (words[i] < 0 || words[i] >= m->cfg.classes) return ATTN_ERR_ARG;
    if (!m->shard_grads) {
        m->shard_grads = malloc(sizeof(float) * m->n_params * (size_t)ns);
        if (!m->shard_grads) return ATTN_ERR_NOMEM;
    }
    const int N = m->cfg.items, P = m->cfg.rows * m->cfg.cols;
    const int per = (B + ns - 1) / ns, n_used = (B + per - 1) / per;
    float *sg[ATTN_MAX_SHARDS], losses[ATTN_MAX_SHARDS] = {0};
    attn_status st;
    for (int k = 0; k < ns; k++) sg[k] = m->shard_grads + (size_t)k * m->n_params;
    for (int k = first; k < first + count && k < n_used; k++) {
        const int lo = k * per, nb = B - lo < per ? B - lo : per;
        double sum = 0.0;
        if ((st = cap_loss_grad(m, strips + (size_t)lo * P, words + (size_t)lo * N, nb, B, &sum)) != ATTN_OK)
            return st;
        memcpy(sg[k], m->grads, sizeof(float) * m->n_params);
        losses[k] = (float)(sum / ((double)B * m->T));
    }
    float lsum = 0.0f;
    if (combine) {
        if ((st = combine(user, m->grads, m->n_params, sg, losses, first, count, n_used, &lsum)) != ATTN_OK) return st;
    } else {                                     /* every shard here: added to zeros in shard order */
        double sum = 0.0;
        memset(m->grads, 0, sizeof(float) * m->n_params);
        for (int k = 0; k < n_used; k++) {
            for (size_t i = 0; i < m->n_params; i++) m->grads[i] += sg[k][i];
            sum += losses[k];
        }
        lsum = (float)sum;
    }
    if (loss) *loss = lsum;
    if (clip > 0.0f && (st = attn_clip_grad_norm(m->grads, m->n_params, clip, NULL)) != ATTN_OK) return st;
    return attn_adam_step(opt, m->params, m->grads);
}

attn_status attn_caption_generate(attn_caption *m, int32_t *out, int *n_out, float *cross, const float *strips,
                                  int B) {
    if (!m || !m->params || !m->acts || !out || !n_out || !strips) return ATTN_ERR_NULL;
    const attn_caption_config *c = &m->cfg;
    if (B < 1 || B > c->max_batch) return ATTN_ERR_SIZE;
    const int D = c->dim, Np = m->Np, T = m->T, V = m->V, N = c->items, H = c->heads, Ld = c->dec_blocks;
    cap_acts a;
    cap_acts_get(m, &a);
    attn_status st;
    if ((st = cap_encode(m, &a, strips, B)) != ATTN_OK) return st;
    const size_t es = (size_t)c->max_batch * Np * D, TD = (size_t)T * D, SD = (size_t)Np * D;
    const int32_t len[1] = {Np};
    if (cross) memset(cross, 0, sizeof(float) * (size_t)B * N * H * Np);
    for (int b = 0; b < B; b++) {
        const float *enc = a.ex + (size_t)c->enc_blocks * es + (size_t)b * SD;
        for (int l = 0; l < Ld; l++) {     /* the encoder output projected once per block: ek, ev (Np,D) */
            float *kv = a.kv + (size_t)l * a.kv_n;
            if ((st = attn_linear_forward(kv + 2 * TD, enc, m->dec[l].w.xwk, NULL, Np, D, D)) != ATTN_OK) return st;
            if ((st = attn_linear_forward(kv + 2 * TD + SD, enc, m->dec[l].w.xwv, NULL, Np, D, D)) != ATTN_OK)
                return st;
        }
        int32_t tok = c->classes;
        n_out[b] = 0;
        for (int i = 0; i < N; i++) out[(size_t)b * N + i] = -1;
        for (int t = 0; t < T; t++) {
            float *x = a.sx, *y = a.sy;
            if ((st = attn_embedding_forward(x, &tok, m->emb, 1, V, D)) != ATTN_OK) return st;
            for (int j = 0; j < D; j++) x[j] += m->dec_pos[(size_t)t * D + j];
            for (int l = 0; l < Ld; l++) {
                float *kv = a.kv + (size_t)l * a.kv_n;
                const int last = l == Ld - 1;
                if ((st = attn_tf_block_step(&m->ctx, &m->dec[l], kv, kv + TD, kv + 2 * TD, kv + 2 * TD + SD, T, Np,
                                             t, y, last && cross ? a.wscr : NULL, x, len, a.scratch, a.work,
                                             a.work_bytes)) != ATTN_OK)
                    return st;
                float *tmp = x; x = y; y = tmp;
            }
            if ((st = attn_linear_forward(a.row, x, m->head_w, m->head_b, 1, D, V)) != ATTN_OK) return st;
            int best = 0;
            for (int v = 1; v < V; v++) if (a.row[v] > a.row[best]) best = v;
            if (best >= c->classes || t >= N) break;     /* <eos> (or <bos>), or the caption is full */
            out[(size_t)b * N + t] = best;
            n_out[b]++;
            if (cross) memcpy(cross + (((size_t)b * N + t) * H) * Np, a.wscr, sizeof(float) * (size_t)H * Np);
            tok = best;
        }
    }
    return ATTN_OK;
}

float attn_caption_item_share(const float *w, int H, int grid_rows, int grid_cols, int items, int item) {
    if (!w || H < 1 || grid_rows < 1 || grid_cols < 1 || items < 1 || grid_cols % items || item < 0 || item >= items)
        return -1.0f;
    const int wc = grid_cols / items, np = grid_rows * grid_cols;
    double s = 0;
    for (int h = 0; h < H; h++)
        for (int r = 0; r < grid_rows; r++)
            for (int cc = item * wc; cc < (item + 1) * wc; cc++) s += w[(size_t)h * np + (size_t)r * grid_cols + cc];
    return (float)(s / H);
}

attn_status attn_caption_strip(float *x, const uint8_t *const *items, int n, int rows, int cols_each, float mean,
                               float std) {
    if (!x || !items) return ATTN_ERR_NULL;
    if (n < 1 || rows < 1 || cols_each < 1 || !(std > 0.0f)) return ATTN_ERR_ARG;
    const int W = n * cols_each;
    for (int k = 0; k < n; k++) {
        if (!items[k]) return ATTN_ERR_NULL;
        for (int r = 0; r < rows; r++)
            for (int cc = 0; cc < cols_each; cc++)
                x[(size_t)r * W + (size_t)k * cols_each + cc] =
                    ((float)items[k][(size_t)r * cols_each + cc] / 255.0f - mean) / std;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
#define CAP_MAX_TENSORS (5 + 2 * ATTN_CAPTION_MAX_BLOCKS + 4)
#define CAP_N_META 12
static const char *const cap_meta_names[CAP_N_META] = {"model", "rows", "cols", "patch", "items", "classes",
                                                       "dim", "heads", "ffn", "enc_blocks", "dec_blocks",
                                                       "optimizer_t"};

static int cap_list(attn_caption *m, attn__nmt_named *t) {
    const attn_caption_config *c = &m->cfg;
    const int64_t D = c->dim, ne = (int64_t)attn_tf_block_n_params(c->dim, c->ffn, 0),
                  nd = (int64_t)attn_tf_block_n_params(c->dim, c->ffn, 1);
    int n = 0;
    char name[64];
    n = attn__nmt_add(t, n, "patch_embed.weight", m->patch.w, 2, D, (int64_t)c->patch * c->patch);
    n = attn__nmt_add(t, n, "patch_embed.bias", m->patch.b, 1, D, 0);
    n = attn__nmt_add(t, n, "pos_embed", m->pos, 2, m->Np, D);
    for (int l = 0; l < c->enc_blocks; l++) {
        snprintf(name, sizeof name, "encoder.blocks.%d", l);
        n = attn__nmt_add(t, n, name, m->enc[l].params, 1, ne, 0);
    }
    n = attn__nmt_add(t, n, "embedding.weight", m->emb, 2, m->V, D);
    n = attn__nmt_add(t, n, "dec_pos", m->dec_pos, 2, m->T, D);
    for (int l = 0; l < c->dec_blocks; l++) {
        snprintf(name, sizeof name, "decoder.blocks.%d", l);
        n = attn__nmt_add(t, n, name, m->dec[l].params, 1, nd, 0);
    }
    n = attn__nmt_add(t, n, "head.weight", m->head_w, 2, m->V, D);
    n = attn__nmt_add(t, n, "head.bias", m->head_b, 1, m->V, 0);
    return n;
}

attn_status attn_caption_save(const attn_caption *m, const attn_adam *opt, const char *const *keys,
                              const char *const *vals, int n_extra, const char *path, char *err, size_t err_size) {
    if (!m || !m->params || !path || (n_extra > 0 && (!keys || !vals))) return ATTN_ERR_NULL;
    if (n_extra < 0 || n_extra > 32) return ATTN_ERR_SIZE;
    if (opt && (opt->n != m->n_params || !opt->m)) return ATTN_ERR_SHAPE;
    attn__nmt_named t[CAP_MAX_TENSORS + 2];
    int n = cap_list((attn_caption *)m, t);
    if (opt) {
        n = attn__nmt_add(t, n, "optimizer.m", opt->m, 1, (int64_t)opt->n, 0);
        n = attn__nmt_add(t, n, "optimizer.v", opt->v, 1, (int64_t)opt->n, 0);
    }
    const attn_caption_config *c = &m->cfg;
    const int v[CAP_N_META - 2] = {c->rows, c->cols, c->patch, c->items, c->classes, c->dim, c->heads, c->ffn,
                                   c->enc_blocks, c->dec_blocks};
    char mv[CAP_N_META][32];
    const char *mk[CAP_N_META + 32], *mp[CAP_N_META + 32];
    snprintf(mv[0], 32, "caption");
    for (int i = 1; i < CAP_N_META - 1; i++) snprintf(mv[i], 32, "%d", v[i - 1]);
    snprintf(mv[CAP_N_META - 1], 32, "%lld", opt ? (long long)opt->t : 0LL);
    for (int i = 0; i < CAP_N_META; i++) { mk[i] = cap_meta_names[i]; mp[i] = mv[i]; }
    for (int i = 0; i < n_extra; i++) { mk[CAP_N_META + i] = keys[i]; mp[CAP_N_META + i] = vals[i]; }
    return attn__nmt_save(path, t, n, mk, mp, CAP_N_META + n_extra, err, err_size);
}

attn_status attn_caption_load(attn_caption *m, attn_adam *opt, const attn_ctx *ctx, const char *path, int max_batch,
                              char *err, size_t err_size) {
    if (!m || !path) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    const char *kind = attn_st_meta(&f, "model");
    if (!kind || strcmp(kind, "caption") != 0) {
        attn__set_err(err, err_size, "%s: not a captioning checkpoint (metadata 'model' is %s, expected caption)",
                      path, kind ? kind : "missing");
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    double v[CAP_N_META];
    if ((st = attn__nmt_meta_numbers(&f, path, cap_meta_names + 1, CAP_N_META - 1, v + 1, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    attn_caption_config c = {.rows = (int)v[1], .cols = (int)v[2], .patch = (int)v[3], .items = (int)v[4],
                             .classes = (int)v[5], .dim = (int)v[6], .heads = (int)v[7], .ffn = (int)v[8],
                             .enc_blocks = (int)v[9], .dec_blocks = (int)v[10],
                             .max_batch = max_batch > 1 ? max_batch : 1};
    if ((st = cap_alloc(m, ctx, &c)) != ATTN_OK) {
        attn__set_err(err, err_size, "%s: the configuration in the metadata is invalid (%s)", path,
                      attn_status_string(st));
        attn_st_free(&f);
        return st == ATTN_ERR_NOMEM ? st : ATTN_ERR_FORMAT;
    }
    attn__nmt_named t[CAP_MAX_TENSORS];
    int n = cap_list(m, t);
    st = attn__nmt_read_tensors(&f, path, t, n, err, err_size);
    if (st == ATTN_OK && opt)
        st = attn__nmt_read_optimizer(&f, path, opt, m->n_params, (int64_t)v[CAP_N_META - 1], err, err_size);
    attn_st_free(&f);
    if (st != ATTN_OK) attn_caption_free(m);
    return st;
}
