/*
 * kernels_amx.c — the AMX path: the fused scaled dot-product forward and backward with bf16 products on
 * AMX tiles (fp32 accumulation) and the softmax on AVX-512, for bf16 tensors, and for fp32 tensors whose
 * descriptor asks for bf16 compute; and the decoding forward of bf16 tensors (T <= 4: "Decoding on tiles"
 * near the end, K read in place) when the K/V cache is small enough to sit in L2 (larger ones run the
 * AVX512-BF16 path's decoding kernel, as fast or faster there). Everything else (fp32 tensors, 5 to 15
 * query rows per head with either tensor type, the backward of fewer than 16) is the AVX512-BF16 path's
 * or the AVX-512 path's:
 * this table's entries hand those descriptors to attn__kernels_avx512bf16 and attn__kernels_avx512. Compiled with
 * -mamx-tile -mamx-bf16 -mavx512bf16 and the AVX-512 flags; reached only when the CPU has AMX and the OS
 * granted the tile state (config.c).
 *
 * The forward, per (b, h, block of AX_BR = 32 query rows), in two stages:
 *   stage 0  pack, once per (b, kv head) and shared by every query block: K as bf16 rows (SP, DP) for
 *            the A tiles of the scores, Vᵀ as bf16 (DvP, SP) for the A tiles of P·V; zero padded to
 *            tile multiples (DP, DvP: 32; SP: 32), converted from fp32 when the tensors are fp32; Vᵀ rows
 *            64 bytes further apart than they need, so a tile's rows spread over L1's sets.
 *   stage 1  per query block: Qᵀ packed as the B tiles of the scores (pairs of dims interleaved, 16
 *            queries a tile), then for each block of AX_BC keys:
 *              Sᵀ (keys, queries) = K_blk Qᵀ            tiles: 2 x 2 accumulators, D in steps of 32
 *              x = scale·log2e · Sᵀ, masks, bias        AVX-512, lane = query (as the fp32 path)
 *              online softmax in base 2                 running max m and sum l per query lane
 *              Pᵀ to bf16, pairs of keys interleaved    the B tiles of P·V
 *              Oᵀ (DvP, queries) = alpha ∘ Oᵀ + Vᵀ_blk Pᵀ  tiles, Oᵀ kept in fp32 in the thread's memory
 *            then out = Oᵀᵀ / l and the row statistics.
 * A score x is the fp32 tile sum of bf16 products over D in steps of 32 (in that order, from zero),
 * times scale·log2e, plus bias·log2e: a backward that recomputes it the same way gets the same bits.
 * Each item's arithmetic depends on the shape only: bitwise identical for any thread count.
 *
 * Memory: the packs B·Hkv·SP·(DP + DvP) bf16, and per thread Qᵀ, Sᵀ, Pᵀ and Oᵀ of one block.
 */
#include "internal.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/avx512/exp2_avx512.h"
#include "kernels/avx512bf16/decode_bf16.h"

#define AX_BR 64                 /* query rows per block: four tiles of 16 */
#define AX_ALIGN 64
#define AX_LOG2E 1.44269504088896340736f
#define AX_LN2 0.693147180559945309417f

/* Keys per softmax block. Oᵀ's tiles are loaded and stored once per block (DvP·BR·4 bytes each way), and
 * on this machine a tile load or store costs about what a tile product does whether its data is in L1 or
 * L2 (measured; a store more, about three products, into lines not in L1): larger blocks cost fewer of
 * them, at BC·BR·(4 + 2)·2 bytes of Sᵀ and Pᵀ per thread. Without a causal mask and heads up to 128 wide,
 * 256 (D = 64: the tile work about 5% less than with 128; D = 128: the forward 2-4% less CPU time in
 * most alternating runs, on a loaded machine); a causal mask 128 (256 measured within the noise there);
 * wider heads 128. */
static int ax_bc(const attn_sdpa_desc *d) { return d->D <= 128 && d->Dv <= 128 && !d->mask.causal ? 256 : 128; }

static int ax_up32(int n) { return (n + 31) / 32 * 32; }
static size_t ax_round(size_t n) { return (n + AX_ALIGN - 1) & ~(size_t)(AX_ALIGN - 1); }

/* A score plus an additive bias, in natural units, saturating at ±FLT_MAX; -inf excludes. */
static inline float ax_add_bias(float x, float b) {
    if (x == -INFINITY || b == -INFINITY) return -INFINITY;
    const float y = x + b;
    return y > FLT_MAX ? FLT_MAX : y < -FLT_MAX ? -FLT_MAX : y;
}

/* The descriptors this path computes itself: bf16 tensors or bf16 compute, forward, with at least
 * AX_MIN_T query rows per head. A block is 64 rows: with fewer (decoding: T = 1 against a long cache) the
 * tiles and the softmax would do up to 64 times the work, and repacking the whole K/V cache at every call
 * would cost more than that; those go to this path's decoding kernel (by rows, reading bf16 K/V in place,
 * for T <= 4 with bf16 tensors), to the AVX512-BF16 path (its decoding kernel for a large bf16 cache; its
 * vdpbf16ps block kernel for 5 <= T < 16, with bf16 tensors or with fp32 tensors and bf16 compute, the
 * latter on bf16 copies) or, for fp32 tensors with bf16 compute and T <= 4, to the AVX-512 path in fp32. */
#define AX_MIN_T 16
static int ax_native(const attn_sdpa_desc *d, attn_pass pass) {
    (void)pass;
    /* the sparse mask parts (window, sinks, sink logits, ALiBi) run through the conversion path: the fp32
     * kernels on copies */
    return (d->dtype == ATTN_DTYPE_BF16 || d->compute == ATTN_DTYPE_BF16) && d->T >= AX_MIN_T &&
           !attn__mask_sparse(&d->mask);
}

/* This path's own descriptors: the block forward and backward, and the AVX512-BF16 path's, the forward
 * of bf16 tensors with fewer rows (decoding, T <= BR_MAX_T: on tiles, "Decoding on tiles" below, or the
 * AVX512-BF16 kernel for a large cache; more rows: its vdpbf16ps block kernel). */
static int amx_native(const attn_sdpa_desc *d, attn_pass pass) {
    return ax_native(d, pass) || attn__kernels_avx512bf16.sdpa_native(d, pass);
}

/* Element x of a row of a tensor of type dt, as bf16 bits. */
static inline uint16_t ax_get(const void *row, int dt, int x) {
    return dt == ATTN_DTYPE_BF16 ? ((const uint16_t *)row)[x] : attn__bf16(((const float *)row)[x]);
}

/* ---------------------------------------------------------------------------------------------------
 * Layouts. Every tile operand is stored as one contiguous 1 KiB block (16 rows of 64 bytes), so a tile
 * load streams one run of memory (16 rows of a row-major Vᵀ were 16 streams: more than the L2
 * prefetchers follow):
 *   K   (per b, kv head)   [key tile of 16][D chunk of 32][16 keys][32 dims]            A of the scores
 *   Vᵀ  (per b, kv head)   [key chunk of 32][Dv tile of 16][16 dims][32 keys]           A of P·V
 *   Qᵀ  (per thread)       [D chunk][query tile][16 dim pairs][16 queries][2]           B of the scores
 *   Pᵀ  (per thread, x2)   [key chunk][query tile][16 key pairs][16 queries][2]         B of P·V
 *   Sᵀ  (per thread)       (BC keys, BR queries) fp32, row-major: tile results, then x, then P
 *   Oᵀ  (per thread)       (DvP, BR) fp32
 * A block has AX_NQ = 4 query tiles: each K and V tile brought from L2 serves 64 queries.
 */
#define AX_NQ (AX_BR / 16)

typedef struct ax_dims {
    int DP, DvP, SP, BC, NC, NXT;  /* padded sizes; NC = DP/32 chunks, NXT = DvP/16 tiles */
    size_t kpack, vpack;           /* bytes of one (b, kv head)'s packed K and Vᵀ */
    size_t shared;                 /* bytes of all packs, then the non-finite V flags */
    size_t flags;                  /* offset of the flags: per (b, kv head) one uint32 per 32 keys */
    size_t qt, st, pt, ot, vec;    /* a thread's buffers */
    size_t thread;
} ax_dims;

static ax_dims ax_dims_of(const attn_sdpa_desc *d) {
    ax_dims z;
    z.DP = ax_up32(d->D);
    z.DvP = ax_up32(d->Dv);
    z.SP = ax_up32(d->S);
    z.BC = ax_bc(d);
    z.NC = z.DP / 32;
    z.NXT = z.DvP / 16;
    z.kpack = ax_round((size_t)z.SP * z.DP * 2);
    z.vpack = ax_round((size_t)z.DvP * z.SP * 2);
    z.flags = (size_t)d->B * d->Hkv * (z.kpack + z.vpack);
    z.shared = z.flags + ax_round((size_t)d->B * d->Hkv * (z.SP / 32) * 4);
    z.qt = ax_round((size_t)z.DP * AX_BR * 2);
    z.st = ax_round((size_t)z.BC * AX_BR * 4);
    z.pt = ax_round((size_t)z.BC * AX_BR * 2);
    z.ot = ax_round((size_t)z.DvP * AX_BR * 4);
    z.vec = 4 * ax_round(AX_BR * 4);                     /* mu, mt, l, lim */
    z.thread = z.qt + 2 * z.st + 2 * z.pt + z.ot + z.vec;
    return z;
}

/* ---------------------------------------------------------------------------------------------------
 * Tiles. One configuration for both products: tmm0-3 accumulators (16 x 16 fp32), tmm4-5 A operands
 * (16 rows x 32 bf16), tmm6-7 B operands (16 pair-rows x 16 columns x 2 bf16).
 */
typedef struct ax_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} ax_tilecfg;

/* A constant in memory: built on the stack, GCC 12 dropped the stores of colsb and rows before
 * ldtilecfg (it does not see the instruction read them), and ldtilecfg faulted on the garbage. */
static const ax_tilecfg ax_cfg __attribute__((aligned(64))) = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static void ax_tiles_on(void) { _tile_loadconfig(&ax_cfg); }

/* r[i] lane k = w[k] lane i: the shared 16 x 16 transpose (kernels/avx512/transpose_avx512.h). */
static inline void ax_transpose16(const __m512i w[16], __m512i r[16]) {
    for (int i = 0; i < 16; i++) r[i] = w[i];
    attn__transpose16(r);
}

/* ---------------------------------------------------------------------------------------------------
 * Stage 0: packs of (b, kv head), a chunk of 32 keys per item.
 */

/* 1 when one of the n elements of row (type dt) is NaN or Inf as bf16: for fp32, also a finite value
 * that rounds to Inf (|x| from 0x7f7f8000 up, as attn__bf16 rounds). Vector compares, 32 or 16 elements at
 * a time: element by element this check took about a tenth of the forward's time outside the softmax. */
static int ax_row_bad(const void *row, int dt, int n) {
    if (dt == ATTN_DTYPE_BF16) {
        const __m512i ex = _mm512_set1_epi16(0x7f80);
        for (int x = 0; x < n; x += 32) {
            const __mmask32 m = n - x >= 32 ? 0xffffffffu : (__mmask32)((1u << (n - x)) - 1);
            const __m512i v = _mm512_maskz_loadu_epi16(m, (const uint16_t *)row + x);
            if (_mm512_mask_cmpeq_epi16_mask(m, _mm512_and_si512(v, ex), ex)) return 1;
        }
        return 0;
    }
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), lim = _mm512_set1_epi32(0x7f7f8000);
    for (int x = 0; x < n; x += 16) {
        const __mmask16 m = n - x >= 16 ? 0xffff : (__mmask16)((1u << (n - x)) - 1);
        const __m512i v = _mm512_maskz_loadu_epi32(m, (const float *)row + x);
        if (_mm512_mask_cmpge_epu32_mask(m, _mm512_and_si512(v, abs), lim)) return 1;
    }
    return 0;
}

/* Stage 0 for bf16 tensors, by vectors (element by element, as for fp32 below, the packs took about a
 * tenth of the 1-thread forward at D = 128 and an eighth of the causal one). kp, vt, kb, vb: the item's
 * K tiles, Vᵀ tiles, and the caller's K and V of the kv head; bad: the chunk's non-finite V rows.
 *   K   each key row's 32 dims of chunk c, one masked load (zeros past D, past S) and one store
 *   Vᵀ  per 16 dims, keys 2i and 2i+1 interleaved as 32-bit pairs (lane x: (v[2i][x], v[2i+1][x])), so the
 *       16 x 16 transpose of those pairs gives tile row x as the 32 keys of dim x in order */
static void ax_pack_chunk_bf16(const attn_sdpa_desc *d, const ax_dims *z, uint16_t *kp, uint16_t *vt,
                               const uint16_t *kb, const uint16_t *vb, int j0, uint32_t bad) {
    for (int j = j0; j < j0 + 32; j++) {
        const uint16_t *src = kb + (int64_t)j * d->k.t;
        for (int c = 0; c < z->NC; c++) {
            const __m512i row = j < d->S ? br_load32(src, 32 * c, d->D) : _mm512_setzero_si512();
            _mm512_storeu_si512(kp + (((int64_t)(j / 16) * z->NC + c) * 16 + j % 16) * 32, row);
        }
    }
    const __m512i inter = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                           39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    for (int xt = 0; xt < z->NXT; xt++) {
        const int nd = d->Dv - 16 * xt;
        const __mmask16 dims = nd >= 16 ? 0xffff : nd > 0 ? (__mmask16)((1u << nd) - 1) : 0;   /* past Dv: zeros */
        __m512i w[16], r[16];
        for (int i = 0; i < 16; i++) {
            __m256i two[2];
            for (int e = 0; e < 2; e++) {
                const int j = 2 * i + e;
                const __mmask16 m = j0 + j < d->S && !(bad >> j & 1) ? dims : 0;
                two[e] = _mm256_maskz_loadu_epi16(m, vb + (int64_t)(j0 + j) * d->v.t + 16 * xt);
            }
            w[i] = _mm512_permutex2var_epi16(_mm512_castsi256_si512(two[0]), inter, _mm512_castsi256_si512(two[1]));
        }
        ax_transpose16(w, r);
        uint16_t *dst = vt + ((int64_t)(j0 / 32) * z->NXT + xt) * 512;
        for (int x = 0; x < 16; x++) _mm512_storeu_si512(dst + x * 32, r[x]);
    }
}

