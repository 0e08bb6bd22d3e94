/*
 * fuzz_tokenize.c — the tokenizers on any bytes: attn_imdb_tokenize (IMDB) and attn_nmt_preprocess
 * (fra.txt, d2l's rules). Tokens must be nonempty, at most ATTN_IMDB_MAX_WORD bytes and inside a word's
 * alphabet; the preprocessed text must be valid UTF-8 and NUL-terminated.
 */
#include "fuzz_util.h"

#include <string.h>

static int on_token(void *ctx, const char *w, size_t len) {
    size_t *count = ctx;
    FUZZ_ASSERT(len >= 1 && len <= ATTN_IMDB_MAX_WORD);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)w[i];
        FUZZ_ASSERT(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\'');
    }
    (*count)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = size ? (const char *)data : "";
    size_t count = 0, bad = (size_t)-1;
    attn_status st = attn_imdb_tokenize(text, size, on_token, &count, &bad);
    FUZZ_ASSERT(st == ATTN_OK || (st == ATTN_ERR_FORMAT && bad < size));

    char *out = NULL;
    st = attn_nmt_preprocess(text, size, &out);
    if (st == ATTN_OK) {
        size_t n = strlen(out);
        FUZZ_ASSERT(n <= 2 * size);
        char *again = NULL;                        /* preprocessing is idempotent on its own output */
        FUZZ_ASSERT(attn_nmt_preprocess(out, n, &again) == ATTN_OK);
        free(again);
        free(out);
    } else {
        FUZZ_ASSERT(st == ATTN_ERR_FORMAT && out == NULL);
    }
    return 0;
}
