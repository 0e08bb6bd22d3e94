/*
 * attn/heatmap.h — pictures of attention: heatmaps as PNG files (through libpng) and as colored blocks in
 * a terminal, with labelled axes (words, for text) and a color scale; and the numbers behind them as
 * .npy, CSV or JSON files.
 *
 * A heatmap is a (rows, cols) matrix of values, usually weights in [0, 1]: rows are queries (output
 * words), columns are keys (input words). Colors run from one end of a palette (vmin) to the other (vmax).
 *
 * The same descriptions also make the interactive explorer: one self-contained HTML page where a reader
 * picks a map (group, layer, head), points at a word and sees whom it attends to, with the values.
 */
#ifndef ATTN_HEATMAP_H
#define ATTN_HEATMAP_H

#include "../attn.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Palettes: piecewise linear between anchors evenly spaced over [0, 1], rounded to the nearest integer;
 * NaN is mid gray (128,128,128). Appended only. */
typedef enum attn_palette {
    ATTN_PALETTE_MAGMA = 0,      /* the default: dark indigo, purple, magenta-red, orange, pale yellow */
    ATTN_PALETTE_VIRIDIS,        /* dark violet, blue, teal, green, yellow */
    ATTN_PALETTE_GRAY,           /* black to white */
    ATTN_PALETTE_BLUES,          /* near white to dark blue (seaborn's "Blues": low values light) */
    ATTN_PALETTE_COUNT
} attn_palette;

/* "magma", "viridis", "gray", "blues"; NULL for a value out of range. */
const char *attn_palette_name(attn_palette p);

/* The palette called name (as attn_palette_name spells it): ATTN_OK, or ATTN_ERR_ARG for another name. */
attn_status attn_palette_from_name(const char *name, attn_palette *p);

/* The colour of t in [0, 1] (clamped) in palette p, as drawn in the PNGs, the terminal and the explorer. */
attn_status attn_palette_color(attn_palette p, float t, unsigned char rgb[3]);

typedef struct attn_heatmap {
    const float *values;         /* (rows, cols), rows row_stride elements apart */
    int rows, cols;
    int64_t row_stride;          /* 0 means cols */
    const char *const *row_labels;  /* rows UTF-8 strings, or NULL */
    const char *const *col_labels;  /* cols UTF-8 strings, or NULL */
    const char *title;           /* or NULL */
    const char *row_title;       /* axis names, e.g. "Queries", or NULL */
    const char *col_title;       /* e.g. "Keys", or NULL */
    float vmin, vmax;            /* color range; vmin == vmax: the data's min and max */
    int annotate;                /* nonzero: each cell's value written in it, when neither side has more
                                    than ATTN_HEATMAP_ANNOTATE_MAX cells (the cells grow to fit them) */
    attn_palette palette;        /* 0: ATTN_PALETTE_MAGMA */
} attn_heatmap;

#define ATTN_HEATMAP_ANNOTATE_MAX 32

/* Writes one heatmap as a PNG, atomically (temporary file, then rename). err gets path and reason.
 * The size follows the labels: cells are at least as tall as a label (10 px), so no two labels touch;
 * on maps of more than 100 cells a side, whose cells are smaller, every k-th label is drawn. Column
 * labels are written across when the widest fits its cell, upward otherwise. */
attn_status attn_heatmap_png(const attn_heatmap *h, const char *path, char *err, size_t err_size);

/* Writes n heatmaps in a grid of grid_cols columns (e.g. one per head) as one PNG, atomically. */
attn_status attn_heatmap_png_grid(const attn_heatmap *maps, int n, int grid_cols, const char *path,
                                  char *err, size_t err_size);

/* Writes the numbers of n maps (e.g. one per head) with their labels, in the format of path's extension,
 * atomically:
 *   .npy   float32 little-endian, shape (rows, cols) for one map, (n, rows, cols) for several (which must
 *          share their size, else ATTN_ERR_SIZE); NumPy arrays hold no strings, so the titles and labels go
 *          to a sibling JSON file: "w.labels.json" for "w.npy" (the .json layout below, without values).
 *   .csv   one line per cell: map,row,col,row_label,col_label,weight (indices from 0, labels quoted).
 *   .json  {"maps": [{"title", "row_title", "col_title", "shape": [rows, cols], "rows": [labels],
 *          "cols": [labels], "values": [[...], ...]}]}; NaN and infinities as null.
 * Missing labels are the indices. Numbers carry 9 significant digits (the same float32 back). Another
 * extension is ATTN_ERR_ARG. */
