/*
 * test_translate.c — the seq2seq model with Bahdanau attention.
 *  1. Against PyTorch (tests/golden/seq2seq_model.safetensors, tools/golden/gen_seq2seq.py): the d2l
 *     model's teacher-forced masked loss on a padded batch, the gradient of every parameter (encoder,
 *     attention, every decoder step, dense), and greedy decoding with its attention weights.
 *  2. Checkpoints: save, load, same translation; a corrupt checkpoint is refused.
 *  3. A short training run on the book's 601 pairs (on the counting fixture of nmt_fixture.h when
 *     ../shared/data is absent): 12 epochs must lower the loss by a factor of at least 2.5.
 *  4. Step by step: an epoch as attn_seq2seq_train_step_part calls (the program's loop: shuffle, gather,
 *     step) has the bits of attn_seq2seq_train_epoch; a training checkpoint (save_train) gives back the
 *     optimizer, and one saved without it cannot resume.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/seq2seq.h"
#include "testutil.h"
#include "nmt_fixture.h"

#include <cblas.h>

#include <string.h>
#include <time.h>
#include <unistd.h>

/* The reference context (every kernel on the reference path) and the default one (the best path). */
static const attn_ctx *path_ctx(int ref) {
    static attn_ctx c;
    if (!ref) return NULL;
    attn_ctx_init(&c, ATTN_ISA_REF, 1);
    return &c;
}

static attn_status load_golden_model(attn_st_file *f, attn_seq2seq *m, const attn_ctx *ctx) {
    attn_seq2seq_config c = {7, 8, 4, 5, 2, 0.0f, 4, 3, ATTN_DTYPE_F32};
    attn_status st = attn_seq2seq_init(m, ctx, &c, 1);
    if (st != ATTN_OK) return st;
    /* every parameter by name: the checkpoint loader's list is the same, so go through a save/load of
     * the golden values instead: copy each golden tensor into the slab by its state_dict order */
    const char *names = attn_st_meta(f, "names");
    if (!names) return ATTN_ERR_FORMAT;
    size_t off = 0;
    const char *s = names;
    for (;;) {
        const char *e = strchr(s, ',');
        char n[96];
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len >= sizeof n) return ATTN_ERR_FORMAT;
        memcpy(n, s, len); n[len] = 0;
        const attn_st_tensor *t = attn_st_find(f, n);
        if (!t || t->dtype != ATTN_DTYPE_F32 || off + t->nbytes / 4 > m->n_params) return ATTN_ERR_FORMAT;
        memcpy(m->params + off, t->data, t->nbytes);
        off += t->nbytes / 4;
        if (!e) break;
        s = e + 1;
    }
    return off == m->n_params ? ATTN_OK : ATTN_ERR_SHAPE;
}

