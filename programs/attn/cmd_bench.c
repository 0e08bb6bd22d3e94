/*
 * cmd_bench.c — `attn bench`: times the fused scaled dot-product attention against the reference kernels
 * in the same run, after checking that they agree.
 *
 * For each case (given by flags, or the default suite): validate fused against reference, time the fused
 * kernel (best of N after a warm-up), report GFLOP/s, the fraction of the fp32 FMA peak measured in this
 * run by an FMA loop on every thread, the speed-up over the reference, and memory (tensors + workspace
 * accounted explicitly, and the process's peak RSS). Uses the public API only.
 *
 * --dtype bf16 runs the same cases with bf16 tensors (--compute bf16: fp32 tensors computed in bf16),
 * validated against the reference on the same bf16 inputs with a bf16 tolerance, and, where the path
 * multiplies in bf16 (AMX), reports the fraction of an AMX bf16 tile-loop peak measured in the same run.
 *
 * FLOPs: forward 2·(D + Dv) per visible (query, key) pair (two products, 2 FLOPs per multiply-add): 4·D
 * per pair when Dv = D, so 4·B·H·T·S·D dense and about half that causal (the pairs are counted exactly:
 * T·(T+1)/2 per head when T = S); backward counted as 2.5 x forward. With --window, --sinks the pairs
 * the window hides are not counted, so dense, causal and windowed figures compare directly; the kernel's
 * own count of the scores it formed (attn_sdpa_scores_computed) is printed next to the visible pairs.
 *
 * Reference time: the reference kernels loop over (batch, kv head) groups independently, so when the whole
 * problem is too slow for them we time one group and multiply by the number of groups (said in the output);
 * when even one group is too slow, the reference runs only on a cropped problem to validate and no
 * speed-up is given.
 */
#define _POSIX_C_SOURCE 200809L   /* sysconf */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static double peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss * 1024.0;   /* Linux: kilobytes */
}

/* ---- the FMA peak ------------------------------------------------------------------------------- */

#define FMA_ITERS 4000000L

#if defined(__x86_64__) && defined(__GNUC__)
/* 12 independent chains of 16-lane FMAs: 384 FLOPs per iteration. */
__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters, float seed) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(seed + (float)i);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}
/* 12 chains of 8-lane FMAs: 192 FLOPs per iteration. */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters, float seed) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(seed + (float)i);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}
#endif

/* Scalar fallback: 8 chains, 16 FLOPs per iteration. */
static float fma_loop_scalar(long iters, float seed) {
    float a[8];
    for (int i = 0; i < 8; i++) a[i] = seed + (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 8; i++) a[i] = fmaf(a[i], 0.999999f, 1e-7f);
    return a[0] + a[7];
}

static volatile float g_sink;

/* Best GFLOP/s of 3 runs of loop(iters, 1) on nth threads at once (flops_per_iter each iteration). */
static double best_gflops(float (*loop)(long, float), long iters, double flops_per_iter, int nth) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = cli_now();
        int used = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nth)
#endif
        {
            g_sink = loop(iters, 1.0f);
#ifdef _OPENMP
#pragma omp master
            used = omp_get_num_threads();
#endif
        }
        double dt = cli_now() - t0;
        double gf = flops_per_iter * (double)iters * used / dt * 1e-9;
        if (gf > best) best = gf;
    }
    (void)nth;
    return best;
}

/* Measured fp32 peak of nth threads in GFLOP/s (best of 3), and the loop's name. */
static double measure_peak(int nth, const char **kind) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (attn_cpu_supports(ATTN_ISA_AVX512)) {
        *kind = "avx512 fma";
        return best_gflops(fma_loop_avx512, FMA_ITERS / 4, 384, nth);
    }
    if (attn_cpu_supports(ATTN_ISA_AVX2)) {
        *kind = "avx2 fma";
        return best_gflops(fma_loop_avx2, FMA_ITERS / 2, 192, nth);
    }
#endif
    *kind = "scalar fmaf";
    return best_gflops(fma_loop_scalar, FMA_ITERS / 8, 16, nth);
}

/* ---- the AVX512-BF16 peak ------------------------------------------------------------------------ */

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define BENCH_HAVE_DPBF16 1
/* 12 independent chains of vdpbf16ps: 16 lanes x 2 products, 768 FLOPs per iteration (counted as the
 * fused kernels count a bf16 product: 2 FLOPs). */
__attribute__((target("avx512f,avx512bf16"))) static float dp_loop_avx512bf16(long iters, float seed) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(seed + (float)i);
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f7f3f7f), y = (__m512bh)_mm512_set1_epi32(0x33d633d6);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

/* Measured vdpbf16ps peak of nth threads in GFLOP/s (best of 3); 0 when the CPU lacks AVX512-BF16. */
static double measure_dp_peak(int nth) {
#ifdef BENCH_HAVE_DPBF16
    if (attn_cpu_supports(ATTN_ISA_AVX512BF16)) return best_gflops(dp_loop_avx512bf16, FMA_ITERS / 4, 768, nth);
#endif
    (void)nth;
    return 0;
}

/* ---- the AMX bf16 peak --------------------------------------------------------------------------- */

#define AMX_ITERS 200000L

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
#define BENCH_HAVE_AMX 1
/* 4 independent accumulators, 2 A and 2 B tiles, each step 4 tile products of 16 x 16 x 32: 4·16384
 * FLOPs. The library asked the OS for the tile state already (attn_cpu_supports). */
__attribute__((target("amx-tile,amx-bf16"))) static float amx_loop(long iters, float seed) {
    (void)seed;   /* the peak loops' signature; the tiles start from fixed values */
    /* the configuration as a constant: built on the stack, GCC 12 may drop the stores ldtilecfg reads */
    static const struct { uint8_t palette, start; uint8_t res[14]; uint16_t colsb[16]; uint8_t rows[16]; }
        cfg __attribute__((aligned(64))) = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64},
                                            {16, 16, 16, 16, 16, 16, 16, 16}};
    static _Alignas(64) uint16_t ab[2][16 * 32];
    _Alignas(64) float c[16 * 16];
    for (int i = 0; i < 16 * 32; i++) ab[0][i] = ab[1][i] = 0x3c00;   /* 1/128 */
    _tile_loadconfig(&cfg);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, ab[0], 64); _tile_loadd(5, ab[1], 64);
    _tile_loadd(6, ab[0], 64); _tile_loadd(7, ab[1], 64);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    _tile_release();
    return c[0];
}
#endif

/* Measured AMX bf16 peak of nth threads in GFLOP/s (best of 3); 0 when the path is not available. */
static double measure_amx_peak(int nth) {
#ifdef BENCH_HAVE_AMX
    if (attn_cpu_supports(ATTN_ISA_AMX)) return best_gflops(amx_loop, AMX_ITERS, 4.0 * 16384.0, nth);
#endif
    (void)nth;
    return 0;
}

/* ---- one case ----------------------------------------------------------------------------------- */

typedef struct bcase {
    int B, H, Hkv, T, S, D, Dv, causal, backward;
} bcase;

