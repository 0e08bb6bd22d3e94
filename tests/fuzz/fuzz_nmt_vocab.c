/*
 * fuzz_nmt_vocab.c — the translators' vocabulary file (attn_vocab_load: one token per line, the four
 * reserved ones first), then encoding the same bytes' lines with it, and building a vocabulary from them
 * (attn_vocab_build) as if they were preprocessed lines.
 */
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the lines, NUL-terminated (a NUL inside a line ends it, as for any C string) */
    char *text = malloc(size + 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    text[size] = '\0';
    int n_lines = 1;
    for (size_t i = 0; i < size; i++) n_lines += text[i] == '\n';
    const char **lines = malloc(sizeof(char *) * (size_t)n_lines);
    if (!lines) { free(text); return 0; }
    int k = 0;
    lines[k++] = text;
    for (size_t i = 0; i < size; i++)
        if (text[i] == '\n') { text[i] = '\0'; lines[k++] = text + i + 1; }

    enum { STEPS = 6 };
    int32_t ids[STEPS], valid;
    int n_tok, n_unk;
    attn_vocab v;
    char err[512];
    const char *path = fuzz_input_path(data, size);
    if (attn_vocab_load(&v, path, err, sizeof err) == ATTN_OK) {
        FUZZ_ASSERT(v.n >= 4);
        for (int i = 0; i < n_lines; i++) {
            FUZZ_ASSERT(attn_vocab_encode(&v, lines[i], STEPS, ids, &valid, &n_tok, &n_unk) == ATTN_OK);
            for (int j = 0; j < STEPS; j++) FUZZ_ASSERT(ids[j] >= 0 && ids[j] < v.n);
        }
        attn_vocab_free(&v);
    } else {
        FUZZ_ERR_OK(err, sizeof err);
    }
    int min_freq = size ? data[0] % 3 : 0;
    FUZZ_ASSERT(attn_vocab_build(&v, lines, n_lines, min_freq) == ATTN_OK);
    for (int i = 0; i < n_lines; i++) {
        FUZZ_ASSERT(attn_vocab_encode(&v, lines[i], STEPS, ids, &valid, &n_tok, &n_unk) == ATTN_OK);
        for (int j = 0; j < STEPS; j++) FUZZ_ASSERT(ids[j] >= 0 && ids[j] < v.n);
        FUZZ_ASSERT(min_freq > 1 || n_unk == 0);         /* every token of the lines is in */
    }
    attn_vocab_free(&v);
    free(lines);
    free(text);
    return 0;
}
