/*
 * test_gru.c — the multi-layer GRU against PyTorch (tests/golden/seq2seq_gru.safetensors, written by
 * tools/golden/gen_seq2seq.py): forward outputs and final states, and the gradients of x, h0 and every
 * parameter. Then, with dropout between the layers, the backward against central finite differences of
 * the forward with the same seed, the decoder's use (T = 1 steps chained) against one T-step call, and
 * bad arguments.
 */
#include "attn.h"
#include "attn/layers.h"
#include "testutil.h"

#include <string.h>

static const float *get(const attn_st_file *f, const char *name, int ndim, const int64_t *shape) {
    const float *p = NULL;
    char err[256];
    attn_status st = attn_st_get_f32(f, name, ndim, shape, &p, err, sizeof err);
    if (st != ATTN_OK) { fprintf(stderr, "golden: %s\n", err); return NULL; }
    return p;
}

/* Copies the golden parameters of layer l into g's slab. */
static int load_params(const attn_st_file *f, attn_gru *g) {
    for (int l = 0; l < g->L; l++) {
        char n[64];
        int in = l ? g->H : g->in;
        int64_t s_ih[2] = {3 * g->H, in}, s_hh[2] = {3 * g->H, g->H}, s_b[1] = {3 * g->H};
        const float *p;
        snprintf(n, sizeof n, "weight_ih_l%d", l);
        if (!(p = get(f, n, 2, s_ih))) return 0;
        memcpy(g->w_ih[l], p, sizeof(float) * 3 * g->H * in);
        snprintf(n, sizeof n, "weight_hh_l%d", l);
        if (!(p = get(f, n, 2, s_hh))) return 0;
        memcpy(g->w_hh[l], p, sizeof(float) * 3 * g->H * g->H);
        snprintf(n, sizeof n, "bias_ih_l%d", l);
        if (!(p = get(f, n, 1, s_b))) return 0;
        memcpy(g->b_ih[l], p, sizeof(float) * 3 * g->H);
        snprintf(n, sizeof n, "bias_hh_l%d", l);
        if (!(p = get(f, n, 1, s_b))) return 0;
        memcpy(g->b_hh[l], p, sizeof(float) * 3 * g->H);
    }
    return 1;
}

