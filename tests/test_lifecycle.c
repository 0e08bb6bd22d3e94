/*
 * test_lifecycle.c — the layer lifecycle of attn/layers.h, for every layer with parameters (multi-head
 * attention, one-kernel self-attention, GRU, layer norm, feed-forward, add & norm):
 *
 *   n_params     is exactly what bind lays out: the views tile [0, n) of the parameter slab with no gap
 *                and no overlap, the gradient views sit at the same offsets, and the slabs are allocated
 *                with exactly n floats (the ASan build turns any write past them into a failure);
 *   init_weights is a function of the generator's state: the same seed gives the same bits and leaves
 *                the generator in the same state; the weights are those the library drew before layers
 *                took caller slabs (hashes taken from commit 93026c7's attn_mha_init,
 *                attn_selfattn_init and the two models' init), so checkpoints made from a seed do not
 *                change;
 *   cache_bytes  is a byte count one forward + backward fit in: both run in a buffer of exactly that many
 *                bytes, from pointers of several alignments, with the same results; one byte less is
 *                ATTN_ERR_WORKSPACE. `make test-sanitize` runs this under AddressSanitizer.
 * Also: bound without gradients, backward is ATTN_ERR_NULL; the layers that take a context are run with
 * an explicit context for every kernel path the machine has, each with a cache sized for that context.
 */
#include "attn.h"
#include "attn/layers.h"
#include "attn/seq2seq.h"
#include "attn/transformer.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

/* The views (ptr[i], cnt[i] floats) tile [base, base + n) exactly. */
static int tiles(const float *base, size_t n, float *const *ptr, const size_t *cnt, int k) {
    size_t off[64], len[64];
    if (k > 64) return 0;
    for (int i = 0; i < k; i++) {
        if (!ptr[i] || ptr[i] < base) return 0;
        off[i] = (size_t)(ptr[i] - base);
        len[i] = cnt[i];
    }
    /* sort by offset (k is small) */
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && off[j] < off[j - 1]; j--) {
            size_t t = off[j]; off[j] = off[j - 1]; off[j - 1] = t;
            t = len[j]; len[j] = len[j - 1]; len[j - 1] = t;
        }
    size_t at = 0;
    for (int i = 0; i < k; i++) {
        if (off[i] != at) return 0;
        at += len[i];
    }
    return at == n;
}

/* The gradient views are at the parameter views' offsets. */
static int same_offsets(const float *p, float *const *pv, const float *g, float *const *gv, int k) {
    for (int i = 0; i < k; i++)
        if (!gv[i] || gv[i] - g != pv[i] - p) return 0;
    return 1;
}

static float *slab(size_t n) {                     /* exactly n floats: ASan sees any overrun */
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (p) memset(p, 0, sizeof(float) * n);
    return p;
}

/* ---------------------------------------------------------------------------------------------------
 * One forward + backward of a layer in a given cache: each layer's case fills outputs (y, dx) and its
 * gradients; run_all checks the cache contract around it.
 */
typedef struct lcase {
    const char *name;
    const attn_ctx *ctx;
    void *layer;
    float *grads;                /* the layer's gradient slab (n floats), zeroed before each run */
    size_t n;
    float *y, *dx;               /* outputs of the run */
    size_t ny, ndx;
    attn_status (*run)(struct lcase *c, void *cache, size_t bytes);
} lcase;

enum { B = 2, T = 3, S = 4 };
static float X[512], X2[512], X3[512], DY[512];     /* inputs, filled once */

