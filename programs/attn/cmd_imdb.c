/*
 * cmd_imdb.c — `attn imdb train|eval|predict`: the IMDB sentiment experiment: a self-attention
 * classifier of movie reviews (embedding, one self-attention layer, mean over the words, dense softmax).
 *
 *   train    reads the data (or the cache in --out), trains, prints a Keras-like line per epoch, and
 *            saves --out/imdb.safetensors after every epoch (atomically), with the Adam state so
 *            --resume continues exactly (shuffling and dropout are pure functions of seed and step).
 *   eval     loads the checkpoint and evaluates the test split.
 *   predict  loads the checkpoint (it carries its vocabulary), prints the positive probability and a
 *            heatmap of the attention each word receives; --png writes the full word-by-word matrix.
 *
 * Files in --out: imdb.safetensors (checkpoint), imdb_history.csv (epoch, loss, acc, val_loss, val_acc,
 * seconds: one row per epoch, written before each checkpoint; --plot FILE draws it), imdb_cache.bin (the
 * encoded data set; with --limit N, imdb_cache_limitN.bin; with --maxlen T other than 64, _maxlenT before
 * .bin). Nothing is written before the data has been read and checked.
 *
 * --maxlen T keeps each review's last T words (Keras' pad_sequences: longer reviews cut in front, shorter
 * ones padded in front); --window W or L,R gives the self-attention a sliding window in its mask (the
 * fused kernels skip the blocks outside it). Both are the model's, kept in the checkpoint: eval and
 * predict read them from there, and --resume refuses other values.
 *
 * ATTN_IMDB_PROFILE=1 makes train print, after each epoch, the mean time per step of the forward, the
 * backward (with the gradient zeroing) and the Adam step, and the mean number of distinct words per batch.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "rowsum.h"
#include "attn/imdb_model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_NAME "imdb.safetensors"
#define BEST_NAME "imdb_best.safetensors"   /* --keep-best */
#define CACHE_NAME "imdb_cache.bin"
#define HISTORY_NAME "imdb_history.csv"
#define EVAL_BATCH 250
#define GRAD_GROUPS 4            /* data parallel: a batch's gradient groups (ranks must divide it) */

