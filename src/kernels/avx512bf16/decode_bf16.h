/*
 * decode_bf16.h — the parts of the bf16 decoding forward (few query rows against a long bf16 K/V cache)
 * that the AVX512-BF16 path (vdpbf16ps, kernels_avx512bf16.c) and the AMX path (tiles, kernels_amx.c)
 * share, so that both keep the same masks, softmax, dropout, non-finite V rule and row statistics:
 *
 *   br_rows_begin   a pack of R rows (b, hs[r], ts[r]) of one kv head: key limits, mask and bias rows
 *   br_softmax      one block of keys: scores s (R x BR_NB, unscaled, row-major) to P (bf16, R x BR_PS):
 *                   scale, masks, the online softmax in base 2 (the AVX-512 exp2), dropout
 *   br_pv_careful   P·V of a block whose V rows are not all finite and that some row does not fully see
 *   br_rows_end     out = o / l as bf16 (fp32 for fp32 tensors with bf16 compute), and the row statistics
 *                   with the canonical m
 *
 * Each path makes the scores and P·V its own way. o (R x DvP fp32) is kept with its dims permuted as
 * br_dim says: the layout that vpunpck{l,h}wd of two V rows gives (both paths build their V pairs so).
 *
 * The canonical score (DESIGN "Row statistics"): the scores are not summed in the canonical order, so
 * each row remembers its running max's key and saves as m that key's canonical score,
 * Σ_d fma((float)q_d·scale, k_d) in order d = 0..D-1 from 0 in fp32 (the bf16 values widen exactly), plus
 * the bias: what the backward of these shapes recomputes, bit for bit (the AVX512-BF16 path's,
 * bwd_avx512bf16.c, whose scores stay on fp32 FMA for that). l is the sum as it was taken.
 *
 * Included by files compiled with -mavx512bf16 and the AVX-512 flags.
 */
#ifndef ATTN_DECODE_BF16_H
#define ATTN_DECODE_BF16_H

#include "internal.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/avx512/exp2_avx512.h"
#include "kernels/avx512/transpose_avx512.h"

#define BR_MAX_T 4       /* T <= this goes by rows (decoding); more rows: the block paths */
#define BR_RMAX 16       /* rows a pack may have (the AMX path's; the AVX512-BF16 path's packs have 4) */
#define BR_NB 256        /* keys per block */
#define BR_ALIGN 64
#define BR_PS (BR_NB + 32)  /* stride of P rows: room for zeros up to a multiple of 32 keys */
#define BR_PF 64         /* keys ahead that K and V rows are prefetched (16 KiB of K, of V at D = 128) */
#define BR_LOG2E 1.44269504088896340736f

/* On the loops of a register tile (bounds constant once inlined): GCC unrolls them only after deciding
 * where arrays live otherwise, and then keeps a stack copy of every accumulator, stored at every step (a
 * 6 x 4 tile: 24 stores of 64 bytes per 24 products). fused_impl.h's FZ_UNROLL, for the same reason. */
#if defined(__GNUC__)
#define BR_UNROLL _Pragma("GCC unroll 16")
#else
#define BR_UNROLL
#endif

static inline int br_up32(int n) { return (n + 31) / 32 * 32; }
static inline size_t br_round(size_t n) { return (n + BR_ALIGN - 1) & ~(size_t)(BR_ALIGN - 1); }

/* The descriptors the decoding kernels compute: the forward of bf16 tensors with T <= BR_MAX_T. fp32
 * tensors (bf16 compute or not) keep the fp32 rows path: converting the cache would cost more than it
 * saves. The sparse mask parts (window, sinks, sink logits, ALiBi, soft-capping, block maps) run through
 * the conversion path: the fp32 kernels on copies. */
static inline int br_native(const attn_sdpa_desc *d, attn_pass pass) {
    return pass == ATTN_PASS_FORWARD && d->dtype == ATTN_DTYPE_BF16 && d->T <= BR_MAX_T &&
           !attn__mask_sparse(&d->mask);
}

