/*
 * cmd_detect.c — `attn detect train|eval|predict`: DETR-style detection on Fashion-MNIST canvases
 * (attn/detr.h).
 *
 * A canvas is 56x56 holding 1-3 items at random places (attn_detr_canvas), each with its class and the
 * tight box of its pixels. Canvas i of a split is a pure function of (seed, i): training reads canvases
 * epoch·N .. epoch·N + N - 1 of the training split (new ones every epoch); eval and predict read canvases
 * 0.. of the test split under a seed derived from --seed; the per-epoch check reads canvases 0.. of the
 * training split under another derived seed (the validation canvases: training items, new canvases), where
 * the confidence cut is chosen (eval --on val scores them too).
 *
 *   train    AdamW, linear warm-up then cosine decay, the set loss (Hungarian matching, class cross-entropy
 *            with "no object" weighted 0.1, L1 and GIoU on the boxes); a progress line, one line per
 *            epoch (f1 and mean_iou on --val test canvases); --out/detr.safetensors after every epoch and
 *            where --max-steps stops (atomically, with the optimizer's state and the step: --resume
 *            continues exactly), the history in --out/detr_history.csv (--plot FILE draws it).
 *   eval     prints `f1 0.xxx mean_iou 0.xxx` on --canvases test canvases (default 2,000).
 *   predict  detects on test canvas N; with --png draws the canvas with the predicted boxes and, for each
 *            query that found an object, its cross-attention (last decoder block, mean over heads).
 *
 * Scoring: a query predicts an object when its most likely real class is more likely than "no object"
 * (DETR's argmax), has probability >= the rule's cut (a confidence cut as DETR's demo notebooks make; 0:
 * none) and, when the rule suppresses duplicates, no more probable detection's box overlaps its at IoU >=
 * 0.5. The rule (--threshold, --dedup) is, where not given, the one of best f1 on the --val validation
 * canvases of training items, chosen by eval and predict themselves: never on test canvases. Per canvas
 * the predictions are matched one to one to the true items by the Hungarian method on -IoU; a matched pair
 * is a true positive when IoU >= 0.5 and the classes agree. f1 = 2·TP / (predictions + items); mean_iou is
 * the mean IoU of the matched pairs (whatever their class), so it measures the boxes alone. eval also
 * counts the matched pairs whose class is right at any IoU: the classes apart from the boxes.
 *
 * Pixels are scaled to [0,1], then normalized as (v - 0.10) / 0.28: round figures near a canvas's own
 * (from Fashion-MNIST's mean 0.286 and std 0.353 per item and two 28x28 items on average in 56x56, about
 * 0.14 and 0.29); the patch embedding's bias absorbs the difference in the mean.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "attn/detr.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_NAME "detr.safetensors"
#define HISTORY_NAME "detr_history.csv"
#define EVAL_BATCH 64
#define CANVAS 56
#define MAX_ITEMS 3
#define CV_MEAN 0.10f
#define CV_STD 0.28f
#define TEST_SEED_SALT 0xde7ec7ULL
#define DEFAULT_EPOCHS 80
#define VAL_SEED_SALT 0x5a1dca7ULL
/* The decision rules tried on the validation canvases: a confidence cut (0: none) and, or not, the
 * suppression of duplicates (a detection whose box overlaps a more probable one's at IoU >= 0.5; items
 * overlap at most ATTN_DETR_MAX_OVERLAP, so two true items never do). Simplest first: a tie keeps it. */
#define N_CUTS 8
#define N_RULES (2 * N_CUTS)
#define DEDUP_IOU 0.5f
static const float cuts[N_CUTS] = {0.0f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f};
typedef struct detect_rule {
    float cut, dedup;            /* dedup: the IoU at which a less probable detection is dropped (0: never) */
} detect_rule;
static detect_rule rule_at(int i) { return (detect_rule){cuts[i % N_CUTS], i < N_CUTS ? 0.0f : DEDUP_IOU}; }

typedef struct detect_flags {
    const char *data, *out, *ckpt, *png, *plot, *on;
    int epochs, batch, threads, limit, resume, warmup, canvases, val, max_steps;
    int shards;                  /* train: --shards (0: not given) */
    int patch, queries, dim, heads, ffn, enc_blocks, dec_blocks;
    int patch_kernel;            /* train: --patch-kernel K (0: not given, the patch size) */
    float lr, wd, clip, threshold, dedup;
    uint64_t seed;
} detect_flags;

static int load_data(attn_fmnist *d, const detect_flags *f) {
    if (cli_fmnist_load("detect", d, f->data, f->limit)) return 1;
    if (d->train.n < 1 || d->test.n < 1) {
        fprintf(stderr, "attn: detect: %s: a split without images\n", f->data);
        attn_fmnist_free(d);
        return 1;
    }
    if (d->train.rows > CANVAS || d->train.cols > CANVAS) {
        fprintf(stderr, "attn: detect: %s holds %dx%d images, larger than the %dx%d canvas\n", f->data,
                d->train.rows, d->train.cols, CANVAS, CANVAS);
        attn_fmnist_free(d);
        return 1;
    }
    return 0;
}

/* Canvas i of split s under seed: pixels x (CANVAS²) normalized, its scene. */
static attn_status make_canvas(float *x, attn_detr_scene *sc, const attn_fmnist_split *s, uint64_t seed, int64_t i) {
    uint8_t px[CANVAS * CANVAS];
    attn_status st = attn_detr_canvas(px, sc, s, CANVAS, MAX_ITEMS, seed, (uint64_t)i);
    if (st != ATTN_OK) return st;
    for (int k = 0; k < CANVAS * CANVAS; k++) x[k] = ((float)px[k] / 255.0f - CV_MEAN) / CV_STD;
    return ATTN_OK;
}

static uint64_t test_seed(uint64_t seed) { return cli_mix64(seed ^ TEST_SEED_SALT); }
/* The validation canvases: training items (never test ones) under a seed of their own, so they are not
 * the canvases trained on. */
