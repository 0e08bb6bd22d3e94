/*
 * test_mha.c — the multi-head attention layer and the IMDB self-attention layer against PyTorch goldens
 * (tools/golden/gen_layers.py: d2l-style MHA with explicit W_q, W_k, W_v, W_o), on every kernel path the
 * machine runs, with and without returned weights (which switches between the reference and the fused
 * attention). Also: self-attention through MHA with q = k = v and one gradient buffer, dropout checked
 * by finite differences, initialization ranges, and bad-input statuses.
 *
 * Tolerances: goldens are float64 from float32-exact inputs: |got - want| <= 1e-5 + 1e-5·|want|
 * (GOLD_ATOL/GOLD_RTOL). Finite differences in float32 with h = 1e-2: 3e-3 + 2e-2·|want|.
 */
#include "attn.h"
#include "attn/layers.h"
#include "testutil.h"

#include <string.h>

#define GOLD_ATOL 1e-5
#define GOLD_RTOL 1e-5

static attn_st_file F;

/* The golden file in use, and its tensors (tests/testutil.h). */
static const float *gf(const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    return tu_golden_f32(&F, name, ndim, d0, d1, d2, d3);
}
static const int32_t *gi(const char *name, int64_t n) { return tu_golden_i32(&F, name, n); }
static void load(const char *file) { tu_golden_open(&F, file); }

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* A layer on a slab of its own (parameters, then zeroed gradients) with its weights drawn from a
 * generator seeded with seed: what the layers' old *_init did, made of bind + init_weights. */
static attn_status mha_new(attn_mha *m, int Dq, int Dk, int Dv, int Dm, int H, uint64_t seed) {
    const size_t n = attn_mha_n_params(Dq, Dk, Dv, Dm);
    float *slab = calloc(2 * (n ? n : 1), sizeof(float));
    if (!slab) return ATTN_ERR_NOMEM;
    attn_status st = attn_mha_bind(m, Dq, Dk, Dv, Dm, H, slab, slab + n);
    attn_rng r;
    attn_rng_seed(&r, seed);
    if (st == ATTN_OK) st = attn_mha_init_weights(m, &r);
    if (st != ATTN_OK) free(slab);
    return st;
}

static void mha_del(attn_mha *m) {
    if (!m) return;
    free(m->params);
    memset(m, 0, sizeof *m);
}

static attn_status sa_new(attn_selfattn *l, int Din, int Dout, uint64_t seed) {
    const size_t n = attn_selfattn_n_params(Din, Dout);
    float *slab = calloc(2 * (n ? n : 1), sizeof(float));
    if (!slab) return ATTN_ERR_NOMEM;
    attn_status st = attn_selfattn_bind(l, Din, Dout, slab, slab + n);
    attn_rng r;
    attn_rng_seed(&r, seed);
    if (st == ATTN_OK) st = attn_selfattn_init_weights(l, &r);
    if (st != ATTN_OK) free(slab);
    return st;
}

static void sa_del(attn_selfattn *l) {
    if (!l) return;
    free(l->params);
    memset(l, 0, sizeof *l);
}

static void label(char *buf, size_t n, const char *isa, const char *cas, const char *what) {
    snprintf(buf, n, "%s %s %s", isa, cas, what);
}

