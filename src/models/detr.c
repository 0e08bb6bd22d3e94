/*
 * detr.c — the detector of attn/detr.h: patch embedding and learned positions, encoder blocks, a decoder of
 * learned object queries (transformer.c's decoder blocks with an unmasked self-attention, every attention
 * through attn_sdpa_*), a class head and a box MLP with a sigmoid; the sharded forward, the set loss on the
 * whole batch, the sharded backward, and checkpoints.
 *
 * Tensors are batch-major: the encoder stream (B,Np,D), the decoder stream (B,Q,D). A shard is an
 * attn_detr of its own (cfg.max_batch its share) whose params are the model's and whose grads and acts
 * are its own.
 */
#include "internal.h"
#include "attn/detr.h"
#include "layers/util.h"
#include "nmt_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void attn_detr_config_default(attn_detr_config *c) {
    if (!c) return;
    *c = (attn_detr_config){.image = 56, .patch = 7, .queries = 8, .classes = 10, .dim = 96, .heads = 4,
                            .ffn = 192, .enc_blocks = 2, .dec_blocks = 3, .max_batch = 64};
}

/* The patch embedding's kernel: P unless overlapping. */
static int detr_kernel(const attn_detr_config *c) { return c->patch_kernel ? c->patch_kernel : c->patch; }

attn_status attn_detr_config_check(const attn_detr_config *c) {
    if (!c) return ATTN_ERR_NULL;
    if (c->image < 1 || c->patch < 1 || c->queries < 1 || c->classes < 1 || c->dim < 1 || c->heads < 1 ||
        c->ffn < 1 || c->enc_blocks < 0 || c->dec_blocks < 1 || c->max_batch < 1 ||
        c->enc_blocks > ATTN_DETR_MAX_BLOCKS || c->dec_blocks > ATTN_DETR_MAX_BLOCKS || c->image > 4096 ||
        c->queries > ATTN_TF_MAX_LEN || c->classes > 65536 || c->dim > 4096 || c->ffn > 16384 ||
        c->max_batch > 65536)
        return ATTN_ERR_SIZE;
    if (c->image % c->patch || c->dim % c->heads) return ATTN_ERR_SHAPE;
    const attn_status ks = attn__patch_kernel_check(c->patch, detr_kernel(c));
    if (ks != ATTN_OK) return ks;
    if ((int64_t)detr_kernel(c) * detr_kernel(c) > 65536) return ATTN_ERR_SIZE;
    const int64_t np = (int64_t)(c->image / c->patch) * (c->image / c->patch);
    const int64_t rows = np > c->queries ? np : c->queries, w = c->ffn > c->dim ? c->ffn : c->dim;
    if (np > ATTN_TF_MAX_LEN || rows * c->max_batch * w > INT32_MAX ||
        (int64_t)c->max_batch * c->queries * (c->classes + 1) > INT32_MAX)
        return ATTN_ERR_SIZE;
    return ATTN_OK;
}

/* Parameter views, in the checkpoint's order; p NULL only counts. */
static size_t detr_layout(attn_detr *m, float *p, float *g) {
    const attn_detr_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, ne = attn_tf_block_n_params(c->dim, c->ffn, 0),
                 nd = attn_tf_block_n_params(c->dim, c->ffn, 1), npe = attn_patch_embed_n_params(1, detr_kernel(c), c->dim);
    size_t off = 0;
    if (p) attn_patch_embed_bind_kernel(&m->patch, 1, c->image, c->image, c->patch, detr_kernel(c), c->dim, p, g);
    off += npe;
#define VIEW(name, dname, n) do { m->name = p ? p + off : NULL; m->dname = p && g ? g + off : NULL; off += (n); } while (0)
    VIEW(pos, dpos, (size_t)m->Np * D);
    for (int l = 0; l < c->enc_blocks; l++, off += ne)
        if (p) attn_tf_block_bind(&m->enc[l], c->dim, c->ffn, c->heads, 0, 0.0f, p + off, g ? g + off : NULL);
    VIEW(query, dquery, (size_t)c->queries * D);
    for (int l = 0; l < c->dec_blocks; l++, off += nd)
        if (p) {
            attn_tf_block_bind(&m->dec[l], c->dim, c->ffn, c->heads, 1, 0.0f, p + off, g ? g + off : NULL);
            m->dec[l].full_self = 1;
        }
    VIEW(cls_w, dcls_w, (size_t)m->K1 * D);
    VIEW(cls_b, dcls_b, (size_t)m->K1);
    VIEW(fc1_w, dfc1_w, D * D);
    VIEW(fc1_b, dfc1_b, D);
    VIEW(fc2_w, dfc2_w, 4 * D);
    VIEW(fc2_b, dfc2_b, 4);
#undef VIEW
    return off;
}

