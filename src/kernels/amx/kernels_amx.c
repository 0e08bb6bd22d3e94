/*
 * kernels_amx.c — the AMX path: the fused scaled dot-product forward with bf16 products on AMX tiles
 * (fp32 accumulation) and the online softmax on AVX-512, for bf16 tensors, and for fp32 tensors whose
 * descriptor asks for bf16 compute. Everything else (fp32 tensors, the backward for now) is the AVX-512
 * path's: this table's entries hand those descriptors to attn__kernels_avx512. Compiled with
 * -mamx-tile -mamx-bf16 -mavx512bf16 and the AVX-512 flags; reached only when the CPU has AMX and the OS
 * granted the tile state (config.c).
 *
 * The forward, per (b, h, block of AX_BR = 32 query rows), in two stages:
 *   stage 0  pack, once per (b, kv head) and shared by every query block: K as bf16 rows (SP, DP) for
 *            the A tiles of the scores, Vᵀ as bf16 (DvP, SP) for the A tiles of P·V; zero padded to
 *            tile multiples (DP, DvP: 32; SP: 32), converted from fp32 when the tensors are fp32.
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

#define AX_BR 32                 /* query rows per block: two tiles of 16 */
#define AX_ALIGN 64
#define AX_LOG2E 1.44269504088896340736f
#define AX_LN2 0.693147180559945309417f

/* Keys per softmax block: Sᵀ, Pᵀ and Oᵀ of a block stay in L1 (48 KiB) for heads up to 64 wide. */
static int ax_bc(const attn_sdpa_desc *d) { return d->D > 64 || d->Dv > 64 ? 64 : 128; }

static int ax_up32(int n) { return (n + 31) / 32 * 32; }
static size_t ax_round(size_t n) { return (n + AX_ALIGN - 1) & ~(size_t)(AX_ALIGN - 1); }

/* A score plus an additive bias, as the other paths (fused_impl.h's fz_add_bias): saturating. */
static inline float ax_add_bias(float x, float b) {
    if (x == -INFINITY || b == -INFINITY) return -INFINITY;
    float b2 = b * AX_LOG2E;
    b2 = b2 > FLT_MAX ? FLT_MAX : b2 < -FLT_MAX ? -FLT_MAX : b2;
    const float y = x + b2;
    return y > FLT_MAX ? FLT_MAX : y < -FLT_MAX ? -FLT_MAX : y;
}

/* The descriptors this path computes itself: bf16 tensors or bf16 compute, forward. */
static int ax_native(const attn_sdpa_desc *d, attn_pass pass) {
    return pass == ATTN_PASS_FORWARD && (d->dtype == ATTN_DTYPE_BF16 || d->compute == ATTN_DTYPE_BF16);
}

/* Element x of a row of a tensor of type dt, as bf16 bits. */
static inline uint16_t ax_get(const void *row, int dt, int x) {
    return dt == ATTN_DTYPE_BF16 ? ((const uint16_t *)row)[x] : attn__bf16(((const float *)row)[x]);
}

/* ---------------------------------------------------------------------------------------------------
 * Sizes of the packs and of a thread's buffers.
 */
typedef struct ax_dims {
    int DP, DvP, SP, BC;
    size_t kpack, vpack;         /* bytes of one (b, kv head)'s packed K and Vᵀ */
    size_t shared;               /* bytes of all packs */
    size_t qt, st, pt, ot, vec;  /* a thread's buffers */
    size_t thread;
} ax_dims;

