/*
 * test_bf16.c — scaled dot-product attention with bf16 tensors (and fp32 tensors with bf16 compute) on
 * every path this CPU runs (ref, scalar, AVX2, AVX-512 by conversion to fp32; AMX with tiles), against
 * the fp32 reference on the same bf16-rounded inputs. Randomized shapes: odd T, S, D, Dv, T = 1, S = 1,
 * every mask kind alone and combined, fully masked rows, grouped-query heads, strided (B,T,H,D) layouts
 * with padded rows, dropout; forward and backward. Then: bitwise identity of both passes for any thread
 * count and for the partition entries, the AVX512-BF16 backward reached as its own (check_own_backward),
 * and the AMX-refused fall-back (run again by ctest with ATTN_NO_AMX=1 and `refused` as argument).
 *
 * Tolerances (the reference sums in double on the rounded inputs; a bf16 path rounds P to bf16, about
 * 2^-9 relative, and rounds the output to bf16):
 *   out            |got - want| <= 1e-2 · max(1, max|want|) + 1e-2 · |want|
 *   lse            2e-4 · max(1, max|want|) + 1e-4 · |want|   (the row statistics as log-sum-exp; scores are
 *                  exact products summed in fp32)
 *   dq, dk, dv     2e-2 · max(1, max|want|) over the gradient  (the backward runs in fp32 on the rounded
 *                  inputs and rounds the gradients once; the reference's backward reads the path's bf16
 *                  out, an input of the backward)
 */
#include "attn.h"
#include "attn/safetensors.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x5eed0bf16a11ce55ULL;
static uint64_t rnd_u64(void) { return tu_rnd_u64(&g_rng); }
static int rnd_int(int lo, int hi) { return tu_rnd_int(&g_rng, lo, hi); }
static float rnd_f(void) { return tu_rnd_f(&g_rng); }

typedef struct tcase {
    int B, H, Hkv, T, S, D, Dv;
    int causal, valid, allow, bias, strided;
    float dropout, qscale;
} tcase;

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

static int close_tol(const char *what, const float *got, const float *want, size_t n, double a, double r) {
    double s = max_abs(want, n);
    if (s < 1) s = 1;
    return tu_close_f32(what, got, want, n, a * s, r);
}

/* Row statistics (n rows of (m, log l)) compared as log-sum-exp: -inf must match exactly. */
static int close_lse(const float *got_stats, const float *want_stats, size_t n) {
    float *got = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
    CHECK_STATUS(attn_sdpa_logsumexp(got_stats, (int64_t)n, got), ATTN_OK);
    CHECK_STATUS(attn_sdpa_logsumexp(want_stats, (int64_t)n, want), ATTN_OK);
    float *g = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    int inf_ok = 1;
    for (size_t i = 0; i < n; i++) {
        if ((got[i] == -INFINITY) != (want[i] == -INFINITY)) inf_ok = 0;
        g[i] = got[i] == -INFINITY ? -1e30f : got[i];
        w[i] = want[i] == -INFINITY ? -1e30f : want[i];
    }
    free(got); free(want);
    CHECK(inf_ok);
    int ok = close_tol("lse", g, w, n, 2e-4, 1e-4) && inf_ok;
    free(g); free(w);
    return ok;
}

static size_t span(const attn_layout *l, int B, int H, int T, int inner) {
    return (size_t)((B - 1) * l->b + (H - 1) * l->h + (T - 1) * l->t + inner);
}

static void layout_bthd(attn_layout *l, int H, int T, int inner, int pad) {
    l->t = (int64_t)H * (inner + pad);
    l->h = inner + pad;
    l->b = l->t * T;
}

/* n random values rounded to bf16: the fp32 copy f (the reference's input) and the bits h */
static void fill_bf16(float *f, uint16_t *h, size_t n, float spread) {
    for (size_t i = 0; i < n; i++) {
        h[i] = attn_bf16_from_f32(rnd_f() * spread);
        f[i] = attn_bf16_to_f32(h[i]);
    }
}

/* The fp32 values f moved off bf16 (exactly halfway, just below and just above half a bf16 step, a few
 * subnormals) and h their rounding by attn_bf16_from_f32: what a path that rounds fp32 tensors must give. */
static void unround_bf16(float *f, uint16_t *h, size_t n) {
    static const uint32_t low[4] = {0x8000, 0x7fff, 0x8001, 0};
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        u |= low[i % 4];
        if (i % 97 == 0) u = (u & 0x80000000u) | (uint32_t)(i % 0x7fffff);   /* subnormal */
        memcpy(&f[i], &u, 4);
        h[i] = attn_bf16_from_f32(f[i]);
    }
}

static void to_f32(float *f, const uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) f[i] = attn_bf16_to_f32(h[i]);
}

typedef struct problem {
    attn_sdpa_desc d;
    int32_t *vl;
    uint8_t *allow;
    float *bias;
    size_t nq, nk, nv, no, nl;
    float *q, *k, *v, *dout;     /* fp32, bf16-rounded values */
    uint16_t *qh, *kh, *vh, *douth;
} problem;

static void problem_make(problem *p, const tcase *c) {
    memset(p, 0, sizeof *p);
    attn_sdpa_desc *d = &p->d;
    const int B = c->B, H = c->H, Hkv = c->Hkv, T = c->T, S = c->S, D = c->D, Dv = c->Dv;
    CHECK_STATUS(attn_sdpa_desc_init(d, B, H, T, S, D, Dv), ATTN_OK);
    d->Hkv = Hkv;
    if (c->strided) {
        layout_bthd(&d->q, H, T, D, 3);
        layout_bthd(&d->k, Hkv, S, D, 1);
        layout_bthd(&d->v, Hkv, S, Dv, 2);
        layout_bthd(&d->out, H, T, Dv, 5);
    } else {
        d->k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
        d->v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    }
    d->mask.causal = c->causal;
    d->dropout = c->dropout;
    d->seed = rnd_u64();
    if (c->valid) {
        size_t n = c->valid == 1 ? (size_t)B : (size_t)B * T;
        p->vl = malloc(sizeof(int32_t) * n);
        for (size_t i = 0; i < n; i++) p->vl[i] = rnd_int(0, 5) == 0 ? 0 : rnd_int(1, S + 2);
        d->mask.valid_lens_kind = c->valid == 1 ? ATTN_VALID_LENS_PER_BATCH : ATTN_VALID_LENS_PER_QUERY;
        d->mask.valid_lens = p->vl;
    }
    if (c->allow) {
        size_t n = c->allow == 1 ? (size_t)B * H * T * S : (size_t)T * S;
        p->allow = malloc(n);
        for (size_t i = 0; i < n; i++) p->allow[i] = rnd_int(0, 3) != 0;
        for (int s = 0; s < S; s++) p->allow[(size_t)(T / 2) * S + s] = 0;   /* a fully masked row */
        d->mask.allow = p->allow;
        if (c->allow == 1) {
            d->mask.allow_stride[0] = (int64_t)H * T * S;
            d->mask.allow_stride[1] = (int64_t)T * S;
        }
        d->mask.allow_stride[2] = S;
    }
    if (c->bias) {
        size_t n = (size_t)B * H * T * S;
        p->bias = malloc(sizeof(float) * n);
        for (size_t i = 0; i < n; i++) p->bias[i] = rnd_int(0, 9) == 0 ? -INFINITY : 2.0f * rnd_f();
        d->mask.bias = p->bias;
        d->mask.bias_stride[0] = (int64_t)H * T * S;
        d->mask.bias_stride[1] = (int64_t)T * S;
        d->mask.bias_stride[2] = S;
    }
    p->nq = span(&d->q, B, H, T, D);
    p->nk = span(&d->k, B, Hkv, S, D);
    p->nv = span(&d->v, B, Hkv, S, Dv);
    p->no = span(&d->out, B, H, T, Dv);
    p->nl = (size_t)B * H * T;
    p->q = malloc(sizeof(float) * p->nq); p->qh = malloc(2 * p->nq);
    p->k = malloc(sizeof(float) * p->nk); p->kh = malloc(2 * p->nk);
    p->v = malloc(sizeof(float) * p->nv); p->vh = malloc(2 * p->nv);
    p->dout = malloc(sizeof(float) * p->no); p->douth = malloc(2 * p->no);
    fill_bf16(p->q, p->qh, p->nq, c->qscale);
    fill_bf16(p->k, p->kh, p->nk, 1.0f);
    fill_bf16(p->v, p->vh, p->nv, 1.0f);
    fill_bf16(p->dout, p->douth, p->no, 1.0f);
}

static void problem_free(problem *p) {
    free(p->vl); free(p->allow); free(p->bias);
    free(p->q); free(p->k); free(p->v); free(p->dout);
    free(p->qh); free(p->kh); free(p->vh); free(p->douth);
}

static void *work_for(const attn_ctx *ctx, const attn_sdpa_desc *d, size_t *bytes) {
    size_t wf = 0, wb = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(ctx, d, ATTN_PASS_FORWARD, &wf), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(ctx, d, ATTN_PASS_BACKWARD, &wb), ATTN_OK);
    *bytes = wf > wb ? wf : wb;
    return malloc(*bytes ? *bytes : 1);
}