typedef struct bopts {
    int repeat, threads, json;
    int copies;                  /* K and V in this many copies used in turn (--copies) */
    int weights;                 /* forwards also write the weights (B,H,T,S) */
    attn_ctx ctx;                /* the fused path timed, on the bench's threads */
    attn_ctx ref;                /* the reference path, on the same threads */
    double peak;
    const char *peak_kind;
    int bf16_units;              /* the timed path multiplies in bf16 (AMX, AVX512-BF16): its peak is the roof */
} bopts;

/* The element and compute types of every case (--dtype, --compute). */
static attn_dtype g_dtype = ATTN_DTYPE_F32, g_compute = ATTN_DTYPE_F32;

/* The sparse mask parts of every case (--window, --sinks, --alibi, --softcap). */
#define BENCH_ALIBI_HMAX 4096
static int g_window, g_wl, g_wr, g_sinks, g_alibi;
static float g_softcap;
static float g_slopes[BENCH_ALIBI_HMAX];

static void fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

static float *falloc(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* Max |a - b| over n, and max |b|. */
static void max_err(const float *a, const float *b, size_t n, double *err, double *mag) {
    for (size_t i = 0; i < n; i++) {
        if (!(isfinite(a[i]) == isfinite(b[i]))) { *err = INFINITY; continue; }
        if (!isfinite(a[i])) continue;       /* both -inf (a fully masked row) */
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= *err)) *err = e;
        if (fabs(b[i]) > *mag) *mag = fabs(b[i]);
    }
}

/* Tensors of a contiguous problem. */
typedef struct tensors {
    float *q, *k, *v, *out, *stats, *dout, *dq, *dk, *dv;
    float *w;                    /* the weights, when the forward writes them (else NULL) */
    uint16_t *qh, *kh, *vh, *outh, *douth, *dqh, *dkh, *dvh;   /* bf16 tensors (--dtype bf16) */
    size_t nq, nk, nv, no, nl, nw;
    int ncopies;                 /* --copies: K and V copies (the first is k, v / kh, vh themselves) */
    void **kc, **vc;
} tensors;

static uint16_t *halloc(size_t n) { return malloc(sizeof(uint16_t) * (n ? n : 1)); }
static void to_bf16(uint16_t *h, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = attn_bf16_from_f32(x[i]);
}
static void from_bf16(float *x, const uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = attn_bf16_to_f32(h[i]);
}

static int tensors_alloc(tensors *t, const attn_sdpa_desc *d, int weights) {
    memset(t, 0, sizeof *t);
    if (weights) {
        t->nw = (size_t)d->B * d->H * d->T * d->S;
        if (!(t->w = falloc(t->nw))) return 0;
    }
    t->nq = (size_t)d->B * d->H * d->T * d->D;
    t->nk = (size_t)d->B * d->Hkv * d->S * d->D;
    t->nv = (size_t)d->B * d->Hkv * d->S * d->Dv;
    t->no = (size_t)d->B * d->H * d->T * d->Dv;
    t->nl = (size_t)d->B * d->H * d->T * ATTN_SDPA_STATS;
    t->q = falloc(t->nq); t->k = falloc(t->nk); t->v = falloc(t->nv);
    t->out = falloc(t->no); t->stats = falloc(t->nl); t->dout = falloc(t->no);
    t->dq = falloc(t->nq); t->dk = falloc(t->nk); t->dv = falloc(t->nv);
    if (!t->q || !t->k || !t->v || !t->out || !t->stats || !t->dout || !t->dq || !t->dk || !t->dv) return 0;
    fill(t->q, t->nq, 1); fill(t->k, t->nk, 2); fill(t->v, t->nv, 3); fill(t->dout, t->no, 4);
    memset(t->out, 0, sizeof(float) * t->no);
    memset(t->dq, 0, sizeof(float) * t->nq);
    memset(t->dk, 0, sizeof(float) * t->nk);
    memset(t->dv, 0, sizeof(float) * t->nv);
    if (g_dtype == ATTN_DTYPE_BF16) {
        t->qh = halloc(t->nq); t->kh = halloc(t->nk); t->vh = halloc(t->nv); t->outh = halloc(t->no);
        t->douth = halloc(t->no); t->dqh = halloc(t->nq); t->dkh = halloc(t->nk); t->dvh = halloc(t->nv);
        if (!t->qh || !t->kh || !t->vh || !t->outh || !t->douth || !t->dqh || !t->dkh || !t->dvh) return 0;
        to_bf16(t->qh, t->q, t->nq); to_bf16(t->kh, t->k, t->nk); to_bf16(t->vh, t->v, t->nv);
        to_bf16(t->douth, t->dout, t->no);
        memset(t->outh, 0, 2 * t->no); memset(t->dqh, 0, 2 * t->nq);
        memset(t->dkh, 0, 2 * t->nk); memset(t->dvh, 0, 2 * t->nv);
    }
    return 1;
}

/* After a run on bf16 tensors: the outputs read back into the fp32 arrays, for comparing. */
static void tensors_sync(tensors *t) {
    if (g_dtype != ATTN_DTYPE_BF16) return;
    from_bf16(t->out, t->outh, t->no);
    from_bf16(t->dq, t->dqh, t->nq); from_bf16(t->dk, t->dkh, t->nk); from_bf16(t->dv, t->dvh, t->nv);
}

static size_t tensors_bytes(const tensors *t, int backward) {
    const size_t es = g_dtype == ATTN_DTYPE_BF16 ? 2 : sizeof(float);
    size_t n = t->nq + t->nk + t->nv + t->no;
    if (backward) n += t->no + t->nq + t->nk + t->nv;
    return n * es + (t->nl + t->nw) * sizeof(float);
}

/* n - 1 more copies of K and V in the type of the case (the first copy is the tensors themselves). */
static int tensors_copies(tensors *t, int n) {
    const int bf = g_dtype == ATTN_DTYPE_BF16;
    const size_t es = bf ? 2 : sizeof(float);
    t->kc = calloc((size_t)n, sizeof(void *));
    t->vc = calloc((size_t)n, sizeof(void *));
    if (!t->kc || !t->vc) return 0;
    t->ncopies = n;
    t->kc[0] = bf ? (void *)t->kh : (void *)t->k;
    t->vc[0] = bf ? (void *)t->vh : (void *)t->v;
    for (int i = 1; i < n; i++) {
        if (!(t->kc[i] = malloc(es * (t->nk ? t->nk : 1))) || !(t->vc[i] = malloc(es * (t->nv ? t->nv : 1)))) return 0;
        memcpy(t->kc[i], t->kc[0], es * t->nk);
        memcpy(t->vc[i], t->vc[0], es * t->nv);
    }
    return 1;
}

/* The next runs read copy i of K and V. */
static void tensors_use_copy(tensors *t, int i) {
    if (t->ncopies < 2) return;
    if (g_dtype == ATTN_DTYPE_BF16) {
        t->kh = t->kc[i % t->ncopies];
        t->vh = t->vc[i % t->ncopies];
    } else {
        t->k = t->kc[i % t->ncopies];
        t->v = t->vc[i % t->ncopies];
    }
}

