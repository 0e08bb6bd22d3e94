/*
 * test_sparse.c — the sparse mask parts of scaled dot-product attention (sliding window, sinks, sink
 * logits, ALiBi) beyond the sweeps of test_fused and the PyTorch cases of test_golden:
 *   1. validation: bad window edges, sink counts, non-finite logits or slopes; additive attention refuses
 *      the parts; attn_alibi_slopes gives the paper's slopes
 *   2. finite differences in double: the reference backward (dq, dk, dv) with every sparse part on,
 *      soft-capping too
 *   3. the sink logits' gradient (attn_sdpa_sink_backward) against central differences of the double
 *      reference's loss in z, from the fp32 reference's and each fused path's out and stats
 *   4. work skipped: the fused kernels' count of computed scores under a causal window lies between the
 *      visible (query, key) pairs and those plus one block edge per row, far below the dense count
 *   5. bf16 tensors on the AMX and AVX512-BF16 paths (where this CPU has them) run through the conversion path
 *   6. block maps: the Longformer and BigBird helpers' maps, and with blocks of 64 the fused kernels form
 *      exactly the listed blocks' scores, forward and backward
 * Every check prints the largest error it saw.
 */
#include "attn.h"
#include "internal.h"
#include "ref/ref.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x5eed5a1dULL;

static double *rand_f64(size_t n) {
    double *x = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) x[i] = tu_rnd_f(&g_rng);
    return x;
}

/* ---- 1. validation --------------------------------------------------------------------------------- */

static void test_validation(void) {
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 2, 4, 4, 8, 8), ATTN_OK);
    d.mask.window = 1;
    d.mask.window_left = -1;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.window_left = 3;
    d.mask.window_right = -2;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.window_right = 0;
    d.mask.sinks = -1;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.sinks = 2;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    float z[2] = {0.5f, NAN}, sl[2] = {0.25f, INFINITY};
    d.mask.sink_logits = z;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    z[1] = -1.0f;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d.mask.alibi_slopes = sl;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    sl[1] = 0.125f;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d.mask.softcap = -1.0f;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.softcap = NAN;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.softcap = INFINITY;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);
    d.mask.softcap = 30.0f;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    uint8_t map[4] = {1, 0, 1, 1};
    d.mask.block_map = map;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_ARG);           /* block size 0 */
    d.mask.block_size = 2;
    d.mask.block_map_stride[1] = -1;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_ERR_STRIDE);
    d.mask.block_map_stride[1] = 0;
    d.mask.block_map_stride[2] = 2;
    CHECK_STATUS(attn_sdpa_validate(&d), ATTN_OK);
    d.mask.block_map = NULL;

    /* no sink logits: no sink gradient to give */
    float dsink[2] = {0, 0}, buf[64] = {0}, stats[16] = {0};
    d.mask.sink_logits = NULL;
    CHECK_STATUS(attn_sdpa_sink_backward(&d, dsink, buf, buf, stats), ATTN_ERR_ARG);
    d.mask.sink_logits = z;
    CHECK_STATUS(attn_sdpa_sink_backward(&d, NULL, buf, buf, stats), ATTN_ERR_NULL);

    /* additive attention has no heads to give slopes or logits to, nor a windowed kernel */
    attn_additive_desc a;
    memset(&a, 0, sizeof a);
    a.B = 1; a.T = 2; a.S = 3; a.Dq = 2; a.Dk = 2; a.Dv = 2; a.Dh = 2;
    CHECK_STATUS(attn_additive_validate(&a), ATTN_OK);
    a.mask.window = 1;
    CHECK_STATUS(attn_additive_validate(&a), ATTN_ERR_UNSUPPORTED);

    /* ALiBi slopes: 8 heads 1/2 .. 1/256; 6 heads: the 4-head slopes, then the odd ones of 8 */
    float s8[8], s6[6];
    CHECK_STATUS(attn_alibi_slopes(8, s8), ATTN_OK);
    for (int h = 0; h < 8; h++) CHECK(s8[h] == ldexpf(1.0f, -(h + 1)));
    CHECK_STATUS(attn_alibi_slopes(6, s6), ATTN_OK);
    const float want6[6] = {0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f};
    for (int h = 0; h < 6; h++) CHECK(s6[h] == want6[h]);
    CHECK_STATUS(attn_alibi_slopes(0, s6), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_alibi_slopes(4, NULL), ATTN_ERR_NULL);
}

/* ---- 2., 3. finite differences --------------------------------------------------------------------- */

