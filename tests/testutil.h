/*
 * testutil.h — the few helpers every test program shares: checks that count failures, array comparison
 * that prints the worst absolute and relative error, and the closing summary line.
 */
#ifndef ATTN_TESTUTIL_H
#define ATTN_TESTUTIL_H

#include "attn/safetensors.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        tu_checks++;                                                                     \
        if (!(cond)) {                                                                   \
            tu_failures++;                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define CHECK_STATUS(expr, want)                                                         \
    do {                                                                                 \
        attn_status tu_got = (expr);                                                     \
        tu_checks++;                                                                     \
        if (tu_got != (want)) {                                                          \
            tu_failures++;                                                               \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", __FILE__,  \
                    __LINE__, #expr, (int)tu_got, attn_status_string(tu_got), (int)(want), \
                    attn_status_string(want));                                           \
        }                                                                                \
    } while (0)

/* Compares got against want (n values): passes when every |got - want| <= atol + rtol·|want|.
 * Prints the worst absolute and relative error either way; NaN anywhere fails. */
static inline int tu_close_f64(const char *what, const double *got, const double *want, size_t n,
                               double atol, double rtol) {
    double max_abs = 0, max_rel = 0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs(got[i] - want[i]);
        double r = a / (fabs(want[i]) > 1e-30 ? fabs(want[i]) : 1e-30);
        if (!(a <= atol + rtol * fabs(want[i]))) { if (!bad) worst = i; bad++; }
        if (!(a <= max_abs)) max_abs = a;     /* catches NaN */
        if (fabs(want[i]) > atol && r > max_rel) max_rel = r;
    }
    tu_checks++;
    printf("  %-40s n=%-7zu max_abs=%.3g max_rel=%.3g %s\n", what, n, max_abs, max_rel, bad ? "FAIL" : "ok");
    if (bad) {
        tu_failures++;
        fprintf(stderr, "  %s: %zu of %zu values off; first at %zu: got %.9g want %.9g\n", what, bad, n,
                worst, got[worst], want[worst]);
    }
    return bad == 0;
}

static inline int tu_close_f32(const char *what, const float *got, const float *want, size_t n,
                               double atol, double rtol) {
    double *g = malloc(sizeof(double) * (n ? n : 1)), *w = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) { g[i] = got[i]; w[i] = want[i]; }
    int ok = tu_close_f64(what, g, w, n, atol, rtol);
    free(g); free(w);
    return ok;
}

/* ---------------------------------------------------------------------------------------------------
 * Golden files: tests/golden/<file>, written by tools/golden/ with PyTorch. A missing or malformed golden
 * tensor ends the test with a message (exit 1): the test cannot say anything without it.
 */
#ifdef ATTN_H
static inline void tu_golden_open(attn_st_file *f, const char *file) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", ATTN_GOLDEN_DIR, file);
    if (attn_st_read(f, path, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "cannot read golden file: %s\n", err);
        exit(1);
    }
}

/* The float32 tensor `name` of exactly this shape (ndim <= 4; the unused sizes are ignored). */
static inline const float *tu_golden_f32(const attn_st_file *f, const char *name, int ndim,
                                         int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const int64_t shape[4] = {d0, d1, d2, d3};
    const float *p = NULL;
    char err[256];
    if (attn_st_get_f32(f, name, ndim, shape, &p, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "golden: %s\n", err);
        exit(1);
    }
    return p;
}

/* The int32 tensor `name` of n elements. */
static inline const int32_t *tu_golden_i32(const attn_st_file *f, const char *name, int64_t n) {
    const attn_st_tensor *t = attn_st_find(f, name);
    if (!t || t->dtype != ATTN_DTYPE_I32 || t->nbytes != (size_t)n * 4) {
        fprintf(stderr, "golden: %s missing or not int32 of %lld elements\n", name, (long long)n);
        exit(1);
    }
    return (const int32_t *)t->data;
}

/* The float64 tensor "<cs>/<name>" of n elements, rounded to floats in a malloc'ed array (free it). */
static inline float *tu_golden_f64(const attn_st_file *f, const char *cs, const char *name, size_t n) {
    char key[128];
    snprintf(key, sizeof key, "%s/%s", cs, name);
    const attn_st_tensor *t = attn_st_find(f, key);
    if (!t || t->dtype != ATTN_DTYPE_F64 || t->nbytes != n * 8) {
        fprintf(stderr, "golden: %s missing or not float64 of %zu elements\n", key, n);
        exit(1);
    }
    float *x = malloc(sizeof(float) * (n ? n : 1));
    if (!x) exit(1);
    for (size_t i = 0; i < n; i++) x[i] = (float)((const double *)t->data)[i];
    return x;
}
#endif

/* x (n) = uniform values in [-1, 1) from a xorshift stream of seed: the same inputs on every machine. */
static inline void tu_fill(float *x, size_t n, unsigned long long seed) {
    unsigned long long s = seed * 0x9e3779b97f4a7c15ULL + 7;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

/* The randomized tests' stream (splitmix64 over a counter *s): the same draws on every machine. */
static inline uint64_t tu_rnd_u64(uint64_t *s) {
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* an integer in [lo, hi] */
static inline int tu_rnd_int(uint64_t *s, int lo, int hi) { return lo + (int)(tu_rnd_u64(s) % (uint64_t)(hi - lo + 1)); }
/* a float in [-1, 1) with 24 random bits */
static inline float tu_rnd_f(uint64_t *s) { return (float)((tu_rnd_u64(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

/* Prints "N passed, N failed" and returns the exit status. */
static inline int tu_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, tu_checks - tu_failures, tu_failures);
    return tu_failures ? 1 : 0;
}

#endif /* ATTN_TESTUTIL_H */
