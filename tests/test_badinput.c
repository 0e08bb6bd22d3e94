/*
 * test_badinput.c — every public call of attn.h's mechanisms with bad arguments: NULL pointers, zero,
 * negative and oversized sizes, H % Hkv != 0, overlapping output strides, negative strides, missing or
 * short workspaces, NaN scale, dropout outside [0,1), bad masks. Each returns the documented status,
 * writes nothing and nothing crashes (run it under -DATTN_SANITIZE=ON too).
 *
 * Then inputs holding NaN or Inf: the calls return ATTN_OK and the result is defined as follows
 * (checked below):
 *   - a NaN (or +Inf) reaching a row's scores makes that row's output, stats and gradients NaN; other rows
 *     are untouched (finite);
 *   - a score of -Inf (from the bias, or overflow) excludes its key, like a mask; a row with no key left
 *     is a fully masked row: zeros and stats (-Inf, 0);
 *   - values (V) of keys the mask excludes are never read into the sum: NaN or Inf there changes nothing;
 *   - attn_softmax: any NaN or +Inf gives NaN everywhere; all -Inf gives zeros.
 */
#include "attn.h"
#include "testutil.h"

#include <stdint.h>
#include <float.h>
#include <string.h>

#define MAXDIM (1 << 24)

/* A valid descriptor: B=2 H=2 T=3 S=4 D=3 Dv=2, contiguous. */
static attn_sdpa_desc good(void) {
    attn_sdpa_desc d;
    attn_sdpa_desc_init(&d, 2, 2, 3, 4, 3, 2);
    return d;
}
enum { NQ = 2 * 2 * 3 * 3, NK = 2 * 2 * 4 * 3, NV = 2 * 2 * 4 * 2, NO = 2 * 2 * 3 * 2, NL = 2 * 2 * 3 * ATTN_SDPA_STATS, NW = 2 * 2 * 3 * 4 };

static float q[NQ], k[NK], v[NV], out[NO], stats[NL], w[NW], dq[NQ], dk[NK], dv[NV], dout[NO];
static unsigned char *work;                      /* the workspace, grown by need() */
static size_t work_cap;

/* Makes work hold at least n bytes plus 16 (some calls pass work + a few bytes, unaligned). */
static void need(size_t n) {
    if (n + 16 <= work_cap) return;
    free(work);
    work_cap = n + 16;
    work = malloc(work_cap);
}

static void fill(void) {
    for (int i = 0; i < NQ; i++) q[i] = (float)((i * 7) % 11) / 11 - 0.5f;
    for (int i = 0; i < NK; i++) k[i] = (float)((i * 5) % 13) / 13 - 0.5f;
    for (int i = 0; i < NV; i++) v[i] = (float)((i * 3) % 7) / 7 - 0.5f;
    for (int i = 0; i < NO; i++) dout[i] = (float)((i * 9) % 5) / 5 - 0.5f;
}

static int all_equal(const float *x, int n, float val) {
    for (int i = 0; i < n; i++)
        if (!(x[i] == val)) return 0;
    return 1;
}

