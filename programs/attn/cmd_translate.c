/*
 * cmd_translate.c — `attn translate train|predict|bleu`: the d2l book's English→French translator with
 * Bahdanau attention (SPEC §4.D).
 *
 *   train    reads the first pairs of fra.txt (lines 0..600 by default, the book's 601 pairs), builds the
 *            vocabularies, trains 250 epochs, prints d2l's closing line and the four sentences, and saves
 *            the checkpoint and vocabularies in --out.
 *   predict  translates one English sentence with a saved model and shows the attention (terminal
 *            heatmap; --png FILE for an image).
 *   bleu     mean BLEU (k = 2) on held-out pairs (lines 601..1599 by default) whose words are all in the
 *            vocabularies.
 * `--model transformer` hands the command to translate_transformer.c (SPEC §4.E); the default,
 * `--model bahdanau`, is this file. Uses only the public API.
 */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "translate_transformer.h"

#include <cblas.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MODEL_FILE "seq2seq.safetensors"
#define SRC_VOCAB_FILE "vocab_en.txt"
#define TGT_VOCAB_FILE "vocab_fr.txt"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int make_dir(const char *path) {
    struct stat s;
    if (stat(path, &s) == 0) {
        if (S_ISDIR(s.st_mode)) return 0;
        fprintf(stderr, "attn: translate: --out %s exists and is not a folder\n", path);
        return 1;
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "attn: translate: cannot create folder %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Data: pairs → vocabularies → id arrays.
 */
typedef struct dataset {
    attn_nmt_pairs pairs;
    int32_t *X, *Y, *X_len, *Y_len;   /* (N,T) (N,T) (N) (N) */
} dataset;

static void dataset_free(dataset *d) {
    attn_nmt_pairs_free(&d->pairs);
    free(d->X); free(d->Y); free(d->X_len); free(d->Y_len);
    memset(d, 0, sizeof *d);
}

static int read_pairs(attn_nmt_pairs *p, const char *data_dir, int first, int last) {
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/fra-eng/fra.txt", data_dir);
    attn_status st = attn_nmt_read(p, path, first, last, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO) fprintf(stderr, "attn: translate: looked for %s; set --data DIR to the folder holding fra-eng/fra.txt\n", path);
        return 1;
    }
    return 0;
}

static int encode_all(dataset *d, const attn_vocab *vs, const attn_vocab *vt, int T) {
    const int N = d->pairs.n;
    d->X = malloc(sizeof(int32_t) * (size_t)N * T);
    d->Y = malloc(sizeof(int32_t) * (size_t)N * T);
    d->X_len = malloc(sizeof(int32_t) * (size_t)N);
    d->Y_len = malloc(sizeof(int32_t) * (size_t)N);
    if (!d->X || !d->Y || !d->X_len || !d->Y_len) { fprintf(stderr, "attn: translate: out of memory\n"); return 1; }
    for (int i = 0; i < N; i++) {
        int nt;
        attn_vocab_encode(vs, d->pairs.src[i], T, d->X + (size_t)i * T, d->X_len + i, &nt, NULL);
        attn_vocab_encode(vt, d->pairs.tgt[i], T, d->Y + (size_t)i * T, d->Y_len + i, &nt, NULL);
    }
    return 0;
}

/* Joins the tokens of ids (n of them) with spaces into buf. */
static void join_tokens(char *buf, size_t size, const attn_vocab *v, const int32_t *ids, int n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%s", i ? " " : "", v->tokens[ids[i]]);
}