static uint64_t val_seed(uint64_t seed) { return cli_mix64(seed ^ VAL_SEED_SALT); }

static double box_iou(const float *a, const float *b) {
    const double ax0 = a[0] - a[2] / 2, ax1 = a[0] + a[2] / 2, ay0 = a[1] - a[3] / 2, ay1 = a[1] + a[3] / 2;
    const double bx0 = b[0] - b[2] / 2, bx1 = b[0] + b[2] / 2, by0 = b[1] - b[3] / 2, by1 = b[1] + b[3] / 2;
    const double iw = fmin(ax1, bx1) - fmax(ax0, bx0), ih = fmin(ay1, by1) - fmax(ay0, by0);
    const double in = iw > 0 && ih > 0 ? iw * ih : 0, u = a[2] * (double)a[3] + b[2] * (double)b[3] - in;
    return u > 0 ? in / u : 0;
}

/* What a query (K+1 logits, the last "no object") predicts: its most likely real class when that class is
 * more likely than "no object" and its probability is at least thr; else -1. prob (or NULL) gets that
 * class's probability. */
static int query_object(const float *logits, int K1, float thr, float *prob) {
    int best = 0;
    double mx = logits[0], s = 0;
    for (int k = 1; k < K1; k++) if (logits[k] > mx) mx = logits[k];
    for (int k = 1; k < K1 - 1; k++) if (logits[k] > logits[best]) best = k;
    for (int k = 0; k < K1; k++) s += exp((double)logits[k] - mx);
    const double p = exp((double)logits[best] - mx) / s;
    if (prob) *prob = (float)p;
    return logits[best] > logits[K1 - 1] && p >= thr ? best : -1;
}

/* The queries that predict an object under rule r: used (n, in query order), cls their classes. A query
 * predicts when query_object says so at r->cut, and, with r->dedup, no more probable predicting query's
 * box overlaps its at IoU >= r->dedup (ties: the lower query wins). Returns n. */
static int select_queries(const float *logits, const float *boxes, int Q, int K1, const detect_rule *r, int *used,
                          int *cls) {
    int n = 0, c[64];
    float p[64];
    for (int q = 0; q < Q && q < 64; q++) c[q] = query_object(logits + (size_t)q * K1, K1, r->cut, &p[q]);
    for (int q = 0; q < Q && q < 64; q++) {
        if (c[q] < 0) continue;
        int keep = 1;
        for (int o = 0; o < Q && o < 64 && keep && r->dedup > 0.0f; o++)
            if (o != q && c[o] >= 0 && (p[o] > p[q] || (p[o] == p[q] && o < q)) &&
                box_iou(boxes + (size_t)o * 4, boxes + (size_t)q * 4) >= r->dedup)
                keep = 0;
        if (keep) { used[n] = q; cls[n++] = c[q]; }
    }
    return n;
}

typedef struct detect_score {
    long tp, preds, items, matched, same_class;   /* same_class: matched pairs of the right class, any IoU */
    double iou_sum;
} detect_score;

/* Scores one canvas: Q queries' logits and boxes against the scene (see the header). */
static int score_canvas(detect_score *r, const float *logits, const float *boxes, int Q, int K1,
                        const detect_rule *rule, const attn_detr_scene *sc) {
    int used[64], cls[64], match[64];
    float cost[64 * ATTN_DETR_MAX_ITEMS];
    const int n = select_queries(logits, boxes, Q, K1, rule, used, cls);
    r->preds += n;
    r->items += sc->n;
    if (!n || !sc->n) return 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < sc->n; j++) cost[i * sc->n + j] = (float)-box_iou(boxes + (size_t)used[i] * 4, sc->boxes[j]);
    char work[4096];
    size_t wb;
    if (attn_hungarian_work_bytes(n, sc->n, &wb) != ATTN_OK || wb > sizeof work ||
        attn_hungarian(match, NULL, cost, n, sc->n, work, sizeof work) != ATTN_OK)
        return cli_fail(ATTN_ERR_ARG, "detect: matching");
    for (int i = 0; i < n; i++) {
        const int j = match[i];
        if (j < 0) continue;
        const double iou = -cost[i * sc->n + j];
        r->matched++;
        r->iou_sum += iou;
        r->same_class += cls[i] == sc->labels[j];
        r->tp += iou >= 0.5 && cls[i] == sc->labels[j];
    }
    return 0;
}

/* f1 and mean_iou over n canvases of split s, EVAL_BATCH at a time (progress when long), under each of
 * n_rules rules (f1[i], miou[i]). */