/* One case on one path: bf16 tensors forward and backward, and fp32 tensors with bf16 compute forward. */
static int run_case(attn_isa isa, const tcase *c, const char *label) {
    problem p;
    problem_make(&p, c);
    attn_sdpa_desc *d = &p.d;
    const size_t nq = p.nq, nk = p.nk, nv = p.nv, no = p.no, nl = p.nl;
    attn_ctx ref, ctx;
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
    CHECK_STATUS(attn_ctx_init(&ctx, isa, 0), ATTN_OK);

    /* the fp32 reference on the rounded inputs; gradients start from rounded random values */
    float *out_r = calloc(no, sizeof(float)), *lse_r = calloc(2 * nl, sizeof(float));   /* row statistics */
    float *dq_r = malloc(sizeof(float) * nq), *dk_r = malloc(sizeof(float) * nk), *dv_r = malloc(sizeof(float) * nv);
    uint16_t *dqh = malloc(2 * nq), *dkh = malloc(2 * nk), *dvh = malloc(2 * nv);
    fill_bf16(dq_r, dqh, nq, 0.5f);
    fill_bf16(dk_r, dkh, nk, 0.5f);
    fill_bf16(dv_r, dvh, nv, 0.5f);
    size_t wbytes;
    void *work = work_for(&ref, d, &wbytes);
    CHECK_STATUS(attn_sdpa_forward(&ref, d, out_r, lse_r, NULL, p.q, p.k, p.v, work, wbytes), ATTN_OK);

    /* bf16 tensors on the path */
    attn_sdpa_desc e = *d;
    e.dtype = ATTN_DTYPE_BF16;
    uint16_t *outh = malloc(2 * no);
    memset(outh, 0, 2 * no);     /* as out_r: the gaps between strided rows must stay 0 */
    float *lse_f = calloc(2 * nl, sizeof(float));
    size_t wbytes2;
    void *work2 = work_for(&ctx, &e, &wbytes2);
    CHECK_STATUS(attn_sdpa_forward(&ctx, &e, outh, lse_f, NULL, p.qh, p.kh, p.vh, work2, wbytes2), ATTN_OK);
    /* the reference backward reads the same bf16 out as the path's (out is an input of the backward) */
    float *out_rb = malloc(sizeof(float) * no);
    to_f32(out_rb, outh, no);
    CHECK_STATUS(attn_sdpa_backward(&ref, d, dq_r, dk_r, dv_r, p.dout, p.q, p.k, p.v, out_rb, lse_r, work, wbytes),
                 ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(&ctx, &e, dqh, dkh, dvh, p.douth, p.qh, p.kh, p.vh, outh, lse_f, work2, wbytes2),
                 ATTN_OK);
    free(work);
    free(work2);
    free(out_rb);

    printf("%s %s: B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d causal=%d valid=%d allow=%d bias=%d strided=%d "
           "dropout=%g\n", attn_isa_name(isa), label, c->B, c->H, c->Hkv, c->T, c->S, c->D, c->Dv, c->causal,
           c->valid, c->allow, c->bias, c->strided, c->dropout);
    float *got = malloc(sizeof(float) * (no > nq ? (no > nk ? no : nk) : (nq > nk ? nq : nk)) + sizeof(float) * nv);
    int ok = 1;
    to_f32(got, outh, no);
    ok &= close_tol("out (bf16)", got, out_r, no, 1e-2, 1e-2);
    ok &= close_lse(lse_f, lse_r, nl);
    to_f32(got, dqh, nq);
    ok &= close_tol("dq (bf16)", got, dq_r, nq, 2e-2, 0);
    to_f32(got, dkh, nk);
    ok &= close_tol("dk (bf16)", got, dk_r, nk, 2e-2, 0);
    to_f32(got, dvh, nv);
    ok &= close_tol("dv (bf16)", got, dv_r, nv, 2e-2, 0);

    /* fp32 tensors (already bf16 values) with bf16 compute: what the path rounds is what the reference saw */
    attn_sdpa_desc f = *d;
    f.compute = ATTN_DTYPE_BF16;
    float *out_c = calloc(no, sizeof(float)), *lse_c = calloc(2 * nl, sizeof(float));
    work = work_for(&ctx, &f, &wbytes);
    CHECK_STATUS(attn_sdpa_forward(&ctx, &f, out_c, lse_c, NULL, p.q, p.k, p.v, work, wbytes), ATTN_OK);
    ok &= close_tol("out (fp32, bf16 compute)", out_c, out_r, no, 1e-2, 1e-2);
    ok &= close_lse(lse_c, lse_r, nl);
    /* its backward from zero against the reference's from zero, both reading this out (each with the row
     * statistics of its own path's forward) */
    {
        float *g[6];
        const size_t gn[3] = {nq, nk, nv};
        for (int i = 0; i < 6; i++) g[i] = calloc(gn[i % 3], sizeof(float));
        attn_ctx r1;
        CHECK_STATUS(attn_ctx_init(&r1, ATTN_ISA_REF, 1), ATTN_OK);
        size_t rb;
        void *rw = work_for(&r1, d, &rb);
        CHECK_STATUS(attn_sdpa_backward(&r1, d, g[0], g[1], g[2], p.dout, p.q, p.k, p.v, out_c, lse_r, rw, rb),
                     ATTN_OK);
        CHECK_STATUS(attn_sdpa_backward(&ctx, &f, g[3], g[4], g[5], p.dout, p.q, p.k, p.v, out_c, lse_c, work, wbytes),
                     ATTN_OK);
        ok &= close_tol("dq (fp32, bf16 compute)", g[3], g[0], nq, 2e-2, 0);
        ok &= close_tol("dk (fp32, bf16 compute)", g[4], g[1], nk, 2e-2, 0);
        ok &= close_tol("dv (fp32, bf16 compute)", g[5], g[2], nv, 2e-2, 0);
        free(rw);
        for (int i = 0; i < 6; i++) free(g[i]);
    }
    free(work);

    free(out_r); free(lse_r); free(dq_r); free(dk_r); free(dv_r); free(dqh); free(dkh); free(dvh);
    free(outh); free(lse_f); free(got); free(out_c); free(lse_c);
    problem_free(&p);
    return ok;
}

/* Bitwise identity of the bf16 forward on one path for 1, 2 and 3 threads and for the partition entries:
 * a block shape, a decoding shape (T = 3, grouped heads: the rows paths) and few rows per head (T = 37: a
 * group's heads share a block on AVX512-BF16). */
static void check_threads_case(attn_isa isa, const tcase c) {
    problem p;
    problem_make(&p, &c);
    attn_sdpa_desc e = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    uint16_t *o[4], *g[4][3];
    float *l[4];
    const size_t gn[3] = {p.nq, p.nk, p.nv};
    for (int r = 0; r < 4; r++) {
        const int nth = r < 3 ? r + 1 : 3;
        attn_ctx ctx;
        CHECK_STATUS(attn_ctx_init(&ctx, isa, nth), ATTN_OK);
        o[r] = calloc(p.no, 2);
        l[r] = calloc(2 * p.nl, sizeof(float));
        size_t wbytes;
        void *work = work_for(&ctx, &e, &wbytes);
        for (int i = 0; i < 3; i++) g[r][i] = calloc(gn[i], 2);
        if (r < 3) {
            CHECK_STATUS(attn_sdpa_forward(&ctx, &e, o[r], l[r], NULL, p.qh, p.kh, p.vh, work, wbytes), ATTN_OK);
            CHECK_STATUS(attn_sdpa_backward(&ctx, &e, g[r][0], g[r][1], g[r][2], p.douth, p.qh, p.kh, p.vh, o[r], l[r],
                                            work, wbytes),
                         ATTN_OK);
        } else {   /* the caller's own threads: stages in order, calls of a stage in reverse order */
            int ns = 0;
            CHECK_STATUS(attn_sdpa_stages(&ctx, &e, ATTN_PASS_FORWARD, &ns), ATTN_OK);
            for (int s = 0; s < ns; s++)
                for (int ith = nth - 1; ith >= 0; ith--)
                    CHECK_STATUS(attn_sdpa_forward_part(&ctx, &e, o[r], l[r], p.qh, p.kh, p.vh, work, wbytes, s, ith),
                                 ATTN_OK);
            CHECK_STATUS(attn_sdpa_stages(&ctx, &e, ATTN_PASS_BACKWARD, &ns), ATTN_OK);
            for (int s = 0; s < ns; s++)
                for (int ith = nth - 1; ith >= 0; ith--)
                    CHECK_STATUS(attn_sdpa_backward_part(&ctx, &e, g[r][0], g[r][1], g[r][2], p.douth, p.qh, p.kh, p.vh,
                                                         o[r], l[r], work, wbytes, s, ith),
                                 ATTN_OK);
        }
        free(work);
    }
    for (int r = 1; r < 4; r++) {
        CHECK(memcmp(o[0], o[r], 2 * p.no) == 0);
        CHECK(memcmp(l[0], l[r], sizeof(float) * 2 * p.nl) == 0);
        for (int i = 0; i < 3; i++) CHECK(memcmp(g[0][i], g[r][i], 2 * gn[i]) == 0);
    }
    printf("%s: bf16 forward and backward bitwise identical for 1, 2, 3 threads and the partition entries (T=%d)\n",
           attn_isa_name(isa), c.T);
    for (int r = 0; r < 4; r++) {
        free(o[r]); free(l[r]);
        for (int i = 0; i < 3; i++) free(g[r][i]);
    }
    problem_free(&p);
}

static void check_threads(attn_isa isa) {
    check_threads_case(isa, (tcase){2, 4, 2, 75, 301, 72, 40, 1, 2, 0, 1, 1, 0.1f, 2.0f});
    check_threads_case(isa, (tcase){2, 8, 2, 3, 601, 72, 40, 1, 2, 0, 1, 1, 0.1f, 2.0f});
    /* 18 rows per kv head: on AMX a pack of 16 and one of 2 (two tile configurations in turn) */
    check_threads_case(isa, (tcase){1, 12, 2, 3, 333, 64, 64, 1, 0, 1, 0, 0, 0.0f, 2.0f});
    check_threads_case(isa, (tcase){1, 8, 2, 37, 301, 72, 40, 1, 2, 0, 1, 1, 0.1f, 2.0f});   /* heads share blocks */
}

/* The AVX512-BF16 path's backward is its own (vdpbf16ps, bwd_avx512bf16.c), not the AVX-512 one on fp32
 * copies: from the same forward (out and row statistics), its gradients are within the bounds of run_case
 * and differ in bits from the fp32 copies' (which round nothing before the gradients), for a block shape,
 * a decoding shape and, on AMX, a short one it hands over. */
