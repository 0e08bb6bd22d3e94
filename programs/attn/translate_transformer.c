/*
 * translate_transformer.c — the Transformer side of `attn translate` (SPEC §4.E), reached with
 * `--model transformer`:
 *   train    the book's 601 pairs, d2l's Transformer (2 blocks, 32 hidden, 4 heads, feed-forward 64,
 *            dropout 0.1), Adam lr 0.005, 200 epochs, batch 64; prints the loss, d2l's closing line with
 *            tokens/sec, the four sentences with BLEU, and saves the checkpoint and vocabularies.
 *   predict  one sentence, greedy with the key/value cache; the terminal shows the cross-attention of a
 *            decoder block averaged over its heads, --png FILE draws every head of it as a grid.
 *   bleu     mean BLEU (k = 2) on held-out pairs (lines 601..1599) whose words are all in the vocabularies,
 *            as the Bahdanau model's command does.
 * The text pipeline (pairs, vocabularies, BLEU) is the library's (attn/seq2seq.h). Uses only the public API.
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

#define SRC_VOCAB_FILE "vocab_en.txt"
#define TGT_VOCAB_FILE "vocab_fr.txt"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int read_pairs(attn_nmt_pairs *p, const char *data_dir, int first, int last) {
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/fra-eng/fra.txt", data_dir);
    attn_status st = attn_nmt_read(p, path, first, last, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO)
            fprintf(stderr, "attn: translate: looked for %s; set --data DIR to the folder holding fra-eng/fra.txt\n", path);
        return 1;
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

/* Translates a preprocessed line: src (T) and *src_len filled, pred (T) and *n_pred, weights (L,H,T,T) or
 * NULL. quiet = 0 warns about unknown words and cut input. */
