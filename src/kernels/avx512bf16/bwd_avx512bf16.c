/*
 * bwd_avx512bf16.c — the AVX512-BF16 path's backward of bf16 tensors: dq, dk, dv with vdpbf16ps (pairs of
 * bf16 products summed into fp32 lanes), reading bf16 Q, K, V, out and dout and rounding each gradient to
 * bf16 once per call (or, for fp32 tensors with bf16 compute, reading bf16 copies of them and adding to
 * their fp32 gradients). fused_impl.h's backward order (FlashAttention-2): items (b, kv head, chunk of key
 * blocks), vectors along the 64 keys of a block, P and dS (queries, keys). Three stages:
 *   stage 0  per (b, h, block of 64 query rows), shared by every key block: scale·Q as fp32 rows, Q and
 *            dO as pairs of query rows along D and Dv (B of dK and dV), dO rows as bf16 pairs (A of dP),
 *            Δ = rowsum(dout ∘ out); the dQ slots of those rows cleared
 *   stage 1  items (b, kv head, chunk): per key block, K widened to fp32 (Kᵀ), V as pairs of dims and K as
 *            pairs of keys, packed once; then for every head of the group and block of query rows that
 *            sees it:
 *              x  = (scale·Q) Kᵀ (+ bias)        fp32 FMA, d = 0 .. D-1 from 0: the canonical score
 *              P  = exp2(-(max(0, m - x)·log2e + log2 l))   masks: key limits, boolean mask, bias
 *              dP = dO Vᵀ                        vdpbf16ps over pairs of dims
 *              dS = P ∘ (dP - Δ)                 (dropout: dP·mask and P·mask); 0 where P is 0
 *              dV += Pᵀ dO,  dK += dSᵀ Q         vdpbf16ps over pairs of query rows (P, dS as bf16),
 *                                                vectors along Dv and D, so the rows go back whole
 *              dQ slot += dS K                   vdpbf16ps over pairs of keys (dS as bf16)
 *            the block's dk, dv rows added and rounded when its last query block is done
 *   stage 2  dq += scale · Σ_chunk slot, chunks in order, rounded
 * The scores stay on fp32 FMA: the forwards of this path (and the AMX path's decoding and short-block
 * forwards, which hand their backward here) save as m the canonical fp32 score of the row's argmax key
 * (decode_bf16.h), and the backward must recompute that score bit for bit, or at logits near 1e9 the max's
 * weight comes out exp(-64) instead of 1 ("Row statistics" in docs/DESIGN.md). Δ is summed with the very
 * instructions and order of dP (vdpbf16ps over the same pairs), so where out equals a row's one V row (a
 * weight of exactly 1) dP - Δ is exactly 0, as it is in exact arithmetic.
 * NaN and Inf of K become 0 in the pairs of keys (dQ's operand only): a row that sees such a key has NaN in
 * its dS already, one that does not must not get 0·NaN; dS is 0 wherever P is 0, whatever dP holds.
 * Items own their keys' dK, dV and their chunk's dQ slot: bitwise the same result for any thread count.
 *
 * Memory: per (b, h) T·(6·D + 4·Dv + 4) bytes of packs (T padded to 64), the dQ slots
 * (nch·B·H·T·D fp32), and per thread the packs and sums of one key block and P, dS of one query block
 * (about 140 KiB at D = Dv = 64, 190 KiB at 128).
 * Compiled with -mavx512bf16 and the AVX-512 flags; reached only when the CPU has them (config.c).
 */
#include "kernels/avx512bf16/bwd_avx512bf16.h"

#include "kernels/avx512bf16/decode_bf16.h"

#define BW_B 64          /* keys per block and query rows per block */
#define BW_B2 (BW_B / 2) /* pairs of them */
#define BW_RT 6          /* register tile: rows x vectors */
#define BW_NV 4
#define BW_NCH 4         /* at most this many key chunks (dQ slots) per (b, kv head) */

typedef struct bw_dims {
    int DE, DvE, D16, nkb, nqb, nch;  /* D, Dv rounded up to even; D to 16; key and query blocks; chunks */
    size_t qs, qp, dor, dop, delta;   /* offsets in a (b, h)'s packs: scale·Q, Q pairs, dO rows, dO pairs, Δ */
    size_t side;                      /* bytes of one (b, h)'s packs */
    size_t slots;                     /* offset of the dQ slots (after every (b, h)'s packs) */
    size_t thread;                    /* offset of the threads' memory, and one thread's bytes */
    size_t tbytes;
    size_t kt, vp, kj, dks, dvs, p, ds, pp, dsp, dsb, rows;   /* offsets in a thread's memory */
} bw_dims;

