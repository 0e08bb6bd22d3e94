/*
 * heatmap_internal.h — what src/viz shares with its tests and nothing else: the colormap, the
 * bitmap font's glyph lookup and the geometry of a rendered heatmap (so a test can find the cells in
 * the PNG it reads back). Never installed.
 */
#ifndef ATTN_HEATMAP_INTERNAL_H
#define ATTN_HEATMAP_INTERNAL_H

#include "internal.h"

/* The colormap: t in [0,1] (clamped; NaN gives mid gray 128,128,128) to RGB, piecewise linear between
 * five anchors, dark indigo (t=0) → purple → magenta-red → orange → pale yellow (t=1), rounded to the
 * nearest integer. */
void attn__colormap(float t, unsigned char rgb[3]);

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

/* Where things are in the PNG of one heatmap (pixels). */
typedef struct attn__heatmap_geom {
    int width, height;           /* the whole image */
    int grid_x, grid_y;          /* top-left corner of cell (0,0) */
    int cell;                    /* cells are cell x cell pixels */
    int bar_x, bar_y, bar_w, bar_h;  /* the color scale bar: vmax at the top, vmin at the bottom */
    float vmin, vmax;            /* the color range in force */
} attn__heatmap_geom;

/* Validates h and computes its geometry. */
attn_status attn__heatmap_geometry(const attn_heatmap *h, attn__heatmap_geom *g);

#endif /* ATTN_HEATMAP_INTERNAL_H */
