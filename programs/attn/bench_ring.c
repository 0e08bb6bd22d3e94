/*
 * bench_ring.c — `attn bench --ring`: ring attention over MPI (attn/mpi.h), forward + backward, run under
 * mpirun (`mpirun -np 2 attn bench --ring --tq 65536 --causal --threads 1`). Without mpirun, Open MPI
 * starts the program as a singleton: one rank, and then the case runs as one process with the plain fused
 * kernel (attn_sdpa_forward/backward on the whole problem), the baseline the ring is compared with.
 *
 * Validates first: every rank builds the same problem (cropped to --check-tq rows when larger) from one
 * seed, runs the single-process fused kernel on all of it and the ring on its shard, and compares out, dq,
 * dk, dv (max |ring − single| / max(1, |single|), tolerance 1e-5). Then times forward + backward, best of
 * --repeat after --warmup untimed runs (1); a run's time is the slowest rank's; each rank's CPU time in that run is given
 * too (on a shared machine the wall time also counts waits for a core). Memory per rank is accounted
 * (tensors + workspace) and measured (peak RSS); bytes sent per rank are counted by the library during one
 * forward + backward, and the formula of attn/mpi.h is printed next to them.
 *
 * FLOPs: forward 2·B·H·T·S·(D + Dv), halved when causal; backward 2.5 × forward (as `attn bench`).
 */
#include "cli.h"

#ifdef ATTN_WITH_MPI
#include "attn/mpi.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define TOL 1e-5

static int g_rank, g_n;

static void fill(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
    }
}

static double peak_rss(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024.0 : 0;
}

/* The local tensors of one rank (or of the whole problem when N = 1). */
typedef struct ring_tensors {
    float *q, *k, *v, *out, *stats, *dout, *dq, *dk, *dv;
    void *work;
    size_t n_q, n_k, n_v, n_o, n_s, work_bytes;
} ring_tensors;

static size_t rt_bytes(const ring_tensors *t) {
    return sizeof(float) * (2 * t->n_q + 2 * t->n_k + 2 * t->n_v + 2 * t->n_o + t->n_s) + t->work_bytes;
}

static int rt_alloc(ring_tensors *t, int B, int H, int Hkv, int Tl, int Sl, int D, int Dv, size_t work) {
    *t = (ring_tensors){0};
    t->n_q = (size_t)B * H * Tl * D; t->n_k = (size_t)B * Hkv * Sl * D; t->n_v = (size_t)B * Hkv * Sl * Dv;
    t->n_o = (size_t)B * H * Tl * Dv; t->n_s = (size_t)B * H * Tl * ATTN_SDPA_STATS; t->work_bytes = work;
    t->q = malloc(sizeof(float) * t->n_q); t->k = malloc(sizeof(float) * t->n_k); t->v = malloc(sizeof(float) * t->n_v);
    t->out = malloc(sizeof(float) * t->n_o); t->stats = malloc(sizeof(float) * t->n_s);
    t->dout = malloc(sizeof(float) * t->n_o); t->dq = calloc(t->n_q, sizeof(float));
    t->dk = calloc(t->n_k, sizeof(float)); t->dv = calloc(t->n_v, sizeof(float));
    t->work = malloc(work ? work : 1);
    return t->q && t->k && t->v && t->out && t->stats && t->dout && t->dq && t->dk && t->dv && t->work;
}

static void rt_free(ring_tensors *t) {
    free(t->q); free(t->k); free(t->v); free(t->out); free(t->stats); free(t->dout);
    free(t->dq); free(t->dk); free(t->dv); free(t->work);
}

/* The ring descriptor with contiguous local shards and grouped-query heads. */
static attn_status ring_desc(attn_sdpa_desc *d, int B, int H, int Hkv, int T, int S, int D, int Dv, int causal) {
    attn_status st = attn_ring_desc_init(d, MPI_COMM_WORLD, B, H, T, S, D, Dv);
    d->Hkv = Hkv;
    int64_t Sl = S / g_n;
    d->k = (attn_layout){(int64_t)Hkv * Sl * D, Sl * D, D};
    d->v = (attn_layout){(int64_t)Hkv * Sl * Dv, Sl * Dv, Dv};
    d->mask.causal = causal;
    return st;
}

static attn_status single_desc(attn_sdpa_desc *d, int B, int H, int Hkv, int T, int S, int D, int Dv, int causal) {
    attn_status st = attn_sdpa_desc_init(d, B, H, T, S, D, Dv);
    d->Hkv = Hkv;
    d->k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    d->v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    d->mask.causal = causal;
    return st;
}