static void tensors_free(tensors *t) {
    if (t->ncopies > 1) {
        tensors_use_copy(t, 0);
        for (int i = 1; i < t->ncopies; i++) { free(t->kc[i]); free(t->vc[i]); }
    }
    free(t->kc); free(t->vc);
    free(t->q); free(t->k); free(t->v); free(t->out); free(t->stats); free(t->dout); free(t->w);
    free(t->dq); free(t->dk); free(t->dv);
    free(t->qh); free(t->kh); free(t->vh); free(t->outh); free(t->douth); free(t->dqh); free(t->dkh); free(t->dvh);
}

static void desc_for(attn_sdpa_desc *d, int B, int H, int Hkv, int T, int S, int D, int Dv, int causal) {
    attn_sdpa_desc_init(d, B, H, T, S, D, Dv);
    d->Hkv = Hkv;
    d->k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    d->v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    d->mask.causal = causal;
    d->mask.window = g_window;
    d->mask.window_left = g_wl;
    d->mask.window_right = g_wr;
    d->mask.sinks = g_sinks;
    if (g_alibi) d->mask.alibi_slopes = g_slopes;      /* filled once for the largest H */
    d->mask.softcap = g_softcap;
    d->dtype = g_dtype;
    d->compute = g_compute;
}

/* Runs shorter than this give no cores_busy figure (see case_report). */
#define CPU_CLOCK_MIN_SECS 0.02

static double g_last_cpu;      /* CPU seconds of the last run_pass */

/* Runs the pass with context ctx; returns the status; *secs the wall time (g_last_cpu its CPU time). */
static attn_status run_pass(const attn_ctx *ctx, const attn_sdpa_desc *d, tensors *t, int backward, void *work,
                            size_t wbytes, double *secs) {
    attn_status st;
    double c0 = cli_cpu_now();
    double t0 = cli_now();
    if (d->dtype == ATTN_DTYPE_BF16) {
        if (!backward) st = attn_sdpa_forward(ctx, d, t->outh, t->stats, t->w, t->qh, t->kh, t->vh, work, wbytes);
        else st = attn_sdpa_backward(ctx, d, t->dqh, t->dkh, t->dvh, t->douth, t->qh, t->kh, t->vh, t->outh,
                                     t->stats, work, wbytes);
    } else if (!backward) {
        st = attn_sdpa_forward(ctx, d, t->out, t->stats, t->w, t->q, t->k, t->v, work, wbytes);
    } else {
        st = attn_sdpa_backward(ctx, d, t->dq, t->dk, t->dv, t->dout, t->q, t->k, t->v, t->out, t->stats, work,
                                wbytes);
    }
    *secs = cli_now() - t0;
    g_last_cpu = cli_cpu_now() - c0;
    return st;
}

static size_t work_size(const attn_ctx *ctx, const attn_sdpa_desc *d, int backward) {
    size_t n = 0;
    if (attn_sdpa_workspace_size(ctx, d, backward ? ATTN_PASS_BACKWARD : ATTN_PASS_FORWARD, &n) != ATTN_OK) return 0;
    return n;
}

/* Forward (and backward) of the sub-problem d on both paths; the largest error, scaled by max(1,|want|). */
static int validate(const attn_sdpa_desc *d, const bopts *o, int backward, double *err_out, double *ref_secs) {
    tensors f, r;
    if (!tensors_alloc(&f, d, o->weights) || !tensors_alloc(&r, d, o->weights)) { tensors_free(&f); tensors_free(&r); return -1; }
    size_t wf = work_size(&o->ctx, d, 1), wf2 = work_size(&o->ctx, d, 0), wr = work_size(&o->ref, d, 1),
           wr2 = work_size(&o->ref, d, 0);
    size_t wmax = wf > wf2 ? wf : wf2;
    if (wr > wmax) wmax = wr;
    if (wr2 > wmax) wmax = wr2;
    void *work = malloc(wmax ? wmax : 1);
    double s = 0, rs = 0;
    int ok = work != NULL;
    ok = ok && run_pass(&o->ctx, d, &f, 0, work, wmax, &s) == ATTN_OK;
    ok = ok && run_pass(&o->ref, d, &r, 0, work, wmax, &s) == ATTN_OK;
    rs += s;
    double err = 0, mag = 0, e2 = 0, m2 = 0;
    if (ok && !backward) {
        tensors_sync(&f);
        tensors_sync(&r);
        max_err(f.out, r.out, f.no, &err, &mag);
        /* the row statistics compared as natural log-sum-exp (the paths' maxima may differ by a rounding) */
        attn_sdpa_logsumexp(f.stats, (int64_t)(f.nl / ATTN_SDPA_STATS), f.stats);
        attn_sdpa_logsumexp(r.stats, (int64_t)(r.nl / ATTN_SDPA_STATS), r.stats);
        max_err(f.stats, r.stats, f.nl / ATTN_SDPA_STATS, &e2, &m2);
        err = fmax(err / fmax(1, mag), e2 / fmax(1, m2));
        if (f.w) {
            double e3 = 0, m3 = 0;
            max_err(f.w, r.w, f.nw, &e3, &m3);
            err = fmax(err, e3);
        }
    }
    if (ok && backward) {
        /* the reference's backward reads the path's out (an input of the backward: rounded when bf16) */
        if (d->dtype == ATTN_DTYPE_BF16) memcpy(r.outh, f.outh, 2 * f.no);
        else memcpy(r.out, f.out, sizeof(float) * f.no);
        rs = 0;
        ok = ok && run_pass(&o->ctx, d, &f, 1, work, wmax, &s) == ATTN_OK;
        ok = ok && run_pass(&o->ref, d, &r, 1, work, wmax, &s) == ATTN_OK;
        rs += s;
        tensors_sync(&f);
        tensors_sync(&r);
        double e, m;
        e = 0; m = 0; max_err(f.dq, r.dq, f.nq, &e, &m); err = fmax(err, e / fmax(1, m));
        e = 0; m = 0; max_err(f.dk, r.dk, f.nk, &e, &m); err = fmax(err, e / fmax(1, m));
        e = 0; m = 0; max_err(f.dv, r.dv, f.nv, &e, &m); err = fmax(err, e / fmax(1, m));
    }
    free(work);
    tensors_free(&f);
    tensors_free(&r);
    *err_out = err;
    *ref_secs = rs;
    return ok ? 1 : -1;
}

/* (query, key) pairs of one head that causality and the window leave visible, t by t: keys [lo, lim) and
 * the sinks below lo (lim = the causal and right-window limit, lo = the window's left edge) */
static double visible_pairs(const bcase *c) {
    double n = 0;
    for (int64_t t = 0; t < c->T; t++) {
        const int64_t ta = t + (c->S - c->T);
        int64_t lim = c->S, lo = 0;
        if (c->causal && ta + 1 < lim) lim = ta + 1;
        if (g_window && ta + g_wr + 1 < lim) lim = ta + g_wr + 1;
        if (g_window && ta - g_wl > lo) lo = ta - g_wl;
        if (lim < 0) lim = 0;
        const int64_t sinks = g_window ? (g_sinks < lo ? g_sinks : lo) : 0;
        n += (double)(lim > lo ? lim - lo : 0) + (double)(sinks < lim ? sinks : lim);
    }
    return n;
}

