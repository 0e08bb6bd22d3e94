/*
 * table.c — tables of numbers with named columns (a training history: one row per epoch), and their CSV
 * form: a header line of names, then rows of numbers; an empty field is a missing value (NaN).
 *
 * Allocations: init allocates the names and their array; append doubles the rows when full; the writer
 * builds the whole file in one buffer (then writes it atomically); the reader holds the file in memory.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn/plot.h"
#include "internal.h"
#include "io/files.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_MAX_NAME 63
#define TABLE_MAX_FILE ((size_t)64 << 20)

/* NULL when name is a valid column name, else what is wrong with it. */
static const char *bad_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0) return "is empty";
    if (n > TABLE_MAX_NAME) return "is longer than 63 characters";
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return "has a character other than letters, digits, '_', '.' and '-'";
    }
    return NULL;
}

attn_status attn_table_init(attn_table *t, int n_cols, const char *const *names) {
    if (!t) return ATTN_ERR_NULL;
    memset(t, 0, sizeof *t);
    if (!names) return ATTN_ERR_NULL;
    if (n_cols < 1 || n_cols > ATTN_TABLE_MAX_COLS) return ATTN_ERR_SIZE;
    for (int i = 0; i < n_cols; i++) {
        if (!names[i]) return ATTN_ERR_NULL;
        if (bad_name(names[i])) return ATTN_ERR_ARG;
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0) return ATTN_ERR_ARG;
    }
    t->names = calloc((size_t)n_cols, sizeof(char *));
    if (!t->names) return ATTN_ERR_NOMEM;
    t->n_cols = n_cols;
    for (int i = 0; i < n_cols; i++) {
        t->names[i] = strdup(names[i]);
        if (!t->names[i]) { attn_table_free(t); return ATTN_ERR_NOMEM; }
    }
    return ATTN_OK;
}

attn_status attn_table_append(attn_table *t, const double *row) {
    if (!t || !row || !t->names) return ATTN_ERR_NULL;
    if (t->n_rows >= ATTN_TABLE_MAX_ROWS) return ATTN_ERR_SIZE;
    if (t->n_rows == t->cap_rows) {
        int cap = t->cap_rows ? 2 * t->cap_rows : 16;
        if (cap > ATTN_TABLE_MAX_ROWS) cap = ATTN_TABLE_MAX_ROWS;
        double *v = realloc(t->values, sizeof(double) * (size_t)cap * (size_t)t->n_cols);
        if (!v) return ATTN_ERR_NOMEM;
        t->values = v;
        t->cap_rows = cap;
    }
    memcpy(t->values + (size_t)t->n_rows * t->n_cols, row, sizeof(double) * (size_t)t->n_cols);
    t->n_rows++;
    return ATTN_OK;
}

int attn_table_column(const attn_table *t, const char *name) {
    if (!t || !name) return -1;
    for (int i = 0; i < t->n_cols; i++)
        if (strcmp(t->names[i], name) == 0) return i;
    return -1;
}

void attn_table_free(attn_table *t) {
    if (!t) return;
    if (t->names)
        for (int i = 0; i < t->n_cols; i++) free(t->names[i]);
    free(t->names);
    free(t->values);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------------------------------------------
 * Writing.
 */
typedef struct strbuf {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->s && b->len + (size_t)k < b->cap) { b->len += (size_t)k; return; }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
}

attn_status attn_table_write_csv(const attn_table *t, const char *path, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!t || !path || !t->names) { attn__set_err(err, err_size, "table: NULL argument"); return ATTN_ERR_NULL; }
    strbuf b = {0};
    for (int c = 0; c < t->n_cols; c++) sb_printf(&b, "%s%s", c ? "," : "", t->names[c]);
    sb_printf(&b, "\n");
    for (int r = 0; r < t->n_rows; r++) {
        for (int c = 0; c < t->n_cols; c++) {
            double v = t->values[(size_t)r * t->n_cols + c];
            if (c) sb_printf(&b, ",");
            if (isfinite(v)) sb_printf(&b, "%.6g", v);
            else if (!isnan(v)) sb_printf(&b, "%s", v > 0 ? "inf" : "-inf");
        }
        sb_printf(&b, "\n");
    }
    if (b.oom) { free(b.s); attn__set_err(err, err_size, "%s: out of memory", path); return ATTN_ERR_NOMEM; }
    char msg[512];
    int rc = attn__write_file_atomic(path, b.s, b.len, msg, sizeof msg);
    free(b.s);
    if (rc) { attn__set_err(err, err_size, "%s: %s", path, msg); return ATTN_ERR_IO; }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Reading.
 */

/* Splits line (NUL-terminated, no line end) at commas in place, trimming spaces: fields[] point into it.
 * Returns the number of fields (at most max + 1, to say "too many"). */
static int split_fields(char *line, char **fields, int max) {
    int n = 0;
    char *s = line;
    for (;;) {
        char *e = strchr(s, ',');
        if (e) *e = 0;
        while (*s == ' ' || *s == '\t') s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = 0;
        if (n <= max) fields[n] = s;
        n++;
        if (!e) break;
        s = e + 1;
    }
    return n > max + 1 ? max + 1 : n;
}

