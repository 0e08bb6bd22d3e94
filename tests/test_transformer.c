/*
 * test_transformer.c — the Transformer translator's layers, blocks and model.
 *  1. Against PyTorch (tools/golden/gen_transformer.py, d2l 0.17's classes in float64): the positional
 *     encoding, the position-wise feed-forward and add & norm (forward and backward), a whole encoder
 *     block (masked by source lengths) and a whole decoder block (causal self-attention, cross-attention,
 *     its weights), every parameter's gradient and the inputs'.
 *     The whole translator (d2l's EncoderDecoder, read as a checkpoint): the teacher-forced masked loss,
 *     the gradient of every parameter, greedy decoding with and without the key/value cache.
 *  2. Finite differences through whole blocks with dropout on (the masks are a function of the seed) and
 *     through the whole translator's loss.
 *  3. Greedy decoding with and without the key/value cache: the same tokens, step scores and weights.
 *  4. Checkpoints: save, load, the same translation; a Bahdanau checkpoint is refused.
 *  5. A short training run on the book's 601 pairs (on the counting fixture of nmt_fixture.h when
 *     ../shared/data is absent): 25 epochs must lower the loss by a factor of at least 3 (it gives 3.8
 *     on the book's pairs, 5.4 on the fixture); under AddressSanitizer 4 epochs, 1.4.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/seq2seq.h"
#include "attn/transformer.h"
#include "testutil.h"
#include "nmt_fixture.h"

#include <cblas.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const float *get(const attn_st_file *f, const char *name, size_t n) {
    const attn_st_tensor *t = attn_st_find(f, name);
    if (!t || t->dtype != ATTN_DTYPE_F32 || t->nbytes != n * sizeof(float)) {
        fprintf(stderr, "golden tensor %s missing or of the wrong size\n", name);
        tu_failures++;
        return NULL;
    }
    return (const float *)t->data;
}

/* ---------------------------------------------------------------------------------------------------
 * 1. layers against PyTorch
 */
