/*
 * test_plot.c — training histories and curves (attn/plot.h): the CSV table written and read back
 * (missing values, atomic writes, targets that are not regular files), malformed CSV named by line, and
 * line charts read back as PNG: the size, the ticks on round numbers, no two texts overlapping, exact
 * series colours at the data points, ink inside the chart, grids of charts, and bad input.
 * ATTN_TEST_KEEP=DIR writes the pictures there and keeps them (to look at them).
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/plot.h"
#include "testutil.h"
#include "viz/heatmap_internal.h"
#include "nmt_fixture.h"

#include <math.h>
#include <png.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned char *read_png(const char *path, int *w, int *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) return NULL;
    img.format = PNG_FORMAT_RGB;
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(img));
    if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) { free(buf); png_image_free(&img); return NULL; }
    *w = (int)img.width;
    *h = (int)img.height;
    return buf;
}

static const unsigned char *px(const unsigned char *img, int w, int x, int y) { return img + ((size_t)y * w + x) * 3; }

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) (void)!fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    return buf;
}

/* ---------------------------------------------------------------------------------------------------
 * Tables.
 */
static void test_table(const char *dir) {
    char path[600], err[512];
    const char *names[4] = {"epoch", "loss", "acc", "seconds"};
    attn_table t;
    CHECK_STATUS(attn_table_init(&t, 4, names), ATTN_OK);
    for (int e = 1; e <= 40; e++) {              /* past the first growth of the rows */
        double row[4] = {e, 1.0 / e, e == 3 ? NAN : 0.5 + e / 100.0, 12.25};
        CHECK_STATUS(attn_table_append(&t, row), ATTN_OK);
    }
    CHECK(t.n_rows == 40 && attn_table_column(&t, "acc") == 2 && attn_table_column(&t, "nope") == -1);
    snprintf(path, sizeof path, "%s/history.csv", dir);
    CHECK_STATUS(attn_table_write_csv(&t, path, err, sizeof err), ATTN_OK);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    char *text = read_text(path);
    const char *want = "epoch,loss,acc,seconds\n1,1,0.51,12.25\n2,0.5,0.52,12.25\n3,0.333333,,12.25\n";
    CHECK(text && strncmp(text, want, strlen(want)) == 0);
    free(text);
    attn_table r;
    CHECK_STATUS(attn_table_read_csv(&r, path, err, sizeof err), ATTN_OK);
    CHECK(r.n_cols == 4 && r.n_rows == 40 && strcmp(r.names[3], "seconds") == 0);
    if (r.n_rows == 40) {
        CHECK(r.values[2 * 4 + 0] == 3 && isnan(r.values[2 * 4 + 2]) && fabs(r.values[3 * 4 + 1] - 0.25) < 1e-12);
        CHECK(fabs(r.values[39 * 4 + 1] - 0.025) < 1e-9);
    }
    attn_table_free(&r);
    attn_table_free(&t);
    attn_table_free(&t);                         /* twice is fine */

    /* bad names */
    const char *dup[2] = {"a", "a"}, *sp[1] = {"a b"}, *empty[1] = {""};
    CHECK_STATUS(attn_table_init(&t, 2, dup), ATTN_ERR_ARG);
    CHECK_STATUS(attn_table_init(&t, 1, sp), ATTN_ERR_ARG);
    CHECK_STATUS(attn_table_init(&t, 1, empty), ATTN_ERR_ARG);
    CHECK_STATUS(attn_table_init(&t, 0, names), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_table_init(NULL, 1, names), ATTN_ERR_NULL);
    CHECK_STATUS(attn_table_append(&t, NULL), ATTN_ERR_NULL);

    /* written by hand: spaces, CRLF, blank lines */
    snprintf(path, sizeof path, "%s/hand.csv", dir);
    write_text(path, "epoch , loss\r\n\r\n 1, 0.5\r\n2 ,0.25 \r\n\n");
    CHECK_STATUS(attn_table_read_csv(&r, path, err, sizeof err), ATTN_OK);
    CHECK(r.n_rows == 2 && r.n_cols == 2 && strcmp(r.names[0], "epoch") == 0 && r.values[3] == 0.25);
    attn_table_free(&r);

    /* malformed files: the line and what was expected */
    static const struct { const char *text, *want; } bad[] = {
        {"", "empty"},
        {"\n\n", "empty"},
        {"epoch,loss\n1,0.5\n2\n", "line 3: 1 fields, expected 2"},
        {"epoch,loss\n1,0.5\n2,0.4,7\n", "line 3: 3 fields, expected 2"},
        {"epoch,loss\n1,abc\n", "line 2: field 2 (loss): 'abc' is not a number"},
        {"epoch,loss\n1,0.5x\n", "line 2: field 2 (loss)"},
        {"1,2\n3,4\n", "line 1: header column 1 ('1') is a number"},
        {"epoch,epoch\n", "line 1: header column 2 ('epoch') appears twice"},
        {"epoch,,loss\n", "line 1: header column 2 ('') is empty"},
        {"epoch,lo ss\n", "header column 2 ('lo ss') has a character"},
        {"epoch,loss\n1,1e999\n", "line 2: field 2 (loss): '1e999' is not a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text);
        err[0] = 0;
        attn_status st = attn_table_read_csv(&r, path, err, sizeof err);
        CHECK(st == ATTN_ERR_FORMAT);
        CHECK(strstr(err, path) != NULL && strstr(err, bad[i].want) != NULL);
        if (st != ATTN_ERR_FORMAT || !strstr(err, bad[i].want)) fprintf(stderr, "  case %zu: got '%s'\n", i, err);
        CHECK(r.n_cols == 0 && r.names == NULL);
    }
    /* a NUL byte */
    FILE *f = fopen(path, "wb");
    fwrite("epoch\n1\0\n", 1, 9, f);
    fclose(f);
    CHECK_STATUS(attn_table_read_csv(&r, path, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "NUL") != NULL);
    /* missing, a folder */
    snprintf(path, sizeof path, "%s/missing.csv", dir);
    CHECK_STATUS(attn_table_read_csv(&r, path, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "missing.csv") != NULL);
    CHECK_STATUS(attn_table_read_csv(&r, dir, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "a folder") != NULL);

    /* the writer refuses targets that are not regular files, and leaves no temporary file */
    CHECK_STATUS(attn_table_init(&t, 4, names), ATTN_OK);
    snprintf(path, sizeof path, "%s/fifo.csv", dir);
    if (mkfifo(path, 0600) == 0) {
        CHECK_STATUS(attn_table_write_csv(&t, path, err, sizeof err), ATTN_ERR_IO);
        CHECK(strstr(err, "FIFO") != NULL && strstr(err, "refusing") != NULL);
        struct stat s;
        CHECK(stat(path, &s) == 0 && S_ISFIFO(s.st_mode));
    }
    snprintf(path, sizeof path, "%s/no/such/dir/h.csv", dir);
    CHECK_STATUS(attn_table_write_csv(&t, path, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "h.csv") != NULL);
    attn_table_free(&t);
}

/* ---------------------------------------------------------------------------------------------------
 * Charts.
 */
static int boxes_overlap(const attn__box *a, const attn__box *b) {
    return a->x < b->x + b->w && b->x < a->x + a->w && a->y < b->y + b->h && b->y < a->y + a->h;
}

/* Every text inside the image and clear of every other text and of the chart's area. */
static int layout_ok(const attn__plot_geom *g) {
    int ok = 1;
    const attn__box area = {g->area_x - 1, g->area_y - 1, g->area_w + 2, g->area_h + 2};
    for (int i = 0; i < g->n_boxes; i++) {
        const attn__box *a = &g->boxes[i];
        if (a->x < 0 || a->y < 0 || a->x + a->w > g->width || a->y + a->h > g->height) {
            fprintf(stderr, "  box %d (%d,%d %dx%d) outside the %dx%d image\n", i, a->x, a->y, a->w, a->h, g->width,
                    g->height);
            ok = 0;
        }
        if (boxes_overlap(a, &area)) { fprintf(stderr, "  box %d overlaps the chart\n", i); ok = 0; }
        for (int j = 0; j < i; j++)
            if (boxes_overlap(a, &g->boxes[j])) {
                fprintf(stderr, "  boxes %d and %d overlap\n", i, j);
                ok = 0;
            }
    }
    return ok;
}

/* step is 1, 2 or 5 times a power of ten, and every tick a whole multiple of it */
static int round_ticks(const double *t, int n, double step) {
    double p = pow(10.0, floor(log10(step) + 1e-9)), m = step / p;
    if (!(fabs(m - 1) < 1e-9 || fabs(m - 2) < 1e-9 || fabs(m - 5) < 1e-9)) return 0;
    for (int i = 0; i < n; i++)
        if (fabs(t[i] / step - round(t[i] / step)) > 1e-6) return 0;
    return n >= 2;
}

static void test_chart(const char *dir) {
    /* the Keras log of the IMDB tutorial */
    const double loss[5] = {0.5244, 0.3257, 0.2602, 0.2078, 0.1639}, val_loss[5] = {0.3834, 0.3689, 0.3909, 0.4482, 0.5313};
    const double ep[5] = {1, 2, 3, 4, 5};
    attn_plot_series s[2] = {{"loss", ep, loss, 5}, {"val_loss", NULL, val_loss, 5}};
    attn_plot p = {"Loss per epoch", "epoch", "loss", s, 2, 0, 0};
    attn__plot_geom g;
    CHECK_STATUS(attn__plot_geometry(&p, &g), ATTN_OK);
    printf("  chart %dx%d, area (%d,%d) %dx%d; x %g..%g step %g, y %g..%g step %g, %d texts\n", g.width, g.height,
           g.area_x, g.area_y, g.area_w, g.area_h, g.x0, g.x1, g.x_step, g.y0, g.y1, g.y_step, g.n_boxes);
    CHECK(layout_ok(&g));
    CHECK(g.x_step == 1 && g.n_xticks == 5 && g.xticks[0] == 1 && g.xticks[4] == 5);
    CHECK(round_ticks(g.yticks, g.n_yticks, g.y_step));
    CHECK(g.y0 <= 0.1639 && g.y1 >= 0.5313 && g.y1 - g.y0 < 1);
    CHECK(g.n_boxes == g.n_xticks + g.n_yticks + 2 + 2 + 1);

    char path[600], err[512];
    snprintf(path, sizeof path, "%s/loss.png", dir);
    CHECK_STATUS(attn_plot_png(&p, path, err, sizeof err), ATTN_OK);
    int w = 0, h = 0;
    unsigned char *img = read_png(path, &w, &h);
    CHECK(img && w == g.width && h == g.height);
    if (img) {
        /* each data point's mark in its series' colour, exactly */
        int marks = 1;
        for (int k = 0; k < 2; k++) {
            unsigned char col[3];
            attn__plot_color(k, col);
            for (int i = 0; i < 5; i++) {
                int x, y;
                attn__plot_map(&g, ep[i], k ? val_loss[i] : loss[i], &x, &y);
                if (memcmp(px(img, w, x, y), col, 3) != 0 || memcmp(px(img, w, x + 2, y - 2), col, 3) != 0) marks = 0;
            }
        }
        CHECK(marks);
        unsigned char c0[3], c1[3];
        attn__plot_color(0, c0);
        attn__plot_color(1, c1);
        CHECK(memcmp(c0, c1, 3) != 0);
        /* ink inside the chart: the lines (not paper, not grid) */
        int coloured = 0;
        for (int y = g.area_y; y < g.area_y + g.area_h; y++)
            for (int x = g.area_x; x < g.area_x + g.area_w; x++) {
                const unsigned char *q = px(img, w, x, y);
                coloured += !(q[0] == q[1] && q[1] == q[2]);
            }
        CHECK(coloured > 1000);
        /* each text box holds ink, and the paper right of the legend is blank */
        int inked = 0;
        for (int b = 0; b < g.n_boxes; b++) {
            int n = 0;
            for (int y = g.boxes[b].y; y < g.boxes[b].y + g.boxes[b].h; y++)
                for (int x = g.boxes[b].x; x < g.boxes[b].x + g.boxes[b].w; x++) n += px(img, w, x, y)[0] < 100;
            inked += n > 5;
        }
        CHECK(inked == g.n_boxes);
        CHECK(memcmp(px(img, w, w - 2, h - 2), attn__paper, 3) == 0);
        free(img);
    }

    /* 250 epochs (the translator's), a long title, a gap (NaN), a series of one point, odd ranges */
    double x250[250], y250[250], acc[250];
    for (int i = 0; i < 250; i++) {
        x250[i] = i + 1;
        y250[i] = 3.0 * exp(-i / 40.0) + 0.02;
        acc[i] = i == 100 ? NAN : 1 - y250[i] / 4;
    }
    const double one = 0.5;
    attn_plot_series s3[3] = {{"training loss per token", x250, y250, 250}, {"acc", x250, acc, 250},
                              {"single", NULL, &one, 1}};
    attn_plot p3 = {"A rather long title that is wider than the whole chart would otherwise be, cut at sixty "
                    "characters", "epoch", "loss", s3, 3, 300, 160};
    CHECK_STATUS(attn__plot_geometry(&p3, &g), ATTN_OK);
    CHECK(layout_ok(&g));
    CHECK(round_ticks(g.xticks, g.n_xticks, g.x_step) && round_ticks(g.yticks, g.n_yticks, g.y_step));
    printf("  250 epochs on 300 px: x step %g (%d ticks), y step %g\n", g.x_step, g.n_xticks, g.y_step);
    snprintf(path, sizeof path, "%s/long.png", dir);
    CHECK_STATUS(attn_plot_png(&p3, path, err, sizeof err), ATTN_OK);
    img = read_png(path, &w, &h);
    CHECK(img && w == g.width && h == g.height);
    free(img);

    /* big and tiny values; negative; flat */
    static const double big[3] = {1.5e6, 2.5e6, 9e6}, tiny[3] = {1e-5, 3e-5, 2e-5}, neg[3] = {-3, 0.5, 2},
                        flat[3] = {7, 7, 7};
    const double *ys[4] = {big, tiny, neg, flat};
    for (int i = 0; i < 4; i++) {
        attn_plot_series si = {"y", NULL, ys[i], 3};
        attn_plot pi = {"values", "step", "y", &si, 1, 0, 0};
        CHECK_STATUS(attn__plot_geometry(&pi, &g), ATTN_OK);
        CHECK(layout_ok(&g) && round_ticks(g.yticks, g.n_yticks, g.y_step));
        CHECK(g.y0 <= ys[i][0] && g.y1 >= ys[i][2]);
    }

    /* a grid: loss beside accuracy */
    attn_plot two[2] = {p, p};
    two[1].title = "Accuracy per epoch";
    snprintf(path, sizeof path, "%s/grid.png", dir);
    CHECK_STATUS(attn__plot_geometry(&p, &g), ATTN_OK);
    CHECK_STATUS(attn_plot_png_grid(two, 2, 2, path, err, sizeof err), ATTN_OK);
    img = read_png(path, &w, &h);
    CHECK(img && w == 2 * g.width && h == g.height);
    free(img);

    /* bad input */
    attn_plot bad = p;
    bad.n_series = 0;
    CHECK_STATUS(attn_plot_png(&bad, path, err, sizeof err), ATTN_ERR_SIZE);
    bad.n_series = ATTN_PLOT_MAX_SERIES + 1;
    CHECK_STATUS(attn_plot_png(&bad, path, err, sizeof err), ATTN_ERR_SIZE);
    bad = p;
    bad.width = 50;
    CHECK_STATUS(attn_plot_png(&bad, path, err, sizeof err), ATTN_ERR_SIZE);
    attn_plot_series nul = {"x", NULL, NULL, 3};
    bad.width = 0;
    bad.series = &nul;
    bad.n_series = 1;
    CHECK_STATUS(attn_plot_png(&bad, path, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_plot_png(NULL, path, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_plot_png(&p, NULL, err, sizeof err), ATTN_ERR_NULL);
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", dir);
    CHECK_STATUS(attn_plot_png(&p, path, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "x.png") != NULL);
    /* no finite point at all: an empty chart, not a crash */
    const double nans[2] = {NAN, INFINITY};
    attn_plot_series sn = {"nothing", NULL, nans, 2};
    attn_plot pn = {"empty", NULL, NULL, &sn, 1, 0, 0};
    snprintf(path, sizeof path, "%s/empty.png", dir);
    CHECK_STATUS(attn_plot_png(&pn, path, err, sizeof err), ATTN_OK);
}

/* A tiny training through the program, on the translators' counting fixture: its history has one row
 * per epoch with the translator's columns, and `attn plot` draws it. */
static void test_training_history(const char *dir) {
    char data[500], fra[560], out[600], cmd[3000], path[700], err[512];
    (void)nmt_train_set_load;                      /* the header's other helper, not needed here */
    snprintf(data, sizeof data, "%.400s/data", dir);
    snprintf(fra, sizeof fra, "%s/fra-eng", data);
    mkdir(data, 0777);
    mkdir(fra, 0777);
    CHECK(nmt_fixture_write(fra, path, sizeof path) == 0);
    snprintf(out, sizeof out, "%s/model", dir);
    snprintf(cmd, sizeof cmd, "'%s' translate train --data '%s' --out '%s' --epochs 3 --threads 1 --every 1 "
             "--plot '%s/curve.png' > '%s/train.log' 2>&1", ATTN_PROGRAM, data, out, dir, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/seq2seq_history.csv", out);
    attn_table t;
    CHECK_STATUS(attn_table_read_csv(&t, path, err, sizeof err), ATTN_OK);
    CHECK(t.n_cols == 4 && t.n_rows == 3);
    if (t.n_cols == 4 && t.n_rows == 3) {
        CHECK(strcmp(t.names[0], "epoch") == 0 && strcmp(t.names[1], "loss") == 0 &&
              strcmp(t.names[2], "tokens_per_sec") == 0 && strcmp(t.names[3], "seconds") == 0);
        int ok = 1;
        for (int r = 0; r < 3; r++) {
            const double *row = t.values + r * 4;
            ok &= row[0] == r + 1 && row[1] > 0 && isfinite(row[1]) && row[2] > 0 && row[3] > 0;
        }
        CHECK(ok);
        CHECK(t.values[2 * 4 + 1] < t.values[1]);      /* the loss falls over three epochs */
        printf("  history: loss %.4f -> %.4f over 3 epochs\n", t.values[1], t.values[2 * 4 + 1]);
    }
    attn_table_free(&t);
    int w = 0, h = 0;
    snprintf(path, sizeof path, "%s/curve.png", dir);
    unsigned char *img = read_png(path, &w, &h);
    CHECK(img && w > 400 && h > 300);
    free(img);
    /* `attn plot` on it, and on a file broken at line 3 */
    snprintf(cmd, sizeof cmd, "'%s' plot '%s/seq2seq_history.csv' --out '%s/plot.png' > /dev/null", ATTN_PROGRAM, out, dir);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/broken.csv", dir);
    write_text(path, "epoch,loss\n1,0.5\n2,0.4,9\n");
    snprintf(cmd, sizeof cmd, "'%s' plot '%s' --out '%s/plot2.png' 2> '%s/plot.err'", ATTN_PROGRAM, path, dir, dir);
    CHECK(system(cmd) != 0);
    snprintf(path, sizeof path, "%s/plot.err", dir);
    char *msg = read_text(path);
    CHECK(msg && strstr(msg, "broken.csv: line 3: 3 fields, expected 2") != NULL);
    free(msg);
}

int main(void) {
    const char *keep = getenv("ATTN_TEST_KEEP");
    char dir[600] = "/tmp/attn_plot_XXXXXX";
    if (keep && *keep) {
        snprintf(dir, sizeof dir, "%s", keep);
        mkdir(dir, 0777);
    } else if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    test_table(dir);
    test_chart(dir);
    test_training_history(dir);
    if (!(keep && *keep)) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    return tu_finish("test_plot");
}
