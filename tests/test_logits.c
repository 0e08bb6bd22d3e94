/*
 * test_logits.c — scaled dot-product attention at any logit size, and keys a row does not see, on every
 * kernel path this CPU runs (the reference included).
 *
 *  1. The defects of a float log-sum-exp (they fail with one): a bias of -1e9 on every key (q = k = 0, S = 4)
 *     must give dv = 0.25·dout, not 1.0·dout; |q|, |k| near 1e4 (logits near 1e8, T = 1 and T = 9, S = 4,
 *     D = 64, scale 1) must give the one-hot gradients float64 gives.
 *  2. NaN and Inf in K and V at keys the mask hides, inside a block other rows see: every path gives what
 *     the reference gives (finite), forward and backward.
 *  3. A random sweep with logits from 1 to 1e4 and biases up to ±FLT_MAX (with -inf), every route (small
 *     heads, decoding rows, query blocks), causal and length masks, grouped-query heads, dropout: each
 *     output and gradient within twice the distance from float64 of a plain fp32 evaluation of the same
 *     math (PyTorch's unfused path: float scores, softmax, P·V and the autograd backward of each). That
 *     distance is a random variable of the roundings: a case where fp32 math happens to round well would
 *     demand more than fp32 can promise, so it is taken as at least what one rounding of the largest
 *     score costs, 2^-24·max|score| (a score's error moves the weights by that much), plus FLOOR (a few
 *     ulps). Distances are measured against each
 *     tensor's natural magnitude, the bound its terms have (out: max|v|; dv: max|dout|; dq:
 *     scale·max‖k‖·max‖dout‖·max‖v‖; dk: the same with q): at large logits the exact gradients are often
 *     tiny sums of terms of that size (near one-hot rows), which no fp32 evaluation gets to relative
 *     precision — PyTorch's neither.
 *
 * Float64 truth: the reference kernels' double twins on the same (float) inputs.
 */
#include "attn.h"
#include "internal.h"
#include "ref/ref.h"
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLOOR 2e-6

static uint64_t g_rng = 0x5eed1e6175ULL;
static uint64_t rnd_u64(void) { return tu_rnd_u64(&g_rng); }
static int rnd_int(int lo, int hi) { return tu_rnd_int(&g_rng, lo, hi); }
static double rnd_u(void) { return (double)(rnd_u64() >> 11) * (1.0 / 9007199254740992.0); }   /* [0,1) */
static float rnd_f(void) { return (float)(2.0 * rnd_u() - 1.0); }                                 /* [-1,1) */

