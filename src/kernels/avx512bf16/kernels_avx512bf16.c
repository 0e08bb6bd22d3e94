/*
 * kernels_avx512bf16.c — the AVX512-BF16 path: AVX-512 plus `vdpbf16ps` (pairs of bf16 products summed
 * into fp32 lanes), for CPUs that have it with or without AMX (Zen 4 has it without). What it does itself:
 * the forward of bf16 tensors, reading bf16 Q, K and V directly (half the bytes of fp32): by rows for
 * decoding (few query rows against a long K/V cache), by blocks of query rows otherwise (further down);
 * and their backward (bwd_avx512bf16.c). Everything else is the AVX-512 path's (the table's other entries
 * hand those descriptors to attn__kernels_avx512). The AMX path has its own decoding kernel on tiles
 * (kernels_amx.c), shares this one's softmax (decode_bf16.h), and hands its bf16 forwards of 5 to 15 rows
 * per head to the block kernel here, its bf16 backwards of fewer than 16 to the backward. fp32 tensors
 * with bf16 compute and more than 4 rows per head run here too, on bf16 copies (near the end; with AMX
 * only those of 5 to 15 rows reach this table). Compiled with -mavx512bf16 and the AVX-512 flags; reached
 * only when the CPU has them (config.c).
 *
 * The decoding forward, by rows (the structure of fused_impl.h's rows path): items (b, kv head, pack of up
 * to BR_R of the group's rows (head, t)), so each K and V row is read once for the pack. Per key block of
 * BR_NB keys:
 *   scores   s_r[j] = scale · Σ_d q_r[d]·k_j[d]      vdpbf16ps over D in steps of 32 (q is bf16 already),
 *            16 accumulators (16/R keys x R rows), summed across lanes all at once (br_sum16)
 *   masks    the key limit, boolean mask, bias; a base-2 online softmax per row (the AVX-512 exp2)
 *   P·V      o_r = alpha_r·o_r + Σ_j p_r[j]·v_j     vdpbf16ps over pairs of keys: P rounded to bf16, the
 *            two V rows interleaved by vpunpck{l,h}wd, so o is kept with its dims permuted (br_dim)
 * then out = o / l rounded to bf16, and the row statistics.
 *
 * The masks, softmax, non-finite V rule and row statistics (with the canonical m) are decode_bf16.h's,
 * shared with the AMX path's decoding kernel.
 * A row's arithmetic depends on the shape only: bitwise the same for any thread count.
 *
 * Memory: per thread, the pack's q (bf16), o, the scores and P of one block: under 20 KiB at D = 128.
 * The block forward (below) keeps its row statistics by the same rule.
 */
#include "kernels/avx512bf16/bwd_avx512bf16.h"
#include "kernels/avx512bf16/decode_bf16.h"

#define BR_R 4           /* rows that share one pass over K and V */
#define BR_PVK 32        /* keys per step of P·V (even) */

/* 16 vectors summed across their lanes at once: lane L of the result is the sum of v[(L % 4)·4 + L / 4]
 * (four levels of shuffles and adds: 30 shuffles and 15 adds for 16 sums, against 8 instructions for
 * each sum alone). */
static inline __m512 br_sum16(const __m512 *v) {
    __m512 w[8], z[4], u[2];
    for (int i = 0; i < 8; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(z[2 * i], z[2 * i + 1], 0x88), _mm512_shuffle_ps(z[2 * i], z[2 * i + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xDD));
}

/* The accumulator that br_sum16 puts in lane L. */
#define BR_SRC(L) (((L) % 4) * 4 + (L) / 4)

/* ---------------------------------------------------------------------------------------------------
 * Scores: s[r·BR_NB + j] for R rows (q_r, bf16 zero padded to DP, at q + r·DP) and keys j of [0, nb)
 * (rows of k, kt apart), unscaled. KU = 16/R keys at a time fill the 16 accumulators; a tail of keys goes
 * one at a time. The rows go on to key `ahead` (past the block): K is prefetched BR_PF keys ahead.
 */
static inline __attribute__((always_inline)) void br_scores(const int R, float *s, const uint16_t *q, int DP,
                                                            const uint16_t *k, int64_t kt, int D, int nb, int ahead) {
    const int KU = 16 / R;
    int j = 0;
    for (; j + KU <= nb; j += KU) {
        BR_UNROLL for (int u = 0; u < KU; u++) br_prefetch(k, kt, j + u, ahead, D);
        __m512 acc[16];
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int x0 = 0; x0 < DP; x0 += 32) {
            __m512i kv[16];
            BR_UNROLL for (int u = 0; u < KU; u++) kv[u] = br_load32(k + (int64_t)(j + u) * kt, x0, D);
            BR_UNROLL for (int r = 0; r < R; r++) {
                const __m512bh qv = (__m512bh)_mm512_load_si512(q + r * DP + x0);
                BR_UNROLL for (int u = 0; u < KU; u++) {
                    const int L = r * KU + u;
                    acc[BR_SRC(L)] = _mm512_dpbf16_ps(acc[BR_SRC(L)], (__m512bh)kv[u], qv);
                }
            }
        }
        const __m512 sum = br_sum16(acc);
        BR_UNROLL for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(s + r * BR_NB + j - r * KU, (__mmask16)(((1u << KU) - 1) << (r * KU)), sum);
    }
    for (; j < nb; j++) {
        __m512 acc[BR_R];
        BR_UNROLL for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
        for (int x0 = 0; x0 < DP; x0 += 32) {
            const __m512i kv = br_load32(k + (int64_t)j * kt, x0, D);
            BR_UNROLL for (int r = 0; r < R; r++)
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)kv, (__m512bh)_mm512_load_si512(q + r * DP + x0));
        }
        BR_UNROLL for (int r = 0; r < R; r++) s[r * BR_NB + j] = _mm512_reduce_add_ps(acc[r]);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * P·V: pairs of V rows interleaved by vpunpck{l,h}wd, o kept permuted (br_dim, decode_bf16.h).
 */
/* o_r (NV pairs of vectors from x0, permuted) = alpha_r·o_r + Σ_{j<nb} p_r[j]·v_j for R rows (o_r at
 * o + r·DvP, P as bf16 at p + r·BR_PS, an even count: a last odd key is paired with a zero weight and a
 * zero row). The first chunk (x0 = 0) prefetches V BR_PF keys ahead, up to key `ahead`. */