static void ax_pack_chunk(const attn_sdpa_desc *d, const ax_dims *z, char *shared, const void *k, const void *v,
                          int b, int hk, int j0) {
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    const int64_t pair = (int64_t)b * d->Hkv + hk;
    uint16_t *kp = (uint16_t *)(shared + pair * (z->kpack + z->vpack));
    uint16_t *vt = (uint16_t *)((char *)kp + z->kpack);
    const char *kb = (const char *)k + (b * d->k.b + hk * d->k.h) * es;
    const char *vb = (const char *)v + (b * d->v.b + hk * d->v.h) * es;
    /* V rows with NaN or Inf: packed as zeros and flagged; their products are added after the tiles only
     * for the rows that see them (a tile would add 0·NaN = NaN to the rows that do not) */
    uint32_t bad = 0;
    for (int j = 0; j < 32 && j0 + j < d->S; j++)
        if (ax_row_bad(vb + (int64_t)(j0 + j) * d->v.t * es, dt, d->Dv)) bad |= 1u << j;
    ((uint32_t *)(shared + z->flags))[pair * (z->SP / 32) + j0 / 32] = bad;
    if (dt == ATTN_DTYPE_BF16) {
        ax_pack_chunk_bf16(d, z, kp, vt, (const uint16_t *)kb, (const uint16_t *)vb, j0, bad);
        return;
    }
    /* K: tiles (j0/16 + u, c), row j % 16 */
    for (int j = j0; j < j0 + 32; j++) {
        const char *src = kb + (int64_t)j * d->k.t * es;
        for (int c = 0; c < z->NC; c++) {
            uint16_t *dst = kp + (((int64_t)(j / 16) * z->NC + c) * 16 + j % 16) * 32;
            for (int x = 0; x < 32; x++) dst[x] = j < d->S && 32 * c + x < d->D ? ax_get(src, dt, 32 * c + x) : 0;
        }
    }
    /* Vᵀ: tiles (j0/32, xt), row = dim % 16, column = key - j0; read by squares of 32 keys x 16 dims */
    uint16_t tmp[32 * 16];
    for (int xt = 0; xt < z->NXT; xt++) {
        for (int j = 0; j < 32; j++) {
            const char *vs = vb + (int64_t)(j0 + j) * d->v.t * es;
            for (int x = 0; x < 16; x++)
                tmp[j * 16 + x] = j0 + j < d->S && 16 * xt + x < d->Dv && !(bad >> j & 1) ? ax_get(vs, dt, 16 * xt + x)
                                                                                          : 0;
        }
        uint16_t *dst = vt + ((int64_t)(j0 / 32) * z->NXT + xt) * 512;
        for (int x = 0; x < 16; x++)
            for (int j = 0; j < 32; j++) dst[x * 32 + j] = tmp[j * 16 + x];
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Stage 1: one block of query rows.
 */
typedef struct ax_fwd {
    const attn_sdpa_desc *d;
    ax_dims z;
    float *out, *stats;
    const void *q, *v;
    char *shared;
} ax_fwd;

/* The row statistics saved for the backward (attn.h): m, the row's largest score x (one of the x values,
 * as the backward recomputes them), and log l = log Σ exp(x - m) = log(Σ exp(x - mu)) + (mu - m), the sum
 * having been taken against mu; a row with no key has (-inf, 0). */
static inline void ax_put_stats(float *stats, int64_t row, float m, float mu, float l) {
    stats[2 * row] = l > 0.0f ? m : -INFINITY;
    stats[2 * row + 1] = l > 0.0f ? logf(l) + (mu - m) : 0.0f;
}

/* 2^x for the softmax (x <= AX_LAZY·log2e) and the backward's P (x <= 0) in five instructions: f = x -
 * floor(x) in [0, 1) by vreduceps, 2^f by a polynomial of degree 3 fitted for the least largest relative
 * error on [0, 1) (7.5e-5 with the fp32 coefficients, measured over 20001 points: P is rounded to bf16,
 * 2^-9, right after, and a row's sum of them is off by as much at most), and vscalefps, which multiplies
 * by 2^floor(x) itself. (It was round, subtract, a polynomial on [-1/2, 1/2] and scalef by the rounded
 * value, after a clamp of x at -200: two instructions more for the same error.) Runs under MXCSR's
 * flush-to-zero (ax_forward and the backward's blocks set it): a result below 2^-126 is 0, never a
 * subnormal (which would cost a microcode assist per vector). x may be -inf (a masked key, or a finite
 * score far below the max): vreduceps gives 0 for it and vscalefps by -inf exactly 0. */
static inline __m512 ax_exp2(__m512 x) {
    const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(7.80245215e-02f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.26067156e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.95833564e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.99925196e-01f));
    return _mm512_scalef_ps(p, x);
}

/* Two fp32 rows (keys 2r and 2r+1, 16 query lanes each) as one B-tile row: bf16 pairs interleaved. */
static inline __m512i ax_pair(__m512 e0, __m512 e1) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);   /* e0 in the low half, e1 in the high */
    return _mm512_permutexvar_epi16(idx, both);
}

/* The state of one query block while its key blocks stream past. */
typedef struct ax_blk {
    const attn_sdpa_desc *d;
    int b, h, t0, nr, NC, NXT, generic;
    float sc;                    /* the descriptor's scale: x = scale · (tile sum), natural units */
    const uint16_t *kp, *vt;     /* packed K and Vᵀ of the kv head */
    uint16_t *Qt;
    float *St[2];                /* (BC, BR), two: the scores of block j+2 are made during block j+1's softmax */
    uint16_t *Pt[2];             /* two: P·V of a block overlaps the next block's softmax */
    float *Ot;                   /* (DvP, BR) */
    float *mu, *mt, *l;          /* (BR) each: the max the exponentials use, the true max, the sum */
    int32_t *lim;                /* (BR) */
    int minlim;
    int plim[AX_NQ / 2];         /* per pair of query tiles, the largest key limit of its 32 rows */
    const uint32_t *bad;         /* the kv head's non-finite V flags, one word per 32 keys */
    const char *vb;              /* V of the kv head (the caller's tensor), for the flagged rows */
} ax_blk;

/* A lane's exponentials are taken against mu, which moves only when the block's max passes it by more
 * than AX_LAZY (natural units): exponentials up to e^5 are fine in fp32 and bf16, and Oᵀ is rescaled only
 * when some lane's mu moved, instead of at almost every block. */
#define AX_LAZY 5.0f
/* Exponentials of scores whose lane maxima are all within ±AX_FAST take exp2(x·log2e - mu·log2e) in one
 * FMA; past it the product's rounding would matter and they take exp2((x - mu)·log2e) (subtract first,
 * the backward's form). */
#define AX_FAST 1024.0f

/* ---------------------------------------------------------------------------------------------------
 * The tile work of a block as a list of steps of 4 tile products each, so that the softmax can issue
 * them spread evenly over its row pairs: a core retires in order, so a long run of tile products ahead
 * of the softmax would fill the reorder buffer and stall it; products spread through the vector code run
 * alongside. (A block of 256 keys has 64 steps for 128 row pairs: issued one per row pair, as they were,
 * the second half of the softmax ran with no tile work beside it.)
 *   P·V    Oᵀ += Vᵀ_blk Pᵀ: per pair of Dv tiles and pair of query tiles, Oᵀ's 4 tiles loaded, one step
 *          per 32 keys, stored back
 *   scores Sᵀ = K_blk Qᵀ: per 32 keys and pair of query tiles, 4 tiles from zero, one step per 32
 *          dims (the sum over D in that order: a score's bits depend on D only), stored
 * 32 keys that no row of a pair of query tiles sees (at or past the pair's largest key limit: the keys
 * above a causal diagonal) are skipped on both sides: their scores are not made (the softmax masks
 * whatever the buffer holds there to -inf) and their P is exactly 0, so leaving their products out of
 * Oᵀ changes no bit.
 */
typedef struct ax_tasks {
    /* P·V of keys [pv_j0, + pv_nbp) from pv_P; then the scores of keys [sc_j0, + sc_nbp) into sc_S */
    const uint16_t *pv_P;
    int pv_j0, pv_nkc;           /* pv_nkc = 0: none */
    float *sc_S;
    int sc_j0, sc_nkc;           /* sc_nkc = 0: none */
    int step, pv_steps, total;   /* next step, steps of P·V, all steps */
    int in, out;                 /* the next step's two indices in its part (P·V: 32 keys, then the pair of
                                    Dv and query tile pairs; scores: D chunk, then 32 keys and query tile
                                    pair), counted on: divisions by the run-time sizes cost more */
} ax_tasks;

static inline void ax_tasks_init(ax_tasks *t, const ax_blk *x, const uint16_t *pvP, int pvj0, int pvnbp, float *scS,
                                 int scj0, int scnbp) {
    t->pv_P = pvP;
    t->pv_j0 = pvj0;
    t->pv_nkc = pvnbp / 32;
    t->sc_S = scS;
    t->sc_j0 = scj0;
    t->sc_nkc = scnbp / 32;
    t->step = t->in = t->out = 0;
    t->pv_steps = (x->NXT / 2) * (AX_NQ / 2) * t->pv_nkc;
    t->total = t->pv_steps + t->sc_nkc * (AX_NQ / 2) * x->NC;
}

/* tmm0-3 += the 2 x 2 products of A tiles a0, a1 (tmm4, tmm5) and B tiles b0, b1 (tmm6, tmm7), each a
 * contiguous 1 KiB block: tmm0 = a0·b0, tmm1 = a0·b1, tmm2 = a1·b0, tmm3 = a1·b1. */
