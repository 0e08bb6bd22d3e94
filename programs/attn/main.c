/*
 * main.c — the `attn` program: dispatches to its subcommands.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
} command;

static const command commands[] = {
    {"demo",      cmd_demo,      "shapes tour: dot-product, additive and multi-head attention on random inputs"},
    {"score",     cmd_score,     "the scoring walk-through: stable softmax, weights and context, step by step"},
    {"bench",     cmd_bench,     "time the fused attention kernels against the reference kernels"},
    {"imdb",      cmd_imdb,      "IMDB sentiment with self-attention: train, eval, predict"},
    {"translate", cmd_translate, "English-French translation with Bahdanau attention: train, predict, bleu"},
    {"vision",    cmd_vision,    "a Vision Transformer on Fashion-MNIST: train, eval, predict (attention over the image)"},
    {"caption",   cmd_caption,   "image to text on Fashion-MNIST strips: train, eval, predict (each word's cross-attention)"},
    {"detect",    cmd_detect,    "DETR-style detection on Fashion-MNIST canvases: train, eval, predict (each query's cross-attention)"},
    {"plot",      cmd_plot,      "draw a training history (the CSV beside a checkpoint) as curves"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
    fprintf(out, "usage: attn <command> [options]\n\n"
                 "attn %s: neural attention mechanisms in C, forward and backward.\n\ncommands:\n",
            attn_version());
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].about);
    fprintf(out, "\n'attn <command> --help' describes a command's options.\n"
                 "Environment:\n"
                 "  ATTN_ISA=auto|ref|scalar|avx2|avx512|avx512bf16|amx  forces a kernel path (an unknown one is an error)\n"
                 "  ATTN_DATA=DIR  the data folder when --data is not given (default " CLI_DATA_DEFAULT ",\n"
                 "                 relative to the working directory)\n"
                 "  NO_COLOR=1, TERM=dumb  no colour codes (neither when stdout is not a terminal)\n");
}

/* ATTN_ISA names a kernel path the library would otherwise ignore quietly when unknown or unsupported.
 * Returns 0, or 2 after a message. */
static int check_isa_env(void) {
    const char *env = getenv("ATTN_ISA");
    attn_isa isa;
    if (!env) return 0;
    if (attn_isa_parse(env, &isa) != ATTN_OK) {
        fprintf(stderr, "attn: ATTN_ISA=%s: unknown kernel path; the valid ones are", env);
        for (int i = 0; i < ATTN_ISA_COUNT; i++) fprintf(stderr, "%s %s", i ? "," : "", attn_isa_name((attn_isa)i));
        fprintf(stderr, " (or unset ATTN_ISA)\n");
        return 2;
    }
    attn_ctx c;
    if (attn_ctx_init(&c, isa, 1) != ATTN_OK) {
        fprintf(stderr, "attn: ATTN_ISA=%s: this CPU (or this build) does not support that path; the supported "
                "ones are", env);
        for (int i = 0; i < ATTN_ISA_COUNT; i++)
            if (attn_ctx_init(&c, (attn_isa)i, 1) == ATTN_OK) fprintf(stderr, " %s", attn_isa_name((attn_isa)i));
        fputc('\n', stderr);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("attn %s\n", attn_version());
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            if (check_isa_env()) return 2;
            cli_tune_runtime(argv);
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "attn: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