static inline __attribute__((always_inline)) void br_pv_chunk(const int R, const int NV, float *o, int DvP,
                                                              const float *alpha, const uint16_t *p, const uint16_t *v,
                                                              int64_t vt, int Dv, int j1, int nb, int x0, int ahead) {
    __m512 acc[BR_R][2 * 2];
    BR_UNROLL for (int r = 0; r < R; r++)
        BR_UNROLL for (int u = 0; u < 2 * NV; u++)
            acc[r][u] = alpha ? _mm512_mul_ps(_mm512_load_ps(o + r * DvP + x0 + 16 * u), _mm512_set1_ps(alpha[r]))
                              : _mm512_load_ps(o + r * DvP + x0 + 16 * u);
    for (int j = j1; j < nb && j < j1 + BR_PVK; j += 2) {
        const uint16_t *v0 = v + (int64_t)j * vt, *v1 = v0 + vt;
        if (x0 == 0) {
            br_prefetch(v, vt, j, ahead, Dv);
            br_prefetch(v, vt, j + 1, ahead, Dv);
        }
        __m512i lo[2], hi[2];
        BR_UNROLL for (int c = 0; c < NV; c++) {
            const __m512i a = br_load32(v0, x0 + 32 * c, Dv);
            const __m512i b = j + 1 < nb ? br_load32(v1, x0 + 32 * c, Dv) : _mm512_setzero_si512();
            lo[c] = _mm512_unpacklo_epi16(a, b);
            hi[c] = _mm512_unpackhi_epi16(a, b);
        }
        BR_UNROLL for (int r = 0; r < R; r++) {
            uint32_t pr;
            memcpy(&pr, p + r * BR_PS + j, sizeof pr);
            const __m512bh pv = (__m512bh)_mm512_set1_epi32((int)pr);
            BR_UNROLL for (int c = 0; c < NV; c++) {
                acc[r][2 * c] = _mm512_dpbf16_ps(acc[r][2 * c], (__m512bh)lo[c], pv);
                acc[r][2 * c + 1] = _mm512_dpbf16_ps(acc[r][2 * c + 1], (__m512bh)hi[c], pv);
            }
        }
    }
    BR_UNROLL for (int r = 0; r < R; r++)
        BR_UNROLL for (int u = 0; u < 2 * NV; u++) _mm512_store_ps(o + r * DvP + x0 + 16 * u, acc[r][u]);
}

static inline __attribute__((always_inline)) void br_pv(const int R, float *o, int DvP, const float *alpha,
                                                        const uint16_t *p, const uint16_t *v, int64_t vt, int Dv,
                                                        int nb, int ahead) {
    /* 32 keys at a time, all of Dv (64 dims at a time: 16 accumulators for 4 rows) before the next 32:
     * each V row is brought in once and read whole (half rows in two passes over the block left the
     * prefetchers a stream with holes) */
    for (int j1 = 0; j1 < nb; j1 += BR_PVK, alpha = NULL) {
        int x0 = 0;
        for (; x0 + 64 <= DvP; x0 += 64)
            br_pv_chunk(R, 2, o, DvP, alpha, p, v, vt, Dv, j1, nb, x0, ahead);
        if (x0 < DvP) br_pv_chunk(R, 1, o, DvP, alpha, p, v, vt, Dv, j1, nb, x0, ahead);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * One pack: R query rows (b, hs[r], ts[r]) of kv head hk against every key they may see.
 */
static size_t br_thread_bytes(int DP, int DvP) {
    return br_round((size_t)BR_R * DP * 2) + br_round((size_t)BR_R * DvP * 4) + br_round((size_t)BR_R * BR_NB * 4) +
           br_round((size_t)BR_R * BR_PS * 2);
}

static inline __attribute__((always_inline)) void br_rows_r(const int R, const br_fwd *cx, char *tw, int b, int hk,
                                                            const int *hs, const int *ts) {
    const attn_sdpa_desc *d = cx->d;
    const int D = d->D, Dv = d->Dv, DP = cx->DP, DvP = cx->DvP;
    uint16_t *q = (uint16_t *)tw;                                                        /* R x DP, bf16 */
    float *o = (float *)(tw + br_round((size_t)BR_R * DP * 2));                         /* R x DvP, permuted */
    float *s = (float *)((char *)o + br_round((size_t)BR_R * DvP * 4));                 /* R x BR_NB */
    uint16_t *p = (uint16_t *)((char *)s + br_round((size_t)BR_R * BR_NB * 4));         /* R x BR_PS, bf16 */
    const uint16_t *kb = cx->k + b * d->k.b + hk * d->k.h;
    const uint16_t *vb = cx->v + b * d->v.b + hk * d->v.h;
    br_rowset rs;
    br_rows_begin(&rs, cx, b, hs, ts, R);
    BR_UNROLL for (int r = 0; r < R; r++)
        for (int x = 0; x < DP; x++) q[r * DP + x] = x < D ? rs.qrow[r][x] : 0;
    memset(o, 0, sizeof(float) * (size_t)R * DvP);
    const int maxlim = rs.maxlim;

    for (int j0 = 0; j0 < maxlim; j0 += BR_NB) {
        const int nb = maxlim - j0 < BR_NB ? maxlim - j0 : BR_NB;
        br_scores(R, s, q, DP, kb + (int64_t)j0 * d->k.t, d->k.t, D, nb, maxlim - j0);
        const int masked = br_softmax(&rs, d, s, p, j0, nb);
        const uint16_t *vj = vb + (int64_t)j0 * d->v.t;
        /* V rows not all finite: the zero weights skip theirs */
        if (!masked || !br_rows_nonfinite(vj, d->v.t, nb, Dv))
            br_pv(R, o, DvP, rs.alpha, p, vj, d->v.t, Dv, nb, maxlim - j0);
        else
            br_pv_careful(&rs, o, DvP, p, vj, d->v.t, Dv, nb);
    }
    br_rows_end(&rs, cx, o, kb, b, hs, ts);
    attn__count_scores(ATTN_PASS_FORWARD, (int64_t)R * maxlim);
}

static void br_rows(const br_fwd *cx, char *tw, int b, int hk, const int *hs, const int *ts, int R) {
    switch (R) {                           /* the register count must be a constant */
    case 1: br_rows_r(1, cx, tw, b, hk, hs, ts); break;
    case 2: br_rows_r(2, cx, tw, b, hk, hs, ts); break;
    case 3: br_rows_r(3, cx, tw, b, hk, hs, ts); break;
    default: br_rows_r(4, cx, tw, b, hk, hs, ts); break;
    }
}

/* ===================================================================================================
 * The block forward (more than BR_MAX_T query rows): fused_impl.h's block path with vdpbf16ps for both
 * products. Items (b, h, block of BB_BR query rows), latest blocks first, or with fewer rows per head
 * (b, kv head, block of BB_BR of its group's rows); vectors run along the block's query rows, so scores
 * are kept transposed, Sᵀ (keys, queries), and the online softmax is lane-wise.
 *   Qp (D/2 pairs, BR)   the block's queries as bf16 pairs: lane i of pair p holds (q_i[2p], q_i[2p+1])
 *   scores   Sᵀ[j] = scale · Σ_p vdpbf16ps(Qp[p], broadcast (k_j[2p], k_j[2p+1]))   K read where it lies
 *   masks    key limits by lanes, the boolean mask and the bias key by key; the max and its key by lanes
 *   softmax  base 2 with the AVX-512 exp2, subtracting first (DESIGN "Row statistics")
 *   Pp (nb/2 pairs, BR)  P rounded to bf16 (to nearest even), lane i of pair jp: (p_i[2jp], p_i[2jp+1])
 *   Vp (nb/2 pairs, DvP) V rows interleaved in pairs by vpunpck{l,h}wd, put back in dim order
 *   P·V      Oᵀ[x] = alpha ∘ Oᵀ[x] + Σ_jp vdpbf16ps(Pp[jp], broadcast Vp[jp][x])    fp32 accumulators
 * A register tile of BB_RT rows (keys, or dims of Oᵀ) by up to BB_NV vectors of queries serves both.
 * The row statistics are the rows path's: the canonical score of each row's argmax key, and l as taken.
 * Memory: per thread Qp, Oᵀ, Sᵀ, Pp and Vp of one block (about 130 KiB at D = Dv = 128).
 */
#define BB_NV 4                     /* query vectors per block */
#define BB_BR (16 * BB_NV)          /* query rows per block */
#define BB_BC 128                   /* keys per block (even) */
#define BB_RT 6                     /* register tile rows */

static size_t bb_thread_bytes(int D, int Dv) {
    const size_t DvP = (size_t)br_up32(Dv);
    return br_round((size_t)(D + 1) / 2 * BB_BR * 4) + br_round((size_t)Dv * BB_BR * 4) +
           br_round((size_t)BB_BC * BB_BR * 4) + br_round((size_t)BB_BC / 2 * BB_BR * 4) +
           br_round((size_t)BB_BC / 2 * DvP * 4) + 6 * br_round((size_t)BB_BR * 4);
}

/* Sᵀ rows j .. j+RT (keys, rows of k kt apart) by NV query vectors, times scale (stride BR). An odd D's
 * last pair takes (k[D-1], 0): nothing past a row is read. */
static inline __attribute__((always_inline)) void bb_scores_tile(const int RT, const int NV, float *St, int BR,
                                                                 const uint32_t *Qp, const uint16_t *k, int64_t kt,
                                                                 int D, float scale) {
    __m512 acc[BB_RT][BB_NV];
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    const int D2 = D / 2;
    for (int p = 0; p < D2; p++) {
        __m512bh qv[BB_NV];
        BR_UNROLL for (int v = 0; v < NV; v++) qv[v] = (__m512bh)_mm512_load_si512(Qp + (int64_t)p * BR + 16 * v);
        BR_UNROLL for (int r = 0; r < RT; r++) {
            uint32_t kk;
            memcpy(&kk, k + r * kt + 2 * p, sizeof kk);
            const __m512bh kb = (__m512bh)_mm512_set1_epi32((int)kk);
            BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], qv[v], kb);
        }
    }
    if (D & 1) {
        __m512bh qv[BB_NV];
        BR_UNROLL for (int v = 0; v < NV; v++) qv[v] = (__m512bh)_mm512_load_si512(Qp + (int64_t)D2 * BR + 16 * v);
        BR_UNROLL for (int r = 0; r < RT; r++) {
            const __m512bh kb = (__m512bh)_mm512_set1_epi32((int)k[r * kt + D - 1]);
            BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], qv[v], kb);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++) _mm512_store_ps(St + r * BR + 16 * v, _mm512_mul_ps(acc[r][v], sc));
}

