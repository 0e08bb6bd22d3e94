/*
 * explorer.c — the interactive explorer: n attention maps (the same attn_heatmap descriptions the PNGs
 * and the weight files take), each named by group, layer and head, written as one self-contained HTML
 * page. The page is the template src/viz/explorer.html, carried in the library (explorer_page.h,
 * generated at build time), with three kinds of holes filled here:
 *   @@TITLE@@, @@NOTE@@  text escaped for HTML (& < > " ' as entities);
 *   @@DATA@@             the maps as JSON inside <script type="application/json">, every string escaped
 *                        so that nothing in it can end the script element or open a comment: < > & as
 *                        \u003c \u003e \u0026, U+2028/U+2029 escaped, control characters as \u00XX.
 *                        A map with an image carries its grey levels (0..255) and its patch grid.
 * Invalid UTF-8 becomes U+FFFD everywhere. The cells' colours are computed here with the map's palette
 * (attn__palette_color, as the PNG), so the page needs no colour code of its own.
 *
 * Allocations: one growing text buffer for the page, freed before returning.
 */
#define _POSIX_C_SOURCE 200809L

#include "viz/heatmap_internal.h"
#include "attn/heatmap.h"
#include "explorer_page.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EX_MAX_CELLS 4096        /* per side, as the PNGs */
#define EX_SCALE_STOPS 11        /* colours of the legend's gradient */

static void put_str(attn__outbuf *b, const char *s) { attn__ob_put(b, s, strlen(s)); }

/* Appends s as HTML text. */
static void put_html(attn__outbuf *b, const char *s) {
    size_t n = s ? strlen(s) : 0, i = 0;
    while (i < n) {
        uint32_t cp;
        int len = attn__utf8_next(s + i, n - i, &cp);
        switch (cp) {
        case '&': put_str(b, "&amp;"); break;
        case '<': put_str(b, "&lt;"); break;
        case '>': put_str(b, "&gt;"); break;
        case '"': put_str(b, "&quot;"); break;
        case '\'': put_str(b, "&#39;"); break;
        default:
            if (cp == 0xFFFD || (cp < 0x20 && cp != '\n' && cp != '\t')) put_str(b, "\xEF\xBF\xBD");
            else attn__ob_put(b, s + i, (size_t)len);
        }
        i += (size_t)len;
    }
}

/* Appends s as a JSON string safe inside a <script> element; NULL as null. */
static void put_js_string(attn__outbuf *b, const char *s) {
    if (!s) { put_str(b, "null"); return; }
    put_str(b, "\"");
    size_t n = strlen(s), i = 0;
    while (i < n) {
        uint32_t cp;
        int len = attn__utf8_next(s + i, n - i, &cp);
        if (cp == '"' || cp == '\\') { char e[2] = {'\\', (char)cp}; attn__ob_put(b, e, 2); }
        else if (cp < 0x20 || cp == '<' || cp == '>' || cp == '&' || cp == 0x2028 || cp == 0x2029)
            attn__ob_printf(b, "\\u%04x", (unsigned)cp);
        else if (cp == 0xFFFD) put_str(b, "\\ufffd");
        else attn__ob_put(b, s + i, (size_t)len);
        i += (size_t)len;
    }
    put_str(b, "\"");
}

static float value_at(const attn_heatmap *h, int r, int c) {
    int64_t stride = h->row_stride ? h->row_stride : h->cols;
    return h->values[(int64_t)r * stride + c];
}

/* Labels of one side: the given ones, or the indices from 0. */
static void put_labels(attn__outbuf *b, const char *const *labels, int n) {
    put_str(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) put_str(b, ",");
        if (labels) put_js_string(b, labels[i]);
        else attn__ob_printf(b, "\"%d\"", i);
    }
    put_str(b, "]");
}

static void put_number(attn__outbuf *b, float v) {
    if (isfinite(v)) attn__ob_printf(b, "%.9g", (double)v);
    else put_str(b, "null");
}

static void put_map(attn__outbuf *b, const attn_explorer_map *e) {
    const attn_heatmap *h = &e->map;
    float lo, hi;
    attn__heatmap_range(h, &lo, &hi);
    put_str(b, "{\"group\":");
    put_js_string(b, e->group ? e->group : "attention");
    attn__ob_printf(b, ",\"layer\":%d,\"head\":%d,\"title\":", e->layer, e->head);
    put_js_string(b, h->title);
    put_str(b, ",\"row_title\":");
    put_js_string(b, h->row_title);
    put_str(b, ",\"col_title\":");
    put_js_string(b, h->col_title);
    put_str(b, ",\n\"rows\":");
    put_labels(b, h->row_labels, h->rows);
    put_str(b, ",\n\"cols\":");
    put_labels(b, h->col_labels, h->cols);
    put_str(b, ",\n\"vmin\":");
    put_number(b, lo);
    put_str(b, ",\"vmax\":");
    put_number(b, hi);
    put_str(b, ",\n\"values\":[");
    for (int r = 0; r < h->rows; r++) {
        put_str(b, r ? ",\n[" : "[");
        for (int c = 0; c < h->cols; c++) {
            if (c) put_str(b, ",");
            put_number(b, value_at(h, r, c));
        }
        put_str(b, "]");
    }
    put_str(b, "],\n\"colors\":[");
    for (int r = 0; r < h->rows; r++) {
        put_str(b, r ? ",\n\"" : "\"");
        for (int c = 0; c < h->cols; c++) {
            unsigned char rgb[3];
            attn__palette_color((int)h->palette, attn__heatmap_t(value_at(h, r, c), lo, hi), rgb);
            attn__ob_printf(b, "%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
        }
        put_str(b, "\"");
    }
    put_str(b, "],\n\"scale\":[");
    for (int i = 0; i < EX_SCALE_STOPS; i++) {
        unsigned char rgb[3];
        attn__palette_color((int)h->palette, (float)i / (EX_SCALE_STOPS - 1), rgb);
        attn__ob_printf(b, "%s\"#%02x%02x%02x\"", i ? "," : "", rgb[0], rgb[1], rgb[2]);
    }
    put_str(b, "]");
    if (e->image) {
        /* the grey levels as 0..255 from the image's min to its max, as attn_overlay_png draws them */
        const int64_t np = (int64_t)e->image_rows * e->image_cols;
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < np; i++)
            if (isfinite(e->image[i])) { mn = fminf(mn, e->image[i]); mx = fmaxf(mx, e->image[i]); }
        attn__ob_printf(b, ",\n\"image\":{\"rows\":%d,\"cols\":%d,\"grid_rows\":%d,\"grid_cols\":%d,\"first\":%d,"
                        "\"pixels\":[", e->image_rows, e->image_cols, e->grid_rows, e->grid_cols, e->first_patch);
        for (int64_t i = 0; i < np; i++) {
            float v = e->image[i];
            int g = !isfinite(v) || !(mx > mn) ? 0 : (int)lrintf(255.0f * (v - mn) / (mx - mn));
            attn__ob_printf(b, "%s%d", i ? "," : "", g);
        }
        put_str(b, "]}");
    }
    put_str(b, "}");
}