static void test_layers(void) {
    printf("layers vs PyTorch\n");
    attn_st_file f;
    char err[256] = "";
    attn_status st = attn_st_read(&f, ATTN_GOLDEN_DIR "/transformer_layers.safetensors", 0, err, sizeof err);
    CHECK_STATUS(st, ATTN_OK);
    if (st != ATTN_OK) { fprintf(stderr, "%s\n", err); return; }
    enum { D = 8, F = 12, B = 2, T = 4, N = B * T };
    float y[N * D], P[T * D], dx[N * D], ds[N * D];
    char cache[4096];                           /* the layers' caches (asked for below, and checked) */
    size_t cb = 0;

    /* positional encoding: table, forward with the sqrt(D) scale, backward */
    const float *gP = get(&f, "posenc.P", T * D), *px = get(&f, "posenc.x", N * D), *py = get(&f, "posenc.y", N * D);
    if (!gP || !px || !py) { attn_st_free(&f); return; }
    CHECK_STATUS(attn_posenc_table(P, T, D), ATTN_OK);
    tu_close_f32("posenc table", P, gP, T * D, 1e-6, 1e-6);
    CHECK_STATUS(attn_posenc_forward(y, px, P, sqrtf((float)D), B, T, D, 0.0f, 0), ATTN_OK);
    tu_close_f32("posenc forward", y, py, N * D, 1e-5, 1e-5);
    float want[N * D];
    for (int i = 0; i < N * D; i++) { dx[i] = 0.5f; want[i] = 0.5f + sqrtf((float)D) * px[i]; }
    CHECK_STATUS(attn_posenc_backward(dx, px, sqrtf((float)D), B, T, D, 0.0f, 0), ATTN_OK);
    tu_close_f32("posenc backward (accumulates)", dx, want, N * D, 1e-6, 1e-6);

    /* position-wise feed-forward */
    const float *fx = get(&f, "ffn.x", N * D), *w1 = get(&f, "ffn.dense1.weight", F * D),
                *b1 = get(&f, "ffn.dense1.bias", F), *w2 = get(&f, "ffn.dense2.weight", D * F),
                *b2 = get(&f, "ffn.dense2.bias", D), *fy = get(&f, "ffn.y", N * D), *fg = get(&f, "ffn.g", N * D);
    const float *gfx = get(&f, "grad.ffn.x", N * D), *gw1 = get(&f, "grad.ffn.dense1.weight", F * D),
                *gb1 = get(&f, "grad.ffn.dense1.bias", F), *gw2 = get(&f, "grad.ffn.dense2.weight", D * F),
                *gb2 = get(&f, "grad.ffn.dense2.bias", D);
    if (fx && w1 && b1 && w2 && b2 && fy && fg && gfx && gw1 && gb1 && gw2 && gb2) {
        float fp[2 * F * D + F + D], fgr[2 * F * D + F + D] = {0};
        attn_ffn l;
        CHECK(attn_ffn_n_params(D, F) == sizeof fp / sizeof fp[0]);
        CHECK_STATUS(attn_ffn_bind(&l, D, F, fp, fgr), ATTN_OK);
        memcpy(l.w1, w1, sizeof(float) * F * D); memcpy(l.b1, b1, sizeof(float) * F);
        memcpy(l.w2, w2, sizeof(float) * D * F); memcpy(l.b2, b2, sizeof(float) * D);
        CHECK_STATUS(attn_ffn_cache_bytes(&l, N, &cb), ATTN_OK);
        CHECK(cb <= sizeof cache);
        CHECK_STATUS(attn_ffn_forward(&l, cache, cb, y, fx, N), ATTN_OK);
        tu_close_f32("ffn forward", y, fy, N * D, 1e-5, 1e-5);
        memset(dx, 0, sizeof dx);
        CHECK_STATUS(attn_ffn_backward(&l, cache, cb, dx, fg, fx, N), ATTN_OK);
        tu_close_f32("ffn dx", dx, gfx, N * D, 1e-5, 1e-4);
        tu_close_f32("ffn dW1", l.dw1, gw1, F * D, 1e-5, 1e-4);
        tu_close_f32("ffn db1", l.db1, gb1, F, 1e-5, 1e-4);
        tu_close_f32("ffn dW2", l.dw2, gw2, D * F, 1e-5, 1e-4);
        tu_close_f32("ffn db2", l.db2, gb2, D, 1e-5, 1e-4);
        CHECK_STATUS(attn_ffn_forward(&l, cache, cb, y, fx, 0), ATTN_ERR_SIZE);
    }

    /* add & norm */
    const float *ax = get(&f, "addnorm.x", N * D), *as = get(&f, "addnorm.s", N * D),
                *ag = get(&f, "addnorm.ln.weight", D), *ab = get(&f, "addnorm.ln.bias", D),
                *ay = get(&f, "addnorm.y", N * D), *agr = get(&f, "addnorm.g", N * D),
                *gax = get(&f, "grad.addnorm.x", N * D), *gas = get(&f, "grad.addnorm.s", N * D),
                *gag = get(&f, "grad.addnorm.ln.weight", D), *gab = get(&f, "grad.addnorm.ln.bias", D);
    if (ax && as && ag && ab && ay && agr && gax && gas && gag && gab) {
        float ap[2 * D], agd[2 * D] = {0};
        attn_addnorm l;
        CHECK(attn_addnorm_n_params(D) == 2 * D);
        CHECK_STATUS(attn_addnorm_bind(&l, D, ap, agd), ATTN_OK);
        memcpy(l.ln.gamma, ag, sizeof(float) * D);
        memcpy(l.ln.beta, ab, sizeof(float) * D);
        CHECK_STATUS(attn_addnorm_cache_bytes(&l, N, &cb), ATTN_OK);
        CHECK(cb <= sizeof cache);
        CHECK_STATUS(attn_addnorm_forward(&l, cache, cb, y, ax, as, N, 0.0f, 0), ATTN_OK);
        tu_close_f32("addnorm forward", y, ay, N * D, 1e-5, 1e-5);
        memset(dx, 0, sizeof dx);
        memset(ds, 0, sizeof ds);
        CHECK_STATUS(attn_addnorm_backward(&l, cache, cb, dx, ds, agr, N, 0.0f, 0), ATTN_OK);
        tu_close_f32("addnorm dx", dx, gax, N * D, 1e-5, 1e-4);
        tu_close_f32("addnorm ds", ds, gas, N * D, 1e-5, 1e-4);
        tu_close_f32("addnorm dgamma", l.ln.dgamma, gag, D, 1e-5, 1e-4);
        tu_close_f32("addnorm dbeta", l.ln.dbeta, gab, D, 1e-5, 1e-4);
        /* bad arguments are statuses */
        CHECK_STATUS(attn_addnorm_forward(&l, cache, cb, y, ax, as, N, 1.0f, 0), ATTN_ERR_ARG);
    }
    CHECK_STATUS(attn_posenc_forward(y, px, NULL, 1.0f, B, T, D, 0.0f, 0), ATTN_ERR_NULL);
    attn_st_free(&f);
}

/* ---------------------------------------------------------------------------------------------------
 * Blocks: the parameter names of a block in slab order (d2l's state_dict order).
 */
static int block_names(int decoder, const char *names[18]) {
    static const char *const enc[12] = {"attention.W_q.weight", "attention.W_k.weight", "attention.W_v.weight",
        "attention.W_o.weight", "addnorm1.ln.weight", "addnorm1.ln.bias", "ffn.dense1.weight", "ffn.dense1.bias",
        "ffn.dense2.weight", "ffn.dense2.bias", "addnorm2.ln.weight", "addnorm2.ln.bias"};
    static const char *const dec[18] = {"attention1.W_q.weight", "attention1.W_k.weight", "attention1.W_v.weight",
        "attention1.W_o.weight", "addnorm1.ln.weight", "addnorm1.ln.bias", "attention2.W_q.weight",
        "attention2.W_k.weight", "attention2.W_v.weight", "attention2.W_o.weight", "addnorm2.ln.weight",
        "addnorm2.ln.bias", "ffn.dense1.weight", "ffn.dense1.bias", "ffn.dense2.weight", "ffn.dense2.bias",
        "addnorm3.ln.weight", "addnorm3.ln.bias"};
    int n = decoder ? 18 : 12;
    for (int i = 0; i < n; i++) names[i] = decoder ? dec[i] : enc[i];
    return n;
}