/* Oᵀ rows x .. x+RT (dims, stride BR) by NV query vectors: alpha ∘ Oᵀ + Σ_{jp < np} Vp[jp][x + r]·Pp[jp]. */
static inline __attribute__((always_inline)) void bb_pv_tile(const int RT, const int NV, float *Ot, int BR,
                                                             const uint32_t *Vp, int DvP, const uint32_t *Pp, int np,
                                                             const float *alpha) {
    __m512 acc[BB_RT][BB_NV];
    BR_UNROLL for (int v = 0; v < NV; v++) {
        const __m512 al = _mm512_load_ps(alpha + 16 * v);
        BR_UNROLL for (int r = 0; r < RT; r++) acc[r][v] = _mm512_mul_ps(_mm512_load_ps(Ot + r * BR + 16 * v), al);
    }
    for (int jp = 0; jp < np; jp++) {
        __m512bh pv[BB_NV];
        BR_UNROLL for (int v = 0; v < NV; v++) pv[v] = (__m512bh)_mm512_load_si512(Pp + (int64_t)jp * BR + 16 * v);
        BR_UNROLL for (int r = 0; r < RT; r++) {
            const __m512bh vb = (__m512bh)_mm512_set1_epi32((int)Vp[(int64_t)jp * DvP + r]);
            BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], pv[v], vb);
        }
    }
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++) _mm512_store_ps(Ot + r * BR + 16 * v, acc[r][v]);
}

/* The tiles for each shape (the register count must be a constant), and tables of them. */
typedef void (*bb_scores_fn)(float *, int, const uint32_t *, const uint16_t *, int64_t, int, float);
typedef void (*bb_pv_fn)(float *, int, const uint32_t *, int, const uint32_t *, int, const float *);
#define BB_DEF(RT, NV)                                                                                         \
    static void bb_sc_##RT##_##NV(float *St, int BR, const uint32_t *Qp, const uint16_t *k, int64_t kt, int D, \
                                  float scale) {                                                               \
        bb_scores_tile(RT, NV, St, BR, Qp, k, kt, D, scale);                                                   \
    }                                                                                                          \
    static void bb_pv_##RT##_##NV(float *Ot, int BR, const uint32_t *Vp, int DvP, const uint32_t *Pp, int np,  \
                                  const float *alpha) {                                                        \
        bb_pv_tile(RT, NV, Ot, BR, Vp, DvP, Pp, np, alpha);                                                    \
    }
#define BB_DEF_ROW(RT) BB_DEF(RT, 1) BB_DEF(RT, 2) BB_DEF(RT, 3) BB_DEF(RT, 4)
BB_DEF_ROW(1) BB_DEF_ROW(2) BB_DEF_ROW(3) BB_DEF_ROW(4) BB_DEF_ROW(5) BB_DEF_ROW(6)
#define BB_ROW(f, RT) {f##_##RT##_1, f##_##RT##_2, f##_##RT##_3, f##_##RT##_4}
static const bb_scores_fn bb_sc_tab[BB_RT][BB_NV] = {BB_ROW(bb_sc, 1), BB_ROW(bb_sc, 2), BB_ROW(bb_sc, 3),
                                                     BB_ROW(bb_sc, 4), BB_ROW(bb_sc, 5), BB_ROW(bb_sc, 6)};
static const bb_pv_fn bb_pv_tab[BB_RT][BB_NV] = {BB_ROW(bb_pv, 1), BB_ROW(bb_pv, 2), BB_ROW(bb_pv, 3),
                                                 BB_ROW(bb_pv, 4), BB_ROW(bb_pv, 5), BB_ROW(bb_pv, 6)};

/* Vp[jp][x] = (v_{2jp}[x], v_{2jp+1}[x]) for x < DvP (rows of v vt apart): zeros past Dv and for a key at
 * nb. vpunpck{l,h}wd give dims x0 + 8c + i (lo) and x0 + 8c + 4 + i (hi) in 128-bit lane c, slot i; two
 * vpermt2d put them back in order. */
