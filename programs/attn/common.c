/*
 * common.c — helpers every `attn` subcommand would otherwise write again: a clock, making an output
 * folder, and setting up the threads of the attention kernels and of OpenBLAS. Uses only the public API.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, mkdir */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_make_dir(const char *who, const char *path) {
    struct stat s;
    if (stat(path, &s) == 0) {
        if (S_ISDIR(s.st_mode)) return 0;
        fprintf(stderr, "attn: %s: --out %s exists and is not a folder\n", who, path);
        return 1;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    /* the parents first, then the folder itself */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        const char c = *p;
        *p = '\0';
        if (stat(buf, &s) != 0 && mkdir(buf, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "attn: %s: cannot create folder %s: %s\n", who, buf, strerror(errno));
            return 1;
        }
        if (c == '\0') return 0;
        *p = c;
    }
}

void cli_set_threads(int threads, int blas_threads) {
    attn_set_num_threads(threads);
    const int got = attn_get_num_threads();
    attn_blas_set_num_threads(blas_threads > 0 ? blas_threads : got > 0 ? got : 1);
}