static bw_dims bw_dims_of(const attn_sdpa_desc *d) {
    bw_dims z;
    const size_t D = (size_t)d->D, Dv = (size_t)d->Dv;
    z.DE = (d->D + 1) / 2 * 2;
    z.DvE = (d->Dv + 1) / 2 * 2;
    z.D16 = (d->D + 15) / 16 * 16;
    z.nkb = (d->S + BW_B - 1) / BW_B;
    z.nqb = (d->T + BW_B - 1) / BW_B;
    const size_t TP = (size_t)z.nqb * BW_B;
    /* chunks: more when there are few (b, kv head) pairs; the slots under 512 MiB */
    z.nch = (int64_t)d->B * d->Hkv >= 4 ? 2 : BW_NCH;
    if (z.nch > z.nkb) z.nch = z.nkb;
    while (z.nch > 1 && (double)z.nch * d->B * d->H * d->T * d->D * 4 > 512.0 * 1024 * 1024) z.nch /= 2;
    z.qs = 0;
    z.qp = br_round(TP * D * 4);
    z.dor = z.qp + br_round((size_t)z.nqb * D * BW_B2 * 4);
    z.dop = z.dor + br_round(TP * (size_t)z.DvE * 2);
    z.delta = z.dop + br_round((size_t)z.nqb * Dv * BW_B2 * 4);
    z.side = z.delta + br_round(TP * 4);
    z.slots = (size_t)d->B * d->H * z.side;
    z.thread = z.slots + br_round((size_t)z.nch * d->B * d->H * d->T * D * 4);
    z.kt = 0;                                                   /* (D, 64) fp32 */
    z.vp = z.kt + br_round(D * BW_B * 4);                       /* (DvE/2, 64) pairs of dims */
    z.kj = z.vp + br_round((size_t)z.DvE / 2 * BW_B * 4);      /* (32, D16) pairs of keys */
    z.dks = z.kj + br_round((size_t)BW_B2 * z.D16 * 4);       /* (64, D) fp32 */
    z.dvs = z.dks + br_round(D * BW_B * 4);                     /* (64, Dv) fp32 */
    z.p = z.dvs + br_round(Dv * BW_B * 4);                      /* (64, 64) fp32 */
    z.ds = z.p + br_round(BW_B * BW_B * 4);                     /* (64, 64) fp32 */
    z.pp = z.ds + br_round(BW_B * BW_B * 4);                    /* (32, 64) pairs of rows */
    z.dsp = z.pp + br_round(BW_B2 * BW_B * 4);                  /* (32, 64) pairs of rows */
    z.dsb = z.dsp + br_round(BW_B2 * BW_B * 4);                 /* (64, 64) bf16 */
    z.rows = z.dsb + br_round(BW_B * BW_B * 2);                 /* lim, m, L, Δ of a query block */
    z.tbytes = z.rows + 4 * br_round(BW_B * 4);
    return z;
}

/* ---------------------------------------------------------------------------------------------------
 * The two micro-kernels: C (RT rows, NV vectors; the last with `tail` lanes) with row stride ldc.
 *   bw_dp   C [+]= Σ_k vdpbf16ps(B row k, broadcast of the bf16 pair at A + r·ar + k·ak)   (A, B pairs)
 *   bw_fma  C  = Σ_k fma(A[r·ar + k], B row k), k in order from 0                          (fp32)
 * B's rows are ldb elements (of 32 bits) apart.
 */
static inline __attribute__((always_inline)) void bw_dp(const int RT, const int NV, float *C, int64_t ldc,
                                                        const uint16_t *A, int64_t ar, int64_t ak, const uint32_t *B,
                                                        int64_t ldb, int K, int acc_in, int tail) {
    __m512 acc[BW_RT][BW_NV];
    const __mmask16 tm = br_lanes(tail);
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++)
            acc[r][v] = !acc_in ? _mm512_setzero_ps()
                                : _mm512_maskz_loadu_ps(v == NV - 1 ? tm : 0xffff, C + r * ldc + 16 * v);
    for (int k = 0; k < K; k++) {
        __m512bh bv[BW_NV];
        BR_UNROLL for (int v = 0; v < NV; v++)
            bv[v] = (__m512bh)_mm512_maskz_loadu_epi32(v == NV - 1 ? tm : 0xffff, B + k * ldb + 16 * v);
        BR_UNROLL for (int r = 0; r < RT; r++) {
            uint32_t a;
            memcpy(&a, A + r * ar + k * ak, sizeof a);
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a);
            BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], bv[v], av);
        }
    }
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(C + r * ldc + 16 * v, v == NV - 1 ? tm : 0xffff, acc[r][v]);
}

static inline __attribute__((always_inline)) void bw_fma(const int RT, const int NV, float *C, int64_t ldc,
                                                         const float *A, int64_t ar, const float *B, int64_t ldb,
                                                         int K) {
    __m512 acc[BW_RT][BW_NV];
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 bv[BW_NV];
        BR_UNROLL for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(B + k * ldb + 16 * v);
        BR_UNROLL for (int r = 0; r < RT; r++) {
            const __m512 av = _mm512_set1_ps(A[r * ar + k]);
            BR_UNROLL for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    BR_UNROLL for (int r = 0; r < RT; r++)
        BR_UNROLL for (int v = 0; v < NV; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, acc[r][v]);
}

typedef void (*bw_dp_fn)(float *, int64_t, const uint16_t *, int64_t, int64_t, const uint32_t *, int64_t, int, int,
                         int);
#define BW_DEF(RT, NV)                                                                                        \
    static void bw_dp_##RT##_##NV(float *C, int64_t ldc, const uint16_t *A, int64_t ar, int64_t ak,           \
                                  const uint32_t *B, int64_t ldb, int K, int acc_in, int tail) {              \
        bw_dp(RT, NV, C, ldc, A, ar, ak, B, ldb, K, acc_in, tail);                                            \
    }
