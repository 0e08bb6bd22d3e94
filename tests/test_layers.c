/*
 * test_layers.c — the stateless layers (linear, embedding, dropout, layer norm, mean over time, softmax
 * cross-entropy), Adam and gradient clipping, against PyTorch goldens written by
 * tools/golden/gen_layers.py, plus finite differences and bad-input statuses.
 *
 * Tolerances: goldens are float64 results from float32-exact inputs, so the only error is the C code's
 * float32 arithmetic: |got - want| <= 1e-5 + 1e-5·|want| (GOLD_ATOL/GOLD_RTOL). Finite differences are
 * taken in float32 with a central step h = 1e-2 on smooth functions: 2e-3 + 1e-2·|want| (FD_ATOL/FD_RTOL).
 */
#include "attn.h"
#include "attn/layers.h"
#include "testutil.h"

#include <string.h>

#define GOLD_ATOL 1e-5
#define GOLD_RTOL 1e-5
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2

static attn_st_file F;

/* The golden file in use, and its tensors (tests/testutil.h). */
static const float *gf(const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    return tu_golden_f32(&F, name, ndim, d0, d1, d2, d3);
}
static const int32_t *gi(const char *name, int64_t n) { return tu_golden_i32(&F, name, n); }
static void load(const char *file) { tu_golden_open(&F, file); }

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------------------------------------- */
static void test_linear(void) {
    printf("linear\n");
    enum { N = 3, IN = 5, OUT = 4 };
    const float *x = gf("linear.x", 2, N, IN, 0, 0), *w = gf("linear.w", 2, OUT, IN, 0, 0);
    const float *b = gf("linear.b", 1, OUT, 0, 0, 0), *dy = gf("linear.dy", 2, N, OUT, 0, 0);
    float y[N * OUT], dx[N * IN] = {0}, dw[OUT * IN] = {0}, db[OUT] = {0};
    CHECK_STATUS(attn_linear_forward(y, x, w, b, N, IN, OUT), ATTN_OK);
    tu_close_f32("linear y", y, gf("linear.y", 2, N, OUT, 0, 0), N * OUT, GOLD_ATOL, GOLD_RTOL);
    CHECK_STATUS(attn_linear_backward(dx, dw, db, dy, x, w, N, IN, OUT), ATTN_OK);
    tu_close_f32("linear dx", dx, gf("linear.dx", 2, N, IN, 0, 0), N * IN, GOLD_ATOL, GOLD_RTOL);
    tu_close_f32("linear dw", dw, gf("linear.dw", 2, OUT, IN, 0, 0), OUT * IN, GOLD_ATOL, GOLD_RTOL);
    tu_close_f32("linear db", db, gf("linear.db", 1, OUT, 0, 0, 0), OUT, GOLD_ATOL, GOLD_RTOL);

    /* backward accumulates: a second call (without dx and db) doubles dw only */
    float dw2[OUT * IN], want2[OUT * IN];
    memcpy(dw2, dw, sizeof dw);
    CHECK_STATUS(attn_linear_backward(NULL, dw2, NULL, dy, x, w, N, IN, OUT), ATTN_OK);
    for (int i = 0; i < OUT * IN; i++) want2[i] = 2 * dw[i];
    tu_close_f32("linear dw accumulates", dw2, want2, OUT * IN, 1e-6, 1e-6);

    /* without a bias: y - b */
    float y0[N * OUT], want0[N * OUT];
    CHECK_STATUS(attn_linear_forward(y0, x, w, NULL, N, IN, OUT), ATTN_OK);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) want0[n * OUT + o] = y[n * OUT + o] - b[o];
    tu_close_f32("linear y without bias", y0, want0, N * OUT, 1e-6, 1e-5);

    /* bad input */
    CHECK_STATUS(attn_linear_forward(NULL, x, w, b, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_forward(y, NULL, w, b, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_forward(y, x, NULL, b, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_forward(y, x, w, b, 0, IN, OUT), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_linear_forward(y, x, w, b, N, -1, OUT), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_linear_forward(y, x, w, b, N, IN, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_linear_forward(y, x, w, b, 1 << 20, 1 << 20, OUT), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_linear_backward(dx, NULL, db, dy, x, w, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_backward(dx, dw, db, NULL, x, w, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_backward(dx, dw, db, dy, NULL, w, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_backward(dx, dw, db, dy, x, NULL, N, IN, OUT), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_backward(dx, dw, db, dy, x, w, N, IN, -3), ATTN_ERR_SIZE);
}

/* ------------------------------------------------------------------------------------------------- */
static void test_embedding(void) {
    printf("embedding\n");
    enum { V = 6, D = 3, N = 7 };
    const int32_t *ids = gi("embedding.ids", N);
    const float *table = gf("embedding.table", 2, V, D, 0, 0), *dy = gf("embedding.dy", 2, N, D, 0, 0);
    float y[N * D], dtable[V * D] = {0};
    CHECK_STATUS(attn_embedding_forward(y, ids, table, N, V, D), ATTN_OK);
    tu_close_f32("embedding y", y, gf("embedding.y", 2, N, D, 0, 0), N * D, 0, 0);
    CHECK_STATUS(attn_embedding_backward(dtable, dy, ids, N, V, D), ATTN_OK);
    tu_close_f32("embedding dtable", dtable, gf("embedding.dtable", 2, V, D, 0, 0), V * D, GOLD_ATOL, GOLD_RTOL);

    /* an id out of range: ATTN_ERR_ARG, nothing written (the bad id comes last) */
    int32_t bad[3] = {1, 2, V};
    float y2[3 * D], d2[V * D];
    for (int i = 0; i < 3 * D; i++) y2[i] = 777.0f;
    for (int i = 0; i < V * D; i++) d2[i] = 777.0f;
    CHECK_STATUS(attn_embedding_forward(y2, bad, table, 3, V, D), ATTN_ERR_ARG);
    CHECK_STATUS(attn_embedding_backward(d2, dy, bad, 3, V, D), ATTN_ERR_ARG);
    int untouched = 1;
    for (int i = 0; i < 3 * D; i++) untouched &= y2[i] == 777.0f;
    for (int i = 0; i < V * D; i++) untouched &= d2[i] == 777.0f;
    CHECK(untouched);
    bad[2] = -1;
    CHECK_STATUS(attn_embedding_forward(y2, bad, table, 3, V, D), ATTN_ERR_ARG);
    CHECK_STATUS(attn_embedding_forward(NULL, ids, table, N, V, D), ATTN_ERR_NULL);
    CHECK_STATUS(attn_embedding_forward(y, NULL, table, N, V, D), ATTN_ERR_NULL);
    CHECK_STATUS(attn_embedding_forward(y, ids, NULL, N, V, D), ATTN_ERR_NULL);
    CHECK_STATUS(attn_embedding_forward(y, ids, table, 0, V, D), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_embedding_forward(y, ids, table, N, 0, D), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_embedding_forward(y, ids, table, N, V, -2), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_embedding_backward(NULL, dy, ids, N, V, D), ATTN_ERR_NULL);
    CHECK_STATUS(attn_embedding_backward(dtable, NULL, ids, N, V, D), ATTN_ERR_NULL);
    CHECK_STATUS(attn_embedding_backward(dtable, dy, NULL, N, V, D), ATTN_ERR_NULL);
    CHECK_STATUS(attn_embedding_backward(dtable, dy, ids, N, V, 0), ATTN_ERR_SIZE);
}

/* ------------------------------------------------------------------------------------------------- */
static void test_dropout(void) {
    printf("dropout\n");
    enum { N = 1000 };
    float x[N], y[N], dx[N], dy[N];
    attn_rng r;
    attn_rng_seed(&r, 3);
    attn_rng_fill_uniform(&r, x, N, 0.5f, 1.5f);     /* nonzero, so zeros in y mean "dropped" */
    attn_rng_fill_uniform(&r, dy, N, -1.0f, 1.0f);
    const float p = 0.3f;
    CHECK_STATUS(attn_dropout_forward(y, x, N, p, 99), ATTN_OK);
    int ok = 1, dropped = 0;
    for (int i = 0; i < N; i++) {
        int keep = attn_dropout_keep(99, (uint64_t)i, p);
        dropped += !keep;
        ok &= keep ? y[i] == x[i] * (1.0f / (1.0f - p)) : y[i] == 0.0f;
    }
    CHECK(ok);
    CHECK(dropped > 200 && dropped < 400);
    /* backward accumulates dy·keep/(1-p); in place forward gives the same y */
    for (int i = 0; i < N; i++) dx[i] = 1.0f;
    CHECK_STATUS(attn_dropout_backward(dx, dy, N, p, 99), ATTN_OK);
    ok = 1;
    for (int i = 0; i < N; i++)
        ok &= dx[i] == (attn_dropout_keep(99, (uint64_t)i, p) ? 1.0f + dy[i] * (1.0f / (1.0f - p)) : 1.0f);
    CHECK(ok);
    float z[N];
    memcpy(z, x, sizeof z);
    CHECK_STATUS(attn_dropout_forward(z, z, N, p, 99), ATTN_OK);
    CHECK(memcmp(z, y, sizeof z) == 0);
    /* p = 0 is the identity */
    CHECK_STATUS(attn_dropout_forward(z, x, N, 0.0f, 5), ATTN_OK);
    CHECK(memcmp(z, x, sizeof z) == 0);
    /* bad input */
    CHECK_STATUS(attn_dropout_forward(y, x, N, 1.0f, 1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_dropout_forward(y, x, N, -0.1f, 1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_dropout_forward(y, x, N, NAN, 1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_dropout_forward(NULL, x, N, p, 1), ATTN_ERR_NULL);
    CHECK_STATUS(attn_dropout_forward(y, NULL, N, p, 1), ATTN_ERR_NULL);
    CHECK_STATUS(attn_dropout_forward(y, x, 0, p, 1), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_dropout_backward(NULL, dy, N, p, 1), ATTN_ERR_NULL);
    CHECK_STATUS(attn_dropout_backward(dx, NULL, N, p, 1), ATTN_ERR_NULL);
    CHECK_STATUS(attn_dropout_backward(dx, dy, N, 2.0f, 1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_dropout_backward(dx, dy, 0, p, 1), ATTN_ERR_SIZE);
}

/* ------------------------------------------------------------------------------------------------- */
/* The layer over a slab p = [gamma (C), beta (C)] and its gradients g; cache of cb bytes. */
static double layernorm_loss(float *p, const float *x, const float *G, int N, int C) {
    float y[64];
    char cache[512];
    attn_layernorm l;
    if (attn_layernorm_bind(&l, C, p, NULL) != ATTN_OK) return NAN;
    if (attn_layernorm_forward(&l, cache, sizeof cache, y, x, N) != ATTN_OK) return NAN;
    return dot(y, G, (size_t)N * C);
}

static void test_layernorm(void) {
    printf("layernorm\n");
    enum { N = 4, C = 7 };
    const float *x = gf("layernorm.x", 2, N, C, 0, 0), *gamma = gf("layernorm.gamma", 1, C, 0, 0, 0);
    const float *beta = gf("layernorm.beta", 1, C, 0, 0, 0), *dy = gf("layernorm.dy", 2, N, C, 0, 0);
    float p[2 * C], g[2 * C] = {0}, y[N * C], dx[N * C] = {0};
    CHECK(attn_layernorm_n_params(C) == 2 * C);
    attn_layernorm l;
    CHECK_STATUS(attn_layernorm_bind(&l, C, p, g), ATTN_OK);
    CHECK(l.gamma == p && l.beta == p + C && l.dgamma == g && l.dbeta == g + C && l.eps == 1e-5f);
    CHECK_STATUS(attn_layernorm_init_weights(&l, NULL), ATTN_OK);
    int ones = 1;
    for (int i = 0; i < C; i++) ones &= p[i] == 1.0f && p[C + i] == 0.0f;
    CHECK(ones);
    memcpy(l.gamma, gamma, sizeof(float) * C);
    memcpy(l.beta, beta, sizeof(float) * C);
    size_t cb = 0;
    CHECK_STATUS(attn_layernorm_cache_bytes(&l, N, &cb), ATTN_OK);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, N), ATTN_OK);
    tu_close_f32("layernorm y", y, gf("layernorm.y", 2, N, C, 0, 0), N * C, GOLD_ATOL, GOLD_RTOL);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx, dy, x, N), ATTN_OK);
    tu_close_f32("layernorm dx", dx, gf("layernorm.dx", 2, N, C, 0, 0), N * C, GOLD_ATOL, GOLD_RTOL);
    tu_close_f32("layernorm dgamma", l.dgamma, gf("layernorm.dgamma", 1, C, 0, 0, 0), C, GOLD_ATOL, GOLD_RTOL);
    tu_close_f32("layernorm dbeta", l.dbeta, gf("layernorm.dbeta", 1, C, 0, 0, 0), C, GOLD_ATOL, GOLD_RTOL);

    /* finite differences of L = Σ y·dy with respect to x, gamma and beta */
    const float h = 1e-2f;
    float xp[N * C], pp[2 * C], fdx[N * C], fdp[2 * C];
    memcpy(xp, x, sizeof xp);
    memcpy(pp, p, sizeof pp);
    for (int i = 0; i < N * C; i++) {
        float s = xp[i];
        xp[i] = s + h; double lp = layernorm_loss(pp, xp, dy, N, C);
        xp[i] = s - h; double lm = layernorm_loss(pp, xp, dy, N, C);
        xp[i] = s;
        fdx[i] = (float)((lp - lm) / (2.0 * h));
    }
    for (int i = 0; i < 2 * C; i++) {
        float s = pp[i];
        pp[i] = s + h; double lp = layernorm_loss(pp, xp, dy, N, C);
        pp[i] = s - h; double lm = layernorm_loss(pp, xp, dy, N, C);
        pp[i] = s;
        fdp[i] = (float)((lp - lm) / (2.0 * h));
    }
    tu_close_f32("layernorm dx vs finite differences", dx, fdx, N * C, FD_ATOL, FD_RTOL);
    tu_close_f32("layernorm dgamma vs finite differences", g, fdp, C, FD_ATOL, FD_RTOL);
    tu_close_f32("layernorm dbeta vs finite differences", g + C, fdp + C, C, FD_ATOL, FD_RTOL);

    /* a constant row: finite output (beta), no NaN */
    float cx[C], cy[C];
    for (int i = 0; i < C; i++) cx[i] = 3.0f;
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, cy, cx, 1), ATTN_OK);
    tu_close_f32("layernorm constant row = beta", cy, beta, C, 1e-6, 0);

    /* bad input */
    attn_layernorm inf;                                    /* bound without gradients: inference only */
    CHECK_STATUS(attn_layernorm_bind(&inf, C, p, NULL), ATTN_OK);
    CHECK_STATUS(attn_layernorm_bind(NULL, C, p, g), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_bind(&inf, C, NULL, g), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_bind(&inf, 0, p, g), ATTN_ERR_SIZE);
    CHECK(attn_layernorm_n_params(-1) == 0);
    CHECK_STATUS(attn_layernorm_cache_bytes(&l, N, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_cache_bytes(NULL, N, &cb), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_cache_bytes(&l, 0, &cb), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, NULL, x, N), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, NULL, N), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_forward(NULL, cache, cb, y, x, N), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb - 1, y, x, N), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_layernorm_forward(&l, NULL, cb, y, x, N), ATTN_ERR_WORKSPACE);
    l.eps = -1.0f;
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, N), ATTN_ERR_ARG);
    l.eps = NAN;
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, N), ATTN_ERR_ARG);
    l.eps = 1e-5f;
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, N), ATTN_OK);
    CHECK_STATUS(attn_layernorm_backward(&inf, cache, cb, dx, dy, x, N), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx, NULL, x, N), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx, dy, NULL, N), ATTN_ERR_NULL);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb - 1, dx, dy, x, N), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx, dy, x, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, NULL, dy, x, N), ATTN_OK);
    free(cache);
}

