/*
 * idx.c — the IDX format (LeCun's, the MNIST family's) and the Fashion-MNIST data set built on it.
 *
 * An IDX file: two zero bytes, a type byte (0x08 unsigned byte is the only one read here), the number of
 * dimensions (1..ATTN_IDX_MAX_DIMS), each dimension as a big-endian uint32, then the elements, row-major,
 * and nothing after them. The file may be gzip-compressed (it is when the first two bytes are 0x1f 0x8b);
 * it is read whole, inflated into one buffer no larger than the caller's limit, then checked. Offsets in
 * messages count bytes of the decompressed data (of the file itself when it is not compressed).
 */
#define _POSIX_C_SOURCE 200809L

#include "internal.h"
#include "io/files.h"
#include "attn/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Reads the whole regular file path into *buf (*n bytes). At most limit bytes are accepted. */
static attn_status read_all(const char *path, size_t limit, uint8_t **buf, size_t *n, char *err, size_t err_size) {
    const char *kind;
    FILE *f = attn__fopen_read(path, &kind);
    if (!f) {
        if (kind)
            attn__set_err(err, err_size, "%s: offset 0: expected an IDX file (a regular file), found %s", path, kind);
        else
            attn__set_err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    if (!b) { fclose(f); return ATTN_ERR_NOMEM; }
    for (;;) {
        if (len == cap) {
            if (cap > limit) {
                attn__set_err(err, err_size, "%s: larger than %zu bytes (the limit for this file)", path, limit);
                free(b); fclose(f); return ATTN_ERR_FORMAT;
            }
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) { free(b); fclose(f); return ATTN_ERR_NOMEM; }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        attn__set_err(err, err_size, "%s: read error at offset %zu", path, len);
        free(b);
        return ATTN_ERR_IO;
    }
    *buf = b;
    *n = len;
    return ATTN_OK;
}

/* Inflates a gzip stream (members may be concatenated) into a new buffer of at most limit bytes. */
static attn_status gunzip(const char *path, const uint8_t *in, size_t n_in, size_t limit, uint8_t **out,
                          size_t *n_out, char *err, size_t err_size) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK) return ATTN_ERR_NOMEM;
    size_t cap = n_in * 4 + 1024, len = 0;
    if (cap > limit + 1) cap = limit + 1;
    uint8_t *b = malloc(cap);
    if (!b) { inflateEnd(&z); return ATTN_ERR_NOMEM; }
    size_t pos = 0;
    attn_status st = ATTN_OK;
    for (;;) {
        if (len == cap) {
            if (cap > limit) {
                attn__set_err(err, err_size, "%s: decompresses to more than %zu bytes (the limit for this file)",
                              path, limit);
                st = ATTN_ERR_FORMAT;
                break;
            }
            size_t nc = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            uint8_t *nb = realloc(b, nc);
            if (!nb) { st = ATTN_ERR_NOMEM; break; }
            b = nb;
            cap = nc;
        }
        size_t in_chunk = n_in - pos > (1u << 30) ? (1u << 30) : n_in - pos;
        size_t out_chunk = cap - len > (1u << 30) ? (1u << 30) : cap - len;
        z.next_in = (Bytef *)(in + pos);
        z.avail_in = (uInt)in_chunk;
        z.next_out = b + len;
        z.avail_out = (uInt)out_chunk;
        int r = inflate(&z, Z_NO_FLUSH);
        pos += in_chunk - z.avail_in;
        len += out_chunk - z.avail_out;
        if (r == Z_STREAM_END) {
            if (pos == n_in) break;
            inflateReset(&z);                           /* another gzip member follows */
            continue;
        }
        if (r == Z_OK) continue;
        if (r == Z_BUF_ERROR && z.avail_out != 0) {
            attn__set_err(err, err_size, "%s: truncated gzip stream: the file ends at compressed offset %zu before "
                          "the end of the stream", path, n_in);
        } else if (r == Z_MEM_ERROR) {
            st = ATTN_ERR_NOMEM;
            break;
        } else {
            attn__set_err(err, err_size, "%s: corrupt gzip data near compressed offset %zu: %s", path, pos,
                          z.msg ? z.msg : "inflate failed");
        }
        st = ATTN_ERR_FORMAT;
        break;
    }
    inflateEnd(&z);
    if (st != ATTN_OK) { free(b); return st; }
    *out = b;
    *n_out = len;
    return ATTN_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

