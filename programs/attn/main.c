/*
 * main.c — the `attn` program: dispatches to its subcommands.
 */
#include "cli.h"

#include <stdio.h>
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
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *out) {
    fprintf(out, "usage: attn <command> [options]\n\n"
                 "attn %s: neural attention mechanisms in C, forward and backward.\n\ncommands:\n",
            attn_version());
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].about);
    fprintf(out, "\n'attn <command> --help' describes a command's options.\n"
                 "Environment: ATTN_ISA=auto|ref|scalar|avx2|avx512 forces a kernel path.\n");
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
            cli_tune_runtime(argv);
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "attn: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