#define BW_DEF_ROW(RT) BW_DEF(RT, 1) BW_DEF(RT, 2) BW_DEF(RT, 3) BW_DEF(RT, 4)
BW_DEF_ROW(1) BW_DEF_ROW(2) BW_DEF_ROW(3) BW_DEF_ROW(4) BW_DEF_ROW(5) BW_DEF_ROW(6)
#define BW_ROW(RT) {bw_dp_##RT##_1, bw_dp_##RT##_2, bw_dp_##RT##_3, bw_dp_##RT##_4}
static const bw_dp_fn bw_dp_tab[BW_RT][BW_NV] = {BW_ROW(1), BW_ROW(2), BW_ROW(3), BW_ROW(4), BW_ROW(5), BW_ROW(6)};

/* The scores span the block's keys rounded up to 16 (1 to 4 vectors). */
typedef void (*bw_fma_fn)(float *, int64_t, const float *, int64_t, const float *, int64_t, int);
#define BW_FDEF(RT, NV)                                                                                       \
    static void bw_fma_##RT##_##NV(float *C, int64_t ldc, const float *A, int64_t ar, const float *B,          \
                                   int64_t ldb, int K) {                                                      \
        bw_fma(RT, NV, C, ldc, A, ar, B, ldb, K);                                                             \
    }
#define BW_FDEF_ROW(RT) BW_FDEF(RT, 1) BW_FDEF(RT, 2) BW_FDEF(RT, 3) BW_FDEF(RT, 4)
BW_FDEF_ROW(1) BW_FDEF_ROW(2) BW_FDEF_ROW(3) BW_FDEF_ROW(4) BW_FDEF_ROW(5) BW_FDEF_ROW(6)
#define BW_FROW(RT) {bw_fma_##RT##_1, bw_fma_##RT##_2, bw_fma_##RT##_3, bw_fma_##RT##_4}
static const bw_fma_fn bw_fma_tab[BW_RT][BW_NV] = {BW_FROW(1), BW_FROW(2), BW_FROW(3), BW_FROW(4), BW_FROW(5),
                                                   BW_FROW(6)};

