/*
 * fused_impl.h — the fused (flash-style) scaled dot-product attention, forward and backward, written once
 * for any vector width. Not a public header: each kernel path includes it after defining its vector type
 * and a dozen small operations (fused_scalar.c in plain C, fused_avx2.c and fused_avx512.c with
 * intrinsics). Everything here is static; kernels_impl.h puts it in the path's table.
 *
 * The includer defines:
 *   FZ_VW                  lanes per vector (fz_v)
 *   FZ_NVMAX, FZ_RTMAX     register tile of the micro-kernel: FZ_RTMAX rows x FZ_NVMAX vectors
 *   FZ_BC                  forward: keys per block
 *   FZ_QB                  backward: query rows per block
 *   FZ_ISA, FZ_TABLE       the path's attn_isa and the name of its table
 *   fz_v, fz_m             vector and tail-mask types, and the operations used below (fz_load, ...)
 *
 * Layout idea: every vector runs along an axis we can pad, so any D and Dv run at full vector width.
 *   forward   vectors along the query rows of a block (Qᵀ packed once per query block): scores are kept
 *             transposed, Sᵀ (keys, queries), so the online-softmax max and sum are vertical (lane-wise)
 *             and the output accumulator is Oᵀ (Dv, queries) with a per-lane rescale.
 *   backward  vectors along the keys of a block (Kᵀ, Vᵀ packed once per key block): P, dS (queries, keys)
 *             and the accumulators dKᵀ, dVᵀ (D or Dv, keys); dQ runs along D with masked tails.
 * Every product is one micro-kernel, C (M,N) [=|+=|=α·C+] A (M,K) B (K,N): A read by broadcast through
 * any two strides, B by vectors along N, C in registers (FZ_RTMAX x FZ_NVMAX vectors).
 *
 * Softmax: scores stay in natural units and exp(x - m) is computed as exp2((x - m)·log2 e) by the path's
 * own polynomial; subtracting first keeps the max's exponent exactly 0 at any logit size (scaling the
 * scores by log2 e up front would save a multiply but round m, and saturate biases past 2.4e38). The
 * forward saves per row (attn.h's row statistics) the largest score m and log l, l = Σ exp(x - m); the
 * backward forms P = exp(x - m - log l) (with x - m clamped at 0). For that to stay exact at any logit
 * size, every route computes a score the one canonical way: x = Σ_d (q_d·scale)·k_d (q_d·scale rounded
 * first) summed by FMA in order d = 0 .. D-1 from 0, then the bias; and m is one of those x bit for bit
 * (the by-rows forward sums its scores another way for speed, so it recomputes the canonical score of its
 * row's argmax at the end). The max then gives exp(0 - log l) = 1/l in both passes, and the other weights
 * differ from the forward's only by each score's rounding.
 *
 * Keys a row does not see (masked, or weight 0) never touch its results even when their K or V rows hold
 * NaN or Inf (0·NaN would): blocks whose K or V rows are not all finite take careful loops that skip them.
 *
 * Threads: a pass is run in stages (the forward one, the backward three per round of (b, kv head)
 * pairs); in a stage, work items go to threads by the caller's attn__part (a shared counter under OpenMP,
 * a static split for a caller's pool: sdpa.c drives both). Each item's arithmetic is fixed, and the
 * backward's dQ sums are formed per key chunk (a split of the keys that depends on the shape only) and
 * reduced in chunk order, so any thread count gives bitwise-identical results.
 *   forward   items (b, h, block of 64 query rows on AVX-512), head by head, longest first; with
 *             T <= FZ_ROW_R (decoding), items (b, kv head, pack of FZ_ROW_R of the group's rows) instead.
 *   backward  items (b, kv head, key chunk): the item owns its keys' dK, dV rows (no races) and writes
 *             its dQ contributions to its chunk's slot; a fixed-order sum of the slots adds them to dq.
 *
 * Memory (the workspace; no call allocates, nothing grows with T·S):
 *   forward   per thread (D + Dv + FZ_BC)·BR floats + a few BR vectors           (BR = FZ_NVMAX·FZ_VW)
 *   backward  per thread (2·D + 2·Dv + 2·FZ_QB)·KBC floats + a few FZ_QB vectors (KBC = FZ_NVMAX·FZ_VW),
 *             plus, shared, the dQ slots of one round: nchunk·G·T·D floats per (b, kv head) pair, with
 *             as many pairs per round as fit in about 32 MiB (at least one; nchunk <= 8, fewer if the
 *             slots of one pair would pass 256 MiB), and rowsum(dout ∘ out) per query row of the round;
 *             small heads: per thread (D + Dv)·4·FZ_VW + (6·FZ_VW + 2·D)·FZ_QB floats + a few FZ_QB
 *             vectors, no slots.
 */
#ifndef FZ_TABLE
#error "fused_impl.h: define the vector operations and FZ_TABLE before including"
#endif

#include <float.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define FZ_INLINE static inline __attribute__((always_inline))
#define FZ_UNROLL _Pragma("GCC unroll 8")
#else
#define FZ_INLINE static inline
#define FZ_UNROLL
#endif

#define FZ_LOG2E 1.44269504088896340736f
#define FZ_NCHUNK 8                       /* backward: at most this many key chunks per (b, kv head) */

/* A score x plus an additive bias b: -inf stays -inf (a masked key), a bias of -inf excludes, +Inf and NaN
 * propagate (the row becomes NaN, as on the reference path and in PyTorch), and a sum of finite values
 * past FLT_MAX saturates there (inf - inf would be NaN). So a bias of +3e38 takes all the weight and
 * -FLT_MAX on every key (PyTorch's finfo.min, a common mask value) gives uniform weights. */
static inline float fz_add_bias(float x, float b) {
    if (x == -INFINITY || b == -INFINITY) return -INFINITY;
    const float y = x + b;
    if (x - x != 0.0f || b - b != 0.0f) return y;     /* +Inf or NaN in: +Inf or NaN out */
    return y > FLT_MAX ? FLT_MAX : y < -FLT_MAX ? -FLT_MAX : y;
}
#define FZ_ALIGN 64

/* a·b + c rounded as one lane of fz_fma (a scalar FMA on the SIMD paths, as the scalar path's vectors) */
FZ_INLINE float fz_fma1(float a, float b, float c) {
    float t[FZ_VW];
    fz_store(t, fz_fma(fz_set1(a), fz_set1(b), fz_set1(c)));
    return t[0];
}

/* The canonical score of query row qs (already times scale) and key row k: Σ_d qs_d·k_d in order from 0. */
static float fz_score1(const float *qs, const float *k, int D) {
    float acc = 0.0f;
    for (int x = 0; x < D; x++) acc = fz_fma1(qs[x], k[x], acc);
    return acc;
}

/* Are n rows of w floats (rt apart) all finite? (x·0 is 0 for finite x, NaN for NaN and ±Inf.) */
static int fz_rows_finite(const float *a, int64_t rt, int n, int w) {
    const int nv = w / FZ_VW, tail = w - nv * FZ_VW;
    const fz_m tm = fz_tailmask(tail);
    fz_v acc = fz_zero();
    const fz_v z = fz_zero();
    for (int j = 0; j < n; j++) {
        const float *r = a + (int64_t)j * rt;
        for (int v = 0; v < nv; v++) acc = fz_add(acc, fz_mul(fz_load(r + v * FZ_VW), z));
        if (tail) acc = fz_add(acc, fz_mul(fz_loadm(r + nv * FZ_VW, tm), z));
    }
    const float s = fz_hsum(acc);
    return s == 0.0f;
}

/* exp(x - m) = exp2((x - m)·log2 e): the difference first, so x = m gives exactly 1 */
FZ_INLINE fz_v fz_exp_rel(fz_v x, fz_v m) {
    return fz_exp2(fz_mul(fz_sub(x, m), fz_set1(FZ_LOG2E)));
}
static inline float fz_exp_rel1(float x, float m) { return exp2f((x - m) * FZ_LOG2E); }

/* The backward's weight exp(x - m - log l) with x - m clamped at 0, given L2 = log2 l: written
 * exp2(-(max(0, m - x)·log2 e + L2)) (max returns its second operand when one is NaN, so a NaN score
 * stays NaN) */
FZ_INLINE fz_v fz_weight(fz_v x, fz_v m, fz_v L2) {
    const fz_v z = fz_zero();
    return fz_exp2(fz_sub(z, fz_fma(fz_max(z, fz_sub(m, x)), fz_set1(FZ_LOG2E), L2)));
}

/* The backward's weights of a row whose max m is NaN or +Inf (a score was), from its scores p (nb keys):
 * 0 for the keys from lim on, the masked ones (score -inf) and those infinitely below m, as exp(x - m)
 * gives; NaN for the others. */
static void fz_nan_row(float *p, int nb, int lim, float m) {
    for (int j = 0; j < nb; j++) p[j] = j >= lim || p[j] == -INFINITY || p[j] - m == -INFINITY ? 0.0f : NAN;
}

/* The row statistics of a row with running max m and sum l: (m, log l); a row that saw no key has l = 0
 * and gets (-inf, 0). NaN stays NaN. */
static void fz_put_stats(float *st, float m, float l) {
    st[0] = l == 0.0f ? -INFINITY : m;
    st[1] = l == 0.0f ? 0.0f : logf(l);
}

/* ---------------------------------------------------------------------------------------------------
 * The mask parts read key by key, of one row (b, h, t): the soft cap (first, on the scaled score), the
 * boolean mask, the bias, the sliding window's lower edge (keys nsink <= s < low hidden) and ALiBi, added
 * after the bias as attn__alibi computes it.
 * The key limit (valid lengths, causality, the window's right edge) is applied apart, by vectors. A sink
 * logit starts the row's online softmax at (m, l) = (z_h, 1): exp(z_h - m) is then in l whatever m becomes.
 */
typedef struct fz_rowm {
    const uint8_t *al;       /* (S) or NULL */
    const float *bi;         /* (S) or NULL */
    const float *slope;      /* the head's ALiBi slope, or NULL */
    float cap;               /* soft cap, 0 = none */
    const uint8_t *bmr;      /* the block map's row (⌈S/bs⌉), or NULL */
    int bs;                  /* its block size */
    int low, nsink, ta;      /* window edge, sinks; ta = t + (S - T) */
} fz_rowm;

static fz_rowm fz_rowm_of(const attn_sdpa_desc *d, int b, int h, int t) {
    const attn_mask *mk = &d->mask;
    fz_rowm r;
    r.al = attn__allow_row(mk, b, h, t);
    r.bi = attn__bias_row(mk, b, h, t);
    r.slope = mk->alibi_slopes ? mk->alibi_slopes + h : NULL;
    r.cap = mk->softcap;
    r.bmr = attn__block_row(mk, b, h, t);
    r.bs = mk->block_size;
    r.low = attn__key_low(mk, t, d->T, d->S);
    r.nsink = attn__key_sinks(mk, d->S);
    r.ta = t + (d->S - d->T);
    return r;
}

/* Score x of key s after the row's key-by-key parts: -inf when hidden, else plus bias and ALiBi. */
FZ_INLINE float fz_rowm_apply(const fz_rowm *r, float x, int s) {
    if (attn__window_hides(s, r->nsink, r->low) || (r->al && !r->al[s]) || (r->bmr && !r->bmr[s / r->bs]))
        return -INFINITY;
    if (r->cap > 0.0f) x = r->cap * tanhf(x / r->cap);
    if (r->bi) x = fz_add_bias(x, r->bi[s]);
    if (r->slope) x = fz_add_bias(x, *r->slope * (float)((int64_t)s - r->ta));
    return x;
}

/* Does some key of [j0, j0 + nb) need fz_rowm_apply for this row? */
static int fz_rowm_touches(const fz_rowm *r, int j0, int nb) {
    return r->al || r->bi || r->slope || r->cap > 0.0f || r->bmr || (j0 < r->low && j0 + nb > r->nsink);
}

/* Parts every score needs key by key (the window alone does not: it is handled by key ranges) */
static int fz_elementwise(const attn_mask *mk) {
    return mk->allow || mk->bias || mk->alibi_slopes || mk->softcap > 0.0f;
}

/* Block maps: does one of the n map rows mr list key block kb? */
static int fz_map_any(const uint8_t *const *mr, int n, int64_t kb) {
    for (int i = 0; i < n; i++)
        if (mr[i][kb]) return 1;
    return 0;
}

/* Moves *j0 up to the first key (below lim) of a block one of the map rows lists; 1 when it moved. */
static int fz_map_skip(const uint8_t *const *mr, int n, int bs, int *j0, int lim) {
    int64_t kb = *j0 / bs;
    int moved = 0;
    while (kb * bs < lim && !fz_map_any(mr, n, kb)) { kb++; moved = 1; }
    if (moved) *j0 = kb * bs < lim ? (int)(kb * bs) : lim;
    return moved;
}

/* nb cut so that [j0, j0 + nb) ends with the run of listed blocks it starts in */
static int fz_map_cut(const uint8_t *const *mr, int n, int bs, int j0, int nb) {
    int64_t kb = j0 / bs;
    while ((kb + 1) * bs < (int64_t)j0 + nb && fz_map_any(mr, n, kb + 1)) kb++;
    return (kb + 1) * bs < (int64_t)j0 + nb ? (int)((kb + 1) * bs - j0) : nb;
}

/* The distinct map rows of query rows t0 .. t0+nr of (b, h) into mr; their count. */
static int fz_map_rows(const attn_sdpa_desc *d, int b, int h, int t0, int nr, const uint8_t **mr) {
    const int bs = d->mask.block_size;
    int n = 0;
    for (int r = t0 / bs; r <= (t0 + nr - 1) / bs; r++) mr[n++] = attn__block_row(&d->mask, b, h, r * bs);
    return n;
}

/* The soft cap's derivative at scaled score x: 1 - tanh²(x / cap) */
static inline float fz_cap_grad(float cap, float x) {
    const float th = tanhf(x / cap);
    return 1.0f - th * th;
}

