/*
 * test_rng.c — the seeded RNG, the dropout keep test and Adam's determinism across thread counts and
 * kernel paths (portable, AVX2, AVX-512 loops), with its flush-to-zero of subnormal moments.
 */
#include "attn.h"
#include "attn/layers.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    /* same seed -> same sequence; another seed -> another */
    attn_rng a, b, c;
    attn_rng_seed(&a, 42);
    attn_rng_seed(&b, 42);
    attn_rng_seed(&c, 43);
    int same = 1, differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = attn_rng_u32(&a), y = attn_rng_u32(&b), z = attn_rng_u32(&c);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same);
    CHECK(differ > 990);

    /* uniform in [0,1), mean near 1/2; fill_uniform in [lo,hi) */
    attn_rng_seed(&a, 7);
    double sum = 0;
    int in_range = 1;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        float u = attn_rng_uniform(&a);
        in_range &= u >= 0.0f && u < 1.0f;
        sum += u;
    }
    CHECK(in_range);
    printf("  uniform mean %.4f (want 0.5)\n", sum / n);
    CHECK(fabs(sum / n - 0.5) < 0.01);
    float buf[1000];
    attn_rng_fill_uniform(&a, buf, 1000, -0.05f, 0.05f);
    int fill_ok = 1;
    for (int i = 0; i < 1000; i++) fill_ok &= buf[i] >= -0.05f && buf[i] < 0.05f;
    CHECK(fill_ok);

    /* normal: mean 0, variance 1 (loosely), finite */
    double s1 = 0, s2 = 0;
    int finite = 1;
    for (int i = 0; i < n; i++) {
        float z = attn_rng_normal(&a);
        finite &= isfinite(z);
        s1 += z;
        s2 += (double)z * z;
    }
    double mu = s1 / n, var = s2 / n - mu * mu;
    printf("  normal mean %.4f var %.4f\n", mu, var);
    CHECK(finite);
    CHECK(fabs(mu) < 0.02 && fabs(var - 1.0) < 0.03);

    /* shuffle is a permutation, and moves things; same seed, same permutation */
    enum { P = 1000 };
    int32_t idx[P], idx2[P];
    int count[P];
    for (int i = 0; i < P; i++) idx[i] = idx2[i] = i;
    attn_rng_seed(&a, 9);
    attn_rng_seed(&b, 9);
    attn_rng_shuffle(&a, idx, P);
    attn_rng_shuffle(&b, idx2, P);
    memset(count, 0, sizeof count);
    int perm = 1, moved = 0;
    for (int i = 0; i < P; i++) {
        if (idx[i] < 0 || idx[i] >= P) perm = 0;
        else count[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < P; i++) perm &= count[i] == 1;
    CHECK(perm);
    CHECK(moved > P / 2);
    CHECK(memcmp(idx, idx2, sizeof idx) == 0);

    /* dropout keep rate within 1% of 1 - p on 100k draws, for several p; p = 0 keeps everything */
    const float ps[3] = {0.1f, 0.5f, 0.9f};
    for (int j = 0; j < 3; j++) {
        int kept = 0;
        for (int i = 0; i < n; i++) kept += attn_dropout_keep(1234, (uint64_t)i, ps[j]);
        printf("  dropout p=%.1f keep rate %.4f (want %.4f)\n", ps[j], (double)kept / n, 1.0 - ps[j]);
        CHECK(fabs((double)kept / n - (1.0 - ps[j])) < 0.01);
    }
    int all = 1;
    for (int i = 0; i < 1000; i++) all &= attn_dropout_keep(5, (uint64_t)i, 0.0f);
    CHECK(all);
    /* different seeds give different masks */
    int diff = 0;
    for (int i = 0; i < 1000; i++) diff += attn_dropout_keep(1, (uint64_t)i, 0.5f) != attn_dropout_keep(2, (uint64_t)i, 0.5f);
    CHECK(diff > 300);

    /* Adam bitwise identical with 1 and 2 threads, both forms, over a size with a ragged tail */
    const size_t np = 300001;
    float *p1 = malloc(sizeof(float) * np), *p2 = malloc(sizeof(float) * np), *g = malloc(sizeof(float) * np);
    for (int form = 0; form < 2; form++) {
        attn_rng_seed(&a, 11);
        attn_rng_fill_uniform(&a, p1, np, -1.0f, 1.0f);
        memcpy(p2, p1, sizeof(float) * np);
        attn_adam o1, o2;
        CHECK_STATUS(attn_adam_alloc(&o1, np, 1e-3f), ATTN_OK);
        CHECK_STATUS(attn_adam_alloc(&o2, np, 1e-3f), ATTN_OK);
        o1.keras_eps = o2.keras_eps = form;
        o1.decay = o2.decay = 1e-2f;
        for (int step = 0; step < 3; step++) {
            attn_rng_seed(&a, 100 + step);
            for (size_t i = 0; i < np; i++) g[i] = attn_rng_normal(&a);
            attn_set_num_threads(1);
            CHECK_STATUS(attn_adam_step(&o1, p1, g), ATTN_OK);
            attn_set_num_threads(2);
            CHECK_STATUS(attn_adam_step(&o2, p2, g), ATTN_OK);
        }
        CHECK(memcmp(p1, p2, sizeof(float) * np) == 0);
        CHECK(memcmp(o1.m, o2.m, sizeof(float) * np) == 0 && memcmp(o1.v, o2.v, sizeof(float) * np) == 0);
        CHECK(o1.t == 3);
        attn_adam_free(&o1);
        attn_adam_free(&o2);
    }
    /* Adam bitwise identical on every kernel path the CPU runs (the portable loop for scalar, the AVX2 and
     * AVX-512 loops), over a ragged size, with zero, tiny and subnormal gradients and moments mixed in */
    {
        const size_t na = 70001;
        const attn_isa paths[3] = {ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
        float *pp[3] = {NULL, NULL, NULL}, *mp[3] = {NULL, NULL, NULL}, *vp[3] = {NULL, NULL, NULL};
        int ran[3] = {0, 0, 0};
        float *gg = malloc(sizeof(float) * na);
        CHECK(gg != NULL);
        const attn_isa before = attn_get_isa();
        for (int k = 0; k < 3 && gg; k++) {
            pp[k] = mp[k] = vp[k] = NULL;
            if (!attn_cpu_supports(paths[k]) || attn_set_isa(paths[k]) != ATTN_OK) continue;
            attn_adam o;
            CHECK_STATUS(attn_adam_alloc(&o, na, 2e-4f), ATTN_OK);
            o.keras_eps = 1;
            o.eps = 1e-7f;
            o.decay = 1e-5f;
            pp[k] = malloc(sizeof(float) * na);
            mp[k] = malloc(sizeof(float) * na);
            vp[k] = malloc(sizeof(float) * na);
            CHECK(pp[k] && mp[k] && vp[k]);
            if (!pp[k] || !mp[k] || !vp[k]) { attn_adam_free(&o); continue; }
            attn_rng_seed(&a, 21);
            attn_rng_fill_uniform(&a, pp[k], na, -0.05f, 0.05f);
            for (size_t i = 0; i < na; i++) {           /* moments: some subnormal, some tiny, some normal */
                o.m[i] = i % 7 == 0 ? 3e-39f : i % 7 == 1 ? -1e-37f : 1e-4f * (float)(i % 13);
                o.v[i] = i % 5 == 0 ? 0.0f : 1e-9f * (float)(i % 11);
            }
            for (int step = 0; step < 4; step++) {
                attn_rng_seed(&a, 200 + step);
                for (size_t i = 0; i < na; i++) {
                    const float u = attn_rng_normal(&a);
                    gg[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? u * 1e-20f : u * 1e-3f;   /* g² underflows */
                }
                CHECK_STATUS(attn_adam_step(&o, pp[k], gg), ATTN_OK);
            }
            memcpy(mp[k], o.m, sizeof(float) * na);
            memcpy(vp[k], o.v, sizeof(float) * na);
            attn_adam_free(&o);
            ran[k] = 1;
        }
        attn_set_isa(before);
        CHECK(ran[0]);
        int nsub = 0;
        if (ran[0])
            for (size_t i = 0; i < na; i++) nsub += mp[0][i] != 0.0f && fabsf(mp[0][i]) < 1.17549435e-38f;
        CHECK(nsub == 0);                                /* flushed: no subnormal moment survives */
        for (int k = 1; k < 3; k++) {
            if (!ran[k] || !ran[0]) continue;
            CHECK(memcmp(pp[0], pp[k], sizeof(float) * na) == 0);
            CHECK(memcmp(mp[0], mp[k], sizeof(float) * na) == 0 && memcmp(vp[0], vp[k], sizeof(float) * na) == 0);
        }
        printf("  Adam: the same bits on the scalar%s%s paths\n", ran[1] ? ", AVX2" : "", ran[2] ? ", AVX-512" : "");
        for (int k = 0; k < 3; k++) {
            free(pp[k]); free(mp[k]); free(vp[k]);
        }
        free(gg);
    }

    /* clipping: same norm and result with 1 and 2 threads */
    attn_rng_seed(&a, 12);
    for (size_t i = 0; i < np; i++) g[i] = attn_rng_normal(&a);
    memcpy(p1, g, sizeof(float) * np);
    memcpy(p2, g, sizeof(float) * np);
    float n1, n2;
    attn_set_num_threads(1);
    CHECK_STATUS(attn_clip_grad_norm(p1, np, 1.0f, &n1), ATTN_OK);
    attn_set_num_threads(2);
    CHECK_STATUS(attn_clip_grad_norm(p2, np, 1.0f, &n2), ATTN_OK);
    CHECK(n1 == n2 && memcmp(p1, p2, sizeof(float) * np) == 0);
    attn_set_num_threads(0);
    free(p1); free(p2); free(g);
    return tu_finish("test_rng");
}