/* C (M, N) [+]= A (M, K pairs) B (K pairs, N), tiled over bw_dp; N need not be a multiple of 16. */
static void bw_gemm_dp(int M, int N, float *C, int64_t ldc, const uint16_t *A, int64_t ar, int64_t ak,
                       const uint32_t *B, int64_t ldb, int K, int acc_in) {
    for (int c0 = 0; c0 < N; c0 += 16 * BW_NV) {
        int nvec = (N - c0 + 15) / 16;
        if (nvec > BW_NV) nvec = BW_NV;
        const int tail = N - c0 - 16 * (nvec - 1);
        for (int r0 = 0; r0 < M; r0 += BW_RT) {
            const int rt = M - r0 < BW_RT ? M - r0 : BW_RT;
            bw_dp_tab[rt - 1][nvec - 1](C + r0 * ldc + c0, ldc, A + r0 * ar, ar, ak, B + c0, ldb, K, acc_in, tail);
        }
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Stage 0.
 */

/* Δ = Σ_x out[x]·dout[x] by the arithmetic of dP = dO Vᵀ (bw_dp with dO pairs broadcast, V pairs as the
 * vector): the same products summed in the same order, so out = v_j gives Δ = dP_j bit for bit. n <= 8
 * rows at once, their chains side by side, each the one a row gives alone: out rows o[r] (Dv values) and
 * dO rows g[r] as the stage packs them (DvE values, an odd Dv padded with a zero). A pair is one 32-bit
 * load. */
#define BW_DR 8
static void bw_delta(float *delta, const uint16_t *const *o, const uint16_t *const *g, int n, int Dv) {
    __m512 acc[BW_DR];
    BR_UNROLL for (int r = 0; r < BW_DR; r++) acc[r] = _mm512_setzero_ps();
    for (int p = 0; 2 * p < Dv; p++)
        BR_UNROLL for (int r = 0; r < BW_DR; r++)
            if (r < n) {
                uint32_t op = o[r][2 * p], gp;
                if (2 * p + 1 < Dv) memcpy(&op, o[r] + 2 * p, sizeof op);
                memcpy(&gp, g[r] + 2 * p, sizeof gp);
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32((int)op),
                                          (__m512bh)_mm512_set1_epi32((int)gp));
            }
    for (int r = 0; r < n; r++) delta[r] = _mm512_cvtss_f32(acc[r]);
}

/* pairs[(i/2)·D + x] = (row i, row i + 1) at dim x, for the n rows of D values at r (rt apart), an odd last
 * row paired with 0: two row loads and an interleave per 16 dims. */
static void bw_pair_rows(uint32_t *pairs, const uint16_t *r, int64_t rt, int n, int D) {
    for (int ip = 0; 2 * ip < n; ip++) {
        const int two = 2 * ip + 1 < n;
        const uint16_t *r0 = r + (int64_t)(2 * ip) * rt, *r1 = two ? r0 + rt : r0;
        for (int x = 0; x < D; x += 16) {
            const __mmask16 m = br_lanes(D - x);
            const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, r0 + x));
            const __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(two ? m : 0, r1 + x));
            _mm512_mask_storeu_epi32(pairs + (int64_t)ip * D + x, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/* Query rows [64·qb, 64·qb + 64) of (b, h): their packs, Δ, and their rows of every dQ slot cleared. Only
 * what bw_block reads is written: the block's nr rows and, of the pairs of rows, the first (nr + 1) / 2
 * (a short sequence, T = 17 in the ViT, has 17 of 64 rows). */
static void bw_pack_rows(const attn_sdpa_desc *d, const bw_dims *z, char *work, const uint16_t *q,
                         const uint16_t *dout, const uint16_t *out, const attn__bf16_grads32 *g32, int b, int h,
                         int qb) {
    const int D = d->D, Dv = d->Dv, T = d->T;
    const int64_t bh = (int64_t)b * d->H + h;
    char *side = work + (size_t)bh * z->side;
    float *qs = (float *)(side + z->qs) + (int64_t)qb * BW_B * D;                       /* (64, D) */
    uint32_t *qp = (uint32_t *)(side + z->qp) + (int64_t)qb * D * BW_B2;                 /* (32, D) */
    uint16_t *dor = (uint16_t *)(side + z->dor) + (int64_t)qb * BW_B * z->DvE;           /* (64, DvE) */
    uint32_t *dop = (uint32_t *)(side + z->dop) + (int64_t)qb * Dv * BW_B2;              /* (32, Dv) */
    float *delta = (float *)(side + z->delta) + (int64_t)qb * BW_B;                      /* (64) */
    const int nr = T - qb * BW_B < BW_B ? T - qb * BW_B : BW_B;
    const int64_t t0 = (int64_t)qb * BW_B;
    const uint16_t *q0 = q + b * d->q.b + h * d->q.h + t0 * d->q.t;                 /* (nr, D), rows q.t apart */
    const uint16_t *g0 = dout + b * d->out.b + h * d->out.h + t0 * d->out.t;        /* (nr, Dv) */
    const uint16_t *o0 = out + b * d->out.b + h * d->out.h + t0 * d->out.t;         /* (nr, Dv) */
    const uint16_t *gr[BW_B], *orow[BW_B];
    const __m512 scale = _mm512_set1_ps(d->scale);
    for (int i = 0; i < nr; i++) {
        const uint16_t *qr = q0 + (int64_t)i * d->q.t;
        gr[i] = g0 + (int64_t)i * d->out.t;
        orow[i] = o0 + (int64_t)i * d->out.t;
        for (int x = 0; x < D; x += 16) {
            const __mmask16 m = br_lanes(D - x);
            _mm512_mask_storeu_ps(qs + (int64_t)i * D + x, m, _mm512_mul_ps(br_widen16(qr + x, m), scale));
        }
        for (int x = 0; x < z->DvE; x += 32) {
            _mm512_mask_storeu_epi16(dor + (int64_t)i * z->DvE + x, br_lanes32(z->DvE - x), br_load32(gr[i], x, Dv));
        }
        for (int ch = 0; ch < z->nch; ch++)
            memset((float *)(work + z->slots) + (((int64_t)ch * d->B * d->H + bh) * T + t0 + i) * D, 0,
                   sizeof(float) * D);
    }
    bw_pair_rows(qp, q0, d->q.t, nr, D);
    bw_pair_rows(dop, g0, d->out.t, nr, Dv);
    const uint16_t *gp[BW_B];   /* the dO rows as packed above: pairs of dims, an odd Dv padded with 0 */
    for (int i = 0; i < nr; i++) gp[i] = dor + (int64_t)i * z->DvE;
    for (int i = 0; i < nr; i += BW_DR) bw_delta(delta + i, orow + i, gp + i, nr - i < BW_DR ? nr - i : BW_DR, Dv);
    if (g32)   /* fp32 tensors: plus what rounding out to bf16 took, Σ (out - bf16(out))·dout, exact terms */
        for (int i = 0; i < nr; i++) {
            const float *o = g32->out + b * g32->o.b + h * g32->o.h + (t0 + i) * g32->o.t;
            float s = 0.0f;
            for (int x = 0; x < Dv; x++) s += (o[x] - attn__f32(orow[i][x])) * attn__f32(gr[i][x]);
            delta[i] += s;
        }
}

/* ---------------------------------------------------------------------------------------------------
 * Stage 1.
 */
typedef struct bw_ctx {
    const attn_sdpa_desc *d;
    bw_dims z;
    char *work;
    uint16_t *dk, *dv;
    const uint16_t *k, *v;
    const float *stats;
} bw_ctx;

/* The columns of a key block of nb keys that bw_block computes and reads: the keys rounded up to 16. */
static inline int bw_cols(int nb) { return (nb + 15) / 16 * 16; }

/* Keys [j0, j0 + nb) of (b, hk): Kᵀ widened, V as pairs of dims, K as pairs of keys (NaN and Inf as 0);
 * padding keys 0, up to the keys rounded up to 16 (what bw_block reads: nbv there). Kᵀ and the V pairs
 * 16 keys by 16 pairs of dims at a time, transposed in registers. */
static void bw_pack_keys(const bw_ctx *cx, char *tw, int b, int hk, int j0, int nb) {
    const attn_sdpa_desc *d = cx->d;
    const bw_dims *z = &cx->z;
    const int D = d->D, Dv = d->Dv;
    float *kt = (float *)(tw + z->kt);
    uint32_t *vp = (uint32_t *)(tw + z->vp), *kj = (uint32_t *)(tw + z->kj);
    const uint16_t *kb = cx->k + b * d->k.b + hk * d->k.h + (int64_t)j0 * d->k.t;   /* (nb, D)  */
    const uint16_t *vb = cx->v + b * d->v.b + hk * d->v.h + (int64_t)j0 * d->v.t;   /* (nb, Dv) */
    const int nbv = bw_cols(nb);
    const __m256i ex = _mm256_set1_epi16(0x7f80);
    for (int jp = 0; 2 * jp < nb; jp++) {
        const int two = 2 * jp + 1 < nb;
        const uint16_t *k0 = kb + (int64_t)(2 * jp) * d->k.t, *k1 = two ? k0 + d->k.t : k0;
        for (int x = 0; x < z->D16; x += 16) {
            const __mmask16 m = br_lanes(D - x);
            __m256i a = _mm256_maskz_loadu_epi16(m, k0 + x), c = _mm256_maskz_loadu_epi16(two ? m : 0, k1 + x);
            a = _mm256_maskz_mov_epi16(~_mm256_cmpeq_epi16_mask(_mm256_and_si256(a, ex), ex), a);
            c = _mm256_maskz_mov_epi16(~_mm256_cmpeq_epi16_mask(_mm256_and_si256(c, ex), ex), c);
            const __m512i lo = _mm512_cvtepu16_epi32(a), hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32(c), 16);
            _mm512_storeu_si512(kj + (int64_t)jp * z->D16 + x, _mm512_or_si512(lo, hi));
        }
    }
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int j = 0; j < nbv; j += 16) {
        const uint16_t *kr[16], *vr[16];
        for (int i = 0; i < 16; i++) {
            kr[i] = j + i < nb ? kb + (int64_t)(j + i) * d->k.t : NULL;
            vr[i] = j + i < nb ? vb + (int64_t)(j + i) * d->v.t : NULL;
        }
        __m512i v[16];
        for (int p0 = 0; 2 * p0 < D; p0 += 16) {
            br_pairs_t(v, kr, p0, D);
            for (int p = p0; p < p0 + 16 && 2 * p < D; p++) {
                _mm512_storeu_si512(kt + (int64_t)(2 * p) * BW_B + j, _mm512_slli_epi32(v[p - p0], 16));
                if (2 * p + 1 < D)
                    _mm512_storeu_si512(kt + (int64_t)(2 * p + 1) * BW_B + j, _mm512_and_si512(v[p - p0], hi));
            }
        }
        for (int p0 = 0; 2 * p0 < Dv; p0 += 16) {
            br_pairs_t(v, vr, p0, Dv);
            for (int p = p0; p < p0 + 16 && 2 * p < Dv; p++) _mm512_storeu_si512(vp + (int64_t)p * BW_B + j, v[p - p0]);
        }
    }
}

