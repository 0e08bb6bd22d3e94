/*
 * test_sdpa_ref.c — the reference scaled dot-product attention, the oracle of every other path.
 *
 * What is checked, case by case (no mask; scale 1; T != S; Dv != D; grouped-query heads; each mask kind
 * alone and all together; a fully masked row; dropout; strided and broadcast layouts):
 *   1. the double-precision reference forward against a naive implementation written here from attn.h's
 *      words alone (its own mask predicate, its own dropout index), for out, lse and weights;
 *   2. the double-precision backward against central finite differences of L = Σ dout·out
 *      (h = 1e-6, relative tolerance 1e-6), for dq, dk and dv, and that it accumulates (+=) and leaves
 *      the gaps of strided buffers alone;
 *   3. the public float API (path REF) against the double kernels within ~1e-5;
 *   4. the public API on every other path built in (dispatch, the scratch lse of a forward without lse);
 * then dropout's mask itself, the scoring walk-through of `attn score`, and attn_softmax.
 */
#include "attn.h"
#include "internal.h"
#include "ref/ref.h"
#include "testutil.h"

#include <stdint.h>
#include <string.h>

/* ---- small helpers --------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x1234abcdULL;
static double urand(void) {                       /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* Elements a (B,H,T,inner) tensor with layout l spans: max offset + 1. */
static size_t span(attn_layout l, int B, int H, int T, int inner) {
    return (size_t)((B - 1) * l.b + (H - 1) * l.h + (T - 1) * l.t + inner);
}
static int64_t off(attn_layout l, int b, int h, int t) { return b * l.b + h * l.h + t * l.t; }

static double *alloc_rand(size_t n) {
    double *x = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = urand();
    return x;
}
static double *alloc_fill(size_t n, double v) {
    double *x = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = v;
    return x;
}
static float *to_f32(const double *x, size_t n) {
    float *y = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}
static double *to_f64(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}
static int any_nan(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i])) return 1;
    return 0;
}

/* ---- the naive oracle: attn.h's definition read literally ------------------------------------------ */

/* May query (b,h,t) attend key s, before the bias? (valid lengths clamped to [0,S]; causal bottom-right;
 * boolean nonzero = may attend) */
static int naive_allowed(const attn_sdpa_desc *d, int b, int h, int t, int s) {
    const attn_mask *m = &d->mask;
    if (m->valid_lens_kind == ATTN_VALID_LENS_PER_BATCH && s >= m->valid_lens[b]) return 0;
    if (m->valid_lens_kind == ATTN_VALID_LENS_PER_QUERY && s >= m->valid_lens[b * d->T + t]) return 0;
    if (m->causal && s > t + (d->S - d->T)) return 0;
    if (m->allow && !m->allow[b * m->allow_stride[0] + h * m->allow_stride[1] + t * m->allow_stride[2] + s])
        return 0;
    return 1;
}

/* The log-sum-exp of n rows of row statistics (attn.h: (max, log of the sum)) in double. */
static void stats_lse_f64(const double *st, size_t n, double *lse) {
    for (size_t r = 0; r < n; r++)
        lse[r] = st[2 * r] == -INFINITY ? -INFINITY : st[2 * r] + st[2 * r + 1];
}

static void naive_forward(const attn_sdpa_desc *d, double *out, double *lse, double *weights,
                          const double *q, const double *k, const double *v) {
    const int B = d->B, H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv;
    double *sc = malloc(sizeof(double) * S);
    int *ok = malloc(sizeof(int) * S);
    for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
    for (int t = 0; t < T; t++) {
        int hk = h / (H / d->Hkv);
        double mx = -INFINITY;
        for (int s = 0; s < S; s++) {
            ok[s] = naive_allowed(d, b, h, t, s);
            double dot = 0;
            for (int i = 0; i < D; i++) dot += q[off(d->q, b, h, t) + i] * k[off(d->k, b, hk, s) + i];
            sc[s] = d->scale * dot;
            if (d->mask.bias)
                sc[s] += d->mask.bias[b * d->mask.bias_stride[0] + h * d->mask.bias_stride[1] +
                                      t * d->mask.bias_stride[2] + s];
            if (sc[s] == -INFINITY) ok[s] = 0;
            if (ok[s] && sc[s] > mx) mx = sc[s];
        }
        double z = 0;
        for (int s = 0; s < S; s++) z += ok[s] ? exp(sc[s] - mx) : 0.0;
        int64_t row = ((int64_t)b * H + h) * T + t;
        if (lse) lse[row] = mx == -INFINITY ? -INFINITY : mx + log(z);
        for (int j = 0; j < Dv; j++) out[off(d->out, b, h, t) + j] = 0;
        for (int s = 0; s < S; s++) {
            double w = (ok[s] && mx > -INFINITY) ? exp(sc[s] - mx) / z : 0.0;
            if (weights) weights[row * S + s] = w;
            double keep = 1.0;
            if (d->dropout > 0)
                keep = attn__dropout_keep(d->seed, (uint64_t)row * S + s, d->dropout) ? 1.0 / (1.0 - d->dropout) : 0;
            for (int j = 0; j < Dv; j++) out[off(d->out, b, h, t) + j] += w * keep * v[off(d->v, b, hk, s) + j];
        }
    }
    free(sc);
    free(ok);
}