/* The sink logit of head h, or -inf */
static float fz_sink(const attn_sdpa_desc *d, int h) {
    return d->mask.sink_logits ? d->mask.sink_logits[h] : -INFINITY;
}

/* ---------------------------------------------------------------------------------------------------
 * The micro-kernel. C (RT rows, NV vectors) with row stride ldc:
 *   mode FZ_SET   C  = A·B
 *   mode FZ_ACC   C += A·B
 *   mode FZ_SCALE C  = alpha ∘ C + A·B     (alpha: one value per column, NV vectors)
 * A (RT,K): element (r,k) at A[r·ar + k·ak], broadcast.  B (K, NV·FZ_VW): row k at B + k·ldb.
 * The last vector of B and C holds `tail` valid lanes (masked loads and stores).
 * cmax, when given (full vectors only): cmax[v] = max(cmax[v], max over the RT rows of the result). */
enum { FZ_SET = 0, FZ_ACC = 1, FZ_SCALE = 2 };

#define FZ_MK_ARGS float *C, int64_t ldc, const float *A, int64_t ar, int64_t ak, const float *B, \
                   int64_t ldb, int K, int mode, const float *alpha, int tail, float *cmax

FZ_INLINE void fz_mk(const int RT, const int NV, FZ_MK_ARGS) {
    fz_v acc[6][4];                      /* RT <= FZ_RTMAX <= 6, NV <= FZ_NVMAX <= 4 */
    const fz_m tm = fz_tailmask(tail);
    if (mode == FZ_SET) {
        FZ_UNROLL for (int r = 0; r < RT; r++)
            FZ_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = fz_zero();
    } else {
        FZ_UNROLL for (int r = 0; r < RT; r++)
            FZ_UNROLL for (int v = 0; v < NV; v++) {
                const float *c = C + r * ldc + v * FZ_VW;
                acc[r][v] = v == NV - 1 ? fz_loadm(c, tm) : fz_load(c);
                if (mode == FZ_SCALE) acc[r][v] = fz_mul(acc[r][v], fz_load(alpha + v * FZ_VW));
            }
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        const float *a = A + k * ak;
        fz_v bv[4];
        FZ_UNROLL for (int v = 0; v < NV; v++)
            bv[v] = v == NV - 1 ? fz_loadm(b + v * FZ_VW, tm) : fz_load(b + v * FZ_VW);
        FZ_UNROLL for (int r = 0; r < RT; r++) {
            const fz_v x = fz_set1(a[r * ar]);
            FZ_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = fz_fma(x, bv[v], acc[r][v]);
        }
    }
    FZ_UNROLL for (int r = 0; r < RT; r++)
        FZ_UNROLL for (int v = 0; v < NV; v++) {
            float *c = C + r * ldc + v * FZ_VW;
            if (v == NV - 1) fz_storem(c, acc[r][v], tm);
            else fz_store(c, acc[r][v]);
        }
    if (cmax)
        FZ_UNROLL for (int v = 0; v < NV; v++) {
            fz_v mx = fz_load(cmax + v * FZ_VW);
            FZ_UNROLL for (int r = 0; r < RT; r++) mx = fz_max(mx, acc[r][v]);
            fz_store(cmax + v * FZ_VW, mx);
        }
}

typedef void (*fz_mk_fn)(FZ_MK_ARGS);
#define FZ_MK_DEF(RT, NV) \
    static void fz_mk_##RT##_##NV(FZ_MK_ARGS) {                                             \
        fz_mk(RT, NV, C, ldc, A, ar, ak, B, ldb, K, mode, alpha, tail, cmax);               \
    }
#define FZ_MK_ROW(RT) FZ_MK_DEF(RT, 1) FZ_MK_DEF(RT, 2) FZ_MK_DEF(RT, 3) FZ_MK_DEF(RT, 4)
FZ_MK_ROW(1) FZ_MK_ROW(2) FZ_MK_ROW(3) FZ_MK_ROW(4) FZ_MK_ROW(5) FZ_MK_ROW(6)
#define FZ_MK_PTR(RT) {fz_mk_##RT##_1, fz_mk_##RT##_2, fz_mk_##RT##_3, fz_mk_##RT##_4}
static const fz_mk_fn fz_mk_tab[6][4] = {FZ_MK_PTR(1), FZ_MK_PTR(2), FZ_MK_PTR(3),
                                         FZ_MK_PTR(4), FZ_MK_PTR(5), FZ_MK_PTR(6)};

/* C (M,N) [=|+=|=α·C+] A (M,K) B (K,N), tiled over the micro-kernel. N need not be a multiple of the
 * vector width (masked tail). cmax (N), when given: column maxima of C folded in (N <= FZ_NVMAX·FZ_VW,
 * a multiple of FZ_VW). */
static void fz_gemm_max(int M, int N, float *C, int64_t ldc, const float *A, int64_t ar, int64_t ak,
                        const float *B, int64_t ldb, int K, int mode, const float *alpha, float *cmax) {
    for (int c0 = 0; c0 < N; c0 += FZ_NVMAX * FZ_VW) {
        int nvec = (N - c0 + FZ_VW - 1) / FZ_VW;
        if (nvec > FZ_NVMAX) nvec = FZ_NVMAX;
        const int tail = N - c0 - (nvec - 1) * FZ_VW < FZ_VW ? N - c0 - (nvec - 1) * FZ_VW : FZ_VW;
        for (int r0 = 0; r0 < M; r0 += FZ_RTMAX) {
            const int rt = M - r0 < FZ_RTMAX ? M - r0 : FZ_RTMAX;
            fz_mk_tab[rt - 1][nvec - 1](C + r0 * ldc + c0, ldc, A + r0 * ar, ar, ak, B + c0, ldb, K, mode,
                                        alpha ? alpha + c0 : NULL, tail, cmax ? cmax + c0 : NULL);
        }
    }
}

static void fz_gemm(int M, int N, float *C, int64_t ldc, const float *A, int64_t ar, int64_t ak,
                    const float *B, int64_t ldb, int K, int mode, const float *alpha) {
    fz_gemm_max(M, N, C, ldc, A, ar, ak, B, ldb, K, mode, alpha, NULL);
}

/* Size arithmetic saturates at SIZE_MAX, so a size that does not fit reaches sdpa.c as too large
 * (ATTN_ERR_SIZE) instead of wrapping to a small number. */
static size_t fz_size_mul(size_t a, size_t b) {
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}
static size_t fz_size_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
static size_t fz_round(size_t n) { return n > SIZE_MAX - FZ_ALIGN ? SIZE_MAX : (n + FZ_ALIGN - 1) & ~(size_t)(FZ_ALIGN - 1); }

/* ===================================================================================================
 * Forward.
 * Per thread: Qᵀ (D,BR) scaled by scale·log2e, Oᵀ (Dv,BR), Sᵀ (BC,BR), and per-query vectors: running max
 * m, running sum l, the block's max, the rescale alpha, the key limits.
 */
#define FZ_BR (FZ_NVMAX * FZ_VW)          /* query rows per forward block */
#define FZ_KBC (FZ_NVMAX * FZ_VW)         /* keys per backward block */

static size_t fz_fwd_thread_bytes(const attn_sdpa_desc *d) {
    return fz_round(sizeof(float) * (size_t)d->D * FZ_BR) + fz_round(sizeof(float) * (size_t)d->Dv * FZ_BR) +
           fz_round(sizeof(float) * (size_t)FZ_BC * FZ_BR) + 6 * fz_round(sizeof(float) * FZ_BR);
}

typedef struct fz_fwd_ctx {
    const attn_sdpa_desc *d;
    float *out, *stats;
    float *scores;              /* NULL, or (B,H,T,S): the block path leaves its canonical scores there */
    const float *q, *k, *v;
    char *work;
    size_t thread_bytes;
} fz_fwd_ctx;

/* The online-softmax step of one key block, over the NV query vectors of Sᵀ (nb rows, stride BR): with
 * bm the block's max (already folded with the running max m), alpha = exp(m - bm), Sᵀ = exp(Sᵀ - bm),
 * l = alpha·l + Σ_j Sᵀ, m = bm. Rows go in order, the vectors of a row together (contiguous). */
FZ_INLINE void fz_softmax_block(const int NV, float *St, int BR, int nb, float *m, float *l, const float *bm,
                                float *alpha) {
    fz_v bs[FZ_NVMAX], s0[FZ_NVMAX];
    FZ_UNROLL for (int v = 0; v < FZ_NVMAX; v++) bs[v] = s0[v] = fz_zero();
    FZ_UNROLL for (int v = 0; v < NV; v++) {
        /* a lane with no key yet keeps max -inf: subtract -FLT_MAX instead so exp2 gives 0, not NaN */
        bs[v] = fz_max(fz_load(bm + v * FZ_VW), fz_set1(-FLT_MAX));
        s0[v] = fz_zero();
    }
    for (int j = 0; j < nb; j++) {
        float *x = St + j * BR;
        FZ_UNROLL for (int v = 0; v < NV; v++) {
            const fz_v p = fz_exp_rel(fz_load(x + v * FZ_VW), bs[v]);
            s0[v] = fz_add(s0[v], p);
            fz_store(x + v * FZ_VW, p);
        }
    }
    FZ_UNROLL for (int v = 0; v < NV; v++) {
        const fz_v al = fz_exp_rel(fz_load(m + v * FZ_VW), bs[v]);
        fz_store(l + v * FZ_VW, fz_fma(fz_load(l + v * FZ_VW), al, s0[v]));
        fz_store(m + v * FZ_VW, fz_load(bm + v * FZ_VW));
        fz_store(alpha + v * FZ_VW, al);
    }
}

/* Weights asked for: the block path leaves each row's masked canonical scores x (-inf where masked or
 * skipped) in the weights buffer xs (nr rows, S apart), up to the block's largest key limit, and the
 * weights stage turns them into P in place (fz_weights_scored). */
static void fz_fill_scores(float *xs, int S, int nr, int j0, int j1) {
    if (j1 > j0)
        for (int i = 0; i < nr; i++)
            for (int j = j0; j < j1; j++) xs[(int64_t)i * S + j] = -INFINITY;
}

/* Columns i0 .. i0 + FZ_VW - 1 of rows r0 .. r0 + FZ_VW - 1 of At (rows BR apart; rows from n on read as
 * 0), transposed in registers: v[i] lane x = At[r0 + x][i0 + i]. */
static inline void fz_cols_t(fz_v v[FZ_VW], const float *At, int BR, int r0, int n, int i0) {
    for (int x = 0; x < FZ_VW; x++) v[x] = r0 + x < n ? fz_load(At + (int64_t)(r0 + x) * BR + i0) : fz_zero();
    fz_transpose(v);
}

/* Sᵀ (nb keys from j0, rows BR apart; nr query columns) into rows of xs: FZ_VW keys by FZ_VW rows of Sᵀ
 * (in cache) transposed in registers, so the writes run along the rows a vector at a time. */
static void fz_put_scores(float *xs, int S, int nr, const float *St, int BR, int j0, int nb) {
    for (int i0 = 0; i0 < nr; i0 += FZ_VW)
        for (int j = 0; j < nb; j += FZ_VW) {
            fz_v v[FZ_VW];
            fz_cols_t(v, St, BR, j, nb, i0);
            const fz_m m = fz_tailmask(nb - j);
            for (int i = 0; i < FZ_VW && i0 + i < nr; i++) fz_storem(xs + (int64_t)(i0 + i) * S + j0 + j, v[i], m);
        }
}

/* At (n, BR), the n rows of a (rows rt apart, w wide) transposed and times scale, zero past n to whole
 * vectors: FZ_VW rows by FZ_VW columns at a time, each row read along its length, multiplied, then
 * transposed in registers (fz_transpose; 32-bit gathers did it before, and cost more on the CPUs measured:
 * DESIGN "AVX512-BF16 small shapes"). Inlined: as a function of its own (called once per block) it cost
 * the translators' 10-row blocks a few percent of their forward in its call (the block's live vectors
 * saved around it, a vzeroupper; DESIGN "Small-shape attention"). */
FZ_INLINE void fz_pack_t(float *at, int BR, const float *a, int64_t rt, int n, int w, float scale) {
    const int nv = (n + FZ_VW - 1) / FZ_VW;
    const fz_v sc = fz_set1(scale);
    for (int u = 0; u < nv; u++)
        for (int x0 = 0; x0 < w; x0 += FZ_VW) {
            const fz_m m = fz_tailmask(w - x0);
            fz_v v[FZ_VW];
            for (int i = 0; i < FZ_VW; i++) {
                const int r = u * FZ_VW + i;
                v[i] = r < n ? fz_mul(fz_loadm(a + (int64_t)r * rt + x0, m), sc) : fz_zero();
            }
            fz_transpose(v);
            for (int x = 0; x < FZ_VW && x0 + x < w; x++) fz_store(at + (int64_t)(x0 + x) * BR + u * FZ_VW, v[x]);
        }
}

/* out's rows t0 .. t0 + nr of (b, h) = the columns of Ot (Dv, BR) / l (0 where l is 0): FZ_VW rows by
 * FZ_VW dims at a time, transposed in registers, then multiplied. */
static void fz_put_out(const attn_sdpa_desc *d, float *out, int b, int h, int t0, int nr, const float *Ot, int BR,
                       const float *l) {
    const int Dv = d->Dv;
    for (int i0 = 0; i0 < nr; i0 += FZ_VW)
        for (int x0 = 0; x0 < Dv; x0 += FZ_VW) {
            fz_v v[FZ_VW];
            fz_cols_t(v, Ot, BR, x0, Dv, i0);
            const fz_m m = fz_tailmask(Dv - x0);
            for (int i = 0; i < FZ_VW && i0 + i < nr; i++) {
                const float li = l[i0 + i];
                float *orow = out + b * d->out.b + h * d->out.h + (int64_t)(t0 + i0 + i) * d->out.t;   /* (Dv) */
                fz_storem(orow + x0, fz_mul(v[i], fz_set1(li > 0.0f ? 1.0f / li : 0.0f)), m);
            }
        }
}