static void bb_pack_v(uint32_t *Vp, int DvP, const uint16_t *v, int64_t vt, int Dv, int nb) {
    const __m512i ia = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i ib = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int jp = 0; 2 * jp < nb; jp++) {
        const uint16_t *v0 = v + (int64_t)(2 * jp) * vt, *v1 = v0 + vt;
        uint32_t *o = Vp + (int64_t)jp * DvP;
        for (int x0 = 0; x0 < DvP; x0 += 32) {
            const __m512i a = br_load32(v0, x0, Dv);
            const __m512i b = 2 * jp + 1 < nb ? br_load32(v1, x0, Dv) : _mm512_setzero_si512();
            const __m512i lo = _mm512_unpacklo_epi16(a, b), hi = _mm512_unpackhi_epi16(a, b);
            _mm512_store_si512(o + x0, _mm512_permutex2var_epi32(lo, ia, hi));
            _mm512_store_si512(o + x0 + 16, _mm512_permutex2var_epi32(lo, ib, hi));
        }
    }
}

typedef struct bb_rows {
    float *m, *l, *bm, *alpha;      /* (BR) each */
    int32_t *lim, *jm;              /* (BR) each: key limits, the running max's key */
} bb_rows;

/* The online-softmax step of one block (nb keys of Sᵀ, stride BR, NV vectors), fused_impl.h's: with bm the
 * block's max (folded with m), alpha = exp(m - bm), P = exp(Sᵀ - bm), l = alpha·l + Σ_j P, m = bm. P goes
 * to Pp as bf16 pairs, or, with dropout (applied after the sum), back into Sᵀ as fp32. */
static inline __attribute__((always_inline)) void bb_softmax(const int NV, float *St, int BR, int nb,
                                                             const bb_rows *rw, uint32_t *Pp, int keep_fp32) {
    __m512 bs[BB_NV], s0[BB_NV];
    const __m512 l2e = _mm512_set1_ps(BR_LOG2E);
    BR_UNROLL for (int v = 0; v < NV; v++) {
        /* a lane with no key yet keeps max -inf: subtract -FLT_MAX instead so exp2 gives 0, not NaN */
        bs[v] = _mm512_max_ps(_mm512_load_ps(rw->bm + 16 * v), _mm512_set1_ps(-FLT_MAX));
        s0[v] = _mm512_setzero_ps();
    }
    for (int j = 0; j < nb; j += 2) {
        float *x = St + j * BR;
        BR_UNROLL for (int v = 0; v < NV; v++) {
            const __m512 e0 = attn__exp2_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(x + 16 * v), bs[v]), l2e));
            __m512 e1 = _mm512_setzero_ps();
            s0[v] = _mm512_add_ps(s0[v], e0);
            if (j + 1 < nb) {
                e1 = attn__exp2_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(x + BR + 16 * v), bs[v]), l2e));
                s0[v] = _mm512_add_ps(s0[v], e1);
            }
            if (keep_fp32) {
                _mm512_store_ps(x + 16 * v, e0);
                if (j + 1 < nb) _mm512_store_ps(x + BR + 16 * v, e1);
            } else {
                _mm512_store_si512(Pp + (int64_t)(j / 2) * BR + 16 * v, br_pair(e0, e1));
            }
        }
    }
    BR_UNROLL for (int v = 0; v < NV; v++) {
        const __m512 al = attn__exp2_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(rw->m + 16 * v), bs[v]), l2e));
        _mm512_store_ps(rw->l + 16 * v, _mm512_fmadd_ps(_mm512_load_ps(rw->l + 16 * v), al, s0[v]));
        _mm512_store_ps(rw->m + 16 * v, _mm512_load_ps(rw->bm + 16 * v));
        _mm512_store_ps(rw->alpha + 16 * v, al);
    }
}

/* The canonical scores (decode_bf16.h) of the block's rows that saw a key, each row's query with its
 * argmax key, into mc: 16 rows at a time, lane i the row's own chain of br_canonical (fma(q_x·scale, k_x)
 * for x = 0..D-1 in order), the queries' dims from the pairs of Qp (D2, BR), the keys' from their rows
 * transposed in registers. */
static void bb_canonical(float *mc, const uint32_t *Qp, int BR, const bb_rows *rw, int nr, const uint16_t *kb,
                         int64_t kt, int D, float scale) {
    const __m512 sc = _mm512_set1_ps(scale);
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int v = 0; v * 16 < nr; v++) {
        const uint16_t *rows[16];
        for (int i = 0; i < 16; i++) {
            const int r = 16 * v + i;
            rows[i] = r < nr && rw->jm[r] >= 0 ? kb + (int64_t)rw->jm[r] * kt : NULL;
        }
        __m512 acc = _mm512_setzero_ps();
        __m512i kp[16];
        for (int p0 = 0; 2 * p0 < D; p0 += 16) {
            br_pairs_t(kp, rows, p0, D);
            for (int p = p0; p < p0 + 16 && 2 * p < D; p++) {
                const __m512i qp = _mm512_load_si512(Qp + (int64_t)p * BR + 16 * v), k2 = kp[p - p0];
                acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(qp, 16)), sc),
                                      _mm512_castsi512_ps(_mm512_slli_epi32(k2, 16)), acc);
                if (2 * p + 1 < D)
                    acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(qp, hi)), sc),
                                          _mm512_castsi512_ps(_mm512_and_si512(k2, hi)), acc);
            }
        }
        _mm512_mask_storeu_ps(mc + 16 * v, br_lanes(nr - 16 * v), acc);
    }
}

/* Qp (D2, BR) = the pairs of dims of the block's query rows (b, hs[i], ts[i]) for i < nr, lane i; padding
 * rows 0. 16 rows by 16 pairs at a time, transposed in registers. */
static void bb_pack_q(uint32_t *Qp, int BR, const attn_sdpa_desc *d, const uint16_t *q, int b, const int *hs,
                      const int *ts, int nr) {
    const int D = d->D;
    const uint16_t *qb = q + b * d->q.b;
    for (int v = 0; v < BR / 16; v++) {
        const uint16_t *rows[16];
        for (int i = 0; i < 16; i++) {
            const int r = 16 * v + i;
            rows[i] = r < nr ? qb + hs[r] * d->q.h + (int64_t)ts[r] * d->q.t : NULL;
        }
        __m512i t[16];
        for (int p0 = 0; 2 * p0 < D; p0 += 16) {
            br_pairs_t(t, rows, p0, D);
            for (int p = p0; p < p0 + 16 && 2 * p < D; p++)
                _mm512_store_si512(Qp + (int64_t)p * BR + 16 * v, t[p - p0]);
        }
    }
}

/* out's rows (b, hs[i], ts[i]), i < nr, = Oᵀ's columns / l (0 where l is 0), bf16 (br_round16) or fp32:
 * 16 rows by 16 dims at a time, transposed in registers. */