/* Copies the rank's rows (B,Hx,L/N,W) out of a whole tensor (B,Hx,L,W). */
static void shard(float *loc, const float *full, int B, int Hx, int L, int W, int causal) {
    int Ll = L / g_n;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hx; h++)
            for (int t = 0; t < Ll; t++)
                memcpy(loc + (((size_t)b * Hx + h) * Ll + t) * W,
                       full + (((size_t)b * Hx + h) * L + attn_ring_global_row(L, causal, g_n, g_rank, t)) * W,
                       sizeof(float) * W);
}

/* max |loc − rank's rows of full| / max(1, |full|) */
static double shard_err(const float *loc, const float *full, int B, int Hx, int L, int W, int causal) {
    int Ll = L / g_n;
    double e = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hx; h++)
            for (int t = 0; t < Ll; t++) {
                const float *a = loc + (((size_t)b * Hx + h) * Ll + t) * W;
                const float *f = full + (((size_t)b * Hx + h) * L + attn_ring_global_row(L, causal, g_n, g_rank, t)) * W;
                for (int i = 0; i < W; i++) {
                    double x = fabs((double)a[i] - f[i]) / fmax(1.0, fabs((double)f[i]));
                    if (!(x <= e)) e = x;
                }
            }
    return e;
}

/* Validation on T×S (already cropped): every rank the whole problem once and the ring on its shard.
 * Returns the worst error over the ranks, or -1 when a call failed. */
