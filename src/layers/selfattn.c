/*
 * selfattn.c — self-attention with one kernel W (3,Din,Dout) and no bias, the layer of the IMDB
 * experiment (Keras' (in, out) layout):
 *
 *   Q = X W[0],  K = X W[1],  V = X W[2]      (B,T,Dout) each, one CBLAS product X · [W0 W1 W2]
 *   out = softmax(scale · Q Kᵀ, masked) V     (B,T,Dout), one head
 *
 * Parameters and gradients are views into the caller's slabs (bind). The cache the caller provides:
 *
 *   [ up to 64 bytes to align the caller's pointer ]
 *   P (B,T,3·Dout)     Q, K, V side by side in each row (the attention reads them through strides)
 *   ctx (B,T,Dout), stats (B,T,2)                        saved by the forward (ctx = a copy of out)
 *   dP (B,T,3·Dout)    dQ, dK, dV side by side                backward scratch
 *   Wc (Din,3·Dout)    [W0 W1 W2], packed by each pass
 *   attention workspaces: one per part (see below), or one for the whole batch, whichever is larger
 * each block starting on a 64-byte boundary.
 *
 * Threads: one OpenMP region per pass, with the context's thread count (the cache's layout depends on it,
 * so a cache size is valid for the context it was asked with). The batch is cut into parts of whole
 * sequences, one per thread;
 * each thread runs its part's products through single-threaded OpenBLAS (it is inside a parallel region)
 * and its part's attention through the fused kernel (one thread, its own workspace). The backward's
 * dW = Xᵀ dP, a sum over every row, is cut by output columns instead, in blocks of 32 fixed by the shape
 * (each thread owns whole elements of dW, nothing is reduced across threads). Nothing is reduced in an
 * order that depends on the thread count, so results are reproducible for a given count, and bitwise
 * identical for any count when the BLAS rounds a row (a column) of a product the same whatever rows
 * (columns) are computed with it: OpenBLAS's SkylakeX and Prescott kernels do, its Haswell ones do not
 * (test_imdb probes this). With a mask or attention weights requested, the attention runs as one call
 * over the whole batch between the regions.
 */
#include "util.h"

#include <cblas.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define ATTN_CACHE_ALIGN 64
#define SA_BLOCKS 6
#define SA_COLS 32       /* columns of dW per job */

static size_t align_bytes(size_t n) {
    return (n + (ATTN_CACHE_ALIGN - 1)) & ~(size_t)(ATTN_CACHE_ALIGN - 1);
}

typedef struct sa_cache {
    float *p, *ctx, *stats;                 /* (B,T,3·Dout), (B,T,Dout), (B,T,2) */
    float *dp;                              /* (B,T,3·Dout) */
    float *wc;                              /* (Din,3·Dout) */
    char *work;                             /* nparts workspaces of part_bytes, or one of full_bytes */
    size_t part_bytes, full_bytes;
    int nparts;
} sa_cache;

static int sa_ok(const attn_selfattn *l) {
    return l && l->w;
}

/* Q, K, V (or dQ, dK, dV) of reviews [b0, b0+nb) as the attention reads them in P (B,T,3·Dout). */
static attn_status sa_desc(const attn_selfattn *l, int nb, int T, const attn_mask *mask, attn_sdpa_desc *d) {
    attn_status st = attn_sdpa_desc_init(d, nb, 1, T, T, l->Dout, l->Dout);
    if (st != ATTN_OK) return st;
    d->scale = l->scale;
    d->compute = l->compute;
    const int64_t row = 3 * (int64_t)l->Dout;
    d->q = d->k = d->v = (attn_layout){(int64_t)T * row, (int64_t)T * row, row};
    if (mask) d->mask = *mask;
    return attn_sdpa_validate(d);
}

static attn_status sa_work_bytes(const attn_ctx *ctx, const attn_sdpa_desc *d, size_t *bytes) {
    size_t fw, bw;
    attn_status st;
    if ((st = attn_sdpa_workspace_size(ctx, d, ATTN_PASS_FORWARD, &fw)) != ATTN_OK) return st;
    if ((st = attn_sdpa_workspace_size(ctx, d, ATTN_PASS_BACKWARD, &bw)) != ATTN_OK) return st;
    *bytes = align_bytes(fw > bw ? fw : bw);
    return ATTN_OK;
}

/* Parts for nth threads: one per thread, at most one per sequence, one for small batches (below ~8 MFLOP
 * of projections a thread is not worth waking). */
static int sa_nparts(const attn_selfattn *l, int B, int T, int nth) {
    const double flops = 6.0 * B * (double)T * l->Din * l->Dout;
    if (nth < 1 || flops < 8e6) nth = 1;
    return nth < B ? nth : B;
}