/* Parses a number field: empty is NaN; "nan", "inf", "-inf" accepted. Returns 0 or -1. */
static int parse_number(const char *s, double *v) {
    if (!*s) { *v = NAN; return 0; }
    char *end = NULL;
    errno = 0;
    *v = strtod(s, &end);
    if (end == s || *end) return -1;
    if (errno == ERANGE && isfinite(*v)) errno = 0;          /* underflow to 0 is fine */
    return errno ? -1 : 0;
}

attn_status attn_table_read_csv(attn_table *t, const char *path, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!t) return ATTN_ERR_NULL;
    memset(t, 0, sizeof *t);
    if (!path) return ATTN_ERR_NULL;
    const char *kind = NULL;
    FILE *f = attn__fopen_read(path, &kind);
    if (!f) {
        if (kind) attn__set_err(err, err_size, "%s: is %s, not a regular file", path, kind);
        else attn__set_err(err, err_size, "%s: cannot read: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int too_big = 0;
    while (buf) {
        if (n + 1 >= cap) {
            if (cap > TABLE_MAX_FILE) { too_big = 1; break; }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (!buf) { attn__set_err(err, err_size, "%s: out of memory", path); return ATTN_ERR_NOMEM; }
    if (too_big || rerr) {
        free(buf);
        if (too_big) attn__set_err(err, err_size, "%s: larger than 64 MiB: not a training history", path);
        else attn__set_err(err, err_size, "%s: read error", path);
        return too_big ? ATTN_ERR_FORMAT : ATTN_ERR_IO;
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        attn__set_err(err, err_size, "%s: holds a NUL byte: not a CSV text file", path);
        free(buf);
        return ATTN_ERR_FORMAT;
    }

    attn_status st = ATTN_OK;
    char *fields[ATTN_TABLE_MAX_COLS + 1];
    double row[ATTN_TABLE_MAX_COLS];
    int line_no = 0, have_header = 0;
    char *s = buf;
    while (*s && st == ATTN_OK) {
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        line_no++;
        size_t len = strlen(s);
        if (len && s[len - 1] == '\r') s[--len] = 0;
        char *p = s;
        while (*p == ' ' || *p == '\t') p++;
        s = e ? e + 1 : s + len;
        if (!*p) continue;                             /* a blank line */
        int nf = split_fields(p, fields, ATTN_TABLE_MAX_COLS);
        if (!have_header) {
            if (nf > ATTN_TABLE_MAX_COLS) {
                attn__set_err(err, err_size, "%s: line %d: more than %d columns in the header", path, line_no,
                              ATTN_TABLE_MAX_COLS);
                st = ATTN_ERR_FORMAT;
                break;
            }
            for (int i = 0; i < nf && st == ATTN_OK; i++) {
                const char *why = bad_name(fields[i]);
                double dummy;
                if (!why && parse_number(fields[i], &dummy) == 0) why = "is a number: the first line must name the columns";
                for (int j = 0; j < i && !why; j++)
                    if (strcmp(fields[i], fields[j]) == 0) why = "appears twice";
                if (why) {
                    attn__set_err(err, err_size, "%s: line %d: header column %d ('%.40s') %s", path, line_no, i + 1,
                                  fields[i], why);
                    st = ATTN_ERR_FORMAT;
                }
            }
            if (st == ATTN_OK && (st = attn_table_init(t, nf, (const char *const *)fields)) != ATTN_OK)
                attn__set_err(err, err_size, "%s: line %d: %s", path, line_no, attn_status_string(st));
            have_header = 1;
            continue;
        }
        if (nf != t->n_cols) {
            attn__set_err(err, err_size, "%s: line %d: %s%d fields, expected %d as the header has", path, line_no,
                          nf > ATTN_TABLE_MAX_COLS ? "more than " : "", nf > ATTN_TABLE_MAX_COLS ? ATTN_TABLE_MAX_COLS : nf,
                          t->n_cols);
            st = ATTN_ERR_FORMAT;
            break;
        }
        for (int i = 0; i < nf; i++)
            if (parse_number(fields[i], &row[i]) != 0) {
                attn__set_err(err, err_size, "%s: line %d: field %d (%s): '%.40s' is not a number", path, line_no,
                              i + 1, t->names[i], fields[i]);
                st = ATTN_ERR_FORMAT;
                break;
            }
        if (st == ATTN_OK && (st = attn_table_append(t, row)) != ATTN_OK)
            attn__set_err(err, err_size, "%s: line %d: %s", path, line_no,
                          st == ATTN_ERR_SIZE ? "more than 1,000,000 rows" : attn_status_string(st));
    }
    if (st == ATTN_OK && !have_header) {
        attn__set_err(err, err_size, "%s: empty: expected a header line naming the columns", path);
        st = ATTN_ERR_FORMAT;
    }
    free(buf);
    if (st != ATTN_OK) attn_table_free(t);
    return st;
}
