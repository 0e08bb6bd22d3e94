/*
 * fra.c — the text side of the d2l English→French experiment: reading fra.txt pairs with d2l's
 * preprocessing, vocabularies (min frequency, reserved tokens, d2l's order), encoding lines to padded id
 * arrays with valid lengths, and BLEU as the book defines it.
 *
 * Everything works on UTF-8 and checks it: a line that is not valid UTF-8, has no tab or has an empty
 * side is refused with its line number.
 */
#define _POSIX_C_SOURCE 200809L

#include "internal.h"
#include "viz/heatmap_internal.h"     /* attn__utf8_next */
#include "io/files.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Preprocessing.
 */

/* Lowercase of one code point: ASCII, Latin-1 and Latin Extended-A capitals; others unchanged. */
static uint32_t lower_cp(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c == 0x178) return 0xFF;                                   /* Ÿ */
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return (c & 1) ? c : c + 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    return c;
}

static size_t put_utf8(char *o, uint32_t c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | (c >> 6 & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | (c >> 12 & 0x3F));
    o[2] = (char)(0x80 | (c >> 6 & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* d2l's preprocess_nmt on one string. prev_nonspace: whether a non-space character precedes the string
 * in d2l's whole-text view (the tab before the French side, the newline before a line). */
static attn_status preprocess(const char *in, size_t len, char **out, int prev_nonspace) {
    char *o = malloc(len * 2 + 1);        /* at most one space added per byte; case changes keep lengths */
    if (!o) return ATTN_ERR_NOMEM;
    size_t i = 0, k = 0;
    int prev_ok = prev_nonspace;          /* a character exists before and it is not a space */
    while (i < len) {
        uint32_t c;
        int used = attn__utf8_next(in + i, len - i, &c);
        if (c == 0xFFFD && used == 1) { free(o); return ATTN_ERR_FORMAT; }   /* invalid UTF-8 */
        i += (size_t)used;
        if (c == 0x202F || c == 0xA0) c = ' ';
        c = lower_cp(c);
        if ((c == ',' || c == '.' || c == '!' || c == '?') && prev_ok) o[k++] = ' ';
        k += put_utf8(o + k, c);
        prev_ok = c != ' ';
    }
    o[k] = 0;
    *out = o;
    return ATTN_OK;
}

attn_status attn_nmt_preprocess(const char *in, size_t len, char **out) {
    if (!in || !out) return ATTN_ERR_NULL;
    *out = NULL;
    return preprocess(in, len, out, 0);
}

/* ---------------------------------------------------------------------------------------------------
 * Reading pairs.
 */
void attn_nmt_pairs_free(attn_nmt_pairs *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) { free(p->src[i]); free(p->tgt[i]); }
    free(p->src); free(p->tgt); free(p->line);
    memset(p, 0, sizeof *p);
}

attn_status attn_nmt_read(attn_nmt_pairs *p, const char *path, int first, int last,
                          char *err, size_t err_size) {
    if (!p || !path) return ATTN_ERR_NULL;
    memset(p, 0, sizeof *p);
    if (first < 0 || (last >= 0 && last < first)) { attn__set_err(err, err_size, "%s: bad line range", path); return ATTN_ERR_ARG; }
    const char *kind;
    FILE *f = attn__fopen_read(path, &kind);
    if (!f) {
        if (kind) attn__set_err(err, err_size, "%s: expected a text file (a regular file), found %s", path, kind);
        else attn__set_err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    attn_status st = ATTN_OK;
    size_t cap = 0;
    char *buf = NULL;
    ssize_t got;
    long lineno = -1;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        lineno++;
        if (lineno < first) continue;
        if (last >= 0 && lineno > last) break;
        size_t len = (size_t)got;
        int had_newline = len && buf[len - 1] == '\n';
        if (had_newline) len--;
        if (len && buf[len - 1] == '\r') len--;
        if (len == 0 && !had_newline) break;                       /* the final empty line */
        if (memchr(buf, 0, len)) {
            attn__set_err(err, err_size, "%s: line %ld: NUL byte in the text", path, lineno + 1);
            st = ATTN_ERR_FORMAT; break;
        }
        char *tab = memchr(buf, '\t', len);
        if (!tab) {
            attn__set_err(err, err_size, "%s: line %ld: no tab between the English and French sides", path, lineno + 1);
            st = ATTN_ERR_FORMAT; break;
        }
        size_t ls = (size_t)(tab - buf), lt = len - ls - 1;
        char *tab2 = memchr(tab + 1, '\t', lt);
        if (tab2) lt = (size_t)(tab2 - tab - 1);                   /* later columns (attribution) ignored */
        if (ls == 0 || lt == 0) {
            attn__set_err(err, err_size, "%s: line %ld: empty %s side", path, lineno + 1, ls == 0 ? "English" : "French");
            st = ATTN_ERR_FORMAT; break;
        }
        char *s = NULL, *t = NULL;
        attn_status a = preprocess(buf, ls, &s, lineno > 0);
        attn_status b = a == ATTN_OK ? preprocess(tab + 1, lt, &t, 1) : a;
        if (a != ATTN_OK || b != ATTN_OK) {
            free(s); free(t);
            st = a != ATTN_OK ? a : b;
            if (st == ATTN_ERR_FORMAT) attn__set_err(err, err_size, "%s: line %ld: invalid UTF-8", path, lineno + 1);
            else attn__set_err(err, err_size, "%s: out of memory", path);
            break;
        }
        if (p->n % 256 == 0) {
            size_t nc = (size_t)p->n + 256;
            char **ns = realloc(p->src, nc * sizeof *ns), **nt = ns ? realloc(p->tgt, nc * sizeof *nt) : NULL;
            int *nl = nt ? realloc(p->line, nc * sizeof *nl) : NULL;
            if (ns) p->src = ns;
            if (nt) p->tgt = nt;
            if (nl) p->line = nl;
            if (!ns || !nt || !nl) { free(s); free(t); st = ATTN_ERR_NOMEM; attn__set_err(err, err_size, "%s: out of memory", path); break; }
        }
        p->src[p->n] = s; p->tgt[p->n] = t; p->line[p->n] = (int)lineno;
        p->n++;
    }
    if (st == ATTN_OK && ferror(f)) { attn__set_err(err, err_size, "%s: read error", path); st = ATTN_ERR_IO; }
    free(buf);
    fclose(f);
    if (st == ATTN_OK && p->n == 0) { attn__set_err(err, err_size, "%s: no pairs in lines %d..%d", path, first + 1, last + 1); st = ATTN_ERR_FORMAT; }
    if (st != ATTN_OK) attn_nmt_pairs_free(p);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Vocabulary.
 */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ULL; }
    return h;
}

/* Token t (NUL-terminated) is (s, n). Reads t only as far as it agrees with s: taking strlen(t) first
 * would make every lookup pay the whole length of each long token its probe passes, quadratic over a
 * line of many words and a vocabulary with a long token. */
static int token_is(const char *t, const char *s, size_t n) {
    size_t k = 0;
    while (k < n && t[k] != '\0' && t[k] == s[k]) k++;
    return k == n && t[n] == '\0';
}

/* Slot of token (s, n) in a table of size (power of 2) over tokens; its id or -1 there. */
static int find_slot(char *const *tokens, const int *table, int size, const char *s, size_t n) {
    size_t mask = (size_t)size - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        int id = table[i];
        if (id < 0) return (int)i;
        if (token_is(tokens[id], s, n)) return (int)i;
        i = (i + 1) & mask;
    }
}

