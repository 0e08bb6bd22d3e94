/*
 * test_linear_attn.c — linear attention (attn_linear_attn_*): against PyTorch (tests/golden/
 * linear_attn.safetensors, float64 autograd, from tools/golden/gen_linear.py) on the reference and the
 * chunked path; the reference's gradients against central finite differences in double; the chunked path
 * against the reference over odd sizes, chunk edges and strided layouts; 1 thread == 2 threads bitwise;
 * and the arguments refused. The Linformer layer (attn_linformer_*) against PyTorch from the same file:
 * output, input gradients and every parameter's gradient, and its lifecycle's refusals.
 */
#include "attn.h"
#include "attn/layers.h"
#include "internal.h"
#include "ref/ref.h"
#include "testutil.h"

#include <string.h>

/* |got - want| <= TOL·(1 + |want|): float32 sums of up to a few hundred O(1) terms */
#define TOL 3e-5


static void run(const attn_ctx *c, const attn_linear_attn_desc *d, float *out, float *den, float *dq, float *dk,
                float *dv, const float *dout, const float *q, const float *k, const float *v) {
    size_t f = 0, b = 0;
    CHECK_STATUS(attn_linear_attn_workspace_size(c, d, ATTN_PASS_FORWARD, &f), ATTN_OK);
    CHECK_STATUS(attn_linear_attn_workspace_size(c, d, ATTN_PASS_BACKWARD, &b), ATTN_OK);
    void *w = malloc(f > b ? f : b);
    CHECK_STATUS(attn_linear_attn_forward(c, d, out, den, q, k, v, w, f), ATTN_OK);
    if (dq) CHECK_STATUS(attn_linear_attn_backward(c, d, dq, dk, dv, dout, q, k, v, out, den, w, b), ATTN_OK);
    free(w);
}

static void check_golden(void) {
    attn_st_file f;
    tu_golden_open(&f, "linear_attn.safetensors");
    const char *cases = attn_st_meta(&f, "cases");
    CHECK(cases != NULL);
    char list[512];
    snprintf(list, sizeof list, "%s", cases ? cases : "");
    const attn_isa isas[2] = {ATTN_ISA_REF, ATTN_ISA_AUTO};
    for (char *cs = strtok(list, ","); cs; cs = strtok(NULL, ",")) {
        char key[128];
        snprintf(key, sizeof key, "%s/q", cs);
        const attn_st_tensor *tq = attn_st_find(&f, key);
        snprintf(key, sizeof key, "%s/v", cs);
        const attn_st_tensor *tv = attn_st_find(&f, key);
        snprintf(key, sizeof key, "%s/causal", cs);
        const char *causal = attn_st_meta(&f, key);
        if (!tq || !tv || tq->ndim != 4 || tv->ndim != 4 || !causal) {
            fprintf(stderr, "golden: case %s malformed\n", cs);
            exit(1);
        }
        const int B = (int)tq->shape[0], H = (int)tq->shape[1], T = (int)tq->shape[2], D = (int)tq->shape[3];
        const int S = (int)tv->shape[2], Dv = (int)tv->shape[3];
        attn_linear_attn_desc d;
        CHECK_STATUS(attn_linear_attn_desc_init(&d, B, H, T, S, D, Dv), ATTN_OK);
        d.causal = atoi(causal);
        const size_t nq = (size_t)B * H * T * D, nk = (size_t)B * H * S * D, nv = (size_t)B * H * S * Dv;
        const size_t no = (size_t)B * H * T * Dv, nd = (size_t)B * H * T;
        float *q = tu_golden_f64(&f, cs, "q", nq), *k = tu_golden_f64(&f, cs, "k", nk), *v = tu_golden_f64(&f, cs, "v", nv);
        float *wout = tu_golden_f64(&f, cs, "out", no), *wden = tu_golden_f64(&f, cs, "den", nd), *dout = tu_golden_f64(&f, cs, "dout", no);
        float *wdq = tu_golden_f64(&f, cs, "dq", nq), *wdk = tu_golden_f64(&f, cs, "dk", nk), *wdv = tu_golden_f64(&f, cs, "dv", nv);
        for (int p = 0; p < 2; p++) {
            attn_ctx c;
            CHECK_STATUS(attn_ctx_init(&c, isas[p], 2), ATTN_OK);
            float *out = calloc(no, 4), *den = calloc(nd, 4), *dq = calloc(nq, 4), *dk = calloc(nk, 4);
            float *dv = calloc(nv, 4);
            run(&c, &d, out, den, dq, dk, dv, dout, q, k, v);
            char what[96];
            const char *names[5] = {"out", "den", "dq", "dk", "dv"};
            const float *got[5] = {out, den, dq, dk, dv}, *want[5] = {wout, wden, wdq, wdk, wdv};
            const size_t n[5] = {no, nd, nq, nk, nv};
            for (int x = 0; x < 5; x++) {
                snprintf(what, sizeof what, "golden %s %s %s", cs, attn_isa_name(c.isa), names[x]);
                tu_close_f32(what, got[x], want[x], n[x], TOL, TOL);
            }
            free(out); free(den); free(dq); free(dk); free(dv);
        }
        free(q); free(k); free(v); free(wout); free(wden); free(dout); free(wdq); free(wdk); free(wdv);
    }
    attn_st_free(&f);
}

