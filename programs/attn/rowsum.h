/*
 * rowsum.h — a gradient held as sparse rows plus a dense tail, and the sum of two such gradients with the
 * bits of the dense sum. Data-parallel IMDB training sums its groups' gradients this way: the embedding
 * table's gradient (V,D) is zero outside the rows a group's words touched, so a group's share is those
 * rows (ascending ids) and the rest of the parameters dense (the tail).
 *
 * The bits: the dense sum adds every element, a + b. A row that only one side holds is the other side's
 * +0 in the dense form, and x + (+0) is x for every x except −0 (−0 + +0 = +0) and a signalling NaN
 * (quieted): so such a row is written as x + 0.0f, not copied, and the result equals the dense sum bit for
 * bit, rows absent from both being +0 there. tests/test_rowsum.c checks it against the dense sum.
 */
#ifndef ATTN_ROWSUM_H
#define ATTN_ROWSUM_H

#include <stddef.h>
#include <stdint.h>

typedef struct rowsum {
    int32_t *ids;                /* (cap) row ids, ascending, distinct; the first n used */
    float *vals;                 /* (cap, width) the rows' values */
    float *tail;                 /* (n_tail) the dense part */
    int64_t n, cap, n_tail;
    int width;
} rowsum;

/* One allocation for up to cap rows of width floats and the tail; n = 0, tail zeros. 0, or -1 when out of
 * memory or the sizes would wrap. */
int    rowsum_alloc(rowsum *r, int64_t cap, int width, int64_t n_tail);
void   rowsum_free(rowsum *r);
/* out = a + b (out distinct from both; out->cap >= the rows of the union, else -1). */
int    rowsum_add(rowsum *out, const rowsum *a, const rowsum *b);
/* The wire form: tail (n_tail floats), ids (n int32), vals (n·width floats), contiguous. */
size_t rowsum_packed_bytes(const rowsum *r);
void   rowsum_pack(const rowsum *r, void *buf);
/* A read-only view of a packed buffer of `bytes` bytes whose tail and width are v's: v->n set, pointers
 * into buf. -1 when bytes is not such a size. */
int    rowsum_view(rowsum *v, void *buf, size_t bytes);
/* r = the packed buffer (a copy; -1 when it does not fit or is malformed). */
int    rowsum_unpack(rowsum *r, const void *buf, size_t bytes);
/* dense (rows_total·width + n_tail) = r: its rows scattered to their places, the tail after them; the
 * rows not in r are not written (the caller keeps them zero). */
void   rowsum_scatter(const rowsum *r, float *dense, int64_t rows_total);

#endif /* ATTN_ROWSUM_H */
