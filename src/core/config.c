/*
 * config.c — execution contexts and the process-wide defaults behind them (thread count, kernel path),
 * CPU detection, the dispatch tables and OpenBLAS's own thread knob.
 *
 * The default context's path starts from the ATTN_ISA environment variable (auto, ref, scalar, avx2,
 * avx512, amx) the first time it is read; attn_set_isa() overrides it. AUTO resolves to the best path that is
 * both built in and supported by the CPU. Explicit contexts (attn_ctx_init) never read the globals.
 *
 * The dispatch tables live here too: one complete table per path, composed once from the reference
 * entries and each path's overrides (see internal.h).
 */
#define _DEFAULT_SOURCE   /* syscall */
#include "internal.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

static int g_threads = 0;           /* 0: not resolved yet (every core) */
static int g_isa = -1;              /* -1: not read yet */

static const char *const isa_names[ATTN_ISA_COUNT] = {"auto", "ref", "scalar", "avx2", "avx512", "amx",
                                                                 "avx512bf16"};

const char *attn_isa_name(attn_isa isa) {
    if ((int)isa < 0 || isa >= ATTN_ISA_COUNT) return "unknown";
    return isa_names[isa];
}

attn_status attn_isa_parse(const char *name, attn_isa *isa) {
    if (!name || !isa) return ATTN_ERR_NULL;
    for (int i = 0; i < ATTN_ISA_COUNT; i++)
        if (strcmp(name, isa_names[i]) == 0) {
            *isa = (attn_isa)i;
            return ATTN_OK;
        }
    return ATTN_ERR_ARG;
}

static int all_cores(void) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n < 1 ? 1 : n > ATTN_MAX_THREADS ? ATTN_MAX_THREADS : n;
#else
    return 1;
#endif
}

/* The attention kernels' thread count only; OpenBLAS has its own knob (attn_blas_set_num_threads). "Every
 * core" (n <= 0) is resolved here, from OpenMP's default now, and kept. */
attn_status attn_set_num_threads(int n) {
    if (n > ATTN_MAX_THREADS) return ATTN_ERR_ARG;
    g_threads = n > 0 ? n : all_cores();
    return ATTN_OK;
}

int attn_get_num_threads(void) {
    if (g_threads <= 0) g_threads = all_cores();   /* never set: every core, resolved once */
    return g_threads;
}

/* OpenBLAS built on OpenMP (Debian's libopenblas-openmp) implements openblas_set_num_threads with
 * omp_set_num_threads, and follows OpenMP's default at every call: its count and OpenMP's default are one
 * knob there. The attention kernels' "every core" is therefore resolved when it is set (and the first time
 * it is read), never read back from OpenMP's default afterwards (attn_get_num_threads). */
attn_status attn_blas_set_num_threads(int n) {
    if (n < 1 || n > ATTN_MAX_THREADS) return ATTN_ERR_ARG;
    (void)attn_get_num_threads();            /* resolve "every core" before OpenBLAS changes OpenMP's default */
    openblas_set_num_threads(n);
    return ATTN_OK;
}

const char *attn_blas_core_name(void) {
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}

/* ---------------------------------------------------------------------------------------------------
 * AMX: the CPU must have AMX-TILE and AMX-BF16 (CPUID leaf 7: EDX bits 24 and 22) and AVX512-BF16 (leaf
 * 7, sub-leaf 1: EAX bit 5), and the OS must enable the tile state: XCR0 bits 17 (XTILECFG) and 18
 * (XTILEDATA), and on Linux a per-process permission, arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA), asked
 * once (pthread_once) the first time anyone checks. A refusal (an old kernel, a seccomp filter, a
 * sigaltstack too small for the tile state) makes the path unsupported, nothing else; ATTN_NO_AMX=1 makes
 * the check behave as refused, so tests can take the fall-back on any machine.
 */
#define ATTN_ARCH_REQ_XCOMP_PERM 0x1023
#define ATTN_XFEATURE_XTILEDATA 18

