/*
 * plot.c — line charts (training curves) as PNG files. The layout is computed first (attn__plot_geometry)
 * from the sizes of the texts, so that nothing overlaps: the title on top; the y axis's name written
 * upward on the left, then its tick values right-aligned against the chart; the chart (a frame, light
 * grid lines at the ticks, the series as lines with marks); the x tick values and the x axis's name
 * under it; the legend to its right. Ticks fall on round numbers (1, 2 or 5 times a power of ten), no
 * finer than 1 when every x is a whole number (epochs), and are thinned until their values fit.
 *
 * Allocations: one canvas (width·height·3 bytes) per PNG and what the PNG writer needs (canvas.c).
 */
#include "viz/heatmap_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PL_MARGIN 14
#define PL_TS 2                              /* text scale: 12 px per character */
#define PL_CW (ATTN_FONT_ADVANCE * PL_TS)    /* character width */
#define PL_TH (ATTN_FONT_H * PL_TS)          /* text height, descenders included */
#define PL_BODY (7 * PL_TS)                  /* height of a digit */
#define PL_MAX_TEXT 60                       /* characters of a title, axis name or legend entry */
#define PL_MAX_PIXELS (64u << 20)
#define PL_MARKS_UPTO 60                     /* points per series drawn with a mark */

static const unsigned char palette[ATTN_PLOT_MAX_SERIES][3] = {
    {0, 92, 200},     /* blue */
    {232, 118, 0},    /* orange */
    {0, 150, 64},     /* green */
    {204, 30, 48},    /* red */
    {124, 62, 176},   /* purple */
    {128, 84, 40},    /* brown */
    {222, 80, 170},   /* pink */
    {96, 96, 96},     /* gray */
};
static const unsigned char grid_col[3] = {228, 228, 228};

void attn__plot_color(int i, unsigned char rgb[3]) {
    memcpy(rgb, palette[((i % ATTN_PLOT_MAX_SERIES) + ATTN_PLOT_MAX_SERIES) % ATTN_PLOT_MAX_SERIES], 3);
}

static double point_x(const attn_plot_series *s, int i) { return s->x ? s->x[i] : (double)(i + 1); }

/* A point is drawn when both coordinates are finite and within PL_MAX_ABS. */
static int drawable(double x, double y);