/* loss = Σ out ∘ dout of the double reference */
static double loss64(const attn_linear_attn_desc *d, const double *q, const double *k, const double *v,
                     const double *dout, size_t no, void *w) {
    double *out = malloc(sizeof(double) * no);
    attn__linear_ref_forward_f64(d, out, NULL, q, k, v, w);
    double s = 0;
    for (size_t i = 0; i < no; i++) s += out[i] * dout[i];
    free(out);
    return s;
}

static void check_fd(int causal, int T, int S) {
    attn_linear_attn_desc d;
    const int B = 1, H = 2, D = 3, Dv = 2;
    CHECK_STATUS(attn_linear_attn_desc_init(&d, B, H, T, S, D, Dv), ATTN_OK);
    d.causal = causal;
    const size_t n[3] = {(size_t)B * H * T * D, (size_t)B * H * S * D, (size_t)B * H * S * Dv};
    const size_t no = (size_t)B * H * T * Dv;
    double *x[3], *g[3], *dout = malloc(sizeof(double) * no);
    uint64_t s = 7;
    for (int i = 0; i < 3; i++) {
        x[i] = malloc(sizeof(double) * n[i]);
        g[i] = calloc(n[i], sizeof(double));
        for (size_t j = 0; j < n[i]; j++) x[i][j] = 1.5 * tu_rnd_f(&s);   /* both sides of elu's kink */
    }
    for (size_t j = 0; j < no; j++) dout[j] = tu_rnd_f(&s);
    double w[64];
    attn__linear_ref_backward_f64(&d, g[0], g[1], g[2], dout, x[0], x[1], x[2], w);
    const char *names[3] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; i++) {
        double *fd = malloc(sizeof(double) * n[i]);
        for (size_t j = 0; j < n[i]; j++) {
            const double h = 1e-6, keep = x[i][j];
            x[i][j] = keep + h;
            const double lp = loss64(&d, x[0], x[1], x[2], dout, no, w);
            x[i][j] = keep - h;
            const double lm = loss64(&d, x[0], x[1], x[2], dout, no, w);
            x[i][j] = keep;
            fd[j] = (lp - lm) / (2 * h);
        }
        char what[64];
        snprintf(what, sizeof what, "finite differences %s %s T=%d S=%d", causal ? "causal" : "full", names[i], T, S);
        tu_close_f64(what, g[i], fd, n[i], 1e-7, 1e-6);
        free(fd);
    }
    for (int i = 0; i < 3; i++) { free(x[i]); free(g[i]); }
    free(dout);
}

