/*
 * mask.c — validation shared by every mechanism: the attn_mask (pointers, kinds, lengths, strides) and
 * the "does this strided layout ever map two elements to one address" test used for outputs.
 *
 * The mask itself is applied by the inline helpers of internal.h (attn__key_limit, attn__allow_row,
 * attn__bias_row) so that the reference and the fused kernels read it exactly the same way.
 */
#include "internal.h"

/* Checks m for sizes B,H,T,S.
 *   ATTN_ERR_NULL    m is NULL, or a valid-lengths kind is set with valid_lens NULL
 *   ATTN_ERR_ARG     unknown valid-lengths kind, or a negative length (lengths > S are fine: clamped)
 *   ATTN_ERR_STRIDE  a negative stride on the boolean mask or the bias (only read when the pointer is set)
 *   ATTN_ERR_ARG     also: a negative window edge or sink count, a sink logit or ALiBi slope not finite, a
 *                    soft cap negative, infinite or NaN */
attn_status attn__validate_mask(const attn_mask *m, int B, int H, int T, int S) {
    if (!m) return ATTN_ERR_NULL;
    (void)S;

    /* valid lengths: (B) or (B,T), every entry >= 0 */
    int64_t nlens = 0;
    switch (m->valid_lens_kind) {
    case ATTN_VALID_LENS_NONE:      nlens = 0; break;
    case ATTN_VALID_LENS_PER_BATCH: nlens = B; break;
    case ATTN_VALID_LENS_PER_QUERY: nlens = (int64_t)B * T; break;
    default:                        return ATTN_ERR_ARG;
    }
    if (nlens > 0) {
        if (!m->valid_lens) return ATTN_ERR_NULL;
        for (int64_t i = 0; i < nlens; i++)
            if (m->valid_lens[i] < 0) return ATTN_ERR_ARG;
    }

    /* boolean mask and bias: element strides of b, h, t; 0 broadcasts, negative is refused */
    if (m->allow)
        for (int i = 0; i < 3; i++)
            if (m->allow_stride[i] < 0) return ATTN_ERR_STRIDE;
    if (m->bias)
        for (int i = 0; i < 3; i++)
            if (m->bias_stride[i] < 0) return ATTN_ERR_STRIDE;

    /* sparse parts: nonnegative window edges and sink count, finite per-head logits and slopes */
    if (m->window && (m->window_left < 0 || m->window_right < 0)) return ATTN_ERR_ARG;
    if (m->sinks < 0) return ATTN_ERR_ARG;
    if (!(m->softcap >= 0.0f) || isinf(m->softcap)) return ATTN_ERR_ARG;   /* NaN fails too */
    if (m->block_map) {
        if (m->block_size < 1) return ATTN_ERR_ARG;
        for (int i = 0; i < 3; i++)
            if (m->block_map_stride[i] < 0) return ATTN_ERR_STRIDE;
    }
    for (int h = 0; h < H; h++) {
        if (m->sink_logits && !isfinite(m->sink_logits[h])) return ATTN_ERR_ARG;
        if (m->alibi_slopes && !isfinite(m->alibi_slopes[h])) return ATTN_ERR_ARG;
    }
    return ATTN_OK;
}

attn_status attn_block_map_longformer(uint8_t *map, int nqb, int nkb, int window, const int *global,
                                      int nglobal) {
    if (!map || (nglobal > 0 && !global)) return ATTN_ERR_NULL;
    if (nqb < 1 || nkb < 1) return ATTN_ERR_SIZE;
    if (window < 0 || nglobal < 0) return ATTN_ERR_ARG;
    for (int g = 0; g < nglobal; g++)
        if (global[g] < 0 || global[g] >= nqb || global[g] >= nkb) return ATTN_ERR_ARG;
    for (int i = 0; i < nqb; i++)
        for (int j = 0; j < nkb; j++) {
            const int64_t c = (int64_t)i + (nkb - nqb);          /* the query block's own key block */
            map[(size_t)i * nkb + j] = (uint8_t)((int64_t)j >= c - window && (int64_t)j <= c + window);
        }
    for (int g = 0; g < nglobal; g++) {
        for (int j = 0; j < nkb; j++) map[(size_t)global[g] * nkb + j] = 1;
        for (int i = 0; i < nqb; i++) map[(size_t)i * nkb + global[g]] = 1;
    }
    return ATTN_OK;
}

attn_status attn_block_map_bigbird(uint8_t *map, int nqb, int nkb, int window, const int *global, int nglobal,
                                   int nrandom, uint64_t seed) {
    if (nrandom < 0) return ATTN_ERR_ARG;
    attn_status st = attn_block_map_longformer(map, nqb, nkb, window, global, nglobal);
    if (st != ATTN_OK) return st;
    uint64_t x = seed;
    for (int i = 0; i < nqb; i++)
        for (int r = 0; r < nrandom; r++) {
            x += 0x9e3779b97f4a7c15ULL;                          /* splitmix64 */
            map[(size_t)i * nkb + (size_t)(attn__mix64(x) % (uint64_t)nkb)] = 1;
        }
    return ATTN_OK;
}

attn_status attn_alibi_slopes(int H, float *slopes) {
    if (!slopes) return ATTN_ERR_NULL;
    if (H < 1) return ATTN_ERR_SIZE;
    int n = 1;                                      /* the largest power of two <= H */
    while (n * 2 <= H) n *= 2;
    for (int h = 0; h < n; h++) slopes[h] = (float)exp2(-8.0 * (h + 1) / n);
    for (int h = n; h < H; h++) slopes[h] = (float)exp2(-8.0 * (2 * (h - n) + 1) / (2 * n));
    return ATTN_OK;
}

/* A sufficient test that a (B,H,T,inner) tensor with strides (l->b, l->h, l->t, 1) has no two elements at
 * one address: sort the axes by stride and require every stride to reach past the whole block spanned by
 * the axes below it (stride >= previous stride × previous extent). Axes of extent 1 are never stepped and
 * are ignored. Some exotic interleaved layouts that are in fact disjoint are refused; every layout a
 * permutation of a contiguous tensor (with or without padding) passes. */
int attn__layout_disjoint(const attn_layout *l, int B, int H, int T, int inner) {
    if (!l || B < 1 || H < 1 || T < 1 || inner < 1) return 0;
    int64_t ext[4] = {B, H, T, inner};
    int64_t str[4] = {l->b, l->h, l->t, 1};

    /* keep the axes that are stepped, then insertion-sort them by stride */
    int n = 0;
    int64_t e[4], s[4];
    for (int i = 0; i < 4; i++) {
        if (ext[i] == 1) continue;
        if (str[i] < 0) return 0;
        e[n] = ext[i];
        s[n] = str[i];
        n++;
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            int64_t ts = s[j], te = e[j];
            s[j] = s[j - 1]; e[j] = e[j - 1];
            s[j - 1] = ts;   e[j - 1] = te;
        }

    /* span: the number of elements' worth of address space covered by the axes seen so far; a single
     * element covers 1, so a stride of 0 on a stepped axis fails at once */
    int64_t span = 1;
    for (int i = 0; i < n; i++) {
        if (s[i] < span) return 0;
        if (s[i] > INT64_MAX / e[i]) return i == n - 1;   /* nothing above it can reach past it */
        span = s[i] * e[i];
    }
    return 1;
}
