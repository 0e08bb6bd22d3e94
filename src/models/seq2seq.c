/*
 * seq2seq.c — the d2l seq2seq model with Bahdanau attention: encoder (embedding → GRU), decoder
 * (additive attention over the encoder outputs → [context, embedding] → GRU → dense), the masked
 * cross-entropy with teacher forcing, forward and backward, greedy decoding, the training epoch and
 * checkpoints.
 *
 * Tensors are time-major inside (T,B,·) as nn.GRU; the attention reads batch-major keys (B,S,H).
 * The decoder runs one step at a time (its query is the previous step's top hidden state), each step
 * with its own GRU cache, and the backward walks the steps in reverse.
 *
 * The attention is the library's split additive attention on the model's context: the keys are projected
 * once per batch (attn_additive_keys_forward), each decoder step attends against them
 * (attn_additive_step_forward/backward), and the projection's gradient is taken once at the end
 * (attn_additive_keys_backward). Training splits each batch into n_shards fixed shards
 * (own gradients and activations, shared parameters) that run on up to that many OpenMP threads and
 * whose gradients are summed in order: the thread count does not change the result. The epoch driver
 * and the checkpoint I/O are shared with transformer.c in nmt_common.c.
 */
#include "internal.h"
#include "layers/util.h"
#include "nmt_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Activations: one slab carved in this order for max_batch Bm.
 */
typedef struct acts {
    int32_t *src_t, *dec_t, *tgt_t;  /* (T,B) ids, time-major */
    float *wts;                  /* (T,B) cross-entropy weights: valid / T */
    float *xe;                   /* (T,B,E) encoder embeddings */
    float *enc_cache;            /* GRU cache (T,B) */
    float *enc_out;              /* (T,B,H) */
    float *keys;                 /* (B,S,H) encoder outputs, batch-major */
    float *de;                   /* (T,B,E) decoder embeddings */
    float *dec_x;                /* (T,B,H+E) decoder GRU inputs [context, embedding] */
    float *dec_h;                /* (T+1,L,B,H) decoder states before each step */
    float *dec_cache;            /* T GRU caches (1,B) */
    float *dec_out;              /* (T,B,H) */
    float *ctx;                  /* (B,H) one step's context */
    float *logits, *probs;       /* (T·B,Vt) */
    float *losses;               /* (T·B) */
    float *d_dec_out;            /* (T,B,H) */
    float *dh, *dhp;             /* (L,B,H) */
    float *dxs;                  /* (B,H+E) one step's input gradient */
    float *dq;                   /* (B,H) */
    float *dkeys;                /* (B,S,H) */
    float *dde;                  /* (T,B,E) */
    float *d_enc_out;            /* (T,B,H) */
    float *dxe;                  /* (T,B,E) */
    float *attn_w;               /* (B,S) one step's weights */
    float *kp;                   /* (B,S,H) keys projected by W_k, once per batch */
    float *dkp;                  /* (B,S,H) their gradient, summed over the steps */
    size_t enc_cache_n, dec_cache_n, total;
} acts;

/* Floats of a GRU cache (its size in bytes, rounded up). */
static size_t gru_cache_floats(const attn_gru *g, int T, int B) {
    size_t bytes = 0;
    if (attn_gru_cache_bytes(g, T, B, &bytes) != ATTN_OK) return 0;
    return (bytes + sizeof(float) - 1) / sizeof(float);
}

static void carve(const attn_seq2seq *m, float *base, acts *a) {
    const attn_seq2seq_config *c = &m->cfg;
    const size_t T = (size_t)c->num_steps, B = (size_t)c->max_batch, E = (size_t)c->embed,
                 H = (size_t)c->hidden, L = (size_t)c->layers, V = (size_t)c->tgt_vocab;
    size_t off = 0;
#define TAKE(ptr, n) do { ptr = base ? base + off : NULL; off += (n); } while (0)
#define TAKE_I(ptr, n) do { ptr = base ? (int32_t *)(base + off) : NULL; off += (n); } while (0)
    TAKE_I(a->src_t, T * B); TAKE_I(a->dec_t, T * B); TAKE_I(a->tgt_t, T * B);
    TAKE(a->wts, T * B);
    TAKE(a->xe, T * B * E);
    a->enc_cache_n = gru_cache_floats(&m->enc, (int)T, (int)B);
    TAKE(a->enc_cache, a->enc_cache_n);
    TAKE(a->enc_out, T * B * H);
    TAKE(a->keys, B * T * H);
    TAKE(a->de, T * B * E);
    TAKE(a->dec_x, T * B * (H + E));
    TAKE(a->dec_h, (T + 1) * L * B * H);
    a->dec_cache_n = gru_cache_floats(&m->dec, 1, (int)B);
    TAKE(a->dec_cache, T * a->dec_cache_n);
    TAKE(a->dec_out, T * B * H);
    TAKE(a->ctx, B * H);
    TAKE(a->logits, T * B * V); TAKE(a->probs, T * B * V);
    TAKE(a->losses, T * B);
    TAKE(a->d_dec_out, T * B * H);
    TAKE(a->dh, L * B * H); TAKE(a->dhp, L * B * H);
    TAKE(a->dxs, B * (H + E));
    TAKE(a->dq, B * H);
    TAKE(a->dkeys, B * T * H);
    TAKE(a->dde, T * B * E);
    TAKE(a->d_enc_out, T * B * H);
    TAKE(a->dxe, T * B * E);
    TAKE(a->attn_w, B * T);
    TAKE(a->kp, B * T * H);
    TAKE(a->dkp, B * T * H);
#undef TAKE
#undef TAKE_I
    a->total = off;
}