/* A score plus an additive bias, in natural units, saturating at ±FLT_MAX; -inf excludes; +Inf and NaN
 * pass (the fp32 paths' rule). */
static inline float br_add_bias(float x, float b) {
    if (x == -INFINITY || b == -INFINITY) return -INFINITY;
    const float y = x + b;
    if (x - x != 0.0f || b - b != 0.0f) return y;
    return y > FLT_MAX ? FLT_MAX : y < -FLT_MAX ? -FLT_MAX : y;
}

/* The mask of the first n of 16 lanes, and of 32 (n at the count or more: all; n <= 0: none). */
static inline __mmask16 br_lanes(int n) { return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1); }
static inline __mmask32 br_lanes32(int n) {
    return n >= 32 ? ~(__mmask32)0 : n <= 0 ? 0 : (__mmask32)((1u << n) - 1);
}

/* 32 bf16 of a row from element x0, those from n on read as 0 (a masked load: nothing past the row). */
static inline __m512i br_load32(const uint16_t *row, int x0, int n) {
    if (n - x0 >= 32) return _mm512_loadu_si512(row + x0);
    return _mm512_maskz_loadu_epi16(br_lanes32(n - x0), row + x0);
}

/* Asks for the row of BR_PF keys after key j (rows of x, xt apart) when it is one of the n the rows go
 * to: one core alone waits for memory (and even for L3) at about half the machine's bandwidth when only
 * the hardware prefetchers run ahead, since they stop at every 4 KiB page (16 K rows of 128 bf16).
 * Inlined always: GCC takes a function of prefetches alone for one without effects and drops its calls. */
