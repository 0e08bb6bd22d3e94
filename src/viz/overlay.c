/*
 * overlay.c — an image with attention maps laid over it (attn_overlay_png): the image alone in the first
 * panel, then one panel per map, the grey image under the map's colours (each map scaled to its own
 * range, each cell of the map covering its patch of the image), captions above the panels and a title.
 *
 * Allocations: the canvas, then the PNG writer's (canvas.c).
 */
#include "viz/heatmap_internal.h"
#include "attn/heatmap.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define OV_PAD 12
#define OV_CAPTION 16            /* pixels of caption above a panel */
#define OV_TITLE 24

attn_status attn_overlay_png(const attn_overlay *o, const char *path, char *err, size_t err_size) {
    if (!o || !path || !o->image || (o->n_maps > 0 && !o->maps)) return ATTN_ERR_NULL;
    if (o->rows < 1 || o->cols < 1 || o->rows > 4096 || o->cols > 4096 || o->n_maps < 0 || o->n_maps > 64)
        return ATTN_ERR_SIZE;
    if (o->n_maps > 0 && (o->grid_rows < 1 || o->grid_cols < 1 || o->grid_rows > o->rows || o->grid_cols > o->cols))
        return ATTN_ERR_SIZE;
    const int sc = o->scale > 0 ? o->scale : 8;
    if (sc > 64 || (int64_t)o->cols * sc > 8192 || (int64_t)o->rows * sc > 8192) return ATTN_ERR_SIZE;
    const int pw = o->cols * sc, ph = o->rows * sc, panels = 1 + o->n_maps;
    attn__canvas cv;
    cv.w = OV_PAD + panels * (pw + OV_PAD);
    cv.h = (o->title ? OV_TITLE : 0) + OV_CAPTION + ph + 2 * OV_PAD;
    cv.rgb = malloc((size_t)cv.w * cv.h * 3);
    if (!cv.rgb) return ATTN_ERR_NOMEM;
    memset(cv.rgb, 255, (size_t)cv.w * cv.h * 3);
    if (o->title) {              /* large when it fits the width, else small (cut with '~' only if even that fails) */
        const int room = cv.w - 2 * OV_PAD, tsc = attn__text_chars(o->title, INT_MAX) <= room / (2 * ATTN_FONT_ADVANCE)
                                                      ? 2 : 1;
        attn__draw_text(&cv, OV_PAD, OV_PAD + (tsc == 1 ? 5 : 0), o->title, tsc, 0, room / (tsc * ATTN_FONT_ADVANCE),
                        attn__ink);
    }
    const int top = OV_PAD + (o->title ? OV_TITLE : 0) + OV_CAPTION;

    /* the image's own range, for the grey levels */
    float lo = o->image[0], hi = o->image[0];
    for (size_t i = 0; i < (size_t)o->rows * o->cols; i++) {
        if (o->image[i] < lo) lo = o->image[i];
        if (o->image[i] > hi) hi = o->image[i];
    }
    const float span = hi > lo ? hi - lo : 1.0f;
    for (int p = 0; p < panels; p++) {
        const int x0 = OV_PAD + p * (pw + OV_PAD);
        const float *map = p ? o->maps + (size_t)(p - 1) * o->grid_rows * o->grid_cols : NULL;
        float mlo = 0, mhi = 1;
        if (map) {
            mlo = mhi = map[0];
            for (int i = 0; i < o->grid_rows * o->grid_cols; i++) {
                if (map[i] < mlo) mlo = map[i];
                if (map[i] > mhi) mhi = map[i];
            }
        }
        for (int y = 0; y < o->rows; y++)
            for (int x = 0; x < o->cols; x++) {
                const float g = (o->image[(size_t)y * o->cols + x] - lo) / span;
                unsigned char rgb[3];
                if (map) {
                    /* the map's colour over the grey image: 55% colour, 45% image */
                    const int gy = y * o->grid_rows / o->rows, gx = x * o->grid_cols / o->cols;
                    const float v = map[(size_t)gy * o->grid_cols + gx];
                    attn__colormap(mhi > mlo ? (v - mlo) / (mhi - mlo) : 0.0f, rgb);
                    for (int c = 0; c < 3; c++) rgb[c] = (unsigned char)(0.55f * rgb[c] + 0.45f * 255.0f * g + 0.5f);
                } else {
                    rgb[0] = rgb[1] = rgb[2] = (unsigned char)(255.0f * g + 0.5f);
                }
                attn__fill_rect(&cv, x0 + x * sc, top + y * sc, sc, sc, rgb);
            }
        const char *cap = o->captions ? o->captions[p] : NULL;
        if (cap) attn__draw_text(&cv, x0, top - OV_CAPTION + 3, cap, 1, 0, pw / ATTN_FONT_ADVANCE, attn__ink);
        /* a frame around the panel */
        attn__fill_rect(&cv, x0 - 1, top - 1, pw + 2, 1, attn__frame);
        attn__fill_rect(&cv, x0 - 1, top + ph, pw + 2, 1, attn__frame);
        attn__fill_rect(&cv, x0 - 1, top - 1, 1, ph + 2, attn__frame);
        attn__fill_rect(&cv, x0 + pw, top - 1, 1, ph + 2, attn__frame);
    }
    attn_status st = attn__canvas_save_png(&cv, path, err, err_size);
    free(cv.rgb);
    return st;
}