static inline void ax_mul22(const uint16_t *a0, const uint16_t *a1, const uint16_t *b0, const uint16_t *b1) {
    _tile_loadd(4, a0, 64);
    _tile_loadd(5, a1, 64);
    _tile_loadd(6, b0, 64);
    _tile_loadd(7, b1, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

/* Runs step t->step. */
static inline void ax_step(const ax_blk *x, ax_tasks *t) {
    const int s = t->step++, in = t->in, out = t->out;
    if (s < t->pv_steps) {
        const int nkc = t->pv_nkc, kc = in, g = out;                 /* g: (Dv tile pair, query tile pair) */
        if (s + 1 == t->pv_steps) t->in = t->out = 0;              /* the scores' first step next */
        else if (++t->in == nkc) t->in = 0, t->out++;
        const int qp = 2 * (g % (AX_NQ / 2)), xt = 2 * (g / (AX_NQ / 2));
        float *o = x->Ot + (int64_t)(16 * xt) * AX_BR + 16 * qp;
        if (kc == 0) {
            _tile_loadd(0, o, AX_BR * 4);
            _tile_loadd(1, o + 16, AX_BR * 4);
            _tile_loadd(2, o + 16 * AX_BR, AX_BR * 4);
            _tile_loadd(3, o + 16 * AX_BR + 16, AX_BR * 4);
        }
        if (t->pv_j0 + 32 * kc < x->plim[qp / 2]) {
            const uint16_t *a = x->vt + ((int64_t)(t->pv_j0 / 32 + kc) * x->NXT + xt) * 512;
            ax_mul22(a, a + 512, t->pv_P + (int64_t)(kc * AX_NQ + qp) * 512,
                     t->pv_P + (int64_t)(kc * AX_NQ + qp + 1) * 512);
        }
        if (kc == nkc - 1) {
            _tile_stored(0, o, AX_BR * 4);
            _tile_stored(1, o + 16, AX_BR * 4);
            _tile_stored(2, o + 16 * AX_BR, AX_BR * 4);
            _tile_stored(3, o + 16 * AX_BR + 16, AX_BR * 4);
        }
        return;
    }
    const int NC = x->NC, c = in, g = out;                        /* g: (32 keys, query tile pair) */
    if (++t->in == NC) t->in = 0, t->out++;
    const int qp = 2 * (g % (AX_NQ / 2)), kc = g / (AX_NQ / 2);
    if (t->sc_j0 + 32 * kc >= x->plim[qp / 2]) return;
    const uint16_t *a0 = x->kp + (int64_t)((t->sc_j0 + 32 * kc) / 16) * NC * 512;   /* key tile, chunk 0 */
    if (c == 0) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    ax_mul22(a0 + (int64_t)c * 512, a0 + (int64_t)(NC + c) * 512, x->Qt + (int64_t)(c * AX_NQ + qp) * 512,
             x->Qt + (int64_t)(c * AX_NQ + qp + 1) * 512);
    if (c == NC - 1) {
        float *s0 = t->sc_S + (int64_t)(32 * kc) * AX_BR + 16 * qp;
        _tile_stored(0, s0, AX_BR * 4);
        _tile_stored(1, s0 + 16, AX_BR * 4);
        _tile_stored(2, s0 + 16 * AX_BR, AX_BR * 4);
        _tile_stored(3, s0 + 16 * AX_BR + 16, AX_BR * 4);
    }
}

static inline void ax_steps_all(const ax_blk *x, ax_tasks *t) {
    while (t->step < t->total) ax_step(x, t);
}

/* Oᵀ += the products of the flagged V rows (NaN or Inf, packed as zeros) of the P·V just done (tk's),
 * for the rows whose weight is not 0: a row that does not see such a key is left alone. */
static void ax_fix_bad(const ax_blk *x, const ax_tasks *tk) {
    const attn_sdpa_desc *d = x->d;
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    for (int kc = 0; kc < tk->pv_nkc; kc++) {
        const uint32_t w = x->bad[tk->pv_j0 / 32 + kc];
        if (!w) continue;
        for (int jj = 0; jj < 32; jj++) {
            if (!(w >> jj & 1)) continue;
            const char *vs = x->vb + (int64_t)(tk->pv_j0 + 32 * kc + jj) * d->v.t * es;
            for (int i = 0; i < x->nr; i++) {
                const size_t at = ((size_t)kc * AX_NQ + i / 16) * 512 + (jj / 2) * 32 + (i % 16) * 2 + jj % 2;
                const float p = attn__f32(tk->pv_P[at]);
                if (p == 0.0f) continue;
                for (int c = 0; c < d->Dv; c++) x->Ot[(size_t)c * AX_BR + i] += p * attn__f32(ax_get(vs, dt, c));
            }
        }
    }
}

/* The softmax step of keys [j0, j0 + nb) (nbp padded) whose scores are in St: x = scale · S in natural
 * units, masks, the maxima, exponentials into Pt and their sum, and Oᵀ rescaled when a lane's mu moved (Oᵀ
 * must hold every block before this one: the tasks, which hold P·V of the block before, are all issued
 * first). The steps of tk spread evenly over the row pairs of the exponentials. first: no block before (Oᵀ
 * is zero). */
static inline void ax_softmax(const ax_blk *x, float *St, uint16_t *Pt, int j0, int nb, int nbp, int first,
                              ax_tasks *tk) {
    const attn_sdpa_desc *d = x->d;
    const attn_mask *mk = &d->mask;
    const __m512 vsc = _mm512_set1_ps(x->sc), ninf = _mm512_set1_ps(-INFINITY);
    const __m512 l2e = _mm512_set1_ps(AX_LOG2E);
    /* plain: every key of the (padded) block visible to every row, no mask touches it, and scale > 0 */
    const int plain = !x->generic && j0 + nbp <= x->minlim && x->sc > 0.0f;

    /* One read of a plain block after the first: its exponentials are taken against the lanes' mu as they
     * stand while the same loop finds the block's max; only when that max moves some lane's mu (rare once
     * the first block set them, see AX_LAZY) is the block read again against the new mu. Either way the
     * exponentials are those of the two-pass order (max, then exponentials), bit for bit. Not with dropout,
     * whose loop overwrites the scores. */
    const int drop = d->dropout > 0.0f;
    const int optimistic = plain && !first && !drop;

    /* the block's max per query lane. A plain block keeps the raw sums and scales them in the exponential
     * (scale > 0 keeps the order, so the max scaled is the max of the scaled: the same bits as each x) */
    __m512 mx[AX_NQ], cc = _mm512_set1_ps(1.0f);
    _Pragma("GCC unroll 4")
    for (int q = 0; q < AX_NQ; q++) mx[q] = ninf;
    if (plain) {
        if (!optimistic)
            for (int j = 0; j < nbp; j++)
                _Pragma("GCC unroll 4")
                for (int q = 0; q < AX_NQ; q++) mx[q] = _mm512_max_ps(mx[q], _mm512_loadu_ps(St + j * AX_BR + 16 * q));
        cc = vsc;
    } else {
        __m512i lim[AX_NQ];
        _Pragma("GCC unroll 4")
        for (int q = 0; q < AX_NQ; q++) lim[q] = _mm512_loadu_si512(x->lim + 16 * q);
        for (int j = 0; j < nbp; j++) {
            const __m512i jj = _mm512_set1_epi32(j0 + j);
            _Pragma("GCC unroll 4")
            for (int q = 0; q < AX_NQ; q++) {
                float *s = St + j * AX_BR + 16 * q;
                const __m512 y = _mm512_mul_ps(_mm512_loadu_ps(s), vsc);
                const __m512 ym = _mm512_mask_mov_ps(y, _mm512_cmple_epi32_mask(lim[q], jj), ninf);
                _mm512_storeu_ps(s, ym);
                mx[q] = _mm512_max_ps(mx[q], ym);   /* the max on the way (redone below if a mask changes x) */
            }
        }
        if (x->generic) {
            _Pragma("GCC unroll 4")
            for (int q = 0; q < AX_NQ; q++) mx[q] = ninf;
            for (int i = 0; i < x->nr; i++) {
                const uint8_t *al = attn__allow_row(mk, x->b, x->h, x->t0 + i);
                const float *bi = attn__bias_row(mk, x->b, x->h, x->t0 + i);
                for (int j = 0; j < nb; j++) {
                    float *s = St + j * AX_BR + i;
                    if (al && !al[j0 + j]) *s = -INFINITY;
                    else if (bi) *s = ax_add_bias(*s, bi[j0 + j]);
                }
            }
            for (int j = 0; j < nbp; j++)
                _Pragma("GCC unroll 4")
                for (int q = 0; q < AX_NQ; q++) mx[q] = _mm512_max_ps(mx[q], _mm512_loadu_ps(St + j * AX_BR + 16 * q));
        }
    }

    const __m512 lazy = _mm512_set1_ps(AX_LAZY), ccl = _mm512_mul_ps(cc, l2e);
    __m512 mu[AX_NQ], nbs[AX_NQ], bs[AX_NQ], sum[AX_NQ];
    __mmask16 mv[AX_NQ];
    int moved = 0, fast = 1;
    _Pragma("GCC unroll 4")
    for (int q = 0; q < AX_NQ; q++) {
        mu[q] = _mm512_loadu_ps(x->mu + 16 * q);
        mv[q] = 0;
        sum[q] = bs[q] = _mm512_setzero_ps();   /* set again below; zero for the compiler, which cannot see it */
    }
    /* bs: the max the exponentials subtract, mu or (where mv) the block's; a lane with no key yet keeps
     * -inf: subtract -FLT_MAX instead so exp2 gives 0, not NaN. fast: the exponent is x·log2e - bs·log2e
     * in one FMA; else (x - bs)·log2e */
#define AX_PICK_BS()                                                                                          \
    do {                                                                                                      \
        fast = 1;                                                                                             \
        _Pragma("GCC unroll 4")                                                                               \
        for (int q = 0; q < AX_NQ; q++) {                                                                     \
            bs[q] = _mm512_max_ps(_mm512_mask_mov_ps(mu[q], mv[q], mx[q]), _mm512_set1_ps(-FLT_MAX));         \
            fast &= _mm512_cmp_ps_mask(_mm512_abs_ps(bs[q]), _mm512_set1_ps(AX_FAST), _CMP_LE_OQ) == 0xffff;  \
        }                                                                                                     \
        _Pragma("GCC unroll 4")                                                                               \
        for (int q = 0; q < AX_NQ; q++) {                                                                     \
            nbs[q] = fast ? _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), bs[q]), l2e) : bs[q];            \
            sum[q] = _mm512_setzero_ps();                                                                     \
        }                                                                                                     \
    } while (0)

    /* exponentials, their sum, and Pᵀ in bf16 pairs of keys (everything the loop reads in locals: the
     * vector stores may alias any memory, and fields read through x would be reloaded after each); MAX:
     * the block's max of the raw sums found on the way */
    float *const S0 = St;
    uint16_t *const P0 = Pt;
    const int npair = nbp / 2, dstep = tk->total / npair, rstep = tk->total % npair;   /* the steps per row pair */
    /* (the clamp stays even without masks: a finite score far below its max makes the exponent -inf) */
#define AX_ARG(v, q, PLAIN, FAST) ((FAST) ? _mm512_fmadd_ps((v), ccl, nbs[q])                                 \
                           : _mm512_mul_ps(_mm512_sub_ps((PLAIN) ? _mm512_mul_ps((v), cc) : (v), nbs[q]), l2e))
#define AX_EXP_LOOP(PLAIN, FAST, MAX, DROP)                                                                         \
    for (int j = 0, due = 0, rem = 0; j < nbp; j += 2) {                                                      \
        due += dstep, rem += rstep;                      /* due = (j/2 + 1)·total / (nbp/2), counted on */    \
        if (rem >= npair) due++, rem -= npair;                                                                \
        while (tk->step < due) ax_step(x, tk);                                                                \
        const float *s = S0 + j * AX_BR;                                                                      \
        uint16_t *p = P0 + (int64_t)((j / 32) * AX_NQ) * 512 + (j % 32 / 2) * 32;                             \
        _Pragma("GCC unroll 4")                                                                               \
        for (int q = 0; q < AX_NQ; q++) {                                                                     \
            const __m512 v0 = _mm512_loadu_ps(s + 16 * q), v1 = _mm512_loadu_ps(s + AX_BR + 16 * q);        \
            if (MAX) mx[q] = _mm512_max_ps(mx[q], _mm512_max_ps(v0, v1));                                     \
            const __m512 e0 = ax_exp2(AX_ARG(v0, q, PLAIN, FAST)), e1 = ax_exp2(AX_ARG(v1, q, PLAIN, FAST));  \
            sum[q] = _mm512_add_ps(sum[q], _mm512_add_ps(e0, e1));                                            \
            if (DROP) {                                                                                       \
                _mm512_storeu_ps(S0 + j * AX_BR + 16 * q, e0);                                                \
                _mm512_storeu_ps(S0 + j * AX_BR + AX_BR + 16 * q, e1);                                        \
            } else                                                                                            \
                _mm512_storeu_si512(p + q * 512, ax_pair(e0, e1));                                            \
        }                                                                                                     \
    }
    if (optimistic) {
        AX_PICK_BS();
        if (fast) AX_EXP_LOOP(1, 1, 1, 0)
        else AX_EXP_LOOP(1, 0, 1, 0)
    }
    if (plain)
        _Pragma("GCC unroll 4")
        for (int q = 0; q < AX_NQ; q++) mx[q] = _mm512_mul_ps(mx[q], vsc);

    /* mu moves where the block's max passes it by more than AX_LAZY (always from -inf) */
    _Pragma("GCC unroll 4")
    for (int q = 0; q < AX_NQ; q++) {
        _mm512_storeu_ps(x->mt + 16 * q, _mm512_max_ps(_mm512_loadu_ps(x->mt + 16 * q), mx[q]));
        mv[q] = _mm512_cmp_ps_mask(mx[q], _mm512_add_ps(mu[q], lazy), _CMP_GT_OQ);
        moved |= mv[q];
    }
    if (!optimistic || moved) {
        AX_PICK_BS();
        if (drop && plain && fast) AX_EXP_LOOP(1, 1, 0, 1)
        else if (drop && plain) AX_EXP_LOOP(1, 0, 0, 1)
        else if (drop && fast) AX_EXP_LOOP(0, 1, 0, 1)
        else if (drop) AX_EXP_LOOP(0, 0, 0, 1)
        else if (plain && fast) AX_EXP_LOOP(1, 1, 0, 0)
        else if (plain) AX_EXP_LOOP(1, 0, 0, 0)
        else if (fast) AX_EXP_LOOP(0, 1, 0, 0)
        else AX_EXP_LOOP(0, 0, 0, 0)
    }
#undef AX_PICK_BS
#undef AX_ARG
#undef AX_EXP_LOOP
    if (drop) {
        /* dropout on the weights that multiply V (the sum above is before dropout) */
        const float keep_scale = 1.0f / (1.0f - d->dropout);
        for (int i = 0; i < x->nr; i++) {
            const uint64_t row = ((uint64_t)x->b * d->H + x->h) * d->T + (uint64_t)(x->t0 + i);
            for (int j = 0; j < nb; j++) {
                float *s = St + j * AX_BR + i;
                *s = attn__dropout_keep(d->seed, row * d->S + (uint64_t)(j0 + j), d->dropout) ? *s * keep_scale : 0.0f;
            }
        }
        for (int j = 0; j < nbp; j += 2) {
            const float *s = St + j * AX_BR;
            uint16_t *p = Pt + (int64_t)((j / 32) * AX_NQ) * 512 + (j % 32 / 2) * 32;
            _Pragma("GCC unroll 4")
            for (int q = 0; q < AX_NQ; q++)
                _mm512_storeu_si512(p + q * 512,
                                    ax_pair(_mm512_loadu_ps(s + 16 * q), _mm512_loadu_ps(s + AX_BR + 16 * q)));
        }
    }

    ax_steps_all(x, tk);
    if (tk->pv_nkc) ax_fix_bad(x, tk);

    /* alpha = exp2(mu - mu_new) where mu moved (1 elsewhere); l = alpha·l + Σ; Oᵀ ∘= alpha */
    if (moved) {
        __m512 al[AX_NQ];
        _Pragma("GCC unroll 4")
        for (int q = 0; q < AX_NQ; q++) {
            al[q] = _mm512_mask_blend_ps(mv[q], _mm512_set1_ps(1.0f),
                                         attn__exp2_avx512(_mm512_mul_ps(_mm512_sub_ps(mu[q], bs[q]), l2e)));
            _mm512_storeu_ps(x->l + 16 * q, _mm512_fmadd_ps(_mm512_loadu_ps(x->l + 16 * q), al[q], sum[q]));
            _mm512_storeu_ps(x->mu + 16 * q, _mm512_mask_mov_ps(mu[q], mv[q], mx[q]));
        }
        if (!first)
            for (int r = 0; r < 16 * x->NXT; r++)
                _Pragma("GCC unroll 4")
                for (int q = 0; q < AX_NQ; q++) {
                    float *o = x->Ot + r * AX_BR + 16 * q;
                    _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), al[q]));
                }
    } else {
        _Pragma("GCC unroll 4")
        for (int q = 0; q < AX_NQ; q++)
            _mm512_storeu_ps(x->l + 16 * q, _mm512_add_ps(_mm512_loadu_ps(x->l + 16 * q), sum[q]));
    }
}

/* B tiles of bf16 pairs from bf16 rows, for query tiles [qt0, qt0 + nqt) of a block of 64 rows: tile (c, qt) at
 * Qt + (c·4 + qt)·512, row r, query n: row 16·qt + n, dims 32·c + 2·r + {0,1}, of the rows src + i·stride
 * (elements), zero past row nr and dim D. Per tile, 16 rows of 32 dims loaded (masked past D) and
 * transposed in registers as 16 x 16 pairs: a 32-bit gather per tile row, as it was, cost about 1.5% of
 * the 1-thread forward at D = 64. */
static void ax_gather_pairs(uint16_t *Qt, int NC, int qt0, int nqt, const uint16_t *src, int64_t stride, int nr,
                            int D) {
    for (int qt = qt0; qt < qt0 + nqt; qt++) {
        const int n = nr - 16 * qt < 0 ? 0 : nr - 16 * qt < 16 ? nr - 16 * qt : 16;
        const uint16_t *base = src + (int64_t)16 * qt * stride;
        for (int c = 0; c < NC; c++) {
            const int nd = D - 32 * c;
            const __mmask32 m = nd >= 32 ? 0xffffffffu : nd > 0 ? (__mmask32)((1u << nd) - 1) : 0;
            __m512i w[16], r[16];
            for (int k = 0; k < 16; k++)
                w[k] = k < n ? _mm512_maskz_loadu_epi16(m, base + (int64_t)k * stride + 32 * c) : _mm512_setzero_si512();
            ax_transpose16(w, r);
            uint16_t *dst = Qt + (int64_t)(c * 4 + qt) * 512;
            for (int pr = 0; pr < 16; pr++) _mm512_storeu_si512(dst + pr * 32, r[pr]);
        }
    }
}

