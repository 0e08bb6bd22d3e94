/*
 * kernel_hashes.c — a fingerprint of the fused kernels' results, to check that a change meant to keep every
 * bit does: FNV-1a hashes of out, the row statistics (and the weights, when asked for), dq, dk and dv over
 * a fixed list of shapes (grouped heads, causal, dropout, per-batch lengths, odd and unequal D and Dv,
 * D = 1, T = 1, S = 1, both layouts, a negative scale, the shapes of the repository's models), for the
 * fp32 paths and the bf16 ones (bf16 tensors, and fp32 tensors with bf16 compute). The gradients are added
 * to random values, as the backward adds them. Public API only; the inputs come from a fixed generator.
 *
 *   build/kernel_hashes [threads=2] > after.txt        (built with the library)
 *   diff before.txt after.txt                           (the same program built against the old library)
 *
 * Paths the CPU lacks print one "skipped" line. Lines differ between paths and thread counts only where a
 * kernel's bits depend on them, which they must not ("bitwise identical for any thread count"): running
 * with 1 and 2 threads and comparing is a check of its own.
 */
#include "attn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint32_t g_state = 1;
static float rnd(void) {
    g_state = g_state * 1664525u + 1013904223u;
    return ((g_state >> 8) / 16777216.0f) * 2 - 1;
}

/* B H Hkv T S D Dv causal dropout layout (0: (B,H,T,D), 1: (B,T,H,D)) per-batch lengths */
static const int g_shapes[][11] = {
    {4, 4, 4, 10, 10, 8, 8, 0, 0, 0, 0},     {2, 4, 2, 12, 33, 24, 24, 1, 0, 0, 0},
    {1, 2, 1, 70, 37, 64, 64, 1, 0, 0, 0},   {1, 2, 2, 65, 100, 40, 40, 0, 1, 0, 0},
    {2, 3, 3, 17, 130, 33, 33, 1, 0, 0, 0},  {1, 1, 1, 200, 200, 64, 64, 1, 0, 0, 0},
    {64, 4, 4, 17, 17, 32, 32, 0, 0, 1, 0},  {16, 4, 4, 17, 17, 32, 32, 0, 1, 1, 0},
    {3, 4, 2, 9, 9, 7, 5, 0, 0, 1, 1},       {2, 2, 1, 20, 31, 1, 3, 1, 1, 0, 1},
    {2, 3, 1, 33, 17, 65, 17, 0, 0, 1, 1},   {1, 2, 2, 5, 5, 2, 1, 0, 0, 0, 0},
    {2, 2, 2, 1, 9, 16, 16, 0, 0, 0, 0},     {2, 2, 2, 30, 1, 16, 16, 0, 0, 0, 0},
    {1, 2, 2, 64, 64, 128, 128, 1, 0, 1, 0}, {2, 4, 4, 100, 130, 96, 80, 0, 1, 0, 1},
    {8, 4, 4, 16, 16, 16, 16, 0, 0, 1, 0},   {4, 2, 2, 40, 40, 20, 12, 0, 0, 1, 1},
    {8, 4, 4, 64, 64, 24, 24, 0, 0, 1, 0},   {8, 4, 4, 8, 64, 24, 24, 0, 1, 1, 0},
    {2, 4, 2, 100, 50, 32, 32, 1, 1, 0, 1},  {4, 4, 2, 64, 48, 32, 32, 0, 0, 1, 0},
    {2, 2, 1, 70, 37, 32, 32, 1, 0, 0, 0},   {2, 2, 1, 70, 30, 32, 32, 1, 0, 0, 0},
};

/* The layout of a tensor of `heads` heads, `rows` rows of `inner` elements: (B,H,T,D), or with bthd
 * attn_mha's (B,T,H,D). */
static attn_layout layout(int bthd, int heads, int rows, int inner) {
    if (bthd) return (attn_layout){(int64_t)rows * heads * inner, inner, (int64_t)heads * inner};
    return (attn_layout){(int64_t)heads * rows * inner, (int64_t)rows * inner, inner};
}

