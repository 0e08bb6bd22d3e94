/*
 * test_ring.c — ring attention over MPI against the single-process fused kernel on the same data (run by
 * ctest under mpirun with 2, 3 and 4 ranks). Every rank makes the whole problem from one seed, runs the
 * single-process forward and backward on it, then the ring on its own shard, and compares its shard:
 * out, stats (as log-sum-exp), dq, dk, dv within 1e-5. Cases: plain, T != S, causal (zig-zag), valid
 * lengths per batch and per query, causal with lengths, grouped-query heads; then the refusals (dropout,
 * a bias mask, T not a multiple of N) arrive on every rank as a status, not a hang.
 * Rank 0 prints every case's worst error over all ranks; the exit status is non-zero on any failure.
 */
#include "attn/mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_rank, g_n, g_fail;

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static float *make(size_t n, uint64_t *s) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = frand(s);
    return x;
}

/* The worst |got − want| over every rank (printed on rank 0); a failure when above tol. */
static void report(const char *name, const char *what, double err, double tol) {
    double worst;
    MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int bad = !(worst <= tol);
    if (bad) g_fail++;
    if (g_rank == 0) printf("  N=%d %-28s %-6s max_abs=%.3g %s\n", g_n, name, what, worst, bad ? "FAIL" : "ok");
}

/* x_local (B,Hx,L/N,W) contiguous vs the rank's rows of x_full (B,Hx,L,W). */
static double shard_err(const float *loc, const float *full, int B, int Hx, int L, int W, int causal) {
    int Ll = L / g_n;
    double e = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hx; h++)
            for (int t = 0; t < Ll; t++) {
                int64_t g = attn_ring_global_row(L, causal, g_n, g_rank, t);
                const float *a = loc + (((size_t)b * Hx + h) * Ll + t) * W;
                const float *f = full + (((size_t)b * Hx + h) * L + g) * W;
                for (int i = 0; i < W; i++) {
                    double d = fabs((double)a[i] - (double)f[i]);
                    if (!(d <= e)) e = d;
                }
            }
    return e;
}

static float *take_shard(const float *full, int B, int Hx, int L, int W, int causal) {
    int Ll = L / g_n;
    float *loc = malloc(sizeof(float) * (size_t)B * Hx * Ll * W);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hx; h++)
            for (int t = 0; t < Ll; t++) {
                int64_t g = attn_ring_global_row(L, causal, g_n, g_rank, t);
                memcpy(loc + (((size_t)b * Hx + h) * Ll + t) * W, full + (((size_t)b * Hx + h) * L + g) * W,
                       sizeof(float) * W);
            }
    return loc;
}

enum { LENS_NONE, LENS_BATCH, LENS_QUERY };

