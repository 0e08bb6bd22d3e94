/*
 * internal.h — what the library's own files share and the public header does not show: the kernel
 * dispatch table, validation helpers and index arithmetic. Never installed.
 */
#ifndef ATTN_INTERNAL_H
#define ATTN_INTERNAL_H

#include "attn.h"
#include "attn/layers.h"
#include "attn/data.h"
#include "attn/safetensors.h"
#include "attn/heatmap.h"
#include "attn/seq2seq.h"
#include "attn/transformer.h"

#include <math.h>
#include <string.h>

/* Largest accepted size of any one dimension; keeps every product of two sizes inside int64. */
#define ATTN_MAX_DIM (1 << 24)

/* ---------------------------------------------------------------------------------------------------
 * Kernel dispatch: one table per path, every entry filled. config.c composes the tables once: the
 * reference entries (src/ref), then the portable fused path's (src/kernels/scalar) over them, AVX2's over
 * those, AVX-512's over those; a path leaves NULL what it does not do better. Calls resolve their context
 * (attn__ctx_resolve), validate, and call the table of the context's path.
 *
 * Partitioned passes: an SDPA pass is cut into stages (sdpa_stages, a function of the descriptor only);
 * within a stage the items are shared among nth threads, either through a shared counter (the OpenMP
 * driver in sdpa.c: dynamic, adapts to a busy machine) or statically (items ith, ith + nth, ...: a
 * caller's own pool). Which thread runs an item never changes what it computes.
 */
typedef struct attn__part {
    int stage;                   /* 0 .. stages-1 */
    int ith, nth;                /* this thread, of nth */
    int64_t *counter;            /* shared item counter, zeroed before the stage; NULL: static split */
} attn__part;

/* The next work item of this thread: *local starts at -1. */
static inline int64_t attn__part_next(const attn__part *p, int64_t *local) {
    if (p->counter) {
        int64_t i;
#ifdef _OPENMP
#pragma omp atomic capture
#endif
        i = (*p->counter)++;
        return i;
    }
    *local = *local < 0 ? p->ith : *local + p->nth;
    return *local;
}

typedef struct attn_kernels {
    attn_isa isa;
    /* 1 when the path's sdpa_forward/backward take d as it is for that pass: its tensors' type
     * (d->dtype) and compute type. NULL or 0: the path takes fp32 tensors only, and sdpa.c converts bf16
     * tensors to fp32 around it. The tensor pointers of sdpa_forward/backward are typed float * but are
     * uint16_t arrays (bf16 bits) when d->dtype is ATTN_DTYPE_BF16. */
    int (*sdpa_native)(const attn_sdpa_desc *d, attn_pass pass);
    /* scaled dot-product attention. Forward and backward receive a validated descriptor, a workspace of
     * at least sdpa_workspace(d, pass, nth) bytes (64-byte aligned) and their part. sdpa_threads: how many
     * of nth threads are worth waking for d (the OpenMP driver's choice; results never depend on it). */
    size_t (*sdpa_workspace)(const attn_sdpa_desc *d, attn_pass pass, int nth);
    int (*sdpa_stages)(const attn_sdpa_desc *d, attn_pass pass);
    int (*sdpa_threads)(const attn_sdpa_desc *d, attn_pass pass, int nth);
    /* scores: NULL, or the weights buffer (B,H,T,S) of a forward asked for weights, into which the path's
     * forward may write its canonical scores for its own sdpa_weights stage to finish in place */
    void (*sdpa_forward)(const attn_sdpa_desc *d, float *out, float *stats, float *scores, const float *q,
                         const float *k, const float *v, void *work, const attn__part *part);
    void (*sdpa_backward)(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout,
                          const float *q, const float *k, const float *v, const float *out, const float *stats,
                          void *work, const attn__part *part);
    /* the weights (B,H,T,S) from the forward's row statistics: one stage run after the forward's, in the
     * forward's workspace (NULL on the reference path, whose forward writes them itself). It follows this
     * table's sdpa_forward, given weights as its scores, on the same descriptor (with weights asked for,
     * sdpa.c runs the fp32 entries, never a path's native bf16 ones) */
    void (*sdpa_weights)(const attn_sdpa_desc *d, float *weights, const float *stats, const float *q,
                         const float *k, void *work, const attn__part *part);
    /* additive attention against projected keys kp = k W_kᵀ (B,S,Dh); work as additive.c sizes it.
     * The backward accumulates into dq, dkp, dv, dwq, dwv. */
    void (*additive_forward)(const attn_additive_desc *d, float *out, float *weights, const float *q,
                             const float *kp, const float *v, const float *wq, const float *wv, void *work);
    void (*additive_backward)(const attn_additive_desc *d, float *dq, float *dkp, float *dv, float *dwq,
                              float *dwv, const float *dout, const float *q, const float *kp, const float *v,
                              const float *wq, const float *wv, void *work);
    /* one row of GRU gates (src/layers/gru.c says what they compute) */
    void (*gru_gates)(int H, const float *ir, const float *iz, const float *in, float *gr, float *gz, float *gn,
                      const float *hp, float *hn, float *ghn);
    void (*gru_gates_backward)(int H, const float *r, const float *z, const float *n, const float *ghn,
                               const float *hp, const float *dh, const float *dout, float *dir, float *diz,
                               float *din, float *dhr, float *dhz, float *dhn, float *dhp);
    /* Adam's elementwise update of [lo, hi) (src/layers/optim_kernels.h: the same bits on every path) */
    void (*adam_block)(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi, float b1, float b2,
                       float eps, float step, float vscale);
    /* GELU's elementwise loops (src/layers/gelu_kernels.h: the same bits on every path) */
    void (*gelu_forward)(float *y, const float *x, int64_t n);
    void (*gelu_backward)(float *dx, const float *dy, const float *x, int64_t n);
    /* layer norm's row loops (src/layers/layernorm_kernels.h: the same bits on every path) */
    void (*layernorm_forward)(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                              const float *beta, int64_t n, int C, float eps);
    void (*layernorm_backward)(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                               const float *gamma, int64_t n, int C);
} attn_kernels;

