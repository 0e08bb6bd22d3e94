/*
 * runtime.c — settings that decide the program's speed but that OpenBLAS and libgomp read only when they
 * load, before main() runs:
 *   - Debian 12's OpenBLAS 0.3.21 does not know CPUs newer than it (our machines: Intel family 6 model 207;
 *     AMD Zen 4 likewise) and falls back to its Prescott (SSE3) kernels, about 4x slower here.
 *     OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) picks the right ones.
 *   - libgomp's idle threads spin between parallel regions and take the two cores from OpenBLAS's threads
 *     (measured: an IMDB training step 5x slower). OMP_WAIT_POLICY=passive puts them to sleep.
 * When either is unset, the program sets it and runs itself again, once (ATTN_REEXEC guards). A user's
 * own settings always win. Library users meet the same two issues: README.md says so.
 */
#define _POSIX_C_SOURCE 200809L   /* setenv, execv */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_tune_runtime(char **argv) {
    if (getenv("ATTN_REEXEC")) return;
    int changed = 0;
    const char *core = attn_blas_core_name();
    if (!getenv("OPENBLAS_CORETYPE") && strcmp(core, "Prescott") == 0) {
        if (attn_cpu_supports(ATTN_ISA_AVX512)) { setenv("OPENBLAS_CORETYPE", "SkylakeX", 1); changed = 1; }
        else if (attn_cpu_supports(ATTN_ISA_AVX2)) { setenv("OPENBLAS_CORETYPE", "Haswell", 1); changed = 1; }
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
