/*
 * fuzz_imdb_archive.c — attn_imdb_load on a .tar.gz: tar, tokenizer, vocabulary and encoding together.
 * A data set that loads must have ids inside the vocabulary and labels 0 or 1.
 */
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_path(data, size);
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 40;
    o.T = 6;
    attn_imdb_data d;
    char err[2048];
    attn_status st = attn_imdb_load(&d, path, &o, err, sizeof err);
    if (st != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
        return 0;
    }
    const attn_imdb_split *sp[2] = {&d.train, &d.test};
    for (int s = 0; s < 2; s++) {
        FUZZ_ASSERT(sp[s]->n > 0);
        for (size_t i = 0; i < (size_t)sp[s]->n * (size_t)d.T; i++)
            FUZZ_ASSERT(sp[s]->ids[i] >= 0 && sp[s]->ids[i] < d.vocab.V);
        for (int i = 0; i < sp[s]->n; i++) FUZZ_ASSERT(sp[s]->labels[i] == 0 || sp[s]->labels[i] == 1);
    }
    attn_imdb_free(&d);
    return 0;
}