static void check_own_backward_case(attn_isa isa, const tcase c) {
    problem p;
    problem_make(&p, &c);
    attn_sdpa_desc e = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    attn_ctx ctx[2];
    CHECK_STATUS(attn_ctx_init(&ctx[0], isa, 2), ATTN_OK);
    CHECK_STATUS(attn_ctx_init(&ctx[1], ATTN_ISA_AVX512, 2), ATTN_OK);
    attn_dtype ct = ATTN_DTYPE_F32;
    CHECK_STATUS(attn_sdpa_compute_type(&ctx[0], &e, ATTN_PASS_BACKWARD, &ct), ATTN_OK);
    CHECK(ct == ATTN_DTYPE_BF16);
    uint16_t *o = calloc(p.no, 2), *g[2][3];
    float *l = calloc(2 * p.nl, sizeof(float));
    const size_t gn[3] = {p.nq, p.nk, p.nv};
    size_t wbytes;
    void *work = work_for(&ctx[0], &e, &wbytes);
    CHECK_STATUS(attn_sdpa_forward(&ctx[0], &e, o, l, NULL, p.qh, p.kh, p.vh, work, wbytes), ATTN_OK);
    for (int r = 0; r < 2; r++) {
        size_t wb;
        void *w = work_for(&ctx[r], &e, &wb);
        for (int i = 0; i < 3; i++) g[r][i] = calloc(gn[i], 2);
        CHECK_STATUS(attn_sdpa_backward(&ctx[r], &e, g[r][0], g[r][1], g[r][2], p.douth, p.qh, p.kh, p.vh, o, l, w, wb),
                     ATTN_OK);
        free(w);
    }
    int differ = 1;
    float *a = malloc(sizeof(float) * (p.nq + p.nk + p.nv)), *b = malloc(sizeof(float) * (p.nq + p.nk + p.nv));
    for (int i = 0; i < 3; i++) {
        differ &= memcmp(g[0][i], g[1][i], 2 * gn[i]) != 0;
        to_f32(a, g[0][i], gn[i]);
        to_f32(b, g[1][i], gn[i]);
        const char *names[3] = {"dq against the fp32 copies'", "dk against the fp32 copies'", "dv against the fp32 copies'"};
        close_tol(names[i], a, b, gn[i], 2e-2, 0);
    }
    CHECK(differ);
    printf("%s: its own bf16 backward (T=%d): dq, dk, dv %s the fp32 copies' in bits\n", attn_isa_name(isa), c.T,
           differ ? "differ from" : "EQUAL");
    free(a); free(b); free(work); free(o); free(l);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++) free(g[r][i]);
    problem_free(&p);
}

static void check_own_backward(attn_isa isa) {
    if (isa == ATTN_ISA_AVX512BF16) {
        check_own_backward_case(isa, (tcase){1, 4, 2, 75, 130, 40, 24, 1, 0, 0, 1, 1, 0.0f, 2.0f});
        check_own_backward_case(isa, (tcase){1, 8, 2, 2, 300, 64, 64, 0, 0, 0, 1, 0, 0.0f, 2.0f});
    }
    check_own_backward_case(isa, (tcase){1, 4, 2, 9, 100, 33, 17, 1, 0, 1, 0, 0, 0.1f, 2.0f});
}

/* fp32 tensors with bf16 compute and more than 4 query rows per head run the AVX512-BF16 kernels on bf16
 * copies: on AVX512-BF16 every such shape, on AMX those of 5 to 15 rows that the tiles decline (the
 * Transformer translator's are 10). So they must give exactly the results of the bf16 tensors that
 * attn_bf16_from_f32 makes of them (halfway cases and subnormals among the values), before those are
 * rounded: bf16(out), the row statistics and bf16(dv) from zero equal bit for bit. dq and dk differ: their
 * Δ = rowsum(dout ∘ out) keeps what rounding the fp32 out takes, so they are held to the fp32 reference
 * (within run_case's bounds) instead.
 * The gradients accumulate in fp32: from r they come out r + (from zero), bit for bit. The result does not
 * depend on the thread count or on running by the partition entries, and it differs from the fp32 compute
 * of the same tensors. */
static void check_short_fp32_case(attn_isa isa, const tcase c) {
    problem p;
    problem_make(&p, &c);
    unround_bf16(p.q, p.qh, p.nq);
    unround_bf16(p.k, p.kh, p.nk);
    unround_bf16(p.v, p.vh, p.nv);
    unround_bf16(p.dout, p.douth, p.no);
    attn_sdpa_desc e = p.d, f = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    f.compute = ATTN_DTYPE_BF16;
    const size_t gn[3] = {p.nq, p.nk, p.nv};
    attn_ctx ctx, one, fp;
    CHECK_STATUS(attn_ctx_init(&ctx, isa, 2), ATTN_OK);
    CHECK_STATUS(attn_ctx_init(&one, isa, 3), ATTN_OK);   /* three parts, by the partition entries */
    CHECK_STATUS(attn_ctx_init(&fp, ATTN_ISA_AVX512, 1), ATTN_OK);
    attn_dtype ct[2] = {ATTN_DTYPE_F32, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_sdpa_compute_type(&ctx, &f, ATTN_PASS_FORWARD, &ct[0]), ATTN_OK);
    CHECK_STATUS(attn_sdpa_compute_type(&ctx, &f, ATTN_PASS_BACKWARD, &ct[1]), ATTN_OK);
    CHECK(ct[0] == ATTN_DTYPE_BF16 && ct[1] == ATTN_DTYPE_BF16);

    /* bf16 tensors: out, statistics, gradients from zero */
    uint16_t *oh = calloc(p.no, 2), *gh[3];
    float *lh = calloc(2 * p.nl, sizeof(float));
    size_t wb;
    void *w = work_for(&ctx, &e, &wb);
    for (int i = 0; i < 3; i++) gh[i] = calloc(gn[i], 2);
    CHECK_STATUS(attn_sdpa_forward(&ctx, &e, oh, lh, NULL, p.qh, p.kh, p.vh, w, wb), ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(&ctx, &e, gh[0], gh[1], gh[2], p.douth, p.qh, p.kh, p.vh, oh, lh, w, wb), ATTN_OK);
    free(w);

    /* fp32 tensors, bf16 compute: on 2 threads, and by the partition entries as 3 parts (stages in order,
     * parts in reverse: the conversion stage is one of them), from zero; then from r (2 threads) */
    float *o[3], *l[3], *g[3][3], *r[3];
    for (int k = 0; k < 3; k++) {
        const attn_ctx *cx = k == 1 ? &one : k == 2 ? &fp : &ctx;
        attn_sdpa_desc dk = k == 2 ? p.d : f;          /* the fp32 compute, for contrast */
        o[k] = calloc(p.no, sizeof(float));
        l[k] = calloc(2 * p.nl, sizeof(float));
        void *wk = work_for(cx, &dk, &wb);
        for (int i = 0; i < 3; i++) g[k][i] = calloc(gn[i], sizeof(float));
        if (k == 1) {
            int ns = 0;
            CHECK_STATUS(attn_sdpa_stages(cx, &dk, ATTN_PASS_FORWARD, &ns), ATTN_OK);
            for (int st = 0; st < ns; st++)
                for (int ith = 2; ith >= 0; ith--)
                    CHECK_STATUS(attn_sdpa_forward_part(cx, &dk, o[k], l[k], p.q, p.k, p.v, wk, wb, st, ith), ATTN_OK);
            CHECK_STATUS(attn_sdpa_stages(cx, &dk, ATTN_PASS_BACKWARD, &ns), ATTN_OK);
            for (int st = 0; st < ns; st++)
                for (int ith = 2; ith >= 0; ith--)
                    CHECK_STATUS(attn_sdpa_backward_part(cx, &dk, g[k][0], g[k][1], g[k][2], p.dout, p.q, p.k, p.v,
                                                         o[k], l[k], wk, wb, st, ith),
                                 ATTN_OK);
        } else {
            CHECK_STATUS(attn_sdpa_forward(cx, &dk, o[k], l[k], NULL, p.q, p.k, p.v, wk, wb), ATTN_OK);
            CHECK_STATUS(attn_sdpa_backward(cx, &dk, g[k][0], g[k][1], g[k][2], p.dout, p.q, p.k, p.v, o[k], l[k], wk,
                                            wb),
                         ATTN_OK);
        }
        free(wk);
    }
    for (int i = 0; i < 3; i++) {
        r[i] = malloc(gn[i] * sizeof(float));
        for (size_t x = 0; x < gn[i]; x++) r[i][x] = (float)(x % 7) * 0.375f - 1.0f;
    }
    w = work_for(&ctx, &f, &wb);
    CHECK_STATUS(attn_sdpa_backward(&ctx, &f, r[0], r[1], r[2], p.dout, p.q, p.k, p.v, o[0], l[0], w, wb), ATTN_OK);
    free(w);

    int same_bf16 = memcmp(lh, l[0], sizeof(float) * 2 * p.nl) == 0, accum = 1, threads = 1, differ = 0;
    for (size_t x = 0; x < p.no; x++) same_bf16 &= attn_bf16_from_f32(o[0][x]) == oh[x];
    for (size_t x = 0; x < p.nv; x++) same_bf16 &= attn_bf16_from_f32(g[0][2][x]) == gh[2][x];
    for (int i = 0; i < 3; i++)
        for (size_t x = 0; x < gn[i]; x++) accum &= r[i][x] == ((float)(x % 7) * 0.375f - 1.0f) + g[0][i][x];
    /* dq, dk against the fp32 reference's from zero, which reads this out with its own statistics; not at
     * logits near 1e9, where rounding the inputs moves the scores by 1e6 (run_case's cases there, on
     * bf16 values, hold this path to the reference) */
    if (c.qscale < 1e6f) {
        attn_ctx ref;
        CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
        float *rl = calloc(2 * p.nl, sizeof(float)), *ro = calloc(p.no, sizeof(float)), *rg[3];
        for (int i = 0; i < 3; i++) rg[i] = calloc(gn[i], sizeof(float));
        void *rw = work_for(&ref, &p.d, &wb);
        CHECK_STATUS(attn_sdpa_forward(&ref, &p.d, ro, rl, NULL, p.q, p.k, p.v, rw, wb), ATTN_OK);
        CHECK_STATUS(attn_sdpa_backward(&ref, &p.d, rg[0], rg[1], rg[2], p.dout, p.q, p.k, p.v, o[0], rl, rw, wb),
                     ATTN_OK);
        close_tol("dq (fp32, bf16 compute) vs reference", g[0][0], rg[0], p.nq, 2e-2, 0);
        close_tol("dk (fp32, bf16 compute) vs reference", g[0][1], rg[1], p.nk, 2e-2, 0);
        free(rw); free(rl); free(ro);
        for (int i = 0; i < 3; i++) free(rg[i]);
    }
    threads &= memcmp(o[0], o[1], sizeof(float) * p.no) == 0 && memcmp(l[0], l[1], sizeof(float) * 2 * p.nl) == 0;
    for (int i = 0; i < 3; i++) threads &= memcmp(g[0][i], g[1][i], sizeof(float) * gn[i]) == 0;
    differ = memcmp(o[0], o[2], sizeof(float) * p.no) != 0;   /* or the gradients, where the weights are one-hot */
    for (int i = 0; i < 3; i++) differ |= memcmp(g[0][i], g[2][i], sizeof(float) * gn[i]) != 0;
    CHECK(same_bf16);
    CHECK(accum);
    CHECK(threads);
    CHECK(differ);
    printf("%s: fp32 tensors, bf16 compute, T=%d: the bf16 tensors' out, statistics and dv bit for bit (%s), "
           "gradients add in fp32 (%s), 2 threads and 3 parts %s, %s the fp32 compute's\n",
           attn_isa_name(isa), c.T, same_bf16 ? "yes" : "NO", accum ? "yes" : "NO", threads ? "equal" : "DIFFER",
           differ ? "differs from" : "EQUALS");
    free(oh); free(lh);
    for (int i = 0; i < 3; i++) { free(gh[i]); free(r[i]); }
    for (int k = 0; k < 3; k++) {
        free(o[k]); free(l[k]);
        for (int i = 0; i < 3; i++) free(g[k][i]);
    }
    problem_free(&p);
}

