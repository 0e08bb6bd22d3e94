/*
 * detect_canvas.c — the detection data: square canvases holding a few items of an image split (Fashion-
 * MNIST's 28x28 grey images) at random places, with each item's class and tight box. A canvas is a pure
 * function of (seed, index), so a training run, an evaluation and a picture draw the same canvases in any
 * order. Contract in attn/detr.h.
 */
#include "attn/detr.h"

#include <string.h>

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The tight box [x0, x1] x [y0, y1] (inclusive) of an image's non-zero pixels; the whole image if none. */
static void tight_box(const uint8_t *img, int rows, int cols, int box[4]) {
    int x0 = cols, x1 = -1, y0 = rows, y1 = -1;
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++)
            if (img[(size_t)y * cols + x]) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) { x0 = 0; x1 = cols - 1; y0 = 0; y1 = rows - 1; }
    box[0] = x0; box[1] = y0; box[2] = x1; box[3] = y1;
}

/* IoU of two inclusive pixel boxes */
static double pixel_iou(const int a[4], const int b[4]) {
    const int iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]) + 1;
    const int ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]) + 1;
    const double inter = iw > 0 && ih > 0 ? (double)iw * ih : 0.0;
    const double aa = (double)(a[2] - a[0] + 1) * (a[3] - a[1] + 1), ab = (double)(b[2] - b[0] + 1) * (b[3] - b[1] + 1);
    return inter / (aa + ab - inter);
}

attn_status attn_detr_canvas(uint8_t *canvas, attn_detr_scene *scene, const attn_fmnist_split *split, int S,
                             int max_items, uint64_t seed, uint64_t index) {
    if (!canvas || !scene || !split || !split->images || !split->labels) return ATTN_ERR_NULL;
    if (split->n < 1 || split->rows < 1 || split->cols < 1 || S < split->rows || S < split->cols ||
        S > ATTN_DETR_MAX_CANVAS)
        return ATTN_ERR_SIZE;
    if (max_items < 1 || max_items > ATTN_DETR_MAX_ITEMS) return ATTN_ERR_ARG;
    attn_rng r;
    attn_rng_seed(&r, mix64(seed ^ mix64(index)));
    memset(canvas, 0, (size_t)S * (size_t)S);
    memset(scene, 0, sizeof *scene);
    const int want = 1 + (int)(attn_rng_u32(&r) % (uint32_t)max_items);
    const int rows = split->rows, cols = split->cols;
    int placed[ATTN_DETR_MAX_ITEMS][4];
    for (int it = 0; it < want; it++) {
        const int k = (int)(attn_rng_u32(&r) % (uint32_t)split->n);
        const uint8_t *img = split->images + (size_t)k * rows * cols;
        int tb[4];
        tight_box(img, rows, cols, tb);
        /* a place whose box overlaps no earlier item's by more than ATTN_DETR_MAX_OVERLAP (IoU) */
        int ok = 0, ox = 0, oy = 0, box[4];
        for (int tries = 0; tries < 64 && !ok; tries++) {
            ox = (int)(attn_rng_u32(&r) % (uint32_t)(S - cols + 1));
            oy = (int)(attn_rng_u32(&r) % (uint32_t)(S - rows + 1));
            box[0] = ox + tb[0]; box[1] = oy + tb[1]; box[2] = ox + tb[2]; box[3] = oy + tb[3];
            ok = 1;
            for (int j = 0; j < scene->n; j++)
                if (pixel_iou(box, placed[j]) > ATTN_DETR_MAX_OVERLAP) ok = 0;
        }
        if (!ok) continue;
        /* draw (the brighter pixel wins where items overlap) and record the box in canvas units */
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++) {
                uint8_t *c = canvas + (size_t)(oy + y) * S + (ox + x);
                const uint8_t v = img[(size_t)y * cols + x];
                if (v > *c) *c = v;
            }
        const int n = scene->n++;
        memcpy(placed[n], box, sizeof box);
        scene->labels[n] = split->labels[k];
        scene->boxes[n][0] = (float)((box[0] + box[2] + 1) * 0.5 / S);
        scene->boxes[n][1] = (float)((box[1] + box[3] + 1) * 0.5 / S);
        scene->boxes[n][2] = (float)((double)(box[2] - box[0] + 1) / S);
        scene->boxes[n][3] = (float)((double)(box[3] - box[1] + 1) / S);
    }
    return ATTN_OK;
}