/* Qᵀ of a block of nr query rows starting at qb as B tiles: tile (c, qt), row r, query n:
 * q[16·qt + n][32·c + 2·r + {0,1}], zero padded. bf16 tensors by vector loads and transposes (a scalar
 * loop took a tenth of the forward at D = 64). */
static void ax_pack_q(const attn_sdpa_desc *d, const ax_dims *z, uint16_t *Qt, const char *qb, int nr) {
    const int D = d->D, dt = d->dtype;
    if (dt == ATTN_DTYPE_BF16 && d->q.t >= 0 && d->q.t <= INT32_MAX / 32) {
        ax_gather_pairs(Qt, z->NC, 0, AX_NQ, (const uint16_t *)qb, d->q.t, nr, D);
        return;
    }
    const int es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    for (int i = 0; i < AX_BR; i++) {
        const char *src = qb + (int64_t)(i < nr ? i : 0) * d->q.t * es;
        for (int c = 0; c < z->NC; c++) {
            uint16_t *dst = Qt + ((int64_t)(c * AX_NQ + i / 16) * 16) * 32 + (i % 16) * 2;
            for (int r = 0; r < 16; r++)
                for (int e = 0; e < 2; e++) {
                    const int xx = 32 * c + 2 * r + e;
                    dst[r * 32 + e] = i < nr && xx < D ? ax_get(src, dt, xx) : 0;
                }
        }
    }
}

static void ax_block(const ax_fwd *cx, char *tw, int b, int h, int t0, int nr) {
    const attn_sdpa_desc *d = cx->d;
    const ax_dims *z = &cx->z;
    const int H = d->H, T = d->T, S = d->S, Dv = d->Dv, G = H / d->Hkv, hk = h / G;
    const int DvP = z->DvP, BC = z->BC;
    const attn_mask *mk = &d->mask;
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;

    ax_blk x;
    x.d = d; x.b = b; x.h = h; x.t0 = t0; x.nr = nr; x.NC = z->NC; x.NXT = z->NXT;
    x.generic = mk->allow || mk->bias;
    x.sc = d->scale;
    const int64_t pair = (int64_t)b * d->Hkv + hk;
    x.kp = (const uint16_t *)(cx->shared + pair * (z->kpack + z->vpack));
    x.vt = (const uint16_t *)((const char *)x.kp + z->kpack);
    x.bad = (const uint32_t *)(cx->shared + z->flags) + pair * (z->SP / 32);
    x.vb = (const char *)cx->v + (b * d->v.b + hk * d->v.h) * es;
    x.Qt = (uint16_t *)tw;
    x.St[0] = (float *)(tw + z->qt);
    x.St[1] = (float *)((char *)x.St[0] + z->st);
    x.Pt[0] = (uint16_t *)((char *)x.St[1] + z->st);
    x.Pt[1] = (uint16_t *)((char *)x.Pt[0] + z->pt);
    x.Ot = (float *)((char *)x.Pt[1] + z->pt);
    x.mu = (float *)((char *)x.Ot + z->ot);
    x.mt = x.mu + AX_BR;
    x.l = x.mt + AX_BR;
    x.lim = (int32_t *)(x.l + AX_BR);

    /* Qᵀ as B tiles; key limits per row (padding rows copy the last row's) */
    const char *qb = (const char *)cx->q + (b * d->q.b + h * d->q.h + (int64_t)t0 * d->q.t) * es;
    ax_pack_q(d, z, x.Qt, qb, nr);
    int minlim = S, maxlim = 0;
    for (int i = 0; i < AX_BR; i++) {
        x.lim[i] = attn__key_limit(mk, b, t0 + (i < nr ? i : nr - 1), T, S);
        if (x.lim[i] < minlim) minlim = x.lim[i];
        if (x.lim[i] > maxlim) maxlim = x.lim[i];
        x.mu[i] = x.mt[i] = -INFINITY;
        x.l[i] = 0.0f;
    }
    x.minlim = minlim;
    for (int p = 0; p < AX_NQ / 2; p++) {
        x.plim[p] = 0;
        for (int i = 32 * p; i < 32 * p + 32; i++) x.plim[p] = x.lim[i] > x.plim[p] ? x.lim[i] : x.plim[p];
    }
    memset(x.Ot, 0, sizeof(float) * (size_t)DvP * AX_BR);

    /* the key blocks, software-pipelined: while the softmax of block j+1 runs on AVX-512, the tiles do
     * P·V of block j and the scores of block j+2 (two Sᵀ and two Pᵀ buffers) */
    const int nblk = (maxlim + BC - 1) / BC;
#define AX_NB(j) (maxlim - (j) * BC < BC ? maxlim - (j) * BC : BC)
    ax_tasks tk;
    if (nblk > 0) {
        ax_tasks_init(&tk, &x, NULL, 0, 0, x.St[0], 0, ax_up32(AX_NB(0)));
        ax_steps_all(&x, &tk);
        ax_tasks_init(&tk, &x, NULL, 0, 0, x.St[1], BC, nblk > 1 ? ax_up32(AX_NB(1)) : 0);
        ax_softmax(&x, x.St[0], x.Pt[0], 0, AX_NB(0), ax_up32(AX_NB(0)), 1, &tk);
    }
    for (int j = 0; j < nblk; j++) {
        ax_tasks_init(&tk, &x, x.Pt[j & 1], j * BC, ax_up32(AX_NB(j)), x.St[j & 1], (j + 2) * BC,
                      j + 2 < nblk ? ax_up32(AX_NB(j + 2)) : 0);
        if (j + 1 < nblk)
            ax_softmax(&x, x.St[(j + 1) & 1], x.Pt[(j + 1) & 1], (j + 1) * BC, AX_NB(j + 1), ax_up32(AX_NB(j + 1)), 0,
                       &tk);
        else {
            ax_steps_all(&x, &tk);
            ax_fix_bad(&x, &tk);
        }
    }
#undef AX_NB

    /* out = Oᵀᵀ / l; the row statistics; rows that saw no key: zeros. bf16: per 16 rows and 32 columns,
     * 16 vectors of bf16 column pairs (lane = row) transposed in registers and stored one row each (a
     * scalar loop took a tenth of the forward at D = 64; a 32-bit scatter per pair of columns, which
     * replaced it, about 2% of the 1-thread forward) */
    const int64_t off0 = b * d->out.b + h * d->out.h + (int64_t)t0 * d->out.t;
    const int vec = dt == ATTN_DTYPE_BF16;
    if (vec) {
        for (int qt = 0; qt < AX_NQ && 16 * qt < nr; qt++) {
            const int n = nr - 16 * qt < 16 ? nr - 16 * qt : 16;
            const __m512 l = _mm512_loadu_ps(x.l + 16 * qt);
            const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(l, _mm512_setzero_ps(), _CMP_GT_OQ),
                                                   _mm512_set1_ps(1.0f), l);
            uint16_t *base = (uint16_t *)cx->out + off0 + (int64_t)16 * qt * d->out.t;
            for (int x0 = 0; x0 + 1 < Dv; x0 += 32) {
                const int np = (Dv - x0) / 2 < 16 ? (Dv - x0) / 2 : 16;        /* pairs of columns here */
                __m512i w[16], r[16];
                for (int k = 0; k < 16; k++) {                 /* Ot has DvP >= x0 + 32 rows */
                    const float *o = x.Ot + (x0 + 2 * k) * AX_BR + 16 * qt;
                    w[k] = ax_pair(_mm512_mul_ps(_mm512_loadu_ps(o), inv), _mm512_mul_ps(_mm512_loadu_ps(o + AX_BR), inv));
                }
                ax_transpose16(w, r);
                for (int i = 0; i < n; i++)
                    _mm512_mask_storeu_epi32(base + (int64_t)i * d->out.t + x0, (__mmask16)((1u << np) - 1), r[i]);
            }
        }
    }
    for (int i = 0; i < nr; i++) {
        const int64_t row = ((int64_t)b * H + h) * T + t0 + i;
        const float inv = x.l[i] > 0.0f ? 1.0f / x.l[i] : 0.0f;
        const int64_t off = off0 + (int64_t)i * d->out.t;
        if (vec) {
            if (Dv % 2) ((uint16_t *)cx->out)[off + Dv - 1] = attn__bf16(x.Ot[(Dv - 1) * AX_BR + i] * inv);
        } else if (dt == ATTN_DTYPE_BF16) {
            uint16_t *orow = (uint16_t *)cx->out + off;
            for (int xx = 0; xx < Dv; xx++) orow[xx] = attn__bf16(x.Ot[xx * AX_BR + i] * inv);
        } else {
            float *orow = cx->out + off;
            for (int xx = 0; xx < Dv; xx++) orow[xx] = x.Ot[xx * AX_BR + i] * inv;
        }
        ax_put_stats(cx->stats, row, x.mt[i], x.mu[i], x.l[i]);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Stages and items.
 */
static int64_t ax_nqb(const attn_sdpa_desc *d) { return (d->T + AX_BR - 1) / AX_BR; }
static int64_t ax_pack_items(const attn_sdpa_desc *d) { return (int64_t)d->B * d->Hkv * (ax_up32(d->S) / 32); }

static void ax_forward(const attn_sdpa_desc *d, float *out, float *stats, const float *q, const float *k,
                       const float *v, void *work, const attn__part *part) {
    ax_fwd cx = {d, ax_dims_of(d), out, stats, q, v, (char *)work};
    int64_t local = -1;
    if (part->stage == 0) {
        const int64_t per = ax_up32(d->S) / 32, items = ax_pack_items(d);
        for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
            const int64_t pr = it / per;
            ax_pack_chunk(d, &cx.z, cx.shared, k, v, (int)(pr / d->Hkv), (int)(pr % d->Hkv), (int)(it % per) * 32);
        }
        return;
    }
    char *tw = cx.shared + ax_round(cx.z.shared) + (size_t)part->ith * cx.z.thread;
    /* flush-to-zero for ax_exp2 (the tiles flush anyway); the caller's MXCSR is restored below */
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8000);
    const int64_t nqb = ax_nqb(d), items = (int64_t)d->B * d->H * nqb;
    int on = 0;
    /* head by head, latest query blocks first: under a causal mask they are the longest */
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        if (!on) {
            ax_tiles_on();
            on = 1;
        }
        const int64_t bh = it / nqb;
        const int qblk = (int)(nqb - 1 - it % nqb), b = (int)(bh / d->H), h = (int)(bh % d->H);
        const int t0 = qblk * AX_BR, nr = d->T - t0 < AX_BR ? d->T - t0 : AX_BR;
        ax_block(&cx, tw, b, h, t0, nr);
    }
    if (on) _tile_release();
    _mm_setcsr(csr);
}

/* ===================================================================================================
 * Backward, on tiles: the five products (the scores and dP recomputed, dV, dK, dQ) in bf16 with fp32
 * accumulation; P, dS and the masks on AVX-512. Three stages:
 *   stage 0  packs, as tile blocks: per (b, kv head) K (the scores' A, the same blocks and values as the
 *            forward's), V (dP's A) and Kᵀ (dQ's A); per (b, h) Qᵀ and dOᵀ (B of the scores and of dP,
 *            the forward's Qᵀ layout), Q and dO as query pairs (B of dK and dV), the row statistics (m, L) and
 *            Δ = rowsum(dout ∘ out) per row; the dQ slots cleared
 *   stage 1  items (b, kv head, chunk of key blocks): per block of 64 keys, every head of the group and
 *            block of 64 query rows that sees it: Sᵀ and dPᵀ on tiles, P = exp2(-(max(0, m - x)·log2e + L)),
 *            dS = P ∘ (dP - Δ) (dropout: dP·m and P·m), dV += (P·m)ᵀ dO, dK += dSᵀ Q on tiles into the
 *            block's fp32 sums, dQᵀ += Kᵀ dSᵀ into the chunk's slot; the block's dk, dv rows written
 *   stage 2  dq += scale · Σ_chunk slot, chunks in order
 * x is recomputed with the forward's tiles, values and order (the same bits). Items own their keys' dK, dV
 * and their chunk's slot: bitwise the same result for any thread count.
 */
#define AXB_B 64                 /* keys per block and query rows per block (4 tiles each) */
#define AXB_NCH 4                /* at most this many key chunks (dQ slots) per (b, kv head) */

typedef struct axb_dims {
    int DP, DvP, NC, NCv, NXd, NXv, SPb, TPb, nkb, nqb, nch;
    size_t kside;                /* bytes per (b, kv head): K, V, Kᵀ */
    size_t ka, va;               /* offsets of V and Kᵀ in it (K first) */
    size_t qside;                /* bytes per (b, h): Qᵀ, dOᵀ, Q pairs, dO pairs, m, L, Δ */
    size_t dot, qp, dop, rows;   /* offsets in it (Qᵀ first) */
    size_t kall, qall, slots;    /* totals */
    size_t thread;
} axb_dims;

static int axb_up64(int n) { return (n + 63) / 64 * 64; }