static void check_short_fp32(attn_isa isa) {
    check_short_fp32_case(isa, (tcase){4, 4, 4, 10, 10, 8, 8, 1, 0, 0, 0, 1, 0.1f, 1.0f});   /* the translator's */
    check_short_fp32_case(isa, (tcase){2, 4, 2, 12, 33, 24, 20, 0, 2, 1, 1, 1, 0.0f, 2.0f});  /* every mask, GQA */
    check_short_fp32_case(isa, (tcase){1, 2, 1, 15, 70, 65, 33, 1, 1, 0, 0, 0, 0.2f, 1e9f});  /* logits near 1e9 */
    /* block shapes: several query and key blocks, odd sizes (on AMX these go on tiles: another rounding) */
    if (isa == ATTN_ISA_AVX512BF16) {
        check_short_fp32_case(isa, (tcase){2, 4, 2, 131, 150, 40, 24, 1, 2, 1, 1, 1, 0.1f, 2.0f});
        check_short_fp32_case(isa, (tcase){1, 3, 3, 70, 65, 129, 33, 0, 0, 0, 0, 0, 0.0f, 1.0f});
    }
}

/* Fully masked rows give zeros and row statistics (-inf, 0) on every path, bf16 too: block rows (T = 40)
 * and decoding rows (T = 2). */
static void check_masked_rows_case(attn_isa isa, const tcase c) {
    problem p;
    problem_make(&p, &c);
    attn_sdpa_desc e = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    int32_t vl[1] = {0};
    e.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    e.mask.valid_lens = vl;
    attn_ctx ctx;
    CHECK_STATUS(attn_ctx_init(&ctx, isa, 2), ATTN_OK);
    uint16_t *o = malloc(2 * p.no);
    memset(o, 0xff, 2 * p.no);
    float *l = calloc(2 * p.nl, sizeof(float));
    size_t wbytes;
    void *work = work_for(&ctx, &e, &wbytes);
    CHECK_STATUS(attn_sdpa_forward(&ctx, &e, o, l, NULL, p.qh, p.kh, p.vh, work, wbytes), ATTN_OK);
    int zeros = 1, infs = 1;
    for (size_t i = 0; i < p.no; i++) zeros &= o[i] == 0;
    for (size_t i = 0; i < p.nl; i++) infs &= l[2 * i] == -INFINITY && l[2 * i + 1] == 0.0f;
    CHECK(zeros && infs);
    printf("%s: every key masked (T = %d): zeros and statistics (-inf, 0) %s\n", attn_isa_name(isa), c.T,
           zeros && infs ? "ok" : "FAIL");
    free(work); free(o); free(l);
    problem_free(&p);
}

static void check_masked_rows(attn_isa isa) {
    check_masked_rows_case(isa, (tcase){1, 2, 1, 40, 33, 64, 64, 0, 0, 0, 0, 0, 0.0f, 1.0f});
    check_masked_rows_case(isa, (tcase){1, 4, 1, 2, 300, 64, 64, 0, 0, 0, 0, 0, 0.0f, 1.0f});
}

/* The scores a path forms are counted (attn_sdpa_scores_computed): with nothing masked, every row's S keys
 * once per pass, decoding rows (T <= 4) and blocks alike. */
static void check_scores_counted(attn_isa isa) {
    const tcase cases[] = {{2, 4, 2, 1, 37, 16, 16, 0, 0, 0, 0, 0, 0.0f, 1.0f},
                           {1, 2, 2, 3, 10, 8, 8, 0, 0, 0, 0, 0, 0.0f, 1.0f},
                           {2, 2, 1, 20, 70, 24, 24, 0, 0, 0, 0, 0, 0.0f, 1.0f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const tcase c = cases[i];
        problem p;
        problem_make(&p, &c);
        attn_sdpa_desc e = p.d;
        e.dtype = ATTN_DTYPE_BF16;
        attn_ctx ctx;
        CHECK_STATUS(attn_ctx_init(&ctx, isa, 2), ATTN_OK);
        uint16_t *o = calloc(p.no, 2), *dq = calloc(p.nq, 2), *dk = calloc(p.nk, 2), *dv = calloc(p.nv, 2);
        float *l = calloc(2 * p.nl, sizeof(float));
        size_t wf, wb;
        void *work = work_for(&ctx, &e, &wf), *workb;
        CHECK_STATUS(attn_sdpa_workspace_size(&ctx, &e, ATTN_PASS_BACKWARD, &wb), ATTN_OK);
        workb = malloc(wb);
        attn_sdpa_scores_computed(ATTN_PASS_FORWARD, 1);
        attn_sdpa_scores_computed(ATTN_PASS_BACKWARD, 1);
        CHECK_STATUS(attn_sdpa_forward(&ctx, &e, o, l, NULL, p.qh, p.kh, p.vh, work, wf), ATTN_OK);
        CHECK_STATUS(attn_sdpa_backward(&ctx, &e, dq, dk, dv, p.douth, p.qh, p.kh, p.vh, o, l, workb, wb), ATTN_OK);
        const int64_t want = (int64_t)c.B * c.H * c.T * c.S;
        const int64_t nf = attn_sdpa_scores_computed(ATTN_PASS_FORWARD, 1);
        const int64_t nb = attn_sdpa_scores_computed(ATTN_PASS_BACKWARD, 1);
        CHECK(nf == want && nb == want);
        printf("%s: T = %d: %lld scores counted forward, %lld backward, of %lld\n", attn_isa_name(isa), c.T,
               (long long)nf, (long long)nb, (long long)want);
        free(work); free(workb); free(o); free(dq); free(dk); free(dv); free(l);
        problem_free(&p);
    }
}

static void check_amx_decoding_kernel(const tcase c, int tiles) {
    attn_ctx cx[2];
    if (attn_ctx_init(&cx[0], ATTN_ISA_AMX, 1) != ATTN_OK || attn_ctx_init(&cx[1], ATTN_ISA_AVX512BF16, 1) != ATTN_OK)
        return;
    problem p;
    problem_make(&p, &c);
    attn_sdpa_desc e = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    float *l[2];
    uint16_t *o[2];
    for (int r = 0; r < 2; r++) {
        o[r] = calloc(p.no, 2);
        l[r] = calloc(2 * p.nl, sizeof(float));
        size_t wbytes;
        void *work = work_for(&cx[r], &e, &wbytes);
        CHECK_STATUS(attn_sdpa_forward(&cx[r], &e, o[r], l[r], NULL, p.qh, p.kh, p.vh, work, wbytes), ATTN_OK);
        free(work);
    }
    int differ = 0;
    for (size_t i = 0; i < p.nl; i++) differ += l[0][2 * i + 1] != l[1][2 * i + 1];
    printf("amx decoding, K/V of %d keys, groups of %d, T = %d: %s (log l differs from avx512bf16's in %d of %zu "
           "rows)\n", c.S, c.H / c.Hkv, c.T,
           tiles ? "its own kernel" : "the avx512bf16 kernel", differ, p.nl);
    CHECK(tiles ? differ > 0 : differ == 0 && memcmp(o[0], o[1], 2 * p.no) == 0);
    close_lse(l[0], l[1], p.nl);
    for (int r = 0; r < 2; r++) { free(o[r]); free(l[r]); }
    problem_free(&p);
}

/* `--isa amx` decoding runs the AMX path's own kernel (tiles) when the K/V cache is at most 2 MiB or each
 * kv head has at least 4 query rows ((H/Hkv)·T), and the AVX512-BF16 path's otherwise: both are tested
 * against the reference elsewhere; here their sums of exponentials, taken in different orders, must
 * differ in some row where the tiles run (identical in all would mean one kernel ran twice), and be
 * bitwise the same where they do not. 4.3 MB caches: groups of 4, of 2 with T = 2 (4 rows), of 2 alone. */
static void check_amx_own_decoding(void) {
    check_amx_decoding_kernel((tcase){1, 16, 4, 1, 700, 128, 128, 0, 0, 0, 0, 0, 0.0f, 2.0f}, 1);
    check_amx_decoding_kernel((tcase){1, 8, 2, 1, 4200, 128, 128, 0, 0, 0, 0, 0, 0.0f, 2.0f}, 1);
    check_amx_decoding_kernel((tcase){1, 4, 2, 2, 4200, 128, 128, 0, 0, 0, 0, 0, 0.0f, 2.0f}, 1);
    check_amx_decoding_kernel((tcase){1, 4, 2, 1, 4200, 128, 128, 0, 0, 0, 0, 0, 0.0f, 2.0f}, 0);
}

/* Weights asked for with bf16 tensors: the path's weights stage (through fp32) against the reference's. */
static void check_weights(attn_isa isa) {
    const tcase c = {2, 4, 2, 40, 53, 24, 16, 1, 1, 0, 1, 0, 0.0f, 2.0f};
    problem p;
    problem_make(&p, &c);
    attn_sdpa_desc e = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    const size_t nw = (size_t)c.B * c.H * c.T * c.S;
    float *w[2], *st[2];
    uint16_t *o[2];
    for (int r = 0; r < 2; r++) {
        attn_ctx ctx;
        CHECK_STATUS(attn_ctx_init(&ctx, r ? isa : ATTN_ISA_REF, 2), ATTN_OK);
        w[r] = calloc(nw, sizeof(float));
        st[r] = calloc(2 * p.nl, sizeof(float));
        o[r] = calloc(p.no, 2);
        size_t wbytes;
        void *work = work_for(&ctx, &e, &wbytes);
        CHECK_STATUS(attn_sdpa_forward(&ctx, &e, o[r], st[r], w[r], p.qh, p.kh, p.vh, work, wbytes), ATTN_OK);
        free(work);
    }
    printf("%s: weights of a bf16 forward\n", attn_isa_name(isa));
    close_tol("weights", w[1], w[0], nw, 1e-5, 1e-4);
    close_lse(st[1], st[0], p.nl);
    for (int r = 0; r < 2; r++) { free(w[r]); free(st[r]); free(o[r]); }
    problem_free(&p);
}

/* NaN and Inf in K and V at keys the mask hides from every row, inside blocks the rows see: nothing of
 * them reaches any output or gradient (as on the reference). */
static void check_hidden_nonfinite_case(attn_isa isa, const tcase c) {
    problem p;
    problem_make(&p, &c);
    attn_sdpa_desc e = p.d;
    e.dtype = ATTN_DTYPE_BF16;
    uint8_t *allow = malloc((size_t)c.T * c.S);
    for (int t = 0; t < c.T; t++)
        for (int j = 0; j < c.S; j++) allow[(size_t)t * c.S + j] = j % 37 != 5;   /* keys 5, 42, 79, 116 */
    e.mask.allow = allow;
    e.mask.allow_stride[2] = c.S;
    for (int j = 5; j < c.S; j += 37) {
        p.kh[(size_t)j * c.D + 3] = 0x7fc0;                 /* NaN */
        p.vh[(size_t)j * c.Dv + 7] = 0x7f80;                /* +Inf */
        p.vh[(size_t)j * c.Dv + 8] = 0x7fc0;                /* NaN */
    }
    uint16_t *o[2], *g[2][3];
    float *st[2];
    const size_t gn[3] = {p.nq, p.nk, p.nv};
    for (int r = 0; r < 2; r++) {
        attn_ctx ctx;
        CHECK_STATUS(attn_ctx_init(&ctx, r ? isa : ATTN_ISA_REF, 2), ATTN_OK);
        o[r] = calloc(p.no, 2);
        st[r] = calloc(2 * p.nl, sizeof(float));
        for (int i = 0; i < 3; i++) g[r][i] = calloc(gn[i], 2);
        size_t wbytes;
        void *work = work_for(&ctx, &e, &wbytes);
        CHECK_STATUS(attn_sdpa_forward(&ctx, &e, o[r], st[r], NULL, p.qh, p.kh, p.vh, work, wbytes), ATTN_OK);
        CHECK_STATUS(attn_sdpa_backward(&ctx, &e, g[r][0], g[r][1], g[r][2], p.douth, p.qh, p.kh, p.vh, o[r], st[r],
                                        work, wbytes),
                     ATTN_OK);
        free(work);
    }
    printf("%s: NaN and Inf in K and V at hidden keys (T=%d)\n", attn_isa_name(isa), c.T);
    float *a = malloc(sizeof(float) * p.nk * 2), *b = a + p.nk;
    const char *names[4] = {"out", "dq", "dk", "dv"};
    for (int i = 0; i < 4; i++) {
        const size_t n = i == 0 ? p.no : gn[i - 1];
        to_f32(a, i == 0 ? o[1] : g[1][i - 1], n);
        to_f32(b, i == 0 ? o[0] : g[0][i - 1], n);
        int finite = 1;
        for (size_t x = 0; x < n; x++) finite &= isfinite(a[x]) != 0;
        CHECK(finite);
        close_tol(names[i], a, b, n, 2e-2, 0);
    }
    free(a);
    for (int r = 0; r < 2; r++) {
        free(o[r]); free(st[r]);
        for (int i = 0; i < 3; i++) free(g[r][i]);
    }
    free(allow);
    problem_free(&p);
}

/* a block shape, and decoding (T = 2, grouped heads: the rows paths) */
static void check_hidden_nonfinite(attn_isa isa) {
    check_hidden_nonfinite_case(isa, (tcase){1, 2, 1, 70, 150, 64, 48, 0, 0, 0, 0, 0, 0.0f, 1.0f});
    check_hidden_nonfinite_case(isa, (tcase){1, 4, 1, 2, 600, 64, 48, 0, 0, 0, 0, 0, 0.0f, 1.0f});
}

/* ---------------------------------------------------------------------------------------------------
 * Accuracy against PyTorch (tests/golden/bf16_accuracy.safetensors, tools/golden/gen_bf16.py): per case,
 * inputs rounded to bf16, the float64 reference, and PyTorch 1.13's own bf16 unfused attention's error
 * against it. A path's bf16 error (forward, then the backward from its own out and row statistics) must be
 * at most twice PyTorch's, per output and gradient, as ‖x - ref‖₂/‖ref‖₂ and as max|x - ref|/max|ref|;
 * where PyTorch's is below 2^-10 (exactly 0 with one key: weights of 1) the bound is 2^-9, the rounding of
 * one bf16 value.
 */
#define ACC_FLOOR (1.0 / 512)
static double g_acc_worst[ATTN_ISA_COUNT][2];   /* the worst (ours / allowed) per path: rms, max */

static double acc_rms(const float *x, const float *ref, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return sqrt(e) / (r > 0 ? sqrt(r) : 1.0);
}

static double acc_max(const float *x, const float *ref, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)x[i] - ref[i]);
        if (!(d <= e)) e = d;
        if (fabs(ref[i]) > r) r = fabs(ref[i]);
    }
    return e / (r > 0 ? r : 1.0);
}