/* One key block [j0, j0 + nb) (packed by bw_pack_keys) against query block qb of head h (rows [t0, t0 +
 * nr), packed in stage 0): dKᵀ, dVᵀ sums in the thread's memory, dQ into slot. Returns the scores counted. */
static int64_t bw_block(const bw_ctx *cx, char *tw, int b, int h, int j0, int nb, int qb, float *slot) {
    const attn_sdpa_desc *d = cx->d;
    const bw_dims *z = &cx->z;
    const int D = d->D, Dv = d->Dv, T = d->T, S = d->S, t0 = qb * BW_B, nr = T - t0 < BW_B ? T - t0 : BW_B;
    /* the block's keys rounded up to whole vectors: a short last block (or a short sequence: S = 10 in the
     * Transformer translator) computes P, dS and their products over those columns only; each column is
     * its own lanes, so the keys' results do not change */
    const int nbv = bw_cols(nb), nkv = nbv / 16;
    const attn_mask *mk = &d->mask;
    const int64_t bh = (int64_t)b * d->H + h;
    const char *side = cx->work + (size_t)bh * z->side;
    const float *qs = (const float *)(side + z->qs) + (int64_t)t0 * D;                   /* (64, D) */
    const uint32_t *qp = (const uint32_t *)(side + z->qp) + (int64_t)qb * D * BW_B2;      /* (32, D) */
    const uint16_t *dor = (const uint16_t *)(side + z->dor) + (int64_t)t0 * z->DvE;       /* (64, DvE) */
    const uint32_t *dop = (const uint32_t *)(side + z->dop) + (int64_t)qb * Dv * BW_B2;   /* (32, Dv) */
    const float *delta = (const float *)(side + z->delta) + t0;                          /* (64) */
    const float *kt = (const float *)(tw + z->kt);
    const uint32_t *vp = (const uint32_t *)(tw + z->vp), *kj = (const uint32_t *)(tw + z->kj);
    float *dks = (float *)(tw + z->dks), *dvs = (float *)(tw + z->dvs);                  /* (64, D), (64, Dv) */
    float *P = (float *)(tw + z->p), *dS = (float *)(tw + z->ds);                        /* (64, 64) */
    uint32_t *pp = (uint32_t *)(tw + z->pp), *dsp = (uint32_t *)(tw + z->dsp);           /* (32, 64) */
    uint16_t *dsb = (uint16_t *)(tw + z->dsb);                                           /* (64, 64) */
    int32_t *lim = (int32_t *)(tw + z->rows);
    float *rm = (float *)(tw + z->rows + br_round(BW_B * 4)), *rl = rm + br_round(BW_B * 4) / 4;

    /* the rows' key limits and statistics (m, log2 l); a row that saw no key gets no gradient */
    int maxlim = 0;
    for (int i = 0; i < nr; i++) {
        const int64_t row = bh * T + t0 + i;
        lim[i] = attn__key_limit(mk, b, t0 + i, T, S);
        rm[i] = cx->stats[2 * row];
        rl[i] = cx->stats[2 * row + 1] * BR_LOG2E;
        if (rm[i] == -INFINITY) lim[i] = 0;
        if (lim[i] > maxlim) maxlim = lim[i];
    }
    if (maxlim <= j0) return 0;

    /* x = (scale·Q) Kᵀ, fp32 FMA in the canonical order */
    for (int r0 = 0; r0 < nr; r0 += BW_RT) {
        const int rt = nr - r0 < BW_RT ? nr - r0 : BW_RT;
        bw_fma_tab[rt - 1][nkv - 1](P + r0 * BW_B, BW_B, qs + (int64_t)r0 * D, D, kt, BW_B, D);
    }
    /* P = exp2(-(max(0, m - x)·log2e + L)); keys a row does not see 0 (NaN or +Inf m: NaN where seen) */
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int i = 0; i < nr; i++) {
        float *pr = P + i * BW_B;
        const int lj = lim[i] - j0 < nb ? lim[i] - j0 : nb;   /* keys j >= lj are excluded */
        if (lj <= 0) {
            memset(pr, 0, sizeof(float) * BW_B);
            continue;
        }
        const uint8_t *al = attn__allow_row(mk, b, h, t0 + i);
        const float *bi = attn__bias_row(mk, b, h, t0 + i);
        if (al || bi)
            for (int j = 0; j < lj; j++) {
                if (al && !al[j0 + j]) pr[j] = -INFINITY;
                else if (bi) pr[j] = br_add_bias(pr[j], bi[j0 + j]);
            }
        const float m = rm[i];
        if (!(m - m == 0.0f)) {
            for (int j = 0; j < BW_B; j++)
                pr[j] = j >= lj || pr[j] == -INFINITY || pr[j] - m == -INFINITY ? 0.0f : NAN;
            continue;
        }
        const __m512 mv = _mm512_set1_ps(m), lv = _mm512_set1_ps(rl[i]), zero = _mm512_setzero_ps();
        for (int v = 0; v < nkv; v++) {
            __m512 x = _mm512_loadu_ps(pr + 16 * v);
            const __mmask16 out = _mm512_cmpge_epi32_mask(_mm512_add_epi32(iota, _mm512_set1_epi32(16 * v)),
                                                          _mm512_set1_epi32(lj));
            x = _mm512_mask_mov_ps(x, out, _mm512_set1_ps(-INFINITY));
            const __m512 e = _mm512_sub_ps(zero, _mm512_fmadd_ps(_mm512_max_ps(zero, _mm512_sub_ps(mv, x)),
                                                                 _mm512_set1_ps(BR_LOG2E), lv));
            _mm512_storeu_ps(pr + 16 * v, attn__exp2_avx512(e));
        }
    }

    /* dP = dO Vᵀ; dS = P ∘ (dP·mask - Δ), 0 where P is 0; with dropout P becomes P·mask for dV */
    bw_gemm_dp(nr, nbv, dS, BW_B, dor, z->DvE, 2, vp, BW_B, z->DvE / 2, 0);
    if (d->dropout > 0.0f) {
        const float keep_scale = 1.0f / (1.0f - d->dropout);
        for (int i = 0; i < nr; i++) {
            const uint64_t row = (uint64_t)(bh * T + t0 + i);
            for (int j = 0; j < nbv; j++) {
                const int keep = j < nb && attn__dropout_keep(d->seed, row * S + (uint64_t)(j0 + j), d->dropout);
                const float mm = keep ? keep_scale : 0.0f, p = P[i * BW_B + j];
                dS[i * BW_B + j] = p == 0.0f ? 0.0f : p * (dS[i * BW_B + j] * mm - delta[i]);
                P[i * BW_B + j] = p * mm;
            }
        }
    } else {
        for (int i = 0; i < nr; i++) {
            const __m512 dl = _mm512_set1_ps(delta[i]);
            for (int v = 0; v < nkv; v++) {
                const __m512 p = _mm512_loadu_ps(P + i * BW_B + 16 * v);
                const __mmask16 nz = _mm512_cmp_ps_mask(p, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                float *s = dS + i * BW_B + 16 * v;
                _mm512_storeu_ps(s, _mm512_maskz_mul_ps(nz, p, _mm512_sub_ps(_mm512_loadu_ps(s), dl)));
            }
        }
    }

    /* P and dS as bf16: pairs of query rows (B of dV and dK; an odd last row paired with zeros), and dS
     * rows (A of dQ) */
    const int nr2 = (nr + 1) / 2;
    for (int ip = 0; ip < nr2; ip++)
        for (int v = 0; v < nkv; v++) {
            const int o0 = 2 * ip * BW_B + 16 * v, o1 = o0 + BW_B;
            const int two = 2 * ip + 1 < nr;
            _mm512_storeu_si512(pp + ip * BW_B + 16 * v,
                                br_pair(_mm512_loadu_ps(P + o0), two ? _mm512_loadu_ps(P + o1) : _mm512_setzero_ps()));
            _mm512_storeu_si512(dsp + ip * BW_B + 16 * v,
                                br_pair(_mm512_loadu_ps(dS + o0), two ? _mm512_loadu_ps(dS + o1) : _mm512_setzero_ps()));
        }
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nbv; j += 16)
            _mm256_storeu_si256((__m256i *)(dsb + i * BW_B + j),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(dS + i * BW_B + j)));

    /* dV += Pᵀ dO, dK += dSᵀ Q (rows: the block's keys; scale at the end), dQ slot += dS K */
    bw_gemm_dp(nb, Dv, dvs, Dv, (const uint16_t *)pp, 2, 2 * BW_B, dop, Dv, nr2, 1);
    bw_gemm_dp(nb, D, dks, D, (const uint16_t *)dsp, 2, 2 * BW_B, qp, D, nr2, 1);
    bw_gemm_dp(nr, D, slot + (bh * T + t0) * D, D, dsb, BW_B, 2, kj, z->D16, (nb + 1) / 2, 1);
    return (int64_t)nr * nb;
}

