/*
 * cmd_demo.c — `attn demo`, the shapes tour: dot-product, additive and multi-head attention
 * on random (B, T, D) inputs, printing the shapes of queries, keys, values, outputs and weights, plus a
 * check that every row of weights sums to one.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    int B, T, D, H;
    uint64_t seed;
} demo_opts;

static float *random_tensor(attn_rng *r, size_t n) {
    float *x = malloc(sizeof(float) * n);
    if (x) attn_rng_fill_uniform(r, x, n, -1.0f, 1.0f);
    return x;
}

/* Largest |Σ_s weights[row, s] - 1| over rows; rows that are all zero (fully masked) count as 0. */
static double worst_row_sum_error(const float *w, size_t rows, int S) {
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int s = 0; s < S; s++) sum += w[r * S + s];
        double e = fabs(sum - 1.0);
        if (e > worst) worst = e;
    }
    return worst;
}

static void print_shape3(const char *what, int a, int b, int c) {
    printf("  %-8s (%d, %d, %d)\n", what, a, b, c);
}

static int dot_product(const demo_opts *o, const float *q, const float *k, const float *v) {
    int B = o->B, T = o->T, D = o->D;
    attn_sdpa_desc d;
    attn_status st = attn_sdpa_desc_init(&d, B, 1, T, T, D, D);
    d.scale = 1.0f;                       /* unscaled: plain dot-product attention */
    size_t wb = 0;
    if (!st) st = attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wb);
    float *out = malloc(sizeof(float) * B * T * D), *w = malloc(sizeof(float) * B * T * T);
    void *work = malloc(wb ? wb : 1);
    if (!st && (!out || !w || !work)) st = ATTN_ERR_NOMEM;
    if (!st) st = attn_sdpa_forward(NULL, &d, out, NULL, w, q, k, v, work, wb);
    if (!st) {
        printf("dot-product attention: weights = softmax(Q Kᵀ), out = weights V\n");
        print_shape3("queries", B, T, D); print_shape3("keys", B, T, D); print_shape3("values", B, T, D);
        print_shape3("outputs", B, T, D); print_shape3("weights", B, T, T);
        printf("  rows of weights sum to 1 within %.1e\n\n", worst_row_sum_error(w, (size_t)B * T, T));
    }
    free(out); free(w); free(work);
    return cli_fail(st, "dot-product attention");
}

static int additive(const demo_opts *o, attn_rng *r, const float *q, const float *k, const float *v) {
    int B = o->B, T = o->T, D = o->D, Dh = o->D;
    attn_additive_desc d;
    attn_status st = attn_additive_desc_init(&d, B, T, T, D, D, D, Dh);
    size_t wb = 0;
    if (!st) st = attn_additive_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wb);
    float bound = 1.0f / sqrtf((float)D);
    float *wq = malloc(sizeof(float) * Dh * D), *wk = malloc(sizeof(float) * Dh * D), *wv = malloc(sizeof(float) * Dh);
    float *out = malloc(sizeof(float) * B * T * D), *w = malloc(sizeof(float) * B * T * T);
    void *work = malloc(wb ? wb : 1);
    if (!st && (!wq || !wk || !wv || !out || !w || !work)) st = ATTN_ERR_NOMEM;
    if (!st) {
        attn_rng_fill_uniform(r, wq, (size_t)Dh * D, -bound, bound);
        attn_rng_fill_uniform(r, wk, (size_t)Dh * D, -bound, bound);
        attn_rng_fill_uniform(r, wv, (size_t)Dh, -bound, bound);
        st = attn_additive_forward(NULL, &d, out, w, q, k, v, wq, wk, wv, work, wb);
    }
    if (!st) {
        printf("additive (Bahdanau) attention: score(q, k) = w_vᵀ tanh(W_q q + W_k k), %d hidden units\n", Dh);
        print_shape3("queries", B, T, D); print_shape3("keys", B, T, D); print_shape3("values", B, T, D);
        print_shape3("outputs", B, T, D); print_shape3("weights", B, T, T);
        printf("  rows of weights sum to 1 within %.1e\n\n", worst_row_sum_error(w, (size_t)B * T, T));
    }
    free(wq); free(wk); free(wv); free(out); free(w); free(work);
    return cli_fail(st, "additive attention");
}

