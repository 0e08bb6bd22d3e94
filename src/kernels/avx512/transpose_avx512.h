/*
 * transpose_avx512.h — a 16 x 16 transpose of 32-bit lanes in AVX-512 registers, for the packs that turn
 * rows into columns (the fused fp32 kernels, kernels_avx512.c; the bf16 kernels, decode_bf16.h; the AMX
 * tiles' packs, kernels_amx.c, which moved from gathers to it first). On the CPUs measured a 16-lane gather
 * cost about what a whole transpose does (DESIGN "AVX512-BF16 small shapes").
 * Included by files compiled with the AVX-512 flags.
 */
#ifndef ATTN_TRANSPOSE_AVX512_H
#define ATTN_TRANSPOSE_AVX512_H

#include <immintrin.h>

/* v[i] lane j becomes v[j] lane i: 32-bit pairs, then 64-bit pairs, then 128-bit lanes twice. */
static inline void attn__transpose16(__m512i v[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        v[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        v[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        v[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        v[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(v[i], v[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(v[i], v[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        v[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

#endif
