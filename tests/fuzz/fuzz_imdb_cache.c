/*
 * fuzz_imdb_cache.c — attn_imdb_cache_load. The header and payload checksums are set right before the
 * load (a corrupt checksum is one branch; what the fuzzer should reach is every check behind it), and the
 * options are taken from the header, so the loader gets as far as the sizes let it.
 */
#include "fuzz_util.h"

#include <string.h>
#include <zlib.h>

static uint32_t get_u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *b = malloc(size ? size : 1);
    if (!b) return 0;
    if (size) memcpy(b, data, size);
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    if (size >= 96) {
        put_u32(b + 72, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b + 96, (uInt)(size - 96)));
        put_u32(b + 76, (uint32_t)crc32(0L, b, 76));
        o.T = (int)get_u32(b + 12);
        o.V = (int)get_u32(b + 16);
        o.limit = (int)get_u32(b + 20);
    }
    const char *path = fuzz_input_path(b, size);
    free(b);
    attn_imdb_data d;
    char err[1024];
    attn_status st = attn_imdb_cache_load(&d, &o, NULL, path, err, sizeof err);
    if (st != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
        return 0;
    }
    FUZZ_ASSERT(d.T == o.T && d.vocab.V == o.V && d.train.n > 0 && d.test.n > 0);
    attn_imdb_free(&d);
    return 0;
}