static void test_golden(const char *dir, int ref) {
    attn_st_file f;
    char err[256];
    attn_status st = attn_st_read(&f, ATTN_GOLDEN_DIR "/seq2seq_model.safetensors", 0, err, sizeof err);
    CHECK_STATUS(st, ATTN_OK);
    if (st != ATTN_OK) { fprintf(stderr, "%s\n", err); return; }
    attn_seq2seq m;
    CHECK_STATUS(load_golden_model(&f, &m, path_ctx(ref)), ATTN_OK);
    printf(" kernel path: %s\n", attn_isa_name(m.ctx.isa));
    const attn_st_tensor *tx = attn_st_find(&f, "X"), *txl = attn_st_find(&f, "X_len"), *ty = attn_st_find(&f, "Y"),
                         *tyl = attn_st_find(&f, "Y_len"), *tl = attn_st_find(&f, "loss"), *tp = attn_st_find(&f, "pred"),
                         *tw = attn_st_find(&f, "pred_weights");
    CHECK(tx && txl && ty && tyl && tl && tp && tw);
    if (!(tx && txl && ty && tyl && tl && tp && tw) || !m.params) { attn_st_free(&f); attn_seq2seq_free(&m); return; }
    const int32_t *X = tx->data, *X_len = txl->data, *Y = ty->data, *Y_len = tyl->data;

    /* loss and gradients */
    float loss = 0;
    memset(m.grads, 0, sizeof(float) * m.n_params);
    CHECK_STATUS(attn_seq2seq_step(&m, &loss, X, X_len, Y, Y_len, 3, 0, 1, 0), ATTN_OK);
    tu_close_f32("model loss (masked CE, summed)", &loss, tl->data, 1, 1e-6, 1e-5);
    float *want = calloc(m.n_params, sizeof(float));
    const char *names = attn_st_meta(&f, "names");
    size_t off = 0;
    for (const char *s = names; s;) {
        const char *e = strchr(s, ',');
        char n[128];
        size_t len = e ? (size_t)(e - s) : strlen(s);
        snprintf(n, sizeof n, "grad.%.*s", (int)len, s);
        const attn_st_tensor *t = attn_st_find(&f, n);
        CHECK(t != NULL);
        if (t) {
            /* per tensor, so a failure names the layer */
            tu_close_f32(n, m.grads + off, t->data, t->nbytes / 4, 2e-6, 1e-4);
            memcpy(want + off, t->data, t->nbytes);
            off += t->nbytes / 4;
        }
        s = e ? e + 1 : NULL;
    }
    tu_close_f32("model: every gradient", m.grads, want, m.n_params, 2e-6, 1e-4);
    free(want);

    /* the forward alone gives the same loss; training mode without dropout too */
    float loss2 = 0;
    CHECK_STATUS(attn_seq2seq_step(&m, &loss2, X, X_len, Y, Y_len, 3, 1, 0, 0), ATTN_OK);
    CHECK(loss2 == loss);

    /* greedy decoding of X[0] and its attention weights */
    int32_t out[4];
    float w[16];
    int n_out = -1;
    CHECK_STATUS(attn_seq2seq_translate(&m, out, &n_out, w, X, X_len[0]), ATTN_OK);
    const int32_t *pred = tp->data;
    int want_n = 0;
    while (want_n < 4 && pred[want_n] >= 0) want_n++;
    CHECK(n_out == want_n);
    int same = n_out == want_n;
    for (int i = 0; same && i < n_out; i++) same = out[i] == pred[i];
    CHECK(same);
    printf("  greedy: %d tokens (PyTorch %d)\n", n_out, want_n);
    int rows = want_n < 4 ? want_n + 1 : 4;
    tu_close_f32("greedy attention weights", w, tw->data, (size_t)rows * 4, 1e-5, 1e-4);

    /* checkpoint round trip */
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_STATUS(attn_seq2seq_save(&m, path, err, sizeof err), ATTN_OK);
    attn_seq2seq m2;
    st = attn_seq2seq_load(&m2, NULL, path, 3, err, sizeof err);
    CHECK_STATUS(st, ATTN_OK);
    if (st == ATTN_OK) {
        CHECK(m2.n_params == m.n_params && memcmp(m2.params, m.params, sizeof(float) * m.n_params) == 0);
        CHECK(m2.cfg.hidden == 5 && m2.cfg.layers == 2 && m2.cfg.num_steps == 4 && m2.cfg.tgt_vocab == 8);
        int32_t out2[4];
        int n2 = -1;
        CHECK_STATUS(attn_seq2seq_translate(&m2, out2, &n2, NULL, X, X_len[0]), ATTN_OK);
        CHECK(n2 == n_out && memcmp(out2, out, sizeof(int32_t) * (size_t)n_out) == 0);
        attn_seq2seq_free(&m2);
    } else fprintf(stderr, "%s\n", err);
    /* a truncated checkpoint is refused with a message */
    FILE *fp = fopen(path, "r+b");
    if (fp) { CHECK(ftruncate(fileno(fp), 100) == 0); fclose(fp); }
    CHECK(attn_seq2seq_load(&m2, NULL, path, 1, err, sizeof err) != ATTN_OK);
    printf("  truncated checkpoint: %s\n", err);
    CHECK(strstr(err, "model.safetensors") != NULL);

    /* bad input */
    int32_t badX[12];
    memcpy(badX, X, sizeof badX);
    badX[5] = 99;
    CHECK_STATUS(attn_seq2seq_step(&m, &loss, badX, X_len, Y, Y_len, 3, 0, 0, 0), ATTN_ERR_ARG);
    CHECK_STATUS(attn_seq2seq_step(&m, &loss, X, X_len, Y, Y_len, 4, 0, 0, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_seq2seq_step(&m, NULL, X, X_len, Y, Y_len, 3, 0, 0, 0), ATTN_ERR_NULL);
    /* with dropout (GRU and attention), the fast path matches the reference path (every kernel of the
     * model: additive attention, GRU gates, Adam) */
    if (!ref) {
        attn_seq2seq_config cd = m.cfg;
        cd.dropout = 0.3f;
        attn_seq2seq a[2];
        float la[2];
        for (int k = 0; k < 2; k++) {
            CHECK_STATUS(attn_seq2seq_init(&a[k], path_ctx(k), &cd, 1), ATTN_OK);
            memcpy(a[k].params, m.params, sizeof(float) * m.n_params);
            CHECK_STATUS(attn_seq2seq_step(&a[k], &la[k], X, X_len, Y, Y_len, 3, 1, 1, 77), ATTN_OK);
        }
        tu_close_f32("dropout 0.3: loss, fast vs reference path", &la[0], &la[1], 1, 1e-6, 1e-5);
        tu_close_f32("dropout 0.3: grads, fast vs reference path", a[0].grads, a[1].grads, m.n_params, 2e-6, 1e-4);
        CHECK(la[0] != loss);                                       /* dropout did something */
        attn_seq2seq_free(&a[0]); attn_seq2seq_free(&a[1]);
    }
    attn_seq2seq_config bad = {7, 8, 4, 5, 2, 1.5f, 4, 3, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_seq2seq_init(&m2, NULL, &bad, 1), ATTN_ERR_ARG);
    attn_seq2seq_free(&m);
    attn_st_free(&f);
}

/* A few epochs on the book's 601 pairs (or the fixture): the loss must fall by the stated factor. */
static void test_short_training(const char *dir) {
    printf("short training\n");
    nmt_train_set ds;
    CHECK(nmt_train_set_load(&ds, dir) == 0);
    if (!ds.X) return;
    if (ds.real) CHECK(ds.vs.n == 184 && ds.vt.n == 201);
    else CHECK(ds.vs.n == 17 && ds.vt.n == 17);
    const int T = ds.T, N = ds.n;
    const int32_t *X = ds.X, *Y = ds.Y, *Xl = ds.X_len, *Yl = ds.Y_len;
    attn_seq2seq m;
    attn_seq2seq_config c = {ds.vs.n, ds.vt.n, 32, 32, 2, 0.1f, T, 64, ATTN_DTYPE_F32};

    /* the same two epochs on 1 and on 2 threads give bitwise the same parameters (with OpenBLAS on one
     * thread, as `attn translate` runs it: OpenBLAS's own threading of the dense layer's GEMMs rounds
     * differently from its single-threaded kernels) */
    openblas_set_num_threads(1);
    float *after[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        attn_set_num_threads(k + 1);
        CHECK_STATUS(attn_seq2seq_init(&m, NULL, &c, 7), ATTN_OK);
        attn_adam o;
        CHECK_STATUS(attn_adam_alloc(&o, m.n_params, 0.005f), ATTN_OK);
        attn_rng r;
        attn_rng_seed(&r, 7);
        uint64_t sd = 7;
        for (int e = 0; e < 2; e++) {
            double ls;
            int64_t tok;
            CHECK_STATUS(attn_seq2seq_train_epoch(&m, &o, &r, X, Xl, Y, Yl, N, 64, 1.0f, &sd, &ls, &tok), ATTN_OK);
        }
        after[k] = malloc(sizeof(float) * m.n_params);
        memcpy(after[k], m.params, sizeof(float) * m.n_params);
        attn_adam_free(&o);
        attn_seq2seq_free(&m);
    }
    CHECK_STATUS(attn_seq2seq_init(&m, NULL, &c, 7), ATTN_OK);
    int same = memcmp(after[0], after[1], sizeof(float) * m.n_params) == 0;
    CHECK(same);
    printf("  2 epochs on 1 and 2 threads: parameters %s\n", same ? "bitwise identical" : "DIFFER");
    free(after[0]); free(after[1]);
    attn_seq2seq_free(&m);
    attn_set_num_threads(1);      /* the timed run below: one thread, steady on a shared machine */

    CHECK_STATUS(attn_seq2seq_init(&m, NULL, &c, 42), ATTN_OK);
    attn_adam opt;
    CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 0.005f), ATTN_OK);
    attn_rng rng;
    attn_rng_seed(&rng, 42);
    uint64_t seed = 42;
    double first = 0, last = 0;
    const int epochs = 12;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int e = 0; e < epochs; e++) {
        double ls;
        int64_t tok;
        CHECK_STATUS(attn_seq2seq_train_epoch(&m, &opt, &rng, X, Xl, Y, Yl, N, 64, 1.0f, &seed, &ls, &tok), ATTN_OK);
        if (e == 0) first = ls / (double)tok;
        last = ls / (double)tok;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  %d epochs: loss %.4f -> %.4f (factor %.2f, need >= 2.5) in %.2f s\n", epochs, first, last,
           first / last, secs);
    CHECK(first / last >= 2.5);
    attn_adam_free(&opt);
    attn_seq2seq_free(&m);
    nmt_train_set_free(&ds);
}