static int g_amx_ok = 0;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static void amx_check(void) {
    g_amx_ok = 0;
    const char *deny = getenv("ATTN_NO_AMX");
    if (deny && *deny && strcmp(deny, "0") != 0) return;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    if (!(d & (1u << 24)) || !(d & (1u << 22))) return;                /* AMX-TILE, AMX-BF16 */
    if (a < 1 || !__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return;   /* AVX512-BF16 */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return;  /* OSXSAVE: xgetbv is there */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return;                       /* XTILECFG, XTILEDATA */
#if defined(__linux__)
    if (syscall(SYS_arch_prctl, ATTN_ARCH_REQ_XCOMP_PERM, ATTN_XFEATURE_XTILEDATA) != 0) return;
#endif
    g_amx_ok = 1;
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
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case ATTN_ISA_AVX512BF16:
        return attn_cpu_supports(ATTN_ISA_AVX512) && __builtin_cpu_supports("avx512bf16");
    case ATTN_ISA_AMX:
        if (!attn_cpu_supports(ATTN_ISA_AVX512)) return 0;
        pthread_once(&g_amx_once, amx_check);
        return g_amx_ok;
#endif
    default:
        return 0;
    }
}

/* 1 when the path's code is in this build. */
static int built_in(attn_isa isa) {
    switch (isa) {
    case ATTN_ISA_REF:
    case ATTN_ISA_SCALAR:
        return 1;
#ifdef ATTN_HAVE_AVX2
    case ATTN_ISA_AVX2:
        return 1;
#endif
#ifdef ATTN_HAVE_AVX512
    case ATTN_ISA_AVX512:
        return 1;
#endif
#ifdef ATTN_HAVE_AVX512BF16
    case ATTN_ISA_AVX512BF16:
        return 1;
#endif
#ifdef ATTN_HAVE_AMX
    case ATTN_ISA_AMX:
        return 1;
#endif
    default:
        return 0;
    }
}

static attn_isa resolve_auto(void) {
    static const attn_isa order[] = {ATTN_ISA_AMX, ATTN_ISA_AVX512BF16, ATTN_ISA_AVX512, ATTN_ISA_AVX2,
                                     ATTN_ISA_SCALAR};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (built_in(order[i]) && attn_cpu_supports(order[i])) return order[i];
    return ATTN_ISA_REF;
}

/* ---------------------------------------------------------------------------------------------------
 * The dispatch tables, composed once: the reference entries, then each path's own entries over those of
 * the path below it (scalar over ref, AVX2 over scalar, AVX-512 over AVX2, AVX512-BF16 over AVX-512, AMX
 * over AVX512-BF16), so every
 * table is complete.
 */
static attn_kernels g_tables[ATTN_ISA_COUNT];
static pthread_once_t g_tables_once = PTHREAD_ONCE_INIT;

static void overlay(attn_kernels *t, const attn_kernels *over) {
    if (over->sdpa_native) t->sdpa_native = over->sdpa_native;
    if (over->sdpa_workspace) t->sdpa_workspace = over->sdpa_workspace;
    if (over->sdpa_stages) t->sdpa_stages = over->sdpa_stages;
    if (over->sdpa_threads) t->sdpa_threads = over->sdpa_threads;
    if (over->sdpa_forward) t->sdpa_forward = over->sdpa_forward;
    if (over->sdpa_backward) t->sdpa_backward = over->sdpa_backward;
    if (over->sdpa_weights) t->sdpa_weights = over->sdpa_weights;
    if (over->additive_forward) t->additive_forward = over->additive_forward;
    if (over->additive_backward) t->additive_backward = over->additive_backward;
    if (over->gru_gates) t->gru_gates = over->gru_gates;
    if (over->gru_gates_backward) t->gru_gates_backward = over->gru_gates_backward;
    if (over->adam_block) t->adam_block = over->adam_block;
    if (over->gelu_forward) t->gelu_forward = over->gelu_forward;
    if (over->gelu_backward) t->gelu_backward = over->gelu_backward;
    if (over->layernorm_forward) t->layernorm_forward = over->layernorm_forward;
    if (over->layernorm_backward) t->layernorm_backward = over->layernorm_backward;
}