static inline __attribute__((always_inline)) void br_prefetch(const uint16_t *x, int64_t xt, int j, int n, int w) {
    if (j + BR_PF >= n) return;
    const char *row = (const char *)(x + (int64_t)(j + BR_PF) * xt);
    for (int b = 0; b < 2 * w; b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
}

/* For a pair of keys (j, j+1), vpunpcklwd / vpunpckhwd of their V rows give, per 32 dims from x0, two
 * vectors of (v_j[x], v_{j+1}[x]) pairs: lo holds dims x0 + 8c + i and hi dims x0 + 8c + 4 + i in its
 * 128-bit lane c, slot i. So o (DvP floats) is kept permuted: its float at position x0 + 16h + 4c + i is
 * dim br_dim(x0 + 16h + 4c + i) = x0 + 8c + 4h + i. */
static inline int br_dim(int pos) {
    const int x0 = pos & ~31, h = (pos >> 4) & 1, c = (pos >> 2) & 3, i = pos & 3;
    return x0 + 8 * c + 4 * h + i;
}

/* Two rows of 16 fp32 values (keys j, j+1 of the forward's P; query rows 2i, 2i+1 of the backward's P and
 * dS) as 16 bf16 pairs: lane i (a[i], b[i]), rounded to nearest even. */
static inline __m512i br_pair(__m512 a, __m512 b) {
    static const uint16_t order[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                       8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i idx = _mm512_loadu_si512(order);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

/* 16 fp32 values to bf16 exactly as attn__bf16 rounds them (to nearest even, NaN kept quiet, subnormals
 * kept, which vcvtneps2bf16 would flush to zero). */
static inline __m256i br_round16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(r);
}

/* 16 bf16 (lanes m of p; the others 0) widened to fp32, exactly. */
static inline __m512 br_widen16(const uint16_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}


/* Pairs p0 .. p0 + 15 of dims (2p low, 2p + 1 high; a dim at n or past it 0) of 16 rows of n bf16 (rows[i],
 * NULL: a row of zeros), transposed: v[p] lane i is pair p0 + p of row i. Nothing past a row is read. */
static inline void br_pairs_t(__m512i v[16], const uint16_t *const rows[16], int p0, int n) {
    const __mmask32 m = br_lanes32(n - 2 * p0);
    for (int i = 0; i < 16; i++)
        v[i] = rows[i] ? _mm512_maskz_loadu_epi16(m, rows[i] + 2 * p0) : _mm512_setzero_si512();
    attn__transpose16(v);
}

/* Do nb rows of Dv bf16 (vt apart) hold NaN or Inf? */
static inline int br_rows_nonfinite(const uint16_t *v, int64_t vt, int nb, int Dv) {
    const __m512i ex = _mm512_set1_epi16(0x7f80);
    for (int j = 0; j < nb; j++)
        for (int x0 = 0; x0 < Dv; x0 += 32) {
            const __m512i a = _mm512_and_si512(br_load32(v + (int64_t)j * vt, x0, Dv), ex);
            if (_mm512_cmpeq_epi16_mask(a, ex)) return 1;
        }
    return 0;
}

/* One call's decoding forward, as each thread sees it. out32: fp32 tensors with bf16 compute (q, k, v are
 * then the bf16 copies, kernels_avx512bf16.c "fp32 tensors with bf16 compute"): out goes there in fp32, by
 * the caller's layout ol, and out is NULL. */
typedef struct br_fwd {
    const attn_sdpa_desc *d;
    uint16_t *out;
    float *stats;
    const uint16_t *q, *k, *v;
    int DP, DvP;
    size_t thread;
    char *work;
    float *out32;
    attn_layout ol;
} br_fwd;

/* Writes out's row (b, h, t) = o·inv for dims < Dv, o (n floats) permuted by br_dim: bf16 into out, or
 * fp32 into out32. (The block kernel writes its rows by transposes: bb_put_out.) */
static inline void br_put_out(const br_fwd *cx, int b, int h, int t, const float *o, int n, float inv) {
    const int Dv = cx->d->Dv;
    float *row32 = cx->out32 ? cx->out32 + b * cx->ol.b + h * cx->ol.h + (int64_t)t * cx->ol.t : NULL;
    uint16_t *row16 = cx->out32 ? NULL : cx->out + b * cx->d->out.b + h * cx->d->out.h + (int64_t)t * cx->d->out.t;
    for (int x = 0; x < n; x++) {
        const int dim = br_dim(x);
        if (dim >= Dv) continue;
        if (row32) row32[dim] = o[x] * inv;
        else row16[dim] = attn__bf16(o[x] * inv);
    }
}

/* A pack of R rows (b, hs[r], ts[r]) of kv head hk, and their running softmax state. */
typedef struct br_rowset {
    int R, maxlim;                 /* rows; the largest key limit among them */
    int lim[BR_RMAX], jm[BR_RMAX]; /* key limit; key of the running max (-1: none yet) */
    const uint8_t *al[BR_RMAX];    /* boolean mask rows, bias rows, or NULL */
    const float *bi[BR_RMAX];
    const uint16_t *qrow[BR_RMAX];
    uint64_t row[BR_RMAX];         /* (b·H + h)·T + t */
    float m[BR_RMAX], l[BR_RMAX], alpha[BR_RMAX];
} br_rowset;

static inline void br_rows_begin(br_rowset *rs, const br_fwd *cx, int b, const int *hs, const int *ts, int R) {
    const attn_sdpa_desc *d = cx->d;
    rs->R = R;
    rs->maxlim = 0;
    for (int r = 0; r < R; r++) {
        rs->qrow[r] = cx->q + b * d->q.b + hs[r] * d->q.h + (int64_t)ts[r] * d->q.t;
        rs->lim[r] = attn__key_limit(&d->mask, b, ts[r], d->T, d->S);
        if (rs->lim[r] > rs->maxlim) rs->maxlim = rs->lim[r];
        rs->al[r] = attn__allow_row(&d->mask, b, hs[r], ts[r]);
        rs->bi[r] = attn__bias_row(&d->mask, b, hs[r], ts[r]);
        rs->row[r] = ((uint64_t)b * d->H + hs[r]) * d->T + (uint64_t)ts[r];
        rs->m[r] = -INFINITY;
        rs->l[r] = 0.0f;
        rs->jm[r] = -1;
    }
}

/* One block of nb keys from j0: the unscaled scores s (row r at s + r·BR_NB) become P as bf16 (row r at
 * p + r·BR_PS, zeros after key nb up to a multiple of 32 keys and at least one), and rs->alpha the
 * factors the rows' o must take before this block's P·V. Returns 1 when some row does not see some key
 * of the block (a mask, a bias or a key limit inside it). */
static inline int br_softmax(br_rowset *rs, const attn_sdpa_desc *d, float *s, uint16_t *p, int j0, int nb) {
    const int nfull = nb / 16 * 16, S = d->S;
    const __m512 scale = _mm512_set1_ps(d->scale);
    int masked = 0;
    for (int r = 0; r < rs->R; r++) {
        float *sr = s + r * BR_NB;
        const uint8_t *al = rs->al[r];
        const float *bi = rs->bi[r];
        for (int j = 0; j < nfull; j += 16) _mm512_storeu_ps(sr + j, _mm512_mul_ps(_mm512_loadu_ps(sr + j), scale));
        for (int j = nfull; j < nb; j++) sr[j] *= d->scale;
        /* masks: the row's key limit, then boolean mask and bias */
        if (rs->lim[r] < j0 + nb || al || bi) masked = 1;
        for (int j = rs->lim[r] - j0 > 0 ? rs->lim[r] - j0 : 0; j < nb; j++) sr[j] = -INFINITY;
        if (al || bi)
            for (int j = 0; j < nb && j0 + j < rs->lim[r]; j++) {
                if (al && !al[j0 + j]) sr[j] = -INFINITY;
                else if (bi) sr[j] = br_add_bias(sr[j], bi[j0 + j]);
            }
        /* the block's max; a row with every key masked so far keeps o = 0 and l = 0 */
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < nfull; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(sr + j));
        float bm = _mm512_reduce_max_ps(mx);
        for (int j = nfull; j < nb; j++) bm = sr[j] > bm ? sr[j] : bm;
        if (bm > rs->m[r]) {            /* a new running max: remember its key */
            int j = 0;
            while (j < nb - 1 && !(sr[j] == bm)) j++;
            rs->jm[r] = j0 + j;
        }
        if (rs->m[r] > bm) bm = rs->m[r];
        uint16_t *pr = p + r * BR_PS;
        const int pad = br_up32(nb + 1);
        if (bm == -INFINITY) {
            memset(pr, 0, sizeof(uint16_t) * (size_t)pad);
            rs->alpha[r] = 1.0f;
            continue;
        }
        rs->alpha[r] = rs->m[r] == -INFINITY ? 0.0f : exp2f((rs->m[r] - bm) * BR_LOG2E);
        /* exponentials (the difference first: the max gives exactly 1) and their sum, before dropout;
         * masked keys exactly 0 */
        const __m512 bv = _mm512_set1_ps(bm), l2e = _mm512_set1_ps(BR_LOG2E);
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < nfull; j += 16) {
            const __m512 e = attn__exp2_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(sr + j), bv), l2e));
            _mm512_storeu_ps(sr + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        float lsum = _mm512_reduce_add_ps(sum);
        for (int j = nfull; j < nb; j++) {
            sr[j] = sr[j] == -INFINITY ? 0.0f : exp2f((sr[j] - bm) * BR_LOG2E);
            lsum += sr[j];
        }
        rs->l[r] = rs->alpha[r] * rs->l[r] + lsum;
        rs->m[r] = bm;
        if (d->dropout > 0.0f) {
            const float keep_scale = 1.0f / (1.0f - d->dropout);
            for (int j = 0; j < nb; j++)
                sr[j] = attn__dropout_keep(d->seed, rs->row[r] * S + (uint64_t)(j0 + j), d->dropout) ? sr[j] * keep_scale
                                                                                                     : 0.0f;
        }
        /* P to bf16 (round to nearest even), then zeros */
        int j = 0;
        for (; j + 32 <= nb; j += 32)
            _mm512_storeu_si512(pr + j, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(sr + j + 16), _mm512_loadu_ps(sr + j)));
        for (; j < nb; j++) pr[j] = attn__bf16(sr[j]);
        for (; j < pad; j++) pr[j] = 0;
    }
    return masked;
}