static attn_status check_map(const attn_explorer_map *e) {
    const attn_heatmap *h = &e->map;
    if (!h->values) return ATTN_ERR_NULL;
    if (h->rows <= 0 || h->cols <= 0 || h->rows > EX_MAX_CELLS || h->cols > EX_MAX_CELLS) return ATTN_ERR_SIZE;
    if (h->row_stride != 0 && h->row_stride < h->cols) return ATTN_ERR_STRIDE;
    if (isnan(h->vmin) || isnan(h->vmax) || h->vmin > h->vmax) return ATTN_ERR_ARG;
    if ((int)h->palette < 0 || h->palette >= ATTN_PALETTE_COUNT) return ATTN_ERR_ARG;
    if (e->layer < 0 || e->head < 0) return ATTN_ERR_ARG;
    if (e->image) {
        if (e->image_rows <= 0 || e->image_cols <= 0 || e->image_rows > EX_MAX_CELLS || e->image_cols > EX_MAX_CELLS)
            return ATTN_ERR_SIZE;
        if (e->grid_rows <= 0 || e->grid_cols <= 0 || e->grid_rows > e->image_rows || e->grid_cols > e->image_cols)
            return ATTN_ERR_SIZE;
        /* both at most 4096, so the product fits; the patches must be columns of the map */
        if (e->first_patch < 0 || (int64_t)e->grid_rows * e->grid_cols > (int64_t)h->cols - e->first_patch)
            return ATTN_ERR_SIZE;
    }
    for (int i = 0; h->row_labels && i < h->rows; i++) if (!h->row_labels[i]) return ATTN_ERR_NULL;
    for (int i = 0; h->col_labels && i < h->cols; i++) if (!h->col_labels[i]) return ATTN_ERR_NULL;
    return ATTN_OK;
}

attn_status attn_explorer_html(const attn_explorer_map *maps, int n, const char *title, const char *note,
                               const char *path, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!maps || !path) { attn__set_err(err, err_size, "explorer: NULL argument"); return ATTN_ERR_NULL; }
    if (n <= 0 || n > ATTN_EXPLORER_MAX_MAPS) {
        attn__set_err(err, err_size, "%s: number of maps %d out of range 1..%d", path, n, ATTN_EXPLORER_MAX_MAPS);
        return ATTN_ERR_SIZE;
    }
    for (int m = 0; m < n; m++) {
        attn_status st = check_map(&maps[m]);
        if (st != ATTN_OK) {
            attn__set_err(err, err_size, "%s: invalid map %d: %s", path, m, attn_status_string(st));
            return st;
        }
    }
    /* two maps with the same group, layer and head could not both be chosen */
    for (int m = 1; m < n; m++)
        for (int k = 0; k < m; k++) {
            const char *gm = maps[m].group ? maps[m].group : "attention", *gk = maps[k].group ? maps[k].group : "attention";
            if (maps[m].layer == maps[k].layer && maps[m].head == maps[k].head && strcmp(gm, gk) == 0) {
                attn__set_err(err, err_size, "%s: maps %d and %d are both \"%s\", layer %d, head %d", path, k, m, gm,
                              maps[m].layer, maps[m].head);
                return ATTN_ERR_ARG;
            }
        }
    attn__outbuf b = {0};
    const char *p = attn__explorer_page;
    for (;;) {
        const char *hole = strstr(p, "@@");
        if (!hole) { attn__ob_put(&b, p, strlen(p)); break; }
        attn__ob_put(&b, p, (size_t)(hole - p));
        if (strncmp(hole, "@@TITLE@@", 9) == 0) { put_html(&b, title ? title : "Attention"); p = hole + 9; }
        else if (strncmp(hole, "@@NOTE@@", 8) == 0) { put_html(&b, note); p = hole + 8; }
        else if (strncmp(hole, "@@DATA@@", 8) == 0) {
            put_str(&b, "{\"maps\":[\n");
            for (int m = 0; m < n; m++) {
                if (m) put_str(&b, ",\n");
                put_map(&b, &maps[m]);
            }
            put_str(&b, "]}");
            p = hole + 8;
        } else { put_str(&b, "@@"); p = hole + 2; }
    }
    attn_status st = attn__ob_write(&b, path, err, err_size);
    free(b.s);
    return st;
}