/* The cache layout for B, T and nparts parts; ctx resolved. */
static attn_status sa_plan(const attn_ctx *ctx, const attn_selfattn *l, int B, int T, const attn_mask *mask, int nparts,
                           attn_sdpa_desc *d, size_t off[SA_BLOCKS], size_t *part_bytes, size_t *full_bytes,
                           size_t *total) {
    if (!sa_ok(l)) return ATTN_ERR_NULL;
    if (!attn__dim_ok(l->Din) || !attn__dim_ok(l->Dout) || !attn__prod_fits_int(l->Din, l->Dout))
        return ATTN_ERR_SIZE;
    if (!attn__dim_ok(B) || !attn__dim_ok(T)) return ATTN_ERR_SIZE;
    const int Dmax = l->Din > 3 * l->Dout ? l->Din : 3 * l->Dout;
    if ((int64_t)B * T > INT_MAX || (int64_t)B * T * Dmax > INT_MAX || (int64_t)l->Din * 3 * l->Dout > INT_MAX)
        return ATTN_ERR_SIZE;
    attn_status st = sa_desc(l, B, T, mask, d);
    if (st != ATTN_OK) return st;
    if ((st = sa_work_bytes(ctx, d, full_bytes)) != ATTN_OK) return st;
    *part_bytes = 0;
    if (nparts > 1) {
        attn_sdpa_desc dp;
        if ((st = sa_desc(l, (B + nparts - 1) / nparts, T, NULL, &dp)) != ATTN_OK) return st;
        if ((st = sa_work_bytes(ctx, &dp, part_bytes)) != ATTN_OK) return st;
    }
    size_t work = *full_bytes;
    if (*part_bytes > 0 && *part_bytes > SIZE_MAX / 4 / (size_t)nparts) return ATTN_ERR_SIZE;
    if (*part_bytes * nparts > work) work = *part_bytes * nparts;

    const size_t nP = (size_t)B * T * 3 * l->Dout * sizeof(float), nX = (size_t)B * T * l->Dout * sizeof(float),
                 nL = (size_t)B * T * ATTN_SDPA_STATS * sizeof(float), nW = (size_t)l->Din * 3 * l->Dout * sizeof(float);
    const size_t sizes[SA_BLOCKS] = {nP, nX, nL, nP, nW, work};
    size_t at = 0;
    for (int i = 0; i < SA_BLOCKS; i++) {
        off[i] = at;
        if (sizes[i] > SIZE_MAX / 4 || at > SIZE_MAX / 4) return ATTN_ERR_SIZE;
        at += align_bytes(sizes[i]);
    }
    *total = at + ATTN_CACHE_ALIGN;
    return ATTN_OK;
}

/* Plans for the context's threads (as attn_selfattn_cache_bytes does: the cache must come from a call
 * made with the same context, as for any attention workspace) and carves the cache. rc gets the
 * resolved context. */
static attn_status sa_prepare(const attn_ctx *ctx, const attn_selfattn *l, void *cache, size_t cache_bytes,
                              int B, int T, const attn_mask *mask, attn_ctx *rc, attn_sdpa_desc *d, sa_cache *c) {
    size_t off[SA_BLOCKS], pb, fb, need;
    const attn_kernels *kern;
    if (!sa_ok(l)) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || !attn__dim_ok(T)) return ATTN_ERR_SIZE;
    attn_status st = attn__ctx_resolve(ctx, rc, &kern);
    if (st != ATTN_OK) return st;
    const int np = sa_nparts(l, B, T, rc->threads);
    st = sa_plan(rc, l, B, T, mask, np, d, off, &pb, &fb, &need);
    if (st != ATTN_OK) return st;
    if (!cache || cache_bytes < need) return ATTN_ERR_WORKSPACE;
    uintptr_t u = ((uintptr_t)cache + (ATTN_CACHE_ALIGN - 1)) & ~(uintptr_t)(ATTN_CACHE_ALIGN - 1);
    char *base = (char *)u;
    c->p = (float *)(base + off[0]);
    c->ctx = (float *)(base + off[1]);
    c->stats = (float *)(base + off[2]);
    c->dp = (float *)(base + off[3]);
    c->wc = (float *)(base + off[4]);
    c->work = base + off[5];
    c->part_bytes = pb;
    c->full_bytes = fb;
    c->nparts = np;
    return ATTN_OK;
}

