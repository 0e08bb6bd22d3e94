/*
 * kernels_avx512.c — the AVX-512 path: 16 floats per vector, a 6 x 4-vector register tile (24
 * accumulators) in every product, and the path's exp2. The algorithms are kernels_impl.h's (fused
 * attention, GRU gates, additive attention); this file only supplies the vector operations. Compiled with -mavx512f/dq/bw/vl and
 * run only when the CPU has them (config.c).
 */
#include "internal.h"
#include "layers/gelu_kernels.h"
#include "layers/layernorm_kernels.h"
#include "layers/optim_kernels.h"

#include <immintrin.h>
#include <math.h>

#include "kernels/avx512/exp2_avx512.h"
#include "kernels/avx512/transpose_avx512.h"

#define FZ_VW 16
#define FZ_NVMAX 4
#define FZ_RTMAX 6
#define FZ_BC 96
#define FZ_QB 128
#define FZ_ISA ATTN_ISA_AVX512
#define FZ_TABLE attn__kernels_avx512
#define FZ_ADAM attn__adam_block_avx512
#define FZ_GELU(pass) attn__gelu_##pass##_avx512
#define FZ_LAYERNORM(pass) attn__layernorm_##pass##_avx512

typedef __m512 fz_v;
typedef __mmask16 fz_m;

static inline fz_v fz_zero(void) { return _mm512_setzero_ps(); }
static inline fz_v fz_set1(float a) { return _mm512_set1_ps(a); }
static inline fz_v fz_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void fz_store(float *p, fz_v a) { _mm512_storeu_ps(p, a); }
static inline fz_m fz_tailmask(int n) { return (fz_m)(n >= 16 ? 0xffff : (1u << n) - 1); }
static inline fz_v fz_loadm(const float *p, fz_m m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void fz_storem(float *p, fz_v a, fz_m m) { _mm512_mask_storeu_ps(p, m, a); }
static inline void fz_transpose(fz_v v[16]) {                    /* v[i] lane j <-> v[j] lane i */
    __m512i w[16];
    for (int i = 0; i < 16; i++) w[i] = _mm512_castps_si512(v[i]);
    attn__transpose16(w);
    for (int i = 0; i < 16; i++) v[i] = _mm512_castsi512_ps(w[i]);
}
static inline fz_v fz_add(fz_v a, fz_v b) { return _mm512_add_ps(a, b); }
static inline fz_v fz_sub(fz_v a, fz_v b) { return _mm512_sub_ps(a, b); }
static inline fz_v fz_mul(fz_v a, fz_v b) { return _mm512_mul_ps(a, b); }
static inline fz_v fz_fma(fz_v a, fz_v b, fz_v c) { return _mm512_fmadd_ps(a, b, c); }
static inline fz_v fz_max(fz_v a, fz_v b) { return _mm512_max_ps(a, b); }
static inline fz_v fz_div(fz_v a, fz_v b) { return _mm512_div_ps(a, b); }
static inline float fz_hsum(fz_v a) { return _mm512_reduce_add_ps(a); }
static inline float fz_hmax(fz_v a) { return _mm512_reduce_max_ps(a); }
static inline fz_v fz_mask_lim(fz_v a, const int32_t *lim, int j) {
    __mmask16 out = _mm512_cmple_epi32_mask(_mm512_loadu_si512(lim), _mm512_set1_epi32(j));
    return _mm512_mask_mov_ps(a, out, _mm512_set1_ps(-INFINITY));
}
static inline fz_v fz_mask_iota(fz_v a, int j0, int lim) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __mmask16 out = _mm512_cmpge_epi32_mask(_mm512_add_epi32(iota, _mm512_set1_epi32(j0)), _mm512_set1_epi32(lim));
    return _mm512_mask_mov_ps(a, out, _mm512_set1_ps(-INFINITY));
}

/* 2^x: the AVX-512 polynomial (exp2_avx512.h), shared with the AMX path. */
static inline fz_v fz_exp2(fz_v x) { return attn__exp2_avx512(x); }

/* x rounded to bf16 as fp32 (to nearest even, NaN kept quiet): attn__bf16's integer steps on 16 lanes.
 * The AMX and AVX512-BF16 paths run this table's additive attention, whose bf16 compute rounds with it. */
#define FZ_HAVE_BFR
static inline fz_v fz_bfr(fz_v x) {
    const __m512i u = _mm512_castps_si512(x), hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), hi);
    const __m512i nan = _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), hi);
    return _mm512_castsi512_ps(_mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), nan));
}

#include "kernels/scalar/kernels_impl.h"