static double case_flops(const bcase *c) {
    double f = 2.0 * c->B * c->H * visible_pairs(c) * (c->D + c->Dv);
    if (c->backward) f *= 2.5;
    return f;
}

#define REF_FULL_FLOPS 0.3e9      /* time the reference on the whole problem below this */
#define REF_GROUP_FLOPS 3.0e9     /* ... on one (batch, kv head) group below this, else crop */
#define TOL 1e-4                  /* agreement: max |fused - ref| / max(1, max|ref|) */
#define TOL_BF16 2e-2             /* ... with bf16 tensors or compute: P and the outputs rounded to bf16 */
static double tol(void) { return g_dtype == ATTN_DTYPE_BF16 || g_compute == ATTN_DTYPE_BF16 ? TOL_BF16 : TOL; }

/* What validating a case found: the largest scaled error, and the reference's time on the whole problem
 * (measured, extrapolated from one group, or not known: -1). */
typedef struct case_check {
    double err, ref_total;
    const char *ref_how;         /* how ref_total was had */
    char what[160];              /* the problem the two paths were compared on */
} case_check;

/* 1. Validates fused against reference on the whole problem when the reference can afford it, else on
 * one (batch, kv head) group, else on a cropped one; times the reference where it ran on a meaningful
 * part. Returns 0, or 1 after a message. */
static int case_validate(const bcase *c, const attn_sdpa_desc *d, const bopts *o, case_check *k) {
    const int G = c->H / c->Hkv;
    const double ref_flops_one = case_flops(&(bcase){1, G, 1, c->T, c->S, c->D, c->Dv, c->causal, c->backward});
    attn_sdpa_desc vd;
    double ref_secs = 0;
    int vr;
    k->err = 0;
    k->ref_total = -1;
    if (case_flops(c) <= REF_FULL_FLOPS) {
        vd = *d;
        snprintf(k->what, sizeof k->what, "the whole problem");
        vr = validate(&vd, o, c->backward, &k->err, &ref_secs);
        k->ref_how = "measured on the whole problem";
        /* best of a few for the reference too, it is cheap here */
        for (int rep = 1; rep < o->repeat && vr > 0; rep++) {
            double e2, s2;
            if (validate(&vd, o, c->backward, &e2, &s2) > 0 && s2 < ref_secs) ref_secs = s2;
        }
        k->ref_total = ref_secs;
    } else if (ref_flops_one <= REF_GROUP_FLOPS) {
        desc_for(&vd, 1, G, 1, c->T, c->S, c->D, c->Dv, c->causal);
        snprintf(k->what, sizeof k->what, "one (batch, kv head) group: B=1 H=%d Hkv=1, same T, S, D", G);
        vr = validate(&vd, o, c->backward, &k->err, &ref_secs);
        k->ref_total = ref_secs * c->B * c->Hkv;
        k->ref_how = "extrapolated: one group timed once, x B·Hkv groups";
    } else {
        int Tc = c->T < 512 ? c->T : 512, Sc = c->S < 512 ? c->S : 512;
        desc_for(&vd, 1, G, 1, Tc, Sc, c->D, c->Dv, c->causal);
        snprintf(k->what, sizeof k->what, "a cropped problem B=1 H=%d Hkv=1 T=%d S=%d (the full one is too slow "
                 "for the reference)", G, Tc, Sc);
        vr = validate(&vd, o, c->backward, &k->err, &ref_secs);
        k->ref_how = "not measured (too slow on this shape)";
    }
    if (vr < 0) { fprintf(stderr, "attn: bench: validation run failed (out of memory?)\n"); return 1; }
    return 0;
}

/* What timing a case measured. */
typedef struct case_time {
    double best, best_cpu;       /* wall and CPU seconds of the best run */
    int timed, warm_counted;     /* runs timed; the warm-up counted as one */
    int finite;                  /* the output had no NaN or infinity */
    double peak;                 /* the FMA peak, the larger of before and after */
    const char *peak_kind;
    size_t mem, work;            /* tensors + workspace, workspace (bytes) */
    double best_plain;           /* with --weights: the best forward without them, in the same run */
    double scores;               /* scores the kernel formed per run of the pass (its own count) */
    attn_dtype compute;          /* what the path multiplies in for this case (attn_sdpa_compute_type) */
} case_time;

/* The warm-up and the timed runs of the pass on t (for a backward, a forward first for out and stats). */
static attn_status time_runs(const bcase *c, const attn_sdpa_desc *d, const bopts *o, tensors *t, void *work,
                             case_time *m) {
    double secs;
    m->best = INFINITY;
    attn_status st = ATTN_OK;
    if (c->backward) st = run_pass(&o->ctx, d, t, 0, work, m->work, &secs);
    /* rep -1 is the warm-up; a warm-up that takes over a second is warm enough and counts as a run; with
     * --copies every run reads the next copy of K and V */
    int run = 0;
    for (int rep = -1; rep < o->repeat && st == ATTN_OK; rep++) {
        tensors_use_copy(t, run++);
        st = run_pass(&o->ctx, d, t, c->backward, work, m->work, &secs);
        if (rep < 0 && secs > 1.0) { m->warm_counted = 1; rep++; }
        if ((rep >= 0 || m->warm_counted) && secs < m->best) { m->best = secs; m->best_cpu = g_last_cpu; }
        if (rep >= 0) m->timed++;
    }
    return st;
}

/* The roof of a case: when the path multiplies it in bf16, the AMX tile loop on the AMX path, the vdpbf16ps
 * loop on the AVX512-BF16 path; else the fp32 FMA loop. */
static double case_peak(const bopts *o, attn_dtype compute, const char **kind) {
    if (o->bf16_units && compute == ATTN_DTYPE_BF16 && o->ctx.isa == ATTN_ISA_AMX) {
        *kind = "amx bf16 tile";
        return measure_amx_peak(attn_get_num_threads());
    }
    if (o->bf16_units && compute == ATTN_DTYPE_BF16) {
        *kind = "avx512bf16 vdpbf16ps";
        return measure_dp_peak(attn_get_num_threads());
    }
    return measure_peak(attn_get_num_threads(), kind);
}

/* 2. Times the fused kernel on the full problem, right between two measures of the peak (the machine is
 * shared: both see the same load). Returns 0, or 1 after a message. */
