/*
 * imdb.c — the aclImdb loader: finds the data, streams the .tar.gz once (or walks the folder), tokenizes
 * every review into interned word numbers, sorts each split into its canonical order, builds the
 * vocabulary from the training reviews and encodes both splits as (n,T) ids. Also the binary cache.
 *
 * Memory: the raw text is never held whole; one review at a time is read, tokenized and dropped. What
 * stays is one uint32 per token (about 12 M of them for the full data), the interned words, and the
 * encoded result.
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "data/tar.h"
#include "io/files.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

void attn_imdb_options_default(attn_imdb_options *o) {
    if (!o) return;
    o->V = 20000;
    o->T = 64;
    o->limit = 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Finding the data.
 */
static int is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}
static int is_file(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}
static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}
static int is_imdb_dir(const char *p) {
    char a[4096], b[4096];
    if (snprintf(a, sizeof a, "%s/train", p) >= (int)sizeof a) return 0;
    if (snprintf(b, sizeof b, "%s/test", p) >= (int)sizeof b) return 0;
    return is_dir(a) && is_dir(b);
}

attn_status attn_imdb_locate(const char *path, char *found, size_t found_size, char *err, size_t err_size) {
    if (!path || !found || !found_size) return ATTN_ERR_NULL;
    if (is_file(path) && (ends_with(path, ".tar.gz") || ends_with(path, ".tgz"))) {
        snprintf(found, found_size, "%s", path);
        return ATTN_OK;
    }
    if (is_dir(path) && is_imdb_dir(path)) {
        snprintf(found, found_size, "%s", path);
        return ATTN_OK;
    }
    static const char *const names[] = {"aclImdb_v1_labeled.tar.gz", "aclImdb_v1.tar.gz", "aclImdb"};
    char cand[4096];
    for (int i = 0; i < 3; i++) {
        snprintf(cand, sizeof cand, "%s/%s", path, names[i]);
        if (i < 2 ? is_file(cand) : (is_dir(cand) && is_imdb_dir(cand))) {
            snprintf(found, found_size, "%s", cand);
            return ATTN_OK;
        }
    }
    attn__set_err(err, err_size, "no IMDB data at %s: looked for %s itself (a .tar.gz or a folder with train/ and "
            "test/), %s/aclImdb_v1_labeled.tar.gz, %s/aclImdb_v1.tar.gz and %s/aclImdb/", path, path, path,
            path, path);
    return ATTN_ERR_IO;
}

/* ---------------------------------------------------------------------------------------------------
 * Interned words: every distinct token gets a number; reviews are stored as runs of those numbers.
 */
typedef struct {
    char *arena;                 /* words, NUL-terminated, back to back */
    size_t arena_len, arena_cap;
    uint64_t *off;               /* (n) offset of word i in arena */
    uint32_t *len;               /* (n) */
    uint32_t n, cap;
    int32_t *hash;               /* hash_size slots, -1 empty */
    size_t hash_size;
} intern_table;

typedef struct {
    int split;                   /* 0 train, 1 test */
    int label;                   /* 0 neg, 1 pos */
    int64_t id;
    uint64_t tok_begin;          /* into tokens */
    uint32_t n_tok;
} review;

typedef struct {
    intern_table words;
    uint32_t *tokens;            /* all reviews' word numbers, back to back */
    uint64_t n_tokens, cap_tokens;
    review *reviews;
    size_t n_reviews, cap_reviews;
    int failed_nomem;
} loader;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int intern_grow_hash(intern_table *t) {
    size_t hs = t->hash_size ? t->hash_size * 2 : 1 << 10;
    int32_t *h = malloc(sizeof(int32_t) * hs);
    if (!h) return -1;
    for (size_t i = 0; i < hs; i++) h[i] = -1;
    for (uint32_t i = 0; i < t->n; i++) {
        size_t s = fnv1a(t->arena + t->off[i], t->len[i]) & (hs - 1);
        while (h[s] >= 0) s = (s + 1) & (hs - 1);
        h[s] = (int32_t)i;
    }
    free(t->hash);
    t->hash = h;
    t->hash_size = hs;
    return 0;
}