static const attn_isa g_isas[] = {ATTN_ISA_REF, ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
#define N_ISAS ((int)(sizeof g_isas / sizeof g_isas[0]))

/* A contiguous problem and its results. */
typedef struct prob {
    attn_sdpa_desc d;
    size_t nq, nk, nv, no, nrow;
    float *q, *k, *v, *dout, *bias;
    int32_t lens[4];
} prob;

typedef struct result {
    float *out, *stats, *dq, *dk, *dv;
} result;

static void prob_init(prob *p, int B, int H, int Hkv, int T, int S, int D, int Dv) {
    memset(p, 0, sizeof *p);
    attn_sdpa_desc_init(&p->d, B, H, T, S, D, Dv);
    p->d.Hkv = Hkv;
    p->d.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    p->d.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    p->nq = (size_t)B * H * T * D; p->nk = (size_t)B * Hkv * S * D; p->nv = (size_t)B * Hkv * S * Dv;
    p->no = (size_t)B * H * T * Dv; p->nrow = (size_t)B * H * T;
    p->q = calloc(p->nq, sizeof(float)); p->k = calloc(p->nk, sizeof(float));
    p->v = calloc(p->nv, sizeof(float)); p->dout = calloc(p->no, sizeof(float));
}

static void prob_bias(prob *p) {
    const attn_sdpa_desc *d = &p->d;
    p->bias = calloc((size_t)d->B * d->H * d->T * d->S, sizeof(float));
    p->d.mask.bias = p->bias;
    p->d.mask.bias_stride[0] = (int64_t)d->H * d->T * d->S;
    p->d.mask.bias_stride[1] = (int64_t)d->T * d->S;
    p->d.mask.bias_stride[2] = d->S;
}

static void prob_free(prob *p) { free(p->q); free(p->k); free(p->v); free(p->dout); free(p->bias); }

static void result_alloc(result *r, const prob *p) {
    r->out = calloc(p->no, sizeof(float)); r->stats = calloc(2 * p->nrow, sizeof(float));
    r->dq = calloc(p->nq, sizeof(float)); r->dk = calloc(p->nk, sizeof(float)); r->dv = calloc(p->nv, sizeof(float));
}
static void result_free(result *r) { free(r->out); free(r->stats); free(r->dq); free(r->dk); free(r->dv); }

/* Forward and backward on path isa (one thread; ATTN_ISA_COUNT: not run). Returns 0 when the path is not
 * on this CPU. */
static int run(attn_isa isa, const prob *p, result *r) {
    attn_ctx c;
    if (attn_ctx_init(&c, isa, 1) != ATTN_OK) return 0;
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(&c, &p->d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(&c, &p->d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    void *work = malloc(fw > bw ? fw : bw);
    result_alloc(r, p);
    CHECK_STATUS(attn_sdpa_forward(&c, &p->d, r->out, r->stats, NULL, p->q, p->k, p->v, work, fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_backward(&c, &p->d, r->dq, r->dk, r->dv, p->dout, p->q, p->k, p->v, r->out, r->stats,
                                    work, bw), ATTN_OK);
    free(work);
    return 1;
}

/* Float64 truth on the same inputs (out, dq, dk, dv as doubles). */
typedef struct truth {
    double *out, *dq, *dk, *dv;
} truth;

static double *f64(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static void truth_run(const prob *p, truth *t) {
    const attn_sdpa_desc *d = &p->d;
    double *q = f64(p->q, p->nq), *k = f64(p->k, p->nk), *v = f64(p->v, p->nv), *g = f64(p->dout, p->no);
    double *st = calloc(2 * p->nrow, sizeof(double));
    t->out = calloc(p->no, sizeof(double));
    t->dq = calloc(p->nq, sizeof(double)); t->dk = calloc(p->nk, sizeof(double)); t->dv = calloc(p->nv, sizeof(double));
    void *fw = malloc(attn__sdpa_ref_workspace(d, ATTN_PASS_FORWARD, 1));
    void *bw = malloc(attn__sdpa_ref_workspace(d, ATTN_PASS_BACKWARD, 1));
    attn__sdpa_ref_forward_f64(d, t->out, st, NULL, q, k, v, fw);
    attn__sdpa_ref_backward_f64(d, t->dq, t->dk, t->dv, g, q, k, v, t->out, st, bw);
    free(q); free(k); free(v); free(g); free(st); free(fw); free(bw);
}
static void truth_free(truth *t) { free(t->out); free(t->dq); free(t->dk); free(t->dv); }

/* The plain fp32 evaluation (PyTorch's unfused math): scores summed in float, softmax in float (max
 * subtracted, expf, sum, divide), out = P·V; backward dP = dout·Vᵀ, dS = P ∘ (dP - rowsum(P ∘ dP)),
 * dq = scale·dS K, dk = scale·dSᵀ Q, dv = Pᵀ dout. Dropout as the library draws it. */
static void naive32(const prob *p, result *r) {
    const attn_sdpa_desc *d = &p->d;
    const int B = d->B, H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv, G = H / d->Hkv;
    result_alloc(r, p);
    float *s = malloc(sizeof(float) * S), *pw = malloc(sizeof(float) * S), *dp = malloc(sizeof(float) * S);
    const float keep_scale = d->dropout > 0 ? 1.0f / (1.0f - d->dropout) : 1.0f;
    for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
    for (int t = 0; t < T; t++) {
        const int hk = h / G;
        const int64_t row = ((int64_t)b * H + h) * T + t;
        const float *qt = p->q + row * D, *gt = p->dout + row * Dv;
        const int lim = attn__key_limit(&d->mask, b, t, T, S);
        const float *bi = attn__bias_row(&d->mask, b, h, t);
        float mx = -INFINITY;
        for (int j = 0; j < S; j++) {
            const float *kj = p->k + (((int64_t)b * d->Hkv + hk) * S + j) * D;
            float acc = 0.0f;
            for (int x = 0; x < D; x++) acc += qt[x] * kj[x];
            s[j] = j < lim ? acc * d->scale + (bi ? bi[j] : 0.0f) : -INFINITY;
            if (s[j] > mx) mx = s[j];
        }
        float sum = 0.0f;
        for (int j = 0; j < S; j++) sum += (pw[j] = expf(s[j] - mx));
        for (int j = 0; j < S; j++) pw[j] /= sum;
        float *ot = r->out + row * Dv;
        float dot = 0.0f;
        for (int j = 0; j < S; j++) {
            const float *vj = p->v + (((int64_t)b * d->Hkv + hk) * S + j) * Dv;
            const float m = d->dropout > 0 && !attn__dropout_keep(d->seed, (uint64_t)row * S + j, d->dropout)
                                ? 0.0f : keep_scale;
            float g = 0.0f;
            for (int x = 0; x < Dv; x++) {
                if (pw[j] != 0.0f) ot[x] += pw[j] * m * vj[x];
                g += gt[x] * vj[x];
            }
            dp[j] = g * m;
            dot += pw[j] * dp[j];
            float *dvj = r->dv + (((int64_t)b * d->Hkv + hk) * S + j) * Dv;
            for (int x = 0; x < Dv; x++) dvj[x] += pw[j] * m * gt[x];
        }
        for (int j = 0; j < S; j++) {
            const float ds = pw[j] * (dp[j] - dot);
            if (ds == 0.0f) continue;
            const float *kj = p->k + (((int64_t)b * d->Hkv + hk) * S + j) * D;
            float *dkj = r->dk + (((int64_t)b * d->Hkv + hk) * S + j) * D;
            for (int x = 0; x < D; x++) {
                r->dq[row * D + x] += d->scale * ds * kj[x];
                dkj[x] += d->scale * ds * qt[x];
            }
        }
    }
    free(s); free(pw); free(dp);
}

/* max |x - t| / mag (inf when x is not finite where t is) */
static double dist(const float *x, const double *t, size_t n, double mag) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) && isfinite(t[i])) return INFINITY;
        const double a = fabs((double)x[i] - t[i]);
        if (a > e) e = a;
    }
    return mag > 0 ? e / mag : e;
}

/* the largest Euclidean norm of n rows of w floats */
static double max_norm(const float *x, size_t n, int w) {
    double m = 0;
    for (size_t r = 0; r < n; r++) {
        double s = 0;
        for (int i = 0; i < w; i++) s += (double)x[r * w + i] * x[r * w + i];
        if (s > m) m = s;
    }
    return sqrt(m);
}

/* out, dq, dk, dv distances of r from t, each against its natural magnitude */
static void dists(const prob *p, const result *r, const truth *t, double e[4]) {
    const attn_sdpa_desc *d = &p->d;
    const double nk = max_norm(p->k, p->nk / d->D, d->D), nq = max_norm(p->q, p->nq / d->D, d->D);
    const double nv = max_norm(p->v, p->nv / d->Dv, d->Dv), ng = max_norm(p->dout, p->no / d->Dv, d->Dv);
    double mv = 0, mg = 0;
    for (size_t i = 0; i < p->nv; i++) mv = fmax(mv, fabs(p->v[i]));
    for (size_t i = 0; i < p->no; i++) mg = fmax(mg, fabs(p->dout[i]));
    e[0] = dist(r->out, t->out, p->no, mv);
    e[1] = dist(r->dq, t->dq, p->nq, d->scale * nk * ng * nv);
    e[2] = dist(r->dk, t->dk, p->nk, d->scale * nq * ng * nv);
    e[3] = dist(r->dv, t->dv, p->nv, mg);
}

/* ---------------------------------------------------------------------------------------------------
 * 1. The float log-sum-exp's defects.
 */
static void test_bias_every_key(void) {
    for (int ii = 0; ii < N_ISAS; ii++)
        for (int route = 0; route < 3; route++) {
            /* route 0: small heads (D = 4); 1: decoding rows (T = 1, D = 64); 2: query blocks (T = 9) */
            const int T = route == 2 ? 9 : 1, D = route == 0 ? 4 : 64;
            prob p;
            prob_init(&p, 1, 1, 1, T, 4, D, 2);
            prob_bias(&p);
            for (size_t i = 0; i < (size_t)T * 4; i++) p.bias[i] = -1e9f;
            for (size_t i = 0; i < p.nv; i++) p.v[i] = (float)i;
            for (size_t i = 0; i < p.no; i++) p.dout[i] = 1.0f + (float)(i % 2);
            result r;
            if (!run(g_isas[ii], &p, &r)) { prob_free(&p); continue; }
            /* weights 1/4 each: out = mean of v; dv_j = Σ_t dout_t / 4; dq = dk = 0 (q = k = 0, equal weights) */
            int ok = 1;
            for (int t = 0; t < T; t++) ok &= fabsf(r.out[2 * t] - 3.0f) < 1e-5f && fabsf(r.out[2 * t + 1] - 4.0f) < 1e-5f;
            for (int j = 0; j < 4; j++)
                ok &= fabsf(r.dv[2 * j] - 0.25f * T) < 1e-5f && fabsf(r.dv[2 * j + 1] - 0.5f * T) < 1e-5f;
            for (size_t i = 0; i < p.nq; i++) ok &= r.dq[i] == 0.0f;
            CHECK(ok);
            printf("bias -1e9 on every key [%s, T=%d D=%d]: dv[0] = %g (want %g) %s\n", attn_isa_name(g_isas[ii]), T,
                   D, r.dv[0], 0.25 * T, ok ? "ok" : "WRONG");
            result_free(&r);
            prob_free(&p);
        }
}

static void test_huge_logits(void) {
    for (int ii = 0; ii < N_ISAS; ii++)
        for (int T = 1; T <= 9; T += 8)
            for (int rep = 0; rep < 6; rep++) {
                prob p;
                prob_init(&p, 1, 1, 1, T, 4, 64, 8);
                p.d.scale = 1.0f;
                for (size_t i = 0; i < p.nq; i++) p.q[i] = 1250.0f * rnd_f();   /* |q|, |k| near 1e4 */
                for (size_t i = 0; i < p.nk; i++) p.k[i] = 1250.0f * rnd_f();
                for (size_t i = 0; i < p.nv; i++) p.v[i] = rnd_f();
                for (size_t i = 0; i < p.no; i++) p.dout[i] = rnd_f();
                result r, n;
                if (!run(g_isas[ii], &p, &r)) { prob_free(&p); continue; }
                truth t;
                truth_run(&p, &t);
                naive32(&p, &n);
                double e[4], ne[4];
                dists(&p, &r, &t, e);
                dists(&p, &n, &t, ne);
                const double e_out = e[0], e_dv = e[3], n_out = ne[0], n_dv = ne[3];
                const int ok = e_out <= 2 * n_out + FLOOR && e_dv <= 2 * n_dv + FLOOR;
                CHECK(ok);
                if (!ok || rep == 0)
                    printf("logits near 1e8 [%s, T=%d]: out %.2g dv %.2g from float64 (fp32 math: %.2g %.2g) %s\n",
                           attn_isa_name(g_isas[ii]), T, e_out, e_dv, n_out, n_dv, ok ? "ok" : "WRONG");
                truth_free(&t);
                result_free(&r);
                result_free(&n);
                prob_free(&p);
            }
}

/* Non-finite exactly where want is, the finite values within tol (relative, and absolute near 0). */
static int same_or_close(const float *got, const float *want, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        if (isfinite(want[i]) != isfinite(got[i]) || isnan(want[i]) != isnan(got[i])) return 0;
        if (isfinite(want[i]) && !(fabs((double)got[i] - want[i]) <= tol * (1 + fabs(want[i])))) return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------------
 * 2. NaN and Inf at keys a row does not see. Rows of one block (T = 9: the block path; T = 1: decoding;
 * D = 4: small heads) see different keys (per-query lengths); the keys past the shortest length hold NaN
 * in V or Inf in K (so the rows that see them are NaN, and those that do not must stay finite), and key
 * 1's V holds Inf, seen by head 0 and hidden from head 1 by a boolean mask.
 */
static void test_hidden_nan(void) {
    for (int route = 0; route < 3; route++) {
        const int T = route == 1 ? 1 : 9, D = route == 0 ? 4 : 24, S = route == 0 ? 12 : 40, B = 1;
        prob p;
        prob_init(&p, B, 2, 1, T, S, D, 5);
        int32_t *lens = malloc(sizeof(int32_t) * T);
        for (int t = 0; t < T; t++) lens[t] = S / 2 + (t % 3) - 2 * (t % 2);
        p.d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_QUERY;
        p.d.mask.valid_lens = lens;
        for (size_t i = 0; i < p.nq; i++) p.q[i] = rnd_f();
        for (size_t i = 0; i < p.nk; i++) p.k[i] = rnd_f();
        for (size_t i = 0; i < p.nv; i++) p.v[i] = rnd_f();
        for (size_t i = 0; i < p.no; i++) p.dout[i] = rnd_f();
        int minlen = S;
        for (int t = 0; t < T; t++) minlen = lens[t] < minlen ? lens[t] : minlen;
        for (int j = minlen; j < S; j++) {      /* keys some row does not see */
            if (j % 2) p.v[(size_t)j * 5 + 1] = NAN;
            else p.k[(size_t)j * D + 2] = INFINITY;
        }
        /* and a boolean mask hiding key 1 from every row of head 1 (its V holds Inf) */
        uint8_t *allow = malloc((size_t)2 * T * S);
        memset(allow, 1, (size_t)2 * T * S);
        for (int t = 0; t < T; t++) allow[(size_t)(T + t) * S + 1] = 0;
        p.d.mask.allow = allow;
        p.d.mask.allow_stride[0] = (int64_t)2 * T * S; p.d.mask.allow_stride[1] = (int64_t)T * S;
        p.d.mask.allow_stride[2] = S;
        p.v[5 + 3] = INFINITY;                   /* key 1 of the kv head: seen by head 0, so its rows get Inf */
        result want;
        run(ATTN_ISA_REF, &p, &want);
        for (int ii = 1; ii < N_ISAS; ii++) {
            result r;
            if (!run(g_isas[ii], &p, &r)) continue;
            /* every element NaN (or Inf) exactly where the reference's is, the finite ones equal to it; the
             * rows that see no poisoned key are finite */
            int ok = same_or_close(r.out, want.out, p.no, 1e-5) && same_or_close(r.dq, want.dq, p.nq, 1e-4) &&
                     same_or_close(r.dk, want.dk, p.nk, 1e-4) && same_or_close(r.dv, want.dv, p.nv, 1e-4);
            int finite_rows = 0;
            for (size_t row = 0; row < p.nrow; row++) finite_rows += isfinite(r.out[row * 5]) != 0;
            ok &= finite_rows >= T / 3;
            CHECK(ok);
            printf("NaN/Inf at hidden keys [%s, T=%d D=%d S=%d]: %s\n", attn_isa_name(g_isas[ii]), T, D, S,
                   ok ? "as the reference" : "DIFFERS");
            result_free(&r);
        }
        result_free(&want);
        free(lens);
        free(allow);
        prob_free(&p);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * 3. The random sweep.
 */
static float rnd_bias(double M) {
    const double u = rnd_u();
    if (u < 0.45) return 0.0f;
    if (u < 0.55) return -INFINITY;
    if (u < 0.75) return (float)(M * (2 * rnd_u() - 1));
    if (u < 0.85) return -FLT_MAX;
    if (u < 0.92) return (float)(-3.4e38 * rnd_u());
    return (float)(3.4e38 * rnd_u());
}

/* max |scale·q·k| over the problem, in double */
static double max_score(const prob *p) {
    const attn_sdpa_desc *d = &p->d;
    const int G = d->H / d->Hkv;
    double m = 0;
    for (int b = 0; b < d->B; b++)
    for (int h = 0; h < d->H; h++)
    for (int t = 0; t < d->T; t++)
        for (int j = 0; j < d->S; j++) {
            const float *qt = p->q + (((int64_t)b * d->H + h) * d->T + t) * d->D;
            const float *kj = p->k + (((int64_t)b * d->Hkv + h / G) * d->S + j) * d->D;
            double s = 0;
            for (int x = 0; x < d->D; x++) s += (double)qt[x] * kj[x];
            m = fmax(m, fabs(s * d->scale));
        }
    return m;
}

static void test_sweep(void) {
    const double mags[] = {1, 10, 100, 1e3, 1e4};
    const int Ds[] = {4, 8, 16, 33, 64};
    int cases = 0, skipped = 0;
    double worst[N_ISAS];
    for (int ii = 0; ii < N_ISAS; ii++) worst[ii] = 0;
    const char *only = getenv("ATTN_SWEEP_CASE");   /* run one case (debugging) */
    for (int c = 0; c < 240; c++) {
        const double M = mags[c % 5];
        const int D = Ds[rnd_int(0, 4)], Dv = rnd_int(0, 2) ? D : rnd_int(1, 40);
        const int H = 1 << rnd_int(0, 2), Hkv = H >> rnd_int(0, H == 1 ? 0 : 1), B = rnd_int(1, 2);
        const int route = rnd_int(0, 2);        /* T: decoding rows, a few, or blocks */
        const int T = route == 0 ? rnd_int(1, 4) : route == 1 ? rnd_int(5, 20) : rnd_int(21, 80);
        const int S = rnd_int(T > 12 ? T : 1, 80);
        prob p;
        prob_init(&p, B, H, Hkv, T, S, D, Dv);
        /* |score| ~ M: q, k uniform in ±a with scale·a²·sqrt(D)/3 = M */
        const float a = (float)sqrt(3.0 * M / (p.d.scale * sqrt((double)D)));
        for (size_t i = 0; i < p.nq; i++) p.q[i] = a * rnd_f();
        for (size_t i = 0; i < p.nk; i++) p.k[i] = a * rnd_f();
        for (size_t i = 0; i < p.nv; i++) p.v[i] = rnd_f();
        for (size_t i = 0; i < p.no; i++) p.dout[i] = rnd_f();
        const int kind = rnd_int(0, 3);          /* 0 none, 1 causal, 2 lengths, 3 causal + bias */
        if (kind == 1 || kind == 3) p.d.mask.causal = 1;
        if (kind == 2) {
            for (int b = 0; b < B; b++) p.lens[b] = rnd_int(1, S);
            p.d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
            p.d.mask.valid_lens = p.lens;
        }
        if (kind == 3 || rnd_int(0, 2) == 0) {
            prob_bias(&p);
            for (int r = 0; r < B * H * T; r++) {
                float *br = p.bias + (size_t)r * S;
                for (int j = 0; j < S; j++) br[j] = rnd_bias(M);
                if (br[0] == -INFINITY) br[0] = 0.0f;      /* every row keeps a key (key 0 is never masked) */
            }
        }
        if (rnd_int(0, 4) == 0) {
            p.d.dropout = 0.25f;
            p.d.seed = rnd_u64();
        }
        if (only && atoi(only) != c) { prob_free(&p); continue; }
        truth t;
        truth_run(&p, &t);
        result n;
        naive32(&p, &n);
        double n_e[4];
        dists(&p, &n, &t, n_e);
        const double unit = max_score(&p) * 0x1p-24;      /* one rounding of the largest score */
        for (int x = 0; x < 4; x++) n_e[x] = fmax(n_e[x], unit);
        if (!(isfinite(n_e[0]) && isfinite(n_e[1]) && isfinite(n_e[2]) && isfinite(n_e[3]))) {
            skipped++;                          /* fp32 math itself overflowed: no distance to compare with */
        } else {
            cases++;
            for (int ii = 0; ii < N_ISAS; ii++) {
                result r;
                if (!run(g_isas[ii], &p, &r)) continue;
                double e[4];
                dists(&p, &r, &t, e);
                static const char *const names[4] = {"out", "dq", "dk", "dv"};
                for (int x = 0; x < 4; x++) {
                    const int ok = e[x] <= 2 * n_e[x] + FLOOR;
                    CHECK(ok);
                    const double ratio = e[x] / (n_e[x] + FLOOR / 2);
                    if (ratio > worst[ii]) worst[ii] = ratio;
                    if (!ok)
                        printf("  sweep %d [%s] M=%g B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d mask=%d drop=%g: %s %.3g "
                               "from float64, fp32 math %.3g\n", c, attn_isa_name(g_isas[ii]), M, B, H, Hkv, T, S, D,
                               Dv, kind, p.d.dropout, names[x], e[x], n_e[x]);
                }
                result_free(&r);
            }
        }
        result_free(&n);
        truth_free(&t);
        prob_free(&p);
    }
    printf("sweep: %d cases compared (%d where fp32 math itself overflows skipped)\n", cases, skipped);
    for (int ii = 0; ii < N_ISAS; ii++)
        if (attn_cpu_supports(g_isas[ii]) || g_isas[ii] == ATTN_ISA_REF)
            printf("  %-7s worst distance / (fp32 math's + %g/2): %.3f (limit 2)\n", attn_isa_name(g_isas[ii]), FLOOR,
                   worst[ii]);
}

int main(void) {
    test_bias_every_key();
    test_huge_logits();
    test_hidden_nan();
    test_sweep();
    return tu_finish("test_logits");
}