static attn_status vocab_index(attn_vocab *v) {
    int size = 16;
    while (size < 2 * v->n + 2) size *= 2;
    free(v->table);
    v->table = malloc(sizeof(int) * (size_t)size);
    if (!v->table) return ATTN_ERR_NOMEM;
    for (int i = 0; i < size; i++) v->table[i] = -1;
    v->table_size = size;
    for (int id = 0; id < v->n; id++) {
        int slot = find_slot(v->tokens, v->table, size, v->tokens[id], strlen(v->tokens[id]));
        if (v->table[slot] < 0) v->table[slot] = id;              /* a duplicate keeps its first id */
    }
    return ATTN_OK;
}

int attn_vocab_id(const attn_vocab *v, const char *token, size_t len) {
    if (!v || !token || !v->table) return ATTN_TOK_UNK;
    int slot = find_slot(v->tokens, v->table, v->table_size, token, len);
    return v->table[slot] < 0 ? ATTN_TOK_UNK : v->table[slot];
}

void attn_vocab_free(attn_vocab *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) free(v->tokens[i]);
    free(v->tokens); free(v->table);
    memset(v, 0, sizeof *v);
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

static const char *const reserved[4] = {"<unk>", "<pad>", "<bos>", "<eos>"};

typedef struct tok_count { int first, count; } tok_count;

