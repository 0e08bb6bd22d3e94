/*
 * rowsum.c — sparse-row gradients and their bitwise-dense sum (see rowsum.h).
 */
#include "rowsum.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int rowsum_alloc(rowsum *r, int64_t cap, int width, int64_t n_tail) {
    memset(r, 0, sizeof *r);
    if (cap < 0 || width < 1 || n_tail < 0) return -1;
    /* ids and vals of cap rows, then the tail: 4-byte elements all */
    const uint64_t per = 1 + (uint64_t)width;
    if ((uint64_t)cap > (SIZE_MAX / 4 - (uint64_t)n_tail) / per) return -1;
    const size_t elems = (size_t)cap * per + (size_t)n_tail;
    void *p = calloc(elems ? elems : 1, 4);
    if (!p) return -1;
    r->ids = p;
    r->vals = (float *)(r->ids + cap);
    r->tail = r->vals + (size_t)cap * (size_t)width;
    r->cap = cap;
    r->width = width;
    r->n_tail = n_tail;
    return 0;
}

void rowsum_free(rowsum *r) {
    free(r->ids);
    memset(r, 0, sizeof *r);
}

/* a row held by one side only: the other's +0 added, as the dense sum does */
static void plus_zero(float *o, const float *x, int w) {
    for (int j = 0; j < w; j++) o[j] = x[j] + 0.0f;
}

int rowsum_add(rowsum *out, const rowsum *a, const rowsum *b) {
    const int w = a->width;
    if (b->width != w || out->width != w || a->n_tail != b->n_tail || out->n_tail != a->n_tail) return -1;
    int64_t i = 0, j = 0, k = 0;
    while (i < a->n || j < b->n) {
        if (k >= out->cap) return -1;
        float *o = out->vals + (size_t)k * w;
        if (j >= b->n || (i < a->n && a->ids[i] < b->ids[j])) {
            out->ids[k] = a->ids[i];
            plus_zero(o, a->vals + (size_t)i++ * w, w);
        } else if (i >= a->n || b->ids[j] < a->ids[i]) {
            out->ids[k] = b->ids[j];
            plus_zero(o, b->vals + (size_t)j++ * w, w);
        } else {
            const float *x = a->vals + (size_t)i++ * w, *y = b->vals + (size_t)j * w;
            out->ids[k] = b->ids[j++];
            for (int c = 0; c < w; c++) o[c] = x[c] + y[c];
        }
        k++;
    }
    out->n = k;
    for (int64_t t = 0; t < a->n_tail; t++) out->tail[t] = a->tail[t] + b->tail[t];
    return 0;
}

size_t rowsum_packed_bytes(const rowsum *r) {
    return 4 * ((size_t)r->n_tail + (size_t)r->n * (1 + (size_t)r->width));
}

void rowsum_pack(const rowsum *r, void *buf) {
    char *p = buf;
    memcpy(p, r->tail, 4 * (size_t)r->n_tail);
    p += 4 * (size_t)r->n_tail;
    memcpy(p, r->ids, 4 * (size_t)r->n);
    p += 4 * (size_t)r->n;
    memcpy(p, r->vals, 4 * (size_t)r->n * (size_t)r->width);
}

int rowsum_view(rowsum *v, void *buf, size_t bytes) {
    const size_t tail = 4 * (size_t)v->n_tail, row = 4 * (1 + (size_t)v->width);
    if (bytes < tail || (bytes - tail) % row != 0) return -1;
    v->n = (int64_t)((bytes - tail) / row);
    v->cap = v->n;
    v->tail = buf;
    v->ids = (int32_t *)(v->tail + v->n_tail);
    v->vals = (float *)(v->ids + v->n);
    return 0;
}

int rowsum_unpack(rowsum *r, const void *buf, size_t bytes) {
    rowsum v = {.width = r->width, .n_tail = r->n_tail};
    if (rowsum_view(&v, (void *)buf, bytes) || v.n > r->cap) return -1;
    r->n = v.n;
    memcpy(r->tail, v.tail, 4 * (size_t)r->n_tail);
    memcpy(r->ids, v.ids, 4 * (size_t)v.n);
    memcpy(r->vals, v.vals, 4 * (size_t)v.n * (size_t)r->width);
    return 0;
}

void rowsum_scatter(const rowsum *r, float *dense, int64_t rows_total) {
    const size_t w = (size_t)r->width;
    for (int64_t i = 0; i < r->n; i++) memcpy(dense + (size_t)r->ids[i] * w, r->vals + (size_t)i * w, 4 * w);
    memcpy(dense + (size_t)rows_total * w, r->tail, 4 * (size_t)r->n_tail);
}
