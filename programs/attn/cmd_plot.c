/*
 * cmd_plot.c — `attn plot HISTORY.csv --out FILE.png`: draws a training history (the CSV every training
 * writes beside its checkpoint) as the tutorials' curves: one line chart per quantity, a quantity's
 * validation (or test) twin in the same chart (loss with val_loss, acc with val_acc or test_acc), epochs
 * along x.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *columns = NULL, *title = NULL;
    const cli_opt opts[] = {
        {"out", CLI_STR, &out, "FILE.png", "the PNG to write (required)"},
        {"columns", CLI_STR, &columns, "A,B,...", "the columns to draw (default: all but epoch, seconds and "
                                                  "tokens_per_sec)"},
        {"title", CLI_STR, &title, "TEXT", "put TEXT before each chart's title"},
    };
    const cli_cmd cmd = {"attn plot HISTORY.csv --out FILE.png [options]",
                         "Draws a training history as line charts: one chart per quantity (loss with val_loss or\n"
                         "test_loss, acc with val_acc or test_acc, ...) against the epoch. Every training\n"
                         "writes its history beside its checkpoint: imdb_history.csv, seq2seq_history.csv,\n"
                         "transformer_history.csv, vit_history.csv.",
                         opts, (int)(sizeof opts / sizeof opts[0]), 1, 1};
    const char *pos[1] = {NULL};
    int n_pos = 0;
    int rc = cli_parse(&cmd, argc, argv, pos, &n_pos);
    if (rc >= 0) return rc;
    if (!out) {
        fprintf(stderr, "attn: plot: missing --out FILE.png\n\n");
        cli_usage(&cmd, stderr);
        return 2;
    }
    size_t n = strlen(out);
    if (n < 5 || strcmp(out + n - 4, ".png") != 0) {
        fprintf(stderr, "attn: plot: --out %s: the file name must end in .png\n\n", out);
        cli_usage(&cmd, stderr);
        return 2;
    }
    if (cli_check_out_file("plot", "--out", out)) return 1;
    /* --columns a,b,c */
    char *list = columns ? strdup(columns) : NULL;
    const char *names[ATTN_TABLE_MAX_COLS];
    int n_names = 0;
    if (columns && !list) return cli_fail(ATTN_ERR_NOMEM, "plot");
    for (char *s = list; s && n_names < ATTN_TABLE_MAX_COLS;) {
        char *e = strchr(s, ',');
        if (e) *e = 0;
        if (*s) names[n_names++] = s;
        s = e ? e + 1 : NULL;
    }
    if (columns && n_names == 0) {
        fprintf(stderr, "attn: plot: --columns '%s' names no column\n\n", columns);
        cli_usage(&cmd, stderr);
        free(list);
        return 2;
    }
    attn_table t;
    char err[1024] = "";
    attn_status st = attn_table_read_csv(&t, pos[0], err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: plot: %s\n", err[0] ? err : attn_status_string(st));
        free(list);
        return 1;
    }
    rc = cli_history_plot(&t, out, title, names, n_names, err, sizeof err);
    if (rc) {
        fprintf(stderr, "attn: plot: %s\n", err);
        if (rc == 2) {
            fprintf(stderr, "attn: plot: the columns of %s are:", pos[0]);
            for (int c = 0; c < t.n_cols; c++) fprintf(stderr, " %s", t.names[c]);
            fputc('\n', stderr);
        }
    } else {
        printf("wrote %s (%d epoch%s)\n", out, t.n_rows, t.n_rows == 1 ? "" : "s");
    }
    attn_table_free(&t);
    free(list);
    return rc;
}
