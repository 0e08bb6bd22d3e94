/*
 * seeds.c — writes the fuzz targets' seed corpora: `fuzz_seeds DIR` makes DIR/<target>/ with a few small
 * valid inputs each (written by the library's own writers where it has one) and the inputs of past
 * defects, so a fuzz run starts from files that reach deep into each parser, and the tests replay the
 * reproducers. Nothing here is a data set: every seed is built from the literals below.
 */
#define _POSIX_C_SOURCE 200809L
#include "attn.h"
#include "attn/data.h"
#include "attn/safetensors.h"
#include "data/tar.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static const char *g_root;

static void die(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_seeds: %s: %s\n", what, detail);
    exit(1);
}

/* DIR/<target>/<name>, the target's folder made on the way. */
static const char *seed_path(const char *target, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) die(path, strerror(errno));
    snprintf(path, sizeof path, "%s/%s/%s", g_root, target, name);
    return path;
}

static void put(const char *target, const char *name, const void *data, size_t n) {
    const char *path = seed_path(target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) die(path, "cannot write");
}

/* A text seed: its first byte given separately (the targets that read a parameter byte first). */
static void put_text(const char *target, const char *name, int first_byte, const char *text) {
    size_t n = strlen(text);
    unsigned char *b = malloc(n + 1);
    if (!b) die(name, "out of memory");
    size_t k = 0;
    if (first_byte >= 0) b[k++] = (unsigned char)first_byte;
    memcpy(b + k, text, n);
    put(target, name, b, n + k);
    free(b);
}

/* ---- raw tar, for entries the library's writer does not make (pax, GNU long names) ------------------ */
typedef struct { unsigned char *p; size_t n, cap; } raw;

static void raw_put(raw *r, const void *d, size_t n) {
    if (r->n + n > r->cap) {
        r->cap = (r->n + n) * 2 + 1024;
        r->p = realloc(r->p, r->cap);
        if (!r->p) die("raw tar", "out of memory");
    }
    if (n) memcpy(r->p + r->n, d, n);
    r->n += n;
}

static void raw_entry(raw *r, const char *name, char type, const void *data, size_t n) {
    unsigned char h[512] = {0};
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    snprintf((char *)h + 100, 8, "%07o", 0644u);
    snprintf((char *)h + 108, 8, "%07o", 0u);
    snprintf((char *)h + 116, 8, "%07o", 0u);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf((char *)h + 136, 12, "%011o", 0u);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    raw_put(r, h, 512);
    raw_put(r, data, n);
    static const unsigned char zero[512];
    raw_put(r, zero, (512 - n % 512) % 512);
}

/* Compresses r (with its two end blocks) into DIR/<target>/<name>. */
static void raw_finish(raw *r, const char *target, const char *name) {
    static const unsigned char zero[1024];
    raw_put(r, zero, sizeof zero);
    const char *path = seed_path(target, name);
    gzFile g = gzopen(path, "wb9");
    if (!g || gzwrite(g, r->p, (unsigned)r->n) != (int)r->n || gzclose(g) != Z_OK) die(path, "cannot write");
    free(r->p);
    memset(r, 0, sizeof *r);
}

/* ---- the seeds, per target ------------------------------------------------------------------------- */
static const char *const reviews[4][2] = {
    {"aclImdb/train/pos/0_9.txt", "A superb, moving film.<br /><br />It's the best I've seen!"},
    {"aclImdb/train/neg/0_2.txt", "Dull. The plot was thin and the acting WORSE; a waste."},
    {"aclImdb/test/pos/1_8.txt", "Émile’s café scene: naïve, but the film is great."},
    {"aclImdb/test/neg/1_1.txt", "worst film <BR/> ever"},
};

static void imdb_archive(const char *target, const char *name) {
    attn__tar_writer *w;
    const char *path = seed_path(target, name);
    if (attn__tar_writer_open(&w, path) != ATTN_OK) die(path, "cannot create");
    attn__tar_writer_add(w, "aclImdb/", '5', NULL, 0);
    for (int i = 0; i < 4; i++) attn__tar_writer_add(w, reviews[i][0], '0', reviews[i][1], strlen(reviews[i][1]));
    attn__tar_writer_add(w, "aclImdb/README", '0', "not a review", 12);
    if (attn__tar_writer_close(w) != ATTN_OK) die(path, "cannot write");
}