/* One block of query rows (b, h, t0 .. t0+nr) against all the keys it may see. */
static void fz_fwd_block(const fz_fwd_ctx *cx, char *tw, int b, int h, int t0, int nr) {
    const attn_sdpa_desc *d = cx->d;
    const int H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv, G = H / d->Hkv, hk = h / G;
    const attn_mask *mk = &d->mask;
    const int nv = (nr + FZ_VW - 1) / FZ_VW, BR = nv * FZ_VW;   /* vectors and padded rows in use */

    float *Qt = (float *)tw;                                            /* (D,BR)  */
    float *Ot = (float *)(tw + fz_round(sizeof(float) * (size_t)D * FZ_BR));          /* (Dv,BR) */
    float *St = (float *)((char *)Ot + fz_round(sizeof(float) * (size_t)Dv * FZ_BR)); /* (BC,BR) */
    float *m = (float *)((char *)St + fz_round(sizeof(float) * (size_t)FZ_BC * FZ_BR)); /* (BR) each */
    float *l = m + FZ_BR, *bm = l + FZ_BR, *alpha = bm + FZ_BR;
    int32_t *lim = (int32_t *)(alpha + FZ_BR);                                          /* (BR) */
    int32_t *low = lim + FZ_BR;                                                         /* (BR) */

    const float *qb = cx->q + b * d->q.b + h * d->q.h + (int64_t)t0 * d->q.t;   /* (nr,D) rows q.t apart */
    const float *kb = cx->k + b * d->k.b + hk * d->k.h;                         /* (S,D)  */
    const float *vb = cx->v + b * d->v.b + hk * d->v.h;                         /* (S,Dv) */
    const int generic = fz_elementwise(mk);
    const int nsink = attn__key_sinks(mk, S);                   /* S without a window */

    /* pack Qᵀ scaled; key limits and window edges per row (padding rows copy the last row's) */
    fz_pack_t(Qt, BR, qb, d->q.t, nr, D, d->scale);
    for (int i = 0; i < BR; i++) {
        const int ii = i < nr ? i : nr - 1;
        lim[i] = attn__key_limit(mk, b, t0 + ii, T, S);
        low[i] = attn__key_low(mk, t0 + ii, T, S);
    }
    int minlim = S, maxlim = 0, minlow = S, maxlow = 0;
    for (int i = 0; i < BR; i++) {
        if (lim[i] < minlim) minlim = lim[i];
        if (lim[i] > maxlim) maxlim = lim[i];
        if (low[i] < minlow) minlow = low[i];
        if (low[i] > maxlow) maxlow = low[i];
    }
    const uint8_t *mr[FZ_BR + 1];           /* the block map's rows of these query rows */
    const int nmr = mk->block_map ? fz_map_rows(d, b, h, t0, nr, mr) : 0;
    const float z = fz_sink(d, h);          /* a sink logit starts every row at (m, l) = (z, 1) */
    for (int v = 0; v < nv; v++) {
        fz_store(m + v * FZ_VW, fz_set1(z));
        fz_store(l + v * FZ_VW, z == -INFINITY ? fz_zero() : fz_set1(1.0f));
    }
    memset(Ot, 0, sizeof(float) * (size_t)Dv * BR);
    int64_t counted = 0;
    float *xs = cx->scores ? cx->scores + (((int64_t)b * H + h) * T + t0) * S : NULL;   /* (nr,S) */
    int done = 0;                           /* scores written for keys 0 .. done-1 */

    /* stream over the key blocks the rows may see; blocks past every row's limit, and between the sinks
     * and every row's window, are skipped */
    for (int j0 = 0, nb = 0; j0 < maxlim; j0 += nb) {
        if (j0 >= nsink && j0 < minlow) {       /* jump over the keys no row's window reaches */
            j0 = minlow;
            nb = 0;
            continue;
        }
        if (nmr && fz_map_skip(mr, nmr, mk->block_size, &j0, maxlim)) {   /* blocks the map does not list */
            nb = 0;
            continue;
        }
        /* a block ends where the key limits start to differ across rows (causal diagonal, per-query
         * lengths), where the window's edges stop differing, at the sinks' end and at the end of the
         * listed map blocks, so the blocks before need no mask and at most the ones after do */
        nb = maxlim - j0 < FZ_BC ? maxlim - j0 : FZ_BC;
        if (j0 < minlim && j0 + nb > minlim) nb = minlim - j0;
        if (j0 < nsink && j0 + nb > nsink) nb = nsink - j0;
        if (j0 < maxlow && j0 + nb > maxlow) nb = maxlow - j0;
        if (nmr) nb = fz_map_cut(mr, nmr, mk->block_size, j0, nb);
        /* the window hides keys of the block from some row, or the rows span map rows that differ */
        const int lowcut = (j0 >= nsink && j0 < maxlow) || nmr > 1;
        counted += (int64_t)nb * nr;

        /* Sᵀ = K_blk Qᵀ (keys, queries); the column max comes with it when no mask
         * touches the block */
        const int plain = !generic && !lowcut && j0 + nb <= minlim;
        if (plain) memcpy(bm, m, sizeof(float) * BR);
        fz_gemm_max(nb, BR, St, BR, kb + (int64_t)j0 * d->k.t, d->k.t, 1, Qt, BR, D, FZ_SET, NULL,
                    plain ? bm : NULL);

        if (!plain) {
            /* masks: key limits (vector compare), then the key-by-key parts */
            if (j0 + nb > minlim)
                for (int j = (minlim > j0 ? minlim - j0 : 0); j < nb; j++)
                    for (int v = 0; v < nv; v++)
                        fz_store(St + j * BR + v * FZ_VW,
                                 fz_mask_lim(fz_load(St + j * BR + v * FZ_VW), lim + v * FZ_VW, j0 + j));
            if (generic || lowcut)
                for (int i = 0; i < BR; i++) {
                    const fz_rowm rw = fz_rowm_of(d, b, h, t0 + (i < nr ? i : nr - 1));
                    for (int j = 0; j < nb; j++) {
                        float *x = St + j * BR + i;
                        if (j0 + j < lim[i]) *x = fz_rowm_apply(&rw, *x, j0 + j);
                    }
                }
            memcpy(bm, m, sizeof(float) * BR);
            for (int j = 0; j < nb; j++)
                for (int v = 0; v < nv; v++)
                    fz_store(bm + v * FZ_VW, fz_max(fz_load(bm + v * FZ_VW), fz_load(St + j * BR + v * FZ_VW)));
        }

        if (xs) {                           /* the masked scores, transposed back; skipped keys: -inf */
            fz_fill_scores(xs, S, nr, done, j0);
            fz_put_scores(xs, S, nr, St, BR, j0, nb);
            done = j0 + nb;
        }

        /* online softmax: new running max, rescale factor, exponentials and their sum */
        if (nv == FZ_NVMAX) fz_softmax_block(FZ_NVMAX, St, BR, nb, m, l, bm, alpha);
        else fz_softmax_block(nv, St, BR, nb, m, l, bm, alpha);

        /* dropout on the weights that multiply V (the sum above is before dropout) */
        if (d->dropout > 0.0f) {
            const float keep_scale = 1.0f / (1.0f - d->dropout);
            for (int i = 0; i < nr; i++) {
                const uint64_t row = ((uint64_t)b * H + h) * T + (uint64_t)(t0 + i);
                for (int j = 0; j < nb; j++) {
                    float *x = St + j * BR + i;
                    *x = attn__dropout_keep(d->seed, row * S + (uint64_t)(j0 + j), d->dropout) ? *x * keep_scale
                                                                                             : 0.0f;
                }
            }
        }

        /* Oᵀ = alpha ∘ Oᵀ + V_blkᵀ P_blk; a masked block whose V rows are not all finite skips the zero
         * weights one by one */
        const float *vj = vb + (int64_t)j0 * d->v.t;
        if (plain || fz_rows_finite(vj, d->v.t, nb, Dv)) {
            fz_gemm(Dv, BR, Ot, BR, vj, 1, d->v.t, St, BR, nb, FZ_SCALE, alpha);
        } else {
            for (int x = 0; x < Dv; x++)
                for (int i = 0; i < BR; i++) Ot[x * BR + i] *= alpha[i];
            for (int j = 0; j < nb; j++)
                for (int i = 0; i < nr; i++) {
                    const float pj = St[j * BR + i];
                    if (pj != 0.0f)
                        for (int x = 0; x < Dv; x++) Ot[x * BR + i] += pj * vj[(int64_t)j * d->v.t + x];
                }
        }
    }

    if (xs) fz_fill_scores(xs, S, nr, done, maxlim);

    /* out = Oᵀ / l, transposed back; the row statistics; rows that saw no key: zeros and (-inf, 0) */
    fz_put_out(d, cx->out, b, h, t0, nr, Ot, BR, l);
    for (int i = 0; i < nr; i++) fz_put_stats(cx->stats + 2 * (((int64_t)b * H + h) * T + t0 + i), m[i], l[i]);
    attn__count_scores(ATTN_PASS_FORWARD, counted);
}

/* ---------------------------------------------------------------------------------------------------
 * Forward by rows, for few query rows (decoding: T = 1 or a few, or the short last block of a long T).
 * The block path above runs its vectors along the query rows, so a lone row would use one lane of FZ_VW;
 * here the vectors run along D for the scores (one horizontal sum per key and row) and along Dv for the
 * output. Up to FZ_ROW_R rows that share K and V (the heads of one grouped-query group, or the rows of
 * one head) go together, so each K and V row is read once for all of them. Same online softmax in base 2,
 * over key blocks of FZ_ROW_NB keys whose scores live in the block path's Sᵀ buffer (the workspace is the
 * same). A row's arithmetic depends on the shape only, not on the thread count.
 */
#define FZ_ROW_R (FZ_VW >= 16 ? 4 : 2)          /* rows that share one pass over K and V */
#define FZ_ROW_MAX FZ_ROW_R                     /* blocks of at most this many rows go by rows: past it, one
                                                   pass of the block path beat two passes here (measured) */
#define FZ_ROW_NB (FZ_BC * FZ_BR / FZ_ROW_R)    /* keys per block and row (a multiple of FZ_VW) */
_Static_assert(FZ_NVMAX == 4, "fz_rows_pv dispatches on 1..4 vectors");

/* s[r·ls + j + u] = k_{j+u} · q_r for R rows (q_r at q + r·lq, padded with zeros to whole vectors) and the
 * KU keys from j (rows of k, kt apart; the last vector of each read with a masked tail). */
FZ_INLINE void fz_rows_scores_at(const int R, const int KU, float *s, int ls, const float *k, int64_t kt,
                                 const float *q, int lq, int nv, int tail, fz_m tm, int j) {
    fz_v acc[4][FZ_ROW_R];
    FZ_UNROLL for (int u = 0; u < 4; u++)
        FZ_UNROLL for (int r = 0; r < FZ_ROW_R; r++) acc[u][r] = fz_zero();
    for (int v = 0; v < nv + (tail > 0); v++) {
        fz_v x[4];
        FZ_UNROLL for (int u = 0; u < KU; u++) {
            const float *kr = k + (int64_t)(j + u) * kt + v * FZ_VW;
            x[u] = v < nv ? fz_load(kr) : fz_loadm(kr, tm);
        }
        FZ_UNROLL for (int r = 0; r < R; r++) {
            const fz_v qv = fz_load(q + r * lq + v * FZ_VW);
            FZ_UNROLL for (int u = 0; u < KU; u++) acc[u][r] = fz_fma(x[u], qv, acc[u][r]);
        }
    }
    FZ_UNROLL for (int u = 0; u < KU; u++)
        FZ_UNROLL for (int r = 0; r < R; r++) s[r * ls + j + u] = fz_hsum(acc[u][r]);
}

/* The scores of R rows against nb keys, KU keys at a time (independent FMA chains), then one by one. */
FZ_INLINE void fz_rows_scores(const int R, const int KU, float *s, int ls, const float *k, int64_t kt,
                              const float *q, int lq, int D, int nb) {
    const int nv = D / FZ_VW, tail = D - nv * FZ_VW;
    const fz_m tm = fz_tailmask(tail);
    int j = 0;
    for (; j + KU <= nb; j += KU) fz_rows_scores_at(R, KU, s, ls, k, kt, q, lq, nv, tail, tm, j);
    for (; j < nb; j++) fz_rows_scores_at(R, 1, s, ls, k, kt, q, lq, nv, tail, tm, j);
}

/* o_r (NV vectors, the last `tail` lanes wide) = alpha_r·o_r + Σ_j p_r[j]·v_j for R rows (o_r at o + r·lo,
 * p_r at p + r·lp) over nb rows of v (vt apart): each v row is loaded once for all R rows; one row alone
 * takes two keys at a time into two sets of accumulators (two independent FMA chains). */
