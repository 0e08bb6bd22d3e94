/*
 * safetensors_internal.h — internal: the safetensors parser over bytes already in memory, which
 * attn_st_read uses after reading the file and the fuzz target calls directly. Never installed.
 */
#ifndef ATTN_IO_SAFETENSORS_INTERNAL_H
#define ATTN_IO_SAFETENSORS_INTERNAL_H

#include "attn.h"

#include <stddef.h>

/* Parses and checks size bytes at buf, which must be a malloc'd block of at least size + 8 bytes (room to
 * align the data area) and is owned by f afterwards, whatever the result (attn_st_free frees it). path
 * names the bytes in messages. Same checks and errors as attn_st_read. */
attn_status attn__st_parse(attn_st_file *f, unsigned char *buf, size_t size, const char *path, char *err,
                           size_t err_size);

#endif /* ATTN_IO_SAFETENSORS_INTERNAL_H */
