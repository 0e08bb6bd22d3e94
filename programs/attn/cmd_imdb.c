/*
 * cmd_imdb.c — `attn imdb train|eval|predict`: the IMDB sentiment experiment of SPEC §4.C.
 *
 *   train    reads the data (or the cache in --out), trains, prints a Keras-like line per epoch, and
 *            saves --out/imdb.safetensors after every epoch (atomically), with the Adam state so
 *            --resume continues exactly (shuffling and dropout are pure functions of seed and step).
 *   eval     loads the checkpoint and evaluates the test split.
 *   predict  loads the checkpoint (it carries its vocabulary), prints the positive probability and a
 *            heatmap of the attention each word receives; --png writes the full word-by-word matrix.
 *
 * Files in --out: imdb.safetensors (checkpoint), imdb_cache.bin (the encoded data set; with --limit N,
 * imdb_cache_limitN.bin). Nothing is written before the data has been read and checked.
 *
 * ATTN_IMDB_PROFILE=1 makes train print, after each epoch, the mean time per step of the forward, the
 * backward (with the gradient zeroing) and the Adam step, and the mean number of distinct words per batch.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "imdb_model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CKPT_NAME "imdb.safetensors"
#define CACHE_NAME "imdb_cache.bin"
#define CKPT_FORMAT "attn-imdb-1"
#define EVAL_BATCH 250

typedef struct imdb_flags {
    const char *data, *out, *ckpt, *png;
    int epochs, batch, threads, limit, resume, no_color;
    float lr;
    uint64_t seed;
} imdb_flags;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void set_threads(int n) {
    attn_set_num_threads(n);
    int got = attn_get_num_threads();
    attn_blas_set_num_threads(got > 0 ? got : 1);
}

static int make_dir(const char *path) {
    struct stat s;
    if (stat(path, &s) == 0) {
        if (S_ISDIR(s.st_mode)) return 0;
        fprintf(stderr, "attn: imdb: --out %s exists and is not a folder\n", path);
        return 1;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (stat(buf, &s) != 0 && mkdir(buf, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "attn: imdb: cannot create folder %s: %s\n", buf, strerror(errno));
            return 1;
        }
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "attn: imdb: cannot create folder %s: %s\n", buf, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Data: the cache in --out when it matches, else the archive/folder (then the cache is written).
 */
