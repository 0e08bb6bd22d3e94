/*
 * translate_common.c — the parts of `attn translate` both models share (translate_common.h says which):
 * data, training loop, saving, loading, one-sentence translation, heatmap labels and `bleu`. The
 * models come in through their tr_kind. Uses only the public API.
 */
#define _POSIX_C_SOURCE 200809L

#include "translate_common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tr_free(translator *tr) {
    if (tr->model) {
        tr->kind->free(tr->model);
        free(tr->model);
    }
    attn_vocab_free(&tr->vs);
    attn_vocab_free(&tr->vt);
    memset(tr, 0, sizeof *tr);
}

int tr_report(attn_status st, const char *err) {
    if (st == ATTN_OK) return 0;
    fprintf(stderr, "attn: translate: %s\n", err && err[0] ? err : attn_status_string(st));
    return 1;
}

/* The path of fra.txt under the data folder (data_flag: --data's value, NULL when not given); *data the
 * folder. Returns 0, or 1 after a message saying where it looked when the file is not there. */
static int fra_path(char *path, size_t size, const char *data_flag, const char **data) {
    const char *from;
    *data = cli_data_dir(data_flag, &from);
    snprintf(path, size, "%s/fra-eng/fra.txt", *data);
    FILE *f = fopen(path, "rb");
    if (f) { fclose(f); return 0; }
    fprintf(stderr, "attn: translate: %s: %s\n", path, strerror(errno));
    cli_data_hint("translate", *data, from);
    return 1;
}

static int read_pairs(attn_nmt_pairs *p, const char *path, int first, int last) {
    char err[1024] = "";
    attn_status st = attn_nmt_read(p, path, first, last, err, sizeof err);
    return tr_report(st, err);
}

/* Lines of a text file (a last line without its newline counts; a final empty one does not); -1 when it
 * cannot be read. */
static long count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char buf[65536];
    long n = 0;
    size_t got;
    int last = '\n';
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < got; i++) { n += buf[i] == '\n'; last = (unsigned char)buf[i]; }
    fclose(f);
    return n + (last != '\n');
}

/* ---------------------------------------------------------------------------------------------------
 * Training data and the training run.
 */
typedef struct train_data {
    attn_nmt_pairs pairs;
    int32_t *X, *Y, *X_len, *Y_len;   /* (N,T) (N,T) (N) (N) */
} train_data;

static void data_free(train_data *d) {
    attn_nmt_pairs_free(&d->pairs);
    free(d->X); free(d->Y); free(d->X_len); free(d->Y_len);
    memset(d, 0, sizeof *d);
}

static int data_load(train_data *d, translator *tr, const char *data_flag, int examples) {
    memset(d, 0, sizeof *d);
    char path[4096];
    const char *data_dir;
    if (fra_path(path, sizeof path, data_flag, &data_dir) || read_pairs(&d->pairs, path, 0, examples)) return 1;
    const int N = d->pairs.n, T = TR_NUM_STEPS;
    attn_status st = attn_vocab_build(&tr->vs, (const char *const *)d->pairs.src, N, 2);
    if (st == ATTN_OK) {
        st = attn_vocab_build(&tr->vt, (const char *const *)d->pairs.tgt, N, 2);
        if (st != ATTN_OK) attn_vocab_free(&tr->vs);
    }
    if (cli_fail(st, "building the vocabularies")) { data_free(d); return 1; }
    if (tr->vs.n <= ATTN_TOK_EOS + 1 || tr->vt.n <= ATTN_TOK_EOS + 1) {
        fprintf(stderr, "attn: translate: the %d pairs of lines 1-%d give no %s word seen twice (the vocabularies "
                "keep words of frequency >= 2): read more pairs with --examples\n", N, examples + 1,
                tr->vs.n <= ATTN_TOK_EOS + 1 ? "English" : "French");
        attn_vocab_free(&tr->vs);
        attn_vocab_free(&tr->vt);
        data_free(d);
        return 1;
    }
    d->X = malloc(sizeof(int32_t) * (size_t)N * T);
    d->Y = malloc(sizeof(int32_t) * (size_t)N * T);
    d->X_len = malloc(sizeof(int32_t) * (size_t)N);
    d->Y_len = malloc(sizeof(int32_t) * (size_t)N);
    if (!d->X || !d->Y || !d->X_len || !d->Y_len) {
        fprintf(stderr, "attn: translate: out of memory\n");
        data_free(d);
        return 1;
    }
    for (int i = 0; i < N; i++) {
        int nt;
        attn_vocab_encode(&tr->vs, d->pairs.src[i], T, d->X + (size_t)i * T, d->X_len + i, &nt, NULL);
        attn_vocab_encode(&tr->vt, d->pairs.tgt[i], T, d->Y + (size_t)i * T, d->Y_len + i, &nt, NULL);
    }
    tr->num_steps = T;
    printf("data: %s/fra-eng/fra.txt lines 1-%d: %d pairs; vocabularies: %d English, %d French tokens\n", data_dir,
           examples + 1, N, tr->vs.n, tr->vt.n);
    return 0;
}