/* Copies a block's golden parameters (prefix "enc." or "dec.") into params; returns floats copied. */
static size_t load_block(const attn_st_file *f, const char *prefix, const char *gprefix, int decoder, float *params) {
    const char *names[18];
    int n = block_names(decoder, names);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char nm[96];
        snprintf(nm, sizeof nm, "%s%s%s", gprefix, prefix, names[i]);
        const attn_st_tensor *t = attn_st_find(f, nm);
        if (!t) { fprintf(stderr, "golden tensor %s missing\n", nm); tu_failures++; return 0; }
        memcpy(params + off, t->data, t->nbytes);
        off += t->nbytes / sizeof(float);
    }
    return off;
}

static void test_blocks(void) {
    printf("blocks vs PyTorch\n");
    attn_st_file f;
    char err[256] = "";
    attn_status st = attn_st_read(&f, ATTN_GOLDEN_DIR "/transformer_blocks.safetensors", 0, err, sizeof err);
    CHECK_STATUS(st, ATTN_OK);
    if (st != ATTN_OK) { fprintf(stderr, "%s\n", err); return; }
    enum { D = 8, F = 12, H = 2, B = 2, S = 5, T = 4 };
    const attn_st_tensor *tl = attn_st_find(&f, "src_lens");
    CHECK(tl && tl->dtype == ATTN_DTYPE_I32 && tl->nbytes == B * sizeof(int32_t));
    if (!tl) { attn_st_free(&f); return; }
    const int32_t *lens = (const int32_t *)tl->data;

    for (int decoder = 0; decoder <= 1; decoder++) {
        const char *pre = decoder ? "dec." : "enc.";
        const int Tq = decoder ? T : S;
        const size_t np = attn_tf_block_n_params(D, F, decoder);
        float *p = calloc(np, sizeof(float)), *g = calloc(np, sizeof(float)), *gw = calloc(np, sizeof(float));
        attn_tf_block b;
        CHECK_STATUS(attn_tf_block_bind(&b, D, F, H, decoder, 0.1f, p, g), ATTN_OK);
        CHECK(load_block(&f, pre, "", decoder, p) == np);
        CHECK(load_block(&f, pre, "grad.", decoder, gw) == np);
        char nm[64];
        snprintf(nm, sizeof nm, "%sx", pre);      const float *x = get(&f, nm, (size_t)B * Tq * D);
        snprintf(nm, sizeof nm, "%sy", pre);      const float *yw = get(&f, nm, (size_t)B * Tq * D);
        snprintf(nm, sizeof nm, "%sg", pre);      const float *gy = get(&f, nm, (size_t)B * Tq * D);
        snprintf(nm, sizeof nm, "grad.%sx", pre); const float *gx = get(&f, nm, (size_t)B * Tq * D);
        const float *enc = decoder ? get(&f, "dec.enc", (size_t)B * S * D) : NULL;
        const float *genc = decoder ? get(&f, "grad.dec.enc", (size_t)B * S * D) : NULL;
        const float *cw = decoder ? get(&f, "dec.cross_weights", (size_t)B * H * T * S) : NULL;
        if (!x || !yw || !gy || !gx || (decoder && (!enc || !genc || !cw))) { free(p); free(g); free(gw); continue; }
        size_t cn = 0;
        CHECK_STATUS(attn_tf_block_cache_bytes(NULL, &b, B, Tq, S, &cn), ATTN_OK);
        float *cache = malloc(cn), *y = malloc(sizeof(float) * B * Tq * D),
              *dx = calloc((size_t)B * Tq * D, sizeof(float)), *denc = calloc((size_t)B * S * D, sizeof(float)),
              *w = calloc((size_t)B * H * T * S, sizeof(float));
        /* the golden ran without dropout: train = 0 (the decoder's self-attention is causal either way) */
        CHECK_STATUS(attn_tf_block_forward(NULL, &b, cache, cn - 1, y, NULL, x, enc, lens, B, Tq, S, 0, 7),
                     ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_tf_block_forward(NULL, &b, cache, cn, y, decoder ? w : NULL, x, enc, lens, B, Tq, S, 0, 7), ATTN_OK);
        tu_close_f32(decoder ? "decoder block forward" : "encoder block forward", y, yw, (size_t)B * Tq * D, 1e-5, 1e-4);
        if (decoder) tu_close_f32("decoder cross-attention weights", w, cw, (size_t)B * H * T * S, 1e-6, 1e-4);
        CHECK_STATUS(attn_tf_block_backward(NULL, &b, cache, cn, dx, denc, gy, x, enc, lens, B, Tq, S, 0, 7), ATTN_OK);
        tu_close_f32(decoder ? "decoder block dx" : "encoder block dx", dx, gx, (size_t)B * Tq * D, 1e-5, 1e-4);
        if (decoder) tu_close_f32("decoder block denc", denc, genc, (size_t)B * S * D, 1e-5, 1e-4);
        tu_close_f32(decoder ? "decoder block dparams (all 18)" : "encoder block dparams (all 12)", g, gw, np, 1e-5, 1e-4);
        free(cache); free(y); free(dx); free(denc); free(w); free(p); free(g); free(gw);
    }
    attn_st_free(&f);
}

