/*
 * runtime.c — settings that decide the program's speed but that OpenBLAS and libgomp read only when they
 * load, before main() runs:
 *   - Debian 12's OpenBLAS 0.3.21 does not know CPUs newer than it (our machines: Intel family 6 model 207;
 *     AMD Zen 4 likewise) and falls back to its Prescott (SSE3) kernels, about 4x slower here.
 *     OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) picks the right ones.
 *   - libgomp's idle threads spin between parallel regions and take the two cores from OpenBLAS's threads
 *     (measured: an IMDB training step 5x slower). OMP_WAIT_POLICY=passive puts them to sleep.
 *   - Under an address-space limit (ulimit -v) OpenBLAS's buffer allocation does not fail: it hangs. With
 *     2 threads that happened below about 420 MiB (measured: `attn demo` hung at 304-416 MiB, ran at 450),
 *     with 1 thread below about 310 MiB, where it hangs while the library loads, before main() (nothing
 *     to do there but document it: README.md). So under a limit below LOW_AS_MIB per core the program
 *     runs OpenMP and OpenBLAS on one thread (OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1) and says so.
 * When any is unset, the program sets it and runs itself again, once (ATTN_REEXEC guards). A user's
 * own settings always win. Library users meet the same issues: README.md says so.
 */
#define _POSIX_C_SOURCE 200809L   /* setenv, execv */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LOW_AS_MIB 256   /* per core online: below this address-space limit, one thread */

void cli_tune_runtime(char **argv) {
    if (getenv("ATTN_REEXEC")) return;
    int changed = 0;
    const char *core = attn_blas_core_name();
    if (!getenv("OPENBLAS_CORETYPE") && strcmp(core, "Prescott") == 0) {
        if (attn_cpu_supports(ATTN_ISA_AVX512)) { setenv("OPENBLAS_CORETYPE", "SkylakeX", 1); changed = 1; }
        else if (attn_cpu_supports(ATTN_ISA_AVX2)) { setenv("OPENBLAS_CORETYPE", "Haswell", 1); changed = 1; }
    }
    struct rlimit rl;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && cores > 1 &&
        rl.rlim_cur < (rlim_t)LOW_AS_MIB * 1024 * 1024 * (rlim_t)cores && !getenv("OMP_NUM_THREADS")) {
        fprintf(stderr, "attn: note: the address-space limit (ulimit -v) is %llu MiB; OpenBLAS hangs instead of "
                "failing when its buffers do not fit, so this run uses one thread (OMP_NUM_THREADS=1); raise the "
                "limit to %ld MiB or more for %ld threads\n", (unsigned long long)(rl.rlim_cur >> 20),
                (long)LOW_AS_MIB * cores, cores);
        setenv("OMP_NUM_THREADS", "1", 1);
        if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", "1", 1);
        changed = 1;
    }
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        changed = 1;
    }
    if (!changed) return;
    setenv("ATTN_REEXEC", "1", 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the slower settings */
}