typedef struct problem {
    attn_sdpa_desc d;
    int32_t lens[2 * 9];
    float z[4], slopes[4];
    size_t nq, nk, nv, no;
    double *q, *k, *v, *g;        /* g: dout */
} problem;

/* B=2 H=4 Hkv=2 T=9 S=11 D=5 Dv=6, contiguous; a two-sided window with sinks, sink logits, ALiBi and
 * per-query lengths (one of them 0: a row that sees only its sink) */
static void problem_init(problem *p, int causal, float softcap) {
    memset(p, 0, sizeof *p);
    attn_sdpa_desc *d = &p->d;
    attn_sdpa_desc_init(d, 2, 4, 9, 11, 5, 6);
    d->Hkv = 2;
    d->k = (attn_layout){2 * 11 * 5, 11 * 5, 5};
    d->v = (attn_layout){2 * 11 * 6, 11 * 6, 6};
    d->mask.causal = causal;
    d->mask.window = 1;
    d->mask.window_left = 3;
    d->mask.window_right = 1;
    d->mask.sinks = 2;
    for (int i = 0; i < 18; i++) p->lens[i] = i == 4 ? 0 : 6 + i % 6;
    d->mask.valid_lens_kind = ATTN_VALID_LENS_PER_QUERY;
    d->mask.valid_lens = p->lens;
    for (int h = 0; h < 4; h++) p->z[h] = (float)(h - 1) * 0.75f;   /* exact in float, and z ± 2^-12 too */
    d->mask.sink_logits = p->z;
    attn_alibi_slopes(4, p->slopes);
    d->mask.alibi_slopes = p->slopes;
    d->mask.softcap = softcap;
    p->nq = (size_t)2 * 4 * 9 * 5;
    p->nk = (size_t)2 * 2 * 11 * 5;
    p->nv = (size_t)2 * 2 * 11 * 6;
    p->no = (size_t)2 * 4 * 9 * 6;
    p->q = rand_f64(p->nq);
    p->k = rand_f64(p->nk);
    p->v = rand_f64(p->nv);
    p->g = rand_f64(p->no);
}

static void problem_free(problem *p) { free(p->q); free(p->k); free(p->v); free(p->g); }

/* L = Σ dout·out by the double reference */
static double loss(const problem *p, double *out, void *work) {
    attn__sdpa_ref_forward_f64(&p->d, out, NULL, NULL, p->q, p->k, p->v, work);
    double L = 0;
    for (size_t i = 0; i < p->no; i++) L += p->g[i] * out[i];
    return L;
}

static void fd_inputs(const char *name, int causal, float softcap) {
    problem p;
    problem_init(&p, causal, softcap);
    const attn_sdpa_desc *d = &p.d;
    double *out = calloc(p.no, sizeof(double)), *st = calloc(2 * 72, sizeof(double));
    double *dq = calloc(p.nq, sizeof(double)), *dk = calloc(p.nk, sizeof(double)), *dv = calloc(p.nv, sizeof(double));
    void *fw = malloc(attn__sdpa_ref_workspace(d, ATTN_PASS_FORWARD, 1));
    void *bw = malloc(attn__sdpa_ref_workspace(d, ATTN_PASS_BACKWARD, 1));
    CHECK_STATUS(attn__sdpa_ref_forward_f64(d, out, st, NULL, p.q, p.k, p.v, fw), ATTN_OK);
    CHECK_STATUS(attn__sdpa_ref_backward_f64(d, dq, dk, dv, p.g, p.q, p.k, p.v, out, st, bw), ATTN_OK);
    /* the row whose length is 0 sees only its sink: zero output, stats (z_h, 0) */
    const int row = 4;                               /* (b 0, h 0, t 4) */
    CHECK(st[2 * row] == (double)p.z[0] && st[2 * row + 1] == 0.0);
    for (int j = 0; j < 6; j++) CHECK(out[row * 6 + j] == 0.0);

    double *xs[3] = {p.q, p.k, p.v}, *gs[3] = {dq, dk, dv};
    const size_t ns[3] = {p.nq, p.nk, p.nv};
    const char *names[3] = {"dq", "dk", "dv"};
    const double hstep = 1e-6;
    for (int w = 0; w < 3; w++) {
        double *fd = malloc(sizeof(double) * ns[w]);
        for (size_t i = 0; i < ns[w]; i++) {
            const double x0 = xs[w][i];
            xs[w][i] = x0 + hstep;
            const double lp = loss(&p, out, fw);
            xs[w][i] = x0 - hstep;
            const double lm = loss(&p, out, fw);
            xs[w][i] = x0;
            fd[i] = (lp - lm) / (2 * hstep);
        }
        char what[64];
        snprintf(what, sizeof what, "fd %s %s", name, names[w]);
        CHECK(tu_close_f64(what, gs[w], fd, ns[w], 1e-8, 1e-6));
        free(fd);
    }
    free(out); free(st); free(dq); free(dk); free(dv); free(fw); free(bw);
    problem_free(&p);
}