/* the whole translator against d2l's EncoderDecoder: loss, every gradient, greedy decoding */
static void test_model_golden(void) {
    printf("translator vs PyTorch (d2l's EncoderDecoder)\n");
    const char *path = ATTN_GOLDEN_DIR "/transformer_model.safetensors";
    attn_transformer m;
    char err[256] = "";
    attn_status st = attn_transformer_load(&m, NULL, path, 3, err, sizeof err);   /* the golden is a checkpoint */
    CHECK_STATUS(st, ATTN_OK);
    if (st != ATTN_OK) { fprintf(stderr, "%s\n", err); return; }
    attn_st_file f;
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    const int B = 3, T = m.cfg.num_steps;
    const attn_st_tensor *tx = attn_st_find(&f, "X"), *txl = attn_st_find(&f, "X_len"), *ty = attn_st_find(&f, "Y"),
                         *tyl = attn_st_find(&f, "Y_len"), *tp = attn_st_find(&f, "pred");
    const float *gl = get(&f, "loss", 1);
    const char *np_s = attn_st_meta(&f, "n_pred");
    CHECK(tx && txl && ty && tyl && tp && gl && np_s && T == 5);
    if (!tx || !txl || !ty || !tyl || !tp || !gl || !np_s || T != 5) { attn_st_free(&f); attn_transformer_free(&m); return; }
    const int32_t *X = tx->data, *Xl = txl->data, *Y = ty->data, *Yl = tyl->data, *pred = tp->data;
    float loss = 0;
    memset(m.grads, 0, sizeof(float) * m.n_params);
    CHECK_STATUS(attn_transformer_step(&m, &loss, X, Xl, Y, Yl, B, 1, 1, 3), ATTN_OK);
    tu_close_f32("masked cross-entropy (teacher forcing)", &loss, gl, 1, 1e-5, 1e-5);
    /* the golden gradients, concatenated in the slab's (state_dict) order */
    float *want = calloc(m.n_params, sizeof(float));
    size_t off = 0;
    char nm[128];
    const char *names[18];
    for (int part = 0; part < 2; part++) {
        const char *side = part ? "decoder" : "encoder";
        snprintf(nm, sizeof nm, "grad.%s.embedding.weight", side);
        const attn_st_tensor *t = attn_st_find(&f, nm);
        if (t && off + t->nbytes / 4 <= m.n_params) { memcpy(want + off, t->data, t->nbytes); off += t->nbytes / 4; }
        int n = block_names(part, names);
        for (int l = 0; l < m.cfg.blocks; l++)
            for (int i = 0; i < n; i++) {
                snprintf(nm, sizeof nm, "grad.%s.blks.block%d.%s", side, l, names[i]);
                t = attn_st_find(&f, nm);
                if (t && off + t->nbytes / 4 <= m.n_params) { memcpy(want + off, t->data, t->nbytes); off += t->nbytes / 4; }
            }
    }
    for (int i = 0; i < 2; i++) {
        const attn_st_tensor *t = attn_st_find(&f, i ? "grad.decoder.dense.bias" : "grad.decoder.dense.weight");
        if (t && off + t->nbytes / 4 <= m.n_params) { memcpy(want + off, t->data, t->nbytes); off += t->nbytes / 4; }
    }
    CHECK(off == m.n_params);
    tu_close_f32("gradient of every parameter", m.grads, want, m.n_params, 1e-5, 1e-4);
    /* greedy decoding of X[0], with and without the cache */
    const int n_want = atoi(np_s);
    for (int cache = 1; cache >= 0; cache--) {
        int32_t out[5];
        int n_out = -1;
        CHECK_STATUS(attn_transformer_translate(&m, out, &n_out, NULL, NULL, X, Xl[0], cache), ATTN_OK);
        CHECK(n_out == n_want && memcmp(out, pred, sizeof(int32_t) * (size_t)(n_want > 0 ? n_want : 0)) == 0);
        printf("  greedy decoding (%s): %d tokens%s\n", cache ? "cache" : "prefix", n_out,
               n_out == n_want ? ", as PyTorch" : ", DIFFERENT from PyTorch");
    }
    free(want);
    attn_st_free(&f);
    attn_transformer_free(&m);
}

/* ---------------------------------------------------------------------------------------------------
 * 2. finite differences: loss = Σ y·gy through a whole block, dropout 0.2 on (fixed seed)
 */