/* Copies the golden parameters "<prefix>.wq" ... into the layer and clears its gradients. */
static void set_params(attn_mha *m, const char *prefix) {
    const char *names[8] = {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"};
    float *dst[8] = {m->wq, m->bq, m->wk, m->bk, m->wv, m->bv, m->wo, m->bo};
    const int rows[8] = {m->Dm, m->Dm, m->Dm, m->Dm, m->Dm, m->Dm, m->Dm, m->Dm};
    const int cols[8] = {m->Dq, 0, m->Dk, 0, m->Dv, 0, m->Dm, 0};
    for (int i = 0; i < 8; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", prefix, names[i]);
        const float *src = cols[i] ? gf(name, 2, rows[i], cols[i], 0, 0) : gf(name, 1, rows[i], 0, 0, 0);
        memcpy(dst[i], src, sizeof(float) * (size_t)rows[i] * (cols[i] ? cols[i] : 1));
    }
    memset(m->grads, 0, sizeof(float) * m->n_params);
}

/* Compares the eight parameter gradients with "<prefix>.d<name>"; cas names the case in the output. */
static void check_param_grads(const attn_mha *m, const char *isa, const char *prefix, const char *cas) {
    const char *names[8] = {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"};
    const float *got[8] = {m->dwq, m->dbq, m->dwk, m->dbk, m->dwv, m->dbv, m->dwo, m->dbo};
    const int cols[8] = {m->Dq, 0, m->Dk, 0, m->Dv, 0, m->Dm, 0};
    for (int i = 0; i < 8; i++) {
        char name[64], what[96];
        snprintf(name, sizeof name, "%s.d%s", prefix, names[i]);
        snprintf(what, sizeof what, "d%s", names[i]);
        const float *want = cols[i] ? gf(name, 2, m->Dm, cols[i], 0, 0) : gf(name, 1, m->Dm, 0, 0, 0);
        char lab[128];
        label(lab, sizeof lab, isa, cas, what);
        tu_close_f32(lab, got[i], want, (size_t)m->Dm * (cols[i] ? cols[i] : 1), GOLD_ATOL, GOLD_RTOL);
    }
}

/* ------------------------------------------------------------------------------------------------- */
/* Cross-attention with valid lengths, per batch row and per query. */
static void test_cross(const char *isa) {
    enum { B = 2, T = 3, S = 4, H = 2, Dq = 5, Dk = 6, Dv = 7, Dm = 8 };
    attn_mha m;
    CHECK_STATUS(mha_new(&m, Dq, Dk, Dv, Dm, H, 1), ATTN_OK);
    const float *q = gf("cross.q", 3, B, T, Dq, 0), *k = gf("cross.k", 3, B, S, Dk, 0);
    const float *v = gf("cross.v", 3, B, S, Dv, 0);
    size_t cb;
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, T, S, &cb), ATTN_OK);
    void *cache = malloc(cb);
    const char *cases[2] = {"vl_batch", "vl_query"};
    for (int c = 0; c < 2; c++) {
        attn_mask mask = {0};
        char name[64], lab[128];
        snprintf(name, sizeof name, "%s.valid_lens", cases[c]);
        mask.valid_lens_kind = c == 0 ? ATTN_VALID_LENS_PER_BATCH : ATTN_VALID_LENS_PER_QUERY;
        mask.valid_lens = gi(name, c == 0 ? B : B * T);
        for (int with_weights = 1; with_weights >= 0; with_weights--) {
            set_params(&m, "cross");
            float out[B * T * Dm], weights[B * H * T * S];
            float *dq = zeros(B * T * Dq), *dk = zeros(B * S * Dk), *dv = zeros(B * S * Dv);
            char cas[64];
            snprintf(cas, sizeof cas, "%s%s", cases[c], with_weights ? "+weights" : "");
            CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, with_weights ? weights : NULL, q, k, v, B, T, S,
                                          &mask, 0.0f, 0), ATTN_OK);
            snprintf(name, sizeof name, "%s.out", cases[c]);
            label(lab, sizeof lab, isa, cas, "out");
            tu_close_f32(lab, out, gf(name, 3, B, T, Dm, 0), B * T * Dm, GOLD_ATOL, GOLD_RTOL);
            if (with_weights) {
                snprintf(name, sizeof name, "%s.weights", cases[c]);
                label(lab, sizeof lab, isa, cas, "weights");
                tu_close_f32(lab, weights, gf(name, 4, B, H, T, S), B * H * T * S, GOLD_ATOL, GOLD_RTOL);
            }
            snprintf(name, sizeof name, "%s.dout", cases[c]);
            const float *dout = gf(name, 3, B, T, Dm, 0);
            CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, dk, dv, dout, q, k, v, B, T, S, &mask, 0.0f, 0),
                         ATTN_OK);
            snprintf(name, sizeof name, "%s.dq", cases[c]);
            label(lab, sizeof lab, isa, cas, "dq");
            tu_close_f32(lab, dq, gf(name, 3, B, T, Dq, 0), B * T * Dq, GOLD_ATOL, GOLD_RTOL);
            snprintf(name, sizeof name, "%s.dk", cases[c]);
            label(lab, sizeof lab, isa, cas, "dk");
            tu_close_f32(lab, dk, gf(name, 3, B, S, Dk, 0), B * S * Dk, GOLD_ATOL, GOLD_RTOL);
            snprintf(name, sizeof name, "%s.dv", cases[c]);
            label(lab, sizeof lab, isa, cas, "dv");
            tu_close_f32(lab, dv, gf(name, 3, B, S, Dv, 0), B * S * Dv, GOLD_ATOL, GOLD_RTOL);
            check_param_grads(&m, isa, cases[c], cas);
            /* NULL input gradients are skipped; parameter gradients still accumulate (doubled) */
            float dwo1[Dm * Dm];
            memcpy(dwo1, m.dwo, sizeof dwo1);
            CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, NULL, NULL, NULL, dout, q, k, v, B, T, S, &mask, 0.0f, 0),
                         ATTN_OK);
            int doubled = 1;
            for (int i = 0; i < Dm * Dm; i++) doubled &= fabsf(m.dwo[i] - 2 * dwo1[i]) <= 1e-6f + 1e-6f * fabsf(dwo1[i]);
            CHECK(doubled);
            free(dq); free(dk); free(dv);
        }
    }
    free(cache);
    mha_del(&m);
}