static void seeds_tar(void) {
    imdb_archive("tar", "writer.tar.gz");
    raw r = {0};
    static const char longname[] = "a/name/longer/than/the/hundred/bytes/of/a/ustar/header/field/so/it/needs/"
                                   "a/gnu/long/name/entry/before/it.txt";
    raw_entry(&r, "././@LongLink", 'L', longname, sizeof longname);
    raw_entry(&r, "cut", '0', "long", 4);
    static const char pax[] = "20 path=pax/name.txt\n30 mtime=1700000000.123456789\n";
    raw_entry(&r, "PaxHeaders/x", 'x', pax, strlen(pax));
    raw_entry(&r, "x", '0', "pax", 3);
    raw_entry(&r, "pax_global_header", 'g', "9 a=bcd\n", 8);
    raw_entry(&r, "link", '2', NULL, 0);
    raw_finish(&r, "tar", "longnames.tar.gz");
    /* past defects: a pax length that stepped back (a loop), one shorter than its prefix (an overread) */
    raw_entry(&r, "PaxHeaders/a", 'x', "6 a=b\n-6 x\n", 11);
    raw_entry(&r, "a", '0', "a", 1);
    raw_finish(&r, "tar", "pax-loop.tar.gz");
    raw_entry(&r, "PaxHeaders/b", 'x', "1 path=x\n", 9);
    raw_entry(&r, "b", '0', "b", 1);
    raw_finish(&r, "tar", "pax-short.tar.gz");
}

/* DIR/<target>/<to>: the tar inside DIR/<target>/<from> (a .tar.gz), for the targets that take either. */
static void gunzip_seed(const char *target, const char *from, const char *to) {
    gzFile g = gzopen(seed_path(target, from), "rb");
    if (!g) die(from, "cannot read back");
    static unsigned char b[1 << 16];
    int n = gzread(g, b, sizeof b);
    gzclose(g);
    if (n <= 0 || n == (int)sizeof b) die(from, "cannot read back");
    put(target, to, b, (size_t)n);
}

static void seeds_imdb(void) {
    imdb_archive("imdb_archive", "small.tar.gz");
    gunzip_seed("imdb_archive", "small.tar.gz", "small.tar");
    raw r = {0};
    for (int i = 0; i < 4; i++) {
        char rec[256];
        int n = snprintf(rec, sizeof rec, "%d path=%s\n", 0, reviews[i][0]);
        int len = n - 1;                                  /* the length counts its own digits */
        while (snprintf(NULL, 0, "%d", len) + n - 1 != len) len++;
        n = snprintf(rec, sizeof rec, "%d path=%s\n", len, reviews[i][0]);
        raw_entry(&r, "PaxHeaders/r", 'x', rec, (size_t)n);
        raw_entry(&r, "r", '0', reviews[i][1], strlen(reviews[i][1]));
    }
    raw_finish(&r, "imdb_archive", "pax.tar.gz");
    gunzip_seed("imdb_archive", "pax.tar.gz", "pax.tar");
    /* past defect: an archive without any review (the loader sorted a NULL list) */
    raw_entry(&r, "aclImdb/README", '0', "no review", 9);
    raw_finish(&r, "imdb_archive", "noreview.tar.gz");
    gunzip_seed("imdb_archive", "noreview.tar.gz", "noreview.tar");

    /* the cache of the small archive, with the options the cache target reads from its header */
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 40;
    o.T = 6;
    attn_imdb_data d;
    char err[1024];
    if (attn_imdb_load(&d, seed_path("imdb_archive", "small.tar.gz"), &o, err, sizeof err) != ATTN_OK) die("load", err);
    if (attn_imdb_cache_save(&d, &o, seed_path("imdb_cache", "small.cache"), err, sizeof err) != ATTN_OK)
        die("cache", err);
    /* past defect: a cache whose header claimed V = 16,121,896 for a blob of 20 words (256 MB, > 1 s) */
    {
        FILE *f = fopen(seed_path("imdb_cache", "small.cache"), "rb");
        unsigned char c[4096];
        size_t n = f ? fread(c, 1, sizeof c, f) : 0;
        if (f) fclose(f);
        if (n < 96) die("cache", "cannot read back");
        static const unsigned char v16m[4] = {0x28, 0x00, 0xf6, 0x00};
        memcpy(c + 16, v16m, 4);
        put("imdb_cache", "v16m.cache", c, n);
    }
    /* the vocabulary blob, with V in front */
    unsigned char *b = malloc(d.vocab.blob_size + 1);
    if (!b) die("vocab", "out of memory");
    b[0] = (unsigned char)d.vocab.V;
    memcpy(b + 1, d.vocab.blob, d.vocab.blob_size);
    put("imdb_vocab", "small", b, d.vocab.blob_size + 1);
    free(b);
    attn_imdb_free(&d);
    static const char tiny[] = "\x06<pad>\0<start>\0<oov>\0the\0film\0caf\xc3\xa9";
    put("imdb_vocab", "tiny", tiny, sizeof tiny);
}

