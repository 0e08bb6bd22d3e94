/*
 * rng.c — the seeded random number generator (PCG32, XSH-RR output) and the stateless dropout test.
 *
 * PCG32: a 64-bit linear congruential state, advanced as state·6364136223846793005 + inc, whose output
 * is a xorshift of the high bits rotated by the top 5 bits. attn_rng_seed picks one fixed stream, so a
 * seed alone determines the sequence. Dropout never uses this stream (its keep mask is a hash of
 * (seed, index), see attn__dropout_keep in internal.h), so the backward can regenerate it.
 */
#include "internal.h"

#define ATTN_PCG_MULT   6364136223846793005ULL
#define ATTN_PCG_STREAM 0xda3e39cb94b95bdbULL      /* any odd constant; fixed so that seed alone matters */

static inline uint32_t pcg_next(attn_rng *r) {
    uint64_t old = r->state;
    r->state = old * ATTN_PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

void attn_rng_seed(attn_rng *r, uint64_t seed) {
    if (!r) return;
    r->state = 0;
    r->inc = (ATTN_PCG_STREAM << 1) | 1u;
    pcg_next(r);
    r->state += seed;
    pcg_next(r);
}

uint32_t attn_rng_u32(attn_rng *r) {
    if (!r) return 0;
    return pcg_next(r);
}

/* The top 24 bits as a fraction of 2^24: exactly representable, so always < 1. */
static inline float uniform24(attn_rng *r) {
    return (float)(pcg_next(r) >> 8) * (1.0f / 16777216.0f);
}

float attn_rng_uniform(attn_rng *r) {
    if (!r) return 0.0f;
    return uniform24(r);
}

/* Box–Muller, one value per call (the struct keeps no spare). u1 in (0,1] so the log is finite. */
float attn_rng_normal(attn_rng *r) {
    if (!r) return 0.0f;
    double u1 = 1.0 - (double)uniform24(r);
    double u2 = (double)uniform24(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void attn_rng_fill_uniform(attn_rng *r, float *x, size_t n, float lo, float hi) {
    if (!r || !x) return;
    float w = hi - lo;
    for (size_t i = 0; i < n; i++) {
        float y = lo + w * uniform24(r);
        x[i] = (y < hi || !(hi > lo)) ? y : lo;   /* rounding may reach hi: stay in [lo, hi) */
    }
}

/* An unbiased integer in [0, bound), bound >= 1: 64 random bits, rejecting the short last interval. */
static inline uint64_t bounded(attn_rng *r, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;     /* 2^64 mod bound */
    for (;;) {
        uint64_t x = ((uint64_t)pcg_next(r) << 32) | pcg_next(r);
        if (x >= threshold) return x % bound;
    }
}

void attn_rng_shuffle(attn_rng *r, int32_t *idx, size_t n) {
    if (!r || !idx || n < 2) return;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)bounded(r, (uint64_t)i + 1);
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

int attn_dropout_keep(uint64_t seed, uint64_t i, float p) {
    return attn__dropout_keep(seed, i, p);
}
