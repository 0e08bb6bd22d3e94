/*
 * test_rowsum.c — the sparse-row gradient sum of data-parallel IMDB training (programs/attn/rowsum.c)
 * against the dense sum it stands for: random rows and values, with −0, +0, NaN and infinities placed in
 * rows one side holds alone and in rows both hold; the result, scattered to dense, must equal the dense
 * a + b bit for bit. Also the wire form (pack, view, unpack) and the refusals.
 */
#include "rowsum.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 97, W = 5, TAIL = 7 };

static uint32_t rng = 12345;
static uint32_t next(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

static float special(void) {
    switch (next() % 8) {
    case 0: return -0.0f;
    case 1: return 0.0f;
    case 2: return NAN;
    case 3: return -INFINITY;
    default: return ((float)(next() % 2001) - 1000.0f) / 7.0f;
    }
}

/* r = a random subset of the V rows with special values; dense (V·W + TAIL) = r's dense form (+0 elsewhere) */
static void random_rows(rowsum *r, float *dense) {
    memset(dense, 0, sizeof(float) * (V * W + TAIL));
    r->n = 0;
    for (int i = 0; i < V; i++) {
        if (next() % 3) continue;
        r->ids[r->n] = i;
        for (int j = 0; j < W; j++) dense[i * W + j] = r->vals[r->n * W + j] = special();
        r->n++;
    }
    for (int j = 0; j < TAIL; j++) dense[V * W + j] = r->tail[j] = special();
}

int main(void) {
    int fail = 0;
    rowsum a, b, out, back;
    if (rowsum_alloc(&a, V, W, TAIL) || rowsum_alloc(&b, V, W, TAIL) || rowsum_alloc(&out, V, W, TAIL) ||
        rowsum_alloc(&back, V, W, TAIL)) {
        fprintf(stderr, "test_rowsum: out of memory\n");
        return 1;
    }
    float da[V * W + TAIL], db[V * W + TAIL], got[V * W + TAIL];
    int64_t mismatches = 0, checked = 0, minus_zero_cases = 0;
    for (int round = 0; round < 200; round++) {
        random_rows(&a, da);
        random_rows(&b, db);
        if (rowsum_add(&out, &a, &b)) { fprintf(stderr, "test_rowsum: add refused\n"); return 1; }
        for (int64_t i = 1; i < out.n; i++)
            if (out.ids[i - 1] >= out.ids[i]) { fprintf(stderr, "test_rowsum: ids not ascending\n"); fail = 1; }
        /* the wire form round trip first, then the dense comparison of what came back */
        unsigned char wire[4 * (V * (W + 1) + TAIL)];
        rowsum_pack(&out, wire);
        if (rowsum_unpack(&back, wire, rowsum_packed_bytes(&out)) || back.n != out.n) {
            fprintf(stderr, "test_rowsum: unpack failed\n");
            fail = 1;
        }
        memset(got, 0, sizeof got);
        rowsum_scatter(&back, got, V);
        for (int i = 0; i < V * W + TAIL; i++) {
            float want = da[i] + db[i];
            checked++;
            if (memcmp(&want, &got[i], sizeof want) != 0) mismatches++;
            /* a copied −0 would stay −0 where the dense sum gives +0: count the cases that test it */
            if (signbit(da[i]) && da[i] == 0 && db[i] == 0 && !signbit(db[i])) minus_zero_cases++;
        }
    }
    printf("test_rowsum: %lld elements against the dense sum, %lld bitwise mismatches (%lld cases of -0 + +0)\n",
           (long long)checked, (long long)mismatches, (long long)minus_zero_cases);
    if (mismatches || minus_zero_cases == 0) fail = 1;
    /* refusals: a wire size that is not whole rows; a sum with more rows than out holds */
    rowsum v = {.width = W, .n_tail = TAIL};
    unsigned char junk[4 * (TAIL + W)];
    if (rowsum_view(&v, junk, sizeof junk) == 0) { fprintf(stderr, "test_rowsum: a broken size was viewed\n"); fail = 1; }
    rowsum small;
    if (rowsum_alloc(&small, 1, W, TAIL) == 0) {
        a.n = b.n = 0;
        a.ids[a.n++] = 1; b.ids[b.n++] = 2;
        if (rowsum_add(&small, &a, &b) == 0) { fprintf(stderr, "test_rowsum: an overflowing sum was taken\n"); fail = 1; }
        rowsum_free(&small);
    }
    rowsum big;
    if (rowsum_alloc(&big, INT64_MAX / 2, W, TAIL) == 0) { fprintf(stderr, "test_rowsum: a wrapping size was allocated\n"); fail = 1; }
    rowsum_free(&a); rowsum_free(&b); rowsum_free(&out); rowsum_free(&back);
    printf("test_rowsum: %s\n", fail ? "FAIL" : "ok");
    return fail;
}