static int load_data(attn_imdb_data *d, const imdb_flags *f, const attn_imdb_options *o) {
    char src[4096], err[1024] = "", cache[4200];
    attn_status st = attn_imdb_locate(f->data, src, sizeof src, err, sizeof err);
    /* one cache per --limit, so that runs with different limits in one folder do not replace each other's */
    if (o->limit > 0) snprintf(cache, sizeof cache, "%s/imdb_cache_limit%d.bin", f->out, o->limit);
    else snprintf(cache, sizeof cache, "%s/%s", f->out, CACHE_NAME);
    if (st != ATTN_OK) {
        /* No source: a cache alone is enough (e.g. the data was moved after the first run). */
        if (attn_imdb_cache_load(d, o, NULL, cache, NULL, 0) == ATTN_OK) {
            fprintf(stderr, "attn: imdb: note: %s; using the cache %s\n", err, cache);
            return 0;
        }
        fprintf(stderr, "attn: imdb: %s\n", err);
        return 1;
    }
    double t0 = now_s();
    st = attn_imdb_cache_load(d, o, src, cache, err, sizeof err);
    if (st == ATTN_OK) {
        fprintf(stderr, "attn: imdb: data from the cache %s (%.2f s): %d train, %d test reviews\n", cache,
                now_s() - t0, d->train.n, d->test.n);
        return 0;
    }
    if (st == ATTN_ERR_FORMAT) fprintf(stderr, "attn: imdb: note: ignoring a corrupt cache: %s\n", err);
    else if (st == ATTN_ERR_ARG) fprintf(stderr, "attn: imdb: note: rebuilding a stale cache: %s\n", err);
    t0 = now_s();
    err[0] = '\0';
    st = attn_imdb_load(d, src, o, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    fprintf(stderr, "attn: imdb: read %s in %.2f s: %d train, %d test reviews\n", src, now_s() - t0,
            d->train.n, d->test.n);
    if (make_dir(f->out) == 0 && attn_imdb_cache_save(d, o, cache, err, sizeof err) != ATTN_OK)
        fprintf(stderr, "attn: imdb: note: cache not written: %s\n", err);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
typedef struct ckpt_meta {
    int epoch, limit, batch;
    int64_t adam_t;
    float lr;
    uint64_t seed;
} ckpt_meta;

static attn_status ckpt_save(const char *path, const imdb_model *m, const attn_adam *a, const attn_imdb_vocab *v,
                             const ckpt_meta *cm, char *err, size_t es) {
    const imdb_config *c = &m->cfg;
    attn_st_tensor t[7];
    memset(t, 0, sizeof t);
    const char *names[7] = {"embedding.weight", "selfattn.kernel", "dense.weight", "dense.bias", "adam.m", "adam.v", "vocab"};
    const float *data[6] = {m->emb, m->kernel, m->dense_w, m->dense_b, a->m, a->v};
    int64_t shapes[6][3] = {{c->V, c->D, 0}, {3, c->D, c->D}, {c->C, c->D, 0}, {c->C, 0, 0},
                            {(int64_t)m->n_params, 0, 0}, {(int64_t)m->n_params, 0, 0}};
    int ndims[6] = {2, 3, 2, 1, 1, 1};
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
    t[6].shape[0] = (int64_t)v->blob_size;
    t[6].data = v->blob;
    t[6].nbytes = v->blob_size;
    char s[12][64];
    snprintf(s[0], 64, "%s", CKPT_FORMAT);
    snprintf(s[1], 64, "%d", c->V);
    snprintf(s[2], 64, "%d", c->T);
    snprintf(s[3], 64, "%d", c->D);
    snprintf(s[4], 64, "%08x", v->crc);
    snprintf(s[5], 64, "%d", cm->epoch);
    snprintf(s[6], 64, "%" PRId64, cm->adam_t);
    snprintf(s[7], 64, "%" PRIu64, cm->seed);
    snprintf(s[8], 64, "%.9g", cm->lr);
    snprintf(s[9], 64, "%d", cm->batch);
    snprintf(s[10], 64, "%d", cm->limit);
    snprintf(s[11], 64, "%zu", m->n_params);
    const char *keys[12] = {"format", "vocab_size", "maxlen", "dim", "vocab_crc32", "epoch", "adam_t", "seed",
                            "lr", "batch", "limit", "n_params"};
    const char *vals[12];
    for (int i = 0; i < 12; i++) vals[i] = s[i];
    return attn_st_write(path, t, 7, keys, vals, 12, err, es);
}

static int meta_int(const attn_st_file *f, const char *key, int64_t *out, const char *path) {
    const char *s = attn_st_meta(f, key);
    char *end;
    if (!s || !*s) {
        fprintf(stderr, "attn: imdb: %s: metadata \"%s\" missing (not an attn imdb checkpoint?)\n", path, key);
        return 1;
    }
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) {
        fprintf(stderr, "attn: imdb: %s: metadata \"%s\" = \"%s\" is not an integer\n", path, key, s);
        return 1;
    }
    *out = v;
    return 0;
}

/* Reads a checkpoint: config, vocabulary, meta; parameters into m (which it initializes) and, when a is
 * given, the Adam moments. expect_crc != 0: the data's vocabulary, which must match. */
static int ckpt_load(const char *path, imdb_model *m, int Bmax, attn_adam *a, attn_imdb_vocab *v, ckpt_meta *cm,
                     uint32_t expect_crc) {
    attn_st_file f;
    char err[1024] = "";
    attn_status st = attn_st_read(&f, path, 0, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    int rc = 1;
    const char *fmt = attn_st_meta(&f, "format");
    int64_t V, T, D, epoch, adam_t, batch, limit;
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        fprintf(stderr, "attn: imdb: %s: not an attn imdb checkpoint (metadata format is %s, expected %s)\n", path,
                fmt ? fmt : "missing", CKPT_FORMAT);
        goto done;
    }
    if (meta_int(&f, "vocab_size", &V, path) || meta_int(&f, "maxlen", &T, path) || meta_int(&f, "dim", &D, path) ||
        meta_int(&f, "epoch", &epoch, path) || meta_int(&f, "adam_t", &adam_t, path) ||
        meta_int(&f, "batch", &batch, path) || meta_int(&f, "limit", &limit, path))
        goto done;
    imdb_config c;
    imdb_config_default(&c);
    if (V != c.V || T != c.T || D != c.D) {
        fprintf(stderr, "attn: imdb: %s: a model of vocabulary %lld, maxlen %lld, width %lld; this program builds "
                "%d, %d, %d\n", path, (long long)V, (long long)T, (long long)D, c.V, c.T, c.D);
        goto done;
    }
    const attn_st_tensor *vt = attn_st_find(&f, "vocab");
    if (!vt || vt->dtype != ATTN_DTYPE_U8 || vt->ndim != 1) {
        fprintf(stderr, "attn: imdb: %s: tensor \"vocab\" (U8, 1-D) missing\n", path);
        goto done;
    }
    if (attn_imdb_vocab_from_blob(v, vt->data, vt->nbytes, (int)V) != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s: tensor \"vocab\" does not hold %lld words\n", path, (long long)V);
        goto done;
    }
    const char *crc_s = attn_st_meta(&f, "vocab_crc32");
    char want[16];
    snprintf(want, sizeof want, "%08x", v->crc);
    if (!crc_s || strcmp(crc_s, want) != 0) {
        fprintf(stderr, "attn: imdb: %s: vocabulary checksum %s does not match its vocab tensor (%s)\n", path,
                crc_s ? crc_s : "missing", want);
        attn_imdb_vocab_free(v);
        goto done;
    }
    if (expect_crc && v->crc != expect_crc) {
        fprintf(stderr, "attn: imdb: %s: trained with another vocabulary (crc %08x) than the data's (crc %08x); "
                "was it trained with another --limit or data set?\n", path, v->crc, expect_crc);
        attn_imdb_vocab_free(v);
        goto done;
    }
    if ((st = imdb_model_init(m, &c, Bmax, 1)) != ATTN_OK) {
        cli_fail(st, "imdb: model");
        attn_imdb_vocab_free(v);
        goto done;
    }
    const char *names[4] = {"embedding.weight", "selfattn.kernel", "dense.weight", "dense.bias"};
    float *dst[4] = {m->emb, m->kernel, m->dense_w, m->dense_b};
    int64_t shapes[4][3] = {{c.V, c.D, 0}, {3, c.D, c.D}, {c.C, c.D, 0}, {c.C, 0, 0}};
    int ndims[4] = {2, 3, 2, 1};
    for (int i = 0; i < 4; i++) {
        const float *p;
        if (attn_st_get_f32(&f, names[i], ndims[i], shapes[i], &p, err, sizeof err) != ATTN_OK) {
            fprintf(stderr, "attn: imdb: %s\n", err);
            goto fail_model;
        }
        size_t n = 1;
        for (int k = 0; k < ndims[i]; k++) n *= (size_t)shapes[i][k];
        memcpy(dst[i], p, n * sizeof(float));
    }
    if (a) {
        int64_t np = (int64_t)m->n_params;
        const float *pm, *pv;
        if (attn_st_get_f32(&f, "adam.m", 1, &np, &pm, err, sizeof err) != ATTN_OK ||
            attn_st_get_f32(&f, "adam.v", 1, &np, &pv, err, sizeof err) != ATTN_OK) {
            fprintf(stderr, "attn: imdb: %s\n", err);
            goto fail_model;
        }
        memcpy(a->m, pm, m->n_params * sizeof(float));
        memcpy(a->v, pv, m->n_params * sizeof(float));
        a->t = adam_t;
    }
    cm->epoch = (int)epoch;
    cm->adam_t = adam_t;
    cm->batch = (int)batch;
    cm->limit = (int)limit;
    const char *s = attn_st_meta(&f, "lr");
    cm->lr = s ? strtof(s, NULL) : 2e-4f;
    s = attn_st_meta(&f, "seed");
    cm->seed = s ? strtoull(s, NULL, 10) : 0;
    rc = 0;
    goto done;
fail_model:
    imdb_model_free(m);
    attn_imdb_vocab_free(v);
done:
    attn_st_free(&f);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Evaluation over a split in batches of EVAL_BATCH.
 */
static int evaluate(imdb_model *m, const attn_imdb_split *s, int T, double *loss, double *acc) {
    double ls = 0;
    int ok = 0;
    attn_status st = imdb_model_eval_prepare(m);
    if (st != ATTN_OK) return cli_fail(st, "imdb: evaluation");
    for (int i = 0; i < s->n; i += m->Bmax) {
        int B = s->n - i < m->Bmax ? s->n - i : m->Bmax;
        st = imdb_model_eval_forward(m, s->ids + (size_t)i * T, s->labels + i, B, &ls, &ok);
        if (st != ATTN_OK) return cli_fail(st, "imdb: forward");
    }
    *loss = ls / s->n;
    *acc = (double)ok / s->n;
    return 0;
}

static void progress(int done, int total, double t0, double loss, double acc) {
    const int width = 30;
    int fill = total ? (int)((int64_t)done * width / total) : width;
    char bar[40];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : '.');
    bar[width] = '\0';
    double el = now_s() - t0, eta = done ? el * (total - done) / done : 0;
    fprintf(stderr, "\r%5d/%d [%s] - %s %4.1fs - loss: %.4f - acc: %.4f   ", done, total, bar,
            done < total ? "ETA" : "in", done < total ? eta : el, loss, acc);
    fflush(stderr);
}

