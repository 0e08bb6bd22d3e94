/*
 * attn/plot.h — training histories and their curves: a table of numbers with named columns (one row
 * per epoch) read from and written to CSV, and line charts drawn as PNG files (through libpng).
 *
 *     attn_table t;
 *     const char *cols[] = {"epoch", "loss", "val_loss"};
 *     attn_table_init(&t, 3, cols);
 *     double row[3] = {1, 0.52, 0.38};
 *     attn_table_append(&t, row);                      // after every epoch, then:
 *     attn_table_write_csv(&t, "out/history.csv", err, sizeof err);   // atomically
 *
 *     attn_plot_series s[2] = {{"loss", x, loss, n}, {"val_loss", x, val, n}};
 *     attn_plot p = {"Loss per epoch", "epoch", "loss", s, 2, 0, 0};
 *     attn_plot_png(&p, "loss.png", err, sizeof err);
 *
 * The CSV is plain: a header of column names, then one row of numbers per line, comma-separated; an
 * empty field is a missing value (NaN in memory, never drawn). Writers write "<path>.tmp" and rename it
 * over path; they refuse a path that is not a regular file.
 */
#ifndef ATTN_PLOT_H
#define ATTN_PLOT_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------
 * Tables (a training history).
 */
#define ATTN_TABLE_MAX_COLS 64
#define ATTN_TABLE_MAX_ROWS 1000000

typedef struct attn_table {
    int n_cols, n_rows;
    char **names;                /* (n_cols) column names: letters, digits, '_', '.', '-' */
    double *values;              /* (n_rows, n_cols), row-major; NaN = missing */
    int cap_rows;                /* rows allocated */
} attn_table;

/* An empty table with these columns (1..ATTN_TABLE_MAX_COLS names, each 1..63 characters of letters,
 * digits, '_', '.', '-', no two alike). Allocates the names. */
attn_status attn_table_init(attn_table *t, int n_cols, const char *const *names);

/* Appends one row of n_cols values (NaN for missing). Grows the rows by doubling. */
attn_status attn_table_append(attn_table *t, const double *row);

/* The index of the column called name, or -1. */
int attn_table_column(const attn_table *t, const char *name);

/* Frees what the table holds; t is zeroed. Safe on a zeroed table. */
void attn_table_free(attn_table *t);

/* Writes the table as CSV ("%.6g" numbers; a missing value is an empty field), atomically. */
attn_status attn_table_write_csv(const attn_table *t, const char *path, char *err, size_t err_size);

/* Reads a CSV written as above (or by hand: spaces around fields and CRLF line ends are accepted, blank
 * lines are skipped) into a new table. A malformed file gives ATTN_ERR_FORMAT and err names the path, the
 * line and what was expected; at most 64 MiB. */
attn_status attn_table_read_csv(attn_table *t, const char *path, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------------------
 * Line charts.
 */
#define ATTN_PLOT_MAX_SERIES 8

typedef struct attn_plot_series {
    const char *name;            /* the legend's text */
    const double *x;             /* (n) x values, increasing or not; NULL means 1, 2, ..., n */
    const double *y;             /* (n); a NaN or infinite y is a gap in the line */
    int n;
} attn_plot_series;

typedef struct attn_plot {
    const char *title;           /* above the chart, or NULL */
    const char *x_label, *y_label; /* axis names, or NULL */
    const attn_plot_series *series;
    int n_series;                /* 1..ATTN_PLOT_MAX_SERIES, drawn in distinct colours */
    int width, height;           /* the plotting area in pixels; 0 means 560 x 320 (each 120..4096) */
} attn_plot;

/* Draws one line chart: the title on top, axes with ticks at round numbers (1, 2 or 5 times a power of
 * ten) and their values, the axis names, a grid, each series as a line with a mark on every point (when
 * there are 60 or fewer), and a legend to the right of the chart. No text ever overlaps another. */
attn_status attn_plot_png(const attn_plot *p, const char *path, char *err, size_t err_size);

/* Draws n charts in a grid of grid_cols columns (e.g. loss beside accuracy) as one PNG. */
attn_status attn_plot_png_grid(const attn_plot *plots, int n, int grid_cols, const char *path, char *err,
                               size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_PLOT_H */
