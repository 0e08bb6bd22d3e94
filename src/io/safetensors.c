/*
 * safetensors.c — reads and writes safetensors files (checkpoints, and the PyTorch golden files).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, then the tensor bytes. The reader takes
 * the whole file in one read, then checks it completely before handing out pointers:
 *   - N against the file size;
 *   - the JSON, with a small strict parser that knows exactly this schema: one object whose values are
 *     tensor entries {"dtype", "shape", "data_offsets"} or the "__metadata__" string map. Strings (with
 *     every JSON escape, valid UTF-8 only), nonnegative integers, arrays and objects; anything else
 *     (floats, true/false/null, trailing commas, duplicate keys) is refused;
 *   - dtypes F32 F64 I32 I64 U8 BOOL, ndim <= 8, shape product × dtype size == end - begin without
 *     overflow;
 *   - offsets inside the data area, not overlapping, and covering it without holes (the format's own rule,
 *     which PyTorch's safetensors enforces too).
 * Strings are decoded in place inside the header bytes (a decoded string is never longer than its JSON
 * form), so names and metadata point into the file buffer. Tensor data is aligned for its dtype: the data
 * area is moved to an 8-byte boundary, and a file whose offsets leave a tensor misaligned is repacked.
 * Allocations per read: the buffer, the tensor array, the two metadata arrays (plus a scratch array).
 *
 * Every reader error is "<path>: offset <N>: expected <what>" with N a byte offset in the file.
 * The writer puts tensors' bytes in order of decreasing element size (so each starts aligned), pads the
 * header with spaces to a multiple of 8, writes "<path>.tmp", flushes, fsyncs, closes and renames it over
 * path; on any failure the temporary file is removed and the previous file is left as it was.
 */
#define _POSIX_C_SOURCE 200809L

#include "internal.h"
#include "io/safetensors_internal.h"
#include "io/files.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const st_dtype_names[ATTN_DTYPE_COUNT] = {"F32", "F64", "I32", "I64", "U8", "BOOL", "BF16"};
static const size_t st_dtype_sizes[ATTN_DTYPE_COUNT] = {4, 8, 4, 8, 1, 1, 2};

/* Default size limit: 4 GiB (or what size_t can hold, on a 32-bit machine). */
#define ST_DEFAULT_MAX ((uint64_t)SIZE_MAX < ((uint64_t)4 << 30) ? (size_t)SIZE_MAX : (size_t)((uint64_t)4 << 30))

/* ---------------------------------------------------------------------------------------------------
 * UTF-8: length of the valid sequence starting at s (at most n bytes available), or 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid).
 */