static axb_dims axb_dims_of(const attn_sdpa_desc *d) {
    axb_dims z;
    z.DP = ax_up32(d->D);
    z.DvP = ax_up32(d->Dv);
    z.NC = z.DP / 32;
    z.NCv = z.DvP / 32;
    z.NXd = z.DP / 16;
    z.NXv = z.DvP / 16;
    z.SPb = axb_up64(d->S);
    z.TPb = axb_up64(d->T);
    z.nkb = z.SPb / AXB_B;
    z.nqb = z.TPb / AXB_B;
    /* chunks: more when there are few (b, kv head) pairs; the slots (nch·B·H·TPb·DP floats) under 512 MiB */
    z.nch = (int64_t)d->B * d->Hkv >= 4 ? 2 : AXB_NCH;
    if (z.nch > z.nkb) z.nch = z.nkb;
    while (z.nch > 1 && (double)z.nch * d->B * d->H * z.TPb * z.DP * 4 > 512.0 * 1024 * 1024) z.nch /= 2;
    z.ka = ax_round((size_t)z.SPb * z.DP * 2);
    z.va = z.ka + ax_round((size_t)z.SPb * z.DvP * 2);
    z.kside = z.va + ax_round((size_t)z.SPb * z.DP * 2);
    z.dot = ax_round((size_t)z.TPb * z.DP * 2);
    z.qp = z.dot + ax_round((size_t)z.TPb * z.DvP * 2);
    z.dop = z.qp + ax_round((size_t)z.TPb * z.DP * 2);
    z.rows = z.dop + ax_round((size_t)z.TPb * z.DvP * 2);
    z.qside = z.rows + 3 * (size_t)z.TPb * 4;             /* m, L, Δ (TPb is a multiple of 64) */
    z.kall = (size_t)d->B * d->Hkv * z.kside;
    z.qall = (size_t)d->B * d->H * z.qside;
    z.slots = ax_round((size_t)z.nch * d->B * d->H * z.TPb * z.DP * 4);
    /* St, dPᵀ (64 x 64 fp32); (P·m)ᵀ, dSᵀ as A blocks and dSᵀ as pairs (64 x 64 bf16); dK, dV sums; lim */
    z.thread = 2 * ax_round(AXB_B * AXB_B * 4) + 3 * ax_round(AXB_B * AXB_B * 2) +
               ax_round((size_t)AXB_B * z.DP * 4) + ax_round((size_t)AXB_B * z.DvP * 4) + ax_round(AXB_B * 4);
    return z;
}

typedef struct axb_ctx {
    const attn_sdpa_desc *d;
    axb_dims z;
    char *kall, *qall;
    float *slots;
    char *threads;
} axb_ctx;

static axb_ctx axb_ctx_of(const attn_sdpa_desc *d, void *work) {
    axb_ctx c;
    c.d = d;
    c.z = axb_dims_of(d);
    c.kall = (char *)work;
    c.qall = c.kall + c.z.kall;
    c.slots = (float *)(c.qall + c.z.qall);
    c.threads = (char *)c.slots + c.z.slots;
    return c;
}

/* dst (n) += src (n)·scale into a row of type dt. */
static inline void axb_acc_row(void *row, int dt, const float *src, int n, float scale) {
    if (dt == ATTN_DTYPE_BF16) {
        uint16_t *r = (uint16_t *)row;
        for (int x = 0; x < n; x++) r[x] = attn__bf16(attn__f32(r[x]) + scale * src[x]);
    } else {
        float *r = (float *)row;
        for (int x = 0; x < n; x++) r[x] += scale * src[x];
    }
}

/* Stage 0, K side: keys [j0, j0 + 32) of (b, hk). */
static void axb_pack_keys(const axb_ctx *cx, const void *k, const void *v, int b, int hk, int j0) {
    const attn_sdpa_desc *d = cx->d;
    const axb_dims *z = &cx->z;
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    char *base = cx->kall + ((size_t)b * d->Hkv + hk) * z->kside;
    uint16_t *ka = (uint16_t *)base, *va = (uint16_t *)(base + z->ka), *kt = (uint16_t *)(base + z->va);
    const char *kb = (const char *)k + (b * d->k.b + hk * d->k.h) * es;
    const char *vb = (const char *)v + (b * d->v.b + hk * d->v.h) * es;
    if (dt == ATTN_DTYPE_BF16) {
        /* bf16: rows of 32 elements by masked vector loads, Kᵀ without the element-type test */
        for (int j = j0; j < j0 + 32; j++) {
            const uint16_t *ks = (const uint16_t *)kb + (int64_t)j * d->k.t;
            const uint16_t *vs = (const uint16_t *)vb + (int64_t)j * d->v.t;
            for (int w = 0; w < 2; w++) {
                const int nc = w ? z->NCv : z->NC, D = w ? d->Dv : d->D;
                uint16_t *dst0 = (w ? va : ka) + (((int64_t)(j / 16) * nc) * 16 + j % 16) * 32;
                for (int c = 0; c < nc; c++) {
                    const int n = j < d->S ? D - 32 * c : 0;
                    const __mmask32 m = n >= 32 ? 0xffffffffu : n > 0 ? (__mmask32)((1u << n) - 1) : 0;
                    _mm512_storeu_si512(dst0 + (int64_t)c * 512, _mm512_maskz_loadu_epi16(m, (w ? vs : ks) + 32 * c));
                }
            }
            for (int x = 0; x < z->DP; x++) {
                const uint16_t kv = j < d->S && x < d->D ? ks[x] : 0;
                kt[(((int64_t)(j0 / 32) * z->NXd + x / 16) * 16 + x % 16) * 32 + (j - j0)] =
                    (kv & 0x7f80) == 0x7f80 ? 0 : kv;
            }
        }
        return;
    }
    for (int j = j0; j < j0 + 32; j++) {
        const char *ks = kb + (int64_t)j * d->k.t * es, *vs = vb + (int64_t)j * d->v.t * es;
        for (int c = 0; c < z->NC; c++) {
            uint16_t *dst = ka + (((int64_t)(j / 16) * z->NC + c) * 16 + j % 16) * 32;
            for (int x = 0; x < 32; x++) dst[x] = j < d->S && 32 * c + x < d->D ? ax_get(ks, dt, 32 * c + x) : 0;
        }
        for (int c = 0; c < z->NCv; c++) {
            uint16_t *dst = va + (((int64_t)(j / 16) * z->NCv + c) * 16 + j % 16) * 32;
            for (int x = 0; x < 32; x++) dst[x] = j < d->S && 32 * c + x < d->Dv ? ax_get(vs, dt, 32 * c + x) : 0;
        }
        /* Kᵀ: block (j0/32, dim tile), row = dim % 16, column = key - j0. NaN and Inf become 0 here (dQ's
         * operand only): a row that sees such a key has NaN in its dS already, and one that does not must
         * not get 0·NaN */
        for (int x = 0; x < z->DP; x++) {
            const uint16_t kv = j < d->S && x < d->D ? ax_get(ks, dt, x) : 0;
            kt[(((int64_t)(j0 / 32) * z->NXd + x / 16) * 16 + x % 16) * 32 + (j - j0)] =
                (kv & 0x7f80) == 0x7f80 ? 0 : kv;
        }
    }
}

/* The backward's row statistics: m and L = log2 l, for P = exp2(-(max(0, m - x)·log2e + L)) (subtract
 * first: exact at any logit size), from the forward's (m, log l); a row with no key (m = -inf) or a padding
 * row (row < 0) gets m = +inf, so that every P of it is 0. */
static inline void axb_row_stats(const float *stats, int64_t row, float *m, float *L) {
    const float mm = row >= 0 ? stats[2 * row] : -INFINITY;
    *m = mm == -INFINITY ? INFINITY : mm;
    *L = mm == -INFINITY ? 0.0f : stats[2 * row + 1] * AX_LOG2E;
}

/* Δ = rowsum(dout ∘ out) of query rows [t0, t0 + 32) of (b, h) for bf16 tensors, on tiles with dP's own
 * arithmetic: the diagonal of O dOᵀ, O's rows as A tiles against the very dOᵀ B tiles dPᵀ = V dOᵀ reads,
 * from zero, Dv in steps of 32. Where out is one V row (a weight of exactly 1, as at logits near 1e9) Δ is
 * then that key's dP bit for bit and dP - Δ is exactly 0, as in exact arithmetic; a plain fp32 sum
 * differs from the tile's by about 1e-7 relative, which times |q| near 1e9 put dk off by hundreds. fp32
 * tensors keep the plain sum of the caller's fp32 out: their out is not one V row there anyway (the
 * forward's P were rounded to bf16 before P·V), and rounding out to bf16 for the tiles moved Δ by about
 * 1e-3 and, times |q| up to 2000, dk by up to 4, past test_bf16's bound against the reference that reads
 * that fp32 out. Needs the tiles on (stage 0 turns them on); dOᵀ of these rows already packed. Rows past
 * T give 0. */
static void axb_delta(const axb_ctx *cx, const void *out, int b, int h, int t0, const uint16_t *dot, float *delta) {
    const attn_sdpa_desc *d = cx->d;
    const int qb = t0 / 64, NCv = cx->z.NCv;
    uint16_t oa[16 * 32] __attribute__((aligned(64)));
    float c16[16 * 16] __attribute__((aligned(64)));
    for (int qt = (t0 % 64) / 16; qt < (t0 % 64) / 16 + 2; qt++) {
        const int r0 = 64 * qb + 16 * qt;
        _tile_zero(0);
        for (int c = 0; c < NCv; c++) {
            for (int r = 0; r < 16; r++) {
                const int t = r0 + r;
                const uint16_t *os = (const uint16_t *)out + b * d->out.b + h * d->out.h +
                                     (int64_t)(t < d->T ? t : 0) * d->out.t;
                for (int x = 0; x < 32; x++) oa[r * 32 + x] = t < d->T && 32 * c + x < d->Dv ? os[32 * c + x] : 0;
            }
            _tile_loadd(4, oa, 64);
            _tile_loadd(6, dot + (((int64_t)qb * NCv + c) * 4 + qt) * 512, 64);
            _tile_dpbf16ps(0, 4, 6);
        }
        _tile_stored(0, c16, 64);
        for (int r = 0; r < 16; r++) delta[r0 + r] = r0 + r < d->T ? c16[r * 16 + r] : 0.0f;
    }
}

/* Stage 0, Q side: query rows [t0, t0 + 32) of (b, h), and the dQ slots of their block when t0 starts it. */
static void axb_pack_rows(const axb_ctx *cx, const void *q, const void *dout, const void *out, const float *stats,
                          int b, int h, int t0) {
    const attn_sdpa_desc *d = cx->d;
    const axb_dims *z = &cx->z;
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    const int64_t bh = (int64_t)b * d->H + h;
    char *base = cx->qall + (size_t)bh * z->qside;
    uint16_t *qt = (uint16_t *)base, *dot = (uint16_t *)(base + z->dot);
    uint16_t *qp = (uint16_t *)(base + z->qp), *dop = (uint16_t *)(base + z->dop);
    float *rm = (float *)(base + z->rows), *rl = rm + z->TPb, *delta = rl + z->TPb;
    if (t0 % 64 == 0)
        for (int ch = 0; ch < z->nch; ch++)
            memset(cx->slots + (((size_t)ch * d->B * d->H + bh) * z->nqb + t0 / 64) * z->DP * 64, 0,
                   sizeof(float) * z->DP * 64);
    if (dt == ATTN_DTYPE_BF16 && d->q.t >= 0 && d->q.t <= INT32_MAX / 32 && d->out.t >= 0 &&
        d->out.t <= INT32_MAX / 32) {
        /* bf16: Qᵀ and dOᵀ as the forward packs Qᵀ, the pairs of rows by vector loads interleaved, Δ and
         * the statistics per row as below */
        const int qb = t0 / 64, nr = d->T - 64 * qb;
        const uint16_t *q0 = (const uint16_t *)q + b * d->q.b + h * d->q.h + (int64_t)64 * qb * d->q.t;
        const uint16_t *g0 = (const uint16_t *)dout + b * d->out.b + h * d->out.h + (int64_t)64 * qb * d->out.t;
        ax_gather_pairs(qt + (int64_t)qb * z->NC * 4 * 512, z->NC, (t0 % 64) / 16, 2, q0, d->q.t, nr, d->D);
        ax_gather_pairs(dot + (int64_t)qb * z->NCv * 4 * 512, z->NCv, (t0 % 64) / 16, 2, g0, d->out.t, nr, d->Dv);
        const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                             23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        for (int pr = 0; pr < 16; pr++) {
            const int t = t0 + 2 * pr;
            for (int w = 0; w < 2; w++) {
                const int nx = w ? z->NXv : z->NXd, D = w ? d->Dv : d->D;
                const int64_t stride = w ? d->out.t : d->q.t;
                const uint16_t *r0 = (w ? g0 : q0) + (int64_t)(t - 64 * qb) * stride;
                uint16_t *dst = (w ? dop : qp) + ((int64_t)(t0 / 32) * nx) * 512 + pr * 32;
                for (int xt = 0; xt < nx; xt++) {
                    const int n = D - 16 * xt;
                    const __mmask16 m = n >= 16 ? 0xffff : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
                    const __m256i a = _mm256_maskz_loadu_epi16(t < d->T ? m : 0, r0 + 16 * xt);
                    const __m256i c = _mm256_maskz_loadu_epi16(t + 1 < d->T ? m : 0, r0 + stride + 16 * xt);
                    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1);
                    _mm512_storeu_si512(dst + (int64_t)xt * 512, _mm512_permutexvar_epi16(idx, both));
                }
            }
        }
        for (int t = t0; t < t0 + 32; t++)
            axb_row_stats(stats, t < d->T ? bh * d->T + t : -1, &rm[t], &rl[t]);
        axb_delta(cx, out, b, h, t0, dot, delta);
        return;
    }
    for (int t = t0; t < t0 + 32; t++) {
        const int real = t < d->T;
        const int tt = real ? t : 0;
        const char *qs = (const char *)q + (b * d->q.b + h * d->q.h + (int64_t)tt * d->q.t) * es;
        const char *gs = (const char *)dout + (b * d->out.b + h * d->out.h + (int64_t)tt * d->out.t) * es;
        const int qb = t / 64, i = t % 64, qti = i / 16, n = i % 16;
        for (int c = 0; c < z->NC; c++)
            for (int r = 0; r < 16; r++)
                for (int e = 0; e < 2; e++) {
                    const int x = 32 * c + 2 * r + e;
                    qt[(((int64_t)qb * z->NC + c) * 4 + qti) * 512 + r * 32 + n * 2 + e] =
                        real && x < d->D ? ax_get(qs, dt, x) : 0;
                }
        for (int c = 0; c < z->NCv; c++)
            for (int r = 0; r < 16; r++)
                for (int e = 0; e < 2; e++) {
                    const int x = 32 * c + 2 * r + e;
                    dot[(((int64_t)qb * z->NCv + c) * 4 + qti) * 512 + r * 32 + n * 2 + e] =
                        real && x < d->Dv ? ax_get(gs, dt, x) : 0;
                }
        const int qc = t / 32, pr = (t % 32) / 2, e = t % 2;
        for (int x = 0; x < z->DP; x++)
            qp[((int64_t)qc * z->NXd + x / 16) * 512 + pr * 32 + (x % 16) * 2 + e] =
                real && x < d->D ? ax_get(qs, dt, x) : 0;
        for (int x = 0; x < z->DvP; x++)
            dop[((int64_t)qc * z->NXv + x / 16) * 512 + pr * 32 + (x % 16) * 2 + e] =
                real && x < d->Dv ? ax_get(gs, dt, x) : 0;
        if (dt != ATTN_DTYPE_BF16) {
            /* fp32 tensors: Δ from the fp32 out and dout the caller gave (rounding out to bf16 would lose
             * what the reference keeps; see axb_delta) */
            const char *os = (const char *)out + (b * d->out.b + h * d->out.h + (int64_t)tt * d->out.t) * es;
            float s = 0.0f;
            if (real)
                for (int x = 0; x < d->Dv; x++) s += ((const float *)os)[x] * ((const float *)gs)[x];
            delta[t] = s;
        }
        axb_row_stats(stats, real ? bh * d->T + t : -1, &rm[t], &rl[t]);
    }
    if (dt == ATTN_DTYPE_BF16) axb_delta(cx, out, b, h, t0, dot, delta);
}

