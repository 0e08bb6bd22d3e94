/*
 * fuzz_csv.c — the training-history reader (attn_table_read_csv), then the layout of a chart of what
 * it read (attn__plot_geometry): a table read is consistent (names valid and distinct, n_rows rows), and
 * a chart of any numbers keeps every text inside the image and clear of the others.
 */
#include "fuzz_util.h"
#include "attn/plot.h"
#include "viz/heatmap_internal.h"

#include <math.h>
#include <string.h>

static int overlap(const attn__box *a, const attn__box *b) {
    return a->x < b->x + b->w && b->x < a->x + a->w && a->y < b->y + b->h && b->y < a->y + a->h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    attn_table t;
    char err[512];
    const char *path = fuzz_input_path(data, size);
    if (attn_table_read_csv(&t, path, err, sizeof err) != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
        FUZZ_ASSERT(t.names == NULL && t.values == NULL);
        return 0;
    }
    FUZZ_ASSERT(t.n_cols >= 1 && t.n_cols <= ATTN_TABLE_MAX_COLS && t.n_rows >= 0 && t.n_rows <= t.cap_rows + (t.cap_rows == 0));
    for (int c = 0; c < t.n_cols; c++) {
        FUZZ_ASSERT(t.names[c][0] != '\0' && strlen(t.names[c]) <= 63);
        FUZZ_ASSERT(attn_table_column(&t, t.names[c]) == c);
    }
    if (t.n_rows > 0) {
        /* column 0 as x, the others (up to the series' limit) as curves */
        attn_plot_series s[ATTN_PLOT_MAX_SERIES];
        double *cols = malloc(sizeof(double) * (size_t)t.n_rows * (size_t)t.n_cols);
        FUZZ_ASSERT(cols != NULL);
        for (int c = 0; c < t.n_cols; c++)
            for (int r = 0; r < t.n_rows; r++) cols[(size_t)c * t.n_rows + r] = t.values[(size_t)r * t.n_cols + c];
        int n = 0;
        for (int c = t.n_cols > 1 ? 1 : 0; c < t.n_cols && n < ATTN_PLOT_MAX_SERIES; c++, n++)
            s[n] = (attn_plot_series){t.names[c], t.n_cols > 1 ? cols : NULL, cols + (size_t)c * t.n_rows, t.n_rows};
        attn_plot p = {t.names[0], t.names[0], t.names[t.n_cols - 1], s, n, 0, 0};
        attn__plot_geom g;
        if (attn__plot_geometry(&p, &g) == ATTN_OK) {
            FUZZ_ASSERT(g.y1 > g.y0 && g.x1 > g.x0 && isfinite(g.y0) == isfinite(g.y1));
            for (int i = 0; i < g.n_boxes; i++) {
                const attn__box *a = &g.boxes[i];
                FUZZ_ASSERT(a->x >= 0 && a->y >= 0 && a->x + a->w <= g.width && a->y + a->h <= g.height);
                for (int j = 0; j < i; j++) FUZZ_ASSERT(!overlap(a, &g.boxes[j]));
            }
        }
        free(cols);
    }
    attn_table_free(&t);
    return 0;
}