attn_status attn_heatmap_save_values(const attn_heatmap *maps, int n, const char *path, char *err, size_t err_size);

/* One map of the explorer: a heatmap and where it sits. Maps of the same group (e.g. "encoder
 * self-attention") are chosen between by layer and head; a group, layer or head with a single value
 * shows no chooser. */
typedef struct attn_explorer_map {
    attn_heatmap map;            /* values, labels, titles, colour range, palette (annotate is ignored) */
    const char *group;           /* e.g. "cross-attention"; NULL: "attention" */
    int layer;                   /* 1-based block, 0: none */
    int head;                    /* 1-based head, 0: none, or beside other heads their mean ("mean of the
                                    heads" in the chooser) */
    /* Optional (a map without it must have these fields zero: build it with an initializer or calloc):
     * the image the tokens are patches of (a ViT's). NULL: none. Tokens first_patch ..
     * first_patch + grid_rows * grid_cols - 1 (columns of the map; rows too where the map has them) are
     * the patches in reading order, each covering its share of the image. The page then draws the image
     * with the attention of one token (the first row's, or the patch pointed at) over its patches. */
    const float *image;          /* (image_rows, image_cols) grey levels, any range (drawn min..max) */
    int image_rows, image_cols;  /* each 1 .. 4096 */
    int grid_rows, grid_cols;    /* patches per side: 1 .. image_rows, 1 .. image_cols */
    int first_patch;             /* the first patch's token, e.g. 1 after a class token */
} attn_explorer_map;

#define ATTN_EXPLORER_MAX_MAPS 1024

/* Writes the interactive explorer of n maps as one self-contained HTML page (inline CSS, script and data;
 * nothing fetched), atomically. The page has choosers for group, layer and head, the chosen map as a
 * matrix of coloured cells under the column labels, and the tokens in two lines (keys above, queries
 * below) joined by lines as strong as the weights. Pointing at (or focusing, or tapping) a query
 * highlights its row and its lines to the keys and lists its weights; a key, its column and who attends
 * to it; a cell shows its value. title heads the page (NULL: "Attention"), note is a line under it (NULL:
 * none). Every string is escaped for HTML and for the script (invalid UTF-8 becomes U+FFFD). Cells take
 * their colours from the map's palette, computed here, exactly as in the PNG. Limits: n in 1 ..
 * ATTN_EXPLORER_MAX_MAPS, each map at most 4096 cells a side. A map with an image also shows the image:
 * its patches coloured (and numbered) by one token's attention, the class token's (first row) until a
 * patch is pointed at, then that patch's row. */
attn_status attn_explorer_html(const attn_explorer_map *maps, int n, const char *title, const char *note,
                               const char *path, char *err, size_t err_size);

/* Draws the heatmap in a terminal: one colored block per cell (24-bit ANSI colors when color is
 * nonzero, shaded characters otherwise), labels beside the rows and under the columns, and a scale. */
attn_status attn_heatmap_term(const attn_heatmap *h, FILE *out, int color);

/* An image with attention maps over it, as one PNG (atomically): the image alone, then one panel per map
 * with the grey image under the map's colours. Each map (grid_rows, grid_cols) is scaled to its own
 * min..max and each of its cells covers its share of the image (a ViT's patch). */
typedef struct attn_overlay {
    const float *image;          /* (rows, cols) grey levels, any range (drawn from its min to its max) */
    int rows, cols;
    const float *maps;           /* (n_maps, grid_rows, grid_cols), or NULL when n_maps is 0 */
    int n_maps, grid_rows, grid_cols;   /* n_maps <= 64; grid_rows <= rows, grid_cols <= cols */
    const char *const *captions; /* n_maps + 1 strings (the image's, then each map's), or NULL */
    const char *title;           /* or NULL */
    int scale;                   /* pixels per image pixel; 0: 8 */
} attn_overlay;

attn_status attn_overlay_png(const attn_overlay *o, const char *path, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_HEATMAP_H */
