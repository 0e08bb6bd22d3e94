/*
 * test_heatmap.c — the heatmap module: writes PNGs, reads them back with libpng and checks the image
 * size, the exact colors of known cells and of the scale bar, that labels left ink, the grid layout, the
 * terminal renderer (24-bit colors and shaded characters), the font's fallbacks, and bad input (NULL,
 * empty, bad stride or range, a path in a missing directory: an error and no file left behind).
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/heatmap.h"
#include "testutil.h"
#include "viz/heatmap_internal.h"

#include <png.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads a PNG as RGB; returns the pixels (caller frees) and the size, or NULL. */
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

static const unsigned char *px(const unsigned char *img, int w, int x, int y) {
    return img + ((size_t)y * w + x) * 3;
}

static int same_rgb(const unsigned char *a, const unsigned char *b) {
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2];
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static void test_colormap(void) {
    unsigned char c[3];
    attn__colormap(0.0f, c);
    CHECK(c[0] == 12 && c[1] == 7 && c[2] == 46);
    attn__colormap(1.0f, c);
    CHECK(c[0] == 252 && c[1] == 240 && c[2] == 140);
    attn__colormap(0.5f, c);
    CHECK(c[0] == 170 && c[1] == 46 && c[2] == 92);
    attn__colormap(0.125f, c);          /* halfway between the first two anchors: (42, 14.5→15, 79) */
    CHECK(c[0] == 42 && c[1] == 15 && c[2] == 79);
    attn__colormap(-3.0f, c);
    CHECK(c[0] == 12);
    attn__colormap(7.0f, c);
    CHECK(c[0] == 252);
    attn__colormap(NAN, c);
    CHECK(c[0] == 128 && c[1] == 128 && c[2] == 128);
    /* brightness rises along the map */
    int prev = -1, mono = 1;
    for (int i = 0; i <= 100; i++) {
        attn__colormap((float)i / 100.0f, c);
        int s = c[0] + c[1] + c[2];
        if (s < prev) mono = 0;
        prev = s;
    }
    CHECK(mono);
}

static void test_font(void) {
    unsigned char e[ATTN_FONT_H], eacute[ATTN_FONT_H], q[ATTN_FONT_H], cjk[ATTN_FONT_H], bad[ATTN_FONT_H];
    attn__glyph('e', e);
    attn__glyph(0xE9, eacute);          /* é: the e, plus an acute accent in rows 0-1 */
    CHECK(e[0] == 0 && e[1] == 0 && (eacute[0] | eacute[1]) != 0);
    CHECK(memcmp(e + 2, eacute + 2, ATTN_FONT_H - 2) == 0);
    unsigned char c[ATTN_FONT_H], cced[ATTN_FONT_H];
    attn__glyph('c', c);
    attn__glyph(0xE7, cced);            /* ç: cedilla below */
    CHECK(memcmp(c, cced, 7) == 0 && (cced[7] | cced[8]) != 0);
    attn__glyph('?', q);
    attn__glyph(0x4E2D, cjk);           /* anything else: '?' */
    attn__glyph(0xFFFD, bad);
    CHECK(memcmp(q, cjk, ATTN_FONT_H) == 0 && memcmp(q, bad, ATTN_FONT_H) == 0);
    unsigned char A[ATTN_FONT_H], Agrave[ATTN_FONT_H];
    attn__glyph('A', A);
    attn__glyph(0xC0, Agrave);          /* À: base letter */
    CHECK(memcmp(A, Agrave, ATTN_FONT_H) == 0);
    /* every printable ASCII glyph but the space has ink */
    int blank = 0;
    for (int ch = 33; ch < 127; ch++) {
        unsigned char g[ATTN_FONT_H];
        attn__glyph((uint32_t)ch, g);
        int any = 0;
        for (int r = 0; r < ATTN_FONT_H; r++) any |= g[r];
        if (!any) blank++;
    }
    CHECK(blank == 0);
    uint32_t cp;
    CHECK(attn__utf8_next("\xC3\xA9", 2, &cp) == 2 && cp == 0xE9);
    CHECK(attn__utf8_next("\xE2\x80\xAF", 3, &cp) == 3 && cp == 0x202F);
    CHECK(attn__utf8_next("\xC3", 1, &cp) == 1 && cp == 0xFFFD);        /* truncated */
    CHECK(attn__utf8_next("\xC0\xAF", 2, &cp) == 1 && cp == 0xFFFD);    /* overlong */
    CHECK(attn__utf8_next("\xFF", 1, &cp) == 1 && cp == 0xFFFD);
}