/* ---- the IMDB folder target: a layout byte, then "<where><name>\n<text>" entries separated by NULs -- */
enum { IN_TRAIN_NEG, IN_TRAIN_POS, IN_TEST_NEG, IN_TEST_POS };
enum { AS_FILE = 0, AS_FOLDER = 4, AS_FIFO = 5, AS_DANGLING = 6, AS_LINK = 7 };

typedef struct { unsigned char b[4096]; size_t n; } folder_seed;

static void folder_start(folder_seed *f, int layout) {
    f->b[0] = (unsigned char)layout;
    f->n = 1;
}

static void folder_entry(folder_seed *f, int where, int kind, const char *name, const char *text) {
    size_t a = strlen(name), c = strlen(text);
    if (f->n + a + c + 3 > sizeof f->b) die("folder seed", "too long");
    if (f->n > 1) f->b[f->n++] = '\0';
    f->b[f->n++] = (unsigned char)(where | kind << 2);
    memcpy(f->b + f->n, name, a);
    f->n += a;
    f->b[f->n++] = '\n';
    memcpy(f->b + f->n, text, c);
    f->n += c;
}

/* The four reviews above (train/pos, train/neg, test/pos, test/neg), kind given for the first. */
static void folder_reviews(folder_seed *f, int first_kind) {
    static const int where[4] = {IN_TRAIN_POS, IN_TRAIN_NEG, IN_TEST_POS, IN_TEST_NEG};
    for (int i = 0; i < 4; i++)
        folder_entry(f, where[i], i ? AS_FILE : first_kind, strrchr(reviews[i][0], '/') + 1, reviews[i][1]);
}