/* Rows are normalized in groups (their sums interleaved): every row of a batch with full groups and a
 * ragged tail gives the bits it gives alone, forward (y) and backward (dx, dgamma, dbeta). */
static void test_layernorm_rows(void) {
    printf("layernorm rows in groups\n");
    enum { N = 19, C = 37 };
    static float x[N * C], dy[N * C], y[N * C], dx[N * C], y1[C], dx1[C], p[2 * C], g[2 * C], g1[2 * C];
    attn_rng r;
    attn_rng_seed(&r, 29);
    attn_rng_fill_uniform(&r, x, N * C, -2.0f, 3.0f);
    attn_rng_fill_uniform(&r, dy, N * C, -1.0f, 1.0f);
    attn_rng_fill_uniform(&r, p, 2 * C, 0.5f, 1.5f);
    attn_layernorm l;
    CHECK_STATUS(attn_layernorm_bind(&l, C, p, g), ATTN_OK);
    size_t cb = 0;
    CHECK_STATUS(attn_layernorm_cache_bytes(&l, N, &cb), ATTN_OK);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, N), ATTN_OK);
    CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx, dy, x, N), ATTN_OK);
    memcpy(g1, g, sizeof g1);                  /* the batch's parameter gradients; then the rows' one by one */
    memset(g, 0, sizeof g);
    int same = 1;
    for (int n = 0; n < N; n++) {
        memset(dx1, 0, sizeof dx1);
        CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y1, x + n * C, 1), ATTN_OK);
        CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx1, dy + n * C, x + n * C, 1), ATTN_OK);
        same &= memcmp(y1, y + n * C, sizeof y1) == 0 && memcmp(dx1, dx + n * C, sizeof dx1) == 0;
    }
    CHECK(same);
    CHECK(memcmp(g, g1, sizeof g) == 0);

    /* every kernel path (its compilation of the row loops) gives the reference path's bits */
    static float yr[N * C], dxr[N * C];
    const attn_isa isa0 = attn_get_isa();
    for (int isa = ATTN_ISA_REF; isa < ATTN_ISA_COUNT; isa++) {
        if (isa == ATTN_ISA_AUTO || attn_set_isa((attn_isa)isa) != ATTN_OK) continue;
        memset(dx, 0, sizeof dx);
        CHECK_STATUS(attn_layernorm_forward(&l, cache, cb, y, x, N), ATTN_OK);
        CHECK_STATUS(attn_layernorm_backward(&l, cache, cb, dx, dy, x, N), ATTN_OK);
        if (isa == ATTN_ISA_REF) {
            memcpy(yr, y, sizeof yr);
            memcpy(dxr, dx, sizeof dxr);
        }
        const int bits = memcmp(y, yr, sizeof yr) == 0 && memcmp(dx, dxr, sizeof dxr) == 0;
        if (!bits) fprintf(stderr, "  layer norm on path %s: not the reference path's bits\n", attn_isa_name((attn_isa)isa));
        CHECK(bits);
    }
    CHECK_STATUS(attn_set_isa(isa0), ATTN_OK);
    free(cache);
}