static void run_all(lcase *c, size_t cb) {
    char lab[160];
    static const size_t offs[4] = {0, 1, 20, 63};
    float *y0 = malloc(sizeof(float) * c->ny), *dx0 = malloc(sizeof(float) * c->ndx), *g0 = slab(c->n);
    int same = 1;
    for (int a = 0; a < 4; a++) {
        char *buf = malloc(cb + offs[a]);           /* ends exactly at the cache's last byte */
        if (!buf || !y0 || !dx0 || !g0) { CHECK(0); free(buf); break; }
        memset(buf, 0xff, cb + offs[a]);           /* NaN everywhere: a read before a write shows */
        memset(c->grads, 0, sizeof(float) * c->n);
        memset(c->dx, 0, sizeof(float) * c->ndx);
        snprintf(lab, sizeof lab, "%s: forward + backward in exactly cache_bytes = %zu, pointer +%zu", c->name,
                 cb, offs[a]);
        attn_status st = c->run(c, buf + offs[a], cb);
        if (st != ATTN_OK) fprintf(stderr, "FAIL %s: %s\n", lab, attn_status_string(st));
        CHECK_STATUS(st, ATTN_OK);
        if (a == 0) {
            memcpy(y0, c->y, sizeof(float) * c->ny);
            memcpy(dx0, c->dx, sizeof(float) * c->ndx);
            memcpy(g0, c->grads, sizeof(float) * c->n);
        } else {
            same &= memcmp(y0, c->y, sizeof(float) * c->ny) == 0 && memcmp(dx0, c->dx, sizeof(float) * c->ndx) == 0 &&
                    memcmp(g0, c->grads, sizeof(float) * c->n) == 0;
        }
        free(buf);
    }
    if (!same) fprintf(stderr, "FAIL %s: results depend on the cache's alignment\n", c->name);
    CHECK(same);
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += fabsf(g0[i]);
    CHECK(s > 0 && s == s);                        /* the backward reached the parameters, no NaN */
    char *buf = malloc(cb);
    CHECK_STATUS(c->run(c, buf, cb - 1), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(c->run(c, NULL, cb), ATTN_ERR_WORKSPACE);
    free(buf); free(y0); free(dx0); free(g0);
}

/* init_weights twice from one seed (same bits, same generator state after), once from another. */
#define CHECK_INIT(init, l1, p1, l2, p2, n, draws)                                                      \
    do {                                                                                                \
        attn_rng r1, r2;                                                                                \
        attn_rng_seed(&r1, 7);                                                                          \
        attn_rng_seed(&r2, 7);                                                                          \
        CHECK_STATUS(init(&(l1), &r1), ATTN_OK);                                                        \
        CHECK_STATUS(init(&(l2), &r2), ATTN_OK);                                                        \
        CHECK(memcmp(p1, p2, sizeof(float) * (n)) == 0);                                                \
        CHECK(r1.state == r2.state);                                                                    \
        attn_rng_seed(&r2, 8);                                                                          \
        CHECK_STATUS(init(&(l2), &r2), ATTN_OK);                                                        \
        CHECK((memcmp(p1, p2, sizeof(float) * (n)) != 0) == (draws));                                   \
        CHECK_STATUS(init(NULL, &r1), ATTN_ERR_NULL);                                                   \
    } while (0)

/* ---------------------------------------------------------------------------------------------------
 * Multi-head attention: Dq 5, Dk 6, Dv 7, Dm 8, H 2; cross-attention with valid lengths and dropout.
 */
enum { MQ = 5, MK = 6, MV = 7, MD = 8, MH = 2 };
static const int32_t VL[B] = {3, 2};

static attn_status mha_run(lcase *c, void *cache, size_t bytes) {
    const attn_mha *m = c->layer;
    attn_mask mask = {0};
    mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    mask.valid_lens = VL;
    attn_status st = attn_mha_forward(c->ctx, m, cache, bytes, c->y, NULL, X, X2, X3, B, T, S, &mask, 0.1f, 5);
    if (st != ATTN_OK) return st;
    /* dx gathers dq (B,T,Dq), dk (B,S,Dk), dv (B,S,Dv) side by side */
    return attn_mha_backward(c->ctx, m, cache, bytes, c->dx, c->dx + B * T * MQ, c->dx + B * T * MQ + B * S * MK, DY,
                             X, X2, X3, B, T, S, &mask, 0.1f, 5);
}

static void test_mha(void) {
    printf("multi-head attention\n");
    const size_t n = attn_mha_n_params(MQ, MK, MV, MD);
    CHECK(n == (size_t)MD * (MQ + MK + MV + MD) + 4 * MD);
    CHECK(attn_mha_n_params(0, MK, MV, MD) == 0);
    float *p = slab(n), *g = slab(n), *p2 = slab(n);
    attn_mha m, m2;
    CHECK_STATUS(attn_mha_bind(&m, MQ, MK, MV, MD, MH, p, g), ATTN_OK);
    CHECK_STATUS(attn_mha_bind(&m2, MQ, MK, MV, MD, MH, p2, NULL), ATTN_OK);
    CHECK(m.params == p && m.grads == g && m.n_params == n && m2.grads == NULL && m2.dwq == NULL);
    float *pv[8] = {m.wq, m.bq, m.wk, m.bk, m.wv, m.bv, m.wo, m.bo};
    float *gv[8] = {m.dwq, m.dbq, m.dwk, m.dbk, m.dwv, m.dbv, m.dwo, m.dbo};
    const size_t cnt[8] = {MD * MQ, MD, MD * MK, MD, MD * MV, MD, MD * MD, MD};
    CHECK(tiles(p, n, pv, cnt, 8));
    CHECK(same_offsets(p, pv, g, gv, 8));
    CHECK_INIT(attn_mha_init_weights, m, p, m2, p2, n, 1);
    /* the weights attn_mha_init(.., seed 42) made before */
    attn_rng r;
    attn_rng_seed(&r, 42);
    CHECK_STATUS(attn_mha_init_weights(&m, &r), ATTN_OK);
    CHECK(fnv1a(p, sizeof(float) * n) == 0x26782a85b9cf2710ULL);
    CHECK_STATUS(attn_mha_bind(&m2, MQ, MK, MV, MD, 3, p2, NULL), ATTN_ERR_SHAPE);
    CHECK_STATUS(attn_mha_bind(&m2, MQ, MK, MV, MD, MH, NULL, g), ATTN_ERR_NULL);

    float y[B * T * MD], dx[B * T * MQ + B * S * (MK + MV)];
    lcase c = {"mha", NULL, &m, g, n, y, dx, B * T * MD, sizeof dx / sizeof dx[0], mha_run};
    for (int i = ATTN_ISA_REF; i < ATTN_ISA_COUNT; i++) {
        attn_ctx ctx;
        if (attn_ctx_init(&ctx, (attn_isa)i, 2) != ATTN_OK) continue;
        char name[64];
        snprintf(name, sizeof name, "mha, path %s", attn_isa_name((attn_isa)i));
        c.name = name;
        c.ctx = &ctx;
        size_t cb = 0;
        CHECK_STATUS(attn_mha_cache_bytes(&ctx, &m, B, T, S, &cb), ATTN_OK);
        run_all(&c, cb);
    }
    /* without gradients, inference only */
    size_t cb = 0;
    CHECK_STATUS(attn_mha_cache_bytes(NULL, &m2, B, T, S, &cb), ATTN_OK);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_mha_forward(NULL, &m2, cache, cb, y, NULL, X, X2, X3, B, T, S, NULL, 0.0f, 0), ATTN_OK);
    CHECK_STATUS(attn_mha_backward(NULL, &m2, cache, cb, NULL, NULL, NULL, DY, X, X2, X3, B, T, S, NULL, 0.0f, 0),
                 ATTN_ERR_NULL);
    attn_ctx bad = {ATTN_ISA_COUNT, 1};
    CHECK_STATUS(attn_mha_cache_bytes(&bad, &m2, B, T, S, &cb), ATTN_ERR_ARG);
    free(cache); free(p); free(g); free(p2);
}