/* o_r = alpha_r·o_r + Σ_j p_r[j]·v_j over nb keys whose V rows (vt apart) are not all finite: the zero
 * weights skip their rows (as on the fp32 paths), element by element. */
static inline void br_pv_careful(const br_rowset *rs, float *o, int DvP, const uint16_t *p, const uint16_t *v,
                                 int64_t vt, int Dv, int nb) {
    for (int r = 0; r < rs->R; r++) {
        float *orow = o + r * DvP;
        const uint16_t *pr = p + r * BR_PS;
        for (int x = 0; x < DvP; x++) orow[x] *= rs->alpha[r];
        for (int j = 0; j < nb; j++)
            if (pr[j] != 0)
                for (int x = 0; x < DvP; x++) {
                    const int dim = br_dim(x);
                    if (dim < Dv) orow[x] += attn__f32(pr[j]) * attn__f32(v[(int64_t)j * vt + dim]);
                }
    }
}

/* The canonical score of a bf16 query row (times scale in fp32) and key row: see the top of the file. */
static inline float br_canonical(const uint16_t *q, const uint16_t *k, int D, float scale) {
    float acc = 0.0f;
    for (int x = 0; x < D; x++) acc = fmaf(attn__f32(q[x]) * scale, attn__f32(k[x]), acc);
    return acc;
}