static const float *acc_f32(const attn_st_file *f, const char *cs, const char *name, size_t n, int required) {
    char key[64];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    const attn_st_tensor *t = attn_st_find(f, key);
    if (!t) {
        if (required) {
            fprintf(stderr, "bf16_accuracy: %s missing\n", key);
            CHECK(0);
        }
        return NULL;
    }
    CHECK(t->dtype == ATTN_DTYPE_F32 && t->nbytes == n * sizeof(float));
    return t->dtype == ATTN_DTYPE_F32 && t->nbytes == n * sizeof(float) ? t->data : NULL;
}

/* A golden case's masks into m (H heads; the file's causal flag, valid lengths, allow and bias, as
 * gen_bf16.py writes them). 0 when its metadata is missing. */
static int acc_case_mask(const attn_st_file *f, const char *cs, attn_mask *m, int B, int H, int T, int S) {
    char key[64];
    snprintf(key, sizeof key, "%s/causal", cs);
    const char *causal = attn_st_meta(f, key);
    snprintf(key, sizeof key, "%s/valid_lens_kind", cs);
    const char *vk = attn_st_meta(f, key);
    CHECK(causal && vk);
    if (!causal || !vk) return 0;
    m->causal = causal[0] == '1';
    snprintf(key, sizeof key, "%s/valid_lens", cs);
    const attn_st_tensor *vl = attn_st_find(f, key);
    if (strcmp(vk, "none") != 0) {
        const int per_query = strcmp(vk, "per_query") == 0;
        CHECK(vl && vl->dtype == ATTN_DTYPE_I32 && vl->nbytes == (per_query ? (size_t)B * T : (size_t)B) * 4);
        m->valid_lens_kind = per_query ? ATTN_VALID_LENS_PER_QUERY : ATTN_VALID_LENS_PER_BATCH;
        m->valid_lens = vl ? vl->data : NULL;
    }
    snprintf(key, sizeof key, "%s/allow", cs);
    const attn_st_tensor *al = attn_st_find(f, key);
    if (al) {
        CHECK(al->dtype == ATTN_DTYPE_U8 && al->nbytes == (size_t)B * H * T * S);
        m->allow = al->data;
        m->allow_stride[0] = (int64_t)H * T * S;
        m->allow_stride[1] = (int64_t)T * S;
        m->allow_stride[2] = S;
    }
    const float *bias = acc_f32(f, cs, "bias", (size_t)B * H * T * S, 0);
    if (bias) {
        m->bias = bias;
        m->bias_stride[0] = (int64_t)H * T * S;
        m->bias_stride[1] = (int64_t)T * S;
        m->bias_stride[2] = S;
    }
    return 1;
}