/* ---------------------------------------------------------------------------------------------------
 * Self-attention: Din 6, Dout 4 over (B,T) = (3,5); with and without a mask (two code paths).
 */
enum { SI = 6, SO = 4, SB = 3, ST = 5 };

static attn_status sa_run(lcase *c, void *cache, size_t bytes) {
    const attn_selfattn *l = c->layer;
    const int32_t vl[SB] = {5, 2, 4};
    attn_mask mask = {0};
    mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    mask.valid_lens = vl;
    const attn_mask *mk = strstr(c->name, "masked") ? &mask : NULL;
    attn_status st = attn_selfattn_forward(c->ctx, l, cache, bytes, c->y, NULL, X, SB, ST, mk);
    if (st != ATTN_OK) return st;
    return attn_selfattn_backward(c->ctx, l, cache, bytes, c->dx, DY, X, SB, ST, mk);
}

static void test_selfattn(void) {
    printf("self-attention\n");
    const size_t n = attn_selfattn_n_params(SI, SO);
    CHECK(n == 3 * SI * SO);
    float *p = slab(n), *g = slab(n), *p2 = slab(n);
    attn_selfattn l, l2;
    CHECK_STATUS(attn_selfattn_bind(&l, SI, SO, p, g), ATTN_OK);
    CHECK_STATUS(attn_selfattn_bind(&l2, SI, SO, p2, NULL), ATTN_OK);
    float *pv[1] = {l.w}, *gv[1] = {l.dw};
    const size_t cnt[1] = {n};
    CHECK(tiles(p, n, pv, cnt, 1) && same_offsets(p, pv, g, gv, 1));
    CHECK_INIT(attn_selfattn_init_weights, l, p, l2, p2, n, 1);
    attn_selfattn l3;
    float *p3 = slab(3 * 6 * 4);
    CHECK_STATUS(attn_selfattn_bind(&l3, 6, 4, p3, NULL), ATTN_OK);
    attn_rng r;
    attn_rng_seed(&r, 42);
    CHECK_STATUS(attn_selfattn_init_weights(&l3, &r), ATTN_OK);
    CHECK(fnv1a(p3, sizeof(float) * 3 * 6 * 4) == 0x245d1c5f2d01462cULL);   /* attn_selfattn_init(.., 42) */

    float y[SB * ST * SO], dx[SB * ST * SI];
    const char *names[2] = {"selfattn", "selfattn masked"};
    for (int k = 0; k < 2; k++)
        for (int i = ATTN_ISA_REF; i < ATTN_ISA_COUNT; i++) {
            attn_ctx ctx;
            if (attn_ctx_init(&ctx, (attn_isa)i, 2) != ATTN_OK) continue;
            lcase c = {names[k], &ctx, &l, g, n, y, dx, sizeof y / sizeof y[0], sizeof dx / sizeof dx[0], sa_run};
            size_t cb = 0;
            CHECK_STATUS(attn_selfattn_cache_bytes(&ctx, &l, SB, ST, &cb), ATTN_OK);
            run_all(&c, cb);
        }
    size_t cb = 0;
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l2, SB, ST, &cb), ATTN_OK);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l2, cache, cb, y, NULL, X, SB, ST, NULL), ATTN_OK);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l2, cache, cb, NULL, DY, X, SB, ST, NULL), ATTN_ERR_NULL);
    free(cache); free(p); free(g); free(p2); free(p3);
}

