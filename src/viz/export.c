/*
 * export.c — the numbers behind heatmaps: the weights of one or several maps, with their row and column
 * labels, written as NumPy .npy, CSV or JSON (chosen by the file's extension), each file atomically.
 *
 *   .npy   float32, little-endian, NumPy format 1.0, shape (rows, cols) for one map, (n, rows, cols) for
 *          several (which must then share their size); the labels and titles go to a sibling JSON file,
 *          "<name>.labels.json" for "<name>.npy", as NumPy arrays hold no strings.
 *   .csv   one line per cell: map,row,col,row_label,col_label,weight (labels quoted; indices from 0).
 *   .json  {"maps": [{"title", "row_title", "col_title", "rows": [labels], "cols": [labels],
 *          "values": [[row 0], [row 1], ...]}]}; NaN and infinities as null.
 * Numbers are printed with 9 significant digits, which give back the same float32.
 *
 * Allocations: one growing text buffer (or the .npy bytes) per file written.
 */
#define _POSIX_C_SOURCE 200809L

#include "viz/heatmap_internal.h"
#include "attn/heatmap.h"
#include "io/files.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void attn__ob_put(attn__outbuf *b, const char *p, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = 1; return; }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
}

void attn__ob_printf(attn__outbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) { b->oom = 1; return; }
    attn__ob_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* s as a JSON string: quotes, backslashes and control characters escaped; invalid UTF-8 as U+FFFD. */
static void ob_json_string(attn__outbuf *b, const char *s) {
    attn__ob_put(b, "\"", 1);
    size_t n = s ? strlen(s) : 0, i = 0;
    while (i < n) {
        uint32_t cp;
        int len = attn__utf8_next(s + i, n - i, &cp);
        if (cp == '"' || cp == '\\') { char e[2] = {'\\', (char)cp}; attn__ob_put(b, e, 2); }
        else if (cp < 0x20) attn__ob_printf(b, "\\u%04x", (unsigned)cp);
        else if (cp == 0xFFFD && !(len == 3 && (unsigned char)s[i] == 0xEF)) attn__ob_put(b, "\xEF\xBF\xBD", 3);
        else attn__ob_put(b, s + i, (size_t)len);
        i += (size_t)len;
    }
    attn__ob_put(b, "\"", 1);
}

/* s as a CSV field, always quoted ("" for a quote); invalid UTF-8 as U+FFFD. */
static void ob_csv_string(attn__outbuf *b, const char *s) {
    attn__ob_put(b, "\"", 1);
    size_t n = strlen(s), i = 0;
    while (i < n) {
        uint32_t cp;
        int len = attn__utf8_next(s + i, n - i, &cp);
        if (cp == '"') attn__ob_put(b, "\"\"", 2);
        else if (cp == 0xFFFD && !(len == 3 && (unsigned char)s[i] == 0xEF)) attn__ob_put(b, "\xEF\xBF\xBD", 3);
        else attn__ob_put(b, s + i, (size_t)len);
        i += (size_t)len;
    }
    attn__ob_put(b, "\"", 1);
}

static float value_at(const attn_heatmap *h, int r, int c) {
    int64_t stride = h->row_stride ? h->row_stride : h->cols;
    return h->values[(int64_t)r * stride + c];
}

/* Label i of a map's rows or columns: the given one, or its index. */
static const char *label_of(const char *const *labels, int i, char *buf, size_t n) {
    if (labels) return labels[i];
    snprintf(buf, n, "%d", i);
    return buf;
}

static void ob_number(attn__outbuf *b, float v, const char *non_finite) {
    if (isfinite(v)) attn__ob_printf(b, "%.9g", (double)v);
    else attn__ob_printf(b, "%s", non_finite);
}

static void put_labels_json(attn__outbuf *b, const char *const *labels, int n) {
    char num[16];
    attn__ob_put(b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i) attn__ob_put(b, ", ", 2);
        ob_json_string(b, label_of(labels, i, num, sizeof num));
    }
    attn__ob_put(b, "]", 1);
}

/* The JSON document: every map's titles and labels, and with values its numbers. */
static void build_json(attn__outbuf *b, const attn_heatmap *maps, int n, int with_values) {
    attn__ob_printf(b, "{\"maps\": [");
    for (int m = 0; m < n; m++) {
        const attn_heatmap *h = &maps[m];
        attn__ob_printf(b, "%s\n  {\"title\": ", m ? "," : "");
        if (h->title) ob_json_string(b, h->title); else attn__ob_printf(b, "null");
        attn__ob_printf(b, ", \"row_title\": ");
        if (h->row_title) ob_json_string(b, h->row_title); else attn__ob_printf(b, "null");
        attn__ob_printf(b, ", \"col_title\": ");
        if (h->col_title) ob_json_string(b, h->col_title); else attn__ob_printf(b, "null");
        attn__ob_printf(b, ", \"shape\": [%d, %d],\n   \"rows\": ", h->rows, h->cols);
        put_labels_json(b, h->row_labels, h->rows);
        attn__ob_printf(b, ",\n   \"cols\": ");
        put_labels_json(b, h->col_labels, h->cols);
        if (with_values) {
            attn__ob_printf(b, ",\n   \"values\": [");
            for (int r = 0; r < h->rows; r++) {
                attn__ob_printf(b, "%s\n    [", r ? "," : "");
                for (int c = 0; c < h->cols; c++) {
                    if (c) attn__ob_put(b, ", ", 2);
                    ob_number(b, value_at(h, r, c), "null");
                }
                attn__ob_put(b, "]", 1);
            }
            attn__ob_printf(b, "]");
        }
        attn__ob_printf(b, "}");
    }
    attn__ob_printf(b, "\n]}\n");
}