static int case_measure(const bcase *c, const attn_sdpa_desc *d, const bopts *o, case_time *m) {
    memset(m, 0, sizeof *m);
    const attn_pass pass = c->backward ? ATTN_PASS_BACKWARD : ATTN_PASS_FORWARD;
    if (attn_sdpa_compute_type(&o->ctx, d, pass, &m->compute) != ATTN_OK) m->compute = ATTN_DTYPE_F32;
    m->peak = case_peak(o, m->compute, &m->peak_kind);
    tensors t;
    const int have = tensors_alloc(&t, d, o->weights) && (o->copies < 2 || tensors_copies(&t, o->copies));
    const size_t wbytes = work_size(&o->ctx, d, c->backward);
    const size_t wfwd = c->backward ? work_size(&o->ctx, d, 0) : wbytes;
    m->work = wbytes > wfwd ? wbytes : wfwd;
    void *work = have ? malloc(m->work ? m->work : 1) : NULL;
    attn_sdpa_scores_computed(pass, 1);
    attn_status st = work ? time_runs(c, d, o, &t, work, m) : ATTN_ERR_NOMEM;
    const int runs = m->timed + (m->warm_counted ? 0 : 1);
    m->scores = runs > 0 ? (double)attn_sdpa_scores_computed(pass, 1) / runs : 0;
    if (st == ATTN_OK && t.w && !c->backward) {
        /* the same forward without weights, right after: what writing them costs, in one run */
        case_time plain = *m;
        float *w = t.w;
        t.w = NULL;
        st = time_runs(c, d, o, &t, work, &plain);
        t.w = w;
        m->best_plain = plain.best;
    }
    if (st == ATTN_OK) {
        /* the peak again after timing; the larger of the two is kept (the conservative ratio) */
        const char *kind2;
        double p2 = case_peak(o, m->compute, &kind2);
        if (p2 > m->peak) m->peak = p2;
        m->finite = 1;
        const float *chk = c->backward ? t.dq : t.out;
        const size_t nchk = c->backward ? t.nq : t.no;
        for (size_t i = 0; i < nchk; i++) m->finite &= isfinite(chk[i]) != 0;
        m->mem = tensors_bytes(&t, c->backward) + m->work +
                 (size_t)(o->copies - 1) * (t.nk + t.nv) * (g_dtype == ATTN_DTYPE_BF16 ? 2 : sizeof(float));
    }
    free(work);
    tensors_free(&t);
    if (!work) {
        fprintf(stderr, "attn: bench: out of memory\n");
        return 1;
    }
    return cli_fail(st, "bench");
}

/* 3. Prints the case's results: one JSON object, or the lines for a reader. */
static void case_report(const bcase *c, const bopts *o, const case_check *k, const case_time *m) {
    const char *pass = c->backward ? "backward" : "forward";
    const int agree = k->err <= tol(), nth = attn_get_num_threads();
    const double flops = case_flops(c);
    const double gflops = flops / m->best * 1e-9;
    /* cores the best run actually had, from the process CPU clock; Linux adds another thread's time to it only
     * at a tick or a switch, so a run shorter than a few ticks reads as one core whatever ran: no figure then */
    const int cpu_known = m->best >= CPU_CLOCK_MIN_SECS;
    const double cores = m->best_cpu / m->best;
    const double core_gflops = m->best_cpu > 0 ? flops / m->best_cpu * 1e-9 : 0;
    const double frac = m->peak > 0 ? gflops / m->peak : 0;
    const double speedup = k->ref_total > 0 ? k->ref_total / m->best : 0;
    /* the least memory traffic of a forward: q, k, v read once and out written once; with one query row
     * (decoding) this, not the FLOPs, is what bounds the time */
    const double es = g_dtype == ATTN_DTYPE_BF16 ? 2.0 : 4.0;
    const double traffic =
        es * ((double)c->B * c->H * c->T * (c->D + c->Dv) + (double)c->B * c->Hkv * c->S * (c->D + c->Dv));
    const double gbs = traffic / m->best * 1e-9;
    const double rss = peak_rss_bytes();
    if (o->json) {
        printf("{\"B\":%d,\"H\":%d,\"Hkv\":%d,\"T\":%d,\"S\":%d,\"D\":%d,\"Dv\":%d,\"causal\":%d,\"pass\":\"%s\","
               "\"dtype\":\"%s\",\"compute\":\"%s\",\"peak_kind\":\"%s\","
               "\"isa\":\"%s\",\"threads\":%d,\"agree\":%s,\"max_err\":%.3e,\"ms\":%.4f,\"gflops\":%.2f,"
               "\"peak_gflops\":%.2f,\"peak_fraction\":%.4f,",
               c->B, c->H, c->Hkv, c->T, c->S, c->D, c->Dv, c->causal, pass,
               g_dtype == ATTN_DTYPE_BF16 ? "bf16" : "f32",
               m->compute == ATTN_DTYPE_BF16 ? "bf16" : "f32",
               m->peak_kind, attn_isa_name(o->ctx.isa), nth,
               agree && m->finite ? "true" : "false", k->err, m->best * 1e3, gflops, m->peak, frac);
        if (cpu_known) printf("\"cores_busy\":%.2f,\"gflops_per_busy_core\":%.2f,", cores, core_gflops);
        else printf("\"cores_busy\":null,\"gflops_per_busy_core\":null,");
        printf("\"ref_ms\":");
        if (k->ref_total > 0) printf("%.4f,\"speedup_vs_ref\":%.2f", k->ref_total * 1e3, speedup);
        else printf("null,\"speedup_vs_ref\":null");
        printf(",\"ref_extrapolated\":%s,\"peak_mem_bytes\":%zu,\"rss_peak_bytes\":%.0f",
               k->ref_total > 0 && flops > REF_FULL_FLOPS ? "true" : "false", m->mem, rss);
        if (!c->backward) printf(",\"min_traffic_bytes\":%.0f,\"min_traffic_gbs\":%.2f", traffic, gbs);
        printf(",\"kv_copies\":%d", o->copies);
        if (o->weights && !c->backward)
            printf(",\"weights\":true,\"ms_without_weights\":%.4f,\"weights_cost\":%.3f", m->best_plain * 1e3,
                   m->best_plain > 0 ? m->best / m->best_plain : 0);
        if (g_window) printf(",\"window\":[%d,%d],\"sinks\":%d", g_wl, g_wr, g_sinks);
        printf(",\"alibi\":%s,\"softcap\":%g,\"visible_pairs\":%.0f,\"scores_computed\":%.0f}\n",
               g_alibi ? "true" : "false", g_softcap, (double)c->B * c->H * visible_pairs(c), m->scores);
    } else {
        if (g_dtype == ATTN_DTYPE_BF16 || g_compute == ATTN_DTYPE_BF16)
            printf("  compute: %s on this path for this case%s\n", m->compute == ATTN_DTYPE_BF16 ? "bf16" : "fp32",
                   m->compute == ATTN_DTYPE_BF16 ? "" : " (the path runs it as fp32: too few rows for its bf16 "
                   "units, a sparse mask part, or no bf16 units)");
        printf("  time: best of %d %s: %.3f ms%s\n", m->timed,
               m->warm_counted ? "(the warm-up took over 1 s and counts as the first)" : "after 1 warm-up",
               m->best * 1e3, m->finite ? "" : "  (NON-FINITE VALUES IN THE OUTPUT)");
        printf("  speed: %.1f GFLOP/s  (FLOPs = 2·(D+Dv) = 4·D when Dv = D per visible (query, key) pair%s%s = "
               "%.4g)\n", gflops, c->causal || g_window ? " (causal, window: hidden pairs not counted)" : "",
               c->backward ? ", x 2.5 backward" : "", flops);
        const double vis = (double)c->B * c->H * visible_pairs(c);
        if (m->scores > 0 || vis == 0)
            printf("  scores: %.4g visible (query, key) pairs; the kernel formed %.4g per run (%.3fx)\n", vis,
                   m->scores, vis > 0 ? m->scores / vis : 0);
        else   /* the reference kernels and the AMX path's own bf16 kernels keep no count */
            printf("  scores: %.4g visible (query, key) pairs; the kernel formed: not counted on this path\n", vis);
        if (o->weights && !c->backward)
            printf("  weights (B,H,T,S) written too: %.3f ms without them in the same run, %.2fx with\n",
                   m->best_plain * 1e3, m->best_plain > 0 ? m->best / m->best_plain : 0);
        if (!c->backward && c->T <= 16)     /* decoding-like: memory-bound */
            printf("  traffic: q, k, v read and out written once = %.2f MiB: %.1f GB/s%s\n", traffic / 1048576.0, gbs,
                   o->copies > 1 ? " (K and V out of cache: a new copy every run)" : "");
        printf("  peak: %.1f GFLOP/s measured just before and after (%s loop, %d threads, larger kept): "
               "%.1f%% of peak\n", m->peak, m->peak_kind, nth, 100 * frac);
        if (o->bf16_units && m->compute == ATTN_DTYPE_BF16)
            printf("  (fp32 FMA peak of this run for comparison: %.1f GFLOP/s)\n", o->peak);
        if (cpu_known)
            printf("  CPU time of that run: %.1f cores busy on average%s: %.1f GFLOP/s per busy core\n", cores,
                   cores < nth - 0.2 ? " (fewer than the threads: the machine is shared)" : "", core_gflops);
        else
            printf("  CPU time of that run: not measured (under %.0f ms, the process CPU clock counts the other "
                   "threads only at scheduler ticks)\n", CPU_CLOCK_MIN_SECS * 1e3);
        if (k->ref_total > 0)
            printf("  reference: %.3f ms (%s): speed-up %.1fx\n", k->ref_total * 1e3, k->ref_how, speedup);
        else
            printf("  reference: %s: no speed-up given\n", k->ref_how);
        printf("  memory: tensors + workspace %.2f MiB (workspace %.3f MiB); process peak RSS so far %.1f MiB\n",
               m->mem / 1048576.0, m->work / 1048576.0, rss / 1048576.0);
    }
    fflush(stdout);
}

