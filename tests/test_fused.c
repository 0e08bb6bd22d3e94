/*
 * test_fused.c — the fused scaled dot-product kernels (scalar, AVX2, AVX-512: each path this CPU runs)
 * against the reference kernels, forward (out, lse, and the weights when asked for) and backward (dq, dk, dv), over randomized shapes:
 * odd T, S, D, Dv (1..130), T = 1, S = 1, T != S, Dv != D, every mask kind alone and combined, fully
 * masked rows, grouped-query heads, strided (B,T,H,D) layouts with padded rows, dropout, and the sparse parts
 * (sliding windows one- and two-sided, sinks, sink logits, ALiBi, soft-capping, block maps) alone and with all of those.
 *
 * Tolerances (fp32 kernels against the reference, which sums in double):
 *   out, lse          |got - want| <= 2e-5 · max(1, max|want|) + 1e-4 · |want|
 *   dq, dk, dv        the same, with max|want| taken over the whole gradient
 * Gradients start from random values (not zero) so the test also checks that the backward accumulates.
 */
#include "attn.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x1234abcd5678ef01ULL;
static uint64_t rnd_u64(void) { return tu_rnd_u64(&g_rng); }
static int rnd_int(int lo, int hi) { return tu_rnd_int(&g_rng, lo, hi); }
static float rnd_f(void) { return tu_rnd_f(&g_rng); }

typedef struct tcase {
    int B, H, Hkv, T, S, D, Dv;
    int causal, valid;        /* valid: 0 none, 1 per batch, 2 per query */
    int allow;                /* 0 none, 1 full (B,H,T,S), 2 broadcast (T,S) */
    int bias;                 /* 0 none, 1 (B,H,T,S) with some -inf */
    int strided;              /* (B,T,H,D) order with padded rows */
    float dropout;
    float qscale;             /* spread of q (larger: peakier softmax) */
    int window, wl, wr;       /* sliding window [ta - wl, ta + wr] */
    int sinks;                /* keys exempt from the window */
    int sink_logits, alibi;   /* per-head sink logits, ALiBi slopes */
    float softcap;            /* soft cap (0: none) */
    int bs;                   /* block map of this block size, random per (b, h) (0: none) */
} tcase;

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

static int close_scaled(const char *what, const float *got, const float *want, size_t n) {
    double s = max_abs(want, n);
    if (s < 1) s = 1;
    return tu_close_f32(what, got, want, n, 2e-5 * s, 1e-4);
}

/* lse: -inf must match exactly; finite values within tolerance */
static int close_lse(const char *what, const float *got, const float *want, size_t n) {
    float *g = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    int inf_ok = 1;
    for (size_t i = 0; i < n; i++) {
        if ((got[i] == -INFINITY) != (want[i] == -INFINITY)) inf_ok = 0;
        g[i] = got[i] == -INFINITY ? -1e30f : got[i];
        w[i] = want[i] == -INFINITY ? -1e30f : want[i];
    }
    CHECK(inf_ok);
    int ok = close_scaled(what, g, w, n) && inf_ok;
    free(g); free(w);
    return ok;
}

static float *alloc_fill(size_t n, float spread) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = rnd_f() * spread;
    return x;
}

/* Elements a (B,H,T,inner) tensor spans with layout l. */
static size_t span(const attn_layout *l, int B, int H, int T, int inner) {
    return (size_t)((B - 1) * l->b + (H - 1) * l->h + (T - 1) * l->t + inner);
}

static void layout_bthd(attn_layout *l, int H, int T, int inner, int pad) {
    l->t = (int64_t)H * (inner + pad);
    l->h = inner + pad;
    l->b = l->t * T;
}