attn_status attn_idx_read(attn_idx *x, const char *path, size_t max_bytes, char *err, size_t err_size) {
    if (!x || !path) return ATTN_ERR_NULL;
    memset(x, 0, sizeof *x);
    if (err && err_size) err[0] = '\0';
    if (max_bytes == 0 || max_bytes > SIZE_MAX / 8) return ATTN_ERR_SIZE;
    const size_t limit = max_bytes + 4 + 4 * ATTN_IDX_MAX_DIMS;   /* header and elements */

    uint8_t *raw = NULL, *buf = NULL;
    size_t n_raw = 0, n = 0;
    attn_status st = read_all(path, limit, &raw, &n_raw, err, err_size);
    if (st != ATTN_OK) return st;
    if (n_raw >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        st = gunzip(path, raw, n_raw, limit, &buf, &n, err, err_size);
        free(raw);
        if (st != ATTN_OK) return st;
    } else {
        buf = raw;
        n = n_raw;
    }

    /* pass 1: the magic number: 0, 0, type, ndim */
    if (n < 4) {
        attn__set_err(err, err_size, "%s: offset %zu: truncated: expected a 4-byte IDX magic number, the data ends "
                      "after %zu bytes", path, n, n);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }
    if (buf[0] != 0 || buf[1] != 0) {
        attn__set_err(err, err_size, "%s: offset 0: expected an IDX magic number (00 00 type ndim), found "
                      "%02x %02x %02x %02x", path, buf[0], buf[1], buf[2], buf[3]);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }
    if (buf[2] != 0x08) {
        attn__set_err(err, err_size, "%s: offset 2: expected element type 0x08 (unsigned byte), found 0x%02x",
                      path, buf[2]);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }
    const int ndim = buf[3];
    if (ndim < 1 || ndim > ATTN_IDX_MAX_DIMS) {
        attn__set_err(err, err_size, "%s: offset 3: expected 1 to %d dimensions, found %d", path,
                      ATTN_IDX_MAX_DIMS, ndim);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }

    /* pass 2: the dimensions, and their product against the limit and the data present */
    const size_t header = 4 + 4 * (size_t)ndim;
    if (n < header) {
        attn__set_err(err, err_size, "%s: offset %zu: truncated: expected %d dimension sizes (%zu header bytes), "
                      "the data ends after %zu bytes", path, n, ndim, header, n);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = be32(buf + 4 + 4 * i);
        if (d == 0) {
            attn__set_err(err, err_size, "%s: offset %d: expected dimension %d to be at least 1, found 0", path,
                          4 + 4 * i, i);
            st = ATTN_ERR_FORMAT;
            goto fail;
        }
        if (count > max_bytes / d) {
            attn__set_err(err, err_size, "%s: offset %d: dimension %d (%u) makes more than %zu elements (the limit "
                          "for this file)", path, 4 + 4 * i, i, d, max_bytes);
            st = ATTN_ERR_FORMAT;
            goto fail;
        }
        count *= d;
        x->dims[i] = d;
    }
    if (n - header < count) {
        attn__set_err(err, err_size, "%s: offset %zu: truncated: expected %zu bytes of elements after the %zu-byte "
                      "header, found %zu", path, n, count, header, n - header);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }
    if (n - header > count) {
        attn__set_err(err, err_size, "%s: offset %zu: expected the end of the data after %zu elements, found %zu "
                      "more bytes", path, header + count, count, n - header - count);
        st = ATTN_ERR_FORMAT;
        goto fail;
    }

    /* the elements move to the front of the buffer: one allocation stays */
    memmove(buf, buf + header, count);
    uint8_t *shrunk = realloc(buf, count);
    x->data = shrunk ? shrunk : buf;
    x->ndim = ndim;
    x->size = count;
    return ATTN_OK;

fail:
    free(buf);
    memset(x, 0, sizeof *x);
    return st;
}

void attn_idx_free(attn_idx *x) {
    if (!x) return;
    free(x->data);
    memset(x, 0, sizeof *x);
}

/* ---------------------------------------------------------------------------------------------------
 * Fashion-MNIST.
 */