/* strided nonzero: the rank's k and v sit in rows 5 floats wider than D (not the ring's block layout). */
static void run_case(const char *name, int B, int H, int Hkv, int T, int S, int D, int Dv, int causal, int lens,
                     int strided) {
    uint64_t seed = 1234567u + (uint64_t)T * 31 + (uint64_t)S * 7 + (uint64_t)causal * 3 + (uint64_t)lens;
    const size_t nq = (size_t)B * H * T * D, nk = (size_t)B * Hkv * S * D, nv = (size_t)B * Hkv * S * Dv,
                 no = (size_t)B * H * T * Dv;
    float *q = make(nq, &seed), *k = make(nk, &seed), *v = make(nv, &seed), *dout = make(no, &seed);
    int32_t *vl = NULL, *vl_loc = NULL;
    if (lens == LENS_BATCH) {
        vl = malloc(sizeof(int32_t) * B);
        for (int b = 0; b < B; b++) vl[b] = b == 0 ? S : b == 1 ? 0 : (int32_t)(S / 3 + b);
    } else if (lens == LENS_QUERY) {
        vl = malloc(sizeof(int32_t) * B * T);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) vl[b * T + t] = (int32_t)((t * 7 + b * 5) % (S + 3)) - 1 < 0 ? 0 : (t * 7 + b * 5) % (S + 3) - 1;
        vl_loc = malloc(sizeof(int32_t) * B * (T / g_n));
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T / g_n; t++)
                vl_loc[b * (T / g_n) + t] = vl[b * T + attn_ring_global_row(T, causal, g_n, g_rank, t)];
    }

    attn_ctx ctx;
    attn_ctx_init(&ctx, ATTN_ISA_AUTO, 0);

    /* the single process, the whole problem */
    attn_sdpa_desc d;
    attn_sdpa_desc_init(&d, B, H, T, S, D, Dv);
    d.Hkv = Hkv;
    d.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    d.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    d.mask.causal = causal;
    d.mask.valid_lens_kind = lens == LENS_BATCH ? ATTN_VALID_LENS_PER_BATCH
                           : lens == LENS_QUERY ? ATTN_VALID_LENS_PER_QUERY : ATTN_VALID_LENS_NONE;
    d.mask.valid_lens = vl;
    size_t fw, bw;
    attn_sdpa_workspace_size(&ctx, &d, ATTN_PASS_FORWARD, &fw);
    attn_sdpa_workspace_size(&ctx, &d, ATTN_PASS_BACKWARD, &bw);
    void *work = malloc(fw > bw ? fw : bw);
    float *out = malloc(sizeof(float) * no), *stats = malloc(sizeof(float) * B * H * T * 2);
    float *dq = calloc(nq, sizeof(float)), *dk = calloc(nk, sizeof(float)), *dv = calloc(nv, sizeof(float));
    attn_status st1 = attn_sdpa_forward(&ctx, &d, out, stats, NULL, q, k, v, work, fw);
    attn_status st2 = attn_sdpa_backward(&ctx, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw);
    if (st1 != ATTN_OK || st2 != ATTN_OK) {
        fprintf(stderr, "rank %d: %s: single-process call failed: %s\n", g_rank, name,
                attn_status_string(st1 != ATTN_OK ? st1 : st2));
        g_fail++;
    }
    attn_sdpa_logsumexp(stats, (int64_t)B * H * T, stats);

    /* the ring, this rank's shard */
    attn_sdpa_desc r;
    attn_ring_desc_init(&r, MPI_COMM_WORLD, B, H, T, S, D, Dv);
    r.Hkv = Hkv;
    r.k = (attn_layout){(int64_t)Hkv * (S / g_n) * D, (int64_t)(S / g_n) * D, D};
    r.v = (attn_layout){(int64_t)Hkv * (S / g_n) * Dv, (int64_t)(S / g_n) * Dv, Dv};
    r.mask = d.mask;
    r.mask.valid_lens = lens == LENS_QUERY ? vl_loc : vl;
    float *lq = take_shard(q, B, H, T, D, causal), *lk = take_shard(k, B, Hkv, S, D, causal);
    float *lv = take_shard(v, B, Hkv, S, Dv, causal), *ldout = take_shard(dout, B, H, T, Dv, causal);
    const int Tl = T / g_n, Sl = S / g_n;
    float *lout = malloc(sizeof(float) * B * H * Tl * Dv), *lstats = malloc(sizeof(float) * B * H * Tl * 2);
    float *ldq = calloc((size_t)B * H * Tl * D, sizeof(float)), *ldk = calloc((size_t)B * Hkv * Sl * D, sizeof(float));
    float *ldv = calloc((size_t)B * Hkv * Sl * Dv, sizeof(float));
    float *wk = NULL, *wv = NULL, *wdk = NULL, *wdv = NULL;   /* the wide copies when strided */
    if (strided) {
        const int wD = D + 5, wDv = Dv + 5;
        wk = calloc((size_t)B * Hkv * Sl * wD, sizeof(float)); wdk = calloc((size_t)B * Hkv * Sl * wD, sizeof(float));
        wv = calloc((size_t)B * Hkv * Sl * wDv, sizeof(float)); wdv = calloc((size_t)B * Hkv * Sl * wDv, sizeof(float));
        for (size_t row = 0; row < (size_t)B * Hkv * Sl; row++) {
            memcpy(wk + row * wD, lk + row * D, sizeof(float) * D);
            memcpy(wv + row * wDv, lv + row * Dv, sizeof(float) * Dv);
        }
        r.k = (attn_layout){(int64_t)Hkv * Sl * wD, (int64_t)Sl * wD, wD};
        r.v = (attn_layout){(int64_t)Hkv * Sl * wDv, (int64_t)Sl * wDv, wDv};
    }
    size_t rfw = 0, rbw = 0;
    attn_status s1 = attn_ring_workspace_size(&ctx, &r, MPI_COMM_WORLD, ATTN_PASS_FORWARD, &rfw);
    attn_status s2 = attn_ring_workspace_size(&ctx, &r, MPI_COMM_WORLD, ATTN_PASS_BACKWARD, &rbw);
    void *rwork = malloc(rfw > rbw ? rfw : rbw);
    uint64_t sent = 0;
    attn_status s3 = attn_ring_sdpa_forward(&ctx, &r, MPI_COMM_WORLD, lout, lstats, lq, strided ? wk : lk,
                                            strided ? wv : lv, rwork, rfw, &sent);
    attn_status s4 = attn_ring_sdpa_backward(&ctx, &r, MPI_COMM_WORLD, ldq, strided ? wdk : ldk, strided ? wdv : ldv,
                                             ldout, lq, strided ? wk : lk, strided ? wv : lv, lout, lstats,
                                             rwork, rbw, &sent);
    if (strided) {
        for (size_t row = 0; row < (size_t)B * Hkv * Sl; row++) {
            memcpy(ldk + row * D, wdk + row * (D + 5), sizeof(float) * D);
            memcpy(ldv + row * Dv, wdv + row * (Dv + 5), sizeof(float) * Dv);
        }
        free(wk); free(wv); free(wdk); free(wdv);
    }
    if (s1 || s2 || s3 || s4) {
        fprintf(stderr, "rank %d: %s: ring call failed: %s %s %s %s\n", g_rank, name, attn_status_string(s1),
                attn_status_string(s2), attn_status_string(s3), attn_status_string(s4));
        g_fail++;
    }
    attn_sdpa_logsumexp(lstats, (int64_t)B * H * Tl, lstats);
    /* the bytes formula of mpi.h */
    uint64_t blk = (uint64_t)B * Hkv * Sl * (D + Dv) * sizeof(float);
    uint64_t want = 2 * (uint64_t)(g_n - 1) * blk + (g_n > 1 ? (uint64_t)g_n * blk : 0);
    report(name, "bytes", sent == want ? 0.0 : 1.0, 0.0);

    report(name, "out", shard_err(lout, out, B, H, T, Dv, causal), 1e-5);
    /* fully masked rows: −∞ on both sides */
    double lerr = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < Tl; t++) {
                float a = lstats[((size_t)b * H + h) * Tl + t];
                float f = stats[((size_t)b * H + h) * T + attn_ring_global_row(T, causal, g_n, g_rank, t)];
                double e = (isinf(a) && isinf(f) && a == f) ? 0 : fabs((double)a - (double)f);
                if (!(e <= lerr)) lerr = e;
            }
    report(name, "lse", lerr, 1e-5);
    report(name, "dq", shard_err(ldq, dq, B, H, T, D, causal), 1e-5);
    report(name, "dk", shard_err(ldk, dk, B, Hkv, S, D, causal), 1e-5);
    report(name, "dv", shard_err(ldv, dv, B, Hkv, S, Dv, causal), 1e-5);

    free(q); free(k); free(v); free(dout); free(vl); free(vl_loc); free(work); free(out); free(stats);
    free(dq); free(dk); free(dv); free(lq); free(lk); free(lv); free(ldout); free(lout); free(lstats);
    free(ldq); free(ldk); free(ldv); free(rwork);
}

