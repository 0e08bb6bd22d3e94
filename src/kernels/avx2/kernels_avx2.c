/*
 * kernels_avx2.c — the AVX2 + FMA path: 8 floats per vector, a 3 x 4-vector register tile, and the path's
 * exp2. The algorithms are kernels_impl.h's (fused attention, GRU gates, additive attention); this file
 * only supplies the vector operations. Compiled with -mavx2 -mfma and run only when the CPU has them (config.c).
 */
#include "internal.h"
#include "layers/gelu_kernels.h"
#include "layers/layernorm_kernels.h"
#include "layers/optim_kernels.h"

#include <immintrin.h>
#include <math.h>

#define FZ_VW 8
#define FZ_NVMAX 4
#define FZ_RTMAX 3
#define FZ_BC 64
#define FZ_QB 64
#define FZ_ISA ATTN_ISA_AVX2
#define FZ_TABLE attn__kernels_avx2
#define FZ_ADAM attn__adam_block_avx2
#define FZ_GELU(pass) attn__gelu_##pass##_avx2
#define FZ_LAYERNORM(pass) attn__layernorm_##pass##_avx2

typedef __m256 fz_v;
typedef __m256i fz_m;

static inline fz_v fz_zero(void) { return _mm256_setzero_ps(); }
static inline fz_v fz_set1(float a) { return _mm256_set1_ps(a); }
static inline fz_v fz_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void fz_store(float *p, fz_v a) { _mm256_storeu_ps(p, a); }
static inline fz_m fz_tailmask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline fz_v fz_loadm(const float *p, fz_m m) { return _mm256_maskload_ps(p, m); }
static inline void fz_storem(float *p, fz_v a, fz_m m) { _mm256_maskstore_ps(p, m, a); }
static inline void fz_transpose(fz_v v[8]) {                     /* v[i] lane j <-> v[j] lane i */
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        v[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
static inline fz_v fz_add(fz_v a, fz_v b) { return _mm256_add_ps(a, b); }
static inline fz_v fz_sub(fz_v a, fz_v b) { return _mm256_sub_ps(a, b); }
static inline fz_v fz_mul(fz_v a, fz_v b) { return _mm256_mul_ps(a, b); }
static inline fz_v fz_fma(fz_v a, fz_v b, fz_v c) { return _mm256_fmadd_ps(a, b, c); }
static inline fz_v fz_max(fz_v a, fz_v b) { return _mm256_max_ps(a, b); }
static inline fz_v fz_div(fz_v a, fz_v b) { return _mm256_div_ps(a, b); }
static inline float fz_hsum(fz_v a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline float fz_hmax(fz_v a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
static inline fz_v fz_mask_lim(fz_v a, const int32_t *lim, int j) {
    /* excluded where lim <= j, i.e. not (lim > j) */
    __m256i keep = _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)lim), _mm256_set1_epi32(j));
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), a, _mm256_castsi256_ps(keep));
}
static inline fz_v fz_mask_iota(fz_v a, int j0, int lim) {
    /* kept where j0 + lane < lim, i.e. lim - j0 > lane */
    __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(lim - j0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), a, _mm256_castsi256_ps(keep));
}

/* 2^x: x = n + f, |f| <= 1/2, 2^f by its degree-7 Taylor series, times 2^n built in the exponent bits.
 * x is clamped to [-127, 127]; n = -127 builds the bit pattern of +0, so x <= -127 (and -inf) gives 0. */
static inline fz_v fz_exp2(fz_v x) {
    x = _mm256_max_ps(_mm256_set1_ps(-127.0f), x);       /* NaN in x stays NaN (max/min return the second */
    x = _mm256_min_ps(_mm256_set1_ps(127.0f), x);        /* operand when either is NaN) */
    const fz_v n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const fz_v f = _mm256_sub_ps(x, n);
    fz_v p = _mm256_set1_ps(1.5252733e-05f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.5403530e-04f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504109e-02f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022651e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#include "kernels/scalar/kernels_impl.h"
