/*
 * tar.c — a streaming .tar.gz reader (zlib inflate with gzip framing, windowBits 15+16, then 512-byte
 * ustar/GNU headers) and a minimal .tar.gz writer for test fixtures. No external program is run.
 *
 * The reader checks: the gzip framing and CRC (zlib), a stream cut short, each header's checksum (the
 * unsigned sum of its 512 bytes with the checksum field read as spaces; the historic signed sum is
 * accepted too), octal fields, the size (octal or GNU base-256), and that the archive ends with a zero
 * block. GNU long names ('L') and pax path records ('x') are understood; other pax/GNU extras are skipped.
 */
#define _POSIX_C_SOURCE 200809L   /* fmemopen */
#include "data/tar.h"
#include "io/files.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define TAR_BLOCK 512
#define TAR_IN_CHUNK (1 << 16)

struct attn__tar {
    FILE *f;
    char path[512];
    z_stream z;
    int z_open;
    int z_end;                   /* the last gzip member ended and no input is left */
    uint64_t in_read;            /* compressed bytes read from the file */
    uint64_t pos;                /* uncompressed bytes delivered */
    uint64_t remaining;          /* content bytes of the current entry not yet consumed */
    uint64_t padding;            /* padding after the current entry's content */
    char entry[1024];            /* current entry's name, for messages */
    unsigned char in[TAR_IN_CHUNK];   /* last, and not cleared at open: only z.avail_in bytes of it are read */
};