static void seeds_imdb_folder(void) {
    const char *t = "imdb_folder";
    folder_seed f;
    folder_start(&f, 0);
    folder_reviews(&f, AS_FILE);
    folder_entry(&f, IN_TRAIN_POS, AS_FILE, "README", "not a review");
    folder_entry(&f, IN_TEST_NEG, AS_FILE, "urls_neg.txt", "http://example.com/");
    folder_entry(&f, IN_TRAIN_NEG, AS_FILE, "3_4.txt", "Bad.<br />Really \xc2\xb4" "bad\xc2\xb4, the \xc3\x89" "lite of bad.");
    put(t, "small", f.b, f.n);

    static const struct { const char *name; int kind; } kinds[4] = {
        {"folder", AS_FOLDER}, {"fifo", AS_FIFO}, {"dangling", AS_DANGLING}, {"link", AS_LINK}};
    for (int k = 0; k < 4; k++) {
        folder_start(&f, 0);
        folder_reviews(&f, kinds[k].kind);
        put(t, kinds[k].name, f.b, f.n);
    }

    folder_start(&f, 1 << IN_TEST_POS);                  /* test/pos missing */
    folder_reviews(&f, AS_FILE);
    put(t, "missing", f.b, f.n);

    folder_start(&f, 1 << 4);                            /* --limit 1 */
    folder_reviews(&f, AS_FILE);
    folder_entry(&f, IN_TRAIN_POS, AS_FILE, "7_10.txt", "great");
    folder_entry(&f, IN_TEST_NEG, AS_FILE, "9_1.txt", "awful");
    put(t, "limit", f.b, f.n);

    folder_start(&f, 0);                                 /* review 1 of train/neg twice, by two names */
    folder_reviews(&f, AS_FILE);
    folder_entry(&f, IN_TRAIN_NEG, AS_FILE, "1_2.txt", "dull");
    folder_entry(&f, IN_TRAIN_NEG, AS_FILE, "01_3.txt", "dull too");
    put(t, "twice", f.b, f.n);

    /* names from the entry index; invalid UTF-8; past defect: train/neg without a review (the loader
     * sorted a NULL list of names) */
    folder_start(&f, 0);
    folder_entry(&f, IN_TRAIN_POS, AS_FILE, "0_9.txt", "fine");
    f.b[f.n++] = '\0';
    static const char unnamed[] = {IN_TEST_POS, 'o', 'k', '\0', IN_TEST_NEG, 'b', 'a', 'd', ' ', '\xc3', '\x28'};
    memcpy(f.b + f.n, unnamed, sizeof unnamed);
    f.n += sizeof unnamed;
    put(t, "empty-label", f.b, f.n);
}

static void seeds_text(void) {
    put_text("tokenize", "imdb", -1, "A superb, moving film.<br /><br />It's the BEST I've seen! 10/10");
    put_text("tokenize", "latin", -1, "\xc3\x89mile\xe2\x80\x99s caf\xc3\xa9 \xe2\x80\x94 na\xc3\xafve \xc2\xb4quote\xc2\xb4 \xc3\x97 \xc3\xb7");
    put_text("tokenize", "fra", -1, "Va !\xe2\x80\xaf\xc3\x87" "a va\xc2\xa0? \xc5\x92uvre, \xc5\xb8 L'\xc3\xa9t\xc3\xa9.");
    put_text("tokenize", "invalid", -1, "ok \xc0\xaf then \xed\xa0\x80 and \xf4\x90\x80\x80 cut \xe2\x82");
    put_text("tokenize", "br", -1, "<br<br /<BR   /><bR>x<b>y<br");

    static const char fra[] = "Go.\tVa !\tCC-BY 2.0 (France)\nHi.\tSalut !\r\nRun!\tCours\xe2\x80\xaf!\n"
                              "Wow!\t\xc3\x87" "a alors\xe2\x80\xaf!\nI'm home.\tJe suis chez moi.\n";
    put_text("nmt_read", "all", 0x00, fra);
    put_text("nmt_read", "range", 0x01 | (2 << 2) | (1 << 6), fra);
    put_text("nmt_read", "notab", 0x00, "Go.\tVa !\nno tab here\n");
    put_text("nmt_vocab", "vocab", -1, "<unk>\n<pad>\n<bos>\n<eos>\nva\n!\nsalut\ncours\n");
    put_text("nmt_vocab", "lines", -1, "va ! <unk>\nsalut  !\n\n je suis chez moi .");

    put_text("csv", "history", -1, "epoch,loss,acc,val_loss,val_acc,seconds\n1,0.5244,0.7514,0.3834,0.8278,15.2\n"
                                    "2,0.3257,,0.3689,0.8368,14.9\n");
    put_text("csv", "hand", -1, " epoch , loss \r\n\r\n1, 1e-30\r\n2 , -inf\r\n3,nan\n");
    put_text("csv", "bad", -1, "epoch,loss\n1,0.5\n2,zero\n3\n");
    /* a past defect: one long column name as title and both axis names, the y name ran into the title */
    put_text("csv", "long_name", -1, "xrrrrrrrrrrrrrrrrrrepoQQrrrrrrrrrrrrrrrrrrrrrrrrrrepeghQQQQ34\n3333");
    put_text("csv", "huge", -1, "x,y\n-1e308,1e308\n1e308,-1e308\n0,5e-324\n");
    static const char cli[] = "--int\0-5\0--float=1e3\0pos\0--flag\0--u64\0000018446744073709551615\0--str=x\0"
                              "--\0--int\0-";
    put_text("cli", "good", 0x12, "");
    put("cli", "args", cli, sizeof cli - 1);
    static const char bad[] = "\x01--int=99999999999\0--flag=1\0--nope\0-x\0--str";
    put("cli", "bad", bad, sizeof bad - 1);
}