static void test_png(const char *dir) {
    /* 3 queries x 4 keys; max 0.9 at (1,2), min 0.0 at (2,0), 0.45 = the middle of the range */
    float v[3 * 4] = {0.1f, 0.2f, 0.3f, 0.4f,
                      0.05f, 0.45f, 0.9f, 0.2f,
                      0.0f, 0.3f, 0.6f, 0.1f};
    const char *rl[3] = {"va", "!", "<eos>"};
    const char *cl[4] = {"go", ".", "<eos>", "\xC3\xA9t\xC3\xA9"};
    attn_heatmap h = {v, 3, 4, 0, rl, cl, "Attention weights", "Queries", "Keys", 0, 0, 0, ATTN_PALETTE_MAGMA};
    attn__heatmap_geom g;
    CHECK_STATUS(attn__heatmap_geometry(&h, &g), ATTN_OK);
    CHECK(g.vmin == 0.0f && g.vmax == 0.9f);

    char path[512], err[256];
    snprintf(path, sizeof path, "%s/map.png", dir);
    CHECK_STATUS(attn_heatmap_png(&h, path, err, sizeof err), ATTN_OK);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));
    int w = 0, hh = 0;
    unsigned char *img = read_png(path, &w, &hh);
    CHECK(img != NULL);
    if (!img) return;
    CHECK(w == g.width && hh == g.height);
    printf("  png %dx%d, cell %d px, grid at (%d,%d)\n", w, hh, g.cell, g.grid_x, g.grid_y);
    CHECK(g.cell >= 8);
    static const unsigned char bright[3] = {252, 240, 140}, dark[3] = {12, 7, 46}, mid[3] = {170, 46, 92};
    int cx = g.grid_x + 2 * g.cell + g.cell / 2, cy = g.grid_y + 1 * g.cell + g.cell / 2;
    CHECK(same_rgb(px(img, w, cx, cy), bright));                       /* max cell */
    cx = g.grid_x + g.cell / 2; cy = g.grid_y + 2 * g.cell + g.cell / 2;
    CHECK(same_rgb(px(img, w, cx, cy), dark));                         /* min cell */
    cx = g.grid_x + 1 * g.cell + g.cell / 2; cy = g.grid_y + 1 * g.cell + g.cell / 2;
    CHECK(same_rgb(px(img, w, cx, cy), mid));                          /* 0.45 of [0, 0.9] */
    /* every cell: exactly the colormap at its value, corner to corner */
    int cells_ok = 1;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            unsigned char want[3];
            attn__colormap((v[r * 4 + c] - 0.0f) / 0.9f, want);
            int x0 = g.grid_x + c * g.cell, y0 = g.grid_y + r * g.cell;
            if (!same_rgb(px(img, w, x0, y0), want) || !same_rgb(px(img, w, x0 + g.cell - 1, y0 + g.cell - 1), want))
                cells_ok = 0;
        }
    CHECK(cells_ok);
    /* scale bar: bright at the top, dark at the bottom */
    CHECK(same_rgb(px(img, w, g.bar_x + g.bar_w / 2, g.bar_y), bright));
    CHECK(same_rgb(px(img, w, g.bar_x + g.bar_w / 2, g.bar_y + g.bar_h - 1), dark));
    /* labels left ink left of the grid (row labels) and below it (column labels) */
    int ink_left = 0, ink_below = 0;
    for (int y = g.grid_y; y < g.grid_y + 3 * g.cell; y++)
        for (int x = 0; x < g.grid_x - 2; x++) ink_left += px(img, w, x, y)[0] < 100;
    for (int y = g.grid_y + 3 * g.cell + 2; y < hh; y++)
        for (int x = g.grid_x; x < g.grid_x + 4 * g.cell; x++) ink_below += px(img, w, x, y)[0] < 100;
    CHECK(ink_left > 50 && ink_below > 50);
    free(img);

    /* explicit range: 0.45 in [0, 0.9] as before, but in [0, 1] a value 1.0 would be bright */
    h.vmin = 0; h.vmax = 1;
    CHECK_STATUS(attn__heatmap_geometry(&h, &g), ATTN_OK);
    CHECK_STATUS(attn_heatmap_png(&h, path, err, sizeof err), ATTN_OK);   /* replaces the file */
    img = read_png(path, &w, &hh);
    CHECK(img != NULL);
    if (img) {
        unsigned char want[3];
        attn__colormap(0.9f, want);
        CHECK(same_rgb(px(img, w, g.grid_x + 2 * g.cell + 1, g.grid_y + g.cell + 1), want));
        free(img);
    }

    /* a grid of two maps side by side: twice the width of one panel */
    attn_heatmap two[2] = {h, h};
    two[1].title = "head 2";
    snprintf(path, sizeof path, "%s/grid.png", dir);
    CHECK_STATUS(attn_heatmap_png_grid(two, 2, 2, path, err, sizeof err), ATTN_OK);
    img = read_png(path, &w, &hh);
    CHECK(img != NULL && w == 2 * g.width && hh == g.height);
    free(img);

    /* a bigger map with strided rows and no labels (indices are drawn) */
    float big[40 * 64];
    for (int i = 0; i < 40 * 64; i++) big[i] = (float)(i % 64) / 63.0f;
    attn_heatmap hb = {big, 40, 50, 64, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, ATTN_PALETTE_MAGMA};
    snprintf(path, sizeof path, "%s/big.png", dir);
    CHECK_STATUS(attn_heatmap_png(&hb, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn__heatmap_geometry(&hb, &g), ATTN_OK);
    img = read_png(path, &w, &hh);
    CHECK(img != NULL && w == g.width && hh == g.height);
    if (img) {
        unsigned char want[3];
        attn__colormap(49.0f / 63.0f / (49.0f / 63.0f), want);   /* last column holds the max, 49/63 */
        CHECK(same_rgb(px(img, w, g.grid_x + 49 * g.cell + g.cell / 2, g.grid_y + g.cell / 2), want));
        free(img);
    }
    /* NaN cells are gray and do not disturb the range */
    float vn[4] = {0.0f, NAN, 1.0f, 0.5f};
    attn_heatmap hn = {vn, 2, 2, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, ATTN_PALETTE_MAGMA};
    snprintf(path, sizeof path, "%s/nan.png", dir);
    CHECK_STATUS(attn_heatmap_png(&hn, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn__heatmap_geometry(&hn, &g), ATTN_OK);
    CHECK(g.vmin == 0.0f && g.vmax == 1.0f);
    img = read_png(path, &w, &hh);
    if (img) {
        static const unsigned char gray[3] = {128, 128, 128};
        CHECK(same_rgb(px(img, w, g.grid_x + g.cell + 2, g.grid_y + 2), gray));
        free(img);
    } else CHECK(0);
}

static void test_bad_input(const char *dir) {
    float v[4] = {0, 1, 2, 3};
    attn_heatmap h = {v, 2, 2, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, ATTN_PALETTE_MAGMA};
    char path[512], tmp[600], err[256];
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    err[0] = 0;
    CHECK_STATUS(attn_heatmap_png(&h, path, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "no/such/dir") != NULL);
    CHECK(!file_exists(path) && !file_exists(tmp));
    printf("  missing directory: %s\n", err);

    snprintf(path, sizeof path, "%s/bad.png", dir);
    CHECK_STATUS(attn_heatmap_png(NULL, path, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_heatmap_png(&h, NULL, err, sizeof err), ATTN_ERR_NULL);
    attn_heatmap b = h;
    b.values = NULL;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_NULL);
    b = h; b.rows = 0;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_SIZE);
    b = h; b.cols = -1;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_SIZE);
    b = h; b.row_stride = 1;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_STRIDE);
    b = h; b.vmin = 2; b.vmax = 1;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_ARG);
    b = h; b.vmin = NAN;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_ARG);
    const char *labels[2] = {"a", NULL};
    b = h; b.row_labels = labels;
    CHECK_STATUS(attn_heatmap_png(&b, path, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_heatmap_png_grid(&h, 0, 1, path, err, sizeof err), ATTN_ERR_SIZE);
    CHECK(!file_exists(path));
    CHECK_STATUS(attn_heatmap_term(NULL, stdout, 1), ATTN_ERR_NULL);
    CHECK_STATUS(attn_heatmap_term(&h, NULL, 1), ATTN_ERR_NULL);
    b = h; b.rows = 0;
    CHECK_STATUS(attn_heatmap_term(&b, stdout, 0), ATTN_ERR_SIZE);
}