FZ_INLINE void fz_rows_pv_chunk(const int R, const int NV, float *o, int lo, const float *alpha, const float *p,
                                int lp, const float *v, int64_t vt, int nb, int tail) {
    const int KS = R == 1 ? 2 : 1;
    const fz_m tm = fz_tailmask(tail);
    fz_v acc[2][FZ_ROW_R][FZ_NVMAX];
    FZ_UNROLL for (int r = 0; r < R; r++)
        FZ_UNROLL for (int u = 0; u < NV; u++) {
            const float *orow = o + r * lo + u * FZ_VW;
            acc[0][r][u] = fz_mul(u == NV - 1 ? fz_loadm(orow, tm) : fz_load(orow), fz_set1(alpha[r]));
            if (KS == 2) acc[1][r][u] = fz_zero();
        }
    int j = 0;
    for (; j + KS <= nb; j += KS)
        FZ_UNROLL for (int w = 0; w < KS; w++) {
            const float *vr = v + (int64_t)(j + w) * vt;
            fz_v x[FZ_NVMAX];
            FZ_UNROLL for (int u = 0; u < NV; u++) x[u] = u == NV - 1 ? fz_loadm(vr + u * FZ_VW, tm) : fz_load(vr + u * FZ_VW);
            FZ_UNROLL for (int r = 0; r < R; r++) {
                const fz_v pr = fz_set1(p[r * lp + j + w]);
                FZ_UNROLL for (int u = 0; u < NV; u++) acc[w][r][u] = fz_fma(pr, x[u], acc[w][r][u]);
            }
        }
    if (j < nb) {                                       /* KS = 2 and nb odd: the last key */
        const float *vr = v + (int64_t)j * vt;
        FZ_UNROLL for (int u = 0; u < NV; u++) {
            const fz_v x = u == NV - 1 ? fz_loadm(vr + u * FZ_VW, tm) : fz_load(vr + u * FZ_VW);
            acc[0][0][u] = fz_fma(fz_set1(p[j]), x, acc[0][0][u]);
        }
    }
    FZ_UNROLL for (int r = 0; r < R; r++)
        FZ_UNROLL for (int u = 0; u < NV; u++) {
            const fz_v y = KS == 2 ? fz_add(acc[0][r][u], acc[1][r][u]) : acc[0][r][u];
            if (u == NV - 1) fz_storem(o + r * lo + u * FZ_VW, y, tm);
            else fz_store(o + r * lo + u * FZ_VW, y);
        }
}

/* o_r (Dv) = alpha_r·o_r + Σ_j p_r[j]·v_j, in chunks of FZ_NVMAX vectors. */
FZ_INLINE void fz_rows_pv(const int R, float *o, int lo, const float *alpha, const float *p, int lp, const float *v,
                          int64_t vt, int Dv, int nb) {
    for (int c0 = 0; c0 < Dv; c0 += FZ_NVMAX * FZ_VW) {
        const int n = Dv - c0 < FZ_NVMAX * FZ_VW ? Dv - c0 : FZ_NVMAX * FZ_VW;
        const int nv = (n + FZ_VW - 1) / FZ_VW, tail = n - (nv - 1) * FZ_VW;
        switch (nv) {                      /* the register count must be a constant */
        case 1: fz_rows_pv_chunk(R, 1, o + c0, lo, alpha, p, lp, v + c0, vt, nb, tail); break;
        case 2: fz_rows_pv_chunk(R, 2, o + c0, lo, alpha, p, lp, v + c0, vt, nb, tail); break;
        case 3: fz_rows_pv_chunk(R, 3, o + c0, lo, alpha, p, lp, v + c0, vt, nb, tail); break;
        default: fz_rows_pv_chunk(R, FZ_NVMAX, o + c0, lo, alpha, p, lp, v + c0, vt, nb, tail); break;
        }
    }
}

/* R query rows (b, hs[r], ts[r]) of one kv head hk against all the keys they may see. */
FZ_INLINE void fz_fwd_rows_r(const int R, const fz_fwd_ctx *cx, char *tw, int b, int hk, const int *hs,
                             const int *ts) {
    const attn_sdpa_desc *d = cx->d;
    const int H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv;
    const int Dp = (D + FZ_VW - 1) / FZ_VW * FZ_VW;
    const attn_mask *mk = &d->mask;
    float *q = (float *)tw;                                                             /* R x Dp */
    float *o = (float *)(tw + fz_round(sizeof(float) * (size_t)D * FZ_BR));            /* R x Dv */
    float *s = (float *)((char *)o + fz_round(sizeof(float) * (size_t)Dv * FZ_BR));   /* R x FZ_ROW_NB */
    const float *kb = cx->k + b * d->k.b + hk * d->k.h;
    const float *vb = cx->v + b * d->v.b + hk * d->v.h;
    int lim[FZ_ROW_R], maxlim = 0, minlow = S;
    fz_rowm rw[FZ_ROW_R];
    const uint8_t *mr[FZ_ROW_R];        /* the rows' block map rows */
    const int nsink = attn__key_sinks(mk, S), generic = fz_elementwise(mk);
    uint64_t row[FZ_ROW_R];
    float m[FZ_ROW_R], l[FZ_ROW_R], alpha[FZ_ROW_R];
    int jm[FZ_ROW_R];                   /* the key of each row's running max (for its canonical score) */
    for (int r = 0; r < R; r++) {
        const float *qr = cx->q + b * d->q.b + hs[r] * d->q.h + (int64_t)ts[r] * d->q.t;
        for (int x = 0; x < Dp; x++) q[r * Dp + x] = x < D ? qr[x] * d->scale : 0.0f;
        lim[r] = attn__key_limit(mk, b, ts[r], T, S);
        if (lim[r] > maxlim) maxlim = lim[r];
        rw[r] = fz_rowm_of(d, b, hs[r], ts[r]);
        if (rw[r].low < minlow) minlow = rw[r].low;
        mr[r] = rw[r].bmr;
        row[r] = ((uint64_t)b * H + hs[r]) * T + (uint64_t)ts[r];
        m[r] = fz_sink(d, hs[r]);       /* a sink logit starts the row at (z, 1) */
        l[r] = m[r] == -INFINITY ? 0.0f : 1.0f;
        jm[r] = -1;
    }
    memset(o, 0, sizeof(float) * (size_t)R * Dv);
    int64_t counted = 0;

    for (int j0 = 0, nb = 0; j0 < maxlim; j0 += nb) {
        if (j0 >= nsink && j0 < minlow) {       /* keys no row's window reaches */
            j0 = minlow;
            nb = 0;
            continue;
        }
        if (mk->block_map && fz_map_skip(mr, R, mk->block_size, &j0, maxlim)) {   /* unlisted blocks */
            nb = 0;
            continue;
        }
        nb = maxlim - j0 < FZ_ROW_NB ? maxlim - j0 : FZ_ROW_NB;
        if (j0 < nsink && j0 + nb > nsink) nb = nsink - j0;
        if (mk->block_map) nb = fz_map_cut(mr, R, mk->block_size, j0, nb);
        const int nfull = nb / FZ_VW * FZ_VW;
        counted += (int64_t)nb * R;
        if (R == 1) fz_rows_scores(1, 4, s, FZ_ROW_NB, kb + (int64_t)j0 * d->k.t, d->k.t, q, Dp, D, nb);
        else fz_rows_scores(R, 2, s, FZ_ROW_NB, kb + (int64_t)j0 * d->k.t, d->k.t, q, Dp, D, nb);
        int masked = 0;                 /* does some row of the pack not see some key of the block? */
        for (int r = 0; r < R; r++) {
            float *sr = s + r * FZ_ROW_NB;
            /* masks: the row's key limit, then the key-by-key parts */
            const int touch = generic || fz_rowm_touches(&rw[r], j0, nb);
            if (lim[r] < j0 + nb || touch) masked = 1;
            for (int j = lim[r] - j0 > 0 ? lim[r] - j0 : 0; j < nb; j++) sr[j] = -INFINITY;
            if (touch)
                for (int j = 0; j < nb && j0 + j < lim[r]; j++) sr[j] = fz_rowm_apply(&rw[r], sr[j], j0 + j);
            /* the block's max; a row with every key masked so far keeps o = 0 and l = 0 */
            fz_v mx = fz_set1(-INFINITY);
            for (int j = 0; j < nfull; j += FZ_VW) mx = fz_max(mx, fz_load(sr + j));
            float bm = fz_hmax(mx);
            for (int j = nfull; j < nb; j++) bm = sr[j] > bm ? sr[j] : bm;
            if (bm > m[r]) {            /* a new running max: remember its key */
                int j = 0;
                while (j < nb - 1 && !(sr[j] == bm)) j++;
                jm[r] = j0 + j;
            }
            if (m[r] > bm) bm = m[r];
            if (bm == -INFINITY) {
                memset(sr, 0, sizeof(float) * (size_t)nb);
                alpha[r] = 1.0f;
                continue;
            }
            alpha[r] = m[r] == -INFINITY ? 0.0f : fz_exp_rel1(m[r], bm);
            /* exponentials and their sum (before dropout, as the block path); masked keys exactly 0 */
            const fz_v bv = fz_set1(bm);
            fz_v sum = fz_zero();
            for (int j = 0; j < nfull; j += FZ_VW) {
                const fz_v e = fz_exp_rel(fz_load(sr + j), bv);
                fz_store(sr + j, e);
                sum = fz_add(sum, e);
            }
            float lsum = fz_hsum(sum);
            for (int j = nfull; j < nb; j++) {
                sr[j] = sr[j] == -INFINITY ? 0.0f : fz_exp_rel1(sr[j], bm);
                lsum += sr[j];
            }
            l[r] = alpha[r] * l[r] + lsum;
            m[r] = bm;
            if (d->dropout > 0.0f) {
                const float keep_scale = 1.0f / (1.0f - d->dropout);
                for (int j = 0; j < nb; j++)
                    sr[j] = attn__dropout_keep(d->seed, row[r] * S + (uint64_t)(j0 + j), d->dropout) ? sr[j] * keep_scale
                                                                                                      : 0.0f;
            }
        }
        const float *vj = vb + (int64_t)j0 * d->v.t;
        if (!masked || fz_rows_finite(vj, d->v.t, nb, Dv)) {
            fz_rows_pv(R, o, Dv, alpha, s, FZ_ROW_NB, vj, d->v.t, Dv, nb);
        } else {                        /* V rows not all finite: the zero weights skip theirs */
            for (int r = 0; r < R; r++) {
                float *orow = o + r * Dv;
                const float *sr = s + r * FZ_ROW_NB;
                for (int x = 0; x < Dv; x++) orow[x] *= alpha[r];
                for (int j = 0; j < nb; j++)
                    if (sr[j] != 0.0f)
                        for (int x = 0; x < Dv; x++) orow[x] += sr[j] * vj[(int64_t)j * d->v.t + x];
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float *orow = cx->out + b * d->out.b + hs[r] * d->out.h + (int64_t)ts[r] * d->out.t;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (int x = 0; x < Dv; x++) orow[x] = o[r * Dv + x] * inv;
        /* the running max was summed another way than the canonical score: save the canonical score of
         * its key (the backward recomputes exactly that), and the sum as it is (see the top of the file) */
        float mc = m[r];
        if (l[r] > 0.0f && jm[r] >= 0 && m[r] == m[r]) {
            mc = fz_score1(q + r * Dp, kb + (int64_t)jm[r] * d->k.t, D);
            mc = fz_rowm_apply(&rw[r], mc, jm[r]);
        }
        fz_put_stats(cx->stats + 2 * row[r], mc, l[r]);
    }
    attn__count_scores(ATTN_PASS_FORWARD, counted);
}

static void fz_fwd_rows(const fz_fwd_ctx *cx, char *tw, int b, int hk, const int *hs, const int *ts, int R) {
    switch (R) {                           /* the register count must be a constant */
    case 1: fz_fwd_rows_r(1, cx, tw, b, hk, hs, ts); break;
    case 2: fz_fwd_rows_r(2, cx, tw, b, hk, hs, ts); break;
#if FZ_VW >= 16
    case 3: fz_fwd_rows_r(3, cx, tw, b, hk, hs, ts); break;
    case 4: fz_fwd_rows_r(4, cx, tw, b, hk, hs, ts); break;
#endif
    default: break;
    }
}


/* ===================================================================================================
 * Small heads: few keys and narrow heads (the d2l translators: heads of 8 over 10 positions, and their
 * decoding steps: one query over up to 10 keys; the ViT: heads of 32 over 17 patches). There the tiles
 * above cost more than the arithmetic, so an item is a whole (b, kv head): its keys packed once as Kᵀ
 * (D, SP) (SP = S rounded up to vectors, at most FZ_SMALL_S), with vectors along the keys for the
 * scores and along D or Dv for the products with K and V. The forward (decoding only) takes the group's
 * rows one by one; the backward (fz_small_bwd, after the block path's, whose P and dS it shares) takes
 * them in blocks as products. The backward's item owns its kv head's dK, dV and its heads' dq rows, so it
 * needs no dQ slots and runs in one stage. Same base-2 softmax, masks and dropout indices as the paths
 * above; a row's arithmetic depends on the shape only.
 */
/* The backward's limits on S and on D, Dv: a backward key block (64 on AVX-512, 32 on AVX2 and the
 * portable build; until 2026-12-01 two vectors on every path: 32 and 16). The forward's (decoding's): two
 * vectors. */
#define FZ_SMALL_S FZ_KBC
#define FZ_SMALL_D FZ_KBC
#define FZ_SMALL_FWD (2 * FZ_VW)
_Static_assert(FZ_SMALL_S <= FZ_KBC && FZ_SMALL_S <= FZ_BR, "small path: Kᵀ must fit the tiles' buffers");

/* The small path for this pass? The backward takes it whenever the keys and the heads fit a key block (on
 * AVX2 the ViT's S = 17, D = 32 backward took 0.72–0.75 ms by blocks, 0.50 here; on AVX-512 the
 * detector's T = S = 64, D = 24, 1.40 ms by blocks, 1.09 here); the forward only for a few rows per head
 * (decoding), within two vectors: with more rows, the block path's vectors along the query rows do the
 * same work in fewer instructions (measured: B=64, H=4, T=S=10, D=8, 0.11 ms against 0.15 ms by rows; and
 * the ViT's T=S=17, D=32 with the rows tiled as the backward tiles them: 0.50 ms against 0.40, DESIGN.md
 * "Small-shape attention"); and with wider rows on AVX2 (S = 30, D = 32, T = 1: 67–70 µs here against 57
 * by rows). */
static int fz_small(const attn_sdpa_desc *d, attn_pass pass) {
    if (pass == ATTN_PASS_FORWARD)
        return d->S <= FZ_SMALL_FWD && d->D <= FZ_SMALL_FWD && d->Dv <= FZ_SMALL_FWD && d->T <= FZ_ROW_MAX;
    return d->S <= FZ_SMALL_S && d->D <= FZ_SMALL_D && d->Dv <= FZ_SMALL_D;
}

/* Kᵀ (D, SP) of keys [0, S) of (b, hk), zero-padded: the block forward's transpose, unscaled. */
static void fz_small_pack(float *Kt, int SP, const float *kb, int64_t kt, int S, int D) {
    fz_pack_t(Kt, SP, kb, kt, S, D, 1.0f);
}

/* Scores of one row into s (SP): (scale·q)·k_j, masked keys -inf. Returns the row's max. */
static float fz_small_scores(const attn_sdpa_desc *d, float *s, const float *Kt, int SP, const float *qr, int lim,
                             int b, int h, int t) {
    const int nks = SP / FZ_VW;
    fz_v acc[FZ_SMALL_FWD / FZ_VW];   /* the forward's (decoding's) keys: two vectors */
    for (int u = 0; u < nks; u++) acc[u] = fz_zero();
    for (int x = 0; x < d->D; x++) {
        const fz_v qx = fz_set1(qr[x] * d->scale);
        for (int u = 0; u < nks; u++) acc[u] = fz_fma(qx, fz_load(Kt + x * SP + u * FZ_VW), acc[u]);
    }
    for (int u = 0; u < nks; u++) fz_store(s + u * FZ_VW, fz_mask_iota(acc[u], u * FZ_VW, lim));
    const fz_rowm rw = fz_rowm_of(d, b, h, t);
    if (fz_rowm_touches(&rw, 0, lim))
        for (int j = 0; j < lim; j++) s[j] = fz_rowm_apply(&rw, s[j], j);
    fz_v mx = fz_load(s);
    for (int u = 1; u < nks; u++) mx = fz_max(mx, fz_load(s + u * FZ_VW));
    return fz_hmax(mx);
}

/* o (n floats, vectors along it) = Σ_{j<nb} p[j] · rows[j] (rows rt apart). */
static void fz_small_combine(float *o, int n, const float *p, const float *rows, int64_t rt, int nb) {
    for (int c0 = 0; c0 < n; c0 += FZ_VW) {
        const int w = n - c0 < FZ_VW ? n - c0 : FZ_VW;
        const fz_m tm = fz_tailmask(w);
        fz_v acc = fz_zero();
        for (int j = 0; j < nb; j++)
            if (p[j] != 0.0f) acc = fz_fma(fz_set1(p[j]), fz_loadm(rows + (int64_t)j * rt + c0, tm), acc);
        fz_storem(o + c0, acc, tm);
    }
}

static void fz_small_fwd(const attn_sdpa_desc *d, float *out, float *stats, const float *q, const float *k,
                         const float *v, char *tw, int b, int hk) {
    const int T = d->T, S = d->S, G = d->H / d->Hkv, SP = (S + FZ_VW - 1) / FZ_VW * FZ_VW, nks = SP / FZ_VW;
    float *Kt = (float *)tw;                                                   /* (D,SP) */
    float *s = (float *)(tw + fz_round(sizeof(float) * (size_t)d->D * FZ_BR)); /* (SP)   */
    float *o = s + FZ_SMALL_S;                                                 /* (Dv)   */
    const float *vb = v + b * d->v.b + hk * d->v.h;                            /* (S,Dv) */
    fz_small_pack(Kt, SP, k + b * d->k.b + hk * d->k.h, d->k.t, S, d->D);
    for (int hh = 0; hh < G; hh++) {
        const int h = hk * G + hh;
        for (int t = 0; t < T; t++) {
            float *orow = out + b * d->out.b + h * d->out.h + (int64_t)t * d->out.t;   /* (Dv) */
            const int64_t row = ((int64_t)b * d->H + h) * T + t;
            const int lim = attn__key_limit(&d->mask, b, t, T, S);
            attn__count_scores(ATTN_PASS_FORWARD, lim);
            const float z = fz_sink(d, h);
            float mx = lim > 0 ? fz_small_scores(d, s, Kt, SP, q + b * d->q.b + h * d->q.h + (int64_t)t * d->q.t,
                                                 lim, b, h, t)
                               : -INFINITY;
            if (z > mx) mx = z;                          /* the sink logit joins the max (NaN stays) */
            if (mx == -INFINITY) {                       /* every key masked: zeros, stats (-inf, 0) */
                for (int x = 0; x < d->Dv; x++) orow[x] = 0.0f;
                fz_put_stats(stats + 2 * row, mx, 0.0f);
                continue;
            }
            if (lim == 0) {                              /* the sink alone: zeros, stats (z, 0) */
                for (int x = 0; x < d->Dv; x++) orow[x] = 0.0f;
                fz_put_stats(stats + 2 * row, mx, 1.0f);
                continue;
            }
            const fz_v bm = fz_set1(mx);
            fz_v sum = fz_zero();
            for (int u = 0; u < nks; u++) {
                const fz_v e = fz_exp_rel(fz_load(s + u * FZ_VW), bm);
                fz_store(s + u * FZ_VW, e);
                sum = fz_add(sum, e);
            }
            const float l = fz_hsum(sum) + (z == -INFINITY ? 0.0f : fz_exp_rel1(z, mx));
            if (d->dropout > 0.0f) {                     /* after the sum: dropout acts on the weights */
                const float keep_scale = 1.0f / (1.0f - d->dropout);
                for (int j = 0; j < lim; j++)
                    s[j] = attn__dropout_keep(d->seed, (uint64_t)row * S + (uint64_t)j, d->dropout) ? s[j] * keep_scale
                                                                                                   : 0.0f;
            }
            fz_small_combine(o, d->Dv, s, vb, d->v.t, lim);
            const float inv = 1.0f / l;
            for (int x = 0; x < d->Dv; x++) orow[x] = o[x] * inv;
            fz_put_stats(stats + 2 * row, mx, l);
        }
    }
}

/* Forward work items: few rows per head (decoding) go by (b, kv head, pack of FZ_ROW_R of the group's
 * G·T rows); otherwise (b, h, block of FZ_BR query rows). */
static int fz_fwd_by_rows(const attn_sdpa_desc *d) { return d->T <= FZ_ROW_MAX; }

static int64_t fz_fwd_nqb(const attn_sdpa_desc *d) {
    const int64_t group_rows = (int64_t)(d->H / d->Hkv) * d->T;
    return fz_fwd_by_rows(d) ? (group_rows + FZ_ROW_R - 1) / FZ_ROW_R : (d->T + FZ_BR - 1) / FZ_BR;
}

static int64_t fz_fwd_items(const attn_sdpa_desc *d) {
    if (fz_small(d, ATTN_PASS_FORWARD)) return (int64_t)d->B * d->Hkv;
    return (int64_t)d->B * (fz_fwd_by_rows(d) ? d->Hkv : d->H) * fz_fwd_nqb(d);
}

/* One stage; thread part->ith's items. */
static void fz_forward(const attn_sdpa_desc *d, float *out, float *stats, float *scores, const float *q,
                       const float *k, const float *v, void *work, const attn__part *part) {
    fz_fwd_ctx cx = {d, out, stats, scores, q, k, v, (char *)work, fz_fwd_thread_bytes(d)};
    const int G = d->H / d->Hkv, by_rows = fz_fwd_by_rows(d), group_rows = G * d->T;
    const int64_t nqb = fz_fwd_nqb(d), items = fz_fwd_items(d);
    char *tw = cx.work + (size_t)part->ith * cx.thread_bytes;
    const int H = d->H, T = d->T;
    int hs[FZ_ROW_R], ts[FZ_ROW_R];
    int64_t local = -1;
    if (fz_small(d, ATTN_PASS_FORWARD)) {   /* items (b, kv head) */
        for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local))
            fz_small_fwd(d, out, stats, q, k, v, tw, (int)(it / d->Hkv), (int)(it % d->Hkv));
        return;
    }
    /* head by head (its K and V stay in cache), latest query blocks first: under a causal mask they are
     * the longest, so the last items handed out are short */
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        const int64_t bh = it / nqb;
        const int blk = (int)(it % nqb);
        if (by_rows) {                  /* bh is (b, kv head); the pack's rows are (g, t), g-major */
            const int b = (int)(bh / d->Hkv), hk = (int)(bh % d->Hkv), r0 = blk * FZ_ROW_R;
            const int R = group_rows - r0 < FZ_ROW_R ? group_rows - r0 : FZ_ROW_R;
            for (int r = 0; r < R; r++) {
                hs[r] = hk * G + (r0 + r) / T;
                ts[r] = (r0 + r) % T;
            }
            fz_fwd_rows(&cx, tw, b, hk, hs, ts, R);
            continue;
        }
        const int qblk = (int)nqb - 1 - blk, b = (int)(bh / H), h = (int)(bh % H);
        const int t0 = qblk * FZ_BR, nr = T - t0 < FZ_BR ? T - t0 : FZ_BR;
        if (nr > FZ_ROW_MAX) {
            fz_fwd_block(&cx, tw, b, h, t0, nr);
            continue;
        }
        for (int i = 0; i < nr; i += FZ_ROW_R) {    /* a short last block: packs of the head's rows */
            const int R = nr - i < FZ_ROW_R ? nr - i : FZ_ROW_R;
            for (int r = 0; r < R; r++) {
                hs[r] = h;
                ts[r] = t0 + i + r;
            }
            fz_fwd_rows(&cx, tw, b, h / G, hs, ts, R);
        }
    }
}