/* The number of word w (len bytes), adding it when new; -1 when out of memory. */
static int64_t intern(intern_table *t, const char *w, size_t len) {
    if ((size_t)t->n * 2 >= t->hash_size && intern_grow_hash(t) != 0) return -1;
    size_t s = fnv1a(w, len) & (t->hash_size - 1);
    while (t->hash[s] >= 0) {
        uint32_t i = (uint32_t)t->hash[s];
        if (t->len[i] == len && memcmp(t->arena + t->off[i], w, len) == 0) return i;
        s = (s + 1) & (t->hash_size - 1);
    }
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 1 << 9;
        uint64_t *o = realloc(t->off, sizeof(uint64_t) * cap);
        if (!o) return -1;
        t->off = o;
        uint32_t *l = realloc(t->len, sizeof(uint32_t) * cap);
        if (!l) return -1;
        t->len = l;
        t->cap = cap;
    }
    if (t->arena_len + len + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap * 2 : 1 << 12;
        while (cap < t->arena_len + len + 1) cap *= 2;
        char *a = realloc(t->arena, cap);
        if (!a) return -1;
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, w, len);
    t->arena[t->arena_len + len] = '\0';
    t->off[t->n] = t->arena_len;
    t->len[t->n] = (uint32_t)len;
    t->arena_len += len + 1;
    t->hash[s] = (int32_t)t->n;
    return t->n++;
}

static void loader_free(loader *L) {
    free(L->words.arena);
    free(L->words.off);
    free(L->words.len);
    free(L->words.hash);
    free(L->tokens);
    free(L->reviews);
    memset(L, 0, sizeof *L);
}

static int on_token(void *ctx, const char *w, size_t len) {
    loader *L = ctx;
    int64_t id = intern(&L->words, w, len);
    if (id < 0) { L->failed_nomem = 1; return 1; }
    if (L->n_tokens == L->cap_tokens) {
        uint64_t cap = L->cap_tokens ? L->cap_tokens * 2 : 1 << 12;
        uint32_t *p = realloc(L->tokens, sizeof(uint32_t) * cap);
        if (!p) { L->failed_nomem = 1; return 1; }
        L->tokens = p;
        L->cap_tokens = cap;
    }
    L->tokens[L->n_tokens++] = (uint32_t)id;
    return 0;
}

/* Parses ".../<split>/<pos|neg>/<id>_<rating>.txt". Returns 1 with split, label, id when it is a review. */
static int parse_review_name(const char *name, int *split, int *label, int64_t *id) {
    const char *parts[3] = {NULL, NULL, NULL};
    size_t lens[3] = {0, 0, 0};
    /* the last three path components */
    const char *end = name + strlen(name);
    for (int k = 2; k >= 0; k--) {
        const char *p = end;
        while (p > name && p[-1] != '/') p--;
        parts[k] = p;
        lens[k] = (size_t)(end - p);
        if (p == name) {
            if (k > 0) return 0;
            break;
        }
        end = p - 1;
    }
    if (lens[0] == 5 && memcmp(parts[0], "train", 5) == 0) *split = 0;
    else if (lens[0] == 4 && memcmp(parts[0], "test", 4) == 0) *split = 1;
    else return 0;
    if (lens[1] == 3 && memcmp(parts[1], "pos", 3) == 0) *label = 1;
    else if (lens[1] == 3 && memcmp(parts[1], "neg", 3) == 0) *label = 0;
    else return 0;
    const char *f = parts[2];
    size_t n = lens[2];
    if (n < 7 || memcmp(f + n - 4, ".txt", 4) != 0) return 0;
    size_t i = 0;
    int64_t v = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '9'; i++) {
        if (v > 1000000000) return 0;
        v = v * 10 + (f[i] - '0');
    }
    if (i == 0 || i >= n || f[i] != '_') return 0;
    size_t j = i + 1, r = 0;
    for (; j < n - 4 && f[j] >= '0' && f[j] <= '9'; j++) r++;
    if (r == 0 || j != n - 4) return 0;
    *id = v;
    return 1;
}