/* The PNG writer renames "<path>.tmp" over path: a FIFO or a symbolic link there is refused and left as
 * it was (as root, `--png /dev/null` once replaced the device with a plain file). */
static void test_special_targets(const char *dir) {
    float v[4] = {0, 1, 2, 3};
    attn_heatmap h = {v, 2, 2, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, ATTN_PALETTE_MAGMA};
    char fifo[512], link[512], good[512], err[256];
    struct stat sb;
    snprintf(fifo, sizeof fifo, "%s/fifo.png", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    err[0] = 0;
    CHECK_STATUS(attn_heatmap_png(&h, fifo, err, sizeof err), ATTN_ERR_IO);
    printf("  PNG over a FIFO: %s\n", err);
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode) && strstr(err, "not a regular file") != NULL);
    snprintf(good, sizeof good, "%s/good.png", dir);
    snprintf(link, sizeof link, "%s/link.png", dir);
    CHECK_STATUS(attn_heatmap_png(&h, good, err, sizeof err), ATTN_OK);
    CHECK(symlink(good, link) == 0);
    CHECK_STATUS(attn_heatmap_png_grid(&h, 1, 1, link, err, sizeof err), ATTN_ERR_IO);
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode) && strstr(err, "symbolic link") != NULL);
}

static void test_term(void) {
    float v[2 * 3] = {0.0f, 0.5f, 1.0f, 0.25f, 0.75f, 0.1f};
    const char *rl[2] = {"il", "\xC3\xA9t\xC3\xA9"};
    const char *cl[3] = {"he", "is", "<eos>"};
    attn_heatmap h = {v, 2, 3, 0, rl, cl, "weights", NULL, NULL, 0, 0, 0, ATTN_PALETTE_MAGMA};
    for (int color = 1; color >= 0; color--) {
        FILE *f = tmpfile();
        CHECK(f != NULL);
        if (!f) return;
        CHECK_STATUS(attn_heatmap_term(&h, f, color), ATTN_OK);
        long n = ftell(f);
        rewind(f);
        char *buf = calloc((size_t)n + 1, 1);
        CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
        fclose(f);
        CHECK(strstr(buf, "weights\n") != NULL);
        CHECK(strstr(buf, "\xC3\xA9t\xC3\xA9 ") != NULL);              /* a UTF-8 row label, intact */
        if (color) {
            CHECK(strstr(buf, "\x1b[48;2;252;240;140m") != NULL);      /* the max cell */
            CHECK(strstr(buf, "\x1b[48;2;12;7;46m") != NULL);          /* the min cell */
            fputs(buf, stdout);
        } else {
            CHECK(strchr(buf, '\x1b') == NULL);
            CHECK(strstr(buf, "\u2588\u2588") != NULL);                /* the max cell, full block */
            fputs(buf, stdout);
        }
        CHECK(strstr(buf, "scale 0 ") != NULL && strstr(buf, " 1\n") != NULL);
        CHECK(strstr(buf, "\n    h i < \n") != NULL);          /* "<eos>" does not fit 2 characters: upward */
        free(buf);
    }
    /* labels of up to 2 characters go across, under their cells */
    const char *shortl[3] = {"he", "is", "."};
    h.col_labels = shortl;
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    CHECK_STATUS(attn_heatmap_term(&h, f, 0), ATTN_OK);
    long n = ftell(f);
    rewind(f);
    char *buf = calloc((size_t)n + 1, 1);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    CHECK(buf && strstr(buf, "\n    heis. \nscale") != NULL);
    if (buf) fputs(buf, stdout);
    free(buf);
}