/* ------------------------------------------------------------------------------------------------- */
static void test_mean_time(void) {
    printf("mean over time\n");
    enum { B = 2, T = 3, C = 4 };
    const float *x = gf("mean_time.x", 3, B, T, C, 0), *dy = gf("mean_time.dy", 2, B, C, 0, 0);
    float y[B * C], dx[B * T * C] = {0};
    CHECK_STATUS(attn_mean_time_forward(y, x, B, T, C), ATTN_OK);
    tu_close_f32("mean_time y", y, gf("mean_time.y", 2, B, C, 0, 0), B * C, GOLD_ATOL, GOLD_RTOL);
    CHECK_STATUS(attn_mean_time_backward(dx, dy, B, T, C), ATTN_OK);
    tu_close_f32("mean_time dx", dx, gf("mean_time.dx", 3, B, T, C, 0), B * T * C, GOLD_ATOL, GOLD_RTOL);
    CHECK_STATUS(attn_mean_time_forward(NULL, x, B, T, C), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mean_time_forward(y, NULL, B, T, C), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mean_time_forward(y, x, 0, T, C), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_mean_time_forward(y, x, B, -1, C), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_mean_time_backward(NULL, dy, B, T, C), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mean_time_backward(dx, NULL, B, T, C), ATTN_ERR_NULL);
    CHECK_STATUS(attn_mean_time_backward(dx, dy, B, T, 0), ATTN_ERR_SIZE);
}