/* The complete table of a path, or NULL when the path is not built in (ATTN_ISA_REF always is). */
const attn_kernels *attn__kernels(attn_isa isa);

/* The context a call runs with (NULL: the default context now), checked, and its table. */
attn_status attn__ctx_resolve(const attn_ctx *in, attn_ctx *out, const attn_kernels **kern);

/* The reference path's SDPA entries (src/ref/sdpa_ref.c): plain loops, single-threaded, materialize one
 * row of scores at a time. */
size_t attn__sdpa_ref_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth);
attn_status attn__sdpa_ref_forward(const attn_sdpa_desc *d, float *out, float *stats, float *weights,
                                   const float *q, const float *k, const float *v, void *work);
attn_status attn__sdpa_ref_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv,
                                    const float *dout, const float *q, const float *k, const float *v,
                                    const float *out, const float *stats, void *work);

/* Each path's own entries (NULL where it keeps the path below's). */
extern const attn_kernels attn__kernels_ref;
extern const attn_kernels attn__kernels_scalar;
extern const attn_kernels attn__kernels_avx2;
extern const attn_kernels attn__kernels_avx512;
extern const attn_kernels attn__kernels_avx512bf16;
extern const attn_kernels attn__kernels_amx;

/* ---------------------------------------------------------------------------------------------------
 * Masks, shared by every path so that they agree exactly.
 */

/* Number of keys query row t of batch b may see after valid lengths and causality: keys [0, n). The
 * boolean mask and the bias may exclude more inside that range. */
static inline int attn__key_limit(const attn_mask *m, int b, int t, int T, int S) {
    int64_t n = S;
    if (m->valid_lens_kind == ATTN_VALID_LENS_PER_BATCH) {
        int64_t vl = m->valid_lens[b];
        if (vl < n) n = vl;
    } else if (m->valid_lens_kind == ATTN_VALID_LENS_PER_QUERY) {
        int64_t vl = m->valid_lens[(int64_t)b * T + t];
        if (vl < n) n = vl;
    }
    if (m->causal) {
        int64_t c = (int64_t)t + (S - T) + 1;    /* keys s <= t + (S - T) */
        if (c < n) n = c;
    }
    if (m->window) {
        int64_t c = (int64_t)t + (S - T) + m->window_right + 1;   /* keys s <= ta + right */
        if (c < n) n = c;
    }
    return n < 0 ? 0 : (int)n;
}

/* The sliding window's lower edge for query t: keys s in [attn__key_sinks(m, S), low) are excluded (the
 * sinks before them stay). 0 without a window. */
static inline int attn__key_low(const attn_mask *m, int t, int T, int S) {
    if (!m->window) return 0;
    int64_t lo = (int64_t)t + (S - T) - m->window_left;
    return lo < 0 ? 0 : lo > S ? S : (int)lo;
}

static inline int attn__key_sinks(const attn_mask *m, int S) {
    return !m->window ? S : m->sinks < S ? m->sinks : S;
}

/* The block map's row for query t, (⌈S/bs⌉) bytes, or NULL */
static inline const uint8_t *attn__block_row(const attn_mask *m, int b, int h, int t) {
    if (!m->block_map) return NULL;
    return m->block_map + b * m->block_map_stride[0] + h * m->block_map_stride[1] +
           (int64_t)(t / m->block_size) * m->block_map_stride[2];
}