/* ---- one problem: sizes, layouts, mask, and double-precision data laid out by the layouts ----------- */

typedef struct problem {
    attn_sdpa_desc d;
    size_t nq, nk, nv, no;                /* buffer lengths (spans of the layouts) */
    double *q, *k, *v, *g;                /* g: dout, laid out like out */
} problem;

static void problem_data(problem *p) {
    const attn_sdpa_desc *d = &p->d;
    p->nq = span(d->q, d->B, d->H, d->T, d->D);
    p->nk = span(d->k, d->B, d->Hkv, d->S, d->D);
    p->nv = span(d->v, d->B, d->Hkv, d->S, d->Dv);
    p->no = span(d->out, d->B, d->H, d->T, d->Dv);
    p->q = alloc_rand(p->nq);
    p->k = alloc_rand(p->nk);
    p->v = alloc_rand(p->nv);
    p->g = alloc_rand(p->no);
}
static void problem_free(problem *p) { free(p->q); free(p->k); free(p->v); free(p->g); }

static void *ref_work(const attn_sdpa_desc *d, attn_pass pass) {
    return malloc(attn__sdpa_ref_workspace(d, pass, 1));
}

/* L = Σ over the logical elements of out of dout·out (the double reference forward) */
static double loss(const problem *p, double *out, void *work) {
    const attn_sdpa_desc *d = &p->d;
    attn__sdpa_ref_forward_f64(d, out, NULL, NULL, p->q, p->k, p->v, work);
    double L = 0;
    for (int b = 0; b < d->B; b++)
    for (int h = 0; h < d->H; h++)
    for (int t = 0; t < d->T; t++)
        for (int j = 0; j < d->Dv; j++) L += p->g[off(d->out, b, h, t) + j] * out[off(d->out, b, h, t) + j];
    return L;
}

/* Central differences of L with respect to every logical element of x (a (B,Hx,R,inner) tensor with
 * layout l), compared with the analytic gradient grad (same layout). */
static void fd_compare(const char *what, problem *p, double *x, const double *grad, attn_layout l, int Hx, int R,
                       int inner) {
    const attn_sdpa_desc *d = &p->d;
    const double hstep = 1e-6;
    size_t n = (size_t)d->B * Hx * R * inner;
    double *fd = malloc(sizeof(double) * n), *an = malloc(sizeof(double) * n);
    double *out = calloc(p->no, sizeof(double));
    void *work = ref_work(d, ATTN_PASS_FORWARD);
    size_t i = 0;
    for (int b = 0; b < d->B; b++)
    for (int h = 0; h < Hx; h++)
    for (int r = 0; r < R; r++)
        for (int c = 0; c < inner; c++, i++) {
            int64_t o = off(l, b, h, r) + c;
            double x0 = x[o];
            x[o] = x0 + hstep; double lp = loss(p, out, work);
            x[o] = x0 - hstep; double lm = loss(p, out, work);
            x[o] = x0;
            fd[i] = (lp - lm) / (2 * hstep);
            an[i] = grad[o];
        }
    tu_close_f64(what, an, fd, n, 1e-8, 1e-6);
    free(fd); free(an); free(out); free(work);
}