/* One epoch, then half of the next, as the program runs them: step by step in the shuffled order. */
static void steps_epoch(attn_seq2seq *m, attn_adam *o, attn_rng *r, uint64_t *sd, const nmt_train_set *ds, int batch,
                        int n_steps) {
    const int N = ds->n, T = ds->T;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)N), *b = malloc(sizeof(int32_t) * (size_t)batch * (2 * T + 2));
    CHECK(idx && b);
    if (!idx || !b) { free(idx); free(b); return; }
    int32_t *by = b + (size_t)batch * T, *bxl = by + (size_t)batch * T, *byl = bxl + batch;
    for (int i = 0; i < N; i++) idx[i] = i;
    attn_rng_shuffle(r, idx, (size_t)N);
    for (int s = 0, lo = 0; s < n_steps && lo < N; s++, lo += batch) {
        const int B = N - lo < batch ? N - lo : batch;
        for (int k = 0; k < B; k++) {
            const int i = idx[lo + k];
            memcpy(b + (size_t)k * T, ds->X + (size_t)i * T, sizeof(int32_t) * T);
            memcpy(by + (size_t)k * T, ds->Y + (size_t)i * T, sizeof(int32_t) * T);
            bxl[k] = ds->X_len[i];
            byl[k] = ds->Y_len[i];
        }
        float loss;
        CHECK_STATUS(attn_seq2seq_train_step_part(m, o, b, bxl, by, byl, B, 1.0f, sd, 0, 0, NULL, NULL, &loss), ATTN_OK);
    }
    free(idx);
    free(b);
}

