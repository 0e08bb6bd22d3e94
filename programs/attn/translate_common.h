/*
 * translate_common.h — what `attn translate` does the same way for both of its models (the Bahdanau
 * seq2seq of translate_bahdanau.c, the Transformer of translate_transformer.c): reading fra.txt, vocabularies
 * and id arrays, the training loop with d2l's closing line and four sentences, saving, loading, turning
 * one sentence into French with warnings, the heatmap's labels, and the whole `bleu` subcommand.
 *
 * A model is reached through a translator: the model (heap-owned), its vocabularies, num_steps, and a
 * tr_kind, the model's table of subcommands, operations and strings. Each model file defines its
 * tr_kind and keeps what is its own: the training options and the model's creation, the checkpoint
 * loading, and `predict`'s attention plot. Uses only the public API.
 */
#ifndef ATTN_TRANSLATE_COMMON_H
#define ATTN_TRANSLATE_COMMON_H

#include "cli.h"

#include <stddef.h>
#include <stdint.h>

/* num_steps T of the training data (d2l's 10) and the vocabularies' file names in a model folder */
#define TR_NUM_STEPS 10
#define TR_SRC_VOCAB_FILE "vocab_en.txt"
#define TR_TGT_VOCAB_FILE "vocab_fr.txt"
/* the lines of fra.txt a model was trained on ("lines FIRST-LAST", 1-based), for bleu's overlap warning */
#define TR_TRAIN_LINES_FILE "train_lines.txt"

typedef struct translator translator;

typedef struct tr_kind tr_kind;

/* A subcommand for one model: argv from the subcommand's name on (--model already taken out); returns
 * the exit status. */
typedef int (*tr_command_fn)(const tr_kind *kind, int argc, char **argv);

/* One model of `attn translate`: its names, its subcommands, and the operations the shared code runs it
 * with. Each model file defines one (tr_bahdanau, tr_transformer); cmd_translate.c picks it by --model. */
struct tr_kind {
    const char *name;            /* the --model value: "bahdanau", "transformer" */
    const char *model_file;      /* the checkpoint's file name in a model folder */
    const char *default_dir;     /* --out / --dir default */
    const char *train_cmd;       /* the command that trains one, for hints */
    const char *dir_help;        /* --dir's help line */
    const char *bleu_usage;      /* `bleu`'s usage line */
    /* the subcommands: the model's own options and output, then the shared parts below */
    tr_command_fn train, predict, bleu;
    /* Loads the checkpoint at path into a new heap model for batches up to max_batch: sets tr->model,
     * tr->num_steps and the vocabulary sizes it expects (*src_n, *tgt_n); with opt non-NULL also the
     * optimizer's saved state (a checkpoint without it: ATTN_ERR_FORMAT). */
    attn_status (*load)(translator *tr, attn_adam *opt, const char *path, int max_batch, int *src_n, int *tgt_n,
                        char *err, size_t err_size);
    /* Greedy translation of src (src_len ids): pred (T) and *n_pred; weights the model's attention or NULL. */
    attn_status (*translate)(void *model, int32_t *pred, int *n_pred, float *weights, const int32_t *src,
                             int src_len);
    /* One optimizer step on a gathered batch, as attn_seq2seq_train_step_part (count 0: the whole batch here). */
    attn_status (*train_step)(void *model, attn_adam *opt, const int32_t *X, const int32_t *X_len, const int32_t *Y,
                              const int32_t *Y_len, int B, float clip, uint64_t *seed, int first, int count,
                              attn_shard_combine_fn combine, void *user, float *loss);
    attn_status (*set_shards)(void *model, int n);
    int shards;                  /* the fixed shards of a batch by default (--shards; the ranks must divide it) */
    int epochs;                  /* --epochs by default */
    /* The checkpoint (atomic) with opt (or NULL) and n_extra metadata pairs, as attn_seq2seq_save_train. */
    attn_status (*save)(const void *model, const attn_adam *opt, const char *const *keys, const char *const *vals,
                        int n_extra, const char *path, char *err, size_t err_size);
    void (*free)(void *model);   /* the model's own free (not the heap block) */
};