/* The chunked path against the reference: (B,T,H,D) layouts (heads interleaved) with padded rows. */
static void check_sweep(void) {
    const int shapes[][6] = {
        /* T, S, D, Dv, causal, H */
        {1, 1, 3, 5, 1, 2},   {63, 63, 7, 1, 1, 1}, {64, 64, 16, 16, 1, 3}, {65, 65, 5, 9, 1, 2},
        {130, 130, 17, 3, 1, 1}, {1, 200, 4, 4, 0, 2}, {70, 3, 9, 6, 0, 2}, {129, 65, 8, 8, 0, 1},
    };
    attn_ctx ref, fast;
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
    CHECK_STATUS(attn_ctx_init(&fast, ATTN_ISA_AUTO, 2), ATTN_OK);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int T = shapes[i][0], S = shapes[i][1], D = shapes[i][2], Dv = shapes[i][3], H = shapes[i][5], B = 2;
        attn_linear_attn_desc d;
        CHECK_STATUS(attn_linear_attn_desc_init(&d, B, H, T, S, D, Dv), ATTN_OK);
        d.causal = shapes[i][4];
        /* (B,T,H,inner) with one float of padding after each token */
        d.q = (attn_layout){(int64_t)T * (H * D + 1), D, H * D + 1};
        d.k = (attn_layout){(int64_t)S * (H * D + 1), D, H * D + 1};
        d.v = (attn_layout){(int64_t)S * (H * Dv + 1), Dv, H * Dv + 1};
        d.out = (attn_layout){(int64_t)T * (H * Dv + 1), Dv, H * Dv + 1};
        const size_t nq = (size_t)B * T * (H * D + 1), nk = (size_t)B * S * (H * D + 1);
        const size_t nv = (size_t)B * S * (H * Dv + 1), no = (size_t)B * T * (H * Dv + 1), nd = (size_t)B * H * T;
        float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nv), *dout = malloc(4 * no);
        tu_fill(q, nq, 10 + i); tu_fill(k, nk, 20 + i); tu_fill(v, nv, 30 + i); tu_fill(dout, no, 40 + i);
        for (size_t j = 0; j < nq; j++) q[j] *= 2.0f;   /* larger logits: elu's both branches */
        float *o[2], *dn[2], *dq[2], *dk[2], *dv[2];
        for (int p = 0; p < 2; p++) {
            o[p] = calloc(no, 4); dn[p] = calloc(nd, 4);
            dq[p] = malloc(4 * nq); dk[p] = malloc(4 * nk); dv[p] = malloc(4 * nv);
            tu_fill(dq[p], nq, 1); tu_fill(dk[p], nk, 2); tu_fill(dv[p], nv, 3);   /* accumulate */
            run(p ? &fast : &ref, &d, o[p], dn[p], dq[p], dk[p], dv[p], dout, q, k, v);
        }
        char what[96];
        snprintf(what, sizeof what, "sweep T=%d S=%d D=%d Dv=%d %s", T, S, D, Dv, d.causal ? "causal" : "full");
        const float *a[5] = {o[1], dn[1], dq[1], dk[1], dv[1]}, *r[5] = {o[0], dn[0], dq[0], dk[0], dv[0]};
        const size_t n[5] = {no, nd, nq, nk, nv};
        int ok = 1;
        for (int x = 0; x < 5; x++) {
            double worst = 0;
            for (size_t j = 0; j < n[x]; j++) {
                const double e = fabs((double)a[x][j] - r[x][j]) / (1.0 + fabs((double)r[x][j]));
                if (!(e <= worst)) worst = e;
            }
            ok &= worst <= 1e-5;
            if (worst > 1e-5) fprintf(stderr, "  %s: quantity %d off by %.3g\n", what, x, worst);
        }
        CHECK(ok);
        printf("  %-44s chunked == reference within 1e-5: %s\n", what, ok ? "ok" : "FAIL");
        for (int p = 0; p < 2; p++) { free(o[p]); free(dn[p]); free(dq[p]); free(dk[p]); free(dv[p]); }
        free(q); free(k); free(v); free(dout);
    }
}