static double block_loss(const attn_tf_block *b, float *cache, size_t cn, float *y, const float *x, const float *enc,
                         const int32_t *lens, const float *gy, int B, int T, int S) {
    attn_tf_block_forward(NULL, b, cache, cn, y, NULL, x, enc, lens, B, T, S, 1, 99);
    double s = 0;
    for (int i = 0; i < B * T * b->D; i++) s += (double)y[i] * gy[i];
    return s;
}

static void fd_check(const char *what, float *v, size_t n, const float *analytic, int stride,
                     const attn_tf_block *b, float *cache, size_t cn, float *y, const float *x, const float *enc,
                     const int32_t *lens, const float *gy, int B, int T, int S) {
    double worst = 0;
    int bad = 0, cnt = 0;
    for (size_t i = 0; i < n; i += (size_t)stride) {
        const float keep = v[i], h = 2e-3f;
        v[i] = keep + h; double lp = block_loss(b, cache, cn, y, x, enc, lens, gy, B, T, S);
        v[i] = keep - h; double lm = block_loss(b, cache, cn, y, x, enc, lens, gy, B, T, S);
        v[i] = keep;
        double num = (lp - lm) / (2.0 * h), err = fabs(num - analytic[i]);
        double tol = 4e-3 + 2e-2 * fabs(num);
        if (err > tol) { bad++; if (bad <= 5) printf("    [%zu] numeric %.5f analytic %.5f\n", i, num, (double)analytic[i]); }
        if (err > worst) worst = err;
        cnt++;
    }
    tu_checks++;
    printf("  %-40s %d values, max_abs=%.3g %s\n", what, cnt, worst, bad ? "FAIL" : "ok");
    if (bad) tu_failures++;
}

static void test_fd(void) {
    printf("finite differences through whole blocks (dropout 0.2)\n");
    enum { D = 8, F = 12, H = 2, B = 2, S = 5, T = 4 };
    const int32_t lens[B] = {3, 5};
    attn_rng r;
    attn_rng_seed(&r, 3);
    for (int decoder = 0; decoder <= 1; decoder++) {
        const int Tq = decoder ? T : S;
        const size_t np = attn_tf_block_n_params(D, F, decoder), nx = (size_t)B * Tq * D, ne = (size_t)B * S * D;
        float *p = calloc(np, sizeof(float)), *g = calloc(np, sizeof(float));
        attn_tf_block b;
        attn_tf_block_bind(&b, D, F, H, decoder, 0.2f, p, g);
        attn_tf_block_init_weights(&b, &r);
        for (size_t i = 0; i < np; i++) p[i] += 0.1f * attn_rng_normal(&r);   /* LayerNorms away from (1, 0) */
        float *x = malloc(sizeof(float) * nx), *enc = malloc(sizeof(float) * ne), *gy = malloc(sizeof(float) * nx),
              *y = malloc(sizeof(float) * nx), *dx = calloc(nx, sizeof(float)), *denc = calloc(ne, sizeof(float));
        for (size_t i = 0; i < nx; i++) { x[i] = attn_rng_normal(&r); gy[i] = attn_rng_normal(&r); }
        for (size_t i = 0; i < ne; i++) enc[i] = attn_rng_normal(&r);
        size_t cn = 0;
        CHECK_STATUS(attn_tf_block_cache_bytes(NULL, &b, B, Tq, S, &cn), ATTN_OK);
        float *cache = malloc(cn);
        block_loss(&b, cache, cn, y, x, decoder ? enc : NULL, lens, gy, B, Tq, S);
        CHECK_STATUS(attn_tf_block_backward(NULL, &b, cache, cn, dx, decoder ? denc : NULL, gy, x, decoder ? enc : NULL,
                                            lens, B, Tq, S, 1, 99), ATTN_OK);
        const float *ae = decoder ? enc : NULL;
        fd_check(decoder ? "decoder block: every parameter" : "encoder block: every parameter", p, np, g, 1, &b, cache,
                 cn, y, x, ae, lens, gy, B, Tq, S);
        fd_check(decoder ? "decoder block: x" : "encoder block: x", x, nx, dx, 1, &b, cache, cn, y, x, ae, lens, gy, B,
                 Tq, S);
        if (decoder) fd_check("decoder block: encoder output", enc, ne, denc, 1, &b, cache, cn, y, x, ae, lens, gy, B, Tq, S);
        free(p); free(g); free(x); free(enc); free(gy); free(y); free(dx); free(denc); free(cache);
    }
}