/* Tokenizes one review's text into the loader; name is for messages. */
static attn_status add_review(loader *L, const char *where, const char *text, size_t n, int split, int label,
                              int64_t id, char *err, size_t es) {
    if (L->n_reviews == L->cap_reviews) {
        size_t cap = L->cap_reviews ? L->cap_reviews * 2 : 64;
        review *r = realloc(L->reviews, sizeof(review) * cap);
        if (!r) return ATTN_ERR_NOMEM;
        L->reviews = r;
        L->cap_reviews = cap;
    }
    review *r = &L->reviews[L->n_reviews];
    r->split = split;
    r->label = label;
    r->id = id;
    r->tok_begin = L->n_tokens;
    size_t bad = 0;
    attn_status st = attn_imdb_tokenize(text, n, on_token, L, &bad);
    if (L->failed_nomem) return ATTN_ERR_NOMEM;
    if (st == ATTN_ERR_FORMAT) {
        attn__set_err(err, es, "%s: byte %zu: invalid UTF-8 (expected UTF-8 text)", where, bad);
        return st;
    }
    if (st != ATTN_OK) return st;
    uint64_t k = L->n_tokens - r->tok_begin;
    if (k == 0) {
        attn__set_err(err, es, "%s: empty review (no word in its %zu bytes; expected at least one)", where, n);
        return ATTN_ERR_FORMAT;
    }
    if (k > 0xffffffffu) return ATTN_ERR_SIZE;
    r->n_tok = (uint32_t)k;
    L->n_reviews++;
    return ATTN_OK;
}

static attn_status load_tar(loader *L, const char *path, char *err, size_t es) {
    attn__tar *t;
    attn_status st = attn__tar_open(&t, path, err, es);
    if (st != ATTN_OK) return st;
    char *buf = NULL;                /* grown to the largest review so far */
    size_t buf_cap = 0;
    for (;;) {
        attn__tar_entry e;
        int done;
        st = attn__tar_next(t, &e, &done, err, es);
        if (st != ATTN_OK || done) break;
        int split, label;
        int64_t id;
        if (e.type != '0' || !parse_review_name(e.name, &split, &label, &id)) continue;
        char where[1200];
        snprintf(where, sizeof where, "%s: entry %s (tar offset %llu)", path, e.name, (unsigned long long)e.offset);
        if (e.size > ATTN_IMDB_MAX_REVIEW) {
            attn__set_err(err, es, "%s: %llu bytes, more than the %d a review may have", where,
                    (unsigned long long)e.size, ATTN_IMDB_MAX_REVIEW);
            st = ATTN_ERR_FORMAT;
            break;
        }
        if (e.size > buf_cap) {
            size_t cap = buf_cap ? buf_cap : 4096;
            while (cap < e.size) cap *= 2;
            char *b = realloc(buf, cap);
            if (!b) { st = ATTN_ERR_NOMEM; break; }
            buf = b;
            buf_cap = cap;
        }
        st = attn__tar_read(t, buf, (size_t)e.size, err, es);
        if (st != ATTN_OK) break;
        st = add_review(L, where, buf, (size_t)e.size, split, label, id, err, es);
        if (st != ATTN_OK) break;
    }
    free(buf);
    attn__tar_close(t);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads f to its end, or to one byte past ATTN_IMDB_MAX_REVIEW, into *buf (grown by doubling from 4 KB,
 * *cap bytes); *got = bytes read. */
static attn_status read_review(FILE *f, char **buf, size_t *cap, size_t *got) {
    *got = 0;
    for (;;) {
        if (*got == *cap) {
            if (*cap > ATTN_IMDB_MAX_REVIEW) return ATTN_OK;
            size_t c = *cap ? *cap * 2 : 4096;
            if (c > ATTN_IMDB_MAX_REVIEW + 1) c = ATTN_IMDB_MAX_REVIEW + 1;
            char *b = realloc(*buf, c);
            if (!b) return ATTN_ERR_NOMEM;
            *buf = b;
            *cap = c;
        }
        size_t r = fread(*buf + *got, 1, *cap - *got, f);
        *got += r;
        if (*got < *cap) return ATTN_OK;              /* the end, or an error (ferror tells) */
    }
}

static attn_status load_dir(loader *L, const char *root, char *err, size_t es) {
    static const char *const splits[2] = {"train", "test"};
    static const char *const labels[2] = {"neg", "pos"};
    char *buf = NULL;                /* grown to the largest review so far */
    size_t buf_cap = 0;
    attn_status st = ATTN_OK;
    for (int s = 0; s < 2 && st == ATTN_OK; s++) {
        for (int l = 0; l < 2 && st == ATTN_OK; l++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s/%s", root, splits[s], labels[l]);
            DIR *d = opendir(dir);
            if (!d) {
                attn__set_err(err, es, "%s: cannot open folder: %s", dir, strerror(errno));
                st = ATTN_ERR_IO;
                break;
            }
            char **names = NULL;
            size_t n = 0, cap = 0;
            struct dirent *de;
            while ((de = readdir(d))) {
                if (!ends_with(de->d_name, ".txt")) continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 1024;
                    char **p = realloc(names, sizeof(char *) * cap);
                    if (!p) { st = ATTN_ERR_NOMEM; break; }
                    names = p;
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) { st = ATTN_ERR_NOMEM; break; }
                n++;
            }
            closedir(d);
            if (st == ATTN_OK && n) qsort(names, n, sizeof(char *), cmp_str);   /* names is NULL when n = 0 */
            for (size_t i = 0; i < n && st == ATTN_OK; i++) {
                char file[4400], rel[512];
                snprintf(file, sizeof file, "%s/%s", dir, names[i]);
                snprintf(rel, sizeof rel, "%s/%s/%s", splits[s], labels[l], names[i]);
                int split, label;
                int64_t id;
                if (!parse_review_name(rel, &split, &label, &id)) continue;
                const char *kind;
                FILE *f = attn__fopen_read(file, &kind);
                if (!f) {
                    if (kind) attn__set_err(err, es, "%s: expected a review (a regular file), found %s", file, kind);
                    else attn__set_err(err, es, "%s: cannot open: %s", file, strerror(errno));
                    st = ATTN_ERR_IO;
                    break;
                }
                size_t got = 0;
                st = read_review(f, &buf, &buf_cap, &got);
                int bad = ferror(f);
                fclose(f);
                if (st != ATTN_OK) {
                    break;
                } else if (bad) {
                    attn__set_err(err, es, "%s: read error", file);
                    st = ATTN_ERR_IO;
                } else if (got > ATTN_IMDB_MAX_REVIEW) {
                    attn__set_err(err, es, "%s: more than the %d bytes a review may have", file, ATTN_IMDB_MAX_REVIEW);
                    st = ATTN_ERR_FORMAT;
                } else {
                    st = add_review(L, file, buf, got, split, label, id, err, es);
                }
            }
            for (size_t i = 0; i < n; i++) free(names[i]);
            free(names);
        }
    }
    free(buf);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Canonical order, vocabulary, encoding.
 */
static int cmp_review(const void *pa, const void *pb) {
    const review *a = pa, *b = pb;
    if (a->split != b->split) return a->split - b->split;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return a->label - b->label;
}

/* Word a ranks before word b: higher count, then the bytes in memcmp order (a prefix first). */
static int rank_before(const intern_table *w, const uint64_t *count, uint32_t a, uint32_t b) {
    if (count[a] != count[b]) return count[a] > count[b];
    size_t la = w->len[a], lb = w->len[b];
    int c = memcmp(w->arena + w->off[a], w->arena + w->off[b], la < lb ? la : lb);
    if (c) return c < 0;
    return la < lb;
}

/* Merge sort of word numbers by rank (qsort has no context argument in C11; this keeps the loader
 * reentrant). tmp has room for n. */
static void rank_sort(uint32_t *v, uint32_t *tmp, size_t n, const intern_table *w, const uint64_t *count) {
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = rank_before(w, count, v[j], v[i]) ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof(uint32_t));
    }
}