/* Bytes of the tensors tensors_alloc makes for d (every one, forward or not), in double: no overflow. */
static double tensors_need(const attn_sdpa_desc *d, int weights) {
    const double nw = weights ? (double)d->B * d->H * d->T * d->S : 0;
    const double nq = (double)d->B * d->H * d->T * d->D, nk = (double)d->B * d->Hkv * d->S * d->D,
                 nv = (double)d->B * d->Hkv * d->S * d->Dv, no = (double)d->B * d->H * d->T * d->Dv,
                 nl = (double)d->B * d->H * d->T * ATTN_SDPA_STATS;
    return 4.0 * (2 * nq + 2 * nk + 2 * nv + 2 * no + nl + nw);
}

/* The largest workspace ctx asks for d, forward or backward; -1 when it cannot be sized (too large). */
static double work_need(const attn_ctx *ctx, const attn_sdpa_desc *d) {
    size_t f = 0, b = 0;
    if (attn_sdpa_workspace_size(ctx, d, ATTN_PASS_FORWARD, &f) != ATTN_OK ||
        attn_sdpa_workspace_size(ctx, d, ATTN_PASS_BACKWARD, &b) != ATTN_OK)
        return -1;
    return (double)(f > b ? f : b);
}

/* The memory a case needs at its peak — validation (two sets of tensors and the larger of both paths'
 * workspaces, on the part case_validate compares) or timing (one set and the fused workspace) — against
 * the physical memory (and RLIMIT_AS when lower). Returns 0, or 1 after a message: a case that does not
 * fit is refused before anything is allocated, not left to the kernel's out-of-memory killer. */
static int case_memory_ok(const bcase *c, const attn_sdpa_desc *d, const bopts *o) {
    attn_sdpa_desc vd = *d;
    if (case_flops(c) > REF_FULL_FLOPS) {
        const int G = c->H / c->Hkv;
        desc_for(&vd, 1, G, 1, c->T, c->S, c->D, c->Dv, c->causal);   /* one group: the crop is smaller */
    }
    const double wf = work_need(&o->ctx, d), wvf = work_need(&o->ctx, &vd), wvr = work_need(&o->ref, &vd);
    const double tens = tensors_need(d, o->weights);
    const double copies = (o->copies - 1) * ((double)d->B * d->Hkv * d->S * (d->D + d->Dv)) *
                          (g_dtype == ATTN_DTYPE_BF16 ? 2 : 4);
    const double time_need = tens + copies + (wf > 0 ? wf : 0);
    const double val_need = 2 * tensors_need(&vd, o->weights) + fmax(wvf, wvr);
    const double need = fmax(time_need, val_need);
    const double pages = (double)sysconf(_SC_PHYS_PAGES), page = (double)sysconf(_SC_PAGESIZE);
    double have = pages > 0 && page > 0 ? pages * page : 0;
    const char *what = "physical memory";
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (have == 0 || (double)rl.rlim_cur < have)) {
        have = (double)rl.rlim_cur;
        what = "address-space limit (ulimit -v)";
    }
    if (wf < 0 || wvf < 0 || wvr < 0) {
        fprintf(stderr, "attn: bench: B=%d H=%d T=%d S=%d D=%d: the workspace is too large to size: refusing the "
                "case\n", c->B, c->H, c->T, c->S, c->D);
        return 1;
    }
    if (have > 0 && need > have) {
        const double gib = 1024.0 * 1024 * 1024;
        fprintf(stderr, "attn: bench: B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d needs %.2f GiB (tensors %.2f GiB, "
                "workspace %.2f GiB; validating against the reference %.2f GiB) but the %s is %.2f GiB: refusing "
                "the case; make --tq, --tk, --heads, --dim or --batch smaller\n", c->B, c->H, c->Hkv, c->T, c->S,
                c->D, c->Dv, need / gib, tens / gib, wf / gib, val_need / gib, what, have / gib);
        return 1;
    }
    return 0;
}