/* One block of 64 keys (j0, nb real) of (b, hk) against one block of 64 query rows (t0) of head h. */
static void axb_block(const axb_ctx *cx, char *tw, float *dKs, float *dVs, int b, int hk, int h, int j0, int nb,
                      int t0, int ch) {
    const attn_sdpa_desc *d = cx->d;
    const axb_dims *z = &cx->z;
    const attn_mask *mk = &d->mask;
    const int T = d->T, S = d->S, NC = z->NC, NCv = z->NCv, NXd = z->NXd, NXv = z->NXv, DP = z->DP, DvP = z->DvP;
    const int nr = T - t0 < AXB_B ? T - t0 : AXB_B, qb = t0 / 64, kb = j0 / 64;
    const int64_t bh = (int64_t)b * d->H + h;
    const char *kbase = cx->kall + ((size_t)b * d->Hkv + hk) * z->kside;
    const uint16_t *KA = (const uint16_t *)kbase, *VA = (const uint16_t *)(kbase + z->ka);
    const uint16_t *KtA = (const uint16_t *)(kbase + z->va);
    const char *qbase = cx->qall + (size_t)bh * z->qside;
    const uint16_t *QtB = (const uint16_t *)qbase, *dOtB = (const uint16_t *)(qbase + z->dot);
    const uint16_t *QB = (const uint16_t *)(qbase + z->qp), *dOB = (const uint16_t *)(qbase + z->dop);
    const float *rm = (const float *)(qbase + z->rows) + t0, *rl = rm + z->TPb, *delta = rl + z->TPb;
    float *St = (float *)tw;                                                   /* (64 keys, 64 queries) */
    float *dPt = (float *)(tw + ax_round(AXB_B * AXB_B * 4));                  /* (64, 64) */
    uint16_t *PdA = (uint16_t *)((char *)dPt + ax_round(AXB_B * AXB_B * 4));  /* [key tile][q chunk][16][32] */
    uint16_t *dSA = (uint16_t *)((char *)PdA + ax_round(AXB_B * AXB_B * 2));  /* the same for dS */
    uint16_t *dSB = (uint16_t *)((char *)dSA + ax_round(AXB_B * AXB_B * 2));  /* [key chunk][qt][16][16][2] */
    int32_t *lim = (int32_t *)((char *)dSB + ax_round(AXB_B * AXB_B * 2) + ax_round((size_t)AXB_B * DP * 4) +
                               ax_round((size_t)AXB_B * DvP * 4));
    for (int i = 0; i < AXB_B; i++) lim[i] = i < nr ? attn__key_limit(mk, b, t0 + i, T, S) : 0;

    /* Sᵀ = K Qᵀ (as the forward: the same blocks, from zero, D in steps of 32) and dPᵀ = V dOᵀ */
    for (int kp = 0; kp < 4; kp += 2)
        for (int qp = 0; qp < 4; qp += 2) {
            for (int w = 0; w < 2; w++) {
                const uint16_t *A = w ? VA : KA, *Bm = w ? dOtB : QtB;
                const int nc = w ? NCv : NC;
                float *dst = (w ? dPt : St) + (16 * kp) * AXB_B + 16 * qp;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int c = 0; c < nc; c++) {
                    _tile_loadd(4, A + (((int64_t)(kb * 4 + kp) * nc + c) * 512), 64);
                    _tile_loadd(5, A + (((int64_t)(kb * 4 + kp + 1) * nc + c) * 512), 64);
                    _tile_loadd(6, Bm + (((int64_t)qb * nc + c) * 4 + qp) * 512, 64);
                    _tile_loadd(7, Bm + (((int64_t)qb * nc + c) * 4 + qp + 1) * 512, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
                _tile_stored(0, dst, AXB_B * 4);
                _tile_stored(1, dst + 16, AXB_B * 4);
                _tile_stored(2, dst + 16 * AXB_B, AXB_B * 4);
                _tile_stored(3, dst + 16 * AXB_B + 16, AXB_B * 4);
            }
        }

    /* x = scale·log2e·S with the masks (as the forward), P, and dS; lanes are queries */
    const __m512 vsc = _mm512_set1_ps(d->scale), ninf = _mm512_set1_ps(-INFINITY), l2e = _mm512_set1_ps(AX_LOG2E);
    __m512i lv[4];
    __m512 mv[4], lv2[4], dl[4];
    for (int q = 0; q < 4; q++) {
        lv[q] = _mm512_loadu_si512(lim + 16 * q);
        mv[q] = _mm512_loadu_ps(rm + 16 * q);
        lv2[q] = _mm512_loadu_ps(rl + 16 * q);
        dl[q] = _mm512_loadu_ps(delta + 16 * q);
    }
    if (!mk->allow && !mk->bias && !(d->dropout > 0.0f)) {
        /* one pass over the block: per pair of key rows, x, P and dS in registers, then their bf16 forms;
         * the same operations in the same order as the passes below, so the same bits */
        for (int j = 0; j < AXB_B; j += 2) {
            __m512 P[2][4], G[2][4];
            for (int u = 0; u < 2; u++) {
                const __m512i jj = _mm512_set1_epi32(j0 + j + u);
                for (int q = 0; q < 4; q++) {
                    const __m512 sx = _mm512_mul_ps(_mm512_loadu_ps(St + (j + u) * AXB_B + 16 * q), vsc);
                    const __m512 x = _mm512_mask_mov_ps(sx, _mm512_cmple_epi32_mask(lv[q], jj), ninf);
                    const __m512 y = _mm512_max_ps(_mm512_sub_ps(mv[q], x), _mm512_setzero_ps());
                    P[u][q] = ax_exp2(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_fmadd_ps(y, l2e, lv2[q])));
                    const __mmask16 seen = _mm512_cmp_ps_mask(P[u][q], _mm512_setzero_ps(), _CMP_NEQ_UQ);
                    const __m512 dp = _mm512_loadu_ps(dPt + (j + u) * AXB_B + 16 * q);
                    G[u][q] = _mm512_maskz_mul_ps(seen, P[u][q], _mm512_sub_ps(dp, dl[q]));
                }
                for (int qc = 0; qc < 2; qc++) {
                    const size_t off = ((size_t)((j + u) / 16) * 2 + qc) * 512 + ((j + u) % 16) * 32;
                    _mm512_storeu_si512(PdA + off, (__m512i)_mm512_cvtne2ps_pbh(P[u][2 * qc + 1], P[u][2 * qc]));
                    _mm512_storeu_si512(dSA + off, (__m512i)_mm512_cvtne2ps_pbh(G[u][2 * qc + 1], G[u][2 * qc]));
                }
            }
            for (int q = 0; q < 4; q++)
                _mm512_storeu_si512(dSB + ((size_t)(j / 32) * 4 + q) * 512 + (j % 32 / 2) * 32,
                                    ax_pair(G[0][q], G[1][q]));
        }
    } else {
        for (int j = 0; j < AXB_B; j++) {
            const __m512i jj = _mm512_set1_epi32(j0 + j);
            for (int q = 0; q < 4; q++) {
                float *s = St + j * AXB_B + 16 * q;
                const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s), vsc);
                _mm512_storeu_ps(s, _mm512_mask_mov_ps(x, _mm512_cmple_epi32_mask(lv[q], jj), ninf));
            }
        }
        if (mk->allow || mk->bias)
            for (int i = 0; i < nr; i++) {
                const uint8_t *al = attn__allow_row(mk, b, h, t0 + i);
                const float *bi = attn__bias_row(mk, b, h, t0 + i);
                for (int j = 0; j < nb; j++) {
                    float *s = St + j * AXB_B + i;
                    if (al && !al[j0 + j]) *s = -INFINITY;
                    else if (bi) *s = ax_add_bias(*s, bi[j0 + j]);
                }
            }
        for (int j = 0; j < AXB_B; j++)
            for (int q = 0; q < 4; q++) {
                float *s = St + j * AXB_B + 16 * q;
                const __m512 y = _mm512_max_ps(_mm512_sub_ps(mv[q], _mm512_loadu_ps(s)), _mm512_setzero_ps());
                const __m512 e = _mm512_fmadd_ps(y, l2e, lv2[q]);
                _mm512_storeu_ps(s, ax_exp2(_mm512_sub_ps(_mm512_setzero_ps(), e)));   /* P */
            }
        if (d->dropout > 0.0f) {
            /* dP·m into dPt, P·m kept for dV below (in St's place once dS is formed) */
            const float keep_scale = 1.0f / (1.0f - d->dropout);
            for (int i = 0; i < nr; i++) {
                const uint64_t row = (uint64_t)bh * T + (uint64_t)(t0 + i);
                for (int j = 0; j < AXB_B; j++) {
                    const float mm = j < nb && attn__dropout_keep(d->seed, row * S + (uint64_t)(j0 + j), d->dropout)
                                         ? keep_scale : 0.0f;
                    float *p = St + j * AXB_B + i, *g = dPt + j * AXB_B + i;
                    const float pv = *p;
                    /* dS (a key not seen: 0, even if dP is NaN) */
                    *g = pv == 0.0f ? 0.0f : pv * (*g * mm - delta[i]);
                    *p = pv * mm;                        /* P·m */
                }
            }
        } else {
            for (int j = 0; j < AXB_B; j++)
                for (int q = 0; q < 4; q++) {
                    float *g = dPt + j * AXB_B + 16 * q;
                    const __m512 pv = _mm512_loadu_ps(St + j * AXB_B + 16 * q);
                    /* dS; 0 where P is 0 (a key the row does not see), even when dP is NaN (NaN or Inf in V) */
                    const __mmask16 seen = _mm512_cmp_ps_mask(pv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                    _mm512_storeu_ps(g, _mm512_maskz_mul_ps(seen, pv, _mm512_sub_ps(_mm512_loadu_ps(g), dl[q])));
                }
        }
        /* to bf16: (P·m)ᵀ and dSᵀ as A blocks (a key row of 32 queries), dSᵀ as B pairs of keys */
        for (int j = 0; j < AXB_B; j += 2) {
            for (int u = 0; u < 2; u++) {
                const float *p = St + (j + u) * AXB_B, *g = dPt + (j + u) * AXB_B;
                for (int qc = 0; qc < 2; qc++) {
                    const size_t off = ((size_t)((j + u) / 16) * 2 + qc) * 512 + ((j + u) % 16) * 32;
                    _mm512_storeu_si512(PdA + off, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(p + 32 * qc + 16),
                                                                               _mm512_loadu_ps(p + 32 * qc)));
                    _mm512_storeu_si512(dSA + off, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(g + 32 * qc + 16),
                                                                               _mm512_loadu_ps(g + 32 * qc)));
                }
            }
            for (int q = 0; q < 4; q++)
                _mm512_storeu_si512(dSB + ((size_t)(j / 32) * 4 + q) * 512 + (j % 32 / 2) * 32,
                                    ax_pair(_mm512_loadu_ps(dPt + j * AXB_B + 16 * q),
                                            _mm512_loadu_ps(dPt + (j + 1) * AXB_B + 16 * q)));
        }
    }

    /* dV += (P·m)ᵀ dO and dK += dSᵀ Q: per 2 key tiles x 2 value (or key) dim tiles, 2 chunks of 32 queries */
    for (int w = 0; w < 2; w++) {
        const uint16_t *A = w ? dSA : PdA, *Bm = w ? QB : dOB;
        float *acc = w ? dKs : dVs;
        const int nx = w ? NXd : NXv, ld = w ? DP : DvP;
        for (int kp = 0; kp < 4; kp += 2)
            for (int xt = 0; xt < nx; xt += 2) {
                float *c0 = acc + (16 * kp) * ld + 16 * xt;
                _tile_loadd(0, c0, ld * 4);
                _tile_loadd(1, c0 + 16, ld * 4);
                _tile_loadd(2, c0 + 16 * ld, ld * 4);
                _tile_loadd(3, c0 + 16 * ld + 16, ld * 4);
                for (int qc = 0; qc < 2; qc++) {
                    _tile_loadd(4, A + ((size_t)kp * 2 + qc) * 512, 64);
                    _tile_loadd(5, A + ((size_t)(kp + 1) * 2 + qc) * 512, 64);
                    _tile_loadd(6, Bm + ((size_t)(qb * 2 + qc) * nx + xt) * 512, 64);
                    _tile_loadd(7, Bm + ((size_t)(qb * 2 + qc) * nx + xt + 1) * 512, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
                _tile_stored(0, c0, ld * 4);
                _tile_stored(1, c0 + 16, ld * 4);
                _tile_stored(2, c0 + 16 * ld, ld * 4);
                _tile_stored(3, c0 + 16 * ld + 16, ld * 4);
            }
    }

    /* dQᵀ (DP, 64 queries) of the chunk's slot += Kᵀ dSᵀ: per 2 dim tiles x 2 query tiles, 2 chunks of 32 keys */
    float *slot = cx->slots + (((size_t)ch * d->B * d->H + bh) * z->nqb + qb) * DP * 64;
    for (int xt = 0; xt < NXd; xt += 2)
        for (int qp = 0; qp < 4; qp += 2) {
            float *c0 = slot + (16 * xt) * 64 + 16 * qp;
            _tile_loadd(0, c0, 64 * 4);
            _tile_loadd(1, c0 + 16, 64 * 4);
            _tile_loadd(2, c0 + 16 * 64, 64 * 4);
            _tile_loadd(3, c0 + 16 * 64 + 16, 64 * 4);
            for (int kc = 0; kc < 2; kc++) {
                _tile_loadd(4, KtA + ((size_t)(kb * 2 + kc) * NXd + xt) * 512, 64);
                _tile_loadd(5, KtA + ((size_t)(kb * 2 + kc) * NXd + xt + 1) * 512, 64);
                _tile_loadd(6, dSB + ((size_t)kc * 4 + qp) * 512, 64);
                _tile_loadd(7, dSB + ((size_t)kc * 4 + qp + 1) * 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, c0, 64 * 4);
            _tile_stored(1, c0 + 16, 64 * 4);
            _tile_stored(2, c0 + 16 * 64, 64 * 4);
            _tile_stored(3, c0 + 16 * 64 + 16, 64 * 4);
        }
}

/* Key blocks of chunk ch: [ch·nkb/nch, (ch+1)·nkb/nch), a function of the shape only. */
static int axb_chunk_start(const axb_dims *z, int ch) { return (int)((int64_t)ch * z->nkb / z->nch); }

static void ax_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *stats, void *work,
                        const attn__part *part) {
    const axb_ctx cx = axb_ctx_of(d, work);
    const axb_dims *z = &cx.z;
    const int G = d->H / d->Hkv, dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    int64_t local = -1;
    if (part->stage == 0) {
        const int64_t kper = z->SPb / 32, kitems = (int64_t)d->B * d->Hkv * kper;
        const int64_t qper = z->TPb / 32, items = kitems + (int64_t)d->B * d->H * qper;
        int on = 0;
        for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
            if (it < kitems) {
                const int64_t pr = it / kper;
                axb_pack_keys(&cx, k, v, (int)(pr / d->Hkv), (int)(pr % d->Hkv), (int)(it % kper) * 32);
            } else {
                const int64_t r = it - kitems, bh = r / qper;
                if (!on) {
                    ax_tiles_on();      /* Δ is summed on tiles */
                    on = 1;
                }
                axb_pack_rows(&cx, q, dout, out, stats, (int)(bh / d->H), (int)(bh % d->H), (int)(r % qper) * 32);
            }
        }
        if (on) _tile_release();
        return;
    }
    if (part->stage == 2) {
        const int64_t rows = (int64_t)d->B * d->H * d->T;
        float acc[1024];
        for (int64_t r = part->ith; r < rows; r += part->nth) {
            const int64_t bh = r / d->T;
            const int t = (int)(r % d->T), b = (int)(bh / d->H), h = (int)(bh % d->H);
            for (int x0 = 0; x0 < d->D; x0 += 1024) {
                const int n = d->D - x0 < 1024 ? d->D - x0 : 1024;
                for (int x = 0; x < n; x++) {
                    float s = 0.0f;
                    for (int ch = 0; ch < z->nch; ch++)
                        s += cx.slots[(((size_t)ch * d->B * d->H + bh) * z->nqb + t / 64) * z->DP * 64 +
                                      (size_t)(x0 + x) * 64 + t % 64];
                    acc[x] = s;
                }
                axb_acc_row((char *)dq + (b * d->q.b + h * d->q.h + (int64_t)t * d->q.t + x0) * es, dt, acc, n,
                            d->scale);
            }
        }
        return;
    }
    /* stage 1: items (b, kv head, chunk) */
    char *tw = cx.threads + (size_t)part->ith * z->thread;
    float *dKs = (float *)(tw + 2 * ax_round(AXB_B * AXB_B * 4) + 3 * ax_round(AXB_B * AXB_B * 2));
    float *dVs = (float *)((char *)dKs + ax_round((size_t)AXB_B * z->DP * 4));
    const int64_t items = (int64_t)d->B * d->Hkv * z->nch;
    const unsigned csr = _mm_getcsr();
    int on = 0;
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        if (!on) {
            ax_tiles_on();
            on = 1;
        }
        const int64_t pr = it / z->nch;
        const int ch = (int)(it % z->nch), b = (int)(pr / d->Hkv), hk = (int)(pr % d->Hkv);
        for (int kbk = axb_chunk_start(z, ch); kbk < axb_chunk_start(z, ch + 1); kbk++) {
            const int j0 = kbk * AXB_B, nb = d->S - j0 < AXB_B ? d->S - j0 : AXB_B;
            memset(dKs, 0, sizeof(float) * AXB_B * z->DP);
            memset(dVs, 0, sizeof(float) * AXB_B * z->DvP);
            int tstart = 0;
            if (d->mask.causal) {
                const int64_t t = (int64_t)j0 - (d->S - d->T);
                tstart = t < 0 ? 0 : t > d->T ? d->T : (int)t;
            }
            /* flush-to-zero for ax_exp2 while the blocks run; the caller's MXCSR for the sums into dk, dv */
            _mm_setcsr(csr | 0x8000);
            for (int hh = 0; hh < G; hh++)
                for (int t0 = tstart / 64 * 64; t0 < d->T; t0 += 64) {
                    /* skip the block when no row of it sees these keys */
                    int seen = 0;
                    for (int i = t0; i < t0 + 64 && i < d->T && !seen; i++)
                        seen = attn__key_limit(&d->mask, b, i, d->T, d->S) > j0;
                    if (seen) axb_block(&cx, tw, dKs, dVs, b, hk, hk * G + hh, j0, nb, t0, ch);
                }
            _mm_setcsr(csr);
            for (int j = 0; j < nb; j++) {
                axb_acc_row((char *)dk + (b * d->k.b + hk * d->k.h + (int64_t)(j0 + j) * d->k.t) * es, dt,
                            dKs + (size_t)j * z->DP, d->D, d->scale);
                axb_acc_row((char *)dv + (b * d->v.b + hk * d->v.h + (int64_t)(j0 + j) * d->v.t) * es, dt,
                            dVs + (size_t)j * z->DvP, d->Dv, 1.0f);
            }
        }
    }
    if (on) _tile_release();
}