static void test_steps(const char *dir) {
    printf("step by step, and training checkpoints\n");
    nmt_train_set ds;
    CHECK(nmt_train_set_load(&ds, dir) == 0);
    if (!ds.X) return;
    attn_seq2seq_config c = {ds.vs.n, ds.vt.n, 16, 16, 2, 0.1f, ds.T, 64, ATTN_DTYPE_F32};
    attn_seq2seq m[2];
    attn_adam o[2];
    attn_rng r[2];
    uint64_t sd[2] = {5, 5};
    for (int k = 0; k < 2; k++) {
        CHECK_STATUS(attn_seq2seq_init(&m[k], NULL, &c, 5), ATTN_OK);
        CHECK_STATUS(attn_adam_alloc(&o[k], m[k].n_params, 0.005f), ATTN_OK);
        attn_rng_seed(&r[k], 5);
    }
    double ls;
    int64_t tok;
    CHECK_STATUS(attn_seq2seq_train_epoch(&m[0], &o[0], &r[0], ds.X, ds.X_len, ds.Y, ds.Y_len, ds.n, 64, 1.0f, &sd[0],
                                          &ls, &tok), ATTN_OK);
    steps_epoch(&m[1], &o[1], &r[1], &sd[1], &ds, 64, 1 << 30);
    int same = memcmp(m[0].params, m[1].params, sizeof(float) * m[0].n_params) == 0 && sd[0] == sd[1] &&
               o[0].t == o[1].t && r[0].state == r[1].state;
    CHECK(same);
    printf("  one epoch, and its %lld steps one by one: parameters %s\n", (long long)o[0].t,
           same ? "bitwise identical" : "DIFFER");

    /* a training checkpoint: parameters, moments and step come back; the run's pairs are kept */
    char path[600], old[600], err[512] = "";
    snprintf(path, sizeof path, "%s/train.safetensors", dir);
    snprintf(old, sizeof old, "%s/plain.safetensors", dir);
    const char *keys[1] = {"epoch"}, *vals[1] = {"1"};
    CHECK_STATUS(attn_seq2seq_save_train(&m[1], &o[1], keys, vals, 1, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_seq2seq_save(&m[1], old, err, sizeof err), ATTN_OK);
    attn_seq2seq back;
    attn_adam ob;
    CHECK_STATUS(attn_seq2seq_load_train(&back, &ob, NULL, path, 64, err, sizeof err), ATTN_OK);
    if (back.params) {
        CHECK(ob.t == o[1].t && memcmp(ob.m, o[1].m, sizeof(float) * ob.n) == 0 &&
              memcmp(ob.v, o[1].v, sizeof(float) * ob.n) == 0);
        CHECK(memcmp(back.params, m[1].params, sizeof(float) * back.n_params) == 0);
        /* half an epoch more from the loaded state equals half an epoch more from the live one */
        ob.lr = o[1].lr;
        attn_rng rb = r[1];
        uint64_t sb = sd[1];
        steps_epoch(&m[1], &o[1], &r[1], &sd[1], &ds, 64, 2);
        steps_epoch(&back, &ob, &rb, &sb, &ds, 64, 2);
        same = memcmp(back.params, m[1].params, sizeof(float) * back.n_params) == 0;
        CHECK(same);
        printf("  2 more steps from the loaded checkpoint and from the live model: %s\n",
               same ? "bitwise identical" : "DIFFER");
        attn_adam_free(&ob);
        attn_seq2seq_free(&back);
    }
    /* a checkpoint of the parameters alone (as every one before) loads, but not with the optimizer */
    CHECK_STATUS(attn_seq2seq_load(&back, NULL, old, 1, err, sizeof err), ATTN_OK);
    attn_seq2seq_free(&back);
    err[0] = 0;
    CHECK_STATUS(attn_seq2seq_load_train(&back, &ob, NULL, old, 1, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "no optimizer state") != NULL);
    printf("  parameters-only checkpoint with the optimizer asked: %s\n", err);
    for (int k = 0; k < 2; k++) {
        attn_adam_free(&o[k]);
        attn_seq2seq_free(&m[k]);
    }
    nmt_train_set_free(&ds);
}

int main(void) {
    char dir[] = "/tmp/attn_translate_XXXXXX";
    if (!mkdtemp(dir)) { fprintf(stderr, "mkdtemp failed\n"); return 1; }
    test_golden(dir, 0);
    test_golden(dir, 1);
    test_short_training(dir);
    test_steps(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_translate");
}