/* ---------------------------------------------------------------------------------------------------
 * The stages.
 */
size_t attn__bf16_bwd_workspace(const attn_sdpa_desc *d, int nth) {
    if (nth < 1) nth = 1;
    /* in double first, from the dimensions (size_t products of a huge shape would wrap): too large
     * reaches sdpa.c as SIZE_MAX, ATTN_ERR_SIZE */
    const double T = (double)(d->T + BW_B), rows = (double)d->B * d->H * T;
    const double est = rows * (6.0 * d->D + 4.0 * d->Dv + 8) + BW_NCH * rows * d->D * 4 +
                       (double)nth * (65536.0 + 1024.0 * (d->D + d->Dv)) + 1e6;
    if (est > (double)(SIZE_MAX / 8)) return SIZE_MAX;
    const bw_dims z = bw_dims_of(d);
    return z.thread + (size_t)nth * z.tbytes + BR_ALIGN;
}

int attn__bf16_bwd_stages(const attn_sdpa_desc *d) {
    (void)d;
    return 3;
}

/* Threads worth waking: about 4 MFLOP each at least; never more than stage 1's items. */
int attn__bf16_bwd_threads(const attn_sdpa_desc *d, int nth) {
    const double flops = 2.5 * 2.0 * d->B * d->H * (double)d->T * d->S * (d->D + d->Dv);
    const double want = flops / 4e6;
    const int64_t items = (int64_t)d->B * d->Hkv * bw_dims_of(d).nch;
    if (nth < 1) nth = 1;
    if (want < nth) nth = want < 1 ? 1 : (int)want;
    if (items < nth) nth = (int)items;
    return nth;
}