/* The history's path: the checkpoint's name with "_history.csv" for ".safetensors". */
static void history_path(char *buf, size_t size, const char *out, const char *model_file) {
    const char *dot = strrchr(model_file, '.');
    int stem = dot ? (int)(dot - model_file) : (int)strlen(model_file);
    snprintf(buf, size, "%s/%.*s_history.csv", out, stem, model_file);
}

/* ---------------------------------------------------------------------------------------------------
 * The training's state. The checkpoint is written (atomically, by rank 0) after every epoch and when
 * --max-steps cuts one; beside the parameters and Adam's moments and step it holds, as metadata, what
 * --resume needs to go on with the same bits: the epochs done and the steps done of the next, the run's
 * settings, and the random state: the shuffling generator as it was before the cut epoch's shuffle (that
 * epoch is shuffled again, the same), the dropout seed after the last step, and the cut epoch's loss and
 * target tokens so far (its history row then is the one an uncut run writes).
 */
typedef struct tr_run {
    int epoch, step;             /* epochs done; steps done of the next one (a --max-steps cut) */
    int epochs, batch, examples, shards;
    float lr;
    uint64_t seed;
    attn_rng rng;                /* the shuffling generator at the start of epoch `epoch` */
    uint64_t step_seed;          /* the dropout seed after the last step */
    double loss_sum;             /* epoch `epoch`'s summed loss over its first `step` steps */
    int64_t tokens;              /* and its target tokens */
} tr_run;

#define N_RUN_KEYS 13
static const char *const run_keys[N_RUN_KEYS] = {"epoch", "step", "epochs", "batch", "examples", "shards", "lr",
                                                 "seed", "rng_state", "rng_inc", "step_seed", "loss_sum", "tokens"};

static int save_run(const translator *tr, const attn_adam *opt, const tr_run *r, const char *path) {
    char v[N_RUN_KEYS][40];
    const char *vp[N_RUN_KEYS];
    const int ints[6] = {r->epoch, r->step, r->epochs, r->batch, r->examples, r->shards};
    for (int i = 0; i < 6; i++) snprintf(v[i], sizeof v[i], "%d", ints[i]);
    snprintf(v[6], sizeof v[6], "%.9g", (double)r->lr);
    const uint64_t u[4] = {r->seed, r->rng.state, r->rng.inc, r->step_seed};
    for (int i = 0; i < 4; i++) snprintf(v[7 + i], sizeof v[7 + i], "%" PRIu64, u[i]);
    snprintf(v[11], sizeof v[11], "%.17g", r->loss_sum);
    snprintf(v[12], sizeof v[12], "%" PRId64, r->tokens);
    for (int i = 0; i < N_RUN_KEYS; i++) vp[i] = v[i];
    char err[1024] = "";
    attn_status st = tr->kind->save(tr->model, opt, run_keys, vp, N_RUN_KEYS, path, err, sizeof err);
    if (st == ATTN_OK) return 0;
    fprintf(stderr, "attn: translate: saving the checkpoint: %s\n", err[0] ? err : attn_status_string(st));
    return 1;
}

/* --resume: the run's state from the checkpoint at path (see tr_run). Returns 0; 1 after a message when
 * the file cannot be read or was saved without the training state (before translators kept it, or not by
 * `train`). */
static int read_run(const char *path, tr_run *r) {
    attn_st_file f;
    char err[1024] = "";
    if (attn_st_read(&f, path, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "attn: translate: --resume: %s\n", err);
        return 1;
    }
    if (!attn_st_meta(&f, "step_seed") || !attn_st_find(&f, "optimizer.m")) {
        fprintf(stderr, "attn: translate: --resume: %s holds the parameters only (no optimizer, epoch or random state: "
                "saved before translators kept them): it loads for predict and bleu but cannot be resumed; train "
                "anew\n", path);
        attn_st_free(&f);
        return 1;
    }
    double d[N_RUN_KEYS];
    uint64_t u[N_RUN_KEYS];
    for (int i = 0; i < N_RUN_KEYS; i++) {
        const char *s = attn_st_meta(&f, run_keys[i]);
        char *end = NULL;
        const int whole = i >= 7 && i <= 10;             /* the 64-bit seeds and states: exact integers */
        errno = 0;
        if (s && whole) u[i] = strtoull(s, &end, 10);
        else if (s) d[i] = strtod(s, &end);
        if (!s || end == s || *end || errno || (!whole && !(d[i] >= 0 && d[i] <= 9e15))) {
            fprintf(stderr, "attn: translate: --resume: %s: metadata '%s' is %s, expected a %s\n", path, run_keys[i],
                    s ? s : "missing", whole ? "64-bit unsigned integer" : "number >= 0");
            attn_st_free(&f);
            return 1;
        }
    }
    attn_st_free(&f);
    r->epoch = (int)d[0]; r->step = (int)d[1]; r->epochs = (int)d[2]; r->batch = (int)d[3];
    r->examples = (int)d[4]; r->shards = (int)d[5]; r->lr = (float)d[6];
    r->seed = u[7]; r->rng.state = u[8]; r->rng.inc = u[9]; r->step_seed = u[10];
    r->loss_sum = d[11]; r->tokens = (int64_t)d[12];
    if (r->batch < 1 || r->batch > 4096 || r->epochs < 1 || !(r->lr > 0)) {
        fprintf(stderr, "attn: translate: --resume: %s: batch %d, epochs %d, lr %g: expected batch 1..4096, epochs >= 1, "
                "lr > 0\n", path, r->batch, r->epochs, (double)r->lr);
        return 1;
    }
    return 0;
}