/* Translates a preprocessed sentence. quiet = 0 prints warnings for unknown words and cut input. */
static attn_status translate_line(attn_seq2seq *m, const attn_vocab *vs, const attn_vocab *vt, const char *line,
                                  char *out, size_t out_size, int32_t *src, int32_t *src_len, int32_t *pred,
                                  int *n_pred, float *weights, int quiet) {
    const int T = m->cfg.num_steps;
    int n_tok = 0, n_unk = 0;
    attn_status st = attn_vocab_encode(vs, line, T, src, src_len, &n_tok, &n_unk);
    if (st != ATTN_OK) return st;
    if (!quiet) {
        if (n_unk) {
            const char *s = line;
            for (int k = 0; k < T; k++) {            /* the tokens the model reads */
                const char *e = strchr(s, ' ');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                if (attn_vocab_id(vs, s, n) == ATTN_TOK_UNK)
                    fprintf(stderr, "attn: translate: warning: '%.*s' is not in the English vocabulary; read as <unk>\n", (int)n, s);
                if (!e) break;
                s = e + 1;
            }
        }
        if (n_tok + 1 > T)
            fprintf(stderr, "attn: translate: warning: the input has %d tokens; the model reads the first %d "
                            "(without <eos>, as the book cuts): the rest is ignored\n", n_tok, T);
    }
    st = attn_seq2seq_translate(m, pred, n_pred, weights, src, *src_len);
    if (st != ATTN_OK) return st;
    join_tokens(out, out_size, vt, pred, *n_pred);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * train
 */
static int cmd_train(int argc, char **argv) {
    const char *data = "../shared/data", *out = "fra_model";
    int epochs = 250, threads = 0, examples = 600, batch = 64, every = 10;
    uint64_t seed = 1;
    float lr = 0.005f;
    cli_opt opts[] = {
        {"data", CLI_STR, &data, "DIR", "folder holding fra-eng/fra.txt"},
        {"out", CLI_STR, &out, "DIR", "folder for the checkpoint and the vocabularies"},
        {"epochs", CLI_INT, &epochs, "N", "training epochs"},
        {"seed", CLI_U64, &seed, "N", "seed of the initialization, shuffling and dropout"},
        {"threads", CLI_INT, &threads, "N", "threads (0 = all cores)"},
        {"examples", CLI_INT, &examples, "N", "read lines 0..N of fra.txt (N+1 pairs, as the book's loader)"},
        {"batch", CLI_INT, &batch, "N", "batch size"},
        {"lr", CLI_FLOAT, &lr, "X", "Adam learning rate"},
        {"every", CLI_INT, &every, "N", "print the loss every N epochs"},
    };
    cli_cmd cmd = {"attn translate train [--model bahdanau|transformer] [options]",
                   "Trains the d2l English-French seq2seq model with Bahdanau attention (embedding 32, 2-layer\n"
                   "GRU 32, dropout 0.1, Adam, gradient clipping 1, batch 64), then translates the book's four\n"
                   "sentences and saves the model in --out.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (epochs < 1 || examples < 0 || batch < 1 || batch > 4096 || threads < 0 || every < 1 || !(lr > 0)) {
        fprintf(stderr, "attn: translate: --epochs, --batch, --every must be >= 1, --examples and --threads >= 0, --lr > 0\n\n");
        cli_usage(&cmd, stderr);
        return 2;
    }
    attn_set_num_threads(threads);
    int nth = attn_get_num_threads();     /* resolve "all cores" before OpenBLAS changes OpenMP's default */
    openblas_set_num_threads(1);          /* the batch is split across threads instead */
    attn_set_num_threads(nth);

    dataset d = {0};
    if (read_pairs(&d.pairs, data, 0, examples)) return 1;
    attn_vocab vs, vt;
    attn_status st = attn_vocab_build(&vs, (const char *const *)d.pairs.src, d.pairs.n, 2);
    if (st == ATTN_OK) st = attn_vocab_build(&vt, (const char *const *)d.pairs.tgt, d.pairs.n, 2);
    if (cli_fail(st, "building the vocabularies")) { dataset_free(&d); return 1; }
    const int T = 10;
    if (encode_all(&d, &vs, &vt, T)) { dataset_free(&d); return 1; }
    printf("data: %s/fra-eng/fra.txt lines 1-%d: %d pairs; vocabularies: %d English, %d French tokens\n", data,
           examples + 1, d.pairs.n, vs.n, vt.n);

    attn_seq2seq m;
    attn_seq2seq_config c = {vs.n, vt.n, 32, 32, 2, 0.1f, T, batch};
    if (cli_fail(attn_seq2seq_init(&m, &c, seed), "creating the model")) { dataset_free(&d); return 1; }
    attn_adam opt;
    if (cli_fail(attn_adam_init(&opt, m.n_params, lr), "creating the optimizer")) { attn_seq2seq_free(&m); dataset_free(&d); return 1; }
    printf("model: embedding 32, 2-layer GRU 32, additive attention 32, dropout 0.1: %zu parameters; "
           "%d epochs, batch %d, Adam lr %g, %d thread%s\n", m.n_params, epochs, batch, (double)lr,
           attn_get_num_threads(), attn_get_num_threads() == 1 ? "" : "s");
    fflush(stdout);

    attn_rng rng;
    attn_rng_seed(&rng, seed);
    uint64_t step_seed = seed;
    double loss_sum = 0, t_start = now_s(), t_epoch = 0;
    int64_t tokens = 0;
    for (int e = 0; e < epochs; e++) {
        double t0 = now_s();
        st = attn_seq2seq_train_epoch(&m, &opt, &rng, d.X, d.X_len, d.Y, d.Y_len, d.pairs.n, batch, 1.0f,
                                      &step_seed, &loss_sum, &tokens);
        t_epoch = now_s() - t0;
        if (cli_fail(st, "training")) { attn_adam_free(&opt); attn_seq2seq_free(&m); dataset_free(&d); return 1; }
        if ((e + 1) % every == 0 || e + 1 == epochs) {
            printf("epoch %4d/%d  loss %.4f  (%.1f s)\n", e + 1, epochs, loss_sum / (double)tokens, now_s() - t_start);
            fflush(stdout);
        }
    }
    double total = now_s() - t_start;
    /* d2l's closing line: the last epoch's loss per token and its speed */
    printf("loss %.3f, %.1f tokens/sec\n", loss_sum / (double)tokens, (double)tokens / t_epoch);

    static const char *const engs[4] = {"go .", "i lost .", "he's calm .", "i'm home ."};
    static const char *const fras[4] = {"va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."};
    for (int i = 0; i < 4; i++) {
        char buf[1024];
        int32_t src[10], src_len, pred[10];
        int n_pred;
        st = translate_line(&m, &vs, &vt, engs[i], buf, sizeof buf, src, &src_len, pred, &n_pred, NULL, 0);
        if (cli_fail(st, "translating")) break;
        printf("%s => %s, bleu %.3f\n", engs[i], buf, attn_bleu(buf, fras[i], 2));
    }
    printf("trained in %.1f s\n", total);

    int ret = 0;
    if (make_dir(out) == 0) {
        char path[4096], err[1024] = "";
        snprintf(path, sizeof path, "%s/%s", out, MODEL_FILE);
        st = attn_seq2seq_save(&m, path, err, sizeof err);
        if (st == ATTN_OK) { snprintf(path, sizeof path, "%s/%s", out, SRC_VOCAB_FILE); st = attn_vocab_save(&vs, path, err, sizeof err); }
        if (st == ATTN_OK) { snprintf(path, sizeof path, "%s/%s", out, TGT_VOCAB_FILE); st = attn_vocab_save(&vt, path, err, sizeof err); }
        if (st != ATTN_OK) { fprintf(stderr, "attn: translate: saving: %s\n", err[0] ? err : attn_status_string(st)); ret = 1; }
        else printf("saved %s/%s, %s, %s\n", out, MODEL_FILE, SRC_VOCAB_FILE, TGT_VOCAB_FILE);
    } else ret = 1;
    attn_adam_free(&opt);
    attn_seq2seq_free(&m);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    dataset_free(&d);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * Loading a saved model.
 */
static int load_model(const char *dir, attn_seq2seq *m, attn_vocab *vs, attn_vocab *vt) {
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", dir, MODEL_FILE);
    attn_status st = attn_seq2seq_load(m, path, 1, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO) fprintf(stderr, "attn: translate: train a model first (attn translate train --out %s), or set --dir\n", dir);
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s", dir, SRC_VOCAB_FILE);
    st = attn_vocab_load(vs, path, err, sizeof err);
    if (st == ATTN_OK) {
        snprintf(path, sizeof path, "%s/%s", dir, TGT_VOCAB_FILE);
        st = attn_vocab_load(vt, path, err, sizeof err);
        if (st != ATTN_OK) attn_vocab_free(vs);
    }
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st));
        attn_seq2seq_free(m);
        return 1;
    }
    if (vs->n != m->cfg.src_vocab || vt->n != m->cfg.tgt_vocab) {
        fprintf(stderr, "attn: translate: %s: the vocabularies (%d, %d tokens) do not match the checkpoint (%d, %d)\n",
                dir, vs->n, vt->n, m->cfg.src_vocab, m->cfg.tgt_vocab);
        attn_vocab_free(vs); attn_vocab_free(vt); attn_seq2seq_free(m);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * predict
 */
static int cmd_predict(int argc, char **argv) {
    const char *model = "fra_model", *png = NULL;
    int plain = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", "folder of a model saved by `attn translate train`"},
        {"png", CLI_STR, &png, "FILE", "also write the attention as a PNG heatmap"},
        {"plain", CLI_BOOL, &plain, NULL, "shaded characters instead of colors in the terminal"},
    };
    cli_cmd cmd = {"attn translate predict [--model bahdanau|transformer] [options] \"english sentence\"",
                   "Translates one sentence greedily and shows the attention weights: rows are the French\n"
                   "words produced, columns the English words read.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 1, 1};
    const char *pos[1] = {NULL};
    int np = 0;
    int rc = cli_parse(&cmd, argc, argv, pos, &np);
    if (rc >= 0) return rc;
    char *line = NULL;
    attn_status st = attn_nmt_preprocess(pos[0], strlen(pos[0]), &line);
    if (st == ATTN_ERR_FORMAT) { fprintf(stderr, "attn: translate: the input is not valid UTF-8\n"); return 1; }
    if (cli_fail(st, "reading the input")) return 1;
    if (!line[0]) { fprintf(stderr, "attn: translate: the input is empty\n"); free(line); return 1; }
    attn_seq2seq m;
    attn_vocab vs, vt;
    if (load_model(model, &m, &vs, &vt)) { free(line); return 1; }
    const int T = m.cfg.num_steps;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T * 2), src_len = 0;
    int32_t *pred = src + T;
    float *w = malloc(sizeof(float) * (size_t)T * T);
    char out[4096];
    int n_pred = 0, ret = 0;
    st = translate_line(&m, &vs, &vt, line, out, sizeof out, src, &src_len, pred, &n_pred, w, 0);
    if (!cli_fail(st, "translating")) {
        printf("%s => %s\n", line, out);
        /* the heatmap: output steps (with the <eos> step when it was produced) x source tokens read */
        int rows = n_pred < T ? n_pred + 1 : T, cols = src_len < 1 ? 1 : src_len;
        const char **rl = malloc(sizeof(char *) * (size_t)rows), **cl = malloc(sizeof(char *) * (size_t)cols);
        for (int i = 0; i < rows; i++) rl[i] = i < n_pred ? vt.tokens[pred[i]] : "<eos>";
        for (int j = 0; j < cols; j++) cl[j] = vs.tokens[src[j]];
        attn_heatmap h = {w, rows, cols, T, rl, cl, "Attention weights", "French (produced)", "English (read)", 0, 1};
        st = attn_heatmap_term(&h, stdout, !plain && isatty(STDOUT_FILENO));
        if (cli_fail(st, "drawing the heatmap")) ret = 1;
        if (png && ret == 0) {
            char err[1024] = "";
            st = attn_heatmap_png(&h, png, err, sizeof err);
            if (st != ATTN_OK) { fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st)); ret = 1; }
            else printf("wrote %s\n", png);
        }
        free(rl); free(cl);
    } else ret = 1;
    free(src); free(w); free(line);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    attn_seq2seq_free(&m);
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