static float *to_f32(const double *x, size_t n) {
    float *y = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static void fd_sink(int causal) {
    problem p;
    problem_init(&p, causal, causal ? 0.0f : 1.25f);
    /* the double problem holds float values, so the fp32 runs see the same numbers */
    for (size_t i = 0; i < p.nq; i++) p.q[i] = (float)p.q[i];
    for (size_t i = 0; i < p.nk; i++) p.k[i] = (float)p.k[i];
    for (size_t i = 0; i < p.nv; i++) p.v[i] = (float)p.v[i];
    for (size_t i = 0; i < p.no; i++) p.g[i] = (float)p.g[i];
    const attn_sdpa_desc *d = &p.d;
    double *out = calloc(p.no, sizeof(double));
    void *fw = malloc(attn__sdpa_ref_workspace(d, ATTN_PASS_FORWARD, 1));

    /* central differences in z_h, steps of 2^-12 (z ± h exact in float) */
    double fd[4];
    const float hz = 1.0f / 4096.0f;
    for (int h = 0; h < 4; h++) {
        const float z0 = p.z[h];
        p.z[h] = z0 + hz;
        const double lp = loss(&p, out, fw);
        p.z[h] = z0 - hz;
        const double lm = loss(&p, out, fw);
        p.z[h] = z0;
        fd[h] = (lp - lm) / (2.0 * hz);
    }

    float *q = to_f32(p.q, p.nq), *k = to_f32(p.k, p.nk), *v = to_f32(p.v, p.nv), *g = to_f32(p.g, p.no);
    float *o = calloc(p.no, sizeof(float)), *st = calloc(2 * 72, sizeof(float));
    const attn_isa paths[] = {ATTN_ISA_REF, ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        attn_ctx c;
        if (attn_ctx_init(&c, paths[i], 2) != ATTN_OK) continue;
        size_t wb = 0;
        CHECK_STATUS(attn_sdpa_workspace_size(&c, d, ATTN_PASS_FORWARD, &wb), ATTN_OK);
        void *work = malloc(wb);
        CHECK_STATUS(attn_sdpa_forward(&c, d, o, st, NULL, q, k, v, work, wb), ATTN_OK);
        float dsink[4] = {1, 2, 3, 4};                /* accumulates */
        CHECK_STATUS(attn_sdpa_sink_backward(d, dsink, g, o, st), ATTN_OK);
        double got[4];
        for (int h = 0; h < 4; h++) got[h] = dsink[h] - (h + 1);
        char what[64];
        snprintf(what, sizeof what, "dsink %s causal=%d", attn_isa_name(paths[i]), causal);
        CHECK(tu_close_f64(what, got, fd, 4, 2e-5, 1e-4));
        free(work);
    }
    free(q); free(k); free(v); free(g); free(o); free(st); free(out); free(fw);
    problem_free(&p);
}

/* ---- 4. work skipped ------------------------------------------------------------------------------- */

/* A forward and a backward of d (B = 1, Hkv = H, T = S, Dv = D, contiguous) on random data with context c:
 * the scores the fused kernels formed in each pass (*nf, *nb). */
static void count_scores(const attn_ctx *c, const attn_sdpa_desc *d, int64_t *nf, int64_t *nb) {
    const size_t n = (size_t)d->H * d->T * d->D;
    float *q = malloc(sizeof(float) * n), *k = malloc(sizeof(float) * n), *v = malloc(sizeof(float) * n);
    float *o = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    float *st = malloc(sizeof(float) * 2 * d->H * d->T);
    float *dq = calloc(n, sizeof(float)), *dk = calloc(n, sizeof(float)), *dv = calloc(n, sizeof(float));
    tu_fill(q, n, 1); tu_fill(k, n, 2); tu_fill(v, n, 3); tu_fill(g, n, 4);
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(c, d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(c, d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    void *work = malloc(fw > bw ? fw : bw);
    attn_sdpa_scores_computed(ATTN_PASS_FORWARD, 1);
    attn_sdpa_scores_computed(ATTN_PASS_BACKWARD, 1);
    CHECK_STATUS(attn_sdpa_forward(c, d, o, st, NULL, q, k, v, work, fw), ATTN_OK);
    *nf = attn_sdpa_scores_computed(ATTN_PASS_FORWARD, 1);
    CHECK_STATUS(attn_sdpa_backward(c, d, dq, dk, dv, g, q, k, v, o, st, work, bw), ATTN_OK);
    *nb = attn_sdpa_scores_computed(ATTN_PASS_BACKWARD, 1);
    free(work); free(q); free(k); free(v); free(o); free(g); free(st); free(dq); free(dk); free(dv);
}

static void test_block_count(void) {
    const int small = getenv("ATTN_SANITIZED") != NULL;
    const int T = small ? 1024 : 4096, D = 32, W = 100;
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 1, T, T, D, D), ATTN_OK);
    d.mask.causal = 1;
    d.mask.window = 1;
    d.mask.window_left = W;
    int64_t visible = 0;
    for (int t = 0; t < T; t++) visible += (t < W ? t : W) + 1;
    const int64_t dense = (int64_t)T * (T + 1) / 2;
    const int64_t edge = (int64_t)T * 2 * 64;        /* one block edge (<= 64 keys) on each side per row */
    const attn_isa paths[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        attn_ctx c;
        if (attn_ctx_init(&c, paths[i], 2) != ATTN_OK) continue;
        int64_t nf, nb;
        count_scores(&c, &d, &nf, &nb);
        printf("%s: T=%d causal window %d: scores computed forward %lld, backward %lld; visible %lld, "
               "dense causal %lld\n", attn_isa_name(paths[i]), T, W, (long long)nf, (long long)nb,
               (long long)visible, (long long)dense);
        CHECK(nf >= visible && nf <= visible + edge);
        CHECK(nb >= visible && nb <= visible + edge);
        CHECK(nf < dense / 3 && nb < dense / 3);            /* (T = 1024 under the sanitizers) */
    }
}

/* ---- 5. bf16 on the bf16 paths ---------------------------------------------------------------------- */

/* bf16 tensors with every sparse part against the fp32 AVX-512 kernel on the same rounded values: the AMX
 * and AVX512-BF16 paths hand such descriptors to the conversion path, for blocks (T = 256) and decoding
 * (T = 1, where the bf16 rows kernel would otherwise take them). */
static void test_bf16_path(attn_isa isa, int T) {
    attn_ctx bc, ref;
    if (attn_ctx_init(&bc, isa, 2) != ATTN_OK) {
        printf("%s: not supported here, bf16 check skipped\n", attn_isa_name(isa));
        return;
    }
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_AVX512, 2), ATTN_OK);
    const int S = 256, D = 64;
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 2, T, S, D, D), ATTN_OK);
    float z[2] = {0.5f, -1.0f}, sl[2];
    attn_alibi_slopes(2, sl);
    d.mask.causal = 1;
    d.mask.window = 1;
    d.mask.window_left = 40;
    d.mask.sinks = 4;
    d.mask.sink_logits = z;
    d.mask.alibi_slopes = sl;
    const size_t nq = (size_t)2 * T * D, nk = (size_t)2 * S * D;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk);
    float *o32 = malloc(sizeof(float) * nq), *st = malloc(sizeof(float) * 4 * T);
    uint16_t *qb = malloc(2 * nq), *kb = malloc(2 * nk), *vb = malloc(2 * nk), *ob = malloc(2 * nq);
    tu_fill(q, nq, 5); tu_fill(k, nk, 6); tu_fill(v, nk, 7);
    for (size_t i = 0; i < nq; i++) {          /* the fp32 run takes the bf16 values */
        qb[i] = attn_bf16_from_f32(q[i]); q[i] = attn_bf16_to_f32(qb[i]);
    }
    for (size_t i = 0; i < nk; i++) {
        kb[i] = attn_bf16_from_f32(k[i]); k[i] = attn_bf16_to_f32(kb[i]);
        vb[i] = attn_bf16_from_f32(v[i]); v[i] = attn_bf16_to_f32(vb[i]);
    }
    size_t w32 = 0, w16 = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(&ref, &d, ATTN_PASS_FORWARD, &w32), ATTN_OK);
    void *work = malloc(w32);
    CHECK_STATUS(attn_sdpa_forward(&ref, &d, o32, st, NULL, q, k, v, work, w32), ATTN_OK);
    free(work);
    d.dtype = ATTN_DTYPE_BF16;
    CHECK_STATUS(attn_sdpa_workspace_size(&bc, &d, ATTN_PASS_FORWARD, &w16), ATTN_OK);
    work = malloc(w16);
    CHECK_STATUS(attn_sdpa_forward(&bc, &d, ob, st, NULL, qb, kb, vb, work, w16), ATTN_OK);
    float *o16 = malloc(sizeof(float) * nq);
    for (size_t i = 0; i < nq; i++) o16[i] = attn_bf16_to_f32(ob[i]);
    char what[96];
    snprintf(what, sizeof what, "%s bf16 out (sparse parts), T = %d, vs fp32", attn_isa_name(isa), T);
    CHECK(tu_close_f32(what, o16, o32, nq, 1e-2, 8e-3));
    free(work); free(q); free(k); free(v); free(o32); free(st); free(qb); free(kb); free(vb); free(ob); free(o16);
}

