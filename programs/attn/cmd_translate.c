/*
 * cmd_translate.c — `attn translate train|predict|bleu [--model bahdanau|transformer]`: the d2l book's
 * English→French translators, with Bahdanau attention (translate_bahdanau.c) or the
 * Transformer (translate_transformer.c).
 *
 *   train    reads the first pairs of fra.txt (lines 1-601 by default, the book's 601 pairs), builds the
 *            vocabularies (written to --out first), trains, saving the checkpoint (with the optimizer's
 *            and the run's state) after every epoch and when --max-steps cuts one, prints d2l's closing
 *            line and the four sentences; --resume goes on from the checkpoint with the same bits.
 *   predict  translates one English sentence with a saved model and shows the attention (terminal
 *            heatmap; --png FILE for an image).
 *   bleu     mean BLEU (k = 2) on held-out pairs (lines 602-1600 by default, 1-based) whose words are all in the
 *            vocabularies.
 * This file only picks the model (its tr_kind table) and the subcommand; what both models share is in
 * translate_common.c. Uses only the public API.
 */
#include "cli.h"
#include "translate_common.h"

#include <stdlib.h>
#include <string.h>

static const tr_kind *const models[] = {&tr_bahdanau, &tr_transformer};
#define N_MODELS (int)(sizeof models / sizeof models[0])

/* The subcommands; subcommand i runs the model's entry i of command_of. */
static const char *const subcommands[] = {"train", "predict", "bleu"};
#define N_SUBCOMMANDS (int)(sizeof subcommands / sizeof subcommands[0])

static tr_command_fn command_of(const tr_kind *k, int sub) {
    const tr_command_fn fns[N_SUBCOMMANDS] = {k->train, k->predict, k->bleu};
    return fns[sub];
}

static const char usage[] =
    "usage: attn translate <train|predict|bleu> [--model bahdanau|transformer] [options]\n"
    "  train     train the English-French translator (default: the GRU encoder-decoder with Bahdanau\n"
    "            attention; --model transformer: the Transformer)\n"
    "  predict   translate a sentence and show the attention\n"
    "  bleu      mean BLEU on held-out pairs\n"
    "predict and bleu read which model a folder holds from its checkpoint: --model is needed only for train\n"
    "run `attn translate <command> --help` for the options\n";

/* Takes --model NAME (or --model=NAME) out of argv[1..argc): *model gets NAME (unchanged when absent), rest
 * the other arguments (argc of room plus a NULL), *n their number; *dir the value of the last --dir or
 * --out (unchanged when absent). Returns 0, or 2 after a message. */
static int take_model(int argc, char **argv, const char **model, char **rest, int *n, const char **dir) {
    *n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc) rest[(*n)++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--model") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "attn: translate: option '--model' needs a value\n\n%s", usage);
                return 2;
            }
            *model = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--model=", 8) == 0) {
            *model = argv[i] + 8;
            continue;
        }
        if ((strcmp(argv[i], "--dir") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) *dir = argv[i + 1];
        if (strncmp(argv[i], "--dir=", 6) == 0 || strncmp(argv[i], "--out=", 6) == 0) *dir = argv[i] + 6;
        rest[(*n)++] = argv[i];
    }
    rest[*n] = NULL;
    return 0;
}

int cmd_translate(int argc, char **argv) {
    if (argc < 2) { fputs(usage, stderr); return 2; }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) { fputs(usage, stdout); return 0; }
    int sub = 0;
    while (sub < N_SUBCOMMANDS && strcmp(argv[1], subcommands[sub]) != 0) sub++;
    if (sub == N_SUBCOMMANDS) {
        fprintf(stderr, "attn: translate: unknown command '%s'\n\n", argv[1]);
        fputs(usage, stderr);
        return 2;
    }
    /* the subcommand gets argv from its name on, without --model */
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!rest) { fprintf(stderr, "attn: translate: out of memory\n"); return 1; }
    const char *name = NULL, *dir = NULL;
    int n = 0, rc = take_model(argc, argv, &name, rest, &n, &dir);
    if (rc == 0 && !name) {
        /* predict and bleu: the folder says which model it holds (--model need not be repeated) */
        const tr_kind *held = sub != 0 ? tr_detect(dir ? dir : tr_bahdanau.default_dir) : NULL;
        name = held ? held->name : tr_bahdanau.name;
    }
    if (rc == 0) {
        const tr_kind *kind = NULL;
        for (int i = 0; i < N_MODELS; i++)
            if (strcmp(name, models[i]->name) == 0) kind = models[i];
        if (kind) {
            rc = command_of(kind, sub)(kind, n, rest);
        } else {
            fprintf(stderr, "attn: translate: unknown --model '%s' (bahdanau or transformer)\n\n%s", name, usage);
            rc = 2;
        }
    }
    free(rest);
    return rc;
}