static int cmd_bleu(int argc, char **argv) {
    const char *model = "fra_model", *data = "../shared/data";
    int first = 601, last = 1599, show = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", "folder of a model saved by `attn translate train`"},
        {"data", CLI_STR, &data, "DIR", "folder holding fra-eng/fra.txt"},
        {"from", CLI_INT, &first, "LINE", "first line (0-based) of the held-out pairs"},
        {"to", CLI_INT, &last, "LINE", "last line (0-based, inclusive)"},
        {"show", CLI_INT, &show, "N", "print the first N translations"},
    };
    cli_cmd cmd = {"attn translate bleu [--model bahdanau|transformer] [options]",
                   "Mean BLEU (k = 2, the book's definition) of greedy translations of held-out pairs whose\n"
                   "English and French words are all in the model's vocabularies.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (first < 0 || last < first || show < 0) {
        fprintf(stderr, "attn: translate: need 0 <= --from <= --to and --show >= 0\n\n");
        cli_usage(&cmd, stderr);
        return 2;
    }
    attn_seq2seq m;
    attn_vocab vs, vt;
    if (load_model(model, &m, &vs, &vt)) return 1;
    attn_nmt_pairs p;
    if (read_pairs(&p, data, first, last)) { attn_vocab_free(&vs); attn_vocab_free(&vt); attn_seq2seq_free(&m); return 1; }
    const int T = m.cfg.num_steps;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T * 2), src_len;
    int32_t *pred = src + T;
    double sum = 0;
    int used = 0, exact = 0, ret = 0;
    for (int i = 0; i < p.n; i++) {
        if (!all_known(&vs, p.src[i]) || !all_known(&vt, p.tgt[i])) continue;
        char out[4096];
        int n_pred;
        attn_status st = translate_line(&m, &vs, &vt, p.src[i], out, sizeof out, src, &src_len, pred, &n_pred, NULL, 1);
        if (cli_fail(st, "translating")) { ret = 1; break; }
        double b = attn_bleu(out, p.tgt[i], 2);
        sum += b;
        exact += b == 1.0;
        if (used < show) printf("line %d: %s => %s (reference %s), bleu %.3f\n", p.line[i] + 1, p.src[i], out, p.tgt[i], b);
        used++;
    }
    if (!ret) {
        printf("held-out lines %d-%d: %d pairs, %d with every word in the vocabularies\n", first + 1, last + 1, p.n, used);
        if (used) printf("mean bleu %.3f (%d of %d translations exact)\n", sum / used, exact, used);
    }
    free(src);
    attn_nmt_pairs_free(&p);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    attn_seq2seq_free(&m);
    return ret;
}