static void test_sdpa_desc(void) {
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(NULL, 1, 1, 1, 1, 1, 1), ATTN_ERR_NULL);
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 1, 1, 1, 1, 1), ATTN_OK);
    for (int which = 0; which < 6; which++) {
        const int bad[3] = {0, -1, MAXDIM + 1};
        for (int j = 0; j < 3; j++) {
            int s[6] = {2, 2, 3, 4, 3, 2};
            s[which] = bad[j];
            CHECK_STATUS(attn_sdpa_desc_init(&d, s[0], s[1], s[2], s[3], s[4], s[5]), ATTN_ERR_SIZE);
        }
    }
    /* every size at the limit at once: the strides would overflow */
    CHECK_STATUS(attn_sdpa_desc_init(&d, MAXDIM, MAXDIM, MAXDIM, MAXDIM, MAXDIM, MAXDIM), ATTN_ERR_SIZE);
    d = good();
    CHECK(d.Hkv == 2 && fabsf(d.scale - 1 / sqrtf(3)) < 1e-7f && d.dropout == 0 && d.mask.allow == NULL);
    CHECK(d.q.t == 3 && d.q.h == 9 && d.q.b == 18 && d.out.t == 2 && d.out.b == 12);

    CHECK_STATUS(attn_sdpa_validate(NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);

    /* sizes */
    int *fields[7] = {&d.B, &d.H, &d.Hkv, &d.T, &d.S, &d.D, &d.Dv};
    for (int i = 0; i < 7; i++) {
        const int bad[3] = {0, -5, MAXDIM + 1};
        for (int j = 0; j < 3; j++) {
            d = good();
            *fields[i] = bad[j];
            CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_SIZE);
        }
        d = good();
    }
    d = good(); d.H = 3; d.Hkv = 2;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_SHAPE);
    d = good(); d.H = 4; d.Hkv = 3;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_SHAPE);

    /* scale and dropout */
    d = good(); d.scale = NAN;       CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d = good(); d.scale = INFINITY;  CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d = good(); d.scale = 0;         CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d = good(); d.scale = -2;        CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d = good(); d.dropout = 1.0f;    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d = good(); d.dropout = -0.1f;   CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d = good(); d.dropout = NAN;     CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d = good(); d.dropout = 0.999f;  CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);

    /* strides: negative anywhere; input rows overlapping; outputs overlapping */
    attn_layout *lays[4] = {&d.q, &d.k, &d.v, &d.out};
    for (int i = 0; i < 4; i++)
        for (int axis = 0; axis < 3; axis++) {
            d = good();
            attn_layout *l = lays[i];
            int64_t *st = axis == 0 ? &l->b : axis == 1 ? &l->h : &l->t;
            *st = -1;
            CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);
        }
    d = good(); d.q.t = 2;           CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);  /* < D */
    d = good(); d.k.t = 0;           CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);   /* broadcast rows, as the header says */
    {   /* ... for the forward only: the backward's dk would have overlapping rows */
        size_t wb = 0;
        CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &wb), ATTN_OK);
        need(wb);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, wb), ATTN_ERR_STRIDE);
    }
    d = good(); d.v.t = 1;           CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);
    d = good(); d.q.b = 0; d.k.h = 0; d.v.b = 0;                                           /* broadcast */
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d = good(); d.T = 1; d.q.t = 0; d.out.t = 0;                                           /* one row */
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d = good(); d.out.t = 1;         CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);  /* rows overlap */
    d = good(); d.out.b = 0;         CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);  /* broadcast out */
    d = good(); d.out.h = d.out.t;   CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);  /* h and t alias */
    d = good(); d.out.b = 6;         CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);  /* b inside h */
    d = good(); d.out = (attn_layout){12, 2, 4};                                           /* (B,T,H,Dv) */
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d = good(); d.B = 3; d.out.b = INT64_MAX / 2;                                          /* overflows */
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);
    d = good(); d.q.h = INT64_MAX;   CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);

    /* masks */
    int32_t lens[6] = {1, 2, 3, 4, 5, 6}, neg[6] = {1, 2, -1, 4, 5, 6};
    d = good(); d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_NULL);                                   /* lens NULL */
    d.mask.valid_lens = lens;        CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);          /* 5, 6 > S: fine */
    d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_QUERY;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d.mask.valid_lens = neg;         CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);     /* lens[2] < 0 */
    d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);                                         /* only lens[0..1] read */
    d.mask.valid_lens_kind = ATTN_VALID_LENS_COUNT;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.valid_lens_kind = (attn_valid_lens_kind)-1;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    uint8_t allow[12] = {1};
    float bias[12] = {0};
    d = good(); d.mask.allow = allow; d.mask.allow_stride[2] = 4;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d.mask.allow_stride[1] = -4;     CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);
    d = good(); d.mask.bias = bias; d.mask.bias_stride[2] = 4;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d.mask.bias_stride[0] = -1;      CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);
    d = good(); d.mask.bias_stride[0] = -1;                                                /* not read: bias NULL */
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
}