static void encode_review(int32_t *ids, int T, const review *r, const uint32_t *tokens, const int32_t *map) {
    int64_t L = (int64_t)r->n_tok + 1;                      /* start + words */
    int64_t first = L > T ? L - T : 0;                       /* index into [start, words...] */
    int pad = L < T ? T - (int)L : 0;
    for (int j = 0; j < pad; j++) ids[j] = ATTN_IMDB_PAD;
    int j = pad;
    for (int64_t i = first; i < L; i++, j++)
        ids[j] = i == 0 ? ATTN_IMDB_START : map[tokens[r->tok_begin + (uint64_t)(i - 1)]];
}

void attn_imdb_free(attn_imdb_data *d) {
    if (!d) return;
    free(d->train.ids);
    free(d->train.labels);
    free(d->test.ids);
    free(d->test.labels);
    attn_imdb_vocab_free(&d->vocab);
    memset(d, 0, sizeof *d);
}

static void source_identity(const char *path, uint64_t *size, int64_t *mtime) {
    struct stat s;
    *size = 0;
    *mtime = 0;
    if (path && stat(path, &s) == 0) {
        *size = S_ISREG(s.st_mode) ? (uint64_t)s.st_size : 0;
        *mtime = (int64_t)s.st_mtime;
    }
}

