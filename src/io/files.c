/*
 * files.c — opening files for the loaders and the writers: regular files only, without ever blocking on
 * a FIFO (open with O_NONBLOCK, check with fstat, then back to blocking reads). See files.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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

int attn__write_file_atomic(const char *path, const void *data, size_t n, char *msg, size_t msg_size) {
    const char *target_kind = attn__not_replaceable(path), *kind = NULL;
    if (target_kind) {
        snprintf(msg, msg_size, "exists and is %s, not a regular file: refusing to replace it (write to another path)",
                 target_kind);
        return -1;
    }
    size_t len = strlen(path);
    char *tmp = malloc(len + 5);
    if (!tmp) { snprintf(msg, msg_size, "out of memory"); return -1; }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    FILE *f = attn__fopen_tmp(tmp, &kind);
    if (!f) {
        if (kind) snprintf(msg, msg_size, "cannot create %s: it is %s, not a regular file", tmp, kind);
        else snprintf(msg, msg_size, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int bad = n && fwrite(data, 1, n, f) != n;
    int e = bad ? errno : 0;
    if (fflush(f) != 0 && !bad) { bad = 1; e = errno; }
    if (!bad && fsync(fileno(f)) != 0) { bad = 1; e = errno; }
    if (fclose(f) != 0 && !bad) { bad = 1; e = errno; }
    if (!bad && rename(tmp, path) != 0) {
        snprintf(msg, msg_size, "cannot rename %s over it: %s", tmp, strerror(errno));
        remove(tmp);
        free(tmp);
        return -1;
    }
    if (bad) {
        snprintf(msg, msg_size, "cannot write %s: %s; the previous file is unchanged", tmp, e ? strerror(e) : "error");
        remove(tmp);
    }
    free(tmp);
    return bad ? -1 : 0;
}