typedef struct imdb_flags {
    const char *data, *out, *ckpt, *png, *file, *plot, *weights_out;
    const char *data_from;       /* where data came from: "--data", "ATTN_DATA" or "default" */
    int epochs, batch, threads, limit, resume, no_color, keep_best, annotate;
    int mask_padding;            /* train: the self-attention excludes the padding keys */
    const char *precision;       /* train: --precision as given, or NULL */
    attn_dtype compute;          /* train: what it names (F32 when not given) */
    float lr;
    uint64_t seed;
    const char *html;            /* predict --html FILE: the explorer page */
    const char *palette_name;    /* --palette NAME */
    attn_palette palette;
    int max_steps;               /* train: stop after this many optimizer steps of this run (0: no limit) */
    int groups;                  /* train under mpirun: gradient groups per batch (0: GRAD_GROUPS) */
    int maxlen;                  /* train: ids per review, the last ones (the experiment's 64 by default) */
    const char *window;          /* train: --window W or L,R (NULL: dense) */
    int window_left, window_right;
} imdb_flags;

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The attention kernels on --threads, OpenBLAS on as many (the model's products are cut per thread). */
static void set_threads(int n) { cli_set_threads(n, 0); }

/* ---------------------------------------------------------------------------------------------------
 * Data: the cache in --out when it matches, else the archive/folder (then the cache is written).
 */
static int load_data(attn_imdb_data *d, const imdb_flags *f, const attn_imdb_options *o) {
    char src[4096], err[1024] = "", cache[4200];
    attn_status st = attn_imdb_locate(f->data, src, sizeof src, err, sizeof err);
    /* one cache per --limit and --maxlen, so that runs with different ones in one folder do not replace each
     * other's */
    char lim[32] = "", len[32] = "";
    if (o->limit > 0) snprintf(lim, sizeof lim, "_limit%d", o->limit);
    if (o->T != 64) snprintf(len, sizeof len, "_maxlen%d", o->T);
    if (lim[0] || len[0]) snprintf(cache, sizeof cache, "%s/imdb_cache%s%s.bin", f->out, lim, len);
    else snprintf(cache, sizeof cache, "%s/%s", f->out, CACHE_NAME);
    if (st != ATTN_OK) {
        /* No source: a cache alone is enough (e.g. the data was moved after the first run). */
        if (attn_imdb_cache_load(d, o, NULL, cache, NULL, 0) == ATTN_OK) {
            if (dist_rank() == 0) fprintf(stderr, "attn: imdb: note: %s; using the cache %s\n", err, cache);
            return 0;
        }
        fprintf(stderr, "attn: imdb: %s\n", err);
        cli_data_hint("imdb", f->data, f->data_from);
        return 1;
    }
    double t0 = cli_now();
    st = attn_imdb_cache_load(d, o, src, cache, err, sizeof err);
    if (st == ATTN_OK) {
        if (dist_rank() == 0)
            fprintf(stderr, "attn: imdb: data from the cache %s (%.2f s): %d train, %d test reviews\n", cache,
                    cli_now() - t0, d->train.n, d->test.n);
        return 0;
    }
    if (st == ATTN_ERR_FORMAT) fprintf(stderr, "attn: imdb: note: ignoring a corrupt cache: %s\n", err);
    else if (st == ATTN_ERR_ARG) fprintf(stderr, "attn: imdb: note: rebuilding a stale cache: %s\n", err);
    t0 = cli_now();
    err[0] = '\0';
    st = attn_imdb_load(d, src, o, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    if (dist_rank() == 0)                /* data parallel: rank 0 read first; the others say nothing */
        fprintf(stderr, "attn: imdb: read %s in %.2f s: %d train, %d test reviews\n", src, cli_now() - t0,
                d->train.n, d->test.n);
    if (cli_make_dir("imdb", f->out) == 0 && attn_imdb_cache_save(d, o, cache, err, sizeof err) != ATTN_OK)
        fprintf(stderr, "attn: imdb: note: cache not written: %s\n", err);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints: the library reads and writes them (attn_imdb_model_save/load); this program also wants
 * the experiment's sizes and, when it has the data, the data's vocabulary.
 */
static int load_checkpoint(const char *path, attn_imdb_model *m, int Bmax, attn_adam *a, attn_imdb_vocab *v,
                           attn_imdb_run_info *run, uint32_t expect_crc) {
    char err[1024] = "";
    attn_status st = attn_imdb_model_load(m, NULL, Bmax, a, v, run, path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    int rc = 0;
    if (m->cfg.V != c.V || m->cfg.D != c.D) {      /* maxlen and window are the run's choice */
        fprintf(stderr, "attn: imdb: %s: a model of vocabulary %d, width %d; this program builds %d, %d\n", path,
                m->cfg.V, m->cfg.D, c.V, c.D);
        rc = 1;
    } else if (expect_crc && v->crc != expect_crc) {
        fprintf(stderr, "attn: imdb: %s: trained with another vocabulary (crc %08x) than the data's (crc %08x); "
                "was it trained with another --limit or data set?\n", path, v->crc, expect_crc);
        rc = 1;
    }
    if (rc) {
        attn_imdb_model_free(m);
        attn_imdb_vocab_free(v);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Evaluation over a split in batches of EVAL_BATCH.
 */
static int evaluate(attn_imdb_model *m, const attn_imdb_split *s, int T, double *loss, double *acc) {
    double ls = 0;
    int ok = 0;
    attn_status st = attn_imdb_model_eval_prepare(m);
    if (st != ATTN_OK) return cli_fail(st, "imdb: evaluation");
    /* data parallel: each rank its contiguous share of the reviews, the sums added over the ranks */
    const int lo = (int)((int64_t)s->n * dist_rank() / dist_size()), hi = (int)((int64_t)s->n * (dist_rank() + 1) / dist_size());
    for (int i = lo; i < hi; i += m->Bmax) {
        int B = hi - i < m->Bmax ? hi - i : m->Bmax;
        st = attn_imdb_model_eval_forward(m, s->ids + (size_t)i * T, s->labels + i, B, &ls, &ok);
        if (st != ATTN_OK) return cli_fail(st, "imdb: forward");
    }
    double sums[2] = {ls, ok};
    if (dist_sum_doubles(sums, 2)) return 1;
    *loss = sums[0] / s->n;
    *acc = sums[1] / s->n;
    return 0;
}

static void progress(int done, int total, double t0, double loss, double acc) {
    const int width = 30;
    int fill = total ? (int)((int64_t)done * width / total) : width;
    char bar[40];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : '.');
    bar[width] = '\0';
    double el = cli_now() - t0, eta = done ? el * (total - done) / done : 0;
    fprintf(stderr, "\r%5d/%d [%s] - %s %4.1fs - loss: %.4f - acc: %.4f   ", done, total, bar,
            done < total ? "ETA" : "in", done < total ? eta : el, loss, acc);
    fflush(stderr);
}

/* ---------------------------------------------------------------------------------------------------
 * train: settings (from the flags, or the checkpoint with --resume), data, model and optimizer, then
 * per epoch the training steps, the evaluation and the checkpoint.
 */
typedef struct train_run {
    attn_imdb_options o;         /* the data set's options: --limit and --maxlen, or the checkpoint's */
    int batch, epochs;
    float lr;
    uint64_t seed;
    char ckpt[4200];             /* --out/imdb.safetensors */
    char best[4200];             /* --out/imdb_best.safetensors (--keep-best) */
    attn_imdb_run_info resumed;  /* the checkpoint's run with --resume; epoch 0 otherwise */
    attn_imdb_data d;
    attn_imdb_model m;
    attn_adam adam;
    int32_t *perm, *bids, *blab; /* (n) the epoch's order; (batch,T) ids and (batch) labels of a step */
    int tty, prof;               /* stderr is a terminal; ATTN_IMDB_PROFILE is set */
    cli_history hist;            /* --out/imdb_history.csv */
    int64_t max_steps, steps;    /* --max-steps (0: none) and the optimizer steps of this run */
    int dp, groups, lead;        /* data parallel (under mpirun), gradient groups per batch; rank 0 */
    /* grouped step: the tree's partial sums as sparse embedding rows + the dense rest (rowsum.h), one
       spare for the additions, the wire buffer of the sum over the ranks, and the dense gradient Adam
       reads (zero outside the rows of the last step's sum) */
    rowsum *rstack;              /* (n_levels + 1) */
    int n_levels;
    void *wire;
    size_t wire_bytes;
    /* Adam in two passes (adam_mark_rows): the step's distinct words, ascending */
    int32_t *urows, *umark;      /* (rows) the words; (V) 0 for a word in urows, -1 otherwise */
    int n_urows;
    int32_t *spans;              /* (2·rows) the second pass's rows [spans[2i], spans[2i+1]) */
    int n_spans;
    float *zeros;                /* (V·D) a zero gradient, never written */
    float *span_g;               /* (ADAM_SPAN_ROWS·D) a span's gradient in adam_rows_pass */
    attn_status idle_st;
    /* row-owned Adam (more than one rank): this rank steps rows [own_lo, own_hi) of the table only, and
       before each step exchanges the rows the step's groups read (fresh_rows) */
    int owned;
    int32_t own_lo, own_hi;
    int32_t *fmark, fstamp;      /* (V) fstamp for a row listed by the current rows_read */
    int32_t **fsend, **frecv;    /* (N) per rank: the rows sent to it, the rows received from it */
    int *n_fsend, *n_frecv;
    float *fbuf;
    uint64_t bytes_sent;         /* data parallel: the gradient sums' bytes this rank sent in the run */
} train_run;

static void train_run_free(train_run *r) {
    for (int i = 0; r->rstack && i <= r->n_levels; i++) rowsum_free(&r->rstack[i]);
    free(r->rstack);
    free(r->wire);
    free(r->urows);
    free(r->spans);
    free(r->umark);
    free(r->zeros);
    free(r->span_g);
    for (int p = 0; r->fsend && p < dist_size(); p++) free(r->fsend[p]);
    for (int p = 0; r->frecv && p < dist_size(); p++) free(r->frecv[p]);
    free(r->fsend);
    free(r->frecv);
    free(r->n_fsend);
    free(r->n_frecv);
    free(r->fmark);
    free(r->fbuf);
    free(r->perm);
    free(r->bids);
    free(r->blab);
    attn_imdb_model_free(&r->m);
    attn_adam_free(&r->adam);
    attn_imdb_free(&r->d);
    cli_history_free(&r->hist);
}

/* The run's settings: the flags', or with --resume the checkpoint's (so that it continues exactly).
 * Returns 0, or 1 after a message. */
static int train_settings(const imdb_flags *f, train_run *r) {
    snprintf(r->ckpt, sizeof r->ckpt, "%s/%s", f->out, CKPT_NAME);
    snprintf(r->best, sizeof r->best, "%s/%s", f->out, BEST_NAME);
    attn_imdb_options_default(&r->o);
    r->o.limit = f->limit;
    r->o.T = f->maxlen;
    r->batch = f->batch;
    r->epochs = f->epochs;
    r->lr = f->lr;
    r->seed = f->seed;
    if (!f->resume) return 0;
    attn_imdb_run_info info = {0, 0, r->batch, 0, r->lr, r->seed, 0};
    char err[1024] = "";
    attn_imdb_config c;
    if (attn_imdb_model_read_run(r->ckpt, &info, err, sizeof err) != ATTN_OK ||
        attn_imdb_model_read_config(r->ckpt, &c, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "attn: imdb: --resume: %s\n", err);
        return 1;
    }
    /* the model's shape and masks are the checkpoint's: flags that say otherwise (other than the default
     * maxlen, which --resume does not read) are a mistake */
    if ((f->maxlen != 64 && f->maxlen != c.T) ||
        (f->window && (!c.window || c.window_left != f->window_left || c.window_right != f->window_right))) {
        char w[40] = "dense";
        if (c.window) snprintf(w, sizeof w, "window %d,%d", c.window_left, c.window_right);
        fprintf(stderr, "attn: imdb: --resume: %s was trained with maxlen %d, %s; resume without --maxlen and "
                "--window, or train a new model (another --out)\n", r->ckpt, c.T, w);
        return 1;
    }
    r->o.T = c.T;
    r->o.limit = info.limit;
    r->batch = info.batch;
    r->lr = info.lr;
    r->seed = info.seed;
    if (r->batch < 1 || r->batch > 4096 || !(r->lr > 0)) {
        fprintf(stderr, "attn: imdb: %s: batch %d or lr %g in the metadata out of range\n", r->ckpt, r->batch, r->lr);
        return 1;
    }
    return 0;
}

/* The model and Keras' Adam: new from the seed, or the checkpoint's with --resume. Returns 0, or 1 after a
 * message; *nothing_to_do when the checkpoint has every epoch asked for already. */
static int train_build(const imdb_flags *f, train_run *r, int *nothing_to_do) {
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    c.mask_padding = f->mask_padding;
    c.T = r->o.T;
    if (f->window) {
        c.window = 1;
        c.window_left = f->window_left;
        c.window_right = f->window_right;
    }
    c.compute = f->compute;
    const int Bmax = r->batch > EVAL_BATCH ? r->batch : EVAL_BATCH;
    const size_t n_params = (size_t)c.V * c.D + 3 * (size_t)c.D * c.D + (size_t)c.C * c.D + (size_t)c.C;
    attn_status st;
    *nothing_to_do = 0;
    if ((st = attn_adam_alloc(&r->adam, n_params, r->lr)) != ATTN_OK) return cli_fail(st, "imdb: adam");
    if (f->resume) {
        attn_imdb_vocab cv;
        if (load_checkpoint(r->ckpt, &r->m, Bmax, &r->adam, &cv, &r->resumed, r->d.vocab.crc)) return 1;
        attn_imdb_vocab_free(&cv);
        if (f->mask_padding && !r->m.cfg.mask_padding) {
            fprintf(stderr, "attn: imdb: --resume --mask-padding: %s was trained without the padding mask; train a "
                    "new model with --mask-padding (another --out)\n", r->ckpt);
            return 1;
        }
        if (f->precision && f->compute != r->m.cfg.compute) {
            fprintf(stderr, "attn: imdb: --resume --precision %s: %s was trained with --precision %s; leave the flag "
                    "out to go on with it\n", f->precision, r->ckpt, r->m.cfg.compute == ATTN_DTYPE_BF16 ? "bf16" : "f32");
            return 1;
        }
        if (r->resumed.epoch >= r->epochs) {
            if (r->lead)
                fprintf(stderr, "attn: imdb: %s has %d epochs already (--epochs %d): nothing to do\n", r->ckpt,
                        r->resumed.epoch, r->epochs);
            *nothing_to_do = 1;
            return 0;
        }
        char inside[64] = "";
        if (r->resumed.step) snprintf(inside, sizeof inside, " and %d steps of epoch %d", r->resumed.step,
                                      r->resumed.epoch + 1);
        if (r->lead)
            fprintf(stderr, "attn: imdb: resuming %s after epoch %d%s (step %" PRId64 "; seed %" PRIu64 ", lr %g, "
                    "batch %d from the checkpoint)\n", r->ckpt, r->resumed.epoch, inside, r->resumed.adam_t, r->seed,
                    r->lr, r->batch);
    } else if ((st = attn_imdb_model_init(&r->m, NULL, &c, Bmax, r->seed)) != ATTN_OK) {
        return cli_fail(st, "imdb: model");
    }
    r->adam.beta1 = 0.9f;
    r->adam.beta2 = 0.999f;
    r->adam.eps = 1e-7f;
    r->adam.decay = 1e-5f;
    r->adam.keras_eps = 1;
    return 0;
}

/* What one epoch's steps add up: Σ per-review loss, correct answers, reviews seen; and with
 * ATTN_IMDB_PROFILE the seconds of forward, backward (with the zeroing), Adam and the distinct words. */
typedef struct epoch_sums {
    double loss_sum, prof[5];
    int correct, seen;
} epoch_sums;

/* One step on reviews perm[s·batch ...]: gather the batch, forward, backward, Adam. */
static attn_status train_step(train_run *r, int s, epoch_sums *e) {
    const int n = r->d.train.n, T = r->m.cfg.T;
    const int B = n - s * r->batch < r->batch ? n - s * r->batch : r->batch;
    for (int b = 0; b < B; b++) {
        int k = r->perm[s * r->batch + b];
        memcpy(r->bids + (size_t)b * T, r->d.train.ids + (size_t)k * T, sizeof(int32_t) * (size_t)T);
        r->blab[b] = r->d.train.labels[k];
    }
    /* dropout: a pure function of (seed, step) */
    uint64_t ds = mix64(r->seed * 0x2545f4914f6cdd1dULL + (uint64_t)r->adam.t + 1);
    double p0 = r->prof ? cli_now() : 0, p1 = 0, p2 = 0;
    attn_status st = attn_imdb_model_forward(&r->m, r->bids, r->blab, B, 1, ds, NULL, &e->loss_sum, &e->correct);
    if (st == ATTN_OK) {
        if (r->prof) p1 = cli_now();
        attn_imdb_model_zero_grad(&r->m, 0);
        st = attn_imdb_model_backward(&r->m, r->bids, r->blab, B, 1, ds);
    }
    if (r->prof) p2 = cli_now();
    if (st == ATTN_OK) st = attn_adam_step(&r->adam, r->m.params, r->m.grads);
    if (r->prof) {
        double p3 = cli_now();
        e->prof[0] += p1 - p0;
        e->prof[1] += p2 - p1;
        e->prof[2] += p3 - p2;
        e->prof[3] += r->m.n_words;
    }
    e->seen += B;
    return st;
}

/* A grouped step (data parallel, or --grad-groups). The step's B reviews are cut into G = r->groups
 * groups, group g the reviews [g·B/G, (g+1)·B/G); rank k of N computes groups [k·G/N, (k+1)·G/N) one
 * after another, each the gradient of its reviews' mean loss times its share nb/B (exact for equal groups:
 * a power of two), and adds them by the balanced binary tree; dist_rowsum_ordered then adds the ranks'
 * sums by the same tree. So the step's gradient, and the parameters after it, have the same bits for
 * every N that divides G (powers of two). A group's gradient is held as the embedding rows its words
 * touched plus the dense rest (rowsum.h: the sums keep the dense sum's bits), so the adds and the
 * messages are as large as the rows the batch touched, not the table.
 * Dropout: a pure function of (seed, step, group). e gets this rank's losses and reviews. */
static void swap_rows(rowsum *a, rowsum *b) {
    rowsum t = *a;
    *a = *b;
    *b = t;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* slot = the model's gradient of the last backward times share: its touched embedding rows, ascending, and
 * the dense rest */
static attn_status group_rows(const attn_imdb_model *m, rowsum *slot, float share) {
    const size_t D = (size_t)m->cfg.D, VD = (size_t)m->cfg.V * D;
    if (m->n_touched < 0 || m->n_touched > slot->cap) return ATTN_ERR_SIZE;   /* one backward fits: internal */
    slot->n = m->n_touched;
    memcpy(slot->ids, m->touched, sizeof(int32_t) * (size_t)slot->n);
    qsort(slot->ids, (size_t)slot->n, sizeof(int32_t), cmp_i32);
    for (int64_t i = 0; i < slot->n; i++) {
        const float *g = m->d_emb + (size_t)slot->ids[i] * D;
        float *o = slot->vals + (size_t)i * D;
        for (size_t j = 0; j < D; j++) o[j] = g[j] * share;
    }
    for (int64_t j = 0; j < slot->n_tail; j++) slot->tail[j] = m->grads[VD + (size_t)j] * share;
    return ATTN_OK;
}

/* Adam in two passes that give the bits of one. The summed gradient is zero outside the rows of the
 * step's words, and Adam is elementwise: so the rows no word of the step holds are stepped with a zero
 * gradient while the rank waits for the sum (dist_rowsum_ordered's idle), and once the sum is in, the
 * step's rows and the dense rest, in place. Every call takes the same Adam step number, so every element
 * sees the one step's arithmetic. The second pass takes the step's rows in spans, a gap of at most
 * ADAM_SPAN_GAP rows between two of them joining them (the gap's rows then stepped there, with their zero
 * gradient, not in the first pass), so few calls step the rows instead of one per word (the frequent
 * words have the small ids: a step's ~830 words of --limit 4000, batch 32, make ~73 spans of ~6,100 rows
 * in all, of 20,000); each span's gradient is made in a scratch of ADAM_SPAN_ROWS rows at a time
 * (zeros, then the sum's rows), which stays in cache. The first pass reads a zero buffer that is never
 * written (its pages are the kernel's one zero page). Measured against the packed form it replaced (the
 * rows' parameters and moments gathered, stepped and scattered back): see DESIGN "Shards as a run
 * setting". */
#define ADAM_SPAN_GAP 64
#define ADAM_SPAN_ROWS 1024

static void adam_mark_rows(train_run *r, int s, int B) {
    const int T = r->m.cfg.T;
    r->n_urows = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *ids = r->d.train.ids + (size_t)r->perm[s * r->batch + b] * T;
        for (int t = 0; t < T; t++)
            if (r->umark[ids[t]] < 0) {
                r->umark[ids[t]] = 0;
                r->urows[r->n_urows++] = ids[t];
            }
    }
    qsort(r->urows, (size_t)r->n_urows, sizeof(int32_t), cmp_i32);
    r->n_spans = 0;
    for (int i = 0, j; i < r->n_urows; i = j) {
        for (j = i + 1; j < r->n_urows && r->urows[j] - r->urows[j - 1] <= ADAM_SPAN_GAP; j++) {}
        r->spans[2 * r->n_spans] = r->urows[i];
        r->spans[2 * r->n_spans + 1] = r->urows[j - 1] + 1;
        r->n_spans++;
    }
}

/* Adam on elements [lo, lo + n) of the parameters with gradient g (n elements), at the run's step. */
static attn_status adam_range(train_run *r, size_t lo, size_t n, const float *g) {
    attn_adam view = r->adam;
    view.n = n;
    view.m = r->adam.m + lo;
    view.v = r->adam.v + lo;
    return attn_adam_step(&view, r->m.params + lo, g);
}

static void adam_zero_pass(void *user) {
    train_run *r = user;
    const size_t D = (size_t)r->m.cfg.D;
    /* the rows this rank owns: [own_lo, own_hi), the whole table with one rank */
    const size_t own_hi = (size_t)r->own_hi;
    size_t from = (size_t)r->own_lo;              /* the next row not yet stepped */
    attn_status st = ATTN_OK;
    for (int i = 0; i <= r->n_spans && st == ATTN_OK; i++) {
        size_t to = i < r->n_spans ? (size_t)r->spans[2 * i] : own_hi;
        if (to > own_hi) to = own_hi;
        if (to > from) st = adam_range(r, from * D, (to - from) * D, r->zeros + from * D);
        if (i < r->n_spans && (size_t)r->spans[2 * i + 1] > from) from = (size_t)r->spans[2 * i + 1];
    }
    r->idle_st = st;
}

static attn_status adam_rows_pass(train_run *r, const rowsum *sum) {
    const size_t D = (size_t)r->m.cfg.D, VD = (size_t)r->m.cfg.V * D;
    attn_status st = ATTN_OK;
    for (int64_t i = 0; i < sum->n; i++)
        if (r->umark[sum->ids[i]] < 0) st = ATTN_ERR_ARG;   /* a row the step's words do not hold: internal */
    int64_t k = 0;                                /* the sum's next row (ids ascending, as the spans) */
    for (int i = 0; i < r->n_spans && st == ATTN_OK; i++)
        for (int32_t lo = r->spans[2 * i] > r->own_lo ? r->spans[2 * i] : r->own_lo,
                     end = r->spans[2 * i + 1] < r->own_hi ? r->spans[2 * i + 1] : r->own_hi;
             lo < end && st == ATTN_OK; lo += ADAM_SPAN_ROWS) {
            const int32_t hi = end - lo < ADAM_SPAN_ROWS ? end : lo + ADAM_SPAN_ROWS;
            for (; k < sum->n && sum->ids[k] < lo; k++) {}   /* another rank's rows */
            memset(r->span_g, 0, sizeof(float) * (size_t)(hi - lo) * D);
            for (; k < sum->n && sum->ids[k] < hi; k++)
                memcpy(r->span_g + (size_t)(sum->ids[k] - lo) * D, sum->vals + (size_t)k * D, sizeof(float) * D);
            st = adam_range(r, (size_t)lo * D, (size_t)(hi - lo) * D, r->span_g);
        }
    if (st == ATTN_OK) st = adam_range(r, VD, (size_t)sum->n_tail, sum->tail);
    if (st == ATTN_OK) r->adam.t++;               /* the step every call above took */
    for (int i = 0; i < r->n_urows; i++) r->umark[r->urows[i]] = -1;
    return st;
}

/* Row-owned Adam: out = the distinct rows in [lo, hi) that rank j's groups of step s (B reviews) read, in
 * the order they first appear; every rank lists the same rows in the same order. Returns their number. */
static int rows_read(train_run *r, int s, int B, int j, int32_t lo, int32_t hi, int32_t *out) {
    const int T = r->m.cfg.T, G = r->groups, N = dist_size();
    const int b0 = (int)((int64_t)(j * G / N) * B / G), b1 = (int)((int64_t)((j + 1) * G / N) * B / G);
    int n = 0;
    r->fstamp++;
    for (int b = b0; b < b1; b++) {
        const int32_t *ids = r->d.train.ids + (size_t)r->perm[s * r->batch + b] * T;
        for (int t = 0; t < T; t++)
            if (ids[t] >= lo && ids[t] < hi && r->fmark[ids[t]] != r->fstamp) {
                r->fmark[ids[t]] = r->fstamp;
                out[n++] = ids[t];
            }
    }
    return n;
}

/* Before step s's forward: every rank sends each other rank the rows of its own range that the other's
 * groups read, so that the parameters read are this step's on every rank (the owner alone stepped them).
 * Done before the step rather than after the last one, so the epoch's first step, a --resume and the
 * rows rank 0's gather left stale elsewhere need nothing of their own. */
static attn_status fresh_rows(train_run *r, int s, int B) {
    const int N = dist_size(), k = dist_rank();
    const int32_t V = r->m.cfg.V;
    for (int p = 0; p < N; p++) {
        if (p == k) continue;
        r->n_fsend[p] = rows_read(r, s, B, p, r->own_lo, r->own_hi, r->fsend[p]);
        r->n_frecv[p] = rows_read(r, s, B, k, (int32_t)((int64_t)p * V / N), (int32_t)((int64_t)(p + 1) * V / N),
                                  r->frecv[p]);
    }
    if (dist_swap_rows(r->m.params, r->m.cfg.D, r->fsend, r->n_fsend, r->frecv, r->n_frecv, r->fbuf, &r->bytes_sent))
        return ATTN_ERR_IO;
    return ATTN_OK;
}

static attn_status dp_step(train_run *r, int s, epoch_sums *e) {
    const int n = r->d.train.n, T = r->m.cfg.T, G = r->groups, N = dist_size(), k = dist_rank();
    const int B = n - s * r->batch < r->batch ? n - s * r->batch : r->batch;
    const uint64_t ds = mix64(r->seed * 0x2545f4914f6cdd1dULL + (uint64_t)r->adam.t + 1);
    rowsum *spare = &r->rstack[r->n_levels];
    const double p0 = r->prof ? cli_now() : 0;
    int depth = 0, level[32];
    attn_status st = r->owned ? fresh_rows(r, s, B) : ATTN_OK;
    const double pf = r->prof ? cli_now() : 0;
    for (int g = k * G / N; g < (k + 1) * G / N && st == ATTN_OK; g++) {
        const int lo = (int)((int64_t)g * B / G), nb = (int)((int64_t)(g + 1) * B / G) - lo;
        rowsum *slot = &r->rstack[depth];
        if (nb == 0) {
            slot->n = 0;                              /* a last batch smaller than G */
            memset(slot->tail, 0, sizeof(float) * (size_t)slot->n_tail);
        } else {
            for (int b = 0; b < nb; b++) {
                int id = r->perm[s * r->batch + lo + b];
                memcpy(r->bids + (size_t)b * T, r->d.train.ids + (size_t)id * T, sizeof(int32_t) * (size_t)T);
                r->blab[b] = r->d.train.labels[id];
            }
            const uint64_t gs = mix64(ds ^ mix64((uint64_t)g + 1));
            st = attn_imdb_model_forward(&r->m, r->bids, r->blab, nb, 1, gs, NULL, &e->loss_sum, &e->correct);
            if (st == ATTN_OK) {
                attn_imdb_model_zero_grad(&r->m, 0);
                st = attn_imdb_model_backward(&r->m, r->bids, r->blab, nb, 1, gs);
            }
            if (st == ATTN_OK) st = group_rows(&r->m, slot, (float)nb / (float)B);
            e->seen += nb;
        }
        /* the tree: two partial sums of the same level become one of the next */
        level[depth++] = 0;
        while (st == ATTN_OK && depth >= 2 && level[depth - 1] == level[depth - 2]) {
            if (rowsum_add(spare, &r->rstack[depth - 2], &r->rstack[depth - 1])) st = ATTN_ERR_SIZE;
            swap_rows(&r->rstack[depth - 2], spare);
            depth--;
            level[depth - 1]++;
        }
    }
    /* groups per rank not a power of two: the partial sums left, added from the last */
    for (; st == ATTN_OK && depth >= 2; depth--) {
        if (rowsum_add(spare, &r->rstack[depth - 2], &r->rstack[depth - 1])) st = ATTN_ERR_SIZE;
        swap_rows(&r->rstack[depth - 2], spare);
    }
    if (st != ATTN_OK) return st;
    const double p1 = r->prof ? cli_now() : 0;
    /* Adam's first pass (the table with a zero gradient) while the sum travels, the second after it */
    adam_mark_rows(r, s, B);
    r->idle_st = ATTN_OK;
    if (dist_rowsum_ordered(&r->rstack[0], spare, r->wire, r->wire_bytes, &r->bytes_sent, adam_zero_pass, r))
        return ATTN_ERR_IO;
    if (r->idle_st != ATTN_OK) return r->idle_st;
    const double p2 = r->prof ? cli_now() : 0;
    const rowsum *sum = &r->rstack[0];
    st = adam_rows_pass(r, sum);
    if (r->prof) {
        e->prof[0] += p1 - pf;
        e->prof[1] += p2 - p1;
        e->prof[2] += cli_now() - p2;
        e->prof[3] += (double)sum->n;
        e->prof[4] += pf - p0;
    }
    return st;
}

/* The training steps of one epoch (from the checkpoint's step when --resume goes on inside it), with
 * Keras' progress bar on a terminal; *s_end the steps of the epoch done when it returns (fewer than the
 * epoch's when --max-steps stopped it). Returns 0, or 1 after a message. */
static int train_epoch(train_run *r, int epoch, epoch_sums *e, int *s_end) {
    const int n = r->d.train.n, steps = (n + r->batch - 1) / r->batch;
    /* shuffle: a pure function of (seed, epoch) */
    for (int i = 0; i < n; i++) r->perm[i] = i;
    attn_rng rng;
    attn_rng_seed(&rng, mix64(r->seed ^ mix64((uint64_t)epoch + 1)));
    attn_rng_shuffle(&rng, r->perm, (size_t)n);
    double t0 = cli_now(), last = 0;
    const int first = epoch == r->resumed.epoch && r->resumed.step < steps ? r->resumed.step : 0;
    if (r->lead) fprintf(stderr, "Epoch %d/%d%s\n", epoch + 1, r->epochs, first ? " (resumed inside)" : "");
    *s_end = first;
    for (int s = first; s < steps; s++) {
        if (r->max_steps && r->steps >= r->max_steps) break;    /* --max-steps */
        dist_test_die(r->steps);
        attn_status st = r->dp ? dp_step(r, s, e) : train_step(r, s, e);
        r->steps++;
        *s_end = s + 1;
        if (st != ATTN_OK) {
            if (r->tty) fputc('\n', stderr);
            return cli_fail(st, "imdb: training step");
        }
        if (!isfinite(e->loss_sum)) {
            if (r->tty) fputc('\n', stderr);
            fprintf(stderr, "attn: imdb: %sthe loss is not finite at step %" PRId64 "; stopping (lr too high?)\n",
                    r->dp ? "this rank: " : "", r->adam.t);
            return 1;
        }
        double tn = cli_now();
        if (r->tty && (tn - last > 0.1 || s == steps - 1)) {
            progress(s + 1, steps, t0, e->loss_sum / e->seen, (double)e->correct / e->seen);
            last = tn;
        }
    }
    if (r->tty) fputc('\n', stderr);
    if (r->prof && r->dp)
        fprintf(stderr, "attn: imdb: rank %d profile: rows refreshed %.3f, groups (forward, backward, rows, tree) %.3f, "
                "sum over the ranks (and Adam's zero pass) %.3f, Adam's rows %.3f ms per step; %.0f embedding rows in a "
                "step's sum\n", dist_rank(), 1e3 * e->prof[4] / steps, 1e3 * e->prof[0] / steps, 1e3 * e->prof[1] / steps,
                1e3 * e->prof[2] / steps, e->prof[3] / steps);
    else if (r->prof)
        fprintf(stderr, "attn: imdb: profile: forward %.3f, zero_grad+backward %.3f, adam %.3f ms per step; "
                "%.0f distinct words per batch\n", 1e3 * e->prof[0] / steps, 1e3 * e->prof[1] / steps,
                1e3 * e->prof[2] / steps, e->prof[3] / steps);
    return 0;
}

/* After an epoch's steps: evaluate on the test split, print the epoch's line, save the checkpoint.
 * Returns 0, or 1 after a message; *val_acc the accuracy. */
static int train_end_epoch(train_run *r, int epoch, int s_end, const epoch_sums *e, double t_train, double *val_acc,
                           int keep_best, double best_so_far) {
    double vl, t1 = cli_now();
    /* data parallel: the epoch's sums over the ranks */
    double sums[3] = {e->loss_sum, e->correct, e->seen};
    if (dist_sum_doubles(sums, 3)) return 1;
    epoch_sums all = *e;
    all.loss_sum = sums[0];
    all.correct = (int)sums[1];
    all.seen = (int)sums[2];
    e = &all;
    /* row-owned Adam: every rank evaluates its share of the test reviews with the whole table, and rank 0
       saves it with the moments: the owners' rows first */
    if (r->owned) {
        const int D = r->m.cfg.D;
        const int64_t V = r->m.cfg.V;
        if (dist_gather_owned(r->m.params, D, V, 1, &r->bytes_sent) ||
            dist_gather_owned(r->adam.m, D, V, 0, &r->bytes_sent) || dist_gather_owned(r->adam.v, D, V, 0, &r->bytes_sent))
            return 1;
    }
    if (evaluate(&r->m, &r->d.test, r->m.cfg.T, &vl, val_acc)) return 1;
    double t_val = cli_now() - t1;
    /* --max-steps ended the epoch early: the checkpoint counts the epochs done before it and the steps
       done of it, where --resume goes on */
    const int steps = (r->d.train.n + r->batch - 1) / r->batch, partial = s_end < steps;
    const int done = partial ? epoch : epoch + 1;
    if (partial)
        printf("(--max-steps %" PRId64 ": stopped after step %" PRId64 ", %d of %d steps into epoch %d; --resume "
               "goes on from there)\n", r->max_steps, r->adam.t, s_end, steps, epoch + 1);
    if (!r->lead) return 0;                       /* only rank 0 writes the history and the checkpoint */
    printf("Epoch %d/%d - %d/%d - %.1fs (train %.2fs, val %.2fs) - loss: %.4f - acc: %.4f - val_loss: %.4f - "
           "val_acc: %.4f\n", epoch + 1, r->epochs, e->seen, r->d.train.n, t_train + t_val, t_train, t_val,
           e->loss_sum / e->seen, (double)e->correct / e->seen, vl, *val_acc);
    fflush(stdout);
    /* the history first: a crash before the checkpoint leaves a row that --resume drops and redoes */
    const double row[6] = {epoch + 1, e->loss_sum / e->seen, (double)e->correct / e->seen, vl, *val_acc,
                           t_train + t_val};
    if (cli_history_add(&r->hist, row, 1)) return 1;
    attn_imdb_run_info info = {done, r->o.limit, r->batch, r->adam.t, r->lr, r->seed, partial ? s_end : 0};
    char err[1024] = "";
    attn_status st = attn_imdb_model_save(&r->m, &r->adam, &r->d.vocab, &info, r->ckpt, err, sizeof err);
    if (st == ATTN_OK && keep_best && *val_acc > best_so_far)
        st = attn_imdb_model_save(&r->m, &r->adam, &r->d.vocab, &info, r->best, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: imdb: saving the checkpoint: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    return 0;
}

/* With --resume --keep-best: the validation accuracy of the best checkpoint kept so far (-1 when there is
 * none), so that a worse epoch of this run does not replace it; *epoch its epoch. */
static double kept_best_acc(train_run *r, int *epoch) {
    attn_imdb_model bm;
    attn_imdb_vocab bv;
    attn_imdb_run_info bi;
    double loss, acc = -1;
    *epoch = 0;
    if (access(r->best, R_OK) != 0) return -1;
    if (load_checkpoint(r->best, &bm, EVAL_BATCH, NULL, &bv, &bi, r->d.vocab.crc)) return -1;
    if (evaluate(&bm, &r->d.test, bm.cfg.T, &loss, &acc)) acc = -1;
    *epoch = bi.epoch;
    attn_imdb_model_free(&bm);
    attn_imdb_vocab_free(&bv);
    return acc;
}

/* The epochs, from the first one not done; prints the best validation accuracy. Returns the exit status. */
static int train_loop(const imdb_flags *f, train_run *r) {
    const int n = r->d.train.n, T = r->m.cfg.T;
    r->perm = malloc(sizeof(int32_t) * (size_t)n);
    r->bids = malloc(sizeof(int32_t) * (size_t)r->batch * T);
    r->blab = malloc(sizeof(int32_t) * (size_t)r->batch);
    if (!r->perm || !r->bids || !r->blab) return cli_fail(ATTN_ERR_NOMEM, "imdb");
    if (r->dp) {
        /* the tree's partial sums (one per level, at most log2(groups per rank) + 1) and a spare; rows: at
           most one per distinct word of a batch */
        const int64_t V = r->m.cfg.V, D = r->m.cfg.D, rows = (int64_t)r->batch * T < V ? (int64_t)r->batch * T : V;
        r->n_levels = 1;
        for (int g = r->groups / dist_size(); g > 1; g /= 2) r->n_levels++;
        r->rstack = calloc((size_t)r->n_levels + 1, sizeof(rowsum));
        r->urows = malloc(sizeof(int32_t) * (size_t)rows);
        r->spans = malloc(sizeof(int32_t) * 2 * (size_t)rows);
        r->umark = malloc(sizeof(int32_t) * (size_t)V);
        r->zeros = calloc((size_t)(V * D), sizeof(float));
        r->span_g = malloc(sizeof(float) * ADAM_SPAN_ROWS * (size_t)D);
        if (!r->rstack || !r->urows || !r->spans || !r->umark || !r->zeros || !r->span_g)
            return cli_fail(ATTN_ERR_NOMEM, "imdb");
        for (int64_t i = 0; i < V; i++) r->umark[i] = -1;
        r->own_lo = 0;
        r->own_hi = (int32_t)V;
        r->owned = dist_size() > 1;
        if (r->owned) {
            /* row-owned Adam: rank k steps rows [k·V/N, (k+1)·V/N); a message of fresh rows holds at most the
               reviews of a rank's groups' words, and no more than a range */
            const int N = dist_size(), k = dist_rank(), G = r->groups;
            r->own_lo = (int32_t)((int64_t)k * V / N);
            r->own_hi = (int32_t)((int64_t)(k + 1) * V / N);
            int64_t cap = (int64_t)(G / N) * ((r->batch + G - 1) / G) * T;
            if (cap > V / N + 1) cap = V / N + 1;
            r->fsend = calloc((size_t)N, sizeof(int32_t *));
            r->frecv = calloc((size_t)N, sizeof(int32_t *));
            r->n_fsend = calloc((size_t)N, sizeof(int));
            r->n_frecv = calloc((size_t)N, sizeof(int));
            r->fmark = calloc((size_t)V, sizeof(int32_t));
            r->fbuf = malloc(sizeof(float) * 2 * (size_t)N * (size_t)cap * (size_t)D);
            if (!r->fsend || !r->frecv || !r->n_fsend || !r->n_frecv || !r->fmark || !r->fbuf)
                return cli_fail(ATTN_ERR_NOMEM, "imdb");
            for (int p = 0; p < N; p++)
                if (!(r->fsend[p] = malloc(sizeof(int32_t) * (size_t)cap)) ||
                    !(r->frecv[p] = malloc(sizeof(int32_t) * (size_t)cap)))
                    return cli_fail(ATTN_ERR_NOMEM, "imdb");
        }
        for (int i = 0; i <= r->n_levels; i++)
            if (rowsum_alloc(&r->rstack[i], rows, (int)D, (int64_t)r->m.n_params - V * D))
                return cli_fail(ATTN_ERR_NOMEM, "imdb");
        r->rstack[0].n = rows;       /* the largest sum, for the size of the wire buffer */
        r->wire_bytes = rowsum_packed_bytes(&r->rstack[0]);
        r->rstack[0].n = 0;
        r->wire = malloc(r->wire_bytes);
        if (!r->wire) return cli_fail(ATTN_ERR_NOMEM, "imdb");
    }
    if (r->lead && cli_make_dir("imdb", f->out)) return 1;
    r->tty = r->lead && isatty(2);
    /* ATTN_IMDB_PROFILE=1: time per step of the forward, backward and Adam, per epoch, on stderr */
    const char *pe = getenv("ATTN_IMDB_PROFILE");
    r->prof = pe && *pe && strcmp(pe, "0") != 0;
    double best = -1, kept = -1;
    int best_epoch = 0, kept_epoch = 0;
    if (f->keep_best && f->resume && r->lead) {
        kept = kept_best_acc(r, &kept_epoch);
        if (kept >= 0)
            fprintf(stderr, "attn: imdb: %s holds epoch %d, val_acc %.4f: a later epoch replaces it only if better\n",
                    r->best, kept_epoch, kept);
    }
    char hpath[4200];
    static const char *const hcols[6] = {"epoch", "loss", "acc", "val_loss", "val_acc", "seconds"};
    snprintf(hpath, sizeof hpath, "%s/%s", f->out, HISTORY_NAME);
    if (r->lead && cli_history_start(&r->hist, "imdb", hpath, 6, hcols, r->resumed.epoch, f->plot, "IMDB")) return 1;
    attn_imdb_model_zero_grad(&r->m, 1);
    for (int epoch = r->resumed.epoch; epoch < r->epochs; epoch++) {
        epoch_sums e = {0};
        double t0 = cli_now(), va;
        int s_end;
        if (train_epoch(r, epoch, &e, &s_end)) return 1;
        if (train_end_epoch(r, epoch, s_end, &e, cli_now() - t0, &va, f->keep_best, best > kept ? best : kept))
            return 1;
        if (va > best) { best = va; best_epoch = epoch + 1; }
        if (r->max_steps && r->steps >= r->max_steps) {
            printf("--max-steps %" PRId64 ": stopped; %s holds the parameters after step %" PRId64 "\n", r->max_steps,
                   r->ckpt, r->adam.t);
            return 0;
        }
    }
    /* the checkpoint is the last epoch's, which need not be the best one: say which is which */
    char run_now[64] = "";
    if (r->resumed.epoch > 0) snprintf(run_now, sizeof run_now, " (of epochs %d-%d, run now)", r->resumed.epoch + 1, r->epochs);
    printf("best val_acc: %.4f at epoch %d of %d%s; %s holds epoch %d (the last)\n", best, best_epoch, r->epochs,
           run_now, r->ckpt, r->epochs);
    printf("history: %s%s%s\n", r->hist.path, f->plot ? ", curves: " : "", f->plot ? f->plot : "");
    if (f->keep_best) {
        if (kept > best) printf("%s holds epoch %d (val_acc %.4f, from an earlier run), still the best\n", r->best,
                                kept_epoch, kept);
        else printf("%s holds epoch %d, the best\n", r->best, best_epoch);
    } else if (best_epoch != r->epochs) {
        printf("(--keep-best would also keep epoch %d's checkpoint, as %s)\n", best_epoch, r->best);
    }
    return 0;
}

static int imdb_train_run(const imdb_flags *f);

/* Under mpirun (data parallel) every rank runs imdb_train_run; one that fails stops them all: the others
 * could wait for it for ever. */
static int imdb_train(const imdb_flags *f) {
    if (cli_check_int("imdb", "--epochs", f->epochs, 1, 0) || cli_check_int("imdb", "--batch", f->batch, 1, 4096) ||
        cli_check_int("imdb", "--limit", f->limit, 0, -1) || cli_check_int("imdb", "--max-steps", f->max_steps, 0, -1) ||
        cli_check_int("imdb", "--grad-groups", f->groups, 0, 64))
        return 2;
    if (dist_start() || dist_quiet_followers()) return 1;
    return dist_finish("imdb", imdb_train_run(f));
}

static int imdb_train_run(const imdb_flags *f) {
    if (!(f->lr > 0)) {
        fprintf(stderr, "attn: imdb: --lr %g: must be > 0\n", (double)f->lr);
        return 2;
    }
    const int lead = dist_rank() == 0;
    /* a checkpoint is saved after each epoch: the folder must be usable before the data is read */
    if (lead && cli_check_out_dir("imdb", "--out", f->out)) return 1;
    if (lead && f->plot && cli_check_out_file("imdb", "--plot", f->plot)) return 1;
    set_threads(f->threads);
    train_run r;
    memset(&r, 0, sizeof r);
    r.lead = lead;
    r.max_steps = f->max_steps;
    r.dp = dist_on() || f->groups > 0;  /* the grouped step: under mpirun, or asked for */
    r.groups = f->groups ? f->groups : GRAD_GROUPS;
    if (r.dp && r.groups % dist_size() != 0) {
        fprintf(stderr, "attn: imdb: %d ranks: the ranks must divide --grad-groups %d (the gradient groups of a "
                "batch)\n", dist_size(), r.groups);
        return 2;
    }
    int rc = 1, nothing_to_do = 0;
    /* rank 0 reads the data first (and writes the cache), then the others read it */
    int data_ok = train_settings(f, &r) == 0 && (!lead || load_data(&r.d, f, &r.o) == 0);
    if (dist_barrier()) return 1;
    if (data_ok && !lead) data_ok = load_data(&r.d, f, &r.o) == 0;
    if (data_ok && r.dp && r.batch < r.groups) {
        fprintf(stderr, "attn: imdb: --batch %d: data parallel training needs a batch of at least --grad-groups %d\n",
                r.batch, r.groups);
        data_ok = 0;
    }
    if (data_ok && train_build(f, &r, &nothing_to_do) == 0) {
        if (nothing_to_do) {
            rc = 0;
        } else {
            char par[160] = "";
            if (dist_on())
                snprintf(par, sizeof par, " per rank; data parallel: %d ranks, %d gradient groups per batch",
                         dist_size(), r.groups);
            else if (r.dp)
                snprintf(par, sizeof par, "; %d gradient groups per batch", r.groups);
            char win[48] = "dense";
            if (r.m.cfg.window) snprintf(win, sizeof win, "window %d,%d", r.m.cfg.window_left, r.m.cfg.window_right);
            printf("IMDB self-attention: %d train, %d test reviews, vocabulary %d, maxlen %d, %s%s; %zu parameters; "
                   "batch %d, lr %g, seed %" PRIu64 ", %d threads%s, %s kernels, attention compute %s, BLAS %s\n",
                   r.d.train.n, r.d.test.n, r.m.cfg.V, r.m.cfg.T, win, r.m.cfg.mask_padding ? ", padding masked" : "",
                   r.m.n_params, r.batch, r.lr, r.seed, attn_get_num_threads(), par, attn_isa_name(attn_get_isa()),
                   cli_compute_word(r.m.cfg.compute, cli_sdpa_runs(r.m.cfg.compute, r.batch, 1, r.m.cfg.T, r.m.cfg.D,
                                                                   r.m.cfg.window)),
                   attn_blas_core_name());
            fflush(stdout);
            rc = train_loop(f, &r);
            if (rc == 0 && dist_on() && dist_size() <= 64) {
                /* what each rank sent for the gradient sums (tools/netns/hosts.sh compares it with the wire) */
                double sent[64] = {0};
                sent[dist_rank()] = (double)r.bytes_sent;
                if (dist_sum_doubles(sent, dist_size())) return 1;
                printf("data parallel: gradient bytes sent per rank in this run:");
                for (int i = 0; i < dist_size(); i++) printf(" %.0f", sent[i]);
                printf("\n");
            }
        }
    }
    train_run_free(&r);
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

/* 1 after a message when there is no readable checkpoint at ckpt: says how to train one. */
static int ckpt_missing(const imdb_flags *f, const char *ckpt) {
    if (access(ckpt, R_OK) == 0) return 0;
    if (f->ckpt)
        fprintf(stderr, "attn: imdb: no model at --ckpt %s (%s)\n", ckpt, strerror(errno));
    else
        fprintf(stderr, "attn: imdb: no model in --out %s (%s: %s); train one with `attn imdb train --out %s`, "
                "or give the checkpoint with --ckpt FILE\n", f->out, ckpt, strerror(errno), f->out);
    return 1;
}

static int imdb_eval(const imdb_flags *f) {
    set_threads(f->threads);
    char pbuf[4200];
    const char *ckpt = ckpt_path(f, pbuf, sizeof pbuf);
    if (ckpt_missing(f, ckpt)) return 1;
    /* the data must be encoded the way the checkpoint was trained: its --limit and --maxlen */
    attn_imdb_run_info r = {0};
    attn_imdb_config c;
    char err[1024] = "";
    if (attn_imdb_model_read_run(ckpt, &r, err, sizeof err) != ATTN_OK ||
        attn_imdb_model_read_config(ckpt, &c, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err);
        return 1;
    }
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.limit = r.limit;
    o.T = c.T;
    attn_imdb_data d;
    if (load_data(&d, f, &o)) return 1;
    attn_imdb_model m;
    attn_imdb_vocab v;
    attn_imdb_run_info cm;
    if (load_checkpoint(ckpt, &m, EVAL_BATCH, NULL, &v, &cm, d.vocab.crc)) {
        attn_imdb_free(&d);
        return 1;
    }
    double t0 = cli_now(), loss, acc;
    int rc = evaluate(&m, &d.test, d.T, &loss, &acc);
    double dt = cli_now() - t0;
    if (!rc)
        printf("%s (epoch %d): %d test reviews - loss: %.4f - acc: %.4f - %.2fs (%d threads, attention compute %s)\n",
               ckpt, cm.epoch, d.test.n, loss, acc, dt, attn_get_num_threads(),
               cli_compute_word(m.cfg.compute, cli_sdpa_runs(m.cfg.compute, EVAL_BATCH, 1, m.cfg.T, m.cfg.D,
                                                             m.cfg.window)));
    attn_imdb_model_free(&m);
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

/* One review's prediction: its ids, the attention weights, and the kept positions' labels and scores. */
typedef struct review {
    int T;
    int32_t *ids;                /* (T) left-padded */
    float *w;                    /* (T,T) attention weights */
    int first, k;                /* the review's positions (start and words): [first, T), k of them */
    float *score;                /* (k) attention each position receives */
    float *pad;                  /* (k) the share of each position's attention that goes to the padding */
    float *wp;                   /* (k, k+1) the word-by-word weights, then the padding's share */
    const char **labels;         /* (k) pointers into lab */
    char (*lab)[96], (*ring)[96];/* (T) label texts; the last T tokens as written */
    int n_words;                 /* words in the text (before the cut to T) */
} review;

static int review_alloc(review *r, int T) {
    memset(r, 0, sizeof *r);
    r->T = T;
    r->ids = malloc(sizeof(int32_t) * (size_t)T);
    r->w = malloc(sizeof(float) * (size_t)T * T);
    r->score = malloc(sizeof(float) * (size_t)T);
    r->pad = malloc(sizeof(float) * (size_t)T);
    r->wp = malloc(sizeof(float) * (size_t)T * (T + 1));
    r->labels = malloc(sizeof(char *) * (size_t)(T + 1));
    r->lab = malloc(96 * (size_t)T);
    r->ring = malloc(96 * (size_t)T);
    if (r->ids && r->w && r->score && r->pad && r->wp && r->labels && r->lab && r->ring) return 0;
    return cli_fail(ATTN_ERR_NOMEM, "imdb");
}

static void review_free(review *r) {
    free(r->ids);
    free(r->w);
    free(r->score);
    free(r->pad);
    free(r->wp);
    free(r->labels);
    free(r->lab);
    free(r->ring);
}

/* The text as the model reads it (r->ids), with messages for what cannot be classified. Returns 0 or 1. */
static int review_encode(review *r, const attn_imdb_vocab *v, const char *text) {
    size_t bad = 0;
    attn_status st = attn_imdb_encode_text(r->ids, r->T, v, text, strlen(text), &r->n_words, &bad);
    if (st == ATTN_ERR_FORMAT) {
        fprintf(stderr, "attn: imdb: the text is not valid UTF-8 (byte %zu)\n", bad);
        return 1;
    }
    if (st == ATTN_ERR_ARG) {
        fprintf(stderr, "attn: imdb: the text has no word to classify\n");
        return 1;
    }
    return cli_fail(st, "imdb: encode");
}

/* After the forward: the positions that hold the review (not the padding), labelled with the words as
 * written (an out-of-vocabulary word gets a '?'), and the attention each receives: the mean over the
 * review's query rows. */
static void review_explain(review *r, const char *text) {
    const int T = r->T;
    r->first = 0;
    while (r->first < T && r->ids[r->first] == ATTN_IMDB_PAD) r->first++;
    const int first = r->first, k = T - first;
    r->k = k;
    word_ring wr = {r->ring, T, 0};
    attn_imdb_tokenize(text, strlen(text), ring_word, &wr, NULL);
    for (int j = 0; j < k; j++) {
        if (j == 0 && r->ids[first] == ATTN_IMDB_START) {
            snprintf(r->lab[j], 96, "<start>");
        } else {
            int64_t tok = wr.n - (k - j);           /* token index of position j */
            snprintf(r->lab[j], 96, "%.90s%s", r->ring[(tok % T + T) % T], r->ids[first + j] == ATTN_IMDB_OOV ? "?" : "");
        }
        r->labels[j] = r->lab[j];
    }
    for (int s = 0; s < k; s++) {
        double acc = 0;
        for (int t = 0; t < k; t++) acc += r->w[(size_t)(first + t) * T + first + s];
        r->score[s] = (float)(acc / k);
    }
    /* what the picture of the review's words alone hides: the weight its rows give the padding */
    for (int t = 0; t < k; t++) {
        const float *row = r->w + (size_t)(first + t) * T;
        double acc = 0;
        for (int s = 0; s < first; s++) acc += row[s];
        r->pad[t] = (float)acc;
        memcpy(r->wp + (size_t)t * (k + 1), row + first, sizeof(float) * (size_t)k);
        r->wp[(size_t)t * (k + 1) + k] = (float)acc;
    }
    if (first > 0) {                        /* then k < T: lab[k] is free */
        snprintf(r->lab[k], 96, "<pad> x%d", first);
        r->labels[k] = r->lab[k];
    }
}

/* The mean share of the review's attention that goes to the padding (0 without padding). */
static double review_padding_share(const review *r) {
    double mean = 0;
    for (int t = 0; r->first > 0 && t < r->k; t++) mean += r->pad[t];
    return r->first > 0 ? mean / r->k : 0;
}

/* "padding: 59 of 64 positions take 91% of the review's attention (<start> 90%, a 92%, ...)". */
static void review_print_padding(const review *r, int masked) {
    if (r->first == 0) {
        printf("padding: none (the review fills all %d positions)\n", r->T);
        return;
    }
    const double mean = review_padding_share(r);
    printf("padding: %d of %d positions take %.0f%% of the review's attention (", r->first, r->T, 100 * mean);
    const int shown = r->k < 12 ? r->k : 12;
    for (int t = 0; t < shown; t++) printf("%s%s %.0f%%", t ? ", " : "", r->labels[t], 100.0 * r->pad[t]);
    printf("%s)%s\n", r->k > shown ? ", ..." : "", masked ? "; the model masks it (--mask-padding)" : "");
}

/* The explorer: the word-by-word weights (with the padding's share as the last column) and the attention
 * each word receives. Returns 0 or 1. */
static int review_html(const review *r, const attn_heatmap *words, const attn_heatmap *received, float pos,
                       const imdb_flags *f, int masked) {
    char note[512];
    if (r->first > 0)
        snprintf(note, sizeof note, "positive probability %.4f (%s). The review fills %d of the %d positions; the "
                 "%d padding positions take %.0f%% of its attention (the last column, <pad> x%d)%s.", pos,
                 pos >= 0.5f ? "positive" : "negative", r->k, r->T, r->first, 100 * review_padding_share(r), r->first,
                 masked ? "; the model masks them (--mask-padding)" : "");
    else
        snprintf(note, sizeof note, "positive probability %.4f (%s). The review fills all %d positions (no padding).",
                 pos, pos >= 0.5f ? "positive" : "negative", r->T);
    static const char *const mean_col[1] = {"mean weight"};
    attn_explorer_map maps[2] = {{.map = *words, .group = "self-attention"},
                                 {.map = *received, .group = "attention received"}};
    maps[1].map.col_labels = mean_col;
    return cli_write_html("imdb", maps, 2, "IMDB sentiment: self-attention over the review", note, f->html);
}

/* The terminal heatmap of the attention received, and with --png the word-by-word weights (--weights-out
 * their numbers, --html the explorer). Returns 0 or 1. */
static int review_show(const review *r, const imdb_flags *f, float pos, int masked) {
    attn_heatmap h;
    memset(&h, 0, sizeof h);
    h.values = r->score;
    h.rows = r->k;
    h.cols = 1;
    h.row_labels = r->labels;
    h.title = "attention received (mean over the review's positions)";
    h.row_title = "words";
    h.palette = f->palette;
    attn_status st = attn_heatmap_term(&h, stdout, cli_use_color(f->no_color));
    if (st != ATTN_OK) return cli_fail(st, "imdb: heatmap");
    if (!f->png && !f->weights_out && !f->html) return 0;
    attn_heatmap hp;
    memset(&hp, 0, sizeof hp);
    /* with padding, its share of each row is the last column: every row of the picture sums to 1 */
    const int padded = r->first > 0;
    hp.values = padded ? r->wp : r->w + (size_t)r->first * r->T + r->first;
    hp.rows = r->k;
    hp.cols = r->k + padded;
    hp.row_stride = padded ? r->k + 1 : r->T;
    hp.row_labels = r->labels;
    hp.col_labels = r->labels;
    hp.title = padded ? "IMDB self-attention weights (last column: all the padding)" : "IMDB self-attention weights";
    hp.row_title = "Queries";
    hp.col_title = "Keys";
    hp.annotate = f->annotate;
    hp.palette = f->palette;
    char err[1024] = "";
    if (f->png && (st = attn_heatmap_png(&hp, f->png, err, sizeof err)) != ATTN_OK) {
        fprintf(stderr, "attn: imdb: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    if (f->png) printf("wrote %s\n", f->png);
    if (f->weights_out && cli_write_weights("imdb", &hp, 1, f->weights_out)) return 1;
    return f->html ? review_html(r, &hp, &h, pos, f, masked) : 0;
}

/* Classifies the text: the probability, then the attention. Returns 0 or 1. */
static int predict_text(attn_imdb_model *m, const attn_imdb_vocab *v, review *r, const imdb_flags *f,
                        const char *text) {
    if (review_alloc(r, m->cfg.T) || review_encode(r, v, text)) return 1;
    attn_status st = attn_imdb_model_forward(m, r->ids, NULL, 1, 0, 0, r->w, NULL, NULL);
    if (st != ATTN_OK) return cli_fail(st, "imdb: forward");
    const float pos = m->probs[1];
    review_explain(r, text);
    const int shown = r->k - (r->ids[r->first] == ATTN_IMDB_START);
    printf("positive probability: %.4f (%s); %d words%s\n", pos, pos >= 0.5f ? "positive" : "negative", r->n_words,
           r->n_words > shown ? ", the model sees the last ones (pre-truncated)" : "");
    review_print_padding(r, m->cfg.mask_padding);
    return review_show(r, f, pos, m->cfg.mask_padding);
}

static int imdb_predict(const imdb_flags *f, const char *text) {
    if (f->png && cli_check_out_file("imdb", "--png", f->png)) return 1;
    if (f->html && cli_check_out_file("imdb", "--html", f->html)) return 1;
    set_threads(f->threads);
    char pbuf[4200];
    const char *ckpt = ckpt_path(f, pbuf, sizeof pbuf);
    if (ckpt_missing(f, ckpt)) return 1;
    attn_imdb_model m;
    attn_imdb_vocab v;
    attn_imdb_run_info cm;
    if (load_checkpoint(ckpt, &m, 1, NULL, &v, &cm, 0)) return 1;
    review r;
    const int rc = predict_text(&m, &v, &r, f, text);
    review_free(&r);
    attn_imdb_model_free(&m);
    attn_imdb_vocab_free(&v);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Entry.
 */
int cmd_imdb(int argc, char **argv) {
    imdb_flags f = {.out = "imdb_out", .epochs = 5, .batch = 32, .lr = 2e-4f, .seed = 1,
                    .palette = ATTN_PALETTE_MAGMA, .maxlen = 64};
    const char *sub = argc >= 2 ? argv[1] : NULL;
    const cli_opt train_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the .tar.gz, the aclImdb folder, or a folder holding either (default "
                                          "$ATTN_DATA, else " CLI_DATA_DEFAULT ")"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the data cache go"},
        {"dir", CLI_STR, &f.out, "DIR", "the same as --out"},
        {"epochs", CLI_INT, &f.epochs, "N", "epochs in all (with --resume: up to this many)"},
        {"batch", CLI_INT, &f.batch, "N", "batch size"},
        {"lr", CLI_FLOAT, &f.lr, "X", "Adam learning rate (Keras decay 1e-5, eps 1e-7)"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the initialization, shuffling and dropout"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N reviews of each split (0 = all)"},
        {"resume", CLI_BOOL, &f.resume, NULL, "continue from the checkpoint in --out"},
        {"keep-best", CLI_BOOL, &f.keep_best, NULL, "also keep the best epoch's checkpoint as --out/" BEST_NAME},
        {"mask-padding", CLI_BOOL, &f.mask_padding, NULL, "the same model, but its self-attention ignores the padding "
                                                         "(a key mask; saved in the checkpoint, so predict and eval "
                                                         "use it too)"},
        {"precision", CLI_STR, &f.precision, "NAME", CLI_PRECISION_HELP},
        {"plot", CLI_STR, &f.plot, "FILE", "draw the loss and accuracy curves as a PNG after every epoch (the history "
                                           "itself is always in --out/" HISTORY_NAME ")"},
        {"max-steps", CLI_INT, &f.max_steps, "N", "stop after N optimizer steps of this run (0 = no limit); the "
                                                  "checkpoint is saved then"},
        {"maxlen", CLI_INT, &f.maxlen, "N", "words per review, its last N (longer reviews are cut, shorter ones "
                                            "padded in front; 64 is the Keras model's)"},
        {"window", CLI_STR, &f.window, "W|L,R", "sliding-window attention: word t sees words t-W .. t+W (or t-L .. "
                                                "t+R) only; saved in the checkpoint (default: dense)"},
        {"grad-groups", CLI_INT, &f.groups, "G", "each batch's gradient is the sum of G groups' in a fixed tree, so "
                                                 "any number of ranks dividing G gives the same bits (0 = 4 under "
                                                 "mpirun; without mpirun, given: the same grouped step on one "
                                                 "process)"},
    };
    const cli_opt eval_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the .tar.gz, the aclImdb folder, or a folder holding either (default "
                                          "$ATTN_DATA, else " CLI_DATA_DEFAULT ")"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the data cache are"},
        {"dir", CLI_STR, &f.out, "DIR", "the same as --out"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_opt predict_opts[] = {
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"dir", CLI_STR, &f.out, "DIR", "the same as --out"},
        {"file", CLI_STR, &f.file, "FILE", "read the text from FILE (- for standard input) instead of the argument"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"png", CLI_STR, &f.png, "FILE", "also write the word-by-word attention weights as a PNG"},
        {"weights-out", CLI_STR, &f.weights_out, "FILE", "also write those weights as numbers with the words: .npy "
                                                         "(words in FILE's .labels.json), .csv or .json"},
        {"html", CLI_STR, &f.html, "FILE", "also write the explorer: one self-contained page where pointing at a "
                                           "word shows whom it attends to, with the weights"},
        {"annotate", CLI_BOOL, &f.annotate, NULL, "write each weight in its cell in the PNG (texts of up to "
                                                  "31 words)"},
        {"palette", CLI_STR, &f.palette_name, "NAME", CLI_PALETTE_HELP},
        {"no-color", CLI_BOOL, &f.no_color, NULL, "shaded characters instead of 24-bit colors"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_cmd cmds[3] = {
        {"attn imdb train [options]",
         "Trains the self-attention sentiment classifier (embedding, one self-attention layer, mean, dense) on the IMDB reviews (25,000 train, 25,000 "
         "test), printing one line per epoch and saving a checkpoint after each.",
         train_opts, (int)(sizeof train_opts / sizeof train_opts[0]), 0, 0},
        {"attn imdb eval [options]", "Evaluates a checkpoint on the test reviews.", eval_opts,
         (int)(sizeof eval_opts / sizeof eval_opts[0]), 0, 0},
        {"attn imdb predict [options] \"text\" | -   (or --file FILE)",
         "Classifies a text and shows the attention over its words. The text is the argument, or\n"
         "standard input when the argument is -, or the file given with --file.", predict_opts,
         (int)(sizeof predict_opts / sizeof predict_opts[0]), 0, 1},
    };
    int which = !sub ? -1 : strcmp(sub, "train") == 0 ? 0 : strcmp(sub, "eval") == 0 ? 1
                              : strcmp(sub, "predict") == 0 ? 2 : -1;
    if (which < 0) {
        int help = sub && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0);
        FILE *o = help ? stdout : stderr;
        if (sub && !help) fprintf(stderr, "attn: imdb: unknown subcommand '%s'\n\n", sub);
        fprintf(o, "usage: attn imdb train|eval|predict [options]\n\n"
                   "  train    train the self-attention sentiment classifier\n"
                   "  eval     evaluate a checkpoint on the test reviews\n"
                   "  predict  classify a text and show the attention over its words\n\n"
                   "'attn imdb <subcommand> --help' lists the options.\n");
        return help ? 0 : 2;
    }
    const char *pos[1] = {NULL};
    int n_pos = 0;
    int r = cli_parse(&cmds[which], argc - 1, argv + 1, pos, &n_pos);
    if (r >= 0) return r;
    if (cli_check_threads("imdb", "--threads", f.threads)) return 2;
    f.data = cli_data_dir(f.data, &f.data_from);
    if (which == 0 && (f.maxlen < 1 || f.maxlen > 65536)) {
        fprintf(stderr, "attn: imdb: --maxlen %d: must be in 1..65536\n\n", f.maxlen);
        cli_usage(&cmds[0], stderr);
        return 2;
    }
    if (which == 0 && f.window && cli_parse_window(f.window, -1, &f.window_left, &f.window_right)) {
        fprintf(stderr, "attn: imdb: --window %s: want W or L,R (integers >= 0)\n\n", f.window);
        cli_usage(&cmds[0], stderr);
        return 2;
    }
    if (which == 0 && (r = cli_precision("imdb", &cmds[0], f.precision, &f.compute))) return r;
    if (which == 0) return imdb_train(&f);
    if (which == 1) return imdb_eval(&f);
    if (f.weights_out && (r = cli_check_weights_out("imdb", &cmds[2], f.weights_out))) return r;
    if ((r = cli_palette("imdb", &cmds[2], f.palette_name, &f.palette))) return r;
    char *text = NULL;
    if ((r = cli_predict_text("imdb", &cmds[2], n_pos ? pos[0] : NULL, f.file, &text))) return r;
    r = imdb_predict(&f, text);
    free(text);
    return r;
}