/* ---------------------------------------------------------------------------------------------------
 * Parameters.
 */
static size_t layout(attn_seq2seq *m, float *p, float *g) {
    const attn_seq2seq_config *c = &m->cfg;
    const size_t E = (size_t)c->embed, H = (size_t)c->hidden;
    size_t off = 0;
#define VIEW(name, n) do { m->name = p ? p + off : NULL; m->d_##name = g ? g + off : NULL; off += (n); } while (0)
    VIEW(enc_emb, (size_t)c->src_vocab * E);
    if (p) attn_gru_bind(&m->enc, c->layers, (int)E, (int)H, c->dropout, p + off, g ? g + off : NULL);
    off += attn_gru_n_params(c->layers, (int)E, (int)H);
    VIEW(att_wk, H * H);
    VIEW(att_wq, H * H);
    VIEW(att_wv, H);
    VIEW(dec_emb, (size_t)c->tgt_vocab * E);
    if (p) attn_gru_bind(&m->dec, c->layers, (int)(H + E), (int)H, c->dropout, p + off, g ? g + off : NULL);
    off += attn_gru_n_params(c->layers, (int)(H + E), (int)H);
    VIEW(dense_w, (size_t)c->tgt_vocab * H);
    VIEW(dense_b, (size_t)c->tgt_vocab);
#undef VIEW
    return off;
}

static attn_status check_config(const attn_seq2seq_config *c) {
    if (c->src_vocab < 4 || c->tgt_vocab < 4 || c->embed < 1 || c->hidden < 1 || c->layers < 1 ||
        c->layers > ATTN_GRU_MAX_LAYERS || c->num_steps < 1 || c->max_batch < 1 ||
        c->src_vocab > (1 << 22) || c->tgt_vocab > (1 << 22) || c->embed > 4096 || c->hidden > 4096 ||
        c->num_steps > ATTN_SEQ2SEQ_MAX_STEPS || c->max_batch > 65536)
        return ATTN_ERR_SIZE;
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return ATTN_ERR_ARG;
    if (c->compute != ATTN_DTYPE_F32 && c->compute != ATTN_DTYPE_BF16) return ATTN_ERR_ARG;
    return ATTN_OK;
}

/* One decoder step's attention: B queries (T = 1) over the S = num_steps encoder outputs, masked by the
 * source lengths lens (B) (NULL: no mask, for the key projection, which the mask does not touch). */
static attn_additive_desc att_desc(const attn_seq2seq *m, int B, const int32_t *lens) {
    attn_additive_desc d;
    const int H = m->cfg.hidden;
    attn_additive_desc_init(&d, B, 1, m->cfg.num_steps, H, H, H, H);
    d.compute = m->cfg.compute;
    if (lens) {
        d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
        d.mask.valid_lens = lens;
    }
    return d;
}

static void s2s_shard_free(void *p) {
    attn_seq2seq *s = p;
    free(s->grads);                      /* a shard's params belong to the model */
    free(s->acts);
    free(s->work);
}

static void free_shards(attn_seq2seq *m) {
    attn__shards_free(m->shards, m->n_shards, sizeof *m->shards, s2s_shard_free);
    m->shards = NULL;
    m->n_shards = 0;
}

void attn_seq2seq_free(attn_seq2seq *m) {
    if (!m) return;
    free_shards(m);
    free(m->params);
    free(m->acts);
    free(m->work);
    memset(m, 0, sizeof *m);
}

static attn_status alloc_acts(attn_seq2seq *m);