static void run(const attn_ctx *c, int kind, int weights, size_t s) {
    const int *z = g_shapes[s];
    const int B = z[0], H = z[1], Hk = z[2], T = z[3], S = z[4], D = z[5], Dv = z[6];
    attn_sdpa_desc d;
    attn_sdpa_desc_init(&d, B, H, T, S, D, Dv);
    d.Hkv = Hk;
    d.q = layout(z[9], H, T, D);
    d.k = layout(z[9], Hk, S, D);
    d.v = layout(z[9], Hk, S, Dv);
    d.out = layout(z[9], H, T, Dv);
    d.mask.causal = z[7];
    if (s == 3) d.scale = -0.3f;
    int32_t lens[64];
    if (z[10]) {
        for (int b = 0; b < B; b++) lens[b] = 1 + (b * 7) % S;
        d.mask.valid_lens = lens;
        d.mask.valid_lens_kind = ATTN_VALID_LENS_PER_BATCH;
    }
    if (z[8]) {
        d.dropout = 0.25f;
        d.seed = 77;
    }
    if (kind == 1) d.dtype = ATTN_DTYPE_BF16;
    if (kind == 2) d.compute = ATTN_DTYPE_BF16;
    const size_t es = kind == 1 ? 2 : 4;
    const size_t nq = (size_t)B * H * T * D, nk = (size_t)B * Hk * S * D, nv = (size_t)B * Hk * S * Dv,
                 no = (size_t)B * H * T * Dv, nl = (size_t)B * H * T;
    void *buf[8];
    const size_t n[8] = {nq, nk, nv, no, no, nq, nk, nv};   /* q k v out dout dq dk dv */
    for (int i = 0; i < 8; i++) {
        buf[i] = calloc(n[i], es);
        if (i == 3) continue;                                /* out is written */
        for (size_t e = 0; e < n[i]; e++) {
            const float x = rnd() * 3;
            if (es == 4) ((float *)buf[i])[e] = x;
            else ((uint16_t *)buf[i])[e] = attn_bf16_from_f32(x);
        }
    }
    float *stats = malloc(sizeof(float) * 2 * nl), *wts = weights ? calloc(nl * (size_t)S, sizeof(float)) : NULL;
    size_t wf = 0, wb = 0;
    const int e1 = attn_sdpa_workspace_size(c, &d, ATTN_PASS_FORWARD, &wf);
    const int e2 = attn_sdpa_workspace_size(c, &d, ATTN_PASS_BACKWARD, &wb);
    const size_t ws = wf > wb ? wf : wb;
    void *work = malloc(ws ? ws : 1);
    const int r1 = attn_sdpa_forward(c, &d, buf[3], stats, wts, buf[0], buf[1], buf[2], work, ws);
    const int r2 = weights ? 0
                           : attn_sdpa_backward(c, &d, buf[5], buf[6], buf[7], buf[4], buf[0], buf[1], buf[2], buf[3],
                                                stats, work, ws);
    const uint64_t h0 = 1469598103934665603ull;
    uint64_t hf = fnv(stats, sizeof(float) * 2 * nl, fnv(buf[3], no * es, h0));
    if (wts) hf = fnv(wts, sizeof(float) * nl * (size_t)S, hf);
    static const char *const kinds[3] = {"f32", "bf16", "f32/bf16c"};
    printf("%-10s %-9s %s shape %2zu: status %d %d %d %d  fwd %016llx", attn_isa_name(c->isa), kinds[kind],
           weights ? "w" : "-", s, e1, e2, r1, r2, (unsigned long long)hf);
    if (!weights)
        printf("  dq %016llx  dk %016llx  dv %016llx", (unsigned long long)fnv(buf[5], nq * es, h0),
               (unsigned long long)fnv(buf[6], nk * es, h0), (unsigned long long)fnv(buf[7], nv * es, h0));
    printf("\n");
    for (int i = 0; i < 8; i++) free(buf[i]);
    free(stats);
    free(wts);
    free(work);
}

int main(int argc, char **argv) {
    const int nth = argc > 1 ? atoi(argv[1]) : 2;
    if (nth < 1 || nth > ATTN_MAX_THREADS) {
        fprintf(stderr, "usage: kernel_hashes [threads, 1 to %d]\n", ATTN_MAX_THREADS);
        return 2;
    }
    const attn_isa isas[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512, ATTN_ISA_AVX512BF16, ATTN_ISA_AMX};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        attn_ctx c;
        if (attn_ctx_init(&c, isas[i], nth) != ATTN_OK) {
            printf("%-10s skipped: not supported here\n", attn_isa_name(isas[i]));
            continue;
        }
        const int bf = isas[i] == ATTN_ISA_AVX512BF16 || isas[i] == ATTN_ISA_AMX;
        for (int kind = bf ? 1 : 0; kind < (bf ? 3 : 1); kind++)
            for (int weights = 0; weights < (kind == 0 ? 2 : 1); weights++)
                for (size_t s = 0; s < sizeof g_shapes / sizeof g_shapes[0]; s++) {
                    g_state = 1 + (uint32_t)s;   /* each shape's inputs independent of the others */
                    run(&c, kind, weights, s);
                }
    }
    return 0;
}