int cmd_translate(int argc, char **argv) {
    static const char usage[] =
        "usage: attn translate <train|predict|bleu> [--model bahdanau|transformer] [options]\n"
        "  train     train the English-French translator (default: the GRU encoder-decoder with Bahdanau\n"
        "            attention, SPEC 4.D; --model transformer: the Transformer, SPEC 4.E)\n"
        "  predict   translate a sentence and show the attention\n"
        "  bleu      mean BLEU on held-out pairs\n"
        "run `attn translate <command> --help` for the options\n";
    if (argc < 2) { fputs(usage, stderr); return 2; }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) { fputs(usage, stdout); return 0; }
    const char *sub = argv[1];
    if (strcmp(sub, "train") != 0 && strcmp(sub, "predict") != 0 && strcmp(sub, "bleu") != 0) {
        fprintf(stderr, "attn: translate: unknown command '%s'\n\n", sub);
        fputs(usage, stderr);
        return 2;
    }
    /* take --model NAME (or --model=NAME) out; the rest goes to the subcommand (argv from its name on) */
    const char *model = "bahdanau";
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!rest) { fprintf(stderr, "attn: translate: out of memory\n"); return 1; }
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { while (i < argc) rest[n++] = argv[i++]; break; }
        if (strcmp(argv[i], "--model") == 0) {
            if (i + 1 >= argc) { fprintf(stderr, "attn: translate: option '--model' needs a value\n\n%s", usage); free(rest); return 2; }
            model = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--model=", 8) == 0) { model = argv[i] + 8; continue; }
        rest[n++] = argv[i];
    }
    rest[n] = NULL;
    int rc;
    if (strcmp(model, "transformer") == 0) {
        rc = strcmp(sub, "train") == 0 ? tt_train(n, rest) : strcmp(sub, "predict") == 0 ? tt_predict(n, rest)
                                                                                       : tt_bleu(n, rest);
    } else if (strcmp(model, "bahdanau") == 0) {
        rc = strcmp(sub, "train") == 0 ? cmd_train(n, rest) : strcmp(sub, "predict") == 0 ? cmd_predict(n, rest)
                                                                                       : cmd_bleu(n, rest);
    } else {
        fprintf(stderr, "attn: translate: unknown --model '%s' (bahdanau or transformer)\n\n%s", model, usage);
        rc = 2;
    }
    free(rest);
    return rc;
}