/* Every check of the file header on one problem. */
static void check_problem(const char *name, problem *p) {
    const attn_sdpa_desc *d = &p->d;
    const int B = d->B, H = d->H, T = d->T, S = d->S;
    const size_t nrow = (size_t)B * H * T, nw = nrow * S;
    char what[128];
    printf("%s: B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d scale=%g dropout=%g lens=%d causal=%d allow=%d bias=%d\n",
           name, B, H, d->Hkv, T, S, d->D, d->Dv, d->scale, d->dropout, (int)d->mask.valid_lens_kind,
           d->mask.causal, d->mask.allow != NULL, d->mask.bias != NULL);
    CHECK_STATUS(attn_sdpa_validate(d), ATTN_OK);

    /* 1. reference forward (double) against the naive oracle */
    double *out = calloc(p->no, sizeof(double)), *st = calloc(2 * nrow, sizeof(double)),
           *lse = calloc(nrow, sizeof(double));
    double *w = calloc(nw, sizeof(double));
    double *out_n = calloc(p->no, sizeof(double)), *lse_n = calloc(nrow, sizeof(double));
    double *w_n = calloc(nw, sizeof(double));
    void *fwork = ref_work(d, ATTN_PASS_FORWARD), *bwork = ref_work(d, ATTN_PASS_BACKWARD);
    CHECK_STATUS(attn__sdpa_ref_forward_f64(d, out, st, w, p->q, p->k, p->v, fwork), ATTN_OK);
    stats_lse_f64(st, nrow, lse);
    naive_forward(d, out_n, lse_n, w_n, p->q, p->k, p->v);
    snprintf(what, sizeof what, "%s out vs naive", name);
    tu_close_f64(what, out, out_n, p->no, 1e-12, 1e-10);
    snprintf(what, sizeof what, "%s weights vs naive", name);
    tu_close_f64(what, w, w_n, nw, 1e-12, 1e-10);
    int lse_same = 1;                              /* -inf rows compare by identity */
    for (size_t i = 0; i < nrow; i++)
        if (!(lse[i] == lse_n[i] || fabs(lse[i] - lse_n[i]) <= 1e-10 * (1 + fabs(lse_n[i])))) lse_same = 0;
    CHECK(lse_same);
    CHECK(!any_nan(out, p->no) && !any_nan(w, nw) && !any_nan(lse, nrow));

    /* rows of weights sum to 1, or are all 0 with lse = -inf */
    int rows_ok = 1;
    for (size_t r = 0; r < nrow; r++) {
        double sum = 0;
        for (int s = 0; s < S; s++) sum += w[r * S + s];
        if (lse[r] == -INFINITY ? sum != 0.0 : fabs(sum - 1) > 1e-12) rows_ok = 0;
    }
    CHECK(rows_ok);

    /* 2. backward (double): accumulates onto 0.5, leaves gaps alone; gradients against FD */
    double *dq = alloc_fill(p->nq, 0.5), *dk = alloc_fill(p->nk, 0.5), *dv = alloc_fill(p->nv, 0.5);
    CHECK_STATUS(attn__sdpa_ref_backward_f64(d, dq, dk, dv, p->g, p->q, p->k, p->v, out, st, bwork), ATTN_OK);
    CHECK(!any_nan(dq, p->nq) && !any_nan(dk, p->nk) && !any_nan(dv, p->nv));
    for (size_t i = 0; i < p->nq; i++) dq[i] -= 0.5;
    for (size_t i = 0; i < p->nk; i++) dk[i] -= 0.5;
    for (size_t i = 0; i < p->nv; i++) dv[i] -= 0.5;
    snprintf(what, sizeof what, "%s dq vs FD", name);
    fd_compare(what, p, p->q, dq, d->q, H, T, d->D);
    snprintf(what, sizeof what, "%s dk vs FD", name);
    fd_compare(what, p, p->k, dk, d->k, d->Hkv, S, d->D);
    snprintf(what, sizeof what, "%s dv vs FD", name);
    fd_compare(what, p, p->v, dv, d->v, d->Hkv, S, d->Dv);

    /* gaps of strided buffers (elements no logical index reaches) are never written */
    {
        char *reached = calloc(p->nq, 1);
        for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d->D; i++) reached[off(d->q, b, h, t) + i] = 1;
        int gaps_ok = 1;
        for (size_t i = 0; i < p->nq; i++)
            if (!reached[i] && dq[i] != 0.0) gaps_ok = 0;
        CHECK(gaps_ok);
        free(reached);
    }

    /* 3. the public float API on the reference path, against the double kernels */
    CHECK_STATUS(attn_set_isa(ATTN_ISA_REF), ATTN_OK);
    float *qf = to_f32(p->q, p->nq), *kf = to_f32(p->k, p->nk), *vf = to_f32(p->v, p->nv);
    float *gf = to_f32(p->g, p->no);
    float *outf = calloc(p->no, sizeof(float)), *lsef = calloc(2 * nrow, sizeof(float)), *wf = calloc(nw, sizeof(float));
    float *dqf = calloc(p->nq, sizeof(float)), *dkf = calloc(p->nk, sizeof(float)), *dvf = calloc(p->nv, sizeof(float));
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    void *work = malloc(fw > bw ? fw : bw);
    CHECK_STATUS(attn_sdpa_forward(NULL, d, outf, lsef, wf, qf, kf, vf, work, fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(NULL, d, dqf, dkf, dvf, gf, qf, kf, vf, outf, lsef, work, bw), ATTN_OK);
    /* the double kernels on the float-rounded inputs, so only the arithmetic differs */
    double *qr = to_f64(qf, p->nq), *kr = to_f64(kf, p->nk), *vr = to_f64(vf, p->nv), *gr = to_f64(gf, p->no);
    double *dqr = calloc(p->nq, sizeof(double)), *dkr = calloc(p->nk, sizeof(double)), *dvr = calloc(p->nv, sizeof(double));
    attn__sdpa_ref_forward_f64(d, out, st, w, qr, kr, vr, fwork);
    attn__sdpa_ref_backward_f64(d, dqr, dkr, dvr, gr, qr, kr, vr, out, st, bwork);
    stats_lse_f64(st, nrow, lse);
    CHECK_STATUS(attn_sdpa_logsumexp(lsef, (int64_t)nrow, lsef), ATTN_OK);
    {
        float *t;
        snprintf(what, sizeof what, "%s float out vs double", name);
        t = to_f32(out, p->no); tu_close_f32(what, outf, t, p->no, 1e-6, 1e-5); free(t);
        snprintf(what, sizeof what, "%s float weights vs double", name);
        t = to_f32(w, nw); tu_close_f32(what, wf, t, nw, 1e-6, 1e-5); free(t);
        double *lsed = to_f64(lsef, nrow);
        int ok = 1;
        for (size_t i = 0; i < nrow; i++)
            if (!(lsed[i] == lse[i] || fabs(lsed[i] - lse[i]) <= 1e-5 * (1 + fabs(lse[i])))) ok = 0;
        CHECK(ok);
        free(lsed);
        snprintf(what, sizeof what, "%s float dq vs double", name);
        t = to_f32(dqr, p->nq); tu_close_f32(what, dqf, t, p->nq, 1e-6, 1e-5); free(t);
        snprintf(what, sizeof what, "%s float dk vs double", name);
        t = to_f32(dkr, p->nk); tu_close_f32(what, dkf, t, p->nk, 1e-6, 1e-5); free(t);
        snprintf(what, sizeof what, "%s float dv vs double", name);
        t = to_f32(dvr, p->nv); tu_close_f32(what, dvf, t, p->nv, 1e-6, 1e-5); free(t);
    }

    /* 4. every other path built in, through the public API (with and without lse) */
    for (int isa = ATTN_ISA_SCALAR; isa < ATTN_ISA_COUNT; isa++) {
        if (attn_set_isa((attn_isa)isa) != ATTN_OK) continue;
        size_t fw2 = 0, bw2 = 0;
        CHECK_STATUS(attn_sdpa_workspace_size(NULL, d, ATTN_PASS_FORWARD, &fw2), ATTN_OK);
        CHECK_STATUS(attn_sdpa_workspace_size(NULL, d, ATTN_PASS_BACKWARD, &bw2), ATTN_OK);
        void *work2 = malloc(fw2 > bw2 ? fw2 : bw2);
        float *o2 = calloc(p->no, sizeof(float)), *o3 = calloc(p->no, sizeof(float));
        float *l2 = calloc(2 * nrow, sizeof(float));
        float *dq2 = calloc(p->nq, sizeof(float)), *dk2 = calloc(p->nk, sizeof(float)), *dv2 = calloc(p->nv, sizeof(float));
        CHECK_STATUS(attn_sdpa_forward(NULL, d, o2, l2, NULL, qf, kf, vf, work2, fw2), ATTN_OK);
        CHECK_STATUS(attn_sdpa_forward(NULL, d, o3, NULL, NULL, qf, kf, vf, work2, fw2), ATTN_OK);
        CHECK(memcmp(o2, o3, sizeof(float) * p->no) == 0);
        CHECK_STATUS(attn_sdpa_backward(NULL, d, dq2, dk2, dv2, gf, qf, kf, vf, o2, l2, work2, bw2), ATTN_OK);
        float *t;
        snprintf(what, sizeof what, "%s [%s] out", name, attn_isa_name((attn_isa)isa));
        t = to_f32(out, p->no); tu_close_f32(what, o2, t, p->no, 1e-5, 1e-4); free(t);
        snprintf(what, sizeof what, "%s [%s] dq", name, attn_isa_name((attn_isa)isa));
        t = to_f32(dqr, p->nq); tu_close_f32(what, dq2, t, p->nq, 1e-5, 1e-4); free(t);
        snprintf(what, sizeof what, "%s [%s] dk", name, attn_isa_name((attn_isa)isa));
        t = to_f32(dkr, p->nk); tu_close_f32(what, dk2, t, p->nk, 1e-5, 1e-4); free(t);
        snprintf(what, sizeof what, "%s [%s] dv", name, attn_isa_name((attn_isa)isa));
        t = to_f32(dvr, p->nv); tu_close_f32(what, dv2, t, p->nv, 1e-5, 1e-4); free(t);
        free(work2); free(o2); free(o3); free(l2); free(dq2); free(dk2); free(dv2);
    }
    attn_set_isa(ATTN_ISA_AUTO);

    free(out); free(st); free(lse); free(w); free(out_n); free(lse_n); free(w_n); free(fwork); free(bwork);
    free(dq); free(dk); free(dv);
    free(qf); free(kf); free(vf); free(gf); free(outf); free(lsef); free(wf); free(dqf); free(dkf); free(dvf);
    free(work); free(qr); free(kr); free(vr); free(gr); free(dqr); free(dkr); free(dvr);
}