/* ---- 6. block maps ---------------------------------------------------------------------------------- */

static void test_block_maps(void) {
    /* Longformer 5 x 7 (query block i at key block i + 2), window 1, global block 0 */
    uint8_t m[5 * 7], m2[5 * 7], m3[5 * 7];
    const int glob[1] = {0};
    CHECK_STATUS(attn_block_map_longformer(m, 5, 7, 1, glob, 1), ATTN_OK);
    const char *want =
        "1111111"
        "1011100"
        "1001110"
        "1000111"
        "1000011";
    int same = 1;
    for (int i = 0; i < 35; i++) same &= m[i] == (uint8_t)(want[i] - '0');
    CHECK(same);
    CHECK_STATUS(attn_block_map_longformer(m, 5, 7, -1, glob, 1), ATTN_ERR_ARG);
    const int far[1] = {5};
    CHECK_STATUS(attn_block_map_longformer(m, 5, 7, 1, far, 1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_block_map_longformer(m, 0, 7, 1, NULL, 0), ATTN_ERR_SIZE);
    /* BigBird: longformer's blocks and more, the same map for the same seed */
    CHECK_STATUS(attn_block_map_bigbird(m2, 5, 7, 1, glob, 1, 2, 42), ATTN_OK);
    CHECK_STATUS(attn_block_map_bigbird(m3, 5, 7, 1, glob, 1, 2, 42), ATTN_OK);
    CHECK(memcmp(m2, m3, sizeof m2) == 0);
    int superset = 1, more = 0;
    for (int i = 0; i < 35; i++) { superset &= m2[i] >= m[i]; more += m2[i] > m[i]; }
    CHECK(superset && more > 0);
    CHECK_STATUS(attn_block_map_bigbird(m2, 5, 7, 1, glob, 1, -1, 42), ATTN_ERR_ARG);

    /* blocks of 64: exactly the listed blocks' scores on every fused path */
    const int T = getenv("ATTN_SANITIZED") ? 256 : 1024, bs = 64, nb = T / bs, D = 32;
    uint8_t *map = malloc((size_t)nb * nb);
    const int glob2[2] = {0, nb / 2 + 1};
    CHECK_STATUS(attn_block_map_bigbird(map, nb, nb, 1, glob2, 2, 1, 7), ATTN_OK);
    int64_t listed = 0;
    for (int i = 0; i < nb * nb; i++) listed += map[i] != 0;
    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, 1, 2, T, T, D, D), ATTN_OK);
    d.mask.block_map = map;
    d.mask.block_size = bs;
    d.mask.block_map_stride[2] = nb;           /* one map for both heads */
    const int64_t want_scores = 2 * listed * bs * bs;
    const attn_isa paths[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        attn_ctx c;
        if (attn_ctx_init(&c, paths[i], 2) != ATTN_OK) continue;
        int64_t nf, nbk;
        count_scores(&c, &d, &nf, &nbk);
        printf("%s: T=%d BigBird map of %d x %d blocks of 64, %lld listed: scores formed forward %lld, "
               "backward %lld, listed blocks' %lld\n", attn_isa_name(paths[i]), T, nb, nb, (long long)listed,
               (long long)nf, (long long)nbk, (long long)want_scores);
        CHECK(nf == want_scores && nbk == want_scores);
    }
    free(map);
}

int main(void) {
    test_validation();
    fd_inputs("window+sinks+logits+alibi+lens", 0, 0.0f);
    fd_inputs("causal window+sinks+logits+alibi+lens", 1, 0.0f);
    fd_inputs("softcap 0.8+window+sinks+logits+alibi+lens", 0, 0.8f);
    fd_sink(0);
    fd_sink(1);
    test_block_count();
    test_bf16_path(ATTN_ISA_AMX, 256);
    test_bf16_path(ATTN_ISA_AMX, 1);
    test_bf16_path(ATTN_ISA_AVX512BF16, 1);
    test_block_maps();
    return tu_finish("test_sparse");
}