/* ===================================================================================================
 * Backward (FlashAttention-2 order). Work items are (b, kv head, key chunk); an item owns the dK, dV rows
 * of its keys and writes its dQ contributions to its chunk's own slot; the slots are summed in chunk order
 * afterwards. Per thread: Kᵀ, Vᵀ, dKᵀ, dVᵀ of one key block, P and dS of one query block, row vectors.
 */

static size_t fz_bwd_block_bytes(const attn_sdpa_desc *d) {
    return 2 * fz_round(sizeof(float) * (size_t)d->D * FZ_KBC) + fz_round(sizeof(float) * (size_t)d->D * FZ_QB) +
           2 * fz_round(sizeof(float) * (size_t)d->Dv * FZ_KBC) +
           3 * fz_round(sizeof(float) * (size_t)FZ_QB * FZ_KBC) + 4 * fz_round(sizeof(float) * FZ_QB);
}

/* Key chunks per (b, kv head): FZ_NCHUNK with fewer than 4 (b, kv head) pairs, else half that (enough work
 * items either way); fewer when there are fewer key blocks or when the chunks' dQ slots (nchunk·G·T·D
 * floats) would pass 256 MiB. Depends on the shape only, never on the thread count. */
static int fz_bwd_nchunk(const attn_sdpa_desc *d) {
    const int nkb = (d->S + FZ_KBC - 1) / FZ_KBC;
    int nc = (int64_t)d->B * d->Hkv >= 4 ? FZ_NCHUNK / 2 : FZ_NCHUNK;   /* fewer pairs: more chunks */
    if (nkb < nc) nc = nkb;
    const double slot = (double)(d->H / d->Hkv) * d->T * d->D * sizeof(float);
    while (nc > 1 && nc * slot > 256.0 * 1024 * 1024) nc /= 2;
    return nc;
}

/* (b, kv head) pairs handled per round: the dQ slots of a round are nchunk·G·T·D floats per pair;
 * keep a round's slots near 32 MiB (at least one pair). Depends on the shape only. */
static int64_t fz_bwd_pairs(const attn_sdpa_desc *d) {
    const double per = (double)fz_bwd_nchunk(d) * (d->H / d->Hkv) * d->T * ((double)d->D + 1) * sizeof(float);
    double n = (32.0 * 1024 * 1024) / per;
    const double pairs = (double)d->B * d->Hkv;                 /* < 2^48: exact in a double */
    if (n < 1) n = 1;
    return (int64_t)(n > pairs ? pairs : n);
}

static size_t fz_bwd_shared_bytes(const attn_sdpa_desc *d) {
    const size_t G = (size_t)(d->H / d->Hkv), P = (size_t)fz_bwd_pairs(d);
    const size_t rows = fz_size_mul(fz_size_mul(P, G), (size_t)d->T);        /* query rows of a round */
    return fz_size_add(fz_round(fz_size_mul(fz_size_mul(rows, (size_t)fz_bwd_nchunk(d)), sizeof(float) * (size_t)d->D)),
                       fz_round(fz_size_mul(rows, sizeof(float))));
}

typedef struct fz_bwd_ctx {
    const attn_sdpa_desc *d;
    float *dq, *dk, *dv;
    const float *dout, *q, *k, *v, *out, *stats;
    float *dqs;        /* (pairs, NCHUNK, G, T, D) dQ slots of the round */
    float *delta;      /* (pairs, G, T) rowsum(dout ∘ out) */
    char *thread_work;
    size_t thread_bytes;
    int nkb, nchunk, chunk_start[FZ_NCHUNK + 1];
} fz_bwd_ctx;

/* The query rows [*t0, *t1) that may see a key of [j0, j0 + nb): causality (and the window's right edge)
 * cut the rows before; the window's left edge the rows after, unless the block holds a sink. */
static void fz_bwd_rows_of(const attn_sdpa_desc *d, int j0, int nb, int *t0, int *t1) {
    const attn_mask *mk = &d->mask;
    const int64_t off = (int64_t)d->S - d->T;                  /* ta = t + off */
    int64_t a = 0, e = d->T;
    if (mk->causal) a = (int64_t)j0 - off;                     /* ta >= j0 */
    if (mk->window && (int64_t)j0 - off - mk->window_right > a) a = (int64_t)j0 - off - mk->window_right;
    if (mk->window && j0 >= attn__key_sinks(mk, d->S))
        e = (int64_t)j0 + nb - 1 + mk->window_left - off + 1;  /* ta - left <= j0 + nb - 1 */
    if (a < 0) a = 0;
    if (e > d->T) e = d->T;
    if (e < 0) e = 0;
    if (a > e) a = e;
    *t0 = (int)a;
    *t1 = (int)e;
}