/* A shard's activations for Bm canvases (Ne = Bm·Np, Nd = Bm·Q), each piece a multiple of 16 floats:
 * lens (Bm); patch cache; ex (Le+1,Ne,D) encoder stream; dx (Ld+1,Nd,D) decoder stream; enc caches, dec
 * caches; hpre hrel (Ld,Nd,D) the box MLP's hidden layer before and after the ReLU after every decoder
 * block; ge1 ge2 denc (Ne,D); gd1 gd2 gh (Nd,D); dz (Nd,4). */
typedef struct detr_acts {
    int32_t *lens;
    float *patch_cache, *ex, *dx, *enc_cache, *dec_cache, *hpre, *hrel, *ge1, *ge2, *denc, *gd1, *gd2, *gh, *dz;
    size_t patch_cache_n, enc_cache_n, dec_cache_n, total;
} detr_acts;

static attn_status detr_carve(const attn_detr *m, float *base, detr_acts *a) {
    const attn_detr_config *c = &m->cfg;
    const size_t Bm = (size_t)c->max_batch, Np = (size_t)m->Np, Q = (size_t)c->queries, D = (size_t)c->dim,
                 Ne = Bm * Np, Nd = Bm * Q, Le = (size_t)c->enc_blocks, Ld = (size_t)c->dec_blocks;
    size_t off = 0, pb = 0, eb = 0, db = 0;
    attn_status st;
    if ((st = attn_patch_embed_cache_bytes(&m->patch, c->max_batch, &pb)) != ATTN_OK) return st;
    if (Le && (st = attn_tf_block_cache_bytes(&m->ctx, &m->enc[0], c->max_batch, m->Np, m->Np, &eb)) != ATTN_OK)
        return st;
    if ((st = attn_tf_block_cache_bytes(&m->ctx, &m->dec[0], c->max_batch, c->queries, m->Np, &db)) != ATTN_OK)
        return st;
    a->patch_cache_n = (pb / sizeof(float) + 16 + 15) & ~(size_t)15;
    a->enc_cache_n = (eb / sizeof(float) + 15) & ~(size_t)15;
    a->dec_cache_n = (db / sizeof(float) + 15) & ~(size_t)15;
#define TAKE(ptr, n) do { a->ptr = base ? base + off : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
    a->lens = base ? (int32_t *)base : NULL;
    off += (Bm + 15) & ~(size_t)15;
    TAKE(patch_cache, a->patch_cache_n);
    TAKE(ex, (Le + 1) * Ne * D); TAKE(dx, (Ld + 1) * Nd * D);
    TAKE(enc_cache, Le * a->enc_cache_n); TAKE(dec_cache, Ld * a->dec_cache_n);
    TAKE(hpre, Ld * Nd * D); TAKE(hrel, Ld * Nd * D);
    TAKE(ge1, Ne * D); TAKE(ge2, Ne * D); TAKE(denc, Ne * D); TAKE(gd1, Nd * D); TAKE(gd2, Nd * D);
    TAKE(gh, Nd * D);
    TAKE(dz, Nd * 4);
#undef TAKE
    a->total = off + 16;
    return ATTN_OK;
}

static void detr_acts_get(const attn_detr *m, detr_acts *a) {
    detr_carve(m, NULL, a);                                      /* sizes only: checked at allocation */
    detr_carve(m, (float *)(((uintptr_t)m->acts + 63) & ~(uintptr_t)63), a);
}

/* The whole model's buffers for max_batch Bm and Ld decoder blocks: logits dlogits (Ld,Bm·Q,K+1), boxes
 * dboxes (Ld,Bm·Q,4) (the heads after every block, for the auxiliary losses), match (Bm·Q ints), the
 * criterion's workspace (Q queries, at most Q targets). */
typedef struct detr_top {
    float *logits, *dlogits, *boxes, *dboxes;
    int *match;
    void *work;
    size_t work_bytes, total;
} detr_top;

static attn_status detr_top_carve(const attn_detr *m, float *base, detr_top *t) {
    const size_t Nq = (size_t)m->cfg.max_batch * m->cfg.queries * m->cfg.dec_blocks, K1 = (size_t)m->K1;
    attn_status st = attn_detr_loss_work_bytes(&m->crit, m->cfg.queries, m->cfg.queries, &t->work_bytes);
    if (st != ATTN_OK) return st;
    size_t off = 0;
#define TAKE(ptr, type, n) do { t->ptr = base ? (type *)(base + off) : NULL; off += ((n) + 15) & ~(size_t)15; } while (0)
    TAKE(logits, float, Nq * K1); TAKE(dlogits, float, Nq * K1); TAKE(boxes, float, Nq * 4);
    TAKE(dboxes, float, Nq * 4); TAKE(match, int, Nq / (size_t)m->cfg.dec_blocks);
#undef TAKE
    t->work = base ? (void *)(base + off) : NULL;
    t->total = off + (t->work_bytes + sizeof(float) - 1) / sizeof(float) + 16;
    return ATTN_OK;
}