/* Does the window hide key s from a row whose lower edge is low? */
static inline int attn__window_hides(int s, int nsink, int low) { return s >= nsink && s < low; }

/* ALiBi's bias slope_h·(s - ta) for key s of query t (float arithmetic, the same in every fused path) */
static inline float attn__alibi(const attn_mask *m, int h, int s, int t, int T, int S) {
    return m->alibi_slopes[h] * (float)((int64_t)s - ((int64_t)t + (S - T)));
}

/* Does the mask have a part only scaled dot-product attention knows (window, sinks, sink logits, ALiBi,
 * soft-capping)? */
static inline int attn__mask_sparse(const attn_mask *m) {
    return m->window || m->sinks || m->sink_logits || m->alibi_slopes || m->softcap != 0.0f || m->block_map;
}

/* Counters behind attn_sdpa_scores_computed, (pass): the fused kernels add to them. */
extern int64_t attn__scores_counter[2];
static inline void attn__count_scores(attn_pass pass, int64_t n) {
    __atomic_fetch_add(&attn__scores_counter[pass], n, __ATOMIC_RELAXED);
}

static inline const uint8_t *attn__allow_row(const attn_mask *m, int b, int h, int t) {
    if (!m->allow) return NULL;
    return m->allow + b * m->allow_stride[0] + h * m->allow_stride[1] + t * m->allow_stride[2];
}

static inline const float *attn__bias_row(const attn_mask *m, int b, int h, int t) {
    if (!m->bias) return NULL;
    return m->bias + b * m->bias_stride[0] + h * m->bias_stride[1] + t * m->bias_stride[2];
}

/* d with contiguous layouts for q, k, v and out ((B,H,T,D), (B,Hkv,S,D), (B,Hkv,S,Dv), (B,H,T,Dv)), tensors
 * of type dtype and fp32 compute: the descriptor of a path's copies of d's tensors (sdpa.c's fp32 copies of
 * bf16 tensors, the AVX512-BF16 path's bf16 copies of fp32 tensors). */
static inline attn_sdpa_desc attn__contiguous_desc(const attn_sdpa_desc *d, attn_dtype dtype) {
    attn_sdpa_desc c = *d;
    const int H = d->H, Hkv = d->Hkv, T = d->T, S = d->S, D = d->D, Dv = d->Dv;
    c.q = (attn_layout){(int64_t)H * T * D, (int64_t)T * D, D};
    c.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    c.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    c.out = (attn_layout){(int64_t)H * T * Dv, (int64_t)T * Dv, Dv};
    c.dtype = dtype;
    c.compute = ATTN_DTYPE_F32;
    return c;
}

/* Validates a mask for sizes B,H,T,S (pointers, kinds, nonnegative lengths, nonnegative strides). */
attn_status attn__validate_mask(const attn_mask *m, int B, int H, int T, int S);

/* 1 if a (B,H,T,inner) tensor with these strides never maps two elements to one address. */
int attn__layout_disjoint(const attn_layout *l, int B, int H, int T, int inner);

/* ---------------------------------------------------------------------------------------------------
 * Dropout: a pure function of (seed, index), the same in every kernel path. The index of weight
 * (b, h, t, s) is ((b·H + h)·T + t)·S + s.
 */
static inline uint64_t attn__mix64(uint64_t x) {  /* splitmix64's finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Keep when the top 24 bits of the hash, as a fraction of 2^24, are >= p. */
static inline int attn__dropout_keep(uint64_t seed, uint64_t i, float p) {
    uint64_t h = attn__mix64(seed * 0x9e3779b97f4a7c15ULL + i + 0x632be59bd9b4e019ULL);
    return (float)(h >> 40) * (1.0f / 16777216.0f) >= p;
}

/* ---------------------------------------------------------------------------------------------------
 * bf16 <-> fp32, portable (the public attn_bf16_* call these): round to nearest even, NaN kept quiet.
 */
static inline uint16_t attn__bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float attn__f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* ---------------------------------------------------------------------------------------------------
 * Text helpers (text.c).
 */

/* printf into err (err_size bytes, NULL allowed): how loaders fill the caller's message buffer. */
void attn__set_err(char *err, size_t err_size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Decodes one strict UTF-8 code point at s (n bytes left) into *cp and returns its length, or 0 when
 * the bytes there are not valid UTF-8 (overlong, surrogate, truncated, > U+10FFFF) or n is 0. */
size_t attn__utf8_decode(const char *s, size_t n, uint32_t *cp);

#endif /* ATTN_INTERNAL_H */