/* Allocation without initialization. */
static attn_status alloc_model(attn_seq2seq *m, const attn_ctx *ctx, const attn_seq2seq_config *cfg) {
    attn_status st = check_config(cfg);
    if (st != ATTN_OK) return st;
    memset(m, 0, sizeof *m);
    const attn_kernels *kern;
    if ((st = attn__ctx_resolve(ctx, &m->ctx, &kern)) != ATTN_OK) return st;
    m->cfg = *cfg;
    m->n_params = layout(m, NULL, NULL);
    m->params = calloc(2 * m->n_params, sizeof(float));
    if (!m->params) return ATTN_ERR_NOMEM;
    m->grads = m->params + m->n_params;
    layout(m, m->params, m->grads);
    if ((st = alloc_acts(m)) != ATTN_OK) { attn_seq2seq_free(m); return st; }
    if ((st = attn_seq2seq_set_shards(m, ATTN_SEQ2SEQ_SHARDS)) != ATTN_OK) { attn_seq2seq_free(m); return st; }
    return ATTN_OK;
}

/* A shard: a view of the model's parameters with its own gradients and activations for ceil(max_batch/ns)
 * rows, run on one thread (the shards themselves run in parallel). */
static attn_status s2s_shard_init(void *model, void *p, int ns) {
    const attn_seq2seq *m = model;
    attn_seq2seq *s = p;
    s->cfg = m->cfg;
    s->cfg.max_batch = (m->cfg.max_batch + ns - 1) / ns;
    s->ctx = m->ctx;
    s->ctx.threads = 1;
    s->n_params = m->n_params;
    s->params = m->params;
    if (!(s->grads = calloc(m->n_params, sizeof(float)))) return ATTN_ERR_NOMEM;
    layout(s, s->params, s->grads);
    return alloc_acts(s);
}

attn_status attn_seq2seq_set_shards(attn_seq2seq *m, int ns) {
    if (!m || !m->params) return ATTN_ERR_NULL;
    void *shards = m->shards;
    attn_status st = attn__shards_replace(m, &shards, &m->n_shards, sizeof *m->shards, ns, s2s_shard_init,
                                          s2s_shard_free);
    m->shards = shards;
    return st;
}

/* Activations and the attention workspace for m->cfg.max_batch. */
static attn_status alloc_acts(attn_seq2seq *m) {
    const attn_seq2seq_config *cfg = &m->cfg;
    acts a;
    carve(m, NULL, &a);
    m->acts_floats = a.total;
    m->acts = calloc(a.total, sizeof(float));
    attn_additive_desc d = att_desc(m, cfg->max_batch, NULL);   /* the workspace does not depend on the mask */
    size_t fw = 0, bw = 0;
    attn_additive_workspace_size(&m->ctx, &d, ATTN_PASS_FORWARD, &fw);
    attn_additive_workspace_size(&m->ctx, &d, ATTN_PASS_BACKWARD, &bw);
    m->work_bytes = fw > bw ? fw : bw;
    if (!m->work_bytes) return ATTN_ERR_SIZE;
    m->work = malloc(m->work_bytes ? m->work_bytes : 1);
    return m->acts && m->work ? ATTN_OK : ATTN_ERR_NOMEM;
}

attn_status attn_seq2seq_init(attn_seq2seq *m, const attn_ctx *ctx, const attn_seq2seq_config *cfg, uint64_t seed) {
    if (!m || !cfg) return ATTN_ERR_NULL;
    attn_status st = alloc_model(m, ctx, cfg);
    if (st != ATTN_OK) return st;
    const int E = cfg->embed, H = cfg->hidden;
    attn_rng r;
    attn_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)cfg->src_vocab * E; i++) m->enc_emb[i] = attn_rng_normal(&r);
    attn_gru_init_weights(&m->enc, &r);
    attn__nmt_xavier(&r, m->att_wk, H, H);
    attn__nmt_xavier(&r, m->att_wq, H, H);
    attn__nmt_xavier(&r, m->att_wv, 1, H);
    for (size_t i = 0; i < (size_t)cfg->tgt_vocab * E; i++) m->dec_emb[i] = attn_rng_normal(&r);
    attn_gru_init_weights(&m->dec, &r);
    attn__nmt_xavier(&r, m->dense_w, cfg->tgt_vocab, H);
    float b = 1.0f / sqrtf((float)H);
    attn_rng_fill_uniform(&r, m->dense_b, (size_t)cfg->tgt_vocab, -b, b);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Forward pieces shared by training and decoding.
 */