/* A problem with contiguous layouts. */
static problem make(int B, int H, int Hkv, int T, int S, int D, int Dv) {
    problem p;
    memset(&p, 0, sizeof p);
    attn_sdpa_desc_init(&p.d, B, H, T, S, D, Dv);
    p.d.Hkv = Hkv;
    p.d.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    p.d.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    return p;
}

/* ---- the cases ---------------------------------------------------------------------------------------- */

static void test_plain_cases(void) {
    problem p;
    p = make(2, 2, 2, 3, 4, 5, 5);                       /* scaled, no mask */
    problem_data(&p); check_problem("plain", &p); problem_free(&p);

    p = make(2, 1, 1, 4, 4, 3, 3);                       /* dot-product attention: scale 1 */
    p.d.scale = 1.0f;
    problem_data(&p); check_problem("scale1", &p); problem_free(&p);

    p = make(1, 2, 2, 2, 5, 3, 6);                       /* cross-attention T != S, Dv != D */
    problem_data(&p); check_problem("T2S5_Dv6", &p); problem_free(&p);

    p = make(1, 1, 1, 5, 2, 4, 2);                       /* T > S, Dv < D */
    problem_data(&p); check_problem("T5S2_Dv2", &p); problem_free(&p);

    p = make(2, 3, 1, 3, 4, 4, 3);                       /* grouped-query: 3 query heads share one kv head */
    problem_data(&p); check_problem("gqa_H3_Hkv1", &p); problem_free(&p);

    p = make(1, 4, 2, 3, 3, 2, 3);                       /* 2 kv heads, 2 query heads each */
    problem_data(&p); check_problem("gqa_H4_Hkv2", &p); problem_free(&p);

    p = make(1, 1, 1, 1, 1, 1, 1);                       /* the smallest problem */
    problem_data(&p); check_problem("one", &p); problem_free(&p);
}

