/*
 * cmd_caption.c — `attn caption train|eval|predict`: image → text on Fashion-MNIST (attn/caption.h).
 *
 * A strip is 3 items side by side (28x84), captioned with their class names in order ("sneaker bag
 * shirt"). Strip i of a split is a pure function of (seed, i): its items are drawn by a hash, so training
 * sees new strips every epoch (strips epoch·N .. epoch·N + N - 1 of the training split) and eval, predict
 * and the per-epoch check read the same test strips whatever ran before.
 *
 *   train    trains with AdamW, linear warm-up then cosine decay, teacher forcing; a progress line, one
 *            line per epoch (with exact_match and attention_on_item on --val test strips); saves
 *            --out/caption.safetensors after every epoch (atomically, with the optimizer's state: --resume
 *            continues exactly) and the history in --out/caption_history.csv (--plot FILE draws it).
 *   eval     greedy captions (key/value cache) of --strips test strips; prints
 *            `exact_match 0.xxxx attention_on_item 0.xxx`: the share of captions equal to the truth, and for
 *            each generated word the share of its cross-attention (last decoder block, mean over heads) that
 *            falls on the patches of the item at its place, averaged over the words.
 *   predict  captions test strip N and with --png draws the strip and, for every generated word, its
 *            cross-attention over the strip.
 *
 * Pixels are scaled to [0,1], then normalized with Fashion-MNIST's mean 0.2860 and std 0.3530.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "attn/caption.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_NAME "caption.safetensors"
#define HISTORY_NAME "caption_history.csv"
#define EVAL_BATCH 250
#define ITEMS 3
#define FM_MEAN 0.2860f
#define FM_STD 0.3530f
#define TEST_SEED_SALT 0x7e57ULL

typedef struct caption_flags {
    const char *data, *out, *ckpt, *png, *plot;
    int epochs, batch, threads, limit, resume, warmup, strips, val;
    int max_steps;               /* train: stop after this many optimizer steps of this run (0: no limit) */
    int shards;                  /* train: --shards (0: not given) */
    int patch, dim, heads, ffn, enc_blocks, dec_blocks;
    float lr, wd, clip;
    uint64_t seed;
} caption_flags;

static int load_data(attn_fmnist *d, const caption_flags *f) {
    if (cli_fmnist_load("caption", d, f->data, f->limit)) return 1;
    if (d->train.n < 1 || d->test.n < 1) {
        fprintf(stderr, "attn: caption: %s: a split without images\n", f->data);
        attn_fmnist_free(d);
        return 1;
    }
    return 0;
}

/* Strip i of split s under seed: its items' indices idx (ITEMS), its words (ITEMS), its pixels x. */
static void make_strip(float *x, int32_t *words, int32_t *idx, const attn_fmnist_split *s, uint64_t seed, int64_t i) {
    const uint8_t *p[ITEMS];
    for (int k = 0; k < ITEMS; k++) {
        const int j = (int)(cli_mix64(seed ^ cli_mix64((uint64_t)i * ITEMS + (uint64_t)k)) % (uint64_t)s->n);
        p[k] = s->images + (size_t)j * s->rows * s->cols;
        words[k] = s->labels[j];
        if (idx) idx[k] = j;
    }
    attn_caption_strip(x, p, ITEMS, s->rows, s->cols, FM_MEAN, FM_STD);
}

static uint64_t test_seed(uint64_t seed) { return cli_mix64(seed ^ TEST_SEED_SALT); }