static int run_case(attn_isa isa, const tcase *c, const char *label) {
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, c->B, c->H, c->T, c->S, c->D, c->Dv), ATTN_OK);
    const int B = c->B, H = c->H, Hkv = c->Hkv, T = c->T, S = c->S, D = c->D, Dv = c->Dv;
    d.Hkv = Hkv;
    if (c->strided) {
        layout_bthd(&d.q, H, T, D, 3);
        layout_bthd(&d.k, Hkv, S, D, 1);
        layout_bthd(&d.v, Hkv, S, Dv, 2);
        layout_bthd(&d.out, H, T, Dv, 5);
    } else {
        d.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
        d.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    }
    d.mask.causal = c->causal;
    d.dropout = c->dropout;
    d.seed = rnd_u64();

    int32_t *vl = NULL;
    uint8_t *allow = NULL;
    float *bias = NULL;
    if (c->valid) {
        size_t n = c->valid == 1 ? (size_t)B : (size_t)B * T;
        vl = malloc(sizeof(int32_t) * n);
        for (size_t i = 0; i < n; i++) vl[i] = rnd_int(0, 5) == 0 ? 0 : rnd_int(1, S + 2);
        d.mask.valid_lens_kind = c->valid == 1 ? ATTN_VALID_LENS_PER_BATCH : ATTN_VALID_LENS_PER_QUERY;
        d.mask.valid_lens = vl;
    }
    if (c->allow) {
        size_t n = c->allow == 1 ? (size_t)B * H * T * S : (size_t)T * S;
        allow = malloc(n);
        for (size_t i = 0; i < n; i++) allow[i] = rnd_int(0, 3) != 0;
        /* a row with every key excluded */
        for (int s = 0; s < S; s++) allow[(size_t)(T / 2) * S + s] = 0;
        d.mask.allow = allow;
        if (c->allow == 1) {
            d.mask.allow_stride[0] = (int64_t)H * T * S; d.mask.allow_stride[1] = (int64_t)T * S;
        }
        d.mask.allow_stride[2] = S;
    }
    if (c->bias) {
        size_t n = (size_t)B * H * T * S;
        bias = alloc_fill(n, 2.0f);
        for (size_t i = 0; i < n; i++) if (rnd_int(0, 9) == 0) bias[i] = -INFINITY;
        d.mask.bias = bias;
        d.mask.bias_stride[0] = (int64_t)H * T * S; d.mask.bias_stride[1] = (int64_t)T * S; d.mask.bias_stride[2] = S;
    }

    float zs[8], slopes[8];                  /* H <= 8 in every case */
    d.mask.window = c->window;
    d.mask.window_left = c->wl;
    d.mask.window_right = c->wr;
    d.mask.sinks = c->sinks;
    d.mask.softcap = c->softcap;
    uint8_t *bmap = NULL;
    if (c->bs) {
        const int nqb = (T + c->bs - 1) / c->bs, nkb = (S + c->bs - 1) / c->bs;
        bmap = malloc((size_t)B * H * nqb * nkb);
        for (size_t i = 0; i < (size_t)B * H * nqb * nkb; i++) bmap[i] = rnd_int(0, 2) != 0;
        for (int j = 0; j < nkb; j++) bmap[j] = 0;          /* (0, 0, block row 0) lists nothing */
        d.mask.block_map = bmap;
        d.mask.block_size = c->bs;
        d.mask.block_map_stride[0] = (int64_t)H * nqb * nkb;
        d.mask.block_map_stride[1] = (int64_t)nqb * nkb;
        d.mask.block_map_stride[2] = nkb;
    }
    if (c->sink_logits) {
        for (int h = 0; h < H; h++) zs[h] = rnd_f() * 3.0f;
        d.mask.sink_logits = zs;
    }
    if (c->alibi) {
        CHECK_STATUS(attn_alibi_slopes(H, slopes), ATTN_OK);
        d.mask.alibi_slopes = slopes;
    }

    const size_t nq = span(&d.q, B, H, T, D), nk = span(&d.k, B, Hkv, S, D), nv = span(&d.v, B, Hkv, S, Dv);
    const size_t no = span(&d.out, B, H, T, Dv), nl = (size_t)B * H * T;   /* rows: the stats are nl pairs */
    float *q = alloc_fill(nq, c->qscale), *k = alloc_fill(nk, 1.0f), *v = alloc_fill(nv, 1.0f);
    float *dout = alloc_fill(no, 1.0f);
    float *out_r = alloc_fill(no, 0.0f), *out_f = alloc_fill(no, 0.0f);
    float *lse_r = alloc_fill(2 * nl, 0.0f), *lse_f = alloc_fill(2 * nl, 0.0f);
    const size_t nw = nl * (size_t)S;
    float *w_r = alloc_fill(nw, 0.0f), *w_f = alloc_fill(nw, NAN);   /* NaN: a weight left unwritten fails */
    float *out_w = alloc_fill(no, 0.0f), *lse_w = alloc_fill(2 * nl, 0.0f);
    memcpy(out_w, out_r, sizeof(float) * no);
    float *dq_r = alloc_fill(nq, 0.5f), *dk_r = alloc_fill(nk, 0.5f), *dv_r = alloc_fill(nv, 0.5f);
    float *dq_f = malloc(sizeof(float) * nq), *dk_f = malloc(sizeof(float) * nk), *dv_f = malloc(sizeof(float) * nv);
    memcpy(dq_f, dq_r, sizeof(float) * nq);
    memcpy(dk_f, dk_r, sizeof(float) * nk);
    memcpy(dv_f, dv_r, sizeof(float) * nv);
    /* padding between strided rows must stay untouched: same random bytes in both */
    memcpy(out_f, out_r, sizeof(float) * no);

    int ok = 1;
    size_t wf = 0, wb = 0;
    void *work = NULL;

    /* reference */
    CHECK_STATUS(attn_set_isa(ATTN_ISA_REF), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wf), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &wb), ATTN_OK);
    work = malloc(wf > wb ? wf : wb);
    CHECK_STATUS(attn_sdpa_forward(NULL, &d, out_r, lse_r, w_r, q, k, v, work, wf), ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq_r, dk_r, dv_r, dout, q, k, v, out_r, lse_r, work, wb), ATTN_OK);
    free(work);

    /* fused path; its backward takes the fused forward's out and stats */
    CHECK_STATUS(attn_set_isa(isa), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wf), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &wb), ATTN_OK);
    work = malloc(wf > wb ? wf : wb);
    CHECK_STATUS(attn_sdpa_forward(NULL, &d, out_f, lse_f, NULL, q, k, v, work, wf), ATTN_OK);
    /* with weights: one more pass; out and stats bitwise what the call without weights gave */
    CHECK_STATUS(attn_sdpa_forward(NULL, &d, out_w, lse_w, w_f, q, k, v, work, wf), ATTN_OK);
    CHECK(memcmp(out_w, out_f, sizeof(float) * no) == 0);
    CHECK(memcmp(lse_w, lse_f, sizeof(float) * 2 * nl) == 0);
    CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq_f, dk_f, dv_f, dout, q, k, v, out_f, lse_f, work, wb), ATTN_OK);
    free(work);

    char name[160];
    printf("%s %s: B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d causal=%d valid=%d allow=%d bias=%d strided=%d "
           "dropout=%g window=%d(%d,%d) sinks=%d sink_logits=%d alibi=%d softcap=%g block_size=%d\n",
           attn_isa_name(isa), label, B, H, Hkv, T, S, D, Dv, c->causal, c->valid, c->allow, c->bias, c->strided,
           c->dropout, c->window, c->wl, c->wr, c->sinks, c->sink_logits, c->alibi, c->softcap, c->bs);
    snprintf(name, sizeof name, "out");
    ok &= close_scaled(name, out_f, out_r, no);
    /* the row statistics as natural log-sum-exp (the paths' maxima may differ by a rounding) */
    CHECK_STATUS(attn_sdpa_logsumexp(lse_f, (int64_t)nl, lse_f), ATTN_OK);
    CHECK_STATUS(attn_sdpa_logsumexp(lse_r, (int64_t)nl, lse_r), ATTN_OK);
    ok &= close_lse("lse", lse_f, lse_r, nl);
    ok &= close_scaled("weights", w_f, w_r, nw);
    ok &= close_scaled("dq", dq_f, dq_r, nq);
    ok &= close_scaled("dk", dk_f, dk_r, nk);
    ok &= close_scaled("dv", dv_f, dv_r, nv);
    /* never NaN anywhere */
    int finite = 1;
    for (size_t i = 0; i < no; i++) finite &= isfinite(out_f[i]) != 0;
    for (size_t i = 0; i < nq; i++) finite &= isfinite(dq_f[i]) != 0;
    for (size_t i = 0; i < nk; i++) finite &= isfinite(dk_f[i]) != 0;
    for (size_t i = 0; i < nv; i++) finite &= isfinite(dv_f[i]) != 0;
    CHECK(finite);

    free(q); free(k); free(v); free(dout); free(out_r); free(out_f); free(lse_r); free(lse_f); free(w_r); free(w_f); free(out_w); free(lse_w);
    free(dq_r); free(dk_r); free(dv_r); free(dq_f); free(dk_f); free(dv_f);
    free(vl); free(allow); free(bias); free(bmap);
    return ok && finite;
}