static void bb_put_out(const br_fwd *cx, int b, const int *hs, const int *ts, int nr, const float *Ot, int BR,
                       const float *l) {
    const int Dv = cx->d->Dv;
    for (int i0 = 0; i0 < nr; i0 += 16) {
        float inv[16];
        for (int i = 0; i < 16; i++) inv[i] = i0 + i < nr && l[i0 + i] > 0.0f ? 1.0f / l[i0 + i] : 0.0f;
        for (int x0 = 0; x0 < Dv; x0 += 16) {
            __m512i v[16];
            for (int x = 0; x < 16; x++)
                v[x] = x0 + x < Dv ? _mm512_loadu_si512(Ot + (int64_t)(x0 + x) * BR + i0) : _mm512_setzero_si512();
            attn__transpose16(v);
            const __mmask16 m = br_lanes(Dv - x0);
            for (int i = 0; i < 16 && i0 + i < nr; i++) {
                const int h = hs[i0 + i], t = ts[i0 + i];
                const __m512 y = _mm512_mul_ps(_mm512_castsi512_ps(v[i]), _mm512_set1_ps(inv[i]));
                if (cx->out32)
                    _mm512_mask_storeu_ps(cx->out32 + b * cx->ol.b + h * cx->ol.h + (int64_t)t * cx->ol.t + x0, m, y);
                else
                    _mm256_mask_storeu_epi16(cx->out + b * cx->d->out.b + h * cx->d->out.h + (int64_t)t * cx->d->out.t +
                                                 x0, m, br_round16(y));
            }
        }
    }
}

/* One block of nr query rows (b, hs[i], ts[i]) of kv head hk against every key they may see: a head's
 * rows, or with few rows per head those of the heads of a grouped-query group. */
static void bb_block(const br_fwd *cx, char *tw, int b, int hk, const int *hs, const int *ts, int nr) {
    const attn_sdpa_desc *d = cx->d;
    const int H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv;
    const int D2 = (D + 1) / 2, DvP = cx->DvP;
    const attn_mask *mk = &d->mask;
    const int nv = (nr + 15) / 16, BR = nv * 16;               /* vectors and padded rows in use */

    uint32_t *Qp = (uint32_t *)tw;                                                           /* (D2,BR) */
    float *Ot = (float *)(tw + br_round((size_t)D2 * BB_BR * 4));                             /* (Dv,BR) */
    float *St = (float *)((char *)Ot + br_round((size_t)Dv * BB_BR * 4));                     /* (BC,BR) */
    uint32_t *Pp = (uint32_t *)((char *)St + br_round((size_t)BB_BC * BB_BR * 4));            /* (BC/2,BR) */
    uint32_t *Vp = (uint32_t *)((char *)Pp + br_round((size_t)BB_BC / 2 * BB_BR * 4));        /* (BC/2,DvP) */
    bb_rows rw;
    rw.m = (float *)((char *)Vp + br_round((size_t)BB_BC / 2 * DvP * 4));
    rw.l = rw.m + BB_BR;
    rw.bm = rw.l + BB_BR;
    rw.alpha = rw.bm + BB_BR;
    rw.lim = (int32_t *)(rw.alpha + BB_BR);
    rw.jm = rw.lim + BB_BR;

    const uint16_t *kb = cx->k + b * d->k.b + hk * d->k.h;                         /* (S,D)  */
    const uint16_t *vb = cx->v + b * d->v.b + hk * d->v.h;                         /* (S,Dv) */
    const int generic = mk->allow || mk->bias;

    /* pack Qp; key limits per row (padding rows copy the last row's, their queries are 0) */
    bb_pack_q(Qp, BR, d, cx->q, b, hs, ts, nr);
    for (int i = 0; i < BR; i++) {
        const int ii = i < nr ? i : nr - 1;
        rw.lim[i] = attn__key_limit(mk, b, ts[ii], T, S);
        rw.m[i] = -INFINITY;
        rw.l[i] = 0.0f;
        rw.jm[i] = -1;
    }
    int minlim = S, maxlim = 0;
    for (int i = 0; i < BR; i++) {
        if (rw.lim[i] < minlim) minlim = rw.lim[i];
        if (rw.lim[i] > maxlim) maxlim = rw.lim[i];
    }
    memset(Ot, 0, sizeof(float) * (size_t)Dv * BR);
    int64_t counted = 0;

    for (int j0 = 0, nb = 0; j0 < maxlim; j0 += nb) {
        /* a block ends where the key limits start to differ across rows (causal diagonal, per-query
         * lengths), so the blocks before need no mask */
        nb = maxlim - j0 < BB_BC ? maxlim - j0 : BB_BC;
        if (j0 < minlim && j0 + nb > minlim) nb = minlim - j0;
        const int plain = !generic && j0 + nb <= minlim;
        counted += (int64_t)nb * nr;

        /* Sᵀ = scale · K_blk Qᵀ (keys, queries) */
        const uint16_t *kj = kb + (int64_t)j0 * d->k.t;
        for (int j = 0; j < nb; j += BB_RT) {
            const int rt = nb - j < BB_RT ? nb - j : BB_RT;
            bb_sc_tab[rt - 1][nv - 1](St + j * BR, BR, Qp, kj + (int64_t)j * d->k.t, d->k.t, D, d->scale);
        }

        /* masks: key limits by lanes, then the boolean mask and the bias key by key */
        if (!plain) {
            if (j0 + nb > minlim)
                for (int j = (minlim > j0 ? minlim - j0 : 0); j < nb; j++)
                    for (int v = 0; v < nv; v++) {
                        const __mmask16 out = _mm512_cmple_epi32_mask(_mm512_load_si512(rw.lim + 16 * v),
                                                                      _mm512_set1_epi32(j0 + j));
                        _mm512_mask_store_ps(St + j * BR + 16 * v, out, _mm512_set1_ps(-INFINITY));
                    }
            if (generic)
                for (int i = 0; i < nr; i++) {
                    const uint8_t *al = attn__allow_row(mk, b, hs[i], ts[i]);
                    const float *bi = attn__bias_row(mk, b, hs[i], ts[i]);
                    for (int j = 0; j < nb && j0 + j < rw.lim[i]; j++) {
                        float *x = St + j * BR + i;
                        if (al && !al[j0 + j]) *x = -INFINITY;
                        else if (bi) *x = br_add_bias(*x, bi[j0 + j]);
                    }
                }
        }

        /* the block's max folded with the running max, and the key where each lane's max was seen first */
        for (int v = 0; v < nv; v++) {
            __m512 mx = _mm512_load_ps(rw.m + 16 * v);
            __m512i jm = _mm512_load_si512(rw.jm + 16 * v);
            for (int j = 0; j < nb; j++) {
                const __m512 x = _mm512_load_ps(St + j * BR + 16 * v);
                jm = _mm512_mask_mov_epi32(jm, _mm512_cmp_ps_mask(x, mx, _CMP_GT_OQ), _mm512_set1_epi32(j0 + j));
                mx = _mm512_max_ps(mx, x);
            }
            _mm512_store_ps(rw.bm + 16 * v, mx);
            _mm512_store_si512(rw.jm + 16 * v, jm);
        }

        /* online softmax; P as bf16 pairs (after dropout, which the sum does not see) */
        const int drop = d->dropout > 0.0f;
        switch (nv) {
        case 1: bb_softmax(1, St, BR, nb, &rw, Pp, drop); break;
        case 2: bb_softmax(2, St, BR, nb, &rw, Pp, drop); break;
        case 3: bb_softmax(3, St, BR, nb, &rw, Pp, drop); break;
        default: bb_softmax(4, St, BR, nb, &rw, Pp, drop); break;
        }
        if (drop) {
            const float keep_scale = 1.0f / (1.0f - d->dropout);
            for (int i = 0; i < nr; i++) {
                const uint64_t row = ((uint64_t)b * H + hs[i]) * T + (uint64_t)ts[i];
                for (int j = 0; j < nb; j++) {
                    float *x = St + j * BR + i;
                    *x = attn__dropout_keep(d->seed, row * S + (uint64_t)(j0 + j), d->dropout) ? *x * keep_scale
                                                                                             : 0.0f;
                }
            }
            for (int j = 0; j < nb; j += 2)
                for (int v = 0; v < nv; v++)
                    _mm512_store_si512(Pp + (int64_t)(j / 2) * BR + 16 * v,
                                       br_pair(_mm512_load_ps(St + j * BR + 16 * v),
                                               j + 1 < nb ? _mm512_load_ps(St + (j + 1) * BR + 16 * v)
                                                          : _mm512_setzero_ps()));
        }

        /* Oᵀ = alpha ∘ Oᵀ + V_blkᵀ P_blk; a masked block whose V rows are not all finite skips the zero
         * weights one by one */
        const uint16_t *vj = vb + (int64_t)j0 * d->v.t;
        const int np = (nb + 1) / 2;
        if (plain || !br_rows_nonfinite(vj, d->v.t, nb, Dv)) {
            bb_pack_v(Vp, DvP, vj, d->v.t, Dv, nb);
            for (int x = 0; x < Dv; x += BB_RT) {
                const int rt = Dv - x < BB_RT ? Dv - x : BB_RT;
                bb_pv_tab[rt - 1][nv - 1](Ot + (int64_t)x * BR, BR, Vp + x, DvP, Pp, np, rw.alpha);
            }
        } else {
            for (int x = 0; x < Dv; x++)
                for (int i = 0; i < BR; i++) Ot[x * BR + i] *= rw.alpha[i];
            for (int j = 0; j < nb; j++)
                for (int i = 0; i < nr; i++) {
                    const uint16_t pj = (uint16_t)(Pp[(int64_t)(j / 2) * BR + i] >> (16 * (j & 1)));
                    if (pj != 0)
                        for (int x = 0; x < Dv; x++) Ot[x * BR + i] += attn__f32(pj) * attn__f32(vj[(int64_t)j * d->v.t + x]);
                }
        }
    }

    /* out = Oᵀ / l rounded to bf16 (or fp32: br_put_out); the row statistics with m the argmax key's
     * canonical score; rows that saw no key: zeros and (-inf, 0) */
    float *mcan = St;   /* (BR): the scores are done with */
    bb_canonical(mcan, Qp, BR, &rw, nr, kb, d->k.t, D, d->scale);
    bb_put_out(cx, b, hs, ts, nr, Ot, BR, rw.l);
    for (int i = 0; i < nr; i++) {
        const float li = rw.l[i];
        float mc = rw.m[i];
        if (li > 0.0f && rw.jm[i] >= 0 && mc == mc) {
            mc = mcan[i];
            const float *bi = attn__bias_row(mk, b, hs[i], ts[i]);
            if (bi) mc = br_add_bias(mc, bi[rw.jm[i]]);
        }
        float *st = cx->stats + 2 * (((int64_t)b * H + hs[i]) * T + ts[i]);
        st[0] = li == 0.0f ? -INFINITY : mc;
        st[1] = li == 0.0f ? 0.0f : logf(li);
    }
    attn__count_scores(ATTN_PASS_FORWARD, counted);
}

