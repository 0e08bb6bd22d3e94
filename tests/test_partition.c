/*
 * test_partition.c — the partition entries (attn_sdpa_forward_part / attn_sdpa_backward_part) run from a
 * caller's own thread pool give bitwise what the OpenMP calls give. A plain pthread pool of 1, 2 and 3
 * threads runs every stage (a barrier between stages), on every path this CPU runs, over shapes that take
 * each kernel route: blocks of query rows, decoding rows, small heads, several backward rounds (the dQ
 * slots of the pairs do not fit one round), causal and boolean masks, grouped-query heads and dropout.
 */
#define _POSIX_C_SOURCE 200809L   /* pthread barriers */
#include "attn.h"
#include "testutil.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pcase {
    const char *name;
    int B, H, Hkv, T, S, D, Dv, causal, allow;
    float dropout;
} pcase;

/* One problem: inputs, outputs and gradients. */
typedef struct prob {
    attn_sdpa_desc d;
    float *q, *k, *v, *dout, *out, *lse, *dq, *dk, *dv;
    size_t nq, nk, nv, no, nl;
    uint8_t *allow;
} prob;

static int prob_make(prob *p, const pcase *c) {
    memset(p, 0, sizeof *p);
    if (attn_sdpa_desc_init(&p->d, c->B, c->H, c->T, c->S, c->D, c->Dv) != ATTN_OK) return 0;
    attn_sdpa_desc *d = &p->d;
    d->Hkv = c->Hkv;
    d->k = (attn_layout){(int64_t)c->Hkv * c->S * c->D, (int64_t)c->S * c->D, c->D};
    d->v = (attn_layout){(int64_t)c->Hkv * c->S * c->Dv, (int64_t)c->S * c->Dv, c->Dv};
    d->mask.causal = c->causal;
    if (c->allow) {
        p->allow = malloc((size_t)c->T * c->S);
        for (size_t i = 0; i < (size_t)c->T * c->S; i++) p->allow[i] = (i * 7 + i / 3) % 5 != 0;
        d->mask.allow = p->allow;
        d->mask.allow_stride[2] = c->S;
    }
    d->dropout = c->dropout;
    d->seed = 9;
    p->nq = (size_t)c->B * c->H * c->T * c->D;
    p->nk = (size_t)c->B * c->Hkv * c->S * c->D;
    p->nv = (size_t)c->B * c->Hkv * c->S * c->Dv;
    p->no = (size_t)c->B * c->H * c->T * c->Dv;
    p->nl = (size_t)c->B * c->H * c->T * ATTN_SDPA_STATS;
    p->q = malloc(sizeof(float) * p->nq); p->k = malloc(sizeof(float) * p->nk);
    p->v = malloc(sizeof(float) * p->nv); p->dout = malloc(sizeof(float) * p->no);
    tu_fill(p->q, p->nq, 1); tu_fill(p->k, p->nk, 2); tu_fill(p->v, p->nv, 3); tu_fill(p->dout, p->no, 4);
    p->out = calloc(p->no, sizeof(float)); p->lse = calloc(p->nl, sizeof(float));
    p->dq = calloc(p->nq, sizeof(float)); p->dk = calloc(p->nk, sizeof(float)); p->dv = calloc(p->nv, sizeof(float));
    return p->q && p->k && p->v && p->dout && p->out && p->lse && p->dq && p->dk && p->dv;
}

static void prob_free(prob *p) {
    free(p->q); free(p->k); free(p->v); free(p->dout); free(p->out); free(p->lse);
    free(p->dq); free(p->dk); free(p->dv); free(p->allow);
}

/* The pool: nth threads run each stage of a pass; the main thread waits for all of them between stages
 * (pthread_barrier), which is what "a barrier between stages" asks of a caller. */
typedef struct pool_arg {
    const attn_ctx *ctx;
    prob *p;
    attn_pass pass;
    int stages, ith;
    void *work;
    size_t work_bytes;
    pthread_barrier_t *bar;
    attn_status st;
} pool_arg;