/* exact_match and attention_on_item over n test strips, EVAL_BATCH at a time (progress when long). */
static int evaluate(attn_caption *m, const attn_fmnist_split *s, uint64_t seed, int n, double *exact, double *on_item,
                    int verbose) {
    const int Bm = m->cfg.max_batch, P = s->rows * s->cols * ITEMS, H = m->cfg.heads, Np = m->Np;
    const int gr = m->cfg.rows / m->cfg.patch, gc = m->cfg.cols / m->cfg.patch;
    float *x = malloc(sizeof(float) * (size_t)Bm * P), *cross = malloc(sizeof(float) * (size_t)Bm * ITEMS * H * Np);
    int32_t *w = malloc(sizeof(int32_t) * (size_t)Bm * ITEMS), *out = malloc(sizeof(int32_t) * (size_t)Bm * ITEMS);
    int *n_out = malloc(sizeof(int) * (size_t)Bm);
    int rc = 0, ok = 0;
    long words = 0;
    double share = 0, t0 = cli_now(), last = t0;
    if (!x || !cross || !w || !out || !n_out) { rc = cli_fail(ATTN_ERR_NOMEM, "caption"); goto done; }
    for (int lo = 0; lo < n; lo += Bm) {
        const int B = n - lo < Bm ? n - lo : Bm;
        for (int b = 0; b < B; b++) make_strip(x + (size_t)b * P, w + b * ITEMS, NULL, s, seed, lo + b);
        attn_status st = attn_caption_generate(m, out, n_out, cross, x, B);
        if (st != ATTN_OK) { rc = cli_fail(st, "caption: decoding"); goto done; }
        for (int b = 0; b < B; b++) {
            ok += n_out[b] == ITEMS && memcmp(out + b * ITEMS, w + b * ITEMS, sizeof(int32_t) * ITEMS) == 0;
            for (int i = 0; i < n_out[b]; i++, words++)
                share += attn_caption_item_share(cross + ((size_t)b * ITEMS + i) * H * Np, H, gr, gc, ITEMS, i);
        }
        const double now = cli_now();
        if (verbose && (lo + B == n || now - last > 15.0)) {
            fprintf(stderr, "  %d/%d strips - %.1fs\n", lo + B, n, now - t0);
            last = now;
        }
    }
    *exact = (double)ok / n;
    *on_item = words ? share / words : 0.0;
done:
    free(x); free(cross); free(w); free(out); free(n_out);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * train
 */
#define N_RUN_META 11
/* "step": the steps done of epoch "epoch" + 1 when --max-steps cut it (0 otherwise; absent before);
 * "shards" (saved after them; absent before: 2) is read by dist_shards */
static const char *const run_keys[N_RUN_META + 1] = {"epoch", "epochs", "batch", "lr", "weight_decay", "warmup",
                                                      "seed", "limit", "strips", "val", "step", "shards"};

static int save_checkpoint(const char *path, const attn_caption *m, const attn_adam *opt, const caption_flags *f,
                           int epoch, int step) {
    char v[N_RUN_META + 1][32];
    const char *vp[N_RUN_META + 1];
    snprintf(v[11], 32, "%d", f->shards);
    snprintf(v[10], 32, "%d", step);
    snprintf(v[0], 32, "%d", epoch);
    snprintf(v[1], 32, "%d", f->epochs);
    snprintf(v[2], 32, "%d", f->batch);
    snprintf(v[3], 32, "%.9g", (double)f->lr);
    snprintf(v[4], 32, "%.9g", (double)f->wd);
    snprintf(v[5], 32, "%d", f->warmup);
    snprintf(v[6], 32, "%" PRIu64, f->seed);
    snprintf(v[7], 32, "%d", f->limit);
    snprintf(v[8], 32, "%d", f->strips);
    snprintf(v[9], 32, "%d", f->val);
    for (int i = 0; i < N_RUN_META + 1; i++) vp[i] = v[i];
    char err[1024] = "";
    attn_status st = attn_caption_save(m, opt, run_keys, vp, N_RUN_META + 1, path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: caption: saving the checkpoint: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    return 0;
}

static int resume_settings(const char *path, caption_flags *f, int epochs_given, int *done, int *step) {
    double v[N_RUN_META];
    v[10] = 0;                   /* checkpoints before "step" hold whole epochs */
    if (cli_run_meta("caption", path, run_keys, N_RUN_META - 1, v) ||
        (cli_has_meta(path, run_keys[10]) && cli_run_meta("caption", path, run_keys + 10, 1, v + 10)))
        return 1;
    *done = (int)v[0];
    *step = (int)v[10];
    if (!epochs_given) f->epochs = (int)v[1];
    f->batch = (int)v[2];
    f->lr = (float)v[3];
    f->wd = (float)v[4];
    f->warmup = (int)v[5];
    if (cli_run_meta_u64("caption", path, run_keys[6], &f->seed)) return 1;   /* all 64 bits, not a double's 53 */
    f->limit = (int)v[7];
    f->strips = (int)v[8];
    f->val = (int)v[9];
    return 0;
}

static void progress(int done, int total, double t0, double loss, int tty) {
    const double el = cli_now() - t0, eta = done ? el * (total - done) / done : 0;
    fprintf(stderr, "%s  %6d/%d strips - %s %5.1fs - loss %.4f%s", tty ? "\r" : "", done, total,
            done < total ? "ETA" : "in", done < total ? eta : el, loss, tty ? "   " : "\n");
    fflush(stderr);
}

/* Training, in the model's fixed shards; under mpirun data parallel: every rank forms the whole batch and
 * computes its shards of it (--shards G / N each; the ranks must divide G),
 * dist_combine_shards adds the shards' gradients in shard order on rank 0 and sends the sum back, so the
 * parameters are bitwise one process's. Only rank 0 checks, logs and writes. */
static int caption_train(caption_flags *f, int epochs_given) {
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", f->out, CKPT_NAME);
    const int lead = dist_rank() == 0, N = dist_size();
    int done = 0, skip = 0;      /* epochs done, and steps done of the next (a --max-steps cut) */
    if (f->resume && resume_settings(ckpt, f, epochs_given, &done, &skip)) return 1;
    int sh_first, sh_count, r;
    if ((r = dist_shards("caption", ckpt, f->resume, &f->shards, ATTN_CAPTION_SHARDS, &sh_first, &sh_count))) return r;
    /* one process runs every shard too: the bits of any number of ranks (DESIGN "Data-parallel image models") */
    if (!sh_count) sh_count = f->shards;
    if (!f->resume && f->epochs <= 0) f->epochs = 10;
    if (f->resume && done >= f->epochs) {
        fprintf(stderr, "attn: caption: --resume: %s already holds %d of %d epochs; give a larger --epochs\n", ckpt,
                done, f->epochs);
        return 1;
    }
    if (lead && cli_check_out_dir("caption", "--out", f->out)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) return 1;
    attn_caption m;
    attn_adam opt;
    attn_status st;
    char err[1024] = "";
    if (f->resume) {
        if ((st = attn_caption_load(&m, &opt, NULL, ckpt, f->batch > EVAL_BATCH ? f->batch : EVAL_BATCH, err,
                                    sizeof err)) != ATTN_OK) {
            fprintf(stderr, "attn: caption: --resume: %s\n", err[0] ? err : attn_status_string(st));
            attn_fmnist_free(&d);
            return 1;
        }
        if (lead)
            fprintf(stderr, "attn: caption: resuming %s after epoch %d (step %" PRId64 "; seed %" PRIu64 ", lr %g, batch "
                "%d from the checkpoint)\n", ckpt, done, opt.t, f->seed, (double)f->lr, f->batch);
    } else {
        attn_caption_config c = {.rows = d.train.rows, .cols = ITEMS * d.train.cols, .patch = f->patch,
                                 .items = ITEMS, .classes = ATTN_FMNIST_CLASSES, .dim = f->dim, .heads = f->heads,
                                 .ffn = f->ffn, .enc_blocks = f->enc_blocks, .dec_blocks = f->dec_blocks,
                                 .max_batch = f->batch > EVAL_BATCH ? f->batch : EVAL_BATCH};
        if ((st = attn_caption_config_check(&c)) != ATTN_OK) {
            fprintf(stderr, "attn: caption: --patch %d must divide the item size %dx%d, --dim %d must be a multiple of "
                    "--heads %d, and the blocks at most %d (%s)\n", f->patch, d.train.rows, d.train.cols, f->dim,
                    f->heads, ATTN_CAPTION_MAX_BLOCKS, attn_status_string(st));
            attn_fmnist_free(&d);
            return 2;
        }
        if ((st = attn_caption_init(&m, NULL, &c, f->seed)) != ATTN_OK ||
            (st = attn_adam_alloc(&opt, m.n_params, f->lr)) != ATTN_OK) {
            attn_fmnist_free(&d);
            return cli_fail(st, "caption: model");
        }
    }
    opt.weight_decay = f->wd;
    if ((st = attn_caption_set_shards(&m, f->shards)) != ATTN_OK) {
        attn_caption_free(&m);
        attn_adam_free(&opt);
        attn_fmnist_free(&d);
        return cli_fail(st, "caption: --shards");
    }
    const attn_caption_config *c = &m.cfg;
    char par[96] = "";
    if (dist_on()) snprintf(par, sizeof par, " per rank; data parallel: %d ranks, shards %d of %d each", N, sh_count,
                            f->shards);
    if (lead)
        fprintf(stderr, "attn: caption: strips %dx%d of %d items; patch %d (%d patches), dim %d, %d heads, FFN %d, %d "
                "encoder + %d decoder blocks: %zu parameters; AdamW lr %g wd %g, %d warm-up epoch(s) then cosine, "
                "batch %d, %d strips per epoch, %d threads%s\n", c->rows, c->cols, ITEMS, c->patch, m.Np, c->dim,
                c->heads, c->ffn, c->enc_blocks, c->dec_blocks, m.n_params, (double)f->lr, (double)f->wd, f->warmup,
                f->batch, f->strips, attn_get_num_threads(), par);

    const int n = f->strips, P = c->rows * c->cols, steps = (n + f->batch - 1) / f->batch;
    const int64_t total = (int64_t)steps * f->epochs, warm = (int64_t)steps * f->warmup;
    int32_t *w = malloc(sizeof(int32_t) * (size_t)f->batch * ITEMS);
    float *x = malloc(sizeof(float) * (size_t)f->batch * P);
    cli_history hist;
    char hpath[4200];
    static const char *const hcols[5] = {"epoch", "loss", "exact_match", "attention_on_item", "seconds"};
    snprintf(hpath, sizeof hpath, "%s/%s", f->out, HISTORY_NAME);
    int rc = 0;
    if (!w || !x) { rc = cli_fail(ATTN_ERR_NOMEM, "caption"); goto out; }
    if (lead && cli_history_start(&hist, "caption", hpath, 5, hcols, done, f->plot, "Fashion-MNIST captions")) {
        rc = 1;
        goto out;
    }
    const int tty = lead && isatty(2);
    int64_t run_steps = 0;       /* optimizer steps of this run (--max-steps) */
    int cut = 0;                 /* --max-steps stopped the run inside an epoch */
    for (int epoch = done; epoch < f->epochs && rc == 0 && !cut; epoch++) {
        if (f->max_steps && run_steps >= f->max_steps) break;   /* --max-steps at an epoch's end */
        double t0 = cli_now(), last = t0, lsum = 0;
        int seen = 0, first_step = epoch == done && skip > 0 ? (skip < steps ? skip : steps) : 0, s;
        if (lead) fprintf(stderr, "Epoch %d/%d%s\n", epoch + 1, f->epochs, first_step ? " (resumed inside)" : "");
        for (s = first_step; s < steps; s++) {
            if (f->max_steps && run_steps >= f->max_steps) {
                cut = 1;
                break;
            }
            const int B = n - s * f->batch < f->batch ? n - s * f->batch : f->batch;
            for (int b = 0; b < B; b++)
                make_strip(x + (size_t)b * P, w + b * ITEMS, NULL, &d.train, f->seed,
                           (int64_t)epoch * n + (int64_t)s * f->batch + b);
            dist_test_die(run_steps);
            opt.lr = attn_lr_warmup_cosine(opt.t, warm, total, f->lr, f->lr * 0.01f);
            float loss;
            st = attn_caption_train_step_part(&m, &opt, x, w, B, f->clip, sh_first, sh_count,
                                              dist_on() ? dist_combine_shards : NULL, NULL, &loss);
            run_steps++;
            if (st != ATTN_OK) {
                if (tty) fputc('\n', stderr);
                rc = cli_fail(st, "caption: training step");
                break;
            }
            if (!isfinite(loss)) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr, "attn: caption: the loss is not finite at step %" PRId64 "; stopping (lr too high?)\n",
                        opt.t);
                rc = 1;
                break;
            }
            lsum += (double)loss * B;
            seen += B;
            const double now = cli_now();
            if (lead && (s == steps - 1 || now - last > (tty ? 0.5 : 15.0))) {
                progress(seen, n, t0, lsum / seen, tty);
                last = now;
            }
        }
        if (rc) break;
        if (tty) fputc('\n', stderr);
        if (!lead) continue;                      /* only rank 0 checks and writes */
        if (cut) {                                /* --max-steps inside the epoch: no check, no history row */
            if (save_checkpoint(ckpt, &m, &opt, f, epoch, s)) rc = 1;
            printf("(--max-steps %d: stopped after step %" PRId64 ", %d of %d steps into epoch %d; --resume goes on "
                   "from there)\n", f->max_steps, opt.t, s, steps, epoch + 1);
            break;
        }
        const double t_train = cli_now() - t0, t1 = cli_now();
        double em, ai;
        if (evaluate(&m, &d.test, test_seed(f->seed), f->val, &em, &ai, 0)) { rc = 1; break; }
        const double t_val = cli_now() - t1;
        printf("Epoch %d/%d - %.1fs (train %.1fs, check %.1fs) - lr %.3g - loss: %.4f - exact_match: %.4f - "
               "attention_on_item: %.3f (%d test strips)\n", epoch + 1, f->epochs, t_train + t_val, t_train, t_val,
               (double)opt.lr, lsum / seen, em, ai, f->val);
        fflush(stdout);
        const double row[5] = {epoch + 1, lsum / seen, em, ai, t_train + t_val};
        if (cli_history_add(&hist, row, 1) || save_checkpoint(ckpt, &m, &opt, f, epoch + 1, 0)) rc = 1;
    }
    if (rc == 0 && lead && f->max_steps && run_steps >= f->max_steps)
        printf("--max-steps %d: stopped; %s holds the parameters after step %" PRId64 "\n", f->max_steps, ckpt, opt.t);
    if (rc == 0 && lead) printf("checkpoint: %s, history: %s%s%s\n", ckpt, hpath, f->plot ? ", curves: " : "",
                                f->plot ? f->plot : "");
    if (lead) cli_history_free(&hist);
out:
    free(w);
    free(x);
    attn_caption_free(&m);
    attn_adam_free(&opt);
    attn_fmnist_free(&d);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * eval, predict
 */
static int load_model(const caption_flags *f, attn_caption *m, int max_batch) {
    char path[4200], err[1024] = "";
    if (f->ckpt) snprintf(path, sizeof path, "%s", f->ckpt);
    else snprintf(path, sizeof path, "%s/%s", f->out, CKPT_NAME);
    attn_status st = attn_caption_load(m, NULL, NULL, path, max_batch, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: caption: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO) fprintf(stderr, "attn: caption: train one with 'attn caption train --out %s'\n", f->out);
        return 1;
    }
    return 0;
}