/* Work of backward key block kb, in query rows that may see it (+1 for the block's own cost). */
static double fz_bwd_block_work(const attn_sdpa_desc *d, int kb) {
    const int j0 = kb * FZ_KBC, nb = d->S - j0 < FZ_KBC ? d->S - j0 : FZ_KBC;
    int t0, t1;
    fz_bwd_rows_of(d, j0, nb, &t0, &t1);
    return (double)(t1 - t0) + 1;
}

/* Key chunks: nchunk contiguous runs of key blocks of about equal work (under a causal mask the early
 * keys are seen by more queries). A function of the shape only, never of the thread count. */
static void fz_bwd_chunks(fz_bwd_ctx *cx) {
    const attn_sdpa_desc *d = cx->d;
    const int nkb = cx->nkb;
    const int nc = fz_bwd_nchunk(d);
    double total = 0;
    for (int kb = 0; kb < nkb; kb++) total += fz_bwd_block_work(d, kb);
    cx->nchunk = nc;
    cx->chunk_start[0] = 0;
    double acc = 0;
    int c = 1;
    for (int kb = 0; kb < nkb && c < nc; kb++) {
        acc += fz_bwd_block_work(d, kb);
        /* close chunk c after block kb once the work so far reaches c/nc of the total, or when the
         * chunks still to come need every block left */
        if (acc >= total * c / nc || nkb - (kb + 1) == nc - c) cx->chunk_start[c++] = kb + 1;
    }
    cx->chunk_start[nc] = nkb;
}

/* The backward's weights and score gradients of query rows t0 .. t0+nr of head (b, h) against keys j0 ..
 * j0+nb (NB padded): P = exp(x - m - log l) with x = (scale·Q) Kᵀ (+ the mask parts) scored as the forward
 * did, masked keys 0; dS = P ∘ (dP·m - Δ) with dP = dO Vᵀ, times the soft cap's derivative; with dropout P
 * becomes P·m (m = keep/(1-p)), what dV takes. Rows i: lim (keys from lim on excluded; 0 for a row with no
 * gradient), rm the max m, rl log2 l, dlt Δ. qr (nr rows q.t apart) is scaled into Qs (nr,D); Kᵀ (D,NB),
 * Vᵀ (Dv,NB), gr (nr rows of dout); Dc (nr,NB) scratch. Returns 1 when the rows must be taken carefully
 * (nf: K or V of the keys not all finite; or a row's Δ or m), and then dS is 0 wherever P is. */
static int fz_bwd_pds(const attn_sdpa_desc *d, float *P, float *dS, float *Dc, float *Qs, const float *qr,
                      const float *Kt, const float *Vt, const float *gr, int b, int h, int t0, int nr, int j0, int nb,
                      int NB, const int32_t *lim, const float *rm, const float *rl, const float *dlt, int nf) {
    const attn_mask *mk = &d->mask;
    const int S = d->S, D = d->D, Dv = d->Dv, nvk = NB / FZ_VW, generic = fz_elementwise(mk);
    const int64_t row0 = ((int64_t)b * d->H + h) * d->T + t0;                         /* stats row */
    /* P = exp(x - m - log l), x = (scale·Q) Kᵀ (+ bias) summed as the forward did; masked keys 0 */
    const float scale = d->scale;         /* a local: the stores below cannot change it */
    for (int i = 0; i < nr; i++)
        for (int x = 0; x < D; x++) Qs[i * D + x] = qr[(int64_t)i * d->q.t + x] * scale;
    fz_gemm(nr, NB, P, NB, Qs, D, 1, Kt, NB, D, FZ_SET, NULL);
    for (int i = 0; i < nr; i++) {
        float *pr = P + i * NB;
        const int lj = lim[i] - j0;                  /* keys j >= lj are excluded */
        if (lj <= 0) { memset(pr, 0, sizeof(float) * NB); continue; }
        const fz_v mv = fz_set1(rm[i]), lv = fz_set1(rl[i]);
        /* the key-by-key parts (only a window or a block map may leave this row's keys untouched) */
        const int maybe = generic || mk->window || mk->block_map;
        const fz_rowm rw = maybe ? fz_rowm_of(d, b, h, t0 + i) : (fz_rowm){0};
        if (maybe && (generic || fz_rowm_touches(&rw, j0, nb))) {
            if (rw.cap > 0.0f)
                for (int j = 0; j < NB; j++) Dc[i * NB + j] = fz_cap_grad(rw.cap, pr[j]);
            for (int j = 0; j < NB; j++) pr[j] = j >= lj ? -INFINITY : fz_rowm_apply(&rw, pr[j], j0 + j);
            if (!(rm[i] - rm[i] == 0.0f)) fz_nan_row(pr, NB, NB, rm[i]);
            else
                for (int v = 0; v < nvk; v++)
                    fz_store(pr + v * FZ_VW, fz_weight(fz_load(pr + v * FZ_VW), mv, lv));
        } else if (!(rm[i] - rm[i] == 0.0f)) {
            fz_nan_row(pr, NB, lj, rm[i]);
        } else {
            for (int v = 0; v < nvk; v++) {
                fz_v x = fz_load(pr + v * FZ_VW);
                if (lj < (v + 1) * FZ_VW) x = fz_mask_iota(x, v * FZ_VW, lj);
                fz_store(pr + v * FZ_VW, fz_weight(x, mv, lv));
            }
        }
    }

    /* dP = dO Vᵀ; dS = P ∘ (dP·m - Δ); with dropout, P becomes P·m for dV (m = keep/(1-p)) */
    fz_gemm(nr, NB, dS, NB, gr, d->out.t, 1, Vt, NB, Dv, FZ_SET, NULL);
    if (d->dropout > 0.0f) {
        const float keep_scale = 1.0f / (1.0f - d->dropout);
        for (int i = 0; i < nr; i++) {
            const uint64_t row = (uint64_t)(row0 + i);
            for (int j = 0; j < NB; j++) {
                const int keep =
                    j < nb && attn__dropout_keep(d->seed, row * S + (uint64_t)(j0 + j), d->dropout);
                const float mm = keep ? keep_scale : 0.0f;
                const float p = P[i * NB + j];
                dS[i * NB + j] = p == 0.0f ? 0.0f : p * (dS[i * NB + j] * mm - dlt[i]);
                P[i * NB + j] = p * mm;
            }
        }
    } else {
        for (int i = 0; i < nr; i++) {
            const fz_v dl = fz_set1(dlt[i]);
            for (int v = 0; v < nvk; v++) {
                float *s = dS + i * NB + v * FZ_VW;
                fz_store(s, fz_mul(fz_load(P + i * NB + v * FZ_VW), fz_sub(fz_load(s), dl)));
            }
        }
    }

    /* the soft cap: the score's gradient times its derivative (rows that see no key have P = 0) */
    if (mk->softcap > 0.0f)
        for (int i = 0; i < nr; i++)
            if (lim[i] > j0)
                for (int j = 0; j < NB; j++) dS[i * NB + j] *= Dc[i * NB + j];

    /* Careful when some value is not finite (K or V of the block; Δ, dout or the scores of a row): keys
     * of weight 0 (masked) then take no part, as 0·NaN would make them */
    int careful = nf;
    for (int i = 0; i < nr; i++) careful |= !(dlt[i] - dlt[i] == 0.0f) || !(rm[i] - rm[i] == 0.0f);
    if (careful && !(d->dropout > 0.0f))
        for (int i = 0; i < nr; i++)
            for (int j = 0; j < NB; j++)
                if (P[i * NB + j] == 0.0f) dS[i * NB + j] = 0.0f;
    return careful;
}

/* One key block (keys j0 .. j0+nb) of pair (b, hk), every query head of its group and every query row
 * that may see it. dQ contributions go to slot dqs (G,T,D). */
static void fz_bwd_block(const fz_bwd_ctx *cx, char *tw, int b, int hk, int j0, int nb, float *dqs,
                         const float *delta) {
    const attn_sdpa_desc *d = cx->d;
    const int H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv, G = H / d->Hkv;
    const attn_mask *mk = &d->mask;
    const int nvk = (nb + FZ_VW - 1) / FZ_VW, NB = nvk * FZ_VW;   /* padded keys in use */
    int32_t low[FZ_QB];                                           /* the rows' window edges */

    float *Kt = (float *)tw;                                                          /* (D,NB)  */
    float *dKt = (float *)((char *)Kt + fz_round(sizeof(float) * (size_t)D * FZ_KBC));  /* (D,NB)  */
    float *Vt = (float *)((char *)dKt + fz_round(sizeof(float) * (size_t)D * FZ_KBC));  /* (Dv,NB) */
    float *dVt = (float *)((char *)Vt + fz_round(sizeof(float) * (size_t)Dv * FZ_KBC)); /* (Dv,NB) */
    float *P = (float *)((char *)dVt + fz_round(sizeof(float) * (size_t)Dv * FZ_KBC));  /* (QB,NB) */
    float *dS = (float *)((char *)P + fz_round(sizeof(float) * (size_t)FZ_QB * FZ_KBC)); /* (QB,NB) */
    float *Qs = (float *)((char *)dS + fz_round(sizeof(float) * (size_t)FZ_QB * FZ_KBC));  /* (QB,D)  */
    float *rm = (float *)((char *)Qs + fz_round(sizeof(float) * (size_t)FZ_QB * D));     /* (QB) m  */
    float *rl = rm + FZ_QB, *dlt = rl + FZ_QB;                                          /* (QB) L, Δ */
    int32_t *lim = (int32_t *)(dlt + FZ_QB);                                            /* (QB) */
    float *Dc = (float *)((char *)rm + 4 * fz_round(sizeof(float) * FZ_QB));            /* (QB,NB) soft cap' */

    const float *kb = cx->k + b * d->k.b + hk * d->k.h + (int64_t)j0 * d->k.t;   /* (nb,D)  */
    const float *vb = cx->v + b * d->v.b + hk * d->v.h + (int64_t)j0 * d->v.t;   /* (nb,Dv) */

    /* pack Kᵀ and Vᵀ, padding keys with zeros; clear the dKᵀ, dVᵀ sums; are K and V finite? */
    for (int j = 0; j < NB; j++) {
        if (j < nb) {
            const float *kr = kb + (int64_t)j * d->k.t, *vr = vb + (int64_t)j * d->v.t;   /* (D), (Dv) */
            for (int x = 0; x < D; x++) Kt[x * NB + j] = kr[x];
            for (int x = 0; x < Dv; x++) Vt[x * NB + j] = vr[x];
        } else {
            for (int x = 0; x < D; x++) Kt[x * NB + j] = 0.0f;
            for (int x = 0; x < Dv; x++) Vt[x * NB + j] = 0.0f;
        }
    }
    memset(dKt, 0, sizeof(float) * (size_t)D * NB);
    memset(dVt, 0, sizeof(float) * (size_t)Dv * NB);
    /* vector checks, not a sum in the packing loop above: a chain of scalar adds there cost the causal
     * backward 15% (its last key blocks see few rows, so their packing is not amortised) */
    const int nf = !(fz_rows_finite(kb, d->k.t, nb, D) && fz_rows_finite(vb, d->v.t, nb, Dv));

    /* the query rows that may see keys of the block: causality and the window */
    int tstart, tend;
    fz_bwd_rows_of(d, j0, nb, &tstart, &tend);
    int64_t counted = 0;
    for (int hh = 0; hh < G; hh++) {
        const int h = hk * G + hh;
        for (int t0 = tstart, nr = 0; t0 < tend; t0 += nr) {
            nr = tend - t0 < FZ_QB ? tend - t0 : FZ_QB;
            if (mk->block_map) {                             /* within one map row; skip it if unlisted */
                const int bs = mk->block_size;
                if (nr > bs - t0 % bs) nr = bs - t0 % bs;
                const uint8_t *row = attn__block_row(mk, b, h, t0);
                int listed = 0;
                for (int c = j0 / bs; c <= (j0 + nb - 1) / bs; c++) listed |= row[c] != 0;
                if (!listed) continue;
            }
            const float *qr = cx->q + b * d->q.b + h * d->q.h + (int64_t)t0 * d->q.t;         /* (nr,D)  */
            const float *gr = cx->dout + b * d->out.b + h * d->out.h + (int64_t)t0 * d->out.t; /* (nr,Dv) */
            const int64_t row0 = ((int64_t)b * H + h) * T + t0;                               /* stats row */

            int maxlim = 0, minlim = S, seen = 0;
            const int nsink = attn__key_sinks(mk, S);
            for (int i = 0; i < nr; i++) {
                lim[i] = attn__key_limit(mk, b, t0 + i, T, S);
                low[i] = attn__key_low(mk, t0 + i, T, S);
                seen |= j0 < nsink || low[i] < j0 + nb;
                rm[i] = cx->stats[2 * (row0 + i)];
                rl[i] = cx->stats[2 * (row0 + i) + 1] * FZ_LOG2E;      /* log2 l */
                if (rm[i] == -INFINITY) lim[i] = 0;          /* fully masked row: no gradient */
                dlt[i] = delta[(int64_t)hh * T + t0 + i];
                if (lim[i] > maxlim) maxlim = lim[i];
                if (lim[i] < minlim) minlim = lim[i];
            }
            if (maxlim <= j0 || !seen) continue;             /* no row of the block sees these keys */
            counted += (int64_t)nr * nb;

            /* P and dS of the rows; careful when some value is not finite */
            const int careful = fz_bwd_pds(d, P, dS, Dc, Qs, qr, Kt, Vt, gr, b, h, t0, nr, j0, nb, NB, lim, rm, rl,
                                           dlt, nf);

            /* dVᵀ += dOᵀ P;  dKᵀ += Qᵀ dS (scale applied at the end);  dQ slot += dS K */
            float *dqb = dqs + ((int64_t)hh * T + t0) * D;
            if (!careful) {
                fz_gemm(Dv, NB, dVt, NB, gr, 1, d->out.t, P, NB, nr, FZ_ACC, NULL);
                fz_gemm(D, NB, dKt, NB, qr, 1, d->q.t, dS, NB, nr, FZ_ACC, NULL);
                fz_gemm(nr, D, dqb, D, dS, NB, 1, kb, d->k.t, nb, FZ_ACC, NULL);
            } else {
                for (int i = 0; i < nr; i++)
                    for (int j = 0; j < nb; j++) {
                        const float pj = P[i * NB + j], g = dS[i * NB + j];
                        if (pj != 0.0f)
                            for (int x = 0; x < Dv; x++) dVt[x * NB + j] += gr[(int64_t)i * d->out.t + x] * pj;
                        if (g != 0.0f) {
                            for (int x = 0; x < D; x++) dKt[x * NB + j] += qr[(int64_t)i * d->q.t + x] * g;
                            for (int x = 0; x < D; x++) dqb[(int64_t)i * D + x] += g * kb[(int64_t)j * d->k.t + x];
                        }
                    }
            }
        }
    }

    attn__count_scores(ATTN_PASS_BACKWARD, counted);

    /* dk += scale · dKᵀᵀ, dv += dVᵀᵀ for the block's keys */
    for (int j = 0; j < nb; j++) {
        float *dkr = cx->dk + b * d->k.b + hk * d->k.h + (int64_t)(j0 + j) * d->k.t;   /* (D)  */
        float *dvr = cx->dv + b * d->v.b + hk * d->v.h + (int64_t)(j0 + j) * d->v.t;   /* (Dv) */
        for (int x = 0; x < D; x++) dkr[x] += d->scale * dKt[x * NB + j];
        for (int x = 0; x < Dv; x++) dvr[x] += dVt[x * NB + j];
    }
}