attn_status attn_imdb_load(attn_imdb_data *d, const char *path, const attn_imdb_options *o,
                           char *err, size_t es) {
    if (!d || !path || !o) return ATTN_ERR_NULL;
    memset(d, 0, sizeof *d);
    if (o->V <= ATTN_IMDB_FIRST_WORD || o->V > (1 << 24) || o->T < 1 || o->T > 65536 || o->limit < 0)
        return ATTN_ERR_ARG;
    loader L;
    memset(&L, 0, sizeof L);
    attn_status st = is_dir(path) ? load_dir(&L, path, err, es) : load_tar(&L, path, err, es);
    if (st != ATTN_OK) {
        loader_free(&L);
        return st;
    }
    if (L.n_reviews) qsort(L.reviews, L.n_reviews, sizeof(review), cmp_review);   /* NULL when none */

    /* Split boundaries and --limit. */
    size_t n_split[2] = {0, 0};
    for (size_t i = 0; i < L.n_reviews; i++) n_split[L.reviews[i].split]++;
    for (int s = 0; s < 2; s++) {
        if (n_split[s] == 0) {
            attn__set_err(err, es, "%s: no %s review (expected files %s/{pos,neg}/<id>_<rating>.txt)", path,
                    s ? "test" : "train", s ? "test" : "train");
            loader_free(&L);
            return ATTN_ERR_FORMAT;
        }
    }
    for (size_t i = 1; i < L.n_reviews; i++) {
        const review *a = &L.reviews[i - 1], *b = &L.reviews[i];
        if (a->split == b->split && a->id == b->id && a->label == b->label) {
            attn__set_err(err, es, "%s: review %s/%s/%lld appears twice", path, a->split ? "test" : "train",
                    a->label ? "pos" : "neg", (long long)a->id);
            loader_free(&L);
            return ATTN_ERR_FORMAT;
        }
    }
    size_t use[2] = {n_split[0], n_split[1]};
    if (o->limit > 0)
        for (int s = 0; s < 2; s++)
            if (use[s] > (size_t)o->limit) use[s] = (size_t)o->limit;
    const review *split_begin[2] = {L.reviews, L.reviews + n_split[0]};

    /* Count the words of the training reviews in use; rank; map word numbers to ids. */
    uint32_t nw = L.words.n;
    uint64_t *count = calloc(nw ? nw : 1, sizeof(uint64_t));
    uint32_t *order = malloc(sizeof(uint32_t) * (nw ? nw : 1));
    int32_t *map = malloc(sizeof(int32_t) * (nw ? nw : 1));
    if (!count || !order || !map) {
        free(count); free(order); free(map);
        loader_free(&L);
        return ATTN_ERR_NOMEM;
    }
    for (size_t i = 0; i < use[0]; i++) {
        const review *r = &split_begin[0][i];
        for (uint32_t k = 0; k < r->n_tok; k++) count[L.tokens[r->tok_begin + k]]++;
    }
    uint32_t n_seen = 0;
    for (uint32_t i = 0; i < nw; i++)
        if (count[i]) order[n_seen++] = i;
    /* map doubles as the merge sort's scratch before it is filled */
    rank_sort(order, (uint32_t *)map, n_seen, &L.words, count);
    uint32_t n_keep = n_seen < (uint32_t)(o->V - ATTN_IMDB_FIRST_WORD) ? n_seen : (uint32_t)(o->V - ATTN_IMDB_FIRST_WORD);
    for (uint32_t i = 0; i < nw; i++) map[i] = ATTN_IMDB_OOV;
    for (uint32_t r = 0; r < n_keep; r++) map[order[r]] = ATTN_IMDB_FIRST_WORD + (int32_t)r;

    /* The vocabulary blob: reserved names, the kept words, then placeholders for ids that no word fills
     * (a tiny training set): "<unused:ID>". */
    int V = o->V;
    size_t blob_size = strlen("<pad>") + strlen("<start>") + strlen("<oov>") + 3;
    for (uint32_t r = 0; r < n_keep; r++) blob_size += L.words.len[order[r]] + 1;
    blob_size += (size_t)(V - ATTN_IMDB_FIRST_WORD - (int)n_keep) * 20;
    char *blob = malloc(blob_size);
    if (!blob) {
        free(count); free(order); free(map);
        loader_free(&L);
        return ATTN_ERR_NOMEM;
    }
    size_t off = 0;
    off += (size_t)sprintf(blob + off, "<pad>") + 1;
    off += (size_t)sprintf(blob + off, "<start>") + 1;
    off += (size_t)sprintf(blob + off, "<oov>") + 1;
    for (uint32_t r = 0; r < n_keep; r++) {
        memcpy(blob + off, L.words.arena + L.words.off[order[r]], L.words.len[order[r]] + 1);
        off += L.words.len[order[r]] + 1;
    }
    for (int id = ATTN_IMDB_FIRST_WORD + (int)n_keep; id < V; id++)
        off += (size_t)sprintf(blob + off, "<unused:%d>", id) + 1;
    st = attn_imdb_vocab_from_blob(&d->vocab, blob, off, V);
    free(blob);
    free(count);
    free(order);

    /* Encode both splits. */
    int T = o->T;
    d->T = T;
    attn_imdb_split *out[2] = {&d->train, &d->test};
    for (int s = 0; s < 2 && st == ATTN_OK; s++) {
        out[s]->n = (int)use[s];
        out[s]->ids = malloc(sizeof(int32_t) * use[s] * (size_t)T);
        out[s]->labels = malloc(sizeof(int32_t) * use[s]);
        if (!out[s]->ids || !out[s]->labels) {
            st = ATTN_ERR_NOMEM;
            break;
        }
        for (size_t i = 0; i < use[s]; i++) {
            const review *r = &split_begin[s][i];
            encode_review(out[s]->ids + i * (size_t)T, T, r, L.tokens, map);
            out[s]->labels[i] = r->label;
        }
    }
    free(map);
    loader_free(&L);
    if (st != ATTN_OK) {
        attn_imdb_free(d);
        return st;
    }
    source_identity(path, &d->source_size, &d->source_mtime);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Cache. Header (96 bytes, little-endian):
 *    0 magic "ATTNIMDB"   8 version u32   12 T u32   16 V u32   20 limit u32   24 n_train u32
 *   28 n_test u32   32 source_size u64   40 source_mtime i64   48 vocab_crc u32   52 reserved u32
 *   56 blob_size u64   64 payload_bytes u64   72 payload_crc u32   76 header_crc u32 (of bytes 0..75)
 *   80..95 zero.
 * Payload: vocabulary blob, train ids (n_train,T) i32, train labels (n_train) i32, test ids, test labels.
 */
#define CACHE_MAGIC "ATTNIMDB"
#define CACHE_VERSION 1u
#define CACHE_HEADER 96

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static int host_little_endian(void) {
    const uint32_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static uint32_t crc_update(uint32_t crc, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k;
        n -= k;
    }
    return crc;
}

attn_status attn_imdb_cache_save(const attn_imdb_data *d, const attn_imdb_options *o, const char *path,
                                 char *err, size_t es) {
    if (!d || !o || !path) return ATTN_ERR_NULL;
    if (!host_little_endian()) return ATTN_ERR_UNSUPPORTED;
    size_t T = (size_t)d->T;
    const void *parts[5] = {d->vocab.blob, d->train.ids, d->train.labels, d->test.ids, d->test.labels};
    size_t sizes[5] = {d->vocab.blob_size, sizeof(int32_t) * (size_t)d->train.n * T,
                       sizeof(int32_t) * (size_t)d->train.n, sizeof(int32_t) * (size_t)d->test.n * T,
                       sizeof(int32_t) * (size_t)d->test.n};
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    for (int i = 0; i < 5; i++) {
        crc = crc_update(crc, parts[i], sizes[i]);
        total += sizes[i];
    }
    unsigned char h[CACHE_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, CACHE_MAGIC, 8);
    put_u32(h + 8, CACHE_VERSION);
    put_u32(h + 12, (uint32_t)d->T);
    put_u32(h + 16, (uint32_t)d->vocab.V);
    put_u32(h + 20, (uint32_t)o->limit);
    put_u32(h + 24, (uint32_t)d->train.n);
    put_u32(h + 28, (uint32_t)d->test.n);
    put_u64(h + 32, d->source_size);
    put_u64(h + 40, (uint64_t)d->source_mtime);
    put_u32(h + 48, d->vocab.crc);
    put_u64(h + 56, d->vocab.blob_size);
    put_u64(h + 64, total);
    put_u32(h + 72, crc);
    put_u32(h + 76, (uint32_t)crc32(0L, h, 76));

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const char *kind = attn__not_replaceable(path);
    if (kind) {
        attn__set_err(err, es, "%s: exists and is %s, not a regular file: refusing to replace it (write to another path)", path, kind);
        return ATTN_ERR_IO;
    }
    FILE *f = attn__fopen_tmp(tmp, &kind);
    if (!f) {
        if (kind) attn__set_err(err, es, "%s: cannot create: it is %s, not a regular file", tmp, kind);
        else attn__set_err(err, es, "%s: cannot create: %s", tmp, strerror(errno));
        return ATTN_ERR_IO;
    }
    int ok = fwrite(h, 1, sizeof h, f) == sizeof h;
    for (int i = 0; i < 5 && ok; i++) ok = fwrite(parts[i], 1, sizes[i], f) == sizes[i];
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        attn__set_err(err, es, "%s: cannot write: %s", ok ? path : tmp, strerror(errno));
        remove(tmp);
        return ATTN_ERR_IO;
    }
    return ATTN_OK;
}