/* Takes f and starts inflating; shared by the two openers. */
static attn_status tar_start(attn__tar **out, FILE *f, const char *path, char *err, size_t err_size) {
    if (!f) {
        attn__set_err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    attn__tar *t = malloc(sizeof *t);
    if (!t) {
        fclose(f);
        return ATTN_ERR_NOMEM;
    }
    memset(t, 0, offsetof(attn__tar, in));
    snprintf(t->path, sizeof t->path, "%s", path);
    t->f = f;
    if (inflateInit2(&t->z, 15 + 16) != Z_OK) {
        fclose(f);
        free(t);
        return ATTN_ERR_NOMEM;
    }
    t->z_open = 1;
    *out = t;
    return ATTN_OK;
}

attn_status attn__tar_open(attn__tar **out, const char *path, char *err, size_t err_size) {
    if (!out || !path) return ATTN_ERR_NULL;
    *out = NULL;
    const char *kind;
    FILE *f = attn__fopen_read(path, &kind);
    if (!f && kind) {
        attn__set_err(err, err_size, "%s: offset 0: expected a .tar.gz (a regular file), found %s", path, kind);
        return ATTN_ERR_IO;
    }
    return tar_start(out, f, path, err, err_size);
}

attn_status attn__tar_open_mem(attn__tar **out, const void *data, size_t n, const char *name, char *err,
                               size_t err_size) {
    if (!out || !name || (!data && n)) return ATTN_ERR_NULL;
    *out = NULL;
    static const char empty[1];
    return tar_start(out, fmemopen((void *)(n ? data : empty), n, "rb"), name, err, err_size);
}

void attn__tar_close(attn__tar *t) {
    if (!t) return;
    if (t->z_open) inflateEnd(&t->z);
    if (t->f) fclose(t->f);
    free(t);
}

/* Inflates up to n bytes into dst; *got = bytes produced (< n only at the end of the last member). */
static attn_status z_read(attn__tar *t, unsigned char *dst, size_t n, size_t *got, char *err, size_t es) {
    *got = 0;
    while (*got < n && !t->z_end) {
        if (t->z.avail_in == 0) {
            size_t r = fread(t->in, 1, TAR_IN_CHUNK, t->f);
            if (r == 0) {
                if (ferror(t->f)) {
                    attn__set_err(err, es, "%s: read error at compressed offset %llu: %s", t->path,
                            (unsigned long long)t->in_read, strerror(errno));
                    return ATTN_ERR_IO;
                }
                attn__set_err(err, es, "%s: truncated gzip stream: the file ends at compressed offset %llu "
                        "(uncompressed offset %llu) before the end of the stream", t->path,
                        (unsigned long long)t->in_read, (unsigned long long)(t->pos + *got));
                return ATTN_ERR_FORMAT;
            }
            t->in_read += r;
            t->z.next_in = t->in;
            t->z.avail_in = (uInt)r;
        }
        t->z.next_out = dst + *got;
        t->z.avail_out = (uInt)((n - *got) > (1u << 30) ? (1u << 30) : (n - *got));
        uInt before = t->z.avail_out;
        int rc = inflate(&t->z, Z_NO_FLUSH);
        *got += before - t->z.avail_out;
        if (rc == Z_STREAM_END) {
            /* Another gzip member may follow (concatenated .gz files are one stream). */
            if (t->z.avail_in == 0) {
                int c = fgetc(t->f);
                if (c == EOF) { t->z_end = 1; break; }
                ungetc(c, t->f);
            }
            inflateReset(&t->z);
        } else if (rc == Z_BUF_ERROR && t->z.avail_in == 0) {
            continue;   /* needs more input */
        } else if (rc != Z_OK) {
            attn__set_err(err, es, "%s: corrupt gzip data near compressed offset %llu: %s", t->path,
                    (unsigned long long)(t->in_read - t->z.avail_in),
                    t->z.msg ? t->z.msg : "inflate failed");
            return ATTN_ERR_FORMAT;
        }
    }
    t->pos += *got;
    return ATTN_OK;
}

/* Reads exactly n bytes; the end of the data before that is a truncated archive. */
static attn_status z_read_exact(attn__tar *t, void *dst, size_t n, const char *what, char *err, size_t es) {
    size_t got;
    uint64_t at = t->pos;
    attn_status st = z_read(t, dst, n, &got, err, es);
    if (st != ATTN_OK) return st;
    if (got != n) {
        attn__set_err(err, es, "%s: truncated tar: %s at offset %llu needs %zu bytes, the archive ends after %zu",
                t->path, what, (unsigned long long)at, n, got);
        return ATTN_ERR_FORMAT;
    }
    return ATTN_OK;
}

static attn_status z_skip(attn__tar *t, uint64_t n, const char *what, char *err, size_t es) {
    unsigned char buf[8192];
    while (n) {
        size_t k = n > sizeof buf ? sizeof buf : (size_t)n;
        attn_status st = z_read_exact(t, buf, k, what, err, es);
        if (st != ATTN_OK) return st;
        n -= k;
    }
    return ATTN_OK;
}

/* Parses an octal field (NUL/space padded), or GNU base-256 when the top bit of the first byte is set. */
static int parse_number(const unsigned char *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    if (p[0] & 0x80) {
        if (p[0] & 0x40) return -1;               /* negative */
        v = p[0] & 0x3f;
        for (size_t i = 1; i < n; i++) {
            if (v >> 55) return -1;
            v = (v << 8) | p[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && p[i] == ' ') i++;
    size_t digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (v >> 60) return -1;
        v = v * 8 + (uint64_t)(p[i] - '0');
    }
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != '\0') return -1;
    if (!digits) return -1;
    *out = v;
    return 0;
}

/* Branch-free, so that the compiler vectorizes it. */
static int block_is_zero(const unsigned char *b) {
    unsigned char any = 0;
    for (int i = 0; i < TAR_BLOCK; i++) any |= b[i];
    return any == 0;
}

/* Reads one header block and its checksum; *zero set for an all-zero block. */
static attn_status read_header(attn__tar *t, unsigned char *h, int *zero, uint64_t *at, char *err, size_t es) {
    *at = t->pos;
    size_t got;
    attn_status st = z_read(t, h, TAR_BLOCK, &got, err, es);
    if (st != ATTN_OK) return st;
    if (got != TAR_BLOCK) {
        if (got == 0)
            attn__set_err(err, es, "%s: truncated tar: the archive ends at offset %llu without its end-of-archive "
                    "blocks (last entry: %s)", t->path, (unsigned long long)*at, t->entry[0] ? t->entry : "none");
        else
            attn__set_err(err, es, "%s: truncated tar: header at offset %llu has %zu of 512 bytes", t->path,
                    (unsigned long long)*at, got);
        return ATTN_ERR_FORMAT;
    }
    *zero = block_is_zero(h);
    if (*zero) return ATTN_OK;
    uint64_t want;
    if (parse_number(h + 148, 8, &want) != 0) {
        attn__set_err(err, es, "%s: offset %llu: not a tar header (checksum field is not octal; after entry %s)",
                t->path, (unsigned long long)*at, t->entry[0] ? t->entry : "none");
        return ATTN_ERR_FORMAT;
    }
    /* The unsigned sum and the count of bytes >= 128 over the whole block (a branch-free loop of
     * unsigned additions, which the compiler vectorizes), then the checksum field's eight bytes replaced
     * by spaces. The signed sum counts each byte >= 128 as 256 less. */
    uint64_t usum = 0, high = 0;
    for (int i = 0; i < TAR_BLOCK; i++) {
        usum += h[i];
        high += h[i] >> 7;
    }
    for (int i = 148; i < 156; i++) {
        usum -= h[i];
        high -= h[i] >> 7;
    }
    usum += 8 * ' ';
    int64_t ssum = (int64_t)usum - 256 * (int64_t)high;
    if (usum != want && (uint64_t)ssum != want) {
        attn__set_err(err, es, "%s: offset %llu: tar header checksum mismatch (stored %llu, computed %llu; after "
                "entry %s)", t->path, (unsigned long long)*at, (unsigned long long)want,
                (unsigned long long)usum, t->entry[0] ? t->entry : "none");
        return ATTN_ERR_FORMAT;
    }
    return ATTN_OK;
}

/* Reads a long-name or pax record body of n bytes (and its padding) into *out, NUL-terminated. */
static attn_status read_meta(attn__tar *t, uint64_t n, char **out, uint64_t at, char *err, size_t es) {
    *out = NULL;
    if (n >= (1u << 20)) {
        attn__set_err(err, es, "%s: offset %llu: extended header of %llu bytes is too large", t->path,
                (unsigned long long)at, (unsigned long long)n);
        return ATTN_ERR_FORMAT;
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) return ATTN_ERR_NOMEM;
    attn_status st = z_read_exact(t, buf, (size_t)n, "extended header", err, es);
    if (st == ATTN_OK) st = z_skip(t, (TAR_BLOCK - n % TAR_BLOCK) % TAR_BLOCK, "padding", err, es);
    if (st != ATTN_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    *out = buf;
    return ATTN_OK;
}

/* Reads the records of a pax extended header (rec, n bytes; its content starts at tar offset at):
 * "<len> <key>=<value>\n", len the decimal length of the whole record. Takes the path= value into name.
 * A length that is not plain decimal digits, does not cover its own "<len> " prefix and the newline, or
 * runs past the header is an error: the reader never steps backwards or stays in place. */
static attn_status pax_records(attn__tar *t, const char *rec, size_t n, uint64_t at, char *name, size_t cap,
                               char *err, size_t es) {
    size_t i = 0;
    while (i < n) {
        if (rec[i] == '\0') break;                  /* NUL padding after the last record */
        size_t d = i, len = 0;
        while (d < n && rec[d] >= '0' && rec[d] <= '9' && len <= n) len = len * 10 + (size_t)(rec[d++] - '0');
        const char *eq = NULL;
        int ok = d > i && d < n && rec[d] == ' ' && len <= n - i && len >= d - i + 4 && rec[i + len - 1] == '\n';
        if (ok) eq = memchr(rec + d + 1, '=', i + len - 1 - (d + 1));
        if (!ok || !eq || eq == rec + d + 1) {
            attn__set_err(err, es, "%s: offset %llu: expected a pax record \"<length> <key>=<value>\\n\" whose "
                    "decimal length covers the record and stays inside the %zu-byte extended header (record at "
                    "byte %zu of it)", t->path, (unsigned long long)(at + i), n, i);
            return ATTN_ERR_FORMAT;
        }
        const char *key = rec + d + 1, *val = eq + 1;
        size_t vlen = (size_t)(rec + i + len - 1 - val);
        if (eq - key == 4 && memcmp(key, "path", 4) == 0) {
            size_t k = vlen < cap ? vlen : cap - 1;
            memcpy(name, val, k);
            name[k] = '\0';
        }
        i += len;
    }
    return ATTN_OK;
}

attn_status attn__tar_next(attn__tar *t, attn__tar_entry *e, int *done, char *err, size_t es) {
    if (!t || !e || !done) return ATTN_ERR_NULL;
    *done = 0;
    attn_status st = z_skip(t, t->remaining + t->padding, "entry content", err, es);
    if (st != ATTN_OK) return st;
    t->remaining = t->padding = 0;

    char long_name[1024] = "";
    unsigned char h[TAR_BLOCK];
    for (;;) {
        int zero;
        uint64_t at;
        st = read_header(t, h, &zero, &at, err, es);
        if (st != ATTN_OK) return st;
        if (zero) {
            /* End of archive. Drain the rest of the gzip stream (zero padding up to the record size) so
             * that its CRC and length trailer are checked too. */
            unsigned char buf[8192];
            size_t got;
            do {
                st = z_read(t, buf, sizeof buf, &got, err, es);
                if (st != ATTN_OK) return st;
            } while (got == sizeof buf);
            *done = 1;
            return ATTN_OK;
        }
        uint64_t size;
        if (parse_number(h + 124, 12, &size) != 0) {
            attn__set_err(err, es, "%s: offset %llu: tar header size field is not a number", t->path,
                    (unsigned long long)at);
            return ATTN_ERR_FORMAT;
        }
        char type = h[156] ? (char)h[156] : '0';
        if (type == 'L' || type == 'x') {
            char *rec;
            st = read_meta(t, size, &rec, at, err, es);
            if (st != ATTN_OK) return st;
            if (type == 'L') snprintf(long_name, sizeof long_name, "%s", rec);
            else st = pax_records(t, rec, (size_t)size, at + TAR_BLOCK, long_name, sizeof long_name, err, es);
            free(rec);
            if (st != ATTN_OK) return st;
            continue;
        }
        if (type == 'g' || type == 'K') {   /* global pax header, GNU long link: not needed */
            st = z_skip(t, size + (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK, "extended header", err, es);
            if (st != ATTN_OK) return st;
            continue;
        }
        memset(e, 0, sizeof *e);
        if (long_name[0]) {
            snprintf(e->name, sizeof e->name, "%s", long_name);
        } else {
            char name[101], prefix[156];
            memcpy(name, h, 100);
            name[100] = '\0';
            prefix[0] = '\0';
            if (memcmp(h + 257, "ustar", 5) == 0 && h[262] == '\0') {   /* POSIX ustar: prefix field */
                memcpy(prefix, h + 345, 155);
                prefix[155] = '\0';
            }
            if (prefix[0]) snprintf(e->name, sizeof e->name, "%s/%s", prefix, name);
            else snprintf(e->name, sizeof e->name, "%s", name);
        }
        e->type = type;
        /* Only regular files carry content for us; hard/sym links, directories, devices carry none. */
        e->size = (type == '0' || type == '7') ? size : 0;
        uint64_t stored = (type == '1' || type == '2' || type == '3' || type == '4' || type == '5' ||
                           type == '6') ? 0 : size;
        e->offset = at;
        snprintf(t->entry, sizeof t->entry, "%s", e->name);
        t->remaining = stored;
        t->padding = (TAR_BLOCK - stored % TAR_BLOCK) % TAR_BLOCK;
        return ATTN_OK;
    }
}

attn_status attn__tar_read(attn__tar *t, void *buf, size_t n, char *err, size_t es) {
    if (!t || (!buf && n)) return ATTN_ERR_NULL;
    if (n > t->remaining) {
        attn__set_err(err, es, "%s: entry %s: asked for %zu bytes, it has %llu left", t->path, t->entry, n,
                (unsigned long long)t->remaining);
        return ATTN_ERR_ARG;
    }
    char what[1100];
    snprintf(what, sizeof what, "content of %s", t->entry);
    attn_status st = z_read_exact(t, buf, n, what, err, es);
    if (st != ATTN_OK) return st;
    t->remaining -= n;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Writer: ustar headers through gzwrite.
 */
struct attn__tar_writer {
    gzFile gz;
};

attn_status attn__tar_writer_open(attn__tar_writer **out, const char *path) {
    if (!out || !path) return ATTN_ERR_NULL;
    attn__tar_writer *w = calloc(1, sizeof *w);
    if (!w) return ATTN_ERR_NOMEM;
    w->gz = gzopen(path, "wb6");
    if (!w->gz) {
        free(w);
        return ATTN_ERR_IO;
    }
    *out = w;
    return ATTN_OK;
}

attn_status attn__tar_writer_add(attn__tar_writer *w, const char *name, char type, const void *data, size_t n) {
    if (!w || !name || (!data && n)) return ATTN_ERR_NULL;
    size_t len = strlen(name);
    if (len == 0 || len > 100) return ATTN_ERR_ARG;
    unsigned char h[TAR_BLOCK];
    memset(h, 0, sizeof h);
    memcpy(h, name, len);
    snprintf((char *)h + 100, 8, "%07o", type == '5' ? 0755u : 0644u);
    snprintf((char *)h + 108, 8, "%07o", 0u);
    snprintf((char *)h + 116, 8, "%07o", 0u);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf((char *)h + 136, 12, "%011o", 0u);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);   /* "ustar\0" */
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);   /* six digits, NUL, and the space already there */
    h[155] = ' ';
    if (gzwrite(w->gz, h, TAR_BLOCK) != TAR_BLOCK) return ATTN_ERR_IO;
    if (n && gzwrite(w->gz, data, (unsigned)n) != (int)n) return ATTN_ERR_IO;
    size_t pad = (TAR_BLOCK - n % TAR_BLOCK) % TAR_BLOCK;
    if (pad) {
        unsigned char z[TAR_BLOCK];
        memset(z, 0, sizeof z);
        if (gzwrite(w->gz, z, (unsigned)pad) != (int)pad) return ATTN_ERR_IO;
    }
    return ATTN_OK;
}

attn_status attn__tar_writer_close(attn__tar_writer *w) {
    if (!w) return ATTN_ERR_NULL;
    unsigned char z[2 * TAR_BLOCK];
    memset(z, 0, sizeof z);
    attn_status st = ATTN_OK;
    if (gzwrite(w->gz, z, sizeof z) != (int)sizeof z) st = ATTN_ERR_IO;
    if (gzclose(w->gz) != Z_OK) st = ATTN_ERR_IO;
    free(w);
    return st;
}