static void compose_tables(void) {
    g_tables[ATTN_ISA_REF] = attn__kernels_ref;
    g_tables[ATTN_ISA_SCALAR] = g_tables[ATTN_ISA_REF];
    overlay(&g_tables[ATTN_ISA_SCALAR], &attn__kernels_scalar);
    g_tables[ATTN_ISA_AVX2] = g_tables[ATTN_ISA_SCALAR];
#ifdef ATTN_HAVE_AVX2
    overlay(&g_tables[ATTN_ISA_AVX2], &attn__kernels_avx2);
#endif
    g_tables[ATTN_ISA_AVX512] = g_tables[ATTN_ISA_AVX2];
#ifdef ATTN_HAVE_AVX512
    overlay(&g_tables[ATTN_ISA_AVX512], &attn__kernels_avx512);
#endif
    g_tables[ATTN_ISA_AVX512BF16] = g_tables[ATTN_ISA_AVX512];
#ifdef ATTN_HAVE_AVX512BF16
    overlay(&g_tables[ATTN_ISA_AVX512BF16], &attn__kernels_avx512bf16);
#endif
    g_tables[ATTN_ISA_AMX] = g_tables[ATTN_ISA_AVX512BF16];
#ifdef ATTN_HAVE_AMX
    overlay(&g_tables[ATTN_ISA_AMX], &attn__kernels_amx);
#endif
    for (int i = ATTN_ISA_REF; i < ATTN_ISA_COUNT; i++) g_tables[i].isa = (attn_isa)i;
}

const attn_kernels *attn__kernels(attn_isa isa) {
    if ((int)isa <= ATTN_ISA_AUTO || isa >= ATTN_ISA_COUNT || !built_in(isa)) return NULL;
    pthread_once(&g_tables_once, compose_tables);
    return &g_tables[isa];
}

attn_status attn_set_isa(attn_isa isa) {
    if ((int)isa < 0 || isa >= ATTN_ISA_COUNT) return ATTN_ERR_ARG;
    if (isa == ATTN_ISA_AUTO) isa = resolve_auto();
    if (!built_in(isa) || !attn_cpu_supports(isa)) return ATTN_ERR_UNSUPPORTED;
    g_isa = (int)isa;
    return ATTN_OK;
}

attn_isa attn_get_isa(void) {
    if (g_isa < 0) {
        attn_isa isa = ATTN_ISA_AUTO;
        const char *env = getenv("ATTN_ISA");
        if (env && attn_isa_parse(env, &isa) != ATTN_OK) isa = ATTN_ISA_AUTO;
        if (attn_set_isa(isa) != ATTN_OK) attn_set_isa(ATTN_ISA_AUTO);
    }
    return (attn_isa)g_isa;
}

attn_status attn_ctx_init(attn_ctx *c, attn_isa isa, int threads) {
    if (!c) return ATTN_ERR_NULL;
    if ((int)isa < 0 || isa >= ATTN_ISA_COUNT || threads > ATTN_MAX_THREADS) return ATTN_ERR_ARG;
    if (isa == ATTN_ISA_AUTO) isa = resolve_auto();
    if (!built_in(isa) || !attn_cpu_supports(isa)) return ATTN_ERR_UNSUPPORTED;
    c->isa = isa;
    c->threads = threads > 0 ? threads : all_cores();
    return ATTN_OK;
}

attn_ctx attn_ctx_default(void) {
    attn_ctx c = {attn_get_isa(), attn_get_num_threads()};
    return c;
}

attn_status attn__ctx_resolve(const attn_ctx *in, attn_ctx *out, const attn_kernels **kern) {
    if (!in) *out = attn_ctx_default();
    else {
        if ((int)in->isa <= ATTN_ISA_AUTO || in->isa >= ATTN_ISA_COUNT || in->threads < 1 ||
            in->threads > ATTN_MAX_THREADS)
            return ATTN_ERR_ARG;
        if (!built_in(in->isa) || !attn_cpu_supports(in->isa)) return ATTN_ERR_UNSUPPORTED;
        *out = *in;
    }
    *kern = attn__kernels(out->isa);
    return *kern ? ATTN_OK : ATTN_ERR_UNSUPPORTED;
}