/* Count descending; ties by first appearance (the order a stable sort of a Counter keeps). */
static int by_count(const void *a, const void *b) {
    const tok_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

/* The distinct tokens of the lines, in order of first appearance: spans into the lines (nothing copied),
 * with their counts and an open-addressing index (size a power of 2, -1 = empty). */
typedef struct seen_tokens {
    const char **s;              /* (n) first byte of each token, inside the lines */
    size_t *len;                 /* (n) */
    uint64_t *hash;              /* (n) hash_bytes of each, kept for growing the index */
    int *count;                  /* (n) */
    int n, cap;
    int *table;
    size_t table_size;
} seen_tokens;

static void seen_free(seen_tokens *t) {
    free(t->s); free(t->len); free(t->hash); free(t->count); free(t->table);
    memset(t, 0, sizeof *t);
}

static int seen_grow_table(seen_tokens *t) {
    size_t size = t->table_size ? t->table_size * 2 : 1024, mask = size - 1;
    int *table = malloc(sizeof(int) * size);
    if (!table) return -1;
    for (size_t i = 0; i < size; i++) table[i] = -1;
    for (int id = 0; id < t->n; id++) {
        size_t i = (size_t)t->hash[id] & mask;
        while (table[i] >= 0) i = (i + 1) & mask;
        table[i] = id;
    }
    free(t->table);
    t->table = table;
    t->table_size = size;
    return 0;
}

/* Counts one occurrence of the token (s, n), adding it when new; -1 when out of memory. */
static int seen_add(seen_tokens *t, const char *s, size_t n) {
    if (2 * (size_t)t->n + 2 > t->table_size && seen_grow_table(t) != 0) return -1;
    uint64_t h = hash_bytes(s, n);
    size_t mask = t->table_size - 1, i = (size_t)h & mask;
    for (int id; (id = t->table[i]) >= 0; i = (i + 1) & mask)
        if (t->len[id] == n && memcmp(t->s[id], s, n) == 0) {
            t->count[id]++;
            return 0;
        }
    if (t->n == t->cap) {
        if (t->cap > INT_MAX / 2) return -1;
        int cap = t->cap ? t->cap * 2 : 256;
        const char **ns = realloc(t->s, sizeof(char *) * (size_t)cap);
        if (ns) t->s = ns;
        size_t *nl = realloc(t->len, sizeof(size_t) * (size_t)cap);
        if (nl) t->len = nl;
        uint64_t *nh = realloc(t->hash, sizeof(uint64_t) * (size_t)cap);
        if (nh) t->hash = nh;
        int *nc = realloc(t->count, sizeof(int) * (size_t)cap);
        if (nc) t->count = nc;
        if (!ns || !nl || !nh || !nc) return -1;
        t->cap = cap;
    }
    t->s[t->n] = s;
    t->len[t->n] = n;
    t->hash[t->n] = h;
    t->count[t->n] = 1;
    t->table[i] = t->n++;
    return 0;
}

/* Allocations: the distinct tokens are not copied while counting (spans into the lines); only the kept
 * ones are, once each, into v. */
attn_status attn_vocab_build(attn_vocab *v, const char *const *lines, int n_lines, int min_freq) {
    if (!v || (!lines && n_lines)) return ATTN_ERR_NULL;
    if (n_lines < 0) return ATTN_ERR_SIZE;
    memset(v, 0, sizeof *v);
    /* pass 1: every distinct token in order of first appearance, with its count */
    seen_tokens all = {0};
    attn_status st = seen_grow_table(&all) == 0 ? ATTN_OK : ATTN_ERR_NOMEM;
    for (int li = 0; li < n_lines && st == ATTN_OK; li++) {
        const char *s = lines[li];
        if (!s) { st = ATTN_ERR_NULL; break; }
        for (;;) {
            const char *e = strchr(s, ' ');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (seen_add(&all, s, n) != 0) { st = ATTN_ERR_NOMEM; break; }
            if (!e) break;
            s = e + 1;
        }
    }
    /* pass 2: reserved tokens, then the frequent ones by count */
    tok_count *order = st == ATTN_OK ? malloc(sizeof(tok_count) * (size_t)(all.n + 1)) : NULL;
    if (st == ATTN_OK && !order) st = ATTN_ERR_NOMEM;
    if (st == ATTN_OK) {
        for (int i = 0; i < all.n; i++) { order[i].first = i; order[i].count = all.count[i]; }
        qsort(order, (size_t)all.n, sizeof *order, by_count);
        v->tokens = malloc(sizeof(char *) * (size_t)(all.n + 4));
        if (!v->tokens) st = ATTN_ERR_NOMEM;
        for (int i = 0; st == ATTN_OK && i < 4; i++)
            if (!(v->tokens[v->n++] = dup_n(reserved[i], strlen(reserved[i])))) st = ATTN_ERR_NOMEM;
        for (int i = 0; st == ATTN_OK && i < all.n; i++) {
            if (order[i].count < min_freq) break;
            const char *t = all.s[order[i].first];
            size_t n = all.len[order[i].first];
            int is_reserved = 0;
            for (int r = 0; r < 4; r++) is_reserved |= strlen(reserved[r]) == n && memcmp(t, reserved[r], n) == 0;
            if (is_reserved) continue;
            if (!(v->tokens[v->n] = dup_n(t, n))) { st = ATTN_ERR_NOMEM; break; }
            v->n++;
        }
        if (st == ATTN_OK) st = vocab_index(v);
    }
    free(order);
    seen_free(&all);
    if (st != ATTN_OK) attn_vocab_free(v);
    return st;
}

attn_status attn_vocab_save(const attn_vocab *v, const char *path, char *err, size_t err_size) {
    if (!v || !path) return ATTN_ERR_NULL;
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp) return ATTN_ERR_NOMEM;
    memcpy(tmp, path, n); memcpy(tmp + n, ".tmp", 5);
    const char *kind = attn__not_replaceable(path);
    if (kind) {
        attn__set_err(err, err_size, "%s: exists and is %s, not a regular file: refusing to replace it (write to another path)", path, kind);
        free(tmp);
        return ATTN_ERR_IO;
    }
    FILE *f = attn__fopen_tmp(tmp, &kind);
    if (!f) {
        if (kind) attn__set_err(err, err_size, "%s: cannot create: it is %s, not a regular file", tmp, kind);
        else attn__set_err(err, err_size, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return ATTN_ERR_IO;
    }
    int bad = 0;
    for (int i = 0; i < v->n; i++) bad |= fprintf(f, "%s\n", v->tokens[i]) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        attn__set_err(err, err_size, "%s: write failed", path);
        free(tmp);
        return ATTN_ERR_IO;
    }
    free(tmp);
    return ATTN_OK;
}

