/*
 * fuzz_safetensors.c — the safetensors reader (attn__st_parse, what attn_st_read runs on a file's bytes).
 * A file that parses must hand out tensors whose bytes lie inside the buffer and match their shape.
 */
#include "fuzz_util.h"
#include "io/safetensors_internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *buf = malloc(size + 8);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    attn_st_file f;
    char err[256];
    attn_status st = attn__st_parse(&f, buf, size, "input.safetensors", err, sizeof err);
    if (st != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
        return 0;
    }
    unsigned sum = 0;
    for (int i = 0; i < f.n; i++) {
        const attn_st_tensor *t = &f.tensors[i];
        FUZZ_ASSERT(attn_st_find(&f, t->name) == t);
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];   /* ASan: every byte must be readable */
        if (t->dtype == ATTN_DTYPE_F32) {
            const float *d;
            FUZZ_ASSERT(attn_st_get_f32(&f, t->name, t->ndim, t->shape, &d, err, sizeof err) == ATTN_OK);
            FUZZ_ASSERT(((uintptr_t)d & 3) == 0);
        }
    }
    for (int i = 0; i < f.n_meta; i++) FUZZ_ASSERT(attn_st_meta(&f, f.meta_keys[i]) != NULL);
    attn_st_free(&f);
    return (int)(sum & 0);
}