static int multi_head(const demo_opts *o, const float *q, const float *k, const float *v) {
    int B = o->B, T = o->T, D = o->D, H = o->H;
    attn_mha m;
    const size_t np = attn_mha_n_params(D, D, D, D);
    float *params = malloc(sizeof(float) * (np ? np : 1));       /* inference: no gradients */
    if (!params) return cli_fail(ATTN_ERR_NOMEM, "multi-head attention");
    attn_status st = attn_mha_bind(&m, D, D, D, D, H, params, NULL);
    attn_rng r;
    attn_rng_seed(&r, o->seed + 1);
    if (!st) st = attn_mha_init_weights(&m, &r);
    size_t cb = 0;
    if (!st) st = attn_mha_cache_bytes(NULL, &m, B, T, T, &cb);
    float *out = malloc(sizeof(float) * B * T * D), *w = malloc(sizeof(float) * B * H * T * T);
    void *cache = malloc(cb ? cb : 1);
    if (!st && (!out || !w || !cache)) st = ATTN_ERR_NOMEM;
    if (!st) st = attn_mha_forward(NULL, &m, cache, cb, out, w, q, k, v, B, T, T, NULL, 0.0f, 0);
    if (!st) {
        printf("multi-head attention: %d heads of %d, Q/K/V/output projections with bias (%zu parameters)\n",
               H, D / H, m.n_params);
        print_shape3("queries", B, T, D); print_shape3("keys", B, T, D); print_shape3("values", B, T, D);
        print_shape3("outputs", B, T, D);
        printf("  %-8s (%d, %d, %d, %d)\n", "weights", B, H, T, T);
        printf("  rows of weights sum to 1 within %.1e\n", worst_row_sum_error(w, (size_t)B * H * T, T));
    }
    free(out); free(w); free(cache); free(params);
    return cli_fail(st, "multi-head attention");
}

int cmd_demo(int argc, char **argv) {
    demo_opts o = {32, 10, 128, 4, 42};
    const cli_opt opts[] = {
        {"batch", CLI_INT, &o.B, "N", "batch size B"},
        {"len", CLI_INT, &o.T, "N", "sequence length T (queries and keys)"},
        {"dim", CLI_INT, &o.D, "N", "feature dimension D"},
        {"heads", CLI_INT, &o.H, "N", "heads of the multi-head layer (must divide --dim)"},
        {"seed", CLI_U64, &o.seed, "N", "seed of the random inputs"},
    };
    const cli_cmd cmd = {"attn demo [options]",
                         "Runs dot-product, additive and multi-head attention on random (B, T, D) inputs in\n"
                         "[-1, 1) and prints the shapes of queries, keys, values, outputs and weights.",
                         opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    int bad = cli_check_int("demo", "--batch", o.B, 1, 4096) || cli_check_int("demo", "--len", o.T, 1, 4096) ||
              cli_check_int("demo", "--dim", o.D, 1, 4096) || cli_check_int("demo", "--heads", o.H, 1, o.D);
    if (!bad && o.D % o.H != 0) {
        fprintf(stderr, "attn: demo: --heads %d: must divide --dim %d\n", o.H, o.D);
        bad = 1;
    }
    if (bad) {
        fputc('\n', stderr);
        cli_usage(&cmd, stderr);
        return 2;
    }
    size_t n = (size_t)o.B * o.T * o.D;
    attn_rng r;
    attn_rng_seed(&r, o.seed);
    float *q = random_tensor(&r, n), *k = random_tensor(&r, n), *v = random_tensor(&r, n);
    int status = (!q || !k || !v) ? cli_fail(ATTN_ERR_NOMEM, "demo inputs") : 0;
    if (!status) status = dot_product(&o, q, k, v);
    if (!status) status = additive(&o, &r, q, k, v);
    if (!status) status = multi_head(&o, q, k, v);
    free(q); free(k); free(v);
    return status;
}