/* A refused argument comes back as a status on every rank (no rank left waiting for a message). */
static void refusals(void) {
    attn_ctx ctx;
    attn_ctx_init(&ctx, ATTN_ISA_AUTO, 0);
    int n = g_n, T = 4 * n, D = 8;
    attn_sdpa_desc r;
    attn_ring_desc_init(&r, MPI_COMM_WORLD, 1, 1, T, T, D, D);
    size_t bytes = 0;
    attn_ring_workspace_size(&ctx, &r, MPI_COMM_WORLD, ATTN_PASS_FORWARD, &bytes);
    void *work = malloc(bytes + 4096);
    float *x = calloc((size_t)T * D, sizeof(float)), *o = calloc((size_t)T * D, sizeof(float));
    float *s = calloc((size_t)T * 2, sizeof(float));
    attn_sdpa_desc bad = r;
    if (g_rank == n - 1) bad.dropout = 0.1f;      /* one rank's arguments are wrong */
    attn_status st = attn_ring_sdpa_forward(&ctx, &bad, MPI_COMM_WORLD, o, s, x, x, x, work, bytes + 4096, NULL);
    int ok = g_rank == n - 1 ? st == ATTN_ERR_UNSUPPORTED : st == ATTN_ERR_ARG;
    report("refusal: one rank's dropout", "status", ok ? 0 : 1, 0);
    if (n > 1) {                                  /* with one rank every T is a multiple */
        bad = r;
        bad.T = T + 1;
        st = attn_ring_sdpa_forward(&ctx, &bad, MPI_COMM_WORLD, o, s, x, x, x, work, bytes + 4096, NULL);
        report("refusal: T not a multiple", "status", st == ATTN_ERR_SHAPE ? 0 : 1, 0);
    }
    st = attn_ring_sdpa_forward(&ctx, &r, MPI_COMM_WORLD, o, s, x, x, x, work, g_rank == 0 ? 8 : bytes, NULL);
    report("refusal: small workspace", "status", (g_rank == 0 ? st == ATTN_ERR_WORKSPACE : st == ATTN_ERR_ARG) ? 0 : 1, 0);
    attn_ctx ref;
    attn_ctx_init(&ref, ATTN_ISA_REF, 1);
    st = attn_ring_sdpa_forward(&ref, &r, MPI_COMM_WORLD, o, s, x, x, x, work, bytes, NULL);
    report("refusal: reference path", "status", st == ATTN_ERR_UNSUPPORTED ? 0 : 1, 0);
    free(work); free(x); free(o); free(s);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_n);
    const int n = g_n, c = 2 * n;              /* causal cases need multiples of 2N */
    if (g_rank == 0) printf("ring attention on %d ranks against the single-process fused kernel\n", n);
    run_case("plain", 2, 2, 2, 12 * n, 12 * n, 16, 16, 0, LENS_NONE, 0);
    run_case("T != S, D != Dv", 1, 3, 3, 5 * n, 9 * n, 24, 8, 0, LENS_NONE, 0);
    run_case("long rows (block path)", 1, 1, 1, 40 * n, 40 * n, 32, 32, 0, LENS_NONE, 0);
    run_case("causal zig-zag", 2, 2, 2, 9 * c, 9 * c, 16, 16, 1, LENS_NONE, 0);
    run_case("causal, chunk of 1 row", 1, 2, 2, c, c, 8, 8, 1, LENS_NONE, 0);
    run_case("valid lens per batch", 3, 2, 2, 6 * n, 10 * n, 16, 16, 0, LENS_BATCH, 0);
    run_case("valid lens per query", 2, 2, 2, 6 * n, 7 * n, 16, 16, 0, LENS_QUERY, 0);
    run_case("causal + lens per batch", 3, 1, 1, 5 * c, 5 * c, 16, 16, 1, LENS_BATCH, 0);
    run_case("causal + lens per query", 2, 2, 2, 4 * c, 4 * c, 16, 16, 1, LENS_QUERY, 0);
    run_case("grouped-query heads", 1, 4, 2, 8 * c, 8 * c, 16, 16, 1, LENS_NONE, 0);
    run_case("strided k, v", 2, 2, 1, 6 * n, 8 * n, 16, 12, 0, LENS_NONE, 1);
    run_case("strided k, v, causal + lens", 2, 2, 2, 3 * c, 3 * c, 8, 16, 1, LENS_QUERY, 1);
    refusals();
    if (g_rank == 0) printf("%s\n", g_fail ? "FAILED" : "all passed");
    int any;
    MPI_Allreduce(&g_fail, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any ? 1 : 0;
}