static void *pool_main(void *arg) {
    pool_arg *a = arg;
    prob *p = a->p;
    a->st = ATTN_OK;
    for (int s = 0; s < a->stages; s++) {
        attn_status st = a->pass == ATTN_PASS_FORWARD
            ? attn_sdpa_forward_part(a->ctx, &p->d, p->out, p->lse, p->q, p->k, p->v, a->work, a->work_bytes, s, a->ith)
            : attn_sdpa_backward_part(a->ctx, &p->d, p->dq, p->dk, p->dv, p->dout, p->q, p->k, p->v, p->out, p->lse,
                                      a->work, a->work_bytes, s, a->ith);
        if (st != ATTN_OK) a->st = st;
        pthread_barrier_wait(a->bar);
    }
    return NULL;
}

static attn_status run_pool(const attn_ctx *ctx, prob *p, attn_pass pass) {
    size_t bytes = 0;
    int stages = 0;
    attn_status st = attn_sdpa_workspace_size(ctx, &p->d, pass, &bytes);
    if (st == ATTN_OK) st = attn_sdpa_stages(ctx, &p->d, pass, &stages);
    if (st != ATTN_OK) return st;
    void *work = malloc(bytes);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)ctx->threads);
    pthread_t th[8];
    pool_arg args[8];
    for (int i = 0; i < ctx->threads; i++) {
        args[i] = (pool_arg){ctx, p, pass, stages, i, work, bytes, &bar, ATTN_OK};
        pthread_create(&th[i], NULL, pool_main, &args[i]);
    }
    for (int i = 0; i < ctx->threads; i++) {
        pthread_join(th[i], NULL);
        if (args[i].st != ATTN_OK) st = args[i].st;
    }
    pthread_barrier_destroy(&bar);
    free(work);
    return st;
}

static attn_status run_openmp(const attn_ctx *ctx, prob *p) {
    size_t fw = 0, bw = 0;
    attn_status st = attn_sdpa_workspace_size(ctx, &p->d, ATTN_PASS_FORWARD, &fw);
    if (st == ATTN_OK) st = attn_sdpa_workspace_size(ctx, &p->d, ATTN_PASS_BACKWARD, &bw);
    if (st != ATTN_OK) return st;
    void *work = malloc(fw > bw ? fw : bw);
    st = attn_sdpa_forward(ctx, &p->d, p->out, p->lse, NULL, p->q, p->k, p->v, work, fw);
    if (st == ATTN_OK)
        st = attn_sdpa_backward(ctx, &p->d, p->dq, p->dk, p->dv, p->dout, p->q, p->k, p->v, p->out, p->lse, work, bw);
    free(work);
    return st;
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, sizeof(float) * n) == 0; }