/* What attn_heatmap_term prints (malloc'ed), or NULL after a failed check. */
static char *term_text(const attn_heatmap *h, int color) {
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return NULL;
    CHECK_STATUS(attn_heatmap_term(h, f, color), ATTN_OK);
    long n = ftell(f);
    rewind(f);
    char *buf = calloc((size_t)n + 1, 1);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    return buf;
}

/* The palettes: exact anchors, names both ways, and the same colours in the PNG, the terminal and the
 * colour bar, for a map of 0, 0.25, 0.5, 0.75, 1 in each palette. */
static void test_palettes(const char *dir) {
    static const struct { attn_palette p; const char *name; unsigned char at0[3], at_half[3], at1[3]; } want[] = {
        {ATTN_PALETTE_MAGMA, "magma", {12, 7, 46}, {170, 46, 92}, {252, 240, 140}},
        {ATTN_PALETTE_VIRIDIS, "viridis", {68, 1, 84}, {33, 145, 140}, {253, 231, 37}},
        {ATTN_PALETTE_GRAY, "gray", {0, 0, 0}, {128, 128, 128}, {255, 255, 255}},
        {ATTN_PALETTE_BLUES, "blues", {247, 251, 255}, {107, 174, 214}, {8, 48, 107}},
    };
    CHECK(sizeof want / sizeof want[0] == ATTN_PALETTE_COUNT);
    attn_palette got;
    CHECK_STATUS(attn_palette_from_name("inferno", &got), ATTN_ERR_ARG);
    CHECK_STATUS(attn_palette_from_name(NULL, &got), ATTN_ERR_NULL);
    CHECK(attn_palette_name(ATTN_PALETTE_COUNT) == NULL);
    unsigned char c[3];
    CHECK_STATUS(attn_palette_color(ATTN_PALETTE_COUNT, 0.5f, c), ATTN_ERR_ARG);
    /* the grays' mid point: 127.5 rounds up; the quarter of viridis: its second anchor */
    CHECK_STATUS(attn_palette_color(ATTN_PALETTE_VIRIDIS, 0.25f, c), ATTN_OK);
    CHECK(c[0] == 59 && c[1] == 82 && c[2] == 139);
    CHECK_STATUS(attn_palette_color(ATTN_PALETTE_GRAY, 0.25f, c), ATTN_OK);
    CHECK(c[0] == 64 && c[1] == 64 && c[2] == 64);                  /* 63.75 → 64 */
    float v[5] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f};
    for (int i = 0; i < ATTN_PALETTE_COUNT; i++) {
        CHECK(strcmp(attn_palette_name(want[i].p), want[i].name) == 0);
        CHECK_STATUS(attn_palette_from_name(want[i].name, &got), ATTN_OK);
        CHECK(got == want[i].p);
        CHECK_STATUS(attn_palette_color(want[i].p, 0.0f, c), ATTN_OK);
        CHECK(same_rgb(c, want[i].at0));
        CHECK_STATUS(attn_palette_color(want[i].p, 0.5f, c), ATTN_OK);
        CHECK(same_rgb(c, want[i].at_half));
        CHECK_STATUS(attn_palette_color(want[i].p, 1.0f, c), ATTN_OK);
        CHECK(same_rgb(c, want[i].at1));
        /* the PNG: each cell and the bar's ends */
        attn_heatmap h = {v, 1, 5, 0, NULL, NULL, want[i].name, NULL, NULL, 0.0f, 1.0f, 0, want[i].p};
        attn__heatmap_geom g;
        CHECK_STATUS(attn__heatmap_geometry(&h, &g), ATTN_OK);
        char path[600], err[256];
        snprintf(path, sizeof path, "%s/palette_%s.png", dir, want[i].name);
        CHECK_STATUS(attn_heatmap_png(&h, path, err, sizeof err), ATTN_OK);
        int w = 0, hh = 0;
        unsigned char *img = read_png(path, &w, &hh);
        CHECK(img != NULL);
        if (!img) continue;
        int ok = 1;
        for (int k = 0; k < 5; k++) {
            unsigned char e[3];
            attn_palette_color(want[i].p, v[k], e);
            ok &= same_rgb(px(img, w, g.grid_x + k * g.cell + g.cell / 2, g.grid_y + g.cell / 2), e);
        }
        CHECK(ok);
        CHECK(same_rgb(px(img, w, g.grid_x + g.cell / 2, g.grid_y + g.cell / 2), want[i].at0));
        CHECK(same_rgb(px(img, w, g.grid_x + 4 * g.cell + g.cell / 2, g.grid_y + g.cell / 2), want[i].at1));
        CHECK(same_rgb(px(img, w, g.bar_x + g.bar_w / 2, g.bar_y), want[i].at1));
        CHECK(same_rgb(px(img, w, g.bar_x + g.bar_w / 2, g.bar_y + g.bar_h - 1), want[i].at0));
        free(img);
        /* the terminal: the same colours as escape codes */
        char *buf = term_text(&h, 1);
        char code[64];
        snprintf(code, sizeof code, "\x1b[48;2;%d;%d;%dm", want[i].at1[0], want[i].at1[1], want[i].at1[2]);
        CHECK(buf && strstr(buf, code) != NULL);
        snprintf(code, sizeof code, "\x1b[48;2;%d;%d;%dm", want[i].at_half[0], want[i].at_half[1], want[i].at_half[2]);
        CHECK(buf && strstr(buf, code) != NULL);
        free(buf);
    }
    /* a palette out of range is refused by every renderer */
    attn_heatmap bad = {v, 1, 5, 0, NULL, NULL, NULL, NULL, NULL, 0.0f, 1.0f, 0, ATTN_PALETTE_COUNT};
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/palette_bad.png", dir);
    CHECK_STATUS(attn_heatmap_png(&bad, path, err, sizeof err), ATTN_ERR_ARG);
    CHECK_STATUS(attn_heatmap_term(&bad, stdout, 0), ATTN_ERR_ARG);
    CHECK(!file_exists(path));
    printf("  palettes: %d, exact at 0, 0.5, 1 in the PNG, its bar and the terminal\n", ATTN_PALETTE_COUNT);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    *n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    return buf;
}