/* out = o / l (bf16, dims back in order) and the row statistics (m canonical, log l) of the pack; kb is
 * the kv head's K. */
static inline void br_rows_end(const br_rowset *rs, const br_fwd *cx, const float *o, const uint16_t *kb, int b,
                               const int *hs, const int *ts) {
    const attn_sdpa_desc *d = cx->d;
    const int DvP = cx->DvP;
    for (int r = 0; r < rs->R; r++) {
        const float l = rs->l[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
        br_put_out(cx, b, hs[r], ts[r], o + r * DvP, DvP, inv);
        float mc = rs->m[r];
        if (l > 0.0f && rs->jm[r] >= 0 && mc == mc) {
            mc = br_canonical(rs->qrow[r], kb + (int64_t)rs->jm[r] * d->k.t, d->D, d->scale);
            if (rs->bi[r]) mc = br_add_bias(mc, rs->bi[r][rs->jm[r]]);
        }
        float *st = cx->stats + 2 * rs->row[r];
        st[0] = l == 0.0f ? -INFINITY : mc;
        st[1] = l == 0.0f ? 0.0f : logf(l);
    }
}

/* Items of the decoding forward: (b, kv head, pack of `per` of the group's rows, g-major). */
static inline int64_t br_packs(const attn_sdpa_desc *d, int per) {
    return ((int64_t)(d->H / d->Hkv) * d->T + per - 1) / per;
}

/* The rows (hs, ts) of pack number `pack` of kv head hk (packs of `per`); returns how many. */
static inline int br_pack_rows(const attn_sdpa_desc *d, int hk, int64_t pack, int per, int *hs, int *ts) {
    const int G = d->H / d->Hkv, T = d->T, r0 = (int)pack * per, n = G * T - r0 < per ? G * T - r0 : per;
    for (int r = 0; r < n; r++) {
        hs[r] = hk * G + (r0 + r) / T;
        ts[r] = (r0 + r) % T;
    }
    return n;
}

#endif