static attn_status validate(const attn_plot *p) {
    if (!p || !p->series) return ATTN_ERR_NULL;
    if (p->n_series < 1 || p->n_series > ATTN_PLOT_MAX_SERIES) return ATTN_ERR_SIZE;
    if ((p->width && (p->width < 120 || p->width > 4096)) || (p->height && (p->height < 120 || p->height > 4096)))
        return ATTN_ERR_SIZE;
    for (int k = 0; k < p->n_series; k++) {
        const attn_plot_series *s = &p->series[k];
        if (s->n < 0 || s->n > ATTN_TABLE_MAX_ROWS) return ATTN_ERR_SIZE;
        if (s->n > 0 && !s->y) return ATTN_ERR_NULL;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Ticks.
 */
/* 1, 2 or 5 times a power of ten, at least raw. */
static double nice_at_least(double raw) {
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1.0 + 1e-9 ? 1 : f <= 2.0 + 1e-9 ? 2 : f <= 5.0 + 1e-9 ? 5 : 10) * p;
}

/* The next round step after step (1 → 2 → 5 → 10 ...). */
static double nice_next(double step) { return nice_at_least(step * 1.0001 + 1e-300); }

static int decimals_of(double step) {
    if (step >= 1) return 0;
    int d = (int)ceil(-log10(step) - 1e-9);
    return d > 12 ? 12 : d;
}

/* A tick's value: fixed decimals as the step needs; in exponent form (with the digits the step needs)
 * when that would be long: values of 1e7 and more, steps finer than 1e-6. */
static void format_tick(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;          /* no "-0" */
    if (fabs(v) >= 1e7 || (step < 1e-6 && v != 0)) {
        int digits = (int)ceil(log10(fabs(v) / step) + 1e-9) + 1;
        snprintf(buf, n, "%.*g", digits < 1 ? 1 : digits > 17 ? 17 : digits, v);
    } else {
        snprintf(buf, n, "%.*f", decimals_of(step), v);
    }
}

/* The ticks k*step inside [lo, hi] (at most ATTN__PLOT_MAX_TICKS). */
static int ticks_in(double lo, double hi, double step, double *t) {
    double k0 = ceil(lo / step - 1e-9), k1 = floor(hi / step + 1e-9);
    int n = 0;
    for (double k = k0; k <= k1 && n < ATTN__PLOT_MAX_TICKS; k++) t[n++] = k * step;
    return n;
}

static int tick_label_w(double v, double step) {
    char b[64];
    format_tick(b, sizeof b, v, step);
    return (int)strlen(b) * PL_CW;
}

/* Points beyond this magnitude are not drawn (as NaN): the axes' arithmetic stays finite. */
#define PL_MAX_ABS 1e150

/* The data's finite range over every series, x or y; a range too narrow to divide is widened around
 * its value. */
static void data_range(const attn_plot *p, int want_y, double *lo, double *hi, int *all_whole) {
    *lo = INFINITY;
    *hi = -INFINITY;
    *all_whole = 1;
    for (int k = 0; k < p->n_series; k++) {
        const attn_plot_series *s = &p->series[k];
        for (int i = 0; i < s->n; i++) {
            double x = point_x(s, i), y = s->y[i];
            if (!(fabs(x) <= PL_MAX_ABS) || !(fabs(y) <= PL_MAX_ABS)) continue;
            double v = want_y ? y : x;
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
            if (v != floor(v)) *all_whole = 0;
        }
    }
    if (*lo > *hi) { *lo = 0; *hi = 1; }
    const double mag = fmax(fabs(*lo), fabs(*hi));
    if (!(*hi - *lo > 1e-9 * mag) || *hi - *lo < 1e-100) {
        double mid = 0.5 * (*lo + *hi);
        *lo = *hi = mid;
        double d = fabs(mid) > 1e-99 ? fabs(mid) * 0.1 : 1;
        if (*all_whole && d < 1) d = 1;
        *lo -= d;
        *hi += d;
    }
}

static int drawable(double x, double y) { return fabs(x) <= PL_MAX_ABS && fabs(y) <= PL_MAX_ABS; }

/* ---------------------------------------------------------------------------------------------------
 * Layout.
 */
/* Characters of the y axis's name drawn: as many as the chart is tall. */
static int y_label_chars(const attn__plot_geom *g) {
    int k = g->area_h / PL_CW;
    return k < 3 ? 3 : k > PL_MAX_TEXT ? PL_MAX_TEXT : k;
}

static void add_box(attn__plot_geom *g, int x, int y, int w, int h) {
    if (g->n_boxes < ATTN__PLOT_MAX_BOXES) g->boxes[g->n_boxes++] = (attn__box){x, y, w, h};
}

void attn__plot_map(const attn__plot_geom *g, double x, double y, int *px, int *py) {
    const double w = g->area_w - 1 - 2 * g->pad, h = g->area_h - 1 - 2 * g->pad;
    *px = g->area_x + g->pad + (int)lround((x - g->x0) / (g->x1 - g->x0) * w);
    *py = g->area_y + g->pad + (int)lround((g->y1 - y) / (g->y1 - g->y0) * h);
}

attn_status attn__plot_geometry(const attn_plot *p, attn__plot_geom *g) {
    attn_status st = validate(p);
    if (st != ATTN_OK) return st;
    if (!g) return ATTN_ERR_NULL;
    memset(g, 0, sizeof *g);
    g->area_w = p->width ? p->width : 560;
    g->area_h = p->height ? p->height : 320;
    g->pad = 10;

    /* y: round ticks about every 50 px; the axis runs from a tick to a tick */
    double lo, hi;
    int whole;
    data_range(p, 1, &lo, &hi, &whole);
    int target = g->area_h / 50 < 2 ? 2 : g->area_h / 50;
    double step = nice_at_least((hi - lo) / target);
    for (int it = 0; it < 64 && floor(hi / step + 1e-9) - ceil(lo / step - 1e-9) + 1 > ATTN__PLOT_MAX_TICKS - 2; it++)
        step = nice_next(step);
    g->y_step = step;
    g->y0 = floor(lo / step + 1e-9) * step;
    g->y1 = ceil(hi / step - 1e-9) * step;
    if (!(g->y1 > g->y0)) g->y1 = g->y0 + step;
    g->n_yticks = ticks_in(g->y0, g->y1, step, g->yticks);

    /* x: the data's range; ticks no finer than 1 for whole numbers, thinned until the values fit */
    data_range(p, 0, &lo, &hi, &whole);
    g->x0 = lo;
    g->x1 = hi;
    const double px_per = (g->area_w - 1 - 2 * g->pad) / (hi - lo);
    step = nice_at_least((hi - lo) / (g->area_w / 60 < 2 ? 2 : g->area_w / 60));
    if (whole && step < 1) step = 1;
    int fit = 0;
    for (int it = 0; it < 64 && !fit; it++) {     /* 64 steps up cover any range left finite */
        double t[ATTN__PLOT_MAX_TICKS];
        int n = ticks_in(lo, hi, step, t), widest = 0;
        for (int i = 0; i < n; i++) {
            int w = tick_label_w(t[i], step);
            if (w > widest) widest = w;
        }
        int full = floor(hi / step + 1e-9) - ceil(lo / step - 1e-9) + 1 <= ATTN__PLOT_MAX_TICKS;
        if (full && (n < 2 || step * px_per >= widest + PL_CW)) fit = 1;
        else step = nice_next(step);
    }
    g->x_step = step;
    g->n_xticks = ticks_in(lo, hi, step, g->xticks);
    if (!fit && g->n_xticks > 1) g->n_xticks = 1;   /* values too wide to stand apart: one of them */

    /* widths of the things left of the chart, and of the x tick values at the ends */
    int ytick_w = 0;
    for (int i = 0; i < g->n_yticks; i++) {
        int w = tick_label_w(g->yticks[i], g->y_step);
        if (w > ytick_w) ytick_w = w;
    }
    int first_xw = g->n_xticks ? tick_label_w(g->xticks[0], g->x_step) : 0;
    int last_xw = g->n_xticks ? tick_label_w(g->xticks[g->n_xticks - 1], g->x_step) : 0;
    const int ylab_w = p->y_label ? PL_TH + 10 : 0;
    const int title_h = p->title ? PL_TH + 12 : 0;
    g->area_x = PL_MARGIN + ylab_w + ytick_w + 8;
    if (g->area_x + g->pad < PL_MARGIN + ylab_w + first_xw / 2 + 2)   /* the first x value clear of the y name */
        g->area_x = PL_MARGIN + ylab_w + first_xw / 2 + 2 - g->pad;
    g->area_y = PL_MARGIN + title_h + PL_BODY / 2;

    /* the legend, right of the chart and clear of the last x tick value */
    int gap = 18;
    if (last_xw / 2 + 10 > gap) gap = last_xw / 2 + 10;
    g->legend_x = g->area_x + g->area_w + gap;
    g->legend_y = g->area_y + 4;
    g->legend_dy = PL_TH + 8;
    int legend_w = 0;
    for (int k = 0; k < p->n_series; k++) {
        int w = 30 + attn__text_chars(p->series[k].name ? p->series[k].name : "", PL_MAX_TEXT) * PL_CW;
        if (w > legend_w) legend_w = w;
    }

    /* boxes of every text, in drawing order */
    const int bottom = g->area_y + g->area_h;
    for (int i = 0; i < g->n_yticks; i++) {
        int px, py, w = tick_label_w(g->yticks[i], g->y_step);
        attn__plot_map(g, g->x0, g->yticks[i], &px, &py);
        add_box(g, g->area_x - 8 - w, py - PL_BODY / 2, w, PL_TH);
    }
    const int xtick_y = bottom + 10;
    for (int i = 0; i < g->n_xticks; i++) {
        int px, py, w = tick_label_w(g->xticks[i], g->x_step);
        attn__plot_map(g, g->xticks[i], g->y0, &px, &py);
        add_box(g, px - w / 2, xtick_y, w, PL_TH);
    }
    int y_after = xtick_y + PL_TH + 6, x_label_right = 0;
    const int legend_bottom = g->legend_y + p->n_series * g->legend_dy;
    if (p->x_label) {
        /* centred under the chart, right of the y name's column; below the legend when wider than the chart */
        int w = attn__text_chars(p->x_label, PL_MAX_TEXT) * PL_CW;
        int x = g->area_x + (g->area_w - w) / 2;
        if (x < PL_MARGIN + ylab_w) x = PL_MARGIN + ylab_w;
        if (x + w > g->area_x + g->area_w && y_after < legend_bottom + 4) y_after = legend_bottom + 4;
        add_box(g, x, y_after, w, PL_TH);
        x_label_right = x + w;
        y_after += PL_TH + 4;
    }
    if (p->y_label) {
        /* upward, centred on the chart, but never above it (the title is there); cut to the chart's height */
        int len = attn__text_chars(p->y_label, y_label_chars(g)) * PL_CW;
        int yb = g->area_y + (g->area_h + len) / 2;       /* the bottom end of the upward text */
        if (yb - len < g->area_y) yb = g->area_y + len;
        add_box(g, PL_MARGIN, yb - len, PL_TH, len);
        if (yb > y_after) y_after = yb;
    }
    for (int k = 0; k < p->n_series; k++) {
        int w = attn__text_chars(p->series[k].name ? p->series[k].name : "", PL_MAX_TEXT) * PL_CW;
        add_box(g, g->legend_x + 30, g->legend_y + k * g->legend_dy - PL_BODY / 2 + 2, w, PL_TH);
    }
    g->width = g->legend_x + legend_w + PL_MARGIN;
    if (x_label_right + PL_MARGIN > g->width) g->width = x_label_right + PL_MARGIN;
    g->height = (y_after > legend_bottom ? y_after : legend_bottom) + PL_MARGIN;
    if (p->title) {
        int w = attn__text_chars(p->title, PL_MAX_TEXT) * PL_CW;
        if (w + 2 * PL_MARGIN > g->width) g->width = w + 2 * PL_MARGIN;
        int x = g->area_x + (g->area_w - w) / 2;        /* centred over the chart when it fits */
        if (x + w > g->width - PL_MARGIN) x = g->width - PL_MARGIN - w;
        if (x < PL_MARGIN) x = PL_MARGIN;
        add_box(g, x, PL_MARGIN, w, PL_TH);
    }
    if ((uint64_t)g->width * (uint64_t)g->height > PL_MAX_PIXELS) return ATTN_ERR_SIZE;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Drawing.
 */
static void draw_box_text(attn__canvas *cv, int ox, int oy, const attn__box *b, const char *s, int rot) {
    if (rot) attn__draw_text(cv, ox + b->x, oy + b->y + b->h, s, PL_TS, 1, b->h / PL_CW, attn__ink);
    else attn__draw_text(cv, ox + b->x, oy + b->y, s, PL_TS, 0, PL_MAX_TEXT, attn__ink);
}

static void draw_plot(attn__canvas *cv, int ox, int oy, const attn_plot *p, const attn__plot_geom *g) {
    const int ax = ox + g->area_x, ay = oy + g->area_y;
    int b = 0;
    char txt[64];
    /* grid lines and ticks */
    for (int i = 0; i < g->n_yticks; i++) {
        int px, py;
        attn__plot_map(g, g->x0, g->yticks[i], &px, &py);
        attn__fill_rect(cv, ax, oy + py, g->area_w, 1, grid_col);
        attn__fill_rect(cv, ax - 5, oy + py, 5, 1, attn__frame);
    }
    for (int i = 0; i < g->n_xticks; i++) {
        int px, py;
        attn__plot_map(g, g->xticks[i], g->y0, &px, &py);
        attn__fill_rect(cv, ox + px, ay, 1, g->area_h, grid_col);
        attn__fill_rect(cv, ox + px, ay + g->area_h, 1, 5, attn__frame);
    }
    /* the frame */
    attn__fill_rect(cv, ax - 1, ay - 1, g->area_w + 2, 1, attn__frame);
    attn__fill_rect(cv, ax - 1, ay + g->area_h, g->area_w + 2, 1, attn__frame);
    attn__fill_rect(cv, ax - 1, ay - 1, 1, g->area_h + 2, attn__frame);
    attn__fill_rect(cv, ax + g->area_w, ay - 1, 1, g->area_h + 2, attn__frame);
    /* tick values */
    for (int i = 0; i < g->n_yticks; i++, b++) {
        format_tick(txt, sizeof txt, g->yticks[i], g->y_step);
        draw_box_text(cv, ox, oy, &g->boxes[b], txt, 0);
    }
    for (int i = 0; i < g->n_xticks; i++, b++) {
        format_tick(txt, sizeof txt, g->xticks[i], g->x_step);
        draw_box_text(cv, ox, oy, &g->boxes[b], txt, 0);
    }
    if (p->x_label) draw_box_text(cv, ox, oy, &g->boxes[b++], p->x_label, 0);
    if (p->y_label) draw_box_text(cv, ox, oy, &g->boxes[b++], p->y_label, 1);
    /* the series: lines between consecutive finite points, then the marks; the legend */
    for (int k = 0; k < p->n_series; k++) {
        const attn_plot_series *s = &p->series[k];
        unsigned char col[3];
        attn__plot_color(k, col);
        int have = 0, lx = 0, ly = 0, finite = 0;
        for (int i = 0; i < s->n; i++) finite += drawable(point_x(s, i), s->y[i]);
        for (int i = 0; i < s->n; i++) {
            double x = point_x(s, i), y = s->y[i];
            if (!drawable(x, y)) { have = 0; continue; }
            int px, py;
            attn__plot_map(g, x, y, &px, &py);
            if (have) attn__draw_line(cv, ox + lx, oy + ly, ox + px, oy + py, 2, col);
            else if (finite == 1) attn__fill_rect(cv, ox + px - 1, oy + py - 1, 3, 3, col);
            have = 1; lx = px; ly = py;
        }
        if (finite <= PL_MARKS_UPTO)
            for (int i = 0; i < s->n; i++) {
                double x = point_x(s, i), y = s->y[i];
                if (!drawable(x, y)) continue;
                int px, py;
                attn__plot_map(g, x, y, &px, &py);
                attn__fill_rect(cv, ox + px - 3, oy + py - 3, 7, 7, col);
            }
        const int sy = oy + g->legend_y + k * g->legend_dy;
        attn__fill_rect(cv, ox + g->legend_x, sy - 1, 22, 3, col);
        attn__fill_rect(cv, ox + g->legend_x + 8, sy - 3, 7, 7, col);
        draw_box_text(cv, ox, oy, &g->boxes[b++], s->name ? s->name : "", 0);
    }
    if (p->title) draw_box_text(cv, ox, oy, &g->boxes[b++], p->title, 0);
}

attn_status attn_plot_png(const attn_plot *p, const char *path, char *err, size_t err_size) {
    return attn_plot_png_grid(p, 1, 1, path, err, err_size);
}

attn_status attn_plot_png_grid(const attn_plot *plots, int n, int grid_cols, const char *path, char *err,
                               size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!plots || !path) { attn__set_err(err, err_size, "plot: NULL argument"); return ATTN_ERR_NULL; }
    if (n <= 0 || n > 64 || grid_cols <= 0) {
        attn__set_err(err, err_size, "%s: number of charts or grid columns out of range", path);
        return ATTN_ERR_SIZE;
    }
    if (grid_cols > n) grid_cols = n;
    int pw = 0, ph = 0;
    for (int i = 0; i < n; i++) {
        attn__plot_geom g;
        attn_status st = attn__plot_geometry(&plots[i], &g);
        if (st != ATTN_OK) {
            attn__set_err(err, err_size, "%s: invalid chart: %s", path, attn_status_string(st));
            return st;
        }
        if (g.width > pw) pw = g.width;
        if (g.height > ph) ph = g.height;
    }
    const int grid_rows = (n + grid_cols - 1) / grid_cols;
    if ((uint64_t)pw * grid_cols * (uint64_t)ph * grid_rows > PL_MAX_PIXELS) {
        attn__set_err(err, err_size, "%s: image too large", path);
        return ATTN_ERR_SIZE;
    }
    attn__canvas cv = {pw * grid_cols, ph * grid_rows, NULL};
    cv.rgb = malloc((size_t)cv.w * cv.h * 3);
    if (!cv.rgb) { attn__set_err(err, err_size, "%s: out of memory", path); return ATTN_ERR_NOMEM; }
    attn__fill_rect(&cv, 0, 0, cv.w, cv.h, attn__paper);
    for (int i = 0; i < n; i++) {
        attn__plot_geom g;
        attn__plot_geometry(&plots[i], &g);
        draw_plot(&cv, (i % grid_cols) * pw, (i / grid_cols) * ph, &plots[i], &g);
    }
    attn_status st = attn__canvas_save_png(&cv, path, err, err_size);
    free(cv.rgb);
    return st;
}
