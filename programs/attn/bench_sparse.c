/*
 * bench_sparse.c — the timings of `attn bench --varlen` and `attn bench --linear` (cmd_bench.c parses the
 * flags and calls these). Public API only.
 *
 * --varlen L1,L2,...  a packed batch of sequences of those lengths (T = S per sequence) timed three ways in
 *   the same run, min of N alternating rounds after a warm-up: packed (attn_sdpa_varlen_*), each sequence
 *   alone back to back (attn_sdpa_* on contiguous copies), and the padded batch (B = n, T = S = the longest)
 *   twice: with valid lengths per batch row (the fused kernel skips the key blocks past them) and with the
 *   padding given as a boolean key mask, broadcast over heads and rows (the way PyTorch users pass a
 *   key_padding_mask; the kernel reads it element by element and computes every pair). The packed output is
 *   checked bitwise against the per-sequence one, and both padded batches' rows inside each sequence against
 *   it within 1e-5, before timing. GFLOP/s count only the
 *   visible (query, key) pairs of the packed batch, 4·D per pair forward (2.5x that backward), for all three.
 *   Each is also given in process CPU time (min over the rounds), which a busy machine disturbs less.
 * --linear  linear attention, causal, at T = 4096 .. --tq (doubling): time per T and its ratio to
 *   proportional growth from the first T; then, at the largest T, dense causal fused attention (one timed
 *   run: it is slow) and the speed-up. Linear attention is checked against the reference path at T = 256.
 *   Wall and process CPU time both (a shared machine's waits show in the first only).
 */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fill_uniform(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

static float *zalloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* Parses "64,128,..." into lens (at most max); returns the count, or 0 after a message. */
static int parse_lens(const char *s, int *lens, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > (1 << 20) || (*end && *end != ',')) {
            fprintf(stderr, "attn: bench: --varlen %s: expected lengths 1..%d separated by commas\n", s, 1 << 20);
            return 0;
        }
        if (n == max) {
            fprintf(stderr, "attn: bench: --varlen: at most %d lengths\n", max);
            return 0;
        }
        lens[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) fprintf(stderr, "attn: bench: --varlen: no lengths given\n");
    return n;
}

#define VL_MAX 256

int bench_varlen_lens_ok(const char *spec) {
    int lens[VL_MAX];
    return parse_lens(spec, lens, VL_MAX) > 0;
}

typedef struct vl_alone {        /* one sequence as a contiguous batch of one */
    attn_sdpa_desc d;
    float *q, *k, *v, *out, *stats, *dout, *dq, *dk, *dv;
} vl_alone;

/* Runs a padded batch's pass (B = n, T = S = max) */
static attn_status run_padded(const attn_ctx *c, const attn_sdpa_desc *d, float **t, int backward, void *w,
                              size_t wb) {
    /* t: q k v out stats dout dq dk dv */
    if (!backward) return attn_sdpa_forward(c, d, t[3], t[4], NULL, t[0], t[1], t[2], w, wb);
    return attn_sdpa_backward(c, d, t[6], t[7], t[8], t[5], t[0], t[1], t[2], t[3], t[4], w, wb);
}