/* Backward of the small path: item (b, kv head), every row of its heads; Kᵀ and Vᵀ (D or Dv, SP) packed
 * once. Per block of FZ_QB rows of a head, P and dS as the block path forms them (fz_bwd_pds, vectors along
 * the keys), then dV += Pᵀ dO, dK += dSᵀ Q (times scale at the end) and dQ = dS K with vectors along Dv or
 * D, dO, Q and K read where they lie, dV and dK summed in (S,Dv) and (S,D) tiles. The item owns its kv
 * head's dK, dV and its heads' dq rows: no dQ slots, one stage. Each sum runs in the order of the block
 * path's over one key block (rows in order for dK and dV, keys in order for dQ), so the bits are its. */
static size_t fz_small_bwd_bytes(const attn_sdpa_desc *d) {
    const size_t f = sizeof(float), D = (size_t)d->D, Dv = (size_t)d->Dv;
    return 2 * fz_round(f * (D + Dv) * FZ_SMALL_S) + 3 * fz_round(f * FZ_QB * FZ_SMALL_S) +
           2 * fz_round(f * FZ_QB * D) + 4 * fz_round(f * FZ_QB);
}

/* Backward tiles per thread: the small path's or the block path's */
static size_t fz_bwd_thread_bytes(const attn_sdpa_desc *d) {
    return fz_small(d, ATTN_PASS_BACKWARD) ? fz_small_bwd_bytes(d) : fz_bwd_block_bytes(d);
}

/* dl_i = Σ_x o_ix·g_ix for nr rows (ld apart) of n: each row's sum in order from 0, as the block path's
 * first stage forms Δ, eight rows side by side (independent chains in registers). */
static void fz_rowdots(float *dl, const float *o, const float *g, int64_t ld, int nr, int n) {
    int i = 0;
    for (; i + 8 <= nr; i += 8) {
        float a[8];
        FZ_UNROLL for (int r = 0; r < 8; r++) a[r] = 0.0f;
        for (int x = 0; x < n; x++)
            FZ_UNROLL for (int r = 0; r < 8; r++) a[r] += o[(i + r) * ld + x] * g[(i + r) * ld + x];
        FZ_UNROLL for (int r = 0; r < 8; r++) dl[i + r] = a[r];
    }
    for (; i < nr; i++) {
        float a = 0.0f;
        for (int x = 0; x < n; x++) a += o[i * ld + x] * g[i * ld + x];
        dl[i] = a;
    }
}

static void fz_small_bwd(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *out, const float *stats, char *tw, int b, int hk) {
    const int T = d->T, S = d->S, D = d->D, Dv = d->Dv, G = d->H / d->Hkv;
    const int SP = (S + FZ_VW - 1) / FZ_VW * FZ_VW;
    const size_t f = sizeof(float);
    const float scale = d->scale;         /* a local: the stores below cannot change it */
    float *Kt = (float *)tw;                                                          /* (D,SP)     */
    float *Vt = Kt + (size_t)D * SP;                                                  /* (Dv,SP)    */
    float *dKs = (float *)(tw + fz_round(f * ((size_t)D + Dv) * FZ_SMALL_S));        /* (S,D)      */
    float *dVs = dKs + (size_t)S * D;                                                 /* (S,Dv)     */
    float *P = (float *)((char *)dKs + fz_round(f * ((size_t)D + Dv) * FZ_SMALL_S));  /* (QB,SP)    */
    float *dS = (float *)((char *)P + fz_round(f * FZ_QB * FZ_SMALL_S));               /* (QB,SP)    */
    float *Dc = (float *)((char *)dS + fz_round(f * FZ_QB * FZ_SMALL_S));              /* (QB,SP)    */
    float *Qs = (float *)((char *)Dc + fz_round(f * FZ_QB * FZ_SMALL_S));              /* (QB,D)     */
    float *dQs = (float *)((char *)Qs + fz_round(f * FZ_QB * D));                      /* (QB,D)     */
    float *rm = (float *)((char *)dQs + fz_round(f * FZ_QB * D));                      /* (QB) each: */
    float *rl = rm + FZ_QB, *dlt = rl + FZ_QB;                                         /* m, log2 l, Δ */
    int32_t *lim = (int32_t *)(dlt + FZ_QB);
    const float *kb = k + b * d->k.b + hk * d->k.h, *vb = v + b * d->v.b + hk * d->v.h;   /* (S,D) (S,Dv) */
    fz_small_pack(Kt, SP, kb, d->k.t, S, D);
    fz_small_pack(Vt, SP, vb, d->v.t, S, Dv);
    memset(dKs, 0, f * (size_t)S * D);
    memset(dVs, 0, f * (size_t)S * Dv);
    const int nf = !(fz_rows_finite(kb, d->k.t, S, D) && fz_rows_finite(vb, d->v.t, S, Dv));
    int64_t counted = 0;
    for (int hh = 0; hh < G; hh++) {
        const int h = hk * G + hh;
        for (int t0 = 0, nr = 0; t0 < T; t0 += nr) {
            nr = T - t0 < FZ_QB ? T - t0 : FZ_QB;
            const float *qr = q + b * d->q.b + h * d->q.h + (int64_t)t0 * d->q.t;          /* (nr,D)  */
            const float *gr = dout + b * d->out.b + h * d->out.h + (int64_t)t0 * d->out.t; /* (nr,Dv) */
            const float *orow = out + b * d->out.b + h * d->out.h + (int64_t)t0 * d->out.t;
            const int64_t row0 = ((int64_t)b * d->H + h) * T + t0;
            int maxlim = 0;
            for (int i = 0; i < nr; i++) {
                lim[i] = attn__key_limit(&d->mask, b, t0 + i, T, S);
                rm[i] = stats[2 * (row0 + i)];
                rl[i] = stats[2 * (row0 + i) + 1] * FZ_LOG2E;           /* log2 l */
                if (rm[i] == -INFINITY) lim[i] = 0;                   /* fully masked row: no gradient */
                if (lim[i] > maxlim) maxlim = lim[i];
                counted += lim[i];
            }
            if (maxlim == 0) continue;
            fz_rowdots(dlt, orow, gr, d->out.t, nr, Dv);               /* Δ = rowsum(dout ∘ out) */

            const int careful = fz_bwd_pds(d, P, dS, Dc, Qs, qr, Kt, Vt, gr, b, h, t0, nr, 0, S, SP, lim, rm, rl,
                                           dlt, nf);
            /* dV += Pᵀ dO;  dK += dSᵀ Q (scale applied at the end);  dQ = dS K */
            if (!careful) {
                fz_gemm(S, Dv, dVs, Dv, P, 1, SP, gr, d->out.t, nr, FZ_ACC, NULL);
                fz_gemm(S, D, dKs, D, dS, 1, SP, qr, d->q.t, nr, FZ_ACC, NULL);
                fz_gemm(nr, D, dQs, D, dS, SP, 1, kb, d->k.t, S, FZ_SET, NULL);
            } else {                    /* keys of weight 0 take no part (0·NaN would reach them) */
                memset(dQs, 0, f * (size_t)nr * D);
                for (int i = 0; i < nr; i++)
                    for (int j = 0; j < S; j++) {
                        const float pj = P[i * SP + j], g = dS[i * SP + j];
                        if (pj != 0.0f)
                            for (int x = 0; x < Dv; x++) dVs[j * Dv + x] += pj * gr[(int64_t)i * d->out.t + x];
                        if (g != 0.0f)
                            for (int x = 0; x < D; x++) {
                                dKs[j * D + x] += g * qr[(int64_t)i * d->q.t + x];
                                dQs[i * D + x] += g * kb[(int64_t)j * d->k.t + x];
                            }
                    }
            }
            for (int i = 0; i < nr; i++) {
                float *dqr = dq + b * d->q.b + h * d->q.h + (int64_t)(t0 + i) * d->q.t;   /* (D) */
                for (int x = 0; x < D; x++) dqr[x] += scale * dQs[i * D + x];
            }
        }
    }
    attn__count_scores(ATTN_PASS_BACKWARD, counted);
    for (int j = 0; j < S; j++) {
        float *dkr = dk + b * d->k.b + hk * d->k.h + (int64_t)j * d->k.t;   /* (D)  */
        float *dvr = dv + b * d->v.b + hk * d->v.h + (int64_t)j * d->v.t;   /* (Dv) */
        for (int x = 0; x < D; x++) dkr[x] += scale * dKs[j * D + x];
        for (int x = 0; x < Dv; x++) dvr[x] += dVs[j * Dv + x];
    }
}

/* (b, kv head) pairs and rounds of the backward: the pairs go round by round (fz_bwd_pairs per round). */
static int64_t fz_bwd_rounds(const attn_sdpa_desc *d) {
    const int64_t pairs = (int64_t)d->B * d->Hkv, PR = fz_bwd_pairs(d);
    return (pairs + PR - 1) / PR;
}

/* Stage s of the backward: round s / 3, phase s % 3:
 *   phase 0  Δ = rowsum(dout ∘ out) and cleared dQ slots for the round's query rows (static split)
 *   phase 1  items (pair, chunk), each owning its keys' dK, dV and its dQ slot
 *   phase 2  dq += scale · Σ_chunk slot, chunks in order (static split of rows) */
static void fz_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout,
                        const float *q, const float *k, const float *v, const float *out, const float *stats,
                        void *work, const attn__part *part) {
    fz_bwd_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.d = d; cx.dq = dq; cx.dk = dk; cx.dv = dv;
    cx.dout = dout; cx.q = q; cx.k = k; cx.v = v; cx.out = out; cx.stats = stats;
    const int G = d->H / d->Hkv, T = d->T, D = d->D;
    const int64_t PR = fz_bwd_pairs(d), pairs = (int64_t)d->B * d->Hkv;
    const int NC = fz_bwd_nchunk(d);
    cx.dqs = (float *)work;
    cx.delta = (float *)((char *)work + fz_round(sizeof(float) * (size_t)PR * NC * G * T * D));
    /* the small path has no dQ slots: fz_workspace sizes its workspace as the thread tiles alone */
    cx.thread_work = (char *)work + (fz_small(d, ATTN_PASS_BACKWARD) ? 0 : fz_bwd_shared_bytes(d));
    cx.thread_bytes = fz_bwd_thread_bytes(d);
    cx.nkb = (d->S + FZ_KBC - 1) / FZ_KBC;
    fz_bwd_chunks(&cx);
    const fz_bwd_ctx *c = &cx;
    char *tw = c->thread_work + (size_t)part->ith * c->thread_bytes;
    if (fz_small(d, ATTN_PASS_BACKWARD)) {  /* one stage, items (b, kv head) */
        int64_t local = -1;
        for (int64_t it = attn__part_next(part, &local); it < pairs; it = attn__part_next(part, &local))
            fz_small_bwd(d, dq, dk, dv, dout, q, k, v, out, stats, tw, (int)(it / d->Hkv), (int)(it % d->Hkv));
        return;
    }
    const int ith = part->ith, nt = part->nth, nc = c->nchunk, phase = part->stage % 3;
    const int64_t p0 = (int64_t)(part->stage / 3) * PR;
    const int64_t np = pairs - p0 < PR ? pairs - p0 : PR;
    const int64_t rows = np * G * T;                     /* (pair, head in group, t) */

    if (phase == 0) {
        for (int64_t r = ith; r < rows; r += nt) {
            const int64_t pi = r / ((int64_t)G * T);
            const int hh = (int)(r / T % G), t = (int)(r % T);
            const int b = (int)((p0 + pi) / d->Hkv), h = (int)((p0 + pi) % d->Hkv) * G + hh;
            const float *o = c->out + b * d->out.b + h * d->out.h + (int64_t)t * d->out.t;
            const float *g = c->dout + b * d->out.b + h * d->out.h + (int64_t)t * d->out.t;
            fz_rowdots(c->delta + r, o, g, 0, 1, d->Dv);
            for (int ch = 0; ch < nc; ch++)
                memset(c->dqs + ((pi * nc + ch) * G * T + (int64_t)hh * T + t) * D, 0, sizeof(float) * D);
        }
    } else if (phase == 1) {
        int64_t local = -1;
        for (int64_t it = attn__part_next(part, &local); it < np * nc; it = attn__part_next(part, &local)) {
            const int64_t pi = it / nc;
            const int ch = (int)(it % nc);
            const int b = (int)((p0 + pi) / d->Hkv), hk = (int)((p0 + pi) % d->Hkv);
            float *slot = c->dqs + (pi * nc + ch) * G * T * D;
            for (int kbk = c->chunk_start[ch]; kbk < c->chunk_start[ch + 1]; kbk++) {
                const int j0 = kbk * FZ_KBC, nb = d->S - j0 < FZ_KBC ? d->S - j0 : FZ_KBC;
                fz_bwd_block(c, tw, b, hk, j0, nb, slot, c->delta + pi * G * T);
            }
        }
    } else {
        for (int64_t r = ith; r < rows; r += nt) {
            const int64_t pi = r / ((int64_t)G * T);
            const int hh = (int)(r / T % G), t = (int)(r % T);
            const int b = (int)((p0 + pi) / d->Hkv), h = (int)((p0 + pi) % d->Hkv) * G + hh;
            float *dqr = c->dq + b * d->q.b + h * d->q.h + (int64_t)t * d->q.t;
            const float *s0 = c->dqs + (pi * nc * G * T + (int64_t)hh * T + t) * D;
            for (int x = 0; x < D; x++) {
                float s = s0[x];
                for (int ch = 1; ch < nc; ch++) s += s0[(int64_t)ch * G * T * D + x];
                dqr[x] += d->scale * s;
            }
        }
    }
}

