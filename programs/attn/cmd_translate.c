/*
 * cmd_translate.c — `attn translate train|predict|bleu [--model bahdanau|transformer]`: the d2l book's
 * English→French translators, with Bahdanau attention (SPEC §4.D, translate_bahdanau.c) or the
 * Transformer (SPEC §4.E, translate_transformer.c).
 *
 *   train    reads the first pairs of fra.txt (lines 0..600 by default, the book's 601 pairs), builds the
 *            vocabularies, trains, prints d2l's closing line and the four sentences, and saves the
 *            checkpoint and vocabularies in --out.
 *   predict  translates one English sentence with a saved model and shows the attention (terminal
 *            heatmap; --png FILE for an image).
 *   bleu     mean BLEU (k = 2) on held-out pairs (lines 601..1599 by default) whose words are all in the
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
    "            attention, SPEC 4.D; --model transformer: the Transformer, SPEC 4.E)\n"
    "  predict   translate a sentence and show the attention\n"
    "  bleu      mean BLEU on held-out pairs\n"
    "run `attn translate <command> --help` for the options\n";

/* Takes --model NAME (or --model=NAME) out of argv[1..argc): *model gets NAME (unchanged when absent), rest
 * the other arguments (argc of room plus a NULL), *n their number. Returns 0, or 2 after a message. */
static int take_model(int argc, char **argv, const char **model, char **rest, int *n) {
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
    const char *name = tr_bahdanau.name;
    int n = 0, rc = take_model(argc, argv, &name, rest, &n);
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
