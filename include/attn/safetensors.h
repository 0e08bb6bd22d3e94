/*
 * attn/safetensors.h — reading and writing safetensors files, the format of checkpoints and of the
 * PyTorch golden files the tests compare against.
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
 * then the tensor bytes (offsets relative to the end of the header). The reader checks everything: header
 * size against the file, JSON syntax, dtypes, shapes against byte counts, offsets inside the data and not
 * overlapping. Errors come back as a status plus a message naming the path, the byte offset and what was
 * expected. Writing goes to "<path>.tmp" and is renamed over path, so a crash never leaves half a file.
 */
#ifndef ATTN_SAFETENSORS_H
#define ATTN_SAFETENSORS_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types: attn_dtype (attn.h), F32 F64 I32 I64 U8 BOOL BF16, the safetensors names. */

#define ATTN_ST_MAX_DIMS 8

typedef struct attn_st_tensor {
    const char *name;
    attn_dtype dtype;
    int ndim;
    int64_t shape[ATTN_ST_MAX_DIMS];
    const void *data;            /* little-endian, row-major */
    size_t nbytes;
} attn_st_tensor;

typedef struct attn_st_file {
    attn_st_tensor *tensors;     /* n of them, in file order */
    int n;
    char **meta_keys, **meta_values;  /* __metadata__ string pairs */
    int n_meta;
    void *buffer;                /* the whole file, read once */
    size_t size;
} attn_st_file;

/* Reads and checks the file. On failure f is left empty, and err (err_size bytes, may be NULL) gets
 * "path: offset N: what was expected". Files larger than max_bytes (0 = 4 GiB) are refused. */
attn_status attn_st_read(attn_st_file *f, const char *path, size_t max_bytes, char *err, size_t err_size);
void        attn_st_free(attn_st_file *f);

const attn_st_tensor *attn_st_find(const attn_st_file *f, const char *name);   /* NULL if absent */
const char           *attn_st_meta(const attn_st_file *f, const char *key);    /* NULL if absent */

/* Finds a float32 tensor of exactly this shape; otherwise ATTN_ERR_FORMAT with err saying what differs. */
attn_status attn_st_get_f32(const attn_st_file *f, const char *name, int ndim, const int64_t *shape,
                            const float **data, char *err, size_t err_size);

/* Writes n tensors and n_meta metadata pairs atomically (temporary file, fsync, rename). */
attn_status attn_st_write(const char *path, const attn_st_tensor *tensors, int n,
                          const char *const *meta_keys, const char *const *meta_values, int n_meta,
                          char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_SAFETENSORS_H */