static size_t st_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0)      { len = 2; cp = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static size_t st_utf8_encode(unsigned char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---------------------------------------------------------------------------------------------------
 * The header parser. pos and end are byte offsets in the file (the JSON is buf[8, 8 + N)).
 */
typedef struct st_span {
    uint64_t begin, end;         /* data_offsets, relative to the data area */
    size_t at;                   /* file offset of the entry, for messages */
    int idx;                     /* index into the tensor array */
} st_span;

typedef struct st_parser {
    unsigned char *buf;          /* the whole file */
    size_t pos, end;             /* cursor; end of the header */
    uint64_t data_size;          /* bytes after the header */
    const char *path;
    char *err;
    size_t err_size;
    attn_st_file *f;             /* tensors, metadata being filled */
    int cap_t, cap_m;            /* capacities of f->tensors / spans and of the metadata arrays */
    st_span *spans;              /* (cap_t) */
    int have_meta;
} st_parser;

/* Formats "<path>: offset <at>: expected <...>" and returns ATTN_ERR_FORMAT. */
static attn_status st_fail(st_parser *p, size_t at, const char *fmt, ...) {
    if (p->err && p->err_size) {
        int k = snprintf(p->err, p->err_size, "%s: offset %zu: expected ", p->path, at);
        if (k >= 0 && (size_t)k < p->err_size) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->err_size - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return ATTN_ERR_FORMAT;
}

static attn_status st_nomem(st_parser *p) {
    attn__set_err(p->err, p->err_size, "%s: offset %zu: expected memory for the tensor table (out of memory)", p->path,
            p->pos);
    return ATTN_ERR_NOMEM;
}

static void st_skip_ws(st_parser *p) {
    while (p->pos < p->end) {
        unsigned char c = p->buf[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* Skips whitespace, then consumes c or fails with "expected <what>". */
static attn_status st_expect(st_parser *p, char c, const char *what) {
    st_skip_ws(p);
    if (p->pos >= p->end) return st_fail(p, p->pos, "%s, found the end of the header", what);
    if (p->buf[p->pos] != (unsigned char)c) return st_fail(p, p->pos, "%s", what);
    p->pos++;
    return ATTN_OK;
}

/* After an element of an object or array: 1 if a ',' was consumed, 0 if the closing bracket was. */
static attn_status st_next(st_parser *p, char close, int *more) {
    st_skip_ws(p);
    if (p->pos >= p->end) return st_fail(p, p->pos, "',' or '%c', found the end of the header", close);
    unsigned char c = p->buf[p->pos];
    if (c == ',') { p->pos++; *more = 1; return ATTN_OK; }
    if (c == (unsigned char)close) { p->pos++; *more = 0; return ATTN_OK; }
    return st_fail(p, p->pos, "',' or '%c'", close);
}

static int st_hex4(const unsigned char *s, uint32_t *v) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= c - '0';
        else if (c >= 'a' && c <= 'f') x |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') x |= c - 'A' + 10;
        else return 0;
    }
    *v = x;
    return 1;
}

/* Parses a JSON string and decodes it in place: *out points at the NUL-terminated text, inside buf. */
static attn_status st_string(st_parser *p, char **out) {
    st_skip_ws(p);
    if (p->pos >= p->end) return st_fail(p, p->pos, "a string, found the end of the header");
    if (p->buf[p->pos] != '"') return st_fail(p, p->pos, "a string");
    size_t r = ++p->pos, w = r;
    unsigned char *b = p->buf;
    for (;;) {
        if (r >= p->end) return st_fail(p, r, "the closing '\"' of a string, found the end of the header");
        unsigned c = b[r];
        if (c == '"') break;
        if (c < 0x20) return st_fail(p, r, "a printable character in a string (control byte 0x%02x)", c);
        if (c == '\\') {
            if (r + 1 >= p->end) return st_fail(p, r, "an escape sequence, found the end of the header");
            unsigned e = b[r + 1];
            const char *simple = strchr("\"\\/bfnrt", (int)e);
            if (e != 0 && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                b[w++] = (unsigned char)map[simple - "\"\\/bfnrt"];
                r += 2;
                continue;
            }
            if (e != 'u') return st_fail(p, r, "an escape \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX");
            uint32_t cp, lo;
            if (r + 6 > p->end || !st_hex4(b + r + 2, &cp)) return st_fail(p, r, "four hex digits after \\u");
            size_t len = 6;
            if (cp >= 0xdc00 && cp <= 0xdfff) return st_fail(p, r, "a high surrogate before a low one");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (r + 12 > p->end || b[r + 6] != '\\' || b[r + 7] != 'u' || !st_hex4(b + r + 8, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return st_fail(p, r + 6, "a low surrogate \\uDC00-\\uDFFF after a high one");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                len = 12;
            }
            if (cp == 0) return st_fail(p, r, "no NUL character (\\u0000) in a string");
            w += st_utf8_encode(b + w, cp);   /* at most 4 bytes for 6 or 12 read: w stays <= r */
            r += len;
            continue;
        }
        size_t n = st_utf8_len(b + r, p->end - r);
        if (n == 0) return st_fail(p, r, "valid UTF-8 in a string");
        memmove(b + w, b + r, n);
        w += n;
        r += n;
    }
    b[w] = 0;                       /* w <= r: at worst this overwrites the closing quote */
    *out = (char *)b + (p->pos);
    p->pos = r + 1;
    return ATTN_OK;
}

/* A nonnegative JSON integer below 2^63 (no sign, fraction, exponent or leading zero). */
static attn_status st_uint(st_parser *p, uint64_t *v) {
    st_skip_ws(p);
    size_t at = p->pos;
    if (at >= p->end) return st_fail(p, at, "an integer, found the end of the header");
    unsigned char c = p->buf[at];
    if (c == '-') return st_fail(p, at, "a nonnegative integer");
    if (c < '0' || c > '9') return st_fail(p, at, "an integer");
    uint64_t x = 0;
    size_t i = at;
    while (i < p->end && p->buf[i] >= '0' && p->buf[i] <= '9') {
        unsigned d = p->buf[i] - '0';
        if (x > (UINT64_C(0x7fffffffffffffff) - d) / 10) return st_fail(p, at, "an integer below 2^63");
        x = x * 10 + d;
        i++;
    }
    if (i - at > 1 && c == '0') return st_fail(p, at, "an integer without leading zeros");
    if (i < p->end && (p->buf[i] == '.' || p->buf[i] == 'e' || p->buf[i] == 'E'))
        return st_fail(p, at, "an integer (not a fraction or exponent)");
    p->pos = i;
    *v = x;
    return ATTN_OK;
}

/* [n0, n1, ...] with at most max elements. */
static attn_status st_uint_array(st_parser *p, uint64_t *vals, int max, int *count, const char *what) {
    attn_status st = st_expect(p, '[', what);
    if (st) return st;
    *count = 0;
    st_skip_ws(p);
    if (p->pos < p->end && p->buf[p->pos] == ']') { p->pos++; return ATTN_OK; }
    for (int more = 1; more;) {
        st_skip_ws(p);
        if (*count == max) return st_fail(p, p->pos, "at most %d elements in %s", max, what);
        if ((st = st_uint(p, &vals[(*count)++]))) return st;
        if ((st = st_next(p, ']', &more))) return st;
    }
    return ATTN_OK;
}

static int st_grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return 1;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*arr, (size_t)nc * elem);
    if (!q) return 0;
    *arr = q;
    *cap = nc;
    return 1;
}

/* "__metadata__": {"key": "value", ...} */
static attn_status st_metadata(st_parser *p, size_t at) {
    attn_status st;
    attn_st_file *f = p->f;
    if (p->have_meta) return st_fail(p, at, "a single \"__metadata__\" entry");
    p->have_meta = 1;
    if ((st = st_expect(p, '{', "'{' opening the \"__metadata__\" object"))) return st;
    st_skip_ws(p);
    if (p->pos < p->end && p->buf[p->pos] == '}') { p->pos++; return ATTN_OK; }
    for (int more = 1; more;) {
        char *key, *val;
        st_skip_ws(p);
        size_t kat = p->pos;
        if ((st = st_string(p, &key))) return st;
        for (int i = 0; i < f->n_meta; i++)
            if (strcmp(f->meta_keys[i], key) == 0) return st_fail(p, kat, "unique metadata keys (\"%s\" repeats)", key);
        if ((st = st_expect(p, ':', "':' after a metadata key"))) return st;
        st_skip_ws(p);
        if (p->pos < p->end && p->buf[p->pos] != '"')
            return st_fail(p, p->pos, "a string value for metadata key \"%s\"", key);
        if ((st = st_string(p, &val))) return st;
        int cap = p->cap_m;
        if (!st_grow((void **)&f->meta_keys, &cap, f->n_meta + 1, sizeof(char *))) return st_nomem(p);
        cap = p->cap_m;
        if (!st_grow((void **)&f->meta_values, &cap, f->n_meta + 1, sizeof(char *))) return st_nomem(p);
        p->cap_m = cap;
        f->meta_keys[f->n_meta] = key;
        f->meta_values[f->n_meta] = val;
        f->n_meta++;
        if ((st = st_next(p, '}', &more))) return st;
    }
    return ATTN_OK;
}

/* "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} */
static attn_status st_tensor(st_parser *p, char *name, size_t at) {
    attn_status st;
    attn_st_file *f = p->f;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return st_fail(p, at, "unique tensor names (\"%s\" repeats)", name);
    int cap = p->cap_t;
    if (!st_grow((void **)&f->tensors, &cap, f->n + 1, sizeof(attn_st_tensor))) return st_nomem(p);
    cap = p->cap_t;
    if (!st_grow((void **)&p->spans, &cap, f->n + 1, sizeof(st_span))) return st_nomem(p);
    p->cap_t = cap;
    attn_st_tensor *t = &f->tensors[f->n];
    memset(t, 0, sizeof *t);
    t->name = name;

    int seen_dtype = 0, seen_shape = 0, seen_offsets = 0;
    uint64_t shape[ATTN_ST_MAX_DIMS], offs[2];
    int ndim = 0, noffs = 0;
    size_t offs_at = 0, shape_at = 0;
    if ((st = st_expect(p, '{', "'{' opening a tensor entry"))) return st;
    st_skip_ws(p);
    if (p->pos < p->end && p->buf[p->pos] == '}')
        return st_fail(p, p->pos, "\"dtype\", \"shape\" and \"data_offsets\" in tensor \"%s\"", name);
    for (int more = 1; more;) {
        char *key;
        st_skip_ws(p);
        size_t kat = p->pos;
        if ((st = st_string(p, &key))) return st;
        if ((st = st_expect(p, ':', "':' after a key"))) return st;
        st_skip_ws(p);
        if (strcmp(key, "dtype") == 0) {
            if (seen_dtype++) return st_fail(p, kat, "a single \"dtype\" in tensor \"%s\"", name);
            char *s;
            size_t sat = p->pos;
            if ((st = st_string(p, &s))) return st;
            int d = 0;
            while (d < ATTN_DTYPE_COUNT && strcmp(s, st_dtype_names[d]) != 0) d++;
            if (d == ATTN_DTYPE_COUNT)
                return st_fail(p, sat, "dtype F32, F64, I32, I64, U8 or BOOL for tensor \"%s\", found \"%s\"", name, s);
            t->dtype = (attn_dtype)d;
        } else if (strcmp(key, "shape") == 0) {
            if (seen_shape++) return st_fail(p, kat, "a single \"shape\" in tensor \"%s\"", name);
            shape_at = p->pos;
            if ((st = st_uint_array(p, shape, ATTN_ST_MAX_DIMS, &ndim, "a shape"))) return st;
        } else if (strcmp(key, "data_offsets") == 0) {
            if (seen_offsets++) return st_fail(p, kat, "a single \"data_offsets\" in tensor \"%s\"", name);
            offs_at = p->pos;
            if ((st = st_uint_array(p, offs, 2, &noffs, "data_offsets [begin, end]"))) return st;
            if (noffs != 2) return st_fail(p, offs_at, "data_offsets [begin, end] with two integers");
        } else {
            return st_fail(p, kat, "\"dtype\", \"shape\" or \"data_offsets\" in tensor \"%s\", found \"%s\"",
                           name, key);
        }
        if ((st = st_next(p, '}', &more))) return st;
    }
    if (!seen_dtype || !seen_shape || !seen_offsets)
        return st_fail(p, p->pos - 1, "\"dtype\", \"shape\" and \"data_offsets\" in tensor \"%s\" (missing %s)", name,
                       !seen_dtype ? "\"dtype\"" : !seen_shape ? "\"shape\"" : "\"data_offsets\"");

    /* Shape against byte count, without overflow: any zero dim makes the product zero. */
    uint64_t count = 1;
    int zero = 0;
    for (int i = 0; i < ndim; i++) if (shape[i] == 0) zero = 1;
    if (zero) count = 0;
    else {
        for (int i = 0; i < ndim; i++) {
            if (count > UINT64_MAX / shape[i]) return st_fail(p, shape_at, "a shape whose size fits in 64 bits");
            count *= shape[i];
        }
    }
    uint64_t esz = st_dtype_sizes[t->dtype];
    if (count > UINT64_MAX / esz) return st_fail(p, shape_at, "a shape whose size fits in 64 bits");
    uint64_t nbytes = count * esz;
    if (offs[1] < offs[0])
        return st_fail(p, offs_at, "data_offsets with begin <= end, found [%" PRIu64 ", %" PRIu64 "]",
                       offs[0], offs[1]);
    if (offs[1] > p->data_size)
        return st_fail(p, offs_at, "data_offsets inside the %" PRIu64 "-byte data area, found [%" PRIu64
                       ", %" PRIu64 "]", p->data_size, offs[0], offs[1]);
    if (offs[1] - offs[0] != nbytes)
        return st_fail(p, offs_at, "%" PRIu64 " bytes for tensor \"%s\" (%s, %" PRIu64 " elements), found "
                       "data_offsets [%" PRIu64 ", %" PRIu64 "] (%" PRIu64 " bytes)", nbytes, name,
                       st_dtype_names[t->dtype], count, offs[0], offs[1], offs[1] - offs[0]);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = (int64_t)shape[i];
    t->nbytes = (size_t)nbytes;
    p->spans[f->n] = (st_span){offs[0], offs[1], offs_at, f->n};
    f->n++;
    return ATTN_OK;
}

static int st_span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* The whole header: {"name": {...}, "__metadata__": {...}} then only spaces. */
static attn_status st_header(st_parser *p) {
    attn_status st;
    if ((st = st_expect(p, '{', "'{' opening the JSON header"))) return st;
    st_skip_ws(p);
    if (p->pos < p->end && p->buf[p->pos] == '}') p->pos++;
    else {
        for (int more = 1; more;) {
            char *key;
            st_skip_ws(p);
            size_t at = p->pos;
            if ((st = st_string(p, &key))) return st;
            if (key[0] == 0) return st_fail(p, at, "a nonempty tensor name");
            if ((st = st_expect(p, ':', "':' after a tensor name"))) return st;
            st = strcmp(key, "__metadata__") == 0 ? st_metadata(p, at) : st_tensor(p, key, at);
            if (st) return st;
            if ((st = st_next(p, '}', &more))) return st;
        }
    }
    st_skip_ws(p);
    if (p->pos != p->end) return st_fail(p, p->pos, "only whitespace after the JSON header");
    return ATTN_OK;
}

/* Offsets: sorted, they must tile [0, data_size) exactly. */
static attn_status st_check_spans(st_parser *p) {
    attn_st_file *f = p->f;
    if (f->n) qsort(p->spans, (size_t)f->n, sizeof(st_span), st_span_cmp);
    uint64_t prev = 0;
    int prev_idx = -1;
    for (int i = 0; i < f->n; i++) {
        const st_span *s = &p->spans[i];
        if (s->begin < prev)
            return st_fail(p, s->at, "data_offsets of tensor \"%s\" not overlapping tensor \"%s\" (which ends at %"
                           PRIu64 ")", f->tensors[s->idx].name, f->tensors[prev_idx].name, prev);
        if (s->begin > prev)
            return st_fail(p, s->at, "data_offsets of tensor \"%s\" to begin at %" PRIu64 " (no hole in the data area)",
                           f->tensors[s->idx].name, prev);
        prev = s->end;
        prev_idx = s->idx;
    }
    if (prev != p->data_size)
        return st_fail(p, p->end + (size_t)prev, "tensor data to fill the data area: %" PRIu64
                       " bytes, tensors cover %" PRIu64, p->data_size, prev);
    return ATTN_OK;
}

void attn_st_free(attn_st_file *f) {
    if (!f) return;
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->buffer);
    memset(f, 0, sizeof *f);
}

attn_status attn_st_read(attn_st_file *f, const char *path, size_t max_bytes, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!f) {
        attn__set_err(err, err_size, "%s: offset 0: expected a file object (got NULL)", path ? path : "(null)");
        return ATTN_ERR_NULL;
    }
    memset(f, 0, sizeof *f);
    if (!path) { attn__set_err(err, err_size, "(null): offset 0: expected a path (got NULL)"); return ATTN_ERR_NULL; }
    if (max_bytes == 0) max_bytes = ST_DEFAULT_MAX;

    /* Pass 1: the file, in one read. */
    const char *kind;
    FILE *fp = attn__fopen_read(path, &kind);
    if (!fp) {
        if (kind) attn__set_err(err, err_size, "%s: offset 0: expected a regular file, found %s", path, kind);
        else attn__set_err(err, err_size, "%s: offset 0: expected a readable file (%s)", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        attn__set_err(err, err_size, "%s: offset 0: expected a file whose size can be read (%s)", path, strerror(errno));
        fclose(fp);
        return ATTN_ERR_IO;
    }
    if ((uint64_t)sb.st_size > (uint64_t)max_bytes) {
        attn__set_err(err, err_size, "%s: offset 0: expected a file of at most %zu bytes, found %" PRIu64 " bytes", path,
                max_bytes, (uint64_t)sb.st_size);
        fclose(fp);
        return ATTN_ERR_FORMAT;
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = malloc(size + 8);          /* + 8: room to align the data area */
    if (!buf) {
        attn__set_err(err, err_size, "%s: offset 0: expected memory for %zu bytes (out of memory)", path, size);
        fclose(fp);
        return ATTN_ERR_NOMEM;
    }
    size_t got = size ? fread(buf, 1, size, fp) : 0;
    int rerr = ferror(fp);
    fclose(fp);
    if (got != size) {
        attn__set_err(err, err_size, "%s: offset %zu: expected %zu bytes (%s)", path, got, size,
                rerr ? "read error" : "file shrank while reading");
        free(buf);
        return ATTN_ERR_IO;
    }
    return attn__st_parse(f, buf, size, path, err, err_size);
}

attn_status attn__st_parse(attn_st_file *f, unsigned char *buf, size_t size, const char *path, char *err,
                           size_t err_size) {
    if (err && err_size) err[0] = 0;
    memset(f, 0, sizeof *f);
    f->buffer = buf;
    f->size = size;

    st_parser p = {buf, 0, 0, 0, path, err, err_size, f, 0, 0, NULL, 0};
    attn_status st;

    /* Pass 2: header length. */
    if (size < 8) {
        st = st_fail(&p, 0, "an 8-byte header length, found a %zu-byte file", size);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > size - 8) {
        st = st_fail(&p, 0, "a header length of at most %zu (file size - 8), found %" PRIu64, size - 8, n);
        goto fail;
    }
    p.pos = 8;
    p.end = 8 + (size_t)n;
    p.data_size = size - p.end;

    /* Pass 3: the JSON header, then the offsets as a whole. */
    if ((st = st_header(&p)) != ATTN_OK) goto fail;
    if ((st = st_check_spans(&p)) != ATTN_OK) goto fail;

    /* Pass 4: data pointers, aligned for their dtype. Move the data area to an 8-byte boundary; if a
     * tensor is still misaligned (a writer that did not order tensors by element size), repack. */
    size_t data_at = (p.end + 7) & ~(size_t)7;
    if (data_at != p.end) memmove(buf + data_at, buf + p.end, (size_t)p.data_size);
    int misaligned = 0;
    for (int i = 0; i < f->n; i++)
        if (p.spans[i].begin % st_dtype_sizes[f->tensors[p.spans[i].idx].dtype]) misaligned = 1;
    if (!misaligned) {
        for (int i = 0; i < f->n; i++)
            f->tensors[p.spans[i].idx].data = buf + data_at + p.spans[i].begin;
    } else {
        size_t total = data_at;
        for (int i = 0; i < f->n; i++) total += (f->tensors[i].nbytes + 7) & ~(size_t)7;
        unsigned char *nb = malloc(total ? total : 1);
        if (!nb) { st = st_nomem(&p); goto fail; }
        memcpy(nb, buf, data_at);
        size_t at = data_at;
        for (int i = 0; i < f->n; i++) {             /* in file order of the data */
            attn_st_tensor *t = &f->tensors[p.spans[i].idx];
            memcpy(nb + at, buf + data_at + p.spans[i].begin, t->nbytes);
            t->data = nb + at;
            at += (t->nbytes + 7) & ~(size_t)7;
        }
        for (int i = 0; i < f->n; i++)
            f->tensors[i].name = (const char *)nb + ((const unsigned char *)f->tensors[i].name - buf);
        for (int i = 0; i < f->n_meta; i++) {
            f->meta_keys[i] = (char *)nb + ((unsigned char *)f->meta_keys[i] - buf);
            f->meta_values[i] = (char *)nb + ((unsigned char *)f->meta_values[i] - buf);
        }
        free(buf);
        f->buffer = nb;
        f->size = total;
    }
    free(p.spans);
    return ATTN_OK;

fail:
    free(p.spans);
    attn_st_free(f);
    return st;
}

const attn_st_tensor *attn_st_find(const attn_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *attn_st_meta(const attn_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* "[2, 3]" into s. */
static void st_shape_str(char *s, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(s + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(s + k, cap - k, "]");
}

attn_status attn_st_get_f32(const attn_st_file *f, const char *name, int ndim, const int64_t *shape,
                            const float **data, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (data) *data = NULL;
    if (!f || !name || !data || (ndim > 0 && !shape)) {
        attn__set_err(err, err_size, "attn_st_get_f32: a required pointer is NULL");
        return ATTN_ERR_NULL;
    }
    if (ndim < 0 || ndim > ATTN_ST_MAX_DIMS) {
        attn__set_err(err, err_size, "tensor \"%s\": ndim %d outside [0, %d]", name, ndim, ATTN_ST_MAX_DIMS);
        return ATTN_ERR_ARG;
    }
    const attn_st_tensor *t = attn_st_find(f, name);
    if (!t) {
        attn__set_err(err, err_size, "tensor \"%s\": expected in the file, not found", name);
        return ATTN_ERR_FORMAT;
    }
    if (t->dtype != ATTN_DTYPE_F32) {
        attn__set_err(err, err_size, "tensor \"%s\": expected dtype F32, found %s", name, st_dtype_names[t->dtype]);
        return ATTN_ERR_FORMAT;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[160], found[160];
        st_shape_str(want, sizeof want, ndim, shape);
        st_shape_str(found, sizeof found, t->ndim, t->shape);
        attn__set_err(err, err_size, "tensor \"%s\": expected shape %s, found %s", name, want, found);
        return ATTN_ERR_FORMAT;
    }
    *data = t->data;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Writer.
 */
typedef struct st_text {
    char *s;
    size_t len, cap;
    int oom;
} st_text;

static void st_put(st_text *t, const char *s, size_t n) {
    if (t->oom) return;
    if (t->len + n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 256;
        while (nc < t->len + n + 1) nc *= 2;
        char *q = realloc(t->s, nc);
        if (!q) { t->oom = 1; return; }
        t->s = q;
        t->cap = nc;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = 0;
}

static void st_puts(st_text *t, const char *s) { st_put(t, s, strlen(s)); }

/* A JSON string, escaped. The caller checked it is valid UTF-8. */
static void st_put_json_string(st_text *t, const char *s) {
    st_put(t, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') { esc[0] = '\\'; esc[1] = (char)*c; st_put(t, esc, 2); }
        else if (*c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *c); st_put(t, esc, 6); }
        else st_put(t, (const char *)c, 1);
    }
    st_put(t, "\"", 1);
}

static int st_valid_utf8(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = st_utf8_len((const unsigned char *)s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* Rank of a dtype in the data order: 8-byte types first, then 4-byte, 2-byte, 1-byte (every tensor stays
 * aligned to its element size). */
#define ST_SIZE_CLASSES 4
static int st_size_class(attn_dtype d) {
    const size_t z = st_dtype_sizes[d];
    return z == 8 ? 0 : z == 4 ? 1 : z == 2 ? 2 : 3;
}

static attn_status st_check_write_args(const char *path, const attn_st_tensor *tensors, int n,
                                       const char *const *meta_keys, const char *const *meta_values, int n_meta,
                                       char *err, size_t err_size) {
    if (n < 0 || n_meta < 0) {
        attn__set_err(err, err_size, "%s: expected nonnegative counts, found %d tensors and %d metadata pairs", path, n,
                n_meta);
        return ATTN_ERR_ARG;
    }
    if ((n > 0 && !tensors) || (n_meta > 0 && (!meta_keys || !meta_values))) {
        attn__set_err(err, err_size, "%s: expected tensor and metadata arrays, found NULL", path);
        return ATTN_ERR_NULL;
    }
    for (int i = 0; i < n; i++) {
        const attn_st_tensor *t = &tensors[i];
        if (!t->name) {
            attn__set_err(err, err_size, "%s: tensor %d: expected a name, found NULL", path, i);
            return ATTN_ERR_NULL;
        }
        if (!t->name[0] || strcmp(t->name, "__metadata__") == 0 || !st_valid_utf8(t->name)) {
            attn__set_err(err, err_size, "%s: tensor %d: expected a nonempty UTF-8 name other than __metadata__", path, i);
            return ATTN_ERR_ARG;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) {
                attn__set_err(err, err_size, "%s: tensor \"%s\": expected unique names, found it twice", path, t->name);
                return ATTN_ERR_ARG;
            }
        if ((int)t->dtype < 0 || t->dtype >= ATTN_DTYPE_COUNT) {
            attn__set_err(err, err_size, "%s: tensor \"%s\": expected a valid dtype, found %d", path, t->name, (int)t->dtype);
            return ATTN_ERR_ARG;
        }
        if (t->ndim < 0 || t->ndim > ATTN_ST_MAX_DIMS) {
            attn__set_err(err, err_size, "%s: tensor \"%s\": expected ndim in [0, %d], found %d", path, t->name,
                    ATTN_ST_MAX_DIMS, t->ndim);
            return ATTN_ERR_ARG;
        }
        uint64_t count = 1;
        int zero = 0;
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] < 0) {
                attn__set_err(err, err_size, "%s: tensor \"%s\": expected nonnegative dims, found %" PRId64, path, t->name,
                        t->shape[k]);
                return ATTN_ERR_SHAPE;
            }
            if (t->shape[k] == 0) zero = 1;
        }
        for (int k = 0; !zero && k < t->ndim; k++) {
            if (count > UINT64_MAX / (uint64_t)t->shape[k]) { count = UINT64_MAX; break; }
            count *= (uint64_t)t->shape[k];
        }
        if (zero) count = 0;
        uint64_t esz = st_dtype_sizes[t->dtype];
        if (count > UINT64_MAX / esz || count * esz != (uint64_t)t->nbytes) {
            attn__set_err(err, err_size, "%s: tensor \"%s\": expected nbytes = elements × %u, found %zu", path, t->name,
                    (unsigned)esz, t->nbytes);
            return ATTN_ERR_SHAPE;
        }
        if (t->nbytes && !t->data) {
            attn__set_err(err, err_size, "%s: tensor \"%s\": expected data, found NULL", path, t->name);
            return ATTN_ERR_NULL;
        }
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i]) {
            attn__set_err(err, err_size, "%s: metadata %d: expected a key and a value, found NULL", path, i);
            return ATTN_ERR_NULL;
        }
        if (!st_valid_utf8(meta_keys[i]) || !st_valid_utf8(meta_values[i])) {
            attn__set_err(err, err_size, "%s: metadata \"%s\": expected UTF-8 text", path, meta_keys[i]);
            return ATTN_ERR_ARG;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(meta_keys[j], meta_keys[i]) == 0) {
                attn__set_err(err, err_size, "%s: metadata \"%s\": expected unique keys, found it twice", path, meta_keys[i]);
                return ATTN_ERR_ARG;
            }
    }
    return ATTN_OK;
}

attn_status attn_st_write(const char *path, const attn_st_tensor *tensors, int n,
                          const char *const *meta_keys, const char *const *meta_values, int n_meta,
                          char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!path) { attn__set_err(err, err_size, "(null): expected a path, found NULL"); return ATTN_ERR_NULL; }
    attn_status st = st_check_write_args(path, tensors, n, meta_keys, meta_values, n_meta, err, err_size);
    if (st) return st;

    /* The header: tensors in the caller's order, their bytes placed by decreasing element size. */
    uint64_t *begin = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!begin) { attn__set_err(err, err_size, "%s: out of memory", path); return ATTN_ERR_NOMEM; }
    uint64_t off = 0;
    for (int c = 0; c < ST_SIZE_CLASSES; c++)
        for (int i = 0; i < n; i++)
            if (st_size_class(tensors[i].dtype) == c) { begin[i] = off; off += tensors[i].nbytes; }

    st_text h = {0};
    char num[64];
    st_puts(&h, "{");
    for (int i = 0; i < n; i++) {
        const attn_st_tensor *t = &tensors[i];
        if (i) st_puts(&h, ",");
        st_put_json_string(&h, t->name);
        st_puts(&h, ":{\"dtype\":\"");
        st_puts(&h, st_dtype_names[t->dtype]);
        st_puts(&h, "\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            snprintf(num, sizeof num, "%s%" PRId64, k ? "," : "", t->shape[k]);
            st_puts(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", begin[i], begin[i] + t->nbytes);
        st_puts(&h, num);
    }
    if (n_meta) {
        st_puts(&h, n ? ",\"__metadata__\":{" : "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) st_puts(&h, ",");
            st_put_json_string(&h, meta_keys[i]);
            st_puts(&h, ":");
            st_put_json_string(&h, meta_values[i]);
        }
        st_puts(&h, "}");
    }
    st_puts(&h, "}");
    while (!h.oom && h.len % 8) st_puts(&h, " ");
    size_t tmp_len = strlen(path) + 5;
    char *tmp = malloc(tmp_len);
    if (h.oom || !tmp) {
        free(h.s); free(tmp); free(begin);
        attn__set_err(err, err_size, "%s: out of memory", path);
        return ATTN_ERR_NOMEM;
    }
    snprintf(tmp, tmp_len, "%s.tmp", path);

    /* The temporary file: length, header, data by size class; flush, fsync, close, rename. */
    const char *failed = NULL;
    int e = 0;
    const char *kind = attn__not_replaceable(path);
    FILE *fp = NULL;
    if (kind) {
        free(tmp); free(h.s); free(begin);
        attn__set_err(err, err_size, "%s: exists and is %s, not a regular file: refusing to replace it (write to another path)", path, kind);
        return ATTN_ERR_IO;
    }
    fp = attn__fopen_tmp(tmp, &kind);             /* only a file we created is ever removed */
    int created = fp != NULL;
    if (!fp) {
        failed = kind ? "cannot create the temporary file: its path is taken by something that is not a regular file"
                      : "cannot create the temporary file";
        e = errno;
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(h.s, 1, h.len, fp) != h.len) {
        failed = "cannot write the temporary file";
        e = errno;
        goto done;
    }
    for (int c = 0; c < ST_SIZE_CLASSES && !failed; c++)
        for (int i = 0; i < n; i++)
            if (st_size_class(tensors[i].dtype) == c && tensors[i].nbytes &&
                fwrite(tensors[i].data, 1, tensors[i].nbytes, fp) != tensors[i].nbytes) {
                failed = "cannot write the temporary file";
                e = errno;
                break;
            }
    if (failed) goto done;
    if (fflush(fp) != 0) { failed = "cannot flush the temporary file"; e = errno; goto done; }
    if (fsync(fileno(fp)) != 0) { failed = "cannot fsync the temporary file"; e = errno; goto done; }
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) { failed = "cannot close the temporary file"; e = errno; goto done; }
    if (rename(tmp, path) != 0) { failed = "cannot rename the temporary file over it"; e = errno; goto done; }

    /* Make the rename itself durable: fsync the directory (best effort). */
    {
        char *dir = malloc(tmp_len);
        if (dir) {
            snprintf(dir, tmp_len, "%s", path);
            char *slash = strrchr(dir, '/');
            if (!slash) snprintf(dir, tmp_len, ".");
            else if (slash == dir) slash[1] = 0;
            else *slash = 0;
            int fd = open(dir, O_RDONLY);
            if (fd >= 0) { (void)fsync(fd); close(fd); }
            free(dir);
        }
    }
done:
    if (fp) fclose(fp);
    if (failed) {
        if (created) remove(tmp);
        attn__set_err(err, err_size, "%s: %s (%s: %s); the previous file is unchanged", path, failed, tmp,
                e ? strerror(e) : kind ? kind : "error");
    }
    free(tmp);
    free(h.s);
    free(begin);
    return failed ? ATTN_ERR_IO : ATTN_OK;
}