/* One case: validate, time, report. Returns 0 when the paths agree and the output is finite, else 1. */
static int run_case(const bcase *c, const bopts *o, int idx, int n) {
    attn_sdpa_desc d;
    desc_for(&d, c->B, c->H, c->Hkv, c->T, c->S, c->D, c->Dv, c->causal);
    if (attn_sdpa_validate(&d) != ATTN_OK) {
        fprintf(stderr, "attn: bench: invalid shape (H must be a multiple of kv-heads, sizes >= 1)\n");
        return 1;
    }
    if (case_memory_ok(c, &d, o)) return 1;
    if (!o->json) {
        printf("case %d/%d: %s B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d causal=%d", idx, n,
               c->backward ? "backward" : "forward", c->B, c->H, c->Hkv, c->T, c->S, c->D, c->Dv, c->causal);
        if (g_window) printf(" window=%d,%d sinks=%d", g_wl, g_wr, g_sinks);
        if (g_alibi) printf(" alibi");
        if (g_softcap > 0.0f) printf(" softcap=%g", g_softcap);
        printf("  isa=%s threads=%d\n", attn_isa_name(o->ctx.isa), attn_get_num_threads());
    }
    fflush(stdout);
    case_check k;
    if (case_validate(c, &d, o, &k)) return 1;
    if (!o->json)
        printf("  validate: fused vs reference on %s: max error %.2e (scaled by max(1,|ref|)), tolerance %.0e: %s\n",
               k.what, k.err, tol(), k.err <= tol() ? "agree" : "DISAGREE");
    case_time m;
    if (case_measure(c, &d, o, &m)) return 1;
    case_report(c, o, &k, &m);
    return k.err <= tol() && m.finite ? 0 : 1;
}

