/*
 * fuzz_imdb_vocab.c — attn_imdb_vocab_from_blob (the vocabulary stored in checkpoints and the cache),
 * then lookups and attn_imdb_encode_text with it. Input: one byte for V, then the blob.
 */
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int V = data[0];                               /* 0..255: below FIRST_WORD is refused, as it must be */
    const char *blob = (const char *)data + 1;
    size_t n = size - 1;
    attn_imdb_vocab v;
    if (attn_imdb_vocab_from_blob(&v, n ? blob : "", n, V) != ATTN_OK) return 0;
    FUZZ_ASSERT(v.V == V && v.blob_size == n);
    /* every word finds its own id */
    for (int id = ATTN_IMDB_FIRST_WORD; id < V; id++)
        FUZZ_ASSERT(attn_imdb_vocab_lookup(&v, v.words[id], strlen(v.words[id])) == id);
    /* the blob as text: ids in range whatever it holds */
    int32_t ids[16];
    int words;
    size_t bad;
    attn_status st = attn_imdb_encode_text(ids, 16, &v, blob, n, &words, &bad);
    if (st == ATTN_OK)
        for (int j = 0; j < 16; j++) FUZZ_ASSERT(ids[j] >= 0 && ids[j] < V);
    else
        FUZZ_ASSERT(st == ATTN_ERR_FORMAT || st == ATTN_ERR_ARG);
    attn_imdb_vocab_free(&v);
    return 0;
}