static void detr_shard_free(void *p) {
    attn_detr *s = p;
    free(s->grads);                      /* a shard's params are the model's */
    free(s->acts);
}

static void detr_free_shards(attn_detr *m) {
    attn__shards_free(m->shards, m->n_shards, sizeof *m->shards, detr_shard_free);
    m->shards = NULL;
    m->n_shards = 0;
}

void attn_detr_free(attn_detr *m) {
    if (!m) return;
    detr_free_shards(m);
    free(m->params);
    free(m->acts);
    memset(m, 0, sizeof *m);
}

static attn_status detr_alloc(attn_detr *m, const attn_ctx *ctx, const attn_detr_config *cfg) {
    attn_status st = attn_detr_config_check(cfg);
    if (st != ATTN_OK) return st;
    memset(m, 0, sizeof *m);
    const attn_kernels *kern;
    if ((st = attn__ctx_resolve(ctx, &m->ctx, &kern)) != ATTN_OK) return st;
    m->cfg = *cfg;
    m->Np = (cfg->image / cfg->patch) * (cfg->image / cfg->patch);
    m->K1 = cfg->classes + 1;
    attn_detr_criterion_default(&m->crit, cfg->classes);
    m->n_params = detr_layout(m, NULL, NULL);
    m->params = calloc(2 * m->n_params, sizeof(float));
    if (!m->params) return ATTN_ERR_NOMEM;
    m->grads = m->params + m->n_params;
    detr_layout(m, m->params, m->grads);
    detr_top t;
    if ((st = detr_top_carve(m, NULL, &t)) != ATTN_OK) { attn_detr_free(m); return st; }
    m->acts_floats = t.total;
    m->acts = calloc(t.total, sizeof(float));
    if (!m->acts) { attn_detr_free(m); return ATTN_ERR_NOMEM; }
    if ((st = attn_detr_set_shards(m, ATTN_DETR_SHARDS)) != ATTN_OK) { attn_detr_free(m); return st; }
    return ATTN_OK;
}

/* A shard: a view of the model's parameters with its own gradients and activations for ceil(max_batch/ns)
 * rows, run on one thread (the shards themselves run in parallel). */
static attn_status detr_shard_init(void *model, void *p, int ns) {
    const attn_detr *m = model;
    attn_detr *s = p;
    s->cfg = m->cfg;
    s->cfg.max_batch = (m->cfg.max_batch + ns - 1) / ns;
    s->Np = m->Np;
    s->K1 = m->K1;
    s->crit = m->crit;
    s->ctx = m->ctx;
    s->ctx.threads = 1;
    s->n_params = m->n_params;
    s->params = m->params;
    if (!(s->grads = calloc(m->n_params, sizeof(float)))) return ATTN_ERR_NOMEM;
    detr_layout(s, s->params, s->grads);
    detr_acts a;
    attn_status st = detr_carve(s, NULL, &a);
    if (st != ATTN_OK) return st;
    s->acts_floats = a.total;
    return (s->acts = calloc(a.total, sizeof(float))) ? ATTN_OK : ATTN_ERR_NOMEM;
}

attn_status attn_detr_set_shards(attn_detr *m, int ns) {
    if (!m || !m->params) return ATTN_ERR_NULL;
    void *shards = m->shards;
    attn_status st = attn__shards_replace(m, &shards, &m->n_shards, sizeof *m->shards, ns, detr_shard_init,
                                          detr_shard_free);
    m->shards = shards;
    return st;
}

attn_status attn_detr_init(attn_detr *m, const attn_ctx *ctx, const attn_detr_config *cfg, uint64_t seed) {
    if (!m || !cfg) return ATTN_ERR_NULL;
    attn_status st = detr_alloc(m, ctx, cfg);
    if (st != ATTN_OK) return st;
    const size_t D = (size_t)cfg->dim;
    attn_rng r;
    attn_rng_seed(&r, seed);
    attn_patch_embed_init_weights(&m->patch, &r);
    attn__nmt_normal(&r, m->pos, (size_t)m->Np * D, 0.02f);
    for (int l = 0; l < cfg->enc_blocks; l++) attn_tf_block_init_weights(&m->enc[l], &r);
    attn__nmt_normal(&r, m->query, (size_t)cfg->queries * D, 1.0f);
    for (int l = 0; l < cfg->dec_blocks; l++) attn_tf_block_init_weights(&m->dec[l], &r);
    attn__nmt_xavier(&r, m->cls_w, m->K1, cfg->dim);
    attn__nmt_xavier(&r, m->fc1_w, cfg->dim, cfg->dim);
    attn__nmt_xavier(&r, m->fc2_w, 4, cfg->dim);
    memset(m->cls_b, 0, sizeof(float) * (size_t)m->K1);
    memset(m->fc1_b, 0, sizeof(float) * D);
    memset(m->fc2_b, 0, sizeof(float) * 4);
    return ATTN_OK;
}