/* ------------------------------------------------------------------------------------------------- */
/* Causal self-attention: q = k = v = x and dq = dk = dv = dx, one buffer; gradients add up. */
static void test_causal_self(const char *isa) {
    enum { B = 2, T = 4, D = 8, H = 2 };
    attn_mha m;
    CHECK_STATUS(mha_new(&m, D, D, D, D, H, 2), ATTN_OK);
    set_params(&m, "causal");
    const float *x = gf("causal.x", 3, B, T, D, 0), *dout = gf("causal.dout", 3, B, T, D, 0);
    size_t cb;
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, T, T, &cb), ATTN_OK);
    void *cache = malloc(cb);
    attn_mask mask = {0};
    mask.causal = 1;
    float out[B * T * D], weights[B * H * T * T], dx[B * T * D] = {0};
    char lab[128];
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, weights, x, x, x, B, T, T, &mask, 0.0f, 0), ATTN_OK);
    label(lab, sizeof lab, isa, "causal", "out");
    tu_close_f32(lab, out, gf("causal.out", 3, B, T, D, 0), B * T * D, GOLD_ATOL, GOLD_RTOL);
    label(lab, sizeof lab, isa, "causal", "weights");
    tu_close_f32(lab, weights, gf("causal.weights", 4, B, H, T, T), B * H * T * T, GOLD_ATOL, GOLD_RTOL);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dx, dx, dx, dout, x, x, x, B, T, T, &mask, 0.0f, 0), ATTN_OK);
    label(lab, sizeof lab, isa, "causal", "dx (one buffer for dq, dk, dv)");
    tu_close_f32(lab, dx, gf("causal.dx", 3, B, T, D, 0), B * T * D, GOLD_ATOL, GOLD_RTOL);
    check_param_grads(&m, isa, "causal", "causal");

    /* the same through three buffers, summed */
    float dq[B * T * D] = {0}, dk[B * T * D] = {0}, dv[B * T * D] = {0}, sum[B * T * D];
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, x, x, x, B, T, T, &mask, 0.0f, 0), ATTN_OK);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, dk, dv, dout, x, x, x, B, T, T, &mask, 0.0f, 0), ATTN_OK);
    for (int i = 0; i < B * T * D; i++) sum[i] = dq[i] + dk[i] + dv[i];
    label(lab, sizeof lab, isa, "causal", "dq + dk + dv (three buffers)");
    tu_close_f32(lab, sum, dx, B * T * D, 1e-6, 1e-5);
    free(cache);
    mha_del(&m);
}

/* ------------------------------------------------------------------------------------------------- */
/* Dropout inside MHA: same seed, same output; the backward matches finite differences of the forward
 * with the mask held fixed (same seed). */