/* Elements [off, off + 16) of a gradient, lanes m, += a: bf16 at g16, each rounded once as attn__bf16
 * rounds, or fp32 at g32 (when not NULL). */
static inline void bw_acc16(uint16_t *g16, float *g32, int64_t off, __m512 a, __mmask16 m) {
    if (g32) _mm512_mask_storeu_ps(g32 + off, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, g32 + off), a));
    else _mm256_mask_storeu_epi16(g16 + off, m, br_round16(_mm512_add_ps(br_widen16(g16 + off, m), a)));
}

/* Row (b, h, t) of a gradient with layout l += scale · src (n values). */
static void bw_acc_row(uint16_t *g16, float *g32, const attn_layout *l, int b, int h, int t, const float *src,
                       int n, float scale) {
    const int64_t off = b * l->b + h * l->h + (int64_t)t * l->t;
    for (int x = 0; x < n; x += 16) {
        const __mmask16 m = br_lanes(n - x);
        bw_acc16(g16, g32, off + x, _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_maskz_loadu_ps(m, src + x)), m);
    }
}

/* Key blocks of chunk ch: [ch·nkb/nch, (ch+1)·nkb/nch), a function of the shape only. */
static int bw_chunk_start(const bw_dims *z, int ch) { return (int)((int64_t)ch * z->nkb / z->nch); }