int bench_varlen(const char *spec, int H, int D, int causal, int backward, int repeat, const attn_ctx *ctx) {
    int lens[VL_MAX];
    const int n = parse_lens(spec, lens, VL_MAX);
    if (!n) return 2;
    int32_t cu[VL_MAX + 1];
    cu[0] = 0;
    int maxlen = 0;
    double pairs = 0;
    for (int i = 0; i < n; i++) {
        cu[i + 1] = cu[i] + lens[i];
        if (lens[i] > maxlen) maxlen = lens[i];
        pairs += causal ? 0.5 * (double)lens[i] * (lens[i] + 1) : (double)lens[i] * lens[i];
    }
    const int total = cu[n];
    attn_sdpa_varlen_desc vd;
    if (cli_fail(attn_sdpa_varlen_desc_init(&vd, n, cu, cu, H, D, D), "bench: --varlen")) return 1;
    vd.causal = causal;
    const size_t row = (size_t)H * D, ntok = (size_t)total * row;
    float *q = zalloc(ntok), *k = zalloc(ntok), *v = zalloc(ntok), *out = zalloc(ntok), *dout = zalloc(ntok);
    float *stats = zalloc((size_t)total * H * 2), *dq = zalloc(ntok), *dk = zalloc(ntok), *dv = zalloc(ntok);
    fill_uniform(q, ntok, 1); fill_uniform(k, ntok, 2); fill_uniform(v, ntok, 3); fill_uniform(dout, ntok, 4);

    /* each sequence alone, contiguous (1,H,L,D) copies; the padded batch (n,H,max,D) */
    vl_alone *al = calloc((size_t)n, sizeof *al);
    attn_sdpa_desc pd;
    attn_sdpa_desc_init(&pd, n, H, maxlen, maxlen, D, D);
    pd.mask.causal = causal;
    pd.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    pd.mask.valid_lens = lens;
    /* the same batch with the padding as a boolean key mask (n, 1, 1, max), broadcast by strides of 0 */
    attn_sdpa_desc pm = pd;
    pm.mask.valid_lens_kind = ATTN_VALID_LENS_NONE;
    pm.mask.valid_lens = NULL;
    uint8_t *allow = malloc((size_t)n * maxlen);
    if (!allow) { fprintf(stderr, "attn: bench: out of memory\n"); return 1; }
    for (int i = 0; i < n; i++)
        for (int s = 0; s < maxlen; s++) allow[(size_t)i * maxlen + s] = s < lens[i];
    pm.mask.allow = allow;
    pm.mask.allow_stride[0] = maxlen;
    pm.mask.allow_stride[1] = 0;
    pm.mask.allow_stride[2] = 0;
    const size_t npad = (size_t)n * H * maxlen * D;
    float *pt[9];
    for (int i = 0; i < 9; i++) pt[i] = zalloc(i == 4 ? (size_t)n * H * maxlen * 2 : npad);
    size_t wb = 0, need;
    for (int i = 0; i < n; i++) {
        vl_alone *a = &al[i];
        const int L = lens[i];
        const size_t m = (size_t)H * L * D;
        attn_sdpa_desc_init(&a->d, 1, H, L, L, D, D);
        a->d.mask.causal = causal;
        a->q = zalloc(m); a->k = zalloc(m); a->v = zalloc(m); a->out = zalloc(m); a->dout = zalloc(m);
        a->stats = zalloc((size_t)H * L * 2); a->dq = zalloc(m); a->dk = zalloc(m); a->dv = zalloc(m);
        float *const src[4] = {q, k, v, dout}, *const dst[4] = {a->q, a->k, a->v, a->dout};
        const int pad_of[4] = {0, 1, 2, 5};
        for (int x = 0; x < 4; x++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < L; t++) {
                    const float *s = src[x] + (size_t)(cu[i] + t) * row + (size_t)h * D;
                    memcpy(dst[x] + ((size_t)h * L + t) * D, s, sizeof(float) * (size_t)D);
                    memcpy(pt[pad_of[x]] + (((size_t)i * H + h) * maxlen + t) * D, s, sizeof(float) * (size_t)D);
                }
        for (int p = 0; p < 2; p++) {
            if (cli_fail(attn_sdpa_workspace_size(ctx, &a->d, (attn_pass)p, &need), "bench: --varlen")) return 1;
            if (need > wb) wb = need;
        }
    }
    for (int p = 0; p < 2; p++) {
        if (cli_fail(attn_sdpa_varlen_workspace_size(ctx, &vd, (attn_pass)p, &need), "bench: --varlen")) return 1;
        if (need > wb) wb = need;
        if (cli_fail(attn_sdpa_workspace_size(ctx, &pd, (attn_pass)p, &need), "bench: --varlen padded")) return 1;
        if (need > wb) wb = need;
        if (cli_fail(attn_sdpa_workspace_size(ctx, &pm, (attn_pass)p, &need), "bench: --varlen padded")) return 1;
        if (need > wb) wb = need;
    }
    void *work = malloc(wb);
    if (!work || !al) { fprintf(stderr, "attn: bench: out of memory\n"); return 1; }

    /* validate: packed == alone bitwise, both padded batches' rows within 1e-5 */
    int bad = 0;
    attn_status st = attn_sdpa_varlen_forward(ctx, &vd, out, stats, q, k, v, work, wb);
    double perr = 0;
    for (int which = 0; which < 2 && !st; which++) {
    st = run_padded(ctx, which ? &pm : &pd, pt, 0, work, wb);
    for (int i = 0; i < n && !st; i++) {
        vl_alone *a = &al[i];
        st = attn_sdpa_forward(ctx, &a->d, a->out, a->stats, NULL, a->q, a->k, a->v, work, wb);
        for (int h = 0; h < H && !st; h++)
            for (int t = 0; t < lens[i]; t++) {
                const float *pk = out + (size_t)(cu[i] + t) * row + (size_t)h * D;
                const float *me = a->out + ((size_t)h * lens[i] + t) * D;
                const float *pp = pt[3] + (((size_t)i * H + h) * maxlen + t) * D;
                bad |= memcmp(pk, me, sizeof(float) * (size_t)D) != 0;
                for (int x = 0; x < D; x++) {
                    double e = fabs((double)pp[x] - me[x]);
                    if (!(e <= perr)) perr = e;
                }
            }
    }
    }
    if (cli_fail(st, "bench: --varlen")) return 1;
    if (bad || !(perr <= 1e-5)) {
        fprintf(stderr, "attn: bench: --varlen: validation failed (packed %s alone bitwise; padded max |err| %.3g)\n",
                bad ? "differs from" : "equals", perr);
        return 1;
    }

    printf("attn bench --varlen: %d sequences (%d tokens, longest %d), H=%d D=%d%s, fp32, path %s, %d threads\n",
           n, total, maxlen, H, D, causal ? " causal" : "", attn_isa_name(ctx->isa), ctx->threads);
    printf("  validated: packed == each sequence alone (memcmp); both padded batches within %.2g of it\n", perr);
    printf("  FLOPs: %.4g visible (query, key) pairs x H x 4·D forward (x 2.5 backward), the same count for all "
           "four; min of %d alternating rounds after a warm-up\n", pairs, repeat);
    for (int pass = 0; pass <= backward; pass++) {
        double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, cpu[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
        for (int r = 0; r <= repeat && !st; r++) {   /* round 0 warms up */
            double t0 = cli_now(), c0 = cli_cpu_now(), tm[4], cm[4];
            if (!pass) st = attn_sdpa_varlen_forward(ctx, &vd, out, stats, q, k, v, work, wb);
            else st = attn_sdpa_varlen_backward(ctx, &vd, dq, dk, dv, dout, q, k, v, out, stats, work, wb);
            tm[0] = cli_now() - t0;
            cm[0] = cli_cpu_now() - c0;
            t0 = cli_now();
            c0 = cli_cpu_now();
            for (int i = 0; i < n && !st; i++) {
                vl_alone *a = &al[i];
                if (!pass) st = attn_sdpa_forward(ctx, &a->d, a->out, a->stats, NULL, a->q, a->k, a->v, work, wb);
                else st = attn_sdpa_backward(ctx, &a->d, a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->out,
                                             a->stats, work, wb);
            }
            tm[1] = cli_now() - t0;
            cm[1] = cli_cpu_now() - c0;
            t0 = cli_now();
            c0 = cli_cpu_now();
            if (!st) st = run_padded(ctx, &pd, pt, pass, work, wb);
            tm[2] = cli_now() - t0;
            cm[2] = cli_cpu_now() - c0;
            t0 = cli_now();
            c0 = cli_cpu_now();
            if (!st) st = run_padded(ctx, &pm, pt, pass, work, wb);
            tm[3] = cli_now() - t0;
            cm[3] = cli_cpu_now() - c0;
            for (int x = 0; x < 4 && r > 0; x++) {
                if (tm[x] < best[x]) best[x] = tm[x];
                if (cm[x] < cpu[x]) cpu[x] = cm[x];
            }
        }
        if (cli_fail(st, "bench: --varlen")) return 1;
        const double flops = pairs * H * 4.0 * D * (pass ? 2.5 : 1.0);
        const char *names[4] = {"packed", "alone, back to back", "padded, valid lengths", "padded, boolean mask"};
        for (int x = 0; x < 4; x++)
            printf("  %-8s %-22s %10.3f ms %8.1f GFLOP/s   CPU %10.3f ms\n", x ? "" : (pass ? "backward" : "forward"),
                   names[x], best[x] * 1e3, flops / best[x] * 1e-9, cpu[x] * 1e3);
        printf("  %-8s wall: packed / alone = %.3fx, padded (valid lengths) / packed = %.2fx, padded (boolean mask) "
               "/ packed = %.2fx\n", "", best[0] / best[1], best[2] / best[0], best[3] / best[0]);
        printf("  %-8s CPU:  packed / alone = %.3fx, padded (valid lengths) / packed = %.2fx, padded (boolean mask) "
               "/ packed = %.2fx\n", "", cpu[0] / cpu[1], cpu[2] / cpu[0], cpu[3] / cpu[0]);
    }
    for (int i = 0; i < n; i++) {
        vl_alone *a = &al[i];
        free(a->q); free(a->k); free(a->v); free(a->out); free(a->dout); free(a->stats);
        free(a->dq); free(a->dk); free(a->dv);
    }
    for (int i = 0; i < 9; i++) free(pt[i]);
    free(allow);
    free(al); free(work); free(q); free(k); free(v); free(out); free(dout); free(stats); free(dq); free(dk); free(dv);
    return 0;
}

/* ---- linear attention ---------------------------------------------------------------------------- */

/* Linear attention of (1,H,T,D), causal, on ctx: checks the fast path against the reference at small T. */
static int linear_check(const attn_ctx *ctx, int H, int D, double *err) {
    const int T = 256;
    attn_linear_attn_desc d;
    attn_linear_attn_desc_init(&d, 1, H, T, T, D, D);
    d.causal = 1;
    const size_t m = (size_t)H * T * D;
    float *q = zalloc(m), *k = zalloc(m), *v = zalloc(m), *o1 = zalloc(m), *o2 = zalloc(m);
    fill_uniform(q, m, 5); fill_uniform(k, m, 6); fill_uniform(v, m, 7);
    attn_ctx ref;
    attn_ctx_init(&ref, ATTN_ISA_REF, 1);
    size_t w1 = 0, w2 = 0;
    attn_status st = attn_linear_attn_workspace_size(ctx, &d, ATTN_PASS_FORWARD, &w1);
    if (!st) st = attn_linear_attn_workspace_size(&ref, &d, ATTN_PASS_FORWARD, &w2);
    void *w = malloc(w1 > w2 ? w1 : w2);
    if (!st) st = attn_linear_attn_forward(ctx, &d, o1, NULL, q, k, v, w, w1);
    if (!st) st = attn_linear_attn_forward(&ref, &d, o2, NULL, q, k, v, w, w2);
    *err = 0;
    for (size_t i = 0; i < m; i++) {
        double e = fabs((double)o1[i] - o2[i]);
        if (!(e <= *err)) *err = e;
    }
    free(q); free(k); free(v); free(o1); free(o2); free(w);
    return cli_fail(st, "bench: --linear");
}

int bench_linear(int H, int D, int tmax, int backward, int repeat, const attn_ctx *ctx) {
    double err;
    if (linear_check(ctx, H, D, &err)) return 1;
    if (!(err <= 1e-5)) {
        fprintf(stderr, "attn: bench: --linear: fast path differs from the reference by %.3g\n", err);
        return 1;
    }
    printf("attn bench --linear: causal linear attention, B=1 H=%d D=Dv=%d, fp32, path %s, %d threads\n", H, D,
           attn_isa_name(ctx->isa), ctx->threads);
    printf("  validated against the reference path at T=256: max |err| %.2g; min of %d runs after a warm-up\n",
           err, repeat);
    printf("  %8s %-9s %12s %14s %16s %12s %16s\n", "T", "pass", "ms", "us per token", "vs proportional",
           "CPU ms", "CPU vs prop.");
    double first[2] = {0, 0}, first_cpu[2] = {0, 0}, last_fwd = 0, last_fwd_cpu = 0;
    int t_first = 0, t_last = 0;
    for (int T = 4096 < tmax ? 4096 : tmax; T <= tmax; T *= 2) {
        t_last = T;
        attn_linear_attn_desc d;
        if (cli_fail(attn_linear_attn_desc_init(&d, 1, H, T, T, D, D), "bench: --linear")) return 1;
        d.causal = 1;
        const size_t m = (size_t)H * T * D;
        float *q = zalloc(m), *k = zalloc(m), *v = zalloc(m), *o = zalloc(m), *den = zalloc((size_t)H * T);
        float *go = zalloc(m), *dq = zalloc(m), *dk = zalloc(m), *dv = zalloc(m);
        fill_uniform(q, m, 1); fill_uniform(k, m, 2); fill_uniform(v, m, 3); fill_uniform(go, m, 4);
        size_t w1 = 0, w2 = 0;
        attn_status st = attn_linear_attn_workspace_size(ctx, &d, ATTN_PASS_FORWARD, &w1);
        if (!st) st = attn_linear_attn_workspace_size(ctx, &d, ATTN_PASS_BACKWARD, &w2);
        void *w = malloc(w1 > w2 ? w1 : w2);
        for (int pass = 0; pass <= backward && !st; pass++) {
            double best = INFINITY, cbest = INFINITY;
            for (int r = 0; r <= repeat && !st; r++) {
                double t0 = cli_now(), c0 = cli_cpu_now();
                if (!pass) st = attn_linear_attn_forward(ctx, &d, o, den, q, k, v, w, w1);
                else st = attn_linear_attn_backward(ctx, &d, dq, dk, dv, go, q, k, v, o, den, w, w2);
                double dt = cli_now() - t0, dc = cli_cpu_now() - c0;
                if (r > 0 && dt < best) best = dt;
                if (r > 0 && dc < cbest) cbest = dc;
            }
            if (!t_first) t_first = T;
            if (T == t_first) { first[pass] = best; first_cpu[pass] = cbest; }
            if (!pass) { last_fwd = best; last_fwd_cpu = cbest; }
            printf("  %8d %-9s %12.3f %14.4f %15.3fx %12.3f %15.3fx\n", T, pass ? "backward" : "forward", best * 1e3,
                   best * 1e6 / T, best / (first[pass] * T / t_first), cbest * 1e3,
                   cbest / (first_cpu[pass] * T / t_first));
        }
        free(q); free(k); free(v); free(o); free(den); free(go); free(dq); free(dk); free(dv); free(w);
        if (cli_fail(st, "bench: --linear")) return 1;
    }
    /* dense causal fused attention at the largest T, one run */
    const int T = t_last;
    attn_sdpa_desc sd;
    if (cli_fail(attn_sdpa_desc_init(&sd, 1, H, T, T, D, D), "bench: --linear")) return 1;
    sd.mask.causal = 1;
    const size_t m = (size_t)H * T * D;
    float *q = zalloc(m), *k = zalloc(m), *v = zalloc(m), *o = zalloc(m), *stt = zalloc((size_t)H * T * 2);
    fill_uniform(q, m, 1); fill_uniform(k, m, 2); fill_uniform(v, m, 3);
    size_t wb = 0;
    attn_status st = attn_sdpa_workspace_size(ctx, &sd, ATTN_PASS_FORWARD, &wb);
    void *w = malloc(wb ? wb : 1);
    double t0 = cli_now(), c0 = cli_cpu_now();
    if (!st) st = attn_sdpa_forward(ctx, &sd, o, stt, NULL, q, k, v, w, wb);
    const double dense = cli_now() - t0, dense_cpu = cli_cpu_now() - c0;
    free(q); free(k); free(v); free(o); free(stt); free(w);
    if (cli_fail(st, "bench: --linear")) return 1;
    printf("  dense causal fused attention (attn_sdpa_forward), T=%d, one run: %.3f ms (%.1f GFLOP/s on visible "
           "pairs), CPU %.3f ms\n", T, dense * 1e3, 0.5 * (double)T * (T + 1) * H * 4.0 * D / dense * 1e-9,
           dense_cpu * 1e3);
    printf("  linear forward at T=%d is %.1fx faster than dense causal (wall); %.1fx less CPU time\n", T,
           dense / last_fwd, dense_cpu / last_fwd_cpu);
    return 0;
}