static double mha_loss(attn_mha *m, void *cache, size_t cb, const float *q, const float *k, const float *v,
                       const float *g, int B, int T, int S, float p, uint64_t seed) {
    float out[64];
    if (attn_mha_forward(NULL, m, cache, cb, out, NULL, q, k, v, B, T, S, NULL, p, seed) != ATTN_OK) return NAN;
    double s = 0;
    for (int i = 0; i < B * T * m->Dm; i++) s += (double)out[i] * g[i];
    return s;
}

static void test_dropout(void) {
    enum { B = 1, T = 3, S = 4, H = 2, Dq = 3, Dk = 4, Dv = 2, Dm = 4 };
    attn_mha m;
    CHECK_STATUS(mha_new(&m, Dq, Dk, Dv, Dm, H, 5), ATTN_OK);
    float q[B * T * Dq], k[B * S * Dk], v[B * S * Dv], g[B * T * Dm];
    attn_rng r;
    attn_rng_seed(&r, 21);
    attn_rng_fill_uniform(&r, q, B * T * Dq, -1.5f, 1.5f);
    attn_rng_fill_uniform(&r, k, B * S * Dk, -1.5f, 1.5f);
    attn_rng_fill_uniform(&r, v, B * S * Dv, -1.5f, 1.5f);
    attn_rng_fill_uniform(&r, g, B * T * Dm, -1.0f, 1.0f);
    size_t cb;
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, T, S, &cb), ATTN_OK);
    void *cache = malloc(cb);
    const float p = 0.4f;
    const uint64_t seed = 77;
    float o1[B * T * Dm], o2[B * T * Dm], o0[B * T * Dm];
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, o1, NULL, q, k, v, B, T, S, NULL, p, seed), ATTN_OK);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, o2, NULL, q, k, v, B, T, S, NULL, p, seed), ATTN_OK);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, o0, NULL, q, k, v, B, T, S, NULL, 0.0f, seed), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof o1) == 0);
    CHECK(memcmp(o1, o0, sizeof o1) != 0);

    float dq[B * T * Dq] = {0}, dk[B * S * Dk] = {0}, dv[B * S * Dv] = {0};
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, o1, NULL, q, k, v, B, T, S, NULL, p, seed), ATTN_OK);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, dk, dv, g, q, k, v, B, T, S, NULL, p, seed), ATTN_OK);
    const float h = 1e-2f;
    float *xs[3] = {q, k, v}, *ds[3] = {dq, dk, dv};
    const int ns[3] = {B * T * Dq, B * S * Dk, B * S * Dv};
    const char *names[3] = {"dropout 0.4: dq vs finite differences", "dropout 0.4: dk vs finite differences",
                            "dropout 0.4: dv vs finite differences"};
    for (int a = 0; a < 3; a++) {
        float fd[16];
        for (int i = 0; i < ns[a]; i++) {
            float s = xs[a][i];
            xs[a][i] = s + h; double lp = mha_loss(&m, cache, cb, q, k, v, g, B, T, S, p, seed);
            xs[a][i] = s - h; double lm = mha_loss(&m, cache, cb, q, k, v, g, B, T, S, p, seed);
            xs[a][i] = s;
            fd[i] = (float)((lp - lm) / (2.0 * h));
        }
        tu_close_f32(names[a], ds[a], fd, (size_t)ns[a], 3e-3, 2e-2);
    }
    /* and the output projection's weight, through the parameter array */
    float fdw[Dm * Dm];
    for (int i = 0; i < Dm * Dm; i++) {
        float s = m.wo[i];
        m.wo[i] = s + h; double lp = mha_loss(&m, cache, cb, q, k, v, g, B, T, S, p, seed);
        m.wo[i] = s - h; double lm = mha_loss(&m, cache, cb, q, k, v, g, B, T, S, p, seed);
        m.wo[i] = s;
        fdw[i] = (float)((lp - lm) / (2.0 * h));
    }
    tu_close_f32("dropout 0.4: dwo vs finite differences", m.dwo, fdw, Dm * Dm, 3e-3, 2e-2);
    free(cache);
    mha_del(&m);
}