static void test_mask_cases(void) {
    problem p;

    /* valid lengths per batch row; 7 > S is clamped */
    int32_t vl_b[2] = {2, 7};
    p = make(2, 2, 2, 3, 4, 3, 3);
    p.d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    p.d.mask.valid_lens = vl_b;
    problem_data(&p); check_problem("valid_lens_per_batch", &p); problem_free(&p);

    /* valid lengths per query, including 0 (a fully masked row) */
    int32_t vl_q[6] = {1, 2, 3, 0, 4, 2};
    p = make(2, 1, 1, 3, 4, 3, 2);
    p.d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_QUERY;
    p.d.mask.valid_lens = vl_q;
    problem_data(&p); check_problem("valid_lens_per_query", &p); problem_free(&p);

    /* causal: T == S, T < S (every query sees more), T > S (the first queries see nothing) */
    p = make(1, 2, 2, 4, 4, 3, 3);
    p.d.mask.causal = 1;
    problem_data(&p); check_problem("causal_T4S4", &p); problem_free(&p);
    p = make(1, 1, 1, 2, 5, 3, 3);
    p.d.mask.causal = 1;
    problem_data(&p); check_problem("causal_T2S5", &p); problem_free(&p);
    p = make(2, 1, 1, 5, 2, 3, 3);
    p.d.mask.causal = 1;
    problem_data(&p); check_problem("causal_T5S2", &p); problem_free(&p);

    /* boolean (B,H,T,S), about a third excluded */
    {
        uint8_t allow[2 * 2 * 3 * 4];
        for (size_t i = 0; i < sizeof allow; i++) allow[i] = urand() > -0.4;
        p = make(2, 2, 2, 3, 4, 3, 3);
        p.d.mask.allow = allow;
        p.d.mask.allow_stride[0] = 2 * 3 * 4; p.d.mask.allow_stride[1] = 3 * 4; p.d.mask.allow_stride[2] = 4;
        problem_data(&p); check_problem("allow_BHTS", &p); problem_free(&p);
    }
    /* boolean (T,S) broadcast over batch and heads, with nonzero values other than 1 */
    {
        uint8_t allow[3 * 4] = {1, 0, 7, 0, 0, 255, 1, 1, 1, 1, 0, 1};
        p = make(2, 2, 2, 3, 4, 3, 3);
        p.d.mask.allow = allow;
        p.d.mask.allow_stride[2] = 4;
        problem_data(&p); check_problem("allow_TS_broadcast", &p); problem_free(&p);
    }
    /* additive bias (B,1,T,S) broadcast over heads, with some -inf */
    {
        float bias[2 * 3 * 4];
        for (size_t i = 0; i < 24; i++) bias[i] = (float)(2 * urand());
        bias[1] = -INFINITY; bias[5] = -INFINITY; bias[14] = -INFINITY;
        p = make(2, 2, 2, 3, 4, 3, 3);
        p.d.mask.bias = bias;
        p.d.mask.bias_stride[0] = 12; p.d.mask.bias_stride[2] = 4;
        problem_data(&p); check_problem("bias", &p); problem_free(&p);
    }
}

/* A row with every key excluded (by the boolean mask here; by a 0 length and by causality in the mask
 * cases): zero weights, zero output, stats (-inf, 0), zero gradients, no NaN — even with huge inputs. */
