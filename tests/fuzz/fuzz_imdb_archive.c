/*
 * fuzz_imdb_archive.c — attn_imdb_load on a .tar.gz: tar, tokenizer, vocabulary and encoding together.
 * An input that starts with the gzip magic (1f 8b) is the .tar.gz itself: the gzip layer is fuzzed too.
 * Any other input is the tar inside, which this target wraps in a gzip of stored blocks with the right
 * CRC and length: a mutation of the compressed bytes almost never keeps the CRC right, and without it
 * no load gets past the end of the archive to the sorting, vocabulary and encoding behind it. It also
 * keeps the work per input proportional to its size (no gzip bomb).
 * A data set that loads must have ids inside the vocabulary and labels 0 or 1.
 */
#include "fuzz_util.h"

#include <string.h>
#include <zlib.h>

/* A gzip member of stored deflate blocks holding data (n bytes) into out (n + 18 + 5 per 65535 bytes). */
static size_t gzip_stored(unsigned char *out, const uint8_t *data, size_t n) {
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    size_t k = 0;
    memcpy(out, header, sizeof header);
    k += sizeof header;
    size_t at = 0;
    do {
        size_t len = n - at > 65535 ? 65535 : n - at;
        out[k++] = at + len == n;                          /* BFINAL on the last; BTYPE 00, stored */
        out[k++] = (unsigned char)len;
        out[k++] = (unsigned char)(len >> 8);
        out[k++] = (unsigned char)~len;
        out[k++] = (unsigned char)(~len >> 8);
        if (len) memcpy(out + k, data + at, len);
        k += len;
        at += len;
    } while (at < n);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)n), isize = (uint32_t)n;
    for (int i = 0; i < 4; i++) out[k++] = (unsigned char)(crc >> (8 * i));
    for (int i = 0; i < 4; i++) out[k++] = (unsigned char)(isize >> (8 * i));
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        path = fuzz_input_path(data, size);
    } else {
        unsigned char *gz = malloc(size + 18 + 5 * (size / 65535 + 1));
        if (!gz) return 0;
        path = fuzz_input_path(gz, gzip_stored(gz, data, size));
        free(gz);
    }
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
