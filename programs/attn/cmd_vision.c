/*
 * cmd_vision.c — `attn vision train|eval|predict`: a Vision Transformer (attn/vit.h) on Fashion-MNIST.
 *
 *   train    reads the IDX files, trains with AdamW, linear warm-up then cosine decay, and light seeded
 *            augmentation (random crops of the image padded by 1 pixel, --crop N, and horizontal flips;
 *            the earlier default padded by 2); prints a progress
 *            line and one line per epoch (with the test accuracy); saves --out/vit.safetensors after every
 *            epoch (atomically, with the optimizer's state, so --resume continues exactly: shuffling and
 *            augmentation are pure functions of seed and epoch); the history in --out/vit_history.csv
 *            (--plot FILE draws it).
 *   eval     loads the checkpoint and prints `test_acc 0.xxxx` on the test split.
 *   predict  classifies one image of the test split (IMAGE_INDEX) and with --png draws it beside its
 *            attention rollout (Abnar & Zuidema 2020) and the class token's last-block attention per head;
 *            with --html writes the explorer over the image (every block and head, and the rollout).
 *
 * Pixels are scaled to [0,1], then normalized with Fashion-MNIST's mean 0.2860 and std 0.3530.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "attn/vit.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_NAME "vit.safetensors"
#define HISTORY_NAME "vit_history.csv"
#define EVAL_BATCH 250
#define FM_MEAN 0.2860f
#define FM_STD 0.3530f
#define MAX_CROP 8

typedef struct vision_flags {
    const char *data, *out, *ckpt, *png, *html, *plot, *split;
    int epochs, batch, threads, limit, resume, no_augment, warmup;
    int crop, no_flip;           /* augmentation: the random crop's padding (0: none), and no flips */
    int max_steps;               /* train: stop after this many optimizer steps of this run (0: no limit) */
    int shards;                  /* train: --shards (0: not given) */
    int patch, dim, heads, blocks, mlp;
    int patch_kernel;            /* train: --patch-kernel K (0: not given, the patch size) */
    float lr, wd, clip;
    float label_smoothing;       /* train: the loss's eps (0: plain cross-entropy) */
    uint64_t seed;
    const char *precision;       /* train: --precision as given, or NULL */
    attn_dtype compute;          /* train: what it names (F32 when not given) */
} vision_flags;

/* Whether the run augments at all. */
static int augments(const vision_flags *f) { return f->crop > 0 || !f->no_flip; }

static int load_data(attn_fmnist *d, const vision_flags *f) {
    return cli_fmnist_load("vision", d, f->data, f->limit);
}

/* Image i of split s, normalized, into x (rows·cols), optionally shifted by (dy, dx) within a zero border
 * (the crop of the padded image) and mirrored. */
static void put_image(float *x, const attn_fmnist_split *s, int i, int dy, int dx, int flip) {
    const int R = s->rows, C = s->cols;
    const uint8_t *im = s->images + (size_t)i * R * C;
    const float zero = (0.0f - FM_MEAN) / FM_STD;
    for (int y = 0; y < R; y++)
        for (int c = 0; c < C; c++) {
            const int sy = y + dy, sx0 = flip ? C - 1 - c : c, sx = sx0 + dx;
            x[(size_t)y * C + c] = (sy < 0 || sy >= R || sx < 0 || sx >= C)
                                       ? zero : ((float)im[(size_t)sy * C + sx] / 255.0f - FM_MEAN) / FM_STD;
        }
}