/* ------------------------------------------------------------------------------------------------- */
static void test_init_and_bad_input(void) {
    enum { B = 2, T = 3, S = 4, H = 2, Dq = 5, Dk = 6, Dv = 7, Dm = 8 };
    attn_mha m, m2;
    CHECK_STATUS(mha_new(&m, Dq, Dk, Dv, Dm, H, 123), ATTN_OK);
    CHECK_STATUS(mha_new(&m2, Dq, Dk, Dv, Dm, H, 123), ATTN_OK);
    CHECK(m.n_params == (size_t)Dm * (Dq + Dk + Dv + Dm) + 4 * Dm);
    CHECK(memcmp(m.params, m2.params, sizeof(float) * m.n_params) == 0);
    CHECK(m.grads == m.params + m.n_params && m.wq == m.params && m.dwq == m.grads && m.bo + Dm == m.params + m.n_params);
    int in_range = 1, grads_zero = 1, nonzero = 0;
    const float *ws[8] = {m.wq, m.bq, m.wk, m.bk, m.wv, m.bv, m.wo, m.bo};
    const int ins[8] = {Dq, Dq, Dk, Dk, Dv, Dv, Dm, Dm};
    const int cnt[8] = {Dm * Dq, Dm, Dm * Dk, Dm, Dm * Dv, Dm, Dm * Dm, Dm};
    for (int j = 0; j < 8; j++) {
        float bound = 1.0f / sqrtf((float)ins[j]);
        for (int i = 0; i < cnt[j]; i++) {
            in_range &= ws[j][i] >= -bound && ws[j][i] <= bound;
            nonzero += ws[j][i] != 0.0f;
        }
    }
    for (size_t i = 0; i < m.n_params; i++) grads_zero &= m.grads[i] == 0.0f;
    CHECK(in_range);
    CHECK(grads_zero);
    CHECK(nonzero > (int)m.n_params - 3);
    mha_del(&m2);
    CHECK_STATUS(mha_new(&m2, Dq, Dk, Dv, Dm, H, 124), ATTN_OK);
    CHECK(memcmp(m.params, m2.params, sizeof(float) * m.n_params) != 0);
    mha_del(&m2);
    CHECK(m2.params == NULL);
    mha_del(NULL);

    CHECK_STATUS(mha_new(NULL, Dq, Dk, Dv, Dm, H, 1), ATTN_ERR_NULL);
    CHECK_STATUS(mha_new(&m2, Dq, Dk, Dv, 9, H, 1), ATTN_ERR_SHAPE);
    CHECK_STATUS(mha_new(&m2, 0, Dk, Dv, Dm, H, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(mha_new(&m2, Dq, -1, Dv, Dm, H, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(mha_new(&m2, Dq, Dk, 0, Dm, H, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(mha_new(&m2, Dq, Dk, Dv, 0, H, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(mha_new(&m2, Dq, Dk, Dv, Dm, 0, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(mha_new(&m2, 1 << 20, Dk, Dv, 1 << 20, 1, 1), ATTN_ERR_SIZE);

    size_t cb;
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, T, S, &cb), ATTN_OK);
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, T, S, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_cache_bytes(NULL, NULL, B, T, S, &cb), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, 0, T, S, &cb), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, -1, S, &cb), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m, B, T, 0, &cb), ATTN_ERR_SIZE);
    char *cache = malloc(cb + 1);
    float q[B * T * Dq] = {0}, k[B * S * Dk] = {0}, v[B * S * Dv] = {0}, out[B * T * Dm], dout[B * T * Dm] = {0};
    float dq[B * T * Dq] = {0};
    /* any alignment of the caller's cache works */
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache + 1, cb, out, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_OK);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache + 1, cb, dq, NULL, NULL, dout, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_OK);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb - 1, out, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_mha_forward(NULL, &m, NULL, cb, out, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb - 1, dq, NULL, NULL, dout, q, k, v, B, T, S, NULL, 0.0f, 0),
                 ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_mha_forward(NULL, NULL, cache, cb, out, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, NULL, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, NULL, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, NULL, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, NULL, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, v, 0, T, S, NULL, 0.0f, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, v, B, T, S, NULL, 1.0f, 0), ATTN_ERR_ARG);
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, v, B, T, S, NULL, NAN, 0), ATTN_ERR_ARG);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, NULL, NULL, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, NULL, NULL, dout, NULL, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_backward(NULL, NULL, cache, cb, dq, NULL, NULL, dout, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, NULL, NULL, dout, q, k, v, B, T, S, NULL, -0.5f, 0), ATTN_ERR_ARG);
    /* a bad mask is refused before anything runs */
    int32_t neg[B] = {2, -1};
    attn_mask bad = {0};
    bad.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    bad.valid_lens = neg;
    CHECK(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, v, B, T, S, &bad, 0.0f, 0) < 0);
    bad.valid_lens = NULL;
    CHECK(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, v, B, T, S, &bad, 0.0f, 0) < 0);
    /* a layer whose sizes were changed after init */
    m.H = 0;
    CHECK_STATUS(attn_mha_forward(NULL, &m, cache, cb, out, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_SIZE);
    m.H = 3;
    CHECK_STATUS(attn_mha_backward(NULL, &m, cache, cb, dq, NULL, NULL, dout, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_SHAPE);
    m.H = H;
    /* a layer that was freed (or never made) */
    attn_mha dead = {0};
    CHECK_STATUS(attn_mha_forward(NULL, &dead, cache, cb, out, NULL, q, k, v, B, T, S, NULL, 0.0f, 0), ATTN_ERR_NULL);
    free(cache);
    mha_del(&m);
}

/* ------------------------------------------------------------------------------------------------- */
/* The IMDB layer: W (3,Din,Dout), scale 1/8. */
static void test_selfattn(const char *isa) {
    enum { B = 2, T = 5, Din = 6, Dout = 4 };
    attn_selfattn l;
    CHECK_STATUS(sa_new(&l, Din, Dout, 3), ATTN_OK);
    CHECK(l.scale == 0.5f);                              /* 1/sqrt(4) by default */
    l.scale = 1.0f / 8.0f;
    memcpy(l.w, gf("w", 3, 3, Din, Dout, 0), sizeof(float) * 3 * Din * Dout);
    const float *x = gf("x", 3, B, T, Din, 0);
    size_t cb;
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, B, T, &cb), ATTN_OK);
    void *cache = malloc(cb);
    const char *cases[2] = {"plain", "masked"};
    for (int c = 0; c < 2; c++) {
        attn_mask mask = {0};
        char name[64], lab[128];
        if (c == 1) {
            mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
            mask.valid_lens = gi("masked.valid_lens", B);
        }
        for (int with_weights = 1; with_weights >= 0; with_weights--) {
            char cas[64];
            snprintf(cas, sizeof cas, "selfattn %s%s", cases[c], with_weights ? "+weights" : "");
            memset(l.dw, 0, sizeof(float) * l.n_params);
            float out[B * T * Dout], weights[B * T * T], dx[B * T * Din] = {0};
            CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, out, with_weights ? weights : NULL, x, B, T, &mask),
                         ATTN_OK);
            snprintf(name, sizeof name, "%s.out", cases[c]);
            label(lab, sizeof lab, isa, cas, "out");
            tu_close_f32(lab, out, gf(name, 3, B, T, Dout, 0), B * T * Dout, GOLD_ATOL, GOLD_RTOL);
            if (with_weights) {
                snprintf(name, sizeof name, "%s.weights", cases[c]);
                label(lab, sizeof lab, isa, cas, "weights");
                tu_close_f32(lab, weights, gf(name, 3, B, T, T, 0), B * T * T, GOLD_ATOL, GOLD_RTOL);
            }
            snprintf(name, sizeof name, "%s.dout", cases[c]);
            const float *dout = gf(name, 3, B, T, Dout, 0);
            /* the caller's out may be overwritten between forward and backward */
            memset(out, 0, sizeof out);
            CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, dx, dout, x, B, T, &mask), ATTN_OK);
            snprintf(name, sizeof name, "%s.dx", cases[c]);
            label(lab, sizeof lab, isa, cas, "dx");
            tu_close_f32(lab, dx, gf(name, 3, B, T, Din, 0), B * T * Din, GOLD_ATOL, GOLD_RTOL);
            snprintf(name, sizeof name, "%s.dw", cases[c]);
            label(lab, sizeof lab, isa, cas, "dw");
            tu_close_f32(lab, l.dw, gf(name, 3, 3, Din, Dout, 0), 3 * Din * Dout, GOLD_ATOL, GOLD_RTOL);
        }
    }
    free(cache);
    sa_del(&l);
}