static void check_threads(void) {
    attn_linear_attn_desc d;
    const int B = 3, H = 2, T = 150, D = 12, Dv = 10;
    CHECK_STATUS(attn_linear_attn_desc_init(&d, B, H, T, T, D, Dv), ATTN_OK);
    d.causal = 1;
    const size_t nq = (size_t)B * H * T * D, nv = (size_t)B * H * T * Dv, nd = (size_t)B * H * T;
    float *q = malloc(4 * nq), *k = malloc(4 * nq), *v = malloc(4 * nv), *dout = malloc(4 * nv);
    tu_fill(q, nq, 1); tu_fill(k, nq, 2); tu_fill(v, nv, 3); tu_fill(dout, nv, 4);
    float *o[2], *dn[2], *dq[2], *dk[2], *dv[2];
    for (int p = 0; p < 2; p++) {
        attn_ctx c;
        CHECK_STATUS(attn_ctx_init(&c, ATTN_ISA_AUTO, p + 1), ATTN_OK);
        o[p] = calloc(nv, 4); dn[p] = calloc(nd, 4);
        dq[p] = calloc(nq, 4); dk[p] = calloc(nq, 4); dv[p] = calloc(nv, 4);
        run(&c, &d, o[p], dn[p], dq[p], dk[p], dv[p], dout, q, k, v);
    }
    const int ok = memcmp(o[0], o[1], 4 * nv) == 0 && memcmp(dn[0], dn[1], 4 * nd) == 0 &&
                   memcmp(dq[0], dq[1], 4 * nq) == 0 && memcmp(dk[0], dk[1], 4 * nq) == 0 &&
                   memcmp(dv[0], dv[1], 4 * nv) == 0;
    CHECK(ok);
    printf("  %-44s 1 thread == 2 threads (memcmp): %s\n", "B=3 H=2 T=150 causal", ok ? "ok" : "FAIL");
    for (int p = 0; p < 2; p++) { free(o[p]); free(dn[p]); free(dq[p]); free(dk[p]); free(dv[p]); }
    free(q); free(k); free(v); free(dout);
}

static void check_refused(void) {
    attn_linear_attn_desc d, e;
    CHECK_STATUS(attn_linear_attn_desc_init(&d, 1, 1, 4, 5, 2, 2), ATTN_OK);
    CHECK_STATUS(attn_linear_attn_validate(&d), ATTN_OK);
    e = d; e.causal = 1;
    CHECK_STATUS(attn_linear_attn_validate(&e), ATTN_ERR_SHAPE);      /* causal needs T == S */
    e = d; e.eps = NAN;
    CHECK_STATUS(attn_linear_attn_validate(&e), ATTN_ERR_ARG);
    e = d; e.eps = -1.0f;
    CHECK_STATUS(attn_linear_attn_validate(&e), ATTN_ERR_ARG);
    e = d; e.out.t = 1;
    CHECK_STATUS(attn_linear_attn_validate(&e), ATTN_ERR_STRIDE);     /* output rows overlap */
    e = d; e.q.h = -1;
    CHECK_STATUS(attn_linear_attn_validate(&e), ATTN_ERR_STRIDE);
    CHECK_STATUS(attn_linear_attn_desc_init(&e, 0, 1, 4, 4, 2, 2), ATTN_ERR_SIZE);
    float buf[64] = {0};
    size_t need;
    CHECK_STATUS(attn_linear_attn_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &need), ATTN_OK);
    void *w = malloc(need);
    CHECK_STATUS(attn_linear_attn_forward(NULL, &d, buf, NULL, buf, buf, buf, w, need - 1), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_linear_attn_forward(NULL, &d, NULL, NULL, buf, buf, buf, w, need), ATTN_ERR_NULL);
    CHECK_STATUS(attn_linear_attn_backward(NULL, &d, buf, buf, buf, buf, buf, buf, buf, buf, NULL, w, need),
                 ATTN_ERR_NULL);
    free(w);
}