int main(void) {
    const pcase cases[] = {
        {"blocks of query rows, causal", 2, 4, 4, 150, 150, 64, 64, 1, 0, 0.0f},
        {"decoding rows, grouped heads", 2, 8, 2, 3, 300, 40, 24, 0, 0, 0.0f},
        {"small heads (translator), dropout", 8, 4, 4, 10, 10, 8, 8, 1, 0, 0.1f},
        {"boolean mask, odd sizes, dropout", 1, 3, 1, 77, 91, 33, 17, 0, 1, 0.2f},
        {"several backward rounds", 5, 1, 1, 16384, 130, 64, 64, 0, 0, 0.0f},
    };
    const attn_isa isas[] = {ATTN_ISA_REF, ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    attn_ctx auto_ctx;
    attn_ctx_init(&auto_ctx, ATTN_ISA_AUTO, 1);
    const attn_isa best = auto_ctx.isa;
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        attn_ctx omp;
        if (attn_ctx_init(&omp, isas[ii], 2) != ATTN_OK) continue;     /* a path this CPU lacks */
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const pcase *c = &cases[ci];
            if (isas[ii] == ATTN_ISA_REF && c->T * c->S > 100000) continue;   /* the oracle is slow */
            /* under the sanitizers (about 50x slower) the several-rounds case runs on the best path only */
            if (getenv("ATTN_SANITIZED") && c->T * c->S > 100000 && isas[ii] != best) continue;
            prob want;
            CHECK(prob_make(&want, c));
            CHECK_STATUS(run_openmp(&omp, &want), ATTN_OK);
            for (int nth = 1; nth <= 3; nth++) {
                attn_ctx pc;
                CHECK_STATUS(attn_ctx_init(&pc, isas[ii], nth), ATTN_OK);
                prob got;
                CHECK(prob_make(&got, c));
                CHECK_STATUS(run_pool(&pc, &got, ATTN_PASS_FORWARD), ATTN_OK);
                CHECK_STATUS(run_pool(&pc, &got, ATTN_PASS_BACKWARD), ATTN_OK);
                int stages = 0;
                attn_sdpa_stages(&pc, &got.d, ATTN_PASS_BACKWARD, &stages);
                const int ok = same(got.out, want.out, want.no) && same(got.lse, want.lse, want.nl) &&
                               same(got.dq, want.dq, want.nq) && same(got.dk, want.dk, want.nk) &&
                               same(got.dv, want.dv, want.nv);
                CHECK(ok);
                printf("  %-7s %-36s pool of %d: backward in %2d stages, %s\n", attn_isa_name(isas[ii]), c->name, nth,
                       stages, ok ? "bitwise equal to OpenMP" : "DIFFERS");
                prob_free(&got);
            }
            prob_free(&want);
        }
    }
    /* bad partition arguments are refused */
    {
        attn_ctx pc;
        attn_ctx_init(&pc, ATTN_ISA_AUTO, 2);
        prob p;
        CHECK(prob_make(&p, &cases[0]));
        size_t bytes = 0;
        attn_sdpa_workspace_size(&pc, &p.d, ATTN_PASS_FORWARD, &bytes);
        void *w = malloc(bytes);
        CHECK_STATUS(attn_sdpa_forward_part(&pc, &p.d, p.out, p.lse, p.q, p.k, p.v, w, bytes, 0, 2), ATTN_ERR_ARG);
        CHECK_STATUS(attn_sdpa_forward_part(&pc, &p.d, p.out, p.lse, p.q, p.k, p.v, w, bytes, 1, 0), ATTN_ERR_ARG);
        CHECK_STATUS(attn_sdpa_forward_part(&pc, &p.d, p.out, p.lse, p.q, p.k, p.v, w, bytes - 1, 0, 0),
                     ATTN_ERR_WORKSPACE);
        attn_ctx bad = pc;
        bad.threads = ATTN_MAX_THREADS + 1;
        CHECK_STATUS(attn_sdpa_forward_part(&bad, &p.d, p.out, p.lse, p.q, p.k, p.v, w, bytes, 0, 0), ATTN_ERR_ARG);
        CHECK_STATUS(attn_ctx_init(&bad, ATTN_ISA_AUTO, ATTN_MAX_THREADS + 1), ATTN_ERR_ARG);
        free(w);
        prob_free(&p);
    }
    /* OpenBLAS's own knob leaves the attention kernels' "every core" alone (Debian's OpenMP OpenBLAS sets
     * OpenMP's default in openblas_set_num_threads: the translators' shards once ran on one thread) */
    {
        attn_set_num_threads(0);
        const int before = attn_get_num_threads();
        CHECK_STATUS(attn_blas_set_num_threads(1), ATTN_OK);
        CHECK(attn_get_num_threads() == before);
        CHECK_STATUS(attn_blas_set_num_threads(0), ATTN_ERR_ARG);
        printf("  every core before and after attn_blas_set_num_threads(1): %d and %d\n", before, attn_get_num_threads());
    }
    return tu_finish("test_partition");
}
