/*
 * translate_transformer.c — the Transformer side of `attn translate`, reached with
 * `--model transformer`:
 *   train    the book's 601 pairs, d2l's Transformer (2 blocks, 32 hidden, 4 heads, feed-forward 64,
 *            dropout 0.1), Adam lr 0.005, 200 epochs, batch 64; prints the loss, d2l's closing line with
 *            tokens/sec, the four sentences with BLEU; the checkpoint is saved after every epoch
 *            (--resume goes on from it), the vocabularies before the first.
 *   predict  one sentence, greedy with the key/value cache; the terminal shows the cross-attention of a
 *            decoder block averaged over its heads, --png FILE draws every head of it as a grid.
 *   bleu     mean BLEU (k = 2) on held-out pairs (lines 602-1600, 1-based) whose words are all in the vocabularies,
 *            as the Bahdanau model's command does.
 * cmd_translate.c dispatches to this file's tr_transformer table. The text pipeline (pairs, vocabularies,
 * BLEU) is the library's (attn/seq2seq.h); what this command shares with the Bahdanau model's (data,
 * training loop, loading, bleu) is in translate_common.c. Uses only the public API.
 */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "translate_common.h"

#include <stdlib.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------------
 * The model behind the translator (translate_common.h).
 */
static attn_status tf_load(translator *tr, attn_adam *opt, const char *path, int max_batch, int *src_n, int *tgt_n,
                           char *err, size_t err_size) {
    attn_transformer *m = malloc(sizeof *m);
    if (!m) return ATTN_ERR_NOMEM;
    attn_status st = attn_transformer_load_train(m, opt, NULL, path, max_batch, err, err_size);
    if (st != ATTN_OK) { free(m); return st; }
    tr->model = m;
    tr->num_steps = m->cfg.num_steps;
    *src_n = m->cfg.src_vocab;
    *tgt_n = m->cfg.tgt_vocab;
    return ATTN_OK;
}

/* weights (L,H,T,T): every decoder block's cross-attention; greedy with the key/value cache */
static attn_status tf_translate(void *m, int32_t *pred, int *n_pred, float *weights, const int32_t *src, int src_len) {
    return attn_transformer_translate(m, pred, n_pred, weights, NULL, src, src_len, 1);
}

static attn_status tf_train_step(void *m, attn_adam *opt, const int32_t *X, const int32_t *X_len, const int32_t *Y,
                                 const int32_t *Y_len, int B, float clip, uint64_t *seed, int first, int count,
                                 attn_shard_combine_fn combine, void *user, float *loss) {
    return attn_transformer_train_step_part(m, opt, X, X_len, Y, Y_len, B, clip, seed, first, count, combine, user,
                                            loss);
}

static attn_status tf_set_shards(void *m, int n) { return attn_transformer_set_shards(m, n); }

static attn_status tf_save(const void *m, const attn_adam *opt, const char *const *keys, const char *const *vals,
                           int n_extra, const char *path, char *err, size_t err_size) {
    return attn_transformer_save_train(m, opt, keys, vals, n_extra, path, err, err_size);
}

static void tf_free(void *m) { attn_transformer_free(m); }

/* Folder the checkpoint and vocabularies go to by default, and the checkpoint's name in it. */
#define TF_DEFAULT_DIR "fra_transformer"
#define TF_MODEL_FILE "transformer.safetensors"

/* ---------------------------------------------------------------------------------------------------
 * train
 */
/* The Transformer's own training options. */
typedef struct tf_opts {
    int hidden, ffn, heads, blocks;
    float dropout;
} tf_opts;

static int tf_create(translator *tr, const tr_train_args *a, const void *opts, size_t *n_params) {
    const tf_opts *o = opts;
    attn_transformer *m = malloc(sizeof *m);
    attn_transformer_config c = {tr->vs.n, tr->vt.n, o->hidden, o->ffn, o->heads, o->blocks, o->dropout,
                                 tr->num_steps, a->batch, a->compute};
    if (!m) { fprintf(stderr, "attn: translate: out of memory\n"); return 1; }
    if (cli_fail(attn_transformer_init(m, NULL, &c, a->seed), "creating the model")) { free(m); return 1; }
    if (cli_fail(attn_transformer_set_shards(m, a->shards), "--shards")) { attn_transformer_free(m); free(m); return 1; }
    tr->model = m;
    *n_params = m->n_params;
    const attn_dtype runs = cli_sdpa_runs(a->compute, a->batch, o->heads, tr->num_steps, o->hidden / o->heads, 0);
    printf("model: Transformer, %d+%d blocks, width %d, %d heads, feed-forward %d, dropout %g: %zu parameters; "
           "%d epochs, batch %d, Adam lr %g, %d thread%s, attention compute %s\n", o->blocks, o->blocks, o->hidden,
           o->heads, o->ffn, (double)o->dropout, m->n_params, a->epochs, a->batch, (double)a->lr,
           attn_get_num_threads(), attn_get_num_threads() == 1 ? "" : "s", cli_compute_word(a->compute, runs));
    return 0;
}