/* Encoder over a (T,B) batch already in a->src_t: enc_out, keys (batch-major) and the initial decoder
 * state dec_h[0]. */
static attn_status encode(attn_seq2seq *m, acts *a, int B, int train, uint64_t seed) {
    const int T = m->cfg.num_steps, E = m->cfg.embed, H = m->cfg.hidden;
    attn_status st = attn_embedding_forward(a->xe, a->src_t, m->enc_emb, T * B, m->cfg.src_vocab, E);
    if (st != ATTN_OK) return st;
    st = attn_gru_forward(&m->ctx, &m->enc, a->enc_cache, sizeof(float) * a->enc_cache_n, a->enc_out, a->dec_h, a->xe, NULL,
                          T, B, train, attn__nmt_sub_seed(seed, 1));
    if (st != ATTN_OK) return st;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            memcpy(a->keys + ((size_t)b * T + t) * H, a->enc_out + ((size_t)t * B + b) * H, sizeof(float) * H);
    attn_additive_desc d = att_desc(m, B, NULL);
    return attn_additive_keys_forward(&m->ctx, &d, a->kp, a->keys, m->att_wk);  /* once per batch */
}

/* Decoder step t: attention with the top state of dec_h[t] as query, [context, embedding] into
 * dec_x[t], the GRU into dec_h[t+1] and dec_out[t]. Embeddings of step t are in a->de. */
static attn_status decode_step(attn_seq2seq *m, acts *a, int t, int B, const int32_t *src_len,
                               float *weights, int train, uint64_t seed) {
    const int E = m->cfg.embed, H = m->cfg.hidden, L = m->cfg.layers, HE = H + E;
    const size_t LBH = (size_t)L * B * H;
    const float *h = a->dec_h + (size_t)t * LBH;                   /* (L,B,H) */
    attn_additive_desc d = att_desc(m, B, src_len);
    if (train) { d.dropout = m->cfg.dropout; d.seed = attn__nmt_sub_seed(seed, 1000 + (uint64_t)t); }
    attn_status st = attn_additive_step_forward(&m->ctx, &d, a->ctx, weights, h + (size_t)(L - 1) * B * H, a->kp,
                                                a->keys, m->att_wq, m->att_wv, m->work, m->work_bytes);
    if (st != ATTN_OK) return st;
    float *x = a->dec_x + (size_t)t * B * HE;                      /* (B,H+E) */
    const float *emb = a->de + (size_t)t * B * E;
    for (int b = 0; b < B; b++) {
        memcpy(x + (size_t)b * HE, a->ctx + (size_t)b * H, sizeof(float) * H);
        memcpy(x + (size_t)b * HE + H, emb + (size_t)b * E, sizeof(float) * E);
    }
    return attn_gru_forward(&m->ctx, &m->dec, a->dec_cache + (size_t)t * a->dec_cache_n, sizeof(float) * a->dec_cache_n,
                            a->dec_out + (size_t)t * B * H, a->dec_h + (size_t)(t + 1) * LBH, x, h,
                            1, B, train, attn__nmt_sub_seed(seed, 2000 + (uint64_t)t));
}