/* ---------------------------------------------------------------------------------------------------
 * train
 */
static int imdb_train(const imdb_flags *f) {
    if (f->epochs < 1 || f->batch < 1 || f->batch > 4096 || !(f->lr > 0) || f->limit < 0) {
        fprintf(stderr, "attn: imdb: --epochs, --batch (1..4096) and --lr must be positive, --limit >= 0\n");
        return 2;
    }
    set_threads(f->threads);
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", f->out, CKPT_NAME);

    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.limit = f->limit;
    int batch = f->batch;
    float lr = f->lr;
    uint64_t seed = f->seed;
    ckpt_meta cm = {0, f->limit, batch, 0, lr, seed};
    imdb_model m;
    attn_adam adam;
    memset(&adam, 0, sizeof adam);
    attn_imdb_vocab cv;
    memset(&cv, 0, sizeof cv);

    if (f->resume) {
        /* The run's settings come from the checkpoint so that it continues exactly. */
        attn_st_file probe;
        char err[1024] = "";
        if (attn_st_read(&probe, ckpt, 0, err, sizeof err) != ATTN_OK) {
            fprintf(stderr, "attn: imdb: --resume: %s\n", err);
            return 1;
        }
        const char *ms[4] = {attn_st_meta(&probe, "limit"), attn_st_meta(&probe, "batch"), attn_st_meta(&probe, "lr"),
                             attn_st_meta(&probe, "seed")};
        o.limit = ms[0] ? atoi(ms[0]) : 0;
        batch = ms[1] ? atoi(ms[1]) : batch;
        lr = ms[2] ? strtof(ms[2], NULL) : lr;
        seed = ms[3] ? strtoull(ms[3], NULL, 10) : seed;
        attn_st_free(&probe);
        if (batch < 1 || batch > 4096 || !(lr > 0)) {
            fprintf(stderr, "attn: imdb: %s: batch %d or lr %g in the metadata out of range\n", ckpt, batch, lr);
            return 1;
        }
    }
    attn_imdb_data d;
    if (load_data(&d, f, &o)) return 1;
    imdb_config c;
    imdb_config_default(&c);
    int Bmax = batch > EVAL_BATCH ? batch : EVAL_BATCH;
    int rc = 1;
    attn_status st;
    const size_t n_params = (size_t)c.V * c.D + 3 * (size_t)c.D * c.D + (size_t)c.C * c.D + (size_t)c.C;
    if ((st = attn_adam_alloc(&adam, n_params, lr)) != ATTN_OK) {
        cli_fail(st, "imdb: adam");
        goto out_data;
    }
    if (f->resume) {
        if (ckpt_load(ckpt, &m, Bmax, &adam, &cv, &cm, d.vocab.crc)) goto out_adam_only;
        attn_imdb_vocab_free(&cv);
        if (cm.epoch >= f->epochs) {
            fprintf(stderr, "attn: imdb: %s has %d epochs already (--epochs %d): nothing to do\n", ckpt, cm.epoch,
                    f->epochs);
            rc = 0;
            goto out_adam;
        }
        fprintf(stderr, "attn: imdb: resuming %s after epoch %d (step %" PRId64 "; seed %" PRIu64 ", lr %g, batch %d "
                "from the checkpoint)\n", ckpt, cm.epoch, cm.adam_t, seed, lr, batch);
    } else if ((st = imdb_model_init(&m, &c, Bmax, seed)) != ATTN_OK) {
        cli_fail(st, "imdb: model");
        goto out_adam_only;
    }
    adam.beta1 = 0.9f;
    adam.beta2 = 0.999f;
    adam.eps = 1e-7f;
    adam.decay = 1e-5f;
    adam.keras_eps = 1;
    printf("IMDB self-attention: %d train, %d test reviews, vocabulary %d, maxlen %d; %zu parameters; batch %d, "
           "lr %g, seed %" PRIu64 ", %d threads, %s kernels, BLAS %s\n", d.train.n, d.test.n, c.V, c.T, m.n_params, batch,
           lr, seed, attn_get_num_threads(), attn_isa_name(attn_get_isa()), attn_blas_core_name());
    fflush(stdout);

    const int n = d.train.n, T = c.T;
    const int steps = (n + batch - 1) / batch;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *bids = malloc(sizeof(int32_t) * (size_t)batch * T);
    int32_t *blab = malloc(sizeof(int32_t) * (size_t)batch);
    if (!perm || !bids || !blab) {
        free(perm); free(bids); free(blab);
        cli_fail(ATTN_ERR_NOMEM, "imdb");
        goto out_adam;
    }
    if (make_dir(f->out)) goto out_buf;
    const int tty = isatty(2);
    double best = 0;
    /* ATTN_IMDB_PROFILE=1: time per step of the forward, backward and Adam, per epoch, on stderr */
    const char *pe = getenv("ATTN_IMDB_PROFILE");
    const int prof = pe && *pe && strcmp(pe, "0") != 0;
    imdb_model_zero_grad(&m, 1);
    for (int epoch = cm.epoch; epoch < f->epochs; epoch++) {
        /* shuffle: a pure function of (seed, epoch) */
        for (int i = 0; i < n; i++) perm[i] = i;
        attn_rng r;
        attn_rng_seed(&r, mix64(seed ^ mix64((uint64_t)epoch + 1)));
        attn_rng_shuffle(&r, perm, (size_t)n);
        double t0 = now_s(), last = 0, loss_sum = 0, prof_t[4] = {0, 0, 0, 0};
        int correct = 0, seen = 0;
        fprintf(stderr, "Epoch %d/%d\n", epoch + 1, f->epochs);
        for (int s = 0; s < steps; s++) {
            int B = n - s * batch < batch ? n - s * batch : batch;
            for (int b = 0; b < B; b++) {
                int k = perm[s * batch + b];
                memcpy(bids + (size_t)b * T, d.train.ids + (size_t)k * T, sizeof(int32_t) * (size_t)T);
                blab[b] = d.train.labels[k];
            }
            uint64_t ds = mix64(seed * 0x2545f4914f6cdd1dULL + (uint64_t)adam.t + 1);
            double p0 = prof ? now_s() : 0, p1 = 0, p2 = 0;
            st = imdb_model_forward(&m, bids, blab, B, 1, ds, NULL, &loss_sum, &correct);
            if (st == ATTN_OK) {
                if (prof) p1 = now_s();
                imdb_model_zero_grad(&m, 0);
                st = imdb_model_backward(&m, bids, blab, B, 1, ds);
            }
            if (prof) p2 = now_s();
            if (st == ATTN_OK) st = attn_adam_step(&adam, m.params, m.grads);
            if (prof) {
                double p3 = now_s();
                prof_t[0] += p1 - p0;
                prof_t[1] += p2 - p1;
                prof_t[2] += p3 - p2;
                prof_t[3] += m.n_words;
            }
            if (st != ATTN_OK) {
                if (tty) fputc('\n', stderr);
                cli_fail(st, "imdb: training step");
                goto out_buf;
            }
            seen += B;
            if (!isfinite(loss_sum)) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr, "attn: imdb: the loss is not finite at step %" PRId64 "; stopping (lr too high?)\n",
                        adam.t);
                goto out_buf;
            }
            double tn = now_s();
            if (tty && (tn - last > 0.1 || s == steps - 1)) {
                progress(s + 1, steps, t0, loss_sum / seen, (double)correct / seen);
                last = tn;
            }
        }
        double t_train = now_s() - t0;
        if (tty) fputc('\n', stderr);
        if (prof)
            fprintf(stderr, "attn: imdb: profile: forward %.3f, zero_grad+backward %.3f, adam %.3f ms per step; "
                    "%.0f distinct words per batch\n", 1e3 * prof_t[0] / steps, 1e3 * prof_t[1] / steps,
                    1e3 * prof_t[2] / steps, prof_t[3] / steps);
        double vl, va, t1 = now_s();
        if (evaluate(&m, &d.test, T, &vl, &va)) goto out_buf;
        double t_val = now_s() - t1;
        if (va > best) best = va;
        printf("Epoch %d/%d - %d/%d - %.1fs (train %.2fs, val %.2fs) - loss: %.4f - acc: %.4f - val_loss: %.4f - "
               "val_acc: %.4f\n", epoch + 1, f->epochs, seen, n, t_train + t_val, t_train, t_val, loss_sum / seen,
               (double)correct / seen, vl, va);
        fflush(stdout);
        ckpt_meta sm = {epoch + 1, o.limit, batch, adam.t, lr, seed};
        char err[1024] = "";
        if ((st = ckpt_save(ckpt, &m, &adam, &d.vocab, &sm, err, sizeof err)) != ATTN_OK) {
            fprintf(stderr, "attn: imdb: saving the checkpoint: %s\n", err[0] ? err : attn_status_string(st));
            goto out_buf;
        }
    }
    printf("best val_acc: %.4f; checkpoint %s\n", best, ckpt);
    rc = 0;