static int tf_train(const tr_kind *kind, int argc, char **argv) {
    tr_train_args a = {NULL, kind->default_dir, 0, 0, 600, 64, 10, 1, 0.005f, NULL, 0, NULL, ATTN_DTYPE_F32, 0, 0};
    tf_opts o = {32, 64, 4, 2, 0.1f};
    cli_opt opts[] = {
        TR_TRAIN_OPTS(a),
        {"hidden", CLI_INT, &o.hidden, "N", "model width"},
        {"ffn", CLI_INT, &o.ffn, "N", "hidden units of the position-wise feed-forward"},
        {"heads", CLI_INT, &o.heads, "N", "attention heads (must divide --hidden)"},
        {"blocks", CLI_INT, &o.blocks, "N", "encoder and decoder blocks"},
        {"dropout", CLI_FLOAT, &o.dropout, "X", "dropout"},
        {"precision", CLI_STR, &a.precision, "NAME", CLI_PRECISION_HELP},
    };
    cli_cmd cmd = {"attn translate train --model transformer [options]",
                   "Trains the d2l English-French Transformer (2 encoder and 2 decoder blocks, width 32, 4 heads,\n"
                   "feed-forward 64, dropout 0.1, Adam, gradient clipping 1, batch 64), then translates the book's\n"
                   "four sentences. The model is saved in --out after every epoch (and when --max-steps stops\n"
                   "the run), with the optimizer's state: --resume goes on from there.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if ((rc = cli_precision("translate", &cmd, a.precision, &a.compute))) return rc;
    int bad = tr_train_args_check(&a) || cli_check_int("translate", "--hidden", o.hidden, 1, 0) ||
              cli_check_int("translate", "--ffn", o.ffn, 1, 0) || cli_check_int("translate", "--heads", o.heads, 1, o.hidden) ||
              cli_check_int("translate", "--blocks", o.blocks, 1, ATTN_TF_MAX_BLOCKS);
    if (!bad && o.hidden % o.heads != 0) {
        fprintf(stderr, "attn: translate: --heads %d: must divide --hidden %d\n", o.heads, o.hidden);
        bad = 1;
    }
    if (!bad && !(o.dropout >= 0 && o.dropout < 1)) {
        fprintf(stderr, "attn: translate: --dropout %g: must be in [0, 1)\n", (double)o.dropout);
        bad = 1;
    }
    if (bad) {
        fputc('\n', stderr);
        cli_usage(&cmd, stderr);
        return 2;
    }
    return tr_train(kind, &a, tf_create, &o);
}

/* ---------------------------------------------------------------------------------------------------
 * predict
 */
/* --png and --html: every attention of the model on this sentence: the encoder's self-attention (English
 * over English), the decoder's self-attention (each French word over the words before it, <bos> first) and
 * the cross-attention (French over English), each block and head. The PNG holds one row of heads per
 * block and kind, narrowed by layer and head (1-based, 0 = all); the explorer page holds them all.
 * Returns 0, or 1 after a message. */
static int tf_draw_all(translator *tr, const char *png, const char *html, const char *line, const int32_t *ids,
                       const int *lens, int rows, int cols, const char **rl, const char **cl, int layer, int head,
                       int annotate, attn_palette palette) {
    attn_transformer *m = tr->model;
    const int T = tr->num_steps, L = m->cfg.blocks, H = m->cfg.heads, Tq = rows;
    const size_t LHTT = (size_t)L * H * T * T;
    float *enc = malloc(sizeof(float) * LHTT * 3), *dec = enc + LHTT, *cross = enc + 2 * LHTT;
    const int l0 = layer ? layer - 1 : 0, l1 = layer ? layer : L, h0 = head ? head - 1 : 0, h1 = head ? head : H;
    const int n_all = 3 * L * (H + 1);      /* every head, and per block the mean of its heads (head 0) */
    const size_t LTT = (size_t)L * T * T;
    float *mean = malloc(sizeof(float) * LTT * 3);                          /* (3,L,T,T) */
    attn_explorer_map *all = calloc((size_t)n_all, sizeof *all);   /* the fields not set here stay zero */
    attn_heatmap *maps = malloc(sizeof *maps * (size_t)n_all);
    char (*titles)[64] = malloc(sizeof *titles * (size_t)n_all);
    const char **dl = malloc(sizeof(char *) * (size_t)Tq);
    int ret = 1, n = 0, i = 0;
    if (!enc || !mean || !all || !maps || !titles || !dl) { fprintf(stderr, "attn: translate: out of memory\n"); goto done; }
    attn_status st = attn_transformer_attention(m, enc, dec, cross, ids, lens[0], ids + T, lens[1]);
    if (cli_fail(st, "the model's attention")) goto done;
    for (int q = 0; q < Tq; q++) dl[q] = q == 0 ? "<bos>" : rl[q - 1];       /* the decoder's inputs */
    static const char *const kinds[3] = {"encoder self-attention", "decoder self-attention", "cross-attention"};
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < L; l++)
            for (int h = -1; h < H; h++, i++) {     /* h = -1: the mean of the block's heads */
                /* this kind's maps: (L,H,T,T), (L,H,Tq,Tq) or (L,H,Tq,T); ld their row stride */
                const int ld = k == 1 ? Tq : T;
                const size_t per = (size_t)(k == 0 ? T : Tq) * ld;
                const float *src = (k == 0 ? enc : k == 1 ? dec : cross) + (size_t)l * H * per;
                const float *v = src + (size_t)(h < 0 ? 0 : h) * per;
                if (h < 0) {
                    float *mv = mean + ((size_t)k * L + l) * T * T;
                    for (size_t e = 0; e < per; e++) {
                        double acc = 0;
                        for (int g = 0; g < H; g++) acc += src[(size_t)g * per + e];
                        mv[e] = (float)(acc / H);
                    }
                    v = mv;
                    snprintf(titles[i], sizeof titles[i], "%s, block %d, mean of %d heads", kinds[k], l + 1, H);
                } else {
                    snprintf(titles[i], sizeof titles[i], "%s, block %d, head %d", kinds[k], l + 1, h + 1);
                }
                attn_heatmap *x = &all[i].map;
                if (k == 0)
                    *x = (attn_heatmap){v, cols, cols, ld, cl, cl, titles[i], "English", "English (keys)", 0, 1,
                                        annotate, palette};
                else if (k == 1)
                    *x = (attn_heatmap){v, rows, Tq, ld, rl, dl, titles[i], "French (produced)",
                                        "French (read so far)", 0, 1, annotate, palette};
                else
                    *x = (attn_heatmap){v, rows, cols, ld, rl, cl, titles[i], "French (produced)", "English (read)",
                                        0, 1, annotate, palette};
                all[i].group = kinds[k];
                all[i].layer = l + 1;
                all[i].head = h + 1;
                if (h >= 0 && l >= l0 && l < l1 && h >= h0 && h < h1) maps[n++] = *x;
            }
    char err[1024] = "";
    if (png) {
        if (tr_report(attn_heatmap_png_grid(maps, n, h1 - h0, png, err, sizeof err), err)) goto done;
        printf("wrote %s (%d heatmaps: encoder self-attention, decoder self-attention and cross-attention, "
               "%d block%s x %d head%s)\n", png, n, l1 - l0, l1 - l0 == 1 ? "" : "s", h1 - h0, h1 - h0 == 1 ? "" : "s");
    }
    if (html) {
        char title[512];
        snprintf(title, sizeof title, "Transformer attention: %.400s", line);
        if (cli_write_html("translate", all, n_all, title, "Rows: the French words produced (or, for the encoder, "
                           "the English words); columns: the words attended to.", html))
            goto done;
    }
    ret = 0;
done:
    free(enc); free(mean); free(all); free(maps); free(titles); free(dl);
    return ret;
}