static size_t axb_workspace(const attn_sdpa_desc *d, int nth) {
    /* the size in double first, from the dimensions (the size_t products of a huge shape would wrap):
     * too large reaches sdpa.c as SIZE_MAX, ATTN_ERR_SIZE */
    const double DP = ax_up32(d->D), DvP = ax_up32(d->Dv), S = axb_up64(d->S), T = axb_up64(d->T);
    const double est = (double)d->B * d->Hkv * S * (2 * DP + DvP) * 2 +
                       (double)d->B * d->H * T * (2 * DP + 2 * DvP + 6) * 2 +
                       (double)AXB_NCH * d->B * d->H * T * DP * 4 +
                       (double)nth * (65536.0 + 256.0 * (DP + DvP)) + 1e6;
    if (est > (double)(SIZE_MAX / 8)) return SIZE_MAX;
    const axb_dims z = axb_dims_of(d);
    return z.kall + z.qall + z.slots + (size_t)nth * z.thread + AX_ALIGN;
}

/* ===================================================================================================
 * Decoding on tiles: the forward of bf16 tensors with T <= BR_MAX_T (a few query rows against a long
 * K/V cache), read as it lies, without packing. Items (b, kv head, pack of up to AXD_R of the group's
 * rows), so each K and V row is read once for the pack. Per block of BR_NB keys:
 *   Sᵀ (16 keys, R rows) = K_tile Qᵀ    tiles: K's 16 rows x 32 dims straight from memory as A, the
 *                                       pack's q rows as one VNNI B per 32 dims (packed once per item)
 *   s = Sᵀᵀ                             gathers, to the rows the shared softmax takes (decode_bf16.h)
 *   P (bf16, R x 32 keys per tile)      the shared softmax: scale, masks, base-2 online softmax, dropout
 *   O (R, 16 dims) += P V_pairs         tiles, 32 keys at a time: P as A, V's rows two by two
 *                                       interleaved (vpunpck{l,h}wd, the AVX512-BF16 kernel's order:
 *                                       o's dims permuted as br_dim) into an 8 KiB buffer as B
 * O is kept in fp32 in the thread's memory and scaled by alpha in vectors before each block's P·V. Blocks
 * whose V rows hold NaN or Inf and that some row does not fully see take br_pv_careful.
 * Tiles: tmm0-1 the scores' accumulators (16 x R fp32), tmm2-3 K's A tiles and V's B tiles (16 x 32
 * bf16), tmm4 q's B tile (16 dim pairs x R), tmm5-6 O's accumulators (R x 16 fp32), tmm7 P's A tile
 * (R x 32 bf16). The configuration depends on R: one constant per R (see ax_cfg for why constant).
 */
#define AXD_R 16         /* rows per item: the columns of the scores' tiles, the rows of P·V's */

#define AXD_CFG(n)                                                                                         \
    {.palette = 1,                                                                                         \
     .colsb = {4 * (n), 4 * (n), 64, 64, 4 * (n), 64, 64, 64},                                             \
     .rows = {16, 16, 16, 16, 16, (n), (n), (n)}}
static const ax_tilecfg axd_cfg[AXD_R] __attribute__((aligned(64))) = {
    AXD_CFG(1),  AXD_CFG(2),  AXD_CFG(3),  AXD_CFG(4),  AXD_CFG(5),  AXD_CFG(6),  AXD_CFG(7),  AXD_CFG(8),
    AXD_CFG(9),  AXD_CFG(10), AXD_CFG(11), AXD_CFG(12), AXD_CFG(13), AXD_CFG(14), AXD_CFG(15), AXD_CFG(16),
};

/* A thread's memory: q's B tiles (DP/32 of 16 x AXD_R pairs), O (AXD_R x DvP fp32), Sᵀ (BR_NB x AXD_R),
 * s (AXD_R x BR_NB), P (AXD_R x BR_PS bf16), V's pairs of 32 keys ([DvP/16][16 pairs][16][2] bf16) and
 * two K tiles made in memory (32 x DP bf16) when K cannot be read in place. About 70 KiB at D = 128. */
typedef struct axd_mem {
    size_t qb, o, st, s, p, vb, kt, thread;
} axd_mem;

static axd_mem axd_mem_of(int DP, int DvP) {
    axd_mem z;
    z.qb = 0;
    z.o = z.qb + br_round((size_t)DP * AXD_R * 2);
    z.st = z.o + br_round((size_t)AXD_R * DvP * 4);
    z.s = z.st + br_round((size_t)BR_NB * AXD_R * 4);
    z.p = z.s + br_round((size_t)AXD_R * BR_NB * 4);
    z.vb = z.p + br_round((size_t)AXD_R * BR_PS * 2);
    z.kt = z.vb + br_round((size_t)32 * DvP * 2);
    z.thread = z.kt + br_round((size_t)32 * DP * 2);
    return z;
}

/* The width (bf16 elements) of each K and V row the tiles kernel asks for BR_PF keys ahead (br_prefetch):
 * its first cache line only. One line starts the hardware prefetchers on the row's 4 KiB page, which they
 * do not cross by themselves; the rest of the row they fetch themselves. Every line of the row (as the
 * AVX512-BF16 kernel asks) made the prefetches a third of this kernel's time with K/V in L2 or L3 (perf:
 * the instruction after a prefetcht0 held 19% of the samples for K, 10% for V): they wait for fill
 * buffers the tile loads need. DESIGN "AMX decoding: one line a row". */
#define AXD_PF_W 32

/* Sᵀ of nb keys from key j0 (rows of k, kt apart; S keys exist): per pair of key tiles, D in steps of 32.
 * A tile is read in place when its 16 rows exist and its 32 dims are the row's; otherwise (the last keys
 * of the cache, a last chunk of D not 32 wide) from a copy zero padded in memory (ktile, two tiles of
 * 16 x DP): zeros, not whatever lies past the row, which could be Inf or NaN (0 times that is NaN). K's
 * rows are asked for BR_PF keys ahead, up to key `ahead` (one line each, AXD_PF_W). */
static inline __attribute__((always_inline)) void axd_scores(float *st, const uint16_t *qb, int R, uint16_t *ktile,
                                                             const uint16_t *k, int64_t kt, int D, int DP, int j0,
                                                             int nb, int S, int ahead) {
    const int NC = DP / 32, sb = 4 * R;
    for (int j = 0; j < nb; j += 32) {
        const int two = j + 16 < nb;
        int whole[2];
        for (int u = 0; u < 32; u++) br_prefetch(k, kt, j + u, ahead, AXD_PF_W);
        for (int t = 0; t < 1 + two; t++) {
            const int jt = j0 + j + 16 * t;
            whole[t] = jt + 16 <= S;
            if (!whole[t] || D % 32)      /* the copy: rows past S and dims past D read as zeros */
                for (int i = 0; i < 16; i++)
                    for (int c = 0; c < NC; c++)
                        _mm512_storeu_si512(ktile + (16 * t + i) * DP + 32 * c,
                                            jt + i < S ? br_load32(k + (int64_t)(j + 16 * t + i) * kt, 32 * c, D)
                                                       : _mm512_setzero_si512());
        }
        _tile_zero(0);
        if (two) _tile_zero(1);
        for (int c = 0; c < NC; c++) {
            const int last = c == NC - 1 && D % 32;
            _tile_loadd(4, qb + (size_t)c * 16 * 2 * R, sb);
            if (whole[0] && !last) _tile_loadd(2, k + (int64_t)j * kt + 32 * c, kt * 2);
            else _tile_loadd(2, ktile + 32 * c, DP * 2);
            _tile_dpbf16ps(0, 2, 4);
            if (two) {
                if (whole[1] && !last) _tile_loadd(3, k + (int64_t)(j + 16) * kt + 32 * c, kt * 2);
                else _tile_loadd(3, ktile + 16 * DP + 32 * c, DP * 2);
                _tile_dpbf16ps(1, 3, 4);
            }
        }
        _tile_stored(0, st + (size_t)j * R, sb);
        if (two) _tile_stored(1, st + (size_t)(j + 16) * R, sb);
    }
}

