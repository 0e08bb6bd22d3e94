/*
 * status.c — status strings and the library version.
 */
#include "attn.h"

const char *attn_version(void) {
#define ATTN_STR2(x) #x
#define ATTN_STR(x) ATTN_STR2(x)
    return ATTN_STR(ATTN_VERSION_MAJOR) "." ATTN_STR(ATTN_VERSION_MINOR) "." ATTN_STR(ATTN_VERSION_PATCH);
}

const char *attn_status_string(attn_status st) {
    switch (st) {
    case ATTN_OK:              return "ok";
    case ATTN_ERR_NULL:        return "a required pointer is NULL";
    case ATTN_ERR_SIZE:        return "a size is zero, negative or too large";
    case ATTN_ERR_SHAPE:       return "shapes do not agree";
    case ATTN_ERR_STRIDE:      return "invalid stride";
    case ATTN_ERR_WORKSPACE:   return "workspace missing or too small";
    case ATTN_ERR_ARG:         return "argument out of range";
    case ATTN_ERR_NOMEM:       return "out of memory";
    case ATTN_ERR_IO:          return "input/output error";
    case ATTN_ERR_FORMAT:      return "file truncated, corrupt or of the wrong kind";
    case ATTN_ERR_UNSUPPORTED: return "not supported on this machine";
    }
    return "unknown status";
}