/* The heads on a decoder stream dec (Nd,D): logits (Nd,K+1), boxes (Nd,4) after the sigmoid; hpre, hrel
 * (Nd,D) keep the box MLP's hidden layer for the backward. */
static attn_status heads_forward(const attn_detr *s, const float *dec, int Nd, float *logits, float *boxes, float *hpre,
                                 float *hrel) {
    const int D = s->cfg.dim;
    attn_status st;
    if ((st = attn_linear_forward(logits, dec, s->cls_w, s->cls_b, Nd, D, s->K1)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(hpre, dec, s->fc1_w, s->fc1_b, Nd, D, D)) != ATTN_OK) return st;
    for (size_t i = 0; i < (size_t)Nd * D; i++) hrel[i] = hpre[i] > 0.0f ? hpre[i] : 0.0f;
    if ((st = attn_linear_forward(boxes, hrel, s->fc2_w, s->fc2_b, Nd, D, 4)) != ATTN_OK) return st;
    for (size_t i = 0; i < (size_t)Nd * 4; i++) boxes[i] = 1.0f / (1.0f + expf(-boxes[i]));
    return ATTN_OK;
}

/* The heads' backward: adds to g (Nd,D) the gradient of dec from dlogits and dboxes (the gradients of the
 * logits and of the boxes after the sigmoid); the heads' parameter gradients accumulate. gh, dz scratch. */
static attn_status heads_backward(attn_detr *s, float *g, const float *dec, int Nd, const float *dlogits,
                                  const float *boxes, const float *dboxes, const float *hpre, const float *hrel,
                                  float *gh, float *dz) {
    const int D = s->cfg.dim;
    attn_status st;
    for (size_t i = 0; i < (size_t)Nd * 4; i++) dz[i] = dboxes[i] * boxes[i] * (1.0f - boxes[i]);
    memset(gh, 0, sizeof(float) * (size_t)Nd * D);
    if ((st = attn_linear_backward(gh, s->dfc2_w, s->dfc2_b, dz, hrel, s->fc2_w, Nd, D, 4)) != ATTN_OK) return st;
    for (size_t i = 0; i < (size_t)Nd * D; i++)
        if (!(hpre[i] > 0.0f)) gh[i] = 0.0f;
    if ((st = attn_linear_backward(g, s->dfc1_w, s->dfc1_b, gh, dec, s->fc1_w, Nd, D, D)) != ATTN_OK) return st;
    return attn_linear_backward(g, s->dcls_w, s->dcls_b, dlogits, dec, s->cls_w, Nd, D, s->K1);
}

/* One shard's forward over B canvases: the heads after the last `layers` decoder blocks (1 for inference,
 * dec_blocks for the auxiliary losses), head j's logits (B,Q,K+1) at logits + j·stride·(K+1) and boxes
 * (B,Q,4) at boxes + j·stride·4 (stride: the whole batch's rows B_all·Q); cross (B,H,Q,Np) or NULL. */