/* The two models (translate_bahdanau.c, translate_transformer.c). */
extern const tr_kind tr_bahdanau, tr_transformer;

struct translator {
    const tr_kind *kind;
    void *model;                 /* attn_seq2seq * or attn_transformer *, malloc'ed; NULL before creation */
    int num_steps;               /* T */
    attn_vocab vs, vt;           /* English (source), French (target) */
};

/* Frees the model (kind->free, then the block) and the vocabularies; tr is zeroed. Safe on a zeroed tr
 * and on one whose vocabularies are zeroed. */
void tr_free(translator *tr);

/* Prints "attn: translate: <err or status>" and returns 1 when st is not ATTN_OK, else 0. */
int tr_report(attn_status st, const char *err);

/* `train`'s options that both models take, and the run. A model's train fills a tr_train_args with its
 * defaults, lists TR_TRAIN_OPTS(args) first in its cli_opt array (then its own options), checks the values,
 * and calls tr_train. */
typedef struct tr_train_args {
    const char *data, *out;
    int epochs, threads, examples, batch, every;
    uint64_t seed;
    float lr;
    const char *plot;            /* --plot FILE or NULL */
    int max_steps;               /* --max-steps: stop after this many optimizer steps (0: no limit) */
    const char *precision;       /* --precision as given (each model lists the flag itself), or NULL */
    attn_dtype compute;          /* what it names: F32 unless --precision bf16 */
    int shards;                  /* --shards: the fixed parts of every batch (0: the model's default) */
    int resume;                  /* --resume: go on from the checkpoint in out */
} tr_train_args;

#define TR_TRAIN_OPTS(a)                                                                                      \
    {"data", CLI_STR, &(a).data, "DIR", "folder holding fra-eng/fra.txt (default $ATTN_DATA, else "            \
                                        CLI_DATA_DEFAULT ")"},                                                  \
    {"out", CLI_STR, &(a).out, "DIR", "folder for the checkpoint and the vocabularies"},                        \
    {"dir", CLI_STR, &(a).out, "DIR", "the same as --out"},                                                     \
    {"epochs", CLI_INT, &(a).epochs, "N", "training epochs (default 250 for bahdanau, 200 for transformer; with " \
                                          "--resume: the checkpoint's, or up to N)"},                          \
    {"seed", CLI_U64, &(a).seed, "N", "seed of the initialization, shuffling and dropout"},                     \
    {"threads", CLI_INT, &(a).threads, "N", "threads (0 = all cores)"},                                         \
    {"examples", CLI_INT, &(a).examples, "N", "read lines 1..N+1 of fra.txt (N+1 pairs, as the book's loader)"}, \
    {"batch", CLI_INT, &(a).batch, "N", "batch size"},                                                          \
    {"lr", CLI_FLOAT, &(a).lr, "X", "Adam learning rate"},                                                      \
    {"every", CLI_INT, &(a).every, "N", "print the loss every N epochs"},                                      \
    {"plot", CLI_STR, &(a).plot, "FILE", "draw the loss curve as a PNG every N epochs and at the end (the "       \
                                         "history itself is always in --out, beside the checkpoint)"},           \
    {"max-steps", CLI_INT, &(a).max_steps, "N", "stop after N optimizer steps of this run (0 = no limit), inside " \
                                                "an epoch if it comes to that; the checkpoint is saved then"},  \
    {"resume", CLI_BOOL, &(a).resume, NULL, "continue from the checkpoint in --out (inside an epoch that "        \
                                            "--max-steps cut); --batch, --lr, --seed, --examples, --shards and "   \
                                            "the model's shape come from it"},                                    \
    {"shards", CLI_INT, &(a).shards, "G", CLI_SHARDS_HELP}