static attn_status translate_line(attn_transformer *m, const attn_vocab *vs, const attn_vocab *vt, const char *line,
                                  char *out, size_t out_size, int32_t *src, int32_t *src_len, int32_t *pred,
                                  int *n_pred, float *weights, int quiet) {
    const int T = m->cfg.num_steps;
    int n_tok = 0, n_unk = 0;
    attn_status st = attn_vocab_encode(vs, line, T, src, src_len, &n_tok, &n_unk);
    if (st != ATTN_OK) return st;
    if (!quiet) {
        const char *s = line;
        while (n_unk) {
            const char *e = strchr(s, ' ');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (attn_vocab_id(vs, s, n) == ATTN_TOK_UNK)
                fprintf(stderr, "attn: translate: warning: '%.*s' is not in the English vocabulary; read as <unk>\n", (int)n, s);
            if (!e) break;
            s = e + 1;
        }
        if (n_tok + 1 > T)
            fprintf(stderr, "attn: translate: warning: the input has %d tokens; the model reads %d (with <eos>): "
                            "the rest is cut\n", n_tok, T);
    }
    st = attn_transformer_translate(m, pred, n_pred, weights, NULL, src, *src_len, 1);
    if (st != ATTN_OK) return st;
    join_tokens(out, out_size, vt, pred, *n_pred);
    return ATTN_OK;
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
 * train
 */
int tt_train(int argc, char **argv) {
    const char *data = "../shared/data", *out = TT_DEFAULT_DIR;
    int epochs = 200, threads = 0, examples = 600, batch = 64, every = 10, hidden = 32, ffn = 64, heads = 4,
        blocks = 2;
    uint64_t seed = 1;
    float lr = 0.005f, dropout = 0.1f;
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
        {"hidden", CLI_INT, &hidden, "N", "model width"},
        {"ffn", CLI_INT, &ffn, "N", "hidden units of the position-wise feed-forward"},
        {"heads", CLI_INT, &heads, "N", "attention heads (must divide --hidden)"},
        {"blocks", CLI_INT, &blocks, "N", "encoder and decoder blocks"},
        {"dropout", CLI_FLOAT, &dropout, "X", "dropout"},
    };
    cli_cmd cmd = {"attn translate train --model transformer [options]",
                   "Trains the d2l English-French Transformer (2 encoder and 2 decoder blocks, width 32, 4 heads,\n"
                   "feed-forward 64, dropout 0.1, Adam, gradient clipping 1, batch 64), then translates the book's\n"
                   "four sentences and saves the model in --out.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (epochs < 1 || examples < 0 || batch < 1 || batch > 4096 || threads < 0 || every < 1 || !(lr > 0) ||
        hidden < 1 || ffn < 1 || heads < 1 || blocks < 1 || blocks > ATTN_TF_MAX_BLOCKS || hidden % heads != 0 ||
        !(dropout >= 0 && dropout < 1)) {
        fprintf(stderr, "attn: translate: --epochs, --batch, --every, --hidden, --ffn, --heads, --blocks must be >= 1 "
                        "(--blocks <= %d, --heads dividing --hidden), --examples and --threads >= 0, --lr > 0, "
                        "--dropout in [0, 1)\n\n", ATTN_TF_MAX_BLOCKS);
        cli_usage(&cmd, stderr);
        return 2;
    }
    attn_set_num_threads(threads);
    int nth = attn_get_num_threads();     /* resolve "all cores" before OpenBLAS changes OpenMP's default */
    openblas_set_num_threads(1);          /* the batch is split across threads instead */
    attn_set_num_threads(nth);

    attn_nmt_pairs p;
    if (read_pairs(&p, data, 0, examples)) return 1;
    attn_vocab vs, vt;
    attn_status st = attn_vocab_build(&vs, (const char *const *)p.src, p.n, 2);
    if (st == ATTN_OK) {
        st = attn_vocab_build(&vt, (const char *const *)p.tgt, p.n, 2);
        if (st != ATTN_OK) attn_vocab_free(&vs);
    }
    if (cli_fail(st, "building the vocabularies")) { attn_nmt_pairs_free(&p); return 1; }
    const int T = 10, N = p.n;
    int32_t *X = malloc(sizeof(int32_t) * (size_t)N * T), *Y = malloc(sizeof(int32_t) * (size_t)N * T),
            *Xl = malloc(sizeof(int32_t) * (size_t)N), *Yl = malloc(sizeof(int32_t) * (size_t)N);
    int ret = 1;
    attn_transformer m = {0};
    attn_adam opt = {0};
    if (!X || !Y || !Xl || !Yl) { fprintf(stderr, "attn: translate: out of memory\n"); goto done; }
    for (int i = 0; i < N; i++) {
        int nt;
        attn_vocab_encode(&vs, p.src[i], T, X + (size_t)i * T, Xl + i, &nt, NULL);
        attn_vocab_encode(&vt, p.tgt[i], T, Y + (size_t)i * T, Yl + i, &nt, NULL);
    }
    printf("data: %s/fra-eng/fra.txt lines 1-%d: %d pairs; vocabularies: %d English, %d French tokens\n", data,
           examples + 1, N, vs.n, vt.n);
    attn_transformer_config c = {vs.n, vt.n, hidden, ffn, heads, blocks, dropout, T, batch};
    if (cli_fail(attn_transformer_init(&m, &c, seed), "creating the model")) goto done;
    if (cli_fail(attn_adam_init(&opt, m.n_params, lr), "creating the optimizer")) goto done;
    printf("model: Transformer, %d+%d blocks, width %d, %d heads, feed-forward %d, dropout %g: %zu parameters; "
           "%d epochs, batch %d, Adam lr %g, %d thread%s\n", blocks, blocks, hidden, heads, ffn, (double)dropout,
           m.n_params, epochs, batch, (double)lr, attn_get_num_threads(), attn_get_num_threads() == 1 ? "" : "s");
    fflush(stdout);

    attn_rng rng;
    attn_rng_seed(&rng, seed);
    uint64_t step_seed = seed;
    double loss_sum = 0, t_start = now_s(), t_epoch = 0;
    int64_t tokens = 0, all_tokens = 0;
    for (int e = 0; e < epochs; e++) {
        double t0 = now_s();
        st = attn_transformer_train_epoch(&m, &opt, &rng, X, Xl, Y, Yl, N, batch, 1.0f, &step_seed, &loss_sum, &tokens);
        t_epoch = now_s() - t0;
        if (cli_fail(st, "training")) goto done;
        all_tokens += tokens;
        if ((e + 1) % every == 0 || e + 1 == epochs) {
            printf("epoch %4d/%d  loss %.4f  (%.1f s)\n", e + 1, epochs, loss_sum / (double)tokens, now_s() - t_start);
            fflush(stdout);
        }
    }
    double total = now_s() - t_start;
    /* d2l's closing line: the last epoch's loss per token and its speed */
    printf("loss %.3f, %.1f tokens/sec\n", loss_sum / (double)tokens, (double)tokens / t_epoch);
    printf("trained in %.1f s (%.1f tokens/sec over all %d epochs)\n", total, (double)all_tokens / total, epochs);

    static const char *const engs[4] = {"go .", "i lost .", "he's calm .", "i'm home ."};
    static const char *const fras[4] = {"va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."};
    for (int i = 0; i < 4; i++) {
        char buf[1024];
        int32_t src[10], src_len, pred[10];
        int n_pred;
        st = translate_line(&m, &vs, &vt, engs[i], buf, sizeof buf, src, &src_len, pred, &n_pred, NULL, 0);
        if (cli_fail(st, "translating")) goto done;
        printf("%s => %s, bleu %.3f\n", engs[i], buf, attn_bleu(buf, fras[i], 2));
    }
    if (make_dir(out) != 0) goto done;
    {
        char path[4096], err[1024] = "";
        snprintf(path, sizeof path, "%s/%s", out, TT_MODEL_FILE);
        st = attn_transformer_save(&m, path, err, sizeof err);
        if (st == ATTN_OK) { snprintf(path, sizeof path, "%s/%s", out, SRC_VOCAB_FILE); st = attn_vocab_save(&vs, path, err, sizeof err); }
        if (st == ATTN_OK) { snprintf(path, sizeof path, "%s/%s", out, TGT_VOCAB_FILE); st = attn_vocab_save(&vt, path, err, sizeof err); }
        if (st != ATTN_OK) { fprintf(stderr, "attn: translate: saving: %s\n", err[0] ? err : attn_status_string(st)); goto done; }
        printf("saved %s/%s, %s, %s\n", out, TT_MODEL_FILE, SRC_VOCAB_FILE, TGT_VOCAB_FILE);
    }
    ret = 0;
done:
    attn_adam_free(&opt);
    attn_transformer_free(&m);
    free(X); free(Y); free(Xl); free(Yl);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    attn_nmt_pairs_free(&p);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * Loading a saved model.
 */
static int load_model(const char *dir, attn_transformer *m, attn_vocab *vs, attn_vocab *vt) {
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", dir, TT_MODEL_FILE);
    attn_status st = attn_transformer_load(m, path, 1, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO)
            fprintf(stderr, "attn: translate: train a model first: attn translate train --model transformer --out %s\n", dir);
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
        attn_transformer_free(m);
        return 1;
    }
    if (vs->n != m->cfg.src_vocab || vt->n != m->cfg.tgt_vocab) {
        fprintf(stderr, "attn: translate: %s: the vocabularies (%d, %d tokens) do not match the checkpoint (%d, %d)\n",
                dir, vs->n, vt->n, m->cfg.src_vocab, m->cfg.tgt_vocab);
        attn_vocab_free(vs); attn_vocab_free(vt); attn_transformer_free(m);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * predict
 */
int tt_predict(int argc, char **argv) {
    const char *model = TT_DEFAULT_DIR, *png = NULL;
    int plain = 0, layer = 0, head = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", "folder of a model saved by `attn translate train --model transformer`"},
        {"png", CLI_STR, &png, "FILE", "also write the cross-attention of every head as a grid of PNG heatmaps"},
        {"layer", CLI_INT, &layer, "N", "decoder block whose cross-attention is shown, 1.. (0 = the last)"},
        {"head", CLI_INT, &head, "N", "show only this head, 1.. (0 = the average in the terminal, all in the PNG)"},
        {"plain", CLI_BOOL, &plain, NULL, "shaded characters instead of colors in the terminal"},
    };
    cli_cmd cmd = {"attn translate predict --model transformer [options] \"english sentence\"",
                   "Translates one sentence greedily (decoder keys and values cached) and shows the decoder's\n"
                   "cross-attention: rows are the French words produced, columns the English words read.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 1, 1};
    const char *pos[1] = {NULL};
    int np = 0;
    int rc = cli_parse(&cmd, argc, argv, pos, &np);
    if (rc >= 0) return rc;
    if (layer < 0 || head < 0) {
        fprintf(stderr, "attn: translate: --layer and --head must be >= 0\n\n");
        cli_usage(&cmd, stderr);
        return 2;
    }
    char *line = NULL;
    attn_status st = attn_nmt_preprocess(pos[0], strlen(pos[0]), &line);
    if (st == ATTN_ERR_FORMAT) { fprintf(stderr, "attn: translate: the input is not valid UTF-8\n"); return 1; }
    if (cli_fail(st, "reading the input")) return 1;
    if (!line[0]) { fprintf(stderr, "attn: translate: the input is empty\n"); free(line); return 1; }
    attn_transformer m;
    attn_vocab vs, vt;
    if (load_model(model, &m, &vs, &vt)) { free(line); return 1; }
    const int T = m.cfg.num_steps, L = m.cfg.blocks, H = m.cfg.heads;
    if (layer > L || head > H) {
        fprintf(stderr, "attn: translate: this model has %d decoder blocks and %d heads (--layer %d, --head %d)\n",
                L, H, layer, head);
        free(line); attn_vocab_free(&vs); attn_vocab_free(&vt); attn_transformer_free(&m);
        return 2;
    }
    const int l = layer ? layer - 1 : L - 1;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T * 2), src_len = 0;
    int32_t *pred = src + T;
    float *w = malloc(sizeof(float) * (size_t)L * H * T * T), *avg = malloc(sizeof(float) * (size_t)T * T);
    char out[4096];
    int n_pred = 0, ret = 0;
    st = translate_line(&m, &vs, &vt, line, out, sizeof out, src, &src_len, pred, &n_pred, w, 0);
    if (!cli_fail(st, "translating")) {
        printf("%s => %s\n", line, out);
        /* output steps (with the <eos> step when it was produced) x source tokens read */
        int rows = n_pred < T ? n_pred + 1 : T, cols = src_len < 1 ? 1 : src_len > T ? T : src_len;
        const char **rl = malloc(sizeof(char *) * (size_t)rows), **cl = malloc(sizeof(char *) * (size_t)cols);
        for (int i = 0; i < rows; i++) rl[i] = i < n_pred ? vt.tokens[pred[i]] : "<eos>";
        for (int j = 0; j < cols; j++) cl[j] = vs.tokens[src[j]];
        const float *wl = w + (size_t)l * H * T * T;            /* (H,T,T) of block l */
        for (int i = 0; i < T * T; i++) {
            double s = 0;
            for (int h = 0; h < H; h++) s += wl[(size_t)h * T * T + i];
            avg[i] = (float)(s / H);
        }
        char title[128];
        if (head) snprintf(title, sizeof title, "Cross-attention, decoder block %d, head %d", l + 1, head);
        else snprintf(title, sizeof title, "Cross-attention, decoder block %d, mean of %d heads", l + 1, H);
        attn_heatmap hm = {head ? wl + (size_t)(head - 1) * T * T : avg, rows, cols, T, rl, cl, title,
                           "French (produced)", "English (read)", 0, 1};
        st = attn_heatmap_term(&hm, stdout, !plain && isatty(STDOUT_FILENO));
        if (cli_fail(st, "drawing the heatmap")) ret = 1;
        if (png && ret == 0) {
            attn_heatmap maps[64];
            char titles[64][48];
            int n = 0;
            for (int h = head ? head - 1 : 0; h < (head ? head : H) && n < 64; h++, n++) {
                snprintf(titles[n], sizeof titles[n], "block %d, head %d", l + 1, h + 1);
                maps[n] = (attn_heatmap){wl + (size_t)h * T * T, rows, cols, T, rl, cl, titles[n],
                                         "French (produced)", "English (read)", 0, 1};
            }
            char err[1024] = "";
            int gc = n < 2 ? 1 : 2;
            st = attn_heatmap_png_grid(maps, n, gc, png, err, sizeof err);
            if (st != ATTN_OK) { fprintf(stderr, "attn: translate: %s\n", err[0] ? err : attn_status_string(st)); ret = 1; }
            else printf("wrote %s (%d heatmap%s)\n", png, n, n == 1 ? "" : "s");
        }
        free(rl); free(cl);
    } else ret = 1;
    free(src); free(w); free(avg); free(line);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    attn_transformer_free(&m);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * bleu
 */
int tt_bleu(int argc, char **argv) {
    const char *model = TT_DEFAULT_DIR, *data = "../shared/data";
    int first = 601, last = 1599, show = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", "folder of a model saved by `attn translate train --model transformer`"},
        {"data", CLI_STR, &data, "DIR", "folder holding fra-eng/fra.txt"},
        {"from", CLI_INT, &first, "LINE", "first line (0-based) of the held-out pairs"},
        {"to", CLI_INT, &last, "LINE", "last line (0-based, inclusive)"},
        {"show", CLI_INT, &show, "N", "print the first N translations"},
    };
    cli_cmd cmd = {"attn translate bleu --model transformer [options]",
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
    attn_transformer m;
    attn_vocab vs, vt;
    if (load_model(model, &m, &vs, &vt)) return 1;
    attn_nmt_pairs p;
    if (read_pairs(&p, data, first, last)) { attn_vocab_free(&vs); attn_vocab_free(&vt); attn_transformer_free(&m); return 1; }
    const int T = m.cfg.num_steps;
    int32_t *src = malloc(sizeof(int32_t) * (size_t)T * 2), src_len;
    int32_t *pred = src + T;
    double sum = 0, t0 = now_s();
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
        if (used) printf("mean bleu %.3f (%d of %d translations exact) in %.2f s\n", sum / used, exact, used, now_s() - t0);
    }
    free(src);
    attn_nmt_pairs_free(&p);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    attn_transformer_free(&m);
    return ret;
}