static void check_accuracy(attn_isa isa, int print) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/bf16_accuracy.safetensors", ATTN_GOLDEN_DIR);
    attn_st_file f;
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    const char *cases = attn_st_meta(&f, "cases");
    CHECK(cases != NULL);
    if (!cases) return;
    attn_ctx ctx;
    CHECK_STATUS(attn_ctx_init(&ctx, isa, 2), ATTN_OK);
    if (print)
        printf("accuracy against float64 (rms; max), %s and PyTorch 1.13 bf16 unfused:\n"
               "  case  shape                                  path  out      dq       dk       dv       ;  out      "
               "dq       dk       dv\n", attn_isa_name(isa));
    char cs[16], key[64];
    for (const char *c = cases; *c;) {
        size_t len = strcspn(c, ",");
        snprintf(cs, sizeof cs, "%.*s", (int)len, c);
        c += len + (c[len] == ',');
        int B, H, Hkv, T, S, D, Dv;
        snprintf(key, sizeof key, "%s/dims", cs);
        const char *dims = attn_st_meta(&f, key);
        CHECK(dims && sscanf(dims, "%d,%d,%d,%d,%d,%d,%d", &B, &H, &Hkv, &T, &S, &D, &Dv) == 7);
        if (!dims) break;
        attn_sdpa_desc d;
        CHECK_STATUS(attn_sdpa_desc_init(&d, B, H, T, S, D, Dv), ATTN_OK);
        d.Hkv = Hkv;
        d.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
        d.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
        d.dtype = ATTN_DTYPE_BF16;
        if (!acc_case_mask(&f, cs, &d.mask, B, H, T, S)) break;
        const size_t n[4] = {(size_t)B * H * T * D, (size_t)B * Hkv * S * D, (size_t)B * Hkv * S * Dv,
                             (size_t)B * H * T * Dv};        /* q, k, v, out */
        const char *in_names[4] = {"q", "k", "v", "dout"}, *ref_names[4] = {"out", "dq", "dk", "dv"};
        const size_t in_n[4] = {n[0], n[1], n[2], n[3]}, ref_n[4] = {n[3], n[0], n[1], n[2]};
        uint16_t *in[4], *got[4];
        const float *ref[4];
        int have = 1;
        for (int i = 0; i < 4; i++) {
            const float *x = acc_f32(&f, cs, in_names[i], in_n[i], 1);
            ref[i] = acc_f32(&f, cs, ref_names[i], ref_n[i], 1);
            in[i] = malloc(2 * in_n[i] + 2);
            got[i] = calloc(ref_n[i] + 1, 2);
            have &= x && ref[i];
            for (size_t j = 0; x && j < in_n[i]; j++) in[i][j] = attn_bf16_from_f32(x[j]);   /* exact: bf16 values */
        }
        snprintf(key, sizeof key, "%s/torch_rms", cs);
        const attn_st_tensor *tr = attn_st_find(&f, key);
        snprintf(key, sizeof key, "%s/torch_max", cs);
        const attn_st_tensor *tm = attn_st_find(&f, key);
        have &= tr && tm && tr->nbytes == 4 * sizeof(double) && tm->nbytes == 4 * sizeof(double);
        CHECK(have);
        if (have) {
            float *stats = calloc((size_t)B * H * T * 2, sizeof(float));
            size_t wbytes;
            void *work = work_for(&ctx, &d, &wbytes);
            CHECK_STATUS(attn_sdpa_forward(&ctx, &d, got[0], stats, NULL, in[0], in[1], in[2], work, wbytes), ATTN_OK);
            CHECK_STATUS(attn_sdpa_backward(&ctx, &d, got[1], got[2], got[3], in[3], in[0], in[1], in[2], got[0], stats,
                                            work, wbytes),
                         ATTN_OK);
            double e[2][4];
            const double *torch_err[2] = {tr->data, tm->data};
            for (int i = 0; i < 4; i++) {
                float *x = malloc(sizeof(float) * (ref_n[i] + 1));
                to_f32(x, got[i], ref_n[i]);
                e[0][i] = acc_rms(x, ref[i], ref_n[i]);
                e[1][i] = acc_max(x, ref[i], ref_n[i]);
                free(x);
                for (int m = 0; m < 2; m++) {
                    const double allowed = fmax(2 * torch_err[m][i], ACC_FLOOR);
                    const double ratio = e[m][i] / allowed;
                    if (ratio > g_acc_worst[isa][m]) g_acc_worst[isa][m] = ratio;
                    if (!(ratio <= 1.0))
                        fprintf(stderr, "%s %s %s: %s error %.3e, PyTorch bf16's %.3e: more than twice\n",
                                attn_isa_name(isa), cs, ref_names[i], m ? "max" : "rms", e[m][i], torch_err[m][i]);
                    CHECK(ratio <= 1.0);
                }
            }
            if (print) {
                char shape[64];
                snprintf(shape, sizeof shape, "B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d", B, H, Hkv, T, S, D, Dv);
                for (int w = 0; w < 2; w++) {
                    const double *x0 = w ? torch_err[0] : e[0], *x1 = w ? torch_err[1] : e[1];
                    printf("  %-4s  %-37s  %-5s %.2e %.2e %.2e %.2e ;  %.2e %.2e %.2e %.2e\n", w ? "" : cs,
                           w ? "" : shape, w ? "torch" : "attn", x0[0], x0[1], x0[2], x0[3], x1[0], x1[1], x1[2], x1[3]);
                }
            }
            free(work);
            free(stats);
        }
        for (int i = 0; i < 4; i++) { free(in[i]); free(got[i]); }
    }
    printf("%s: bf16 accuracy within 2x PyTorch bf16's on every golden case: worst ratio to the bound %.2f (rms), "
           "%.2f (max)\n", attn_isa_name(isa), g_acc_worst[isa][0], g_acc_worst[isa][1]);
    attn_st_free(&f);
}

/* ---------------------------------------------------------------------------------------------------
 * Additive attention with bf16 compute (tests/golden/bf16_additive.safetensors, tools/golden/gen_bf16.py):
 * fp32 tensors holding bf16 values, the float64 reference, PyTorch's additive attention computed wholly in
 * bf16 and its error. On a path with bf16 units the bf16 compute must be within twice PyTorch's error
 * (floor 2^-9) for out and all six gradients, and must differ from the same path's fp32 compute (the
 * setting reaches the kernels); its rms error on out must be at least 4x the fp32 compute's on some case
 * (the products really are rounded). On every other path compute BF16 gives the fp32 bits.
 */
typedef struct add_run {
    float *x[7];                 /* out, dq, dk, dv, dwq, dwk, dwv */
} add_run;

static void add_run_free(add_run *r) {
    for (int i = 0; i < 7; i++) free(r->x[i]);
}

