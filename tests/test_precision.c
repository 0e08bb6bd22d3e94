/*
 * test_precision.c — the models with bf16 attention compute (`--precision bf16`): the Transformer, the
 * Vision Transformer, the IMDB classifier and the Bahdanau seq2seq (its additive attention) built with
 * compute = ATTN_DTYPE_BF16 in their configs.
 *   - on a path with bf16 units: the bf16 model's loss, logits and gradients differ from the fp32 model's
 *     (same seed, same weights) — so the setting reaches the kernels — by a bounded amount, and a short
 *     training still lowers the loss. The AMX path, else the AVX512-BF16 path. Skipped, with the reason
 *     printed, where there is neither;
 *   - on a path without bf16 units (AVX2, else scalar) compute is only a permission: the results are the
 *     fp32 model's, bit for bit;
 *   - the checkpoints keep the setting ("compute" in the metadata): a saved bf16 model loads as bf16 and
 *     gives the same bits, a checkpoint without the key (older) loads as f32, a bad value is refused.
 * Small fixtures: a few hundred milliseconds in all.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/imdb_model.h"
#include "attn/seq2seq.h"
#include "attn/transformer.h"
#include "attn/vit.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

/* Relative RMS difference ||a - b|| / ||b||. */
static double rel_rms(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* bf16 against fp32 on a path with bf16 units: different (the setting reached the kernels), but close. */
static void check_bounded(const char *what, const float *b16, const float *f32, size_t n, double bound) {
    const double e = rel_rms(b16, f32, n);
    printf("  %-46s rel. RMS bf16 vs fp32 %.3g (bound %.3g)\n", what, e, bound);
    CHECK(e > 0 && e < bound);
}

/* The same bits on a path without bf16 units. */
static void check_same(const char *what, const float *b16, const float *f32, size_t n) {
    const int same = memcmp(b16, f32, sizeof(float) * n) == 0;
    printf("  %-46s %s\n", what, same ? "bitwise the fp32 model's" : "DIFFERENT");
    CHECK(same);
}

/* Replaces the first occurrence of from by to (same length) in the file at path. Returns 1 when done. */
static int patch_file(const char *path, const char *from, const char *to) {
    FILE *f = fopen(path, "rb+");
    if (!f) return 0;
    static char buf[1 << 16];            /* the header is at the start */
    size_t n = fread(buf, 1, sizeof buf, f), k = strlen(from);
    int done = 0;
    for (size_t i = 0; i + k <= n && !done; i++)
        if (memcmp(buf + i, from, k) == 0) {
            fseek(f, (long)i, SEEK_SET);
            done = fwrite(to, 1, k, f) == k;
        }
    fclose(f);
    return done;
}

/* A model's forward and backward on ctx with compute: its outputs (n_out floats) into out, a copy of its
 * whole gradient (malloc'ed) into *grads, its size into *n. */
typedef void (*model_pass)(const attn_ctx *ctx, attn_dtype compute, float *out, float **grads, size_t *n);

/* bf16 against fp32: bounded on the path with bf16 units (amx: AMX, or AVX512-BF16 for the models whose
 * heads it takes; NULL when there is none), the same bits on the plain one. */
static void compare_compute(model_pass pass, const char *what, size_t n_out, double out_bound, double grad_bound,
                            const attn_ctx *amx, const attn_ctx *plain) {
    float o32[64], o16[64], *g32, *g16;
    size_t n;
    char name[96];
    for (int k = amx ? 0 : 1; k < 2; k++) {
        pass(k ? plain : amx, ATTN_DTYPE_F32, o32, &g32, &n);
        pass(k ? plain : amx, ATTN_DTYPE_BF16, o16, &g16, &n);
        if (k == 0) {
            snprintf(name, sizeof name, "%s (%s)", what, attn_isa_name(amx->isa));
            check_bounded(name, o16, o32, n_out, out_bound);
            snprintf(name, sizeof name, "every gradient (%s)", attn_isa_name(amx->isa));
            check_bounded(name, g16, g32, n, grad_bound);
        } else {
            snprintf(name, sizeof name, "%s and gradients (no bf16 units)", what);
            check_same(name, g16, g32, n);
            CHECK(memcmp(o16, o32, sizeof(float) * n_out) == 0);
        }
        free(g32);
        free(g16);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * The Transformer: every encoder, decoder and cross attention.
 */
enum { TF_B = 4, TF_T = 10, TF_V = 13 };   /* 10 steps, as the translator's: heads too short for the tiles */

static void tf_data(int32_t *X, int32_t *XL, int32_t *Y, int32_t *YL, int n, unsigned seed) {
    for (int i = 0; i < n * TF_T; i++) {
        seed = seed * 1103515245u + 12345u;
        X[i] = 3 + (int)((seed >> 16) % (TF_V - 3));
        Y[i] = 3 + (int)((seed >> 8) % (TF_V - 3));
    }
    for (int b = 0; b < n; b++) {
        XL[b] = TF_T - (b % 5);
        YL[b] = TF_T - 2 * (b % 3);
    }
}

static void tf_config(attn_transformer_config *c, attn_dtype compute, float dropout, int max_batch) {
    *c = (attn_transformer_config){.src_vocab = TF_V, .tgt_vocab = TF_V, .hidden = 32, .ffn = 32, .heads = 2,
                                   .blocks = 1, .dropout = dropout, .num_steps = TF_T, .max_batch = max_batch,
                                   .compute = compute};
}

/* loss and the gradient of one teacher-forced pass of the model on ctx with compute. */
static void tf_pass(const attn_ctx *ctx, attn_dtype compute, float *loss, float **grads, size_t *n) {   /* out: the loss */
    attn_transformer_config c;
    tf_config(&c, compute, 0.0f, TF_B);
    attn_transformer m;
    int32_t X[TF_B * TF_T], XL[TF_B], Y[TF_B * TF_T], YL[TF_B];
    tf_data(X, XL, Y, YL, TF_B, 7);
    CHECK_STATUS(attn_transformer_init(&m, ctx, &c, 5), ATTN_OK);
    CHECK(m.enc[0].compute == compute && m.dec[0].compute == compute);
    CHECK_STATUS(attn_transformer_step(&m, loss, X, XL, Y, YL, TF_B, 1, 1, 3), ATTN_OK);
    *n = m.n_params;
    *grads = malloc(sizeof(float) * m.n_params);
    memcpy(*grads, m.grads, sizeof(float) * m.n_params);
    attn_transformer_free(&m);
}

static void test_transformer(const attn_ctx *amx, const attn_ctx *plain) {
    printf("Transformer (1+1 blocks, width 32, 2 heads, T = %d)\n", TF_T);
    /* the gradient's bound: measured 0.054 at T = 20 on AMX's tiles (per tensor from 0.5% for the output
     * layer to 6% for the decoder self-attention's Q and K, whose gradients are 3-4x the others': at this
     * initialisation its softmax is sharp, and there bf16's relative step of 2^-9 on q and k moves the
     * weights most); 0.084 at T = 10 on AVX512-BF16 (a Zen 4 EPYC) */
    compare_compute(tf_pass, "loss", 1, 1e-2, 0.15, amx, plain);

    /* a short training with bf16 compute lowers the loss as the fp32 one does (the same start, data, dropout);
     * then the checkpoint */
    const attn_ctx *ctx = amx ? amx : plain;
    enum { N = 16 };
    attn_transformer_config c;
    attn_transformer m;
    attn_adam opt;
    int32_t X[N * TF_T], XL[N], Y[N * TF_T], YL[N];
    tf_data(X, XL, Y, YL, N, 21);
    for (int b = 0; b < N; b++) memcpy(Y + b * TF_T, X + b * TF_T, sizeof(int32_t) * TF_T);   /* copy task */
    double first[2] = {0, 0}, last[2] = {0, 0};
    for (int k = 0; k < 2; k++) {           /* fp32, then bf16 (kept) */
        tf_config(&c, k ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32, 0.1f, TF_B);
        CHECK_STATUS(attn_transformer_init(&m, ctx, &c, 11), ATTN_OK);
        CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 0.01f), ATTN_OK);
        attn_rng rng;
        attn_rng_seed(&rng, 1);
        uint64_t seed = 1;
        for (int e = 0; e < 12; e++) {
            double sum = 0;
            int64_t tokens = 0;
            CHECK_STATUS(attn_transformer_train_epoch(&m, &opt, &rng, X, XL, Y, YL, N, TF_B, 1.0f, &seed, &sum,
                                                      &tokens), ATTN_OK);
            if (e == 0) first[k] = sum / (double)tokens;
            last[k] = sum / (double)tokens;
        }
        if (k == 0) {
            attn_adam_free(&opt);
            attn_transformer_free(&m);
        }
    }
    printf("  training (%s), loss per token over 12 epochs: fp32 %.4f -> %.4f, bf16 %.4f -> %.4f\n",
           attn_isa_name(ctx->isa), first[0], last[0], first[1], last[1]);
    CHECK(isfinite(last[1]) && last[1] < 0.85 * first[1] && fabs(last[1] - last[0]) < 0.1 * last[0]);

    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/tf.safetensors", g_dir);
    CHECK_STATUS(attn_transformer_save(&m, path, err, sizeof err), ATTN_OK);
    attn_transformer l;
    CHECK_STATUS(attn_transformer_load(&l, ctx, path, TF_B, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.compute == ATTN_DTYPE_BF16 && l.enc[0].compute == ATTN_DTYPE_BF16 && l.dec[0].compute == ATTN_DTYPE_BF16);
    float la, lb;
    CHECK_STATUS(attn_transformer_step(&m, &la, X, XL, Y, YL, TF_B, 0, 0, 0), ATTN_OK);
    CHECK_STATUS(attn_transformer_step(&l, &lb, X, XL, Y, YL, TF_B, 0, 0, 0), ATTN_OK);
    printf("  checkpoint: compute %s after load, loss %.6g vs %.6g before\n",
           l.cfg.compute == ATTN_DTYPE_BF16 ? "bf16" : "f32", (double)lb, (double)la);
    CHECK(la == lb);
    attn_transformer_free(&l);
    /* an older checkpoint (no "compute" key: renamed here) loads as f32; a bad value is refused */
    CHECK(patch_file(path, "\"compute\"", "\"computf\""));
    CHECK_STATUS(attn_transformer_load(&l, ctx, path, TF_B, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.compute == ATTN_DTYPE_F32 && l.enc[0].compute == ATTN_DTYPE_F32);
    attn_transformer_free(&l);
    CHECK(patch_file(path, "\"computf\":\"bf16\"", "\"compute\":\"bf61\""));
    err[0] = 0;
    CHECK_STATUS(attn_transformer_load(&l, ctx, path, TF_B, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  bad value: %s\n", err);
    CHECK(strstr(err, "compute") && strstr(err, "bf61"));
    /* a config with another compute type is refused */
    c.compute = ATTN_DTYPE_F64;
    CHECK_STATUS(attn_transformer_init(&l, ctx, &c, 1), ATTN_ERR_ARG);
    attn_adam_free(&opt);
    attn_transformer_free(&m);
}

/* ---------------------------------------------------------------------------------------------------
 * The Vision Transformer (attn_mha in every block).
 */
enum { VT_B = 4, VT_I = 8, VT_K = 3 };

static void vit_config(attn_vit_config *c, attn_dtype compute) {
    *c = (attn_vit_config){.image = VT_I, .channels = 1, .patch = 2, .dim = 32, .heads = 2, .blocks = 2, .mlp = 32,
                           .classes = VT_K, .max_batch = VT_B, .compute = compute};   /* 16 patches + 1 */
}

static void vit_data(float *x, int32_t *y) {
    for (int b = 0; b < VT_B; b++) {
        y[b] = b % VT_K;
        for (int i = 0; i < VT_I * VT_I; i++)     /* the class is where the bright stripe is */
            x[b * VT_I * VT_I + i] = 0.1f * (float)((i * 7 + b) % 5) + ((i / VT_I) % VT_K == y[b] ? 1.0f : 0.0f);
    }
}

static void vit_pass(const attn_ctx *ctx, attn_dtype compute, float *logits, float **grads, size_t *n) {
    attn_vit_config c;
    vit_config(&c, compute);
    attn_vit m;
    float x[VT_B * VT_I * VT_I];
    int32_t y[VT_B];
    vit_data(x, y);
    CHECK_STATUS(attn_vit_init(&m, ctx, &c, 4), ATTN_OK);
    CHECK(m.blk[0].attn.compute == compute && m.blk[1].attn.compute == compute);
    CHECK_STATUS(attn_vit_forward(&m, logits, NULL, x, VT_B), ATTN_OK);
    float loss;
    CHECK_STATUS(attn_vit_loss_grad(&m, x, y, VT_B, &loss), ATTN_OK);
    *n = m.n_params;
    *grads = malloc(sizeof(float) * m.n_params);
    memcpy(*grads, m.grads, sizeof(float) * m.n_params);
    attn_vit_free(&m);
}

static void test_vit(const attn_ctx *amx, const attn_ctx *plain) {
    printf("Vision Transformer (2 blocks, width 32, 2 heads, 17 tokens)\n");
    compare_compute(vit_pass, "logits", VT_B * VT_K, 2e-2, 5e-2, amx, plain);
    float o32[VT_B * VT_K], o16[VT_B * VT_K];

    const attn_ctx *ctx = amx ? amx : plain;
    attn_vit_config c;
    vit_config(&c, ATTN_DTYPE_BF16);
    attn_vit m;
    CHECK_STATUS(attn_vit_init(&m, ctx, &c, 9), ATTN_OK);
    attn_adam opt;
    CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 3e-3f), ATTN_OK);
    float x[VT_B * VT_I * VT_I], first = 0, loss = 0;
    int32_t y[VT_B];
    vit_data(x, y);
    for (int s = 0; s < 20; s++) {
        CHECK_STATUS(attn_vit_train_step(&m, &opt, x, y, VT_B, 1.0f, &loss, NULL), ATTN_OK);
        if (s == 0) first = loss;
    }
    printf("  training, bf16 compute (%s): loss %.4f -> %.4f over 20 steps\n", attn_isa_name(ctx->isa), first, loss);
    CHECK(isfinite(loss) && loss < 0.7f * first);

    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/vit.safetensors", g_dir);
    const char *const keys[1] = {"epoch"}, *const vals[1] = {"1"};
    CHECK_STATUS(attn_vit_save(&m, &opt, keys, vals, 1, path, err, sizeof err), ATTN_OK);
    attn_vit l;
    attn_adam lo;
    CHECK_STATUS(attn_vit_load(&l, &lo, ctx, path, VT_B, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.compute == ATTN_DTYPE_BF16 && l.blk[0].attn.compute == ATTN_DTYPE_BF16);
    CHECK_STATUS(attn_vit_forward(&m, o32, NULL, x, VT_B), ATTN_OK);
    CHECK_STATUS(attn_vit_forward(&l, o16, NULL, x, VT_B), ATTN_OK);
    printf("  checkpoint: compute %s after load, logits %s\n", l.cfg.compute == ATTN_DTYPE_BF16 ? "bf16" : "f32",
           memcmp(o16, o32, sizeof o32) == 0 ? "the same bits" : "DIFFERENT");
    CHECK(memcmp(o16, o32, sizeof o32) == 0);
    attn_vit_free(&l);
    attn_adam_free(&lo);
    CHECK(patch_file(path, "\"compute\":\"bf16\"", "\"compute\":\"f16 \""));
    err[0] = 0;
    CHECK_STATUS(attn_vit_load(&l, NULL, ctx, path, VT_B, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  bad value: %s\n", err);
    CHECK(strstr(err, "compute") != NULL);
    c.compute = ATTN_DTYPE_I32;
    CHECK_STATUS(attn_vit_config_check(&c), ATTN_ERR_ARG);
    attn_adam_free(&opt);
    attn_vit_free(&m);
}

/* ---------------------------------------------------------------------------------------------------
 * The IMDB classifier (its own fused self-attention).
 */
enum { IM_V = 60, IM_T = 24, IM_B = 8 };

static void im_config(attn_imdb_config *c, attn_dtype compute) {
    attn_imdb_config_default(c);
    c->V = IM_V;
    c->D = 32;
    c->T = IM_T;
    c->compute = compute;
}

static void im_data(int32_t *ids, int32_t *labels) {
    for (int b = 0; b < IM_B; b++) {
        labels[b] = b & 1;
        for (int t = 0; t < IM_T; t++)      /* the label says which half of the vocabulary the words come from */
            ids[b * IM_T + t] = t < b ? 0 : ATTN_IMDB_FIRST_WORD + labels[b] * 25 + (b * 7 + t * 3) % 25;
    }
}

static void im_pass(const attn_ctx *ctx, attn_dtype compute, float *probs, float **grads, size_t *n) {
    attn_imdb_config c;
    im_config(&c, compute);
    attn_imdb_model m;
    int32_t ids[IM_B * IM_T], labels[IM_B];
    im_data(ids, labels);
    CHECK_STATUS(attn_imdb_model_init(&m, ctx, &c, IM_B, 3), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, IM_B, 0, 0, NULL, NULL, NULL), ATTN_OK);
    memcpy(probs, m.probs, sizeof(float) * IM_B * 2);
    attn_imdb_model_zero_grad(&m, 1);
    CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, IM_B, 0, 0), ATTN_OK);
    *n = m.n_params;
    *grads = malloc(sizeof(float) * m.n_params);
    memcpy(*grads, m.grads, sizeof(float) * m.n_params);
    attn_imdb_model_free(&m);
}

static void test_imdb(const attn_ctx *amx, const attn_ctx *plain) {
    printf("IMDB classifier (width 32, T = %d)\n", IM_T);
    compare_compute(im_pass, "probabilities", IM_B * 2, 1e-2, 5e-2, amx, plain);

    const attn_ctx *ctx = amx ? amx : plain;
    attn_imdb_config c;
    im_config(&c, ATTN_DTYPE_BF16);
    attn_imdb_model m;
    CHECK_STATUS(attn_imdb_model_init(&m, ctx, &c, IM_B, 5), ATTN_OK);
    attn_adam a;
    CHECK_STATUS(attn_adam_alloc(&a, m.n_params, 1e-2f), ATTN_OK);
    int32_t ids[IM_B * IM_T], labels[IM_B];
    im_data(ids, labels);
    double first = 0, loss = 0;
    for (int s = 0; s < 30; s++) {
        loss = 0;
        attn_imdb_model_zero_grad(&m, 0);
        CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, IM_B, 1, (uint64_t)s, NULL, &loss, NULL), ATTN_OK);
        CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, IM_B, 1, (uint64_t)s), ATTN_OK);
        attn_adam_step(&a, m.params, m.grads);
        if (s == 0) first = loss;
    }
    printf("  training, bf16 compute (%s): loss %.4f -> %.4f over 30 steps\n", attn_isa_name(ctx->isa),
           first / IM_B, loss / IM_B);
    CHECK(isfinite(loss) && loss < 0.7 * first);

    char blob[1024];
    size_t nb = 0;
    for (int i = 0; i < IM_V; i++)
        nb += (size_t)snprintf(blob + nb, sizeof blob - nb, i < ATTN_IMDB_FIRST_WORD ? "<r%d>" : "w%d", i) + 1;
    attn_imdb_vocab v;
    CHECK_STATUS(attn_imdb_vocab_from_blob(&v, blob, nb, IM_V), ATTN_OK);
    attn_imdb_run_info run = {1, 0, IM_B, a.t, 1e-2f, 5, 0};
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/imdb.safetensors", g_dir);
    CHECK_STATUS(attn_imdb_model_save(&m, &a, &v, &run, path, err, sizeof err), ATTN_OK);
    attn_imdb_model l;
    CHECK_STATUS(attn_imdb_model_load(&l, ctx, IM_B, NULL, NULL, NULL, path, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.compute == ATTN_DTYPE_BF16);
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, IM_B, 0, 0, NULL, NULL, NULL), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&l, ids, labels, IM_B, 0, 0, NULL, NULL, NULL), ATTN_OK);
    printf("  checkpoint: compute %s after load, probabilities %s\n", l.cfg.compute == ATTN_DTYPE_BF16 ? "bf16" : "f32",
           memcmp(l.probs, m.probs, sizeof(float) * IM_B * 2) == 0 ? "the same bits" : "DIFFERENT");
    CHECK(memcmp(l.probs, m.probs, sizeof(float) * IM_B * 2) == 0);
    attn_imdb_model_free(&l);
    CHECK(patch_file(path, "\"compute\":\"bf16\"", "\"compute\":\"BF16\""));
    err[0] = 0;
    CHECK_STATUS(attn_imdb_model_load(&l, ctx, IM_B, NULL, NULL, NULL, path, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  bad value: %s\n", err);
    CHECK(strstr(err, "compute") != NULL);
    attn_imdb_vocab_free(&v);
    attn_adam_free(&a);
    attn_imdb_model_free(&m);
}

/* ---------------------------------------------------------------------------------------------------
 * The Bahdanau seq2seq (d2l's shape, smaller): the additive attention of every decoder step. Its loss is
 * the fp32 twin's up to the attention's rounding; the products are rounded where the path has bf16 units
 * (AMX here; the AVX-512 loops run them for both bf16 paths).
 */
enum { S2_B = 6, S2_T = 9, S2_V = 17 };

static void s2_config(attn_seq2seq_config *c, attn_dtype compute, float dropout, int max_batch) {
    *c = (attn_seq2seq_config){.src_vocab = S2_V, .tgt_vocab = S2_V, .embed = 16, .hidden = 24, .layers = 2,
                               .dropout = dropout, .num_steps = S2_T, .max_batch = max_batch, .compute = compute};
}

static void s2_data(int32_t *X, int32_t *XL, int32_t *Y, int32_t *YL, int n, unsigned seed) {
    for (int i = 0; i < n * S2_T; i++) {
        seed = seed * 1103515245u + 12345u;
        X[i] = 3 + (int)((seed >> 16) % (S2_V - 3));
        Y[i] = 3 + (int)((seed >> 8) % (S2_V - 3));
    }
    for (int b = 0; b < n; b++) {
        XL[b] = S2_T - (b % 4);
        YL[b] = S2_T - 2 * (b % 3);
    }
}

static void s2_pass(const attn_ctx *ctx, attn_dtype compute, float *loss, float **grads, size_t *n) {
    attn_seq2seq_config c;
    s2_config(&c, compute, 0.0f, S2_B);
    attn_seq2seq m;
    int32_t X[S2_B * S2_T], XL[S2_B], Y[S2_B * S2_T], YL[S2_B];
    s2_data(X, XL, Y, YL, S2_B, 5);
    CHECK_STATUS(attn_seq2seq_init(&m, ctx, &c, 3), ATTN_OK);
    CHECK_STATUS(attn_seq2seq_step(&m, loss, X, XL, Y, YL, S2_B, 1, 1, 9), ATTN_OK);
    *n = m.n_params;
    *grads = malloc(sizeof(float) * m.n_params);
    memcpy(*grads, m.grads, sizeof(float) * m.n_params);
    attn_seq2seq_free(&m);
}

static void test_seq2seq(const attn_ctx *amx, const attn_ctx *plain) {
    printf("Bahdanau seq2seq (embedding 16, 2-layer GRU 24, additive attention 24, T = %d)\n", S2_T);
    /* bounds: measured loss 3.6e-7 and gradient 2.2e-4 (the attention is a small part of this model) */
    compare_compute(s2_pass, "loss", 1, 1e-4, 0.01, amx, plain);

    /* a short training with bf16 compute lowers the loss as the fp32 one does; then the checkpoint */
    const attn_ctx *ctx = amx ? amx : plain;
    enum { N = 24 };
    attn_seq2seq_config c;
    attn_seq2seq m;
    attn_adam opt;
    int32_t X[N * S2_T], XL[N], Y[N * S2_T], YL[N];
    s2_data(X, XL, Y, YL, N, 31);
    for (int b = 0; b < N; b++) memcpy(Y + b * S2_T, X + b * S2_T, sizeof(int32_t) * S2_T);   /* copy task */
    double first[2] = {0, 0}, last[2] = {0, 0};
    for (int k = 0; k < 2; k++) {           /* fp32, then bf16 (kept) */
        s2_config(&c, k ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32, 0.1f, S2_B);
        CHECK_STATUS(attn_seq2seq_init(&m, ctx, &c, 13), ATTN_OK);
        CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 0.01f), ATTN_OK);
        attn_rng rng;
        attn_rng_seed(&rng, 1);
        uint64_t seed = 1;
        for (int e = 0; e < 15; e++) {
            double sum = 0;
            int64_t tokens = 0;
            CHECK_STATUS(attn_seq2seq_train_epoch(&m, &opt, &rng, X, XL, Y, YL, N, S2_B, 1.0f, &seed, &sum, &tokens),
                         ATTN_OK);
            if (e == 0) first[k] = sum / (double)tokens;
            last[k] = sum / (double)tokens;
        }
        if (k == 0) {
            attn_adam_free(&opt);
            attn_seq2seq_free(&m);
        }
    }
    printf("  training (%s), loss per token over 15 epochs: fp32 %.4f -> %.4f, bf16 %.4f -> %.4f\n",
           attn_isa_name(ctx->isa), first[0], last[0], first[1], last[1]);
    CHECK(isfinite(last[1]) && last[1] < 0.85 * first[1] && fabs(last[1] - last[0]) < 0.1 * last[0]);

    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/s2s.safetensors", g_dir);
    CHECK_STATUS(attn_seq2seq_save(&m, path, err, sizeof err), ATTN_OK);
    attn_seq2seq l;
    CHECK_STATUS(attn_seq2seq_load(&l, ctx, path, S2_B, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.compute == ATTN_DTYPE_BF16);
    float la, lb;
    CHECK_STATUS(attn_seq2seq_step(&m, &la, X, XL, Y, YL, S2_B, 0, 0, 0), ATTN_OK);
    CHECK_STATUS(attn_seq2seq_step(&l, &lb, X, XL, Y, YL, S2_B, 0, 0, 0), ATTN_OK);
    printf("  checkpoint: compute %s after load, loss %.6g vs %.6g before\n",
           l.cfg.compute == ATTN_DTYPE_BF16 ? "bf16" : "f32", (double)lb, (double)la);
    CHECK(la == lb);
    attn_seq2seq_free(&l);
    /* an older checkpoint (no "compute" key: renamed here) loads as f32; a bad value is refused */
    CHECK(patch_file(path, "\"compute\"", "\"computf\""));
    CHECK_STATUS(attn_seq2seq_load(&l, ctx, path, S2_B, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.compute == ATTN_DTYPE_F32);
    attn_seq2seq_free(&l);
    CHECK(patch_file(path, "\"computf\":\"bf16\"", "\"compute\":\"bf61\""));
    err[0] = 0;
    CHECK_STATUS(attn_seq2seq_load(&l, ctx, path, S2_B, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  bad value: %s\n", err);
    CHECK(strstr(err, "compute") && strstr(err, "bf61"));
    c.compute = ATTN_DTYPE_F64;
    CHECK_STATUS(attn_seq2seq_init(&l, ctx, &c, 1), ATTN_ERR_ARG);
    attn_adam_free(&opt);
    attn_seq2seq_free(&m);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/attn_test_precision_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    attn_ctx amx, bf, plain;
    const attn_ctx *pb = NULL;
    if (attn_ctx_init(&amx, ATTN_ISA_AMX, 2) == ATTN_OK) pb = &amx;
    /* without AMX, AVX512-BF16 computes every model's attention in bf16 */
    else if (attn_ctx_init(&bf, ATTN_ISA_AVX512BF16, 2) == ATTN_OK) pb = &bf;
    else printf("no path with bf16 units here (a CPU without AMX-BF16 or AVX512-BF16, or AMX refused by the OS): "
                "the bf16-against-fp32 checks and bf16 trainings on one are skipped; training runs on the path "
                "below\n");
    if (attn_ctx_init(&plain, ATTN_ISA_AVX2, 2) != ATTN_OK) CHECK_STATUS(attn_ctx_init(&plain, ATTN_ISA_SCALAR, 2), ATTN_OK);
    printf("paths: %s (bf16 units), %s (none)\n", pb ? attn_isa_name(pb->isa) : "-", attn_isa_name(plain.isa));
    test_transformer(pb, &plain);
    test_vit(pb, &plain);
    test_imdb(pb, &plain);
    test_seq2seq(pb, &plain);
    char p[600];
    const char *const files[4] = {"tf", "vit", "imdb", "s2s"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s.safetensors", g_dir, files[i]);
        unlink(p);
    }
    if (rmdir(g_dir) != 0) fprintf(stderr, "note: could not remove %s\n", g_dir);
    return tu_finish("test_precision");
}