/* The training loop: the epochs from r->epoch on (inside it from step r->step), each shuffled with the one
 * generator, then batch by batch in that order; --max-steps stops after that many steps of this run. Rank 0
 * writes the history and the checkpoint; r advances with the run. */
static int fit(translator *tr, attn_adam *opt, const train_data *d, tr_run *r, const tr_train_args *a) {
    const tr_kind *k = tr->kind;
    static const char *const hcols[4] = {"epoch", "loss", "tokens_per_sec", "seconds"};
    char hpath[4200], ckpt[4200];
    history_path(hpath, sizeof hpath, a->out, k->model_file);
    snprintf(ckpt, sizeof ckpt, "%s/%s", a->out, k->model_file);
    cli_history hist;
    char htitle[64];
    snprintf(htitle, sizeof htitle, "%s", k == &tr_transformer ? "Transformer" : "Bahdanau");
    const int lead = dist_rank() == 0;   /* data parallel: rank 0 writes the history and the model */
    memset(&hist, 0, sizeof hist);
    if (lead && cli_history_start(&hist, "translate", hpath, 4, hcols, a->resume ? r->epoch : 0, a->plot, htitle))
        return 1;
    /* under mpirun: this rank's shards of each batch, and the ranks' gradients added in shard order */
    const int per_rank = dist_on() ? r->shards / dist_size() : 0, first = per_rank * dist_rank();
    const int N = d->pairs.n, T = tr->num_steps, batch = r->batch, steps = (N + batch - 1) / batch;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *bx = malloc(sizeof(int32_t) * ((size_t)batch * T * 2 + (size_t)batch * 2));   /* (B,T) (B,T) (B) (B) */
    if (!idx || !bx) {
        free(idx); free(bx); cli_history_free(&hist);
        fprintf(stderr, "attn: translate: out of memory\n");
        return 1;
    }
    int32_t *by = bx + (size_t)batch * T, *bxl = by + (size_t)batch * T, *byl = bxl + batch;
    attn_rng rng = r->rng;
    double loss_sum = 0, t_start = cli_now(), t_epoch = 0;
    int64_t tokens = 0, run_tokens = 0, all_tokens = 0, run_steps = 0;
    int ret = 0, cut = 0, s = 0, ran = 0;   /* ran: epochs this run trained in, whole or part */
    for (int e = r->epoch; e < r->epochs && !cut && !ret; e++) {
        if (a->max_steps && run_steps >= a->max_steps) break;      /* --max-steps at an epoch's end */
        const attn_rng at_start = rng;
        for (int i = 0; i < N; i++) idx[i] = i;
        attn_rng_shuffle(&rng, idx, (size_t)N);
        const int first_step = e == r->epoch ? r->step : 0;      /* resumed inside this epoch */
        loss_sum = first_step ? r->loss_sum : 0;
        tokens = first_step ? r->tokens : 0;
        run_tokens = 0;
        double t0 = cli_now();
        for (s = first_step; s < steps; s++) {
            if (a->max_steps && run_steps >= a->max_steps) { cut = 1; break; }
            const int lo = s * batch, B = N - lo < batch ? N - lo : batch;
            for (int b = 0; b < B; b++) {                  /* gather the batch: (B,T) ids, (B) lengths */
                const int i = idx[lo + b];
                memcpy(bx + (size_t)b * T, d->X + (size_t)i * T, sizeof(int32_t) * T);
                memcpy(by + (size_t)b * T, d->Y + (size_t)i * T, sizeof(int32_t) * T);
                bxl[b] = d->X_len[i];
                byl[b] = d->Y_len[i];
                run_tokens += d->Y_len[i];
            }
            dist_test_die(run_steps);
            float loss = 0;
            attn_status st = k->train_step(tr->model, opt, bx, bxl, by, byl, B, 1.0f, &r->step_seed, first, per_rank,
                                           per_rank ? dist_combine_shards : NULL, NULL, &loss);
            run_steps++;
            if (cli_fail(st, "training")) { ret = 1; break; }
            loss_sum += loss;
        }
        if (ret) break;
        t_epoch = cli_now() - t0;
        tokens += run_tokens;
        all_tokens += run_tokens;
        ran++;
        /* the state after this epoch, or inside it when cut */
        r->epoch = cut ? e : e + 1;
        r->step = cut ? s : 0;
        r->rng = cut ? at_start : rng;
        r->loss_sum = cut ? loss_sum : 0;
        r->tokens = cut ? tokens : 0;
        if (!cut) {
            const int shown = (e + 1) % a->every == 0 || e + 1 == r->epochs;
            const double row[4] = {e + 1, loss_sum / (double)tokens, (double)run_tokens / t_epoch, t_epoch};
            if (lead && cli_history_add(&hist, row, shown)) { ret = 1; break; }
            if (shown) {
                printf("epoch %4d/%d  loss %.4f  (%.1f s)\n", e + 1, r->epochs, loss_sum / (double)tokens,
                       cli_now() - t_start);
                fflush(stdout);
            }
        }
        if (lead && save_run(tr, opt, r, ckpt)) { ret = 1; break; }
    }
    free(idx);
    free(bx);
    cli_history_free(&hist);
    if (ret) return 1;
    double total = cli_now() - t_start;
    if (cut || (a->max_steps && run_steps >= a->max_steps && r->epoch < r->epochs)) {
        printf("--max-steps %d: stopped after step %" PRId64 " (%d of %d steps into epoch %d); %s holds it, and "
               "--resume goes on from there\n", a->max_steps, opt->t, r->step, steps, r->epoch + 1, ckpt);
    } else if (tokens > 0) {
        /* d2l's closing line: the last epoch's loss per token and its speed */
        printf("loss %.3f, %.1f tokens/sec\n", loss_sum / (double)tokens, (double)run_tokens / t_epoch);
    }
    if (all_tokens > 0)
        printf("trained in %.1f s (%.1f tokens/sec over all %d epoch%s of this run)\n", total,
               (double)all_tokens / total, ran, ran == 1 ? "" : "s");
    printf("history: %s%s%s\n", hpath, a->plot ? ", curve: " : "", a->plot ? a->plot : "");
    if (!lead) return 0;

    static const char *const engs[4] = {"go .", "i lost .", "he's calm .", "i'm home ."};
    static const char *const fras[4] = {"va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."};
    for (int i = 0; i < 4; i++) {
        char buf[1024];
        int32_t src[TR_NUM_STEPS], src_len, pred[TR_NUM_STEPS];
        int n_pred;
        attn_status st = tr_translate_line(tr, engs[i], buf, sizeof buf, src, &src_len, pred, &n_pred, NULL, 0);
        if (cli_fail(st, "translating")) return 1;
        printf("%s => %s, bleu %.3f\n", engs[i], buf, attn_bleu(buf, fras[i], 2));
    }
    printf("saved %s, %s, %s in %s\n", k->model_file, TR_SRC_VOCAB_FILE, TR_TGT_VOCAB_FILE, a->out);
    return 0;
}