/* Forward work items: few rows per head (decoding) go by (b, kv head, pack of BR_R of the group's G·T
 * rows, g-major); fewer than BB_BR rows per head by (b, kv head, block of BB_BR of the group's rows), so
 * the heads of a group fill the lanes and read K and V once; otherwise (b, h, block of BB_BR query rows).
 * A last block of at most BR_MAX_T rows goes by rows. */
static int br_by_rows(const attn_sdpa_desc *d) { return d->T <= BR_MAX_T; }
static int br_grouped(const attn_sdpa_desc *d) { return d->T < BB_BR; }

static int64_t br_nqb(const attn_sdpa_desc *d) {
    const int64_t group_rows = (int64_t)(d->H / d->Hkv) * d->T;
    return br_by_rows(d)  ? (group_rows + BR_R - 1) / BR_R
           : br_grouped(d) ? (group_rows + BB_BR - 1) / BB_BR
                           : (d->T + BB_BR - 1) / BB_BR;
}

static int64_t br_items(const attn_sdpa_desc *d) {
    return (int64_t)d->B * (br_grouped(d) ? d->Hkv : d->H) * br_nqb(d);
}

/* A thread's bytes: the rows path's, and the block path's when T calls for it (it runs both). */
static size_t br_thread(const attn_sdpa_desc *d) {
    const size_t rows = br_thread_bytes(br_up32(d->D), br_up32(d->Dv));
    if (br_by_rows(d)) return rows;
    const size_t blk = bb_thread_bytes(d->D, d->Dv);
    return blk > rows ? blk : rows;
}

/* One stage; thread part->ith's items. Head by head, latest query blocks first: under a causal mask they
 * are the longest, so the last items handed out are short. */
static void br_forward(const attn_sdpa_desc *d, float *out, float *stats, const float *q, const float *k,
                       const float *v, void *work, const attn__part *part, float *out32, const attn_layout *ol) {
    br_fwd cx = {d, (uint16_t *)out, stats, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v,
                 br_up32(d->D), br_up32(d->Dv), 0, NULL, out32, ol ? *ol : d->out};
    cx.thread = br_thread(d);
    cx.work = (char *)(((uintptr_t)work + BR_ALIGN - 1) & ~(uintptr_t)(BR_ALIGN - 1));
    char *tw = cx.work + (size_t)part->ith * cx.thread;
    const int G = d->H / d->Hkv, T = d->T, group_rows = G * T, grouped = br_grouped(d);
    const int64_t nqb = br_nqb(d), items = br_items(d);
    const int step = br_by_rows(d) ? BR_R : BB_BR;
    int hs[BB_BR], ts[BB_BR];
    int64_t local = -1;
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        const int64_t bh = it / nqb;
        const int blk = (int)(it % nqb);
        int b, hk, nr;
        if (grouped) {                  /* bh is (b, kv head); the rows are (g, t), g-major */
            b = (int)(bh / d->Hkv);
            hk = (int)(bh % d->Hkv);
            const int r0 = blk * step;
            nr = group_rows - r0 < step ? group_rows - r0 : step;
            for (int r = 0; r < nr; r++) {
                hs[r] = hk * G + (r0 + r) / T;
                ts[r] = (r0 + r) % T;
            }
        } else {                        /* bh is (b, h); latest query blocks first */
            b = (int)(bh / d->H);
            const int h = (int)(bh % d->H), t0 = ((int)nqb - 1 - blk) * BB_BR;
            hk = h / G;
            nr = T - t0 < BB_BR ? T - t0 : BB_BR;
            for (int r = 0; r < nr; r++) {
                hs[r] = h;
                ts[r] = t0 + r;
            }
        }
        if (nr > BR_MAX_T) bb_block(&cx, tw, b, hk, hs, ts, nr);
        else br_rows(&cx, tw, b, hk, hs, ts, nr);
    }
}