/* ===================================================================================================
 * Weights (a forward asked for them): after the forward, one more stage writes P = exp(x - m - log l) for
 * every (b, h, t, s) from the row statistics, exactly as the backward forms P (the same canonical scores,
 * masks and formula), so what a caller sees is what the gradients use. Items (b, h, block of FZ_WQ query
 * rows); per thread Qs = scale·Q of the block, Kᵀ of a key block (packed once for FZ_WQ / FZ_QB blocks of
 * P: the packing is a transposition, as dear as a quarter of the products when done per FZ_QB rows) and
 * one block of P.
 */
#define FZ_WQ (4 * FZ_QB)
static size_t fz_wts_thread_bytes(const attn_sdpa_desc *d) {
    return fz_round(sizeof(float) * (size_t)d->D * FZ_KBC) + fz_round(sizeof(float) * (size_t)FZ_WQ * d->D) +
           fz_round(sizeof(float) * (size_t)FZ_QB * FZ_KBC) + 3 * fz_round(sizeof(float) * FZ_WQ);
}

/* Row t of head (b, h): its scores pr (nb keys from j0, NB padded) become weights, written to w (nb). lj:
 * the keys from j0 + lj on are past the row's limit; m, L2: its max and log2 of its sum. */
static void fz_weights_row(const attn_sdpa_desc *d, float *pr, float *w, int nb, int NB, int j0, int lj, float m,
                           float L2, int b, int h, int t) {
    const int nvk = NB / FZ_VW;
    if (lj <= 0) {
        memset(w, 0, sizeof(float) * (size_t)nb);
        return;
    }
    const fz_v mv = fz_set1(m), lv = fz_set1(L2);
    const fz_rowm rw = fz_rowm_of(d, b, h, t);
    if (fz_elementwise(&d->mask) || fz_rowm_touches(&rw, j0, nb)) {
        for (int j = 0; j < NB; j++) pr[j] = j >= lj ? -INFINITY : fz_rowm_apply(&rw, pr[j], j0 + j);
        if (!(m - m == 0.0f)) fz_nan_row(pr, NB, NB, m);
        else
            for (int v = 0; v < nvk; v++) fz_store(pr + v * FZ_VW, fz_weight(fz_load(pr + v * FZ_VW), mv, lv));
    } else if (!(m - m == 0.0f)) {
        fz_nan_row(pr, NB, lj, m);
    } else {                            /* straight to w: x <= m here, so no clamp (same bits as the backward) */
        const fz_v nl = fz_sub(fz_zero(), lv), l2e = fz_set1(FZ_LOG2E);
        const int nfull = nb / FZ_VW;
        for (int v = 0; v < nvk; v++) {
            fz_v x = fz_load(pr + v * FZ_VW);
            if (lj < (v + 1) * FZ_VW) x = fz_mask_iota(x, v * FZ_VW, lj);
            const fz_v p = fz_exp2(fz_fma(fz_sub(x, mv), l2e, nl));
            if (v < nfull) fz_store(w + v * FZ_VW, p);
            else fz_storem(w + v * FZ_VW, p, fz_tailmask(nb - v * FZ_VW));
        }
        return;
    }
    memcpy(w, pr, sizeof(float) * (size_t)nb);
}

/* Rows t0 .. t0+nr (nr <= FZ_WQ) of head (b, h), their scores recomputed. */
static void fz_weights_recompute(const attn_sdpa_desc *d, float *weights, const float *stats, const float *q,
                                 const float *k, char *tw, int b, int h, int t0, int nr) {
    const int H = d->H, T = d->T, S = d->S, D = d->D, hk = h / (H / d->Hkv);
    float *Kt = (float *)tw;                                                            /* (D,KBC)  */
    float *Qs = (float *)(tw + fz_round(sizeof(float) * (size_t)D * FZ_KBC));          /* (WQ,D)   */
    float *P = (float *)((char *)Qs + fz_round(sizeof(float) * (size_t)FZ_WQ * D));    /* (QB,KBC) */
    float *rm = (float *)((char *)P + fz_round(sizeof(float) * (size_t)FZ_QB * FZ_KBC));
    float *rl = rm + FZ_WQ;                                                             /* (WQ) each */
    int32_t *lim = (int32_t *)(rl + FZ_WQ);
    const float *qr = q + b * d->q.b + h * d->q.h + (int64_t)t0 * d->q.t;   /* (nr,D) */
    const float *kb = k + b * d->k.b + hk * d->k.h;                          /* (S,D)  */
    const int64_t row0 = ((int64_t)b * H + h) * T + t0;
    int maxlim = 0, minlow = S;
    const int nsink = attn__key_sinks(&d->mask, S);
    int64_t counted = 0;
    for (int i = 0; i < nr; i++) {
        for (int x = 0; x < D; x++) Qs[i * D + x] = qr[(int64_t)i * d->q.t + x] * d->scale;
        rm[i] = stats[2 * (row0 + i)];
        rl[i] = stats[2 * (row0 + i) + 1] * FZ_LOG2E;
        lim[i] = rm[i] == -INFINITY ? 0 : attn__key_limit(&d->mask, b, t0 + i, T, S);
        if (lim[i] > maxlim) maxlim = lim[i];
        const int lo = attn__key_low(&d->mask, t0 + i, T, S);
        if (lo < minlow) minlow = lo;
    }
    for (int j0 = 0; j0 < S; j0 += FZ_KBC) {
        const int nb = S - j0 < FZ_KBC ? S - j0 : FZ_KBC, NB = (nb + FZ_VW - 1) / FZ_VW * FZ_VW;
        /* keys some row may see: below the largest limit, and a sink or within reach of some window */
        const int near = maxlim > j0 && (j0 < nsink || minlow < j0 + nb);
        if (near)                               /* Kᵀ of the block, zero-padded, once for every row */
            for (int x = 0; x < D; x++)
                for (int j = 0; j < NB; j++) Kt[x * NB + j] = j < nb ? kb[(int64_t)(j0 + j) * d->k.t + x] : 0.0f;
        for (int i0 = 0; i0 < nr; i0 += FZ_QB) {
            const int nq = nr - i0 < FZ_QB ? nr - i0 : FZ_QB;
            int seen = 0;
            for (int i = i0; i < i0 + nq; i++)
                seen |= lim[i] > j0 && (j0 < nsink || attn__key_low(&d->mask, t0 + i, T, S) < j0 + nb);
            if (seen) {
                fz_gemm(nq, NB, P, NB, Qs + (size_t)i0 * D, D, 1, Kt, NB, D, FZ_SET, NULL);
                counted += (int64_t)nq * nb;
            }
            for (int i = i0; i < i0 + nq; i++)
                fz_weights_row(d, P + (i - i0) * NB, weights + (row0 + i) * S + j0, nb, NB, j0,
                               seen ? lim[i] - j0 : 0, rm[i], rl[i], b, h, t0 + i);
        }
    }
    attn__count_scores(ATTN_PASS_FORWARD, counted);
}

/* Did the forward's block path leave row t's scores in the weights (fz_fill_scores)? Its blocks of more
 * than FZ_ROW_MAX rows did; the small-heads path, the by-rows path and a short last block did not. */
static int fz_row_scored(const attn_sdpa_desc *d, int t) {
    const int t0 = t / FZ_BR * FZ_BR;
    return !fz_small(d, ATTN_PASS_FORWARD) && !fz_fwd_by_rows(d) && d->T - t0 > FZ_ROW_MAX;
}

/* A row the forward left as scores w (keys 0 .. lim-1 hold x, -inf where masked; lim = 0 for a row that
 * saw no key) becomes its weights in place: exp(x - m - log l) with the backward's formula (fz_weight),
 * 0 from lim on. m, L2: the row's max and log2 of its sum. */
static void fz_weights_scored(float *w, int S, int lim, float m, float L2) {
    if (lim <= 0) {
        memset(w, 0, sizeof(float) * (size_t)S);
        return;
    }
    if (!(m - m == 0.0f)) {
        fz_nan_row(w, S, lim, m);
        return;
    }
    const fz_v mv = fz_set1(m), lv = fz_set1(L2);
    const int nv = lim / FZ_VW;
    for (int v = 0; v < nv; v++) fz_store(w + v * FZ_VW, fz_weight(fz_load(w + v * FZ_VW), mv, lv));
    int j = nv * FZ_VW;
    if (j < lim) {                          /* the vector across lim: its lanes from lim on are 0 */
        const int n = S - j < FZ_VW ? S - j : FZ_VW;
        const fz_m tm = fz_tailmask(n);
        const fz_v x = fz_mask_iota(fz_loadm(w + j, tm), j, lim);
        fz_storem(w + j, fz_weight(x, mv, lv), tm);
        j += n;
    }
    if (j < S) memset(w + j, 0, sizeof(float) * (size_t)(S - j));
}

/* Rows t0 .. t0+nr (nr <= FZ_WQ) of head (b, h): those the forward left as scores in place, the rest
 * (a short last block: always after them) recomputed. */
static void fz_weights_block(const attn_sdpa_desc *d, float *weights, const float *stats, const float *q,
                             const float *k, char *tw, int b, int h, int t0, int nr) {
    const int64_t row0 = ((int64_t)b * d->H + h) * d->T + t0;
    int i = 0;
    for (; i < nr && fz_row_scored(d, t0 + i); i++) {
        const float m = stats[2 * (row0 + i)];
        const int lim = m == -INFINITY ? 0 : attn__key_limit(&d->mask, b, t0 + i, d->T, d->S);
        fz_weights_scored(weights + (row0 + i) * d->S, d->S, lim, m, stats[2 * (row0 + i) + 1] * FZ_LOG2E);
    }
    if (i < nr) fz_weights_recompute(d, weights, stats, q, k, tw, b, h, t0 + i, nr - i);
}

/* The weights stage: thread part->ith's items of (b, h, query block). */
static void fz_weights(const attn_sdpa_desc *d, float *weights, const float *stats, const float *q, const float *k,
                       void *work, const attn__part *part) {
    const int64_t nqb = (d->T + FZ_WQ - 1) / FZ_WQ, items = (int64_t)d->B * d->H * nqb;
    const size_t tb = fz_fwd_thread_bytes(d) > fz_wts_thread_bytes(d) ? fz_fwd_thread_bytes(d) : fz_wts_thread_bytes(d);
    char *tw = (char *)work + (size_t)part->ith * tb;
    int64_t local = -1;
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        const int64_t bh = it / nqb;
        const int t0 = (int)(it % nqb) * FZ_WQ, nr = d->T - t0 < FZ_WQ ? d->T - t0 : FZ_WQ;
        fz_weights_block(d, weights, stats, q, k, tw, (int)(bh / d->H), (int)(bh % d->H), t0, nr);
    }
}

static int fz_stages(const attn_sdpa_desc *d, attn_pass pass) {
    return pass == ATTN_PASS_FORWARD || fz_small(d, pass) ? 1 : (int)(3 * fz_bwd_rounds(d));
}

/* Threads worth starting: about 4 MFLOP of work each at least, since waking a thread costs microseconds
 * (and, on a busy machine, can cost a scheduler time slice); never more than there are items. Results
 * never depend on it. */
static int fz_threads(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    const double flops = 2.0 * d->B * d->H * (double)d->T * d->S * (d->D + d->Dv);
    const double want = flops / 4e6;
    if (nth < 1) nth = 1;
    if (want < nth) nth = want < 1 ? 1 : (int)want;
    if (pass == ATTN_PASS_FORWARD && fz_fwd_items(d) < nth) nth = (int)fz_fwd_items(d);
    return nth;
}

/* Forward: per-thread tiles. Backward: the round's dQ slots and Δ, plus per-thread tiles. */
static size_t fz_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (nth < 1) nth = 1;
    if (pass == ATTN_PASS_FORWARD) {          /* the forward's tiles, or the weights stage's when larger */
        const size_t f = fz_fwd_thread_bytes(d), w = fz_wts_thread_bytes(d);
        return fz_size_add(fz_size_mul((size_t)nth, f > w ? f : w), FZ_ALIGN);
    }
    if (fz_small(d, pass)) return (size_t)nth * fz_bwd_thread_bytes(d) + FZ_ALIGN;     /* no dQ slots */
    return fz_size_add(fz_bwd_shared_bytes(d), (size_t)nth * fz_bwd_thread_bytes(d) + FZ_ALIGN);
}