attn_status attn_seq2seq_step(attn_seq2seq *m, float *loss,
                              const int32_t *X, const int32_t *X_len, const int32_t *Y, const int32_t *Y_len,
                              int B, int train, int backward, uint64_t seed) {
    if (!m || !m->params || !loss || !X || !X_len || !Y || !Y_len) return ATTN_ERR_NULL;
    const int T = m->cfg.num_steps, E = m->cfg.embed, H = m->cfg.hidden, L = m->cfg.layers,
              V = m->cfg.tgt_vocab, HE = H + E;
    if (B < 1 || B > m->cfg.max_batch) return ATTN_ERR_SIZE;
    attn_status st;
    if ((st = attn__nmt_check_ids(X, (size_t)B * T, m->cfg.src_vocab)) != ATTN_OK) return st;
    if ((st = attn__nmt_check_ids(Y, (size_t)B * T, V)) != ATTN_OK) return st;
    for (int b = 0; b < B; b++) if (X_len[b] < 0 || Y_len[b] < 0) return ATTN_ERR_ARG;
    acts a;
    carve(m, m->acts, &a);
    const size_t LBH = (size_t)L * B * H;

    /* inputs, time-major: source, decoder input (<bos> + Y[:, :-1]), targets and their weights */
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            size_t i = (size_t)t * B + b;
            a.src_t[i] = X[(size_t)b * T + t];
            a.dec_t[i] = t == 0 ? ATTN_TOK_BOS : Y[(size_t)b * T + t - 1];
            a.tgt_t[i] = Y[(size_t)b * T + t];
            a.wts[i] = t < Y_len[b] ? 1.0f / (float)T : 0.0f;
        }

    /* forward: encoder, decoder steps, dense, masked cross-entropy */
    if ((st = encode(m, &a, B, train, seed)) != ATTN_OK) return st;
    if ((st = attn_embedding_forward(a.de, a.dec_t, m->dec_emb, T * B, V, E)) != ATTN_OK) return st;
    for (int t = 0; t < T; t++)
        if ((st = decode_step(m, &a, t, B, X_len, NULL, train, seed)) != ATTN_OK) return st;
    if ((st = attn_linear_forward(a.logits, a.dec_out, m->dense_w, m->dense_b, T * B, H, V)) != ATTN_OK) return st;
    if ((st = attn_softmax_xent_forward(a.losses, a.probs, a.logits, a.tgt_t, a.wts, T * B, V)) != ATTN_OK) return st;
    double sum = 0.0;
    for (int i = 0; i < T * B; i++) sum += a.losses[i];
    *loss = (float)sum;
    if (!backward) return ATTN_OK;

    /* backward: cross-entropy and dense */
    float *dlogits = a.logits;                                     /* (T·B,V), reused */
    memset(dlogits, 0, sizeof(float) * (size_t)T * B * V);
    for (int i = 0; i < T * B; i++) a.losses[i] = 1.0f;            /* dloss of each row */
    if ((st = attn_softmax_xent_backward(dlogits, a.losses, a.probs, a.tgt_t, a.wts, T * B, V)) != ATTN_OK) return st;
    memset(a.d_dec_out, 0, sizeof(float) * (size_t)T * B * H);
    if ((st = attn_linear_backward(a.d_dec_out, m->d_dense_w, m->d_dense_b, dlogits, a.dec_out, m->dense_w,
                                   T * B, H, V)) != ATTN_OK) return st;

    /* decoder steps in reverse: GRU, then the attention (query into the state, keys into dkeys) */
    memset(a.dh, 0, sizeof(float) * LBH);
    memset(a.dkeys, 0, sizeof(float) * (size_t)B * T * H);
    memset(a.dkp, 0, sizeof(float) * (size_t)B * T * H);
    for (int t = T - 1; t >= 0; t--) {
        memset(a.dhp, 0, sizeof(float) * LBH);
        memset(a.dxs, 0, sizeof(float) * (size_t)B * HE);
        const float *h = a.dec_h + (size_t)t * LBH;
        st = attn_gru_backward(&m->ctx, &m->dec, a.dec_cache + (size_t)t * a.dec_cache_n, sizeof(float) * a.dec_cache_n, a.dxs, a.dhp,
                               a.d_dec_out + (size_t)t * B * H, a.dh, a.dec_x + (size_t)t * B * HE,
                               1, B, train, attn__nmt_sub_seed(seed, 2000 + (uint64_t)t));
        if (st != ATTN_OK) return st;
        /* split dx into the context's gradient (into ctx) and the embedding's (into dde) */
        float *dde = a.dde + (size_t)t * B * E;
        for (int b = 0; b < B; b++) {
            memcpy(a.ctx + (size_t)b * H, a.dxs + (size_t)b * HE, sizeof(float) * H);
            memcpy(dde + (size_t)b * E, a.dxs + (size_t)b * HE + H, sizeof(float) * E);
        }
        memset(a.dq, 0, sizeof(float) * (size_t)B * H);
        attn_additive_desc d = att_desc(m, B, X_len);
        if (train) { d.dropout = m->cfg.dropout; d.seed = attn__nmt_sub_seed(seed, 1000 + (uint64_t)t); }
        st = attn_additive_step_backward(&m->ctx, &d, a.dq, a.dkp, a.dkeys, m->d_att_wq, m->d_att_wv, a.ctx,
                                         h + (size_t)(L - 1) * B * H, a.kp, a.keys, m->att_wq, m->att_wv,
                                         m->work, m->work_bytes);
        if (st != ATTN_OK) return st;
        float *top = a.dhp + (size_t)(L - 1) * B * H;
        for (size_t i = 0; i < (size_t)B * H; i++) top[i] += a.dq[i];
        memcpy(a.dh, a.dhp, sizeof(float) * LBH);                  /* gradient of state t */
    }
    if ((st = attn_embedding_backward(m->d_dec_emb, a.dde, a.dec_t, T * B, V, E)) != ATTN_OK) return st;
    {                             /* through the key projection: dkeys += dkp W_k, dW_k += dkpᵀ keys */
        attn_additive_desc d = att_desc(m, B, NULL);
        if ((st = attn_additive_keys_backward(&m->ctx, &d, a.dkeys, m->d_att_wk, a.dkp, a.keys, m->att_wk)) != ATTN_OK)
            return st;
    }

    /* encoder: outputs' gradient from the keys (back to time-major), final state's from dec_h[0] */
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            memcpy(a.d_enc_out + ((size_t)t * B + b) * H, a.dkeys + ((size_t)b * T + t) * H, sizeof(float) * H);
    memset(a.dxe, 0, sizeof(float) * (size_t)T * B * E);
    st = attn_gru_backward(&m->ctx, &m->enc, a.enc_cache, sizeof(float) * a.enc_cache_n, a.dxe, NULL, a.d_enc_out, a.dh, a.xe,
                           T, B, train, attn__nmt_sub_seed(seed, 1));
    if (st != ATTN_OK) return st;
    return attn_embedding_backward(m->d_enc_emb, a.dxe, a.src_t, T * B, m->cfg.src_vocab, E);
}

