/*
 * decode_ratio.c — the decoding figure of bf16 K/V against fp32 K/V as a ratio that means something on a
 * busy machine: one process calls the fp32 forward and the bf16 forward in turn, call by call, and keeps
 * the best of each (`attn bench` runs them in separate processes minutes apart, whose load differs).
 * Public API only. Shape T=1, H=G·Hkv (groups of G, 4 unless given), D=Dv=128, K/V (B=1, Hkv, S, D) dense.
 *
 *   build/decode_ratio   (built with the library; by hand: cc -O2 -fopenmp -Iinclude
 *                         tools/bench/decode_ratio.c build/libattn.a -lopenblas -lm -o decode_ratio)
 *   build/decode_ratio [runs=60] [copies=1] [threads=0: all] [isa=amx|avx512bf16|avx512] [S=4096] [Hkv=8] [group=4]
 *
 * copies > 1 keeps that many copies of K and V (each type) and gives every call the next: with 48, 0.8 GB
 * of bf16 and 1.6 GB of fp32, every call reads its K/V from memory. Prints the best times, their ratio
 * and the load average.
 */
#include "attn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint16_t to_bf16(float f) {       /* round to nearest even; the inputs are finite */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static float uniform(void) { return rand() / (float)RAND_MAX - 0.5f; }

int main(int argc, char **argv) {
    const int runs = argc > 1 ? atoi(argv[1]) : 60, copies = argc > 2 ? atoi(argv[2]) : 1;
    const int threads = argc > 3 ? atoi(argv[3]) : 0;
    const char *isa_name = argc > 4 ? argv[4] : "amx";
    const int S = argc > 5 ? atoi(argv[5]) : 4096, Hkv = argc > 6 ? atoi(argv[6]) : 8;
    const int G = argc > 7 ? atoi(argv[7]) : 4, D = 128;
    const int H = G >= 1 && Hkv >= 1 && G <= 1024 && Hkv <= 1024 ? G * Hkv : 0;   /* 0: refused below */
    const attn_isa isa = !strcmp(isa_name, "amx") ? ATTN_ISA_AMX
                         : !strcmp(isa_name, "avx512bf16") ? ATTN_ISA_AVX512BF16
                         : !strcmp(isa_name, "avx512") ? ATTN_ISA_AVX512 : ATTN_ISA_AUTO;
    if (runs < 1 || copies < 1 || threads < 0 || S < 1 || H < 1 || isa == ATTN_ISA_AUTO) {
        fprintf(stderr, "usage: decode_ratio [runs] [copies] [threads] [amx|avx512bf16|avx512] [S] [Hkv] [group]\n");
        return 2;
    }
    attn_ctx ctx;
    attn_status st = attn_ctx_init(&ctx, isa, threads);
    if (st != ATTN_OK) { fprintf(stderr, "decode_ratio: %s: %s\n", isa_name, attn_status_string(st)); return 1; }

    attn_sdpa_desc d[2];                 /* fp32, bf16 */
    for (int i = 0; i < 2; i++) {
        attn_sdpa_desc_init(&d[i], 1, H, 1, S, D, D);
        d[i].Hkv = Hkv;
        d[i].k = d[i].v = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    }
    d[1].dtype = ATTN_DTYPE_BF16;
    const size_t nkv = (size_t)Hkv * S * D, nq = (size_t)H * D;
    float *q = malloc(nq * 4), *out = malloc(nq * 4), *stats = malloc((size_t)H * 2 * 4);
    uint16_t *qh = malloc(nq * 2), *outh = malloc(nq * 2);
    float **k = calloc(copies, sizeof *k), **v = calloc(copies, sizeof *v);
    uint16_t **kh = calloc(copies, sizeof *kh), **vh = calloc(copies, sizeof *vh);
    if (!q || !out || !stats || !qh || !outh || !k || !v || !kh || !vh) { fprintf(stderr, "out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < nq; i++) qh[i] = to_bf16(q[i] = uniform());
    for (int c = 0; c < copies; c++) {
        k[c] = malloc(nkv * 4), v[c] = malloc(nkv * 4), kh[c] = malloc(nkv * 2), vh[c] = malloc(nkv * 2);
        if (!k[c] || !v[c] || !kh[c] || !vh[c]) { fprintf(stderr, "out of memory\n"); return 1; }
        for (size_t i = 0; i < nkv; i++) {
            kh[c][i] = to_bf16(k[c][i] = uniform());
            vh[c][i] = to_bf16(v[c][i] = uniform());
        }
    }
    size_t w0, w1;
    attn_sdpa_workspace_size(&ctx, &d[0], ATTN_PASS_FORWARD, &w0);
    attn_sdpa_workspace_size(&ctx, &d[1], ATTN_PASS_FORWARD, &w1);
    const size_t wb = (w0 > w1 ? w0 : w1) / 64 * 64 + 64;
    void *work = aligned_alloc(64, wb);
    if (!work) { fprintf(stderr, "out of memory\n"); return 1; }

    /* one warm-up round, then runs rounds of fp32, bf16; every call takes the next copy of its type */
    double best[2] = {1e30, 1e30};
    int next = 0;
    for (int r = -1; r < runs; r++)
        for (int p = 0; p < 2; p++) {
            const int c = next++ % copies;
            const double t0 = now();
            st = p == 0 ? attn_sdpa_forward(&ctx, &d[0], out, stats, NULL, q, k[c], v[c], work, wb)
                        : attn_sdpa_forward(&ctx, &d[1], (float *)outh, stats, NULL, (const float *)qh,
                                            (const float *)kh[c], (const float *)vh[c], work, wb);
            const double t = now() - t0;
            if (st != ATTN_OK) { fprintf(stderr, "decode_ratio: %s\n", attn_status_string(st)); return 1; }
            if (r >= 0 && t < best[p]) best[p] = t;
        }
    char load[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(load, sizeof load, f)) strcpy(load, "?\n");
        fclose(f);
    }
    printf("isa %s threads %d S %d Hkv %d group %d copies %d, best of %d alternating: fp32 %.3f ms, bf16 %.3f ms, "
           "bf16/fp32 %.3f; load %s", isa_name, ctx.threads, S, Hkv, G, copies, runs, best[0] * 1e3, best[1] * 1e3,
           best[1] / best[0], load);
    return 0;
}