static void test_fully_masked(void) {
    uint8_t allow[2 * 3 * 4];
    memset(allow, 1, sizeof allow);
    memset(allow + 4, 0, 4);                              /* (b=0, t=1): nothing */
    problem p = make(2, 1, 1, 3, 4, 3, 3);
    p.d.mask.allow = allow;
    p.d.mask.allow_stride[0] = 12; p.d.mask.allow_stride[2] = 4;
    problem_data(&p);
    check_problem("fully_masked_row", &p);

    const attn_sdpa_desc *d = &p.d;
    float *qf = to_f32(p.q, p.nq), *kf = to_f32(p.k, p.nk), *vf = to_f32(p.v, p.nv), *gf = to_f32(p.g, p.no);
    for (size_t i = 0; i < p.nv; i++) vf[i] *= 1e30f;    /* masked keys must not turn 0 into NaN */
    float out[18], st[12], w[24], dq[18] = {0}, dk[24] = {0}, dv[24] = {0};
    size_t fw, bw;
    attn_set_isa(ATTN_ISA_REF);
    attn_sdpa_workspace_size(NULL, d, ATTN_PASS_FORWARD, &fw);
    attn_sdpa_workspace_size(NULL, d, ATTN_PASS_BACKWARD, &bw);
    void *work = malloc(fw > bw ? fw : bw);
    CHECK_STATUS(attn_sdpa_forward(NULL, d, out, st, w, qf, kf, vf, work, fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(NULL, d, dq, dk, dv, gf, qf, kf, vf, out, st, work, bw), ATTN_OK);
    CHECK(st[2] == -INFINITY && st[3] == 0.0f && isfinite(st[0]) && isfinite(st[4]));
    int zeros = 1, nan = 0;
    for (int j = 0; j < 3; j++) zeros &= out[3 + j] == 0.0f && dq[3 + j] == 0.0f;
    for (int s = 0; s < 4; s++) zeros &= w[4 + s] == 0.0f;
    for (int i = 0; i < 24; i++) nan |= isnan(w[i]) || isnan(dk[i]) || isnan(dv[i]);
    for (int i = 0; i < 18; i++) nan |= isnan(dq[i]) || isnan(out[i]);
    CHECK(zeros);
    CHECK(!nan);
    attn_set_isa(ATTN_ISA_AUTO);
    free(work); free(qf); free(kf); free(vf); free(gf);
    problem_free(&p);
}

static void test_dropout(void) {
    /* gradients: the mask is a pure function of (seed, index), so finite differences see the same mask */
    problem p = make(2, 2, 2, 3, 5, 3, 4);
    p.d.dropout = 0.3f;
    p.d.seed = 42;
    problem_data(&p);
    check_problem("dropout_p0.3", &p);
    problem_free(&p);

    /* the mask itself: V = identity (S = Dv) makes out_ts = m_ts w_ts, so out / w reads the mask off */
    const int B = 2, H = 2, T = 16, S = 16;
    attn_sdpa_desc d;
    attn_sdpa_desc_init(&d, B, H, T, S, 4, S);
    d.dropout = 0.3f;
    d.seed = 7;
    size_t nq = (size_t)B * H * T * 4, nk = (size_t)B * H * S * 4, nv = (size_t)B * H * S * S, nw = (size_t)B * H * T * S;
    double *q = alloc_rand(nq), *k = alloc_rand(nk), *v = calloc(nv, sizeof(double));
    for (int bh = 0; bh < B * H; bh++)
        for (int s = 0; s < S; s++) v[((size_t)bh * S + s) * S + s] = 1.0;
    double *out = calloc(nw, sizeof(double)), *out2 = calloc(nw, sizeof(double)), *w = calloc(nw, sizeof(double));
    void *work = ref_work(&d, ATTN_PASS_FORWARD);
    attn__sdpa_ref_forward_f64(&d, out, NULL, w, q, k, v, work);
    size_t dropped = 0, agree = 0;
    for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
    for (int t = 0; t < T; t++)
        for (int s = 0; s < S; s++) {
            size_t i = (((size_t)b * H + h) * T + t) * S + s;
            int keep = attn__dropout_keep(d.seed, i, d.dropout);
            double want = keep ? w[i] / (1.0 - 0.3f) : 0.0;
            if (fabs(out[i] - want) <= 1e-12) agree++;
            dropped += !keep;
        }
    printf("dropout p=0.3: %zu of %zu weights dropped (%.3f); %zu of %zu outputs = m·w\n", dropped, nw,
           (double)dropped / nw, agree, nw);
    CHECK(agree == nw);
    CHECK(fabs((double)dropped / nw - 0.3) < 0.05);
    /* the same seed gives the same output; another seed another one */
    attn__sdpa_ref_forward_f64(&d, out2, NULL, NULL, q, k, v, work);
    CHECK(memcmp(out, out2, sizeof(double) * nw) == 0);
    d.seed = 8;
    attn__sdpa_ref_forward_f64(&d, out2, NULL, NULL, q, k, v, work);
    CHECK(memcmp(out, out2, sizeof(double) * nw) != 0);
    /* the weights returned are before dropout: rows sum to 1 */
    double worst = 0;
    for (size_t r = 0; r < (size_t)B * H * T; r++) {
        double sum = 0;
        for (int s = 0; s < S; s++) sum += w[r * S + s];
        if (fabs(sum - 1) > worst) worst = fabs(sum - 1);
    }
    CHECK(worst < 1e-12);
    free(q); free(k); free(v); free(out); free(out2); free(w); free(work);
}

static void test_layouts(void) {
    /* Q and dQ in (B,T,H,D) memory order with 1 element of padding per row; K rows padded; V in
     * (B,S,Hkv,Dv) order; out in (B,T,H,Dv) order */
    const int B = 2, H = 2, T = 3, S = 4, D = 3, Dv = 2;
    problem p = make(B, H, H, T, S, D, Dv);
    p.d.q = (attn_layout){(int64_t)T * H * (D + 1), D + 1, (int64_t)H * (D + 1)};
    p.d.k = (attn_layout){(int64_t)H * S * (D + 2), (int64_t)S * (D + 2), D + 2};
    p.d.v = (attn_layout){(int64_t)S * H * Dv, Dv, (int64_t)H * Dv};
    p.d.out = (attn_layout){(int64_t)T * H * Dv, Dv, (int64_t)H * Dv};
    problem_data(&p);
    check_problem("strided_BTHD", &p);

    /* broadcast inputs: one K and V for every batch row (b stride 0), forward only, against copies */
    attn_sdpa_desc d = p.d;
    d.k.b = 0;
    d.v.b = 0;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    attn_sdpa_desc dc = p.d;                            /* the materialized copy: batch 1 = batch 0 */
    double *kc = malloc(sizeof(double) * p.nk), *vc = malloc(sizeof(double) * p.nv);
    memcpy(kc, p.k, sizeof(double) * p.nk);
    memcpy(vc, p.v, sizeof(double) * p.nv);
    for (int h = 0; h < H; h++)
        for (int s = 0; s < S; s++) {
            memcpy(kc + off(dc.k, 1, h, s), p.k + off(dc.k, 0, h, s), sizeof(double) * D);
            memcpy(vc + off(dc.v, 1, h, s), p.v + off(dc.v, 0, h, s), sizeof(double) * Dv);
        }
    double *o1 = calloc(p.no, sizeof(double)), *o2 = calloc(p.no, sizeof(double));
    void *work = ref_work(&d, ATTN_PASS_FORWARD);
    attn__sdpa_ref_forward_f64(&d, o1, NULL, NULL, p.q, p.k, p.v, work);
    attn__sdpa_ref_forward_f64(&dc, o2, NULL, NULL, p.q, kc, vc, work);
    tu_close_f64("broadcast K,V (b stride 0) vs copies", o1, o2, p.no, 0, 0);
    /* and the public forward accepts it, while the backward refuses: dK would overlap itself */
    float *qf = to_f32(p.q, p.nq), *kf = to_f32(p.k, p.nk), *vf = to_f32(p.v, p.nv), *of = calloc(p.no, sizeof(float));
    float *lf = calloc((size_t)B * H * T * ATTN_SDPA_STATS, sizeof(float));
    size_t fw, bw;
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    void *w2 = malloc(fw > bw ? fw : bw);
    CHECK_STATUS(attn_sdpa_forward(NULL, &d, of, lf, NULL, qf, kf, vf, w2, fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(NULL, &d, qf, kf, vf, of, qf, kf, vf, of, lf, w2, bw), ATTN_ERR_STRIDE);
    free(w2); free(qf); free(kf); free(vf); free(of); free(lf);
    free(kc); free(vc); free(o1); free(o2); free(work);
    problem_free(&p);
}

/* All the masks at once, with grouped heads, dropout and strided layouts. */
static void test_everything(void) {
    const int B = 2, H = 4, Hkv = 2, T = 3, S = 5, D = 3, Dv = 2;
    int32_t vl[2 * 3] = {5, 4, 3, 2, 9, 5};
    uint8_t allow[3 * 5];
    float bias[2 * 4 * 3 * 5];
    for (size_t i = 0; i < sizeof allow; i++) allow[i] = urand() > -0.6;
    for (size_t i = 0; i < 120; i++) bias[i] = (float)urand();
    bias[7] = -INFINITY;
    problem p = make(B, H, Hkv, T, S, D, Dv);
    p.d.q = (attn_layout){(int64_t)T * H * D, D, (int64_t)H * D};
    p.d.mask = (attn_mask){.valid_lens_kind = ATTN_VALID_LENS_PER_QUERY, .valid_lens = vl, .causal = 1, .allow = allow,
                           .allow_stride = {0, 0, 5}, .bias = bias, .bias_stride = {60, 15, 5}};
    p.d.dropout = 0.25f;
    p.d.seed = 0xfeedULL;
    p.d.scale = 0.7f;
    problem_data(&p);
    check_problem("everything", &p);
    problem_free(&p);
}

/* ---- randomized sweep: odd sizes, random memory orders with padding, random mask combinations ------ */

static int irand(int lo, int hi) {                 /* uniform in [lo, hi] */
    return lo + (int)((urand() + 1) * 0.5 * (hi - lo + 1)) % (hi - lo + 1);
}

/* A disjoint layout for (B,H,T,inner): the three outer axes in a random memory order, each padded. */
static attn_layout rand_layout(int B, int H, int T, int inner) {
    int ext[3] = {B, H, T}, order[3] = {0, 1, 2};
    for (int i = 2; i > 0; i--) {
        int j = irand(0, i), tmp = order[i];
        order[i] = order[j]; order[j] = tmp;
    }
    int64_t st[3], next = inner + irand(0, 2);       /* innermost of the three first */
    for (int i = 2; i >= 0; i--) {
        st[order[i]] = next;
        next = next * ext[order[i]] + irand(0, 3);
    }
    return (attn_layout){st[0], st[1], st[2]};
}

static void test_sweep(void) {
    for (int it = 0; it < 24; it++) {
        const int Hkv = irand(1, 2), B = irand(1, 3), H = Hkv * irand(1, 3), T = irand(1, 5), S = irand(1, 6);
        const int D = irand(1, 5), Dv = irand(1, 5);
        problem p = make(B, H, Hkv, T, S, D, Dv);
        p.d.scale = (float)(0.85 + 0.65 * urand());
        p.d.q = rand_layout(B, H, T, D);
        p.d.k = rand_layout(B, Hkv, S, D);
        p.d.v = rand_layout(B, Hkv, S, Dv);
        p.d.out = rand_layout(B, H, T, Dv);
        int32_t lens[3 * 5];
        uint8_t allow[3 * 6 * 5 * 6];
        float bias[3 * 6 * 5 * 6];
        attn_mask *m = &p.d.mask;
        int kind = irand(0, 2);
        if (kind) {
            m->valid_lens_kind = (attn_valid_lens_kind)kind;
            m->valid_lens = lens;
            for (int i = 0; i < B * T; i++) lens[i] = irand(0, S + 2);
        }
        m->causal = urand() < -0.4;
        if (urand() < -0.4) {                        /* (B,H,T,S), b and/or h maybe broadcast */
            for (size_t i = 0; i < sizeof allow; i++) allow[i] = urand() > -0.5;
            m->allow = allow;
            m->allow_stride[0] = urand() < 0 ? 0 : (int64_t)H * T * S;
            m->allow_stride[1] = urand() < 0 ? 0 : (int64_t)T * S;
            m->allow_stride[2] = S;
        }
        if (urand() < -0.4) {
            for (size_t i = 0; i < sizeof bias / sizeof bias[0]; i++)
                bias[i] = urand() < -0.9 ? -INFINITY : (float)(2 * urand());
            m->bias = bias;
            m->bias_stride[0] = urand() < 0 ? 0 : (int64_t)H * T * S;
            m->bias_stride[1] = urand() < 0 ? 0 : (int64_t)T * S;
            m->bias_stride[2] = S;
        }
        if (urand() < -0.4) {
            p.d.dropout = urand() < 0 ? 0.1f : 0.5f;
            p.d.seed = (uint64_t)irand(0, 1 << 20);
        }
        char name[32];
        snprintf(name, sizeof name, "sweep%02d", it);
        problem_data(&p);
        check_problem(name, &p);
        problem_free(&p);
    }
}

/* The walk-through of `attn score`: decoder state [5,1,20]; encoder states as keys and values; scale 1. */
static void test_walkthrough(void) {
    const float q[3] = {5, 1, 20};
    const float kv[12] = {3, 12, 45, 59, 2, 5, 1, 43, 5, 4, 3, 45.3f};
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 1, 1, 4, 3, 3), ATTN_OK);
    d.scale = 1.0f;
    float out[3], st[2], lse, w[4];
    size_t fw;
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    void *work = malloc(fw);
    CHECK_STATUS(attn_sdpa_forward(NULL, &d, out, st, w, q, kv, kv, work, fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_logsumexp(st, 1, &lse), ATTN_OK);
    printf("walk-through: weights %.4f %.4f %.4f %.4f  context %.4f %.4f %.4f  lse %.6f\n", w[0], w[1], w[2], w[3],
           out[0], out[1], out[2], lse);
    const float w_want[4] = {0.119203f, 0.0f, 0.0f, 0.880797f};
    const float c_want[3] = {3.880797f, 4.072810f, 45.264239f};
    tu_close_f32("walk-through weights", w, w_want, 4, 1e-6, 1e-5);
    tu_close_f32("walk-through context", out, c_want, 3, 1e-5, 1e-5);

    /* the scores themselves: with a single key, lse = log exp(score) = score */
    float scores[4], sst[2];
    attn_sdpa_desc d1;
    attn_sdpa_desc_init(&d1, 1, 1, 1, 1, 3, 3);
    d1.scale = 1.0f;
    for (int s = 0; s < 4; s++) {
        float o[3];
        CHECK_STATUS(attn_sdpa_forward(NULL, &d1, o, sst, NULL, q, kv + 3 * s, kv + 3 * s, work, fw), ATTN_OK);
        CHECK_STATUS(attn_sdpa_logsumexp(sst, 1, &scores[s]), ATTN_OK);
    }
    printf("walk-through: scores %.1f %.1f %.1f %.1f\n", scores[0], scores[1], scores[2], scores[3]);
    const float s_want[4] = {927, 397, 148, 929};
    tu_close_f32("walk-through scores", scores, s_want, 4, 1e-3, 0);

    /* attn_softmax on the same scores: exp(927) would overflow; the stable softmax does not */
    float x[4] = {927, 397, 148, 929};
    CHECK_STATUS(attn_softmax(x, 4), ATTN_OK);
    tu_close_f32("attn_softmax(927 397 148 929)", x, w_want, 4, 1e-6, 1e-5);
    free(work);
}

static void test_softmax(void) {
    float x[5] = {1, 2, 3, 4, 5}, want[5];
    double z = 0;
    for (int i = 0; i < 5; i++) z += exp(i + 1.0);
    for (int i = 0; i < 5; i++) want[i] = (float)(exp(i + 1.0) / z);
    CHECK_STATUS(attn_softmax(x, 5), ATTN_OK);
    tu_close_f32("softmax 1..5", x, want, 5, 1e-7, 1e-6);
    float one = -3e38f;
    CHECK_STATUS(attn_softmax(&one, 1), ATTN_OK);
    CHECK(one == 1.0f);
    float m[3] = {-INFINITY, 2, -INFINITY};                  /* -inf entries are excluded */
    CHECK_STATUS(attn_softmax(m, 3), ATTN_OK);
    CHECK(m[0] == 0 && m[1] == 1 && m[2] == 0);
    float allm[2] = {-INFINITY, -INFINITY};                  /* fully masked: zeros, not NaN */
    CHECK_STATUS(attn_softmax(allm, 2), ATTN_OK);
    CHECK(allm[0] == 0 && allm[1] == 0);
}

int main(void) {
    test_plain_cases();
    test_mask_cases();
    test_fully_masked();
    test_dropout();
    test_layouts();
    test_everything();
    test_sweep();
    test_walkthrough();
    test_softmax();
    return tu_finish("test_sdpa_ref");
}
