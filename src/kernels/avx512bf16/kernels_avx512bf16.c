/*
 * kernels_avx512bf16.c — the AVX512-BF16 path: AVX-512 plus `vdpbf16ps` (pairs of bf16 products summed
 * into fp32 lanes), for CPUs that have it with or without AMX (Zen 4 has it without). What it does itself:
 * the decoding forward (few query rows against a long bf16 K/V cache), reading bf16 K and V directly,
 * half the bytes of fp32. Everything else is the AVX-512 path's (the table's other entries hand those
 * descriptors to attn__kernels_avx512). The AMX path has its own decoding kernel on tiles (kernels_amx.c)
 * and shares this one's softmax (decode_bf16.h). Compiled with -mavx512bf16 and the AVX-512 flags;
 * reached only when the CPU has them (config.c).
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
 */
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
        for (int u = 0; u < KU; u++) br_prefetch(k, kt, j + u, ahead, D);
        __m512 acc[16];
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int x0 = 0; x0 < DP; x0 += 32) {
            __m512i kv[16];
            for (int u = 0; u < KU; u++) kv[u] = br_load32(k + (int64_t)(j + u) * kt, x0, D);
            for (int r = 0; r < R; r++) {
                const __m512bh qv = (__m512bh)_mm512_load_si512(q + r * DP + x0);
                for (int u = 0; u < KU; u++) {
                    const int L = r * KU + u;
                    acc[BR_SRC(L)] = _mm512_dpbf16_ps(acc[BR_SRC(L)], (__m512bh)kv[u], qv);
                }
            }
        }
        const __m512 sum = br_sum16(acc);
        for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(s + r * BR_NB + j - r * KU, (__mmask16)(((1u << KU) - 1) << (r * KU)), sum);
    }
    for (; j < nb; j++) {
        __m512 acc[BR_R];
        for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
        for (int x0 = 0; x0 < DP; x0 += 32) {
            const __m512i kv = br_load32(k + (int64_t)j * kt, x0, D);
            for (int r = 0; r < R; r++)
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)kv, (__m512bh)_mm512_load_si512(q + r * DP + x0));
        }
        for (int r = 0; r < R; r++) s[r * BR_NB + j] = _mm512_reduce_add_ps(acc[r]);
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
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 2 * NV; u++)
            acc[r][u] = alpha ? _mm512_mul_ps(_mm512_load_ps(o + r * DvP + x0 + 16 * u), _mm512_set1_ps(alpha[r]))
                              : _mm512_load_ps(o + r * DvP + x0 + 16 * u);
    for (int j = j1; j < nb && j < j1 + BR_PVK; j += 2) {
        const uint16_t *v0 = v + (int64_t)j * vt, *v1 = v0 + vt;
        if (x0 == 0) {
            br_prefetch(v, vt, j, ahead, Dv);
            br_prefetch(v, vt, j + 1, ahead, Dv);
        }
        __m512i lo[2], hi[2];
        for (int c = 0; c < NV; c++) {
            const __m512i a = br_load32(v0, x0 + 32 * c, Dv);
            const __m512i b = j + 1 < nb ? br_load32(v1, x0 + 32 * c, Dv) : _mm512_setzero_si512();
            lo[c] = _mm512_unpacklo_epi16(a, b);
            hi[c] = _mm512_unpackhi_epi16(a, b);
        }
        for (int r = 0; r < R; r++) {
            uint32_t pr;
            memcpy(&pr, p + r * BR_PS + j, sizeof pr);
            const __m512bh pv = (__m512bh)_mm512_set1_epi32((int)pr);
            for (int c = 0; c < NV; c++) {
                acc[r][2 * c] = _mm512_dpbf16_ps(acc[r][2 * c], (__m512bh)lo[c], pv);
                acc[r][2 * c + 1] = _mm512_dpbf16_ps(acc[r][2 * c + 1], (__m512bh)hi[c], pv);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int u = 0; u < 2 * NV; u++) _mm512_store_ps(o + r * DvP + x0 + 16 * u, acc[r][u]);
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
    for (int r = 0; r < R; r++)
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
}

static void br_rows(const br_fwd *cx, char *tw, int b, int hk, const int *hs, const int *ts, int R) {
    switch (R) {                           /* the register count must be a constant */
    case 1: br_rows_r(1, cx, tw, b, hk, hs, ts); break;
    case 2: br_rows_r(2, cx, tw, b, hk, hs, ts); break;
    case 3: br_rows_r(3, cx, tw, b, hk, hs, ts); break;
    default: br_rows_r(4, cx, tw, b, hk, hs, ts); break;
    }
}

/* One stage: items (b, kv head, pack of BR_R of the group's rows, g-major). */
static void br_forward(const attn_sdpa_desc *d, float *out, float *stats, const float *q, const float *k,
                       const float *v, void *work, const attn__part *part) {
    br_fwd cx = {d, (uint16_t *)out, stats, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v,
                 br_up32(d->D), br_up32(d->Dv), 0, NULL};
    cx.thread = br_thread_bytes(cx.DP, cx.DvP);
    cx.work = (char *)(((uintptr_t)work + BR_ALIGN - 1) & ~(uintptr_t)(BR_ALIGN - 1));
    char *tw = cx.work + (size_t)part->ith * cx.thread;
    const int64_t np = br_packs(d, BR_R), items = (int64_t)d->B * d->Hkv * np;
    int hs[BR_R], ts[BR_R];
    int64_t local = -1;
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        const int64_t bh = it / np;
        const int b = (int)(bh / d->Hkv), hk = (int)(bh % d->Hkv);
        const int R = br_pack_rows(d, hk, it % np, BR_R, hs, ts);
        br_rows(&cx, tw, b, hk, hs, ts, R);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * The table: this path's entries for the descriptors it computes, AVX-512's for the rest.
 */
static size_t bf_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (!br_native(d, pass)) return attn__kernels_avx512.sdpa_workspace(d, pass, nth);
    if (nth < 1) nth = 1;
    /* D, Dv are ints: one thread's bytes fit in size_t; the product with nth is checked */
    const size_t one = br_thread_bytes(br_up32(d->D), br_up32(d->Dv));
    if (one > (SIZE_MAX - BR_ALIGN) / (size_t)nth) return SIZE_MAX;
    return (size_t)nth * one + BR_ALIGN;
}

static int bf_stages(const attn_sdpa_desc *d, attn_pass pass) {
    if (!br_native(d, pass)) return attn__kernels_avx512.sdpa_stages(d, pass);
    return 1;
}

static int bf_threads(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (!br_native(d, pass)) return attn__kernels_avx512.sdpa_threads(d, pass, nth);
    const int64_t items = (int64_t)d->B * d->Hkv * br_packs(d, BR_R);
    if (nth < 1) nth = 1;
    return items < nth ? (int)items : nth;
}

/* scores: weights asked for, which sdpa.c runs on fp32 descriptors only, never natively here */
static void bf_forward(const attn_sdpa_desc *d, float *out, float *stats, float *scores, const float *q,
                       const float *k, const float *v, void *work, const attn__part *part) {
    if (br_native(d, ATTN_PASS_FORWARD)) br_forward(d, out, stats, q, k, v, work, part);
    else attn__kernels_avx512.sdpa_forward(d, out, stats, scores, q, k, v, work, part);
}

const attn_kernels attn__kernels_avx512bf16 = {
    .isa = ATTN_ISA_AVX512BF16,
    .sdpa_native = br_native,   /* the AVX-512 path takes only fp32 */
    .sdpa_workspace = bf_workspace,
    .sdpa_stages = bf_stages,
    .sdpa_threads = bf_threads,
    .sdpa_forward = bf_forward,
};