static void test_golden(void) {
    attn_st_file f;
    char err[256];
    attn_status st = attn_st_read(&f, ATTN_GOLDEN_DIR "/seq2seq_gru.safetensors", 0, err, sizeof err);
    CHECK_STATUS(st, ATTN_OK);
    if (st != ATTN_OK) { fprintf(stderr, "%s\n", err); return; }
    const int T = 3, B = 2, I = 3, H = 4, L = 2;
    size_t np = attn_gru_n_params(L, I, H);
    CHECK(np == (size_t)(3 * H * I + 3 * H * H + 6 * H + 2 * 3 * H * H + 6 * H));
    float *params = calloc(np, sizeof(float)), *grads = calloc(np, sizeof(float));
    attn_gru g;
    CHECK_STATUS(attn_gru_bind(&g, L, I, H, 0.0f, params, grads), ATTN_OK);
    CHECK(load_params(&f, &g));
    int64_t sx[3] = {T, B, I}, sh[3] = {L, B, H}, so[3] = {T, B, H};
    const float *x = get(&f, "x", 3, sx), *h0 = get(&f, "h0", 3, sh), *gout = get(&f, "g_out", 3, so),
                *ghn = get(&f, "g_hn", 3, sh), *want_out = get(&f, "out", 3, so), *want_hn = get(&f, "h_n", 3, sh),
                *want_dx = get(&f, "grad.x", 3, sx), *want_dh0 = get(&f, "grad.h0", 3, sh);
    CHECK(x && h0 && gout && ghn && want_out && want_hn && want_dx && want_dh0);
    if (!(x && h0 && gout && ghn && want_out && want_hn && want_dx && want_dh0)) { attn_st_free(&f); return; }
    size_t nc = 0;                                                 /* bytes */
    CHECK_STATUS(attn_gru_cache_bytes(&g, T, B, &nc), ATTN_OK);
    void *cache = malloc(nc);
    float out[3 * 2 * 4], hn[2 * 2 * 4], dx[3 * 2 * 3] = {0}, dh0[2 * 2 * 4] = {0};
    CHECK_STATUS(attn_gru_forward(NULL, &g, cache, nc, out, hn, x, h0, T, B, 0, 0), ATTN_OK);
    tu_close_f32("gru out", out, want_out, T * B * H, 1e-6, 1e-5);
    tu_close_f32("gru h_n", hn, want_hn, L * B * H, 1e-6, 1e-5);
    CHECK_STATUS(attn_gru_backward(NULL, &g, cache, nc, dx, dh0, gout, ghn, x, T, B, 0, 0), ATTN_OK);
    tu_close_f32("gru grad x", dx, want_dx, T * B * I, 1e-5, 1e-4);
    tu_close_f32("gru grad h0", dh0, want_dh0, L * B * H, 1e-5, 1e-4);
    /* the parameter gradients, in the slab's order = the golden names' order */
    float *want = calloc(np, sizeof(float));
    attn_gru gw;
    attn_gru_bind(&gw, L, I, H, 0.0f, want, NULL);
    const char *kinds[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    int ok = 1;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 4; k++) {
            char n[64];
            snprintf(n, sizeof n, "grad.%s_l%d", kinds[k], l);
            const attn_st_tensor *t = attn_st_find(&f, n);
            float *dst = k == 0 ? gw.w_ih[l] : k == 1 ? gw.w_hh[l] : k == 2 ? gw.b_ih[l] : gw.b_hh[l];
            if (!t || t->dtype != ATTN_DTYPE_F32) { ok = 0; continue; }
            memcpy(dst, t->data, t->nbytes);
        }
    CHECK(ok);
    tu_close_f32("gru grad params", grads, want, np, 1e-5, 1e-4);
    /* backward accumulates: a second call doubles the gradients */
    CHECK_STATUS(attn_gru_backward(NULL, &g, cache, nc, dx, dh0, gout, ghn, x, T, B, 0, 0), ATTN_OK);
    for (size_t i = 0; i < np; i++) want[i] *= 2;
    tu_close_f32("gru grad params, accumulated twice", grads, want, np, 2e-5, 1e-4);

    /* chained T = 1 calls (the decoder's use) give the T-step outputs */
    float state[2 * 2 * 4], step_out[3 * 2 * 4];
    memcpy(state, h0, sizeof state);
    size_t nc1 = 0;
    CHECK_STATUS(attn_gru_cache_bytes(&g, 1, B, &nc1), ATTN_OK);
    void *c1 = malloc(nc1);
    for (int t = 0; t < T; t++) {
        float next[2 * 2 * 4];
        CHECK_STATUS(attn_gru_forward(NULL, &g, c1, nc1, step_out + t * B * H, next,
                                      x + t * B * I, state, 1, B, 0, 0), ATTN_OK);
        memcpy(state, next, sizeof state);
    }
    tu_close_f32("gru stepwise out", step_out, want_out, T * B * H, 1e-6, 1e-5);

    /* bad arguments */
    CHECK_STATUS(attn_gru_forward(NULL, &g, cache, nc - 1, out, hn, x, h0, T, B, 0, 0), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_gru_forward(NULL, &g, cache, nc, NULL, hn, x, h0, T, B, 0, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_gru_forward(NULL, &g, cache, nc, out, hn, x, h0, 0, B, 0, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_gru_bind(&gw, 0, I, H, 0.0f, want, NULL), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_gru_bind(&gw, L, I, H, 1.0f, want, NULL), ATTN_ERR_ARG);
    CHECK_STATUS(attn_gru_bind(&gw, L, I, H, 0.0f, NULL, NULL), ATTN_ERR_NULL);
    free(c1); free(cache); free(params); free(grads); free(want);
    attn_st_free(&f);
}

/* loss = Σ out·w for the finite differences, in double */
static double fd_loss(const attn_gru *g, void *cache, size_t nc, const float *x, const float *w,
                      int T, int B, uint64_t seed) {
    float out[4 * 3 * 5];
    attn_gru_forward(NULL, g, cache, nc, out, NULL, x, NULL, T, B, 1, seed);
    double s = 0;
    for (int i = 0; i < T * B * g->H; i++) s += (double)out[i] * w[i];
    return s;
}

static void test_dropout_fd(void) {
    const int T = 4, B = 3, I = 2, H = 5, L = 3;
    size_t np = attn_gru_n_params(L, I, H);
    float *params = malloc(sizeof(float) * np), *grads = calloc(np, sizeof(float));
    attn_rng r;
    attn_rng_seed(&r, 7);
    attn_rng_fill_uniform(&r, params, np, -0.5f, 0.5f);
    attn_gru g;
    CHECK_STATUS(attn_gru_bind(&g, L, I, H, 0.3f, params, grads), ATTN_OK);
    float x[4 * 3 * 2], w[4 * 3 * 5], dx[4 * 3 * 2] = {0};
    attn_rng_fill_uniform(&r, x, T * B * I, -1, 1);
    attn_rng_fill_uniform(&r, w, T * B * H, -1, 1);
    size_t nc = 0;                                                 /* bytes */
    CHECK_STATUS(attn_gru_cache_bytes(&g, T, B, &nc), ATTN_OK);
    void *cache = malloc(nc);
    const uint64_t seed = 1234;
    float out[4 * 3 * 5], out0[4 * 3 * 5];
    attn_gru_forward(NULL, &g, cache, nc, out, NULL, x, NULL, T, B, 1, seed);
    attn_gru_forward(NULL, &g, cache, nc, out0, NULL, x, NULL, T, B, 0, seed);
    CHECK(memcmp(out, out0, sizeof out) != 0);                     /* dropout changed something */
    attn_gru_forward(NULL, &g, cache, nc, out, NULL, x, NULL, T, B, 1, seed);
    CHECK_STATUS(attn_gru_backward(NULL, &g, cache, nc, dx, NULL, w, NULL, x, T, B, 1, seed), ATTN_OK);
    /* central differences over x and a sample of parameters */
    const float eps = 1e-2f;
    double got[24 + 40], num[24 + 40];
    int n = 0;
    for (int i = 0; i < T * B * I; i++, n++) {
        float xs[4 * 3 * 2];
        memcpy(xs, x, sizeof xs);
        xs[i] = x[i] + eps; double lp = fd_loss(&g, cache, nc, xs, w, T, B, seed);
        xs[i] = x[i] - eps; double lm = fd_loss(&g, cache, nc, xs, w, T, B, seed);
        num[n] = (lp - lm) / (2 * eps);
        got[n] = dx[i];
    }
    for (int k = 0; k < 40; k++, n++) {
        size_t i = (size_t)k * (np / 40);
        float p0 = params[i];
        params[i] = p0 + eps; double lp = fd_loss(&g, cache, nc, x, w, T, B, seed);
        params[i] = p0 - eps; double lm = fd_loss(&g, cache, nc, x, w, T, B, seed);
        params[i] = p0;
        num[n] = (lp - lm) / (2 * eps);
        got[n] = grads[i];
    }
    tu_close_f64("gru dropout 0.3: grad vs finite diff", got, num, (size_t)n, 2e-3, 2e-2);
    free(params); free(grads); free(cache);
}

int main(void) {
    test_golden();
    test_dropout_fd();
    return tu_finish("test_gru");
}
