/*
 * fuzz_tar.c — the .tar.gz reader (src/data/tar.c) over bytes in memory: every entry, every content
 * byte read, until the end of the archive or an error. Each call must read forward (the 1 s timeout
 * catches a loop).
 */
#include "fuzz_util.h"
#include "data/tar.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    attn__tar *t;
    char err[512];
    if (attn__tar_open_mem(&t, data, size, "input.tar.gz", err, sizeof err) != ATTN_OK) return 0;
    static unsigned char buf[1 << 16];
    attn_status st;
    for (;;) {
        attn__tar_entry e;
        int done;
        st = attn__tar_next(t, &e, &done, err, sizeof err);
        if (st != ATTN_OK || done) break;
        FUZZ_ASSERT(memchr(e.name, '\0', sizeof e.name) != NULL);
        /* read regular files' content in chunks (skipping the rest is the reader's job too) */
        uint64_t left = e.size;
        while (left && st == ATTN_OK) {
            size_t k = left > sizeof buf ? sizeof buf : (size_t)left;
            st = attn__tar_read(t, buf, k, err, sizeof err);
            left -= k;
        }
        if (st != ATTN_OK) break;
    }
    if (st != ATTN_OK) FUZZ_ERR_OK(err, sizeof err);
    attn__tar_close(t);
    return 0;
}