/* the whole translator: loss of a padded batch with dropout, against finite differences */
static void test_model_fd(void) {
    printf("finite differences through the whole translator (dropout 0.1)\n");
    attn_transformer m;
    attn_transformer_config c = {11, 13, 8, 12, 2, 2, 0.1f, 5, 3, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_transformer_init(&m, NULL, &c, 5), ATTN_OK);
    const int32_t X[15] = {4, 5, 6, 3, 1, 7, 3, 1, 1, 1, 8, 9, 10, 4, 3}, Xl[3] = {4, 2, 5};
    const int32_t Y[15] = {5, 6, 3, 1, 1, 7, 8, 9, 10, 3, 11, 3, 1, 1, 1}, Yl[3] = {3, 5, 2};
    float loss = 0;
    memset(m.grads, 0, sizeof(float) * m.n_params);
    CHECK_STATUS(attn_transformer_step(&m, &loss, X, Xl, Y, Yl, 3, 1, 1, 42), ATTN_OK);
    float *g = malloc(sizeof(float) * m.n_params);
    memcpy(g, m.grads, sizeof(float) * m.n_params);
    attn_rng r;
    attn_rng_seed(&r, 9);
    double worst = 0;
    int bad = 0, n = 0;
    for (int k = 0; k < 300; k++) {
        size_t i = attn_rng_u32(&r) % m.n_params;
        float keep = m.params[i], h = 2e-3f, lp, lm;
        m.params[i] = keep + h; attn_transformer_step(&m, &lp, X, Xl, Y, Yl, 3, 1, 0, 42);
        m.params[i] = keep - h; attn_transformer_step(&m, &lm, X, Xl, Y, Yl, 3, 1, 0, 42);
        m.params[i] = keep;
        double num = ((double)lp - lm) / (2.0 * h), err = fabs(num - g[i]);
        if (err > 4e-3 + 2e-2 * fabs(num)) { bad++; if (bad <= 5) printf("    [%zu] numeric %.5f analytic %.5f\n", i, num, (double)g[i]); }
        if (err > worst) worst = err;
        n++;
    }
    tu_checks++;
    printf("  %-40s %d values, max_abs=%.3g %s (loss %.4f)\n", "translator: random parameters", n, worst,
           bad ? "FAIL" : "ok", (double)loss);
    if (bad) tu_failures++;
    free(g);
    attn_transformer_free(&m);
}

/* ---------------------------------------------------------------------------------------------------
 * 3. cache vs no cache, 4. checkpoints
 */