static ax_dims ax_dims_of(const attn_sdpa_desc *d) {
    ax_dims z;
    z.DP = ax_up32(d->D);
    z.DvP = ax_up32(d->Dv);
    z.SP = ax_up32(d->S);
    z.BC = ax_bc(d);
    z.kpack = ax_round((size_t)z.SP * z.DP * 2);
    z.vpack = ax_round((size_t)z.DvP * z.SP * 2);
    z.shared = (size_t)d->B * d->Hkv * (z.kpack + z.vpack);
    z.qt = ax_round((size_t)z.DP * AX_BR * 2);           /* (DP/32, 2, 16, 16, 2) bf16 */
    z.st = ax_round((size_t)z.BC * AX_BR * 4);           /* (BC, 32) fp32 */
    z.pt = ax_round((size_t)z.BC * AX_BR * 2);           /* (BC/32, 2, 16, 16, 2) bf16 */
    z.ot = ax_round((size_t)z.DvP * AX_BR * 4);          /* (DvP, 32) fp32 */
    z.vec = 5 * ax_round(AX_BR * 4);                     /* m, l, bm, alpha, lim */
    z.thread = z.qt + z.st + z.pt + z.ot + z.vec;
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

static void ax_tiles_on(void) {
    ax_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) {
        c.colsb[i] = 64;
        c.rows[i] = 16;
    }
    _tile_loadconfig(&c);
}

/* ---------------------------------------------------------------------------------------------------
 * Stage 0: packs of (b, kv head), a chunk of 32 keys per item.
 */
static void ax_pack_chunk(const attn_sdpa_desc *d, const ax_dims *z, char *shared, const void *k, const void *v,
                          int b, int hk, int j0) {
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;
    const int64_t pair = (int64_t)b * d->Hkv + hk;
    uint16_t *kp = (uint16_t *)(shared + pair * (z->kpack + z->vpack));      /* (SP, DP)  */
    uint16_t *vt = (uint16_t *)((char *)kp + z->kpack);                      /* (DvP, SP) */
    const char *kb = (const char *)k + (b * d->k.b + hk * d->k.h) * es;
    const char *vb = (const char *)v + (b * d->v.b + hk * d->v.h) * es;
    for (int j = j0; j < j0 + 32; j++) {
        uint16_t *kr = kp + (int64_t)j * z->DP;
        if (j < d->S) {
            const char *src = kb + (int64_t)j * d->k.t * es;
            for (int x = 0; x < d->D; x++) kr[x] = ax_get(src, dt, x);
            for (int x = d->D; x < z->DP; x++) kr[x] = 0;
            const char *vs = vb + (int64_t)j * d->v.t * es;
            for (int x = 0; x < d->Dv; x++) vt[(int64_t)x * z->SP + j] = ax_get(vs, dt, x);
            for (int x = d->Dv; x < z->DvP; x++) vt[(int64_t)x * z->SP + j] = 0;
        } else {
            memset(kr, 0, sizeof(uint16_t) * z->DP);
            for (int x = 0; x < z->DvP; x++) vt[(int64_t)x * z->SP + j] = 0;
        }
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Stage 1: one block of query rows.
 */
typedef struct ax_fwd {
    const attn_sdpa_desc *d;
    ax_dims z;
    float *out, *lse;
    const void *q;
    char *shared;
} ax_fwd;

/* The row statistics saved for the backward: m, the row's largest score x in log2 units (one of the x
 * values, as the backward recomputes them), and l = Σ exp2(x - m); a row with no key has m = -inf, l = 0.
 * Stored as the natural log-sum-exp (m + log2 l)·ln 2 that the backward of this tree reads. */
static inline void ax_put_stats(float *lse, int64_t row, float m, float l) {
    lse[row] = l > 0.0f ? (m + log2f(l)) * AX_LN2 : -INFINITY;
}

/* Two fp32 rows (keys 2r and 2r+1, 16 query lanes each) as one B-tile row: bf16 pairs interleaved. */
static inline __m512i ax_pair(__m512 e0, __m512 e1) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);   /* e0 in the low half, e1 in the high */
    return _mm512_permutexvar_epi16(idx, both);
}