/* ---------------------------------------------------------------------------------------------------
 * GRU: 2 layers, in 3, H 4, over (T,B) = (3,2), training with dropout between the layers.
 */
enum { GL = 2, GI = 3, GH = 4 };

static attn_status gru_run(lcase *c, void *cache, size_t bytes) {
    const attn_gru *g = c->layer;
    attn_status st = attn_gru_forward(c->ctx, g, cache, bytes, c->y, NULL, X, X2, T, B, 1, 9);
    if (st != ATTN_OK) return st;
    return attn_gru_backward(c->ctx, g, cache, bytes, c->dx, NULL, DY, NULL, X, T, B, 1, 9);
}

static void test_gru(void) {
    printf("GRU\n");
    const size_t n = attn_gru_n_params(GL, GI, GH);
    float *p = slab(n), *g = slab(n), *p2 = slab(n);
    attn_gru l, l2;
    CHECK_STATUS(attn_gru_bind(&l, GL, GI, GH, 0.2f, p, g), ATTN_OK);
    CHECK_STATUS(attn_gru_bind(&l2, GL, GI, GH, 0.2f, p2, NULL), ATTN_OK);
    CHECK(l.n_params == n && l.params == p && l.grads == g);
    float *pv[4 * GL], *gv[4 * GL];
    size_t cnt[4 * GL];
    for (int k = 0; k < GL; k++) {
        const size_t in = k ? GH : GI;
        pv[4 * k] = l.w_ih[k]; pv[4 * k + 1] = l.w_hh[k]; pv[4 * k + 2] = l.b_ih[k]; pv[4 * k + 3] = l.b_hh[k];
        gv[4 * k] = l.dw_ih[k]; gv[4 * k + 1] = l.dw_hh[k]; gv[4 * k + 2] = l.db_ih[k]; gv[4 * k + 3] = l.db_hh[k];
        cnt[4 * k] = 3 * GH * in; cnt[4 * k + 1] = 3 * GH * GH; cnt[4 * k + 2] = 3 * GH; cnt[4 * k + 3] = 3 * GH;
    }
    CHECK(tiles(p, n, pv, cnt, 4 * GL) && same_offsets(p, pv, g, gv, 4 * GL));
    CHECK_INIT(attn_gru_init_weights, l, p, l2, p2, n, 1);
    /* Xavier-uniform weights, U(±1/sqrt(H)) biases */
    int in_range = 1;
    for (int k = 0; k < GL; k++) {
        const float a = sqrtf(6.0f / (float)((k ? GH : GI) + 3 * GH)), b = 1.0f / sqrtf((float)GH);
        for (size_t i = 0; i < cnt[4 * k]; i++) in_range &= fabsf(l.w_ih[k][i]) <= a;
        for (int i = 0; i < 3 * GH; i++) in_range &= fabsf(l.b_ih[k][i]) <= b && fabsf(l.b_hh[k][i]) <= b;
    }
    CHECK(in_range);

    float y[T * B * GH], dx[T * B * GI];
    lcase c = {"gru", NULL, &l, g, n, y, dx, sizeof y / sizeof y[0], sizeof dx / sizeof dx[0], gru_run};
    for (int i = ATTN_ISA_REF; i < ATTN_ISA_COUNT; i++) {
        attn_ctx ctx;
        if (attn_ctx_init(&ctx, (attn_isa)i, 1) != ATTN_OK) continue;
        c.ctx = &ctx;
        size_t cb = 0;
        CHECK_STATUS(attn_gru_cache_bytes(&l, T, B, &cb), ATTN_OK);
        run_all(&c, cb);
    }
    size_t cb = 0;
    CHECK_STATUS(attn_gru_cache_bytes(&l2, T, B, &cb), ATTN_OK);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_gru_forward(NULL, &l2, cache, cb, y, NULL, X, NULL, T, B, 0, 0), ATTN_OK);
    CHECK_STATUS(attn_gru_backward(NULL, &l2, cache, cb, NULL, NULL, DY, NULL, X, T, B, 0, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_gru_cache_bytes(&l2, 0, B, &cb), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_gru_init_weights(&(attn_gru){0}, &(attn_rng){0}), ATTN_ERR_ARG);
    free(cache); free(p); free(g); free(p2);
}