/* Writes the vocabularies and the lines trained on beside the checkpoint (rank 0, before the training: a
 * checkpoint of any epoch then loads for predict and bleu). Returns 0, or 1 after a message. */
static int save_vocabs(const translator *tr, const train_data *d, const char *out) {
    if (cli_make_dir("translate", out) != 0) return 1;
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", out, TR_SRC_VOCAB_FILE);
    attn_status st = attn_vocab_save(&tr->vs, path, err, sizeof err);
    if (st == ATTN_OK) { snprintf(path, sizeof path, "%s/%s", out, TR_TGT_VOCAB_FILE); st = attn_vocab_save(&tr->vt, path, err, sizeof err); }
    if (st != ATTN_OK) { fprintf(stderr, "attn: translate: saving: %s\n", err[0] ? err : attn_status_string(st)); return 1; }
    /* the lines trained on, for bleu's warning when a "held-out" range overlaps them */
    snprintf(path, sizeof path, "%s/%s", out, TR_TRAIN_LINES_FILE);
    FILE *tl = fopen(path, "w");
    if (tl) {
        fprintf(tl, "lines 1-%d\n", d->pairs.n > 0 ? d->pairs.line[d->pairs.n - 1] + 1 : 0);
        fclose(tl);
    }
    return 0;
}