attn_status attn_vocab_load(attn_vocab *v, const char *path, char *err, size_t err_size) {
    if (!v || !path) return ATTN_ERR_NULL;
    memset(v, 0, sizeof *v);
    const char *kind;
    FILE *f = attn__fopen_read(path, &kind);
    if (!f) {
        if (kind) attn__set_err(err, err_size, "%s: expected a vocabulary file (a regular file), found %s", path, kind);
        else attn__set_err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    attn_status st = ATTN_OK;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int tcap = 0;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        if (len && buf[len - 1] == '\n') len--;
        if (v->n == tcap) {
            tcap = tcap ? tcap * 2 : 256;
            char **nt = realloc(v->tokens, sizeof(char *) * (size_t)tcap);
            if (!nt) { st = ATTN_ERR_NOMEM; break; }
            v->tokens = nt;
        }
        if (!(v->tokens[v->n] = dup_n(buf, len))) { st = ATTN_ERR_NOMEM; break; }
        v->n++;
        if (v->n <= 4 && strcmp(v->tokens[v->n - 1], reserved[v->n - 1]) != 0) {
            attn__set_err(err, err_size, "%s: line %d: expected %s", path, v->n, reserved[v->n - 1]);
            st = ATTN_ERR_FORMAT;
            break;
        }
    }
    free(buf);
    fclose(f);
    if (st == ATTN_OK && v->n < 4) { attn__set_err(err, err_size, "%s: fewer than the 4 reserved tokens", path); st = ATTN_ERR_FORMAT; }
    if (st == ATTN_OK) st = vocab_index(v);
    if (st != ATTN_OK) attn_vocab_free(v);
    return st;
}