static double validate(const attn_ctx *ctx, int B, int H, int Hkv, int T, int S, int D, int Dv, int causal) {
    attn_sdpa_desc sd, rd;
    single_desc(&sd, B, H, Hkv, T, S, D, Dv, causal);
    ring_desc(&rd, B, H, Hkv, T, S, D, Dv, causal);
    size_t fw = 0, bw = 0, rf = 0, rb = 0;
    attn_status st = attn_sdpa_workspace_size(ctx, &sd, ATTN_PASS_FORWARD, &fw);
    if (st == ATTN_OK) st = attn_sdpa_workspace_size(ctx, &sd, ATTN_PASS_BACKWARD, &bw);
    attn_status rs = attn_ring_workspace_size(ctx, &rd, MPI_COMM_WORLD, ATTN_PASS_FORWARD, &rf);
    if (rs == ATTN_OK) rs = attn_ring_workspace_size(ctx, &rd, MPI_COMM_WORLD, ATTN_PASS_BACKWARD, &rb);
    ring_tensors a, r;
    int ok = st == ATTN_OK && rs == ATTN_OK && rt_alloc(&a, B, H, Hkv, T, S, D, Dv, fw > bw ? fw : bw) &&
             rt_alloc(&r, B, H, Hkv, T / g_n, S / g_n, D, Dv, rf > rb ? rf : rb);
    double err = -1;
    if (ok) {
        fill(a.q, a.n_q, 11); fill(a.k, a.n_k, 12); fill(a.v, a.n_v, 13); fill(a.dout, a.n_o, 14);
        st = attn_sdpa_forward(ctx, &sd, a.out, a.stats, NULL, a.q, a.k, a.v, a.work, fw);
        if (st == ATTN_OK) st = attn_sdpa_backward(ctx, &sd, a.dq, a.dk, a.dv, a.dout, a.q, a.k, a.v, a.out, a.stats, a.work, bw);
        shard(r.q, a.q, B, H, T, D, causal); shard(r.k, a.k, B, Hkv, S, D, causal);
        shard(r.v, a.v, B, Hkv, S, Dv, causal); shard(r.dout, a.dout, B, H, T, Dv, causal);
        rs = attn_ring_sdpa_forward(ctx, &rd, MPI_COMM_WORLD, r.out, r.stats, r.q, r.k, r.v, r.work, rf, NULL);
        if (rs == ATTN_OK)
            rs = attn_ring_sdpa_backward(ctx, &rd, MPI_COMM_WORLD, r.dq, r.dk, r.dv, r.dout, r.q, r.k, r.v, r.out,
                                         r.stats, r.work, rb, NULL);
        if (st == ATTN_OK && rs == ATTN_OK) {
            err = shard_err(r.out, a.out, B, H, T, Dv, causal);
            err = fmax(err, shard_err(r.dq, a.dq, B, H, T, D, causal));
            err = fmax(err, shard_err(r.dk, a.dk, B, Hkv, S, D, causal));
            err = fmax(err, shard_err(r.dv, a.dv, B, Hkv, S, Dv, causal));
        } else {
            fprintf(stderr, "attn: bench --ring: rank %d: validation: %s\n", g_rank,
                    attn_status_string(st != ATTN_OK ? st : rs));
        }
        rt_free(&a);
        rt_free(&r);
    }
    double worst;
    MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);   /* -1 anywhere wins */
    if (worst < 0) return -1;
    MPI_Allreduce(&err, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

static double slowest(double x) {
    double m;
    MPI_Allreduce(&x, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

int cmd_bench_ring(int argc, char **argv) {
    int B = 1, H = 1, Hkv = 0, T = 16384, S = 0, D = 64, Dv = 0, causal = 0, threads = 1, repeat = 3, warmup = 1, json = 0;
    int check = 2048;
    const char *isa_name = "auto";
    const cli_opt opts[] = {
        {"ring", CLI_BOOL, &(int){0}, NULL, "ring attention over MPI (this command)"},
        {"batch", CLI_INT, &B, "N", "batch size B"},
        {"heads", CLI_INT, &H, "N", "query heads H"},
        {"kv-heads", CLI_INT, &Hkv, "N", "key/value heads Hkv, a divisor of H; 0 means H"},
        {"tq", CLI_INT, &T, "N", "query length T (global): a multiple of the ranks (of 2x the ranks when causal)"},
        {"tk", CLI_INT, &S, "N", "key/value length S (global); 0 means T"},
        {"dim", CLI_INT, &D, "N", "head dimension D"},
        {"dim-v", CLI_INT, &Dv, "N", "value dimension Dv; 0 means D"},
        {"causal", CLI_BOOL, &causal, NULL, "causal mask (zig-zag shards; T == S)"},
        {"threads", CLI_INT, &threads, "N", "threads per rank (ranks x threads = cores)"},
        {"isa", CLI_STR, &isa_name, "PATH", "fused path: auto, scalar, avx2, avx512, amx, avx512bf16 (fp32 here: the last two run as avx512)"},
        {"repeat", CLI_INT, &repeat, "N", "timed forward + backward runs (best is kept), after the warm-ups"},
        {"warmup", CLI_INT, &warmup, "N", "untimed runs first (0 for long cases: the first timed run then "
                                          "also pays for touching the memory)"},
        {"check-tq", CLI_INT, &check, "N", "validate on at most this many query rows (and keys)"},
        {"json", CLI_BOOL, &json, NULL, "one JSON object (rank 0)"},
    };
    const cli_cmd cmd = {
        "mpirun -np N attn bench --ring [options]",
        "Ring attention over MPI: each rank holds T/N queries and S/N keys and values, blocks travel round\n"
        "the ring. Validates against the single-process fused kernel on the same data, then times forward +\n"
        "backward. Run without mpirun (one rank) it times the single-process fused kernel instead: the\n"
        "baseline. Prints per-rank accounted memory, peak RSS and bytes sent.",
        opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r >= 0) return r;
    const struct { const char *flag; int v, lo; } sizes[] = {
        {"--repeat", repeat, 1}, {"--warmup", warmup, 0}, {"--batch", B, 1}, {"--heads", H, 1}, {"--kv-heads", Hkv, 0}, {"--tq", T, 1},
        {"--tk", S, 0}, {"--dim", D, 1}, {"--dim-v", Dv, 0}, {"--check-tq", check, 1}, {"--threads", threads, 1},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (cli_check_int("bench --ring", sizes[i].flag, sizes[i].v, sizes[i].lo, sizes[i].lo - 1)) {
            fputc('\n', stderr);
            cli_usage(&cmd, stderr);
            return 2;
        }
    if (!Hkv) Hkv = H;
    if (!S) S = T;
    if (!Dv) Dv = D;
    attn_isa isa = ATTN_ISA_COUNT;
    for (int i = 0; i < ATTN_ISA_COUNT; i++)
        if (strcmp(isa_name, attn_isa_name((attn_isa)i)) == 0) isa = (attn_isa)i;
    if (isa == ATTN_ISA_COUNT || isa == ATTN_ISA_REF) {
        fprintf(stderr, "attn: bench --ring: --isa %s: must be auto, scalar, avx2, avx512, amx or avx512bf16\n\n", isa_name);
        cli_usage(&cmd, stderr);
        return 2;
    }

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_n);
    const int parts = causal ? 2 * g_n : g_n;
    if ((causal && T != S) || T % parts || S % parts || H % Hkv) {
        if (g_rank == 0)
            fprintf(stderr, "attn: bench --ring: T = %d and S = %d must be multiples of %d (%s)%s%s\n", T, S, parts,
                    causal ? "2 x the ranks, causal" : "the ranks", causal && T != S ? ", and equal when causal" : "",
                    H % Hkv ? "; --heads a multiple of --kv-heads" : "");
        MPI_Finalize();
        return 2;
    }
    cli_set_threads(threads, 1);
    attn_ctx ctx;
    if (isa == ATTN_ISA_AUTO) isa = attn_get_isa();     /* ATTN_ISA, when set, is the default's path */
    if (cli_fail(attn_ctx_init(&ctx, isa, threads), "bench --ring: --isa")) {
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    const char *mode = g_n > 1 ? "ring" : "single";

    /* 1. validate on the crop */
    int Tv = T < check ? T : check / parts * parts, Sv = causal ? Tv : (S < check ? S : check / parts * parts);
    if (Tv < parts) Tv = parts;
    if (Sv < parts) Sv = parts;
    double err = validate(&ctx, B, H, Hkv, Tv, Sv, D, Dv, causal);
    const int agree = err >= 0 && err <= TOL;
    if (g_rank == 0 && !json)
        printf("attn bench --ring: %d rank(s) x %d thread(s), isa %s; validate ring vs single-process fused on T=%d "
               "S=%d: max error %.2e (tolerance %.0e): %s\n", g_n, threads, attn_isa_name(ctx.isa), Tv, Sv, err, TOL,
               agree ? "agree" : "DISAGREE");

    /* 2. the case's tensors: the rank's shard (ring), or all of it (single) */
    attn_sdpa_desc d;
    size_t fw = 0, bw = 0;
    attn_status st;
    if (g_n > 1) {
        ring_desc(&d, B, H, Hkv, T, S, D, Dv, causal);
        st = attn_ring_workspace_size(&ctx, &d, MPI_COMM_WORLD, ATTN_PASS_FORWARD, &fw);
        if (st == ATTN_OK) st = attn_ring_workspace_size(&ctx, &d, MPI_COMM_WORLD, ATTN_PASS_BACKWARD, &bw);
    } else {
        single_desc(&d, B, H, Hkv, T, S, D, Dv, causal);
        st = attn_sdpa_workspace_size(&ctx, &d, ATTN_PASS_FORWARD, &fw);
        if (st == ATTN_OK) st = attn_sdpa_workspace_size(&ctx, &d, ATTN_PASS_BACKWARD, &bw);
    }
    ring_tensors t;
    if (st != ATTN_OK || !rt_alloc(&t, B, H, Hkv, T / g_n, S / g_n, D, Dv, fw > bw ? fw : bw)) {
        fprintf(stderr, "attn: bench --ring: rank %d: %s\n", g_rank,
                st != ATTN_OK ? attn_status_string(st) : "out of memory for the tensors");
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    fill(t.q, t.n_q, 100 + g_rank); fill(t.k, t.n_k, 200 + g_rank); fill(t.v, t.n_v, 300 + g_rank);
    fill(t.dout, t.n_o, 400 + g_rank);

    /* 3. time forward + backward: the warm-ups, then best of repeat; a run lasts as long as its slowest rank */
    double best = 1e300, best_f = 0, best_b = 0, best_cpu = 0;
    uint64_t sent = 0;
    int finite = 1;
    for (int i = 0; i < warmup + repeat && st == ATTN_OK; i++) {
        const int run = i - warmup + 1;                  /* 1..repeat when timed */
        uint64_t s = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = cli_now(), c0 = cli_cpu_now();
        if (g_n > 1) st = attn_ring_sdpa_forward(&ctx, &d, MPI_COMM_WORLD, t.out, t.stats, t.q, t.k, t.v, t.work, fw, &s);
        else st = attn_sdpa_forward(&ctx, &d, t.out, t.stats, NULL, t.q, t.k, t.v, t.work, fw);
        double t1 = cli_now();
        if (st == ATTN_OK) {
            if (g_n > 1)
                st = attn_ring_sdpa_backward(&ctx, &d, MPI_COMM_WORLD, t.dq, t.dk, t.dv, t.dout, t.q, t.k, t.v, t.out,
                                             t.stats, t.work, bw, &s);
            else
                st = attn_sdpa_backward(&ctx, &d, t.dq, t.dk, t.dv, t.dout, t.q, t.k, t.v, t.out, t.stats, t.work, bw);
        }
        double t2 = cli_now(), cpu = cli_cpu_now() - c0;
        double fwd = slowest(t1 - t0), bwd = slowest(t2 - t1), all = slowest(t2 - t0);
        if (i == 0) sent = s;
        if (g_rank == 0)                 /* progress on stderr (the JSON is on stdout) */
            fprintf(stderr, "  %s %d/%d: forward + backward %.3f s (forward %.3f s)\n", run > 0 ? "run" : "warm-up",
                    run > 0 ? run : i + 1, run > 0 ? repeat : warmup, all, fwd);
        if (run > 0 && all < best) { best = all; best_f = fwd; best_b = bwd; best_cpu = cpu; }
    }
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: bench --ring: rank %d: %s\n", g_rank, attn_status_string(st));
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    for (size_t i = 0; i < t.n_o && finite; i++) finite = isfinite(t.out[i]);

    /* 4. per-rank figures to rank 0 */
    double mine[4] = {(double)rt_bytes(&t), peak_rss(), (double)sent, best_cpu}, *all = malloc(sizeof(double) * 4 * g_n);
    MPI_Gather(mine, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    int all_finite;
    MPI_Allreduce(&finite, &all_finite, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    const double flops = 2.0 * B * H * (double)T * S * (D + Dv) * (causal ? 0.5 : 1.0) * 3.5;
    const double blk = (double)B * Hkv * (S / g_n) * (D + Dv) * sizeof(float);
    const double formula = g_n > 1 ? (3.0 * (g_n - 1) + 1.0) * blk : 0;   /* fwd (N−1)b, bwd (N−1)b + Nb */
    if (g_rank == 0) {
        if (json) {
            printf("{\"ring\":true,\"mode\":\"%s\",\"ranks\":%d,\"threads\":%d,\"isa\":\"%s\",\"B\":%d,\"H\":%d,"
                   "\"Hkv\":%d,\"T\":%d,\"S\":%d,\"D\":%d,\"Dv\":%d,\"causal\":%d,\"pass\":\"forward+backward\","
                   "\"agree\":%s,\"max_err\":%.3e,\"validated_T\":%d,\"validated_S\":%d,\"ms\":%.3f,"
                   "\"forward_ms\":%.3f,\"backward_ms\":%.3f,\"gflops\":%.2f,\"peak_mem_bytes\":[",
                   mode, g_n, threads, attn_isa_name(ctx.isa), B, H, Hkv, T, S, D, Dv, causal,
                   agree && all_finite ? "true" : "false", err, Tv, Sv, best * 1e3, best_f * 1e3, best_b * 1e3,
                   flops / best * 1e-9);
            for (int i = 0; i < g_n; i++) printf("%s%.0f", i ? "," : "", all[4 * i]);
            printf("],\"rss_peak_bytes\":[");
            for (int i = 0; i < g_n; i++) printf("%s%.0f", i ? "," : "", all[4 * i + 1]);
            printf("],\"cpu_ms\":[");
            for (int i = 0; i < g_n; i++) printf("%s%.3f", i ? "," : "", all[4 * i + 3] * 1e3);
            printf("],\"bytes_sent\":[");
            for (int i = 0; i < g_n; i++) printf("%s%.0f", i ? "," : "", all[4 * i + 2]);
            printf("],\"bytes_sent_formula\":%.0f}\n", formula);
        } else {
            printf("  %s: B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d causal=%d: forward + backward best of %d: %.3f s "
                   "(forward %.3f s, backward %.3f s): %.1f GFLOP/s (FLOPs 2·B·H·T·S·(D+Dv)%s x 3.5)\n",
                   mode, B, H, Hkv, T, S, D, Dv, causal, repeat, best, best_f, best_b, flops / best * 1e-9,
                   causal ? " x 1/2" : "");
            for (int i = 0; i < g_n; i++)
                printf("  rank %d: tensors + workspace %.1f MiB, peak RSS %.1f MiB, CPU %.3f s in the best run, sent %.1f "
                       "MiB per forward + backward (formula (3(N-1)+1)·B·Hkv·(S/N)·(D+Dv)·4 = %.1f MiB)\n", i,
                       all[4 * i] / 1048576.0, all[4 * i + 1] / 1048576.0, all[4 * i + 3], all[4 * i + 2] / 1048576.0,
                       formula / 1048576.0);
            if (!all_finite) printf("  (NON-FINITE VALUES IN THE OUTPUT)\n");
        }
        fflush(stdout);
    }
    free(all);
    rt_free(&t);
    MPI_Finalize();
    return agree && all_finite ? 0 : 1;
}

#else  /* built without MPI */

int cmd_bench_ring(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "attn: bench: --ring needs attn built with MPI (Debian: apt-get install libopenmpi-dev "
            "openmpi-bin, then configure again); this build has none\n");
    return 2;
}

#endif