int tr_train_args_check(const tr_train_args *a) {
    if (cli_check_int("translate", "--epochs", a->epochs, 0, -1) || cli_check_int("translate", "--examples", a->examples, 0, -1) ||
        cli_check_int("translate", "--batch", a->batch, 1, 4096) || cli_check_int("translate", "--every", a->every, 1, 0) ||
        cli_check_int("translate", "--max-steps", a->max_steps, 0, -1) ||
        cli_check_int("translate", "--shards", a->shards, 0, ATTN_MAX_SHARDS) ||
        cli_check_threads("translate", "--threads", a->threads))
        return 2;
    if (!(a->lr > 0)) {
        fprintf(stderr, "attn: translate: --lr %g: must be > 0\n", (double)a->lr);
        return 2;
    }
    return 0;
}

static int tr_train_run(const tr_kind *kind, const tr_train_args *a, tr_run *r, tr_create_fn create,
                        const void *opts);

/* --resume's checks before anything runs: the folder holds this kind's checkpoint with the training state.
 * *r gets the run's state; a->epochs (when given) must exceed the epochs done. Returns 0, 1 or 2 (after a
 * message on rank 0). */
static int resume_check(const tr_kind *kind, const tr_train_args *a, tr_run *r) {
    const int say = dist_rank() == 0;
    const tr_kind *held = tr_detect(a->out);
    if (!held) {
        if (say) fprintf(stderr, "attn: translate: --resume: no checkpoint in %s (%s) to go on from\n", a->out,
                         kind->model_file);
        return 1;
    }
    if (held != kind) {
        if (say) fprintf(stderr, "attn: translate: --resume --model %s: %s holds a %s model; give --model %s to go on "
                         "with it\n", kind->name, a->out, held->name, held->name);
        return 2;
    }
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", a->out, kind->model_file);
    if (read_run(ckpt, r)) return 1;
    if (a->epochs) r->epochs = a->epochs;
    if (r->epoch >= r->epochs) {
        if (say) fprintf(stderr, "attn: translate: --resume: %s already holds %d of %d epochs; give a larger --epochs\n",
                         ckpt, r->epoch, r->epochs);
        return 1;
    }
    return 0;
}

/* Under mpirun (data parallel) every rank trains its shards of each batch; one that fails stops them all. */
int tr_train(const tr_kind *kind, const tr_train_args *a, tr_create_fn create, const void *opts) {
    if (dist_start()) return 1;
    tr_train_args b = *a;                /* --shards resolved: the model's default when not given */
    tr_run r = {.epochs = a->epochs ? a->epochs : kind->epochs, .batch = a->batch, .examples = a->examples,
                .lr = a->lr, .seed = a->seed, .step_seed = a->seed};
    attn_rng_seed(&r.rng, a->seed);
    int first, count, rc;
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/%s", a->out, kind->model_file);
    if ((a->resume && (rc = resume_check(kind, a, &r))) ||
        (rc = dist_shards("translate", ckpt, a->resume, &b.shards, kind->shards, &first, &count))) {
        dist_stop();
        return rc;
    }
    r.shards = b.shards;
    b.batch = r.batch;                   /* with --resume: the checkpoint's settings */
    b.examples = r.examples;
    b.lr = r.lr;
    b.seed = r.seed;
    b.epochs = r.epochs;
    if (dist_quiet_followers()) return 1;
    return dist_finish("translate", tr_train_run(kind, &b, &r, create, opts));
}