static void ax_block(const ax_fwd *cx, char *tw, int b, int h, int t0, int nr) {
    const attn_sdpa_desc *d = cx->d;
    const ax_dims *z = &cx->z;
    const int H = d->H, T = d->T, S = d->S, D = d->D, Dv = d->Dv, G = H / d->Hkv, hk = h / G;
    const int DP = z->DP, DvP = z->DvP, SP = z->SP, BC = z->BC;
    const attn_mask *mk = &d->mask;
    const int dt = d->dtype, es = dt == ATTN_DTYPE_BF16 ? 2 : 4;

    uint16_t *Qt = (uint16_t *)tw;                                  /* (DP/32, 2, 16, 16, 2) */
    float *St = (float *)(tw + z->qt);                              /* (BC, 32)  */
    uint16_t *Pt = (uint16_t *)((char *)St + z->st);                /* (BC/32, 2, 16, 16, 2) */
    float *Ot = (float *)((char *)Pt + z->pt);                      /* (DvP, 32) */
    float *m = (float *)((char *)Ot + z->ot);                       /* (32) each */
    float *l = m + 32, *bm = l + 32, *alpha = bm + 32;
    int32_t *lim = (int32_t *)(alpha + 32);

    const int64_t pair = (int64_t)b * d->Hkv + hk;
    const uint16_t *kp = (const uint16_t *)(cx->shared + pair * (z->kpack + z->vpack));   /* (SP, DP)  */
    const uint16_t *vt = (const uint16_t *)((const char *)kp + z->kpack);                 /* (DvP, SP) */
    const char *qb = (const char *)cx->q + (b * d->q.b + h * d->q.h + (int64_t)t0 * d->q.t) * es;
    const float c2 = d->scale * AX_LOG2E;
    const int generic = mk->allow || mk->bias;

    /* Qᵀ as B tiles: Qt[c][qt][r][n][e] = q[16·qt + n][32·c + 2·r + e], zero padded; key limits per row
     * (padding rows copy the last row's) */
    for (int c = 0; c < DP / 32; c++)
        for (int qt = 0; qt < 2; qt++)
            for (int n = 0; n < 16; n++) {
                const int i = 16 * qt + n;
                uint16_t *dst = Qt + ((int64_t)(c * 2 + qt) * 16) * 32 + n * 2;
                const char *src = qb + (int64_t)i * d->q.t * es;
                for (int r = 0; r < 16; r++)
                    for (int e = 0; e < 2; e++) {
                        const int x = 32 * c + 2 * r + e;
                        dst[r * 32 + e] = i < nr && x < D ? ax_get(src, dt, x) : 0;
                    }
            }
    int minlim = S, maxlim = 0;
    for (int i = 0; i < AX_BR; i++) {
        lim[i] = attn__key_limit(mk, b, t0 + (i < nr ? i : nr - 1), T, S);
        if (lim[i] < minlim) minlim = lim[i];
        if (lim[i] > maxlim) maxlim = lim[i];
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(Ot, 0, sizeof(float) * (size_t)DvP * AX_BR);

    const __m512 vc2 = _mm512_set1_ps(c2), one = _mm512_set1_ps(1.0f), ninf = _mm512_set1_ps(-INFINITY);
    const __m512i lim0 = _mm512_loadu_si512(lim), lim1 = _mm512_loadu_si512(lim + 16);

    for (int j0 = 0; j0 < maxlim; j0 += BC) {
        const int nb = maxlim - j0 < BC ? maxlim - j0 : BC, nbp = ax_up32(nb);
        /* plain: every key of the (padded) block is visible to every row and no mask touches it */
        const int plain = !generic && j0 + nbp <= minlim && c2 > 0.0f;

        /* Sᵀ = K_blk Qᵀ, 32 keys x 32 queries at a time */
        for (int kc = 0; kc < nbp / 32; kc++) {
            const uint16_t *a0 = kp + (int64_t)(j0 + 32 * kc) * DP;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int c = 0; c < DP / 32; c++) {
                _tile_loadd(4, a0 + 32 * c, DP * 2);
                _tile_loadd(5, a0 + (int64_t)16 * DP + 32 * c, DP * 2);
                _tile_loadd(6, Qt + (int64_t)(c * 2 + 0) * 512, 64);
                _tile_loadd(7, Qt + (int64_t)(c * 2 + 1) * 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            float *s0 = St + (int64_t)(32 * kc) * AX_BR;
            _tile_stored(0, s0, AX_BR * 4);
            _tile_stored(1, s0 + 16, AX_BR * 4);
            _tile_stored(2, s0 + 16 * AX_BR, AX_BR * 4);
            _tile_stored(3, s0 + 16 * AX_BR + 16, AX_BR * 4);
        }

        /* the block's max per query lane (folded with the running max); x in log2 units. A plain block
         * keeps the raw sums and scales them in the exponential below (c2 > 0 keeps the order, so the
         * max scaled is the max of the scaled: the same bits) */
        __m512 mx0 = _mm512_loadu_ps(m), mx1 = _mm512_loadu_ps(m + 16);
        __m512 cc = one;
        if (plain) {
            __m512 r0 = ninf, r1 = ninf;
            for (int j = 0; j < nbp; j++) {
                r0 = _mm512_max_ps(r0, _mm512_loadu_ps(St + j * AX_BR));
                r1 = _mm512_max_ps(r1, _mm512_loadu_ps(St + j * AX_BR + 16));
            }
            mx0 = _mm512_max_ps(mx0, _mm512_mul_ps(r0, vc2));
            mx1 = _mm512_max_ps(mx1, _mm512_mul_ps(r1, vc2));
            cc = vc2;
        } else {
            for (int j = 0; j < nbp; j++) {
                float *x = St + j * AX_BR;
                __m512 x0 = _mm512_mul_ps(_mm512_loadu_ps(x), vc2), x1 = _mm512_mul_ps(_mm512_loadu_ps(x + 16), vc2);
                const __m512i jj = _mm512_set1_epi32(j0 + j);
                x0 = _mm512_mask_mov_ps(x0, _mm512_cmple_epi32_mask(lim0, jj), ninf);
                x1 = _mm512_mask_mov_ps(x1, _mm512_cmple_epi32_mask(lim1, jj), ninf);
                _mm512_storeu_ps(x, x0);
                _mm512_storeu_ps(x + 16, x1);
            }
            if (generic)
                for (int i = 0; i < nr; i++) {
                    const uint8_t *al = attn__allow_row(mk, b, h, t0 + i);
                    const float *bi = attn__bias_row(mk, b, h, t0 + i);
                    for (int j = 0; j < nb; j++) {
                        float *x = St + j * AX_BR + i;
                        if (al && !al[j0 + j]) *x = -INFINITY;
                        else if (bi) *x = ax_add_bias(*x, bi[j0 + j]);
                    }
                }
            for (int j = 0; j < nbp; j++) {
                mx0 = _mm512_max_ps(mx0, _mm512_loadu_ps(St + j * AX_BR));
                mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(St + j * AX_BR + 16));
            }
        }
        _mm512_storeu_ps(bm, mx0);
        _mm512_storeu_ps(bm + 16, mx1);

        /* exponentials, their sum, and Pᵀ in bf16; a lane with no key yet keeps max -inf: subtract
         * -FLT_MAX instead so exp2 gives 0, not NaN */
        const __m512 bs0 = _mm512_max_ps(mx0, _mm512_set1_ps(-FLT_MAX));
        const __m512 bs1 = _mm512_max_ps(mx1, _mm512_set1_ps(-FLT_MAX));
        __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
        const int drop = d->dropout > 0.0f;
        for (int j = 0; j < nbp; j += 2) {
            float *x = St + j * AX_BR;
            const __m512 e00 = attn__exp2_avx512(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x), cc), bs0));
            const __m512 e01 = attn__exp2_avx512(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 16), cc), bs1));
            const __m512 e10 = attn__exp2_avx512(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x + AX_BR), cc), bs0));
            const __m512 e11 =
                attn__exp2_avx512(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x + AX_BR + 16), cc), bs1));
            sum0 = _mm512_add_ps(_mm512_add_ps(sum0, e00), e10);
            sum1 = _mm512_add_ps(_mm512_add_ps(sum1, e01), e11);
            if (drop) {
                _mm512_storeu_ps(x, e00);
                _mm512_storeu_ps(x + 16, e01);
                _mm512_storeu_ps(x + AX_BR, e10);
                _mm512_storeu_ps(x + AX_BR + 16, e11);
            } else {
                uint16_t *p = Pt + (int64_t)((j / 32) * 2) * 512 + (j % 32 / 2) * 32;
                _mm512_storeu_si512(p, ax_pair(e00, e10));
                _mm512_storeu_si512(p + 512, ax_pair(e01, e11));
            }
        }
        if (drop) {
            /* dropout on the weights that multiply V (the sum above is before dropout) */
            const float keep_scale = 1.0f / (1.0f - d->dropout);
            for (int i = 0; i < nr; i++) {
                const uint64_t row = ((uint64_t)b * H + h) * T + (uint64_t)(t0 + i);
                for (int j = 0; j < nb; j++) {
                    float *x = St + j * AX_BR + i;
                    *x = attn__dropout_keep(d->seed, row * S + (uint64_t)(j0 + j), d->dropout) ? *x * keep_scale
                                                                                             : 0.0f;
                }
            }
            for (int j = 0; j < nbp; j += 2) {
                const float *x = St + j * AX_BR;
                uint16_t *p = Pt + (int64_t)((j / 32) * 2) * 512 + (j % 32 / 2) * 32;
                _mm512_storeu_si512(p, ax_pair(_mm512_loadu_ps(x), _mm512_loadu_ps(x + AX_BR)));
                _mm512_storeu_si512(p + 512, ax_pair(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x + AX_BR + 16)));
            }
        }

        /* rescale: alpha = exp2(m - bm), l = alpha·l + Σ, m = bm; Oᵀ ∘= alpha unless every alpha is 1 */
        const __m512 al0 = attn__exp2_avx512(_mm512_sub_ps(_mm512_loadu_ps(m), bs0));
        const __m512 al1 = attn__exp2_avx512(_mm512_sub_ps(_mm512_loadu_ps(m + 16), bs1));
        _mm512_storeu_ps(l, _mm512_fmadd_ps(_mm512_loadu_ps(l), al0, sum0));
        _mm512_storeu_ps(l + 16, _mm512_fmadd_ps(_mm512_loadu_ps(l + 16), al1, sum1));
        _mm512_storeu_ps(m, mx0);
        _mm512_storeu_ps(m + 16, mx1);
        if (_mm512_cmp_ps_mask(al0, one, _CMP_NEQ_UQ) | _mm512_cmp_ps_mask(al1, one, _CMP_NEQ_UQ))
            for (int x = 0; x < DvP; x++) {
                float *o = Ot + x * AX_BR;
                _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), al0));
                _mm512_storeu_ps(o + 16, _mm512_mul_ps(_mm512_loadu_ps(o + 16), al1));
            }

        /* Oᵀ += Vᵀ_blk Pᵀ, 32 value dims x 32 queries at a time */
        for (int x0 = 0; x0 < DvP; x0 += 32) {
            float *o = Ot + (int64_t)x0 * AX_BR;
            _tile_loadd(0, o, AX_BR * 4);
            _tile_loadd(1, o + 16, AX_BR * 4);
            _tile_loadd(2, o + 16 * AX_BR, AX_BR * 4);
            _tile_loadd(3, o + 16 * AX_BR + 16, AX_BR * 4);
            const uint16_t *a0 = vt + (int64_t)x0 * SP + j0;
            for (int kc = 0; kc < nbp / 32; kc++) {
                _tile_loadd(4, a0 + 32 * kc, SP * 2);
                _tile_loadd(5, a0 + (int64_t)16 * SP + 32 * kc, SP * 2);
                _tile_loadd(6, Pt + (int64_t)(kc * 2 + 0) * 512, 64);
                _tile_loadd(7, Pt + (int64_t)(kc * 2 + 1) * 512, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, o, AX_BR * 4);
            _tile_stored(1, o + 16, AX_BR * 4);
            _tile_stored(2, o + 16 * AX_BR, AX_BR * 4);
            _tile_stored(3, o + 16 * AX_BR + 16, AX_BR * 4);
        }
    }

    /* out = Oᵀᵀ / l; the row statistics; rows that saw no key: zeros */
    for (int i = 0; i < nr; i++) {
        const int64_t row = ((int64_t)b * H + h) * T + t0 + i;
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        const int64_t off = b * d->out.b + h * d->out.h + (int64_t)(t0 + i) * d->out.t;
        if (dt == ATTN_DTYPE_BF16) {
            uint16_t *orow = (uint16_t *)cx->out + off;
            for (int x = 0; x < Dv; x++) orow[x] = attn__bf16(Ot[x * AX_BR + i] * inv);
        } else {
            float *orow = cx->out + off;
            for (int x = 0; x < Dv; x++) orow[x] = Ot[x * AX_BR + i] * inv;
        }
        ax_put_stats(cx->lse, row, m[i], l[i]);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Stages and items.
 */
static int64_t ax_nqb(const attn_sdpa_desc *d) { return (d->T + AX_BR - 1) / AX_BR; }
static int64_t ax_pack_items(const attn_sdpa_desc *d) { return (int64_t)d->B * d->Hkv * (ax_up32(d->S) / 32); }

static void ax_forward(const attn_sdpa_desc *d, float *out, float *lse, const float *q, const float *k,
                       const float *v, void *work, const attn__part *part) {
    ax_fwd cx = {d, ax_dims_of(d), out, lse, q, (char *)work};
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
}

/* ---------------------------------------------------------------------------------------------------
 * The table: this path's entries for the descriptors it computes, AVX-512's for the rest.
 */
static size_t amx_workspace(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (!ax_native(d, pass)) return attn__kernels_avx512.sdpa_workspace(d, pass, nth);
    if (nth < 1) nth = 1;
    const ax_dims z = ax_dims_of(d);
    const double total = (double)ax_round(z.shared) + (double)nth * z.thread + AX_ALIGN;
    return total > (double)(SIZE_MAX / 4) ? SIZE_MAX : ax_round(z.shared) + (size_t)nth * z.thread + AX_ALIGN;
}

static int amx_stages(const attn_sdpa_desc *d, attn_pass pass) {
    return ax_native(d, pass) ? 2 : attn__kernels_avx512.sdpa_stages(d, pass);
}

/* Threads worth waking: about 8 MFLOP each at least; never more than there are query blocks. */
static int amx_threads(const attn_sdpa_desc *d, attn_pass pass, int nth) {
    if (!ax_native(d, pass)) return attn__kernels_avx512.sdpa_threads(d, pass, nth);
    const double flops = 2.0 * d->B * d->H * (double)d->T * d->S * (d->D + d->Dv);
    const double want = flops / 8e6;
    const int64_t items = (int64_t)d->B * d->H * ax_nqb(d);
    if (nth < 1) nth = 1;
    if (want < nth) nth = want < 1 ? 1 : (int)want;
    if (items < nth) nth = (int)items;
    return nth;
}

static void amx_forward(const attn_sdpa_desc *d, float *out, float *lse, const float *q, const float *k,
                        const float *v, void *work, const attn__part *part) {
    if (ax_native(d, ATTN_PASS_FORWARD)) ax_forward(d, out, lse, q, k, v, work, part);
    else attn__kernels_avx512.sdpa_forward(d, out, lse, q, k, v, work, part);
}

const attn_kernels attn__kernels_amx = {
    .isa = ATTN_ISA_AMX,
    .sdpa_native = ax_native,
    .sdpa_workspace = amx_workspace,
    .sdpa_stages = amx_stages,
    .sdpa_threads = amx_threads,
    .sdpa_forward = amx_forward,
};
