/*
 * fuzz_cli.c — the `attn` program's flag parser (programs/attn/cli.c: cli_parse, and the usage it prints
 * on an error) on any argument vector. Input: one byte for the positional limits, then the arguments,
 * separated by NUL bytes. Values must land only in the options' own destinations, and positionals only in
 * the room the command gave. Run with -close_fd_mask=3: the parser prints its usage on every bad flag.
 */
#include "fuzz_util.h"
#include "cli.h"

#include <string.h>

enum { MAX_ARGS = 64, MAX_POS = 4 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = "cmd";
    for (char *p = text; p < text + size && argc < MAX_ARGS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    int i_val = 5, b_val = 0;
    float f_val = 0.5f;
    uint64_t u_val = 7;
    const char *s_val = "default", *s2_val = NULL;
    const cli_opt opts[] = {
        {"int", CLI_INT, &i_val, "N", "an int"},
        {"float", CLI_FLOAT, &f_val, "X", "a float"},
        {"u64", CLI_U64, &u_val, "N", "an unsigned 64-bit number"},
        {"str", CLI_STR, &s_val, "TEXT", "a string with a default"},
        {"str2", CLI_STR, &s2_val, "TEXT", "a string without one"},
        {"flag", CLI_BOOL, &b_val, NULL, "a flag"},
        {"a-very-long-option-name-that-overflows-the-usage-column", CLI_INT, &i_val, "NUMBER-OF-THINGS", "long"},
    };
    int max_pos = data[0] % (MAX_POS + 1), min_pos = (data[0] >> 4) % (max_pos + 1);
    const cli_cmd cmd = {"attn fuzz [options]", "about", opts, (int)(sizeof opts / sizeof opts[0]), min_pos, max_pos};
    const char *pos[MAX_POS + 1];
    pos[max_pos] = "guard";
    int n_pos = -1;
    int r = cli_parse(&cmd, argc, argv, pos, &n_pos);
    FUZZ_ASSERT(r == -1 || r == 0 || r == 2);
    FUZZ_ASSERT(pos[max_pos] != NULL && strcmp(pos[max_pos], "guard") == 0);
    if (r == -1) {
        FUZZ_ASSERT(n_pos >= min_pos && n_pos <= max_pos);
        for (int i = 0; i < n_pos; i++) FUZZ_ASSERT(pos[i] >= text && pos[i] < text + size);
        FUZZ_ASSERT(b_val == 0 || b_val == 1);
        FUZZ_ASSERT(s2_val == NULL || (s2_val >= text && s2_val < text + size));
    }
    free(text);
    return 0;
}