int main(void) {
    const attn_isa paths[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    /* hand-picked cases: edges first */
    const tcase fixed[] = {
        /*  B  H Hkv  T    S    D   Dv  cau val all bia str drop  qs */
        {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 1, 1, 1, 37, 64, 64, 0, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 2, 2, 37, 1, 32, 32, 0, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 4, 2, 70, 70, 64, 64, 1, 0, 0, 0, 0, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 2, 1, 130, 97, 80, 96, 1, 0, 0, 0, 1, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 2, 2, 50, 130, 96, 48, 1, 1, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 2, 2, 33, 65, 128, 128, 0, 2, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 3, 3, 17, 29, 13, 7, 0, 0, 1, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 2, 2, 19, 23, 24, 40, 0, 0, 2, 0, 1, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 2, 2, 21, 40, 130, 3, 0, 0, 0, 1, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 2, 1, 45, 45, 32, 32, 0, 0, 0, 0, 0, 0.3f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 4, 1, 31, 47, 33, 31, 1, 2, 1, 1, 1, 0.25f, 3.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 1, 1, 200, 200, 64, 64, 1, 0, 0, 0, 0, 0.0f, 8.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 1, 1, 100, 3, 16, 16, 1, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},   /* T > S causal: leading rows fully masked */
        {1, 2, 1, 40, 300, 64, 64, 1, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},  /* several key chunks in the backward */
        /* the forward's row-by-row path (blocks of few query rows: decoding) */
        {1, 4, 1, 1, 6200, 37, 70, 0, 0, 0, 0, 0, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 0},  /* T = 1, GQA, past one key block, D/Dv tails */
        {2, 2, 2, 3, 6200, 64, 64, 1, 2, 1, 1, 0, 0.2f, 3.0f, 0, 0, 0, 0, 0, 0, 0, 0},  /* every mask and dropout over several key blocks */
        {1, 1, 1, 4, 5, 16, 130, 1, 1, 0, 0, 1, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},    /* Dv of several register chunks, strided */
        {1, 2, 2, 2, 1, 8, 8, 0, 0, 0, 1, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},       /* one key, its bias -inf or not */
        {1, 3, 3, 1, 700, 24, 40, 1, 1, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0},   /* one row per head, causal T < S, lengths */
        {2, 6, 2, 1, 300, 40, 40, 0, 0, 1, 1, 1, 0.2f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 0},   /* packs of 3 heads: masks, dropout, strided */
        /* sparse parts:                                      win  wl  wr sinks z alibi */
        {1, 2, 1, 300, 300, 64, 64, 1, 0, 0, 0, 0, 0.0f, 2.0f, 1, 70, 0, 0, 0, 0, 0, 0},    /* causal window */
        {1, 2, 2, 260, 300, 40, 24, 0, 0, 0, 0, 0, 0.0f, 1.0f, 1, 37, 50, 0, 0, 0, 0, 0},   /* two-sided window, T < S */
        {2, 4, 2, 200, 200, 32, 32, 1, 2, 0, 1, 1, 0.2f, 2.0f, 1, 20, 0, 4, 1, 1, 0, 0},   /* every part at once */
        {1, 2, 2, 150, 150, 16, 16, 1, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 1, 0, 0, 0},    /* sink logits alone */
        {1, 4, 4, 90, 120, 24, 24, 0, 1, 1, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 1, 0, 0},     /* ALiBi, lengths, allow */
        {1, 2, 1, 130, 130, 48, 48, 1, 0, 0, 0, 0, 0.0f, 1.0f, 1, 0, 0, 3, 1, 0, 0, 0},    /* window of 1 + sinks */
        {1, 1, 1, 100, 3, 16, 16, 0, 0, 0, 0, 0, 0.0f, 1.0f, 1, 0, 0, 0, 1, 0, 0, 0},      /* rows left by the window */
        {1, 4, 1, 1, 6200, 37, 70, 0, 0, 0, 0, 0, 0.0f, 2.0f, 1, 900, 0, 16, 1, 1, 0, 0},  /* decode step, window + sinks */
        {2, 2, 2, 3, 6200, 64, 64, 1, 0, 0, 0, 0, 0.0f, 2.0f, 1, 1000, 0, 0, 0, 0, 0, 0},  /* rows path, window */
        {1, 2, 2, 4, 9, 8, 8, 0, 0, 0, 0, 0, 0.0f, 1.0f, 1, 1, 1, 1, 1, 1, 0, 0},          /* small heads */
        {1, 2, 1, 150, 170, 32, 32, 1, 0, 0, 0, 0, 0.0f, 4.0f, 0, 0, 0, 0, 0, 0, 2, 0},    /* soft cap alone */
        {2, 4, 2, 70, 90, 24, 24, 0, 2, 0, 1, 1, 0.2f, 4.0f, 1, 9, 5, 2, 1, 1, 5, 0},      /* soft cap + the rest */
        {1, 3, 3, 2, 12, 8, 8, 1, 0, 0, 0, 0, 0.0f, 4.0f, 0, 0, 0, 0, 0, 0, 1, 0},        /* small heads, soft cap */
        {1, 2, 1, 3, 3000, 40, 40, 1, 0, 0, 1, 0, 0.0f, 4.0f, 1, 700, 0, 4, 0, 1, 3, 0},  /* rows path, soft cap */
        /* block maps                                                               ... bs */
        {1, 2, 1, 256, 256, 32, 32, 0, 0, 0, 0, 0, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 64},   /* aligned to 64 */
        {2, 2, 2, 150, 170, 24, 24, 1, 1, 0, 0, 1, 0.2f, 2.0f, 1, 40, 0, 2, 1, 1, 0, 16}, /* with the rest */
        {1, 3, 3, 100, 130, 16, 16, 0, 0, 1, 1, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 3, 7},   /* odd blocks */
        {1, 4, 2, 2, 5000, 40, 40, 0, 0, 0, 0, 0, 0.0f, 2.0f, 0, 0, 0, 0, 1, 0, 0, 100},  /* rows path */
        {1, 2, 2, 3, 9, 8, 8, 0, 0, 0, 0, 0, 0.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 2},         /* small heads */
        /* weights: the block path's scores with skipped map blocks, then a short last block recomputed */
        {1, 2, 1, 258, 300, 32, 32, 0, 0, 0, 0, 0, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 64},
        /* the small backward (S, D and Dv within a backward key block: 64 on AVX-512, 32 on AVX2 and the
         * portable build): the ViT's T = S = 17, D = 32 in its (B,T,H,D) layout; several blocks of query rows
         * (T past 128) with every mask and dropout; one key; the detector's T = S = 64, D = 24; 64 keys with
         * every mask and dropout, T > S */
        {3, 4, 4, 17, 17, 32, 32, 0, 0, 0, 0, 1, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 4, 2, 17, 17, 16, 15, 0, 0, 0, 0, 1, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 2, 1, 300, 13, 24, 7, 1, 2, 1, 1, 1, 0.2f, 3.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 2, 2, 140, 29, 9, 30, 1, 1, 0, 1, 1, 0.0f, 2.0f, 1, 7, 3, 2, 1, 1, 6, 4},
        {1, 3, 1, 70, 1, 5, 5, 0, 0, 0, 1, 0, 0.2f, 1.0f, 0, 0, 0, 0, 1, 0, 0, 0},
        {2, 4, 4, 64, 64, 24, 24, 0, 0, 0, 0, 1, 0.0f, 2.0f, 0, 0, 0, 0, 0, 0, 0, 0},
        {2, 4, 2, 100, 64, 64, 48, 1, 2, 1, 1, 1, 0.2f, 3.0f, 0, 0, 0, 0, 0, 0, 0, 0},
    };
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    int bad = 0;
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        if (!attn_cpu_supports(paths[p]) || attn_set_isa(paths[p]) != ATTN_OK) {
            printf("%s: not supported here, skipped\n", attn_isa_name(paths[p]));
            continue;
        }
        for (int i = 0; i < nfixed; i++) bad += !run_case(paths[p], &fixed[i], "fixed");
        /* randomized sweep */
        const int nrand = paths[p] == ATTN_ISA_SCALAR ? 12 : 20;
        for (int i = 0; i < nrand; i++) {
            tcase c;
            c.Hkv = rnd_int(1, 2);
            c.H = c.Hkv * rnd_int(1, 3);
            c.B = rnd_int(1, 2);
            c.T = rnd_int(0, 4) == 0 ? 1 : rnd_int(1, 90);
            c.S = rnd_int(0, 4) == 0 ? 1 : rnd_int(1, 110);
            c.D = rnd_int(1, 130);
            c.Dv = rnd_int(0, 1) ? c.D : rnd_int(1, 130);
            c.causal = rnd_int(0, 1);
            c.valid = rnd_int(0, 3) == 0 ? rnd_int(1, 2) : 0;
            c.allow = rnd_int(0, 3) == 0 ? rnd_int(1, 2) : 0;
            c.bias = rnd_int(0, 3) == 0;
            c.strided = rnd_int(0, 1);
            c.dropout = rnd_int(0, 4) == 0 ? 0.2f : 0.0f;
            c.qscale = (float)rnd_int(1, 4);
            c.window = rnd_int(0, 2) == 0;
            c.wl = rnd_int(0, 40);
            c.wr = rnd_int(0, 40);
            c.sinks = rnd_int(0, 2) == 0 ? rnd_int(0, 5) : 0;
            c.sink_logits = rnd_int(0, 3) == 0;
            c.alibi = rnd_int(0, 3) == 0;
            c.softcap = rnd_int(0, 3) == 0 ? (float)rnd_int(1, 30) : 0.0f;
            c.bs = rnd_int(0, 3) == 0 ? rnd_int(1, 40) : 0;
            bad += !run_case(paths[p], &c, "random");
        }
    }
    attn_set_isa(ATTN_ISA_AUTO);
    if (bad) fprintf(stderr, "test_fused: %d cases off\n", bad);
    return tu_finish("test_fused");
}
