/*
 * shape_time.c — the forward and the backward of one shape, each timed alone, as the models call them:
 * tensors in attn_mha's (B,T,H,D) layout (rows H·D apart), the same buffers call after call, the best of 7
 * rounds of N calls. For the small shapes the image models and the translators run (the ViT's B 64, H 4,
 * T = S = 17, D 32 by default), where `attn bench` (B,H,T,D tensors, the reference run beside) measures
 * something else. Public API only.
 *
 *   build/shape_time [kind=f32|bf16|f32/bf16c] [T=17] [D=32] [B=64] [H=4] [calls=400] [S=T] [isa=auto]
 *
 * kind: fp32 tensors, bf16 tensors, or fp32 tensors with bf16 compute. isa: a path name as ATTN_ISA takes
 * (auto, scalar, avx2, avx512, avx512bf16, amx). One thread. Prints microseconds per call.
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
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint32_t g_state = 1;
static float rnd(void) {
    g_state = g_state * 1664525u + 1013904223u;
    return ((g_state >> 8) / 16777216.0f) * 2 - 1;
}

static int arg(int argc, char **argv, int i, int dflt) { return argc > i ? atoi(argv[i]) : dflt; }

int main(int argc, char **argv) {
    const char *kind = argc > 1 ? argv[1] : "f32";
    const int T = arg(argc, argv, 2, 17), D = arg(argc, argv, 3, 32), B = arg(argc, argv, 4, 64);
    const int H = arg(argc, argv, 5, 4), calls = arg(argc, argv, 6, 400), S = arg(argc, argv, 7, T);
    attn_isa isa = ATTN_ISA_AUTO;
    const int bf = strcmp(kind, "bf16") == 0, bfc = strcmp(kind, "f32/bf16c") == 0;
    if ((!bf && !bfc && strcmp(kind, "f32") != 0) || T < 1 || D < 1 || B < 1 || H < 1 || calls < 1 || S < 1 ||
        T > 65536 || S > 65536 || D > 1024 || (int64_t)B * H * (T > S ? T : S) * D > ((int64_t)1 << 28) ||
        (argc > 8 && attn_isa_parse(argv[8], &isa) != ATTN_OK)) {
        fprintf(stderr, "usage: shape_time [f32|bf16|f32/bf16c] [T] [D] [B] [H] [calls] [S] [isa]\n");
        return 2;
    }
    attn_ctx c;
    if (attn_ctx_init(&c, isa, 1) != ATTN_OK) {
        fprintf(stderr, "shape_time: the path %s is not supported here\n", attn_isa_name(isa));
        return 1;
    }
    attn_sdpa_desc d;
    attn_sdpa_desc_init(&d, B, H, T, S, D, D);
    d.q = d.out = (attn_layout){(int64_t)T * H * D, D, (int64_t)H * D};
    d.k = d.v = (attn_layout){(int64_t)S * H * D, D, (int64_t)H * D};
    if (bf) d.dtype = ATTN_DTYPE_BF16;
    if (bfc) d.compute = ATTN_DTYPE_BF16;
    const size_t es = bf ? 2 : 4, nq = (size_t)B * T * H * D, nk = (size_t)B * S * H * D;
    const size_t n[8] = {nq, nk, nk, nq, nq, nq, nk, nk};   /* q k v out dout dq dk dv */
    void *buf[8];
    for (int i = 0; i < 8; i++) {
        buf[i] = calloc(n[i], es);
        if (!buf[i]) return 1;
        for (size_t e = 0; e < n[i] && i != 3; e++) {
            const float x = rnd();
            if (es == 4) ((float *)buf[i])[e] = x;
            else ((uint16_t *)buf[i])[e] = attn_bf16_from_f32(x);
        }
    }
    float *stats = malloc(sizeof(float) * 2 * (size_t)B * H * T);
    size_t wf, wb;
    if (attn_sdpa_workspace_size(&c, &d, ATTN_PASS_FORWARD, &wf) != ATTN_OK ||
        attn_sdpa_workspace_size(&c, &d, ATTN_PASS_BACKWARD, &wb) != ATTN_OK) {
        fprintf(stderr, "shape_time: the shape is refused\n");
        return 1;
    }
    const size_t ws = wf > wb ? wf : wb;
    void *work = malloc(ws ? ws : 1);
    double bfw = 1e30, bbw = 1e30;
    for (int r = 0; r < 7; r++) {
        const double t0 = now();
        for (int i = 0; i < calls; i++)
            if (attn_sdpa_forward(&c, &d, buf[3], stats, NULL, buf[0], buf[1], buf[2], work, ws) != ATTN_OK) return 1;
        const double t1 = now();
        for (int i = 0; i < calls; i++)
            if (attn_sdpa_backward(&c, &d, buf[5], buf[6], buf[7], buf[4], buf[0], buf[1], buf[2], buf[3], stats, work,
                                   ws) != ATTN_OK)
                return 1;
        const double t2 = now();
        if (t1 - t0 < bfw) bfw = t1 - t0;
        if (t2 - t1 < bbw) bbw = t2 - t1;
    }
    printf("%s %s B %d H %d T %d S %d D %d: forward %.1f us, backward %.1f us (best of 7 x %d calls, 1 thread)\n",
           attn_isa_name(c.isa), kind, B, H, T, S, D, bfw / calls * 1e6, bbw / calls * 1e6, calls);
    for (int i = 0; i < 8; i++) free(buf[i]);
    free(stats);
    free(work);
    return 0;
}