int cmd_bench(int argc, char **argv) {
    for (int i = 1; i < argc; i++)          /* ring attention over MPI: bench_ring.c */
        if (strcmp(argv[i], "--ring") == 0) return cmd_bench_ring(argc, argv);
    int B = 0, H = 0, Hkv = 0, T = 0, S = 0, D = 0, Dv = 0, causal = 0, backward = 0, threads = 0, repeat = 5;
    int json = 0, long_case = 0, weights = 0, sinks = 0, alibi = 0, linear = 0, copies = 1;
    float softcap = 0.0f;
    const char *isa_name = "auto", *dtype_name = "f32", *compute_name = "f32", *window = NULL, *varlen = NULL;
    const cli_opt opts[] = {
        {"batch", CLI_INT, &B, "N", "batch size B; 0 means 1"},
        {"heads", CLI_INT, &H, "N", "query heads H; 0 means 8"},
        {"kv-heads", CLI_INT, &Hkv, "N", "key/value heads Hkv, a divisor of H; 0 means H"},
        {"tq", CLI_INT, &T, "N", "query length T; 0 means 2048"},
        {"tk", CLI_INT, &S, "N", "key/value length S; 0 means T"},
        {"dim", CLI_INT, &D, "N", "head dimension D; 0 means 64"},
        {"dim-v", CLI_INT, &Dv, "N", "value dimension Dv; 0 means D"},
        {"causal", CLI_BOOL, &causal, NULL, "causal mask"},
        {"backward", CLI_BOOL, &backward, NULL, "time the backward pass too"},
        {"threads", CLI_INT, &threads, "N", "threads; 0 means all cores"},
        {"isa", CLI_STR, &isa_name, "PATH", "fused path: auto, scalar, avx2, avx512, amx, avx512bf16"},
        {"dtype", CLI_STR, &dtype_name, "TYPE", "tensors: f32 or bf16"},
        {"compute", CLI_STR, &compute_name, "TYPE", "f32, or bf16: fp32 tensors computed in bf16 (amx)"},
        {"repeat", CLI_INT, &repeat, "N", "timed runs (best is kept), after one warm-up"},
        {"copies", CLI_INT, &copies, "N",
         "K and V in N copies, each run reading the next (N copies larger than the caches: K/V out of cache)"},
        {"json", CLI_BOOL, &json, NULL, "one JSON object per line per case"},
        {"weights", CLI_BOOL, &weights, NULL,
         "forwards also write the weights (B,H,T,S); the same forward without them is timed too"},
        {"long", CLI_BOOL, &long_case, NULL, "suite only: add T=S=65536 H=1 D=64 causal, forward and backward"},
        {"varlen", CLI_STR, &varlen, "L1,L2,...",
         "time a packed batch of these lengths against each alone and padded (valid lengths; boolean mask)"},
        {"linear", CLI_BOOL, &linear, NULL,
         "time causal linear attention, T = 4096 .. --tq (65536), and dense causal"},
        {"ring", CLI_BOOL, &(int){0}, NULL, "ring attention over MPI, under mpirun: `attn bench --ring --help`"},
        {"window", CLI_STR, &window, "L[,R]",
         "sliding window: query t (at key t + S - T) sees keys t-L .. t+R (R = 0 when omitted; with --causal "
         "the right edge is causal's); key blocks outside are skipped and not counted in gflops"},
        {"sinks", CLI_INT, &sinks, "N", "with --window: the first N keys stay visible (attention sinks)"},
        {"alibi", CLI_BOOL, &alibi, NULL, "ALiBi position biases (the paper's slopes for H heads)"},
        {"softcap", CLI_FLOAT, &softcap, "C", "soft-capping: scores become C·tanh(score / C); 0 means none"},
    };
    const cli_cmd cmd = {
        "attn bench [options]",
        "Times the fused scaled dot-product attention (fp32, or bf16 with --dtype/--compute) against the\n"
        "reference kernels. Without shape\n"
        "flags it runs a default suite; any of --batch --heads --kv-heads --tq --tk --dim --dim-v --causal\n"
        "--backward gives one case (forward, and backward with --backward). --window, --sinks, --alibi and\n"
        "--softcap apply to every case run; gflops counts 4·D FLOPs per visible (query, key) pair (2.5x that backward),\n"
        "so dense, causal and windowed figures compare directly. --varlen and --linear time packed batches and\n"
        "linear attention instead (fp32).",
        opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r >= 0) return r;

    attn_isa isa = ATTN_ISA_COUNT;
    for (int i = 0; i < ATTN_ISA_COUNT; i++)
        if (strcmp(isa_name, attn_isa_name((attn_isa)i)) == 0) isa = (attn_isa)i;
    if (isa == ATTN_ISA_COUNT || isa == ATTN_ISA_REF) {
        fprintf(stderr, "attn: bench: --isa %s: must be auto, scalar, avx2, avx512, amx or avx512bf16\n\n", isa_name);
        cli_usage(&cmd, stderr);
        return 2;
    }
    const char *const tnames[2] = {"f32", "bf16"};
    const char *const tflags[2] = {"--dtype", "--compute"};
    const char *const tvals[2] = {dtype_name, compute_name};
    attn_dtype *const tdst[2] = {&g_dtype, &g_compute};
    for (int i = 0; i < 2; i++) {
        if (strcmp(tvals[i], tnames[0]) == 0) *tdst[i] = ATTN_DTYPE_F32;
        else if (strcmp(tvals[i], tnames[1]) == 0) *tdst[i] = ATTN_DTYPE_BF16;
        else {
            fprintf(stderr, "attn: bench: %s %s: must be f32 or bf16\n\n", tflags[i], tvals[i]);
            cli_usage(&cmd, stderr);
            return 2;
        }
    }
    const struct { const char *flag; int v, lo; } sizes[] = {
        {"--repeat", repeat, 1}, {"--copies", copies, 1}, {"--batch", B, 0}, {"--heads", H, 0}, {"--kv-heads", Hkv, 0}, {"--tq", T, 0},
        {"--tk", S, 0}, {"--dim", D, 0}, {"--dim-v", Dv, 0},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (cli_check_int("bench", sizes[i].flag, sizes[i].v, sizes[i].lo, sizes[i].lo - 1)) {
            fputc('\n', stderr);
            cli_usage(&cmd, stderr);
            return 2;
        }
    if (cli_check_threads("bench", "--threads", threads)) return 2;
    if ((varlen || linear) && (g_dtype != ATTN_DTYPE_F32 || g_compute != ATTN_DTYPE_F32 || (varlen && linear) ||
                               window || sinks || alibi || softcap != 0.0f)) {
        fprintf(stderr, "attn: bench: --varlen and --linear are fp32 only, one at a time, without --window, --sinks,\n"
                        "--alibi or --softcap\n\n");
        cli_usage(&cmd, stderr);
        return 2;
    }
    if (varlen && !bench_varlen_lens_ok(varlen)) {
        fputc('\n', stderr);
        cli_usage(&cmd, stderr);
        return 2;
    }
    if (window) {
        if (cli_parse_window(window, 0, &g_wl, &g_wr)) {
            fprintf(stderr, "attn: bench: --window %s: want LEFT or LEFT,RIGHT (integers >= 0)\n\n", window);
            cli_usage(&cmd, stderr);
            return 2;
        }
        g_window = 1;
    }
    if (sinks < 0 || (sinks > 0 && !window)) {
        fprintf(stderr, "attn: bench: --sinks %d: want N >= 0, with --window\n\n", sinks);
        cli_usage(&cmd, stderr);
        return 2;
    }
    g_sinks = sinks;
    g_alibi = alibi;
    if (!(softcap >= 0.0f) || isinf(softcap)) {
        fprintf(stderr, "attn: bench: --softcap %g: want C >= 0 (finite)\n\n", softcap);
        cli_usage(&cmd, stderr);
        return 2;
    }
    g_softcap = softcap;
    if (alibi && H > BENCH_ALIBI_HMAX) {
        fprintf(stderr, "attn: bench: --alibi: at most %d heads\n\n", BENCH_ALIBI_HMAX);
        cli_usage(&cmd, stderr);
        return 2;
    }
    if (alibi) attn_alibi_slopes(H ? H : 32, g_slopes);    /* the suite has at most 32 heads */
    bopts o = {repeat, threads, json, copies, weights, {0}, {0}, 0, NULL, 0};
    if (isa == ATTN_ISA_AUTO) isa = attn_get_isa();     /* ATTN_ISA, when set, is the default's path */
    if (cli_fail(attn_ctx_init(&o.ctx, isa, 0), "bench: --isa")) return 1;
    cli_set_threads(threads, 0);
    /* both paths on the threads in force (attn_ctx_init resolved auto to the best path) */
    o.ctx.threads = attn_get_num_threads();
    if (cli_fail(attn_ctx_init(&o.ref, ATTN_ISA_REF, o.ctx.threads), "bench")) return 1;
    o.peak = measure_peak(attn_get_num_threads(), &o.peak_kind);
    o.bf16_units = (o.ctx.isa == ATTN_ISA_AMX || o.ctx.isa == ATTN_ISA_AVX512BF16) &&
                   (g_dtype == ATTN_DTYPE_BF16 || g_compute == ATTN_DTYPE_BF16);
    if (!json)
        printf("attn bench: fp32 FMA peak measured now: %.1f GFLOP/s (%s loop, %d threads)\n", o.peak, o.peak_kind,
               attn_get_num_threads());
    if (!json && o.bf16_units)
        printf("attn bench: %s peak measured now: %.1f GFLOP/s (%d threads); tensors %s, compute asked %s\n",
               o.ctx.isa == ATTN_ISA_AMX ? "AMX bf16 tile-loop" : "AVX512-BF16 vdpbf16ps",
               o.ctx.isa == ATTN_ISA_AMX ? measure_amx_peak(attn_get_num_threads())
                                         : measure_dp_peak(attn_get_num_threads()),
               attn_get_num_threads(), dtype_name,
               g_dtype == ATTN_DTYPE_BF16 || g_compute == ATTN_DTYPE_BF16 ? "bf16" : "f32");

    if (varlen) return bench_varlen(varlen, H ? H : 8, D ? D : 64, causal, backward, repeat, &o.ctx);
    if (linear) return bench_linear(H ? H : 1, D ? D : 64, T ? T : 65536, backward, repeat, &o.ctx);
    const int given = B || H || Hkv || T || S || D || Dv || causal || backward;
    bcase cases[20];
    int n = 0;
    if (given) {
        bcase c = {B ? B : 1, H ? H : 8, 0, T ? T : 2048, 0, D ? D : 64, 0, causal, 0};
        c.Hkv = Hkv ? Hkv : c.H;
        c.S = S ? S : c.T;
        c.Dv = Dv ? Dv : c.D;
        cases[n++] = c;
        if (backward) { c.backward = 1; cases[n++] = c; }
    } else {
        /* the figures, then the other fast head dims, then grouped-query heads, then decoding (one
         * query row per head against a cache of 4,096 keys: bound by memory traffic, not FLOPs), then the
         * d2l translators' shapes (heads of 8 over 10 steps, and a decoding step against 10 keys: the
         * small-head path) */
        const bcase suite[] = {
            {1, 8, 8, 2048, 2048, 64, 64, 0, 0}, {1, 8, 8, 2048, 2048, 64, 64, 1, 0},
            {1, 8, 8, 2048, 2048, 64, 64, 0, 1}, {1, 8, 8, 2048, 2048, 64, 64, 1, 1},
            {32, 4, 4, 10, 10, 32, 32, 0, 0},    {32, 4, 4, 10, 10, 32, 32, 0, 1},
            {1, 8, 8, 1024, 1024, 32, 32, 0, 0}, {1, 8, 8, 1024, 1024, 80, 80, 0, 0},
            {1, 8, 8, 1024, 1024, 96, 96, 0, 0}, {1, 8, 8, 1024, 1024, 128, 128, 0, 0},
            {1, 8, 2, 1024, 1024, 64, 64, 1, 0}, {1, 8, 2, 1024, 1024, 64, 64, 1, 1},
            {1, 32, 32, 1, 4096, 128, 128, 0, 0}, {1, 32, 8, 1, 4096, 128, 128, 0, 0},
            {64, 4, 4, 10, 10, 8, 8, 0, 0},      {64, 4, 4, 10, 10, 8, 8, 0, 1},
            {1, 4, 4, 1, 10, 8, 8, 0, 0},
        };
        for (size_t i = 0; i < sizeof suite / sizeof suite[0]; i++) cases[n++] = suite[i];
        if (long_case) {
            cases[n++] = (bcase){1, 1, 1, 65536, 65536, 64, 64, 1, 0};
            cases[n++] = (bcase){1, 1, 1, 65536, 65536, 64, 64, 1, 1};
        }
    }
    int bad = 0;
    for (int i = 0; i < n; i++) bad += run_case(&cases[i], &o, i + 1, n) != 0;
    if (bad) fprintf(stderr, "attn: bench: %d case(s) failed validation or did not run\n", bad);
    return bad ? 1 : 0;
}