static const char *const fmnist_classes[ATTN_FMNIST_CLASSES] = {
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"};

const char *attn_fmnist_class_name(int c) {
    return c >= 0 && c < ATTN_FMNIST_CLASSES ? fmnist_classes[c] : "?";
}

static int file_exists(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* path (size bytes) = dir/stem.gz when it exists, else dir/stem when that exists; 0 when neither. */
static int find_file(char *path, size_t size, const char *dir, const char *stem) {
    snprintf(path, size, "%s/%s.gz", dir, stem);
    if (file_exists(path)) return 1;
    snprintf(path, size, "%s/%s", dir, stem);
    return file_exists(path);
}

static attn_status load_split(attn_fmnist_split *s, const char *dir, const char *images, const char *labels,
                              int limit, char *err, size_t err_size) {
    char pi[4200], pl[4200];
    if (!find_file(pi, sizeof pi, dir, images) || !find_file(pl, sizeof pl, dir, labels)) {
        attn__set_err(err, err_size, "no Fashion-MNIST data in %s: looked for %s/%s.gz (or without .gz) and "
                      "%s/%s.gz (or without .gz)", dir, dir, images, dir, labels);
        return ATTN_ERR_IO;
    }
    attn_idx xi, xl;
    attn_status st = attn_idx_read(&xi, pi, (size_t)1 << 30, err, err_size);
    if (st != ATTN_OK) return st;
    if ((st = attn_idx_read(&xl, pl, (size_t)1 << 26, err, err_size)) != ATTN_OK) { attn_idx_free(&xi); return st; }
    if (xi.ndim != 3) {
        attn__set_err(err, err_size, "%s: offset 3: expected 3 dimensions (images, rows, columns), found %d", pi,
                      xi.ndim);
        st = ATTN_ERR_FORMAT;
    } else if (xi.dims[1] > 1024 || xi.dims[2] > 1024) {
        attn__set_err(err, err_size, "%s: offset 8: expected images of at most 1024x1024, found %lldx%lld", pi,
                      (long long)xi.dims[1], (long long)xi.dims[2]);
        st = ATTN_ERR_FORMAT;
    } else if (xl.ndim != 1) {
        attn__set_err(err, err_size, "%s: offset 3: expected 1 dimension (labels), found %d", pl, xl.ndim);
        st = ATTN_ERR_FORMAT;
    } else if (xl.dims[0] != xi.dims[0] || xi.dims[0] > INT32_MAX) {
        attn__set_err(err, err_size, "%s: offset 4: expected %lld labels (one per image of %s), found %lld", pl,
                      (long long)xi.dims[0], pi, (long long)xl.dims[0]);
        st = ATTN_ERR_FORMAT;
    } else {
        for (size_t i = 0; i < xl.size; i++)
            if (xl.data[i] >= ATTN_FMNIST_CLASSES) {
                attn__set_err(err, err_size, "%s: offset %zu: expected a label 0..%d, found %u", pl, 8 + i,
                              ATTN_FMNIST_CLASSES - 1, xl.data[i]);
                st = ATTN_ERR_FORMAT;
                break;
            }
    }
    if (st != ATTN_OK) { attn_idx_free(&xi); attn_idx_free(&xl); return st; }

    int n = (int)xi.dims[0];
    if (limit > 0 && limit < n) n = limit;
    s->n = n;
    s->rows = (int)xi.dims[1];
    s->cols = (int)xi.dims[2];
    s->images = xi.data;                               /* the first n images of the file's */
    s->labels = malloc((size_t)n * sizeof(int32_t));
    if (!s->labels) { attn_idx_free(&xi); attn_idx_free(&xl); memset(s, 0, sizeof *s); return ATTN_ERR_NOMEM; }
    for (int i = 0; i < n; i++) s->labels[i] = xl.data[i];
    attn_idx_free(&xl);
    return ATTN_OK;
}

attn_status attn_fmnist_load(attn_fmnist *d, const char *dir, int limit, char *err, size_t err_size) {
    if (!d || !dir) return ATTN_ERR_NULL;
    memset(d, 0, sizeof *d);
    if (err && err_size) err[0] = '\0';
    if (limit < 0) return ATTN_ERR_ARG;
    attn_status st = load_split(&d->train, dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", limit, err,
                                err_size);
    if (st != ATTN_OK) return st;
    st = load_split(&d->test, dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", limit, err, err_size);
    if (st == ATTN_OK && (d->test.rows != d->train.rows || d->test.cols != d->train.cols)) {
        attn__set_err(err, err_size, "%s: the test images are %dx%d but the training images %dx%d", dir,
                      d->test.rows, d->test.cols, d->train.rows, d->train.cols);
        st = ATTN_ERR_FORMAT;
    }
    if (st != ATTN_OK) attn_fmnist_free(d);
    return st;
}

void attn_fmnist_free(attn_fmnist *d) {
    if (!d) return;
    free(d->train.images);
    free(d->train.labels);
    free(d->test.images);
    free(d->test.labels);
    memset(d, 0, sizeof *d);
}