static int add_run_do(add_run *r, const attn_ctx *ctx, const attn_additive_desc *d, const float *const in[7],
                      const size_t n[7]) {
    for (int i = 0; i < 7; i++) r->x[i] = calloc(n[i] + 1, sizeof(float));
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_additive_workspace_size(ctx, d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_additive_workspace_size(ctx, d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    void *work = malloc(fw > bw ? fw : bw);
    int ok = attn_additive_forward(ctx, d, r->x[0], NULL, in[0], in[1], in[2], in[3], in[4], in[5], work, fw) ==
                 ATTN_OK &&
             attn_additive_backward(ctx, d, r->x[1], r->x[2], r->x[3], r->x[4], r->x[5], r->x[6], in[6], in[0], in[1],
                                    in[2], in[3], in[4], in[5], work, bw) == ATTN_OK;
    CHECK(ok);
    free(work);
    return ok;
}

static void check_additive(attn_isa isa) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/bf16_additive.safetensors", ATTN_GOLDEN_DIR);
    attn_st_file f;
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    const char *cases = attn_st_meta(&f, "cases");
    CHECK(cases != NULL);
    attn_ctx ctx;
    CHECK_STATUS(attn_ctx_init(&ctx, isa, 1), ATTN_OK);
    const int bf_path = isa == ATTN_ISA_AMX || isa == ATTN_ISA_AVX512BF16;
    static const char *const names[7] = {"out", "dq", "dk", "dv", "dwq", "dwk", "dwv"};
    double worst[2] = {0, 0}, best_gain = 0;
    int ncases = 0, ndiffer = 0;
    char cs[16], key[64];
    for (const char *c = cases ? cases : ""; *c;) {
        size_t len = strcspn(c, ",");
        snprintf(cs, sizeof cs, "%.*s", (int)len, c);
        c += len + (c[len] == ',');
        int B, T, S, Dq, Dk, Dv, Dh;
        snprintf(key, sizeof key, "%s/dims", cs);
        const char *dims = attn_st_meta(&f, key);
        CHECK(dims && sscanf(dims, "%d,%d,%d,%d,%d,%d,%d", &B, &T, &S, &Dq, &Dk, &Dv, &Dh) == 7);
        if (!dims) break;
        attn_additive_desc d;
        CHECK_STATUS(attn_additive_desc_init(&d, B, T, S, Dq, Dk, Dv, Dh), ATTN_OK);
        CHECK(d.compute == ATTN_DTYPE_F32);
        if (!acc_case_mask(&f, cs, &d.mask, B, 1, T, S)) break;
        /* q k v wq wk wv dout; the reference's out dq dk dv dwq dwk dwv */
        const size_t in_n[7] = {(size_t)B * T * Dq, (size_t)B * S * Dk, (size_t)B * S * Dv, (size_t)Dh * Dq,
                                (size_t)Dh * Dk, (size_t)Dh, (size_t)B * T * Dv};
        const size_t ref_n[7] = {in_n[6], in_n[0], in_n[1], in_n[2], in_n[3], in_n[4], in_n[5]};
        static const char *const in_names[7] = {"q", "k", "v", "wq", "wk", "wv", "dout"};
        const float *in[7], *ref[7];
        int have = 1;
        for (int i = 0; i < 7; i++) {
            in[i] = acc_f32(&f, cs, in_names[i], in_n[i], 1);
            ref[i] = acc_f32(&f, cs, names[i], ref_n[i], 1);
            have &= in[i] && ref[i];
        }
        snprintf(key, sizeof key, "%s/torch_rms", cs);
        const attn_st_tensor *tr = attn_st_find(&f, key);
        snprintf(key, sizeof key, "%s/torch_max", cs);
        const attn_st_tensor *tm = attn_st_find(&f, key);
        have &= tr && tm && tr->nbytes == 7 * sizeof(double) && tm->nbytes == 7 * sizeof(double);
        CHECK(have);
        if (!have) continue;
        attn_dtype got_type;
        CHECK_STATUS(attn_additive_compute_type(&ctx, &d, &got_type), ATTN_OK);
        CHECK(got_type == ATTN_DTYPE_F32);
        add_run f32 = {{0}}, bf = {{0}};
        add_run_do(&f32, &ctx, &d, in, ref_n);
        d.compute = ATTN_DTYPE_BF16;
        CHECK_STATUS(attn_additive_compute_type(&ctx, &d, &got_type), ATTN_OK);
        CHECK(got_type == (bf_path ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32));
        add_run_do(&bf, &ctx, &d, in, ref_n);
        int differ = 0;
        for (int i = 0; i < 7; i++) differ |= memcmp(f32.x[i], bf.x[i], sizeof(float) * ref_n[i]) != 0;
        if (!bf_path) CHECK(!differ);
        ncases++;
        ndiffer += differ;
        if (bf_path) {
            const double *torch_err[2] = {tr->data, tm->data};
            for (int i = 0; i < 7; i++) {
                const double e[2] = {acc_rms(bf.x[i], ref[i], ref_n[i]), acc_max(bf.x[i], ref[i], ref_n[i])};
                for (int m = 0; m < 2; m++) {
                    const double ratio = e[m] / fmax(2 * torch_err[m][i], ACC_FLOOR);
                    if (ratio > worst[m]) worst[m] = ratio;
                    if (!(ratio <= 1.0))
                        fprintf(stderr, "additive %s %s %s: %s error %.3e, PyTorch bf16's %.3e: more than twice\n",
                                attn_isa_name(isa), cs, names[i], m ? "max" : "rms", e[m], torch_err[m][i]);
                    CHECK(ratio <= 1.0);
                }
            }
            const double e32 = acc_rms(f32.x[0], ref[0], ref_n[0]), e16 = acc_rms(bf.x[0], ref[0], ref_n[0]);
            if (e32 > 0 && e16 / e32 > best_gain) best_gain = e16 / e32;
        }
        add_run_free(&f32);
        add_run_free(&bf);
    }
    CHECK(ncases == 10);
    if (bf_path) {
        CHECK(ndiffer >= ncases - 1);     /* one case has a single key: weights of 1, nothing to round */
        CHECK(best_gain >= 4.0);
        printf("%s: additive bf16 compute within 2x PyTorch bf16's on every golden case: worst ratio to the bound "
               "%.2f (rms), %.2f (max); %d of %d cases differ from fp32 compute, out's error up to %.0fx fp32's\n",
               attn_isa_name(isa), worst[0], worst[1], ndiffer, ncases, best_gain);
    } else {
        printf("%s: additive bf16 compute is fp32 compute, bit for bit (%d cases)\n", attn_isa_name(isa), ncases);
    }
    attn_st_free(&f);
}

/* The fp32 forward of fp32 tensors with compute bf16 asked for, T query rows, on path isa (1 thread). */
static float *forward_compute_bf16(attn_isa isa, int T, int window) {
    const int H = 2, S = 96, D = 32;
    attn_ctx c;
    attn_sdpa_desc d;
    if (attn_ctx_init(&c, isa, 1) != ATTN_OK || attn_sdpa_desc_init(&d, 1, H, T, S, D, D) != ATTN_OK) return NULL;
    d.compute = ATTN_DTYPE_BF16;
    if (window) { d.mask.window = 1; d.mask.window_left = window; d.mask.window_right = window; }
    const size_t nq = (size_t)H * T * D, nk = (size_t)H * S * D;
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    float *out = malloc(nq * sizeof *out), *stats = malloc((size_t)H * T * 2 * sizeof *stats);
    size_t wb = 0;
    void *w = NULL;
    if (q && k && v && out && stats && attn_sdpa_workspace_size(&c, &d, ATTN_PASS_FORWARD, &wb) == ATTN_OK)
        w = malloc(wb ? wb : 1);
    int ok = w != NULL;
    if (ok) {
        tu_fill(q, nq, 11); tu_fill(k, nk, 12); tu_fill(v, nk, 13);
        ok = attn_sdpa_forward(&c, &d, out, stats, NULL, q, k, v, w, wb) == ATTN_OK;
    }
    free(q); free(k); free(v); free(stats); free(w);
    if (!ok) { free(out); return NULL; }
    return out;
}

/* attn_sdpa_compute_type says what each path multiplies in, and it is the truth: where it says fp32 for a
 * bf16-compute request, the AMX path gives the AVX-512 path's fp32 result bit for bit; where it says bf16,
 * it does not. */
static void check_compute_type(const attn_isa *paths, size_t npaths) {
    attn_sdpa_desc d;
    attn_dtype ct;
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 2, 64, 96, 32, 32), ATTN_OK);
    CHECK_STATUS(attn_sdpa_compute_type(NULL, &d, ATTN_PASS_FORWARD, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_sdpa_compute_type(NULL, &d, ATTN_PASS_COUNT, &ct), ATTN_ERR_ARG);
    for (size_t pi = 0; pi < npaths; pi++) {
        attn_ctx c;
        if (attn_ctx_init(&c, paths[pi], 1) != ATTN_OK) continue;
        const int amx = paths[pi] == ATTN_ISA_AMX, bf = paths[pi] == ATTN_ISA_AVX512BF16;
        struct { int T, bf16_tensors, window, pass; int want_bf16; int compute; } cases[] = {
            {64, 0, 0, ATTN_PASS_FORWARD, 0, 0},           /* fp32, nothing asked: fp32 everywhere */
            {64, 0, 0, ATTN_PASS_FORWARD, amx || bf, 1}, /* fp32 tensors, bf16 compute: tiles; AVX512-BF16 */
            {64, 0, 0, ATTN_PASS_BACKWARD, amx || bf, 1},
            {8, 0, 0, ATTN_PASS_FORWARD, amx || bf, 1}, /* 5 to 15 rows: AVX512-BF16's blocks on bf16 copies */
            {8, 0, 0, ATTN_PASS_BACKWARD, amx || bf, 1},
            {15, 0, 0, ATTN_PASS_BACKWARD, amx || bf, 1},
            {16, 0, 0, ATTN_PASS_FORWARD, amx || bf, 1}, /* tiles from 16 rows with AMX */
            {4, 0, 0, ATTN_PASS_FORWARD, 0, 1},         /* decoding: fp32 (the cache is not rounded each step) */
            {4, 0, 0, ATTN_PASS_BACKWARD, 0, 1},
            {8, 0, 8, ATTN_PASS_FORWARD, 0, 1},         /* a sparse mask part: fp32 */
            {64, 1, 0, ATTN_PASS_FORWARD, amx || bf, 0},   /* tiles; vdpbf16ps blocks */
            {64, 1, 0, ATTN_PASS_BACKWARD, amx || bf, 0},  /* tiles; vdpbf16ps */
            {8, 1, 0, ATTN_PASS_FORWARD, amx || bf, 0},    /* too few rows for tiles: AVX512-BF16's blocks */
            {8, 1, 0, ATTN_PASS_BACKWARD, amx || bf, 0},   /* AVX512-BF16's backward on both */
            {1, 1, 0, ATTN_PASS_FORWARD, amx || bf, 0},    /* decoding rows read bf16 K/V */
            {1, 1, 0, ATTN_PASS_BACKWARD, amx || bf, 0},
            {64, 1, 8, ATTN_PASS_FORWARD, 0, 0},           /* a sparse mask part: fp32 on copies */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 2, cases[i].T, 96, 32, 32), ATTN_OK);
            if (cases[i].bf16_tensors) d.dtype = ATTN_DTYPE_BF16;
            if (cases[i].compute) d.compute = ATTN_DTYPE_BF16;
            if (cases[i].window) {
                d.mask.window = 1;
                d.mask.window_left = d.mask.window_right = cases[i].window;
            }
            ct = (attn_dtype)-1;
            CHECK_STATUS(attn_sdpa_compute_type(&c, &d, (attn_pass)cases[i].pass, &ct), ATTN_OK);
            if (ct != (cases[i].want_bf16 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32)) {
                fprintf(stderr, "  compute type on %s, case %zu: %d\n", attn_isa_name(paths[pi]), i, (int)ct);
                CHECK(0);
            }
        }
    }
    attn_ctx c;
    if (attn_ctx_init(&c, ATTN_ISA_AMX, 1) != ATTN_OK || attn_ctx_init(&c, ATTN_ISA_AVX512, 1) != ATTN_OK) return;
    const int Ts[3] = {8, 64, 64}, windows[3] = {0, 0, 8};
    for (int i = 0; i < 3; i++) {
        float *a = forward_compute_bf16(ATTN_ISA_AMX, Ts[i], windows[i]);
        float *b = forward_compute_bf16(ATTN_ISA_AVX512, Ts[i], windows[i]);
        CHECK(a && b);
        attn_sdpa_desc_init(&d, 1, 2, Ts[i], 96, 32, 32);
        d.compute = ATTN_DTYPE_BF16;
        d.mask.window = windows[i] != 0;
        d.mask.window_left = d.mask.window_right = windows[i];
        attn_ctx_init(&c, ATTN_ISA_AMX, 1);
        CHECK_STATUS(attn_sdpa_compute_type(&c, &d, ATTN_PASS_FORWARD, &ct), ATTN_OK);
        const int same = a && b && memcmp(a, b, (size_t)2 * Ts[i] * 32 * sizeof(float)) == 0;
        if (same != (ct == ATTN_DTYPE_F32)) {
            fprintf(stderr, "  compute type %s but AMX %s AVX-512 (T=%d window %d)\n",
                    ct == ATTN_DTYPE_F32 ? "f32" : "bf16", same ? "equals" : "differs from", Ts[i], windows[i]);
            CHECK(0);
        }
        free(a); free(b);
    }
}

static const tcase g_fixed[] = {
    /*  B  H Hkv  T    S    D   Dv  cau val all bia str drop  qs */
    {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0.0f, 1.0f},
    {1, 1, 1, 1, 37, 64, 64, 0, 0, 0, 0, 0, 0.0f, 1.0f},
    {1, 2, 2, 37, 1, 32, 32, 0, 0, 0, 0, 0, 0.0f, 1.0f},
    {2, 4, 2, 70, 70, 64, 64, 1, 0, 0, 0, 0, 0.0f, 2.0f},
    {1, 2, 1, 130, 97, 80, 96, 1, 0, 0, 0, 1, 0.0f, 1.0f},
    {1, 2, 2, 50, 130, 96, 48, 1, 1, 0, 0, 0, 0.0f, 1.0f},
    {2, 2, 2, 33, 65, 128, 128, 0, 2, 0, 0, 0, 0.0f, 1.0f},
    {2, 3, 3, 17, 29, 13, 7, 0, 0, 1, 0, 0, 0.0f, 1.0f},
    {2, 2, 2, 19, 23, 24, 40, 0, 0, 2, 0, 1, 0.0f, 1.0f},
    {1, 2, 2, 21, 40, 130, 3, 0, 0, 0, 1, 0, 0.0f, 1.0f},
    {2, 2, 1, 45, 45, 32, 32, 0, 0, 0, 0, 0, 0.3f, 1.0f},
    {2, 4, 1, 31, 47, 33, 31, 1, 2, 1, 1, 1, 0.25f, 3.0f},
    {1, 1, 1, 200, 200, 64, 64, 1, 0, 0, 0, 0, 0.0f, 8.0f},
    {1, 1, 1, 100, 3, 16, 16, 1, 0, 0, 0, 0, 0.0f, 1.0f},   /* T > S causal: leading rows fully masked */
    {1, 2, 1, 40, 300, 64, 64, 1, 0, 0, 0, 0, 0.0f, 1.0f},
    {1, 4, 1, 1, 1500, 37, 70, 0, 0, 0, 0, 0, 0.0f, 2.0f},  /* T = 1, GQA, many key blocks, D/Dv tails */
    {2, 2, 2, 3, 700, 64, 64, 1, 2, 1, 1, 0, 0.2f, 3.0f},   /* every mask and dropout over several blocks */
    {1, 2, 2, 2, 1, 8, 8, 0, 0, 0, 1, 0, 0.0f, 1.0f},       /* one key, its bias -inf or not */
    {1, 2, 1, 64, 300, 64, 64, 0, 0, 0, 0, 0, 0.0f, 2000.0f}, /* scores past 1000: exponents by subtraction */
    {1, 2, 2, 70, 200, 48, 40, 1, 2, 0, 1, 1, 0.1f, 2000.0f},  /* the same with masks, bias and dropout */
    /* decoding (T <= 4: the rows paths; on AVX512-BF16 and AMX, bf16 K/V read directly) */
    {1, 8, 2, 1, 1000, 128, 128, 0, 0, 0, 0, 0, 0.0f, 2000.0f}, /* logits past 1000: the canonical max */
    {2, 6, 2, 4, 517, 65, 33, 1, 2, 2, 1, 1, 0.2f, 2.0f},     /* every mask, dropout, strided, odd D and Dv */
    {1, 3, 3, 2, 300, 96, 160, 0, 1, 0, 0, 0, 0.0f, 1.0f},    /* MHA: packs of 2 rows; Dv past 128 */
    {1, 5, 1, 1, 33, 17, 15, 0, 0, 1, 0, 0, 0.0f, 1.0f},      /* a pack of 1 after one of 4 */
    /* whole key blocks after the first on AMX: one read each, and a second where the max moves past mu */
    {1, 2, 1, 80, 520, 64, 64, 0, 0, 0, 0, 0, 0.0f, 4.0f},
    /* AVX512-BF16's block kernel (T > 4; on AMX too below 16 rows): T = 5 against one key, odd D; a
     * last block of 5 rows, every mask, GQA, strided, dropout, odd D and Dv; a last block of 1 row (by
     * rows) after a whole one, an odd last key block, D past 128 */
    {1, 2, 1, 5, 1, 7, 9, 0, 0, 0, 0, 1, 0.0f, 1.0f},
    {2, 4, 2, 69, 131, 67, 13, 1, 2, 1, 1, 1, 0.2f, 2.0f},
    {1, 2, 2, 65, 257, 130, 70, 0, 1, 0, 0, 0, 0.0f, 1.0f},
    /* logits near 1e9: the backward gets the weights right only when m is the canonical score bit for bit;
     * vdpbf16ps sums in another order, above it in a few rows of a hundred (block kernel, then rows) */
    {1, 1, 1, 200, 4, 64, 64, 0, 0, 0, 0, 0, 0.0f, 1e9f},
    {2, 16, 2, 4, 4, 64, 64, 0, 0, 0, 0, 0, 0.0f, 1e9f},
    /* few rows per head: a group's heads share the block's lanes (64 rows, then 4 by rows) */
    {1, 2, 1, 34, 77, 40, 24, 1, 0, 1, 1, 1, 0.1f, 1.0f},
    /* logits near 1e9 on tiles with odd D and Dv, strided, causal with rows that see no key: dP - Δ must be
     * exactly 0 where a row's weight is one key's (Δ on dP's own tile arithmetic) */
    {1, 2, 1, 40, 7, 33, 45, 1, 0, 0, 0, 1, 0.0f, 1e9f},
};

