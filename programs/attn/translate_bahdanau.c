/*
 * translate_bahdanau.c — the Bahdanau side of `attn translate`, `--model bahdanau` (the
 * default): the d2l book's English→French GRU encoder-decoder with additive attention.
 *
 *   train    reads the first pairs of fra.txt (lines 1-601 by default, the book's 601 pairs), builds the
 *            vocabularies, trains 250 epochs (a checkpoint in --out after every epoch; --resume goes on
 *            from it), prints d2l's closing line and the four sentences.
 *   predict  translates one English sentence with a saved model and shows the attention (terminal
 *            heatmap; --png FILE for an image).
 *   bleu     mean BLEU (k = 2) on held-out pairs (lines 602-1600 by default, 1-based) whose words are all in the
 *            vocabularies.
 * cmd_translate.c dispatches to this file's tr_bahdanau table (or translate_transformer.c's); what both
 * models share is in translate_common.c. Uses only the public API.
 */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "translate_common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL_FILE "seq2seq.safetensors"

/* ---------------------------------------------------------------------------------------------------
 * The model behind the translator (translate_common.h).
 */
static attn_status s2s_load(translator *tr, attn_adam *opt, const char *path, int max_batch, int *src_n, int *tgt_n,
                            char *err, size_t err_size) {
    attn_seq2seq *m = malloc(sizeof *m);
    if (!m) return ATTN_ERR_NOMEM;
    attn_status st = attn_seq2seq_load_train(m, opt, NULL, path, max_batch, err, err_size);
    if (st != ATTN_OK) { free(m); return st; }
    tr->model = m;
    tr->num_steps = m->cfg.num_steps;
    *src_n = m->cfg.src_vocab;
    *tgt_n = m->cfg.tgt_vocab;
    return ATTN_OK;
}

static attn_status s2s_translate(void *m, int32_t *pred, int *n_pred, float *weights, const int32_t *src, int src_len) {
    return attn_seq2seq_translate(m, pred, n_pred, weights, src, src_len);     /* weights (T,T) */
}

static attn_status s2s_train_step(void *m, attn_adam *opt, const int32_t *X, const int32_t *X_len, const int32_t *Y,
                                  const int32_t *Y_len, int B, float clip, uint64_t *seed, int first, int count,
                                  attn_shard_combine_fn combine, void *user, float *loss) {
    return attn_seq2seq_train_step_part(m, opt, X, X_len, Y, Y_len, B, clip, seed, first, count, combine, user, loss);
}

static attn_status s2s_set_shards(void *m, int n) { return attn_seq2seq_set_shards(m, n); }

static attn_status s2s_save(const void *m, const attn_adam *opt, const char *const *keys, const char *const *vals,
                            int n_extra, const char *path, char *err, size_t err_size) {
    return attn_seq2seq_save_train(m, opt, keys, vals, n_extra, path, err, err_size);
}

static void s2s_free(void *m) { attn_seq2seq_free(m); }


/* ---------------------------------------------------------------------------------------------------
 * train
 */
static int s2s_create(translator *tr, const tr_train_args *a, const void *opts, size_t *n_params) {
    attn_seq2seq *m = malloc(sizeof *m);
    attn_seq2seq_config c = {tr->vs.n, tr->vt.n, 32, 32, 2, 0.1f, tr->num_steps, a->batch, a->compute};
    if (!m) { fprintf(stderr, "attn: translate: out of memory\n"); return 1; }
    if (cli_fail(attn_seq2seq_init(m, NULL, &c, a->seed), "creating the model")) { free(m); return 1; }
    if (cli_fail(attn_seq2seq_set_shards(m, a->shards), "--shards")) { attn_seq2seq_free(m); free(m); return 1; }
    tr->model = m;
    *n_params = m->n_params;
    attn_additive_desc d;                 /* a decoder step's attention, to ask what it runs in */
    attn_dtype runs = ATTN_DTYPE_F32;
    if (attn_additive_desc_init(&d, a->batch, 1, tr->num_steps, 32, 32, 32, 32) == ATTN_OK) {
        d.compute = a->compute;
        if (attn_additive_compute_type(NULL, &d, &runs) != ATTN_OK) runs = ATTN_DTYPE_F32;
    }
    printf("model: embedding 32, 2-layer GRU 32, additive attention 32, dropout 0.1: %zu parameters; "
           "%d epochs, batch %d, Adam lr %g, %d thread%s, attention compute %s\n", m->n_params, a->epochs, a->batch,
           (double)a->lr, attn_get_num_threads(), attn_get_num_threads() == 1 ? "" : "s",
           cli_compute_word(a->compute, runs));
    return 0;
}

