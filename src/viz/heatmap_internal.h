/*
 * heatmap_internal.h — what src/viz shares with its tests and nothing else: the colormap, the
 * bitmap font's glyph lookup and the geometry of a rendered heatmap (so a test can find the cells in
 * the PNG it reads back). Never installed.
 */
#ifndef ATTN_HEATMAP_INTERNAL_H
#define ATTN_HEATMAP_INTERNAL_H

#include "internal.h"
#include "attn/heatmap.h"

/* The colormap: t in [0,1] (clamped; NaN gives mid gray 128,128,128) to RGB, piecewise linear between
 * five anchors, dark indigo (t=0) → purple → magenta-red → orange → pale yellow (t=1), rounded to the
 * nearest integer. */
void attn__colormap(float t, unsigned char rgb[3]);

/* The colour of t in palette p (an attn_palette); out of range or NaN: mid gray. */
void attn__palette_color(int p, float t, unsigned char rgb[3]);

/* Glyph width and height of the bitmap font, in font pixels (5 x 9: rows 0-1 hold lowercase accents,
 * rows 7-8 descenders); characters advance 6 font pixels. */
#define ATTN_FONT_W 5
#define ATTN_FONT_H 9
#define ATTN_FONT_ADVANCE 6

/* Decodes one UTF-8 code point at s (n bytes left) into *cp; returns the bytes used (>= 1). Invalid or
 * truncated sequences give cp = 0xFFFD and use one byte. */
int attn__utf8_next(const char *s, size_t n, uint32_t *cp);

/* The glyph of code point cp as ATTN_FONT_H row bit masks (bit 4 = leftmost column). ASCII 32..126 have
 * their own glyph; Latin-1 letters (and Œ œ, curly quotes) map to their base letter, with an accent drawn
 * above lowercase ones; every other code point draws '?'. */
void attn__glyph(uint32_t cp, unsigned char rows[ATTN_FONT_H]);

/* The colour range in force for h: [vmin, vmax] as given, or the finite data range when vmin == vmax
 * (0..1 when no value is finite). */
void attn__heatmap_range(const attn_heatmap *h, float *lo, float *hi);

/* Position of v in [lo, hi] as t in [0,1] (clamped); a flat range puts everything at 0.5; NaN stays NaN. */
float attn__heatmap_t(float v, float lo, float hi);

/* ---------------------------------------------------------------------------------------------------
 * A growing text buffer (export.c), for the files written whole: a failed allocation sets oom and
 * makes every later call a no-op.
 */
typedef struct attn__outbuf {
    char *s;
    size_t len, cap;
    int oom;
} attn__outbuf;

void attn__ob_put(attn__outbuf *b, const char *p, size_t n);
void attn__ob_printf(attn__outbuf *b, const char *fmt, ...);

/* Writes the buffer to path atomically; err gets path and reason (out of memory when b->oom). */
attn_status attn__ob_write(attn__outbuf *b, const char *path, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------------------
 * The canvas every picture draws on (canvas.c).
 */
typedef struct attn__canvas {
    int w, h;
    unsigned char *rgb;          /* (h, w, 3) */
} attn__canvas;

extern const unsigned char attn__ink[3], attn__paper[3], attn__frame[3];

/* Fills a rectangle, clipped to the canvas. */
void attn__fill_rect(attn__canvas *cv, int x, int y, int w, int h, const unsigned char col[3]);

/* A straight line from (x0,y0) to (x1,y1), thick pixels wide, clipped. */
void attn__draw_line(attn__canvas *cv, int x0, int y0, int x1, int y1, int thick, const unsigned char col[3]);

/* Number of code points of s drawn when at most max are (a longer s is cut, its last one drawn as '~'). */
int attn__text_chars(const char *s, int max);

/* Draws up to max_chars code points of s at scale sc. rot 0: left to right, (x, y) the top-left corner.
 * rot 1: bottom to top (turned 90 degrees counter-clockwise), (x, y) the bottom-left corner of the run.
 * A text cut short ends in '~'. A character is ATTN_FONT_ADVANCE * sc wide, its body 7 * sc high. */
void attn__draw_text(attn__canvas *cv, int x, int y, const char *s, int sc, int rot, int max_chars,
                     const unsigned char col[3]);

/* Writes the canvas as an RGB PNG to "<path>.tmp", then renames it over path; refuses a path that is not
 * a regular file. err gets the path and the reason. */
attn_status attn__canvas_save_png(const attn__canvas *cv, const char *path, char *err, size_t err_size);

/* Where things are in the PNG of one heatmap (pixels). */
typedef struct attn__heatmap_geom {
    int width, height;           /* the whole image */
    int grid_x, grid_y;          /* top-left corner of cell (0,0) */
    int cell;                    /* cells are cell x cell pixels */
    int bar_x, bar_y, bar_w, bar_h;  /* the color scale bar: vmax at the top, vmin at the bottom */
    float vmin, vmax;            /* the color range in force */
    int label_scale;             /* labels' text scale (1: 6 x 9 px per character, 2: 12 x 18) */
    int label_step;              /* every label_step-th row and column label is drawn */
    int col_across;              /* column labels written across (1) or upward (0) */
    int number_scale;            /* text scale of the numbers in the cells; 0: none */
    struct { int x, y, w, h; } title_box, row_title_box, col_title_box;  /* w == 0: none */
} attn__heatmap_geom;

/* Validates h and computes its geometry. */
attn_status attn__heatmap_geometry(const attn_heatmap *h, attn__heatmap_geom *g);

/* ---------------------------------------------------------------------------------------------------
 * Line charts (plot.c): where everything is, so that a test can check the layout of the PNG it reads.
 */
#include "attn/plot.h"

typedef struct attn__box { int x, y, w, h; } attn__box;

#define ATTN__PLOT_MAX_TICKS 16
#define ATTN__PLOT_MAX_BOXES (2 * ATTN__PLOT_MAX_TICKS + ATTN_PLOT_MAX_SERIES + 4)

typedef struct attn__plot_geom {
    int width, height;           /* the whole image */
    int area_x, area_y, area_w, area_h;  /* the plotting area (inside its frame) */
    int pad;                     /* data are mapped inside the area, pad pixels from its frame */
    double x0, x1, y0, y1;       /* the axes' ranges */
    double x_step, y_step;       /* tick spacing: 1, 2 or 5 times a power of ten */
    int n_xticks, n_yticks;
    double xticks[ATTN__PLOT_MAX_TICKS], yticks[ATTN__PLOT_MAX_TICKS];
    int legend_x, legend_y, legend_dy;  /* entry i's swatch starts at (legend_x, legend_y + i*legend_dy) */
    int n_boxes;                 /* every text drawn: title, axis names, tick labels, legend entries */
    attn__box boxes[ATTN__PLOT_MAX_BOXES];
} attn__plot_geom;

/* Validates p and computes its layout. */
attn_status attn__plot_geometry(const attn_plot *p, attn__plot_geom *g);

/* The pixel of the data point (x, y) in a chart drawn at (0, 0). */
void attn__plot_map(const attn__plot_geom *g, double x, double y, int *px, int *py);

/* The colour of series i. */
void attn__plot_color(int i, unsigned char rgb[3]);

#endif /* ATTN_HEATMAP_INTERNAL_H */