/* ---------------------------------------------------------------------------------------------------
 * Layer norm (C 7), feed-forward (D 8, F 12), add & norm (C 8) over N = 6 rows.
 */
enum { LC = 7, FD = 8, FF = 12, RN = 6 };

static attn_status ln_run(lcase *c, void *cache, size_t bytes) {
    attn_status st = attn_layernorm_forward(c->layer, cache, bytes, c->y, X, RN);
    if (st != ATTN_OK) return st;
    return attn_layernorm_backward(c->layer, cache, bytes, c->dx, DY, X, RN);
}

static attn_status ffn_run(lcase *c, void *cache, size_t bytes) {
    attn_status st = attn_ffn_forward(c->layer, cache, bytes, c->y, X, RN);
    if (st != ATTN_OK) return st;
    return attn_ffn_backward(c->layer, cache, bytes, c->dx, DY, X, RN);
}

static attn_status addnorm_run(lcase *c, void *cache, size_t bytes) {
    attn_status st = attn_addnorm_forward(c->layer, cache, bytes, c->y, X, X2, RN, 0.25f, 3);
    if (st != ATTN_OK) return st;
    /* dx: the residual's gradient, then the sublayer's */
    return attn_addnorm_backward(c->layer, cache, bytes, c->dx, c->dx + RN * FD, DY, RN, 0.25f, 3);
}

