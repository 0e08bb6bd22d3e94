/*
 * fuzz_util.h — what the fuzz targets share: the libFuzzer entry point's declaration, and a file that
 * holds the current input for loaders that take a path (an anonymous memory file, reached through
 * /proc/self/fd, so no disk is touched and nothing is left behind).
 */
#ifndef ATTN_FUZZ_UTIL_H
#define ATTN_FUZZ_UTIL_H

#define _GNU_SOURCE          /* memfd_create */
#include "attn.h"
#include "attn/data.h"
#include "attn/safetensors.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replaces the content of this process's input file with data and returns its path. Aborts when the
 * file cannot be made: the harness, not the library, is broken then. */
static inline const char *fuzz_input_path(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("attn-fuzz-input", 0);
        if (fd < 0) { perror("memfd_create"); abort(); }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) { perror("ftruncate"); abort(); }
    for (size_t done = 0; done < size;) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) { perror("pwrite"); abort(); }
        done += (size_t)w;
    }
    return path;
}

/* A check of the harness's own expectations: a library result that breaks its documented contract. */
#define FUZZ_ASSERT(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Every error message must name where it happened: nonempty, NUL-terminated inside the buffer. */
#define FUZZ_ERR_OK(err, size) FUZZ_ASSERT((err)[0] != '\0' && memchr((err), '\0', (size)) != NULL)

#endif /* ATTN_FUZZ_UTIL_H */