static void test_decoding(void) {
    printf("greedy decoding: key/value cache vs the whole prefix; checkpoints\n");
    attn_transformer m;
    attn_transformer_config c = {15, 17, 16, 24, 4, 2, 0.1f, 8, 2, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_transformer_init(&m, NULL, &c, 21), ATTN_OK);
    /* make <eos> unlikely so the decoding runs all 8 steps */
    m.dense_b[ATTN_TOK_EOS] -= 5.0f;
    const int T = 8, V = 17, L = 2, H = 4;
    int32_t src[8] = {4, 9, 12, 7, 3, 1, 1, 1};
    int32_t o1[8], o2[8], o3[8];
    int n1 = -1, n2 = -2, n3 = -3;
    float *w1 = malloc(sizeof(float) * L * H * T * T), *w2 = malloc(sizeof(float) * L * H * T * T);
    float *l1 = malloc(sizeof(float) * T * V), *l2 = malloc(sizeof(float) * T * V), *l3 = malloc(sizeof(float) * T * V);
    CHECK_STATUS(attn_transformer_translate(&m, o1, &n1, w1, l1, src, 5, 1), ATTN_OK);
    CHECK_STATUS(attn_transformer_translate(&m, o2, &n2, w2, l2, src, 5, 0), ATTN_OK);
    CHECK(n1 == n2 && n1 > 2);
    CHECK(memcmp(o1, o2, sizeof(int32_t) * (size_t)(n1 > 0 ? n1 : 0)) == 0);
    printf("  tokens (cache):   ");
    for (int i = 0; i < n1; i++) printf("%d ", o1[i]);
    printf("\n  tokens (prefix):  ");
    for (int i = 0; i < n2; i++) printf("%d ", o2[i]);
    printf("\n");
    tu_close_f32("step scores, cache vs prefix", l1, l2, (size_t)T * V, 1e-4, 1e-4);
    tu_close_f32("cross weights, cache vs prefix", w1, w2, (size_t)L * H * T * T, 1e-5, 1e-4);
    /* every weight row of a produced step sums to 1 over the source's 5 valid positions */
    double worst = 0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < n1 && t < T; t++) {
                const float *row = w1 + (((size_t)l * H + h) * T + t) * T;
                double s = 0;
                for (int j = 0; j < 5; j++) s += row[j];
                for (int j = 5; j < T; j++) CHECK(row[j] == 0.0f);
                worst = fmax(worst, fabs(s - 1.0));
            }
    CHECK(worst < 1e-5);

    /* every attention at once, the decoder teacher-forced over <bos> and the output: its cross rows are
     * the greedy steps' rows, its self-attention causal, the encoder's blind past the source length */
    {
        const int Tq = n1 + 1 < T ? n1 + 1 : T;
        float *es = malloc(sizeof(float) * L * H * T * T), *ds = malloc(sizeof(float) * L * H * T * T),
              *cr = malloc(sizeof(float) * L * H * T * T);
        CHECK_STATUS(attn_transformer_attention(&m, es, ds, cr, src, 5, o1, n1), ATTN_OK);
        double dcross = 0, rows_off = 0;
        int bad_mask = 0;
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const size_t lh = (size_t)l * H + h;
                for (int t = 0; t < Tq; t++)
                    for (int j = 0; j < T; j++)
                        dcross = fmax(dcross, fabs((double)cr[(lh * Tq + t) * T + j] - w1[(lh * T + t) * T + j]));
                for (int i = 0; i < Tq; i++) {
                    double s = 0;
                    for (int j = 0; j < Tq; j++) {
                        const float v = ds[(lh * Tq + i) * Tq + j];
                        s += v;
                        if (j > i && v != 0.0f) bad_mask++;
                    }
                    rows_off = fmax(rows_off, fabs(s - 1.0));
                }
                for (int i = 0; i < T; i++) {
                    double s = 0;
                    for (int j = 0; j < T; j++) {
                        const float v = es[(lh * T + i) * T + j];
                        s += v;
                        if (j >= 5 && v != 0.0f) bad_mask++;
                    }
                    rows_off = fmax(rows_off, fabs(s - 1.0));
                }
            }
        printf("  every attention: cross vs greedy steps %.2g, rows' sums off by %.2g, masked weights %d\n",
               dcross, rows_off, bad_mask);
        CHECK(dcross < 1e-4 && rows_off < 1e-5 && bad_mask == 0);
        CHECK_STATUS(attn_transformer_attention(&m, NULL, NULL, NULL, src, 5, NULL, 0), ATTN_OK);
        CHECK_STATUS(attn_transformer_attention(&m, es, NULL, NULL, src, -1, o1, n1), ATTN_ERR_ARG);
        int32_t bad_out[1] = {999};
        CHECK_STATUS(attn_transformer_attention(&m, NULL, NULL, cr, src, 5, bad_out, 1), ATTN_ERR_ARG);
        free(es); free(ds); free(cr);
    }

    /* checkpoints */
    const char *path = "/tmp/attn_test_transformer.safetensors";
    char err[256] = "";
    CHECK_STATUS(attn_transformer_save(&m, path, err, sizeof err), ATTN_OK);
    attn_transformer m2;
    CHECK_STATUS(attn_transformer_load(&m2, NULL, path, 1, err, sizeof err), ATTN_OK);
    if (m2.params) {
        CHECK(m2.n_params == m.n_params && memcmp(m2.params, m.params, sizeof(float) * m.n_params) == 0);
        CHECK_STATUS(attn_transformer_translate(&m2, o3, &n3, NULL, l3, src, 5, 1), ATTN_OK);
        CHECK(n3 == n1 && memcmp(o3, o1, sizeof(int32_t) * (size_t)(n1 > 0 ? n1 : 0)) == 0);
        tu_close_f32("loaded model's step scores", l3, l1, (size_t)T * V, 1e-5, 1e-4);
        attn_transformer_free(&m2);
    }
    unlink(path);
    /* a checkpoint holding a NaN or an infinite parameter is refused, naming the tensor (and so is the
     * Bahdanau model's: the two share the reader) */
    {
        const float keep = m.params[7];
        m.params[7] = NAN;
        CHECK_STATUS(attn_transformer_save(&m, path, err, sizeof err), ATTN_OK);
        CHECK_STATUS(attn_transformer_load(&m2, NULL, path, 1, err, sizeof err), ATTN_ERR_FORMAT);
        CHECK(strstr(err, "expected a finite parameter") != NULL && m2.params == NULL);
        printf("  refused: %s\n", err);
        m.params[7] = INFINITY;
        CHECK_STATUS(attn_transformer_save(&m, path, err, sizeof err), ATTN_OK);
        CHECK_STATUS(attn_transformer_load(&m2, NULL, path, 1, err, sizeof err), ATTN_ERR_FORMAT);
        m.params[7] = keep;
        unlink(path);
    }
    /* a Bahdanau checkpoint is not a Transformer's */
    attn_seq2seq s;
    attn_seq2seq_config sc = {7, 8, 4, 5, 1, 0.0f, 4, 1, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_seq2seq_init(&s, NULL, &sc, 1), ATTN_OK);
    CHECK_STATUS(attn_seq2seq_save(&s, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_transformer_load(&m2, NULL, path, 1, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  refused: %s\n", err);
    attn_seq2seq_free(&s);
    unlink(path);
    CHECK_STATUS(attn_transformer_translate(&m, o1, &n1, NULL, NULL, src, -1, 1), ATTN_ERR_ARG);
    src[2] = 99;
    CHECK_STATUS(attn_transformer_translate(&m, o1, &n1, NULL, NULL, src, 5, 1), ATTN_ERR_ARG);
    free(w1); free(w2); free(l1); free(l2); free(l3);
    attn_transformer_free(&m);
}

/* ---------------------------------------------------------------------------------------------------
 * 5. a short training run on the real data
 */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_training(void) {
    printf("short training\n");
    char dir[] = "/tmp/attn_transformer_XXXXXX", fixture[600];
    if (!mkdtemp(dir)) { CHECK(!"mkdtemp"); return; }
    nmt_train_set ds;
    CHECK(nmt_train_set_load(&ds, dir) == 0);
    if (!ds.X) { rmdir(dir); return; }
    openblas_set_num_threads(1);
    const int T = ds.T, N = ds.n;
    const int32_t *X = ds.X, *Y = ds.Y, *Xl = ds.X_len, *Yl = ds.Y_len;
    attn_transformer m;
    attn_transformer_config c = {ds.vs.n, ds.vt.n, 32, 64, 4, 2, 0.1f, T, 64, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_transformer_init(&m, NULL, &c, 1), ATTN_OK);
    attn_adam opt;
    CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 0.005f), ATTN_OK);
    attn_rng rng;
    attn_rng_seed(&rng, 1);
    uint64_t seed = 1;
    double first = 0, last = 0, t0 = now_s();
#if defined(__SANITIZE_ADDRESS__)
    const int epochs = 4;              /* sanitized builds run ~10x slower: a shorter run, a smaller factor */
    const double factor = 1.4;
#else
    const int epochs = 25;
    const double factor = 3.0;
#endif
    for (int e = 0; e < epochs; e++) {
        double ls;
        int64_t tok;
        CHECK_STATUS(attn_transformer_train_epoch(&m, &opt, &rng, X, Xl, Y, Yl, N, 64, 1.0f, &seed, &ls, &tok), ATTN_OK);
        if (e == 0) first = ls / (double)tok;
        last = ls / (double)tok;
    }
    double secs = now_s() - t0;
    printf("  %d epochs: loss %.4f -> %.4f (factor %.1f, needed >= %.1f) in %.1f s\n", epochs, first, last,
           first / last, factor, secs);
    CHECK(last * factor <= first);
    attn_adam_free(&opt);
    attn_transformer_free(&m);
    nmt_train_set_free(&ds);
    snprintf(fixture, sizeof fixture, "%s/fra.txt", dir);
    unlink(fixture);                       /* written only when the real data was missing */
    rmdir(dir);
}