/* Checks the shared options: --epochs, --batch (<= 4096), --every >= 1, --examples >= 0, --threads 0 ..
 * ATTN_MAX_THREADS, --lr > 0. Returns 0, or 2 after a message naming the flag (the caller prints its
 * usage). */
int tr_train_args_check(const tr_train_args *a);

/* Creates the model for tr's vocabularies (tr->vs.n, tr->vt.n) and tr->num_steps with the run's batch and
 * seed and the model's own options (opts): sets tr->model (heap) and *n_params, prints the "model:" line.
 * Returns 0, or 1 after a message (tr->model left NULL). */
typedef int (*tr_create_fn)(translator *tr, const tr_train_args *a, const void *opts, size_t *n_params);

/* Sets the threads, reads pairs 0..a->examples, builds the vocabularies and ids (prints d2l's data line)
 * and writes them in a->out, creates the model (with a->resume: loads it, the optimizer and the run's
 * settings and state from the checkpoint in a->out), trains it step by step printing the loss every
 * a->every epochs (and writing the history <checkpoint stem>_history.csv in a->out after every epoch:
 * epoch, loss, tokens_per_sec, seconds) and the checkpoint after every epoch and at a --max-steps cut,
 * then d2l's closing line and the timing, and translates the book's four sentences with BLEU. Under
 * mpirun: data parallel, rank 0 writing. Returns the exit status. */
int tr_train(const tr_kind *kind, const tr_train_args *a, tr_create_fn create, const void *opts);

/* Loads a saved model and its vocabularies from dir into tr (zeroed on failure). Returns 0, or 1 after a
 * message. */
int tr_load(translator *tr, const tr_kind *kind, const char *dir);

/* Preprocesses a sentence given on the command line into *line (malloc'ed). Returns 0, or 1 after a
 * message (invalid UTF-8, empty). */
int tr_read_input(const char *arg, char **line);

/* Translates a preprocessed line: src (T) and *src_len the ids read, pred (T) and *n_pred the output, out
 * the French text, weights (the model's layout) or NULL. quiet = 0 warns about unknown words and cut
 * input on stderr. */
attn_status tr_translate_line(const translator *tr, const char *line, char *out, size_t out_size, int32_t *src,
                              int32_t *src_len, int32_t *pred, int *n_pred, float *weights, int quiet);

/* predict's common part: translates line (warning about unknown words and cut input), prints
 * "line => French", and makes the heatmap's labels: *rows output steps (with the <eos> step when it was
 * produced) x *cols source tokens read, *rl and *cl malloc'ed (the strings are tr's vocabularies').
 * weights: the model's attention, (T,T) or (L,H,T,T). ids (2T) or NULL: the source ids read (T, padded) then
 * the ids produced; lens (2) or NULL: the source's valid length and the number produced. Returns 0, or 1
 * after a message. */
int tr_predict_line(const translator *tr, const char *line, float *weights, int *rows, int *cols, const char ***rl,
                    const char ***cl, int32_t *ids, int *lens);

/* The model a folder holds, from the checkpoint found there and its metadata "model" (a Transformer's
 * says "transformer"; the Bahdanau model's has none): &tr_bahdanau, &tr_transformer, or NULL when the
 * folder holds no checkpoint of either. */
const tr_kind *tr_detect(const char *dir);

/* predict's text: the argument (arg; "-" for standard input) or --file FILE; preprocessed into *line.
 * Returns 0, 1 after a read error, 2 after a usage error. */
int tr_predict_input(const cli_cmd *cmd, const char *arg, const char *file, char **line);

/* `attn translate bleu` for a model kind (both models' bleu); argv from the subcommand's name on. */
int tr_bleu(const tr_kind *kind, int argc, char **argv);

#endif /* ATTN_TRANSLATE_COMMON_H */