/* ===================================================================================================
 * fp32 tensors with bf16 compute (more than BR_MAX_T query rows per head): bf16 products wherever the CPU
 * has bf16 units. On a CPU with AMX this table gets only the heads the tiles decline, 5 to 15 rows
 * (kernels_amx.c's AX_MIN_T; the Transformer translator's 10-row heads), which would otherwise multiply in
 * fp32 while longer heads multiply in bf16: one model, two arithmetics. Without AMX (Zen 4) it takes them
 * all: the request is honoured where the units are, as the tiles honour it for small heads that run
 * slower on them.
 *
 * One stage more, first: Q, K, V (and for the backward out and dout) are rounded to nearest even into
 * contiguous bf16 copies in the workspace. Then the kernels above run on the copies exactly as on bf16
 * tensors, except that they write out in fp32 and add dq, dk, dv to the caller's fp32 gradients in fp32
 * (br_fwd.out32, attn__bf16_grads32), by the caller's layouts; and the backward's Δ = rowsum(dout ∘ out),
 * summed on the copies with dP's own arithmetic (so that dP - Δ is exactly 0 where out is one V row: the
 * logits near 1e9 of test_bf16), gets Σ (out - bf16(out))·bf16(dout) added, in fp32: what rounding the
 * fp32 out took (about 1e-3 of Δ, which times |q| up to 2000 moved dk by 5 in test_bf16). Each
 * difference out - bf16(out) is exact, and 0 where out is a V row.
 *
 * Speed against the fp32 path (a Zen 4 EPYC, `attn bench --isa avx512 | --isa avx512bf16 --compute bf16
 * --backward`): at H = 8, T = S = 2048 faster (D = 64: forward 582-595 against 406-423 GFLOP/s, backward
 * 541 against 400-420; D = 128: 655-668 against 439-456, 536-557 against 383-407); at T = S = 256 causal
 * level; at the models' small heads slower (one thread, forward and backward ms: B 64, H 4, T = S 17,
 * D 32: 0.32 and 1.03-1.06 against 0.22 and 0.36; B 64, H 4, T = S 20, D 8: 0.17 and 0.46 against 0.11
 * and 0.22), as the AMX tiles are at those shapes.
 *
 * Not taken: decoding (T <= BR_MAX_T): rounding the whole K/V cache at every step would cost more than the
 * step; the sparse mask parts (the fp32 kernels on copies, as for bf16 tensors).
 */
enum { BC_Q, BC_K, BC_V, BC_OUT, BC_DOUT, BC_COUNT };

static int bc_native(const attn_sdpa_desc *d) {
    return d->dtype == ATTN_DTYPE_F32 && d->compute == ATTN_DTYPE_BF16 && d->T > BR_MAX_T &&
           !attn__mask_sparse(&d->mask);
}

/* The descriptor of the copies: contiguous bf16. */
static attn_sdpa_desc bc_desc(const attn_sdpa_desc *d) { return attn__contiguous_desc(d, ATTN_DTYPE_BF16); }

/* Copy i: its heads, rows per head and row width, and the caller's layout. */
static const attn_layout *bc_shape(const attn_sdpa_desc *d, int i, int *heads, int *rows, int *inner) {
    *heads = i == BC_K || i == BC_V ? d->Hkv : d->H;
    *rows = i == BC_K || i == BC_V ? d->S : d->T;
    *inner = i == BC_Q || i == BC_K ? d->D : d->Dv;
    return i == BC_Q ? &d->q : i == BC_K ? &d->k : i == BC_V ? &d->v : &d->out;
}

static int bc_count(attn_pass pass) { return pass == ATTN_PASS_FORWARD ? BC_OUT : BC_COUNT; }

/* Offsets of the copies from the aligned workspace's start; returns their bytes in all (where the kernels'
 * own workspace starts). */
static size_t bc_offsets(const attn_sdpa_desc *d, attn_pass pass, size_t off[BC_COUNT]) {
    size_t n = 0;
    for (int i = 0; i < bc_count(pass); i++) {
        int heads, rows, inner;
        bc_shape(d, i, &heads, &rows, &inner);
        off[i] = n;
        n += br_round((size_t)d->B * heads * rows * inner * 2);
    }
    return n;
}

/* n fp32 values to bf16, rounded as attn__bf16 rounds (br_round16), 16 at a time. */
static inline void bc_round_row(uint16_t *dst, const float *x, int n) {
    for (int e = 0; e < n; e += 16) {
        const __mmask16 m = br_lanes(n - e);
        _mm256_mask_storeu_epi16(dst + e, m, br_round16(_mm512_maskz_loadu_ps(m, x + e)));
    }
}

/* The conversion stage: items of 64 rows of one copy. */
static void bc_convert(const attn_sdpa_desc *d, attn_pass pass, char *base, const size_t off[BC_COUNT],
                       const float *const src[BC_COUNT], const attn__part *part) {
    int64_t first[BC_COUNT + 1];
    first[0] = 0;
    for (int i = 0; i < bc_count(pass); i++) {
        int heads, rows, inner;
        bc_shape(d, i, &heads, &rows, &inner);
        first[i + 1] = first[i] + ((int64_t)d->B * heads * rows + 63) / 64;
    }
    int64_t local = -1;
    for (int64_t it = attn__part_next(part, &local); it < first[bc_count(pass)]; it = attn__part_next(part, &local)) {
        int i = 0;
        while (it >= first[i + 1]) i++;
        int heads, rows, inner;
        const attn_layout *l = bc_shape(d, i, &heads, &rows, &inner);
        const int64_t n = (int64_t)d->B * heads * rows, r0 = (it - first[i]) * 64, r1 = r0 + 64 < n ? r0 + 64 : n;
        uint16_t *dst = (uint16_t *)(base + off[i]);
        int64_t b = r0 / ((int64_t)heads * rows), h = r0 / rows % heads, t = r0 % rows;
        for (int64_t r = r0; r < r1; r++) {
            bc_round_row(dst + r * inner, src[i] + b * l->b + h * l->h + t * l->t, inner);
            if (++t == rows) {
                t = 0;
                if (++h == heads) h = 0, b++;
            }
        }
    }
}