static void test_layernorm(void) {
    printf("layer norm\n");
    const size_t n = attn_layernorm_n_params(LC);
    CHECK(n == 2 * LC);
    float *p = slab(n), *g = slab(n), *p2 = slab(n);
    attn_layernorm l, l2;
    CHECK_STATUS(attn_layernorm_bind(&l, LC, p, g), ATTN_OK);
    CHECK_STATUS(attn_layernorm_bind(&l2, LC, p2, NULL), ATTN_OK);
    float *pv[2] = {l.gamma, l.beta}, *gv[2] = {l.dgamma, l.dbeta};
    const size_t cnt[2] = {LC, LC};
    CHECK(tiles(p, n, pv, cnt, 2) && same_offsets(p, pv, g, gv, 2));
    CHECK_INIT(attn_layernorm_init_weights, l, p, l2, p2, n, 0);        /* draws nothing */
    attn_rng r0, r1;
    attn_rng_seed(&r0, 3);
    r1 = r0;
    CHECK_STATUS(attn_layernorm_init_weights(&l, &r1), ATTN_OK);
    CHECK(r1.state == r0.state && p[0] == 1.0f && p[LC] == 0.0f);
    for (int i = 0; i < LC; i++) { p[i] = 1.0f + 0.1f * i; p[LC + i] = 0.05f * i; }
    float y[RN * LC], dx[RN * LC];
    lcase c = {"layernorm", NULL, &l, g, n, y, dx, RN * LC, RN * LC, ln_run};
    size_t cb = 0;
    CHECK_STATUS(attn_layernorm_cache_bytes(&l, RN, &cb), ATTN_OK);
    run_all(&c, cb);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_layernorm_forward(&l2, cache, cb, y, X, RN), ATTN_OK);
    CHECK_STATUS(attn_layernorm_backward(&l2, cache, cb, dx, DY, X, RN), ATTN_ERR_NULL);
    free(cache); free(p); free(g); free(p2);
}

static void test_ffn(void) {
    printf("position-wise feed-forward\n");
    const size_t n = attn_ffn_n_params(FD, FF);
    CHECK(n == 2 * FD * FF + FF + FD);
    float *p = slab(n), *g = slab(n), *p2 = slab(n);
    attn_ffn l, l2;
    CHECK_STATUS(attn_ffn_bind(&l, FD, FF, p, g), ATTN_OK);
    CHECK_STATUS(attn_ffn_bind(&l2, FD, FF, p2, NULL), ATTN_OK);
    float *pv[4] = {l.w1, l.b1, l.w2, l.b2}, *gv[4] = {l.dw1, l.db1, l.dw2, l.db2};
    const size_t cnt[4] = {FF * FD, FF, FD * FF, FD};
    CHECK(tiles(p, n, pv, cnt, 4) && same_offsets(p, pv, g, gv, 4));
    CHECK_INIT(attn_ffn_init_weights, l, p, l2, p2, n, 1);
    /* the same draws as the Transformer block's feed-forward: after its four (D,D) attention weights */
    const size_t nb = attn_tf_block_n_params(FD, FF, 0);
    float *bp = slab(nb), *skip = slab(4 * FD * FD);
    attn_tf_block blk;
    CHECK_STATUS(attn_tf_block_bind(&blk, FD, FF, 2, 0, 0.0f, bp, NULL), ATTN_OK);
    attn_rng r1, r2;
    attn_rng_seed(&r1, 11);
    attn_rng_seed(&r2, 11);
    attn_tf_block_init_weights(&blk, &r1);
    attn_rng_fill_uniform(&r2, skip, 4 * FD * FD, -1.0f, 1.0f);
    CHECK_STATUS(attn_ffn_init_weights(&l2, &r2), ATTN_OK);
    CHECK(memcmp(blk.w.w1, l2.w1, sizeof(float) * n) == 0);              /* w1 b1 w2 b2 are contiguous in both */
    CHECK(r1.state == r2.state);
    free(bp); free(skip);

    float y[RN * FD], dx[RN * FD];
    lcase c = {"ffn", NULL, &l, g, n, y, dx, RN * FD, RN * FD, ffn_run};
    size_t cb = 0;
    CHECK_STATUS(attn_ffn_cache_bytes(&l, RN, &cb), ATTN_OK);
    run_all(&c, cb);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_ffn_forward(&l2, cache, cb, y, X, RN), ATTN_OK);
    CHECK_STATUS(attn_ffn_backward(&l2, cache, cb, dx, DY, X, RN), ATTN_ERR_NULL);
    free(cache); free(p); free(g); free(p2);
}