/* Wc (Din,3·Dout) = [W0 W1 W2] */
static void sa_pack(const attn_selfattn *l, float *wc) {
    const int Din = l->Din, Dout = l->Dout;
    for (int r = 0; r < Din; r++)
        for (int i = 0; i < 3; i++)
            memcpy(wc + ((size_t)r * 3 + i) * Dout, l->w + ((size_t)i * Din + r) * Dout, sizeof(float) * Dout);
}

/* Reviews [*b0, *b1) of part p of np. */
static void sa_part(int B, int np, int p, int *b0, int *b1) {
    *b0 = (int)((int64_t)B * p / np);
    *b1 = (int)((int64_t)B * (p + 1) / np);
}

size_t attn_selfattn_n_params(int Din, int Dout) {
    if (!attn__dim_ok(Din) || !attn__dim_ok(Dout) || !attn__prod_fits_int(Din, Dout)) return 0;
    return 3 * (size_t)Din * Dout;
}

attn_status attn_selfattn_bind(attn_selfattn *l, int Din, int Dout, float *params, float *grads) {
    if (!l || !params) return ATTN_ERR_NULL;
    if (!attn__dim_ok(Din) || !attn__dim_ok(Dout) || !attn__prod_fits_int(Din, Dout)) return ATTN_ERR_SIZE;
    *l = (attn_selfattn){0};
    l->Din = Din;
    l->Dout = Dout;
    l->scale = (float)(1.0 / sqrt((double)Dout));
    l->params = l->w = params;
    l->grads = l->dw = grads;
    l->n_params = attn_selfattn_n_params(Din, Dout);
    return ATTN_OK;
}

attn_status attn_selfattn_init_weights(attn_selfattn *l, attn_rng *rng) {
    if (!sa_ok(l) || !rng) return ATTN_ERR_NULL;
    attn_rng_fill_uniform(rng, l->w, 3 * (size_t)l->Din * l->Dout, -0.05f, 0.05f);
    return ATTN_OK;
}

attn_status attn_selfattn_cache_bytes(const attn_ctx *ctx, const attn_selfattn *l, int B, int T, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    attn_sdpa_desc d;
    size_t off[SA_BLOCKS], pb, fb;
    attn_ctx rc;
    const attn_kernels *kern;
    if (!sa_ok(l)) return ATTN_ERR_NULL;
    if (!attn__dim_ok(B) || !attn__dim_ok(T)) return ATTN_ERR_SIZE;
    attn_status st = attn__ctx_resolve(ctx, &rc, &kern);
    if (st != ATTN_OK) return st;
    return sa_plan(&rc, l, B, T, NULL, sa_nparts(l, B, T, rc.threads), &d, off, &pb, &fb, bytes);
}

attn_status attn_selfattn_forward(const attn_ctx *ctx, const attn_selfattn *l, void *cache, size_t cache_bytes,
                                  float *out, float *weights, const float *x,
                                  int B, int T, const attn_mask *mask) {
    attn_sdpa_desc d;
    sa_cache c;
    attn_ctx rc;
    attn_status st = sa_prepare(ctx, l, cache, cache_bytes, B, T, mask, &rc, &d, &c);
    if (st != ATTN_OK) return st;
    if (!out || !x) return ATTN_ERR_NULL;
    const int Din = l->Din, Dout = l->Dout, D3 = 3 * Dout;
    const int split = !mask && !weights;         /* the attention part by part, inside the region */
    const int np = c.nparts;
    sa_pack(l, c.wc);
    attn_status pst = ATTN_OK;
    (void)np;
    ATTN_OMP(omp parallel for schedule(static, 1) num_threads(np) if(np > 1))
    for (int p = 0; p < np; p++) {
        int b0, b1;
        sa_part(B, np, p, &b0, &b1);
        const size_t n0 = (size_t)b0 * T;
        const int nn = (b1 - b0) * T;
        if (nn == 0) continue;
        /* P rows (nn,3·Dout) = X rows (nn,Din) · Wc (Din,3·Dout) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nn, D3, Din, 1.0f, x + n0 * Din, Din, c.wc, D3,
                    0.0f, c.p + n0 * D3, D3);
        if (split) {
            attn_sdpa_desc dp;
            float *pp = c.p + n0 * D3;
            char *w = np > 1 ? c.work + (size_t)p * c.part_bytes : c.work;
            attn_status s = sa_desc(l, b1 - b0, T, NULL, &dp);
            if (s == ATTN_OK)
                s = attn_sdpa_forward(&rc, &dp, c.ctx + n0 * Dout, c.stats + ATTN_SDPA_STATS * n0, NULL, pp, pp + Dout, pp + 2 * Dout, w,
                                      np > 1 ? c.part_bytes : c.full_bytes);
            if (s != ATTN_OK) {
                ATTN_OMP(omp critical(attn_selfattn_status))
                pst = s;
            }
            memcpy(out + n0 * Dout, c.ctx + n0 * Dout, sizeof(float) * (size_t)nn * Dout);
        }
    }
    if (pst != ATTN_OK) return pst;
    if (!split) {
        /* attention over the whole batch, one head; the output is kept for the backward */
        if ((st = attn_sdpa_forward(&rc, &d, c.ctx, c.stats, weights, c.p, c.p + Dout, c.p + 2 * Dout, c.work,
                                    c.full_bytes)) != ATTN_OK)
            return st;
        memcpy(out, c.ctx, sizeof(float) * (size_t)B * T * Dout);
    }
    return ATTN_OK;
}