static int tr_train_run(const tr_kind *kind, const tr_train_args *a, tr_run *r, tr_create_fn create,
                        const void *opts) {
    /* the model is saved after every epoch: the folder must be usable before the training starts */
    if (dist_rank() == 0 && cli_check_out_dir("translate", "--out", a->out)) return 1;
    if (dist_rank() == 0 && a->plot && cli_check_out_file("translate", "--plot", a->plot)) return 1;
    const tr_kind *held = tr_detect(a->out);
    if (!a->resume && held && held != kind) {
        fprintf(stderr, "attn: translate: --out %s holds a %s model: training a %s model there would replace its "
                "vocabularies; choose another --out\n", a->out, held->name, kind->name);
        return 1;
    }
    cli_set_threads(a->threads, 1);       /* OpenBLAS on 1: the batch is split across threads instead */
    translator tr = {.kind = kind};
    train_data d;
    if (data_load(&d, &tr, a->data, a->examples)) { tr_free(&tr); return 1; }
    int ret = 1;
    size_t n_params = 0;
    attn_adam opt = {0};
    if (a->resume) {
        char path[4200], err[1024] = "";
        int src_n = 0, tgt_n = 0;
        snprintf(path, sizeof path, "%s/%s", a->out, kind->model_file);
        attn_status st = kind->load(&tr, &opt, path, a->batch, &src_n, &tgt_n, err, sizeof err);
        if (st != ATTN_OK) {
            fprintf(stderr, "attn: translate: --resume: %s\n", err[0] ? err : attn_status_string(st));
        } else if (src_n != tr.vs.n || tgt_n != tr.vt.n) {
            fprintf(stderr, "attn: translate: --resume: %s was trained on vocabularies of %d English and %d French "
                    "tokens, the data read now gives %d and %d: give the same fra.txt\n", path, src_n, tgt_n, tr.vs.n,
                    tr.vt.n);
        } else if (!cli_fail(kind->set_shards(tr.model, a->shards), "--shards")) {
            opt.lr = a->lr;
            if (dist_rank() == 0)
                fprintf(stderr, "attn: translate: resuming %s after epoch %d%s (step %" PRId64 "; seed %" PRIu64
                        ", lr %g, batch %d, --examples %d, --shards %d from the checkpoint)\n", path, r->epoch,
                        r->step ? " and part of the next" : "", opt.t, a->seed, (double)a->lr, a->batch, a->examples,
                        a->shards);
            ret = 0;
        }
    } else if (create(&tr, a, opts, &n_params) == 0 &&
               !cli_fail(attn_adam_alloc(&opt, n_params, a->lr), "creating the optimizer")) {
        ret = 0;
    }
    if (ret == 0 && dist_rank() == 0 && save_vocabs(&tr, &d, a->out)) ret = 1;
    if (ret == 0) {
        fflush(stdout);
        ret = fit(&tr, &opt, &d, r, a);
    }
    attn_adam_free(&opt);
    tr_free(&tr);
    data_free(&d);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * Loading a saved model.
 */
const tr_kind *tr_detect(const char *dir) {
    static const tr_kind *const kinds[] = {&tr_transformer, &tr_bahdanau};
    for (int i = 0; i < (int)(sizeof kinds / sizeof kinds[0]); i++) {
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/%s", dir, kinds[i]->model_file);
        if (access(path, R_OK) != 0) continue;
        attn_st_file f;
        if (attn_st_read(&f, path, (size_t)1 << 30, err, sizeof err) != ATTN_OK) return kinds[i];
        const char *m = attn_st_meta(&f, "model");
        const tr_kind *k = m && strcmp(m, tr_transformer.name) == 0 ? &tr_transformer : &tr_bahdanau;
        attn_st_free(&f);
        return k;
    }
    return NULL;
}

int tr_load(translator *tr, const tr_kind *kind, const char *dir) {
    char path[4096], err[1024] = "";
    memset(tr, 0, sizeof *tr);
    tr->kind = kind;
    int src_n = 0, tgt_n = 0;
    snprintf(path, sizeof path, "%s/%s", dir, kind->model_file);
    attn_status st = kind->load(tr, NULL, path, 1, &src_n, &tgt_n, err, sizeof err);
    if (tr_report(st, err)) {
        const tr_kind *held = st == ATTN_ERR_IO ? tr_detect(dir) : NULL;
        if (held && held != kind)
            fprintf(stderr, "attn: translate: %s holds a %s model, not a %s one: leave out --model (the folder says "
                    "which model it holds) or give --model %s\n", dir, held->name, kind->name, held->name);
        else if (st == ATTN_ERR_IO)
            fprintf(stderr, "attn: translate: no model in %s: train one first (%s --out %s), or give the folder of "
                    "one with --dir\n", dir, kind->train_cmd, dir);
        tr_free(tr);
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, TR_SRC_VOCAB_FILE);
    st = attn_vocab_load(&tr->vs, path, err, sizeof err);
    if (st == ATTN_OK) {
        snprintf(path, sizeof path, "%s/%s", dir, TR_TGT_VOCAB_FILE);
        st = attn_vocab_load(&tr->vt, path, err, sizeof err);
        if (st != ATTN_OK) attn_vocab_free(&tr->vs);
    }
    if (tr_report(st, err)) { tr_free(tr); return 1; }
    if (tr->vs.n != src_n || tr->vt.n != tgt_n) {
        fprintf(stderr, "attn: translate: %s: the vocabularies (%d, %d tokens) do not match the checkpoint (%d, %d)\n",
                dir, tr->vs.n, tr->vt.n, src_n, tgt_n);
        tr_free(tr);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * One sentence.
 */
/* Collapses every run of whitespace (spaces, tabs, line ends) into one space and trims both ends, in
 * place: the vocabularies split on single spaces, so "i'm  home ." would read an empty word. */
static void squeeze_spaces(char *s) {
    char *w = s;
    int pending = 0;
    for (const char *r = s; *r; r++) {
        if (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r' || *r == '\v' || *r == '\f') {
            pending = w > s;
            continue;
        }
        if (pending) *w++ = ' ';
        pending = 0;
        *w++ = *r;
    }
    *w = '\0';
}

int tr_predict_input(const cli_cmd *cmd, const char *arg, const char *file, char **line) {
    char *text = NULL;
    int rc = cli_predict_text("translate", cmd, arg, file, &text);
    *line = NULL;
    if (rc) return rc;
    rc = tr_read_input(text, line);
    free(text);
    return rc;
}

int tr_read_input(const char *arg, char **line) {
    *line = NULL;
    attn_status st = attn_nmt_preprocess(arg, strlen(arg), line);
    if (st == ATTN_ERR_FORMAT) { fprintf(stderr, "attn: translate: the input is not valid UTF-8\n"); return 1; }
    if (cli_fail(st, "reading the input")) return 1;
    squeeze_spaces(*line);
    if (!(*line)[0]) { fprintf(stderr, "attn: translate: the input is empty\n"); free(*line); *line = NULL; return 1; }
    return 0;
}

/* Joins the tokens of ids (n of them) with spaces into buf. */
static void join_tokens(char *buf, size_t size, const attn_vocab *v, const int32_t *ids, int n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%s", i ? " " : "", v->tokens[ids[i]]);
}

attn_status tr_translate_line(const translator *tr, const char *line, char *out, size_t out_size, int32_t *src,
                              int32_t *src_len, int32_t *pred, int *n_pred, float *weights, int quiet) {
    const int T = tr->num_steps;
    int n_tok = 0, n_unk = 0;
    attn_status st = attn_vocab_encode(&tr->vs, line, T, src, src_len, &n_tok, &n_unk);
    if (st != ATTN_OK) return st;
    if (!quiet) {
        if (n_unk) {
            const char *s = line;
            for (int k = 0; k < T; k++) {            /* the tokens the model reads */
                const char *e = strchr(s, ' ');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                if (attn_vocab_id(&tr->vs, s, n) == ATTN_TOK_UNK)
                    fprintf(stderr, "attn: translate: warning: '%.*s' is not in the English vocabulary; read as <unk>\n", (int)n, s);
                if (!e) break;
                s = e + 1;
            }
        }
        /* both models read ids cut as d2l's truncate_pad: the tokens, then <eos>, cut to T */
        if (n_tok + 1 > T)
            fprintf(stderr, "attn: translate: warning: the input has %d tokens; the model reads the first %d "
                            "(without <eos>, as the book cuts): the rest is ignored\n", n_tok, T);
    }
    st = tr->kind->translate(tr->model, pred, n_pred, weights, src, *src_len);
    if (st != ATTN_OK) return st;
    join_tokens(out, out_size, &tr->vt, pred, *n_pred);
    return ATTN_OK;
}

int tr_predict_line(const translator *tr, const char *line, float *weights, int *rows, int *cols, const char ***rl,
                    const char ***cl, int32_t *ids, int *lens) {
    const int T = tr->num_steps;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T * 2), src_len = 0;   /* (T) ids read, then (T) produced */
    char out[4096];
    int n_pred = 0, ret = 1;
    *rl = *cl = NULL;
    if (!src) { fprintf(stderr, "attn: translate: out of memory\n"); return 1; }
    int32_t *pred = src + T;
    attn_status st = tr_translate_line(tr, line, out, sizeof out, src, &src_len, pred, &n_pred, weights, 0);
    if (cli_fail(st, "translating")) goto done;
    /* echo the words the model read, not the whole input: a cut input says so */
    {
        const int read = src_len > 0 && src[src_len - 1] == ATTN_TOK_EOS ? src_len - 1 : src_len;
        const char *s = line;
        int words = 0;
        for (const char *c = line; *c; c++) words += (c == line || c[-1] == ' ') && *c != ' ';
        for (int k = 0; k < read && s; k++) {
            const char *e = strchr(s, ' ');
            printf("%s%.*s", k ? " " : "", e ? (int)(e - s) : (int)strlen(s), s);
            s = e ? e + 1 : NULL;
        }
        if (words > read) printf(" [cut: %d more word%s not read]", words - read, words - read == 1 ? "" : "s");
        printf(" => %s\n", out);
    }
    *rows = n_pred < T ? n_pred + 1 : T;
    *cols = src_len < 1 ? 1 : src_len > T ? T : src_len;
    *rl = malloc(sizeof(char *) * (size_t)*rows);
    *cl = malloc(sizeof(char *) * (size_t)*cols);
    if (!*rl || !*cl) {
        free(*rl); free(*cl);
        *rl = *cl = NULL;
        fprintf(stderr, "attn: translate: out of memory\n");
        goto done;
    }
    for (int i = 0; i < *rows; i++) (*rl)[i] = i < n_pred ? tr->vt.tokens[pred[i]] : "<eos>";
    for (int j = 0; j < *cols; j++) (*cl)[j] = tr->vs.tokens[src[j]];
    if (ids) memcpy(ids, src, sizeof(int32_t) * (size_t)T * 2);
    if (lens) lens[0] = src_len, lens[1] = n_pred;
    ret = 0;
done:
    free(src);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * bleu
 */
static int all_known(const attn_vocab *v, const char *line) {
    const char *s = line;
    for (;;) {
        const char *e = strchr(s, ' ');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (attn_vocab_id(v, s, n) == ATTN_TOK_UNK) return 0;
        if (!e) return 1;
        s = e + 1;
    }
}

/* The lines a model in dir was trained on (train_lines.txt, written by train): *first..*last, 1-based.
 * Returns 1 when the file says, 0 when it is absent (older models: the default, lines 1-601, assumed). */
static int trained_lines(const char *dir, int *first, int *last) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, TR_TRAIN_LINES_FILE);
    FILE *f = fopen(path, "r");
    *first = 1;
    *last = 601;
    if (!f) return 0;
    int ok = fscanf(f, "lines %d-%d", first, last) == 2;
    fclose(f);
    if (!ok) { *first = 1; *last = 601; }
    return ok;
}

int tr_bleu(const tr_kind *kind, int argc, char **argv) {
    const char *model = kind->default_dir, *data = NULL;
    int first = 602, last = 1600, show = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", kind->dir_help},
        {"out", CLI_STR, &model, "DIR", "the same as --dir"},
        {"data", CLI_STR, &data, "DIR", "folder holding fra-eng/fra.txt (default $ATTN_DATA, else " CLI_DATA_DEFAULT ")"},
        {"from", CLI_INT, &first, "LINE", "first line of the held-out pairs (lines are numbered from 1, as in an editor)"},
        {"to", CLI_INT, &last, "LINE", "last line, included (past the end of the file: up to its last line)"},
        {"show", CLI_INT, &show, "N", "print the first N translations"},
    };
    cli_cmd cmd = {kind->bleu_usage,
                   "Mean BLEU (k = 2, the book's definition) of greedy translations of held-out pairs whose\n"
                   "English and French words are all in the model's vocabularies. Line numbers are 1-based\n"
                   "(line 1 is the file's first line), in the flags and in the output; training reads lines\n"
                   "1-601 by default, so the default held-out range starts after them.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (cli_check_int("translate", "--from", first, 1, -1) || cli_check_int("translate", "--to", last, first, -1) ||
        cli_check_int("translate", "--show", show, 0, -1)) {
        fputc('\n', stderr);
        cli_usage(&cmd, stderr);
        return 2;
    }
    char path[4096];
    const char *data_dir;
    if (fra_path(path, sizeof path, data, &data_dir)) return 1;
    const long n_lines = count_lines(path);
    if (n_lines >= 0 && first > n_lines) {
        fprintf(stderr, "attn: translate: --from %d is past the end of %s (%ld lines): nothing to score\n", first, path,
                n_lines);
        return 2;
    }
    if (n_lines >= 0 && last > n_lines) {
        fprintf(stderr, "attn: translate: note: --to %d is past the end of %s: scoring lines %d-%ld\n", last, path,
                first, n_lines);
        last = (int)n_lines;
    }
    int t_first, t_last;
    const int said = trained_lines(model, &t_first, &t_last);
    if (first <= t_last && last >= t_first)
        fprintf(stderr, "attn: translate: warning: lines %d-%d overlap the lines the model was trained on (%d-%d%s): "
                "those pairs are not held out and score too high\n", first, last, t_first, t_last,
                said ? "" : ", the default; the model folder does not say");
    translator tr;
    if (tr_load(&tr, kind, model)) return 1;
    attn_nmt_pairs p;
    if (read_pairs(&p, path, first - 1, last - 1)) { tr_free(&tr); return 1; }
    const int T = tr.num_steps;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T * 2), src_len;
    if (!src) { fprintf(stderr, "attn: translate: out of memory\n"); attn_nmt_pairs_free(&p); tr_free(&tr); return 1; }
    int32_t *pred = src + T;
    double sum = 0, t0 = cli_now();
    int used = 0, exact = 0, ret = 0;
    for (int i = 0; i < p.n; i++) {
        if (!all_known(&tr.vs, p.src[i]) || !all_known(&tr.vt, p.tgt[i])) continue;
        char out[4096];
        int n_pred;
        attn_status st = tr_translate_line(&tr, p.src[i], out, sizeof out, src, &src_len, pred, &n_pred, NULL, 1);
        if (cli_fail(st, "translating")) { ret = 1; break; }
        double b = attn_bleu(out, p.tgt[i], 2);
        sum += b;
        exact += b == 1.0;
        if (used < show) printf("line %d: %s => %s (reference %s), bleu %.3f\n", p.line[i] + 1, p.src[i], out, p.tgt[i], b);
        used++;
    }
    if (!ret) {
        printf("lines %d-%d: %d pairs, %d with every word in the vocabularies\n", first, last, p.n, used);
        if (used) {
            printf("mean bleu %.3f (%d of %d translations exact) in %.2f s\n", sum / used, exact, used, cli_now() - t0);
        } else {
            fprintf(stderr, "attn: translate: no pair of lines %d-%d has every word in the vocabularies: nothing "
                    "scored\n", first, last);
            ret = 1;
        }
    }
    free(src);
    attn_nmt_pairs_free(&p);
    tr_free(&tr);
    return ret;
}
