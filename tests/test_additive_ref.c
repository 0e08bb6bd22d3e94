/*
 * test_additive_ref.c — the reference additive (Bahdanau) attention.
 *
 * For each case (plain; a single decoder step T = 1; each mask kind; a fully masked row; dropout; all
 * together):
 *   1. the double forward against a naive implementation written here from attn.h's words alone;
 *   2. weights of shape (B,T,S) whose rows sum to 1 (or are all 0 when fully masked), never NaN;
 *   3. the double backward against central finite differences of L = Σ dout·out for dq, dk, dv, dwq,
 *      dwk and dwv (h = 1e-6, relative tolerance 1e-6), and that it accumulates (+=);
 *   4. the public float API against the double kernels within ~1e-5.
 * Plus the d2l book's example (identical keys give uniform weights over the valid keys, whatever the
 * parameters: out = [2,3,4,5] and [10,11,12,13]) and dropout's mask and determinism.
 */
#include "attn.h"
#include "internal.h"
#include "ref/ref.h"
#include "testutil.h"

#include <stdint.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b9ULL;
static double urand(void) {                       /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}
static double *alloc_rand(size_t n, double scale) {
    double *x = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = scale * urand();
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

/* ---- the problem: descriptor and its six inputs plus dout, in double ------------------------------ */

enum { Q, K, V, WQ, WK, WV, NT };                 /* the tensors with gradients */
static const char *const tname[NT] = {"dq", "dk", "dv", "dwq", "dwk", "dwv"};

typedef struct problem {
    attn_additive_desc d;
    size_t n[NT], no, nw;
    double *x[NT];                                /* q k v wq wk wv */
    double *g;                                    /* dout (B,T,Dv) */
} problem;

static problem make(int B, int T, int S, int Dq, int Dk, int Dv, int Dh) {
    problem p;
    memset(&p, 0, sizeof p);
    attn_additive_desc_init(&p.d, B, T, S, Dq, Dk, Dv, Dh);
    p.n[Q] = (size_t)B * T * Dq;
    p.n[K] = (size_t)B * S * Dk;
    p.n[V] = (size_t)B * S * Dv;
    p.n[WQ] = (size_t)Dh * Dq;
    p.n[WK] = (size_t)Dh * Dk;
    p.n[WV] = (size_t)Dh;
    p.no = (size_t)B * T * Dv;
    p.nw = (size_t)B * T * S;
    for (int i = 0; i < NT; i++) p.x[i] = alloc_rand(p.n[i], i >= WQ ? 0.8 : 1.0);
    p.g = alloc_rand(p.no, 1.0);
    return p;
}
static void problem_free(problem *p) {
    for (int i = 0; i < NT; i++) free(p->x[i]);
    free(p->g);
}

/* ---- the naive oracle ------------------------------------------------------------------------------ */

static void naive_forward(const attn_additive_desc *d, double *out, double *weights, double *const x[NT]) {
    const int B = d->B, T = d->T, S = d->S, Dq = d->Dq, Dk = d->Dk, Dv = d->Dv, Dh = d->Dh;
    const attn_mask *m = &d->mask;
    double *sc = malloc(sizeof(double) * S);
    int *ok = malloc(sizeof(int) * S);
    for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
        double mx = -INFINITY;
        for (int s = 0; s < S; s++) {
            double score = 0;
            for (int j = 0; j < Dh; j++) {
                double hq = 0, hk = 0;
                for (int i = 0; i < Dq; i++) hq += x[WQ][j * Dq + i] * x[Q][(b * T + t) * Dq + i];
                for (int i = 0; i < Dk; i++) hk += x[WK][j * Dk + i] * x[K][(b * S + s) * Dk + i];
                score += x[WV][j] * tanh(hq + hk);
            }
            if (m->bias) score += m->bias[b * m->bias_stride[0] + t * m->bias_stride[2] + s];
            ok[s] = score != -INFINITY;
            if (m->valid_lens_kind == ATTN_VALID_LENS_PER_BATCH && s >= m->valid_lens[b]) ok[s] = 0;
            if (m->valid_lens_kind == ATTN_VALID_LENS_PER_QUERY && s >= m->valid_lens[b * T + t]) ok[s] = 0;
            if (m->causal && s > t + (S - T)) ok[s] = 0;
            if (m->allow && !m->allow[b * m->allow_stride[0] + t * m->allow_stride[2] + s]) ok[s] = 0;
            sc[s] = score;
            if (ok[s] && score > mx) mx = score;
        }
        double z = 0;
        for (int s = 0; s < S; s++) z += ok[s] ? exp(sc[s] - mx) : 0;
        for (int j = 0; j < Dv; j++) out[(b * T + t) * Dv + j] = 0;
        for (int s = 0; s < S; s++) {
            double w = ok[s] ? exp(sc[s] - mx) / z : 0;
            if (weights) weights[(b * T + t) * S + s] = w;
            double keep = 1;
            if (d->dropout > 0)
                keep = attn__dropout_keep(d->seed, ((uint64_t)b * T + t) * S + s, d->dropout) ? 1 / (1 - (double)d->dropout) : 0;
            for (int j = 0; j < Dv; j++) out[(b * T + t) * Dv + j] += w * keep * x[V][(b * S + s) * Dv + j];
        }
    }
    free(sc);
    free(ok);
}

