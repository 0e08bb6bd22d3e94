/*
 * heatmap.c — pictures of attention. One heatmap is drawn into an RGB canvas: a title on top, the row
 * labels (queries) on the left, the column labels (keys) under the grid written upward, the axis names,
 * and a color scale bar with its min and max on the right. The canvas goes to a PNG through libpng,
 * written to "<path>.tmp" and renamed over path (canvas.c). The terminal renderer draws the same matrix with 24-bit
 * ANSI background colors (or shaded characters), the column labels across when they fit their two
 * characters, written vertically otherwise.
 *
 * Allocations: one canvas (width·height·3 bytes) and one row-pointer array per PNG; none in the
 * terminal renderer.
 */
#define _POSIX_C_SOURCE 200809L

#include "viz/heatmap_internal.h"
#include "io/files.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HM_MARGIN 12
#define HM_TEXT_SCALE 2          /* title, axis names and scale numbers: 12 px per character */
#define HM_MAX_LABEL 40          /* characters of a label drawn; longer ones are cut with '~' */
#define HM_MAX_CELLS 4096        /* per side */
#define HM_MAX_PIXELS (64u << 20)

/* ---------------------------------------------------------------------------------------------------
 * Palettes: anchors evenly spaced over [0, 1], linear in between, rounded to the nearest integer.
 */
typedef struct palette_def {
    const char *name;
    int n;                           /* anchors */
    unsigned char a[5][3];
} palette_def;

static const palette_def palettes[ATTN_PALETTE_COUNT] = {
    [ATTN_PALETTE_MAGMA] = {"magma", 5, {
        {12, 7, 46},      /* dark indigo */
        {72, 22, 112},    /* purple */
        {170, 46, 92},    /* magenta-red */
        {241, 125, 34},   /* orange */
        {252, 240, 140},  /* pale yellow */
    }},
    [ATTN_PALETTE_VIRIDIS] = {"viridis", 5, {
        {68, 1, 84},      /* dark violet */
        {59, 82, 139},    /* blue */
        {33, 145, 140},   /* teal */
        {94, 201, 98},    /* green */
        {253, 231, 37},   /* yellow */
    }},
    [ATTN_PALETTE_GRAY] = {"gray", 2, {{0, 0, 0}, {255, 255, 255}}},
    [ATTN_PALETTE_BLUES] = {"blues", 5, {
        {247, 251, 255},  /* near white */
        {198, 219, 239},
        {107, 174, 214},
        {33, 113, 181},
        {8, 48, 107},     /* dark blue */
    }},
};

void attn__palette_color(int p, float t, unsigned char rgb[3]) {
    if (isnan(t) || p < 0 || p >= ATTN_PALETTE_COUNT) { rgb[0] = rgb[1] = rgb[2] = 128; return; }
    const palette_def *d = &palettes[p];
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    const int segs = d->n - 1;
    float x = t * (float)segs;
    int i = (int)x;
    if (i > segs - 1) i = segs - 1;
    float f = x - (float)i;
    for (int c = 0; c < 3; c++) {
        float a = d->a[i][c], b = d->a[i + 1][c];
        rgb[c] = (unsigned char)floorf(a + (b - a) * f + 0.5f);
    }
}

void attn__colormap(float t, unsigned char rgb[3]) { attn__palette_color(ATTN_PALETTE_MAGMA, t, rgb); }

const char *attn_palette_name(attn_palette p) {
    return (int)p >= 0 && p < ATTN_PALETTE_COUNT ? palettes[p].name : NULL;
}

attn_status attn_palette_from_name(const char *name, attn_palette *p) {
    if (!name || !p) return ATTN_ERR_NULL;
    for (int i = 0; i < ATTN_PALETTE_COUNT; i++)
        if (strcmp(name, palettes[i].name) == 0) { *p = (attn_palette)i; return ATTN_OK; }
    return ATTN_ERR_ARG;
}