static int s2s_train(const tr_kind *kind, int argc, char **argv) {
    tr_train_args a = {NULL, kind->default_dir, 0, 0, 600, 64, 10, 1, 0.005f, NULL, 0, NULL, ATTN_DTYPE_F32, 0, 0};
    cli_opt opts[] = {
        TR_TRAIN_OPTS(a),
        {"precision", CLI_STR, &a.precision, "NAME", "the additive attention's compute: f32, or bf16 (w_v against "
                                                     "the tanh values and the weights against V in bf16 on a CPU with "
                                                     "AMX or AVX512-BF16, fp32 sums; the projections W_q, W_k and the "
                                                     "rest stay fp32; saved in the checkpoint)"},
    };
    cli_cmd cmd = {"attn translate train [--model bahdanau|transformer] [options]",
                   "Trains the d2l English-French seq2seq model with Bahdanau attention (embedding 32, 2-layer\n"
                   "GRU 32, dropout 0.1, Adam, gradient clipping 1, batch 64), then translates the book's four\n"
                   "sentences. The model is saved in --out after every epoch (and when --max-steps stops the\n"
                   "run), with the optimizer's state: --resume goes on from there.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if ((rc = cli_precision("translate", &cmd, a.precision, &a.compute))) return rc;
    if (tr_train_args_check(&a)) {
        fputc('\n', stderr);
        cli_usage(&cmd, stderr);
        return 2;
    }
    return tr_train(kind, &a, s2s_create, NULL);
}

/* ---------------------------------------------------------------------------------------------------
 * predict
 */
static int s2s_predict(const tr_kind *kind, int argc, char **argv) {
    const char *model = kind->default_dir, *png = NULL, *file = NULL, *weights_out = NULL, *html = NULL;
    const char *palette_name = NULL;
    attn_palette palette;
    int plain = 0, annotate = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", kind->dir_help},
        {"out", CLI_STR, &model, "DIR", "the same as --dir"},
        {"file", CLI_STR, &file, "FILE", "read the sentence from FILE (- for standard input) instead of the argument"},
        {"png", CLI_STR, &png, "FILE", "also write the attention as a PNG heatmap"},
        {"weights-out", CLI_STR, &weights_out, "FILE", "also write the attention as numbers with the words: .npy "
                                                       "(words in FILE's .labels.json), .csv or .json"},
        {"html", CLI_STR, &html, "FILE", "also write the explorer: one self-contained page where pointing at a word "
                                         "shows whom it attends to, with the weights"},
        {"annotate", CLI_BOOL, &annotate, NULL, "write each weight in its cell in the PNG"},
        {"palette", CLI_STR, &palette_name, "NAME", CLI_PALETTE_HELP},
        {"no-color", CLI_BOOL, &plain, NULL, "shaded characters instead of 24-bit colors"},
    };
    cli_cmd cmd = {"attn translate predict [--model bahdanau|transformer] [options] \"english sentence\" | -   (or --file FILE)",
                   "Translates one sentence greedily and shows the attention weights: rows are the French\n"
                   "words produced, columns the English words read.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 1};
    const char *pos[1] = {NULL};
    int np = 0;
    int rc = cli_parse(&cmd, argc, argv, pos, &np);
    if (rc >= 0) return rc;
    if ((rc = cli_palette("translate", &cmd, palette_name, &palette))) return rc;
    if (png && cli_check_out_file("translate", "--png", png)) return 1;
    if (html && cli_check_out_file("translate", "--html", html)) return 1;
    if (weights_out && (rc = cli_check_weights_out("translate", &cmd, weights_out))) return rc;
    char *line;
    if ((rc = tr_predict_input(&cmd, np ? pos[0] : NULL, file, &line))) return rc;
    translator tr;
    if (tr_load(&tr, kind, model)) { free(line); return 1; }
    const int T = tr.num_steps;
    float *w = malloc(sizeof(float) * (size_t)T * T);     /* (T,T) */
    int ret = 1, rows, cols;
    const char **rl = NULL, **cl = NULL;
    if (!w) { fprintf(stderr, "attn: translate: out of memory\n"); goto done; }
    if (tr_predict_line(&tr, line, w, &rows, &cols, &rl, &cl, NULL, NULL))
        goto done;
    attn_heatmap h = {w, rows, cols, T, rl, cl, "Attention weights", "French (produced)", "English (read)", 0, 1, annotate,
                      palette};
    if (cli_fail(attn_heatmap_term(&h, stdout, cli_use_color(plain)), "drawing the heatmap")) goto done;
    if (png) {
        char err[1024] = "";
        if (tr_report(attn_heatmap_png(&h, png, err, sizeof err), err)) goto done;
        printf("wrote %s\n", png);
    }
    if (weights_out && cli_write_weights("translate", &h, 1, weights_out)) goto done;
    if (html) {
        char title[512];
        snprintf(title, sizeof title, "Bahdanau attention: %.400s", line);
        attn_explorer_map em = {.map = h, .group = "additive attention"};
        if (cli_write_html("translate", &em, 1, title, "Rows: the French words produced; columns: the English "
                           "words read.", html))
            goto done;
    }
    ret = 0;
done:
    free(rl); free(cl);
    free(w); free(line);
    tr_free(&tr);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * The table cmd_translate.c dispatches through.
 */
const tr_kind tr_bahdanau = {
    .name = "bahdanau",
    .model_file = MODEL_FILE,
    .default_dir = "fra_model",
    .train_cmd = "attn translate train",
    .dir_help = "folder of a model saved by `attn translate train`",
    .bleu_usage = "attn translate bleu [--model bahdanau|transformer] [options]",
    .train = s2s_train,
    .predict = s2s_predict,
    .bleu = tr_bleu,
    .load = s2s_load,
    .translate = s2s_translate,
    .train_step = s2s_train_step,
    .set_shards = s2s_set_shards,
    .epochs = 250,
    .shards = ATTN_SEQ2SEQ_SHARDS,
    .save = s2s_save,
    .free = s2s_free,
};
