/*
 * history.c — training histories for the `attn` trainings and `attn plot`: the CSV kept beside a
 * checkpoint (one row per epoch, rewritten atomically after every epoch, so an interrupted training keeps
 * what it did and a resumed one carries on from the checkpoint's epoch), and the tutorials' curves drawn
 * from it (one chart per quantity: loss and val_loss (or test_loss) together, acc and val_acc (or test_acc)
 * together, ...).
 * Uses only the public API (attn/plot.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Columns never drawn by default: time and speed are not curves a tutorial shows, nor is a decision rule
 * chosen per epoch (detect's rule_cut, rule_dedup: its f1 is drawn). */
static int is_undrawn_column(const char *name) {
    return strcmp(name, "seconds") == 0 || strcmp(name, "tokens_per_sec") == 0 || strncmp(name, "rule_", 5) == 0;
}

/* The quantity a column measures: its name without a "val_" or "test_" prefix (the vision history holds
 * test_loss and test_acc: it measures on the test split). */
static const char *quantity(const char *name) {
    return strncmp(name, "val_", 4) == 0 ? name + 4 : strncmp(name, "test_", 5) == 0 ? name + 5 : name;
}

static const char *quantity_title(const char *q) {
    if (strcmp(q, "acc") == 0 || strcmp(q, "accuracy") == 0) return "accuracy";
    return q;
}

int cli_history_plot(const attn_table *t, const char *png, const char *title, const char *const *columns,
                     int n_columns, char *err, size_t err_size) {
    enum { MAX_CHARTS = 8 };
    if (t->n_rows == 0) {
        snprintf(err, err_size, "the history has no rows yet: nothing to draw");
        return 1;
    }
    int xc = attn_table_column(t, "epoch");
    if (xc < 0) xc = 0;
    /* the columns drawn: the ones asked for, or all but x and time */
    int cols[ATTN_TABLE_MAX_COLS], n = 0;
    if (n_columns > 0) {
        for (int i = 0; i < n_columns && n < ATTN_TABLE_MAX_COLS; i++) {
            int c = attn_table_column(t, columns[i]);
            if (c < 0) {
                snprintf(err, err_size, "no column '%s' in the history", columns[i]);
                return 2;
            }
            cols[n++] = c;
        }
    } else {
        for (int c = 0; c < t->n_cols; c++)
            if (c != xc && !is_undrawn_column(t->names[c])) cols[n++] = c;
    }
    if (n == 0) {
        snprintf(err, err_size, "the history has no column to draw besides %s", t->names[xc]);
        return 1;
    }
    /* one chart per quantity, its series in the columns' order */
    double *x = malloc(sizeof(double) * (size_t)t->n_rows), *y = malloc(sizeof(double) * (size_t)t->n_rows * n);
    if (!x || !y) { free(x); free(y); snprintf(err, err_size, "out of memory"); return 1; }
    for (int r = 0; r < t->n_rows; r++) {
        x[r] = t->values[(size_t)r * t->n_cols + xc];
        for (int i = 0; i < n; i++) y[(size_t)i * t->n_rows + r] = t->values[(size_t)r * t->n_cols + cols[i]];
    }
    attn_plot charts[MAX_CHARTS];
    attn_plot_series series[MAX_CHARTS][ATTN_PLOT_MAX_SERIES];
    char titles[MAX_CHARTS][160];
    const char *qs[MAX_CHARTS];
    int n_charts = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        const char *q = quantity(t->names[cols[i]]);
        int k = 0;
        while (k < n_charts && strcmp(qs[k], q) != 0) k++;
        if (k == n_charts) {
            if (n_charts == MAX_CHARTS) {
                snprintf(err, err_size, "more than %d quantities to draw: choose some with --columns", MAX_CHARTS);
                rc = 2;
                break;
            }
            qs[k] = q;
            const char *qt = quantity_title(q);
            if (title) snprintf(titles[k], sizeof titles[k], "%s: %s per %s", title, qt, t->names[xc]);
            else snprintf(titles[k], sizeof titles[k], "%s per %s", qt, t->names[xc]);
            charts[k] = (attn_plot){titles[k], t->names[xc], qt, series[k], 0, 0, 0};
            n_charts++;
        }
        if (charts[k].n_series == ATTN_PLOT_MAX_SERIES) {
            snprintf(err, err_size, "more than %d curves of %s in one chart", ATTN_PLOT_MAX_SERIES, q);
            rc = 2;
            break;
        }
        series[k][charts[k].n_series++] = (attn_plot_series){t->names[cols[i]], x, y + (size_t)i * t->n_rows, t->n_rows};
    }
    if (rc == 0) {
        char e[1024] = "";
        attn_status st = attn_plot_png_grid(charts, n_charts, n_charts < 2 ? 1 : 2, png, e, sizeof e);
        if (st != ATTN_OK) {
            snprintf(err, err_size, "%s", e[0] ? e : attn_status_string(st));
            rc = 1;
        }
    }
    free(x);
    free(y);
    return rc;
}