/* ------------------------------------------------------------------------------------------------- */
static double xent_loss(const float *logits, const int32_t *t, const float *w, const float *dl, int N, int C) {
    float losses[16], probs[128];
    attn_softmax_xent_forward(losses, probs, logits, t, w, N, C);
    return dot(losses, dl, (size_t)N);
}

static void test_xent(void) {
    printf("softmax cross-entropy\n");
    enum { N = 5, C = 4 };
    const float *logits = gf("xent.logits", 2, N, C, 0, 0), *w = gf("xent.weights", 1, N, 0, 0, 0);
    const float *dl = gf("xent.dlosses", 1, N, 0, 0, 0);
    const int32_t *t = gi("xent.targets", N);
    float losses[N], probs[N * C], dlogits[N * C] = {0};
    CHECK_STATUS(attn_softmax_xent_forward(losses, probs, logits, t, w, N, C), ATTN_OK);
    tu_close_f32("xent losses", losses, gf("xent.losses", 1, N, 0, 0, 0), N, GOLD_ATOL, GOLD_RTOL);
    tu_close_f32("xent probs", probs, gf("xent.probs", 2, N, C, 0, 0), N * C, GOLD_ATOL, GOLD_RTOL);
    CHECK_STATUS(attn_softmax_xent_backward(dlogits, dl, probs, t, w, N, C), ATTN_OK);
    tu_close_f32("xent dlogits", dlogits, gf("xent.dlogits", 2, N, C, 0, 0), N * C, GOLD_ATOL, GOLD_RTOL);
    int finite = 1;
    for (int i = 0; i < N; i++) finite &= isfinite(losses[i]);
    CHECK(finite);

    /* finite differences on moderate logits (the golden's row of 900s is too coarse in float32) */
    enum { M = 3, K = 5 };
    float lg[M * K], wt[M] = {1.0f, 0.5f, 0.0f}, dls[M] = {0.7f, -1.3f, 2.0f}, pr[M * K], ls[M];
    int32_t tg[M] = {4, 0, 2};
    attn_rng r;
    attn_rng_seed(&r, 17);
    attn_rng_fill_uniform(&r, lg, M * K, -2.0f, 2.0f);
    float an[M * K] = {0}, fd[M * K];
    CHECK_STATUS(attn_softmax_xent_forward(ls, pr, lg, tg, wt, M, K), ATTN_OK);
    CHECK_STATUS(attn_softmax_xent_backward(an, dls, pr, tg, wt, M, K), ATTN_OK);
    const float h = 1e-2f;
    for (int i = 0; i < M * K; i++) {
        float s = lg[i];
        lg[i] = s + h; double lp = xent_loss(lg, tg, wt, dls, M, K);
        lg[i] = s - h; double lm = xent_loss(lg, tg, wt, dls, M, K);
        lg[i] = s;
        fd[i] = (float)((lp - lm) / (2.0 * h));
    }
    tu_close_f32("xent dlogits vs finite differences", an, fd, M * K, FD_ATOL, FD_RTOL);
    /* weights NULL = all ones */
    float l1[M], l2[M], w1[M] = {1, 1, 1};
    CHECK_STATUS(attn_softmax_xent_forward(l1, pr, lg, tg, NULL, M, K), ATTN_OK);
    CHECK_STATUS(attn_softmax_xent_forward(l2, pr, lg, tg, w1, M, K), ATTN_OK);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);

    /* bad input: a target out of range writes nothing */
    int32_t bt[M] = {0, K, 1};
    float sentinel[M] = {5, 5, 5};
    CHECK_STATUS(attn_softmax_xent_forward(sentinel, pr, lg, bt, NULL, M, K), ATTN_ERR_ARG);
    CHECK(sentinel[0] == 5 && sentinel[1] == 5 && sentinel[2] == 5);
    bt[1] = -1;
    CHECK_STATUS(attn_softmax_xent_backward(an, dls, pr, bt, NULL, M, K), ATTN_ERR_ARG);
    CHECK_STATUS(attn_softmax_xent_forward(NULL, pr, lg, tg, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_forward(ls, NULL, lg, tg, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_forward(ls, pr, NULL, tg, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_forward(ls, pr, lg, NULL, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_forward(ls, pr, lg, tg, NULL, 0, K), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_softmax_xent_forward(ls, pr, lg, tg, NULL, M, -1), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_softmax_xent_backward(NULL, dls, pr, tg, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_backward(an, NULL, pr, tg, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_backward(an, dls, NULL, tg, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_backward(an, dls, pr, NULL, NULL, M, K), ATTN_ERR_NULL);
    CHECK_STATUS(attn_softmax_xent_backward(an, dls, pr, tg, NULL, M, 0), ATTN_ERR_SIZE);
}

/* ------------------------------------------------------------------------------------------------- */
static void test_optim(void) {
    printf("adam and clipping\n");
    enum { NP = 37, STEPS = 3 };
    const float *p0 = gf("p0", 1, NP, 0, 0, 0), *grads = gf("grads", 2, STEPS, NP, 0, 0);
    const char *forms[2] = {"torch", "keras"};
    for (int keras = 0; keras < 2; keras++) {
        attn_adam a;
        CHECK_STATUS(attn_adam_alloc(&a, NP, 0.01f), ATTN_OK);
        CHECK(a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f && a.decay == 0.0f && a.t == 0);
        a.keras_eps = keras;
        a.decay = 0.1f;
        if (keras) a.eps = 1e-7f;
        float p[NP];
        memcpy(p, p0, sizeof p);
        for (int t = 1; t <= STEPS; t++) {
            CHECK_STATUS(attn_adam_step(&a, p, grads + (t - 1) * NP), ATTN_OK);
            char name[64], what[64];
            snprintf(name, sizeof name, "%s.p%d", forms[keras], t);
            snprintf(what, sizeof what, "adam %s params step %d", forms[keras], t);
            tu_close_f32(what, p, gf(name, 1, NP, 0, 0, 0), NP, GOLD_ATOL, GOLD_RTOL);
        }
        char name[64];
        snprintf(name, sizeof name, "%s.m", forms[keras]);
        tu_close_f32(keras ? "adam keras m" : "adam torch m", a.m, gf(name, 1, NP, 0, 0, 0), NP, GOLD_ATOL, GOLD_RTOL);
        snprintf(name, sizeof name, "%s.v", forms[keras]);
        tu_close_f32(keras ? "adam keras v" : "adam torch v", a.v, gf(name, 1, NP, 0, 0, 0), NP, 1e-7, GOLD_RTOL);
        CHECK(p[5] == p0[5]);                        /* zero gradient every step: never moves */
        /* bad input */
        CHECK_STATUS(attn_adam_step(&a, NULL, grads), ATTN_ERR_NULL);
        CHECK_STATUS(attn_adam_step(&a, p, NULL), ATTN_ERR_NULL);
        CHECK_STATUS(attn_adam_step(NULL, p, grads), ATTN_ERR_NULL);
        a.beta1 = 1.0f;
        CHECK_STATUS(attn_adam_step(&a, p, grads), ATTN_ERR_ARG);
        a.beta1 = 0.9f; a.lr = NAN;
        CHECK_STATUS(attn_adam_step(&a, p, grads), ATTN_ERR_ARG);
        a.lr = 0.01f; a.eps = -1.0f;
        CHECK_STATUS(attn_adam_step(&a, p, grads), ATTN_ERR_ARG);
        a.eps = 1e-8f; a.decay = -1.0f;
        CHECK_STATUS(attn_adam_step(&a, p, grads), ATTN_ERR_ARG);
        CHECK(a.t == STEPS);                         /* refused steps do not count */
        attn_adam_free(&a);
        CHECK(a.m == NULL && a.v == NULL);
        CHECK_STATUS(attn_adam_step(&a, p, grads), ATTN_ERR_NULL);
    }
    attn_adam a;
    CHECK_STATUS(attn_adam_alloc(NULL, NP, 0.01f), ATTN_ERR_NULL);
    CHECK_STATUS(attn_adam_alloc(&a, 0, 0.01f), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_adam_alloc(&a, NP, -1.0f), ATTN_ERR_ARG);
    CHECK_STATUS(attn_adam_alloc(&a, SIZE_MAX, 0.01f), ATTN_ERR_SIZE);
    attn_adam_free(NULL);

    const char *cases[2] = {"clip_over", "clip_under"};
    for (int c = 0; c < 2; c++) {
        char name[64];
        float g[NP], norm = -1;
        memcpy(g, grads, sizeof g);
        snprintf(name, sizeof name, "%s.max_norm", cases[c]);
        float mx = gf(name, 1, 1, 0, 0, 0)[0];
        CHECK_STATUS(attn_clip_grad_norm(g, NP, mx, &norm), ATTN_OK);
        snprintf(name, sizeof name, "%s.norm", cases[c]);
        tu_close_f32(c ? "clip under: norm" : "clip over: norm", &norm, gf(name, 1, 1, 0, 0, 0), 1, GOLD_ATOL, GOLD_RTOL);
        snprintf(name, sizeof name, "%s.grads", cases[c]);
        tu_close_f32(c ? "clip under: grads" : "clip over: grads", g, gf(name, 1, NP, 0, 0, 0), NP, GOLD_ATOL, GOLD_RTOL);
    }
    float g[NP];
    memcpy(g, grads, sizeof g);
    CHECK_STATUS(attn_clip_grad_norm(g, NP, 1.0f, NULL), ATTN_OK);
    CHECK_STATUS(attn_clip_grad_norm(NULL, NP, 1.0f, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_clip_grad_norm(g, 0, 1.0f, NULL), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_clip_grad_norm(g, NP, 0.0f, NULL), ATTN_ERR_ARG);
    CHECK_STATUS(attn_clip_grad_norm(g, NP, NAN, NULL), ATTN_ERR_ARG);
    CHECK_STATUS(attn_clip_grad_norm(g, NP, INFINITY, NULL), ATTN_ERR_ARG);
}

int main(void) {
    load("layers_basic.safetensors");
    test_linear();
    test_embedding();
    test_dropout();
    test_layernorm();
    test_layernorm_rows();
    test_mean_time();
    test_xent();
    attn_st_free(&F);
    load("layers_optim.safetensors");
    test_optim();
    attn_st_free(&F);
    (void)zeros;
    return tu_finish("test_layers");
}
