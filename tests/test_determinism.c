/*
 * test_determinism.c — the fused kernels give bitwise-identical results for any thread count: forward
 * (out, row statistics) and backward (dq, dk, dv, whose sums cross work items) with 1, 2 and 3 threads, on every
 * fused path this CPU runs, compared with memcmp. Shapes cover causal masks, grouped-query heads, odd
 * sizes, several key chunks per head (S spans many key blocks), a boolean mask and dropout.
 */
#include "attn.h"
#include "testutil.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dcase {
    int B, H, Hkv, T, S, D, Dv, causal, allow;
    float dropout;
} dcase;

typedef struct result {
    float *out, *lse, *dq, *dk, *dv;
} result;

static int run(const dcase *c, int nth, result *r, const uint8_t *allow) {
    attn_sdpa_desc d;
    if (attn_sdpa_desc_init(&d, c->B, c->H, c->T, c->S, c->D, c->Dv) != ATTN_OK) return 0;
    d.Hkv = c->Hkv;
    d.k = (attn_layout){(int64_t)c->Hkv * c->S * c->D, (int64_t)c->S * c->D, c->D};
    d.v = (attn_layout){(int64_t)c->Hkv * c->S * c->Dv, (int64_t)c->S * c->Dv, c->Dv};
    d.mask.causal = c->causal;
    if (allow) {
        d.mask.allow = allow;
        d.mask.allow_stride[2] = c->S;      /* one (T,S) mask for every batch and head */
    }
    d.dropout = c->dropout;
    d.seed = 42;
    const size_t nq = (size_t)c->B * c->H * c->T * c->D, nk = (size_t)c->B * c->Hkv * c->S * c->D;
    const size_t nv = (size_t)c->B * c->Hkv * c->S * c->Dv, no = (size_t)c->B * c->H * c->T * c->Dv;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nv);
    float *dout = malloc(sizeof(float) * no);
    tu_fill(q, nq, 1); tu_fill(k, nk, 2); tu_fill(v, nv, 3); tu_fill(dout, no, 4);
    r->out = malloc(sizeof(float) * no);
    r->lse = malloc(sizeof(float) * c->B * c->H * c->T * ATTN_SDPA_STATS);
    r->dq = calloc(nq, sizeof(float));
    r->dk = calloc(nk, sizeof(float));
    r->dv = calloc(nv, sizeof(float));

    attn_set_num_threads(nth);
    size_t wf = 0, wb = 0;
    int ok = attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wf) == ATTN_OK &&
             attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &wb) == ATTN_OK;
    void *work = malloc(wf > wb ? wf : wb);
    ok = ok && attn_sdpa_forward(NULL, &d, r->out, r->lse, NULL, q, k, v, work, wf) == ATTN_OK;
    ok = ok && attn_sdpa_backward(NULL, &d, r->dq, r->dk, r->dv, dout, q, k, v, r->out, r->lse, work, wb) == ATTN_OK;
    free(work); free(q); free(k); free(v); free(dout);
    return ok;
}

static void result_free(result *r) {
    free(r->out); free(r->lse); free(r->dq); free(r->dk); free(r->dv);
}

int main(void) {
    const dcase cases[] = {
        {1, 2, 2, 200, 200, 64, 64, 1, 0, 0.0f},       /* causal, several query and key blocks */
        {2, 4, 2, 37, 301, 33, 20, 0, 0, 0.0f},        /* GQA, odd sizes, 4 key chunks */
        {1, 2, 1, 100, 400, 48, 40, 1, 1, 0.1f},       /* causal T < S, boolean mask, dropout */
        {3, 1, 1, 5, 9, 8, 8, 0, 0, 0.0f},            /* tiny */
        {2, 8, 2, 1, 700, 64, 64, 0, 0, 0.1f},         /* decoding: T = 1, packs of grouped heads, dropout */
    };
    const attn_isa paths[] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        if (!attn_cpu_supports(paths[p]) || attn_set_isa(paths[p]) != ATTN_OK) {
            printf("%s: not supported here, skipped\n", attn_isa_name(paths[p]));
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const dcase *c = &cases[i];
            uint8_t *allow = NULL;
            if (c->allow) {
                allow = malloc((size_t)c->T * c->S);
                for (size_t j = 0; j < (size_t)c->T * c->S; j++) allow[j] = (j * 2654435761u >> 7) % 5 != 0;
            }
            result r1, rn;
            CHECK(run(c, 1, &r1, allow));
            const size_t no = (size_t)c->B * c->H * c->T * c->Dv, nl = (size_t)c->B * c->H * c->T * ATTN_SDPA_STATS;
            const size_t nq = (size_t)c->B * c->H * c->T * c->D, nk = (size_t)c->B * c->Hkv * c->S * c->D;
            const size_t nv = (size_t)c->B * c->Hkv * c->S * c->Dv;
            for (int nth = 2; nth <= 3; nth++) {
                CHECK(run(c, nth, &rn, allow));
                int same_out = memcmp(r1.out, rn.out, sizeof(float) * no) == 0;
                int same_lse = memcmp(r1.lse, rn.lse, sizeof(float) * nl) == 0;
                int same_dq = memcmp(r1.dq, rn.dq, sizeof(float) * nq) == 0;
                int same_dk = memcmp(r1.dk, rn.dk, sizeof(float) * nk) == 0;
                int same_dv = memcmp(r1.dv, rn.dv, sizeof(float) * nv) == 0;
                printf("%s case %zu (B=%d H=%d Hkv=%d T=%d S=%d D=%d Dv=%d causal=%d) 1 vs %d threads: "
                       "out %s stats %s dq %s dk %s dv %s\n", attn_isa_name(paths[p]), i, c->B, c->H, c->Hkv,
                       c->T, c->S, c->D, c->Dv, c->causal, nth, same_out ? "same" : "DIFFER",
                       same_lse ? "same" : "DIFFER", same_dq ? "same" : "DIFFER", same_dk ? "same" : "DIFFER",
                       same_dv ? "same" : "DIFFER");
                CHECK(same_out); CHECK(same_lse); CHECK(same_dq); CHECK(same_dk); CHECK(same_dv);
                result_free(&rn);
            }
            result_free(&r1);
            free(allow);
        }
    }
    attn_set_num_threads(0);
    attn_set_isa(ATTN_ISA_AUTO);
    return tu_finish("test_determinism");
}
