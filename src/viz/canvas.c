/*
 * canvas.c — what every picture of src/viz draws with: an RGB canvas, filled rectangles, lines, text in
 * the bitmap font (font.c) left to right or turned upward, and the PNG writer (libpng), which writes
 * "<path>.tmp" and renames it over path so a crash never leaves half a picture.
 *
 * Allocations: the PNG writer allocates the temporary path and one row-pointer array.
 */
#define _POSIX_C_SOURCE 200809L

#include "viz/heatmap_internal.h"
#include "io/files.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const unsigned char attn__ink[3] = {20, 20, 20};
const unsigned char attn__paper[3] = {255, 255, 255};
const unsigned char attn__frame[3] = {90, 90, 90};

void attn__fill_rect(attn__canvas *cv, int x, int y, int w, int h, const unsigned char col[3]) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > cv->w ? cv->w : x + w, y1 = y + h > cv->h ? cv->h : y + h;
    for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++) memcpy(cv->rgb + ((size_t)yy * cv->w + xx) * 3, col, 3);
}

void attn__draw_line(attn__canvas *cv, int x0, int y0, int x1, int y1, int thick, const unsigned char col[3]) {
    /* Bresenham, a thick x thick square at every step */
    int dx = x1 > x0 ? x1 - x0 : x0 - x1, dy = y1 > y0 ? y0 - y1 : y1 - y0;
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy, o = thick / 2;
    for (;;) {
        attn__fill_rect(cv, x0 - o, y0 - o, thick, thick, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

int attn__text_chars(const char *s, int max) {
    if (!s) return 0;
    size_t n = strlen(s), i = 0;
    int k = 0;
    while (i < n && k < max) { uint32_t cp; i += (size_t)attn__utf8_next(s + i, n - i, &cp); k++; }
    if (i < n) k = max;          /* cut: the last one becomes '~' */
    return k;
}

void attn__draw_text(attn__canvas *cv, int x, int y, const char *s, int sc, int rot, int max_chars,
                     const unsigned char col[3]) {
    if (!s) return;
    size_t n = strlen(s), i = 0;
    int k = 0;
    while (i < n && k < max_chars) {
        uint32_t cp;
        i += (size_t)attn__utf8_next(s + i, n - i, &cp);
        if (k == max_chars - 1 && i < n) cp = '~';
        unsigned char rows[ATTN_FONT_H];
        attn__glyph(cp, rows);
        for (int py = 0; py < ATTN_FONT_H; py++)
            for (int px = 0; px < ATTN_FONT_W; px++) {
                if (!(rows[py] >> (ATTN_FONT_W - 1 - px) & 1)) continue;
                int along = k * ATTN_FONT_ADVANCE + px;
                if (rot == 0) attn__fill_rect(cv, x + along * sc, y + py * sc, sc, sc, col);
                else attn__fill_rect(cv, x + py * sc, y - (along + 1) * sc, sc, sc, col);
            }
        k++;
    }
}

/* Writes the canvas to f; returns 0 on success. Kept apart so setjmp only guards libpng's calls. */
static int png_write_canvas(FILE *f, const attn__canvas *cv, png_bytep *rows) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    if (!png) return -1;
    png_infop info = png_create_info_struct(png);
    if (!info) { png_destroy_write_struct(&png, NULL); return -1; }
    if (setjmp(png_jmpbuf(png))) { png_destroy_write_struct(&png, &info); return -1; }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)cv->w, (png_uint_32)cv->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

attn_status attn__canvas_save_png(const attn__canvas *cv, const char *path, char *err, size_t err_size) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)cv->h);
    if (!tmp || !rows) { free(tmp); free(rows); attn__set_err(err, err_size, "%s: %s", path, "out of memory"); return ATTN_ERR_NOMEM; }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    for (int y = 0; y < cv->h; y++) rows[y] = cv->rgb + (size_t)y * cv->w * 3;

    attn_status st = ATTN_OK;
    const char *target_kind = attn__not_replaceable(path), *kind = NULL;
    FILE *f = target_kind ? NULL : attn__fopen_tmp(tmp, &kind);
    if (!f) {
        if (target_kind)
            attn__set_err(err, err_size, "%s: exists and is %s, not a regular file: refusing to replace it (write to another path)", path, target_kind);
        else if (kind)
            attn__set_err(err, err_size, "%s: cannot create: it is %s, not a regular file", tmp, kind);
        else
            attn__set_err(err, err_size, "%s: cannot create: %s", tmp, strerror(errno));
        st = ATTN_ERR_IO;
    } else {
        int bad = png_write_canvas(f, cv, rows);
        if (fflush(f) != 0) bad = 1;
        if (!bad && fsync(fileno(f)) != 0) bad = 1;
        if (fclose(f) != 0) bad = 1;
        if (bad) {
            attn__set_err(err, err_size, "%s: %s", tmp, "write failed");
            remove(tmp);
            st = ATTN_ERR_IO;
        } else if (rename(tmp, path) != 0) {
            attn__set_err(err, err_size, "%s: %s", path, "cannot rename the temporary file over it");
            remove(tmp);
            st = ATTN_ERR_IO;
        }
    }
    free(rows);
    free(tmp);
    return st;
}
