/*
 * files.h — internal: how the library opens files, so that every reader and writer follows one rule:
 * only regular files are read, replaced or created. A FIFO, a device, a socket or a folder is refused
 * with its kind named, never waited on (a FIFO with no writer would block an open forever) and never
 * replaced (renaming a temporary file over /dev/null would turn the device into a plain file).
 */
#ifndef ATTN_IO_FILES_H
#define ATTN_IO_FILES_H

#include <stdio.h>

/* Opens path for reading ("rb") when it is a regular file (a symbolic link to one is fine). Otherwise
 * NULL, and either *kind = what the path is ("a FIFO", "a folder", ...) with errno 0, or *kind = NULL and
 * errno from open (ENOENT, EACCES, ...). Never blocks. */
FILE *attn__fopen_read(const char *path, const char **kind);

/* Writers write "<path>.tmp", sync it and rename it over path. Before that: NULL when path is absent or a
 * regular file, else what it is ("a character device", "a symbolic link", ...), and the writer refuses. */
const char *attn__not_replaceable(const char *path);

/* Creates or truncates the temporary file tmp for writing ("wb"), refusing (as attn__fopen_read does,
 * *kind set, errno 0) anything that is not a regular file; a symbolic link is not followed (errno ELOOP). */
FILE *attn__fopen_tmp(const char *tmp, const char **kind);

/* Writes n bytes of data to "<path>.tmp", syncs it and renames it over path, refusing a path that is not a
 * regular file. Returns 0, or -1 with msg (msg_size bytes) saying why, without the path. */
int attn__write_file_atomic(const char *path, const void *data, size_t n, char *msg, size_t msg_size);

#endif /* ATTN_IO_FILES_H */