void attn__bf16_backward(const attn_sdpa_desc *d, uint16_t *dq, uint16_t *dk, uint16_t *dv, const uint16_t *dout,
                         const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint16_t *out,
                         const float *stats, void *work, const attn__part *part, const attn__bf16_grads32 *g32) {
    bw_ctx cx = {d, bw_dims_of(d), (char *)(((uintptr_t)work + BR_ALIGN - 1) & ~(uintptr_t)(BR_ALIGN - 1)),
                 dk, dv, k, v, stats};
    const bw_dims *z = &cx.z;
    const int G = d->H / d->Hkv, T = d->T, D = d->D;
    float *slots = (float *)(cx.work + z->slots);
    int64_t local = -1;
    if (part->stage == 0) {
        const int64_t items = (int64_t)d->B * d->H * z->nqb;
        for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
            const int64_t bh = it / z->nqb;
            bw_pack_rows(d, z, cx.work, q, dout, out, g32, (int)(bh / d->H), (int)(bh % d->H), (int)(it % z->nqb));
        }
        return;
    }
    if (part->stage == 2) {
        const int64_t rows = (int64_t)d->B * d->H * T, cs = (int64_t)d->B * d->H * T * D;
        for (int64_t r = part->ith; r < rows; r += part->nth) {
            const int64_t bh = r / T;
            const int t = (int)(r % T), b = (int)(bh / d->H), h = (int)(bh % d->H);
            const attn_layout *l = g32 ? &g32->q : &d->q;
            const int64_t off = b * l->b + h * l->h + (int64_t)t * l->t;                /* (D) */
            const float *s0 = slots + r * D;
            for (int x = 0; x < D; x += 16) {
                const __mmask16 m = br_lanes(D - x);
                __m512 s = _mm512_maskz_loadu_ps(m, s0 + x);
                for (int ch = 1; ch < z->nch; ch++) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, s0 + ch * cs + x));
                bw_acc16(dq, g32 ? g32->dq : NULL, off + x, _mm512_mul_ps(_mm512_set1_ps(d->scale), s), m);
            }
        }
        return;
    }
    /* stage 1: items (b, kv head, chunk) */
    char *tw = cx.work + z->thread + (size_t)part->ith * z->tbytes;
    float *dks = (float *)(tw + z->dks), *dvs = (float *)(tw + z->dvs);
    const int64_t items = (int64_t)d->B * d->Hkv * z->nch;
    int64_t counted = 0;
    for (int64_t it = attn__part_next(part, &local); it < items; it = attn__part_next(part, &local)) {
        const int64_t pr = it / z->nch;
        const int ch = (int)(it % z->nch), b = (int)(pr / d->Hkv), hk = (int)(pr % d->Hkv);
        float *slot = slots + (int64_t)ch * d->B * d->H * T * D;
        for (int kbk = bw_chunk_start(z, ch); kbk < bw_chunk_start(z, ch + 1); kbk++) {
            const int j0 = kbk * BW_B, nb = d->S - j0 < BW_B ? d->S - j0 : BW_B;
            bw_pack_keys(&cx, tw, b, hk, j0, nb);
            memset(dks, 0, sizeof(float) * (size_t)nb * D);
            memset(dvs, 0, sizeof(float) * (size_t)nb * d->Dv);
            /* under a causal mask the rows before j0 - (S - T) see none of these keys */
            int tstart = 0;
            if (d->mask.causal) {
                const int64_t t = (int64_t)j0 - (d->S - T);
                tstart = t < 0 ? 0 : t > T ? T : (int)t;
            }
            for (int hh = 0; hh < G; hh++)
                for (int qb = tstart / BW_B; qb < z->nqb; qb++)
                    counted += bw_block(&cx, tw, b, hk * G + hh, j0, nb, qb, slot);
            for (int j = 0; j < nb; j++) {
                bw_acc_row(dk, g32 ? g32->dk : NULL, g32 ? &g32->k : &d->k, b, hk, j0 + j, dks + (int64_t)j * D, D,
                           d->scale);
                bw_acc_row(dv, g32 ? g32->dv : NULL, g32 ? &g32->v : &d->v, b, hk, j0 + j, dvs + (int64_t)j * d->Dv,
                           d->Dv, 1.0f);
            }
        }
    }
    attn__count_scores(ATTN_PASS_BACKWARD, counted);
}
