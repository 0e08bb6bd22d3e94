/*
 * config.c — process-wide settings: the thread count, the kernel path (ISA) and CPU detection.
 *
 * The path starts from the ATTN_ISA environment variable (auto, ref, scalar, avx2, avx512) the first time
 * it is read; attn_set_isa() overrides it. AUTO resolves to the best path that is both built in and
 * supported by the CPU.
 */
#include "internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static int g_threads = 0;           /* 0: all cores */
static int g_isa = -1;              /* -1: not read yet */

static const char *const isa_names[ATTN_ISA_COUNT] = {"auto", "ref", "scalar", "avx2", "avx512"};

const char *attn_isa_name(attn_isa isa) {
    if ((int)isa < 0 || isa >= ATTN_ISA_COUNT) return "unknown";
    return isa_names[isa];
}

/* One knob for both thread pools: the fused kernels' OpenMP threads and OpenBLAS's (they never run at
 * the same time, so they share the cores rather than compete for them). */
attn_status attn_set_num_threads(int n) {
    g_threads = n < 0 ? 0 : n;
    openblas_set_num_threads(attn_get_num_threads());
    return ATTN_OK;
}

int attn_get_num_threads(void) {
    if (g_threads > 0) return g_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int attn_cpu_supports(attn_isa isa) {
    switch (isa) {
    case ATTN_ISA_AUTO:
    case ATTN_ISA_REF:
    case ATTN_ISA_SCALAR:
        return 1;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    case ATTN_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case ATTN_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

const attn_kernels *attn__kernels(attn_isa isa) {
    switch (isa) {
    case ATTN_ISA_REF:    return &attn__kernels_ref;
    case ATTN_ISA_SCALAR: return &attn__kernels_scalar;
#ifdef ATTN_HAVE_AVX2
    case ATTN_ISA_AVX2:   return &attn__kernels_avx2;
#endif
#ifdef ATTN_HAVE_AVX512
    case ATTN_ISA_AVX512: return &attn__kernels_avx512;
#endif
    default:              return NULL;
    }
}

static attn_isa resolve_auto(void) {
    static const attn_isa order[] = {ATTN_ISA_AVX512, ATTN_ISA_AVX2, ATTN_ISA_SCALAR};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (attn__kernels(order[i]) && attn_cpu_supports(order[i])) return order[i];
    return ATTN_ISA_REF;
}

attn_status attn_set_isa(attn_isa isa) {
    if ((int)isa < 0 || isa >= ATTN_ISA_COUNT) return ATTN_ERR_ARG;
    if (isa == ATTN_ISA_AUTO) isa = resolve_auto();
    if (!attn__kernels(isa) || !attn_cpu_supports(isa)) return ATTN_ERR_UNSUPPORTED;
    g_isa = (int)isa;
    return ATTN_OK;
}

attn_isa attn_get_isa(void) {
    if (g_isa < 0) {
        attn_isa isa = ATTN_ISA_AUTO;
        const char *env = getenv("ATTN_ISA");
        if (env)
            for (int i = 0; i < ATTN_ISA_COUNT; i++)
                if (strcmp(env, isa_names[i]) == 0) isa = (attn_isa)i;
        if (attn_set_isa(isa) != ATTN_OK) attn_set_isa(ATTN_ISA_AUTO);
    }
    return (attn_isa)g_isa;
}