static void seeds_safetensors(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t step = 42;
    unsigned char mask[3] = {1, 0, 1};
    double d[2] = {0.5, -0.25};
    attn_st_tensor t[5] = {
        {.name = "layer.weight", .dtype = ATTN_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = w, .nbytes = sizeof w},
        {.name = "step", .dtype = ATTN_DTYPE_I64, .ndim = 0, .data = &step, .nbytes = sizeof step},
        {.name = "mask \"quoted\" \xc3\xa9", .dtype = ATTN_DTYPE_BOOL, .ndim = 1, .shape = {3}, .data = mask,
         .nbytes = sizeof mask},
        {.name = "empty", .dtype = ATTN_DTYPE_U8, .ndim = 2, .shape = {0, 4}, .data = NULL, .nbytes = 0},
        {.name = "d", .dtype = ATTN_DTYPE_F64, .ndim = 1, .shape = {2}, .data = d, .nbytes = sizeof d},
    };
    const char *keys[2] = {"format", "note"}, *vals[2] = {"pt", "tab\there \\ \xe2\x82\xac"};
    char err[512];
    if (attn_st_write(seed_path("safetensors", "writer.safetensors"), t, 5, keys, vals, 2, err, sizeof err) != ATTN_OK)
        die("safetensors", err);
    /* a file whose tensors are misaligned (the reader repacks it), with JSON escapes */
    static const char json[] = "{\"b\\u00e9\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                               "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[3,7]},"
                               "\"__metadata__\":{\"k\\n\":\"v\\/\"}}";
    unsigned char buf[8 + sizeof json + 7];
    size_t n = sizeof json - 1;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    memcpy(buf + 8 + n, "abc\0\0\x80?", 7);
    put("safetensors", "misaligned.safetensors", buf, 8 + n + 7);
}

/* ---- IDX: plain and gzip, images and labels, and a few broken headers --------------------------------- */
static void put_gz(const char *target, const char *name, const void *data, size_t n) {
    uLongf cap = compressBound((uLong)n) + 64;
    unsigned char *b = malloc(cap);
    if (!b) die(name, "out of memory");
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) die(name, "deflateInit2");
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)n;
    z.next_out = b;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) die(name, "deflate");
    put(target, name, b, cap - z.avail_out);
    deflateEnd(&z);
    free(b);
}

static void seeds_idx(void) {
    unsigned char img[4 + 12 + 2 * 3 * 4] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
    for (int i = 0; i < 24; i++) img[16 + i] = (unsigned char)(i * 10);
    unsigned char lab[4 + 4 + 5] = {0, 0, 8, 1, 0, 0, 0, 5, 0, 1, 9, 3, 7};
    put("idx", "images", img, sizeof img);
    put_gz("idx", "images.gz", img, sizeof img);
    put("idx", "labels", lab, sizeof lab);
    put_gz("idx", "labels.gz", lab, sizeof lab);
    put("idx", "truncated", img, sizeof img - 5);
    put_gz("idx", "truncated.gz", img, sizeof img - 5);
    unsigned char big[12] = {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    put("idx", "huge", big, sizeof big);
    unsigned char f32[12] = {0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0x80, 0x3f};
    put("idx", "float", f32, sizeof f32);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR (writes DIR/<target>/ for every fuzz target)\n");
        return 2;
    }
    g_root = argv[1];
    if (mkdir(g_root, 0755) != 0 && errno != EEXIST) die(g_root, strerror(errno));
    seeds_tar();
    seeds_imdb();
    seeds_imdb_folder();
    seeds_text();
    seeds_safetensors();
    seeds_idx();
    printf("fuzz_seeds: seed corpora written under %s\n", g_root);
    return 0;
}