/* The numbers behind the pictures: .npy (header, shape, exact floats) with its labels file, CSV, JSON. */
static void test_values(const char *dir) {
    const float v[2 * 3] = {0.25f, 0.5f, 0.25f, 1.0f / 3.0f, NAN, 0.125f};
    const float v2[2 * 3] = {1, 0, 0, 0, 0, 1};
    const char *rl[2] = {"il", "est \"calme\""}, *cl[3] = {"he's", "calm", "\xC3\xA9t\xC3\xA9"};
    attn_heatmap maps[2] = {{v, 2, 3, 0, rl, cl, "head 1", "French", "English", 0, 1, 0, ATTN_PALETTE_MAGMA},
                            {v2, 2, 3, 0, rl, NULL, "head 2", NULL, NULL, 0, 1, 0, ATTN_PALETTE_MAGMA}};
    char path[600], err[256];
    size_t n = 0;
    /* .npy of one map: (2, 3) */
    snprintf(path, sizeof path, "%s/w.npy", dir);
    CHECK_STATUS(attn_heatmap_save_values(maps, 1, path, err, sizeof err), ATTN_OK);
    char *b = slurp(path, &n);
    CHECK(b != NULL);
    if (b) {
        CHECK(memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
        size_t hl = (unsigned char)b[8] | (size_t)(unsigned char)b[9] << 8;
        CHECK((10 + hl) % 64 == 0 && b[10 + hl - 1] == '\n');
        CHECK(strstr(b + 10, "'descr': '<f4'") && strstr(b + 10, "'fortran_order': False") &&
              strstr(b + 10, "'shape': (2, 3)"));
        CHECK(n == 10 + hl + 6 * 4);
        if (n == 10 + hl + 6 * 4) {
            float got[6];
            memcpy(got, b + 10 + hl, sizeof got);           /* little-endian machine */
            CHECK(got[0] == 0.25f && got[3] == 1.0f / 3.0f && isnan(got[4]) && got[5] == 0.125f);
        }
        free(b);
    }
    snprintf(path, sizeof path, "%s/w.labels.json", dir);
    b = slurp(path, &n);
    CHECK(b && strstr(b, "\"title\": \"head 1\"") && strstr(b, "\"rows\": [\"il\", \"est \\\"calme\\\"\"]") &&
          strstr(b, "\"cols\": [\"he's\", \"calm\", \"\xC3\xA9t\xC3\xA9\"]") && !strstr(b, "values"));
    free(b);
    /* .npy of two maps: (2, 2, 3); different sizes are refused */
    snprintf(path, sizeof path, "%s/heads.npy", dir);
    CHECK_STATUS(attn_heatmap_save_values(maps, 2, path, err, sizeof err), ATTN_OK);
    b = slurp(path, &n);
    CHECK(b && strstr(b + 10, "'shape': (2, 2, 3)") && n == 128 + 12 * 4);
    if (b && n == 128 + 12 * 4) {
        float got[12];
        memcpy(got, b + 128, sizeof got);
        CHECK(got[6] == 1 && got[11] == 1 && got[7] == 0);
    }
    free(b);
    attn_heatmap other = maps[1];
    other.cols = 2;
    attn_heatmap mixed[2] = {maps[0], other};
    CHECK_STATUS(attn_heatmap_save_values(mixed, 2, path, err, sizeof err), ATTN_ERR_SIZE);
    CHECK(strstr(err, "differ in size") != NULL);
    /* CSV: one line per cell, labels quoted, NaN as nan, indices for missing labels */
    snprintf(path, sizeof path, "%s/w.csv", dir);
    CHECK_STATUS(attn_heatmap_save_values(maps, 2, path, err, sizeof err), ATTN_OK);
    b = slurp(path, &n);
    CHECK(b && strncmp(b, "map,row,col,row_label,col_label,weight\n0,0,0,\"il\",\"he's\",0.25\n", 62) == 0);
    CHECK(b && strstr(b, "\n0,1,0,\"est \"\"calme\"\"\",\"he's\",0.333333343\n") != NULL);
    CHECK(b && strstr(b, "\n0,1,1,\"est \"\"calme\"\"\",\"calm\",nan\n") != NULL);
    CHECK(b && strstr(b, "\n1,1,2,\"est \"\"calme\"\"\",\"2\",1\n") != NULL);
    int lines = 0;
    for (size_t i = 0; b && i < n; i++) lines += b[i] == '\n';
    CHECK(lines == 1 + 12);
    free(b);
    /* JSON: values by row, NaN as null, titles */
    snprintf(path, sizeof path, "%s/w.json", dir);
    CHECK_STATUS(attn_heatmap_save_values(maps, 2, path, err, sizeof err), ATTN_OK);
    b = slurp(path, &n);
    CHECK(b && strstr(b, "[0.25, 0.5, 0.25]") && strstr(b, "[0.333333343, null, 0.125]") &&
          strstr(b, "\"row_title\": \"French\"") && strstr(b, "\"col_title\": null") &&
          strstr(b, "\"cols\": [\"0\", \"1\", \"2\"]") && strstr(b, "\"shape\": [2, 3]"));
    free(b);
    /* errors: another extension, NULL, a FIFO target, a missing folder; nothing left behind */
    snprintf(path, sizeof path, "%s/w.txt", dir);
    CHECK_STATUS(attn_heatmap_save_values(maps, 1, path, err, sizeof err), ATTN_ERR_ARG);
    CHECK(strstr(err, ".npy, .csv or .json") != NULL && !file_exists(path));
    CHECK_STATUS(attn_heatmap_save_values(NULL, 1, path, err, sizeof err), ATTN_ERR_NULL);
    attn_heatmap nolab = maps[0];
    const char *holes[2] = {"a", NULL};
    nolab.row_labels = holes;
    snprintf(path, sizeof path, "%s/h.json", dir);
    CHECK_STATUS(attn_heatmap_save_values(&nolab, 1, path, err, sizeof err), ATTN_ERR_NULL);
    snprintf(path, sizeof path, "%s/fifo.csv", dir);
    if (mkfifo(path, 0600) == 0) {
        CHECK_STATUS(attn_heatmap_save_values(maps, 1, path, err, sizeof err), ATTN_ERR_IO);
        CHECK(strstr(err, "FIFO") != NULL);
    }
    snprintf(path, sizeof path, "%s/nope/w.npy", dir);
    CHECK_STATUS(attn_heatmap_save_values(maps, 1, path, err, sizeof err), ATTN_ERR_IO);
}

typedef struct { int x, y, w, h; } hbox;
static int hbox_overlap(hbox a, hbox b) {
    return a.w && b.w && a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/* Layout: sizes from the labels, labels that never touch, titles apart, column labels across when they
 * fit, numbers in the cells. */
static void test_layout(const char *dir) {
    static float v64[64 * 64];
    static char lab_buf[64][16];
    const char *lab[64];
    for (int i = 0; i < 64; i++) {
        snprintf(lab_buf[i], sizeof lab_buf[i], i % 3 ? "word%d" : "gyp%d", i);
        lab[i] = lab_buf[i];
        for (int j = 0; j < 64; j++) v64[i * 64 + j] = (float)((i * 7 + j * 3) % 11) / 10.0f;
    }
    attn_heatmap h = {v64, 64, 64, 0, lab, lab, "IMDB self-attention weights", "Queries", "Keys", 0, 1, 0, ATTN_PALETTE_MAGMA};
    attn__heatmap_geom g;
    CHECK_STATUS(attn__heatmap_geometry(&h, &g), ATTN_OK);
    /* a 64-word picture: every label drawn, a label's height apart (the old layout: 6 px cells, 9 px labels) */
    CHECK(g.label_step == 1 && g.cell >= ATTN_FONT_H * g.label_scale + 1);
    CHECK(!g.col_across);
    hbox t = {g.title_box.x, g.title_box.y, g.title_box.w, g.title_box.h};
    hbox rt = {g.row_title_box.x, g.row_title_box.y, g.row_title_box.w, g.row_title_box.h};
    hbox ct = {g.col_title_box.x, g.col_title_box.y, g.col_title_box.w, g.col_title_box.h};
    hbox grid = {g.grid_x, g.grid_y, 64 * g.cell, 64 * g.cell};
    CHECK(!hbox_overlap(t, rt) && !hbox_overlap(t, ct) && !hbox_overlap(rt, ct));
    CHECK(!hbox_overlap(t, grid) && !hbox_overlap(rt, grid) && !hbox_overlap(ct, grid));
    printf("  64 words: %dx%d, cell %d, labels at scale %d\n", g.width, g.height, g.cell, g.label_scale);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/words64.png", dir);
    CHECK_STATUS(attn_heatmap_png(&h, path, err, sizeof err), ATTN_OK);
    int w, hh;
    unsigned char *img = read_png(path, &w, &hh);
    CHECK(img && w == g.width && hh == g.height);
    if (img) {
        /* between two row labels' bands there is a blank pixel row left of the grid: they never touch */
        int touching = 0;
        for (int r = 0; r + 1 < 64; r++) {
            int y_end = g.grid_y + r * g.cell + (g.cell - 7 * g.label_scale) / 2 + ATTN_FONT_H * g.label_scale;
            int y_next = g.grid_y + (r + 1) * g.cell + (g.cell - 7 * g.label_scale) / 2;
            if (y_end > y_next) touching++;
        }
        CHECK(touching == 0);
        free(img);
    }

    /* a short, wide map with a long axis name (the walk-through's): the title stays above it */
    static const float v4[4] = {0.1192f, 0, 0, 0.8808f};
    static const char *const one[1] = {"s"}, *keys[4] = {"h1", "h2", "h3", "h4"};
    attn_heatmap s = {v4, 1, 4, 0, one, keys, "attention weights", "decoder state", "keys", 0, 1, 0, ATTN_PALETTE_MAGMA};
    CHECK_STATUS(attn__heatmap_geometry(&s, &g), ATTN_OK);
    t = (hbox){g.title_box.x, g.title_box.y, g.title_box.w, g.title_box.h};
    rt = (hbox){g.row_title_box.x, g.row_title_box.y, g.row_title_box.w, g.row_title_box.h};
    ct = (hbox){g.col_title_box.x, g.col_title_box.y, g.col_title_box.w, g.col_title_box.h};
    CHECK(!hbox_overlap(t, rt) && !hbox_overlap(t, ct) && !hbox_overlap(rt, ct));
    CHECK(rt.y >= 0 && rt.y + rt.h <= g.height && t.x >= 0 && t.x + t.w <= g.width && ct.x + ct.w <= g.width);
    CHECK(g.col_across);                       /* "h1" fits its 32 px cell */

    /* a 1x1 map (a decoder's first step) whose long row title reaches below the grid: the column title
     * stays right of it */
    static const char *const bos[1] = {"<bos>"}, *eos[1] = {"<eos>"};
    attn_heatmap s1 = {v4 + 3, 1, 1, 0, eos, bos, "decoder self-attention", "French (produced)",
                       "French (read so far)", 0, 1, 1, ATTN_PALETTE_MAGMA};
    CHECK_STATUS(attn__heatmap_geometry(&s1, &g), ATTN_OK);
    t = (hbox){g.title_box.x, g.title_box.y, g.title_box.w, g.title_box.h};
    rt = (hbox){g.row_title_box.x, g.row_title_box.y, g.row_title_box.w, g.row_title_box.h};
    ct = (hbox){g.col_title_box.x, g.col_title_box.y, g.col_title_box.w, g.col_title_box.h};
    CHECK(!hbox_overlap(t, rt) && !hbox_overlap(t, ct) && !hbox_overlap(rt, ct));
    CHECK(ct.x + ct.w <= g.width && rt.y + rt.h <= g.height);
    snprintf(path, sizeof path, "%s/one_cell.png", dir);
    CHECK_STATUS(attn_heatmap_png(&s1, path, err, sizeof err), ATTN_OK);
    img = read_png(path, &w, &hh);
    CHECK(img != NULL);
    if (img) {
        unsigned char c1[3];
        attn__colormap(0.8808f, c1);             /* the cell's colour, at its corners (the number sits inside) */
        CHECK(w == g.width && hh == g.height);
        CHECK(same_rgb(px(img, w, g.grid_x, g.grid_y), c1) &&
              same_rgb(px(img, w, g.grid_x + g.cell - 1, g.grid_y + g.cell - 1), c1));
        free(img);
    }

    /* numbers in the cells: dark ink on bright cells, paper on dark ones, the corners still the colour */
    s.annotate = 1;
    CHECK_STATUS(attn__heatmap_geometry(&s, &g), ATTN_OK);
    CHECK(g.number_scale >= 1);
    snprintf(path, sizeof path, "%s/annotated.png", dir);
    CHECK_STATUS(attn_heatmap_png(&s, path, err, sizeof err), ATTN_OK);
    img = read_png(path, &w, &hh);
    CHECK(img != NULL);
    if (img) {
        static const unsigned char white[3] = {255, 255, 255}, dark[3] = {20, 20, 20};
        unsigned char c0[3], c3[3];
        attn__colormap(0.1192f, c0);
        attn__colormap(0.8808f, c3);
        int ink0 = 0, ink3 = 0;
        for (int y = g.grid_y; y < g.grid_y + g.cell; y++)
            for (int x = 0; x < g.cell; x++) {
                ink0 += same_rgb(px(img, w, g.grid_x + x, y), white);
                ink3 += same_rgb(px(img, w, g.grid_x + 3 * g.cell + x, y), dark);
            }
        CHECK(ink0 > 10 && ink3 > 10);
        CHECK(same_rgb(px(img, w, g.grid_x, g.grid_y), c0) && same_rgb(px(img, w, g.grid_x + 4 * g.cell - 1, g.grid_y), c3));
        free(img);
    }
    /* too many cells to write numbers in: none */
    h.annotate = 1;
    CHECK_STATUS(attn__heatmap_geometry(&h, &g), ATTN_OK);
    CHECK(g.number_scale == 0);
    /* more than 100 a side: small cells, every k-th label, still apart */
    static float v300[300 * 300];
    attn_heatmap big = {v300, 300, 300, 0, NULL, NULL, NULL, NULL, NULL, 0, 1, 0, ATTN_PALETTE_MAGMA};
    CHECK_STATUS(attn__heatmap_geometry(&big, &g), ATTN_OK);
    CHECK(g.cell * g.label_step >= ATTN_FONT_H * g.label_scale + 1 && g.label_step > 1);
}

int main(void) {
    char dir[] = "/tmp/attn_heatmap_XXXXXX";
    if (!mkdtemp(dir)) { fprintf(stderr, "mkdtemp failed\n"); return 1; }
    test_colormap();
    test_font();
    test_png(dir);
    test_bad_input(dir);
    test_special_targets(dir);
    test_term();
    test_palettes(dir);
    test_values(dir);
    test_layout(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_heatmap");
}