static void build_csv(attn__outbuf *b, const attn_heatmap *maps, int n) {
    char rn[16], cn[16];
    attn__ob_printf(b, "map,row,col,row_label,col_label,weight\n");
    for (int m = 0; m < n; m++) {
        const attn_heatmap *h = &maps[m];
        for (int r = 0; r < h->rows; r++)
            for (int c = 0; c < h->cols; c++) {
                attn__ob_printf(b, "%d,%d,%d,", m, r, c);
                ob_csv_string(b, label_of(h->row_labels, r, rn, sizeof rn));
                attn__ob_put(b, ",", 1);
                ob_csv_string(b, label_of(h->col_labels, c, cn, sizeof cn));
                attn__ob_put(b, ",", 1);
                ob_number(b, value_at(h, r, c), "nan");
                attn__ob_put(b, "\n", 1);
            }
    }
}

/* NumPy format 1.0: magic, version, header length (little-endian u16), a dict padded with spaces to a
 * multiple of 64 bytes ending in '\n', then the float32 data little-endian, C order. */
static void build_npy(attn__outbuf *b, const attn_heatmap *maps, int n) {
    char dict[160];
    int k = n == 1 ? snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }",
                              maps[0].rows, maps[0].cols)
                   : snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }",
                              n, maps[0].rows, maps[0].cols);
    size_t total = 10 + (size_t)k + 1;
    size_t padded = (total + 63) / 64 * 64;
    unsigned hl = (unsigned)(padded - 10);
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    attn__ob_put(b, (const char *)head, 10);
    attn__ob_put(b, dict, (size_t)k);
    for (size_t i = total; i < padded; i++) attn__ob_put(b, " ", 1);
    attn__ob_put(b, "\n", 1);
    for (int m = 0; m < n; m++)
        for (int r = 0; r < maps[m].rows; r++)
            for (int c = 0; c < maps[m].cols; c++) {
                float v = value_at(&maps[m], r, c);
                uint32_t u;
                memcpy(&u, &v, 4);
                char le[4] = {(char)(u & 0xff), (char)(u >> 8 & 0xff), (char)(u >> 16 & 0xff), (char)(u >> 24)};
                attn__ob_put(b, le, 4);
            }
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

attn_status attn__ob_write(attn__outbuf *b, const char *path, char *err, size_t err_size) {
    if (b->oom) { attn__set_err(err, err_size, "%s: out of memory", path); return ATTN_ERR_NOMEM; }
    char msg[512];
    if (attn__write_file_atomic(path, b->s, b->len, msg, sizeof msg) != 0) {
        attn__set_err(err, err_size, "%s: %s", path, msg);
        return ATTN_ERR_IO;
    }
    return ATTN_OK;
}

attn_status attn_heatmap_save_values(const attn_heatmap *maps, int n, const char *path, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!maps || !path) { attn__set_err(err, err_size, "weights: NULL argument"); return ATTN_ERR_NULL; }
    if (n <= 0 || n > 1024) {
        attn__set_err(err, err_size, "%s: number of maps out of range", path);
        return ATTN_ERR_SIZE;
    }
    for (int m = 0; m < n; m++) {
        const attn_heatmap *h = &maps[m];
        attn_status st = ATTN_OK;
        if (!h->values) st = ATTN_ERR_NULL;
        else if (h->rows <= 0 || h->cols <= 0 || h->rows > 65536 || h->cols > 65536) st = ATTN_ERR_SIZE;
        else if (h->row_stride != 0 && h->row_stride < h->cols) st = ATTN_ERR_STRIDE;
        for (int i = 0; st == ATTN_OK && h->row_labels && i < h->rows; i++) if (!h->row_labels[i]) st = ATTN_ERR_NULL;
        for (int i = 0; st == ATTN_OK && h->col_labels && i < h->cols; i++) if (!h->col_labels[i]) st = ATTN_ERR_NULL;
        if (st != ATTN_OK) {
            attn__set_err(err, err_size, "%s: invalid map %d: %s", path, m, attn_status_string(st));
            return st;
        }
    }
    const int npy = ends_with(path, ".npy"), csv = ends_with(path, ".csv"), json = ends_with(path, ".json");
    if (!npy && !csv && !json) {
        attn__set_err(err, err_size, "%s: unknown format: the name must end in .npy, .csv or .json", path);
        return ATTN_ERR_ARG;
    }
    if (npy)
        for (int m = 1; m < n; m++)
            if (maps[m].rows != maps[0].rows || maps[m].cols != maps[0].cols) {
                attn__set_err(err, err_size, "%s: the maps differ in size (%dx%d, %dx%d): one .npy array cannot hold "
                              "them; write .json or .csv", path, maps[0].rows, maps[0].cols, maps[m].rows, maps[m].cols);
                return ATTN_ERR_SIZE;
            }
    attn__outbuf b = {0};
    attn_status st;
    if (csv) build_csv(&b, maps, n);
    else if (json) build_json(&b, maps, n, 1);
    else build_npy(&b, maps, n);
    st = attn__ob_write(&b, path, err, err_size);
    free(b.s);
    if (st != ATTN_OK || !npy) return st;
    /* the labels beside the array */
    size_t len = strlen(path) - 4;
    char *lp = malloc(len + 13);
    if (!lp) { attn__set_err(err, err_size, "%s: out of memory", path); return ATTN_ERR_NOMEM; }
    memcpy(lp, path, len);
    memcpy(lp + len, ".labels.json", 13);
    attn__outbuf lb = {0};
    build_json(&lb, maps, n, 0);
    st = attn__ob_write(&lb, lp, err, err_size);
    free(lb.s);
    free(lp);
    return st;
}