static int evaluate(attn_detr *m, const attn_fmnist_split *s, uint64_t seed, int n, const detect_rule *rules,
                    int n_rules, double *f1, double *miou, int verbose) {
    const int Bm = m->cfg.max_batch < EVAL_BATCH ? m->cfg.max_batch : EVAL_BATCH, Q = m->cfg.queries, K1 = m->K1;
    const size_t px = (size_t)CANVAS * CANVAS;
    float *x = malloc(sizeof(float) * Bm * px), *logits = malloc(sizeof(float) * (size_t)Bm * Q * K1);
    float *boxes = malloc(sizeof(float) * (size_t)Bm * Q * 4);
    attn_detr_scene *sc = malloc(sizeof *sc * (size_t)Bm);
    detect_score r[N_RULES] = {{0}};
    int rc = 0;
    if (n_rules < 1 || n_rules > N_RULES) return cli_fail(ATTN_ERR_ARG, "detect: rules");
    double t0 = cli_now(), last = t0;
    attn_status st;
    if (!x || !logits || !boxes || !sc) { rc = cli_fail(ATTN_ERR_NOMEM, "detect"); goto done; }
    for (int lo = 0; lo < n && !rc; lo += Bm) {
        const int B = n - lo < Bm ? n - lo : Bm;
        for (int b = 0; b < B && !rc; b++)
            if ((st = make_canvas(x + b * px, &sc[b], s, seed, lo + b)) != ATTN_OK) rc = cli_fail(st, "detect: canvas");
        if (rc) break;
        if ((st = attn_detr_forward(m, logits, boxes, NULL, x, B)) != ATTN_OK) { rc = cli_fail(st, "detect: forward"); break; }
        for (int i = 0; i < n_rules; i++)
            for (int b = 0; b < B && !rc; b++)
                rc = score_canvas(&r[i], logits + (size_t)b * Q * K1, boxes + (size_t)b * Q * 4, Q, K1, &rules[i],
                                  &sc[b]);
        const double now = cli_now();
        if (verbose && (lo + B == n || now - last > 15.0)) {
            fprintf(stderr, "  %d/%d canvases - %.1fs\n", lo + B, n, now - t0);
            last = now;
        }
    }
    for (int i = 0; i < n_rules; i++) {
        f1[i] = r[i].preds + r[i].items ? 2.0 * r[i].tp / (double)(r[i].preds + r[i].items) : 0.0;
        miou[i] = r[i].matched ? r[i].iou_sum / r[i].matched : 0.0;
        if (verbose && !rc)
            fprintf(stderr, "attn: detect: %ld items, %ld predicted, %ld matched, %ld right (IoU >= 0.5, class); "
                    "class right in %ld of the matched (%.1f%%)\n", r[i].items, r[i].preds, r[i].matched, r[i].tp,
                    r[i].same_class, r[i].matched ? 100.0 * r[i].same_class / r[i].matched : 0.0);
    }
done:
    free(x); free(logits); free(boxes); free(sc);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * train
 */
#define N_RUN_META 11
/* "shards" (saved after them; absent before: 2) is read by dist_shards */
static const char *const run_keys[N_RUN_META + 1] = {"epochs", "batch", "lr", "weight_decay", "warmup", "seed",
                                                      "limit", "canvases", "val", "max_steps", "clip", "shards"};

static int save_checkpoint(const char *path, const attn_detr *m, const attn_adam *opt, const detect_flags *f) {
    char v[N_RUN_META + 1][32];
    const char *vp[N_RUN_META + 1];
    snprintf(v[11], 32, "%d", f->shards);
    snprintf(v[0], 32, "%d", f->epochs);
    snprintf(v[1], 32, "%d", f->batch);
    snprintf(v[2], 32, "%.9g", (double)f->lr);
    snprintf(v[3], 32, "%.9g", (double)f->wd);
    snprintf(v[4], 32, "%d", f->warmup);
    snprintf(v[5], 32, "%" PRIu64, f->seed);
    snprintf(v[6], 32, "%d", f->limit);
    snprintf(v[7], 32, "%d", f->canvases);
    snprintf(v[8], 32, "%d", f->val);
    snprintf(v[9], 32, "%d", f->max_steps);
    snprintf(v[10], 32, "%.9g", (double)f->clip);
    for (int i = 0; i < N_RUN_META + 1; i++) vp[i] = v[i];
    char err[1024] = "";
    attn_status st = attn_detr_save(m, opt, run_keys, vp, N_RUN_META + 1, path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: detect: saving the checkpoint: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    return 0;
}

/* The saved run's settings; --epochs and --max-steps given on the command line win. */
static int resume_settings(const char *path, detect_flags *f, int epochs_given, int steps_given) {
    double v[N_RUN_META];
    if (cli_run_meta("detect", path, run_keys, N_RUN_META, v)) return 1;
    if (!epochs_given) f->epochs = (int)v[0];
    f->batch = (int)v[1];
    f->lr = (float)v[2];
    f->wd = (float)v[3];
    f->warmup = (int)v[4];
    if (cli_run_meta_u64("detect", path, run_keys[5], &f->seed)) return 1;   /* all 64 bits, not a double's 53 */
    f->limit = (int)v[6];
    f->canvases = (int)v[7];
    f->val = (int)v[8];
    if (!steps_given) f->max_steps = (int)v[9];
    f->clip = (float)v[10];
    return 0;
}

static void progress(int done, int total, double t0, double loss, const float *ls, int tty) {
    const double el = cli_now() - t0, eta = done ? el * (total - done) / done : 0;
    fprintf(stderr, "%s  %6d/%d canvases - %s %5.1fs - loss %.4f (ce %.3f l1 %.3f giou %.3f)%s", tty ? "\r" : "",
            done, total, done < total ? "ETA" : "in", done < total ? eta : el, loss, (double)ls[0], (double)ls[1],
            (double)ls[2], tty ? "   " : "\n");
    fflush(stderr);
}

/* Training; under mpirun data parallel: every rank forms the whole batch and runs its shards' forward
 * (--shards G / N each; the ranks must divide G), dist_gather_shards gives every rank the
 * whole batch's logits and boxes, every rank runs the criterion on them, then its shards' backward, and
 * dist_combine_shards adds the shards' gradients in shard order on rank 0 and sends the sum back: the
 * parameters are bitwise one process's. Only rank 0 checks, logs and writes. */
static int detect_train(detect_flags *f, int epochs_given, int steps_given) {
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", f->out, CKPT_NAME);
    const int lead = dist_rank() == 0, N = dist_size();
    if (f->resume && resume_settings(ckpt, f, epochs_given, steps_given)) return 1;
    int sh_first, sh_count, r;
    if ((r = dist_shards("detect", ckpt, f->resume, &f->shards, ATTN_DETR_SHARDS, &sh_first, &sh_count))) return r;
    if (!f->resume && f->epochs <= 0) f->epochs = DEFAULT_EPOCHS;
    if (lead && cli_check_out_dir("detect", "--out", f->out)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) return 1;
    attn_detr m;
    attn_adam opt;
    attn_status st;
    char err[1024] = "";
    const int max_batch = f->batch > EVAL_BATCH ? f->batch : EVAL_BATCH;
    if (f->resume) {
        if ((st = attn_detr_load(&m, &opt, NULL, ckpt, max_batch, err, sizeof err)) != ATTN_OK) {
            fprintf(stderr, "attn: detect: --resume: %s\n", err[0] ? err : attn_status_string(st));
            attn_fmnist_free(&d);
            return 1;
        }
        if (cli_patch_kernel_resume("detect", ckpt, f->patch_kernel, m.patch.K)) {
            attn_detr_free(&m); attn_adam_free(&opt); attn_fmnist_free(&d);
            return 2;
        }
    } else {
        attn_detr_config c = {.image = CANVAS, .patch = f->patch, .queries = f->queries,
                              .classes = ATTN_FMNIST_CLASSES, .dim = f->dim, .heads = f->heads, .ffn = f->ffn,
                              .enc_blocks = f->enc_blocks, .dec_blocks = f->dec_blocks, .max_batch = max_batch,
                              .patch_kernel = f->patch_kernel};
        if ((st = attn_detr_config_check(&c)) != ATTN_OK) {
            fprintf(stderr, "attn: detect: --patch %d must divide the canvas (%d), --dim %d must be a multiple of "
                    "--heads %d, and the blocks at most %d (%s)\n", f->patch, CANVAS, f->dim, f->heads,
                    ATTN_DETR_MAX_BLOCKS, attn_status_string(st));
            attn_fmnist_free(&d);
            return 2;
        }
        if ((st = attn_detr_init(&m, NULL, &c, f->seed)) != ATTN_OK ||
            (st = attn_adam_alloc(&opt, m.n_params, f->lr)) != ATTN_OK) {
            attn_fmnist_free(&d);
            return cli_fail(st, "detect: model");
        }
    }
    opt.weight_decay = f->wd;
    if ((st = attn_detr_set_shards(&m, f->shards)) != ATTN_OK) {
        attn_detr_free(&m); attn_adam_free(&opt); attn_fmnist_free(&d);
        return cli_fail(st, "detect: --shards");
    }
    const int n = f->canvases, steps = (n + f->batch - 1) / f->batch;
    int64_t total = (int64_t)steps * f->epochs;
    if (f->max_steps > 0 && f->max_steps < total) total = f->max_steps;
    const int64_t warm = (int64_t)steps * f->warmup < total / 2 ? (int64_t)steps * f->warmup : total / 2;
    const int64_t start = opt.t;
    if (f->resume) {
        if (start >= total) {
            fprintf(stderr, "attn: detect: --resume: %s already holds %" PRId64 " of %" PRId64 " steps; give a larger "
                    "--epochs or --max-steps\n", ckpt, start, total);
            attn_detr_free(&m); attn_adam_free(&opt); attn_fmnist_free(&d);
            return 1;
        }
        if (lead)
            fprintf(stderr, "attn: detect: resuming %s at step %" PRId64 " (epoch %.2f; seed %" PRIu64 ", lr %g, batch "
                    "%d from the checkpoint)\n", ckpt, start, (double)start / steps, f->seed, (double)f->lr, f->batch);
    }
    const attn_detr_config *c = &m.cfg;
    char par[96] = "";
    if (dist_on()) snprintf(par, sizeof par, " per rank; data parallel: %d ranks, shards %d of %d each", N, sh_count,
                            f->shards);
    if (lead)
        fprintf(stderr, "attn: detect: canvases %dx%d of 1-%d items; patch %d (kernel %d%s; %d patches), %d queries, "
                "dim %d, %d heads, FFN %d, %d encoder + %d decoder blocks: %zu parameters; AdamW lr %g wd %g, warm-up %" PRId64
                " steps then cosine over %" PRId64 " steps, batch %d, %d canvases per epoch, %d threads%s\n", CANVAS,
                CANVAS, MAX_ITEMS, c->patch, m.patch.K, m.patch.K > c->patch ? ", overlapping" : "", m.Np, c->queries, c->dim, c->heads, c->ffn, c->enc_blocks, c->dec_blocks,
                m.n_params, (double)f->lr, (double)f->wd, warm, total, f->batch, n, attn_get_num_threads(), par);

    const size_t px = (size_t)CANVAS * CANVAS;
    float *x = malloc(sizeof(float) * (size_t)f->batch * px), *tb = malloc(sizeof(float) * (size_t)f->batch * 4 * MAX_ITEMS);
    int *nt = malloc(sizeof(int) * (size_t)f->batch), *lab = malloc(sizeof(int) * (size_t)f->batch * MAX_ITEMS);
    cli_history hist;
    char hpath[4200];
    static const char *const hcols[10] = {"epoch", "loss", "ce", "l1", "giou", "f1", "mean_iou", "rule_cut",
                                          "rule_dedup", "f1_by_rule"};
    snprintf(hpath, sizeof hpath, "%s/%s", f->out, HISTORY_NAME);
    int rc = 0;
    if (!x || !tb || !nt || !lab) { rc = cli_fail(ATTN_ERR_NOMEM, "detect"); goto out; }
    if (lead && cli_history_start(&hist, "detect", hpath, 10, hcols, (int)((start + steps - 1) / steps), f->plot,
                          "Fashion-MNIST detection")) {
        rc = 1;
        goto out;
    }
    const int tty = lead && isatty(2);
    double t0 = cli_now(), last = t0, lsum = 0, psum[3] = {0, 0, 0};
    int seen = 0;
    for (int64_t g = start; g < total && rc == 0; g++) {
        const int epoch = (int)(g / steps), s = (int)(g % steps);
        if (s == 0 || g == start) {
            if (lead) fprintf(stderr, "Epoch %d/%d\n", epoch + 1, f->epochs);
            t0 = last = cli_now();
            lsum = 0; psum[0] = psum[1] = psum[2] = 0; seen = 0;
        }
        const int B = n - s * f->batch < f->batch ? n - s * f->batch : f->batch;
        int t = 0;
        attn_detr_scene sc;
        for (int b = 0; b < B && !rc; b++) {
            if ((st = make_canvas(x + b * px, &sc, &d.train, f->seed, (int64_t)epoch * n + (int64_t)s * f->batch + b)) !=
                ATTN_OK) {
                rc = cli_fail(st, "detect: canvas");
                break;
            }
            nt[b] = sc.n;
            for (int i = 0; i < sc.n; i++, t++) {
                lab[t] = sc.labels[i];
                memcpy(tb + 4 * t, sc.boxes[i], sizeof sc.boxes[i]);
            }
        }
        if (rc) break;
        dist_test_die(g - start);
        opt.lr = attn_lr_warmup_cosine(opt.t, warm, total, f->lr, f->lr * 0.01f);
        float loss, ls[3];
        if ((st = attn_detr_train_step_part(&m, &opt, x, nt, lab, tb, B, f->clip, sh_first, sh_count,
                                            dist_gather_shards, dist_combine_shards, NULL, &loss, ls)) != ATTN_OK) {
            if (tty) fputc('\n', stderr);
            rc = cli_fail(st, "detect: training step");
            break;
        }
        if (!isfinite(loss)) {
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "attn: detect: the loss is not finite at step %" PRId64 "; stopping (lr too high?)\n", opt.t);
            rc = 1;
            break;
        }
        lsum += (double)loss * B;
        for (int k = 0; k < 3; k++) psum[k] += (double)ls[k] * B;
        seen += B;
        const int end = s == steps - 1 || g + 1 == total;
        const double now = cli_now();
        if (lead && (end || now - last > (tty ? 0.5 : 15.0))) {
            const float mean[3] = {(float)(psum[0] / seen), (float)(psum[1] / seen), (float)(psum[2] / seen)};
            progress(s * f->batch + B, n, t0, lsum / seen, mean, tty);
            last = now;
        }
        if (!end || !lead) continue;              /* only rank 0 checks and writes */
        if (tty) fputc('\n', stderr);
        const double t_train = cli_now() - t0, t1 = cli_now();
        double f1[N_RULES] = {0}, miou[N_RULES] = {0};
        detect_rule rules[N_RULES];
        for (int i = 0; i < N_RULES; i++) rules[i] = rule_at(i);
        if (evaluate(&m, &d.train, val_seed(f->seed), f->val, rules, N_RULES, f1, miou, 0)) { rc = 1; break; }
        int best = 0;             /* the rule eval would choose now */
        for (int i = 1; i < N_RULES; i++) if (f1[i] > f1[best]) best = i;
        const double t_val = cli_now() - t1, ep = (double)(g + 1) / steps;
        printf("Epoch %.4g/%d - %.1fs (train %.1fs, check %.1fs) - lr %.3g - loss: %.4f (last block: ce %.4f l1 %.4f "
               "giou %.4f) - f1: %.3f - mean_iou: %.3f - cut %.1f%s: f1 %.3f (%d validation canvases)\n", ep,
               f->epochs, t_train + t_val, t_train, t_val, (double)opt.lr, lsum / seen, psum[0] / seen, psum[1] / seen,
               psum[2] / seen, f1[0], miou[0], (double)rules[best].cut, rules[best].dedup > 0 ? " dedup" : "",
               f1[best], f->val);
        fflush(stdout);
        const double row[10] = {ep, lsum / seen, psum[0] / seen, psum[1] / seen, psum[2] / seen, f1[0], miou[0],
                                rules[best].cut, rules[best].dedup, f1[best]};
        if (cli_history_add(&hist, row, 1) || save_checkpoint(ckpt, &m, &opt, f)) rc = 1;
    }
    if (rc == 0 && lead) printf("checkpoint: %s (step %" PRId64 "), history: %s%s%s\n", ckpt, opt.t, hpath,
                                f->plot ? ", curves: " : "", f->plot ? f->plot : "");
    if (lead) cli_history_free(&hist);
out:
    free(x); free(tb); free(nt); free(lab);
    attn_detr_free(&m);
    attn_adam_free(&opt);
    attn_fmnist_free(&d);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * eval, predict
 */
static int load_model(const detect_flags *f, attn_detr *m, int max_batch) {
    char path[4200], err[1024] = "";
    if (f->ckpt) snprintf(path, sizeof path, "%s", f->ckpt);
    else snprintf(path, sizeof path, "%s/%s", f->out, CKPT_NAME);
    attn_status st = attn_detr_load(m, NULL, NULL, path, max_batch, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: detect: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO) fprintf(stderr, "attn: detect: train one with 'attn detect train --out %s'\n", f->out);
        return 1;
    }
    if (m->cfg.image != CANVAS || m->cfg.classes != ATTN_FMNIST_CLASSES) {
        fprintf(stderr, "attn: detect: %s takes canvases of %d with %d classes; this program draws %dx%d canvases "
                "of %d classes\n", path, m->cfg.image, m->cfg.classes, CANVAS, CANVAS, ATTN_FMNIST_CLASSES);
        attn_detr_free(m);
        return 1;
    }
    return 0;
}

/* The decision rule: --threshold and --dedup where given; what is not given is chosen on the --val
 * validation canvases (training items, never test ones): the rule of the best f1 there, the simplest at a
 * tie. */
static int choose_rule(attn_detr *m, const attn_fmnist *d, const detect_flags *f, detect_rule *rule) {
    if (f->threshold >= 0.0f && f->dedup >= 0.0f) {
        *rule = (detect_rule){f->threshold, f->dedup};
        return 0;
    }
    detect_rule rules[N_RULES];
    int n = 0;
    for (int i = 0; i < N_RULES; i++) {
        detect_rule r = rule_at(i);
        if (f->threshold >= 0.0f) r.cut = f->threshold;
        if (f->dedup >= 0.0f) r.dedup = f->dedup;
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= rules[k].cut == r.cut && rules[k].dedup == r.dedup;
        if (!dup) rules[n++] = r;
    }
    double f1[N_RULES], miou[N_RULES];
    if (evaluate(m, &d->train, val_seed(f->seed), f->val, rules, n, f1, miou, 0)) return 1;
    int best = 0;
    for (int i = 1; i < n; i++) if (f1[i] > f1[best]) best = i;
    *rule = rules[best];
    fprintf(stderr, "attn: detect: rule chosen on %d validation canvases (training items): confidence cut %.2f, "
            "duplicates %s (f1 %.3f there; --threshold and --dedup set them)\n", f->val, (double)rule->cut,
            rule->dedup > 0.0f ? "suppressed at IoU 0.5" : "kept", f1[best]);
    return 0;
}

static int detect_eval(const detect_flags *f) {
    attn_detr m;
    if (load_model(f, &m, EVAL_BATCH)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) { attn_detr_free(&m); return 1; }
    double f1 = 0, miou = 0, t0 = cli_now();
    const int val = strcmp(f->on, "val") == 0;
    detect_rule rule;
    int rc = choose_rule(&m, &d, f, &rule);
    if (!rc)
        rc = evaluate(&m, val ? &d.train : &d.test, val ? val_seed(f->seed) : test_seed(f->seed), f->canvases, &rule, 1,
                      &f1, &miou, 1);
    if (!rc) {
        fprintf(stderr, "attn: detect: %d %s canvases (seed %" PRIu64 ") in %.1f s\n", f->canvases,
                val ? "validation" : "test", f->seed, cli_now() - t0);
        printf("f1 %.3f mean_iou %.3f\n", f1, miou);
    }
    attn_fmnist_free(&d);
    attn_detr_free(&m);
    return rc;
}

/* Draws box b (cx, cy, w, h in canvas units) into x (CANVAS²) at value v: its outline, clipped. */
static void draw_box(float *x, const float *b, float v) {
    const int x0 = (int)lround((b[0] - b[2] / 2) * CANVAS), x1 = (int)lround((b[0] + b[2] / 2) * CANVAS) - 1;
    const int y0 = (int)lround((b[1] - b[3] / 2) * CANVAS), y1 = (int)lround((b[1] + b[3] / 2) * CANVAS) - 1;
    for (int y = y0; y <= y1; y++)
        for (int xx = x0; xx <= x1; xx++) {
            if (y < 0 || y >= CANVAS || xx < 0 || xx >= CANVAS) continue;
            if (y == y0 || y == y1 || xx == x0 || xx == x1) x[y * CANVAS + xx] = v;
        }
}

static int detect_predict(const detect_flags *f, const cli_cmd *cmd, const char *arg) {
    char *end = NULL;
    long idx = strtol(arg, &end, 10);
    if (!*arg || *end || idx < 0 || idx > 1000000000L) {
        fprintf(stderr, "attn: detect: N '%s': expected a canvas number (0, 1, ...)\n\n", arg);
        cli_usage(cmd, stderr);
        return 2;
    }
    if (f->png && cli_check_out_file("detect", "--png", f->png)) return 1;
    attn_detr m;
    if (load_model(f, &m, EVAL_BATCH)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) { attn_detr_free(&m); return 1; }
    detect_rule rule;
    if (choose_rule(&m, &d, f, &rule)) { attn_fmnist_free(&d); attn_detr_free(&m); return 1; }
    const int H = m.cfg.heads, Np = m.Np, Q = m.cfg.queries, K1 = m.K1, grid = CANVAS / m.cfg.patch;
    float *x = malloc(sizeof(float) * CANVAS * CANVAS), *cross = malloc(sizeof(float) * (size_t)H * Q * Np);
    float *maps = malloc(sizeof(float) * (size_t)Q * Np), *logits = malloc(sizeof(float) * (size_t)Q * K1);
    float *boxes = malloc(sizeof(float) * (size_t)Q * 4);
    char (*cap)[96] = malloc(sizeof *cap * (size_t)(Q + 1));
    const char **caps = malloc(sizeof *caps * (size_t)(Q + 1));
    attn_detr_scene sc;
    attn_status st;
    int rc = 0, n_used = 0, used[64], cls[64];
    if (!x || !cross || !maps || !logits || !boxes || !cap || !caps) rc = cli_fail(ATTN_ERR_NOMEM, "detect");
    if (!rc && (st = make_canvas(x, &sc, &d.test, test_seed(f->seed), idx)) != ATTN_OK) rc = cli_fail(st, "detect: canvas");
    if (!rc && (st = attn_detr_forward(&m, logits, boxes, cross, x, 1)) != ATTN_OK) rc = cli_fail(st, "detect: forward");
    if (!rc) {
        printf("test canvas %ld: %d item%s:", idx, sc.n, sc.n == 1 ? "" : "s");
        for (int i = 0; i < sc.n; i++)
            printf(" %s (%.2f %.2f %.2f %.2f)%s", attn_fmnist_class_name(sc.labels[i]), (double)sc.boxes[i][0],
                   (double)sc.boxes[i][1], (double)sc.boxes[i][2], (double)sc.boxes[i][3], i + 1 < sc.n ? "," : "");
        printf("\n");
        float hi = x[0];
        for (int k = 1; k < CANVAS * CANVAS; k++) if (x[k] > hi) hi = x[k];
        hi += 0.5f;      /* the outlines a little brighter than any pixel */
        const int n_sel = select_queries(logits, boxes, Q, K1, &rule, used, cls);
        for (int i = 0; i < n_sel; i++) {
            float p;
            const int q = used[i], cl = cls[i];
            query_object(logits + (size_t)q * K1, K1, rule.cut, &p);
            const float *b = boxes + (size_t)q * 4;
            double best = 0;
            for (int j = 0; j < sc.n; j++) best = fmax(best, box_iou(b, sc.boxes[j]));
            printf("  query %d: %-11s p %.3f box (%.2f %.2f %.2f %.2f), best IoU with an item %.3f\n", q,
                   attn_fmnist_class_name(cl), (double)p, (double)b[0], (double)b[1], (double)b[2], (double)b[3], best);
            for (int k = 0; k < Np; k++) {
                double s = 0;
                for (int h = 0; h < H; h++) s += cross[((size_t)h * Q + q) * Np + k];
                maps[(size_t)n_used * Np + k] = (float)(s / H);
            }
            snprintf(cap[1 + n_used], 96, "query %d: %s %.2f", q, attn_fmnist_class_name(cl), (double)p);
            n_used++;
        }
        if (!n_used) printf("  no query found an object\n");
        if (f->png) {
            for (int i = 0; i < n_sel; i++) draw_box(x, boxes + (size_t)used[i] * 4, hi);
            snprintf(cap[0], 96, "canvas %ld with %d predicted box%s", idx, n_used, n_used == 1 ? "" : "es");
            for (int i = 0; i <= n_used; i++) caps[i] = cap[i];
            char title[200];
            snprintf(title, sizeof title, "test canvas %ld: predicted boxes, each query's cross-attention (mean of %d "
                     "heads)", idx, H);
            attn_overlay o = {.image = x, .rows = CANVAS, .cols = CANVAS, .maps = n_used ? maps : NULL,
                              .n_maps = n_used, .grid_rows = grid, .grid_cols = grid, .captions = caps,
                              .title = title, .scale = 5};
            char err[1024] = "";
            if ((st = attn_overlay_png(&o, f->png, err, sizeof err)) != ATTN_OK) {
                fprintf(stderr, "attn: detect: %s\n", err[0] ? err : attn_status_string(st));
                rc = 1;
            } else {
                printf("wrote %s: the canvas with the predicted boxes, then each detecting query's cross-attention "
                       "(last decoder block, mean over heads)\n", f->png);
            }
        }
    }
    free(x); free(cross); free(maps); free(logits); free(boxes); free(cap); free(caps);
    attn_fmnist_free(&d);
    attn_detr_free(&m);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Entry.
 */
int cmd_detect(int argc, char **argv) {
    detect_flags f = {.data = ATTN_FMNIST_DEFAULT_DIR, .out = "detect_out", .epochs = 0, .batch = 32, .warmup = 1,
                      .canvases = -1, .val = 500, .max_steps = 0, .patch = 7, .queries = 8, .dim = 96, .heads = 4,
                      .ffn = 192, .enc_blocks = 2, .dec_blocks = 3, .lr = 1e-3f, .wd = 1e-4f, .clip = 0.1f,
                      .threshold = -1.0f, .dedup = -1.0f, .seed = 1, .on = "test"};
    const char *sub = argc >= 2 ? argv[1] : NULL;
    const cli_opt train_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files (.gz or not)"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the history go"},
        {"epochs", CLI_INT, &f.epochs, "N", "epochs in all (default 80; with --resume: the checkpoint's, or up to N)"},
        {"max-steps", CLI_INT, &f.max_steps, "N", "stop after N optimizer steps in all (0: none); the schedule ends there"},
        {"shards", CLI_INT, &f.shards, "G", CLI_SHARDS_HELP},
        {"canvases", CLI_INT, &f.canvases, "N", "training canvases per epoch, new ones every epoch (default 20000)"},
        {"val", CLI_INT, &f.val, "N", "validation canvases (of training items) checked after every epoch; the "
                                       "confidence cut eval uses is chosen on them"},
        {"batch", CLI_INT, &f.batch, "N", "batch size"},
        {"lr", CLI_FLOAT, &f.lr, "X", "AdamW's peak learning rate (after the warm-up; cosine decay to 1% of it)"},
        {"wd", CLI_FLOAT, &f.wd, "X", "AdamW's decoupled weight decay"},
        {"warmup", CLI_INT, &f.warmup, "N", "epochs of linear warm-up (at most half the steps)"},
        {"clip", CLI_FLOAT, &f.clip, "X", "clip the gradient's global norm to X (0: no clipping; DETR's is 0.1)"},
        {"patch", CLI_INT, &f.patch, "N", "patch size (divides 56: 4, 7, 8, 14)"},
        {"patch-kernel", CLI_INT, &f.patch_kernel, "K", CLI_PATCH_KERNEL_HELP},
        {"queries", CLI_INT, &f.queries, "N", "object queries (at least 3, the most items on a canvas)"},
        {"dim", CLI_INT, &f.dim, "N", "model width"},
        {"heads", CLI_INT, &f.heads, "N", "attention heads (divides --dim)"},
        {"ffn", CLI_INT, &f.ffn, "N", "hidden width of each block's feed-forward"},
        {"enc-blocks", CLI_INT, &f.enc_blocks, "N", "encoder blocks over the patches (0: none)"},
        {"dec-blocks", CLI_INT, &f.dec_blocks, "N", "decoder blocks"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the initialization and of the canvases"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"resume", CLI_BOOL, &f.resume, NULL, "continue from the checkpoint in --out"},
        {"plot", CLI_STR, &f.plot, "FILE", "draw the curves as a PNG after every epoch"},
    };
    const cli_opt eval_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"canvases", CLI_INT, &f.canvases, "N", "test canvases (default 2000)"},
        {"on", CLI_STR, &f.on, "SET", "test, or val: the validation canvases of training items the cut was chosen on"},
        {"threshold", CLI_FLOAT, &f.threshold, "X", "a query predicts an object when its class is above no object and has "
                                               "probability >= X (default: chosen on the --val canvases)"},
        {"dedup", CLI_FLOAT, &f.dedup, "X", "drop a detection whose box overlaps a more probable one's at IoU >= X "
                                       "(0: never; default: 0 or 0.5, chosen on the --val canvases)"},
        {"val", CLI_INT, &f.val, "N", "validation canvases (of training items) the rule is chosen on"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the test canvases"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_opt predict_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the test canvases"},
        {"png", CLI_STR, &f.png, "FILE", "draw the canvas, the predicted boxes and each query's cross-attention"},
        {"threshold", CLI_FLOAT, &f.threshold, "X", "a query predicts an object when its class is above no object and has "
                                               "probability >= X (default: chosen on the --val canvases)"},
        {"dedup", CLI_FLOAT, &f.dedup, "X", "drop a detection whose box overlaps a more probable one's at IoU >= X "
                                       "(0: never; default: 0 or 0.5, chosen on the --val canvases)"},
        {"val", CLI_INT, &f.val, "N", "validation canvases (of training items) the rule is chosen on"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_cmd cmds[3] = {
        {"attn detect train [options]",
         "Trains a DETR-style detector on 56x56 canvases of 1-3 Fashion-MNIST items: a patch encoder, a decoder of "
         "learned object queries cross-attending to the patches, a class (or no object) and a box per query; "
         "Hungarian matching, cross-entropy, L1 and GIoU losses, AdamW with warm-up and cosine decay; one line per "
         "epoch, a checkpoint after each.",
         train_opts, (int)(sizeof train_opts / sizeof train_opts[0]), 0, 0},
        {"attn detect eval [options]",
         "Detects on test canvases and prints f1 (IoU >= 0.5 and the right class) and mean_iou (of the matched "
         "boxes).", eval_opts, (int)(sizeof eval_opts / sizeof eval_opts[0]), 0, 0},
        {"attn detect predict [options] N",
         "Detects on test canvas N and with --png draws the predicted boxes and each detecting query's "
         "cross-attention over the canvas.",
         predict_opts, (int)(sizeof predict_opts / sizeof predict_opts[0]), 1, 1},
    };
    int which = !sub ? -1 : strcmp(sub, "train") == 0 ? 0 : strcmp(sub, "eval") == 0 ? 1
                              : strcmp(sub, "predict") == 0 ? 2 : -1;
    if (which < 0) {
        int help = sub && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0);
        FILE *o = help ? stdout : stderr;
        if (sub && !help) fprintf(stderr, "attn: detect: unknown subcommand '%s'\n\n", sub);
        fprintf(o, "usage: attn detect train|eval|predict [options]\n\n"
                   "  train    train a DETR-style detector on canvases of 1-3 Fashion-MNIST items\n"
                   "  eval     detect on test canvases (prints f1 and mean_iou)\n"
                   "  predict  detect on one canvas and draw the boxes and each query's cross-attention\n\n"
                   "'attn detect <subcommand> --help' lists the options.\n");
        return help ? 0 : 2;
    }
    const char *pos[1] = {NULL};
    int n_pos = 0;
    int r = cli_parse(&cmds[which], argc - 1, argv + 1, pos, &n_pos);
    if (r >= 0) return r;
    if (cli_check_threads("detect", "--threads", f.threads)) return 2;
    const int epochs_given = f.epochs != 0, steps_given = f.max_steps != 0;
    if (f.canvases == -1) f.canvases = which == 0 ? 20000 : 2000;     /* not given */
    if ((epochs_given && cli_check_int("detect", "--epochs", f.epochs, 1, 100000)) ||
        cli_check_int("detect", "--max-steps", f.max_steps, 0, -1) ||
        cli_check_int("detect", "--shards", f.shards, 0, ATTN_MAX_SHARDS) ||
        cli_check_int("detect", "--canvases", f.canvases, 1, 100000000) ||
        cli_check_int("detect", "--val", f.val, 1, 100000000) ||
        cli_check_int("detect", "--batch", f.batch, 1, 65536) || cli_check_int("detect", "--limit", f.limit, 0, -1) ||
        cli_check_int("detect", "--warmup", f.warmup, 0, 100000) || cli_check_int("detect", "--patch", f.patch, 1, CANVAS) ||
        cli_check_int("detect", "--queries", f.queries, MAX_ITEMS, 64) ||
        cli_check_int("detect", "--dim", f.dim, 1, 4096) || cli_check_int("detect", "--heads", f.heads, 1, 256) ||
        cli_check_int("detect", "--ffn", f.ffn, 1, 16384) ||
        cli_check_int("detect", "--enc-blocks", f.enc_blocks, 0, ATTN_DETR_MAX_BLOCKS) ||
        cli_check_int("detect", "--dec-blocks", f.dec_blocks, 1, ATTN_DETR_MAX_BLOCKS) ||
        cli_check_int("detect", "--patch-kernel", f.patch_kernel, 0, 3 * CANVAS)) {
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (!(f.lr > 0.0f) || !isfinite(f.lr) || !(f.wd >= 0.0f) || !isfinite(f.wd) || !(f.clip >= 0.0f) ||
        !isfinite(f.clip) || !(f.threshold == -1.0f || (f.threshold >= 0.0f && f.threshold <= 1.0f)) ||
        !(f.dedup == -1.0f || (f.dedup >= 0.0f && f.dedup <= 1.0f))) {
        fprintf(stderr, "attn: detect: --lr must be > 0, --wd and --clip >= 0 (finite), --threshold and --dedup in "
                "[0,1]\n\n");
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (strcmp(f.on, "test") != 0 && strcmp(f.on, "val") != 0) {
        fprintf(stderr, "attn: detect: --on '%s': expected test or val\n\n", f.on);
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (which == 0 && (CANVAS % f.patch || f.dim % f.heads)) {
        fprintf(stderr, "attn: detect: --patch %d must divide the canvas (%d) and --dim %d be a multiple of --heads %d\n\n",
                f.patch, CANVAS, f.dim, f.heads);
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (which == 0 && !f.resume && (r = cli_patch_kernel("detect", &cmds[0], f.patch, f.patch_kernel))) return r;
    cli_set_threads(f.threads, 1);
    if (which == 0) {
        /* under mpirun: data parallel (MPI is started only here); a rank that fails stops them all */
        if (dist_start() || dist_quiet_followers()) return 1;
        return dist_finish("detect", detect_train(&f, epochs_given, steps_given));
    }
    if (which == 1) return detect_eval(&f);
    return detect_predict(&f, &cmds[2], pos[0]);
}
