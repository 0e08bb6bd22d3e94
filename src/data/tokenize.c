/*
 * tokenize.c — the IMDB tokenizer (lowercase words of letters, digits and apostrophes, "<br />" as a
 * space, strict UTF-8), the vocabulary's lookup index, and the encoding of one text into T ids
 * (start id, words, last T kept, left-padded). The rules are written out in include/attn/data.h.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Length of a "<br />"-like tag at p (n bytes left), or 0: "<br", optional spaces, optional '/', '>'. */
static size_t br_tag(const unsigned char *p, size_t n) {
    if (n < 4 || p[0] != '<' || (p[1] | 0x20) != 'b' || (p[2] | 0x20) != 'r') return 0;
    size_t i = 3;
    while (i < n && p[i] == ' ') i++;
    if (i < n && p[i] == '/') i++;
    if (i < n && p[i] == '>') return i + 1;
    return 0;
}

attn_status attn_imdb_tokenize(const char *text, size_t len, attn_imdb_token_fn fn, void *ctx,
                               size_t *bad_offset) {
    if ((!text && len) || !fn) return ATTN_ERR_NULL;
    const unsigned char *p = (const unsigned char *)text;
    char word[ATTN_IMDB_MAX_WORD];
    size_t wl = 0;
#define FLUSH()                                                     \
    do {                                                            \
        if (wl) {                                                   \
            if (fn(ctx, word, wl)) return ATTN_ERR_ARG;             \
            wl = 0;                                                 \
        }                                                           \
    } while (0)
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '\'') {
                if (wl < ATTN_IMDB_MAX_WORD) word[wl++] = (char)c;
                i++;
            } else {
                size_t tag = c == '<' ? br_tag(p + i, len - i) : 0;
                FLUSH();
                i += tag ? tag : 1;
            }
            continue;
        }
        uint32_t cp;
        size_t k = attn__utf8_decode((const char *)p + i, len - i, &cp);
        if (!k) {
            if (bad_offset) *bad_offset = i;
            return ATTN_ERR_FORMAT;
        }
        i += k;
        if (cp == 0x2018 || cp == 0x2019 || cp == 0xB4) {
            if (wl < ATTN_IMDB_MAX_WORD) word[wl++] = '\'';
        } else if (cp >= 0xC0 && cp <= 0x24F && cp != 0xD7 && cp != 0xF7) {
            if (cp <= 0xDE) cp += 0x20;                /* Latin-1 capitals to small letters */
            if (wl + 2 <= ATTN_IMDB_MAX_WORD) {
                word[wl++] = (char)(0xC0 | (cp >> 6));
                word[wl++] = (char)(0x80 | (cp & 0x3F));
            }
        } else {
            FLUSH();
        }
    }
    FLUSH();
#undef FLUSH
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Vocabulary index: FNV-1a over the bytes, open addressing with linear probing.
 */
static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void attn_imdb_vocab_free(attn_imdb_vocab *v) {
    if (!v) return;
    free(v->words);
    free(v->blob);
    free(v->hash);
    memset(v, 0, sizeof *v);
}