attn_status attn_selfattn_backward(const attn_ctx *ctx, const attn_selfattn *l, void *cache, size_t cache_bytes,
                                   float *dx, const float *dout, const float *x,
                                   int B, int T, const attn_mask *mask) {
    attn_sdpa_desc d;
    sa_cache c;
    attn_ctx rc;
    attn_status st = sa_prepare(ctx, l, cache, cache_bytes, B, T, mask, &rc, &d, &c);
    if (st != ATTN_OK) return st;
    if (!l->dw || !dout || !x) return ATTN_ERR_NULL;
    const int N = B * T, Din = l->Din, Dout = l->Dout, D3 = 3 * Dout;
    const size_t wsz = (size_t)Din * Dout;
    const int split = !mask;
    const int np = c.nparts;
    sa_pack(l, c.wc);
    if (!split) {
        /* attention over the whole batch: into zeroed dP (N,3·Dout) */
        memset(c.dp, 0, sizeof(float) * (size_t)N * D3);
        if ((st = attn_sdpa_backward(&rc, &d, c.dp, c.dp + Dout, c.dp + 2 * Dout, dout, c.p, c.p + Dout, c.p + 2 * Dout,
                                     c.ctx, c.stats, c.work, c.full_bytes)) != ATTN_OK)
            return st;
    }
    /* dW jobs: each W[i] cut into blocks of SA_COLS columns, whatever the thread count, so that every
     * thread gets whole elements and every product sees the same column offsets (some BLAS kernels round
     * a column differently depending on where it falls in the unrolled tile) */
    const int ncol = (Dout + SA_COLS - 1) / SA_COLS, njob = 3 * ncol;
    attn_status pst = ATTN_OK;
    ATTN_OMP(omp parallel num_threads(np) if(np > 1))
    {
        int ith = 0, nt = 1;
#ifdef _OPENMP
        ith = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        for (int p = ith; p < np; p += nt) {
            int b0, b1;
            sa_part(B, np, p, &b0, &b1);
            const size_t n0 = (size_t)b0 * T;
            const int nn = (b1 - b0) * T;
            if (nn == 0) continue;
            float *dpp = c.dp + n0 * D3;
            const float *pp = c.p + n0 * D3;
            if (split) {
                /* attention of the part: into zeroed dP rows */
                attn_sdpa_desc dd;
                char *w = np > 1 ? c.work + (size_t)p * c.part_bytes : c.work;
                memset(dpp, 0, sizeof(float) * (size_t)nn * D3);
                attn_status s = sa_desc(l, b1 - b0, T, NULL, &dd);
                if (s == ATTN_OK)
                    s = attn_sdpa_backward(&rc, &dd, dpp, dpp + Dout, dpp + 2 * Dout, dout + n0 * Dout, pp, pp + Dout,
                                           pp + 2 * Dout, c.ctx + n0 * Dout, c.stats + ATTN_SDPA_STATS * n0, w,
                                           np > 1 ? c.part_bytes : c.full_bytes);
                if (s != ATTN_OK) {
                    ATTN_OMP(omp critical(attn_selfattn_status))
                    pst = s;
                }
            }
            /* dX rows (nn,Din) += dP rows (nn,3·Dout) · Wcᵀ */
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nn, Din, D3, 1.0f, dpp, D3, c.wc, D3, 1.0f,
                            dx + n0 * Din, Din);
        }
        ATTN_OMP(omp barrier)
        /* dW[i] (Din, cols) += Xᵀ (Din,N) · dP_i (N, cols) */
        for (int j = ith; j < njob; j += nt) {
            const int i = j / ncol, q = j % ncol;
            const int c0 = q * SA_COLS, c1 = c0 + SA_COLS < Dout ? c0 + SA_COLS : Dout;
            if (c1 > c0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Din, c1 - c0, N, 1.0f, x, Din,
                            c.dp + (size_t)i * Dout + c0, D3, 1.0f, l->dw + i * wsz + c0, Dout);
        }
    }
    return pst;
}