/* ---------------------------------------------------------------------------------------------------
 * Greedy decoding.
 */
attn_status attn_seq2seq_translate(attn_seq2seq *m, int32_t *out, int *n_out, float *weights,
                                   const int32_t *src, int src_len) {
    if (!m || !m->params || !out || !n_out || !src) return ATTN_ERR_NULL;
    const int T = m->cfg.num_steps, E = m->cfg.embed, H = m->cfg.hidden, V = m->cfg.tgt_vocab;
    attn_status st;
    if ((st = attn__nmt_check_ids(src, (size_t)T, m->cfg.src_vocab)) != ATTN_OK) return st;
    if (src_len < 0) return ATTN_ERR_ARG;
    acts a;
    carve(m, m->acts, &a);
    const int B = 1;
    int32_t lens[1] = {src_len};
    memcpy(a.src_t, src, sizeof(int32_t) * T);                    /* (T,1) = (1,T) */
    if ((st = encode(m, &a, B, 0, 0)) != ATTN_OK) return st;
    if (weights) memset(weights, 0, sizeof(float) * (size_t)T * T);
    int32_t tok = ATTN_TOK_BOS;
    *n_out = 0;
    for (int t = 0; t < T; t++) {
        if ((st = attn_embedding_forward(a.de + (size_t)t * E, &tok, m->dec_emb, 1, V, E)) != ATTN_OK) return st;
        if ((st = decode_step(m, &a, t, B, lens, a.attn_w, 0, 0)) != ATTN_OK) return st;
        if (weights) memcpy(weights + (size_t)t * T, a.attn_w, sizeof(float) * T);
        if ((st = attn_linear_forward(a.logits, a.dec_out + (size_t)t * H, m->dense_w, m->dense_b, 1, H, V)) != ATTN_OK)
            return st;
        int best = 0;
        for (int v = 1; v < V; v++) if (a.logits[v] > a.logits[best]) best = v;
        if (best == ATTN_TOK_EOS) break;
        out[(*n_out)++] = best;
        tok = best;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Training epoch.
 */

/* Shard k's step (the epoch driver in nmt_common.c splits the batch and sums the gradients in order). */
static attn_status shard_step(void *model, int k, float *loss, const int32_t *X, const int32_t *X_len,
                              const int32_t *Y, const int32_t *Y_len, int n, uint64_t seed) {
    attn_seq2seq *m = model, *s = &m->shards[k];
    memset(s->grads, 0, sizeof(float) * s->n_params);
    return attn_seq2seq_step(s, loss, X, X_len, Y, Y_len, n, 1, 1, seed);
}

attn_status attn_seq2seq_train_epoch(attn_seq2seq *m, attn_adam *opt, attn_rng *rng,
                                     const int32_t *X, const int32_t *X_len,
                                     const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                     float clip, uint64_t *seed, double *loss_sum, int64_t *tokens) {
    return attn_seq2seq_train_epoch_part(m, opt, rng, X, X_len, Y, Y_len, N, batch, clip, seed, loss_sum, tokens, 0,
                                         0, NULL, NULL);
}

/* The epoch driver's view of m for shards [first, first + count) (count 0: all of them, summed here), after
 * the checks both training calls make. */
static attn_status make_trainer(attn__nmt_trainer *tr, attn_seq2seq *m, const attn_adam *opt, int batch, int first,
                                int count, attn_shard_combine_fn combine, void *user) {
    attn_status st = attn__nmt_trainer_init(tr, m, shard_step, m->params, m->grads, m->n_params, m->n_shards,
                                            m->cfg.num_steps, m->cfg.max_batch, opt, batch, first, count, combine,
                                            user);
    if (st != ATTN_OK) return st;
    for (int k = 0; k < m->n_shards; k++) tr->shard_grads[k] = m->shards[k].grads;
    return ATTN_OK;
}

attn_status attn_seq2seq_train_epoch_part(attn_seq2seq *m, attn_adam *opt, attn_rng *rng,
                                          const int32_t *X, const int32_t *X_len,
                                          const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                          float clip, uint64_t *seed, double *loss_sum, int64_t *tokens,
                                          int first, int count, attn_shard_combine_fn combine, void *user) {
    if (!m || !opt || !rng || !X || !X_len || !Y || !Y_len || !seed || !loss_sum || !tokens) return ATTN_ERR_NULL;
    if (N < 1) return ATTN_ERR_SIZE;
    attn__nmt_trainer tr;
    attn_status st = make_trainer(&tr, m, opt, batch, first, count, combine, user);
    if (st != ATTN_OK) return st;
    return attn__nmt_train_epoch(&tr, opt, rng, X, X_len, Y, Y_len, N, batch, clip, seed, loss_sum, tokens);
}

attn_status attn_seq2seq_train_step_part(attn_seq2seq *m, attn_adam *opt, const int32_t *X, const int32_t *X_len,
                                         const int32_t *Y, const int32_t *Y_len, int B, float clip, uint64_t *seed,
                                         int first, int count, attn_shard_combine_fn combine, void *user,
                                         float *loss) {
    if (!m || !opt || !X || !X_len || !Y || !Y_len || !seed || !loss) return ATTN_ERR_NULL;
    attn__nmt_trainer tr;
    attn_status st = make_trainer(&tr, m, opt, B, first, count, combine, user);
    if (st != ATTN_OK) return st;
    *loss = 0.0f;
    return attn__nmt_train_step(&tr, opt, X, X_len, Y, Y_len, B, clip, seed, loss);
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
#define MAX_TENSORS (8 + 8 * ATTN_GRU_MAX_LAYERS)

static int list_tensors(const attn_seq2seq *m, attn__nmt_named *t) {
    const attn_seq2seq_config *c = &m->cfg;
    int n = 0;
    n = attn__nmt_add(t, n, "encoder.embedding.weight", m->enc_emb, 2, c->src_vocab, c->embed);
    const attn_gru *gs[2] = {&m->enc, &m->dec};
    const char *pre[2] = {"encoder.rnn", "decoder.rnn"};
    for (int k = 0; k < 2; k++) {
        if (k == 1) {
            n = attn__nmt_add(t, n, "decoder.attention.W_k.weight", m->att_wk, 2, c->hidden, c->hidden);
            n = attn__nmt_add(t, n, "decoder.attention.W_q.weight", m->att_wq, 2, c->hidden, c->hidden);
            n = attn__nmt_add(t, n, "decoder.attention.w_v.weight", m->att_wv, 2, 1, c->hidden);
            n = attn__nmt_add(t, n, "decoder.embedding.weight", m->dec_emb, 2, c->tgt_vocab, c->embed);
        }
        const attn_gru *g = gs[k];
        for (int l = 0; l < g->L; l++) {
            char nm[48];
            int in = l ? g->H : g->in;
            snprintf(nm, sizeof nm, "%s.weight_ih_l%d", pre[k], l); n = attn__nmt_add(t, n, nm, g->w_ih[l], 2, 3 * g->H, in);
            snprintf(nm, sizeof nm, "%s.weight_hh_l%d", pre[k], l); n = attn__nmt_add(t, n, nm, g->w_hh[l], 2, 3 * g->H, g->H);
            snprintf(nm, sizeof nm, "%s.bias_ih_l%d", pre[k], l);   n = attn__nmt_add(t, n, nm, g->b_ih[l], 1, 3 * g->H, 0);
            snprintf(nm, sizeof nm, "%s.bias_hh_l%d", pre[k], l);   n = attn__nmt_add(t, n, nm, g->b_hh[l], 1, 3 * g->H, 0);
        }
    }
    n = attn__nmt_add(t, n, "decoder.dense.weight", m->dense_w, 2, c->tgt_vocab, c->hidden);
    n = attn__nmt_add(t, n, "decoder.dense.bias", m->dense_b, 1, c->tgt_vocab, 0);
    return n;
}

#define N_META 7
static const char *const meta_names[N_META] = {"src_vocab", "tgt_vocab", "embed", "hidden", "layers", "dropout",
                                               "num_steps"};

attn_status attn_seq2seq_save_train(const attn_seq2seq *m, const attn_adam *opt, const char *const *keys,
                                    const char *const *vals, int n_extra, const char *path, char *err,
                                    size_t err_size) {
    if (!m || !m->params || !path) return ATTN_ERR_NULL;
    if (opt && (opt->n != m->n_params || !opt->m)) return ATTN_ERR_SHAPE;
    attn__nmt_named t[MAX_TENSORS + 2];
    const int n = list_tensors(m, t);
    char cfgv[N_META][32];
    const attn_seq2seq_config *c = &m->cfg;
    snprintf(cfgv[0], 32, "%d", c->src_vocab); snprintf(cfgv[1], 32, "%d", c->tgt_vocab);
    snprintf(cfgv[2], 32, "%d", c->embed);     snprintf(cfgv[3], 32, "%d", c->hidden);
    snprintf(cfgv[4], 32, "%d", c->layers);    snprintf(cfgv[5], 32, "%.9g", (double)c->dropout);
    snprintf(cfgv[6], 32, "%d", c->num_steps);
    /* then the attention's compute, as a word (missing in older checkpoints: f32) */
    const char *names[N_META + 1], *vp[N_META + 1];
    for (int i = 0; i < N_META; i++) { names[i] = meta_names[i]; vp[i] = cfgv[i]; }
    names[N_META] = "compute";
    vp[N_META] = attn__compute_name(c->compute);
    return attn__nmt_save_train(path, t, n, opt, names, vp, N_META + 1, keys, vals, n_extra, err, err_size);
}

attn_status attn_seq2seq_save(const attn_seq2seq *m, const char *path, char *err, size_t err_size) {
    return attn_seq2seq_save_train(m, NULL, NULL, NULL, 0, path, err, err_size);
}

attn_status attn_seq2seq_load_train(attn_seq2seq *m, attn_adam *opt, const attn_ctx *ctx, const char *path,
                                    int max_batch, char *err, size_t err_size) {
    if (!m || !path) return ATTN_ERR_NULL;
    memset(m, 0, sizeof *m);
    attn_st_file f;
    attn_status st = attn_st_read(&f, path, 0, err, err_size);
    if (st != ATTN_OK) return st;
    double v[N_META + 1];
    if ((st = attn__nmt_meta_numbers(&f, path, meta_names, N_META, v, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    static const char *const step_name[1] = {"optimizer_t"};
    if (opt && attn_st_find(&f, "optimizer.m") &&
        (st = attn__nmt_meta_numbers(&f, path, step_name, 1, v + N_META, err, err_size)) != ATTN_OK) {
        attn_st_free(&f);
        return st;
    }
    attn_seq2seq_config c;
    memset(&c, 0, sizeof c);
    c.src_vocab = (int)v[0]; c.tgt_vocab = (int)v[1]; c.embed = (int)v[2]; c.hidden = (int)v[3];
    c.layers = (int)v[4]; c.dropout = (float)v[5]; c.num_steps = (int)v[6];
    c.max_batch = max_batch > 1 ? max_batch : 1;
    const char *cs = attn_st_meta(&f, "compute");
    if (!attn__compute_parse(cs, &c.compute)) {
        if (err && err_size) snprintf(err, err_size, "%s: metadata \"compute\" = \"%s\", expected f32 or bf16", path, cs);
        attn_st_free(&f);
        return ATTN_ERR_FORMAT;
    }
    if ((st = alloc_model(m, ctx, &c)) != ATTN_OK) {
        if (err && err_size) snprintf(err, err_size, "%s: the configuration in the metadata is invalid", path);
        attn_st_free(&f);
        return st == ATTN_ERR_NOMEM ? st : ATTN_ERR_FORMAT;
    }
    attn__nmt_named t[MAX_TENSORS];
    const int n = list_tensors(m, t);
    st = attn__nmt_read_tensors(&f, path, t, n, err, err_size);
    if (st == ATTN_OK && opt)
        st = attn__nmt_read_optimizer(&f, path, opt, m->n_params, (int64_t)v[N_META], err, err_size);
    attn_st_free(&f);
    if (st != ATTN_OK) attn_seq2seq_free(m);
    return st;
}

attn_status attn_seq2seq_load(attn_seq2seq *m, const attn_ctx *ctx, const char *path, int max_batch, char *err,
                              size_t err_size) {
    return attn_seq2seq_load_train(m, NULL, ctx, path, max_batch, err, err_size);
}