/* The same model on the reference path and on the default (fastest) path: every kernel the model runs
 * (attention, through the model's context) is the library's, so ATTN_ISA=ref reaches all of it and both paths agree
 * to rounding, forward and backward, with dropout. */
static void test_paths(void) {
    printf("the model on the reference path and on the fast path\n");
    attn_ctx ref;
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
    attn_transformer_config c = {11, 13, 8, 12, 2, 2, 0.1f, 5, 3, ATTN_DTYPE_F32};
    attn_transformer a, b;
    CHECK_STATUS(attn_transformer_init(&a, NULL, &c, 5), ATTN_OK);
    CHECK_STATUS(attn_transformer_init(&b, &ref, &c, 5), ATTN_OK);
    CHECK(b.ctx.isa == ATTN_ISA_REF && a.ctx.isa != ATTN_ISA_REF);
    const int32_t X[15] = {4, 5, 6, 3, 1, 7, 3, 1, 1, 1, 8, 9, 10, 4, 3}, Xl[3] = {4, 2, 5};
    const int32_t Y[15] = {5, 6, 3, 1, 1, 7, 8, 9, 10, 3, 11, 3, 1, 1, 1}, Yl[3] = {3, 5, 2};
    float la = 0, lb = 0;
    memset(a.grads, 0, sizeof(float) * a.n_params);
    memset(b.grads, 0, sizeof(float) * b.n_params);
    CHECK_STATUS(attn_transformer_step(&a, &la, X, Xl, Y, Yl, 3, 1, 1, 42), ATTN_OK);
    CHECK_STATUS(attn_transformer_step(&b, &lb, X, Xl, Y, Yl, 3, 1, 1, 42), ATTN_OK);
    printf("  paths: %s and %s\n", attn_isa_name(a.ctx.isa), attn_isa_name(b.ctx.isa));
    tu_close_f32("loss, fast vs reference path (dropout 0.1)", &la, &lb, 1, 1e-6, 1e-5);
    tu_close_f32("every gradient, fast vs reference path", a.grads, b.grads, a.n_params, 2e-6, 1e-3);
    int32_t oa[5], ob[5];
    int na = 0, nb = 0;
    CHECK_STATUS(attn_transformer_translate(&a, oa, &na, NULL, NULL, X, 4, 1), ATTN_OK);
    CHECK_STATUS(attn_transformer_translate(&b, ob, &nb, NULL, NULL, X, 4, 1), ATTN_OK);
    CHECK(na == nb && memcmp(oa, ob, sizeof(int32_t) * (size_t)na) == 0);
    attn_transformer_free(&a);
    attn_transformer_free(&b);
}

int main(void) {
    test_layers();
    test_blocks();
    test_model_golden();
    test_fd();
    test_model_fd();
    test_paths();
    test_decoding();
    test_training();
    return tu_finish("test_transformer");
}