static void check_linformer(void) {
    attn_st_file f;
    tu_golden_open(&f, "linear_attn.safetensors");
    const char *sz = attn_st_meta(&f, "linformer/sizes");
    int B, T, S, Dm, H, N, Kp;
    if (!sz || sscanf(sz, "%d,%d,%d,%d,%d,%d,%d", &B, &T, &S, &Dm, &H, &N, &Kp) != 7) {
        fprintf(stderr, "golden: linformer/sizes missing\n");
        exit(1);
    }
    const size_t np = attn_linformer_n_params(Dm, N, Kp);
    CHECK(np == 4 * ((size_t)Dm * Dm + Dm) + 2 * (size_t)Kp * N);
    const size_t nq = (size_t)B * T * Dm, nk = (size_t)B * S * Dm;
    float *params = tu_golden_f64(&f, "linformer", "params", np), *q = tu_golden_f64(&f, "linformer", "q", nq);
    float *k = tu_golden_f64(&f, "linformer", "k", nk), *v = tu_golden_f64(&f, "linformer", "v", nk);
    float *wout = tu_golden_f64(&f, "linformer", "out", nq), *dout = tu_golden_f64(&f, "linformer", "dout", nq);
    float *wdq = tu_golden_f64(&f, "linformer", "dq", nq), *wdk = tu_golden_f64(&f, "linformer", "dk", nk);
    float *wdv = tu_golden_f64(&f, "linformer", "dv", nk), *wgrads = tu_golden_f64(&f, "linformer", "grads", np);
    const attn_isa isas[2] = {ATTN_ISA_REF, ATTN_ISA_AUTO};
    for (int p = 0; p < 2; p++) {
        attn_ctx c;
        CHECK_STATUS(attn_ctx_init(&c, isas[p], 2), ATTN_OK);
        float *grads = calloc(np, 4), *out = calloc(nq, 4), *dq = calloc(nq, 4), *dk = calloc(nk, 4);
        float *dv = calloc(nk, 4);
        attn_linformer l;
        CHECK_STATUS(attn_linformer_bind(&l, Dm, H, N, Kp, params, grads), ATTN_OK);
        size_t bytes;
        CHECK_STATUS(attn_linformer_cache_bytes(&c, &l, B, T, S, &bytes), ATTN_OK);
        void *cache = malloc(bytes);
        CHECK_STATUS(attn_linformer_forward(&c, &l, cache, bytes, out, NULL, q, k, v, B, T, S), ATTN_OK);
        CHECK_STATUS(attn_linformer_backward(&c, &l, cache, bytes, dq, dk, dv, dout, q, k, v, B, T, S), ATTN_OK);
        char what[64];
        const char *names[5] = {"out", "dq", "dk", "dv", "parameter grads"};
        const float *got[5] = {out, dq, dk, dv, grads}, *want[5] = {wout, wdq, wdk, wdv, wgrads};
        const size_t n[5] = {nq, nq, nk, nk, np};
        for (int x = 0; x < 5; x++) {
            snprintf(what, sizeof what, "linformer %s %s", attn_isa_name(c.isa), names[x]);
            tu_close_f32(what, got[x], want[x], n[x], TOL, TOL);
        }
        if (p == 0) {
            /* lifecycle refusals */
            attn_linformer e;
            CHECK_STATUS(attn_linformer_bind(&e, Dm, 3, N, Kp, params, grads), ATTN_ERR_SHAPE);
            CHECK_STATUS(attn_linformer_cache_bytes(&c, &l, B, T, N + 1, &bytes), ATTN_ERR_SHAPE);   /* S > N */
            CHECK_STATUS(attn_linformer_forward(&c, &l, cache, 1, out, NULL, q, k, v, B, T, S), ATTN_ERR_WORKSPACE);
            CHECK_STATUS(attn_linformer_bind(&e, Dm, H, N, Kp, params, NULL), ATTN_OK);
            CHECK_STATUS(attn_linformer_backward(&c, &e, cache, bytes, dq, dk, dv, dout, q, k, v, B, T, S),
                         ATTN_ERR_NULL);                                                      /* no gradients */
            attn_rng rng;
            attn_rng_seed(&rng, 1);
            float *fresh = malloc(4 * np);
            CHECK_STATUS(attn_linformer_bind(&e, Dm, H, N, Kp, fresh, NULL), ATTN_OK);
            CHECK_STATUS(attn_linformer_init_weights(&e, &rng), ATTN_OK);
            float lim = 0;
            for (size_t i = 4 * ((size_t)Dm * Dm + Dm); i < np; i++)   /* E and F */
                lim = fabsf(fresh[i]) > lim ? fabsf(fresh[i]) : lim;
            CHECK(lim > 0 && lim <= 1.0f / sqrtf((float)Kp));
            free(fresh);
        }
        free(cache); free(grads); free(out); free(dq); free(dk); free(dv);
    }
    free(params); free(q); free(k); free(v); free(wout); free(dout); free(wdq); free(wdk); free(wdv); free(wgrads);
    attn_st_free(&f);
}

int main(void) {
    printf("test_linear_attn: linear attention\n");
    check_golden();
    check_fd(1, 5, 5);
    check_fd(0, 3, 4);
    check_sweep();
    check_threads();
    check_refused();
    check_linformer();
    return tu_finish("test_linear_attn");
}