/* The calls that run: pointers, workspace; on every path built in. */
static void test_sdpa_calls(void) {
    attn_sdpa_desc d = good();
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, NULL, ATTN_PASS_FORWARD, &fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_COUNT, &fw), ATTN_ERR_ARG);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, (attn_pass)-1, &fw), ATTN_ERR_ARG);
    d.H = 3;
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_ERR_SHAPE);
    d = good();

    for (int isa = ATTN_ISA_REF; isa < ATTN_ISA_COUNT; isa++) {
        if (attn_set_isa((attn_isa)isa) != ATTN_OK) continue;
        printf("path %s\n", attn_isa_name((attn_isa)isa));
        fill();
        CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
        CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
        CHECK(fw > 0 && bw > 0);
        need(fw > bw ? fw : bw);
        printf("  workspace: forward %zu bytes, backward %zu bytes\n", fw, bw);

        /* forward: required pointers, workspace; nothing written on error */
        for (int i = 0; i < NO; i++) out[i] = 42;
        CHECK_STATUS(attn_sdpa_forward(NULL, NULL, out, stats, w, q, k, v, work, fw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, NULL, stats, w, q, k, v, work, fw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, NULL, k, v, work, fw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, NULL, v, work, fw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, k, NULL, work, fw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, k, v, NULL, fw), ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, k, v, NULL, 0), ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, k, v, work, 0), ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, k, v, work, fw - 1), ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, NULL, q, k, v, work, fw - 1), ATTN_ERR_WORKSPACE);
        attn_sdpa_desc bad = d;
        bad.dropout = 1.0f;
        CHECK_STATUS(attn_sdpa_forward(NULL, &bad, out, stats, w, q, k, v, work, fw), ATTN_ERR_ARG);
        bad = d;
        bad.out.t = 0;
        CHECK_STATUS(attn_sdpa_forward(NULL, &bad, out, stats, w, q, k, v, work, fw), ATTN_ERR_STRIDE);
        CHECK(all_equal(out, NO, 42));
        /* and the good calls: with and without stats and weights, an unaligned workspace */
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, NULL, NULL, q, k, v, work, fw), ATTN_OK);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, NULL, q, k, v, work + 3, fw), ATTN_OK);
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, w, q, k, v, work + 1, fw), ATTN_OK);
        CHECK(!all_equal(out, NO, 42));

        /* backward: every pointer required (stats too); workspace; gradients' layouts must not overlap */
        memset(dq, 0, sizeof dq); memset(dk, 0, sizeof dk); memset(dv, 0, sizeof dv);
        CHECK_STATUS(attn_sdpa_backward(NULL, NULL, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, NULL, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, NULL, dv, dout, q, k, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, NULL, dout, q, k, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, NULL, q, k, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, NULL, k, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, NULL, v, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, NULL, out, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, NULL, stats, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, NULL, work, bw), ATTN_ERR_NULL);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, NULL, bw), ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw - 1), ATTN_ERR_WORKSPACE);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, 0), ATTN_ERR_WORKSPACE);
        bad = d;
        bad.k.b = 0;                                     /* a broadcast K has no dK layout */
        CHECK_STATUS(attn_sdpa_backward(NULL, &bad, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_ERR_STRIDE);
        bad = d;
        bad.Hkv = 0;
        CHECK_STATUS(attn_sdpa_backward(NULL, &bad, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_ERR_SIZE);
        CHECK(all_equal(dq, NQ, 0) && all_equal(dk, NK, 0) && all_equal(dv, NV, 0));
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work + 5, bw), ATTN_OK);
        CHECK(!all_equal(dq, NQ, 0));
    }
    attn_set_isa(ATTN_ISA_AUTO);
}

