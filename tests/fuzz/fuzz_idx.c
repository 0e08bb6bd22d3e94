/*
 * fuzz_idx.c — attn_idx_read on an IDX file, gzip-compressed or plain (the Fashion-MNIST loader's
 * reader). Input: the file. A file that loads must hold exactly the product of its dimensions.
 */
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_path(data, size);
    attn_idx x;
    char err[512];
    attn_status st = attn_idx_read(&x, path, (size_t)1 << 20, err, sizeof err);
    if (st != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
        FUZZ_ASSERT(x.data == NULL && x.size == 0);
        return 0;
    }
    FUZZ_ASSERT(x.ndim >= 1 && x.ndim <= ATTN_IDX_MAX_DIMS);
    size_t count = 1;
    for (int i = 0; i < x.ndim; i++) {
        FUZZ_ASSERT(x.dims[i] >= 1);
        count *= (size_t)x.dims[i];
    }
    FUZZ_ASSERT(count == x.size && count <= ((size_t)1 << 20));
    unsigned sum = 0;
    for (size_t i = 0; i < x.size; i++) sum += x.data[i];  /* every element readable */
    (void)sum;
    attn_idx_free(&x);
    return 0;
}
