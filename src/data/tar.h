/*
 * tar.h — internal: a streaming reader of .tar.gz archives (gzip through zlib's inflate, then ustar/GNU
 * headers), and a small writer of the same, used by the tests to build fixtures. Never installed.
 *
 * Reader: attn__tar_open, then attn__tar_next for each entry (regular files, directories, ...) and
 * attn__tar_read for the bytes of the current entry (what is not read is skipped by the next
 * attn__tar_next). Every header's checksum, octal fields, sizes and the archive's end are checked; a
 * gzip stream cut short, a bad CRC, or a tar that ends without its two zero blocks is ATTN_ERR_FORMAT
 * with a message naming the path, the entry and the offset. Every step reads forward: a malformed pax record
 * is an error, never a loop.
 */
#ifndef ATTN_DATA_TAR_H
#define ATTN_DATA_TAR_H

#include "internal.h"

#include <stdio.h>

typedef struct attn__tar attn__tar;

typedef struct attn__tar_entry {
    char name[1024];             /* full path inside the archive (prefix/name, or a GNU/pax long name) */
    char type;                   /* '0' regular file, '5' directory, ... ('\0' is read as '0') */
    uint64_t size;               /* bytes of content */
    uint64_t offset;             /* offset of its header in the uncompressed tar */
} attn__tar_entry;

/* Opens a gzip-compressed tar. ATTN_ERR_IO when the file cannot be opened. */
attn_status attn__tar_open(attn__tar **t, const char *path, char *err, size_t err_size);
/* The same over n bytes in memory (not copied: data must outlive the reader); name is for messages. */
attn_status attn__tar_open_mem(attn__tar **t, const void *data, size_t n, const char *name, char *err,
                               size_t err_size);
/* Next entry: ATTN_OK with *done = 0 and e filled, or ATTN_OK with *done = 1 at the end of the archive. */
attn_status attn__tar_next(attn__tar *t, attn__tar_entry *e, int *done, char *err, size_t err_size);
/* Reads the whole content of the current entry into buf (at least e->size bytes). */
attn_status attn__tar_read(attn__tar *t, void *buf, size_t n, char *err, size_t err_size);
void        attn__tar_close(attn__tar *t);

/* Writer: a gzip-compressed ustar archive. Entries are written whole. */
typedef struct attn__tar_writer attn__tar_writer;
attn_status attn__tar_writer_open(attn__tar_writer **w, const char *path);
attn_status attn__tar_writer_add(attn__tar_writer *w, const char *name, char type, const void *data, size_t n);
attn_status attn__tar_writer_close(attn__tar_writer *w);   /* writes the end blocks and the gzip trailer */

#endif /* ATTN_DATA_TAR_H */