attn_status attn_palette_color(attn_palette p, float t, unsigned char rgb[3]) {
    if (!rgb) return ATTN_ERR_NULL;
    if ((int)p < 0 || p >= ATTN_PALETTE_COUNT) return ATTN_ERR_ARG;
    attn__palette_color((int)p, t, rgb);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Helpers on labels and values.
 */

static int label_chars(const char *s, int max) { return attn__text_chars(s, max); }

static const float *cell_ptr(const attn_heatmap *h, int r, int c) {
    int64_t stride = h->row_stride ? h->row_stride : h->cols;
    return h->values + (int64_t)r * stride + c;
}

void attn__heatmap_range(const attn_heatmap *h, float *lo, float *hi) {
    if (h->vmin != h->vmax) { *lo = h->vmin; *hi = h->vmax; return; }
    float mn = INFINITY, mx = -INFINITY;
    for (int r = 0; r < h->rows; r++)
        for (int c = 0; c < h->cols; c++) {
            float v = *cell_ptr(h, r, c);
            if (!isfinite(v)) continue;
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
    if (mn > mx) { mn = 0; mx = 1; }   /* no finite value at all */
    *lo = mn; *hi = mx;
}

float attn__heatmap_t(float v, float lo, float hi) {
    if (isnan(v)) return v;
    if (!(hi > lo)) return 0.5f;
    float t = (v - lo) / (hi - lo);
    return t < 0 ? 0 : t > 1 ? 1 : t;
}

static void format_value(char *buf, size_t n, float v) { snprintf(buf, n, "%.3g", (double)v); }

static attn_status validate(const attn_heatmap *h) {
    if (!h || !h->values) return ATTN_ERR_NULL;
    if (h->rows <= 0 || h->cols <= 0 || h->rows > HM_MAX_CELLS || h->cols > HM_MAX_CELLS) return ATTN_ERR_SIZE;
    if (h->row_stride != 0 && h->row_stride < h->cols) return ATTN_ERR_STRIDE;
    if (isnan(h->vmin) || isnan(h->vmax) || h->vmin > h->vmax) return ATTN_ERR_ARG;
    if ((int)h->palette < 0 || h->palette >= ATTN_PALETTE_COUNT) return ATTN_ERR_ARG;
    if (h->row_labels)
        for (int r = 0; r < h->rows; r++) if (!h->row_labels[r]) return ATTN_ERR_NULL;
    if (h->col_labels)
        for (int c = 0; c < h->cols; c++) if (!h->col_labels[c]) return ATTN_ERR_NULL;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Geometry.
 */
/* The number written in a cell with --annotate. */
static void format_cell(char *buf, size_t n, float v) {
    snprintf(buf, n, "%.2g", (double)v);           /* two significant digits, as seaborn's annotations */
}

static int annotating(const attn_heatmap *h) {
    return h->annotate && h->rows <= ATTN_HEATMAP_ANNOTATE_MAX && h->cols <= ATTN_HEATMAP_ANNOTATE_MAX;
}

/* Widest number of the cells, in characters. */
static int widest_number(const attn_heatmap *h) {
    int m = 0;
    for (int r = 0; r < h->rows; r++)
        for (int c = 0; c < h->cols; c++) {
            char b[32];
            format_cell(b, sizeof b, *cell_ptr(h, r, c));
            int k = (int)strlen(b);
            if (k > m) m = k;
        }
    return m;
}

/* Cells: 32 px on small maps, shrinking with the size but never shorter than a label at scale 1 (so
 * labels never touch) up to 100 cells a side; wide enough for the numbers when annotating. */
static int cell_size(const attn_heatmap *h) {
    int n = h->rows > h->cols ? h->rows : h->cols;
    int c = n <= 12 ? 32 : 400 / n;
    c = c < 4 ? 4 : c > 32 ? 32 : c;
    if (n <= 100 && c < ATTN_FONT_H + 1) c = ATTN_FONT_H + 1;
    if (annotating(h)) {
        int need = widest_number(h) * ATTN_FONT_ADVANCE + 6;
        if (c < need) c = need;
    }
    return c;
}

static int label_scale(int cell) { return cell >= 2 * ATTN_FONT_H + 2 ? 2 : 1; }

static int max_label_chars(const char *const *labels, int n) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        int k;
        if (labels) k = label_chars(labels[i], HM_MAX_LABEL);
        else { char b[16]; k = snprintf(b, sizeof b, "%d", i); }
        if (k > m) m = k;
    }
    return m;
}

/* Places a horizontal text of width tw centred over [x0, x0 + span), inside [HM_MARGIN, w - HM_MARGIN). */
static int centred_x(int x0, int span, int tw, int w) {
    int x = x0 + (span - tw) / 2;
    if (x + tw > w - HM_MARGIN) x = w - HM_MARGIN - tw;
    return x < HM_MARGIN ? HM_MARGIN : x;
}

attn_status attn__heatmap_geometry(const attn_heatmap *h, attn__heatmap_geom *g) {
    attn_status st = validate(h);
    if (st != ATTN_OK) return st;
    if (!g) return ATTN_ERR_NULL;
    memset(g, 0, sizeof *g);
    const int ts = HM_TEXT_SCALE, adv = ATTN_FONT_ADVANCE, text_h = ATTN_FONT_H * ts, line = text_h + 6;
    const int c = cell_size(h), ls = label_scale(c);
    attn__heatmap_range(h, &g->vmin, &g->vmax);
    g->cell = c;
    g->label_scale = ls;
    g->label_step = c >= ATTN_FONT_H * ls + 1 ? 1 : (ATTN_FONT_H * ls + 1 + c - 1) / c;
    if (annotating(h)) {
        int wn = widest_number(h) * adv;
        g->number_scale = 2 * wn + 6 <= c && 2 * 7 + 4 <= c ? 2 : 1;
    }
    const int col_chars = max_label_chars(h->col_labels, h->cols);
    g->col_across = col_chars * adv * ls + 2 <= c * g->label_step;

    const int title_h = h->title ? line + 4 : 0;
    const int row_title_w = h->row_title ? text_h + 6 : 0;
    const int row_label_w = max_label_chars(h->row_labels, h->rows) * adv * ls + 8;
    const int col_label_h = (g->col_across ? ATTN_FONT_H * ls : col_chars * adv * ls) + 8;
    const int col_title_h = h->col_title ? line : 0;
    const int grid_h = h->rows * c, grid_w = h->cols * c;
    const int row_title_len = label_chars(h->row_title, 200) * adv * ts;

    g->grid_x = HM_MARGIN + row_title_w + row_label_w;
    g->grid_y = HM_MARGIN + title_h;
    /* the row title, upward and centred on the grid, starts under the title: the grid moves down when
     * the title is taller than the grid */
    if (h->row_title && row_title_len > grid_h) g->grid_y += (row_title_len - grid_h + 1) / 2;
    g->bar_x = g->grid_x + grid_w + 16;
    g->bar_y = g->grid_y;
    g->bar_w = 16;
    g->bar_h = grid_h < 64 ? 64 : grid_h;

    char lo[32], hi[32];
    format_value(lo, sizeof lo, g->vmin);
    format_value(hi, sizeof hi, g->vmax);
    int num_w = (int)(strlen(lo) > strlen(hi) ? strlen(lo) : strlen(hi)) * adv * ts;
    int w = g->bar_x + g->bar_w + 6 + num_w + HM_MARGIN;
    const int title_w = label_chars(h->title, 200) * adv * ts, col_title_w = label_chars(h->col_title, 200) * adv * ts;
    if (title_w + 2 * HM_MARGIN > w) w = title_w + 2 * HM_MARGIN;
    if (g->grid_x + col_title_w + HM_MARGIN > w) w = g->grid_x + col_title_w + HM_MARGIN;
    int below = g->grid_y + grid_h + col_label_h + col_title_h;
    int bar_end = g->bar_y + g->bar_h;
    if (h->row_title) {
        int rt_end = g->grid_y + (grid_h + row_title_len) / 2;
        if (rt_end > below) below = rt_end;
    }
    g->width = w;
    g->height = (below > bar_end ? below : bar_end) + HM_MARGIN;
    if (h->title) {
        g->title_box.x = centred_x(g->grid_x, grid_w, title_w, w);
        g->title_box.y = HM_MARGIN;
        g->title_box.w = title_w;
        g->title_box.h = text_h;
    }
    if (h->col_title) {
        g->col_title_box.x = centred_x(g->grid_x, grid_w, col_title_w, w);
        /* never left of the grid's side: a row title taller than a small grid reaches down to it */
        if (g->col_title_box.x < HM_MARGIN + row_title_w) g->col_title_box.x = HM_MARGIN + row_title_w;
        g->col_title_box.y = g->grid_y + grid_h + col_label_h + 4;
        g->col_title_box.w = col_title_w;
        g->col_title_box.h = text_h;
    }
    if (h->row_title) {
        g->row_title_box.x = HM_MARGIN;
        g->row_title_box.y = g->grid_y + (grid_h - row_title_len) / 2;
        g->row_title_box.w = text_h;
        g->row_title_box.h = row_title_len;
    }
    if ((uint64_t)g->width * (uint64_t)g->height > HM_MAX_PIXELS) return ATTN_ERR_SIZE;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Canvas and drawing.
 */
static const unsigned char *const ink = attn__ink, *const paper = attn__paper, *const frame = attn__frame;

static void draw_heatmap(attn__canvas *cv, int ox, int oy, const attn_heatmap *h, const attn__heatmap_geom *g) {
    const int ts = HM_TEXT_SCALE, adv = ATTN_FONT_ADVANCE;
    const int c = g->cell, ls = g->label_scale, step = g->label_step;
    const int gx = ox + g->grid_x, gy = oy + g->grid_y;

    if (h->title) attn__draw_text(cv, ox + g->title_box.x, oy + g->title_box.y, h->title, ts, 0, 200, ink);

    /* cells, and with annotate their values: dark ink on bright cells, white on dark ones */
    for (int r = 0; r < h->rows; r++)
        for (int cc = 0; cc < h->cols; cc++) {
            unsigned char rgb[3];
            const float v = *cell_ptr(h, r, cc);
            attn__palette_color((int)h->palette, attn__heatmap_t(v, g->vmin, g->vmax), rgb);
            attn__fill_rect(cv, gx + cc * c, gy + r * c, c, c, rgb);
            if (g->number_scale) {
                char num[32];
                format_cell(num, sizeof num, v);
                const int ns = g->number_scale, tw = (int)strlen(num) * adv * ns - ns;
                const int lum = (299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2]) / 1000;
                attn__draw_text(cv, gx + cc * c + (c - tw) / 2, gy + r * c + (c - 7 * ns) / 2, num, ns, 0, 31,
                                lum > 128 ? ink : paper);
            }
        }
    /* a thin frame around the grid */
    attn__fill_rect(cv, gx - 1, gy - 1, h->cols * c + 2, 1, frame);
    attn__fill_rect(cv, gx - 1, gy + h->rows * c, h->cols * c + 2, 1, frame);
    attn__fill_rect(cv, gx - 1, gy - 1, 1, h->rows * c + 2, frame);
    attn__fill_rect(cv, gx + h->cols * c, gy - 1, 1, h->rows * c + 2, frame);

    /* row labels: right-aligned against the grid, centered on their row (every step-th) */
    for (int r = 0; r < h->rows; r += step) {
        char num[16];
        const char *s = h->row_labels ? h->row_labels[r] : (snprintf(num, sizeof num, "%d", r), num);
        int w = label_chars(s, HM_MAX_LABEL) * adv * ls;
        int y = gy + r * c + (c - 7 * ls) / 2;
        attn__draw_text(cv, gx - 6 - w, y, s, ls, 0, HM_MAX_LABEL, ink);
    }
    /* column labels: across, centred under their column, when they fit; else upward, ending just under
     * the grid */
    for (int cc = 0; cc < h->cols; cc += step) {
        char num[16];
        const char *s = h->col_labels ? h->col_labels[cc] : (snprintf(num, sizeof num, "%d", cc), num);
        int len = label_chars(s, HM_MAX_LABEL) * adv * ls;
        if (g->col_across) {
            attn__draw_text(cv, gx + cc * c + (c - len + ls) / 2, gy + h->rows * c + 6, s, ls, 0, HM_MAX_LABEL, ink);
        } else {
            int x = gx + cc * c + (c - 7 * ls) / 2;
            attn__draw_text(cv, x, gy + h->rows * c + 6 + len, s, ls, 1, HM_MAX_LABEL, ink);
        }
    }
    /* axis names: the column title under the column labels, the row title upward on the far left */
    if (h->col_title)
        attn__draw_text(cv, ox + g->col_title_box.x, oy + g->col_title_box.y, h->col_title, ts, 0, 200, ink);
    if (h->row_title)
        attn__draw_text(cv, ox + g->row_title_box.x, oy + g->row_title_box.y + g->row_title_box.h, h->row_title, ts,
                        1, 200, ink);

    /* color scale: vmax at the top, vmin at the bottom, the numbers beside its ends */
    int bx = ox + g->bar_x, by = oy + g->bar_y;
    for (int y = 0; y < g->bar_h; y++) {
        unsigned char rgb[3];
        attn__palette_color((int)h->palette, g->bar_h > 1 ? 1.0f - (float)y / (float)(g->bar_h - 1) : 1.0f, rgb);
        attn__fill_rect(cv, bx, by + y, g->bar_w, 1, rgb);
    }
    attn__fill_rect(cv, bx - 1, by - 1, g->bar_w + 2, 1, frame);
    attn__fill_rect(cv, bx - 1, by + g->bar_h, g->bar_w + 2, 1, frame);
    attn__fill_rect(cv, bx - 1, by - 1, 1, g->bar_h + 2, frame);
    attn__fill_rect(cv, bx + g->bar_w, by - 1, 1, g->bar_h + 2, frame);
    char lo[32], hi[32];
    format_value(lo, sizeof lo, g->vmin);
    format_value(hi, sizeof hi, g->vmax);
    attn__draw_text(cv, bx + g->bar_w + 6, by, hi, ts, 0, 31, ink);
    attn__draw_text(cv, bx + g->bar_w + 6, by + g->bar_h - 7 * ts, lo, ts, 0, 31, ink);
}

/* ---------------------------------------------------------------------------------------------------
 * PNG output, atomic.
 */
attn_status attn_heatmap_png(const attn_heatmap *h, const char *path, char *err, size_t err_size) {
    return attn_heatmap_png_grid(h, 1, 1, path, err, err_size);
}

attn_status attn_heatmap_png_grid(const attn_heatmap *maps, int n, int grid_cols, const char *path,
                                  char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!maps || !path) { attn__set_err(err, err_size, "%s%s", "heatmap: NULL argument", ""); return ATTN_ERR_NULL; }
    if (n <= 0 || grid_cols <= 0 || n > 1024) {
        attn__set_err(err, err_size, "%s: %s", path, "number of heatmaps or grid columns out of range");
        return ATTN_ERR_SIZE;
    }
    if (grid_cols > n) grid_cols = n;
    /* every panel gets the size of the largest */
    int pw = 0, ph = 0;
    for (int i = 0; i < n; i++) {
        attn__heatmap_geom g;
        attn_status st = attn__heatmap_geometry(&maps[i], &g);
        if (st != ATTN_OK) {
            attn__set_err(err, err_size, "%s: invalid heatmap: %s", path, attn_status_string(st));
            return st;
        }
        if (g.width > pw) pw = g.width;
        if (g.height > ph) ph = g.height;
    }
    int grid_rows = (n + grid_cols - 1) / grid_cols;
    if ((uint64_t)pw * grid_cols * (uint64_t)ph * grid_rows > HM_MAX_PIXELS) {
        attn__set_err(err, err_size, "%s: %s", path, "image too large");
        return ATTN_ERR_SIZE;
    }
    attn__canvas cv = {pw * grid_cols, ph * grid_rows, NULL};
    cv.rgb = malloc((size_t)cv.w * cv.h * 3);
    if (!cv.rgb) { attn__set_err(err, err_size, "%s: %s", path, "out of memory"); return ATTN_ERR_NOMEM; }
    attn__fill_rect(&cv, 0, 0, cv.w, cv.h, paper);
    for (int i = 0; i < n; i++) {
        attn__heatmap_geom g;
        attn__heatmap_geometry(&maps[i], &g);
        draw_heatmap(&cv, (i % grid_cols) * pw, (i / grid_cols) * ph, &maps[i], &g);
    }
    attn_status st = attn__canvas_save_png(&cv, path, err, err_size);
    free(cv.rgb);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Terminal.
 */

/* Writes code point k of s (or a space when s is shorter), returns nothing. */
static void put_char_k(FILE *out, const char *s, int k) {
    size_t n = strlen(s), i = 0;
    for (int j = 0; i < n; j++) {
        uint32_t cp;
        int len = attn__utf8_next(s + i, n - i, &cp);
        if (j == k) {
            if (cp == 0xFFFD || cp < 32) fputc('?', out);
            else fwrite(s + i, 1, (size_t)len, out);
            return;
        }
        i += (size_t)len;
    }
    fputc(' ', out);
}

/* Writes s padded with spaces to width code points (cut to width). */
static void put_padded(FILE *out, const char *s, int width, int right) {
    int k = label_chars(s, width);
    if (right) for (int i = k; i < width; i++) fputc(' ', out);
    for (int i = 0; i < k; i++) put_char_k(out, s, i);
    if (!right) for (int i = k; i < width; i++) fputc(' ', out);
}

static const char *const shades[5] = {"  ", "\u2591\u2591", "\u2592\u2592", "\u2593\u2593", "\u2588\u2588"};

static void put_cell(FILE *out, float t, int color, attn_palette p) {
    if (isnan(t)) { fputs(color ? "\x1b[48;2;128;128;128m??\x1b[0m" : "??", out); return; }
    if (color) {
        unsigned char rgb[3];
        attn__palette_color((int)p, t, rgb);
        fprintf(out, "\x1b[48;2;%d;%d;%dm  \x1b[0m", rgb[0], rgb[1], rgb[2]);
    } else {
        int i = (int)(t * 4.0f + 0.5f);
        fputs(shades[i < 0 ? 0 : i > 4 ? 4 : i], out);
    }
}

attn_status attn_heatmap_term(const attn_heatmap *h, FILE *out, int color) {
    attn_status st = validate(h);
    if (st != ATTN_OK) return st;
    if (!out) return ATTN_ERR_NULL;
    float lo, hi;
    attn__heatmap_range(h, &lo, &hi);
    const int max_label = 20, max_col_label = 12;

    if (h->title) fprintf(out, "%s\n", h->title);
    if (h->row_title || h->col_title)
        fprintf(out, "(rows: %s, columns: %s)\n", h->row_title ? h->row_title : "-",
                h->col_title ? h->col_title : "-");
    int lw = 0;
    for (int r = 0; r < h->rows; r++) {
        char num[16];
        const char *s = h->row_labels ? h->row_labels[r] : (snprintf(num, sizeof num, "%d", r), num);
        int k = label_chars(s, max_label);
        if (k > lw) lw = k;
    }
    for (int r = 0; r < h->rows; r++) {
        char num[16];
        const char *s = h->row_labels ? h->row_labels[r] : (snprintf(num, sizeof num, "%d", r), num);
        put_padded(out, s, lw, 1);
        fputc(' ', out);
        for (int c = 0; c < h->cols; c++) put_cell(out, attn__heatmap_t(*cell_ptr(h, r, c), lo, hi), color, h->palette);
        fputc('\n', out);
    }
    /* column labels: across, under their two-character cells, when none is longer than 2 characters;
     * else one character per line, each under its cell */
    int lines = 0;
    for (int c = 0; c < h->cols; c++) {
        char num[16];
        const char *s = h->col_labels ? h->col_labels[c] : (snprintf(num, sizeof num, "%d", c), num);
        int k = label_chars(s, max_col_label);
        if (k > lines) lines = k;
    }
    if (lines <= 2) {
        for (int j = 0; j < lw + 1; j++) fputc(' ', out);
        for (int c = 0; c < h->cols; c++) {
            char num[16];
            const char *s = h->col_labels ? h->col_labels[c] : (snprintf(num, sizeof num, "%d", c), num);
            put_padded(out, s, 2, 0);
        }
        fputc('\n', out);
        lines = 0;
    }
    for (int i = 0; i < lines; i++) {
        for (int j = 0; j < lw + 1; j++) fputc(' ', out);
        for (int c = 0; c < h->cols; c++) {
            char num[16];
            const char *s = h->col_labels ? h->col_labels[c] : (snprintf(num, sizeof num, "%d", c), num);
            put_char_k(out, s, i);
            fputc(' ', out);
        }
        fputc('\n', out);
    }
    /* the scale */
    char a[32], b[32];
    format_value(a, sizeof a, lo);
    format_value(b, sizeof b, hi);
    fprintf(out, "scale %s ", a);
    for (int i = 0; i <= 8; i++) put_cell(out, (float)i / 8.0f, color, h->palette);
    fprintf(out, " %s\n", b);
    return ferror(out) ? ATTN_ERR_IO : ATTN_OK;
}
