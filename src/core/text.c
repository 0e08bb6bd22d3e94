/*
 * text.c — the small text helpers the loaders and pictures share: formatting an error message into a
 * caller's buffer, and decoding UTF-8 strictly.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

void attn__set_err(char *err, size_t err_size, const char *fmt, ...) {
    if (!err || err_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

size_t attn__utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    if (n == 0) return 0;
    if (p[0] < 0x80) { *cp = p[0]; return 1; }
    size_t len;
    uint32_t v, min;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)      { len = 2; v = p[0] & 0x1F; min = 0x80; }
    else if (p[0] >= 0xE0 && p[0] <= 0xEF) { len = 3; v = p[0] & 0x0F; min = 0x800; }
    else if (p[0] >= 0xF0 && p[0] <= 0xF4) { len = 4; v = p[0] & 0x07; min = 0x10000; }
    else return 0;                      /* a continuation byte, an overlong C0/C1 lead, or > F4 */
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;   /* overlong, too big, surrogate */
    *cp = v;
    return len;
}