attn_status attn_vocab_encode(const attn_vocab *v, const char *line, int num_steps, int32_t *ids,
                              int32_t *valid_len, int *n_tokens, int *n_unk) {
    if (!v || !line || !ids || !valid_len || !n_tokens) return ATTN_ERR_NULL;
    if (num_steps <= 0) return ATTN_ERR_SIZE;
    int k = 0, unk = 0, nt = 0;
    const char *s = line;
    for (;;) {
        const char *e = strchr(s, ' ');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int id = attn_vocab_id(v, s, n);
        if (id == ATTN_TOK_UNK && !(n == 5 && memcmp(s, "<unk>", 5) == 0)) unk++;
        if (k < num_steps) ids[k++] = id;
        nt++;
        if (!e) break;
        s = e + 1;
    }
    if (k < num_steps) ids[k++] = ATTN_TOK_EOS;
    *valid_len = k;
    while (k < num_steps) ids[k++] = ATTN_TOK_PAD;
    *n_tokens = nt;
    if (n_unk) *n_unk = unk;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * BLEU (d2l): brevity penalty times the clipped n-gram precisions, p_n weighted 1/2^n.
 */
typedef struct span { const char *s; size_t n; } span;

static int split_spaces(const char *s, span **out) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ' ';
    span *sp = malloc(sizeof(span) * (size_t)n);
    if (!sp) return -1;
    int k = 0;
    for (;;) {
        const char *e = strchr(s, ' ');
        sp[k].s = s; sp[k].n = e ? (size_t)(e - s) : strlen(s);
        k++;
        if (!e) break;
        s = e + 1;
    }
    *out = sp;
    return n;
}

static int ngram_eq(const span *a, const span *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i].n != b[i].n || memcmp(a[i].s, b[i].s, a[i].n) != 0) return 0;
    return 1;
}

double attn_bleu(const char *pred, const char *label, int k) {
    if (!pred || !label || k < 1) return 0.0;
    span *p = NULL, *l = NULL;
    int lp = split_spaces(pred, &p), ll = split_spaces(label, &l);
    if (lp < 0 || ll < 0) { free(p); free(l); return 0.0; }
    double score = exp(fmin(0.0, 1.0 - (double)ll / (double)lp));
    char *used = malloc((size_t)ll + 1);
    for (int n = 1; n <= k && used; n++) {
        int np = lp - n + 1, nl = ll - n + 1;
        if (np <= 0) { score = 0.0; break; }
        /* each label n-gram can match once: mark the ones taken */
        memset(used, 0, (size_t)ll + 1);
        int matches = 0;
        for (int i = 0; i < np; i++)
            for (int j = 0; j < nl; j++)
                if (!used[j] && ngram_eq(p + i, l + j, n)) { used[j] = 1; matches++; break; }
        score *= pow((double)matches / (double)np, pow(0.5, n));
    }
    free(used); free(p); free(l);
    return score;
}