/* ---- checks ----------------------------------------------------------------------------------------- */

static double loss(problem *p, double *out, void *work) {
    double *const *x = p->x;
    attn__additive_ref_forward_f64(&p->d, out, NULL, x[Q], x[K], NULL, x[V], x[WQ], x[WK], x[WV], work);
    double L = 0;
    for (size_t i = 0; i < p->no; i++) L += p->g[i] * out[i];
    return L;
}

static void check_problem(const char *name, problem *p) {
    const attn_additive_desc *d = &p->d;
    double *const *x = p->x;
    char what[128];
    printf("%s: B=%d T=%d S=%d Dq=%d Dk=%d Dv=%d Dh=%d dropout=%g\n", name, d->B, d->T, d->S, d->Dq, d->Dk, d->Dv,
           d->Dh, d->dropout);
    CHECK_STATUS(attn_additive_validate(d), ATTN_OK);
    void *fwork = malloc(attn__additive_ref_workspace(d, ATTN_PASS_FORWARD));
    void *bwork = malloc(attn__additive_ref_workspace(d, ATTN_PASS_BACKWARD));

    /* 1-2. forward against the oracle; weight rows */
    double *out = calloc(p->no, sizeof(double)), *w = calloc(p->nw, sizeof(double));
    double *out_n = calloc(p->no, sizeof(double)), *w_n = calloc(p->nw, sizeof(double));
    CHECK_STATUS(attn__additive_ref_forward_f64(d, out, w, x[Q], x[K], NULL, x[V], x[WQ], x[WK], x[WV], fwork), ATTN_OK);
    naive_forward(d, out_n, w_n, x);
    snprintf(what, sizeof what, "%s out vs naive", name);
    tu_close_f64(what, out, out_n, p->no, 1e-12, 1e-10);
    snprintf(what, sizeof what, "%s weights vs naive", name);
    tu_close_f64(what, w, w_n, p->nw, 1e-12, 1e-10);
    CHECK(!any_nan(out, p->no) && !any_nan(w, p->nw));
    int rows_ok = 1;
    for (size_t r = 0; r < (size_t)d->B * d->T; r++) {
        double sum = 0;
        for (int s = 0; s < d->S; s++) sum += w[r * d->S + s];
        if (sum != 0.0 && fabs(sum - 1) > 1e-12) rows_ok = 0;
    }
    CHECK(rows_ok);

    /* 3. backward: accumulates onto -0.25; against finite differences */
    double *grad[NT];
    for (int i = 0; i < NT; i++) {
        grad[i] = malloc(sizeof(double) * p->n[i]);
        for (size_t j = 0; j < p->n[i]; j++) grad[i][j] = -0.25;
    }
    CHECK_STATUS(attn__additive_ref_backward_f64(d, grad[Q], grad[K], NULL, grad[V], grad[WQ], grad[WK], grad[WV], p->g,
                                                 x[Q], x[K], NULL, x[V], x[WQ], x[WK], x[WV], bwork), ATTN_OK);
    const double h = 1e-6;
    for (int i = 0; i < NT; i++) {
        CHECK(!any_nan(grad[i], p->n[i]));
        double *fd = malloc(sizeof(double) * p->n[i]);
        for (size_t j = 0; j < p->n[i]; j++) {
            grad[i][j] += 0.25;
            double x0 = x[i][j];
            x[i][j] = x0 + h; double lp = loss(p, out, fwork);
            x[i][j] = x0 - h; double lm = loss(p, out, fwork);
            x[i][j] = x0;
            fd[j] = (lp - lm) / (2 * h);
        }
        snprintf(what, sizeof what, "%s %s vs FD", name, tname[i]);
        tu_close_f64(what, grad[i], fd, p->n[i], 1e-8, 1e-6);
        free(fd);
    }

    /* 4. the public float API against the double kernels on the same (float-rounded) inputs */
    float *xf[NT], *gradf[NT];
    double *xr[NT], *gradr[NT];
    for (int i = 0; i < NT; i++) {
        xf[i] = to_f32(x[i], p->n[i]);
        xr[i] = to_f64(xf[i], p->n[i]);
        gradf[i] = calloc(p->n[i], sizeof(float));
        gradr[i] = calloc(p->n[i], sizeof(double));
    }
    float *gf = to_f32(p->g, p->no), *outf = calloc(p->no, sizeof(float)), *wf = calloc(p->nw, sizeof(float));
    double *gr = to_f64(gf, p->no);
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_additive_workspace_size(NULL, d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_additive_workspace_size(NULL, d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    void *work = malloc(fw > bw ? fw : bw);
    CHECK_STATUS(attn_additive_forward(NULL, d, outf, wf, xf[Q], xf[K], xf[V], xf[WQ], xf[WK], xf[WV], work, fw), ATTN_OK);
    CHECK_STATUS(attn_additive_backward(NULL, d, gradf[Q], gradf[K], gradf[V], gradf[WQ], gradf[WK], gradf[WV], gf,
                                        xf[Q], xf[K], xf[V], xf[WQ], xf[WK], xf[WV], work, bw), ATTN_OK);
    attn__additive_ref_forward_f64(d, out, w, xr[Q], xr[K], NULL, xr[V], xr[WQ], xr[WK], xr[WV], fwork);
    attn__additive_ref_backward_f64(d, gradr[Q], gradr[K], NULL, gradr[V], gradr[WQ], gradr[WK], gradr[WV], gr,
                                    xr[Q], xr[K], NULL, xr[V], xr[WQ], xr[WK], xr[WV], bwork);
    float *t;
    snprintf(what, sizeof what, "%s float out vs double", name);
    t = to_f32(out, p->no); tu_close_f32(what, outf, t, p->no, 1e-6, 1e-5); free(t);
    snprintf(what, sizeof what, "%s float weights vs double", name);
    t = to_f32(w, p->nw); tu_close_f32(what, wf, t, p->nw, 1e-6, 1e-5); free(t);
    for (int i = 0; i < NT; i++) {
        snprintf(what, sizeof what, "%s float %s vs double", name, tname[i]);
        t = to_f32(gradr[i], p->n[i]); tu_close_f32(what, gradf[i], t, p->n[i], 1e-6, 1e-5); free(t);
    }

    for (int i = 0; i < NT; i++) { free(grad[i]); free(xf[i]); free(xr[i]); free(gradf[i]); free(gradr[i]); }
    free(gf); free(outf); free(wf); free(gr); free(work);
    free(out); free(w); free(out_n); free(w_n); free(fwork); free(bwork);
}

/* ---- cases ------------------------------------------------------------------------------------------- */

static void test_cases(void) {
    problem p;
    p = make(2, 3, 4, 3, 5, 2, 4);
    check_problem("plain", &p); problem_free(&p);

    p = make(3, 1, 6, 4, 4, 3, 5);                        /* one decoder step, as in seq2seq */
    check_problem("decoder_step_T1", &p); problem_free(&p);

    int32_t vl_b[2] = {2, 9};                             /* 9 > S: clamped */
    p = make(2, 3, 4, 3, 3, 2, 3);
    p.d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    p.d.mask.valid_lens = vl_b;
    check_problem("valid_lens_per_batch", &p); problem_free(&p);

    int32_t vl_q[6] = {1, 0, 4, 3, 2, 4};                 /* a 0: fully masked row */
    p = make(2, 3, 4, 3, 3, 2, 3);
    p.d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_QUERY;
    p.d.mask.valid_lens = vl_q;
    check_problem("valid_lens_per_query", &p); problem_free(&p);

    p = make(1, 4, 3, 2, 2, 2, 3);                        /* causal with T > S: first row sees nothing */
    p.d.mask.causal = 1;
    check_problem("causal_T4S3", &p); problem_free(&p);

    uint8_t allow[2 * 3 * 4];
    for (size_t i = 0; i < sizeof allow; i++) allow[i] = urand() > -0.4;
    memset(allow + 8, 0, 4);                              /* (b=0, t=2): fully masked */
    p = make(2, 3, 4, 3, 3, 2, 3);
    p.d.mask.allow = allow;
    p.d.mask.allow_stride[0] = 12; p.d.mask.allow_stride[2] = 4;
    check_problem("allow", &p); problem_free(&p);

    float bias[3 * 4];                                    /* (T,S) broadcast over batch */
    for (int i = 0; i < 12; i++) bias[i] = (float)urand();
    bias[2] = -INFINITY;
    p = make(2, 3, 4, 3, 3, 2, 3);
    p.d.mask.bias = bias;
    p.d.mask.bias_stride[2] = 4;
    check_problem("bias", &p); problem_free(&p);

    p = make(2, 3, 5, 3, 3, 4, 3);
    p.d.dropout = 0.3f;
    p.d.seed = 1234;
    check_problem("dropout_p0.3", &p); problem_free(&p);

    int32_t vl_e[2] = {4, 3};
    p = make(2, 3, 4, 2, 3, 3, 2);
    p.d.mask = (attn_mask){.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH, .valid_lens = vl_e, .causal = 1, .allow = allow,
                           .allow_stride = {12, 0, 4}, .bias = bias, .bias_stride = {0, 0, 4}};
    p.d.dropout = 0.2f;
    p.d.seed = 99;
    check_problem("everything", &p); problem_free(&p);
}

/* d2l 10.3: queries (2,1,20), keys all ones (2,10,2), values arange(40) as (10,4) for both batch rows,
 * valid lengths [2, 6]. Identical keys give identical scores, so the weights are uniform over the valid
 * keys and out is the mean of the first valid value rows, whatever W_q, W_k, w_v are. */
static void test_d2l_example(void) {
    const int B = 2, T = 1, S = 10, Dq = 20, Dk = 2, Dv = 4, Dh = 8;
    attn_additive_desc d;
    CHECK_STATUS(attn_additive_desc_init(&d, B, T, S, Dq, Dk, Dv, Dh), ATTN_OK);
    int32_t vl[2] = {2, 6};
    d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    d.mask.valid_lens = vl;
    float q[2 * 20], k[2 * 10 * 2], v[2 * 10 * 4], wq[8 * 20], wk[8 * 2], wv[8];
    for (int i = 0; i < 40; i++) q[i] = (float)urand();
    for (int i = 0; i < 40; i++) k[i] = 1.0f;
    for (int i = 0; i < 80; i++) v[i] = (float)(i % 40);
    for (int i = 0; i < 160; i++) wq[i] = (float)(0.3 * urand());
    for (int i = 0; i < 16; i++) wk[i] = (float)(0.3 * urand());
    for (int i = 0; i < 8; i++) wv[i] = (float)urand();
    float out[8], w[20];
    size_t fw;
    CHECK_STATUS(attn_additive_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    void *work = malloc(fw);
    CHECK_STATUS(attn_additive_forward(NULL, &d, out, w, q, k, v, wq, wk, wv, work, fw), ATTN_OK);
    printf("d2l example: out %g %g %g %g | %g %g %g %g\n", out[0], out[1], out[2], out[3], out[4], out[5], out[6],
           out[7]);
    const float want[8] = {2, 3, 4, 5, 10, 11, 12, 13};
    tu_close_f32("d2l example out", out, want, 8, 1e-5, 1e-6);
    float w_want[20] = {0};
    w_want[0] = w_want[1] = 0.5f;
    for (int s = 0; s < 6; s++) w_want[10 + s] = 1.0f / 6;
    tu_close_f32("d2l example weights (2,1,10)", w, w_want, 20, 1e-7, 1e-6);
    free(work);
}

static void test_dropout_mask(void) {
    /* V = identity (S = Dv) reads the mask off: out_ts = m_ts w_ts */
    const int B = 2, T = 8, S = 16;
    problem p = make(B, T, S, 3, 3, S, 4);
    memset(p.x[V], 0, sizeof(double) * p.n[V]);
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++) p.x[V][((size_t)b * S + s) * S + s] = 1;
    p.d.dropout = 0.3f;
    p.d.seed = 5;
    double *out = calloc(p.no, sizeof(double)), *out2 = calloc(p.no, sizeof(double)), *w = calloc(p.nw, sizeof(double));
    void *work = malloc(attn__additive_ref_workspace(&p.d, ATTN_PASS_FORWARD));
    double *const *x = p.x;
    attn__additive_ref_forward_f64(&p.d, out, w, x[Q], x[K], NULL, x[V], x[WQ], x[WK], x[WV], work);
    size_t agree = 0, dropped = 0, n = (size_t)B * T * S;
    for (size_t i = 0; i < n; i++) {
        int keep = attn__dropout_keep(5, i, 0.3f);
        double want = keep ? w[i] / (1 - 0.3f) : 0;
        agree += fabs(out[i] - want) <= 1e-12;
        dropped += !keep;
    }
    printf("additive dropout p=0.3: %zu of %zu dropped (%.3f); %zu of %zu outputs = m·w\n", dropped, n,
           (double)dropped / n, agree, n);
    CHECK(agree == n);
    CHECK(fabs((double)dropped / n - 0.3) < 0.06);
    attn__additive_ref_forward_f64(&p.d, out2, NULL, x[Q], x[K], NULL, x[V], x[WQ], x[WK], x[WV], work);
    CHECK(memcmp(out, out2, sizeof(double) * p.no) == 0);
    p.d.seed = 6;
    attn__additive_ref_forward_f64(&p.d, out2, NULL, x[Q], x[K], NULL, x[V], x[WQ], x[WK], x[WV], work);
    CHECK(memcmp(out, out2, sizeof(double) * p.no) != 0);
    free(out); free(out2); free(w); free(work);
    problem_free(&p);
}

/* Keys that are also the values (k == v, Dk == Dv, as the seq2seq decoder calls it) and one gradient
 * buffer for both: the backward adds dk and dv into it, the same as computing them apart and summing. */
static void test_alias_kv(void) {
    const int B = 2, T = 1, S = 5, Dq = 3, Dkv = 4, Dh = 3;
    attn_additive_desc d;
    attn_additive_desc_init(&d, B, T, S, Dq, Dkv, Dkv, Dh);
    float q[2 * 3], kv[2 * 5 * 4], wq[3 * 3], wk[3 * 4], wv[3], dout[2 * 4];
    for (int i = 0; i < 6; i++) q[i] = (float)urand();
    for (int i = 0; i < 40; i++) kv[i] = (float)urand();
    for (int i = 0; i < 9; i++) wq[i] = (float)urand();
    for (int i = 0; i < 12; i++) wk[i] = (float)urand();
    for (int i = 0; i < 3; i++) wv[i] = (float)urand();
    for (int i = 0; i < 8; i++) dout[i] = (float)urand();
    float dq[6] = {0}, dk[40] = {0}, dv[40] = {0}, dkv[40] = {0}, dwq[9] = {0}, dwk[12] = {0}, dwv[3] = {0};
    size_t bw;
    attn_additive_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &bw);
    void *work = malloc(bw);
    CHECK_STATUS(attn_additive_backward(NULL, &d, dq, dk, dv, dwq, dwk, dwv, dout, q, kv, kv, wq, wk, wv, work, bw), ATTN_OK);
    CHECK_STATUS(attn_additive_backward(NULL, &d, dq, dkv, dkv, dwq, dwk, dwv, dout, q, kv, kv, wq, wk, wv, work, bw),
                 ATTN_OK);
    float sum[40];
    for (int i = 0; i < 40; i++) sum[i] = dk[i] + dv[i];
    tu_close_f32("aliased dk == dv buffer vs dk + dv", dkv, sum, 40, 1e-7, 1e-6);
    free(work);
}

int main(void) {
    test_cases();
    test_d2l_example();
    test_dropout_mask();
    test_alias_kv();
    return tu_finish("test_additive_ref");
}