static void test_selfattn_init_and_bad_input(void) {
    enum { B = 2, T = 5, Din = 6, Dout = 4 };
    attn_selfattn l;
    CHECK_STATUS(sa_new(&l, 128, 128, 9), ATTN_OK);
    CHECK(l.n_params == 3 * 128 * 128 && l.dw == l.w + l.n_params);
    int in_range = 1, zero = 1;
    double s = 0;
    for (size_t i = 0; i < l.n_params; i++) {
        in_range &= l.w[i] >= -0.05f && l.w[i] < 0.05f;
        zero &= l.dw[i] == 0.0f;
        s += fabsf(l.w[i]);
    }
    CHECK(in_range && zero);
    CHECK(fabs(s / l.n_params - 0.025) < 0.001);       /* mean |U(-0.05,0.05)| */
    sa_del(&l);
    CHECK(l.w == NULL);
    sa_del(NULL);

    CHECK_STATUS(sa_new(NULL, Din, Dout, 1), ATTN_ERR_NULL);
    CHECK_STATUS(sa_new(&l, 0, Dout, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(sa_new(&l, Din, -4, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(sa_new(&l, Din, Dout, 1), ATTN_OK);
    size_t cb;
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, B, T, &cb), ATTN_OK);
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, NULL, B, T, &cb), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, 0, T, &cb), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, B, 0, &cb), ATTN_ERR_SIZE);
    void *cache = malloc(cb);
    float x[B * T * Din] = {0}, out[B * T * Dout], dx[B * T * Din] = {0}, dout[B * T * Dout] = {0};
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, out, NULL, x, B, T, NULL), ATTN_OK);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, NULL, dout, x, B, T, NULL), ATTN_OK);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb - 1, out, NULL, x, B, T, NULL), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, NULL, cb, out, NULL, x, B, T, NULL), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, 16, dx, dout, x, B, T, NULL), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_selfattn_forward(NULL, NULL, cache, cb, out, NULL, x, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, NULL, NULL, x, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, out, NULL, NULL, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, out, NULL, x, -1, T, NULL), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, dx, NULL, x, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, dx, dout, NULL, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_backward(NULL, NULL, cache, cb, dx, dout, x, B, T, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, dx, dout, x, B, 0, NULL), ATTN_ERR_SIZE);
    l.scale = NAN;
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, out, NULL, x, B, T, NULL), ATTN_ERR_ARG);
    l.scale = 0.125f;
    int32_t neg[B] = {-3, 1};
    attn_mask bad = {0};
    bad.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    bad.valid_lens = neg;
    CHECK(attn_selfattn_forward(NULL, &l, cache, cb, out, NULL, x, B, T, &bad) < 0);
    free(cache);
    sa_del(&l);
}

int main(void) {
    load("layers_mha.safetensors");
    attn_isa saved = attn_get_isa();
    for (int i = ATTN_ISA_REF; i < ATTN_ISA_COUNT; i++) {
        if (attn_set_isa((attn_isa)i) != ATTN_OK) {
            printf("(path %s not available here: skipped)\n", attn_isa_name((attn_isa)i));
            continue;
        }
        printf("multi-head attention, path %s\n", attn_isa_name((attn_isa)i));
        test_cross(attn_isa_name((attn_isa)i));
        test_causal_self(attn_isa_name((attn_isa)i));
    }
    attn_set_isa(saved);
    printf("dropout, init, bad input\n");
    test_dropout();
    test_init_and_bad_input();
    attn_st_free(&F);

    load("layers_selfattn.safetensors");
    for (int i = ATTN_ISA_REF; i < ATTN_ISA_COUNT; i++) {
        if (attn_set_isa((attn_isa)i) != ATTN_OK) continue;
        printf("self-attention layer, path %s\n", attn_isa_name((attn_isa)i));
        test_selfattn(attn_isa_name((attn_isa)i));
    }
    attn_set_isa(saved);
    test_selfattn_init_and_bad_input();
    attn_st_free(&F);
    return tu_finish("test_mha");
}