attn_status attn_imdb_vocab_from_blob(attn_imdb_vocab *v, const char *blob, size_t size, int V) {
    if (!v || !blob) return ATTN_ERR_NULL;
    memset(v, 0, sizeof *v);
    if (V <= ATTN_IMDB_FIRST_WORD || V > (1 << 24) || size == 0 || blob[size - 1] != '\0') return ATTN_ERR_FORMAT;
    /* V words are V NULs: checked before anything is allocated for V (a corrupt count must not cost
     * hundreds of megabytes). */
    size_t words = 0;
    for (const char *p = blob, *end = blob + size; (p = memchr(p, '\0', (size_t)(end - p))) != NULL; p++) words++;
    if (words != (size_t)V) return ATTN_ERR_FORMAT;
    v->blob = malloc(size);
    v->words = malloc(sizeof(char *) * (size_t)V);
    size_t hs = 1;
    while (hs < 2 * (size_t)V) hs <<= 1;
    v->hash = malloc(sizeof(int32_t) * hs);
    if (!v->blob || !v->words || !v->hash) {
        attn_imdb_vocab_free(v);
        return ATTN_ERR_NOMEM;
    }
    memcpy(v->blob, blob, size);
    v->blob_size = size;
    v->hash_size = hs;
    v->V = V;
    for (size_t i = 0; i < hs; i++) v->hash[i] = -1;
    size_t off = 0;
    for (int id = 0; id < V; id++) {
        if (off >= size) {
            attn_imdb_vocab_free(v);
            return ATTN_ERR_FORMAT;                  /* fewer than V words */
        }
        char *w = v->blob + off;
        size_t n = strlen(w);
        v->words[id] = w;
        off += n + 1;
        if (id < ATTN_IMDB_FIRST_WORD) continue;
        if (n == 0 || n > ATTN_IMDB_MAX_WORD) {
            attn_imdb_vocab_free(v);
            return ATTN_ERR_FORMAT;
        }
        size_t slot = fnv1a(w, n) & (hs - 1);
        while (v->hash[slot] >= 0) {
            if (strcmp(v->words[v->hash[slot]], w) == 0) {   /* a word twice */
                attn_imdb_vocab_free(v);
                return ATTN_ERR_FORMAT;
            }
            slot = (slot + 1) & (hs - 1);
        }
        v->hash[slot] = id;
    }
    if (off != size) {
        attn_imdb_vocab_free(v);
        return ATTN_ERR_FORMAT;                      /* more than V words */
    }
    v->crc = (uint32_t)crc32(0L, (const Bytef *)v->blob, (uInt)size);
    return ATTN_OK;
}

int32_t attn_imdb_vocab_lookup(const attn_imdb_vocab *v, const char *word, size_t len) {
    if (!v || !v->hash || !word) return ATTN_IMDB_OOV;
    size_t slot = fnv1a(word, len) & (v->hash_size - 1);
    while (v->hash[slot] >= 0) {
        const char *w = v->words[v->hash[slot]];
        size_t k = 0;                /* w is word when they agree on len bytes, none of them NUL, and w ends */
        while (k < len && w[k] != '\0' && w[k] == word[k]) k++;
        if (k == len && w[len] == '\0') return v->hash[slot];
        slot = (slot + 1) & (v->hash_size - 1);
    }
    return ATTN_IMDB_OOV;
}

/* ---------------------------------------------------------------------------------------------------
 * Encoding one text: a ring of the last T ids of [start, words...].
 */
typedef struct {
    const attn_imdb_vocab *v;
    int32_t *ring;               /* (T) */
    int T;
    int64_t n;                   /* ids pushed, start included */
} encode_ctx;

static int encode_word(void *ctx, const char *w, size_t len) {
    encode_ctx *e = ctx;
    e->ring[e->n % e->T] = attn_imdb_vocab_lookup(e->v, w, len);
    e->n++;
    return 0;
}

attn_status attn_imdb_encode_text(int32_t *ids, int T, const attn_imdb_vocab *v, const char *text, size_t len,
                                  int *n_words, size_t *bad_offset) {
    if (!ids || !v || (!text && len)) return ATTN_ERR_NULL;
    if (T < 1 || T > (1 << 20)) return ATTN_ERR_SIZE;
    int32_t *ring = malloc(sizeof(int32_t) * (size_t)T);
    if (!ring) return ATTN_ERR_NOMEM;
    encode_ctx e = {v, ring, T, 1};
    ring[0] = ATTN_IMDB_START;
    attn_status st = attn_imdb_tokenize(text, len, encode_word, &e, bad_offset);
    if (st == ATTN_OK && e.n == 1) st = ATTN_ERR_ARG;
    if (st == ATTN_OK) {
        int64_t L = e.n;
        if (L >= T) {
            for (int j = 0; j < T; j++) ids[j] = ring[(L - T + j) % T];
        } else {
            int pad = T - (int)L;
            for (int j = 0; j < pad; j++) ids[j] = ATTN_IMDB_PAD;
            for (int j = 0; j < (int)L; j++) ids[pad + j] = ring[j];
        }
        if (n_words) *n_words = (int)((L - 1) > 0x7fffffff ? 0x7fffffff : (L - 1));
    }
    free(ring);
    return st;
}