static void test_additive(void) {
    attn_additive_desc d, g;
    CHECK_STATUS(attn_additive_desc_init(NULL, 1, 1, 1, 1, 1, 1, 1), ATTN_ERR_NULL);
    for (int which = 0; which < 7; which++) {
        const int bad[3] = {0, -1, MAXDIM + 1};
        for (int j = 0; j < 3; j++) {
            int s[7] = {2, 3, 4, 3, 3, 2, 4};
            s[which] = bad[j];
            CHECK_STATUS(attn_additive_desc_init(&d, s[0], s[1], s[2], s[3], s[4], s[5], s[6]), ATTN_ERR_SIZE);
        }
    }
    CHECK_STATUS(attn_additive_desc_init(&d, MAXDIM, MAXDIM, MAXDIM, 1, 1, 1, MAXDIM), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_additive_desc_init(&g, 2, 3, 4, 3, 3, 2, 4), ATTN_OK);
    CHECK(g.dropout == 0 && g.mask.valid_lens_kind == ATTN_VALID_LENS_NONE);
    CHECK_STATUS(attn_additive_validate(NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_validate(&g), ATTN_OK);
    d = g; d.dropout = 1.0f;  CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_ARG);
    d = g; d.dropout = -0.1f; CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_ARG);
    d = g; d.dropout = NAN;   CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_ARG);
    d = g; d.Dh = 0;          CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_SIZE);
    d = g; d.Dq = -3;         CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_SIZE);
    int32_t neg[2] = {3, -2};
    d = g; d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_NULL);
    d.mask.valid_lens = neg;  CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_ARG);
    d = g; d.mask.valid_lens_kind = (attn_valid_lens_kind)9;
    CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_ARG);
    uint8_t allow[12] = {0};
    d = g; d.mask.allow = allow; d.mask.allow_stride[2] = -4;
    CHECK_STATUS(attn_additive_validate(&d), ATTN_ERR_STRIDE);

    size_t fw, bw;
    CHECK_STATUS(attn_additive_workspace_size(NULL, NULL, ATTN_PASS_FORWARD, &fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_workspace_size(NULL, &g, ATTN_PASS_FORWARD, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_workspace_size(NULL, &g, (attn_pass)7, &fw), ATTN_ERR_ARG);
    d = g; d.T = 0;
    CHECK_STATUS(attn_additive_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_additive_workspace_size(NULL, &g, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_additive_workspace_size(NULL, &g, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    CHECK(fw > 0 && bw > 0);
    need(fw > bw ? fw : bw);

    /* q (2,3,3) k (2,4,3) v (2,4,2) wq (4,3) wk (4,3) wv (4); out (2,3,2) */
    float aq[18], ak[24], av[16], wq[12], wk[12], wv[4], ao[12], aw[24], adout[12];
    float gq[18] = {0}, gk[24] = {0}, gv[16] = {0}, gwq[12] = {0}, gwk[12] = {0}, gwv[4] = {0};
    for (int i = 0; i < 24; i++) {
        if (i < 18) aq[i] = (float)(i % 5) / 5;
        ak[i] = (float)(i % 7) / 7;
        if (i < 16) av[i] = (float)(i % 3);
        if (i < 12) { wq[i] = (float)(i % 4) / 4 - 0.3f; wk[i] = 0.1f * (float)(i % 3); adout[i] = 1; ao[i] = 42; }
        if (i < 4) wv[i] = 1.0f - 0.5f * (float)i;
    }
    CHECK_STATUS(attn_additive_forward(NULL, NULL, ao, aw, aq, ak, av, wq, wk, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, NULL, aw, aq, ak, av, wq, wk, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, NULL, ak, av, wq, wk, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, NULL, av, wq, wk, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, NULL, wq, wk, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, av, NULL, wk, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, av, wq, NULL, wv, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, av, wq, wk, NULL, work, fw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, av, wq, wk, wv, NULL, fw), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, av, wq, wk, wv, work, fw - 1), ATTN_ERR_WORKSPACE);
    d = g; d.dropout = -0.1f;
    CHECK_STATUS(attn_additive_forward(NULL, &d, ao, aw, aq, ak, av, wq, wk, wv, work, fw), ATTN_ERR_ARG);
    CHECK(all_equal(ao, 12, 42));
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, NULL, aq, ak, av, wq, wk, wv, work + 7, fw), ATTN_OK);
    CHECK_STATUS(attn_additive_forward(NULL, &g, ao, aw, aq, ak, av, wq, wk, wv, work, fw), ATTN_OK);
    CHECK(!all_equal(ao, 12, 42));

#define BWD(a, b, c, e, f, h, i, wk_, n) \
    attn_additive_backward(NULL, &g, a, b, c, e, f, h, i, aq, ak, av, wq, wk, wv, wk_, n)
    CHECK_STATUS(attn_additive_backward(NULL, NULL, gq, gk, gv, gwq, gwk, gwv, adout, aq, ak, av, wq, wk, wv, work, bw),
                 ATTN_ERR_NULL);
    CHECK_STATUS(BWD(NULL, gk, gv, gwq, gwk, gwv, adout, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, NULL, gv, gwq, gwk, gwv, adout, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, gk, NULL, gwq, gwk, gwv, adout, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, gk, gv, NULL, gwk, gwv, adout, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, gk, gv, gwq, NULL, gwv, adout, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, gk, gv, gwq, gwk, NULL, adout, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, gk, gv, gwq, gwk, gwv, NULL, work, bw), ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_backward(NULL, &g, gq, gk, gv, gwq, gwk, gwv, adout, NULL, ak, av, wq, wk, wv, work, bw),
                 ATTN_ERR_NULL);
    CHECK_STATUS(attn_additive_backward(NULL, &g, gq, gk, gv, gwq, gwk, gwv, adout, aq, ak, av, wq, wk, NULL, work, bw),
                 ATTN_ERR_NULL);
    CHECK_STATUS(BWD(gq, gk, gv, gwq, gwk, gwv, adout, NULL, bw), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(BWD(gq, gk, gv, gwq, gwk, gwv, adout, work, bw - 1), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(BWD(gq, gk, gv, gwq, gwk, gwv, adout, work, fw < bw ? fw : bw - 1), ATTN_ERR_WORKSPACE);
    CHECK(all_equal(gq, 18, 0) && all_equal(gwv, 4, 0));
    CHECK_STATUS(BWD(gq, gk, gv, gwq, gwk, gwv, adout, work + 9, bw), ATTN_OK);
    CHECK(!all_equal(gv, 16, 0));
#undef BWD
}

static void test_misc(void) {
    float x[3] = {1, 2, 3};
    CHECK_STATUS(attn_softmax(NULL, 3), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax(x, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_softmax(x, -1), ATTN_ERR_SIZE);
    CHECK(x[0] == 1 && x[2] == 3);

    CHECK_STATUS(attn_set_isa((attn_isa)-1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_set_isa(ATTN_ISA_COUNT), ATTN_ERR_ARG);
    CHECK_STATUS(attn_set_isa((attn_isa)1000), ATTN_ERR_ARG);
    CHECK(attn_get_isa() != ATTN_ISA_AUTO);
    for (int isa = ATTN_ISA_AUTO; isa < ATTN_ISA_COUNT; isa++) {
        attn_status st = attn_set_isa((attn_isa)isa);
        CHECK(st == ATTN_OK || st == ATTN_ERR_UNSUPPORTED);
        CHECK(st != ATTN_OK || isa == ATTN_ISA_AUTO || attn_get_isa() == (attn_isa)isa);
        CHECK(st == ATTN_OK || isa > ATTN_ISA_SCALAR);  /* ref and scalar always exist */
    }
    attn_set_isa(ATTN_ISA_AUTO);
    CHECK(attn_isa_name((attn_isa)-1) != NULL && attn_isa_name(ATTN_ISA_COUNT) != NULL);

    /* every status has its own string; unknown codes get one too */
    const attn_status all[] = {ATTN_OK, ATTN_ERR_NULL, ATTN_ERR_SIZE, ATTN_ERR_SHAPE, ATTN_ERR_STRIDE,
                               ATTN_ERR_WORKSPACE, ATTN_ERR_ARG, ATTN_ERR_NOMEM, ATTN_ERR_IO, ATTN_ERR_FORMAT,
                               ATTN_ERR_UNSUPPORTED};
    const int n = (int)(sizeof all / sizeof all[0]);
    const char *unknown = attn_status_string((attn_status)-99);
    CHECK(unknown != NULL && unknown[0] != 0);
    CHECK(attn_status_string((attn_status)1) != NULL);
    for (int i = 0; i < n; i++) {
        const char *s = attn_status_string(all[i]);
        CHECK(s != NULL && s[0] != 0 && strcmp(s, unknown) != 0);
        for (int j = 0; j < i; j++) CHECK(strcmp(s, attn_status_string(all[j])) != 0);
    }
}

/* NaN and Inf in the inputs: ATTN_OK, the defined results of the file header, no crash. */
static void test_nonfinite(void) {
    attn_sdpa_desc d = good();
    size_t fw, bw;
    for (int isa = ATTN_ISA_REF; isa < ATTN_ISA_COUNT; isa++) {
        if (attn_set_isa((attn_isa)isa) != ATTN_OK) continue;
        attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw);
        attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &bw);
        need(fw > bw ? fw : bw);

        /* NaN in one query row (b=0,h=0,t=1): that row is NaN, every other row finite */
        fill();
        q[3] = NAN;
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, NULL, q, k, v, work, fw), ATTN_OK);
        int nan_row = isnan(out[2]) && isnan(out[3]) && isnan(stats[2]), others = 1;
        for (int i = 0; i < NO; i++)
            if (i != 2 && i != 3 && !isfinite(out[i])) others = 0;
        CHECK(others);
        /* every path propagates the NaN into its row (the fused paths used to give 0 and -inf) */
        CHECK(nan_row);
        if (!nan_row) printf("  %s gives %g %g, stats %g for a NaN query row\n", attn_isa_name((attn_isa)isa),
                             out[2], out[3], stats[2]);
        memset(dq, 0, sizeof dq); memset(dk, 0, sizeof dk); memset(dv, 0, sizeof dv);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_OK);
        CHECK(isfinite(dq[NQ - 1]) && isfinite(dk[NK - 1]) && isfinite(dv[NV - 1]));   /* batch 1 untouched */

        /* Inf in K: the rows of (b=1, kv head 1) are NaN or finite, batch 0 finite */
        fill();
        k[NK - 1] = INFINITY;
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, NULL, q, k, v, work, fw), ATTN_OK);
        CHECK(isfinite(out[0]) && isfinite(out[11]));
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_OK);

        /* NaN and Inf in the values of excluded keys change nothing */
        fill();
        int32_t lens[2] = {2, 4};
        attn_sdpa_desc m = d;
        m.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
        m.mask.valid_lens = lens;
        float out_ref[NO];
        CHECK_STATUS(attn_sdpa_forward(NULL, &m, out_ref, stats, NULL, q, k, v, work, fw), ATTN_OK);
        v[2 * 2] = NAN;                                   /* b=0, h=0, s=2: excluded */
        v[3 * 2 + 1] = INFINITY;                          /* b=0, h=0, s=3: excluded */
        CHECK_STATUS(attn_sdpa_forward(NULL, &m, out, stats, NULL, q, k, v, work, fw), ATTN_OK);
        CHECK(memcmp(out, out_ref, sizeof out) == 0);

        /* huge inputs: scores overflow to ±Inf; OK, and no crash in the backward */
        fill();
        for (int i = 0; i < NQ; i++) q[i] *= 1e30f;
        for (int i = 0; i < NK; i++) k[i] *= 1e30f;
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, NULL, q, k, v, work, fw), ATTN_OK);
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_OK);

        /* NaN in dout: the backward returns OK */
        fill();
        CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, stats, NULL, q, k, v, work, fw), ATTN_OK);
        dout[0] = NAN;
        CHECK_STATUS(attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw), ATTN_OK);
    }
    attn_set_isa(ATTN_ISA_AUTO);

    /* bias: -Inf on every key of a row gives a fully masked row; +Inf gives NaN in that row only */
    fill();
    float bias[NW];
    for (int i = 0; i < NW; i++) bias[i] = 0;
    for (int s = 0; s < 4; s++) bias[s] = -INFINITY;     /* (0,0,0) */
    bias[4 * 4 + 1] = INFINITY;                          /* (0,1,1) */
    attn_sdpa_desc bd = d;
    bd.mask.bias = bias;
    bd.mask.bias_stride[0] = 24; bd.mask.bias_stride[1] = 12; bd.mask.bias_stride[2] = 4;
    attn_sdpa_workspace_size(NULL, &bd, ATTN_PASS_FORWARD, &fw);
    need(fw);
    CHECK_STATUS(attn_sdpa_forward(NULL, &bd, out, stats, w, q, k, v, work, fw), ATTN_OK);
    CHECK(out[0] == 0 && out[1] == 0 && stats[0] == -INFINITY && all_equal(w, 4, 0));
    CHECK(isnan(out[(1 * 3 + 1) * 2]) && isfinite(out[NO - 1]));

    /* additive: NaN in a query row makes that row NaN; other rows finite */
    attn_additive_desc a;
    attn_additive_desc_init(&a, 1, 2, 3, 2, 2, 2, 2);
    float aq[4] = {NAN, 1, 0.5f, 0.25f}, ak[6] = {1, 2, 3, 4, 5, 6}, av[6] = {1, 0, 0, 1, 1, 1};
    float wq[4] = {1, 0, 0, 1}, wk[4] = {0.1f, 0.2f, 0.3f, 0.4f}, wv[2] = {1, -1}, ao[4];
    attn_additive_workspace_size(NULL, &a, ATTN_PASS_FORWARD, &fw);
    need(fw);
    CHECK_STATUS(attn_additive_forward(NULL, &a, ao, NULL, aq, ak, av, wq, wk, wv, work, fw), ATTN_OK);
    CHECK(isnan(ao[0]) && isnan(ao[1]) && isfinite(ao[2]) && isfinite(ao[3]));
    float gq[4] = {0}, gk[6] = {0}, gv[6] = {0}, gwq[4] = {0}, gwk[4] = {0}, gwv[2] = {0}, gout[4] = {1, 1, 1, 1};
    attn_additive_workspace_size(NULL, &a, ATTN_PASS_BACKWARD, &bw);
    need(bw);
    CHECK_STATUS(attn_additive_backward(NULL, &a, gq, gk, gv, gwq, gwk, gwv, gout, aq, ak, av, wq, wk, wv, work, bw),
                 ATTN_OK);
    CHECK(isfinite(gq[2]) && isfinite(gq[3]));

    /* softmax */
    float s1[3] = {1, NAN, 2}, s2[3] = {1, INFINITY, 2}, s3[2] = {-INFINITY, -INFINITY};
    CHECK_STATUS(attn_softmax(s1, 3), ATTN_OK);
    CHECK_STATUS(attn_softmax(s2, 3), ATTN_OK);
    CHECK_STATUS(attn_softmax(s3, 2), ATTN_OK);
    CHECK(isnan(s1[0]) && isnan(s1[2]) && isnan(s2[0]) && s3[0] == 0 && s3[1] == 0);
}


