/*
 * files.c — opening files for the loaders and the writers: regular files only, without ever blocking on
 * a FIFO (open with O_NONBLOCK, check with fstat, then back to blocking reads). See files.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

/* fd opened with O_NONBLOCK: kept (and made blocking) as a FILE when it is a regular file. */
static FILE *regular_or_close(int fd, const char *mode, const char **kind) {
    struct stat s;
    if (fstat(fd, &s) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    if (!S_ISREG(s.st_mode)) {
        *kind = kind_of(s.st_mode);
        close(fd);
        errno = 0;
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, mode);
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

FILE *attn__fopen_read(const char *path, const char **kind) {
    *kind = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? NULL : regular_or_close(fd, "rb", kind);
}

const char *attn__not_replaceable(const char *path) {
    struct stat s;
    if (lstat(path, &s) != 0 || S_ISREG(s.st_mode)) return NULL;
    return kind_of(s.st_mode);
}

FILE *attn__fopen_tmp(const char *tmp, const char **kind) {
    *kind = NULL;
    struct stat s;
    if (lstat(tmp, &s) == 0 && !S_ISREG(s.st_mode)) {   /* the open below refuses it too, less clearly */
        *kind = kind_of(s.st_mode);
        errno = 0;
        return NULL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    return fd < 0 ? NULL : regular_or_close(fd, "wb", kind);
}