static int check_sizes(const attn_caption *m, const attn_fmnist *d, const char *data) {
    if (d->test.rows != m->cfg.rows || ITEMS * d->test.cols != m->cfg.cols || m->cfg.items != ITEMS) {
        fprintf(stderr, "attn: caption: %s holds %dx%d images; the checkpoint's model takes strips of %dx%d\n", data,
                d->test.rows, d->test.cols, m->cfg.rows, m->cfg.cols);
        return 1;
    }
    return 0;
}

static int caption_eval(const caption_flags *f) {
    attn_caption m;
    if (load_model(f, &m, EVAL_BATCH)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) { attn_caption_free(&m); return 1; }
    int rc = check_sizes(&m, &d, f->data);
    double em, ai, t0 = cli_now();
    if (!rc) rc = evaluate(&m, &d.test, test_seed(f->seed), f->strips, &em, &ai, 1);
    if (!rc) {
        fprintf(stderr, "attn: caption: %d test strips (seed %" PRIu64 ") in %.1f s\n", f->strips, f->seed,
                cli_now() - t0);
        printf("exact_match %.4f attention_on_item %.3f\n", em, ai);
    }
    attn_fmnist_free(&d);
    attn_caption_free(&m);
    return rc;
}

static int caption_predict(const caption_flags *f, const cli_cmd *cmd, const char *arg) {
    char *end = NULL;
    long idx = strtol(arg, &end, 10);
    if (!*arg || *end || idx < 0 || idx > 1000000000L) {
        fprintf(stderr, "attn: caption: N '%s': expected a strip number (0, 1, ...)\n\n", arg);
        cli_usage(cmd, stderr);
        return 2;
    }
    if (f->png && cli_check_out_file("caption", "--png", f->png)) return 1;
    attn_caption m;
    if (load_model(f, &m, 1)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) { attn_caption_free(&m); return 1; }
    int rc = check_sizes(&m, &d, f->data);
    const int H = m.cfg.heads, Np = m.Np, gr = m.cfg.rows / m.cfg.patch, gc = m.cfg.cols / m.cfg.patch;
    const int P = m.cfg.rows * m.cfg.cols;
    float *x = malloc(sizeof(float) * (size_t)P), *cross = malloc(sizeof(float) * (size_t)ITEMS * H * Np);
    float *maps = malloc(sizeof(float) * (size_t)ITEMS * Np);
    int32_t w[ITEMS], items[ITEMS], out[ITEMS];
    int n_out = 0;
    attn_status st;
    if (!rc && (!x || !cross || !maps)) rc = cli_fail(ATTN_ERR_NOMEM, "caption");
    if (!rc) {
        make_strip(x, w, items, &d.test, test_seed(f->seed), idx);
        if ((st = attn_caption_generate(&m, out, &n_out, cross, x, 1)) != ATTN_OK) rc = cli_fail(st, "caption: decoding");
    }
    if (!rc) {
        printf("test strip %ld (test images %d %d %d): true \"%s %s %s\"\ngenerated \"", idx, items[0], items[1],
               items[2], attn_fmnist_class_name(w[0]), attn_fmnist_class_name(w[1]), attn_fmnist_class_name(w[2]));
        for (int i = 0; i < n_out; i++) printf("%s%s", i ? " " : "", attn_fmnist_class_name(out[i]));
        printf("\"\n");
        for (int i = 0; i < n_out; i++) {
            for (int p = 0; p < Np; p++) {
                double s = 0;
                for (int h = 0; h < H; h++) s += cross[((size_t)i * H + h) * Np + p];
                maps[(size_t)i * Np + p] = (float)(s / H);
            }
            printf("  word %d %-10s attention on item %d: %.3f\n", i + 1, attn_fmnist_class_name(out[i]), i + 1,
                   (double)attn_caption_item_share(cross + (size_t)i * H * Np, H, gr, gc, ITEMS, i));
        }
        if (f->png) {
            char cap[1 + ITEMS][64], title[200];
            const char *caps[1 + ITEMS];
            snprintf(cap[0], 64, "true: %s %s %s", attn_fmnist_class_name(w[0]), attn_fmnist_class_name(w[1]),
                     attn_fmnist_class_name(w[2]));
            for (int i = 0; i < n_out; i++)
                snprintf(cap[1 + i], 64, "word %d \"%s\" (mean of %d heads)", i + 1, attn_fmnist_class_name(out[i]), H);
            for (int i = 0; i <= n_out; i++) caps[i] = cap[i];
            snprintf(title, sizeof title, "test strip %ld: cross-attention of each generated word", idx);
            attn_overlay o = {.image = x, .rows = m.cfg.rows, .cols = m.cfg.cols, .maps = n_out ? maps : NULL,
                              .n_maps = n_out, .grid_rows = gr, .grid_cols = gc, .captions = caps, .title = title,
                              .scale = 6};
            char err[1024] = "";
            if ((st = attn_overlay_png(&o, f->png, err, sizeof err)) != ATTN_OK) {
                fprintf(stderr, "attn: caption: %s\n", err[0] ? err : attn_status_string(st));
                rc = 1;
            } else {
                printf("wrote %s: the strip, then each generated word's cross-attention (last decoder block, mean "
                       "over heads)\n", f->png);
            }
        }
    }
    free(x); free(cross); free(maps);
    attn_fmnist_free(&d);
    attn_caption_free(&m);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Entry.
 */
int cmd_caption(int argc, char **argv) {
    caption_flags f = {.data = ATTN_FMNIST_DEFAULT_DIR, .out = "caption_out", .epochs = 0, .batch = 128,
                       .warmup = 1, .strips = -1, .val = 1000, .patch = 7, .dim = 64, .heads = 4, .ffn = 128,
                       .enc_blocks = 1, .dec_blocks = 2, .lr = 2e-3f, .wd = 0.01f, .clip = 1.0f, .seed = 1};
    const char *sub = argc >= 2 ? argv[1] : NULL;
    const cli_opt train_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files (.gz or not)"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the history go"},
        {"epochs", CLI_INT, &f.epochs, "N", "epochs in all (default 10; with --resume: the checkpoint's, or up to N)"},
        {"strips", CLI_INT, &f.strips, "N", "training strips per epoch, new ones every epoch (default 60000)"},
        {"val", CLI_INT, &f.val, "N", "test strips checked after every epoch"},
        {"batch", CLI_INT, &f.batch, "N", "batch size"},
        {"lr", CLI_FLOAT, &f.lr, "X", "AdamW's peak learning rate (after the warm-up; cosine decay to 1% of it)"},
        {"wd", CLI_FLOAT, &f.wd, "X", "AdamW's decoupled weight decay"},
        {"warmup", CLI_INT, &f.warmup, "N", "epochs of linear warm-up"},
        {"clip", CLI_FLOAT, &f.clip, "X", "clip the gradient's global norm to X (0: no clipping)"},
        {"patch", CLI_INT, &f.patch, "N", "patch size (divides 28: 2, 4, 7, 14)"},
        {"dim", CLI_INT, &f.dim, "N", "model width"},
        {"heads", CLI_INT, &f.heads, "N", "attention heads (divides --dim)"},
        {"ffn", CLI_INT, &f.ffn, "N", "hidden width of each block's feed-forward"},
        {"enc-blocks", CLI_INT, &f.enc_blocks, "N", "encoder blocks over the patches (0: none)"},
        {"dec-blocks", CLI_INT, &f.dec_blocks, "N", "decoder blocks"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the initialization and of the strips"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"shards", CLI_INT, &f.shards, "G", CLI_SHARDS_HELP},
        {"resume", CLI_BOOL, &f.resume, NULL, "continue from the checkpoint in --out (inside an epoch after a "
                                              "--max-steps cut)"},
        {"max-steps", CLI_INT, &f.max_steps, "N", "stop after N optimizer steps of this run (0 = no limit); the "
                                                  "checkpoint then holds them"},
        {"plot", CLI_STR, &f.plot, "FILE", "draw the curves as a PNG after every epoch"},
    };
    const cli_opt eval_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"strips", CLI_INT, &f.strips, "N", "test strips (default 10000)"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the test strips"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_opt predict_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the test strips"},
        {"png", CLI_STR, &f.png, "FILE", "draw the strip and each generated word's cross-attention over it"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_cmd cmds[3] = {
        {"attn caption train [options]",
         "Trains an image captioner on strips of 3 Fashion-MNIST items (28x84) captioned with their class names: a "
         "patch encoder and a Transformer decoder whose cross-attention reads the patches, teacher-forced, AdamW "
         "with warm-up and cosine decay; one line per epoch, a checkpoint after each.",
         train_opts, (int)(sizeof train_opts / sizeof train_opts[0]), 0, 0},
        {"attn caption eval [options]",
         "Captions test strips greedily (key/value cache) and prints exact_match and attention_on_item.", eval_opts,
         (int)(sizeof eval_opts / sizeof eval_opts[0]), 0, 0},
        {"attn caption predict [options] N",
         "Captions test strip N and with --png draws, for every generated word, its cross-attention over the strip.",
         predict_opts, (int)(sizeof predict_opts / sizeof predict_opts[0]), 1, 1},
    };
    int which = !sub ? -1 : strcmp(sub, "train") == 0 ? 0 : strcmp(sub, "eval") == 0 ? 1
                              : strcmp(sub, "predict") == 0 ? 2 : -1;
    if (which < 0) {
        int help = sub && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0);
        FILE *o = help ? stdout : stderr;
        if (sub && !help) fprintf(stderr, "attn: caption: unknown subcommand '%s'\n\n", sub);
        fprintf(o, "usage: attn caption train|eval|predict [options]\n\n"
                   "  train    train an image captioner on strips of 3 Fashion-MNIST items\n"
                   "  eval     caption test strips (prints exact_match and attention_on_item)\n"
                   "  predict  caption one strip and draw each word's cross-attention\n\n"
                   "'attn caption <subcommand> --help' lists the options.\n");
        return help ? 0 : 2;
    }
    const char *pos[1] = {NULL};
    int n_pos = 0;
    int r = cli_parse(&cmds[which], argc - 1, argv + 1, pos, &n_pos);
    if (r >= 0) return r;
    if (cli_check_threads("caption", "--threads", f.threads)) return 2;
    const int epochs_given = f.epochs != 0;
    if (f.strips == -1) f.strips = which == 0 ? 60000 : 10000;     /* not given */
    if ((epochs_given && cli_check_int("caption", "--epochs", f.epochs, 1, 100000)) ||
        cli_check_int("caption", "--strips", f.strips, 1, 100000000) ||
        cli_check_int("caption", "--val", f.val, 1, 100000000) ||
        cli_check_int("caption", "--batch", f.batch, 1, 65536) || cli_check_int("caption", "--limit", f.limit, 0, -1) ||
        cli_check_int("caption", "--max-steps", f.max_steps, 0, -1) ||
        cli_check_int("caption", "--shards", f.shards, 0, ATTN_MAX_SHARDS) ||
        cli_check_int("caption", "--warmup", f.warmup, 0, 100000) || cli_check_int("caption", "--patch", f.patch, 1, 28) ||
        cli_check_int("caption", "--dim", f.dim, 1, 4096) || cli_check_int("caption", "--heads", f.heads, 1, 256) ||
        cli_check_int("caption", "--ffn", f.ffn, 1, 16384) ||
        cli_check_int("caption", "--enc-blocks", f.enc_blocks, 0, ATTN_CAPTION_MAX_BLOCKS) ||
        cli_check_int("caption", "--dec-blocks", f.dec_blocks, 1, ATTN_CAPTION_MAX_BLOCKS)) {
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (!(f.lr > 0.0f) || !isfinite(f.lr) || !(f.wd >= 0.0f) || !isfinite(f.wd) || !(f.clip >= 0.0f) ||
        !isfinite(f.clip)) {
        fprintf(stderr, "attn: caption: --lr must be > 0, --wd and --clip >= 0 (finite)\n\n");
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    cli_set_threads(f.threads, 0);
    if (which == 0) {
        /* under mpirun: data parallel (MPI is started only here); a rank that fails stops them all */
        if (dist_start() || dist_quiet_followers()) return 1;
        return dist_finish("caption", caption_train(&f, epochs_given));
    }
    if (which == 1) return caption_eval(&f);
    return caption_predict(&f, &cmds[2], pos[0]);
}