/* s (R rows of BR_NB) from Sᵀ (keys x R) for the first nb keys, rounded up to 16: one gather per row and
 * 16 keys. */
static inline void axd_rows_of(float *s, const float *st, int R, int nb) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(R));
    for (int r = 0; r < R; r++)
        for (int j = 0; j < nb; j += 16)
            _mm512_storeu_ps(s + r * BR_NB + j, _mm512_i32gather_ps(idx, st + (size_t)j * R + r, 4));
}

/* V's rows j, j+1 of 32 keys (n of them real, the rest zeros), as B tiles: for 32 dims from x0, the pair's
 * vpunpcklwd goes to row j/2 of Dv tile x0/16 and its vpunpckhwd to that of tile x0/16 + 1 (tile xt at
 * vb + xt·512, rows of 64 bytes). V's rows are asked for BR_PF keys ahead, up to key `ahead`
 * (one line each, AXD_PF_W). */
static inline __attribute__((always_inline)) void axd_v_pairs(uint16_t *vb, const uint16_t *v, int64_t vt, int Dv,
                                                              int DvP, int n, int ahead) {
    for (int j = 0; j < 32; j += 2) {
        br_prefetch(v, vt, j, ahead, AXD_PF_W);
        br_prefetch(v, vt, j + 1, ahead, AXD_PF_W);
        const uint16_t *v0 = v + (int64_t)j * vt, *v1 = v0 + vt;
        for (int x0 = 0; x0 < DvP; x0 += 32) {
            const __m512i a = j < n ? br_load32(v0, x0, Dv) : _mm512_setzero_si512();
            const __m512i b = j + 1 < n ? br_load32(v1, x0, Dv) : _mm512_setzero_si512();
            uint16_t *dst = vb + (size_t)(x0 / 16) * 512 + j / 2 * 32;
            _mm512_store_si512(dst, _mm512_unpacklo_epi16(a, b));
            _mm512_store_si512(dst + 512, _mm512_unpackhi_epi16(a, b));
        }
    }
}

/* O (R x DvP fp32, permuted) += P (R x 32 keys, bf16, rows BR_PS apart) · V's pairs of those keys: Dv
 * tiles two at a time. */
static inline void axd_pv(float *o, int DvP, const uint16_t *p, const uint16_t *vb) {
    for (int xt = 0; xt < DvP / 16; xt += 2) {
        _tile_loadd(5, o + 16 * xt, DvP * 4);
        _tile_loadd(6, o + 16 * xt + 16, DvP * 4);
        _tile_loadd(7, p, BR_PS * 2);
        _tile_loadd(2, vb + (size_t)xt * 512, 64);
        _tile_dpbf16ps(5, 7, 2);
        _tile_loadd(3, vb + (size_t)(xt + 1) * 512, 64);
        _tile_dpbf16ps(6, 7, 3);
        _tile_stored(5, o + 16 * xt, DvP * 4);
        _tile_stored(6, o + 16 * xt + 16, DvP * 4);
    }
}

/* One pack: R query rows (b, hs[r], ts[r]) of kv head hk against every key they may see; the tiles are
 * configured for R. */
static void axd_rows(const br_fwd *cx, const axd_mem *z, char *tw, int b, int hk, const int *hs, const int *ts,
                     int R) {
    const attn_sdpa_desc *d = cx->d;
    const int D = d->D, Dv = d->Dv, DP = cx->DP, DvP = cx->DvP;
    uint16_t *qb = (uint16_t *)(tw + z->qb);                 /* [DP/32][16 dim pairs][R][2] bf16 */
    float *o = (float *)(tw + z->o);                         /* R x DvP, permuted */
    float *st = (float *)(tw + z->st);                       /* (keys, R) of one block */
    float *s = (float *)(tw + z->s);                         /* R x BR_NB */
    uint16_t *p = (uint16_t *)(tw + z->p);                   /* R x BR_PS, bf16 */
    uint16_t *vb = (uint16_t *)(tw + z->vb);                 /* V's pairs of 32 keys */
    uint16_t *ktile = (uint16_t *)(tw + z->kt);              /* 32 x DP */
    const uint16_t *kb = cx->k + b * d->k.b + hk * d->k.h;
    const uint16_t *vbase = cx->v + b * d->v.b + hk * d->v.h;
    br_rowset rs;
    br_rows_begin(&rs, cx, b, hs, ts, R);
    /* q's B tiles: dims (2i, 2i+1) of chunk c of row r side by side, zeros past D */
    for (int c = 0; c < DP / 32; c++)
        for (int i = 0; i < 16; i++)
            for (int r = 0; r < R; r++) {
                const int x = 32 * c + 2 * i;
                uint16_t *e = qb + (((size_t)c * 16 + i) * R + r) * 2;
                e[0] = x < D ? rs.qrow[r][x] : 0;
                e[1] = x + 1 < D ? rs.qrow[r][x + 1] : 0;
            }
    memset(o, 0, sizeof(float) * (size_t)R * DvP);
    const int maxlim = rs.maxlim;

    for (int j0 = 0; j0 < maxlim; j0 += BR_NB) {
        const int nb = maxlim - j0 < BR_NB ? maxlim - j0 : BR_NB;
        axd_scores(st, qb, R, ktile, kb + (int64_t)j0 * d->k.t, d->k.t, D, DP, j0, nb, d->S, maxlim - j0);
        axd_rows_of(s, st, R, nb);
        const int masked = br_softmax(&rs, d, s, p, j0, nb);
        const uint16_t *vj = vbase + (int64_t)j0 * d->v.t;
        if (!masked || !br_rows_nonfinite(vj, d->v.t, nb, Dv)) {
            for (int r = 0; r < R; r++) {
                const __m512 a = _mm512_set1_ps(rs.alpha[r]);
                for (int x = 0; x < DvP; x += 16)
                    _mm512_store_ps(o + r * DvP + x, _mm512_mul_ps(_mm512_load_ps(o + r * DvP + x), a));
            }
            /* 32 keys at a time: their pairs (8 KiB at Dv = 128) stay in L1 for the tiles (made for a
             * whole block, 64 KiB, they did not, and took longer than all of the block's tile work) */
            for (int jc = 0; jc < nb; jc += 32) {
                axd_v_pairs(vb, vj + (int64_t)jc * d->v.t, d->v.t, Dv, DvP, nb - jc, maxlim - j0 - jc);
                axd_pv(o, DvP, p + jc, vb);
            }
        } else {                        /* V rows not all finite: the zero weights skip theirs */
            br_pv_careful(&rs, o, DvP, p, vj, d->v.t, Dv, nb);
        }
    }
    br_rows_end(&rs, cx, o, kb, b, hs, ts);
}

static int64_t axd_packs(const attn_sdpa_desc *d) { return br_packs(d, AXD_R); }

/* Does the decoding forward of d run on tiles? When its K/V cache (B·Hkv·S·(D + Dv) bf16) is at most
 * AXD_MAX_BYTES, about one core's L2 here, or when each kv head has at least AXD_MIN_ROWS query rows
 * ((H/Hkv)·T, the rows of its packs). Measured (DESIGN "AMX decoding", "AMX decoding: one line a row"):
 * with K and V in L2 the tiles take 0.70–0.86 of the AVX512-BF16 kernel's time; with a 16 MiB cache and
 * groups of 4 about 0.8 of it from L3 (0.50 of fp32's against 0.65) and about 1.05 from memory (both at
 * the memory's speed), with groups of 8 less than half; with groups of 1 to 3 the AVX512-BF16 kernel,
 * whose work falls with the rows while a tile product costs the same for 1 row as for 16, was as fast or
 * faster (groups of 2: 0.53–0.55 ms against 0.72–0.78 from L3). A function of the shape only: any thread
 * count takes the same. */
#define AXD_MAX_BYTES (2.0 * 1024 * 1024)
#define AXD_MIN_ROWS 4
static int axd_takes(const attn_sdpa_desc *d, attn_pass pass) {
    if (!br_native(d, pass)) return 0;
    return (double)d->B * d->Hkv * d->S * (d->D + d->Dv) * 2 <= AXD_MAX_BYTES ||
           (int64_t)(d->H / d->Hkv) * d->T >= AXD_MIN_ROWS;
}

/* One stage: items (b, kv head, pack of AXD_R of the group's rows, g-major). Each thread loads the tile
 * configuration for its pack's row count when it changes and releases the tiles when its part ends. */
static void axd_forward(const attn_sdpa_desc *d, float *out, float *stats, const float *q, const float *k,
                        const float *v, void *work, const attn__part *part) {
    br_fwd cx = {d, (uint16_t *)out, stats, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v,
                 br_up32(d->D), br_up32(d->Dv), 0, NULL, NULL, d->out};
    const axd_mem z = axd_mem_of(cx.DP, cx.DvP);
    cx.thread = z.thread;
    cx.work = (char *)(((uintptr_t)work + BR_ALIGN - 1) & ~(uintptr_t)(BR_ALIGN - 1));
    char *tw = cx.work + (size_t)part->ith * cx.thread;
    const int64_t np = axd_packs(d), items = (int64_t)d->B * d->Hkv * np;
    int hs[AXD_R], ts[AXD_R], rows = 0;
    int64_t local = -1;
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        const int64_t bh = it / np;
        const int b = (int)(bh / d->Hkv), hk = (int)(bh % d->Hkv);
        const int R = br_pack_rows(d, hk, it % np, AXD_R, hs, ts);
        if (R != rows) {
            _tile_loadconfig(&axd_cfg[R - 1]);
            rows = R;
        }
        axd_rows(&cx, &z, tw, b, hk, hs, ts, R);
    }
    if (rows) _tile_release();
}

static size_t axd_workspace(const attn_sdpa_desc *d, int nth) {
    /* D, Dv are ints at most ATTN_MAX_DIM: one thread's bytes fit in size_t; the product with nth is
     * checked */
    const size_t one = axd_mem_of(br_up32(d->D), br_up32(d->Dv)).thread;
    if (one > (SIZE_MAX - BR_ALIGN) / (size_t)nth) return SIZE_MAX;
    return (size_t)nth * one + BR_ALIGN;
}

/* Threads worth waking: about 4 MFLOP each at least, as the AVX512-BF16 forward; never more than the items. */
static int axd_threads(const attn_sdpa_desc *d, int nth) {
    const double want = 2.0 * d->B * d->H * (double)d->T * d->S * (d->D + d->Dv) / 4e6;
    const int64_t items = (int64_t)d->B * d->Hkv * axd_packs(d);
    if (nth < 1) nth = 1;
    if (want < nth) nth = want < 1 ? 1 : (int)want;
    return items < nth ? (int)items : nth;
}

/* ---------------------------------------------------------------------------------------------------
 * The table: this path's entries for the descriptors it computes, AVX-512's for the rest.
 */
static size_t amx_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (nth < 1) nth = 1;
    if (axd_takes(d, pass)) return axd_workspace(d, nth);
    if (!ax_native(d, pass)) return attn__kernels_avx512bf16.sdpa_workspace(d, pass, nth);
    if (pass == ATTN_PASS_BACKWARD) return axb_workspace(d, nth);
    /* in double first, from the dimensions (see axb_workspace) */
    const double DP = ax_up32(d->D), DvP = ax_up32(d->Dv), S = ax_up32(d->S);
    const double est =
        (double)d->B * d->Hkv * S * (DP + DvP) * 2 + (double)nth * (262144.0 + 256.0 * (DP + DvP)) + 1e6;
    if (est > (double)(SIZE_MAX / 8)) return SIZE_MAX;
    const ax_dims z = ax_dims_of(d);
    return ax_round(z.shared) + (size_t)nth * z.thread + AX_ALIGN;
}

static int amx_stages(const attn_sdpa_desc *d, attn_pass pass) {
    if (axd_takes(d, pass)) return 1;
    if (!ax_native(d, pass)) return attn__kernels_avx512bf16.sdpa_stages(d, pass);
    return pass == ATTN_PASS_FORWARD ? 2 : 3;
}

/* Threads worth waking: about 8 MFLOP each at least; never more than there are query blocks. */
static int amx_threads(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (nth < 1) nth = 1;
    if (axd_takes(d, pass)) return axd_threads(d, nth);
    if (!ax_native(d, pass)) return attn__kernels_avx512bf16.sdpa_threads(d, pass, nth);
    const double flops = 2.0 * d->B * d->H * (double)d->T * d->S * (d->D + d->Dv);
    const double want = flops / 8e6;
    const int64_t items = pass == ATTN_PASS_FORWARD ? (int64_t)d->B * d->H * ax_nqb(d)
                                                    : (int64_t)d->B * d->Hkv * axb_dims_of(d).nch;
    if (nth < 1) nth = 1;
    if (want < nth) nth = want < 1 ? 1 : (int)want;
    if (items < nth) nth = (int)items;
    return nth;
}

/* scores: weights asked for, which sdpa.c runs on fp32 descriptors only, never natively here */
static void amx_forward(const attn_sdpa_desc *d, float *out, float *stats, float *scores, const float *q,
                        const float *k, const float *v, void *work, const attn__part *part) {
    if (ax_native(d, ATTN_PASS_FORWARD)) ax_forward(d, out, stats, q, k, v, work, part);
    else if (axd_takes(d, ATTN_PASS_FORWARD)) axd_forward(d, out, stats, q, k, v, work, part);
    else attn__kernels_avx512bf16.sdpa_forward(d, out, stats, scores, q, k, v, work, part);
}

static void amx_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout,
                         const float *q, const float *k, const float *v, const float *out, const float *stats,
                         void *work, const attn__part *part) {
    if (ax_native(d, ATTN_PASS_BACKWARD)) ax_backward(d, dq, dk, dv, dout, q, k, v, out, stats, work, part);
    else attn__kernels_avx512bf16.sdpa_backward(d, dq, dk, dv, dout, q, k, v, out, stats, work, part);
}

const attn_kernels attn__kernels_amx = {
    .isa = ATTN_ISA_AMX,
    .sdpa_native = amx_native,
    .sdpa_workspace = amx_workspace,
    .sdpa_stages = amx_stages,
    .sdpa_threads = amx_threads,
    .sdpa_forward = amx_forward,
    .sdpa_backward = amx_backward,
};