int main(int argc, char **argv) {
    const int refused = argc > 1 && strcmp(argv[1], "refused") == 0;
    const attn_isa paths[] = {ATTN_ISA_REF,    ATTN_ISA_SCALAR,     ATTN_ISA_AVX2,
                              ATTN_ISA_AVX512, ATTN_ISA_AVX512BF16, ATTN_ISA_AMX};
    int bad = 0;

    /* the bf16 conversions round to nearest even and keep NaN */
    CHECK(attn_bf16_from_f32(1.0f) == 0x3f80 && attn_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(attn_bf16_from_f32(1.00390625f) == 0x3f80);          /* halfway: to even */
    CHECK(attn_bf16_from_f32(1.01171875f) == 0x3f82);          /* halfway: to even (up) */
    CHECK(isnan(attn_bf16_to_f32(attn_bf16_from_f32(NAN))));
    CHECK(attn_bf16_from_f32(INFINITY) == 0x7f80 && attn_bf16_from_f32(-INFINITY) == 0xff80);

    if (refused) {
        /* ATTN_NO_AMX=1: the path is unsupported, AUTO falls back, bf16 still runs (by conversion) */
        const char *env = getenv("ATTN_NO_AMX");
        CHECK(env && strcmp(env, "1") == 0);
        CHECK(!attn_cpu_supports(ATTN_ISA_AMX));
        attn_ctx c;
        CHECK_STATUS(attn_ctx_init(&c, ATTN_ISA_AMX, 1), ATTN_ERR_UNSUPPORTED);
        CHECK_STATUS(attn_set_isa(ATTN_ISA_AMX), ATTN_ERR_UNSUPPORTED);
        CHECK_STATUS(attn_ctx_init(&c, ATTN_ISA_AUTO, 1), ATTN_OK);
        CHECK(c.isa != ATTN_ISA_AMX);
        printf("AMX refused: auto is %s\n", attn_isa_name(c.isa));
        for (int i = 0; i < 4; i++) bad += !run_case(ATTN_ISA_AUTO == c.isa ? ATTN_ISA_REF : c.isa, &g_fixed[11 + i],
                                                      "refused");
        /* on a CPU with AVX512-BF16 that is what auto gives: its decoding kernel, and bitwise identity */
        attn_ctx bf;
        if (attn_ctx_init(&bf, ATTN_ISA_AVX512BF16, 1) == ATTN_OK) {
            CHECK(c.isa == ATTN_ISA_AVX512BF16);
            for (int i = 20; i < 24; i++) bad += !run_case(c.isa, &g_fixed[i], "refused");
            for (int i = 25; i < 31; i++) bad += !run_case(c.isa, &g_fixed[i], "refused");   /* its blocks */
            check_threads(c.isa);
            check_own_backward(c.isa);
            check_accuracy(c.isa, 0);
        }
        if (bad) fprintf(stderr, "test_bf16 refused: %d cases off\n", bad);
        return tu_finish("test_bf16 (AMX refused)");
    }

    attn_isa parsed;
    CHECK_STATUS(attn_isa_parse("amx", &parsed), ATTN_OK);
    CHECK(parsed == ATTN_ISA_AMX && strcmp(attn_isa_name(ATTN_ISA_AMX), "amx") == 0);
    CHECK_STATUS(attn_isa_parse("avx512bf16", &parsed), ATTN_OK);
    CHECK(parsed == ATTN_ISA_AVX512BF16);
    {   /* out-of-range types are refused */
        attn_sdpa_desc d;
        CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 1, 2, 2, 4, 4), ATTN_OK);
        CHECK(d.dtype == ATTN_DTYPE_F32 && d.compute == ATTN_DTYPE_F32);
        d.dtype = ATTN_DTYPE_COUNT;
        CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
        d.dtype = ATTN_DTYPE_F32;
        d.compute = (attn_dtype)-1;
        CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    }
    {   /* the additive descriptor's compute too */
        attn_additive_desc a;
        CHECK_STATUS(attn_additive_desc_init(&a, 1, 1, 2, 3, 3, 3, 4), ATTN_OK);
        a.compute = ATTN_DTYPE_F64;
        CHECK_STATUS(attn_additive_validate(&a), ATTN_ERR_ARG);
        a.compute = ATTN_DTYPE_BF16;
        CHECK_STATUS(attn_additive_validate(&a), ATTN_OK);
    }

    {   /* a shape whose workspace does not fit in size_t is refused, not wrapped, on every path */
        attn_sdpa_desc d;
        CHECK_STATUS(attn_sdpa_desc_init(&d, 1 << 24, 1 << 24, 64, 64, 64, 64), ATTN_OK);
        d.dtype = ATTN_DTYPE_BF16;
        for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
            attn_ctx c;
            size_t n = 0;
            if (attn_ctx_init(&c, paths[pi], 2) != ATTN_OK) continue;
            CHECK_STATUS(attn_sdpa_workspace_size(&c, &d, ATTN_PASS_FORWARD, &n), ATTN_ERR_SIZE);
            CHECK_STATUS(attn_sdpa_workspace_size(&c, &d, ATTN_PASS_BACKWARD, &n), ATTN_ERR_SIZE);
        }
    }

    check_compute_type(paths, sizeof paths / sizeof paths[0]);
    check_amx_own_decoding();

    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        const attn_isa isa = paths[pi];
        attn_ctx probe;
        if (attn_ctx_init(&probe, isa, 1) != ATTN_OK) {
            printf("%s: not supported here, skipped\n", attn_isa_name(isa));
            continue;
        }
        const int heavy = isa == ATTN_ISA_AMX || isa == ATTN_ISA_AVX512 || isa == ATTN_ISA_AVX512BF16;
        for (size_t i = 0; i < sizeof g_fixed / sizeof g_fixed[0]; i++) {
            if (!heavy && i % 3 != 0) continue;          /* the slow paths take a third */
            bad += !run_case(isa, &g_fixed[i], "fixed");
        }
        const int nrand = isa == ATTN_ISA_AMX ? 40 : heavy ? 12 : 4;
        for (int i = 0; i < nrand; i++) {
            tcase c;
            c.Hkv = rnd_int(1, 2);
            c.H = c.Hkv * rnd_int(1, 3);
            c.B = rnd_int(1, 2);
            c.T = rnd_int(0, 4) == 0 ? 1 : rnd_int(1, 90);
            if ((isa == ATTN_ISA_AVX512BF16 || isa == ATTN_ISA_AMX) && i % 2 == 0) {
                /* their own decoding kernels; groups up to 6 heads, so up to 24 rows per kv head (AMX: packs
                 * of up to 16) */
                c.T = rnd_int(1, 4);
                c.H = c.Hkv * rnd_int(1, 6);
            }
            c.S = rnd_int(0, 4) == 0 ? 1 : rnd_int(1, 300);
            c.D = rnd_int(1, 130);
            c.Dv = rnd_int(0, 1) ? c.D : rnd_int(1, 130);
            c.causal = rnd_int(0, 1);
            c.valid = rnd_int(0, 3) == 0 ? rnd_int(1, 2) : 0;
            c.allow = rnd_int(0, 3) == 0 ? rnd_int(1, 2) : 0;
            c.bias = rnd_int(0, 3) == 0;
            c.strided = rnd_int(0, 1);
            c.dropout = rnd_int(0, 4) == 0 ? 0.2f : 0.0f;
            c.qscale = (float)rnd_int(1, 4);
            bad += !run_case(isa, &c, "random");
        }
        if (isa != ATTN_ISA_REF) check_threads(isa);
        if (isa == ATTN_ISA_AVX512BF16 || isa == ATTN_ISA_AMX) check_own_backward(isa);
        if (isa == ATTN_ISA_AVX512BF16 || isa == ATTN_ISA_AMX) check_short_fp32(isa);
        if (isa != ATTN_ISA_REF) check_weights(isa);
        if (isa != ATTN_ISA_REF) check_hidden_nonfinite(isa);
        check_accuracy(isa, isa == ATTN_ISA_AMX || isa == ATTN_ISA_AVX512BF16);
        check_additive(isa);
        check_masked_rows(isa);
        if (isa == ATTN_ISA_AVX512BF16) check_scores_counted(isa);   /* the AMX path's own kernels count nothing */
    }
    if (bad) fprintf(stderr, "test_bf16: %d cases off\n", bad);
    return tu_finish("test_bf16");
}