/* Accuracy and mean loss of the model on a split, EVAL_BATCH images at a time. */
static int evaluate(attn_vit *m, const attn_fmnist_split *s, double *loss, double *acc) {
    const int K = m->cfg.classes, P = s->rows * s->cols, Bm = m->cfg.max_batch;
    float *x = malloc(sizeof(float) * (size_t)Bm * P), *logits = malloc(sizeof(float) * (size_t)Bm * K);
    if (!x || !logits) { free(x); free(logits); return cli_fail(ATTN_ERR_NOMEM, "vision"); }
    double lsum = 0;
    int ok = 0;
    for (int lo = 0; lo < s->n; lo += Bm) {
        const int B = s->n - lo < Bm ? s->n - lo : Bm;
        for (int b = 0; b < B; b++) put_image(x + (size_t)b * P, s, lo + b, 0, 0, 0);
        attn_status st = attn_vit_forward(m, logits, NULL, x, B);
        if (st != ATTN_OK) { free(x); free(logits); return cli_fail(st, "vision: forward"); }
        for (int b = 0; b < B; b++) {
            const float *l = logits + (size_t)b * K;
            int best = 0;
            float mx = l[0];
            for (int k = 1; k < K; k++) if (l[k] > mx) { mx = l[k]; best = k; }
            double z = 0;
            for (int k = 0; k < K; k++) z += exp((double)l[k] - mx);
            lsum += log(z) + mx - l[s->labels[lo + b]];
            ok += best == s->labels[lo + b];
        }
    }
    *loss = lsum / s->n;
    *acc = (double)ok / s->n;
    free(x);
    free(logits);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * train
 */
#define N_RUN_META 13
/* "step": the steps done of epoch "epoch" + 1 when --max-steps cut it (0 otherwise; absent before);
 * "shards" (absent before: 2) is read by dist_shards; "crop" and "flip": the augmentation (absent before:
 * "augment" 1 meant crop 2 and flip, 0 neither) */
static const char *const run_keys[N_RUN_META] = {"epoch", "epochs", "batch", "lr", "weight_decay", "warmup",
                                                    "augment", "seed", "limit", "step", "shards", "crop", "flip"};

#define LS_KEY "label_smoothing"

static int save_checkpoint(const char *path, const attn_vit *m, const attn_adam *opt, const vision_flags *f,
                           int epoch, int step) {
    char v[N_RUN_META][32];
    const char *vp[N_RUN_META + 1];
    snprintf(v[10], 32, "%d", f->shards);
    snprintf(v[9], 32, "%d", step);
    snprintf(v[0], 32, "%d", epoch);
    snprintf(v[1], 32, "%d", f->epochs);
    snprintf(v[2], 32, "%d", f->batch);
    snprintf(v[3], 32, "%.9g", (double)f->lr);
    snprintf(v[4], 32, "%.9g", (double)f->wd);
    snprintf(v[5], 32, "%d", f->warmup);
    snprintf(v[6], 32, "%d", augments(f));
    snprintf(v[7], 32, "%" PRIu64, f->seed);
    snprintf(v[8], 32, "%d", f->limit);
    snprintf(v[11], 32, "%d", f->crop);
    snprintf(v[12], 32, "%d", !f->no_flip);
    const char *keys[N_RUN_META + 1];
    char ls[32];
    for (int i = 0; i < N_RUN_META; i++) { keys[i] = run_keys[i]; vp[i] = v[i]; }
    int nk = N_RUN_META;
    if (f->label_smoothing > 0.0f) {   /* only then: a run without it keeps its bytes (absent: 0) */
        snprintf(ls, sizeof ls, "%.9g", (double)f->label_smoothing);
        keys[nk] = LS_KEY;
        vp[nk++] = ls;
    }
    char err[1024] = "";
    attn_status st = attn_vit_save(m, opt, keys, vp, nk, path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: vision: saving the checkpoint: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    return 0;
}

/* --resume: the run's settings from the checkpoint (the flags' --epochs when given), so it continues
 * exactly. Returns 0, or 1 after a message (2: a --label-smoothing other than the checkpoint's); *done the epochs it holds, *step the steps done of the next
 * (cut by --max-steps). */
static int resume_settings(const char *path, vision_flags *f, int epochs_given, int *done, int *step) {
    double v[N_RUN_META];
    v[9] = 0;                    /* checkpoints before "step" hold whole epochs */
    if (cli_run_meta("vision", path, run_keys, 9, v)) return 1;
    v[11] = v[6] != 0 ? 2 : 0;   /* checkpoints before "crop" and "flip": "augment" said both or neither */
    v[12] = v[6] != 0;
    for (int k = 9; k < N_RUN_META; k++)   /* "shards" (10) is dist_shards' */
        if (k != 10 && cli_has_meta(path, run_keys[k]) && cli_run_meta("vision", path, run_keys + k, 1, v + k))
            return 1;
    *done = (int)v[0];
    *step = (int)v[9];
    if (!epochs_given) f->epochs = (int)v[1];
    f->batch = (int)v[2];
    f->lr = (float)v[3];
    f->wd = (float)v[4];
    f->warmup = (int)v[5];
    f->crop = (int)v[11];
    f->no_flip = !(int)v[12];
    if (f->crop < 0 || f->crop > MAX_CROP) {
        fprintf(stderr, "attn: vision: --resume: %s: crop %d: expected 0..%d\n", path, f->crop, MAX_CROP);
        return 1;
    }
    if (cli_run_meta_u64("vision", path, run_keys[7], &f->seed)) return 1;   /* all 64 bits, not a double's 53 */
    static const char *const ls_key[1] = {LS_KEY};
    double ls = 0;
    if (cli_has_meta(path, LS_KEY) && cli_run_meta("vision", path, ls_key, 1, &ls)) return 1;
    if (!(ls >= 0 && ls < 1)) {
        fprintf(stderr, "attn: vision: --resume: %s: label_smoothing %g: expected 0 <= X < 1\n", path, ls);
        return 1;
    }
    if (f->label_smoothing != 0.0f && f->label_smoothing != (float)ls) {
        fprintf(stderr, "attn: vision: --resume --label-smoothing %g: %s was trained with --label-smoothing %g; leave "
                "the flag out to go on with it\n", (double)f->label_smoothing, path, ls);
        return 2;
    }
    f->label_smoothing = (float)ls;
    f->limit = (int)v[8];
    return 0;
}

static void progress(int done, int total, double t0, double loss, double acc, int tty) {
    const double el = cli_now() - t0, eta = done ? el * (total - done) / done : 0;
    fprintf(stderr, "%s  %6d/%d images - %s %5.1fs - loss %.4f - acc %.4f%s", tty ? "\r" : "", done, total,
            done < total ? "ETA" : "in", done < total ? eta : el, loss, acc, tty ? "   " : "\n");
    fflush(stderr);
}

/* Augmentation of one image: a crop offset within the padding and a flip, drawn from the epoch's generator
 * (one number per image whatever is used of it, so --resume can replay the draws). */
static void draw_augment(attn_rng *rng, const vision_flags *f, int *dy, int *dx, int *flip) {
    const uint32_t r = attn_rng_u32(rng);
    *dy = (int)(r % (uint32_t)(2 * f->crop + 1)) - f->crop;
    *dx = (int)((r >> 8) % (uint32_t)(2 * f->crop + 1)) - f->crop;
    *flip = f->no_flip ? 0 : (int)((r >> 16) & 1);
}

/* The history's columns: test_loss and test_acc (the test split is what they measure); a resumed run whose
 * history was begun before these names keeps that file's val_loss and val_acc. */
static const char *const *history_columns(const char *path, int resume) {
    static const char *const cols[6] = {"epoch", "loss", "acc", "test_loss", "test_acc", "seconds"};
    static const char *const older[6] = {"epoch", "loss", "acc", "val_loss", "val_acc", "seconds"};
    char line[64] = "";
    FILE *fp = resume ? fopen(path, "r") : NULL;
    const int old = fp && fgets(line, sizeof line, fp) &&
                    strcmp(line, "epoch,loss,acc,val_loss,val_acc,seconds\n") == 0;
    if (fp) fclose(fp);
    return old ? older : cols;
}

/* Training; under mpirun data parallel: every rank forms the whole batch and computes its shards of it
 * (--shards G / N each; the ranks must divide G), dist_combine_shards adds the shards'
 * gradients in shard order on rank 0 and sends the sum back, so the parameters are bitwise one process's.
 * Only rank 0 evaluates, logs and writes. */
static int vision_train(vision_flags *f, int epochs_given) {
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", f->out, CKPT_NAME);
    const int lead = dist_rank() == 0, N = dist_size();
    int done = 0, skip = 0;      /* epochs done, and steps done of the next (a --max-steps cut) */
    int sh_first, sh_count, r;
    if (f->resume && (r = resume_settings(ckpt, f, epochs_given, &done, &skip))) return r;
    if ((r = dist_shards("vision", ckpt, f->resume, &f->shards, ATTN_VIT_SHARDS, &sh_first, &sh_count))) return r;
    /* 36: 91.5% in 10 minutes on the machine measured (docs/DESIGN.md "ViT recipe: 36 epochs") */
    if (!f->resume && f->epochs <= 0) f->epochs = 36;
    if (f->resume && done >= f->epochs) {
        fprintf(stderr, "attn: vision: --resume: %s already holds %d of %d epochs; give a larger --epochs\n", ckpt,
                done, f->epochs);
        return 1;
    }
    if (lead && cli_check_out_dir("vision", "--out", f->out)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) return 1;
    attn_vit m;
    attn_adam opt;
    attn_status st;
    char err[1024] = "";
    if (f->resume) {
        if ((st = attn_vit_load(&m, &opt, NULL, ckpt, f->batch, err, sizeof err)) != ATTN_OK) {
            fprintf(stderr, "attn: vision: --resume: %s\n", err[0] ? err : attn_status_string(st));
            attn_fmnist_free(&d);
            return 1;
        }
        if (cli_patch_kernel_resume("vision", ckpt, f->patch_kernel, m.patch.K)) {
            attn_vit_free(&m);
            attn_adam_free(&opt);
            attn_fmnist_free(&d);
            return 2;
        }
        if (f->precision && f->compute != m.cfg.compute) {
            fprintf(stderr, "attn: vision: --resume --precision %s: %s was trained with --precision %s; leave the flag "
                    "out to go on with it\n", f->precision, ckpt, m.cfg.compute == ATTN_DTYPE_BF16 ? "bf16" : "f32");
            attn_vit_free(&m);
            attn_adam_free(&opt);
            attn_fmnist_free(&d);
            return 1;
        }
        if (lead)
            fprintf(stderr, "attn: vision: resuming %s after epoch %d%s (step %" PRId64 "; seed %" PRIu64 ", lr %g, "
                    "batch %d from the checkpoint)\n", ckpt, done, skip ? " and part of the next" : "", opt.t, f->seed,
                    (double)f->lr, f->batch);
    } else {
        attn_vit_config c = {.image = d.train.rows, .channels = 1, .patch = f->patch, .dim = f->dim,
                             .heads = f->heads, .blocks = f->blocks, .mlp = f->mlp, .classes = ATTN_FMNIST_CLASSES,
                             .max_batch = f->batch, .compute = f->compute, .patch_kernel = f->patch_kernel};
        if (d.train.rows != d.train.cols) {
            fprintf(stderr, "attn: vision: %s: the images are %dx%d; the ViT takes square images\n", f->data,
                    d.train.rows, d.train.cols);
            attn_fmnist_free(&d);
            return 1;
        }
        if ((st = attn_vit_config_check(&c)) != ATTN_OK) {
            fprintf(stderr, "attn: vision: --patch %d must divide the image size %d, --dim %d must be a multiple of "
                    "--heads %d, --blocks at most %d, and --patch-kernel %d from --patch to 3 x --patch, of the same "
                    "parity (%s)\n", f->patch, c.image, f->dim, f->heads, ATTN_VIT_MAX_BLOCKS, f->patch_kernel,
                    attn_status_string(st));
            attn_fmnist_free(&d);
            return 2;
        }
        if ((st = attn_vit_init(&m, NULL, &c, f->seed)) != ATTN_OK ||
            (st = attn_adam_alloc(&opt, m.n_params, f->lr)) != ATTN_OK) {
            attn_fmnist_free(&d);
            return cli_fail(st, "vision: model");
        }
    }
    opt.weight_decay = f->wd;
    m.label_smoothing = f->label_smoothing;
    if ((st = attn_vit_set_shards(&m, f->shards)) != ATTN_OK) {
        attn_vit_free(&m);
        attn_adam_free(&opt);
        attn_fmnist_free(&d);
        return cli_fail(st, "vision: --shards");
    }
    const attn_vit_config *c = &m.cfg;
    char par[96] = "", aug[64], lsm[48] = "";
    if (f->label_smoothing > 0.0f)
        snprintf(lsm, sizeof lsm, ", label smoothing %g", (double)f->label_smoothing);
    if (!augments(f)) snprintf(aug, sizeof aug, "no augmentation");
    else if (f->crop == 0) snprintf(aug, sizeof aug, "flip");
    else snprintf(aug, sizeof aug, "crop (pad %d)%s", f->crop, f->no_flip ? "" : " + flip");
    if (dist_on()) snprintf(par, sizeof par, " per rank; data parallel: %d ranks, shards %d of %d each", N, sh_count,
                            f->shards);
    if (lead)
        fprintf(stderr, "attn: vision: ViT patch %d (kernel %d%s), dim %d, %d heads, %d blocks, MLP %d: %zu parameters, "
                "%d tokens; AdamW lr %g wd %g, %d warm-up epoch(s) then cosine, batch %d, %s%s, %d threads%s, attention "
                "compute %s, BLAS %s\n", c->patch, m.patch.K, m.patch.K > c->patch ? ", overlapping" : "", c->dim,
                c->heads, c->blocks, c->mlp, m.n_params, m.T, (double)f->lr, (double)f->wd, f->warmup, f->batch, aug,
                lsm, attn_get_num_threads(), par,
                cli_compute_word(c->compute, cli_sdpa_runs(c->compute, f->batch, c->heads, m.T, c->dim / c->heads, 0)),
                attn_blas_core_name());

    const int n = d.train.n, P = d.train.rows * d.train.cols, steps = (n + f->batch - 1) / f->batch;
    const int64_t total = (int64_t)steps * f->epochs, warm = (int64_t)steps * f->warmup;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n), *lab = malloc(sizeof(int32_t) * (size_t)f->batch);
    float *x = malloc(sizeof(float) * (size_t)f->batch * P);
    cli_history hist;
    memset(&hist, 0, sizeof hist);
    char hpath[4200];
    snprintf(hpath, sizeof hpath, "%s/%s", f->out, HISTORY_NAME);
    const char *const *hcols = history_columns(hpath, f->resume);
    int rc = 0;
    if (!perm || !lab || !x) { rc = cli_fail(ATTN_ERR_NOMEM, "vision"); goto out; }
    if (lead && cli_history_start(&hist, "vision", hpath, 6, hcols, done, f->plot, "Fashion-MNIST ViT")) {
        rc = 1;
        goto out;
    }
    const int tty = lead && isatty(2);
    int64_t run_steps = 0;       /* optimizer steps of this run (--max-steps) */
    int cut = 0;                 /* --max-steps stopped the run inside an epoch */
    for (int epoch = done; epoch < f->epochs && rc == 0 && !cut; epoch++) {
        if (f->max_steps && run_steps >= f->max_steps) break;   /* --max-steps at an epoch's end */
        /* shuffling and augmentation: pure functions of (seed, epoch) */
        attn_rng rng;
        attn_rng_seed(&rng, cli_mix64(f->seed ^ cli_mix64((uint64_t)epoch + 1)));
        for (int i = 0; i < n; i++) perm[i] = i;
        attn_rng_shuffle(&rng, perm, (size_t)n);
        double t0 = cli_now(), last = t0, lsum = 0;
        int correct = 0, seen = 0, mine = 0, first_step = 0, s = 0;
        if (epoch == done && skip > 0) {      /* resumed inside this epoch: its first steps' draws again */
            first_step = skip < steps ? skip : steps;
            for (int i = 0; i < first_step * f->batch && i < n && augments(f); i++) {
                int dy, dx, flip;
                draw_augment(&rng, f, &dy, &dx, &flip);
            }
        }
        if (lead) fprintf(stderr, "Epoch %d/%d%s\n", epoch + 1, f->epochs, first_step ? " (resumed inside)" : "");
        for (s = first_step; s < steps; s++) {
            if (f->max_steps && run_steps >= f->max_steps) {
                cut = 1;
                break;
            }
            const int B = n - s * f->batch < f->batch ? n - s * f->batch : f->batch;
            for (int b = 0; b < B; b++) {
                const int k = perm[s * f->batch + b];
                int dy = 0, dx = 0, flip = 0;
                if (augments(f)) draw_augment(&rng, f, &dy, &dx, &flip);
                put_image(x + (size_t)b * P, &d.train, k, dy, dx, flip);
                lab[b] = d.train.labels[k];
            }
            dist_test_die(run_steps);
            opt.lr = attn_lr_warmup_cosine(opt.t, warm, total, f->lr, f->lr * 0.01f);
            float loss;
            int ok;
            st = attn_vit_train_step_part(&m, &opt, x, lab, B, f->clip, sh_first, sh_count,
                                          sh_count ? dist_combine_shards : NULL, NULL, &loss, &ok);
            run_steps++;
            if (st != ATTN_OK) {
                if (tty) fputc('\n', stderr);
                rc = cli_fail(st, "vision: training step");
                break;
            }
            if (!isfinite(loss)) {
                if (tty) fputc('\n', stderr);
                fprintf(stderr, "attn: vision: the loss is not finite at step %" PRId64 "; stopping (lr too high?)\n",
                        opt.t);
                rc = 1;
                break;
            }
            lsum += (double)loss * B;
            correct += ok;
            seen += B;
            if (sh_count) {                  /* this rank's images, for the progress line's accuracy */
                const int per = (B + f->shards - 1) / f->shards, lo = sh_first * per;
                const int hi = (sh_first + sh_count) * per < B ? (sh_first + sh_count) * per : B;
                mine += hi > lo ? hi - lo : 0;
            } else {
                mine += B;
            }
            const double now = cli_now();
            if (lead && (s == steps - 1 || now - last > (tty ? 0.5 : 15.0))) {
                progress(s * f->batch + B, n, t0, lsum / seen, (double)correct / (mine ? mine : 1), tty);
                last = now;
            }
        }
        if (rc) break;
        if (tty) fputc('\n', stderr);
        /* data parallel: every rank counted its own shards' right answers */
        double cs = correct;
        if (dist_sum_doubles(&cs, 1)) { rc = 1; break; }
        correct = (int)cs;
        if (!lead) continue;                      /* only rank 0 evaluates and writes */
        const double t_train = cli_now() - t0, t1 = cli_now();
        double vl, va;
        if (evaluate(&m, &d.test, &vl, &va)) { rc = 1; break; }
        const double t_val = cli_now() - t1;
        if (cut)
            printf("(--max-steps %d: stopped after step %" PRId64 ", %d of %d steps into epoch %d; --resume goes on "
                   "from there)\n", f->max_steps, opt.t, s, steps, epoch + 1);
        if (seen > 0)
            printf("Epoch %d/%d - %.1fs (train %.1fs, test %.1fs) - lr %.3g - loss: %.4f - acc: %.4f - test_loss: "
                   "%.4f - test_acc: %.4f\n", epoch + 1, f->epochs, t_train + t_val, t_train, t_val, (double)opt.lr,
                   lsum / seen, (double)correct / seen, vl, va);
        fflush(stdout);
        const double row[6] = {epoch + 1, seen ? lsum / seen : 0, seen ? (double)correct / seen : 0, vl, va,
                               t_train + t_val};
        /* a cut epoch: the checkpoint says the epochs before it and the steps done of it */
        if ((!cut && cli_history_add(&hist, row, 1)) ||
            save_checkpoint(ckpt, &m, &opt, f, cut ? epoch : epoch + 1, cut ? s : 0))
            rc = 1;
    }
    if (rc == 0 && lead && f->max_steps && run_steps >= f->max_steps)
        printf("--max-steps %d: stopped; %s holds the parameters after step %" PRId64 "\n", f->max_steps, ckpt, opt.t);
    if (rc == 0 && lead) printf("checkpoint: %s, history: %s%s%s\n", ckpt, hpath, f->plot ? ", curves: " : "",
                                f->plot ? f->plot : "");
    if (lead) cli_history_free(&hist);
out:
    free(perm);
    free(lab);
    free(x);
    attn_vit_free(&m);
    attn_adam_free(&opt);
    attn_fmnist_free(&d);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * eval, predict
 */
static int load_model(const vision_flags *f, attn_vit *m, int max_batch) {
    char path[4200], err[1024] = "";
    if (f->ckpt) snprintf(path, sizeof path, "%s", f->ckpt);
    else snprintf(path, sizeof path, "%s/%s", f->out, CKPT_NAME);
    attn_status st = attn_vit_load(m, NULL, NULL, path, max_batch, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: vision: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO) fprintf(stderr, "attn: vision: train one with 'attn vision train --out %s'\n", f->out);
        return 1;
    }
    return 0;
}

static int check_image_size(const attn_vit *m, const attn_fmnist *d, const char *data) {
    if (d->test.rows != m->cfg.image || d->test.cols != m->cfg.image || m->cfg.channels != 1) {
        fprintf(stderr, "attn: vision: %s holds %dx%d images; the checkpoint's model takes %dx%d with %d channel(s)\n",
                data, d->test.rows, d->test.cols, m->cfg.image, m->cfg.image, m->cfg.channels);
        return 1;
    }
    return 0;
}

static int vision_eval(const vision_flags *f) {
    attn_vit m;
    if (load_model(f, &m, EVAL_BATCH)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) { attn_vit_free(&m); return 1; }
    int rc = check_image_size(&m, &d, f->data);
    double loss, acc, t0 = cli_now();
    if (!rc) rc = evaluate(&m, &d.test, &loss, &acc);
    if (!rc) {
        fprintf(stderr, "attn: vision: %d test images in %.1f s, test_loss %.4f\n", d.test.n, cli_now() - t0, loss);
        printf("test_acc %.4f\n", acc);
    }
    attn_fmnist_free(&d);
    attn_vit_free(&m);
    return rc;
}

/* The explorer: the rollout's class-token row, then every block's and head's weights, each over the image
 * (token 0 the class token, then the g x g patches). Returns 0 or 1. */
static int vision_html(const float *image, int rows, int cols, int g, const float *w, const float *roll, int L,
                       int H, int T, const vision_flags *f, long idx) {
    const int n = 1 + L * H;
    if (n > ATTN_EXPLORER_MAX_MAPS) {
        fprintf(stderr, "attn: vision: --html: %d blocks x %d heads is more than the explorer's %d maps\n", L, H,
                ATTN_EXPLORER_MAX_MAPS - 1);
        return 1;
    }
    char *names = malloc((size_t)T * 32);
    const char **labels = malloc(sizeof(char *) * (size_t)T);
    attn_explorer_map *maps = calloc((size_t)n, sizeof *maps);
    int rc = 0;
    if (!names || !labels || !maps) rc = cli_fail(ATTN_ERR_NOMEM, "vision");
    if (!rc) {
        snprintf(names, 32, "[CLS]");
        for (int t = 1; t < T; t++) snprintf(names + (size_t)t * 32, 32, "(%d,%d)", (t - 1) / g, (t - 1) % g);
        for (int t = 0; t < T; t++) labels[t] = names + (size_t)t * 32;
        char rtitle[64];
        snprintf(rtitle, sizeof rtitle, "attention rollout over %d blocks (the class token's row)", L);
        for (int k = 0; k < n; k++) {
            attn_explorer_map *e = &maps[k];
            e->map = (attn_heatmap){.values = k ? w + (size_t)(k - 1) * T * T : roll, .rows = k ? T : 1, .cols = T,
                                    .row_labels = labels, .col_labels = labels, .title = k ? NULL : rtitle,
                                    .row_title = "query token", .col_title = "key token"};
            e->group = k ? "self-attention" : "rollout";
            e->layer = k ? 1 + (k - 1) / H : 0;
            e->head = k ? 1 + (k - 1) % H : 0;
            e->image = image;
            e->image_rows = rows;
            e->image_cols = cols;
            e->grid_rows = e->grid_cols = g;
            e->first_patch = 1;
        }
        char note[160];
        snprintf(note, sizeof note, "%s image %ld, %dx%d pixels in %dx%d patches; token [CLS] is the class token, "
                 "(r,c) the patch in row r, column c.", f->split, idx, rows, cols, g, g);
        rc = cli_write_html("vision", maps, n, "Vision Transformer: attention over the image", note, f->html);
    }
    free(names); free(labels); free(maps);
    return rc;
}

static int vision_predict(const vision_flags *f, const cli_cmd *cmd, const char *arg) {
    char *end = NULL;
    long idx = strtol(arg, &end, 10);
    if (!*arg || *end || idx < 0) {
        fprintf(stderr, "attn: vision: IMAGE_INDEX '%s': expected an image number (0, 1, ...)\n\n", arg);
        cli_usage(cmd, stderr);
        return 2;
    }
    const int test = strcmp(f->split, "test") == 0;
    if (!test && strcmp(f->split, "train") != 0) {
        fprintf(stderr, "attn: vision: --split %s: expected test or train\n\n", f->split);
        cli_usage(cmd, stderr);
        return 2;
    }
    if (f->png && cli_check_out_file("vision", "--png", f->png)) return 1;
    if (f->html && cli_check_out_file("vision", "--html", f->html)) return 1;
    attn_vit m;
    if (load_model(f, &m, 1)) return 1;
    attn_fmnist d;
    if (load_data(&d, f)) { attn_vit_free(&m); return 1; }
    const attn_fmnist_split *s = test ? &d.test : &d.train;
    int rc = check_image_size(&m, &d, f->data);
    if (!rc && idx >= s->n) {
        fprintf(stderr, "attn: vision: IMAGE_INDEX %ld: the %s split has images 0..%d\n", idx, f->split, s->n - 1);
        rc = 2;
    }
    const int L = m.cfg.blocks, H = m.cfg.heads, T = m.T, K = m.cfg.classes, P = s->rows * s->cols;
    const int g = m.cfg.image / m.cfg.patch;
    float *x = malloc(sizeof(float) * (size_t)P), *w = malloc(sizeof(float) * (size_t)L * H * T * T);
    float *maps = malloc(sizeof(float) * (size_t)(H + 1) * (T - 1)), *roll = malloc(sizeof(float) * (size_t)T);
    float logits[64];
    if (!rc && (!x || !w || !maps || !roll || K > 64)) rc = cli_fail(ATTN_ERR_NOMEM, "vision");
    attn_status st;
    if (!rc) {
        put_image(x, s, (int)idx, 0, 0, 0);
        if ((st = attn_vit_forward(&m, logits, w, x, 1)) != ATTN_OK) rc = cli_fail(st, "vision: forward");
    }
    if (!rc) {
        float mx = logits[0];
        int best = 0;
        for (int k = 1; k < K; k++) if (logits[k] > mx) { mx = logits[k]; best = k; }
        double z = 0;
        for (int k = 0; k < K; k++) z += exp((double)logits[k] - mx);
        const int truth = s->labels[idx];
        printf("%s image %ld: predicted %s (p=%.3f), true %s\n", f->split, idx, attn_fmnist_class_name(best),
               1.0 / z, attn_fmnist_class_name(truth));
        for (int k = 0; k < K; k++)
            printf("  %-10s %.4f\n", attn_fmnist_class_name(k), exp((double)logits[k] - mx) / z);
        /* the maps: the rollout's class-token row, then each head's class-token row in the last block,
         * both over the patches (the class token's own column left out) */
        if ((st = attn_vit_rollout(roll, w, L, H, T)) != ATTN_OK) rc = cli_fail(st, "vision: rollout");
        if (!rc && f->png) {
            memcpy(maps, roll + 1, sizeof(float) * (size_t)(T - 1));
            for (int h = 0; h < H; h++)
                memcpy(maps + (size_t)(h + 1) * (T - 1), w + ((size_t)(L - 1) * H + h) * T * T + 1,
                       sizeof(float) * (size_t)(T - 1));
            char cap[2 + 16][48], title[160];
            const char *caps[2 + 16];
            snprintf(cap[0], 48, "true %s", attn_fmnist_class_name(truth));
            snprintf(cap[1], 48, "rollout (%d blocks)", L);
            for (int h = 0; h < H && h < 16; h++) snprintf(cap[2 + h], 48, "block %d head %d", L, h + 1);
            for (int i = 0; i < H + 2 && i < 18; i++) caps[i] = cap[i];
            snprintf(title, sizeof title, "%s image %ld: predicted %s (p=%.2f)", f->split, idx,
                     attn_fmnist_class_name(best), 1.0 / z);
            attn_overlay o = {.image = x, .rows = s->rows, .cols = s->cols, .maps = maps, .n_maps = H + 1,
                              .grid_rows = g, .grid_cols = g, .captions = H <= 16 ? caps : NULL, .title = title,
                              .scale = 8};
            char err[1024] = "";
            if ((st = attn_overlay_png(&o, f->png, err, sizeof err)) != ATTN_OK) {
                fprintf(stderr, "attn: vision: %s\n", err[0] ? err : attn_status_string(st));
                rc = 1;
            } else {
                printf("wrote %s: the image, the attention rollout, and the class token's attention in block %d, "
                       "one panel per head\n", f->png, L);
            }
        }
    }
    if (!rc && f->html) rc = vision_html(x, s->rows, s->cols, g, w, roll, L, H, T, f, idx);
    free(x); free(w); free(maps); free(roll);
    attn_fmnist_free(&d);
    attn_vit_free(&m);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Entry.
 */
int cmd_vision(int argc, char **argv) {
    attn_vit_config dc;          /* the model's defaults are the library's */
    attn_vit_config_default(&dc);
    vision_flags f = {.data = ATTN_FMNIST_DEFAULT_DIR, .out = "vision_out", .split = "test", .epochs = 0,
                      .batch = 128, .warmup = 1, .patch = dc.patch, .dim = dc.dim, .heads = dc.heads,
                      .blocks = dc.blocks, .mlp = dc.mlp, .lr = 2e-3f, .wd = 0.05f, .clip = 1.0f, .seed = 1,
                      .crop = 1};
    const char *sub = argc >= 2 ? argv[1] : NULL;
    const cli_opt train_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files (.gz or not)"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint and the history go"},
        {"epochs", CLI_INT, &f.epochs, "N", "epochs in all (default 36; with --resume: the checkpoint's, or up to N)"},
        {"batch", CLI_INT, &f.batch, "N", "batch size"},
        {"lr", CLI_FLOAT, &f.lr, "X", "AdamW's peak learning rate (after the warm-up; cosine decay to 1% of it)"},
        {"wd", CLI_FLOAT, &f.wd, "X", "AdamW's decoupled weight decay"},
        {"warmup", CLI_INT, &f.warmup, "N", "epochs of linear warm-up"},
        {"clip", CLI_FLOAT, &f.clip, "X", "clip the gradient's global norm to X (0: no clipping)"},
        {"patch", CLI_INT, &f.patch, "N", "patch size (divides 28: 2, 4, 7, 14)"},
        {"patch-kernel", CLI_INT, &f.patch_kernel, "K", CLI_PATCH_KERNEL_HELP},
        {"dim", CLI_INT, &f.dim, "N", "model width"},
        {"heads", CLI_INT, &f.heads, "N", "attention heads (divides --dim)"},
        {"blocks", CLI_INT, &f.blocks, "N", "Transformer blocks"},
        {"mlp", CLI_INT, &f.mlp, "N", "hidden width of each block's MLP"},
        {"crop", CLI_INT, &f.crop, "N", "random crops of the image padded by N pixels (0: none)"},
        {"no-flip", CLI_BOOL, &f.no_flip, NULL, "no random horizontal flips"},
        {"no-augment", CLI_BOOL, &f.no_augment, NULL, "train without crops and flips (--crop 0 --no-flip)"},
        {"label-smoothing", CLI_FLOAT, &f.label_smoothing, "X", "train on cross-entropy with label smoothing X "
                                                                "(0 <= X < 1: the target is 1-X on the label plus X/10 "
                                                                "on every class, PyTorch's label_smoothing); the epoch "
                                                                "line's loss is that smoothed loss, test_loss plain "
                                                                "cross-entropy (default 0: none; --resume keeps the "
                                                                "checkpoint's)"},
        {"seed", CLI_U64, &f.seed, "N", "seed of the initialization, shuffling and augmentation"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores; up to --shards run at once)"},
        {"shards", CLI_INT, &f.shards, "G", CLI_SHARDS_HELP},
        {"limit", CLI_INT, &f.limit, "N", "only the first N images of each split (0 = all)"},
        {"resume", CLI_BOOL, &f.resume, NULL, "continue from the checkpoint in --out (inside an epoch that "
                                              "--max-steps cut)"},
        {"max-steps", CLI_INT, &f.max_steps, "N", "stop after N optimizer steps of this run (0 = no limit); the "
                                                  "checkpoint is saved then"},
        {"plot", CLI_STR, &f.plot, "FILE", "draw the loss and accuracy curves as a PNG after every epoch"},
        {"precision", CLI_STR, &f.precision, "NAME", CLI_PRECISION_HELP},
    };
    const cli_opt eval_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"limit", CLI_INT, &f.limit, "N", "only the first N test images (0 = all)"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_opt predict_opts[] = {
        {"data", CLI_STR, &f.data, "DIR", "the folder of the Fashion-MNIST IDX files"},
        {"out", CLI_STR, &f.out, "DIR", "where the checkpoint is"},
        {"ckpt", CLI_STR, &f.ckpt, "FILE", "the checkpoint (default --out/" CKPT_NAME ")"},
        {"split", CLI_STR, &f.split, "NAME", "test or train"},
        {"png", CLI_STR, &f.png, "FILE", "draw the image with its attention rollout and the class token's last-block "
                                         "attention per head"},
        {"html", CLI_STR, &f.html, "FILE", "also write the explorer: one self-contained page with the image, where "
                                           "one picks the rollout or a block and head, and pointing at a patch shows "
                                           "its attention over the others"},
        {"threads", CLI_INT, &f.threads, "N", "threads (0 = all cores)"},
    };
    const cli_cmd cmds[3] = {
        {"attn vision train [options]",
         "Trains a Vision Transformer on Fashion-MNIST (60,000 train, 10,000 test images) with AdamW, warm-up and "
         "cosine decay, random crops and flips, printing one line per epoch and saving a checkpoint after each.",
         train_opts, (int)(sizeof train_opts / sizeof train_opts[0]), 0, 0},
        {"attn vision eval [options]", "Evaluates a checkpoint on the test images: prints test_acc.", eval_opts,
         (int)(sizeof eval_opts / sizeof eval_opts[0]), 0, 0},
        {"attn vision predict [options] IMAGE_INDEX",
         "Classifies one image (of the test split unless --split train) and with --png draws where the model "
         "looked: the attention rollout (Abnar & Zuidema 2020) and each head's class-token attention in the last "
         "block.", predict_opts, (int)(sizeof predict_opts / sizeof predict_opts[0]), 1, 1},
    };
    int which = !sub ? -1 : strcmp(sub, "train") == 0 ? 0 : strcmp(sub, "eval") == 0 ? 1
                              : strcmp(sub, "predict") == 0 ? 2 : -1;
    if (which < 0) {
        int help = sub && (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0);
        FILE *o = help ? stdout : stderr;
        if (sub && !help) fprintf(stderr, "attn: vision: unknown subcommand '%s'\n\n", sub);
        fprintf(o, "usage: attn vision train|eval|predict [options]\n\n"
                   "  train    train a Vision Transformer on Fashion-MNIST\n"
                   "  eval     evaluate a checkpoint on the test images (prints test_acc)\n"
                   "  predict  classify one image and draw where the model looked\n\n"
                   "'attn vision <subcommand> --help' lists the options.\n");
        return help ? 0 : 2;
    }
    const char *pos[1] = {NULL};
    int n_pos = 0;
    int r = cli_parse(&cmds[which], argc - 1, argv + 1, pos, &n_pos);
    if (r >= 0) return r;
    if (cli_check_threads("vision", "--threads", f.threads)) return 2;
    const int epochs_given = f.epochs != 0;
    if ((epochs_given && cli_check_int("vision", "--epochs", f.epochs, 1, 100000)) ||
        cli_check_int("vision", "--batch", f.batch, 1, 65536) || cli_check_int("vision", "--limit", f.limit, 0, -1) ||
        cli_check_int("vision", "--warmup", f.warmup, 0, 100000) || cli_check_int("vision", "--patch", f.patch, 1, 28) ||
        cli_check_int("vision", "--dim", f.dim, 1, 4096) || cli_check_int("vision", "--heads", f.heads, 1, 256) ||
        cli_check_int("vision", "--blocks", f.blocks, 1, ATTN_VIT_MAX_BLOCKS) ||
        cli_check_int("vision", "--mlp", f.mlp, 1, 65536) || cli_check_int("vision", "--crop", f.crop, 0, MAX_CROP) ||
        cli_check_int("vision", "--max-steps", f.max_steps, 0, -1) ||
        cli_check_int("vision", "--shards", f.shards, 0, ATTN_MAX_SHARDS) ||
        cli_check_int("vision", "--patch-kernel", f.patch_kernel, 0, 3 * 28)) {
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (!(f.lr > 0.0f) || !isfinite(f.lr) || !(f.wd >= 0.0f) || !isfinite(f.wd) || !(f.clip >= 0.0f) ||
        !isfinite(f.clip) || !(f.label_smoothing >= 0.0f && f.label_smoothing < 1.0f)) {
        fprintf(stderr, "attn: vision: --lr must be > 0, --wd and --clip >= 0 (finite), --label-smoothing in [0, 1)\n\n");
        cli_usage(&cmds[which], stderr);
        return 2;
    }
    if (which == 0 && !f.resume && (r = cli_patch_kernel("vision", &cmds[0], f.patch, f.patch_kernel))) return r;
    if (f.no_augment) {
        f.crop = 0;
        f.no_flip = 1;
    }
    if (which == 0 && (r = cli_precision("vision", &cmds[0], f.precision, &f.compute))) return r;
    cli_set_threads(f.threads, 1);              /* the batch is split across threads; OpenBLAS on one */
    if (which == 0) {
        /* under mpirun: data parallel (MPI is started only here); a rank that fails stops them all */
        if (dist_start() || dist_quiet_followers()) return 1;
        return dist_finish("vision", vision_train(&f, epochs_given));
    }
    if (which == 1) return vision_eval(&f);
    return vision_predict(&f, &cmds[2], pos[0]);
}