attn_status attn_imdb_cache_load(attn_imdb_data *d, const attn_imdb_options *o, const char *source,
                                 const char *path, char *err, size_t es) {
    if (!d || !o || !path) return ATTN_ERR_NULL;
    memset(d, 0, sizeof *d);
    if (!host_little_endian()) return ATTN_ERR_UNSUPPORTED;
    const char *kind;
    FILE *f = attn__fopen_read(path, &kind);
    if (!f) {
        if (kind) attn__set_err(err, es, "%s: offset 0: expected a cache file (a regular file), found %s", path, kind);
        else attn__set_err(err, es, "%s: cannot open: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    unsigned char h[CACHE_HEADER];
    attn_status st = ATTN_OK;
    size_t got = fread(h, 1, sizeof h, f);
    if (got != sizeof h) {
        attn__set_err(err, es, "%s: offset %zu: truncated cache header (expected %d bytes)", path, got, CACHE_HEADER);
        fclose(f);
        return ATTN_ERR_FORMAT;
    }
    if (memcmp(h, CACHE_MAGIC, 8) != 0) {
        attn__set_err(err, es, "%s: offset 0: not an attn IMDB cache (expected magic \"ATTNIMDB\")", path);
        fclose(f);
        return ATTN_ERR_FORMAT;
    }
    if (get_u32(h + 76) != (uint32_t)crc32(0L, h, 76)) {
        attn__set_err(err, es, "%s: offset 76: header checksum mismatch (corrupt cache)", path);
        fclose(f);
        return ATTN_ERR_FORMAT;
    }
    uint32_t version = get_u32(h + 8), T = get_u32(h + 12), V = get_u32(h + 16), limit = get_u32(h + 20);
    uint32_t ntr = get_u32(h + 24), nte = get_u32(h + 28);
    uint64_t src_size = get_u64(h + 32);
    int64_t src_mtime = (int64_t)get_u64(h + 40);
    uint32_t vcrc = get_u32(h + 48);
    uint64_t blob_size = get_u64(h + 56), total = get_u64(h + 64);
    uint32_t pcrc = get_u32(h + 72);
    if (version != CACHE_VERSION) {
        attn__set_err(err, es, "%s: offset 8: cache version %u, expected %u (stale cache)", path, version, CACHE_VERSION);
        fclose(f);
        return ATTN_ERR_ARG;
    }
    if ((int)T != o->T || (int)V != o->V || (int)limit != o->limit) {
        attn__set_err(err, es, "%s: cache made for maxlen %u, vocabulary %u, limit %u; expected %d, %d, %d (stale cache)",
                path, T, V, limit, o->T, o->V, o->limit);
        fclose(f);
        return ATTN_ERR_ARG;
    }
    if (source) {
        uint64_t s;
        int64_t m;
        source_identity(source, &s, &m);
        if (s != src_size || m != src_mtime) {
            attn__set_err(err, es, "%s: cache made from a source of %llu bytes, mtime %lld; %s has %llu bytes, mtime "
                    "%lld (stale cache)", path, (unsigned long long)src_size, (long long)src_mtime, source,
                    (unsigned long long)s, (long long)m);
            fclose(f);
            return ATTN_ERR_ARG;
        }
    }
    uint64_t want = blob_size + 4ull * ((uint64_t)ntr * T + ntr + (uint64_t)nte * T + nte);
    if (T == 0 || ntr == 0 || nte == 0 || want != total || blob_size > (256u << 20) || total > (4ull << 30)) {
        attn__set_err(err, es, "%s: offset 24: inconsistent sizes in the cache header (corrupt cache)", path);
        fclose(f);
        return ATTN_ERR_FORMAT;
    }
    /* The header's sizes against the file's before anything is allocated for them. */
    struct stat fs;
    uint64_t have = fstat(fileno(f), &fs) == 0 ? (uint64_t)fs.st_size : 0, whole = CACHE_HEADER + total;
    if (have != whole) {
        if (have < whole)
            attn__set_err(err, es, "%s: offset %llu: truncated cache: expected %llu bytes (the header and the %llu "
                    "payload bytes it promises), the file has %llu", path, (unsigned long long)have,
                    (unsigned long long)whole, (unsigned long long)total, (unsigned long long)have);
        else
            attn__set_err(err, es, "%s: offset %llu: trailing bytes after the cache payload (expected %llu bytes, the "
                    "file has %llu)", path, (unsigned long long)whole, (unsigned long long)whole,
                    (unsigned long long)have);
        fclose(f);
        return ATTN_ERR_FORMAT;
    }
    char *blob = malloc(blob_size ? (size_t)blob_size : 1);
    d->T = (int)T;
    d->train.n = (int)ntr;
    d->test.n = (int)nte;
    d->train.ids = malloc(4 * (size_t)ntr * T);
    d->train.labels = malloc(4 * (size_t)ntr);
    d->test.ids = malloc(4 * (size_t)nte * T);
    d->test.labels = malloc(4 * (size_t)nte);
    if (!blob || !d->train.ids || !d->train.labels || !d->test.ids || !d->test.labels) {
        free(blob);
        fclose(f);
        attn_imdb_free(d);
        return ATTN_ERR_NOMEM;
    }
    void *parts[5] = {blob, d->train.ids, d->train.labels, d->test.ids, d->test.labels};
    size_t sizes[5] = {(size_t)blob_size, 4 * (size_t)ntr * T, 4 * (size_t)ntr, 4 * (size_t)nte * T, 4 * (size_t)nte};
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    uint64_t at = CACHE_HEADER;
    for (int i = 0; i < 5; i++) {
        size_t g = fread(parts[i], 1, sizes[i], f);
        if (g != sizes[i]) {
            attn__set_err(err, es, "%s: offset %llu: truncated cache (expected %llu payload bytes)", path,
                    (unsigned long long)(at + g), (unsigned long long)total);
            st = ATTN_ERR_FORMAT;
            break;
        }
        crc = crc_update(crc, parts[i], sizes[i]);
        at += g;
    }
    if (st == ATTN_OK && fgetc(f) != EOF) {
        attn__set_err(err, es, "%s: offset %llu: trailing bytes after the cache payload", path, (unsigned long long)at);
        st = ATTN_ERR_FORMAT;
    }
    fclose(f);
    if (st == ATTN_OK && crc != pcrc) {
        attn__set_err(err, es, "%s: payload checksum mismatch (stored %08x, computed %08x: corrupt cache)", path, pcrc, crc);
        st = ATTN_ERR_FORMAT;
    }
    if (st == ATTN_OK) {
        st = attn_imdb_vocab_from_blob(&d->vocab, blob, (size_t)blob_size, (int)V);
        if (st != ATTN_OK || d->vocab.crc != vcrc) {
            attn__set_err(err, es, "%s: offset %d: the vocabulary does not parse or its checksum differs (corrupt cache)",
                    path, CACHE_HEADER);
            st = ATTN_ERR_FORMAT;
        }
    }
    free(blob);
    for (int s = 0; s < 2 && st == ATTN_OK; s++) {
        const attn_imdb_split *sp = s ? &d->test : &d->train;
        for (size_t i = 0; i < (size_t)sp->n * T; i++)
            if (sp->ids[i] < 0 || (uint32_t)sp->ids[i] >= V) {
                attn__set_err(err, es, "%s: %s id %zu is %d, outside [0,%u) (corrupt cache)", path, s ? "test" : "train",
                        i, sp->ids[i], V);
                st = ATTN_ERR_FORMAT;
                break;
            }
        for (int i = 0; i < sp->n && st == ATTN_OK; i++)
            if (sp->labels[i] != 0 && sp->labels[i] != 1) {
                attn__set_err(err, es, "%s: %s label %d is %d, expected 0 or 1 (corrupt cache)", path,
                        s ? "test" : "train", i, sp->labels[i]);
                st = ATTN_ERR_FORMAT;
            }
    }
    if (st != ATTN_OK) {
        attn_imdb_free(d);
        return st;
    }
    d->source_size = src_size;
    d->source_mtime = src_mtime;
    return ATTN_OK;
}