static int tf_predict(const tr_kind *kind, int argc, char **argv) {
    const char *model = kind->default_dir, *png = NULL, *file = NULL, *weights_out = NULL, *html = NULL;
    const char *palette_name = NULL;
    attn_palette palette;
    int plain = 0, layer = 0, head = 0, annotate = 0;
    cli_opt opts[] = {
        {"dir", CLI_STR, &model, "DIR", kind->dir_help},
        {"out", CLI_STR, &model, "DIR", "the same as --dir"},
        {"file", CLI_STR, &file, "FILE", "read the sentence from FILE (- for standard input) instead of the argument"},
        {"png", CLI_STR, &png, "FILE", "also draw, as one PNG, the encoder's self-attention, the decoder's "
                                      "self-attention and the cross-attention of every block (or --layer) and head "
                                      "(or --head)"},
        {"weights-out", CLI_STR, &weights_out, "FILE", "also write the cross-attention of every head (or --head) as "
                                                       "numbers with the words: .npy (words in FILE's .labels.json), "
                                                       ".csv or .json"},
        {"html", CLI_STR, &html, "FILE", "also write the explorer: one self-contained page with every attention "
                                         "(encoder self, decoder self, cross; each block, each head and their "
                                         "mean) where pointing "
                                         "at a word shows whom it attends to, with the weights"},
        {"layer", CLI_INT, &layer, "N", "decoder block whose cross-attention is shown, 1.. (0 = the last)"},
        {"head", CLI_INT, &head, "N", "show only this head, 1.. (0 = the average in the terminal, all in the PNG)"},
        {"annotate", CLI_BOOL, &annotate, NULL, "write each weight in its cell in the PNG"},
        {"palette", CLI_STR, &palette_name, "NAME", CLI_PALETTE_HELP},
        {"no-color", CLI_BOOL, &plain, NULL, "shaded characters instead of 24-bit colors"},
    };
    cli_cmd cmd = {"attn translate predict --model transformer [options] \"english sentence\" | -   (or --file FILE)",
                   "Translates one sentence greedily (decoder keys and values cached) and shows the decoder's\n"
                   "cross-attention: rows are the French words produced, columns the English words read.",
                   opts, (int)(sizeof opts / sizeof opts[0]), 0, 1};
    const char *pos[1] = {NULL};
    int np = 0;
    int rc = cli_parse(&cmd, argc, argv, pos, &np);
    if (rc >= 0) return rc;
    if (cli_check_int("translate", "--layer", layer, 0, -1) || cli_check_int("translate", "--head", head, 0, -1)) {
        fputc('\n', stderr);
        cli_usage(&cmd, stderr);
        return 2;
    }
    if ((rc = cli_palette("translate", &cmd, palette_name, &palette))) return rc;
    if (png && cli_check_out_file("translate", "--png", png)) return 1;
    if (html && cli_check_out_file("translate", "--html", html)) return 1;
    if (weights_out && (rc = cli_check_weights_out("translate", &cmd, weights_out))) return rc;
    char *line;
    if ((rc = tr_predict_input(&cmd, np ? pos[0] : NULL, file, &line))) return rc;
    translator tr;
    if (tr_load(&tr, kind, model)) { free(line); return 1; }
    const attn_transformer *m = tr.model;
    const int T = tr.num_steps, L = m->cfg.blocks, H = m->cfg.heads;
    if (layer > L || head > H) {
        fprintf(stderr, "attn: translate: this model has %d decoder blocks and %d heads (--layer %d, --head %d)\n",
                L, H, layer, head);
        free(line); tr_free(&tr);
        return 2;
    }
    const int l = layer ? layer - 1 : L - 1;
    float *w = malloc(sizeof(float) * (size_t)L * H * T * T), *avg = malloc(sizeof(float) * (size_t)T * T);
    int ret = 1, rows, cols, lens[2];
    int32_t ids[2 * TR_NUM_STEPS];
    const char **rl = NULL, **cl = NULL;
    if (!w || !avg) { fprintf(stderr, "attn: translate: out of memory\n"); goto done; }
    if (tr_predict_line(&tr, line, w, &rows, &cols, &rl, &cl, ids, lens)) goto done;
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
                       "French (produced)", "English (read)", 0, 1, 0, palette};
    if (cli_fail(attn_heatmap_term(&hm, stdout, cli_use_color(plain)), "drawing the heatmap")) goto done;
    if (weights_out) {
        attn_heatmap maps[64];
        char titles[64][48];
        int n = 0;
        for (int h = head ? head - 1 : 0; h < (head ? head : H) && n < 64; h++, n++) {
            snprintf(titles[n], sizeof titles[n], "block %d, head %d", l + 1, h + 1);
            maps[n] = (attn_heatmap){wl + (size_t)h * T * T, rows, cols, T, rl, cl, titles[n],
                                     "French (produced)", "English (read)", 0, 1, annotate, palette};
        }
        if (cli_write_weights("translate", maps, n, weights_out)) goto done;
    }
    if ((png || html) && tf_draw_all(&tr, png, html, line, ids, lens, rows, cols, rl, cl, layer, head, annotate, palette))
        goto done;
    ret = 0;
done:
    free(rl); free(cl);
    free(w); free(avg); free(line);
    tr_free(&tr);
    return ret;
}

/* ---------------------------------------------------------------------------------------------------
 * The table cmd_translate.c dispatches through.
 */
const tr_kind tr_transformer = {
    .name = "transformer",
    .model_file = TF_MODEL_FILE,
    .default_dir = TF_DEFAULT_DIR,
    .train_cmd = "attn translate train --model transformer",
    .dir_help = "folder of a model saved by `attn translate train --model transformer`",
    .bleu_usage = "attn translate bleu --model transformer [options]",
    .train = tf_train,
    .predict = tf_predict,
    .bleu = tr_bleu,
    .load = tf_load,
    .translate = tf_translate,
    .train_step = tf_train_step,
    .set_shards = tf_set_shards,
    .epochs = 200,
    .shards = ATTN_TF_SHARDS,
    .save = tf_save,
    .free = tf_free,
};