static void test_addnorm(void) {
    printf("add & norm\n");
    const size_t n = attn_addnorm_n_params(FD);
    CHECK(n == 2 * FD);
    float *p = slab(n), *g = slab(n), *p2 = slab(n);
    attn_addnorm l, l2;
    CHECK_STATUS(attn_addnorm_bind(&l, FD, p, g), ATTN_OK);
    CHECK_STATUS(attn_addnorm_bind(&l2, FD, p2, NULL), ATTN_OK);
    float *pv[2] = {l.ln.gamma, l.ln.beta}, *gv[2] = {l.ln.dgamma, l.ln.dbeta};
    const size_t cnt[2] = {FD, FD};
    CHECK(tiles(p, n, pv, cnt, 2) && same_offsets(p, pv, g, gv, 2));
    CHECK_INIT(attn_addnorm_init_weights, l, p, l2, p2, n, 0);
    float y[RN * FD], dx[2 * RN * FD];
    lcase c = {"addnorm", NULL, &l, g, n, y, dx, RN * FD, 2 * RN * FD, addnorm_run};
    size_t cb = 0;
    CHECK_STATUS(attn_addnorm_cache_bytes(&l, RN, &cb), ATTN_OK);
    run_all(&c, cb);
    void *cache = malloc(cb);
    CHECK_STATUS(attn_addnorm_forward(&l2, cache, cb, y, X, X2, RN, 0.0f, 0), ATTN_OK);
    CHECK_STATUS(attn_addnorm_backward(&l2, cache, cb, dx, NULL, DY, RN, 0.0f, 0), ATTN_ERR_NULL);
    free(cache); free(p); free(g); free(p2);
}

/* ---------------------------------------------------------------------------------------------------
 * The models carve their layers from one slab and initialise them in a fixed order: the weights a seed
 * gives are those commit 93026c7 gave (its checkpoints stay valid). If a model's initialisation changes
 * on purpose, update the hash and say so in the commit.
 */
static void test_models(void) {
    printf("models' initial weights for seed 42\n");
    attn_seq2seq s;
    attn_seq2seq_config sc = {11, 13, 5, 6, 2, 0.1f, 7, 4, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_seq2seq_init(&s, NULL, &sc, 42), ATTN_OK);
    CHECK(s.n_params == 1369 && fnv1a(s.params, sizeof(float) * s.n_params) == 0xa15f59066f6ac32bULL);
    attn_seq2seq_free(&s);
    attn_transformer t;
    attn_transformer_config tc = {11, 13, 8, 12, 2, 2, 0.1f, 7, 4, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_transformer_init(&t, NULL, &tc, 42), ATTN_OK);
    CHECK(t.n_params == 2853 && fnv1a(t.params, sizeof(float) * t.n_params) == 0x1fba598faca5a0eaULL);
    attn_transformer_free(&t);
}

int main(void) {
    attn_rng r;
    attn_rng_seed(&r, 1);
    attn_rng_fill_uniform(&r, X, 512, -1.0f, 1.0f);
    attn_rng_fill_uniform(&r, X2, 512, -1.0f, 1.0f);
    attn_rng_fill_uniform(&r, X3, 512, -1.0f, 1.0f);
    attn_rng_fill_uniform(&r, DY, 512, -1.0f, 1.0f);
    test_mha();
    test_selfattn();
    test_gru();
    test_layernorm();
    test_ffn();
    test_addnorm();
    test_models();
    return tu_finish("test_lifecycle");
}