int cli_history_start(cli_history *h, const char *who, const char *path, int n_cols, const char *const *names,
                      int resume_epoch, const char *plot, const char *title) {
    memset(h, 0, sizeof *h);
    snprintf(h->path, sizeof h->path, "%s", path);
    snprintf(h->who, sizeof h->who, "%s", who);
    h->plot = plot;
    h->title = title;
    attn_status st = attn_table_init(&h->t, n_cols, names);
    if (st != ATTN_OK) return cli_fail(st, "history");
    if (resume_epoch <= 0) return 0;
    /* a resumed training: the epochs the checkpoint holds come from the history so far */
    char err[1024] = "";
    attn_table old;
    st = attn_table_read_csv(&old, path, err, sizeof err);
    if (st == ATTN_ERR_IO && access(path, F_OK) != 0) {
        fprintf(stderr, "attn: %s: note: no history %s to resume: it starts at epoch %d\n", who, path,
                resume_epoch + 1);
        return 0;
    }
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: %s: --resume: %s; move it away to start a new history\n", who, err);
        attn_table_free(&h->t);
        return 1;
    }
    int same = old.n_cols == n_cols;
    for (int c = 0; same && c < n_cols; c++) same = strcmp(old.names[c], names[c]) == 0;
    const int ec = attn_table_column(&old, "epoch");
    if (!same || ec < 0) {
        fprintf(stderr, "attn: %s: --resume: %s has other columns than this training writes; move it away to start "
                "a new history\n", who, path);
        attn_table_free(&old);
        attn_table_free(&h->t);
        return 1;
    }
    /* rows of epochs after the checkpoint's (written before an interruption) are dropped */
    int dropped = 0;
    for (int r = 0; r < old.n_rows && st == ATTN_OK; r++) {
        const double *row = old.values + (size_t)r * old.n_cols;
        if (row[ec] > resume_epoch) { dropped++; continue; }
        st = attn_table_append(&h->t, row);
    }
    attn_table_free(&old);
    if (st != ATTN_OK) { attn_table_free(&h->t); return cli_fail(st, "history"); }
    if (dropped)
        fprintf(stderr, "attn: %s: note: %s had %d row%s past the checkpoint's epoch %d: replaced by this run\n", who,
                path, dropped, dropped == 1 ? "" : "s", resume_epoch);
    return 0;
}

int cli_history_add(cli_history *h, const double *row, int draw) {
    char err[1024] = "";
    attn_status st = attn_table_append(&h->t, row);
    if (st != ATTN_OK) return cli_fail(st, "history");
    st = attn_table_write_csv(&h->t, h->path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: %s: writing the history: %s\n", h->who, err[0] ? err : attn_status_string(st));
        return 1;
    }
    if (h->plot && draw) {
        int rc = cli_history_plot(&h->t, h->plot, h->title, NULL, 0, err, sizeof err);
        if (rc) {
            fprintf(stderr, "attn: %s: --plot %s: %s\n", h->who, h->plot, err);
            return 1;
        }
    }
    return 0;
}

void cli_history_free(cli_history *h) { attn_table_free(&h->t); }