/* Stage 0 of a pass on copies: converts src (fp32 tensors, by BC_* index) and returns 1. Any later stage:
 * returns 0 with the copies (bf16, contiguous), the kernels' own workspace after them, and the part with
 * its stage counted from the kernels' first. */
static int bc_stage(const attn_sdpa_desc *d, attn_pass pass, void *work, const float *const src[BC_COUNT],
                    const attn__part *part, const uint16_t *copy[BC_COUNT], char **own, attn__part *kp) {
    char *base = (char *)(((uintptr_t)work + BR_ALIGN - 1) & ~(uintptr_t)(BR_ALIGN - 1));
    size_t off[BC_COUNT];
    *own = base + bc_offsets(d, pass, off);
    if (part->stage == 0) {
        bc_convert(d, pass, base, off, src, part);
        return 1;
    }
    for (int i = 0; i < bc_count(pass); i++) copy[i] = (const uint16_t *)(base + off[i]);
    *kp = *part;
    kp->stage--;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * The table: this path's entries for the descriptors it computes, AVX-512's for the rest.
 */

/* The descriptors this path computes itself: bf16 tensors, forward (decoding, br_native, or by blocks)
 * and backward (bwd_avx512bf16.c); fp32 tensors with bf16 compute and more than 4 rows per head, on
 * copies (above). Other fp32 tensors (fp32 compute, or decoding) keep the fp32 paths. The sparse mask
 * parts go through the conversion path. */
static int bf_tensors(const attn_sdpa_desc *d) { return d->dtype == ATTN_DTYPE_BF16 && !attn__mask_sparse(&d->mask); }

static int bf_native(const attn_sdpa_desc *d, attn_pass pass) {
    (void)pass;
    return bf_tensors(d) || bc_native(d);
}

static size_t bf_own_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (pass == ATTN_PASS_BACKWARD) return attn__bf16_bwd_workspace(d, nth);
    if (nth < 1) nth = 1;
    /* D, Dv are ints: one thread's bytes fit in size_t; the product with nth is checked */
    const size_t one = br_thread(d);
    if (one > (SIZE_MAX - BR_ALIGN) / (size_t)nth) return SIZE_MAX;
    return (size_t)nth * one + BR_ALIGN;
}

static size_t bf_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (bf_tensors(d)) return bf_own_workspace(d, pass, nth);
    if (!bc_native(d)) return attn__kernels_avx512.sdpa_workspace(d, pass, nth);
    /* in double first: the copies are at most half the bytes of the caller's fp32 tensors, which exist */
    const double est =
        2.0 * d->B * ((double)d->H * d->T * (d->D + 2.0 * d->Dv) + (double)d->Hkv * d->S * (d->D + d->Dv));
    if (est > (double)(SIZE_MAX / 8)) return SIZE_MAX;
    const attn_sdpa_desc c = bc_desc(d);
    size_t off[BC_COUNT];
    const size_t copies = bc_offsets(d, pass, off), own = bf_own_workspace(&c, pass, nth);
    if (own > SIZE_MAX / 4) return SIZE_MAX;
    return copies + own + BR_ALIGN;
}

static int bf_stages(const attn_sdpa_desc *d, attn_pass pass) {
    if (!bf_native(d, pass)) return attn__kernels_avx512.sdpa_stages(d, pass);
    return (pass == ATTN_PASS_BACKWARD ? attn__bf16_bwd_stages(d) : 1) + (bc_native(d) ? 1 : 0);
}

static int bf_threads(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (!bf_native(d, pass)) return attn__kernels_avx512.sdpa_threads(d, pass, nth);
    if (pass == ATTN_PASS_BACKWARD) return attn__bf16_bwd_threads(d, nth);
    /* threads worth waking: about 4 MFLOP each at least, as the fp32 paths and this backward (a decoding
     * step of a few heads took 50 µs on 2 threads against 1 µs on one); never more than the items */
    const double want = 2.0 * d->B * d->H * (double)d->T * d->S * (d->D + d->Dv) / 4e6;
    const int64_t items = br_items(d);
    if (nth < 1) nth = 1;
    if (want < nth) nth = want < 1 ? 1 : (int)want;
    return items < nth ? (int)items : nth;
}

/* scores: weights asked for, which sdpa.c runs on fp32 descriptors only, never natively here */
static void bf_forward(const attn_sdpa_desc *d, float *out, float *stats, float *scores, const float *q,
                       const float *k, const float *v, void *work, const attn__part *part) {
    if (bf_tensors(d)) {
        br_forward(d, out, stats, q, k, v, work, part, NULL, NULL);
    } else if (bc_native(d)) {
        const float *const src[BC_COUNT] = {q, k, v, NULL, NULL};
        const uint16_t *c16[BC_COUNT];
        char *own;
        attn__part kp;
        if (bc_stage(d, ATTN_PASS_FORWARD, work, src, part, c16, &own, &kp)) return;
        const attn_sdpa_desc c = bc_desc(d);
        br_forward(&c, NULL, stats, (const float *)c16[BC_Q], (const float *)c16[BC_K], (const float *)c16[BC_V],
                   own, &kp, out, &d->out);
    } else {
        attn__kernels_avx512.sdpa_forward(d, out, stats, scores, q, k, v, work, part);
    }
}

static void bf_backward(const attn_sdpa_desc *d, float *dq, float *dk, float *dv, const float *dout,
                        const float *q, const float *k, const float *v, const float *out, const float *stats,
                        void *work, const attn__part *part) {
    if (bf_tensors(d)) {
        attn__bf16_backward(d, (uint16_t *)dq, (uint16_t *)dk, (uint16_t *)dv, (const uint16_t *)dout,
                            (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v, (const uint16_t *)out,
                            stats, work, part, NULL);
    } else if (bc_native(d)) {
        const float *const src[BC_COUNT] = {q, k, v, out, dout};
        const uint16_t *c16[BC_COUNT];
        char *own;
        attn__part kp;
        if (bc_stage(d, ATTN_PASS_BACKWARD, work, src, part, c16, &own, &kp)) return;
        const attn_sdpa_desc c = bc_desc(d);
        const attn__bf16_grads32 g = {dq, dk, dv, d->q, d->k, d->v, out, d->out};
        attn__bf16_backward(&c, NULL, NULL, NULL, c16[BC_DOUT], c16[BC_Q], c16[BC_K], c16[BC_V], c16[BC_OUT], stats,
                            own, &kp, &g);
    } else {
        attn__kernels_avx512.sdpa_backward(d, dq, dk, dv, dout, q, k, v, out, stats, work, part);
    }
}

const attn_kernels attn__kernels_avx512bf16 = {
    .isa = ATTN_ISA_AVX512BF16,
    .sdpa_native = bf_native,   /* the AVX-512 path takes only fp32 */
    .sdpa_workspace = bf_workspace,
    .sdpa_stages = bf_stages,
    .sdpa_threads = bf_threads,
    .sdpa_forward = bf_forward,
    .sdpa_backward = bf_backward,
};