static attn_status shard_forward(attn_detr *s, const float *x, int B, float *logits, float *boxes, float *cross,
                                 int layers, size_t stride) {
    const attn_detr_config *c = &s->cfg;
    const int D = c->dim, Np = s->Np, Q = c->queries, Le = c->enc_blocks, Ld = c->dec_blocks, Nd = B * Q;
    const size_t es = (size_t)c->max_batch * Np * D, ds = (size_t)c->max_batch * Q * D;
    detr_acts a;
    detr_acts_get(s, &a);
    attn_status st;
    for (int b = 0; b < B; b++) a.lens[b] = Np;
    if ((st = attn_patch_embed_forward(&s->patch, a.patch_cache, a.patch_cache_n * sizeof(float), a.ge1, x, B)) !=
        ATTN_OK)
        return st;
    attn__nmt_add_rows(a.ex, a.ge1, s->pos, B, Np, D);
    for (int l = 0; l < Le; l++)
        if ((st = attn_tf_block_forward(&s->ctx, &s->enc[l], a.enc_cache + (size_t)l * a.enc_cache_n,
                                        a.enc_cache_n * sizeof(float), a.ex + (size_t)(l + 1) * es, NULL,
                                        a.ex + (size_t)l * es, NULL, a.lens, B, Np, Np, 0, 0)) != ATTN_OK)
            return st;
    const float *enc = a.ex + (size_t)Le * es;
    for (int b = 0; b < B; b++) memcpy(a.dx + (size_t)b * Q * D, s->query, sizeof(float) * (size_t)Q * D);
    for (int l = 0; l < Ld; l++)
        if ((st = attn_tf_block_forward(&s->ctx, &s->dec[l], a.dec_cache + (size_t)l * a.dec_cache_n,
                                        a.dec_cache_n * sizeof(float), a.dx + (size_t)(l + 1) * ds,
                                        l == Ld - 1 ? cross : NULL, a.dx + (size_t)l * ds, enc, a.lens, B, Q, Np, 0,
                                        0)) != ATTN_OK)
            return st;
    for (int j = 0; j < layers; j++) {
        const int l = Ld - layers + j;
        if ((st = heads_forward(s, a.dx + (size_t)(l + 1) * ds, Nd, logits + (size_t)j * stride * s->K1,
                                boxes + (size_t)j * stride * 4, a.hpre + (size_t)l * ds, a.hrel + (size_t)l * ds)) !=
            ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

/* The backward of the shard's last forward (same x, B, layers, stride): its gradients (s->grads) set from
 * dlogits and dboxes, the gradients of that forward's logits and boxes, laid out as they were. */
static attn_status shard_backward(attn_detr *s, const float *x, int B, const float *dlogits, const float *boxes,
                                  const float *dboxes, int layers, size_t stride) {
    const attn_detr_config *c = &s->cfg;
    const int D = c->dim, Np = s->Np, Q = c->queries, Le = c->enc_blocks, Ld = c->dec_blocks, Nd = B * Q;
    const size_t es = (size_t)c->max_batch * Np * D, ds = (size_t)c->max_batch * Q * D;
    detr_acts a;
    detr_acts_get(s, &a);
    attn_status st;
    memset(s->grads, 0, sizeof(float) * s->n_params);
    const float *enc = a.ex + (size_t)Le * es;
    memset(a.gd1, 0, sizeof(float) * (size_t)Nd * D);
    memset(a.denc, 0, sizeof(float) * (size_t)B * Np * D);
    float *g = a.gd1, *h = a.gd2;
    for (int l = Ld - 1; l >= 0; l--) {
        const int j = l - (Ld - layers);     /* g: the gradient of block l's output; add its heads' */
        if (j >= 0 && (st = heads_backward(s, g, a.dx + (size_t)(l + 1) * ds, Nd, dlogits + (size_t)j * stride * s->K1,
                                           boxes + (size_t)j * stride * 4, dboxes + (size_t)j * stride * 4,
                                           a.hpre + (size_t)l * ds, a.hrel + (size_t)l * ds, a.gh, a.dz)) != ATTN_OK)
            return st;
        memset(h, 0, sizeof(float) * (size_t)Nd * D);
        if ((st = attn_tf_block_backward(&s->ctx, &s->dec[l], a.dec_cache + (size_t)l * a.dec_cache_n,
                                         a.dec_cache_n * sizeof(float), h, a.denc, g, a.dx + (size_t)l * ds, enc,
                                         a.lens, B, Q, Np, 0, 0)) != ATTN_OK)
            return st;
        float *tmp = g; g = h; h = tmp;
    }
    attn__nmt_sum_rows(s->dquery, g, B, Q, D);
    g = a.denc;
    for (int l = Le - 1; l >= 0; l--) {
        float *dst = g == a.ge1 ? a.ge2 : a.ge1;
        memset(dst, 0, sizeof(float) * (size_t)B * Np * D);
        if ((st = attn_tf_block_backward(&s->ctx, &s->enc[l], a.enc_cache + (size_t)l * a.enc_cache_n,
                                         a.enc_cache_n * sizeof(float), dst, NULL, g, a.ex + (size_t)l * es, NULL,
                                         a.lens, B, Np, Np, 0, 0)) != ATTN_OK)
            return st;
        g = dst;
    }
    attn__nmt_sum_rows(s->dpos, g, B, Np, D);
    return attn_patch_embed_backward(&s->patch, a.patch_cache, a.patch_cache_n * sizeof(float), NULL, g, x, B);
}

/* Shards [first, first + count) over a batch: forward (backward 0) into logits, boxes, cross; or backward
 * from the model's dlogits, dboxes, the shards' gradients summed into m->grads in shard order when they
 * are all here (count n_shards), left in the shards otherwise. */
static attn_status run_shards(attn_detr *m, const float *x, int B, int backward, float *logits, float *boxes,
                              float *cross, const float *dlogits, const float *dboxes, int layers, int first,
                              int count) {
    const int ns = m->n_shards, per = (B + ns - 1) / ns, Q = m->cfg.queries, K1 = m->K1;
    const size_t img = (size_t)m->cfg.image * m->cfg.image, cq = (size_t)m->cfg.heads * Q * m->Np;
    attn_status sts[ATTN_MAX_SHARDS];
    int nth = m->ctx.threads > 0 ? m->ctx.threads : attn_get_num_threads();
    nth = nth < 1 ? 1 : nth > ns ? ns : nth;
    (void)nth;
    ATTN_OMP(omp parallel for num_threads(nth) schedule(static, 1) if (nth > 1))
    for (int k = 0; k < ns; k++) {
        const int lo = k * per, n = B - lo < per ? B - lo : per;
        const size_t q0 = (size_t)lo * Q;
        sts[k] = ATTN_OK;
        if (n <= 0 || k < first || k >= first + count) continue;
        if (backward)
            sts[k] = shard_backward(&m->shards[k], x + (size_t)lo * img, n, dlogits + q0 * K1, boxes + q0 * 4,
                                    dboxes + q0 * 4, layers, (size_t)B * Q);
        else
            sts[k] = shard_forward(&m->shards[k], x + (size_t)lo * img, n, logits + q0 * K1, boxes + q0 * 4,
                                   cross ? cross + (size_t)lo * cq : NULL, layers, (size_t)B * Q);
    }
    for (int k = 0; k < ns; k++)
        if (sts[k] != ATTN_OK) return sts[k];
    if (backward && count == ns) {
        memset(m->grads, 0, sizeof(float) * m->n_params);
        for (int k = 0; k < ns; k++) {
            if (k * per >= B) continue;
            const float *g = m->shards[k].grads;
            for (size_t i = 0; i < m->n_params; i++) m->grads[i] += g[i];
        }
    }
    return ATTN_OK;
}

attn_status attn_detr_forward(attn_detr *m, float *logits, float *boxes, float *cross, const float *canvases, int B) {
    if (!m || !m->params || !m->shards || !logits || !boxes || !canvases) return ATTN_ERR_NULL;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    return run_shards(m, canvases, B, 0, logits, boxes, cross, NULL, NULL, 1, 0, m->n_shards);
}

/* The loss and gradient with shards [first, first + count) here: their forward, gather (when some are
 * elsewhere) the other shards' logits and boxes, the criterion on the whole batch, their backward; then
 * the shards' gradients summed here in shard order, or by combine. */
static attn_status detr_loss_grad_part(attn_detr *m, const float *canvases, const int *n_targets, const int *labels,
                                       const float *tboxes, int B, float *loss, float *losses, int first, int count,
                                       attn_detr_gather_fn gather, attn_shard_combine_fn combine, void *user) {
    if (!m || !m->params || !m->shards || !canvases || !n_targets || !loss) return ATTN_ERR_NULL;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    for (int b = 0; b < B; b++)
        if (n_targets[b] < 0 || n_targets[b] > m->cfg.queries) return ATTN_ERR_ARG;
    const int ns = m->n_shards, per = (B + ns - 1) / ns, n_used = (B + per - 1) / per, Q = m->cfg.queries;
    detr_top t;
    detr_top_carve(m, NULL, &t);
    detr_top_carve(m, (float *)(((uintptr_t)m->acts + 63) & ~(uintptr_t)63), &t);
    const int L = m->crit.aux ? m->cfg.dec_blocks : 1;
    const size_t lk = (size_t)B * Q * m->K1, lb = (size_t)B * Q * 4;
    attn_status st = run_shards(m, canvases, B, 0, t.logits, t.boxes, NULL, NULL, NULL, L, first, count);
    if (st != ATTN_OK) return st;
    for (int j = 0; j < L && count < ns; j++)
        if ((st = gather(user, t.logits + j * lk, (size_t)Q * m->K1, B, per, first, count)) != ATTN_OK ||
            (st = gather(user, t.boxes + j * lb, (size_t)Q * 4, B, per, first, count)) != ATTN_OK)
            return st;
    /* the set loss after each of the last L decoder blocks, each matched on its own, summed in block order */
    float ls[3], total = 0.0f;
    for (int j = 0; j < L; j++) {
        float lj;
        if ((st = attn_detr_loss(&m->crit, &lj, ls, t.match, t.dlogits + j * lk, t.dboxes + j * lb, 1.0f,
                                 t.logits + j * lk, t.boxes + j * lb, n_targets, labels, tboxes, B, m->cfg.queries,
                                 t.work, t.work_bytes)) != ATTN_OK)
            return st;
        total += lj;
    }
    *loss = total;
    if (losses) memcpy(losses, ls, sizeof ls);
    if ((st = run_shards(m, canvases, B, 1, NULL, t.boxes, NULL, t.dlogits, t.dboxes, L, first, count)) != ATTN_OK)
        return st;
    if (count == ns) return ATTN_OK;
    /* the loss is the batch's, the same on every process: the shards carry none of it */
    float *sg[ATTN_MAX_SHARDS], zero[ATTN_MAX_SHARDS] = {0}, unused = 0.0f;
    for (int k = 0; k < ns; k++) sg[k] = m->shards[k].grads;
    return combine(user, m->grads, m->n_params, sg, zero, first, count, n_used, &unused);
}

attn_status attn_detr_loss_grad(attn_detr *m, const float *canvases, const int *n_targets, const int *labels,
                                const float *tboxes, int B, float *loss, float *losses) {
    return detr_loss_grad_part(m, canvases, n_targets, labels, tboxes, B, loss, losses, 0, m ? m->n_shards : 0,
                               NULL, NULL, NULL);
}

attn_status attn_detr_train_step(attn_detr *m, attn_adam *opt, const float *canvases, const int *n_targets,
                                 const int *labels, const float *tboxes, int B, float clip, float *loss,
                                 float *losses) {
    if (!m || !opt) return ATTN_ERR_NULL;
    if (opt->n != m->n_params) return ATTN_ERR_SHAPE;
    if (isnan(clip)) return ATTN_ERR_ARG;
    float l;
    attn_status st = attn_detr_loss_grad(m, canvases, n_targets, labels, tboxes, B, &l, losses);
    if (st != ATTN_OK) return st;
    if (loss) *loss = l;
    if (clip > 0.0f && (st = attn_clip_grad_norm(m->grads, m->n_params, clip, NULL)) != ATTN_OK) return st;
    return attn_adam_step(opt, m->params, m->grads);
}

attn_status attn_detr_train_step_part(attn_detr *m, attn_adam *opt, const float *canvases, const int *n_targets,
                                      const int *labels, const float *tboxes, int B, float clip, int first, int count,
                                      attn_detr_gather_fn gather, attn_shard_combine_fn combine, void *user,
                                      float *loss, float *losses) {
    if (count == 0) return attn_detr_train_step(m, opt, canvases, n_targets, labels, tboxes, B, clip, loss, losses);
    if (!m || !opt || !gather || !combine) return ATTN_ERR_NULL;
    if (opt->n != m->n_params) return ATTN_ERR_SHAPE;
    if (isnan(clip) || count < 0 || first < 0 || count > m->n_shards - first) return ATTN_ERR_ARG;
    float l;
    attn_status st = detr_loss_grad_part(m, canvases, n_targets, labels, tboxes, B, &l, losses, first, count, gather,
                                         combine, user);
    if (st != ATTN_OK) return st;
    if (loss) *loss = l;
    if (clip > 0.0f && (st = attn_clip_grad_norm(m->grads, m->n_params, clip, NULL)) != ATTN_OK) return st;
    return attn_adam_step(opt, m->params, m->grads);
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
#define DETR_MAX_TENSORS (4 + 2 * ATTN_DETR_MAX_BLOCKS + 6)
#define DETR_N_META 11
static const char *const detr_meta_names[DETR_N_META] = {"model", "image", "patch", "queries", "classes", "dim",
                                                         "heads", "ffn", "enc_blocks", "dec_blocks", "optimizer_t"};

static int detr_list(attn_detr *m, attn__nmt_named *t) {
    const attn_detr_config *c = &m->cfg;
    const int64_t D = c->dim, ne = (int64_t)attn_tf_block_n_params(c->dim, c->ffn, 0),
                  nd = (int64_t)attn_tf_block_n_params(c->dim, c->ffn, 1);
    int n = 0;
    char name[64];
    n = attn__nmt_add(t, n, "patch_embed.weight", m->patch.w, 2, D, (int64_t)detr_kernel(c) * detr_kernel(c));
    n = attn__nmt_add(t, n, "patch_embed.bias", m->patch.b, 1, D, 0);
    n = attn__nmt_add(t, n, "pos_embed", m->pos, 2, m->Np, D);
    for (int l = 0; l < c->enc_blocks; l++) {
        snprintf(name, sizeof name, "encoder.blocks.%d", l);
        n = attn__nmt_add(t, n, name, m->enc[l].params, 1, ne, 0);
    }
    n = attn__nmt_add(t, n, "query_embed", m->query, 2, c->queries, D);
    for (int l = 0; l < c->dec_blocks; l++) {
        snprintf(name, sizeof name, "decoder.blocks.%d", l);
        n = attn__nmt_add(t, n, name, m->dec[l].params, 1, nd, 0);
    }
    n = attn__nmt_add(t, n, "class_head.weight", m->cls_w, 2, m->K1, D);
    n = attn__nmt_add(t, n, "class_head.bias", m->cls_b, 1, m->K1, 0);
    n = attn__nmt_add(t, n, "box_head.fc1.weight", m->fc1_w, 2, D, D);
    n = attn__nmt_add(t, n, "box_head.fc1.bias", m->fc1_b, 1, D, 0);
    n = attn__nmt_add(t, n, "box_head.fc2.weight", m->fc2_w, 2, 4, D);
    n = attn__nmt_add(t, n, "box_head.fc2.bias", m->fc2_b, 1, 4, 0);
    return n;
}

attn_status attn_detr_save(const attn_detr *m, const attn_adam *opt, const char *const *keys,
                           const char *const *vals, int n_extra, const char *path, char *err, size_t err_size) {
    if (!m || !m->params || !path || (n_extra > 0 && (!keys || !vals))) return ATTN_ERR_NULL;
    if (n_extra < 0 || n_extra > 32) return ATTN_ERR_SIZE;
    if (opt && (opt->n != m->n_params || !opt->m)) return ATTN_ERR_SHAPE;
    attn__nmt_named t[DETR_MAX_TENSORS + 2];
    int n = detr_list((attn_detr *)m, t);
    if (opt) {
        n = attn__nmt_add(t, n, "optimizer.m", opt->m, 1, (int64_t)opt->n, 0);
        n = attn__nmt_add(t, n, "optimizer.v", opt->v, 1, (int64_t)opt->n, 0);
    }
    const attn_detr_config *c = &m->cfg;
    const int v[DETR_N_META - 2] = {c->image, c->patch, c->queries, c->classes, c->dim, c->heads, c->ffn,
                                    c->enc_blocks, c->dec_blocks};
    char mv[DETR_N_META + 1][32];
    const char *mk[DETR_N_META + 1 + 32], *mp[DETR_N_META + 1 + 32];
    snprintf(mv[0], 32, "detr");
    for (int i = 1; i < DETR_N_META - 1; i++) snprintf(mv[i], 32, "%d", v[i - 1]);
    snprintf(mv[DETR_N_META - 1], 32, "%lld", opt ? (long long)opt->t : 0LL);
    for (int i = 0; i < DETR_N_META; i++) { mk[i] = detr_meta_names[i]; mp[i] = mv[i]; }
    int nm = DETR_N_META;
    if (detr_kernel(c) != c->patch) {                  /* only then: a plain detector's file keeps its bytes */
        snprintf(mv[DETR_N_META], 32, "%d", c->patch_kernel);
        mk[nm] = "patch_kernel";                        /* missing in older checkpoints: P */
        mp[nm++] = mv[DETR_N_META];
    }
    for (int i = 0; i < n_extra; i++) { mk[nm + i] = keys[i]; mp[nm + i] = vals[i]; }
    return attn__nmt_save(path, t, n, mk, mp, nm + n_extra, err, err_size);
}

attn_status attn_detr_load(attn_detr *m, attn_adam *opt, const attn_ctx *ctx, const char *path, int max_batch,
                           char *err, size_t err_size) {
    if (!m || !path) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    const char *kind = attn_st_meta(&f, "model");
    if (!kind || strcmp(kind, "detr") != 0) {
        attn__set_err(err, err_size, "%s: not a detection checkpoint (metadata 'model' is %s, expected detr)", path,
                      kind ? kind : "missing");
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    double v[DETR_N_META];
    if ((st = attn__nmt_meta_numbers(&f, path, detr_meta_names + 1, DETR_N_META - 1, v + 1, err, err_size)) !=
        ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    attn_detr_config c = {.image = (int)v[1], .patch = (int)v[2], .queries = (int)v[3], .classes = (int)v[4],
                          .dim = (int)v[5], .heads = (int)v[6], .ffn = (int)v[7], .enc_blocks = (int)v[8],
                          .dec_blocks = (int)v[9], .max_batch = max_batch > 1 ? max_batch : 1};
    /* absent in older checkpoints (and whenever K == P): patches side by side */
    if ((st = attn__nmt_meta_optional(&f, path, "patch_kernel", &c.patch_kernel, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    if ((st = detr_alloc(m, ctx, &c)) != ATTN_OK) {
        attn__set_err(err, err_size, "%s: the configuration in the metadata is invalid (%s)", path,
                      attn_status_string(st));
        attn_st_free(&f);
        return st == ATTN_ERR_NOMEM ? st : ATTN_ERR_FORMAT;
    }
    attn__nmt_named t[DETR_MAX_TENSORS];
    int n = detr_list(m, t);
    st = attn__nmt_read_tensors(&f, path, t, n, err, err_size);
    if (st == ATTN_OK && opt)
        st = attn__nmt_read_optimizer(&f, path, opt, m->n_params, (int64_t)v[DETR_N_META - 1], err, err_size);
    attn_st_free(&f);
    if (st != ATTN_OK) attn_detr_free(m);
    return st;
}