out_buf:
    free(perm);
    free(bids);
    free(blab);
out_adam:
    imdb_model_free(&m);
out_adam_only:
    attn_adam_free(&adam);
out_data:
    attn_imdb_free(&d);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * eval
 */
static const char *ckpt_path(const imdb_flags *f, char *buf, size_t n) {
    if (f->ckpt) return f->ckpt;
    snprintf(buf, n, "%s/%s", f->out, CKPT_NAME);
    return buf;
}

static int imdb_eval(const imdb_flags *f) {
    set_threads(f->threads);
    char pbuf[4200];
    const char *ckpt = ckpt_path(f, pbuf, sizeof pbuf);
    /* the data must be encoded the way the checkpoint was trained: its --limit */
    attn_st_file probe;
    char err[1024] = "";
    if (attn_st_read(&probe, ckpt, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err);
        return 1;
    }
    const char *l = attn_st_meta(&probe, "limit");
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.limit = l ? atoi(l) : 0;
    attn_st_free(&probe);
    attn_imdb_data d;
    if (load_data(&d, f, &o)) return 1;
    imdb_model m;
    attn_imdb_vocab v;
    ckpt_meta cm;
    if (ckpt_load(ckpt, &m, EVAL_BATCH, NULL, &v, &cm, d.vocab.crc)) {
        attn_imdb_free(&d);
        return 1;
    }
    double t0 = now_s(), loss, acc;
    int rc = evaluate(&m, &d.test, d.T, &loss, &acc);
    double dt = now_s() - t0;
    if (!rc)
        printf("%s (epoch %d): %d test reviews - loss: %.4f - acc: %.4f - %.2fs (%d threads)\n", ckpt, cm.epoch,
               d.test.n, loss, acc, dt, attn_get_num_threads());
    imdb_model_free(&m);
    attn_imdb_vocab_free(&v);
    attn_imdb_free(&d);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * predict
 */
/* The last T tokens of a text, as written (lowercased), in a ring. */
typedef struct word_ring {
    char (*lab)[96];
    int T;
    int64_t n;
} word_ring;

static int ring_word(void *ctx, const char *w, size_t len) {
    word_ring *r = ctx;
    if (len > 90) len = 90;
    memcpy(r->lab[r->n % r->T], w, len);
    r->lab[r->n % r->T][len] = '\0';
    r->n++;
    return 0;
}

static int imdb_predict(const imdb_flags *f, const char *text) {
    set_threads(f->threads);
    char pbuf[4200];
    const char *ckpt = ckpt_path(f, pbuf, sizeof pbuf);
    imdb_model m;
    attn_imdb_vocab v;
    ckpt_meta cm;
    if (ckpt_load(ckpt, &m, 1, NULL, &v, &cm, 0)) return 1;
    const int T = m.cfg.T;
    int rc = 1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    float *w = malloc(sizeof(float) * (size_t)T * T);
    float *score = malloc(sizeof(float) * (size_t)T);
    const char **labels = malloc(sizeof(char *) * (size_t)T);
    char (*lab)[96] = malloc(96 * (size_t)T);
    char (*lab2)[96] = malloc(96 * (size_t)T);
    if (!ids || !w || !score || !labels || !lab || !lab2) {
        cli_fail(ATTN_ERR_NOMEM, "imdb");
        goto out;
    }
    int n_words = 0;
    size_t bad = 0;
    attn_status st = attn_imdb_encode_text(ids, T, &v, text, strlen(text), &n_words, &bad);
    if (st == ATTN_ERR_FORMAT) {
        fprintf(stderr, "attn: imdb: the text is not valid UTF-8 (byte %zu)\n", bad);
        goto out;
    }
    if (st == ATTN_ERR_ARG) {
        fprintf(stderr, "attn: imdb: the text has no word to classify\n");
        goto out;
    }
    if (st != ATTN_OK) {
        cli_fail(st, "imdb: encode");
        goto out;
    }
    if ((st = imdb_model_forward(&m, ids, NULL, 1, 0, 0, w, NULL, NULL)) != ATTN_OK) {
        cli_fail(st, "imdb: forward");
        goto out;
    }
    float pos = m.probs[1];
    /* the positions that hold the review (start and words), not the padding */
    int first = 0;
    while (first < T && ids[first] == ATTN_IMDB_PAD) first++;
    int k = T - first;
    /* label the kept positions with the words as written (an out-of-vocabulary word gets a '?') */
    word_ring wr = {lab2, T, 0};
    attn_imdb_tokenize(text, strlen(text), ring_word, &wr, NULL);
    for (int j = 0; j < k; j++) {
        if (j == 0 && ids[first] == ATTN_IMDB_START) {
            snprintf(lab[j], 96, "<start>");
        } else {
            int64_t tok = wr.n - (k - j);           /* token index of position j */
            snprintf(lab[j], 96, "%.90s%s", lab2[(tok % T + T) % T], ids[first + j] == ATTN_IMDB_OOV ? "?" : "");
        }
        labels[j] = lab[j];
    }
    /* attention each word receives: the mean over the review's query rows */
    for (int s = 0; s < k; s++) {
        double acc = 0;
        for (int t = 0; t < k; t++) acc += w[(size_t)(first + t) * T + first + s];
        score[s] = (float)(acc / k);
    }
    const int shown = k - (ids[first] == ATTN_IMDB_START);
    printf("positive probability: %.4f (%s); %d words%s\n", pos, pos >= 0.5f ? "positive" : "negative", n_words,
           n_words > shown ? ", the model sees the last ones (pre-truncated)" : "");
    attn_heatmap h;
    memset(&h, 0, sizeof h);
    h.values = score;
    h.rows = k;
    h.cols = 1;
    h.row_labels = labels;
    h.title = "attention received (mean over the review's positions)";
    h.row_title = "words";
    if ((st = attn_heatmap_term(&h, stdout, !f->no_color && isatty(1))) != ATTN_OK) {
        cli_fail(st, "imdb: heatmap");
        goto out;
    }
    if (f->png) {
        attn_heatmap hp;
        memset(&hp, 0, sizeof hp);
        hp.values = w + (size_t)first * T + first;
        hp.rows = k;
        hp.cols = k;
        hp.row_stride = T;
        hp.row_labels = labels;
        hp.col_labels = labels;
        hp.title = "IMDB self-attention weights";
        hp.row_title = "Queries";
        hp.col_title = "Keys";
        char err[1024] = "";
        if ((st = attn_heatmap_png(&hp, f->png, err, sizeof err)) != ATTN_OK) {
            fprintf(stderr, "attn: imdb: %s\n", err[0] ? err : attn_status_string(st));
            goto out;
        }
        printf("wrote %s\n", f->png);
    }
    rc = 0;
out:
    free(ids);
    free(w);
    free(score);
    free(labels);
    free(lab);
    free(lab2);
    imdb_model_free(&m);
    attn_imdb_vocab_free(&v);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Entry.
 */
int cmd_imdb(int argc, char **argv) {
    imdb_flags f = {"../shared/data", "imdb_out", NULL, NULL, 5, 32, 0, 0, 0, 0, 2e-4f, 1};
    const char *sub = argc >= 2 ? argv[1] : NULL;
    const cli_opt train_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the .tar.gz, the aclImdb folder, or a folder holding either"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the data cache go"},
        {"epochs", CLI_INT, &f.epochs, "N", "epochs in all (with --resume: up to this many)"},
        {"batch", CLI_INT, &f.batch, "N", "batch size"},
        {"lr", CLI_FLOAT, &f.lr, "X", "Adam learning rate (Keras decay 1e-5, eps 1e-7)"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the initialization, shuffling and dropout"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N reviews of each split (0 = all)"},
        {"resume", CLI_BOOL, &f.resume, NULL, "continue from the checkpoint in --out"},
    };
    const cli_opt eval_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the .tar.gz, the aclImdb folder, or a folder holding either"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the data cache are"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_opt predict_opts[] = {
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"png", CLI_STR, &f.png, "FILE", "also write the word-by-word attention weights as a PNG"},
        {"no-color", CLI_BOOL, &f.no_color, NULL, "shaded characters instead of 24-bit colors"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_cmd cmds[3] = {
        {"attn imdb train [options]",
         "Trains the self-attention sentiment classifier of SPEC 4.C on the IMDB reviews (25,000 train, 25,000 "
         "test), printing one line per epoch and saving a checkpoint after each.",
         train_opts, (int)(sizeof train_opts / sizeof train_opts[0]), 0, 0},
        {"attn imdb eval [options]", "Evaluates a checkpoint on the test reviews.", eval_opts,
         (int)(sizeof eval_opts / sizeof eval_opts[0]), 0, 0},
        {"attn imdb predict [options] \"text\"",
         "Classifies a text and shows the attention over its words.", predict_opts,
         (int)(sizeof predict_opts / sizeof predict_opts[0]), 1, 1},
    };
    int which = !sub ? -1 : strcmp(sub, "train") == 0 ? 0 : strcmp(sub, "eval") == 0 ? 1
                              : strcmp(sub, "predict") == 0 ? 2 : -1;
    if (which < 0) {
        int help = sub && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0);
        FILE *o = help ? stdout : stderr;
        if (sub && !help) fprintf(stderr, "attn: imdb: unknown subcommand '%s'\n\n", sub);
        fprintf(o, "usage: attn imdb train|eval|predict [options]\n\n"
                   "  train    train the self-attention classifier (SPEC 4.C)\n"
                   "  eval     evaluate a checkpoint on the test reviews\n"
                   "  predict  classify a text and show the attention over its words\n\n"
                   "'attn imdb <subcommand> --help' lists the options.\n");
        return help ? 0 : 2;
    }
    const char *pos[1] = {NULL};
    int n_pos = 0;
    int r = cli_parse(&cmds[which], argc - 1, argv + 1, pos, &n_pos);
    if (r >= 0) return r;
    if (which == 0) return imdb_train(&f);
    if (which == 1) return imdb_eval(&f);
    return imdb_predict(&f, pos[0]);
}