/* Finite biases near FLT_MAX, forward, on every path this CPU runs (and the reference): +3e38 on one key
 * takes all the weight; -FLT_MAX (PyTorch's finfo.min) on every key gives uniform weights; a fully masked
 * causal row with a +3e38 bias gives zeros. Before the bias saturated in the fused kernels these gave NaN
 * (scalar, AVX-512), 0 (AVX2) and zeros instead of uniform weights. */
static void test_huge_bias(void) {
    const attn_isa isas[] = {ATTN_ISA_REF, ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        attn_ctx c;
        if (attn_ctx_init(&c, isas[ii], 1) != ATTN_OK) continue;
        for (int rows = 1; rows <= 9; rows += 8) {        /* 1 row: the decoding path; 9: the block path */
            attn_sdpa_desc d;
            attn_sdpa_desc_init(&d, 1, 1, rows, 4, 3, 2);
            float qq[9 * 3], kk[12], vv[8], oo[9 * 2], ll[9 * 2], bias[9 * 4];
            for (int i = 0; i < 27; i++) qq[i] = 0.1f * (float)(i % 5);
            for (int i = 0; i < 12; i++) kk[i] = 0.2f * (float)(i % 3);
            for (int i = 0; i < 8; i++) vv[i] = (float)i;
            d.mask.bias = bias;
            d.mask.bias_stride[2] = 4;
            size_t fw = 0;
            CHECK_STATUS(attn_sdpa_workspace_size(&c, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
            need(fw);
            /* +3e38 on key 1 of every row: out = v[1] */
            for (int i = 0; i < rows * 4; i++) bias[i] = i % 4 == 1 ? 3e38f : 0.0f;
            CHECK_STATUS(attn_sdpa_forward(&c, &d, oo, ll, NULL, qq, kk, vv, work, fw), ATTN_OK);
            int ok = 1;
            for (int t = 0; t < rows; t++) ok &= oo[2 * t] == vv[2] && oo[2 * t + 1] == vv[3];
            CHECK(ok);
            if (!ok) printf("  %s: +3e38 bias gives %g %g\n", attn_isa_name(isas[ii]), oo[0], oo[1]);
            /* -FLT_MAX on every key: uniform weights, out = mean of v */
            for (int i = 0; i < rows * 4; i++) bias[i] = -FLT_MAX;
            CHECK_STATUS(attn_sdpa_forward(&c, &d, oo, ll, NULL, qq, kk, vv, work, fw), ATTN_OK);
            ok = 1;
            for (int t = 0; t < rows; t++) ok &= fabsf(oo[2 * t] - 3.0f) < 1e-5f && fabsf(oo[2 * t + 1] - 4.0f) < 1e-5f;
            CHECK(ok);
            if (!ok) printf("  %s: -FLT_MAX bias gives %g %g (want 3 4)\n", attn_isa_name(isas[ii]), oo[0], oo[1]);
            /* a causal row that sees no key (T > S: rows before the first key), with +3e38 on every key */
            attn_sdpa_desc dc;
            attn_sdpa_desc_init(&dc, 1, 1, rows + 4, 4, 3, 2);
            dc.mask.causal = 1;
            dc.mask.bias = bias;
            dc.mask.bias_stride[2] = 0;
            for (int i = 0; i < 4; i++) bias[i] = 3e38f;
            float q2[13 * 3], o2[13 * 2], l2[13 * 2];
            for (int i = 0; i < (rows + 4) * 3; i++) q2[i] = 0.1f * (float)(i % 7);
            CHECK_STATUS(attn_sdpa_workspace_size(&c, &dc, ATTN_PASS_FORWARD, &fw), ATTN_OK);
            need(fw);
            CHECK_STATUS(attn_sdpa_forward(&c, &dc, o2, l2, NULL, q2, kk, vv, work, fw), ATTN_OK);
            CHECK(o2[0] == 0.0f && o2[1] == 0.0f && l2[0] == -INFINITY);   /* row 0 sees no key */
            CHECK(isfinite(o2[2 * (rows + 3)]) && isfinite(o2[2 * (rows + 3) + 1]));
        }
    }
}

/* Size arithmetic that must not wrap: a backward workspace whose dQ slots alone need more than 2^64 bytes
 * is ATTN_ERR_SIZE (it used to wrap to about 2^48), and B·Hkv past 2^31 (an int pair count) sizes or refuses
 * but never asks for a workspace too small for one pair. */
static void test_huge_sizes(void) {
    const attn_isa isas[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        attn_ctx c;
        if (attn_ctx_init(&c, isas[ii], 2) != ATTN_OK) continue;
        attn_sdpa_desc d;
        attn_sdpa_desc_init(&d, 1, 1, 1, 1, 1, 1);
        d.B = 1; d.H = 1 << 22; d.Hkv = 1; d.T = 1 << 24; d.S = 1; d.D = 1 << 16; d.Dv = 1;
        d.q = (attn_layout){0, (int64_t)d.T * d.D, d.D};
        d.k = (attn_layout){0, 0, d.D};
        d.v = (attn_layout){0, 0, 1};
        d.out = (attn_layout){0, (int64_t)d.T, 1};
        size_t bytes = 0;
        const attn_status st = attn_sdpa_workspace_size(&c, &d, ATTN_PASS_BACKWARD, &bytes);
        CHECK(st == ATTN_ERR_SIZE || st == ATTN_ERR_STRIDE);
        if (st == ATTN_OK) printf("  %s: a 2^64-byte backward asked for %zu bytes\n", attn_isa_name(isas[ii]), bytes);
        /* B·Hkv = 2^32 pairs of one row each: any size returned must hold at least one pair's slots */
        attn_sdpa_desc e;
        attn_sdpa_desc_init(&e, 1, 1, 1, 1, 1, 1);
        e.B = 4096; e.H = e.Hkv = 1 << 20; e.T = 1000; e.S = 1; e.D = 1; e.Dv = 1;
        e.q = e.out = (attn_layout){(int64_t)e.H * e.T, e.T, 1};
        e.k = e.v = (attn_layout){(int64_t)e.H, 1, 1};
        bytes = 0;
        const attn_status s2 = attn_sdpa_workspace_size(&c, &e, ATTN_PASS_BACKWARD, &bytes);
        CHECK(s2 == ATTN_ERR_SIZE || (s2 == ATTN_OK && bytes >= sizeof(float) * 1000));
    }
}

/* Every pass stays inside the workspace it asked for: each buffer is exactly the size the size query gave,
 * followed by guard bytes that must come back untouched, on every path, 1 and 2 threads, every route
 * (small heads, decoding rows, query blocks), forward with and without weights, backward. (The small
 * heads' backward once put its thread tiles after dQ slots it does not have: 2-3 KiB past a one-thread
 * workspace at the d2l Transformer's shapes.) */
static void test_workspace_guards(void) {
    const int shapes[][6] = {{64, 4, 10, 10, 8, 8}, {2, 2, 1, 9, 64, 64}, {1, 2, 70, 90, 24, 40}, {3, 1, 5, 12, 4, 4}};
    enum { GUARD = 256 };
    for (int ii = ATTN_ISA_SCALAR; ii < ATTN_ISA_COUNT; ii++)
        for (int th = 1; th <= 2; th++) {
            attn_ctx c;
            if (attn_ctx_init(&c, (attn_isa)ii, th) != ATTN_OK) continue;
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
                const int *z = shapes[si];
                attn_sdpa_desc d;
                attn_sdpa_desc_init(&d, z[0], z[1], z[2], z[3], z[4], z[5]);
                const size_t nq = (size_t)z[0] * z[1] * z[2] * z[4], nk = (size_t)z[0] * z[1] * z[3] * z[4];
                const size_t nv = (size_t)z[0] * z[1] * z[3] * z[5], no = (size_t)z[0] * z[1] * z[2] * z[5];
                const size_t nr = (size_t)z[0] * z[1] * z[2], nw = nr * z[3];
                float *qq = calloc(nq, 4), *kk = calloc(nk, 4), *vv = calloc(nv, 4), *oo = calloc(no, 4);
                float *gg = calloc(no, 4), *st = calloc(2 * nr, 4), *ww = calloc(nw, 4);
                float *dqq = calloc(nq, 4), *dkk = calloc(nk, 4), *dvv = calloc(nv, 4);
                for (size_t i = 0; i < nq; i++) qq[i] = (float)(i % 7) * 0.1f;
                for (size_t i = 0; i < nk; i++) kk[i] = (float)(i % 5) * 0.1f;
                for (size_t i = 0; i < nv; i++) vv[i] = (float)(i % 3);
                for (size_t i = 0; i < no; i++) gg[i] = 1.0f;
                for (int pass = 0; pass < 3; pass++) {      /* forward, forward with weights, backward */
                    size_t bytes = 0;
                    CHECK_STATUS(attn_sdpa_workspace_size(&c, &d, pass == 2 ? ATTN_PASS_BACKWARD : ATTN_PASS_FORWARD,
                                                          &bytes), ATTN_OK);
                    unsigned char *wk = malloc(bytes + GUARD);
                    memset(wk + bytes, 0xA5, GUARD);
                    if (pass < 2)
                        CHECK_STATUS(attn_sdpa_forward(&c, &d, oo, st, pass ? ww : NULL, qq, kk, vv, wk, bytes), ATTN_OK);
                    else
                        CHECK_STATUS(attn_sdpa_backward(&c, &d, dqq, dkk, dvv, gg, qq, kk, vv, oo, st, wk, bytes), ATTN_OK);
                    int intact = 1;
                    for (int i = 0; i < GUARD; i++) intact &= wk[bytes + i] == 0xA5;
                    CHECK(intact);
                    if (!intact)
                        printf("  %s, %d threads, shape %zu, pass %d: wrote past its workspace of %zu bytes\n",
                               attn_isa_name((attn_isa)ii), th, si, pass, bytes);
                    free(wk);
                }
                free(qq); free(kk); free(vv); free(oo); free(gg); free(st); free(ww); free(dqq); free(dkk); free(dvv);
            }
        }
}

int main(void) {
    test_workspace_guards();
    test_sdpa_desc();
    test_sdpa_calls();
    test_additive();
    test_misc();
    test_nonfinite();
    test_huge_bias();
    test_huge_sizes();
    free(work);
    return tu_finish("test_badinput");
}
